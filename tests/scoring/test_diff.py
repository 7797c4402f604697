"""Change detection on views: diff/apply laws, equality rules, and errors."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spotlake.errors import ConfigError
from spotlake.model import CHANGES_SCHEMA, SNAPSHOT_KEY, SNAPSHOT_SCHEMA, conform
from spotlake.scoring.diff import VALUE_COLUMNS, apply, changed_fields, diff, differences, sort_view

T0 = datetime(2026, 3, 1, tzinfo=UTC)
KEYS = [
    (size, region, zone, count)
    for size in ("Standard_D2s_v3", "Standard_DC2as_v5")
    for region in ("eastus", "westeurope")
    for zone in (None, "1", "2")
    for count in (1, 5)
]


def row(size="Standard_D2s_v3", region="eastus", zone=None, count=1, **values):
    base = {
        "size": size,
        "region": region,
        "zone": zone,
        "desired_count": count,
        "region_name": "East US",
        "family": "standardDSv3Family",
        "score": "High",
        "score_value": 3,
        "quota_available": True,
        "ondemand_price": 0.096,
        "spot_price": 0.0192,
        "savings_pct": 80.0,
        "eviction_bucket": "0-5",
        "if_score": 3.0,
        "t2": 5,
        "t3": 5,
        "observed_at": pd.Timestamp(T0),
    }
    base.update(values)
    return base


def view(*rows):
    frame = pd.DataFrame(list(rows)) if rows else pd.DataFrame(columns=list(SNAPSHOT_SCHEMA))
    return conform(frame, SNAPSHOT_SCHEMA, source="test")


# Values on a 1e-4 grid so that "equal after rounding" and "exactly equal" coincide.
score = st.sampled_from(
    [
        ("High", 3),
        ("Medium", 2),
        ("Low", 1),
        ("RestrictedSkuNotAvailable", None),
        ("SomethingNew", None),
        (None, None),
    ]
)
price = st.one_of(st.none(), st.integers(0, 50_000).map(lambda x: x / 10_000))


@st.composite
def values(draw):
    s, sv = draw(score)
    return {
        "region_name": draw(st.sampled_from(["East US", None])),
        "family": draw(st.sampled_from(["standardDSv3Family", "standardDCasv5Family", None])),
        "score": s,
        "score_value": sv,
        "quota_available": draw(st.sampled_from([True, False, None])),
        "ondemand_price": draw(price),
        "spot_price": draw(price),
        "savings_pct": draw(price),
        "eviction_bucket": draw(st.sampled_from(["0-5", "20+", None])),
        "if_score": draw(st.sampled_from([3.0, 1.0, None])),
        "t2": draw(st.sampled_from([0, 1, 50, None])),
        "t3": draw(st.sampled_from([0, 5, None])),
        "observed_at": pd.Timestamp(T0) + pd.Timedelta(minutes=draw(st.integers(0, 500))),
    }


@st.composite
def views(draw):
    keys = draw(st.lists(st.sampled_from(KEYS), unique=True, max_size=len(KEYS)))
    rows = []
    for size, region, zone, count in keys:
        rows.append(row(size, region, zone, count, **draw(values())))
    return view(*rows)


@st.composite
def view_pairs(draw):
    """(prev, cur) sharing some keys, where shared rows are sometimes identical."""
    prev = draw(views())
    cur = draw(views())
    shared = cur.merge(prev[list(SNAPSHOT_KEY)], on=list(SNAPSHOT_KEY), how="inner")
    if len(shared) and draw(st.booleans()):
        # Copy some previous rows verbatim into cur so "unchanged" is exercised too.
        keep = prev.sample(frac=0.5, random_state=draw(st.integers(0, 1000)))
        rest = cur.merge(keep[list(SNAPSHOT_KEY)], on=list(SNAPSHOT_KEY), how="left", indicator=True)
        cur = pd.concat([cur[(rest["_merge"] == "left_only").to_numpy()], keep], ignore_index=True)
    return prev, conform(cur, SNAPSHOT_SCHEMA, source="test")


def value_frame(frame):
    return sort_view(frame)[[*SNAPSHOT_KEY, *VALUE_COLUMNS]]


@settings(max_examples=60, deadline=None)
@given(views())
def test_diff_of_a_view_with_itself_is_empty(a):
    changes = diff(a, a)
    assert changes.empty
    assert list(changes.columns) == list(CHANGES_SCHEMA)


@settings(max_examples=80, deadline=None)
@given(view_pairs())
def test_apply_diff_gives_the_current_view(pair):
    prev, cur = pair
    changes = diff(prev, cur)
    result = apply(prev, changes)
    pd.testing.assert_frame_equal(value_frame(result), value_frame(cur))
    # The changeset only holds real changes: applying it and diffing again finds nothing.
    assert diff(result, cur).empty


@settings(max_examples=60, deadline=None)
@given(view_pairs())
def test_change_kinds_match_the_key_sets(pair):
    prev, cur = pair
    changes = diff(prev, cur, at=T0)
    key = list(SNAPSHOT_KEY)
    prev_keys = set(map(tuple, prev[key].astype(object).where(prev[key].notna(), None).to_numpy().tolist()))
    cur_keys = set(map(tuple, cur[key].astype(object).where(cur[key].notna(), None).to_numpy().tolist()))
    kinds = changes["change"].value_counts().to_dict()
    assert kinds.get("new", 0) == len(cur_keys - prev_keys)
    assert kinds.get("ceased", 0) == len(prev_keys - cur_keys)
    assert kinds.get("changed", 0) <= len(prev_keys & cur_keys)
    assert changes.loc[changes["change"] == "changed", "changed_fields"].notna().all()
    assert (changes.loc[changes["change"] == "ceased", "observed_at"] == pd.Timestamp(T0)).all()


def test_only_observation_time_changed_is_no_change():
    prev = view(row(observed_at=pd.Timestamp(T0)))
    cur = view(row(observed_at=pd.Timestamp(T0) + pd.Timedelta(hours=1)))
    assert diff(prev, cur).empty


def test_prices_compare_after_rounding_to_one_millionth():
    prev = view(row(spot_price=0.1 + 0.2))
    assert diff(prev, view(row(spot_price=0.3))).empty
    changes = diff(prev, view(row(spot_price=0.30001)))
    assert changes["change"].tolist() == ["changed"]
    assert changes["changed_fields"].tolist() == ["spot_price"]


def test_missing_equals_missing_but_not_a_value():
    prev = view(row(if_score=None, eviction_bucket=None))
    assert diff(prev, view(row(if_score=None, eviction_bucket=None))).empty
    changes = diff(prev, view(row(if_score=2.0, eviction_bucket="10-15")))
    assert changes["changed_fields"].tolist() == ["eviction_bucket,if_score"]
    back = diff(view(row(quota_available=True)), view(row(quota_available=None)))
    assert back["changed_fields"].tolist() == ["quota_available"]


def test_regional_and_zonal_rows_are_distinct_keys():
    prev = view(row(zone=None), row(zone="1"))
    cur = view(row(zone=None, score="Low", score_value=1), row(zone="1"))
    changes = diff(prev, cur)
    assert len(changes) == 1
    assert changes["zone"].isna().all()
    assert changes["changed_fields"].tolist() == ["score,score_value"]


def test_size_names_are_case_sensitive():
    prev = view(row(size="Standard_DC2as_v5"))
    cur = view(row(size="standard_dc2as_v5"))
    assert sorted(diff(prev, cur)["change"].tolist()) == ["ceased", "new"]


def test_changed_fields_lists_columns_in_schema_order():
    matrix = np.zeros((3, len(VALUE_COLUMNS)), dtype=bool)
    matrix[0, VALUE_COLUMNS.index("t3")] = True
    matrix[0, VALUE_COLUMNS.index("score")] = True
    matrix[2, VALUE_COLUMNS.index("spot_price")] = True
    assert changed_fields(matrix).tolist() == ["score,t3", pd.NA, "spot_price"]


def test_differences_needs_aligned_frames():
    with pytest.raises(ConfigError):
        differences(view(row()), view())


def test_duplicate_keys_are_refused():
    with pytest.raises(ConfigError, match="duplicate key"):
        diff(view(row(), row()), view())


def test_apply_refuses_a_changeset_that_does_not_fit():
    prev = view(row())
    new_again = diff(view(), prev)
    with pytest.raises(ConfigError, match="already has"):
        apply(prev, new_again)
    ceased_missing = diff(prev, view())
    with pytest.raises(ConfigError, match="does not have"):
        apply(view(), ceased_missing)
    bad = new_again.assign(change="renamed")
    with pytest.raises(ConfigError, match="change kinds"):
        apply(view(), bad)
