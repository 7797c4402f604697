"""The loopback server: the CLI subprocess, the in-thread server, admin endpoints, faults on a socket."""

from __future__ import annotations

import concurrent.futures
import json
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest
from emu_support import SPEC_FILTER, sps_body, sps_url

from spotlake.testing.azure import AzureEmulator, EndpointFaults, Faults
from spotlake.testing.world import World


@pytest.fixture
def served() -> Iterator[tuple[str, dict[str, object]]]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "spotlake.testing.azure",
            "serve",
            "--port",
            "0",
            "--seed",
            "5",
            "--regions",
            "20",
            "--sizes",
            "100",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line, proc.stderr.read() if proc.stderr else "no output"
        url, _, info = line.strip().partition(" ")
        yield url, json.loads(info)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def token_for(client: httpx.Client, info: dict[str, object]) -> str:
    form = {
        "grant_type": "client_credentials",
        "client_id": info["client_id"],
        "client_secret": info["client_secret"],
        "scope": "https://management.azure.com/.default",
    }
    r = client.post(f"/{info['tenant_id']}/oauth2/v2.0/token", data=form)
    assert r.status_code == 200
    return str(r.json()["access_token"])


def test_cli_server_enforces_the_limits(served: tuple[str, dict[str, object]]) -> None:
    url, info = served
    assert url.startswith("http://127.0.0.1:") and info["url"] == url
    subs = info["subscriptions"]
    assert isinstance(subs, list)
    with httpx.Client(base_url=url, timeout=10) as client:
        assert client.get("/_emulator/health").json()["status"] == "ok"
        prices = client.get("/api/retail/prices", params={"$filter": SPEC_FILTER}).json()
        assert prices["Count"] == 1000 and prices["NextPageLink"].startswith(url)
        headers = {"Authorization": f"Bearer {token_for(client, info)}"}
        world = World.generate(5, n_regions=20, n_sizes=100)
        regions = [r.name for r in world.regions]
        sizes = [s.name for s in world.sizes]
        endpoint = sps_url(subs[0], "eastus").removeprefix("https://management.azure.com")
        r9 = client.post(endpoint, json=sps_body(regions[:9], sizes[:5]), headers=headers)
        assert r9.status_code == 400
        r6 = client.post(endpoint, json=sps_body(regions[:8], sizes[:6]), headers=headers)
        assert r6.status_code == 400
        for _ in range(8):  # 10 calls in all on (subs[0], eastus), the two 400s included
            assert (
                client.post(endpoint, json=sps_body(regions[:8], sizes[:5]), headers=headers).status_code
                == 200
            )
        r11 = client.post(endpoint, json=sps_body(regions[:8], sizes[:5]), headers=headers)
        assert r11.status_code == 429 and int(r11.headers["Retry-After"]) == 3600
        assert "try again after 3600 seconds" in r11.text
        assert client.post("/_emulator/clock", json={"advance": 3600}).status_code == 200
        assert (
            client.post(endpoint, json=sps_body(regions[:1], sizes[:1]), headers=headers).status_code == 401
        )
        stats = client.get("/_emulator/stats").json()
        assert stats["sps"] == {"200": 8, "400": 2, "401": 1, "429": 1}


def test_in_thread_server_matches_in_process(small_world: World) -> None:
    emu = AzureEmulator(small_world)
    in_process = httpx.Client(transport=emu.transport(), base_url="http://x")
    with emu.serve() as base_url, httpx.Client(base_url=base_url) as client:
        a = client.get("/api/retail/prices", params={"$skip": 2000}).content
        b = in_process.get("/api/retail/prices", params={"$skip": 2000}).content
        assert a.replace(base_url.encode(), b"http://x") == b

        def fetch(skip: int) -> int:
            return int(client.get("/api/retail/prices", params={"$skip": skip}).json()["Count"])

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            assert list(pool.map(fetch, range(0, 8000, 1000))) == [1000] * 8
        assert (
            client.post("/_emulator/clock", json={"now": "2026-05-01T00:00:00+00:00"})
            .json()["now"]
            .startswith("2026-05-01")
        )
        assert client.post("/_emulator/clock", json={"advance": "soon"}).status_code == 400
        proxied = client.get(
            "/api/retail/prices",
            headers={"X-Forwarded-Proto": "https", "X-Forwarded-Host": "prices.azure.com"},
        ).json()
        assert proxied["NextPageLink"].startswith("https://prices.azure.com/api/retail/prices?")


def test_socket_faults(small_world: World) -> None:
    faults = Faults(
        prices=EndpointFaults(reset_rate=1.0),
        graph=EndpointFaults(timeout_rate=1.0, stall=1.0),
        skus=EndpointFaults(latency=0.2),
    )
    emu = AzureEmulator(small_world, faults=faults)
    with emu.serve() as base_url, httpx.Client(base_url=base_url, timeout=0.5) as client:
        with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError, httpx.ConnectError)):
            client.get("/api/retail/prices")
        with pytest.raises(httpx.ReadTimeout):
            client.post("/providers/Microsoft.ResourceGraph/resources?api-version=2024-04-01", json={})
        started = time.monotonic()
        r = client.get(
            f"/subscriptions/{emu.subscriptions[0]}/providers/Microsoft.Compute/skus",
            params={"api-version": "2021-07-01"},
        )
        assert r.status_code == 401 and time.monotonic() - started >= 0.2  # latency slept for real


def test_cli_rejects_bad_configuration() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "spotlake.testing.azure", "serve", "--fault", "prices.speed=1"],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and "unknown knob" in proc.stderr
