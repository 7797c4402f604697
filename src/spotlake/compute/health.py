"""What the allocator has learned about capacity: failures remembered for a while, and breakers.

Fallback falls out of filtering offers, not out of retry loops: a launch failure puts a *block*
on a scope, and while the block lasts the :class:`~spotlake.compute.policy.filters.Healthy` filter
drops the offers in it, so the next decision goes elsewhere by itself.

* A failure blocks the narrowest scope it proves: no capacity or a too-low price blocks the pool
  (capacity type, instance type, zone); the account's spot limit or a quota blocks the capacity
  type in the region; an authorisation failure blocks the cloud.
* The **spot breaker** counts consecutive spot failures: after ``breaker_failures`` (3) it opens
  and spot is not used; after ``breaker_open_for`` it is half-open and lets exactly one probe
  through; the probe's success closes it, its failure opens it again. (On-demand failures block
  their scope only: an on-demand breaker would leave critical work with nothing at all.)
* A price too low is about the request's bid, not the pool: it blocks nothing.
* Early interruptions (a spot instance taken back within ``early_interruption`` of its launch)
  block a pool for spot after ``early_per_pool`` of them, and open the spot breaker after
  ``early_overall`` across pools: capacity that keeps being taken back is not capacity.

Every TTL and limit is in :class:`HealthLimits`, with the reason for its value. The registry is
shared by every request of a process and persistable (:meth:`HealthRegistry.state`, a versioned
document), so a restarting service does not forget. Time comes from the injected clock.
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from enum import StrEnum
from typing import ClassVar

import attrs

from spotlake.clock import Clock, ensure_utc
from spotlake.compute.launch.base import LaunchFailure
from spotlake.compute.values import CapacityType, Cloud, Pool

__all__ = ["Block", "BreakerRecord", "BreakerState", "HealthLimits", "HealthRegistry", "HealthState", "Scope"]


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


@attrs.frozen(kw_only=True)
class HealthLimits:
    """Every TTL and limit of the registry, and why it has its value."""

    #: A pool out of capacity: capacity in a zone comes back within minutes, and a block much
    #: longer leaves capacity unused (Karpenter keeps the same 3 minutes for the same reason).
    capacity_ttl: timedelta = timedelta(minutes=3)
    #: The account's spot instance count limit in a region: it frees only as instances end.
    spot_limit_ttl: timedelta = timedelta(minutes=10)
    #: A vCPU or instance quota: raised by a support case, not by waiting; retry now and then.
    quota_ttl: timedelta = timedelta(minutes=10)
    #: Credentials or permissions: nothing launches until someone fixes them.
    auth_ttl: timedelta = timedelta(minutes=15)
    #: Consecutive failures of a capacity type that open its breaker (the design's "after 3
    #: consecutive spot failures").
    breaker_failures: int = 3
    #: How long an open breaker keeps the type out before one probe is let through.
    breaker_open_for: timedelta = timedelta(minutes=10)
    #: A probe that has not reported back after this long is taken as lost and another is let
    #: through: longer than a spot request may wait (5 minutes) plus the launch itself.
    probe_lease: timedelta = timedelta(minutes=15)
    #: An interruption this soon after launch says the pool is not really available.
    early_interruption: timedelta = timedelta(minutes=10)
    #: Early interruptions counted within this window...
    early_window: timedelta = timedelta(minutes=30)
    #: ...that block a pool for spot,
    early_per_pool: int = 2
    #: ...and that open the spot breaker when counted across pools (the rate is high everywhere).
    early_overall: int = 4
    #: How long a pool stays blocked for spot after repeated early interruptions.
    early_block_for: timedelta = timedelta(minutes=30)
    #: After a move from on-demand back to spot, wait this long before the next one.
    revert_cooldown: timedelta = timedelta(minutes=15)


@attrs.frozen(kw_only=True, order=True)
class Scope:
    """What a block covers; ``None`` fields match anything (a wider scope)."""

    capacity_type: CapacityType | None
    cloud: Cloud
    region: str | None = None
    zone: str | None = None
    instance_type: str | None = None

    def covers(self, pool: Pool, capacity_type: CapacityType) -> bool:
        return (
            (self.capacity_type is None or self.capacity_type is capacity_type)
            and self.cloud is pool.cloud
            and (self.region is None or self.region == pool.region)
            and (self.zone is None or self.zone == pool.zone)
            and (self.instance_type is None or self.instance_type == pool.instance_type)
        )

    def __str__(self) -> str:
        parts = [self.cloud.value, self.region or "*", self.zone or "*", self.instance_type or "*"]
        return f"{self.capacity_type or 'any'}@{':'.join(parts)}"


@attrs.frozen(kw_only=True)
class Block:
    """A scope left out until ``until``, and why."""

    scope: Scope
    until: datetime
    reason: str


@attrs.frozen(kw_only=True)
class BreakerRecord:
    """A breaker's memory: consecutive failures, when it opened, whether its probe is out."""

    failures: int = 0
    opened_at: datetime | None = None
    #: When the half-open probe was let through (``None``: no probe out).
    probe_at: datetime | None = None


@attrs.frozen(kw_only=True)
class HealthState:
    """The registry as it is persisted (``spotlake.serde.dump_doc``)."""

    DOC_FORMAT: ClassVar[int] = 1

    blocks: tuple[Block, ...] = ()
    breakers: dict[CapacityType, BreakerRecord] = attrs.field(factory=dict)
    #: (pool, when) of early interruptions still inside the window.
    early: tuple[tuple[Pool, datetime], ...] = ()
    last_revert: datetime | None = None


def _scope_of(pool: Pool, capacity_type: CapacityType, kind: LaunchFailure) -> Scope:
    if kind in (LaunchFailure.SPOT_LIMIT, LaunchFailure.QUOTA):
        return Scope(capacity_type=capacity_type, cloud=pool.cloud, region=pool.region)
    if kind is LaunchFailure.AUTH:
        return Scope(capacity_type=None, cloud=pool.cloud)
    return Scope(
        capacity_type=capacity_type,
        cloud=pool.cloud,
        region=pool.region,
        zone=pool.zone,
        instance_type=pool.instance_type,
    )


class HealthRegistry:
    """Blocks and breakers, on the injected clock (see the module docstring). Thread-safe."""

    def __init__(
        self, *, clock: Clock, limits: HealthLimits | None = None, state: HealthState | None = None
    ) -> None:
        self._clock = clock
        self.limits = limits or HealthLimits()
        self._lock = threading.Lock()
        start = state or HealthState()
        self._blocks = list(start.blocks)
        self._breakers = dict(start.breakers)
        self._early = list(start.early)
        self._last_revert = start.last_revert

    # --- persistence ---------------------------------------------------------------------------

    def state(self) -> HealthState:
        """What to persist (expired blocks and old interruptions are pruned first)."""
        with self._lock:
            now = self._now()
            self._prune(now)
            return HealthState(
                blocks=tuple(self._blocks),
                breakers=dict(self._breakers),
                early=tuple(self._early),
                last_revert=self._last_revert,
            )

    # --- recording -----------------------------------------------------------------------------

    def record_failure(
        self, pool: Pool, capacity_type: CapacityType, kind: LaunchFailure, detail: str = ""
    ) -> Block | None:
        """A launch in ``pool`` failed: block the scope the failure proves and, for spot, count it
        on the breaker. A price too low proves nothing about capacity (another request may offer
        more), so it blocks nothing and returns ``None``."""
        if kind is LaunchFailure.PRICE_TOO_LOW:
            return None
        ttl = {
            LaunchFailure.NO_CAPACITY: self.limits.capacity_ttl,
            LaunchFailure.TIMEOUT: self.limits.capacity_ttl,
            LaunchFailure.SPOT_LIMIT: self.limits.spot_limit_ttl,
            LaunchFailure.QUOTA: self.limits.quota_ttl,
            LaunchFailure.AUTH: self.limits.auth_ttl,
            LaunchFailure.OTHER: self.limits.capacity_ttl,
            LaunchFailure.UNPLACEABLE: self.limits.capacity_ttl,
        }[kind]
        with self._lock:
            now = self._now()
            block = Block(
                scope=_scope_of(pool, capacity_type, kind),
                until=now + ttl,
                reason=f"{kind}{': ' + detail if detail else ''} at {now:%H:%M:%S}",
            )
            self._blocks.append(block)
            if capacity_type is CapacityType.SPOT and kind is not LaunchFailure.UNPLACEABLE:
                self._count_failure(capacity_type, now)
            return block

    def record_success(self, pool: Pool, capacity_type: CapacityType) -> None:
        """A launch worked: the breaker of its capacity type closes (a probe's success too)."""
        with self._lock:
            self._breakers[capacity_type] = BreakerRecord()

    def record_interruption(self, pool: Pool, *, launched_at: datetime) -> None:
        """A spot instance of ``pool`` was taken back; early ones count against the pool and spot."""
        with self._lock:
            now = self._now()
            if now - ensure_utc(launched_at) > self.limits.early_interruption:
                return
            self._early.append((pool, now))
            self._prune(now)
            in_pool = sum(1 for p, _ in self._early if p == pool)
            if in_pool >= self.limits.early_per_pool:
                self._blocks.append(
                    Block(
                        scope=_scope_of(pool, CapacityType.SPOT, LaunchFailure.NO_CAPACITY),
                        until=now + self.limits.early_block_for,
                        reason=f"{in_pool} spot interruptions within minutes of launch",
                    )
                )
            if len(self._early) >= self.limits.early_overall:
                self._breakers[CapacityType.SPOT] = BreakerRecord(
                    failures=self.limits.breaker_failures, opened_at=now
                )

    def record_revert(self) -> None:
        """A move from on-demand back to spot happened now (it starts the cooldown)."""
        with self._lock:
            self._last_revert = self._now()

    # --- querying ------------------------------------------------------------------------------

    def blocks(self) -> tuple[Block, ...]:
        """The blocks in force now."""
        with self._lock:
            self._prune(self._now())
            return tuple(self._blocks)

    def blocked(self, pool: Pool, capacity_type: CapacityType) -> Block | None:
        """The block that keeps ``pool`` out for ``capacity_type`` now, if any."""
        for block in self.blocks():
            if block.scope.covers(pool, capacity_type):
                return block
        return None

    def breaker(self, capacity_type: CapacityType) -> BreakerState:
        """The breaker of a capacity type now (an open one turns half-open after its time)."""
        with self._lock:
            record = self._breakers.get(capacity_type)
            if record is None or record.opened_at is None:
                return BreakerState.CLOSED
            if self._now() - record.opened_at < self.limits.breaker_open_for:
                return BreakerState.OPEN
            return BreakerState.HALF_OPEN

    def take_probe(self, capacity_type: CapacityType) -> datetime | None:
        """In the half-open state, let one launch through: once, until its outcome is recorded,
        :meth:`release_probe` gives it back, or its lease ends (a lost probe). The answer is the
        probe's ticket (when it was taken; give it to :meth:`release_probe`), ``None`` when no
        probe may go now. A closed breaker lets every launch through (a ticket of now)."""
        with self._lock:
            now = self._now()
            record = self._breakers.get(capacity_type)
            if record is None or record.opened_at is None:
                return now
            if now - record.opened_at < self.limits.breaker_open_for:
                return None
            if record.probe_at is not None and now - record.probe_at < self.limits.probe_lease:
                return None
            self._breakers[capacity_type] = attrs.evolve(record, probe_at=now)
            return now

    def release_probe(self, capacity_type: CapacityType, ticket: datetime) -> None:
        """Give back the probe of ``ticket`` (from :meth:`take_probe`), taken but not launched
        (nothing to launch, or the launch call itself broke). A ticket whose lease ended and
        whose probe was let through again releases nothing: that newer probe is still out."""
        with self._lock:
            record = self._breakers.get(capacity_type)
            if record is not None and record.probe_at == ticket:
                self._breakers[capacity_type] = attrs.evolve(record, probe_at=None)

    def next_change(self) -> datetime | None:
        """When the registry will next let more through by itself: the earliest end of a block
        or of an open breaker's period (``None``: nothing is held back)."""
        with self._lock:
            now = self._now()
            self._prune(now)
            times = [b.until for b in self._blocks]
            times += [
                r.opened_at + self.limits.breaker_open_for
                if r.probe_at is None
                else r.probe_at + self.limits.probe_lease
                for r in self._breakers.values()
                if r.opened_at is not None
            ]
            return min(times, default=None)

    def revert_allowed(self) -> bool:
        """Whether the cooldown since the last move back to spot has passed and spot is not known
        bad (a half-open breaker allows it: the move's launch is then the probe)."""
        if self.breaker(CapacityType.SPOT) is BreakerState.OPEN:
            return False
        with self._lock:
            now = self._now()
            self._prune(now)
            if any(now - at < self.limits.revert_cooldown for _, at in self._early):
                return False
            return self._last_revert is None or now - self._last_revert >= self.limits.revert_cooldown

    # --- internals -----------------------------------------------------------------------------

    def _now(self) -> datetime:
        return ensure_utc(self._clock.now())

    def _prune(self, now: datetime) -> None:
        self._blocks = [b for b in self._blocks if b.until > now]
        self._early = [(p, at) for p, at in self._early if now - at < self.limits.early_window]

    def _count_failure(self, capacity_type: CapacityType, now: datetime) -> None:
        record = self._breakers.get(capacity_type, BreakerRecord())
        half_open = record.opened_at is not None and now - record.opened_at >= self.limits.breaker_open_for
        if record.probe_at is not None or half_open:  # failed while half-open: open again, a full period
            self._breakers[capacity_type] = BreakerRecord(failures=record.failures + 1, opened_at=now)
            return
        failures = record.failures + 1
        opened = (
            now if failures >= self.limits.breaker_failures and record.opened_at is None else record.opened_at
        )
        self._breakers[capacity_type] = BreakerRecord(failures=failures, opened_at=opened)
