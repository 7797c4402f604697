"""The analysis object: a store's collected data as pandas frames, one call per question.

``spotlake.open(store)`` returns an :class:`Analysis`. Every method returns a frame and reads only
what it needs: ``history`` and ``changes`` push their filters and columns down to the Parquet
reader (:meth:`~spotlake.storage.base.SnapshotStore.read_history`), which reads whole past days
from one digest file each and whole closed months from one roll-up each.
docs/analysis.md shows each method on the demo store.

Rows carry what an analyst asks next: merged rows get ``vcpus`` and ``memory_gib`` from the
latest SKU list, and ``rotation_complete`` says whether the cell's T2/T3 already rest on every
desired count (during the first rotation they climb as counts arrive; see docs/concepts.md).
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Final

import pandas as pd

from spotlake.clock import Clock, SystemClock, ensure_utc
from spotlake.errors import ConfigError
from spotlake.model import DESIRED_COUNTS, SNAPSHOT_KEY, SNAPSHOT_SCHEMA, ChangeKind, Cloud, Source
from spotlake.scoring.diff import COUNT_COLUMNS
from spotlake.storage import SnapshotStore, open_store
from spotlake.storage.base import FrameKind

__all__ = ["CELL", "VALUE_COLUMNS", "Analysis", "When", "open"]

#: A (size, region, zone): what T2/T3 describe.
CELL: Final = ("size", "region", "zone")
#: The columns a change compares (everything but the key and the observation time).
VALUE_COLUMNS: Final = tuple(c for c in SNAPSHOT_SCHEMA if c not in (*SNAPSHOT_KEY, "observed_at"))
RUN_AT: Final = "run_at"
_SHAPE: Final = ("vcpus", "memory_gib")

#: A point in time: a datetime (UTC if naive), or a timedelta meaning that long before now.
When = datetime | timedelta | None
#: One value or several.
Many = str | Sequence[str] | None


def open(
    store: SnapshotStore | str, *, cloud: Cloud | str = Cloud.AZURE, clock: Clock | None = None
) -> Analysis:
    """The analysis object of one cloud's data: ``store`` is a URL/path (its ``cloud`` tree is
    opened: :func:`~spotlake.open_store`) or an opened store (of that cloud's tree)."""
    which = Cloud(cloud)
    opened = open_store(store, cloud=which) if isinstance(store, str) else store
    return Analysis(opened, cloud=which, clock=clock)


class Analysis:
    """A store's data as frames (see the module docstring)."""

    def __init__(
        self, store: SnapshotStore, *, cloud: Cloud | str = Cloud.AZURE, clock: Clock | None = None
    ) -> None:
        self._store = store
        self._cloud = Cloud(cloud)
        self._clock = clock or SystemClock()

    @property
    def cloud(self) -> Cloud:
        """Whose data this is (AWS rows: size = instance type, zone = zone ID, scores 1-10)."""
        return self._cloud

    @property
    def store(self) -> SnapshotStore:
        return self._store

    def __repr__(self) -> str:
        return f"Analysis({self._store.url!r}, cloud={self._cloud.value!r})"

    # --- runs and snapshots ---------------------------------------------------------------------

    def runs(self, *, start: When = None, end: When = None) -> list[datetime]:
        """The committed runs' times (UTC minutes), oldest first."""
        return self._store.run_times(FrameKind.MERGED, start=self._at(start), end=self._at(end))

    def latest(self) -> pd.DataFrame:
        """The last run's merged rows (one desired count: the one that run collected), with
        ``run_at``, ``vcpus``, ``memory_gib`` and ``rotation_complete``. Empty before any run."""
        times = self.runs()
        if not times:
            return self._empty(RUN_AT, *_SHAPE, "rotation_complete")
        frame = self._store.read_history(FrameKind.MERGED, start=times[-1], end=times[-1])
        return self._mark(self._shape(frame), self._complete_cells())

    def current(self) -> pd.DataFrame:
        """Every (size, region, zone, count)'s latest observation (the state the next run diffs
        against), with ``age`` (now minus ``observed_at``), ``vcpus``, ``memory_gib`` and
        ``rotation_complete``."""
        rows = self._state_rows()
        frame = self._mark(self._shape(rows), self._complete_cells(rows))
        frame["age"] = ensure_utc(self._clock.now()) - frame["observed_at"]
        return frame

    # --- over time --------------------------------------------------------------------------------

    def history(
        self,
        *,
        size: Many = None,
        region: Many = None,
        zone: Many = None,
        count: int | Sequence[int] | None = None,
        start: When = None,
        end: When = None,
        columns: Sequence[str] | None = None,
    ) -> pd.DataFrame:
        """Merged rows over time (one row per key and run that collected its count), oldest
        first, with ``run_at`` and ``rotation_complete``. ``columns``: the value columns wanted
        (the key columns always come along)."""
        where = self._where(size=size, region=region, zone=zone, count=count)
        wanted = None if columns is None else list(dict.fromkeys([*SNAPSHOT_KEY, *columns]))
        frame = self._store.read_history(
            FrameKind.MERGED, start=self._at(start), end=self._at(end), columns=wanted, where=where
        )
        return self._mark(frame, self._live_counts(where))

    def t2t3(
        self,
        *,
        size: Many = None,
        region: Many = None,
        zone: Many = None,
        start: When = None,
        end: When = None,
    ) -> pd.DataFrame:
        """T2 and T3 of each cell at every run that touched it, oldest first."""
        frame = self.history(size=size, region=region, zone=zone, start=start, end=end, columns=["t2", "t3"])
        cols = [*CELL, RUN_AT, "t2", "t3", "rotation_complete"]
        out: pd.DataFrame = frame[cols].drop_duplicates(subset=[*CELL, RUN_AT], keep="last")
        return out.reset_index(drop=True)

    def changes(
        self,
        *,
        size: Many = None,
        region: Many = None,
        zone: Many = None,
        count: int | Sequence[int] | None = None,
        start: When = None,
        end: When = None,
        last_run: bool = False,
    ) -> pd.DataFrame:
        """What changed, with before and after: one row per changed key and run, with ``change``,
        ``changed_fields`` and, for every value column ``c``, ``c_before`` and ``c`` (after;
        missing once the key ceased or expired). Before is what the change was measured against:
        the key's previous observation for a count's score, the cell's previous run for its tiers
        and prices (docs/analysis.md). ``last_run``: only the last run's changes."""
        if last_run:
            times = self.runs()
            if not times:
                return self._empty_changes()
            start = end = times[-1]
        where = self._where(size=size, region=region, zone=zone, count=count)
        lo, hi = self._at(start), self._at(end)
        found = self._store.read_history(FrameKind.CHANGES, start=lo, end=hi, where=where)
        if found.empty:
            return self._empty_changes()
        # Changesets are levelled (spotlake.scoring.diff): a count-level column is compared with
        # the key's own previous observation, so its value before is the key's previous change
        # row (unchanged rows are not written); the cell- and pair-level columns (tiers, prices,
        # eviction, family) with the cell's latest observation of any count, so theirs is the
        # cell's last new or changed row of an earlier run. A ceased or expired row carries the
        # key's last values: they are its "before", and nothing is after.
        cell_where = {k: v for k, v in where.items() if k in CELL}
        past_where = {**cell_where, "size": sorted(found["size"].dropna().unique())}
        past = self._store.read_history(FrameKind.CHANGES, end=hi, where=past_where)
        past = past.sort_values([*SNAPSHOT_KEY, RUN_AT], kind="stable")
        own = past.groupby(list(SNAPSHOT_KEY), dropna=False, sort=False)[list(_COUNT_LEVEL)].shift(1)
        own.columns = [f"{c}_before" for c in _COUNT_LEVEL]
        out = found.merge(
            pd.concat([past[[*SNAPSHOT_KEY, RUN_AT]], own], axis=1), on=[*SNAPSHOT_KEY, RUN_AT], how="left"
        )
        out = _cell_before(out, past)
        gone = out["change"].isin([ChangeKind.CEASED.value, ChangeKind.EXPIRED.value])
        for col in VALUE_COLUMNS:
            out.loc[gone, f"{col}_before"] = out.loc[gone, col]
            out.loc[gone, col] = pd.NA
        cols = [*SNAPSHOT_KEY, RUN_AT, "change", "changed_fields"]
        for col in VALUE_COLUMNS:
            cols += [f"{col}_before", col]
        result: pd.DataFrame = out[cols].sort_values([RUN_AT, *SNAPSHOT_KEY], kind="stable")
        return result.reset_index(drop=True)

    # --- what to launch -----------------------------------------------------------------------------

    def offers(
        self,
        *,
        vcpus: int | None = None,
        memory: float | None = None,
        min_score: str | int | None = None,
        count: int = 1,
        regions: Sequence[str] | None = None,
        max_price: float | None = None,
        limit: int | None = None,
    ) -> pd.DataFrame:
        """Spot offers ranked cheapest first: one row per (size, region, zone) with a spot price,
        at least ``vcpus`` vCPUs and ``memory`` GiB, in ``regions``, at most ``max_price`` USD/h,
        and (with ``min_score``) placement scored at least that at every desired count up to
        ``count`` (High: ``t3 >= count``; Medium: ``t2 >= count``). Ties: the higher tier, the
        lower eviction rate (higher IF score), the fresher observation. docs/analysis.md."""
        if count < 1:
            raise ConfigError(f"offers: count must be >= 1 instances, got {count}")
        tier = _tier(min_score)
        rows = self.current()
        cells = rows.sort_values("observed_at").drop_duplicates(subset=list(CELL), keep="last")
        keep = cells["spot_price"].notna()
        if vcpus is not None:
            keep &= cells["vcpus"].fillna(0) >= vcpus
        if memory is not None:
            keep &= cells["memory_gib"].fillna(0) >= memory
        if regions:
            keep &= cells["region"].isin(list(regions))
        if max_price is not None:
            keep &= cells["spot_price"] <= max_price
        if tier is not None:
            keep &= cells[tier].fillna(0) >= count
        found = cells[keep].copy()
        # the tier at this count: High at every count up to it beats Medium, which beats neither
        found["_high"] = (found["t3"].fillna(0) >= count).astype(int)
        found["_medium"] = (found["t2"].fillna(0) >= count).astype(int)
        found = found.sort_values(
            ["spot_price", "_high", "_medium", "t3", "t2", "if_score", "observed_at"],
            ascending=[True, False, False, False, False, False, False],
            kind="stable",
            na_position="last",
        )
        cols = [
            *CELL,
            "family",
            "vcpus",
            "memory_gib",
            "spot_price",
            "ondemand_price",
            "savings_pct",
            "t2",
            "t3",
            "if_score",
            "eviction_bucket",
            "observed_at",
            "age",
            "rotation_complete",
        ]
        out: pd.DataFrame = found[cols].reset_index(drop=True)
        out.insert(0, "rank", range(1, len(out) + 1))
        return out.head(limit) if limit is not None else out

    # --- helpers ------------------------------------------------------------------------------------

    def _at(self, when: When) -> datetime | None:
        if when is None:
            return None
        if isinstance(when, timedelta):
            return ensure_utc(self._clock.now()) - when
        return ensure_utc(when)

    @staticmethod
    def _where(
        *, size: Many, region: Many, zone: Many, count: int | Sequence[int] | None
    ) -> dict[str, list[Any]]:
        where: dict[str, list[Any]] = {}
        for col, value in (("size", size), ("region", region), ("zone", zone)):
            if value is None:
                continue
            values = [value] if isinstance(value, str) or _missing(value) else list(value)
            where[col] = [None if _missing(v) else str(v) for v in values]
        if count is not None:
            counts: list[Any] = [count] if isinstance(count, numbers.Integral) else list(count)  # type: ignore[arg-type]
            try:
                where["desired_count"] = [None if _missing(c) else int(c) for c in counts]
            except (TypeError, ValueError):
                raise ConfigError(f"count= takes whole numbers of instances, got {count!r}") from None
        return where

    def _state_rows(self) -> pd.DataFrame:
        state = self._store.read_state()
        rows = state.frames.get("rows")
        if rows is None:
            return pd.DataFrame({c: pd.Series([], dtype=d) for c, d in SNAPSHOT_SCHEMA.items()})
        return rows

    def _shape(self, frame: pd.DataFrame) -> pd.DataFrame:
        """``frame`` with the sizes' vCPUs and memory from the latest SKU list."""
        shapes = Source.AWS_TYPES if self._cloud is Cloud.AWS else Source.SKUS
        skus = self._store.latest(FrameKind.RAW, source=shapes.value)
        out = frame.drop(columns=[c for c in _SHAPE if c in frame.columns])
        if skus is None or skus.empty:
            out["vcpus"] = pd.Series(pd.NA, index=out.index, dtype="Int64")
            out["memory_gib"] = pd.Series(float("nan"), index=out.index, dtype="float64")
            return out
        shape = skus.drop_duplicates(subset=["size"], keep="last")[["size", *_SHAPE]]
        return out.merge(shape, on="size", how="left")

    def _complete_cells(self, rows: pd.DataFrame | None = None) -> pd.Series:
        """Per cell: whether every desired count has an observation (a MultiIndex Series)."""
        rows = self._state_rows() if rows is None else rows
        counts = rows.groupby(list(CELL), dropna=False)["desired_count"].nunique()
        return counts >= len(DESIRED_COUNTS)

    def _live_counts(self, where: Mapping[str, Sequence[Any]]) -> pd.DataFrame:
        """Per cell and run that changed it: how many desired counts were live after that run
        (a count becomes live with its ``new`` row, stops with ``ceased`` or ``expired``)."""
        cell_where: dict[str, Any] = {k: v for k, v in where.items() if k in CELL}
        cell_where["change"] = [ChangeKind.NEW.value, ChangeKind.CEASED.value, ChangeKind.EXPIRED.value]
        events = self._store.read_history(
            FrameKind.CHANGES, columns=[*SNAPSHOT_KEY, "change"], where=cell_where
        )
        if events.empty:
            return pd.DataFrame(columns=[*CELL, RUN_AT, "_live"])
        events = events[events["desired_count"].notna()]
        step = events["change"].map({ChangeKind.NEW.value: 1}).fillna(-1).astype(int)
        per_run = events.assign(_step=step).groupby([*CELL, RUN_AT], dropna=False, sort=True)["_step"].sum()
        live = per_run.groupby(level=list(range(len(CELL))), dropna=False).cumsum().rename("_live")
        return live.reset_index()

    @staticmethod
    def _mark(frame: pd.DataFrame, complete: pd.Series | pd.DataFrame) -> pd.DataFrame:
        """``frame`` with ``rotation_complete`` per row: per cell (``complete``: a bool Series),
        or per cell and run (``complete``: live counts per cell after each run that changed it)."""
        out = frame.copy()
        if out.empty or complete.empty:
            out["rotation_complete"] = pd.Series(False, index=out.index, dtype="boolean")
            return out
        if isinstance(complete, pd.DataFrame):
            left = _asof_keys(out).reset_index().sort_values(RUN_AT, kind="stable")
            right = _asof_keys(complete).sort_values(RUN_AT, kind="stable")
            paired = pd.merge_asof(left, right, on=RUN_AT, by=list(CELL)).set_index("index").sort_index()
            flag = paired["_live"].fillna(0) >= len(DESIRED_COUNTS)
            out["rotation_complete"] = pd.Series(flag.to_numpy(), index=out.index, dtype="boolean")
            return out
        joined = out.merge(complete.rename("_complete").reset_index(), on=list(CELL), how="left")
        flag = joined["_complete"].fillna(False).astype(bool)
        out["rotation_complete"] = pd.Series(flag.to_numpy(), index=out.index, dtype="boolean")
        return out

    def _empty(self, *extra: str) -> pd.DataFrame:
        frame = pd.DataFrame({c: pd.Series([], dtype=d) for c, d in SNAPSHOT_SCHEMA.items()})
        for col in extra:
            frame[col] = pd.Series([], dtype="object")
        return frame

    def _empty_changes(self) -> pd.DataFrame:
        cols = [*SNAPSHOT_KEY, RUN_AT, "change", "changed_fields"]
        for col in VALUE_COLUMNS:
            cols += [f"{col}_before", col]
        return pd.DataFrame({c: pd.Series([], dtype="object") for c in cols})


#: Columns compared with the key's own previous observation (the rest: with the cell's).
_COUNT_LEVEL: Final = tuple(c for c in VALUE_COLUMNS if c in COUNT_COLUMNS)
_CELL_LEVEL: Final = tuple(c for c in VALUE_COLUMNS if c not in COUNT_COLUMNS)
_NO_ZONE: Final = "\x00no zone"


def _asof_keys(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with a missing zone spelt as a value (merge_asof cannot group on NA)."""
    out = frame.copy()
    out["zone"] = out["zone"].astype("object").where(out["zone"].notna(), _NO_ZONE)
    out["size"] = out["size"].astype("object")
    out["region"] = out["region"].astype("object")
    return out


def _cell_before(out: pd.DataFrame, past: pd.DataFrame) -> pd.DataFrame:
    """``out`` with ``c_before`` for the cell-level columns: the cell's values at its latest
    new or changed row of an earlier run."""
    live = past[past["change"].isin([ChangeKind.NEW.value, ChangeKind.CHANGED.value])]
    per_run = live.drop_duplicates(subset=[*CELL, RUN_AT], keep="last")[[*CELL, RUN_AT, *_CELL_LEVEL]]
    per_run = per_run.rename(columns={c: f"{c}_before" for c in _CELL_LEVEL})
    left = _asof_keys(out).reset_index().sort_values(RUN_AT, kind="stable")
    right = _asof_keys(per_run).sort_values(RUN_AT, kind="stable")
    paired = pd.merge_asof(left, right, on=RUN_AT, by=list(CELL), allow_exact_matches=False)
    paired = paired.set_index("index").sort_index()
    result = out.copy()
    for col in _CELL_LEVEL:
        result[f"{col}_before"] = paired[f"{col}_before"].astype(out[col].dtype).to_numpy()
    return result


def _missing(value: Any) -> bool:
    """``None``, ``pd.NA`` or NaN (a regional row's zone, a row without a count)."""
    try:
        return value is None or bool(pd.isna(value))
    except (TypeError, ValueError):  # a list or an array: not one missing value
        return False


def _tier(min_score: str | int | None) -> str | None:
    """The tier column a minimum score asks for (High: t3, Medium: t2; Low or none: no filter)."""
    if min_score is None:
        return None
    names = {"high": 3, "medium": 2, "low": 1}
    value = names.get(min_score.lower()) if isinstance(min_score, str) else min_score
    if value not in (1, 2, 3):
        raise ConfigError(f"min_score must be High, Medium, Low or 1-3, got {min_score!r}")
    return {3: "t3", 2: "t2"}.get(value)
