"""The package's foundations: cheap import, secrets never shown, call limits, fake time."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from datetime import UTC, datetime

import attrs
import httpx
import pytest

from spotlake.clock import FakeClock
from spotlake.collect.http import Backoff, error_for_response, parse_retry_after
from spotlake.errors import AuthError, ConfigError, InvalidRequestError, TransientCollectError
from spotlake.model import SPS_SCHEMA, Secret, SpsCall, conform, empty_frame, if_score, score_value
from spotlake.serde import dump, load


def test_import_spotlake_does_not_import_heavy_sdks() -> None:
    code = (
        "import sys, spotlake, spotlake.collect, spotlake.scoring, spotlake.storage, spotlake.compute;"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('boto3', 'botocore', 'azure', 'moto'));"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_verbs_are_public_and_loading_them_stays_light() -> None:
    code = (
        "import sys, spotlake;"
        "assert 'spotlake.pipeline' not in sys.modules, 'import spotlake loads nothing eagerly';"
        "from spotlake import run_cycle, arun_cycle, open_store, plan_calls, store_status, CycleOptions,"
        " AzureAccess, AzureCredentials, RunStatus;"
        "assert set(spotlake.__all__) <= set(dir(spotlake));"
        "[getattr(spotlake, n) for n in spotlake.__all__];"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('boto3', 'botocore', 'azure', 'moto'));"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    import spotlake

    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        spotlake.nope  # noqa: B018


def test_secret_is_redacted_everywhere() -> None:
    s = Secret("hunter2-very-secret")
    for shown in (repr(s), str(s), f"{s}", f"{s!r}", repr([s]), repr({"k": s})):
        assert "hunter2" not in shown
    assert s.reveal() == "hunter2-very-secret"
    with pytest.raises(TypeError):
        pickle.dumps(s)


def test_sps_call_limits() -> None:
    call = SpsCall(regions=["eastus", "westus"], sizes=("Standard_D2_v2",))
    assert call.cells == 2 and call.pairs() == {("eastus", "Standard_D2_v2"), ("westus", "Standard_D2_v2")}
    assert load(json.loads(json.dumps(dump(call))), SpsCall, where="test") == call
    with pytest.raises(ConfigError):
        SpsCall(regions=[f"r{i}" for i in range(9)], sizes=["s"])
    with pytest.raises(ConfigError):
        SpsCall(regions=["r"], sizes=[f"s{i}" for i in range(6)])
    with pytest.raises(ConfigError):
        SpsCall(regions=["r", "r"], sizes=["s"])


def test_scores_and_buckets() -> None:
    assert [score_value(s) for s in ("High", "Medium", "Low", "DataNotFoundOrStale", "Weird")] == [
        3,
        2,
        1,
        None,
        None,
    ]
    assert if_score("0-5") == 3.0 and if_score("20+") == 1.0
    assert if_score("??") != if_score("??")  # NaN


def test_conform_names_missing_columns() -> None:
    frame = empty_frame(SPS_SCHEMA)
    assert list(conform(frame, SPS_SCHEMA, source="sps").dtypes.astype(str)) == list(SPS_SCHEMA.values())
    with pytest.raises(Exception, match="lacks columns"):
        conform(frame.drop(columns=["score"]), SPS_SCHEMA, source="sps")


def test_fake_clock_sleeps_instantly() -> None:
    clock = FakeClock(datetime(2026, 1, 1, tzinfo=UTC))
    clock.sleep(3600)
    assert clock.now() == datetime(2026, 1, 1, 1, tzinfo=UTC)
    assert clock.slept == [3600]


def test_http_error_mapping() -> None:
    req = httpx.Request("POST", "https://example.invalid/x")
    r429 = httpx.Response(
        429,
        text="You have reached the maximum number of requests allowed. Please try again after 3600 seconds.",
        request=req,
    )
    assert parse_retry_after(r429) == 3600.0
    err = error_for_response("sps", "call", r429)
    assert isinstance(err, TransientCollectError) and err.retry_after == 3600.0
    r400 = httpx.Response(
        400,
        json={
            "error": {
                "code": "InvalidParameter",
                "message": "The value 'xyz' provided for the input parameter 'desiredLocations' is not valid",
            }
        },
        request=req,
    )
    err = error_for_response("sps", "call", r400)
    assert isinstance(err, InvalidRequestError)
    assert err.parameter == "desiredLocations" and err.invalid_values == ("xyz",)
    assert isinstance(error_for_response("sps", "call", httpx.Response(403, request=req)), AuthError)
    assert parse_retry_after(httpx.Response(503, headers={"Retry-After": "7"}, request=req)) == 7.0


def test_backoff_honours_retry_after_and_is_bounded() -> None:
    b = Backoff(base=1, cap=8, seed=1)
    assert all(0 <= b.delay(n) <= 8 for n in range(1, 20))
    assert b.delay(1, retry_after=30.0) >= 30.0


def test_shifted_clock_reads_simulated_time_at_real_pace() -> None:
    from spotlake.clock import ShiftedClock

    start = datetime(2030, 5, 1, 12, 0, tzinfo=UTC)
    clock = ShiftedClock(start)
    first = clock.now()
    assert start <= first < datetime(2030, 5, 1, 12, 0, 5, tzinfo=UTC)
    clock.sleep(0.01)
    assert clock.now() > first
    clock.set(datetime(2031, 1, 1, tzinfo=UTC))
    assert clock.now().year == 2031


def test_conform_keeps_the_order_of_a_sorted_frame() -> None:
    import pandas as pd

    frame = pd.DataFrame({"region": ["b", "a"], "size": ["x", "y"], "eviction_bucket": ["0-5", "20+"]})
    frame["if_score"] = [3.0, 1.0]
    shuffled = frame.sort_values("region")  # index labels now [1, 0]
    out = conform(shuffled, {"region": "string", "if_score": "float64"}, source="t")
    assert list(out["region"]) == ["a", "b"] and list(out["if_score"]) == [1.0, 3.0]


def test_absurdly_nested_json_is_a_payload_error() -> None:
    from spotlake.collect.http import read_json
    from spotlake.errors import PayloadError

    body = "[" * 100_000 + "]" * 100_000
    response = httpx.Response(200, text=body, request=httpx.Request("GET", "https://example.invalid"))
    with pytest.raises(PayloadError):
        read_json("prices", "page 0", response)


def test_a_secret_inside_an_attrs_value_does_not_leak_through_asdict() -> None:
    import json

    import attrs

    from spotlake.collect.auth import AzureCredentials

    creds = AzureCredentials(tenant_id="t", client_id="c", client_secret="TOPSECRET", subscriptions=["s"])
    assert "TOPSECRET" not in json.dumps(attrs.asdict(creds), default=repr)
    with pytest.raises(AttributeError):
        Secret("x")._value = "y"  # type: ignore[misc]


@pytest.mark.parametrize("value", ["inf", "1e14", "nan", "-5"])
def test_absurd_retry_after_values_are_clamped(value: str) -> None:
    from spotlake.collect.http import MAX_HONOURED_RETRY_AFTER

    req = httpx.Request("GET", "https://example.invalid")
    seconds = parse_retry_after(httpx.Response(429, headers={"Retry-After": value}, request=req))
    assert seconds is None or 0 <= seconds <= MAX_HONOURED_RETRY_AFTER
    body = "Please try again after 99999999999999999999 seconds."
    assert parse_retry_after(httpx.Response(429, text=body, request=req)) == MAX_HONOURED_RETRY_AFTER


def test_backoff_never_waits_longer_than_its_max_wait() -> None:
    assert Backoff().delay(1, retry_after=3600.0) == 120.0
    assert Backoff(max_wait=10).delay(30) <= 10


@attrs.frozen
class _Sets:
    pairs: frozenset[tuple[str, str]]
    names: frozenset[str]
    bare: frozenset  # type: ignore[type-arg]


def test_sets_are_written_sorted_whatever_their_type_says() -> None:
    """A document's sets come out in one order, not the hash order of the process (which changes
    with PYTHONHASHSEED): stored documents and digests of them stay byte-identical."""
    value = _Sets(
        pairs=frozenset({("b", "x"), ("a", "y"), ("c", "z"), ("a", "a")}),
        names=frozenset("qwertyuiop"),
        bare=frozenset({3, 1, 2}),
    )
    data = dump(value)
    assert data == {
        "pairs": [["a", "a"], ["a", "y"], ["b", "x"], ["c", "z"]],
        "names": sorted("qwertyuiop"),
        "bare": [1, 2, 3],
    }
    assert load(data, _Sets, where="test") == value
