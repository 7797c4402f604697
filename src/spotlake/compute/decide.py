"""A decision: which offers may be used, in which order, and the launch plan, with every reason.

:func:`decide` is pure: it reads the offers, the request, the policy, the time and what the health
registry says now, and returns a :class:`Decision` without launching anything (a dry run is a
decision printed). The allocator (:mod:`spotlake.compute.allocator`) carries a decision out and
falls back along its ranked candidates when a launch fails.

The steps of a decision:

1. the request's task class picks the mix (:mod:`~spotlake.compute.policy.mix`), which divides
   the request into on-demand and spot units;
2. the policy's filters run in turn; each offer dropped is told the reason of the first filter
   that dropped it;
3. the kept spot and on-demand offers are ranked by the policy's rankers (exact ties go to the
   pool's name, so the order never depends on input order or the process);
4. the plan fills the spot part with whole instances from the best spot pools, never over it
   (``spread`` and ``max_per_pool`` cap each pool), moves what no spot pool takes to on-demand,
   and fills the on-demand part from the best on-demand pools (its last instance may overshoot);
   what nothing can take is the ``shortfall``.

A spot breaker that is open leaves spot out (the Healthy filter says so); a half-open one makes
the first spot launch a one-instance probe.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import datetime
from enum import StrEnum

import attrs
import numpy as np
import numpy.typing as npt
import pandas as pd

from spotlake.clock import ensure_utc
from spotlake.compute.book import OfferBook
from spotlake.compute.fill import EPS, Fill
from spotlake.compute.health import BreakerState, HealthRegistry
from spotlake.compute.policy.base import AllOf, Context, Filter
from spotlake.compute.policy.mix import CapacityMix, Split
from spotlake.compute.policy.presets import Policy, cost_optimized
from spotlake.compute.values import CapacityRequest, CapacityType, Offer

__all__ = ["Decision", "Role", "Step", "Verdict", "decide"]

IntArray = npt.NDArray[np.int64]


class Role(StrEnum):
    """What a :class:`Step` of the launch plan is: a spot launch, a half-open breaker's probe, or
    on-demand."""

    SPOT = "spot"
    #: The one spot instance a half-open breaker lets through.
    PROBE = "probe"
    ON_DEMAND = "on-demand"


@attrs.frozen(kw_only=True)
class Step:
    """Launch ``count`` instances of ``offer`` (``units`` of the request); ``rank`` is the offer's
    place among the candidates of its capacity type, from 1."""

    offer: Offer
    count: int
    units: float
    rank: int
    role: Role


@attrs.frozen(kw_only=True)
class Verdict:
    """What the decision made of one offer, and why."""

    offer: Offer
    kept: bool
    #: Place among the kept offers of its capacity type (from 1); ``None`` when dropped.
    rank: int | None
    #: Instances the plan launches from this offer.
    planned: int
    reason: str


@attrs.frozen(kw_only=True, eq=False)
class Decision:
    """A ranked launch plan and the reason for every offer (see the module docstring)."""

    request: CapacityRequest
    policy: Policy
    at: datetime
    mix: CapacityMix
    #: The mix's division of the request, in the request's units.
    split: Split
    #: The plan: spot steps (a probe first if the breaker is half-open), then on-demand steps.
    steps: tuple[Step, ...]
    #: Units no kept offer can take.
    shortfall: float
    #: Spot units the plan moved to on-demand because no spot pool could take them.
    moved_to_on_demand: float
    #: The part of those the kept spot pools could not take in whole instances (or within their
    #: caps): the plan's own choice, not a fallback from failing spot.
    rounded_to_on_demand: float
    warnings: tuple[str, ...]
    book: OfferBook
    #: Indices into ``book`` of the kept offers, best first.
    spot_order: IntArray
    on_demand_order: IntArray
    #: Per offer, the index of the filter that dropped it (-1: kept).
    dropped_by: IntArray
    #: The reason of each filter that dropped something.
    filter_reasons: tuple[str, ...]

    @property
    def spot_candidates(self) -> tuple[Offer, ...]:
        return tuple(self.book.offers[i] for i in self.spot_order)

    @property
    def on_demand_candidates(self) -> tuple[Offer, ...]:
        return tuple(self.book.offers[i] for i in self.on_demand_order)

    @property
    def planned_units(self) -> Split:
        spot = sum(s.units for s in self.steps if s.role is not Role.ON_DEMAND)
        return Split(on_demand=sum(s.units for s in self.steps if s.role is Role.ON_DEMAND), spot=spot)

    @property
    def complete(self) -> bool:
        """Whether the plan covers the whole request."""
        return self.shortfall <= EPS

    def dropped(self) -> Counter[str]:
        """How many offers each reason dropped."""
        counts = np.bincount(self.dropped_by[self.dropped_by >= 0], minlength=len(self.filter_reasons))
        return Counter({self.filter_reasons[i]: int(n) for i, n in enumerate(counts) if n})

    def problem(self) -> str | None:
        """Why the plan cannot cover the request, in one sentence (``None`` when it can)."""
        if self.complete:
            return None
        dropped = ", ".join(f"{n} {reason}" for reason, n in self.dropped().most_common())
        kept = len(self.spot_order) + len(self.on_demand_order)
        if not self.steps:
            return f"no offer is left: {dropped or 'there were no offers at all'}"
        return (
            f"the kept offers ({kept}) cover only {self.request.amount - self.shortfall:g} of "
            f"{self.request.amount:g} {self.request.unit}" + (f"; dropped: {dropped}" if dropped else "")
        )

    def verdicts(self) -> list[Verdict]:
        """Every offer with what became of it, kept ones first in rank order."""
        planned: dict[int, int] = {}
        index = {id(o): i for i, o in enumerate(self.book.offers)}
        for step in self.steps:
            i = index[id(step.offer)]
            planned[i] = planned.get(i, 0) + step.count
        out: list[Verdict] = []
        for kind, order, ranker in (
            ("spot", self.spot_order, self.policy.spot_ranker),
            ("on-demand", self.on_demand_order, self.policy.on_demand_ranker),
        ):
            for rank, i in enumerate(order.tolist(), start=1):
                n = planned.get(i, 0)
                why = f"{kind} rank {rank} by {ranker!r}" + (
                    f": {n} planned" if n else ": fallback candidate"
                )
                out.append(Verdict(offer=self.book.offers[i], kept=True, rank=rank, planned=n, reason=why))
        for j in np.flatnonzero(self.dropped_by >= 0).tolist():
            reason = self.filter_reasons[int(self.dropped_by[j])]
            out.append(Verdict(offer=self.book.offers[j], kept=False, rank=None, planned=0, reason=reason))
        return out

    def to_frame(self) -> pd.DataFrame:
        """:meth:`verdicts` as a frame (one row per offer)."""
        rows = [
            {
                "pool": str(v.offer.pool),
                "capacity_type": v.offer.capacity_type.value,
                "price": v.offer.price,
                "vcpus": v.offer.vcpus,
                "memory_gib": v.offer.memory_gib,
                "score": None if v.offer.score is None else v.offer.score.value,
                "eviction_bucket": v.offer.eviction_bucket,
                "kept": v.kept,
                "rank": v.rank,
                "planned": v.planned,
                "reason": v.reason,
            }
            for v in self.verdicts()
        ]
        return pd.DataFrame(rows)


def _filter_parts(f: Filter) -> tuple[Filter, ...]:
    return f.filters if isinstance(f, AllOf) else (f,)


def decide(
    offers: OfferBook | Iterable[Offer],
    request: CapacityRequest,
    policy: Policy | None = None,
    *,
    now: datetime,
    health: HealthRegistry | None = None,
) -> Decision:
    """The decision for ``request`` over ``offers`` at ``now`` (see the module docstring)."""
    book = offers if isinstance(offers, OfferBook) else OfferBook.of(offers)
    policy = policy or cost_optimized()
    now = ensure_utc(now)
    breakers = (
        {t: health.breaker(t) for t in CapacityType}
        if health is not None
        else dict.fromkeys(CapacityType, BreakerState.CLOSED)
    )
    ctx = Context(
        book=book,
        request=request,
        now=now,
        blocks=health.blocks() if health is not None else (),
        breakers=breakers,
    )
    mix = policy.mix_for(request.task_class)
    split = mix.split(request.amount)
    warnings: list[str] = []

    keep = np.ones(len(book), dtype=bool)
    dropped_by = np.full(len(book), -1, dtype=np.int64)
    reasons: list[str] = []
    for f in _filter_parts(policy.filters):
        mask = f(ctx)
        newly = keep & ~mask
        if newly.any():
            for group, why in f.reasons(ctx, newly):
                dropped_by[group] = len(reasons)
                reasons.append(why)
        keep &= mask
    if split.spot <= EPS:  # the spot candidates would never be tried: say so rather than list them
        unused = keep & book.spot
        if unused.any():
            dropped_by[unused] = len(reasons)
            reasons.append(f"not used: the {request.task_class} mix ({mix}) has no spot part here")
            keep &= ~unused

    spot_order = policy.spot_ranker.order(ctx, keep & book.spot)
    on_demand_order = policy.on_demand_ranker.order(ctx, keep & ~book.spot)
    weight = ctx.weight

    steps: list[Step] = []
    half_open = breakers[CapacityType.SPOT] is BreakerState.HALF_OPEN
    if split.spot > EPS and half_open:
        warnings.append("the spot breaker is half-open: the first spot launch is a one-instance probe")
    max_count = policy.max_count(request)
    spot = Fill(
        spot_order,
        weight,
        split.spot,
        spot=True,
        cap_units=policy.spread_cap(split.spot),
        max_count=max_count,
        probe=half_open,
    )
    while (p := spot.next()) is not None:
        role = Role.PROBE if p.probe else Role.SPOT
        steps.append(
            Step(offer=book.offers[p.index], count=p.count, units=p.count * p.weight, rank=p.rank, role=role)
        )
        spot.took(p.count * p.weight)
    moved = spot.remaining
    spot_usable = bool(len(spot_order)) and breakers[CapacityType.SPOT] is not BreakerState.OPEN
    if split.spot > EPS and moved > EPS and len(on_demand_order):
        why = (
            "the spot breaker is open"
            if breakers[CapacityType.SPOT] is BreakerState.OPEN
            else "no kept spot offer"
            if not len(spot_order)
            else "the kept spot pools cannot take it in whole instances"
        )
        warnings.append(f"{moved:g} of {split.spot:g} spot {request.unit} go to on-demand: {why}")

    on_demand = Fill(on_demand_order, weight, split.on_demand + moved, spot=False, max_count=max_count)
    while (p := on_demand.next()) is not None:
        steps.append(
            Step(
                offer=book.offers[p.index],
                count=p.count,
                units=p.count * p.weight,
                rank=p.rank,
                role=Role.ON_DEMAND,
            )
        )
        on_demand.took(p.count * p.weight)
    shortfall = on_demand.remaining

    undated = sum(1 for s in steps if s.offer.observed_at is None)
    if undated:
        warnings.append(
            f"{undated} planned offer(s) have no observation time (a static catalog): "
            "their prices and scores may be out of date"
        )
    return Decision(
        request=request,
        policy=policy,
        at=now,
        mix=mix,
        split=split,
        steps=tuple(steps),
        shortfall=shortfall,
        moved_to_on_demand=moved,
        rounded_to_on_demand=moved if spot_usable else 0.0,
        warnings=tuple(warnings),
        book=book,
        spot_order=spot_order,
        on_demand_order=on_demand_order,
        dropped_by=dropped_by,
        filter_reasons=tuple(reasons),
    )
