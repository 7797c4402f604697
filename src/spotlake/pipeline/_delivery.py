"""Delivery: feeding committed runs to the sinks, through an outbox that forgets nothing.

Only a committed run is delivered (a run that fails before its commit never reaches a sink). A
commit adds one :class:`~spotlake.pipeline.state.Owed` entry per data sink (the time-series sink and
each snapshot writer) to the ``outbox`` state document; an entry leaves once the store holds that
sink's delivery marker for the run (:meth:`~spotlake.storage.base.SnapshotStore.mark_delivered`).
So a crash after the commit, or a sink outage, loses nothing, and each sink is tracked on its own:
a failing sink never holds back the others.

At the start of every run the owed entries are delivered, per sink, oldest first, from the
store's frames:

* a sink that fails twice in a row is taken as down for this run: its entries wait, unchanged;
* a sink that fails on one run but takes others is up: the failed entry's ``attempts`` grow, and
  after :data:`MAX_ATTEMPTS` the entry is parked (dropped with an error in the log: its frames stay
  in the store for a manual replay), so one run a sink rejects cannot block the queue;
* at most ``CycleOptions.delivery_catch_up`` runs per sink (36 by default: six hours of backlog)
  are delivered per cycle, so a long backlog is worked off over several runs instead of delaying
  collection;
* at most :data:`MAX_OWED` runs per sink are kept (a week of runs); older ones are dropped with a
  warning.

Delivering twice is harmless: Timestream keeps one record per (dimensions, time, version) and the
other writers overwrite their objects. Metrics are telemetry of the run that happened: they are
sent once, after the commit, and never owed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Final

import attrs
import pandas as pd

from spotlake.errors import SpotlakeError
from spotlake.pipeline.options import CycleEnv
from spotlake.pipeline.state import Outbox, Owed
from spotlake.redact import scrub
from spotlake.storage.base import FrameKind, SinkReport

__all__ = [
    "MAX_ATTEMPTS",
    "MAX_OWED",
    "Delivery",
    "data_sinks",
    "deliver_owed",
    "deliver_run",
    "describe_failure",
]

log = logging.getLogger(__name__)

#: Runs kept owed per sink at most: a week of 10-minute runs.
MAX_OWED: Final = 1008
#: Failed deliveries of one run to a sink that takes other runs, before the run is parked: three
#: runs (30 minutes) rule out a blip, and a run the sink keeps refusing stops blocking the rest.
MAX_ATTEMPTS: Final = 3

#: A data sink: takes one committed run (its changes and snapshot) and may report what it did.
SinkCall = Callable[[datetime, pd.DataFrame, pd.DataFrame], SinkReport | None]


@attrs.frozen(kw_only=True)
class Delivery:
    """What delivering the owed runs did."""

    sinks: tuple[SinkReport, ...] = ()
    delivered: int = 0
    #: Entries still owed after this pass (to be committed in the outbox with this run's).
    owed: tuple[Owed, ...] = ()
    #: Entries given up on (a run a working sink kept refusing, or beyond MAX_OWED).
    parked: tuple[Owed, ...] = ()
    #: The first failure, for the report.
    error: str | None = None

    @property
    def runs(self) -> tuple[datetime, ...]:
        """The runs still owed to some sink, oldest first."""
        return tuple(sorted({o.at for o in self.owed}))


def describe_failure(exc: BaseException) -> str:
    """A sink failure for the report: spotlake's errors as they are, anything else named as unexpected."""
    if isinstance(exc, SpotlakeError):
        return scrub(f"{type(exc).__name__}: {exc}")
    return scrub(f"unexpected {type(exc).__name__} from a sink: {exc}")


def data_sinks(env: CycleEnv) -> dict[str, SinkCall]:
    """The sinks that are owed runs, by a stable name: ``timeseries`` and one per snapshot writer."""
    sinks: dict[str, SinkCall] = {}
    if env.timeseries is not None:
        timeseries = env.timeseries
        sinks["timeseries"] = lambda at, changes, _snapshot: timeseries.write(changes, run_at=at)
    for writer in env.extra_writers:
        base = type(writer).__name__.lower()
        name = base
        n = 1
        while name in sinks:
            n += 1
            name = f"{base}-{n}"

        def write(at: datetime, _changes: pd.DataFrame, snapshot: pd.DataFrame, w: object = writer) -> None:
            w.write(snapshot, run_at=at)  # type: ignore[attr-defined]

        sinks[name] = write
    return sinks


def deliver_run(
    env: CycleEnv,
    at: datetime,
    run: str,
    *,
    changes: pd.DataFrame,
    snapshot: pd.DataFrame,
    counts: Mapping[str, int],
) -> tuple[tuple[SinkReport, ...], dict[str, str]]:
    """Feed every sink the run just committed; returns the reports and the failures by sink."""
    reports: list[SinkReport] = []
    failures: dict[str, str] = {}
    for name, sink in data_sinks(env).items():
        try:
            report = sink(at, changes, snapshot)
            env.store.mark_delivered(run, name)
        except Exception as exc:  # a sink is a plugin: whatever it raises, the committed run stands
            failures[name] = describe_failure(exc)
            log.error("run %s committed but sink %s was not fed: %s", at.isoformat(), name, failures[name])
            continue
        if report is not None:
            reports.append(report)
    if env.metrics is not None:
        try:
            reports.append(env.metrics.write_run(counts, run_at=at))
        except Exception as exc:
            failures["metrics"] = describe_failure(exc)
            log.error("run %s: the metrics sink failed: %s", at.isoformat(), failures["metrics"])
    return tuple(reports), failures


def deliver_owed(env: CycleEnv, outbox: Outbox) -> Delivery:
    """Deliver what the sinks are owed (see the module docstring). Never raises."""
    sinks = data_sinks(env)
    by_sink: dict[str, list[Owed]] = {}
    parked: list[Owed] = []
    for entry in outbox.owed:
        if entry.sink in sinks:
            by_sink.setdefault(entry.sink, []).append(entry)
        else:
            log.warning(
                "run %s is owed to sink %s, which is no longer configured: dropped", entry.at, entry.sink
            )
    owed: list[Owed] = []
    reports: list[SinkReport] = []
    delivered = 0
    error: str | None = None
    for name, entries in by_sink.items():
        result = _work_off(env, name, sinks[name], sorted(entries, key=lambda e: e.at))
        owed.extend(result.owed)
        parked.extend(result.parked)
        reports.extend(result.sinks)
        delivered += result.delivered
        error = error or result.error
    return Delivery(
        sinks=tuple(reports), delivered=delivered, owed=tuple(owed), parked=tuple(parked), error=error
    )


def _work_off(env: CycleEnv, name: str, sink: SinkCall, entries: Sequence[Owed]) -> Delivery:
    """One sink's owed runs, oldest first (see the module docstring for the rules)."""
    if len(entries) > MAX_OWED:
        dropped = entries[: len(entries) - MAX_OWED]
        log.warning(
            "sink %s is owed %d runs; dropping the %d oldest (%s .. %s): replay them from the store",
            name,
            len(entries),
            len(dropped),
            dropped[0].at.isoformat(),
            dropped[-1].at.isoformat(),
        )
        parked, entries = list(dropped), list(entries[len(dropped) :])
    else:
        parked = []
    still: list[Owed] = []
    refused: list[Owed] = []  # failed, and the sink took a later run: it is up, the run is the problem
    unsure: list[Owed] = []  # failed with no success since: maybe the sink is down
    reports: list[SinkReport] = []
    delivered = 0
    error: str | None = None
    tried = 0
    for entry in entries:
        try:
            done = env.store.is_delivered(entry.run, name)
        except SpotlakeError as exc:  # cannot tell: keep it owed, look again next run
            log.warning("cannot read the delivery marker of run %s for %s: %s", entry.at, name, exc)
            still.append(entry)
            continue
        if done:
            # A later run the sink took (right after its commit) is as good a sign it works.
            refused.extend(unsure)
            unsure.clear()
            continue
        # Two failures in a row: the sink is down for now; the rest wait.
        if len(unsure) >= 2 or tried >= env.opts.delivery_catch_up:
            still.append(entry)
            continue
        tried += 1
        try:
            changes = env.store.read_frame(kind=FrameKind.CHANGES, at=entry.at)
            snapshot = env.store.read_frame(kind=FrameKind.MERGED, at=entry.at)
            if changes is None or snapshot is None:
                log.warning("run %s: its frames are gone, it cannot be delivered to %s again", entry.at, name)
                parked.append(entry)
                continue
            log.warning("run %s was committed but not delivered to %s: delivering it now", entry.at, name)
            report = sink(entry.at, changes, snapshot)
            env.store.mark_delivered(entry.run, name)
        except Exception as exc:  # a sink outage (or a sink's bug) is reported, never fatal
            error = error or f"{name}: {describe_failure(exc)}"
            unsure.append(entry)
            continue
        delivered += 1
        refused.extend(unsure)
        unsure.clear()
        if report is not None:
            reports.append(report)
    still.extend(unsure)
    for entry in refused:
        again = attrs.evolve(entry, attempts=entry.attempts + 1)
        if again.attempts < MAX_ATTEMPTS:
            still.append(again)
            continue
        log.error(
            "sink %s refused run %s %d times while taking others: parked (replay it from the store)",
            name,
            entry.at.isoformat(),
            again.attempts,
        )
        parked.append(again)
    return Delivery(
        sinks=tuple(reports),
        delivered=delivered,
        owed=tuple(sorted(still, key=lambda e: e.at)),
        parked=tuple(parked),
        error=error,
    )
