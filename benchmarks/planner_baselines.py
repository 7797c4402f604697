"""Baseline SPS planners the benchmark compares spotlake's planner against.

Both are implemented from their descriptions, for comparison only (they are not part of spotlake):

* :func:`naive_plan`: regions in chunks of 8 (sorted by name), and for each chunk the union of
  its regions' sizes (sorted) in chunks of 5. What one writes without thinking about the problem.
* :func:`original_greedy_plan`: the original collector's planner, "2x2 k-means, then greedy growth of
  an 8x5 rectangle from an arbitrary seed pair, highest marginal gain first". Interpreted as:

  1. *2x2 k-means*: over the region x size incidence matrix, k-means with k=2 on the regions (each
     region a 0/1 vector over sizes) and k=2 on the sizes (each a 0/1 vector over regions), which
     splits the matrix into 2 x 2 blocks (region cluster x size cluster). Lloyd's algorithm,
     initial centres drawn from the data with the seeded RNG, at most 50 iterations.
  2. In each block, while a supported pair of the block is uncovered: take a uniformly random
     uncovered pair as the seed rectangle {r} x {s}; grow it one region or one size at a time, always
     taking the candidate (a block region if fewer than 8 regions, a block size if fewer than 5
     sizes) that covers the most uncovered pairs, ties broken at random, until it is 8 x 5 or no
     candidate covers anything new; emit the call and mark its pairs covered.

  The original was non-deterministic; here every random choice comes from ``numpy.random.default_rng
  (seed)``, so a seed reproduces a run. Pairs are never covered across blocks (as in the original,
  whose clusters were planned independently).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import numpy.typing as npt

from spotlake.model import SpsCall

Pair = tuple[str, str]


def naive_plan(pairs: Iterable[Pair], max_regions: int = 8, max_sizes: int = 5) -> list[SpsCall]:
    """Regions in chunks of 8, the union of their sizes in chunks of 5."""
    by_region: dict[str, set[str]] = {}
    for r, s in pairs:
        by_region.setdefault(r, set()).add(s)
    regions = sorted(by_region)
    calls: list[SpsCall] = []
    for k in range(0, len(regions), max_regions):
        chunk = regions[k : k + max_regions]
        sizes = sorted(set().union(*(by_region[r] for r in chunk)))
        for j in range(0, len(sizes), max_sizes):
            calls.append(SpsCall(regions=chunk, sizes=sizes[j : j + max_sizes]))
    return calls


def _kmeans2(
    x: npt.NDArray[np.float64], rng: np.random.Generator, iterations: int = 50
) -> npt.NDArray[np.intp]:
    """Labels 0/1 of Lloyd's k-means with k=2 (initial centres: two distinct random rows)."""
    n = x.shape[0]
    if n < 2:
        return np.zeros(n, dtype=np.intp)
    first, second = rng.choice(n, size=2, replace=False)
    centres = x[[first, second]].copy()
    labels = np.zeros(n, dtype=np.intp)
    for _ in range(iterations):
        dist = ((x[:, None, :] - centres[None, :, :]) ** 2).sum(axis=2)
        new = np.argmin(dist, axis=1).astype(np.intp)
        for k in (0, 1):
            members = x[new == k]
            # An empty cluster keeps its centre (the data then has one cluster in effect).
            if len(members):
                centres[k] = members.mean(axis=0)
        if np.array_equal(new, labels):
            break
        labels = new
    return labels


def original_greedy_plan(
    pairs: Iterable[Pair], *, seed: int = 0, max_regions: int = 8, max_sizes: int = 5
) -> list[SpsCall]:
    """The original planner as described (see the module docstring), seeded for reproducibility."""
    support = set(pairs)
    regions = sorted({r for r, _ in support})
    sizes = sorted({s for _, s in support})
    r_index = {r: i for i, r in enumerate(regions)}
    s_index = {s: i for i, s in enumerate(sizes)}
    inc = np.zeros((len(regions), len(sizes)), dtype=np.bool_)
    for r, s in support:
        inc[r_index[r], s_index[s]] = True
    rng = np.random.default_rng(seed)
    region_labels = _kmeans2(inc.astype(np.float64), rng)
    size_labels = _kmeans2(inc.T.astype(np.float64), rng)
    calls: list[SpsCall] = []
    for rk in (0, 1):
        for sk in (0, 1):
            block_r = np.flatnonzero(region_labels == rk)
            block_s = np.flatnonzero(size_labels == sk)
            if block_r.size == 0 or block_s.size == 0:
                continue
            left = inc[np.ix_(block_r, block_s)].copy()
            while left.any():
                cells = np.argwhere(left)
                r0, s0 = cells[rng.integers(len(cells))]
                rows, cols = [int(r0)], [int(s0)]
                while True:
                    options: list[tuple[int, str, int]] = []  # (gain, kind, index)
                    if len(rows) < max_regions:
                        gain_r = left[:, cols].sum(axis=1)
                        gain_r[rows] = 0
                        options += [(int(g), "r", int(i)) for i, g in enumerate(gain_r) if g > 0]
                    if len(cols) < max_sizes:
                        gain_s = left[rows, :].sum(axis=0)
                        gain_s[cols] = 0
                        options += [(int(g), "s", int(i)) for i, g in enumerate(gain_s) if g > 0]
                    if not options:
                        break
                    top = max(g for g, _, _ in options)
                    best = [o for o in options if o[0] == top]
                    _, kind, i = best[rng.integers(len(best))]
                    (rows if kind == "r" else cols).append(i)
                left[np.ix_(rows, cols)] = False
                calls.append(
                    SpsCall(
                        regions=sorted(regions[block_r[i]] for i in rows),
                        sizes=sorted(sizes[block_s[j]] for j in cols),
                    )
                )
    return calls


def covers(calls: Iterable[SpsCall], pairs: Iterable[Pair]) -> bool:
    """Every pair is scored by some call (a sanity check on every baseline's output)."""
    covered = {p for c in calls for p in c.pairs()}
    return set(pairs) <= covered
