"""Synthetic offers: many realistic-looking pools from a seed, for tests and benchmarks.

``synthetic_offers(10_000, seed=1, now=...)`` gives the same offers for the same arguments on
every machine and process: AWS-like instance types in families and sizes, several regions and
zones, an on-demand offer per type and region and a spot offer per type and zone at a discount,
with placement scores (1..10) and eviction-rate buckets. Real prices live in the shared catalogs
(:class:`spotlake.compute.offers.CatalogOffers`); these are for volume and for properties.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np

from spotlake.clock import ensure_utc
from spotlake.compute.values import CapacityType, Cloud, Offer, PlacementScore, Pool
from spotlake.model import EVICTION_BUCKETS

__all__ = ["MAX_OFFERS", "synthetic_offers"]

#: Interruption-frequency buckets as the collected data labels them, and their scores.
_BUCKETS: tuple[tuple[str, float], ...] = tuple(EVICTION_BUCKETS.items())

_FAMILIES = (
    "m5", "m5a", "m6i", "m6a", "m7i", "m7g", "c5", "c5a", "c6i", "c6a", "c7i", "c7g",
    "r5", "r5a", "r6i", "r6a", "r7i", "r7g", "t3", "t3a", "i4i", "x2idn", "g5", "p4d",
)  # fmt: skip
_SIZES = (("large", 2), ("xlarge", 4), ("2xlarge", 8), ("4xlarge", 16), ("8xlarge", 32), ("16xlarge", 64))
_REGIONS = (
    "us-east-1", "us-east-2", "us-west-1", "us-west-2", "ca-central-1", "eu-west-1", "eu-west-2",
    "eu-west-3", "eu-central-1", "eu-north-1", "ap-south-1", "ap-northeast-1", "ap-northeast-2",
    "ap-southeast-1", "ap-southeast-2", "sa-east-1", "me-south-1",
)  # fmt: skip
_ZONES = "abcd"
#: The most offers :func:`synthetic_offers` can make, each (pool, capacity type) once.
MAX_OFFERS = len(_FAMILIES) * len(_SIZES) * len(_REGIONS) * (1 + len(_ZONES))


def synthetic_offers(count: int, *, seed: int, now: datetime, cloud: Cloud = Cloud.AWS) -> list[Offer]:
    """``count`` offers, each (pool, capacity type) once, reproducible from ``seed``: for each
    (region, type), in an order drawn from ``seed``, its on-demand offer then a spot offer per zone."""
    if not 0 <= count <= MAX_OFFERS:
        raise ValueError(f"synthetic_offers makes 0 to {MAX_OFFERS} offers, not {count}")
    rng = np.random.default_rng(seed)
    now = ensure_utc(now)
    combos = [(r, f, s, v) for r in _REGIONS for f in _FAMILIES for s, v in _SIZES]
    offers: list[Offer] = []
    for k in rng.permutation(len(combos)):
        if len(offers) >= count:
            break
        region, family, size, vcpus = combos[int(k)]
        instance_type = f"{family}.{size}"
        memory = float(vcpus * (8 if family.startswith(("r", "x")) else 2 if family.startswith("c") else 4))
        gpus = (vcpus // 8) if family in ("g5", "p4d") else 0
        on_demand = round(vcpus * float(rng.uniform(0.03, 0.06)) * (8 if gpus else 1), 4)
        observed = now - timedelta(minutes=int(rng.integers(0, 30)))
        offers.append(
            Offer(
                pool=Pool(cloud=cloud, region=region, zone=None, instance_type=instance_type),
                capacity_type=CapacityType.ON_DEMAND,
                price=on_demand,
                vcpus=vcpus,
                memory_gib=memory,
                gpus=gpus,
                family=family,
                observed_at=observed,
                source="synthetic",
            )
        )
        for zone in _ZONES:
            if len(offers) >= count:
                break
            bucket, eviction = _BUCKETS[int(rng.integers(len(_BUCKETS)))]
            offers.append(
                Offer(
                    pool=Pool(
                        cloud=cloud, region=region, zone=f"{region}{zone}", instance_type=instance_type
                    ),
                    capacity_type=CapacityType.SPOT,
                    price=round(on_demand * float(rng.uniform(0.2, 0.7)), 4),
                    vcpus=vcpus,
                    memory_gib=memory,
                    gpus=gpus,
                    family=family,
                    score=PlacementScore(value=int(rng.integers(1, 11)), scale=10, observed_at=observed),
                    eviction_bucket=bucket,
                    eviction_score=eviction,
                    observed_at=observed,
                    source="synthetic",
                )
            )
    return offers
