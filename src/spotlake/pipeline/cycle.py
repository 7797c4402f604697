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
Sharded collection is in :mod:`spotlake.pipeline.shards`; operations in docs/operations.md.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime

import attrs

from spotlake.clock import Clock, SystemClock, ensure_utc
from spotlake.collect.base import run_sync
from spotlake.errors import ConflictError, IncompleteDataError, LockedError, SpotlakeError
from spotlake.model import Source
from spotlake.notify import Notifier
from spotlake.pipeline._collection import Collected, collect
from spotlake.pipeline._delivery import Delivery, deliver, deliver_owed
from spotlake.pipeline._sps import LiveSps, SpsSource
from spotlake.pipeline._start import RunStart, begin
from spotlake.pipeline.options import (
    AzureAccess,
    CycleEnv,
    CycleOptions,
    ProgressFactory,
    SnapshotWriter,
    no_progress,
)
from spotlake.pipeline.report import RunReport, RunStatus, UnknownPairs
from spotlake.pipeline.state import (
    LAST_RUN_DOC,
    OUTBOX_DOC,
    PLAN_DOC,
    ROTATION_DOC,
    DayPlan,
    LastRun,
    Outbox,
)
from spotlake.scoring.engine import Coverage, ScoringState, score_run
from spotlake.scoring.rotation import finish_run, learn_invalid
from spotlake.serde import dump_doc
from spotlake.storage.base import FrameKind, MetricsSink, SnapshotStore, TimeSeriesSink

__all__ = ["arun_cycle", "run_cycle", "run_id_of"]

log = logging.getLogger(__name__)

#: Builds the run's SPS source once its start is known (live collection, or merged shard parts).
SourceFactory = Callable[[RunStart], SpsSource]


def run_id_of(at: datetime) -> str:
    """``2026-01-01T12:30``: the run minute as the run's identity (lock holder, commit)."""
    return f"{at:%Y-%m-%dT%H:%M}"


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
    shard: object = None,
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
    shard: object = None,
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
    from spotlake.pipeline.shards import Shard, run_shard

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
    report: RunReport | None = None
    try:
        if shard is None:
            with store.lock(run_id, timeout=env.opts.lock_timeout):
                report = await guarded(at, run_locked(at, env, lambda start: LiveSps(env, env.token(), at)))
        elif isinstance(shard, Shard):
            report = await guarded(at, run_shard(at, env, shard))
        else:
            raise TypeError(f"shard= takes a spotlake.pipeline.Shard, got {type(shard).__name__}")
    except LockedError:
        raise
    except SpotlakeError as exc:
        # Taking or releasing the lock failed. After a commit the run stands; otherwise it failed.
        if report is not None and report.status is RunStatus.COMMITTED:
            log.warning("run %s committed, but releasing the store's lock failed: %s", run_id, exc)
        else:
            report = RunReport(at=at, status=RunStatus.FAILED, error=str(exc), error_type=type(exc).__name__)
    report = attrs.evolve(report, seconds=time.monotonic() - started)
    if notifier is not None:
        _notify(notifier, report, run_id, shard)
    return report


def _notify(notifier: Notifier, report: RunReport, run_id: str, shard: object) -> None:
    what = f" ({getattr(shard, 'label', '')})" if shard is not None else ""
    if report.status is RunStatus.FAILED:
        notifier.notify(f"spotlake run {run_id}{what} failed", f"{report.error_type}: {report.error}")
    elif report.delivery_error:
        notifier.notify(f"spotlake run {run_id}{what}: sinks not fed", report.delivery_error)


async def guarded(at: datetime, body: Awaitable[RunReport]) -> RunReport:
    """``await body``, with a failure turned into a ``FAILED`` report (a held lock still raises)."""
    try:
        return await body
    except LockedError:
        raise
    except SpotlakeError as exc:
        log.error("run %s failed: %s", run_id_of(at), exc)
        return RunReport(at=at, status=RunStatus.FAILED, error=str(exc), error_type=type(exc).__name__)
    except Exception as exc:  # a bug or an SDK error nobody mapped: still a failed run, not a crash
        log.exception("run %s failed unexpectedly", run_id_of(at))
        return RunReport(
            at=at,
            status=RunStatus.FAILED,
            error=f"unexpected {type(exc).__name__}: {exc}",
            error_type="InternalError",
        )


async def run_locked(at: datetime, env: CycleEnv, sps: SourceFactory) -> RunReport:
    """Steps 2-8 under the lock, with the run's SPS from ``sps(start)``."""
    store = env.store
    store.publish_pending()
    start = begin(store.read_state(), at, where=store.url)
    if isinstance(start, RunReport):
        return start
    _sweep(env)
    owed = deliver_owed(env, start.undelivered)
    collected = await collect(env, env.token(), start, sps(start))
    # Scoring and writing take seconds of CPU and blocking I/O: keep the event loop free.
    return await asyncio.to_thread(score_and_commit, at, env, start, collected, owed)


def _sweep(env: CycleEnv) -> None:
    try:
        env.store.sweep(older_than=env.opts.stale_after)
    except SpotlakeError as exc:  # housekeeping; the next run tries again
        log.warning("could not sweep abandoned stages under %s: %s", env.store.url, exc)


def score_and_commit(
    at: datetime, env: CycleEnv, start: RunStart, collected: Collected, owed: Delivery
) -> RunReport:
    """Steps 6-8, shared by plain and sharded runs."""
    store, opts, decision = env.store, env.opts, start.decision
    sps = collected.sps
    if not sps.report.succeeded and sps.report.planned:
        reasons = sorted({str(f.reason) for f in sps.failed_calls})
        raise IncompleteDataError(
            f"sps: none of the {sps.report.planned} calls succeeded ({', '.join(reasons)}); "
            f"the count {decision.desired_count} will be retried next run. "
            f"First failure: {sps.report.failures[0]}",
            source=Source.SPS,
            missing=[str(f) for f in sps.report.failures[:20]],
        )
    prev = ScoringState.from_frames(start.state.frames) if start.state.frames else None
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
        desired_count=decision.desired_count,
        covered=covered,
        max_age=opts.history_max_age,
    )
    # A call that failed for quota or transient reasons means this count is not fully collected:
    # the rotation retries it next run instead of skipping it silently (for shards: over the union).
    rotation = finish_run(
        learn_invalid(start.rotation, regions=sps.invalid_regions, sizes=sps.invalid_sizes),
        decision,
        succeeded=not sps.retry_count,
    )
    failed_pairs = sorted(sps.failed_pairs)
    report = RunReport(
        at=at,
        status=RunStatus.COMMITTED,
        desired_count=decision.desired_count,
        new_day=decision.new_day,
        plan=sps.plan.report,
        collectors={
            Source.PRICES: collected.prices.report,
            Source.SPS: sps.report,
            Source.EVICTION: collected.eviction.report,
            Source.SKUS: collected.skus.report,
        },
        scoring=scored.report,
        failed_calls=len(sps.failed_calls),
        unknown=UnknownPairs(count=len(failed_pairs), sample=tuple(failed_pairs[:20])),
    )
    outbox = Outbox(runs=(*owed.owed, at)) if env.has_sinks else Outbox(runs=owed.owed)
    # Documents this run does not write (another mode's quota ledgers, say) are carried over: a
    # commit replaces the whole state.
    docs = dict(start.state.docs)
    docs.update({name: dump_doc(ledger) for name, ledger in sps.ledgers.items()})
    docs.update(
        {
            ROTATION_DOC: dump_doc(rotation),
            PLAN_DOC: dump_doc(DayPlan(date=start.day, plan=sps.plan)),
            LAST_RUN_DOC: dump_doc(LastRun(at=at, desired_count=decision.desired_count, report=report)),
            OUTBOX_DOC: dump_doc(outbox),
        }
    )
    stage = store.stage(at)
    frames = {
        (FrameKind.RAW, Source.PRICES): collected.prices.frame,
        (FrameKind.RAW, Source.SPS): sps.frame,
        (FrameKind.RAW, Source.EVICTION): collected.eviction.frame,
        (FrameKind.RAW, Source.SKUS): collected.skus.frame,
        (FrameKind.MERGED, None): scored.snapshot,
        (FrameKind.CHANGES, None): scored.changes,
    }
    try:
        for (kind, source), frame in frames.items():
            stage.put_frame(kind=kind, source=source, frame=frame)
        version = store.commit_state(
            expected_version=start.state.version,
            frames=scored.state.to_frames(),
            docs=docs,
            run_id=run_id_of(at),
            publish=stage,
        )
    except ConflictError:
        _discard(env, stage)  # definitely not committed
        raise
    except SpotlakeError:
        # Maybe committed (a lost answer): the sweep removes the stage later unless a kept
        # generation names it, so a commit that did land keeps its frames.
        raise
    report = attrs.evolve(report, state_version=version, undelivered=owed.owed)
    return _deliver_run(env, report, owed, changes=scored.changes, snapshot=scored.snapshot)


def _discard(env: CycleEnv, stage: object) -> None:
    try:
        env.store.discard(stage)  # type: ignore[arg-type]
    except SpotlakeError as exc:
        log.warning("could not remove the stage of a run that did not commit (the sweep will): %s", exc)


def _deliver_run(
    env: CycleEnv, report: RunReport, owed: Delivery, *, changes: object, snapshot: object
) -> RunReport:
    """Feed the sinks the run just committed (after what was owed); a failure is reported, not raised."""
    if not env.has_sinks:
        return report
    if owed.error is not None:
        # The sinks are failing: this run waits in the outbox behind the runs already owed.
        return attrs.evolve(
            report,
            sinks=owed.sinks,
            delivery_error=f"{owed.error} (a later run delivers the {len(owed.owed) + 1} run(s) owed)",
            undelivered=(*owed.owed, report.at),
        )
    try:
        sinks = deliver(env, report.at, changes=changes, snapshot=snapshot, counts=report.counts)  # type: ignore[arg-type]
    except SpotlakeError as exc:
        log.error("run %s committed but the sinks were not fed: %s", report.at.isoformat(), exc)
        return attrs.evolve(
            report,
            sinks=owed.sinks,
            delivery_error=f"{type(exc).__name__}: {exc} (a later run delivers it again)",
            undelivered=(report.at,),
        )
    return attrs.evolve(report, sinks=(*owed.sinks, *sinks), undelivered=())
