"""``spotlake.open(store)``: the analyst's questions, one call each, against a store the real
pipeline filled from the emulator (13 runs: one whole rotation of the 11 desired counts and two
repeats, so some counts are observed twice and some of them change)."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest

import spotlake
from pipeline_support import T0, fill_store, run_time
from spotlake.analysis import VALUE_COLUMNS, Analysis
from spotlake.clock import FakeClock
from spotlake.errors import ConfigError
from spotlake.model import DESIRED_COUNTS, SNAPSHOT_KEY, SNAPSHOT_SCHEMA
from spotlake.storage import open_store

RUNS = len(DESIRED_COUNTS) + 2
LAST = run_time(RUNS - 1)


def fill(root: Path) -> Path:
    """13 committed runs of the emulator's small world into a store at ``root``."""
    return Path(str(fill_store(root, RUNS)))


@pytest.fixture(scope="module")
def store_dir(filled_store: Path) -> Path:
    return filled_store


@pytest.fixture
def lake(store_dir: Path) -> Analysis:
    return spotlake.open(str(store_dir), clock=FakeClock(LAST + timedelta(minutes=5)))


def test_open_takes_a_path_or_a_store_and_lists_the_runs(store_dir: Path, lake: Analysis) -> None:
    assert lake.runs() == [run_time(i) for i in range(RUNS)]
    again = spotlake.open(open_store(str(store_dir)))
    assert again.runs() == lake.runs()
    assert lake.runs(start=timedelta(minutes=26)) == [run_time(RUNS - 3), run_time(RUNS - 2), LAST]


def test_latest_is_the_last_runs_rows_with_the_sizes_shape(lake: Analysis) -> None:
    latest = lake.latest()
    assert not latest.empty
    assert set(latest["run_at"]) == {LAST}
    # a run collects one count; rows priced but never scored have none
    assert set(latest["desired_count"].dropna()) == {DESIRED_COUNTS[(RUNS - 1) % len(DESIRED_COUNTS)]}
    assert latest["vcpus"].notna().all() and (latest["memory_gib"] > 0).all()
    # 13 runs: every count observed, every cell that answered each time is complete
    assert latest["rotation_complete"].any()


def test_current_holds_every_counts_latest_observation_with_its_age(lake: Analysis) -> None:
    current = lake.current()
    assert not current.duplicated(subset=list(SNAPSHOT_KEY)).any()
    assert set(current["desired_count"]) == set(DESIRED_COUNTS)
    assert (current["age"] >= timedelta(minutes=5)).all()
    newest = current.groupby("desired_count")["observed_at"].max()
    assert newest[DESIRED_COUNTS[(RUNS - 1) % len(DESIRED_COUNTS)]] == LAST


def test_history_of_one_size_in_one_region_over_the_last_hour_is_one_call(lake: Analysis) -> None:
    # the analyst's first question: T3 of one size in one region over the last hour
    some = lake.latest().iloc[0]
    t3 = lake.t2t3(size=some["size"], region=some["region"], start=timedelta(hours=1))
    assert not t3.empty
    assert set(t3["size"]) == {some["size"]} and set(t3["region"]) == {some["region"]}
    assert t3["run_at"].min() >= LAST + timedelta(minutes=5) - timedelta(hours=1)
    assert t3["run_at"].is_monotonic_increasing
    assert list(t3.columns) == ["size", "region", "zone", "run_at", "t2", "t3", "rotation_complete"]


def test_history_pushes_filters_and_columns_down_and_matches_a_full_read(
    store_dir: Path, lake: Analysis
) -> None:
    some = lake.latest().iloc[0]
    mine = lake.history(size=some["size"], count=[1, 5], columns=["spot_price", "score"])
    assert list(mine.columns) == [*SNAPSHOT_KEY, "spot_price", "score", "run_at", "rotation_complete"]
    everything = pd.concat(
        [pd.read_parquet(p) for p in sorted((store_dir / "merged").rglob("*.parquet"))], ignore_index=True
    )
    expected = everything[(everything["size"] == some["size"]) & everything["desired_count"].isin([1, 5])]
    assert len(mine) == len(expected) > 0
    assert sorted(mine["spot_price"].dropna()) == sorted(expected["spot_price"].dropna())


def test_rotation_complete_marks_rows_only_once_every_count_was_seen(lake: Analysis) -> None:
    some = lake.latest().iloc[0]
    rows = lake.history(size=some["size"], region=some["region"], zone=some["zone"])
    first_rotation = rows[rows["run_at"] < run_time(len(DESIRED_COUNTS) - 1)]
    assert not first_rotation["rotation_complete"].any()
    later = rows[rows["run_at"] >= run_time(len(DESIRED_COUNTS) - 1)]
    assert later["rotation_complete"].all()


def test_cheapest_size_scored_high_across_counts_is_one_call(lake: Analysis) -> None:
    # the analyst's second question: the cheapest size scored High at every count, any region
    top = lake.offers(min_score="High", count=max(DESIRED_COUNTS), limit=1)
    current = lake.current()
    cells = current.drop_duplicates(subset=["size", "region", "zone"], keep="last")
    high = cells[(cells["t3"] >= max(DESIRED_COUNTS)) & cells["spot_price"].notna()]
    if high.empty:
        assert top.empty
    else:
        assert top.iloc[0]["spot_price"] == high["spot_price"].min()
        assert top.iloc[0]["t3"] == max(DESIRED_COUNTS)


def test_offers_rank_cheapest_first_and_filter_as_documented(lake: Analysis) -> None:
    offers = lake.offers(vcpus=4, memory=8)
    assert not offers.empty
    assert list(offers["rank"]) == list(range(1, len(offers) + 1))
    assert offers["spot_price"].is_monotonic_increasing
    assert (offers["vcpus"] >= 4).all() and (offers["memory_gib"] >= 8).all()
    assert not offers.duplicated(subset=["size", "region", "zone"]).any()
    region = offers.iloc[0]["region"]
    assert set(lake.offers(vcpus=4, regions=[region])["region"]) == {region}
    cap = float(offers["spot_price"].median())
    assert (lake.offers(vcpus=4, max_price=cap)["spot_price"] <= cap).all()
    medium = lake.offers(min_score="medium", count=5)
    assert (medium["t2"] >= 5).all()
    with pytest.raises(ConfigError, match="min_score"):
        lake.offers(min_score="Great")
    with pytest.raises(ConfigError, match="count"):
        lake.offers(count=0)


def test_what_changed_in_the_last_run_with_before_and_after_is_one_call(
    store_dir: Path, lake: Analysis
) -> None:
    # the analyst's third question
    changes = lake.changes(last_run=True)
    assert set(changes["run_at"]) <= {LAST}
    for col in VALUE_COLUMNS:
        assert f"{col}_before" in changes.columns and col in changes.columns
    changed = changes[changes["change"] == "changed"]
    assert not changed.empty, "13 runs of the emulator change some repeat observations"

    # before: a count-level field's is the key's observation when its count was last collected
    # (11 runs earlier); a cell-level field's (tiers, prices) is the cell's at its previous run
    def merged_at(i: int) -> pd.DataFrame:
        day = pd.read_parquet(store_dir / "merged" / f"date={run_time(i):%Y-%m-%d}")
        return day[day["run_at"] == run_time(i)]

    same_count = merged_at(RUNS - 1 - 11).set_index(list(SNAPSHOT_KEY))
    cells = ["size", "region", "zone"]
    previous_run = merged_at(RUNS - 2).drop_duplicates(subset=cells).set_index(cells)
    checked = 0
    for _, row in changed.head(40).iterrows():
        key = tuple(row[c] for c in SNAPSHOT_KEY)
        fields = [f for f in str(row["changed_fields"]).split(",") if f]
        assert fields, row
        for field in fields:
            assert field in VALUE_COLUMNS
            before, after = row[f"{field}_before"], row[field]
            if field in ("score", "score_value", "quota_available"):
                was = same_count.loc[key, field]
            elif key[:3] in previous_run.index:
                was = previous_run.loc[key[:3], field]
            else:
                continue
            assert same(before, was), (key, field, before, was)
            assert not same(before, after), (key, field)
            checked += 1
    assert checked > 0


def same(a: object, b: object) -> bool:
    """Equal, or both missing."""
    if pd.isna(a) or pd.isna(b):  # type: ignore[call-overload]
        return bool(pd.isna(a) and pd.isna(b))  # type: ignore[call-overload]
    return bool(a == b)


def test_changes_filter_by_key_and_window(lake: Analysis) -> None:
    some = lake.latest().iloc[0]
    mine = lake.changes(size=some["size"], start=T0, end=run_time(2))
    assert set(mine["size"]) <= {some["size"]}
    assert mine["run_at"].between(T0, run_time(2)).all()
    assert (mine["change"] == "new").all()  # the first runs see everything for the first time
    # a first observation has no before of its own; its cell's tiers and prices may (an earlier
    # count of the same cell, at an earlier run)
    assert mine[["score_before", "score_value_before", "quota_available_before"]].isna().all().all()
    first_run = mine[mine["run_at"] == T0]
    assert first_run[[f"{c}_before" for c in VALUE_COLUMNS]].isna().all().all()


def test_an_empty_store_gives_empty_frames(tmp_path: Path) -> None:
    lake = spotlake.open(str(tmp_path / "none"))
    assert lake.runs() == [] and lake.latest().empty and lake.current().empty
    assert lake.history(size="x").empty and lake.changes(last_run=True).empty and lake.offers().empty


def test_unknown_columns_are_a_clear_error(lake: Analysis) -> None:
    with pytest.raises(ConfigError, match="no column"):
        lake.history(columns=["price"])


def test_the_cli_and_the_library_rank_offers_alike(store_dir: Path, lake: Analysis) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "spotlake.cli", "offers", "--store", str(store_dir), "--vcpus", "4", "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    payload = json.loads(out.stdout)
    library = lake.offers(vcpus=4)
    assert payload["total"] == len(library) and payload["shown"] == min(20, len(library))
    assert payload["truncated"] is (len(library) > 20)
    got = [(o["size"], o["region"], o["zone"], o["spot_price"]) for o in payload["rows"]]
    want = [
        tuple(r) for r in library[["size", "region", "zone", "spot_price"]].head(20).itertuples(index=False)
    ]
    assert got == want
    assert payload["rows"][0]["observed_at"].endswith(":00+00:00")


def test_the_cli_says_when_the_store_holds_nothing(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "spotlake.cli", "offers", "--store", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 2 and "no collected run" in out.stderr


def _rows(**cols: list[object]) -> pd.DataFrame:
    n = len(next(iter(cols.values())))
    frame = pd.DataFrame({c: cols.get(c, [None] * n) for c in SNAPSHOT_SCHEMA})
    for col, dtype in SNAPSHOT_SCHEMA.items():
        frame[col] = frame[col].astype(dtype)
    return frame


def test_offers_break_a_price_tie_by_the_tier_at_the_count(tmp_path: Path) -> None:
    at = T0
    rows = _rows(
        size=["B_medium_only", "A_high_to_5"],
        region=["eastus", "eastus"],
        zone=["1", "2"],
        desired_count=[1, 1],
        score=["High", "High"],
        score_value=[3, 3],
        spot_price=[0.1, 0.1],
        t2=[50, 50],
        t3=[0, 5],
        observed_at=[at, at],
    )
    store = open_store(str(tmp_path))
    store.commit_state(expected_version=None, frames={"rows": rows}, docs={})
    lake = spotlake.open(store, clock=FakeClock(at))
    assert lake.offers()["size"].tolist() == ["A_high_to_5", "B_medium_only"]
    assert lake.offers(count=10)["size"].tolist() == ["A_high_to_5", "B_medium_only"]  # t3 5 > 0


def test_rotation_complete_ends_when_a_count_expires(tmp_path: Path) -> None:
    store = open_store(str(tmp_path))
    cell = {"size": "S", "region": "eastus", "zone": "1"}

    def change(i: int, count: int, kind: str) -> pd.DataFrame:
        frame = _rows(**{k: [v] for k, v in cell.items()}, desired_count=[count], observed_at=[run_time(i)])
        frame["change"] = pd.Series([kind], dtype="string")
        frame["changed_fields"] = pd.Series([""], dtype="string")
        return frame

    for i, count in enumerate(DESIRED_COUNTS):
        store.put_frame(kind="changes", at=run_time(i), frame=change(i, count, "new"))
    last = len(DESIRED_COUNTS)
    store.put_frame(kind="changes", at=run_time(last), frame=change(last, DESIRED_COUNTS[-1], "expired"))
    for i in (last - 2, last - 1, last, last + 1):
        row = _rows(**{k: [v] for k, v in cell.items()}, desired_count=[1], observed_at=[run_time(i)])
        store.put_frame(kind="merged", at=run_time(i), frame=row)
    flags = spotlake.open(store).history(size="S").set_index("run_at")["rotation_complete"]
    assert flags.tolist() == [False, True, False, False]  # complete from the 11th count until one expires
