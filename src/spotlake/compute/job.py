"""A job the :class:`~spotlake.compute.jobs.JobManager` runs: its states, its history and the
capacity it holds (the data; the manager does the moving)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Final

import attrs

from spotlake.compute.allocator import Placement
from spotlake.compute.values import CapacityRequest

__all__ = ["FINAL_STATES", "Job", "JobState", "Transition"]


class JobState(StrEnum):
    """Where a job stands: pending (waiting for capacity), running, hanging (ran too long: its
    instances are terminated and it is rescheduled), or one of the final states completed,
    failed and terminated (docs/allocator.md, "Jobs")."""

    PENDING = "pending"
    RUNNING = "running"
    HANGING = "hanging"
    COMPLETED = "completed"
    FAILED = "failed"
    TERMINATED = "terminated"


#: The states a job does not leave.
FINAL_STATES: Final = frozenset({JobState.COMPLETED, JobState.FAILED, JobState.TERMINATED})


@attrs.frozen(kw_only=True)
class Transition:
    at: datetime
    state: JobState
    reason: str


@attrs.define(kw_only=True, eq=False)
class Job:
    """A job and its capacity (mutable: the manager updates it; read it through the manager)."""

    id: str
    name: str
    request: CapacityRequest
    state: JobState = JobState.PENDING
    placements: list[Placement] = attrs.field(factory=list)
    #: Runs so far: the first, and one more each time a hang reschedules it.
    attempts: int = 0
    #: Interruptions survived.
    restarts: int = 0
    submitted_at: datetime
    started_at: datetime | None = None
    ended_at: datetime | None = None
    history: list[Transition] = attrs.field(factory=list)
    #: Whether the current wait for capacity was alerted (one alert per wait).
    alerted: bool = False
    #: When to retry a waiting job next (``None``: at the next tick).
    retry_at: datetime | None = None
    #: Moved to on-demand on purpose (:meth:`JobManager.fallback`): revert leaves it there.
    pinned_on_demand: bool = False
    #: When a running job lost capacity and started waiting (its runtime is paused meanwhile).
    paused_at: datetime | None = None
    #: Whether it has run before (a later start is a restart: the restart hook is called).
    ran: bool = False

    @property
    def units(self) -> float:
        return sum(p.units for p in self.placements)

    @property
    def missing(self) -> float:
        """Units the job still waits for."""
        return max(self.request.amount - self.units, 0.0)

    @property
    def instance_ids(self) -> tuple[str, ...]:
        return tuple(p.instance.id for p in self.placements)
