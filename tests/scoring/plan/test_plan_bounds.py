"""The lower bound: its counting arguments, and it never exceeds the exact optimum."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from plan_support import REGIONS, SIZES

from hypothesis_support import examples
from spotlake.errors import PlanError
from spotlake.scoring.plan import Pair, lower_bound, plan_calls


def test_lower_bound_counting_arguments() -> None:
    assert lower_bound([]) == 0
    one_size_nine_regions = [(f"r{i}", "s") for i in range(9)]
    assert lower_bound(one_size_nine_regions) == 2  # a size is in at most 8 regions per call
    one_region_six_sizes = [("r", f"s{i}") for i in range(6)]
    assert lower_bound(one_region_six_sizes) == 2  # a region takes at most 5 sizes per call
    full = [(f"r{i}", f"s{j}") for i in range(16) for j in range(10)]
    assert lower_bound(full) == 4  # 160 cells / 40
    with pytest.raises(PlanError):
        lower_bound(full, 9, 5)


def exact_optimum(pairs: frozenset[Pair], max_regions: int, max_sizes: int) -> int:
    """Fewest calls covering ``pairs``: set cover over every rectangle of the largest allowed shape.

    Any call extends to one with exactly min(limit, available) regions and sizes (extra cells are
    free), so those rectangles suffice; on these tiny worlds HiGHS solves the cover in milliseconds.
    """
    from itertools import combinations

    import numpy as np
    from scipy.optimize import Bounds, LinearConstraint, milp

    cells = sorted(pairs)
    regions = sorted({r for r, _ in cells})
    sizes = sorted({s for _, s in cells})
    rects = [
        (set(rs), set(ss))
        for rs in combinations(regions, min(max_regions, len(regions)))
        for ss in combinations(sizes, min(max_sizes, len(sizes)))
    ]
    matrix = np.array([[r in rs and s in ss for rs, ss in rects] for r, s in cells], dtype=float)
    res = milp(
        np.ones(len(rects)),
        constraints=LinearConstraint(matrix, 1, np.inf),
        integrality=np.ones(len(rects)),
        bounds=Bounds(0, 1),
    )
    assert res.status == 0, res.message
    return round(res.fun)


@settings(max_examples=examples(40), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    cells=st.sets(st.tuples(st.sampled_from(REGIONS[:5]), st.sampled_from(SIZES[:6])), min_size=1),
    lim=st.tuples(st.integers(1, 3), st.integers(1, 3)),
)
def test_lower_bound_never_exceeds_the_exact_optimum(cells: set[Pair], lim: tuple[int, int]) -> None:
    # Small limits on 5 x 6 worlds, so every counting argument binds somewhere and calls mix rows.
    pairs = frozenset(cells)
    optimum = exact_optimum(pairs, *lim)
    plan = plan_calls(pairs, max_regions=lim[0], max_sizes=lim[1])
    assert lower_bound(pairs, *lim) <= optimum <= plan.report.calls

