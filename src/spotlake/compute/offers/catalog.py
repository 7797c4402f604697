"""Offers from a SkyPilot-format catalog CSV: real on-demand and per-zone spot prices.

The public SkyPilot catalogs (``../shared/data/aws_vms_catalog_us.csv``, ``aws_vms_catalog.csv``,
``azure_vms_catalog.csv``) list one row per instance type and zone (or region) with the columns
``InstanceType, AcceleratorName, AcceleratorCount, vCPUs, MemoryGiB, GpuInfo, Price, SpotPrice,
Region`` and, for AWS, ``AvailabilityZone``. :class:`CatalogOffers` turns them into offers:

* one **on-demand** offer per (instance type, region), zone ``None``: the on-demand price is a
  regional price, repeated on every zone's row;
* one **spot** offer per (instance type, region, zone) whose ``SpotPrice`` is not empty (zone
  ``None`` for a catalog without ``AvailabilityZone``);
* ``family`` is the part of the type before the first ``.`` (``m5`` of ``m5.large``; ``None`` for
  a name without one, e.g. Azure sizes), ``gpus`` is ``AcceleratorCount`` (empty: 0).

Zones are kept as the catalog writes them: names (``us-east-1a``, the older
``aws_vms_catalog_us.csv``; mapped differently in every account) or IDs (``use1-az1``,
``aws_vms_catalog.csv``; the same in every account); :func:`zone_kind` tells them apart.
Repeated rows (``p4de.24xlarge`` has two per zone in ``aws_vms_catalog.csv``) give one offer (the
first row with the price). Rows without an on-demand price give no on-demand offer, and rows
outside ``regions`` are skipped; the first are counted in the set's warnings, never silently lost.
A catalog is undated (``observed_at=None``, which the decision flags) unless the caller dates it.
A file that cannot be read, lacks a column or holds a bad number is a :class:`ConfigError`
naming the file and line.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterable
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Final

from spotlake.clock import ensure_utc
from spotlake.compute.offers.base import OfferSet
from spotlake.compute.values import CapacityType, Cloud, Offer, Pool
from spotlake.errors import ConfigError

if TYPE_CHECKING:
    from _csv import Reader

__all__ = ["REQUIRED_COLUMNS", "CatalogOffers", "ZoneKind", "zone_kind"]

#: Columns a catalog must have; ``AcceleratorCount`` and ``AvailabilityZone`` are optional.
REQUIRED_COLUMNS: Final = ("InstanceType", "vCPUs", "MemoryGiB", "Price", "SpotPrice", "Region")


class ZoneKind(StrEnum):
    """How a catalog names an AWS zone."""

    #: ``us-east-1a``: the region plus a letter, mapped to physical zones differently per account.
    NAME = "name"
    #: ``use1-az1``: the same physical zone in every account.
    ID = "id"


def zone_kind(zone: str, region: str) -> ZoneKind:
    """Whether ``zone`` (of ``region``) is a zone name (starts with the region) or a zone ID."""
    return ZoneKind.NAME if zone.startswith(region) else ZoneKind.ID


def family_of(instance_type: str) -> str | None:
    """``m5`` for ``m5.large``; ``None`` when the name has no ``.`` (no family is guessed)."""
    family, dot, _ = instance_type.partition(".")
    return family if dot and family else None


class CatalogOffers:
    """A SkyPilot catalog CSV as an offer source (see the module docstring).

    ``regions``: only these regions (``None``: all). ``observed_at``: when the catalog's prices
    were taken, if known (offers stay undated otherwise). ``cloud``: whose catalog it is (AWS by
    default; ``Cloud.AZURE`` for ``azure_vms_catalog.csv``). The file is read on the first
    :meth:`offers` call and again only when it changes on disk.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        regions: Iterable[str] | None = None,
        observed_at: datetime | None = None,
        cloud: Cloud = Cloud.AWS,
    ) -> None:
        self.path = Path(path)
        if isinstance(regions, str):  # a lone string would otherwise become its characters
            regions = [regions]
        self.regions: frozenset[str] | None = None if regions is None else frozenset(regions)
        self.observed_at = None if observed_at is None else ensure_utc(observed_at)
        self.cloud = Cloud(cloud)
        self._cached: tuple[tuple[int, int], OfferSet] | None = None

    def __repr__(self) -> str:
        return f"CatalogOffers({str(self.path)!r}, regions={sorted(self.regions or ()) or None})"

    def offers(self) -> OfferSet:
        try:
            stat = self.path.stat()
        except OSError as exc:
            raise ConfigError(f"cannot read the offer catalog {self.path}: {exc.strerror or exc}") from exc
        version = (stat.st_mtime_ns, stat.st_size)
        if self._cached is None or self._cached[0] != version:
            self._cached = (version, self._read())
        return self._cached[1]

    def _read(self) -> OfferSet:
        where = str(self.path)
        try:
            with self.path.open(newline="", encoding="utf-8") as fh:
                return self._parse(csv.reader(fh), where)
        except OSError as exc:
            raise ConfigError(f"cannot read the offer catalog {where}: {exc.strerror or exc}") from exc
        except (csv.Error, UnicodeDecodeError) as exc:
            raise ConfigError(f"{where} is not a readable CSV file: {exc}") from exc

    def _parse(self, reader: Reader, where: str) -> OfferSet:
        header = next(reader, None)
        if header is None:
            raise ConfigError(f"{where}: the catalog is empty (no header line)")
        index = {name.strip(): i for i, name in enumerate(header)}
        missing = [c for c in REQUIRED_COLUMNS if c not in index]
        if missing:
            raise ConfigError(
                f"{where}:1: the catalog lacks columns {missing} (a SkyPilot catalog has "
                f"{', '.join(REQUIRED_COLUMNS)}, AcceleratorCount, AvailabilityZone)"
            )
        i_type, i_cpu, i_mem, i_od, i_spot, i_region = (index[c] for c in REQUIRED_COLUMNS)
        i_gpu, i_zone = index.get("AcceleratorCount"), index.get("AvailabilityZone")
        width = max(index.values()) + 1
        source, cloud, observed_at = str(self.path), self.cloud, self.observed_at
        spot: dict[tuple[str, str, str | None], Offer] = {}
        on_demand: dict[tuple[str, str], Offer] = {}
        seen: set[tuple[str, str, str | None]] = set()
        rows = no_price = no_price_spot = repeated = conflicts = 0
        for row in reader:
            line = reader.line_num
            if not row:
                continue
            if len(row) < width:
                raise ConfigError(f"{where}:{line}: {len(row)} fields, the header has {len(header)}")
            rows += 1
            region, instance_type = row[i_region].strip(), row[i_type].strip()
            if not region or not instance_type:
                raise ConfigError(f"{where}:{line}: empty InstanceType or Region")
            if self.regions is not None and region not in self.regions:
                continue
            zone = (row[i_zone].strip() or None) if i_zone is not None else None
            key = (instance_type, region, zone)
            if key in seen:
                repeated += 1
            seen.add(key)
            od_text, spot_text = row[i_od].strip(), row[i_spot].strip()
            if not od_text:
                no_price += 1
                no_price_spot += bool(spot_text)
            prices: list[tuple[CapacityType, float]] = []
            if od_text:
                price = _number(od_text, "Price", where, line)
                known = on_demand.get((instance_type, region))
                if known is None:
                    prices.append((CapacityType.ON_DEMAND, price))
                else:
                    conflicts += not math.isclose(known.price, price, rel_tol=1e-9)
            if spot_text:
                price = _number(spot_text, "SpotPrice", where, line)
                known = spot.get(key)
                if known is None:
                    prices.append((CapacityType.SPOT, price))
                else:
                    conflicts += not math.isclose(known.price, price, rel_tol=1e-9)
            if not prices:
                continue
            vcpus = _integer(row[i_cpu], "vCPUs", where, line)
            memory = _number(row[i_mem], "MemoryGiB", where, line)
            gpus = _integer(row[i_gpu], "AcceleratorCount", where, line, empty=0) if i_gpu is not None else 0
            family = family_of(instance_type)
            for kind, price in prices:
                spot_offer = kind is CapacityType.SPOT
                offer = Offer(
                    pool=Pool(
                        cloud=cloud,
                        region=region,
                        zone=zone if spot_offer else None,
                        instance_type=instance_type,
                    ),
                    capacity_type=kind,
                    price=price,
                    vcpus=vcpus,
                    memory_gib=memory,
                    gpus=gpus,
                    family=family,
                    observed_at=observed_at,
                    source=source,
                )
                if spot_offer:
                    spot[key] = offer
                else:
                    on_demand[(instance_type, region)] = offer
        if rows == 0:
            raise ConfigError(f"{where}: the catalog has a header and no rows")
        warnings: list[str] = []
        if no_price:
            warnings.append(
                f"{no_price} row(s) have no on-demand price: no on-demand offer from them "
                f"({no_price_spot} of them still give a spot offer)"
            )
        if repeated:
            warnings.append(
                f"{repeated} repeated (type, zone) row(s): each price is taken from the first row that has it"
            )
        if conflicts:
            warnings.append(f"{conflicts} repeated row(s) disagree on a price: the first price is kept")
        if self.regions is not None and not (spot or on_demand):
            warnings.append(f"none of the catalog's {rows} rows is in regions {sorted(self.regions)}")
        return OfferSet(
            offers=(*on_demand.values(), *spot.values()),
            source=source,
            observed_at=self.observed_at,
            warnings=tuple(warnings),
        )


def _number(text: str, column: str, where: str, line: int) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"{where}:{line}: {column} {text.strip()!r} is not a number") from None
    if not (math.isfinite(value) and value >= 0):
        raise ConfigError(f"{where}:{line}: {column} {text.strip()!r} is not a finite number >= 0")
    return value


def _integer(text: str, column: str, where: str, line: int, *, empty: int | None = None) -> int:
    if empty is not None and not text.strip():
        return empty
    value = _number(text, column, where, line)
    if not value.is_integer():
        raise ConfigError(f"{where}:{line}: {column} {text.strip()!r} is not a whole number")
    return int(value)
