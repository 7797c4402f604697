"""Moving a running job from spot to cheaper spot (``JobManager.respot``): only when the plan is
cheap enough, make before break, and no instance left without an owner when a call fails."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from compute_support import T0, clock, on_demand, spot
from test_jobs_when_calls_fail import Flaky, manager, open_in_ledger, owned

from spotlake.clock import FakeClock
from spotlake.compute.allocator import AllocationError
from spotlake.compute.jobs import JobManager, JobState
from spotlake.compute.launch.base import LaunchFailure
from spotlake.compute.ledger import EndReason
from spotlake.compute.policy import SPOT_FIRST, cost_optimized
from spotlake.compute.respot import plan_respot, price_now
from spotlake.compute.values import CapacityRequest, CapacityType, Offer
from spotlake.errors import ConfigError

SPOT, OD = CapacityType.SPOT, CapacityType.ON_DEMAND
RISE = T0 + timedelta(hours=1)


def drifting(at: datetime) -> list[Offer]:
    """Pool a is cheapest at first (0.04) and dearest from 13:00 (0.10); b costs 0.06, c 0.09."""
    return [
        spot("us-east-1a", price=0.04 if at < RISE else 0.10, observed_at=at),
        spot("us-east-1b", price=0.06, observed_at=at),
        spot("us-east-1c", price=0.09, observed_at=at),
        on_demand("us-east-1", price=0.192, observed_at=at),
    ]


def spot_job(c: FakeClock, **kw: object) -> tuple[JobManager, Flaky, str]:
    """A job of two instances on spot (a spot-first policy), placed in pool a at 12:00; the clock
    then at 13:00, where a costs 0.20 an hour for both and b would cost 0.12."""
    jobs, launcher = manager(c, drifting, policy=cost_optimized().only(SPOT_FIRST), **kw)
    job = jobs.submit(CapacityRequest(count=2))
    assert {p.instance.offer.pool.zone for p in job.placements} == {"us-east-1a"}
    c.advance(timedelta(hours=1).total_seconds())
    return jobs, launcher, job.id


def test_a_job_moves_to_cheaper_spot_when_the_saving_is_enough() -> None:
    c = clock()
    jobs, launcher, job_id = spot_job(c)
    job = jobs.get(job_id)
    old = set(job.instance_ids)
    assert jobs.respot(job_id, saving=0.3)  # 0.12 is 40 % below 0.20
    assert job.state is JobState.RUNNING and not old & set(job.instance_ids)
    assert {p.instance.offer.pool.zone for p in job.placements} == {"us-east-1b"}
    assert all(p.instance.capacity_type is SPOT and p.requested is SPOT for p in job.placements)
    assert {jobs.ledger.get(i).end for i in old} == {EndReason.REPLACED}  # type: ignore[union-attr]
    assert set(launcher.running) == owned(jobs) == open_in_ledger(jobs) == set(job.instance_ids)
    assert job.history[-1].reason.startswith("moved to cheaper spot: 0.2000 -> 0.1200 USD/h")


def test_no_move_and_no_launch_when_the_saving_is_too_small() -> None:
    c = clock()
    jobs, launcher, job_id = spot_job(c)
    before, calls = jobs.get(job_id).instance_ids, len(launcher.calls)
    assert not jobs.respot(job_id, saving=0.5)  # 40 % is not 50 %
    assert jobs.get(job_id).instance_ids == before and len(launcher.calls) == calls


def test_only_a_running_job_all_on_spot_moves() -> None:
    c = clock()
    jobs, launcher, job_id = spot_job(c)
    jobs.fallback(job_id, "the deadline needs on-demand")
    calls = len(launcher.calls)
    assert not jobs.respot(job_id, saving=0.0)  # pinned on on-demand
    jobs.unpin(job_id)
    assert not jobs.respot(job_id, saving=0.0)  # unpinned, but its instances are on-demand
    jobs.complete(job_id)
    assert not jobs.respot(job_id, saving=0.0)
    assert len(launcher.calls) == calls


def test_a_replacement_that_falls_short_is_given_back() -> None:
    c = clock()
    jobs, launcher, job_id = spot_job(c)
    before = set(jobs.get(job_id).instance_ids)
    # b has no capacity: the launch falls back along the spot ranking to c (0.18 an hour for
    # two), above the 0.14 that a saving of 30 % allows
    launcher.fail_next(spot("us-east-1b").pool, SPOT, LaunchFailure.NO_CAPACITY)
    assert not jobs.respot(job_id, saving=0.3)
    assert set(jobs.get(job_id).instance_ids) == before
    assert set(launcher.running) == owned(jobs) == open_in_ledger(jobs) == before
    ended = [e for e in jobs.ledger.entries() if e.ended_at is not None]
    assert ended and {e.end for e in ended} == {EndReason.TERMINATED}  # launched and given back


def test_when_the_old_instances_cannot_go_the_replacement_is_given_back_and_the_error_raised() -> None:
    c = clock()
    jobs, launcher, job_id = spot_job(c)
    before = set(jobs.get(job_id).instance_ids)
    launcher.refuse_once = set(before)
    with pytest.raises(RuntimeError, match="throttled"):
        jobs.respot(job_id, saving=0.3)
    assert set(jobs.get(job_id).instance_ids) == before
    assert set(launcher.running) == owned(jobs) == open_in_ledger(jobs) == before


def test_when_nothing_can_be_terminated_the_job_holds_both() -> None:
    c = clock()
    jobs, launcher, job_id = spot_job(c)
    launcher.refuse_terminate = True
    with pytest.raises(RuntimeError, match="throttled"):
        jobs.respot(job_id, saving=0.3)
    job = jobs.get(job_id)
    assert len(job.instance_ids) == 4  # its own and the replacement: none without an owner
    assert set(launcher.running) == owned(jobs) == open_in_ledger(jobs)


def test_a_saving_is_a_share_of_the_price() -> None:
    c = clock()
    jobs, _, job_id = spot_job(c)
    for bad in (-0.1, 1.0, float("nan")):
        with pytest.raises(ConfigError, match="respot saving"):
            jobs.respot(job_id, saving=bad)


def test_the_price_now_is_the_pools_current_offer_or_the_launch_price() -> None:
    c = clock()
    jobs, _, job_id = spot_job(c)
    placements = jobs.get(job_id).placements
    assert price_now(placements, drifting(c.now())) == pytest.approx(0.20)
    assert price_now(placements, drifting(T0)) == pytest.approx(0.08)
    assert price_now(placements, []) == pytest.approx(0.08)  # no offer now: as launched
    plan = plan_respot(jobs.allocator, drifting(c.now()), placements, CapacityRequest(count=2), saving=0.3)
    assert plan is not None and plan.price_now == pytest.approx(0.20) and plan.limit == pytest.approx(0.14)


def test_a_launch_that_breaks_leaves_the_job_as_it_was_and_says_so() -> None:
    c = clock()
    jobs, launcher, job_id = spot_job(c)
    before = set(jobs.get(job_id).instance_ids)
    launcher.broken_launch = True
    with pytest.raises(AllocationError, match="failed part-way"):
        jobs.respot(job_id, saving=0.3)
    assert set(jobs.get(job_id).instance_ids) == before
    assert set(launcher.running) == owned(jobs) == open_in_ledger(jobs) == before


def test_the_restart_hook_starts_the_job_on_its_new_instances() -> None:
    c = clock()
    started: list[tuple[str, ...]] = []
    jobs, _, job_id = spot_job(c, restart=lambda job: started.append(job.instance_ids))
    assert not jobs.respot(job_id, saving=0.5)
    assert started == []
    assert jobs.respot(job_id, saving=0.3)
    assert started == [jobs.get(job_id).instance_ids]


def test_a_request_for_vcpus_moves_by_its_price_per_vcpu() -> None:
    c = clock()
    jobs, _ = manager(c, drifting, policy=cost_optimized().only(SPOT_FIRST))
    job = jobs.submit(CapacityRequest(vcpus=8))  # two 4-vCPU instances
    c.advance(timedelta(hours=1).total_seconds())
    # 0.12 for the 8 vCPUs in b against 0.20 in a: 40 % saved
    assert jobs.respot(job.id, saving=0.35)
    assert {p.instance.offer.pool.zone for p in job.placements} == {"us-east-1b"}
