"""Delivery: feeding committed runs to the sinks, through an outbox that forgets nothing.

Only a committed run is delivered (a run that fails before its commit never reaches a sink). Each
commit adds its run to the ``outbox`` state document; a run leaves the outbox once the store holds
its delivery marker (:meth:`~spotlake.storage.base.SnapshotStore.mark_delivered`), written after
every sink took it. So a crash after the commit, or a sink outage, loses nothing: every later run
first delivers what is owed, oldest first, from the store's frames. A sink that stays down never
stops collection: the run commits, reports the delivery error (exit 3 from the CLI) and the runs
wait in the outbox. Delivering twice is harmless: Timestream keeps one record per
(dimensions, time, version) and the other writers overwrite their objects.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Final

import attrs
import pandas as pd

from spotlake.errors import SpotlakeError
from spotlake.pipeline.options import CycleEnv
from spotlake.redact import scrub
from spotlake.storage.base import FrameKind, SinkReport

__all__ = ["MAX_OWED", "Delivery", "deliver", "deliver_owed", "describe_failure", "still_owed"]

log = logging.getLogger(__name__)

#: Runs kept in the outbox at most: a week of 10-minute runs. An outage longer than that drops the
#: oldest (with a warning): their changes are still in the store's frames for a manual replay.
MAX_OWED: Final = 1008


@attrs.frozen(kw_only=True)
class Delivery:
    """What delivering did: sink reports, runs delivered, runs still owed, the first error."""

    sinks: tuple[SinkReport, ...] = ()
    delivered: tuple[datetime, ...] = ()
    owed: tuple[datetime, ...] = ()
    error: str | None = None


def deliver(
    env: CycleEnv,
    at: datetime,
    *,
    changes: pd.DataFrame,
    snapshot: pd.DataFrame,
    counts: Mapping[str, int] | None,
) -> tuple[SinkReport, ...]:
    """Feed every sink one committed run, then mark it delivered. Raises what a sink raised."""
    reports: list[SinkReport] = []
    if env.timeseries is not None:
        reports.append(env.timeseries.write(changes, run_at=at))
    for writer in env.extra_writers:
        writer.write(snapshot, run_at=at)
    if env.metrics is not None and counts is not None:
        reports.append(env.metrics.write_run(counts, run_at=at))
    env.store.mark_delivered(at)
    return tuple(reports)


def describe_failure(exc: BaseException) -> str:
    """A sink failure for the report: spotlake's errors as they are, anything else named as unexpected."""
    if isinstance(exc, SpotlakeError):
        return scrub(f"{type(exc).__name__}: {exc}")
    return scrub(f"unexpected {type(exc).__name__} from a sink: {exc}")


def still_owed(env: CycleEnv, runs: Sequence[datetime]) -> tuple[datetime, ...]:
    """The runs of ``runs`` without a delivery marker, oldest first, at most :data:`MAX_OWED`."""
    owed = sorted(r for r in set(runs) if not env.store.is_delivered(r))
    if len(owed) > MAX_OWED:
        dropped = owed[: len(owed) - MAX_OWED]
        log.warning(
            "the outbox holds %d runs; dropping the %d oldest (%s .. %s): replay them from the store",
            len(owed),
            len(dropped),
            dropped[0].isoformat(),
            dropped[-1].isoformat(),
        )
        owed = owed[-MAX_OWED:]
    return tuple(owed)


def deliver_owed(env: CycleEnv, runs: Sequence[datetime]) -> Delivery:
    """Deliver committed runs the sinks missed, oldest first; stop at the first failure.

    Never raises: a sink outage (or a sink's bug) is reported, not fatal.
    Metrics are not resent (they are telemetry of the run that happened).
    """
    if not env.has_sinks:
        return Delivery(owed=tuple(runs))
    owed = list(still_owed(env, runs))
    delivered: list[datetime] = []
    reports: list[SinkReport] = []
    while owed:
        at = owed[0]
        try:
            changes = env.store.read_frame(kind=FrameKind.CHANGES, at=at)
            snapshot = env.store.read_frame(kind=FrameKind.MERGED, at=at)
            if changes is None or snapshot is None:
                log.warning(
                    "run %s: its frames are gone, its changes cannot be delivered again", at.isoformat()
                )
                owed.pop(0)
                continue
            log.warning(
                "run %s was committed but not delivered to the sinks: delivering it now", at.isoformat()
            )
            reports.extend(deliver(env, at, changes=changes, snapshot=snapshot, counts=None))
        except Exception as exc:  # a sink is a plugin: whatever it raises, collection goes on
            error = describe_failure(exc)
            log.error("delivering run %s failed (%d run(s) still owed): %s", at.isoformat(), len(owed), error)
            return Delivery(sinks=tuple(reports), delivered=tuple(delivered), owed=tuple(owed), error=error)
        delivered.append(owed.pop(0))
    return Delivery(sinks=tuple(reports), delivered=tuple(delivered))
