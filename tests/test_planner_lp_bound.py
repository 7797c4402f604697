"""The LP lower bound of benchmarks/planner_lp_bound.py (evidence for docs/planner.md) is valid.

It is never above the exact optimum (a set-cover MILP over every rectangle) on small random worlds,
and it is strictly stronger than the counting bound on a world where the counting bound is loose.
"""

from __future__ import annotations

import numpy as np
from benchmarks.planner_lp_bound import exact_optimum, strong_lower_bound

from spotlake.scoring.plan import lower_bound


def test_lp_bound_never_exceeds_the_exact_optimum() -> None:
    rng = np.random.default_rng(12345)
    for _ in range(12):
        n_regions, n_sizes = int(rng.integers(5, 9)), int(rng.integers(6, 9))
        max_regions, max_sizes = int(rng.integers(1, 4)), int(rng.integers(1, 4))
        mask = rng.random((n_regions, n_sizes)) < rng.uniform(0.3, 0.9)
        pairs = [(f"r{i}", f"s{j}") for i, j in np.argwhere(mask)]
        bound, diag = strong_lower_bound(pairs, max_regions, max_sizes, time_limit=20)
        assert diag["counting"] == lower_bound(pairs, max_regions, max_sizes)
        assert diag["counting"] <= bound <= exact_optimum(pairs, max_regions, max_sizes)


def test_lp_bound_beats_the_counting_bound_where_that_is_loose() -> None:
    # 5 regions x 7 sizes with limits 3 x 3 (found by a random search): counting 3, optimum 4.
    cells = {0: (0, 2, 4, 5, 6), 1: (0, 1, 6), 2: (2, 3, 4, 5, 6), 3: (0, 2, 4), 4: (0, 2, 3, 5)}
    pairs = [(f"r{r}", f"s{s}") for r, sizes in cells.items() for s in sizes]
    bound, diag = strong_lower_bound(pairs, 3, 3, time_limit=20)
    assert diag["counting"] == lower_bound(pairs, 3, 3) == 3
    assert diag["lp_exact"] and bound == 4 == exact_optimum(pairs, 3, 3)
