"""The best cover of one indexed support set: every construction, improved, the fewest calls win.

:func:`best_cover` builds the constructions (:mod:`spotlake.scoring.plan._construct`), improves those
within ``_IMPROVE_WITHIN`` of the best one (:mod:`spotlake.scoring.plan._improve`), tries seeded
greedy restarts on small worlds, and keeps the cover with the fewest calls (then fewest cells, then
construction order). :func:`~spotlake.scoring.plan.solve.plan_calls` calls it once per plan, and the
order search (:mod:`spotlake.scoring.plan._search`) once per re-plan (docs/planner.md, steps 1-4).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final

import numpy as np
import numpy.typing as npt

from spotlake.scoring.plan._bits import Call, bool_rows
from spotlake.scoring.plan._construct import (
    chunk_construction,
    fill_near_identical,
    greedy_construction,
    transpose_masks,
)
from spotlake.scoring.plan._improve import Improver, split_forbidden
from spotlake.scoring.plan._index import Indexed

__all__ = ["best_cover"]

#: Constructions with more calls than this factor times the best construction are not improved:
#: elimination removes 0-3 % of the calls, so they cannot catch up, and improving costs ~0.1 s each.
_IMPROVE_WITHIN: Final = 1.03

#: Below this many (size x region) cells every construction is cheap enough to always build.
_SMALL_CELLS: Final = 20_000

#: Seeded greedy restarts on small worlds: at most this many, and at most ``_RESTART_CELLS / cells``
#: (each restart costs time proportional to the cells), which keeps them within ~0.2 s.
_MAX_RESTARTS: Final = 24
_RESTART_CELLS: Final = 20_000


def best_cover(idx: Indexed, max_regions: int, max_sizes: int, bound: int) -> tuple[list[Call], str]:
    """Best cover of ``idx`` over the constructions; calls as (size indices, region indices).

    Every construction is cheap; the local improvement is not, so only constructions within
    ``_IMPROVE_WITHIN`` of the best construction are improved (always at least the best one).
    Small worlds, where one call is a large share of the plan, then get seeded restarts of the
    greedy (see :func:`_restarts`) unless the plan already meets ``bound``.
    """
    n_regions, n_sizes = len(idx.regions), len(idx.sizes)
    support = bool_rows(idx.masks, n_regions)
    # Near-identical region sets widened to their union: covering this superset of every size's
    # regions also covers the real support, and the widened families plan as exact groups.
    filled = fill_near_identical(idx.masks)
    widened = filled != list(idx.masks)
    wide = bool_rows(filled, n_regions) if widened else support
    built: list[tuple[list[Call], str]] = [
        # Plain greedy wins on unstructured worlds; exact groups + piece-aware greedy on the widened
        # support wins on family-structured ones (every measured world: docs/planner.md).
        (greedy_construction(support, max_sizes, max_regions, piece_aware=False), "greedy"),
        (
            greedy_construction(wide, max_sizes, max_regions, piece_aware=True, masks=filled, real=idx.masks),
            f"{'widened+' if widened else ''}exact-groups+greedy-pieces",
        ),
        (chunk_construction(idx.masks, n_regions, max_sizes, max_regions), "size-chunks"),
    ]
    region_masks = transpose_masks(idx.masks, n_regions)
    by_regions = chunk_construction(region_masks, n_sizes, max_regions, max_sizes)
    built.append(([(cols, items) for items, cols in by_regions], "region-chunks"))
    cells = n_sizes * n_regions
    if n_regions * max_sizes >= n_sizes * max_regions or cells <= _SMALL_CELLS:
        # Regions are the scarcer side (or the world is small): also grow rectangles region-first.
        flipped = greedy_construction(support.T.copy(), max_regions, max_sizes, piece_aware=False)
        built.append(([(cols, items) for items, cols in flipped], "greedy-regions"))
    fewest = min(len(calls) for calls, _ in built)
    candidates = [(calls, name) for calls, name in built if len(calls) <= fewest * _IMPROVE_WITHIN]
    best: tuple[int, int] | None = None
    best_calls: list[Call] = []
    best_name = ""
    for k, (built_calls, name) in enumerate((*candidates, *_restarts(support, max_sizes, max_regions))):
        if best is not None and best[0] <= bound and k >= len(candidates):
            # Optimal: no restart can beat the lower bound. The constructions all still run, as
            # one meeting the bound with fewer wasted cells may come later (the real catalog).
            break
        calls = split_forbidden(built_calls, idx.forbidden) if any(idx.forbidden) else built_calls
        improver = Improver(
            idx.masks, n_regions, calls, per_call=max_sizes, per_block=max_regions, forbidden=idx.forbidden
        )
        improver.eliminate()
        improver.trim()
        result = improver.result()
        key = (len(result), sum(len(a) * len(b) for a, b in result))
        if best is None or key < best:
            best, best_calls, best_name = key, result, name
    return best_calls, best_name


def _restarts(
    support: npt.NDArray[np.bool_], max_sizes: int, max_regions: int
) -> Iterator[tuple[list[Call], str]]:
    """Greedy covers with other tie-breaks, for small worlds: sizes and regions relabelled by a
    permutation from ``numpy.random.default_rng(k)`` for k = 0, 1, ... (fixed seeds: deterministic).

    On a 10 x 25 world a single call is 10-15 % of the plan, and ties decide it; the restarts find
    the proven optimum where the plain greedy is one call above it. Generated lazily, so the caller
    stops as soon as a plan meets the lower bound. The count shrinks with the world's size so the
    whole budget stays within ~0.2 s; worlds above ``_SMALL_CELLS`` cells get none.
    """
    n_items, n_cols = support.shape
    cells = n_items * n_cols
    if cells > _SMALL_CELLS:
        return
    for k in range(min(_MAX_RESTARTS, _RESTART_CELLS // max(cells, 1))):
        rng = np.random.default_rng(k)
        item_perm, col_perm = rng.permutation(n_items), rng.permutation(n_cols)
        shuffled = np.ascontiguousarray(support[item_perm][:, col_perm])
        for piece_aware in (False, True):
            calls = greedy_construction(shuffled, max_sizes, max_regions, piece_aware=piece_aware)
            yield (
                [
                    (
                        tuple(sorted(int(item_perm[i]) for i in items)),
                        tuple(sorted(int(col_perm[c]) for c in cols)),
                    )
                    for items, cols in calls
                ],
                f"greedy-restart-{k}",
            )
