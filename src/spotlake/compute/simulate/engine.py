"""Run one contender on a trace and a workload: the real allocator and job manager, simulated time.

:func:`simulate` builds, for one :class:`~spotlake.compute.simulate.contenders.Contender`, the same
objects a service would (an :class:`~spotlake.compute.allocator.Allocator` with the contender's
policy and health limits, a :class:`~spotlake.compute.jobs.JobManager`), but on a
:class:`~spotlake.compute.simulate.launcher.SimLauncher` and a
:class:`~spotlake.clock.FakeClock`, with the trace as offer source (:class:`TraceOffers`). It then
moves time from event to event (a job's submission, a tick of the trace, an interruption notice or
take, a job finishing its work) and at each one does what the service's loop does: hand the cloud's
events to the manager (``poll``), let the manager retry and revert (``tick``), and, for
deadline-aware contenders, ask the controller where each job with a deadline should be
(``fallback`` to on-demand, ``unpin`` back to spot) and, for a contender with a respot rule,
whether a job it keeps running on spot should move to cheaper spot (``respot``). Nothing is
decided here that the library does not decide in production.

Work is accounted per job with :class:`~spotlake.compute.simulate.workload.Progress`: a job
computes while the manager has it Running on a fixed set of instances; each new set (a start, a
replacement after an interruption, a move to or from on-demand or to cheaper spot) is a restart
that pays the job's restart overhead and falls back to its last checkpoint (a job's
``interruptions`` count every such restart that lost work; the run's count the instances the
cloud took). A job is completed through the manager
when its work is done. The run ends when every job has ended or the trace does; what is billed is
what the launcher billed by then.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Final

import attrs
import numpy as np

from spotlake.clock import FakeClock
from spotlake.compute.allocator import Allocator
from spotlake.compute.events import InterruptionWarning
from spotlake.compute.health import HealthRegistry
from spotlake.compute.jobs import Job, JobManager, JobState
from spotlake.compute.offers.base import OfferSet
from spotlake.compute.simulate.contenders import Contender
from spotlake.compute.simulate.controllers import JobView, Mode
from spotlake.compute.simulate.launcher import SimLauncher
from spotlake.compute.simulate.trace import Trace
from spotlake.compute.simulate.workload import CONTINUOUS, Progress, SimJob, Workload
from spotlake.compute.values import CapacityType, Offer
from spotlake.errors import ConfigError

__all__ = ["JobOutcome", "RunResult", "TraceOffers", "simulate"]

_FINAL: Final = frozenset({JobState.COMPLETED, JobState.FAILED, JobState.TERMINATED})
_HOUR: Final = 3600.0
#: How often a deadline-aware controller looks at the jobs waiting for capacity (their slack
#: shrinks while they wait), besides every event and trace tick.
CONTROL_EVERY: Final = timedelta(minutes=1)


class TraceOffers:
    """The trace as an offer source: each tick's prices and scores, observed at the tick's start
    (built once per tick). ``pools`` keeps only the cheapest that many spot pools of the trace."""

    def __init__(self, trace: Trace, clock: FakeClock, *, pools: int | None = None) -> None:
        self._trace = trace
        self._clock = clock
        self._tick = -1
        self._set = OfferSet(offers=(), source=f"trace {trace.name}")
        self._keep: frozenset[object] | None = None
        if pools is not None:
            if pools < 1:
                raise ConfigError(f"a contender uses at least one spot pool, got {pools}")
            mean = sorted(trace.spot, key=lambda p: (float(np.mean(trace.spot[p].price)), str(p)))
            self._keep = frozenset(mean[:pools])

    def offers(self) -> OfferSet:
        tick = self._trace.tick(self._clock.now())
        if tick != self._tick:
            items: list[Offer] = self._trace.offers(self._clock.now())
            if self._keep is not None:
                items = [
                    o for o in items if o.capacity_type is CapacityType.ON_DEMAND or o.pool in self._keep
                ]
            self._set = OfferSet(offers=tuple(items), source=f"trace {self._trace.name}")
            self._tick = tick
        return self._set


@attrs.frozen(kw_only=True)
class JobOutcome:
    """How one job of the workload fared."""

    name: str
    state: JobState
    submitted_at: datetime
    due_at: datetime | None
    finished_at: datetime | None
    work_lost: timedelta
    #: Restarts that fell back to a checkpoint: spot taken, and moves (to or from on-demand, or
    #: to cheaper spot).
    interruptions: int
    restarts: int
    #: When the run ended (a deadline after it is neither met nor missed: the job is unfinished).
    run_end: datetime

    @property
    def missed(self) -> bool:
        """Finished after its deadline, or not finished when the deadline had passed."""
        if self.due_at is None:
            return False
        if self.finished_at is None:
            return self.due_at <= self.run_end
        return self.finished_at > self.due_at


@attrs.frozen(kw_only=True)
class RunResult:
    """One contender's run: what it cost and how the jobs fared."""

    contender: str
    trace: str
    workload: str
    start: datetime
    end: datetime
    cost: float
    spot_hours: float
    on_demand_hours: float
    billed_seconds: float
    lifetime_seconds: float
    #: Spot instances the cloud took back.
    interruptions: int
    #: Instances launched on-demand for units asked as spot.
    fallbacks: int
    #: Running jobs moved from spot to cheaper spot (:meth:`JobManager.respot`).
    respots: int
    jobs: tuple[JobOutcome, ...]
    ledger: JobManager = attrs.field(repr=False)

    @property
    def misses(self) -> int:
        return sum(1 for j in self.jobs if j.missed)

    @property
    def completed(self) -> int:
        return sum(1 for j in self.jobs if j.state is JobState.COMPLETED)

    @property
    def unfinished(self) -> int:
        return sum(1 for j in self.jobs if j.state not in _FINAL)

    @property
    def spot_share(self) -> float:
        total = self.spot_hours + self.on_demand_hours
        return self.spot_hours / total if total else 0.0


@contextmanager
def _quiet() -> Iterator[None]:
    """The allocator and job manager log every fallback and wait: thousands in a simulated week."""
    names = ("spotlake.compute.allocator", "spotlake.compute.jobs", "spotlake.compute.revert")
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


class _SpotRecord:
    """One job's time on spot so far and how often spot was taken from it; its time waiting for
    spot and how often spot was found."""

    __slots__ = ("found", "since", "taken", "total", "waited", "waiting_since")

    def __init__(self) -> None:
        self.since: datetime | None = None
        self.total = timedelta(0)
        self.taken = 0
        self.waiting_since: datetime | None = None
        self.waited = timedelta(0)
        self.found = 0

    def stop(self, now: datetime) -> None:
        if self.since is not None:
            self.total += now - self.since
            self.since = None

    def held(self, now: datetime) -> timedelta:
        return self.total + (now - self.since if self.since is not None else timedelta(0))

    def wait(self, now: datetime, *, waiting: bool, on_spot: bool) -> None:
        """The job waits for spot now, or not (``on_spot``: it computes on spot)."""
        if waiting and self.waiting_since is None:
            self.waiting_since = now
        elif not waiting and self.waiting_since is not None:
            self.waited += now - self.waiting_since
            self.waiting_since = None
            self.found += on_spot

    def spent_waiting(self, now: datetime) -> timedelta:
        return self.waited + (now - self.waiting_since if self.waiting_since is not None else timedelta(0))


class _Run:
    """One contender on one trace and workload (see the module docstring)."""

    def __init__(self, trace: Trace, workload: Workload, contender: Contender) -> None:
        self.trace = trace
        self.workload = workload
        self.contender = contender
        self.clock = FakeClock(trace.start)
        self._allocations = itertools.count(1)
        self.launcher = SimLauncher(trace, clock=self.clock)
        allocator = Allocator(
            self.launcher,
            clock=self.clock,
            policy=contender.policy,
            health=HealthRegistry(clock=self.clock, limits=contender.limits),
            ids=lambda: f"alloc-{next(self._allocations):06d}",  # a run is identical to the byte
        )
        self.jobs = JobManager(
            allocator,
            TraceOffers(trace, self.clock, pools=contender.pools),
            clock=self.clock,
            hang_factor=1000.0,  # the simulated jobs do not hang
            revert=contender.revert,
            on_demand_fallback=contender.on_demand_fallback,
        )
        self.pending = list(workload.jobs)  # by submission time
        self.sim: dict[str, SimJob] = {}
        self.progress: dict[str, Progress] = {}
        self.on: dict[str, tuple[str, ...]] = {}  # job id -> the instances it computes on
        self.finished: dict[str, datetime] = {}
        self.interruptions = 0
        self.respots = 0
        self.spot: dict[str, _SpotRecord] = {}  # job id -> its time on spot and spot lost

    # --- the loop ----------------------------------------------------------------------------------

    def run(self, progress: Callable[[datetime], None] | None) -> RunResult:
        end = self.trace.end
        while True:
            now = self.clock.now()
            self._submit(now)
            self._events()
            self._complete(now)
            self._control(now)
            self.jobs.tick()
            self._sync(now)
            if progress is not None:
                progress(now)
            if not self.pending and all(j.state in _FINAL for j in self.jobs.list()):
                break
            nxt = self._next(now)
            if nxt is None or nxt >= end:
                self.clock.set(end)
                self._events()
                self._complete(end)
                self._sync(end)
                break
            self.clock.set(nxt)
        return self._result()

    def _next(self, now: datetime) -> datetime | None:
        times: list[datetime] = []
        if self.pending:
            times.append(self.trace.start + self.pending[0].submit_at)
        nxt = self.launcher.next_event_at()
        if nxt is not None:
            times.append(nxt)
        for job_id, p in self.progress.items():
            done = p.done_at(now) if p.running else None
            if done is not None and job_id not in self.finished:
                times.append(done)
        active = [j for j in self.jobs.list() if j.state not in _FINAL]
        if active:  # prices, scores and health change with the trace's ticks
            tick = self.trace.tick(now)
            times.append(self.trace.tick_start(tick + 1))
        waiting = [j for j in active if j.state is JobState.PENDING]
        # a waiting job is retried when the health registry lets capacity through again, and a
        # controller watches its slack shrink (as a service's loop would, every CONTROL_EVERY)
        times.extend(j.retry_at for j in waiting if j.retry_at is not None)
        if waiting and self.contender.controller is not None:
            times.append(now + CONTROL_EVERY)
        later = [t for t in times if t > now]
        return min(later) if later else None

    # --- steps ---------------------------------------------------------------------------------------

    def _submit(self, now: datetime) -> None:
        while self.pending and self.trace.start + self.pending[0].submit_at <= now:
            sim = self.pending.pop(0)
            job = self.jobs.submit(sim.request(start=self.trace.start), name=sim.name)
            self.sim[job.id] = sim
            self.progress[job.id] = Progress(sim)
            self.spot[job.id] = _SpotRecord()

    def _events(self) -> None:
        batch = self.jobs.poll(self.launcher)
        taken = {e.instance_id for e in batch.events if isinstance(e, InterruptionWarning)}
        self.interruptions += len(taken)
        if taken:
            for job_id, ids in self.on.items():
                if taken.intersection(ids):
                    self.spot[job_id].taken += 1

    def _complete(self, now: datetime) -> None:
        for job_id, p in self.progress.items():
            if job_id in self.finished or not p.running:
                continue
            done = p.done_at(now)
            if done is not None and done <= now:
                p.pause(done, lost=False)
                self.finished[job_id] = done
                self.spot[job_id].stop(done)
                self.on.pop(job_id, None)
                if self.jobs.get(job_id).state not in _FINAL:
                    self.jobs.complete(job_id)

    def _control(self, now: datetime) -> None:
        controller = self.contender.controller
        if controller is None:
            return
        for job in self.jobs.list():
            if job.state not in (JobState.RUNNING, JobState.PENDING) or job.id in self.finished:
                continue
            view = self._view(job, now)
            if view is None:
                continue
            mode = controller.mode(view)
            if mode is Mode.ON_DEMAND and not job.pinned_on_demand:
                self.jobs.fallback(job.id, "the deadline needs on-demand")
            elif mode is Mode.SPOT and job.pinned_on_demand:
                self.jobs.unpin(job.id)
            elif mode is Mode.SPOT and job.state is JobState.RUNNING and self.contender.respot is not None:
                saving = self.contender.respot.saving(view)
                if saving is not None and self.jobs.respot(job.id, saving=saving):
                    self.respots += 1

    def _view(self, job: Job, now: datetime) -> JobView | None:
        return self._view_of(
            self.sim[job.id],
            self.progress[job.id],
            self.spot[job.id],
            now,
            waiting=job.state is JobState.PENDING,
            on_demand=job.pinned_on_demand,
        )

    def _view_of(
        self,
        sim: SimJob,
        progress: Progress,
        record: _SpotRecord,
        now: datetime,
        *,
        waiting: bool,
        on_demand: bool,
    ) -> JobView | None:
        """What a controller sees of a job (``None``: no deadline it could still meet; jobs
        without a deadline are due when the trace ends)."""
        submitted = self.trace.start + sim.submit_at
        due = self.trace.start + sim.due_at if sim.due_at is not None else self.trace.end
        if due <= submitted + sim.work:
            return None
        every = sim.checkpoint_every
        saved = progress.saved(now)
        if every is None:  # no periodic checkpoints: an interruption now loses all not saved
            loss = progress.work_done(now) - saved
        elif every == CONTINUOUS:
            loss = timedelta(0)
        else:  # one interval, or less when less work than that is left to save
            loss = min(every, max(sim.work - saved, timedelta(0)))
        return JobView(
            now=now,
            submitted_at=submitted,
            due_at=due,
            work=sim.work,
            done=progress.work_done(now),
            restart_overhead=sim.restart_overhead,
            loss_bound=loss,
            notice=self.trace.notice,
            on_demand=on_demand,
            waiting=waiting,
            interruptions=progress.interruptions,
            checkpoints=every is not None,
            spot_held=record.held(now),
            spot_lost=record.taken,
            spot_waited=record.spent_waiting(now),
            spot_found=record.found,
            unsaved=progress.work_done(now) - saved,
        )

    def _sync(self, now: datetime) -> None:
        """Start, stop and restart each job's work as the manager placed it, and keep its record of
        time on spot and waiting for spot (what a controller's view reports)."""
        for job in self.jobs.list():
            p = self.progress.get(job.id)
            if p is None or job.id in self.finished:
                continue
            computing = job.state is JobState.RUNNING
            ids = job.instance_ids if computing else ()
            record = self.spot[job.id]
            if p.running and ids != self.on.get(job.id):
                p.pause(now, lost=True)  # taken, replaced or moved: back to the last checkpoint
                self.on.pop(job.id, None)
                record.stop(now)
            on_spot = computing and any(
                pl.instance.capacity_type is CapacityType.SPOT for pl in job.placements
            )
            if computing and not p.running:
                p.run(now)
                self.on[job.id] = ids
                if on_spot:
                    record.since = now
            waiting = job.state is JobState.PENDING and not job.pinned_on_demand
            record.wait(now, waiting=waiting, on_spot=on_spot)

    # --- the result ------------------------------------------------------------------------------

    def _result(self) -> RunResult:
        end = self.clock.now()
        bills = self.launcher.bills
        spot = sum(b.seconds for b in bills if b.capacity_type is CapacityType.SPOT)
        on_demand = sum(b.seconds for b in bills if b.capacity_type is CapacityType.ON_DEMAND)
        lifetimes = sum(((b.end or end) - b.start).total_seconds() for b in bills)
        outcomes = []
        for job in self.jobs.list():
            sim, p = self.sim[job.id], self.progress[job.id]
            outcomes.append(
                JobOutcome(
                    name=sim.name,
                    state=job.state,
                    submitted_at=self.trace.start + sim.submit_at,
                    due_at=None if sim.due_at is None else self.trace.start + sim.due_at,
                    finished_at=self.finished.get(job.id),
                    work_lost=p.lost_total,
                    interruptions=p.interruptions,
                    restarts=max(p.starts - 1, 0),
                    run_end=end,
                )
            )
        fallbacks = sum(1 for e in self.jobs.ledger.entries() if e.requested is not e.realised)
        return RunResult(
            contender=self.contender.name,
            trace=self.trace.name,
            workload=self.workload.name,
            start=self.trace.start,
            end=end,
            cost=self.launcher.billed_cost(end),
            spot_hours=spot / _HOUR,
            on_demand_hours=on_demand / _HOUR,
            billed_seconds=sum(b.seconds for b in bills),
            lifetime_seconds=lifetimes,
            interruptions=self.interruptions,
            fallbacks=fallbacks,
            respots=self.respots,
            jobs=tuple(outcomes),
            ledger=self.jobs,
        )


def simulate(
    trace: Trace,
    workload: Workload,
    contender: Contender,
    *,
    progress: Callable[[datetime], None] | None = None,
) -> RunResult:
    """Run ``contender`` on ``trace`` and ``workload`` (see the module docstring); deterministic.

    ``progress`` is called with the simulated time after every step (for a progress bar)."""
    late = [j.name for j in workload.jobs if trace.start + j.submit_at >= trace.end]
    if late:
        raise ConfigError(
            f"{len(late)} job(s) of workload {workload.name} are submitted after trace {trace.name} "
            f"ends ({trace.end:%Y-%m-%d %H:%M} UTC), e.g. {late[0]}: shorten the workload's span"
        )
    with _quiet():
        return _Run(trace, workload, contender).run(progress)
