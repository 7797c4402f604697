"""Interruption events for the allocator: EC2's EventBridge events, typed, read from SQS or pushed.

Flow (as Karpenter's): EC2 -> EventBridge rule (source ``aws.ec2``, the :class:`DetailType` values)
-> SQS queue -> :meth:`SqsEvents.poll` receives, runs :func:`parse_event` on each body and deletes
every handled message -> :class:`EventBatch`. Without a queue, a caller builds the events itself or
passes an envelope to :func:`parse_event`. AWS's documented shapes (envelope version "0"):

* ``EC2 Spot Instance Interruption Warning`` -> :class:`InterruptionWarning`. Its detail has
  ``instance-id`` and ``instance-action`` but no time: EC2 sends it two minutes before acting, so
  ``deadline`` is the event time + 2 minutes, or the event time for hibernation (which starts at
  once). An ``instance-action-time`` in the detail (a pusher copying instance metadata) wins.
* ``EC2 Instance Rebalance Recommendation`` -> :class:`RebalanceRecommendation`.
* ``EC2 Instance State-change Notification`` -> :class:`StateChange` (every state).

Other sources, detail-types or versions (``AWS Health Event`` too) give ``None``: ignored, counted.
A body that is not JSON, not an envelope or lacks a field raises :class:`MalformedEventError`
naming the field (values only when they are short plain words); the poller logs it by message id,
never the body, and deletes it so it cannot come back forever. Deletes SQS fails on its side are
retried (:func:`spotlake.retry.backing_off`); receive errors, after botocore's own retries, are
raised typed (:class:`~spotlake.errors.TransientCollectError` when a later try may succeed).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Final, TypeVar

import attrs

from spotlake.clock import Clock, SystemClock, ensure_utc
from spotlake.errors import AuthError, CollectError, ConfigError, PayloadError, TransientCollectError
from spotlake.retry import backing_off
from spotlake.storage import aws

__all__ = [
    "DetailType",
    "Event",
    "EventBatch",
    "InstanceAction",
    "InstanceEvent",
    "InstanceState",
    "InterruptionWarning",
    "MalformedEventError",
    "RebalanceRecommendation",
    "SqsEvents",
    "StateChange",
    "parse_event",
]

_log = logging.getLogger(__name__)

#: How long before acting EC2 sends the interruption warning (hibernation gets no lead).
WARNING_LEAD: Final = timedelta(minutes=2)
#: ``CollectError.source`` of every error raised here.
SOURCE: Final = "interruption-events"
#: Tries of a delete SQS fails on its side, and the first wait between them (doubling).
DELETE_ATTEMPTS: Final = 3
DELETE_RETRY_BASE_SECONDS: Final = 0.5
_THROTTLED: Final = frozenset({"Throttling", "ThrottlingException", "RequestThrottled"})
_NO_QUEUE: Final = frozenset({"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"})
_WORD: Final = re.compile(r"[\w.:+-]{1,64}")


class DetailType(StrEnum):
    """The EventBridge ``detail-type`` values understood (source ``aws.ec2``)."""

    INTERRUPTION_WARNING = "EC2 Spot Instance Interruption Warning"
    REBALANCE_RECOMMENDATION = "EC2 Instance Rebalance Recommendation"
    STATE_CHANGE = "EC2 Instance State-change Notification"


class InstanceAction(StrEnum):
    TERMINATE = "terminate"
    STOP = "stop"
    HIBERNATE = "hibernate"


class InstanceState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"
    SHUTTING_DOWN = "shutting-down"
    TERMINATED = "terminated"


class MalformedEventError(PayloadError):
    """An event body that is not the documented shape; the message names what is wrong."""

    def __init__(self, message: str) -> None:
        super().__init__(message, source=SOURCE)


def _non_empty(_inst: object, attr: attrs.Attribute[Any], value: object) -> None:
    if not (isinstance(value, str) and value):
        raise ConfigError(f"{attr.name} must be a non-empty string, got {value!r}")


@attrs.frozen(kw_only=True)
class InstanceEvent:
    """What every event says: which instance, in which region, when; ``event_id`` is EventBridge's."""

    instance_id: str = attrs.field(validator=_non_empty)
    region: str = attrs.field(validator=_non_empty)
    at: datetime = attrs.field(converter=ensure_utc)
    event_id: str | None = None


@attrs.frozen(kw_only=True)
class InterruptionWarning(InstanceEvent):
    """EC2 takes the spot instance back: ``action`` at ``deadline``."""

    action: InstanceAction
    deadline: datetime = attrs.field(converter=ensure_utc)


@attrs.frozen(kw_only=True)
class RebalanceRecommendation(InstanceEvent):
    """The spot instance is at elevated risk of interruption; moving early is advised."""


@attrs.frozen(kw_only=True)
class StateChange(InstanceEvent):
    """The instance entered ``state``."""

    state: InstanceState


Event = InterruptionWarning | RebalanceRecommendation | StateChange
_E = TypeVar("_E", bound=StrEnum)


def _shown(value: object) -> str:
    """A value fit for an error message: a short plain word as it is, anything else by type only."""
    return repr(value) if isinstance(value, str) and _WORD.fullmatch(value) else f"a {type(value).__name__}"


def _text(data: Mapping[str, Any], key: str, where: str) -> str:
    value = data.get(key)
    if not (isinstance(value, str) and value):
        got = _shown(value) if key in data else "nothing"
        raise MalformedEventError(f"{where} needs a non-empty string {key!r}, got {got}")
    return value


def _time(data: Mapping[str, Any], key: str, where: str) -> datetime:
    text = _text(data, key, where)
    try:
        return ensure_utc(datetime.fromisoformat(text))
    except ValueError:
        raise MalformedEventError(f"{where}: {key!r} is not an ISO 8601 time: {_shown(text)}") from None


def _choice(kind: type[_E], data: Mapping[str, Any], key: str, where: str) -> _E:
    text = _text(data, key, where)
    try:
        return kind(text)
    except ValueError:
        allowed = ", ".join(member.value for member in kind)
        raise MalformedEventError(f"{where}: {key!r} must be one of {allowed}, got {_shown(text)}") from None


def parse_event(body: str | Mapping[str, Any]) -> Event | None:
    """The typed event in an EventBridge envelope (JSON text or parsed); ``None`` for other events."""
    data: object = body
    if isinstance(body, str):
        try:
            data = json.loads(body)
        except json.JSONDecodeError as exc:
            raise MalformedEventError(f"the body is not JSON ({exc.msg} at column {exc.colno})") from None
        except RecursionError:
            raise MalformedEventError("the body is JSON nested too deeply for an EventBridge event") from None
    if not isinstance(data, Mapping):
        raise MalformedEventError(f"the body is {_shown(data)}, not an EventBridge envelope (an object)")
    envelope = "the EventBridge envelope"
    version, source = _text(data, "version", envelope), _text(data, "source", envelope)
    name = _text(data, "detail-type", envelope)
    if version != "0" or source != "aws.ec2" or name not in frozenset(DetailType):
        return None
    where = f"the {name!r} event"
    detail = data.get("detail")
    if not isinstance(detail, Mapping):
        raise MalformedEventError(f"{where} needs a 'detail' object, got {_shown(detail)}")
    in_detail = f"{where}'s detail"
    instance_id = _text(detail, "instance-id", in_detail)
    region, at = _text(data, "region", where), _time(data, "time", where)
    event_id = data["id"] if isinstance(data.get("id"), str) else None
    common: dict[str, Any] = {"instance_id": instance_id, "region": region, "at": at, "event_id": event_id}
    if name == DetailType.REBALANCE_RECOMMENDATION:
        return RebalanceRecommendation(**common)
    if name == DetailType.STATE_CHANGE:
        return StateChange(**common, state=_choice(InstanceState, detail, "state", in_detail))
    action = _choice(InstanceAction, detail, "instance-action", in_detail)
    if "instance-action-time" in detail:
        deadline = _time(detail, "instance-action-time", in_detail)
    else:
        deadline = at if action is InstanceAction.HIBERNATE else at + WARNING_LEAD
    return InterruptionWarning(**common, action=action, deadline=deadline)


@attrs.frozen(kw_only=True)
class EventBatch:
    """One poll: the events parsed, and how many messages were ignored, malformed, left undeleted."""

    events: tuple[Event, ...] = ()
    ignored: int = 0
    malformed: int = 0
    undeleted: int = 0

    @property
    def received(self) -> int:
        return len(self.events) + self.ignored + self.malformed


class _Undeleted(Exception):
    """Internal: deletes SQS failed on its side; re-sent by the retry loop."""


def _transient(exc: BaseException) -> bool:
    status = aws.http_status(exc) or 0
    return aws.transport_error(exc) or status >= 500 or aws.error_code(exc) in _THROTTLED


class SqsEvents:
    """Polls an SQS queue that an EventBridge rule feeds with EC2 events (see the module doc).

    Without ``client``, one is made by :func:`spotlake.storage.aws.make_client` (so
    ``AWS_ENDPOINT_URL`` and the other endpoint settings apply) in ``region_name``, else the default
    chain's region; it must be the queue's region (the one its URL names).
    """

    def __init__(
        self,
        queue_url: str,
        *,
        client: Any = None,
        region_name: str | None = None,
        clock: Clock | None = None,
    ) -> None:
        if not queue_url:
            raise ConfigError("SqsEvents needs a queue URL: https://sqs.<region>.amazonaws.com/<id>/<name>")
        self.queue_url = queue_url
        self.client = client if client is not None else aws.make_client("sqs", region_name=region_name)
        self._clock: Clock = clock or SystemClock()

    def poll(self, max_messages: int = 10, wait_seconds: int = 0) -> EventBatch:
        """Receive up to ``max_messages`` (1..10), waiting up to ``wait_seconds`` (0..20) for one."""
        if not (1 <= max_messages <= 10 and 0 <= wait_seconds <= 20):
            raise ConfigError(
                f"SQS takes max_messages 1..10 and wait_seconds 0..20, got {max_messages}, {wait_seconds}"
            )
        try:
            response = self.client.receive_message(
                QueueUrl=self.queue_url, MaxNumberOfMessages=max_messages, WaitTimeSeconds=wait_seconds
            )
        except Exception as exc:
            raise self._receive_error(exc) from exc
        events: list[Event] = []
        ignored = malformed = 0
        handled: list[dict[str, str]] = []
        for index, message in enumerate(response.get("Messages", [])):
            message_id = str(message.get("MessageId", "?"))
            try:
                event = parse_event(str(message.get("Body", "")))
            except MalformedEventError as exc:
                malformed += 1
                _log.warning("deleting malformed message %s from %s: %s", message_id, self.queue_url, exc)
            else:
                if event is None:
                    ignored += 1
                else:
                    events.append(event)
            handled.append({"Id": str(index), "ReceiptHandle": str(message["ReceiptHandle"])})
        undeleted = self._delete(handled) if handled else 0
        return EventBatch(events=tuple(events), ignored=ignored, malformed=malformed, undeleted=undeleted)

    def _delete(self, entries: list[dict[str, str]]) -> int:
        """Delete handled messages, re-sending those SQS failed on its side; return how many stay."""
        reasons: list[str] = []
        try:
            for attempt in backing_off(
                clock=self._clock, attempts=DELETE_ATTEMPTS, base=DELETE_RETRY_BASE_SECONDS, on=_Undeleted
            ):
                with attempt:
                    response = self.client.delete_message_batch(QueueUrl=self.queue_url, Entries=entries)
                    failed = response.get("Failed", [])
                    # The code only: SQS's message quotes the receipt handle.
                    reasons += [str(f.get("Code")) for f in failed if f.get("SenderFault")]
                    retry = {f.get("Id") for f in failed if not f.get("SenderFault")}
                    entries = [entry for entry in entries if entry["Id"] in retry]
                    if entries:
                        raise _Undeleted
        except _Undeleted:
            reasons += ["failed on the SQS side on every attempt"] * len(entries)
        except Exception as exc:  # the call itself failed, after botocore's own retries
            reasons += [aws.error_code(exc) or type(exc).__name__] * len(entries)
        if reasons:
            _log.warning(
                "%d handled message(s) not deleted from %s (%s); they return after the visibility timeout",
                len(reasons),
                self.queue_url,
                "; ".join(sorted(set(reasons))),
            )
        return len(reasons)

    def _receive_error(self, exc: BaseException) -> CollectError | ConfigError:
        code, status, where = aws.error_code(exc), aws.http_status(exc), f"SQS queue {self.queue_url}"
        if code in aws.ACCESS_DENIED_CODES or status == 403:
            need = "sqs:ReceiveMessage and sqs:DeleteMessage on it (kms:Decrypt too with a customer KMS key)"
            return AuthError(
                f"access denied receiving from {where} ({code}); the role needs {need}", source=SOURCE
            )
        if code in _NO_QUEUE:
            return ConfigError(f"{where} does not exist ({code}); create it or fix the queue URL and region")
        text = f"{where}: {code}: {aws.error_message(exc)}" if code else f"{where}: {aws.error_message(exc)}"
        if _transient(exc):
            return TransientCollectError(f"could not receive from {text}", source=SOURCE, status=status)
        return CollectError(f"could not receive from {text}", source=SOURCE, status=status)
