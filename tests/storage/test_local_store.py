"""The local directory store: exact round trips, plain-pandas readability, atomicity, locks, conflicts."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.dataset as pads
import pytest
from storage_samples import RAW_FRAMES, RUN_AT, changes_frame, snapshot_frame, sps_frame

from spotlake.clock import FakeClock
from spotlake.errors import ConfigError, ConflictError, CorruptStoreError, LockedError, StorageError
from spotlake.model import CHANGES_SCHEMA, SNAPSHOT_SCHEMA, empty_frame
from spotlake.storage import LocalStore, ObjectStore, open_store
from spotlake.storage.base import SnapshotStore
from spotlake.storage.local import LocalBackend
from spotlake.testing.backends import FaultyBackend

SRC = str(Path(__file__).resolve().parents[2] / "src")


@pytest.fixture
def store(tmp_path: Path, clock: FakeClock) -> LocalStore:
    return LocalStore(tmp_path / "data", clock=clock, fsync=False, keep_generations=3)


def state_frames() -> dict[str, pd.DataFrame]:
    history = pd.DataFrame(
        {
            "size": pd.array(["Standard_D2s_v3", None], dtype="string"),
            "count": pd.array([1, None], dtype="Int64"),
            "ok": pd.array([True, None], dtype="boolean"),
            "at": pd.Series([RUN_AT, None], dtype="datetime64[us, UTC]"),
            "x": [1.5, float("nan")],
        }
    ).set_index("size")
    return {"history": history, "snapshot": snapshot_frame(5)}


def state_docs() -> dict[str, dict[str, Any]]:
    return {"rotation": {"index": 3, "date": "2026-03-14"}, "quota": {"slots": [["sub", "eastus", 2]]}}


def assert_state_equal(got: dict[str, pd.DataFrame], want: dict[str, pd.DataFrame]) -> None:
    assert sorted(got) == sorted(want)
    for name, frame in want.items():
        pd.testing.assert_frame_equal(got[name], frame)


# --- frames ----------------------------------------------------------------------------------


def test_open_store_picks_the_local_store(tmp_path: Path) -> None:
    store = open_store(tmp_path / "x")
    assert isinstance(store, LocalStore)
    assert isinstance(store, SnapshotStore)
    assert not (tmp_path / "x").exists()  # nothing is created until the first write
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="not a directory"):
        open_store(tmp_path / "file")


@pytest.mark.parametrize("source", sorted(RAW_FRAMES))
def test_raw_frames_round_trip_exactly(store: LocalStore, source: str) -> None:
    frame = RAW_FRAMES[source]()
    key = store.put_frame(kind="raw", source=source, at=RUN_AT, frame=frame)
    assert key == f"raw/source={source}/date=2026-03-14/12-30.parquet"
    assert (store.root / key).is_file()
    pd.testing.assert_frame_equal(store.read_frame(kind="raw", source=source, at=RUN_AT), frame)


@pytest.mark.parametrize(("kind", "make"), [("merged", snapshot_frame), ("changes", changes_frame)])
def test_merged_and_changes_round_trip_exactly(
    store: LocalStore, kind: Any, make: Callable[[int], pd.DataFrame]
) -> None:
    frame = make(20)
    store.put_frame(kind=kind, at=RUN_AT, frame=frame)
    got = store.read_frame(kind=kind, at=RUN_AT)
    pd.testing.assert_frame_equal(got, frame)
    assert str(got["observed_at"].dtype) == "datetime64[us, UTC]"  # type: ignore[index]


def test_empty_frames_round_trip_with_their_dtypes(store: LocalStore) -> None:
    for kind, schema in (("merged", SNAPSHOT_SCHEMA), ("changes", CHANGES_SCHEMA)):
        store.put_frame(kind=kind, at=RUN_AT, frame=empty_frame(schema))  # type: ignore[arg-type]
        pd.testing.assert_frame_equal(store.read_frame(kind=kind, at=RUN_AT), empty_frame(schema))  # type: ignore[arg-type]


def test_store_is_readable_by_plain_pandas_and_pyarrow(store: LocalStore) -> None:
    for minutes in (0, 10, 24 * 60):
        at = RUN_AT + timedelta(minutes=minutes)
        for source, make in RAW_FRAMES.items():
            store.put_frame(kind="raw", source=source, at=at, frame=make())
        store.put_frame(kind="merged", at=at, frame=snapshot_frame(4))
    # pandas on one source's partition folder: a `date` partition column, the frame's columns, run_at.
    sps = pd.read_parquet(store.root / "raw" / "source=sps")
    assert len(sps) == 3 * len(sps_frame())
    assert list(sps.columns) == [*sps_frame().columns, "run_at", "date"]
    assert sorted(sps["date"].astype(str).unique()) == ["2026-03-14", "2026-03-15"]
    assert sps["run_at"].nunique() == 3
    # pyarrow.dataset with hive partitioning over every source: `source` and `date` never clash.
    table = pads.dataset(store.root / "raw", format="parquet", partitioning="hive").to_table(
        filter=pads.field("source") == "prices"
    )
    assert table.num_rows == 3 * 2
    assert len(set(table.column_names)) == len(table.column_names)
    merged = pd.read_parquet(store.root / "merged")
    assert list(merged.columns) == [*SNAPSHOT_SCHEMA, "run_at", "date"]
    assert len(merged) == 12


def test_same_run_twice_overwrites_one_file(store: LocalStore) -> None:
    store.put_frame(kind="merged", at=RUN_AT, frame=snapshot_frame(3))
    second = snapshot_frame(5)
    store.put_frame(kind="merged", at=RUN_AT.replace(second=42), frame=second)
    files = list((store.root / "merged").rglob("*"))
    assert [p.name for p in files if p.is_file()] == ["12-30.parquet"]
    pd.testing.assert_frame_equal(store.read_frame(kind="merged", at=RUN_AT), second)


def test_read_frames_filters_by_time_and_latest_finds_the_newest(store: LocalStore) -> None:
    times = [RUN_AT + timedelta(minutes=10 * i) for i in range(6)] + [RUN_AT + timedelta(days=2)]
    for i, at in enumerate(times):
        store.put_frame(kind="merged", at=at, frame=snapshot_frame(i + 1))
    everything = store.read_frames("merged")
    assert len(everything) == sum(range(1, 8))
    assert everything["run_at"].is_monotonic_increasing
    window = store.read_frames("merged", start=times[1], end=times[3])
    assert sorted(window["run_at"].unique()) == [pd.Timestamp(t) for t in times[1:4]]
    assert store.run_times("merged", start=times[5]) == times[5:]
    pd.testing.assert_frame_equal(store.latest("merged"), snapshot_frame(7))
    assert store.latest_run_at("merged") == times[-1]
    assert store.latest("changes") is None
    empty = store.read_frames("changes")
    assert list(empty.columns) == [*CHANGES_SCHEMA, "run_at"] and len(empty) == 0


def test_put_frame_validates_its_input(store: LocalStore) -> None:
    with pytest.raises(ConfigError, match="lacks the schema's columns"):
        store.put_frame(kind="merged", at=RUN_AT, frame=snapshot_frame(2).drop(columns=["t3"]))
    with pytest.raises(ConfigError, match="run_at"):
        store.put_frame(kind="merged", at=RUN_AT, frame=snapshot_frame(2).assign(run_at=1))
    with pytest.raises(ConfigError, match="source"):
        store.put_frame(kind="raw", at=RUN_AT, frame=sps_frame())
    assert not store.root.exists()


def test_unreadable_frame_is_reported_not_overwritten(store: LocalStore) -> None:
    key = store.put_frame(kind="merged", at=RUN_AT, frame=snapshot_frame(2))
    (store.root / key).write_bytes(b"garbage")
    with pytest.raises(CorruptStoreError, match=r"12-30\.parquet"):
        store.latest("merged")


# --- state -----------------------------------------------------------------------------------


def test_empty_store_has_no_state(store: LocalStore) -> None:
    state = store.read_state()
    assert state.version is None and state.frames == {} and state.docs == {}


def test_state_round_trips_exactly(store: LocalStore, clock: FakeClock) -> None:
    frames, docs = state_frames(), state_docs()
    version = store.commit_state(expected_version=None, frames=frames, docs=docs, run_id="run-1")
    state = store.read_state()
    assert state.version == version and state.run_id == "run-1" and state.committed_at == clock.now()
    assert_state_equal(state.frames, frames)
    assert state.docs == docs
    assert store.read_state(frames=False).frames == {}
    # The files are plain Parquet/JSON.
    gen = store.root / "state" / "generations" / version
    plain = pd.read_parquet(gen / "frames" / "history.parquet")
    pd.testing.assert_frame_equal(plain.reset_index(drop=True), frames["history"].reset_index(drop=True))
    assert plain.index.name == "size" and plain.index[0] == "Standard_D2s_v3"
    assert json.loads((gen / "docs" / "rotation.json").read_text()) == docs["rotation"]
    assert json.loads((store.root / "state" / "CURRENT").read_text())["version"] == version


def test_commit_replaces_the_whole_state(store: LocalStore) -> None:
    v1 = store.commit_state(expected_version=None, frames=state_frames(), docs=state_docs())
    v2 = store.commit_state(expected_version=v1, frames={}, docs={"only": {"a": 1}})
    state = store.read_state()
    assert state.version == v2 and state.frames == {} and state.docs == {"only": {"a": 1}}


def test_same_run_committed_twice_gives_identical_state(store: LocalStore) -> None:
    v1 = store.commit_state(expected_version=None, frames=state_frames(), docs=state_docs(), run_id="r")
    first = store.read_state()
    store.commit_state(expected_version=v1, frames=state_frames(), docs=state_docs(), run_id="r")
    second = store.read_state()
    assert_state_equal(second.frames, first.frames)
    assert second.docs == first.docs


def test_stale_expected_version_is_a_conflict_and_changes_nothing(store: LocalStore) -> None:
    v1 = store.commit_state(expected_version=None, frames={}, docs={"a": {"n": 1}}, run_id="winner")
    with pytest.raises(ConflictError, match="expected version None") as info:
        store.commit_state(expected_version=None, frames={}, docs={"a": {"n": 2}})
    assert v1 in str(info.value) and "winner" in str(info.value)
    with pytest.raises(ConflictError):
        store.commit_state(expected_version="g000000000007-deadbeef", frames={}, docs={})
    assert store.read_state().docs == {"a": {"n": 1}}
    assert store.generations() == [v1]


def test_two_runs_from_the_same_parent_exactly_one_commits(tmp_path: Path) -> None:
    a = LocalStore(tmp_path, fsync=False)
    b = LocalStore(tmp_path, fsync=False)
    base = a.commit_state(expected_version=None, frames={}, docs={"n": {"v": 0}})
    seen_a, seen_b = a.read_state(), b.read_state()
    a.commit_state(expected_version=seen_a.version, frames={}, docs={"n": {"v": 1}})
    with pytest.raises(ConflictError):
        b.commit_state(expected_version=seen_b.version, frames={}, docs={"n": {"v": 2}})
    assert seen_b.version == base
    assert b.read_state().docs == {"n": {"v": 1}}


def test_old_generations_are_collected_keeping_n(store: LocalStore) -> None:
    version = None
    versions = []
    for i in range(6):
        version = store.commit_state(expected_version=version, frames={}, docs={"i": {"i": i}})
        versions.append(version)
    assert store.generations() == versions[-3:]
    assert json.loads((store.root / "state" / "CURRENT").read_text())["previous"] == versions[-2:-4:-1]


def test_invalid_state_fails_before_anything_is_written(store: LocalStore) -> None:
    with pytest.raises(ConfigError, match="name"):
        store.commit_state(expected_version=None, frames={"../evil": pd.DataFrame()}, docs={})
    with pytest.raises(ConfigError, match="NaN"):
        store.commit_state(
            expected_version=None, frames={"ok": pd.DataFrame({"a": [1]})}, docs={"d": {"x": float("nan")}}
        )
    assert not store.root.exists()


def test_corrupt_pointer_is_reported(store: LocalStore) -> None:
    store.commit_state(expected_version=None, frames={}, docs={"a": {}})
    (store.root / "state" / "CURRENT").write_text("nonsense")
    with pytest.raises(CorruptStoreError, match="Recovery"):
        store.read_state()


def test_missing_generation_file_is_reported(store: LocalStore) -> None:
    version = store.commit_state(expected_version=None, frames=state_frames(), docs={})
    (store.root / "state" / "generations" / version / "frames" / "history.parquet").unlink()
    with pytest.raises(CorruptStoreError, match="incomplete"):
        store.read_state()


# --- crash safety ----------------------------------------------------------------------------


#: A commit of one frame and one doc writes 4 files: the frame, the doc, the manifest, the pointer.
COMMIT_WRITES = 4


@pytest.mark.parametrize("step", range(1, COMMIT_WRITES + 1))
def test_commit_interrupted_at_every_step_keeps_the_old_state(tmp_path: Path, step: int) -> None:
    store = LocalStore(tmp_path, fsync=False)
    old = store.commit_state(expected_version=None, frames=state_frames(), docs=state_docs(), run_id="old")
    new_frames = {"history": state_frames()["history"].iloc[:1]}
    faulty = FaultyBackend(LocalBackend(tmp_path, fsync=False), fail_at=step, error="No space left on device")
    with pytest.raises(StorageError, match="No space left"):
        ObjectStore(faulty).commit_state(expected_version=old, frames=new_frames, docs={"d": {}})
    assert faulty.failed is not None and faulty.failed[0] == ("put", "put", "put", "swap_pointer")[step - 1]
    reopened = LocalStore(tmp_path, fsync=False)
    state = reopened.read_state()
    assert state.version == old and state.run_id == "old"
    assert_state_equal(state.frames, state_frames())
    assert state.docs == state_docs()
    if step < COMMIT_WRITES:
        assert reopened.generations() == [old]  # the half-written generation was removed
    else:
        # A failed pointer write may still be applied later (a timeout on S3): the complete
        # generation is left for the next commit's garbage collection.
        assert len(reopened.generations()) == 2
    # ... and a later commit succeeds (and collects what the failed one left).
    newer = reopened.commit_state(expected_version=old, frames=new_frames, docs={})
    assert LocalStore(tmp_path).read_state().version == newer
    assert reopened.generations() == [old, newer]


_FULL_DISK = textwrap.dedent(
    """
    import resource, signal, sys
    sys.path.insert(0, {src!r})
    from spotlake.errors import StorageError
    from spotlake.storage.local import LocalBackend
    backend = LocalBackend({root!r})
    # A real write failure, no patching: the process may not write files over 64 KiB (EFBIG), as if
    # the disk filled up mid-write.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (65536, 65536))
    try:
        backend.put({key!r}, b"x" * 1_000_000)
    except StorageError as exc:
        print("StorageError:", exc)
        sys.exit(0)
    sys.exit("the write did not fail")
    """
)


def test_a_write_that_fails_mid_file_keeps_the_previous_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    """The local backend's atomic put under a real OS write failure (a file size limit)."""
    store = LocalStore(tmp_path, fsync=False)
    first = snapshot_frame(3)
    key = store.put_frame(kind="merged", at=RUN_AT, frame=first)
    proc = subprocess.run(
        [sys.executable, "-c", _FULL_DISK.format(src=SRC, root=str(tmp_path), key=key)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0 and "StorageError: cannot write" in proc.stdout, proc.stdout + proc.stderr
    pd.testing.assert_frame_equal(store.read_frame(kind="merged", at=RUN_AT), first)
    assert [p.name for p in (store.root / "merged").rglob("*") if p.is_file()] == ["12-30.parquet"]


_KILL_AT_POINTER = textwrap.dedent(
    """
    import os, signal, sys
    sys.path.insert(0, {src!r})
    from spotlake.storage import local
    from spotlake.storage.local import LocalStore
    real = os.replace
    def replace(src, dst):
        if str(dst).endswith({target!r}):
            os.kill(os.getpid(), signal.SIGKILL)   # die at the worst moment: just before publishing
        return real(src, dst)
    local.os.replace = replace
    store = LocalStore({root!r})
    state = store.read_state()
    import pandas as pd
    store.commit_state(expected_version=state.version, frames={{"big": pd.DataFrame({{"a": range(100000)}})}},
                       docs={{"d": {{"from": "killed"}}}}, run_id="killed")
    """
)


@pytest.mark.parametrize("target", ["CURRENT", "manifest.json", "big.parquet"])
def test_a_process_killed_mid_commit_leaves_the_old_state(tmp_path: Path, target: str) -> None:
    store = LocalStore(tmp_path, fsync=False)
    old = store.commit_state(expected_version=None, frames={}, docs={"d": {"from": "old"}}, run_id="old")
    code = _KILL_AT_POINTER.format(src=SRC, target=target, root=str(tmp_path))
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    state = store.read_state()
    assert state.version == old and state.docs == {"d": {"from": "old"}}
    orphans = [g for g in store.generations() if g != old]
    assert len(orphans) == 1  # the dead run's generation, never published
    newer = store.commit_state(expected_version=old, frames={}, docs={"d": {"from": "next"}})
    assert store.read_state().docs == {"d": {"from": "next"}}
    assert orphans[0] not in store.generations()  # collected by the next commit
    assert newer in store.generations()


# --- concurrency -----------------------------------------------------------------------------


def _commit_after_barrier(root: str, barrier: Any, results: Any, who: int) -> None:
    store = LocalStore(root, fsync=False)
    state = store.read_state()
    barrier.wait()
    try:
        store.commit_state(expected_version=state.version, frames={}, docs={"w": {"who": who}})
        results.put(("ok", who))
    except ConflictError:
        results.put(("conflict", who))


def test_processes_committing_on_the_same_parent_exactly_one_wins(tmp_path: Path) -> None:
    LocalStore(tmp_path, fsync=False).commit_state(expected_version=None, frames={}, docs={"w": {"who": -1}})
    ctx = multiprocessing.get_context("fork")
    n = 4
    barrier, results = ctx.Barrier(n), ctx.Queue()
    procs = [
        ctx.Process(target=_commit_after_barrier, args=(str(tmp_path), barrier, results, i)) for i in range(n)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
    outcomes = sorted(results.get(timeout=5) for _ in range(n))
    winners = [who for what, who in outcomes if what == "ok"]
    assert len(winners) == 1, outcomes
    assert LocalStore(tmp_path).read_state().docs == {"w": {"who": winners[0]}}


def test_second_locker_gets_a_clear_locked_error(tmp_path: Path, clock: FakeClock) -> None:
    a = LocalStore(tmp_path, clock=clock)
    b = LocalStore(tmp_path, clock=clock)
    with a.lock("run-a") as info:
        assert info.run_id == "run-a" and info.recovered is None
        with pytest.raises(LockedError) as exc, b.lock("run-b"):
            pass
        message = str(exc.value)
        assert "run-a" in message and f"pid {os.getpid()}" in message and str(tmp_path) in message
        # Waiting: polls on the injected clock, then gives up naming the holder.
        before = clock.monotonic()
        with pytest.raises(LockedError, match="after waiting 30 s"), b.lock("run-b", timeout=30):
            pass
        assert clock.monotonic() - before == pytest.approx(30)
        assert clock.slept and max(clock.slept) <= 1.0
    with b.lock("run-b") as info:  # released on exit
        assert info.recovered is None  # a clean release leaves no holder record


def test_a_hung_holder_is_called_out(tmp_path: Path, clock: FakeClock) -> None:
    a = LocalStore(tmp_path, clock=clock, lock_ttl=timedelta(minutes=30))
    with a.lock("slow-run"):
        clock.advance(3600)
        later = LocalStore(tmp_path, clock=clock, lock_ttl=timedelta(minutes=30))
        with pytest.raises(LockedError, match="probably hung"), later.lock("next"):
            pass


_DIE_HOLDING_LOCK = textwrap.dedent(
    """
    import os, signal, sys
    sys.path.insert(0, {src!r})
    from spotlake.storage.local import LocalStore
    with LocalStore({root!r}).lock("crashed-run"):
        os.kill(os.getpid(), signal.SIGKILL)
    """
)


def test_lock_of_a_killed_process_is_recovered_with_a_message(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    code = _DIE_HOLDING_LOCK.format(src=SRC, root=str(tmp_path))
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    with caplog.at_level("WARNING"), LocalStore(tmp_path).lock("next-run") as info:
        assert info.recovered is not None and "crashed-run" in info.recovered
    assert "crashed-run" in caplog.text and "without releasing" in caplog.text


def test_rollback_to_a_kept_generation_and_back(store: LocalStore) -> None:
    v1 = store.commit_state(expected_version=None, frames={}, docs={"n": {"v": 1}})
    v2 = store.commit_state(expected_version=v1, frames={}, docs={"n": {"v": 2}})
    with pytest.raises(ConflictError):
        store.rollback(v1, expected_version=v1)
    store.rollback(v1, expected_version=v2)
    state = store.read_state()
    assert state.version == v1 and state.docs == {"n": {"v": 1}} and state.run_id == "rollback"
    v3 = store.commit_state(expected_version=v1, frames={}, docs={"n": {"v": 3}})
    assert v3 > v2  # versions keep sorting in commit order after a rollback
    with pytest.raises(CorruptStoreError):
        store.rollback("g000000000001-00000000", expected_version=v3)
    with pytest.raises(ConfigError):
        store.rollback("latest", expected_version=v3)
