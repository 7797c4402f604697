"""Moving capacity back to spot when spot is healthy again: one instance at a time, after a cooldown.

Fallback leaves a request with more on-demand than its mix asked for. When the health registry
says spot is healthy again (its breaker closed, no early interruptions lately, and the cooldown
since the last move has passed: ``HealthLimits.revert_cooldown``), :meth:`Reverter.step` moves one
on-demand instance back:

1. it picks the on-demand instance whose move keeps the mix: on-demand stays at or above the base
   and spot at or below the mix's spot part (critical work, whose mix has no spot, never moves);
   the dearest one first;
2. it launches its replacement on spot through the allocator (ranked as any spot launch, with no
   fallback to on-demand), and only when the replacement covers the same units
3. terminates the on-demand instance (make before break) and starts the cooldown.

A replacement that fails is recorded by the health registry like any failed launch, and nothing is
terminated.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

import attrs

from spotlake.compute.allocator import Allocation, Allocator, Placement
from spotlake.compute.book import OfferBook
from spotlake.compute.fill import EPS
from spotlake.compute.ledger import CostLedger, EndReason
from spotlake.compute.policy.mix import SPOT_FIRST
from spotlake.compute.policy.presets import Policy
from spotlake.compute.values import CapacityRequest, CapacityType, Offer

__all__ = ["RevertMove", "Reverter"]

log = logging.getLogger(__name__)


@attrs.frozen(kw_only=True)
class RevertMove:
    """An on-demand instance replaced by spot."""

    old: Placement
    new: tuple[Placement, ...]
    allocation: Allocation


class Reverter:
    """Moves fallen-back capacity back to spot through an :class:`Allocator` (see the module docstring)."""

    def __init__(self, allocator: Allocator, *, ledger: CostLedger | None = None) -> None:
        self.allocator = allocator
        #: Where a replacement that is given back (it covered too little) is recorded, so every
        #: instance launched is accounted for.
        self.ledger = ledger

    def candidate(
        self, placements: Sequence[Placement], request: CapacityRequest, policy: Policy | None = None
    ) -> Placement | None:
        """The on-demand instance to move now, or ``None`` (cooldown, unhealthy spot, or the mix
        would break)."""
        if not self.allocator.health.revert_allowed():
            return None
        mix = (policy or self.allocator.policy).mix_for(request.task_class)
        split = mix.split(request.amount)
        spot = sum(p.units for p in placements if p.instance.capacity_type is CapacityType.SPOT)
        on_demand = [p for p in placements if p.instance.capacity_type is CapacityType.ON_DEMAND]
        od_units = sum(p.units for p in on_demand)
        base = min(mix.base, request.amount)
        for p in sorted(on_demand, key=lambda p: (-p.instance.price, p.instance.id)):
            if od_units - p.units >= base - EPS and spot + p.units <= split.spot + EPS:
                return p
        return None

    def step(
        self,
        offers: OfferBook | Iterable[Offer],
        placements: Sequence[Placement],
        request: CapacityRequest,
        *,
        policy: Policy | None = None,
        job: str | None = None,
    ) -> RevertMove | None:
        """Move one instance back to spot if :meth:`candidate` names one and spot takes it."""
        old = self.candidate(placements, request, policy)
        if old is None:
            return None
        spot_only = (policy or self.allocator.policy).only(SPOT_FIRST)
        replacement = request.with_amount(old.units)
        got = self.allocator.allocate(
            offers, replacement, policy=spot_only, job=job, on_demand_fallback=False
        )
        if self.ledger is not None:
            self.ledger.record(got, job=job)
        if not got.complete or got.units(CapacityType.SPOT) + EPS < old.units:
            if got.instances:  # a part is no replacement: give it back
                ids = [i.id for i in got.instances]
                self.allocator.launcher.terminate(ids)
                if self.ledger is not None:
                    for instance_id in ids:
                        self.ledger.record_end(instance_id, EndReason.TERMINATED)
            log.info("revert of %s to spot did not find the capacity; it stays on-demand", old.instance.id)
            return None
        self.allocator.launcher.terminate([old.instance.id])
        self.allocator.health.record_revert()
        new = tuple(attrs.evolve(p, requested=CapacityType.SPOT) for p in got.placements)
        return RevertMove(old=old, new=new, allocation=got)
