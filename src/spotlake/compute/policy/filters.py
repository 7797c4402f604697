"""Filters: which offers may be used at all (see :mod:`spotlake.compute.policy.base`)."""

from __future__ import annotations

from datetime import timedelta

import numpy as np

from spotlake.compute.health import BreakerState
from spotlake.compute.policy.base import BoolArray, Context, Filter
from spotlake.compute.values import CapacityType, Pool

__all__ = ["AllowedPools", "Fits", "Fresh", "Healthy", "MaxPrice", "MinScore"]


class Fits(Filter):
    """What the request allows: instance size, GPUs, types, families, regions, zones."""

    name = "does not fit the request"

    def __call__(self, ctx: Context) -> BoolArray:
        r, b = ctx.request, ctx.book
        keep = (b.vcpus >= r.min_vcpus) & (b.memory >= r.min_memory_gib) & (b.gpus >= r.gpus)
        for allowed, column in (
            (r.instance_types, b.instance_type),
            (r.families, b.family),
            (r.regions, b.region),
            (r.zones, b.zone),
        ):
            if allowed is not None:
                keep &= np.isin(column, list(allowed))
        return keep

    def reason(self, ctx: Context, dropped: BoolArray) -> str:
        r = ctx.request
        return (
            f"does not fit the request (at least {r.min_vcpus} vCPUs, {r.min_memory_gib:g} GiB, {r.gpus} GPUs"
            + (
                ", allowed types/families/regions/zones"
                if any(x is not None for x in (r.instance_types, r.families, r.regions, r.zones))
                else ""
            )
            + ")"
        )


class MaxPrice(Filter):
    """No offer above a price per instance-hour (the request's ``max_price`` by default)."""

    def __init__(self, price: float | None = None) -> None:
        self.price = price
        self.name = "above the maximum price"

    def __call__(self, ctx: Context) -> BoolArray:
        cap = self.price if self.price is not None else ctx.request.max_price
        if cap is None:
            return np.ones(len(ctx.book), dtype=bool)
        keep: BoolArray = ctx.book.price <= cap
        return keep

    def reason(self, ctx: Context, dropped: BoolArray) -> str:
        cap = self.price if self.price is not None else ctx.request.max_price
        return f"above the maximum price {cap:g} $/h"


class MinScore(Filter):
    """Spot offers need a placement score of at least ``fraction`` of their scale (Azure Medium
    is 2/3, AWS 7 is 0.7). Offers without a score are kept unless ``require`` is set."""

    def __init__(self, fraction: float, *, require: bool = False) -> None:
        self.fraction = fraction
        self.require = require
        self.name = f"placement score below {fraction:.2f} of its scale"

    def __call__(self, ctx: Context) -> BoolArray:
        b = ctx.book
        unknown = np.isnan(b.score)
        ok = np.where(unknown, not self.require, b.score >= self.fraction)
        keep: BoolArray = ~b.spot | ok
        return keep


class Fresh(Filter):
    """Drop offers whose data is older than ``max_age`` (stale data is never used silently).
    Undated offers (a static catalog) are kept; the decision flags them."""

    def __init__(self, max_age: timedelta) -> None:
        self.max_age = max_age
        self.name = f"data older than {max_age} (stale: newer data or a larger max age)"

    def __call__(self, ctx: Context) -> BoolArray:
        age = ctx.book.age_seconds(ctx.now)
        keep: BoolArray = np.isnan(age) | (age <= self.max_age.total_seconds())
        return keep


class AllowedPools(Filter):
    """Only these pools (e.g. the subnets a cluster has)."""

    def __init__(self, pools: set[Pool] | frozenset[Pool]) -> None:
        self.pools = frozenset(pools)
        self.name = "not an allowed pool"

    def __call__(self, ctx: Context) -> BoolArray:
        keep: BoolArray = np.isin(ctx.book.pool, [str(p) for p in self.pools])
        return keep


class Healthy(Filter):
    """Drop offers the health registry blocks (recent failures) or whose breaker is open."""

    name = "blocked by a recent failure"

    def __call__(self, ctx: Context) -> BoolArray:
        keep = np.ones(len(ctx.book), dtype=bool)
        for hit, _ in self._causes(ctx):
            keep &= ~hit
        return keep

    def reasons(self, ctx: Context, dropped: BoolArray) -> list[tuple[BoolArray, str]]:
        """Each dropped offer is told the first cause that covers it (an open breaker, then each
        block in turn)."""
        out = []
        left = dropped.copy()
        for hit, why in self._causes(ctx):
            mine = left & hit
            if mine.any():
                out.append((mine, why))
                left &= ~mine
        return out

    def reason(self, ctx: Context, dropped: BoolArray) -> str:
        return "; ".join(why for _, why in self.reasons(ctx, dropped)) or self.name

    @staticmethod
    def _causes(ctx: Context) -> list[tuple[BoolArray, str]]:
        b = ctx.book
        causes: list[tuple[BoolArray, str]] = []
        for capacity_type, state in ctx.breakers.items():
            if state is BreakerState.OPEN:
                hit: BoolArray = b.spot == (capacity_type is CapacityType.SPOT)
                causes.append((hit, f"blocked: the {capacity_type} breaker is open"))
        for block in ctx.blocks:
            s = block.scope
            hit = b.cloud == s.cloud.value
            if s.capacity_type is not None:
                hit &= b.spot == (s.capacity_type is CapacityType.SPOT)
            for value, column in ((s.region, b.region), (s.zone, b.zone), (s.instance_type, b.instance_type)):
                if value is not None:
                    hit &= column == value
            causes.append((hit, f"blocked: {s} until {block.until:%H:%M:%S} ({block.reason})"))
        return causes
