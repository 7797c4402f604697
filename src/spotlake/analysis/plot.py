"""Figures of an :class:`~spotlake.analysis.Analysis`'s frames (``pip install 'spotlake[plot]'``).

Each function takes the frame a method returns (``current()``, ``history()``, ``t2t3()``), draws
one matplotlib figure, saves it as a PNG when ``path`` is given, and returns the figure. Nothing
here needs a display (the Agg backend is used when none is set).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from spotlake.errors import ConfigError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["price_and_score_over_time", "savings_vs_eviction", "score_heatmap", "t2t3_distribution"]


def _figure(width: float, height: float) -> Figure:
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:  # pragma: no cover - the plot extra is installed in the tests
        raise ConfigError("plots need matplotlib: pip install 'spotlake[plot]'") from exc
    return Figure(figsize=(width, height), layout="constrained")


def _save(fig: Figure, path: str | Path | None) -> Figure:
    if path is not None:
        fig.savefig(path, dpi=110)
    return fig


def _need(frame: pd.DataFrame, *columns: str, what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ConfigError(f"{what} needs the columns {missing}; pass the frame of the method it names")
    if frame.empty:
        raise ConfigError(f"{what}: the frame is empty (nothing collected for these filters yet)")


def score_heatmap(
    current: pd.DataFrame, *, count: int = 1, sizes: int = 30, path: str | Path | None = None
) -> Figure:
    """Region x size: the best zone's placement score at ``count`` instances (``current()``),
    for the ``sizes`` sizes seen in the most regions."""
    _need(current, "size", "region", "desired_count", "score_value", what="score_heatmap (current())")
    rows = current[current["desired_count"] == count]
    if rows.empty:
        raise ConfigError(f"score_heatmap: no observation at count {count}")
    grid = rows.pivot_table(index="region", columns="size", values="score_value", aggfunc="max")
    keep = grid.notna().sum().sort_values(ascending=False).index[:sizes]
    grid = grid[sorted(keep)]
    fig = _figure(max(6.0, 0.3 * grid.shape[1] + 2), max(3.0, 0.3 * grid.shape[0] + 1.5))
    ax = fig.subplots()
    from matplotlib import colormaps

    cmap = colormaps["RdYlGn"].with_extremes(bad="lightgray")  # gray: not observed
    image = ax.imshow(grid.to_numpy(dtype=float), aspect="auto", cmap=cmap, vmin=1, vmax=3)
    ax.set_xticks(range(grid.shape[1]), grid.columns, rotation=90, fontsize=7)
    ax.set_yticks(range(grid.shape[0]), grid.index, fontsize=7)
    ax.set_title(f"Placement score at {count} instance(s), best zone (1 Low, 2 Medium, 3 High; gray: none)")
    fig.colorbar(image, ax=ax, ticks=[1, 2, 3])
    return _save(fig, path)


def price_and_score_over_time(history: pd.DataFrame, *, path: str | Path | None = None) -> Figure:
    """Spot price (top) and placement score (bottom) per (region, zone, count) over the runs
    (``history(size=...)``, best with one size)."""
    _need(history, "run_at", "region", "zone", "desired_count", "spot_price", "score_value",
          what="price_and_score_over_time (history())")  # fmt: skip
    fig = _figure(9.0, 5.5)
    top, bottom = fig.subplots(2, 1, sharex=True)
    ordered = history.sort_values("run_at", kind="stable")
    for (region, zone), rows in ordered.groupby(["region", "zone"], dropna=False):
        top.plot(rows["run_at"], rows["spot_price"], marker=".", label=f"{region} {zone}")
    for count, rows in ordered.groupby("desired_count", dropna=True):
        bottom.plot(rows["run_at"], rows["score_value"], marker="o", linestyle="", label=f"count {count}")
    sizes = ", ".join(sorted(history["size"].dropna().unique())[:3])
    top.set_title(f"Spot price and placement score over time: {sizes}")
    top.set_ylabel("spot USD/h")
    bottom.set_ylabel("score (1-3)")
    bottom.set_yticks([1, 2, 3])
    top.legend(fontsize=7, ncols=2)
    bottom.legend(fontsize=7, ncols=4)
    return _save(fig, path)


def savings_vs_eviction(current: pd.DataFrame, *, path: str | Path | None = None) -> Figure:
    """Savings against the eviction-rate bucket, one point per (size, region) (``current()``)."""
    _need(current, "size", "region", "savings_pct", "eviction_bucket", what="savings_vs_eviction (current())")
    pairs = current.drop_duplicates(subset=["size", "region"]).dropna(
        subset=["savings_pct", "eviction_bucket"]
    )
    if pairs.empty:
        raise ConfigError("savings_vs_eviction: no (size, region) has both a price and an eviction rate")
    buckets = sorted(
        pairs["eviction_bucket"].unique(), key=lambda b: float(str(b).split("-")[0].strip("+<>"))
    )
    fig = _figure(7.0, 4.5)
    ax = fig.subplots()
    ax.boxplot(
        [pairs.loc[pairs["eviction_bucket"] == b, "savings_pct"] for b in buckets], tick_labels=buckets
    )
    ax.set_xlabel("eviction rate bucket (%)")
    ax.set_ylabel("spot savings vs on-demand (%)")
    ax.set_title(f"Savings against eviction rate ({len(pairs)} size x region pairs)")
    return _save(fig, path)


def t2t3_distribution(frame: pd.DataFrame, *, path: str | Path | None = None) -> Figure:
    """How many cells reach each T2 and T3 tier (``current()`` or ``t2t3()``; one row per cell)."""
    _need(frame, "size", "region", "zone", "t2", "t3", what="t2t3_distribution (current() or t2t3())")
    cells = frame.drop_duplicates(subset=["size", "region", "zone"], keep="last")
    fig = _figure(7.0, 4.0)
    ax = fig.subplots()
    tiers = sorted(set(cells["t2"].dropna()) | set(cells["t3"].dropna()))
    t2 = cells["t2"].value_counts().reindex(tiers, fill_value=0)
    t3 = cells["t3"].value_counts().reindex(tiers, fill_value=0)
    x = range(len(tiers))
    ax.bar([i - 0.2 for i in x], t2.to_numpy(), width=0.4, label="T2 (Medium or better)")
    ax.bar([i + 0.2 for i in x], t3.to_numpy(), width=0.4, label="T3 (High)")
    ax.set_xticks(list(x), [str(int(t)) for t in tiers])
    ax.set_xlabel("largest count scored that well at every count up to it")
    ax.set_ylabel("cells (size, region, zone)")
    ax.set_title(f"T2/T3 over {len(cells)} cells")
    ax.legend()
    return _save(fig, path)
