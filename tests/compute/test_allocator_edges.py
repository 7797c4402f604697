"""Edges a review found: probes that never report back, launches that break part-way, jobs that
lose capacity in odd states, forced mixes, and the allocator's own guards."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta

import attrs
import pytest
from compute_support import clock, market, on_demand, pool, spot

from spotlake.clock import FakeClock
from spotlake.compute.allocator import AllocationError, Allocator
from spotlake.compute.decide import decide
from spotlake.compute.events import InstanceState, InterruptionWarning, StateChange
from spotlake.compute.health import BreakerState, HealthRegistry, HealthState
from spotlake.compute.jobs import JobManager, JobState
from spotlake.compute.launch.base import LaunchFailure, LaunchResult
from spotlake.compute.launch.fake import FakeLauncher
from spotlake.compute.ledger import EndReason
from spotlake.compute.offers import OfferSet
from spotlake.compute.policy import CapacityMix, Fits, cost_optimized
from spotlake.compute.policy.fallback import FallbackAction
from spotlake.compute.values import CapacityRequest, CapacityType, Offer, TaskClass
from spotlake.errors import ConfigError, CorruptStoreError
from spotlake.serde import dump_doc, load_doc

SPOT, OD = CapacityType.SPOT, CapacityType.ON_DEMAND


class Live:
    """An offer source dated now, that can be made to fail."""

    def __init__(self, c: FakeClock, offers: list[Offer] | None = None) -> None:
        self.c = c
        self.fixed = offers
        self.fail = 0

    def offers(self) -> OfferSet:
        if self.fail:
            self.fail -= 1
            raise CorruptStoreError("the store could not be read (injected)")
        now = self.c.now()
        items = [attrs.evolve(o, observed_at=now) for o in self.fixed] if self.fixed else market(now)
        return OfferSet(offers=items, source="live")


def jobs_on(c: FakeClock, **kw: object) -> tuple[JobManager, FakeLauncher, Live]:
    launcher = FakeLauncher(clock=c)
    source = Live(c)
    policy = kw.pop("policy", None)
    alloc = Allocator(launcher, clock=c, policy=policy)  # type: ignore[arg-type]
    return JobManager(alloc, source, clock=c, **kw), launcher, source  # type: ignore[arg-type]


def open_spot(h: HealthRegistry) -> None:
    for zone in "abc":
        h.record_failure(pool(f"us-east-1{zone}"), SPOT, LaunchFailure.NO_CAPACITY)


# --- the breaker's probe -------------------------------------------------------------------------


def test_a_probe_is_only_taken_by_a_launch_so_a_request_too_small_for_spot_leaves_it() -> None:
    c = clock()
    alloc = Allocator(FakeLauncher(clock=c), clock=c)
    open_spot(alloc.health)
    c.advance(alloc.health.limits.breaker_open_for.total_seconds())
    small = alloc.allocate(market(c.now()), CapacityRequest(vcpus=5))  # 3 spot vCPUs: no 4-vCPU instance fits
    assert small.units(SPOT) == 0
    later = alloc.allocate(market(c.now()), CapacityRequest(count=10))
    assert later.units(SPOT) == 7 and alloc.health.breaker(SPOT) is BreakerState.CLOSED


def test_a_lost_probe_is_let_go_after_its_lease_even_across_a_restart() -> None:
    c = clock()
    h = HealthRegistry(clock=c)
    open_spot(h)
    c.advance(h.limits.breaker_open_for.total_seconds())
    assert h.take_probe(SPOT) and not h.take_probe(SPOT)
    restored = HealthRegistry(clock=c, state=load_doc(dump_doc(h.state()), HealthState, where="test"))
    assert not restored.take_probe(SPOT)
    assert restored.next_change() == c.now() + h.limits.probe_lease
    c.advance(h.limits.probe_lease.total_seconds())
    assert restored.take_probe(SPOT)  # the first probe never reported back


def test_a_probe_skipped_for_a_blocked_pool_is_still_a_single_instance() -> None:
    c = clock()
    launcher = FakeLauncher(clock=c)
    no_health = cost_optimized().with_filters(Fits())  # the policy does not drop blocked pools itself
    alloc = Allocator(launcher, clock=c, policy=no_health)
    open_spot(alloc.health)
    c.advance(alloc.health.limits.breaker_open_for.total_seconds())
    alloc.health.record_failure(pool("us-east-1b"), OD, LaunchFailure.NO_CAPACITY)
    block = alloc.health.record_failure(pool("us-east-1b"), SPOT, LaunchFailure.QUOTA)  # spot in the region
    assert (
        block is not None and alloc.health.breaker(SPOT) is BreakerState.OPEN
    )  # a half-open failure reopens
    c.advance(alloc.health.limits.breaker_open_for.total_seconds())
    alloc.allocate(market(c.now()), CapacityRequest(count=10))
    spot_calls = [(o.pool.zone, n) for o, n, _ in launcher.calls if o.spot]
    assert spot_calls[0][1] == 1  # the probe, whatever was skipped before it


# --- launches that break -------------------------------------------------------------------------


class BreaksOnSecondLaunch(FakeLauncher):
    def launch(
        self,
        offer: Offer,
        count: int,
        *,
        max_price: float | None,
        tags: Mapping[str, str],
        timeout: timedelta,
    ) -> LaunchResult:
        if len(self.calls) == 1:
            raise RuntimeError("client exploded (injected)")
        return super().launch(offer, count, max_price=max_price, tags=tags, timeout=timeout)

    def terminate(self, ids: Sequence[str]) -> None:
        self.terminated = list(ids)
        super().terminate(ids)


def test_an_allocation_that_breaks_part_way_terminates_what_it_launched_and_says_so() -> None:
    c = clock()
    launcher = BreaksOnSecondLaunch(clock=c)
    alloc = Allocator(launcher, clock=c)
    launched = r"the 7 instance\(s\) it had launched were terminated"
    with pytest.raises(AllocationError, match=launched) as caught:
        alloc.allocate(market(), CapacityRequest(count=10))
    assert len(caught.value.launched) == 7 and caught.value.still_running == ()
    assert launcher.terminated == list(caught.value.launched) and not launcher.running


# --- jobs losing capacity ------------------------------------------------------------------------


def _warning(instance_id: str, c: FakeClock) -> InterruptionWarning:
    return InterruptionWarning(
        instance_id=instance_id,
        region="us-east-1",
        at=c.now(),
        action="terminate",
        deadline=c.now() + timedelta(minutes=2),
    )


def test_losing_an_instance_the_job_does_not_need_launches_nothing() -> None:
    c = clock()
    launcher = FakeLauncher(clock=c)
    small_spot_big_on_demand = [
        spot("us-east-1a", "m5.large", 0.03, vcpus=2, memory=8, observed_at=None),
        on_demand("us-east-1", "m5.2xlarge", 0.384, vcpus=8, memory=32, observed_at=None),
    ]
    source = Live(c, small_spot_big_on_demand)
    jobs = JobManager(Allocator(launcher, clock=c), source, clock=c)
    job = jobs.submit(CapacityRequest(vcpus=10))  # 3 x 2 spot + 1 x 8 on-demand = 14 vCPUs
    assert job.units == 14
    spare = next(p for p in job.placements if p.instance.capacity_type is SPOT)
    calls = len(launcher.calls)
    launcher.interrupt(spare.instance.id)
    jobs.handle(_warning(spare.instance.id, c))
    assert len(launcher.calls) == calls and job.state is JobState.RUNNING and job.units == 12


def test_a_waiting_job_made_whole_by_a_replacement_runs_and_gets_nothing_more() -> None:
    c = clock()
    restarts: list[str] = []
    jobs, launcher, _ = jobs_on(c, restart=lambda j: restarts.append(j.state))
    for o in market():
        launcher.set_capacity(o.pool, o.capacity_type, 0)
    launcher.set_capacity(pool("us-east-1b"), SPOT, 2)
    job = jobs.submit(CapacityRequest(count=3))
    assert job.state is JobState.PENDING and len(job.placements) == 2
    launcher.set_capacity(pool("us-east-1c"), SPOT, 5)
    for o in market():
        if not o.spot:
            launcher.set_capacity(o.pool, OD, None)  # on-demand is back
    c.advance(jobs.allocator.health.limits.capacity_ttl.total_seconds())  # the failed pools' blocks end
    taken = job.placements[0].instance.id
    launcher.interrupt(taken)
    jobs.handle(_warning(taken, c))
    assert job.state is JobState.RUNNING and len(job.placements) == 3
    assert restarts == []  # it never ran: a first start, not a restart
    jobs.tick()
    assert len(job.placements) == 3 and len(launcher.running) == 3


def test_a_lost_on_demand_instance_is_no_spot_interruption() -> None:
    c = clock()
    jobs, launcher, _ = jobs_on(c)
    job = jobs.submit(CapacityRequest(count=4, task_class="critical"))
    for p in list(job.placements):
        launcher.interrupt(p.instance.id)
        jobs.handle(
            StateChange(
                instance_id=p.instance.id, region="us-east-1", at=c.now(), state=InstanceState.TERMINATED
            )
        )
    h = jobs.allocator.health
    assert h.breaker(SPOT) is BreakerState.CLOSED and h.blocks() == ()
    ends = {e.end for e in jobs.ledger.entries() if e.ended_at is not None}
    assert ends == {EndReason.TERMINATED}
    assert {p.instance.capacity_type for p in job.placements} == {OD} and len(job.placements) == 4


def test_a_replacement_keeps_the_jobs_mix() -> None:
    c = clock()
    jobs, _, _ = jobs_on(c)
    job = jobs.submit(CapacityRequest(count=10))
    lost = next(p for p in job.placements if p.instance.capacity_type is OD)
    jobs.handle(_warning(lost.instance.id, c))
    held = {t: sum(p.units for p in job.placements if p.instance.capacity_type is t) for t in (SPOT, OD)}
    assert held == {SPOT: 7, OD: 3}


def test_an_event_whose_handling_fails_leaves_the_job_waiting_and_tick_retries_it() -> None:
    c = clock()
    jobs, _, source = jobs_on(c)
    job = jobs.submit(CapacityRequest(count=2))
    other = jobs.submit(CapacityRequest(count=1))

    class Batch:
        def poll(self) -> object:
            from spotlake.compute.events import EventBatch

            return EventBatch(events=(_warning(job.instance_ids[0], c), _warning(other.instance_ids[0], c)))

    source.fail = 1  # the first replacement cannot read the offers
    jobs.poll(Batch())  # type: ignore[arg-type]
    assert job.state is JobState.PENDING and len(job.placements) == 1
    assert other.state is JobState.RUNNING and len(other.placements) == 1  # the next event was handled
    jobs.tick()
    assert job.state is JobState.RUNNING and len(job.placements) == 2


def test_hang_detection_does_not_count_a_wait_for_capacity_as_runtime() -> None:
    c = clock()
    jobs, launcher, _ = jobs_on(c, revert=False)
    job = jobs.submit(CapacityRequest(count=1, expected_runtime=timedelta(minutes=20), task_class="critical"))
    c.advance(timedelta(minutes=40).total_seconds())
    for o in market():
        launcher.set_capacity(o.pool, o.capacity_type, 0)
    jobs.handle(
        StateChange(
            instance_id=job.instance_ids[0], region="us-east-1", at=c.now(), state=InstanceState.TERMINATED
        )
    )
    assert job.state is JobState.PENDING
    c.advance(timedelta(hours=2).total_seconds())
    for o in market():
        launcher.set_capacity(o.pool, o.capacity_type, None)
    jobs.tick()
    assert job.state is JobState.RUNNING and job.attempts == 1
    c.advance(timedelta(minutes=5).total_seconds())
    jobs.tick()
    assert job.state is JobState.RUNNING  # 45 min of runtime, not 2 h 45 min


# --- forced mixes and the allocator's own guards -------------------------------------------------


def test_forced_mixes_win_over_task_class_mixes_and_critical_is_never_spot() -> None:
    c = clock()
    jobs, _, _ = jobs_on(c)
    batch = jobs.submit(CapacityRequest(count=10, task_class="batch"))
    jobs.fallback(batch.id)
    assert {p.instance.capacity_type for p in batch.placements} == {OD}
    assert all(jobs.ledger.get(i).requested is jobs_requested(batch, i) for i in batch.instance_ids)  # type: ignore[union-attr]
    c.advance(timedelta(hours=1).total_seconds())
    jobs.tick()
    assert {p.instance.capacity_type for p in batch.placements} == {OD}  # revert leaves a pinned job alone
    assert jobs.request_spot(CapacityRequest(count=10, task_class="batch")).units(OD) == 0
    with pytest.raises(ConfigError, match="never placed on spot"):
        jobs.request_spot(CapacityRequest(count=3, task_class="critical"))
    own = cost_optimized().with_mix(CapacityMix(spot_percent=100))
    own = attrs.evolve(own, task_mixes={TaskClass.BATCH: CapacityMix(spot_percent=50)})
    assert own.mix_for(TaskClass.CRITICAL).spot_percent == 0


def jobs_requested(job: object, instance_id: str) -> CapacityType:
    return next(p.requested for p in job.placements if p.instance.id == instance_id)  # type: ignore[attr-defined]


def test_the_allocator_keeps_the_max_price_whatever_the_policys_filters() -> None:
    c = clock()
    launcher = FakeLauncher(clock=c)
    alloc = Allocator(launcher, clock=c, policy=cost_optimized().with_filters(Fits()))
    a = alloc.allocate(market(), CapacityRequest(count=4, max_price=0.1))
    assert all(o.price <= 0.1 for o, _, _ in launcher.calls) and a.units(OD) == 0 and a.unfilled == 1


def test_units_only_the_plan_put_on_on_demand_are_not_fallbacks() -> None:
    offers = [spot(price=0.05, vcpus=4), on_demand(price=0.2, vcpus=2, instance_type="m5.large")]
    c = clock()
    a = Allocator(FakeLauncher(clock=c), clock=c).allocate(offers, CapacityRequest(vcpus=10))  # 7 spot vCPUs
    assert a.units(SPOT) == 4 and not a.fallbacks
    assert not any(p.fell_back for p in a.placements)  # the 3 rounded vCPUs were never tried on spot


def test_every_blocked_offer_is_told_its_own_block_and_unused_spot_is_said_so() -> None:
    c = clock()
    h = HealthRegistry(clock=c)
    for zone in "ab":
        h.record_failure(pool(f"us-east-1{zone}"), SPOT, LaunchFailure.NO_CAPACITY)
    d = decide(market(), CapacityRequest(count=2), now=c.now(), health=h)
    reasons = {str(v.offer.pool): v.reason for v in d.verdicts() if not v.kept}
    assert "us-east-1a:m5.xlarge until" in reasons["aws:us-east-1a:m5.xlarge"]
    assert "us-east-1b:m5.xlarge until" in reasons["aws:us-east-1b:m5.xlarge"]
    critical = decide(market(), CapacityRequest(count=2, task_class="critical"), now=c.now())
    assert critical.dropped() == {"not used: the critical mix (0 % spot) has no spot part here": 3}


def test_spot_only_runs_give_up_rather_than_claim_on_demand() -> None:
    c = clock()
    launcher = FakeLauncher(clock=c)
    alloc = Allocator(launcher, clock=c)
    for zone in "abc":
        launcher.fail_next(pool(f"us-east-1{zone}"), SPOT, LaunchFailure.NO_CAPACITY)
    a = alloc.allocate(
        market(),
        CapacityRequest(count=2),
        policy=alloc.policy.only(CapacityMix(100)),
        on_demand_fallback=False,
    )
    assert a.unfilled == 2 and a.fallbacks[-1].action is FallbackAction.GIVE_UP


def test_ids_are_unique_and_parts_of_requests_are_whole() -> None:
    c = clock()
    alloc = Allocator(FakeLauncher(clock=c), clock=c)
    assert len({alloc.next_id() for _ in range(50)}) == 50
    assert CapacityRequest(vcpus=10).with_amount(2.5).vcpus == 3
    with pytest.raises(ConfigError, match="positive amount"):
        CapacityRequest(count=3).with_amount(0)
