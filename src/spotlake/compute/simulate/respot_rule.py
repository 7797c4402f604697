"""When moving a job running on spot to cheaper spot pays: the simulator's rule for
:meth:`~spotlake.compute.jobs.JobManager.respot` (which does the move, make before break).

Spot prices drift after a job launched, so the pool that was cheapest then may not be now; a move
restarts the job, so it pays only when the saving over the work left covers the restart.
"""

from __future__ import annotations

from datetime import timedelta

import attrs

from spotlake.compute.simulate.controllers import JobView
from spotlake.errors import ConfigError

__all__ = ["RespotRule"]


@attrs.frozen
class RespotRule:
    """When moving a job running on spot to cheaper spot pays (spot to spot; the engine calls
    :meth:`~spotlake.compute.jobs.JobManager.respot` with the saving this asks for).

    A move restarts the job: it costs its restart overhead and its unsaved work, on the new
    capacity, and saves the price difference over the work left. It pays when the new price
    times (work left + that cost) is at most ``1 - margin`` of the current price times the work
    left; :meth:`saving` turns that into the least saving to ask for. No move when less than
    ``min_remaining`` of work is left, when more than ``max_unsaved`` is unsaved (a job that
    checkpoints moves just after a checkpoint; one that never does, only in its first minutes),
    or when the slack after the move's cost would not keep ``restarts`` worst switches (the
    notice, the work an interruption may lose and a restart overhead each).
    """

    margin: float = 0.05
    min_remaining: timedelta = timedelta(minutes=30)
    max_unsaved: timedelta = timedelta(minutes=3)
    restarts: int = 2

    def __attrs_post_init__(self) -> None:
        ok = (
            0 <= self.margin < 1
            and self.min_remaining >= timedelta(0)
            and self.max_unsaved >= timedelta(0)
            and self.restarts >= 0
        )
        if not ok:
            raise ConfigError(
                "RespotRule needs 0 <= margin < 1, min_remaining and max_unsaved >= 0 and restarts "
                f">= 0; got margin={self.margin!r}, min_remaining={self.min_remaining}, "
                f"max_unsaved={self.max_unsaved}, restarts={self.restarts!r}"
            )

    def saving(self, view: JobView) -> float | None:
        """The least saving on the job's hourly price that pays for a move now (``None``: none)."""
        remaining = view.remaining
        if remaining < self.min_remaining or view.unsaved > self.max_unsaved:
            return None
        cost = view.restart_overhead + view.unsaved
        switch = view.notice + view.loss_bound + view.restart_overhead
        if view.slack - cost <= switch * self.restarts:
            return None
        return 1.0 - (1.0 - self.margin) * (remaining / (remaining + cost))
