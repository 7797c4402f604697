"""Small builders for allocator tests: pools and offers in a line each."""

from __future__ import annotations

from datetime import UTC, datetime

from spotlake.clock import FakeClock
from spotlake.compute.values import CapacityType, Cloud, Offer, PlacementScore, Pool

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def clock() -> FakeClock:
    return FakeClock(T0)


def pool(zone: str = "us-east-1a", instance_type: str = "m5.xlarge", region: str | None = None) -> Pool:
    return Pool(cloud=Cloud.AWS, region=region or zone[:-1], zone=zone, instance_type=instance_type)


def spot(
    zone: str = "us-east-1a",
    instance_type: str = "m5.xlarge",
    price: float = 0.05,
    *,
    vcpus: int = 4,
    memory: float = 16.0,
    score: float | None = None,
    eviction: float | None = None,
    observed_at: datetime | None = T0,
) -> Offer:
    return Offer(
        pool=pool(zone, instance_type),
        capacity_type=CapacityType.SPOT,
        price=price,
        vcpus=vcpus,
        memory_gib=memory,
        family=instance_type.split(".", maxsplit=1)[0],
        score=None if score is None else PlacementScore(value=score, scale=10, observed_at=observed_at or T0),
        eviction_score=eviction,
        observed_at=observed_at,
    )


def on_demand(
    region: str = "us-east-1",
    instance_type: str = "m5.xlarge",
    price: float = 0.192,
    *,
    vcpus: int = 4,
    memory: float = 16.0,
    observed_at: datetime | None = T0,
) -> Offer:
    return Offer(
        pool=Pool(cloud=Cloud.AWS, region=region, zone=None, instance_type=instance_type),
        capacity_type=CapacityType.ON_DEMAND,
        price=price,
        vcpus=vcpus,
        memory_gib=memory,
        family=instance_type.split(".", maxsplit=1)[0],
        observed_at=observed_at,
    )


def market(at: datetime = T0) -> list[Offer]:
    """Three spot pools (cheap/poor score, mid/good, dear/best) and two on-demand types, observed ``at``."""
    return [
        spot("us-east-1a", price=0.04, score=3, eviction=1.0, observed_at=at),
        spot("us-east-1b", price=0.06, score=8, eviction=2.5, observed_at=at),
        spot("us-east-1c", price=0.09, score=10, eviction=3.0, observed_at=at),
        on_demand("us-east-1", price=0.192, observed_at=at),
        on_demand("us-east-1", "m5.2xlarge", price=0.384, vcpus=8, memory=32.0, observed_at=at),
    ]
