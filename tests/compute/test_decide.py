"""Decisions: the plan from the mix and the ranking, and a reason for every offer."""

from __future__ import annotations

from datetime import timedelta

from compute_support import T0, clock, market, on_demand, spot

from spotlake.compute.decide import Role, decide
from spotlake.compute.health import HealthRegistry
from spotlake.compute.launch.base import LaunchFailure
from spotlake.compute.policy.presets import balanced, cost_optimized, performance_optimized
from spotlake.compute.values import CapacityRequest, CapacityType


def test_cost_optimized_plans_seventy_percent_spot_on_the_best_pools() -> None:
    d = decide(market(), CapacityRequest(count=10), cost_optimized(), now=T0)
    assert (d.split.on_demand, d.split.spot) == (3, 7)
    assert [(s.role, s.count, s.offer.pool.zone or s.offer.pool.region) for s in d.steps] == [
        (Role.SPOT, 7, "us-east-1b"),
        (Role.ON_DEMAND, 3, "us-east-1"),
    ]
    assert d.complete and d.problem() is None
    assert [o.pool.zone for o in d.spot_candidates] == ["us-east-1b", "us-east-1c", "us-east-1a"]


def test_spread_and_max_per_pool_diversify() -> None:
    d = decide(market(), CapacityRequest(count=10), balanced(), now=T0)
    spots = [(s.offer.pool.zone, s.count) for s in d.steps if s.role is Role.SPOT]
    assert spots == [("us-east-1b", 2), ("us-east-1c", 2), ("us-east-1a", 1)]  # 5 spot over 2+ pools
    d = decide(market(), CapacityRequest(count=10, max_per_pool=2), cost_optimized(), now=T0)
    assert [s.count for s in d.steps if s.role is Role.SPOT] == [2, 2, 2]
    assert d.moved_to_on_demand == 1  # the seventh spot instance has no pool left
    assert "1 of 7 spot instances go to on-demand" in d.warnings[0]
    assert [s.count for s in d.steps if s.role is Role.ON_DEMAND] == [2, 2]


def test_vcpu_requests_fill_spot_without_overshoot_and_cover_with_on_demand() -> None:
    d = decide(market(), CapacityRequest(vcpus=30), cost_optimized(), now=T0)
    assert (d.split.on_demand, d.split.spot) == (9, 21)
    spot_units = sum(s.units for s in d.steps if s.role is Role.SPOT)
    assert spot_units == 20 and spot_units <= d.split.spot  # five 4-vCPU instances, not six
    assert sum(s.units for s in d.steps) >= 30  # on-demand covers the rest (10 -> 12 vCPUs: m5.2xlarge + ...)


def test_critical_gets_no_spot_and_batch_gets_seventy_percent() -> None:
    d = decide(market(), CapacityRequest(count=4, task_class="critical"), performance_optimized(), now=T0)
    assert {s.role for s in d.steps} == {Role.ON_DEMAND}
    d = decide(market(), CapacityRequest(count=10, task_class="batch"), performance_optimized(), now=T0)
    assert d.split.spot == 7


def test_every_offer_has_a_reason() -> None:
    offers = [
        *market(),
        spot("us-east-1d", price=5.0),
        on_demand(instance_type="m5.24xlarge", price=4.6, vcpus=96),
    ]
    d = decide(offers, CapacityRequest(count=2, max_price=1.0), cost_optimized(), now=T0)
    verdicts = d.verdicts()
    assert len(verdicts) == len(offers)
    dropped = {str(v.offer.pool): v.reason for v in verdicts if not v.kept}
    assert dropped == {
        "aws:us-east-1d:m5.xlarge": "above the maximum price 1 $/h",
        "aws:us-east-1:m5.24xlarge": "above the maximum price 1 $/h",
    }
    first = verdicts[0]
    assert (
        first.kept
        and first.rank == 1
        and first.reason.startswith("spot rank 1 by PriceCapacity(risk=0.5): 1 planned")
    )
    frame = d.to_frame()
    assert list(frame.columns)[:3] == ["pool", "capacity_type", "price"] and len(frame) == len(offers)


def test_nothing_fits_and_everything_too_dear_are_explained() -> None:
    d = decide(market(), CapacityRequest(count=1, max_price=0.01), now=T0)
    assert not d.steps and not d.complete
    assert d.problem() == "no offer is left: 5 above the maximum price 0.01 $/h"
    d = decide(market(), CapacityRequest(count=1, min_vcpus=64), now=T0)
    assert "5 does not fit the request (at least 64 vCPUs" in (d.problem() or "")


def test_stale_offers_are_dropped_and_undated_ones_flagged() -> None:
    old = T0 - timedelta(hours=3)
    offers = [spot(observed_at=old), on_demand(observed_at=None)]
    d = decide(offers, CapacityRequest(count=1, task_class="critical"), now=T0)
    assert d.dropped() == {"data older than 1:00:00 (stale: newer data or a larger max age)": 1}
    assert any("no observation time" in w for w in d.warnings)


def test_a_half_open_breaker_plans_one_probe_and_an_open_one_no_spot() -> None:
    c = clock()
    health = HealthRegistry(clock=c)
    for zone in "abc":
        health.record_failure(spot(f"us-east-1{zone}").pool, CapacityType.SPOT, LaunchFailure.NO_CAPACITY)
    d = decide(market(), CapacityRequest(count=10), now=c.now(), health=health)
    assert {s.role for s in d.steps} == {Role.ON_DEMAND}
    assert d.dropped().most_common(1)[0][0] == "blocked: the spot breaker is open"
    c.advance(health.limits.breaker_open_for.total_seconds())
    d = decide(market(), CapacityRequest(count=10), now=c.now(), health=health)
    assert d.steps[0].role is Role.PROBE and d.steps[0].count == 1
    assert "half-open" in d.warnings[0]


def test_decisions_are_pure_and_repeatable() -> None:
    request = CapacityRequest(vcpus=40)
    a = decide(market(), request, balanced(), now=T0)
    b = decide(list(reversed(market())), request, balanced(), now=T0)
    assert [(s.offer, s.count) for s in a.steps] == [(s.offer, s.count) for s in b.steps]
