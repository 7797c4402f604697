"""Unclear outcomes: a write whose answer was lost, a stage swept under a frozen run.

Regression tests from a review: each of these lost a committed run's frames, or locked a run out
by itself, before the fix.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from spotlake.clock import FakeClock
from spotlake.errors import ConflictError, StorageError
from spotlake.model import SNAPSHOT_SCHEMA, empty_frame
from spotlake.storage import LocalStore, ObjectStore
from spotlake.storage._s3_lock import S3RunLock
from spotlake.storage.local import LocalBackend
from spotlake.testing.backends import FaultyBackend

AT = datetime(2026, 3, 1, 12, 30, tzinfo=UTC)


class LostAnswer:
    """The pointer swap lands, its answer is lost (the retry reports a conflict), and reading the
    pointer back fails once: the outcome is unknown to the writer."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.armed = False
        self.fail_reads = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def swap_pointer(self, key: str, data: bytes, *, token: str | None) -> None:
        self.inner.swap_pointer(key, data, token=token)
        if self.armed:
            self.armed, self.fail_reads = False, 1
            raise ConflictError("state/CURRENT changed since it was read (a retry's 412)")

    def read_pointer(self, key: str) -> Any:
        if self.fail_reads:
            self.fail_reads -= 1
            raise StorageError("could not reach the store to read state/CURRENT")
        return self.inner.read_pointer(key)


def test_an_unknown_commit_outcome_keeps_the_runs_frames(tmp_path: Path) -> None:
    """Before: the writer took the lost answer for a conflict, and the pipeline deleted the stage of
    a run whose state was committed; the frames were gone for good."""
    backend = LostAnswer(LocalBackend(tmp_path, fsync=False))
    store = ObjectStore(backend)  # type: ignore[arg-type]
    stage = store.stage(AT)
    stage.put_frame(kind="merged", frame=empty_frame(SNAPSHOT_SCHEMA))
    backend.armed = True
    with pytest.raises(StorageError, match="unknown") as raised:
        store.commit_state(expected_version=None, frames={}, docs={"x": {"a": 1}}, run_id="r", publish=stage)
    assert not isinstance(raised.value, ConflictError), "not a conflict: the pipeline keeps the stage then"
    assert store.version is not None  # it did land
    assert store.publish_pending() == 1, "the next run finishes the publication"
    assert store.read_frame(kind="merged", at=AT) is not None


class LateLanding(FaultyBackend):
    """A pointer write that times out for the writer, and that the service applies afterwards
    (after the writer has read the pointer back and seen the old one)."""

    def __init__(self, inner: Any) -> None:
        super().__init__(inner)
        self.armed = False
        self.pending: tuple[str, bytes, str | None] | None = None

    def swap_pointer(self, key: str, data: bytes, *, token: str | None) -> None:
        if self.armed:
            self.armed, self.pending = False, (key, data, token)
            raise StorageError(f"update {key}: Read timeout on endpoint URL (injected)")
        super().swap_pointer(key, data, token=token)

    def land(self) -> None:
        assert self.pending is not None
        key, data, token = self.pending
        self.inner.swap_pointer(key, data, token=token)


def _commit_with_a_timed_out_pointer_write(tmp_path: Path) -> tuple[LateLanding, ObjectStore, str]:
    backend = LateLanding(LocalBackend(tmp_path, fsync=False))
    store = ObjectStore(backend)
    first = store.commit_state(expected_version=None, frames={}, docs={"d": {"n": 0}}, run_id="r0")
    stage = store.stage(AT)
    stage.put_frame(kind="merged", frame=empty_frame(SNAPSHOT_SCHEMA))
    backend.armed = True
    with pytest.raises(StorageError, match="Read timeout") as raised:
        store.commit_state(
            expected_version=first, frames={}, docs={"d": {"n": 1}}, run_id="r1", publish=stage
        )
    assert not isinstance(raised.value, ConflictError)
    assert store.version == first, "the read-back still sees the old pointer"
    return backend, store, first


def test_a_pointer_write_that_lands_after_its_timeout_names_a_complete_generation(tmp_path: Path) -> None:
    """Before: a pointer write failing with an ordinary error (not a conflict) deleted the new
    generation; S3 then applied the timed-out PUT and every later run failed with CorruptStoreError."""
    backend, store, first = _commit_with_a_timed_out_pointer_write(tmp_path)
    backend.land()  # the timed-out request is applied afterwards
    state = store.read_state()
    assert state.version != first and state.run_id == "r1" and state.docs["d"] == {"n": 1}
    assert store.publish_pending() == 1, "the run's stage was kept too: its frames are published"
    assert store.read_frame(kind="merged", at=AT) is not None


def test_a_generation_whose_pointer_write_timed_out_is_collected_by_the_next_commit(tmp_path: Path) -> None:
    backend, store, first = _commit_with_a_timed_out_pointer_write(tmp_path)
    orphan = [v for v in store.generations() if v != first]
    assert len(orphan) == 1, "the unclear generation is left for garbage collection"
    second = store.commit_state(expected_version=first, frames={}, docs={"d": {"n": 2}}, run_id="r2")
    assert orphan[0] not in store.generations(), "same seq as the next commit: collected by it"
    with pytest.raises(ConflictError):
        backend.land()  # the next commit's compare-and-swap stops the late write
    assert store.read_state().version == second


def test_a_run_frozen_past_the_sweep_cannot_commit_a_generation_without_its_frames(tmp_path: Path) -> None:
    clock = FakeClock(AT)
    slow = LocalStore(tmp_path, clock=clock, fsync=False)
    other = LocalStore(tmp_path, clock=clock, fsync=False)
    stage = slow.stage(AT)
    stage.put_frame(kind="merged", frame=empty_frame(SNAPSHOT_SCHEMA))
    clock.advance(7 * 3600)  # the run is frozen (a paused VM) for longer than the sweep's age
    assert other.sweep(older_than=timedelta(hours=6)).stages == 1
    with pytest.raises(StorageError, match=r"stage .* are gone"):
        slow.commit_state(expected_version=None, frames={}, docs={"d": {}}, run_id="slow", publish=stage)
    assert slow.version is None, "nothing was committed"


class LockObjects:
    """An S3 lock object whose first conditional write lands but answers as if it failed."""

    url = "s3://b/p"

    def __init__(self) -> None:
        self.obj: tuple[bytes, str] | None = None
        self.n = 0
        self.lose_next = True

    def put_if(self, key: str, data: bytes, *, etag: str | None) -> str | None:
        if (self.obj[1] if self.obj else None) != etag:
            return None
        self.n += 1
        self.obj = (data, f"etag-{self.n}")
        if self.lose_next:
            self.lose_next = False
            return None  # landed, but the retry of the lost answer saw 412
        return self.obj[1]

    def get_tagged(self, key: str) -> tuple[bytes, str] | None:
        return self.obj

    def delete_if(self, key: str, *, etag: str) -> bool:
        if self.obj and self.obj[1] == etag:
            self.obj = None
            return True
        return False


def test_a_lock_write_whose_answer_was_lost_is_recognised_as_ours() -> None:
    """Before: the run found its own lock, waited for itself and left it behind for 30 minutes."""
    objects = LockObjects()
    lock = S3RunLock(objects, clock=FakeClock(AT), ttl=timedelta(minutes=30), poll_seconds=5)  # type: ignore[arg-type]
    with lock.hold("run-a", timeout=0) as info:
        assert info.run_id == "run-a" and objects.obj is not None
        objects.lose_next = True  # a renewal's answer is lost too
        assert lock.renew(info) is True and not lock.lost.is_set()
    assert objects.obj is None, "released"


class RacedWrite:
    """A generation write that fails because another run committed on the same parent meanwhile
    (whose garbage collection removes a generation of the same seq as it is written), or, unarmed
    with ``rival=None``, fails on its own."""

    def __init__(self, inner: Any, rival: LocalStore | None) -> None:
        self.inner = inner
        self.rival = rival
        self.armed = False
        self.puts = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def put(self, key: str, data: bytes) -> None:
        self.puts += self.armed
        if self.armed and self.puts == 2:  # the second file of the generation
            self.armed = False
            if self.rival is not None:
                parent = self.rival.read_state().version
                self.rival.commit_state(expected_version=parent, frames={}, docs={"w": {"who": "rival"}})
            raise StorageError(f"cannot write {key}: No such file or directory")
        self.inner.put(key, data)


def test_a_write_broken_by_a_rival_commit_on_the_same_parent_is_a_conflict(tmp_path: Path) -> None:
    """Before: the loser of two runs committing on one parent (a bypassed lock) could fail with
    "cannot write ... No such file or directory" when the winner's garbage collection removed its
    half-written generation: a broken store to the caller, where it is a conflict to retry."""
    first = LocalStore(tmp_path, fsync=False).commit_state(expected_version=None, frames={}, docs={"w": {}})
    backend = RacedWrite(LocalBackend(tmp_path, fsync=False), LocalStore(tmp_path, fsync=False))
    store = ObjectStore(backend)  # type: ignore[arg-type]
    backend.armed = True
    with pytest.raises(ConflictError, match=r"changed.*write had failed too: cannot write"):
        store.commit_state(expected_version=first, frames={}, docs={"w": {"who": "loser"}, "z": {}})
    state = store.read_state()
    assert state.docs == {"w": {"who": "rival"}} and state.version != first
    assert store.generations() == sorted([first, state.version]), "nothing of the loser is left"


def test_a_write_that_fails_on_its_own_is_still_a_storage_error(tmp_path: Path) -> None:
    first = LocalStore(tmp_path, fsync=False).commit_state(expected_version=None, frames={}, docs={"w": {}})
    backend = RacedWrite(LocalBackend(tmp_path, fsync=False), None)
    store = ObjectStore(backend)  # type: ignore[arg-type]
    backend.armed = True
    with pytest.raises(StorageError, match="cannot write") as raised:
        store.commit_state(expected_version=first, frames={}, docs={"w": {"who": "me"}, "z": {}})
    assert not isinstance(raised.value, ConflictError)
    assert store.read_state().version == first and store.generations() == [first]
