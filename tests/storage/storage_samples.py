"""Sample frames of every schema for the storage tests (importable as ``storage_samples``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pandas as pd

from spotlake.model import (
    CHANGES_SCHEMA,
    EVICTION_SCHEMA,
    PRICES_SCHEMA,
    SKUS_SCHEMA,
    SNAPSHOT_SCHEMA,
    SPS_SCHEMA,
    conform,
)

RUN_AT = datetime(2026, 3, 14, 12, 30, tzinfo=UTC)


def sps_frame() -> pd.DataFrame:
    return conform(
        pd.DataFrame(
            {
                "size": ["Standard_D2s_v3", "Standard_DC2as_v5", "Standard_F4s"],
                "region": ["eastus", "westus2", "koreacentral"],
                "zone": ["1", None, "3"],
                "desired_count": [5, 5, 5],
                "score": ["High", "SomethingNew", "Low"],
                "score_value": [3, None, 1],
                "quota_available": [True, None, False],
            }
        ),
        SPS_SCHEMA,
        source="sps",
    )


def prices_frame() -> pd.DataFrame:
    return conform(
        pd.DataFrame(
            {
                "region": ["eastus", "westus2"],
                "region_name": ["East US", None],
                "size": ["Standard_D2s_v3", "Standard_DC2as_v5"],
                "ondemand_price": [0.096, float("nan")],
                "spot_price": [0.012, 0.02],
                "savings_pct": [87.5, float("nan")],
            }
        ),
        PRICES_SCHEMA,
        source="prices",
    )


def eviction_frame() -> pd.DataFrame:
    return conform(
        pd.DataFrame(
            {
                "region": ["eastus", "westus2"],
                "size": ["Standard_D2s_v3", "Standard_DC2as_v5"],
                "eviction_bucket": ["0-5", "weird"],
                "if_score": [3.0, float("nan")],
            }
        ),
        EVICTION_SCHEMA,
        source="eviction",
    )


def skus_frame() -> pd.DataFrame:
    return conform(
        pd.DataFrame(
            {
                "size": ["Standard_D2s_v3", "Standard_DC2as_v5"],
                "region": ["eastus", "westus2"],
                "family": ["standardDSv3Family", None],
                "vcpus": [2, None],
                "memory_gib": [8.0, float("nan")],
                "zones": ["1,2,3", None],
                "restricted": [False, None],
                "restriction": [None, "NotAvailableForSubscription"],
            }
        ),
        SKUS_SCHEMA,
        source="skus",
    )


def snapshot_frame(n: int = 3, *, observed_at: datetime = RUN_AT) -> pd.DataFrame:
    sizes = [f"Standard_D{i}s_v5" for i in range(n)]
    data: dict[str, Any] = {
        "size": sizes,
        "region": ["eastus"] * n,
        "zone": [None if i % 3 == 0 else str(i % 3) for i in range(n)],
        "desired_count": [None if i % 7 == 6 else 5 for i in range(n)],
        "region_name": ["East US"] * n,
        "family": ["standardDSv5Family" if i % 2 else None for i in range(n)],
        "score": [["High", "Medium", "Low", "DataNotFoundOrStale"][i % 4] for i in range(n)],
        "score_value": [[3, 2, 1, None][i % 4] for i in range(n)],
        "quota_available": [[True, False, None][i % 3] for i in range(n)],
        "ondemand_price": [0.1 + i / 1000 if i % 5 else float("nan") for i in range(n)],
        "spot_price": [0.01 + i / 10000 for i in range(n)],
        "savings_pct": [80.0 + i % 10 for i in range(n)],
        "eviction_bucket": [["0-5", "5-10", "20+"][i % 3] for i in range(n)],
        "if_score": [[3.0, 2.5, 1.0][i % 3] for i in range(n)],
        "t2": [[5, None, 1][i % 3] for i in range(n)],
        "t3": [[5, None, None][i % 3] for i in range(n)],
        "observed_at": [observed_at] * n,
    }
    return conform(pd.DataFrame(data), SNAPSHOT_SCHEMA, source="test")


def changes_frame(n: int = 3, *, observed_at: datetime = RUN_AT) -> pd.DataFrame:
    snap = snapshot_frame(n, observed_at=observed_at)
    snap["change"] = [["new", "changed", "ceased"][i % 3] for i in range(n)]
    snap["changed_fields"] = [[None, "score,t2", None][i % 3] for i in range(n)]
    return conform(snap, CHANGES_SCHEMA, source="test")


RAW_FRAMES = {"sps": sps_frame, "prices": prices_frame, "eviction": eviction_frame, "skus": skus_frame}
