"""Delivery: feeding committed runs to the sinks, through an outbox that forgets nothing.

Only a committed run is delivered (a run that fails before its commit never reaches a sink). A
commit adds one :class:`~spotlake.pipeline.state.Owed` entry per data sink (the time-series sink and
each snapshot writer) to the ``outbox`` state document; an entry leaves once the store holds that
sink's delivery marker for the run (:meth:`~spotlake.storage.base.SnapshotStore.mark_delivered`).
So a crash after the commit, or a sink outage, loses nothing, and each sink is tracked on its own:
a failing sink never holds back the others.

A sink is known by a stable name (:func:`~spotlake.pipeline.options.sink_names`: its ``name``
attribute, else its target, e.g. ``timestream-{db}.{table}``), never by its position among the
sinks, so reordering sinks never hands one sink's deliveries to another.

At the start of every run the owed entries are delivered, per sink, oldest first, from the
store's frames:

* a sink that fails twice in a row is taken as down for this run: its entries wait, unchanged;
* a failed delivery counts as the sink *refusing* that run only if the sink took a later run
  after the failure (in the same pass, or the run committed right after it): a sink that is
  down refuses nothing. After :data:`MAX_ATTEMPTS` refusals the entry is parked (dropped with an
  error in the report and the log: its frames stay in the store for a manual replay), so one run
  a sink rejects cannot block the queue;
* a sink that took a run but whose delivery marker could not be written is up: the run stays owed
  (it is delivered again, harmlessly) and nothing counts against it;
* at most ``CycleOptions.delivery_catch_up`` runs per sink (36 by default: six hours of backlog)
  are delivered per cycle, so a long backlog is worked off over several runs instead of delaying
  collection;
* at most :data:`MAX_OWED` runs per sink are kept (a week of runs); older ones are parked;
* entries owed to a sink not configured in this run (left out of one run, or removed) are kept
  and reported (``undelivered`` and the delivery error) until they are :data:`OWED_HORIZON` old,
  then parked: configured again, the sink gets them.

Delivering twice is harmless: Timestream keeps one record per (dimensions, time, version) and the
other writers overwrite their objects. Metrics are telemetry of the run that happened: they are
sent once, after the commit, and never owed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Final

import attrs
import pandas as pd

from spotlake.clock import ensure_utc
from spotlake.errors import SpotlakeError
from spotlake.pipeline.options import DeliveryEnv, sink_names
from spotlake.pipeline.state import Outbox, Owed
from spotlake.redact import scrub
from spotlake.storage.base import FrameKind, SinkReport

__all__ = [
    "MAX_ATTEMPTS",
    "MAX_OWED",
    "OWED_HORIZON",
    "Delivery",
    "SinkFailure",
    "data_sinks",
    "deliver_owed",
    "deliver_run",
    "describe_failure",
]

log = logging.getLogger(__name__)

#: Runs kept owed per sink at most: a week of 10-minute runs.
MAX_OWED: Final = 1008
#: How long runs owed to a sink that is not configured any more are kept: a week.
OWED_HORIZON: Final = timedelta(days=7)
#: Refusals of one run by a sink that takes other runs, before the run is parked: three runs
#: (30 minutes) rule out a blip, and a run the sink keeps refusing stops blocking the rest.
MAX_ATTEMPTS: Final = 3

#: A data sink: takes one committed run (its changes and snapshot) and may report what it did.
SinkCall = Callable[[datetime, pd.DataFrame, pd.DataFrame], SinkReport | None]


@attrs.frozen(kw_only=True)
class SinkFailure:
    """Why one sink is not (fully) fed."""

    sink: str
    error: str

    def __str__(self) -> str:
        return f"{self.sink}: {self.error}"


@attrs.frozen(kw_only=True)
class Delivery:
    """What delivering the owed runs did."""

    sinks: tuple[SinkReport, ...] = ()
    delivered: int = 0
    #: Entries still owed after this pass (to be committed in the outbox with this run's).
    owed: tuple[Owed, ...] = ()
    #: Entries given up on (a run a working sink kept refusing, or beyond MAX_OWED/OWED_HORIZON).
    parked: tuple[Owed, ...] = ()
    #: Every sink's failure, in sink order.
    failures: tuple[SinkFailure, ...] = ()

    @property
    def error(self) -> str | None:
        """Every failure in one line, for the report (``None``: none)."""
        return "; ".join(str(f) for f in self.failures) or None

    @property
    def runs(self) -> tuple[datetime, ...]:
        """The runs still owed to some sink, oldest first."""
        return tuple(sorted({o.at for o in self.owed}))


def describe_failure(exc: BaseException) -> str:
    """A sink failure for the report: spotlake's errors as they are, anything else named as unexpected."""
    if isinstance(exc, SpotlakeError):
        return scrub(f"{type(exc).__name__}: {exc}")
    return scrub(f"unexpected {type(exc).__name__} from a sink: {exc}")


def _marker_lost(exc: BaseException) -> str:
    return (
        f"took the run, but its delivery marker could not be written ({describe_failure(exc)}); "
        "it is delivered again next run"
    )


def data_sinks(env: DeliveryEnv) -> dict[str, SinkCall]:
    """The sinks that are owed runs, by their stable names (see :func:`sink_names`)."""
    ts_name, names, _legacy = sink_names(env.timeseries, env.extra_writers)
    sinks: dict[str, SinkCall] = {}
    if env.timeseries is not None and ts_name is not None:
        timeseries = env.timeseries
        sinks[ts_name] = lambda at, changes, _snapshot: timeseries.write(changes, run_at=at)
    for writer, name in zip(env.extra_writers, names, strict=True):

        def write(at: datetime, _changes: pd.DataFrame, snapshot: pd.DataFrame, w: object = writer) -> None:
            w.write(snapshot, run_at=at)  # type: ignore[attr-defined]

        sinks[name] = write
    return sinks


def deliver_run(
    env: DeliveryEnv,
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
        except Exception as exc:  # a sink is a plugin: whatever it raises, the committed run stands
            failures[name] = describe_failure(exc)
            log.error("run %s committed but sink %s was not fed: %s", at.isoformat(), name, failures[name])
            continue
        if report is not None:
            reports.append(report)
        try:
            env.store.mark_delivered(run, name)
        except Exception as exc:  # the sink has the run; without a marker it gets it again
            failures[name] = _marker_lost(exc)
            log.warning("run %s: sink %s %s", at.isoformat(), name, failures[name])
    if env.metrics is not None:
        try:
            reports.append(env.metrics.write_run(counts, run_at=at))
        except Exception as exc:
            failures["metrics"] = describe_failure(exc)
            log.error("run %s: the metrics sink failed: %s", at.isoformat(), failures["metrics"])
    return tuple(reports), failures


def deliver_owed(env: DeliveryEnv, outbox: Outbox) -> Delivery:
    """Deliver what the sinks are owed (see the module docstring). Never raises."""
    sinks = data_sinks(env)
    _ts, _names, legacy = sink_names(env.timeseries, env.extra_writers)
    by_sink: dict[str, list[Owed]] = {name: [] for name in sinks}
    for entry in _renamed(env, outbox.owed, sinks, legacy):
        by_sink.setdefault(entry.sink, []).append(entry)
    owed: list[Owed] = []
    parked: list[Owed] = []
    reports: list[SinkReport] = []
    failures: list[SinkFailure] = []
    delivered = 0
    for name, entries in by_sink.items():
        if not entries:
            continue
        ordered = sorted(entries, key=lambda e: e.at)
        if name in sinks:
            result = _work_off(env, name, sinks[name], ordered)
        else:
            result = _keep_for_later(env, name, ordered)
        owed.extend(result.owed)
        parked.extend(result.parked)
        reports.extend(result.sinks)
        failures.extend(result.failures)
        delivered += result.delivered
    return Delivery(
        sinks=tuple(reports),
        delivered=delivered,
        owed=tuple(owed),
        parked=tuple(parked),
        failures=tuple(failures),
    )


def _renamed(
    env: DeliveryEnv, entries: Sequence[Owed], sinks: Mapping[str, SinkCall], legacy: Mapping[str, str]
) -> list[Owed]:
    """The entries, those of a store written before sinks had names under today's names (an
    entry whose old marker exists is done), each (run, sink) once."""
    out: dict[tuple[str, str], Owed] = {}
    for entry in entries:
        current = entry
        if entry.sink not in sinks and entry.sink in legacy:
            try:
                if env.store.is_delivered(entry.run, entry.sink):
                    continue
            except SpotlakeError:
                pass  # delivered again at worst
            current = attrs.evolve(entry, sink=legacy[entry.sink])
        out.setdefault((current.run, current.sink), current)
    return list(out.values())


def _taken(env: DeliveryEnv, name: str, entries: Sequence[Owed]) -> tuple[list[Owed], list[Owed], list[Owed]]:
    """Split one sink's entries into (taken, owed, unreadable) by their delivery markers."""
    taken: list[Owed] = []
    owed: list[Owed] = []
    unreadable: list[Owed] = []
    for entry in entries:
        try:
            done = env.store.is_delivered(entry.run, name)
        except SpotlakeError as exc:  # cannot tell: keep it owed, look again next run
            log.warning("cannot read the delivery marker of run %s for %s: %s", entry.at, name, exc)
            unreadable.append(entry)
            continue
        (taken if done else owed).append(entry)
    return taken, owed, unreadable


def _keep_for_later(env: DeliveryEnv, name: str, entries: Sequence[Owed]) -> Delivery:
    """Runs owed to a sink this run does not have: kept (and reported) until OWED_HORIZON old."""
    _taken_already, owed, unreadable = _taken(env, name, entries)
    horizon = ensure_utc(env.clock.now()) - OWED_HORIZON
    kept = [e for e in (*owed, *unreadable) if e.at >= horizon]
    kept.sort(key=lambda e: e.at)
    parked = [e for e in (*owed, *unreadable) if e.at < horizon] + kept[: max(len(kept) - MAX_OWED, 0)]
    kept = kept[-MAX_OWED:]
    failures = []
    if kept:
        failures.append(
            SinkFailure(
                sink=name,
                error=(
                    f"not configured in this run; the {len(kept)} committed run(s) it is owed are kept "
                    f"(configure it again to deliver them; each is given up on {OWED_HORIZON.days} days "
                    "after its run)"
                ),
            )
        )
        log.warning("sink %s is not configured in this run: %s", name, failures[0].error)
    if parked:
        failures.append(
            SinkFailure(
                sink=name,
                error=(
                    f"{len(parked)} run(s) owed to it, not configured for {OWED_HORIZON.days} days, "
                    "given up on"
                ),
            )
        )
        log.error(
            "sink %s, not configured since, is owed runs older than %s: given up on %s (replay them from "
            "the store)",
            name,
            OWED_HORIZON,
            ", ".join(e.at.isoformat() for e in parked[:5]) + (" ..." if len(parked) > 5 else ""),
        )
    return Delivery(owed=tuple(kept), parked=tuple(parked), failures=tuple(failures))


def _work_off(env: DeliveryEnv, name: str, sink: SinkCall, entries: Sequence[Owed]) -> Delivery:
    """One sink's owed runs, oldest first (see the module docstring for the rules)."""
    parked: list[Owed] = []
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
    newest = max((e.at for e in entries), default=None)
    taken, pending, still = _taken(env, name, entries)
    # The newest run the sink took (right after its commit, or in an earlier pass).
    taken_last = max((e.at for e in taken), default=None)
    refused: list[Owed] = []  # failed, and the sink took a later run: it is up, the run is the problem
    unsure: list[Owed] = []  # failed with no success since: maybe the sink is down
    reports: list[SinkReport] = []
    failures: list[SinkFailure] = []
    delivered = tried = 0
    for owed in pending:
        entry = owed
        # A failure of an earlier pass, followed by the sink taking a later run: a refusal.
        if owed.failed_after is not None and taken_last is not None and taken_last > owed.failed_after:
            entry = attrs.evolve(owed, attempts=owed.attempts + 1, failed_after=None)
            if entry.attempts >= MAX_ATTEMPTS:
                _park(name, entry, parked)
                continue
        # Two failures in a row: the sink is down for now; the rest wait.
        if len(unsure) >= 2 or tried >= env.opts.delivery_catch_up:
            still.append(entry)
            continue
        tried += 1
        try:
            changes = env.store.read_frame(kind=FrameKind.CHANGES, at=entry.at)
            snapshot = env.store.read_frame(kind=FrameKind.MERGED, at=entry.at)
        except SpotlakeError as exc:  # the store, not the sink: nothing counts against the sink
            log.warning("run %s: cannot read its frames for %s: %s", entry.at, name, exc)
            still.append(entry)
            continue
        if changes is None or snapshot is None:
            log.warning("run %s: its frames are gone, it cannot be delivered to %s again", entry.at, name)
            parked.append(entry)
            continue
        log.warning("run %s was committed but not delivered to %s: delivering it now", entry.at, name)
        try:
            report = sink(entry.at, changes, snapshot)
        except Exception as exc:  # a sink outage (or a sink's bug) is reported, never fatal
            if not failures:
                failures.append(SinkFailure(sink=name, error=describe_failure(exc)))
            unsure.append(entry)
            continue
        delivered += 1
        refused.extend(unsure)
        unsure.clear()
        if report is not None:
            reports.append(report)
        try:
            env.store.mark_delivered(entry.run, name)
        except Exception as exc:  # the sink has it: owed still (delivered again), nothing against it
            error = _marker_lost(exc)
            log.warning("run %s: sink %s %s", entry.at.isoformat(), name, error)
            failures.append(SinkFailure(sink=name, error=f"run {entry.at.isoformat()}: {error}"))
            still.append(attrs.evolve(entry, failed_after=None))
    # Failures nobody can judge yet: the sink taking a later run (e.g. this run's, at its commit)
    # will show that it was up.
    still.extend(attrs.evolve(e, failed_after=newest) for e in unsure)
    for entry in refused:
        again = attrs.evolve(entry, attempts=entry.attempts + 1, failed_after=None)
        if again.attempts < MAX_ATTEMPTS:
            still.append(again)
        else:
            _park(name, again, parked)
    return Delivery(
        sinks=tuple(reports),
        delivered=delivered,
        owed=tuple(sorted(still, key=lambda e: e.at)),
        parked=tuple(parked),
        failures=tuple(failures),
    )


def _park(name: str, entry: Owed, parked: list[Owed]) -> None:
    log.error(
        "sink %s refused run %s %d times while taking others: parked (replay it from the store)",
        name,
        entry.at.isoformat(),
        entry.attempts,
    )
    parked.append(entry)
