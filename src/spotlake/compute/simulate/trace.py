"""What the simulator replays: per pool, how much spot capacity there is and what it costs, over time.

A :class:`Trace` is a grid of ``ticks`` steps of ``step`` from ``start``. Each spot pool has a
:class:`PoolSeries`: per tick the number of spot instances the cloud would give now
(``available``), the spot price (USD per hour) and, when the source knows it, the placement score
the allocator would have seen. On-demand capacity is unlimited at its regional price (one
:class:`OnDemandPrice` per instance type and region). The values are what every trace source
(the public spot traces, the generator, a spotlake store's history) produces and what the
simulator's launcher and offer source read; nothing here knows where a trace came from.

``available`` is what the cloud has, not what the allocator knows: the offers built from a trace
(:meth:`Trace.offers`) carry the price and score of the tick, never the availability.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta

import attrs
import numpy as np
import numpy.typing as npt

from spotlake.clock import ensure_utc
from spotlake.compute.values import CapacityType, Cloud, Offer, PlacementScore, Pool
from spotlake.errors import ConfigError

__all__ = ["InstanceShape", "OnDemandPrice", "PoolSeries", "Trace"]

IntSeries = npt.NDArray[np.int64]
FloatSeries = npt.NDArray[np.float64]

#: How long a spot instance is warned before it is taken, per cloud (EC2: two minutes; Azure
#: Scheduled Events: at least 30 seconds).
NOTICE: Mapping[Cloud, timedelta] = {Cloud.AWS: timedelta(minutes=2), Cloud.AZURE: timedelta(seconds=30)}


@attrs.frozen(kw_only=True)
class InstanceShape:
    """An instance type's size (what offers carry)."""

    vcpus: int
    memory_gib: float
    gpus: int = 0


def _int_series(value: object) -> IntSeries:
    array = np.asarray(value, dtype=np.int64)
    if array.ndim != 1:
        raise ConfigError(f"a pool's availability is one number per tick, got shape {array.shape}")
    if (array < 0).any():
        raise ConfigError("a pool's availability counts instances: no negative values")
    array.setflags(write=False)
    return array


def _float_series(value: object) -> FloatSeries:
    array = np.asarray(value, dtype=np.float64)
    if array.ndim != 1:
        raise ConfigError(f"a series is one number per tick, got shape {array.shape}")
    array.setflags(write=False)
    return array


def _optional_float_series(value: object) -> FloatSeries | None:
    return None if value is None else _float_series(value)


@attrs.frozen(kw_only=True, eq=False)
class PoolSeries:
    """One spot pool over the trace: per tick the instances obtainable, the price, the score."""

    pool: Pool
    available: IntSeries = attrs.field(converter=_int_series)
    #: USD per hour, per tick (> 0).
    price: FloatSeries = attrs.field(converter=_float_series)
    #: The placement score per tick on ``score_scale`` (NaN where unknown), or ``None``.
    score: FloatSeries | None = attrs.field(default=None, converter=_optional_float_series)
    score_scale: int = 10

    def __attrs_post_init__(self) -> None:
        if self.pool.zone is None:
            raise ConfigError(f"a spot pool of a trace is zonal, got {self.pool}")
        if len(self.price) != len(self.available):
            raise ConfigError(
                f"{self.pool}: {len(self.available)} availability ticks but {len(self.price)} prices"
            )
        if not (np.isfinite(self.price).all() and (self.price > 0).all()):
            raise ConfigError(f"{self.pool}: spot prices must be positive numbers")
        if self.score is not None and len(self.score) != len(self.available):
            raise ConfigError(
                f"{self.pool}: {len(self.available)} availability ticks but {len(self.score)} scores"
            )


@attrs.frozen(kw_only=True)
class OnDemandPrice:
    """An instance type's on-demand price in a region (on-demand capacity is unlimited)."""

    region: str
    instance_type: str
    price: float


def _spot_map(
    value: Mapping[Pool, PoolSeries] | list[PoolSeries] | tuple[PoolSeries, ...],
) -> dict[Pool, PoolSeries]:
    if isinstance(value, Mapping):
        return dict(value)
    out: dict[Pool, PoolSeries] = {}
    for series in value:
        if series.pool in out:
            raise ConfigError(f"two series for pool {series.pool}")
        out[series.pool] = series
    return out


def _prices(value: Iterable[OnDemandPrice]) -> tuple[OnDemandPrice, ...]:
    return tuple(value)


@attrs.frozen(kw_only=True, eq=False)
class Trace:
    """Spot capacity and prices per pool over a grid of ticks (see the module docstring)."""

    name: str
    cloud: Cloud = attrs.field(converter=Cloud)
    start: datetime = attrs.field(converter=ensure_utc)
    step: timedelta
    spot: Mapping[Pool, PoolSeries] = attrs.field(converter=_spot_map)
    on_demand: tuple[OnDemandPrice, ...] = attrs.field(converter=_prices)
    shapes: Mapping[str, InstanceShape]

    def __attrs_post_init__(self) -> None:
        if self.step <= timedelta(0):
            raise ConfigError(f"a trace's step must be positive, got {self.step}")
        lengths = {len(s.available) for s in self.spot.values()}
        if len(lengths) > 1:
            raise ConfigError(f"trace {self.name}: pools of different lengths {sorted(lengths)}")
        if not self.spot:
            raise ConfigError(f"trace {self.name} has no spot pool")
        types = {p.instance_type for p in self.spot} | {o.instance_type for o in self.on_demand}
        missing = sorted(types - set(self.shapes))
        if missing:
            raise ConfigError(f"trace {self.name}: no shape (vCPUs, memory) for {', '.join(missing)}")
        for pool in self.spot:
            if pool.cloud is not self.cloud:
                raise ConfigError(f"trace {self.name} is on {self.cloud}, pool {pool} is not")

    @property
    def ticks(self) -> int:
        return len(next(iter(self.spot.values())).available)

    @property
    def end(self) -> datetime:
        return self.start + self.step * self.ticks

    @property
    def notice(self) -> timedelta:
        """How long a spot instance is warned before it is taken on this trace's cloud."""
        return NOTICE[self.cloud]

    def tick(self, when: datetime) -> int:
        """The tick ``when`` falls in (the last tick for times at or after the end)."""
        offset = ensure_utc(when) - self.start
        if offset < timedelta(0):
            raise ConfigError(f"{when} is before trace {self.name} starts ({self.start})")
        return min(int(offset / self.step), self.ticks - 1)

    def tick_start(self, index: int) -> datetime:
        return self.start + self.step * index

    def on_demand_price(self, region: str, instance_type: str) -> float | None:
        for entry in self.on_demand:
            if entry.region == region and entry.instance_type == instance_type:
                return entry.price
        return None

    def offers(self, when: datetime) -> list[Offer]:
        """What an offer source would say at ``when``: each spot pool's price (and score) of that
        tick, each on-demand price; observed at the tick's start. Availability is not in them."""
        i = self.tick(when)
        observed = self.tick_start(i)
        out: list[Offer] = []
        for pool, series in self.spot.items():
            shape = self.shapes[pool.instance_type]
            score = None
            if series.score is not None and np.isfinite(series.score[i]):
                score = PlacementScore(
                    value=float(series.score[i]), scale=series.score_scale, observed_at=observed
                )
            out.append(
                Offer(
                    pool=pool,
                    capacity_type=CapacityType.SPOT,
                    price=float(series.price[i]),
                    vcpus=shape.vcpus,
                    memory_gib=shape.memory_gib,
                    gpus=shape.gpus,
                    family=pool.instance_type.split(".", maxsplit=1)[0],
                    score=score,
                    observed_at=observed,
                )
            )
        for entry in self.on_demand:
            shape = self.shapes[entry.instance_type]
            out.append(
                Offer(
                    pool=Pool(
                        cloud=self.cloud, region=entry.region, zone=None, instance_type=entry.instance_type
                    ),
                    capacity_type=CapacityType.ON_DEMAND,
                    price=entry.price,
                    vcpus=shape.vcpus,
                    memory_gib=shape.memory_gib,
                    gpus=shape.gpus,
                    family=entry.instance_type.split(".", maxsplit=1)[0],
                    observed_at=observed,
                )
            )
        return out
