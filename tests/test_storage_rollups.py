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
    """Every column, every dtype, the same order (by run, each run in key order)."""
    pd.testing.assert_frame_equal(got.reset_index(drop=True), want[list(got.columns)].reset_index(drop=True))


class Counting(LocalBackend):
    """A local backend that counts reads and writes of digest files."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.gets: list[str] = []
        self.puts: list[str] = []

    def get(self, key: str) -> bytes | None:
        if key.startswith(".digest/") and key.endswith(".parquet"):
            self.gets.append(key)
        return super().get(key)

    def put(self, key: str, data: bytes) -> None:
        if key.startswith(".digest/") and key.endswith(".parquet"):
            self.puts.append(key)
        super().put(key, data)


def test_a_closed_month_is_read_from_one_roll_up_sorted_by_key(tmp_path: Path) -> None:
    store = filled(tmp_path)
    got = store.read_history(where={"size": ["Standard_B"]})
    same(got, every_frame(store, "Standard_B"))
    assert got["run_at"].is_monotonic_increasing
    months = sorted(p.name for p in (tmp_path / ".digest" / "merged").glob("month=*"))
    assert months == ["month=2026-04.parquet"]  # May is still being collected: days only
    rolled = pd.read_parquet(tmp_path / ROLLUP)
    assert len(rolled) == len(APRIL) * len(SIZES) * 2 and rolled["size"].is_monotonic_increasing
    backend = Counting(tmp_path)
    again = ObjectStore(backend).read_history(where={"size": ["Standard_B"]})
    same(again, got)
    # April came from its roll-up alone: no April day digest was opened, nothing was rebuilt
    assert not [k for k in backend.gets if "date=2026-04" in k] and not backend.puts
    assert str(ROLLUP) in backend.gets


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


def test_a_roll_up_put_back_after_a_rerun_is_stale_by_its_epochs(tmp_path: Path) -> None:
    """A slow reader writing an old roll-up after a rerun of the same minute: the run minutes
    still match, only the day's epoch tells, and the read rebuilds."""
    store = filled(tmp_path)
    store.read_history()
    old = (tmp_path / ROLLUP).read_bytes()
    store.put_frame(kind="merged", at=APRIL[2], frame=merged(APRIL[2], price=100.0))
    store.read_history()  # rebuilt with the rerun
    (tmp_path / ROLLUP).write_bytes(old)  # ... and the old one put back
    got = store.read_history(where={"size": ["Standard_A"], "region": ["eastus"]})
    assert got.loc[got["run_at"] == APRIL[2], "spot_price"].tolist() == [100.0 + 15 / 100]


def test_a_window_ending_inside_the_month_s_last_day_is_not_served_the_roll_up(tmp_path: Path) -> None:
    store = filled(tmp_path)
    store.read_history()  # the roll-up exists
    end = APRIL[-1] - timedelta(minutes=1)  # 2026-04-30 22:59: the 23:00 run is after it
    got = store.read_history(end=end, where={"size": ["Standard_A"]})
    assert got["run_at"].max() == APRIL[-2]
    start = APRIL[0] + timedelta(minutes=1)  # the month's first run is before it
    assert store.read_history(start=start)["run_at"].min() == APRIL[1]


def test_a_day_written_without_a_column_reads_as_nulls_whatever_the_window(tmp_path: Path) -> None:
    """Frames written before a column existed: the roll-up and a day digest both give nulls."""
    import pyarrow.parquet as pq

    store = filled(tmp_path)
    path = tmp_path / "merged" / f"date={APRIL[2]:%Y-%m-%d}" / f"{APRIL[2]:%H-%M}.parquet"
    pq.write_table(pq.read_table(path).drop_columns(["t3"]), path)
    whole = store.read_history(columns=["t3"], where={"size": ["Standard_A"]})
    cut = store.read_history(start=APRIL[1], columns=["t3"], where={"size": ["Standard_A"]})
    assert whole.loc[whole["run_at"] == APRIL[2], "t3"].isna().all()
    pd.testing.assert_frame_equal(
        whole[whole["run_at"] >= APRIL[1]].reset_index(drop=True), cut.reset_index(drop=True)
    )
    assert len(store.read_history(where={"t3": [None]})) == len(SIZES) * 2


def test_an_empty_later_day_folder_does_not_close_the_month_being_collected(tmp_path: Path) -> None:
    store = filled(tmp_path)
    (tmp_path / "merged" / "date=2026-06-01").mkdir()
    store.read_history()
    months = sorted(p.name for p in (tmp_path / ".digest" / "merged").glob("month=*"))
    assert months == ["month=2026-04.parquet"]


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
    reader = ObjectStore(backend)
    got = reader.read_history(where={"size": ["Standard_D"]})
    assert backend.failed is not None and "month=" in backend.failed[1]
    same(got, want)
    backend.fail_at = 10**9  # no more failures: a build now would be kept
    same(reader.read_history(where={"size": ["Standard_D"]}), want)
    assert not (tmp_path / ROLLUP).exists()  # this reader read by days, it did not build again


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
