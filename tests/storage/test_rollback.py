"""Rollbacks: what they hide and bring back, across garbage collection, retries and racing runs.

Regression tests from a review: each of these lost or mis-hid committed runs before the fix.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from spotlake.clock import FakeClock
from spotlake.model import SNAPSHOT_SCHEMA, empty_frame
from spotlake.storage import LocalStore, ObjectStore
from spotlake.storage.layout import ROLLED_BACK_PREFIX

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


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


def test_undoing_a_rollback_after_garbage_collection_brings_back_every_run_of_its_history(
    tmp_path: Path,
) -> None:
    """Before: collecting the generation of run 8 cut the history of run 10's state short, so the
    undo hid run 7 (a shared ancestor) and the sweep had deleted run 8's hidden frames for good."""
    clock = FakeClock(T0)
    store = LocalStore(tmp_path, clock=clock, fsync=False)  # keeps 5 generations
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
