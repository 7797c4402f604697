"""The lower bound: how many calls no plan can do with, the yardstick every plan is reported against.

docs/planner.md ("The problem and the lower bound") explains when it is tight and what a stronger
bound would need.
"""

from __future__ import annotations

from collections.abc import Iterable

from spotlake.model import MAX_SPS_REGIONS, MAX_SPS_SIZES
from spotlake.scoring.plan._bits import ceil_div
from spotlake.scoring.plan._index import check_limits
from spotlake.scoring.plan.values import Pair

__all__ = ["lower_bound"]


def lower_bound(
    pairs: Iterable[Pair], max_regions: int = MAX_SPS_REGIONS, max_sizes: int = MAX_SPS_SIZES
) -> int:
    """Calls no plan can do with: the largest of three counting arguments.

    - every call scores at most ``max_regions * max_sizes`` cells: ``ceil(pairs / 40)``;
    - region ``r`` with ``k_r`` sizes is in at least ``ceil(k_r / 5)`` calls, and a call holds at most
      8 regions: ``ceil(sum_r ceil(k_r / 5) / 8)``;
    - size ``s`` in ``m_s`` regions is in at least ``ceil(m_s / 8)`` calls, and a call holds at most
      5 sizes: ``ceil(sum_s ceil(m_s / 8) / 5)``.
    """
    check_limits(max_regions, max_sizes)
    unique = set(pairs)
    if not unique:
        return 0
    per_region: dict[str, int] = {}
    per_size: dict[str, int] = {}
    for r, s in unique:
        per_region[r] = per_region.get(r, 0) + 1
        per_size[s] = per_size.get(s, 0) + 1
    by_cells = ceil_div(len(unique), max_regions * max_sizes)
    by_regions = ceil_div(sum(ceil_div(k, max_sizes) for k in per_region.values()), max_regions)
    by_sizes = ceil_div(sum(ceil_div(m, max_regions) for m in per_size.values()), max_sizes)
    return max(by_cells, by_regions, by_sizes)
