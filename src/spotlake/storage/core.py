"""The store every backend shares: :class:`ObjectStore`, the whole store protocol over a :class:`Backend`.

It puts together, over one backend, the pieces that each hold one idea:

* :class:`~spotlake.storage._generations.Generations`: the state's commit protocol (immutable
  generations, a compare-and-swap pointer, rollback, garbage collection);
* :class:`~spotlake.storage._frames.RunFrames`: frames per run, staged by a run and published by
  the commit that records them, so readers only ever see committed runs;
* :class:`~spotlake.storage._parts.ShardParts`: the parts of sharded runs;
* delivery markers (the outbox) and the run lock, which are one call each.

So the commit protocol, staging, validation and garbage collection are written and tested once
for the local directory and S3.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from typing import Any

import pandas as pd

from spotlake.clock import Clock, SystemClock, ensure_utc
from spotlake.errors import ConfigError, SpotlakeError
from spotlake.storage._frames import RunFrames, Stage
from spotlake.storage._generations import DEFAULT_KEEP_GENERATIONS, Generations
from spotlake.storage._parts import ShardParts
from spotlake.storage.backend import Backend
from spotlake.storage.base import (
    FrameKind,
    GenerationInfo,
    LockInfo,
    PartSet,
    RunStage,
    StateSnapshot,
    SweepReport,
)
from spotlake.storage.layout import (
    DELIVERED_PREFIX,
    ROLLBACK_KEY,
    decode_doc,
    decode_frame,
    delivered_key,
    encode_doc,
    encode_frame,
    stage_created,
    table_key,
    table_prefix,
)

__all__ = ["DEFAULT_KEEP_GENERATIONS", "DELIVERY_MARKER_AGE", "Backend", "ObjectStore"]

log = logging.getLogger(__name__)

#: Delivery markers older than this are removed by the daily sweep. A marker only matters until
#: the next committed run has read it (its outbox entry then leaves), and outboxes keep runs for
#: a week at most; a marker removed earlier (after a pause in runs longer than this) only means
#: that run is delivered once more, which every sink takes harmlessly.
DELIVERY_MARKER_AGE = timedelta(days=8)


class ObjectStore:
    """A :class:`~spotlake.storage.base.SnapshotStore` over a :class:`Backend`."""

    def __init__(
        self,
        backend: Backend,
        *,
        clock: Clock | None = None,
        keep_generations: int = DEFAULT_KEEP_GENERATIONS,
    ) -> None:
        self._backend = backend
        self._clock: Clock = clock or SystemClock()
        self._state = Generations(backend, clock=self._clock, keep=keep_generations)
        self._frames = RunFrames(backend, clock=self._clock)
        self._parts = ShardParts(backend)

    @property
    def url(self) -> str:
        return self._backend.url

    @property
    def backend(self) -> Backend:
        """The object backend (for tools that inspect the raw layout)."""
        return self._backend

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"

    # --- lock ----------------------------------------------------------------------------------

    def lock(self, run_id: str, *, timeout: float = 0.0) -> AbstractContextManager[LockInfo]:
        """Hold the store's run lock for the duration of a ``with`` block.

        Waits up to ``timeout`` seconds (on the store's clock) for a run holding it, then raises
        :class:`~spotlake.errors.LockedError` naming that run, its process and since when.
        """
        if not run_id:
            raise ConfigError("a run lock needs a non-empty run_id (it is shown to whoever waits for it)")
        return self._backend.lock(run_id, timeout=timeout)

    # --- state ---------------------------------------------------------------------------------

    @property
    def version(self) -> str | None:
        """The committed version, without reading the state itself."""
        return self._state.version

    def read_state(self, *, frames: bool = True) -> StateSnapshot:
        """The committed state; ``frames=False`` skips the (possibly large) state frames."""
        return self._state.read_state(frames=frames)

    def stage(self, at: datetime) -> Stage:
        """A new stage for the frames of the run at ``at`` (see :mod:`spotlake.storage._frames`)."""
        return self._frames.stage(at)

    def commit_state(
        self,
        *,
        expected_version: str | None,
        frames: Mapping[str, pd.DataFrame],
        docs: Mapping[str, Mapping[str, Any]],
        run_id: str | None = None,
        publish: RunStage | None = None,
    ) -> str:
        """Replace the whole state (exactly ``frames`` and ``docs``) if it is still ``expected_version``,
        and publish the frames staged in ``publish`` with it.

        Returns the new version. Raises :class:`~spotlake.errors.ConflictError` when another run
        committed since ``expected_version`` was read (nothing of ours is published then: the
        stage stays hidden, and :meth:`discard` removes it).
        """
        if publish is not None and not isinstance(publish, Stage):
            raise ConfigError(f"publish= takes a stage of this store (store.stage(at)), got {publish!r}")
        # The previous commit's frames first: a crash may have stopped their move.
        self.publish_pending()
        publication = (publish.name, publish.keys) if publish is not None else None
        version = self._state.commit_state(
            expected_version=expected_version,
            frames=frames,
            docs=docs,
            run_id=run_id,
            publication=publication,
            # A run frozen for longer than the sweep's age may have lost its stage meanwhile: then
            # it must not commit a generation whose frames are gone.
            before_swap=(lambda: self._frames.require_staged(*publication)) if publication else None,
        )
        if publication is not None:
            try:
                self._frames.publish(*publication)
            except SpotlakeError as exc:
                # Committed: the generation names the stage, so the next commit (or cycle) moves them.
                log.warning(
                    "%s: committed %s, but moving its frames into place failed (%s); the next run "
                    "finishes it (store.publish_pending())",
                    self.url,
                    version,
                    exc,
                )
        return version

    def rollback(self, version: str, *, expected_version: str | None, run_id: str | None = None) -> None:
        """Make a kept earlier generation the committed state again (operator recovery).

        The generation must still exist and be readable; the one rolled back from stays among the
        kept generations, so the rollback itself can be undone the same way. The frames of the runs
        taken back leave the frame folders (readers see the state's runs only) into a hidden
        ``.rolled-back/`` area, from which undoing the rollback brings them back. The moves are
        recorded before the pointer moves, so an interrupted rollback is finished by the next run.
        """

        # An earlier rollback whose pointer moved but whose moves did not (its answer was lost, and
        # this may be its retry): finish it first, or our record would replace its record.
        self._finish_rollback()

        def record_intent(current: str) -> None:
            parents: dict[str, str | None] = {}
            history = self._state.ancestry(version, parents=parents)
            target = set(history)
            hide = [g for g in self._state.ancestry(current, parents=parents) if g not in target]
            hidden = set(self._frames.hidden_versions())
            restore = [g for g in reversed(history) if g in hidden]
            intent = {"format": 2, "target": version, "from": current, "hide": hide, "restore": restore}
            self._backend.put(ROLLBACK_KEY, encode_doc(intent, name="rollback"))

        self._state.rollback(
            version, expected_version=expected_version, run_id=run_id, before_swap=record_intent
        )
        self._finish_rollback()

    def _finish_rollback(self) -> None:
        """Carry out a recorded rollback's frame moves (idempotent), if its pointer move happened.

        The record goes once the moves are done, or once the pointer names neither the
        rollback's target nor the version it started from (its swap never landed, and a commit
        moved on). While the pointer is still where the rollback started, its swap may be in
        flight: the record stays.
        """
        data = self._backend.get(ROLLBACK_KEY)
        if data is None:
            return
        intent = decode_doc(data, where=f"{self.url}/{ROLLBACK_KEY}")
        now = self._state.version
        if now == intent.get("target"):
            for version in intent.get("hide", []):  # first: a restored run may reuse their keys
                publication = self._state.publication_of(str(version))
                if publication is not None:
                    self._frames.hide(str(version), publication[1])
            for version in intent.get("restore", []):  # oldest first
                publication = self._state.publication_of(str(version))
                if publication is not None:
                    self._frames.restore(str(version), publication[1])
        elif now == intent.get("from"):
            return  # not landed (yet): the rollback itself, or the one that replaces it, settles it
        self._backend.delete([ROLLBACK_KEY])

    def generations(self) -> list[str]:
        """Versions present in the store (committed, kept or orphaned), oldest first."""
        return self._state.generations()

    def kept_generations(self) -> list[GenerationInfo]:
        """The committed state and the kept earlier ones, newest first (rollback targets)."""
        return self._state.kept()

    def discard(self, stage: RunStage) -> None:
        """Remove a stage whose run will not commit."""
        self._frames.discard(stage.name)

    def publish_pending(self) -> int:
        """Finish what a crash interrupted: a rollback's frame moves, then the committed
        generation's publication; returns the frames published."""
        self._finish_rollback()
        publication = self._state.publication()
        return 0 if publication is None else self._frames.publish(*publication)

    def sweep(self, *, older_than: timedelta, temporaries: bool = True) -> SweepReport:
        """Remove stages no kept generation names and, with ``temporaries``, temporary files older
        than ``older_than`` and delivery markers older than :data:`DELIVERY_MARKER_AGE`; and the
        hidden frames of rolled-back generations no generation names any more."""
        # Hidden frames are forgotten once no generation in the store names theirs: garbage
        # collection keeps a generation's manifest while a kept generation's history has it, so
        # until then a rollback may bring them back.
        hidden = self._frames.hidden_versions()
        named = self._state.named() if hidden else set()
        for version in hidden:
            if version not in named:
                self._frames.forget_hidden(version)
        if temporaries:  # a walk of the markers too: once a day is enough
            self._forget_markers()
        return self._frames.sweep(
            older_than=older_than, keep=self._state.kept_publications(), temporaries=temporaries
        )

    def _forget_markers(self) -> None:
        cutoff = ensure_utc(self._clock.now()) - DELIVERY_MARKER_AGE
        doomed = []
        for key in self._backend.list_tree(DELIVERED_PREFIX):
            created = stage_created(key[len(DELIVERED_PREFIX) :].split("/", 1)[0])
            if created is not None and created < cutoff:
                doomed.append(key)
        if doomed:
            self._backend.delete(doomed)
            log.info("%s: removed %d delivery marker(s) older than %s", self.url, len(doomed), cutoff)

    # --- frames --------------------------------------------------------------------------------

    def put_frame(
        self, *, kind: FrameKind | str, at: datetime, frame: pd.DataFrame, source: str | None = None
    ) -> str:
        """Write one frame straight to its key, outside any run (imports, tools, tests).

        A collection run never does this: it stages its frames and publishes them with its commit.
        """
        return self._frames.write("", kind=kind, at=at, frame=frame, source=source)

    def read_frame(
        self, *, kind: FrameKind | str, at: datetime, source: str | None = None
    ) -> pd.DataFrame | None:
        """The frame stored for the run at ``at`` (same minute) exactly as put, or ``None``."""
        return self._frames.read_frame(kind=kind, at=at, source=source)

    def read_frames(
        self,
        kind: FrameKind | str,
        *,
        source: str | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> pd.DataFrame:
        """Every frame of a kind with a run time in ``[start, end]``, concatenated oldest first.

        Each row carries ``run_at`` (the run minute, UTC). With nothing stored, an empty frame
        with the kind's schema (plus ``run_at``) comes back.
        """
        return self._frames.read_frames(kind, source=source, start=start, end=end)

    def read_history(
        self,
        kind: FrameKind | str = FrameKind.MERGED,
        *,
        source: str | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        columns: Sequence[str] | None = None,
        where: Mapping[str, Sequence[Any]] | None = None,
    ) -> pd.DataFrame:
        """The rows of every frame of a kind in ``[start, end]`` whose columns hold one of the
        values ``where`` allows, with ``columns`` only (plus ``run_at``), oldest run first.

        Filters and columns are pushed down to the Parquet reader; whole past days are read from
        one digest file each and whole closed months from one roll-up each (built on the first
        read; docs/analysis.md), so one size over a year reads a row group or two of eleven roll-ups
        and the current month's day digests instead of every run's file.
        """
        return self._frames.read_history(
            kind, source=source, start=start, end=end, columns=columns, where=where
        )

    def latest(
        self, kind: FrameKind | str = FrameKind.MERGED, *, source: str | None = None
    ) -> pd.DataFrame | None:
        """The most recent frame of a kind (as put, without ``run_at``), or ``None``."""
        return self._frames.latest(kind, source=source)

    def run_times(
        self,
        kind: FrameKind | str,
        *,
        source: str | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> list[datetime]:
        """Run minutes that have a frame of this kind in ``[start, end]``, oldest first."""
        return self._frames.run_times(kind, source=source, start=start, end=end)

    def latest_run_at(
        self, kind: FrameKind | str = FrameKind.MERGED, *, source: str | None = None
    ) -> datetime | None:
        """The run minute of the most recent frame of a kind."""
        times = self.run_times(kind, source=source)
        return times[-1] if times else None

    # --- outbox --------------------------------------------------------------------------------

    def mark_delivered(self, run: str, sink: str) -> None:
        self._backend.put(delivered_key(run, sink), b"{}")

    def is_delivered(self, run: str, sink: str) -> bool:
        return self._backend.get(delivered_key(run, sink)) is not None

    # --- shard parts ---------------------------------------------------------------------------

    def append_table(self, name: str, frame: pd.DataFrame, *, at: datetime) -> str:
        key = table_key(name, at)
        self._backend.put(key, encode_frame(frame.reset_index(drop=True), what=f"table {name!r}"))
        return key

    def read_table(self, name: str) -> pd.DataFrame:
        keys = sorted(k for k in self._backend.list_tree(table_prefix(name)) if k.endswith(".parquet"))
        frames = []
        for key in keys:
            data = self._backend.get(key)
            if data is not None:  # removed since the listing
                frames.append(decode_frame(data, where=f"{self.url}/{key}"))
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    def put_part(
        self, at: datetime, *, index: int, count: int, doc: Mapping[str, Any], frame: pd.DataFrame
    ) -> None:
        self._parts.put(at, index=index, count=count, doc=doc, frame=frame)

    def read_part(
        self, at: datetime, *, index: int, count: int
    ) -> tuple[dict[str, Any], pd.DataFrame] | None:
        return self._parts.read(at, index=index, count=count)

    def part_doc(self, at: datetime, *, index: int, count: int) -> dict[str, Any] | None:
        return self._parts.doc(at, index=index, count=count)

    def part_sets(self, at: datetime | None = None) -> list[PartSet]:
        return self._parts.sets(at)

    def remove_parts(self, *, through: datetime) -> None:
        self._parts.remove(through=through)
