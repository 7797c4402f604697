"""The order search: re-plan under other size/region orders and keep the plan with the fewest calls.

The constructions break ties by index, so the order of sizes and regions decides part of the plan.
:func:`order_search` hill-climbs over orders with a fixed budget of re-plans
(:func:`~spotlake.scoring.plan._cover.best_cover` each), seeded, so the result is the same on every
machine (docs/planner.md, step 5). ``plan_calls(search=N)`` runs it.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Final

import numpy as np
import numpy.typing as npt

from spotlake.scoring.plan._bits import Call, bool_rows
from spotlake.scoring.plan._construct import fill_near_identical
from spotlake.scoring.plan._cover import best_cover
from spotlake.scoring.plan._index import Indexed

__all__ = ["order_search"]

#: Order search (``plan_calls(search=N)``): the share of moves that swap two sizes of one family,
#: then that gather a family into one block; the rest swap two regions (docs/planner.md, step 5).
_SWAP_IN_FAMILY: Final = 0.5
_MOVE_FAMILY: Final = 0.8


def _permuted(idx: Indexed, size_order: Sequence[int], region_order: Sequence[int]) -> Indexed:
    """``idx`` with sizes and regions renumbered: new size ``i`` is old ``size_order[i]``, etc."""
    support = bool_rows(idx.masks, len(idx.regions))[np.asarray(size_order)][:, np.asarray(region_order)]
    banned = bool_rows(idx.forbidden, len(idx.regions))[np.asarray(size_order)][:, np.asarray(region_order)]
    weights = [1 << j for j in range(len(region_order))]

    def masks(rows: npt.NDArray[np.bool_]) -> tuple[int, ...]:
        return tuple(sum(w for w, on in zip(weights, row.tolist(), strict=True) if on) for row in rows)

    return Indexed(
        regions=tuple(idx.regions[j] for j in region_order),
        sizes=tuple(idx.sizes[i] for i in size_order),
        masks=masks(support),
        forbidden=masks(banned),
    )


def _family_groups(masks: Sequence[int]) -> list[int]:
    """Group label per size: sizes whose widened region sets (:func:`fill_near_identical`) are
    equal, i.e. a family whose sizes each miss a few regions. Name order does not keep a family
    together (Azure names sort by vCPU count first: ``D16_v2, D16_v3, ...``), so it is not used."""
    labels: dict[int, int] = {}
    return [labels.setdefault(m, len(labels)) for m in fill_near_identical(masks)]


def order_search(
    idx: Indexed,
    calls: list[Call],
    *,
    max_regions: int,
    max_sizes: int,
    bound: int,
    iterations: int,
    progress: Callable[[int, int | None], None] | None = None,
) -> tuple[list[Call], str | None]:
    """Re-plan under ``iterations`` mutated size/region orders; the fewest-call cover, and a label
    ``"<construction>+order-search(<re-plan>/<iterations>)"`` naming where it was found (``None``
    when no re-plan beat ``calls``).

    The constructions break ties by index, and on family worlds the tie order decides more than the
    local improvement can repair: freeing up to ~30 related calls of a plan never admitted a cheaper
    re-cover in our experiments, while other orders move the plan by several calls. So this is a
    hill climb over orders (a mutated order is kept when its plan is no longer than the current
    one's): swap two sizes of one family (any two sizes, for a size without family), gather one
    family's sizes into one block at a random place, or swap two regions. Seeded
    ``random.Random(0)``: deterministic for a given ``iterations``. Stops early at the lower bound.
    """
    rng = random.Random(0)
    groups = _family_groups(idx.masks)
    sizes, regions = list(range(len(idx.sizes))), list(range(len(idx.regions)))
    best, current, found = calls, len(calls), None
    for done in range(iterations):
        if progress is not None:
            progress(done, iterations)
        if len(best) <= bound:
            break
        new_sizes, new_regions = list(sizes), list(regions)
        move = rng.random()
        if move < _SWAP_IN_FAMILY:
            group = groups[rng.choice(new_sizes)]
            members = [k for k, i in enumerate(new_sizes) if groups[i] == group]
            if len(members) < 2:  # a size without family (uniform worlds): swap it with any size
                members = list(range(len(new_sizes)))
            if len(members) > 1:
                a, b = rng.sample(members, 2)
                new_sizes[a], new_sizes[b] = new_sizes[b], new_sizes[a]
        elif move < _MOVE_FAMILY:
            group = groups[rng.choice(new_sizes)]
            block = [i for i in new_sizes if groups[i] == group]
            rest = [i for i in new_sizes if groups[i] != group]
            at = rng.randrange(len(rest) + 1)
            new_sizes = rest[:at] + block + rest[at:]
        elif len(new_regions) > 1:
            a, b = rng.sample(range(len(new_regions)), 2)
            new_regions[a], new_regions[b] = new_regions[b], new_regions[a]
        if new_sizes == sizes and new_regions == regions:
            continue  # nothing moved (one size, or one family in one block): no re-plan needed
        shuffled, name = best_cover(_permuted(idx, new_sizes, new_regions), max_regions, max_sizes, bound)
        if len(shuffled) <= current:
            sizes, regions, current = new_sizes, new_regions, len(shuffled)
            if len(shuffled) < len(best):
                found = f"{name}+order-search({done + 1}/{iterations})"
                best = [
                    (tuple(sorted(new_sizes[i] for i in items)), tuple(sorted(new_regions[c] for c in cols)))
                    for items, cols in shuffled
                ]
    if progress is not None:
        progress(iterations, iterations)
    return best, found
