"""Carrying a decision out: spot first, fallback that learns, on-demand when spot fails.

:meth:`Allocator.allocate` decides (:func:`~spotlake.compute.decide.decide`) and launches along
the decision's ranked candidates with the same whole-instance walk the plan used
(:mod:`~spotlake.compute.fill`). When a launch gets less than it asked for:

* the health registry records the failure, which blocks the scope it proves (the pool for a
  capacity error, spot in the region for the spot instance limit, ...) for that failure's TTL and
  counts it on the capacity type's breaker, so this and later decisions go elsewhere;
* the policy's :class:`~spotlake.compute.policy.fallback.Fallback` says where the units go now:
  the next spot pool, on-demand (spot limit, quota, too many spot pools failed, the breaker opened)
  or nowhere (missing permissions);
* the :class:`Allocation` records each fallback with its reason, and every instance with the
  capacity type that was asked for, the one it got, its price and the placement score the
  decision saw, for the cost ledger.

Candidates blocked since the decision (by a failure in this very allocation) are skipped. With a
half-open spot breaker the first spot launch is one instance; if another probe is already out,
spot is left out this time.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime

import attrs
import numpy as np

from spotlake.clock import Clock, ensure_utc
from spotlake.compute.book import OfferBook
from spotlake.compute.decide import Decision, decide
from spotlake.compute.fill import EPS, Fill
from spotlake.compute.health import BreakerState, HealthRegistry
from spotlake.compute.launch.base import Instance, Launcher, LaunchError, LaunchFailure, PoolSetLauncher
from spotlake.compute.policy.fallback import FallbackAction
from spotlake.compute.policy.presets import Policy, cost_optimized
from spotlake.compute.values import CapacityRequest, CapacityType, Offer, PlacementScore, Pool
from spotlake.errors import ComputeError, ConfigError

__all__ = ["TAG_PREFIX", "Allocation", "AllocationError", "Allocator", "FallbackEvent", "Placement"]

log = logging.getLogger(__name__)

#: Tags spotlake puts on what it launches start with this.
TAG_PREFIX = "spotlake:"
#: EC2 allows 256 characters in a tag value.
_TAG_VALUE_MAX = 256


class AllocationError(ComputeError):
    """An allocation that broke part-way; what it had launched was terminated (``launched``)
    unless the termination failed too (``still_running``, and ``partial``: the allocation of
    those instances, for the caller to record and look after)."""

    def __init__(
        self,
        message: str,
        *,
        launched: tuple[str, ...],
        still_running: tuple[str, ...],
        partial: Allocation | None = None,
    ) -> None:
        super().__init__(message)
        self.launched = launched
        self.still_running = still_running
        self.partial = partial


@attrs.frozen(kw_only=True)
class FallbackEvent:
    """A launch that got less than asked, and where its units went."""

    at: datetime
    pool: Pool
    capacity_type: CapacityType
    failure: LaunchFailure
    detail: str
    #: Units that launch did not get.
    units: float
    action: FallbackAction


@attrs.frozen(kw_only=True)
class Placement:
    """One launched instance and why it is where it is."""

    instance: Instance
    #: What the mix asked these units to be (spot units that fell back show SPOT here and
    #: ON_DEMAND in ``instance.capacity_type``).
    requested: CapacityType
    units: float
    #: The offer's rank among the candidates of its capacity type.
    rank: int
    reason: str
    #: The placement score the decision saw for the pool (spot), for the ledger.
    score: PlacementScore | None
    #: The on-demand price of the same instance type in the same region, when known: what the
    #: same work would have cost on-demand.
    on_demand_price: float | None
    #: The failed launches of this allocation before this instance launched.
    after: tuple[FallbackEvent, ...] = ()

    @property
    def fell_back(self) -> bool:
        return self.requested is not self.instance.capacity_type


@attrs.frozen(kw_only=True, eq=False)
class Allocation:
    """What one request got: the instances, every fallback, what is still missing."""

    id: str
    request: CapacityRequest
    decision: Decision
    placements: tuple[Placement, ...]
    fallbacks: tuple[FallbackEvent, ...]
    #: Units nothing could launch (0 when complete).
    unfilled: float
    notes: tuple[str, ...] = ()

    @property
    def instances(self) -> tuple[Instance, ...]:
        return tuple(p.instance for p in self.placements)

    @property
    def complete(self) -> bool:
        return self.unfilled <= EPS

    def units(self, capacity_type: CapacityType) -> float:
        return sum(p.units for p in self.placements if p.instance.capacity_type is capacity_type)

    @property
    def spot_share(self) -> float:
        """Launched spot units over all launched units (0 when nothing launched)."""
        total = sum(p.units for p in self.placements)
        return self.units(CapacityType.SPOT) / total if total else 0.0

    @property
    def hourly_cost(self) -> float:
        return sum(p.instance.price for p in self.placements)


class Allocator:
    """Decides and launches, sharing one health registry across requests (thread-safe)."""

    def __init__(
        self,
        launcher: Launcher,
        *,
        clock: Clock,
        policy: Policy | None = None,
        health: HealthRegistry | None = None,
        tags: Mapping[str, str] | None = None,
        ids: Callable[[], str] | None = None,
    ) -> None:
        self.launcher = launcher
        #: Allocation ids (default: the time and a random part, unique across processes; a
        #: simulation passes a counter, so a run is identical to the byte).
        self._ids = ids
        self.policy = policy or cost_optimized()
        self.health = health or HealthRegistry(clock=clock)
        self._check(self.policy)
        self._clock = clock
        self._tags = dict(tags or {})

    def decide(
        self, offers: OfferBook | Iterable[Offer], request: CapacityRequest, policy: Policy | None = None
    ) -> Decision:
        """The decision :meth:`allocate` would carry out now (a dry run)."""
        if policy is not None:
            self._check(policy)
        return decide(offers, request, policy or self.policy, now=self._clock.now(), health=self.health)

    def _check(self, policy: Policy) -> None:
        """A spot launch may wait ``spot_timeout`` (request mode); a half-open breaker's probe
        is taken as lost after ``probe_lease``: a wait as long as the lease would let a second
        probe through while the first is still waiting."""
        timeout, lease = policy.fallback.spot_timeout, self.health.limits.probe_lease
        if timeout >= lease:
            raise ConfigError(
                f"policy {policy.name!r} waits up to {timeout} for spot, but the health registry "
                f"takes a probe as lost after {lease}: make spot_timeout shorter than "
                "HealthLimits.probe_lease"
            )

    def allocate(
        self,
        offers: OfferBook | Iterable[Offer],
        request: CapacityRequest,
        *,
        policy: Policy | None = None,
        job: str | None = None,
        on_demand_fallback: bool = True,
    ) -> Allocation:
        """Decide and launch; fall back along the ranked candidates when a launch fails.

        With ``on_demand_fallback=False`` spot units that find no spot stay unfilled (a move
        back to spot must not end on on-demand again).
        """
        decision = self.decide(offers, request, policy)
        return self.carry_out(decision, job=job, on_demand_fallback=on_demand_fallback)

    def carry_out(
        self, decision: Decision, *, job: str | None = None, on_demand_fallback: bool = True
    ) -> Allocation:
        """Launch what a decision (from :meth:`decide`, just now) plans, falling back along it.

        If anything raises part-way (a launcher bug, a broken client), the instances already
        launched are terminated before the :class:`AllocationError` says so: an allocation
        never leaves capacity running that its caller does not know of.
        """
        run = _Run(self, decision, job=job, on_demand_fallback=on_demand_fallback)
        try:
            return run.carry_out()
        except Exception as exc:
            launched = [p.instance.id for p in run.placements]
            kept: list[str] = []
            if launched:
                try:
                    self.launcher.terminate(launched)
                except Exception:  # reported below: these may still run
                    kept = launched
            raise AllocationError(
                f"allocation {run.id} failed part-way ({type(exc).__name__}: {exc}); "
                + (
                    f"the {len(launched)} instance(s) it had launched were terminated"
                    if launched and not kept
                    else f"these instances may still run: {', '.join(kept)}"
                    if kept
                    else "nothing had been launched"
                ),
                launched=tuple(launched),
                still_running=tuple(kept),
                partial=run.partial(kept) if kept else None,
            ) from exc
        finally:
            run.release_probe()

    def now(self) -> datetime:
        return ensure_utc(self._clock.now())

    def next_id(self) -> str:
        if self._ids is not None:
            return self._ids()
        # Time for reading, random for uniqueness across processes (two CLI runs in one second).
        return f"alloc-{ensure_utc(self._clock.now()):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"

    def tags(self, extra: Mapping[str, str]) -> dict[str, str]:
        merged = {**self._tags, **extra}
        return {k: v[:_TAG_VALUE_MAX] for k, v in merged.items()}


class _Run:
    """One allocation in progress."""

    def __init__(
        self, allocator: Allocator, decision: Decision, *, job: str | None, on_demand_fallback: bool
    ) -> None:
        self.a = allocator
        self.on_demand_fallback = on_demand_fallback
        self.d = decision
        self.id = allocator.next_id()
        self.job = job
        self.placements: list[Placement] = []
        #: How many failed launches preceded each placement (their final form is known at the end).
        self.failed_before: list[int] = []
        self.fallbacks: list[FallbackEvent] = []
        self.notes: list[str] = []
        self.weight = decision.book.weight(decision.request.unit)
        #: The ticket of a half-open breaker's probe taken for this allocation and not launched yet.
        self.probe: datetime | None = None

    def partial(self, ids: Sequence[str]) -> Allocation:
        """The allocation of the instances ``ids`` this run launched (a run that broke)."""
        keep = set(ids)
        placements = tuple(p for p in self.placements if p.instance.id in keep)
        return Allocation(
            id=self.id,
            request=self.d.request,
            decision=self.d,
            placements=placements,
            fallbacks=tuple(self.fallbacks),
            unfilled=max(self.d.request.amount - sum(p.units for p in placements), 0.0),
            notes=(*self.notes, "broke part-way: only these instances still run"),
        )

    def release_probe(self) -> None:
        if self.probe is not None:
            self.a.health.release_probe(CapacityType.SPOT, self.probe)
            self.probe = None

    def carry_out(self) -> Allocation:
        d = self.d
        moved = 0.0
        spot_units = d.split.spot
        if spot_units > EPS:
            moved = self._spot(spot_units)
        # Units the plan itself put on on-demand (no spot instance fits them whole) were asked as
        # on-demand; only what failed on spot beyond that fell back.
        requested_on_demand = d.split.on_demand + min(d.rounded_to_on_demand, moved)
        if self.on_demand_fallback:
            left = self._on_demand(d.split.on_demand + moved, requested_on_demand)
        else:
            left = self._on_demand(d.split.on_demand, d.split.on_demand) + moved
        if left > EPS:
            log.warning(
                "allocation %s: %g of %g %s could not be launched",
                self.id,
                left,
                d.request.amount,
                d.request.unit,
            )
        return Allocation(
            id=self.id,
            request=d.request,
            decision=d,
            placements=tuple(
                attrs.evolve(p, after=self._failed_before(p, n))
                for p, n in zip(self.placements, self.failed_before, strict=True)
            ),
            fallbacks=tuple(self.fallbacks),
            unfilled=left,
            notes=tuple(self.notes),
        )

    def _failed_before(self, placement: Placement, count: int) -> tuple[FallbackEvent, ...]:
        """The failed launches that led to this placement: all earlier ones for units asked as
        spot, the on-demand ones for units asked as on-demand."""
        earlier = self.fallbacks[:count]
        if placement.requested is CapacityType.ON_DEMAND:
            return tuple(e for e in earlier if e.capacity_type is CapacityType.ON_DEMAND)
        return tuple(earlier)

    # --- the two walks -------------------------------------------------------------------------

    def _spot(self, units: float) -> float:
        """Launch the spot part; return the units that move to on-demand."""
        d, health, policy = self.d, self.a.health, self.d.policy
        state = health.breaker(CapacityType.SPOT)
        if state is BreakerState.OPEN:
            self.notes.append(f"spot breaker open: {units:g} spot {d.request.unit} go to on-demand")
            return units
        probe = state is BreakerState.HALF_OPEN
        fill = Fill(
            d.spot_order,
            self.weight,
            units,
            spot=True,
            cap_units=policy.spread_cap(units),
            max_count=policy.max_count(d.request),
            probe=probe,
        )
        failures = 0
        while (p := fill.next()) is not None:
            offer = d.book.offers[p.index]
            if not self._usable(offer, CapacityType.SPOT):
                continue  # blocked by a failure earlier in this allocation (or above the max price)
            if p.probe:
                self.probe = health.take_probe(CapacityType.SPOT)
                if self.probe is None:
                    self.notes.append("spot breaker half-open and its probe is out: spot left out this time")
                    break
            group = [] if p.probe else self._pool_set(p.rank, p.index)
            before = len(self.fallbacks)
            if len(group) > 1:
                fill.skip(i for _, i in group)
                got = self._launch_set([(r, d.book.offers[i]) for r, i in group], p.count)
            else:
                role = "probe" if p.probe else "spot"
                got = self._launch(offer, p.count, p.rank, CapacityType.SPOT, role=role)
            if p.probe:  # its outcome is recorded (a price too low records none: give it back)
                self.release_probe()
            fill.took(got * p.weight)
            # a pool the launcher cannot place says nothing of spot: not one of the failed pools
            failures += sum(1 for e in self.fallbacks[before:] if e.failure is not LaunchFailure.UNPLACEABLE)
            if got == p.count or len(self.fallbacks) == before:
                continue
            action = policy.fallback.after(self.fallbacks[-1].failure, CapacityType.SPOT, failures)
            if action is FallbackAction.ON_DEMAND and not self.on_demand_fallback:
                action = FallbackAction.GIVE_UP  # this run has no on-demand to go to
            self.fallbacks[-1] = attrs.evolve(self.fallbacks[-1], action=action)
            if (
                action is not FallbackAction.NEXT_POOL
                or health.breaker(CapacityType.SPOT) is not BreakerState.CLOSED
            ):
                break
        last = self.fallbacks[-1] if self.fallbacks else None
        if fill.remaining > EPS and last is not None and last.action is FallbackAction.NEXT_POOL:
            # no spot pool left: the units go on-demand, or nowhere when this run has no fallback
            final = FallbackAction.ON_DEMAND if self.on_demand_fallback else FallbackAction.GIVE_UP
            self.fallbacks[-1] = attrs.evolve(last, action=final)
        return fill.remaining

    def _usable(self, offer: Offer, capacity_type: CapacityType) -> bool:
        """Not blocked now, and within the request's max price whatever the policy's filters say."""
        cap = self.d.request.max_price
        if cap is not None and offer.price > cap:
            return False
        return self.a.health.blocked(offer.pool, capacity_type) is None

    def _pool_set(self, rank: int, index: int) -> list[tuple[int, int]]:
        """The pools (rank, book index) one spot launch may offer the cloud, starting with the
        proposal's: the next ranked spot pools of the same region and size that are not blocked,
        up to the policy's ``pools_per_launch``; just the proposal's when the launcher cannot or
        the policy caps pools itself."""
        d, k = self.d, self.d.policy.pools_per_launch
        offer = d.book.offers[index]
        launcher = self.a.launcher
        if (
            k <= 1
            or not (isinstance(launcher, PoolSetLauncher) and launcher.can_launch_pools())
            or d.policy.spread > 1
            or d.policy.max_count(d.request) is not None
        ):
            return [(rank, index)]
        group = [(rank, index)]
        weight = offer.weight(d.request.unit)
        for r, i in enumerate(d.spot_order.tolist()[rank:], start=rank + 1):
            if len(group) >= k:
                break
            other = d.book.offers[i]
            if (
                other.pool.region == offer.pool.region
                and other.pool.cloud is offer.pool.cloud
                and other.weight(d.request.unit) == weight
                and self._usable(other, CapacityType.SPOT)
            ):
                group.append((r, i))
        return group

    def _on_demand(self, units: float, requested: float) -> float:
        """Launch the on-demand part (``requested`` of it was asked as on-demand, the rest fell
        back from spot); return the units nothing could launch."""
        d, policy = self.d, self.d.policy
        last = self.fallbacks[-1] if self.fallbacks else None
        if last is not None and last.action is FallbackAction.GIVE_UP and last.failure is LaunchFailure.AUTH:
            return units  # not allowed to launch: on-demand would be refused the same way
        fill = Fill(d.on_demand_order, self.weight, units, spot=False, max_count=policy.max_count(d.request))
        failures = 0
        while (p := fill.next()) is not None:
            offer = d.book.offers[p.index]
            if not self._usable(offer, CapacityType.ON_DEMAND):
                continue
            got = self._launch(
                offer, p.count, p.rank, CapacityType.ON_DEMAND, role="on-demand", requested=requested
            )
            requested -= got * p.weight
            fill.took(got * p.weight)
            if got == p.count:
                continue
            failures += 1
            action = policy.fallback.after(self.fallbacks[-1].failure, CapacityType.ON_DEMAND, failures)
            self.fallbacks[-1] = attrs.evolve(self.fallbacks[-1], action=action)
            if action is FallbackAction.GIVE_UP:
                break
        return fill.remaining

    # --- one launch ----------------------------------------------------------------------------

    def _launch(
        self,
        offer: Offer,
        count: int,
        rank: int,
        capacity_type: CapacityType,
        *,
        role: str,
        requested: float = 0.0,
    ) -> int:
        """Launch in one pool; record what it got and, when short, the failure. Returns the count."""
        reason = self._reason(role, rank, offer, capacity_type, requested)
        result = self.a.launcher.launch(
            offer,
            count,
            max_price=self.d.request.max_price,
            tags=self._tags(reason),
            timeout=self.d.policy.fallback.spot_timeout,
        )
        self._place(
            offer,
            result.instances,
            rank=rank,
            reason=reason,
            capacity_type=capacity_type,
            requested=requested,
        )
        got = len(result.instances)
        if got < count:
            error = result.error or LaunchError(
                f"{capacity_type} in {offer.pool}: got {got} of {count}",
                kind=LaunchFailure.NO_CAPACITY,
                pool=offer.pool,
                capacity_type=capacity_type,
            )
            self._refused(error, offer.pool, capacity_type, (count - got) * offer.weight(self.d.request.unit))
        if result.instances:
            self.a.health.record_success(offer.pool, capacity_type)
        return got

    def _launch_set(self, group: list[tuple[int, Offer]], count: int) -> int:
        """One spot launch over several ranked pools (the launcher is a PoolSetLauncher): each
        instance is placed in the pool it landed in, each refusal recorded on its pool."""
        launcher = self.a.launcher
        assert isinstance(launcher, PoolSetLauncher)
        rank_of = {o.pool: r for r, o in group}
        first_rank, first = group[0]
        reason = self._reason(f"spot over {len(group)} pools", first_rank, first, CapacityType.SPOT, 0.0)
        result = launcher.launch_pools(
            [o for _, o in group],
            count,
            max_price=self.d.request.max_price,
            tags=self._tags(reason),
            timeout=self.d.policy.fallback.spot_timeout,
        )
        offers = {o.pool: o for _, o in group}
        for pool in dict.fromkeys(i.offer.pool for i in result.instances):
            landed = tuple(i for i in result.instances if i.offer.pool == pool)
            self._place(
                offers[pool],
                landed,
                rank=rank_of[pool],
                reason=reason,
                capacity_type=CapacityType.SPOT,
                requested=0.0,
            )
        got = len(result.instances)
        short = (count - got) * first.weight(self.d.request.unit)
        errors = result.errors or (
            ()
            if got == count
            else (
                LaunchError(
                    f"spot over {len(group)} pools: got {got} of {count}",
                    kind=LaunchFailure.NO_CAPACITY,
                    pool=first.pool,
                    capacity_type=CapacityType.SPOT,
                ),
            )
        )
        for n, error in enumerate(errors):  # the set's shortfall is told on its first refusal
            self._refused(error, error.pool, CapacityType.SPOT, short if n == 0 else 0.0)
        if result.instances:
            self.a.health.record_success(first.pool, CapacityType.SPOT)
        return got

    def _reason(
        self, role: str, rank: int, offer: Offer, capacity_type: CapacityType, requested: float
    ) -> str:
        d = self.d
        fallback = bool(self.fallbacks) or (capacity_type is CapacityType.ON_DEMAND and requested <= EPS)
        ranker = d.policy.spot_ranker if offer.spot else d.policy.on_demand_ranker
        return f"{role} rank {rank} by {ranker!r}" + (
            f"; after {len(self.fallbacks)} failed launch(es)" if fallback else ""
        )

    def _tags(self, reason: str) -> dict[str, str]:
        d = self.d
        return self.a.tags(
            {
                f"{TAG_PREFIX}allocation": self.id,
                f"{TAG_PREFIX}policy": d.policy.name,
                f"{TAG_PREFIX}task-class": d.request.task_class.value,
                f"{TAG_PREFIX}reason": reason,
                **({f"{TAG_PREFIX}job": self.job} if self.job else {}),
                **({f"{TAG_PREFIX}request": d.request.name} if d.request.name else {}),
            }
        )

    def _place(
        self,
        offer: Offer,
        instances: Sequence[Instance],
        *,
        rank: int,
        reason: str,
        capacity_type: CapacityType,
        requested: float,
    ) -> None:
        """Record launched instances; on-demand ones cover ``requested`` on-demand units first,
        the rest were asked as spot (they fell back)."""
        on_demand_price = self._on_demand_price(offer)
        w = offer.weight(self.d.request.unit)
        for instance in instances:
            asked = (
                CapacityType.ON_DEMAND
                if capacity_type is CapacityType.ON_DEMAND and requested > EPS
                else CapacityType.SPOT
            )
            requested -= w
            self.failed_before.append(len(self.fallbacks))
            self.placements.append(
                Placement(
                    instance=instance,
                    requested=asked,
                    units=w,
                    rank=rank,
                    reason=reason,
                    score=offer.score,
                    on_demand_price=on_demand_price,
                )
            )

    def _refused(self, error: LaunchError, pool: Pool, capacity_type: CapacityType, units: float) -> None:
        block = self.a.health.record_failure(pool, capacity_type, error.kind, error.code or "")
        remembered = "" if block is None else f"; {block.scope} blocked until {block.until:%H:%M:%S}"
        self.fallbacks.append(
            FallbackEvent(
                at=self.a.now(),
                pool=pool,
                capacity_type=capacity_type,
                failure=error.kind,
                detail=f"{error}{remembered}",
                units=units,
                action=FallbackAction.NEXT_POOL,
            )
        )
        log.info("allocation %s: %s", self.id, self.fallbacks[-1].detail)

    def _on_demand_price(self, offer: Offer) -> float | None:
        if not offer.spot:
            return offer.price
        b = self.d.book
        match = np.flatnonzero(
            ~b.spot
            & (b.instance_type == offer.pool.instance_type)
            & (b.region == offer.pool.region)
            & (b.cloud == offer.pool.cloud.value)
        )
        return float(b.price[match].min()) if len(match) else None
