"""The cost ledger (totals, frame, store round trip) and the job API over the in-memory launcher."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from compute_support import clock, market, pool

from spotlake.clock import FakeClock
from spotlake.compute.allocator import Allocator
from spotlake.compute.events import InstanceState, RebalanceRecommendation, StateChange
from spotlake.compute.jobs import JobManager, JobState
from spotlake.compute.launch.base import LaunchFailure
from spotlake.compute.launch.fake import FakeLauncher
from spotlake.compute.ledger import LEDGER_TABLE, CostLedger, EndReason
from spotlake.compute.offers import StaticOffers
from spotlake.compute.values import CapacityRequest, CapacityType
from spotlake.errors import ConfigError
from spotlake.storage import MetricsSink, SinkReport, open_store

SPOT, OD = CapacityType.SPOT, CapacityType.ON_DEMAND


def test_totals_compare_with_all_on_demand() -> None:
    c = clock()
    launcher = FakeLauncher(clock=c)
    launcher.fail_next(pool("us-east-1b"), SPOT, LaunchFailure.NO_CAPACITY)
    a = Allocator(launcher, clock=c).allocate(market(), CapacityRequest(count=10))
    ledger = CostLedger(clock=c)
    ledger.record(a, job="j")
    c.advance(3600)
    first = a.placements[0].instance.id
    ledger.record_end(first, EndReason.INTERRUPTED)
    ledger.record_end(first, EndReason.COMPLETED)  # the first end stands
    c.advance(3600)
    t = ledger.totals()
    assert (t.instances, t.running, t.interruptions) == (10, 9, 1)
    assert t.fallbacks == 7  # the spot instances launched after the failed pool; on-demand was asked as such
    assert t.instance_hours == pytest.approx(19.0)
    assert t.requested_spot_share == pytest.approx(13 / 19) and t.realised_spot_share == pytest.approx(
        13 / 19
    )
    assert t.cost == pytest.approx(13 * 0.09 + 6 * 0.192)
    assert t.on_demand_cost == pytest.approx(19 * 0.192)
    assert t.saving == pytest.approx(1 - t.cost / t.on_demand_cost)
    with pytest.raises(ConfigError, match="no instance 'i-nope'"):
        ledger.record_end("i-nope", EndReason.COMPLETED)


def test_the_ledger_round_trips_through_a_store(tmp_path: Path) -> None:
    c = clock()
    a = Allocator(FakeLauncher(clock=c), clock=c).allocate(market(), CapacityRequest(count=4))
    ledger = CostLedger(clock=c)
    ledger.record(a, job="j1")
    store = open_store(str(tmp_path / "data"))
    assert ledger.save(store) is not None and ledger.save(store) is None  # nothing new the second time
    c.advance(1800)
    ledger.record_end(a.placements[0].instance.id, EndReason.COMPLETED)
    ledger.save(store)
    assert len(store.read_table(LEDGER_TABLE)) == 5  # four launches, then one end: appends only
    back = CostLedger.load(store, clock=c)
    assert back.entries() == ledger.entries()
    frame = ledger.to_frame()
    assert list(frame.columns[:3]) == ["instance_id", "allocation", "job"]
    assert str(frame["launched_at"].dtype).startswith("datetime64") and frame["job"].tolist() == ["j1"] * 4


def manager(c: FakeClock | None = None, **kw: object) -> tuple[JobManager, FakeLauncher]:
    c = c or clock()
    launcher = FakeLauncher(clock=c)
    offers = StaticOffers(market(), source="test")
    return JobManager(Allocator(launcher, clock=c), offers, clock=c, **kw), launcher  # type: ignore[arg-type]


def test_the_job_api() -> None:
    jobs, launcher = manager()
    job = jobs.submit(CapacityRequest(count=3), name="etl")
    assert jobs.get(job.id) is job and jobs.list(JobState.RUNNING) == [job]
    assert len(launcher.running) == 3
    jobs.complete(job.id)
    assert job.state is JobState.COMPLETED and not launcher.running and job.ended_at is not None
    with pytest.raises(ConfigError, match="already completed"):
        jobs.terminate(job.id)
    other = jobs.submit(CapacityRequest(count=1))
    jobs.fail(other.id, "exit code 3")
    assert other.history[-1].reason == "exit code 3"
    with pytest.raises(ConfigError, match="no job 'job-99'"):
        jobs.get("job-99")
    health = jobs.health()
    assert health.breakers == {SPOT: health.breakers[SPOT], OD: health.breakers[OD]} and health.blocks == ()


def test_instance_events_for_a_job() -> None:
    jobs, launcher = manager()
    job = jobs.submit(CapacityRequest(count=2))
    some = job.instance_ids[0]
    jobs.handle(RebalanceRecommendation(instance_id=some, region="us-east-1", at=clock().now()))
    assert "rebalance recommendation" in job.history[-1].reason and some in job.instance_ids
    jobs.handle(
        StateChange(instance_id=some, region="us-east-1", at=clock().now(), state=InstanceState.STOPPING)
    )
    assert some in job.instance_ids  # a stop is not the end
    launcher.interrupt(some)
    jobs.handle(
        StateChange(instance_id=some, region="us-east-1", at=clock().now(), state=InstanceState.TERMINATED)
    )
    assert some not in job.instance_ids and len(job.placements) == 2 and job.restarts == 1
    jobs.handle(
        StateChange(
            instance_id="i-someone-else", region="us-east-1", at=clock().now(), state=InstanceState.TERMINATED
        )
    )


def test_hanging_on_every_attempt_fails_the_job() -> None:
    c = clock()
    jobs, _ = manager(c, max_attempts=2, revert=False)
    job = jobs.submit(CapacityRequest(count=1, expected_runtime=timedelta(minutes=10)))
    for _ in range(2):
        c.advance(timedelta(minutes=30).total_seconds())
        jobs.tick()
    assert job.state is JobState.FAILED and "hung on each of 2 attempts" in job.history[-1].reason


def test_bad_settings() -> None:
    with pytest.raises(ConfigError, match="hang_factor"):
        manager(hang_factor=1.0)


def test_allocate_request_spot_and_fallback_as_the_seed_api_has_them() -> None:
    jobs, launcher = manager()
    direct = jobs.allocate(CapacityRequest(count=2))
    assert direct.complete and all(jobs.ledger.get(i.id) is not None for i in direct.instances)
    job = jobs.submit(CapacityRequest(count=10))
    spot_ids = [p.instance.id for p in job.placements if p.instance.capacity_type is SPOT]
    assert len(spot_ids) == 7
    jobs.fallback(job.id, "spot keeps failing in this region")
    assert all(p.instance.capacity_type is OD for p in job.placements) and len(job.placements) == 10
    assert not set(spot_ids) & set(launcher.running)
    assert {jobs.ledger.get(i).end for i in spot_ids} == {EndReason.REPLACED}  # type: ignore[union-attr]
    assert job.history[-1].reason == "spot keeps failing in this region: 7 moved"
    jobs.complete(job.id)
    with pytest.raises(ConfigError, match="only a running or waiting job"):
        jobs.fallback(job.id)
    launcher.fail_next(pool("us-east-1b"), SPOT, LaunchFailure.SPOT_LIMIT)
    spot = jobs.request_spot(CapacityRequest(count=3))
    assert spot.units(OD) == 0 and spot.unfilled == 3  # spot only: no fallback


class Gauges:
    """A metrics sink in memory (the MetricsSink protocol)."""

    def __init__(self) -> None:
        self.sent: list[dict[str, float]] = []

    def write_run(self, counts: Mapping[str, float], *, run_at: datetime) -> SinkReport:
        self.sent.append(dict(counts))
        return SinkReport(sink="gauges", records=len(counts), calls=1)


def test_capacity_types_reach_the_metrics_sink() -> None:
    c = clock()
    launcher = FakeLauncher(clock=c)
    launcher.fail_next(pool("us-east-1b"), SPOT, LaunchFailure.SPOT_LIMIT)
    ledger = CostLedger(clock=c)
    ledger.record(Allocator(launcher, clock=c).allocate(market(), CapacityRequest(count=10)))
    sink = Gauges()
    report = ledger.publish(sink)
    assert isinstance(sink, MetricsSink) and report.records == 9
    [m] = sink.sent
    assert (m["RunningSpot"], m["RunningOnDemand"], m["RunningFallenBack"]) == (0, 10, 7)
    assert m["HourlyCost"] == pytest.approx(10 * 0.192) and m["Fallbacks"] == 7
