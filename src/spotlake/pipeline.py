"""One collection cycle: collect, plan, score, diff, store, notify. One library call, one CLI command.

:func:`run_cycle` does, for one run time ``at`` (SPEC §5):

1. take the store's run lock (a second overlapping run gets :class:`~spotlake.errors.LockedError`);
2. read the committed state: rotation, the day's SPS plan, learned invalid values, the quota ledger,
   the T2/T3 history; if ``at`` was already committed the run is a no-op (idempotent rerun);
3. pick this run's desired count from the rotation (count 1 and a rebuilt plan on a new UTC day);
4. collect prices, eviction rates and size families concurrently with the SPS plan (when the day's
   plan must be rebuilt, SPS waits for the price crawl, whose support set is the planner's input);
5. score: merge, T2/T3 history, diff against the previous state (``covered`` tells failures from
   disappearances, so a failed call never reads as "ceased");
6. write raw frames, the merged snapshot and the changeset (idempotent per run minute), then
7. commit the new state with compare-and-swap, and only then publish: the changes to the
   time-series sink, the snapshot to extra writers, the counts to the metrics sink, and a delivery
   marker. A run that fails before its commit leaves the previous state intact, publishes nothing,
   removes its frames, and its count is retried by the next run; a run whose publishing failed after
   the commit is delivered again, from the store, by the next run (same records, same versions).

Failures are reported in the returned :class:`RunReport` and, when a notifier is configured, to Slack.

**Sharded collection** (``run_cycle(..., shard=Shard(i, n))``, ``spotlake collect azure --shard i/n``):
``n`` workers (e.g. an AWS Batch array job) split one run's SPS calls. Each worker, *without* the
run lock, reads the committed state, makes the same rotation decision and the same deterministic
day plan as every other worker, collects the calls of :func:`~spotlake.scoring.planner.shard_of`
with only ``subscriptions[i::n]`` (disjoint quota slots, its own ledger document
``quota.shard-i-of-n``) and writes a *part* (the SPS frame plus a JSON document) under
``shards/{run}/`` in the store. The worker that finds all ``n`` parts finalises: under the lock it
runs steps 2-7 above with the SPS collection replaced by the merged parts, then deletes them. A run
whose parts never all arrive is never committed (the next run retries its count); see
docs/operations.md, "Sharded collection".
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Final, Literal, Protocol, cast, get_args

import attrs
import httpx
import pandas as pd

from spotlake.clock import Clock, SystemClock, ensure_utc
from spotlake.collect.auth import AzureCredentials, BearerTokenSource, TokenProvider
from spotlake.collect.base import AzureEndpoints, CollectReport, CollectResult
from spotlake.collect.eviction import EvictionCollector
from spotlake.collect.prices import PriceCollector, PriceResult
from spotlake.collect.quota import DEFAULT_BUDGET, DEFAULT_WINDOW, QuotaLedger
from spotlake.collect.skus import SkuCollector
from spotlake.collect.sps import FailedCall, FailureReason, SpsCollector, SpsResult
from spotlake.errors import (
    ConfigError,
    ConflictError,
    CorruptStoreError,
    IncompleteDataError,
    LockedError,
    SpotlakeError,
)
from spotlake.model import DEFAULT_PLAN_SEARCH, SpsCall
from spotlake.notify import Notifier
from spotlake.scoring.engine import DEFAULT_MAX_AGE, Coverage, ScoringState, score_run
from spotlake.scoring.planner import Pair, Plan, merge_shard_frames, plan_calls, repair_plan, shard_plan
from spotlake.scoring.rotation import (
    PLAN_DOC,
    ROTATION_DOC,
    RotationState,
    RunDecision,
    begin_run,
    finish_run,
    learn_invalid,
)
from spotlake.storage.base import (
    RAW_SOURCES,
    FrameKind,
    MetricsSink,
    SnapshotStore,
    StateSnapshot,
    TimeSeriesSink,
)
from spotlake.storage.core import Backend
from spotlake.storage.layout import decode_doc, decode_frame, encode_doc, encode_frame, frame_key

__all__ = [
    "AzureAccess",
    "CycleOptions",
    "PendingRun",
    "RunReport",
    "Shard",
    "SnapshotWriter",
    "pending_runs",
    "run_cycle",
]

log = logging.getLogger(__name__)

ProgressFactory = Callable[[str], Callable[[int, int | None], None] | None]

#: State document names in the store (rotation and plan names come from spotlake.scoring.rotation).
DOC_QUOTA = "quota"
DOC_LAST_RUN = "last_run"


@attrs.frozen(kw_only=True)
class CycleOptions:
    """How a cycle runs. Every default is what the original deployment needed, or safer."""

    #: Zonal SPS requests (scores per availability zone) or regional ones.
    zonal: bool = True
    max_regions: int = 8
    max_sizes: int = 5
    #: Re-plans searching tie-break orders for fewer calls when the day's plan is rebuilt (see
    #: ``plan_calls(search=...)``); deterministic, so every shard worker gets the same plan.
    plan_search: int = DEFAULT_PLAN_SEARCH
    #: SPS calls per (subscription, URL location) per window. Observed limit: ~10 per hour.
    sps_budget: int = DEFAULT_BUDGET
    #: 62 minutes, not 60: see spotlake.collect.quota (we stamp a call before it leaves).
    sps_window: timedelta = DEFAULT_WINDOW
    #: URL locations to spread SPS calls over; empty = every region of the support set.
    sps_locations: tuple[str, ...] = ()
    sps_concurrency: int = 8
    price_concurrency: int = 16
    #: T2/T3 history entries older than this are forgotten (see spotlake.scoring.engine).
    history_max_age: timedelta = DEFAULT_MAX_AGE
    #: Seconds to wait for another run's lock before giving up (0 = fail at once).
    lock_timeout: float = 0.0


@attrs.frozen(kw_only=True)
class AzureAccess:
    """How to reach Azure: credentials, endpoints, and (for tests/emulator) injected transports."""

    credentials: AzureCredentials
    endpoints: AzureEndpoints = attrs.field(factory=AzureEndpoints)
    #: httpx transport for the REST collectors (prices, SPS, SKUs); None = real network.
    transport: httpx.AsyncBaseTransport | None = None
    #: azure-core transport for the SDK clients (Resource Graph, azure-identity); None = default.
    azure_transport: Any = None
    #: Bearer token source; None = a TokenProvider over ``credentials``.
    token: BearerTokenSource | None = None


class SnapshotWriter(Protocol):
    """Anything that publishes each run's merged snapshot elsewhere (e.g. the original's S3 layout)."""

    def write(self, snapshot: pd.DataFrame, *, run_at: datetime) -> object: ...


#: ``pending``: a shard worker wrote its part and other shards' parts are still missing.
RunStatus = Literal["committed", "skipped", "failed", "pending"]


@attrs.frozen(kw_only=True)
class RunReport:
    """What one cycle did. ``to_json()`` is what the CLI prints with ``--json`` and the store keeps."""

    at: datetime
    status: RunStatus
    desired_count: int | None = None
    new_day: bool = False
    state_version: str | None = None
    plan: Mapping[str, Any] = attrs.field(factory=dict)
    collectors: Mapping[str, Mapping[str, Any]] = attrs.field(factory=dict)
    scoring: Mapping[str, Any] = attrs.field(factory=dict)
    sinks: Mapping[str, Mapping[str, Any]] = attrs.field(factory=dict)
    failed_calls: int = 0
    seconds: float = 0.0
    error: str | None = None
    error_type: str | None = None
    #: The run committed but feeding the sinks failed; the next run delivers it again.
    delivery_error: str | None = None
    #: For sharded runs: this worker's shard, the parts present/missing, who finalised.
    shard: Mapping[str, Any] = attrs.field(factory=dict)

    @property
    def ok(self) -> bool:
        return self.status != "failed"

    @property
    def counts(self) -> dict[str, int]:
        """The per-run counts sent to the metrics sink."""
        scoring = self.scoring
        sps = self.collectors.get("sps", {})
        return {
            "collected": int(sps.get("rows", 0)),
            "merged": int(scoring.get("snapshot_rows", 0)),
            "new": int(scoring.get("new", 0)),
            "changed": int(scoring.get("changed", 0)),
            "ceased": int(scoring.get("ceased", 0)),
            "failed_calls": self.failed_calls,
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(),
            "status": self.status,
            "desired_count": self.desired_count,
            "new_day": self.new_day,
            "state_version": self.state_version,
            "plan": dict(self.plan),
            "collectors": {k: dict(v) for k, v in self.collectors.items()},
            "scoring": dict(self.scoring),
            "sinks": {k: dict(v) for k, v in self.sinks.items()},
            "failed_calls": self.failed_calls,
            "seconds": round(self.seconds, 3),
            "error": self.error,
            "error_type": self.error_type,
            "delivery_error": self.delivery_error,
            "shard": dict(self.shard),
        }


# --- shards ----------------------------------------------------------------------------------

#: Where shard workers leave their parts: ``shards/{run}/part-{i}-of-{n}.json|.parquet``.
SHARDS_PREFIX: Final = "shards/"
#: Environment variable AWS Batch sets in each child of an array job (0-based).
BATCH_INDEX_ENV: Final = "AWS_BATCH_JOB_ARRAY_INDEX"
#: Layout version of a part's JSON document.
PART_FORMAT: Final = 1

_SHARD_TEXT = re.compile(r"^\s*(\d+|auto)\s*/\s*(\d+)\s*$")
_PART_FILE = re.compile(r"^part-(\d+)-of-(\d+)\.json$")
_RUN_DIR = re.compile(r"^(\d{4}-\d{2}-\d{2}T\d{2}-\d{2})/$")


@attrs.frozen(kw_only=True)
class Shard:
    """Shard ``index`` (0-based, like ``AWS_BATCH_JOB_ARRAY_INDEX``) of ``count`` parallel workers."""

    index: int
    count: int

    def __attrs_post_init__(self) -> None:
        if self.count < 1:
            raise ConfigError(f"a run is split into at least 1 shard, got {self.count}")
        if not 0 <= self.index < self.count:
            raise ConfigError(
                f"shard index must be within 0..{self.count - 1} for {self.count} shards "
                f"(0-based, like {BATCH_INDEX_ENV}), got {self.index}"
            )

    @classmethod
    def parse(cls, text: str, *, environ: Mapping[str, str] | None = None) -> Shard:
        """``"i/n"`` (e.g. ``"1/3"``), or ``"auto/n"`` taking the index from ``AWS_BATCH_JOB_ARRAY_INDEX``."""
        match = _SHARD_TEXT.fullmatch(text)
        if match is None:
            raise ConfigError(f"--shard {text!r}: expected INDEX/COUNT (0-based, e.g. 0/3) or auto/COUNT")
        raw_index, count = match.group(1), int(match.group(2))
        if raw_index == "auto":
            env = os.environ if environ is None else environ
            value = env.get(BATCH_INDEX_ENV, "")
            if not value.strip().isdigit():
                raise ConfigError(
                    f"--shard {text!r}: {BATCH_INDEX_ENV} is {'not set' if not value else repr(value)}; "
                    "'auto' only works inside an AWS Batch array job (or pass the index: --shard 0/3)"
                )
            raw_index = value.strip()
        return cls(index=int(raw_index), count=count)

    @property
    def label(self) -> str:
        """``shard-1-of-3``: used in file and state document names."""
        return f"shard-{self.index}-of-{self.count}"

    @property
    def ledger_doc(self) -> str:
        """The state document holding this shard's quota ledger."""
        return f"{DOC_QUOTA}.{self.label}"

    def subscriptions(self, subscriptions: Sequence[str]) -> tuple[str, ...]:
        """This shard's subscriptions, ``subscriptions[index::count]``: disjoint quota slots per shard."""
        if len(subscriptions) < self.count:
            raise ConfigError(
                f"{self.count} shards need at least {self.count} subscriptions (each shard uses its own, so "
                f"shards never compete for quota), but the credentials list {len(subscriptions)}; "
                "add subscriptions or run fewer shards"
            )
        return tuple(subscriptions[self.index :: self.count])


@attrs.frozen(kw_only=True)
class PendingRun:
    """A sharded run time with parts in the store but not (yet) committed."""

    at: str
    count: int
    present: tuple[int, ...]

    @property
    def missing(self) -> tuple[int, ...]:
        return tuple(i for i in range(self.count) if i not in self.present)

    def to_json(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "count": self.count,
            "present": list(self.present),
            "missing": list(self.missing),
        }


def _backend(store: SnapshotStore) -> Backend:
    backend = getattr(store, "backend", None)
    if backend is None:
        raise ConfigError(
            f"sharded collection needs a store with an object backend (a directory or s3:// store from "
            f"spotlake.storage.open_store); {type(store).__name__} has none"
        )
    return cast(Backend, backend)


def _run_dir(at: datetime) -> str:
    return f"{SHARDS_PREFIX}{at:%Y-%m-%dT%H-%M}/"


def _part_stem(at: datetime, shard: Shard) -> str:
    return f"{_run_dir(at)}part-{shard.index}-of-{shard.count}"


def pending_runs(store: SnapshotStore) -> list[PendingRun]:
    """Sharded runs with parts in ``store`` (oldest first), for ``spotlake status`` and operators.

    A run committed by its finaliser has no parts left; one listed here waits for its missing
    shards (rerun them), or is older than the last committed run and will never commit (its parts
    are removed by the next finalised run).
    """
    backend = getattr(store, "backend", None)
    if backend is None:
        return []
    out: list[PendingRun] = []
    for child in sorted(cast(Backend, backend).children(SHARDS_PREFIX)):
        run = _RUN_DIR.fullmatch(child)
        if run is None:
            continue
        by_count: dict[int, list[int]] = {}
        for name in cast(Backend, backend).children(SHARDS_PREFIX + child):
            part = _PART_FILE.fullmatch(name)
            if part is not None:
                by_count.setdefault(int(part.group(2)), []).append(int(part.group(1)))
        day, _, hm = run.group(1).partition("T")
        for count, present in sorted(by_count.items()):
            out.append(
                PendingRun(at=f"{day}T{hm.replace('-', ':')}", count=count, present=tuple(sorted(present)))
            )
    return out


# --- the cycle -------------------------------------------------------------------------------


def _no_progress(_label: str) -> None:
    return None


#: SPS failure reasons that mean "try this count again next run" (not the data's fault).
_RETRY_REASONS: frozenset[FailureReason] = frozenset(
    {"quota", "retries-exhausted", "attempt-budget", "payload"}
)


@attrs.frozen(kw_only=True)
class _SpsOutcome:
    """One run's SPS result, whether collected here or merged from shard parts."""

    plan: Plan
    frame: pd.DataFrame = attrs.field(eq=False)
    report: CollectReport
    failed_calls: tuple[FailedCall, ...]
    covered_pairs: frozenset[Pair]
    invalid_regions: frozenset[str] = frozenset()
    invalid_sizes: frozenset[str] = frozenset()
    #: Quota ledgers to commit, by state document name.
    ledgers: Mapping[str, Mapping[str, Any]] = attrs.field(factory=dict)
    #: Set when the merged parts did not all follow one plan: the count is retried next run.
    incomplete: str | None = None

    @classmethod
    def of(cls, result: SpsResult, *, plan: Plan, ledger_doc: str, at: datetime) -> _SpsOutcome:
        return cls(
            plan=plan,
            frame=result.frame,
            report=result.report,
            failed_calls=result.failed_calls,
            covered_pairs=result.covered_pairs,
            invalid_regions=result.invalid_regions,
            invalid_sizes=result.invalid_sizes,
            ledgers={ledger_doc: result.ledger.to_json(at)},
        )


@attrs.define
class _Collected:
    prices: PriceResult
    eviction: CollectResult
    skus: CollectResult
    sps: _SpsOutcome


@attrs.frozen(kw_only=True)
class _Env:
    """What a cycle was given (everything but the run time)."""

    store: SnapshotStore
    azure: AzureAccess
    opts: CycleOptions
    timeseries: TimeSeriesSink | None
    metrics: MetricsSink | None
    extra_writers: Sequence[SnapshotWriter]
    clock: Clock
    progress: ProgressFactory

    def token(self) -> BearerTokenSource:
        azure = self.azure
        return azure.token or TokenProvider(
            azure.credentials, endpoints=azure.endpoints, clock=self.clock, transport=azure.azure_transport
        )


@attrs.frozen(kw_only=True)
class _Start:
    """The committed state a run starts from and what the rotation decided for it."""

    state: StateSnapshot
    rotation: RotationState
    decision: RunDecision
    #: The day's stored plan when it can be reused (``None``: rebuild it from the price crawl).
    stored_plan: Plan | None

    @property
    def day(self) -> str:
        return self.decision.day.isoformat()


def run_cycle(
    at: datetime,
    *,
    store: SnapshotStore,
    azure: AzureAccess,
    options: CycleOptions | None = None,
    timeseries: TimeSeriesSink | None = None,
    metrics: MetricsSink | None = None,
    extra_writers: Sequence[SnapshotWriter] = (),
    notifier: Notifier | None = None,
    clock: Clock | None = None,
    progress: ProgressFactory = _no_progress,
    shard: Shard | None = None,
) -> RunReport:
    """Run one collection cycle for ``at`` (see the module docstring). Never raises for a failed run:
    the report says ``status="failed"`` with the error, except for :class:`LockedError` (another run is
    in progress), which is raised so the caller can tell "busy" from "broken".

    With ``shard``, collect only that shard's SPS calls and store them as a part (status
    ``"pending"``); the worker that completes the set of parts finalises and commits the run.

    ``progress(label)`` returns a ``(done, total)`` callback for "prices", "sps" and, when the day's
    plan is rebuilt with a search budget, "plan"; the "plan" callback is called from a worker thread.
    """
    env = _Env(
        store=store,
        azure=azure,
        opts=options or CycleOptions(),
        timeseries=timeseries,
        metrics=metrics,
        extra_writers=extra_writers,
        clock=clock or SystemClock(),
        progress=progress,
    )
    at = ensure_utc(at).replace(second=0, microsecond=0)
    started = time.monotonic()
    run_id = at.strftime("%Y-%m-%dT%H:%M")
    report: RunReport | None = None
    try:
        if shard is None:
            with store.lock(run_id, timeout=env.opts.lock_timeout):
                report = _guarded(run_id, at, lambda: _run_locked(at, env))
                if report.status == "failed":
                    _discard_quietly(env, run_id)
        else:
            report = _guarded(run_id, at, lambda: _run_shard(at, env, shard))
    except LockedError:
        raise
    except SpotlakeError as exc:
        # Taking or releasing the lock failed. After a commit the run stands; otherwise it failed.
        if report is not None and report.status == "committed":
            log.warning("run %s committed, but releasing the store's lock failed: %s", run_id, exc)
        else:
            report = RunReport(at=at, status="failed", error=str(exc), error_type=type(exc).__name__)
    report = attrs.evolve(report, seconds=time.monotonic() - started)
    if notifier is not None and (report.status == "failed" or report.delivery_error):
        what = f" ({shard.label})" if shard is not None else ""
        if report.status == "failed":
            notifier.notify(f"spotlake run {run_id}{what} failed", f"{report.error_type}: {report.error}")
        else:
            notifier.notify(f"spotlake run {run_id}{what}: sinks not fed", str(report.delivery_error))
    return report


def _guarded(run_id: str, at: datetime, body: Callable[[], RunReport]) -> RunReport:
    """``body()``, with a failure turned into a ``failed`` report (a held lock still raises)."""
    try:
        return body()
    except LockedError:
        raise
    except SpotlakeError as exc:
        log.error("run %s failed: %s", run_id, exc)
        return RunReport(at=at, status="failed", error=str(exc), error_type=type(exc).__name__)
    except Exception as exc:  # a bug or an SDK error nobody mapped: still a failed run, not a crash
        log.exception("run %s failed unexpectedly", run_id)
        return RunReport(
            at=at,
            status="failed",
            error=f"unexpected {type(exc).__name__}: {exc}",
            error_type="InternalError",
        )


def _doc(state: StateSnapshot, name: str) -> Mapping[str, Any] | None:
    doc = state.docs.get(name)
    return doc if doc else None


def _start(state: StateSnapshot, at: datetime) -> _Start | RunReport:
    """What the run at ``at`` does from ``state``, or the ``skipped`` report if it is committed."""
    last = _doc(state, DOC_LAST_RUN)
    if last and last.get("at") == at.isoformat() and last.get("status") == "committed":
        # Idempotent rerun: the run time is committed already; redoing it would collect the next
        # count on top of itself. (A run that failed before committing is simply run again.)
        return RunReport(
            at=at,
            status="skipped",
            desired_count=last.get("desired_count"),
            state_version=state.version,
        )
    if last and last.get("at", "") > at.isoformat():
        raise ConfigError(
            f"run time {at.isoformat()} is before the last committed run {last.get('at')}; "
            "runs must move forward in time (history and diffs are ordered)"
        )

    rotation = RotationState.from_json(_doc(state, ROTATION_DOC))
    decision = begin_run(rotation, at)
    plan_doc = _doc(state, PLAN_DOC)
    plan: Plan | None = None
    if plan_doc and plan_doc.get("date") == decision.day.isoformat() and not decision.rebuild_plan:
        plan = Plan.from_json(plan_doc["plan"])
    if decision.rebuild_plan:
        # The day's rebuild forgets learned invalid values too: Azure adds regions and sizes, and a
        # value that is still invalid costs one HTTP 400 to learn again.
        rotation = attrs.evolve(rotation, invalid_regions=(), invalid_sizes=(), invalid_pairs=())
    return _Start(state=state, rotation=rotation, decision=decision, stored_plan=plan)


def _run_locked(at: datetime, env: _Env, parts: Callable[[], Sequence[_Part]] | None = None) -> RunReport:
    """Steps 2-7 under the lock; SPS is collected here, or merged from the shard parts ``parts()``
    reads (only once the state shows the run uncommitted: a finaliser that lost the race to another
    one finds the run committed and its parts gone, and reports ``skipped``)."""
    start = _start(env.store.read_state(), at)
    if isinstance(start, RunReport):
        return start
    _discard_unpublished(env, start.state)
    _deliver_pending(env, start.state)
    token = env.token()
    if parts is None:

        async def sps(prices: Callable[[], Awaitable[PriceResult]]) -> _SpsOutcome:
            plan = await _day_plan(start, prices, env)
            result = await _collect_sps(
                plan,
                plan.calls,
                desired_count=start.decision.desired_count,
                subscriptions=env.azure.credentials.subscriptions,
                ledger_doc=_doc(start.state, DOC_QUOTA),
                env=env,
                token=token,
            )
            return _SpsOutcome.of(result, plan=plan, ledger_doc=DOC_QUOTA, at=at)

    else:
        merged = _merge_parts(parts(), start, at)

        async def sps(prices: Callable[[], Awaitable[PriceResult]]) -> _SpsOutcome:
            return merged

    collected = asyncio.run(_collect(env, token, sps))
    return _score_and_commit(at, env, start, collected)


def _score_and_commit(at: datetime, env: _Env, start: _Start, collected: _Collected) -> RunReport:
    """Steps 5-7, shared by plain and sharded runs."""
    store, opts, decision = env.store, env.opts, start.decision
    desired_count = decision.desired_count
    sps = collected.sps
    if not sps.report.succeeded and sps.report.planned:
        reasons = sorted({f.reason for f in sps.failed_calls})
        raise IncompleteDataError(
            f"sps: none of the {sps.report.planned} calls succeeded ({', '.join(reasons)}); "
            f"the count {desired_count} will be retried next run. First failure: {sps.report.failures[0]}",
            source="sps",
            missing=[str(f) for f in sps.report.failures[:20]],
        )
    prev_frames = start.state.frames
    prev = ScoringState.from_frames(prev_frames) if prev_frames else None
    covered = Coverage(
        sps_pairs=sorted(sps.covered_pairs),
        prices_complete=collected.prices.report.complete,
        eviction_complete=collected.eviction.report.complete,
        skus_complete=collected.skus.report.complete,
        zonal=opts.zonal,
    )
    scored = score_run(
        prev,
        sps=sps.frame,
        prices=collected.prices.frame,
        eviction=collected.eviction.frame,
        skus=collected.skus.frame,
        at=at,
        desired_count=desired_count,
        covered=covered,
        max_age=opts.history_max_age,
    )

    store.put_frame(kind="raw", source="prices", at=at, frame=collected.prices.frame)
    store.put_frame(kind="raw", source="sps", at=at, frame=sps.frame)
    store.put_frame(kind="raw", source="eviction", at=at, frame=collected.eviction.frame)
    store.put_frame(kind="raw", source="skus", at=at, frame=collected.skus.frame)
    store.put_frame(kind="merged", at=at, frame=scored.snapshot)
    store.put_frame(kind="changes", at=at, frame=scored.changes)

    # A call that failed for quota or transient reasons means this count is not fully collected:
    # the rotation retries it next run instead of skipping it silently (for shards: over the union).
    retry_count = sps.incomplete is not None or any(f.reason in _RETRY_REASONS for f in sps.failed_calls)
    new_rotation = finish_run(
        learn_invalid(start.rotation, regions=sps.invalid_regions, sizes=sps.invalid_sizes),
        decision,
        succeeded=not retry_count,
    )
    scoring_json = dict(scored.report.to_json())
    scoring_json["snapshot_rows"] = len(scored.snapshot)
    scoring_json["changes_rows"] = len(scored.changes)
    report = RunReport(
        at=at,
        status="committed",
        desired_count=desired_count,
        new_day=decision.new_day,
        plan=sps.plan.report.to_json(),
        collectors={
            "prices": collected.prices.report.to_json(),
            "sps": sps.report.to_json(),
            "eviction": collected.eviction.report.to_json(),
            "skus": collected.skus.report.to_json(),
        },
        scoring=scoring_json,
        failed_calls=len(sps.failed_calls),
    )

    # Documents this run does not write (another mode's quota ledgers, say) are carried over: a
    # commit replaces the whole state.
    docs: dict[str, Mapping[str, Any]] = dict(start.state.docs)
    docs.update(sps.ledgers)
    docs.update(
        {
            ROTATION_DOC: new_rotation.to_json(),
            PLAN_DOC: {"date": start.day, "plan": sps.plan.to_json()},
            DOC_LAST_RUN: {
                "at": at.isoformat(),
                "status": "committed",
                "desired_count": desired_count,
                "report": report.to_json(),
            },
        }
    )
    version = store.commit_state(
        expected_version=start.state.version,
        frames=scored.state.to_frames(),
        docs=docs,
        run_id=at.strftime("%Y-%m-%dT%H:%M"),
    )
    report = attrs.evolve(report, state_version=version)
    # Only now, with the run committed, is it published: a run that fails before its commit
    # never reaches a sink, and a crash right here is made good by the next run (_deliver_pending).
    try:
        sinks = _deliver(env, at, changes=scored.changes, snapshot=scored.snapshot, counts=report.counts)
    except SpotlakeError as exc:
        log.error("run %s committed but the sinks were not fed: %s", at.isoformat(), exc)
        return attrs.evolve(
            report, delivery_error=f"{type(exc).__name__}: {exc} (the next run delivers it again)"
        )
    return attrs.evolve(report, sinks=sinks)


#: Marker objects saying a committed run's changes reached the sinks.
DELIVERED_PREFIX: Final = "delivered/"


def _delivered_key(at: datetime) -> str:
    return f"{DELIVERED_PREFIX}{at:%Y-%m-%dT%H-%M}"


def _deliver(
    env: _Env,
    at: datetime,
    *,
    changes: pd.DataFrame,
    snapshot: pd.DataFrame,
    counts: Mapping[str, int] | None,
) -> dict[str, dict[str, Any]]:
    """Feed the sinks one committed run, then mark it delivered. Safe to repeat: Timestream keeps
    one record per (dimensions, time, version) and the other writers overwrite their objects."""
    sinks: dict[str, dict[str, Any]] = {}
    if env.timeseries is not None:
        sinks["timeseries"] = attrs.asdict(env.timeseries.write(changes, run_at=at))
    for writer in env.extra_writers:
        writer.write(snapshot, run_at=at)
    if env.metrics is not None and counts is not None:
        sinks["metrics"] = attrs.asdict(env.metrics.write_run(counts, run_at=at))
    backend = getattr(env.store, "backend", None)
    if backend is not None:
        cast(Backend, backend).put(_delivered_key(at), b"{}")
    return sinks


def _last_committed_at(state: StateSnapshot) -> datetime | None:
    last = _doc(state, DOC_LAST_RUN)
    if not last or last.get("status") != "committed":
        return None
    return datetime.fromisoformat(str(last["at"]))


def _discard_quietly(env: _Env, run_id: str) -> None:
    """After a failed run: remove what it wrote, if possible (the next run would otherwise do it)."""
    try:
        _discard_unpublished(env)
    except SpotlakeError as exc:
        log.warning("run %s: could not remove the failed run's frames yet (%s)", run_id, exc)


def _deliver_pending(env: _Env, state: StateSnapshot) -> None:
    """If the last committed run's changes never reached the sinks (a crash or a sink outage after
    its commit), deliver them now from the store. Its metrics are not resent (they are telemetry)."""
    if env.timeseries is None and not env.extra_writers:
        return
    backend = getattr(env.store, "backend", None)
    at = _last_committed_at(state)
    if backend is None or at is None or cast(Backend, backend).get(_delivered_key(at)) is not None:
        return
    changes = env.store.read_frame(kind="changes", at=at)
    snapshot = env.store.read_frame(kind="merged", at=at)
    if changes is None or snapshot is None:
        log.warning("run %s: its frames are gone, its changes cannot be delivered again", at.isoformat())
        return
    log.warning("run %s was committed but not delivered to the sinks: delivering it now", at.isoformat())
    _deliver(env, at, changes=changes, snapshot=snapshot, counts=None)


def _discard_unpublished(env: _Env, state: StateSnapshot | None = None) -> None:
    """Remove the frames of runs after the last committed one: they were written by runs that
    failed before committing (and would otherwise show up as data that never happened)."""
    store = env.store
    backend = getattr(store, "backend", None)
    run_times = getattr(store, "run_times", None)
    if backend is None or run_times is None:
        return
    committed = _last_committed_at(state if state is not None else store.read_state(frames=False))
    after = committed + timedelta(minutes=1) if committed is not None else None
    kinds: list[tuple[FrameKind, str | None]] = [("raw", s) for s in RAW_SOURCES]
    kinds += [("merged", None), ("changes", None)]
    keys = [
        frame_key(kind, t, source)
        for kind, source in kinds
        for t in run_times(kind, source=source, start=after)
    ]
    if keys:
        log.warning("removing %d frame(s) of runs that failed before committing", len(keys))
        cast(Backend, backend).delete(keys)


async def _collect(
    env: _Env,
    token: BearerTokenSource,
    sps: Callable[[Callable[[], Awaitable[PriceResult]]], Awaitable[_SpsOutcome]],
) -> _Collected:
    """Prices, eviction rates and size families concurrently with ``sps`` (given the price crawl)."""
    azure, clock = env.azure, env.clock
    subscriptions = azure.credentials.subscriptions
    prices_task = asyncio.ensure_future(_price_collector(env).acollect())
    eviction_task = asyncio.ensure_future(
        EvictionCollector(
            subscriptions=subscriptions,
            credential=token,
            endpoints=azure.endpoints,
            azure_transport=azure.azure_transport,
            clock=clock,
        ).acollect()
    )
    skus_task = asyncio.ensure_future(
        SkuCollector(
            subscription=subscriptions[0],
            credential=token,
            endpoints=azure.endpoints,
            transport=azure.transport,
            clock=clock,
        ).acollect()
    )
    sps_task = asyncio.ensure_future(sps(lambda: prices_task))
    tasks = (prices_task, eviction_task, skus_task, sps_task)
    try:
        # The first failure stops everything: a run whose price crawl failed cannot commit, so
        # letting its SPS calls go on would only spend quota the next run needs.
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                raise cast(BaseException, task.exception())
        prices, eviction, skus, outcome = await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    return _Collected(prices=prices, eviction=eviction, skus=skus, sps=outcome)


def _price_collector(env: _Env) -> PriceCollector:
    return PriceCollector(
        endpoints=env.azure.endpoints,
        transport=env.azure.transport,
        clock=env.clock,
        concurrency=env.opts.price_concurrency,
        progress=env.progress("prices"),
    )


async def _day_plan(start: _Start, prices: Callable[[], Awaitable[PriceResult]], env: _Env) -> Plan:
    """The day's plan: the stored one, or a new one from the price crawl; minus learned invalid values.

    Deterministic in (state, support set), so every shard worker of a run computes the same plan.
    """
    plan = start.stored_plan
    if plan is None:
        # SPS waits for the price crawl: its support set is the planner's input.
        crawl = await prices()
        # In a thread: with a search budget planning takes seconds, and the eviction and SKU
        # requests still in flight must not stall behind it.
        opts = env.opts
        plan = await asyncio.to_thread(
            functools.partial(
                plan_calls,
                crawl.support_pairs,
                max_regions=opts.max_regions,
                max_sizes=opts.max_sizes,
                search=opts.plan_search,
                progress=env.progress("plan") if opts.plan_search else None,
            )
        )
    rotation = start.rotation
    if rotation.invalid_regions or rotation.invalid_sizes or rotation.invalid_pairs:
        plan = repair_plan(
            plan,
            invalid_regions=rotation.invalid_regions,
            invalid_sizes=rotation.invalid_sizes,
            invalid_pairs=rotation.invalid_pairs,
        )
    return plan


async def _collect_sps(
    plan: Plan,
    calls: Sequence[SpsCall],
    *,
    desired_count: int,
    subscriptions: Sequence[str],
    ledger_doc: Mapping[str, Any] | None,
    env: _Env,
    token: BearerTokenSource,
) -> SpsResult:
    """``calls`` (all of ``plan``, or one shard's) through the quota slots of ``subscriptions``."""
    opts = env.opts
    # URL locations come from the whole plan, so every shard's ledger has the same locations.
    locations = opts.sps_locations or tuple(sorted({r for call in plan.calls for r in call.regions}))
    ledger = _ledger(ledger_doc, subscriptions=subscriptions, locations=locations, opts=opts)
    return await SpsCollector(
        calls=calls,
        desired_count=desired_count,
        zonal=opts.zonal,
        credential=token,
        ledger=ledger,
        endpoints=env.azure.endpoints,
        transport=env.azure.transport,
        clock=env.clock,
        concurrency=opts.sps_concurrency,
        progress=env.progress("sps"),
    ).acollect()


def _ledger(
    doc: Mapping[str, Any] | None,
    *,
    subscriptions: Sequence[str],
    locations: Sequence[str],
    opts: CycleOptions,
) -> QuotaLedger:
    if not doc:
        return QuotaLedger(
            subscriptions=subscriptions, locations=locations, budget=opts.sps_budget, window=opts.sps_window
        )
    # Keep the recorded windows of slots that still exist; new slots start empty; the configured
    # limits win over the stored ones (an operator may lower the budget after a 429 storm).
    return QuotaLedger.from_json(doc).with_slots(
        subscriptions=subscriptions, locations=locations, budget=opts.sps_budget, window=opts.sps_window
    )


# --- sharded runs ----------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class _Part:
    """One shard's stored part: its JSON document and its SPS frame."""

    index: int
    doc: Mapping[str, Any]
    frame: pd.DataFrame = attrs.field(eq=False)


def _plan_digest(plan: Plan) -> str:
    """Identity of a plan's calls, support and forbidden cells (not its timing)."""
    body = {k: v for k, v in plan.to_json().items() if k != "report"}
    return hashlib.sha256(encode_doc(body, name="plan")).hexdigest()


def _run_shard(at: datetime, env: _Env, shard: Shard) -> RunReport:
    """Collect this shard's calls into a part (no lock); finalise the run if every part is there."""
    backend = _backend(env.store)
    subscriptions = shard.subscriptions(env.azure.credentials.subscriptions)
    # Docs and the version are all a worker needs; the finaliser re-reads everything under the lock.
    state = env.store.read_state(frames=False)
    start = _start(state, at)
    if isinstance(start, RunReport):
        _remove_parts(backend, at)  # a finaliser that died after its commit left them behind
        return attrs.evolve(start, shard={"index": shard.index, "count": shard.count})
    stem = _part_stem(at, shard)
    doc = _read_doc(backend, stem + ".json")
    if doc is not None and _part_matches(doc, start, at):
        # A retried worker (crash, or exit 75 at finalisation) keeps its part: quota is scarce.
        log.info("run %s %s: part already written against this state; not collecting again", at, shard.label)
    else:
        doc = _collect_part(at, env, shard, start, subscriptions)
    present = _present_parts(backend, at, shard.count)
    info: dict[str, Any] = {
        "index": shard.index,
        "count": shard.count,
        "present": list(present),
        "missing": [i for i in range(shard.count) if i not in present],
    }
    if len(present) < shard.count:
        return RunReport(
            at=at,
            status="pending",
            desired_count=start.decision.desired_count,
            new_day=start.decision.new_day,
            state_version=state.version,
            plan=dict(doc.get("shard_plan", {})),
            collectors={"sps": dict(doc.get("report", {}))},
            failed_calls=len(doc.get("failed_calls", [])),
            shard=info,
        )
    with env.store.lock(at.strftime("%Y-%m-%dT%H:%M"), timeout=env.opts.lock_timeout):
        report = _run_locked(at, env, lambda: _load_parts(backend, at, shard.count))
    if report.status in ("committed", "skipped"):
        _remove_parts(backend, at)
    info["finalised"] = report.status == "committed"
    return attrs.evolve(report, shard=info)


def _part_matches(doc: Mapping[str, Any], start: _Start, at: datetime) -> bool:
    return (
        doc.get("format") == PART_FORMAT
        and doc.get("at") == at.isoformat()
        and doc.get("base_version") == start.state.version
        and doc.get("desired_count") == start.decision.desired_count
    )


def _collect_part(
    at: datetime, env: _Env, shard: Shard, start: _Start, subscriptions: Sequence[str]
) -> dict[str, Any]:
    """Collect the shard's calls and write its part: the frame first, the document last.

    The document is the part's commit mark (the finaliser ignores a frame without one) and names
    the frame's digest, so a frame and a document from two racing reruns never pair up silently.
    """
    backend = _backend(env.store)
    token = env.token()
    ledger_doc = _doc(start.state, shard.ledger_doc) or _doc(start.state, DOC_QUOTA)

    async def collect() -> tuple[Plan, Plan, int, SpsResult]:
        plan = await _day_plan(start, lambda: _price_collector(env).acollect(), env)
        shards = shard_plan(plan, shard.count)
        offset = sum(len(p.calls) for p in shards[: shard.index])
        mine = shards[shard.index]
        result = await _collect_sps(
            plan,
            mine.calls,
            desired_count=start.decision.desired_count,
            subscriptions=subscriptions,
            ledger_doc=ledger_doc,
            env=env,
            token=token,
        )
        return plan, mine, offset, result

    plan, mine, offset, result = asyncio.run(collect())
    frame_bytes = encode_frame(result.frame, what=f"SPS part of {shard.label}")
    doc: dict[str, Any] = {
        "format": PART_FORMAT,
        "at": at.isoformat(),
        "shard": {"index": shard.index, "count": shard.count},
        "base_version": start.state.version,
        "desired_count": start.decision.desired_count,
        "day": start.day,
        "plan": plan.to_json(),
        "plan_digest": _plan_digest(plan),
        "shard_plan": mine.report.to_json(),
        "calls": {"offset": offset, "count": len(mine.calls)},
        "covered_pairs": sorted([r, s] for r, s in result.covered_pairs),
        # Call indices are the whole plan's, so failures read the same as in an unsharded run.
        "failed_calls": [
            {
                "index": offset + f.index,
                "call": f.call.to_json(),
                "reason": f.reason,
                "message": f.message,
                "status": f.status,
                "attempts": f.attempts,
            }
            for f in result.failed_calls
        ],
        "invalid_regions": sorted(result.invalid_regions),
        "invalid_sizes": sorted(result.invalid_sizes),
        "ledger_doc": shard.ledger_doc,
        "ledger": result.ledger.to_json(at),
        "report": result.report.to_json(),
        "frame_sha256": hashlib.sha256(frame_bytes).hexdigest(),
        "written_at": ensure_utc(env.clock.now()).isoformat(),
    }
    stem = _part_stem(at, shard)
    backend.put(stem + ".parquet", frame_bytes)
    backend.put(stem + ".json", encode_doc(doc, name=f"part {shard.label}"))
    return doc


def _read_doc(backend: Backend, key: str) -> dict[str, Any] | None:
    data = backend.get(key)
    return None if data is None else decode_doc(data, where=f"{backend.url}/{key}")


def _present_parts(backend: Backend, at: datetime, count: int) -> tuple[int, ...]:
    found = set()
    for name in backend.children(_run_dir(at)):
        match = _PART_FILE.fullmatch(name)
        if match is not None and int(match.group(2)) == count:
            found.add(int(match.group(1)))
    return tuple(sorted(i for i in found if i < count))


def _load_parts(backend: Backend, at: datetime, count: int) -> list[_Part]:
    parts: list[_Part] = []
    for index in range(count):
        stem = _part_stem(at, Shard(index=index, count=count))
        doc = _read_doc(backend, stem + ".json")
        data = backend.get(stem + ".parquet")
        if doc is None or data is None:
            raise CorruptStoreError(
                f"{backend.url}/{stem}: the part of shard {index}/{count} vanished while finalising "
                "(another finaliser committed and removed it?); run the shard again"
            )
        if hashlib.sha256(data).hexdigest() != doc.get("frame_sha256"):
            raise CorruptStoreError(
                f"{backend.url}/{stem}.parquet does not match its document (two runs of shard "
                f"{index}/{count} raced); run that shard again to rewrite its part"
            )
        parts.append(
            _Part(index=index, doc=doc, frame=decode_frame(data, where=f"{backend.url}/{stem}.parquet"))
        )
    return parts


def _remove_parts(backend: Backend, at: datetime) -> None:
    """Delete this run's parts and those of earlier runs (which can never be committed now)."""
    mine = _run_dir(at)
    try:
        doomed: list[str] = []
        for child in backend.children(SHARDS_PREFIX):
            if _RUN_DIR.fullmatch(child) and SHARDS_PREFIX + child <= mine:
                doomed.extend(backend.list_tree(SHARDS_PREFIX + child))
        if doomed:
            backend.delete(doomed)
    except SpotlakeError as exc:  # the run is committed; leftovers are removed by the next one
        log.warning("could not remove shard parts under %s%s: %s", backend.url, SHARDS_PREFIX, exc)


def _merge_parts(parts: Sequence[_Part], start: _Start, at: datetime) -> _SpsOutcome:
    """One run's SPS outcome from its shards' parts, checked against the state being committed on."""
    stale = [p.index for p in parts if not _part_matches(p.doc, start, at)]
    if stale:
        raise ConflictError(
            f"run {at.isoformat()}: the parts of shards {stale} were collected against state "
            f"{[parts[i].doc.get('base_version') for i in stale]}, but the store is now at "
            f"{start.state.version} (a run committed in between); run those shards again "
            "(they replace their parts and the last one finalises)"
        )
    try:
        by_plan: dict[str, list[int]] = {}
        for p in parts:
            by_plan.setdefault(str(p.doc["plan_digest"]), []).append(p.index)
        # The plan most shards followed (ties: the one of the lowest shard) is the day's plan.
        groups = sorted(by_plan.values(), key=lambda idx: (-len(idx), idx[0]))
        plan = Plan.from_json(parts[groups[0][0]].doc["plan"])
        incomplete = None
        if len(groups) > 1:
            incomplete = (
                f"shards did not all follow one plan ({' / '.join(str(g) for g in groups)}: the price "
                "crawls differed, or the workers ran with different --plan-search or call limits); "
                "pairs may be missing, so the count is retried next run"
            )
            log.warning("run %s: %s", at.isoformat(), incomplete)
        failed = tuple(_failed_call(f) for p in parts for f in p.doc["failed_calls"])
        reports = [p.doc["report"] for p in parts]
        starts = [datetime.fromisoformat(r["started_at"]) for r in reports if r.get("started_at")]
        ends = [datetime.fromisoformat(r["finished_at"]) for r in reports if r.get("finished_at")]
        frame = merge_shard_frames([p.frame for p in parts])
        notes = [f"shard {p.index}/{len(parts)}: {note}" for p in parts for note in p.doc["report"]["notes"]]
        report = CollectReport(
            source="sps",
            planned=sum(int(r["planned"]) for r in reports),
            succeeded=sum(int(r["succeeded"]) for r in reports),
            failures=[f.to_failure() for f in failed],
            requests=sum(int(r["requests"]) for r in reports),
            retried=sum(int(r["retried"]) for r in reports),
            rows=len(frame),
            started_at=min(starts) if starts else None,
            finished_at=max(ends) if ends else None,
            notes=[*notes, *([incomplete] if incomplete else [])],
        )
        return _SpsOutcome(
            plan=plan,
            frame=frame,
            report=report,
            failed_calls=failed,
            covered_pairs=frozenset((str(r), str(s)) for p in parts for r, s in p.doc["covered_pairs"]),
            invalid_regions=frozenset(str(r) for p in parts for r in p.doc["invalid_regions"]),
            invalid_sizes=frozenset(str(s) for p in parts for s in p.doc["invalid_sizes"]),
            ledgers={str(p.doc["ledger_doc"]): dict(p.doc["ledger"]) for p in parts},
            incomplete=incomplete,
        )
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise CorruptStoreError(
            f"run {at.isoformat()}: a shard part is malformed ({type(exc).__name__}: {exc}); "
            "delete the run's parts and run its shards again"
        ) from exc


def _failed_call(data: Mapping[str, Any]) -> FailedCall:
    reason = str(data["reason"])
    if reason not in get_args(FailureReason):
        raise ValueError(f"unknown SPS failure reason {reason!r}")
    status = data.get("status")
    return FailedCall(
        index=int(data["index"]),
        call=SpsCall.from_json(data["call"]),
        reason=cast(FailureReason, reason),
        message=str(data["message"]),
        status=None if status is None else int(status),
        attempts=int(data.get("attempts", 0)),
    )
