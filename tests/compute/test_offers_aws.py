"""AWS offer sources: a store's AWS tree filled by AWS cycles on the offline emulator
(spotlake.testing.aws), and live calls through the AWS collectors on the emulator's clients.

Every value is checked against the emulator's catalog (prices per zone ID and region, vCPUs,
memory) or against the store's own merged frame (scores, eviction buckets); calls to AWS are
counted by the emulator's call log (its botocore hooks answer every call, AwsFaults counts them).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, cast

import attrs
import pandas as pd
import pytest
from ec2_support import ami, described

from spotlake.clock import FakeClock
from spotlake.collect.aws import AwsInstanceTypeCollector, AwsOnDemandCollector, AwsSpotPriceCollector
from spotlake.compute import Allocator, CapacityRequest
from spotlake.compute.launch.ec2 import Ec2Launcher
from spotlake.compute.launch.fake import FakeLauncher
from spotlake.compute.offers import (
    AwsStoreOffers,
    LiveAwsOffers,
    OfferSet,
    OfferSource,
    ZoneKind,
    zone_kind,
)
from spotlake.compute.values import CapacityType, Cloud, Offer
from spotlake.errors import CollectError, ConfigError
from spotlake.model import EVICTION_BUCKETS, Source
from spotlake.pipeline.aws import AwsAccess, run_aws_cycle
from spotlake.pipeline.report import RunStatus
from spotlake.storage import FrameKind, SnapshotStore, open_store
from spotlake.testing.aws.catalog import NOW, AwsCatalog, AwsFaults
from spotlake.testing.aws.emulator import AwsEmulator

START = NOW.replace(minute=0)
RUNS = [START + timedelta(minutes=10 * i) for i in range(2)]
LAST = RUNS[-1]


def by_pool(offers: OfferSet) -> dict[tuple[str, str | None, str, CapacityType], Offer]:
    return {(o.pool.region, o.pool.zone, o.pool.instance_type, o.capacity_type): o for o in offers.offers}


@attrs.frozen
class Filled:
    store: SnapshotStore
    catalog: AwsCatalog
    location: Path


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> Filled:
    """A store whose AWS tree holds two committed AWS runs (target capacity 1, then 5)."""
    location = tmp_path_factory.mktemp("aws-store")
    clock = FakeClock(START)
    emu = AwsEmulator(AwsCatalog.generate(1, types=6), clock=clock)
    store = open_store(location, cloud=Cloud.AWS, clock=clock)
    for at in RUNS:
        clock.set(at)
        access = AwsAccess(
            regions=emu.regions,
            accounts=emu.accounts,
            clients=emu.clients,
            advisor_transport=emu.advisor_transport(),
        )
        assert run_aws_cycle(at, store=store, access=access, clock=clock).status is RunStatus.COMMITTED
    return Filled(store=store, catalog=emu.catalog, location=location)


def merged_rows(store: SnapshotStore, at: datetime) -> dict[tuple[str, str, str], dict[str, Any]]:
    frame = store.read_frame(kind=FrameKind.MERGED, at=at)
    assert frame is not None
    rows = cast(list[dict[str, Any]], frame.astype(object).where(frame.notna(), None).to_dict("records"))
    return {(r["region"], r["zone"], r["size"]): r for r in rows if r["zone"] is not None}


# --- the store -----------------------------------------------------------------------------------


def test_store_offers_match_the_catalog_and_the_snapshot(filled: Filled) -> None:
    got = AwsStoreOffers(filled.store, at=LAST).offers()
    catalog = filled.catalog
    assert (
        got.source == f"{filled.store.url} merged AWS snapshot of {LAST:%Y-%m-%dT%H:%MZ} (target capacity 5)"
    )
    assert got.observed_at == LAST and isinstance(AwsStoreOffers(filled.store), OfferSource)
    offers = by_pool(got)
    # every priced zone and region of the world, and nothing else
    assert {(o.pool.instance_type, o.pool.zone) for o in got.spot} == set(catalog.spot)
    assert {(o.pool.instance_type, o.pool.region) for o in got.on_demand} == set(catalog.ondemand)
    # a scored zone AWS does not price has no spot price in the snapshot, so no spot offer
    rows = merged_rows(filled.store, LAST)
    unpriced = [k for k in rows if k[1] is not None and (k[2], k[1]) not in catalog.spot]
    assert unpriced and all(rows[k]["spot_price"] is None for k in unpriced)
    assert got.warnings == ()
    for (size, zone), price in catalog.spot.items():
        region = catalog.region_of(zone)
        o = offers[(region, zone, size, CapacityType.SPOT)]
        kind = catalog.types[size]
        assert (o.price, o.vcpus, o.memory_gib, o.family) == (price, kind.vcpus, kind.memory_gib, kind.family)
        assert o.pool.cloud is Cloud.AWS and zone_kind(zone, region) is ZoneKind.ID
        assert o.observed_at == LAST and o.source == got.source
        row = rows[(region, zone, size)]
        assert o.score is not None and (o.score.value, o.score.scale) == (row["score_value"], 10.0)
        assert o.score.observed_at == LAST and 1 <= o.score.value <= 10
        assert (o.eviction_bucket, o.eviction_score) == (
            row["eviction_bucket"],
            EVICTION_BUCKETS[row["eviction_bucket"]],
        )
    for (size, region), price in catalog.ondemand.items():
        o = offers[(region, None, size, CapacityType.ON_DEMAND)]
        assert (o.price, o.vcpus, o.score, o.observed_at) == (price, catalog.types[size].vcpus, None, LAST)
    assert len({str(o.pool) for o in got.offers if o.spot}) == len(got.spot)  # a zone ID names one pool


def test_store_offers_at_a_time_and_a_target_capacity(filled: Filled) -> None:
    first = AwsStoreOffers(filled.store, at=RUNS[0] + timedelta(minutes=5)).offers()
    assert first.source.endswith(f"{RUNS[0]:%Y-%m-%dT%H:%MZ} (target capacity 1)")
    assert AwsStoreOffers(filled.store, at=LAST, desired_count=1).offers().source == first.source
    with pytest.raises(ConfigError, match="scored target capacity 50"):
        AwsStoreOffers(filled.store, desired_count=50).offers()
    with pytest.raises(ConfigError, match="desired_count must be one of"):
        AwsStoreOffers(filled.store, desired_count=7)


def test_a_stale_snapshot_is_flagged_not_dropped(filled: Filled) -> None:
    fresh = AwsStoreOffers(filled.store, at=LAST).offers()
    late = AwsStoreOffers(filled.store, clock=FakeClock(LAST + timedelta(hours=2, minutes=5))).offers()
    assert late.offers == fresh.offers
    assert late.warnings[0].startswith(f"the snapshot is 2h05m old (run {LAST:%Y-%m-%dT%H:%MZ}")


def test_an_empty_store_or_the_azure_tree_says_to_collect_aws_first(filled: Filled, tmp_path: Path) -> None:
    for store in (open_store(tmp_path / "empty", cloud=Cloud.AWS), open_store(filled.location)):
        with pytest.raises(ConfigError, match="holds no committed snapshot: run an AWS collection first"):
            AwsStoreOffers(store).offers()
    with pytest.raises(ConfigError, match="at or before 2020"):
        AwsStoreOffers(filled.store, at=datetime(2020, 1, 1, tzinfo=NOW.tzinfo)).offers()


@attrs.define
class Doctored:
    """The real store, its merged and aws_types frames edited on the way out."""

    real: SnapshotStore
    merged: Any = None
    types: Any = None
    no_types: bool = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def run_times(self, kind: Any, **kw: Any) -> list[datetime]:
        if self.no_types and kw.get("source") == Source.AWS_TYPES:
            return []
        return self.real.run_times(kind, **kw)

    def read_frame(self, *, kind: Any, at: datetime, source: str | None = None) -> pd.DataFrame | None:
        frame = self.real.read_frame(kind=kind, at=at, source=source)
        edit = self.merged if kind == FrameKind.MERGED else self.types
        return frame if frame is None or edit is None else edit(frame.copy())


def test_unknown_types_odd_scores_served_and_regional_rows_are_counted(filled: Filled) -> None:
    base = AwsStoreOffers(filled.store, at=LAST).offers()
    gone = base.spot[0].pool.instance_type
    older = LAST - timedelta(minutes=20)

    def merged(frame: pd.DataFrame) -> pd.DataFrame:
        rows = frame.index[(frame["size"] != gone) & frame["spot_price"].notna()].tolist()
        odd, served, regional = rows[:3]
        frame.loc[odd, "score"] = "11"
        frame.loc[odd, "score_value"] = pd.NA
        frame.loc[served, "observed_at"] = pd.Timestamp(older)
        frame.loc[regional, "zone"] = pd.NA
        return frame

    def types(frame: pd.DataFrame) -> pd.DataFrame:  # the type is missing from every aws_types frame
        return frame[frame["size"] != gone].reset_index(drop=True)

    doctored = cast(SnapshotStore, Doctored(filled.store, merged=merged, types=types))
    got = AwsStoreOffers(doctored, at=LAST).offers()
    text = " | ".join(got.warnings)
    assert not any(o.pool.instance_type == gone for o in got.offers)
    assert f"instance type(s) have no vCPUs/memory in the store's aws_types frames (e.g. {gone})" in text
    assert "placement scores off AWS's scale 1..10 were kept as no score: ['11']" in text
    assert "1 spot offer(s) carry a placement score observed before the run" in text
    assert "1 spot offer(s) are regional (no zone of the pair was scored)" in text
    assert sum(o.score is None for o in got.spot) == 1
    assert [o.score.observed_at for o in got.spot if o.observed_at == older] == [older]  # type: ignore[union-attr]
    assert sum(o.pool.zone is None for o in got.spot) == 1
    assert len(got) == len(base) - sum(o.pool.instance_type == gone for o in base.offers)

    with pytest.raises(ConfigError, match="holds no instance-type frame"):
        AwsStoreOffers(cast(SnapshotStore, Doctored(filled.store, no_types=True)), at=LAST).offers()


# --- live ----------------------------------------------------------------------------------------


@attrs.define
class World:
    emu: AwsEmulator
    faults: AwsFaults
    clock: FakeClock

    def collectors(self) -> dict[str, Any]:
        regions, clients, clock = self.emu.regions, self.emu.clients, self.clock
        return {
            "spot_prices": AwsSpotPriceCollector(regions=regions, clients=clients, clock=clock),
            "instance_types": AwsInstanceTypeCollector(regions=regions, clients=clients, clock=clock),
            "on_demand": AwsOnDemandCollector(regions=regions, clients=clients, clock=clock),
        }

    def live(self, **kw: Any) -> LiveAwsOffers:
        return LiveAwsOffers(**self.collectors(), clock=self.clock, **kw)

    def advance(self, delta: timedelta) -> None:
        self.clock.advance(delta.total_seconds())


@pytest.fixture
def world() -> World:
    clock = FakeClock(NOW)
    faults = AwsFaults()
    return World(
        emu=AwsEmulator(AwsCatalog.generate(2, types=5), clock=clock, faults=faults),
        faults=faults,
        clock=clock,
    )


def test_live_offers_equal_the_catalog(world: World) -> None:
    got = world.live().offers()
    catalog = world.emu.catalog
    assert got.warnings == () and got.observed_at == NOW and isinstance(world.live(), OfferSource)
    assert {(o.pool.instance_type, o.pool.zone): o.price for o in got.spot} == dict(catalog.spot)
    assert {(o.pool.instance_type, o.pool.region): o.price for o in got.on_demand} == dict(catalog.ondemand)
    for o in got.offers:
        kind = catalog.types[o.pool.instance_type]
        assert (o.vcpus, o.memory_gib, o.family) == (kind.vcpus, kind.memory_gib, kind.family)
        assert o.score is None and o.eviction_score is None and o.observed_at == NOW
    assert all(o.pool.region == catalog.region_of(o.pool.zone) for o in got.spot if o.pool.zone)


def test_live_offers_are_cached_for_the_ttl(world: World) -> None:
    live = world.live(ttl=timedelta(minutes=10))
    first = live.offers()
    calls = world.faults.calls
    assert calls > 0
    world.advance(timedelta(minutes=9, seconds=59))
    assert live.offers() is first and world.faults.calls == calls  # no AWS call within the TTL
    world.advance(timedelta(seconds=1))
    again = live.offers()
    assert world.faults.calls == 2 * calls and again.observed_at == NOW + timedelta(minutes=10)
    assert again.offers != first.offers and {o.price for o in again.offers} == {o.price for o in first.offers}


def test_a_failed_refresh_serves_the_cached_set_until_max_age(world: World) -> None:
    live = world.live(ttl=timedelta(minutes=10), max_age=timedelta(minutes=30))
    first = live.offers()
    world.faults.denied = dict.fromkeys(world.emu.regions, "UnauthorizedOperation")
    world.advance(timedelta(minutes=12))
    calls = world.faults.calls
    served = live.offers()
    assert served.offers == first.offers and world.faults.calls > calls
    assert served.warnings[0].startswith(
        f"refreshing failed at {NOW + timedelta(minutes=12):%Y-%m-%dT%H:%M:%SZ}"
    )
    assert "the instance types (aws_types) failed" in served.warnings[0]
    assert "serving the offers fetched at 2026-05-04T09:00:00Z, 12m old" in served.warnings[0]
    calls = world.faults.calls
    world.advance(timedelta(seconds=30))  # within retry_after: AWS is not called again
    assert live.offers().warnings == served.warnings and world.faults.calls == calls
    world.advance(timedelta(minutes=18, seconds=1))  # 30m01s old
    with pytest.raises(
        CollectError, match=r"could not be refreshed: the instance types .* older than max_age 30m"
    ):
        live.offers()
    world.faults.denied = {}
    assert live.offers().warnings == () and world.faults.calls > calls


def test_live_offers_without_any_answer_raise_and_wrong_wiring_is_refused(world: World) -> None:
    world.faults.denied = dict.fromkeys(world.emu.regions, "AuthFailure")
    with pytest.raises(
        CollectError, match=r"could not be refreshed: the instance types \(aws_types\) failed"
    ):
        world.live().offers()
    c = world.collectors()
    swapped = {"spot_prices": c["instance_types"], "instance_types": c["spot_prices"]}
    with pytest.raises(ConfigError, match="the instance types collector must collect aws_types"):
        LiveAwsOffers(**{**c, **swapped})
    with pytest.raises(ConfigError, match="ttl <= max_age"):
        world.live(ttl=timedelta(hours=1), max_age=timedelta(minutes=30))


# --- allocating from them ------------------------------------------------------------------------


def test_the_allocator_allocates_from_store_and_live_offers(filled: Filled, world: World) -> None:
    clock = FakeClock(LAST)
    request = CapacityRequest(vcpus=64, regions={"us-east-1"}, name="aws")
    for offers in (AwsStoreOffers(filled.store, clock=clock).offers(), world.live().offers()):
        clock.set(offers.observed_at or LAST)
        allocation = Allocator(FakeLauncher(clock=clock), clock=clock).allocate(offers.offers, request)
        assert allocation.instances and not allocation.unfilled
        spot = [i for i in allocation.instances if i.capacity_type is CapacityType.SPOT]
        assert spot and all(zone_kind(i.offer.pool.zone or "", "us-east-1") is ZoneKind.ID for i in spot)


def test_ec2_launches_a_store_offer_in_the_zone_its_id_names(filled: Filled, ec2: Any) -> None:
    """moto names use1-az1 us-east-1b: the launcher maps the offer's zone ID to the account's name."""
    offers = AwsStoreOffers(filled.store, at=LAST).offers()
    by_name = {z["ZoneName"]: z["ZoneId"] for z in ec2.describe_availability_zones()["AvailabilityZones"]}
    clock = FakeClock(LAST)
    launcher = Ec2Launcher(image_id=ami(ec2), clients={"us-east-1": ec2}, clock=clock)
    request = CapacityRequest(count=1, zones={"use1-az1"}, task_class="normal")
    allocation = Allocator(launcher, clock=clock).allocate(offers.offers, request)
    (instance,) = allocation.instances
    assert instance.capacity_type is CapacityType.SPOT and instance.offer.pool.zone == "use1-az1"
    placed = described(ec2, [instance.id])[instance.id]["Placement"]["AvailabilityZone"]
    assert (placed, by_name[placed]) == ("us-east-1b", "use1-az1")
