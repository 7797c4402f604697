"""Ours moves a job running on spot to cheaper spot when the saving pays for the restart
(``RespotRule`` deciding, ``JobManager.respot`` moving), on hand-made traces."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import attrs
import pytest
from test_sim_engine import make_trace

from spotlake.compute.ledger import EndReason
from spotlake.compute.simulate import (
    JobView,
    RespotRule,
    Trace,
    Workload,
    contenders,
    deadline_job,
    simulate,
)
from spotlake.compute.simulate.workload import CONTINUOUS
from spotlake.errors import ConfigError

T0 = datetime(2026, 1, 5, tzinfo=UTC)
H = timedelta(hours=1)
M = timedelta(minutes=1)


def view(
    *,
    work: timedelta = 5 * H,
    done: timedelta = H,
    due: timedelta = 10 * H,
    unsaved: timedelta = timedelta(0),
) -> JobView:
    """A job submitted at T0 running on spot at 01:00 with 6-minute restarts."""
    return JobView(
        now=T0 + H,
        submitted_at=T0,
        due_at=T0 + due,
        work=work,
        done=done,
        restart_overhead=6 * M,
        loss_bound=unsaved,
        notice=2 * M,
        on_demand=False,
        waiting=False,
        unsaved=unsaved,
    )


def test_the_saving_asked_pays_for_the_restart_and_the_margin() -> None:
    rule = RespotRule()
    # 4 hours left, a restart of 6 minutes: the new price for 4:06 of work must be at most 95 %
    # of the old one for 4 hours
    assert rule.saving(view()) == pytest.approx(1 - 0.95 * 240 / 246)
    # 2 minutes unsaved are lost too
    assert rule.saving(view(unsaved=2 * M)) == pytest.approx(1 - 0.95 * 240 / 248)
    assert rule.saving(view(unsaved=4 * M)) is None  # more than 3 minutes unsaved: wait for a save
    assert rule.saving(view(done=4 * H + 40 * M)) is None  # 20 minutes left: not worth a restart
    # the slack after the move (its 6 minutes) must keep two worst switches (8 minutes each)
    assert rule.saving(view(due=5 * H + 6 * M + 22 * M)) is None
    assert rule.saving(view(due=5 * H + 6 * M + 23 * M)) is not None


def rising() -> Trace:
    """Two pools: a at 0.02 for two hours, then 0.10; b at 0.05 throughout."""
    return make_trace(
        {"us-east-1a": [4] * 8, "us-east-1b": [4] * 8},
        {"us-east-1a": [0.02, 0.02] + [0.10] * 6, "us-east-1b": [0.05] * 8},
    )


def five_hours(checkpoint_every: timedelta | None) -> Workload:
    """5 hours of work due in 10, 6-minute restarts, on the traces' type."""
    return deadline_job(
        work=5 * H,
        deadline=10 * H,
        restart_overhead=6 * M,
        checkpoint_every=checkpoint_every,
        instance_type="m5.xlarge",
    )


def test_ours_moves_a_running_job_to_the_pool_that_became_cheaper() -> None:
    [ours] = contenders(["spotlake-deadline"])
    workload = five_hours(CONTINUOUS)
    moved = simulate(rising(), workload, ours)
    stayed = simulate(rising(), workload, attrs.evolve(ours, respot=None))
    assert (moved.respots, stayed.respots) == (1, 0)
    [outcome] = moved.jobs
    assert not outcome.missed and outcome.restarts == 1
    # 5 h of work and a 6-minute start: 2 h at 0.02 in a, then the 3:06 left and a second
    # restart (3:12) at 0.05 in b; against 3:06 at 0.10 in a
    assert moved.cost == pytest.approx(2 * 0.02 + 3.2 * 0.05, abs=0.002)
    assert stayed.cost == pytest.approx(2 * 0.02 + 3.1 * 0.10, abs=0.002)
    ends = [e.end for e in moved.ledger.ledger.entries()]
    assert ends.count(EndReason.REPLACED) == 1


def test_a_job_that_never_saves_is_not_moved_once_it_has_work_to_lose() -> None:
    [ours] = contenders(["spotlake-deadline"])
    run = simulate(rising(), five_hours(None), ours)
    assert run.respots == 0 and run.cost == pytest.approx(2 * 0.02 + 3.1 * 0.10, abs=0.002)


def test_a_respot_rule_with_impossible_settings_is_refused() -> None:
    for bad in ({"margin": 1.0}, {"margin": -0.1}, {"max_unsaved": -M}, {"restarts": -1}):
        with pytest.raises(ConfigError, match="RespotRule needs"):
            RespotRule(**bad)  # type: ignore[arg-type]


def test_a_contender_cannot_respot_without_a_controller() -> None:
    [greedy] = contenders(["greedy"])
    with pytest.raises(ConfigError, match="respot rule but no controller"):
        attrs.evolve(greedy, respot=RespotRule())
