"""The capacity mix: how much of a request is on-demand and how much spot.

A mix is ``base`` on-demand units first, then ``spot_percent`` % of the rest on spot: the shape
EC2 Fleet, Auto Scaling groups and Azure Spot Priority Mix use, so it reads the same here.

**The rounding rule** (the only one): the spot part is the whole number of units nearest to
``spot_percent`` % of what is above the base, halves going to on-demand (at 100 % it is all of it,
at 0 % none); on-demand gets the rest. So one instance at 70 % spot is spot, one instance at 50 %
or 30 % is on-demand, and ten instances at 70 % are 3 on-demand and 7 spot. Units are the
request's: instances, vCPUs or GiB (a fractional memory total keeps its fraction on-demand).

When the launch plan fills the spot part with whole instances it never goes over it: what no spot
instance fits exactly moves to on-demand (see :mod:`spotlake.compute.decide`), so the launched
spot share never exceeds the mix's and the base is always on-demand.
"""

from __future__ import annotations

import math
from fractions import Fraction

import attrs

from spotlake.errors import ConfigError

__all__ = ["CapacityMix", "Split"]


@attrs.frozen
class Split:
    """Units of a request on each capacity type."""

    on_demand: float
    spot: float

    @property
    def total(self) -> float:
        return self.on_demand + self.spot


def _percent(_inst: object, _attr: object, value: float) -> None:
    if not (isinstance(value, int | float) and 0 <= value <= 100):
        raise ConfigError(f"spot_percent must be between 0 and 100, got {value!r}")


def _base(_inst: object, _attr: object, value: float) -> None:
    if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
        raise ConfigError(f"the on-demand base must be a number >= 0, got {value!r}")


@attrs.frozen
class CapacityMix:
    """``base`` on-demand units, then ``spot_percent`` % spot of the rest."""

    spot_percent: float = attrs.field(validator=_percent)
    base: float = attrs.field(default=0, validator=_base)

    def split(self, total: float) -> Split:
        """How ``total`` units divide (see the module docstring for the rounding rule)."""
        whole = Fraction(total)
        base = min(Fraction(self.base), whole)
        above = whole - base
        exact = above * Fraction(self.spot_percent) / 100
        spot = above if self.spot_percent == 100 else min(Fraction(math.ceil(exact - Fraction(1, 2))), above)
        spot = max(spot, Fraction(0))
        return Split(on_demand=float(whole - spot), spot=float(spot))

    def __str__(self) -> str:
        base = f"{self.base:g} on-demand + " if self.base else ""
        return f"{base}{self.spot_percent:g} % spot"


#: Never spot (critical tasks).
ON_DEMAND_ONLY = CapacityMix(spot_percent=0)
#: All spot, with fallback to on-demand when spot fails.
SPOT_FIRST = CapacityMix(spot_percent=100)
