"""One AWS collection cycle: the Azure cycle's steps with AWS's sources, through the same engine.

:func:`arun_aws_cycle` (and its blocking facade :func:`run_aws_cycle`) collects AWS into a store
of its own: the store's AWS tree (``open_store(location, cloud=Cloud.AWS)``, i.e.
``{location}/aws/``, laid out as the Azure tree is). Each cloud so has its own state, lock and
schedule, and neither waits for the other's run. For one run time ``at`` it does what
:mod:`spotlake.pipeline.cycle` does for Azure:

1. take the tree's run lock; finish publishing an interrupted commit; read the committed state
   (rotation, the day's query plan, the account book, the day's on-demand prices, the T2/T3
   history); a committed ``at`` is a no-op;
2. deliver what the sinks are owed;
3. the rotation's count is this run's target capacity (the first run of a UTC day takes count 1
   and re-plans);
4. collect instance types and zones, spot prices and the Spot Instance Advisor concurrently, and
   on-demand prices once a day (kept in the state between); plan the placement-score queries from
   the offerings (spotlake.collect.aws.plan: re-planned from the day before's plan, so yesterday's
   configurations repeat and cost no account budget); score them at the run's capacity, accounts
   rotating by the account book;
5. score through the engine Azure uses (spotlake.scoring.engine) with AWS's scale
   (:data:`~spotlake.model.AWS_SCORES`) and per-zone spot prices; a failed query's pairs are
   *unknown*, never ceased;
6. stage the raw frames, the merged snapshot and the changeset, and commit with compare-and-swap,
   which publishes them;
7. deliver the run to the sinks (the outbox of spotlake.pipeline._delivery).

A run fails (nothing committed, the count retried next run) when the offerings cannot be
listed and no plan is stored, when no placement-score query succeeds, or when the spot prices
could not be collected at all. Its report is a :class:`~spotlake.pipeline.report.RunReport`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

import attrs
import httpx
import pandas as pd

from spotlake.clock import Clock, SystemClock, ensure_utc
from spotlake.collect.aws import (
    DEFAULT_ADVISOR_URL,
    AwsAccount,
    ClientFactory,
    default_clients,
)
from spotlake.collect.base import run_sync
from spotlake.errors import ConfigError, ConflictError, IncompleteDataError
from spotlake.model import AWS_SCORES, Source
from spotlake.pipeline._aws_collect import ONDEMAND_FRAME, AwsCollected, AwsSpsSource, collect_aws, live_sps
from spotlake.pipeline._aws_inputs import engine_inputs
from spotlake.pipeline._delivery import Delivery, data_sinks, deliver_owed
from spotlake.pipeline._run import discard_stage, finish_delivery, outbox_of, run_id_of, sweep
from spotlake.pipeline._start import RunStart, begin
from spotlake.pipeline.aws_shards import run_aws_shard
from spotlake.pipeline.cycle import guarded, locked
from spotlake.pipeline.options import (
    DEFAULT_MAX_CLOCK_SKEW,
    DEFAULT_STALE_AFTER,
    ProgressFactory,
    SnapshotWriter,
    no_progress,
    sink_names,
)
from spotlake.pipeline.report import RunReport, RunStatus, UnknownPairs
from spotlake.pipeline.shards import Shard
from spotlake.pipeline.state import (
    AWS_ACCOUNTS_DOC,
    AWS_ONDEMAND_DOC,
    AWS_PLAN_DOC,
    LAST_RUN_DOC,
    OUTBOX_DOC,
    ROTATION_DOC,
    AwsOnDemandDay,
    LastRun,
    Outbox,
    Owed,
)
from spotlake.scoring.engine import DEFAULT_MAX_AGE, Coverage, ScoringState, score_run
from spotlake.scoring.rotation import finish_run
from spotlake.serde import dump_doc
from spotlake.storage.base import FrameKind, MetricsSink, SnapshotStore, TimeSeriesSink

__all__ = ["ONDEMAND_FRAME", "AwsAccess", "AwsCycleOptions", "arun_aws_cycle", "run_aws_cycle"]

log = logging.getLogger(__name__)


def _strings(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(str(v) for v in values)


def _accounts(values: Iterable[AwsAccount]) -> tuple[AwsAccount, ...]:
    return tuple(values)


@attrs.frozen(kw_only=True)
class AwsAccess:
    """How to reach AWS: the regions collected, the accounts asked for placement scores, and a
    client factory for everything else (default: boto3's default credential chain and standard
    endpoint configuration, so ``AWS_ENDPOINT_URL`` and friends apply)."""

    regions: tuple[str, ...] = attrs.field(converter=_strings)
    accounts: tuple[AwsAccount, ...] = attrs.field(converter=_accounts)
    clients: ClientFactory = attrs.field(default=default_clients, repr=False)
    advisor_url: str = DEFAULT_ADVISOR_URL
    #: httpx transport for the Spot Instance Advisor (tests); ``None`` = the network.
    advisor_transport: httpx.AsyncBaseTransport | None = attrs.field(default=None, repr=False)

    def __attrs_post_init__(self) -> None:
        if not self.regions:
            raise ConfigError("AwsAccess needs at least one region to collect")
        if not self.accounts:
            raise ConfigError("AwsAccess needs at least one account for placement scores")


@attrs.frozen(kw_only=True)
class AwsCycleOptions:
    """How an AWS cycle runs (the knobs it shares with the Azure cycle mean the same)."""

    #: Only these instance types (empty: every type offered in the regions).
    instance_types: tuple[str, ...] = attrs.field(default=(), converter=_strings)
    #: Accounts asked for placement scores at the same time (each account's queries in order).
    sps_concurrency: int = 8
    history_max_age: timedelta = DEFAULT_MAX_AGE
    lock_timeout: float = 0.0
    stale_after: timedelta = DEFAULT_STALE_AFTER
    max_clock_skew: timedelta = DEFAULT_MAX_CLOCK_SKEW
    delivery_catch_up: int = 36


@attrs.frozen(kw_only=True)
class AwsCycleEnv:
    """Everything an AWS cycle was given but the run time (a
    :class:`~spotlake.pipeline.options.DeliveryEnv`)."""

    store: SnapshotStore
    access: AwsAccess
    opts: AwsCycleOptions
    timeseries: TimeSeriesSink | None = None
    metrics: MetricsSink | None = None
    extra_writers: Sequence[SnapshotWriter] = ()
    clock: Clock
    progress: ProgressFactory = no_progress

    def __attrs_post_init__(self) -> None:
        sink_names(self.timeseries, self.extra_writers)  # a ConfigError for clashing names, now


def run_aws_cycle(
    at: datetime,
    *,
    store: SnapshotStore,
    access: AwsAccess,
    options: AwsCycleOptions | None = None,
    timeseries: TimeSeriesSink | None = None,
    metrics: MetricsSink | None = None,
    extra_writers: Sequence[SnapshotWriter] = (),
    clock: Clock | None = None,
    progress: ProgressFactory = no_progress,
    shard: Shard | None = None,
) -> RunReport:
    """Blocking facade over :func:`arun_aws_cycle` (safe inside a running event loop)."""
    return run_sync(
        arun_aws_cycle(
            at,
            store=store,
            access=access,
            options=options,
            timeseries=timeseries,
            metrics=metrics,
            extra_writers=extra_writers,
            clock=clock,
            progress=progress,
            shard=shard,
        )
    )


async def arun_aws_cycle(
    at: datetime,
    *,
    store: SnapshotStore,
    access: AwsAccess,
    options: AwsCycleOptions | None = None,
    timeseries: TimeSeriesSink | None = None,
    metrics: MetricsSink | None = None,
    extra_writers: Sequence[SnapshotWriter] = (),
    clock: Clock | None = None,
    progress: ProgressFactory = no_progress,
    shard: Shard | None = None,
) -> RunReport:
    """Run one AWS cycle for ``at`` into ``store`` (the AWS tree; see the module docstring).
    Never raises for a failed run (the report says ``FAILED``), except :class:`LockedError`.

    With ``shard``, send only that shard's placement-score queries through its share of the
    accounts and store them as a part; the worker that finds every part commits the run
    (:mod:`spotlake.pipeline.aws_shards`)."""
    env = AwsCycleEnv(
        store=store,
        access=access,
        opts=options or AwsCycleOptions(),
        timeseries=timeseries,
        metrics=metrics,
        extra_writers=tuple(extra_writers),
        clock=clock or SystemClock(),
        progress=progress,
    )
    at = ensure_utc(at).replace(second=0, microsecond=0)
    started = time.monotonic()
    if shard is not None:
        report = await guarded(at, run_aws_shard(at, env, shard))
    else:
        sps = live_sps(
            accounts=access.accounts,
            clock=env.clock,
            store_url=store.url,
            concurrency=env.opts.sps_concurrency,
        )
        report = await locked(
            store, at, timeout=env.opts.lock_timeout, body=lambda: run_aws_locked(at, env, sps)
        )
    return attrs.evolve(report, seconds=time.monotonic() - started)


async def run_aws_locked(at: datetime, env: AwsCycleEnv, sps: AwsSpsSource) -> RunReport:
    """The run at ``at`` under the tree's lock, its placement scores from ``sps``."""
    store = env.store
    store.publish_pending()
    start = begin(
        store.read_state(), at, where=store.url, now=env.clock.now(), max_skew=env.opts.max_clock_skew
    )
    if isinstance(start, RunReport):
        return start
    sweep(env, temporaries=start.decision.new_day)
    owed = deliver_owed(env, outbox_of(env, start))
    collected = await collect_aws(
        store=store,
        start=start,
        access=env.access,
        clock=env.clock,
        instance_types=env.opts.instance_types,
        sps=sps,
    )
    return await asyncio.to_thread(_score_and_commit, at, env, start, collected, owed)


def _score_and_commit(
    at: datetime, env: AwsCycleEnv, start: RunStart, collected: AwsCollected, owed: Delivery
) -> RunReport:
    store, decision, outcome = env.store, start.decision, collected.sps
    sps = outcome.result
    if sps.report.planned and not sps.report.succeeded:
        raise IncompleteDataError(
            f"aws_sps: none of the {sps.report.planned} queries succeeded; the capacity "
            f"{decision.desired_count} is retried next run. First failure: {sps.report.failures[0]}",
            source=Source.AWS_SPS,
            missing=[str(f) for f in sps.report.failures[:20]],
        )
    asked, unknown = outcome.asked, outcome.unknown
    inputs = engine_inputs(
        types=collected.types.frame,
        ondemand=collected.ondemand_frame,
        spot=collected.spot_frame,
        advisor=collected.advisor.frame,
    )
    ondemand_complete = not collected.ondemand_missing
    covered = Coverage(
        sps_pairs=sorted(asked),
        failed_pairs=sorted(unknown),
        prices_complete=collected.spot.report.complete and ondemand_complete,
        # a region the Advisor's document leaves out is unknown there, not "no interruptions"
        eviction_complete=collected.advisor.report.complete
        and set(env.access.regions) <= set(collected.advisor.frame["region"].dropna()),
        skus_complete=collected.types.report.complete,
        zonal=True,
    )
    prev = ScoringState.from_frames(start.state.frames) if start.state.frames else None
    scored = score_run(
        prev,
        sps=sps.frame,
        prices=inputs.prices,
        eviction=inputs.eviction,
        skus=inputs.skus,
        at=at,
        desired_count=decision.desired_count,
        covered=covered,
        max_age=env.opts.history_max_age,
        zone_prices=inputs.zone_prices,
        scale=AWS_SCORES,
    )
    rotation = finish_run(start.rotation, decision, succeeded=not outcome.retry)
    unknown_pairs = sorted(unknown)
    collectors = {
        Source.AWS_TYPES: collected.types.report,
        Source.AWS_SPOT_PRICES: collected.spot.report,
        Source.AWS_ADVISOR: collected.advisor.report,
        Source.AWS_SPS: sps.report,
    }
    if collected.ondemand is not None:
        collectors[Source.AWS_ONDEMAND] = collected.ondemand.report
    report = RunReport(
        at=at,
        status=RunStatus.COMMITTED,
        desired_count=decision.desired_count,
        new_day=decision.new_day,
        collectors=collectors,
        scoring=scored.report,
        failed_calls=len(sps.failed_queries),
        unknown=UnknownPairs(count=len(unknown_pairs), pairs=tuple(unknown_pairs)),
    )
    stage = store.stage(at)
    outbox = Outbox(owed=(*owed.owed, *(Owed(at=at, run=stage.name, sink=name) for name in data_sinks(env))))
    docs = dict(start.state.docs)
    docs.update(
        {
            ROTATION_DOC: dump_doc(rotation),
            AWS_PLAN_DOC: dump_doc(collected.day_plan),
            AWS_ONDEMAND_DOC: dump_doc(AwsOnDemandDay(date=start.day, missing=collected.ondemand_missing)),
            AWS_ACCOUNTS_DOC: dump_doc(sps.book),
            LAST_RUN_DOC: dump_doc(LastRun(at=at, desired_count=decision.desired_count, report=report)),
            OUTBOX_DOC: dump_doc(outbox),
        }
    )
    frames: dict[tuple[FrameKind, Source | None], pd.DataFrame] = {
        (FrameKind.RAW, Source.AWS_SPS): sps.frame,
        (FrameKind.RAW, Source.AWS_TYPES): collected.types.frame,
        (FrameKind.RAW, Source.AWS_SPOT_PRICES): collected.spot.frame,
        (FrameKind.RAW, Source.AWS_ADVISOR): collected.advisor.frame,
        (FrameKind.MERGED, None): scored.snapshot,
        (FrameKind.CHANGES, None): scored.changes,
    }
    if collected.ondemand is not None:
        frames[(FrameKind.RAW, Source.AWS_ONDEMAND)] = collected.ondemand.frame
    state_frames = {**scored.state.to_frames(), ONDEMAND_FRAME: collected.ondemand_frame}
    try:
        for (kind, source), frame in frames.items():
            stage.put_frame(kind=kind, source=source, frame=frame)
        version = store.commit_state(
            expected_version=start.state.version,
            frames=state_frames,
            docs=docs,
            run_id=run_id_of(at),
            publish=stage,
        )
    except ConflictError:
        discard_stage(env, stage)
        raise
    report = attrs.evolve(report, state_version=version)
    return finish_delivery(env, report, owed, stage.name, changes=scored.changes, snapshot=scored.snapshot)
