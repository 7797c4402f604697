"""The CloudWatch sink against moto: group/stream creation, the run's log event, its metrics."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.stub import Stubber

from spotlake.clock import FakeClock
from spotlake.errors import ConfigError, SinkError
from spotlake.storage.base import MetricsSink
from spotlake.storage.cloudwatch import CloudWatchSink

COUNTS = {"collected": 1200, "merged": 1180, "changed": 37, "ceased": 2, "failed_calls": 1}


@pytest.fixture
def clients(aws_env: None) -> Iterator[tuple[Any, Any]]:
    import boto3
    from moto import mock_aws

    with mock_aws():
        yield (
            boto3.client("logs", region_name="us-east-1"),
            boto3.client("cloudwatch", region_name="us-east-1"),
        )


def now() -> datetime:
    # CloudWatch (and moto) refuse events older than 14 days: use the real time for the run.
    return datetime.now(UTC).replace(microsecond=0)


def sink(clients: tuple[Any, Any], clock: FakeClock, **kwargs: Any) -> CloudWatchSink:
    logs, metrics = clients
    return CloudWatchSink(
        logs_client=logs,
        metrics_client=metrics,
        log_group="spotlake-test",
        log_stream="azure",
        namespace="SpotlakeTest",
        dimensions={"Store": "test"},
        clock=clock,
        **kwargs,
    )


def test_creates_group_and_stream_then_writes_the_event_and_metrics(clients: tuple[Any, Any]) -> None:
    logs, metrics = clients
    run_at = now()
    cw = sink(clients, FakeClock(run_at + timedelta(minutes=3)))
    assert isinstance(cw, MetricsSink)
    report = cw.write_run(COUNTS, run_at=run_at)
    assert report.records == 1 + len(COUNTS)
    assert report.calls == 2 + 2 + 1  # failed put, create group+stream, put again, one PutMetricData
    events = logs.get_log_events(logGroupName="spotlake-test", logStreamName="azure")["events"]
    assert len(events) == 1 and events[0]["timestamp"] == int(run_at.timestamp() * 1000)
    body = json.loads(events[0]["message"])
    assert body == {"event": "spotlake.run", "run_at": run_at.isoformat(), "counts": COUNTS}
    listed = metrics.list_metrics(Namespace="SpotlakeTest")["Metrics"]
    assert sorted(m["MetricName"] for m in listed) == sorted(COUNTS)
    assert all(m["Dimensions"] == [{"Name": "Store", "Value": "test"}] for m in listed)
    stats = metrics.get_metric_statistics(
        Namespace="SpotlakeTest",
        MetricName="changed",
        Dimensions=[{"Name": "Store", "Value": "test"}],
        StartTime=run_at - timedelta(minutes=5),
        EndTime=run_at + timedelta(minutes=5),
        Period=60,
        Statistics=["Sum"],
    )["Datapoints"]
    assert [d["Sum"] for d in stats] == [37.0]


def test_second_run_reuses_the_stream(clients: tuple[Any, Any]) -> None:
    logs, _ = clients
    run_at = now()
    cw = sink(clients, FakeClock(run_at), metrics=False)
    cw.write_run(COUNTS, run_at=run_at - timedelta(minutes=10))
    report = cw.write_run(COUNTS, run_at=run_at)
    assert (report.calls, report.records) == (1, 1)
    events = logs.get_log_events(logGroupName="spotlake-test", logStreamName="azure")["events"]
    assert len(events) == 2


def test_runs_older_than_14_days_are_stamped_now(clients: tuple[Any, Any]) -> None:
    logs, _ = clients
    clock_now = now()
    old_run = clock_now - timedelta(days=20)
    sink(clients, FakeClock(clock_now), metrics=False).write_run(COUNTS, run_at=old_run)
    event = logs.get_log_events(logGroupName="spotlake-test", logStreamName="azure")["events"][0]
    assert event["timestamp"] == int(clock_now.timestamp() * 1000)
    assert json.loads(event["message"])["run_at"] == old_run.isoformat()


def test_counts_must_be_finite_numbers(clients: tuple[Any, Any]) -> None:
    cw = sink(clients, FakeClock(now()))
    for bad in ({"x": float("nan")}, {"x": "12"}, {"x": True}):
        with pytest.raises(ConfigError, match="finite number"):
            cw.write_run(bad, run_at=now())  # type: ignore[arg-type]


def test_access_denied_is_a_clear_sink_error(aws_env: None) -> None:
    import boto3

    logs = boto3.client("logs", region_name="us-east-1")
    cw = CloudWatchSink(logs_client=logs, metrics=False, clock=FakeClock(now()))
    with Stubber(logs) as stub:
        stub.add_client_error(
            "put_log_events", service_error_code="AccessDeniedException", http_status_code=400
        )
        with pytest.raises(SinkError, match="logs:PutLogEvents"):
            cw.write_run(COUNTS, run_at=now())
