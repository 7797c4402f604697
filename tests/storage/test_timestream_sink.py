"""The Timestream sink: record layout, batching, idempotent versions, retries of rejected records, errors."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pandas as pd
import pytest
from botocore.stub import ANY, Stubber
from storage_samples import RUN_AT, changes_frame

from spotlake.clock import FakeClock
from spotlake.errors import ConfigError, SinkError
from spotlake.storage.base import TimeSeriesSink
from spotlake.storage.timestream import REGIONAL_ZONE, TimestreamSink, build_records, run_version


@pytest.fixture
def tsw(aws_env: None) -> Iterator[Any]:
    import boto3
    from moto import mock_aws

    with mock_aws():
        client = boto3.client("timestream-write", region_name="us-east-1")
        client.create_database(DatabaseName="spotlake")
        client.create_table(DatabaseName="spotlake", TableName="azure")
        yield client


def moto_records() -> list[dict[str, Any]]:
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.timestreamwrite.models import timestreamwrite_backends

    table = timestreamwrite_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].databases["spotlake"].tables["azure"]
    return list(table.records)


def dims(record: dict[str, Any]) -> dict[str, str]:
    return {d["Name"]: d["Value"] for d in record["Dimensions"]}


def measures(record: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {m["Name"]: (m["Value"], m["Type"]) for m in record["MeasureValues"]}


def test_spotlake_layout_records() -> None:
    changes = changes_frame(7)
    records = build_records(changes)
    assert len(records) == 7
    first = records[0]  # zone <NA>, score High, ondemand NaN (i % 5 == 0)
    assert dims(first) == {
        "tier": "Standard",
        "size": "Standard_D0s_v5",
        "region": "eastus",
        "zone": REGIONAL_ZONE,
        "desired_count": "5",
    }
    m = measures(first)
    assert "ondemand_price" not in m  # NaN is omitted, never sent
    assert "family" not in m  # <NA> too
    assert m["spot_price"] == ("0.01", "DOUBLE")
    assert m["score"] == ("High", "VARCHAR") and m["score_value"] == ("3", "BIGINT")
    assert m["t2"] == ("5", "BIGINT") and m["quota_available"] == ("true", "BOOLEAN")
    assert m["ceased"] == ("false", "BOOLEAN") and m["change"] == ("new", "VARCHAR")
    assert measures(records[2])["ceased"] == ("true", "BOOLEAN")
    assert dims(records[6])["desired_count"] == "none"  # a price without a score
    for record in records:
        assert all(v["Value"] not in ("nan", "<NA>", "None") for v in record["MeasureValues"])


def test_expired_rows_are_marked_as_no_longer_current() -> None:
    """Before: an expired key was written with ceased=false, so a reader going by it kept the key."""
    changes = changes_frame(3)
    changes.loc[0, "change"] = "expired"
    records = build_records(changes)
    assert measures(records[0])["ceased"] == ("true", "BOOLEAN")
    assert measures(records[0])["change"] == ("expired", "VARCHAR")
    assert len(build_records(changes, layout="original")) == 1  # neither ceased nor expired rows


def test_original_layout_records_follow_the_original_table() -> None:
    changes = changes_frame(6)
    records = build_records(changes, layout="original")
    assert len(records) == 4  # the two ceased rows are not written in this layout
    assert dims(records[0]) == {
        "InstanceTier": "Standard",
        "InstanceType": "D0s_v5",
        "Region": "East US",
        "AvailabilityZone": "N/A",
    }
    m = measures(records[0])
    assert m["DesiredCount"] == ("5.0", "DOUBLE") and m["Score"] == ("High", "VARCHAR")
    assert m["T2"] == ("5.0", "DOUBLE") and m["T3"] == ("5.0", "DOUBLE")
    assert set(m) <= {"DesiredCount", "OndemandPrice", "SpotPrice", "IF", "T2", "T3", "Score"}


def test_aws_layout_records_follow_the_original_aws_table() -> None:
    changes = changes_frame(6)
    changes["size"] = "m5.large"
    changes["region"] = "us-east-1"
    changes["zone"] = ["use1-az1", None, "use1-az2", "use1-az4", "use1-az5", "use1-az6"]
    changes["score_value"] = changes["score_value"].astype("Int8").fillna(7)
    records = build_records(changes, layout="aws")
    assert len(records) == 5  # the row without a zone is not written, as the original dropped it
    first = records[0]
    assert dims(first) == {
        "InstanceType": "m5.large",
        "Region": "us-east-1",
        "AZ": "use1-az1",
        "OndemandPrice": "-1",
    }
    assert set(measures(first)) <= {"SPS", "T3", "T2", "IF", "SpotPrice"} and "SPS" in measures(first)
    assert measures(first)["SPS"][1] == "BIGINT"
    ceased = records[1]  # changes_frame: every third row is ceased
    assert dims(ceased)["Ceased"] == "True" and dims(ceased)["AZ"] == "use1-az2"
    assert {name: value for name, (value, _) in measures(ceased).items()} == {
        "SPS": "0",
        "T3": "0",
        "T2": "0",
        "IF": "0.0",
        "SpotPrice": "0.0",
    }
    assert all("Ceased" not in dims(r) for r in (records[0], records[2]))


def test_bad_layout_or_frame_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="layout"):
        build_records(changes_frame(1), layout="csv")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="lacks columns"):
        build_records(changes_frame(1).drop(columns=["change"]))


def test_writes_in_calls_of_at_most_100_records(tsw: Any) -> None:
    sink = TimestreamSink(client=tsw, clock=FakeClock())
    assert isinstance(sink, TimeSeriesSink)
    calls: list[int] = []
    tsw.meta.events.register(
        "provide-client-params.timestream-write.WriteRecords",
        lambda params, **_: calls.append(len(params["Records"])),
    )
    report = sink.write(changes_frame(250), run_at=RUN_AT)
    assert (report.records, report.calls, report.rejected, report.retried) == (250, 3, 0, 0)
    assert calls == [100, 100, 50]
    assert len(moto_records()) == 250


def test_same_run_twice_uses_the_same_time_and_version(tsw: Any) -> None:
    sink = TimestreamSink(client=tsw, clock=FakeClock())
    sent: list[dict[str, Any]] = []
    tsw.meta.events.register(
        "provide-client-params.timestream-write.WriteRecords",
        lambda params, **_: sent.append(params["CommonAttributes"]),
    )
    sink.write(changes_frame(3), run_at=RUN_AT)
    sink.write(changes_frame(3), run_at=RUN_AT.replace(second=7))  # another run: another version
    sink.write(changes_frame(3), run_at=RUN_AT)
    assert sent[0] == sent[2]
    assert sent[0]["Version"] == run_version(RUN_AT) == int(RUN_AT.timestamp() * 1000)
    assert sent[0]["Time"] == str(run_version(RUN_AT)) and sent[0]["TimeUnit"] == "MILLISECONDS"
    assert sent[0]["MeasureName"] == "spot" and sent[0]["MeasureValueType"] == "MULTI"
    assert sent[1]["Version"] == sent[0]["Version"] + 7000


def test_empty_changeset_makes_no_call(tsw: Any) -> None:
    report = TimestreamSink(client=tsw).write(changes_frame(0), run_at=RUN_AT)
    assert (report.records, report.calls) == (0, 0)


def _stubbed(**kwargs: Any) -> tuple[TimestreamSink, Stubber, FakeClock]:
    import boto3

    client = boto3.client("timestream-write", region_name="us-east-1", endpoint_url="https://ingest.example")
    clock = FakeClock()
    return TimestreamSink(client=client, clock=clock, **kwargs), Stubber(client), clock


def _rejected(*items: dict[str, Any]) -> dict[str, Any]:
    return {"RejectedRecords": list(items)}


def test_only_rejected_records_are_retried(aws_env: None) -> None:
    sink, stub, clock = _stubbed()
    changes = changes_frame(5)
    records = build_records(changes)
    base = {"DatabaseName": "spotlake", "TableName": "azure", "CommonAttributes": ANY}
    stub.add_client_error(
        "write_records",
        service_error_code="RejectedRecordsException",
        http_status_code=419,
        expected_params={**base, "Records": records},
        response_meta=None,
        modeled_fields=_rejected(
            {"RecordIndex": 1, "Reason": "throttled partition"}, {"RecordIndex": 3, "Reason": "again"}
        ),
    )
    stub.add_client_error(
        "write_records",
        service_error_code="RejectedRecordsException",
        http_status_code=419,
        expected_params={**base, "Records": [records[1], records[3]]},
        modeled_fields=_rejected({"RecordIndex": 0, "Reason": "still"}),
    )
    stub.add_response(
        "write_records", {"RecordsIngested": {"Total": 1}}, expected_params={**base, "Records": [records[1]]}
    )
    with stub:
        report = sink.write(changes, run_at=RUN_AT)
    stub.assert_no_pending_responses()
    assert (report.records, report.calls, report.retried, report.rejected) == (5, 3, 3, 0)
    assert clock.slept == [0.5, 1.0]


def test_retries_are_bounded_then_a_sink_error(aws_env: None) -> None:
    sink, stub, _ = _stubbed(max_attempts=2)
    changes = changes_frame(2)
    for _ in range(2):
        stub.add_client_error(
            "write_records",
            service_error_code="RejectedRecordsException",
            http_status_code=419,
            modeled_fields=_rejected({"RecordIndex": 0, "Reason": "Measure value out of range"}),
        )
    with stub, pytest.raises(SinkError, match=r"rejected 1 of 2 record\(s\).*out of range"):
        sink.write(changes, run_at=RUN_AT)
    stub.assert_no_pending_responses()


def test_existing_newer_version_is_not_retried(aws_env: None) -> None:
    sink, stub, clock = _stubbed(tolerate_rejections=True)
    version = run_version(RUN_AT)
    stub.add_client_error(
        "write_records",
        service_error_code="RejectedRecordsException",
        http_status_code=419,
        modeled_fields=_rejected(
            {"RecordIndex": 0, "Reason": "version conflict", "ExistingVersion": version + 1}
        ),
    )
    with stub:
        report = sink.write(changes_frame(2), run_at=RUN_AT)
    stub.assert_no_pending_responses()
    assert (report.records, report.calls, report.rejected, report.retried) == (1, 1, 1, 0)
    assert clock.slept == []


@pytest.mark.parametrize(
    ("code", "message", "expected"),
    [
        ("AccessDeniedException", "User is not authorized", r"timestream:WriteRecords"),
        (
            "AccessDeniedException",
            "Only existing Timestream for LiveAnalytics customers can access the service",
            r"cannot use Timestream for LiveAnalytics .* closed to\s+new customers",
        ),
        ("ResourceNotFoundException", "The table azure does not exist", r"create-database"),
        ("ValidationException", "bad dimension", r"invalid: bad dimension"),
    ],
)
def test_service_errors_become_clear_sink_errors(
    aws_env: None, code: str, message: str, expected: str
) -> None:
    sink, stub, _ = _stubbed()
    stub.add_client_error(
        "write_records", service_error_code=code, service_message=message, http_status_code=400
    )
    with stub, pytest.raises(SinkError, match=expected):
        sink.write(changes_frame(1), run_at=RUN_AT)


def test_max_attempts_must_be_positive(tsw: Any) -> None:
    with pytest.raises(ConfigError):
        TimestreamSink(client=tsw, max_attempts=0)
    assert run_version(RUN_AT + timedelta(milliseconds=1)) == run_version(RUN_AT) + 1
    assert isinstance(changes_frame(1), pd.DataFrame)
