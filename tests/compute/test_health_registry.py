"""The health registry: TTL blocks by scope, the breaker, early interruptions, persistence, revert."""

from __future__ import annotations

from datetime import timedelta

from compute_support import clock, market, pool

from spotlake.compute.allocator import Allocator
from spotlake.compute.health import BreakerState, HealthRegistry, HealthState
from spotlake.compute.launch.base import LaunchFailure
from spotlake.compute.launch.fake import FakeLauncher
from spotlake.compute.policy.mix import CapacityMix
from spotlake.compute.policy.presets import cost_optimized
from spotlake.compute.revert import Reverter
from spotlake.compute.values import CapacityRequest, CapacityType
from spotlake.serde import dump_doc, load_doc

SPOT, OD = CapacityType.SPOT, CapacityType.ON_DEMAND


def test_each_failure_blocks_the_scope_it_proves_for_its_ttl() -> None:
    c = clock()
    h = HealthRegistry(clock=c)
    a, b = pool("us-east-1a"), pool("us-east-1b")
    h.record_failure(a, SPOT, LaunchFailure.NO_CAPACITY)
    assert h.blocked(a, SPOT) is not None
    assert h.blocked(b, SPOT) is None and h.blocked(a, OD) is None
    c.advance(h.limits.capacity_ttl.total_seconds() - 1)
    assert h.blocked(a, SPOT) is not None
    c.advance(1)
    assert h.blocked(a, SPOT) is None
    h.record_failure(a, SPOT, LaunchFailure.SPOT_LIMIT)
    assert h.blocked(b, SPOT) is not None and h.blocked(pool("us-west-2a"), SPOT) is None
    h.record_failure(a, OD, LaunchFailure.AUTH)
    assert h.blocked(pool("us-west-2a"), OD) is not None and h.blocked(pool("us-west-2a"), SPOT) is not None


def test_a_price_too_low_blocks_nothing_and_on_demand_has_no_breaker() -> None:
    c = clock()
    h = HealthRegistry(clock=c)
    for _ in range(5):
        assert h.record_failure(pool(), SPOT, LaunchFailure.PRICE_TOO_LOW) is None
        h.record_failure(pool(), OD, LaunchFailure.NO_CAPACITY)
    assert h.blocked(pool(), SPOT) is None and h.breaker(SPOT) is BreakerState.CLOSED
    assert h.breaker(OD) is BreakerState.CLOSED and h.blocked(pool(), OD) is not None


def test_breaker_opens_after_three_consecutive_failures_and_a_success_resets() -> None:
    c = clock()
    h = HealthRegistry(clock=c)
    for _ in range(2):
        h.record_failure(pool(), SPOT, LaunchFailure.NO_CAPACITY)
    h.record_success(pool("us-east-1b"), SPOT)
    h.record_failure(pool(), SPOT, LaunchFailure.NO_CAPACITY)
    assert h.breaker(SPOT) is BreakerState.CLOSED  # not consecutive
    h.record_failure(pool(), SPOT, LaunchFailure.NO_CAPACITY)
    h.record_failure(pool(), SPOT, LaunchFailure.NO_CAPACITY)
    assert h.breaker(SPOT) is BreakerState.OPEN and h.breaker(OD) is BreakerState.CLOSED
    assert not h.take_probe(SPOT)
    c.advance(h.limits.breaker_open_for.total_seconds())
    assert h.breaker(SPOT) is BreakerState.HALF_OPEN
    assert h.take_probe(SPOT) and not h.take_probe(SPOT)  # exactly one probe


def test_repeated_early_interruptions_block_the_pool_then_open_the_spot_breaker() -> None:
    c = clock()
    h = HealthRegistry(clock=c)
    launched = c.now()
    c.advance(60)
    h.record_interruption(pool("us-east-1a"), launched_at=launched)
    assert h.blocked(pool("us-east-1a"), SPOT) is None  # one is chance
    h.record_interruption(pool("us-east-1a"), launched_at=launched)
    block = h.blocked(pool("us-east-1a"), SPOT)
    assert block is not None and "interruptions within minutes of launch" in block.reason
    h.record_interruption(pool("us-east-1b"), launched_at=launched)
    assert h.breaker(SPOT) is BreakerState.CLOSED
    h.record_interruption(pool("us-east-1c"), launched_at=launched)
    assert h.breaker(SPOT) is BreakerState.OPEN  # high across pools: spot falls back for a while
    late = clock()
    h2 = HealthRegistry(clock=late)
    launched = late.now()
    late.advance(h2.limits.early_interruption.total_seconds() + 1)
    for _ in range(5):
        h2.record_interruption(pool(), launched_at=launched)
    assert h2.blocked(pool(), SPOT) is None and h2.breaker(SPOT) is BreakerState.CLOSED  # not early


def test_the_registry_persists_and_a_restart_does_not_forget() -> None:
    c = clock()
    h = HealthRegistry(clock=c)
    for zone in "abc":
        h.record_failure(pool(f"us-east-1{zone}"), SPOT, LaunchFailure.NO_CAPACITY)
    h.record_interruption(pool(), launched_at=c.now())
    doc = dump_doc(h.state())
    restored = HealthRegistry(clock=c, state=load_doc(doc, HealthState, where="health state"))
    assert restored.breaker(SPOT) is BreakerState.OPEN
    assert restored.blocks() == h.blocks() and len(restored.blocks()) == 3
    assert restored.state() == h.state()


def test_revert_moves_one_instance_back_after_the_cooldown_and_keeps_the_base() -> None:
    c = clock()
    launcher = FakeLauncher(clock=c)
    policy = cost_optimized().with_mix(CapacityMix(spot_percent=70, base=2))
    alloc = Allocator(launcher, clock=c, policy=policy)
    request = CapacityRequest(count=12)  # 2 base + 3 on-demand + 7 spot
    launcher.fail_next(pool("us-east-1b"), SPOT, LaunchFailure.SPOT_LIMIT)
    placements = list(alloc.allocate(market(), request).placements)
    assert sum(p.instance.capacity_type is OD for p in placements) == 12
    reverter = Reverter(alloc)
    calls = len(launcher.calls)
    assert reverter.step(market(), placements, request) is None  # the spot limit's block keeps spot out
    assert len(launcher.calls) == calls  # nothing tried, nothing terminated
    c.advance(alloc.health.limits.spot_limit_ttl.total_seconds())
    moves = 0
    for _ in range(40):  # 40 cooldown periods: far more than needed
        move = reverter.step(market(c.now()), placements, request)  # fresh data each time
        if move is not None:
            moves += 1
            placements = [p for p in placements if p is not move.old] + list(move.new)
            assert move.old.instance.id not in launcher.running
            assert reverter.step(market(c.now()), placements, request) is None  # one at a time: cooldown
        c.advance(alloc.health.limits.revert_cooldown.total_seconds())
    spot_units = sum(p.units for p in placements if p.instance.capacity_type is SPOT)
    od_units = sum(p.units for p in placements if p.instance.capacity_type is OD)
    assert moves == 7 and spot_units == 7 and od_units == 5  # back to the mix, never below the base
    assert reverter.candidate(placements, request) is None


def test_critical_work_never_moves_to_spot() -> None:
    c = clock()
    alloc = Allocator(FakeLauncher(clock=c), clock=c)
    request = CapacityRequest(count=3, task_class="critical")
    placements = list(alloc.allocate(market(), request).placements)
    c.advance(timedelta(hours=2).total_seconds())
    assert Reverter(alloc).step(market(c.now()), placements, request) is None
