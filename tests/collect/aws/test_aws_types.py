"""AwsInstanceTypeCollector through real boto3 EC2 clients: on moto's own offerings and type data
(moto implements both calls, unpaged), and on the world's, paged, with faults."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pandas as pd
import pytest
from moto import mock_aws

from aws_support import offline_aws
from spotlake.clock import FakeClock
from spotlake.collect.aws.types import AwsInstanceTypeCollector, type_rows
from spotlake.errors import ConfigError, PayloadError
from spotlake.model import AWS_TYPES_SCHEMA, Source
from spotlake.testing.aws.catalog import NOW, AwsCatalog, AwsFaults, install_instance_types

#: A region with few of moto's offerings (841 in 3 zones, 295 types), so the moto test is quick.
MOTO_REGION = "me-central-1"


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Offline with moto in process for the module, and one boto3 session (the EC2 model loads once)."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        offline_aws(monkeypatch, tmp_path_factory.mktemp("aws"))
        with mock_aws():
            yield boto3.session.Session()


@pytest.fixture(scope="module")
def world() -> AwsCatalog:
    return AwsCatalog.generate(3, regions=3, types=9)


def served(session: Any, world: AwsCatalog | None, **install: Any) -> Callable[..., Any]:
    """A client factory: real EC2 clients, answering from ``world`` (else moto answers)."""

    def clients(service: str, region: str) -> Any:
        client = session.client(service, region_name=region)
        if world is not None:
            install_instance_types(client, world, **install)
        return client

    return clients


def collector(world: AwsCatalog, clients: Callable[..., Any], **kw: Any) -> AwsInstanceTypeCollector:
    kw.setdefault("clock", FakeClock(NOW))
    return AwsInstanceTypeCollector(regions=world.regions, clients=clients, **kw)


def truth(world: AwsCatalog, regions: set[str] | None = None) -> list[tuple[Any, ...]]:
    out = []
    for size, zone in world.offerings:
        kind, region = world.types[size], world.region_of(zone)
        if regions is None or region in regions:
            out.append((size, region, zone, kind.family, kind.vcpus, kind.memory_gib))
    return sorted(out)


def rows(frame: pd.DataFrame) -> list[tuple[Any, ...]]:
    return sorted(frame.itertuples(index=False, name=None))


def test_moto_offerings_by_zone_id(session: Any) -> None:
    ec2 = session.client("ec2", region_name=MOTO_REGION)
    offered = ec2.describe_instance_type_offerings(LocationType="availability-zone-id")[
        "InstanceTypeOfferings"
    ]
    result = AwsInstanceTypeCollector(
        regions=[MOTO_REGION], clients=served(session, None), clock=FakeClock(NOW)
    ).collect()

    frame = result.frame
    assert list(frame.columns) == list(AWS_TYPES_SCHEMA)
    assert [str(t) for t in frame.dtypes] == list(AWS_TYPES_SCHEMA.values())
    assert len(frame) == len({(o["InstanceType"], o["Location"]) for o in offered})
    assert set(frame["zone"]) <= {"mec1-az1", "mec1-az2", "mec1-az3"}
    m5 = frame[frame["size"] == "m5.large"].iloc[0]
    assert (m5["family"], m5["vcpus"], m5["memory_gib"]) == ("m5", 2, 8.0)
    assert (frame["family"] == frame["size"].str.split(".").str[0]).all()
    assert frame["vcpus"].notna().all() and frame["memory_gib"].notna().all()
    report = result.report
    assert report.source is Source.AWS_TYPES and report.complete and report.notes == ()
    assert report.requests == 1 + math.ceil(frame["size"].nunique() / 100)  # types named 100 a call


def test_world_types_on_every_page(session: Any, world: AwsCatalog) -> None:
    faults = AwsFaults()
    result = collector(
        world, served(session, world, faults=faults, page_size=4), offerings_page_size=50, types_page_size=3
    ).collect()

    assert rows(result.frame) == truth(world)
    report = result.report
    assert (report.planned, report.succeeded, report.failed) == (3, 3, 0)
    assert report.requests == len(faults.log) > 3 * 5
    assert any(op == "DescribeInstanceTypeOfferings" and page > 0 for op, _, page, _ in faults.log)


def test_throttling_is_retried_on_the_clock(session: Any, world: AwsCatalog) -> None:
    faults = AwsFaults(throttle_calls={1, 2, 5})
    clock = FakeClock(NOW)
    result = collector(world, served(session, world, faults=faults), clock=clock, concurrency=1).collect()

    assert rows(result.frame) == truth(world) and result.report.complete
    assert result.report.retried == 3 and len(clock.slept) == 3


@pytest.mark.parametrize("code", ["UnauthorizedOperation", "OptInRequired"])
def test_a_refused_region_fails_alone(session: Any, world: AwsCatalog, code: str) -> None:
    refused = world.regions[2]
    faults = AwsFaults(denied={refused: code})
    result = collector(world, served(session, world, faults=faults), allow_partial=True).collect()

    report = result.report
    assert report.planned == report.succeeded + report.failed == 3
    (failure,) = report.failures
    assert failure.what == f"{refused} DescribeInstanceTypeOfferings page 0" and code in failure.reason
    assert rows(result.frame) == truth(world, set(world.regions) - {refused})


def test_a_failing_types_page_drops_the_region(session: Any, world: AwsCatalog) -> None:
    broken = world.regions[0]
    faults = AwsFaults(failing_pages={broken: 1})
    result = collector(
        world,
        served(session, world, faults=faults, page_size=2),
        offerings_page_size=1000,
        allow_partial=True,
        max_attempts=2,
    ).collect()

    (failure,) = result.report.failures
    assert failure.what.startswith(f"{broken} DescribeInstanceTypeOfferings page 1")
    assert failure.attempts == 2 and "were dropped" in failure.reason
    assert broken not in set(result.frame["region"])
    assert rows(result.frame) == truth(world, set(world.regions) - {broken})


def test_malformed_offerings_fail_their_region(session: Any, world: AwsCatalog) -> None:
    broken = world.regions[1]
    faults = AwsFaults(malformed={broken: 1})
    result = collector(world, served(session, world, faults=faults), allow_partial=True).collect()

    (failure,) = result.report.failures
    assert failure.what == f"{broken} DescribeInstanceTypes"
    assert "aws_types" in failure.reason and "has no InstanceType or Location" in failure.reason
    assert broken not in set(result.frame["region"])


def test_types_without_a_description_keep_their_rows() -> None:
    offerings = [
        {"InstanceType": "m5.large", "Location": "use1-az1"},
        {"InstanceType": "m5.large", "Location": "use1-az1"},
        {"InstanceType": "x9.huge", "Location": "use1-az2"},
        {"InstanceType": "c5.large", "Location": "use1-az2"},
    ]
    types = [
        {"InstanceType": "m5.large", "VCpuInfo": {"DefaultVCpus": 2}, "MemoryInfo": {"SizeInMiB": 8192}},
        {"InstanceType": "c5.large"},
    ]
    found, notes = type_rows("us-east-1", offerings, types)
    assert sorted(found, key=lambda r: r[0]) == [
        ("c5.large", "us-east-1", "use1-az2", "c5", None, None),
        ("m5.large", "us-east-1", "use1-az1", "m5", 2, 8.0),
        ("x9.huge", "us-east-1", "use1-az2", "x9", None, None),
    ]
    assert any("x9.huge" in n and "not described" in n for n in notes)
    assert any("c5.large" in n and "without vCPUs or memory" in n for n in notes)
    with pytest.raises(PayloadError, match="aws_types: us-east-1 instance type 0 has no InstanceType"):
        type_rows("us-east-1", [], [{"VCpuInfo": {}}])


def test_configuration_errors_are_clear() -> None:
    with pytest.raises(ConfigError, match="types_page_size is at most 100"):
        AwsInstanceTypeCollector(regions=["us-east-1"], types_page_size=101)
    with pytest.raises(ConfigError, match="max_attempts must be at least 1"):
        AwsInstanceTypeCollector(regions=["us-east-1"], max_attempts=0)
