"""The emulator world: determinism, realistic layout, the SPS model and the catalog world."""

from __future__ import annotations

import collections
import csv
import json
import re
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hypothesis_support import examples
from spotlake.errors import ConfigError
from spotlake.model import DESIRED_COUNTS, EVICTION_BUCKETS, KNOWN_SCORES
from spotlake.testing.regions import PUBLIC_REGIONS
from spotlake.testing.world import VmSize, World, family_of

# The full SkyPilot catalog beside the repository, when there is one: tests check it in addition to the
# committed fixtures, never instead of them (see tests/fixtures/README.md).
CATALOG = Path(__file__).resolve().parents[3] / "shared" / "data" / "azure_vms_catalog.csv"
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
EXCERPT = FIXTURES / "catalog_world_excerpt.csv"
HOLE_STATS = FIXTURES / "family_holes_calibrated_to_the_real_catalog.json"
T0 = datetime(2026, 3, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def default_world() -> World:
    return World.generate(0)


def test_default_world_shape(default_world: World) -> None:
    w = default_world
    assert len(w.regions) == 60 and len(w.sizes) == 800
    assert len({s.name for s in w.sizes}) == 800
    assert w.regions[0].name == "eastus" and w.regions[0].display_name == "East US"
    assert {r.name: r.display_name for r in w.regions}["westeurope"] == "West Europe"
    assert w.region("eastus").zones == ("1", "2", "3") and w.region("westus").zones == ()
    for s in w.sizes:
        assert re.fullmatch(r"Standard_[A-Z]+\d+[a-z]*(_v\d+)?", s.name), s.name
        assert s.family.startswith("standard") and s.family.endswith("Family")
        assert s.vcpus >= 1 and s.memory_gib > 0
    assert w.size("Standard_D2s_v3").family == "standardDSv3Family"
    assert w.size("Standard_D2s_v3").vcpus == 2 and w.size("Standard_D2s_v3").memory_gib == 8
    pairs = w.support_pairs()
    assert 15_000 < len(pairs) < 40_000  # realistic: not every size everywhere
    assert pairs < w.offered_pairs()  # some sizes are sold on demand only
    for sub in w.subscriptions:
        uuid.UUID(sub)


def test_generation_is_deterministic_and_seeded() -> None:
    a, b = World.generate(3, n_regions=20, n_sizes=200), World.generate(3, n_regions=20, n_sizes=200)
    assert a.regions == b.regions and a.sizes == b.sizes and dict(a.offers) == dict(b.offers)
    assert a.subscriptions == b.subscriptions
    c = World.generate(4, n_regions=20, n_sizes=200)
    assert c.support_pairs() != a.support_pairs()


def test_family_layout_models_rollouts(default_world: World) -> None:
    w = default_world
    pairs = w.support_pairs()
    per_region = collections.Counter(r for r, _ in pairs)
    big = sum(per_region[r.name] for r in w.regions[:10]) / 10
    small = sum(per_region[r.name] for r in w.regions[-10:]) / 10
    assert big > 1.4 * small  # big regions get more families
    # A size is supported in (almost) every region where another size of its family is.
    by_family: dict[str, list[str]] = collections.defaultdict(list)
    for s in w.sizes:
        by_family[s.family].append(s.name)
    agree = total = 0
    for sizes in by_family.values():
        for region in w.regions:
            present = [(region.name, s) in pairs for s in sizes]
            if any(present):
                agree += sum(present)
                total += len(present)
    assert agree / total > 0.9
    # Newer generations reach fewer regions than older ones.
    reach = collections.Counter(s for _, s in pairs)
    v3 = [reach[s.name] for s in w.sizes if s.family == "standardDSv3Family"]
    v6 = [reach[s.name] for s in w.sizes if s.family == "standardDSv6Family"]
    assert sum(v3) / len(v3) > sum(v6) / len(v6)


def _hole_counts(
    pairs: Iterable[tuple[str, str]], family: Mapping[str, str], regions: set[str]
) -> dict[str, int]:
    """Family cells (size x region where its family is sold), those the size is missing from, families."""
    by_family: dict[str, dict[str, set[str]]] = collections.defaultdict(lambda: collections.defaultdict(set))
    for region, size in pairs:
        if region in regions:
            by_family[family[size]][size].add(region)
    cells = missing = holed = 0
    for sizes in by_family.values():
        union = set().union(*sizes.values())
        cells += len(union) * len(sizes)
        gaps = sum(len(union - have) for have in sizes.values())
        missing += gaps
        holed += gaps > 0
    return {"cells": cells, "missing": missing, "families": len(by_family), "families_with_holes": holed}


def _hole_share(pairs: Iterable[tuple[str, str]], family: Mapping[str, str], regions: set[str]) -> float:
    """Share of family cells (size x region where its family is sold) the size is missing from."""
    counts = _hole_counts(pairs, family, regions)
    return counts["missing"] / counts["cells"]


def catalog_hole_counts(catalog: Path) -> dict[str, int]:
    """The family-hole counts of the catalog world of ``catalog`` (how the committed fixture was made)."""
    real = World.from_catalog(catalog)
    return _hole_counts(
        real.support_pairs(), {s.name: s.family for s in real.sizes}, {r.name for r in real.regions}
    )


def test_family_holes_are_calibrated_to_the_real_catalog(default_world: World) -> None:
    # The real catalog's hole counts, computed from the whole file (a statistic of every family, which
    # no excerpt has): committed, and recomputed from the file itself whenever it is beside the repository.
    real = json.loads(HOLE_STATS.read_text())
    if CATALOG.is_file():
        counts = catalog_hole_counts(CATALOG)
        assert counts == {k: real[k] for k in counts}
    assert (real["families"], real["families_with_holes"]) == (149, 5)
    real_share = real["missing"] / real["cells"]
    assert 0.0005 < real_share < 0.003  # 0.12 %: 5 of 149 families have a hole
    family = {s.name: s.family for s in default_world.sizes}
    top9 = {r.name for r in default_world.regions[:9]}
    # Same order of magnitude on the generated world's 9 biggest regions (the catalog's are big US
    # regions); more in the small regions, which lack the biggest hosts more often.
    ours = _hole_share(default_world.support_pairs(), family, top9)
    assert real_share / 4 < ours < real_share * 4
    everywhere = _hole_share(default_world.support_pairs(), family, {r.name for r in default_world.regions})
    assert ours < everywhere < 0.02
    # The stress layout keeps the independent per-size holes: tens of times the catalog's rate.
    stress = World.generate(0, layout="family-holes")
    assert _hole_share(stress.support_pairs(), family, top9) > 20 * real_share


def test_family_holes_layout_is_the_earlier_family_world() -> None:
    """The generator's "family" layout before calibration, unchanged: earlier planner numbers hold."""
    stress = World.generate(0, layout="family-holes")
    assert (len(stress.support_pairs()), len(stress.offered_pairs())) == (25_998, 29_257)


def test_family_holes_are_shared_by_sibling_families(default_world: World) -> None:
    # Where all families of a series and generation are sold,
    # their largest sizes miss the same regions (as E96bs_v5 and E96bds_v5 in the catalog).
    offered = default_world.offered_pairs()
    siblings: dict[tuple[str, str], dict[str, list[VmSize]]] = collections.defaultdict(
        lambda: collections.defaultdict(list)
    )
    for size in default_world.sizes:
        m = re.fullmatch(r"Standard_([A-Z]+)\d+[a-z]*(?:_v(\d+))?", size.name)
        assert m is not None
        siblings[(m[1], m[2])][size.family].append(size)
    shared = 0
    for families in siblings.values():
        if len(families) < 2:
            continue
        common = [
            r.name
            for r in default_world.regions
            if all((r.name, sizes[0].name) in offered for sizes in families.values())
        ]
        missing = {
            frozenset(r for r in common if (r, max(sizes, key=lambda s: s.vcpus).name) not in offered)
            for sizes in families.values()
        }
        assert len(missing) == 1
        shared += len(next(iter(missing)))
    assert shared > 0


def test_uniform_layout_is_independent_noise() -> None:
    w = World.generate(0, n_regions=30, n_sizes=300, layout="uniform", density=0.4)
    share = len(w.offered_pairs()) / (30 * 300)
    assert 0.35 < share < 0.45


@pytest.mark.parametrize(
    "kwargs",
    [{"n_regions": 0}, {"n_regions": 61}, {"n_sizes": 0}, {"layout": "grid"}, {"density": 0.0}],
)
def test_generate_rejects_bad_arguments(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        World.generate(0, **kwargs)  # type: ignore[arg-type]


def test_more_sizes_than_the_real_plan_still_unique() -> None:
    w = World.generate(0, n_regions=3, n_sizes=1500)
    assert len({s.name for s in w.sizes}) == 1500


def test_sps_score_is_pure_and_uses_ten_minute_buckets(default_world: World) -> None:
    w = default_world
    region, size = sorted(w.support_pairs())[0]
    zone = w.region(region).zones[0] if w.region(region).zones else None
    s = w.sps_score(region, size, zone, 1, T0)
    assert s in KNOWN_SCORES
    assert w.sps_score(region, size, zone, 1, T0 + timedelta(minutes=9, seconds=59)) == s
    assert World.generate(0).sps_score(region, size, zone, 1, T0) == s


def test_sps_scores_change_slowly_and_drop_with_count(default_world: World) -> None:
    w = default_world
    fractions = []
    lows = {}
    for count in (1, 50):
        a = w.sps_scores_frame(T0, count)
        b = w.sps_scores_frame(T0 + timedelta(minutes=10), count)
        fractions.append(float((a["score"] != b["score"]).mean()))
        lows[count] = float((a["score"] == "Low").mean())
    assert all(0.005 < f < 0.05 for f in fractions), fractions
    assert lows[50] > lows[1] + 0.2
    # Over a day most cells have moved at least once (the level drifts).
    day = w.sps_scores_frame(T0 + timedelta(days=1), 1)
    assert float((w.sps_scores_frame(T0, 1)["score"] != day["score"]).mean()) > 0.2


def test_every_known_score_occurs(default_world: World) -> None:
    w = default_world
    frame = w.sps_scores_frame(T0, 1)
    seen = set(frame["score"])
    assert {"High", "Medium", "Low", "DataNotFoundOrStale"} <= seen
    unsupported = sorted(w.offered_pairs() - w.support_pairs())[:50] + [
        (r.name, "Standard_ND96as_v4") for r in w.regions[-20:]
    ]
    scores = {w.sps_score(r, s, None, 1, T0) for r, s in unsupported if w.has_size(s)}
    assert "RestrictedSkuNotAvailable" in scores


@settings(max_examples=examples(40), deadline=None)
@given(
    minutes=st.integers(min_value=0, max_value=60 * 24 * 30),
    count=st.sampled_from(DESIRED_COUNTS),
    zonal=st.booleans(),
)
def test_vectorised_scores_equal_scalar_scores(minutes: int, count: int, zonal: bool) -> None:
    w = World.generate(1, n_regions=8, n_sizes=60)
    at = T0 + timedelta(minutes=minutes)
    pairs = [*sorted(w.offered_pairs())[:40], ("eastus", w.sizes[-1].name)]
    frame = w.sps_scores_frame(at, count, zonal=zonal, pairs=pairs)
    for row in frame.to_dict("records"):
        region, size, zone = str(row["region"]), str(row["size"]), row["zone"]
        zone_name = None if pd.isna(zone) else str(zone)
        assert w.sps_score(region, size, zone_name, count, at) == row["score"]
        assert w.quota_available(region, size, count, at) == row["quota_available"]


def test_sps_score_rejects_unknown_inputs(default_world: World) -> None:
    w = default_world
    with pytest.raises(ConfigError, match="no region"):
        w.sps_score("atlantis", "Standard_D2s_v3", None, 1, T0)
    with pytest.raises(ConfigError, match="no VM size"):
        w.sps_score("eastus", "Standard_Nope", None, 1, T0)
    with pytest.raises(ConfigError, match="no zone"):
        w.sps_score("westus", "Standard_D2s_v3", "1", 1, T0)
    with pytest.raises(ConfigError):
        w.sps_score("eastus", "Standard_D2s_v3", None, 0, T0)


def test_quota_and_eviction(default_world: World) -> None:
    w = default_world
    assert w.quota_available("eastus", "Standard_D2s_v3", 1, T0)
    assert not w.quota_available("eastus", "Standard_D64s_v3", 50, T0)
    buckets = collections.Counter(b for _, _, b in w.eviction_rows())
    assert set(buckets) == set(EVICTION_BUCKETS)
    assert buckets["0-5"] > buckets["20+"]
    assert len(w.eviction_rows()) < len(w.support_pairs())  # some pairs have no row
    assert w.eviction_bucket("eastus", "Standard_Nope") is None


def test_published_example_world() -> None:
    w = World.published_example()
    got = [w.sps_score(r, "Standard_D2_v2", z, 1, T0) for r in ("eastus", "eastus2") for z in ("1", "2", "3")]
    assert got == ["High"] * 5 + ["DataNotFoundOrStale"]


def read_catalog(path: Path) -> tuple[set[str], set[str], set[tuple[str, str]], set[tuple[str, str]]]:
    """Regions and sizes with an on-demand price, every size, and the (region, size) pairs with a spot
    price of a SkyPilot catalog CSV, read with nothing but :mod:`csv` (independently of the emulator)."""
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    priced = [r for r in rows if r["Price"]]
    return (
        {r["Region"] for r in priced},
        {r["InstanceType"] for r in rows},
        {(r["Region"], r["InstanceType"]) for r in priced},
        {(r["Region"], r["InstanceType"]) for r in priced if r["SpotPrice"]},
    )


@pytest.mark.parametrize(
    ("path", "n_sizes", "n_support"),
    # The committed excerpt always (a plain clone has no ../shared), the full catalog when it is there.
    [
        pytest.param(EXCERPT, 45, 317, id="excerpt"),
        *([pytest.param(CATALOG, 842, 5658, id="full")] if CATALOG.is_file() else []),
    ],
)
def test_catalog_world(path: Path, n_sizes: int, n_support: int) -> None:
    w = World.from_catalog(path)
    regions, sizes, offered, support = read_catalog(path)
    assert len(w.regions) == 9 and len(w.sizes) == n_sizes
    assert len(w.support_pairs()) == n_support
    assert {r.name for r in w.regions} == regions and {s.name for s in w.sizes} == sizes
    assert w.offered_pairs() == offered and w.support_pairs() == support
    assert all(r.name in {n for n, _, _ in PUBLIC_REGIONS} for r in w.regions)
    assert w.region("eastus").display_name == "East US"
    od, spot = w.price("eastus", "Basic_A1")
    assert (od, spot) == (0.023, 0.0161)
    assert w.size("Standard_D2s_v3").family == "standardDSv3Family"


def test_catalog_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        World.from_catalog(tmp_path / "missing.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("InstanceType,vCPUs,MemoryGiB,Price,SpotPrice,Region\nStandard_X1,1,1,0.1,,mars\n")
    with pytest.raises(ConfigError, match="unknown Azure region"):
        World.from_catalog(bad)


@pytest.mark.parametrize(
    ("size", "family"),
    [
        ("Standard_D2s_v3", "standardDSv3Family"),
        ("Standard_D2_v2", "standardDv2Family"),
        ("Standard_DC2as_v5", "standardDCASv5Family"),
        ("Standard_NC24ads_A100_v4", "standardNCADSA100v4Family"),
        ("Standard_E64-16ds_v4", "standardEDSv4Family"),
        ("Basic_A1", "basicAFamily"),
    ],
)
def test_family_of(size: str, family: str) -> None:
    assert family_of(size) == family
