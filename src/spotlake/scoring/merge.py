"""Merge one run's sources into a snapshot frame, losing no row.

Inputs are the collectors' frames (:data:`~spotlake.model.SPS_SCHEMA`,
:data:`~spotlake.model.PRICES_SCHEMA`, :data:`~spotlake.model.EVICTION_SCHEMA`,
:data:`~spotlake.model.SKUS_SCHEMA`); the output has :data:`~spotlake.model.SNAPSHOT_SCHEMA`:

* one row per SPS row (prices and eviction joined on (region, size), family on size; ``<NA>``
  where a partner is missing);
* one row per priced (region, size) that no SPS row scored (zone, desired_count and the score
  columns ``<NA>``);
* one row per eviction (region, size) that has neither a price nor an SPS row.

Spot prices that differ by zone (AWS prices each availability zone) come as ``zone_prices``
(size, region, zone, spot_price): a row of a zone takes that zone's spot price (``<NA>`` when the
zone has none: another zone's price is not its price), and its savings are recomputed from it;
``prices`` still gives the pair's on-demand price, and the spot price of rows without a zone
(unscored pairs).

So ``rows = sps_rows - sps_duplicates + price_without_sps + eviction_without_partner``, which
:class:`MergeReport` states and the tests check. ``t2``/``t3`` are left ``<NA>`` (the history
fills them); ``observed_at`` is the run time. Duplicate keys in an input (overlapping SPS calls,
a price listed twice) keep their first row and are counted, never silently dropped. The original
system inner-joined SPS with prices and so lost every scored size without a price.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Final

import attrs
import numpy as np
import pandas as pd

from spotlake.errors import ConfigError
from spotlake.model import (
    EVICTION_SCHEMA,
    PRICES_SCHEMA,
    SKUS_SCHEMA,
    SNAPSHOT_KEY,
    SNAPSHOT_SCHEMA,
    SPS_SCHEMA,
)
from spotlake.scoring.diff import conformed, frame_repr
from spotlake.scoring.history import utc_timestamp

__all__ = [
    "ZONE_PRICES_SCHEMA",
    "MergeReport",
    "MergeResult",
    "apply_zone_prices",
    "family_by_size",
    "merge_sources",
]

_PAIR: Final = ["region", "size"]
_PRICE_COLUMNS: Final = ("region_name", "ondemand_price", "spot_price", "savings_pct")
_EVICTION_COLUMNS: Final = ("eviction_bucket", "if_score")


@attrs.frozen(kw_only=True)
class MergeReport:
    """What the merge joined and what it could not pair (counts of rows unless said otherwise)."""

    sps_rows: int
    sps_duplicates: int
    sps_with_price: int
    sps_without_price: int
    sps_without_eviction: int
    sps_without_family: int
    price_pairs: int
    price_duplicates: int
    price_without_sps: int
    eviction_pairs: int
    eviction_duplicates: int
    eviction_without_partner: int
    family_conflicts: int
    snapshot_rows: int
    #: Rows whose spot price came from ``zone_prices`` (0 when none was given).
    zone_priced: int = 0


@attrs.frozen(kw_only=True, eq=False)
class MergeResult:
    """The merged snapshot (SNAPSHOT_SCHEMA, sorted by key) and its report."""

    snapshot: pd.DataFrame = attrs.field(repr=frame_repr)
    report: MergeReport


def _dedup(frame: pd.DataFrame, key: list[str]) -> tuple[pd.DataFrame, int]:
    dup = frame.duplicated(key, keep="first").to_numpy(dtype=bool)
    if not dup.any():
        return frame, 0
    return frame[~dup].reset_index(drop=True), int(dup.sum())


def _require_keys(frame: pd.DataFrame, cols: list[str], source: str) -> None:
    for col in cols:
        missing = int(frame[col].isna().sum())
        if missing:
            raise ConfigError(f"{source}: {missing} row(s) have no {col}; fix the collector")


def family_by_size(skus: pd.DataFrame) -> tuple[pd.Series, int]:
    """One family per size from a SKUS_SCHEMA frame, and how many sizes had conflicting families.

    The first non-missing family of a size (in input order) wins; sizes whose rows disagree are
    counted so a report shows it.
    """
    known = skus.loc[skus["family"].notna().to_numpy(dtype=bool), ["size", "family"]]
    pairs = known.drop_duplicates()
    conflicts = int(pairs["size"].duplicated().sum())
    first = pairs.drop_duplicates("size", keep="first")
    return pd.Series(first["family"].array, index=pd.Index(first["size"].array), name="family"), conflicts


_ZONE_KEY: Final = ["size", "region", "zone"]
ZONE_PRICES_SCHEMA: Final = {"size": "string", "region": "string", "zone": "string", "spot_price": "float64"}


def apply_zone_prices(snapshot: pd.DataFrame, zone_prices: pd.DataFrame) -> int:
    """Give each row with a zone that zone's spot price (and the savings it makes), missing when
    the zone has none, in place; returns how many rows took a price."""
    zp = conformed(zone_prices, ZONE_PRICES_SCHEMA, source="zone prices")
    _require_keys(zp, _ZONE_KEY, "zone prices")
    zp, _ = _dedup(zp[zp["spot_price"].notna().to_numpy(dtype=bool)], _ZONE_KEY)
    found = snapshot[_ZONE_KEY].merge(zp, on=_ZONE_KEY, how="left", sort=False)["spot_price"]
    hit = found.notna().to_numpy(dtype=bool)
    zoned = snapshot["zone"].notna().to_numpy(dtype=bool)
    spot = found.to_numpy(dtype="float64", na_value=np.nan)
    ondemand = snapshot["ondemand_price"].to_numpy(dtype="float64", na_value=np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        savings = np.where(ondemand > 0, 100.0 * (1.0 - spot / ondemand), np.nan)
    # a zone's own price, or none: another zone's price is not its price
    snapshot.loc[zoned, "spot_price"] = spot[zoned]
    snapshot.loc[zoned, "savings_pct"] = savings[zoned]
    return int(hit.sum())


def merge_sources(
    sps: pd.DataFrame,
    prices: pd.DataFrame,
    eviction: pd.DataFrame,
    skus: pd.DataFrame,
    *,
    at: datetime,
    region_names: Mapping[str, str] | None = None,
    zone_prices: pd.DataFrame | None = None,
) -> MergeResult:
    """Join one run's SPS rows with prices, eviction and family (see the module docstring).

    ``region_names`` (ARM name -> display name, from the price crawl) names the regions of rows
    that have no price (a scored pair without a Linux price, an eviction-only pair).
    """
    ts = utc_timestamp(at)
    sps_c = conformed(sps, SPS_SCHEMA, source="sps")
    prices_c = conformed(prices, PRICES_SCHEMA, source="prices")
    evict_c = conformed(eviction, EVICTION_SCHEMA, source="eviction")
    skus_c = conformed(skus, SKUS_SCHEMA, source="skus")
    _require_keys(sps_c, ["size", "region", "desired_count"], "sps")
    _require_keys(prices_c, _PAIR, "prices")
    _require_keys(evict_c, _PAIR, "eviction")
    _require_keys(skus_c, ["size"], "skus")

    sps_d, sps_dups = _dedup(sps_c, list(SNAPSHOT_KEY))
    prices_d, price_dups = _dedup(prices_c, _PAIR)
    evict_d, evict_dups = _dedup(evict_c, _PAIR)
    family, conflicts = family_by_size(skus_c)

    # Pair-level offers: every (region, size) with a price and/or an eviction rate.
    offers = prices_d.merge(evict_d, on=_PAIR, how="outer", sort=False, indicator="_src")
    has_price = (offers["_src"] != "right_only").to_numpy(dtype=bool)
    scored_pairs = sps_d[_PAIR].drop_duplicates().assign(_scored=True)
    offers = offers.merge(scored_pairs, on=_PAIR, how="left", sort=False)
    unscored = offers["_scored"].isna().to_numpy(dtype=bool)
    offer_cols = [*_PAIR, *_PRICE_COLUMNS, *_EVICTION_COLUMNS]

    scored = sps_d.merge(
        offers[offer_cols].assign(_price=has_price, _evict=(offers["_src"] != "left_only").to_numpy()),
        on=_PAIR,
        how="left",
        sort=False,
    )
    with_price = scored["_price"].fillna(False).to_numpy(dtype=bool)
    with_evict = scored["_evict"].fillna(False).to_numpy(dtype=bool)
    price_only = offers[unscored & has_price][offer_cols]
    evict_only = offers[unscored & ~has_price][offer_cols]

    snapshot = pd.concat(
        [scored.drop(columns=["_price", "_evict"]), price_only, evict_only], ignore_index=True
    )
    snapshot["family"] = snapshot["size"].map(family)
    zone_priced = apply_zone_prices(snapshot, zone_prices) if zone_prices is not None else 0
    if region_names:
        named = snapshot["region"].map(dict(region_names))
        snapshot["region_name"] = snapshot["region_name"].where(snapshot["region_name"].notna(), named)
    snapshot["t2"] = pd.NA
    snapshot["t3"] = pd.NA
    snapshot["observed_at"] = ts
    snapshot = conformed(snapshot, SNAPSHOT_SCHEMA, source="merged snapshot")
    snapshot = snapshot.sort_values(list(SNAPSHOT_KEY), na_position="last", kind="stable").reset_index(
        drop=True
    )
    is_scored = snapshot["desired_count"].notna().to_numpy(dtype=bool)
    report = MergeReport(
        sps_rows=len(sps_c),
        sps_duplicates=sps_dups,
        sps_with_price=int(with_price.sum()),
        sps_without_price=int((~with_price).sum()),
        sps_without_eviction=int((~with_evict).sum()),
        sps_without_family=int(snapshot.loc[is_scored, "family"].isna().sum()),
        price_pairs=len(prices_d),
        price_duplicates=price_dups,
        price_without_sps=len(price_only),
        eviction_pairs=len(evict_d),
        eviction_duplicates=evict_dups,
        eviction_without_partner=len(evict_only),
        family_conflicts=conflicts,
        snapshot_rows=len(snapshot),
        zone_priced=zone_priced,
    )
    return MergeResult(snapshot=snapshot, report=report)
