"""The hindsight optimum: a lower bound on what a workload can cost on a trace.

With the whole future known, each job runs its ``work`` in the cheapest moments of its window
(from its submission to its deadline; a job without a deadline has until the trace's end). At
any moment of the window its gang of ``count`` instances may sit on spot in any allowed pool that
has instances available, at that pool's price of the tick, and on on-demand (the cheapest allowed
type in any region of the trace), which never runs out. The cheapest gang at a tick fills the
``count`` instances from the cheapest spot pools up to their availability (a gang may span pools
and mix spot with on-demand, as the allocator's fills do), on-demand for the rest; a spot pool
dearer than that on-demand price is never used. Since the ticks are independent once restart
overheads are ignored, taking the cheapest ticks of the window until they hold the work is exact
(the first and last ticks of a window count only for the part inside it).

It is a *lower bound*, not a schedule anyone could run: it ignores restart overheads and lost work
(a job moves between ticks and pools for free), it does not share spot capacity between jobs (each
job sees every available instance), and it knows the future. Critical jobs never use spot (their
task class forbids it), so they cost their on-demand price; the batch class's spot/on-demand mix is
not enforced, which keeps the bound below any policy's cost.

A simulated run stops at the trace's end, and so does its bill: a job whose window reaches past
the end is charged here only for the work that fits in the window inside the trace (the cheapest
of those ticks), in the optimum and in the all-on-demand reference alike. A run that leaves work
undone (a miss, or a job unfinished at the end) may therefore cost less than the optimum.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import timedelta

import attrs
import numpy as np
import numpy.typing as npt

from spotlake.compute.simulate.trace import Trace
from spotlake.compute.simulate.workload import SimJob, Workload
from spotlake.compute.values import TaskClass
from spotlake.errors import ConfigError

__all__ = ["OptimumReport", "hindsight_cost", "on_demand_price"]

FloatArray = npt.NDArray[np.float64]
_HOUR = timedelta(hours=1)


@attrs.frozen(kw_only=True)
class OptimumReport:
    """What a workload costs at the hindsight optimum (USD).

    ``total`` is the lower bound (the sum of ``per_job``, each job's cheapest cost over all its
    instances); ``on_demand_total`` is the all-on-demand reference: every job's work on its
    cheapest allowed on-demand type for its whole gang.
    """

    total: float
    per_job: Mapping[str, float]
    on_demand_total: float

    @property
    def savings(self) -> float:
        """The share of the all-on-demand cost the optimum saves (0..1; 0 for an empty workload)."""
        if self.on_demand_total <= 0:
            return 0.0
        return 1.0 - self.total / self.on_demand_total


def _allowed_types(trace: Trace, job: SimJob) -> list[str]:
    """The trace's instance types the job may run on (listed, and of the job's size)."""
    listed = job.instance_types or tuple(trace.shapes)
    types = [
        t
        for t in listed
        if t in trace.shapes and trace.shapes[t].vcpus >= job.min_vcpus and trace.shapes[t].gpus >= job.gpus
    ]
    if not types:
        wanted = ", ".join(job.instance_types) if job.instance_types else "any type"
        raise ConfigError(
            f"job {job.name}: trace {trace.name} has no instance type it may use "
            f"({wanted}, at least {job.min_vcpus} vCPUs and {job.gpus} GPUs)"
        )
    return types


def on_demand_price(trace: Trace, job: SimJob) -> float:
    """The cheapest on-demand price (USD per instance-hour) of a type the job may use, in any
    region of the trace; a :class:`~spotlake.errors.ConfigError` when the trace has none."""
    types = set(_allowed_types(trace, job))
    prices = [o.price for o in trace.on_demand if o.instance_type in types]
    if not prices:
        raise ConfigError(
            f"job {job.name}: trace {trace.name} has no on-demand price for {', '.join(sorted(types))}; "
            "the optimum needs one to fall back on"
        )
    price = min(prices)
    if not (math.isfinite(price) and price > 0):
        raise ConfigError(f"trace {trace.name}: on-demand prices must be positive numbers, got {price!r}")
    return price


class _Market:
    """The trace's spot pools as arrays, each tick's pools sorted by price cheapest first."""

    def __init__(self, trace: Trace) -> None:
        self.types = np.array([p.instance_type for p in trace.spot])
        price = np.stack([trace.spot[p].price for p in trace.spot])
        available = np.stack([trace.spot[p].available for p in trace.spot])
        self.order = np.argsort(price, axis=0, kind="stable")  # (pools, ticks)
        self.price = np.take_along_axis(price, self.order, axis=0)
        self.available = np.take_along_axis(available, self.order, axis=0)

    def rates(self, types: list[str], count: int, od: float, ticks: slice) -> FloatArray:
        """USD per hour of the cheapest gang of ``count`` instances of ``types`` at each of ``ticks``:
        the cheapest spot pools up to their availability (those cheaper than ``od``), on-demand
        at ``od`` for the rest."""
        member = np.isin(self.types, types)
        price = self.price[:, ticks]
        usable = member[self.order[:, ticks]] & (price < od)
        available = np.where(usable, self.available[:, ticks], 0)
        before = np.cumsum(available, axis=0) - available
        take = np.clip(count - before, 0, available)
        rate: FloatArray = (take * price).sum(axis=0) + (count - take.sum(axis=0)) * od
        return rate


def _window(trace: Trace, job: SimJob) -> tuple[int, FloatArray]:
    """The job's window inside the trace: its first tick and the hours of each of its ticks inside
    the window (a window cut by the trace's end holds less than the job's work)."""
    step = trace.step
    length = step * trace.ticks
    lo = job.submit_at
    hi = length if job.due_at is None else job.due_at
    hi = min(hi, length)
    if hi <= lo:
        return 0, np.zeros(0)
    first = lo // step
    last = -(-hi // step)  # exclusive
    hours = np.full(last - first, step / _HOUR)
    hours[0] -= (lo - step * first) / _HOUR
    hours[-1] -= (step * last - hi) / _HOUR
    return first, hours


def _cheapest(rates: FloatArray, hours: FloatArray, work: float, od_rate: float) -> float:
    """The cheapest cost of ``work`` hours taken from ticks of ``hours`` at ``rates`` (cheapest
    first), the rest at ``od_rate``."""
    if len(rates) == 0:
        return work * od_rate
    order = np.argsort(rates, kind="stable")
    r, h = rates[order], hours[order]
    before = np.cumsum(h) - h
    take = np.clip(work - before, 0.0, h)
    rest = max(work - float(take.sum()), 0.0)
    return float((take * r).sum()) + rest * od_rate


def hindsight_cost(trace: Trace, workload: Workload) -> OptimumReport:
    """The hindsight optimum of ``workload`` on ``trace`` and the all-on-demand reference (see the
    module docstring for what is, and what is not, counted)."""
    market = _Market(trace)
    per_job: dict[str, float] = {}
    total = on_demand_total = 0.0
    for job in workload.jobs:
        od = on_demand_price(trace, job)
        first, hours = _window(trace, job)
        work = min(job.work / _HOUR, float(hours.sum()))  # what can be done before the trace ends
        od_rate = od * job.count
        on_demand = work * od_rate
        if job.task_class is TaskClass.CRITICAL or work <= 0:
            cost = on_demand
        else:
            ticks = slice(first, first + len(hours))
            rates = market.rates(_allowed_types(trace, job), job.count, od, ticks)
            cost = min(_cheapest(rates, hours, work, od_rate), on_demand)
        per_job[job.name] = cost
        total += cost
        on_demand_total += on_demand
    return OptimumReport(total=total, per_job=per_job, on_demand_total=on_demand_total)
