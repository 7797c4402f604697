"""EC2 spot placement scores (``aws_sps``): planned queries spread over accounts by their 24-hour budget.

One :class:`AwsSpsCollector` runs planned queries (one instance type over up to 10 regions) at one
target capacity: ``ec2.get_spot_placement_scores(InstanceTypes=[type], TargetCapacity=n,
TargetCapacityUnitType="units", SingleAvailabilityZone=True, RegionNames=[...], MaxResults=...,
NextToken=...)``. It returns an :class:`AwsSpsResult`: a frame with :data:`spotlake.model.SPS_SCHEMA`
(size = instance type, zone = zone ID such as ``use1-az1``, desired_count = target capacity, score =
the integer as a string, score_value 1 ... 10, quota_available ``<NA>``), a report whose numbers add
up (``planned == succeeded + failed``), and the updated :class:`AccountBook` to persist. A zone of a
queried region the answer leaves out has no row: its score is unknown (the API answers the 10 best
zones only; :attr:`AwsSpsResult.truncated` lists the cut answers), never "gone".

Accounts. EC2 lets an account use about 10 *new* configurations (instance types, regions, capacity)
in a rolling 24 h, and repeat those for free. The book (:mod:`spotlake.collect.aws.accounts`) records
which account served which configuration (:func:`configuration_key`) and when: a query goes to an
account that served it in the window, else to the usable account with the most budget left the book
knows of (``config_limit`` minus its records in the window; ties: the order given). The book's window
has :data:`WINDOW_MARGIN` on the safe side each way: a repeat is trusted free for 24 h minus it, a new
configuration occupies budget for 24 h plus it.

==================================  ===========================================================
what happens                        what the collector does
==================================  ===========================================================
an answer                           rows parsed; further pages fetched with ``NextToken``
``RequestLimitExceeded``,           retried with jittered exponential backoff (tenacity, on the
``Throttling``, 5xx, network        injected clock) up to ``max_attempts`` per page, then the
errors                              query fails (``retries-exhausted``)
``MaxConfigLimitExceeded``          the account is marked full until 24 h after its oldest
                                    recorded configuration; the query moves to the next account
                                    and fails (``all-accounts-full``) only when none is left
``UnauthorizedOperation``,          the account is unusable for the rest of the run (noted);
``AccessDenied``, no credentials    the query moves to the next account
``InvalidParameterValue``, other    the query fails (``invalid-request``) naming the type,
errors                              regions, capacity, account and EC2's message
an answer of the wrong shape        the query fails (``payload``)
==================================  ===========================================================

A failed query has no rows, even when some of its pages had arrived. Clients from
:meth:`AwsAccount.from_session` have botocore's retries off: every retry is ours, and counted.

Streams. EC2's limits are per account, so accounts are asked at the same time, each in sequence
(``concurrency`` accounts at once; ``1``: every query in order, one at a time, in the calling
thread). A round first assigns every pending query, in order and without I/O, by the rule above,
reserving the budget each new configuration will take; then each account's queue runs in its own
worker thread (:mod:`spotlake.collect.aws._streams`). A query its account refuses (full, denied)
goes back to the pool with the queries that account can no longer take, and the next round assigns
them, in order, to the accounts left, until each is scored or fails. Rows, failures, notes,
``served_by``, ``truncated`` and the book follow query order, not thread timing (the book's times
are the clock's: on a :class:`~spotlake.clock.FakeClock` that backoff moves, they depend on which
stream slept first). :meth:`AwsSpsCollector.acollect` runs it all off the event loop.

Stopping. Every query sent spends account budget, so a run that is given up sends nothing more: a
stream that raises stops the others before their next query (the first error propagates, the
rest are logged), and so do an interrupt, a ``stop`` event set by the caller
(:meth:`AwsSpsCollector.collect`) and a cancelled :meth:`AwsSpsCollector.acollect` (which returns
only once its thread has stopped, so a run that then releases its lock leaves no thread behind).
A stopped collection raises :class:`CollectionStopped`. Client factories are called one at a time
(a boto3 session is not thread-safe). The result types are in
:mod:`spotlake.collect.aws.sps_results`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, Final, Protocol

import attrs
import pandas as pd
import tenacity

from spotlake.clock import Clock, SystemClock
from spotlake.collect.aws._boto import botocore_config, clean_message, client_error_parts
from spotlake.collect.aws._streams import MOVED, Moved, run_rounds
from spotlake.collect.aws.accounts import (
    CONFIG_WINDOW,
    WINDOW_MARGIN,
    AccountBook,
    BookIndex,
    FullAccount,
    ServedConfiguration,
)
from spotlake.collect.aws.sps_results import (
    AccountStatus,
    AwsSpsResult,
    CollectionStopped,
    FailedQuery,
    FailureReason,
)
from spotlake.collect.base import ReportBuilder
from spotlake.collect.http import Backoff
from spotlake.errors import AuthError, CollectError, ConfigError, InvalidRequestError, PayloadError
from spotlake.errors import TransientCollectError as Transient
from spotlake.model import SPS_SCHEMA, Source, conform

__all__ = [
    "CONFIG_WINDOW",
    "DEFAULT_CALL_REGION",
    "DEFAULT_CONCURRENCY",
    "DEFAULT_CONFIG_LIMIT",
    "TOP_ZONES",
    "WINDOW_MARGIN",
    "AccountBook",
    "AccountStatus",
    "AwsAccount",
    "AwsSpsCollector",
    "AwsSpsResult",
    "CollectionStopped",
    "FailedQuery",
    "FailureReason",
    "FullAccount",
    "PlacementQuery",
    "ServedConfiguration",
    "configuration_key",
]

log = logging.getLogger(__name__)

SOURCE: Final = Source.AWS_SPS
#: New configurations an account may use in a rolling :data:`CONFIG_WINDOW` (EC2's default).
DEFAULT_CONFIG_LIMIT: Final = 10
#: The API answers the best 10 zones only.
TOP_ZONES: Final = 10
#: The endpoint the calls go to (any region's endpoint scores every region named).
DEFAULT_CALL_REGION: Final = "us-east-1"
#: Most regions one call may name; most pages one answer may take (10 zones fit in one page).
MAX_REGIONS: Final = 10
MAX_PAGES: Final = 50
#: Accounts asked at the same time by default (``1``: every query in sequence, as before streams).
DEFAULT_CONCURRENCY: Final = 1

_CONFIG_LIMIT: Final = "MaxConfigLimitExceeded"
# Not _boto's THROTTLING_CODES/ACCESS_DENIED_CODES: those retry more codes and deny other ones
# (ExpiredTokenException, not Blocked); sharing them would change which queries retry or move on.
_THROTTLED: Final = frozenset({"RequestLimitExceeded", "Throttling", "ThrottlingException"})
_UNAVAILABLE: Final = frozenset({"InternalError", "InternalFailure", "ServiceUnavailable", "Unavailable"})
_DENIED: Final = frozenset({"UnauthorizedOperation", "AccessDenied", "AccessDeniedException", "AuthFailure"})
_BAD_KEY: Final = frozenset({"InvalidClientTokenId", "SignatureDoesNotMatch", "ExpiredToken", "Blocked"})


# --- queries and accounts --------------------------------------------------------------------


class PlacementQuery(Protocol):
    """What the collector needs of a planned query (``spotlake.collect.aws.plan.AwsSpsQuery`` fits)."""

    @property
    def instance_type(self) -> str:
        """The one instance type scored."""

    @property
    def regions(self) -> tuple[str, ...]:
        """The regions scored (1 to 10)."""

    @property
    def zones(self) -> int:
        """How many zones the regions have: an answer of 10 zones out of more was cut."""

    @property
    def key(self) -> str:
        """A stable identity of (instance type, regions), e.g. ``m5.large|eu-west-1,us-east-1``."""


def configuration_key(query: PlacementQuery, target_capacity: int) -> str:
    """The configuration EC2 counts against an account's limit: the query's key and the capacity."""
    return f"{query.key}|{target_capacity}"


def _check_account(instance: AwsAccount, _attr: object, _value: object) -> None:
    if not instance.name.strip() or instance.config_limit < 0:
        raise ConfigError("aws_sps: an account needs a non-empty name and a config_limit >= 0")


@attrs.frozen(kw_only=True)
class AwsAccount:
    """An AWS account to ask for scores: a name (for the book, notes and errors) and a factory of EC2
    clients. Only the factory holds credentials, and it is never shown (not in ``repr`` either)."""

    name: str
    client_factory: Callable[[], Any] = attrs.field(repr=False, eq=False)
    config_limit: int = attrs.field(default=DEFAULT_CONFIG_LIMIT, validator=_check_account)

    @classmethod
    def from_session(
        cls,
        name: str,
        session: Any,
        *,
        region: str = DEFAULT_CALL_REGION,
        config_limit: int = DEFAULT_CONFIG_LIMIT,
    ) -> AwsAccount:
        """An account whose clients come from a boto3 ``Session`` (its credentials, ``region``'s
        endpoint), botocore's own retries off: the collector retries, and counts each one."""

        def make() -> Any:
            return session.client("ec2", region_name=region, config=botocore_config())

        return cls(name=name, client_factory=make, config_limit=config_limit)


class _ConfigLimit(CollectError):
    """Internal: the account refused a new configuration."""


#: (region, zone ID, score text, score value) of one answer entry.
_Row = tuple[str, str, str | None, int | None]


@attrs.define
class _Account:
    spec: AwsAccount
    index: int
    #: The account's own backoff (its own jitter sequence: streams do not share a generator).
    backoff: Backoff
    client: Any = None
    status: AccountStatus = AccountStatus.USABLE

    @property
    def usable(self) -> bool:
        return self.status is AccountStatus.USABLE


@attrs.define
class _Run:
    #: The book's records for the run: asked and added to once per query, a book again at the end.
    index: BookIndex
    report: ReportBuilder
    accounts: list[_Account]
    #: Guards the index, the report's counters, the notes and the accounts' statuses.
    lock: threading.Lock = attrs.field(factory=threading.Lock)
    #: Set when the run is abandoned (a worker raised, an interrupt, the caller cancelled): no
    #: further query is sent; the queries in flight finish.
    stop: threading.Event = attrs.field(factory=threading.Event)
    #: Serialises the accounts' client factories (a boto3 session is not thread-safe).
    factories: threading.Lock = attrs.field(factory=threading.Lock)
    #: The round being run (0 for the first; always 0 in sequence).
    round: int = 0
    #: Notes keyed (query index, round, count): sorted, they follow query order, not thread timing.
    notes: list[tuple[tuple[int, int, int], str]] = attrs.field(factory=list)

    def note(self, index: int, text: str) -> None:
        with self.lock:
            self.notes.append(((index, self.round, len(self.notes)), text))


@attrs.define
class _Query:
    index: int
    query: PlacementQuery
    key: str
    attempts: int = 0
    account: str | None = None
    #: The accounts asked (or whose client failed) for this query.
    tried: set[str] = attrs.field(factory=set)
    truncated: bool = False


class AwsSpsCollector:
    """Score planned queries at one target capacity, rotating accounts (see the module docstring).

    ``book`` is not modified: the updated one is :attr:`AwsSpsResult.book`. ``max_attempts`` caps the
    requests per page (throttling and transient errors); ``backoff`` spaces them on ``clock`` (with
    streams, each account draws its jitter from its own copy, seeded from ``backoff``'s seed and the
    account's position). ``concurrency``: how many accounts are asked at the same time.
    """

    source = SOURCE

    def __init__(
        self,
        *,
        queries: Sequence[PlacementQuery],
        target_capacity: int,
        accounts: Sequence[AwsAccount],
        book: AccountBook | None = None,
        clock: Clock | None = None,
        max_attempts: int = 4,
        backoff: Backoff | None = None,
        max_results: int = 1000,
        concurrency: int = DEFAULT_CONCURRENCY,
    ) -> None:
        names = [a.name for a in accounts]
        if target_capacity < 1 or max_attempts < 1 or concurrency < 1 or not 10 <= max_results <= 1000:
            wrong = (
                f"target_capacity={target_capacity}, max_attempts={max_attempts}, concurrency={concurrency}"
            )
            raise ConfigError(
                f"aws_sps: {wrong}, max_results={max_results}: the first three must be >= 1, max_results "
                "within 10 ... 1000"
            )
        if not names or len(set(names)) != len(names):
            raise ConfigError(f"aws_sps: give at least one account, each with its own name (got {names})")
        for query in queries:
            if not 1 <= len(query.regions) <= MAX_REGIONS:
                raise ConfigError(
                    f"aws_sps: query {query.key!r} names {len(query.regions)} regions, not 1 to 10"
                )
        self.queries = tuple(queries)
        self.target_capacity = target_capacity
        self.accounts = tuple(accounts)
        self.book = book or AccountBook()
        self._clock: Clock = clock or SystemClock()
        self.max_attempts = max_attempts
        self._backoff = backoff or Backoff()
        self.max_results = max_results
        self.concurrency = concurrency

    def __repr__(self) -> str:
        return (
            f"AwsSpsCollector(queries={len(self.queries)}, target_capacity={self.target_capacity}, "
            f"accounts={[a.name for a in self.accounts]}, book={len(self.book.served)} record(s))"
        )

    def collect(self, *, stop: threading.Event | None = None) -> AwsSpsResult:
        """Run every query and account for each one (blocking: boto3 is synchronous): in order, one at
        a time, or with ``concurrency`` > 1 as streams, one worker thread per account.

        ``stop``: set it (from another thread) to abandon the run: no further query is sent, the
        ones in flight finish, and :class:`CollectionStopped` is raised. An exception in a stream
        or an interrupt stops the other streams the same way before it propagates."""
        report = ReportBuilder(source=SOURCE, planned=len(self.queries), started_at=self._clock.now())
        streams = self.concurrency > 1
        accounts = [
            _Account(spec=a, index=i, backoff=self._own_backoff(i) if streams else self._backoff)
            for i, a in enumerate(self.accounts)
        ]
        stop = stop or threading.Event()
        run = _Run(index=BookIndex(self.book), report=report, accounts=accounts, stop=stop)
        target = self.target_capacity
        states = [
            _Query(index=i, query=q, key=configuration_key(q, target)) for i, q in enumerate(self.queries)
        ]
        if streams:
            outcomes = run_rounds(self, run, states, concurrency=self.concurrency)
        else:
            outcomes = {}
            for state in states:
                if run.stop.is_set():
                    break
                outcomes[state.index] = self._run_query(state, run)
        if len(outcomes) < len(states):  # stopped (run.stop) before every query was run
            raise CollectionStopped(
                f"aws_sps: stopped after {len(outcomes)} of {len(states)} queries; nothing is returned "
                "(the queries sent count against their accounts: the next run's book learns of any "
                "that filled up from MaxConfigLimitExceeded)",
                source=SOURCE,
            )
        rows: list[tuple[str, _Row]] = []
        failed: list[FailedQuery] = []
        served_by: dict[str, str] = {}
        truncated: list[str] = []
        for state in states:  # query order, whatever order the streams finished in
            outcome = outcomes[state.index]
            if isinstance(outcome, FailedQuery):
                failed.append(outcome)
                log.warning("aws_sps: %s", outcome.to_failure())
                continue
            report.succeeded += 1
            rows.extend((state.query.instance_type, row) for row in outcome)
            served_by[state.key] = state.account or ""
            truncated += [state.key] if state.truncated else []
        return self._result(run, rows, failed, served_by, truncated)

    async def acollect(self) -> AwsSpsResult:
        """:meth:`collect` in a worker thread, so the event loop carries on meanwhile. Cancelled,
        it stops the collection (no further query is sent) before the cancellation propagates,
        so a run that gave up its lock leaves no thread spending account budget behind it."""
        stop = threading.Event()
        task = asyncio.ensure_future(asyncio.to_thread(self.collect, stop=stop))
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            stop.set()
            with contextlib.suppress(BaseException):
                await task  # the queries in flight finish; no new one starts
            raise

    def _own_backoff(self, index: int) -> Backoff:
        seed = self._backoff.seed
        return attrs.evolve(self._backoff, seed=None if seed is None else seed * 1_000_003 + index + 1)

    def _run_query(self, state: _Query, run: _Run) -> list[_Row] | FailedQuery:
        """The query asked of one account after another until it is scored or fails (in sequence)."""
        while True:
            account, repeat = self._choose(state, run, self._clock.now())
            if account is None:
                return self._no_account(state, run)
            outcome = self._attempt(state, run, account, repeat=repeat)
            if not isinstance(outcome, Moved):
                return outcome

    def _attempt(
        self, state: _Query, run: _Run, account: _Account, *, repeat: bool
    ) -> list[_Row] | FailedQuery | Moved:
        """One account asked for the query: its rows, its failure, or :data:`MOVED` (ask another)."""
        name = state.account = account.spec.name
        state.tried.add(name)
        if (client := self._client(account, run, state)) is None:
            return MOVED
        try:
            return self._fetch(state, run, account, client, repeat=repeat)
        except _ConfigLimit:
            self._mark_full(state, run, name)
        except AuthError as exc:
            with run.lock:
                account.status = AccountStatus.DENIED
            run.note(state.index, f"account {name} refused ({exc}); not asked again this run")
            log.warning("aws_sps: account %s refused: %s", name, exc)
        except Transient as exc:
            return self._failed(state, FailureReason.RETRIES_EXHAUSTED, str(exc), exc.status)
        except PayloadError as exc:
            return self._failed(state, FailureReason.PAYLOAD, str(exc), exc.status)
        except InvalidRequestError as exc:
            return self._failed(state, FailureReason.INVALID_REQUEST, str(exc), exc.status)
        return MOVED

    def _choose(
        self, state: _Query, run: _Run, now: datetime, reserved: Mapping[str, int] | None = None
    ) -> tuple[_Account | None, bool]:
        """The account to ask next, and whether the configuration is a (free) repeat for it;
        ``reserved``: new configurations already promised to each account (by a round's assignment)."""
        usable = {a.spec.name: a for a in run.accounts if a.usable and a.spec.name not in state.tried}
        reserved = reserved or {}
        with run.lock:
            for name in run.index.servers(state.key, now):
                if name in usable:
                    return usable[name], True
            budgets = [
                (run.index.remaining(n, a.spec.config_limit, now) - reserved.get(n, 0), -a.index, a)
                for n, a in usable.items()
            ]
        best = max((b for b in budgets if b[0] > 0), key=lambda b: b[:2], default=None)
        return (best[2] if best else None), False

    def _client(self, account: _Account, run: _Run, state: _Query) -> Any:
        if account.client is None:
            try:
                with run.factories:
                    account.client = account.spec.client_factory()
            except Exception as exc:  # caller code: any failure makes the account unusable this run
                with run.lock:
                    account.status = AccountStatus.BROKEN
                why = f"{type(exc).__name__}: {clean_message(str(exc))}"
                run.note(state.index, f"account {account.spec.name}: no EC2 client ({why}); not asked")
        return account.client

    def _mark_full(self, state: _Query, run: _Run, name: str) -> None:
        now = self._clock.now()
        with run.lock:
            until = (run.index.oldest(name, now) or now) + CONFIG_WINDOW + WINDOW_MARGIN
            run.index.add_full(name, until)
        run.note(
            state.index,
            f"{state.key}: account {name} is full ({_CONFIG_LIMIT}) until {until.isoformat()}; "
            "moved to the next account",
        )
        log.info("aws_sps: account %s full until %s", name, until.isoformat())

    def _no_account(self, state: _Query, run: _Run) -> FailedQuery:
        now = self._clock.now()
        state.account = None
        usable = [a for a in run.accounts if a.usable]
        if usable:
            with run.lock:
                frees = [
                    (a.spec.name, run.index.frees_at(a.spec.name, a.spec.config_limit, now)) for a in usable
                ]
            shown = ", ".join(f"{n} until {t.isoformat() if t else 'unknown'}" for n, t in frees)
            message = f"every account used its new configurations of the last 24 h ({shown}); add one or wait"
            return self._failed(state, FailureReason.ALL_ACCOUNTS_FULL, message, None)
        why = ", ".join(f"{a.spec.name} {a.status}" for a in run.accounts)
        message = f"no account may be asked ({why}); give the accounts ec2:GetSpotPlacementScores"
        return self._failed(state, FailureReason.NO_USABLE_ACCOUNT, message, None)

    def _failed(self, state: _Query, reason: FailureReason, message: str, status: int | None) -> FailedQuery:
        return FailedQuery(
            index=state.index,
            key=state.key,
            instance_type=state.query.instance_type,
            regions=tuple(state.query.regions),
            target_capacity=self.target_capacity,
            reason=reason,
            message=message,
            account=state.account,
            status=status,
            attempts=state.attempts,
        )

    def _fetch(self, state: _Query, run: _Run, account: _Account, client: Any, *, repeat: bool) -> list[_Row]:
        """Every page of the query's answer through ``account`` (all or nothing)."""
        query, name = state.query, account.spec.name
        params: dict[str, Any] = {
            "InstanceTypes": [query.instance_type],
            "TargetCapacity": self.target_capacity,
            "TargetCapacityUnitType": "units",
            "SingleAvailabilityZone": True,
            "RegionNames": list(query.regions),
            "MaxResults": self.max_results,
        }
        what = f"{query.instance_type} in [{','.join(query.regions)}] at capacity {self.target_capacity}"
        rows: list[_Row] = []
        tokens: set[str] = set()
        for page in range(MAX_PAGES):
            answer, sent_at = self._call(
                client, params, state, run, account, what=f"{what} via account {name}"
            )
            if page == 0 and not repeat:  # EC2 counted the configuration, whatever the next pages do
                with run.lock:
                    run.index.add_served(state.key, name, sent_at)
            rows.extend(_parse(answer, what))
            if not (token := answer.get("NextToken")):
                break
            if str(token) in tokens:
                raise PayloadError(f"{SOURCE}: {what} repeated a NextToken", source=SOURCE)
            tokens.add(str(token))
            params["NextToken"] = str(token)
        else:
            raise PayloadError(f"{SOURCE}: {what} had a NextToken after {MAX_PAGES} pages", source=SOURCE)
        kept = [r for r in rows if r[0] in query.regions]
        if len(kept) < len(rows):
            run.note(
                state.index, f"{state.key}: {len(rows) - len(kept)} score(s) of regions not asked dropped"
            )
        if len(kept) >= TOP_ZONES and query.zones > len(kept):
            state.truncated = True
            run.note(
                state.index,
                f"{state.key}: the answer holds the top {len(kept)} of {query.zones} zones; the others "
                "are unknown this run",
            )
        return kept

    def _call(
        self, client: Any, params: dict[str, Any], state: _Query, run: _Run, account: _Account, *, what: str
    ) -> tuple[dict[str, Any], datetime]:
        """One page, retried on throttling and transient errors: the answer, and when it was asked."""
        sent_at = self._clock.now()
        answer: Any = None
        backoff = account.backoff
        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.max_attempts),
            wait=lambda retry: backoff.delay(retry.attempt_number),
            retry=tenacity.retry_if_exception_type(Transient),
            sleep=self._clock.sleep,
            reraise=True,
        )
        for attempt in retrying:
            with attempt:
                sent_at = self._clock.now()
                state.attempts += 1
                with run.lock:
                    run.report.requests += 1
                    run.report.retried += attempt.retry_state.attempt_number > 1
                try:
                    answer = client.get_spot_placement_scores(**params)
                except Exception as exc:
                    if (error := _classify(exc, what)) is None:
                        raise  # not a provider error: a bug
                    raise error from None
        if not isinstance(answer, dict):
            raise PayloadError(f"{SOURCE}: {what}: the answer is a {type(answer).__name__}", source=SOURCE)
        return answer, sent_at

    def _result(
        self,
        run: _Run,
        rows: list[tuple[str, _Row]],
        failed: list[FailedQuery],
        served_by: dict[str, str],
        truncated: list[str],
    ) -> AwsSpsResult:
        report = run.report
        report.notes.extend(text for _, text in sorted(run.notes))
        records = [(size, *row, self.target_capacity, pd.NA) for size, row in rows]
        columns = ["size", "region", "zone", "score", "score_value", "desired_count", "quota_available"]
        frame = conform(pd.DataFrame.from_records(records, columns=columns), SPS_SCHEMA, source=SOURCE)
        before = len(frame)
        frame = frame.drop_duplicates(subset=["size", "region", "zone"], keep="first").reset_index(drop=True)
        if len(frame) < before:
            report.notes.append(f"{before - len(frame)} duplicate score(s) from overlapping queries dropped")
        report.failures.extend(f.to_failure() for f in failed)
        finished = self._clock.now()
        statuses: dict[str, AccountStatus] = {}
        for account in run.accounts:
            name, limit = account.spec.name, account.spec.config_limit
            status = account.status
            if status is AccountStatus.USABLE and run.index.remaining(name, limit, finished) == 0:
                status = AccountStatus.FULL
            statuses[name] = status
            frees = run.index.frees_at(name, limit, finished)
            report.notes.append(
                f"account {name}: {status}, {run.index.used(name, finished)} of {limit} new "
                "configuration(s) used in the last 24 h"
                + (f", frees at {frees.isoformat()}" if frees else "")
            )
        if full := sum(f.reason is FailureReason.ALL_ACCOUNTS_FULL for f in failed):
            report.notes.append(f"all accounts full: {full} query(ies) not scored")
        log.info(
            "aws_sps: %d/%d queries scored, %d failed, %d requests (%d retries), %d rows",
            *(report.succeeded, report.planned, report.failed, report.requests, report.retried, len(frame)),
        )
        return AwsSpsResult(
            frame=frame,
            report=report.build(rows=len(frame), at=finished),
            book=run.index.book(pruned_at=finished),
            failed_queries=tuple(failed),
            truncated=tuple(truncated),
            served_by=served_by,
            accounts=statuses,
        )


def _parse(answer: dict[str, Any], what: str) -> list[_Row]:
    """The rows of one page; a wrong shape is a :class:`PayloadError`."""
    entries = answer.get("SpotPlacementScores", [])
    if not isinstance(entries, list):
        raise PayloadError(f"{SOURCE}: {what}: SpotPlacementScores is not a list", source=SOURCE)
    rows: list[_Row] = []
    for entry in entries:
        region = entry.get("Region") if isinstance(entry, dict) else None
        zone = entry.get("AvailabilityZoneId") if isinstance(entry, dict) else None
        if not isinstance(region, str) or not region or not isinstance(zone, str) or not zone:
            shown = clean_message(repr(entry))
            raise PayloadError(
                f"{SOURCE}: {what}: an entry lacks Region or AvailabilityZoneId: {shown}", source=SOURCE
            )
        score = entry.get("Score")
        known = isinstance(score, int) and not isinstance(score, bool) and 1 <= score <= 10
        rows.append((region, zone, None if score is None else str(score), score if known else None))
    return rows


def _classify(exc: BaseException, what: str) -> CollectError | None:
    """The spotlake error for a botocore failure of ``what``; ``None`` for anything else (a bug)."""
    # Not _boto.aws_error: this one knows MaxConfigLimitExceeded, returns None for non-botocore
    # errors (bugs, re-raised) and retries only connection errors of botocore's own, not all of them.
    from botocore import exceptions as boto

    if isinstance(exc, boto.ClientError):
        code, message, status = client_error_parts(exc, unknown_code="ClientError")
        text = f"{SOURCE}: {what} refused with {code}: {message}"
        if code == _CONFIG_LIMIT:
            return _ConfigLimit(text, source=SOURCE, status=status)
        if code in _THROTTLED or code in _UNAVAILABLE or (status or 0) >= 500:
            return Transient(text, source=SOURCE, status=status)
        if code in _DENIED or code in _BAD_KEY or code in ("UnrecognizedClientException", "OptInRequired"):
            hint = "; check its credentials and its permission for ec2:GetSpotPlacementScores"
            return AuthError(text + hint, source=SOURCE, status=status)
        return InvalidRequestError(text, source=SOURCE, status=status)
    text = f"{SOURCE}: {what}: {type(exc).__name__}: {clean_message(str(exc))}"
    if isinstance(exc, boto.NoCredentialsError | boto.PartialCredentialsError):
        return AuthError(f"{SOURCE}: {what}: no usable AWS credentials ({type(exc).__name__})", source=SOURCE)
    if isinstance(exc, boto.ConnectionError | boto.HTTPClientError):
        return Transient(f"{text} (could not reach EC2)", source=SOURCE)
    if isinstance(exc, boto.BotoCoreError):
        return InvalidRequestError(f"{text} (botocore refused the call)", source=SOURCE)
    return None
