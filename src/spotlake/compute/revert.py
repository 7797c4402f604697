"""Moving capacity back to spot when spot is healthy again: one instance at a time, after a cooldown.

Fallback leaves a request with more on-demand than its mix asked for. When the health registry
says spot is healthy again (its breaker closed, no early interruptions lately, and the cooldown
since the last move has passed: ``HealthLimits.revert_cooldown``), :meth:`Reverter.step` moves one
on-demand instance back:

1. it picks the on-demand instance whose move keeps the mix: on-demand stays at or above the base
   and spot at or below the mix's spot part (critical work, whose mix has no spot, never moves);
   one that fell back first, then the dearest;
2. it launches its replacement on spot through the allocator (ranked as any spot launch, with no
   fallback to on-demand), and only when the replacement covers the same units
3. terminates the on-demand instance (make before break) and starts the cooldown.

A replacement that fails is recorded by the health registry like any failed launch, and nothing is
terminated. When the on-demand instance cannot be terminated, the replacement is given back (the
job is as before); if that fails too, the move says so (``kept_old``) and the caller holds both,
so no running instance is ever left without an owner.
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
    #: The on-demand instance could not be terminated, nor its replacement given back: both run
    #: (both open in the ledger), and the caller holds both until it ends them.
    kept_old: bool = False


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
        # fallen-back instances first (they hold what the mix wanted on spot), the dearest first
        for p in sorted(on_demand, key=lambda p: (not p.fell_back, -p.instance.price, p.instance.id)):
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
            log.info("revert of %s to spot did not find the capacity; it stays on-demand", old.instance.id)
            if got.instances:  # launched and given back: wait a cooldown before launching again
                self.allocator.health.record_revert()
            if self._give_back(got):  # a part is no replacement
                return None
            return RevertMove(old=old, new=_as_spot(got), allocation=got, kept_old=True)
        new = _as_spot(got)
        try:
            self.allocator.launcher.terminate([old.instance.id])
        except Exception as exc:
            log.warning(
                "revert of %s: it could not be terminated (%s: %s); giving its replacement back",
                old.instance.id,
                type(exc).__name__,
                exc,
            )
            self.allocator.health.record_revert()  # no new launch before the cooldown
            if self._give_back(got):
                return None
            return RevertMove(old=old, new=new, allocation=got, kept_old=True)
        self.allocator.health.record_revert()
        return RevertMove(old=old, new=new, allocation=got)

    def _give_back(self, got: Allocation) -> bool:
        """Terminate a replacement that is no use (ledger closed); ``False`` when that failed."""
        ids = [i.id for i in got.instances]
        if not ids:
            return True
        try:
            self.allocator.launcher.terminate(ids)
        except Exception as exc:
            log.error("could not give back %s (%s: %s)", ", ".join(ids), type(exc).__name__, exc)
            return False
        if self.ledger is not None:
            for instance_id in ids:
                self.ledger.record_end(instance_id, EndReason.TERMINATED)
        return True


def _as_spot(got: Allocation) -> tuple[Placement, ...]:
    """The replacement's placements, asked as spot (what the job's mix wanted of those units)."""
    return tuple(attrs.evolve(p, requested=CapacityType.SPOT) for p in got.placements)
