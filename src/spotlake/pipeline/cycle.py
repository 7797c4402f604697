"""One collection cycle: collect, plan, score, diff, store, deliver, notify.

:func:`arun_cycle` (and its blocking facade :func:`run_cycle`, which also works inside a running
event loop such as Jupyter's) does, for one run time ``at``:

1. take the store's run lock (a second overlapping run gets :class:`~spotlake.errors.LockedError`);
2. finish publishing the last committed run if a crash interrupted it, read the committed state
   (rotation, the day's SPS plan, learned invalid values, quota ledgers, the T2/T3 history); if
   ``at`` was already committed the run is a no-op (idempotent rerun);
3. deliver committed runs the sinks still owe (a sink outage is reported, never fatal);
4. pick this run's desired count from the rotation (count 1 and a rebuilt plan on a new UTC day);
5. collect prices, eviction rates and size families concurrently with the SPS source (collected
   now, or merged from shard parts; when the day's plan must be rebuilt, SPS waits for the price
   crawl, whose support set is the planner's input);
6. score: merge, T2/T3 history, diff against the previous state (``covered`` and the failed calls'
   pairs tell failures from disappearances, so a failed call never reads as "ceased");
7. stage raw frames, the merged snapshot and the changeset, and commit the new state with
   compare-and-swap, which publishes the staged frames: readers only ever see committed runs;
8. deliver the run to the sinks and mark it delivered (a failure leaves it in the outbox).

A run that fails before its commit leaves the previous state intact, publishes nothing, and its
count is retried by the next run. Failures are reported in the returned
:class:`~spotlake.pipeline.report.RunReport` and, when a notifier is configured, to Slack.
The run under the lock is :mod:`spotlake.pipeline._run`; sharded collection is in
:mod:`spotlake.pipeline.shards`; operations in docs/operations.md.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime

import attrs

from spotlake.clock import Clock, SystemClock, ensure_utc
from spotlake.collect.base import run_sync
from spotlake.errors import LockedError, SpotlakeError
from spotlake.notify import Notifier
from spotlake.pipeline._run import run_id_of, run_locked
from spotlake.pipeline._sps import LiveSps
from spotlake.pipeline.options import (
    AzureAccess,
    CycleEnv,
    CycleOptions,
    ProgressFactory,
    SnapshotWriter,
    no_progress,
)
from spotlake.pipeline.report import RunReport, RunStatus
from spotlake.pipeline.shards import Shard, run_shard
from spotlake.redact import scrub
from spotlake.storage.base import MetricsSink, SnapshotStore, TimeSeriesSink

__all__ = ["arun_cycle", "guarded", "locked", "run_cycle"]

log = logging.getLogger(__name__)


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
    progress: ProgressFactory = no_progress,
    shard: Shard | None = None,
) -> RunReport:
    """Blocking facade over :func:`arun_cycle` (safe inside a running event loop, e.g. a notebook)."""
    return run_sync(
        arun_cycle(
            at,
            store=store,
            azure=azure,
            options=options,
            timeseries=timeseries,
            metrics=metrics,
            extra_writers=extra_writers,
            notifier=notifier,
            clock=clock,
            progress=progress,
            shard=shard,
        )
    )


async def arun_cycle(
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
    progress: ProgressFactory = no_progress,
    shard: Shard | None = None,
) -> RunReport:
    """Run one collection cycle for ``at`` (see the module docstring). Never raises for a failed run:
    the report says ``status=RunStatus.FAILED`` with the error, except for :class:`LockedError`
    (another run is in progress), which is raised so the caller can tell "busy" from "broken".

    With ``shard`` (a :class:`~spotlake.pipeline.shards.Shard`), collect only that shard's SPS calls
    and store them as a part (status ``PENDING``); the worker that completes the set of parts
    finalises and commits the run.

    ``progress(label)`` returns a ``(done, total)`` callback for "prices", "sps" and, when the day's
    plan is rebuilt with a search budget, "plan"; the "plan" callback is called from a worker thread.
    """
    env = CycleEnv(
        store=store,
        azure=azure,
        opts=options or CycleOptions(),
        timeseries=timeseries,
        metrics=metrics,
        extra_writers=tuple(extra_writers),
        clock=clock or SystemClock(),
        progress=progress,
    )
    at = ensure_utc(at).replace(second=0, microsecond=0)
    started = time.monotonic()
    run_id = run_id_of(at)
    if shard is None:
        report = await locked(
            store,
            at,
            timeout=env.opts.lock_timeout,
            body=lambda: run_locked(at, env, lambda _start, token: LiveSps(env, token, at)),
        )
    else:
        report = await guarded(at, run_shard(at, env, shard))
    report = attrs.evolve(report, seconds=time.monotonic() - started)
    if notifier is not None:
        _notify(notifier, report, run_id, shard)
    return report


def _notify(notifier: Notifier, report: RunReport, run_id: str, shard: Shard | None) -> None:
    what = f" ({shard.label})" if shard is not None else ""
    if report.status is RunStatus.FAILED:
        notifier.notify(f"spotlake run {run_id}{what} failed", f"{report.error_type}: {report.error}")
    elif report.delivery_error:
        notifier.notify(f"spotlake run {run_id}{what}: sinks not fed", report.delivery_error)


async def locked(
    store: SnapshotStore, at: datetime, *, timeout: float, body: Callable[[], Awaitable[RunReport]]
) -> RunReport:
    """``body()`` under the store's run lock, :func:`guarded`; a failure to take or release the
    lock is a ``FAILED`` report too (after a commit the run stands), except :class:`LockedError`
    (another run holds the lock), which is raised."""
    report: RunReport | None = None
    try:
        with store.lock(run_id_of(at), timeout=timeout):
            report = await guarded(at, body())
    except LockedError:
        raise
    except SpotlakeError as exc:
        if report is not None and report.status is RunStatus.COMMITTED:
            log.warning("run %s committed, but releasing the store's lock failed: %s", run_id_of(at), exc)
        else:
            report = RunReport(
                at=at, status=RunStatus.FAILED, error=scrub(str(exc)), error_type=type(exc).__name__
            )
    return report


async def guarded(at: datetime, body: Awaitable[RunReport]) -> RunReport:
    """``await body``, with a failure turned into a ``FAILED`` report (a held lock still raises)."""
    try:
        return await body
    except LockedError:
        raise
    except SpotlakeError as exc:
        log.error("run %s failed: %s", run_id_of(at), exc)
        return RunReport(at=at, status=RunStatus.FAILED, error=scrub(str(exc)), error_type=type(exc).__name__)
    except Exception as exc:  # a bug or an SDK error nobody mapped: still a failed run, not a crash
        log.exception("run %s failed unexpectedly", run_id_of(at))
        return RunReport(
            at=at,
            status=RunStatus.FAILED,
            # An SDK's message may quote a response body: keep no secret in the report.
            error=scrub(f"unexpected {type(exc).__name__}: {exc}"),
            error_type="InternalError",
        )
