"""The cost ledger: what every instance was asked to be, what it was, what it cost, and why.

One :class:`LedgerEntry` per launched instance: the capacity type the mix asked for and the one it
got, the price at launch and the on-demand price of the same type in the same region, the
placement score the decision saw, every failed launch before it (the fallbacks, with their
reasons) and how it ended (completed, interrupted, hung, replaced by spot, ...).

:meth:`CostLedger.totals` sums it up: the requested and realised spot share (in instance-hours),
the cost, what the same instance-hours would have cost on-demand, and the saving. The ledger is a
pandas frame (:meth:`CostLedger.to_frame`) and an append-only table in a spotlake store
(:meth:`CostLedger.save` appends what changed; :meth:`CostLedger.load` reads it back).
"""

from __future__ import annotations

import threading
from datetime import datetime
from enum import StrEnum
from typing import Final

import attrs
import pandas as pd

from spotlake.clock import Clock, ensure_utc
from spotlake.compute.allocator import Allocation, FallbackEvent, Placement
from spotlake.compute.values import CapacityType
from spotlake.errors import ConfigError, CorruptStoreError
from spotlake.serde import converter
from spotlake.storage.base import MetricsSink, SinkReport, SnapshotStore

__all__ = ["LEDGER_TABLE", "CostLedger", "EndReason", "LedgerEntry", "LedgerTotals"]

#: The store table the ledger is saved to.
LEDGER_TABLE: Final = "compute-ledger"

_HOUR = 3600.0


class EndReason(StrEnum):
    """Why an instance's ledger entry ended: its job completed or failed, spot interrupted it, its
    job hung, it was terminated, or it was replaced by spot."""

    COMPLETED = "completed"
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    HANGING = "hanging"
    TERMINATED = "terminated"
    #: Replaced by spot (the revert policy).
    REPLACED = "replaced"


def _describe(event: FallbackEvent) -> str:
    return f"{event.capacity_type} {event.pool}: {event.failure} -> {event.action}"


@attrs.frozen(kw_only=True)
class LedgerEntry:
    """One instance's record (see the module docstring)."""

    instance_id: str
    allocation: str
    job: str | None
    pool: str
    instance_type: str
    region: str
    zone: str | None
    requested: CapacityType
    realised: CapacityType
    units: float
    price: float
    on_demand_price: float | None
    score: float | None
    score_scale: float | None
    launched_at: datetime
    fallbacks: tuple[str, ...] = ()
    ended_at: datetime | None = None
    end: EndReason | None = None

    @classmethod
    def of(cls, placement: Placement, *, allocation: str, job: str | None) -> LedgerEntry:
        i = placement.instance
        return cls(
            instance_id=i.id,
            allocation=allocation,
            job=job,
            pool=str(i.offer.pool),
            instance_type=i.offer.pool.instance_type,
            region=i.offer.pool.region,
            zone=i.offer.pool.zone,
            requested=placement.requested,
            realised=i.capacity_type,
            units=placement.units,
            price=i.price,
            on_demand_price=placement.on_demand_price,
            score=None if placement.score is None else placement.score.value,
            score_scale=None if placement.score is None else placement.score.scale,
            launched_at=i.launched_at,
            fallbacks=tuple(_describe(e) for e in placement.after),
        )

    def hours(self, now: datetime) -> float:
        """Instance-hours so far (to the end, or to ``now`` while it runs)."""
        end = self.ended_at or ensure_utc(now)
        return max((end - self.launched_at).total_seconds(), 0.0) / _HOUR

    def cost(self, now: datetime) -> float:
        return self.price * self.hours(now)

    def on_demand_cost(self, now: datetime) -> float:
        """What the same hours cost on-demand (the price paid when the on-demand price is unknown)."""
        return (self.on_demand_price if self.on_demand_price is not None else self.price) * self.hours(now)


@attrs.frozen(kw_only=True)
class LedgerTotals:
    """The ledger summed up (:meth:`CostLedger.totals`): instances, interruptions, fallbacks,
    instance-hours, the requested and realised spot shares, and the cost against all on-demand."""

    instances: int
    running: int
    interruptions: int
    #: Instances that launched after a failed launch, or on-demand in place of spot.
    fallbacks: int
    instance_hours: float
    #: Share of instance-hours the mix asked to be spot, and the share that was.
    requested_spot_share: float
    realised_spot_share: float
    cost: float
    on_demand_cost: float

    @property
    def saving(self) -> float:
        """The fraction saved against the same instance-hours all on-demand (0 with no cost)."""
        return 1 - self.cost / self.on_demand_cost if self.on_demand_cost else 0.0


class CostLedger:
    """Entries by instance id, on the injected clock. Thread-safe."""

    def __init__(self, *, clock: Clock, entries: tuple[LedgerEntry, ...] = ()) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: dict[str, LedgerEntry] = {e.instance_id: e for e in entries}
        self._unsaved: set[str] = set()

    def record(self, allocation: Allocation, *, job: str | None = None) -> tuple[LedgerEntry, ...]:
        """Add every instance of an allocation."""
        entries = tuple(LedgerEntry.of(p, allocation=allocation.id, job=job) for p in allocation.placements)
        with self._lock:
            for e in entries:
                self._entries[e.instance_id] = e
                self._unsaved.add(e.instance_id)
        return entries

    def record_end(self, instance_id: str, reason: EndReason, *, at: datetime | None = None) -> LedgerEntry:
        """An instance ended (the first end recorded stands)."""
        with self._lock:
            entry = self._entries.get(instance_id)
            if entry is None:
                raise ConfigError(f"the ledger has no instance {instance_id!r}")
            if entry.ended_at is None:
                entry = attrs.evolve(entry, ended_at=ensure_utc(at or self._clock.now()), end=reason)
                self._entries[instance_id] = entry
                self._unsaved.add(instance_id)
            return entry

    def get(self, instance_id: str) -> LedgerEntry | None:
        with self._lock:
            return self._entries.get(instance_id)

    def entries(self) -> tuple[LedgerEntry, ...]:
        """Every entry, in launch order."""
        with self._lock:
            return tuple(sorted(self._entries.values(), key=lambda e: (e.launched_at, e.instance_id)))

    def totals(self, *, at: datetime | None = None) -> LedgerTotals:
        now = ensure_utc(at or self._clock.now())
        entries = self.entries()
        hours = [e.hours(now) for e in entries]
        total = sum(hours)

        def share(pick: CapacityType, field: str) -> float:
            return (
                sum(h for e, h in zip(entries, hours, strict=True) if getattr(e, field) is pick) / total
                if total
                else 0.0
            )

        return LedgerTotals(
            instances=len(entries),
            running=sum(1 for e in entries if e.ended_at is None),
            interruptions=sum(1 for e in entries if e.end is EndReason.INTERRUPTED),
            fallbacks=sum(1 for e in entries if e.fallbacks or e.requested is not e.realised),
            instance_hours=total,
            requested_spot_share=share(CapacityType.SPOT, "requested"),
            realised_spot_share=share(CapacityType.SPOT, "realised"),
            cost=sum(e.cost(now) for e in entries),
            on_demand_cost=sum(e.on_demand_cost(now) for e in entries),
        )

    def metrics(self, *, at: datetime | None = None) -> dict[str, float]:
        """Gauges for a metrics sink (e.g. CloudWatch): running instances by capacity type, the
        realised and requested spot share, the hourly cost now, fallbacks and interruptions so
        far: the capacity type visible in monitoring, not only in tags."""
        now = ensure_utc(at or self._clock.now())
        t = self.totals(at=now)
        running = [e for e in self.entries() if e.ended_at is None]
        return {
            "RunningSpot": float(sum(1 for e in running if e.realised is CapacityType.SPOT)),
            "RunningOnDemand": float(sum(1 for e in running if e.realised is CapacityType.ON_DEMAND)),
            "RunningFallenBack": float(sum(1 for e in running if e.requested is not e.realised)),
            "HourlyCost": sum(e.price for e in running),
            "RealisedSpotShare": t.realised_spot_share,
            "RequestedSpotShare": t.requested_spot_share,
            "Fallbacks": float(t.fallbacks),
            "Interruptions": float(t.interruptions),
            "Saving": t.saving,
        }

    def publish(self, sink: MetricsSink, *, at: datetime | None = None) -> SinkReport:
        """Send :meth:`metrics` to a metrics sink (the collection pipeline's CloudWatch sink works)."""
        now = ensure_utc(at or self._clock.now())
        return sink.write_run(self.metrics(at=now), run_at=now)

    def to_frame(self) -> pd.DataFrame:
        """One row per instance; enums as their values, ``fallbacks`` joined with ``"; "``."""
        rows = [converter.unstructure(e) for e in self.entries()]
        for row in rows:
            row["fallbacks"] = "; ".join(row["fallbacks"])
        frame = pd.DataFrame(rows, columns=[f.name for f in attrs.fields(LedgerEntry)])
        for column in ("launched_at", "ended_at"):
            frame[column] = pd.to_datetime(frame[column], utc=True, format="ISO8601")
        return frame

    def save(self, store: SnapshotStore) -> str | None:
        """Append the entries new or changed since the last save to the store's ledger table;
        the key written, or ``None`` when there was nothing new."""
        with self._lock:
            changed = set(self._unsaved)
        if not changed:
            return None
        frame = self.to_frame()
        frame = frame[frame["instance_id"].isin(changed)]
        key = store.append_table(LEDGER_TABLE, frame, at=ensure_utc(self._clock.now()))
        with self._lock:
            self._unsaved -= changed
        return key

    @classmethod
    def load(cls, store: SnapshotStore, *, clock: Clock) -> CostLedger:
        """The ledger saved in ``store``."""
        frame = store.read_table(LEDGER_TABLE)
        if frame.empty:
            return cls(clock=clock)
        # An entry only ever changes from running to ended, so the ended record of an instance is
        # its latest whatever order the appends were listed in.
        frame = frame.assign(_ended=frame["ended_at"].notna()).sort_values("_ended", kind="stable")
        frame = frame.drop_duplicates("instance_id", keep="last").drop(columns="_ended")
        entries = []
        for row in frame.to_dict("records"):
            try:
                fallbacks = str(row.pop("fallbacks") or "")
                clean = {k: (None if pd.isna(v) else v) for k, v in row.items()}
                for column in ("launched_at", "ended_at"):
                    value = clean[column]
                    if isinstance(value, pd.Timestamp):
                        clean[column] = value.to_pydatetime()
                clean["fallbacks"] = fallbacks.split("; ") if fallbacks else []
                entries.append(converter.structure(clean, LedgerEntry))
            except Exception as exc:
                raise CorruptStoreError(
                    f"{store.url}: the {LEDGER_TABLE} table has a row spotlake cannot read ({exc})"
                ) from exc
        return cls(clock=clock, entries=tuple(entries))
