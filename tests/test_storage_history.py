"""``SnapshotStore.read_history``: filtered, column-pruned reads over many runs, whole past days
through one digest file each, and never a stale answer when a day changes."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from spotlake.errors import ConfigError
from spotlake.model import SNAPSHOT_SCHEMA
from spotlake.storage import ObjectStore, open_store
from spotlake.storage.local import LocalBackend
from spotlake.testing.backends import FaultyBackend

DAY0 = datetime(2026, 5, 1, tzinfo=UTC)
#: Three runs on each of three days.
RUNS = [DAY0 + timedelta(days=d, hours=h) for d in range(3) for h in (0, 6, 12)]
SIZES = ["Standard_A", "Standard_B", "Standard_C", "Standard_D"]


def merged(at: datetime, *, price: float = 0.0) -> pd.DataFrame:
    rows = [
        {
            "size": size,
            "region": region,
            "zone": "1",
            "desired_count": 1,
            "score": "High",
            "score_value": 3,
            "spot_price": price + i + at.day / 100 + at.hour / 10_000,
            "t2": 1,
            "t3": 1,
            "observed_at": at,
        }
        for i, size in enumerate(SIZES)
        for region in ("eastus", "westus")
    ]
    frame = pd.DataFrame(rows)
    for col, dtype in SNAPSHOT_SCHEMA.items():
        column = frame[col] if col in frame else pd.Series([None] * len(frame), index=frame.index)
        frame[col] = column.astype(dtype)
    return frame[list(SNAPSHOT_SCHEMA)]


def filled(root: Path) -> ObjectStore:
    store = open_store(str(root))
    for at in RUNS:
        store.put_frame(kind="merged", at=at, frame=merged(at))
    return store


def test_filters_and_columns_give_what_a_full_read_filtered_gives(tmp_path: Path) -> None:
    store = filled(tmp_path)
    got = store.read_history(where={"size": ["Standard_B"], "region": ["westus"]}, columns=["spot_price"])
    assert list(got.columns) == ["spot_price", "run_at"]
    full = store.read_frames("merged")
    want = full[(full["size"] == "Standard_B") & (full["region"] == "westus")]
    assert got["spot_price"].tolist() == want["spot_price"].tolist()
    assert got["run_at"].tolist() == RUNS
    assert got["spot_price"].dtype == "float64" and str(got["run_at"].dtype) == "datetime64[us, UTC]"


def test_each_day_is_read_from_one_digest(tmp_path: Path) -> None:
    store = filled(tmp_path)
    store.read_history(where={"size": ["Standard_A"]})
    digests = sorted(p.name for p in (tmp_path / ".digest" / "merged").glob("*.parquet"))
    assert digests == ["date=2026-05-01.parquet", "date=2026-05-02.parquet", "date=2026-05-03.parquet"]
    # a digest holds the whole day, sorted by the key, whatever the first reader filtered
    day = pd.read_parquet(tmp_path / ".digest" / "merged" / "date=2026-05-01.parquet")
    assert len(day) == 3 * len(SIZES) * 2 and day["size"].is_monotonic_increasing


def test_a_window_cutting_a_day_keeps_only_its_runs(tmp_path: Path) -> None:
    store = filled(tmp_path)
    store.read_history()  # digests built
    got = store.read_history(start=RUNS[1], end=RUNS[4], where={"size": ["Standard_C"], "region": ["eastus"]})
    assert got["run_at"].tolist() == RUNS[1:5]


def test_a_frame_written_into_a_past_day_is_seen_by_the_next_read(tmp_path: Path) -> None:
    store = filled(tmp_path)
    store.read_history()  # digests built
    store.put_frame(kind="merged", at=RUNS[0], frame=merged(RUNS[0], price=100.0))  # the same minute again
    got = store.read_history(where={"size": ["Standard_A"], "region": ["eastus"]}, start=RUNS[0], end=RUNS[0])
    assert got["spot_price"].tolist() == [100.0 + 1 / 100]
    extra = RUNS[0] + timedelta(hours=18)  # a late run into a complete day
    store.put_frame(kind="merged", at=extra, frame=merged(extra))
    assert extra in store.read_history(where={"size": ["Standard_A"]})["run_at"].tolist()


def test_a_damaged_digest_is_rebuilt(tmp_path: Path) -> None:
    store = filled(tmp_path)
    before = store.read_history()
    (tmp_path / ".digest" / "merged" / "date=2026-05-01.parquet").write_bytes(b"not parquet")
    pd.testing.assert_frame_equal(store.read_history(), before)


def test_a_store_that_cannot_keep_the_digest_still_answers(tmp_path: Path) -> None:
    filled(tmp_path)
    backend = FaultyBackend(
        LocalBackend(tmp_path), fail_at=1, fail_when=lambda _op, key: key.startswith(".digest/")
    )
    store = ObjectStore(backend)
    got = store.read_history(where={"size": ["Standard_D"]})
    assert backend.failed is not None and backend.failed[1].startswith(".digest/")
    assert got["run_at"].tolist() == sorted(RUNS * 2)


def test_unknown_columns_and_an_empty_store(tmp_path: Path) -> None:
    store = filled(tmp_path)
    with pytest.raises(ConfigError, match="no column"):
        store.read_history(where={"sku": ["x"]})
    empty = open_store(str(tmp_path / "empty")).read_history(columns=["t3"])
    assert empty.empty and list(empty.columns) == ["t3", "run_at"]


def test_raw_frames_are_read_per_source(tmp_path: Path) -> None:
    store = open_store(str(tmp_path))
    prices = pd.DataFrame(
        {
            "region": ["eastus"],
            "region_name": ["East US"],
            "size": ["Standard_A"],
            "ondemand_price": [1.0],
            "spot_price": [0.2],
            "savings_pct": [80.0],
        }
    )
    store.put_frame(kind="raw", source="prices", at=DAY0, frame=prices)
    got = store.read_history("raw", source="prices", columns=["spot_price"])
    assert got["spot_price"].tolist() == [0.2]


class RacingBackend(LocalBackend):
    """A local backend on which, while a reader builds a digest from one frame, a rerun of the
    same minute replaces that frame (the reader goes on with the bytes it had read)."""

    def __init__(self, root: Path, *, frame: str, rerun: Callable[[], None]) -> None:
        super().__init__(root)
        self._dir, self._frame, self._rerun, self.raced = root, frame, rerun, False

    def get(self, key: str) -> bytes | None:
        data = super().get(key)
        if key == self._frame and not self.raced and (self._dir / ".digest").exists():
            self.raced = True
            self._rerun()
        return data


def test_a_rerun_landing_while_a_reader_builds_the_digest_is_never_hidden(tmp_path: Path) -> None:
    store = filled(tmp_path)
    store.read_history()  # every day has its digest (and its epoch)
    at = RUNS[0]
    writer = open_store(str(tmp_path))
    writer.put_frame(kind="merged", at=RUNS[1], frame=merged(RUNS[1]))  # the day changed: rebuilt next
    racing = RacingBackend(
        tmp_path,
        frame=f"merged/date={at:%Y-%m-%d}/{at:%H-%M}.parquet",
        rerun=lambda: writer.put_frame(kind="merged", at=at, frame=merged(at, price=100.0)),
    )
    reader = ObjectStore(racing)
    first = reader.read_history(start=at, end=at, where={"size": ["Standard_A"], "region": ["eastus"]})
    assert racing.raced
    assert first["spot_price"].tolist() == [0.01]  # the reader saw the old file: fair, it raced
    # ... but its digest was built under the day's old epoch: the next read sees the rerun
    again = store.read_history(start=at, end=at, where={"size": ["Standard_A"], "region": ["eastus"]})
    assert again["spot_price"].tolist() == [100.01]


def test_a_publish_stopped_after_its_moves_leaves_no_stale_digest(tmp_path: Path) -> None:
    at = RUNS[0]
    store = open_store(str(tmp_path))
    stage = store.stage(at)
    stage.put_frame(kind="merged", frame=merged(at))
    version = store.commit_state(expected_version=None, frames={}, docs={}, publish=stage)
    assert store.read_history()["spot_price"].max() < 10  # the digest of the day is built
    # the next commit of the same minute stops at the epoch write after its moves
    epoch_writes = lambda op, key: op == "put" and key.endswith(".epoch")  # noqa: E731
    faulty = ObjectStore(FaultyBackend(LocalBackend(tmp_path), fail_at=2, fail_when=epoch_writes))
    stage = faulty.stage(at)
    stage.put_frame(kind="merged", frame=merged(at, price=100.0))
    with contextlib.suppress(Exception):  # however the failure surfaces, the frames were moved
        faulty.commit_state(expected_version=version, frames={}, docs={}, publish=stage)
    fresh = open_store(str(tmp_path))
    fresh.publish_pending()
    assert fresh.read_frames("merged")["spot_price"].min() >= 100.0
    assert fresh.read_history()["spot_price"].min() >= 100.0


def test_a_frame_gone_while_the_digest_is_built_is_read_again_later(tmp_path: Path) -> None:
    filled(tmp_path)
    at = RUNS[4]
    key = f"merged/date={at:%Y-%m-%d}/{at:%H-%M}.parquet"

    class Vanishing(LocalBackend):
        gone = True

        def get(self, k: str) -> bytes | None:
            return None if k == key and self.gone else super().get(k)

    backend = Vanishing(tmp_path)
    flaky = ObjectStore(backend)
    assert at not in flaky.read_history(where={"size": ["Standard_A"]})["run_at"].tolist()
    backend.gone = False
    assert at in flaky.read_history(where={"size": ["Standard_A"]})["run_at"].tolist()


def test_a_day_whose_frames_all_vanished_reads_as_no_rows(tmp_path: Path) -> None:
    store = filled(tmp_path)

    class Empty(LocalBackend):
        def get(self, k: str) -> bytes | None:
            return None if k.startswith("merged/date=2026-05-02/") else super().get(k)

    got = ObjectStore(Empty(tmp_path)).read_history(where={"size": ["Standard_A"]}, columns=["t3"])
    assert len(got) == 6 * 2 and list(got.columns) == ["t3", "run_at"]  # two days of three runs
    assert store.read_history(where={"size": ["Standard_A"]})["run_at"].nunique() == 9


def test_filters_of_the_wrong_type_are_a_clear_error(tmp_path: Path) -> None:
    store = filled(tmp_path)
    with pytest.raises(ConfigError, match="desired_count"):
        store.read_history(where={"desired_count": ["one"]})
    with pytest.raises(ConfigError, match="bare string"):
        store.read_history(where={"size": "Standard_A"})  # type: ignore[dict-item]
    assert len(store.read_history(where={"desired_count": [1.0]})) == len(RUNS) * len(SIZES) * 2
    assert store.read_history(where={"zone": [None]}).empty
