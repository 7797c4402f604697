"""The storage protocols and the value objects they exchange.

A :class:`SnapshotStore` keeps what the collection pipeline needs, behind one protocol:

* **frames per run**: the raw frame of each source (``FrameKind.RAW``), the merged snapshot
  (``FrameKind.MERGED``) and the changeset (``FrameKind.CHANGES``), one Parquet file per
  ``(kind, source, run minute)``. A run writes them into a hidden :class:`RunStage`; the state
  commit that records the stage publishes them, so readers only ever see committed runs;
* **state**: named frames (e.g. the T2/T3 history) and named JSON documents (rotation state, quota
  ledger, the day's plan, the last run report), committed together as one immutable *generation*
  and published by swapping one pointer with compare-and-swap, so readers see the old state or the
  new one and two overlapping runs cannot both commit on top of the same parent;
* **a run lock**, so two runs on one store do not interleave;
* **an outbox**: a marker per committed run that reached the sinks, so a run whose delivery failed
  is delivered again later;
* **shard parts**: what each worker of a sharded run collected, until one of them commits the run.

Sinks receive what a run produced: a :class:`TimeSeriesSink` takes the changeset (Timestream), a
:class:`MetricsSink` takes per-run counts (CloudWatch). Both are optional plugins; the local store
never needs them.

The implementation is :class:`~spotlake.storage.core.ObjectStore` over a local directory
(:mod:`spotlake.storage.local`, the default) or S3 (:mod:`spotlake.storage.s3`); the sinks live in
:mod:`spotlake.storage.timestream` and :mod:`spotlake.storage.cloudwatch`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Final, Protocol, runtime_checkable

import attrs
import pandas as pd

from spotlake.errors import ConfigError
from spotlake.model import Source

__all__ = [
    "FRAME_KINDS",
    "RAW_SOURCES",
    "FrameKind",
    "GenerationInfo",
    "LockInfo",
    "MetricsSink",
    "PartSet",
    "RunStage",
    "SinkReport",
    "SnapshotStore",
    "StateSnapshot",
    "SweepReport",
    "TimeSeriesSink",
]


class FrameKind(StrEnum):
    """The frames a store keeps per run."""

    RAW = "raw"
    MERGED = "merged"
    CHANGES = "changes"

    @classmethod
    def of(cls, value: str) -> FrameKind:
        """``value`` as a kind; :class:`ConfigError` naming the kinds when it is none of them."""
        try:
            return cls(value)
        except ValueError:
            raise ConfigError(f"unknown frame kind {value!r}; use one of {[k.value for k in cls]}") from None


#: Frame kinds a store keeps per run.
FRAME_KINDS: Final[tuple[FrameKind, ...]] = tuple(FrameKind)

#: Sources whose raw frames a store keeps (``kind=FrameKind.RAW`` needs one of these).
RAW_SOURCES: Final[tuple[Source, ...]] = tuple(Source)


def _frozen_frames(value: Mapping[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    return dict(value)


def _frozen_docs(value: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    return {k: dict(v) for k, v in value.items()}


@attrs.frozen(kw_only=True)
class StateSnapshot:
    """The committed state of a store as one run saw it.

    ``version`` is the generation id to pass back as ``expected_version`` to ``commit_state``;
    it is ``None`` for a store that has never been committed to (then ``frames`` and ``docs`` are
    empty). ``committed_at``/``run_id`` say when and by which run the state was committed.
    """

    version: str | None
    frames: dict[str, pd.DataFrame] = attrs.field(factory=dict, converter=_frozen_frames)
    docs: dict[str, dict[str, Any]] = attrs.field(factory=dict, converter=_frozen_docs)
    committed_at: datetime | None = None
    run_id: str | None = None


@attrs.frozen(kw_only=True)
class LockInfo:
    """Who holds (or held) a store's run lock, for messages and for the operator.

    ``recovered`` names the previous holder when this lock was taken over from a run that died
    without releasing it (a dead process locally, an expired lock object on S3).
    """

    run_id: str
    owner: str
    acquired_at: datetime
    expires_at: datetime | None = None
    recovered: str | None = None

    def describe(self) -> str:
        """``run R (pid 12 on host h) since 2026-01-01T00:00:00+00:00``."""
        return f"run {self.run_id!r} ({self.owner}) since {self.acquired_at.isoformat()}"


@attrs.frozen(kw_only=True)
class SinkReport:
    """What a sink did with one run's data.

    ``records`` accepted in ``calls`` API calls; ``retried`` records sent again after the service
    rejected them; ``rejected`` records still rejected after the last attempt (0 on success: a
    sink raises :class:`~spotlake.errors.SinkError` rather than return a partial write silently,
    unless told to tolerate rejections).
    """

    sink: str
    records: int = 0
    calls: int = 0
    retried: int = 0
    rejected: int = 0
    notes: tuple[str, ...] = ()


@attrs.frozen(kw_only=True)
class PartSet:
    """The shard parts stored for one run split into ``count`` shards."""

    at: datetime
    count: int
    present: tuple[int, ...]

    @property
    def missing(self) -> tuple[int, ...]:
        return tuple(i for i in range(self.count) if i not in self.present)

    @property
    def complete(self) -> bool:
        return not self.missing


@attrs.frozen(kw_only=True)
class GenerationInfo:
    """A committed state a store keeps: its version, the run that committed it, and when."""

    version: str
    run_id: str | None
    committed_at: datetime | None
    current: bool = False


@attrs.frozen(kw_only=True)
class SweepReport:
    """What :meth:`SnapshotStore.sweep` removed: abandoned stages and temporary files."""

    stages: int = 0
    files: int = 0
    temporaries: int = 0


@runtime_checkable
class RunStage(Protocol):
    """Where one run writes its frames before its state commit publishes them."""

    @property
    def at(self) -> datetime:
        """The run minute the frames belong to."""
        ...

    @property
    def name(self) -> str:
        """The stage's id (recorded by the commit that publishes it)."""
        ...

    def put_frame(self, *, kind: FrameKind | str, frame: pd.DataFrame, source: str | None = None) -> str:
        """Stage one frame of the run (validated against its kind's schema); returns its final key."""
        ...


@runtime_checkable
class SnapshotStore(Protocol):
    """Frames per run, atomically committed state, a run lock, an outbox and shard parts."""

    @property
    def url(self) -> str:
        """Where the store lives (a directory path or ``s3://bucket/prefix``), for messages."""
        ...

    # --- lock and state ----------------------------------------------------------------------

    def lock(self, run_id: str, *, timeout: float = 0.0) -> AbstractContextManager[LockInfo]:
        """Hold the store's run lock; wait up to ``timeout`` seconds, then raise ``LockedError``."""
        ...

    def read_state(self, *, frames: bool = True) -> StateSnapshot:
        """The committed state (``version=None`` and empty for a new store); ``frames=False`` reads
        only the version and the documents (cheap: the history frames can be large)."""
        ...

    def stage(self, at: datetime) -> RunStage:
        """A new stage for the frames of the run at ``at`` (invisible to readers until published)."""
        ...

    def commit_state(
        self,
        *,
        expected_version: str | None,
        frames: Mapping[str, pd.DataFrame],
        docs: Mapping[str, Mapping[str, Any]],
        run_id: str | None = None,
        publish: RunStage | None = None,
    ) -> str:
        """Replace the state atomically if it is still ``expected_version`` and publish the frames
        of ``publish`` with it; return the new version."""
        ...

    def kept_generations(self) -> list[GenerationInfo]:
        """The committed state and the kept earlier ones, newest first (rollback targets)."""
        ...

    def rollback(self, version: str, *, expected_version: str | None, run_id: str | None = None) -> None:
        """Make a kept earlier generation the committed state again (operator recovery)."""
        ...

    def discard(self, stage: RunStage) -> None:
        """Remove a stage that will not be committed (its run failed)."""
        ...

    def publish_pending(self) -> int:
        """Finish publishing the committed run's frames if a crash interrupted it; frames moved."""
        ...

    def sweep(self, *, older_than: timedelta, temporaries: bool = True) -> SweepReport:
        """Remove stages nobody committed and (with ``temporaries``) temporary files, when older
        than ``older_than``."""
        ...

    # --- frames ------------------------------------------------------------------------------

    def read_frame(
        self, *, kind: FrameKind | str, at: datetime, source: str | None = None
    ) -> pd.DataFrame | None:
        """The frame of one committed run exactly as it was staged, or ``None``."""
        ...

    def read_frames(
        self,
        kind: FrameKind | str,
        *,
        source: str | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> pd.DataFrame:
        """Every committed frame of a kind in ``[start, end]``, concatenated, with a ``run_at`` column."""
        ...

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
        """Committed rows of a kind in ``[start, end]`` passing ``where`` (column -> allowed
        values), with ``columns`` (plus ``run_at``), oldest run first; filters pushed down."""
        ...

    def latest(
        self, kind: FrameKind | str = FrameKind.MERGED, *, source: str | None = None
    ) -> pd.DataFrame | None:
        """The most recent frame of a kind, or ``None`` when there is none."""
        ...

    def run_times(
        self,
        kind: FrameKind | str,
        *,
        source: str | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> list[datetime]:
        """Run minutes with a committed frame of this kind in ``[start, end]``, oldest first."""
        ...

    # --- outbox ------------------------------------------------------------------------------

    def mark_delivered(self, run: str, sink: str) -> None:
        """Record that the committed run (named by its stage) reached ``sink``."""
        ...

    def is_delivered(self, run: str, sink: str) -> bool:
        """Whether :meth:`mark_delivered` was called for the run and sink."""
        ...

    # --- tables ------------------------------------------------------------------------------

    def append_table(self, name: str, frame: pd.DataFrame, *, at: datetime) -> str:
        """Append ``frame`` to the append-only table ``name`` (one Parquet file per append,
        never rewritten); returns the key written. Tables sit beside the collected data and
        outside its generations (e.g. the compute cost ledger)."""
        ...

    def read_table(self, name: str) -> pd.DataFrame:
        """Every append to table ``name``, oldest first (an empty frame when there is none)."""
        ...

    # --- shard parts -------------------------------------------------------------------------

    def put_part(
        self, at: datetime, *, index: int, count: int, doc: Mapping[str, Any], frame: pd.DataFrame
    ) -> None:
        """Store shard ``index`` of ``count``'s part of the run at ``at`` (frame first, document last)."""
        ...

    def read_part(
        self, at: datetime, *, index: int, count: int
    ) -> tuple[dict[str, Any], pd.DataFrame] | None:
        """A stored part (checked: the frame is the one its document names), or ``None``."""
        ...

    def part_doc(self, at: datetime, *, index: int, count: int) -> dict[str, Any] | None:
        """Only a part's document (cheap), or ``None``."""
        ...

    def part_sets(self, at: datetime | None = None) -> list[PartSet]:
        """The parts stored (for one run, or every run), oldest first."""
        ...

    def remove_parts(self, *, through: datetime) -> None:
        """Delete the parts of every run up to and including ``through`` (best effort)."""
        ...


@runtime_checkable
class TimeSeriesSink(Protocol):
    """Receives one run's changeset (CHANGES_SCHEMA)."""

    def write(self, changes: pd.DataFrame, *, run_at: datetime) -> SinkReport: ...


@runtime_checkable
class MetricsSink(Protocol):
    """Receives one run's counts (collected, merged, changed, ceased, failed calls, ...)."""

    def write_run(self, counts: Mapping[str, float], *, run_at: datetime) -> SinkReport: ...
