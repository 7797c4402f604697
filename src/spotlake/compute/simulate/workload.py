"""What the simulator runs: jobs that need compute time, by when, and how they survive interruptions.

A :class:`SimJob` is a gang of ``count`` instances that needs ``work`` of uninterrupted compute,
submitted ``submit_at`` after the trace starts and due ``deadline`` after its submission (or never).
Every (re)start costs ``restart_overhead`` before progress counts; progress is saved every
``checkpoint_every`` of work (:data:`CONTINUOUS`: all the time; ``None``: never periodically), and
an interruption without a successful checkpoint falls back to the last one. A :class:`Workload` is
the jobs of one run; :func:`generate_workload` draws a reproducible mix and :func:`deadline_job`
builds the classic single-job deadline setup. :class:`Progress` is the exact bookkeeping of one
job's work that the simulation engine keeps while it moves the job on and off capacity.

All times here are offsets (``timedelta``) from the trace's start, except :class:`Progress`, which
takes the engine's datetimes; nothing reads a clock.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Final

import attrs
import numpy as np
import numpy.typing as npt

from spotlake.clock import ensure_utc
from spotlake.compute.values import CapacityRequest, TaskClass
from spotlake.errors import ConfigError

__all__ = [
    "CONTINUOUS",
    "DEADLINE_JOB_DEADLINES",
    "DEADLINE_JOB_OVERHEADS",
    "DEFAULT_SHARES",
    "Progress",
    "SimJob",
    "Workload",
    "deadline_job",
    "generate_workload",
]

#: A checkpoint interval of zero: progress is saved continuously, so an interruption loses no work
#: (only the restart overhead is paid again).
CONTINUOUS: Final = timedelta(0)

#: The deadlines the single-job setup is usually run with (:func:`deadline_job`).
DEADLINE_JOB_DEADLINES: Final = (timedelta(hours=52), timedelta(hours=70))
#: The restart overheads the single-job setup is usually run with (:func:`deadline_job`).
DEADLINE_JOB_OVERHEADS: Final = (timedelta(hours=0.02), timedelta(hours=0.05), timedelta(hours=0.1))

#: The task-class mix of :func:`generate_workload` unless told otherwise.
DEFAULT_SHARES: Final[Mapping[TaskClass, float]] = {
    TaskClass.CRITICAL: 0.1,
    TaskClass.NORMAL: 0.6,
    TaskClass.BATCH: 0.3,
}

_ZERO = timedelta(0)


# --- validation ----------------------------------------------------------------------------------


def _positive(_inst: object, attr: attrs.Attribute[Any], value: timedelta) -> None:
    if not value > _ZERO:
        raise ConfigError(f"{attr.name} must be a positive duration, got {value}")


def _not_negative(_inst: object, attr: attrs.Attribute[Any], value: timedelta) -> None:
    if value < _ZERO:
        raise ConfigError(f"{attr.name} must not be negative, got {value}")


def _count(_inst: object, attr: attrs.Attribute[Any], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"{attr.name} must be a whole number >= 0, got {value!r}")


def _task_class(value: TaskClass | str) -> TaskClass:
    try:
        return TaskClass(value)
    except ValueError:
        known = ", ".join(c.value for c in TaskClass)
        raise ConfigError(f"unknown task class {value!r} (one of {known})") from None


def _types(value: Iterable[str]) -> tuple[str, ...]:
    if isinstance(value, str):  # a lone string would otherwise become its characters
        value = [value]
    out: list[str] = []
    for name in value:
        if not isinstance(name, str) or not name:
            raise ConfigError(f"instance types are non-empty names, got {name!r}")
        if name not in out:
            out.append(name)
    return tuple(out)


# --- jobs ----------------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class SimJob:
    """One job of a simulated workload (see the module docstring).

    ``submit_at`` is an offset from the trace's start; ``deadline`` an offset from the submission
    (the job must be done by ``submit_at + deadline``; ``None``: no deadline). ``work`` is the
    compute time the job needs when it runs uninterrupted, on all ``count`` instances at once (a
    gang). ``instance_types`` are the allowed types (empty: any type of the trace with at least
    ``min_vcpus`` vCPUs and ``gpus`` GPUs). ``checkpoint_every`` is how much work is done between
    periodic checkpoints (:data:`CONTINUOUS`: always saved; ``None``: no periodic checkpoints, an
    interruption loses everything not saved at a notice). ``restart_overhead`` is paid after every
    start, the first included, before progress counts.
    """

    name: str
    submit_at: timedelta = attrs.field(default=_ZERO, validator=_not_negative)
    work: timedelta = attrs.field(validator=_positive)
    deadline: timedelta | None = None
    task_class: TaskClass = attrs.field(default=TaskClass.NORMAL, converter=_task_class)
    count: int = 1
    instance_types: tuple[str, ...] = attrs.field(default=(), converter=_types)
    min_vcpus: int = attrs.field(default=0, validator=_count)
    gpus: int = attrs.field(default=0, validator=_count)
    checkpoint_every: timedelta | None = None
    restart_overhead: timedelta = attrs.field(default=_ZERO, validator=_not_negative)

    def __attrs_post_init__(self) -> None:
        if not self.name:
            raise ConfigError("a job needs a name")
        if isinstance(self.count, bool) or not isinstance(self.count, int) or self.count < 1:
            raise ConfigError(f"job {self.name}: count is a number of instances >= 1, got {self.count!r}")
        if self.checkpoint_every is not None and self.checkpoint_every < _ZERO:
            raise ConfigError(
                f"job {self.name}: checkpoint_every must be >= 0 (0 = continuous) or None, "
                f"got {self.checkpoint_every}"
            )
        if self.deadline is not None and self.deadline < self.work + self.restart_overhead:
            raise ConfigError(
                f"job {self.name}: deadline {self.deadline} is shorter than its work {self.work} plus "
                f"one restart overhead {self.restart_overhead}: no run could meet it"
            )

    @property
    def due_at(self) -> timedelta | None:
        """When the job must be done, as an offset from the trace's start (``None``: never)."""
        return None if self.deadline is None else self.submit_at + self.deadline

    def request(self, *, start: datetime | None = None) -> CapacityRequest:
        """The allocator's request for this job: ``count`` instances of the allowed types, its task
        class, ``expected_runtime=work`` (for hang detection). With the trace's ``start`` the
        request also carries the job's absolute deadline."""
        deadline = None
        if start is not None and self.due_at is not None:
            deadline = ensure_utc(start) + self.due_at
        return CapacityRequest(
            count=self.count,
            min_vcpus=self.min_vcpus,
            gpus=self.gpus,
            instance_types=self.instance_types or None,
            task_class=self.task_class,
            deadline=deadline,
            expected_runtime=self.work,
            name=self.name,
        )


def _by_submission(value: Iterable[SimJob]) -> tuple[SimJob, ...]:
    jobs = tuple(value)
    for job in jobs:
        if not isinstance(job, SimJob):
            raise ConfigError(f"a workload holds SimJobs, got {type(job).__name__}")
    return tuple(sorted(jobs, key=lambda j: j.submit_at))


@attrs.frozen(kw_only=True)
class Workload:
    """The jobs of one simulation, sorted by ``submit_at`` (stable: equal times keep their order);
    job names are unique."""

    name: str
    jobs: tuple[SimJob, ...] = attrs.field(converter=_by_submission)

    def __attrs_post_init__(self) -> None:
        names = Counter(j.name for j in self.jobs)
        twice = sorted(n for n, times in names.items() if times > 1)
        if twice:
            raise ConfigError(f"workload {self.name}: job names used twice: {', '.join(twice)}")

    def __len__(self) -> int:
        return len(self.jobs)

    def __iter__(self) -> Iterator[SimJob]:
        return iter(self.jobs)

    def job(self, name: str) -> SimJob:
        """The job called ``name``."""
        for job in self.jobs:
            if job.name == name:
                return job
        raise ConfigError(f"workload {self.name} has no job {name!r}")


# --- building workloads --------------------------------------------------------------------------

#: Periodic checkpoint intervals of generated jobs and how often each is drawn (``None``: none).
_CHECKPOINTS: Final = (timedelta(minutes=15), timedelta(minutes=30), timedelta(minutes=60), None)
_CHECKPOINT_P: Final = (0.3, 0.3, 0.2, 0.2)
#: Gang sizes of generated jobs and how often each is drawn.
_COUNTS: Final = (1, 2, 3, 4)
_COUNT_P: Final = (0.5, 0.25, 0.15, 0.1)
#: Generated work: lognormal around a median of 2 hours, kept between 15 minutes and 12 hours.
_WORK_MEDIAN: Final = timedelta(hours=2)
_WORK_SIGMA: Final = 0.8
_WORK_MIN: Final = timedelta(minutes=15)
_WORK_MAX: Final = timedelta(hours=12)
#: Deadline = work x a slack factor drawn uniformly from these (critical jobs: tighter).
_SLACK: Final = (1.5, 4.0)
_SLACK_CRITICAL: Final = (1.5, 2.5)
#: Restart overheads, whole minutes drawn uniformly.
_OVERHEAD_MINUTES: Final = (1, 6)
#: Submissions per minute are this many times likelier in working hours (9:00 to 18:00 UTC).
_WORKING_HOURS: Final = (9, 18)
_WORKING_WEIGHT: Final = 3.0


def _shares(shares: Mapping[TaskClass, float] | None) -> tuple[list[TaskClass], npt.NDArray[np.float64]]:
    given = DEFAULT_SHARES if shares is None else shares
    classes = [_task_class(c) for c in given]
    weights = np.array([float(given[c]) for c in given], dtype=np.float64)
    if not classes or not np.isfinite(weights).all() or (weights < 0).any() or weights.sum() <= 0:
        raise ConfigError(f"task-class shares must be numbers >= 0 with a positive sum, got {dict(given)}")
    return classes, weights / weights.sum()


def _submissions(
    rng: np.random.Generator, jobs: int, span: timedelta, start: datetime | None
) -> npt.NDArray[np.int64]:
    """``jobs`` submission offsets in whole seconds within ``span``, likelier in working hours."""
    minutes = int(span.total_seconds() // 60)
    first = 0 if start is None else ensure_utc(start).hour * 60 + ensure_utc(start).minute
    hour = ((first + np.arange(minutes)) // 60) % 24
    weight = np.where((hour >= _WORKING_HOURS[0]) & (hour < _WORKING_HOURS[1]), _WORKING_WEIGHT, 1.0)
    chosen = rng.choice(minutes, size=jobs, p=weight / weight.sum())
    seconds: npt.NDArray[np.int64] = chosen * 60 + rng.integers(0, 60, size=jobs)
    return seconds


def generate_workload(
    *,
    seed: int,
    jobs: int = 500,
    span: timedelta = timedelta(days=7),
    instance_types: Sequence[str] = (),
    name: str | None = None,
    start: datetime | None = None,
    shares: Mapping[TaskClass, float] | None = None,
    no_deadline_share: float = 0.15,
) -> Workload:
    """A reproducible mix of ``jobs`` jobs submitted over ``span`` (the same ``seed``, the same jobs).

    * task classes by ``shares`` (default :data:`DEFAULT_SHARES`: 10 % critical, 60 % normal, 30 %
      batch);
    * work lognormal with a median of 2 hours, kept between 15 minutes and 12 hours, in whole
      seconds;
    * deadline = work x a slack factor drawn from 1.5..4 (critical jobs: 1.5..2.5), and never less
      than work plus the restart overhead; ``no_deadline_share`` of the normal and batch jobs have
      none (critical jobs always have one);
    * periodic checkpoints every 15, 30 or 60 minutes of work, or none (30/30/20/20 %); restart
      overheads of 1 to 6 whole minutes; gangs of 1 to 4 instances (50/25/15/10 %);
    * submissions anywhere in ``span`` (whole seconds), three times likelier per minute in working
      hours, 9:00 to 18:00 UTC, counted from ``start`` (the trace's start; ``None``: the span starts
      at midnight);
    * with ``instance_types``, each job allows a random non-empty subset of them (in the given
      order); without, any type of the trace (``min_vcpus`` and ``gpus`` are 0).

    Jobs are named ``job-0001``... in submission order. The workload is named ``name`` (default
    ``generated-<seed>``).
    """
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ConfigError(f"a generated workload has at least one job, got jobs={jobs!r}")
    if span < timedelta(minutes=1):
        raise ConfigError(f"a generated workload's span is at least a minute, got {span}")
    if not 0.0 <= no_deadline_share <= 1.0:
        raise ConfigError(f"no_deadline_share is a fraction in [0, 1], got {no_deadline_share!r}")
    types = _types(instance_types)
    classes, class_p = _shares(shares)
    rng = np.random.default_rng(seed)

    submit = _submissions(rng, jobs, span, start)
    klass = rng.choice(len(classes), size=jobs, p=class_p)
    median = _WORK_MEDIAN.total_seconds()
    work = np.clip(
        np.round(rng.lognormal(np.log(median), _WORK_SIGMA, size=jobs)),
        _WORK_MIN.total_seconds(),
        _WORK_MAX.total_seconds(),
    )
    slack = rng.uniform(*_SLACK, size=jobs)
    slack_critical = rng.uniform(*_SLACK_CRITICAL, size=jobs)
    open_ended = rng.random(size=jobs) < no_deadline_share
    checkpoint = rng.choice(len(_CHECKPOINTS), size=jobs, p=_CHECKPOINT_P)
    overhead = rng.integers(_OVERHEAD_MINUTES[0], _OVERHEAD_MINUTES[1] + 1, size=jobs)
    count = rng.choice(_COUNTS, size=jobs, p=_COUNT_P)
    allowed: list[tuple[str, ...]] = []
    for _ in range(jobs):
        if not types:
            allowed.append(())
            continue
        size = int(rng.integers(1, len(types) + 1))
        picked = set(rng.choice(len(types), size=size, replace=False).tolist())
        allowed.append(tuple(t for i, t in enumerate(types) if i in picked))

    order = np.argsort(submit, kind="stable")
    width = max(4, len(str(jobs)))
    built: list[SimJob] = []
    for rank, i in enumerate(order.tolist(), start=1):
        task_class = classes[int(klass[i])]
        job_work = timedelta(seconds=int(work[i]))
        job_overhead = timedelta(minutes=int(overhead[i]))
        deadline: timedelta | None = None
        if task_class is TaskClass.CRITICAL or not open_ended[i]:
            factor = slack_critical[i] if task_class is TaskClass.CRITICAL else slack[i]
            deadline = max(timedelta(seconds=int(np.ceil(work[i] * factor))), job_work + job_overhead)
        built.append(
            SimJob(
                name=f"job-{rank:0{width}d}",
                submit_at=timedelta(seconds=int(submit[i])),
                work=job_work,
                deadline=deadline,
                task_class=task_class,
                count=int(count[i]),
                instance_types=allowed[i],
                checkpoint_every=_CHECKPOINTS[int(checkpoint[i])],
                restart_overhead=job_overhead,
            )
        )
    return Workload(name=name or f"generated-{seed}", jobs=tuple(built))


def deadline_job(
    *,
    work: timedelta = timedelta(hours=48),
    deadline: timedelta = timedelta(hours=52),
    restart_overhead: timedelta = timedelta(hours=0.05),
    instance_type: str | None = None,
    checkpoint_every: timedelta | None = CONTINUOUS,
    count: int = 1,
    submit_at: timedelta = _ZERO,
    task_class: TaskClass = TaskClass.NORMAL,
    name: str = "deadline-job",
) -> Workload:
    """The classic single-job deadline setup: one job of 48 hours of work, due 52 hours after it is
    submitted at the trace's start (the setup is also run with 70 hours, :data:`DEADLINE_JOB_DEADLINES`),
    restarting in 0.05 hours (0.02 and 0.1 hours: :data:`DEADLINE_JOB_OVERHEADS`).

    In this setup a preemption costs only the restart overhead: progress is kept across it. That is
    :data:`CONTINUOUS` checkpointing, the default ``checkpoint_every``; pass an interval (or
    ``None``) to make interruptions lose work. ``instance_type`` pins the job to one type (``None``:
    any type of the trace).
    """
    job = SimJob(
        name=name,
        submit_at=submit_at,
        work=work,
        deadline=deadline,
        task_class=task_class,
        count=count,
        instance_types=() if instance_type is None else (instance_type,),
        checkpoint_every=checkpoint_every,
        restart_overhead=restart_overhead,
    )
    return Workload(name=name, jobs=(job,))


# --- accounting one job's work -------------------------------------------------------------------


class Progress:
    """The exact account of one job's work as it runs, pauses and loses progress.

    The engine calls :meth:`run` when the job (re)starts on capacity and :meth:`pause` when the
    capacity goes away. Each run first pays the job's ``restart_overhead`` (the first run too: a job
    has to be set up before it computes), then the work advances one-for-one with time until the job
    is done. While running, periodic checkpoints save progress at every ``checkpoint_every`` of work
    done in the run (counted from what the run started with). A pause with ``lost=True`` (no
    checkpoint at the notice) falls back to the last checkpoint: so at most one interval of work is
    lost per interruption (nothing with :data:`CONTINUOUS`; with no periodic checkpoints, everything
    done since the run started). A pause with ``lost=False`` (a checkpoint at the notice succeeded)
    keeps everything. Checkpoints take no time.

    A pause at or after :meth:`done_at` finds the job finished: nothing is lost and it is no
    interruption. Times must not go backwards (a :class:`~spotlake.errors.ConfigError` otherwise).
    """

    __slots__ = ("_finished_at", "_interruptions", "_last", "_lost", "_saved", "_since", "_starts", "job")

    def __init__(self, job: SimJob) -> None:
        self.job = job
        self._saved = _ZERO
        self._lost = _ZERO
        self._interruptions = 0
        self._starts = 0
        self._since: datetime | None = None
        self._last: datetime | None = None
        self._finished_at: datetime | None = None

    # state

    @property
    def running(self) -> bool:
        """Whether the job is on capacity (between :meth:`run` and :meth:`pause`)."""
        return self._since is not None

    @property
    def finished(self) -> bool:
        """Whether a pause found the work complete."""
        return self._finished_at is not None

    @property
    def checkpointed(self) -> timedelta:
        """The work saved as of the last :meth:`run` or :meth:`pause` (see :meth:`saved` for the
        periodic checkpoints of a run in progress)."""
        return self._saved

    @property
    def lost_total(self) -> timedelta:
        """All work lost by interruptions so far."""
        return self._lost

    @property
    def interruptions(self) -> int:
        """Pauses before the work was complete."""
        return self._interruptions

    @property
    def starts(self) -> int:
        """Runs so far (each paid the restart overhead)."""
        return self._starts

    # events

    def run(self, start: datetime) -> None:
        """The job (re)starts on capacity at ``start``: the restart overhead begins."""
        start = self._after(start, "start")
        if self._since is not None:
            raise ConfigError(f"job {self.job.name} is already running since {self._since}")
        if self._finished_at is not None:
            raise ConfigError(f"job {self.job.name} finished at {self._finished_at}: nothing left to run")
        self._since = self._last = start
        self._starts += 1

    def pause(self, at: datetime, *, lost: bool) -> None:
        """The capacity is gone at ``at``. ``lost=True``: the work since the last checkpoint is lost;
        ``lost=False``: a checkpoint at the notice saved everything."""
        at = self._after(at, "pause")
        since = self._since
        if since is None:
            raise ConfigError(f"job {self.job.name} is not running: nothing to pause at {at}")
        gained = self._gained(since, at)
        self._since = None
        self._last = at
        if self._saved + gained >= self.job.work:
            self._finished_at = since + self.job.restart_overhead + (self.job.work - self._saved)
            self._saved = self.job.work
            return
        kept = self._periodic(gained) if lost else gained
        self._saved += kept
        self._lost += gained - kept
        self._interruptions += 1

    # queries

    def done_at(self, now: datetime) -> datetime | None:
        """When the work completes if the job is left running (the time it completed, once a pause
        found it finished); ``None`` while it is not running. The answer does not depend on ``now``,
        which only must not be before the run's start."""
        if self._finished_at is not None:
            return self._finished_at
        if self._since is None:
            return None
        self._at_or_after(now, self._since)
        return self._since + self.job.restart_overhead + (self.job.work - self._saved)

    def work_done(self, at: datetime) -> timedelta:
        """The work done by ``at``, saved or not (what a checkpoint at ``at`` would keep)."""
        if self._since is None:
            self._after(at, "a query")
            return self._saved
        return self._saved + self._gained(self._since, self._at_or_after(at, self._since))

    def saved(self, at: datetime) -> timedelta:
        """The work saved by ``at``: what an interruption without a checkpoint at ``at`` would keep."""
        if self._since is None:
            return self.work_done(at)
        gained = self._gained(self._since, self._at_or_after(at, self._since))
        if self._saved + gained >= self.job.work:
            return self.job.work
        return self._saved + self._periodic(gained)

    # helpers

    def _gained(self, since: datetime, at: datetime) -> timedelta:
        """Work done in the run started at ``since`` by ``at`` (at most what was left)."""
        computing = at - since - self.job.restart_overhead
        return max(_ZERO, min(computing, self.job.work - self._saved))

    def _periodic(self, gained: timedelta) -> timedelta:
        """What the run's periodic checkpoints saved of the ``gained`` work."""
        every = self.job.checkpoint_every
        if every is None:
            return _ZERO
        if every == CONTINUOUS:
            return gained
        return every * (gained // every)

    def _after(self, when: datetime, what: str) -> datetime:
        when = ensure_utc(when)
        if self._last is not None and when < self._last:
            raise ConfigError(
                f"job {self.job.name}: {what} at {when} is before its last event at {self._last}"
            )
        return when

    def _at_or_after(self, when: datetime, since: datetime) -> datetime:
        when = ensure_utc(when)
        if when < since:
            raise ConfigError(f"job {self.job.name}: {when} is before its run started at {since}")
        return when

    def __repr__(self) -> str:
        state = "finished" if self.finished else "running" if self.running else "paused"
        return (
            f"Progress({self.job.name}: {state}, saved {self._saved} of {self.job.work}, "
            f"lost {self._lost} in {self._interruptions} interruptions)"
        )
