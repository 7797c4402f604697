"""Emulator -> pipeline -> S3 store + Timestream + CloudWatch (+ the original's S3 layout), on moto.

Shows: the same layout on S3 from an empty bucket, only changes go to Timestream (the original
wrote every row), a rerun of the same run time writes records with the same versions (idempotent),
and overlapping runs on one S3 prefix commit once.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from pipeline_support import emulator, in_process_access, run_time
from spotlake.errors import LockedError, SinkError
from spotlake.pipeline import RunStatus, run_cycle
from spotlake.storage import ObjectStore, open_store
from spotlake.storage.cloudwatch import CloudWatchSink
from spotlake.storage.compat import CompatWriter
from spotlake.storage.s3 import S3Backend
from spotlake.storage.timestream import TimestreamSink
from spotlake.testing.backends import FaultyBackend

REGION = "us-east-1"


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.setenv(var, "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket="lake")
        s3.create_bucket(Bucket="web")
        ts = boto3.client("timestream-write", region_name=REGION)
        ts.create_database(DatabaseName="spotlake")
        ts.create_table(DatabaseName="spotlake", TableName="azure")
        yield {
            "s3": s3,
            "timestream": ts,
            "logs": boto3.client("logs", region_name=REGION),
            "cloudwatch": boto3.client("cloudwatch", region_name=REGION),
        }


class RecordingTimestream:
    """Passes calls to the moto client and keeps every WriteRecords request."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls: list[dict[str, Any]] = []

    def write_records(self, **kwargs: Any) -> Any:
        self.calls.append(kwargs)
        return self.inner.write_records(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    @property
    def records(self) -> list[dict[str, Any]]:
        """Every record sent, with the call's CommonAttributes folded in (as Timestream does)."""
        return [{**call.get("CommonAttributes", {}), **r} for call in self.calls for r in call["Records"]]


def test_s3_timestream_cloudwatch_end_to_end(aws: dict[str, Any]) -> None:
    emu = emulator()
    store = open_store("s3://lake/spotlake", s3_client=aws["s3"])
    recording = RecordingTimestream(aws["timestream"])
    timestream = TimestreamSink(client=recording)
    cloudwatch = CloudWatchSink(
        logs_client=aws["logs"], metrics_client=aws["cloudwatch"], log_group="/spotlake/test"
    )
    compat = CompatWriter(client=aws["s3"], bucket="web")
    reports = []
    for i in range(2):
        at = run_time(i)
        emu.clock.set(at)  # type: ignore[attr-defined]
        report = run_cycle(
            at,
            store=store,
            azure=in_process_access(emu),
            timeseries=timestream,
            metrics=cloudwatch,
            extra_writers=[compat],
            clock=emu.clock,
        )
        assert report.status is RunStatus.COMMITTED, report.error
        assert report.delivery_error is None and report.undelivered == ()
        reports.append(report)

    keys = {o["Key"] for o in aws["s3"].list_objects_v2(Bucket="lake")["Contents"]}
    for part in ("raw/source=prices/", "raw/source=sps/", "merged/", "changes/", "state/"):
        assert any(part in k for k in keys), (part, sorted(keys)[:10])

    # Only the changes reach Timestream, at most 100 records per call.
    written = sum(r.scoring.changes_rows for r in reports if r.scoring)
    assert len(recording.records) == written
    assert all(len(call["Records"]) <= 100 for call in recording.calls)
    snapshot_rows = sum(r.scoring.snapshot_rows for r in reports if r.scoring)
    assert written <= snapshot_rows

    # CloudWatch got one log event per run, and metrics.
    events = aws["logs"].filter_log_events(logGroupName="/spotlake/test")["events"]
    assert len(events) == 2
    metrics = aws["cloudwatch"].list_metrics()["Metrics"]
    assert {m["MetricName"] for m in metrics} >= {"new", "changed", "ceased"}

    # The original deployment's public files are there too.
    web = {o["Key"] for o in aws["s3"].list_objects_v2(Bucket="web")["Contents"]}
    assert "latest_data/latest_azure.json" in web
    assert "query-selector/azure/query_selector.json" in web


def test_only_committed_runs_are_published_and_a_missed_delivery_is_made_good(aws: dict[str, Any]) -> None:
    """Sinks are fed after the commit: a run that fails before committing publishes nothing (its
    frames never leave the stage); a sink outage after the commit is delivered again by the next
    run, with the same records and versions."""
    emu = emulator()
    store = open_store("s3://lake/idem", s3_client=aws["s3"])
    recording = RecordingTimestream(aws["timestream"])
    sink = TimestreamSink(client=recording)

    def run(i: int, target: Any = store, timeseries: Any = sink) -> Any:
        emu.clock.set(run_time(i))  # type: ignore[attr-defined]
        return run_cycle(
            run_time(i), store=target, azure=in_process_access(emu), timeseries=timeseries, clock=emu.clock
        )

    at_commit = FaultyBackend(S3Backend("lake", "idem", client=aws["s3"]), fail_when=_swap, fail_at=1)
    crashed = run(0, target=ObjectStore(at_commit))  # fails at the commit
    assert crashed.status is RunStatus.FAILED and store.read_state().version is None
    assert recording.records == [], "nothing reaches Timestream before the commit"
    assert store.latest("merged") is None and store.latest("changes") is None, "readers never see it"

    done = run(0)
    assert done.status is RunStatus.COMMITTED and done.delivery_error is None
    first = list(recording.records)
    assert done.scoring is not None and len(first) == done.scoring.changes_rows > 0

    class Down:
        def write(self, changes: Any, *, run_at: Any) -> Any:
            raise SinkError("Timestream is unavailable (injected)")

    outage = run(1, timeseries=Down())
    assert outage.status is RunStatus.COMMITTED and "unavailable" in (outage.delivery_error or "")
    assert outage.undelivered == (run_time(1),)
    # The next run delivers run 1's stored changes first, then its own.
    n = len(recording.records)
    after = run(2)
    assert after.status is RunStatus.COMMITTED and after.undelivered == ()
    times = sorted({r["Time"] for r in recording.records[n:]})
    assert len(times) == 2, "run 1's changes were delivered again, then run 2's"
    # A committed run time rerun is a no-op that writes nothing.
    n = len(recording.records)
    assert run(2).status is RunStatus.SKIPPED and len(recording.records) == n
    assert sorted(map(_identity, first)) == sorted(map(_identity, recording.records[: len(first)]))


def _swap(op: str, key: str) -> bool:
    return op == "swap_pointer"


def _identity(record: dict[str, Any]) -> tuple[Any, ...]:
    dims = tuple(sorted((d["Name"], d["Value"]) for d in record["Dimensions"]))
    measures = tuple(sorted((m["Name"], m["Value"]) for m in record.get("MeasureValues", [])))
    return dims, record["Time"], record["Version"], measures


def test_overlapping_runs_on_one_s3_prefix_commit_once(aws: dict[str, Any]) -> None:
    emu = emulator()
    at = run_time(0)
    emu.clock.set(at)  # type: ignore[attr-defined]
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def run() -> None:
        store = open_store("s3://lake/race", s3_client=aws["s3"])
        barrier.wait()
        try:
            outcomes.append(run_cycle(at, store=store, azure=in_process_access(emu), clock=emu.clock).status)
        except LockedError:
            outcomes.append("locked")

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert sorted(outcomes) in (["committed", "locked"], ["committed", "skipped"]), outcomes


def test_a_sink_outage_never_stops_collection_and_the_outbox_delivers_everything_later(
    aws: dict[str, Any],
) -> None:
    """Before: with the compat bucket unreachable every later run failed and collected nothing."""
    emu = emulator()
    store = open_store("s3://lake/outage", s3_client=aws["s3"])
    gone = CompatWriter(client=aws["s3"], bucket="web-not-created-yet")

    def run(i: int) -> Any:
        emu.clock.set(run_time(i))  # type: ignore[attr-defined]
        return run_cycle(
            run_time(i), store=store, azure=in_process_access(emu), extra_writers=[gone], clock=emu.clock
        )

    outage = [run(i) for i in range(3)]
    assert [r.status for r in outage] == [RunStatus.COMMITTED] * 3, [r.error for r in outage]
    assert all(
        "does not exist" in (r.delivery_error or "") or "NoSuchBucket" in (r.delivery_error or "")
        for r in outage
    )
    assert [r.undelivered for r in outage] == [
        (run_time(0),),
        (run_time(0), run_time(1)),
        (run_time(0), run_time(1), run_time(2)),
    ]
    assert store.run_times("merged") == [run_time(0), run_time(1), run_time(2)], "collection went on"
    # The sink comes back: the next run delivers every owed run, oldest first, then its own.
    aws["s3"].create_bucket(Bucket="web-not-created-yet")
    back = run(3)
    assert back.status is RunStatus.COMMITTED and back.delivery_error is None and back.undelivered == ()
    raw = {o["Key"] for o in aws["s3"].list_objects_v2(Bucket="web-not-created-yet")["Contents"]}
    assert {k for k in raw if k.startswith("rawdata/")} == {
        f"rawdata/azure/2026/03/02/00-{m:02d}-00.csv.gz" for m in (0, 10, 20, 30)
    }
    latest = json.loads(
        aws["s3"].get_object(Bucket="web-not-created-yet", Key="latest_data/latest_azure.json")["Body"].read()
    )
    assert {r["time"] for r in latest if r["Score"] != "N/A"} == {"2026-03-02 00:30:00"}, (
        "the newest run is latest"
    )


def test_a_sink_that_raises_anything_leaves_the_run_committed() -> None:
    class Broken:
        def write(self, snapshot: Any, *, run_at: Any) -> Any:
            raise RuntimeError("a bug in a user's sink")

    import tempfile

    emu = emulator()
    store = open_store(tempfile.mkdtemp())
    emu.clock.set(run_time(0))  # type: ignore[attr-defined]
    report = run_cycle(
        run_time(0), store=store, azure=in_process_access(emu), extra_writers=[Broken()], clock=emu.clock
    )
    assert report.status is RunStatus.COMMITTED
    assert "unexpected RuntimeError from a sink" in (report.delivery_error or "")
    assert report.undelivered == (run_time(0),)
