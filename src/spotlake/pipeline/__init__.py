"""One collection cycle, as a library call: :func:`run_cycle` (blocking) or :func:`arun_cycle`.

The modules follow the cycle: what it is given (:mod:`~spotlake.pipeline.options`), where it starts
(:mod:`~spotlake.pipeline._start`, :mod:`~spotlake.pipeline.state`), where its scores come from
(:mod:`~spotlake.pipeline._sps`: collected now, or merged from :mod:`~spotlake.pipeline.shards`),
collecting (:mod:`~spotlake.pipeline._collection`), scoring and committing
(:mod:`~spotlake.pipeline.cycle`), delivering to the sinks (:mod:`~spotlake.pipeline._delivery`),
what it reports (:mod:`~spotlake.pipeline.report`) and where a store stands
(:mod:`~spotlake.pipeline.status`). docs/architecture.md draws the whole journey.
"""

from __future__ import annotations

from spotlake.pipeline.cycle import arun_cycle, run_cycle
from spotlake.pipeline.options import AzureAccess, CycleOptions, SnapshotWriter
from spotlake.pipeline.report import RunReport, RunStatus, ShardProgress, UnknownPairs
from spotlake.pipeline.shards import Shard, pending_runs
from spotlake.pipeline.status import StoreStatus, store_status

__all__ = [
    "AzureAccess",
    "CycleOptions",
    "RunReport",
    "RunStatus",
    "Shard",
    "ShardProgress",
    "SnapshotWriter",
    "StoreStatus",
    "UnknownPairs",
    "arun_cycle",
    "pending_runs",
    "run_cycle",
    "store_status",
]
