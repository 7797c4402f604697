"""Change detection between two views of the data: new, changed and ceased rows.

A *view* is a frame with :data:`~spotlake.model.SNAPSHOT_SCHEMA` holding at most one row per
:data:`~spotlake.model.SNAPSHOT_KEY` (size, region, zone, desired_count); ``<NA>`` is a real key
value (a regional row has zone ``<NA>``). :func:`diff` compares two views on the **value
columns only** (:data:`VALUE_COLUMNS`: everything except the key and ``observed_at``), so
re-observing identical values is not a change. :func:`apply` replays a changeset on the older
view; for any two views ``apply(prev, diff(prev, cur))`` equals ``cur`` on the key and value
columns (property-tested).

Equality rules (documented in docs/data-model.md):

* ``<NA>`` equals ``<NA>``; ``<NA>`` never equals a value.
* float columns (prices, savings, IF score) are compared exactly after rounding to
  :data:`FLOAT_DECIMALS` decimals, so representation noise (``0.1 + 0.2``) is not a change;
* every other column is compared exactly (strings are case-sensitive).

The comparison itself (:func:`differences`) works on two position-aligned frames so the engine,
which aligns rows by integer cell id, uses the same rules without a key join.

**Column levels.** The value columns describe three different things (:data:`COUNT_COLUMNS`:
the SPS answer for one desired count; :data:`CELL_COLUMNS`: the T2/T3 tiers of a
(size, region, zone) cell; :data:`PAIR_COLUMNS`: prices, eviction rate, family and region name of
a (region, size) pair). The engine's changesets are *levelled*: a cell- or pair-level change is
recorded once, on the row that observed it, not again on every count's row as the rotation comes
round. :func:`level_differences` is that comparison and :func:`apply_levels` the consumer's replay:
for an engine run, ``apply_levels(prev_view, changes)`` equals the new state's view on the key and
value columns (property-tested in tests/scoring/test_engine.py). :func:`diff`/:func:`apply` stay
the plain per-key comparison of two arbitrary views.
"""

from __future__ import annotations

from datetime import datetime
from typing import Final

import numpy as np
import numpy.typing as npt
import pandas as pd

from spotlake.errors import ConfigError
from spotlake.model import (
    CHANGE_KINDS,
    CHANGES_SCHEMA,
    SNAPSHOT_KEY,
    SNAPSHOT_SCHEMA,
    ChangeKind,
    Schema,
    conform,
)

__all__ = [
    "CELL_COLUMNS",
    "COUNT_COLUMNS",
    "FLOAT_DECIMALS",
    "PAIR_COLUMNS",
    "VALUE_COLUMNS",
    "apply",
    "apply_levels",
    "changed_fields",
    "conformed",
    "diff",
    "differences",
    "frame_repr",
    "latest_per_cell",
    "level_differences",
    "sort_view",
]

#: Columns a change is detected on: everything but the key and the observation time.
VALUE_COLUMNS: Final[tuple[str, ...]] = tuple(
    c for c in SNAPSHOT_SCHEMA if c not in SNAPSHOT_KEY and c != "observed_at"
)

#: Count-level columns: what the SPS call for one desired count answered. A row's values are
#: compared with the same (size, region, zone, count)'s last observation.
COUNT_COLUMNS: Final[tuple[str, ...]] = ("score", "score_value", "quota_available")

#: Cell-level columns: the tiers of a (size, region, zone) cell, derived from all its counts.
#: Compared with the cell's current values (its latest live observation of any count).
CELL_COLUMNS: Final[tuple[str, ...]] = ("t2", "t3")

#: Pair-level columns: properties of a (region, size) pair (``family`` of the size alone). Every
#: cell of a pair observed in one run carries the same values, so the cell's latest observation
#: is the pair's current value for that cell and is what a row is compared with.
PAIR_COLUMNS: Final[tuple[str, ...]] = (
    "region_name",
    "family",
    "ondemand_price",
    "spot_price",
    "savings_pct",
    "eviction_bucket",
    "if_score",
)

#: Float values are equal when equal after rounding to this many decimals. Retail prices are
#: published with at most 6 significant decimals; below that is floating-point noise.
FLOAT_DECIMALS: Final = 6

_FLOAT_COLUMNS: Final = frozenset(c for c in VALUE_COLUMNS if SNAPSHOT_SCHEMA[c] == "float64")
_KEY: Final = list(SNAPSHOT_KEY)
_CELL: Final = ["size", "region", "zone"]
#: Columns a consumer keeps per cell rather than per key (cell- and pair-level).
_PER_CELL: Final = (*CELL_COLUMNS, *PAIR_COLUMNS)
#: Change kinds that remove a key from a consumer's view.
_REMOVALS: Final = (ChangeKind.CEASED.value, ChangeKind.EXPIRED.value)


def frame_repr(frame: pd.DataFrame) -> str:
    """Short ``repr`` for a frame held by a value object (a 1.6M-row frame is not a repr)."""
    return f"<DataFrame {len(frame)} rows x {len(frame.columns)} columns>"


def conformed(frame: pd.DataFrame, schema: Schema, *, source: str) -> pd.DataFrame:
    """:func:`~spotlake.model.conform`, skipped when ``frame`` already has exactly the schema.

    The engine passes frames between its stages many times per run; re-casting every column of
    a frame that is already right costs more than the rest of a small run.
    """
    if list(frame.columns) == list(schema) and all(
        frame[c].dtype == pd.api.types.pandas_dtype(d) for c, d in schema.items()
    ):
        index = frame.index
        if isinstance(index, pd.RangeIndex) and index.start == 0 and index.step == 1:
            return frame
        return frame.reset_index(drop=True)
    return conform(frame, schema, source=source)


def _column_differs(a: pd.Series, b: pd.Series, *, is_float: bool) -> npt.NDArray[np.bool_]:
    a_na = a.isna().to_numpy(dtype=bool)
    b_na = b.isna().to_numpy(dtype=bool)
    if is_float:
        av = np.round(a.to_numpy(dtype=np.float64, na_value=np.nan), FLOAT_DECIMALS)
        bv = np.round(b.to_numpy(dtype=np.float64, na_value=np.nan), FLOAT_DECIMALS)
        with np.errstate(invalid="ignore"):
            equal = av == bv
    else:
        # Extension arrays compare element-wise with <NA> where either side is missing; the
        # missing cases are decided by the masks below, so <NA> -> False is safe here.
        eq = a.array == b.array
        if isinstance(eq, pd.api.extensions.ExtensionArray):
            equal = np.asarray(eq.to_numpy(dtype=bool, na_value=False), dtype=bool)
        else:
            equal = np.asarray(eq, dtype=bool)
    both_present = ~a_na & ~b_na
    return np.asarray((a_na != b_na) | (both_present & ~equal), dtype=bool)


def differences(prev: pd.DataFrame, cur: pd.DataFrame) -> npt.NDArray[np.bool_]:
    """Which value columns differ, row by row, between two position-aligned frames.

    Returns a boolean matrix of shape ``(len(cur), len(VALUE_COLUMNS))``, columns in
    :data:`VALUE_COLUMNS` order. Both frames need the value columns with snapshot dtypes.
    """
    if len(prev) != len(cur):
        raise ConfigError(f"differences() needs aligned frames, got {len(prev)} and {len(cur)} rows")
    out = np.zeros((len(cur), len(VALUE_COLUMNS)), dtype=bool)
    for j, col in enumerate(VALUE_COLUMNS):
        out[:, j] = _column_differs(prev[col], cur[col], is_float=col in _FLOAT_COLUMNS)
    return out


def changed_fields(matrix: npt.NDArray[np.bool_]) -> pd.api.extensions.ExtensionArray:
    """Comma-separated names of the differing columns per row (``<NA>`` for a row with none).

    Vectorised: each row's pattern is packed into an integer, each distinct pattern is joined
    into a string once, and the strings are gathered back.
    """
    n, k = matrix.shape
    if n == 0:
        return pd.array([], dtype="string")
    weights = np.left_shift(np.int64(1), np.arange(k, dtype=np.int64))
    codes = matrix.astype(np.int64) @ weights
    uniq, inverse = np.unique(codes, return_inverse=True)
    names: list[str | None] = []
    for code in uniq.tolist():
        cols = [VALUE_COLUMNS[j] for j in range(k) if code >> j & 1]
        names.append(",".join(cols) if cols else None)
    labels = np.array(names, dtype=object)
    return pd.array(labels[inverse.reshape(-1)], dtype="string")


def sort_view(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows sorted by the snapshot key (``<NA>`` last), with a fresh RangeIndex."""
    return frame.sort_values(_KEY, na_position="last", kind="stable").reset_index(drop=True)


def _check_view(frame: pd.DataFrame, name: str) -> pd.DataFrame:
    view = conformed(frame, SNAPSHOT_SCHEMA, source=name)
    dup = view.duplicated(_KEY)
    if dup.any():
        first = view.loc[dup, _KEY].iloc[0].tolist()
        raise ConfigError(
            f"{name} has {int(dup.sum())} duplicate key(s) (size, region, zone, desired_count), "
            f"e.g. {first}: a view holds one row per key"
        )
    return view


def _to_changes(rows: pd.DataFrame, kind: str, fields: pd.api.extensions.ExtensionArray) -> pd.DataFrame:
    out = rows.reset_index(drop=True).copy()
    out["change"] = pd.array([kind] * len(out), dtype="string")
    out["changed_fields"] = fields
    return out


def diff(prev: pd.DataFrame, cur: pd.DataFrame, *, at: datetime | None = None) -> pd.DataFrame:
    """The changeset turning view ``prev`` into view ``cur`` (:data:`~spotlake.model.CHANGES_SCHEMA`).

    * ``new``: key only in ``cur``; the row is ``cur``'s; ``changed_fields`` is ``<NA>``.
    * ``changed``: key in both, some value column differs; the row is ``cur``'s and
      ``changed_fields`` lists the differing columns (schema order, comma-separated).
    * ``ceased``: key only in ``prev``; the row carries ``prev``'s last values, with
      ``observed_at`` set to ``at`` (when the absence was observed) if given.

    Rows are sorted by key. :class:`~spotlake.errors.ConfigError` if a view repeats a key.
    """
    p = _check_view(prev, "previous view")
    c = _check_view(cur, "current view")
    left = p[_KEY].assign(_p=np.arange(len(p)))
    right = c[_KEY].assign(_c=np.arange(len(c)))
    joined = left.merge(right, on=_KEY, how="outer", sort=False)
    pi = joined["_p"].to_numpy(dtype=np.float64, na_value=np.nan)
    ci = joined["_c"].to_numpy(dtype=np.float64, na_value=np.nan)
    in_p, in_c = ~np.isnan(pi), ~np.isnan(ci)

    new_rows = c.take(ci[in_c & ~in_p].astype(np.int64))
    ceased_rows = p.take(pi[in_p & ~in_c].astype(np.int64)).copy()
    if at is not None:
        ceased_rows["observed_at"] = pd.Series(
            pd.Timestamp(at), index=ceased_rows.index, dtype=SNAPSHOT_SCHEMA["observed_at"]
        )
    both = in_p & in_c
    prev_both = p.take(pi[both].astype(np.int64))
    cur_both = c.take(ci[both].astype(np.int64))
    matrix = differences(prev_both, cur_both)
    changed = matrix.any(axis=1)

    parts = [
        _to_changes(new_rows, ChangeKind.NEW.value, pd.array([None] * len(new_rows), dtype="string")),
        _to_changes(
            cur_both.iloc[np.flatnonzero(changed)], ChangeKind.CHANGED.value, changed_fields(matrix[changed])
        ),
        _to_changes(
            ceased_rows, ChangeKind.CEASED.value, pd.array([None] * len(ceased_rows), dtype="string")
        ),
    ]
    out = pd.concat(parts, ignore_index=True)
    return sort_view(conformed(out, CHANGES_SCHEMA, source="changeset"))


def level_differences(own: pd.DataFrame, latest: pd.DataFrame, cur: pd.DataFrame) -> npt.NDArray[np.bool_]:
    """:func:`differences` at each column's level, for three position-aligned frames.

    Count-level columns (:data:`COUNT_COLUMNS`) of ``cur`` are compared with ``own`` (the same
    key's last observation), cell- and pair-level columns (:data:`CELL_COLUMNS`,
    :data:`PAIR_COLUMNS`) with ``latest`` (the cell's latest observation of any count). Same
    shape and column order as :func:`differences`.
    """
    if not len(own) == len(latest) == len(cur):
        raise ConfigError(
            f"level_differences() needs aligned frames, got {len(own)}, {len(latest)} and {len(cur)} rows"
        )
    out = np.zeros((len(cur), len(VALUE_COLUMNS)), dtype=bool)
    for j, col in enumerate(VALUE_COLUMNS):
        ref = own if col in COUNT_COLUMNS else latest
        out[:, j] = _column_differs(ref[col], cur[col], is_float=col in _FLOAT_COLUMNS)
    return out


def latest_per_cell(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per (size, region, zone) cell of ``frame``: the one with the latest ``observed_at``.

    Ties go to the smallest ``desired_count`` (the engine's rule: it never produces ties within a
    cell, but an arbitrary view may). Rows keep ``frame``'s columns; order is unspecified.
    """
    ranked = frame.sort_values(
        ["observed_at", "desired_count"], ascending=[False, True], na_position="last", kind="stable"
    )
    return ranked.drop_duplicates(_CELL, keep="first")


def _checked_changes(p: pd.DataFrame, changes: pd.DataFrame, *, new_replaces: bool = False) -> pd.DataFrame:
    """The changeset conformed, after checking it fits view ``p`` (see :func:`apply`).

    ``new_replaces``: a ``new`` row may name a key ``p`` has (a consumer's replay: a key forgotten
    by age and observed again in the same run is recorded once, as new).
    """
    ch = conformed(changes, CHANGES_SCHEMA, source="changeset")
    kinds = set(ch["change"].dropna().unique().tolist())
    unknown = sorted(kinds - set(CHANGE_KINDS))
    if ch["change"].isna().any() or unknown:
        raise ConfigError(f"changeset has unknown or missing change kinds {unknown}: expected {CHANGE_KINDS}")
    if ch.duplicated(_KEY).any():
        raise ConfigError("changeset repeats a key: each key changes at most once per changeset")
    probe = ch[[*_KEY, "change"]].merge(p[_KEY].assign(_present=True), on=_KEY, how="left", sort=False)
    present = probe["_present"].notna().to_numpy()
    is_new = (probe["change"] == ChangeKind.NEW.value).to_numpy(dtype=bool)
    if (present & is_new).any() and not new_replaces:
        raise ConfigError("changeset marks as new a key the previous view already has")
    if (~present & ~is_new).any():
        raise ConfigError("changeset changes or ceases a key the previous view does not have")
    return ch


def _replayed(p: pd.DataFrame, ch: pd.DataFrame) -> pd.DataFrame:
    """Rows of ``p`` whose key the changeset does not touch, plus its new and changed rows."""
    touched = p[_KEY].merge(ch[_KEY].assign(_hit=True), on=_KEY, how="left", sort=False)
    keep = p[touched["_hit"].isna().to_numpy()]
    upserts = ch[~ch["change"].isin(_REMOVALS).to_numpy(dtype=bool)][list(SNAPSHOT_SCHEMA)]
    return pd.concat([keep, upserts], ignore_index=True)


def apply(prev: pd.DataFrame, changes: pd.DataFrame) -> pd.DataFrame:
    """Replay ``changes`` on view ``prev``: drop ceased keys, insert new rows, replace changed rows.

    The inverse of :func:`diff`. :class:`~spotlake.errors.ConfigError` when the changeset does not
    fit ``prev`` (a ``new`` key already present, a ``changed``/``ceased`` key absent, an unknown
    change kind, a repeated key).
    """
    p = _check_view(prev, "previous view")
    out = _replayed(p, _checked_changes(p, changes))
    return sort_view(conformed(out, SNAPSHOT_SCHEMA, source="applied view"))


def apply_levels(prev: pd.DataFrame, changes: pd.DataFrame) -> pd.DataFrame:
    """Replay a levelled (engine) changeset on view ``prev``, the way a time-series consumer does.

    Per key, the count-level columns come from the key's latest record: its ``new``/``changed``
    row in ``changes`` if any, else ``prev``'s row (``ceased`` and ``expired`` keys are dropped; a
    ``new`` row replaces the key). Per cell, the cell- and pair-level columns come from the cell's
    latest record: its ``new``/``changed`` row in ``changes`` if any (latest ``observed_at``, ties to
    the smallest count), else ``prev``'s latest row of that cell. Every remaining key of a cell
    carries those cell values. ``observed_at`` is the key's own. Same errors as :func:`apply`, but a
    ``new`` row may name a key ``prev`` has.
    """
    p = _check_view(prev, "previous view")
    ch = _checked_changes(p, changes, new_replaces=True)
    keyed = _replayed(p, ch)
    upserts = ch[~ch["change"].isin(_REMOVALS).to_numpy(dtype=bool)][list(SNAPSHOT_SCHEMA)]
    # The changeset is newer than prev, so its records win; within each, the latest row per cell.
    memory = pd.concat([latest_per_cell(upserts), latest_per_cell(p)], ignore_index=True)
    memory = memory.drop_duplicates(_CELL, keep="first")[[*_CELL, *_PER_CELL]]
    out = keyed.drop(columns=list(_PER_CELL)).merge(memory, on=_CELL, how="left", sort=False)
    return sort_view(conformed(out[list(SNAPSHOT_SCHEMA)], SNAPSHOT_SCHEMA, source="applied view"))
