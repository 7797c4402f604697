"""A decision as a typed report: what the CLI prints and ``--json`` dumps (through spotlake.serde).

:func:`decision_report` keeps the plan, the best candidates of each capacity type with their
reasons, the counts of dropped offers by reason, the warnings (the offer source's and the
decision's) and, when the request cannot be served, the problem in one sentence.
"""

from __future__ import annotations

from datetime import datetime

import attrs

from spotlake.compute.decide import Decision, Role
from spotlake.compute.values import CapacityType, Offer, Unit

__all__ = ["CandidateLine", "DecisionReport", "StepLine", "decision_report"]


@attrs.frozen(kw_only=True)
class StepLine:
    role: Role
    count: int
    units: float
    pool: str
    instance_type: str
    region: str
    zone: str | None
    price: float
    rank: int


@attrs.frozen(kw_only=True)
class CandidateLine:
    rank: int
    capacity_type: CapacityType
    pool: str
    price: float
    #: Price per unit of the request (instance, vCPU or GiB).
    price_per_unit: float
    vcpus: int
    memory_gib: float
    score: str | None
    eviction: str | None
    planned: int
    reason: str


@attrs.frozen(kw_only=True)
class DecisionReport:
    at: datetime
    source: str
    offers: int
    unit: Unit
    amount: float
    task_class: str
    policy: str
    mix: str
    spot_units: float
    on_demand_units: float
    plan: tuple[StepLine, ...]
    hourly_cost: float
    shortfall: float
    problem: str | None
    spot: tuple[CandidateLine, ...]
    on_demand: tuple[CandidateLine, ...]
    #: Kept candidates beyond those listed, per capacity type.
    more_spot: int
    more_on_demand: int
    dropped: dict[str, int]
    warnings: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return self.problem is None


def _score(offer: Offer) -> str | None:
    return None if offer.score is None else f"{offer.score.value:g}/{offer.score.scale:g}"


def decision_report(
    decision: Decision, *, source: str, warnings: tuple[str, ...] = (), limit: int = 10
) -> DecisionReport:
    """The report of a decision; ``limit`` candidates of each capacity type are listed."""
    planned: dict[int, int] = {}
    for step in decision.steps:
        planned[id(step.offer)] = planned.get(id(step.offer), 0) + step.count
    unit = decision.request.unit

    def lines(order: list[int], kind: CapacityType) -> tuple[CandidateLine, ...]:
        ranker = (
            decision.policy.spot_ranker if kind is CapacityType.SPOT else decision.policy.on_demand_ranker
        )
        out = []
        for rank, i in enumerate(order[:limit], start=1):
            o = decision.book.offers[i]
            n = planned.get(id(o), 0)
            weight = o.weight(unit)
            out.append(
                CandidateLine(
                    rank=rank,
                    capacity_type=kind,
                    pool=str(o.pool),
                    price=o.price,
                    price_per_unit=o.price / weight if weight else float("inf"),
                    vcpus=o.vcpus,
                    memory_gib=o.memory_gib,
                    score=_score(o),
                    eviction=o.eviction_bucket,
                    planned=n,
                    reason=f"rank {rank} by {ranker!r}" + (f", {n} planned" if n else ", fallback candidate"),
                )
            )
        return tuple(out)

    spot_order = decision.spot_order.tolist()
    on_demand_order = decision.on_demand_order.tolist()
    return DecisionReport(
        at=decision.at,
        source=source,
        offers=len(decision.book),
        unit=unit,
        amount=decision.request.amount,
        task_class=decision.request.task_class.value,
        policy=decision.policy.name,
        mix=str(decision.mix),
        spot_units=decision.split.spot,
        on_demand_units=decision.split.on_demand,
        plan=tuple(
            StepLine(
                role=s.role,
                count=s.count,
                units=s.units,
                pool=str(s.offer.pool),
                instance_type=s.offer.pool.instance_type,
                region=s.offer.pool.region,
                zone=s.offer.pool.zone,
                price=s.offer.price,
                rank=s.rank,
            )
            for s in decision.steps
        ),
        hourly_cost=sum(s.count * s.offer.price for s in decision.steps),
        shortfall=decision.shortfall,
        problem=decision.problem(),
        spot=lines(spot_order, CapacityType.SPOT),
        on_demand=lines(on_demand_order, CapacityType.ON_DEMAND),
        more_spot=max(len(spot_order) - limit, 0),
        more_on_demand=max(len(on_demand_order) - limit, 0),
        dropped=dict(decision.dropped().most_common()),
        warnings=(*warnings, *decision.warnings),
    )
