"""Azure offers from a spotlake store: the latest committed merged snapshot, sized by the SKU data.

A collection run commits one merged frame (:data:`~spotlake.model.SNAPSHOT_SCHEMA`: one row per
scored (size, region, zone) at the run's desired count, plus one row per priced pair that no SPS
row scored) and the raw SKU frame (vCPUs, memory, restrictions per (size, region)).
:class:`StoreOffers` maps them to offers:

* a **spot** offer per snapshot row with a spot price: ``score`` =
  ``PlacementScore(High=3/Medium=2/Low=1, scale=3)`` observed at the row's ``observed_at``
  (``None`` for ``DataNotFoundOrStale`` and for unscored rows), the eviction bucket (``0-5`` ...
  ``20+``) and its score (3.0 ... 1.0, :data:`~spotlake.model.EVICTION_BUCKETS`);
* an **on-demand** offer per (region, size) with an on-demand price, zone ``None``.

Azure numbers zones per region (``"1"``); an offer's zone is written ``"<region>-<n>"`` (``eastus-1``,
as Kubernetes labels Azure zones) so that, as with AWS zone names, a zone names its region and
``str(pool)`` is unique. The merged frame has no sizes: vCPUs and memory come from the run's SKU
frame (earlier SKU frames fill sizes it lacks); a row whose size is unknown is dropped and counted,
never guessed. Offers the SKU data marks as not deployable by the collecting subscription
(``Location``/``Zone`` restrictions) and spot rows the SPS API answered ``RestrictedSkuNotAvailable``
are dropped and counted. Stale data is not dropped here (the policy's ``Fresh`` filter decides):
each offer keeps its observation time (a row served with its last known score keeps that older
time) and the set's warnings say how old the snapshot is when it is older than ``stale_after``.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any, Final

import pandas as pd

from spotlake.clock import Clock, SystemClock, ensure_utc
from spotlake.compute.offers.base import OfferSet, newest
from spotlake.compute.values import CapacityType, Cloud, Offer, PlacementScore, Pool
from spotlake.errors import ConfigError, CorruptStoreError
from spotlake.model import DESIRED_COUNTS, EVICTION_BUCKETS, SCORE_VALUES, Source
from spotlake.storage.base import FrameKind, SnapshotStore

__all__ = [
    "AZURE_SCORE_SCALE",
    "DEFAULT_STALE_AFTER",
    "LOOKBACK",
    "StoreOffers",
    "duration_text",
    "latest_snapshot",
    "stale_warning",
    "values_of",
]

#: Azure's placement scores are High/Medium/Low: 3/2/1 on a scale of 3.
AZURE_SCORE_SCALE: Final = 3.0
#: A snapshot older than this (three missed 10-minute runs) is reported as stale.
DEFAULT_STALE_AFTER: Final = timedelta(minutes=30)
#: How far back from the newest run a desired count or a size is looked for (the scoring
#: history's default max age: older observations have expired).
LOOKBACK: Final = timedelta(hours=6)

_RESTRICTED_SCORE: Final = "RestrictedSkuNotAvailable"
_KNOWN_NO_SCORE: Final = frozenset({"DataNotFoundOrStale"})
_ZONES: Final = re.compile(r"^Zone:\S+ zones ([\w,]+)$")
_COLUMNS: Final = ("size", "region", "zone", "desired_count", "family", "score", "ondemand_price")
_MORE: Final = ("spot_price", "eviction_bucket", "observed_at")


def values_of(frame: pd.DataFrame, column: str) -> list[Any]:
    """A column as Python values, ``None`` for every missing value."""
    series = frame[column]
    return series.astype(object).where(series.notna(), None).tolist()


class _Sizes:
    """vCPUs, memory and family per size, and the restrictions per (region, size), from SKU frames."""

    def __init__(self) -> None:
        self.shape: dict[str, tuple[int, float, str | None]] = {}
        self.blocked: set[tuple[str, str]] = set()
        self.blocked_zones: dict[tuple[str, str], frozenset[str]] = {}

    def add(self, skus: pd.DataFrame, *, restrictions: bool) -> None:
        columns = ("size", "region", "family", "vcpus", "memory_gib", "restricted", "restriction")
        for size, region, family, vcpus, memory, blocked, why in zip(
            *(values_of(skus, c) for c in columns), strict=True
        ):
            if size is not None and vcpus is not None and memory is not None and size not in self.shape:
                self.shape[size] = (int(vcpus), float(memory), family)
            if not restrictions or size is None or region is None:
                continue
            if blocked:
                self.blocked.add((region, size))
            zones = {
                z for part in (why or "").split("; ") if (m := _ZONES.match(part)) for z in m[1].split(",")
            }
            if zones:
                self.blocked_zones[(region, size)] = (
                    self.blocked_zones.get((region, size), frozenset()) | zones
                )


class StoreOffers:
    """The Azure offers of a spotlake store (see the module docstring).

    ``at``: use the newest snapshot at or before this time (a replay) instead of the newest one;
    ages are then measured at ``at``, otherwise at ``clock.now()``. ``desired_count``: use the
    newest snapshot (within :data:`LOOKBACK` of the newest run) whose run scored this count,
    so scores are comparable from one call to the next (each run scores one count of the rotation
    1, 5, ..., 50; ``None``: whatever the newest run scored). The store is read on every call.
    """

    def __init__(
        self,
        store: SnapshotStore,
        *,
        at: datetime | None = None,
        desired_count: int | None = None,
        stale_after: timedelta = DEFAULT_STALE_AFTER,
        clock: Clock | None = None,
    ) -> None:
        if desired_count is not None and desired_count not in DESIRED_COUNTS:
            raise ConfigError(f"desired_count must be one of {list(DESIRED_COUNTS)}, got {desired_count!r}")
        self.store = store
        self.at = None if at is None else ensure_utc(at)
        self.desired_count = desired_count
        self.stale_after = stale_after
        self.clock: Clock = clock or SystemClock()

    def __repr__(self) -> str:
        return f"StoreOffers({self.store.url!r}, at={self.at}, desired_count={self.desired_count})"

    def offers(self) -> OfferSet:
        run_at, frame = self._snapshot()
        missing = [c for c in (*_COLUMNS, *_MORE) if c not in frame.columns]
        if missing:
            raise CorruptStoreError(
                f"{self.store.url}: the merged snapshot of {run_at} lacks columns {missing}"
            )
        source = f"{self.store.url} merged snapshot of {run_at:%Y-%m-%dT%H:%MZ}"
        counts = frame["desired_count"].dropna().unique().tolist()
        if counts:
            source += f" (desired count {', '.join(str(c) for c in sorted(counts))})"
        sizes = self._sizes(run_at, set(frame["size"].dropna().tolist()))
        offers, warnings = _map(frame, sizes, run_at=run_at, source=source)
        now = self.at if self.at is not None else ensure_utc(self.clock.now())
        stale = stale_warning(run_at, now, self.stale_after)
        if stale is not None:
            warnings.insert(0, stale)
        return OfferSet(offers=offers, source=source, observed_at=newest(offers), warnings=tuple(warnings))

    def _snapshot(self) -> tuple[datetime, pd.DataFrame]:
        return latest_snapshot(
            self.store,
            at=self.at,
            desired_count=self.desired_count,
            hint=f"run a collection first (spotlake collect azure --store {self.store.url})",
            count_name="desired count",
        )

    def _sizes(self, run_at: datetime, wanted: set[str]) -> _Sizes:
        """Sizes from the newest SKU frame at or before the run, and from older ones (within
        :data:`LOOKBACK`) for sizes it lacks; restrictions from the newest frame with rows only."""
        sizes = _Sizes()
        times = self.store.run_times(FrameKind.RAW, source=Source.SKUS, start=run_at - LOOKBACK, end=run_at)
        restrictions = True
        for t in reversed(times):
            skus = self.store.read_frame(kind=FrameKind.RAW, at=t, source=Source.SKUS)
            if skus is not None and len(skus):
                sizes.add(skus, restrictions=restrictions)
                restrictions = False
            if wanted <= sizes.shape.keys():
                break
        return sizes


def _map(
    frame: pd.DataFrame, sizes: _Sizes, *, run_at: datetime, source: str
) -> tuple[list[Offer], list[str]]:
    """The offers of one merged frame and the warnings about what it could not offer."""
    spot: list[Offer] = []
    on_demand: dict[Pool, Offer] = {}
    unknown_sizes: set[str] = set()
    count: Counter[str] = Counter()
    odd_scores: set[str] = set()
    odd_buckets: set[str] = set()
    rows = zip(*(values_of(frame, c) for c in (*_COLUMNS, *_MORE)), strict=True)
    for size, region, zone, _count, named_family, score, od_price, spot_price, bucket, observed in rows:
        if size is None or region is None:
            count["keyless"] += 1
            continue
        if od_price is None and spot_price is None:
            count["unpriced"] += 1
            continue
        shape = sizes.shape.get(size)
        if shape is None:
            unknown_sizes.add(size)
            count["unknown size"] += 1
            continue
        if (region, size) in sizes.blocked:
            count["restricted"] += 1
            continue
        vcpus, memory, sku_family = shape
        family = named_family or sku_family
        seen = run_at if observed is None else ensure_utc(observed.to_pydatetime())
        if od_price is not None:
            pool = Pool(cloud=Cloud.AZURE, region=region, zone=None, instance_type=size)
            known = on_demand.get(pool)
            if known is None or (known.observed_at is not None and seen > known.observed_at):
                on_demand[pool] = Offer(
                    pool=pool,
                    capacity_type=CapacityType.ON_DEMAND,
                    price=od_price,
                    vcpus=vcpus,
                    memory_gib=memory,
                    family=family,
                    observed_at=seen,
                    source=source,
                )
        if spot_price is None:
            continue
        if zone is not None and zone in sizes.blocked_zones.get((region, size), ()):
            count["restricted zone"] += 1
            continue
        if score == _RESTRICTED_SCORE:
            count["restricted score"] += 1
            continue
        value = None if score is None else SCORE_VALUES.get(score)
        if score is not None and value is None and score not in _KNOWN_NO_SCORE:
            odd_scores.add(score)
        eviction = None if bucket is None else EVICTION_BUCKETS.get(bucket.strip())
        if bucket is not None and eviction is None:
            odd_buckets.add(bucket)
            count["odd bucket"] += 1
        count["served"] += seen < run_at
        where = None if zone is None else f"{region}-{zone}"
        spot.append(
            Offer(
                pool=Pool(cloud=Cloud.AZURE, region=region, zone=where, instance_type=size),
                capacity_type=CapacityType.SPOT,
                price=spot_price,
                vcpus=vcpus,
                memory_gib=memory,
                family=family,
                score=None
                if value is None
                else PlacementScore(value=value, scale=AZURE_SCORE_SCALE, observed_at=seen),
                eviction_bucket=bucket,
                eviction_score=eviction,
                observed_at=seen,
                source=source,
            )
        )
    return [*on_demand.values(), *spot], _warnings(count, unknown_sizes, odd_scores, odd_buckets)


def _warnings(
    count: Counter[str], sizes: set[str], scores: Iterable[str], buckets: Iterable[str]
) -> list[str]:
    out: list[str] = []
    if count["unknown size"]:
        out.append(
            f"{count['unknown size']} row(s) dropped: {len(sizes)} size(s) have no vCPUs/memory in the "
            f"store's SKU data (e.g. {', '.join(sorted(sizes)[:3])})"
        )
    if count["restricted"] or count["restricted zone"]:
        out.append(
            f"{count['restricted']} row(s) and {count['restricted zone']} zonal spot row(s) dropped: the SKU "
            "data says the collecting subscription cannot deploy the size there"
        )
    if count["restricted score"]:
        out.append(
            f"{count['restricted score']} spot row(s) dropped: the SPS API answered {_RESTRICTED_SCORE}"
        )
    if count["served"]:
        out.append(
            f"{count['served']} spot offer(s) carry a placement score observed before the run (their SPS "
            "calls failed; served with the last known score and its time)"
        )
    if scores:
        out.append(f"placement scores spotlake does not know were kept as no score: {sorted(scores)}")
    if buckets:
        out.append(
            f"{count['odd bucket']} spot offer(s) have an eviction bucket spotlake does not know "
            f"({sorted(buckets)}): no eviction score"
        )
    if count["unpriced"]:
        out.append(f"{count['unpriced']} row(s) have neither a spot nor an on-demand price: no offer")
    if count["keyless"]:
        out.append(f"{count['keyless']} row(s) without a size or region were skipped")
    return out


def latest_snapshot(
    store: SnapshotStore, *, at: datetime | None, desired_count: int | None, hint: str, count_name: str
) -> tuple[datetime, pd.DataFrame]:
    """The newest committed merged snapshot at or before ``at`` (that scored ``desired_count``,
    looking back :data:`LOOKBACK`, when given); a :class:`ConfigError` naming ``hint`` for an
    empty store, and ``count_name`` (the cloud's word for the count) when no run scored it."""
    times = store.run_times(FrameKind.MERGED, end=at)
    if not times:
        when = "" if at is None else f" at or before {at.isoformat()}"
        raise ConfigError(f"{store.url} holds no committed snapshot{when}: {hint}")
    candidates = (
        [times[-1]] if desired_count is None else [t for t in reversed(times) if t >= times[-1] - LOOKBACK]
    )
    for run_at in candidates:
        frame = store.read_frame(kind=FrameKind.MERGED, at=run_at)
        if frame is None:
            raise CorruptStoreError(f"{store.url}: the merged snapshot of {run_at} vanished; retry")
        if desired_count is None or desired_count in set(frame["desired_count"].dropna()):
            return run_at, frame
    raise ConfigError(
        f"{store.url}: no run within {duration_text(LOOKBACK)} before {times[-1].isoformat()} scored "
        f"{count_name} {desired_count}; pass desired_count=None to use the newest snapshot"
    )


def stale_warning(run_at: datetime, now: datetime, stale_after: timedelta) -> str | None:
    """The warning an offer set carries when its snapshot is older than ``stale_after``."""
    age = now - run_at
    if age <= stale_after:
        return None
    return (
        f"the snapshot is {duration_text(age)} old (run {run_at:%Y-%m-%dT%H:%MZ}, newer than "
        f"{duration_text(stale_after)} expected): its offers are stale; is the collection running?"
    )


def duration_text(delta: timedelta) -> str:
    """``2h05m``, ``12m``, ``3d04h``: a readable age."""
    minutes = int(delta.total_seconds() // 60)
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    if days:
        return f"{days}d{hours:02d}h"
    return f"{hours}h{mins:02d}m" if hours else f"{mins}m"
