"""Jobs on the allocated capacity: their lifecycle, interruptions, hangs and waiting for capacity.

The :class:`JobManager` keeps the design's job API (``submit``, ``terminate``, ``get``, ``list``,
``allocate``, ``request_spot``, ``fallback``, ``health``), plus ``unpin`` and ``respot``, over an
:class:`~spotlake.compute.allocator.Allocator`::

    Pending -> Running -> Completed | Failed | Terminated
    Running -> Hanging -> (terminated and rescheduled) -> Pending -> Running ...
    Running --interruption notice--> checkpoint hook -> replacement -> Running (restarted)
    Pending (no capacity) --alert once, wait--> retried when a block or breaker lets capacity through

* **Interruptions** come as typed events (:mod:`spotlake.compute.events`: from an SQS queue fed
  by EventBridge, or pushed with :meth:`JobManager.handle`). The job's checkpoint hook is called
  with the notice's deadline; the instance's end is recorded (ledger, health registry: early
  interruptions count against the pool); the replacement is chosen by the policy like any
  allocation; the job's restart hook is called on the new placements.
* **Hanging**: a job running longer than ``hang_factor`` (2.5, the design's "2-3x") times its
  usual runtime (the request's ``expected_runtime``) is Hanging: its instances are terminated
  and it is rescheduled, up to ``max_attempts`` runs, after which it Failed.
* **No capacity**: a job the allocator cannot place waits (Pending) with what it could get; one
  alert goes to the notifier per wait; :meth:`JobManager.tick` retries it once the health
  registry says something changed (a block ended, a breaker half-opened).
* **Revert**: :meth:`JobManager.tick` also moves fallen-back on-demand instances back to spot,
  one at a time after the cooldown (:mod:`spotlake.compute.revert`).
* **Respot**: :meth:`JobManager.respot` moves a running job from spot to cheaper spot when the
  caller says how much saving pays for its restart (:mod:`spotlake.compute.respot`).
* Every move of a running job onto new instances (``fallback``, revert, ``respot``) calls its
  restart hook, as a replacement after an interruption does.

Everything runs on the injected clock; call :meth:`JobManager.tick` (and :meth:`JobManager.poll`
with an event source) from the service's loop.
"""

from __future__ import annotations

import builtins
import itertools
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import Protocol

import attrs

from spotlake.clock import Clock, ensure_utc
from spotlake.compute.allocator import Allocation, AllocationError, Allocator, Placement
from spotlake.compute.events import (
    Event,
    EventBatch,
    InstanceState,
    InterruptionWarning,
    RebalanceRecommendation,
    StateChange,
)
from spotlake.compute.fill import EPS
from spotlake.compute.health import Block, BreakerState
from spotlake.compute.job import FINAL_STATES as _FINAL
from spotlake.compute.job import Job, JobState, Transition
from spotlake.compute.ledger import CostLedger, EndReason
from spotlake.compute.offers.base import OfferSource
from spotlake.compute.policy.mix import ON_DEMAND_ONLY, SPOT_FIRST
from spotlake.compute.policy.presets import Policy
from spotlake.compute.respot import plan_respot
from spotlake.compute.revert import Reverter
from spotlake.compute.values import CapacityRequest, CapacityType, Offer, TaskClass
from spotlake.errors import ConfigError
from spotlake.notify import Notifier

__all__ = ["HealthReport", "Job", "JobManager", "JobState", "Transition"]

log = logging.getLogger(__name__)


#: Instance states that mean the capacity is gone (a stop is not: the instance may start again).
_GONE = frozenset({InstanceState.SHUTTING_DOWN, InstanceState.TERMINATED})


class CheckpointHook(Protocol):
    def __call__(self, job: Job, deadline: datetime) -> None: ...


@attrs.frozen(kw_only=True)
class HealthReport:
    """What the allocator's health registry holds now."""

    breakers: dict[CapacityType, BreakerState]
    blocks: tuple[Block, ...]
    next_change: datetime | None


class JobManager:
    """Jobs over an allocator (see the module docstring). Thread-safe."""

    def __init__(
        self,
        allocator: Allocator,
        offers: OfferSource,
        *,
        clock: Clock,
        ledger: CostLedger | None = None,
        notifier: Notifier | None = None,
        checkpoint: CheckpointHook | None = None,
        restart: Callable[[Job], None] | None = None,
        hang_factor: float = 2.5,
        max_attempts: int = 3,
        revert: bool = True,
        on_demand_fallback: bool = True,
    ) -> None:
        if hang_factor <= 1:
            raise ConfigError(
                f"hang_factor must be above 1 (a multiple of the usual runtime), got {hang_factor}"
            )
        if max_attempts < 1:
            raise ConfigError(f"max_attempts must be at least 1, got {max_attempts}")
        self.allocator = allocator
        self.offers = offers
        self.ledger = ledger or CostLedger(clock=clock)
        self._clock = clock
        self._notifier = notifier
        self._checkpoint = checkpoint
        self._restart = restart
        self.hang_factor = hang_factor
        self.max_attempts = max_attempts
        #: Whether a job's spot units that find no spot go to on-demand (else the job waits for
        #: spot: an ASG-like fixed mix, or a deadline-aware controller that decides itself).
        self.on_demand_fallback = on_demand_fallback
        self._reverter = Reverter(allocator, ledger=self.ledger) if revert else None
        self._jobs: dict[str, Job] = {}
        self._by_instance: dict[str, str] = {}
        self._ids = itertools.count(1)
        self._lock = threading.RLock()

    # --- the job API -----------------------------------------------------------------------------

    def submit(self, request: CapacityRequest, *, name: str = "", on_demand: bool = False) -> Job:
        """A new job; it is allocated at once, or waits for capacity. ``on_demand``: it starts
        on on-demand, as if moved there with :meth:`fallback` (until :meth:`unpin`)."""
        with self._lock:
            job = Job(
                id=f"job-{next(self._ids)}",
                name=name or request.name,
                request=request,
                submitted_at=self._now(),
                attempts=1,
                pinned_on_demand=on_demand,
            )
            self._jobs[job.id] = job
            self._move(job, JobState.PENDING, "submitted")
            try:
                self._fill(job)
            except Exception as exc:
                self._unsubmit(job, exc)
                raise
            return job

    def get(self, job_id: str) -> Job:
        with self._lock:
            try:
                return self._jobs[job_id]
            except KeyError:
                raise ConfigError(f"no job {job_id!r}; the manager knows {len(self._jobs)} job(s)") from None

    def list(self, state: JobState | None = None) -> list[Job]:
        with self._lock:
            return [j for j in self._jobs.values() if state is None or j.state is state]

    def terminate(self, job_id: str, reason: str = "terminated by the caller") -> Job:
        return self._finish(job_id, JobState.TERMINATED, EndReason.TERMINATED, reason)

    def complete(self, job_id: str) -> Job:
        return self._finish(job_id, JobState.COMPLETED, EndReason.COMPLETED, "completed")

    def fail(self, job_id: str, reason: str) -> Job:
        return self._finish(job_id, JobState.FAILED, EndReason.FAILED, reason)

    def allocate(self, request: CapacityRequest, *, policy: Policy | None = None) -> Allocation:
        """Capacity without a job (the seed's ``resources/allocate``): spot first with fallback,
        recorded in the ledger; give it back with :meth:`release`."""
        with self._lock:
            try:
                allocation = self.allocator.allocate(self._offers(), request, policy=policy)
            except AllocationError as exc:
                if exc.partial is not None:  # still running: in the ledger, named by the error
                    self.ledger.record(exc.partial)
                raise
            self.ledger.record(allocation)
            return allocation

    def request_spot(self, request: CapacityRequest) -> Allocation:
        """Spot only, no fallback (the seed's ``resources/spot/request``): what spot could not
        give stays unfilled in the allocation. Critical work is a :class:`ConfigError`: it is
        never spot."""
        if request.task_class is TaskClass.CRITICAL:
            raise ConfigError(
                "critical work is never placed on spot: allocate it with allocate() (on-demand)"
            )
        with self._lock:
            spot_only = self.allocator.policy.only(SPOT_FIRST)
            allocation = self.allocator.allocate(
                self._offers(), request, policy=spot_only, on_demand_fallback=False
            )
            self.ledger.record(allocation)
            return allocation

    def release(self, allocation: Allocation, reason: EndReason = EndReason.COMPLETED) -> None:
        """Terminate what :meth:`allocate` or :meth:`request_spot` launched and close its ledger entries."""
        with self._lock:
            ids = [i.id for i in allocation.instances]
            if ids:
                self.allocator.launcher.terminate(ids)
            for instance_id in ids:
                self.ledger.record_end(instance_id, reason)

    def fallback(self, job_id: str, reason: str = "moved to on-demand by the caller") -> Job:
        """Move a job to on-demand now (the seed's ``resources/fallback``). Its spot instances are
        each replaced on-demand first, then terminated (make before break); one that finds no
        on-demand capacity stays on spot. A waiting job also asks on-demand for what it misses.
        The job stays on-demand, replacements included (revert leaves it alone), until
        :meth:`unpin`. If a call fails part-way the error is raised, every instance
        launched stays with the job, and the moves already made keep the job on-demand."""
        with self._lock:
            job = self.get(job_id)
            if job.state not in (JobState.RUNNING, JobState.PENDING):
                raise ConfigError(f"job {job_id} is {job.state}; only a running or waiting job can move")
            moved = 0
            done = False
            try:
                waiting = job.state is JobState.PENDING
                if waiting:
                    job.pinned_on_demand = True
                for _ in self._moves_to_on_demand(job):
                    moved += 1
                if waiting:
                    self._fill(job)
                done = True
            finally:
                job.pinned_on_demand = job.pinned_on_demand or done or moved > 0
                outcome = f"{moved} moved" if done else f"{moved} moved, then failed"
                job.history.append(Transition(at=self._now(), state=job.state, reason=f"{reason}: {outcome}"))
            if moved and job.state is JobState.RUNNING:
                self._restarted(job)
            return job

    def unpin(self, job_id: str) -> Job:
        """Let a job moved to on-demand with :meth:`fallback` use spot again: its mix applies to
        later replacements, and revert may move its fallen-back instances back to spot."""
        with self._lock:
            job = self.get(job_id)
            if job.pinned_on_demand:
                job.pinned_on_demand = False
                job.history.append(Transition(at=self._now(), state=job.state, reason="spot allowed again"))
            return job

    def respot(self, job_id: str, *, saving: float) -> bool:
        """Move a running job that is all on spot to the spot capacity its policy ranks first now,
        if that costs at most ``1 - saving`` of what its instances cost now
        (:mod:`spotlake.compute.respot`): the whole request is launched on spot (no fallback), and
        only when it replaces the job within that price are the old instances terminated (make
        before break); a replacement that falls short is given back. The job's restart hook is
        called on its new instances. Whether the saving pays for the restart is the caller's to
        judge. Returns whether the job moved. If a call fails
        part-way the error is raised and every instance still running stays with the job."""
        with self._lock:
            job = self.get(job_id)
            if job.state is not JobState.RUNNING or job.pinned_on_demand:
                return False
            plan = plan_respot(self.allocator, self._offers(), job.placements, job.request, saving=saving)
            if plan is None:
                return False
            got = self._launched(
                job,
                lambda: self.allocator.carry_out(plan.decision, job=job.id, on_demand_fallback=False),
                as_spot=True,
                adopt=False,
            )
            if not plan.accepts(got):
                self._give_back_or_keep(job, got)
                return False
            old = list(job.placements)
            try:
                self._release(job, old, EndReason.REPLACED, terminate=True)
            except Exception:
                self._give_back_or_keep(job, got)  # the old instances still run: no move
                raise
            self._adopt(job, got)
            job.history.append(
                Transition(
                    at=self._now(),
                    state=job.state,
                    reason=f"moved to cheaper spot: {plan.price_now:.4f} -> "
                    f"{sum(i.price for i in got.instances):.4f} USD/h ({got.id})",
                )
            )
            self._restarted(job)
            return True

    def _restarted(self, job: Job) -> None:
        """A running job was moved onto new instances on purpose (fallback, revert, respot): its
        restart hook starts the work there. A voluntary move has no notice, so no checkpoint hook
        is called: save first, or move just after a save (as the simulator's respot rule does)."""
        if self._restart is not None:
            self._restart(job)

    def _moves_to_on_demand(self, job: Job) -> Iterator[Placement]:
        """Replace each of a running job's spot instances on-demand (make before break),
        yielding each one moved (so a caller counts the moves made before a failure)."""
        on_demand = self.allocator.policy.only(ON_DEMAND_ONLY)
        for old in [p for p in job.placements if p.instance.capacity_type is CapacityType.SPOT]:
            got = self._allocate(
                job, job.request.with_amount(old.units), on_demand, as_spot=True, adopt=False
            )
            if not got.complete:
                self._give_back_or_keep(job, got)
                continue
            try:
                self._release(job, [old], EndReason.REPLACED, terminate=True)
            except Exception:
                self._give_back_or_keep(job, got)  # the spot instance still runs: no move
                raise
            self._adopt(job, got)
            yield old

    def _give_back_or_keep(self, job: Job, allocation: Allocation) -> None:
        """Give back an allocation that is no use; if even that fails, the job holds it (it runs,
        and must have an owner) and the error is raised."""
        try:
            self._give_back(allocation, EndReason.TERMINATED)
        except Exception:
            self._adopt(job, allocation)
            raise

    def health(self) -> HealthReport:
        h = self.allocator.health
        return HealthReport(
            breakers={t: h.breaker(t) for t in CapacityType},
            blocks=h.blocks(),
            next_change=h.next_change(),
        )

    # --- events ----------------------------------------------------------------------------------

    def poll(self, source: _EventSource) -> EventBatch:
        """Handle what an event source (e.g. :class:`~spotlake.compute.events.SqsEvents`) has now.
        One event's failure is logged and does not stop the others (the job it concerned waits
        for capacity and is retried by :meth:`tick`)."""
        batch = source.poll()
        for event in batch.events:
            try:
                self.handle(event)
            except Exception as exc:
                log.error(
                    "handling %s for %s failed: %s: %s",
                    type(event).__name__,
                    event.instance_id,
                    type(exc).__name__,
                    exc,
                )
        return batch

    def handle(self, event: Event) -> None:
        """React to one instance event (interruption warning, rebalance hint, state change)."""
        with self._lock:
            job_id = self._by_instance.get(event.instance_id)
            if job_id is None:
                return  # not ours, or already handled
            job = self._jobs[job_id]
            placement = next((p for p in job.placements if p.instance.id == event.instance_id), None)
            if placement is None or job.state in _FINAL:
                return
            if isinstance(event, InterruptionWarning):
                self._lost(job, placement, deadline=event.deadline, why="interruption notice")
            elif isinstance(event, StateChange) and event.state in _GONE:
                self._lost(job, placement, deadline=ensure_utc(event.at), why=f"instance {event.state}")
            elif isinstance(event, RebalanceRecommendation):
                job.history.append(
                    Transition(
                        at=self._now(),
                        state=job.state,
                        reason=f"rebalance recommendation for {event.instance_id}",
                    )
                )

    # --- the loop --------------------------------------------------------------------------------

    def tick(self) -> None:
        """Detect hangs, retry jobs waiting for capacity, move one instance back to spot. A job
        whose step fails is logged and retried next tick; the others go on."""
        with self._lock:
            now = self._now()
            for job in self.list(JobState.RUNNING):
                if self._hanging(job, now):
                    self._guarded(job, lambda j: self._hang(j, now))
            for job in self.list(JobState.PENDING):
                if job.retry_at is None or now >= job.retry_at:
                    self._guarded(job, self._fill)
            if self._reverter is not None:
                for job in self.list(JobState.RUNNING):
                    try:
                        moved = self._revert(job)
                    except Exception as exc:
                        log.error(
                            "%s: revert to spot failed: %s: %s (tried again later)",
                            job.id,
                            type(exc).__name__,
                            exc,
                        )
                        break
                    if moved:
                        break  # one instance at a time across the fleet

    # --- internals -------------------------------------------------------------------------------

    def _unsubmit(self, job: Job, exc: Exception) -> None:
        """A submit that broke part-way: give back what the job got and forget it, so the caller's
        error is the whole truth. What cannot be given back stays with the job (queued, named in
        the log) rather than running without an owner."""
        try:
            self._release(job, list(job.placements), EndReason.TERMINATED, terminate=True)
        except Exception as release_exc:
            log.error(
                "%s: submit failed (%s) and its instances %s could not be terminated (%s): the job "
                "stays queued; terminate it or let tick retry it",
                job.id,
                type(exc).__name__,
                ", ".join(job.instance_ids),
                type(release_exc).__name__,
            )
            return
        del self._jobs[job.id]

    def _now(self) -> datetime:
        return ensure_utc(self._clock.now())

    def _guarded(self, job: Job, step: Callable[[Job], object]) -> None:
        try:
            step(job)
        except Exception as exc:
            log.error("%s: %s: %s (retried next tick)", job.id, type(exc).__name__, exc)
            job.retry_at = None

    def _move(self, job: Job, state: JobState, reason: str) -> None:
        job.state = state
        job.history.append(Transition(at=self._now(), state=state, reason=reason))
        log.info("%s -> %s: %s", job.id, state, reason)

    def _offers(self) -> tuple[Offer, ...]:
        offers = self.offers.offers()
        for warning in offers.warnings:
            log.warning("%s: %s", offers.source, warning)
        return offers.offers

    def _adopt(self, job: Job, allocation: Allocation) -> None:
        for p in allocation.placements:
            job.placements.append(p)
            self._by_instance[p.instance.id] = job.id

    def _give_back(self, allocation: Allocation, end: EndReason) -> None:
        """Terminate an allocation that is no use (e.g. a partial replacement), ledger closed."""
        ids = [i.id for i in allocation.instances]
        if ids:
            self.allocator.launcher.terminate(ids)
            for instance_id in ids:
                self.ledger.record_end(instance_id, end)

    def _top_up(self, job: Job) -> builtins.list[Allocation]:
        """Allocate what the job misses. A job holding nothing gets the policy's mix; one that
        holds part gets, per capacity type, what its mix still asks for: spot units that were
        lost are replaced spot first (with fallback), on-demand ones on-demand, so a
        replacement never shifts the job's mix."""
        missing = job.missing
        if missing <= EPS:
            return []
        policy = self.allocator.policy
        if not job.placements and not job.pinned_on_demand:
            return [self._allocate_part(job, job.request.amount, policy, as_spot=False)]
        split = policy.mix_for(job.request.task_class).split(job.request.amount)
        held_spot = sum(p.units for p in job.placements if p.requested is CapacityType.SPOT)
        want_spot = min(max(split.spot - held_spot, 0.0), missing)
        want_on_demand = missing - want_spot
        out: builtins.list[Allocation] = []
        # a job moved to on-demand on purpose stays there, its spot units too (asked as spot:
        # once unpinned, revert may move them back)
        spot_policy = policy.only(ON_DEMAND_ONLY if job.pinned_on_demand else SPOT_FIRST)
        if want_spot > EPS:
            out.append(self._allocate_part(job, want_spot, spot_policy, as_spot=True))
        # what the spot part launched beyond its units (whole instances) is not asked again
        want_on_demand = min(want_on_demand, job.missing)
        if want_on_demand > EPS:
            out.append(self._allocate_part(job, want_on_demand, policy.only(ON_DEMAND_ONLY), as_spot=False))
        return out

    def _allocate_part(self, job: Job, units: float, policy: Policy, *, as_spot: bool) -> Allocation:
        """Allocate ``units`` of the job's request under ``policy`` and give them to the job."""
        request = job.request if units >= job.request.amount else job.request.with_amount(units)
        return self._allocate(job, request, policy, as_spot=as_spot, adopt=True)

    def _allocate(
        self, job: Job, request: CapacityRequest, policy: Policy, *, as_spot: bool, adopt: bool
    ) -> Allocation:
        """Allocate for a job, recorded in the ledger (and given to the job with ``adopt``).
        ``as_spot``: the units were asked as spot, whatever they landed on (a revert may move
        them back). An allocation that broke part-way and could not terminate what it launched
        leaves those instances with the job (recorded) before the error goes on."""
        return self._launched(
            job,
            lambda: self.allocator.allocate(
                self._offers(), request, policy=policy, job=job.id, on_demand_fallback=self.on_demand_fallback
            ),
            as_spot=as_spot,
            adopt=adopt,
        )

    def _launched(
        self, job: Job, launch: Callable[[], Allocation], *, as_spot: bool, adopt: bool
    ) -> Allocation:
        """Run ``launch`` for a job and record what it got (see :meth:`_allocate`)."""
        try:
            allocation = launch()
        except AllocationError as exc:
            if exc.partial is not None:
                self.ledger.record(exc.partial, job=job.id)
                self._adopt(job, exc.partial)
            raise
        if as_spot:
            allocation = attrs.evolve(
                allocation,
                placements=tuple(attrs.evolve(p, requested=CapacityType.SPOT) for p in allocation.placements),
            )
        self.ledger.record(allocation, job=job.id)
        if adopt:
            self._adopt(job, allocation)
        return allocation

    def _fill(self, job: Job) -> None:
        """Allocate what the job misses; run it when whole, else let it wait (one alert a wait)."""
        allocations = self._top_up(job)
        if job.missing <= EPS:
            self._run(job, allocations)
            return
        self._wait(job, allocations)

    def _run(self, job: Job, allocations: builtins.list[Allocation]) -> None:
        now = self._now()
        resumed = job.ran
        job.ran = True
        if job.paused_at is not None and job.started_at is not None:
            job.started_at += now - job.paused_at  # the wait does not count as runtime
        job.paused_at = None
        job.started_at = job.started_at or now
        job.alerted = False
        job.retry_at = None
        ids = ", ".join(a.id for a in allocations) or "capacity it held"
        self._move(job, JobState.RUNNING, f"placed on {len(job.placements)} instance(s) ({ids})")
        if resumed and self._restart is not None:
            self._restart(job)

    def _wait(self, job: Job, allocations: builtins.list[Allocation]) -> None:
        problems = [a.decision.problem() for a in allocations]
        problems += [f"{e.failure} in {e.pool}" for a in allocations for e in a.fallbacks]
        problem = "; ".join(p for p in problems if p) or "no capacity"
        job.retry_at = self.allocator.health.next_change()
        if not job.alerted:
            job.alerted = True
            self._alert(
                f"spotlake: job {job.id} waits for capacity",
                f"{job.name or job.id} needs {job.missing:g} more {job.request.unit}: {problem}. "
                "It waits in the queue and is retried when capacity may be back"
                + (f" (from {job.retry_at:%H:%M:%S} UTC)." if job.retry_at else "."),
            )
        job.history.append(Transition(at=self._now(), state=job.state, reason=f"waiting: {problem}"))

    def _alert(self, title: str, text: str) -> None:
        log.warning("%s: %s", title, text)
        if self._notifier is not None:
            self._notifier.notify(title, text)

    def _release(self, job: Job, placements: Sequence[Placement], end: EndReason, *, terminate: bool) -> None:
        ids = [p.instance.id for p in placements]
        if terminate and ids:
            self.allocator.launcher.terminate(ids)
        for instance_id in ids:
            self.ledger.record_end(instance_id, end)
            self._by_instance.pop(instance_id, None)
        gone = set(ids)
        job.placements = [p for p in job.placements if p.instance.id not in gone]

    def _finish(self, job_id: str, state: JobState, end: EndReason, reason: str) -> Job:
        with self._lock:
            job = self.get(job_id)
            if job.state in _FINAL:
                raise ConfigError(f"job {job_id} is already {job.state}")
            self._release(job, list(job.placements), end, terminate=True)
            job.ended_at = self._now()
            self._move(job, state, reason)
            return job

    def _lost(self, job: Job, placement: Placement, *, deadline: datetime, why: str) -> None:
        """An instance is being taken away: record, checkpoint, replace, restart."""
        instance = placement.instance
        spot = instance.capacity_type is CapacityType.SPOT
        running = job.state is JobState.RUNNING
        if spot:  # an on-demand instance lost (an operator, a host) says nothing about spot
            self.allocator.health.record_interruption(instance.offer.pool, launched_at=instance.launched_at)
        self._release(
            job, [placement], EndReason.INTERRUPTED if spot else EndReason.TERMINATED, terminate=False
        )
        if self._checkpoint is not None and running:
            try:
                self._checkpoint(job, deadline)
            except Exception as exc:  # a failing hook must not stop the replacement
                log.warning("%s: the checkpoint hook failed: %s", job.id, type(exc).__name__)
            if self._now() > deadline:
                log.warning(
                    "%s: the checkpoint finished after the interruption deadline %s", job.id, deadline
                )
            if job.state in _FINAL:
                return  # the hook ended the job (done at its checkpoint, or cancelled)
        job.restarts += 1
        job.history.append(Transition(at=self._now(), state=job.state, reason=f"{why} for {instance.id}"))
        if job.missing <= EPS:
            return  # what is left still covers the request (an overshoot)
        if job.state is JobState.RUNNING:
            job.paused_at = self._now()
            self._move(job, JobState.PENDING, f"lost {instance.id}: replacing it")
        allocations = self._top_up(job)
        if job.missing <= EPS:
            new = ", ".join(
                f"{p.instance.id} ({p.instance.capacity_type})" for a in allocations for p in a.placements
            )
            job.history.append(Transition(at=self._now(), state=job.state, reason=f"replaced by {new}"))
            self._run(job, allocations)
            return
        self._wait(job, allocations)

    def _hanging(self, job: Job, now: datetime) -> bool:
        usual = job.request.expected_runtime
        return (
            usual is not None
            and job.started_at is not None
            and now - job.started_at > usual * self.hang_factor
        )

    def _hang(self, job: Job, now: datetime) -> None:
        assert job.started_at is not None and job.request.expected_runtime is not None
        ran = now - job.started_at
        usual = _minutes(job.request.expected_runtime)
        why = f"ran {_minutes(ran)}, over {self.hang_factor:g}x its usual {usual}"
        # Terminate first: if that fails the job is still Running on its instances, and the next
        # tick finds it hanging again.
        self._release(job, list(job.placements), EndReason.HANGING, terminate=True)
        self._move(job, JobState.HANGING, why)
        if job.attempts >= self.max_attempts:
            job.ended_at = now
            self._move(job, JobState.FAILED, f"hung on each of {job.attempts} attempts")
            return
        self._move(job, JobState.TERMINATED, "terminated for hanging")
        job.attempts += 1
        job.started_at = job.paused_at = None
        self._move(job, JobState.PENDING, f"rescheduled (attempt {job.attempts})")
        self._fill(job)

    def _revert(self, job: Job) -> bool:
        assert self._reverter is not None
        if job.pinned_on_demand or not any(p.fell_back for p in job.placements):
            return False
        move = self._reverter.step(self._offers(), job.placements, job.request, job=job.id)
        if move is None:
            return False
        if move.kept_old:  # neither could be let go: the job holds both until it ends
            reason = f"could not move {move.old.instance.id} back to spot: holds its replacement too"
        else:
            self.ledger.record_end(move.old.instance.id, EndReason.REPLACED)
            self._by_instance.pop(move.old.instance.id, None)
            job.placements = [p for p in job.placements if p is not move.old]
            reason = f"moved {move.old.instance.id} back to spot"
        job.placements += list(move.new)
        for p in move.new:
            self._by_instance[p.instance.id] = job.id
        job.history.append(Transition(at=self._now(), state=job.state, reason=reason))
        if not move.kept_old:
            self._restarted(job)
        return True


class _EventSource(Protocol):
    def poll(self) -> EventBatch: ...


def _minutes(delta: timedelta) -> str:
    return f"{delta.total_seconds() / 60:.0f} min"
