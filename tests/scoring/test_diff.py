"""Change detection on views: diff/apply laws, equality rules, and errors."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hypothesis_support import examples
from spotlake.errors import ConfigError
from spotlake.model import CHANGES_SCHEMA, SNAPSHOT_KEY, SNAPSHOT_SCHEMA, conform
from spotlake.scoring.diff import (
    CELL_COLUMNS,
    COUNT_COLUMNS,
    PAIR_COLUMNS,
    VALUE_COLUMNS,
    apply,
    apply_levels,
    changed_fields,
    diff,
    differences,
    latest_per_cell,
    level_differences,
    sort_view,
)

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


@settings(max_examples=examples(60), deadline=None)
@given(views())
def test_diff_of_a_view_with_itself_is_empty(a):
    changes = diff(a, a)
    assert changes.empty
    assert list(changes.columns) == list(CHANGES_SCHEMA)


@settings(max_examples=examples(80), deadline=None)
@given(view_pairs())
def test_apply_diff_gives_the_current_view(pair):
    prev, cur = pair
    changes = diff(prev, cur)
    result = apply(prev, changes)
    pd.testing.assert_frame_equal(value_frame(result), value_frame(cur))
    # The changeset only holds real changes: applying it and diffing again finds nothing.
    assert diff(result, cur).empty


@settings(max_examples=examples(60), deadline=None)
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


@pytest.mark.parametrize("replay", [apply, apply_levels])
def test_apply_refuses_a_changeset_that_does_not_fit(replay):
    prev = view(row())
    new_again = diff(view(), prev)
    if replay is apply:
        with pytest.raises(ConfigError, match="already has"):
            replay(prev, new_again)
    else:  # a consumer's replay: a new record replaces the key (forgotten by age, then seen again)
        pd.testing.assert_frame_equal(replay(prev, new_again), prev)
    ceased_missing = diff(prev, view())
    with pytest.raises(ConfigError, match="does not have"):
        replay(view(), ceased_missing)
    bad = new_again.assign(change="renamed")
    with pytest.raises(ConfigError, match="change kinds"):
        replay(view(), bad)
    with pytest.raises(ConfigError, match="repeats a key"):
        replay(view(), pd.concat([new_again, new_again], ignore_index=True))


# --- levels: what the engine's changesets mean --------------------------------------------------


def level(frame):
    """A view whose rows of one cell all carry the cell's latest cell/pair-level values."""
    return apply_levels(frame, diff(frame, frame))


def test_the_levels_partition_the_value_columns():
    levels = (COUNT_COLUMNS, CELL_COLUMNS, PAIR_COLUMNS)
    assert sorted(c for cols in levels for c in cols) == sorted(VALUE_COLUMNS)
    assert len({c for cols in levels for c in cols}) == len(VALUE_COLUMNS)


def test_level_differences_compares_each_column_at_its_level():
    own = view(row(score="High", score_value=3, spot_price=0.01, t3=1))
    latest = view(row(score="Low", score_value=1, spot_price=0.02, t3=5))
    cur = view(row(score="High", score_value=3, spot_price=0.02, t3=5))
    assert not level_differences(own, latest, cur).any()
    moved = view(row(score="Low", score_value=1, spot_price=0.03, t3=5))
    assert changed_fields(level_differences(own, latest, moved)).tolist() == ["score,score_value,spot_price"]
    with pytest.raises(ConfigError, match="aligned"):
        level_differences(own, view(), cur)


def test_latest_per_cell_takes_the_latest_observation_ties_to_the_smallest_count():
    t = pd.Timestamp(T0)
    v = view(
        row(count=1, observed_at=t, t3=1),
        row(count=5, observed_at=t + pd.Timedelta(minutes=10), t3=5),
        row(zone="1", count=5, observed_at=t, t3=50),
        row(zone="1", count=1, observed_at=t, t3=10),
    )
    got = latest_per_cell(v).set_index("zone", drop=False)
    assert sorted(got["t3"].tolist()) == [5, 10]
    assert int(got.loc["1", "desired_count"]) == 1


def test_apply_levels_spreads_a_cell_change_to_every_count_of_the_cell():
    t = pd.Timestamp(T0)
    prev = view(
        row(count=1, observed_at=t),
        row(count=5, observed_at=t + pd.Timedelta(minutes=10), score="Medium", score_value=2),
        row(zone="1", count=1, observed_at=t),
    )
    # One record at count 1 (a later run): price and T3 moved for the whole cell.
    cur_row = row(count=1, observed_at=t + pd.Timedelta(minutes=20), spot_price=0.03, t3=1)
    changes = diff(view(prev.iloc[0].to_dict()), view(cur_row))
    assert changes["changed_fields"].tolist() == ["spot_price,t3"]
    out = apply_levels(prev, changes).set_index(["zone", "desired_count"])
    regional = out[out.index.get_level_values(0).isna()]
    assert regional["spot_price"].tolist() == [0.03, 0.03] and regional["t3"].tolist() == [1, 1]
    # Count 5 keeps its own count-level values and observation time; the zonal cell is untouched.
    assert regional["score"].tolist() == ["High", "Medium"]
    assert regional["observed_at"].tolist()[1] == t + pd.Timedelta(minutes=10)
    zonal = out[out.index.get_level_values(0).notna()]
    assert zonal["spot_price"].tolist() == [0.0192] and zonal["t3"].tolist() == [5]


def test_apply_levels_keeps_cell_values_when_the_latest_key_ceases():
    t = pd.Timestamp(T0)
    prev = level(
        view(row(count=1, observed_at=t, t3=1), row(count=5, observed_at=t + pd.Timedelta(1, "h"), t3=5))
    )
    assert prev["t3"].tolist() == [5, 5]
    ceased = diff(prev, prev.iloc[:1])
    out = apply_levels(prev, ceased)
    assert out["desired_count"].tolist() == [1] and out["t3"].tolist() == [5]


@settings(max_examples=examples(20), deadline=None)
@given(view_pairs())
def test_apply_levels_of_a_diff_between_levelled_views_gives_the_current_view(pair):
    prev, cur = level(pair[0]), level(pair[1])
    assert_same = pd.testing.assert_frame_equal
    assert_same(value_frame(level(prev)), value_frame(prev))  # levelling is idempotent
    assert_same(value_frame(apply_levels(prev, diff(prev, cur))), value_frame(cur))
    assert apply_levels(prev, diff(prev, prev)).pipe(value_frame).equals(value_frame(prev))
