"""Rankers: the order in which pools are tried (see :mod:`spotlake.compute.policy.base`).

Every key is lower-is-better and per offer; compose with ``.then``::

    ScoreAtLeast(2 / 3).then(ByPrice())     # Azure "Medium" or better first, cheapest among them
    ByScore().then(ByEviction()).then(ByPrice())
"""

from __future__ import annotations

import numpy as np

from spotlake.compute.policy.base import Context, FloatArray, Ranker
from spotlake.errors import ConfigError

__all__ = ["ByEviction", "ByPrice", "ByScore", "PriceCapacity", "ScoreAtLeast"]


class ByPrice(Ranker):
    """Cheapest first, per unit of the request (per vCPU for a vCPU request, per instance for a count)."""

    def __call__(self, ctx: Context) -> FloatArray:
        return ctx.price_per_unit

    def __repr__(self) -> str:
        return "ByPrice()"


class ByScore(Ranker):
    """Highest placement score first (as a fraction of its scale; offers without one last)."""

    def __call__(self, ctx: Context) -> FloatArray:
        key: FloatArray = -ctx.book.score
        return key

    def __repr__(self) -> str:
        return "ByScore()"


class ByEviction(Ranker):
    """Lowest interruption frequency first (offers without an eviction rate last)."""

    def __call__(self, ctx: Context) -> FloatArray:
        key: FloatArray = -ctx.book.eviction
        return key

    def __repr__(self) -> str:
        return "ByEviction()"


class ScoreAtLeast(Ranker):
    """Offers with a placement score of at least ``fraction`` of its scale first, the rest after
    (unknown scores with the rest). Use it before a price ranker: "good enough, then cheapest"."""

    def __init__(self, fraction: float) -> None:
        self.fraction = fraction

    def __call__(self, ctx: Context) -> FloatArray:
        good = np.nan_to_num(ctx.book.score, nan=-1.0) >= self.fraction
        key: FloatArray = np.where(good, 0.0, 1.0)
        return key

    def __repr__(self) -> str:
        return f"ScoreAtLeast({self.fraction:.2f})"


#: The availability assumed for an offer without a placement score or eviction rate: neither
#: favoured nor punished (the middle of the scale).
UNKNOWN_AVAILABILITY = 0.5


class PriceCapacity(Ranker):
    """Price weighed against the chance of getting and keeping the capacity.

    The key is ``price per unit / availability ** risk``, where availability (0..1) is the mean of
    the normalised placement score and the normalised eviction score (3.0 → 1, 1.0 → 0); a
    missing one counts as :data:`UNKNOWN_AVAILABILITY`, and availability is floored at 0.05 so
    no pool is infinitely bad. ``risk=0`` is price only; larger values pay more for
    availability. With ``risk=1`` a pool at half the availability must be under half the price.
    """

    def __init__(self, risk: float = 1.0) -> None:
        if risk < 0:
            raise ConfigError(f"PriceCapacity risk must be >= 0, got {risk}")
        self.risk = risk

    def __call__(self, ctx: Context) -> FloatArray:
        b = ctx.book
        score = np.nan_to_num(b.score, nan=UNKNOWN_AVAILABILITY)
        eviction = np.nan_to_num((b.eviction - 1.0) / 2.0, nan=UNKNOWN_AVAILABILITY)
        availability = np.clip((score + eviction) / 2.0, 0.05, 1.0)
        key: FloatArray = ctx.price_per_unit / availability**self.risk
        return key

    def __repr__(self) -> str:
        return f"PriceCapacity(risk={self.risk:g})"
