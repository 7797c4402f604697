"""Retail Prices endpoint: envelope, paging, $filter, and rows that reduce exactly to the world's truth."""

from __future__ import annotations

import csv
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from emu_support import SPEC_FILTER

from spotlake.testing.azure import AzureEmulator
from spotlake.testing.azure.prices import PAGE_SIZE, PriceTable
from spotlake.testing.regions import SOVEREIGN_REGIONS
from spotlake.testing.world import World

PRICES = "https://prices.azure.com/api/retail/prices"
ITEM_FIELDS = {
    "currencyCode",
    "tierMinimumUnits",
    "retailPrice",
    "unitPrice",
    "armRegionName",
    "location",
    "effectiveStartDate",
    "meterId",
    "meterName",
    "productId",
    "skuId",
    "productName",
    "skuName",
    "serviceName",
    "serviceId",
    "serviceFamily",
    "unitOfMeasure",
    "type",
    "isPrimaryMeterRegion",
    "armSkuName",
}


def crawl(client: httpx.Client, odata: str = SPEC_FILTER) -> tuple[list[dict[str, Any]], int]:
    page = client.get(PRICES, params={"currencyCode": "'USD'", "$filter": odata}).json()
    items, pages = list(page["Items"]), 1
    while page["NextPageLink"]:
        page = client.get(page["NextPageLink"]).json()
        items.extend(page["Items"])
        pages += 1
    return items, pages


def reduce_like_spec(items: list[dict[str, Any]], now: datetime) -> dict[tuple[str, str], dict[str, float]]:
    """SPEC 1.2's filters, written independently of the emulator: the truth must come out."""
    sovereign = {name for name, _ in SOVEREIGN_REGIONS}
    best: dict[tuple[str, str, str], tuple[str, float]] = {}
    for it in items:
        if "Windows" in it["productName"] or it["type"] != "Consumption":
            continue
        if "Low Priority" in it["meterName"] or "Expired" in it["meterName"]:
            continue
        if it["armRegionName"] in sovereign:
            continue
        start = it["effectiveStartDate"]
        if datetime.fromisoformat(start.replace("Z", "+00:00")) > now:
            continue
        kind = "spot" if it["meterName"].endswith(" Spot") else "ondemand"
        key = (it["armRegionName"], it["armSkuName"], kind)
        if key not in best or start > best[key][0]:
            best[key] = (start, it["retailPrice"])
    out: dict[tuple[str, str], dict[str, float]] = {}
    for (region, size, kind), (_, price) in best.items():
        out.setdefault((region, size), {})[kind] = price
    return out


def test_full_crawl_reduces_to_world_prices(emu: AzureEmulator, client: httpx.Client) -> None:
    items, pages = crawl(client)
    assert pages == emu.prices.page_count(SPEC_FILTER) and pages > 5
    assert len({(i["meterId"], i["effectiveStartDate"]) for i in items}) == len(items)
    truth = reduce_like_spec(items, datetime(2026, 6, 1, tzinfo=UTC))
    world = emu.world
    assert set(truth) == world.offered_pairs()
    for (region, size), prices in truth.items():
        od, spot = world.price(region, size)
        assert prices["ondemand"] == od
        assert prices.get("spot") == spot
    # The noise collectors must drop is really there.
    assert any("Windows" in i["productName"] for i in items)
    assert any(i["meterName"].endswith(" Low Priority") for i in items)
    assert any(i["type"] == "DevTestConsumption" for i in items)
    assert any("Expired" in i["meterName"] for i in items)
    assert any("effectiveEndDate" in i for i in items)
    assert any(i["effectiveStartDate"] > "2030" for i in items)
    assert any(i["armRegionName"].startswith("usgov") for i in items)


def test_first_version_is_not_the_truth(emu: AzureEmulator, client: httpx.Client) -> None:
    items, _ = crawl(client)
    first: dict[tuple[str, str], float] = {}
    for it in items:
        if it["meterName"].endswith(" Spot") and "Windows" not in it["productName"]:
            first.setdefault((it["armRegionName"], it["armSkuName"]), it["retailPrice"])
    wrong = [k for k, p in first.items() if k in emu.world.support_pairs() and emu.world.price(*k)[1] != p]
    assert wrong  # "whichever came first" (the original's bug) gets some prices wrong


def test_envelope_and_paging(emu: AzureEmulator, client: httpx.Client) -> None:
    r = client.get(PRICES, params={"currencyCode": "'USD'", "$filter": SPEC_FILTER})
    assert r.status_code == 200
    body = r.json()
    assert list(body) == [
        "BillingCurrency",
        "CustomerEntityId",
        "CustomerEntityType",
        "Items",
        "NextPageLink",
        "Count",
    ]
    assert body["BillingCurrency"] == "USD" and body["Count"] == PAGE_SIZE == len(body["Items"])
    assert set(body["Items"][0]) >= ITEM_FIELDS
    link = body["NextPageLink"]
    assert link.startswith("https://prices.azure.com/api/retail/prices?currencyCode='USD'&$filter=")
    assert parse_qs(urlsplit(link).query)["$skip"] == ["1000"]
    assert parse_qs(urlsplit(link).query)["$filter"] == [SPEC_FILTER]
    total = len(emu.prices.matching(SPEC_FILTER))
    last_skip = (total - 1) // PAGE_SIZE * PAGE_SIZE
    last = client.get(PRICES, params={"$filter": SPEC_FILTER, "$skip": last_skip}).json()
    assert last["NextPageLink"] is None and last["Count"] == total - last_skip
    beyond = client.get(PRICES, params={"$skip": total + 5000}).json()
    assert beyond["Items"] == [] and beyond["NextPageLink"] is None


def test_skip_pages_are_a_stable_partition(client: httpx.Client) -> None:
    a = client.get(PRICES, params={"$filter": SPEC_FILTER, "$skip": 1000}).json()["Items"]
    b = client.get(PRICES, params={"$filter": SPEC_FILTER, "$skip": 1500}).json()["Items"]
    assert a[500:] == b[:500]


def test_filter_subset(emu: AzureEmulator, client: httpx.Client) -> None:
    odata = "armRegionName eq 'eastus' and contains(meterName, 'Spot') and priceType eq 'Consumption'"
    items, _ = crawl(client, odata)
    assert items and all(i["armRegionName"] == "eastus" and "Spot" in i["meterName"] for i in items)
    items, _ = crawl(client, "armSkuName eq 'Standard_D2s_v3' and serviceName eq 'Virtual Machines'")
    assert {i["armSkuName"] for i in items} == {"Standard_D2s_v3"}
    devtest, _ = crawl(client, "priceType eq 'DevTestConsumption'")
    assert devtest and all(i["type"] == "DevTestConsumption" for i in devtest)
    none, pages = crawl(client, "armRegionName eq 'atlantis'")
    assert none == [] and pages == 1


@pytest.mark.parametrize("odata", ["armRegionName gt 'a'", "nosuchfield eq 'x'", "contains(meterName 'x')"])
def test_unparseable_filter_is_400(client: httpx.Client, odata: str) -> None:
    r = client.get(PRICES, params={"$filter": odata})
    assert r.status_code == 400 and "error" in r.json()


def test_currency_and_bad_parameters(client: httpx.Client) -> None:
    usd = client.get(PRICES, params={"currencyCode": "'USD'"}).json()["Items"][0]
    eur = client.get(PRICES, params={"currencyCode": "'EUR'"}).json()
    assert eur["BillingCurrency"] == "EUR" and eur["Items"][0]["currencyCode"] == "EUR"
    assert eur["Items"][0]["retailPrice"] == pytest.approx(usd["retailPrice"] * 0.92, abs=1e-6)
    assert client.get(PRICES, params={"currencyCode": "'XXX'"}).status_code == 400
    assert client.get(PRICES, params={"$skip": "-1"}).status_code == 400
    assert client.get(PRICES, params={"$skip": "ten"}).status_code == 400


def test_default_world_crawl_is_hundreds_of_pages() -> None:
    table = PriceTable(World.generate(0))
    assert 200 <= table.page_count(SPEC_FILTER) <= 400


def test_async_client_uses_the_same_transport(emu: AzureEmulator) -> None:
    import asyncio

    async def fetch() -> list[int]:
        async with httpx.AsyncClient(transport=emu.transport()) as client:
            replies = await asyncio.gather(
                *(client.get(PRICES, params={"$skip": s}) for s in (0, 1000, 2000))
            )
            return [r.json()["Count"] for r in replies]

    assert asyncio.run(fetch()) == [1000, 1000, 1000]


# The committed excerpt of the SkyPilot catalog (tests/fixtures/README.md), and the full catalog beside
# the repository when it is there.
CATALOG = Path(__file__).resolve().parents[3] / "shared" / "data" / "azure_vms_catalog.csv"
EXCERPT = Path(__file__).resolve().parents[1] / "fixtures" / "catalog_world_excerpt.csv"


def catalog_prices(path: Path) -> dict[tuple[str, str], dict[str, float]]:
    """The catalog's own (region, size) -> prices, read with nothing but :mod:`csv`."""
    with path.open(newline="") as fh:
        return {
            (r["Region"], r["InstanceType"]): {
                "ondemand": float(r["Price"]),
                **({"spot": float(r["SpotPrice"])} if r["SpotPrice"] else {}),
            }
            for r in csv.DictReader(fh)
            if r["Price"]
        }


@pytest.mark.parametrize(
    ("path", "n_pages", "n_spot"),
    # The excerpt always (a plain clone has no ../shared), the full catalog when it is there.
    [
        pytest.param(EXCERPT, 3, 317, id="excerpt"),
        *([pytest.param(CATALOG, 51, 5658, id="full")] if CATALOG.is_file() else []),
    ],
)
def test_catalog_world_crawl_gives_the_catalog_prices(path: Path, n_pages: int, n_spot: int) -> None:
    world = World.from_catalog(path)
    emu = AzureEmulator(world)
    items, pages = crawl(httpx.Client(transport=emu.transport()))
    assert pages == n_pages
    truth = reduce_like_spec(items, datetime(2026, 6, 1, tzinfo=UTC))
    assert len(truth) == len(world.offered_pairs()) and sum("spot" in p for p in truth.values()) == n_spot
    assert truth[("eastus", "Basic_A1")] == {"ondemand": 0.023, "spot": 0.0161}
    assert truth == catalog_prices(path)
