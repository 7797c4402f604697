"""A policy is the set of small objects one decision uses; presets are named policies.

=======================  ============  ====================================================
preset                   spot share    spot pools ranked by
=======================  ============  ====================================================
``cost_optimized``       70 %          price against availability (``PriceCapacity(0.5)``)
``balanced``             50 %          ``PriceCapacity(1)``, spread over 2 pools
``performance_optimized`` 30 %         placement score, then eviction rate, then price
=======================  ============  ====================================================

The task class can override the mix: ``critical`` is never spot, ``batch`` is 70 % spot, and
``normal`` takes the preset's. On-demand pools are ranked by price in every preset. Build your own
with :class:`Policy` or change one part of a preset::

    policy = balanced().with_spot_ranker(ScoreAtLeast(2 / 3).then(ByPrice()))
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from datetime import timedelta
from types import MappingProxyType

import attrs

from spotlake.compute.policy.base import Filter, Ranker
from spotlake.compute.policy.fallback import Fallback
from spotlake.compute.policy.filters import Fits, Fresh, Healthy, MaxPrice
from spotlake.compute.policy.mix import ON_DEMAND_ONLY, CapacityMix
from spotlake.compute.policy.rankers import ByEviction, ByPrice, ByScore, PriceCapacity
from spotlake.compute.values import CapacityRequest, TaskClass
from spotlake.errors import ConfigError

__all__ = [
    "BATCH_MIX",
    "PRESETS",
    "Policy",
    "balanced",
    "cost_optimized",
    "default_filters",
    "performance_optimized",
    "preset",
]

#: Batch work: a fixed 70 % spot / 30 % on-demand.
BATCH_MIX = CapacityMix(spot_percent=70)

#: How old collected data may be before its offers are left out. Collection runs every 10
#: minutes; an hour is six missed runs, beyond which a placement score says little about now.
DEFAULT_MAX_AGE = timedelta(hours=1)


def default_filters(max_age: timedelta = DEFAULT_MAX_AGE) -> Filter:
    """What every preset keeps: offers that fit, within the max price, fresh, not blocked."""
    return Fits() & MaxPrice() & Fresh(max_age) & Healthy()


def _task_mixes() -> Mapping[TaskClass, CapacityMix]:
    return MappingProxyType({TaskClass.CRITICAL: ON_DEMAND_ONLY, TaskClass.BATCH: BATCH_MIX})


@attrs.frozen(kw_only=True, eq=False)
class Policy:
    """Everything one decision needs to know about how to choose.

    ``filters`` keep offers (the first to drop an offer gives its reason); ``spot_ranker`` and
    ``on_demand_ranker`` order the kept ones; ``mix`` divides the request (``task_mixes``
    overrides it per task class); ``spread`` spreads the spot part over that many of the best
    pools (diversification: one pool's interruption takes only its share); ``max_per_pool``
    caps the instances of any one pool; ``fallback`` says where a failed launch's units go.
    """

    name: str
    mix: CapacityMix
    spot_ranker: Ranker
    on_demand_ranker: Ranker = attrs.field(factory=ByPrice)
    filters: Filter = attrs.field(factory=default_filters)
    spread: int = 1
    max_per_pool: int | None = None
    fallback: Fallback = attrs.field(factory=Fallback)
    #: Spot pools one launch may offer the cloud at once, when the launcher can (EC2 Fleet,
    #: :class:`~spotlake.compute.launch.base.PoolSetLauncher`): the next ranked pools of one
    #: size and region go in one request and the cloud's price-capacity-optimized strategy picks
    #: where capacity is deepest. 1 = one pool per launch. Not combined with ``spread`` or
    #: ``max_per_pool`` (the cloud, not the policy, would choose each pool's share).
    pools_per_launch: int = 1
    task_mixes: Mapping[TaskClass, CapacityMix] = attrs.field(factory=_task_mixes)

    def __attrs_post_init__(self) -> None:
        if self.spread < 1:
            raise ConfigError(f"policy {self.name!r}: spread must be at least 1, got {self.spread}")
        if self.max_per_pool is not None and self.max_per_pool < 1:
            raise ConfigError(f"policy {self.name!r}: max_per_pool must be at least 1")
        if self.pools_per_launch < 1:
            raise ConfigError(f"policy {self.name!r}: pools_per_launch must be at least 1")

    def mix_for(self, task_class: TaskClass) -> CapacityMix:
        """The mix for a task class: critical work is on-demand only whatever the policy says;
        otherwise the class's override, else the policy's mix."""
        if task_class is TaskClass.CRITICAL:
            return ON_DEMAND_ONLY
        return self.task_mixes.get(task_class, self.mix)

    def max_count(self, request: CapacityRequest) -> int | None:
        """Instances allowed from one pool: the smaller of the request's and the policy's cap."""
        caps = [m for m in (request.max_per_pool, self.max_per_pool) if m is not None]
        return min(caps) if caps else None

    def spread_cap(self, spot_units: float) -> float:
        """Spot units one pool may take so the spot part spreads over ``spread`` pools."""
        return spot_units / self.spread if self.spread > 1 else math.inf

    def with_spot_ranker(self, ranker: Ranker) -> Policy:
        return attrs.evolve(self, spot_ranker=ranker)

    def with_filters(self, filters: Filter) -> Policy:
        return attrs.evolve(self, filters=filters)

    def with_mix(self, mix: CapacityMix) -> Policy:
        """This policy with another mix for normal work (batch keeps its own, critical is never spot)."""
        return attrs.evolve(self, mix=mix)

    def only(self, mix: CapacityMix) -> Policy:
        """This policy with ``mix`` for every task class but critical (which stays on-demand):
        for launches whose capacity type is decided already (a move to spot or to on-demand)."""
        return attrs.evolve(self, mix=mix, task_mixes=MappingProxyType({}))

    def __repr__(self) -> str:
        return (
            f"Policy({self.name!r}, mix={self.mix}, spot={self.spot_ranker!r}, "
            f"on_demand={self.on_demand_ranker!r}, spread={self.spread})"
        )


def cost_optimized() -> Policy:
    """The default preset: 70 % spot, spot pools ranked by ``PriceCapacity(risk=0.5)``, one pool."""
    return Policy(
        name="cost_optimized", mix=CapacityMix(spot_percent=70), spot_ranker=PriceCapacity(risk=0.5)
    )


def balanced() -> Policy:
    """50 % spot, spot pools ranked by ``PriceCapacity(risk=1.0)``, spread over 2 pools."""
    return Policy(
        name="balanced", mix=CapacityMix(spot_percent=50), spot_ranker=PriceCapacity(risk=1.0), spread=2
    )


def performance_optimized() -> Policy:
    """30 % spot, spot pools ranked by placement score, then eviction rate, then price, spread
    over 2 pools."""
    return Policy(
        name="performance_optimized",
        mix=CapacityMix(spot_percent=30),
        spot_ranker=ByScore().then(ByEviction()).then(ByPrice()),
        spread=2,
    )


#: The presets by name.
PRESETS: Mapping[str, Callable[[], Policy]] = MappingProxyType(
    {
        "cost_optimized": cost_optimized,
        "balanced": balanced,
        "performance_optimized": performance_optimized,
    }
)


def preset(name: str) -> Policy:
    """The preset called ``name``; :class:`ConfigError` listing the presets when there is none."""
    try:
        return PRESETS[name.replace("-", "_")]()
    except KeyError:
        raise ConfigError(f"unknown preset {name!r}; use one of {', '.join(PRESETS)}") from None
