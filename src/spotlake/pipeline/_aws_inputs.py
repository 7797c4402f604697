"""AWS's collected frames as the scoring engine's inputs (the engine is the Azure one, unchanged).

The engine merges per-run sources shaped as Azure's (spotlake.scoring.merge): a price per
(region, size), an eviction rate per (region, size), sizes' families. AWS's map onto them:

* ``prices``: one row per (region, instance type) with an on-demand price (Pricing API) or a spot
  price in any of its zones; ``spot_price`` is the cheapest zone's (what an unscored row shows),
  ``region_name`` the region code (AWS has no display name in these APIs);
* ``zone_prices``: every zone's own spot price, which the merge gives each scored zone's row;
* ``eviction``: the Spot Instance Advisor's frame as it is (same schema, same buckets);
* ``skus``: one row per (instance type, region) offered, with its family, vCPUs, memory and zone
  IDs (never restricted: an offering AWS lists is deployable).
"""

from __future__ import annotations

import attrs
import numpy as np
import pandas as pd

from spotlake.model import EVICTION_SCHEMA, PRICES_SCHEMA, SKUS_SCHEMA, conform
from spotlake.scoring.diff import frame_repr

__all__ = ["EngineInputs", "engine_inputs"]

_PAIR = ["region", "size"]


@attrs.frozen(kw_only=True, eq=False)
class EngineInputs:
    """What :func:`~spotlake.scoring.engine.score_run` takes besides the placement scores."""

    prices: pd.DataFrame = attrs.field(repr=frame_repr)
    zone_prices: pd.DataFrame = attrs.field(repr=frame_repr)
    eviction: pd.DataFrame = attrs.field(repr=frame_repr)
    skus: pd.DataFrame = attrs.field(repr=frame_repr)


def engine_inputs(
    *, types: pd.DataFrame, ondemand: pd.DataFrame, spot: pd.DataFrame, advisor: pd.DataFrame
) -> EngineInputs:
    """The engine's inputs from one AWS run's frames (AWS_TYPES, AWS_ONDEMAND,
    AWS_SPOT_PRICES and EVICTION schemas, see spotlake.model)."""
    zone_prices = spot[["size", "region", "zone", "spot_price"]].reset_index(drop=True)
    cheapest = (
        spot.dropna(subset=["spot_price"])
        .groupby(_PAIR, sort=True, observed=True)["spot_price"]
        .min()
        .rename("spot_price")
        .reset_index()
    )
    od = ondemand[[*_PAIR, "ondemand_price"]].drop_duplicates(_PAIR)
    prices = od.merge(cheapest, on=_PAIR, how="outer", sort=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = prices["spot_price"].astype("float64") / prices["ondemand_price"].astype("float64")
    prices["savings_pct"] = (100.0 * (1.0 - ratio)).where(prices["ondemand_price"].astype("float64") > 0)
    prices["region_name"] = prices["region"]
    skus = (
        types.sort_values(["size", "region", "zone"], kind="stable")
        .groupby(["size", "region"], sort=True, observed=True)
        .agg(
            family=("family", "first"),
            vcpus=("vcpus", "first"),
            memory_gib=("memory_gib", "first"),
            zones=("zone", lambda z: ",".join(str(v) for v in z if pd.notna(v))),
        )
        .reset_index()
    )
    skus["restricted"] = False
    skus["restriction"] = pd.NA
    return EngineInputs(
        prices=conform(prices, PRICES_SCHEMA, source="aws prices"),
        zone_prices=zone_prices,
        eviction=conform(advisor, EVICTION_SCHEMA, source="aws_advisor"),
        skus=conform(skus, SKUS_SCHEMA, source="aws_types"),
    )
