"""Interruption event intake: EC2's EventBridge events parsed, and the SQS poller (moto, in process).

The sample bodies are AWS's documented examples with concrete values. Nothing can reach AWS: the
credentials are dummies, endpoint settings and config files are cleared, and every AWS call runs
inside ``moto.mock_aws`` (or against a stub client).
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs
import boto3
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from moto import mock_aws

from spotlake.clock import FakeClock
from spotlake.compute.events import (
    DetailType,
    EventBatch,
    InstanceAction,
    InstanceState,
    InterruptionWarning,
    MalformedEventError,
    RebalanceRecommendation,
    SqsEvents,
    StateChange,
    parse_event,
)
from spotlake.errors import AuthError, CollectError, ConfigError, PayloadError, TransientError

REGION = "us-east-1"
TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJlLXNlY3JldA"

SPOT_WARNING: dict[str, Any] = {
    "version": "0",
    "id": "12345678-1234-1234-1234-123456789012",
    "detail-type": "EC2 Spot Instance Interruption Warning",
    "source": "aws.ec2",
    "account": "123456789012",
    "time": "2026-03-14T12:31:00Z",
    "region": "us-east-2",
    "resources": ["arn:aws:ec2:us-east-2a:instance/i-1234567890abcdef0"],
    "detail": {"instance-id": "i-1234567890abcdef0", "instance-action": "terminate"},
}
REBALANCE: dict[str, Any] = {
    "version": "0",
    "id": "12345678-1234-1234-1234-123456789012",
    "detail-type": "EC2 Instance Rebalance Recommendation",
    "source": "aws.ec2",
    "account": "123456789012",
    "time": "2026-03-14T12:29:40Z",
    "region": "us-east-2",
    "resources": ["arn:aws:ec2:us-east-2:123456789012:instance/i-1234567890abcdef0"],
    "detail": {"instance-id": "i-1234567890abcdef0"},
}
STATE_CHANGE: dict[str, Any] = {
    "version": "0",
    "id": "7bf73129-1428-4cd3-a780-95db273d1602",
    "detail-type": "EC2 Instance State-change Notification",
    "source": "aws.ec2",
    "account": "123456789012",
    "time": "2021-11-11T21:29:54Z",
    "region": "us-east-1",
    "resources": ["arn:aws:ec2:us-east-1:123456789012:instance/i-1234567890abcdef0"],
    "detail": {"instance-id": "i-1234567890abcdef0", "state": "pending"},
}
#: Also source aws.ec2, but not an event the allocator uses.
SNAPSHOT: dict[str, Any] = {
    "version": "0",
    "id": "01234567-01234-0123-0123-012345678901",
    "detail-type": "EBS Snapshot Notification",
    "source": "aws.ec2",
    "account": "123456789012",
    "time": "2026-03-14T12:00:00Z",
    "region": "us-east-1",
    "resources": ["arn:aws:ec2::us-east-1:snapshot/snap-01234567"],
    "detail": {"event": "createSnapshot", "result": "succeeded", "cause": ""},
}
#: Karpenter routes these too; spotlake ignores them (counted).
HEALTH: dict[str, Any] = {
    "version": "0",
    "id": "7bf73129-1428-4cd3-a780-95db273d1602",
    "detail-type": "AWS Health Event",
    "source": "aws.health",
    "account": "123456789012",
    "time": "2026-03-14T06:27:57Z",
    "region": "us-east-1",
    "resources": ["i-1234567890abcdef0"],
    "detail": {
        "service": "EC2",
        "eventTypeCode": "AWS_EC2_INSTANCE_RETIREMENT_SCHEDULED",
        "eventTypeCategory": "scheduledChange",
        "affectedEntities": [{"entityValue": "i-1234567890abcdef0"}],
    },
}


def _with(sample: dict[str, Any], *, drop: str = "", **changes: Any) -> dict[str, Any]:
    """A copy of ``sample``; ``detail__x=v`` sets a detail field, ``drop`` removes a key (``detail.x``)."""
    body = copy.deepcopy(sample)
    for key, value in changes.items():
        target, name = (body["detail"], key[8:]) if key.startswith("detail__") else (body, key)
        target[name.replace("_", "-")] = value
    if drop:
        *path, last = drop.split(".")
        target = body
        for part in path:
            target = target[part]
        del target[last]
    return body


# --- parsing -------------------------------------------------------------------------------------


def test_spot_interruption_warning_deadline_is_two_minutes_after_the_event() -> None:
    event = parse_event(json.dumps(SPOT_WARNING))
    assert event == InterruptionWarning(
        instance_id="i-1234567890abcdef0",
        region="us-east-2",
        at=datetime(2026, 3, 14, 12, 31, tzinfo=UTC),
        event_id="12345678-1234-1234-1234-123456789012",
        action=InstanceAction.TERMINATE,
        deadline=datetime(2026, 3, 14, 12, 33, tzinfo=UTC),
    )


def test_stop_warns_two_minutes_ahead_and_hibernate_not_at_all() -> None:
    stop = parse_event(_with(SPOT_WARNING, detail__instance_action="stop"))
    hibernate = parse_event(_with(SPOT_WARNING, detail__instance_action="hibernate"))
    assert isinstance(stop, InterruptionWarning) and isinstance(hibernate, InterruptionWarning)
    assert stop.action is InstanceAction.STOP and stop.deadline - stop.at == timedelta(minutes=2)
    assert hibernate.action is InstanceAction.HIBERNATE and hibernate.deadline == hibernate.at


def test_an_instance_action_time_in_the_detail_is_the_deadline() -> None:
    body = _with(SPOT_WARNING, detail__instance_action_time="2026-03-14T12:32:30Z")
    event = parse_event(body)
    assert isinstance(event, InterruptionWarning)
    assert event.deadline == datetime(2026, 3, 14, 12, 32, 30, tzinfo=UTC)


def test_rebalance_recommendation() -> None:
    assert parse_event(REBALANCE) == RebalanceRecommendation(
        instance_id="i-1234567890abcdef0",
        region="us-east-2",
        at=datetime(2026, 3, 14, 12, 29, 40, tzinfo=UTC),
        event_id="12345678-1234-1234-1234-123456789012",
    )


@pytest.mark.parametrize("state", list(InstanceState))
def test_state_change_in_every_documented_state(state: InstanceState) -> None:
    event = parse_event(json.dumps(_with(STATE_CHANGE, detail__state=state.value)))
    assert event == StateChange(
        instance_id="i-1234567890abcdef0",
        region="us-east-1",
        at=datetime(2021, 11, 11, 21, 29, 54, tzinfo=UTC),
        event_id="7bf73129-1428-4cd3-a780-95db273d1602",
        state=state,
    )


def test_times_are_aware_utc_whatever_offset_they_carry() -> None:
    event = parse_event(_with(REBALANCE, time="2026-03-14T14:29:40+02:00"))
    assert event is not None and event.at.tzinfo is UTC
    assert event.at == datetime(2026, 3, 14, 12, 29, 40, tzinfo=UTC)


def test_the_detail_types_are_the_documented_strings() -> None:
    assert {d.value for d in DetailType} == {
        SPOT_WARNING["detail-type"],
        REBALANCE["detail-type"],
        STATE_CHANGE["detail-type"],
    }


@pytest.mark.parametrize(
    "body",
    [SNAPSHOT, HEALTH, _with(SPOT_WARNING, source="aws.autoscaling"), _with(SPOT_WARNING, version="1")],
    ids=["other-ec2-detail-type", "health-event", "other-source", "other-version"],
)
def test_events_spotlake_does_not_use_are_ignored(body: dict[str, Any]) -> None:
    assert parse_event(body) is None
    assert parse_event(json.dumps(body)) is None


@pytest.mark.parametrize(
    ("body", "names"),
    [
        ("{not json", "not JSON"),
        ("", "not JSON"),
        ("[1, 2]", "a list"),
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        (_with(SPOT_WARNING, drop="detail-type"), "'detail-type'"),
        (_with(SPOT_WARNING, drop="source"), "'source'"),
        (_with(SPOT_WARNING, drop="detail"), "'detail' object"),
        (_with(SPOT_WARNING, detail="oops"), "'detail' object"),
        (_with(SPOT_WARNING, drop="detail.instance-id"), "'instance-id', got nothing"),
        (_with(SPOT_WARNING, detail__instance_id=""), "'instance-id'"),
        (_with(SPOT_WARNING, detail__instance_id=42), "'instance-id', got a int"),
        (_with(SPOT_WARNING, drop="detail.instance-action"), "'instance-action'"),
        (_with(SPOT_WARNING, detail__instance_action="explode"), "terminate, stop, hibernate, got 'explode'"),
        (_with(SPOT_WARNING, detail__instance_action_time="soon"), "'instance-action-time'"),
        (_with(SPOT_WARNING, drop="time"), "'time'"),
        (_with(SPOT_WARNING, time="yyyy-mm-ddThh:mm:ssZ"), "'time' is not an ISO 8601 time"),
        (_with(SPOT_WARNING, drop="region"), "'region'"),
        (_with(STATE_CHANGE, detail__state="rebooting"), "'state' must be one of pending, running"),
        (_with(STATE_CHANGE, drop="detail.state"), "'state'"),
    ],
)
def test_malformed_bodies_raise_a_typed_error_naming_what_is_wrong(body: Any, names: str) -> None:
    with pytest.raises(MalformedEventError) as caught:
        parse_event(body)
    assert isinstance(caught.value, PayloadError)
    assert names in str(caught.value)


def test_error_messages_never_quote_a_value_that_is_not_a_plain_word() -> None:
    body = _with(SPOT_WARNING, detail__instance_action=f"Bearer {TOKEN}")
    with pytest.raises(MalformedEventError) as caught:
        parse_event(body)
    assert TOKEN not in str(caught.value) and "got a str" in str(caught.value)


def test_events_built_by_a_caller_are_validated_and_utc() -> None:
    naive = datetime(2026, 3, 14, 12, 0)
    event = RebalanceRecommendation(instance_id="i-0abc", region=REGION, at=naive)
    assert event.at == naive.replace(tzinfo=UTC) and event.event_id is None
    with pytest.raises(ConfigError, match="instance_id"):
        RebalanceRecommendation(instance_id="", region=REGION, at=naive)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        event.region = "eu-west-1"  # type: ignore[misc]


# --- the SQS poller against moto -----------------------------------------------------------------


@pytest.fixture
def queue(aws_env: None) -> Iterator[tuple[Any, str]]:
    with mock_aws():
        client = boto3.client("sqs", region_name=REGION)
        yield client, client.create_queue(QueueName="spotlake-interruptions")["QueueUrl"]


def _drain(events: SqsEvents) -> EventBatch:
    """Poll until a poll receives nothing; the batches summed."""
    total = EventBatch()
    while (batch := events.poll(max_messages=10)).received:
        total = EventBatch(
            events=total.events + batch.events,
            ignored=total.ignored + batch.ignored,
            malformed=total.malformed + batch.malformed,
            undeleted=total.undeleted + batch.undeleted,
        )
    return total


def _queue_is_empty(client: Any, url: str) -> bool:
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    attributes = client.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
    return all(attributes[name] == "0" for name in names)


def test_poll_returns_typed_events_and_deletes_every_handled_message(
    queue: tuple[Any, str], caplog: pytest.LogCaptureFixture
) -> None:
    client, url = queue
    malformed = json.dumps({"access_token": TOKEN, "detail-type": SPOT_WARNING["detail-type"]})
    for body in (SPOT_WARNING, REBALANCE, STATE_CHANGE, SNAPSHOT, HEALTH):
        client.send_message(QueueUrl=url, MessageBody=json.dumps(body))
    bad_id = client.send_message(QueueUrl=url, MessageBody=malformed)["MessageId"]

    with caplog.at_level(logging.WARNING, logger="spotlake.compute.events"):
        batch = _drain(SqsEvents(url, client=client))

    assert sorted(type(e).__name__ for e in batch.events) == [
        "InterruptionWarning",
        "RebalanceRecommendation",
        "StateChange",
    ]
    assert (batch.ignored, batch.malformed, batch.undeleted) == (2, 1, 0)
    assert _queue_is_empty(client, url)
    assert client.receive_message(QueueUrl=url).get("Messages", []) == []
    [record] = [r for r in caplog.records if "malformed" in r.getMessage()]
    assert bad_id in record.getMessage() and "'version'" in record.getMessage()
    assert TOKEN not in caplog.text


def test_the_poller_builds_its_client_with_the_repo_factory(queue: tuple[Any, str]) -> None:
    client, url = queue
    client.send_message(QueueUrl=url, MessageBody=json.dumps(REBALANCE))
    events = SqsEvents(url, region_name=REGION)
    assert events.client is not client
    assert _drain(events).events == (parse_event(REBALANCE),)


def test_the_standard_endpoint_setting_is_honoured(aws_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:4566")
    events = SqsEvents("http://127.0.0.1:4566/000000000000/q")
    assert events.client.meta.endpoint_url == "http://127.0.0.1:4566"
    assert events.client.meta.region_name == REGION


def test_the_documented_eventbridge_rule_routes_the_events_to_the_queue(queue: tuple[Any, str]) -> None:
    client, url = queue
    arn = client.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    bridge = boto3.client("events", region_name=REGION)
    pattern = {"source": ["aws.ec2"], "detail-type": [d.value for d in DetailType]}
    bridge.put_rule(Name="spotlake-interruptions", EventPattern=json.dumps(pattern))
    bridge.put_targets(Rule="spotlake-interruptions", Targets=[{"Id": "queue", "Arn": arn}])
    entries = [
        {
            "Source": body["source"],
            "DetailType": body["detail-type"],
            "Resources": body["resources"],
            "Detail": json.dumps(body["detail"]),
        }
        for body in (SPOT_WARNING, REBALANCE, STATE_CHANGE, SNAPSHOT)
    ]
    assert bridge.put_events(Entries=entries)["FailedEntryCount"] == 0

    batch = _drain(SqsEvents(url, client=client))

    assert batch.ignored == batch.malformed == 0  # the rule kept the snapshot event out
    warning, rebalance, change = sorted(batch.events, key=lambda e: type(e).__name__)
    assert isinstance(warning, InterruptionWarning) and warning.deadline - warning.at == timedelta(minutes=2)
    assert isinstance(rebalance, RebalanceRecommendation) and rebalance.instance_id == "i-1234567890abcdef0"
    assert isinstance(change, StateChange) and change.state is InstanceState.PENDING
    assert _queue_is_empty(client, url)


def test_a_missing_queue_is_a_config_error(queue: tuple[Any, str]) -> None:
    client, url = queue
    with pytest.raises(ConfigError, match="does not exist"):
        SqsEvents(url + "-missing", client=client).poll()


@pytest.mark.parametrize(("max_messages", "wait_seconds"), [(0, 0), (11, 0), (10, 21), (1, -1)])
def test_poll_arguments_outside_the_sqs_limits_are_refused(max_messages: int, wait_seconds: int) -> None:
    with pytest.raises(ConfigError, match="max_messages"):
        SqsEvents("https://sqs.us-east-1.amazonaws.com/1/q", client=object()).poll(max_messages, wait_seconds)


# --- failures, with a stub client ----------------------------------------------------------------


@attrs.define
class StubSqs:
    """Receives ``messages``; each delete call answers with the next ``Failed`` list (or raises it)."""

    messages: list[dict[str, str]]
    failures: list[list[dict[str, Any]] | Exception] = attrs.field(factory=list)
    receive_error: Exception | None = None
    deletes: list[list[str]] = attrs.field(factory=list)

    def receive_message(self, **_: Any) -> dict[str, Any]:
        if self.receive_error is not None:
            raise self.receive_error
        return {"Messages": self.messages}

    def delete_message_batch(self, *, QueueUrl: str, Entries: list[dict[str, str]]) -> dict[str, Any]:
        self.deletes.append([entry["Id"] for entry in Entries])
        answer = self.failures.pop(0) if self.failures else []
        if isinstance(answer, Exception):
            raise answer
        return {"Failed": answer}


def _messages(*bodies: dict[str, Any]) -> list[dict[str, str]]:
    return [
        {"MessageId": f"m-{i}", "ReceiptHandle": f"handle-{i}-secretish", "Body": json.dumps(body)}
        for i, body in enumerate(bodies)
    ]


def _client_error(code: str, status: int, operation: str = "ReceiveMessage") -> ClientError:
    error = {
        "Error": {"Code": code, "Message": f"{code} happened"},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ClientError(error, operation)


def test_deletes_sqs_failed_on_its_side_are_retried_with_backoff() -> None:
    clock = FakeClock()
    stub = StubSqs(
        _messages(SPOT_WARNING, REBALANCE),
        failures=[[{"Id": "0", "SenderFault": False, "Code": "InternalError"}]],
    )
    batch = SqsEvents("https://sqs.us-east-1.amazonaws.com/1/q", client=stub, clock=clock).poll()
    assert stub.deletes == [["0", "1"], ["0"]]
    assert batch.undeleted == 0 and len(batch.events) == 2
    assert clock.slept == [0.5]


def test_deletes_that_keep_failing_are_counted_and_logged_without_receipt_handles(
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = [{"Id": "0", "SenderFault": False, "Code": "InternalError"}]
    sender = {
        "Id": "1",
        "SenderFault": True,
        "Code": "ReceiptHandleIsInvalid",
        "Message": "handle-1-secretish",
    }
    stub = StubSqs(_messages(SPOT_WARNING, REBALANCE), failures=[[*server, sender], server, server])
    with caplog.at_level(logging.WARNING, logger="spotlake.compute.events"):
        batch = SqsEvents("https://sqs.us-east-1.amazonaws.com/1/q", client=stub, clock=FakeClock()).poll()
    assert stub.deletes == [["0", "1"], ["0"], ["0"]]  # the sender fault is not re-sent
    assert batch.undeleted == 2 and len(batch.events) == 2
    assert "ReceiptHandleIsInvalid" in caplog.text and "secretish" not in caplog.text


def test_a_failed_delete_call_keeps_the_events() -> None:
    stub = StubSqs(
        _messages(SPOT_WARNING), failures=[_client_error("AccessDenied", 403, "DeleteMessageBatch")]
    )
    batch = SqsEvents("https://sqs.us-east-1.amazonaws.com/1/q", client=stub, clock=FakeClock()).poll()
    assert len(batch.events) == 1 and batch.undeleted == 1


@pytest.mark.parametrize(
    ("error", "expected", "transient"),
    [
        (_client_error("AccessDenied", 403), AuthError, False),
        (_client_error("InternalError", 500), CollectError, True),
        (_client_error("RequestThrottled", 400), CollectError, True),
        (EndpointConnectionError(endpoint_url="https://sqs.us-east-1.amazonaws.com"), CollectError, True),
        (_client_error("InvalidParameterValue", 400), CollectError, False),
    ],
    ids=["denied", "server-error", "throttled", "unreachable", "bad-request"],
)
def test_receive_errors_are_typed(error: Exception, expected: type[Exception], transient: bool) -> None:
    stub = StubSqs([], receive_error=error)
    with pytest.raises(expected) as caught:
        SqsEvents("https://sqs.us-east-1.amazonaws.com/1/q", client=stub).poll()
    assert isinstance(caught.value, TransientError) is transient
    assert "sqs.us-east-1.amazonaws.com/1/q" in str(caught.value)
    if expected is AuthError:
        assert "sqs:ReceiveMessage" in str(caught.value)
