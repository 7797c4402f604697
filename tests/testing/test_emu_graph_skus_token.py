"""Resource Graph (REST and SDK), Compute SKUs and the token endpoints (including azure-identity)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from emu_support import EVICTION_QUERY

from spotlake.model import EVICTION_BUCKETS
from spotlake.testing.azure import AzureEmulator

GRAPH = "https://management.azure.com/providers/Microsoft.ResourceGraph/resources?api-version=2024-04-01"
SKUS_API = "2021-07-01"


def graph_all(
    client: httpx.Client, headers: dict[str, str], options: dict[str, object]
) -> list[dict[str, str]]:
    rows: list[dict[str, str]] = []
    token = None
    while True:
        opts = {**options, **({"$skipToken": token} if token else {})}
        body = client.post(GRAPH, json={"query": EVICTION_QUERY, "options": opts}, headers=headers).json()
        rows.extend(body["data"])
        token = body.get("$skipToken")
        if not token:
            return rows


def test_graph_rest_paging(emu: AzureEmulator, client: httpx.Client, auth: dict[str, str]) -> None:
    first = client.post(
        GRAPH,
        json={"subscriptions": list(emu.subscriptions), "query": EVICTION_QUERY, "options": {"$top": 100}},
        headers=auth,
    ).json()
    assert set(first) == {"totalRecords", "count", "data", "facets", "resultTruncated", "$skipToken"}
    assert first["count"] == 100 and first["resultTruncated"] == "false" and first["facets"] == []
    rows = graph_all(client, auth, {"$top": 100})
    truth = emu.world.eviction_rows()
    assert [(r["location"], r["skuName"], r["evictionRate"]) for r in rows] == list(truth)
    assert first["totalRecords"] == len(truth) > 100
    assert {r["evictionRate"] for r in rows} <= set(EVICTION_BUCKETS)


def test_graph_table_format_and_errors(
    emu: AzureEmulator, client: httpx.Client, auth: dict[str, str]
) -> None:
    body = client.post(
        GRAPH, json={"query": EVICTION_QUERY, "options": {"resultFormat": "table", "$top": 5}}, headers=auth
    ).json()
    assert [c["name"] for c in body["data"]["columns"]] == ["location", "skuName", "evictionRate"]
    assert len(body["data"]["rows"]) == 5
    bad_query = client.post(GRAPH, json={"query": "Resources | take 1"}, headers=auth)
    assert bad_query.status_code == 400 and bad_query.json()["error"]["details"][0]["code"] == "InvalidQuery"
    bad_top = client.post(GRAPH, json={"query": EVICTION_QUERY, "options": {"$top": 5000}}, headers=auth)
    assert bad_top.status_code == 400
    bad_token = client.post(
        GRAPH, json={"query": EVICTION_QUERY, "options": {"$skipToken": "!!"}}, headers=auth
    )
    assert bad_token.status_code == 400
    assert client.post(GRAPH, json={"query": EVICTION_QUERY}).status_code == 401
    unknown_sub = client.post(GRAPH, json={"query": EVICTION_QUERY, "subscriptions": ["nope"]}, headers=auth)
    assert unknown_sub.status_code == 400


def test_graph_through_the_sdk(emu: AzureEmulator) -> None:
    from azure.identity import ClientSecretCredential
    from azure.mgmt.resourcegraph import ResourceGraphClient
    from azure.mgmt.resourcegraph.models import QueryRequest, QueryRequestOptions

    credential = ClientSecretCredential(
        emu.tenant_id,
        emu.client_id,
        emu.client_secret,
        authority="https://login.emulator.test",
        disable_instance_discovery=True,
        transport=emu.azure_transport(),
    )
    client = ResourceGraphClient(
        credential, base_url="https://management.emulator.test", transport=emu.azure_transport()
    )
    subs = list(emu.subscriptions)
    rows: list[Any] = []
    token = None
    pages = 0
    while True:
        options = QueryRequestOptions(top=200, skip_token=token)
        result = client.resources(QueryRequest(subscriptions=subs, query=EVICTION_QUERY, options=options))
        rows.extend(list(result.data))
        pages += 1
        token = result.skip_token
        if not token:
            break
    assert pages > 1 and result.total_records == len(rows)
    assert [(r["location"], r["skuName"], r["evictionRate"]) for r in rows] == list(emu.world.eviction_rows())
    assert emu.stats.count("graph", 200) == pages and emu.stats.count("token", 200) >= 1


def test_skus_paging_and_shape(emu: AzureEmulator, client: httpx.Client, auth: dict[str, str]) -> None:
    url = (
        f"https://management.azure.com/subscriptions/{emu.subscriptions[0]}/providers/Microsoft.Compute/skus"
    )
    page = client.get(url, params={"api-version": SKUS_API}, headers=auth).json()
    items = list(page["value"])
    pages = 1
    while page.get("nextLink"):
        page = client.get(page["nextLink"], headers=auth).json()
        items.extend(page["value"])
        pages += 1
    assert pages > 1
    assert {(i["locations"][0], i["name"]) for i in items} == emu.world.offered_pairs()
    d2 = next(i for i in items if i["name"] == "Standard_D2s_v3" and i["locations"] == ["eastus"])
    assert d2["resourceType"] == "virtualMachines" and d2["tier"] == "Standard" and d2["size"] == "D2s_v3"
    assert d2["family"] == "standardDSv3Family"
    assert d2["locationInfo"] == [{"location": "eastus", "zones": ["1", "2", "3"], "zoneDetails": []}]
    caps = {c["name"]: c["value"] for c in d2["capabilities"]}
    assert caps["vCPUs"] == "2" and caps["MemoryGB"] == "8"
    assert any(i["restrictions"] for i in items)
    one = client.get(
        url, params={"api-version": SKUS_API, "$filter": "location eq 'westus'"}, headers=auth
    ).json()
    assert one["value"] and all(i["locations"] == ["westus"] for i in one["value"])
    assert client.get(url, params={"api-version": SKUS_API}).status_code == 401
    assert client.get(url, headers=auth).status_code == 400


def test_token_endpoint_and_openid_configuration(emu: AzureEmulator) -> None:
    client = httpx.Client(transport=emu.transport(), base_url="https://login.emulator.test")
    config = client.get(f"/{emu.tenant_id}/v2.0/.well-known/openid-configuration").json()
    assert config["token_endpoint"] == f"https://login.emulator.test/{emu.tenant_id}/oauth2/v2.0/token"
    form = {
        "grant_type": "client_credentials",
        "client_id": emu.client_id,
        "client_secret": emu.client_secret,
        "scope": "https://management.azure.com/.default",
    }
    ok = client.post(f"/{emu.tenant_id}/oauth2/v2.0/token", data=form).json()
    assert ok["token_type"] == "Bearer" and ok["expires_in"] == 3600 and ok["access_token"].count(".") == 2
    bad = client.post(f"/{emu.tenant_id}/oauth2/v2.0/token", data={**form, "client_secret": "wrong"})
    assert bad.status_code == 401 and bad.json()["error"] == "invalid_client"
    unknown = client.post("/00000000-0000-0000-0000-000000000000/oauth2/v2.0/token", data=form)
    assert unknown.status_code == 400 and "AADSTS90002" in unknown.json()["error_description"]
    grant = client.post(f"/{emu.tenant_id}/oauth2/v2.0/token", data={**form, "grant_type": "password"})
    assert grant.status_code == 400


def test_azure_identity_client_secret_flow_offline(emu: AzureEmulator, client: httpx.Client) -> None:
    from azure.core.exceptions import ClientAuthenticationError
    from azure.identity import ClientSecretCredential

    credential = ClientSecretCredential(
        emu.tenant_id,
        emu.client_id,
        emu.client_secret,
        authority="https://login.microsoftonline.com",
        disable_instance_discovery=True,
        transport=emu.azure_transport(),
    )
    token = credential.get_token("https://management.azure.com/.default")
    body = {"desiredLocations": ["eastus"], "desiredSizes": [{"sku": "Standard_D2s_v3"}], "desiredCount": 1}
    url = (
        f"/subscriptions/{emu.subscriptions[0]}/providers/Microsoft.Compute/locations/eastus"
        "/placementScores/spot/generate?api-version=2025-06-05"
    )
    assert client.post(url, json=body, headers={"Authorization": f"Bearer {token.token}"}).status_code == 200
    wrong = ClientSecretCredential(
        emu.tenant_id,
        emu.client_id,
        "not-the-secret",
        authority="https://login.microsoftonline.com",
        disable_instance_discovery=True,
        transport=emu.azure_transport(),
    )
    with pytest.raises(ClientAuthenticationError):
        wrong.get_token("https://management.azure.com/.default")


def test_http_authority_is_refused_by_azure_identity(emu: AzureEmulator) -> None:
    # Documented limit: azure-identity insists on an https authority, so the loopback server's
    # http URL cannot be the authority; use the in-process azure_transport() (any https host).
    from azure.identity import ClientSecretCredential

    with pytest.raises(ValueError, match="https"):
        ClientSecretCredential(
            emu.tenant_id,
            emu.client_id,
            emu.client_secret,
            authority="http://127.0.0.1:1",
            disable_instance_discovery=True,
        )


def test_secret_never_in_repr(emu: AzureEmulator) -> None:
    assert emu.client_secret not in repr(emu)
    assert emu.client_secret not in repr(emu.stats)


def test_unknown_route_is_404(client: httpx.Client) -> None:
    r = client.get("/nothing/here")
    assert r.status_code == 404 and r.json()["error"]["code"] == "NotFound"
