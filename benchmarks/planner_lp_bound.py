"""A provably valid LP lower bound for the SPS call planner: column generation plus Farley's bound.

Evidence for docs/planner.md ("The problem and the lower bound"), not part of the library or of
``make bench`` (it takes minutes per world). Problem: cover a support set ``P`` of (region, size)
pairs with rectangles ``R x S`` (``|R| <= max_regions``, ``|S| <= max_sizes``), fewest rectangles.

Bound: the LP relaxation of the cover over *all* rectangles, strengthened with the valid cuts "size
``s`` is in at least ``q_s = ceil(m_s / max_regions)`` calls" and "region ``r`` is in at least
``rho_r = ceil(k_r / max_sizes)`` calls", solved by column generation on a restricted master.

Why it is valid, for any duals: take non-negative weights ``y_p`` (pairs), ``z_s`` (sizes), ``w_r``
(regions) and any ``M >= max over rectangles c of wt(c) = y(P ∩ c) + z(S_c) + w(R_c)``. For a plan of
``N`` calls, ``N * M >= sum_i wt(c_i)``; regrouped by row, pair ``p`` counts ``y_p`` once per call
covering it (at least once), size ``s`` counts ``z_s`` per call holding it (at least ``q_s``, as a call
covers at most ``max_regions`` of its regions), region ``r`` likewise (at least ``rho_r``). So
``N >= (sum y + sum q z + sum rho w) / M`` (Farley's bound; weak LP duality). The weights are the
restricted master's duals clipped at 0; ``M`` comes from :func:`max_weight_upper_bound`, a branch and
bound whose open nodes are bounded too, so ``M`` stays an upper bound when its search is cut short.

Run ``python -m benchmarks.planner_lp_bound`` for the table on small and mid-size ``family-holes``
worlds (``--worlds 10x25 15x60 30x150 --seeds 0 1``), ``--validate 45`` to check the bound against
exact optima (a set-cover MILP over every rectangle) on small random worlds.
"""

from __future__ import annotations

import itertools
import math
import os
import sys
import time
from collections.abc import Iterable, Sequence
from typing import Any, cast

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp  # type: ignore[import-untyped]  # no stubs installed
from scipy.optimize import linprog  # type: ignore[import-untyped]

Pair = tuple[str, str]
FArr = npt.NDArray[np.float64]
IArr = npt.NDArray[np.int64]
BArr = npt.NDArray[np.bool_]
_Col = tuple[tuple[int, ...], tuple[int, ...]]  # (sizes, regions), both sorted

_EPS = 1e-9
#: The greedy start costs ~0.2 s per call of the cover on 60 x 800 worlds: only for small ones.
_GREEDY_MAX_PAIRS = 5_000
_VERBOSE = bool(os.environ.get("SPOTLAKE_LP_BOUND_VERBOSE"))


def _ceil_div(a: IArr, b: int) -> IArr:
    return -(-a // b)


class _Instance:
    """Sizes are rows, regions columns of the boolean incidence ``inc``."""

    def __init__(self, pairs: Iterable[Pair], max_regions: int, max_sizes: int) -> None:
        unique = sorted(set(pairs))
        regions = sorted({r for r, _ in unique})
        sizes = sorted({s for _, s in unique})
        r_of = {r: i for i, r in enumerate(regions)}
        s_of = {s: i for i, s in enumerate(sizes)}
        self.n_sizes, self.n_regions = len(sizes), len(regions)
        self.max_regions, self.max_sizes = max_regions, max_sizes
        self.inc: BArr = np.zeros((self.n_sizes, self.n_regions), dtype=np.bool_)
        for r, s in unique:
            self.inc[s_of[s], r_of[r]] = True
        self.cells: IArr = np.argwhere(self.inc).astype(np.int64)  # pair index -> (size, region)
        self.n_pairs = len(self.cells)
        self.pair_id: IArr = np.full((self.n_sizes, self.n_regions), -1, dtype=np.int64)
        self.pair_id[self.cells[:, 0], self.cells[:, 1]] = np.arange(self.n_pairs)
        self.size_need: IArr = _ceil_div(self.inc.sum(axis=1).astype(np.int64), max_regions)
        self.region_need: IArr = _ceil_div(self.inc.sum(axis=0).astype(np.int64), max_sizes)
        # Right-hand sides of the master: pairs (1 each), size cuts, region cuts.
        self.rhs: FArr = np.concatenate(
            [
                np.ones(self.n_pairs),
                self.size_need.astype(np.float64),
                self.region_need.astype(np.float64),
            ]
        )

    def counting_bound(self) -> int:
        if self.n_pairs == 0:
            return 0
        return max(
            -(-self.n_pairs // (self.max_regions * self.max_sizes)),
            -(-int(self.size_need.sum()) // self.max_sizes),
            -(-int(self.region_need.sum()) // self.max_regions),
        )

    def rows_of(self, col: _Col) -> IArr:
        """Master rows a rectangle has a 1 in: its covered pairs, its sizes' and regions' cuts."""
        s = np.asarray(col[0], dtype=np.int64)
        r = np.asarray(col[1], dtype=np.int64)
        sub = self.pair_id[np.ix_(s, r)].ravel()
        return np.concatenate([sub[sub >= 0], self.n_pairs + s, self.n_pairs + self.n_sizes + r])

    def split_duals(self, d: FArr) -> tuple[FArr, FArr, FArr]:
        """Dual vector -> (Y per (size, region) cell, z per size, w per region), all >= 0."""
        d = np.maximum(d, 0.0)  # tiny negative round-off would otherwise break the weight bound
        y = np.zeros((self.n_sizes, self.n_regions))
        y[self.cells[:, 0], self.cells[:, 1]] = d[: self.n_pairs]
        z = d[self.n_pairs : self.n_pairs + self.n_sizes]
        w = d[self.n_pairs + self.n_sizes :]
        return y, z, w


# --- pricing ---------------------------------------------------------------------------------


def _top_mask(scores: FArr, k: int) -> FArr:
    """Row-wise 0/1 mask of the (at most) ``k`` largest strictly positive entries."""
    n = scores.shape[1]
    out = np.zeros_like(scores)
    if k >= n:
        out[scores > 0] = 1.0
        return out
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    np.put_along_axis(out, top, 1.0, axis=1)
    out[scores <= 0] = 0.0
    return out


def _heuristic_columns(
    inst: _Instance, y: FArr, z: FArr, w: FArr, seeds: IArr, rounds: int = 4
) -> tuple[FArr, list[_Col]]:
    """Alternating "best regions for these sizes / best sizes for these regions" from each seed size."""
    kr, ks = inst.max_regions, inst.max_sizes
    rmask = _top_mask(y[seeds] + w, kr)
    smask = np.zeros((len(seeds), inst.n_sizes))
    smask[np.arange(len(seeds)), seeds] = 1.0
    for _ in range(rounds):
        smask = _top_mask(rmask @ y.T + z, ks)
        rmask = _top_mask(smask @ y + w, kr)
    weight = ((smask @ y) * rmask).sum(axis=1) + smask @ z + rmask @ w
    cols = [
        (
            tuple(int(i) for i in np.flatnonzero(smask[k])),
            tuple(int(i) for i in np.flatnonzero(rmask[k])),
        )
        for k in range(len(seeds))
    ]
    return weight, cols


def _column_weight(inst: _Instance, y: FArr, z: FArr, w: FArr, col: _Col) -> float:
    s, r = list(col[0]), list(col[1])
    return float(y[np.ix_(s, r)].sum() + z[s].sum() + w[r].sum())


def max_weight_upper_bound(
    y: FArr,
    z: FArr,
    w: FArr,
    max_regions: int,
    max_sizes: int,
    incumbent: float,
    node_limit: int,
    deadline: float = math.inf,
) -> tuple[float, float, int, bool]:
    """An upper bound on ``max_{|R|<=kr, |S|<=ks} sum_{s in S, r in R} y[s,r] + z(S) + w(R)``.

        ``y, z, w >= 0``. Branch and bound over region sets (sizes are then the top ``ks`` by
        ``z_s + y_s(R)``). A node fixes a set ``I`` of regions and may add up to ``kr - |I|`` more from
        the candidates ``C`` after its last region in a fixed order; its bound lets every size pick its
        own best regions from ``C``: ``w(I) + top(w_C) + top_ks_s(z_s + y_s(I) + top(y_s,C))``, which is
        at least the value of every rectangle in the node's subtree. The answer is the maximum of the
        best rectangle found and the bounds of the nodes left open when ``node_limit`` nodes were expanded
    or ``deadline`` (a ``time.perf_counter`` value) passed, so it is
        always a valid upper bound. Returns (bound, best found, nodes, finished).
    """
    n_sizes, n_regions = y.shape
    kr, ks = max_regions, max_sizes
    # Only sizes that can matter: a size with z + its best kr cells below the ks-th best such
    # potential can still be in an optimal rectangle, so no filtering (kept exact), but order regions
    # by total weight so good rectangles are found early.
    order = np.argsort(-(y.sum(axis=0) + w), kind="stable")
    yo = y[:, order]
    wo = w[order]
    best = incumbent
    open_max = 0.0
    nodes = 0

    def topk_rows(m: FArr, k: int) -> FArr:
        if k <= 0 or m.shape[1] == 0:
            return np.zeros(m.shape[0])
        if k >= m.shape[1]:
            return np.asarray(m.sum(axis=1))
        part = np.partition(m, m.shape[1] - k, axis=1)[:, m.shape[1] - k :]
        return np.asarray(part.sum(axis=1))

    def top_sum(v: FArr, k: int) -> float:
        if k <= 0 or v.size == 0:
            return 0.0
        if k >= v.size:
            return float(v.sum())
        return float(np.partition(v, v.size - k)[v.size - k :].sum())

    def node_bound(inner: FArr, w_in: float, start: int, free: int) -> float:
        cand = yo[:, start:]
        per_size = z + inner + topk_rows(cand, free)
        return w_in + top_sum(wo[start:], free) + top_sum(per_size, ks)

    # Depth-first stack of (bound, chosen positions, inner sums per size, w of chosen, next start).
    root_inner = np.zeros(n_sizes)
    stack: list[tuple[float, tuple[int, ...], FArr, float, int]] = [
        (node_bound(root_inner, 0.0, 0, kr), (), root_inner, 0.0, 0)
    ]
    finished = True
    while stack:
        bnd, chosen, inner, w_in, start = stack.pop()
        if bnd <= best + _EPS:
            continue
        if nodes >= node_limit or time.perf_counter() > deadline:
            finished = False
            open_max = max(open_max, bnd)
            continue
        nodes += 1
        # The node's own rectangle (regions ``chosen``, best ks sizes).
        value = w_in + top_sum(z + inner, ks)
        best = max(best, value)
        free = kr - len(chosen)
        if free == 0 or start >= n_regions:
            continue
        children: list[tuple[float, tuple[int, ...], FArr, float, int]] = []
        for t in range(start, n_regions):
            c_inner = inner + yo[:, t]
            c_w = w_in + float(wo[t])
            cb = node_bound(c_inner, c_w, t + 1, free - 1)
            if cb > best + _EPS:
                children.append((cb, (*chosen, t), c_inner, c_w, t + 1))
        children.sort(key=lambda c: c[0])  # pop the most promising first
        stack.extend(children)
    return max(best, open_max), best, nodes, finished


# --- column generation -----------------------------------------------------------------------


def _initial_columns(inst: _Instance) -> list[_Col]:
    """A feasible start: every size's regions in chunks of ``max_regions`` (one size per column)."""
    cols: list[_Col] = []
    for s in range(inst.n_sizes):
        regs = np.flatnonzero(inst.inc[s])
        for a in range(0, len(regs), inst.max_regions):
            cols.append(((s,), tuple(int(r) for r in regs[a : a + inst.max_regions])))
    return cols


def _greedy_columns(inst: _Instance, seeds_per_step: int = 24) -> list[_Col]:
    """A greedy cover (most uncovered pairs per rectangle): good starting columns for the master."""
    uncovered = inst.inc.astype(np.float64)
    zeros_s, zeros_r = np.zeros(inst.n_sizes), np.zeros(inst.n_regions)
    cols: list[_Col] = []
    while uncovered.any():
        left = uncovered.sum(axis=1)
        seeds = np.argsort(-left, kind="stable")[: min(seeds_per_step, int((left > 0).sum()))]
        weight, cand = _heuristic_columns(inst, uncovered, zeros_s, zeros_r, seeds.astype(np.int64))
        col = cand[int(np.argmax(weight))]
        if weight.max() <= 0:  # cannot happen (a seed has an uncovered pair), but never loop forever
            break
        cols.append(col)
        uncovered[np.ix_(list(col[0]), list(col[1]))] = 0.0
    return cols


def _solve_master(inst: _Instance, cols: Sequence[_Col]) -> tuple[float, FArr, FArr]:
    rows = [inst.rows_of(c) for c in cols]
    r = np.concatenate(rows)
    c = np.concatenate([np.full(len(v), j, dtype=np.int64) for j, v in enumerate(rows)])
    n_rows = inst.n_pairs + inst.n_sizes + inst.n_regions
    a = sp.csr_matrix((-np.ones(len(r)), (r, c)), shape=(n_rows, len(cols)))
    res = linprog(np.ones(len(cols)), A_ub=a, b_ub=-inst.rhs, bounds=(0, None), method="highs-ipm")
    if res.status != 0:
        raise RuntimeError(f"master LP failed: {res.message}")
    return (
        float(res.fun),
        np.asarray(-res.ineqlin.marginals, dtype=np.float64),
        np.asarray(res.x),
    )


def strong_lower_bound(
    pairs: Iterable[Pair],
    max_regions: int = 8,
    max_sizes: int = 5,
    time_limit: float = 120.0,
    node_limit: int = 20_000,
    max_new_columns: int = 400,
    pricing_time: float = 30.0,
) -> tuple[int, dict[str, Any]]:
    """A lower bound on the calls of every plan covering ``pairs`` (proof in the module docstring).

    Returns ``(bound, diagnostics)``. The bound is the largest of the counting bound and
    ``ceil(dual_objective / max_weight_ub - 1e-9)`` over the column-generation iterations where the
    exact pricing was run. Diagnostics: ``counting`` (the planner's bound), ``lp_upper`` (value of
    the last restricted master: the LP optimum is at most this, so no bound of this LP exceeds it),
    ``farley`` (best valid fractional bound), ``lp_exact`` (True when pricing proved the master
    optimal), ``iterations``, ``columns``, ``seconds``.
    """
    t0 = time.perf_counter()
    inst = _Instance(pairs, max_regions, max_sizes)
    counting = inst.counting_bound()
    diag: dict[str, Any] = {"counting": counting, "pairs": inst.n_pairs}
    if inst.n_pairs == 0:
        diag.update(
            lp_upper=0.0,
            farley=0.0,
            lp_exact=True,
            iterations=0,
            columns=0,
            seconds=0.0,
        )
        return 0, diag
    cols = _initial_columns(inst)
    if inst.n_pairs <= _GREEDY_MAX_PAIRS:
        cols += _greedy_columns(inst)
    seen = set(cols)
    cols = list(dict.fromkeys(cols))
    best_valid = 0.0
    lp_value = math.inf
    exact = False
    it = 0
    all_seeds = np.arange(inst.n_sizes, dtype=np.int64)
    history: list[tuple[int, float, float]] = []
    while True:
        it += 1
        lp_value, duals, _ = _solve_master(inst, cols)
        dual_obj = float(np.maximum(duals, 0.0) @ inst.rhs)
        y, z, w = inst.split_duals(duals)
        weight, cand = _heuristic_columns(inst, y, z, w, all_seeds)
        new: list[_Col] = []
        for k in np.argsort(-weight, kind="stable"):
            if weight[k] <= 1.0 + 1e-7 or len(new) >= max_new_columns:
                break
            if cand[k] not in seen:
                seen.add(cand[k])
                new.append(cand[k])
        out_of_time = time.perf_counter() - t0 > time_limit
        if _VERBOSE:
            print(
                f"it {it} master {lp_value:.3f} heur_max {weight.max():.4f} "
                f"heur_farley {dual_obj / max(1.0, float(weight.max())):.3f} cols {len(cols)} new {len(new)} "
                f"t {time.perf_counter() - t0:.1f}",
                file=sys.stderr,
                flush=True,
            )
        if not new or out_of_time:
            # Exact (bounded) pricing: a valid Farley bound, and optimality of the master if <= 1.
            ub, found, nodes, finished = max_weight_upper_bound(
                y,
                z,
                w,
                max_regions,
                max_sizes,
                float(weight.max(initial=0.0)),
                node_limit,
                deadline=time.perf_counter() + pricing_time,
            )
            best_valid = max(best_valid, dual_obj / max(ub, 1.0))
            history.append((it, dual_obj, ub))
            diag.update(pricing_nodes=nodes, pricing_finished=finished, max_weight_ub=ub)
            if ub <= 1.0 + 1e-7:
                exact = True
                break
            if out_of_time:
                break
            # Heuristic pricing missed a column: add the best one found by the search.
            if found > 1.0 + 1e-7:
                col = _best_column_for(inst, y, z, w, found)
                if col is not None and col not in seen:
                    seen.add(col)
                    new.append(col)
            if not new:
                break
        cols.extend(new)
    diag.update(
        lp_upper=lp_value,
        farley=best_valid,
        lp_exact=exact,
        iterations=it,
        columns=len(cols),
        seconds=time.perf_counter() - t0,
        farley_history=history,
    )
    bound = max(counting, math.ceil(best_valid - 1e-6)) if best_valid > 0 else counting
    return bound, diag


def _best_column_for(inst: _Instance, y: FArr, z: FArr, w: FArr, target: float) -> _Col | None:
    """Recover a rectangle of weight ~``target`` (re-run the search, small instances only)."""
    if inst.n_regions > 20:
        return None
    best: _Col | None = None
    best_v = -1.0
    for k in range(1, min(inst.max_regions, inst.n_regions) + 1):
        for regs in itertools.combinations(range(inst.n_regions), k):
            r = list(regs)
            per = z + y[:, r].sum(axis=1)
            top = np.argsort(-per, kind="stable")[: inst.max_sizes]
            top = top[per[top] > 0]
            v = float(per[top].sum() + w[r].sum())
            if v > best_v:
                best_v, best = v, (tuple(sorted(int(i) for i in top)), tuple(r))
    return best if best_v > 1.0 + 1e-7 and best is not None and best[0] else None


# --- validation and the table ----------------------------------------------------------------


def exact_optimum(pairs: Iterable[Pair], max_regions: int, max_sizes: int, time_limit: float = 60.0) -> int:
    """The true optimum by a set-cover MILP over every maximal rectangle (small worlds only)."""
    from scipy.optimize import LinearConstraint, milp

    inst = _Instance(pairs, max_regions, max_sizes)
    if inst.n_pairs == 0:
        return 0
    ks = min(max_sizes, inst.n_sizes)
    kr = min(max_regions, inst.n_regions)
    cols: set[frozenset[int]] = set()
    for regs in itertools.combinations(range(inst.n_regions), kr):
        for szs in itertools.combinations(range(inst.n_sizes), ks):
            cov = inst.pair_id[np.ix_(list(szs), list(regs))].ravel()
            cov = cov[cov >= 0]
            if cov.size:
                cols.add(frozenset(int(c) for c in cov))
    # Keep only coverage sets not strictly contained in another (dominated columns are useless).
    by_size = sorted(cols, key=len, reverse=True)
    kept: list[frozenset[int]] = []
    for c in by_size:
        if not any(c < k for k in kept):
            kept.append(c)
    r = np.concatenate([np.fromiter(c, dtype=np.int64) for c in kept])
    j = np.concatenate([np.full(len(c), i, dtype=np.int64) for i, c in enumerate(kept)])
    a = sp.csr_matrix((np.ones(len(r)), (r, j)), shape=(inst.n_pairs, len(kept)))
    res = milp(
        np.ones(len(kept)),
        constraints=LinearConstraint(a, lb=np.ones(inst.n_pairs), ub=np.inf),
        integrality=np.ones(len(kept)),
        bounds=(0, 1),
        options={"time_limit": time_limit},
    )
    if res.status != 0:
        raise RuntimeError(f"exact MILP did not finish: {res.message}")
    return round(float(res.fun))


def _random_pairs(rng: np.random.Generator, n_regions: int, n_sizes: int, density: float) -> list[Pair]:
    mask = rng.random((n_regions, n_sizes)) < density
    return [(f"r{i}", f"s{j}") for i, j in np.argwhere(mask)]


def _validate(n_worlds: int) -> None:
    rng = np.random.default_rng(12345)
    bad = 0
    better = 0
    for k in range(n_worlds):
        if k % 3 == 2:  # the real limits on worlds just above them
            nr, ns, kr, ks = int(rng.integers(9, 12)), int(rng.integers(6, 9)), 8, 5
        else:
            nr, ns = int(rng.integers(5, 11)), int(rng.integers(6, 11))
            kr, ks = int(rng.integers(1, 4)), int(rng.integers(1, 4))
        pairs = _random_pairs(rng, nr, ns, float(rng.uniform(0.3, 0.9)))
        if not pairs:
            continue
        lb, d = strong_lower_bound(pairs, kr, ks, time_limit=20)
        opt = exact_optimum(pairs, kr, ks)
        bad += lb > opt
        better += lb > d["counting"]
        print(
            f"{k:3d} {nr}x{ns} lim {kr}x{ks} pairs {len(pairs):3d} counting {d['counting']:3d} "
            f"lp {d['farley']:.3f} bound {lb:3d} opt {opt:3d} {'VIOLATION' if lb > opt else ''}",
            flush=True,
        )
    print(f"violations {bad}, strictly better than counting {better} of {n_worlds}")


def _table(worlds: Sequence[str], seeds: Sequence[int], layout: str, time_limit: float) -> None:
    from spotlake.scoring.plan import plan_calls
    from spotlake.testing.world import Layout, World

    print("| world | pairs | counting | LP optimum (or master value) | LP exact | new bound | ours | s |")
    print("|---|---|---|---|---|---|---|---|")
    for shape in worlds:
        n_regions, n_sizes = (int(x) for x in shape.lower().split("x"))
        for seed in seeds:
            world = World.generate(seed, n_regions=n_regions, n_sizes=n_sizes, layout=cast(Layout, layout))
            pairs = sorted(world.support_pairs())
            lb, d = strong_lower_bound(pairs, time_limit=time_limit)
            print(
                f"| {layout} {shape} seed {seed} | {d['pairs']} | {d['counting']} | {d['lp_upper']:.3f} | "
                f"{d['lp_exact']} | {lb} | {plan_calls(pairs).report.calls} | {d['seconds']:.1f} |",
                flush=True,
            )


def main(argv: Sequence[str]) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m benchmarks.planner_lp_bound", description=__doc__)
    parser.add_argument("--validate", type=int, metavar="N", help="check the bound on N random worlds")
    parser.add_argument("--worlds", nargs="*", default=["10x25", "15x60"], help="REGIONSxSIZES shapes")
    parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1])
    parser.add_argument("--layout", default="family-holes", choices=("family", "family-holes", "uniform"))
    parser.add_argument("--time", type=float, default=120.0, help="column generation seconds per world")
    args = parser.parse_args(argv)
    if args.validate:
        _validate(args.validate)
    else:
        _table(args.worlds, args.seeds, args.layout, args.time)


if __name__ == "__main__":
    main(sys.argv[1:])
