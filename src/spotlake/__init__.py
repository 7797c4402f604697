"""spotlake: spot-instance intelligence.

Collect Azure Spot Placement Scores, spot/on-demand prices, eviction rates and size families;
plan the rate-limited SPS calls; merge, score (T2/T3) and diff them into a clean time series;
store it locally or on AWS; and allocate compute spot-first with on-demand fallback.

The verbs, from the top::

    import spotlake

    store = spotlake.open_store("./spotlake-data")              # or "s3://bucket/prefix"
    access = spotlake.AzureAccess(credentials=spotlake.AzureCredentials.from_env())
    report = spotlake.run_cycle(at, store=store, azure=access)  # one 10-minute collection
    status = spotlake.store_status(store, now=at)
    lake = spotlake.open(store)                                 # the data as frames (history, offers)
    plan = spotlake.plan_calls(pairs)                           # the SPS call planner

Importing ``spotlake`` is cheap: every name below is imported on first use, and boto3 and the
Azure SDKs only by the adapters that use them. docs/architecture.md shows how the packages fit.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: Public name -> the module that defines it (imported on first access).
_EXPORTS: dict[str, str] = {
    # collection cycle
    "run_cycle": "spotlake.pipeline",
    "arun_cycle": "spotlake.pipeline",
    "CycleOptions": "spotlake.pipeline",
    "AzureAccess": "spotlake.pipeline",
    "RunReport": "spotlake.pipeline",
    "RunStatus": "spotlake.pipeline",
    "Shard": "spotlake.pipeline",
    "store_status": "spotlake.pipeline",
    "StoreStatus": "spotlake.pipeline",
    # credentials
    "AzureCredentials": "spotlake.collect.auth",
    "Secret": "spotlake.model",
    # storage
    "open_store": "spotlake.storage",
    "SnapshotStore": "spotlake.storage",
    # reading what was collected
    "open": "spotlake.analysis",
    "Analysis": "spotlake.analysis",
    # planning
    "plan_calls": "spotlake.scoring.plan",
    "Plan": "spotlake.scoring.plan",
    # values
    "DESIRED_COUNTS": "spotlake.model",
    "Source": "spotlake.model",
    "SpsCall": "spotlake.model",
    # time
    "Clock": "spotlake.clock",
    "FakeClock": "spotlake.clock",
    "SystemClock": "spotlake.clock",
    # errors
    "SpotlakeError": "spotlake.errors",
    "TransientError": "spotlake.errors",
    "ConfigError": "spotlake.errors",
}

__all__ = [
    "DESIRED_COUNTS",
    "Analysis",
    "AzureAccess",
    "AzureCredentials",
    "Clock",
    "ConfigError",
    "CycleOptions",
    "FakeClock",
    "Plan",
    "RunReport",
    "RunStatus",
    "Secret",
    "Shard",
    "SnapshotStore",
    "Source",
    "SpotlakeError",
    "SpsCall",
    "StoreStatus",
    "SystemClock",
    "TransientError",
    "__version__",
    "arun_cycle",
    "open",
    "open_store",
    "plan_calls",
    "run_cycle",
    "store_status",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'spotlake' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


if TYPE_CHECKING:
    from spotlake.analysis import Analysis, open
    from spotlake.clock import Clock, FakeClock, SystemClock
    from spotlake.collect.auth import AzureCredentials
    from spotlake.errors import ConfigError, SpotlakeError, TransientError
    from spotlake.model import DESIRED_COUNTS, Secret, Source, SpsCall
    from spotlake.pipeline import (
        AzureAccess,
        CycleOptions,
        RunReport,
        RunStatus,
        Shard,
        StoreStatus,
        arun_cycle,
        run_cycle,
        store_status,
    )
    from spotlake.scoring.plan import Plan, plan_calls
    from spotlake.storage import SnapshotStore, open_store
