"""SpotAdvisorCollector over httpx with a MockTransport serving the world's advisor document."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
import pytest

from spotlake.clock import FakeClock
from spotlake.collect.aws.advisor import (
    DEFAULT_ADVISOR_URL,
    RANGE_BUCKETS,
    SpotAdvisorCollector,
    advisor_frame,
    bucket_of_label,
)
from spotlake.errors import ConfigError, IncompleteDataError, PayloadError
from spotlake.model import EVICTION_BUCKETS, EVICTION_SCHEMA, Source
from spotlake.testing.aws.catalog import (
    NOW,
    AdvisorServer,
    AwsCatalog,
    advisor_buckets,
    advisor_transport,
    spot_advisor_json,
)

LABELS = ("<5%", "5-10%", "10-15%", "15-20%", ">20%")


@pytest.fixture(scope="module")
def world() -> AwsCatalog:
    return AwsCatalog.generate(5, regions=4, types=10)


def collector(transport: Any, **kw: Any) -> SpotAdvisorCollector:
    kw.setdefault("clock", FakeClock(NOW))
    return SpotAdvisorCollector(transport=transport, **kw)


def buckets(frame: pd.DataFrame) -> dict[tuple[str, str], str]:
    return {(r, s): b for r, s, b, _ in frame.itertuples(index=False, name=None)}


def test_linux_entries_become_eviction_rows(world: AwsCatalog) -> None:
    result = collector(advisor_transport(world, seed=3)).collect()

    frame = result.frame
    assert list(frame.columns) == list(EVICTION_SCHEMA)
    assert [str(t) for t in frame.dtypes] == list(EVICTION_SCHEMA.values())
    assert buckets(frame) == advisor_buckets(world, seed=3)
    assert set(frame["eviction_bucket"]) == set(EVICTION_BUCKETS)  # the world uses every range
    assert all(EVICTION_BUCKETS[b] == s for _, _, b, s in frame.itertuples(index=False, name=None))
    report = result.report
    assert report.source is Source.AWS_ADVISOR
    assert (report.planned, report.succeeded, report.failed, report.requests) == (1, 1, 0, 1)
    assert report.rows == len(frame) and report.notes == ()


@pytest.mark.parametrize("order", [LABELS[::-1], LABELS[2:] + LABELS[:2]], ids=["reversed", "rotated"])
def test_ranges_are_mapped_by_label_not_position(world: AwsCatalog, order: tuple[str, ...]) -> None:
    document = spot_advisor_json(world, seed=3, range_order=order)
    assert [r["label"] for r in document["ranges"]] == list(order)
    frame = collector(AdvisorServer(document=document).transport()).collect().frame
    assert buckets(frame) == advisor_buckets(world, seed=3)


def test_all_five_ranges_by_label() -> None:
    ranges = [{"index": i, "label": label, "dots": i, "max": 0} for i, label in enumerate(LABELS)]
    linux = {f"m5.{n}xlarge": {"s": 60, "r": i} for i, n in enumerate((1, 2, 4, 8, 16))}
    document = {"ranges": ranges, "spot_advisor": {"eu-west-1": {"Linux": linux, "Windows": {"zz.win": {}}}}}
    frame, notes = advisor_frame(document)
    assert list(frame.itertuples(index=False, name=None)) == [
        ("eu-west-1", "m5.16xlarge", "20+", 1.0),
        ("eu-west-1", "m5.1xlarge", "0-5", 3.0),
        ("eu-west-1", "m5.2xlarge", "5-10", 2.5),
        ("eu-west-1", "m5.4xlarge", "10-15", 2.0),
        ("eu-west-1", "m5.8xlarge", "15-20", 1.5),
    ]  # Windows entries are not collected
    assert notes == []
    assert dict(RANGE_BUCKETS) == dict(zip(LABELS, EVICTION_BUCKETS, strict=True))
    assert bucket_of_label(" < 5 % ") == "0-5" and bucket_of_label("<3%") is None


def test_unknown_labels_and_indexes_are_kept_and_noted() -> None:
    ranges = [{"index": 0, "label": "<5%"}, {"index": 7, "label": "25-30%"}]
    linux = {"a1.large": {"s": 1, "r": 0}, "b1.large": {"s": 1, "r": 7}, "c1.large": {"s": 1, "r": 3}}
    document = {
        "ranges": ranges,
        "spot_advisor": {"us-east-1": {"Linux": linux}, "sa-east-1": {"Windows": {}}},
    }
    result = collector(AdvisorServer(document=document).transport()).collect()

    rows = {s: (b, sc) for _, s, b, sc in result.frame.itertuples(index=False, name=None)}
    assert rows["a1.large"] == ("0-5", 3.0)
    assert rows["b1.large"][0] == "25-30%" and math.isnan(rows["b1.large"][1])
    assert pd.isna(rows["c1.large"][0]) and math.isnan(rows["c1.large"][1])
    notes = " | ".join(result.report.notes)
    assert "'25-30%', which is not a known bucket" in notes and "range index 3, which no range has" in notes
    assert "1 region(s) without Linux entries: sa-east-1" in notes
    assert result.report.complete


@pytest.mark.parametrize(
    ("drift", "says"),
    [
        (lambda d: d.pop("spot_advisor"), "'spot_advisor' is missing"),
        (lambda d: d.pop("ranges"), "'ranges' is missing"),
        (lambda d: d.update(ranges=[{"label": "<5%"}]), "ranges[0] lacks an integer 'index'"),
        (lambda d: d["spot_advisor"].update({"us-east-1": ["Linux"]}), "spot_advisor['us-east-1'] is list"),
        (
            lambda d: d.update(ranges=[{"index": 0, "label": "a"}, {"index": 0, "label": "b"}]),
            "index 0 twice",
        ),
    ],
    ids=["no-advisor", "no-ranges", "range-without-index", "region-not-object", "index-twice"],
)
def test_payload_drift_is_a_clear_error(world: AwsCatalog, drift: Any, says: str) -> None:
    document = spot_advisor_json(world)
    drift(document)
    with pytest.raises(PayloadError) as raised:
        collector(AdvisorServer(document=document).transport()).collect()
    assert str(raised.value).startswith("aws_advisor: ") and says in str(raised.value)
    assert raised.value.source == Source.AWS_ADVISOR

    kept = collector(AdvisorServer(document=document).transport(), allow_partial=True).collect()
    report = kept.report
    assert (report.planned, report.succeeded, report.failed) == (1, 0, 1)
    assert says in report.failures[0].reason and kept.frame.empty
    assert list(kept.frame.columns) == list(EVICTION_SCHEMA)


def test_throttling_and_server_errors_are_retried_on_the_clock(world: AwsCatalog) -> None:
    server = AdvisorServer(document=spot_advisor_json(world), statuses=(429, 503))
    clock = FakeClock(NOW)
    result = collector(server.transport(), clock=clock).collect()

    assert buckets(result.frame) == advisor_buckets(world)
    assert (result.report.requests, result.report.retried) == (3, 2) and len(server.requests) == 3
    assert len(clock.slept) == 2 and clock.slept[0] >= 2.0  # the 429's Retry-After is honoured


def test_a_persistent_failure_is_reported(world: AwsCatalog) -> None:
    server = AdvisorServer(document=spot_advisor_json(world), statuses=(503,) * 10)
    result = collector(server.transport(), max_attempts=3, allow_partial=True).collect()
    (failure,) = result.report.failures
    assert failure.status == 503 and failure.attempts == 3 and "Spot Instance Advisor" in failure.what
    assert result.report.planned == result.report.succeeded + result.report.failed

    with pytest.raises(IncompleteDataError, match="aws_advisor: Spot Instance Advisor data incomplete"):
        collector(AdvisorServer(document=b"{not json").transport(), max_attempts=2).collect()


def test_the_url_is_configurable_and_regions_can_be_chosen(world: AwsCatalog) -> None:
    mirror = "https://mirror.example.test/aws/advisor.json"
    server = AdvisorServer(document=spot_advisor_json(world), url=mirror)
    wanted = world.regions[:2]
    result = collector(server.transport(), url=mirror, regions=wanted).collect()

    assert str(server.requests[0].url) == mirror
    assert set(result.frame["region"]) == set(wanted)
    assert buckets(result.frame) == {k: b for k, b in advisor_buckets(world).items() if k[0] in wanted}
    assert SpotAdvisorCollector().url == DEFAULT_ADVISOR_URL
    with pytest.raises(ConfigError, match="http"):
        SpotAdvisorCollector(url="ftp://example.test/advisor.json")
