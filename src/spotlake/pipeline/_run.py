"""A run under the lock: start from the committed state, collect, score, stage, commit, deliver.

:func:`run_locked` is the body every committing run shares: an unsharded cycle
(:mod:`spotlake.pipeline.cycle`) calls it with live SPS collection, a sharded run's finaliser
(:mod:`spotlake.pipeline.shards`) with the merged parts.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime

import attrs
import pandas as pd

from spotlake.collect.auth import BearerTokenSource
from spotlake.errors import ConflictError, IncompleteDataError, SpotlakeError
from spotlake.model import Source
from spotlake.pipeline._collection import Collected, collect
from spotlake.pipeline._delivery import Delivery, data_sinks, deliver_owed, deliver_run
from spotlake.pipeline._sps import SpsSource
from spotlake.pipeline._start import RunStart, begin
from spotlake.pipeline.options import CycleEnv, DeliveryEnv
from spotlake.pipeline.report import RunReport, RunStatus, UnknownPairs
from spotlake.pipeline.state import (
    LAST_RUN_DOC,
    OUTBOX_DOC,
    PLAN_DOC,
    ROTATION_DOC,
    DayPlan,
    LastRun,
    Outbox,
    Owed,
    legacy_run,
)
from spotlake.scoring.engine import Coverage, ScoringState, score_run
from spotlake.scoring.rotation import finish_run, learn_invalid
from spotlake.serde import dump_doc
from spotlake.storage.base import FrameKind, RunStage

__all__ = [
    "SourceFactory",
    "discard_stage",
    "finish_delivery",
    "outbox_of",
    "run_id_of",
    "run_locked",
    "score_and_commit",
    "sweep",
]

log = logging.getLogger(__name__)

#: Builds the run's SPS source once its start is known (live collection, or merged shard parts),
#: given the run's one bearer token source.
SourceFactory = Callable[[RunStart, BearerTokenSource], SpsSource]


def run_id_of(at: datetime) -> str:
    """``2026-01-01T12:30``: the run minute as the run's identity (lock holder, commit)."""
    return f"{at:%Y-%m-%dT%H:%M}"


async def run_locked(at: datetime, env: CycleEnv, sps: SourceFactory) -> RunReport:
    """Steps 2-8 under the lock, with the run's SPS from ``sps(start)``."""
    store = env.store
    store.publish_pending()
    start = begin(
        store.read_state(), at, where=store.url, now=env.clock.now(), max_skew=env.opts.max_clock_skew
    )
    if isinstance(start, RunReport):
        return start
    # Stages are few and cheap to list; temporary files need a walk of the whole store, so the
    # first run of each UTC day looks for them.
    sweep(env, temporaries=start.decision.new_day)
    owed = deliver_owed(env, outbox_of(env, start))
    token = env.token()  # one token source for the whole run
    collected = await collect(env, token, start, sps(start, token))
    # Scoring and writing take seconds of CPU and blocking I/O: keep the event loop free.
    return await asyncio.to_thread(score_and_commit, at, env, start, collected, owed)


def outbox_of(env: DeliveryEnv, start: RunStart) -> Outbox:
    """The outbox to work off; for a store written before outboxes, its last run is owed (once:
    delivering twice is harmless, never delivering is not)."""
    if start.outbox is not None:
        return start.outbox
    if start.last_at is None:
        return Outbox()
    run = legacy_run(start.last_at)
    return Outbox(owed=tuple(Owed(at=start.last_at, run=run, sink=name) for name in data_sinks(env)))


def sweep(env: DeliveryEnv, *, temporaries: bool) -> None:
    try:
        env.store.sweep(older_than=env.opts.stale_after, temporaries=temporaries)
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
        failed_pairs=sorted(sps.failed_pairs),
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
        region_names=collected.prices.region_names,
    )
    # A call that failed for quota or transient reasons means this count is not fully collected:
    # the rotation retries it next run instead of skipping it silently (for shards: over the union).
    rotation = finish_run(
        learn_invalid(start.rotation, regions=sps.invalid_regions, sizes=sps.invalid_sizes),
        decision,
        succeeded=not sps.retry_count,
    )
    failed_pairs = sorted(sps.failed_pairs - sps.covered_pairs)
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
        unknown=UnknownPairs(count=len(failed_pairs), pairs=tuple(failed_pairs)),
    )
    stage = store.stage(at)
    outbox = Outbox(owed=(*owed.owed, *(Owed(at=at, run=stage.name, sink=name) for name in data_sinks(env))))
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
        discard_stage(env, stage)  # definitely not committed
        raise
    except SpotlakeError:
        # Maybe committed (a lost answer): the sweep removes the stage later unless a kept
        # generation names it, so a commit that did land keeps its frames.
        raise
    report = attrs.evolve(report, state_version=version)
    return finish_delivery(env, report, owed, stage.name, changes=scored.changes, snapshot=scored.snapshot)


def discard_stage(env: DeliveryEnv, stage: RunStage) -> None:
    try:
        env.store.discard(stage)
    except SpotlakeError as exc:
        log.warning("could not remove the stage of a run that did not commit (the sweep will): %s", exc)


def finish_delivery(
    env: DeliveryEnv,
    report: RunReport,
    owed: Delivery,
    run: str,
    *,
    changes: pd.DataFrame,
    snapshot: pd.DataFrame,
) -> RunReport:
    """Feed the sinks the run just committed; a failure is reported (and owed), never raised."""
    sinks, failures = deliver_run(
        env, report.at, run, changes=changes, snapshot=snapshot, counts=report.counts
    )
    undelivered = set(owed.runs)
    if any(name != "metrics" for name in failures):
        undelivered.add(report.at)
    errors = [owed.error] if owed.error else []
    errors += [f"{name}: {error}" for name, error in failures.items()]
    if owed.parked:
        errors.append(f"{len(owed.parked)} owed run(s) given up on (docs/operations.md, 'Sink outages')")
    return attrs.evolve(
        report,
        sinks=(*owed.sinks, *sinks),
        delivery_error="; ".join(errors) + " (later runs deliver what is owed)" if errors else None,
        undelivered=tuple(sorted(undelivered)),
        parked=tuple(sorted({o.at for o in owed.parked})),
    )
