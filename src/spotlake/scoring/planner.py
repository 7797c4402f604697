"""Temporary re-exports of the planner's old home; new code imports :mod:`spotlake.scoring.plan`.

The planner is the package :mod:`spotlake.scoring.plan` now, and :func:`load_pairs` (reading a CSV)
is :mod:`spotlake.collect.catalog`. This module keeps ``spotlake.scoring.planner`` importing for the
pipeline and the CLI until they import from there, and holds :func:`merge_shard_frames` (merging
the shards' SPS frames, not planning) until it moves into the pipeline. Then it is deleted.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from spotlake.collect.catalog import load_pairs
from spotlake.errors import PlanError
from spotlake.model import SPS_SCHEMA, conform, empty_frame
from spotlake.scoring.plan import (
    Pair,
    Plan,
    PlanReport,
    format_summary,
    lower_bound,
    merge_plans,
    plan_calls,
    plan_summary,
    repair_plan,
    restrict_plan,
    shard_of,
    shard_plan,
)

__all__ = [
    "Pair",
    "Plan",
    "PlanReport",
    "format_summary",
    "load_pairs",
    "lower_bound",
    "merge_plans",
    "merge_shard_frames",
    "plan_calls",
    "plan_summary",
    "repair_plan",
    "restrict_plan",
    "shard_of",
    "shard_plan",
]


def merge_shard_frames(frames: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """One run's SPS frame (``SPS_SCHEMA``) from the frames its shards' workers collected.

    Rows are concatenated in shard order; a cell two calls both scored (covers may overlap) keeps
    its first row. :class:`PlanError` when the frames mix desired counts (they are not one run).
    """
    if not frames:
        return empty_frame(SPS_SCHEMA)
    out = pd.concat([conform(f, SPS_SCHEMA, source="sps") for f in frames], ignore_index=True)
    counts = sorted(int(c) for c in out["desired_count"].unique())
    if len(counts) > 1:
        raise PlanError(f"shard frames of one run must share one desired count, got {counts}")
    out = out.drop_duplicates(subset=["size", "region", "zone"], keep="first")
    return out.sort_values(["region", "size", "zone"], na_position="first").reset_index(drop=True)
