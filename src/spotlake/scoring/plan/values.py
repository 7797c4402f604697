"""The planner's values: a (region, size) pair, a plan of SPS calls and the report on its quality.

:class:`Plan` and :class:`PlanReport` are frozen and serialise to compact JSON (the pipeline stores
the day's plan as a state document); reading a stored value back raises
:class:`~spotlake.errors.ConfigError` when it is not one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import attrs

from spotlake.errors import ConfigError
from spotlake.model import SpsCall

__all__ = ["PLAN_FORMAT", "Pair", "Plan", "PlanReport"]

#: A (region, size) pair, e.g. ``("eastus", "Standard_D2s_v5")``.
Pair = tuple[str, str]

#: Version of :meth:`Plan.to_json`'s layout; bumped when it changes incompatibly.
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

    def to_json(self) -> dict[str, Any]:
        return attrs.asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PlanReport:
        try:
            return cls(
                pairs=int(data["pairs"]),
                regions=int(data["regions"]),
                sizes=int(data["sizes"]),
                calls=int(data["calls"]),
                cells=int(data["cells"]),
                wasted_cells=int(data["wasted_cells"]),
                lower_bound=int(data["lower_bound"]),
                ratio=float(data["ratio"]),
                seconds=float(data["seconds"]),
                max_regions=int(data["max_regions"]),
                max_sizes=int(data["max_sizes"]),
                strategy=str(data["strategy"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"stored plan report is malformed ({exc!r}); rebuild the plan") from exc


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

    def to_json(self) -> dict[str, Any]:
        """A compact JSON-able value: region and size names once, support as index lists per size."""
        regions = sorted(
            {r for r, _ in self.support | self.forbidden} | {r for c in self.calls for r in c.regions}
        )
        r_index = {r: i for i, r in enumerate(regions)}
        per_size: dict[str, list[int]] = {}
        for r, s in sorted(self.support, key=lambda p: (p[1], p[0])):
            per_size.setdefault(s, []).append(r_index[r])
        return {
            "format": PLAN_FORMAT,
            "regions": regions,
            "support": per_size,
            "forbidden": [[r_index[r], s] for r, s in sorted(self.forbidden)],
            "calls": [c.to_json() for c in self.calls],
            "report": self.report.to_json(),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Plan:
        """Read :meth:`to_json`'s output back; :class:`ConfigError` if it is not such a value."""
        if data.get("format") != PLAN_FORMAT:
            raise ConfigError(
                f"stored plan has format {data.get('format')!r}, this spotlake reads {PLAN_FORMAT}; "
                "rebuild the plan"
            )
        try:
            regions = [str(r) for r in data["regions"]]
            support = frozenset(
                (regions[int(i)], str(s)) for s, idx in dict(data["support"]).items() for i in idx
            )
            forbidden = frozenset((regions[int(i)], str(s)) for i, s in data.get("forbidden", []))
            calls = tuple(SpsCall.from_json(c) for c in data["calls"])
            report = PlanReport.from_json(data["report"])
        except (KeyError, TypeError, ValueError, IndexError, ConfigError) as exc:
            raise ConfigError(f"stored plan is malformed ({exc}); rebuild the plan") from exc
        return cls(calls=calls, support=support, report=report, forbidden=forbidden)
