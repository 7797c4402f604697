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
from spotlake.storage.compat import CompatWriter
from spotlake.storage.layout import check_name
from spotlake.storage.timestream import TimestreamSink

__all__ = [
    "DEFAULT_MAX_CLOCK_SKEW",
    "DEFAULT_STALE_AFTER",
    "AzureAccess",
    "CycleEnv",
    "CycleOptions",
    "DeliveryEnv",
    "ProgressFactory",
    "SnapshotWriter",
    "no_progress",
    "sink_names",
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
    """Anything that publishes each run's merged snapshot elsewhere (e.g. the original's S3 layout).

    What each writer is owed is tracked by its name (see :func:`sink_names`): give a writer a
    ``name`` attribute (a string naming its target, e.g. ``"s3-my-bucket"``) when its class alone
    does not tell it apart from the other writers.
    """

    def write(self, snapshot: pd.DataFrame, *, run_at: datetime) -> object: ...


#: The name the time-series sink had before sinks were named by their target (spotlake 0.2).
LEGACY_TIMESERIES = "timeseries"


def _name_of(sink: object, fallback: str) -> str:
    explicit = getattr(sink, "name", None)
    if explicit is not None:
        if not isinstance(explicit, str):
            raise ConfigError(f"the sink {sink!r} has a name attribute that is not a string: {explicit!r}")
        return check_name("sink", explicit)
    if isinstance(sink, TimestreamSink):
        derived = f"timestream-{sink.database}.{sink.table}"
    elif isinstance(sink, CompatWriter):
        derived = f"compat-{sink.bucket}"
    else:
        derived = fallback
    return check_name("sink", derived[:128])


def sink_names(
    timeseries: TimeSeriesSink | None, writers: Sequence[SnapshotWriter]
) -> tuple[str | None, tuple[str, ...], dict[str, str]]:
    """The stable names the outbox tracks the data sinks by: the time-series sink's, each
    writer's, and the names spotlake 0.2 gave them (old name -> name) where that is unambiguous.

    A sink's name is its ``name`` attribute when it has one; else its target (``timestream-{db}.
    {table}``, ``compat-{bucket}``); else its class name in lower case (``timeseries`` for the
    time-series sink). Never its position: reordering sinks must not hand one sink's deliveries to
    another. Two sinks with one name are a :class:`~spotlake.errors.ConfigError`.
    """
    ts_name = _name_of(timeseries, LEGACY_TIMESERIES) if timeseries is not None else None
    names = [_name_of(w, type(w).__name__.lower()) for w in writers]
    seen: dict[str, str] = {}
    for name, sink in zip(
        ([ts_name] if ts_name is not None else []) + names,
        ([timeseries] if timeseries is not None else []) + list(writers),
        strict=True,
    ):
        if name in seen:
            raise ConfigError(
                f"two sinks are both named {name!r} ({seen[name]} and {sink!r}): what each is owed is "
                "tracked by its name, so give each a distinct `name` attribute (e.g. its target)"
            )
        seen[name] = repr(sink)
    # Before sinks had names, the time-series sink was "timeseries" and a writer its class name
    # (plus "-2", "-3"... by position): map those to today's names where only one sink fits.
    legacy: dict[str, str] = {}
    if ts_name is not None and ts_name != LEGACY_TIMESERIES:
        legacy[LEGACY_TIMESERIES] = ts_name
    by_class: dict[str, list[str]] = {}
    for writer, name in zip(writers, names, strict=True):
        by_class.setdefault(type(writer).__name__.lower(), []).append(name)
    for old, current in by_class.items():
        if len(current) == 1 and current[0] != old:
            legacy[old] = current[0]
    return ts_name, tuple(names), {old: new for old, new in legacy.items() if old not in seen}


class _CatchUp(Protocol):
    @property
    def delivery_catch_up(self) -> int: ...

    @property
    def stale_after(self) -> timedelta: ...


class DeliveryEnv(Protocol):
    """What delivering runs to the sinks (and housekeeping the store) needs of a cycle, whichever
    cloud it collects: :class:`CycleEnv` (Azure) and the AWS cycle's env both have it."""

    @property
    def store(self) -> SnapshotStore: ...

    @property
    def timeseries(self) -> TimeSeriesSink | None: ...

    @property
    def metrics(self) -> MetricsSink | None: ...

    @property
    def extra_writers(self) -> Sequence[SnapshotWriter]: ...

    @property
    def clock(self) -> Clock: ...

    @property
    def opts(self) -> _CatchUp: ...


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

    def __attrs_post_init__(self) -> None:
        sink_names(self.timeseries, self.extra_writers)  # a ConfigError for clashing names, now

    def token(self) -> BearerTokenSource:
        """The bearer token source the collectors share (one token for the whole run)."""
        azure = self.azure
        return azure.token or TokenProvider(
            azure.credentials, endpoints=azure.endpoints, clock=self.clock, transport=azure.azure_transport
        )
