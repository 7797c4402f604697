"""The :class:`World`: the ground truth every emulated endpoint answers from.

It holds the regions, sizes, offers (true prices) and subscriptions, built by
:mod:`~spotlake.testing.world.rollout` (generated) or :mod:`~spotlake.testing.world.catalog` (the
SkyPilot catalog), and answers the questions the emulator and the tests ask, the SPS, quota and
eviction ones through the seeded models of :mod:`~spotlake.testing.world.capacity`.
"""

from __future__ import annotations

import functools
import hashlib
import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path

import attrs
import numpy as np
import numpy.typing as npt
import pandas as pd

from spotlake.errors import ConfigError
from spotlake.testing.regions import ZONES
from spotlake.testing.world import capacity
from spotlake.testing.world.catalog import read_catalog
from spotlake.testing.world.rollout import Layout, roll_out
from spotlake.testing.world.values import Offer, Region, VmSize

__all__ = ["World"]

# Cells of a vectorised SPS evaluation: regions, sizes, zones, cell keys, supported flags.
_Cells = tuple[list[str], list[str], list[str | None], "npt.NDArray[np.uint64]", "npt.NDArray[np.bool_]"]


@attrs.frozen(kw_only=True, eq=False)
class World:
    """Regions, sizes, which size is sold where at what price, and the capacity model behind SPS.

    Build with :meth:`generate` or :meth:`from_catalog`; ask :meth:`support_pairs`, :meth:`price`,
    :meth:`sps_score`, :meth:`quota_available`, :meth:`eviction_bucket`. ``score_overrides`` pins
    chosen SPS answers, keyed by (region, size, zone or None, desired count) (see
    :meth:`with_score_overrides` and :meth:`published_example`).
    """

    seed: int
    regions: tuple[Region, ...]
    sizes: tuple[VmSize, ...]
    offers: Mapping[tuple[str, str], Offer] = attrs.field(repr=False)
    subscriptions: tuple[str, ...]
    score_overrides: Mapping[tuple[str, str, str | None, int], str] = attrs.field(factory=dict, repr=False)
    source: str = "generated"

    # -- construction ------------------------------------------------------------------------

    @classmethod
    def generate(
        cls,
        seed: int = 0,
        *,
        n_regions: int = 60,
        n_sizes: int = 800,
        layout: Layout = "family",
        n_subscriptions: int = 8,
        density: float = 0.5,
    ) -> World:
        """A synthetic world: the ``n_regions`` biggest real regions and ``n_sizes`` realistic sizes.

        ``layout="family"`` rolls each family out to a subset of regions (big regions get most
        families, newer generations and special series fewer regions) and supports a size in (almost)
        every region of its family's rollout, with holes shaped like the real catalog's: a family's
        largest size is missing in some (mostly small) regions, the same regions for every family of
        its series and generation; a size without spot has no spot anywhere; other holes are rare.
        ``layout="family-holes"`` is the same rollout with independent per-size holes instead (each
        size misses ~3 % of its family's regions, the largest ~13 %, and ~2 % more lack spot): ~50x
        the real catalog's hole rate, a stress case for the planner. ``layout="uniform"`` supports
        each (region, size) independently with probability ``density`` (a planner's worst case).
        """
        regions, sizes, offers = roll_out(
            seed, n_regions=n_regions, n_sizes=n_sizes, layout=layout, density=density
        )
        return cls(
            seed=seed,
            regions=regions,
            sizes=sizes,
            offers=offers,
            subscriptions=_subscriptions(seed, n_subscriptions),
        )

    @classmethod
    def from_catalog(cls, path: str | Path, *, seed: int = 0, n_subscriptions: int = 8) -> World:
        """A world whose regions, sizes and prices come from the SkyPilot catalog CSV.

        Columns used: InstanceType, vCPUs, MemoryGiB, Price, SpotPrice (empty = no spot), Region.
        Regions get their real display names and zones; families are derived by
        :func:`~spotlake.testing.world.family_of`.
        The SPS, quota and eviction models are the same seeded functions as for generated worlds.
        """
        regions, sizes, offers = read_catalog(path)
        return cls(
            seed=seed,
            regions=regions,
            sizes=sizes,
            offers=offers,
            subscriptions=_subscriptions(seed, n_subscriptions),
            source=str(Path(path)),
        )

    @classmethod
    def published_example(cls, seed: int = 0) -> World:
        """A small world reproducing Microsoft's published SPS example exactly.

        Request: eastus + eastus2, Standard_D2_v2, desiredCount 1, availabilityZones true. Response:
        six zonal scores, all High with quota available except eastus2 zone 3, DataNotFoundOrStale.
        """
        base = cls.generate(seed, n_regions=2, n_sizes=60)
        d2 = "Standard_D2_v2"
        overrides: dict[tuple[str, str, str | None, int], str] = {
            (r, d2, z, 1): "High" for r in ("eastus", "eastus2") for z in ZONES
        }
        overrides[("eastus2", d2, "3", 1)] = "DataNotFoundOrStale"
        offers = dict(base.offers)
        for r in ("eastus", "eastus2"):
            offers.setdefault((r, d2), Offer(ondemand=0.114, spot=0.0228))
        return attrs.evolve(base, offers=offers).with_score_overrides(overrides)

    def with_score_overrides(self, overrides: Mapping[tuple[str, str, str | None, int], str]) -> World:
        """A copy whose :meth:`sps_score` answers ``overrides[(region, size, zone, count)]`` when present."""
        return attrs.evolve(self, score_overrides={**self.score_overrides, **overrides})

    # -- lookups -----------------------------------------------------------------------------

    @functools.cached_property
    def _region_by_name(self) -> Mapping[str, Region]:
        return {r.name: r for r in self.regions}

    @functools.cached_property
    def _size_by_name(self) -> Mapping[str, VmSize]:
        return {s.name: s for s in self.sizes}

    def region(self, name: str) -> Region:
        """The region called ``name``; :class:`ConfigError` if this world has no such region."""
        try:
            return self._region_by_name[name]
        except KeyError:
            raise ConfigError(f"the emulator world has no region {name!r}") from None

    def size(self, name: str) -> VmSize:
        """The size called ``name`` (exact case); :class:`ConfigError` if unknown."""
        try:
            return self._size_by_name[name]
        except KeyError:
            raise ConfigError(f"the emulator world has no VM size {name!r}") from None

    def has_region(self, name: str) -> bool:
        return name in self._region_by_name

    def has_size(self, name: str) -> bool:
        return name in self._size_by_name

    @functools.cached_property
    def _support(self) -> frozenset[tuple[str, str]]:
        return frozenset(k for k, o in self.offers.items() if o.spot is not None)

    def support_pairs(self) -> frozenset[tuple[str, str]]:
        """Every (region, size) with a Linux spot price: the planner's input."""
        return self._support

    def offered_pairs(self) -> frozenset[tuple[str, str]]:
        """Every (region, size) with a Linux on-demand price (a superset of :meth:`support_pairs`)."""
        return frozenset(self.offers)

    def price(self, region: str, size: str) -> tuple[float, float | None]:
        """The true Linux (on-demand, spot) price after every collector filter; spot ``None`` if none.

        :class:`ConfigError` when the size is not sold in the region.
        """
        try:
            offer = self.offers[(region, size)]
        except KeyError:
            raise ConfigError(f"{size} is not sold in {region} in this world") from None
        return offer.ondemand, offer.spot

    # -- SPS model ---------------------------------------------------------------------------

    def sps_score(self, region: str, size: str, zone: str | None, desired_count: int, at: datetime) -> str:
        """The SPS score of (region, size, zone or None for regional, count) at time ``at``."""
        reg = self.region(region)
        self.size(size)
        if zone is not None and zone not in reg.zones:
            raise ConfigError(f"region {region} has no zone {zone!r} (zones: {list(reg.zones)})")
        if desired_count < 1:
            raise ConfigError(f"desired_count must be >= 1, got {desired_count}")
        pinned = self.score_overrides.get((region, size, zone, desired_count))
        if pinned is not None:
            return pinned
        if (region, size) not in self.support_pairs():
            return capacity.unsupported_score(capacity.cell_key(self.seed, region, size, None))
        key = capacity.cell_key(self.seed, region, size, zone)
        return capacity.score(key, capacity.sps_bucket(at), desired_count)

    def sps_scores_frame(
        self,
        at: datetime,
        desired_count: int,
        *,
        zonal: bool = True,
        pairs: Iterable[tuple[str, str]] | None = None,
    ) -> pd.DataFrame:
        """Vectorised :meth:`sps_score` for many cells at once (the scoring helpers' oracle).

        One row per (region, size[, zone]) of ``pairs`` (default: the support set); zonal rows for
        regions with zones, one regional row (zone ``<NA>``) otherwise or when ``zonal`` is false.
        Columns: region, size, zone, desired_count, score, quota_available.
        """
        if desired_count < 1:
            raise ConfigError(f"desired_count must be >= 1, got {desired_count}")
        regions, sizes, zones, keys, supported = self._cells(
            zonal, None if pairs is None else tuple(sorted(set(pairs)))
        )
        scores = capacity.score_vector(keys, capacity.sps_bucket(at), desired_count)
        scores = np.where(supported, scores, capacity.unsupported_scores(keys))
        frame = pd.DataFrame(
            {
                "region": pd.array(regions, dtype="string"),
                "size": pd.array(sizes, dtype="string"),
                "zone": pd.array(zones, dtype="string"),
                "desired_count": np.full(len(keys), desired_count, dtype=np.int64),
                "score": pd.array(scores, dtype="string"),
            }
        )
        cores = np.array([capacity.quota_cores(self.seed, r) for r in regions], dtype=np.int64)
        vcpus = np.array([self._size_by_name[s].vcpus for s in sizes], dtype=np.int64)
        frame["quota_available"] = pd.array(vcpus * desired_count <= cores, dtype="boolean")
        if self.score_overrides:
            for i, (r, s, z) in enumerate(zip(regions, sizes, zones, strict=True)):
                pinned = self.score_overrides.get((r, s, z, desired_count))
                if pinned is not None:
                    frame.loc[i, "score"] = pinned
        return frame

    def _cells(self, zonal: bool, pairs: tuple[tuple[str, str], ...] | None) -> _Cells:
        if pairs is None:
            return self._support_cells_zonal if zonal else self._support_cells_regional
        return self._build_cells(zonal, pairs)

    @functools.cached_property
    def _support_cells_zonal(self) -> _Cells:
        return self._build_cells(True, tuple(sorted(self.support_pairs())))

    @functools.cached_property
    def _support_cells_regional(self) -> _Cells:
        return self._build_cells(False, tuple(sorted(self.support_pairs())))

    def _build_cells(self, zonal: bool, pairs: tuple[tuple[str, str], ...]) -> _Cells:
        support = self.support_pairs()
        regions: list[str] = []
        sizes: list[str] = []
        zones: list[str | None] = []
        keys: list[int] = []
        supported: list[bool] = []
        for r, s in pairs:
            reg = self.region(r)
            self.size(s)
            ok = (r, s) in support
            for z in reg.zones if zonal and reg.zones else (None,):
                regions.append(r)
                sizes.append(s)
                zones.append(z)
                # Unsupported cells use the regional key, as the scalar path does.
                keys.append(capacity.cell_key(self.seed, r, s, z if ok else None))
                supported.append(ok)
        return regions, sizes, zones, np.array(keys, dtype=np.uint64), np.array(supported, dtype=np.bool_)

    def quota_available(self, region: str, size: str, desired_count: int, at: datetime | None = None) -> bool:
        """``isQuotaAvailable``: does ``desired_count`` x vCPUs fit the region's spot core quota?

        Quota does not change over time in this model; ``at`` is accepted for symmetry.
        """
        self.region(region)
        return self.size(size).vcpus * desired_count <= capacity.quota_cores(self.seed, region)

    # -- eviction ----------------------------------------------------------------------------

    def eviction_bucket(self, region: str, size: str) -> str | None:
        """Resource Graph's eviction-rate bucket for a supported pair; ``None`` when it has no row.

        Correlated with the pair's capacity (plentiful capacity is evicted less); ~4% of supported
        pairs have no row, as in reality.
        """
        if (region, size) not in self.support_pairs():
            return None
        return capacity.eviction_bucket(self.seed, region, size)

    def eviction_rows(self) -> tuple[tuple[str, str, str], ...]:
        """Every (region, size, bucket) Resource Graph reports, sorted."""
        return self._eviction_rows

    @functools.cached_property
    def _eviction_rows(self) -> tuple[tuple[str, str, str], ...]:
        rows = []
        for region, size in sorted(self.support_pairs()):
            bucket = self.eviction_bucket(region, size)
            if bucket is not None:
                rows.append((region, size, bucket))
        return tuple(rows)


def _subscriptions(seed: int, n: int) -> tuple[str, ...]:
    if n < 1:
        raise ConfigError(f"a world needs at least one subscription, got {n}")
    out = []
    for i in range(n):
        raw = hashlib.blake2b(f"{seed}\x1fsubscription\x1f{i}".encode(), digest_size=16).digest()
        out.append(str(uuid.UUID(bytes=raw, version=4)))
    return tuple(out)
