"""Month roll-ups (spotlake.storage._rollups): a read covering a whole closed month reads it from
one file sorted by key, and answers exactly what reading every frame would, whatever changed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from spotlake.storage import ObjectStore, _rollups, open_store
from spotlake.storage.local import LocalBackend
from spotlake.testing.backends import FaultyBackend
from test_storage_history import SIZES, merged

#: Two runs on three days of April (a closed month) and one day of May (the month being collected).
APRIL = [datetime(2026, 4, d, h, tzinfo=UTC) for d in (1, 15, 30) for h in (0, 23)]
MAY = [datetime(2026, 5, 1, h, tzinfo=UTC) for h in (0, 12)]
ROLLUP = Path(".digest") / "merged" / "month=2026-04.parquet"


def filled(root: Path) -> ObjectStore:
    store = open_store(str(root))
    for at in [*APRIL, *MAY]:
        store.put_frame(kind="merged", at=at, frame=merged(at))
    return store


def every_frame(store: ObjectStore, size: str) -> pd.DataFrame:
    """What reading every frame file and filtering gives (the answer a roll-up must match)."""
    full = store.read_frames("merged")
    return full[full["size"] == size].reset_index(drop=True)


def same(got: pd.DataFrame, want: pd.DataFrame) -> None:
    cols = ["size", "region", "spot_price", "run_at"]
    pd.testing.assert_frame_equal(
        got[cols].reset_index(drop=True), want[cols].reset_index(drop=True), check_dtype=False
    )


def test_a_closed_month_is_read_from_one_roll_up_sorted_by_key(tmp_path: Path) -> None:
    store = filled(tmp_path)
    got = store.read_history(where={"size": ["Standard_B"]})
    same(got, every_frame(store, "Standard_B"))
    assert got["run_at"].is_monotonic_increasing
    months = sorted(p.name for p in (tmp_path / ".digest" / "merged").glob("month=*"))
    assert months == ["month=2026-04.parquet"]  # May is still being collected: days only
    rolled = pd.read_parquet(tmp_path / ROLLUP)
    assert len(rolled) == len(APRIL) * len(SIZES) * 2 and rolled["size"].is_monotonic_increasing
    same(store.read_history(where={"size": ["Standard_B"]}), got)  # from the roll-up this time


def test_a_window_cutting_the_month_reads_its_days_and_builds_no_roll_up(tmp_path: Path) -> None:
    store = filled(tmp_path)
    got = store.read_history(start=APRIL[1], end=MAY[0], where={"size": ["Standard_C"]})
    assert got["run_at"].drop_duplicates().tolist() == [*APRIL[1:], MAY[0]]
    assert not (tmp_path / ROLLUP).exists()
    whole = store.read_history(
        start=datetime(2026, 4, 1, tzinfo=UTC), end=datetime(2026, 4, 30, 23, 59, tzinfo=UTC)
    )
    assert (tmp_path / ROLLUP).exists() and whole["run_at"].drop_duplicates().tolist() == APRIL


def test_a_late_run_a_rerun_and_a_hand_deleted_file_are_each_seen(tmp_path: Path) -> None:
    store = filled(tmp_path)
    store.read_history()  # the roll-up is built
    late = APRIL[0] + timedelta(hours=6)
    store.put_frame(kind="merged", at=late, frame=merged(late))
    assert late in store.read_history(where={"size": ["Standard_A"]})["run_at"].tolist()
    store.put_frame(kind="merged", at=APRIL[2], frame=merged(APRIL[2], price=100.0))  # same minute
    got = store.read_history(where={"size": ["Standard_A"], "region": ["eastus"]})
    assert got.loc[got["run_at"] == APRIL[2], "spot_price"].tolist() == [100.0 + 15 / 100]
    # someone deletes a frame by hand (no spotlake call, so no new epoch): the listing differs
    (tmp_path / "merged" / f"date={APRIL[5]:%Y-%m-%d}" / f"{APRIL[5]:%H-%M}.parquet").unlink()
    got = store.read_history(where={"size": ["Standard_A"]})
    assert APRIL[5] not in got["run_at"].tolist()
    same(got, every_frame(store, "Standard_A"))


def test_a_damaged_roll_up_is_rebuilt(tmp_path: Path) -> None:
    store = filled(tmp_path)
    before = store.read_history()
    (tmp_path / ROLLUP).write_bytes(b"not parquet")
    pd.testing.assert_frame_equal(store.read_history(), before)
    assert pd.read_parquet(tmp_path / ROLLUP)["size"].is_monotonic_increasing


def test_a_store_that_cannot_keep_the_roll_up_still_answers(tmp_path: Path) -> None:
    want = every_frame(filled(tmp_path), "Standard_D")
    backend = FaultyBackend(
        LocalBackend(tmp_path), fail_at=1, fail_when=lambda op, key: op == "put" and "month=" in key
    )
    got = ObjectStore(backend).read_history(where={"size": ["Standard_D"]})
    assert backend.failed is not None and "month=" in backend.failed[1]
    same(got, want)


def test_a_month_too_big_to_roll_up_is_read_by_its_days(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = filled(tmp_path)
    monkeypatch.setattr(_rollups, "MAX_ROWS", 10)
    got = store.read_history(where={"size": ["Standard_B"]})
    assert not (tmp_path / ROLLUP).exists()
    same(got, every_frame(store, "Standard_B"))


def test_writing_into_a_closed_month_drops_its_roll_up(tmp_path: Path) -> None:
    store = filled(tmp_path)
    store.read_history()
    assert (tmp_path / ROLLUP).exists()
    store.put_frame(kind="merged", at=APRIL[0], frame=merged(APRIL[0], price=5.0))
    assert not (tmp_path / ROLLUP).exists()  # tidied; a stale one would not be read either
