"""The one timestamp format of the command's output, and the 10-minute run-time grid.

Every time the CLI prints, as text or JSON, is ISO 8601 in UTC to the second with an explicit
``+00:00`` offset: ``2026-03-02T00:10:00+00:00`` (what :meth:`datetime.isoformat` gives for a UTC
time without microseconds, and what ``spotlake.serde`` writes for whole-second times).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd

__all__ = ["GRID_MINUTES", "iso", "iso_columns", "normalise_times", "snap_to_grid"]

#: Runs are scheduled every 10 minutes; ``collect`` snaps its run time down to this grid.
GRID_MINUTES = 10

#: An ISO 8601 time with an offset, as spotlake.serde and pandas write them.
_ISO_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d(:\d\d(\.\d+)?)?(Z|[+-]\d\d:\d\d)$")


def iso(value: datetime) -> str:
    """``value`` as the CLI prints every time: ISO 8601, UTC, whole seconds, ``+00:00``."""
    aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    return aware.astimezone(UTC).isoformat(timespec="seconds")


def snap_to_grid(value: datetime, minutes: int = GRID_MINUTES) -> datetime:
    """The grid point at or before ``value`` (UTC): 12:17:40 -> 12:10:00."""
    aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    aware = aware.astimezone(UTC).replace(second=0, microsecond=0)
    return aware - timedelta(minutes=aware.minute % minutes)


def normalise_times(value: Any) -> Any:
    """A JSON-ready payload with every ISO time string rewritten by :func:`iso`."""
    if isinstance(value, dict):
        return {k: normalise_times(v) for k, v in value.items()}
    if isinstance(value, list):
        return [normalise_times(v) for v in value]
    if isinstance(value, str) and _ISO_TIME.match(value):
        return iso(datetime.fromisoformat(value.replace("Z", "+00:00")))
    return value


def iso_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with its datetime columns as :func:`iso` strings (missing times stay missing)."""
    out = frame.copy()
    for col in out.columns:
        series = out[col]
        if pd.api.types.is_datetime64_any_dtype(series.dtype):
            if getattr(series.dt, "tz", None) is None:
                series = series.dt.tz_localize(UTC)
            text = series.dt.tz_convert(UTC).dt.strftime("%Y-%m-%dT%H:%M:%S+00:00")
            out[col] = text.astype(object).where(series.notna(), None)
    return out
