"""Amazon Timestream sink: one run's changeset as multi-measure records.

Only the changeset goes out (never the whole snapshot), at most 100 records per ``WriteRecords``
call (the service limit). Every record of a run shares ``Time`` = the run time and ``Version`` =
the run time in epoch milliseconds, so writing the same run twice is idempotent: Timestream accepts
a record identical to one it holds, and keeps the higher version when values differ. When the
service rejects some records (``RejectedRecordsException`` lists their ``RecordIndex``), only those
are sent again, a bounded number of times; a rejection because an equal or newer version already
exists is final and not retried.

Layouts (``layout=``):

``"spotlake"`` (default), measure name ``spot``:
    dimensions ``tier`` (size up to the first ``_``, e.g. ``Standard``), ``size``, ``region``,
    ``zone`` (``regional`` for a regional score, since dimensions cannot be null),
    ``desired_count`` (``none`` for a row without a score). ``desired_count`` is a dimension
    because it is part of a row's key: as a measure, two rows of one run differing only in count
    would collide. Measures: ``ondemand_price``, ``spot_price``, ``savings_pct``, ``if_score``
    (DOUBLE); ``score_value``, ``t2``, ``t3`` (BIGINT); ``quota_available``, ``ceased`` (BOOLEAN);
    ``score``, ``eviction_bucket``, ``family``, ``change`` (VARCHAR).
``"original"`` (docs/operations.md, for an existing deployment of the original collector), measure name
    ``azure_values``: dimensions ``InstanceTier``, ``InstanceType`` (size split at the first ``_``),
    ``Region`` (display name), ``AvailabilityZone`` (``N/A`` when regional, as the original wrote);
    measures ``DesiredCount``, ``OndemandPrice``, ``SpotPrice``, ``IF``, ``T2``, ``T3`` (DOUBLE)
    and ``Score`` (VARCHAR). Ceased rows are not written: that layout cannot mark them.
``"aws"`` (for an existing deployment of the original's AWS collector, table ``aws``), measure name
    ``aws_values``: dimensions ``InstanceType``, ``Region``, ``AZ`` (zone ID) and ``OndemandPrice``
    (``-1`` when unknown, as the original wrote it); measures ``SPS``, ``T3``, ``T2`` (BIGINT),
    ``IF`` and ``SpotPrice`` (DOUBLE). A ceased or expired row gets the dimension ``Ceased`` =
    ``True`` and every measure 0, as the original marked removed rows. Rows without a zone or a score
    (an offering no placement score covers) are not written; the original dropped them too.

Missing values (``<NA>``/NaN) are left out of the record: Timestream rejects NaN.

Timestream for LiveAnalytics is closed to new AWS customers; an account without access gets a
:class:`~spotlake.errors.SinkError` that says so. The sink is optional: nothing else needs it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any, Final, Literal

import attrs
import pandas as pd

from spotlake.clock import Clock, SystemClock, ensure_utc
from spotlake.errors import ConfigError, SinkError
from spotlake.model import CHANGES_SCHEMA, ChangeKind
from spotlake.retry import backing_off
from spotlake.storage.aws import ACCESS_DENIED_CODES, error_code, error_message, make_client
from spotlake.storage.base import SinkReport

__all__ = [
    "MAX_RECORDS_PER_CALL",
    "REGIONAL_ZONE",
    "TimestreamLayout",
    "TimestreamSink",
    "build_records",
    "run_version",
]

TimestreamLayout = Literal["spotlake", "original", "aws"]

#: WriteRecords accepts at most 100 records per call.
MAX_RECORDS_PER_CALL: Final = 100

#: Dimension value for the zone of a regional (zone-less) score.
REGIONAL_ZONE: Final = "regional"

#: Attempts per record (the first write plus retries of rejected records). The original retried
#: 10 times; most rejections are permanent, so a few attempts catch the transient ones.
DEFAULT_MAX_ATTEMPTS: Final = 4

#: Backoff before re-sending rejected records: base * 2**(attempt-1) seconds.
RETRY_BASE_SECONDS: Final = 0.5

_DOUBLE = "DOUBLE"
_BIGINT = "BIGINT"
_BOOLEAN = "BOOLEAN"
_VARCHAR = "VARCHAR"

# (frame column, measure name, Timestream type) per layout.
_SPOTLAKE_MEASURES: Final = (
    ("ondemand_price", "ondemand_price", _DOUBLE),
    ("spot_price", "spot_price", _DOUBLE),
    ("savings_pct", "savings_pct", _DOUBLE),
    ("if_score", "if_score", _DOUBLE),
    ("score_value", "score_value", _BIGINT),
    ("t2", "t2", _BIGINT),
    ("t3", "t3", _BIGINT),
    ("quota_available", "quota_available", _BOOLEAN),
    ("score", "score", _VARCHAR),
    ("eviction_bucket", "eviction_bucket", _VARCHAR),
    ("family", "family", _VARCHAR),
    ("change", "change", _VARCHAR),
)
_ORIGINAL_MEASURES: Final = (
    ("desired_count", "DesiredCount", _DOUBLE),
    ("ondemand_price", "OndemandPrice", _DOUBLE),
    ("spot_price", "SpotPrice", _DOUBLE),
    ("if_score", "IF", _DOUBLE),
    ("t2", "T2", _DOUBLE),
    ("t3", "T3", _DOUBLE),
    ("score", "Score", _VARCHAR),
)
_AWS_MEASURES: Final = (
    ("score_value", "SPS", _BIGINT),
    ("t3", "T3", _BIGINT),
    ("t2", "T2", _BIGINT),
    ("if_score", "IF", _DOUBLE),
    ("spot_price", "SpotPrice", _DOUBLE),
)
_MEASURE_NAME: Final = {"spotlake": "spot", "original": "azure_values", "aws": "aws_values"}

#: Change kinds of keys that stopped being current.
_GONE: Final = (ChangeKind.CEASED.value, ChangeKind.EXPIRED.value)


def run_version(run_at: datetime) -> int:
    """The record ``Version`` of a run: its time in epoch milliseconds (same run, same version)."""
    return round(ensure_utc(run_at).timestamp() * 1000)


def _missing(value: object) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def _format(value: object, kind: str) -> str:
    if kind == _BOOLEAN:
        return "true" if bool(value) else "false"
    if kind == _BIGINT:
        return str(int(value))  # type: ignore[call-overload]
    if kind == _DOUBLE:
        return repr(float(value))  # type: ignore[arg-type]
    return str(value)


def _split_size(size: str) -> tuple[str, str]:
    tier, sep, rest = size.partition("_")
    return (tier, rest) if sep else (size, size)


def build_records(changes: pd.DataFrame, *, layout: TimestreamLayout = "spotlake") -> list[dict[str, Any]]:
    """Timestream records (without Time/Version, which are common attributes) for a changeset."""
    if layout not in _MEASURE_NAME:
        raise ConfigError(f"unknown Timestream layout {layout!r}; use 'spotlake', 'original' or 'aws'")
    missing = [c for c in CHANGES_SCHEMA if c not in changes.columns]
    if missing:
        raise ConfigError(f"the changeset lacks columns {missing}; build it with CHANGES_SCHEMA")
    frame = changes
    if layout == "aws":
        return _aws_records(changes)
    if layout == "original":
        # That layout has no way to mark a key as gone or forgotten: those rows are skipped.
        frame = changes[~changes["change"].astype("string").fillna("").isin(_GONE)]
    measures = _SPOTLAKE_MEASURES if layout == "spotlake" else _ORIGINAL_MEASURES
    # Column-wise conversion to Python lists once; the per-row loop only assembles dicts.
    columns = {col: frame[col].astype(object).tolist() for col in {m[0] for m in measures}}
    sizes = frame["size"].astype(object).tolist()
    regions = frame["region"].astype(object).tolist()
    zones = frame["zone"].astype(object).tolist()
    counts = frame["desired_count"].astype(object).tolist()
    names = frame["region_name"].astype(object).tolist()
    kinds = frame["change"].astype(object).tolist()
    records: list[dict[str, Any]] = []
    for i in range(len(frame)):
        size = "unknown" if _missing(sizes[i]) else str(sizes[i])
        tier, itype = _split_size(size)
        region = "unknown" if _missing(regions[i]) else str(regions[i])
        if layout == "spotlake":
            dims = [
                ("tier", tier),
                ("size", size),
                ("region", region),
                ("zone", REGIONAL_ZONE if _missing(zones[i]) else str(zones[i])),
                ("desired_count", "none" if _missing(counts[i]) else str(int(counts[i]))),
            ]
        else:
            dims = [
                ("InstanceTier", tier),
                ("InstanceType", itype),
                ("Region", region if _missing(names[i]) else str(names[i])),
                ("AvailabilityZone", "N/A" if _missing(zones[i]) else str(zones[i])),
            ]
        values = [
            {"Name": name, "Value": _format(columns[col][i], kind), "Type": kind}
            for col, name, kind in measures
            if not _missing(columns[col][i])
        ]
        if layout == "spotlake":
            values.append(
                # True for every key that stopped being current (gone or dropped by age); the
                # `change` measure says which.
                {"Name": "ceased", "Value": _format(kinds[i] in _GONE, _BOOLEAN), "Type": _BOOLEAN}
            )
        records.append({"Dimensions": [{"Name": n, "Value": v} for n, v in dims], "MeasureValues": values})
    return records


def _aws_records(changes: pd.DataFrame) -> list[dict[str, Any]]:
    """The ``aws`` layout (see the module docstring)."""
    scored = changes["zone"].notna().to_numpy(dtype=bool) & changes["desired_count"].notna().to_numpy(
        dtype=bool
    )
    frame = changes[scored]
    columns = {col: frame[col].astype(object).tolist() for col in {m[0] for m in _AWS_MEASURES}}
    keys = {
        col: frame[col].astype(object).tolist()
        for col in ("size", "region", "zone", "ondemand_price", "change")
    }
    records: list[dict[str, Any]] = []
    for i in range(len(frame)):
        ondemand = keys["ondemand_price"][i]
        dims = [
            ("InstanceType", str(keys["size"][i])),
            ("Region", str(keys["region"][i])),
            ("AZ", str(keys["zone"][i])),
            ("OndemandPrice", "-1" if _missing(ondemand) else repr(float(ondemand))),
        ]
        gone = keys["change"][i] in _GONE
        if gone:
            dims.append(("Ceased", "True"))
        values = [
            {"Name": name, "Value": _format(0 if gone else columns[col][i], kind), "Type": kind}
            for col, name, kind in _AWS_MEASURES
            if gone or not _missing(columns[col][i])
        ]
        records.append({"Dimensions": [{"Name": n, "Value": v} for n, v in dims], "MeasureValues": values})
    return records


def _chunks(items: Sequence[int], size: int) -> Iterator[Sequence[int]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


@attrs.define(kw_only=True)
class TimestreamSink:
    """Writes changesets to a Timestream table (see the module docstring for the layouts).

    ``client`` is a boto3 ``timestream-write`` client (built from the default credential chain
    when omitted). ``tolerate_rejections=True`` reports records still rejected after
    ``max_attempts`` in the :class:`SinkReport` instead of raising.
    """

    client: Any = None
    database: str = "spotlake"
    table: str = "azure"
    layout: TimestreamLayout = "spotlake"
    clock: Clock = attrs.field(factory=SystemClock)
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    tolerate_rejections: bool = False

    def __attrs_post_init__(self) -> None:
        if self.layout not in _MEASURE_NAME:
            raise ConfigError(
                f"unknown Timestream layout {self.layout!r}; use 'spotlake', 'original' or 'aws'"
            )
        if self.max_attempts < 1:
            raise ConfigError(f"max_attempts must be at least 1, got {self.max_attempts}")
        if self.client is None:
            self.client = make_client("timestream-write")

    @property
    def where(self) -> str:
        return f"Timestream table {self.database}.{self.table}"

    def write(self, changes: pd.DataFrame, *, run_at: datetime, version: int | None = None) -> SinkReport:
        """Write one run's changeset. ``version`` overrides the run-derived Version (to correct a run)."""
        records = build_records(changes, layout=self.layout)
        notes: list[str] = []
        skipped = len(changes) - len(records)
        if skipped:
            why = (
                "rows without a zone or a score: the aws layout keys on the zone"
                if self.layout == "aws"
                else "ceased or expired rows: the original layout cannot mark them"
            )
            notes.append(f"{skipped} row(s) not written ({why})")
        if not records:
            return SinkReport(sink="timestream", notes=tuple(notes))
        common = {
            "MeasureName": _MEASURE_NAME[self.layout],
            "MeasureValueType": "MULTI",
            "Time": str(run_version(run_at)),
            "TimeUnit": "MILLISECONDS",
            "Version": version if version is not None else run_version(run_at),
        }
        calls = retried = 0
        final_rejects: list[tuple[int, str]] = []
        for batch in _chunks(range(len(records)), MAX_RECORDS_PER_CALL):
            sent = self._send(records, list(batch), common)
            calls, retried = calls + sent.calls, retried + sent.retried
            final_rejects.extend(sent.rejected)
        report = SinkReport(
            sink="timestream",
            records=len(records) - len(final_rejects),
            calls=calls,
            retried=retried,
            rejected=len(final_rejects),
            notes=tuple(notes),
        )
        if final_rejects and not self.tolerate_rejections:
            index, reason = final_rejects[0]
            raise SinkError(
                f"{self.where} rejected {len(final_rejects)} of {len(records)} record(s) of the run at "
                f"{ensure_utc(run_at).isoformat()} after up to {self.max_attempts} attempt(s); first: record "
                f"{index} ({records[index]['Dimensions']}): {reason}"
            )
        return report

    def _send(self, records: list[dict[str, Any]], pending: list[int], common: dict[str, Any]) -> _Sent:
        """One batch, re-sending only the records rejected for a reason that may pass next time."""
        sent = _Sent()
        try:
            for attempt in backing_off(
                clock=self.clock, attempts=self.max_attempts, base=RETRY_BASE_SECONDS, on=_Rejected
            ):
                with attempt:
                    if attempt.retry_state.attempt_number > 1:
                        sent.retried += len(pending)
                    sent.calls += 1
                    rejected = self._write_batch([records[i] for i in pending], common)
                    sent.rejected.extend((pending[i], reason) for i, reason, final in rejected if final)
                    retryable = [(pending[i], reason) for i, reason, final in rejected if not final]
                    if retryable:
                        pending = [i for i, _ in retryable]
                        raise _Rejected(retryable)
        except _Rejected as exc:  # still rejected after the last attempt
            sent.rejected.extend(exc.records)
        return sent

    def _write_batch(
        self, records: list[dict[str, Any]], common: dict[str, Any]
    ) -> list[tuple[int, str, bool]]:
        """Send one call; return the rejected ``(index in records, reason, final?)``."""
        try:
            self.client.write_records(
                DatabaseName=self.database, TableName=self.table, Records=records, CommonAttributes=common
            )
        except Exception as exc:
            code = error_code(exc)
            if code == "RejectedRecordsException":
                response = getattr(exc, "response", {})
                out: list[tuple[int, str, bool]] = []
                for item in response.get("RejectedRecords", []):
                    existing = item.get("ExistingVersion")
                    # An equal or newer version already stored: re-sending cannot change that.
                    final = existing is not None and int(existing) >= int(common["Version"])
                    out.append((int(item["RecordIndex"]), str(item.get("Reason", "rejected")), final))
                if not out:
                    raise SinkError(f"{self.where} rejected records but did not say which: {exc}") from exc
                return out
            raise SinkError(self._message(exc)) from exc
        return []

    def _message(self, exc: BaseException) -> str:
        code = error_code(exc)
        text = error_message(exc)
        lowered = text.lower()
        if "new customers" in lowered or ("existing" in lowered and "customer" in lowered):
            return (
                f"this AWS account cannot use Timestream for LiveAnalytics ({code}: {text}); it is closed to "
                "new customers. Disable the Timestream sink: the Parquet store keeps the full history"
            )
        if code in ACCESS_DENIED_CODES:
            return (
                f"access denied writing to {self.where} ({code}: {text}); the role needs "
                "timestream:WriteRecords on the table and timestream:DescribeEndpoints. If the account "
                "never used Timestream, note it is closed to new customers: disable the sink"
            )
        if code == "ResourceNotFoundException":
            return (
                f"{self.where} does not exist ({text}); create it (aws timestream-write create-database "
                f"--database-name {self.database}; create-table --database-name {self.database} "
                f"--table-name {self.table}) or configure the right names"
            )
        if code == "ValidationException":
            return f"{self.where} refused the records as invalid: {text}"
        return f"writing to {self.where} failed: {code or type(exc).__name__}: {text}"


class _Rejected(Exception):
    """Internal: records the service rejected but may accept when sent again."""

    def __init__(self, records: list[tuple[int, str]]) -> None:
        super().__init__(f"{len(records)} record(s) rejected")
        self.records = records


@attrs.define
class _Sent:
    """What sending one batch took: calls, records re-sent, records finally rejected."""

    calls: int = 0
    retried: int = 0
    rejected: list[tuple[int, str]] = attrs.field(factory=list)
