"""The allocator's values: where capacity comes from, what is asked for, what was decided and launched.

All frozen attrs values, validated at construction (a bad request is a
:class:`~spotlake.errors.ConfigError` naming the field). The journey is
``Offer`` (a pool's price and placement data) -> ``CapacityRequest`` -> ``Decision`` (a ranked
launch plan with the reason for every offer) -> ``Allocation`` (what was launched, where, why).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

import attrs

from spotlake.clock import ensure_utc
from spotlake.errors import ConfigError
from spotlake.model import Cloud

__all__ = [
    "CapacityRequest",
    "CapacityType",
    "Cloud",
    "Offer",
    "PlacementScore",
    "Pool",
    "TaskClass",
    "Unit",
]


class CapacityType(StrEnum):
    """How an instance is bought: spot (interruptible, cheaper) or on-demand."""

    SPOT = "spot"
    ON_DEMAND = "on-demand"


class TaskClass(StrEnum):
    """How a task may use spot capacity (docs/allocator.md, "Task classes")."""

    #: Never interrupted: on-demand only.
    CRITICAL = "critical"
    #: Spot first, on-demand when spot fails (the preset decides the share).
    NORMAL = "normal"
    #: A fixed 70 % spot / 30 % on-demand mix, with fallback.
    BATCH = "batch"


class Unit(StrEnum):
    """What a request counts: instances, vCPUs or GiB of memory (an instance weighs its own)."""

    INSTANCES = "instances"
    VCPUS = "vcpus"
    MEMORY = "memory"


@attrs.frozen(kw_only=True, order=True)
class Pool:
    """Where capacity comes from: one instance type in one zone (or one region, for a regional offer)."""

    cloud: Cloud = attrs.field(converter=Cloud)
    region: str
    zone: str | None
    instance_type: str

    def __str__(self) -> str:
        return f"{self.cloud}:{self.zone or self.region}:{self.instance_type}"


def _non_negative(_inst: object, attr: attrs.Attribute[Any], value: float) -> None:
    if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
        raise ConfigError(f"{attr.name} must be a finite number >= 0, got {value!r}")


def _utc_or_none(value: datetime | None) -> datetime | None:
    return None if value is None else ensure_utc(value)


@attrs.frozen(kw_only=True)
class PlacementScore:
    """A placement score as the cloud gives it (Azure 1..3, AWS 1..10) and when it was observed."""

    value: float = attrs.field(validator=_non_negative)
    scale: float = attrs.field(validator=_non_negative)
    observed_at: datetime = attrs.field(converter=ensure_utc)

    @property
    def normalized(self) -> float:
        """The score as a fraction of its scale, comparable across clouds (0..1)."""
        return self.value / self.scale if self.scale else 0.0


@attrs.frozen(kw_only=True)
class Offer:
    """One pool's capacity of one type at a price, with what spotlake knows about it.

    ``price`` is USD per instance-hour. ``score`` (spot only) is the placement score for the pool;
    ``eviction_score`` the interruption-frequency score (3.0 = under 5 % ... 1.0 = over 20 %,
    higher is better) with its ``eviction_bucket``. ``observed_at`` is when the price and scores
    were collected; ``None`` for a static catalog (the decision flags such offers as undated).
    """

    pool: Pool
    capacity_type: CapacityType = attrs.field(converter=CapacityType)
    price: float = attrs.field(validator=_non_negative)
    vcpus: int = attrs.field(validator=_non_negative)
    memory_gib: float = attrs.field(validator=_non_negative)
    gpus: int = attrs.field(default=0, validator=_non_negative)
    family: str | None = None
    score: PlacementScore | None = None
    eviction_bucket: str | None = None
    eviction_score: float | None = None
    observed_at: datetime | None = attrs.field(default=None, converter=_utc_or_none)
    source: str = ""

    @property
    def spot(self) -> bool:
        return self.capacity_type is CapacityType.SPOT

    def weight(self, unit: Unit) -> float:
        """How much of a request one instance of this offer covers."""
        if unit is Unit.VCPUS:
            return float(self.vcpus)
        if unit is Unit.MEMORY:
            return self.memory_gib
        return 1.0


def _names(value: Iterable[str] | None) -> frozenset[str] | None:
    if value is None:
        return None
    if isinstance(value, str):  # a lone string would otherwise become its characters
        value = [value]
    names = frozenset(str(v) for v in value)
    return names or None


@attrs.frozen(kw_only=True)
class CapacityRequest:
    """What a caller needs.

    Exactly one of ``count`` (instances), ``vcpus`` or ``memory_gib`` (totals; each instance counts
    its own size) says how much. ``min_vcpus``/``min_memory_gib``/``gpus`` bound every instance.
    ``instance_types``, ``families``, ``regions``, ``zones``: allowed values (``None`` = any).
    ``max_price``: USD per instance-hour, never exceeded. ``max_per_pool``: diversification, at most
    this many instances from one pool. ``deadline``/``expected_runtime`` inform deadline-aware
    policies.
    """

    count: int | None = None
    vcpus: int | None = None
    memory_gib: float | None = None
    min_vcpus: int = 1
    min_memory_gib: float = 0.0
    gpus: int = 0
    instance_types: frozenset[str] | None = attrs.field(default=None, converter=_names)
    families: frozenset[str] | None = attrs.field(default=None, converter=_names)
    regions: frozenset[str] | None = attrs.field(default=None, converter=_names)
    zones: frozenset[str] | None = attrs.field(default=None, converter=_names)
    task_class: TaskClass = attrs.field(default=TaskClass.NORMAL, converter=TaskClass)
    max_price: float | None = None
    max_per_pool: int | None = None
    deadline: datetime | None = attrs.field(default=None, converter=_utc_or_none)
    expected_runtime: timedelta | None = None
    name: str = ""

    def __attrs_post_init__(self) -> None:
        given = [n for n in ("count", "vcpus", "memory_gib") if getattr(self, n) is not None]
        if len(given) != 1:
            raise ConfigError(
                "a capacity request says how much with exactly one of count, vcpus or memory_gib; "
                f"got {given or 'none'}"
            )
        amount = getattr(self, given[0])
        if not (isinstance(amount, int | float) and math.isfinite(amount) and amount > 0):
            raise ConfigError(f"{given[0]} must be a positive number, got {amount!r}")
        for name in ("min_vcpus", "min_memory_gib", "gpus"):
            value = getattr(self, name)
            if value < 0:
                raise ConfigError(f"{name} must be >= 0, got {value!r}")
        if self.max_price is not None and not (math.isfinite(self.max_price) and self.max_price > 0):
            raise ConfigError(f"max_price must be a positive price per instance-hour, got {self.max_price!r}")
        if self.max_per_pool is not None and self.max_per_pool < 1:
            raise ConfigError(f"max_per_pool must be at least 1, got {self.max_per_pool}")
        if self.expected_runtime is not None and self.expected_runtime <= timedelta(0):
            raise ConfigError(f"expected_runtime must be positive, got {self.expected_runtime}")

    @property
    def unit(self) -> Unit:
        if self.count is not None:
            return Unit.INSTANCES
        return Unit.VCPUS if self.vcpus is not None else Unit.MEMORY

    def with_amount(self, amount: float) -> CapacityRequest:
        """The same request for ``amount`` of its unit (a replacement for part of it); whole
        instances and vCPUs are rounded up, so a part is never asked for less than it needs."""
        if not (math.isfinite(amount) and amount > 0):
            raise ConfigError(f"a part of a request must be a positive amount, got {amount!r}")
        unit = self.unit
        return attrs.evolve(
            self,
            count=math.ceil(amount - 1e-9) if unit is Unit.INSTANCES else None,
            vcpus=math.ceil(amount - 1e-9) if unit is Unit.VCPUS else None,
            memory_gib=amount if unit is Unit.MEMORY else None,
        )

    @property
    def amount(self) -> float:
        """How much is asked for, in :attr:`unit`."""
        value = (
            self.count
            if self.count is not None
            else self.vcpus
            if self.vcpus is not None
            else self.memory_gib
        )
        assert value is not None  # checked at construction
        return float(value)
