"""The emulated Compute Resource SKUs API (``GET /subscriptions/{sub}/providers/Microsoft.Compute/skus``).

One ``virtualMachines`` item per (size, region) the world sells, sorted by size then region, 1000 per
page with a ``nextLink``; ``$filter=location eq '<region>'`` is the only filter. Each item carries
the size's family, vCPUs, memory, ``LowPriorityCapable`` (whether spot is sold there) and seeded
restrictions: 3 % ``NotAvailableForSubscription`` for the location, 5 % for one zone.
"""

from __future__ import annotations

import hashlib
import re
import threading
from typing import TYPE_CHECKING, Final

from spotlake.testing.azure._arm import check_api_version, skip_offset, skip_token
from spotlake.testing.azure._replies import Reply, ServiceRequest, error_reply, ok_reply
from spotlake.testing.faults import Decision

if TYPE_CHECKING:
    from spotlake.testing.azure.emulator import AzureEmulator
    from spotlake.testing.azure.identity import IdentityService

__all__ = ["SKUS_PAGE_SIZE", "SkusService"]

#: Items per page.
SKUS_PAGE_SIZE: Final = 1000

_SKUS_PATH: Final = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)/providers/microsoft\.compute/skus/?$", re.IGNORECASE
)


class SkusService:
    """Answers SKU listings from ``emu.world`` (restrictions seeded by ``emu.seed``)."""

    endpoint = "skus"

    def __init__(self, emu: AzureEmulator, identity: IdentityService) -> None:
        self._emu = emu
        self._identity = identity
        self._lock = threading.Lock()
        self._skus_sorted: list[tuple[str, str]] | None = None

    def accepts(self, method: str, path: str) -> bool:
        return bool(_SKUS_PATH.match(path)) and method == "GET"

    def __call__(self, request: ServiceRequest) -> Reply:
        ep = self.endpoint
        m = _SKUS_PATH.match(request.path)
        assert m is not None
        sub = m["sub"]
        bad = check_api_version(request, ep) or self._identity.check_bearer(request.headers, ep)
        if bad is None and sub not in self._emu.world.subscriptions:
            bad = error_reply(
                404, "SubscriptionNotFound", f"The subscription '{sub}' could not be found.", ep
            )
        if bad is not None:
            return bad
        pairs = self._sku_cache()
        odata = request.query.get("$filter", "")
        if odata:
            fm = re.fullmatch(r"\s*location\s+eq\s+'([^']*)'\s*", odata)
            if fm is None:
                return error_reply(
                    400, "InvalidFilter", "Only $filter=location eq '<region>' is supported.", ep
                )
            pairs = [p for p in pairs if p[1] == fm.group(1)]
        offset = 0
        if request.query.get("$skiptoken"):
            try:
                offset = skip_offset(request.query["$skiptoken"])
            except (ValueError, KeyError, TypeError):
                return error_reply(400, "InvalidSkipToken", "The $skiptoken is invalid.", ep)
        chunk = pairs[offset : offset + SKUS_PAGE_SIZE]
        items = [self._sku_item(size, region, request.decision) for size, region in chunk]
        payload: dict[str, object] = {"value": items}
        if offset + SKUS_PAGE_SIZE < len(pairs):
            token = skip_token(offset + SKUS_PAGE_SIZE)
            extra = f"&$filter={odata}" if odata else ""
            payload["nextLink"] = (
                f"{request.base_url}/subscriptions/{sub}/providers/Microsoft.Compute/skus"
                f"?api-version={request.query['api-version']}{extra}&$skiptoken={token}"
            )
        return ok_reply(payload, ep)

    def _sku_cache(self) -> list[tuple[str, str]]:
        with self._lock:
            cached = self._skus_sorted
        if cached is None:
            cached = sorted((s, r) for r, s in self._emu.world.offered_pairs())
            with self._lock:
                self._skus_sorted = cached
        return cached

    def _sku_item(self, size_name: str, region: str, decision: Decision) -> dict[str, object]:
        world = self._emu.world
        size = world.size(size_name)
        zones = list(world.region(region).zones)
        tier, _, short = size_name.partition("_")
        restrictions: list[dict[str, object]] = []
        roll = _unit(self._emu.seed, "sku-restriction", size_name, region)
        if roll < 0.03:
            restrictions.append(
                {
                    "type": "Location",
                    "values": [region],
                    "restrictionInfo": {"locations": [region]},
                    "reasonCode": "NotAvailableForSubscription",
                }
            )
        elif roll < 0.08 and zones:
            restrictions.append(
                {
                    "type": "Zone",
                    "values": [region],
                    "restrictionInfo": {"locations": [region], "zones": zones[-1:]},
                    "reasonCode": "NotAvailableForSubscription",
                }
            )
        item: dict[str, object] = {
            "resourceType": "virtualMachines",
            "name": size_name,
            "tier": tier,
            "size": short,
            "family": size.family,
            "locations": [region],
            "locationInfo": [{"location": region, "zones": zones, "zoneDetails": []}],
            "capabilities": [
                {"name": "vCPUs", "value": str(size.vcpus)},
                {"name": "MemoryGB", "value": f"{size.memory_gib:g}"},
                {
                    "name": "LowPriorityCapable",
                    "value": "True" if (region, size_name) in world.support_pairs() else "False",
                },
            ],
            "restrictions": restrictions,
        }
        if decision.drift and _unit(decision.salt, size_name, region) < 0.2:
            item.pop("restrictions")
            item.pop("locationInfo")
        return item


def _unit(seed: int, *parts: object) -> float:
    key = "\x1f".join([str(seed), *(str(p) for p in parts)]).encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little") / float(1 << 64)
