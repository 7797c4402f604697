"""T2/T3 history: the latest observation per desired count, and the tiers derived from it.

Each 10-minute run scores one desired count, so what a (size, region, zone) *cell* can do is
known only by remembering the latest observation of every count. :class:`ScoringState` is that
memory, kept columnar: a ``cells`` frame (one row per cell, its integer position is the cell id)
and one *slot* frame per count in :data:`~spotlake.model.DESIRED_COUNTS`, row-aligned with
``cells``, holding the values of the cell's last observation at that count (``observed_at``
``NaT`` = never observed or forgotten). The count-level columns (score, score_value,
quota_available) are that observation's; the engine keeps the cell- and pair-level columns
(T2/T3, prices, eviction, family, region name) of every live slot at the cell's current values,
those of its latest observation of any count (:meth:`ScoringState.latest_rows`). At 60 regions
x 800 sizes x 3 zones that is ~144k cells and 11 slot frames, never Python dicts.

The *view* of a state (:meth:`ScoringState.view`) is the same data as one long frame with
:data:`~spotlake.model.SNAPSHOT_SCHEMA` (one row per live (size, region, zone, count)); it is what
change detection compares and what :meth:`ScoringState.to_frames` serialises.

Tiers (:func:`tiers`; docs/data-model.md has the worked example). For a threshold ``k`` (3 for T3,
2 for T2), over the live slots of a cell in ascending count order:

* a slot *qualifies* when its score value is ``>= k``;
* a slot *breaks* when it was observed with a score value ``< k`` or with no numeric score
  (``RestrictedSkuNotAvailable``, ``DataNotFoundOrStale``, unknown strings);
* slots never observed, or forgotten because older than ``max_age``, are skipped;
* ``T_k`` = the largest qualifying count that comes before the first breaking count; ``0`` when
  there is none (e.g. count 1 scored Low: zero instances are safe); ``<NA>`` when the cell has no
  live slot at all.

So a drop at count ``n`` caps the tier below ``n`` even if a larger count scored High earlier.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Final

import attrs
import numpy as np
import numpy.typing as npt
import pandas as pd

from spotlake.errors import ConfigError, CorruptStoreError, PayloadError
from spotlake.model import AZURE_SCORES, DESIRED_COUNTS, SNAPSHOT_SCHEMA, ScoreScale, empty_frame
from spotlake.scoring.diff import conformed, frame_repr

__all__ = [
    "CELL_KEY",
    "DEFAULT_MAX_AGE",
    "SLOT_COLUMNS",
    "STATE_FRAME",
    "ScoringState",
    "clear_rows",
    "tiers",
    "utc_timestamp",
]

#: Key of a cell: the tiers are per (size, region, zone).
CELL_KEY: Final[tuple[str, ...]] = ("size", "region", "zone")

#: What a slot remembers about the last observation of one count: every snapshot column but the key.
SLOT_COLUMNS: Final[tuple[str, ...]] = tuple(
    c for c in SNAPSHOT_SCHEMA if c not in (*CELL_KEY, "desired_count")
)

#: Observations older than this are forgotten. A healthy rotation refreshes every count every
#: 110 minutes; 6 hours tolerates two fully failed rotations before a count stops counting.
DEFAULT_MAX_AGE: Final = timedelta(hours=6)

#: Name of the single frame :meth:`ScoringState.to_frames` produces.
STATE_FRAME: Final = "rows"

_COUNTS: Final = np.asarray(DESIRED_COUNTS, dtype=np.int64)
_TIME_DTYPE: Final = SNAPSHOT_SCHEMA["observed_at"]
_NAT: Final = np.iinfo(np.int64).min


def utc_timestamp(at: datetime) -> pd.Timestamp:
    """``at`` as a UTC timestamp in microseconds; :class:`ConfigError` for a naive datetime."""
    if at.tzinfo is None or at.utcoffset() is None:
        raise ConfigError(f"run time {at!r} has no time zone: pass an aware datetime (UTC)")
    return pd.Timestamp(at).tz_convert("UTC").as_unit("us")


def tiers(
    values: npt.NDArray[np.integer],
    observed: npt.NDArray[np.bool_],
    *,
    scale: ScoreScale = AZURE_SCORES,
) -> tuple[pd.api.extensions.ExtensionArray, pd.api.extensions.ExtensionArray]:
    """(T2, T3) per row of a score matrix, as ``Int64`` arrays (see the module docstring).

    ``values`` and ``observed`` have shape ``(n, len(DESIRED_COUNTS))``, columns in count order;
    ``values`` holds the score value (on ``scale``: 3/2/1 for Azure) and anything ``< 1`` for an
    observed slot without a numeric score; it is ignored where ``observed`` is false.
    """
    if values.shape != observed.shape or values.ndim != 2 or values.shape[1] != len(DESIRED_COUNTS):
        raise ConfigError(
            f"tiers() needs two (n, {len(DESIRED_COUNTS)}) matrices, got {values.shape} and {observed.shape}"
        )
    width = len(DESIRED_COUNTS)
    cols = np.arange(width)
    none_live: npt.NDArray[np.bool_] = np.asarray(~observed.any(axis=1), dtype=bool)
    out: list[pd.api.extensions.ExtensionArray] = []
    for k in (scale.t2_at, scale.t3_at):
        good = observed & (values >= k)
        bad = observed & ~(values >= k)
        first_bad = np.where(bad.any(axis=1), bad.argmax(axis=1), width)
        qualifying = good & (cols[None, :] < first_bad[:, None])
        last = width - 1 - qualifying[:, ::-1].argmax(axis=1)
        tier = np.where(qualifying.any(axis=1), _COUNTS[last], 0).astype(np.int64)
        out.append(pd.arrays.IntegerArray(tier, none_live.copy()))
    return out[0], out[1]


def _empty_slot(n: int) -> pd.DataFrame:
    frame = empty_frame({c: SNAPSHOT_SCHEMA[c] for c in SLOT_COLUMNS})
    return frame.reindex(pd.RangeIndex(n))


def clear_rows(slot: pd.DataFrame, mask: npt.NDArray[np.bool_]) -> pd.DataFrame:
    """``slot`` with the masked rows emptied (every column missing), dtypes kept."""
    if not mask.any():
        return slot
    return slot.mask(np.broadcast_to(mask[:, None], slot.shape))


def _cells_frame(frame: pd.DataFrame) -> pd.DataFrame:
    return conformed(frame, {c: SNAPSHOT_SCHEMA[c] for c in CELL_KEY}, source="scoring state cells")


@attrs.frozen(kw_only=True, eq=False)
class ScoringState:
    """The engine's memory between runs (columnar; see the module docstring).

    Build one with :meth:`empty` or :meth:`from_frames`; :func:`spotlake.scoring.engine.score_run`
    returns the next one. Compare states with :meth:`equals` (frames have no ``==``).
    """

    cells: pd.DataFrame = attrs.field(repr=frame_repr)
    slots: tuple[pd.DataFrame, ...] = attrs.field(repr=lambda s: f"<{len(s)} slot frames>")

    def __attrs_post_init__(self) -> None:
        if len(self.slots) != len(DESIRED_COUNTS):
            raise ConfigError(f"a scoring state has {len(DESIRED_COUNTS)} slots, got {len(self.slots)}")
        if any(len(s) != len(self.cells) for s in self.slots):
            raise ConfigError("every slot frame of a scoring state must have one row per cell")

    # -- construction ------------------------------------------------------------------------

    @classmethod
    def empty(cls) -> ScoringState:
        """A state that has seen nothing (the first run)."""
        return cls(
            cells=empty_frame({c: SNAPSHOT_SCHEMA[c] for c in CELL_KEY}),
            slots=tuple(_empty_slot(0) for _ in DESIRED_COUNTS),
        )

    @classmethod
    def from_view(cls, view: pd.DataFrame) -> ScoringState:
        """The state whose :meth:`view` is ``view`` (a SNAPSHOT_SCHEMA frame, one row per key).

        :class:`CorruptStoreError` when ``view`` breaks a state invariant (missing or unknown
        desired count, missing observation time, repeated key).
        """
        try:
            rows = conformed(view.reset_index(drop=True), SNAPSHOT_SCHEMA, source="scoring state")
        except PayloadError as exc:
            raise CorruptStoreError(f"scoring state frame {STATE_FRAME!r} is unreadable: {exc}") from exc
        counts = rows["desired_count"]
        if counts.isna().any() or not counts.isin(DESIRED_COUNTS).all():
            raise CorruptStoreError(
                f"scoring state has rows whose desired_count is missing or not one of {DESIRED_COUNTS}"
            )
        if rows["observed_at"].isna().any():
            raise CorruptStoreError("scoring state has rows without observed_at")
        if rows["size"].isna().any() or rows["region"].isna().any():
            raise CorruptStoreError("scoring state has rows without size or region")
        if rows.duplicated(["size", "region", "zone", "desired_count"]).any():
            raise CorruptStoreError("scoring state repeats a (size, region, zone, desired_count) key")
        if rows.empty:
            return cls.empty()
        rows = rows.sort_values(list(CELL_KEY), na_position="last", kind="stable").reset_index(drop=True)
        cell_id = rows.groupby(list(CELL_KEY), dropna=False, sort=False).ngroup().to_numpy()
        first = np.unique(cell_id, return_index=True)[1]
        cells = _cells_frame(rows.iloc[first][list(CELL_KEY)].reset_index(drop=True))
        n = len(cells)
        slots = []
        count_col = rows["desired_count"].to_numpy(dtype=np.int64)
        for c in DESIRED_COUNTS:
            pick = count_col == c
            part = rows.loc[pick, list(SLOT_COLUMNS)]
            part.index = pd.Index(cell_id[pick])
            slots.append(part.reindex(pd.RangeIndex(n)))
        return cls(cells=cells, slots=tuple(slots))

    @classmethod
    def from_frames(cls, frames: Mapping[str, pd.DataFrame]) -> ScoringState:
        """Inverse of :meth:`to_frames` (e.g. after a Parquet round trip); exact."""
        if STATE_FRAME not in frames:
            raise CorruptStoreError(
                f"scoring state needs a frame named {STATE_FRAME!r}, got {sorted(frames)}"
            )
        return cls.from_view(frames[STATE_FRAME])

    # -- reading -----------------------------------------------------------------------------

    def view(self) -> pd.DataFrame:
        """Every live (size, region, zone, count) as one SNAPSHOT_SCHEMA frame, sorted by key."""
        parts = []
        for c, slot in zip(DESIRED_COUNTS, self.slots, strict=True):
            live = slot["observed_at"].notna().to_numpy()
            if not live.any():
                continue
            part = pd.concat(
                [self.cells[live].reset_index(drop=True), slot[live].reset_index(drop=True)], axis=1
            )
            part["desired_count"] = c
            parts.append(part)
        if not parts:
            return empty_frame(SNAPSHOT_SCHEMA)
        rows = conformed(pd.concat(parts, ignore_index=True), SNAPSHOT_SCHEMA, source="scoring state view")
        return rows.sort_values(
            ["size", "region", "zone", "desired_count"], na_position="last", kind="stable"
        ).reset_index(drop=True)

    def to_frames(self) -> dict[str, pd.DataFrame]:
        """The state as named frames for a store (Parquet-friendly; :meth:`from_frames` inverts)."""
        return {STATE_FRAME: self.view()}

    @property
    def n_cells(self) -> int:
        """Number of (size, region, zone) cells remembered."""
        return len(self.cells)

    @property
    def n_rows(self) -> int:
        """Number of live (cell, count) observations."""
        return int(sum(int(s["observed_at"].notna().sum()) for s in self.slots))

    def latest_observation(self) -> pd.Timestamp | None:
        """The most recent ``observed_at`` in the state (``None`` when empty)."""
        latest = [s["observed_at"].max() for s in self.slots if s["observed_at"].notna().any()]
        return max(latest) if latest else None

    def equals(self, other: ScoringState) -> bool:
        """Same live observations with the same values (cell order does not matter)."""
        return self.view().equals(other.view())

    def score_matrix(
        self, ids: npt.NDArray[np.int64], at: pd.Timestamp, max_age: timedelta
    ) -> tuple[npt.NDArray[np.int8], npt.NDArray[np.bool_]]:
        """(values, live) matrices of the given cells for :func:`tiers`; older than ``max_age`` = not live."""
        values = np.zeros((len(ids), len(DESIRED_COUNTS)), dtype=np.int8)
        live = np.zeros((len(ids), len(DESIRED_COUNTS)), dtype=bool)
        horizon = at - max_age
        for j, slot in enumerate(self.slots):
            seen = slot["observed_at"].take(ids)
            live[:, j] = (seen.notna() & (seen >= horizon)).to_numpy(dtype=bool)
            values[:, j] = slot["score_value"].take(ids).to_numpy(dtype=np.int8, na_value=0)
        return values, live

    def latest_rows(self, ids: npt.NDArray[np.int64]) -> tuple[pd.DataFrame, npt.NDArray[np.bool_]]:
        """Each given cell's latest live observation of any count, and whether it has one.

        Returns a frame of :data:`SLOT_COLUMNS` position-aligned with ``ids`` (all missing where
        the cell has no live slot) and that mask. "Latest" is the slot with the largest
        ``observed_at``, ties going to the smallest count (the engine never makes ties: one run
        writes one slot). Vectorised: an ``(n, 11)`` matrix of observation times, an ``argmax``
        per row, then one ``take`` per slot for the rows whose latest it is.
        """
        n = len(ids)
        times = np.empty((n, len(DESIRED_COUNTS)), dtype=np.int64)
        for k, slot in enumerate(self.slots):
            seen = slot["observed_at"].take(ids)
            # NaT becomes int64 min, below every real time.
            stamps = seen.to_numpy(dtype="datetime64[us]", na_value=np.datetime64("NaT"))
            times[:, k] = stamps.view(np.int64)
        best = times.argmax(axis=1) if n else np.zeros(0, dtype=np.int64)
        has = times.max(axis=1, initial=_NAT) != _NAT
        order = np.argsort(best, kind="stable")
        pieces = []
        for k, slot in enumerate(self.slots):
            pick = order[best[order] == k]
            if len(pick):
                pieces.append(slot.take(ids[pick]))
        if not pieces:
            return _empty_slot(n), has
        gathered = pd.concat(pieces, ignore_index=True)
        inverse = np.empty(n, dtype=np.int64)
        inverse[order] = np.arange(n, dtype=np.int64)
        rows = gathered.take(inverse).reset_index(drop=True)
        if not has.all():
            rows = clear_rows(rows, ~has)
        return rows, has

    # -- evolving ----------------------------------------------------------------------------

    def expire(self, at: pd.Timestamp, max_age: timedelta) -> tuple[ScoringState, int]:
        """Forget observations older than ``at - max_age``; drop cells left with none.

        Returns the new state and how many (cell, count) observations were forgotten.
        """
        horizon = at - max_age
        stale = [(s["observed_at"] < horizon).to_numpy(dtype=bool, na_value=False) for s in self.slots]
        forgotten = int(sum(int(m.sum()) for m in stale))
        if forgotten == 0:
            return self, 0
        slots = tuple(clear_rows(s, m) for s, m in zip(self.slots, stale, strict=True))
        return ScoringState(cells=self.cells, slots=slots).compact(), forgotten

    def compact(self) -> ScoringState:
        """Drop cells with no live slot (renumbering cell ids)."""
        alive = np.zeros(len(self.cells), dtype=bool)
        for slot in self.slots:
            alive |= slot["observed_at"].notna().to_numpy(dtype=bool)
        if alive.all():
            return self
        keep = np.flatnonzero(alive)
        return ScoringState(
            cells=self.cells.take(keep).reset_index(drop=True),
            slots=tuple(s.take(keep).reset_index(drop=True) for s in self.slots),
        )
