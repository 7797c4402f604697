"""Replay a spotlake store's collected Azure history as a :class:`Trace`.

Every collection run commits a merged snapshot (:data:`~spotlake.model.SNAPSHOT_SCHEMA`): per
scored (size, region, zone) the placement score at the run's desired count, and per (region, size)
the spot and on-demand prices. :func:`trace_from_store` turns the runs of a time window into a
trace on a grid of ``step`` (10 minutes by default, the collection's cadence):

* **pools**: one per scored (region, zone, size); Azure numbers zones per region, so the pool's
  zone is ``"<region>-<n>"`` (``eastus-1``), as :class:`~spotlake.compute.offers.StoreOffers`
  writes it. A pair scored per region (zone ``<NA>``) and a pair with a spot price that no run of
  the window scored become one pool whose zone is the **region's own name** (``eastus``): the
  region as a whole, since a trace's pools are zonal;
* **availability** from the placement score of the pool's latest observation: ``capacity`` times
  the score's share in ``levels`` (by default High = all of ``capacity``, Medium = a quarter,
  Low = none), rounded down; every other answer (``DataNotFoundOrStale``,
  ``RestrictedSkuNotAvailable``, an unknown string, no row for the pool in that run, or no
  observation yet) is 0 instances. The scores are kept as 3/2/1 on a scale of 3 (NaN for
  the rest), as the allocator sees them;
* **desired counts**: each run scores one count of the rotation (1, 5, ..., 50). With
  ``desired_count=None`` each run's score counts whatever its count; with a count, only the runs
  that scored it are observations (the others keep the last observation, so scores stay
  comparable, at 110-minute intervals);
* **prices**: a pair's spot price (shared by its zones) and on-demand price, as the runs saw them;
  on-demand is constant in a trace, so it is the window's last on-demand price of the pair;
* **gaps**: a tick takes the latest run at or before its start (a missed run, or a tick between
  runs, keeps the previous run's values: forward fill). A run that scored no row at all is
  treated as missed. Ticks before the first observation have no capacity and no score; a pair's
  price before its first price in the window is that first price (prices must be positive).

The window is ``[start, end]`` (default: the first and last run of the store); runs up to
:data:`~spotlake.compute.offers.store.LOOKBACK` before ``start`` give the first ticks their values.
Shapes (vCPUs, memory) come from the store's SKU frames (the newest frame that has the size, as
StoreOffers reads them); sizes without one are dropped with a logged warning, and so are the pairs
and zones the newest SKU frame marks as not deployable by the collecting subscription, as
StoreOffers drops them.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Final

import numpy as np
import pandas as pd

from spotlake.clock import ensure_utc
from spotlake.compute.offers.store import AZURE_SCORE_SCALE, LOOKBACK
from spotlake.compute.simulate.trace import (
    FloatSeries,
    InstanceShape,
    IntSeries,
    OnDemandPrice,
    PoolSeries,
    Trace,
)
from spotlake.compute.values import Cloud, Pool
from spotlake.errors import ConfigError, CorruptStoreError
from spotlake.model import DESIRED_COUNTS, SCORE_VALUES, Source
from spotlake.storage.base import FrameKind, SnapshotStore

__all__ = ["DEFAULT_LEVELS", "trace_from_store"]

log = logging.getLogger(__name__)

#: The share of ``capacity`` a pool offers per placement score (other answers: none).
DEFAULT_LEVELS: Final[Mapping[str, float]] = {"High": 1.0, "Medium": 0.25, "Low": 0.0}

_COLUMNS: Final = ("size", "region", "zone", "desired_count", "score", "spot_price", "ondemand_price")
_ZONES: Final = re.compile(r"^Zone:\S+ zones ([\w,]+)$")

PoolKey = tuple[str, str, str]  # (region, zone, size)


def _check(capacity: int, levels: Mapping[str, float], desired_count: int | None, step: timedelta) -> None:
    if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
        raise ConfigError(f"capacity is the instances a High score stands for (>= 1), got {capacity!r}")
    for score, share in levels.items():
        if not (isinstance(share, int | float) and math.isfinite(share) and 0 <= share <= 1):
            raise ConfigError(f"levels[{score!r}] is a share of capacity between 0 and 1, got {share!r}")
    if desired_count is not None and desired_count not in DESIRED_COUNTS:
        raise ConfigError(f"desired_count must be one of {list(DESIRED_COUNTS)}, got {desired_count!r}")
    if step <= timedelta(0):
        raise ConfigError(f"step must be positive, got {step}")


def _names(values: Iterable[str] | None) -> frozenset[str] | None:
    if values is None:
        return None
    return frozenset([values] if isinstance(values, str) else values)


def _merged(
    store: SnapshotStore,
    start: datetime | None,
    end: datetime | None,
    regions: frozenset[str] | None,
    sizes: frozenset[str] | None,
) -> pd.DataFrame:
    """The merged rows of the window's runs (and of the runs up to LOOKBACK before it) in the
    regions and of the sizes asked for."""
    frame = store.read_frames(FrameKind.MERGED, start=None if start is None else start - LOOKBACK, end=end)
    if frame.empty:
        window = f" between {start or 'the first run'} and {end or 'the last run'}"
        raise ConfigError(
            f"{store.url} holds no committed snapshot{window}: run collections first "
            f"(spotlake collect azure --store {store.url})"
        )
    missing = [c for c in (*_COLUMNS, "run_at") if c not in frame.columns]
    if missing:
        raise CorruptStoreError(f"{store.url}: the merged snapshots lack columns {missing}")
    keep = frame["size"].notna() & frame["region"].notna()
    if regions is not None:
        keep &= frame["region"].isin(regions)
    if sizes is not None:
        keep &= frame["size"].isin(sizes)
    frame = frame[keep].reset_index(drop=True)
    if frame.empty:
        asked = " and ".join(f"{k} {sorted(v)}" for k, v in (("regions", regions), ("sizes", sizes)) if v)
        raise ConfigError(
            f"{store.url}: no collected row for {asked or 'the filters given'}; check the names "
            "(ARM region names such as eastus, sizes as Azure spells them)"
        )
    zone = frame["region"].str.cat(frame["zone"], sep="-")
    frame["where"] = zone.fillna(frame["region"])
    return frame


def _shapes(
    store: SnapshotStore, start: datetime, end: datetime
) -> tuple[dict[str, InstanceShape], set[tuple[str, str]]]:
    """(size -> shape) from the newest SKU frame having each size, and the blocked
    (region, size) and (zone name, size) pairs of the newest SKU frame."""
    skus = store.read_frames(FrameKind.RAW, source=Source.SKUS, start=start - LOOKBACK, end=end)
    if skus.empty:
        return {}, set()
    known = skus[skus["size"].notna() & skus["vcpus"].notna() & skus["memory_gib"].notna()]
    newest_first = known.sort_values("run_at", ascending=False, kind="stable").drop_duplicates("size")
    shapes = {
        str(size): InstanceShape(vcpus=int(vcpus), memory_gib=float(memory))
        for size, vcpus, memory in zip(
            newest_first["size"].tolist(),
            newest_first["vcpus"].tolist(),
            newest_first["memory_gib"].tolist(),
            strict=True,
        )
    }
    newest = skus[skus["run_at"] == skus["run_at"].max()]
    blocked: set[tuple[str, str]] = set()
    for size, region, restricted, why in zip(
        newest["size"], newest["region"], newest["restricted"], newest["restriction"], strict=True
    ):
        if size is pd.NA or region is pd.NA:
            continue
        if restricted is True:
            blocked.add((region, size))
        for part in "" if why is pd.NA else str(why).split("; "):
            if match := _ZONES.match(part):
                blocked.update((f"{region}-{zone}", size) for zone in match[1].split(","))
    return shapes, blocked


def _latest_index(times: pd.DatetimeIndex, ticks: pd.DatetimeIndex) -> IntSeries:
    """Per tick, the index of the latest time at or before it (-1 when there is none)."""
    return np.asarray(times.searchsorted(ticks, side="right"), dtype=np.int64) - 1


def _pools(
    frame: pd.DataFrame,
    scored: pd.DataFrame,
    shapes: Mapping[str, InstanceShape],
    blocked: set[tuple[str, str]],
) -> list[PoolKey]:
    """The pools: scored cells, and one regional pool per spot-priced pair no run scored; only
    pairs with a spot price, a known shape and not blocked."""
    priced = set(zip(*(frame.loc[frame["spot_price"].notna(), c] for c in ("region", "size")), strict=True))
    cells = set(zip(scored["region"], scored["where"], scored["size"], strict=True))
    seen_pairs = {(r, s) for r, _, s in cells}
    cells |= {(r, r, s) for r, s in priced - seen_pairs}
    unknown = sorted({s for r, _, s in cells if (r, s) in priced and s not in shapes})
    if unknown:
        log.warning(
            "%d size(s) of the store have no vCPUs/memory in its SKU data and are left out of the trace "
            "(e.g. %s)",
            len(unknown),
            ", ".join(unknown[:3]),
        )
    return sorted(
        (r, w, s)
        for r, w, s in cells
        if (r, s) in priced and s in shapes and (r, s) not in blocked and (w, s) not in blocked
    )


def _scores(
    scored: pd.DataFrame,
    pools: list[PoolKey],
    ticks: pd.DatetimeIndex,
    *,
    capacity: int,
    levels: Mapping[str, float],
) -> tuple[IntSeries, FloatSeries]:
    """(availability, score) per (tick, pool) from the latest observation at or before each tick."""
    runs = pd.DatetimeIndex(sorted(scored["run_at"].unique()))
    column = pd.MultiIndex.from_tuples(pools).get_indexer(
        pd.MultiIndex.from_arrays([scored["region"], scored["where"], scored["size"]])
    )
    row = runs.get_indexer(pd.DatetimeIndex(scored["run_at"]))
    keep = column >= 0
    strings = scored["score"].astype(object).where(scored["score"].notna(), None).to_numpy()[keep]
    share = np.array([levels.get(s, 0.0) if s is not None else 0.0 for s in strings], dtype=np.float64)
    value = np.array([SCORE_VALUES.get(s, math.nan) if s is not None else math.nan for s in strings])
    # One extra row (index -1 -> the last) for ticks before the first observation: nothing.
    available = np.zeros((len(runs) + 1, len(pools)), dtype=np.int64)
    score = np.full((len(runs) + 1, len(pools)), math.nan)
    available[row[keep], column[keep]] = np.floor(share * capacity + 1e-9).astype(np.int64)
    score[row[keep], column[keep]] = value
    at = _latest_index(runs, ticks)
    return available[at], score[at]


def _prices(
    frame: pd.DataFrame, pools: list[PoolKey], ticks: pd.DatetimeIndex
) -> tuple[FloatSeries, dict[tuple[str, str], float]]:
    """(spot price per (tick, pool), last on-demand price per (region, size))."""
    pairs = sorted({(r, s) for r, _, s in pools})
    runs = pd.DatetimeIndex(sorted(frame["run_at"].unique()))
    spot = frame[frame["spot_price"].notna()].drop_duplicates(["run_at", "region", "size"])
    table = spot.pivot(index="run_at", columns=["region", "size"], values="spot_price")
    table = table.reindex(index=runs, columns=pd.MultiIndex.from_tuples(pairs)).ffill().bfill()
    at = np.maximum(_latest_index(runs, ticks), 0)
    by_pair = table.to_numpy(dtype=np.float64)[at]
    index = {pair: i for i, pair in enumerate(pairs)}
    column = [index[(r, s)] for r, _, s in pools]
    od = frame[frame["ondemand_price"].notna()].sort_values("run_at", kind="stable")
    last = od.drop_duplicates(["region", "size"], keep="last")
    on_demand = {
        (r, s): float(p) for r, s, p in zip(last["region"], last["size"], last["ondemand_price"], strict=True)
    }
    return by_pair[:, column], on_demand


def trace_from_store(
    store: SnapshotStore,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    step: timedelta = timedelta(minutes=10),
    capacity: int = 64,
    levels: Mapping[str, float] = DEFAULT_LEVELS,
    desired_count: int | None = None,
    regions: Iterable[str] | None = None,
    sizes: Iterable[str] | None = None,
    name: str | None = None,
) -> Trace:
    """The store's Azure history in ``[start, end]`` as a trace (see the module docstring).

    ``capacity``: the instances a High score stands for; ``levels``: the share of it each score
    string stands for (others: 0). ``desired_count``: use only the runs that scored this count
    (``None``: every run). ``step``: the trace's tick (the collection runs every 10 minutes).
    ``regions``, ``sizes``: only these (``None``: all; a whole store is large: 60 regions x 800
    sizes x 3 zones are ~150,000 pools, 1,008 ticks a week).
    """
    _check(capacity, levels, desired_count, step)
    start = None if start is None else ensure_utc(start)
    end = None if end is None else ensure_utc(end)
    frame = _merged(store, start, end, _names(regions), _names(sizes))
    first = start or frame["run_at"].min().to_pydatetime()
    last = end or frame["run_at"].max().to_pydatetime()
    if last < first:
        raise ConfigError(f"the trace would end ({last}) before it starts ({first})")
    ticks = pd.date_range(first, periods=int((last - first) / step) + 1, freq=step)
    scored = frame[frame["desired_count"].notna()]
    if desired_count is not None:
        scored = scored[scored["desired_count"] == desired_count]
        if scored.empty:
            raise ConfigError(
                f"{store.url}: no run between {first} and {last} scored desired count {desired_count}; "
                "pass desired_count=None to use every run"
            )
    shapes, blocked = _shapes(store, first, last)
    pools = _pools(frame, scored, shapes, blocked)
    if not pools:
        raise ConfigError(
            f"{store.url}: no spot pool between {first} and {last} (in the regions and sizes asked for) "
            "has a spot price and a known size"
        )
    available, score = _scores(scored, pools, ticks, capacity=capacity, levels=levels)
    prices, on_demand = _prices(frame, pools, ticks)
    series = [
        PoolSeries(
            pool=Pool(cloud=Cloud.AZURE, region=r, zone=w, instance_type=s),
            available=available[:, i],
            price=prices[:, i],
            score=score[:, i],
            score_scale=int(AZURE_SCORE_SCALE),
        )
        for i, (r, w, s) in enumerate(pools)
    ]
    allowed = {(r, s) for r, s in on_demand if s in shapes and (r, s) not in blocked}
    od_prices = tuple(
        OnDemandPrice(region=r, instance_type=s, price=on_demand[(r, s)]) for r, s in sorted(allowed)
    )
    sizes = {s for _, _, s in pools} | {s for _, s in allowed}
    return Trace(
        name=name or f"{store.url} history {first:%Y-%m-%dT%H:%MZ}..{last:%Y-%m-%dT%H:%MZ}",
        cloud=Cloud.AZURE,
        start=first,
        step=step,
        spot=series,
        on_demand=od_prices,
        shapes={s: shapes[s] for s in sorted(sizes)},
    )
