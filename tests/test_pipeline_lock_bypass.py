"""With the run lock bypassed, the commit protocol alone keeps the data true (local store and S3).

A lock can be bypassed in production: on S3 a run that stalls past the lock's TTL loses it. Two
runs of one time, and of adjacent times, are interleaved at the worst moment (the other run
commits while this one is about to): no committed frame ever changes, no run that did not commit
is ever visible, and ``run_times()`` equals the committed runs.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from pipeline_support import emulator, in_process_access, run_time, small_world
from spotlake.pipeline import RunReport, RunStatus, run_cycle
from spotlake.storage import open_store
from spotlake.storage.base import FrameKind, LockInfo

KINDS = [
    ("raw", "prices"),
    ("raw", "sps"),
    ("raw", "eviction"),
    ("raw", "skus"),
    ("merged", None),
    ("changes", None),
]


class NoLock:
    """A store whose run lock is bypassed; ``meanwhile`` runs once, when this run has collected and
    scored and is about to write its frames (the worst moment: the other run commits first)."""

    def __init__(self, inner: Any, meanwhile: Callable[[], None] | None = None) -> None:
        self.inner = inner
        self.meanwhile = meanwhile

    @contextlib.contextmanager
    def lock(self, run_id: str, *, timeout: float = 0.0) -> Iterator[LockInfo]:
        yield LockInfo(run_id=run_id, owner="nobody (lock bypassed)", acquired_at=run_time(0))

    def stage(self, at: datetime) -> Any:
        if self.meanwhile is not None:
            hook, self.meanwhile = self.meanwhile, None
            hook()
        return self.inner.stage(at)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@pytest.fixture(params=["local", "s3"])
def open_target(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Any]:
    if request.param == "local":
        yield lambda: open_store(str(tmp_path / "store"))
        return
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.setenv(var, "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket="lake")
        yield lambda: open_store("s3://lake/bypass", s3_client=client)


def fingerprint(store: Any, at: datetime) -> dict[tuple[str, str | None], str]:
    """A digest of every frame of one run, as readers see it."""
    out = {}
    for kind, source in KINDS:
        frame = store.read_frame(kind=kind, source=source, at=at)
        assert frame is not None, (kind, source, at)
        out[(kind, source)] = hashlib.sha256(frame.to_json(date_format="iso").encode()).hexdigest()
    return out


def cycle(emu: Any, store: Any, at: datetime) -> RunReport:
    emu.clock.set(at)
    return run_cycle(at, store=store, azure=in_process_access(emu), clock=emu.clock)


def assert_only_committed_runs_are_visible(store: Any, committed: list[datetime]) -> None:
    for kind, source in KINDS:
        assert store.run_times(kind, source=source) == sorted(committed), (kind, source)
    assert store.read_frames(FrameKind.MERGED)["run_at"].drop_duplicates().tolist() == sorted(committed)


def test_two_runs_of_one_time_the_loser_never_touches_the_winners_frames(open_target: Any) -> None:
    emu = emulator()
    # The other run sees other scores (another world), so its frames differ from this run's.
    other_emu = emulator(small_world(seed=12))
    store = open_target()
    assert cycle(emu, store, run_time(0)).status is RunStatus.COMMITTED
    at = run_time(1)
    won: list[RunReport] = []
    committed: dict[tuple[str, str | None], str] = {}

    def the_other_run_commits_first() -> None:
        won.append(cycle(other_emu, NoLock(open_target()), at))
        committed.update(fingerprint(store, at))

    lost = cycle(emu, NoLock(store, meanwhile=the_other_run_commits_first), at)
    assert won[0].status is RunStatus.COMMITTED, won[0].error
    assert lost.status is RunStatus.FAILED and lost.error_type == "ConflictError", lost.error
    # The winner's frames are the ones readers see, unchanged, matching its report row for row.
    assert fingerprint(store, at) == committed
    merged = store.read_frame(kind="merged", at=at)
    assert won[0].scoring is not None and len(merged) == won[0].scoring.snapshot_rows
    assert_only_committed_runs_are_visible(store, [run_time(0), at])
    # A rerun of the time (no lock either) is a no-op that changes nothing.
    assert cycle(emu, NoLock(store), at).status is RunStatus.SKIPPED
    assert fingerprint(store, at) == committed


def test_adjacent_runs_the_earlier_run_that_lost_never_appears(open_target: Any) -> None:
    emu = emulator()
    store = open_target()
    assert cycle(emu, store, run_time(0)).status is RunStatus.COMMITTED
    first = fingerprint(store, run_time(0))
    won: list[RunReport] = []

    def the_later_run_commits_first() -> None:
        won.append(cycle(emu, NoLock(open_target()), run_time(2)))

    # The run of 00:10 started from the state of 00:00; the run of 00:20 commits in between.
    lost = cycle(emu, NoLock(store, meanwhile=the_later_run_commits_first), run_time(1))
    assert won[0].status is RunStatus.COMMITTED, won[0].error
    assert lost.status is RunStatus.FAILED and lost.error_type == "ConflictError", lost.error
    # No phantom 00:10 run: readers see exactly the committed runs, and 00:00 is untouched.
    assert_only_committed_runs_are_visible(store, [run_time(0), run_time(2)])
    assert fingerprint(store, run_time(0)) == first
    assert store.read_state().docs["last_run"]["at"] == run_time(2).isoformat()
    # Later runs go on normally and never bring the lost run back.
    assert cycle(emu, store, run_time(3)).status is RunStatus.COMMITTED
    assert_only_committed_runs_are_visible(store, [run_time(0), run_time(2), run_time(3)])
    assert fingerprint(store, run_time(0)) == first
