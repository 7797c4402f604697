"""The emulated Retail Prices API (``GET /api/retail/prices``): price rows, ``$filter`` and paging.

Rows are derived from a :class:`~spotlake.testing.world.World` so that, after the collector's
filters (Linux only, no Low Priority, no DevTest, no expired meters, no sovereign regions, latest
*effective* version of each meter), exactly ``world.price(region, size)`` remains. Around each true
price the table adds what the real feed contains and collectors must drop: Windows meters, Low
Priority meters, ``DevTestConsumption`` rows, expired meters, older versions of a meter (earlier
``effectiveStartDate``, some with a past ``effectiveEndDate``), versions that start in the future,
and US Government regions. Some sizes are sold on demand only (no spot row).

Rows are kept compact (one small tuple each) and rendered to JSON a page at a time.
:class:`PricesService` answers the HTTP requests from a :class:`PriceTable`; ``$filter`` is
compiled by :mod:`~spotlake.testing.azure.price_filter`.
"""

from __future__ import annotations

import functools
import hashlib
import threading
from collections import OrderedDict
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Final, Literal
from urllib.parse import quote

import attrs

from spotlake.testing.azure._replies import Reply, ServiceRequest, error_reply, ok_reply
from spotlake.testing.azure.price_filter import FilterError, compile_filter, series_label
from spotlake.testing.regions import SOVEREIGN_REGIONS
from spotlake.testing.world import PRICE_EPOCH, World

if TYPE_CHECKING:
    from spotlake.testing.azure.emulator import AzureEmulator

__all__ = ["PAGE_SIZE", "FilterError", "PriceRow", "PriceTable", "PricesService"]

PAGE_SIZE: Final = 1000
#: A future price version starts here: far enough ahead that no test clock reaches it.
FUTURE_START: Final = datetime(2031, 1, 1, tzinfo=PRICE_EPOCH.tzinfo)
#: Fixed exchange rates for ``currencyCode`` (the real API converts from USD the same way).
CURRENCY_RATES: Final[Mapping[str, float]] = {
    "USD": 1.0,
    "EUR": 0.92,
    "GBP": 0.79,
    "JPY": 151.0,
    "KRW": 1380.0,
    "CNY": 7.2,
    "INR": 83.0,
}

# Row kinds: (os, pricing, type). "expired" is a Linux meter whose name says Expired.
_KINDS: Final = (
    "linux",
    "spot",
    "lowpri",
    "windows",
    "winspot",
    "winlowpri",
    "devtest",
    "devtestspot",
    "expired",
)


@attrs.frozen(kw_only=True, slots=True)
class PriceRow:
    """One price item, before rendering: enough to compute every field of the real item."""

    region: str
    location: str
    size: str
    family: str
    kind: str
    price: float
    start: datetime
    end: datetime | None = None
    version: int = 0


def _guid(key: str) -> str:
    """A deterministic version-4 GUID of ``key`` (same text as ``uuid.UUID(bytes=..., version=4)``).

    Hand-formatted because rendering a page needs 3,000 of them and ``uuid.UUID`` is the slow part.
    """
    b = bytearray(hashlib.blake2b(key.encode(), digest_size=16).digest())
    b[6] = (b[6] & 0x0F) | 0x40
    b[8] = (b[8] & 0x3F) | 0x80
    h = b.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


@functools.lru_cache(maxsize=4096)
def _product_id(family: str, windows: bool) -> str:
    return _guid(f"product\x1f{family}\x1f{windows}")


def _u(seed: int, *parts: object) -> float:
    key = "\x1f".join([str(seed), *(str(p) for p in parts)]).encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little") / float(1 << 64)


@functools.lru_cache(maxsize=4096)
def _iso(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def _r4(x: float) -> float:
    return float(f"{max(x, 0.0001):.4f}")


class PriceTable:
    """Every price row of a world, its filters and its pages. Thread-safe (read-only after build)."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.rows: tuple[PriceRow, ...] = tuple(self._build())
        self._filter_cache: OrderedDict[str, tuple[int, ...]] = OrderedDict()
        self._lock = threading.Lock()

    # -- the table ---------------------------------------------------------------------------

    def _build(self) -> list[PriceRow]:
        w, seed = self.world, self.world.seed
        rows: list[PriceRow] = []
        sovereign_sizes = [s for s in w.sizes if _u(seed, "sovereign-size", s.name) < 0.3]
        for size in w.sizes:
            for region in w.regions:
                offer = w.offers.get((region.name, size.name))
                if offer is None:
                    continue
                rows.extend(
                    self._pair_rows(
                        region.name,
                        region.display_name,
                        size.name,
                        size.family,
                        od=offer.ondemand,
                        spot=offer.spot,
                    )
                )
        for size in sovereign_sizes:
            for name, display in SOVEREIGN_REGIONS:
                if _u(seed, "sovereign", name, size.name) < 0.6:
                    od = _r4(size.vcpus * 0.06 * (1.1 + 0.2 * _u(seed, "sov-price", name, size.name)))
                    rows.extend(
                        self._pair_rows(name, display, size.name, size.family, od=od, spot=_r4(od * 0.3))
                    )
        return rows

    def _pair_rows(
        self, region: str, location: str, size: str, family: str, *, od: float, spot: float | None
    ) -> list[PriceRow]:
        seed = self.world.seed
        base = PRICE_EPOCH
        out: list[PriceRow] = []

        def row(
            kind: str, price: float, start: datetime = base, end: datetime | None = None, version: int = 0
        ) -> None:
            out.append(
                PriceRow(
                    region=region,
                    location=location,
                    size=size,
                    family=family,
                    kind=kind,
                    price=price,
                    start=start,
                    end=end,
                    version=version,
                )
            )

        def meter(kind: str, price: float, history: float) -> None:
            # Superseded versions of the meter come *before* the current one (so "first wins" is
            # wrong), some with the past effectiveEndDate the feed gives them; a few meters also
            # list a version that starts in the future (it must not count yet).
            u = _u(seed, "versions", region, size, kind)
            if u < history:
                # Version v starts v x ~6 months back and (sometimes) ends where version v-1 starts.
                starts = {
                    v: base - timedelta(days=v * 180 + int(150 * _u(seed, "v-age", region, size, kind, v)))
                    for v in (1, 2)
                }
                starts[0] = base
                with_end = _u(seed, "v-end", region, size, kind) < 0.4
                for v in (2, 1) if u < history / 3 else (1,):
                    old = _r4(price * (0.75 + 0.4 * _u(seed, "v-price", region, size, kind, v)))
                    row(kind, old, starts[v], starts[v - 1] if with_end else None, v)
            row(kind, price)
            if _u(seed, "future", region, size, kind) < 0.02:
                row(kind, _r4(price * 1.25), FUTURE_START, None, -1)

        meter("linux", od, 0.15)
        if spot is not None:
            meter("spot", spot, 0.45)  # spot prices move far more often than on-demand ones
            row("lowpri", _r4(od * 0.2))
        win = _r4(od * 1.45 + 0.01 * _u(seed, "win", region, size))
        meter("windows", win, 0.15)
        if spot is not None:
            meter("winspot", _r4(spot + (win - od) * 0.9), 0.3)
            if _u(seed, "winlowpri", region, size) < 0.5:
                row("winlowpri", _r4(win * 0.2))
        if _u(seed, "devtest", region, size) < 0.6:
            row("devtest", od)
        if spot is not None and _u(seed, "devtestspot", region, size) < 0.4:
            row("devtestspot", spot)
        if _u(seed, "expired", region, size) < 0.03:
            row("expired", _r4(od * 0.9))
        return out

    # -- rendering ---------------------------------------------------------------------------

    def item(self, row: PriceRow, rate: float = 1.0, currency: str = "USD") -> dict[str, object]:
        """The real item shape of one row (field order as the real API)."""
        sku = row.size.removeprefix("Standard_").removeprefix("Basic_").replace("_", " ")
        windows = row.kind in ("windows", "winspot", "winlowpri", "devtest", "devtestspot")
        suffix = {
            "spot": " Spot",
            "winspot": " Spot",
            "devtestspot": " Spot",
            "lowpri": " Low Priority",
            "winlowpri": " Low Priority",
            "expired": " Expired",
        }.get(row.kind, "")
        product = f"Virtual Machines {series_label(row.family)} Series" + (" Windows" if windows else "")
        price = round(row.price * rate, 6)
        meter_key = (row.region, row.size, row.kind)
        item: dict[str, object] = {
            "currencyCode": currency,
            "tierMinimumUnits": 0.0,
            "retailPrice": price,
            "unitPrice": price,
            "armRegionName": row.region,
            "location": row.location,
            "effectiveStartDate": _iso(row.start),
        }
        if row.end is not None:
            item["effectiveEndDate"] = _iso(row.end)
        item.update(
            {
                "meterId": _guid(f"meter\x1f{meter_key}"),
                "meterName": f"{sku}{suffix}",
                "productId": _product_id(row.family, windows),
                "skuId": _guid(f"sku\x1f{meter_key}"),
                "productName": product,
                "skuName": f"{sku}{suffix}",
                "serviceName": "Virtual Machines",
                "serviceId": "DZH318Z0BQPS",
                "serviceFamily": "Compute",
                "unitOfMeasure": "1 Hour",
                "type": "DevTestConsumption" if row.kind.startswith("devtest") else "Consumption",
                "isPrimaryMeterRegion": True,
                "armSkuName": row.size,
            }
        )
        return item

    # -- filtering and paging ----------------------------------------------------------------

    def matching(self, odata_filter: str) -> tuple[int, ...]:
        """Indexes of the rows matching ``odata_filter`` (cached per distinct filter)."""
        key = odata_filter.strip()
        with self._lock:
            hit = self._filter_cache.get(key)
            if hit is not None:
                self._filter_cache.move_to_end(key)
                return hit
        predicate = compile_filter(key)
        result = tuple(i for i, r in enumerate(self.rows) if predicate(r))
        with self._lock:
            self._filter_cache[key] = result
            while len(self._filter_cache) > 256:
                self._filter_cache.popitem(last=False)
        return result

    def page(
        self,
        *,
        odata_filter: str,
        skip: int,
        currency: str,
        base_url: str,
        empty_next_link: Literal["", "null"] | None = None,
    ) -> dict[str, object]:
        """One page of the real envelope. ``empty_next_link`` (a fault) replaces a due NextPageLink
        with "" or null although the page is full and more follow."""
        idx = self.matching(odata_filter)
        rate = CURRENCY_RATES[currency]
        chunk = idx[skip : skip + PAGE_SIZE]
        items = [self.item(self.rows[i], rate, currency) for i in chunk]
        more = skip + PAGE_SIZE < len(idx)
        next_link: str | None = None
        if more:
            params = [f"currencyCode='{currency}'"]
            if odata_filter:
                params.append("$filter=" + quote(odata_filter, safe="'"))
            params.append(f"$skip={skip + PAGE_SIZE}")
            next_link = f"{base_url}/api/retail/prices?" + "&".join(params)
            if empty_next_link is not None:
                next_link = "" if empty_next_link == "" else None
        return {
            "BillingCurrency": currency,
            "CustomerEntityId": "Default",
            "CustomerEntityType": "Retail",
            "Items": items,
            "NextPageLink": next_link,
            "Count": len(items),
        }

    def page_count(self, odata_filter: str = "") -> int:
        """Number of pages a full crawl of ``odata_filter`` takes."""
        n = len(self.matching(odata_filter))
        return max(1, -(-n // PAGE_SIZE))


class PricesService:
    """Answers ``GET /api/retail/prices`` from the price table of ``emu.world`` (built on first use)."""

    endpoint = "prices"

    def __init__(self, emu: AzureEmulator) -> None:
        self._emu = emu
        self._lock = threading.Lock()
        self._table: PriceTable | None = None

    @property
    def table(self) -> PriceTable:
        """The price table (built on first use: a default world has ~200k rows)."""
        with self._lock:
            if self._table is None:
                self._table = PriceTable(self._emu.world)
            return self._table

    def accepts(self, method: str, path: str) -> bool:
        return path.lower().rstrip("/") == "/api/retail/prices" and method == "GET"

    def __call__(self, request: ServiceRequest) -> Reply:
        currency = request.query.get("currencyCode", "USD").strip().strip("'\"").upper() or "USD"
        if currency not in CURRENCY_RATES:
            return error_reply(400, "InvalidCurrencyCode", f"Invalid currency code '{currency}'.", "prices")
        raw_skip = request.query.get("$skip", "0") or "0"
        try:
            skip = int(raw_skip)
            if skip < 0:
                raise ValueError(raw_skip)
        except ValueError:
            return error_reply(400, "InvalidSkip", f"Invalid value '{raw_skip}' for $skip.", "prices")
        odata, decision = request.query.get("$filter", ""), request.decision
        empty: Literal["", "null"] | None = None
        if decision.empty_next_link:
            empty = "" if decision.salt % 2 else "null"  # both spellings have been seen: "" and null
        try:
            page = self.table.page(
                odata_filter=odata,
                skip=skip,
                currency=currency,
                base_url=request.base_url,
                empty_next_link=empty,
            )
        except FilterError as exc:
            return error_reply(400, "InvalidFilter", str(exc), "prices")
        if decision.drift:
            items = page["Items"]
            assert isinstance(items, list)
            for item in items:
                # Optional fields vanish (as they have over the API's versions).
                for key in ("isPrimaryMeterRegion", "tierMinimumUnits", "effectiveEndDate", "location"):
                    item.pop(key, None)
        return ok_reply(page, "prices")
