"""Spot Placement Scores endpoint: the published example, validation, auth, quota, zonal/regional."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest
from emu_support import sps_body, sps_url

from spotlake.clock import FakeClock
from spotlake.collect.http import parse_invalid_value, parse_retry_after
from spotlake.testing.azure import AzureEmulator
from spotlake.testing.world import World

T0 = datetime(2026, 3, 1, tzinfo=UTC)

PUBLISHED_RESPONSE = {
    "desiredLocations": ["eastus", "eastus2"],
    "desiredSizes": [{"sku": "Standard_D2_v2"}],
    "desiredCount": 1,
    "availabilityZones": True,
    "placementScores": [
        {"sku": "Standard_D2_v2", "region": r, "availabilityZone": z, "score": s, "isQuotaAvailable": True}
        for r, z, s in [
            ("eastus", "1", "High"),
            ("eastus", "2", "High"),
            ("eastus", "3", "High"),
            ("eastus2", "1", "High"),
            ("eastus2", "2", "High"),
            ("eastus2", "3", "DataNotFoundOrStale"),
        ]
    ],
}


def test_published_example() -> None:
    emu = AzureEmulator(World.published_example(), clock=FakeClock(T0))
    client = httpx.Client(transport=emu.transport())
    r = client.post(
        sps_url(emu.subscriptions[0]),
        json=sps_body(["eastus", "eastus2"], ["Standard_D2_v2"], 1, True),
        headers={"Authorization": f"Bearer {emu.issue_token()}"},
    )
    assert r.status_code == 200
    assert r.json() == PUBLISHED_RESPONSE


def test_scores_match_the_world(emu: AzureEmulator, client: httpx.Client, auth: dict[str, str]) -> None:
    world = emu.world
    pairs = sorted(world.support_pairs())
    regions = sorted({r for r, _ in pairs})[:3]
    sizes = sorted({s for _, s in pairs})[:4]
    r = client.post(sps_url(emu.subscriptions[0]), json=sps_body(regions, sizes, 20, True), headers=auth)
    assert r.status_code == 200
    body = r.json()
    assert body["desiredLocations"] == regions and body["desiredCount"] == 20 and body["availabilityZones"]
    expected = sum(max(1, len(world.region(x).zones)) for x in regions) * len(sizes)
    assert len(body["placementScores"]) == expected
    now = emu.clock.now()
    for entry in body["placementScores"]:
        zone = entry.get("availabilityZone")
        assert zone is None or zone in world.region(entry["region"]).zones
        assert entry["score"] == world.sps_score(entry["region"], entry["sku"], zone, 20, now)
        assert entry["isQuotaAvailable"] == world.quota_available(entry["region"], entry["sku"], 20, now)


def test_regional_request_has_no_zone_key(
    emu: AzureEmulator, client: httpx.Client, auth: dict[str, str]
) -> None:
    body = sps_body(["eastus", "westus"], ["Standard_D2s_v3"], 1, zonal=False)
    r = client.post(sps_url(emu.subscriptions[0]), json=body, headers=auth)
    scores = r.json()["placementScores"]
    assert len(scores) == 2 and all("availabilityZone" not in s for s in scores)
    zonal = client.post(sps_url(emu.subscriptions[0]), json={**body, "availabilityZones": True}, headers=auth)
    by_region = [s.get("availabilityZone") for s in zonal.json()["placementScores"]]
    assert by_region == ["1", "2", "3", None]  # westus has no zones: one entry, no zone key


def test_availability_zones_defaults_to_regional(
    emu: AzureEmulator, client: httpx.Client, auth: dict[str, str]
) -> None:
    body = {"desiredLocations": ["eastus"], "desiredSizes": [{"sku": "Standard_D2s_v3"}], "desiredCount": 5}
    r = client.post(sps_url(emu.subscriptions[0]), json=body, headers=auth)
    assert r.status_code == 200 and "availabilityZone" not in r.json()["placementScores"][0]


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"desiredSizes": [{"sku": "Standard_D2s_v3"}], "desiredCount": 1}, "'desiredLocations' is missing"),
        ({"desiredLocations": ["eastus"], "desiredCount": 1}, "'desiredSizes' is missing"),
        (
            {"desiredLocations": ["eastus"], "desiredSizes": [{"sku": "Standard_D2s_v3"}]},
            "'desiredCount' is missing",
        ),
        (sps_body(["eastus"], ["Standard_D2s_v3"], 0), "desiredCount"),
        (sps_body(["eastus"], ["Standard_D2s_v3"], 1001), "desiredCount"),
        ({**sps_body(["eastus"], ["Standard_D2s_v3"]), "desiredCount": True}, "desiredCount"),
        ({**sps_body(["eastus"], ["Standard_D2s_v3"]), "desiredSizes": ["Standard_D2s_v3"]}, "desiredSizes"),
        ({**sps_body(["eastus"], ["Standard_D2s_v3"]), "desiredLocations": []}, "desiredLocations"),
        ({**sps_body(["eastus"], ["Standard_D2s_v3"]), "availabilityZones": "yes"}, "availabilityZones"),
    ],
)
def test_body_validation(
    emu: AzureEmulator, client: httpx.Client, auth: dict[str, str], body: dict[str, object], fragment: str
) -> None:
    r = client.post(sps_url(emu.subscriptions[0]), json=body, headers=auth)
    assert r.status_code == 400
    assert fragment in r.json()["error"]["message"]


def test_limits_nine_locations_six_sizes(
    emu: AzureEmulator, client: httpx.Client, auth: dict[str, str]
) -> None:
    regions = [r.name for r in emu.world.regions]
    sizes = [s.name for s in emu.world.sizes]
    url = sps_url(emu.subscriptions[0])
    assert client.post(url, json=sps_body(regions[:8], sizes[:5]), headers=auth).status_code == 200
    r9 = client.post(url, json=sps_body(regions[:9], sizes[:5]), headers=auth)
    assert r9.status_code == 400 and "maximum of 8" in r9.json()["error"]["message"]
    r6 = client.post(url, json=sps_body(regions[:8], sizes[:6]), headers=auth)
    assert r6.status_code == 400 and "maximum of 5" in r6.json()["error"]["message"]
    assert parse_invalid_value(r9.json()["error"]["message"]) is None  # not mistaken for an invalid value


def test_invalid_region_and_size_are_named(
    emu: AzureEmulator, client: httpx.Client, auth: dict[str, str]
) -> None:
    url = sps_url(emu.subscriptions[0])
    r = client.post(url, json=sps_body(["eastus", "xyz"], ["Standard_D2s_v3"]), headers=auth)
    assert r.status_code == 400
    assert r.json()["error"]["message"] == (
        "The value 'xyz' provided for the input parameter 'desiredLocations' is not valid."
    )
    assert parse_invalid_value(r.json()["error"]["message"]) == ("desiredLocations", "xyz")
    r = client.post(url, json=sps_body(["eastus"], ["Standard_D2s_v3", "Standard_Bogus9"]), headers=auth)
    assert parse_invalid_value(r.json()["error"]["message"]) == ("desiredSizes", "Standard_Bogus9")
    bad_loc = client.post(
        sps_url(emu.subscriptions[0], "moon"), json=sps_body(["eastus"], ["Standard_D2s_v3"]), headers=auth
    )
    assert bad_loc.status_code == 400 and "'moon'" in bad_loc.json()["error"]["message"]


def test_api_version_required(emu: AzureEmulator, client: httpx.Client, auth: dict[str, str]) -> None:
    body = sps_body(["eastus"], ["Standard_D2s_v3"])
    r = client.post(sps_url(emu.subscriptions[0], api_version=None), json=body, headers=auth)
    assert r.status_code == 400 and r.json()["error"]["code"] == "MissingApiVersionParameter"
    r = client.post(sps_url(emu.subscriptions[0], api_version="latest"), json=body, headers=auth)
    assert r.status_code == 400 and r.json()["error"]["code"] == "InvalidApiVersionParameter"


def test_bearer_token_checks(emu: AzureEmulator, client: httpx.Client) -> None:
    url, body = sps_url(emu.subscriptions[0]), sps_body(["eastus"], ["Standard_D2s_v3"])
    cases = [{}, {"Authorization": "Basic abc"}, {"Authorization": "Bearer not-a-token"}]
    for headers in cases:
        r = client.post(url, json=body, headers=headers)
        assert r.status_code == 401 and r.json()["error"]["code"]
    token = emu.issue_token()
    assert client.post(url, json=body, headers={"Authorization": f"Bearer {token}"}).status_code == 200
    assert isinstance(emu.clock, FakeClock)
    emu.clock.advance(3600)
    r = client.post(url, json=body, headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401 and r.json()["error"]["code"] == "ExpiredAuthenticationToken"
    other = AzureEmulator(emu.world, clock=emu.clock)  # same seed, but it never issued this token
    fresh = emu.issue_token()
    r = httpx.Client(transport=other.transport()).post(
        url, json=body, headers={"Authorization": f"Bearer {fresh}"}
    )
    assert r.status_code == 401


def test_unknown_and_forbidden_subscriptions(emu: AzureEmulator, auth: dict[str, str]) -> None:
    body = sps_body(["eastus"], ["Standard_D2s_v3"])
    client = httpx.Client(transport=emu.transport())
    r = client.post(sps_url("00000000-0000-0000-0000-000000000000"), json=body, headers=auth)
    assert r.status_code == 404 and r.json()["error"]["code"] == "SubscriptionNotFound"
    no_role = AzureEmulator(emu.world, forbidden_subscriptions=(emu.subscriptions[1],))
    r = httpx.Client(transport=no_role.transport()).post(
        sps_url(emu.subscriptions[1]), json=body, headers={"Authorization": f"Bearer {no_role.issue_token()}"}
    )
    assert r.status_code == 403 and r.json()["error"]["code"] == "AuthorizationFailed"


def test_quota_per_subscription_and_location(emu: AzureEmulator, client: httpx.Client) -> None:
    body = sps_body(["eastus"], ["Standard_D2s_v3"])
    sub_a, sub_b = emu.subscriptions[:2]
    assert isinstance(emu.clock, FakeClock)
    for i in range(10):
        token = emu.issue_token()
        r = client.post(sps_url(sub_a, "eastus"), json=body, headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200, i
        emu.clock.advance(60)
    headers = {"Authorization": f"Bearer {emu.issue_token()}"}
    r = client.post(sps_url(sub_a, "eastus"), json=body, headers=headers)
    assert r.status_code == 429
    assert r.headers["content-type"].startswith("text/plain")
    assert r.text == (
        "You have reached the maximum number of requests allowed. Please try again after 3000 seconds."
    )
    assert r.headers["Retry-After"] == "3000" and parse_retry_after(r) == 3000
    # Other pairs have their own budget: another location, another subscription.
    assert client.post(sps_url(sub_a, "westus"), json=body, headers=headers).status_code == 200
    assert client.post(sps_url(sub_b, "eastus"), json=body, headers=headers).status_code == 200
    assert emu.quota_used(sub_a, "eastus") == 10
    # The window slides: the first call leaves it after an hour.
    emu.clock.advance(3000)
    headers = {"Authorization": f"Bearer {emu.issue_token()}"}
    assert client.post(sps_url(sub_a, "eastus"), json=body, headers=headers).status_code == 200
    assert client.post(sps_url(sub_a, "eastus"), json=body, headers=headers).status_code == 429
    assert emu.stats.count("sps", 429) == 2


def test_quota_is_configurable(small_world: World) -> None:
    emu = AzureEmulator(small_world, sps_calls_per_hour=2)
    client = httpx.Client(transport=emu.transport())
    headers = {"Authorization": f"Bearer {emu.issue_token()}"}
    body = sps_body(["eastus"], ["Standard_D2s_v3"])
    codes = [
        client.post(sps_url(emu.subscriptions[0]), json=body, headers=headers).status_code for _ in range(3)
    ]
    assert codes == [200, 200, 429]


def test_all_five_scores_reachable_through_the_api(small_world: World) -> None:
    emu = AzureEmulator(small_world, sps_calls_per_hour=10_000)
    client = httpx.Client(transport=emu.transport())
    headers = {"Authorization": f"Bearer {emu.issue_token()}"}
    regions = [r.name for r in small_world.regions[:8]]
    seen: set[str] = set()
    sizes = [s.name for s in small_world.sizes]
    for i in range(0, len(sizes), 5):
        body = sps_body(regions, sizes[i : i + 5], 1, True)
        r = client.post(sps_url(emu.subscriptions[0]), json=body, headers=headers)
        seen |= {s["score"] for s in r.json()["placementScores"]}
    assert seen == {"High", "Medium", "Low", "DataNotFoundOrStale", "RestrictedSkuNotAvailable"}
