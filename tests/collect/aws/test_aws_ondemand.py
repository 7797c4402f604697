"""AwsOnDemandCollector through a real boto3 Pricing client. moto has no Pricing API (5.x answers
``GetProducts`` with "Not yet implemented"), so the world's products are answered by the botocore
handlers of ``spotlake.testing.aws.catalog`` in the real ``PriceList`` format (JSON strings)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from aws_support import offline_aws
from spotlake.clock import FakeClock
from spotlake.collect.aws.ondemand import AwsOnDemandCollector, NotOnDemand, ondemand_entry
from spotlake.errors import ConfigError, IncompleteDataError, PayloadError
from spotlake.model import AWS_ONDEMAND_SCHEMA, Source
from spotlake.testing.aws.catalog import NOW, AwsCatalog, AwsFaults, install_pricing, price_list_entry


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Offline with moto in process for the module (a call no handler answers stays in the
    process), and one boto3 session so the Pricing model is loaded once."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        offline_aws(monkeypatch, tmp_path_factory.mktemp("aws"))
        with mock_aws():
            yield boto3.session.Session()


@pytest.fixture(scope="module")
def world() -> AwsCatalog:
    return AwsCatalog.generate(11, regions=3, types=10)


def served(
    session: Any, world: AwsCatalog, calls: list[tuple[str, dict[str, Any]]] | None = None, **install: Any
) -> Callable[..., Any]:
    """A client factory: a real Pricing client answering from ``world``; ``calls`` records the
    client's region and the API parameters of every call."""

    def clients(service: str, region: str) -> Any:
        assert service == "pricing"
        client = session.client(service, region_name=region)
        install_pricing(client, world, **install)
        if calls is not None:
            client.meta.events.register(
                "provide-client-params.pricing.GetProducts",
                lambda params, **_: calls.append((region, dict(params))),
            )
        return client

    return clients


def collector(world: AwsCatalog, clients: Callable[..., Any], **kw: Any) -> AwsOnDemandCollector:
    kw.setdefault("clock", FakeClock(NOW))
    return AwsOnDemandCollector(regions=world.regions, clients=clients, **kw)


def rows(frame: Any) -> list[tuple[str, str, float]]:
    return sorted((s, r, round(p, 6)) for s, r, p in frame.itertuples(index=False, name=None))


def truth(world: AwsCatalog, regions: set[str] | None = None) -> list[tuple[str, str, float]]:
    return sorted((s, r, round(p, 6)) for s, r, p in world.ondemand_rows() if regions is None or r in regions)


def test_prices_are_the_worlds_on_every_page(session: Any, world: AwsCatalog) -> None:
    calls: list[tuple[str, dict[str, Any]]] = []
    result = collector(world, served(session, world, calls, page_size=3), page_size=100).collect()

    assert list(result.frame.columns) == list(AWS_ONDEMAND_SCHEMA)
    assert [str(t) for t in result.frame.dtypes] == list(AWS_ONDEMAND_SCHEMA.values())
    assert rows(result.frame) == truth(world)  # the reserved terms of each product are ignored
    report = result.report
    assert report.source is Source.AWS_ONDEMAND
    assert (report.planned, report.succeeded, report.failed) == (3, 3, 0)
    assert report.requests == len(calls) > 3 * 3  # pages of 3 entries, all fetched
    # one Pricing client, in us-east-1, asked per region for Linux / shared / no software / used
    assert {region for region, _ in calls} == {"us-east-1"}
    for _, params in calls:
        assert params["ServiceCode"] == "AmazonEC2" and params["FormatVersion"] == "aws_v1"
        filters = {f["Field"]: f["Value"] for f in params["Filters"] if f["Type"] == "TERM_MATCH"}
        assert {
            k: filters[k] for k in ("operatingSystem", "tenancy", "preInstalledSw", "capacitystatus")
        } == {
            "operatingSystem": "Linux",
            "tenancy": "Shared",
            "preInstalledSw": "NA",
            "capacitystatus": "Used",
        }
    assert {p["Filters"][-1]["Value"] for _, p in calls} == set(world.regions)


def test_throttling_is_retried_on_the_clock(session: Any, world: AwsCatalog) -> None:
    faults = AwsFaults(throttle_calls={1, 4})
    clock = FakeClock(NOW)
    result = collector(world, served(session, world, faults=faults, page_size=4), clock=clock).collect()

    assert rows(result.frame) == truth(world)
    assert result.report.retried == 2 and len(clock.slept) == 2
    assert [o for *_, o in faults.log].count("ThrottlingException") == 2


def test_access_denied_fails_the_region_only(session: Any, world: AwsCatalog) -> None:
    denied = world.regions[0]
    faults = AwsFaults(denied={denied: "AccessDeniedException"})
    result = collector(world, served(session, world, faults=faults), allow_partial=True).collect()

    report = result.report
    assert report.planned == report.succeeded + report.failed == 3
    (failure,) = report.failures
    assert failure.what == f"{denied} GetProducts page 0" and failure.attempts == 1
    assert "AccessDeniedException" in failure.reason and "pricing:GetProducts" in failure.reason
    assert rows(result.frame) == truth(world, set(world.regions) - {denied})


def test_a_failing_page_drops_the_regions_earlier_pages(session: Any, world: AwsCatalog) -> None:
    broken = world.regions[1]
    faults = AwsFaults(failing_pages={broken: 1})
    result = collector(
        world, served(session, world, faults=faults, page_size=2), allow_partial=True, max_attempts=2
    ).collect()

    (failure,) = result.report.failures
    assert failure.what == f"{broken} GetProducts page 1" and failure.attempts == 2
    assert "were dropped" in failure.reason
    assert broken not in set(result.frame["region"])
    assert rows(result.frame) == truth(world, set(world.regions) - {broken})
    with pytest.raises(IncompleteDataError, match=f"{broken} GetProducts page 1"):
        collector(
            world, served(session, world, faults=AwsFaults(failing_pages={broken: 1}), page_size=2)
        ).collect()


def test_malformed_entries_are_accounted_not_a_crash(session: Any, world: AwsCatalog) -> None:
    broken = world.regions[2]
    faults = AwsFaults(malformed={broken: 2})
    result = collector(world, served(session, world, faults=faults), allow_partial=True).collect()

    report = result.report
    assert report.planned == report.succeeded + report.failed == 3
    (failure,) = report.failures
    assert failure.what == f"{broken} GetProducts"
    assert "aws_ondemand" in failure.reason and "2 of" in failure.reason and "not JSON" in failure.reason
    assert "dropped" in failure.reason and broken not in set(result.frame["region"])


def test_price_list_entries_are_read_strictly(world: AwsCatalog) -> None:
    size, region, price = world.ondemand_rows()[0]
    entry = price_list_entry(world, size, region, price)
    assert ondemand_entry(entry, region) == (size, pytest.approx(price))
    assert ondemand_entry(json.loads(entry), region)[0] == size  # an already parsed entry

    doc = json.loads(entry)
    with pytest.raises(PayloadError, match=f"is for region {region!r}, not the 'xx-nowhere-1'"):
        ondemand_entry(entry, "xx-nowhere-1")
    no_ondemand = {**doc, "terms": {"Reserved": doc["terms"]["Reserved"]}}
    with pytest.raises(NotOnDemand):
        ondemand_entry(json.dumps(no_ondemand), region)
    (term,) = doc["terms"]["OnDemand"].values()
    (dimension,) = term["priceDimensions"].values()
    term["priceDimensions"]["second"] = {**dimension, "pricePerUnit": {"USD": "9.99"}}
    with pytest.raises(PayloadError, match="2 different on-demand prices"):
        ondemand_entry(json.dumps(doc), region)
    dimension["pricePerUnit"] = {"EUR": "1.0"}
    with pytest.raises(PayloadError, match="not a USD amount"):
        ondemand_entry(json.dumps(doc), region)
    with pytest.raises(PayloadError, match=r"no product\.attributes\.instanceType"):
        ondemand_entry(json.dumps({"product": {"attributes": {}}}), region)


def test_configuration_errors_are_clear() -> None:
    with pytest.raises(ConfigError, match="page_size is at most 100"):
        AwsOnDemandCollector(regions=["us-east-1"], page_size=500)
    with pytest.raises(ConfigError, match="not an AWS region code"):
        AwsOnDemandCollector(regions=["US East"])
