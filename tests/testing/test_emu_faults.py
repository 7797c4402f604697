"""Fault injection: every knob, determinism, retries that can succeed, and configuration errors."""

from __future__ import annotations

import json

import httpx
import pytest
from emu_support import EVICTION_QUERY, SPEC_FILTER, sps_body, sps_url

from spotlake.clock import FakeClock
from spotlake.errors import ConfigError
from spotlake.model import KNOWN_SCORES
from spotlake.testing.azure import AzureEmulator, EndpointFaults, Faults
from spotlake.testing.faults import ALTERING_KINDS, FAILING_KINDS, FAULT_KINDS, fault_matrix
from spotlake.testing.world import World

PRICES = "https://prices.azure.com/api/retail/prices"
GRAPH = "https://management.azure.com/providers/Microsoft.ResourceGraph/resources?api-version=2024-04-01"


def make(world: World, **faults: EndpointFaults) -> tuple[AzureEmulator, httpx.Client]:
    emu = AzureEmulator(world, clock=FakeClock(), faults=Faults(**faults), sps_calls_per_hour=10_000)
    return emu, httpx.Client(transport=emu.transport())


def test_latency_waits_on_the_emulator_clock(small_world: World) -> None:
    emu, client = make(small_world, prices=EndpointFaults(latency=0.1, jitter=0.05))
    assert isinstance(emu.clock, FakeClock)
    before = emu.clock.monotonic()
    for skip in range(0, 5000, 1000):
        assert client.get(PRICES, params={"$skip": skip}).status_code == 200
    waited = emu.clock.slept
    assert len(waited) == 5 and all(0.1 <= w <= 0.15 for w in waited) and len(set(waited)) > 1
    assert emu.clock.monotonic() - before == pytest.approx(sum(waited))


def test_timeout_and_reset(small_world: World) -> None:
    _, client = make(small_world, prices=EndpointFaults(timeout_rate=1.0))
    with pytest.raises(httpx.ReadTimeout):
        client.get(PRICES)
    emu, client = make(small_world, prices=EndpointFaults(reset_rate=1.0))
    with pytest.raises(httpx.RemoteProtocolError):
        client.get(PRICES)
    assert emu.stats.count("prices", "reset") == 1


@pytest.mark.parametrize("status", [429, 500, 503])
def test_injected_statuses(small_world: World, status: int) -> None:
    emu, client = make(
        small_world,
        prices=EndpointFaults(errors={status: 1.0}, retry_after=7),
        graph=EndpointFaults(errors={status: 1.0}),
    )
    r = client.get(PRICES)
    assert r.status_code == status
    if status == 429:
        assert r.headers["Retry-After"] == "7"
    else:
        assert r.json()["error"]["code"]
    assert client.post(GRAPH, json={"query": EVICTION_QUERY}).status_code == status
    assert emu.stats.count("prices", status) == 1


def test_injected_sps_429_is_the_plain_text_form(small_world: World) -> None:
    emu, client = make(small_world, sps=EndpointFaults(errors={429: 1.0}, retry_after=30))
    r = client.post(sps_url(emu.subscriptions[0]), json=sps_body(["eastus"], ["Standard_D2s_v3"]))
    assert r.status_code == 429 and r.headers["Retry-After"] == "30"
    assert r.text.endswith("Please try again after 30 seconds.")


def test_retries_of_the_same_request_can_succeed_deterministically(small_world: World) -> None:
    def outcomes() -> list[int]:
        _, client = make(small_world, prices=EndpointFaults(errors={503: 0.5}, seed=11))
        return [client.get(PRICES, params={"$skip": 1000}).status_code for _ in range(20)]

    first = outcomes()
    assert set(first) == {200, 503}
    assert outcomes() == first  # same seed, same attempts -> same story


def test_truncated_and_malformed_json(small_world: World) -> None:
    _, client = make(small_world, prices=EndpointFaults(truncated_rate=1.0))
    r = client.get(PRICES)
    assert r.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        r.json()
    _, client = make(small_world, prices=EndpointFaults(malformed_rate=1.0))
    r = client.get(PRICES)
    assert r.status_code == 200 and r.text.startswith("<html>")


def test_empty_next_link_on_a_full_page(small_world: World) -> None:
    _, client = make(small_world, prices=EndpointFaults(empty_next_link_rate=1.0))
    links = []
    for skip in range(0, 8000, 1000):
        body = client.get(PRICES, params={"$filter": SPEC_FILTER, "$skip": skip}).json()
        assert body["Count"] == 1000
        links.append(body["NextPageLink"])
    assert set(links) == {None, ""}  # both spellings seen in the wild


def test_drift(small_world: World) -> None:
    emu, client = make(
        small_world,
        prices=EndpointFaults(drift_rate=1.0),
        sps=EndpointFaults(drift_rate=1.0),
        graph=EndpointFaults(drift_rate=1.0),
        skus=EndpointFaults(drift_rate=1.0),
    )
    item = client.get(PRICES).json()["Items"][0]
    assert "isPrimaryMeterRegion" not in item and "retailPrice" in item
    headers = {"Authorization": f"Bearer {emu.issue_token()}"}
    body = sps_body([r.name for r in small_world.regions[:8]], [s.name for s in small_world.sizes[:5]])
    scores = client.post(sps_url(emu.subscriptions[0]), json=body, headers=headers).json()["placementScores"]
    assert any(s["score"] not in KNOWN_SCORES for s in scores)
    assert all("isQuotaAvailable" not in s for s in scores)
    rows = client.post(GRAPH, json={"query": EVICTION_QUERY}, headers=headers).json()["data"]
    assert any(r["evictionRate"] in ("20-25", "unknown") for r in rows)
    skus_url = (
        f"https://management.azure.com/subscriptions/{emu.subscriptions[0]}/providers/Microsoft.Compute/skus"
    )
    items = client.get(skus_url, params={"api-version": "2021-07-01"}, headers=headers).json()["value"]
    assert any("restrictions" not in i for i in items) and any("restrictions" in i for i in items)


def test_token_endpoint_faults_reach_azure_identity(small_world: World) -> None:
    from azure.core.exceptions import ClientAuthenticationError, ServiceRequestError
    from azure.identity import ClientSecretCredential

    emu = AzureEmulator(small_world, faults=Faults(token=EndpointFaults(reset_rate=1.0)))
    credential = ClientSecretCredential(
        emu.tenant_id,
        emu.client_id,
        emu.client_secret,
        authority="https://login.emulator.test",
        disable_instance_discovery=True,
        transport=emu.azure_transport(),
        retry_total=0,
    )
    with pytest.raises((ClientAuthenticationError, ServiceRequestError)):
        credential.get_token("https://management.azure.com/.default")
    assert emu.stats.count("token", "reset") >= 1


def test_faults_parse() -> None:
    faults = Faults.parse(["prices.latency=0.1", "sps.errors.429=0.2", "all.reset_rate=0.01", "graph.seed=7"])
    assert faults.prices.latency == 0.1 and faults.prices.reset_rate == 0.01
    assert faults.sps.errors == {429: 0.2} and faults.token.reset_rate == 0.01
    assert faults.graph.seed == 7 and isinstance(faults.graph.seed, int)
    assert Faults.parse([]) == Faults()
    for bad in ["prices", "moon.latency=1", "prices.speed=1", "prices.latency=fast", "sps.errors=0.1"]:
        with pytest.raises(ConfigError):
            Faults.parse([bad])


@pytest.mark.parametrize(
    "kwargs",
    [
        {"latency": -1.0},
        {"timeout_rate": 1.5},
        {"errors": {418: 0.1}},
        {"errors": {429: 0.7, 500: 0.7}},
        {"timeout_rate": 0.6, "reset_rate": 0.6},
    ],
)
def test_endpoint_faults_validation(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        EndpointFaults(**kwargs)  # type: ignore[arg-type]


def test_decisions_are_pure() -> None:
    f = EndpointFaults(errors={500: 0.3}, timeout_rate=0.1, drift_rate=0.2, jitter=1.0, seed=5)
    assert f.decide("prices", "GET /x", 1) == f.decide("prices", "GET /x", 1)
    kinds = {f.decide("prices", f"GET /{i}", 1).kind for i in range(200)}
    assert kinds == {"ok", "status", "timeout"}
    assert not EndpointFaults().active and f.active


# --- fault_matrix: one EndpointFaults per kind -------------------------------------------------


def _first_price_page(world: World, faults: EndpointFaults) -> tuple[AzureEmulator, httpx.Response]:
    emu, client = make(world, prices=faults)
    return emu, client.get(PRICES, params={"$filter": SPEC_FILTER})


@pytest.mark.parametrize("kind", FAULT_KINDS)
def test_fault_matrix_kind_at_rate_one_is_that_fault(small_world: World, kind: str) -> None:
    faults = fault_matrix("prices", rate=1.0, retry_after=7, latency=0.5)[kind]
    if kind == "mixed":  # every kind at once: each failing kind at rate / 8, links rate / 2, drift rate / 4
        assert faults == EndpointFaults(
            errors={429: 1 / 8, 500: 1 / 8, 502: 1 / 8, 503: 1 / 8, 504: 1 / 8},
            timeout_rate=1 / 8,
            reset_rate=1 / 8,
            truncated_rate=1 / 8,
            malformed_rate=1 / 8,
            empty_next_link_rate=1 / 2,
            drift_rate=1 / 4,
            retry_after=7,
        )
        return
    if kind == "timeout":
        with pytest.raises(httpx.ReadTimeout):
            _first_price_page(small_world, faults)
        return
    if kind == "reset":
        with pytest.raises(httpx.RemoteProtocolError):
            _first_price_page(small_world, faults)
        return
    emu, r = _first_price_page(small_world, faults)
    if kind.isdigit():
        assert r.status_code == int(kind) and emu.stats.count("prices", int(kind)) == 1
        assert kind != "429" or r.headers["Retry-After"] == "7"
        return
    assert r.status_code == 200
    if kind == "truncated":
        with pytest.raises(json.JSONDecodeError):
            r.json()
    elif kind == "malformed":
        assert r.text.startswith("<html>")
    elif kind == "empty-next-link":
        assert r.json()["Count"] == 1000 and r.json()["NextPageLink"] in (None, "")
    elif kind == "drift":
        assert all("isPrimaryMeterRegion" not in item for item in r.json()["Items"])
    else:
        assert kind == "latency"
        assert isinstance(emu.clock, FakeClock) and 0.5 <= emu.clock.slept[0] <= 0.75
        assert r.json()["NextPageLink"]


def test_fault_matrix_fits_each_endpoint() -> None:
    assert list(fault_matrix()) == list(FAULT_KINDS) == list(fault_matrix("prices"))
    assert set(FAULT_KINDS) == {*FAILING_KINDS, *ALTERING_KINDS, "latency", "mixed"}
    for endpoint in ("sps", "graph", "skus"):
        matrix = fault_matrix(endpoint)
        assert "empty-next-link" not in matrix and matrix["mixed"].empty_next_link_rate == 0
    token = fault_matrix("token")
    assert "drift" not in token and token["mixed"].drift_rate == 0
    picked = fault_matrix("graph", kinds=["reset", "429"], rate=0.5, seed=9, retry_after=3)
    assert picked == {
        "reset": EndpointFaults(reset_rate=0.5, seed=9, retry_after=3),
        "429": EndpointFaults(errors={429: 0.5}, seed=9, retry_after=3),
    }
    assert all(f.active for f in fault_matrix().values())


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        (("moon",), {}, "unknown emulator endpoint"),
        ((), {"kinds": ["418"]}, "unknown fault kind"),
        (("graph",), {"kinds": ["empty-next-link"]}, "cannot show"),
        (("token",), {"kinds": ["drift"]}, "cannot show"),
        ((), {"rate": 0.0}, "rate"),
        ((), {"rate": 1.5}, "rate"),
    ],
)
def test_fault_matrix_refuses_what_it_cannot_build(
    args: tuple[str, ...], kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        fault_matrix(*args, **kwargs)  # type: ignore[arg-type]
