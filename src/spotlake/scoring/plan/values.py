"""The planner's values: a (region, size) pair, a plan of SPS calls and the report on its quality.

:class:`Plan` and :class:`PlanReport` are frozen; ``spotlake.serde.dump(plan)`` gives a compact
JSON value (region names once, the support as index lists per size: the pipeline stores the day's
plan as a state document) and ``spotlake.serde.load(data, Plan, where=...)`` reads it back.
"""

from __future__ import annotations

from typing import Final

import attrs

from spotlake.errors import ConfigError
from spotlake.model import SpsCall
from spotlake.serde import converter

__all__ = ["PLAN_FORMAT", "Pair", "Plan", "PlanReport"]

#: A (region, size) pair, e.g. ``("eastus", "Standard_D2s_v5")``.
Pair = tuple[str, str]

#: Version of a stored plan's layout (``spotlake.serde.dump(plan)``); bumped when it changes incompatibly.
PLAN_FORMAT: Final = 1


@attrs.frozen(kw_only=True)
class PlanReport:
    """How good a plan is: ``calls`` against the ``lower_bound`` no plan can beat.

    ``cells`` counts every (region, size) the calls score; ``wasted_cells`` those outside the support
    set (they cost nothing extra but are minimised). ``ratio = calls / lower_bound`` (1.0 when both
    are 0). ``seconds`` is the time the planner took. ``strategy`` names the construction that won.
    """

    pairs: int
    regions: int
    sizes: int
    calls: int
    cells: int
    wasted_cells: int
    lower_bound: int
    ratio: float
    seconds: float
    max_regions: int
    max_sizes: int
    strategy: str


@attrs.frozen(kw_only=True, eq=False)
class Plan:
    """A deterministic list of SPS calls covering every pair of ``support``, with its report.

    ``support`` is kept so the plan can be repaired (:func:`~spotlake.scoring.plan.repair.repair_plan`)
    or restricted (:func:`~spotlake.scoring.plan.repair.restrict_plan`) later without the original
    input; ``forbidden`` holds the cells learned invalid, which no call scores. Two plans are equal
    when their calls, support, forbidden cells and limits are equal (the timing in the report is
    ignored).
    """

    calls: tuple[SpsCall, ...]
    support: frozenset[Pair] = attrs.field(repr=lambda s: f"<{len(s)} pairs>")
    report: PlanReport
    forbidden: frozenset[Pair] = attrs.field(default=frozenset(), repr=lambda s: f"<{len(s)} pairs>")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Plan):
            return NotImplemented
        mine, theirs = self.report, other.report
        return (
            self.calls == other.calls
            and self.support == other.support
            and self.forbidden == other.forbidden
            and (mine.max_regions, mine.max_sizes) == (theirs.max_regions, theirs.max_sizes)
        )

    def __hash__(self) -> int:
        return hash((self.calls, len(self.support)))

    def __len__(self) -> int:
        return len(self.calls)

    def covered(self) -> frozenset[Pair]:
        """Every (region, size) cell some call scores (a superset of :attr:`support`)."""
        return frozenset(p for c in self.calls for p in c.pairs())


@attrs.frozen(kw_only=True)
class _StoredPlan:
    """A plan as stored: region names once, the support as region indices per size."""

    format: int
    regions: tuple[str, ...]
    support: dict[str, tuple[int, ...]]
    forbidden: tuple[tuple[int, str], ...] = ()
    calls: tuple[SpsCall, ...]
    report: PlanReport


def _stored(plan: Plan) -> _StoredPlan:
    regions = sorted(
        {r for r, _ in plan.support | plan.forbidden} | {r for c in plan.calls for r in c.regions}
    )
    r_index = {r: i for i, r in enumerate(regions)}
    per_size: dict[str, list[int]] = {}
    for r, s in sorted(plan.support, key=lambda p: (p[1], p[0])):
        per_size.setdefault(s, []).append(r_index[r])
    return _StoredPlan(
        format=PLAN_FORMAT,
        regions=tuple(regions),
        support={s: tuple(idx) for s, idx in per_size.items()},
        forbidden=tuple((r_index[r], s) for r, s in sorted(plan.forbidden)),
        calls=plan.calls,
        report=plan.report,
    )


def _plan(stored: _StoredPlan) -> Plan:
    if stored.format != PLAN_FORMAT:
        raise ConfigError(
            f"stored plan has format {stored.format!r}, this spotlake reads {PLAN_FORMAT}; rebuild the plan"
        )
    try:
        support = frozenset((stored.regions[i], s) for s, idx in stored.support.items() for i in idx)
        forbidden = frozenset((stored.regions[i], s) for i, s in stored.forbidden)
    except IndexError:
        raise ConfigError("stored plan names a region index it does not list; rebuild the plan") from None
    return Plan(calls=stored.calls, support=support, report=stored.report, forbidden=forbidden)


# Plans serialise through the shared converter in their compact stored form.
converter.register_unstructure_hook(Plan, lambda plan: converter.unstructure(_stored(plan)))
converter.register_structure_hook(Plan, lambda data, _type: _plan(converter.structure(data, _StoredPlan)))
