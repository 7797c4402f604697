"""Several contenders on one trace and workload, and the table that compares them.

:func:`compare` runs each :class:`~spotlake.compute.simulate.contenders.Contender` with
:func:`~spotlake.compute.simulate.engine.simulate` and computes the hindsight optimum
(:func:`~spotlake.compute.simulate.optimum.hindsight_cost`) as the limit. :meth:`Comparison.to_frame`
is the comparison table, one row per contender and one for the optimum:

``cost``
    USD billed (per second) by the end of the run.
``vs_on_demand``
    ``cost`` over the all-on-demand run's (the ``on-demand`` contender when it ran, else the
    optimum's all-on-demand cost).
``score``
    The normalised score: 0 for all on-demand, 100 for the hindsight optimum, ``100 * (on-demand
    cost - cost) / (on-demand cost - optimum)``. A run that misses deadlines may score above 100:
    read it with ``misses``.
``misses``, ``unfinished``, ``completed``
    Jobs that finished after their deadline or not at all before it; jobs still running or
    waiting at the end; jobs done.
``interruptions``, ``fallbacks``, ``spot_share``, ``work_lost_h``
    Spot instances taken back; instances launched on-demand for units asked as spot; spot
    instance-hours over all instance-hours; hours of work lost to interruptions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Final

import attrs

from spotlake.compute.simulate.contenders import Contender, contenders
from spotlake.compute.simulate.engine import RunResult, simulate
from spotlake.compute.simulate.optimum import OptimumReport, hindsight_cost
from spotlake.compute.simulate.trace import Trace
from spotlake.compute.simulate.workload import Workload

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["COLUMNS", "OPTIMUM", "Comparison", "ComparisonRow", "compare"]

#: The optimum's row name in the table.
OPTIMUM: Final = "hindsight-optimum"
#: The table's columns, in order.
COLUMNS: Final = (
    "contender",
    "cost",
    "vs_on_demand",
    "score",
    "misses",
    "unfinished",
    "completed",
    "interruptions",
    "fallbacks",
    "spot_share",
    "work_lost_h",
)


@attrs.frozen(kw_only=True)
class ComparisonRow:
    """One row of the comparison table (the module docstring says what each column means)."""

    contender: str
    cost: float
    vs_on_demand: float | None
    score: float
    misses: int
    unfinished: int
    completed: int
    interruptions: int
    fallbacks: int
    #: ``None`` for the optimum (a bound, not a run).
    spot_share: float | None
    work_lost_h: float


@attrs.frozen(kw_only=True)
class Comparison:
    """Each contender's run on one trace and workload, and the hindsight optimum."""

    trace: str
    workload: str
    runs: tuple[RunResult, ...]
    optimum: OptimumReport

    @property
    def on_demand_cost(self) -> float:
        """The all-on-demand reference: the ``on-demand`` run, else the optimum's estimate."""
        for run in self.runs:
            if run.contender == "on-demand":
                return run.cost
        return self.optimum.on_demand_total

    def score(self, cost: float) -> float:
        """The normalised score of a cost (on-demand = 0, optimum = 100)."""
        span = self.on_demand_cost - self.optimum.total
        if span <= 0:
            return 100.0 if cost <= self.optimum.total else 0.0
        return 100.0 * (self.on_demand_cost - cost) / span

    def run(self, contender: str) -> RunResult:
        for run in self.runs:
            if run.contender == contender:
                return run
        raise KeyError(contender)

    def rows(self) -> tuple[ComparisonRow, ...]:
        """The table: one row per run, then the optimum's."""
        od = self.on_demand_cost
        rows: list[ComparisonRow] = []
        for r in self.runs:
            lost = sum((j.work_lost for j in r.jobs), timedelta(0)) / timedelta(hours=1)
            rows.append(
                ComparisonRow(
                    contender=r.contender,
                    cost=r.cost,
                    vs_on_demand=r.cost / od if od else None,
                    score=self.score(r.cost),
                    misses=r.misses,
                    unfinished=r.unfinished,
                    completed=r.completed,
                    interruptions=r.interruptions,
                    fallbacks=r.fallbacks,
                    spot_share=r.spot_share,
                    work_lost_h=lost,
                )
            )
        rows.append(
            ComparisonRow(
                contender=OPTIMUM,
                cost=self.optimum.total,
                vs_on_demand=self.optimum.total / od if od else None,
                score=100.0,
                misses=0,
                unfinished=0,
                completed=len(self.optimum.per_job),
                interruptions=0,
                fallbacks=0,
                spot_share=None,
                work_lost_h=0.0,
            )
        )
        return tuple(rows)

    def to_frame(self) -> pd.DataFrame:
        import pandas as pd

        return pd.DataFrame([attrs.asdict(r) for r in self.rows()], columns=list(COLUMNS))


def compare(
    trace: Trace,
    workload: Workload,
    names: Sequence[str | Contender] | None = None,
    *,
    progress: Callable[[str, datetime], None] | None = None,
) -> Comparison:
    """Run the contenders ``names`` (all by default; names or :class:`Contender` values) on
    ``trace`` and ``workload``. ``progress`` is called with the contender's name and the simulated
    time after every step."""
    chosen: list[Contender] = []
    for item in names or contenders():
        chosen.extend([item] if isinstance(item, Contender) else contenders([item]))
    runs = []
    for contender in chosen:
        tick = None if progress is None else _named(progress, contender.name)
        runs.append(simulate(trace, workload, contender, progress=tick))
    return Comparison(
        trace=trace.name, workload=workload.name, runs=tuple(runs), optimum=hindsight_cost(trace, workload)
    )


def _named(progress: Callable[[str, datetime], None], name: str) -> Callable[[datetime], None]:
    def tick(now: datetime) -> None:
        progress(name, now)

    return tick
