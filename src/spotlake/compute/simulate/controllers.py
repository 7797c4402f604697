"""Deadline-aware controllers: per job with a deadline and at every step, spot or on-demand now.

A :class:`Controller` sees a :class:`JobView` (the job's progress, deadline, restart cost and
what it has seen of spot so far) and answers a :class:`Mode`. The engine
(:mod:`spotlake.compute.simulate.engine`) asks it for every job with a deadline and moves the job
through the :class:`~spotlake.compute.jobs.JobManager` (``fallback`` to on-demand, ``unpin``
back to spot). Here: :class:`UniformProgress` (the rule published with the "Can't Be Late" spot
traces, from its description; docs/allocator.md) and :class:`SlackGuard` (ours: slack reserves
and the odds of an interruption).
:mod:`spotlake.compute.simulate.planner` builds on :class:`SlackGuard` with a planned wait.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Final, Protocol

import attrs

__all__ = ["Controller", "JobView", "Mode", "SlackGuard", "UniformProgress"]

_HOUR: Final = timedelta(hours=1)


class Mode(StrEnum):
    """Where a deadline-aware controller wants a job now."""

    SPOT = "spot"
    ON_DEMAND = "on-demand"


@attrs.frozen(kw_only=True)
class JobView:
    """What a controller sees of one job at one step (all times absolute)."""

    now: datetime
    submitted_at: datetime
    due_at: datetime
    work: timedelta
    done: timedelta
    restart_overhead: timedelta
    #: The work an interruption may lose at most (one checkpoint interval, or the work left to
    #: save when that is less; without periodic checkpoints, what an interruption now would lose:
    #: all the work not saved yet).
    loss_bound: timedelta
    #: How long the cloud warns before it takes a spot instance.
    notice: timedelta
    #: The job is on on-demand on purpose (the controller moved it there).
    on_demand: bool
    #: The job is waiting for capacity.
    waiting: bool
    #: Interruptions the job has had so far.
    interruptions: int = 0
    #: Whether the job saves its progress periodically (or continuously).
    checkpoints: bool = True
    #: How long the job has held spot capacity so far, and how often the cloud took it back.
    spot_held: timedelta = timedelta(0)
    spot_lost: int = 0
    #: How long the job has waited for spot capacity so far (not on on-demand), and how many of
    #: those waits ended with spot found (a wait given up for on-demand, or still going, does
    #: not count: it says only that spot stayed away at least that long).
    spot_waited: timedelta = timedelta(0)
    spot_found: int = 0
    #: The work done since the job last saved it: what a restart now would lose.
    unsaved: timedelta = timedelta(0)

    @property
    def remaining(self) -> timedelta:
        return max(self.work - self.done, timedelta(0))

    @property
    def time_left(self) -> timedelta:
        return self.due_at - self.now

    @property
    def slack(self) -> timedelta:
        """Time to spare if the job ran uninterrupted from now, after one restart."""
        return self.time_left - self.remaining - self.restart_overhead

    @property
    def behind_the_line(self) -> bool:
        """Progress is below the straight line from submission (no work) to deadline (all of it):
        Uniform Progress's line."""
        span = self.due_at - self.submitted_at
        return self.done < self.work * ((self.now - self.submitted_at) / span)


class Controller(Protocol):
    """Decides, per job with a deadline and at every step, where the job should be now."""

    def mode(self, view: JobView) -> Mode: ...


@attrs.frozen
class UniformProgress:
    """Keep progress on or above the straight line from submission (no work) to deadline (all of it).

    Behind the line and waiting for spot: on-demand. On on-demand and ahead of the line again:
    spot. Whatever the line says, on-demand once the slack left is below one restart.
    """

    def mode(self, view: JobView) -> Mode:
        if view.slack <= view.restart_overhead:
            return Mode.ON_DEMAND
        behind = view.behind_the_line
        if view.on_demand:
            return Mode.ON_DEMAND if behind else Mode.SPOT
        return Mode.ON_DEMAND if behind and view.waiting else Mode.SPOT


@attrs.frozen
class SlackGuard:
    """Spot whenever there is spot; wait for it while the slack allows; on-demand when it does not.

    A job's slack is the time it can still lose and finish by its deadline. Waiting for spot costs
    slack and nothing else, while an on-demand hour costs the most, so waiting is what saves; but
    every move onto new capacity also costs slack (the notice, the work since the last checkpoint
    and a restart overhead: one *switch*), and a job that spent all its slack waiting can no longer
    afford to go back to spot when it returns.

    *Waiting* for spot, the guard keeps a reserve: ``restarts`` switches at their worst, plus two
    typical switches (to on-demand and back, losing half a checkpoint interval) for every
    restart it expects in the rest of the work. It keeps waiting while its slack is above the
    reserve and it has used no more of the slack beyond the reserve than its pace allows
    (``front`` of it at once, the rest spread evenly up to the deadline, so one long outage early
    does not spend it all); otherwise it goes to on-demand.

    *On on-demand*, it goes back to spot (the allocator's revert) whenever the slack pays for the
    move and keeps the ``restarts`` switches; below that it stays.

    *Running on spot*, a job stays while its slack survives one interruption at its worst. Below
    that, a job that checkpoints weighs the risk: an interruption costs it the deadline only in
    the part of each checkpoint interval where the unsaved work exceeds what its slack can lose,
    so it stays while the chance of an interruption in that exposed time, over the rest of its
    work, is at most ``risk``; otherwise it moves to on-demand while the move is affordable (and
    always once even a loss-free interruption would be too much). A job without checkpoints never
    moves off running spot: the move would lose all its work.

    Rates are the job's own, each with a prior of ``prior_rate`` an hour over ``prior_hours``:
    the reserve counts the restarts it has had per hour since submission, the risk the times spot
    was taken from it per hour it held spot.
    """

    restarts: int = 2
    prior_rate: float = 0.1
    prior_hours: float = 4.0
    front: float = 0.3
    risk: float = 0.1

    def hazard(self, view: JobView) -> float:
        """Interruptions per hour on spot (the times spot was taken from the job over the hours
        it held spot, and the prior)."""
        held = view.spot_held / _HOUR
        return (view.spot_lost + self.prior_rate * self.prior_hours) / (held + self.prior_hours)

    def disruptions(self, view: JobView) -> float:
        """Restarts per hour since submission (every pause of the job's work, and the prior):
        what eats its slack as the clock runs."""
        elapsed = max((view.now - view.submitted_at) / _HOUR, 0.0)
        return (view.interruptions + self.prior_rate * self.prior_hours) / (elapsed + self.prior_hours)

    def mode(self, view: JobView) -> Mode:
        switch = view.notice + view.loss_bound + view.restart_overhead
        if not view.waiting and not view.on_demand:
            return self._running(view, switch)
        hard = switch * self.restarts
        if view.slack <= hard:
            return Mode.ON_DEMAND
        return self._off_spot(view, switch, hard)

    def _off_spot(self, view: JobView, switch: timedelta, hard: timedelta) -> Mode:
        """A job waiting for spot or on on-demand, with more slack than the hard reserve ``hard``
        (``restarts`` worst switches of ``switch``): wait, go, stay or return."""
        if view.on_demand:  # back to spot if the slack pays for the move and keeps the hard reserve
            return Mode.SPOT if view.slack > hard + switch else Mode.ON_DEMAND
        expected = self.disruptions(view) * (view.remaining / _HOUR)
        # an expected switch loses half a checkpoint interval on average
        typical = view.notice + view.loss_bound / 2 + view.restart_overhead
        reserve = hard + typical * (2 * expected)
        if view.slack <= reserve:
            return Mode.ON_DEMAND
        # pace the waiting: of the slack there is to wait with, ``front`` at once, the rest
        # spread evenly up to the deadline (all of it up front: front = 1)
        span = view.due_at - view.submitted_at
        budget = max(span - view.work - view.restart_overhead - reserve, timedelta(0))
        used = span - view.work - view.restart_overhead - view.slack
        share = min(self.front + (1 - self.front) * ((view.now - view.submitted_at) / span), 1.0)
        return Mode.SPOT if used < budget * share else Mode.ON_DEMAND

    def _running(self, view: JobView, switch: timedelta) -> Mode:
        """A job computing on spot: stay, or move to on-demand (a move is itself a restart)."""
        if not view.checkpoints or view.slack > switch:
            return Mode.SPOT
        lossless = view.notice + view.restart_overhead
        if view.slack <= lossless or view.loss_bound <= timedelta(0):
            return Mode.ON_DEMAND
        # the share of each checkpoint interval in which an interruption would cost the deadline
        exposed = min(max((view.loss_bound - (view.slack - lossless)) / view.loss_bound, 0.0), 1.0)
        hours = view.remaining / _HOUR * exposed
        chance = 1.0 - math.exp(-self.hazard(view) * hours)
        return Mode.SPOT if chance <= self.risk else Mode.ON_DEMAND
