"""Offer sources: SkyPilot catalogs (real EC2 and Azure rows), a collected store, explicit lists.

The catalog tests read committed real rows (``tests/fixtures/aws_catalog_excerpt.csv``: every row of
``m5.large``, ``p3.2xlarge`` and ``mac1.metal`` in us-east-1 and us-west-2 of
``../shared/data/aws_vms_catalog_us.csv``, byte for byte, in file order: 30 rows, 10 zones, a GPU
type, rows without a spot price, rows without any price) and, when the shared catalogs sit beside
the repository, the whole files with the README's numbers. The store tests collect two runs from the
bundled Azure emulator (the pipeline tests' small world) and check every offer against the store's
own frames.
"""

from __future__ import annotations

import csv
import math
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import attrs
import pandas as pd
import pytest

from pipeline_support import emulator, in_process_access, run_time
from spotlake.clock import FakeClock
from spotlake.compute.offers import (
    CatalogOffers,
    OfferSet,
    OfferSource,
    StaticOffers,
    StoreOffers,
    ZoneKind,
    zone_kind,
)
from spotlake.compute.values import CapacityType, Cloud, Offer, Pool
from spotlake.errors import ConfigError
from spotlake.model import EVICTION_BUCKETS, Source
from spotlake.pipeline import RunStatus, run_cycle
from spotlake.storage import FrameKind, SnapshotStore, open_store

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
EXCERPT = FIXTURES / "aws_catalog_excerpt.csv"
AZURE_EXCERPT = FIXTURES / "catalog_world_excerpt.csv"
SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"

# Real rows of ../shared/data/aws_vms_catalog.csv (zone IDs, quoted GpuInfo with commas): p4de.24xlarge
# has two rows in use1-az4 (two GpuInfo versions, one without a spot price).
ZONE_ID_ROWS = """\
InstanceType,AcceleratorName,AcceleratorCount,vCPUs,MemoryGiB,GpuInfo,Price,SpotPrice,Region,AvailabilityZone
a1.2xlarge,,,8.0,16.0,,0.2568,0.256800,ap-northeast-1,apne1-az2
a1.2xlarge,,,8.0,16.0,,0.2568,0.256800,ap-northeast-1,apne1-az4
p4de.24xlarge,A100-80GB,8.0,96.0,1152.0,"{'Gpus': [{'Name': 'A100', 'Manufacturer': 'NVIDIA', \
'Count': 8, 'MemoryInfo': {'SizeInMiB': 81920}}], \
'TotalGpuMemoryInMiB': 655360}",40.96575,7.807400,us-east-1,use1-az4
p4de.24xlarge,A100-80GB,8.0,96.0,1152.0,"{'Gpus': [{'Name': 'A100-80GB', 'Manufacturer': 'NVIDIA', \
'Count': 8, 'MemoryInfo': {'SizeInMiB': 81920}}], 'TotalGpuMemoryInMiB': 655360}",40.96575,,us-east-1,use1-az4
"""

HEADER = ZONE_ID_ROWS.splitlines(keepends=True)[0]


def by_pool(offers: OfferSet) -> dict[tuple[str, str | None, str, CapacityType], Offer]:
    return {(o.pool.region, o.pool.zone, o.pool.instance_type, o.capacity_type): o for o in offers.offers}


# --- catalogs ------------------------------------------------------------------------------------


def test_catalog_excerpt_gives_regional_on_demand_and_zonal_spot_offers() -> None:
    got = CatalogOffers(EXCERPT).offers()
    assert got.source == str(EXCERPT) and got.observed_at is None
    # m5.large and p3.2xlarge in 2 regions; spot in 9 + 7 of their 20 zone rows; mac1.metal has no price.
    assert (len(got.on_demand), len(got.spot)) == (4, 16)
    assert got.warnings == (
        "10 row(s) have no on-demand price: no on-demand offer from them (0 of them still give a spot offer)",
    )
    offers = by_pool(got)
    od = offers[("us-east-1", None, "m5.large", CapacityType.ON_DEMAND)]
    assert (od.price, od.vcpus, od.memory_gib, od.gpus, od.family) == (0.096, 2, 8.0, 0, "m5")
    spot = offers[("us-west-2", "us-west-2a", "p3.2xlarge", CapacityType.SPOT)]
    assert (spot.price, spot.vcpus, spot.memory_gib, spot.gpus, spot.family) == (0.9503, 8, 61.0, 1, "p3")
    assert ("us-east-1", "us-east-1e", "m5.large", CapacityType.SPOT) not in offers  # no spot price there
    assert not any(o.pool.instance_type == "mac1.metal" for o in got.offers)
    assert all(
        o.pool.cloud is Cloud.AWS and o.observed_at is None and o.score is None and o.source == str(EXCERPT)
        for o in got.offers
    )
    assert all(zone_kind(o.pool.zone, o.pool.region) is ZoneKind.NAME for o in got.spot if o.pool.zone)
    assert isinstance(CatalogOffers(EXCERPT), OfferSource)


def test_catalog_regions_filter_and_a_date() -> None:
    at = datetime(2026, 3, 1, 12, tzinfo=UTC)
    got = CatalogOffers(EXCERPT, regions="us-west-2", observed_at=at).offers()
    assert {o.pool.region for o in got.offers} == {"us-west-2"}
    assert (len(got.on_demand), len(got.spot)) == (2, 7)
    assert got.observed_at == at and all(o.observed_at == at for o in got.offers)
    nowhere = CatalogOffers(EXCERPT, regions=["eu-west-1"]).offers()
    assert len(nowhere) == 0 and any("none of the catalog's 30 rows" in w for w in nowhere.warnings)


def test_catalog_with_zone_ids_and_repeated_rows(tmp_path: Path) -> None:
    path = tmp_path / "ids.csv"
    path.write_text(ZONE_ID_ROWS)
    got = CatalogOffers(path).offers()
    offers = by_pool(got)
    p4de = offers[("us-east-1", "use1-az4", "p4de.24xlarge", CapacityType.SPOT)]
    assert (p4de.price, p4de.gpus, p4de.vcpus) == (7.8074, 8, 96)
    assert offers[("us-east-1", None, "p4de.24xlarge", CapacityType.ON_DEMAND)].price == 40.96575
    assert (len(got.on_demand), len(got.spot)) == (2, 3)
    assert got.warnings == (
        "1 repeated (type, zone) row(s): each price is taken from the first row that has it",
    )
    assert zone_kind("use1-az4", "us-east-1") is ZoneKind.ID
    assert zone_kind("us-east-1a", "us-east-1") is ZoneKind.NAME


def test_azure_catalog_without_zones_gives_regional_spot_offers() -> None:
    """The Azure excerpt's README numbers: 335 (region, size) pairs with an on-demand price, 317 with spot."""
    got = CatalogOffers(AZURE_EXCERPT, cloud=Cloud.AZURE).offers()
    assert (len(got.on_demand), len(got.spot)) == (335, 317)
    assert all(o.pool.zone is None and o.pool.cloud is Cloud.AZURE and o.family is None for o in got.offers)
    gpu = [o for o in got.offers if o.gpus]
    assert gpu and all(o.pool.instance_type.startswith("Standard_NC") for o in gpu)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "the catalog is empty"),
        (HEADER, "a header and no rows"),
        (
            "InstanceType,Price,Region\nm5.large,0.1,us-east-1\n",
            "1: the catalog lacks columns ['vCPUs', 'MemoryGiB', 'SpotPrice']",
        ),
        (
            HEADER + "m5.large,,,2.0,8.0,,0.096,cheap,us-east-1,us-east-1a\n",
            ":2: SpotPrice 'cheap' is not a number",
        ),
        (
            HEADER
            + "m5.large,,,2.0,8.0,,0.096,0.04,us-east-1,us-east-1a\n"
            + "m5.xlarge,,,2.5,8.0,,0.2,,us-east-1,us-east-1a\n",
            ":3: vCPUs '2.5' is not a whole number",
        ),
        (
            HEADER + "m5.large,,,2.0,8.0,,-1,,us-east-1,us-east-1a\n",
            ":2: Price '-1' is not a finite number >= 0",
        ),
        (
            HEADER + "m5.large,,,2.0,nan,,0.096,,us-east-1,us-east-1a\n",
            ":2: MemoryGiB 'nan' is not a finite number",
        ),
        (HEADER + "m5.large,,,,8.0,,0.096,,us-east-1,us-east-1a\n", ":2: vCPUs '' is not a number"),
        (HEADER + "m5.large,,,2.0,8.0,,0.096\n", ":2: 7 fields, the header has 10"),
        (HEADER + ",,,2.0,8.0,,0.096,,us-east-1,us-east-1a\n", ":2: empty InstanceType or Region"),
    ],
)
def test_catalog_errors_name_the_file_and_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        CatalogOffers(path).offers()
    assert str(path) in str(info.value) and message in str(info.value)


def test_missing_catalog_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot read the offer catalog .*nope\.csv"):
        CatalogOffers(tmp_path / "nope.csv").offers()


def test_catalog_is_read_again_only_when_it_changes(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_text(HEADER + "m5.large,,,2.0,8.0,,0.096,0.04,us-east-1,us-east-1a\n")
    source = CatalogOffers(path)
    first = source.offers()
    assert source.offers() is first
    path.write_text(HEADER + "m5.large,,,2.0,8.0,,0.096,0.05,us-east-1,us-east-1a\n")
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))
    assert source.offers().spot[0].price == 0.05


@pytest.mark.parametrize(
    ("name", "rows", "spot", "on_demand", "warnings"),
    [
        # README: 7784 rows, 6677 with a spot price; 26 mac rows have no price at all.
        ("aws_vms_catalog_us.csv", 7784, 6677, 1950, ["26 row(s) have no on-demand price"]),
        # README: 36,411 rows, 35,933 with a spot price, 76 without an on-demand price (4 of them with a
        # spot price), p4de.24xlarge twice in five zones.
        (
            "aws_vms_catalog.csv",
            36411,
            35933,
            11988,
            [
                "76 row(s) have no on-demand price",
                "(4 of them still give a spot offer)",
                "5 repeated (type, zone)",
            ],
        ),
    ],
)
def test_the_shared_aws_catalogs_or_their_excerpt(
    name: str, rows: int, spot: int, on_demand: int, warnings: list[str]
) -> None:
    path = SHARED / name
    if not path.exists():
        # A plain clone: the committed excerpt (30 rows of the US catalog, byte for byte) stands in,
        # so the same checks run on real rows; the full catalog's counts are checked where it is.
        path, rows, spot, on_demand = FIXTURES / "aws_catalog_excerpt.csv", 30, 16, 4
        warnings = ["10 row(s) have no on-demand price"]
    started = time.process_time()
    got = CatalogOffers(path).offers()
    assert time.process_time() - started < 3.0  # ~0.5 s for 36k rows on a 2-core machine
    assert (len(got.spot), len(got.on_demand)) == (spot, on_demand)
    text = " | ".join(got.warnings)
    assert all(w in text for w in warnings), text
    with path.open(newline="") as fh:
        assert sum(1 for _ in csv.reader(fh)) - 1 == rows
    m5 = by_pool(got)[("us-east-1", None, "m5.large", CapacityType.ON_DEMAND)]
    assert (m5.vcpus, m5.memory_gib, m5.family) == (2, 8.0, "m5")


# --- explicit offers and offer sets ----------------------------------------------------------------


def offer(zone: str | None = "us-east-1a", kind: CapacityType = CapacityType.SPOT, **kw: Any) -> Offer:
    pool = Pool(cloud=Cloud.AWS, region="us-east-1", zone=zone, instance_type="m5.large")
    return Offer(pool=pool, capacity_type=kind, price=kw.pop("price", 0.04), vcpus=2, memory_gib=8.0, **kw)


def test_static_offers_and_offer_sets() -> None:
    t1, t2 = datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 3, 1, 1, tzinfo=UTC)
    items = [
        offer("us-east-1a", observed_at=t1),
        offer("us-east-1b", observed_at=t2),
        offer(None, CapacityType.ON_DEMAND),
    ]
    source = StaticOffers(items, source="fleet")
    assert isinstance(source, OfferSource)
    got = source.offers()
    assert got.offers == tuple(items) and got.source == "fleet" and got.observed_at == t2
    assert (len(got.spot), len(got.on_demand), len(got)) == (2, 1, 3)
    assert got.age(t2 + timedelta(minutes=5)) == timedelta(minutes=5)
    assert StaticOffers([offer(None)]).offers().age(t1) is None  # undated
    with pytest.raises(ConfigError, match=r"two spot offers for pool aws:us-east-1a:m5\.large"):
        StaticOffers([offer(), offer(price=0.05)])
    with pytest.raises(ConfigError, match="Offer values only"):
        OfferSet(offers=[offer(), "m5.large"], source="x")  # type: ignore[list-item]


def test_combine_keeps_sources_and_warnings_apart() -> None:
    a = OfferSet(offers=[offer("us-east-1a")], source="a", warnings=["old"])
    b = OfferSet(offers=[offer("us-east-1b", observed_at=datetime(2026, 3, 1, tzinfo=UTC))], source="b")
    both = OfferSet.combine([a, b])
    assert both.source == "a + b" and both.warnings == ("a: old",) and len(both) == 2
    assert both.observed_at == datetime(2026, 3, 1, tzinfo=UTC)
    with pytest.raises(ConfigError, match="two spot offers"):
        OfferSet.combine([a, a])


# --- a collected store ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> SnapshotStore:
    """Two committed runs (desired counts 1 and 5) of the pipeline tests' small emulator world."""
    emu = emulator()
    store = open_store(str(tmp_path_factory.mktemp("offers") / "data"))
    for i in range(2):
        cast(FakeClock, emu.clock).set(run_time(i))
        report = run_cycle(run_time(i), store=store, azure=in_process_access(emu), clock=emu.clock)
        assert report.status is RunStatus.COMMITTED, report.error
    return store


def expected_offers(store: SnapshotStore, at: datetime) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    """What the store says should be offered, computed with pandas: (spot rows, on-demand rows, dropped)."""
    merged = store.read_frame(kind=FrameKind.MERGED, at=at)
    skus = store.read_frame(kind=FrameKind.RAW, at=at, source=Source.SKUS)
    assert merged is not None and skus is not None
    blocked = set(
        zip(
            skus.loc[skus["restricted"].fillna(False).astype(bool), "region"],
            skus.loc[skus["restricted"].fillna(False).astype(bool), "size"],
            strict=True,
        )
    )
    zones = {
        (r, s, z)
        for r, s, why in zip(skus["region"], skus["size"], skus["restriction"].fillna(""), strict=True)
        if why.startswith("Zone:") and " zones " in why
        for z in why.rsplit(" zones ", 1)[1].split(",")
    }
    ok = [(r, s) not in blocked for r, s in zip(merged["region"], merged["size"], strict=True)]
    kept = merged[ok]
    spot = kept[kept["spot_price"].notna()]
    spot = spot[
        [(r, s, z) not in zones for r, s, z in zip(spot["region"], spot["size"], spot["zone"], strict=True)]
    ]
    on_demand = kept[kept["ondemand_price"].notna()].drop_duplicates(["region", "size"])
    return spot, on_demand, len(merged) - sum(ok)


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """The rows as dicts, ``None`` for every missing value."""
    return [
        {str(k): None if v is None or v is pd.NA or v != v else v for k, v in row.items()}
        for row in frame.astype(object).to_dict("records")
    ]


def test_store_offers_match_the_latest_snapshot(store: SnapshotStore) -> None:
    got = StoreOffers(store, at=run_time(1)).offers()
    assert got.source == f"{store.url} merged snapshot of 2026-03-02T00:10Z (desired count 5)"
    assert got.observed_at == run_time(1) and isinstance(StoreOffers(store), OfferSource)
    spot, on_demand, dropped = expected_offers(store, run_time(1))
    assert (len(got.spot), len(got.on_demand)) == (len(spot), len(on_demand))
    assert dropped > 0 and any(f"{dropped} row(s) and" in w for w in got.warnings), got.warnings
    assert not any("stale" in w for w in got.warnings)

    skus = store.read_frame(kind=FrameKind.RAW, at=run_time(1), source=Source.SKUS)
    assert skus is not None
    shape = {
        s: (int(v), float(m)) for s, v, m in zip(skus["size"], skus["vcpus"], skus["memory_gib"], strict=True)
    }
    offers = by_pool(got)
    for row in records(spot):
        zone = None if row["zone"] is None else f"{row['region']}-{row['zone']}"
        o = offers[(row["region"], zone, row["size"], CapacityType.SPOT)]
        assert (o.price, o.vcpus, o.memory_gib) == (row["spot_price"], *shape[row["size"]])
        assert o.family == row["family"] and o.observed_at == run_time(1) and o.pool.cloud is Cloud.AZURE
        if row["score_value"] is None:
            assert o.score is None
        else:
            assert o.score is not None and (o.score.value, o.score.scale) == (row["score_value"], 3.0)
            assert o.score.observed_at == run_time(1)
            assert math.isclose(o.score.normalized, row["score_value"] / 3)
        bucket = row["eviction_bucket"]
        expected = (None, None) if bucket is None else (bucket, EVICTION_BUCKETS[bucket])
        assert (o.eviction_bucket, o.eviction_score) == expected
    for row in records(on_demand):
        o = offers[(row["region"], None, row["size"], CapacityType.ON_DEMAND)]
        assert (o.price, o.score, o.observed_at) == (row["ondemand_price"], None, run_time(1))
    # Azure zones become region-qualified, so str(pool) names one pool.
    assert len({str(o.pool) for o in got.spot}) == len(got.spot)
    assert {o.pool.zone.split("-")[-1] for o in got.spot if o.pool.zone} == {"1", "2", "3"}
    assert {o.eviction_bucket for o in got.spot} >= {"0-5", "20+"}


def test_store_offers_at_a_time_and_at_a_desired_count(store: SnapshotStore) -> None:
    first = StoreOffers(store, at=run_time(0) + timedelta(minutes=5)).offers()
    assert "2026-03-02T00:00Z (desired count 1)" in first.source and first.observed_at == run_time(0)
    assert StoreOffers(store, at=run_time(1), desired_count=1).offers().source == first.source
    with pytest.raises(ConfigError, match="scored desired count 50"):
        StoreOffers(store, at=run_time(1), desired_count=50).offers()
    with pytest.raises(ConfigError, match="desired_count must be one of"):
        StoreOffers(store, desired_count=7)


def test_a_stale_snapshot_is_flagged_not_dropped(store: SnapshotStore) -> None:
    fresh = StoreOffers(store, at=run_time(1)).offers()
    late = StoreOffers(store, at=run_time(1) + timedelta(hours=2, minutes=5)).offers()
    assert late.offers == fresh.offers
    assert late.warnings[0].startswith("the snapshot is 2h05m old (run 2026-03-02T00:10Z")
    assert late.age(run_time(1) + timedelta(hours=2)) == timedelta(hours=2)


def test_an_empty_store_says_to_collect_first(tmp_path: Path) -> None:
    empty = open_store(str(tmp_path / "empty"))
    with pytest.raises(ConfigError, match="holds no committed snapshot: run a collection first"):
        StoreOffers(empty).offers()
    with pytest.raises(ConfigError, match="at or before 2020"):
        StoreOffers(empty, at=datetime(2020, 1, 1, tzinfo=UTC)).offers()


@attrs.define
class Doctored:
    """A store whose frames a test edits on the way out (everything else is the real store)."""

    real: SnapshotStore
    merged: Any = None
    skus: Any = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def read_frame(self, *, kind: Any, at: datetime, source: str | None = None) -> pd.DataFrame | None:
        frame = self.real.read_frame(kind=kind, at=at, source=source)
        edit = self.merged if kind == FrameKind.MERGED else self.skus
        return frame if frame is None or edit is None else edit(frame.copy(), at)


def rows_of(frame: pd.DataFrame, offers: list[Offer]) -> Iterator[int]:
    """The merged-frame rows of zonal spot offers."""
    for o in offers:
        assert o.pool.zone is not None
        hit = (
            (frame["region"] == o.pool.region)
            & (frame["size"] == o.pool.instance_type)
            & (frame["zone"] == o.pool.zone.rsplit("-", 1)[1])
        )
        yield int(frame.index[hit.fillna(False).to_numpy(dtype=bool)][0])


def test_unknown_sizes_odd_values_and_served_scores_are_counted(store: SnapshotStore) -> None:
    base = StoreOffers(store, at=run_time(1)).offers()
    size = base.spot[0].pool.instance_type
    older = run_time(1) - timedelta(minutes=30)

    def merged(frame: pd.DataFrame, _at: datetime) -> pd.DataFrame:
        rows = rows_of(frame, [o for o in base.spot if o.pool.zone and o.pool.instance_type != size][:4])
        served, odd_score, odd_bucket, restricted = next(rows), next(rows), next(rows), next(rows)
        frame.loc[served, "observed_at"] = pd.Timestamp(older)
        frame.loc[odd_bucket, "eviction_bucket"] = "25+"
        for row, score in ((odd_score, "VeryHigh"), (restricted, "RestrictedSkuNotAvailable")):
            frame.loc[row, "score"] = score
            frame.loc[row, "score_value"] = pd.NA
        return frame

    doctored = Doctored(store, merged=merged, skus=lambda f, _at: f[f["size"] != size].reset_index(drop=True))
    got = StoreOffers(cast(SnapshotStore, doctored), at=run_time(1)).offers()
    text = " | ".join(got.warnings)
    lost = sum(1 for o in base.offers if o.pool.instance_type == size)
    assert not any(o.pool.instance_type == size for o in got.offers)
    assert "size(s) have no vCPUs/memory in the store's SKU data (e.g. " + size in text
    assert "1 spot row(s) dropped: the SPS API answered RestrictedSkuNotAvailable" in text
    assert "1 spot offer(s) carry a placement score observed before the run" in text
    assert "placement scores spotlake does not know were kept as no score: ['VeryHigh']" in text
    assert "1 spot offer(s) have an eviction bucket spotlake does not know (['25+'])" in text
    assert len(got) == len(base) - lost - 1
    served = [o for o in got.spot if o.observed_at == older]
    assert len(served) == 1 and served[0].score is not None and served[0].score.observed_at == older
    assert got.observed_at == run_time(1)
    odd = [o for o in got.spot if o.eviction_bucket == "25+"]
    assert len(odd) == 1 and odd[0].eviction_score is None


def test_sizes_missing_from_the_runs_sku_frame_come_from_an_earlier_one(store: SnapshotStore) -> None:
    base = StoreOffers(store, at=run_time(1)).offers()
    size = base.spot[0].pool.instance_type

    def skus(frame: pd.DataFrame, at: datetime) -> pd.DataFrame:
        return frame[frame["size"] != size] if at == run_time(1) else frame

    got = StoreOffers(cast(SnapshotStore, Doctored(store, skus=skus)), at=run_time(1)).offers()
    assert got.offers == base.offers and got.warnings == base.warnings
