"""The simulator's workloads (jobs, generated mixes, the single-job deadline setup), the exact
account of a job's progress, and the hindsight optimum on small hand-made traces."""

from __future__ import annotations

import statistics
from collections import Counter
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hypothesis_support import examples
from spotlake.compute.simulate.optimum import OptimumReport, hindsight_cost, on_demand_price
from spotlake.compute.simulate.trace import InstanceShape, OnDemandPrice, PoolSeries, Trace
from spotlake.compute.simulate.workload import (
    CONTINUOUS,
    DEADLINE_JOB_DEADLINES,
    DEADLINE_JOB_OVERHEADS,
    Progress,
    SimJob,
    Workload,
    deadline_job,
    generate_workload,
)
from spotlake.compute.values import Pool, TaskClass
from spotlake.errors import ConfigError

T0 = datetime(2026, 1, 5, tzinfo=UTC)
H = timedelta(hours=1)
M = timedelta(minutes=1)
SHAPES = {
    "m5.large": InstanceShape(vcpus=2, memory_gib=8),
    "m5.xlarge": InstanceShape(vcpus=4, memory_gib=16),
    "g5.xlarge": InstanceShape(vcpus=4, memory_gib=16, gpus=1),
}


def make_trace(
    spot: dict[tuple[str, str], tuple[list[int], list[float]]],
    on_demand: dict[tuple[str, str], float],
    *,
    step: timedelta = H,
) -> Trace:
    """A trace from ``{(zone, type): (available per tick, price per tick)}`` and
    ``{(region, type): on-demand price}``."""
    return Trace(
        name="hand",
        cloud="aws",
        start=T0,
        step=step,
        spot=[
            PoolSeries(
                pool=Pool(cloud="aws", region=zone[:-1], zone=zone, instance_type=itype),
                available=avail,
                price=price,
            )
            for (zone, itype), (avail, price) in spot.items()
        ],
        on_demand=tuple(
            OnDemandPrice(region=region, instance_type=itype, price=price)
            for (region, itype), price in on_demand.items()
        ),
        shapes=SHAPES,
    )


def job(name: str = "j", **kwargs: object) -> SimJob:
    fields: dict[str, object] = {"work": H}
    fields.update(kwargs)
    return SimJob(name=name, **fields)  # type: ignore[arg-type]


def one(*jobs: SimJob) -> Workload:
    return Workload(name="w", jobs=jobs)


# --- SimJob and Workload -------------------------------------------------------------------------


def test_request_carries_the_job() -> None:
    j = job(
        submit_at=2 * H,
        work=3 * H,
        deadline=5 * H,
        task_class="batch",
        count=3,
        instance_types=("m5.large", "m5.xlarge"),
        min_vcpus=2,
        gpus=0,
    )
    r = j.request()
    assert r.count == 3
    assert r.task_class is TaskClass.BATCH
    assert r.instance_types == frozenset({"m5.large", "m5.xlarge"})
    assert (r.min_vcpus, r.gpus) == (2, 0)
    assert r.expected_runtime == 3 * H
    assert r.deadline is None
    assert r.name == "j"
    assert j.request(start=T0).deadline == T0 + 7 * H
    assert job().request().instance_types is None  # empty = any type
    assert job(instance_types="m5.large").instance_types == ("m5.large",)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"work": timedelta(0)}, "work must be a positive"),
        ({"submit_at": -M}, "submit_at must not be negative"),
        ({"count": 0}, "count is a number of instances"),
        ({"min_vcpus": -1}, "min_vcpus"),
        ({"gpus": -1}, "gpus"),
        ({"checkpoint_every": -M}, "checkpoint_every"),
        ({"restart_overhead": -M}, "restart_overhead"),
        ({"deadline": 30 * M}, "no run could meet it"),
        ({"deadline": H, "restart_overhead": M}, "no run could meet it"),
        ({"instance_types": ("m5.large", "")}, "non-empty names"),
        ({"task_class": "urgent"}, "urgent"),
    ],
)
def test_bad_jobs_are_config_errors(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        job(**kwargs)


def test_workload_sorts_by_submission_and_wants_unique_names() -> None:
    w = one(job("b", submit_at=2 * H), job("a", submit_at=H), job("c", submit_at=H))
    assert [j.name for j in w] == ["a", "c", "b"]  # stable for equal times
    assert len(w) == 3 and w.job("c").submit_at == H
    with pytest.raises(ConfigError, match="no job 'x'"):
        w.job("x")
    with pytest.raises(ConfigError, match="used twice: a"):
        one(job("a"), job("a", submit_at=H))
    with pytest.raises(ConfigError, match="no job"):
        one().job("a")
    assert len(one()) == 0


# --- generate_workload ---------------------------------------------------------------------------


def test_generated_workload_is_reproducible() -> None:
    a = generate_workload(seed=7, jobs=200, instance_types=["m5.large", "m5.xlarge", "c5.large"])
    b = generate_workload(seed=7, jobs=200, instance_types=["m5.large", "m5.xlarge", "c5.large"])
    c = generate_workload(seed=8, jobs=200, instance_types=["m5.large", "m5.xlarge", "c5.large"])
    assert a == b
    assert a.jobs != c.jobs
    assert a.name == "generated-7"


def test_generated_workload_has_the_documented_shape() -> None:
    span = timedelta(days=7)
    types = ("m5.large", "m5.xlarge", "c5.large")
    w = generate_workload(seed=1, jobs=3000, span=span, instance_types=types, start=T0)
    jobs = w.jobs
    assert len(jobs) == 3000 and len({j.name for j in jobs}) == 3000
    assert [j.submit_at for j in jobs] == sorted(j.submit_at for j in jobs)
    assert jobs[0].name == "job-0001"

    shares = Counter(j.task_class for j in jobs)
    assert abs(shares[TaskClass.CRITICAL] / 3000 - 0.1) < 0.03
    assert abs(shares[TaskClass.NORMAL] / 3000 - 0.6) < 0.03
    assert abs(shares[TaskClass.BATCH] / 3000 - 0.3) < 0.03

    assert all(timedelta(0) <= j.submit_at < span for j in jobs)
    assert all(15 * M <= j.work <= 12 * H for j in jobs)
    assert abs(statistics.median(j.work / H for j in jobs) - 2.0) < 0.25
    assert all(M <= j.restart_overhead <= 6 * M for j in jobs)
    assert {j.count for j in jobs} == {1, 2, 3, 4}
    assert {j.checkpoint_every for j in jobs} == {15 * M, 30 * M, 60 * M, None}
    assert all(j.instance_types and set(j.instance_types) <= set(types) for j in jobs)
    assert all(list(j.instance_types) == [t for t in types if t in j.instance_types] for j in jobs)

    for j in jobs:
        if j.deadline is None:
            assert j.task_class is not TaskClass.CRITICAL
            continue
        assert j.deadline >= j.work + j.restart_overhead
        slack = j.deadline / j.work
        high = 2.5 if j.task_class is TaskClass.CRITICAL else 4.0
        assert 1.5 <= slack <= high + 0.01
    open_ended = [j for j in jobs if j.task_class is not TaskClass.CRITICAL]
    share = sum(j.deadline is None for j in open_ended) / len(open_ended)
    assert abs(share - 0.15) < 0.03

    # Diurnal: 9:00-18:00 UTC is 9/24 of the day but weighs three times as much per minute.
    working = sum(9 <= (T0 + j.submit_at).hour < 18 for j in jobs) / len(jobs)
    assert abs(working - 27 / 42) < 0.04


def test_generated_workload_options_and_errors() -> None:
    w = generate_workload(seed=2, jobs=50, span=timedelta(hours=1), name="tiny", shares={"batch": 1})
    assert w.name == "tiny"
    assert all(j.task_class is TaskClass.BATCH and j.instance_types == () for j in w)
    assert all(j.submit_at < H for j in w)
    assert all(j.deadline is not None for j in generate_workload(seed=2, jobs=50, no_deadline_share=0))
    for kwargs, message in [
        ({"jobs": 0}, "at least one job"),
        ({"span": timedelta(seconds=59)}, "at least a minute"),
        ({"no_deadline_share": 1.5}, "no_deadline_share"),
        ({"shares": {TaskClass.NORMAL: -1.0}}, "shares"),
        ({"shares": {}}, "shares"),
        ({"shares": {"urgent": 1.0}}, "unknown task class 'urgent'"),
        ({"instance_types": ["m5.large", ""]}, "non-empty"),
    ]:
        with pytest.raises(ConfigError, match=message):
            generate_workload(seed=1, **kwargs)  # type: ignore[arg-type]


# --- deadline_job --------------------------------------------------------------------------------


def test_deadline_job_is_the_single_job_setup() -> None:
    w = deadline_job()
    (j,) = w.jobs
    assert (j.work, j.deadline, j.submit_at) == (48 * H, 52 * H, timedelta(0))
    assert j.restart_overhead == timedelta(minutes=3)
    assert j.checkpoint_every == CONTINUOUS
    assert (j.count, j.instance_types, j.task_class) == (1, (), TaskClass.NORMAL)
    assert (52 * H, 70 * H) == DEADLINE_JOB_DEADLINES
    assert (timedelta(seconds=72), timedelta(minutes=3), timedelta(minutes=6)) == DEADLINE_JOB_OVERHEADS

    pinned = deadline_job(deadline=70 * H, restart_overhead=6 * M, instance_type="m5.large").jobs[0]
    assert (pinned.deadline, pinned.restart_overhead, pinned.instance_types) == (70 * H, 6 * M, ("m5.large",))
    assert deadline_job(checkpoint_every=None).jobs[0].checkpoint_every is None
    with pytest.raises(ConfigError, match="no run could meet it"):
        deadline_job(deadline=48 * H)


def test_continuous_checkpoints_lose_only_the_overhead() -> None:
    p = Progress(deadline_job(restart_overhead=6 * M).jobs[0])
    p.run(T0)
    p.pause(T0 + 10 * H + 6 * M + timedelta(seconds=1), lost=True)
    assert p.checkpointed == 10 * H + timedelta(seconds=1) and p.lost_total == timedelta(0)
    p.run(T0 + 11 * H)
    assert p.done_at(T0 + 11 * H) == T0 + 11 * H + 6 * M + 38 * H - timedelta(seconds=1)


# --- Progress ------------------------------------------------------------------------------------


def test_progress_by_hand() -> None:
    p = Progress(job(work=2 * H, restart_overhead=6 * M, checkpoint_every=30 * M))
    assert not p.running and p.done_at(T0) is None and p.work_done(T0) == timedelta(0)
    p.run(T0)
    assert p.done_at(T0) == T0 + 2 * H + 6 * M  # the first start pays the overhead too
    assert p.work_done(T0 + 5 * M) == timedelta(0)
    assert p.work_done(T0 + 36 * M) == 30 * M
    assert p.saved(T0 + 35 * M) == timedelta(0) and p.saved(T0 + 36 * M) == 30 * M
    p.pause(T0 + 81 * M, lost=True)  # 75 minutes done, checkpoints at 30 and 60: 15 lost
    assert (p.checkpointed, p.lost_total, p.interruptions) == (H, 15 * M, 1)
    assert p.work_done(T0 + 90 * M) == H and p.done_at(T0 + 90 * M) is None

    p.run(T0 + 2 * H)
    assert p.done_at(T0 + 2 * H) == T0 + 3 * H + 6 * M
    assert p.work_done(T0 + 150 * M) == 84 * M
    assert p.saved(T0 + 150 * M) == H  # 24 minutes since the run's start: no checkpoint yet
    p.pause(T0 + 150 * M, lost=False)  # the checkpoint at the notice keeps all 84 minutes
    assert (p.checkpointed, p.lost_total, p.interruptions) == (84 * M, 15 * M, 2)

    p.run(T0 + 3 * H)
    assert p.done_at(T0 + 3 * H) == T0 + 3 * H + 6 * M + 36 * M
    assert p.saved(T0 + 4 * H) == 2 * H
    p.pause(T0 + 4 * H, lost=True)  # after the work was done: finished, no interruption
    assert p.finished and not p.running
    assert (p.checkpointed, p.lost_total, p.interruptions, p.starts) == (2 * H, 15 * M, 2, 3)
    assert p.done_at(T0 + 5 * H) == T0 + 3 * H + 42 * M
    assert "finished" in repr(p)
    with pytest.raises(ConfigError, match="nothing left to run"):
        p.run(T0 + 5 * H)


def test_progress_without_checkpoints_loses_the_run() -> None:
    p = Progress(job(work=2 * H, restart_overhead=10 * M))
    p.run(T0)
    p.pause(T0 + 5 * M, lost=True)  # still in the overhead: nothing done, nothing lost
    assert (p.checkpointed, p.lost_total, p.interruptions) == (timedelta(0), timedelta(0), 1)
    p.run(T0 + H)
    p.pause(T0 + 2 * H, lost=True)
    assert (p.checkpointed, p.lost_total) == (timedelta(0), 50 * M)
    p.run(T0 + 3 * H)
    p.pause(T0 + 3 * H + 40 * M, lost=False)  # a checkpoint at the notice
    p.run(T0 + 4 * H)
    p.pause(T0 + 4 * H + 20 * M, lost=True)  # back to what the notice saved
    assert (p.checkpointed, p.lost_total, p.interruptions) == (30 * M, 60 * M, 4)
    assert p.saved(T0 + 5 * H) == 30 * M


def test_progress_refuses_bad_sequences() -> None:
    p = Progress(job())
    with pytest.raises(ConfigError, match="not running"):
        p.pause(T0, lost=True)
    p.run(T0 + H)
    with pytest.raises(ConfigError, match="already running"):
        p.run(T0 + 2 * H)
    with pytest.raises(ConfigError, match="before its run started"):
        p.work_done(T0)
    with pytest.raises(ConfigError, match="before its run started"):
        p.done_at(T0)
    with pytest.raises(ConfigError, match="before its last event"):
        p.pause(T0, lost=True)
    p.pause(T0 + 90 * M, lost=True)
    with pytest.raises(ConfigError, match="before its last event"):
        p.run(T0 + H)
    with pytest.raises(ConfigError, match=r"a query at .* is before its last event"):
        p.work_done(T0)


@st.composite
def histories(draw: st.DrawFn) -> tuple[SimJob, list[tuple[int, int, bool]]]:
    """A job and its runs: (minutes idle before, minutes on capacity, lost at the pause)."""
    checkpoint = draw(st.sampled_from([None, CONTINUOUS, 7 * M, 15 * M, 60 * M]))
    j = job(
        work=draw(st.integers(1, 600)) * M,
        restart_overhead=draw(st.integers(0, 20)) * M,
        checkpoint_every=checkpoint,
    )
    runs = draw(
        st.lists(st.tuples(st.integers(0, 60), st.integers(0, 240), st.booleans()), min_size=1, max_size=12)
    )
    return j, runs


@settings(max_examples=examples(200))
@given(histories())
def test_progress_properties(history: tuple[SimJob, list[tuple[int, int, bool]]]) -> None:
    j, runs = history
    p = Progress(j)
    at = T0
    productive = timedelta(0)
    for idle, length, lost in runs:
        if p.finished:
            break
        at += idle * M
        p.run(at)
        done = p.done_at(at)
        assert done == at + j.restart_overhead + (j.work - p.checkpointed)
        before = (p.checkpointed, p.lost_total, p.interruptions)
        at += length * M
        ran = min(max(length * M - j.restart_overhead, timedelta(0)), j.work - before[0])
        productive += ran
        assert p.work_done(at) == before[0] + ran
        assert p.checkpointed <= p.saved(at) <= p.work_done(at)
        p.pause(at, lost=lost)
        lost_now = p.lost_total - before[1]
        assert lost_now >= timedelta(0)
        if at >= done:
            assert p.finished and p.checkpointed == j.work and p.interruptions == before[2]
            assert lost_now == timedelta(0)
            continue
        assert p.interruptions == before[2] + 1
        if not lost or j.checkpoint_every == CONTINUOUS:
            assert lost_now == timedelta(0)
        elif j.checkpoint_every is not None:
            assert lost_now < j.checkpoint_every  # never more than one interval per interruption
        else:
            assert lost_now == ran
    # Every minute of compute is either kept or lost, and nothing more than the work is kept.
    assert p.checkpointed + p.lost_total == productive
    assert p.checkpointed <= j.work
    assert p.finished == (p.checkpointed == j.work)


# --- hindsight_cost ------------------------------------------------------------------------------

A, B = "us-east-1a", "us-east-1b"


def test_all_spot_costs_spot() -> None:
    trace = make_trace({(A, "m5.large"): ([5] * 4, [0.1] * 4)}, {("us-east-1", "m5.large"): 0.3})
    report = hindsight_cost(trace, one(job(work=2 * H, deadline=3 * H, count=2)))
    assert report.total == pytest.approx(2 * 2 * 0.1)
    assert report.per_job == {"j": pytest.approx(0.4)}
    assert report.on_demand_total == pytest.approx(2 * 2 * 0.3)
    assert report.savings == pytest.approx(1 - 0.4 / 1.2)


def test_no_spot_costs_on_demand() -> None:
    trace = make_trace({(A, "m5.large"): ([0] * 4, [0.1] * 4)}, {("us-east-1", "m5.large"): 0.3})
    report = hindsight_cost(trace, one(job(work=2 * H, deadline=3 * H, count=2)))
    assert report.total == pytest.approx(1.2) and report.on_demand_total == pytest.approx(1.2)


def test_partial_spot_takes_the_cheapest_ticks() -> None:
    trace = make_trace(
        {(A, "m5.large"): ([1, 0, 3, 3], [0.1, 0.05, 0.2, 0.08])}, {("us-east-1", "m5.large"): 0.15}
    )
    # t1 has no spot, t2's spot is dearer than on-demand: rates 0.1, 0.15, 0.15, 0.08.
    report = hindsight_cost(trace, one(job(work=150 * M)))
    assert report.total == pytest.approx(0.08 + 0.1 + 0.5 * 0.15)
    assert report.on_demand_total == pytest.approx(2.5 * 0.15)


def test_a_job_starting_mid_tick_counts_only_its_part_of_the_ticks() -> None:
    trace = make_trace(
        {(A, "m5.large"): ([1, 1, 1, 1], [0.05, 0.2, 0.04, 0.01])}, {("us-east-1", "m5.large"): 0.25}
    )
    # Window 0:30-2:30: half of t0 at 0.05, t1 at 0.2, half of t2 at 0.04; t3 is too late.
    report = hindsight_cost(trace, one(job(submit_at=30 * M, work=H, deadline=2 * H)))
    assert report.total == pytest.approx(0.5 * 0.04 + 0.5 * 0.05)
    report = hindsight_cost(trace, one(job(submit_at=30 * M, work=75 * M, deadline=2 * H)))
    assert report.total == pytest.approx(0.5 * 0.04 + 0.5 * 0.05 + 0.25 * 0.2)


def test_a_gang_may_span_pools_and_mix_on_demand() -> None:
    trace = make_trace(
        {(A, "m5.large"): ([2], [0.1]), (B, "m5.xlarge"): ([2], [0.12])},
        {("us-east-1", "m5.large"): 0.3, ("us-east-1", "m5.xlarge"): 0.4},
    )
    assert hindsight_cost(trace, one(job(count=3))).total == pytest.approx(2 * 0.1 + 0.12)
    assert hindsight_cost(trace, one(job(count=5))).total == pytest.approx(2 * 0.1 + 2 * 0.12 + 0.3)
    only_large = one(job(count=3, instance_types=("m5.large",)))
    assert hindsight_cost(trace, only_large).total == pytest.approx(2 * 0.1 + 0.3)


def test_work_after_the_trace_is_not_charged_as_no_run_is_billed_for_it() -> None:
    trace = make_trace({(A, "m5.large"): ([0, 1], [0.1, 0.1])}, {("us-east-1", "m5.large"): 0.3})
    # Window 1h-4h: one hour of it in the trace (a spot hour); the rest is after the end.
    report = hindsight_cost(trace, one(job(submit_at=H, work=2 * H, deadline=3 * H)))
    assert report.total == pytest.approx(0.1) and report.on_demand_total == pytest.approx(0.3)
    # No deadline: the two hours of the trace (one on-demand, one spot), nothing after.
    assert hindsight_cost(trace, one(job(work=3 * H))).total == pytest.approx(0.3 + 0.1)
    # Submitted after the end: nothing runs, nothing is charged.
    assert hindsight_cost(trace, one(job(submit_at=5 * H, work=H))).total == 0


def test_types_sizes_regions_and_critical_jobs() -> None:
    trace = make_trace(
        {(A, "m5.large"): ([9] * 2, [0.01] * 2), (A, "g5.xlarge"): ([9] * 2, [0.5] * 2)},
        {
            ("us-east-1", "m5.large"): 0.2,
            ("us-west-2", "m5.large"): 0.15,
            ("us-east-1", "m5.xlarge"): 0.3,
            ("us-east-1", "g5.xlarge"): 1.0,
        },
    )
    w = one(
        job("any", work=2 * H),
        job("big", work=2 * H, min_vcpus=4),  # m5.xlarge has no spot pool, g5.xlarge's is at 0.5
        job("gpu", work=2 * H, gpus=1),
        job("critical", work=2 * H, task_class="critical"),
        job("listed", work=2 * H, instance_types=("m5.xlarge", "c5.large")),
    )
    report = hindsight_cost(trace, w)
    assert dict(report.per_job) == pytest.approx(
        {"any": 0.02, "big": 0.6, "gpu": 1.0, "critical": 0.3, "listed": 0.6}
    )
    assert on_demand_price(trace, w.job("any")) == 0.15  # the cheapest region
    assert report.on_demand_total == pytest.approx(0.3 + 0.6 + 2.0 + 0.3 + 0.6)
    assert report.total == pytest.approx(sum(report.per_job.values()))


def test_jobs_the_trace_cannot_serve_are_config_errors() -> None:
    trace = make_trace({(A, "m5.large"): ([1], [0.1])}, {("us-east-1", "m5.xlarge"): 0.3})
    with pytest.raises(ConfigError, match="no instance type it may use"):
        hindsight_cost(trace, one(job(instance_types=("c5.large",))))
    with pytest.raises(ConfigError, match="no instance type it may use"):
        hindsight_cost(trace, one(job(min_vcpus=64)))
    with pytest.raises(ConfigError, match=r"no on-demand price for m5\.large"):
        hindsight_cost(trace, one(job(instance_types=("m5.large",))))
    assert hindsight_cost(trace, one()) == OptimumReport(total=0.0, per_job={}, on_demand_total=0.0)
    assert OptimumReport(total=0.0, per_job={}, on_demand_total=0.0).savings == 0.0


def test_the_optimum_of_a_generated_week_is_below_on_demand() -> None:
    rng = np.random.default_rng(5)
    ticks = 7 * 24 * 12
    types = ("m5.large", "m5.xlarge")
    trace = make_trace(
        {
            (zone, itype): (rng.integers(0, 4, ticks).tolist(), rng.uniform(0.02, 0.4, ticks).tolist())
            for zone in (A, B)
            for itype in types
        },
        {("us-east-1", "m5.large"): 0.1, ("us-east-1", "m5.xlarge"): 0.2},
        step=5 * M,
    )
    w = generate_workload(seed=3, jobs=300, instance_types=types, start=T0)
    report = hindsight_cost(trace, w)
    assert 0 < report.total < report.on_demand_total
    assert set(report.per_job) == {j.name for j in w}


@st.composite
def markets(draw: st.DrawFn) -> tuple[Trace, SimJob]:
    """A small random trace and one job on it."""
    ticks = draw(st.integers(1, 6))
    step = draw(st.sampled_from([30 * M, H]))
    types = draw(st.lists(st.sampled_from(["m5.large", "m5.xlarge"]), min_size=1, max_size=2, unique=True))
    pools = {
        (zone, itype): (
            draw(st.lists(st.integers(0, 3), min_size=ticks, max_size=ticks)),
            draw(st.lists(st.floats(0.01, 0.5), min_size=ticks, max_size=ticks)),
        )
        for zone in draw(st.lists(st.sampled_from([A, B]), min_size=1, max_size=2, unique=True))
        for itype in types
    }
    od = {("us-east-1", itype): draw(st.floats(0.05, 0.4)) for itype in types}
    trace = make_trace(pools, od, step=step)
    work = draw(st.integers(1, 300)) * M
    deadline = draw(st.one_of(st.none(), st.integers(0, 300).map(lambda m: work + m * M)))
    j = job(
        submit_at=draw(st.integers(0, ticks * int(step / M) + 30)) * M,
        work=work,
        deadline=deadline,
        count=draw(st.integers(1, 4)),
        task_class=draw(st.sampled_from(["normal", "batch", "critical"])),
    )
    return trace, j


def linear_program(trace: Trace, j: SimJob) -> float:
    """The same bound as a linear program: per tick the gang's hours, each pool's and on-demand's
    instance-hours (a pool's at most its availability times the gang's hours), for the work that
    fits in the job's window inside the trace (no run is billed after the trace's end)."""
    from scipy.optimize import linprog

    od = on_demand_price(trace, j)
    step, end = trace.step / H, trace.ticks * trace.step / H
    lo = j.submit_at / H
    hi = end if j.due_at is None else j.due_at / H
    if j.task_class is TaskClass.CRITICAL:
        return od * j.count * min(j.work / H, max(min(hi, end) - lo, 0.0))
    pools = list(trace.spot)  # the job may use any type
    cost: list[float] = []
    bounds: list[tuple[float, float | None]] = []
    rows_eq: list[dict[int, float]] = []
    rows_ub: list[dict[int, float]] = []
    gang_hours: list[int] = []
    for t in range(trace.ticks):
        width = max(0.0, min(hi, (t + 1) * step) - max(lo, t * step))
        if width <= 0:
            continue
        s = len(cost)
        cost.append(0.0)
        bounds.append((0.0, width))
        gang_hours.append(s)
        fill = {s: -float(j.count)}
        for pool in pools:
            x = len(cost)
            cost.append(float(trace.spot[pool].price[t]))
            bounds.append((0.0, None))
            rows_ub.append({x: 1.0, s: -float(trace.spot[pool].available[t])})
            fill[x] = 1.0
        y = len(cost)
        cost.append(od)
        bounds.append((0.0, None))
        fill[y] = 1.0
        rows_eq.append(fill)
    inside = sum(bounds[s][1] or 0.0 for s in gang_hours)
    rows_eq.append(dict.fromkeys(gang_hours, 1.0))

    def matrix(rows: list[dict[int, float]]) -> np.ndarray:
        out = np.zeros((len(rows), len(cost)))
        for i, row in enumerate(rows):
            for k, v in row.items():
                out[i, k] = v
        return out

    b_eq = [0.0] * (len(rows_eq) - 1) + [min(j.work / H, inside)]
    if not gang_hours:
        return 0.0
    res = linprog(
        cost,
        A_ub=matrix(rows_ub) if rows_ub else None,
        b_ub=[0.0] * len(rows_ub) if rows_ub else None,
        A_eq=matrix(rows_eq),
        b_eq=b_eq,
        bounds=bounds,
        method="highs",
    )
    assert res.status == 0, res.message
    return float(res.fun)


@settings(max_examples=examples(100), deadline=None)
@given(markets())
def test_the_greedy_is_the_linear_programs_optimum(market: tuple[Trace, SimJob]) -> None:
    trace, j = market
    report = hindsight_cost(trace, one(j))
    assert report.total == pytest.approx(linear_program(trace, j), rel=1e-6, abs=1e-9)
    assert report.total <= report.on_demand_total + 1e-12
    cheapest = min([float(s.price.min()) for s in trace.spot.values()] + [on_demand_price(trace, j)])
    hi = trace.ticks * trace.step if j.due_at is None else min(j.due_at, trace.ticks * trace.step)
    inside = max(min(j.work, hi - j.submit_at), timedelta(0))  # the work the trace can hold
    assert report.total >= cheapest * j.count * (inside / H) - 1e-9
