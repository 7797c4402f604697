"""The planner's entry point: :func:`plan_calls`, from a support set to a checked, reported :class:`Plan`.

It validates the input, numbers it (:mod:`spotlake.scoring.plan._index`), takes the best cover
(:mod:`spotlake.scoring.plan._cover`), optionally spends a budget of re-plans on the order search
(:mod:`spotlake.scoring.plan._search`), checks that every pair is covered and reports the plan
against the lower bound (:mod:`spotlake.scoring.plan.bounds`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from spotlake.errors import PlanError
from spotlake.model import MAX_SPS_REGIONS, MAX_SPS_SIZES
from spotlake.scoring.plan._cover import best_cover
from spotlake.scoring.plan._index import check_cover, check_limits, indexed, to_calls, validate_pairs
from spotlake.scoring.plan._report import make_report
from spotlake.scoring.plan._search import order_search
from spotlake.scoring.plan.bounds import lower_bound
from spotlake.scoring.plan.values import Pair, Plan

__all__ = ["plan_calls"]


def plan_calls(
    pairs: Iterable[Pair],
    *,
    max_regions: int = MAX_SPS_REGIONS,
    max_sizes: int = MAX_SPS_SIZES,
    forbidden: Iterable[Pair] = (),
    search: int = 0,
    progress: Callable[[int, int | None], None] | None = None,
) -> Plan:
    """Plan SPS calls that cover every (region, size) of ``pairs``; deterministic.

    ``forbidden`` lists cells no call may score (pairs learned invalid: the API rejects the whole
    call); they are also removed from the support. ``search`` > 0 spends that many extra re-plans
    (each costs about one plain plan: ~0.4 s at 60 x 800) searching tie-break orders for fewer calls
    (see :func:`~spotlake.scoring.plan._search.order_search`); still deterministic, as the budget is
    a count, not a time.
    ``progress(done, total)`` is called once per re-plan of the search.
    :class:`PlanError` for limits outside 1..8 / 1..5, a negative ``search`` or malformed pairs.
    """
    check_limits(max_regions, max_sizes)
    if isinstance(search, bool) or not isinstance(search, int) or search < 0:
        raise PlanError(f"search must be a whole number of re-plans >= 0, got {search!r}")
    started = time.perf_counter()
    banned = validate_pairs(forbidden)
    support = frozenset(validate_pairs(pairs) - banned)
    idx = indexed(support, banned)
    bound = lower_bound(support, max_regions, max_sizes)
    calls, strategy = best_cover(idx, max_regions, max_sizes, bound) if support else ([], "empty")
    if search and support and len(calls) > bound:
        calls, found = order_search(
            idx,
            calls,
            max_regions=max_regions,
            max_sizes=max_sizes,
            bound=bound,
            iterations=search,
            progress=progress,
        )
        strategy = found or strategy
    check_cover(idx, calls)
    sps_calls = to_calls(idx, calls)
    seconds = time.perf_counter() - started
    report = make_report(
        sps_calls,
        support,
        max_regions=max_regions,
        max_sizes=max_sizes,
        seconds=seconds,
        strategy=strategy,
        bound=bound,
    )
    return Plan(calls=sps_calls, support=support, report=report, forbidden=frozenset(banned))
