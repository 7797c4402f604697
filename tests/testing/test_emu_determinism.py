"""Same seed, same requests -> byte-identical responses, whichever transport or emulator instance."""

from __future__ import annotations

import httpx
from emu_support import EVICTION_QUERY, SPEC_FILTER, sps_body, sps_url

from spotlake.clock import FakeClock
from spotlake.testing.azure import AzureEmulator, EndpointFaults, Faults
from spotlake.testing.world import World


def transcript(seed: int) -> list[bytes]:
    world = World.generate(seed, n_regions=15, n_sizes=80)
    faults = Faults(
        prices=EndpointFaults(errors={503: 0.3}, drift_rate=0.3, empty_next_link_rate=0.3, seed=seed)
    )
    emu = AzureEmulator(world, clock=FakeClock(), faults=faults, seed=seed)
    client = httpx.Client(transport=emu.transport(), base_url="https://management.azure.com")
    out = []
    for skip in (0, 1000, 0, 2000, 1000):
        out.append(
            client.get(
                "https://prices.azure.com/api/retail/prices", params={"$filter": SPEC_FILTER, "$skip": skip}
            ).content
        )
    form = {
        "grant_type": "client_credentials",
        "client_id": emu.client_id,
        "client_secret": emu.client_secret,
    }
    token_reply = client.post(f"/{emu.tenant_id}/oauth2/v2.0/token", data=form)
    out.append(token_reply.content)
    headers = {"Authorization": f"Bearer {token_reply.json()['access_token']}"}
    regions = [r.name for r in world.regions[:8]]
    for count in (1, 25):
        body = sps_body(regions, [s.name for s in world.sizes[:5]], count)
        out.append(client.post(sps_url(emu.subscriptions[0]), json=body, headers=headers).content)
    graph = "/providers/Microsoft.ResourceGraph/resources?api-version=2024-04-01"
    out.append(client.post(graph, json={"query": EVICTION_QUERY}, headers=headers).content)
    skus = f"/subscriptions/{emu.subscriptions[0]}/providers/Microsoft.Compute/skus?api-version=2021-07-01"
    out.append(client.get(skus, headers=headers).content)
    return out


def test_same_seed_gives_byte_identical_responses() -> None:
    a, b = transcript(21), transcript(21)
    assert a == b
    assert transcript(22) != a


def test_credentials_are_deterministic() -> None:
    world = World.generate(1, n_regions=3, n_sizes=10)
    a, b = AzureEmulator(world, seed=9), AzureEmulator(world, seed=9)
    assert (a.tenant_id, a.client_id, a.client_secret) == (b.tenant_id, b.client_id, b.client_secret)
    assert AzureEmulator(world, seed=10).client_secret != a.client_secret
