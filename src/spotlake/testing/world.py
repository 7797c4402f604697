"""The emulator's world: a deterministic model of Azure regions, VM sizes, prices and spot capacity.

A :class:`World` is the ground truth every emulated endpoint answers from, and the oracle tests
check collectors and scoring against. It is built either from a seed (:meth:`World.generate`) or
from the shared SkyPilot catalog CSV (:meth:`World.from_catalog`).

Everything random is derived by hashing (``blake2b`` over the seed and a key, then ``splitmix64``
mixing), never Python's ``hash()`` (salted per process) nor a shared RNG, so a value depends only on
(seed, key): the same seed gives the same world in any process, in any order of questions.

The SPS model (:meth:`World.sps_score`) is a pure function of (seed, region, size, zone, desired
count, 10-minute time bucket). Each (region, size, zone) cell has a base capacity level; time is cut
into segments of 4-12 hours (a per-cell period and phase) and the level is redrawn around its base at
each segment boundary, so between consecutive 10-minute buckets only ~2% of cells move, and most of
those keep their score. Larger desired counts subtract a growing penalty (plus a little per-count
noise), so they score lower more often without being strictly monotone.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import math
import re
import uuid
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Final, Literal

import attrs
import numpy as np
import numpy.typing as npt
import pandas as pd

from spotlake.clock import ensure_utc
from spotlake.errors import ConfigError
from spotlake.testing.regions import PUBLIC_REGIONS, ZONES

__all__ = [
    "EVICTION_BUCKET_NAMES",
    "SPS_BUCKET_SECONDS",
    "Offer",
    "Region",
    "VmSize",
    "World",
    "bucket_start",
    "family_of",
]

Layout = Literal["family", "family-holes", "uniform"]
# Cells of a vectorised SPS evaluation: regions, sizes, zones, cell keys, supported flags.
_Cells = tuple[list[str], list[str], list[str | None], "npt.NDArray[np.uint64]", "npt.NDArray[np.bool_]"]

#: SPS scores are constant within a 10-minute bucket (the collection cadence).
SPS_BUCKET_SECONDS: Final = 600
#: The eviction buckets Resource Graph reports, in percent.
EVICTION_BUCKET_NAMES: Final = ("0-5", "5-10", "10-15", "15-20", "20+")
#: The date the generated prices take effect (older versions start earlier).
PRICE_EPOCH: Final = datetime(2025, 10, 1, tzinfo=UTC)

_MASK64: Final = (1 << 64) - 1
_TWO64: Final = float(1 << 64)
# Constants that separate the independent streams derived from one cell key.
_S_PERIOD, _S_PHASE, _S_BASE, _S_LEVEL, _S_COUNT, _S_STALE = 1, 2, 3, 4, 5, 6
_GOLDEN: Final = 0x9E3779B97F4A7C15
_SEG_MULT: Final = 0xD1B54A32D192ED03
_COUNT_MULT: Final = 0xAEF17502108EF2D9


# --- deterministic randomness ----------------------------------------------------------------


def _h64(seed: int, *parts: object) -> int:
    """A 64-bit hash of (seed, parts): stable across processes and platforms."""
    key = "\x1f".join([str(seed), *(str(p) for p in parts)]).encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little")


def _u(seed: int, *parts: object) -> float:
    """A uniform float in [0, 1) determined by (seed, parts)."""
    return _h64(seed, *parts) / _TWO64


def _mix(x: int) -> int:
    """splitmix64 finaliser on a Python int (bit-identical to :func:`_mix_np`)."""
    z = (x + _GOLDEN) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def _mix_np(x: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """splitmix64 finaliser over an array; uint64 arithmetic wraps exactly like ``& _MASK64``."""
    with np.errstate(over="ignore"):
        z = x + np.uint64(_GOLDEN)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def _unit_np(x: npt.NDArray[np.uint64]) -> npt.NDArray[np.float64]:
    # Top 53 bits -> exactly representable doubles, identical to the scalar path's rounding below.
    return (x >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def _unit53(x: int) -> float:
    return (x >> 11) / float(1 << 53)


# --- value objects ---------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class Region:
    """An Azure region: ARM name (``eastus``), display name (``East US``) and its zones (maybe none)."""

    name: str
    display_name: str
    zones: tuple[str, ...] = ()


@attrs.frozen(kw_only=True)
class VmSize:
    """A VM size (``Standard_D2s_v3``) with its family (``standardDSv3Family``), vCPUs and memory."""

    name: str
    family: str
    vcpus: int
    memory_gib: float


@attrs.frozen(kw_only=True)
class Offer:
    """The true Linux prices of one (region, size): on-demand, and spot when spot is sold there."""

    ondemand: float
    spot: float | None


# --- size catalogue --------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class _Series:
    letter: str
    mem_per_vcpu: float
    usd_per_vcpu: float
    ladder: tuple[int, ...]
    breadth: float  # share of regions a family of this series reaches (before generation effects)
    spot: bool = True


_SERIES: Final[Mapping[str, _Series]] = {
    s.letter: s
    for s in (
        _Series(
            letter="D", mem_per_vcpu=4, usd_per_vcpu=0.048, ladder=(2, 4, 8, 16, 32, 48, 64, 96), breadth=1.0
        ),
        _Series(
            letter="E",
            mem_per_vcpu=8,
            usd_per_vcpu=0.063,
            ladder=(2, 4, 8, 16, 20, 32, 48, 64, 96),
            breadth=0.95,
        ),
        _Series(
            letter="F", mem_per_vcpu=2, usd_per_vcpu=0.0425, ladder=(2, 4, 8, 16, 32, 48, 64, 72), breadth=0.9
        ),
        _Series(letter="A", mem_per_vcpu=2, usd_per_vcpu=0.022, ladder=(1, 2, 4, 8), breadth=1.0),
        _Series(
            letter="B",
            mem_per_vcpu=4,
            usd_per_vcpu=0.0416,
            ladder=(1, 2, 4, 8, 12, 16, 20),
            breadth=1.0,
            spot=False,
        ),
        _Series(letter="L", mem_per_vcpu=8, usd_per_vcpu=0.078, ladder=(8, 16, 32, 48, 64, 80), breadth=0.6),
        _Series(letter="M", mem_per_vcpu=16, usd_per_vcpu=0.22, ladder=(8, 16, 32, 64, 128), breadth=0.45),
        _Series(
            letter="DC", mem_per_vcpu=4, usd_per_vcpu=0.096, ladder=(2, 4, 8, 16, 32, 48, 64, 96), breadth=0.4
        ),
        _Series(
            letter="EC",
            mem_per_vcpu=8,
            usd_per_vcpu=0.126,
            ladder=(2, 4, 8, 16, 20, 32, 48, 64, 96),
            breadth=0.4,
        ),
        _Series(letter="NC", mem_per_vcpu=7, usd_per_vcpu=0.38, ladder=(4, 8, 16, 24, 48, 96), breadth=0.35),
        _Series(letter="NV", mem_per_vcpu=7, usd_per_vcpu=0.2, ladder=(6, 12, 18, 36, 72), breadth=0.35),
        _Series(letter="ND", mem_per_vcpu=11, usd_per_vcpu=0.9, ladder=(6, 12, 24, 40, 96), breadth=0.2),
        _Series(letter="HB", mem_per_vcpu=4, usd_per_vcpu=0.03, ladder=(60, 120, 176), breadth=0.25),
    )
}

_GEN5_SUFFIXES: Final = ("", "s", "d", "ds", "as", "ads", "ps", "pds", "pls", "plds", "ls", "lds")
_GEN6_SUFFIXES: Final = ("s", "ds", "as", "ads", "als", "alds", "ps", "pds", "pls", "plds", "ls", "lds")

#: (series, generation, suffixes) in the order a world takes them: older, widely deployed first.
_FAMILY_PLAN: Final[tuple[tuple[str, int, tuple[str, ...]], ...]] = (
    ("A", 2, ("", "m")),
    ("D", 2, ("", "s")),
    ("D", 3, ("", "s")),
    ("E", 3, ("", "s")),
    ("F", 2, ("s",)),
    ("B", 1, ("s", "ms")),
    ("D", 4, ("", "s", "d", "ds")),
    ("E", 4, ("", "s", "d", "ds")),
    ("D", 5, _GEN5_SUFFIXES),
    ("E", 5, ("", "s", "d", "ds", "as", "ads", "ps", "pds", "bs", "bds")),
    ("L", 2, ("s", "as")),
    ("L", 3, ("s", "as")),
    ("M", 2, ("s", "ms", "ls")),
    ("NC", 3, ("s", "as")),
    ("NV", 4, ("as",)),
    ("DC", 5, ("as", "ads")),
    ("EC", 5, ("as", "ads")),
    ("F", 6, ("s", "as", "als", "ams")),
    ("D", 6, _GEN6_SUFFIXES),
    ("E", 6, ("s", "ds", "as", "ads", "ps", "pds")),
    ("ND", 4, ("as",)),
    ("HB", 3, ("rs",)),
    ("NC", 4, ("ads",)),
    ("L", 4, ("s", "as")),
    ("B", 2, ("s", "as", "ls", "als", "ps", "pls")),
)


def _family_name(series: str, suffix: str, gen: int) -> str:
    # Azure spells families "standard" + series + suffix letters upper-cased + "v<gen>Family",
    # e.g. Ds_v3 -> standardDSv3Family, Dads_v5 -> standardDADSv5Family; v1 omits the version.
    ver = "" if gen == 1 else f"v{gen}"
    return f"standard{series}{suffix.upper()}{ver}Family"


def _size_name(series: str, vcpus: int, suffix: str, gen: int) -> str:
    ver = "" if gen == 1 else f"_v{gen}"
    return f"Standard_{series}{vcpus}{suffix}{ver}"


@attrs.frozen(kw_only=True)
class _Family:
    name: str
    series: _Series
    gen: int
    suffix: str
    sizes: tuple[VmSize, ...]


def _family_plan() -> Iterator[tuple[str, int, tuple[str, ...]]]:
    """The real-looking plan, then (only for worlds asking for more sizes) later generations."""
    yield from _FAMILY_PLAN
    gen = 7
    while True:
        yield ("D", gen, _GEN6_SUFFIXES)
        yield ("E", gen, _GEN6_SUFFIXES)
        yield ("F", gen, ("s", "as", "als", "ams"))
        gen += 1


def _build_families(n_sizes: int) -> tuple[_Family, ...]:
    families: list[_Family] = []
    total = 0
    for letter, gen, suffixes in _family_plan():
        series = _SERIES[letter]
        for suffix in suffixes:
            if total >= n_sizes:
                return tuple(families)
            fam = _family_name(letter, suffix, gen)
            mem = series.mem_per_vcpu * (0.5 if "l" in suffix else 1.0) * (2.0 if "m" in suffix else 1.0)
            ladder = series.ladder[: n_sizes - total]
            sizes = tuple(
                VmSize(
                    name=_size_name(letter, v, suffix, gen), family=fam, vcpus=v, memory_gib=float(v * mem)
                )
                for v in ladder
            )
            families.append(_Family(name=fam, series=series, gen=gen, suffix=suffix, sizes=sizes))
            total += len(sizes)
    raise AssertionError("unreachable: the family plan is infinite")  # pragma: no cover


_FAMILY_RE: Final = re.compile(
    r"^(?P<tier>Standard|Basic)_(?P<series>[A-Z]+)(?P<num>[0-9]+)(?:-[0-9]+)?(?P<suffix>[a-z]*)"
    r"(?P<rest>(?:_[A-Za-z0-9]+)*?)(?:_v(?P<gen>[0-9]+))?(?:_Promo)?$"
)


def family_of(size: str) -> str:
    """Best-effort Azure family name of a size name, as the SKUs API would report it.

    ``Standard_D2s_v3`` -> ``standardDSv3Family``, ``Standard_NC24ads_A100_v4`` ->
    ``standardNCADSA100v4Family``, ``Basic_A1`` -> ``basicAFamily``. Used for catalog worlds, whose CSV
    has no family column; generated worlds know their families exactly.
    """
    m = _FAMILY_RE.match(size)
    if m is None:
        return f"standard{re.sub(r'[^A-Za-z]', '', size.removeprefix('Standard_'))}Family"
    tier = m["tier"].lower()
    rest = m["rest"].replace("_", "").upper()
    ver = f"v{m['gen']}" if m["gen"] else ""
    return f"{tier}{m['series']}{m['suffix'].upper()}{rest}{ver}Family"


# --- the world -------------------------------------------------------------------------------


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
        families = _build_families(n_sizes)
        sizes = tuple(s for f in families for s in f.sizes)
        offers: dict[tuple[str, str], Offer] = {}
        newest = max(f.gen for f in families)
        for rank, region in enumerate(regions):
            # Region "size": 1.0 for the biggest, ~0.3 for the smallest of 60.
            weight = 1.0 - 0.7 * rank / max(1, len(PUBLIC_REGIONS) - 1)
            price_factor = 0.92 + 0.4 * _u(seed, "region-price", region.name)
            for fam in families:
                if layout != "uniform":
                    # Older generations are everywhere; each newer one reaches fewer regions.
                    age = max(0, min(4, newest - fam.gen))
                    gen_reach = (0.45, 0.7, 0.85, 0.95, 1.0)[age]
                    arm_reach = 0.7 if "p" in fam.suffix else 1.0
                    reach = min(0.97, fam.series.breadth * gen_reach * arm_reach * (0.4 + 0.9 * weight))
                    if _u(seed, "rollout", fam.name, region.name) >= reach:
                        continue
                # Real catalog (9 US regions): a family's largest size misses 0.6 % of its family's
                # regions, every other size 0.04 %, and sibling families miss the same regions
                # (Standard_E96bs_v5 and Standard_E96bds_v5: westcentralus and westus). Smaller
                # regions lack the biggest hosts more often, so the 60-region rate is higher.
                big_missing = _u(seed, "big-hosts", fam.series.letter, fam.gen, region.name) < (
                    0.005 + 0.08 * (1.0 - weight)
                )
                for i, size in enumerate(fam.sizes):
                    largest = i == len(fam.sizes) - 1 and i > 0
                    if layout == "family":
                        if (largest and big_missing) or _u(
                            seed, "size-in-region", size.name, region.name
                        ) < 0.0005:
                            continue
                    elif layout == "family-holes":
                        # Independent per-size holes: the largest sizes are missing a little more often.
                        drop = 0.03 + (0.1 if largest else 0.0)
                        if _u(seed, "size-in-region", size.name, region.name) < drop:
                            continue
                    elif _u(seed, "uniform", size.name, region.name) >= density:
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
                        has_spot = fam.series.spot and _u(seed, "no-spot", size.name) >= 0.02
                    else:
                        has_spot = fam.series.spot and _u(seed, "no-spot", size.name, region.name) >= 0.02
                    spot = None
                    if has_spot:
                        discount = 0.1 + 0.3 * _u(seed, "spot-discount", size.name, region.name)
                        spot = _round_price(od * discount)
                    offers[(region.name, size.name)] = Offer(ondemand=od, spot=spot)
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
        Regions get their real display names and zones; families are derived by :func:`family_of`.
        The SPS, quota and eviction models are the same seeded functions as for generated worlds.
        """
        p = Path(path)
        try:
            with p.open(newline="", encoding="utf-8") as fh:
                rows = list(csv.DictReader(fh))
        except OSError as exc:
            raise ConfigError(f"cannot read the catalog {p}: {exc}") from exc
        known = {name: (display, zoned) for name, display, zoned in PUBLIC_REGIONS}
        sizes: dict[str, VmSize] = {}
        offers: dict[tuple[str, str], Offer] = {}
        region_names: set[str] = set()
        for lineno, row in enumerate(rows, start=2):
            try:
                name, region = row["InstanceType"].strip(), row["Region"].strip()
                vcpus = int(float(row["vCPUs"]))
                memory = float(row["MemoryGiB"])
                price_text, spot_text = row["Price"].strip(), row["SpotPrice"].strip()
                od = float(price_text) if price_text else None
                spot = float(spot_text) if spot_text else None
            except (KeyError, ValueError, AttributeError) as exc:
                raise ConfigError(f"catalog {p} line {lineno} is not a catalog row: {exc!r}") from exc
            if region not in known:
                raise ConfigError(f"catalog {p} line {lineno}: unknown Azure region {region!r}")
            sizes.setdefault(name, VmSize(name=name, family=family_of(name), vcpus=vcpus, memory_gib=memory))
            if od is None:
                # The catalog lists a few sizes with no price at all in a region: not sold there.
                continue
            offers.setdefault((region, name), Offer(ondemand=od, spot=spot))
            region_names.add(region)
        if not offers:
            raise ConfigError(f"catalog {p} has no rows")
        order = {name: i for i, (name, _, _) in enumerate(PUBLIC_REGIONS)}
        regions = tuple(
            Region(name=r, display_name=known[r][0], zones=ZONES if known[r][1] else ())
            for r in sorted(region_names, key=order.__getitem__)
        )
        return cls(
            seed=seed,
            regions=regions,
            sizes=tuple(sorted(sizes.values(), key=lambda s: s.name)),
            offers=offers,
            subscriptions=_subscriptions(seed, n_subscriptions),
            source=str(p),
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

    def _cell_key(self, region: str, size: str, zone: str | None) -> int:
        return _h64(self.seed, "cell", region, size, zone or "")

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
            key = self._cell_key(region, size, None)
            return (
                "RestrictedSkuNotAvailable" if _unit53(_mix(key ^ _S_STALE)) < 0.8 else "DataNotFoundOrStale"
            )
        key = self._cell_key(region, size, zone)
        bucket = _bucket(at)
        return _score_scalar(key, bucket, desired_count)

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
        bucket = _bucket(at)
        scores = _score_vector(keys, bucket, desired_count)
        unsupported = np.where(
            _unit_np(_mix_np(keys ^ np.uint64(_S_STALE))) < 0.8,
            "RestrictedSkuNotAvailable",
            "DataNotFoundOrStale",
        )
        scores = np.where(supported, scores, unsupported)
        frame = pd.DataFrame(
            {
                "region": pd.array(regions, dtype="string"),
                "size": pd.array(sizes, dtype="string"),
                "zone": pd.array(zones, dtype="string"),
                "desired_count": np.full(len(keys), desired_count, dtype=np.int64),
                "score": pd.array(scores, dtype="string"),
            }
        )
        cores = np.array([self._quota_cores(r) for r in regions], dtype=np.int64)
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
                keys.append(self._cell_key(r, s, z if ok else None))
                supported.append(ok)
        return regions, sizes, zones, np.array(keys, dtype=np.uint64), np.array(supported, dtype=np.bool_)

    def _quota_cores(self, region: str) -> int:
        # Spot vCPU quota of one subscription in a region (Azure's "lowPriorityCores"): a few
        # realistic levels, fixed per (seed, region).
        levels = (100, 200, 350, 500, 1000)
        return levels[int(_u(self.seed, "quota", region) * len(levels))]

    def quota_available(self, region: str, size: str, desired_count: int, at: datetime | None = None) -> bool:
        """``isQuotaAvailable``: does ``desired_count`` x vCPUs fit the region's spot core quota?

        Quota does not change over time in this model; ``at`` is accepted for symmetry.
        """
        self.region(region)
        return self.size(size).vcpus * desired_count <= self._quota_cores(region)

    # -- eviction ----------------------------------------------------------------------------

    def eviction_bucket(self, region: str, size: str) -> str | None:
        """Resource Graph's eviction-rate bucket for a supported pair; ``None`` when it has no row.

        Correlated with the pair's capacity (plentiful capacity is evicted less); ~4% of supported
        pairs have no row, as in reality.
        """
        if (region, size) not in self.support_pairs():
            return None
        if _u(self.seed, "eviction-missing", region, size) < 0.04:
            return None
        base = _unit53(_mix(self._cell_key(region, size, None) ^ _S_BASE))
        # Skewed towards low rates (most spot capacity is rarely evicted), heavier for scarce pairs.
        x = 5.0 * (0.5 * (1.0 - base) + 0.5 * _u(self.seed, "eviction", region, size)) ** 1.6
        return EVICTION_BUCKET_NAMES[min(len(EVICTION_BUCKET_NAMES) - 1, int(x))]

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


# --- helpers ---------------------------------------------------------------------------------


def _round_price(x: float) -> float:
    return float(f"{max(x, 0.0001):.4f}")


def _subscriptions(seed: int, n: int) -> tuple[str, ...]:
    if n < 1:
        raise ConfigError(f"a world needs at least one subscription, got {n}")
    out = []
    for i in range(n):
        raw = hashlib.blake2b(f"{seed}\x1fsubscription\x1f{i}".encode(), digest_size=16).digest()
        out.append(str(uuid.UUID(bytes=raw, version=4)))
    return tuple(out)


def _bucket(at: datetime) -> int:
    return math.floor(ensure_utc(at).timestamp()) // SPS_BUCKET_SECONDS


def bucket_start(at: datetime) -> datetime:
    """Start of the 10-minute SPS bucket containing ``at``."""
    return datetime.fromtimestamp(_bucket(at) * SPS_BUCKET_SECONDS, tz=UTC)


# Score thresholds on the effective capacity level (tuned so a count-1 run sees roughly
# 45% High, 25% Medium, 30% Low among supported cells).
_HIGH, _MEDIUM = 0.5, 0.32
_PERIOD_MIN, _PERIOD_SPAN = 12, 37  # segments last 12..48 buckets (2-8 hours)


def _penalty(count: int) -> float:
    return 0.085 * math.log(count)


def _score_scalar(key: int, bucket: int, count: int) -> str:
    period = _PERIOD_MIN + _mix(key ^ _S_PERIOD) % _PERIOD_SPAN
    phase = _mix(key ^ _S_PHASE) % period
    seg = (bucket + phase) // period
    seg_key = key ^ ((seg * _SEG_MULT) & _MASK64)
    if _unit53(_mix(seg_key ^ _S_STALE)) < 0.01:
        return "DataNotFoundOrStale"
    base = _unit53(_mix(key ^ _S_BASE))
    level = 0.5 * base + 0.5 * _unit53(_mix(seg_key ^ _S_LEVEL))
    noise = (_unit53(_mix(seg_key ^ ((count * _COUNT_MULT) & _MASK64) ^ _S_COUNT)) - 0.5) * 0.12
    eff = level + noise - _penalty(count)
    return "High" if eff >= _HIGH else "Medium" if eff >= _MEDIUM else "Low"


def _score_vector(keys: npt.NDArray[np.uint64], bucket: int, count: int) -> npt.NDArray[np.str_]:
    u64 = np.uint64
    period = u64(_PERIOD_MIN) + _mix_np(keys ^ u64(_S_PERIOD)) % u64(_PERIOD_SPAN)
    phase = _mix_np(keys ^ u64(_S_PHASE)) % period
    seg = (u64(bucket) + phase) // period
    with np.errstate(over="ignore"):
        seg_key = keys ^ (seg * u64(_SEG_MULT))
    stale = _unit_np(_mix_np(seg_key ^ u64(_S_STALE))) < 0.01
    base = _unit_np(_mix_np(keys ^ u64(_S_BASE)))
    level = 0.5 * base + 0.5 * _unit_np(_mix_np(seg_key ^ u64(_S_LEVEL)))
    count_key = u64((count * _COUNT_MULT) & _MASK64)
    noise = (_unit_np(_mix_np(seg_key ^ count_key ^ u64(_S_COUNT))) - 0.5) * 0.12
    eff = level + noise - _penalty(count)
    scores = np.where(eff >= _HIGH, "High", np.where(eff >= _MEDIUM, "Medium", "Low"))
    return np.where(stale, "DataNotFoundOrStale", scores)
