"""The generated size catalogue: VM series, their families and sizes, and Azure's family names.

A generated world takes families in the order of a real-looking plan (older, widely deployed
generations first; later generations only for worlds asking for more sizes than the plan holds) and
gives each family the vCPU ladder of its series (:func:`build_families`). :func:`family_of` derives
a family name from a size name, for catalog worlds whose CSV has no family column.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Final

import attrs

from spotlake.testing.world.values import VmSize

__all__ = ["SERIES", "Family", "Series", "build_families", "family_of"]


@attrs.frozen(kw_only=True)
class Series:
    """A VM series (``D``, ``NC``...): memory and on-demand price per vCPU, its vCPU ladder, how
    widely it is deployed, and whether it sells spot."""

    letter: str
    mem_per_vcpu: float
    usd_per_vcpu: float
    ladder: tuple[int, ...]
    breadth: float  # share of regions a family of this series reaches (before generation effects)
    spot: bool = True


SERIES: Final[Mapping[str, Series]] = {
    s.letter: s
    for s in (
        Series(
            letter="D", mem_per_vcpu=4, usd_per_vcpu=0.048, ladder=(2, 4, 8, 16, 32, 48, 64, 96), breadth=1.0
        ),
        Series(
            letter="E",
            mem_per_vcpu=8,
            usd_per_vcpu=0.063,
            ladder=(2, 4, 8, 16, 20, 32, 48, 64, 96),
            breadth=0.95,
        ),
        Series(
            letter="F", mem_per_vcpu=2, usd_per_vcpu=0.0425, ladder=(2, 4, 8, 16, 32, 48, 64, 72), breadth=0.9
        ),
        Series(letter="A", mem_per_vcpu=2, usd_per_vcpu=0.022, ladder=(1, 2, 4, 8), breadth=1.0),
        Series(
            letter="B",
            mem_per_vcpu=4,
            usd_per_vcpu=0.0416,
            ladder=(1, 2, 4, 8, 12, 16, 20),
            breadth=1.0,
            spot=False,
        ),
        Series(letter="L", mem_per_vcpu=8, usd_per_vcpu=0.078, ladder=(8, 16, 32, 48, 64, 80), breadth=0.6),
        Series(letter="M", mem_per_vcpu=16, usd_per_vcpu=0.22, ladder=(8, 16, 32, 64, 128), breadth=0.45),
        Series(
            letter="DC", mem_per_vcpu=4, usd_per_vcpu=0.096, ladder=(2, 4, 8, 16, 32, 48, 64, 96), breadth=0.4
        ),
        Series(
            letter="EC",
            mem_per_vcpu=8,
            usd_per_vcpu=0.126,
            ladder=(2, 4, 8, 16, 20, 32, 48, 64, 96),
            breadth=0.4,
        ),
        Series(letter="NC", mem_per_vcpu=7, usd_per_vcpu=0.38, ladder=(4, 8, 16, 24, 48, 96), breadth=0.35),
        Series(letter="NV", mem_per_vcpu=7, usd_per_vcpu=0.2, ladder=(6, 12, 18, 36, 72), breadth=0.35),
        Series(letter="ND", mem_per_vcpu=11, usd_per_vcpu=0.9, ladder=(6, 12, 24, 40, 96), breadth=0.2),
        Series(letter="HB", mem_per_vcpu=4, usd_per_vcpu=0.03, ladder=(60, 120, 176), breadth=0.25),
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
class Family:
    """A family (``standardDSv3Family``): one series, generation and suffix, and its sizes."""

    name: str
    series: Series
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


def build_families(n_sizes: int) -> tuple[Family, ...]:
    """The first families of the plan, holding ``n_sizes`` sizes in all (the last one cut short)."""
    families: list[Family] = []
    total = 0
    for letter, gen, suffixes in _family_plan():
        series = SERIES[letter]
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
            families.append(Family(name=fam, series=series, gen=gen, suffix=suffix, sizes=sizes))
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
