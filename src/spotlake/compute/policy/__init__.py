"""Allocation policies: small objects with one method over one :class:`Context`, composed.

Filters (which offers may be used), rankers (in which order), the capacity mix (how much spot),
fallback (where a failed launch's units go) and the presets that bundle them. docs/allocator.md
says how to write your own.
"""

from __future__ import annotations

from spotlake.compute.policy.base import AllOf, Context, Filter, Lexicographic, Ranker
from spotlake.compute.policy.fallback import Fallback, FallbackAction
from spotlake.compute.policy.filters import AllowedPools, Fits, Fresh, Healthy, MaxPrice, MinScore
from spotlake.compute.policy.mix import ON_DEMAND_ONLY, SPOT_FIRST, CapacityMix, Split
from spotlake.compute.policy.presets import (
    PRESETS,
    Policy,
    balanced,
    cost_optimized,
    default_filters,
    performance_optimized,
    preset,
)
from spotlake.compute.policy.rankers import ByEviction, ByPrice, ByScore, PriceCapacity, ScoreAtLeast

__all__ = [
    "ON_DEMAND_ONLY",
    "PRESETS",
    "SPOT_FIRST",
    "AllOf",
    "AllowedPools",
    "ByEviction",
    "ByPrice",
    "ByScore",
    "CapacityMix",
    "Context",
    "Fallback",
    "FallbackAction",
    "Filter",
    "Fits",
    "Fresh",
    "Healthy",
    "Lexicographic",
    "MaxPrice",
    "MinScore",
    "Policy",
    "PriceCapacity",
    "Ranker",
    "ScoreAtLeast",
    "Split",
    "balanced",
    "cost_optimized",
    "default_filters",
    "performance_optimized",
    "preset",
]
