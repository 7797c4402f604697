"""The world's value objects: regions, VM sizes and the true prices of a (region, size)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final

import attrs

__all__ = ["PRICE_EPOCH", "Offer", "Region", "VmSize"]

#: The date the generated prices take effect (older versions start earlier).
PRICE_EPOCH: Final = datetime(2025, 10, 1, tzinfo=UTC)


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
