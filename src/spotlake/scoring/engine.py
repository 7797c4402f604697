"""One call per collection run: merge the sources, update the T2/T3 history, detect changes.

::

    from spotlake.scoring.engine import Coverage, ScoringState, score_run

    result = score_run(prev_state_or_None, sps=..., prices=..., eviction=..., skus=...,
                       at=run_time, desired_count=10,
                       covered=Coverage.from_calls(succeeded_calls, prices_complete=True))
    result.snapshot   # SNAPSHOT_SCHEMA: this run's merged rows, with T2/T3
    result.changes    # CHANGES_SCHEMA: new / changed / ceased rows for the time-series sink
    result.state      # ScoringState to persist for the next run
    result.report     # counts (ScoreReport; spotlake.serde.dump gives JSON)

Pure: no I/O, no clock (the run time is an argument). What a run compares (docs/data-model.md):

* each value column has a *level*: count-level (score, score_value, quota_available: the answer
  for one desired count), cell-level (t2, t3: the tiers of a (size, region, zone) cell) and
  pair-level (region_name, family, prices, savings, eviction: properties of a (region, size));
* an observed row's count-level columns are compared with the same key's last observation; its
  cell- and pair-level columns with the cell's *current* values, i.e. its latest live observation
  of any count. So a T3 or price change is recorded once, on the rows of the run that saw it,
  not again on every count's row as the rotation comes round (no echo);
* ``new``: observed, no live observation of that (cell, count); ``changed``: some column differs
  at its level (``changed_fields`` lists exactly those); ``ceased``: the key was live and this
  run *could* have seen it but did not, i.e.
  (a) its count is this run's count, its (region, size) is in ``covered.sps_pairs`` (the SPS call
  succeeded) and it is of the run's zone mode, or (b) the price crawl is complete and its
  (region, size) has neither a price nor an SPS row any more (all its counts cease);
* keys whose SPS call failed are *unknown*: kept unchanged in the state, counted in the report;
* a source marked incomplete does not erase values: an observed row whose pair is missing from
  an incomplete source keeps the cell's current values for that source's columns;
* observations older than ``max_age`` are forgotten at the start of the run (counted as
  ``expired``; a forgotten key that comes back is ``new``).

The state keeps every live slot of a cell on the cell's current cell- and pair-level values
(an observation that moves them writes them into the cell's other live slots), so a consumer
that keeps count-level columns per key and cell/pair-level columns per cell, each from the latest
record, rebuilds the state: ``diff.apply_levels(prev.expire(at, max_age)[0].view(), result.changes)``
equals ``result.state.view()`` on the key and value columns (tested).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Final

import attrs
import numpy as np
import numpy.typing as npt
import pandas as pd

from spotlake.errors import ConfigError
from spotlake.model import (
    AZURE_SCORES,
    CHANGES_SCHEMA,
    DESIRED_COUNTS,
    PRICES_SCHEMA,
    SNAPSHOT_KEY,
    SNAPSHOT_SCHEMA,
    ChangeKind,
    ScoreScale,
    Source,
    SpsCall,
    empty_frame,
)
from spotlake.scoring.diff import (
    CELL_COLUMNS,
    PAIR_COLUMNS,
    VALUE_COLUMNS,
    changed_fields,
    conformed,
    differences,
    frame_repr,
    level_differences,
    sort_view,
)
from spotlake.scoring.history import (
    CELL_KEY,
    DEFAULT_MAX_AGE,
    SLOT_COLUMNS,
    ScoringState,
    clear_rows,
    tiers,
    utc_timestamp,
)
from spotlake.scoring.merge import MergeReport, apply_zone_prices, merge_sources

__all__ = [
    "DEFAULT_MAX_AGE",
    "Coverage",
    "ScoreReport",
    "ScoreResult",
    "ScoringState",
    "score_run",
]

_PAIR: Final = ["region", "size"]
_CELL: Final = list(CELL_KEY)
#: Columns each source provides; when the source is incomplete they are carried over.
_SOURCE_COLUMNS: Final[dict[Source, tuple[str, ...]]] = {
    Source.PRICES: ("region_name", "ondemand_price", "spot_price", "savings_pct"),
    Source.EVICTION: ("eviction_bucket", "if_score"),
    Source.SKUS: ("family",),
}
#: Cell- and pair-level columns: one current value per cell, the same on every live slot.
_PER_CELL: Final = (*CELL_COLUMNS, *PAIR_COLUMNS)
_PER_CELL_IDX: Final = np.asarray([VALUE_COLUMNS.index(c) for c in _PER_CELL], dtype=np.int64)


def _pairs_frame(value: pd.DataFrame | Iterable[tuple[str, str]]) -> pd.DataFrame:
    if isinstance(value, pd.DataFrame):
        missing = [c for c in _PAIR if c not in value.columns]
        if missing:
            raise ConfigError(f"covered pairs frame lacks columns {missing}; it needs 'region' and 'size'")
        frame = value[_PAIR]
    else:
        rows = list(value)
        frame = pd.DataFrame(rows, columns=_PAIR) if rows else pd.DataFrame({c: [] for c in _PAIR})
    frame = frame.astype(pd.api.types.pandas_dtype("string"))
    return frame.drop_duplicates().reset_index(drop=True)


@attrs.frozen(kw_only=True, eq=False)
class Coverage:
    """What this run could observe, so absence can be told from failure.

    ``sps_pairs``: (region, size) pairs a successful SPS call asked about (a frame with columns
    region and size, or an iterable of tuples): a live key of such a pair that the answer left
    out has ceased. ``failed_pairs``: pairs of calls that failed: their keys are *unknown* this
    run, never ceased (a pair both a successful and a failed call asked about counts as asked).
    ``prices_complete``: the price crawl fetched every page (only then does a pair without a spot
    price cease). ``eviction_complete``/``skus_complete``: those crawls finished (otherwise
    missing values are carried over instead of erased). ``zonal``: the zone mode of this run's SPS
    calls (True zonal, False regional, None both): only keys of that mode can cease.
    """

    sps_pairs: pd.DataFrame = attrs.field(converter=_pairs_frame, repr=frame_repr)
    prices_complete: bool
    eviction_complete: bool = True
    skus_complete: bool = True
    zonal: bool | None = None
    failed_pairs: pd.DataFrame = attrs.field(
        factory=lambda: _pairs_frame(()), converter=_pairs_frame, repr=frame_repr
    )

    @classmethod
    def from_calls(
        cls,
        calls: Iterable[SpsCall],
        *,
        prices_complete: bool,
        eviction_complete: bool = True,
        skus_complete: bool = True,
        zonal: bool | None = None,
        failed: Iterable[SpsCall] = (),
    ) -> Coverage:
        """Coverage of the SPS calls that succeeded (each covers its regions x sizes) and failed."""
        pairs = [(r, s) for call in calls for r in call.regions for s in call.sizes]
        unknown = [(r, s) for call in failed for r in call.regions for s in call.sizes]
        return cls(
            sps_pairs=pairs,
            prices_complete=prices_complete,
            eviction_complete=eviction_complete,
            skus_complete=skus_complete,
            zonal=zonal,
            failed_pairs=unknown,
        )

    @classmethod
    def of_sps(
        cls, sps: pd.DataFrame, *, prices_complete: bool = True, zonal: bool | None = None
    ) -> Coverage:
        """Coverage claiming exactly the pairs present in ``sps`` (all sources complete otherwise)."""
        return cls(sps_pairs=sps[_PAIR], prices_complete=prices_complete, zonal=zonal)


@attrs.frozen(kw_only=True)
class ScoreReport:
    """Counts of one run: the merge report plus what the history and the diff did."""

    at: str
    desired_count: int
    merge: MergeReport
    new: int
    changed: int
    ceased: int
    unchanged: int
    unknown: int
    expired: int
    carried: dict[Source, int]
    cells: int
    state_rows: int
    #: Rows of this run's merged snapshot and of its changeset.
    snapshot_rows: int = 0
    changes_rows: int = 0
    #: Snapshot rows of unknown keys served with their last known values (older ``observed_at``).
    stale_rows: int = 0

    @property
    def sps_without_price(self) -> int:
        return self.merge.sps_without_price

    @property
    def price_without_sps(self) -> int:
        return self.merge.price_without_sps

    @property
    def eviction_without_partner(self) -> int:
        return self.merge.eviction_without_partner


@attrs.frozen(kw_only=True, eq=False)
class ScoreResult:
    """Everything one run produces (see the module docstring)."""

    snapshot: pd.DataFrame = attrs.field(repr=frame_repr)
    changes: pd.DataFrame = attrs.field(repr=frame_repr)
    state: ScoringState
    report: ScoreReport


def _assign_cells(cells: pd.DataFrame, keys: pd.DataFrame) -> tuple[npt.NDArray[np.int64], pd.DataFrame]:
    """Cell id of each key row (keys unique); unseen keys are appended as new cells."""
    probe = keys.reset_index(drop=True).merge(
        cells.assign(_cell=np.arange(len(cells), dtype=np.int64)), on=_CELL, how="left", sort=False
    )
    cell = probe["_cell"].to_numpy(dtype=np.float64, na_value=np.nan).copy()
    missing = np.isnan(cell)
    cell[missing] = len(cells) + np.arange(int(missing.sum()))
    if missing.any():
        added = keys.reset_index(drop=True)[missing]
        cells = pd.concat([cells, added], ignore_index=True)
    return cell.astype(np.int64), cells


def _scatter(frame: pd.DataFrame, rows: npt.NDArray[np.int64], values: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with ``values`` (position-aligned with ``rows``) written into ``rows``."""
    out = {}
    for col in frame.columns:
        arr = frame[col].array.copy()
        arr[rows] = values[col].array
        out[col] = arr
    return pd.DataFrame(out, index=frame.index)


def _propagate(
    slots: list[pd.DataFrame], j: int, rows: npt.NDArray[np.int64], values: pd.DataFrame
) -> list[pd.DataFrame]:
    """Write the cell- and pair-level ``values`` of cells ``rows`` into their other live slots.

    Keeps the invariant that every live slot of a cell holds the cell's current cell- and
    pair-level values, so a slot that becomes the cell's latest (another one ceased) or the state
    view both show what a consumer of the changesets knows. Only the entries that differ are
    written: a typical run moves a few percent of cells and rarely a string column.
    """
    out = list(slots)
    if len(rows) == 0:
        return out
    for k, slot in enumerate(slots):
        if k == j:
            continue
        live = slot["observed_at"].take(rows).notna().to_numpy(dtype=bool)
        if not live.any():
            continue
        targets = rows[live]
        new = values[live].reset_index(drop=True)
        differs = differences(slot.take(targets).reset_index(drop=True), new)[:, _PER_CELL_IDX]
        if not differs.any():
            continue
        written = slot.copy(deep=False)
        for c, col in enumerate(_PER_CELL):
            mask = differs[:, c]
            if mask.any():
                arr = slot[col].array.copy()
                arr[targets[mask]] = new[col].array[mask]
                written[col] = arr
        out[k] = written
    return out


def _pair_isin(frame: pd.DataFrame, pairs: pd.DataFrame) -> npt.NDArray[np.bool_]:
    if len(frame) == 0 or len(pairs) == 0:
        return np.zeros(len(frame), dtype=bool)
    mine = pd.MultiIndex.from_arrays([frame["region"].array, frame["size"].array])
    theirs = pd.MultiIndex.from_arrays([pairs["region"].array, pairs["size"].array])
    return np.asarray(mine.isin(theirs), dtype=bool)


def _with_key(cells: pd.DataFrame, counts: int | pd.Series, values: pd.DataFrame) -> pd.DataFrame:
    out = pd.concat([cells.reset_index(drop=True), values.reset_index(drop=True)], axis=1)
    out["desired_count"] = counts if isinstance(counts, int) else counts.to_numpy()
    return out


def _carry_over(
    values: pd.DataFrame, latest: pd.DataFrame, known: npt.NDArray[np.bool_], covered: Coverage
) -> dict[Source, int]:
    """Fill, in place, the columns of incomplete sources from the cell's latest observation.

    An incomplete source does not erase what we knew: an observed row whose pair is missing from
    it (all its columns missing) keeps the cell's current values for those (pair-level) columns,
    i.e. those of its latest observation of any count. Returns counts per source.
    """
    complete = {
        Source.PRICES: covered.prices_complete,
        Source.EVICTION: covered.eviction_complete,
        Source.SKUS: covered.skus_complete,
    }
    carried: dict[Source, int] = {}
    for source, cols in _SOURCE_COLUMNS.items():
        if complete[source]:
            continue
        absent = values[list(cols)].isna().all(axis=1).to_numpy(dtype=bool) & known
        carried[source] = int(absent.sum())
        if absent.any():
            keep = pd.Series(~absent, index=values.index)
            for col in cols:
                values[col] = values[col].where(keep, latest[col])
    return carried


def _ceased(
    *,
    cells: pd.DataFrame,
    slots: list[pd.DataFrame],
    j: int,
    ids: npt.NDArray[np.int64],
    cur: pd.DataFrame,
    prices: pd.DataFrame,
    covered: Coverage,
) -> tuple[list[npt.NDArray[np.bool_]], npt.NDArray[np.bool_]]:
    """Per slot, the live keys this run could have seen but did not; and the unknown keys of slot ``j``.

    A key of a failed call is unknown, never ceased: not by the answer of this count (its call
    did not answer) and not by the support set (the failed call may be why it has no row).
    """
    n = len(cells)
    observed = np.zeros(n, dtype=bool)
    observed[ids] = True
    covered_pair = _pair_isin(cells, covered.sps_pairs)
    # A failed pair's keys are never ceased by the support set (the failed call may be why the
    # pair has no row), whatever their zone mode.
    failed_pair = _pair_isin(cells, covered.failed_pairs) & ~covered_pair
    # What the run asked for: only the keys of its zone mode (a zonal call says nothing about the
    # regional keys of its pairs, nor a regional call about the zonal ones).
    zone_na = cells["zone"].isna().to_numpy(dtype=bool)
    if covered.zonal is True:
        mode = ~zone_na
    elif covered.zonal is False:
        mode = zone_na
    else:
        mode = np.ones(n, dtype=bool)
    covered_cell = covered_pair & mode
    failed_cell = failed_pair & mode
    gone = np.zeros(n, dtype=bool)
    if covered.prices_complete:
        priced = conformed(prices, PRICES_SCHEMA, source="prices")
        # The support set is the pairs with a Linux *spot* price: a pair left with only an
        # on-demand price has no spot offer any more.
        spot = priced[priced["spot_price"].notna().to_numpy(dtype=bool)]
        gone = ~_pair_isin(cells, spot) & ~_pair_isin(cells, cur) & ~failed_pair
    masks = []
    unknown = np.zeros(n, dtype=bool)
    for i, slot in enumerate(slots):
        live = slot["observed_at"].notna().to_numpy(dtype=bool)
        mask = live & gone
        if i == j:
            mask |= live & covered_cell & ~observed
            unknown = live & failed_cell & ~observed
        masks.append(mask)
    return masks, unknown


def _expired_changes(state: ScoringState, at: pd.Timestamp, max_age: timedelta) -> pd.DataFrame:
    """``expired`` rows for the live keys older than ``at - max_age`` (their last values, at ``at``)."""
    horizon = at - max_age
    parts = []
    for count, slot in zip(DESIRED_COUNTS, state.slots, strict=True):
        mask = (slot["observed_at"] < horizon).to_numpy(dtype=bool, na_value=False)
        if mask.any():
            last = slot[mask].copy()
            last["observed_at"] = at
            parts.append(
                _with_key(state.cells[mask], count, last).assign(
                    change=ChangeKind.EXPIRED.value,
                    changed_fields=pd.array([None] * int(mask.sum()), dtype="string"),
                )
            )
    if not parts:
        return empty_frame(CHANGES_SCHEMA)
    return conformed(pd.concat(parts, ignore_index=True), CHANGES_SCHEMA, source="expired")


def _changeset(
    *,
    desired_count: int,
    cur: pd.DataFrame,
    values: pd.DataFrame,
    diffs: npt.NDArray[np.bool_],
    is_new: npt.NDArray[np.bool_],
    is_changed: npt.NDArray[np.bool_],
    cells: pd.DataFrame,
    slots: list[pd.DataFrame],
    ceased_masks: list[npt.NDArray[np.bool_]],
    ts: pd.Timestamp,
    expired: pd.DataFrame,
) -> pd.DataFrame:
    """New and changed observed rows, ceased and expired rows with their last values, sorted by key."""
    parts = [
        _with_key(cur[_CELL][is_new], desired_count, values[is_new]).assign(
            change=ChangeKind.NEW.value, changed_fields=pd.array([None] * int(is_new.sum()), dtype="string")
        ),
        _with_key(cur[_CELL][is_changed], desired_count, values[is_changed]).assign(
            change=ChangeKind.CHANGED.value, changed_fields=changed_fields(diffs[is_changed])
        ),
    ]
    for slot_count, slot, mask in zip(DESIRED_COUNTS, slots, ceased_masks, strict=True):
        if mask.any():
            last = slot[mask].copy()
            last["observed_at"] = ts
            parts.append(
                _with_key(cells[mask], slot_count, last).assign(
                    change=ChangeKind.CEASED.value,
                    changed_fields=pd.array([None] * int(mask.sum()), dtype="string"),
                )
            )
    out = pd.concat(parts, ignore_index=True)
    if len(expired):
        # A key forgotten by age and observed again in this run is recorded once: as new.
        again = expired[list(SNAPSHOT_KEY)].merge(
            out.loc[out["change"] == ChangeKind.NEW.value, list(SNAPSHOT_KEY)].assign(_again=True),
            on=list(SNAPSHOT_KEY),
            how="left",
            sort=False,
        )
        out = pd.concat([out, expired[again["_again"].isna().to_numpy()]], ignore_index=True)
    return sort_view(conformed(out, CHANGES_SCHEMA, source="changeset"))


def _serve_stale(
    snapshot: pd.DataFrame, stale: pd.DataFrame, covered: Coverage, zone_prices: pd.DataFrame | None
) -> pd.DataFrame:
    """``snapshot`` with the ``stale`` rows of unknown keys in place of their pairs' price-only rows.

    A stale row keeps its score, tiers and observation time; its pair-level columns are this run's
    (prices are fresh even when the score is not): a complete source's values as they are, a
    missing price included; an incomplete source's where it has them, else the last known ones.
    With ``zone_prices`` (AWS), a stale row's spot price is its own zone's, as an observed row's.
    """
    complete = {
        Source.PRICES: covered.prices_complete,
        Source.EVICTION: covered.eviction_complete,
        Source.SKUS: covered.skus_complete,
    }
    pair_only = snapshot["desired_count"].isna().to_numpy(dtype=bool)
    fresh = snapshot.loc[pair_only, [*_PAIR, *PAIR_COLUMNS]].drop_duplicates(_PAIR)
    merged = stale.merge(fresh, on=_PAIR, how="left", sort=False, suffixes=("", "_fresh"))
    for source, cols in _SOURCE_COLUMNS.items():
        for col in cols:
            this_run = merged[col + "_fresh"]
            keep_old = this_run.isna() & (not complete[source] or col == "region_name")
            merged[col] = this_run.where(~keep_old, merged[col])
    served = merged[list(SNAPSHOT_SCHEMA)].reset_index(drop=True)
    if zone_prices is not None:
        apply_zone_prices(served, zone_prices)
    replaced = _pair_isin(snapshot, served) & pair_only
    out = pd.concat([snapshot[~replaced], served], ignore_index=True)
    out = out.sort_values(list(SNAPSHOT_KEY), na_position="last", kind="stable").reset_index(drop=True)
    return conformed(out, SNAPSHOT_SCHEMA, source="snapshot")


def score_run(
    prev: ScoringState | None,
    *,
    sps: pd.DataFrame,
    prices: pd.DataFrame,
    eviction: pd.DataFrame,
    skus: pd.DataFrame,
    at: datetime,
    desired_count: int,
    covered: Coverage,
    max_age: timedelta = DEFAULT_MAX_AGE,
    region_names: Mapping[str, str] | None = None,
    zone_prices: pd.DataFrame | None = None,
    scale: ScoreScale = AZURE_SCORES,
) -> ScoreResult:
    """Score one run (see the module docstring for the exact semantics). ``zone_prices``: spot
    prices per zone where they differ by zone (AWS; spotlake.scoring.merge). ``scale``: the
    cloud's score scale, which says where T2 and T3 sit (:class:`~spotlake.model.ScoreScale`);
    a score outside it is a :class:`~spotlake.errors.ConfigError` (the wrong scale would silently
    change what T2/T3 mean).

    :class:`~spotlake.errors.ConfigError` for a count outside the rotation, SPS rows of another
    count, a naive or earlier-than-state run time, a non-positive ``max_age``, or a price crawl
    marked complete that has no price at all while the state knows offerings;
    :class:`~spotlake.errors.PayloadError` when an input frame lacks a column or has bad values.
    """
    ts = utc_timestamp(at)
    if desired_count not in DESIRED_COUNTS:
        raise ConfigError(f"desired_count {desired_count} is not in the rotation {DESIRED_COUNTS}")
    if max_age <= timedelta(0):
        raise ConfigError(f"max_age must be positive, got {max_age}")
    merged = merge_sources(
        sps, prices, eviction, skus, at=ts, region_names=region_names, zone_prices=zone_prices
    )
    snap = merged.snapshot
    scored_pos = np.flatnonzero(snap["desired_count"].notna().to_numpy(dtype=bool))
    cur = snap.take(scored_pos).reset_index(drop=True)
    other = cur["desired_count"] != desired_count
    if other.any():
        seen = sorted(set(cur.loc[other, "desired_count"].tolist()))
        raise ConfigError(
            f"sps has rows for desired_count {seen} in a run for {desired_count}: one count per run"
        )
    scores = cur["score_value"].dropna()
    outside = scores[(scores < scale.lowest) | (scores > scale.highest)]
    if len(outside):
        raise ConfigError(
            f"sps scores {sorted(set(outside.tolist()))[:5]} are outside the {scale.cloud} scale "
            f"{scale.lowest}..{scale.highest}: pass the scale of the cloud that scored them"
        )
    start = prev if prev is not None else ScoringState.empty()
    latest = start.latest_observation()
    if latest is not None and latest > ts:
        raise ConfigError(
            f"run time {ts.isoformat()} is before the state's last observation {latest.isoformat()}: "
            "runs must be scored in time order"
        )
    expired_rows = _expired_changes(start, ts, max_age)
    state, expired = start.expire(ts, max_age)
    if covered.prices_complete and merged.report.price_pairs == 0 and state.n_cells > 0:
        # A "complete" crawl with no price at all would cease every offering at once; that is
        # a failed crawl, not a market event.
        raise ConfigError(
            "the price crawl is marked complete but has no prices, which would cease every known "
            "offering: pass Coverage(prices_complete=False) when the crawl failed"
        )

    # Align this run's rows with the remembered cells (integer ids from here on).
    ids, cells = _assign_cells(state.cells, cur[_CELL])
    n = len(cells)
    slots = [s if len(s) == n else s.reindex(pd.RangeIndex(n)) for s in state.slots]
    padded = ScoringState(cells=cells, slots=tuple(slots))
    j = DESIRED_COUNTS.index(desired_count)
    # Two references per observed row: the same key's last observation (count-level columns)
    # and the cell's latest observation of any count (cell- and pair-level columns).
    prev_rows = slots[j].take(ids).reset_index(drop=True)
    had = prev_rows["observed_at"].notna().to_numpy(dtype=bool)
    latest_rows, known = padded.latest_rows(ids)
    values = cur[list(SLOT_COLUMNS)].copy()

    carried = _carry_over(values, latest_rows, known, covered)

    # T2/T3 from the per-count vector, this run's count replaced by what it just saw.
    matrix, live = padded.score_matrix(ids, ts, max_age)
    matrix[:, j] = values["score_value"].to_numpy(dtype=np.int8, na_value=0)
    live[:, j] = True
    values["t2"], values["t3"] = tiers(matrix, live, scale=scale)
    values["observed_at"] = pd.Series(ts, index=values.index, dtype=SNAPSHOT_SCHEMA["observed_at"])

    # Each column against the reference of its level; a key never seen before is new.
    diffs = level_differences(prev_rows, latest_rows, values)
    is_changed = had & diffs.any(axis=1)
    is_new = ~had
    cell_moved = known & diffs[:, _PER_CELL_IDX].any(axis=1)

    ceased_masks, unknown_mask = _ceased(
        cells=cells, slots=slots, j=j, ids=ids, cur=cur, prices=prices, covered=covered
    )
    changes = _changeset(
        desired_count=desired_count,
        cur=cur,
        values=values,
        diffs=diffs,
        is_new=is_new,
        is_changed=is_changed,
        cells=cells,
        slots=slots,
        ceased_masks=ceased_masks,
        ts=ts,
        expired=expired_rows,
    )

    # The next state: cells whose cell/pair values moved pass them to their other live slots,
    # this count's slot takes the observed rows, ceased keys are emptied.
    new_slots = _propagate(slots, j, ids[cell_moved], values[cell_moved])
    new_slots[j] = _scatter(slots[j], ids, values)
    new_slots = [clear_rows(s, m) for s, m in zip(new_slots, ceased_masks, strict=True)]
    new_state = ScoringState(cells=cells, slots=tuple(new_slots)).compact()

    # The snapshot: merged rows, SPS rows with their carried values and tiers, and the unknown
    # keys of this count served with their last known values (their older observed_at says so).
    snap_values = _scatter(snap[list(SLOT_COLUMNS)], scored_pos, values)
    snapshot = conformed(
        pd.concat([snap[list(SNAPSHOT_KEY)], snap_values], axis=1), SNAPSHOT_SCHEMA, source="snapshot"
    )
    stale = _with_key(cells[unknown_mask], desired_count, slots[j][unknown_mask])
    if len(stale):
        snapshot = _serve_stale(
            snapshot, conformed(stale, SNAPSHOT_SCHEMA, source="stale rows"), covered, zone_prices
        )

    n_ceased = int(sum(int(m.sum()) for m in ceased_masks))
    report = ScoreReport(
        at=ts.isoformat(),
        desired_count=desired_count,
        merge=merged.report,
        new=int(is_new.sum()),
        changed=int(is_changed.sum()),
        ceased=n_ceased,
        unchanged=int((had & ~is_changed).sum()),
        unknown=int(unknown_mask.sum()),
        expired=expired,
        carried=carried,
        cells=new_state.n_cells,
        state_rows=new_state.n_rows,
        snapshot_rows=len(snapshot),
        changes_rows=len(changes),
        stale_rows=len(stale),
    )
    return ScoreResult(snapshot=snapshot, changes=changes, state=new_state, report=report)
