"""The simulator's trace sources: the public spot traces, the generator, a store's Azure history.

The replay tests read the committed excerpts (``tests/fixtures/spot-traces/``: the first 200 ticks
of two 600 s availability files and one 32 s preemption file of ``../shared/data/spot-traces/``)
and, when the data set sits beside the repository, all twelve real files (never skipped: the
excerpts stand in for them). The history tests collect runs of the pipeline tests' small emulator
world into a store and check every tick of every pool against the store's own frames.
"""

from __future__ import annotations

import csv
import itertools
import json
import math
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd
import pytest

from pipeline_support import emulator, in_process_access, run_time
from spotlake.clock import FakeClock
from spotlake.compute.simulate.generate import (
    DEFAULT_START,
    GENERATOR_REGIONS,
    GENERATOR_TYPES,
    Dynamics,
    generate_trace,
)
from spotlake.compute.simulate.history import trace_from_store
from spotlake.compute.simulate.replay import (
    AVAILABILITY_START,
    EC2_TYPES,
    PREEMPTION_START,
    load_spot_trace,
    load_spot_traces,
)
from spotlake.compute.simulate.trace import Trace
from spotlake.compute.values import CapacityType, Cloud, Pool
from spotlake.errors import ConfigError
from spotlake.model import SCORE_VALUES, Source
from spotlake.pipeline import RunStatus, run_cycle
from spotlake.storage import FrameKind, SnapshotStore, open_store

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
EXCERPTS = FIXTURES / "spot-traces"
SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
K80 = EXCERPTS / "us-west-2a_k80_1.json"
V100_8 = EXCERPTS / "us-west-2b_v100_8.json"
PREEMPTION = EXCERPTS / "preemption_us-west-2b_v100_1.json"


def data_of(path: Path) -> list[int]:
    return cast(list[int], json.loads(path.read_text())["data"])


def only(trace: Trace) -> Any:
    (series,) = trace.spot.values()
    return series


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# --- replay: the public spot traces ---------------------------------------------------------------


def test_an_availability_file_is_one_pool_at_its_zone_price() -> None:
    trace = load_spot_trace(K80)
    pool = Pool(cloud=Cloud.AWS, region="us-west-2", zone="us-west-2a", instance_type="p2.xlarge")
    assert list(trace.spot) == [pool] and trace.name == "us-west-2a_k80_1"
    assert trace.cloud is Cloud.AWS and trace.ticks == 200 and trace.step == timedelta(seconds=600)
    assert trace.start == AVAILABILITY_START == datetime(2022, 10, 26, tzinfo=UTC)
    series = only(trace)
    assert series.available.tolist() == [64 * v for v in data_of(K80)]
    assert set(series.price.tolist()) == {0.3552} and series.score is None
    assert trace.on_demand_price("us-west-2", "p2.xlarge") == 0.9
    assert trace.shapes["p2.xlarge"].vcpus == 4 and trace.shapes["p2.xlarge"].gpus == 1
    offers = trace.offers(trace.start + timedelta(minutes=25))
    assert {(o.capacity_type, o.price) for o in offers} == {
        (CapacityType.SPOT, 0.3552),
        (CapacityType.ON_DEMAND, 0.9),
    }
    assert all(o.observed_at == trace.start + timedelta(minutes=20) for o in offers)


def test_several_files_share_a_trace_with_the_callers_capacity_and_start() -> None:
    start = datetime(2024, 1, 1, tzinfo=UTC)
    trace = load_spot_traces([K80, V100_8], capacity=3, start=start)
    assert trace.name == "us-west-2a_k80_1+us-west-2b_v100_8" and trace.start == start
    got = {str(p): s.available.tolist() for p, s in trace.spot.items()}
    assert got == {
        "aws:us-west-2a:p2.xlarge": [3 * v for v in data_of(K80)],
        "aws:us-west-2b:p3.16xlarge": [3 * v for v in data_of(V100_8)],
    }
    assert only_price(trace, "p3.16xlarge") == 9.5341
    assert (
        trace.shapes["p3.16xlarge"].gpus == 8 and trace.on_demand_price("us-west-2", "p3.16xlarge") == 24.48
    )
    assert load_spot_traces(EXCERPTS, pattern="us-*.json").name == "spot-traces"


def only_price(trace: Trace, instance_type: str) -> float:
    (prices,) = {
        float(p) for pool, s in trace.spot.items() if pool.instance_type == instance_type for p in s.price
    }
    return prices


def test_a_preemption_file_has_32_second_ticks_and_may_use_its_own_prices() -> None:
    trace = load_spot_traces(PREEMPTION)
    assert trace.step == timedelta(seconds=32) and trace.start == PREEMPTION_START
    assert str(next(iter(trace.spot))) == "aws:us-west-2b:p3.2xlarge"
    assert only_price(trace, "p3.2xlarge") == 1.0124
    assert only_price(load_spot_trace(PREEMPTION, file_prices=True), "p3.2xlarge") == 0.918
    # A file without prices keeps the table's price under file_prices=True.
    assert only_price(load_spot_trace(K80, file_prices=True), "p2.xlarge") == 0.3552


def test_a_zone_without_a_catalog_price_gets_the_regions_median(tmp_path: Path) -> None:
    path = write(tmp_path / "preemption_us-east-1e_v100_1.json", K80.read_text())
    trace = load_spot_trace(path)
    assert str(next(iter(trace.spot))) == "aws:us-east-1e:p3.2xlarge"
    assert trace.start == PREEMPTION_START  # the name says preemption, whatever the gap
    assert only_price(trace, "p3.2xlarge") == pytest.approx((1.7214 + 1.8041) / 2)
    pool = Pool(cloud=Cloud.AWS, region="us-east-2", zone="us-east-2c", instance_type="p2.xlarge")
    assert only_price(load_spot_trace(K80, pool=pool), "p2.xlarge") == 0.27
    assert load_spot_trace(K80, pool=pool).on_demand_price("us-east-2", "p2.xlarge") == 0.9


def test_files_of_different_tick_lengths_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"different tick lengths \(32 s: preemption_us-west-2b") as err:
        load_spot_traces(EXCERPTS)
    assert "600 s: us-west-2a_k80_1.json, us-west-2b_v100_8.json" in str(err.value)
    assert "pattern='preemption_*.json'" in str(err.value)
    assert load_spot_traces(EXCERPTS, pattern="preemption_*.json").ticks == 200


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("us-west-2a_k80_1.json", "{not json", r"is not JSON \(Expecting property name"),
        ("us-west-2a_k80_1.json", "[1, 2]", "no positive integer metadata.gap_seconds"),
        ("us-west-2a_k80_1.json", '{"metadata": {"gap_seconds": 0}, "data": [1]}', "gap_seconds"),
        ("us-west-2a_k80_1.json", '{"metadata": {"gap_seconds": 600}, "data": []}', "non-empty list"),
        (
            "us-west-2a_k80_1.json",
            '{"metadata": {"gap_seconds": 600}, "data": [1, -1]}',
            "tick 1 of 'data' is -1",
        ),
        ("us-west-2a_k80_1.json", '{"metadata": {"gap_seconds": 600}, "data": [1, 0.5]}', "tick 1 .* 0.5"),
        ("us-west-2a_k80_1.json", '{"metadata": {"gap_seconds": 600}, "data": [true]}', "tick 0 .* True"),
        ("trace.json", '{"metadata": {"gap_seconds": 600}, "data": [1]}', "neither <zone>_<gpu>_<count>"),
        (
            "us-west-2a_a100_8.json",
            '{"metadata": {"gap_seconds": 600}, "data": [1]}',
            "no EC2 type for a100 x 8",
        ),
        (
            "eu-west-1a_k80_1.json",
            '{"metadata": {"gap_seconds": 600}, "data": [1]}',
            "no price for p2.xlarge in eu-west-1",
        ),
    ],
)
def test_bad_files_name_the_file_and_what_to_do(tmp_path: Path, name: str, text: str, message: str) -> None:
    path = write(tmp_path / name, text)
    with pytest.raises(ConfigError, match=message) as err:
        load_spot_trace(path)
    assert str(path) in str(err.value)


def test_other_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"spot trace .*nowhere_k80_1.json does not exist"):
        load_spot_trace(tmp_path / "nowhere_k80_1.json")
    with pytest.raises(ConfigError, match="capacity is the instances"):
        load_spot_trace(K80, capacity=0)
    short = write(tmp_path / "us-west-2c_k80_1.json", '{"metadata": {"gap_seconds": 600}, "data": [1, 0]}')
    with pytest.raises(
        ConfigError, match=re.escape("as many ticks each; got us-west-2a_k80_1.json: 200, us-west-2c")
    ):
        load_spot_traces([K80, short])
    with pytest.raises(
        ConfigError, match=re.escape("another file of this trace is pool aws:us-west-2a:p2.xlarge")
    ):
        load_spot_traces([K80, K80])
    odd = Pool(cloud=Cloud.AWS, region="us-west-2", zone="us-west-2a", instance_type="m5.large")
    with pytest.raises(ConfigError, match=re.escape("no prices or shape for m5.large; use one of p2.xlarge")):
        load_spot_trace(K80, pool=odd)
    with pytest.raises(ConfigError, match="zonal AWS pool"):
        load_spot_trace(
            K80, pool=Pool(cloud=Cloud.AWS, region="us-west-2", zone=None, instance_type="p2.xlarge")
        )
    bad_prices = write(
        tmp_path / "us-west-2b_k80_1.json",
        '{"metadata": {"gap_seconds": 600}, "data": [1, 0], "prices": [1, 0]}',
    )
    with pytest.raises(ConfigError, match="'prices' must be 2 positive numbers"):
        load_spot_trace(bad_prices, file_prices=True)
    assert only_price(load_spot_trace(bad_prices), "p2.xlarge") == 0.2922
    with pytest.raises(ConfigError, match=r"no spot trace in .* matches 'x\*'"):
        load_spot_traces(EXCERPTS, pattern="x*")
    with pytest.raises(ConfigError, match="start on different dates"):
        load_spot_traces([K80, write(tmp_path / "preemption_us-west-2c_k80_1.json", K80.read_text())])


def catalog_rows(path: Path, types: set[str]) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return [r for r in csv.DictReader(fh) if r["InstanceType"] in types]


def check_table(rows: list[dict[str, str]]) -> int:
    """Every catalog row of a table type agrees with the table; returns the rows checked."""
    for row in rows:
        kind = EC2_TYPES[row["InstanceType"]]
        assert kind.on_demand[row["Region"]] == float(row["Price"])
        assert kind.spot.get(row["AvailabilityZone"]) == (
            float(row["SpotPrice"]) if row["SpotPrice"] else None
        )
        assert (kind.shape.vcpus, kind.shape.memory_gib) == (float(row["vCPUs"]), float(row["MemoryGiB"]))
        assert kind.shape.gpus == float(row["AcceleratorCount"])
    return len(rows)


def test_the_price_table_is_the_catalogs() -> None:
    """p3.2xlarge against the committed catalog excerpt; all four types against the whole catalog
    when it is beside the repository."""
    assert check_table(catalog_rows(FIXTURES / "aws_catalog_excerpt.csv", {"p3.2xlarge"})) == 10
    full = SHARED / "aws_vms_catalog_us.csv"
    if full.exists():
        rows = catalog_rows(full, set(EC2_TYPES))
        assert check_table(rows) == 4 * 13
        assert sum(len(k.spot) for k in EC2_TYPES.values()) == sum(1 for r in rows if r["SpotPrice"])


def test_the_real_traces_have_the_readmes_shares_of_available_ticks() -> None:
    """All twelve files when ../shared/data/spot-traces exists (the README's ranges), else the
    committed excerpts (their own shares)."""
    real = SHARED / "spot-traces"
    if real.is_dir():
        availability = load_spot_traces(real, pattern="us-*.json")
        preemption = load_spot_traces(real, pattern="preemption_*.json")
        assert (len(availability.spot), availability.ticks) == (8, 3895)
        assert (len(preemption.spot), preemption.ticks) == (4, 19961)
        expected = ((0.12, 0.89), (0.31, 0.79))
    else:
        availability = load_spot_traces(EXCERPTS, pattern="us-*.json")
        preemption = load_spot_traces(EXCERPTS, pattern="preemption_*.json")
        expected = ((0.32, 0.92), (0.99, 0.99))
    for trace, (low, high) in zip((availability, preemption), expected, strict=True):
        shares = [float((s.available > 0).mean()) for s in trace.spot.values()]
        assert (round(min(shares), 2), round(max(shares), 2)) == (low, high)
    assert availability.step == timedelta(minutes=10) and preemption.step == timedelta(seconds=32)


# --- generate: synthetic traces -------------------------------------------------------------------


@pytest.fixture(scope="module")
def generated() -> Trace:
    return generate_trace(seed=7, days=14)


def arrays(trace: Trace) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(available, price, score), each ticks x pools."""
    series = list(trace.spot.values())
    return tuple(  # type: ignore[return-value]
        np.array([getattr(s, name) for s in series]).T for name in ("available", "price", "score")
    )


def test_the_same_seed_gives_the_same_trace_and_another_seed_another() -> None:
    a, b, c = (generate_trace(seed=s, days=2) for s in (3, 3, 4))
    assert list(a.spot) == list(b.spot) and a.on_demand == b.on_demand and a.shapes == b.shapes
    for x, y in zip(arrays(a), arrays(b), strict=True):
        np.testing.assert_array_equal(x, y)
    assert list(a.spot) != list(c.spot)
    assert not np.array_equal(arrays(a)[0], arrays(c)[0])
    assert a.ticks == 2 * 288 and a.start == DEFAULT_START and a.step == timedelta(minutes=5)
    assert a.name == "generated aws seed 3" and len(a.spot) == 50


def test_generated_values_are_in_range(generated: Trace) -> None:
    available, price, score = arrays(generated)
    assert available.min() >= 0 and available.max() <= 64
    od = np.array([generated.on_demand_price(p.region, p.instance_type) for p in generated.spot])
    ratio = price / od[None, :]
    assert ratio.min() >= 0.2 - 0.0001 / od.min() and ratio.max() <= 0.9 + 0.0001 / od.min()
    # The market's level is the real catalog's (see test_the_market_costs_what_the_catalog_says).
    assert REAL_AWS_SHARE[0] < ratio.mean() < REAL_AWS_SHARE[1]
    assert set(np.unique(score)) <= set(range(1, 11)) and {1, 10} <= set(np.unique(score))
    assert np.corrcoef(score.ravel(), available.ravel())[0, 1] > 0.8
    # Scarcity raises the price.
    assert np.corrcoef(ratio.ravel(), available.ravel())[0, 1] < -0.3
    # Interruptions take pools to 0 or near 0 for a while, and not most of the time.
    down = available <= 0.06 * 64
    assert 0.005 < down.mean() < 0.2
    assert all(s.score_scale == 10 for s in generated.spot.values())
    assert {p.zone[:-1] for p in generated.spot} == {p.region for p in generated.spot}


#: Spot over on-demand price of the generator's AWS types in its four regions in the real catalog
#: (``../shared/data/aws_vms_catalog.csv``, 224 zonal rows): the 10th and 90th percentiles.
REAL_AWS_SHARE = (0.32, 0.47)


def test_the_market_costs_what_the_catalog_says() -> None:
    """Spot costs what the real catalog says on average (the scarcity premium moves prices around
    that level, it does not raise it), and shallow pools still cost more than deep ones."""
    for seed in (1, 2, 3):
        available, price, _ = arrays(trace := generate_trace(seed=seed, days=7))
        od = np.array([trace.on_demand_price(p.region, p.instance_type) for p in trace.spot])
        ratio = price / od[None, :]
        assert 0.37 < ratio.mean() < 0.42  # the base's mean is 0.395, the catalog's 0.394
        assert np.corrcoef(available.mean(axis=0), ratio.mean(axis=0))[0, 1] < -0.3
    catalog = SHARED / "aws_vms_catalog.csv"
    if catalog.exists():
        rows = pd.read_csv(catalog)
        rows = rows[
            rows.InstanceType.isin(list(GENERATOR_TYPES[Cloud.AWS]))
            & rows.Region.isin(list(GENERATOR_REGIONS[Cloud.AWS]))
            & rows.SpotPrice.notna()
        ]
        real = (rows.SpotPrice / rows.Price).dropna()
        assert len(real) == 224
        assert tuple(np.round(np.quantile(real, [0.1, 0.9]), 2)) == REAL_AWS_SHARE
        assert round(float(real.mean()), 2) == 0.39


def test_pools_of_a_zone_drop_together(generated: Trace) -> None:
    available, _, _ = arrays(generated)
    pools = list(generated.spot)
    down = available <= 0.06 * 64
    same, other = [], []
    for i, j in itertools.combinations(range(len(pools)), 2):
        either = (down[:, i] | down[:, j]).sum()
        overlap = (down[:, i] & down[:, j]).sum() / either if either else 0.0
        (same if pools[i].zone == pools[j].zone else other).append(overlap)
    assert len(same) >= 20
    assert np.mean(same) > 5 * np.mean(other)


def test_capacity_dips_in_the_regions_business_hours(generated: Trace) -> None:
    available, _, _ = arrays(generated)
    hours = np.arange(generated.ticks) * (generated.step / timedelta(hours=1))  # from a Monday 00:00 UTC
    for region, info in GENERATOR_REGIONS[Cloud.AWS].items():
        mine = [i for i, p in enumerate(generated.spot) if p.region == region]
        local = hours + info.utc_offset
        hour, weekday = local % 24, (local // 24) % 7 < 5
        busy = available[weekday & (hour >= 10) & (hour < 16)][:, mine].mean()
        night = available[(hour < 5)][:, mine].mean()
        assert busy < 0.95 * night, region


def test_azure_and_narrower_choices() -> None:
    trace = generate_trace(
        seed=1, pools=6, days=1, step=timedelta(minutes=10), cloud=Cloud.AZURE, regions=["eastus"],
        types=["Standard_D2s_v3", "Standard_E4s_v3"], capacity=10, name="small",
    )  # fmt: skip
    assert trace.name == "small" and trace.ticks == 144 and trace.cloud is Cloud.AZURE
    assert {p.zone for p in trace.spot} == {"eastus-1", "eastus-2", "eastus-3"}
    assert {p.instance_type for p in trace.spot} == {"Standard_D2s_v3", "Standard_E4s_v3"}
    _, _, score = arrays(trace)
    assert set(np.unique(score)) <= {1.0, 2.0, 3.0}
    assert all(s.score_scale == 3 and s.available.max() <= 10 for s in trace.spot.values())
    assert trace.on_demand_price("eastus", "Standard_E4s_v3") == 0.252
    calm = generate_trace(
        seed=1,
        days=1,
        dynamics=Dynamics(zone_events_per_day=0, region_events_per_day=0, pool_events_per_day=0),
    )
    assert min(int(s.available.min()) for s in calm.spot.values()) > 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"pools": 0}, "pools must be between 1 and 180"),
        ({"pools": 181}, "pools must be between 1 and 180"),
        ({"regions": ["mars-1"]}, "no aws region mars-1; use some of us-east-1"),
        ({"types": ["x1.huge"]}, "no aws type x1.huge"),
        ({"types": []}, r"no aws type \(none given\)"),
        ({"days": 0}, "days must be a positive number"),
        ({"step": timedelta(0)}, "step must be positive"),
        ({"capacity": 0}, "capacity is the most instances"),
        ({"cloud": Cloud.AZURE, "types": ["m5.large"]}, "no azure type m5.large"),
    ],
)
def test_generator_errors(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        generate_trace(seed=1, **kwargs)


def test_dynamics_are_checked() -> None:
    with pytest.raises(ConfigError, match=re.escape("Dynamics.zone_hit is a share")):
        Dynamics(zone_hit=1.5)
    with pytest.raises(
        ConfigError, match=re.escape("Dynamics.pool_events_per_day must be a finite number >= 0")
    ):
        Dynamics(pool_events_per_day=-1)
    with pytest.raises(ConfigError, match="price_floor < price_cap"):
        Dynamics(price_floor=0.5, price_cap=0.4)


# --- history: a store's collected Azure history ---------------------------------------------------

RUNS = (0, 1, 2, 4, 5, 6)  # run 3 missed: its ticks keep run 2's values


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> SnapshotStore:
    """Six committed runs at 00:00, 00:10, 00:20, 00:40, 00:50, 01:00 (desired counts 1, 5, 10, 15,
    20, 25: the rotation moves per run, not per 10 minutes) of the pipeline tests' small world."""
    emu = emulator()
    store = open_store(str(tmp_path_factory.mktemp("history") / "data"))
    for i in RUNS:
        cast(FakeClock, emu.clock).set(run_time(i))
        report = run_cycle(run_time(i), store=store, azure=in_process_access(emu), clock=emu.clock)
        assert report.status is RunStatus.COMMITTED, report.error
    return store


class Doctored:
    """A store whose merged frames a test edits on the way out (everything else is the real store)."""

    def __init__(self, store: SnapshotStore, edit: Callable[[pd.DataFrame], pd.DataFrame]) -> None:
        self._store, self._edit = store, edit

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def read_frames(self, kind: Any, **kw: Any) -> pd.DataFrame:
        frame = self._store.read_frames(kind, **kw)
        return self._edit(frame) if kind == FrameKind.MERGED else frame


def expected_pools(store: SnapshotStore) -> set[str]:
    """Scored zonal cells with a spot price, minus what the newest SKU frame blocks."""
    merged = store.read_frames(FrameKind.MERGED)
    skus = store.read_frame(kind=FrameKind.RAW, at=run_time(RUNS[-1]), source=Source.SKUS)
    assert skus is not None
    blocked = {
        (r, s) for r, s, b in zip(skus["region"], skus["size"], skus["restricted"], strict=True) if b is True
    }
    zones = {
        (f"{r}-{z}", s)
        for r, s, why in zip(skus["region"], skus["size"], skus["restriction"].fillna(""), strict=True)
        if why.startswith("Zone:")
        for z in why.rsplit(" zones ", 1)[1].split(",")
    }
    priced = set(
        zip(
            merged.loc[merged["spot_price"].notna(), "region"],
            merged.loc[merged["spot_price"].notna(), "size"],
            strict=True,
        )
    )
    scored = merged[merged["desired_count"].notna()]
    return {
        f"azure:{r}-{z}:{s}"
        for r, z, s in zip(scored["region"], scored["zone"], scored["size"], strict=True)
        if (r, s) in priced and (r, s) not in blocked and (f"{r}-{z}", s) not in zones
    }


def run_rows(store: SnapshotStore, i: int) -> dict[str, dict[str, Any]]:
    """The merged rows of run i by pool name (scored rows only)."""
    frame = store.read_frame(kind=FrameKind.MERGED, at=run_time(i))
    assert frame is not None
    rows = frame[frame["desired_count"].notna()].astype(object).where(frame.notna(), None)
    return {f"azure:{r['region']}-{r['zone']}:{r['size']}": r for r in rows.to_dict("records")}


def test_history_maps_scores_to_capacity_and_keeps_prices(store: SnapshotStore) -> None:
    trace = trace_from_store(store)
    assert trace.cloud is Cloud.AZURE and trace.start == run_time(0) and trace.step == timedelta(minutes=10)
    assert trace.ticks == 7 and trace.name.endswith("history 2026-03-02T00:00Z..2026-03-02T01:00Z")
    assert {str(p) for p in trace.spot} == expected_pools(store)
    levels = {"High": 64, "Medium": 16}
    seen: set[str] = set()
    for tick in range(trace.ticks):
        run = max(i for i in RUNS if i <= tick)  # tick 3 (no run) keeps run 2
        rows = run_rows(store, run)
        for pool, series in trace.spot.items():
            row = rows[str(pool)]
            seen.add(row["score"])
            assert series.available[tick] == levels.get(row["score"], 0), (pool, tick)
            value = SCORE_VALUES.get(row["score"])
            assert series.score[tick] == value if value else math.isnan(series.score[tick])
            assert series.price[tick] == row["spot_price"]
            assert trace.on_demand_price(pool.region, pool.instance_type) == row["ondemand_price"]
    assert {"High", "Medium", "Low", "DataNotFoundOrStale"} <= seen
    series = next(iter(trace.spot.values()))
    assert series.score_scale == 3
    # Shapes are the SKU data's; offers carry the tick's score on Azure's scale.
    skus = store.read_frame(kind=FrameKind.RAW, at=run_time(0), source=Source.SKUS)
    assert skus is not None
    pool = next(p for p, s in trace.spot.items() if s.score is not None and s.score[0] == 3)
    row = skus[skus["size"] == pool.instance_type].iloc[0]
    assert (trace.shapes[pool.instance_type].vcpus, trace.shapes[pool.instance_type].memory_gib) == (
        row["vcpus"],
        row["memory_gib"],
    )
    offer = next(o for o in trace.offers(run_time(0)) if o.pool == pool)
    assert offer.score is not None and (offer.score.value, offer.score.scale) == (3, 3)


def test_one_desired_count_keeps_its_runs_scores(store: SnapshotStore) -> None:
    trace = trace_from_store(store, desired_count=5, step=timedelta(minutes=5), capacity=8)
    assert trace.ticks == 13
    rows = run_rows(store, 1)  # the run that scored count 5
    for pool, series in trace.spot.items():
        assert series.available[:2].tolist() == [0, 0] and np.isnan(series.score[:2]).all()
        want = {"High": 8, "Medium": 2}.get(rows[str(pool)]["score"], 0)
        assert set(series.available[2:].tolist()) == {want}
    with pytest.raises(
        ConfigError, match=r"no run between .* scored desired count 50; pass desired_count=None"
    ):
        trace_from_store(store, desired_count=50)


def test_a_window_takes_its_first_values_from_the_run_before_it(store: SnapshotStore) -> None:
    trace = trace_from_store(store, start=run_time(2) + timedelta(minutes=5), end=run_time(5))
    assert trace.start == run_time(2) + timedelta(minutes=5) and trace.ticks == 3
    rows = run_rows(store, 2)
    levels = {"High": 64, "Medium": 16}
    for pool, series in trace.spot.items():
        assert series.available[:2].tolist() == [levels.get(rows[str(pool)]["score"], 0)] * 2
    with pytest.raises(ConfigError, match="would end"):
        trace_from_store(store, start=run_time(4), end=run_time(2))


def test_regions_and_sizes_narrow_the_trace(store: SnapshotStore) -> None:
    full = trace_from_store(store)
    pool = next(iter(full.spot))
    some = trace_from_store(store, regions=[pool.region])
    assert set(some.spot) == {p for p in full.spot if p.region == pool.region}
    assert {o.region for o in some.on_demand} == {pool.region}
    for p, series in some.spot.items():
        np.testing.assert_array_equal(series.available, full.spot[p].available)
        np.testing.assert_array_equal(series.price, full.spot[p].price)
    one = trace_from_store(store, sizes=pool.instance_type)
    assert {p.instance_type for p in one.spot} == set(one.shapes) == {pool.instance_type}
    with pytest.raises(ConfigError, match=re.escape("no collected row for regions ['mars'] and sizes ['x']")):
        trace_from_store(store, regions=["mars"], sizes=["x"])


def test_prices_move_with_the_runs_and_unscored_pairs_are_regional_pools(store: SnapshotStore) -> None:
    first = store.read_frame(kind=FrameKind.MERGED, at=run_time(0))
    assert first is not None
    scored = first[first["desired_count"].notna() & first["spot_price"].notna()]
    region, size = scored["region"].iloc[0], scored["size"].iloc[0]

    def edit(frame: pd.DataFrame) -> pd.DataFrame:
        frame = frame.copy()
        minutes = (frame["run_at"] - run_time(0)).dt.total_seconds() / 60
        frame["spot_price"] = frame["spot_price"] * (1 + minutes / 100)
        pair = (frame["region"] == region) & (frame["size"] == size)
        # The pair is never scored: one price-only row per run, as the merge writes it.
        only = frame[pair].drop_duplicates("run_at").copy()
        only[["zone", "desired_count", "score", "score_value"]] = pd.NA
        return pd.concat([frame[~pair], only], ignore_index=True)

    doctored = cast(SnapshotStore, Doctored(store, edit))
    trace = trace_from_store(doctored, capacity=4, levels={"High": 1, "Medium": 1, "Low": 0.5})
    regional = trace.spot[Pool(cloud=Cloud.AZURE, region=region, zone=region, instance_type=size)]
    assert regional.available.tolist() == [0] * 7 and np.isnan(regional.score).all()
    base = float(scored["spot_price"].iloc[0])
    minutes = [0, 10, 20, 20, 40, 50, 60]  # tick 3 keeps run 2's price
    assert regional.price.tolist() == pytest.approx([base * (1 + m / 100) for m in minutes])
    assert not any(p.region == region and p.instance_type == size and p.zone != region for p in trace.spot)
    rows = run_rows(store, 0)
    for pool, series in trace.spot.items():
        if pool.zone != region:
            assert series.available[0] == {"High": 4, "Medium": 4, "Low": 2}.get(rows[str(pool)]["score"], 0)


def test_history_errors(store: SnapshotStore, tmp_path: Path) -> None:
    empty = open_store(str(tmp_path / "empty"))
    with pytest.raises(ConfigError, match=r"holds no committed snapshot .*: run collections first"):
        trace_from_store(empty)
    with pytest.raises(ConfigError, match=r"levels\['High'\] is a share of capacity"):
        trace_from_store(store, levels={"High": 2})
    with pytest.raises(ConfigError, match="desired_count must be one of"):
        trace_from_store(store, desired_count=7)
    with pytest.raises(ConfigError, match="capacity is the instances a High score stands for"):
        trace_from_store(store, capacity=0)
    with pytest.raises(ConfigError, match="step must be positive"):
        trace_from_store(store, step=timedelta(0))
