"""Shards of a plan for parallel workers, and the merge back into one plan.

An AWS Batch array job of ``n`` children runs ``shard_of(plan, AWS_BATCH_JOB_ARRAY_INDEX, n)``: the
shards are consecutive runs of the plan's calls whose lengths differ by at most one, their supports
partition the plan's, and :func:`merge_plans` of the shards gives the plan back (docs/planner.md,
"Sharding for parallel workers").
"""

from __future__ import annotations

from collections.abc import Sequence

from spotlake.errors import PlanError
from spotlake.scoring.plan._report import make_report
from spotlake.scoring.plan.values import Pair, Plan

__all__ = ["merge_plans", "shard_of", "shard_plan"]


def shard_plan(plan: Plan, shards: int) -> list[Plan]:
    """Split ``plan`` into ``shards`` consecutive parts whose call counts differ by at most one.

    Shard ``i`` holds calls ``[start_i, end_i)`` of ``plan.calls`` (in plan order), its support is
    the part of the plan's support those calls cover, and :func:`merge_plans` of the shards gives
    the plan back. With more shards than calls the last shards are empty (their worker idles).
    """
    if shards < 1:
        raise PlanError(f"a plan is split into at least 1 shard, got {shards}")
    n = len(plan.calls)
    bounds = [(k * n) // shards for k in range(shards + 1)]
    out: list[Plan] = []
    earlier: set[Pair] = set()
    for k in range(shards):
        calls = plan.calls[bounds[k] : bounds[k + 1]]
        covered = {p for c in calls for p in c.pairs()}
        # A pair two shards both score belongs to the first one: shard supports partition the plan's.
        part = frozenset((plan.support & covered) - earlier)
        earlier |= covered
        report = make_report(
            calls,
            part,
            max_regions=plan.report.max_regions,
            max_sizes=plan.report.max_sizes,
            seconds=0.0,
            strategy=f"shard {k + 1}/{shards} of {plan.report.strategy}",
        )
        out.append(Plan(calls=calls, support=part, report=report, forbidden=plan.forbidden))
    return out


def shard_of(plan: Plan, index: int, shards: int) -> Plan:
    """Shard ``index`` (0-based, e.g. ``AWS_BATCH_JOB_ARRAY_INDEX``) of :func:`shard_plan`."""
    if not 0 <= index < shards:
        raise PlanError(f"shard index must be within 0..{shards - 1}, got {index}")
    return shard_plan(plan, shards)[index]


def merge_plans(plans: Sequence[Plan]) -> Plan:
    """Join shards (or any plans with the same limits) back into one plan, calls in sorted order."""
    if not plans:
        raise PlanError("merge_plans needs at least one plan")
    limits = {(p.report.max_regions, p.report.max_sizes) for p in plans}
    if len(limits) != 1:
        raise PlanError(f"cannot merge plans made with different call limits: {sorted(limits)}")
    max_regions, max_sizes = limits.pop()
    calls = tuple(sorted((c for p in plans for c in p.calls), key=lambda c: (c.regions, c.sizes)))
    support = frozenset().union(*(p.support for p in plans))
    forbidden = frozenset().union(*(p.forbidden for p in plans))
    strategies = sorted({p.report.strategy.split(" of ", 1)[-1] for p in plans})
    report = make_report(
        calls,
        support,
        max_regions=max_regions,
        max_sizes=max_sizes,
        seconds=sum(p.report.seconds for p in plans),
        strategy=" + ".join(strategies),
    )
    return Plan(calls=calls, support=support, report=report, forbidden=forbidden)
