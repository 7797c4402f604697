"""Merging the SPS frames of one run's shards into the run's frame (``spotlake.pipeline.shards``)."""

from __future__ import annotations

import pandas as pd
import pytest

from spotlake.errors import PlanError
from spotlake.model import SPS_SCHEMA
from spotlake.pipeline.shards import merge_sps_frames


def _sps_rows(rows: list[tuple[str, str, str | None, int, str]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "size": [r[1] for r in rows],
            "region": [r[0] for r in rows],
            "zone": [r[2] for r in rows],
            "desired_count": [r[3] for r in rows],
            "score": [r[4] for r in rows],
            "score_value": [{"High": 3, "Low": 1}.get(r[4]) for r in rows],
            "quota_available": [True] * len(rows),
        }
    )


def test_shard_frames_merge_into_one_run() -> None:
    a = _sps_rows([("eastus", "D2", "1", 5, "High"), ("eastus", "D2", None, 5, "High")])
    b = _sps_rows([("westus", "D2", "1", 5, "Low"), ("eastus", "D2", "1", 5, "Low")])  # overlap
    merged = merge_sps_frames([a, b])
    assert list(merged.columns) == list(SPS_SCHEMA)
    assert len(merged) == 3
    first = merged[(merged["region"] == "eastus") & (merged["zone"] == "1")]
    assert first["score"].tolist() == ["High"]  # the first shard's row wins
    assert merge_sps_frames([]).empty
    with pytest.raises(PlanError, match="one desired count"):
        merge_sps_frames([a, _sps_rows([("westus", "D2", "1", 10, "Low")])])
