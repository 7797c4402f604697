"""The comparison as a picture: each contender's cost against its deadline misses.

Needs matplotlib (``pip install 'spotlake[plot]'``); it is imported only here, when a plot is drawn.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from spotlake.compute.simulate.compare import OPTIMUM, Comparison
from spotlake.errors import ConfigError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["cost_vs_misses"]


def cost_vs_misses(comparison: Comparison, path: str | Path | None = None) -> Figure:
    """A scatter of cost relative to all on-demand (x) against deadline misses (y), one point per
    contender and a star for the hindsight optimum, each named in the legend with its numbers;
    saved as a PNG at ``path`` when given."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # no display needed: the figure is returned or written
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator
    except ImportError as exc:
        raise ConfigError("plots need matplotlib: pip install 'spotlake[plot]'") from exc
    rows = comparison.rows()
    fig = Figure(figsize=(8, 5), layout="constrained")
    ax = fig.add_subplot()
    markers = "osD^v<>phX"
    for i, row in enumerate(rows):
        optimum = row.contender == OPTIMUM
        ax.scatter(
            [row.vs_on_demand or 0.0],
            [row.misses],
            marker="*" if optimum else markers[i % len(markers)],
            s=160 if optimum else 60,
            label=f"{row.contender} ({row.vs_on_demand or 0.0:.2f}x, {row.misses} missed)",
            alpha=0.85,
        )
    top = max(r.misses for r in rows)
    ax.set_ylim(-0.5, top + 1)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("cost relative to all on-demand")
    ax.set_ylabel("deadline misses")
    ax.set_title(f"{comparison.workload} on {comparison.trace}")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper right", fontsize=8)
    if path is not None:
        fig.savefig(Path(path), format="png", dpi=120)
    return fig
