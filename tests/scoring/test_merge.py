"""The merge keeps every row: counts add up, partners join, missing partners stay visible."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hypothesis_support import examples
from spotlake.errors import ConfigError, PayloadError
from spotlake.model import (
    EVICTION_SCHEMA,
    PRICES_SCHEMA,
    SKUS_SCHEMA,
    SNAPSHOT_KEY,
    SNAPSHOT_SCHEMA,
    SPS_SCHEMA,
    conform,
    if_score,
    score_value,
)
from spotlake.scoring.merge import family_by_size, merge_sources
from spotlake.serde import dump

AT = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
REGIONS = ("eastus", "westeurope", "japaneast")
SIZES = ("Standard_D2s_v3", "Standard_DC2as_v5", "Standard_E4s_v5", "Standard_NC6")


def sps_frame(rows):
    frame = pd.DataFrame(
        [
            {
                "size": s,
                "region": r,
                "zone": z,
                "desired_count": 5,
                "score": sc,
                "score_value": score_value(sc),
                "quota_available": q,
            }
            for s, r, z, sc, q in rows
        ],
        columns=list(SPS_SCHEMA),
    )
    return conform(frame, SPS_SCHEMA, source="test")


def prices_frame(pairs):
    frame = pd.DataFrame(
        [
            {
                "region": r,
                "region_name": r.upper(),
                "size": s,
                "ondemand_price": 0.1,
                "spot_price": 0.02,
                "savings_pct": 80.0,
            }
            for r, s in pairs
        ],
        columns=list(PRICES_SCHEMA),
    )
    return conform(frame, PRICES_SCHEMA, source="test")


def eviction_frame(rows):
    frame = pd.DataFrame(
        [{"region": r, "size": s, "eviction_bucket": b, "if_score": if_score(b)} for r, s, b in rows],
        columns=list(EVICTION_SCHEMA),
    )
    return conform(frame, EVICTION_SCHEMA, source="test")


def skus_frame(rows):
    frame = pd.DataFrame(
        [
            {
                "size": s,
                "region": r,
                "family": f,
                "vcpus": 2,
                "memory_gib": 8.0,
                "zones": "1,2,3",
                "restricted": False,
                "restriction": None,
            }
            for s, r, f in rows
        ],
        columns=list(SKUS_SCHEMA),
    )
    return conform(frame, SKUS_SCHEMA, source="test")


pair = st.tuples(st.sampled_from(REGIONS), st.sampled_from(SIZES))
sps_row = st.tuples(
    st.sampled_from(SIZES),
    st.sampled_from(REGIONS),
    st.sampled_from([None, "1", "2", "3"]),
    st.sampled_from(["High", "Medium", "Low", "RestrictedSkuNotAvailable", "Unheard"]),
    st.sampled_from([True, False, None]),
)


@settings(max_examples=examples(80), deadline=None)
@given(
    st.lists(sps_row, max_size=30),
    st.lists(pair, max_size=12),
    st.lists(
        st.tuples(st.sampled_from(REGIONS), st.sampled_from(SIZES), st.sampled_from(["0-5", "20+", "?"])),
        max_size=12,
    ),
)
def test_merge_loses_no_row(sps_rows, price_pairs, eviction_rows):
    result = merge_sources(
        sps_frame(sps_rows), prices_frame(price_pairs), eviction_frame(eviction_rows), skus_frame([]), at=AT
    )
    snap, rep = result.snapshot, result.report
    # Independent expectations, computed with sets.
    sps_keys = {(s, r, z, 5) for s, r, z, _, _ in sps_rows}
    sps_pairs = {(r, s) for s, r, _, _, _ in sps_rows}
    priced = set(price_pairs)
    evicted = {(r, s) for r, s, _ in eviction_rows}
    assert rep.sps_rows == len(sps_rows)
    assert rep.sps_duplicates == len(sps_rows) - len(sps_keys)
    assert rep.price_duplicates == len(price_pairs) - len(priced)
    assert rep.price_without_sps == len(priced - sps_pairs)
    assert rep.eviction_without_partner == len(evicted - priced - sps_pairs)
    assert rep.sps_without_price == sum(1 for s, r, _, _ in sps_keys if (r, s) not in priced)
    assert rep.sps_with_price + rep.sps_without_price == len(sps_keys)
    assert (
        rep.snapshot_rows == len(snap) == len(sps_keys) + rep.price_without_sps + rep.eviction_without_partner
    )
    # Every input key is present exactly once, and nothing else.
    got = snap[list(SNAPSHOT_KEY)].astype(object).where(snap[list(SNAPSHOT_KEY)].notna(), None)
    got_keys = [tuple(x) for x in got.to_numpy().tolist()]
    assert len(set(got_keys)) == len(got_keys)
    expected = sps_keys | {(s, r, None, None) for r, s in (priced | evicted) - sps_pairs}
    assert set(got_keys) == expected
    assert list(snap.columns) == list(SNAPSHOT_SCHEMA)
    assert snap.dtypes.astype(str).tolist() == [
        str(pd.api.types.pandas_dtype(d)) for d in SNAPSHOT_SCHEMA.values()
    ]


def test_partners_are_joined_and_missing_ones_stay_visible():
    sps = sps_frame(
        [
            ("Standard_DC2as_v5", "eastus", "1", "High", True),
            ("Standard_DC2as_v5", "eastus", "2", "Low", False),
            ("Standard_NC6", "westeurope", None, "RestrictedSkuNotAvailable", None),
        ]
    )
    prices = prices_frame([("eastus", "Standard_DC2as_v5"), ("japaneast", "Standard_E4s_v5")])
    eviction = eviction_frame(
        [("eastus", "Standard_DC2as_v5", "5-10"), ("westeurope", "Standard_D2s_v3", "20+")]
    )
    skus = skus_frame(
        [
            ("Standard_DC2as_v5", "eastus", "standardDCasv5Family"),
            ("Standard_DC2as_v5", "westeurope", "standardDCasv5Family"),
            ("Standard_E4s_v5", "eastus", "standardEsv5Family"),
            ("Standard_E4s_v5", "westus", "otherFamily"),
        ]
    )
    result = merge_sources(sps, prices, eviction, skus, at=AT)
    snap = result.snapshot.set_index(["size", "region", "zone"], drop=False)
    dc = snap.loc[("Standard_DC2as_v5", "eastus", "1")]
    # Case kept: the original lower-cased names and lost this join.
    assert dc["family"] == "standardDCasv5Family"
    assert dc["spot_price"] == 0.02 and dc["eviction_bucket"] == "5-10" and dc["if_score"] == 2.5
    assert dc["region_name"] == "EASTUS"
    nc = result.snapshot[result.snapshot["size"] == "Standard_NC6"].iloc[0]
    assert pd.isna(nc["spot_price"]) and pd.isna(nc["family"]) and pd.isna(nc["score_value"])
    assert nc["score"] == "RestrictedSkuNotAvailable"
    e4 = result.snapshot[result.snapshot["size"] == "Standard_E4s_v5"].iloc[0]
    assert pd.isna(e4["desired_count"]) and pd.isna(e4["score"]) and e4["family"] == "standardEsv5Family"
    d2 = result.snapshot[result.snapshot["size"] == "Standard_D2s_v3"].iloc[0]
    assert d2["eviction_bucket"] == "20+" and pd.isna(d2["ondemand_price"])
    assert (result.snapshot["observed_at"] == pd.Timestamp(AT)).all()
    assert result.snapshot["t2"].isna().all()
    rep = result.report
    assert (rep.sps_without_price, rep.price_without_sps, rep.eviction_without_partner) == (1, 1, 1)
    assert (rep.sps_without_eviction, rep.sps_without_family, rep.family_conflicts) == (1, 1, 1)
    assert rep.snapshot_rows == 5 and dump(rep)["snapshot_rows"] == 5


def test_family_is_one_per_size_first_wins():
    family, conflicts = family_by_size(
        skus_frame([("A", "r1", None), ("A", "r2", "fa"), ("A", "r3", "fb"), ("B", "r1", "fb")])
    )
    assert family.to_dict() == {"A": "fa", "B": "fb"}
    assert conflicts == 1


def test_inputs_are_validated():
    good = {"prices": prices_frame([]), "eviction": eviction_frame([]), "skus": skus_frame([])}
    with pytest.raises(PayloadError, match="sps"):
        merge_sources(pd.DataFrame({"size": ["x"]}), at=AT, **good)
    bad = sps_frame([("Standard_NC6", "eastus", None, "High", True)]).assign(region=pd.NA)
    with pytest.raises(ConfigError, match="region"):
        merge_sources(bad, at=AT, **good)


def test_zone_prices_give_each_zone_its_own_spot_price_and_savings():
    """AWS prices each zone: a scored row of a priced zone takes that zone's price; other rows keep
    the pair's price (prices_frame: on-demand 0.1, spot 0.02)."""
    sps = sps_frame(
        [
            ("m5.large", "us-east-1", "use1-az1", "High", pd.NA),
            ("m5.large", "us-east-1", "use1-az2", "Low", pd.NA),
            ("m5.large", "us-east-1", "use1-az4", "Low", pd.NA),
        ]
    )
    zone_prices = pd.DataFrame(
        {
            "size": ["m5.large", "m5.large", "m5.large"],
            "region": ["us-east-1", "us-east-1", "us-east-1"],
            "zone": ["use1-az1", "use1-az2", "use1-az9"],
            "spot_price": [0.05, None, 0.01],
        }
    )
    result = merge_sources(
        sps,
        prices_frame([("us-east-1", "m5.large")]),
        eviction_frame([]),
        skus_frame([]),
        at=AT,
        zone_prices=zone_prices,
    )
    by_zone = result.snapshot.set_index("zone")
    assert by_zone.loc["use1-az1", "spot_price"] == 0.05
    assert by_zone.loc["use1-az1", "savings_pct"] == pytest.approx(50.0)
    assert pd.isna(by_zone.loc["use1-az2", "spot_price"])  # no price for the zone: none, not another's
    assert pd.isna(by_zone.loc["use1-az4", "savings_pct"])
    assert result.report.zone_priced == 1 and len(result.snapshot) == 3
    # a priced zone of a pair without an on-demand price: its price, no savings (was a TypeError)
    no_od = merge_sources(
        sps, prices_frame([]), eviction_frame([]), skus_frame([]), at=AT, zone_prices=zone_prices
    ).snapshot.set_index("zone")
    assert no_od.loc["use1-az1", "spot_price"] == 0.05 and pd.isna(no_od.loc["use1-az1", "savings_pct"])
    with pytest.raises(ConfigError, match="zone prices"):
        merge_sources(
            sps,
            prices_frame([]),
            eviction_frame([]),
            skus_frame([]),
            at=AT,
            zone_prices=zone_prices.assign(zone=None),
        )
