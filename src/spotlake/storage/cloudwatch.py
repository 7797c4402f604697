"""CloudWatch sink: per-run counts as one structured log event and as metrics.

Each run writes one JSON log event (``{"event": "spotlake.run", "run_at": ..., "counts": {...}}``,
queryable with Logs Insights) to ``log_group``/``log_stream`` (created on first use when missing), and one
``PutMetricData`` datapoint per count (unit ``Count``) in ``namespace``, so alarms can fire on
e.g. ``failed_calls > 0`` or ``merged == 0``.

CloudWatch rejects log events and datapoints older than 14 days; a run replayed later than that
is stamped with the current time (its real run time stays in the message).

IAM: ``logs:CreateLogGroup``, ``logs:CreateLogStream``, ``logs:PutLogEvents`` on the group and
``cloudwatch:PutMetricData``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, Final

import attrs

from spotlake.clock import Clock, SystemClock, ensure_utc
from spotlake.errors import ConfigError, SinkError
from spotlake.storage.aws import ACCESS_DENIED_CODES, error_code, error_message, make_client
from spotlake.storage.base import SinkReport

__all__ = ["CloudWatchSink"]

#: CloudWatch refuses events/datapoints older than this (a little margin under 14 days).
MAX_EVENT_AGE: Final = timedelta(days=13, hours=23)

#: Datapoints per PutMetricData call (20 is the limit every endpoint has accepted historically).
METRICS_PER_CALL: Final = 20


@attrs.define(kw_only=True)
class CloudWatchSink:
    """Writes per-run counts to CloudWatch Logs (always) and CloudWatch metrics (unless ``metrics=False``).

    ``logs_client``/``metrics_client`` are boto3 ``logs``/``cloudwatch`` clients (built from the
    default credential chain when omitted). ``dimensions`` are added to every datapoint (e.g.
    ``{"Store": "prod"}``).
    """

    logs_client: Any = None
    metrics_client: Any = None
    log_group: str = "spotlake"
    log_stream: str = "collector"
    namespace: str = "Spotlake"
    dimensions: Mapping[str, str] = attrs.field(factory=dict)
    metrics: bool = True
    clock: Clock = attrs.field(factory=SystemClock)

    def __attrs_post_init__(self) -> None:
        if self.logs_client is None:
            self.logs_client = make_client("logs")
        if self.metrics and self.metrics_client is None:
            self.metrics_client = make_client("cloudwatch")

    def write_run(self, counts: Mapping[str, float], *, run_at: datetime) -> SinkReport:
        """Record one run's counts; returns how many log events and datapoints were written."""
        clean: dict[str, float] = {}
        for name, value in counts.items():
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise ConfigError(f"CloudWatch count {name!r} must be a finite number, got {value!r}")
            clean[str(name)] = value
        run_at = ensure_utc(run_at)
        now = ensure_utc(self.clock.now())
        stamp = run_at if now - run_at <= MAX_EVENT_AGE else now
        millis = int(stamp.timestamp() * 1000)
        message = json.dumps(
            {"event": "spotlake.run", "run_at": run_at.isoformat(), "counts": clean}, sort_keys=True
        )
        calls = self._put_event(millis, message)
        points = 0
        if self.metrics and clean:
            dims = [{"Name": k, "Value": v} for k, v in sorted(self.dimensions.items())]
            data = [
                {
                    "MetricName": name,
                    "Value": float(value),
                    "Unit": "Count",
                    "Timestamp": stamp,
                    "Dimensions": dims,
                }
                for name, value in sorted(clean.items())
            ]
            for start in range(0, len(data), METRICS_PER_CALL):
                try:
                    self.metrics_client.put_metric_data(
                        Namespace=self.namespace, MetricData=data[start : start + METRICS_PER_CALL]
                    )
                except Exception as exc:
                    raise SinkError(
                        self._message(exc, f"CloudWatch metrics namespace {self.namespace}")
                    ) from exc
                calls += 1
            points = len(data)
        return SinkReport(sink="cloudwatch", records=1 + points, calls=calls)

    def _put_event(self, millis: int, message: str) -> int:
        """Put the event; create the group/stream when missing (first run) and put again. Returns calls."""
        event = {"timestamp": millis, "message": message}
        calls = 0
        for attempt in range(2):
            calls += 1
            try:
                self.logs_client.put_log_events(
                    logGroupName=self.log_group, logStreamName=self.log_stream, logEvents=[event]
                )
                return calls
            except Exception as exc:
                if error_code(exc) == "ResourceNotFoundException" and attempt == 0:
                    calls += self._create_stream()
                    continue
                raise SinkError(self._message(exc, self._where)) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    @property
    def _where(self) -> str:
        return f"CloudWatch log stream {self.log_group}/{self.log_stream}"

    def _create_stream(self) -> int:
        # Trying the put first means a run needs no Create* permission once the stream exists.
        for call, kwargs in (
            (self.logs_client.create_log_group, {"logGroupName": self.log_group}),
            (
                self.logs_client.create_log_stream,
                {"logGroupName": self.log_group, "logStreamName": self.log_stream},
            ),
        ):
            try:
                call(**kwargs)
            except Exception as exc:
                if error_code(exc) != "ResourceAlreadyExistsException":
                    raise SinkError(self._message(exc, self._where)) from exc
        return 2

    def _message(self, exc: BaseException, where: str) -> str:
        code = error_code(exc)
        if code in ACCESS_DENIED_CODES:
            return (
                f"access denied writing to {where} ({code}: {error_message(exc)}); the role needs "
                "logs:CreateLogGroup, logs:CreateLogStream, logs:PutLogEvents and cloudwatch:PutMetricData"
            )
        return f"writing to {where} failed: {code or type(exc).__name__}: {error_message(exc)}"
