"""The Spot Placement Scores (SPS) collector: run a plan of SPS calls within the hourly quota.

One :class:`SpsCollector` executes a list of :class:`spotlake.model.SpsCall` (regions x sizes, from
the planner) for one desired count in zonal or regional mode::

    POST {management}/subscriptions/{sub}/providers/Microsoft.Compute/locations/{loc}
         /placementScores/spot/generate?api-version=2025-06-05
    {"desiredLocations": [...], "desiredSizes": [{"sku": ...}], "desiredCount": n,
     "availabilityZones": true|false}

and returns an :class:`SpsResult`: a frame with :data:`spotlake.model.SPS_SCHEMA` (size, region,
zone, desired_count, score, score_value, quota_available), a report whose numbers add up
(``planned == succeeded + failed``), the updated quota ledger to persist, the invalid regions and
sizes learned from 400 answers, each failed call with its reason, and the pairs the successful calls
asked about.

How each call is treated (every request counts against the per-call cap ``max_attempts_per_call``
and the run-wide cap ``max_total_attempts``, so no error pattern can burn the quota):

==================================  ===========================================================
what happens                        what the collector does
==================================  ===========================================================
no (subscription, location) slot    the call is not sent; it fails with reason ``quota`` and
free in the ledger                  ``SpsResult.next_free_at`` says when a slot frees up
2xx                                 parsed; unknown score strings kept (``score_value`` <NA>),
                                    missing ``availabilityZone`` -> zone <NA>
2xx with an undecodable body        retried (``payload_retries`` times) as transient, then
(truncated JSON)                    fails with reason ``payload``
2xx with the wrong shape            fails with reason ``payload`` (no retry: it would repeat)
429                                 the slot is marked over-limit until Retry-After (or the
                                    text's "try again after N seconds"); retried on another slot
5xx, 408, timeouts, resets          jittered exponential backoff on the injected clock; a
                                    Retry-After longer than ``max_retry_wait`` is not slept:
                                    the slot is marked and another one is used
400 naming a region or size         the value is learned (for every call of the run) and the
                                    call is reissued without it; nothing left -> ``all-invalid``
401                                 one forced token refresh and one retry; a second 401 ->
                                    :class:`AuthError` (the whole run stops)
403                                 :class:`AuthError` at once, naming the role and subscription
other 4xx                           fails with reason ``invalid-request``, no retry
==================================  ===========================================================

Caching: Microsoft asks callers to cache results 15-30 minutes per (subscription, count, region,
zone, size). The pipeline asks for one desired count per 10-minute run, rotating through 11
counts, so a given (count, region, size) is requested once per 110 minutes; within a run the plan
covers each pair once (duplicates from overlapping rectangles are dropped, first wins).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Final, NoReturn

import attrs
import httpx

from spotlake.clock import Clock, SystemClock
from spotlake.collect.auth import BearerTokenSource
from spotlake.collect.base import AzureEndpoints, CollectResult, Failure, ReportBuilder, run_sync
from spotlake.collect.http import Backoff, error_for_response, is_transient, read_json, retrying
from spotlake.collect.quota import QuotaLedger, Slot
from spotlake.collect.sps_wire import Rows, empty_rows, request_body, rows_frame, scores_rows
from spotlake.errors import (
    AuthError,
    CollectError,
    ConfigError,
    InvalidRequestError,
    PayloadError,
    TransientCollectError,
    TransientError,
)
from spotlake.model import Secret, Source, SpsCall

__all__ = [
    "API_VERSION",
    "REQUIRED_ROLE",
    "FailedCall",
    "FailureReason",
    "SpsCollector",
    "SpsResult",
]

log = logging.getLogger(__name__)

SOURCE: Final = Source.SPS
API_VERSION: Final = "2025-06-05"
#: The built-in role the service principal needs on each subscription (docs/sps-and-credentials.md).
REQUIRED_ROLE: Final = "Compute Recommendations Role"


class FailureReason(StrEnum):
    """Why a planned SPS call ended unscored."""

    #: No (subscription, location) slot had budget left: the call was not sent (again).
    QUOTA = "quota"
    #: Transient errors until the per-call cap.
    RETRIES_EXHAUSTED = "retries-exhausted"
    #: The run-wide cap on requests was reached.
    ATTEMPT_BUDGET = "attempt-budget"
    #: A 4xx retrying cannot fix.
    INVALID_REQUEST = "invalid-request"
    #: Every region or every size of the call was learned invalid.
    ALL_INVALID = "all-invalid"
    #: The answer was not the documented shape.
    PAYLOAD = "payload"

    @property
    def retry_next_run(self) -> bool:
        """Not the data's fault: the run's count is collected again next run."""
        return self in _RETRY_NEXT_RUN


_RETRY_NEXT_RUN = frozenset(
    {
        FailureReason.QUOTA,
        FailureReason.RETRIES_EXHAUSTED,
        FailureReason.ATTEMPT_BUDGET,
        FailureReason.PAYLOAD,
    }
)


# --- results ---------------------------------------------------------------------------------


def _describe(regions: Sequence[str], sizes: Sequence[str]) -> str:
    return f"[{','.join(regions)}] x [{','.join(sizes)}]"


@attrs.frozen(kw_only=True)
class FailedCall:
    """A planned call that was not (fully) scored: which one, why, after how many requests."""

    index: int
    call: SpsCall
    reason: FailureReason
    message: str
    status: int | None = None
    attempts: int = 0

    @property
    def what(self) -> str:
        return f"sps call #{self.index} {_describe(self.call.regions, self.call.sizes)}"

    def to_failure(self) -> Failure:
        return Failure(
            what=self.what,
            reason=f"{self.reason}: {self.message}",
            status=self.status,
            attempts=self.attempts,
        )


@attrs.frozen(kw_only=True)
class SpsResult(CollectResult):
    """What an SPS collection returns (``frame`` and ``report`` as every collector, plus the rest)."""

    ledger: QuotaLedger = attrs.field(eq=False)
    invalid_regions: frozenset[str] = frozenset()
    invalid_sizes: frozenset[str] = frozenset()
    failed_calls: tuple[FailedCall, ...] = ()
    #: The (region, size) pairs the successful calls asked about (learned-invalid values removed).
    covered_pairs: frozenset[tuple[str, str]] = frozenset()
    #: When the ledger has a free slot again (``None`` if it has no slots); set even on success.
    next_free_at: datetime | None = None


# --- internal control flow -------------------------------------------------------------------


class _Reissue(CollectError):
    """Internal: send the call again now (another slot, a new token, fewer values). Retried."""


class _CallFailed(Exception):
    """Internal: the call ends as failed with this reason (not retried)."""

    def __init__(self, reason: FailureReason, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.reason: FailureReason = reason
        self.message = message
        self.status = status


class _UndecodableBody(PayloadError, TransientError):
    """A 2xx body that is not JSON (usually truncated): worth one or two more tries."""


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, _Reissue) or is_transient(exc)


@attrs.define
class _CallState:
    index: int
    call: SpsCall
    sent: int = 0
    undecodable: int = 0
    refreshed: bool = False


@attrs.define
class _Run:
    """Mutable state of one collection, shared by its call tasks (one event loop, no threads)."""

    ledger: QuotaLedger
    report: ReportBuilder
    unstarted: int
    sent: int = 0
    done: int = 0
    invalid_regions: set[str] = attrs.field(factory=set)
    invalid_sizes: set[str] = attrs.field(factory=set)
    #: Set by the first call that hits an AuthError: every other call stops before sending.
    fatal: AuthError | None = None


class _Aborted(Exception):
    """Internal: another call of the run failed with an AuthError; stop without sending."""


class SpsCollector:
    """Execute a plan of SPS calls for one desired count (see the module docstring).

    ``credential`` is any :class:`~spotlake.collect.auth.BearerTokenSource` (usually a
    :class:`~spotlake.collect.auth.TokenProvider`); ``ledger`` is not modified: the collector works on
    a copy and returns it in :attr:`SpsResult.ledger` for the caller to persist.
    """

    source = SOURCE

    def __init__(
        self,
        *,
        calls: Sequence[SpsCall],
        desired_count: int,
        zonal: bool,
        credential: BearerTokenSource,
        ledger: QuotaLedger,
        endpoints: AzureEndpoints | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Clock | None = None,
        concurrency: int = 8,
        max_attempts_per_call: int = 4,
        max_total_attempts: int | None = None,
        backoff: Backoff | None = None,
        payload_retries: int = 2,
        max_retry_wait: float = 60.0,
        timeout: float = 30.0,
        api_version: str = API_VERSION,
        progress: Callable[[int, int], None] | None = None,
    ) -> None:
        if desired_count < 1:
            raise ConfigError(f"sps: desired_count must be at least 1, got {desired_count}")
        if concurrency < 1 or max_attempts_per_call < 1:
            raise ConfigError("sps: concurrency and max_attempts_per_call must be at least 1")
        self.calls = tuple(calls)
        self.desired_count = desired_count
        self.zonal = zonal
        self._credential = credential
        self._ledger = ledger
        self._endpoints = endpoints or AzureEndpoints()
        self._transport = transport
        self._clock: Clock = clock or SystemClock()
        self.concurrency = concurrency
        self.max_attempts_per_call = max_attempts_per_call
        #: Twice the plan by default: every call may be retried once on average, never more.
        self.max_total_attempts = (
            max(2 * len(self.calls), max_attempts_per_call)
            if max_total_attempts is None
            else max_total_attempts
        )
        self._backoff = backoff or Backoff()
        self.payload_retries = payload_retries
        self.max_retry_wait = max_retry_wait
        self._timeout = timeout
        self.api_version = api_version
        self._progress = progress

    def __repr__(self) -> str:
        return (
            f"SpsCollector(calls={len(self.calls)}, desired_count={self.desired_count}, zonal={self.zonal}, "
            f"ledger={self._ledger!r})"
        )

    # --- public ------------------------------------------------------------------------------

    def collect(self) -> SpsResult:
        """Blocking facade over :meth:`acollect`."""
        return run_sync(self.acollect())

    async def acollect(self) -> SpsResult:
        """Run every call (bounded concurrency) and account for each one."""
        started = self._clock.now()
        report = ReportBuilder(source=SOURCE, planned=len(self.calls), started_at=started)
        run = _Run(ledger=self._ledger.copy(), report=report, unstarted=len(self.calls))
        limiter = asyncio.Semaphore(self.concurrency)
        async with httpx.AsyncClient(transport=self._transport, timeout=self._timeout) as client:
            tasks = [
                asyncio.create_task(self._run_call(_CallState(index=i, call=call), run, client, limiter))
                for i, call in enumerate(self.calls)
            ]
            try:
                outcomes = await asyncio.gather(*tasks)
            except BaseException:
                # An AuthError (or cancellation) ends the run: stop the other calls cleanly.
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                if run.fatal is not None:
                    raise run.fatal from None
                raise
        return self._result(run, outcomes, started)

    # --- one call ----------------------------------------------------------------------------

    async def _run_call(
        self, state: _CallState, run: _Run, client: httpx.AsyncClient, limiter: asyncio.Semaphore
    ) -> Rows | FailedCall:
        policy = retrying(
            clock=self._clock,
            max_attempts=self.max_attempts_per_call,
            backoff=self._backoff,
            retry_if=_retryable,
        )
        outcome: Rows | FailedCall
        try:
            rows: Rows | None = None
            async for attempt in policy:
                with attempt:
                    async with limiter:
                        rows = await self._attempt(state, run, client)
            assert rows is not None
            outcome = rows
        except AuthError as exc:
            run.fatal = run.fatal or exc
            raise
        except _CallFailed as stop:
            outcome = self._failed(state, stop.reason, stop.message, stop.status)
        except PayloadError as exc:
            outcome = self._failed(state, FailureReason.PAYLOAD, str(exc), exc.status)
        except (_Reissue, TransientCollectError, httpx.TransportError) as exc:
            status = getattr(exc, "status", None)
            outcome = self._failed(
                state,
                FailureReason.RETRIES_EXHAUSTED,
                f"still failing after {state.sent} request(s): {_brief(exc)}",
                status if isinstance(status, int) else None,
            )
        finally:
            if state.sent == 0:
                run.unstarted -= 1
            run.done += 1
            if self._progress is not None:
                self._progress(run.done, len(self.calls))
        return outcome

    def _failed(
        self, state: _CallState, reason: FailureReason, message: str, status: int | None
    ) -> FailedCall:
        return FailedCall(
            index=state.index,
            call=state.call,
            reason=reason,
            message=message,
            status=status,
            attempts=state.sent,
        )

    async def _attempt(self, state: _CallState, run: _Run, client: httpx.AsyncClient) -> Rows:
        """One request for the call, or an exception saying what to do next."""
        if run.fatal is not None:
            raise _Aborted
        regions = [r for r in state.call.regions if r not in run.invalid_regions]
        sizes = [s for s in state.call.sizes if s not in run.invalid_sizes]
        if not regions or not sizes:
            kind = "region" if not regions else "size"
            raise _CallFailed(
                FailureReason.ALL_INVALID, f"every {kind} of the call was reported invalid by the API"
            )
        token = await self._credential.atoken()

        # From here to ``record`` nothing awaits, so concurrent calls cannot take the same budget.
        first = state.sent == 0
        reserved = 0 if first else run.unstarted  # keep one request for every call not yet sent
        if run.sent + reserved >= self.max_total_attempts:
            raise _CallFailed(
                FailureReason.ATTEMPT_BUDGET,
                f"the run's cap of {self.max_total_attempts} requests was reached "
                f"(after {state.sent} request(s) for this call)",
            )
        now = self._clock.now()
        slot = run.ledger.acquire(now)
        if slot is None:
            free_at = run.ledger.next_free_at(now)
            raise _CallFailed(
                FailureReason.QUOTA,
                "no (subscription, location) slot has SPS quota left"
                + (f"; the next one frees at {free_at.isoformat()}" if free_at else ""),
            )
        run.ledger.record(slot, now)
        if first:
            run.unstarted -= 1
        else:
            run.report.retried += 1
        state.sent += 1
        run.sent += 1
        run.report.requests += 1

        what = f"call #{state.index} {_describe(regions, sizes)} via {slot}"
        url = (
            f"{self._endpoints.management.rstrip('/')}/subscriptions/{slot.subscription}/providers/"
            f"Microsoft.Compute/locations/{slot.location}/placementScores/spot/generate"
        )
        body = request_body(regions, sizes, desired_count=self.desired_count, zonal=self.zonal)
        try:
            response = await client.post(
                url,
                params={"api-version": self.api_version},
                json=body,
                headers={"Authorization": f"Bearer {token.reveal()}"},
            )
        except httpx.DecodingError as exc:
            raise self._undecodable(state, what, f"{type(exc).__name__}") from None
        if response.is_success:
            try:
                payload = read_json(SOURCE, what, response)
            except PayloadError:
                raise self._undecodable(state, what, f"{len(response.content)} bytes of non-JSON") from None
            return scores_rows(payload, what=what)
        await self._handle_error(
            state=state,
            run=run,
            slot=slot,
            token=token,
            what=what,
            regions=regions,
            sizes=sizes,
            response=response,
        )

    def _undecodable(self, state: _CallState, what: str, detail: str) -> PayloadError:
        state.undecodable += 1
        message = f"{SOURCE}: {what} returned a body that is not JSON ({detail})"
        if state.undecodable <= self.payload_retries:
            return _UndecodableBody(message, source=SOURCE)
        return PayloadError(message, source=SOURCE)

    async def _handle_error(
        self,
        *,
        state: _CallState,
        run: _Run,
        slot: Slot,
        token: Secret,
        what: str,
        regions: list[str],
        sizes: list[str],
        response: httpx.Response,
    ) -> NoReturn:
        """Turn an error answer into what happens next: an exception, always."""
        status = response.status_code
        error = error_for_response(SOURCE, what, response)
        now = self._clock.now()
        if status == 429:
            # The server counts better than we do: believe it, and move on to another slot.
            wait = getattr(error, "retry_after", None)
            seconds = float(wait) if isinstance(wait, int | float) else run.ledger.window.total_seconds()
            run.ledger.mark_exhausted(slot, now + timedelta(seconds=seconds))
            raise _Reissue(
                f"{error}; slot {slot} marked over-limit for {seconds:.0f} s", source=SOURCE, status=429
            )
        if isinstance(error, TransientCollectError):
            wait = error.retry_after
            if wait is not None and wait > self.max_retry_wait:
                # Never sleep that long inside a run: rest this slot instead and use another.
                run.ledger.mark_exhausted(slot, now + timedelta(seconds=wait))
                raise _Reissue(f"{error}; slot {slot} rested for {wait:.0f} s", source=SOURCE, status=status)
            raise error
        if status == 401:
            if state.refreshed:
                raise AuthError(
                    f"{SOURCE}: {what} was refused with HTTP 401 even after a token refresh; check the "
                    "service principal's tenant, client id and secret",
                    source=SOURCE,
                    status=401,
                )
            # Marked only once the refresh worked: a token endpoint hiccup is retried like any
            # transient error, and the next 401 may still ask for a refresh.
            await self._credential.aforce_refresh(token)
            state.refreshed = True
            raise _Reissue(f"{error}; retrying once with a fresh token", source=SOURCE, status=401)
        if status == 403:
            raise AuthError(
                f"{SOURCE}: {what} got HTTP 403: the service principal lacks the '{REQUIRED_ROLE}' role "
                f"on subscription {slot.subscription}; assign it (scope: the subscription) and rerun",
                source=SOURCE,
                status=403,
            )
        if (
            isinstance(error, InvalidRequestError)
            and error.invalid_values
            and self._learn(run=run, error=error, regions=regions, sizes=sizes, slot=slot, now=now)
        ):
            raise _Reissue(f"{error}; reissuing without the invalid value", source=SOURCE, status=status)
        raise _CallFailed(FailureReason.INVALID_REQUEST, str(error), status)

    def _learn(
        self,
        *,
        run: _Run,
        error: InvalidRequestError,
        regions: list[str],
        sizes: list[str],
        slot: Slot,
        now: datetime,
    ) -> bool:
        """Record the values a 400 named as invalid; True when the call can be reissued without them."""
        parameter = (error.parameter or "").lower()
        learned = False
        for value in error.invalid_values:
            # Azure names the parameter ('desiredLocations', '...desiredSizes', or 'location' for the
            # URL); fall back on which list holds the value when the name is something else.
            if parameter == "location" and value == slot.location:
                is_region = is_size = False
            elif parameter.endswith("desiredlocations"):
                is_region, is_size = value in regions, False
            elif "desiredsizes" in parameter or "sku" in parameter:
                is_region, is_size = False, value in sizes
            else:
                is_region = value in regions
                is_size = value in sizes and not is_region
            if is_region:
                run.invalid_regions.add(value)
                learned = True
            elif is_size:
                run.invalid_sizes.add(value)
                learned = True
            elif value == slot.location:
                # The URL location itself is refused: rest that slot for a window, use another.
                run.ledger.mark_exhausted(slot, now + run.ledger.window)
                run.report.notes.append(f"URL location {value!r} was refused; slot {slot} rested")
                learned = True
        return learned

    # --- assembling the result ---------------------------------------------------------------

    def _result(self, run: _Run, outcomes: list[Rows | FailedCall], started: datetime) -> SpsResult:
        report = run.report
        failed: list[FailedCall] = []
        rows = empty_rows()
        for state_index, outcome in enumerate(outcomes):
            if isinstance(outcome, FailedCall):
                failed.append(outcome)
                continue
            report.succeeded += 1
            call = self.calls[state_index]
            expected = {
                (r, s)
                for r in call.regions
                if r not in run.invalid_regions
                for s in call.sizes
                if s not in run.invalid_sizes
            }
            got = set(zip(outcome["region"], outcome["size"], strict=True))
            if missing := len(expected - got):
                report.notes.append(f"call #{state_index}: the API returned no score for {missing} pair(s)")
            for column, values in outcome.items():
                rows[column].extend(values)
        frame = rows_frame(rows, self.desired_count)
        before = len(frame)
        frame = frame.drop_duplicates(subset=["size", "region", "zone"], keep="first").reset_index(drop=True)
        if len(frame) < before:
            report.notes.append(f"{before - len(frame)} duplicate score(s) from overlapping calls dropped")
        report.failures.extend(f.to_failure() for f in failed)
        finished = self._clock.now()
        next_free = run.ledger.next_free_at(finished)
        snapshot = run.ledger.snapshot(finished)
        report.notes.append(
            f"quota: {snapshot.capacity} call(s) left over {snapshot.slots} slot(s), "
            f"{snapshot.exhausted_slots} marked over-limit"
            + (f", next free at {next_free.isoformat()}" if next_free and next_free > finished else "")
        )
        if run.invalid_regions or run.invalid_sizes:
            report.notes.append(
                f"learned invalid regions {sorted(run.invalid_regions)} and sizes {sorted(run.invalid_sizes)}"
            )
        # What the successful calls asked about (minus values learned invalid): a pair of these
        # the answer left out is one the API stopped answering, unlike the pairs of failed calls.
        covered = frozenset(
            (r, sz)
            for index, outcome in enumerate(outcomes)
            if not isinstance(outcome, FailedCall)
            for r in self.calls[index].regions
            if r not in run.invalid_regions
            for sz in self.calls[index].sizes
            if sz not in run.invalid_sizes
        )
        log.info(
            "sps: %d/%d calls scored, %d failed, %d requests (%d retries), %d rows",
            report.succeeded,
            report.planned,
            report.failed,
            report.requests,
            report.retried,
            len(frame),
        )
        return SpsResult(
            frame=frame,
            report=report.build(rows=len(frame), at=finished),
            ledger=run.ledger,
            invalid_regions=frozenset(run.invalid_regions),
            invalid_sizes=frozenset(run.invalid_sizes),
            failed_calls=tuple(failed),
            covered_pairs=covered,
            next_free_at=next_free,
        )


def _brief(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."
