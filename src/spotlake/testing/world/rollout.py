"""Where a generated world sells each size, and at what price: the rollout of families to regions.

Families roll out to a subset of regions (or, in the ``uniform`` layout, every pair is drawn
independently), each size is priced from its series, generation and region, and spot is a seeded
discount. :meth:`spotlake.testing.world.World.generate` describes the layouts; docs/emulator.md how
the ``family`` layout's holes were calibrated against the real catalog.
"""

from __future__ import annotations

from typing import Literal

from spotlake.errors import ConfigError
from spotlake.testing.regions import PUBLIC_REGIONS, ZONES
from spotlake.testing.world._hashing import uniform
from spotlake.testing.world.families import build_families
from spotlake.testing.world.values import Offer, Region, VmSize

__all__ = ["Layout", "roll_out"]

#: How sizes are spread over regions (see :meth:`spotlake.testing.world.World.generate`).
Layout = Literal["family", "family-holes", "uniform"]


def roll_out(
    seed: int, *, n_regions: int, n_sizes: int, layout: Layout, density: float
) -> tuple[tuple[Region, ...], tuple[VmSize, ...], dict[tuple[str, str], Offer]]:
    """The regions, sizes and offers (true prices per sold (region, size)) of a generated world."""
    if not 1 <= n_regions <= len(PUBLIC_REGIONS):
        raise ConfigError(f"n_regions must be within 1..{len(PUBLIC_REGIONS)}, got {n_regions}")
    if n_sizes < 1:
        raise ConfigError(f"n_sizes must be at least 1, got {n_sizes}")
    if layout not in ("family", "family-holes", "uniform"):
        raise ConfigError(f"layout must be 'family', 'family-holes' or 'uniform', got {layout!r}")
    if not 0.0 < density <= 1.0:
        raise ConfigError(f"density must be within (0, 1], got {density}")
    regions = tuple(
        Region(name=name, display_name=display, zones=ZONES if zoned else ())
        for name, display, zoned in PUBLIC_REGIONS[:n_regions]
    )
    families = build_families(n_sizes)
    sizes = tuple(s for f in families for s in f.sizes)
    offers: dict[tuple[str, str], Offer] = {}
    newest = max(f.gen for f in families)
    for rank, region in enumerate(regions):
        # Region "size": 1.0 for the biggest, ~0.3 for the smallest of 60.
        weight = 1.0 - 0.7 * rank / max(1, len(PUBLIC_REGIONS) - 1)
        price_factor = 0.92 + 0.4 * uniform(seed, "region-price", region.name)
        for fam in families:
            if layout != "uniform":
                # Older generations are everywhere; each newer one reaches fewer regions.
                age = max(0, min(4, newest - fam.gen))
                gen_reach = (0.45, 0.7, 0.85, 0.95, 1.0)[age]
                arm_reach = 0.7 if "p" in fam.suffix else 1.0
                reach = min(0.97, fam.series.breadth * gen_reach * arm_reach * (0.4 + 0.9 * weight))
                if uniform(seed, "rollout", fam.name, region.name) >= reach:
                    continue
            # Real catalog (9 US regions): a family's largest size misses 0.6 % of its family's
            # regions, every other size 0.04 %, and sibling families miss the same regions
            # (Standard_E96bs_v5 and Standard_E96bds_v5: westcentralus and westus). Smaller
            # regions lack the biggest hosts more often, so the 60-region rate is higher.
            big_missing = uniform(seed, "big-hosts", fam.series.letter, fam.gen, region.name) < (
                0.005 + 0.08 * (1.0 - weight)
            )
            for i, size in enumerate(fam.sizes):
                largest = i == len(fam.sizes) - 1 and i > 0
                if layout == "family":
                    if (largest and big_missing) or uniform(
                        seed, "size-in-region", size.name, region.name
                    ) < 0.0005:
                        continue
                elif layout == "family-holes":
                    # Independent per-size holes: the largest sizes are missing a little more often.
                    drop = 0.03 + (0.1 if largest else 0.0)
                    if uniform(seed, "size-in-region", size.name, region.name) < drop:
                        continue
                elif uniform(seed, "uniform", size.name, region.name) >= density:
                    continue
                od = _round_price(
                    size.vcpus
                    * fam.series.usd_per_vcpu
                    * price_factor
                    * (1.0 + 0.04 * (fam.gen - 3))
                    * (1.12 if "d" in fam.suffix else 1.0)
                )
                if layout == "family":
                    # No spot offer is a property of the size (the catalog's *_Promo sizes).
                    has_spot = fam.series.spot and uniform(seed, "no-spot", size.name) >= 0.02
                else:
                    has_spot = fam.series.spot and uniform(seed, "no-spot", size.name, region.name) >= 0.02
                spot = None
                if has_spot:
                    discount = 0.1 + 0.3 * uniform(seed, "spot-discount", size.name, region.name)
                    spot = _round_price(od * discount)
                offers[(region.name, size.name)] = Offer(ondemand=od, spot=spot)
    return regions, sizes, offers


def _round_price(x: float) -> float:
    return float(f"{max(x, 0.0001):.4f}")
