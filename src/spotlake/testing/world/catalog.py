"""A world's regions, sizes and prices read from the SkyPilot catalog CSV (real data).

Columns used: InstanceType, vCPUs, MemoryGiB, Price, SpotPrice (empty = no spot), Region. Regions
get their real display names and zones; families are derived by :func:`family_of`.
"""

from __future__ import annotations

import csv
from pathlib import Path

from spotlake.errors import ConfigError
from spotlake.testing.regions import PUBLIC_REGIONS, ZONES
from spotlake.testing.world.families import family_of
from spotlake.testing.world.values import Offer, Region, VmSize

__all__ = ["read_catalog"]


def read_catalog(
    path: str | Path,
) -> tuple[tuple[Region, ...], tuple[VmSize, ...], dict[tuple[str, str], Offer]]:
    """The catalog's regions (in the order of the public region list), sizes (sorted by name) and
    offers; :class:`ConfigError` for an unreadable file, a malformed row or an unknown region."""
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
    return regions, tuple(sorted(sizes.values(), key=lambda s: s.name)), offers
