"""Plans derived from a stored plan: repaired after values were learned invalid, or restricted.

:func:`repair_plan` drops regions, sizes and pairs the SPS API rejected without re-planning the
day: it edits the calls and runs the same local improvement as planning
(:mod:`spotlake.scoring.plan._improve`), no construction. :func:`restrict_plan` plans part of a
plan's support afresh (docs/planner.md, "Re-planning without redoing the day").
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from spotlake.scoring.plan._bits import Call
from spotlake.scoring.plan._improve import Improver, split_forbidden
from spotlake.scoring.plan._index import check_cover, indexed, to_calls, validate_pairs
from spotlake.scoring.plan._report import make_report
from spotlake.scoring.plan.solve import plan_calls
from spotlake.scoring.plan.values import Pair, Plan

__all__ = ["repair_plan", "restrict_plan"]


def repair_plan(
    plan: Plan,
    *,
    invalid_regions: Iterable[str] = (),
    invalid_sizes: Iterable[str] = (),
    invalid_pairs: Iterable[Pair] = (),
) -> Plan:
    """The plan without values learned invalid, repaired locally instead of re-planned.

    Invalid regions and sizes (rejected by the API for every call) are removed from every call and
    from the support; a call left empty disappears. An invalid pair (a size rejected in one region)
    is forbidden: every call scoring it is split in two ((regions - r) x sizes and r x (sizes - s)).
    Then the same local improvement as :func:`plan_calls` runs on the result (eliminating calls the
    removals made redundant, trimming waste), so the repaired plan never has more calls than the
    split one and keeps every remaining pair covered. Much cheaper than a new plan: no construction.
    """
    started = time.perf_counter()
    bad_regions = set(invalid_regions)
    bad_sizes = set(invalid_sizes)
    banned = validate_pairs(invalid_pairs) | set(plan.forbidden)
    support = frozenset(
        (r, s)
        for r, s in plan.support
        if r not in bad_regions and s not in bad_sizes and (r, s) not in banned
    )
    limits = plan.report
    idx = indexed(support, banned)
    r_index = {r: i for i, r in enumerate(idx.regions)}
    s_index = {s: i for i, s in enumerate(idx.sizes)}
    calls: list[Call] = []
    for call in plan.calls:
        # Names outside the new support (invalid, or covering nothing any more) leave the call.
        items = tuple(s_index[s] for s in call.sizes if s in s_index)
        cols = tuple(r_index[r] for r in call.regions if r in r_index)
        if items and cols:
            calls.append((items, cols))
    if any(idx.forbidden):
        calls = split_forbidden(calls, idx.forbidden)
    improver = Improver(
        idx.masks,
        len(idx.regions),
        calls,
        per_call=limits.max_sizes,
        per_block=limits.max_regions,
        forbidden=idx.forbidden,
    )
    improver.eliminate()
    improver.trim()
    check_cover(idx, improver.result())
    sps_calls = to_calls(idx, improver.result())
    report = make_report(
        sps_calls,
        support,
        max_regions=limits.max_regions,
        max_sizes=limits.max_sizes,
        seconds=time.perf_counter() - started,
        strategy=f"repaired {limits.strategy}",
    )
    return Plan(calls=sps_calls, support=support, report=report, forbidden=frozenset(banned))


def restrict_plan(
    plan: Plan, *, regions: Iterable[str] | None = None, sizes: Iterable[str] | None = None
) -> Plan:
    """A fresh plan for part of ``plan``'s support: only these regions and/or sizes.

    For example the sizes a team wants scored at every desired count, planned separately from the
    day's full rotation. Forbidden cells carry over. ``None`` keeps that side whole.
    """
    keep_r = None if regions is None else set(regions)
    keep_s = None if sizes is None else set(sizes)
    subset = [
        (r, s) for r, s in plan.support if (keep_r is None or r in keep_r) and (keep_s is None or s in keep_s)
    ]
    return plan_calls(
        subset,
        max_regions=plan.report.max_regions,
        max_sizes=plan.report.max_sizes,
        forbidden=plan.forbidden,
    )
