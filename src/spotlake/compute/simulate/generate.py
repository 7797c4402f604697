"""Synthetic spot traces: seeded, fast, and shaped like a real spot market.

:func:`generate_trace` draws a :class:`Trace` of ``pools`` spot pools (instance types in zones of a
few regions, real on-demand prices) from one seeded :class:`numpy.random.Generator`: the same
arguments give the same arrays, another seed another market. Per pool and tick it models:

* **capacity**: a pool's depth (a share of ``capacity``, drawn per pool) times a slow log-normal
  wander (a pool-level and a zone-level AR(1) process, so pools of a zone drift together) times
  the **diurnal** load of its region: less capacity in the region's business hours (a bump from 07:00 to
  19:00 local time peaking at 13:00, weaker at weekends; :attr:`Dynamics.diurnal_depth`);
* **interruptions in bursts**: events that take a pool's capacity to 0 or near 0 (under 6 % of
  its capacity) for a while (exponential durations): per zone (each pool of the zone is hit with
  probability :attr:`Dynamics.zone_hit`), per region (all zones; :attr:`Dynamics.region_hit`) and
  per pool alone. Pools of one zone therefore drop together far more often than pools of
  different zones;
* **price**: the spot price as a share of the on-demand price, a mean-reverting walk (an AR(1)
  with time constant :attr:`Dynamics.price_hours`) around a per-pool base share (0.32 to 0.47 with
  the default floor), pulled up when the pool is scarcer than the market's mean over the whole
  trace and down when it is more plentiful (:attr:`Dynamics.scarcity_premium`), kept within
  [:attr:`Dynamics.price_floor`, :attr:`Dynamics.price_cap`] of on-demand, rounded to 1/10,000 USD.
  Centring the premium keeps the market's mean share near the base's 0.395: on average, the level
  of the real AWS catalog for the generator's types in its four regions (spot/on-demand 0.32 to
  0.47 from the 10th to the 90th percentile, mean 0.39). Shallow pools still cost more than deep
  ones. An Azure market gets the same shares, which are dearer than Azure's catalog (0.11 to 0.13
  of on-demand for the generator's sizes);
* **placement score**, observed every tick: 1..10 for AWS, 1..3 (Low/Medium/High) for Azure, the
  share of capacity available plus observation noise.

Everything is vectorised over ticks and pools (the AR(1) processes as doubling scans, no loop per tick):
50 pools x 7 days of 5-minute ticks take tens of milliseconds. The instance types, their shapes and
on-demand prices are a small table of common types (:data:`GENERATOR_TYPES`; prices from the public
SkyPilot catalogs: ``catalogs/v6/aws/vms.csv`` at commit 001367d2 for AWS, ``catalogs/v6/azure/vms.csv``
at commit 098741e7 for Azure); the regions, their zones and UTC offsets are :data:`GENERATOR_REGIONS`.
Azure zones are named ``<region>-<n>`` as :class:`~spotlake.compute.offers.StoreOffers` names them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import attrs
import numpy as np
import numpy.typing as npt

from spotlake.clock import ensure_utc
from spotlake.compute.simulate.trace import InstanceShape, OnDemandPrice, PoolSeries, Trace
from spotlake.compute.values import Cloud, Pool
from spotlake.errors import ConfigError

__all__ = [
    "DEFAULT_START",
    "GENERATOR_REGIONS",
    "GENERATOR_TYPES",
    "Dynamics",
    "GeneratorRegion",
    "GeneratorType",
    "generate_trace",
]

Floats = npt.NDArray[np.float64]

#: A Monday, midnight UTC: generated traces start here unless told otherwise.
DEFAULT_START: Final = datetime(2026, 1, 5, tzinfo=UTC)
_MONDAY: Final = datetime(2024, 1, 1, tzinfo=UTC)
_HOUR: Final = timedelta(hours=1)


@attrs.frozen(kw_only=True)
class GeneratorRegion:
    """A region of the generator: its zones and its offset from UTC in hours (for business hours)."""

    zones: tuple[str, ...]
    utc_offset: float


@attrs.frozen(kw_only=True)
class GeneratorType:
    """An instance type of the generator: its shape and on-demand price (USD/h) per region."""

    shape: InstanceShape
    on_demand: Mapping[str, float]


def _azure_zones(region: str) -> tuple[str, ...]:
    return tuple(f"{region}-{n}" for n in (1, 2, 3))


#: Regions per cloud (standard-time UTC offsets; ap-northeast-1 has no zone b for new accounts).
GENERATOR_REGIONS: Final[Mapping[Cloud, Mapping[str, GeneratorRegion]]] = {
    Cloud.AWS: {
        "us-east-1": GeneratorRegion(zones=("us-east-1a", "us-east-1b", "us-east-1c"), utc_offset=-5),
        "us-west-2": GeneratorRegion(zones=("us-west-2a", "us-west-2b", "us-west-2c"), utc_offset=-8),
        "eu-west-1": GeneratorRegion(zones=("eu-west-1a", "eu-west-1b", "eu-west-1c"), utc_offset=0),
        "ap-northeast-1": GeneratorRegion(
            zones=("ap-northeast-1a", "ap-northeast-1c", "ap-northeast-1d"), utc_offset=9
        ),
    },
    Cloud.AZURE: {
        "eastus": GeneratorRegion(zones=_azure_zones("eastus"), utc_offset=-5),
        "centralus": GeneratorRegion(zones=_azure_zones("centralus"), utc_offset=-6),
        "southcentralus": GeneratorRegion(zones=_azure_zones("southcentralus"), utc_offset=-6),
        "westus2": GeneratorRegion(zones=_azure_zones("westus2"), utc_offset=-8),
    },
}


def _in(regions: tuple[str, ...]) -> Callable[..., GeneratorType]:
    """A table row maker: a type's size and its on-demand price in each of ``regions``."""

    def row(vcpus: int, memory: float, prices: tuple[float, ...], gpus: int = 0) -> GeneratorType:
        return GeneratorType(
            shape=InstanceShape(vcpus=vcpus, memory_gib=memory, gpus=gpus),
            on_demand=dict(zip(regions, prices, strict=True)),
        )

    return row


_aws = _in(("us-east-1", "us-west-2", "eu-west-1", "ap-northeast-1"))
_azure = _in(("eastus", "centralus", "southcentralus", "westus2"))


#: Instance types per cloud: shapes and on-demand prices of the SkyPilot catalog rows (see the
#: module docstring), in the order of the cloud's regions above.
GENERATOR_TYPES: Final[Mapping[Cloud, Mapping[str, GeneratorType]]] = {
    Cloud.AWS: {
        "m5.large": _aws(2, 8.0, (0.096, 0.096, 0.107, 0.124)),
        "m5.xlarge": _aws(4, 16.0, (0.192, 0.192, 0.214, 0.248)),
        "m5.2xlarge": _aws(8, 32.0, (0.384, 0.384, 0.428, 0.496)),
        "m5.4xlarge": _aws(16, 64.0, (0.768, 0.768, 0.856, 0.992)),
        "c5.large": _aws(2, 4.0, (0.085, 0.085, 0.096, 0.107)),
        "c5.xlarge": _aws(4, 8.0, (0.17, 0.17, 0.192, 0.214)),
        "c5.2xlarge": _aws(8, 16.0, (0.34, 0.34, 0.384, 0.428)),
        "c5.4xlarge": _aws(16, 32.0, (0.68, 0.68, 0.768, 0.856)),
        "r5.large": _aws(2, 16.0, (0.126, 0.126, 0.141, 0.152)),
        "r5.xlarge": _aws(4, 32.0, (0.252, 0.252, 0.282, 0.304)),
        "r5.2xlarge": _aws(8, 64.0, (0.504, 0.504, 0.564, 0.608)),
        "m6i.xlarge": _aws(4, 16.0, (0.192, 0.192, 0.214, 0.248)),
        "c6i.xlarge": _aws(4, 8.0, (0.17, 0.17, 0.1824, 0.214)),
        "r6i.xlarge": _aws(4, 32.0, (0.252, 0.252, 0.282, 0.304)),
        "g4dn.xlarge": _aws(4, 16.0, (0.526, 0.526, 0.587, 0.71), gpus=1),
    },
    Cloud.AZURE: {
        "Standard_D2s_v3": _azure(2, 8.0, (0.096, 0.11, 0.11, 0.096)),
        "Standard_D4s_v3": _azure(4, 16.0, (0.192, 0.22, 0.22, 0.192)),
        "Standard_D8s_v3": _azure(8, 32.0, (0.384, 0.44, 0.44, 0.384)),
        "Standard_D2as_v5": _azure(2, 8.0, (0.086, 0.0972, 0.103, 0.086)),
        "Standard_D4as_v5": _azure(4, 16.0, (0.172, 0.194, 0.206, 0.172)),
        "Standard_E2s_v3": _azure(2, 16.0, (0.126, 0.146, 0.146, 0.126)),
        "Standard_E4s_v3": _azure(4, 32.0, (0.252, 0.292, 0.292, 0.252)),
        "Standard_E8s_v3": _azure(8, 64.0, (0.504, 0.583, 0.583, 0.504)),
        "Standard_F2s_v2": _azure(2, 4.0, (0.0846, 0.102, 0.102, 0.0846)),
        "Standard_F4s_v2": _azure(4, 8.0, (0.169, 0.204, 0.204, 0.169)),
        "Standard_F8s_v2": _azure(8, 16.0, (0.338, 0.408, 0.408, 0.338)),
        "Standard_NC4as_T4_v3": _azure(4, 28.0, (0.526, 0.594, 0.631, 0.526), gpus=1),
    },
}

#: The placement-score scale of each cloud (AWS 1..10, Azure Low/Medium/High = 1..3).
_SCORE_SCALE: Final[Mapping[Cloud, int]] = {Cloud.AWS: 10, Cloud.AZURE: 3}


def _rate(_inst: object, attr: attrs.Attribute[Any], value: float) -> None:
    if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
        raise ConfigError(f"Dynamics.{attr.name} must be a finite number >= 0, got {value!r}")


def _share(_inst: object, attr: attrs.Attribute[Any], value: float) -> None:
    if not (isinstance(value, int | float) and 0 <= value <= 1):
        raise ConfigError(f"Dynamics.{attr.name} is a share, between 0 and 1; got {value!r}")


@attrs.frozen(kw_only=True)
class Dynamics:
    """How turbulent a generated market is: event rates per day, durations and time constants in
    hours, shares of capacity or of the on-demand price (see the module docstring)."""

    zone_events_per_day: float = attrs.field(default=0.6, validator=_rate)
    zone_event_hours: float = attrs.field(default=1.5, validator=_rate)
    zone_hit: float = attrs.field(default=0.8, validator=_share)
    region_events_per_day: float = attrs.field(default=0.15, validator=_rate)
    region_event_hours: float = attrs.field(default=1.0, validator=_rate)
    region_hit: float = attrs.field(default=0.5, validator=_share)
    pool_events_per_day: float = attrs.field(default=0.3, validator=_rate)
    pool_event_hours: float = attrs.field(default=0.75, validator=_rate)
    #: The share of a pool's capacity the region's business hours take at their weekday peak.
    diurnal_depth: float = attrs.field(default=0.35, validator=_share)
    #: Stationary standard deviation of the pool-level (and, 0.6 times it, zone-level) log wander.
    wander: float = attrs.field(default=0.25, validator=_rate)
    wander_hours: float = attrs.field(default=8.0, validator=_rate)
    price_floor: float = attrs.field(default=0.2, validator=_share)
    price_cap: float = attrs.field(default=0.9, validator=_share)
    #: How much the price share moves per unit of availability away from the market's mean (linear:
    #: a pool with no capacity left costs this times the mean availability above its base share).
    scarcity_premium: float = attrs.field(default=0.35, validator=_rate)
    price_hours: float = attrs.field(default=3.0, validator=_rate)
    #: Standard deviation of the price share's walk over one hour.
    price_noise: float = attrs.field(default=0.02, validator=_rate)

    def __attrs_post_init__(self) -> None:
        if not 0 < self.price_floor < self.price_cap:
            raise ConfigError(
                f"Dynamics needs 0 < price_floor < price_cap, got {self.price_floor} and {self.price_cap}"
            )


def _ar1(shocks: Floats, phi: float, first: Floats) -> Floats:
    """``x[t] = phi * x[t-1] + shocks[t]`` along axis 0 with ``x[-1] = first``: a doubling scan
    (log2(ticks) whole-array steps, no loop over ticks)."""
    out = shocks.copy()
    ticks = len(out)
    span = 1
    while span < ticks and phi**span > 1e-17:  # smaller weights no longer change a float
        out[span:] = out[span:] + phi**span * out[:-span]
        span *= 2
    out += phi ** np.arange(1, ticks + 1)[:, None] * first[None, :]
    return out


def _stationary(rng: np.random.Generator, ticks: int, width: int, sigma: float, phi: float) -> Floats:
    """``width`` AR(1) series of stationary standard deviation ``sigma``, started in equilibrium."""
    shocks = rng.normal(0.0, sigma * math.sqrt(1 - phi * phi), size=(ticks, width))
    return _ar1(shocks, phi, rng.normal(0.0, sigma, size=width))


def _phi(step_hours: float, hours: float) -> float:
    return math.exp(-step_hours / hours) if hours > 0 else 0.0


def _events(
    rng: np.random.Generator,
    members: npt.NDArray[np.bool_],
    *,
    per_day: float,
    hours: float,
    hit: float,
    ticks: int,
    step_hours: float,
) -> npt.NDArray[np.int64]:
    """How many events cover each (tick, pool): events of each group (a row of ``members``: which
    pools belong) arrive as a Poisson process, last an exponential time, take each member with
    probability ``hit``."""
    groups, pools = members.shape
    counts = rng.poisson(per_day * ticks * step_hours / 24, size=groups)
    group = np.repeat(np.arange(groups), counts)
    starts = rng.integers(0, ticks, size=len(group))
    lengths = np.maximum(1, np.rint(rng.exponential(hours / step_hours, size=len(group)))).astype(np.int64)
    taken = members[group] & (rng.random((len(group), pools)) < hit)
    event, pool = np.nonzero(taken)
    edges = np.zeros((ticks + 1, pools), dtype=np.int64)
    np.add.at(edges, (starts[event], pool), 1)
    np.add.at(edges, (np.minimum(starts[event] + lengths[event], ticks), pool), -1)
    return np.cumsum(edges[:-1], axis=0)


def _business(start: datetime, step: timedelta, ticks: int, offsets: Floats) -> Floats:
    """Per tick and pool, how busy the pool's region is (0 at night, 1 at a weekday's 13:00)."""
    hours = (start - _MONDAY) / _HOUR + np.arange(ticks) * (step / _HOUR)
    local = hours[:, None] + offsets[None, :]
    hour = np.mod(local, 24.0)
    weekend = np.mod(np.floor(local / 24.0), 7) >= 5
    bump = np.clip(np.sin(np.pi * (hour - 7.0) / 12.0), 0.0, None)
    return np.where(weekend, 0.3 * bump, bump)


def _pick(
    cloud: Cloud, regions: Sequence[str] | None, types: Sequence[str] | None
) -> tuple[list[str], list[str]]:
    known_regions, known_types = GENERATOR_REGIONS[cloud], GENERATOR_TYPES[cloud]
    chosen_regions = list(known_regions if regions is None else dict.fromkeys(regions))
    chosen_types = list(known_types if types is None else dict.fromkeys(types))
    unknown = [r for r in chosen_regions if r not in known_regions]
    if unknown or not chosen_regions:
        raise ConfigError(
            f"the generator has no {cloud} region {', '.join(unknown) or '(none given)'}; "
            f"use some of {', '.join(known_regions)}"
        )
    unknown = [t for t in chosen_types if t not in known_types]
    if unknown or not chosen_types:
        raise ConfigError(
            f"the generator has no {cloud} type {', '.join(unknown) or '(none given)'}; "
            f"use some of {', '.join(known_types)}"
        )
    return chosen_regions, chosen_types


def generate_trace(
    *,
    seed: int,
    pools: int = 50,
    days: float = 7,
    step: timedelta = timedelta(minutes=5),
    cloud: Cloud = Cloud.AWS,
    regions: Sequence[str] | None = None,
    types: Sequence[str] | None = None,
    capacity: int = 64,
    start: datetime = DEFAULT_START,
    dynamics: Dynamics | None = None,
    name: str | None = None,
) -> Trace:
    """A synthetic trace of ``pools`` spot pools over ``days`` in ticks of ``step`` (see the module
    docstring).

    The pools are drawn (by ``seed``) from every (type, zone) of ``regions`` x ``types``
    (default: all of :data:`GENERATOR_REGIONS` and :data:`GENERATOR_TYPES` of ``cloud``).
    ``capacity``: the most instances a pool ever offers. ``dynamics``: the market's rates and
    shapes (default :class:`Dynamics()`). The same arguments give identical arrays.
    """
    cloud = Cloud(cloud)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"seed must be an integer, got {seed!r}")
    if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
        raise ConfigError(f"capacity is the most instances a pool offers (>= 1), got {capacity!r}")
    if step <= timedelta(0):
        raise ConfigError(f"step must be positive, got {step}")
    if not (isinstance(days, int | float) and math.isfinite(days) and days > 0):
        raise ConfigError(f"days must be a positive number, got {days!r}")
    ticks = max(1, round(timedelta(days=days) / step))
    region_names, type_names = _pick(cloud, regions, types)
    cells = [
        (region, zone, kind)
        for region in region_names
        for zone in GENERATOR_REGIONS[cloud][region].zones
        for kind in type_names
        if region in GENERATOR_TYPES[cloud][kind].on_demand
    ]
    if isinstance(pools, bool) or not isinstance(pools, int) or not 1 <= pools <= len(cells):
        raise ConfigError(
            f"pools must be between 1 and {len(cells)} (the (type, zone) pairs of the regions and "
            f"types chosen), got {pools!r}"
        )
    market = dynamics or Dynamics()
    start = ensure_utc(start)
    rng = np.random.default_rng(seed)
    chosen = [cells[i] for i in np.sort(rng.choice(len(cells), size=pools, replace=False))]
    step_hours = step / _HOUR
    region_of = np.array([region_names.index(r) for r, _, _ in chosen])
    zone_names = sorted({z for _, z, _ in chosen})
    zone_of = np.array([zone_names.index(z) for _, z, _ in chosen])
    offsets = np.array([GENERATOR_REGIONS[cloud][r].utc_offset for r, _, _ in chosen], dtype=np.float64)
    on_demand = np.array([GENERATOR_TYPES[cloud][t].on_demand[r] for r, _, t in chosen])

    # Capacity: depth x wander (pool and zone) x diurnal load.
    depth = rng.uniform(0.35, 1.0, size=pools)
    phi = _phi(step_hours, market.wander_hours)
    wander = _stationary(rng, ticks, pools, market.wander, phi)
    wander += _stationary(rng, ticks, len(zone_names), 0.6 * market.wander, phi)[:, zone_of]
    busy = _business(start, step, ticks, offsets) * rng.uniform(0.7, 1.3, size=pools)
    share = np.clip(depth * np.exp(wander) * (1.0 - np.clip(market.diurnal_depth * busy, 0.0, 1.0)), 0.0, 1.0)

    # Interruptions: zone, region and pool events; a pool under any of them keeps under 6 %.
    in_zone = zone_of[None, :] == np.arange(len(zone_names))[:, None]
    in_region = region_of[None, :] == np.arange(len(region_names))[:, None]
    down = sum(
        _events(rng, members, per_day=rate, hours=hours, hit=hit, ticks=ticks, step_hours=step_hours)
        for members, rate, hours, hit in (
            (in_zone, market.zone_events_per_day, market.zone_event_hours, market.zone_hit),
            (in_region, market.region_events_per_day, market.region_event_hours, market.region_hit),
            (np.eye(pools, dtype=bool), market.pool_events_per_day, market.pool_event_hours, 1.0),
        )
    )
    residual = rng.uniform(0.0, 0.06, size=(ticks, pools))
    share = np.where(down > 0, share * residual, share)
    available = np.floor(capacity * share).astype(np.int64)
    obtainable = available / capacity

    # Price: a mean-reverting share of on-demand around the pool's base share, higher when the pool
    # is scarcer than the market usually is and lower when it is more plentiful, within the bounds.
    # The premium is centred on the market's mean availability (over the whole trace) so that the
    # market's average price share stays its base (the real catalog's level), not the base plus a
    # premium for scarcity.
    base = rng.uniform(market.price_floor + 0.12, market.price_floor + 0.27, size=pools)
    usual = float(obtainable.mean())
    target = base[None, :] + market.scarcity_premium * (usual - obtainable)
    rho = _phi(step_hours, market.price_hours)
    noise = rng.normal(0.0, market.price_noise * math.sqrt(step_hours), size=(ticks, pools))
    ratio = _ar1((1.0 - rho) * target + noise, rho, target[0])
    ratio = np.clip(ratio, market.price_floor, market.price_cap)
    prices = np.maximum(np.round(ratio * on_demand[None, :], 4), 0.0001)

    # Placement score: the share obtainable plus noise, on the cloud's scale.
    scale = _SCORE_SCALE[cloud]
    seen = obtainable + rng.normal(0.0, 0.07, size=(ticks, pools))
    if scale == 3:
        scores = np.where(seen >= 0.6, 3.0, np.where(seen >= 0.25, 2.0, 1.0))
    else:
        scores = np.clip(np.rint(1 + (scale - 1) * seen), 1, scale)

    by_pool = [np.ascontiguousarray(a.T) for a in (available, prices, scores)]
    series = [
        PoolSeries(
            pool=Pool(cloud=cloud, region=region, zone=zone, instance_type=kind),
            available=by_pool[0][i],
            price=by_pool[1][i],
            score=by_pool[2][i],
            score_scale=scale,
        )
        for i, (region, zone, kind) in enumerate(chosen)
    ]
    pairs = sorted({(r, t) for r, _, t in chosen})
    od_prices = tuple(
        OnDemandPrice(region=r, instance_type=t, price=GENERATOR_TYPES[cloud][t].on_demand[r])
        for r, t in pairs
    )
    return Trace(
        name=name or f"generated {cloud} seed {seed}",
        cloud=cloud,
        start=start,
        step=step,
        spot=series,
        on_demand=od_prices,
        shapes={t: GENERATOR_TYPES[cloud][t].shape for _, t in pairs},
    )
