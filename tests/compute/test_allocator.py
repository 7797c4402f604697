"""The allocator over the in-memory launcher: spot first, fallback within a decision, learning."""

from __future__ import annotations

import attrs
import pytest
from compute_support import clock, market, pool

from spotlake.compute.allocator import TAG_PREFIX, Allocator
from spotlake.compute.health import BreakerState, HealthRegistry
from spotlake.compute.launch.base import LaunchFailure
from spotlake.compute.launch.fake import FakeLauncher
from spotlake.compute.policy.fallback import FallbackAction
from spotlake.compute.policy.presets import cost_optimized
from spotlake.compute.values import CapacityRequest, CapacityType
from spotlake.errors import ConfigError

SPOT, OD = CapacityType.SPOT, CapacityType.ON_DEMAND


def setup() -> tuple[Allocator, FakeLauncher]:
    c = clock()
    launcher = FakeLauncher(clock=c)
    return Allocator(launcher, clock=c, policy=cost_optimized(), tags={"team": "ml"}), launcher


def test_spot_first_and_the_mix() -> None:
    alloc, launcher = setup()
    a = alloc.allocate(market(), CapacityRequest(count=10, name="train"), job="job-1")
    assert a.complete and not a.fallbacks
    assert a.units(SPOT) == 7 and a.units(OD) == 3 and a.spot_share == 0.7
    spot_instance = next(p for p in a.placements if p.instance.capacity_type is SPOT)
    assert (
        spot_instance.requested is SPOT
        and spot_instance.score is not None
        and spot_instance.on_demand_price == 0.192
    )
    tags = spot_instance.instance.tags
    assert (
        tags["team"] == "ml"
        and tags[f"{TAG_PREFIX}job"] == "job-1"
        and tags[f"{TAG_PREFIX}request"] == "train"
    )
    assert tags[f"{TAG_PREFIX}reason"].startswith("spot rank 1 by PriceCapacity")
    assert len(launcher.running) == 10


def test_capacity_error_falls_back_to_the_next_pool_within_the_decision() -> None:
    alloc, launcher = setup()
    launcher.fail_next(pool("us-east-1b"), SPOT, LaunchFailure.NO_CAPACITY)
    a = alloc.allocate(market(), CapacityRequest(count=10))
    assert a.complete and a.units(SPOT) == 7
    [event] = a.fallbacks
    assert event.pool == pool("us-east-1b") and event.failure is LaunchFailure.NO_CAPACITY
    assert event.action is FallbackAction.NEXT_POOL and event.units == 7
    assert {p.instance.offer.pool.zone for p in a.placements if p.instance.capacity_type is SPOT} == {
        "us-east-1c"
    }
    assert alloc.health.blocked(pool("us-east-1b"), SPOT) is not None  # remembered for the next request


def test_partial_capacity_takes_the_rest_elsewhere() -> None:
    alloc, launcher = setup()
    launcher.set_capacity(pool("us-east-1b"), SPOT, 4)
    a = alloc.allocate(market(), CapacityRequest(count=10))
    by_zone = {
        z: sum(1 for p in a.placements if p.instance.offer.pool.zone == z)
        for z in ("us-east-1b", "us-east-1c")
    }
    assert by_zone == {"us-east-1b": 4, "us-east-1c": 3} and a.units(SPOT) == 7


def test_spot_limit_goes_to_on_demand_and_marks_the_units() -> None:
    alloc, launcher = setup()
    launcher.fail_next(pool("us-east-1b"), SPOT, LaunchFailure.SPOT_LIMIT)
    a = alloc.allocate(market(), CapacityRequest(count=10))
    assert a.units(SPOT) == 0 and a.units(OD) == 10 and a.complete
    assert a.fallbacks[0].action is FallbackAction.ON_DEMAND
    assert sum(p.fell_back for p in a.placements) == 7
    assert alloc.health.blocked(pool("us-east-1c"), SPOT) is not None  # the whole region's spot


def test_auth_failure_gives_up_and_reports_unfilled() -> None:
    alloc, launcher = setup()
    launcher.fail_next(pool("us-east-1b"), SPOT, LaunchFailure.AUTH)
    a = alloc.allocate(market(), CapacityRequest(count=10))
    assert not a.placements and a.unfilled == 10 and a.fallbacks[0].action is FallbackAction.GIVE_UP


def test_three_spot_failures_open_the_breaker_and_a_probe_closes_it() -> None:
    c = clock()
    launcher = FakeLauncher(clock=c)
    health = HealthRegistry(clock=c)
    alloc = Allocator(launcher, clock=c, health=health)
    for zone in "abc":
        launcher.fail_next(pool(f"us-east-1{zone}"), SPOT, LaunchFailure.NO_CAPACITY)
    a = alloc.allocate(market(), CapacityRequest(count=10))
    assert len(a.fallbacks) == 3 and a.units(OD) == 10
    assert a.fallbacks[-1].action is FallbackAction.ON_DEMAND
    assert health.breaker(SPOT) is BreakerState.OPEN
    b = alloc.allocate(market(), CapacityRequest(count=2))
    assert b.units(SPOT) == 0 and not b.fallbacks  # spot left out while open
    c.advance(health.limits.breaker_open_for.total_seconds())
    assert health.breaker(SPOT) is BreakerState.HALF_OPEN
    calls = len(launcher.calls)
    d = alloc.allocate(market(), CapacityRequest(count=10))
    assert launcher.calls[calls][1] == 1  # the probe: one instance
    assert health.breaker(SPOT) is BreakerState.CLOSED and d.units(SPOT) == 7


def test_a_failed_probe_opens_the_breaker_again() -> None:
    c = clock()
    launcher = FakeLauncher(clock=c)
    alloc = Allocator(launcher, clock=c)
    for zone in "abc":
        alloc.health.record_failure(pool(f"us-east-1{zone}"), SPOT, LaunchFailure.NO_CAPACITY)
    c.advance(alloc.health.limits.breaker_open_for.total_seconds())
    launcher.fail_next(pool("us-east-1b"), SPOT, LaunchFailure.NO_CAPACITY)
    a = alloc.allocate(market(), CapacityRequest(count=10))
    assert a.units(SPOT) == 0 and a.units(OD) == 10 and len(a.fallbacks) == 1
    assert alloc.health.breaker(SPOT) is BreakerState.OPEN


def test_unfulfilled_spot_request_times_out_and_on_demand_replaces_it() -> None:
    c = clock()
    launcher = FakeLauncher(clock=c)
    alloc = Allocator(launcher, clock=c)
    for zone in "abc":
        launcher.set_unfulfilled(pool(f"us-east-1{zone}"))
    start = c.now()
    a = alloc.allocate(market(), CapacityRequest(count=1))
    assert [e.failure for e in a.fallbacks] == [LaunchFailure.TIMEOUT] * 3
    assert a.units(OD) == 1 and a.placements[0].requested is SPOT
    assert c.now() - start == 3 * alloc.policy.fallback.spot_timeout


def test_max_price_is_passed_to_spot_launches() -> None:
    alloc, launcher = setup()
    alloc.allocate(market(), CapacityRequest(count=1, max_price=0.5))
    assert launcher.calls[0][2] == 0.5


def test_pools_per_launch_offers_the_next_ranked_pools_in_one_launch() -> None:
    c = clock()
    launcher = FakeLauncher(clock=c)
    policy = attrs.evolve(cost_optimized(), pools_per_launch=3)
    alloc = Allocator(launcher, clock=c, policy=policy)
    launcher.set_capacity(pool("us-east-1b"), SPOT, 2)
    launcher.fail_next(pool("us-east-1c"), SPOT, LaunchFailure.NO_CAPACITY)
    a = alloc.allocate(market(), CapacityRequest(count=10))
    assert [[o.pool.zone for o in call] for call in launcher.pool_calls] == [
        ["us-east-1b", "us-east-1c", "us-east-1a"]
    ]
    by_zone = {
        z: sum(1 for p in a.placements if p.instance.offer.pool.zone == z)
        for z in ("us-east-1a", "us-east-1b")
    }
    assert by_zone == {"us-east-1b": 2, "us-east-1a": 5} and a.units(SPOT) == 7 and a.complete
    assert [(e.pool.zone, e.failure) for e in a.fallbacks] == [
        ("us-east-1b", LaunchFailure.NO_CAPACITY),
        ("us-east-1c", LaunchFailure.NO_CAPACITY),
    ]
    ranks = {p.instance.offer.pool.zone: p.rank for p in a.placements if p.instance.capacity_type is SPOT}
    assert ranks == {"us-east-1b": 1, "us-east-1a": 3}
    with pytest.raises(ConfigError):
        attrs.evolve(cost_optimized(), pools_per_launch=0)
