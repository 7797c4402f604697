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
from collections.abc import Mapping
from typing import Any, Final

from spotlake.clock import Clock
from spotlake.model import Cloud
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
    "CLOUD_TREES",
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
    "cloud_location",
    "open_store",
]


#: Where each cloud's tree is in a store (relative to its location).
CLOUD_TREES: Final[Mapping[Cloud, str]] = {Cloud.AZURE: "", Cloud.AWS: "aws"}


def cloud_location(location: str, cloud: Cloud) -> str:
    """The location of ``cloud``'s tree in the store at ``location``."""
    tree = CLOUD_TREES[Cloud(cloud)]
    if not tree:
        return location
    if location.startswith("s3://"):
        return f"{location.rstrip('/')}/{tree}"
    return os.path.join(location, tree)


def open_store(
    location: str | os.PathLike[str],
    *,
    s3_client: Any = None,
    clock: Clock | None = None,
    keep_generations: int = DEFAULT_KEEP_GENERATIONS,
    cloud: Cloud = Cloud.AZURE,
) -> ObjectStore:
    """A store at ``location``: ``s3://bucket/prefix`` for S3, anything else is a local directory.

    ``s3_client`` (a boto3 S3 client) is used for S3 locations; without one, boto3 builds a client
    from the default credential chain. Nothing is created until the first write.

    ``cloud``: whose data. Azure's is the store itself (the layout of spotlake.storage.layout);
    AWS's is the same layout under ``{location}/aws/`` (:data:`CLOUD_TREES`), with its own state
    and lock, so the two clouds' runs never wait for each other.
    """
    text = cloud_location(os.fspath(location), cloud)
    if text.startswith("s3://"):
        from spotlake.storage.s3 import S3Store

        return S3Store.from_url(text, client=s3_client, clock=clock, keep_generations=keep_generations)
    return LocalStore(text, clock=clock, keep_generations=keep_generations)
