"""The price collector against the emulator: every fault kind, exact ground truth, honest reports."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

import httpx
import pandas as pd
import pytest

from fault_support import each_fault
from spotlake.clock import FakeClock
from spotlake.collect.base import AzureEndpoints
from spotlake.collect.http import Backoff
from spotlake.collect.prices import (
    LOOKAHEAD,
    PRICE_FILTER,
    PriceCollector,
    PriceResult,
    is_sovereign,
    prices_frame,
)
from spotlake.errors import IncompleteDataError
from spotlake.model import PRICES_SCHEMA
from spotlake.testing.azure import AzureEmulator, EndpointFaults, Faults
from spotlake.testing.faults import FAILING_KINDS
from spotlake.testing.world import World

BASE = "https://emulator.test"
NOW = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def world() -> World:
    return World.generate(seed=3, n_regions=10, n_sizes=100)  # 7 pages


def _collector(transport: httpx.AsyncBaseTransport, **kw: object) -> PriceCollector:
    return PriceCollector(
        endpoints=AzureEndpoints.single(BASE),
        transport=transport,
        clock=kw.pop("clock", FakeClock(NOW)),  # type: ignore[arg-type]
        **kw,  # type: ignore[arg-type]
    )


def _truth(world: World) -> dict[tuple[str, str], tuple[float, float | None]]:
    return {k: (o.ondemand, o.spot) for k, o in world.offers.items()}


def assert_matches_world(result: PriceResult, world: World) -> None:
    frame = result.frame
    assert list(frame.columns) == list(PRICES_SCHEMA)
    assert [str(t) for t in frame.dtypes] == list(PRICES_SCHEMA.values())
    got = {
        (r, s): (od, sp)
        for r, s, od, sp in frame[["region", "size", "ondemand_price", "spot_price"]].itertuples(index=False)
    }
    truth = _truth(world)
    assert set(got) == set(truth)
    for key, (od, spot) in truth.items():
        assert got[key][0] == od, key
        if spot is None:
            assert math.isnan(got[key][1]), key
        else:
            assert got[key][1] == spot, key
    with_spot = frame[frame["spot_price"].notna()]
    expected = (with_spot["ondemand_price"] - with_spot["spot_price"]) / with_spot["ondemand_price"] * 100
    assert (with_spot["savings_pct"] - expected).abs().max() < 1e-9
    assert result.support_pairs == world.support_pairs()
    assert result.region_names == {
        r.name: r.display_name for r in world.regions if r.name in set(frame.region)
    }
    assert result.report.complete
    assert result.report.planned == result.report.succeeded + result.report.failed
    assert result.report.rows == len(frame) == len(truth)
    keys = list(zip(frame["region"], frame["size"], strict=True))
    assert keys == sorted(keys)


def test_clean_crawl_matches_ground_truth(world: World) -> None:
    emu = AzureEmulator(world)
    pages = emu.prices.page_count(PRICE_FILTER)
    result = _collector(emu.transport()).collect()
    assert_matches_world(result, world)
    assert result.report.planned == pages
    # Every page once; the only extra requests are probes/speculation past the end.
    assert pages <= result.report.requests <= pages + LOOKAHEAD + 3
    assert result.report.retried == 0


# Every kind the prices endpoint can show ("mixed": all of them at once).
# Seed 2 hits this collection with every kind (on so few requests another seed can miss one).
@each_fault("prices", rate=0.4, retry_after=7, seed=2)
def test_every_fault_kind_recovers_every_page(world: World, kind: str, faults: EndpointFaults) -> None:
    emu = AzureEmulator(world, faults=Faults(prices=faults))
    clock = FakeClock(NOW)
    result = _collector(emu.transport(), clock=clock, max_attempts=10).collect()
    assert_matches_world(result, world)
    if kind in FAILING_KINDS:
        assert result.report.retried > 0
        assert result.report.requests == sum(emu.stats.to_json()["prices"].values())
    if kind == "429":
        assert any(s >= 7 for s in clock.slept), "Retry-After: 7 must be honoured"


def _failing(emu: AzureEmulator, fails: Callable[[int], bool], status: int = 503) -> httpx.MockTransport:
    """The emulator, except that pages whose $skip index satisfies ``fails`` always answer ``status``."""

    def handler(request: httpx.Request) -> httpx.Response:
        skip = int(parse_qs(urlsplit(str(request.url)).query).get("$skip", ["0"])[0])
        if fails(skip // 1000):
            return httpx.Response(status, json={"error": {"code": "Down", "message": "always down"}})
        return emu.handler(request)

    return httpx.MockTransport(handler)


def test_a_page_that_always_fails_is_named_and_raises(world: World) -> None:
    emu = AzureEmulator(world)
    with pytest.raises(IncompleteDataError) as info:
        _collector(_failing(emu, lambda i: i == 3), max_attempts=3).collect()
    assert len(info.value.missing) == 1
    assert info.value.missing[0].startswith("page 3 ($skip=3000)")
    assert "HTTP 503" in info.value.missing[0] and "3 attempt" in info.value.missing[0]


def test_allow_partial_returns_the_rest_and_lists_the_gap(world: World) -> None:
    emu = AzureEmulator(world)
    pages = emu.prices.page_count(PRICE_FILTER)
    result = _collector(_failing(emu, lambda i: i in (2, 5)), max_attempts=2, allow_partial=True).collect()
    report = result.report
    assert [f.what for f in report.failures] == ["page 2 ($skip=2000)", "page 5 ($skip=5000)"]
    assert all(f.status == 503 and f.attempts == 2 for f in report.failures)
    assert report.planned == pages == report.succeeded + report.failed
    assert not report.complete
    truth = _truth(world)
    assert 0 < len(result.frame) < len(truth)
    assert set(zip(result.frame["region"], result.frame["size"], strict=True)) <= set(truth)


def test_last_page_failing_is_still_accounted_for(world: World) -> None:
    emu = AzureEmulator(world)
    last = emu.prices.page_count(PRICE_FILTER) - 1
    result = _collector(_failing(emu, lambda i: i == last), max_attempts=2, allow_partial=True).collect()
    assert [f.what for f in result.report.failures] == [f"page {last} ($skip={last * 1000})"]


def test_first_page_failing_raises(world: World) -> None:
    emu = AzureEmulator(world)
    with pytest.raises(IncompleteDataError, match=r"page 0 \(\$skip=0\)"):
        _collector(_failing(emu, lambda i: i == 0, status=500), max_attempts=2).collect()


def test_not_found_is_not_retried(world: World) -> None:
    emu = AzureEmulator(world)
    collector = _collector(_failing(emu, lambda i: i == 0, status=404), allow_partial=True)
    result = collector.collect()
    failure = result.report.failures[0]
    assert failure.what == "page 0 ($skip=0)" and failure.status == 404 and failure.attempts == 1
    assert result.report.retried == 0 and list(result.frame.columns) == list(PRICES_SCHEMA)


@pytest.mark.parametrize("pages", [1, 2, 3, 5, 9, 17, 40])
def test_schedule_fetches_each_page_once_and_wastes_little(pages: int) -> None:
    """A synthetic list of ``pages`` pages: everything fetched, little fetched past the end."""
    sent: list[int] = []
    total = pages * 1000 - 500

    def handler(request: httpx.Request) -> httpx.Response:
        skip = int(parse_qs(urlsplit(str(request.url)).query).get("$skip", ["0"])[0])
        sent.append(skip // 1000)
        n = max(0, min(1000, total - skip))
        items = [
            {
                "armRegionName": "eastus",
                "location": "US East",
                "armSkuName": f"Standard_X{skip + i}",
                "meterName": "X Spot",
                "skuName": "X Spot",
                "productName": "Virtual Machines X Series",
                "type": "Consumption",
                "retailPrice": 0.5,
                "effectiveStartDate": "2025-01-01T00:00:00Z",
            }
            for i in range(n)
        ]
        link = f"{BASE}/api/retail/prices?$skip={skip + 1000}" if skip + 1000 < total else None
        return httpx.Response(200, json={"Items": items, "NextPageLink": link, "Count": n})

    result = _collector(httpx.MockTransport(handler), concurrency=16).collect()
    assert len(result.frame) == total
    assert len(sent) == len(set(sent)), "no page is fetched twice"
    assert set(range(pages)) <= set(sent)
    assert len(sent) - pages <= LOOKAHEAD + math.ceil(math.log2(pages + 1)) + 2


def test_loopback_with_faults(world: World) -> None:
    faults = EndpointFaults(
        errors={500: 0.1, 503: 0.1}, reset_rate=0.05, truncated_rate=0.05, latency=0.01, stall=0.2, seed=11
    )
    emu = AzureEmulator(world, faults=Faults(prices=faults))
    with emu.serve() as base_url:
        collector = PriceCollector(
            endpoints=AzureEndpoints.single(base_url), backoff=Backoff(base=0.01, cap=0.05), max_attempts=8
        )
        result = collector.collect()
    assert_matches_world(result, world)
    assert result.report.retried > 0


def test_progress_reports_pages(world: World) -> None:
    seen: list[tuple[int, int | None]] = []
    emu = AzureEmulator(world)
    _collector(emu.transport(), progress=lambda done, total: seen.append((done, total))).collect()
    assert seen and seen[-1][1] is not None and seen[-1][0] >= seen[-1][1]


# --- the pure part: filters and the latest effective price -----------------------------------


def _row(
    region: str = "eastus",
    size: str = "Standard_D2s_v3",
    meter: str = "D2s v3",
    product: str = "Virtual Machines DSv3 Series",
    price: float = 1.0,
    start: str | None = "2025-01-01T00:00:00Z",
    end: str | None = None,
    type_: str = "Consumption",
    sku: str | None = None,
    location: str = "US East",
) -> tuple[object, ...]:
    return (
        region,
        location,
        size,
        meter,
        sku if sku is not None else meter,
        product,
        type_,
        price,
        start,
        end,
    )


def test_filters_and_latest_effective_price() -> None:
    rows = [
        _row(price=1.0, start="2024-01-01T00:00:00Z"),
        _row(price=1.2, start="2025-06-01T00:00:00Z"),  # latest effective: wins
        _row(price=9.9, start="2030-01-01T00:00:00Z"),  # not effective yet
        _row(meter="D2s v3 Spot", price=0.3, start="2025-01-01T00:00:00Z"),
        _row(meter="D2s v3 Spot", price=0.2, start="2024-01-01T00:00:00Z", end="2025-01-01T00:00:00Z"),
        _row(meter="D2s v3 Low Priority", price=0.1),
        _row(meter="D2s v3 Spot", product="Virtual Machines DSv3 Series Windows", price=0.05),
        _row(meter="D2s v3 Spot", type_="DevTestConsumption", price=0.01),
        _row(meter="D2s v3 Expired", price=0.02),
        _row(size="Standard_E2_v3", meter="E2 v3", price=2.0, end="2025-12-01T00:00:00Z"),  # expired
        _row(size="Standard_F2", meter="F2", price=0.0),
        _row(size="Standard_F2", meter="F2 Spot", price=0.1),
        _row(region="usgovvirginia", meter="D2s v3 Spot", price=0.1),
        _row(region="chinaeast2", meter="D2s v3 Spot", price=0.1),
        _row(region="germanycentral", meter="D2s v3 Spot", price=0.1),
        _row(region="germanywestcentral", meter="D2s v3 Spot", price=0.4, location="DE West Central"),
        _row(region="", meter="D2s v3 Spot", price=0.4),
    ]
    frame, names = prices_frame(rows, now=pd.Timestamp(NOW))
    got = {
        (r, s): (od, sp, sv)
        for r, s, od, sp, sv in frame[
            ["region", "size", "ondemand_price", "spot_price", "savings_pct"]
        ].itertuples(index=False)
    }
    assert set(got) == {
        ("eastus", "Standard_D2s_v3"),
        ("eastus", "Standard_F2"),
        ("germanywestcentral", "Standard_D2s_v3"),
    }
    od, spot, savings = got[("eastus", "Standard_D2s_v3")]
    assert (od, spot) == (1.2, 0.3) and savings == pytest.approx(75.0)
    assert math.isnan(got[("eastus", "Standard_F2")][2])  # od 0: no savings, not a division by zero
    assert math.isnan(got[("germanywestcentral", "Standard_D2s_v3")][0])
    assert names == {"eastus": "US East", "germanywestcentral": "DE West Central"}


def test_same_date_versions_take_the_lower_price_and_missing_dates_sort_first() -> None:
    rows = [_row(price=2.0), _row(price=1.5), _row(price=0.7, start=None), _row(price=0.9, start="garbage")]
    frame, _ = prices_frame(rows, now=pd.Timestamp(NOW))
    assert frame["ondemand_price"].tolist() == [1.5]


def test_empty_input_gives_the_schema() -> None:
    frame, names = prices_frame([], now=pd.Timestamp(NOW))
    assert frame.empty and list(frame.columns) == list(PRICES_SCHEMA) and names == {}


@pytest.mark.parametrize(
    ("region", "sovereign"),
    [
        ("usgovvirginia", True),
        ("usgovarizona", True),
        ("usdodeast", True),
        ("usnateast", True),
        ("ussecwest", True),
        ("chinaeast2", True),
        ("germanycentral", True),
        ("germanynortheast", True),
        ("germanywestcentral", False),
        ("germanynorth", False),
        ("eastus", False),
        ("USGovTexas", True),
    ],
)
def test_sovereign_rule(region: str, sovereign: bool) -> None:
    assert is_sovereign(region) is sovereign


def test_a_page_size_other_than_1000_is_learned_from_page_0() -> None:
    """Pages of 100 items chained by NextPageLink: the speculative $skip=1000*k requests are dropped."""
    total = 2350

    def handler(request: httpx.Request) -> httpx.Response:
        skip = int(parse_qs(urlsplit(str(request.url)).query).get("$skip", ["0"])[0])
        n = max(0, min(100, total - skip))
        items = [
            {
                "armRegionName": "westus",
                "armSkuName": f"Standard_Y{skip + i}",
                "meterName": "Y",
                "productName": "Virtual Machines Y Series",
                "retailPrice": 1.0,
            }
            for i in range(n)
        ]
        link = f"{BASE}/api/retail/prices?$skip={skip + 100}" if skip + 100 < total else None
        return httpx.Response(200, json={"Items": items, "NextPageLink": link, "Count": n})

    result = _collector(httpx.MockTransport(handler)).collect()
    assert len(result.frame) == total and result.report.complete
    assert result.report.planned == 24 and "step 100" in result.report.notes[-1]


def test_concurrency_is_bounded() -> None:
    """Never more than ``concurrency`` requests on the wire at once (decoding pages do not count)."""
    import asyncio

    state = {"now": 0, "peak": 0}
    total = 60 * 1000 - 1

    async def handler(request: httpx.Request) -> httpx.Response:
        skip = int(parse_qs(urlsplit(str(request.url)).query).get("$skip", ["0"])[0])
        state["now"] += 1
        state["peak"] = max(state["peak"], state["now"])
        try:
            await asyncio.sleep(0.005)
        finally:  # requests past the end are cancelled mid-flight
            state["now"] -= 1
        n = max(0, min(1000, total - skip))
        link = f"{BASE}/api/retail/prices?$skip={skip + 1000}" if skip + 1000 < total else None
        return httpx.Response(200, json={"Items": [], "NextPageLink": link, "Count": n})

    result = _collector(httpx.MockTransport(handler), concurrency=5).collect()
    assert result.report.complete and result.report.planned == 60
    assert state["peak"] == 5


def test_a_list_that_never_ends_stops_at_max_pages() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        skip = int(parse_qs(urlsplit(str(request.url)).query).get("$skip", ["0"])[0])
        link = f"{BASE}/api/retail/prices?$skip={skip + 1000}"
        return httpx.Response(200, json={"Items": [], "NextPageLink": link, "Count": 0})

    sent = []

    def counting(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return handler(request)

    with pytest.raises(IncompleteDataError, match="max_pages=20"):
        _collector(httpx.MockTransport(counting), max_pages=20).collect()
    assert len(sent) == 20


def test_absurdly_nested_body_is_a_typed_error() -> None:
    deep = b"[" * 100_000 + b"]" * 100_000

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=deep)

    with pytest.raises(IncompleteDataError, match=r"page 0 .*not JSON"):
        _collector(httpx.MockTransport(handler), max_attempts=2).collect()


def test_next_page_link_to_another_host_is_not_followed() -> None:
    hosts: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        hosts.append(request.url.host)
        skip = int(parse_qs(urlsplit(str(request.url)).query).get("$skip", ["0"])[0])
        n = 1000 if skip < 3000 else (10 if skip == 3000 else 0)
        items = [
            {
                "armRegionName": "eastus",
                "armSkuName": f"Standard_Z{skip + i}",
                "meterName": "Z",
                "productName": "Virtual Machines Z Series",
                "retailPrice": 1.0,
            }
            for i in range(n)
        ]
        link = f"https://evil.example/api/retail/prices?$skip={skip + 1000}" if n == 1000 else None
        return httpx.Response(200, json={"Items": items, "NextPageLink": link, "Count": n})

    result = _collector(httpx.MockTransport(handler)).collect()
    assert len(result.frame) == 3010 and set(hosts) == {"emulator.test"}


def test_a_list_that_changes_during_the_crawl_is_reported() -> None:
    """Page 3 ends the list but later pages (probes) have items: the list moved under us."""

    def handler(request: httpx.Request) -> httpx.Response:
        skip = int(parse_qs(urlsplit(str(request.url)).query).get("$skip", ["0"])[0])
        n = 10 if skip == 3000 else 1000
        items = [
            {
                "armRegionName": "eastus",
                "armSkuName": f"Standard_W{skip + i}",
                "meterName": "W",
                "productName": "Virtual Machines W Series",
                "retailPrice": 1.0,
            }
            for i in range(n)
        ]
        return httpx.Response(200, json={"Items": items, "NextPageLink": None, "Count": n})

    with pytest.raises(IncompleteDataError, match="changed during the crawl"):
        _collector(httpx.MockTransport(handler)).collect()
