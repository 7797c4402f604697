"""score_run: what is new, changed, ceased or unknown, and the apply law on real engine runs."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hypothesis_support import examples
from spotlake.errors import ConfigError
from spotlake.model import (
    CHANGES_SCHEMA,
    DESIRED_COUNTS,
    EVICTION_SCHEMA,
    PRICES_SCHEMA,
    SKUS_SCHEMA,
    SNAPSHOT_KEY,
    SNAPSHOT_SCHEMA,
    SPS_SCHEMA,
    SpsCall,
    conform,
    empty_frame,
    score_value,
)
from spotlake.scoring.diff import VALUE_COLUMNS, apply_levels, changed_fields, differences, sort_view
from spotlake.scoring.engine import DEFAULT_MAX_AGE, Coverage, ScoringState, score_run
from spotlake.serde import dump

T0 = datetime(2026, 3, 1, 20, 0, tzinfo=UTC)
D2, DC2 = "Standard_D2s_v3", "Standard_DC2as_v5"


def sps(count, rows):
    frame = pd.DataFrame(
        [
            {
                "size": s,
                "region": r,
                "zone": z,
                "desired_count": count,
                "score": sc,
                "score_value": score_value(sc),
                "quota_available": True,
            }
            for s, r, z, sc in rows
        ],
        columns=list(SPS_SCHEMA),
    )
    return conform(frame, SPS_SCHEMA, source="test") if rows else empty_frame(SPS_SCHEMA)


def prices(pairs, spot=0.02):
    frame = pd.DataFrame(
        [
            {
                "region": r,
                "region_name": r,
                "size": s,
                "ondemand_price": 0.1,
                "spot_price": spot,
                "savings_pct": 80.0,
            }
            for r, s in pairs
        ],
        columns=list(PRICES_SCHEMA),
    )
    return conform(frame, PRICES_SCHEMA, source="test") if pairs else empty_frame(PRICES_SCHEMA)


def eviction(pairs, bucket="0-5"):
    frame = pd.DataFrame(
        [{"region": r, "size": s, "eviction_bucket": bucket, "if_score": 3.0} for r, s in pairs],
        columns=list(EVICTION_SCHEMA),
    )
    return conform(frame, EVICTION_SCHEMA, source="test") if pairs else empty_frame(EVICTION_SCHEMA)


SKUS = conform(
    pd.DataFrame(
        {
            "size": [D2, DC2],
            "region": ["eastus", "eastus"],
            "family": ["standardDSv3Family", "standardDCasv5Family"],
            "vcpus": [2, 2],
            "memory_gib": [8.0, 8.0],
            "zones": ["1,2,3", "1,2,3"],
            "restricted": [False, False],
            "restriction": [None, None],
        }
    ),
    SKUS_SCHEMA,
    source="test",
)
PAIRS = [("eastus", D2), ("eastus", DC2)]


def run(prev, count, rows, *, at, covered=None, price_pairs=PAIRS, spot=0.02, evict=PAIRS, **kw):
    cov = covered if covered is not None else Coverage(sps_pairs=PAIRS, prices_complete=True)
    return score_run(
        prev,
        sps=sps(count, rows),
        prices=prices(price_pairs, spot),
        eviction=eviction(evict),
        skus=SKUS,
        at=at,
        desired_count=count,
        covered=cov,
        **kw,
    )


BASE = [(D2, "eastus", "1", "High"), (D2, "eastus", "2", "Medium"), (DC2, "eastus", None, "Low")]


def kinds(result):
    return result.changes["change"].value_counts().to_dict()


def test_first_run_is_all_new_and_a_repeat_is_unchanged():
    first = run(None, 1, BASE, at=T0)
    assert kinds(first) == {"new": 3}
    assert list(first.changes.columns) == list(CHANGES_SCHEMA)
    assert first.changes.dtypes.astype(str).tolist() == [
        str(pd.api.types.pandas_dtype(d)) for d in CHANGES_SCHEMA.values()
    ]
    assert first.snapshot.dtypes.astype(str).tolist() == [
        str(pd.api.types.pandas_dtype(d)) for d in SNAPSHOT_SCHEMA.values()
    ]
    again = run(first.state, 1, BASE, at=T0 + timedelta(minutes=110))
    assert again.changes.empty
    assert (again.report.unchanged, again.report.new, again.report.changed) == (3, 0, 0)
    # Re-observing refreshes the observation time in the state, not in the changeset.
    assert (again.state.view()["observed_at"] == pd.Timestamp(T0 + timedelta(minutes=110))).all()


def test_a_score_change_is_reported_with_its_fields():
    first = run(None, 1, BASE, at=T0)
    rows = [(D2, "eastus", "1", "Low"), *BASE[1:]]
    second = run(first.state, 1, rows, at=T0 + timedelta(minutes=10))
    assert kinds(second) == {"changed": 1}
    change = second.changes.iloc[0]
    assert change["zone"] == "1" and change["score"] == "Low"
    assert change["changed_fields"] == "score,score_value,t2,t3"
    assert (change["t2"], change["t3"]) == (0, 0)


def test_a_rotating_count_is_compared_with_its_own_last_observation():
    r1 = run(None, 1, BASE, at=T0)
    r5 = run(r1.state, 5, [(D2, "eastus", "1", "Medium"), *BASE[1:]], at=T0 + timedelta(minutes=10))
    assert kinds(r5) == {"new": 3}  # count 5 was never seen: new, not "changed from count 1"
    # D2 zone 1: count 1 High, count 5 Medium -> T3 = 1, T2 = 5.
    row = r5.snapshot[(r5.snapshot["zone"] == "1")].iloc[0]
    assert (row["t2"], row["t3"]) == (5, 1)
    # Count 5's Medium lowered the cell's T3 when count 5 was observed (on count 5's new row).
    # Count 1 comes back with its own values unchanged: its score is compared with count 1's last
    # observation and its tiers with the cell's current ones (5, 1), so nothing is recorded again.
    back = run(r5.state, 1, BASE, at=T0 + timedelta(minutes=20))
    assert back.changes.empty and back.report.unchanged == 3
    # The state's count-1 row already carried the cell's current tiers (propagated by the count-5 run).
    zone1 = r5.state.view()
    zone1 = zone1[(zone1["zone"] == "1").fillna(False)]
    assert zone1[["desired_count", "t2", "t3"]].astype(int).to_numpy().tolist() == [[1, 5, 1], [5, 5, 1]]


def test_a_key_the_run_could_see_but_did_not_ceases_and_other_counts_stay():
    r1 = run(None, 1, BASE, at=T0)
    r5 = run(r1.state, 5, BASE, at=T0 + timedelta(minutes=10))
    gone = run(r5.state, 1, BASE[1:], at=T0 + timedelta(minutes=20))
    # Zone 2's count-1 row was last seen before count 5 was known, but its T2 moving from 1 to 5
    # was recorded on count 5's row: the cell's current T2 is already 5, nothing is re-recorded.
    assert kinds(gone) == {"ceased": 1}
    ceased = gone.changes[gone.changes["change"] == "ceased"].iloc[0]
    assert (ceased["zone"], ceased["desired_count"], ceased["score"]) == ("1", 1, "High")
    assert ceased["observed_at"] == pd.Timestamp(T0 + timedelta(minutes=20))
    keys = set(gone.state.view()[["zone", "desired_count"]].astype(object).itertuples(index=False))
    assert ("1", 1) not in keys and ("1", 5) in keys


def test_a_failed_call_is_unknown_not_ceased():
    r1 = run(None, 1, BASE, at=T0)
    failed = run(
        r1.state,
        1,
        [],
        at=T0 + timedelta(minutes=10),
        covered=Coverage(sps_pairs=[], failed_pairs=PAIRS, prices_complete=True),
    )
    assert failed.changes.empty
    assert failed.report.unknown == 3
    assert failed.state.equals(r1.state)
    # Half the calls failed: the D2 keys are unknown, the DC2 key (covered, absent) ceases.
    half = run(
        r1.state,
        1,
        [],
        at=T0 + timedelta(minutes=10),
        covered=Coverage(sps_pairs=[("eastus", DC2)], failed_pairs=[("eastus", D2)], prices_complete=True),
    )
    assert kinds(half) == {"ceased": 1} and half.report.unknown == 2
    assert half.changes["size"].tolist() == [DC2]


def test_a_pair_leaving_the_complete_price_support_ceases_every_count():
    r1 = run(None, 1, BASE, at=T0)
    r5 = run(r1.state, 5, BASE, at=T0 + timedelta(minutes=10))
    no_d2 = [("eastus", DC2)]
    cov = Coverage(sps_pairs=no_d2, prices_complete=True)
    r10 = run(r5.state, 10, BASE[2:], at=T0 + timedelta(minutes=20), covered=cov, price_pairs=no_d2)
    ceased = r10.changes[r10.changes["change"] == "ceased"]
    assert set(ceased["size"]) == {D2}
    assert sorted(ceased["desired_count"].tolist()) == [1, 1, 5, 5]
    assert set(r10.state.view()["size"]) == {DC2}


def test_an_incomplete_price_crawl_ceases_nothing_and_keeps_prices():
    r1 = run(None, 1, BASE, at=T0)
    cov = Coverage(sps_pairs=PAIRS, prices_complete=False)
    r = run(r1.state, 1, BASE, at=T0 + timedelta(minutes=10), covered=cov, price_pairs=[("eastus", DC2)])
    assert r.changes.empty
    assert r.report.carried == {"prices": 2}
    assert r.snapshot["spot_price"].notna().all()
    # Carried from the cell's latest observation of any count, so a count never seen before
    # (new rows) keeps the prices too instead of recording them as gone.
    r5 = run(r1.state, 5, BASE, at=T0 + timedelta(minutes=10), covered=cov, price_pairs=[("eastus", DC2)])
    assert kinds(r5) == {"new": 3} and r5.report.carried == {"prices": 2}
    assert r5.changes["spot_price"].notna().all()
    # With a complete crawl the same input is a real change: the price is gone.
    r_c = run(r1.state, 1, BASE, at=T0 + timedelta(minutes=10), price_pairs=[("eastus", DC2)])
    assert set(r_c.changes["change"]) == {"changed"}
    assert set(r_c.changes["changed_fields"]) == {"region_name,ondemand_price,spot_price,savings_pct"}


def test_an_incomplete_eviction_crawl_keeps_the_eviction_rate():
    r1 = run(None, 1, BASE, at=T0)
    cov = Coverage(sps_pairs=PAIRS, prices_complete=True, eviction_complete=False)
    r = run(r1.state, 1, BASE, at=T0 + timedelta(minutes=10), covered=cov, evict=[])
    assert r.changes.empty and r.report.carried == {"eviction": 3}


def test_a_price_change_is_a_change_on_the_observed_rows():
    r1 = run(None, 1, BASE, at=T0)
    same = run(r1.state, 1, BASE, at=T0 + timedelta(minutes=10), spot=0.02 + 1e-9)
    assert same.changes.empty
    moved = run(r1.state, 1, BASE, at=T0 + timedelta(minutes=10), spot=0.021)
    assert set(moved.changes["changed_fields"]) == {"spot_price"} and len(moved.changes) == 3


def test_a_zonal_run_does_not_cease_regional_keys():
    r1 = run(None, 1, BASE, at=T0)
    zonal = Coverage(sps_pairs=PAIRS, prices_complete=True, zonal=True)
    r = run(r1.state, 1, BASE[:2], at=T0 + timedelta(minutes=10), covered=zonal)
    # The regional key was not asked for (another zone mode): neither ceased nor unknown.
    assert r.changes.empty and r.report.unknown == 0
    regional = Coverage(sps_pairs=PAIRS, prices_complete=True, zonal=False)
    r = run(r1.state, 1, BASE[:2], at=T0 + timedelta(minutes=10), covered=regional)
    assert kinds(r) == {"ceased": 1} and r.changes["zone"].isna().all()


def test_old_observations_expire_and_come_back_as_new():
    r1 = run(None, 1, BASE, at=T0)
    later = T0 + DEFAULT_MAX_AGE + timedelta(minutes=10)
    r = run(r1.state, 5, [], at=later, covered=Coverage(sps_pairs=[], prices_complete=True))
    assert r.report.expired == 3 and r.state.n_cells == 0
    again = run(r.state, 1, BASE, at=later + timedelta(minutes=10))
    assert kinds(again) == {"new": 3}


def test_snapshot_keeps_price_only_rows_and_report_is_json():
    r = run(None, 1, BASE[:1], at=T0, covered=Coverage(sps_pairs=[("eastus", D2)], prices_complete=True))
    price_only = r.snapshot[r.snapshot["desired_count"].isna()]
    assert price_only["size"].tolist() == [DC2]
    assert r.report.price_without_sps == 1 and r.report.sps_without_price == 0
    data = json.loads(json.dumps(dump(r.report)))
    assert data["new"] == 1 and data["desired_count"] == 1 and data["snapshot_rows"] == 2
    assert data["merge"]["price_without_sps"] == 1


def test_coverage_from_calls():
    calls = [SpsCall(regions=["eastus", "westus"], sizes=[D2]), SpsCall(regions=["eastus"], sizes=[D2, DC2])]
    assert Coverage.of_sps(sps(1, BASE)).sps_pairs.to_numpy().tolist() == [["eastus", D2], ["eastus", DC2]]
    cov = Coverage.from_calls(calls, prices_complete=True)
    assert sorted(map(tuple, cov.sps_pairs.to_numpy().tolist())) == [
        ("eastus", D2),
        ("eastus", DC2),
        ("westus", D2),
    ]


def test_bad_runs_are_refused():
    with pytest.raises(ConfigError, match="rotation"):
        run(None, 7, [], at=T0)
    with pytest.raises(ConfigError, match="one count per run"):
        score_run(
            None,
            sps=sps(5, BASE),
            prices=prices(PAIRS),
            eviction=eviction(PAIRS),
            skus=SKUS,
            at=T0,
            desired_count=1,
            covered=Coverage(sps_pairs=PAIRS, prices_complete=True),
        )
    with pytest.raises(ConfigError, match="time zone"):
        run(None, 1, BASE, at=datetime(2026, 3, 1))
    r1 = run(None, 1, BASE, at=T0)
    with pytest.raises(ConfigError, match="time order"):
        run(r1.state, 5, BASE, at=T0 - timedelta(minutes=10))
    with pytest.raises(ConfigError, match="max_age"):
        run(None, 1, BASE, at=T0, max_age=timedelta(0))
    with pytest.raises(ConfigError, match="prices_complete=False"):
        run(r1.state, 5, BASE, at=T0 + timedelta(minutes=10), price_pairs=[])
    # Marked incomplete, the same empty crawl is fine: nothing ceases, prices are carried.
    ok = run(
        r1.state,
        1,
        BASE,
        at=T0 + timedelta(minutes=10),
        price_pairs=[],
        covered=Coverage(sps_pairs=PAIRS, prices_complete=False),
    )
    assert ok.changes.empty


# --- the apply law on engine runs -------------------------------------------------------------

CELLS = [(D2, "eastus", "1"), (D2, "eastus", "2"), (D2, "eastus", None), (DC2, "eastus", None)]
SCORES = ["High", "Medium", "Low", "RestrictedSkuNotAvailable"]

run_step = st.fixed_dictionaries(
    {
        "scores": st.lists(st.one_of(st.none(), st.sampled_from(SCORES)), min_size=4, max_size=4),
        "covered": st.sets(st.sampled_from(PAIRS)),
        "priced": st.sets(st.sampled_from(PAIRS), min_size=1),
        "prices_complete": st.booleans(),
        "gap": st.integers(1, 20),
        "spot": st.sampled_from([0.02, 0.03]),
    }
)


@settings(max_examples=examples(8), deadline=None)
@given(st.lists(run_step, min_size=3, max_size=14))
def test_applying_each_changeset_to_the_previous_view_gives_the_new_view(steps):
    cols = [*SNAPSHOT_KEY, *VALUE_COLUMNS]
    state = ScoringState.empty()
    at = T0
    for i, s in enumerate(steps):
        at = at + timedelta(minutes=10 * s["gap"])
        count = DESIRED_COUNTS[i % len(DESIRED_COUNTS)]
        # A pair's rows are only present when its call succeeded.
        rows = [
            (*cell, sc)
            for cell, sc in zip(CELLS, s["scores"], strict=True)
            if sc is not None and ("eastus", cell[0]) in s["covered"]
        ]
        cov = Coverage(sps_pairs=sorted(s["covered"]), prices_complete=s["prices_complete"])
        result = run(state, count, rows, at=at, covered=cov, price_pairs=sorted(s["priced"]), spot=s["spot"])
        prev_view = state.view()
        # The law: a consumer keeping count-level columns per key and cell/pair-level columns
        # per cell, each from the latest record, reconstructs the new state's view exactly, with no
        # knowledge of the max age (keys forgotten by age arrive as `expired` records).
        replayed = apply_levels(prev_view, result.changes)
        pd.testing.assert_frame_equal(sort_view(replayed)[cols], result.state.view()[cols])
        # And the changeset holds only real changes: each changed row differs from what that
        # consumer knew before on exactly the columns it names.
        known = apply_levels(prev_view, result.changes.iloc[:0])
        changed = result.changes[result.changes["change"] == "changed"]
        before = changed[list(SNAPSHOT_KEY)].merge(known, on=list(SNAPSHOT_KEY), how="left")
        fields = changed_fields(differences(before, changed.reset_index(drop=True)))
        assert fields.tolist() == changed["changed_fields"].tolist()
        expired = int((result.changes["change"] == "expired").sum())
        assert expired <= result.report.expired
        counted = result.report.new + result.report.changed + result.report.ceased + expired
        assert counted == len(result.changes)
        state = result.state


# --- echo: a cell- or pair-level change is recorded once, not once per count --------------------


def full_rotation(start, *, spot=0.02, rows=BASE):
    state, at = None, start
    for count in DESIRED_COUNTS:
        state = run(state, count, rows, at=at, spot=spot).state
        at += timedelta(minutes=10)
    return state, at


def test_a_price_change_is_recorded_once_not_once_per_count():
    state, at = full_rotation(T0)
    recorded = []
    for count in DESIRED_COUNTS:
        result = run(state, count, BASE, at=at, spot=0.021)
        recorded.append(result.changes)
        state, at = result.state, at + timedelta(minutes=10)
    first, rest = recorded[0], pd.concat(recorded[1:])
    # Seen at count 1: one row per observed (zone) key of that run, naming only the price.
    assert kinds_of(first) == {"changed": 3} and set(first["desired_count"]) == {1}
    assert set(first["changed_fields"]) == {"spot_price"}
    # Counts 5..50 observe the same new price: nothing more goes to the time series.
    assert rest.empty
    assert (state.view()["spot_price"] == 0.021).all()


def test_a_tier_change_is_recorded_once_not_once_per_count():
    state, at = full_rotation(T0)
    d2_1 = (state.view()["zone"] == "1").fillna(False)
    assert set(state.view().loc[d2_1, "t3"]) == {50}
    recorded = {}
    # Second rotation, starting at count 10: D2 zone 1 scores Medium at 10, so its T3 drops to 5
    # for the whole rotation (count 10's slot says Medium until count 10 is seen again).
    order = [*DESIRED_COUNTS[2:], *DESIRED_COUNTS[:2], 10]
    for i, count in enumerate(order):
        medium = count == 10 and i == 0
        rows = [(D2, "eastus", "1", "Medium"), *BASE[1:]] if medium else BASE
        result = run(state, count, rows, at=at)
        recorded[(i, count)] = result.changes
        state, at = result.state, at + timedelta(minutes=10)
    drop = recorded[(0, 10)]
    assert drop[["zone", "desired_count", "changed_fields", "t3"]].astype(object).to_numpy().tolist() == [
        ["1", 10, "score,score_value,t3", 5]
    ]
    # Counts 15..50, 1, 5 see the same tiers: no echo.
    assert all(recorded[(i, c)].empty for i, c in list(recorded)[1:-1])
    # Count 10 High again restores T3 = 50: one change, again only on count 10's row.
    back = recorded[(len(order) - 1, 10)]
    assert back[["zone", "desired_count", "changed_fields", "t3"]].astype(object).to_numpy().tolist() == [
        ["1", 10, "score,score_value,t3", 50]
    ]


def test_a_ceased_latest_observation_does_not_bring_back_stale_cell_values():
    r1 = run(None, 1, BASE, at=T0)
    r5 = run(r1.state, 5, BASE, at=T0 + timedelta(minutes=10))
    # Count 10 is new for every cell and brings a new price; the cells' other slots take it.
    r10 = run(r5.state, 10, BASE, at=T0 + timedelta(minutes=20), spot=0.03)
    assert kinds_of(r10) == {"new": 3}
    assert (r10.state.view()["spot_price"] == 0.03).all()
    # Count 10 of zone 1 ceases: the cell's latest is count 5 again, which already holds 0.03 ...
    gone = run(r10.state, 10, BASE[1:], at=T0 + timedelta(minutes=30), spot=0.03)
    assert kinds_of(gone) == {"ceased": 1}
    # ... so count 1 observing 0.03 is not a price change. Zone 1's tiers do change (for real:
    # count 10 is no longer known, so T2/T3 fall from 10 to 5) and that is recorded.
    again = run(gone.state, 1, BASE, at=T0 + timedelta(minutes=40), spot=0.03)
    assert again.changes[["zone", "changed_fields", "t2", "t3"]].astype(object).to_numpy().tolist() == [
        ["1", "t2,t3", 5, 5]
    ]


def kinds_of(changes_or_result):
    frame = getattr(changes_or_result, "changes", changes_or_result)
    return frame["change"].value_counts().to_dict()


def test_worked_example_from_the_docs():
    # docs/data-model.md, "Changeset": one cell, its price moves at 00:20, then two score changes.
    script = [
        (0, 1, "High", 0.020, "new", None, 1, 1),
        (10, 5, "High", 0.020, "new", None, 5, 5),
        (20, 10, "Medium", 0.021, "new", None, 10, 5),
        (110, 1, "High", 0.021, None, None, 10, 5),
        (120, 5, "Low", 0.021, "changed", "score,score_value,t2,t3", 1, 1),
        (130, 10, "High", 0.021, "changed", "score,score_value", 1, 1),
    ]
    state = None
    for minutes, count, score, spot, change, fields, t2, t3 in script:
        result = run(
            state, count, [(D2, "eastus", "1", score)], at=T0 + timedelta(minutes=minutes), spot=spot
        )
        state = result.state
        row = result.snapshot.dropna(subset=["desired_count"]).iloc[0]
        assert (row["t2"], row["t3"]) == (t2, t3), minutes
        if change is None:
            assert result.changes.empty, minutes
        else:
            assert result.changes["change"].tolist() == [change], minutes
            got = result.changes["changed_fields"].iloc[0]
            assert (None if got is pd.NA else got) == fields, minutes


def test_a_state_written_before_levelling_is_compared_with_each_cells_latest_observation():
    # The previous engine stored, on each count's slot, the values of that count's own day:
    # count 1 still says 0.02 and T3 = 1 while the cell's latest observation (count 5) says 0.03, 5.
    r5 = run(run(None, 1, BASE, at=T0).state, 5, BASE, at=T0 + timedelta(minutes=10), spot=0.03)
    old_view = r5.state.view()
    is_1 = (old_view["desired_count"] == 1).to_numpy()
    old_view.loc[is_1, "spot_price"] = 0.02
    old_view.loc[is_1 & (old_view["zone"] == "1").fillna(False).to_numpy(), "t3"] = 1
    old = ScoringState.from_view(old_view)
    again = run(old, 1, BASE, at=T0 + timedelta(minutes=110), spot=0.03)
    assert again.changes.empty
    # Observing count 1 rewrote its slot: the state is levelled again.
    assert (again.state.view()["spot_price"] == 0.03).all()


# --- a failed call means unknown, never gone (regressions from the ground-truth check) ----------

UNPRICED = ("westus", D2)  # scored only because it sits in a planned rectangle: no price at all


def test_a_failed_call_leaves_an_unpriced_pair_unknown_not_ceased():
    """Before: gone = ~priced & ~observed ceased it, and the next run brought it back as new."""
    rows = [*BASE, (D2, "westus", "1", "High")]
    first = run(None, 1, rows, at=T0, covered=Coverage(sps_pairs=[*PAIRS, UNPRICED], prices_complete=True))
    assert first.state.view()["region"].eq("westus").any()
    # Next rotation of count 1: the call that held westus failed (quota); prices are complete.
    failed = Coverage(sps_pairs=PAIRS, failed_pairs=[UNPRICED], prices_complete=True)
    later = T0 + timedelta(minutes=110)
    second = run(first.state, 1, BASE, at=later, covered=failed)
    assert "ceased" not in kinds(second), second.changes
    assert second.report.unknown == 1 and second.report.ceased == 0
    assert second.state.view()["region"].eq("westus").any(), "its last value is kept"
    # When the call succeeds again the key is unchanged, not new.
    third = run(second.state, 1, rows, at=later + timedelta(minutes=110), covered=first_cov(rows))
    assert third.report.new == 0


def first_cov(rows):
    return Coverage(sps_pairs=sorted({(r, s) for s, r, _, _ in rows}), prices_complete=True)


def test_a_key_the_successful_call_no_longer_answers_ceases():
    first = run(None, 1, BASE, at=T0)
    # The call for both pairs succeeded but the answer has no row for DC2 any more.
    second = run(first.state, 1, BASE[:2], at=T0 + timedelta(minutes=110))
    ceased = second.changes[second.changes["change"] == "ceased"]
    assert ceased["size"].tolist() == [DC2]


def test_a_pair_that_keeps_on_demand_but_loses_its_spot_price_ceases():
    """Before: a pair with an on-demand price counted as priced, so it never ceased."""
    first = run(None, 1, BASE, at=T0)
    od_only = prices(PAIRS).assign(spot_price=[0.02, float("nan")], savings_pct=[80.0, float("nan")])
    second = score_run(
        first.state,
        sps=sps(5, BASE[:2]),
        prices=od_only,
        eviction=eviction(PAIRS),
        skus=SKUS,
        at=T0 + timedelta(minutes=10),
        desired_count=5,
        covered=Coverage(sps_pairs=[("eastus", D2)], prices_complete=True),
    )
    ceased = second.changes[second.changes["change"] == "ceased"]
    assert ceased["size"].tolist() == [DC2] and ceased["desired_count"].tolist() == [1]


def test_keys_dropped_by_age_are_recorded_as_expired():
    """Before: expiry forgot keys silently, so a reader of the changes kept them forever."""
    first = run(None, 1, BASE, at=T0)
    # Nothing is observed for longer than the max age (every call fails).
    later = T0 + DEFAULT_MAX_AGE + timedelta(minutes=10)
    nothing = Coverage(sps_pairs=[], failed_pairs=PAIRS, prices_complete=True)
    second = run(first.state, 5, [], at=later, covered=nothing)
    assert kinds(second) == {"expired": 3}
    assert (second.changes["observed_at"] == pd.Timestamp(later)).all()
    # A reader that applies the changes holds what the state holds: nothing.
    assert apply_levels(first.state.view(), second.changes).empty and second.state.view().empty


def test_a_key_forgotten_and_seen_again_in_one_run_is_recorded_once():
    first = run(None, 1, BASE, at=T0)
    second = run(first.state, 1, BASE, at=T0 + DEFAULT_MAX_AGE + timedelta(minutes=10))
    assert kinds(second) == {"new": 3}
    replayed = apply_levels(first.state.view(), second.changes)
    cols = [*SNAPSHOT_KEY, *VALUE_COLUMNS]
    pd.testing.assert_frame_equal(sort_view(replayed)[cols], second.state.view()[cols])


def test_unpriced_rows_carry_the_region_display_name():
    """Before: a scored pair without a price had an empty region_name."""
    rows = [*BASE, (D2, "westus", "1", "High")]
    result = run(
        None, 1, rows, at=T0, covered=first_cov(rows), region_names={"eastus": "East US", "westus": "West US"}
    )
    snap = result.snapshot
    assert snap.loc[snap["region"] == "westus", "region_name"].tolist() == ["West US"]


def test_the_snapshot_serves_unknown_keys_with_their_last_values():
    """Before: a pair whose call failed was a price-only row with no score, T2 or T3."""
    first = run(None, 1, BASE, at=T0)
    later = T0 + timedelta(minutes=110)
    failed = Coverage(sps_pairs=[("eastus", DC2)], failed_pairs=[("eastus", D2)], prices_complete=True)
    second = run(first.state, 1, BASE[2:], at=later, covered=failed, spot=0.03)
    snap = second.snapshot
    d2 = snap[snap["size"] == D2].sort_values("zone")
    assert d2["score"].tolist() == ["High", "Medium"] and d2["t3"].notna().all()
    assert (d2["observed_at"] == pd.Timestamp(T0)).all(), "the rows say when they were observed"
    assert d2["spot_price"].tolist() == [0.03, 0.03], "prices are this run's"
    assert d2["desired_count"].notna().all(), "no price-only hole for the pair"
    assert second.report.stale_rows == 2


def test_a_served_row_shows_what_a_complete_crawl_says_of_its_price():
    """Before: a stale row kept its old spot price although the complete crawl had none for it."""
    first = run(None, 1, BASE, at=T0)
    failed = Coverage(sps_pairs=[("eastus", DC2)], failed_pairs=[("eastus", D2)], prices_complete=True)
    od_only = prices(PAIRS).assign(spot_price=[float("nan"), 0.02], savings_pct=[float("nan"), 80.0])
    second = score_run(
        first.state,
        sps=sps(1, BASE[2:]),
        prices=od_only,
        eviction=eviction(PAIRS),
        skus=SKUS,
        at=T0 + timedelta(minutes=110),
        desired_count=1,
        covered=failed,
    )
    d2 = second.snapshot[second.snapshot["size"] == D2]
    assert len(d2) == 2 and d2["spot_price"].isna().all() and d2["savings_pct"].isna().all()
    assert (d2["ondemand_price"] == 0.1).all() and d2["score"].notna().all()


def test_unknown_counts_only_the_keys_of_failed_calls():
    """Before: keys of the other zone mode (or dropped from the plan) were counted unknown too."""
    regional = [(D2, "eastus", None, "High"), (DC2, "eastus", None, "Low")]
    first = run(
        None, 1, regional, at=T0, covered=Coverage(sps_pairs=PAIRS, prices_complete=True, zonal=False)
    )
    zonal = Coverage(sps_pairs=PAIRS, prices_complete=True, zonal=True)
    second = run(first.state, 1, BASE[:2], at=T0 + timedelta(minutes=110), covered=zonal)
    assert second.report.unknown == 0 and second.report.stale_rows == 0


def test_a_zonal_run_whose_call_failed_does_not_count_the_regional_keys_unknown():
    """Before: the other zone mode's keys of a pair whose call failed were counted unknown and
    served stale in the snapshot (the failed-call mask was not limited to the run's zone mode)."""
    regional = [(D2, "eastus", None, "High"), (DC2, "eastus", None, "Low")]
    first = run(
        None, 1, regional, at=T0, covered=Coverage(sps_pairs=PAIRS, prices_complete=True, zonal=False)
    )
    # A zonal run of count 1 whose call for (eastus, D2) failed: only zonal keys were asked for.
    zonal = Coverage(
        sps_pairs=[("eastus", DC2)], failed_pairs=[("eastus", D2)], prices_complete=True, zonal=True
    )
    later = T0 + timedelta(minutes=110)
    second = run(first.state, 1, [(DC2, "eastus", "1", "High")], at=later, covered=zonal)
    assert second.report.unknown == 0 and second.report.stale_rows == 0
    served = second.snapshot[second.snapshot["desired_count"].notna()]
    assert served["zone"].notna().all(), "a zonal snapshot serves no regional key"
    assert "ceased" not in kinds(second), "the regional keys are not this run's to cease either"
    # And the same failure in a regional run: its regional keys are unknown (kept, served stale).
    regional_failed = Coverage(
        sps_pairs=[("eastus", DC2)], failed_pairs=[("eastus", D2)], prices_complete=True, zonal=False
    )
    third = run(first.state, 1, regional[1:], at=T0 + timedelta(minutes=120), covered=regional_failed)
    assert third.report.unknown == 1 and third.report.stale_rows == 1


def aws_sps(count, rows):
    """AWS rows: the score is the API's integer (1 ... 10)."""
    frame = sps(count, [(s, r, z, "High") for s, r, z, _ in rows])
    frame["score"] = pd.array([str(v) for *_, v in rows], dtype="string")
    frame["score_value"] = pd.array([v for *_, v in rows], dtype="Int8")
    return frame


def test_t2_and_t3_sit_where_the_cloud_s_scale_puts_them():
    """AWS: T3 = every count up to it scored >= 3, T2 >= 2 (the original's thresholds on 1-10)."""
    from spotlake.model import AWS_SCORES

    state, at = None, T0
    for count, value in zip((1, 5, 10), (7, 3, 2), strict=True):
        result = score_run(
            state,
            sps=aws_sps(count, [(D2, "eastus", "use1-az1", value)]),
            prices=prices(PAIRS),
            eviction=eviction(PAIRS),
            skus=SKUS,
            at=at,
            desired_count=count,
            covered=Coverage(sps_pairs=PAIRS, prices_complete=True),
            scale=AWS_SCORES,
        )
        state, at = result.state, at + timedelta(minutes=10)
    row = result.snapshot[result.snapshot["zone"] == "use1-az1"].iloc[0]
    assert (row["t3"], row["t2"]) == (5, 10)
    with pytest.raises(ConfigError, match=r"outside the azure scale 1\.\.3"):
        score_run(
            None,
            sps=aws_sps(1, [(D2, "eastus", "use1-az1", 7)]),
            prices=prices(PAIRS),
            eviction=eviction(PAIRS),
            skus=SKUS,
            at=T0,
            desired_count=1,
            covered=Coverage(sps_pairs=PAIRS, prices_complete=True),
        )
