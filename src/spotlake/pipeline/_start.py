"""Where a run starts: the committed state it reads, and what the rotation decides for it.

:func:`begin` is pure: the same committed state and run time always give the same decision, which
is what lets every shard worker of a run agree on the count and the day's plan without talking.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime, timedelta

import attrs

from spotlake.clock import ensure_utc
from spotlake.collect.quota import QuotaLedger
from spotlake.errors import ConfigError
from spotlake.pipeline.report import RunReport, RunStatus
from spotlake.pipeline.state import Outbox, StateDocs
from spotlake.scoring.plan import Plan
from spotlake.scoring.rotation import RotationState, RunDecision, begin_run
from spotlake.storage.base import StateSnapshot

__all__ = ["RunStart", "begin"]


@attrs.frozen(kw_only=True)
class RunStart:
    """The committed state a run starts from and what the rotation decided for it."""

    state: StateSnapshot
    rotation: RotationState
    decision: RunDecision
    #: The day's stored plan when it can be reused (``None``: rebuild it from the price crawl).
    stored_plan: Plan | None
    #: The stored quota ledgers, by state document name.
    ledgers: Mapping[str, QuotaLedger] = attrs.field(factory=dict)
    #: What the sinks are owed (``None``: a store from before outboxes).
    outbox: Outbox | None = None
    #: When the last committed run was (``None``: no run yet).
    last_at: datetime | None = None

    @property
    def day(self) -> date:
        return self.decision.day


def begin(
    state: StateSnapshot, at: datetime, *, where: str, now: datetime, max_skew: timedelta
) -> RunStart | RunReport:
    """What the run at ``at`` does from ``state``, or the ``skipped`` report if it is committed.

    :class:`~spotlake.errors.ConfigError` when ``at`` is more than ``max_skew`` ahead of ``now``
    (a mistyped ``--at`` would otherwise commit a run in the future that every later run is
    "before"), or when ``at`` is before the last committed run: history and diffs are ordered, so
    runs move forward in time.
    """
    ahead = at - ensure_utc(now)
    if ahead > max_skew:
        raise ConfigError(
            f"run time {at.isoformat()} is {_span(ahead)} ahead of the clock "
            f"({ensure_utc(now).isoformat()}); a run may be at most {_span(max_skew)} in the future "
            "(CycleOptions.max_clock_skew, --max-clock-skew). Check --at, or the machine's clock"
        )
    docs = StateDocs(state, where)
    last = docs.last_run()
    if last is not None and last.at == at:
        # Idempotent rerun: the run time is committed already; redoing it would collect the next
        # count on top of itself. (A run that failed before committing is simply run again.)
        return RunReport(
            at=at, status=RunStatus.SKIPPED, desired_count=last.desired_count, state_version=state.version
        )
    if last is not None and last.at > at:
        raise ConfigError(
            f"run time {at.isoformat()} is before the last committed run {last.at.isoformat()}; "
            "runs must move forward in time (history and diffs are ordered). If that run's time was a "
            f"mistake, roll the store back to the state before it: spotlake rollback --store {where} "
            "lists the states kept and restores one (docs/operations.md, 'Recovery')"
        )
    rotation = docs.rotation()
    decision = begin_run(rotation, at)
    stored = docs.day_plan()
    plan = (
        stored.plan
        if stored is not None and stored.date == decision.day and not decision.rebuild_plan
        else None
    )
    if decision.rebuild_plan:
        # The day's rebuild forgets learned invalid values too: Azure adds regions and sizes, and a
        # value that is still invalid costs one HTTP 400 to learn again.
        rotation = attrs.evolve(rotation, invalid_regions=(), invalid_sizes=(), invalid_pairs=())
    return RunStart(
        state=state,
        rotation=rotation,
        decision=decision,
        stored_plan=plan,
        ledgers=docs.ledgers(),
        outbox=docs.outbox(),
        last_at=last.at if last is not None else None,
    )


def _span(delta: timedelta) -> str:
    days = delta.days
    if days >= 2:
        return f"{days} days"
    minutes = int(delta.total_seconds() // 60)
    return f"{minutes} min" if minutes < 120 else f"{minutes // 60} h"
