"""A plan's :class:`~spotlake.scoring.plan.values.PlanReport`, measured from its calls.

Planning, repair, sharding and merging each make a :class:`~spotlake.scoring.plan.values.Plan`, and
all of them report it the same way: cells scored, wasted cells, the lower bound and the ratio.
"""

from __future__ import annotations

from collections.abc import Sequence

from spotlake.model import SpsCall
from spotlake.scoring.plan.bounds import lower_bound
from spotlake.scoring.plan.values import Pair, PlanReport

__all__ = ["make_report"]


def make_report(
    calls: Sequence[SpsCall],
    support: frozenset[Pair],
    *,
    max_regions: int,
    max_sizes: int,
    seconds: float,
    strategy: str,
    bound: int | None = None,
) -> PlanReport:
    """The report of ``calls`` covering ``support``; ``bound`` saves recomputing a known lower bound."""
    cells = {p for c in calls for p in c.pairs()}
    lb = lower_bound(support, max_regions, max_sizes) if bound is None else bound
    n_cells = sum(c.cells for c in calls)
    return PlanReport(
        pairs=len(support),
        regions=len({r for r, _ in support}),
        sizes=len({s for _, s in support}),
        calls=len(calls),
        cells=n_cells,
        wasted_cells=n_cells - len(cells & support),
        lower_bound=lb,
        ratio=(len(calls) / lb) if lb else 1.0,
        seconds=round(seconds, 4),
        max_regions=max_regions,
        max_sizes=max_sizes,
        strategy=strategy,
    )
