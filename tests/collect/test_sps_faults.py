"""The SPS collector against adversarial answers and the Azure emulator's faults.

Adversarial bodies (hypothesis) give a typed spotlake error or a correct frame, never a raw error or
a hang; against the emulator (in-process and over loopback) every fault kind is either survived or
named in the report, and a 60-call plan under 10% injected errors stays within quota and caps.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

import httpx
import pandas as pd
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from fault_support import each_fault
from hypothesis_support import examples
from spotlake.clock import FakeClock
from spotlake.collect.auth import AzureCredentials, StaticToken, TokenProvider
from spotlake.collect.base import AzureEndpoints
from spotlake.collect.quota import QuotaLedger
from spotlake.collect.sps import REQUIRED_ROLE, SpsCollector, SpsResult
from spotlake.collect.sps_wire import parse_scores
from spotlake.errors import AuthError, PayloadError
from spotlake.model import SPS_SCHEMA, Secret, SpsCall
from spotlake.testing.azure import AzureEmulator, EndpointFaults, Faults
from spotlake.testing.faults import FAILING_KINDS
from spotlake.testing.world import World

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
field_values = st.one_of(
    json_scalars,
    st.sampled_from(
        ["High", "Medium", "Low", "DataNotFoundOrStale", "RestrictedSkuNotAvailable", "", "Weird"]
    ),
    st.lists(json_scalars, max_size=2),
)
items = st.dictionaries(
    st.sampled_from(["sku", "region", "availabilityZone", "score", "isQuotaAvailable", "extra"]),
    field_values,
    max_size=6,
)
near_valid = st.fixed_dictionaries(
    {"placementScores": st.lists(items | json_values, max_size=6)},
    optional={"desiredCount": json_values, "availabilityZones": json_values},
)
bodies = near_valid | json_values


def check_frame(frame: pd.DataFrame) -> None:
    assert list(frame.columns) == list(SPS_SCHEMA)
    assert {c: str(t) for c, t in frame.dtypes.items()} == dict(SPS_SCHEMA)


@settings(max_examples=examples(300), deadline=None)
@given(body=bodies)
@example(body={"placementScores": [{"sku": "a", "region": "b", "score": "Weird", "availabilityZone": 2}]})
@example(body={"placementScores": [{"sku": "a", "region": "b", "score": "High", "isQuotaAvailable": True}]})
def test_parse_scores_gives_a_frame_or_a_payload_error(body: Any) -> None:
    try:
        frame = parse_scores(body, desired_count=5)
    except PayloadError as exc:
        assert exc.source == "sps"
        return
    check_frame(frame)
    assert len(frame) == len(body["placementScores"])
    known = frame["score"].isin(["High", "Medium", "Low"])
    assert frame.loc[known, "score_value"].notna().all() and frame.loc[~known, "score_value"].isna().all()


raw_bodies = (
    bodies.map(lambda b: json.dumps(b).encode())
    | bodies.map(lambda b: json.dumps(b).encode()[: max(1, len(json.dumps(b)) // 2)])
    | st.binary(max_size=64)
)


@settings(max_examples=examples(80), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(content=raw_bodies, status=st.sampled_from([200, 200, 200, 400, 404, 409, 500, 503]))
def test_collector_accounts_for_every_adversarial_answer(content: bytes, status: int) -> None:
    requests: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return httpx.Response(status, content=content)

    collector = SpsCollector(
        calls=[
            SpsCall(regions=["eastus"], sizes=["Standard_D2_v2"]),
            SpsCall(regions=["westus"], sizes=["A"]),
        ],
        desired_count=1,
        zonal=True,
        credential=StaticToken("t"),
        ledger=QuotaLedger(subscriptions=["s"], locations=["eastus", "westus"]),
        endpoints=AzureEndpoints(management="https://m.test"),
        transport=httpx.MockTransport(handler),
        clock=FakeClock(T0),
        max_attempts_per_call=3,
    )
    result = collector.collect()
    report = result.report
    assert report.planned == 2 == report.succeeded + report.failed
    assert len(requests) == report.requests <= collector.max_total_attempts
    assert all(f.attempts <= 3 for f in result.failed_calls)
    check_frame(result.frame)
    if report.failed:
        assert {f.reason for f in result.failed_calls} <= {
            "payload",
            "invalid-request",
            "retries-exhausted",
            "all-invalid",
            "attempt-budget",
        }


# --- against the Azure emulator ----------------------------------------------------------------


# The published SPS example's endpoints: https hosts served in-process by the emulator's transports.
ENDPOINTS = AzureEndpoints(management="https://management.azure.com", authority="https://login.emulator.test")


@pytest.fixture(scope="module")
def world() -> World:
    return World.generate(seed=3, n_regions=8, n_sizes=60)


def plan(world: World, n: int) -> list[SpsCall]:
    """``n`` calls of one region x up to five supported sizes (distinct pairs)."""
    calls: list[SpsCall] = []
    for region in sorted(r.name for r in world.regions):
        sizes = sorted(s for r, s in world.support_pairs() if r == region)
        calls += [SpsCall(regions=[region], sizes=sizes[i : i + 5]) for i in range(0, len(sizes), 5)]
    assert len(calls) >= n
    return calls[:n]


def tokens_for(emu: AzureEmulator, clock: FakeClock | None = None) -> TokenProvider:
    creds = AzureCredentials(
        tenant_id=emu.tenant_id,
        client_id=emu.client_id,
        client_secret=emu.client_secret,
        subscriptions=emu.subscriptions,
    )
    return TokenProvider(
        creds, endpoints=ENDPOINTS, clock=clock or emu.clock, transport=emu.azure_transport()
    )


def collector(
    emu: AzureEmulator, calls: list[SpsCall], ledger: QuotaLedger | None = None, **kw: Any
) -> SpsCollector:
    return SpsCollector(
        calls=calls,
        desired_count=kw.pop("desired_count", 1),
        zonal=kw.pop("zonal", True),
        credential=kw.pop("credential", None) or tokens_for(emu),
        ledger=ledger or QuotaLedger(subscriptions=emu.subscriptions, locations=["eastus"]),
        endpoints=kw.pop("endpoints", ENDPOINTS),
        transport=kw.pop("transport", None) or emu.transport(),
        clock=emu.clock,
        **kw,
    )


def assert_truthful(result: SpsResult, world: World, at: datetime, count: int) -> None:
    """Every row matches the world's ground truth (known scores; drifted ones are unknown strings)."""
    check_frame(result.frame)
    report = result.report
    assert report.planned == report.succeeded + report.failed == report.succeeded + len(result.failed_calls)
    for row in result.frame.itertuples(index=False):
        zone = row.zone if isinstance(row.zone, str) else None
        truth = world.sps_score(str(row.region), str(row.size), zone, count, at)
        assert row.score == truth or row.score not in (
            "High",
            "Medium",
            "Low",
            "DataNotFoundOrStale",
            "RestrictedSkuNotAvailable",
        )


def test_published_example_through_the_emulator_and_a_real_token_flow(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    emu = AzureEmulator(World.published_example())
    call = SpsCall(regions=["eastus", "eastus2"], sizes=["Standard_D2_v2"])
    provider = tokens_for(emu)
    result = collector(emu, [call], credential=provider).collect()
    assert provider.token().reveal() not in caplog.text and emu.client_secret not in caplog.text
    frame = result.frame
    assert result.report.complete and len(frame) == 6
    assert sorted(zip(frame["region"], frame["zone"], frame["score"], strict=True)) == [
        ("eastus", "1", "High"),
        ("eastus", "2", "High"),
        ("eastus", "3", "High"),
        ("eastus2", "1", "High"),
        ("eastus2", "2", "High"),
        ("eastus2", "3", "DataNotFoundOrStale"),
    ]
    assert frame["score_value"].isna().sum() == 1 and frame["quota_available"].all()
    assert emu.stats.count("token", 200) >= 1  # the real ClientSecretCredential flow ran offline


def test_regional_request_has_no_zones(world: World) -> None:
    emu = AzureEmulator(world)
    result = collector(emu, plan(world, 2), zonal=False, desired_count=20).collect()
    assert result.report.complete and result.frame["zone"].isna().all()
    assert_truthful(result, world, emu.clock.now(), 20)


def test_over_loopback(world: World) -> None:
    emu = AzureEmulator(world)
    calls = plan(world, 3)
    with emu.serve() as base_url:
        result = collector(
            emu,
            calls,
            endpoints=AzureEndpoints.single(base_url),
            transport=httpx.AsyncHTTPTransport(),
            credential=StaticTokenFromEmu(emu),
        ).collect()
    assert result.report.complete and result.report.requests == 3
    assert result.covered_pairs == frozenset().union(*(c.pairs() for c in calls))
    assert_truthful(result, world, emu.clock.now(), 1)


class StaticTokenFromEmu:
    """A token the emulator issued directly (the loopback test skips the OAuth flow)."""

    def __init__(self, emu: AzureEmulator) -> None:
        self._token = Secret(emu.issue_token())

    async def atoken(self) -> Secret:
        return self._token

    async def aforce_refresh(self, rejected: Secret | None = None) -> Secret:
        return self._token


def test_eleventh_call_on_one_pair_is_reported_and_the_emulator_never_says_429(world: World) -> None:
    emu = AzureEmulator(world)
    sub = emu.subscriptions[0]
    ledger = QuotaLedger(subscriptions=[sub], locations=["eastus"])
    result = collector(emu, plan(world, 11), ledger=ledger).collect()
    assert result.report.succeeded == 10 and [f.reason for f in result.failed_calls] == ["quota"]
    assert emu.quota_used(sub, "eastus") == 10 and emu.stats.count("sps", 429) == 0
    assert result.next_free_at is not None


def test_stale_ledger_learns_from_the_emulators_429(world: World) -> None:
    emu = AzureEmulator(world)
    sub_a, sub_b = emu.subscriptions[:2]
    # Another run (with a lost ledger) already spent sub_a/eastus.
    collector(emu, plan(world, 10), ledger=QuotaLedger(subscriptions=[sub_a], locations=["eastus"])).collect()
    ledger = QuotaLedger(subscriptions=[sub_a, sub_b], locations=["eastus"])
    result = collector(emu, plan(world, 4), ledger=ledger, concurrency=1).collect()
    assert result.report.complete and emu.stats.count("sps", 429) == 1
    marked = result.ledger.exhausted_until(ledger.slots[0], emu.clock.now())
    assert marked is not None and marked > emu.clock.now() + pd.Timedelta(minutes=50)
    assert emu.quota_used(sub_b, "eastus") == 4


def test_invalid_region_and_size_are_learned_from_the_emulator(world: World) -> None:
    emu = AzureEmulator(world)
    good = plan(world, 1)[0]
    bad = SpsCall(regions=[good.regions[0], "atlantis"], sizes=[*good.sizes[:2], "Standard_Nope_v9"])
    result = collector(
        emu, [bad, SpsCall(regions=["atlantis"], sizes=[good.sizes[0]])], concurrency=1
    ).collect()
    assert result.invalid_regions == {"atlantis"} and result.invalid_sizes == {"Standard_Nope_v9"}
    assert result.report.succeeded == 1 and [f.reason for f in result.failed_calls] == ["all-invalid"]
    assert result.covered_pairs == {(good.regions[0], s) for s in good.sizes[:2]}


def test_expired_token_gets_one_refresh_then_succeeds(world: World) -> None:
    emu = AzureEmulator(world)
    # The provider's own clock stands still, so it believes its token is fresh; the emulator's moves
    # two hours on: the first request is refused with 401 (expired), the refresh fixes it.
    provider = tokens_for(emu, clock=FakeClock(T0))
    provider.token()
    assert isinstance(emu.clock, FakeClock)
    emu.clock.advance(7200)
    result = collector(emu, plan(world, 1), credential=provider).collect()
    assert result.report.complete and result.report.requests == 2
    assert provider.refreshes == 2 and emu.stats.count("sps", 401) == 1


def test_bad_secret_is_an_auth_error_without_the_secret(world: World) -> None:
    emu = AzureEmulator(world)
    creds = AzureCredentials(
        tenant_id=emu.tenant_id,
        client_id=emu.client_id,
        client_secret="wrong-secret-xyz",
        subscriptions=emu.subscriptions,
    )
    provider = TokenProvider(creds, endpoints=ENDPOINTS, clock=emu.clock, transport=emu.azure_transport())
    with pytest.raises(AuthError) as info:
        collector(emu, plan(world, 1), credential=provider).collect()
    assert "wrong-secret-xyz" not in str(info.value) and emu.stats.count("sps") == 0


def test_missing_role_is_an_auth_error_naming_it(world: World) -> None:
    sub = world.subscriptions[0]
    emu = AzureEmulator(world, forbidden_subscriptions=(sub,))
    with pytest.raises(AuthError) as info:
        collector(
            emu, plan(world, 3), ledger=QuotaLedger(subscriptions=[sub], locations=["eastus"])
        ).collect()
    assert REQUIRED_ROLE in str(info.value) and sub in str(info.value)


# Every kind the SPS endpoint can show ("mixed": all of them at once).
# Seed 2 hits this collection with every kind (on so few requests another seed can miss one).
@each_fault("sps", rate=0.3, seed=2)
def test_every_fault_kind_is_survived_or_named(world: World, kind: str, faults: EndpointFaults) -> None:
    emu = AzureEmulator(world, faults=Faults(sps=faults))
    calls = plan(world, 12)
    ledger = QuotaLedger(subscriptions=emu.subscriptions[:3], locations=["eastus"])
    result = collector(emu, calls, ledger=ledger).collect()
    report = result.report
    assert_truthful(result, world, emu.clock.now(), 1)
    assert report.requests == emu.stats.count("sps")
    assert all(f.attempts <= 4 for f in result.failed_calls)
    failed_pairs = (
        set().union(*(f.call.pairs() for f in result.failed_calls)) if result.failed_calls else set()
    )
    for i, call in enumerate(calls):
        if any(f.index == i for f in result.failed_calls):
            assert not call.pairs() & result.covered_pairs
        else:
            assert call.pairs() <= result.covered_pairs  # a succeeded call is fully scored
    assert not failed_pairs & result.covered_pairs
    if kind in FAILING_KINDS:  # the fault was injected: some attempt was retried or a call failed
        assert report.retried > 0 or result.failed_calls
    if kind == "drift":
        assert result.frame["quota_available"].isna().any()
        assert (
            ~result.frame["score"].isin(
                ["High", "Medium", "Low", "DataNotFoundOrStale", "RestrictedSkuNotAvailable"]
            )
        ).any()
    if kind in ("drift", "latency"):
        assert report.complete


@pytest.mark.parametrize("seed", [42, 7, 2026])
def test_ten_percent_errors_on_a_sixty_call_plan_stay_within_quota_and_caps(world: World, seed: int) -> None:
    faults = EndpointFaults(
        errors={429: 0.02, 500: 0.02, 503: 0.02},
        timeout_rate=0.015,
        reset_rate=0.015,
        truncated_rate=0.01,
        seed=seed,
    )
    emu = AzureEmulator(world, faults=Faults(sps=faults))
    subs = emu.subscriptions
    ledger = QuotaLedger(subscriptions=subs, locations=["eastus"])  # 8 slots x 10 = 80 calls/hour
    calls = plan(world, 60)
    sent: dict[tuple[str, ...], int] = {}

    def counting(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        key = (*body["desiredLocations"], *(s["sku"] for s in body["desiredSizes"]))
        sent[key] = sent.get(key, 0) + 1
        return emu.handler(request)

    sps = collector(
        emu, calls, ledger=ledger, max_attempts_per_call=4, transport=httpx.MockTransport(counting)
    )
    result = sps.collect()
    report = result.report
    assert len(sent) == 60 and max(sent.values()) <= 4  # no call attempted more than its cap
    print(
        f"60-call plan at 10% faults: succeeded={report.succeeded} failed={report.failed} "
        f"requests={report.requests} retried={report.retried} cap={sps.max_total_attempts} "
        f"emulator={emu.stats.to_json()['sps']} max-per-call={max(sent.values())}"
    )
    assert report.planned == 60 == report.succeeded + report.failed
    assert report.requests == emu.stats.count("sps") <= sps.max_total_attempts
    assert report.retried == report.requests - sum(1 for _ in calls) + sum(
        1 for f in result.failed_calls if f.attempts == 0
    )
    # Within quota: the emulator never had to refuse a call for quota, and no slot exceeded 10/hour.
    assert all(emu.quota_used(s, "eastus") <= 10 for s in subs)
    assert all(f.attempts <= 4 for f in result.failed_calls)
    assert report.succeeded >= 57, report.failures
    assert_truthful(result, world, emu.clock.now(), 1)
