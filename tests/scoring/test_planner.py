"""The SPS call planner: coverage, limits, determinism, bounds, repair, shards, summaries, CSV input."""

from __future__ import annotations

import json
import math
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spotlake.errors import ConfigError, PlanError
from spotlake.model import SPS_SCHEMA
from spotlake.scoring.planner import (
    Pair,
    Plan,
    format_summary,
    load_pairs,
    lower_bound,
    merge_plans,
    merge_shard_frames,
    plan_calls,
    plan_summary,
    repair_plan,
    restrict_plan,
    shard_of,
    shard_plan,
)

REGIONS = [f"region{i:02d}" for i in range(14)]
SIZES = [f"Standard_S{i}_v5" for i in range(24)]

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --- strategies (small worlds of both shapes) --------------------------------------------------


@st.composite
def uniform_pairs(draw: st.DrawFn) -> frozenset[Pair]:
    """Any support set over a small alphabet (possibly empty)."""
    cells = st.tuples(st.sampled_from(REGIONS), st.sampled_from(SIZES))
    return frozenset(draw(st.lists(cells, max_size=150)))


@st.composite
def family_pairs(draw: st.DrawFn) -> frozenset[Pair]:
    """Families of sizes rolled out to region subsets, with a few sizes missing here and there."""
    pairs: set[Pair] = set()
    n_families = draw(st.integers(1, 6))
    size_iter = iter(SIZES)
    for _ in range(n_families):
        regions = draw(st.lists(st.sampled_from(REGIONS), min_size=1, max_size=12, unique=True))
        members = [next(size_iter) for _ in range(draw(st.integers(1, 4)))]
        for size in members:
            for region in regions:
                if not draw(st.booleans()) or draw(st.integers(0, 9)) > 0:
                    pairs.add((region, size))
    return frozenset(pairs)


any_pairs = st.one_of(uniform_pairs(), family_pairs())
limits = st.tuples(st.integers(1, 8), st.integers(1, 5))


def assert_valid(plan: Plan, pairs: frozenset[Pair], max_regions: int = 8, max_sizes: int = 5) -> None:
    covered = {p for c in plan.calls for p in c.pairs()}
    assert pairs <= covered, f"uncovered: {sorted(pairs - covered)[:5]}"
    for call in plan.calls:
        assert 1 <= len(call.regions) <= max_regions
        assert 1 <= len(call.sizes) <= max_sizes
    assert plan.report.calls == len(plan.calls)
    assert plan.report.calls >= plan.report.lower_bound
    assert plan.report.pairs == len(pairs)
    assert plan.report.wasted_cells == sum(c.cells for c in plan.calls) - len(covered & pairs)
    assert list(plan.calls) == sorted(plan.calls, key=lambda c: (c.regions, c.sizes))


# --- properties --------------------------------------------------------------------------------


@SETTINGS
@given(pairs=any_pairs, lim=limits)
def test_every_pair_is_covered_within_limits(pairs: frozenset[Pair], lim: tuple[int, int]) -> None:
    max_regions, max_sizes = lim
    plan = plan_calls(pairs, max_regions=max_regions, max_sizes=max_sizes)
    assert_valid(plan, pairs, max_regions, max_sizes)
    assert plan.report.lower_bound == lower_bound(pairs, max_regions, max_sizes)


@SETTINGS
@given(pairs=any_pairs, seed=st.integers(0, 2**32 - 1))
def test_output_does_not_depend_on_input_order(pairs: frozenset[Pair], seed: int) -> None:
    shuffled = list(pairs)
    random.Random(seed).shuffle(shuffled)
    assert plan_calls(shuffled).calls == plan_calls(sorted(pairs)).calls


@SETTINGS
@given(pairs=any_pairs, data=st.data())
def test_forbidden_cells_are_never_scored(pairs: frozenset[Pair], data: st.DataObject) -> None:
    cells = st.tuples(st.sampled_from(REGIONS), st.sampled_from(SIZES))
    forbidden = frozenset(data.draw(st.lists(cells, max_size=20)))
    plan = plan_calls(pairs, forbidden=forbidden)
    assert_valid(plan, pairs - forbidden)
    assert not plan.covered() & forbidden


@SETTINGS
@given(pairs=any_pairs, shards=st.integers(1, 7))
def test_shards_partition_the_plan(pairs: frozenset[Pair], shards: int) -> None:
    plan = plan_calls(pairs)
    parts = shard_plan(plan, shards)
    assert len(parts) == shards
    assert [c for p in parts for c in p.calls] == list(plan.calls)
    sizes = [len(p.calls) for p in parts]
    assert max(sizes) - min(sizes) <= 1
    seen: set[Pair] = set()
    for part in parts:
        assert not seen & part.support, "a pair belongs to two shards"
        assert part.support <= part.covered()
        seen |= part.support
    assert seen == plan.support
    merged = merge_plans(parts)
    assert merged == plan
    assert [shard_of(plan, i, shards).calls for i in range(shards)] == [p.calls for p in parts]


@SETTINGS
@given(pairs=any_pairs, data=st.data())
def test_repair_drops_invalid_values_and_keeps_the_rest_covered(
    pairs: frozenset[Pair], data: st.DataObject
) -> None:
    plan = plan_calls(pairs)
    regions = sorted({r for r, _ in pairs})
    sizes = sorted({s for _, s in pairs})
    bad_regions = data.draw(st.lists(st.sampled_from(regions), max_size=2)) if regions else []
    bad_sizes = data.draw(st.lists(st.sampled_from(sizes), max_size=3)) if sizes else []
    bad_pairs = data.draw(st.lists(st.sampled_from(sorted(pairs)), max_size=4)) if pairs else []
    repaired = repair_plan(
        plan, invalid_regions=bad_regions, invalid_sizes=bad_sizes, invalid_pairs=bad_pairs
    )
    expected = frozenset(
        (r, s) for r, s in pairs if r not in bad_regions and s not in bad_sizes and (r, s) not in bad_pairs
    )
    assert repaired.support == expected
    assert_valid(repaired, expected)
    scored = repaired.covered()
    assert not scored & set(bad_pairs)
    assert not {r for r, _ in scored} & set(bad_regions)
    assert not {s for _, s in scored} & set(bad_sizes)
    # Removing values never needs more calls than the plan had plus one split per invalid pair.
    assert repaired.report.calls <= plan.report.calls + len(set(bad_pairs))


@SETTINGS
@given(pairs=any_pairs)
def test_json_round_trip(pairs: frozenset[Pair]) -> None:
    plan = plan_calls(pairs, forbidden=sorted(pairs)[:2])
    data = json.loads(json.dumps(plan.to_json()))
    back = Plan.from_json(data)
    assert back == plan
    assert back.report.calls == plan.report.calls
    assert back.forbidden == plan.forbidden


# --- determinism across processes --------------------------------------------------------------

_SCRIPT = textwrap.dedent(
    """
    import hashlib, json, random
    from spotlake.scoring.planner import plan_calls
    rng = random.Random(7)
    pairs = set()
    for f in range(30):
        regions = rng.sample(range(40), rng.randint(3, 30))
        for k in range(rng.randint(1, 9)):
            pairs |= {(f"r{r}", f"s{f}_{k}") for r in regions if rng.random() > 0.05}
    pairs |= {(f"r{rng.randrange(40)}", f"u{rng.randrange(60)}") for _ in range(300)}
    for search in (0, 4):
        plan = plan_calls(pairs, search=search)
        digest = hashlib.sha256(json.dumps([c.to_json() for c in plan.calls]).encode()).hexdigest()
        print(digest, len(plan.calls), plan.report.strategy)
    """
)


def test_identical_across_pythonhashseed_values() -> None:
    outputs = set()
    for seed in ("0", "1", "12345"):
        proc = subprocess.run(
            [sys.executable, "-c", _SCRIPT],
            capture_output=True,
            text=True,
            check=True,
            env={"PYTHONHASHSEED": seed, "PATH": "/usr/bin:/bin"},
            timeout=120,
        )
        outputs.add(proc.stdout.strip())
    assert len(outputs) == 1, outputs


# --- bounds and quality ------------------------------------------------------------------------


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


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
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


def test_identical_region_sets_are_planned_exactly() -> None:
    # Two families with identical region sets inside: the plan meets the lower bound exactly.
    fam_a = [(f"r{i}", f"a{j}") for i in range(16) for j in range(10)]
    fam_b = [(f"r{i}", f"b{j}") for i in range(20, 29) for j in range(5)]
    plan = plan_calls(fam_a + fam_b)
    assert plan.report.calls == plan.report.lower_bound == 4 + 2
    assert plan.report.wasted_cells == 0
    assert plan.report.ratio == 1.0


def test_a_family_with_scattered_holes_is_planned_as_one_group() -> None:
    # 10 sizes of one family over 16 regions, each size missing a different region: the bound is 4
    # (each size needs 2 calls, 5 per call), met by covering the family's union in 2 x 2 blocks.
    pairs = [(f"r{i:02d}", f"s{j}") for i in range(16) for j in range(10) if i != j]
    plan = plan_calls(pairs)
    assert_valid(plan, frozenset(pairs))
    assert plan.report.calls == plan.report.lower_bound == 4


def test_beats_the_naive_plan_on_a_family_world() -> None:
    from spotlake.testing.world import World

    pairs = World.generate(3, n_regions=24, n_sizes=160, layout="family").support_pairs()
    plan = plan_calls(pairs)
    assert_valid(plan, pairs)
    by_region: dict[str, set[str]] = {}
    for r, s in pairs:
        by_region.setdefault(r, set()).add(s)
    regions = sorted(by_region)
    naive = sum(
        math.ceil(len(set().union(*(by_region[r] for r in regions[k : k + 8]))) / 5)
        for k in range(0, len(regions), 8)
    )
    assert plan.report.calls < naive
    assert plan.report.ratio < 1.3


@pytest.mark.parametrize("seed", [0, 2])
def test_order_search_reaches_the_proven_optimum(seed: int) -> None:
    """On these worlds the plain plan is one call above the lower bound; the search meets it."""
    from spotlake.testing.world import World

    pairs = World.generate(seed, n_regions=20, n_sizes=120, layout="family").support_pairs()
    plain = plan_calls(pairs)
    searched = plan_calls(pairs, search=8)
    assert_valid(searched, pairs)
    assert plain.report.calls == plain.report.lower_bound + 1
    assert searched.report.calls == searched.report.lower_bound  # optimal
    assert searched.report.strategy.endswith("/8)") and "+order-search(" in searched.report.strategy
    assert plan_calls(pairs, search=8) == searched  # deterministic


@SETTINGS
@given(pairs=any_pairs, lim=limits, data=st.data())
def test_order_search_keeps_every_guarantee(
    pairs: frozenset[Pair], lim: tuple[int, int], data: st.DataObject
) -> None:
    """Under the renumbered orders the search still covers every pair within the limits, never scores
    a forbidden cell, and calls ``progress`` only when there is something to search for."""
    cells = st.tuples(st.sampled_from(REGIONS), st.sampled_from(SIZES))
    forbidden = frozenset(data.draw(st.lists(cells, max_size=10)))
    plain = plan_calls(pairs, max_regions=lim[0], max_sizes=lim[1], forbidden=forbidden)
    seen: list[tuple[int, int | None]] = []
    searched = plan_calls(
        pairs,
        max_regions=lim[0],
        max_sizes=lim[1],
        forbidden=forbidden,
        search=3,
        progress=lambda d, t: seen.append((d, t)),
    )
    assert_valid(searched, pairs - forbidden, *lim)
    assert not searched.covered() & forbidden
    assert searched.report.calls <= plain.report.calls
    if plain.report.calls > plain.report.lower_bound:
        assert seen and seen[-1] == (3, 3)
    else:
        assert not seen  # nothing to search for: the plain plan is optimal


def test_empty_support_gives_an_empty_plan() -> None:
    plan = plan_calls([])
    assert plan.calls == ()
    assert plan.report.calls == plan.report.lower_bound == 0
    assert plan.report.ratio == 1.0
    assert shard_plan(plan, 3)[2].calls == ()


def test_bad_input_is_a_plan_error() -> None:
    with pytest.raises(PlanError, match="limits"):
        plan_calls([("r", "s")], max_regions=0)
    with pytest.raises(PlanError, match="limits"):
        plan_calls([("r", "s")], max_sizes=6)
    with pytest.raises(PlanError, match="search"):
        plan_calls([("r", "s")], search=-1)
    with pytest.raises(PlanError, match="search"):
        plan_calls([("r", "s")], search=2.5)  # type: ignore[arg-type]
    with pytest.raises(PlanError, match="region, size"):
        plan_calls([("r", "")])
    with pytest.raises(PlanError, match="region, size"):
        plan_calls([("r", "s", "x")])  # type: ignore[list-item]
    plan = plan_calls([("r", "s")])
    with pytest.raises(PlanError):
        shard_plan(plan, 0)
    with pytest.raises(PlanError):
        shard_of(plan, 3, 3)
    with pytest.raises(PlanError):
        merge_plans([])
    with pytest.raises(PlanError, match="different call limits"):
        merge_plans([plan, plan_calls([("r", "s")], max_regions=4)])


def test_malformed_stored_plan_is_a_config_error() -> None:
    data = plan_calls([("r", "s")]).to_json()
    with pytest.raises(ConfigError, match="format"):
        Plan.from_json({**data, "format": 99})
    with pytest.raises(ConfigError, match="malformed"):
        Plan.from_json({**data, "calls": [{"regions": "r"}]})
    with pytest.raises(ConfigError, match="malformed"):
        Plan.from_json({k: v for k, v in data.items() if k != "report"})


def test_restrict_plan_covers_only_the_subset() -> None:
    pairs = frozenset((f"r{i}", f"s{j}") for i in range(12) for j in range(12) if (i + j) % 3)
    plan = plan_calls(pairs)
    sub = restrict_plan(plan, sizes=["s1", "s2"], regions=[f"r{i}" for i in range(6)])
    expected = frozenset((r, s) for r, s in pairs if s in {"s1", "s2"} and int(r[1:]) < 6)
    assert sub.support == expected
    assert_valid(sub, expected)
    assert {s for c in sub.calls for s in c.sizes} <= {"s1", "s2"}


# --- summary and CSV ---------------------------------------------------------------------------


def test_plan_summary_counts_subscriptions() -> None:
    pairs = [(f"r{i}", f"s{j}") for i in range(9) for j in range(50)]
    plan = plan_calls(pairs)
    assert plan.report.calls == 20  # 50 sizes -> 10 chunks of 5, 9 regions -> 2 blocks each
    summary = plan_summary(plan)
    assert summary["calls_per_hour"] == 120  # every 10 minutes
    assert summary["locations"] == 9
    assert summary["subscriptions"] == math.ceil(120 / (10 * 9))
    assert plan_summary(plan, quota_per_hour=10, interval_minutes=10, locations=1)["subscriptions"] == 12
    text = format_summary(summary)
    assert "20 (<= 8 regions x 5 sizes each)" in text
    assert "subscriptions" in text and "lower bound" in text
    with pytest.raises(ConfigError):
        plan_summary(plan, quota_per_hour=0)
    with pytest.raises(ConfigError):
        plan_summary(plan, locations=0)


def test_load_pairs_reads_both_layouts(tmp_path: Path) -> None:
    simple = tmp_path / "pairs.csv"
    simple.write_text("Region,Size,extra\neastus,Standard_D2s_v5,1\nwestus, Standard_D4s_v5 ,2\n")
    assert load_pairs(simple) == {("eastus", "Standard_D2s_v5"), ("westus", "Standard_D4s_v5")}
    catalog = tmp_path / "vms.csv"
    catalog.write_text(
        "InstanceType,vCPUs,Price,SpotPrice,Region\n"
        "Standard_D2s_v5,2,0.1,0.02,eastus\n"
        "Standard_B1s,1,0.01,,eastus\n"
        "Standard_D2s_v5,2,0.1,0.03,westus\n"
    )
    assert load_pairs(catalog) == {("eastus", "Standard_D2s_v5"), ("westus", "Standard_D2s_v5")}


def test_load_pairs_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.csv"):
        load_pairs(tmp_path / "nope.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(ConfigError, match="region,size"):
        load_pairs(bad)
    empty_cell = tmp_path / "empty.csv"
    empty_cell.write_text("region,size\neastus,\n")
    with pytest.raises(ConfigError, match="row 1"):
        load_pairs(empty_cell)


def test_real_catalog_meets_the_lower_bound() -> None:
    catalog = Path(__file__).resolve().parents[3] / "shared" / "data" / "azure_vms_catalog.csv"
    if not catalog.is_file():
        pytest.skip(f"{catalog} not present")
    pairs = load_pairs(catalog)
    plan = plan_calls(pairs)
    assert_valid(plan, pairs)
    assert plan.report.ratio <= 1.02


def _sps_rows(rows: list[tuple[str, str, str | None, int, str]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "size": [r[1] for r in rows],
            "region": [r[0] for r in rows],
            "zone": [r[2] for r in rows],
            "desired_count": [r[3] for r in rows],
            "score": [r[4] for r in rows],
            "score_value": [{"High": 3, "Low": 1}.get(r[4]) for r in rows],
            "quota_available": [True] * len(rows),
        }
    )


def test_shard_frames_merge_into_one_run() -> None:
    a = _sps_rows([("eastus", "D2", "1", 5, "High"), ("eastus", "D2", None, 5, "High")])
    b = _sps_rows([("westus", "D2", "1", 5, "Low"), ("eastus", "D2", "1", 5, "Low")])  # overlap
    merged = merge_shard_frames([a, b])
    assert list(merged.columns) == list(SPS_SCHEMA)
    assert len(merged) == 3
    first = merged[(merged["region"] == "eastus") & (merged["zone"] == "1")]
    assert first["score"].tolist() == ["High"]  # the first shard's row wins
    assert merge_shard_frames([]).empty
    with pytest.raises(PlanError, match="one desired count"):
        merge_shard_frames([a, _sps_rows([("westus", "D2", "1", 10, "Low")])])
