"""An AWS cycle when a source fails for one region: the region is unknown, never gone.

Each test runs a healthy run first, then a run with one operation refused in one region (a hook
answering in the emulator's place), and checks what the store records."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from botocore.awsrequest import AWSResponse

from spotlake.clock import FakeClock
from spotlake.model import ChangeKind, Cloud, Source
from spotlake.pipeline.aws import AwsAccess, AwsCycleOptions, run_aws_cycle
from spotlake.pipeline.report import RunReport, RunStatus
from spotlake.pipeline.state import StateDocs
from spotlake.storage import ObjectStore, open_store
from spotlake.storage.base import FrameKind
from spotlake.testing.aws.catalog import NOW, AdvisorServer, AwsCatalog, spot_advisor_json
from spotlake.testing.aws.emulator import AwsEmulator
from spotlake.testing.aws.sps import FaultKind

START = NOW.replace(minute=0)
#: Long enough that nothing expires between the runs of a test.
KEEP = AwsCycleOptions(history_max_age=timedelta(hours=30))


@contextmanager
def refused(emu: AwsEmulator, service: str, operation: str, region: str) -> Iterator[None]:
    """``operation`` in ``region`` answered with an access error while the block runs."""
    client = emu.clients(service, region)
    event, uid = f"before-call.{service}.{operation}", f"refuse-{operation}"

    def hook(**_: Any) -> tuple[AWSResponse, dict[str, Any]]:
        error = {"Error": {"Code": "UnauthorizedOperation", "Message": "refused by the test"}}
        return AWSResponse("https://refused", 403, {}, None), {
            **error,
            "ResponseMetadata": {"HTTPStatusCode": 403},
        }

    client.meta.events.register_first(event, hook, unique_id=uid)
    try:
        yield
    finally:
        client.meta.events.unregister(event, unique_id=uid)


class World:
    def __init__(self, tmp_path: Path) -> None:
        self.clock = FakeClock(START)
        self.emu = AwsEmulator(AwsCatalog.generate(1, types=6), clock=self.clock)
        self.store: ObjectStore = open_store(tmp_path, cloud=Cloud.AWS, clock=self.clock)
        self.region = self.emu.regions[1]

    def run(self, at: datetime, options: AwsCycleOptions = KEEP, advisor: Any = None) -> RunReport:
        self.clock.set(at)
        access = AwsAccess(
            regions=self.emu.regions,
            accounts=self.emu.accounts,
            clients=self.emu.clients,
            advisor_transport=advisor or self.emu.advisor_transport(),
        )
        return run_aws_cycle(at, store=self.store, access=access, clock=self.clock, options=options)

    def changes(self, at: datetime) -> pd.DataFrame:
        return self.store.read_history(FrameKind.CHANGES, start=at, end=at)


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


def test_a_region_whose_spot_prices_fail_keeps_its_last_prices(world: World) -> None:
    assert world.run(START).ok
    before = world.store.latest(FrameKind.MERGED)
    assert before is not None
    later = START + timedelta(days=1, minutes=-60)  # count 1 again (a new day), nothing expired
    with refused(world.emu, "ec2", "DescribeSpotPriceHistory", world.region):
        report = world.run(later)
    assert report.status is RunStatus.COMMITTED
    spot = report.collector(Source.AWS_SPOT_PRICES)
    assert spot is not None and spot.failed == 1
    changes = world.changes(later)
    in_region = changes[changes["region"] == world.region]
    assert not in_region["changed_fields"].fillna("").str.contains("spot_price").any()
    assert not changes["change"].isin([ChangeKind.CEASED.value, ChangeKind.EXPIRED.value]).any()
    after = world.store.latest(FrameKind.MERGED)
    assert after is not None
    key = ["size", "region", "zone"]
    old = before[before["region"] == world.region].set_index(key)["spot_price"]
    new = after[after["region"] == world.region].set_index(key)["spot_price"]
    pd.testing.assert_series_equal(new.sort_index(), old.sort_index())


def test_a_listing_with_no_price_at_all_fails_before_spending_any_query(world: World) -> None:
    assert world.run(START).ok
    calls = len(world.emu.scores.calls)
    later = START + timedelta(minutes=10)
    with (
        refused(world.emu, "ec2", "DescribeSpotPriceHistory", world.emu.regions[0]),
        refused(world.emu, "ec2", "DescribeSpotPriceHistory", world.emu.regions[1]),
        refused(world.emu, "ec2", "DescribeSpotPriceHistory", world.emu.regions[2]),
    ):
        report = world.run(later)
    assert report.status is RunStatus.FAILED and "aws_spot_prices" in (report.error or "")
    assert len(world.emu.scores.calls) == calls  # no account budget spent on a run that fails
    assert world.store.run_times("merged") == [START]


def test_stale_rows_show_their_own_zone_s_price(world: World) -> None:
    """A failed placement-score query's rows are served with their last scores and this run's
    prices: their own zone's, not their pair's cheapest."""
    assert world.run(START).ok
    calls = len(world.emu.scores.calls)
    # from the next run's third call on, every account refuses: most of its queries fail
    world.emu.scores.inject(FaultKind.ACCESS_DENIED, first=calls + 3)
    report = world.run(START + timedelta(days=1, minutes=-60))
    assert report.status is RunStatus.COMMITTED and report.unknown.count > 0
    merged = world.store.latest(FrameKind.MERGED)
    assert merged is not None
    stale = merged[(merged["observed_at"] == START) & merged["zone"].notna()]
    assert len(stale)
    for row in stale.itertuples():
        price = world.emu.catalog.spot.get((row.size, row.zone))
        assert (pd.isna(row.spot_price) and price is None) or row.spot_price == pytest.approx(price)


def test_on_demand_prices_a_region_missed_are_fetched_again_until_the_day_has_them(world: World) -> None:
    with refused(world.emu, "pricing", "GetProducts", "us-east-1"):
        first = world.run(START)
    assert first.status is RunStatus.COMMITTED
    od = first.collector(Source.AWS_ONDEMAND)
    assert od is not None and od.failed >= 1
    docs = StateDocs(world.store.read_state(), "t").aws_ondemand()
    assert docs is not None and docs.missing
    second = world.run(START + timedelta(minutes=10))
    assert second.collector(Source.AWS_ONDEMAND) is not None  # fetched again: a region was missing
    docs = StateDocs(world.store.read_state(), "t").aws_ondemand()
    assert docs is not None and docs.missing == ()
    merged = world.store.latest(FrameKind.MERGED)
    assert merged is not None and merged["ondemand_price"].notna().all()
    third = world.run(START + timedelta(minutes=20))
    assert third.collector(Source.AWS_ONDEMAND) is None  # the day has them all: kept in the state


def test_a_partial_offerings_listing_gives_a_provisional_plan_planned_again_next_run(world: World) -> None:
    with refused(world.emu, "ec2", "DescribeInstanceTypeOfferings", world.region):
        first = world.run(START)
    assert first.status is RunStatus.COMMITTED
    plan = StateDocs(world.store.read_state(), "t").aws_plan()
    assert plan is not None and not plan.complete
    assert world.region not in {r for q in plan.plan.queries for r in q.regions}
    world.run(START + timedelta(minutes=10))
    plan = StateDocs(world.store.read_state(), "t").aws_plan()
    assert plan is not None and plan.complete
    assert world.region in {r for q in plan.plan.queries for r in q.regions}


def test_asking_for_other_instance_types_re_plans_at_once_and_a_typo_is_an_error(world: World) -> None:
    assert world.run(START).ok
    one = sorted(world.emu.catalog.types)[0]
    report = world.run(START + timedelta(minutes=10), AwsCycleOptions(instance_types=[one]))
    plan = StateDocs(world.store.read_state(), "t").aws_plan()
    assert report.ok and plan is not None and {q.instance_type for q in plan.plan.queries} == {one}
    typo = world.run(START + timedelta(minutes=20), AwsCycleOptions(instance_types=["m5.lrage"]))
    assert (
        typo.status is RunStatus.FAILED
        and typo.error_type == "ConfigError"
        and "m5.lrage" in (typo.error or "")
    )


def test_a_region_the_advisor_leaves_out_keeps_its_interruption_rates(world: World) -> None:
    assert world.run(START).ok
    document = spot_advisor_json(world.emu.catalog, world.emu.seed)
    del document["spot_advisor"][world.region]
    later = START + timedelta(days=1, minutes=-60)
    assert (
        world.run(later, advisor=AdvisorServer(document=document).transport()).status is RunStatus.COMMITTED
    )
    changes = world.changes(later)
    in_region = changes[changes["region"] == world.region]
    assert not in_region["changed_fields"].fillna("").str.contains("eviction_bucket|if_score").any()
    merged = world.store.latest(FrameKind.MERGED)
    assert merged is not None and merged.loc[merged["region"] == world.region, "if_score"].notna().all()
