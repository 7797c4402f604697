"""Adversarial payloads into the page parsers: a correct frame or a typed SpotlakeError, never a crash.

Price pages go through the whole collector (MockTransport, FakeClock), and the frame is compared
with an independent, plain-Python reference of the SPEC §1.2 rules computed from the same items.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pandas as pd
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from hypothesis_support import examples
from spotlake.clock import FakeClock
from spotlake.collect.base import AzureEndpoints
from spotlake.collect.eviction import EvictionCollector, eviction_frame
from spotlake.collect.prices import PriceCollector, PriceResult, is_sovereign
from spotlake.collect.skus import parse_sku_page, skus_frame
from spotlake.errors import SpotlakeError
from spotlake.model import EVICTION_SCHEMA, PRICES_SCHEMA, SKUS_SCHEMA

NOW = datetime(2026, 1, 1, tzinfo=UTC)
BASE = "https://prices.test"
SETTINGS = settings(max_examples=examples(60), deadline=None, suppress_health_check=[HealthCheck.too_slow])

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)
DATES = {
    "2024-01-01T00:00:00Z": datetime(2024, 1, 1, tzinfo=UTC),
    "2025-06-01T00:00:00Z": datetime(2025, 6, 1, tzinfo=UTC),
    "2030-01-01T00:00:00Z": datetime(2030, 1, 1, tzinfo=UTC),
}
WEIRD: list[Any] = [None, 7, [1], {"a": 1}, True, ""]


def _maybe(values: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    # Mostly well-typed (so items survive to the reference comparison), sometimes not.
    return st.one_of(*[values] * 7, st.sampled_from(WEIRD))


ITEM = st.fixed_dictionaries(
    {
        "armRegionName": _maybe(
            st.sampled_from(["eastus", "westus2", " eastus ", "usgovvirginia", "eastus"])
        ),
        "armSkuName": _maybe(st.sampled_from(["Standard_D2s_v3", "Standard_DC2as_v5", "Basic_A1"])),
        "meterName": _maybe(
            st.sampled_from(
                ["D2s v3", "D2s v3 Spot", "D2s v3", "D2s v3 Spot", "D2s v3 Low Priority", "A1 Expired"]
            )
        ),
        "productName": _maybe(
            st.sampled_from(["Virtual Machines DSv3 Series"] * 3 + ["Virtual Machines Windows"])
        ),
        "retailPrice": st.one_of(
            st.floats(min_value=-1, max_value=100),
            st.integers(0, 5),
            st.sampled_from(["1.5", "abc", "nan", True, None]),
        ),
    },
    optional={
        "skuName": _maybe(st.sampled_from(["D2s v3", "D2s v3 Spot", "Spot", "y Low Priority"])),
        "type": _maybe(st.sampled_from(["Consumption", "Consumption", "DevTestConsumption", "Reservation"])),
        "unitPrice": st.one_of(st.none(), st.floats(min_value=0, max_value=10)),
        "effectiveStartDate": st.sampled_from([*DATES, None, "garbage", 5]),
        "effectiveEndDate": st.sampled_from([*DATES, None, "garbage"]),
        "location": _maybe(st.sampled_from(["US East", "US West 2"])),
    },
)
ITEMS = st.lists(st.one_of(ITEM, ITEM, ITEM, JSON), min_size=1, max_size=12)


def _number(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        x = float(value)
    elif isinstance(value, str):
        try:
            x = float(value)
        except ValueError:
            return None
    else:
        return None
    return x if math.isfinite(x) else None


def reference(items: list[Any]) -> dict[tuple[str, str], tuple[float | None, float | None]]:
    """SPEC §1.2 in plain Python: filters, latest effective price (ties: lower price), pairing."""
    best: dict[tuple[str, str, bool], tuple[tuple[datetime, float], float]] = {}
    for it in items:
        if not isinstance(it, dict):
            continue
        region, size, meter, product = (
            it.get(k) for k in ("armRegionName", "armSkuName", "meterName", "productName")
        )
        if not all(isinstance(v, str) for v in (region, size, meter, product)):
            continue
        price = _number(it.get("retailPrice"))
        if price is None:
            price = _number(it.get("unitPrice"))
        if price is None:
            continue
        sku = it.get("skuName") if isinstance(it.get("skuName"), str) else ""
        kind = it.get("type") if isinstance(it.get("type"), str) and it.get("type") else "Consumption"
        start = DATES.get(it["effectiveStartDate"]) if isinstance(it.get("effectiveStartDate"), str) else None
        end = DATES.get(it["effectiveEndDate"]) if isinstance(it.get("effectiveEndDate"), str) else None
        region, size = region.strip(), size.strip()
        names = f"{meter} {sku}"
        if (
            not region
            or not size
            or "Windows" in product
            or kind != "Consumption"
            or "Low Priority" in names
            or "Expired" in names
            or (end is not None and end <= NOW)
            or (start is not None and start > NOW)
            or is_sovereign(region)
        ):
            continue
        spot = meter.endswith(" Spot") or sku.endswith(" Spot")
        rank = (start or datetime.min.replace(tzinfo=UTC), -price)
        key = (region, size, spot)
        if key not in best or rank >= best[key][0]:
            best[key] = (rank, price)
    out: dict[tuple[str, str], tuple[float | None, float | None]] = {}
    for (region, size, spot), (_, price) in best.items():
        od, sp = out.get((region, size), (None, None))
        out[(region, size)] = (od, price) if spot else (price, sp)
    return out


def _as_dict(result: PriceResult) -> dict[tuple[str, str], tuple[float | None, float | None]]:
    frame = result.frame
    assert list(frame.columns) == list(PRICES_SCHEMA)
    assert [str(t) for t in frame.dtypes] == list(PRICES_SCHEMA.values())
    return {
        (r, s): (None if pd.isna(od) else od, None if pd.isna(sp) else sp)
        for r, s, od, sp in frame[["region", "size", "ondemand_price", "spot_price"]].itertuples(index=False)
    }


PAGE = st.one_of(
    st.tuples(st.just("items"), ITEMS),
    st.tuples(st.just("items"), ITEMS),
    st.tuples(st.just("items"), ITEMS),
    st.tuples(st.just("flaky"), ITEMS),  # junk on the first attempt, fine on the second
    st.tuples(st.just("junk"), JSON),  # valid JSON, wrong shape, every time
    st.tuples(st.just("bytes"), st.binary(max_size=20)),  # not JSON at all, every time
)


@settings(SETTINGS, max_examples=examples(150))
@given(pages=st.lists(PAGE, min_size=1, max_size=4))
def test_price_pages_give_a_correct_frame_or_a_typed_error(pages: list[tuple[str, Any]]) -> None:
    attempts: dict[int, int] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        skip = int(parse_qs(urlsplit(str(request.url)).query).get("$skip", ["0"])[0])
        index = skip // 1000
        attempts[index] = attempts.get(index, 0) + 1
        if index >= len(pages):
            return httpx.Response(200, json={"Items": [], "NextPageLink": None, "Count": 0})
        kind, payload = pages[index]
        link = f"{BASE}/api/retail/prices?$skip={(index + 1) * 1000}" if index + 1 < len(pages) else None
        if kind == "bytes":
            return httpx.Response(200, content=payload)
        if kind == "junk" or (kind == "flaky" and attempts[index] == 1):
            return httpx.Response(200, content=json.dumps(payload).encode())
        return httpx.Response(200, json={"Items": payload, "NextPageLink": link, "Count": len(payload)})

    collector = PriceCollector(
        endpoints=AzureEndpoints.single(BASE),
        transport=httpx.MockTransport(handler),
        clock=FakeClock(NOW),
        max_attempts=2,
        concurrency=4,
    )
    broken = any(kind in ("junk", "bytes") for kind, _ in pages)
    try:
        result = collector.collect()
    except SpotlakeError as exc:
        assert broken or not pages
        event(f"typed error {type(exc).__name__}")
        return
    items = [item for kind, payload in pages if kind in ("items", "flaky") for item in payload]
    # A 'junk' body that happens to be a valid page (e.g. {"Items": []}) is a page, not junk.
    if not broken:
        assert result.report.complete
        assert _as_dict(result) == reference(items)
        event("compared with the reference: " + ("empty frame" if result.frame.empty else "rows"))


@SETTINGS
@given(body=JSON)
def test_sku_pages_parse_or_raise_payload_error(body: Any) -> None:
    try:
        page = parse_sku_page(body)
    except SpotlakeError:
        return
    frame, _ = skus_frame(list(page.rows))
    assert list(frame.columns) == list(SKUS_SCHEMA)


SKU_ITEM = st.fixed_dictionaries(
    {"resourceType": st.sampled_from(["virtualMachines", "disks"])},
    optional={
        "name": _maybe(st.sampled_from(["Standard_D2s_v3", "Standard_DC2as_v5"])),
        "family": _maybe(st.just("standardDSv3Family")),
        "locations": st.one_of(st.lists(_maybe(st.sampled_from(["eastus", "WestUS"])), max_size=2), JSON),
        "locationInfo": st.one_of(
            st.lists(
                st.fixed_dictionaries({"location": _maybe(st.just("eastus")), "zones": JSON}), max_size=2
            ),
            JSON,
        ),
        "capabilities": st.one_of(
            st.lists(
                st.fixed_dictionaries(
                    {
                        "name": st.sampled_from(["vCPUs", "MemoryGB", "x"]),
                        "value": st.one_of(JSON, st.just("4")),
                    }
                ),
                max_size=3,
            ),
            JSON,
        ),
        "restrictions": st.one_of(
            st.lists(
                st.dictionaries(st.sampled_from(["type", "values", "restrictionInfo", "reasonCode"]), JSON),
                max_size=2,
            ),
            JSON,
        ),
    },
)


@SETTINGS
@given(
    items=st.lists(st.one_of(SKU_ITEM, JSON), max_size=6),
    link=st.one_of(st.none(), st.text(max_size=5), JSON),
)
def test_sku_items_never_crash(items: list[Any], link: Any) -> None:
    try:
        page = parse_sku_page({"value": items, "nextLink": link})
    except SpotlakeError:
        assert link is not None and not isinstance(link, str)
        return
    frame, _ = skus_frame(list(page.rows))
    assert list(frame.columns) == list(SKUS_SCHEMA)
    assert [str(t) for t in frame.dtypes] == list(SKUS_SCHEMA.values())


EVICTION_ROW = st.fixed_dictionaries(
    {},
    optional={
        "location": _maybe(st.sampled_from(["eastus", "westeurope"])),
        "skuName": _maybe(st.sampled_from(["Standard_DC2as_v5", "Standard_D2s_v3"])),
        "evictionRate": _maybe(st.sampled_from(["0-5", "5-10", "20+", "weird", " 10-15 "])),
    },
)


class _Client:
    def __init__(self, data: Any) -> None:
        self.data = data

    def resources(self, query: Any, **kwargs: Any) -> Any:
        class Response:
            data = self.data
            skip_token = None
            total_records = None

        return Response()


@SETTINGS
@given(data=st.one_of(st.lists(st.one_of(EVICTION_ROW, EVICTION_ROW, JSON), max_size=8), JSON))
def test_eviction_payloads_give_a_frame_or_a_typed_error(data: Any) -> None:
    collector = EvictionCollector(
        subscriptions=["s"], client=_Client(data), clock=FakeClock(NOW), max_attempts=1
    )
    try:
        result = collector.collect()
    except SpotlakeError:
        return
    frame = result.frame
    assert list(frame.columns) == list(EVICTION_SCHEMA)
    assert [str(t) for t in frame.dtypes] == list(EVICTION_SCHEMA.values())
    direct, _, _ = eviction_frame(data if isinstance(data, list) else [])
    assert frame.equals(direct)
