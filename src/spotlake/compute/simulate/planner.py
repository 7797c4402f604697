"""Plan a deadline job's waits for spot with a dynamic program over its time left and slack.

:class:`SlackGuard` waits for spot on a fixed rule (a reserve and a pace). Whether waiting pays
depends on how long spot tends to stay away and how long it tends to last once back, and on how
much time is left: an hour of waiting costs nothing with a day of slack and everything with an
hour. :class:`DeadlinePlanner` models spot, as one job has seen it, as an on/off process (a
:class:`SpotModel`: exponential up and down times with the job's own means) and solves, once per
job shape and model, the cheapest way to finish by the deadline as a Markov decision process on
a grid of (time left, slack) (:func:`plan`). The solution is two tables of decisions:

*wait*
    waiting for spot, keep waiting (else go on-demand now);
*back*
    on on-demand while spot is there, move back to spot (else stay).

Costs are in on-demand hours: an hour on spot costs ``spot_share``. A job's state is where it
computes and whether spot is there: on spot (it computes; an interruption costs the notice and
sends it waiting), waiting (its slack shrinks by the time it waits; when spot returns it restarts
there), on on-demand with spot there or not (it computes at full price and may move back when
spot is there). Every move is a restart: it costs a restart overhead of slack, which is work to
do (and pay for) on the new capacity; a job whose slack falls below minus one restart overhead
can no longer finish (an infinite cost).

The planner keeps :class:`SlackGuard`'s hard reserve (its ``restarts`` worst switches, which no
plan may spend) and its rule for a job running on spot, and waits only while the job is on or
ahead of Uniform Progress's straight line from submission to deadline: the plan chooses when
leaving on-demand pays, the line keeps an early long outage from eating the slack that plan
assumed. The plan counts a switch as a notice and a restart (what a job that saves continuously
loses); the work a job that saves less often would lose is in the guard's reserve, which every
wait and every move back must keep.
"""

from __future__ import annotations

import functools
import math
from datetime import timedelta
from typing import Final

import attrs
import numpy as np
import numpy.typing as npt

from spotlake.compute.simulate.controllers import JobView, Mode, SlackGuard
from spotlake.errors import ConfigError

__all__ = ["MAX_CELLS", "DeadlinePlanner", "Plan", "SpotModel", "plan"]

_HOUR_S: Final = 3600.0
#: The cost of a state from which the deadline can no longer be met (on-demand hours).
_INFEASIBLE: Final = 1e4
#: The most cells (time left x slack) a plan's table has: a longer or looser job gets a coarser
#: grid (a job due in a week: about 10-minute steps), so a plan's two tables take at most 2 MB.
MAX_CELLS: Final = 1_000_000

Bools = npt.NDArray[np.bool_]
Floats = npt.NDArray[np.float64]


@attrs.frozen(kw_only=True)
class SpotModel:
    """Spot availability as an on/off process: mean hours up (between interruptions) and mean hours
    down (from an interruption until spot is found again), both exponential."""

    up_hours: float
    down_hours: float

    def __attrs_post_init__(self) -> None:
        for name in ("up_hours", "down_hours"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(f"SpotModel.{name} must be a positive number of hours, got {value!r}")


@attrs.frozen(kw_only=True, eq=False)
class Plan:
    """The decision tables of one job shape and spot model (see :func:`plan`), indexed by time left
    (row ``i``: ``i * step`` hours) and slack (column ``j``: ``slack0 + j * step`` hours)."""

    step: float
    slack0: float
    wait: Bools
    back: Bools
    #: The expected cost, in on-demand hours, of the job from its submission (waiting for spot,
    #: all its slack left) when it follows the plan.
    expected_cost: float

    def _cell(self, time_left_h: float, slack_h: float) -> tuple[int, int]:
        rows, cols = self.wait.shape
        i = min(max(round(time_left_h / self.step), 0), rows - 1)
        j = min(max(math.floor((slack_h - self.slack0) / self.step), 0), cols - 1)
        return i, j

    def waits(self, time_left_h: float, slack_h: float) -> bool:
        """Waiting for spot with this much time left and slack (hours): keep waiting?"""
        return bool(self.wait[self._cell(time_left_h, slack_h)])

    def goes_back(self, time_left_h: float, slack_h: float) -> bool:
        """On on-demand with spot there: move back to spot?"""
        return bool(self.back[self._cell(time_left_h, slack_h)])


def _shifted(values: Floats, grid: Floats, by: float) -> Floats:
    """``values`` at slack ``grid - by`` (linear between grid points; infeasible below the grid)."""
    out: Floats = np.interp(grid - by, grid, values, left=_INFEASIBLE)
    return out


def _grid(span_h: float, spare_h: float, overhead_h: float, step: float) -> tuple[float, int, Floats]:
    """The grid's step (at least ``step``, a whole fraction of the span so that the last row is the
    submission, and coarse enough for :data:`MAX_CELLS`), its rows and its slack values."""
    while True:
        step = span_h / max(math.floor(span_h / step + 1e-9), 1)
        grid: Floats = np.arange(-overhead_h - 3 * step, spare_h + 3 * step, step)
        rows = round(span_h / step) + 1
        if rows * len(grid) <= MAX_CELLS:
            return step, rows, grid
        step *= 1.25


@functools.lru_cache(maxsize=128)
def plan(
    *,
    span_h: float,
    spare_h: float,
    overhead_h: float,
    notice_h: float,
    spot_share: float,
    model: SpotModel,
    hard_h: float,
    step: float,
) -> Plan:
    """Solve the deadline job's decision process by value iteration (see the module docstring).

    ``span_h``: submission to deadline; ``spare_h``: that span minus the work (the most slack the
    job ever has); ``overhead_h``: one restart; ``notice_h``: what an interruption costs beyond the
    restart; ``spot_share``: spot's price as a share of on-demand; ``hard_h``: slack no wait may go
    below (a move back to spot needs one restart and a notice more); ``step``: the grid, hours
    (coarser when the table would have more than :data:`MAX_CELLS` cells). Cached: jobs of one
    shape under one model share their tables.
    """
    if not (step > 0 and span_h > 0 and spare_h >= 0):
        raise ConfigError(
            f"a plan needs step > 0, span_h > 0 and spare_h >= 0 (hours), got step={step!r}, "
            f"span_h={span_h!r}, spare_h={spare_h!r}"
        )
    step, rows, grid = _grid(span_h, spare_h, overhead_h, step)
    lost = 1.0 - math.exp(-step / model.up_hours)  # spot taken within one step
    found = 1.0 - math.exp(-step / model.down_hours)  # spot back within one step
    hard_back = hard_h + overhead_h + notice_h
    feasible = np.where(grid >= -overhead_h, 0.0, _INFEASIBLE)
    on_spot, waiting, od_up, od_down = feasible.copy(), feasible.copy(), feasible.copy(), feasible.copy()
    wait = np.zeros((rows, len(grid)), dtype=np.bool_)
    back = np.zeros((rows, len(grid)), dtype=np.bool_)
    for i in range(1, rows):
        finished = (i * step - grid - overhead_h) <= 1e-9  # no work left at this time left and slack
        # on spot: pay spot for a step; taken, it loses the notice and waits
        n_spot = spot_share * step + (1 - lost) * on_spot + lost * _shifted(waiting, grid, notice_h)
        # on on-demand while spot is away: pay on-demand; spot may come back
        n_od_down = step + found * od_up + (1 - found) * od_down
        n_spot[finished] = n_od_down[finished] = 0.0
        # on on-demand while spot is there: stay, or move back (a restart on spot)
        stay = step + (1 - lost) * od_up + lost * od_down
        move = _shifted(n_spot, grid, overhead_h)
        go_back = (move < stay) & (grid > hard_back) & ~finished
        n_od_up = np.where(go_back, move, stay)
        n_od_up[finished] = 0.0
        # waiting: lose a step of slack; if spot returns, restart there
        back_on_spot = _shifted(on_spot, grid, step + overhead_h)
        keep = (1 - found) * _shifted(waiting, grid, step) + found * back_on_spot
        give_up = _shifted(n_od_down, grid, overhead_h)
        keep_waiting = (keep < give_up) & (grid > hard_h) & ~finished
        n_waiting = np.where(keep_waiting, keep, give_up)
        wait[i], back[i] = keep_waiting, go_back
        on_spot, waiting, od_up, od_down = n_spot, n_waiting, n_od_up, n_od_down
    start = float(np.interp(spare_h - overhead_h, grid, waiting))
    return Plan(step=step, slack0=float(grid[0]), wait=wait, back=back, expected_cost=start)


@attrs.frozen
class DeadlinePlanner(SlackGuard):
    """:class:`SlackGuard`'s reserves and running rule, with waits and returns from on-demand
    planned (see the module docstring).

    The job's :class:`SpotModel`: mean up time ``1 / hazard`` (:meth:`SlackGuard.hazard`: the
    times spot was taken from it per hour it held spot, with the guard's prior); mean down time
    its own waits for spot per wait that ended with spot found, with a prior of ``down_prior_hours``
    counted ``down_prior_waits`` times. Both are rounded to steps of ``bucket`` in their logarithm
    (so similar jobs share a plan); the grid is ``step`` hours; ``spot_share`` is spot's price
    as a share of on-demand's (the real AWS catalog's mean is 0.39).
    """

    spot_share: float = 0.4
    down_prior_hours: float = 1.0
    down_prior_waits: float = 2.0
    bucket: float = 0.3
    step: float = 0.04

    def __attrs_post_init__(self) -> None:
        checks = {
            "spot_share": 0 < self.spot_share <= 1,
            "down_prior_hours": self.down_prior_hours > 0,
            "down_prior_waits": self.down_prior_waits > 0,
            "bucket": self.bucket > 0,
            "step": self.step > 0,
        }
        bad = [f"{name}={getattr(self, name)!r}" for name, ok in checks.items() if not ok]
        if bad:
            raise ConfigError(
                f"DeadlinePlanner needs 0 < spot_share <= 1 and positive priors, bucket and step; "
                f"got {', '.join(bad)}"
            )

    def model(self, view: JobView) -> SpotModel:
        """The job's spot model, rounded to the bucket."""
        up = 1.0 / self.hazard(view)
        waited = view.spot_waited.total_seconds() / _HOUR_S
        prior = self.down_prior_hours * self.down_prior_waits
        down = (waited + prior) / (view.spot_found + self.down_prior_waits)

        def rounded(hours: float) -> float:
            return float(math.exp(round(math.log(hours) / self.bucket) * self.bucket))

        return SpotModel(up_hours=rounded(up), down_hours=rounded(down))

    def _off_spot(self, view: JobView, switch: timedelta, hard: timedelta) -> Mode:
        """Waiting or on on-demand, above the hard reserve: the plan decides, within the line."""
        if view.on_demand and view.slack <= hard + switch:  # the move must keep the reserve
            return Mode.ON_DEMAND
        if not view.on_demand and view.behind_the_line:
            return Mode.ON_DEMAND
        span = view.due_at - view.submitted_at
        overhead_h = view.restart_overhead.total_seconds() / _HOUR_S
        notice_h = view.notice.total_seconds() / _HOUR_S
        tables = plan(
            span_h=span.total_seconds() / _HOUR_S,
            spare_h=(span - view.work).total_seconds() / _HOUR_S,
            overhead_h=overhead_h,
            notice_h=notice_h,
            spot_share=self.spot_share,
            model=self.model(view),
            hard_h=self.restarts * (notice_h + overhead_h),
            step=self.step,
        )
        time_left_h = view.time_left.total_seconds() / _HOUR_S
        slack_h = view.slack.total_seconds() / _HOUR_S
        decide = tables.goes_back if view.on_demand else tables.waits
        return Mode.SPOT if decide(time_left_h, slack_h) else Mode.ON_DEMAND
