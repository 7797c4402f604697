"""The deadline planner (``spotlake.compute.simulate.planner``): its decision tables on their own,
the controller's rules around them, and the waits the engine reports to it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import attrs
import numpy as np
import pytest
from test_sim_engine import make_trace, watched

from spotlake.compute.simulate import (
    DeadlinePlanner,
    JobView,
    Mode,
    Plan,
    SlackGuard,
    SpotModel,
    deadline_job,
    plan,
)
from spotlake.compute.simulate.planner import MAX_CELLS
from spotlake.errors import ConfigError

T0 = datetime(2026, 1, 5, tzinfo=UTC)
H = timedelta(hours=1)
M = timedelta(minutes=1)
NOTICE_H = 2 / 60
OVERHEAD_H = 0.1
HARD_H = 2 * (NOTICE_H + OVERHEAD_H)  # two lossless switches


def tables(*, down: float = 1.0, up: float = 10.0, share: float = 0.4) -> Plan:
    """A job of 4 hours of work due in 10 (6 hours to spare), restarts of 6 minutes, AWS's notice."""
    return plan(
        span_h=10.0,
        spare_h=6.0,
        overhead_h=OVERHEAD_H,
        notice_h=NOTICE_H,
        spot_share=share,
        model=SpotModel(up_hours=up, down_hours=down),
        hard_h=HARD_H,
        step=0.04,
    )


def view(
    *,
    now: timedelta = timedelta(0),
    due: timedelta = 10 * H,
    done: timedelta = timedelta(0),
    loss: timedelta = timedelta(0),
    on_demand: bool = False,
    waiting: bool = True,
    waited: timedelta = timedelta(0),
    found: int = 0,
) -> JobView:
    """A job of 4 hours submitted at T0 with 6-minute restarts; times as offsets from T0."""
    return JobView(
        now=T0 + now,
        submitted_at=T0,
        due_at=T0 + due,
        work=4 * H,
        done=done,
        restart_overhead=6 * M,
        loss_bound=loss,
        notice=2 * M,
        on_demand=on_demand,
        waiting=waiting,
        checkpoints=True,
        spot_waited=waited,
        spot_found=found,
    )


# --- the plan --------------------------------------------------------------------------------------


def test_the_plan_never_waits_or_returns_to_spot_below_the_hard_reserve() -> None:
    for down in (0.1, 1.0, 30.0):
        t = tables(down=down)
        slack = t.slack0 + t.step * np.arange(t.wait.shape[1])
        assert not t.wait[:, slack <= HARD_H].any()
        assert not t.back[:, slack <= HARD_H + OVERHEAD_H + NOTICE_H].any()
        time_left = t.step * np.arange(t.wait.shape[0])
        remaining = time_left[:, None] - slack[None, :] - OVERHEAD_H
        assert not (t.wait | t.back)[remaining <= 1e-9].any()  # a job with no work left does not move
        live = (remaining > 1e-9) & (remaining <= 4.0)  # the states the job can be in
        # an hour to spare: waiting is free and keeps spot
        assert t.wait[live & (slack > 1.0)[None, :]].all()


def test_the_plan_waits_near_the_reserve_only_for_spot_that_comes_back_soon() -> None:
    # half an hour to spare with 4 left: going on-demand now still leaves room to come back to
    # spot later; waiting only pays if spot is back within minutes on average
    assert tables(down=0.2).waits(4.0, 0.5)
    assert not tables(down=1.0).waits(4.0, 0.5)
    assert not tables(down=100.0).waits(4.0, 0.5)


def test_the_plan_leaves_on_demand_only_for_spot_that_lasts_and_saves() -> None:
    for time_left, slack in ((10.0, 5.9), (8.0, 3.0), (6.0, 1.0)):
        assert tables(up=2.0).goes_back(time_left, slack)
        assert not tables(up=0.05).goes_back(time_left, slack)  # taken every 3 minutes
    assert not tables(share=1.0).back.any()  # no saving pays for a restart


def test_the_plan_expects_what_the_job_would_pay_when_spot_is_certain_or_absent() -> None:
    # 4 hours of work and one start (6 minutes): 4.1 hours to pay for, once
    always = tables(up=1e6, down=1e-3, share=0.4)
    assert always.expected_cost == pytest.approx(0.4 * 4.1, rel=0.01)
    never = tables(up=1e6, down=1e6, share=0.4)  # spot never comes: all of it on on-demand
    assert never.expected_cost == pytest.approx(4.1, rel=0.01)


def plan_for(span_h: float, spare_h: float, *, up: float = 10.0, down: float = 1.0) -> Plan:
    return plan(
        span_h=span_h,
        spare_h=spare_h,
        overhead_h=OVERHEAD_H,
        notice_h=NOTICE_H,
        spot_share=0.4,
        model=SpotModel(up_hours=up, down_hours=down),
        hard_h=HARD_H,
        step=0.04,
    )


def test_a_long_or_loose_job_gets_a_coarser_grid_not_a_huge_table() -> None:
    for span, spare in ((168.0, 160.0), (8760.0, 1.0)):  # a week to spare; a year with an hour
        long = plan_for(span, spare)
        assert long.wait.size <= MAX_CELLS and long.step > 0.04
    assert tables().step == 0.04  # a day's job keeps the grid it asked for


def test_the_plan_starts_at_the_submission_whatever_the_step() -> None:
    # 8.1 hours is no whole number of 0.04-hour steps: the grid adjusts so that its last row is
    # the submission, and the expected cost with spot always there is the work and one start
    odd = plan_for(8.1, 4.0, up=1e6, down=1e-3)
    assert odd.expected_cost == pytest.approx(0.4 * 4.2, rel=0.005)


def test_jobs_of_one_shape_and_model_share_their_plan() -> None:
    assert tables(down=0.5) is tables(down=0.5)
    assert tables(down=0.5) is not tables(down=0.6)


def test_a_spot_model_needs_positive_means() -> None:
    for bad in (0.0, -1.0, float("inf"), float("nan")):
        with pytest.raises(ConfigError, match="SpotModel"):
            SpotModel(up_hours=bad, down_hours=1.0)
        with pytest.raises(ConfigError, match="SpotModel"):
            SpotModel(up_hours=1.0, down_hours=bad)


def test_a_plan_needs_a_positive_step_and_span() -> None:
    with pytest.raises(ConfigError, match="step > 0"):
        plan(
            span_h=10.0,
            spare_h=6.0,
            overhead_h=OVERHEAD_H,
            notice_h=NOTICE_H,
            spot_share=0.4,
            model=SpotModel(up_hours=1.0, down_hours=1.0),
            hard_h=HARD_H,
            step=0.0,
        )


def test_a_planner_with_impossible_settings_is_refused() -> None:
    for bad in ({"spot_share": 0.0}, {"spot_share": 1.5}, {"bucket": 0.0}, {"step": -1.0}):
        with pytest.raises(ConfigError, match="DeadlinePlanner needs"):
            DeadlinePlanner(**bad)  # type: ignore[arg-type]


# --- the controller ------------------------------------------------------------------------------


def test_the_planner_models_spot_from_what_the_job_has_seen() -> None:
    planner = DeadlinePlanner()
    # nothing seen: the priors (0.1 interruptions an hour: up 10 h; down 1 h), rounded to the
    # bucket of 0.3 in the logarithm: e^2.4 and e^0
    fresh = planner.model(view())
    assert fresh.up_hours == pytest.approx(np.exp(2.4))
    assert fresh.down_hours == pytest.approx(1.0)
    # 10 hours of waiting in which spot was found twice: (10 + 2 x 1) / (2 + 2) = 3 h -> e^1.2
    assert planner.model(view(waited=10 * H, found=2)).down_hours == pytest.approx(np.exp(1.2))
    # a wait still going counts its time but no find
    assert planner.model(view(waited=10 * H)).down_hours == pytest.approx(np.exp(1.8))  # 6 h


def test_the_planner_keeps_the_guards_hard_reserve_and_running_rule() -> None:
    planner, guard = DeadlinePlanner(), SlackGuard()
    # the hard reserve: two switches of 2 + 0 + 6 minutes = 16 minutes
    at_reserve = view(due=4 * H + 6 * M + 16 * M)
    assert planner.mode(at_reserve) is Mode.ON_DEMAND
    assert planner.mode(attrs.evolve(at_reserve, on_demand=True, waiting=False)) is Mode.ON_DEMAND
    # running on spot, it decides as the guard does
    for due in (4 * H + 10 * M, 4 * H + 40 * M, 10 * H):
        for loss in (timedelta(0), 30 * M, H):
            running = view(due=due, loss=loss, waiting=False)
            assert planner.mode(running) is guard.mode(running), running


def test_the_planner_waits_only_on_or_ahead_of_the_uniform_progress_line() -> None:
    planner = DeadlinePlanner()
    # 4 hours of work over 10: at 05:00 the line is at 2 hours done
    assert planner.mode(view(now=5 * H, done=2 * H)) is Mode.SPOT
    assert planner.mode(view(now=5 * H, done=2 * H - M)) is Mode.ON_DEMAND  # 2:59 of slack


def test_the_planner_gives_up_waiting_sooner_for_a_job_that_waited_long_before() -> None:
    planner = DeadlinePlanner()
    # 36 minutes done in 36 (ahead of the line), due at 04:36: 30 minutes of slack with 3:24 of
    # work left, just above what a return from on-demand needs (the reserve of 16 minutes and a
    # switch of 8). Waiting pays if spot tends to be back within minutes; a job that has waited
    # hours for it before goes on-demand now, while it can still come back
    tight = view(now=36 * M, due=4 * H + 36 * M, done=36 * M)
    assert tight.slack == 30 * M
    assert planner.mode(attrs.evolve(tight, spot_waited=5 * M, spot_found=5)) is Mode.SPOT
    assert planner.mode(attrs.evolve(tight, spot_waited=10 * H, spot_found=2)) is Mode.ON_DEMAND


def test_a_move_back_to_spot_keeps_a_reserve_of_the_jobs_own_switches() -> None:
    planner = DeadlinePlanner()
    # on on-demand with an hour of slack: a job that saves continuously (a switch of 8 minutes,
    # a reserve of 16) goes back to spot; one that would lose 20 minutes of unsaved work (a
    # switch of 28, a reserve of 56) needs 84 minutes of slack to go
    back = view(now=H, due=5 * H + 6 * M, done=H, on_demand=True, waiting=False)
    assert back.slack == H
    assert planner.mode(back) is Mode.SPOT
    assert planner.mode(attrs.evolve(back, loss_bound=20 * M)) is Mode.ON_DEMAND
    roomier = attrs.evolve(back, loss_bound=20 * M, due_at=back.due_at + 25 * M)
    assert planner.mode(roomier) is Mode.SPOT


# --- the engine reports the waits ------------------------------------------------------------------


def test_the_engine_tells_the_controller_how_long_the_job_waited_for_spot_and_how_often_it_found_it() -> None:
    # spot for 40 minutes, gone for 20, back: the job waits once and finds spot again
    trace = make_trace({"us-east-1a": [1, 1, 0, 1, 1, 1]}, step=20 * M)
    workload = deadline_job(work=H, deadline=2 * H, restart_overhead=timedelta(0))
    _, seen = watched(trace, workload)
    waiting = [v for v in seen if v.waiting]
    assert waiting and all(v.spot_found == 0 for v in waiting)
    # the wait's time counts as it goes: one minute more at each look of the controller
    assert [v.spot_waited for v in waiting] == [v.now - waiting[0].now for v in waiting]
    last = seen[-1]
    assert not last.waiting and last.spot_found == 1
    assert last.spot_waited == waiting[-1].spot_waited  # the clock stopped when spot was found
    assert all(v.spot_waited == timedelta(0) for v in seen if v.now < waiting[0].now)


def test_a_wait_given_up_for_on_demand_is_not_a_find() -> None:
    # spot for 20 minutes, then never again: a controller that sends the job to on-demand after
    # 10 minutes of waiting
    trace = make_trace({"us-east-1a": [1] + [0] * 8}, step=20 * M)
    workload = deadline_job(work=H, deadline=3 * H, restart_overhead=timedelta(0))

    @attrs.frozen
    class Impatient:
        seen: list[JobView] = attrs.field(factory=list)

        def mode(self, v: JobView) -> Mode:
            self.seen.append(v)
            return Mode.ON_DEMAND if v.spot_waited >= 10 * M or v.on_demand else Mode.SPOT

    from spotlake.compute.simulate import contenders, simulate

    impatient = Impatient()
    [ours] = contenders(["spotlake-deadline"])
    run = simulate(trace, workload, attrs.evolve(ours, controller=impatient))
    [outcome] = run.jobs
    assert not outcome.missed
    on_demand = [v for v in impatient.seen if v.on_demand]
    assert on_demand and all(v.spot_found == 0 and v.spot_waited == 10 * M for v in on_demand)
