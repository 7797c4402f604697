"""The SPS collector's contract, each behaviour pinned with a scripted transport.

The scripted handler answers exactly what a test needs (a 401 then a 200, a 400 naming a value...);
tests/collect/test_sps_faults.py runs the same collector against the Azure emulator.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pandas as pd
import pytest

from spotlake.clock import FakeClock
from spotlake.collect.auth import StaticToken
from spotlake.collect.base import AzureEndpoints, Collector
from spotlake.collect.quota import QuotaLedger
from spotlake.collect.sps import REQUIRED_ROLE, SpsCollector, SpsResult
from spotlake.collect.sps_wire import parse_scores, request_body
from spotlake.errors import AuthError, PayloadError
from spotlake.model import SPS_SCHEMA, Secret, SpsCall

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
BASE = "https://management.example.test"

PUBLISHED_EXAMPLE = {
    "desiredLocations": ["eastus", "eastus2"],
    "desiredSizes": [{"sku": "Standard_D2_v2"}],
    "desiredCount": 1,
    "availabilityZones": True,
    "placementScores": [
        {
            "sku": "Standard_D2_v2",
            "region": "eastus",
            "availabilityZone": "1",
            "score": "High",
            "isQuotaAvailable": True,
        },
        {
            "sku": "Standard_D2_v2",
            "region": "eastus",
            "availabilityZone": "2",
            "score": "High",
            "isQuotaAvailable": True,
        },
        {
            "sku": "Standard_D2_v2",
            "region": "eastus",
            "availabilityZone": "3",
            "score": "High",
            "isQuotaAvailable": True,
        },
        {
            "sku": "Standard_D2_v2",
            "region": "eastus2",
            "availabilityZone": "1",
            "score": "High",
            "isQuotaAvailable": True,
        },
        {
            "sku": "Standard_D2_v2",
            "region": "eastus2",
            "availabilityZone": "2",
            "score": "High",
            "isQuotaAvailable": True,
        },
        {
            "sku": "Standard_D2_v2",
            "region": "eastus2",
            "availabilityZone": "3",
            "score": "DataNotFoundOrStale",
            "isQuotaAvailable": True,
        },
    ],
}


def good_answer(body: dict[str, Any], score: str = "Medium") -> dict[str, Any]:
    scores = []
    for region in body["desiredLocations"]:
        for size in body["desiredSizes"]:
            zones: Sequence[str | None] = ("1", "2", "3") if body["availabilityZones"] else (None,)
            for zone in zones:
                item = {"sku": size["sku"], "region": region, "score": score, "isQuotaAvailable": True}
                if zone is not None:
                    item["availabilityZone"] = zone
                scores.append(item)
    return {**body, "placementScores": scores}


Responder = Callable[[httpx.Request, dict[str, Any], int], httpx.Response | None]


class Script:
    """An SPS endpoint whose answers a test scripts; records every request."""

    def __init__(self, responder: Responder | None = None) -> None:
        self.requests: list[httpx.Request] = []
        self.bodies: list[dict[str, Any]] = []
        self.responder = responder

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        self.requests.append(request)
        self.bodies.append(body)
        answer = self.responder(request, body, len(self.requests)) if self.responder else None
        return answer or httpx.Response(200, json=good_answer(body))

    def slots(self) -> list[tuple[str, str]]:
        out = []
        for r in self.requests:
            parts = r.url.path.split("/")
            out.append((parts[2], parts[6]))
        return out


def make(
    calls: Sequence[SpsCall],
    script: Script,
    *,
    ledger: QuotaLedger | None = None,
    credential: Any = None,
    clock: FakeClock | None = None,
    **kw: Any,
) -> SpsCollector:
    return SpsCollector(
        calls=calls,
        desired_count=kw.pop("desired_count", 5),
        zonal=kw.pop("zonal", True),
        credential=credential or StaticToken("tok"),
        ledger=ledger or QuotaLedger(subscriptions=["sub-a", "sub-b"], locations=["eastus", "westus"]),
        endpoints=AzureEndpoints(management=BASE),
        transport=httpx.MockTransport(script),
        clock=clock or FakeClock(T0),
        **kw,
    )


def call(regions: str, sizes: str) -> SpsCall:
    return SpsCall(regions=regions.split(","), sizes=sizes.split(","))


def check_accounting(result: SpsResult) -> None:
    report = result.report
    assert report.planned == report.succeeded + report.failed
    assert report.failed == len(result.failed_calls)
    assert list(result.frame.columns) == list(SPS_SCHEMA)
    assert {c: str(t) for c, t in result.frame.dtypes.items()} == dict(SPS_SCHEMA)
    assert report.rows == len(result.frame)


# --- parsing ---------------------------------------------------------------------------------


def test_published_example_is_parsed() -> None:
    frame = parse_scores(PUBLISHED_EXAMPLE, desired_count=1)
    assert len(frame) == 6
    assert frame["zone"].tolist() == ["1", "2", "3", "1", "2", "3"]
    stale = frame[frame["score"] == "DataNotFoundOrStale"]
    assert len(stale) == 1 and stale["region"].iloc[0] == "eastus2" and pd.isna(stale["score_value"].iloc[0])
    assert frame.loc[frame["score"] == "High", "score_value"].tolist() == [3] * 5
    assert frame["quota_available"].all() and (frame["desired_count"] == 1).all()


def test_unknown_scores_kept_and_missing_zone_is_na() -> None:
    body = {
        "placementScores": [
            {"sku": "Standard_A1", "region": "westus", "score": "Excellent", "isQuotaAvailable": False},
            {"sku": "Standard_A1", "region": "westus2", "score": "Low"},
        ]
    }
    frame = parse_scores(body, desired_count=10)
    assert frame["score"].tolist() == ["Excellent", "Low"]
    assert pd.isna(frame["score_value"].iloc[0]) and frame["score_value"].iloc[1] == 1
    assert frame["zone"].isna().all()
    assert frame["quota_available"].iloc[0] is False or not frame["quota_available"].iloc[0]
    assert pd.isna(frame["quota_available"].iloc[1])


@pytest.mark.parametrize(
    "body",
    [
        [],
        {"placementScores": None},
        {"placementScores": [1]},
        {"placementScores": [{"sku": "a", "region": "b"}]},
        {"placementScores": [{"sku": "a", "region": "b", "score": "High", "isQuotaAvailable": "yes"}]},
        {"placementScores": [{"sku": "a", "region": "b", "score": "High", "availabilityZone": ["1"]}]},
    ],
)
def test_malformed_bodies_are_payload_errors(body: object) -> None:
    with pytest.raises(PayloadError):
        parse_scores(body, desired_count=1)


def test_request_body_shape() -> None:
    assert request_body(["eastus"], ["Standard_D2_v2"], desired_count=3, zonal=False) == {
        "desiredLocations": ["eastus"],
        "desiredSizes": [{"sku": "Standard_D2_v2"}],
        "desiredCount": 3,
        "availabilityZones": False,
    }


# --- happy path ------------------------------------------------------------------------------


def test_collects_a_plan_and_spreads_it_over_slots() -> None:
    script = Script()
    calls = [
        call("eastus,westus", "Standard_D2_v2,Standard_D4_v2"),
        call("northeurope", "Standard_D2_v2"),
    ] * 2
    calls[2] = call("eastus2", "Standard_E2_v3")
    calls[3] = call("westus2", "Standard_E2_v3")
    ledger = QuotaLedger(subscriptions=["sub-a", "sub-b"], locations=["eastus", "westus"])
    collector = make(calls, script, ledger=ledger)
    assert isinstance(collector, Collector)
    result = collector.collect()
    check_accounting(result)
    assert result.report.complete and result.report.requests == 4 and result.report.retried == 0
    assert len(set(script.slots())) == 4  # four calls, four different slots
    request = script.requests[0]
    assert request.headers["authorization"] == "Bearer tok"
    assert request.url.params["api-version"] == "2025-06-05"
    assert request.url.path.endswith("/placementScores/spot/generate")
    assert script.bodies[0]["desiredCount"] == 5 and script.bodies[0]["availabilityZones"] is True
    assert len(result.frame) == (4 + 1 + 1 + 1) * 3
    assert result.covered_pairs == frozenset().union(*(c.pairs() for c in calls))
    # The caller's ledger is untouched; the result carries the updated one to persist.
    assert ledger.capacity(T0) == 40 and result.ledger.capacity(T0) == 36


def test_regional_mode_has_no_zones_and_overlaps_are_deduplicated() -> None:
    script = Script()
    result = make([call("eastus", "A"), call("eastus", "A,B")], script, zonal=False).collect()
    check_accounting(result)
    assert result.frame["zone"].isna().all()
    assert len(result.frame) == 2
    assert any("duplicate" in n for n in result.report.notes)


def test_sync_facade_works_inside_a_running_loop() -> None:
    async def main() -> SpsResult:
        return make([call("eastus", "A")], Script()).collect()

    assert asyncio.run(main()).report.succeeded == 1


def test_progress_callback_sees_every_call() -> None:
    seen: list[tuple[int, int]] = []
    make(
        [call("eastus", "A"), call("westus", "A")], Script(), progress=lambda d, t: seen.append((d, t))
    ).collect()
    assert seen == [(1, 2), (2, 2)]


# --- quota -----------------------------------------------------------------------------------


def test_eleventh_call_on_a_single_slot_is_reported_not_sent() -> None:
    script = Script()
    ledger = QuotaLedger(subscriptions=["sub-a"], locations=["eastus"])
    calls = [call(f"r{i}", "A") for i in range(11)]
    result = make(calls, script, ledger=ledger).collect()
    check_accounting(result)
    assert result.report.requests == 10 and len(script.requests) == 10
    assert [f.reason for f in result.failed_calls] == ["quota"]
    failed = result.failed_calls[0]
    assert failed.attempts == 0 and "frees at" in failed.message
    assert result.next_free_at is not None and result.next_free_at > T0 + timedelta(minutes=59)
    assert ("r10", "A") not in result.covered_pairs and len(result.covered_pairs) == 10
    assert "r10" in str(result.report.failures[0])


def test_eleventh_call_goes_to_another_pair_when_there_is_one() -> None:
    script = Script()
    ledger = QuotaLedger(subscriptions=["sub-a"], locations=["eastus", "westus"])
    result = make([call(f"r{i}", "A") for i in range(11)], script, ledger=ledger).collect()
    assert result.report.complete
    per_slot = pd.Series(script.slots()).value_counts()
    assert per_slot.max() <= 10 and len(per_slot) == 2


def test_429_marks_the_slot_until_retry_after_and_retries_elsewhere() -> None:
    def responder(request: httpx.Request, body: dict[str, Any], n: int) -> httpx.Response | None:
        if n == 1:
            return httpx.Response(
                429,
                text=(
                    "You have reached the maximum number of requests allowed. "
                    "Please try again after 1800 seconds."
                ),
            )
        return None

    script = Script(responder)
    clock = FakeClock(T0)
    result = make([call("eastus", "A")], script, clock=clock).collect()
    check_accounting(result)
    assert result.report.complete and result.report.requests == 2 and result.report.retried == 1
    first, second = script.slots()
    assert first != second
    marked = next(s for s in result.ledger.slots if (s.subscription, s.location) == first)
    until = result.ledger.exhausted_until(marked, clock.now())
    assert until is not None and until >= T0 + timedelta(seconds=1800)
    assert max(clock.slept, default=0) < 60  # it never slept for the Retry-After


def test_429_everywhere_ends_as_quota_without_hot_looping() -> None:
    script = Script(lambda r, b, n: httpx.Response(429, headers={"Retry-After": "3600"}, text="slow down"))
    result = make([call("eastus", "A"), call("westus", "A")], script, max_attempts_per_call=10).collect()
    check_accounting(result)
    assert {f.reason for f in result.failed_calls} == {"quota"}
    assert len(script.requests) == 4  # one per slot, then nothing left
    assert result.ledger.capacity(T0) == 0


# --- invalid values, auth, other errors ------------------------------------------------------


def invalid(value: str, parameter: str) -> httpx.Response:
    message = f"The value '{value}' provided for the input parameter '{parameter}' is not valid."
    return httpx.Response(400, json={"error": {"code": "InvalidParameter", "message": message}})


def test_400_invalid_region_and_size_are_learned_and_the_call_reissued() -> None:
    def responder(request: httpx.Request, body: dict[str, Any], n: int) -> httpx.Response | None:
        if "nowhere" in body["desiredLocations"]:
            return invalid("nowhere", "desiredLocations")
        if any(s["sku"] == "Standard_Bogus" for s in body["desiredSizes"]):
            return invalid("Standard_Bogus", "SpotPlacementRecommenderInput.desiredSizes")
        return None

    script = Script(responder)
    calls = [
        call("eastus,nowhere", "A,Standard_Bogus"),
        call("nowhere", "A"),
        call("westus", "Standard_Bogus"),
    ]
    result = make(calls, script, concurrency=1).collect()
    check_accounting(result)
    assert result.invalid_regions == {"nowhere"} and result.invalid_sizes == {"Standard_Bogus"}
    assert result.report.succeeded == 1
    assert sorted(f.reason for f in result.failed_calls) == ["all-invalid", "all-invalid"]
    # The later calls were never sent: what was learned applies to the whole run.
    assert len(script.requests) == 3
    assert script.bodies[-1] == request_body(["eastus"], ["A"], desired_count=5, zonal=True)
    assert result.covered_pairs == {("eastus", "A")}


class CountingToken:
    def __init__(self) -> None:
        self.current = 0
        self.refreshes = 0

    async def atoken(self) -> Secret:
        return Secret(f"t{self.current}")

    async def aforce_refresh(self, rejected: Secret | None = None) -> Secret:
        self.refreshes += 1
        self.current += 1
        return Secret(f"t{self.current}")


def test_401_refreshes_the_token_once_then_succeeds() -> None:
    def responder(request: httpx.Request, body: dict[str, Any], n: int) -> httpx.Response | None:
        if request.headers["authorization"] == "Bearer t0":
            return httpx.Response(
                401, json={"error": {"code": "ExpiredAuthenticationToken", "message": "expired"}}
            )
        return None

    token = CountingToken()
    result = make([call("eastus", "A")], Script(responder), credential=token).collect()
    assert result.report.complete and token.refreshes == 1 and result.report.requests == 2


def test_second_401_is_an_auth_error() -> None:
    script = Script(lambda r, b, n: httpx.Response(401, json={"error": {"message": "bad token"}}))
    token = CountingToken()
    with pytest.raises(AuthError, match="even after a token refresh"):
        make([call("eastus", "A")], script, credential=token).collect()
    assert token.refreshes == 1 and len(script.requests) == 2


def test_403_is_an_auth_error_naming_the_role_and_subscription() -> None:
    script = Script(lambda r, b, n: httpx.Response(403, json={"error": {"code": "AuthorizationFailed"}}))
    ledger = QuotaLedger(subscriptions=["0000-sub-x"], locations=["eastus"])
    with pytest.raises(AuthError) as info:
        make([call("eastus", "A")] * 3, script, ledger=ledger, concurrency=1).collect()
    assert REQUIRED_ROLE in str(info.value) and "0000-sub-x" in str(info.value)
    assert len(script.requests) == 1  # fails fast


def test_other_4xx_fails_the_call_without_retry() -> None:
    script = Script(lambda r, b, n: httpx.Response(404, json={"error": {"message": "no such thing"}}))
    result = make([call("eastus", "A")], script).collect()
    check_accounting(result)
    assert [f.reason for f in result.failed_calls] == ["invalid-request"] and len(script.requests) == 1
    assert result.failed_calls[0].status == 404


def test_5xx_backs_off_then_reports_after_the_cap() -> None:
    script = Script(lambda r, b, n: httpx.Response(503, text="busy"))
    clock = FakeClock(T0)
    result = make([call("eastus", "A")], script, clock=clock, max_attempts_per_call=3).collect()
    check_accounting(result)
    assert [f.reason for f in result.failed_calls] == ["retries-exhausted"]
    assert len(script.requests) == 3 and result.failed_calls[0].attempts == 3
    assert len(clock.slept) == 2  # backed off between attempts, on the fake clock


def test_5xx_then_success_honours_a_short_retry_after() -> None:
    script = Script(lambda r, b, n: httpx.Response(503, headers={"Retry-After": "7"}) if n == 1 else None)
    clock = FakeClock(T0)
    result = make([call("eastus", "A")], script, clock=clock).collect()
    assert result.report.complete and clock.slept and clock.slept[0] >= 7


def test_transport_errors_are_retried() -> None:
    def responder(request: httpx.Request, body: dict[str, Any], n: int) -> httpx.Response | None:
        if n == 1:
            raise httpx.ReadTimeout("stalled", request=request)
        if n == 2:
            raise httpx.RemoteProtocolError("reset", request=request)
        return None

    result = make([call("eastus", "A")], Script(responder)).collect()
    assert result.report.complete and result.report.requests == 3


def test_truncated_body_is_retried_then_reported() -> None:
    script = Script(lambda r, b, n: httpx.Response(200, content=b'{"placementScores": [{"sku": "A", "reg'))
    result = make([call("eastus", "A")], script, payload_retries=2, max_attempts_per_call=5).collect()
    check_accounting(result)
    assert [f.reason for f in result.failed_calls] == ["payload"] and len(script.requests) == 3


def test_wrong_shape_is_a_payload_failure_without_retry() -> None:
    script = Script(lambda r, b, n: httpx.Response(200, json={"placementScores": "nope"}))
    result = make([call("eastus", "A")], script).collect()
    assert [f.reason for f in result.failed_calls] == ["payload"] and len(script.requests) == 1


def test_global_attempt_cap_protects_the_quota_and_keeps_first_attempts() -> None:
    script = Script(lambda r, b, n: httpx.Response(500, text="boom"))
    calls = [call(f"r{i}", "A") for i in range(5)]
    result = make(calls, script, max_attempts_per_call=4, max_total_attempts=7, concurrency=2).collect()
    check_accounting(result)
    assert len(script.requests) == 7
    sent = {tuple(b["desiredLocations"]) for b in script.bodies}
    assert len(sent) == 5  # every call got its first attempt before retries used the budget
    assert {f.reason for f in result.failed_calls} <= {"attempt-budget", "retries-exhausted"}
    assert all(f.attempts <= 4 for f in result.failed_calls)


def test_a_refused_url_location_rests_that_slot_and_uses_another() -> None:
    def responder(request: httpx.Request, body: dict[str, Any], n: int) -> httpx.Response | None:
        if "/locations/bogusloc/" in request.url.path:
            return invalid("bogusloc", "location")
        return None

    script = Script(responder)
    ledger = QuotaLedger(subscriptions=["sub-a"], locations=["bogusloc", "eastus"])
    result = make([call("eastus", "A"), call("westus", "A")], script, ledger=ledger, concurrency=1).collect()
    check_accounting(result)
    assert result.report.complete and result.invalid_regions == frozenset()
    assert [loc for _, loc in script.slots()] == ["bogusloc", "eastus", "eastus"]
    assert any("bogusloc" in n for n in result.report.notes)
