"""What a collection cycle is given: its options, how to reach Azure, and the bundle of both."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol

import attrs
import httpx
import pandas as pd

from spotlake.clock import Clock
from spotlake.collect.auth import AzureCredentials, BearerTokenSource, TokenProvider
from spotlake.collect.base import AzureEndpoints
from spotlake.collect.quota import DEFAULT_BUDGET, DEFAULT_WINDOW
from spotlake.errors import ConfigError
from spotlake.model import DEFAULT_PLAN_SEARCH
from spotlake.scoring.engine import DEFAULT_MAX_AGE
from spotlake.storage.base import MetricsSink, SnapshotStore, TimeSeriesSink

__all__ = [
    "DEFAULT_MAX_CLOCK_SKEW",
    "DEFAULT_STALE_AFTER",
    "AzureAccess",
    "CycleEnv",
    "CycleOptions",
    "ProgressFactory",
    "SnapshotWriter",
    "no_progress",
]

#: ``progress(label)`` returns a ``(done, total)`` callback for "prices", "sps" and "plan", or None.
ProgressFactory = Callable[[str], Callable[[int, int | None], None] | None]

#: See CycleOptions.max_clock_skew.
DEFAULT_MAX_CLOCK_SKEW = timedelta(minutes=15)

#: A stage nobody committed is swept once older than this. Runs take minutes; six hours is far
#: beyond any live run, even one whose lock was taken over, so a sweep never races a writer.
DEFAULT_STALE_AFTER = timedelta(hours=6)


def no_progress(_label: str) -> None:
    """The default progress factory: no progress output."""
    return None


@attrs.frozen(kw_only=True)
class CycleOptions:
    """How a cycle runs. Every default is what the original deployment needed, or safer."""

    #: Zonal SPS requests (scores per availability zone) or regional ones.
    zonal: bool = True
    max_regions: int = 8
    max_sizes: int = 5
    #: Re-plans searching tie-break orders for fewer calls when the day's plan is rebuilt (see
    #: ``plan_calls(search=...)``); deterministic, so every shard worker gets the same plan.
    plan_search: int = DEFAULT_PLAN_SEARCH
    #: SPS calls per (subscription, URL location) per window. Observed limit: ~10 per hour.
    sps_budget: int = DEFAULT_BUDGET
    #: 62 minutes, not 60: see spotlake.collect.quota (we stamp a call before it leaves).
    sps_window: timedelta = DEFAULT_WINDOW
    #: URL locations to spread SPS calls over; empty = every region of the support set.
    sps_locations: tuple[str, ...] = ()
    sps_concurrency: int = 8
    price_concurrency: int = 16
    #: T2/T3 history entries older than this are forgotten (see spotlake.scoring.engine).
    history_max_age: timedelta = DEFAULT_MAX_AGE
    #: Seconds to wait for another run's lock before giving up (0 = fail at once).
    lock_timeout: float = 0.0
    #: Stages of runs that never committed, and temporary files, are swept when older than this.
    stale_after: timedelta = DEFAULT_STALE_AFTER
    #: How far a run time may be ahead of the clock. Schedulers fire on time, so this only catches
    #: a mistyped --at or a wrong clock, before a run in the future blocks every later run.
    max_clock_skew: timedelta = DEFAULT_MAX_CLOCK_SKEW
    #: Owed runs delivered per sink per cycle (see spotlake.pipeline._delivery): a backlog is
    #: worked off over several runs instead of delaying one run's collection. At least 1.
    delivery_catch_up: int = attrs.field(default=36)

    @delivery_catch_up.validator
    def _check_catch_up(self, _attribute: object, value: int) -> None:
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(
                f"delivery_catch_up must be a whole number of runs, at least 1 (got {value!r}): with "
                "none, a backlog of owed runs would never be delivered"
            )


@attrs.frozen(kw_only=True)
class AzureAccess:
    """How to reach Azure: credentials, endpoints, and (for tests/emulator) injected transports."""

    credentials: AzureCredentials
    endpoints: AzureEndpoints = attrs.field(factory=AzureEndpoints)
    #: httpx transport for the REST collectors (prices, SPS, SKUs); None = real network.
    transport: httpx.AsyncBaseTransport | None = None
    #: azure-core transport for the SDK clients (Resource Graph, azure-identity); None = default.
    azure_transport: Any = None
    #: Bearer token source; None = a TokenProvider over ``credentials``.
    token: BearerTokenSource | None = None


class SnapshotWriter(Protocol):
    """Anything that publishes each run's merged snapshot elsewhere (e.g. the original's S3 layout)."""

    def write(self, snapshot: pd.DataFrame, *, run_at: datetime) -> object: ...


@attrs.frozen(kw_only=True)
class CycleEnv:
    """Everything a cycle was given but the run time."""

    store: SnapshotStore
    azure: AzureAccess
    opts: CycleOptions
    timeseries: TimeSeriesSink | None = None
    metrics: MetricsSink | None = None
    extra_writers: Sequence[SnapshotWriter] = ()
    clock: Clock
    progress: ProgressFactory = no_progress

    def token(self) -> BearerTokenSource:
        """The bearer token source the collectors share (one token for the whole run)."""
        azure = self.azure
        return azure.token or TokenProvider(
            azure.credentials, endpoints=azure.endpoints, clock=self.clock, transport=azure.azure_transport
        )
