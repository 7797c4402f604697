"""A launcher that replays a :class:`~spotlake.compute.simulate.trace.Trace`: spot capacity comes
and goes as the trace says, interruptions are announced and carried out, every second is billed.

:class:`SimLauncher` is a :class:`~spotlake.compute.launch.base.Launcher` and a
:class:`~spotlake.compute.launch.base.PoolSetLauncher` on a :class:`~spotlake.clock.FakeClock`:
it answers at once (a launch never waits, ``timeout`` is unused) and time passes only when the
caller moves the clock. What happens while time passes is worked out lazily, in time order, the
next time the launcher is called (:meth:`SimLauncher.poll`, :meth:`SimLauncher.next_event_at`, a
launch, ...).

Spot
    A pool of the trace holds ``available[tick]`` instances of ours: a launch of ``count`` gets all
    of them or nothing (``MinCount = MaxCount``) when ``available`` minus our instances alive in
    the pool (warned ones included: they still run) is below ``count``
    (``InsufficientInstanceCapacity``). A spot price of the tick above ``max_price`` refuses the
    launch (``SpotMaxPriceTooLow``); a pool the trace does not have is an invalid parameter.
On-demand
    Unlimited, at the trace's on-demand price of the type in the region (the offer's price when the
    trace has none), up to ``on_demand_quota`` live on-demand instances when one is set
    (``VcpuLimitExceeded``).
Interruptions
    At each tick boundary ``k``, in each pool, the instances of ours not warned yet that
    ``available[k]`` cannot hold are warned: ``max(0, not_warned - available[k])`` of them (those
    already warned are leaving anyway), the most recently launched first (ties: the higher
    sequence number, i.e. the later id). Each gets an
    :class:`~spotlake.compute.events.InterruptionWarning` at the boundary with the deadline
    ``boundary + trace.notice`` (2 minutes on AWS, 30 seconds on Azure); at the deadline the cloud
    takes it (a :class:`~spotlake.compute.events.StateChange` to ``terminated``), even if the
    capacity came back meanwhile. An instance the caller terminates before its deadline ends then,
    without a state change. At one moment, takes come before the boundary's count.
Billing
    Per second from launch to the end (termination or take), without a minimum: spot at the pool's
    price of each tick the instance lives through (the price can change while it runs), on-demand
    at its fixed price. :attr:`SimLauncher.bills` has one :class:`Bill` per instance ever launched.

Everything is deterministic: ids are ``sim-000001``, ``sim-000002``, ... in launch order, pools
are visited in their sort order, events come out by time then by the order they arose.
"""

from __future__ import annotations

import heapq
import itertools
import math
import threading
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

import attrs
import numpy as np
import numpy.typing as npt

from spotlake.clock import FakeClock, ensure_utc
from spotlake.compute.events import (
    Event,
    EventBatch,
    InstanceAction,
    InstanceState,
    InterruptionWarning,
    StateChange,
)
from spotlake.compute.launch.base import (
    EC2_FAILURES,
    Instance,
    LaunchError,
    LaunchFailure,
    LaunchResult,
    PoolSetResult,
)
from spotlake.compute.simulate.trace import PoolSeries, Trace
from spotlake.compute.values import CapacityType, Offer, Pool
from spotlake.errors import ConfigError

__all__ = ["Bill", "SimLauncher"]

_NO_CAPACITY = "InsufficientInstanceCapacity"
_PRICE_TOO_LOW = "SpotMaxPriceTooLow"
_QUOTA = "VcpuLimitExceeded"
_INVALID = "InvalidParameterValue"
_HOUR = 3600.0


@attrs.frozen(kw_only=True)
class Bill:
    """What one instance cost: from ``start`` to ``end`` (``None``: still running, billed up to
    when the bill was made), ``seconds`` billed, ``cost`` in USD."""

    instance_id: str
    pool: Pool
    capacity_type: CapacityType
    start: datetime
    end: datetime | None
    cost: float
    #: Seconds billed (``end - start``, or up to when the bill was made while it runs).
    seconds: float = 0.0
    #: Whether the cloud took it back (an interruption), not its owner.
    interrupted: bool = False


@attrs.define(eq=False)
class _Record:
    """One instance ever launched, and where its life stands."""

    seq: int
    instance: Instance
    pool: Pool
    start: datetime
    #: The spot series it is billed on; ``None`` for on-demand (billed at ``instance.price``).
    series: PoolSeries | None
    end: datetime | None = None
    #: Set when warned: when the cloud takes it.
    deadline: datetime | None = None
    interrupted: bool = False

    @property
    def alive(self) -> bool:
        return self.end is None

    @property
    def spot(self) -> bool:
        return self.series is not None


class SimLauncher:
    """Launches on a trace's capacity and prices, on a fake clock (see the module docstring).

    ``on_demand_quota`` caps the live on-demand instances (``None``: no cap).
    """

    def __init__(self, trace: Trace, *, clock: FakeClock, on_demand_quota: int | None = None) -> None:
        if on_demand_quota is not None and on_demand_quota < 0:
            raise ConfigError(f"on_demand_quota counts instances: >= 0 or None, got {on_demand_quota}")
        self.trace = trace
        self.on_demand_quota = on_demand_quota
        self._clock = clock
        self._step = trace.step.total_seconds()
        self._seq = itertools.count(1)
        self._records: dict[str, _Record] = {}
        #: Live spot instances per pool (warned ones too), in launch order.
        self._live: dict[Pool, list[_Record]] = {}
        self._on_demand_live = 0
        #: Warned instances by deadline: (deadline, seq, id).
        self._deadlines: list[tuple[datetime, int, str]] = []
        #: Events that arose and were not returned by :meth:`poll` yet.
        self._events: list[Event] = []
        #: The last tick boundary whose interruptions were worked out.
        now = ensure_utc(clock.now())
        self._boundary = trace.tick(now) if now >= trace.start else 0
        self._synced = now
        #: Per pool: the cost of one instance from the trace's start to each tick's start (USD hours).
        self._cumulative: dict[Pool, npt.NDArray[np.float64]] = {}
        #: Per pool: (unwarned instances, searched after boundary, first boundary short of them).
        self._losses: dict[Pool, tuple[int, int, int | None]] = {}
        self._lock = threading.RLock()

    # --- the launcher protocol ---------------------------------------------------------------------

    def launch(
        self,
        offer: Offer,
        count: int,
        *,
        max_price: float | None,
        tags: Mapping[str, str],
        timeout: timedelta,
    ) -> LaunchResult:
        """Launch ``count`` instances of ``offer`` now, all or nothing; refusals come back in the
        result (``timeout`` is unused: the simulator answers at once)."""
        self._check(count, max_price)
        with self._lock:
            now = self._sync()
            if offer.spot:
                return self._launch_spot(offer, count, max_price, tags, now)
            return self._launch_on_demand(offer, count, tags, now)

    def can_launch_pools(self) -> bool:
        """Always: the simulator emulates EC2 Fleet over any pools of its trace."""
        return True

    def launch_pools(
        self,
        offers: Sequence[Offer],
        count: int,
        *,
        max_price: float | None,
        tags: Mapping[str, str],
        timeout: timedelta,
    ) -> PoolSetResult:
        """Launch up to ``count`` instances over ``offers`` (one capacity type), as an EC2 Fleet
        ``instant`` request; partial fulfilment is allowed.

        Spot (price-capacity-optimized): among the pools that can still give instances (in the
        trace, spot price of the tick within ``max_price``, free capacity), the cheapest pool that
        can take everything still missing takes it (ties: more free capacity, then the given
        order); when no pool can, the pool with the most free capacity (ties: the lower price, then
        the given order) gives all it has and the walk goes on. On-demand (prioritized): the pools
        in the given order, each as far as the quota lets.

        ``errors``: a pool the trace does not have always gets one; when the request came back
        short, so does every other pool, with why it could give no more (price, capacity, quota).
        """
        self._check(count, max_price)
        if not offers:
            return PoolSetResult()
        kinds = {o.capacity_type for o in offers}
        if len(kinds) > 1:
            raise ConfigError("a pool-set launch is over one capacity type, got spot and on-demand offers")
        with self._lock:
            now = self._sync()
            if offers[0].spot:
                return self._launch_spot_pools(offers, count, max_price, tags, now)
            return self._launch_on_demand_pools(offers, count, tags, now)

    def terminate(self, ids: Sequence[str]) -> None:
        """Terminate instances now (unknown ids and instances already gone are ignored)."""
        with self._lock:
            now = self._sync()
            for instance_id in ids:
                record = self._records.get(instance_id)
                if record is not None and record.alive:
                    self._end(record, now)

    # --- time passing ------------------------------------------------------------------------------

    def poll(self) -> EventBatch:
        """Every event due at or before now not returned yet, in time order."""
        with self._lock:
            self._sync()
            events = sorted(self._events, key=lambda e: e.at)  # stable: ties keep the order they arose
            self._events = []
        return EventBatch(events=tuple(events))

    def next_event_at(self) -> datetime | None:
        """When the next thing happens by itself after now: a warned instance's deadline, or the
        next tick boundary at which a pool cannot hold the unwarned instances of ours it has
        (warnings); ``None`` when nothing is pending."""
        with self._lock:
            self._sync()
            times: list[datetime] = []
            deadline = self._next_deadline()
            if deadline is not None:
                times.append(deadline)
            loss = self._next_loss(self._boundary, self.trace.ticks - 1)
            if loss is not None:
                times.append(self.trace.tick_start(loss))
            return min(times) if times else None

    # --- what it cost, what runs -------------------------------------------------------------------

    @property
    def bills(self) -> tuple[Bill, ...]:
        """One bill per instance ever launched, in launch order; running ones billed up to now."""
        with self._lock:
            now = self._sync()
            return tuple(self._bill(r, now) for r in self._records.values())

    def billed_cost(self, until: datetime | None = None) -> float:
        """USD billed for every instance up to ``until`` (default: now). Instances still running
        count up to ``until`` as if they ran until then."""
        with self._lock:
            now = self._sync()
            limit = now if until is None else ensure_utc(until)
            return math.fsum(self._cost(r, r.start, self._stop(r, limit)) for r in self._records.values())

    def running(self) -> tuple[Instance, ...]:
        """The instances alive now (warned ones too, until taken), in launch order."""
        with self._lock:
            self._sync()
            return tuple(r.instance for r in self._records.values() if r.alive)

    # --- launching ---------------------------------------------------------------------------------

    @staticmethod
    def _check(count: int, max_price: float | None) -> None:
        if count < 1:
            raise ConfigError(f"a launch asks for at least one instance, got {count}")
        if max_price is not None and not (math.isfinite(max_price) and max_price > 0):
            raise ConfigError(f"max_price must be a positive price per hour, got {max_price!r}")

    def _tick(self, now: datetime) -> int:
        if now < self.trace.start:
            raise ConfigError(f"the simulation launches from trace {self.trace.name}'s start, not {now}")
        return self.trace.tick(now)

    def _spot_refusal(self, offer: Offer, max_price: float | None, now: datetime) -> LaunchError | None:
        """Why the pool gives nothing whatever the count (not in the trace, price), or ``None``."""
        series = self.trace.spot.get(offer.pool)
        if series is None:
            return _error(offer, _INVALID, f"spot pool {offer.pool} is not in trace {self.trace.name}")
        price = float(series.price[self._tick(now)])
        if max_price is not None and price > max_price:
            return _error(offer, _PRICE_TOO_LOW, f"spot price {price:g} is above the maximum {max_price:g}")
        return None

    def _free(self, pool: Pool, now: datetime) -> int:
        series = self.trace.spot[pool]
        return max(0, int(series.available[self._tick(now)]) - len(self._live.get(pool, ())))

    def _launch_spot(
        self, offer: Offer, count: int, max_price: float | None, tags: Mapping[str, str], now: datetime
    ) -> LaunchResult:
        refusal = self._spot_refusal(offer, max_price, now)
        if refusal is not None:
            return LaunchResult(error=refusal)
        free = self._free(offer.pool, now)
        if free < count:
            return LaunchResult(error=_error(offer, _NO_CAPACITY, f"{free} free, {count} asked"))
        return LaunchResult(instances=self._start_spot(offer, count, tags, now))

    def _launch_spot_pools(
        self,
        offers: Sequence[Offer],
        count: int,
        max_price: float | None,
        tags: Mapping[str, str],
        now: datetime,
    ) -> PoolSetResult:
        refusals: dict[int, LaunchError] = {}
        usable: list[tuple[int, Offer]] = []
        seen: set[Pool] = set()
        for n, offer in enumerate(offers):
            if offer.pool in seen:
                continue  # the same pool twice is one override
            seen.add(offer.pool)
            refusal = self._spot_refusal(offer, max_price, now)
            if refusal is None:
                usable.append((n, offer))
            else:
                refusals[n] = refusal
        tick = self._tick(now)
        instances: list[Instance] = []
        while (left := count - len(instances)) > 0:
            choices = [
                (self._free(o.pool, now), float(self.trace.spot[o.pool].price[tick]), n, o) for n, o in usable
            ]
            choices = [c for c in choices if c[0] > 0]
            if not choices:
                break
            deep = [c for c in choices if c[0] >= left]
            if deep:
                _, _, _, offer = min(deep, key=lambda c: (c[1], -c[0], c[2]))
                take = left
            else:
                free, _, _, offer = min(choices, key=lambda c: (-c[0], c[1], c[2]))
                take = free
            instances.extend(self._start_spot(offer, take, tags, now))
        if len(instances) < count:
            for n, offer in usable:
                refusals[n] = _error(offer, _NO_CAPACITY, "no free capacity left in the pool")
        errors = tuple(refusals[n] for n in sorted(refusals))
        return PoolSetResult(instances=tuple(instances), errors=errors)

    def _start_spot(
        self, offer: Offer, count: int, tags: Mapping[str, str], now: datetime
    ) -> tuple[Instance, ...]:
        series = self.trace.spot[offer.pool]
        price = float(series.price[self._tick(now)])
        out = []
        for _ in range(count):
            record = self._start(offer, price, tags, now, series)
            self._live.setdefault(offer.pool, []).append(record)
            out.append(record.instance)
        return tuple(out)

    def _launch_on_demand(
        self, offer: Offer, count: int, tags: Mapping[str, str], now: datetime
    ) -> LaunchResult:
        refusal = self._on_demand_refusal(offer)
        if refusal is not None:
            return LaunchResult(error=refusal)
        if self._quota_left() < count:
            return LaunchResult(error=self._quota_error(offer, count))
        return LaunchResult(instances=self._start_on_demand(offer, count, tags, now))

    def _launch_on_demand_pools(
        self, offers: Sequence[Offer], count: int, tags: Mapping[str, str], now: datetime
    ) -> PoolSetResult:
        instances: list[Instance] = []
        errors: list[LaunchError] = []
        for offer in offers:
            refusal = self._on_demand_refusal(offer)
            if refusal is not None:
                errors.append(refusal)
                continue
            left = count - len(instances)
            if left <= 0:
                continue
            take = min(left, self._quota_left())
            if take > 0:
                instances.extend(self._start_on_demand(offer, take, tags, now))
            if take < left:
                errors.append(self._quota_error(offer, left))
        return PoolSetResult(instances=tuple(instances), errors=tuple(errors))

    def _on_demand_refusal(self, offer: Offer) -> LaunchError | None:
        if offer.pool.cloud is not self.trace.cloud:
            return _error(offer, _INVALID, f"{offer.pool} is not on trace {self.trace.name}'s cloud")
        return None

    def _quota_left(self) -> int:
        if self.on_demand_quota is None:
            return 2**62
        return max(0, self.on_demand_quota - self._on_demand_live)

    def _quota_error(self, offer: Offer, count: int) -> LaunchError:
        return _error(
            offer,
            _QUOTA,
            f"{self._on_demand_live} on-demand running, {count} more asked, quota {self.on_demand_quota}",
        )

    def _start_on_demand(
        self, offer: Offer, count: int, tags: Mapping[str, str], now: datetime
    ) -> tuple[Instance, ...]:
        known = self.trace.on_demand_price(offer.pool.region, offer.pool.instance_type)
        price = offer.price if known is None else known
        records = [self._start(offer, price, tags, now, None) for _ in range(count)]
        self._on_demand_live += count
        return tuple(r.instance for r in records)

    def _start(
        self, offer: Offer, price: float, tags: Mapping[str, str], now: datetime, series: PoolSeries | None
    ) -> _Record:
        seq = next(self._seq)
        instance = Instance(
            id=f"sim-{seq:06d}",
            offer=offer,
            capacity_type=offer.capacity_type,
            price=price,
            launched_at=now,
            tags=dict(tags),
        )
        record = _Record(seq=seq, instance=instance, pool=offer.pool, start=now, series=series)
        self._records[instance.id] = record
        return record

    def _end(self, record: _Record, when: datetime) -> None:
        record.end = when
        if record.spot:
            live = self._live[record.pool]
            live.remove(record)
            if not live:
                del self._live[record.pool]
        else:
            self._on_demand_live -= 1

    # --- interruptions -----------------------------------------------------------------------------

    def _sync(self) -> datetime:
        """Work out everything that happened up to now, in time order; return now."""
        now = ensure_utc(self._clock.now())
        if now <= self._synced or now < self.trace.start:
            return now  # nothing new (a clock set back replays nothing)
        last = self.trace.tick(now)
        while True:
            loss = self._next_loss(self._boundary, last)
            at = None if loss is None else self.trace.tick_start(loss)
            due = self._next_deadline()
            due = None if due is None or due > now else due
            if due is not None and (at is None or due <= at):
                self._take(heapq.heappop(self._deadlines)[2])
            elif loss is not None and at is not None:
                self._warn(loss, at)
                self._boundary = loss
            else:
                break
        self._boundary = max(self._boundary, last)
        self._synced = now
        return now

    def _next_deadline(self) -> datetime | None:
        """The earliest deadline of a warned instance still alive (stale entries dropped)."""
        while self._deadlines and not self._records[self._deadlines[0][2]].alive:
            heapq.heappop(self._deadlines)
        return self._deadlines[0][0] if self._deadlines else None

    def _not_warned(self, pool: Pool) -> list[_Record]:
        return [r for r in self._live.get(pool, ()) if r.deadline is None]

    def _next_loss(self, after: int, upto: int) -> int | None:
        """The first boundary in ``(after, upto]`` where a pool cannot hold its unwarned instances."""
        first: int | None = None
        for pool, live in self._live.items():
            unwarned = sum(1 for r in live if r.deadline is None)
            if not unwarned:
                continue
            k = self._pool_loss(pool, unwarned, after)
            if k is not None and k <= upto:
                first = k if first is None else min(first, k)
        return first

    def _pool_loss(self, pool: Pool, unwarned: int, after: int) -> int | None:
        """The first boundary after ``after`` where ``pool`` holds fewer than ``unwarned``
        (``None``: none before the trace ends). Remembered per pool: an engine asks often."""
        cached = self._losses.get(pool)
        if cached is not None:
            n, since, k = cached
            if n == unwarned and since <= after and (k is None or k > after):
                return k
        hits = np.flatnonzero(self.trace.spot[pool].available[after + 1 :] < unwarned)
        found = after + 1 + int(hits[0]) if hits.size else None
        self._losses[pool] = (unwarned, after, found)
        return found

    def _warn(self, k: int, at: datetime) -> None:
        deadline = at + self.trace.notice
        for pool in sorted(self._live):
            unwarned = self._not_warned(pool)
            excess = len(unwarned) - int(self.trace.spot[pool].available[k])
            if excess <= 0:
                continue
            victims = sorted(unwarned, key=lambda r: (r.start, r.seq), reverse=True)[:excess]
            for record in victims:
                record.deadline = deadline
                heapq.heappush(self._deadlines, (deadline, record.seq, record.instance.id))
                self._events.append(
                    InterruptionWarning(
                        instance_id=record.instance.id,
                        region=pool.region,
                        at=at,
                        action=InstanceAction.TERMINATE,
                        deadline=deadline,
                    )
                )

    def _take(self, instance_id: str) -> None:
        record = self._records[instance_id]
        if not record.alive or record.deadline is None:
            return  # its owner terminated it before the deadline
        record.interrupted = True
        self._end(record, record.deadline)
        self._events.append(
            StateChange(
                instance_id=instance_id,
                region=record.pool.region,
                at=record.deadline,
                state=InstanceState.TERMINATED,
            )
        )

    # --- billing -----------------------------------------------------------------------------------

    @staticmethod
    def _stop(record: _Record, limit: datetime) -> datetime:
        end = limit if record.end is None else min(record.end, limit)
        return max(end, record.start)

    def _bill(self, record: _Record, now: datetime) -> Bill:
        stop = self._stop(record, now)
        return Bill(
            instance_id=record.instance.id,
            pool=record.pool,
            capacity_type=record.instance.capacity_type,
            start=record.start,
            end=record.end,
            cost=self._cost(record, record.start, stop),
            seconds=(stop - record.start).total_seconds(),
            interrupted=record.interrupted,
        )

    def _cost(self, record: _Record, start: datetime, stop: datetime) -> float:
        """USD for ``record`` running from ``start`` to ``stop``."""
        if stop <= start:
            return 0.0
        if record.series is None:
            return record.instance.price * (stop - start).total_seconds() / _HOUR
        return (self._integral(record.series, stop) - self._integral(record.series, start)) / _HOUR

    def _integral(self, series: PoolSeries, when: datetime) -> float:
        """USD seconds per hour one instance of the pool costs from the trace's start to ``when``
        (the last tick's price goes on after the trace ends)."""
        cumulative = self._cumulative.get(series.pool)
        if cumulative is None:
            cumulative = np.concatenate(([0.0], np.cumsum(series.price[:-1] * self._step)))
            self._cumulative[series.pool] = cumulative
        k = self.trace.tick(when)
        into = (when - self.trace.tick_start(k)).total_seconds()
        return float(cumulative[k]) + float(series.price[k]) * into


def _error(offer: Offer, code: str, detail: str) -> LaunchError:
    kind = EC2_FAILURES.get(code, LaunchFailure.OTHER)
    return LaunchError(
        f"{offer.capacity_type} in {offer.pool}: {code}: {detail}",
        kind=kind,
        pool=offer.pool,
        capacity_type=offer.capacity_type,
        code=code,
    )
