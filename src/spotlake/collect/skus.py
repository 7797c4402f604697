"""Size families, vCPUs, memory and zones from the Compute Resource SKUs API.

``GET {management}/subscriptions/{sub}/providers/Microsoft.Compute/skus?api-version=2021-07-01``
lists every resource SKU of the subscription (pages chained by ``nextLink``). Only
``resourceType == "virtualMachines"`` items are kept; each becomes one row per location it lists
(:data:`~spotlake.model.SKUS_SCHEMA`):

- ``family`` (``standardDSv3Family``), ``vcpus`` (capability ``vCPUs``), ``memory_gib``
  (capability ``MemoryGB``); a missing or unreadable capability is ``<NA>``/NaN, never a guess;
- ``zones``: the zones ``locationInfo`` offers in that location, sorted and comma-joined
  (``"1,2,3"``), ``<NA>`` when none;
- ``restricted``: a ``Location`` restriction covers that location (the subscription cannot deploy
  the size there at all); ``restriction``: every restriction touching the location, as
  ``"<type>:<reasonCode>"`` plus ``" zones 1,2"`` for zone restrictions, joined by ``"; "``.

Pages are sequential (each ``nextLink`` is only known from the previous page) and retried on
429/5xx/timeouts/resets/undecodable bodies; a 401 refreshes the token once. A page that finally
fails ends the crawl and is reported (:class:`~spotlake.errors.IncompleteDataError` by default).
Resource Graph has no SKU table, which is why this collector exists.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, Final

import attrs
import httpx
import pandas as pd

from spotlake.clock import Clock, SystemClock
from spotlake.collect._paging import (
    MANAGEMENT_SCOPE,
    Attempts,
    BearerTokenSourceLike,
    TokenCredentialLike,
    as_float,
    as_int,
    as_list,
    as_mapping,
    as_str,
    fetch_json,
)
from spotlake.collect.base import AzureEndpoints, CollectResult, Failure, ReportBuilder, run_sync
from spotlake.collect.http import Backoff
from spotlake.errors import AuthError, CollectError, ConfigError, PayloadError
from spotlake.model import SKUS_SCHEMA, Secret, Source, conform, empty_frame

__all__ = ["SKUS_API_VERSION", "SkuCollector", "parse_sku_page", "skus_frame"]

SOURCE: Final = Source.SKUS
SKUS_API_VERSION: Final = "2021-07-01"


@attrs.frozen(kw_only=True)
class SkuPage:
    """One parsed page: its rows, the ``nextLink`` and how many VM items were unreadable."""

    rows: tuple[tuple[Any, ...], ...]
    next_link: str | None
    invalid_items: int = 0


def _capabilities(item: Mapping[str, Any]) -> dict[str, object]:
    caps = item.get("capabilities")
    out: dict[str, object] = {}
    if isinstance(caps, list):
        for cap in caps:
            if isinstance(cap, dict) and isinstance(cap.get("name"), str):
                out[cap["name"]] = cap.get("value")
    return out


def _zones_by_location(item: Mapping[str, Any]) -> dict[str, tuple[str, ...]]:
    out: dict[str, tuple[str, ...]] = {}
    info = item.get("locationInfo")
    if isinstance(info, list):
        for entry in info:
            if not isinstance(entry, dict):
                continue
            loc = as_str(entry.get("location"))
            zones = entry.get("zones")
            if loc is None:
                continue
            names = [z for z in zones if isinstance(z, str)] if isinstance(zones, list) else []
            out[loc.lower()] = tuple(sorted(set(names), key=lambda z: (len(z), z)))
    return out


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _dict(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def _restrictions(item: Mapping[str, Any], location: str) -> tuple[bool, str | None]:
    restricted = False
    texts: list[str] = []
    for r in _list(item.get("restrictions")):
        if not isinstance(r, dict):
            continue
        kind = as_str(r.get("type")) or "Unknown"
        reason = as_str(r.get("reasonCode")) or "unspecified"
        info = _dict(r.get("restrictionInfo"))
        places = {
            v.lower() for v in [*_list(r.get("values")), *_list(info.get("locations"))] if isinstance(v, str)
        }
        if location.lower() not in places:
            continue
        if kind == "Zone":
            listed = ",".join(sorted(z for z in _list(info.get("zones")) if isinstance(z, str)))
            texts.append(f"Zone:{reason}" + (f" zones {listed}" if listed else ""))
        else:
            restricted = restricted or kind == "Location"
            texts.append(f"{kind}:{reason}")
    return restricted, "; ".join(texts) or None


def parse_sku_page(body: object) -> SkuPage:
    """Validate one SKUs page and extract one row per (VM size, location).

    Raises :class:`PayloadError` for an envelope that is not ``{"value": [...], "nextLink"?}``.
    A VM item without a string ``name`` or any location is skipped and counted.
    """
    envelope = as_mapping(body, source=SOURCE, what="a SKUs page")
    items = as_list(envelope.get("value"), source=SOURCE, what="the page's 'value'")
    link = envelope.get("nextLink")
    if link is not None and not isinstance(link, str):
        raise PayloadError(f"{SOURCE}: 'nextLink' is {type(link).__name__}, expected a string", source=SOURCE)
    rows: list[tuple[Any, ...]] = []
    invalid = 0
    for item in items:
        if not isinstance(item, dict):
            invalid += 1
            continue
        if item.get("resourceType") != "virtualMachines":
            continue
        name = as_str(item.get("name"))
        raw_locations = item.get("locations")
        locations = (
            [x for x in raw_locations if isinstance(x, str) and x] if isinstance(raw_locations, list) else []
        )
        if not name or not locations:
            invalid += 1
            continue
        caps = _capabilities(item)
        zones = _zones_by_location(item)
        family = as_str(item.get("family"))
        vcpus = as_int(caps.get("vCPUs"))
        memory = as_float(caps.get("MemoryGB"))
        for location in locations:
            restricted, restriction = _restrictions(item, location)
            zone_list = zones.get(location.lower(), ())
            rows.append(
                (
                    name,
                    location.lower(),
                    family,
                    vcpus,
                    memory,
                    ",".join(zone_list) if zone_list else None,
                    restricted,
                    restriction,
                )
            )
    return SkuPage(rows=tuple(rows), next_link=link or None, invalid_items=invalid)


def skus_frame(rows: list[tuple[Any, ...]]) -> tuple[pd.DataFrame, int]:
    """Rows -> SKUS_SCHEMA frame sorted by (size, region); returns the frame and dropped duplicates."""
    if not rows:
        return empty_frame(SKUS_SCHEMA), 0
    frame = pd.DataFrame.from_records(rows, columns=list(SKUS_SCHEMA))
    deduped = frame.drop_duplicates(["size", "region"], keep="first")
    # conform() aligns on the index: hand it a fresh RangeIndex or rows would be re-ordered/lost.
    deduped = deduped.sort_values(["size", "region"], kind="stable").reset_index(drop=True)
    return conform(deduped, SKUS_SCHEMA, source=SOURCE), len(frame) - len(deduped)


def _positive(_inst: object, attr: attrs.Attribute[int], value: int) -> None:
    if value < 1:
        raise ConfigError(f"SkuCollector: {attr.name} must be at least 1, got {value}")


@attrs.define(kw_only=True)
class SkuCollector:
    """Collects VM size families and capabilities (:data:`~spotlake.model.SKUS_SCHEMA`).

    ``credential`` is anything with azure-core's ``get_token(*scopes)`` (e.g.
    ``azure.identity.ClientSecretCredential``) or spotlake's token source (``atoken()`` /
    ``aforce_refresh()``, used for a real refresh after a 401); ``transport`` is an httpx
    transport (the emulator's in tests). ``location`` optionally narrows the listing server-side
    (``$filter=location eq``).
    """

    source: Source = attrs.field(default=SOURCE, init=False)
    subscription: str
    credential: TokenCredentialLike | BearerTokenSourceLike
    endpoints: AzureEndpoints = attrs.field(factory=AzureEndpoints)
    transport: httpx.AsyncBaseTransport | None = None
    clock: Clock = attrs.field(factory=SystemClock)
    max_attempts: int = attrs.field(default=6, validator=_positive)
    backoff: Backoff = attrs.field(factory=Backoff)
    timeout: float = 60.0
    max_pages: int = attrs.field(default=1000, validator=_positive)
    location: str | None = None
    allow_partial: bool = False
    _token: Secret | None = attrs.field(default=None, init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        if not self.subscription:
            raise ConfigError("SkuCollector needs a subscription id")

    async def _bearer(self) -> str:
        if self._token is None:
            self._token = await self._fetch_token(refresh=False)
        return self._token.reveal()

    async def _refresh(self) -> None:
        self._token = await self._fetch_token(refresh=True)

    async def _fetch_token(self, *, refresh: bool) -> Secret:
        credential = self.credential
        try:
            if isinstance(credential, BearerTokenSourceLike):
                token = await (credential.aforce_refresh(self._token) if refresh else credential.atoken())
                return token if isinstance(token, Secret) else Secret(str(token))
            # An azure-core TokenCredential caches by itself; after a 401 we can only ask again.
            access = await asyncio.to_thread(credential.get_token, MANAGEMENT_SCOPE)
            return Secret(access.token)
        except CollectError:
            raise
        except Exception as exc:
            # Never echo the exception text: credential errors may quote the request body.
            raise AuthError(
                f"{SOURCE}: could not get a token for {MANAGEMENT_SCOPE} ({type(exc).__name__}); "
                "check the tenant, client id and secret",
                source=SOURCE,
            ) from None  # not chained: the credential's own error text may quote secrets

    def _next_url(self, link: str, report: ReportBuilder) -> httpx.URL | None:
        """The next page's URL, only on the management endpoint's own origin: the bearer token goes
        with the request, so a link elsewhere (or an unparsable one) ends the listing as a failure."""
        base = httpx.URL(self.endpoints.management)
        try:
            url = httpx.URL(link)
        except (httpx.InvalidURL, ValueError):
            url = None
        if url is None or (url.scheme, url.host, url.port) != (base.scheme, base.host, base.port):
            report.planned += 1
            report.failures.append(
                Failure(
                    what="next page",
                    reason=f"nextLink leaves {base.scheme}://{base.host}; not followed (token would leak)",
                )
            )
            return None
        return url

    def _first_url(self) -> httpx.URL:
        params = {"api-version": SKUS_API_VERSION}
        if self.location:
            params["$filter"] = f"location eq '{self.location}'"
        base = self.endpoints.management.rstrip("/")
        return httpx.URL(
            f"{base}/subscriptions/{self.subscription}/providers/Microsoft.Compute/skus", params=params
        )

    async def acollect(self) -> CollectResult:
        report = ReportBuilder(source=SOURCE, started_at=self.clock.now())
        rows: list[tuple[Any, ...]] = []
        invalid = 0
        url: httpx.URL | None = self._first_url()
        async with httpx.AsyncClient(transport=self.transport, timeout=httpx.Timeout(self.timeout)) as client:
            for index in range(self.max_pages):
                if url is None:
                    break
                what = f"page {index}"
                page_url = url

                async def build(u: httpx.URL = page_url) -> httpx.Request:
                    return client.build_request(
                        "GET", u, headers={"Authorization": f"Bearer {await self._bearer()}"}
                    )

                report.planned += 1
                tries = Attempts()
                try:
                    page = await fetch_json(
                        client,
                        build,
                        source=SOURCE,
                        what=what,
                        report=report,
                        clock=self.clock,
                        max_attempts=self.max_attempts,
                        backoff=self.backoff,
                        on_unauthorized=self._refresh,
                        attempts=tries,
                        parse=parse_sku_page,
                    )
                except AuthError:
                    raise  # wrong credentials or a missing role: no retry or later page will help
                except CollectError as exc:
                    report.failures.append(
                        Failure(what=what, reason=str(exc), status=exc.status, attempts=tries.count)
                    )
                    break
                assert isinstance(page, SkuPage)
                report.succeeded += 1
                rows.extend(page.rows)
                invalid += page.invalid_items
                url = self._next_url(page.next_link, report) if page.next_link else None
            else:
                if url is not None:
                    report.planned += 1
                    report.failures.append(
                        Failure(what=f"pages after {self.max_pages}", reason="the listing did not end")
                    )
        frame, duplicates = skus_frame(rows)
        if invalid:
            report.notes.append(f"{invalid} VM item(s) had no name or location and were skipped")
        if duplicates:
            report.notes.append(f"{duplicates} duplicate (size, region) row(s) dropped (first kept)")
        done = report.build(rows=len(frame), at=self.clock.now())
        if not self.allow_partial:
            done.require_complete("size listing")
        return CollectResult(frame=frame, report=done)

    def collect(self) -> CollectResult:
        """Blocking facade over :meth:`acollect`."""
        return run_sync(self.acollect())
