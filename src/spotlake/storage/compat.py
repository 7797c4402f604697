"""The original deployment's S3 layout (docs/operations.md), for teams migrating from the original collector.

Opt-in: our layout stays the default. :class:`CompatWriter` writes, per run, into ``bucket``
(the original used ``spotlake``)::

    latest_data/latest_azure.json                 the latest merged snapshot, JSON records
    query-selector/azure/query_selector.json      distinct {InstanceTier, InstanceType, Region},
                                                  accumulated over runs (as the original did)
    rawdata/azure/YYYY/MM/DD/HH-MM-SS.csv.gz      the merged snapshot of the run (gzip CSV)

Columns are the original's: ``InstanceTier``/``InstanceType`` (the size split at its first ``_``:
``Standard_D2s_v3`` -> ``Standard``, ``D2s_v3``), ``Region`` (display name, e.g. ``East US``),
``AvailabilityZone``, ``DesiredCount``, ``OndemandPrice``, ``SpotPrice``, ``Savings``, ``IF``,
``Score``, ``T2``, ``T3`` and ``time`` (``YYYY-MM-DD HH:MM:SS``, UTC); the JSON adds ``id``
(1-based). Like the original, the JSON fills missing numbers with ``-1`` and missing strings with
``"N/A"`` so existing front ends keep working; the CSV leaves them empty. The run minute keys the
raw object (seconds ``00``), so writing a run twice overwrites the same objects.

The original set a ``public-read`` ACL; buckets created since April 2023 disable ACLs, so this
writer does not, unless ``public_read=True``. Serve the JSON with a bucket policy or CloudFront.
"""

from __future__ import annotations

import gzip
import io
import json
from datetime import datetime
from typing import Any, Final

import attrs
import pandas as pd

from spotlake.errors import ConfigError, StorageError
from spotlake.model import SNAPSHOT_SCHEMA
from spotlake.storage.aws import error_code, error_message, make_client
from spotlake.storage.layout import run_minute

__all__ = [
    "LATEST_KEY",
    "QUERY_SELECTOR_KEY",
    "RAW_PREFIX",
    "CompatWriter",
    "raw_key",
    "to_original_frame",
]

LATEST_KEY: Final = "latest_data/latest_azure.json"
QUERY_SELECTOR_KEY: Final = "query-selector/azure/query_selector.json"
RAW_PREFIX: Final = "rawdata/azure"

_SELECTOR_COLUMNS: Final = ["InstanceTier", "InstanceType", "Region"]
_NUMERIC: Final = ["DesiredCount", "OndemandPrice", "SpotPrice", "Savings", "IF", "T2", "T3"]
_TEXT: Final = ["InstanceTier", "InstanceType", "Region", "AvailabilityZone", "Score"]


def raw_key(run_at: datetime) -> str:
    """``rawdata/azure/2026/01/01/12-30-00.csv.gz`` for a run at 12:30 UTC."""
    minute = run_minute(run_at)
    return f"{RAW_PREFIX}/{minute:%Y/%m/%d}/{minute:%H-%M-%S}.csv.gz"


def to_original_frame(snapshot: pd.DataFrame, *, run_at: datetime) -> pd.DataFrame:
    """The merged snapshot in the original collector's columns (vectorised)."""
    missing = [c for c in SNAPSHOT_SCHEMA if c not in snapshot.columns]
    if missing:
        raise ConfigError(f"the merged snapshot lacks columns {missing}; build it with SNAPSHOT_SCHEMA")
    size = snapshot["size"].astype("string")
    split = size.str.split("_", n=1, expand=True)
    tier = split[0] if 0 in split.columns else size
    itype = split[1].fillna(size) if 1 in split.columns else size
    region = snapshot["region_name"].astype("string").fillna(snapshot["region"].astype("string"))
    return pd.DataFrame(
        {
            "InstanceTier": tier.astype("string"),
            "InstanceType": itype.astype("string"),
            "Region": region,
            "AvailabilityZone": snapshot["zone"].astype("string"),
            "DesiredCount": snapshot["desired_count"].astype("Float64"),
            "OndemandPrice": snapshot["ondemand_price"].astype("Float64"),
            "SpotPrice": snapshot["spot_price"].astype("Float64"),
            "Savings": snapshot["savings_pct"].astype("Float64"),
            "IF": snapshot["if_score"].astype("Float64"),
            "Score": snapshot["score"].astype("string"),
            "T2": snapshot["t2"].astype("Float64"),
            "T3": snapshot["t3"].astype("Float64"),
            # When each row's score was observed: the run's time, or earlier for a row served with
            # its last known values because this run's call for it failed.
            "time": _times(snapshot, run_at),
        },
        index=pd.RangeIndex(len(snapshot)),
    )


def _times(snapshot: pd.DataFrame, run_at: datetime) -> pd.Series:
    observed = pd.to_datetime(snapshot["observed_at"], utc=True).reset_index(drop=True)
    observed = observed.fillna(pd.Timestamp(run_minute(run_at)))
    return observed.dt.strftime("%Y-%m-%d %H:%M:%S").astype("string")


def _json_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    filled = frame.copy()
    for col in _NUMERIC:
        filled[col] = filled[col].fillna(-1.0)
    for col in _TEXT:
        filled[col] = filled[col].fillna("N/A")
    filled.insert(0, "id", range(1, len(filled) + 1))
    records: list[dict[str, Any]] = json.loads(filled.to_json(orient="records"))
    return records


@attrs.define(kw_only=True)
class CompatWriter:
    """Writes a run's merged snapshot in the original deployment's S3 layout (see the module docstring)."""

    client: Any = None
    bucket: str = "spotlake"
    public_read: bool = False

    def __attrs_post_init__(self) -> None:
        if self.client is None:
            self.client = make_client("s3")

    def write(self, snapshot: pd.DataFrame, *, run_at: datetime) -> list[str]:
        """Write the three objects for one run; return their keys."""
        frame = to_original_frame(snapshot, run_at=run_at)
        latest = json.dumps(_json_records(frame)).encode()
        csv = io.BytesIO()
        with gzip.GzipFile(fileobj=csv, mode="wb", mtime=0) as gz:
            gz.write(frame.to_csv(index=False).encode())
        selector = self._selector(frame)
        written = []
        for key, body, content_type in (
            (raw_key(run_at), csv.getvalue(), "text/csv"),
            (QUERY_SELECTOR_KEY, selector, "application/json"),
            (LATEST_KEY, latest, "application/json"),
        ):
            self._put(key, body, content_type)
            written.append(key)
        return written

    def _selector(self, frame: pd.DataFrame) -> bytes:
        previous = self._get_json(QUERY_SELECTOR_KEY)
        current = frame[_SELECTOR_COLUMNS].dropna().astype(object)
        if isinstance(previous, list) and previous:
            old = pd.DataFrame(previous).reindex(columns=_SELECTOR_COLUMNS).dropna().astype(object)
            current = pd.concat([old, current], ignore_index=True)
        merged = current.drop_duplicates().sort_values(_SELECTOR_COLUMNS).reset_index(drop=True)
        return json.dumps(merged.to_dict(orient="records")).encode()

    def _get_json(self, key: str) -> Any:
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except Exception as exc:
            if error_code(exc) in ("NoSuchKey", "404"):
                return None
            raise StorageError(
                f"cannot read s3://{self.bucket}/{key}: {error_code(exc)}: {error_message(exc)}"
            ) from exc
        try:
            return json.loads(body)
        except ValueError as exc:
            raise StorageError(
                f"s3://{self.bucket}/{key} is not JSON ({exc}); delete it to rebuild it from this run"
            ) from exc

    def _put(self, key: str, body: bytes, content_type: str) -> None:
        extra = {"ACL": "public-read"} if self.public_read else {}
        try:
            self.client.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType=content_type, **extra)
        except Exception as exc:
            raise StorageError(
                f"cannot write s3://{self.bucket}/{key} (original layout): {error_code(exc)}: "
                f"{error_message(exc)}"
            ) from exc
