"""Planning: coverage within limits, forbidden cells, determinism, plan quality, bad input, real data."""

from __future__ import annotations

import hashlib
import math
import random
import subprocess
import sys
import textwrap

import pytest
from hypothesis import given
from hypothesis import strategies as st
from plan_support import (
    CATALOG,
    REGIONS,
    SETTINGS,
    SIZES,
    any_pairs,
    assert_valid,
    catalog_support,
    limits,
)

from hypothesis_support import hash_seeds
from spotlake.collect.catalog import load_pairs
from spotlake.errors import PlanError
from spotlake.scoring.plan import Pair, lower_bound, plan_calls, shard_plan

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


# --- determinism across processes --------------------------------------------------------------

_SCRIPT = textwrap.dedent(
    """
    import hashlib, json, random
    from spotlake.scoring.plan import plan_calls
    rng = random.Random(7)
    pairs = set()
    for f in range(30):
        regions = rng.sample(range(40), rng.randint(3, 30))
        for k in range(rng.randint(1, 9)):
            pairs |= {(f"r{r}", f"s{f}_{k}") for r in regions if rng.random() > 0.05}
    pairs |= {(f"r{rng.randrange(40)}", f"u{rng.randrange(60)}") for _ in range(300)}
    for search in (0, 4):
        plan = plan_calls(pairs, search=search)
        calls = [[list(c.regions), list(c.sizes)] for c in plan.calls]
        digest = hashlib.sha256(json.dumps(calls).encode()).hexdigest()
        print(digest, len(plan.calls), plan.report.strategy)
    """
)


def test_identical_across_pythonhashseed_values() -> None:
    outputs = set()
    for seed in hash_seeds():
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


# --- quality and bad input ---------------------------------------------------------------------


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


# --- real data ---------------------------------------------------------------------------------


def test_real_catalog_meets_the_lower_bound() -> None:
    pairs = catalog_support()
    # The whole catalog's support set (tests/fixtures/README.md), not an excerpt.
    assert (len(pairs), len({r for r, _ in pairs}), len({s for _, s in pairs})) == (5658, 9, 795)
    plan = plan_calls(pairs)
    assert_valid(plan, pairs)
    assert plan.report.ratio <= 1.02


#: sha256 of ``repr(sorted(load_pairs(catalog)))`` for the catalog the fixture came from
#: (skypilot-org/skypilot-catalog, catalogs/v6/azure/vms.csv, commit 098741e7).
CATALOG_PAIRS_SHA256 = "952ce98d4916c0f435b86978d7e9ba130590dd25f22791094d0946835e94e3d1"


def test_catalog_fixture_is_the_catalog_support_set() -> None:
    """The fixture the test above plans is what load_pairs reads from the catalog it came from:
    compared with the catalog itself where it is present, and with its recorded digest always."""
    pairs = catalog_support()
    assert hashlib.sha256(repr(sorted(pairs)).encode()).hexdigest() == CATALOG_PAIRS_SHA256
    if CATALOG.is_file():
        assert pairs == load_pairs(CATALOG)
