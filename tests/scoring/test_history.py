"""T2/T3 tiers against a brute-force reference, expiry, and exact state serialisation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hypothesis_support import examples
from spotlake.errors import ConfigError, CorruptStoreError
from spotlake.model import (
    DESIRED_COUNTS,
    EVICTION_SCHEMA,
    SKUS_SCHEMA,
    SNAPSHOT_SCHEMA,
    SPS_SCHEMA,
    conform,
    empty_frame,
    score_value,
)
from spotlake.scoring.engine import Coverage, ScoringState, score_run
from spotlake.scoring.history import STATE_FRAME, tiers, utc_timestamp

T0 = datetime(2026, 3, 1, 22, 0, tzinfo=UTC)
SCORES = ["High", "Medium", "Low", "RestrictedSkuNotAvailable", "DataNotFoundOrStale", "Brandnew"]


def reference_tier(slots: dict[int, str], k: int) -> int | None:
    """The written definition, in plain loops: counts ascending, skip unobserved, stop at a break."""
    if not slots:
        return None
    best = 0
    for count in sorted(slots):
        value = {"High": 3, "Medium": 2, "Low": 1}.get(slots[count], 0)
        if value >= k:
            best = count
        else:
            break
    return best


def as_int(x):
    return None if x is pd.NA else int(x)


# --- the pure tier function -------------------------------------------------------------------


@settings(max_examples=examples(200), deadline=None)
@given(st.lists(st.dictionaries(st.sampled_from(DESIRED_COUNTS), st.sampled_from(SCORES)), max_size=20))
def test_tiers_match_the_reference(cells):
    values = np.zeros((len(cells), len(DESIRED_COUNTS)), dtype=np.int8)
    live = np.zeros_like(values, dtype=bool)
    for i, slots in enumerate(cells):
        for count, s in slots.items():
            j = DESIRED_COUNTS.index(count)
            values[i, j] = score_value(s) or 0
            live[i, j] = True
    t2, t3 = tiers(values, live)
    assert [as_int(x) for x in t2] == [reference_tier(c, 2) for c in cells]
    assert [as_int(x) for x in t3] == [reference_tier(c, 3) for c in cells]


def test_worked_example_from_the_docs():
    # 1 High, 5 High, 10 Medium, 15 unobserved, 20 High, 25 Low, 30 High.
    slots = {1: "High", 5: "High", 10: "Medium", 20: "High", 25: "Low", 30: "High"}
    values = np.zeros((1, 11), dtype=np.int8)
    live = np.zeros((1, 11), dtype=bool)
    for c, s in slots.items():
        values[0, DESIRED_COUNTS.index(c)] = score_value(s) or 0
        live[0, DESIRED_COUNTS.index(c)] = True
    t2, t3 = tiers(values, live)
    assert (as_int(t2[0]), as_int(t3[0])) == (20, 5)
    assert (reference_tier(slots, 2), reference_tier(slots, 3)) == (20, 5)


def test_tiers_edge_cases():
    values = np.array([[1] + [3] * 10, [3] * 11, [0] * 11], dtype=np.int8)
    live = np.array([[True] * 11, [True] * 11, [False] * 11])
    t2, t3 = tiers(values, live)
    assert [as_int(x) for x in t2] == [0, 50, None]
    assert [as_int(x) for x in t3] == [0, 50, None]
    with pytest.raises(ConfigError):
        tiers(values[:, :3], live[:, :3])


def test_naive_datetimes_are_refused():
    with pytest.raises(ConfigError, match="time zone"):
        utc_timestamp(datetime(2026, 1, 1))


# --- the engine's history over random score sequences -------------------------------------------

SIZES = ("Standard_D2s_v3", "Standard_DC2as_v5")
CELLS = [
    ("Standard_D2s_v3", "eastus", "1"),
    ("Standard_D2s_v3", "eastus", None),
    ("Standard_DC2as_v5", "eastus", "2"),
]


def sps_rows(count: int, scores: dict[tuple[str, str, str | None], str]) -> pd.DataFrame:
    rows = [
        {
            "size": size,
            "region": region,
            "zone": zone,
            "desired_count": count,
            "score": s,
            "score_value": score_value(s),
            "quota_available": True,
        }
        for (size, region, zone), s in scores.items()
    ]
    frame = pd.DataFrame(rows, columns=list(SPS_SCHEMA)) if rows else empty_frame(SPS_SCHEMA)
    return conform(frame, SPS_SCHEMA, source="test")


PRICES = conform(
    pd.DataFrame(
        {
            "region": ["eastus", "eastus"],
            "region_name": ["East US", "East US"],
            "size": list(SIZES),
            "ondemand_price": [0.096, 0.11],
            "spot_price": [0.02, 0.03],
            "savings_pct": [79.2, 72.7],
        }
    ),
    {
        "region": "string",
        "region_name": "string",
        "size": "string",
        "ondemand_price": "float64",
        "spot_price": "float64",
        "savings_pct": "float64",
    },
    source="test",
)
NO_EVICTION = empty_frame(EVICTION_SCHEMA)
NO_SKUS = empty_frame(SKUS_SCHEMA)


# One step of a random history: per cell a score or "missing from this run's answer", and
# whether the run's SPS call failed for every pair (so nothing is learned and nothing ceases).
step = st.tuples(
    st.lists(st.one_of(st.none(), st.sampled_from(SCORES)), min_size=len(CELLS), max_size=len(CELLS)),
    st.booleans(),
    st.integers(1, 3),  # gap in 10-minute slots before this run (1 = on schedule)
)


# Each step is a full engine run (~0.1 s of pandas overhead), so few but long examples.
@settings(max_examples=examples(10), deadline=None)
@given(st.lists(step, min_size=11, max_size=24), st.integers(60, 400))
def test_engine_tiers_match_a_brute_force_replay(steps, max_age_minutes):
    max_age = timedelta(minutes=max_age_minutes)
    state = None
    at = T0
    # The reference: for each cell, the latest (time, score) per count that was seen.
    memory: dict[tuple[str, str, str | None], dict[int, tuple[datetime, str]]] = {c: {} for c in CELLS}
    # The tiers each cell had when it was last observed: its current T2/T3.
    current: dict[tuple[str, str, str | None], tuple[int | None, int | None]] = {}
    for i, (scores, call_ok, gap) in enumerate(steps):
        at = at + timedelta(minutes=10 * gap)
        count = DESIRED_COUNTS[i % len(DESIRED_COUNTS)]
        seen = {cell: s for cell, s in zip(CELLS, scores, strict=True) if s is not None and call_ok}
        sps = sps_rows(count, seen)
        covered = Coverage(sps_pairs=[("eastus", s) for s in SIZES] if call_ok else [], prices_complete=True)
        result = score_run(
            state,
            sps=sps,
            prices=PRICES,
            eviction=NO_EVICTION,
            skus=NO_SKUS,
            at=at,
            desired_count=count,
            covered=covered,
            max_age=max_age,
        )
        state = result.state
        # Reference update: forget old observations, drop this count where it ceased, record the new.
        for cell in CELLS:
            mem = memory[cell]
            for c in [c for c, (t, _) in mem.items() if t < at - max_age]:
                del mem[c]
            if call_ok:
                if cell in seen:
                    mem[count] = (at, seen[cell])
                else:
                    mem.pop(count, None)
        got = result.snapshot.dropna(subset=["desired_count"])
        # Rows observed now (unknown keys are served with their last values and older times).
        got = got[got["observed_at"] == pd.Timestamp(at)]
        for _, r in got.iterrows():
            cell = (r["size"], r["region"], None if r["zone"] is pd.NA else r["zone"])
            slots = {c: s for c, (_, s) in memory[cell].items()}
            assert as_int(r["t2"]) == reference_tier(slots, 2), (cell, slots)
            assert as_int(r["t3"]) == reference_tier(slots, 3), (cell, slots)
            current[cell] = (reference_tier(slots, 2), reference_tier(slots, 3))
        # Every live count of a cell carries the cell's current tiers (they are cell-level), not
        # the tiers of the day that count was last observed.
        for r in state.view().itertuples():
            cell = (r.size, r.region, None if r.zone is pd.NA else r.zone)
            assert (as_int(r.t2), as_int(r.t3)) == current[cell], (cell, r.desired_count)
        # The state remembers exactly the reference's live observations.
        live = {
            (r.size, r.region, None if r.zone is pd.NA else r.zone, int(r.desired_count)): r.score
            for r in state.view().itertuples()
        }
        expected = {(*cell, c): s for cell, mem in memory.items() for c, (_, s) in mem.items()}
        assert live == expected


# --- state serialisation ------------------------------------------------------------------------


def _some_state() -> ScoringState:
    state = None
    for i, count in enumerate(DESIRED_COUNTS[:4]):
        scores = {cell: SCORES[(i + j) % len(SCORES)] for j, cell in enumerate(CELLS)}
        state = score_run(
            state,
            sps=sps_rows(count, scores),
            prices=PRICES,
            eviction=NO_EVICTION,
            skus=NO_SKUS,
            at=T0 + timedelta(minutes=10 * i),
            desired_count=count,
            covered=Coverage(sps_pairs=[("eastus", s) for s in SIZES], prices_complete=True),
        ).state
    assert state is not None
    return state


def test_state_round_trips_through_parquet_exactly(tmp_path):
    state = _some_state()
    frames = state.to_frames()
    for name, frame in frames.items():
        frame.to_parquet(tmp_path / f"{name}.parquet", engine="pyarrow", index=False)
    back = {name: pd.read_parquet(tmp_path / f"{name}.parquet", engine="pyarrow") for name in frames}
    restored = ScoringState.from_frames(back)
    assert restored.equals(state)
    pd.testing.assert_frame_equal(restored.view(), state.view(), check_exact=True)
    assert restored.view().dtypes.astype(str).tolist() == [
        str(pd.api.types.pandas_dtype(d)) for d in SNAPSHOT_SCHEMA.values()
    ]
    # The restored state scores the next run exactly like the original.
    nxt = {
        "sps": sps_rows(25, dict.fromkeys(CELLS, "High")),
        "prices": PRICES,
        "eviction": NO_EVICTION,
        "skus": NO_SKUS,
        "at": T0 + timedelta(hours=1),
        "desired_count": 25,
        "covered": Coverage(sps_pairs=[("eastus", s) for s in SIZES], prices_complete=True),
    }
    a, b = score_run(state, **nxt), score_run(restored, **nxt)
    pd.testing.assert_frame_equal(a.changes, b.changes)
    assert a.state.equals(b.state)


def test_empty_state_round_trips(tmp_path):
    frames = ScoringState.empty().to_frames()
    frames[STATE_FRAME].to_parquet(tmp_path / "rows.parquet")
    restored = ScoringState.from_frames({STATE_FRAME: pd.read_parquet(tmp_path / "rows.parquet")})
    assert restored.n_cells == 0
    assert restored.equals(ScoringState.empty())


def test_expiry_forgets_old_observations_and_empty_cells():
    state = _some_state()
    latest = state.latest_observation()
    assert latest is not None
    kept, forgotten = state.expire(latest + timedelta(minutes=5), timedelta(minutes=15))
    assert forgotten == state.n_rows - kept.n_rows > 0
    assert (kept.view()["observed_at"] >= latest + timedelta(minutes=5) - timedelta(minutes=15)).all()
    none, _ = state.expire(latest + timedelta(days=1), timedelta(hours=1))
    assert none.n_cells == 0


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda f: f.assign(desired_count=7), "desired_count"),
        (lambda f: f.assign(observed_at=pd.NaT), "observed_at"),
        (lambda f: pd.concat([f, f.iloc[:1]]), "repeats"),
        (lambda f: f.drop(columns=["t3"]), "unreadable"),
    ],
)
def test_corrupt_state_frames_are_reported(mutate, message):
    frames = _some_state().to_frames()
    with pytest.raises(CorruptStoreError, match=message):
        ScoringState.from_frames({STATE_FRAME: mutate(frames[STATE_FRAME])})
    with pytest.raises(CorruptStoreError, match="rows"):
        ScoringState.from_frames({})
