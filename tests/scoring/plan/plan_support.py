"""Shared by the planner tests (importable as ``plan_support``): small worlds, checks, real data.

The hypothesis strategies draw small support sets of two shapes (uniform, and families rolled out to
region subsets with holes); :func:`assert_valid` checks everything a plan promises; and
:func:`catalog_support` reads the real Azure catalog's support set from ``tests/fixtures``.
"""

from __future__ import annotations

import csv
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from hypothesis_support import examples
from spotlake.scoring.plan import Pair, Plan

REGIONS = [f"region{i:02d}" for i in range(14)]
SIZES = [f"Standard_S{i}_v5" for i in range(24)]

SETTINGS = settings(max_examples=examples(60), deadline=None, suppress_health_check=[HealthCheck.too_slow])

#: The real catalog's support set, derived as tests/fixtures/README.md says.
CATALOG_SUPPORT = Path(__file__).resolve().parents[2] / "fixtures" / "azure_spot_support.csv"
#: The catalog it was derived from, when a copy sits next to the repository (not in a plain clone).
CATALOG = Path(__file__).resolve().parents[4] / "shared" / "data" / "azure_vms_catalog.csv"


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


def catalog_support() -> frozenset[Pair]:
    """The pairs of :data:`CATALOG_SUPPORT`: one row per size, ``1`` under each region it is priced in."""
    with CATALOG_SUPPORT.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    regions = rows[0][1:]
    return frozenset(
        (region, row[0])
        for row in rows[1:]
        for region, flag in zip(regions, row[1:], strict=True)
        if flag == "1"
    )
