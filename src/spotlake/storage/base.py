"""The storage protocols and the value objects they exchange.

A :class:`SnapshotStore` keeps three things for the collection pipeline:

* **frames per run**: the raw frame of each source (``kind="raw"``), the merged snapshot
  (``kind="merged"``) and the changeset (``kind="changes"``), one Parquet file per
  ``(kind, source, run minute)``, overwritten idempotently when a run is repeated;
* **state**: named frames (e.g. the T2/T3 history) and named JSON documents (rotation state, quota
  ledger, the day's plan, the last run report), committed together as one immutable *generation*
  and published by swapping one pointer with compare-and-swap, so readers see the old state or the
  new one and two overlapping runs cannot both commit on top of the same parent;
* **a run lock**, so two runs on one store do not interleave.

Sinks receive what a run produced: a :class:`TimeSeriesSink` takes the changeset (Timestream), a
:class:`MetricsSink` takes per-run counts (CloudWatch). Both are optional plugins; the local store
never needs them.

The implementations live in :mod:`spotlake.storage.local` (the default), :mod:`spotlake.storage.s3`,
:mod:`spotlake.storage.timestream` and :mod:`spotlake.storage.cloudwatch`.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any, Final, Literal, Protocol, runtime_checkable

import attrs
import pandas as pd

__all__ = [
    "FRAME_KINDS",
    "RAW_SOURCES",
    "FrameKind",
    "LockInfo",
    "MetricsSink",
    "SinkReport",
    "SnapshotStore",
    "StateSnapshot",
    "TimeSeriesSink",
]

FrameKind = Literal["raw", "merged", "changes"]

#: Frame kinds a store keeps per run.
FRAME_KINDS: Final[tuple[FrameKind, ...]] = ("raw", "merged", "changes")

#: Sources whose raw frames a store keeps (``kind="raw"`` needs one of these).
RAW_SOURCES: Final = ("prices", "sps", "eviction", "skus")


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


@runtime_checkable
class SnapshotStore(Protocol):
    """Raw/merged/changes frames per run, atomically committed state, and a run lock."""

    @property
    def url(self) -> str:
        """Where the store lives (a directory path or ``s3://bucket/prefix``), for messages."""
        ...

    def lock(self, run_id: str, *, timeout: float = 0.0) -> AbstractContextManager[LockInfo]:
        """Hold the store's run lock; wait up to ``timeout`` seconds, then raise ``LockedError``."""
        ...

    def read_state(self, *, frames: bool = True) -> StateSnapshot:
        """The committed state (``version=None`` and empty for a new store); ``frames=False`` reads
        only the version and the documents (cheap: the history frames can be large)."""
        ...

    def commit_state(
        self,
        *,
        expected_version: str | None,
        frames: Mapping[str, pd.DataFrame],
        docs: Mapping[str, Mapping[str, Any]],
        run_id: str | None = None,
    ) -> str:
        """Replace the state atomically if it is still ``expected_version``; return the new version."""
        ...

    def put_frame(
        self, *, kind: FrameKind, at: datetime, frame: pd.DataFrame, source: str | None = None
    ) -> str:
        """Store one run's frame (idempotent per ``(kind, source, minute of at)``); return its key."""
        ...

    def read_frame(self, *, kind: FrameKind, at: datetime, source: str | None = None) -> pd.DataFrame | None:
        """The frame stored for one run exactly as it was put, or ``None``."""
        ...

    def read_frames(
        self,
        kind: FrameKind,
        *,
        source: str | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> pd.DataFrame:
        """Every stored frame of a kind in ``[start, end]``, concatenated, with a ``run_at`` column."""
        ...

    def latest(self, kind: FrameKind = "merged", *, source: str | None = None) -> pd.DataFrame | None:
        """The most recent frame of a kind, or ``None`` when there is none."""
        ...


@runtime_checkable
class TimeSeriesSink(Protocol):
    """Receives one run's changeset (CHANGES_SCHEMA)."""

    def write(self, changes: pd.DataFrame, *, run_at: datetime) -> SinkReport: ...


@runtime_checkable
class MetricsSink(Protocol):
    """Receives one run's counts (collected, merged, changed, ceased, failed calls, ...)."""

    def write_run(self, counts: Mapping[str, float], *, run_at: datetime) -> SinkReport: ...
