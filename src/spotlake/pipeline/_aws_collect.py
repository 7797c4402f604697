"""The collection step of an AWS cycle: what the run knows of each source, failures included.

Every AWS source is collected per region, and a region that fails is *unknown* this run, never
"gone" (docs/collectors.md, "AWS"):

* spot prices of a failed region are its zones' last known prices (the last committed snapshot's),
  so a failed listing neither erases prices nor records them as changed; a listing that answers
  for its regions but has no price at all is a failed run, not a market event;
* on-demand prices are fetched by the day's first run and kept in the state; a region that failed
  keeps its stored prices and is fetched again by the next run until the day has them all;
* the placement-score plan is made once a day from complete offerings (re-planned from the day
  before's, so configurations repeat); while the offerings are incomplete, the stored plan (or one
  from what was listed) serves, marked provisional, and the next run plans again; a change of the
  instance types asked for re-plans at once.

A run that cannot go on fails here, before its placement-score queries spend any account budget.
The placement scores come from an :data:`AwsSpsSource`: :func:`live_sps` asks the accounts now;
a sharded run's finaliser merges its workers' parts instead (spotlake.pipeline.aws_shards).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import TYPE_CHECKING

import attrs
import pandas as pd

from spotlake.clock import Clock
from spotlake.collect.aws import (
    AccountBook,
    AwsAccount,
    AwsInstanceTypeCollector,
    AwsOnDemandCollector,
    AwsSpotPriceCollector,
    AwsSpsCollector,
    AwsSpsPlan,
    AwsSpsQuery,
    AwsSpsResult,
    SpotAdvisorCollector,
    offerings_from_frame,
    plan_queries,
)
from spotlake.collect.aws.sps import FailedQuery
from spotlake.collect.base import CollectReport, CollectResult
from spotlake.errors import ConfigError, IncompleteDataError
from spotlake.model import AWS_ONDEMAND_SCHEMA, AWS_SPOT_PRICES_SCHEMA, Source, conform, empty_frame
from spotlake.pipeline._start import RunStart
from spotlake.pipeline.state import AwsDayPlan, AwsOnDemandDay, StateDocs
from spotlake.scoring.diff import frame_repr
from spotlake.storage.base import FrameKind, SnapshotStore

if TYPE_CHECKING:
    from spotlake.pipeline.aws import AwsAccess

__all__ = [
    "ONDEMAND_FRAME",
    "AwsCollected",
    "AwsSpsOutcome",
    "AwsSpsSource",
    "collect_aws",
    "list_offerings",
    "live_sps",
    "plan_day",
    "query_pairs",
    "score_queries",
]

log = logging.getLogger(__name__)

#: The state frame holding the day's on-demand prices.
ONDEMAND_FRAME = "aws_ondemand"


#: A (region, instance type) pair.
Pair = tuple[str, str]


def query_pairs(queries: Iterable[AwsSpsQuery], failed: Iterable[FailedQuery]) -> frozenset[Pair]:
    """The (region, type) pairs of the queries that did not fail (``failed`` by query index)."""
    lost = {f.index for f in failed}
    return frozenset(
        (region, q.instance_type) for i, q in enumerate(queries) if i not in lost for region in q.regions
    )


@attrs.frozen(kw_only=True, eq=False)
class AwsSpsOutcome:
    """The run's placement scores: the plan they follow, the collector's result, what was asked.

    ``asked``: the (region, type) pairs a successful query covered (their keys missing from the
    answer have ceased); the pairs of :attr:`AwsSpsResult.failed_queries` are unknown this run.
    ``incomplete``: why the run's queries may not all have been sent (a sharded run whose workers
    followed different plans); the capacity is then retried next run.
    """

    day_plan: AwsDayPlan
    result: AwsSpsResult
    asked: frozenset[Pair]
    incomplete: str | None = None

    @property
    def unknown(self) -> frozenset[Pair]:
        """Pairs of failed queries (a pair also asked by a successful query counts as asked)."""
        return (
            frozenset((r, f.instance_type) for f in self.result.failed_queries for r in f.regions)
            - self.asked
        )

    @property
    def retry(self) -> bool:
        """The capacity should be asked again next run."""
        return self.incomplete is not None or any(f.reason.retry_next_run for f in self.result.failed_queries)


#: Where a run's placement scores come from, given the run and the day's plan.
AwsSpsSource = Callable[[RunStart, AwsDayPlan], Awaitable[AwsSpsOutcome]]


async def score_queries(
    queries: Sequence[AwsSpsQuery],
    *,
    target_capacity: int,
    accounts: Sequence[AwsAccount],
    book: AccountBook,
    clock: Clock,
    concurrency: int,
) -> tuple[AwsSpsResult, frozenset[Pair]]:
    """``queries`` scored at ``target_capacity`` through ``accounts``, starting from ``book``; and
    the (region, type) pairs of the queries that succeeded."""
    result = await AwsSpsCollector(
        queries=queries,
        target_capacity=target_capacity,
        accounts=accounts,
        book=book,
        clock=clock,
        concurrency=concurrency,
    ).acollect()
    return result, query_pairs(queries, result.failed_queries)


def live_sps(
    *, accounts: Iterable[AwsAccount], clock: Clock, store_url: str, concurrency: int = 1
) -> AwsSpsSource:
    """Ask ``accounts`` for the plan's scores now, rotating them by the stored account book."""
    chosen = tuple(accounts)

    async def source(start: RunStart, day_plan: AwsDayPlan) -> AwsSpsOutcome:
        result, asked = await score_queries(
            day_plan.plan.queries,
            target_capacity=start.decision.desired_count,
            accounts=chosen,
            book=StateDocs(start.state, store_url).account_book(),
            clock=clock,
            concurrency=concurrency,
        )
        return AwsSpsOutcome(day_plan=day_plan, result=result, asked=asked)

    return source


@attrs.frozen(kw_only=True, eq=False)
class AwsCollected:
    """What one AWS run collected, and what it knows for the regions that failed."""

    types: CollectResult
    spot: CollectResult
    advisor: CollectResult
    #: This run's on-demand collection (``None``: the day's prices came from the state).
    ondemand: CollectResult | None
    #: The day's on-demand prices (this run's, and the state's for regions it could not fetch).
    ondemand_frame: pd.DataFrame = attrs.field(repr=frame_repr)
    ondemand_missing: tuple[str, ...]
    #: The spot prices to score with: this run's, and the last known ones of failed regions.
    spot_frame: pd.DataFrame = attrs.field(repr=frame_repr)
    sps: AwsSpsOutcome

    @property
    def day_plan(self) -> AwsDayPlan:
        return self.sps.day_plan

    @property
    def plan(self) -> AwsSpsPlan:
        return self.day_plan.plan


def failed_regions(report: CollectReport, regions: Iterable[str]) -> set[str]:
    """The regions a per-region collection could not collect (all of them when a failure names
    none, or when nothing succeeded)."""
    every = set(regions)
    if report.planned and not report.succeeded:
        return every
    scopes = {f.scope for f in report.failures}
    return every if None in scopes else {s for s in scopes if s is not None}


async def collect_aws(
    *,
    store: SnapshotStore,
    start: RunStart,
    access: AwsAccess,
    clock: Clock,
    instance_types: tuple[str, ...],
    sps: AwsSpsSource,
) -> AwsCollected:
    """Every source of the run, the placement scores from ``sps`` (see the module docstring)."""
    regions, clients = access.regions, access.clients
    docs = StateDocs(start.state, store.url)
    stored_frame = start.state.frames.get(ONDEMAND_FRAME)
    stored_day = docs.aws_ondemand()
    fetch = (
        stored_frame is None or stored_day is None or stored_day.date != start.day or bool(stored_day.missing)
    )
    tasks = [
        list_offerings(access, clock),
        AwsSpotPriceCollector(regions=regions, clients=clients, clock=clock, allow_partial=True).acollect(),
        SpotAdvisorCollector(
            url=access.advisor_url,
            regions=regions,
            transport=access.advisor_transport,
            clock=clock,
            allow_partial=True,
        ).acollect(),
    ]
    if fetch:
        tasks.append(
            AwsOnDemandCollector(regions=regions, clients=clients, clock=clock, allow_partial=True).acollect()
        )
    results = await asyncio.gather(*tasks)
    types, spot, advisor = results[0], results[1], results[2]
    ondemand = results[3] if fetch else None
    spot_frame = _spot_prices(store, spot, regions)
    ondemand_frame, missing = _ondemand(ondemand, stored_frame, stored_day, regions)
    scores = await sps(start, plan_day(start, docs, types, instance_types))
    return AwsCollected(
        types=types,
        spot=spot,
        advisor=advisor,
        ondemand=ondemand,
        ondemand_frame=ondemand_frame,
        ondemand_missing=missing,
        spot_frame=spot_frame,
        sps=scores,
    )


async def list_offerings(access: AwsAccess, clock: Clock) -> CollectResult:
    """The instance types and zones offered in the collected regions (per region; partial allowed)."""
    collector = AwsInstanceTypeCollector(
        regions=access.regions, clients=access.clients, clock=clock, allow_partial=True
    )
    return await collector.acollect()


def _spot_prices(store: SnapshotStore, spot: CollectResult, regions: tuple[str, ...]) -> pd.DataFrame:
    """This run's spot prices plus the last known ones of the regions whose listing failed; a
    run with no price at all fails (:class:`IncompleteDataError`), before any score is asked for."""
    report = spot.report
    if report.planned and not report.succeeded:
        raise IncompleteDataError(
            f"aws_spot_prices: no region's spot prices could be read ({report.failures[0]}); the run is "
            "retried next time",
            source=Source.AWS_SPOT_PRICES,
            missing=[str(f) for f in report.failures[:20]],
        )
    if spot.frame.empty:
        raise IncompleteDataError(
            f"aws_spot_prices: the listing answered for {report.succeeded} region(s) but holds no price at "
            "all; taken as a failed listing, not every spot offering gone. The run is retried next time",
            source=Source.AWS_SPOT_PRICES,
            missing=list(regions),
        )
    failed = failed_regions(report, regions)
    if not failed:
        return spot.frame
    last = store.latest(FrameKind.MERGED)
    if last is None:
        return spot.frame
    known = last[
        last["region"].isin(sorted(failed)).to_numpy(dtype=bool)
        & last["zone"].notna().to_numpy(dtype=bool)
        & last["spot_price"].notna().to_numpy(dtype=bool)
    ][["size", "region", "zone", "spot_price"]].drop_duplicates(["size", "region", "zone"])
    log.info("aws_spot_prices: %d region(s) failed; their zones keep their last known prices", len(failed))
    known["price_at"] = pd.Series(pd.NaT, index=known.index, dtype=AWS_SPOT_PRICES_SCHEMA["price_at"])
    both = pd.concat([spot.frame, known], ignore_index=True)
    return conform(both, AWS_SPOT_PRICES_SCHEMA, source=Source.AWS_SPOT_PRICES)


def _ondemand(
    result: CollectResult | None,
    stored: pd.DataFrame | None,
    day: AwsOnDemandDay | None,
    regions: tuple[str, ...],
) -> tuple[pd.DataFrame, tuple[str, ...]]:
    """The day's on-demand prices and the regions they still lack (see the module docstring)."""
    if result is None:
        assert stored is not None and day is not None
        return conform(stored, AWS_ONDEMAND_SCHEMA, source=Source.AWS_ONDEMAND), day.missing
    failed = failed_regions(result.report, regions)
    fresh = result.frame[~result.frame["region"].isin(sorted(failed)).to_numpy(dtype=bool)]
    kept = (
        stored[stored["region"].isin(sorted(failed)).to_numpy(dtype=bool)]
        if stored is not None
        else empty_frame(AWS_ONDEMAND_SCHEMA)
    )
    frame = pd.concat([fresh, kept], ignore_index=True)
    return conform(frame, AWS_ONDEMAND_SCHEMA, source=Source.AWS_ONDEMAND), tuple(sorted(failed))


def plan_day(start: RunStart, docs: StateDocs, types: CollectResult, wanted: tuple[str, ...]) -> AwsDayPlan:
    """The day's plan from the offerings ``types`` listed (see the module docstring)."""
    stored = docs.aws_plan()
    same = stored is not None and stored.instance_types == wanted
    fresh = stored is not None and stored.complete and stored.date == start.day
    if stored is not None and same and fresh and not start.decision.rebuild_plan:
        return stored
    previous = stored.plan if stored is not None else None
    complete = types.report.complete
    if not complete:
        if stored is not None and same:
            log.warning("AWS offerings incomplete (%s); keeping the stored plan", types.report.failures[0])
            return attrs.evolve(stored, date=start.day, complete=False)
        if types.report.succeeded == 0:
            raise IncompleteDataError(
                f"aws_types: no region's offerings could be listed ({types.report.failures[0]}) and no "
                "plan is stored: nothing to score. The run is retried next time",
                source=Source.AWS_TYPES,
                missing=[str(f) for f in types.report.failures[:20]],
            )
    frame = types.frame
    if wanted:
        frame = frame[frame["size"].isin(wanted).to_numpy(dtype=bool)]
        if frame.empty and complete:
            raise ConfigError(
                f"instance types {list(wanted)[:10]} are offered in none of the regions collected: check "
                "--types (AwsCycleOptions.instance_types)"
            )
    plan = plan_queries(offerings_from_frame(frame), previous=previous)
    return AwsDayPlan(date=start.day, plan=plan, complete=complete, instance_types=wanted)
