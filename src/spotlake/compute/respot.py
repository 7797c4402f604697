"""Moving a running job to cheaper spot capacity (spot to spot), when the caller says the saving pays.

Spot prices move after a job has launched: the pool that was cheapest at launch is often not the
cheapest an hour later. :func:`plan_respot` prices what the job's spot instances cost now (each
at its pool's current offer; at its launch price when the pool has no offer now) and asks the
allocator for a dry run of the job's whole request on spot: a :class:`RespotPlan` when that plan
covers the request, all on spot, for at most ``1 - saving`` of the current price; else nothing.
:meth:`spotlake.compute.jobs.JobManager.respot` carries the plan out with no fallback to
on-demand, keeps the replacement only if :meth:`RespotPlan.accepts` it (the launch may get less,
or other pools, than planned) and then terminates the old instances (make before break).

How much saving pays for a move is the caller's to say: a move restarts the job, so it costs the
job's restart overhead and the work it has not saved, which only the job knows. The simulator's
rule is :class:`spotlake.compute.simulate.respot_rule.RespotRule`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import attrs

from spotlake.compute.allocator import Allocation, Allocator, Placement
from spotlake.compute.decide import Decision
from spotlake.compute.policy.mix import SPOT_FIRST
from spotlake.compute.policy.presets import Policy
from spotlake.compute.values import CapacityRequest, CapacityType, Offer
from spotlake.errors import ConfigError

__all__ = ["RespotPlan", "plan_respot", "price_now"]


def price_now(placements: Sequence[Placement], offers: Iterable[Offer]) -> float:
    """What ``placements`` cost per hour now: each instance at its pool's current offer of its
    capacity type, or at its launch price when the pool has no offer now."""
    current = {(o.pool, o.capacity_type): o.price for o in offers}
    return sum(
        current.get((p.instance.offer.pool, p.instance.capacity_type), p.instance.price) for p in placements
    )


@attrs.frozen(kw_only=True)
class RespotPlan:
    """A cheaper spot replacement to launch: the allocator's decision, what the job's instances
    cost now and the most the replacement may cost (USD per hour)."""

    decision: Decision
    price_now: float
    limit: float

    def accepts(self, allocation: Allocation) -> bool:
        """Whether what the launch got replaces the job: all of it, on spot, within the limit."""
        on_spot = all(i.capacity_type is CapacityType.SPOT for i in allocation.instances)
        return allocation.complete and on_spot and sum(i.price for i in allocation.instances) <= self.limit


def plan_respot(
    allocator: Allocator,
    offers: Sequence[Offer],
    placements: Sequence[Placement],
    request: CapacityRequest,
    *,
    saving: float,
    policy: Policy | None = None,
) -> RespotPlan | None:
    """A plan to replace ``placements`` (all spot) on spot for at most ``1 - saving`` of their price
    now, or ``None`` (they are not all spot, or no plan is that cheap). Launches nothing."""
    if not 0 <= saving < 1:
        raise ConfigError(f"a respot saving is a share of the price in [0, 1), got {saving!r}")
    if not placements or any(p.instance.capacity_type is not CapacityType.SPOT for p in placements):
        return None
    now = price_now(placements, offers)
    limit = (1 - saving) * now
    # no plan can beat the cheapest spot price per unit: skip the decision when even that is dear
    unit = request.unit
    per_unit = [o.price / o.weight(unit) for o in offers if o.spot and o.weight(unit) > 0]
    if not per_unit or min(per_unit) * request.amount > limit * (1 + 1e-9):
        return None
    spot_only = (policy or allocator.policy).only(SPOT_FIRST)
    decision = allocator.decide(offers, request, spot_only)
    planned = sum(step.offer.price * step.count for step in decision.steps)
    if not decision.complete or any(not s.offer.spot for s in decision.steps) or planned > limit:
        return None
    return RespotPlan(decision=decision, price_now=now, limit=limit)
