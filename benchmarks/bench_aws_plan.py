"""AWS SPS planner benchmark: queries per sweep, new configurations per day, time to plan.

Catalog: the real EC2 catalog (``../shared/data/aws_vms_catalog.csv``, or ``$SPOTLAKE_AWS_CATALOG``;
one row per (type, zone ID), deduplicated on (type, zone): 923 types, 22 regions, 70 zones), and a
generated catalog of the same shape where the file is absent (:func:`generated_catalog`).

1. Queries per full sweep (one target capacity; a full rotation sends every query once per each of
   the 11 capacities of :data:`spotlake.model.DESIRED_COUNTS`) for:
   (a) ours, :func:`spotlake.collect.aws.plan.plan_queries`;
   (b) the exact optimum, a bin-packing MILP per type (scipy/HiGHS), solved once per distinct
   multiset of zone counts (the optimum depends on nothing else);
   (c) the original SpotLake: one type per query, regions bin-packed by an integer program, so the
   same count as the optimum; it differs in stability only (part 2);
   (d) several types per query, as AWS advises (3 or more types): types of one family (``m5`` of
   ``m5.large``) offered in exactly the same zones share queries, in groups of at most 3 types, or
   whole groups (the API takes up to 1000 instance types and 10 regions per query; both limits
   assumed, nothing else). Such a query scores a fleet of its types, not each type: it is shown for
   what it would save, not used.
2. New configurations per day over a simulated week: each day a few types gain a region (with
   1 to all of its zones) or lose one, and each planner plans the new catalog. A configuration is
   new when yesterday's sweep did not send it (AWS lets a configuration used in the last 24 hours
   be repeated freely); per capacity, and for the rotation of 11 capacities (each query once per
   capacity a day). Ours plans with yesterday's plan as ``previous``. The original re-solves every
   day and takes whatever optimal packing its solver returns: modelled as a HiGHS feasibility MILP
   (the type's optimal number of queries) on the day's input in a shuffled order. Shown too: a
   deterministic re-solve (ours without ``previous``), which moves only the types that changed but
   repacks them whole.
3. Time to plan the whole catalog, best of 3, without and with ``previous``.

Run: ``python -m benchmarks --only aws_plan`` (``--quick``: two simulated days; on the generated
catalog, a small one).
"""

from __future__ import annotations

import os
import random
import statistics
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd

from spotlake.collect.aws.plan import MAX_ZONES, AwsSpsPlan, offerings_from_frame, plan_queries
from spotlake.model import DESIRED_COUNTS

CATALOG: Final = Path(
    os.environ.get(
        "SPOTLAKE_AWS_CATALOG",
        Path(__file__).resolve().parents[2] / "shared" / "data" / "aws_vms_catalog.csv",
    )
)
CAPACITIES: Final = len(DESIRED_COUNTS)
TARGET_SECONDS: Final = 1.0
CHANGES_PER_DAY: Final = 5
GROUP_OF: Final = 3  # AWS's advice: at least three instance types per query
MAX_TYPES_PER_QUERY: Final = 1000

Offerings = dict[str, dict[str, int]]

# The shape of the real catalog: 22 regions, mostly 3 zones, one of 6, two of 4, one of 2.
_GENERATED_ZONES: Final = (3,) * 18 + (2, 4, 4, 6)
_GENERATED_SIZES: Final = (
    "large",
    "xlarge",
    "2xlarge",
    "4xlarge",
    "8xlarge",
    "12xlarge",
    "16xlarge",
    "metal",
)


# --- catalogs ------------------------------------------------------------------------------------


def load_catalog(path: Path) -> pd.DataFrame:
    """The SkyPilot EC2 catalog as an offerings frame (size, region, zone), one row per (type, zone)."""
    raw = pd.read_csv(path, usecols=["InstanceType", "Region", "AvailabilityZone"], dtype=str)
    frame = raw.rename(columns={"InstanceType": "size", "Region": "region", "AvailabilityZone": "zone"})
    return frame.drop_duplicates(["size", "zone"]).sort_values(["size", "zone"]).reset_index(drop=True)


def generated_catalog(seed: int = 0, *, families: int = 150) -> pd.DataFrame:
    """A catalog shaped like the real one: families rolled out to region subsets, a few holes.

    Each family (``g007``) gets 1 to 8 sizes (``g007.2xlarge``) and a random subset of the 22
    regions; each size misses a region of its family now and then (5 %) and is offered in fewer
    than all of a region's zones in 25 % of its regions.
    """
    rng = random.Random(seed)
    regions = [(f"gen-region-{i:02d}", zones) for i, zones in enumerate(_GENERATED_ZONES)]
    rows: list[tuple[str, str, str]] = []
    for f in range(families):
        rolled_out = sorted(rng.sample(regions, rng.randint(1, len(regions))))
        for size in _GENERATED_SIZES[: rng.randint(1, len(_GENERATED_SIZES))]:
            itype = f"g{f:03d}.{size}"
            for region, n_zones in rolled_out:
                if rng.random() < 0.05:
                    continue
                zones = list(range(1, n_zones + 1))
                if n_zones > 1 and rng.random() < 0.25:
                    zones = sorted(rng.sample(zones, rng.randint(1, n_zones - 1)))
                rows += [(itype, region, f"{region}-az{z}") for z in zones]
    return pd.DataFrame(rows, columns=["size", "region", "zone"])


# --- the exact optimum and the original's solver (scipy/HiGHS) ---------------------------------


def _first_fit_decreasing(sizes: Sequence[int], capacity: int) -> int:
    free: list[int] = []
    for size in sorted(sizes, reverse=True):
        for k, room in enumerate(free):
            if size <= room:
                free[k] -= size
                break
        else:
            free.append(capacity - size)
    return len(free)


def min_bins_milp(sizes: Sequence[int], capacity: int = MAX_ZONES) -> int:
    """The minimum number of bins of ``capacity`` holding items of ``sizes`` (each <= capacity).

    MILP: bins j < m (m from first-fit decreasing) with y_j (used) and x_ij (item i in bin j);
    sum_j x_ij = 1; sum_i s_i x_ij <= capacity y_j; y_j >= y_{j+1}. Minimise sum_j y_j.
    """
    from scipy.optimize import Bounds, LinearConstraint, milp
    from scipy.sparse import coo_matrix

    if not sizes:
        return 0
    n, m = len(sizes), _first_fit_decreasing(sizes, capacity)
    rows: list[int] = []
    cols: list[int] = []
    vals: list[float] = []
    lo: list[float] = []
    hi: list[float] = []
    for i in range(n):
        for j in range(m):
            rows.append(len(lo))
            cols.append(m + i * m + j)
            vals.append(1)
        lo.append(1)
        hi.append(1)
    for j in range(m):
        for i in range(n):
            rows.append(len(lo))
            cols.append(m + i * m + j)
            vals.append(sizes[i])
        rows.append(len(lo))
        cols.append(j)
        vals.append(-capacity)
        lo.append(-np.inf)
        hi.append(0)
    for j in range(m - 1):
        rows += [len(lo), len(lo)]
        cols += [j, j + 1]
        vals += [1, -1]
        lo.append(0)
        hi.append(np.inf)
    width = m + n * m
    cost = np.zeros(width)
    cost[:m] = 1
    res = milp(
        cost,
        constraints=LinearConstraint(
            coo_matrix((vals, (rows, cols)), shape=(len(lo), width)).tocsr(), lo, hi
        ),
        integrality=np.ones(width),
        bounds=Bounds(0, 1),
        options={"disp": False, "time_limit": 60},
    )
    if res.status != 0 or res.fun is None:
        raise RuntimeError(
            f"the bin-packing MILP did not prove an optimum for {sorted(sizes)}: {res.message}"
        )
    return round(res.fun)


def milp_packing(
    items: Sequence[tuple[str, int]], bins: int, *, seed: int, capacity: int = MAX_ZONES
) -> list[tuple[str, ...]]:
    """Whatever packing of ``items`` (region, zones) into ``bins`` bins HiGHS returns for the items
    shuffled by ``seed``: a feasibility MILP, sum_j x_ij = 1 and sum_i s_i x_ij <= capacity."""
    from scipy.optimize import Bounds, LinearConstraint, milp
    from scipy.sparse import coo_matrix

    order = list(items)
    random.Random(seed).shuffle(order)
    if bins == 1:
        return [tuple(sorted(r for r, _ in order))]
    n = len(order)
    rows: list[int] = []
    cols: list[int] = []
    vals: list[float] = []
    for i in range(n):
        for j in range(bins):
            rows.append(i)
            cols.append(i * bins + j)
            vals.append(1)
    for j in range(bins):
        for i, (_, size) in enumerate(order):
            rows.append(n + j)
            cols.append(i * bins + j)
            vals.append(size)
    lo = [1.0] * n + [0.0] * bins
    hi = [1.0] * n + [float(capacity)] * bins
    width = n * bins
    res = milp(
        np.zeros(width),
        constraints=LinearConstraint(
            coo_matrix((vals, (rows, cols)), shape=(n + bins, width)).tocsr(), lo, hi
        ),
        integrality=np.ones(width),
        bounds=Bounds(0, 1),
        options={"disp": False, "time_limit": 60},
    )
    if res.status != 0 or res.x is None:
        raise RuntimeError(f"no packing of {len(order)} regions into {bins} bins: {res.message}")
    chosen = np.asarray(res.x).reshape(n, bins).argmax(axis=1)
    groups = [tuple(sorted(order[i][0] for i in range(n) if chosen[i] == j)) for j in range(bins)]
    return [g for g in groups if g]


def original_keys(
    offerings: Mapping[str, Mapping[str, int]], bins: Mapping[str, int], *, seed: int
) -> set[str]:
    """The configuration keys of the original's sweep: per type, the solver's packing of the day."""
    keys: set[str] = set()
    for k, itype in enumerate(sorted(offerings)):
        items = sorted(offerings[itype].items())
        for group in milp_packing(items, bins[itype], seed=seed * 100_003 + k):
            keys.add(f"{itype}|{','.join(group)}")
    return keys


def _optimum_per_type(offerings: Mapping[str, Mapping[str, int]]) -> tuple[dict[str, int], int, float]:
    """Per type, the MILP optimum (zone counts above a query's capacity: a query each); also how
    many MILPs ran (one per distinct multiset of sizes) and their time."""
    started = time.perf_counter()
    solved: dict[tuple[int, ...], int] = {}
    out: dict[str, int] = {}
    for itype in sorted(offerings):
        sizes = tuple(sorted(z for z in offerings[itype].values() if z <= MAX_ZONES))
        if sizes not in solved:
            solved[sizes] = min_bins_milp(sizes)
        out[itype] = solved[sizes] + sum(z > MAX_ZONES for z in offerings[itype].values())
    return out, len(solved), time.perf_counter() - started


# --- several types per query -------------------------------------------------------------------


def multi_type_queries(frame: pd.DataFrame, plan: AwsSpsPlan, group_of: int | None) -> tuple[int, int]:
    """Queries of a sweep where the types of one family offered in exactly the same zones share
    queries, at most ``group_of`` types per query (``None``: the API's limit); also the groups."""
    zones_of: dict[str, list[str]] = {}
    for size, zone in zip(frame["size"].tolist(), frame["zone"].tolist(), strict=True):
        zones_of.setdefault(str(size), []).append(str(zone))
    groups: dict[tuple[str, tuple[str, ...]], list[str]] = {}
    for itype in sorted(zones_of):
        groups.setdefault((itype.split(".")[0], tuple(sorted(set(zones_of[itype])))), []).append(itype)
    per_type = {itype: len(queries) for itype, queries in plan.per_type().items()}
    cap = group_of or MAX_TYPES_PER_QUERY
    total = sum(-(-len(types) // cap) * per_type[types[0]] for types in groups.values())
    return total, len(groups)


# --- a week of catalog changes -----------------------------------------------------------------


def change_catalog(
    offerings: Offerings, rng: random.Random, region_zones: Mapping[str, int], n_types: int
) -> tuple[Offerings, list[str]]:
    """A day's small catalog change: ``n_types`` types each gain a region (1 to all of its zones) or
    lose one of theirs (a type in one region always gains)."""
    new = {itype: dict(regions) for itype, regions in offerings.items()}
    notes: list[str] = []
    for itype in rng.sample(sorted(new), n_types):
        regions = new[itype]
        absent = sorted(set(region_zones) - set(regions))
        if absent and (len(regions) < 2 or rng.random() < 0.5):
            region = rng.choice(absent)
            regions[region] = rng.randint(1, region_zones[region])
            notes.append(f"+{itype}@{region}")
        else:
            region = rng.choice(sorted(regions))
            del regions[region]
            notes.append(f"-{itype}@{region}")
    return dict(sorted(new.items())), notes


def simulate_week(offerings: Offerings, *, days: int, seed: int = 0) -> list[dict[str, Any]]:
    """New configurations per day for ours, a deterministic re-solve and the re-solving original."""
    rng = random.Random(seed)
    region_zones: dict[str, int] = {}
    for regions in offerings.values():
        for region, zones in regions.items():
            region_zones[region] = max(region_zones.get(region, 0), zones)
    ours = fresh = plan_queries(offerings)
    original = original_keys(offerings, _bins(ours), seed=0)
    rows: list[dict[str, Any]] = []
    for day in range(1, days + 1):
        offerings, notes = change_catalog(offerings, rng, region_zones, CHANGES_PER_DAY)
        started = time.perf_counter()
        ours_today = plan_queries(offerings, previous=ours)
        seconds = time.perf_counter() - started
        fresh_today = plan_queries(offerings)
        original_today = original_keys(offerings, _bins(fresh_today), seed=day)
        assert len(ours_today) == len(fresh_today)
        rows.append(
            {
                "day": day,
                "changes": notes,
                "queries": len(ours_today),
                "ours": ours_today.changed_since(ours),
                "resolve": fresh_today.changed_since(fresh),
                "original": len(original_today - original),
                "ours_seconds": round(seconds, 3),
            }
        )
        print(f"   day {day}: {rows[-1]}", flush=True)
        ours, fresh, original = ours_today, fresh_today, original_today
    return rows


def _bins(plan: AwsSpsPlan) -> dict[str, int]:
    return {itype: len(queries) for itype, queries in plan.per_type().items()}


# --- report ------------------------------------------------------------------------------------


def _best_of(n: int, fn: Any) -> float:
    times = []
    for _ in range(n):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def _fmt_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


def run(quick: bool, *, catalog: Path | None = CATALOG) -> dict[str, Any]:
    """``catalog``: the EC2 catalog CSV (default: the shared one); ``None`` or a missing file: a
    generated catalog (150 families; 10 in quick mode)."""
    if catalog is not None and catalog.is_file():
        frame, source = load_catalog(catalog), f"real catalog ({catalog.name})"
    else:
        families = 10 if quick else 150
        frame, source = generated_catalog(0, families=families), f"generated catalog ({families} families)"
    days = 2 if quick else 7
    offerings = offerings_from_frame(frame)
    plan = plan_queries(offerings)
    shape = {
        "types": len(offerings),
        "regions": int(frame["region"].nunique()),
        "zones": int(frame["zone"].nunique()),
        "type_zones": plan.zones,
    }
    print(f"   {source}: {shape}", flush=True)

    optimum, milps, milp_seconds = _optimum_per_type(offerings)
    ours = _bins(plan)
    off_optimum = sorted(t for t in offerings if ours.get(t, 0) != optimum[t])
    few, _ = multi_type_queries(frame, plan, GROUP_OF)
    whole, whole_groups = multi_type_queries(frame, plan, None)
    sweep = {
        "lower_bound": plan.lower_bound,
        "optimum": sum(optimum.values()),
        "ours": len(plan),
        "original": sum(optimum.values()),
        f"multi_{GROUP_OF}": few,
        "multi_group": whole,
        "groups": whole_groups,
        "truncated": len(plan.truncated),
        "milps": milps,
        "milp_seconds": round(milp_seconds, 2),
    }
    print(f"   sweep: {sweep}", flush=True)

    week = simulate_week(offerings, days=days)
    previous = plan_queries(offerings)
    timing = {
        "cold_s": round(_best_of(3, lambda: plan_queries(offerings)), 3),
        "with_previous_s": round(_best_of(3, lambda: plan_queries(offerings, previous=previous)), 3),
        "from_frame_s": round(_best_of(3, lambda: offerings_from_frame(frame)), 3),
    }
    print(f"   timing: {timing}", flush=True)

    mean = {k: statistics.mean(r[k] for r in week) for k in ("ours", "resolve", "original")}
    targets = {
        f"ours == the exact optimum (scipy milp) on every type ({len(offerings)} types)": not off_optimum,
        f"ours' new configurations per day < the re-solving original's on every simulated day "
        f"(mean {mean['ours']:.1f} vs {mean['original']:.1f})": all(r["ours"] < r["original"] for r in week),
        f"plan the whole catalog in under {TARGET_SECONDS:g} s ({timing['cold_s']} s)": timing["cold_s"]
        < TARGET_SECONDS,
    }

    def sweep_row(name: str, n: int, note: str) -> list[Any]:
        return [name, f"{n:,}", f"{n * CAPACITIES:,}", note]

    sweep_table = _fmt_table(
        ["planner", "queries per sweep", f"per rotation ({CAPACITIES} capacities)", "note"],
        [
            sweep_row("lower bound", plan.lower_bound, "sum over types of ceil(zones / 10)"),
            sweep_row("(b) exact optimum", sweep["optimum"], f"MILP per type ({milps} distinct multisets)"),
            sweep_row("(a) ours", len(plan), "exact packing, one type per query"),
            sweep_row("(c) original", sweep["original"], "integer program per type: the optimum's count"),
            sweep_row(
                f"(d) <= {GROUP_OF} types per query",
                few,
                "same family, same zones; scores a fleet, not a type",
            ),
            sweep_row(
                "(d) whole groups per query",
                whole,
                f"{whole_groups} (family, zones) groups, <= {MAX_TYPES_PER_QUERY} types per query",
            ),
        ],
    )
    week_table = _fmt_table(
        ["day", "catalog changes", "queries", "ours", "deterministic re-solve", "original (re-solving)"],
        [
            [r["day"], ", ".join(r["changes"]), f"{r['queries']:,}", r["ours"], r["resolve"], r["original"]]
            for r in week
        ]
        + [
            [
                "mean per day",
                "",
                "",
                f"{mean['ours']:.1f} ({mean['ours'] * CAPACITIES:.0f} per rotation)",
                f"{mean['resolve']:.1f} ({mean['resolve'] * CAPACITIES:.0f})",
                f"{mean['original']:.1f} ({mean['original'] * CAPACITIES:.0f})",
            ]
        ],
    )
    saved = 1 - few / len(plan) if len(plan) else 0.0
    saved_whole = 1 - whole / len(plan) if len(plan) else 0.0
    markdown = "\n\n".join(
        [
            f"Catalog: {source}: {shape['types']} types, {shape['regions']} regions, {shape['zones']} zones, "
            f"{shape['type_zones']:,} (type, zone) scores per sweep; {sweep['truncated']} (type, region) "
            f"with more than {MAX_ZONES} zones.",
            "Targets:\n\n" + "\n".join(f"- [{'x' if ok else ' '}] {d}" for d, ok in targets.items()),
            "### Queries per sweep (one target capacity)",
            sweep_table,
            f"Ours meets the exact optimum on {len(offerings) - len(off_optimum)} of {len(offerings)} types "
            f"(the MILPs took {sweep['milp_seconds']} s). The original's integer program gives the same "
            "count; the difference is stability (below). Several types per query would save "
            f"{saved:.0%} (groups of {GROUP_OF}) to {saved_whole:.0%} (whole groups) of the queries, but a "
            "multi-type query scores a fleet of those types, not each type, so the series would change "
            "meaning: spotlake keeps one type per query.",
            f"### New configurations per day ({days} simulated days, {CHANGES_PER_DAY} types changed a day)",
            "A configuration is new when the previous day's sweep did not send it; numbers are per target "
            f"capacity, x{CAPACITIES} for the whole rotation. The original is modelled re-solving each day "
            "and keeping whatever optimal packing its solver returns (HiGHS on the day's input, shuffled); "
            "the deterministic re-solve is ours without `previous`: the original's best case, a solver that "
            "returns the same packing for the same input (it still repacks a changed type whole).",
            week_table,
            f"### Time to plan\n\nThe whole catalog: {timing['cold_s']} s; with the previous plan: "
            f"{timing['with_previous_s']} s (best of 3); offerings from the frame: "
            f"{timing['from_frame_s']} s.",
        ]
    )
    return {
        "name": "aws_plan",
        "title": "AWS SPS query planner",
        "quick": quick,
        "source": source,
        "shape": shape,
        "sweep": sweep,
        "off_optimum": off_optimum,
        "week": week,
        "timing": timing,
        "targets": targets,
        "markdown": markdown,
    }
