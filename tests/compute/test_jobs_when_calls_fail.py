"""Jobs when the cloud's calls fail or the hooks re-enter: nothing runs without an owner, nothing
is launched twice, a job's mix and its pinning survive replacements (each test failed before its fix)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import attrs
import pytest
from compute_support import clock, market, on_demand, spot

from spotlake.clock import FakeClock
from spotlake.compute.allocator import AllocationError, Allocator
from spotlake.compute.events import InstanceState, InterruptionWarning, StateChange
from spotlake.compute.health import HealthLimits, HealthRegistry
from spotlake.compute.jobs import Job, JobManager, JobState
from spotlake.compute.launch.base import LaunchFailure
from spotlake.compute.launch.fake import FakeLauncher
from spotlake.compute.ledger import EndReason
from spotlake.compute.offers import OfferSet
from spotlake.compute.policy import SPOT_FIRST, Fallback, cost_optimized
from spotlake.compute.values import CapacityRequest, CapacityType, Offer
from spotlake.errors import ConfigError

SPOT, OD = CapacityType.SPOT, CapacityType.ON_DEMAND


class Flaky(FakeLauncher):
    """A fake cloud whose terminate and launch calls can be made to fail (throttling, an outage)."""

    def __init__(self, *, clock: FakeClock) -> None:
        super().__init__(clock=clock)
        self.refuse_terminate = False
        #: Ids whose termination is refused (once each), whatever ``refuse_terminate`` says.
        self.refuse_once: set[str] = set()
        self.broken_launch = False
        #: Launch calls that work before every further one raises (``None``: no limit).
        self.break_after: int | None = None
        self.launches = 0

    def terminate(self, ids: Sequence[str]) -> None:
        refused = self.refuse_once & set(ids)
        if self.refuse_terminate or refused:
            self.refuse_once -= refused
            raise RuntimeError("RequestLimitExceeded (throttled)")
        super().terminate(ids)

    def launch(self, *args: object, **kw: object) -> object:  # type: ignore[override]
        self.launches += 1
        if self.broken_launch or (self.break_after is not None and self.launches > self.break_after):
            raise ConnectionError("endpoint unreachable")
        return super().launch(*args, **kw)  # type: ignore[arg-type]


class Live:
    def __init__(self, c: FakeClock, build: object = None) -> None:
        self.c = c
        self.build = build or market

    def offers(self) -> OfferSet:
        return OfferSet(offers=self.build(self.c.now()), source="live")  # type: ignore[operator]


def manager(c: FakeClock, build: object = None, **kw: object) -> tuple[JobManager, Flaky]:
    launcher = Flaky(clock=c)
    alloc = Allocator(launcher, clock=c, policy=kw.pop("policy", None))  # type: ignore[arg-type]
    return JobManager(alloc, Live(c, build), clock=c, **kw), launcher  # type: ignore[arg-type]


def owned(jobs: JobManager) -> set[str]:
    return {i for j in jobs.list() for i in j.instance_ids}


def open_in_ledger(jobs: JobManager) -> set[str]:
    return {e.instance_id for e in jobs.ledger.entries() if e.ended_at is None}


def gone(instance_id: str, c: FakeClock) -> StateChange:
    return StateChange(
        instance_id=instance_id, state=InstanceState.TERMINATED, at=c.now(), region="us-east-1"
    )


def test_a_hang_whose_terminate_fails_stays_running_and_is_retried() -> None:
    c = clock()
    jobs, launcher = manager(c)
    job = jobs.submit(CapacityRequest(count=2, expected_runtime=timedelta(minutes=10)))
    first = job.instance_ids
    c.advance(timedelta(minutes=30).total_seconds())
    launcher.refuse_terminate = True
    jobs.tick()
    assert job.state is JobState.RUNNING and job.instance_ids == first  # not stuck in Hanging
    launcher.refuse_terminate = False
    jobs.tick()
    assert job.state is JobState.RUNNING and job.attempts == 2
    assert not set(first) & set(launcher.running) and set(launcher.running) == owned(jobs)


def fallen_back(c: FakeClock, **kw: object) -> tuple[JobManager, Flaky, Job]:
    """A job whose spot part fell back to on-demand, half an hour ago (revert may move it now)."""
    jobs, launcher = manager(c, **kw)
    for offer in market():
        if offer.spot:
            launcher.fail_next(offer.pool, SPOT, LaunchFailure.NO_CAPACITY)
    job = jobs.submit(CapacityRequest(count=4))
    assert job.placements and all(p.instance.capacity_type is OD for p in job.placements)
    c.advance(timedelta(minutes=30).total_seconds())
    return jobs, launcher, job


def test_a_revert_whose_terminate_fails_leaves_no_instance_without_a_job() -> None:
    c = clock()
    jobs, launcher, job = fallen_back(c)
    launcher.refuse_terminate = True
    for _ in range(3):
        jobs.tick()  # never raises
        c.advance(timedelta(minutes=16).total_seconds())
    assert set(launcher.running) == owned(jobs) == open_in_ledger(jobs)
    launcher.refuse_terminate = False
    jobs.terminate(job.id)
    assert not launcher.running and not open_in_ledger(jobs)


def test_a_revert_gives_its_replacement_back_when_the_old_instance_cannot_go() -> None:
    c = clock()
    jobs, launcher, job = fallen_back(c)
    before = set(job.instance_ids)
    launcher.refuse_once = set(before)  # the old on-demand instance cannot go; its replacement can
    jobs.tick()
    assert set(job.instance_ids) == before and set(launcher.running) == before == open_in_ledger(jobs)
    assert len(launcher.calls) > 4  # a replacement was launched, and given back


def test_a_fallback_whose_terminate_fails_keeps_every_instance_with_the_job() -> None:
    c = clock()
    jobs, launcher = manager(c)
    job = jobs.submit(CapacityRequest(count=4))
    launcher.refuse_terminate = True
    with pytest.raises(RuntimeError, match="throttled"):
        jobs.fallback(job.id)
    assert set(launcher.running) == owned(jobs) == open_in_ledger(jobs)
    assert not job.pinned_on_demand  # nothing moved


def test_a_spot_part_that_launches_whole_instances_is_not_asked_again_on_demand() -> None:
    def build(at: datetime) -> list[Offer]:
        return [
            spot("us-east-1a", price=0.05, observed_at=at),  # 4 vCPUs
            on_demand("us-east-1", "m5.2xlarge", price=0.384, vcpus=8, memory=32.0, observed_at=at),
        ]

    c = clock()
    jobs, launcher = manager(c, build)
    job = jobs.submit(CapacityRequest(vcpus=16))
    od = next(p for p in job.placements if p.instance.capacity_type is OD)
    launcher.interrupt(od.instance.id)
    jobs.handle(gone(od.instance.id, c))
    assert job.units == 16 and job.state is JobState.RUNNING
    assert len(launcher.running) == 3  # 8 vCPUs lost, 8 launched (not 16)


def test_a_checkpoint_hook_that_ends_the_job_ends_the_handling() -> None:
    c = clock()
    holder: dict[str, JobManager] = {}

    def checkpoint(job: Job, deadline: datetime) -> None:
        holder["jobs"].complete(job.id)  # done at its checkpoint

    jobs, launcher = manager(c, checkpoint=checkpoint)
    holder["jobs"] = jobs
    job = jobs.submit(CapacityRequest(count=2))
    lost = next(p for p in job.placements if p.instance.capacity_type is SPOT)
    jobs.handle(
        InterruptionWarning(
            instance_id=lost.instance.id,
            action="terminate",
            deadline=c.now() + timedelta(minutes=2),
            at=c.now(),
            region="us-east-1",
        )
    )
    assert job.state is JobState.COMPLETED and not job.placements
    assert set(launcher.running) == {lost.instance.id}  # the one the cloud is taking back


def test_a_job_rescheduled_after_a_hang_is_restarted() -> None:
    c = clock()
    restarted: list[tuple[str, ...]] = []
    jobs, _ = manager(c, restart=lambda j: restarted.append(j.instance_ids))
    job = jobs.submit(CapacityRequest(count=2, expected_runtime=timedelta(minutes=10)))
    assert not restarted  # the first start is no restart
    c.advance(timedelta(minutes=30).total_seconds())
    jobs.tick()
    assert job.attempts == 2 and restarted == [job.instance_ids]


def test_every_move_of_a_running_job_onto_new_instances_restarts_it() -> None:
    c = clock()
    restarted: list[tuple[str, ...]] = []
    jobs, _, job = fallen_back(c, restart=lambda j: restarted.append(j.instance_ids))
    assert not restarted  # its first start
    jobs.tick()  # revert moves one instance back to spot
    assert any(p.instance.capacity_type is SPOT for p in job.placements)
    assert restarted == [job.instance_ids]
    jobs.fallback(job.id, "the deadline needs on-demand")  # and back to on-demand
    assert all(p.instance.capacity_type is OD for p in job.placements)
    assert restarted[-1] == job.instance_ids and len(restarted) == 2


def test_spot_only_requests_refuse_critical_work() -> None:
    c = clock()
    jobs, launcher = manager(c)
    with pytest.raises(ConfigError, match="critical work is never placed on spot"):
        jobs.request_spot(CapacityRequest(count=3, task_class="critical"))
    assert not launcher.calls


def test_a_submit_that_breaks_leaves_no_job_and_nothing_running() -> None:
    c = clock()
    jobs, launcher = manager(c)
    launcher.broken_launch = True
    with pytest.raises(AllocationError):
        jobs.submit(CapacityRequest(count=2), name="nightly")
    launcher.broken_launch = False
    jobs.tick()
    assert jobs.list() == [] and not launcher.running and not open_in_ledger(jobs)


def test_no_on_demand_fallback_still_launches_the_mixs_own_on_demand_part() -> None:
    c = clock()
    launcher = FakeLauncher(clock=c)
    for offer in market():
        if offer.spot:
            launcher.set_capacity(offer.pool, SPOT, 0)
    got = Allocator(launcher, clock=c).allocate(market(), CapacityRequest(count=10), on_demand_fallback=False)
    assert got.units(OD) == 3 and got.unfilled == 7  # the 70 % spot part stays unfilled, only it


def test_a_pinned_job_replaces_lost_capacity_on_demand() -> None:
    c = clock()
    jobs, _ = manager(c)
    job = jobs.submit(CapacityRequest(count=4))
    jobs.fallback(job.id)
    lost = next(p for p in job.placements if p.requested is SPOT)
    jobs.handle(gone(lost.instance.id, c))
    assert {p.instance.capacity_type for p in job.placements} == {OD}


def test_a_spot_part_that_lands_on_demand_is_moved_back_later() -> None:
    def build(at: datetime) -> list[Offer]:
        return [
            spot("us-east-1a", price=0.05, observed_at=at),
            on_demand("us-east-1", price=0.192, observed_at=at),
        ]

    c = clock()
    jobs, _ = manager(c, build)
    job = jobs.submit(CapacityRequest(vcpus=10))
    spot_part = next(p for p in job.placements if p.instance.capacity_type is SPOT)
    jobs.handle(gone(spot_part.instance.id, c))
    replacement = [p for p in job.placements if p.requested is SPOT]
    assert replacement and all(p.fell_back for p in replacement)  # asked as spot, landed on-demand
    for _ in range(8):
        c.advance(20 * 60)
        jobs.tick()
    assert sum(p.units for p in job.placements if p.instance.capacity_type is SPOT) == 4
    assert not any(p.fell_back for p in job.placements)


def test_a_late_probe_release_does_not_free_a_newer_probe() -> None:
    c = clock()
    h = HealthRegistry(clock=c)
    for zone in "abc":
        h.record_failure(spot(f"us-east-1{zone}").pool, SPOT, LaunchFailure.NO_CAPACITY)
    c.advance(h.limits.breaker_open_for.total_seconds())
    first = h.take_probe(SPOT)
    assert first is not None
    c.advance(h.limits.probe_lease.total_seconds() + 1)
    second = h.take_probe(SPOT)
    assert second is not None
    h.release_probe(SPOT, first)  # the lost probe's launch came back at last
    assert h.take_probe(SPOT) is None  # the second probe is still out


def test_a_spot_wait_longer_than_the_probe_lease_is_refused() -> None:
    c = clock()
    slow = attrs.evolve(cost_optimized(), fallback=Fallback(spot_timeout=timedelta(minutes=20)))
    with pytest.raises(ConfigError, match=r"shorter than HealthLimits\.probe_lease"):
        Allocator(FakeLauncher(clock=c), clock=c, policy=slow)
    alloc = Allocator(FakeLauncher(clock=c), clock=c)
    with pytest.raises(ConfigError, match="probe_lease"):
        alloc.decide(market(), CapacityRequest(count=1), slow)
    long_lease = HealthRegistry(clock=c, limits=HealthLimits(probe_lease=timedelta(minutes=30)))
    Allocator(FakeLauncher(clock=c), clock=c, policy=slow, health=long_lease)  # consistent: accepted


# --- a second review of these fixes ----------------------------------------------------------------

ALL_SPOT = cost_optimized().with_mix(SPOT_FIRST)


def test_a_partial_on_demand_move_that_cannot_be_given_back_stays_with_the_job() -> None:
    def build(at: datetime) -> list[Offer]:
        return [
            spot("us-east-1a", "m5.2xlarge", price=0.08, vcpus=8, memory=32.0, observed_at=at),
            on_demand("us-east-1", "m5.xlarge", price=0.192, observed_at=at),
        ]

    c = clock()
    jobs, launcher = manager(c, build, policy=ALL_SPOT)
    job = jobs.submit(CapacityRequest(vcpus=8))
    launcher.set_capacity(on_demand().pool, OD, 1)  # one of the two 4-vCPU instances it needs
    launcher.refuse_terminate = True
    with pytest.raises(RuntimeError, match="throttled"):
        jobs.fallback(job.id)
    assert set(launcher.running) == owned(jobs) == open_in_ledger(jobs) and len(launcher.running) == 2


def test_moves_made_before_a_failure_keep_the_job_on_demand() -> None:
    c = clock()
    jobs, launcher = manager(c, policy=ALL_SPOT)
    job = jobs.submit(CapacityRequest(count=2))
    launcher.break_after = launcher.launches + 1  # the first on-demand move works, the second breaks
    with pytest.raises(AllocationError):
        jobs.fallback(job.id)
    assert job.pinned_on_demand
    moved = {p.instance.id for p in job.placements if p.instance.capacity_type is OD}
    launcher.break_after = None
    for _ in range(4):
        c.advance(timedelta(minutes=20).total_seconds())
        jobs.tick()
    assert moved <= set(job.instance_ids)  # revert leaves a pinned job alone
    jobs.unpin(job.id)
    for _ in range(4):
        c.advance(timedelta(minutes=20).total_seconds())
        jobs.tick()
    assert not moved & set(job.instance_ids)  # back on spot once allowed


def test_a_submit_that_breaks_and_cannot_terminate_keeps_its_instances_with_the_job() -> None:
    c = clock()
    jobs, launcher = manager(c)
    launcher.break_after = 1  # the spot launch works, the on-demand launch raises
    launcher.refuse_terminate = True
    with pytest.raises(AllocationError) as caught:
        jobs.submit(CapacityRequest(count=4))
    assert caught.value.partial is not None and caught.value.still_running
    assert set(launcher.running) == owned(jobs) == open_in_ledger(jobs) == set(caught.value.still_running)
    (job,) = jobs.list()
    launcher.refuse_terminate = False
    jobs.terminate(job.id)
    assert not launcher.running and not open_in_ledger(jobs)


def test_a_revert_that_could_not_terminate_waits_a_cooldown_before_launching_again() -> None:
    c = clock()
    jobs, launcher, job = fallen_back(c)
    old = set(job.instance_ids)
    launcher.refuse_once = set(old)
    before = launcher.launches
    for _ in range(30):  # five minutes of ticks
        jobs.tick()
        c.advance(10)
    assert launcher.launches - before == 1 and set(job.instance_ids) == old


def test_a_hook_that_ends_the_job_still_records_the_interruption() -> None:
    c = clock()
    holder: dict[str, JobManager] = {}

    def checkpoint(job: Job, deadline: datetime) -> None:
        holder["jobs"].complete(job.id)

    jobs, _ = manager(c, policy=ALL_SPOT, checkpoint=checkpoint)
    holder["jobs"] = jobs
    for _ in range(2):  # two early interruptions in one pool block it
        job = jobs.submit(CapacityRequest(count=1))
        lost = job.placements[0].instance
        c.advance(60)
        jobs.handle(
            InterruptionWarning(
                instance_id=lost.id,
                action="terminate",
                deadline=c.now() + timedelta(minutes=2),
                at=c.now(),
                region="us-east-1",
            )
        )
        assert jobs.ledger.get(lost.id).end is EndReason.INTERRUPTED  # type: ignore[union-attr]
    assert jobs.allocator.health.blocked(lost.offer.pool, SPOT) is not None


def test_a_waiting_job_can_be_moved_to_on_demand_and_spot_only_managers_wait() -> None:
    c = clock()
    jobs, launcher = manager(c, policy=ALL_SPOT, on_demand_fallback=False)
    for offer in market():
        if offer.spot:
            launcher.set_capacity(offer.pool, SPOT, 0)
    job = jobs.submit(CapacityRequest(count=2))
    assert job.state is JobState.PENDING and not job.placements  # waits for spot, no on-demand
    jobs.fallback(job.id)
    assert job.state is JobState.RUNNING and {p.instance.capacity_type for p in job.placements} == {OD}
