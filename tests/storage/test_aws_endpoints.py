"""Every AWS client spotlake builds honours the standard endpoint configuration.

A moto server on 127.0.0.1 stands in for AWS, and the environment names it only through the
standard settings (``AWS_ENDPOINT_URL``, ``AWS_ENDPOINT_URL_<SERVICE>``, the shared config file's
``endpoint_url``). Each sink and store is built the way the CLI builds it (no client passed), used
once, and the test checks that the write is on the loopback server.

Nothing can reach a real service even if a client ignores the configuration: a botocore
``before-send`` handler on boto3's default session (the session every spotlake client comes from)
records each request and refuses any for a host other than 127.0.0.1 before it is sent, and the
test checks that none was refused. (Proxy variables would not do: botocore picks a client's proxy
once, for its configured endpoint, so a request to a *discovered* host bypasses it.) Timestream
write is the client that needs spotlake's help: it discovers its endpoint (``DescribeEndpoints``),
and the address the configured endpoint answers with must not take the writes elsewhere.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import attrs
import boto3
import pytest
from moto.server import ThreadedMotoServer
from storage_samples import RUN_AT, changes_frame, snapshot_frame

from spotlake.clock import FakeClock
from spotlake.collect.auth import AzureCredentials, slack_webhook
from spotlake.storage import open_store
from spotlake.storage.cloudwatch import CloudWatchSink
from spotlake.storage.compat import CompatWriter
from spotlake.storage.s3 import S3Store
from spotlake.storage.timestream import TimestreamSink

REGION = "us-east-1"

#: Settings that could point a client somewhere else than the test says (cleared for every test).
_ENDPOINT_VARS = (
    "AWS_ENDPOINT_URL_S3",
    "AWS_ENDPOINT_URL_DYNAMODB",
    "AWS_ENDPOINT_URL_SSM",
    "AWS_ENDPOINT_URL_TIMESTREAM_WRITE",
    "AWS_ENDPOINT_URL_CLOUDWATCH_LOGS",
    "AWS_ENDPOINT_URL_CLOUDWATCH",
    "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
    "AWS_ENDPOINT_DISCOVERY_ENABLED",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_REGION",
)


class LeftLoopbackError(Exception):
    """A request for a host other than the loopback server, refused before it was sent."""


@attrs.define
class Guard:
    """Every request boto3's default session sent (``OPERATION URL``), and the ones it refused."""

    sent: list[str] = attrs.field(factory=list)
    refused: list[str] = attrs.field(factory=list)

    def before_send(self, request: Any, event_name: str, **_: Any) -> None:
        line = f"{event_name.rsplit('.', 1)[-1]} {request.url}"
        self.sent.append(line)
        if urlsplit(request.url).hostname != "127.0.0.1":
            self.refused.append(line)
            raise LeftLoopbackError(line)


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def offline_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Dummy credentials and a region, no endpoint setting yet, a fresh boto3 default session."""
    for var in _ENDPOINT_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    # boto3's default session caches the shared config file it read: each test gets a new one.
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)


@pytest.fixture
def guard(offline_env: None) -> Guard:
    """The request log; armed by :func:`_arm` once the test's endpoint setting is in place."""
    return Guard()


def _arm(guard: Guard) -> None:
    # A new default session reads the settings as they are now (boto3 reads the config file when
    # it builds the session); every client it builds inherits the handler.
    boto3.setup_default_session()
    assert boto3.DEFAULT_SESSION is not None
    boto3.DEFAULT_SESSION.events.register("before-send", guard.before_send)


@pytest.fixture
def unconfigured(guard: Guard) -> Guard:
    """No endpoint setting at all: clients go for AWS, and the guard stops them."""
    _arm(guard)
    return guard


def _server_client(service: str, moto_url: str) -> Any:
    """A client pointed at the server explicitly: sets up and inspects what the test expects."""
    return boto3.client(service, region_name=REGION, endpoint_url=moto_url)


def _record_requests(client: Any) -> list[str]:
    """Collects ``OPERATION URL`` for every request ``client`` sends (botocore's before-send event)."""
    sent: list[str] = []

    def before_send(request: Any, event_name: str, **_: Any) -> None:
        sent.append(f"{event_name.rsplit('.', 1)[-1]} {request.url}")

    client.meta.events.register("before-send", before_send)
    return sent


def _timestream_records(database: str, table: str) -> list[dict[str, Any]]:
    # The threaded server shares this process's moto backends; Timestream write has no read call.
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.timestreamwrite.models import timestreamwrite_backends

    backend = timestreamwrite_backends[DEFAULT_ACCOUNT_ID][REGION]
    return list(backend.databases[database].tables[table].records)


# --- the ways to configure an endpoint -----------------------------------------------------------


def _global_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, url: str) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", url)


def _service_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, url: str) -> None:
    for var in _ENDPOINT_VARS:
        if var.startswith("AWS_ENDPOINT_URL_"):
            monkeypatch.setenv(var, url)


def _config_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, url: str) -> None:
    config = tmp_path / "aws-config"
    config.write_text(f"[default]\nregion = {REGION}\nendpoint_url = {url}\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))


def _config_services(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, url: str) -> None:
    config = tmp_path / "aws-config"
    sections = "".join(
        f"{name} =\n  endpoint_url = {url}\n"
        for name in ("s3", "dynamodb", "ssm", "timestream_write", "cloudwatch_logs", "cloudwatch")
    )
    config.write_text(f"[default]\nregion = {REGION}\nservices = local\n\n[services local]\n{sections}")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))


CONFIGURE: dict[str, Callable[[pytest.MonkeyPatch, Path, str], None]] = {
    "AWS_ENDPOINT_URL": _global_env,
    "AWS_ENDPOINT_URL_<SERVICE>": _service_env,
    "config endpoint_url": _config_file,
    "config services section": _config_services,
}


@pytest.fixture(params=list(CONFIGURE))
def configured(
    request: pytest.FixtureRequest,
    guard: Guard,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    moto_url: str,
) -> str:
    CONFIGURE[request.param](monkeypatch, tmp_path, moto_url)
    _arm(guard)
    return moto_url


@pytest.fixture
def global_env(guard: Guard, monkeypatch: pytest.MonkeyPatch, moto_url: str) -> str:
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_url)
    _arm(guard)
    return moto_url


def _unique(name: str) -> str:
    return f"{name}-{datetime.now(UTC).strftime('%H%M%S%f')}"


# --- the clients ---------------------------------------------------------------------------------


def test_the_guard_refuses_a_request_for_another_host(unconfigured: Guard) -> None:
    # The guard works: without an endpoint setting a request is for AWS, and it never leaves.
    client = boto3.client("ssm")
    with pytest.raises(LeftLoopbackError):
        client.get_parameter(Name="x")
    assert unconfigured.refused == ["GetParameter https://ssm.us-east-1.amazonaws.com/"]


def test_timestream_sink_writes_to_the_configured_endpoint(configured: str, guard: Guard) -> None:
    database, table = _unique("spotlake"), "azure"
    setup = _server_client("timestream-write", configured)
    setup.create_database(DatabaseName=database)
    setup.create_table(DatabaseName=database, TableName=table)

    sink = TimestreamSink(database=database, table=table)  # as the CLI builds it
    sent = _record_requests(sink.client)
    report = sink.write(changes_frame(4), run_at=RUN_AT)

    assert report.records == 4
    assert len(_timestream_records(database, table)) == 4
    # No DescribeEndpoints: its answer names the real service, and a configured endpoint wins.
    assert sent == [f"WriteRecords {configured}/"]
    assert guard.refused == []


def test_s3_store_uses_the_configured_endpoint(configured: str, guard: Guard) -> None:
    bucket = _unique("spotlake-store")
    _server_client("s3", configured).create_bucket(Bucket=bucket)

    store = open_store(f"s3://{bucket}/lake", clock=FakeClock(RUN_AT))  # as the CLI opens it
    assert isinstance(store, S3Store)
    sent = _record_requests(store.client)
    with store.lock("run-1"):
        seen = _server_client("s3", configured).list_objects_v2(Bucket=bucket, Prefix="lake/")
        assert [o["Key"] for o in seen.get("Contents", [])] == ["lake/.spotlake.lock"]

    assert sent and all(configured in line for line in sent)
    assert guard.refused == []


def test_compat_writer_uses_the_configured_endpoint(configured: str, guard: Guard) -> None:
    bucket = _unique("spotlake-web")
    _server_client("s3", configured).create_bucket(Bucket=bucket)

    keys = CompatWriter(bucket=bucket).write(snapshot_frame(3), run_at=RUN_AT)

    seen = _server_client("s3", configured).list_objects_v2(Bucket=bucket)
    assert sorted(o["Key"] for o in seen["Contents"]) == sorted(keys)
    assert guard.refused == []


def test_cloudwatch_sink_uses_the_configured_endpoint(configured: str, guard: Guard) -> None:
    group, namespace = _unique("spotlake"), _unique("Spotlake")
    run_at = datetime.now(UTC).replace(microsecond=0)  # CloudWatch refuses events older than 14 days

    sink = CloudWatchSink(
        log_group=group, namespace=namespace, clock=FakeClock(run_at + timedelta(minutes=1))
    )
    report = sink.write_run({"collected": 10, "changed": 2}, run_at=run_at)

    assert report.records == 3
    events = _server_client("logs", configured).get_log_events(logGroupName=group, logStreamName="collector")
    assert len(events["events"]) == 1
    metrics = _server_client("cloudwatch", configured).list_metrics(Namespace=namespace)["Metrics"]
    assert sorted(m["MetricName"] for m in metrics) == ["changed", "collected"]
    assert guard.refused == []


def test_dynamodb_credentials_use_the_configured_endpoint(configured: str, guard: Guard) -> None:
    table = _unique("spotlake-auth")
    setup = _server_client("dynamodb", configured)
    setup.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    data = {"tenant_id": "t", "client_id": "c", "client_secret": "s", "subscriptions": "sub-1,sub-2"}
    setup.put_item(
        TableName=table,
        Item={"id": {"S": "login_auth_az_true"}, "data": {"M": {k: {"S": v} for k, v in data.items()}}},
    )

    built_inside = AzureCredentials.from_dynamodb(table=table)
    built_by_cli = AzureCredentials.from_dynamodb(client=boto3.client("dynamodb"), table=table)

    assert built_inside.subscriptions == built_by_cli.subscriptions == ("sub-1", "sub-2")
    assert guard.refused == []


def test_ssm_webhook_uses_the_configured_endpoint(configured: str, guard: Guard) -> None:
    _server_client("ssm", configured).put_parameter(
        Name="error_notification_slack_webhook_url",
        Value="https://hooks.example/x",
        Type="SecureString",
        Overwrite=True,
    )

    webhook = slack_webhook({}, ssm_client=boto3.client("ssm"))  # the CLI's client

    assert webhook is not None and webhook.reveal() == "https://hooks.example/x"
    assert guard.refused == []


def test_timestream_discovery_stays_off_with_discovery_forced_on(
    global_env: str, monkeypatch: pytest.MonkeyPatch, guard: Guard
) -> None:
    # AWS_ENDPOINT_DISCOVERY_ENABLED=true asks botocore to discover even where it is optional; a
    # configured endpoint still wins, as an explicit endpoint_url does.
    monkeypatch.setenv("AWS_ENDPOINT_DISCOVERY_ENABLED", "true")
    database = _unique("spotlake")
    setup = _server_client("timestream-write", global_env)
    setup.create_database(DatabaseName=database)
    setup.create_table(DatabaseName=database, TableName="azure")

    sink = TimestreamSink(database=database, table="azure")
    sent = _record_requests(sink.client)
    sink.write(changes_frame(2), run_at=RUN_AT)

    assert sent == [f"WriteRecords {global_env}/"]
    assert guard.refused == []


def test_without_an_endpoint_setting_timestream_still_discovers(unconfigured: Guard) -> None:
    # Production keeps endpoint discovery: the fix applies only when an endpoint is configured.
    sink = TimestreamSink()
    record = {"MeasureName": "m", "MeasureValue": "1", "MeasureValueType": "BIGINT", "Time": "1"}
    with pytest.raises(LeftLoopbackError):
        sink.client.write_records(DatabaseName="d", TableName="t", Records=[record])
    assert unconfigured.refused == ["DescribeEndpoints https://ingest.timestream.us-east-1.amazonaws.com/"]


def test_dynamodb_credentials_stay_on_the_endpoint_with_discovery_forced_on(
    global_env: str, monkeypatch: pytest.MonkeyPatch, guard: Guard
) -> None:
    # DynamoDB discovers its endpoint only when asked to (AWS_ENDPOINT_DISCOVERY_ENABLED=true); the
    # client AzureCredentials.from_dynamodb builds must not follow that answer away either.
    monkeypatch.setenv("AWS_ENDPOINT_DISCOVERY_ENABLED", "true")
    table = _unique("spotlake-auth")
    setup = _server_client("dynamodb", global_env)
    setup.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    data = {"tenant_id": "t", "client_id": "c", "client_secret": "s", "subscriptions": "sub-1"}
    setup.put_item(
        TableName=table,
        Item={"id": {"S": "login_auth_az_true"}, "data": {"M": {k: {"S": v} for k, v in data.items()}}},
    )

    assert AzureCredentials.from_dynamodb(table=table).subscriptions == ("sub-1",)
    assert guard.refused == []
