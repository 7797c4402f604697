"""``spotlake show --where``: row filters ``COLUMN OP VALUE`` typed by the column's dtype.

Operators: ``=`` (or ``==``), ``!=``, ``<``, ``<=``, ``>``, ``>=``. The value is read as the
column's type: a number for numeric columns, ``true``/``false`` for booleans, an ISO 8601 time
(UTC when no offset is given) for time columns, text otherwise. Text equality ignores case
(``score=high`` finds ``High``); text columns take only ``=`` and ``!=``. ``null`` (any case)
matches a missing value: ``zone=null``, ``spot_price!=null``. A row whose value is missing matches
only ``COLUMN=null``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from datetime import UTC, datetime

import pandas as pd

from spotlake.errors import ConfigError

__all__ = ["OPERATORS", "WHERE_HELP", "apply_where", "parse_where"]

OPERATORS = ("!=", "<=", ">=", "==", "=", "<", ">")

WHERE_HELP = (
    "filter rows: COLUMN OP VALUE with OP one of = != < <= > >= (repeatable, all must hold; quote it "
    "in a shell: --where 'spot_price<0.01'). Values are typed by the column: numbers, true/false, "
    "ISO 8601 times; text compares case-insensitively and takes only = and !=; 'null' matches a "
    "missing value (zone=null)"
)

_CLAUSE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(!=|<=|>=|==|=|<|>)\s*(.*?)\s*$", re.S)


def parse_where(clause: str) -> tuple[str, str, str]:
    """``"spot_price<0.01"`` -> ``("spot_price", "<", "0.01")``; :class:`ConfigError` otherwise."""
    match = _CLAUSE.match(clause)
    if match is None:
        raise ConfigError(
            f"--where {clause!r}: expected COLUMN OP VALUE with OP one of = != < <= > >= "
            "(e.g. score=high, 'spot_price<0.01')"
        )
    column, op, value = match.groups()
    return column, "=" if op == "==" else op, value


def apply_where(frame: pd.DataFrame, clauses: Sequence[str]) -> pd.DataFrame:
    """The rows of ``frame`` passing every clause."""
    keep = pd.Series(True, index=frame.index)
    for clause in clauses:
        column, op, text = parse_where(clause)
        if column not in frame.columns:
            raise ConfigError(
                f"--where {clause!r}: no column {column!r}; columns: {', '.join(map(str, frame.columns))}"
            )
        keep &= _mask(frame[column], op, text, clause)
    return frame[keep]


def _mask(series: pd.Series, op: str, text: str, clause: str) -> pd.Series:
    missing = series.isna()
    if text.lower() in {"null", "none"}:
        if op == "=":
            return missing
        if op == "!=":
            return ~missing
        raise ConfigError(f"--where {clause!r}: null takes only = and !=")
    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype):
        if text.lower() not in {"true", "false"}:
            raise ConfigError(f"--where {clause!r}: {series.name} is true/false, not {text!r}")
        return _compare(series, op, text.lower() == "true", missing, clause, ordered=False)
    if pd.api.types.is_numeric_dtype(dtype):
        try:
            number = float(text)
        except ValueError:
            number = math.nan
        if math.isnan(number):
            raise ConfigError(f"--where {clause!r}: {series.name} is numeric, {text!r} is not a number")
        return _compare(series, op, number, missing, clause, ordered=True)
    if pd.api.types.is_datetime64_any_dtype(dtype):
        try:
            when = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError as exc:
            raise ConfigError(
                f"--where {clause!r}: {series.name} is a time, {text!r} is not ISO 8601 "
                "(e.g. 2026-03-02T00:10Z)"
            ) from exc
        stamp = pd.Timestamp(when if when.tzinfo else when.replace(tzinfo=UTC))
        if getattr(series.dt, "tz", None) is None:
            stamp = stamp.tz_convert(UTC).tz_localize(None)
        return _compare(series, op, stamp, missing, clause, ordered=True)
    if op not in {"=", "!="}:
        raise ConfigError(
            f"--where {clause!r}: {series.name} is text; it takes only = and != (case-insensitive)"
        )
    folded = series.astype("string").str.casefold()
    return _compare(folded, op, text.casefold(), missing, clause, ordered=False)


def _compare(
    series: pd.Series, op: str, value: object, missing: pd.Series, clause: str, *, ordered: bool
) -> pd.Series:
    if op == "=":
        result = series == value
    elif op == "!=":
        result = series != value
    elif not ordered:
        raise ConfigError(f"--where {clause!r}: {series.name} takes only = and !=")
    elif op == "<":
        result = series < value
    elif op == "<=":
        result = series <= value
    elif op == ">":
        result = series > value
    else:
        result = series >= value
    return result.fillna(False).astype(bool) & ~missing
