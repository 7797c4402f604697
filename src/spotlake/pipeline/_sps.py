"""Where a run's placement scores come from: an injected :class:`SpsSource`.

A cycle does not care whether its SPS frame was collected right now (:class:`LiveSps`: the day's
plan through the quota ledger) or merged from the parts of shard workers
(:class:`~spotlake.pipeline.shards.MergedParts`); both hand it an :class:`SpsOutcome`. Also here,
for both: the day's plan (:func:`day_plan`), the ledger of a set of subscriptions and
(:func:`collect_calls`) running some of the plan's calls.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from typing import Protocol

import attrs
import pandas as pd

from spotlake.collect.auth import BearerTokenSource
from spotlake.collect.base import CollectReport
from spotlake.collect.prices import PriceResult
from spotlake.collect.quota import LedgerState, QuotaLedger
from spotlake.collect.sps import FailedCall, SpsCollector, SpsResult
from spotlake.model import SpsCall
from spotlake.pipeline._start import RunStart
from spotlake.pipeline.options import CycleEnv, CycleOptions
from spotlake.pipeline.state import QUOTA_DOC
from spotlake.scoring.plan import Pair, Plan, plan_calls, repair_plan

__all__ = ["LiveSps", "SpsOutcome", "SpsSource", "collect_calls", "day_plan", "ledger_for"]

#: Awaits the run's price crawl (its support set is the planner's input on a new day).
PriceCrawl = Callable[[], Awaitable[PriceResult]]


@attrs.frozen(kw_only=True)
class SpsOutcome:
    """One run's SPS result, whether collected here or merged from shard parts."""

    plan: Plan
    frame: pd.DataFrame = attrs.field(eq=False)
    report: CollectReport
    failed_calls: tuple[FailedCall, ...]
    covered_pairs: frozenset[Pair]
    invalid_regions: frozenset[str] = frozenset()
    invalid_sizes: frozenset[str] = frozenset()
    #: Quota ledgers to commit, by state document name.
    ledgers: Mapping[str, LedgerState] = attrs.field(factory=dict)
    #: Set when the merged parts did not all follow one plan: the count is retried next run.
    incomplete: str | None = None

    @classmethod
    def of(cls, result: SpsResult, *, plan: Plan, ledger_doc: str, at: datetime) -> SpsOutcome:
        return cls(
            plan=plan,
            frame=result.frame,
            report=result.report,
            failed_calls=result.failed_calls,
            covered_pairs=result.covered_pairs,
            invalid_regions=result.invalid_regions,
            invalid_sizes=result.invalid_sizes,
            ledgers={ledger_doc: result.ledger.state(at)},
        )

    @property
    def failed_pairs(self) -> frozenset[Pair]:
        """Every (region, size) of a failed call: unknown this run, never "gone"."""
        return frozenset(p for f in self.failed_calls for p in f.call.pairs())

    @property
    def retry_count(self) -> bool:
        """The count was not fully collected (quota, transient failures, mixed plans): retry it."""
        return self.incomplete is not None or any(f.reason.retry_next_run for f in self.failed_calls)


class SpsSource(Protocol):
    """Gives a run its SPS outcome (``prices`` awaits the run's price crawl if the plan needs it)."""

    async def __call__(self, start: RunStart, prices: PriceCrawl) -> SpsOutcome: ...


@attrs.frozen
class LiveSps:
    """Collect every call of the day's plan now, through the store's quota ledger."""

    env: CycleEnv
    token: BearerTokenSource
    at: datetime

    async def __call__(self, start: RunStart, prices: PriceCrawl) -> SpsOutcome:
        plan = await day_plan(start, prices, self.env)
        ledger = ledger_for(
            start.ledgers.get(QUOTA_DOC),
            plan=plan,
            subscriptions=self.env.azure.credentials.subscriptions,
            opts=self.env.opts,
        )
        result = await collect_calls(plan.calls, start=start, ledger=ledger, env=self.env, token=self.token)
        return SpsOutcome.of(result, plan=plan, ledger_doc=QUOTA_DOC, at=self.at)


async def day_plan(start: RunStart, prices: PriceCrawl, env: CycleEnv) -> Plan:
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


def ledger_for(
    stored: QuotaLedger | None, *, plan: Plan, subscriptions: Sequence[str], opts: CycleOptions
) -> QuotaLedger:
    """The quota ledger of ``subscriptions`` over the plan's URL locations.

    URL locations come from the whole plan (not one shard's calls), so every shard's ledger has the
    same locations. The recorded windows of slots that still exist are kept; new slots start empty;
    the configured limits win over the stored ones (an operator may lower the budget after a 429 storm).
    """
    locations = opts.sps_locations or tuple(sorted({r for call in plan.calls for r in call.regions}))
    if stored is None:
        return QuotaLedger(
            subscriptions=subscriptions, locations=locations, budget=opts.sps_budget, window=opts.sps_window
        )
    return stored.with_slots(
        subscriptions=subscriptions, locations=locations, budget=opts.sps_budget, window=opts.sps_window
    )


async def collect_calls(
    calls: Sequence[SpsCall],
    *,
    start: RunStart,
    ledger: QuotaLedger,
    env: CycleEnv,
    token: BearerTokenSource,
) -> SpsResult:
    """``calls`` (all of the plan, or one shard's) at the run's desired count."""
    opts = env.opts
    return await SpsCollector(
        calls=calls,
        desired_count=start.decision.desired_count,
        zonal=opts.zonal,
        credential=token,
        ledger=ledger,
        endpoints=env.azure.endpoints,
        transport=env.azure.transport,
        clock=env.clock,
        concurrency=opts.sps_concurrency,
        progress=env.progress("sps"),
    ).acollect()
