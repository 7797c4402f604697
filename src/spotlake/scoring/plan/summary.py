"""What a plan costs in SPS quota, for people: the numbers and text ``spotlake plan`` prints.

:func:`plan_summary` turns a plan's report into calls per hour and the subscriptions needed to sweep
it at a given interval; :func:`format_summary` lays that out as aligned lines.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from spotlake.errors import ConfigError
from spotlake.scoring.plan.values import Plan

__all__ = ["format_summary", "plan_summary"]


def plan_summary(
    plan: Plan,
    *,
    quota_per_hour: int = 10,
    interval_minutes: float = 10,
    locations: int | None = None,
) -> dict[str, Any]:
    """What a plan costs in quota: the numbers the CLI prints.

    Sweeping the whole plan every ``interval_minutes`` needs ``calls * 60 / interval`` calls per
    hour. One subscription gives ``quota_per_hour`` calls per hour per URL location it routes
    through, and ``locations`` locations (default: the plan's regions, every region being a valid
    location), so ``subscriptions = ceil(calls_per_hour / (quota_per_hour * locations))``.
    """
    if quota_per_hour < 1 or interval_minutes <= 0:
        raise ConfigError(
            "quota_per_hour must be >= 1 and interval_minutes > 0, "
            f"got {quota_per_hour} and {interval_minutes}"
        )
    r = plan.report
    n_locations = r.regions if locations is None else locations
    if n_locations < 1:
        raise ConfigError(f"locations must be >= 1, got {n_locations}")
    calls_per_hour = r.calls * 60.0 / interval_minutes
    per_subscription = quota_per_hour * n_locations
    return {
        "pairs": r.pairs,
        "regions": r.regions,
        "sizes": r.sizes,
        "calls": r.calls,
        "lower_bound": r.lower_bound,
        "ratio": round(r.ratio, 4),
        "cells": r.cells,
        "wasted_cells": r.wasted_cells,
        "strategy": r.strategy,
        "plan_seconds": r.seconds,
        "max_regions": r.max_regions,
        "max_sizes": r.max_sizes,
        "interval_minutes": interval_minutes,
        "quota_per_hour": quota_per_hour,
        "locations": n_locations,
        "calls_per_hour": round(calls_per_hour, 2),
        "calls_per_hour_per_subscription": per_subscription,
        "subscriptions": math.ceil(calls_per_hour / per_subscription) if r.calls else 0,
    }


def format_summary(summary: Mapping[str, Any]) -> str:
    """:func:`plan_summary`'s dict as a few aligned lines of text."""
    lines = [
        ("support", f"{summary['pairs']} pairs ({summary['regions']} regions x {summary['sizes']} sizes)"),
        (
            "calls",
            f"{summary['calls']} (<= {summary['max_regions']} regions x {summary['max_sizes']} sizes each)",
        ),
        ("lower bound", f"{summary['lower_bound']} (ratio {summary['ratio']:.3f})"),
        ("cells", f"{summary['cells']} scored, {summary['wasted_cells']} outside the support"),
        ("strategy", f"{summary['strategy']} in {summary['plan_seconds']:.3f} s"),
        (
            "sweep",
            f"every {summary['interval_minutes']:g} min = {summary['calls_per_hour']:g} calls/hour",
        ),
        (
            "subscriptions",
            f"{summary['subscriptions']} at {summary['quota_per_hour']} calls/hour per "
            f"(subscription, location) over {summary['locations']} locations",
        ),
    ]
    width = max(len(k) for k, _ in lines)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in lines)
