"""AWS offers: the latest committed snapshot of a store's AWS tree, or live EC2 and Pricing calls.

**Zones are availability-zone IDs** (``use1-az1``): the physical zone, the same in every account,
as the collectors and the store write them (zone *names*, ``us-east-1a``, are shuffled per
account). The offers keep them as they are, as :class:`~spotlake.compute.offers.CatalogOffers`
keeps the zone IDs of the newer SkyPilot catalog (:data:`~spotlake.compute.offers.ZoneKind.ID`):
an ID names its region (``use1`` is ``us-east-1``), so ``str(pool)`` names one pool, and
:class:`~spotlake.compute.launch.ec2.Ec2Launcher` maps it to the launching account's zone name
(``DescribeAvailabilityZones``, once per region). A request's ``zones`` filter names zone IDs.

:class:`AwsStoreOffers` reads ``open_store(location, cloud=Cloud.AWS)`` as
:class:`~spotlake.compute.offers.StoreOffers` reads the Azure tree:

* a **spot** offer per merged-snapshot row with a spot price: ``score`` =
  ``PlacementScore(1..10, scale=10)`` (:data:`~spotlake.model.AWS_SCORES`) observed at the row's
  ``observed_at`` (a row served with its last known score keeps that older time; ``None`` for an
  unscored row), the Spot Instance Advisor's eviction bucket and its score. A pair no zone of which
  was scored has one row without a zone, priced at its cheapest zone: a regional spot offer (EC2
  picks the zone), counted in the warnings. A scored zone AWS gives no spot price has none in the
  snapshot (spotlake.scoring.merge prices zones by their own price): no spot offer;
* an **on-demand** offer per (region, type) with an on-demand price, zone ``None``.

vCPUs and memory come from the run's ``aws_types`` raw frame (earlier ones, within
:data:`~spotlake.compute.offers.store.LOOKBACK`, fill types it lacks); a row whose type has none is
dropped and counted, never guessed. Stale data is not dropped here (the policy's ``Fresh`` filter
decides): the set's warnings say how old the snapshot is when it is older than ``stale_after``.

:class:`LiveAwsOffers` calls AWS instead, through the collectors of :mod:`spotlake.collect.aws`
(spot prices, instance types, on-demand prices), which the caller builds with their client
factory and clock (``spotlake.compute`` does not import the collectors: docs/architecture.md). It
caches the offers for ``ttl``; a failed refresh serves the cached offers, with a warning, while
they are younger than ``max_age``, and raises a :class:`~spotlake.errors.CollectError` after. Live
offers have **no placement scores**: scoring needs a collection run's account rotation and its
budget of new configurations per account (:mod:`spotlake.pipeline.aws`); :class:`AwsStoreOffers`
has them. Nor do they have eviction data (the Spot Instance Advisor is a collection-run source).
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Final, Protocol

import pandas as pd

from spotlake.clock import Clock, SystemClock, ensure_utc
from spotlake.compute.offers.base import OfferSet, newest
from spotlake.compute.offers.catalog import family_of
from spotlake.compute.offers.store import (
    DEFAULT_STALE_AFTER,
    LOOKBACK,
    duration_text,
    latest_snapshot,
    stale_warning,
    values_of,
)
from spotlake.compute.values import CapacityType, Cloud, Offer, PlacementScore, Pool
from spotlake.errors import CollectError, ConfigError, CorruptStoreError, PayloadError, SpotlakeError
from spotlake.model import AWS_SCORES, DESIRED_COUNTS, EVICTION_BUCKETS, Source
from spotlake.storage.base import FrameKind, SnapshotStore

__all__ = [
    "AWS_SCORE_SCALE",
    "DEFAULT_RETRY_AFTER",
    "DEFAULT_TTL",
    "AwsStoreOffers",
    "CollectReportLike",
    "CollectedLike",
    "LiveAwsOffers",
    "LiveCollector",
]

#: EC2 placement scores are 1..10.
AWS_SCORE_SCALE: Final = float(AWS_SCORES.highest)
#: How long :class:`LiveAwsOffers` serves what it fetched before calling AWS again: the
#: collection cadence (prices older than a run are what a store would serve anyway).
DEFAULT_TTL: Final = timedelta(minutes=10)
#: After a failed refresh, how long the cached offers are served before AWS is called again.
DEFAULT_RETRY_AFTER: Final = timedelta(minutes=1)

_COLUMNS: Final = (
    "size",
    "region",
    "zone",
    "family",
    "score",
    "score_value",
    "ondemand_price",
    "spot_price",
    "eviction_bucket",
    "observed_at",
)
_TYPE_COLUMNS: Final = ("size", "family", "vcpus", "memory_gib")
_COLLECT_HINT: Final = (
    "run an AWS collection first (spotlake collect aws --store LOCATION), and read the store's AWS "
    "tree: open_store(location, cloud=Cloud.AWS)"
)

#: Instance type -> (vCPUs, memory GiB, family).
_Shapes = dict[str, tuple[int, float, str | None]]


def _add_shapes(shapes: _Shapes, types: pd.DataFrame) -> None:
    """Types of an ``aws_types`` frame (:data:`~spotlake.model.AWS_TYPES_SCHEMA`) not in ``shapes`` yet."""
    for size, family, vcpus, memory in zip(*(values_of(types, c) for c in _TYPE_COLUMNS), strict=True):
        if size is not None and vcpus is not None and memory is not None and size not in shapes:
            shapes[size] = (int(vcpus), float(memory), family or family_of(size))


def _newer(offers: dict[Pool, Offer], offer: Offer) -> bool:
    """Keep ``offer`` for its pool unless one observed as late or later is there; False for a repeat."""
    known = offers.get(offer.pool)
    later = (
        known is not None
        and known.observed_at is not None
        and offer.observed_at is not None
        and offer.observed_at > known.observed_at
    )
    if known is None or later:
        offers[offer.pool] = offer
    return known is None


def _offer(
    shape: tuple[int, float, str | None],
    pool: Pool,
    kind: CapacityType,
    price: float,
    *,
    seen: datetime,
    source: str,
    family: str | None = None,
    score: PlacementScore | None = None,
    bucket: str | None = None,
    eviction: float | None = None,
) -> Offer:
    vcpus, memory, type_family = shape
    return Offer(
        pool=pool,
        capacity_type=kind,
        price=price,
        vcpus=vcpus,
        memory_gib=memory,
        family=family or type_family,
        score=score,
        eviction_bucket=bucket,
        eviction_score=eviction,
        observed_at=seen,
        source=source,
    )


def _unknown_types(count: int, types: set[str], where: str) -> list[str]:
    if not count:
        return []
    return [
        f"{count} row(s) dropped: {len(types)} instance type(s) have no vCPUs/memory in {where} "
        f"(e.g. {', '.join(sorted(types)[:3])})"
    ]


# --- the store ------------------------------------------------------------------------------------


class AwsStoreOffers:
    """The AWS offers of a spotlake store's AWS tree (see the module docstring).

    ``store``: ``open_store(location, cloud=Cloud.AWS)``. ``at``, ``desired_count``,
    ``stale_after`` and ``clock`` mean what they mean for
    :class:`~spotlake.compute.offers.StoreOffers`: the newest snapshot at or before ``at`` (ages
    measured at ``at``, else at ``clock.now()``); the newest one (within ``LOOKBACK``) whose run
    scored ``desired_count`` (target capacity); a warning when the snapshot is older than
    ``stale_after``. The store is read on every call.
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
        return f"AwsStoreOffers({self.store.url!r}, at={self.at}, desired_count={self.desired_count})"

    def offers(self) -> OfferSet:
        run_at, frame = self._snapshot()
        missing = [c for c in _COLUMNS if c not in frame.columns]
        if missing:
            raise CorruptStoreError(
                f"{self.store.url}: the merged snapshot of {run_at} lacks columns {missing}"
            )
        source = f"{self.store.url} merged AWS snapshot of {run_at:%Y-%m-%dT%H:%MZ}"
        counts = frame["desired_count"].dropna().unique().tolist()
        if counts:
            source += f" (target capacity {', '.join(str(c) for c in sorted(counts))})"
        shapes = self._shapes(run_at, set(frame["size"].dropna().tolist()))
        offers, warnings = _map_snapshot(frame, shapes, run_at=run_at, source=source)
        now = self.at if self.at is not None else ensure_utc(self.clock.now())
        stale = stale_warning(run_at, now, self.stale_after)
        if stale is not None:
            warnings.insert(0, stale)
        return OfferSet(offers=offers, source=source, observed_at=newest(offers), warnings=tuple(warnings))

    def _snapshot(self) -> tuple[datetime, pd.DataFrame]:
        """The run time and merged frame to offer from (StoreOffers' choice, AWS's wording)."""
        return latest_snapshot(
            self.store,
            at=self.at,
            desired_count=self.desired_count,
            hint=_COLLECT_HINT,
            count_name="target capacity",
        )

    def _shapes(self, run_at: datetime, wanted: set[str]) -> _Shapes:
        """vCPUs/memory from the newest ``aws_types`` frame at or before the run, and from older
        ones (within LOOKBACK) for types it lacks. None at all is a :class:`ConfigError`: the runs
        could not list the types for hours, or this is not an AWS tree."""
        times = self.store.run_times(
            FrameKind.RAW, source=Source.AWS_TYPES, start=run_at - LOOKBACK, end=run_at
        )
        if not times:
            raise ConfigError(
                f"{self.store.url} holds no instance-type frame ({Source.AWS_TYPES}) within "
                f"{duration_text(LOOKBACK)} before its run of {run_at:%Y-%m-%dT%H:%MZ}: the runs could not "
                f"list the instance types, or this is not the store's AWS tree ({_COLLECT_HINT})"
            )
        shapes: _Shapes = {}
        for t in reversed(times):
            types = self.store.read_frame(kind=FrameKind.RAW, at=t, source=Source.AWS_TYPES)
            if types is not None and len(types):
                _add_shapes(shapes, types)
            if wanted <= shapes.keys():
                break
        return shapes


def _score(value: int | None, seen: datetime) -> PlacementScore | None:
    """AWS's score (1..10) as a PlacementScore; ``None`` for no score or one off AWS's scale."""
    if value is None or not AWS_SCORES.lowest <= value <= AWS_SCORES.highest:
        return None
    return PlacementScore(value=float(value), scale=AWS_SCORE_SCALE, observed_at=seen)


def _map_snapshot(
    frame: pd.DataFrame, shapes: _Shapes, *, run_at: datetime, source: str
) -> tuple[list[Offer], list[str]]:
    """The offers of one merged AWS frame and the warnings about what it could not offer."""
    spot: dict[Pool, Offer] = {}
    on_demand: dict[Pool, Offer] = {}
    unknown: set[str] = set()
    count: Counter[str] = Counter()
    odd_scores: set[str] = set()
    odd_buckets: set[str] = set()
    rows = zip(*(values_of(frame, c) for c in _COLUMNS), strict=True)
    for size, region, zone, family, text, value, od_price, spot_price, bucket, observed in rows:
        if size is None or region is None:
            count["keyless"] += 1
            continue
        if od_price is None and spot_price is None:
            count["unpriced"] += 1
            continue
        shape = shapes.get(size)
        if shape is None:
            unknown.add(size)
            count["unknown type"] += 1
            continue
        seen = run_at if observed is None else ensure_utc(observed.to_pydatetime())
        if od_price is not None:
            pool = Pool(cloud=Cloud.AWS, region=region, zone=None, instance_type=size)
            od = _offer(
                shape, pool, CapacityType.ON_DEMAND, od_price, seen=seen, source=source, family=family
            )
            _newer(on_demand, od)
        if spot_price is None:
            continue
        score = _score(value, seen)
        if text is not None and score is None:
            odd_scores.add(text)
        eviction = None if bucket is None else EVICTION_BUCKETS.get(bucket.strip())
        if bucket is not None and eviction is None:
            odd_buckets.add(bucket)
            count["odd bucket"] += 1
        count["served"] += score is not None and seen < run_at
        count["regional"] += zone is None
        pool = Pool(cloud=Cloud.AWS, region=region, zone=zone, instance_type=size)
        offer = _offer(
            shape,
            pool,
            CapacityType.SPOT,
            spot_price,
            seen=seen,
            source=source,
            family=family,
            score=score,
            bucket=bucket,
            eviction=eviction,
        )
        count["repeated"] += not _newer(spot, offer)
    warnings = _unknown_types(count["unknown type"], unknown, f"the store's {Source.AWS_TYPES} frames")
    if count["served"]:
        warnings.append(
            f"{count['served']} spot offer(s) carry a placement score observed before the run (their "
            "placement-score queries failed; served with the last known score and its time)"
        )
    if count["regional"]:
        warnings.append(
            f"{count['regional']} spot offer(s) are regional (no zone of the pair was scored): priced at "
            "the region's cheapest zone, and EC2 picks the zone at launch"
        )
    if odd_scores:
        out_of = f"{AWS_SCORES.lowest}..{AWS_SCORES.highest}"
        warnings.append(
            f"placement scores off AWS's scale {out_of} were kept as no score: {sorted(odd_scores)}"
        )
    if odd_buckets:
        warnings.append(
            f"{count['odd bucket']} spot offer(s) have an eviction bucket spotlake does not know "
            f"({sorted(odd_buckets)}): no eviction score"
        )
    if count["repeated"]:
        warnings.append(f"{count['repeated']} repeated spot row(s): the newest observation is kept")
    if count["unpriced"]:
        warnings.append(f"{count['unpriced']} row(s) have neither a spot nor an on-demand price: no offer")
    if count["keyless"]:
        warnings.append(f"{count['keyless']} row(s) without a type or region were skipped")
    return [*on_demand.values(), *spot.values()], warnings


# --- live -----------------------------------------------------------------------------------------


class CollectReportLike(Protocol):
    """What :class:`LiveAwsOffers` reads of a collector's report."""

    @property
    def failures(self) -> Sequence[object]: ...

    @property
    def notes(self) -> Sequence[str]: ...


class CollectedLike(Protocol):
    """What :class:`LiveAwsOffers` reads of a collection: its frame and its report."""

    @property
    def frame(self) -> pd.DataFrame: ...

    @property
    def report(self) -> CollectReportLike: ...


class LiveCollector(Protocol):
    """A collector as :mod:`spotlake.collect.aws` builds them: its ``source`` and ``collect()``."""

    @property
    def source(self) -> str: ...

    def collect(self) -> CollectedLike: ...


class LiveAwsOffers:
    """AWS offers from live calls, cached (see the module docstring)::

        from spotlake.collect.aws import AwsInstanceTypeCollector, AwsOnDemandCollector, AwsSpotPriceCollector

        regions = ["us-east-1", "us-west-2"]
        live = LiveAwsOffers(
            spot_prices=AwsSpotPriceCollector(regions=regions, clients=clients, clock=clock),
            instance_types=AwsInstanceTypeCollector(regions=regions, clients=clients, clock=clock),
            on_demand=AwsOnDemandCollector(regions=regions, clients=clients, clock=clock),
            clock=clock,
        )

    ``offers()`` collects the three (in that order: types, spot prices, on-demand prices) when
    what it has is ``ttl`` old or more, else returns the set it has. Every offer is dated with the
    refresh's start. A collector's error fails the refresh: the cached set is served with a
    warning naming what failed while it is at most ``max_age`` old (AWS is not called again for
    ``retry_after``), else :class:`~spotlake.errors.CollectError`. A collector built with
    ``allow_partial=True`` may return some regions only: its missing regions and notes are in the
    set's warnings. Safe to share between threads (one refresh at a time).
    """

    def __init__(
        self,
        *,
        spot_prices: LiveCollector,
        instance_types: LiveCollector,
        on_demand: LiveCollector,
        ttl: timedelta = DEFAULT_TTL,
        max_age: timedelta = DEFAULT_STALE_AFTER,
        retry_after: timedelta = DEFAULT_RETRY_AFTER,
        clock: Clock | None = None,
    ) -> None:
        given = (
            ("instance types", instance_types, Source.AWS_TYPES),
            ("spot prices", spot_prices, Source.AWS_SPOT_PRICES),
            ("on-demand prices", on_demand, Source.AWS_ONDEMAND),
        )
        for what, collector, expected in given:
            if str(getattr(collector, "source", None)) != expected:
                raise ConfigError(
                    f"LiveAwsOffers: the {what} collector must collect {expected!s} (spotlake.collect.aws), "
                    f"got {type(collector).__name__} of source {str(getattr(collector, 'source', None))!r}"
                )
        if ttl <= timedelta(0) or max_age < ttl or retry_after < timedelta(0):
            raise ConfigError(
                f"LiveAwsOffers: need 0 < ttl <= max_age and retry_after >= 0, got ttl={ttl}, "
                f"max_age={max_age}, retry_after={retry_after}"
            )
        self._collectors: tuple[tuple[str, LiveCollector], ...] = tuple((w, c) for w, c, _ in given)
        self.ttl = ttl
        self.max_age = max_age
        self.retry_after = retry_after
        self.clock: Clock = clock or SystemClock()
        self._lock = threading.Lock()
        self._fetched: tuple[datetime, OfferSet] | None = None
        self._failed: tuple[datetime, str] | None = None

    def __repr__(self) -> str:
        return f"LiveAwsOffers(ttl={self.ttl}, max_age={self.max_age})"

    def offers(self) -> OfferSet:
        with self._lock:
            now = ensure_utc(self.clock.now())
            cached = self._fetched
            age = None if cached is None else now - cached[0]
            if cached is not None and age is not None and age < self.ttl:
                return cached[1]
            usable = cached is not None and age is not None and age <= self.max_age
            if usable and self._failed is not None and now - self._failed[0] < self.retry_after:
                return self._served(now)
            try:
                fresh = self._fetch(now)
            except SpotlakeError as exc:
                self._failed = (now, str(exc))
                if usable:
                    return self._served(now)
                older = (
                    ""
                    if cached is None or age is None
                    else f"; the offers fetched at {cached[0]:%Y-%m-%dT%H:%M:%SZ} are "
                    f"{duration_text(age)} old, older than max_age {duration_text(self.max_age)}"
                )
                raise CollectError(
                    f"live AWS offers could not be refreshed: {exc}{older}", source="aws live offers"
                ) from exc
            self._fetched, self._failed = (now, fresh), None
            return fresh

    def _served(self, now: datetime) -> OfferSet:
        """The cached set, its first warning saying that the last refresh failed and why."""
        assert self._fetched is not None and self._failed is not None
        at, cached = self._fetched
        failed_at, why = self._failed
        note = (
            f"refreshing failed at {failed_at:%Y-%m-%dT%H:%M:%SZ} ({why}): serving the offers fetched at "
            f"{at:%Y-%m-%dT%H:%M:%SZ}, {duration_text(now - at)} old "
            f"(served up to {duration_text(self.max_age)})"
        )
        return OfferSet(
            offers=cached.offers,
            source=cached.source,
            observed_at=cached.observed_at,
            warnings=(note, *cached.warnings),
        )

    def _fetch(self, now: datetime) -> OfferSet:
        frames: list[pd.DataFrame] = []
        warnings: list[str] = []
        for what, collector in self._collectors:
            try:
                got = collector.collect()
            except SpotlakeError as exc:
                raise CollectError(
                    f"the {what} ({collector.source}) failed: {exc}", source=collector.source
                ) from exc
            failures = [str(f) for f in got.report.failures]
            if failures:
                shown = "; ".join(failures[:3]) + (" ..." if len(failures) > 3 else "")
                warnings.append(f"{what}: {len(failures)} unit(s) missing (allow_partial): {shown}")
            warnings.extend(f"{what}: {note}" for note in got.report.notes)
            frames.append(got.frame)
        types, spot, ondemand = frames
        source = f"live AWS prices of {now:%Y-%m-%dT%H:%M:%SZ}"
        offers, mapped = _map_live(types, spot, ondemand, seen=now, source=source)
        return OfferSet(
            offers=offers, source=source, observed_at=newest(offers), warnings=(*mapped, *warnings)
        )


def _columns(frame: pd.DataFrame, columns: Iterable[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise PayloadError(f"live AWS offers: the {what} frame lacks columns {missing}", source=what)


def _map_live(
    types: pd.DataFrame, spot: pd.DataFrame, ondemand: pd.DataFrame, *, seen: datetime, source: str
) -> tuple[list[Offer], list[str]]:
    """Offers from the collectors' frames (AWS_TYPES, AWS_SPOT_PRICES, AWS_ONDEMAND schemas)."""
    _columns(types, _TYPE_COLUMNS, Source.AWS_TYPES)
    _columns(ondemand, ("size", "region", "ondemand_price"), Source.AWS_ONDEMAND)
    _columns(spot, ("size", "region", "zone", "spot_price"), Source.AWS_SPOT_PRICES)
    shapes: _Shapes = {}
    _add_shapes(shapes, types)
    od_rows = zip(*(values_of(ondemand, c) for c in ("size", "region", "ondemand_price")), strict=True)
    spot_rows = zip(*(values_of(spot, c) for c in ("size", "region", "zone", "spot_price")), strict=True)
    rows = [
        *((CapacityType.ON_DEMAND, size, region, None, price) for size, region, price in od_rows),
        *((CapacityType.SPOT, size, region, zone, price) for size, region, zone, price in spot_rows),
    ]
    offers: dict[CapacityType, dict[Pool, Offer]] = {CapacityType.ON_DEMAND: {}, CapacityType.SPOT: {}}
    unknown: set[str] = set()
    dropped = 0
    for kind, size, region, zone, price in rows:
        if size is None or region is None or price is None:
            continue
        shape = shapes.get(size)
        if shape is None:
            unknown.add(size)
            dropped += 1
            continue
        pool = Pool(cloud=Cloud.AWS, region=region, zone=zone, instance_type=size)
        _newer(offers[kind], _offer(shape, pool, kind, float(price), seen=seen, source=source))
    found = [o for by_pool in offers.values() for o in by_pool.values()]
    return found, _unknown_types(dropped, unknown, "DescribeInstanceTypes' answer")
