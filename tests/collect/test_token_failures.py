"""The token endpoint's failures, through the Azure emulator's faults.

A token request that failed on the way (a 503, no answer, a 200 whose body is cut in half or is not
JSON) is a TransientCollectError, retried like any transient error; a refusal of the credentials
(401 ``invalid_client``, 400 ``unauthorized_client``) stays an AuthError. Either way the error carries
no token and no secret: the emulator's truncated answer holds half an access token, and the SDK's
own message quotes it.
"""

from __future__ import annotations

import logging
import traceback
from datetime import UTC, datetime

import pytest

from spotlake.clock import FakeClock
from spotlake.collect.auth import AzureCredentials, TokenProvider
from spotlake.collect.base import AzureEndpoints
from spotlake.collect.quota import QuotaLedger
from spotlake.collect.sps import SpsCollector
from spotlake.errors import AuthError, CollectError, TransientCollectError
from spotlake.model import SpsCall
from spotlake.testing.azure import AzureEmulator, EndpointFaults, Faults
from spotlake.testing.faults import fault_matrix
from spotlake.testing.world import World

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
ENDPOINTS = AzureEndpoints(management="https://management.azure.com", authority="https://login.emulator.test")
#: Shaped like an Entra ID client secret; the emulator is told to accept it.
CANARY_SECRET = "CanaryS3cret~q8Xv-7Jm_4Lp.2Rt9Wz5Yk1Hn6"
#: Base64url of '{"typ":"JWT"': how every token the emulator issues begins.
JWT_HEAD = "eyJ0eXAiOiJKV1Qi"
# Seeds (rate 0.5) whose first token request (POST, after the OpenID configuration) is hit and whose
# second is not; the tests check that this is what happened.
TRUNCATED_SEED = 0
MALFORMED_SEED = 22


def emulator(faults: EndpointFaults | None = None, **kw: object) -> AzureEmulator:
    emu = AzureEmulator(
        World.published_example(),
        clock=FakeClock(T0),
        faults=Faults(token=faults) if faults is not None else None,
        **kw,  # type: ignore[arg-type]
    )
    emu.client_secret = CANARY_SECRET  # read by the emulator each time it answers a token request
    return emu


def provider(
    emu: AzureEmulator, *, secret: str = CANARY_SECRET, client_id: str | None = None
) -> TokenProvider:
    creds = AzureCredentials(
        tenant_id=emu.tenant_id,
        client_id=client_id or emu.client_id,
        client_secret=secret,
        subscriptions=emu.subscriptions,
    )
    return TokenProvider(creds, endpoints=ENDPOINTS, clock=emu.clock, transport=emu.azure_transport())


def shown(exc: BaseException) -> str:
    """Everything an error can show: str, repr, and the messages of its chain as a traceback prints
    them (not the source lines, which are this file's)."""
    parts = [str(exc), repr(exc)]
    for linked in (exc.__cause__, exc.__context__):
        if linked is not None:
            parts += [str(linked), repr(linked)]
    chained: traceback.TracebackException | None = traceback.TracebackException.from_exception(exc)
    while chained is not None:
        parts += chained.format_exception_only()
        chained = chained.__cause__ or (None if chained.__suppress_context__ else chained.__context__)
    return "\n".join(parts)


def assert_nothing_secret(text: str) -> None:
    for canary in (CANARY_SECRET, JWT_HEAD, '"access_token":"ey'):
        assert canary.lower() not in text.lower(), f"{canary!r} leaked: {text}"


def test_a_truncated_token_answer_is_transient_and_quotes_no_token(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    emu = emulator(fault_matrix("token", kinds=["truncated"], rate=0.5, seed=TRUNCATED_SEED)["truncated"])
    tokens = provider(emu)
    with pytest.raises(TransientCollectError) as info:
        tokens.token()
    assert emu.stats.count("token", 200) == 2  # the OpenID configuration, then the cut token answer
    # The SDK's own message quoted the half token: the fault did put one in front of us.
    sdk = [r.getMessage() for r in caplog.records if r.name.startswith("azure.identity")]
    assert any('"access_token":"' + JWT_HEAD in m for m in sdk)
    error = info.value
    assert error.source == "auth" and error.status == 200
    assert "token endpoint failed" in str(error) and '"access_token":"***' in str(error)
    assert_nothing_secret(shown(error))
    assert error.__context__ is None and error.__cause__ is None
    for record in caplog.records:
        if record.name.startswith("spotlake"):
            assert_nothing_secret(record.getMessage())
    assert tokens.token().reveal().startswith(JWT_HEAD)  # the next attempt is answered whole


def test_a_malformed_token_answer_is_transient() -> None:
    emu = emulator(fault_matrix("token", kinds=["malformed"], rate=0.5, seed=MALFORMED_SEED)["malformed"])
    tokens = provider(emu)
    with pytest.raises(TransientCollectError) as info:
        tokens.token()
    assert emu.stats.count("token", 200) == 2
    assert info.value.status == 200 and "token endpoint failed" in str(info.value)
    assert_nothing_secret(shown(info.value))
    assert tokens.token()


@pytest.mark.parametrize("kind", ["503", "reset"])
def test_a_token_endpoint_down_is_transient(kind: str) -> None:
    # azure-core retries these itself (sleeping for real, about 5 s) before spotlake sees them.
    emu = emulator(fault_matrix("token", kinds=[kind], rate=1.0)[kind])
    with pytest.raises(TransientCollectError) as info:
        provider(emu).token()
    assert info.value.status == (503 if kind == "503" else None)
    assert "token endpoint failed" in str(info.value)
    assert_nothing_secret(shown(info.value))


def test_refused_credentials_stay_auth_errors() -> None:
    emu = emulator()
    with pytest.raises(AuthError) as wrong_secret:
        provider(emu, secret="Wr0ng~Secret-CanaryXq7LmN2pR5tV8wY1zB4").token()
    assert wrong_secret.value.status == 401 and "AADSTS7000215" in str(wrong_secret.value)
    with pytest.raises(AuthError) as unknown_client:
        provider(emu, client_id="00000000-0000-0000-0000-000000000001").token()
    assert unknown_client.value.status == 400 and "AADSTS700016" in str(unknown_client.value)
    for error in (wrong_secret.value, unknown_client.value):
        assert not isinstance(error, TransientCollectError)
        assert "Wr0ng~Secret" not in shown(error)
        assert_nothing_secret(shown(error))


def test_the_sps_collector_retries_a_transient_token_failure() -> None:
    """Before: the cut token answer was an AuthError, which ends the whole run."""
    emu = emulator(fault_matrix("token", kinds=["truncated"], rate=0.5, seed=TRUNCATED_SEED)["truncated"])
    collector = SpsCollector(
        calls=[SpsCall(regions=["eastus"], sizes=["Standard_D2_v2"])],
        desired_count=1,
        zonal=True,
        credential=provider(emu),
        ledger=QuotaLedger(subscriptions=emu.subscriptions, locations=["eastus"]),
        endpoints=ENDPOINTS,
        transport=emu.transport(),
        clock=emu.clock,
    )
    try:
        result = collector.collect()
    except CollectError as exc:  # what the cut token answer used to do
        pytest.fail(f"a transient token failure ended the collection: {type(exc).__name__}")
    assert result.report.succeeded == 1 and not result.failed_calls
    assert emu.stats.count("sps", 200) == 1
