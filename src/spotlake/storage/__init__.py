"""Stores (local directory, S3) and sinks (Timestream, CloudWatch) for snapshots, changes and state.

Open a store with :func:`open_store`; it returns a :class:`~spotlake.storage.base.SnapshotStore`::

    store = open_store("./spotlake-data")            # or "s3://bucket/prefix"
    with store.lock(run_id, timeout=60):
        state = store.read_state()
        stage = store.stage(run_at)                  # hidden until the commit publishes it
        stage.put_frame(kind="raw", source="sps", frame=sps)
        ...
        store.commit_state(expected_version=state.version, frames=..., docs=..., publish=stage)

Sinks (:class:`~spotlake.storage.timestream.TimestreamSink`,
:class:`~spotlake.storage.cloudwatch.CloudWatchSink`) and the original deployment's S3 layout
(:class:`~spotlake.storage.compat.CompatWriter`) are imported from their modules; they pull in boto3
only when constructed. The layout, the guarantees and recovery are described in docs/operations.md.
"""

from __future__ import annotations

import os
from typing import Any

from spotlake.clock import Clock
from spotlake.storage.base import (
    FRAME_KINDS,
    RAW_SOURCES,
    FrameKind,
    GenerationInfo,
    LockInfo,
    MetricsSink,
    PartSet,
    RunStage,
    SinkReport,
    SnapshotStore,
    StateSnapshot,
    SweepReport,
    TimeSeriesSink,
)
from spotlake.storage.core import DEFAULT_KEEP_GENERATIONS, ObjectStore
from spotlake.storage.local import LocalStore

__all__ = [
    "FRAME_KINDS",
    "RAW_SOURCES",
    "FrameKind",
    "GenerationInfo",
    "LocalStore",
    "LockInfo",
    "MetricsSink",
    "ObjectStore",
    "PartSet",
    "RunStage",
    "SinkReport",
    "SnapshotStore",
    "StateSnapshot",
    "SweepReport",
    "TimeSeriesSink",
    "open_store",
]


def open_store(
    location: str | os.PathLike[str],
    *,
    s3_client: Any = None,
    clock: Clock | None = None,
    keep_generations: int = DEFAULT_KEEP_GENERATIONS,
) -> ObjectStore:
    """A store at ``location``: ``s3://bucket/prefix`` for S3, anything else is a local directory.

    ``s3_client`` (a boto3 S3 client) is used for S3 locations; without one, boto3 builds a client
    from the default credential chain. Nothing is created until the first write.
    """
    text = os.fspath(location)
    if text.startswith("s3://"):
        from spotlake.storage.s3 import S3Store

        return S3Store.from_url(text, client=s3_client, clock=clock, keep_generations=keep_generations)
    return LocalStore(text, clock=clock, keep_generations=keep_generations)
