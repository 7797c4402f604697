"""The planning problem in index form, and back to names.

The input checks (call limits, well-formed pairs), the support set with sizes and regions numbered in
sorted order and each size's regions as a bitmask (:class:`Indexed`), calls in index form turned back
into sorted :class:`~spotlake.model.SpsCall` values, and the check that a cover misses no pair.
Planning (:mod:`spotlake.scoring.plan.solve`) and repair (:mod:`spotlake.scoring.plan.repair`) both
go through here.
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs

from spotlake.errors import PlanError
from spotlake.model import MAX_SPS_REGIONS, MAX_SPS_SIZES, SpsCall
from spotlake.scoring.plan._bits import Call
from spotlake.scoring.plan.values import Pair

__all__ = ["Indexed", "check_cover", "check_limits", "indexed", "to_calls", "validate_pairs"]


def check_limits(max_regions: int, max_sizes: int) -> None:
    """:class:`PlanError` unless a call may hold 1..8 regions and 1..5 sizes."""
    if not 1 <= max_regions <= MAX_SPS_REGIONS or not 1 <= max_sizes <= MAX_SPS_SIZES:
        raise PlanError(
            f"call limits must be 1..{MAX_SPS_REGIONS} regions and 1..{MAX_SPS_SIZES} sizes, "
            f"got {max_regions} regions and {max_sizes} sizes"
        )


def validate_pairs(pairs: Iterable[Pair]) -> set[Pair]:
    """The pairs as a set; :class:`PlanError` for anything but a (region, size) of non-empty strings."""
    out: set[Pair] = set()
    for p in pairs:
        if not (isinstance(p, tuple) and len(p) == 2 and all(isinstance(x, str) and x for x in p)):
            raise PlanError(f"a support pair must be a (region, size) tuple of non-empty strings, got {p!r}")
        out.add(p)
    return out


@attrs.frozen
class Indexed:
    """A support set in index form: sizes and regions in sorted order, regions as bitmasks per size."""

    regions: tuple[str, ...]
    sizes: tuple[str, ...]
    masks: tuple[int, ...]  # per size: bitmask of its regions
    forbidden: tuple[int, ...]  # per size: bitmask of regions it must never be scored with


def indexed(pairs: Iterable[Pair], forbidden: Iterable[Pair]) -> Indexed:
    """Number ``pairs``' regions and sizes; ``forbidden`` cells outside them are dropped."""
    support = set(pairs)
    banned = set(forbidden)
    regions = tuple(sorted({r for r, _ in support}))
    sizes = tuple(sorted({s for _, s in support}))
    r_index = {r: i for i, r in enumerate(regions)}
    s_index = {s: i for i, s in enumerate(sizes)}
    masks = [0] * len(sizes)
    for r, s in support:
        masks[s_index[s]] |= 1 << r_index[r]
    forb = [0] * len(sizes)
    for r, s in banned:
        if r in r_index and s in s_index:
            forb[s_index[s]] |= 1 << r_index[r]
    return Indexed(regions=regions, sizes=sizes, masks=tuple(masks), forbidden=tuple(forb))


def to_calls(idx: Indexed, calls: Iterable[Call]) -> tuple[SpsCall, ...]:
    """Calls in index form as named :class:`~spotlake.model.SpsCall` values, sorted."""
    named = [
        (tuple(idx.regions[c] for c in cols), tuple(idx.sizes[i] for i in items)) for items, cols in calls
    ]
    return tuple(SpsCall(regions=r, sizes=s) for r, s in sorted(named))


def check_cover(idx: Indexed, calls: Iterable[Call]) -> None:
    """Raise :class:`PlanError` if a support pair is left uncovered (a planner bug, never input)."""
    covered = [0] * len(idx.masks)
    for items, cols in calls:
        cmask = sum(1 << c for c in cols)
        for i in items:
            covered[i] |= cmask
    missing = [i for i, m in enumerate(idx.masks) if m & ~covered[i]]
    if missing:
        raise PlanError(
            f"internal planner error: {len(missing)} size(s) left uncovered, e.g. {idx.sizes[missing[0]]}; "
            "please report it with the support set"
        )
