"""Rollbacks: what they hide and bring back, across garbage collection, retries and racing runs.

Regression tests from a review: each of these lost or mis-hid committed runs before the fix.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from spotlake.clock import FakeClock
from spotlake.errors import StorageError
from spotlake.model import SNAPSHOT_SCHEMA, empty_frame
from spotlake.storage import LocalStore, ObjectStore
from spotlake.storage.layout import CURRENT_KEY, ROLLBACK_KEY, ROLLED_BACK_PREFIX
from spotlake.storage.local import LocalBackend
from spotlake.storage.s3 import S3Store
from spotlake.testing.backends import FaultyBackend

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
BUCKET = "spotlake-test-bucket"  # the s3_client fixture's (tests/storage/conftest.py)


def minute(i: int) -> datetime:
    """The run time of run ``i`` (runs every ten minutes from T0)."""
    return T0 + timedelta(minutes=10 * i)


class Runs:
    """Commits one run per call on a store, each publishing a merged frame at its own minute."""

    def __init__(self, store: ObjectStore, clock: FakeClock) -> None:
        self.store = store
        self.clock = clock
        self.gen: dict[int, str] = {}

    def commit(self, i: int) -> str:
        self.clock.set(minute(i))
        stage = self.store.stage(minute(i))
        stage.put_frame(kind="merged", frame=empty_frame(SNAPSHOT_SCHEMA))
        self.gen[i] = self.store.commit_state(
            expected_version=self.store.version,
            frames={},
            docs={"n": {"i": i}},
            run_id=f"r{i}",
            publish=stage,
        )
        return self.gen[i]

    def visible(self) -> list[datetime]:
        return self.store.run_times("merged")

    def state(self) -> int:
        return int(self.store.read_state(frames=False).docs["n"]["i"])


def hidden_generations(store: ObjectStore) -> list[str]:
    return sorted(c.rstrip("/") for c in store.backend.children(ROLLED_BACK_PREFIX))


@pytest.mark.parametrize("where", ["local", "s3"])
def test_undoing_a_rollback_after_garbage_collection_brings_back_every_run_of_its_history(
    tmp_path: Path, request: pytest.FixtureRequest, where: str
) -> None:
    """Before: collecting the generation of run 8 cut the history of run 10's state short, so the
    undo hid run 7 (a shared ancestor) and the sweep had deleted run 8's hidden frames for good."""
    clock = FakeClock(T0)
    store: ObjectStore  # keeps 5 generations
    if where == "s3":
        client = request.getfixturevalue("s3_client")
        store = S3Store(BUCKET, "lake", client=client, clock=clock, poll_seconds=5)
    else:
        store = LocalStore(tmp_path, clock=clock, fsync=False)
    runs = Runs(store, clock)
    for i in range(1, 11):
        runs.commit(i)
    store.rollback(runs.gen[7], expected_version=runs.gen[10])  # takes back runs 8, 9, 10
    assert runs.visible() == [minute(i) for i in range(1, 8)]
    runs.commit(11)
    runs.commit(12)  # a new branch on run 7's state; run 8's generation leaves the kept ones
    assert runs.gen[8] not in {g.version for g in store.kept_generations()}
    store.sweep(older_than=timedelta(hours=6))  # what every run does
    assert set(hidden_generations(store)) >= {runs.gen[8], runs.gen[9], runs.gen[10]}
    # Undo: back to run 10's state, whose history is runs 1..10.
    store.rollback(runs.gen[10], expected_version=runs.gen[12])
    assert runs.state() == 10
    assert runs.visible() == [minute(i) for i in range(1, 11)]
    # And forward again to the branch: runs 1..7, 11, 12.
    store.rollback(runs.gen[12], expected_version=runs.gen[10])
    assert runs.visible() == [*(minute(i) for i in range(1, 8)), minute(11), minute(12)]


def test_what_rollbacks_keep_is_forgotten_once_no_kept_generation_needs_it(tmp_path: Path) -> None:
    """The history kept for rollbacks is bounded: once the taken-back branch leaves the kept
    generations, its hidden frames and the manifests of its history go."""
    clock = FakeClock(T0)
    store = LocalStore(tmp_path, clock=clock, fsync=False)
    runs = Runs(store, clock)
    for i in range(1, 11):
        runs.commit(i)
    store.rollback(runs.gen[7], expected_version=runs.gen[10])
    for i in range(11, 20):
        runs.commit(i)
        store.sweep(older_than=timedelta(hours=6))
    assert hidden_generations(store) == []
    assert len(store.generations()) == 5, "only the kept generations remain"
    assert runs.visible() == [*(minute(i) for i in range(1, 8)), *(minute(i) for i in range(11, 20))]


class LandsThenFails(FaultyBackend):
    """The pointer swap lands, but its answer is lost: the caller sees a StorageError."""

    armed = False

    def swap_pointer(self, key: str, data: bytes, *, token: str | None) -> None:
        super().swap_pointer(key, data, token=token)
        if self.armed:
            self.armed = False
            raise StorageError(f"could not update {key}: read timeout (injected; it landed)")


def test_a_rollback_retried_after_a_lost_answer_still_takes_its_runs_back(tmp_path: Path) -> None:
    """Before: the retry overwrote the unfinished rollback record, so the runs the first rollback
    took back stayed visible for good."""
    clock = FakeClock(T0)
    backend = LandsThenFails(LocalBackend(tmp_path, fsync=False))
    store = ObjectStore(backend, clock=clock)
    runs = Runs(store, clock)
    for i in range(1, 5):
        runs.commit(i)
    backend.armed = True
    with pytest.raises(StorageError, match="read timeout"):
        store.rollback(runs.gen[2], expected_version=runs.gen[4])
    assert store.version == runs.gen[2], "it landed"
    # The operator runs `spotlake rollback --to` the same version again.
    store.rollback(runs.gen[2], expected_version=store.version)
    store.publish_pending()  # what the next run does first
    assert runs.visible() == [minute(1), minute(2)]
    assert store.backend.get(ROLLBACK_KEY) is None, "the record is settled"


def test_a_rollback_to_the_current_version_lists_each_kept_generation_once(tmp_path: Path) -> None:
    clock = FakeClock(T0)
    store = LocalStore(tmp_path, clock=clock, fsync=False)
    runs = Runs(store, clock)
    for i in range(1, 5):
        runs.commit(i)
    store.rollback(runs.gen[4], expected_version=runs.gen[4])
    kept = [g.version for g in store.kept_generations()]
    assert kept == [runs.gen[i] for i in (4, 3, 2, 1)]
    assert runs.visible() == [minute(i) for i in range(1, 5)]


def test_a_run_committing_during_a_rollback_does_not_drop_the_rollbacks_record(tmp_path: Path) -> None:
    """Before: a run (whose lock was lost while it was frozen) finishing pending work between the
    rollback's record and its pointer swap deleted the record as stale; the rollback then landed
    and hid nothing."""
    clock = FakeClock(T0)
    frozen_run = LocalStore(tmp_path, clock=clock, fsync=False)
    armed = False

    def wake_the_frozen_run(op: str, key: str) -> bool:
        nonlocal armed
        if armed and op == "swap_pointer" and key == CURRENT_KEY:
            armed = False
            frozen_run.publish_pending()  # the first thing its commit does
        return False  # never fails: this only orders the two

    store = ObjectStore(
        FaultyBackend(LocalBackend(tmp_path, fsync=False), fail_when=wake_the_frozen_run), clock=clock
    )
    runs = Runs(store, clock)
    for i in range(1, 5):
        runs.commit(i)
    armed = True
    store.rollback(runs.gen[2], expected_version=runs.gen[4])
    assert not armed, "the frozen run did wake up in between"
    assert store.version == runs.gen[2]
    assert runs.visible() == [minute(1), minute(2)]


def test_a_rollback_record_of_a_swap_that_never_landed_goes_once_the_pointer_moves_on(
    tmp_path: Path,
) -> None:
    """A rollback that died before its pointer swap leaves its record; it hides nothing, and once a
    commit moved the pointer on (neither the rollback's target nor where it started) it goes."""
    clock = FakeClock(T0)
    store = LocalStore(tmp_path, clock=clock, fsync=False)
    runs = Runs(store, clock)
    for i in range(1, 4):
        runs.commit(i)
    dying = ObjectStore(
        FaultyBackend(
            LocalBackend(tmp_path, fsync=False), fail_when=lambda op, key: op == "swap_pointer", fail_at=1
        ),
        clock=clock,
    )
    with pytest.raises(StorageError):
        dying.rollback(runs.gen[1], expected_version=runs.gen[3])
    assert store.version == runs.gen[3]
    store.publish_pending()
    assert runs.visible() == [minute(i) for i in range(1, 4)], "nothing hidden: it never landed"
    runs.commit(4)
    store.publish_pending()  # the next run's start
    assert store.backend.get(ROLLBACK_KEY) is None
    assert runs.visible() == [minute(i) for i in range(1, 5)]
