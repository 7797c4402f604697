"""Where a store stands: :func:`store_status`, what ``spotlake status`` prints.

Everything comes from the committed state and the store's protocol (never from raw files): the last
run, what the rotation will collect next, the day's plan, each quota ledger's window, sharded runs
waiting for parts, and runs the sinks are still owed.
"""

from __future__ import annotations

from datetime import date, datetime

import attrs

from spotlake.clock import ensure_utc
from spotlake.collect.quota import LedgerSnapshot
from spotlake.pipeline.report import RunReport
from spotlake.pipeline.state import StateDocs
from spotlake.scoring.plan import PlanReport
from spotlake.scoring.rotation import RotationState, begin_run
from spotlake.storage.base import PartSet, SnapshotStore

__all__ = ["NextRun", "StoreStatus", "store_status"]


@attrs.frozen(kw_only=True)
class NextRun:
    """What a run started now would collect."""

    desired_count: int
    new_day: bool
    rebuild_plan: bool


@attrs.frozen(kw_only=True)
class StoreStatus:
    """A store's state at one time (``at``), typed; ``spotlake.serde.dump`` gives its JSON."""

    store: str
    at: datetime
    state_version: str | None
    last_run_at: datetime | None = None
    last_desired_count: int | None = None
    last_report: RunReport | None = None
    rotation: RotationState = attrs.field(factory=RotationState)
    next_run: NextRun | None = None
    plan_date: date | None = None
    plan: PlanReport | None = None
    #: Quota ledger summaries by state document name (``quota``, ``quota.shard-0-of-2``, ...).
    quota: dict[str, LedgerSnapshot] = attrs.field(factory=dict)
    #: Sharded runs with parts stored and not committed.
    pending_shards: tuple[PartSet, ...] = ()
    #: Committed runs the sinks have not received yet.
    undelivered: tuple[datetime, ...] = ()

    @property
    def empty(self) -> bool:
        """Nothing was ever committed."""
        return self.state_version is None


def store_status(store: SnapshotStore, *, now: datetime) -> StoreStatus:
    """The status of ``store`` at ``now`` (reads only state documents and the part listing)."""
    now = ensure_utc(now)
    state = store.read_state(frames=False)
    docs = StateDocs(state, store.url)
    pending = tuple(store.part_sets())
    if state.version is None:
        return StoreStatus(store=store.url, at=now, state_version=None, pending_shards=pending)
    last = docs.last_run()
    rotation = docs.rotation()
    decision = begin_run(rotation, now)
    day_plan = docs.day_plan()
    return StoreStatus(
        store=store.url,
        at=now,
        state_version=state.version,
        last_run_at=last.at if last else None,
        last_desired_count=last.desired_count if last else None,
        last_report=last.report if last else None,
        rotation=rotation,
        next_run=NextRun(
            desired_count=decision.desired_count, new_day=decision.new_day, rebuild_plan=decision.rebuild_plan
        ),
        plan_date=day_plan.date if day_plan else None,
        plan=day_plan.plan.report if day_plan else None,
        quota={name: ledger.snapshot(now) for name, ledger in docs.ledgers().items()},
        pending_shards=pending,
        undelivered=_undelivered(store, docs),
    )


def _undelivered(store: SnapshotStore, docs: StateDocs) -> tuple[datetime, ...]:
    outbox = docs.outbox()
    if outbox is None:
        return ()
    return tuple(sorted({o.at for o in outbox.owed if not store.is_delivered(o.run, o.sink)}))
