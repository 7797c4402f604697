"""AwsSpotPriceCollector through real boto3 EC2 clients: moto in process behind them, the world's
zones and prices answered by the botocore handlers of ``spotlake.testing.aws.catalog``."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pandas as pd
import pytest
from moto import mock_aws

from aws_support import offline_aws
from spotlake.clock import FakeClock
from spotlake.collect.aws.spot_prices import AwsSpotPriceCollector, default_clients, spot_price_rows
from spotlake.errors import ConfigError, IncompleteDataError, PayloadError
from spotlake.model import AWS_SPOT_PRICES_SCHEMA, Source
from spotlake.testing.aws.catalog import NOW, SHARED_CATALOG, AwsCatalog, AwsFaults, install_spot_prices

ZONE_ID = re.compile(r"^[a-z]+\d-az\d+$")


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    offline_aws(monkeypatch, tmp_path)


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Offline (:func:`offline`) with moto in process for the module, and one boto3 session, so
    the EC2 model is loaded once (a fresh session per test costs ~0.2 s)."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        offline_aws(monkeypatch, tmp_path_factory.mktemp("aws"))
        with mock_aws():
            yield boto3.session.Session()


@pytest.fixture(scope="module")
def world() -> AwsCatalog:
    return AwsCatalog.generate(7, regions=3, types=8)


def served(
    session: Any, world: AwsCatalog, calls: list[dict[str, Any]] | None = None, **install: Any
) -> Callable[..., Any]:
    """A client factory: real boto3 clients answering from ``world``; ``calls`` records the API
    parameters of every DescribeSpotPriceHistory call."""

    def clients(service: str, region: str) -> Any:
        assert service == "ec2"
        client = session.client(service, region_name=region)
        install_spot_prices(client, world, **install)
        if calls is not None:
            client.meta.events.register(
                "provide-client-params.ec2.DescribeSpotPriceHistory",
                lambda params, **_: calls.append({"region": region, **params}),
            )
        return client

    return clients


def collector(world: AwsCatalog, clients: Callable[..., Any], **kw: Any) -> AwsSpotPriceCollector:
    kw.setdefault("clock", FakeClock(NOW))
    return AwsSpotPriceCollector(regions=world.regions, clients=clients, **kw)


def rows(frame: pd.DataFrame) -> list[tuple[Any, ...]]:
    return [
        (size, region, zone, round(price, 6), at.to_pydatetime())
        for size, region, zone, price, at in frame.itertuples(index=False, name=None)
    ]


def truth(world: AwsCatalog, regions: set[str] | None = None) -> list[tuple[Any, ...]]:
    return sorted(
        (size, region, zone, round(price, 6), at)
        for size, region, zone, price, at in world.spot_rows()
        if regions is None or region in regions
    )


def accounted(report: Any) -> None:
    assert report.planned == report.succeeded + report.failed
    assert report.planned == 3


def test_prices_are_the_worlds_by_zone_id(session: Any, world: AwsCatalog) -> None:
    calls: list[dict[str, Any]] = []
    result = collector(world, served(session, world, calls)).collect()

    frame = result.frame
    assert list(frame.columns) == list(AWS_SPOT_PRICES_SCHEMA)
    assert [str(t) for t in frame.dtypes] == list(AWS_SPOT_PRICES_SCHEMA.values())
    # every third price also has an older record in the answer: the latest is the one kept
    assert sorted(rows(frame)) == truth(world)
    assert frame["zone"].map(lambda z: bool(ZONE_ID.match(z))).all()
    report = result.report
    assert report.source is Source.AWS_SPOT_PRICES
    assert (report.planned, report.succeeded, report.failed) == (3, 3, 0)
    assert report.complete and report.rows == len(world.spot) and report.notes == ()
    assert {c["region"] for c in calls} == set(world.regions)
    assert all(c["ProductDescriptions"] == ["Linux/UNIX"] and c["StartTime"] == NOW for c in calls)


def test_zone_names_differ_per_account_but_rows_do_not(session: Any, world: AwsCatalog) -> None:
    other = AwsCatalog.generate(7, regions=3, types=8, account=1)
    assert other.spot == world.spot
    assert other.zone_names != world.zone_names  # the same zone ID has another name there
    assert any(
        name != f"us-east-1{chr(96 + int(z[-1]))}" for z, name in world.zone_names.items() if "use1" in z
    )

    mine = collector(world, served(session, world)).collect().frame
    theirs = collector(other, served(session, other)).collect().frame
    pd.testing.assert_frame_equal(mine, theirs)


def test_every_page_is_followed(session: Any, world: AwsCatalog) -> None:
    calls: list[dict[str, Any]] = []
    faults = AwsFaults()
    result = collector(
        world, served(session, world, calls, page_size=4, faults=faults), page_size=50
    ).collect()

    assert sorted(rows(result.frame)) == truth(world)
    pages = [(r, p) for op, r, p, _ in faults.log if op == "DescribeSpotPriceHistory"]
    assert max(p for _, p in pages) >= 5  # several pages per region, every one fetched
    tokens = [c for c in calls if "NextToken" in c]
    assert len(tokens) == len(pages) - 3 and all(c["MaxResults"] == 50 for c in calls)
    assert result.report.requests == len(faults.log)  # one zone lookup + the pages, per region


def test_throttling_is_retried_on_the_clock(session: Any, world: AwsCatalog) -> None:
    faults = AwsFaults(throttle_calls={2, 3, 7})
    clock = FakeClock(NOW)
    result = collector(
        world, served(session, world, faults=faults, page_size=10), clock=clock, concurrency=1
    ).collect()

    assert sorted(rows(result.frame)) == truth(world)
    assert result.report.complete and result.report.retried == 3
    assert [outcome for *_, outcome in faults.log].count("RequestLimitExceeded") == 3
    assert len(clock.slept) == 3  # backoff waited on the fake clock, never for real


@pytest.mark.parametrize("code", ["AuthFailure", "OptInRequired", "UnauthorizedOperation"])
def test_a_refused_region_fails_alone(session: Any, world: AwsCatalog, code: str) -> None:
    refused = world.regions[1]
    faults = AwsFaults(denied={refused: code})
    result = collector(world, served(session, world, faults=faults), allow_partial=True).collect()

    report = result.report
    accounted(report)
    assert (report.succeeded, report.failed) == (2, 1)
    (failure,) = report.failures
    assert failure.what.startswith(refused) and code in failure.reason and failure.attempts == 1
    assert ("opt in" if code == "OptInRequired" else "IAM policy") in failure.reason
    assert refused not in set(result.frame["region"])
    assert sorted(rows(result.frame)) == truth(world, set(world.regions) - {refused})

    with pytest.raises(IncompleteDataError) as raised:
        collector(world, served(session, world, faults=AwsFaults(denied={refused: code}))).collect()
    assert refused in str(raised.value) and raised.value.source == Source.AWS_SPOT_PRICES


def test_a_page_failing_after_others_drops_the_whole_region(session: Any, world: AwsCatalog) -> None:
    broken = world.regions[0]
    faults = AwsFaults(failing_pages={broken: 2})
    result = collector(
        world, served(session, world, faults=faults, page_size=3), allow_partial=True, max_attempts=3
    ).collect()

    report = result.report
    accounted(report)
    (failure,) = report.failures
    assert failure.what == f"{broken} DescribeSpotPriceHistory page 2"
    assert (
        "InternalError" in failure.reason and "2 page(s) before it (6 item(s)) were dropped" in failure.reason
    )
    assert failure.attempts == 3  # a 500 is retried, then reported
    # unknown, never gone: none of the region's rows is reported as its data
    assert broken not in set(result.frame["region"])
    assert sorted(rows(result.frame)) == truth(world, set(world.regions) - {broken})


def test_malformed_records_fail_their_region(session: Any, world: AwsCatalog) -> None:
    broken = world.regions[2]
    faults = AwsFaults(malformed={broken: 1})
    result = collector(world, served(session, world, faults=faults), allow_partial=True).collect()

    accounted(result.report)
    (failure,) = result.report.failures
    assert failure.what == f"{broken} DescribeSpotPriceHistory"
    assert "aws_spot_prices" in failure.reason and "lacks a type, zone, price or time" in failure.reason
    assert broken not in set(result.frame["region"])


def test_records_keep_the_latest_price_and_note_unknown_zones() -> None:
    early, late = NOW.replace(hour=1), NOW.replace(hour=5)
    records = [
        {
            "InstanceType": "m5.large",
            "AvailabilityZone": "us-east-1a",
            "SpotPrice": "0.05",
            "Timestamp": late,
        },
        {
            "InstanceType": "m5.large",
            "AvailabilityZone": "us-east-1a",
            "SpotPrice": "0.07",
            "Timestamp": early,
        },
        {
            "InstanceType": "m5.large",
            "AvailabilityZone": "us-east-1z",
            "SpotPrice": "0.04",
            "Timestamp": late,
        },
        {
            "InstanceType": "m5.large",
            "AvailabilityZone": "us-east-1a",
            "ProductDescription": "Windows",
            "SpotPrice": "0.2",
            "Timestamp": late,
        },
    ]
    found, notes = spot_price_rows("us-east-1", records, {"us-east-1a": "use1-az4"})
    assert found == [("m5.large", "us-east-1", "use1-az4", 0.05, late)]
    assert any("us-east-1z" in n for n in notes) and any("another product" in n for n in notes)
    with pytest.raises(PayloadError, match="aws_spot_prices: us-east-1 record 0"):
        spot_price_rows(
            "us-east-1", [{"InstanceType": "m5.large", "SpotPrice": "x"}], {"us-east-1a": "use1-az4"}
        )
    with pytest.raises(PayloadError, match="DescribeAvailabilityZones listed no zones"):
        spot_price_rows("us-east-1", records[:1], {})


def test_default_clients_honour_the_endpoint_configuration(
    aws_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    plain = default_clients("ec2", "eu-west-1")
    assert plain.meta.endpoint_url == "https://ec2.eu-west-1.amazonaws.com"
    assert plain.meta.config.retries["total_max_attempts"] == 1  # our retries, on the clock
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://aws.endpoint.test:4566")
    monkeypatch.setenv("AWS_ENDPOINT_URL_PRICING", "http://pricing.endpoint.test:4566")
    assert default_clients("ec2", "eu-west-1").meta.endpoint_url == "http://aws.endpoint.test:4566"
    assert default_clients("pricing", "us-east-1").meta.endpoint_url == "http://pricing.endpoint.test:4566"


def test_configuration_errors_are_clear() -> None:
    with pytest.raises(ConfigError, match="not an AWS region code"):
        AwsSpotPriceCollector(regions=["eastus"])
    with pytest.raises(ConfigError, match="at least one region"):
        AwsSpotPriceCollector(regions=[])
    with pytest.raises(ConfigError, match="concurrency must be at least 1"):
        AwsSpotPriceCollector(regions=["us-east-1"], concurrency=0)


@pytest.mark.skipif(not SHARED_CATALOG.exists(), reason="the real catalog ../shared/data is not here")
def test_the_real_catalogs_prices(session: Any) -> None:
    real = AwsCatalog.load(
        regions=("us-east-1", "eu-west-1"), types=("m5.large", "c5.xlarge", "p4de.24xlarge", "g5.xlarge")
    )
    assert real.origin == str(SHARED_CATALOG)
    result = AwsSpotPriceCollector(
        regions=real.regions, clients=served(session, real, page_size=7), clock=FakeClock(NOW)
    ).collect()
    assert sorted(rows(result.frame)) == truth(real)
    assert not result.frame.duplicated(["size", "zone"]).any()  # p4de.24xlarge: one row per zone
    m5 = result.frame[(result.frame["size"] == "m5.large") & (result.frame["region"] == "us-east-1")]
    assert len(m5) >= 5 and all(math.isfinite(p) and 0 < p < 0.096 for p in m5["spot_price"])


def test_without_the_catalog_the_world_is_generated(tmp_path: Path) -> None:
    regions = ["us-east-1", "eu-west-1"]
    world = AwsCatalog.default(3, path=tmp_path / "absent.csv", regions=regions)
    assert world.origin == "generated" and world.regions == tuple(regions)
    assert world == AwsCatalog.generate(3, regions=regions)  # a function of the seed only
    assert world.spot != AwsCatalog.generate(4, regions=regions).spot
    offered = set(world.offerings)
    assert set(world.spot) <= offered
    assert {(t, world.region_of(z)) for t, z in offered} == set(world.ondemand)
    assert all(world.spot[k] < world.ondemand[(k[0], world.region_of(k[1]))] for k in world.spot)
    assert all(world.spot_at[k] < NOW for k in world.spot)
    with pytest.raises(ConfigError, match="generated AWS world has the regions"):
        AwsCatalog.generate(0, regions=["mars-north-1"])
