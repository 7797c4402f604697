"""Credentials from arguments, the environment and DynamoDB; tokens; the Slack webhook; redaction."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from azure.core.credentials import AccessToken
from azure.core.exceptions import ClientAuthenticationError, ServiceRequestError
from moto import mock_aws

from spotlake.clock import FakeClock
from spotlake.collect.auth import (
    AzureCredentials,
    StaticToken,
    TokenProvider,
    slack_webhook,
)
from spotlake.errors import AuthError, CredentialsError, TransientCollectError
from spotlake.model import Secret

SECRET = "s3cr3t-VALUE-never-shown"
ENV = {
    "AZURE_TENANT_ID": "tenant-1",
    "AZURE_CLIENT_ID": "client-1",
    "AZURE_CLIENT_SECRET": SECRET,
    "AZURE_SUBSCRIPTION_IDS": "sub-a, sub-b,,sub-a",
}
T0 = datetime(2026, 3, 1, tzinfo=UTC)


# --- AzureCredentials ------------------------------------------------------------------------


def test_explicit_arguments_and_redaction(caplog: pytest.LogCaptureFixture) -> None:
    creds = AzureCredentials(tenant_id="t", client_id="c", client_secret=SECRET, subscriptions="x,y")
    assert creds.client_secret == Secret(SECRET)
    assert creds.subscriptions == ("x", "y")
    caplog.set_level(logging.DEBUG)
    logging.getLogger("spotlake.test").info("creds %s %r", creds, creds)
    for shown in (repr(creds), str(creds), f"{creds}", caplog.text):
        assert SECRET not in shown


@pytest.mark.parametrize("field", ["tenant_id", "client_id", "client_secret", "subscriptions"])
def test_empty_fields_are_refused_by_name(field: str) -> None:
    args: dict[str, Any] = {"tenant_id": "t", "client_id": "c", "client_secret": SECRET, "subscriptions": "s"}
    args[field] = " , " if field == "subscriptions" else "  "
    with pytest.raises(CredentialsError, match=field) as info:
        AzureCredentials(**args)
    assert SECRET not in str(info.value)


def test_from_env() -> None:
    creds = AzureCredentials.from_env(ENV)
    assert (creds.tenant_id, creds.client_id, creds.subscriptions) == (
        "tenant-1",
        "client-1",
        ("sub-a", "sub-b"),
    )
    assert creds.client_secret.reveal() == SECRET


def test_from_env_names_every_missing_variable() -> None:
    env = {k: v for k, v in ENV.items() if k not in ("AZURE_TENANT_ID", "AZURE_SUBSCRIPTION_IDS")}
    with pytest.raises(CredentialsError) as info:
        AzureCredentials.from_env(env)
    message = str(info.value)
    assert "AZURE_TENANT_ID" in message and "AZURE_SUBSCRIPTION_IDS" in message
    assert "AZURE_CLIENT_ID," not in message.split("not set", maxsplit=1)[0]
    assert SECRET not in message


@pytest.fixture
def dynamodb() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        client.create_table(
            TableName="AzureAuth",
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        yield client


def _put_map(resource_table: Any, key: str, data: Any) -> None:
    resource_table.put_item(Item={"id": key, "data": data})


def test_from_dynamodb_map_item_as_the_original_wrote_it(dynamodb: Any) -> None:
    table = boto3.resource("dynamodb", region_name="us-east-1").Table("AzureAuth")
    data = {"tenant_id": "t-z", "client_id": "c-z", "client_secret": SECRET, "subscriptions": "s1,s2"}
    _put_map(table, "login_auth_az_true", data)
    _put_map(table, "login_auth_az_false", {**data, "tenant_id": "t-r", "subscriptions": ["s3"]})
    zonal = AzureCredentials.from_dynamodb(client=dynamodb)
    regional = AzureCredentials.from_dynamodb(client=dynamodb, zonal=False)
    assert (zonal.tenant_id, zonal.subscriptions) == ("t-z", ("s1", "s2"))
    assert (regional.tenant_id, regional.subscriptions) == ("t-r", ("s3",))
    assert zonal.client_secret.reveal() == SECRET


def test_from_dynamodb_json_string_item(dynamodb: Any) -> None:
    data = {"tenant_id": "t", "client_id": "c", "client_secret": SECRET, "subscriptions": "s1"}
    dynamodb.put_item(TableName="AzureAuth", Item={"id": {"S": "custom"}, "data": {"S": json.dumps(data)}})
    creds = AzureCredentials.from_dynamodb(client=dynamodb, key="custom")
    assert creds.subscriptions == ("s1",)


@pytest.mark.parametrize(
    ("item", "needle"),
    [
        (None, "does not exist"),
        ({"id": {"S": "login_auth_az_true"}}, "no 'data'"),
        ({"id": {"S": "login_auth_az_true"}, "data": {"S": "{not json " + SECRET}}, "not JSON"),
        ({"id": {"S": "login_auth_az_true"}, "data": {"N": "5"}}, "map or a JSON object"),
        (
            {"id": {"S": "login_auth_az_true"}, "data": {"M": {"client_secret": {"S": SECRET}}}},
            "lacks tenant_id, client_id, subscriptions",
        ),
    ],
)
def test_from_dynamodb_errors_name_the_problem_never_the_secret(
    dynamodb: Any, item: dict[str, Any] | None, needle: str
) -> None:
    if item is not None:
        dynamodb.put_item(TableName="AzureAuth", Item=item)
    with pytest.raises(CredentialsError) as info:
        AzureCredentials.from_dynamodb(client=dynamodb)
    assert needle in str(info.value)
    assert "AzureAuth" in str(info.value)
    assert SECRET not in str(info.value) and SECRET not in repr(info.value)


def test_from_dynamodb_missing_table(dynamodb: Any) -> None:
    with pytest.raises(CredentialsError, match="ResourceNotFoundException"):
        AzureCredentials.from_dynamodb(client=dynamodb, table="Nope")


# --- Slack webhook -----------------------------------------------------------------------------


def test_slack_webhook_env_first_then_ssm() -> None:
    url = "https://hooks.slack.com/services/T000/B000/XXXXSECRET"
    with mock_aws():
        ssm = boto3.client("ssm", region_name="us-east-1")
        assert slack_webhook({}, ssm_client=ssm) is None  # not configured: None, not an error
        ssm.put_parameter(Name="error_notification_slack_webhook_url", Value=url, Type="SecureString")
        hook = slack_webhook({}, ssm_client=ssm)
        assert hook is not None and hook.reveal() == url and "XXXXSECRET" not in repr(hook)
        from_env = slack_webhook({"SPOTLAKE_SLACK_WEBHOOK_URL": "https://env"}, ssm_client=ssm)
        assert from_env is not None and from_env.reveal() == "https://env"
    assert slack_webhook({}) is None


def test_slack_webhook_ssm_failure_is_a_credentials_error() -> None:
    from botocore.stub import Stubber

    ssm = boto3.client("ssm", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y")
    with Stubber(ssm) as stub:
        stub.add_client_error("get_parameter", service_error_code="AccessDeniedException")
        with pytest.raises(CredentialsError, match="AccessDeniedException"):
            slack_webhook({}, ssm_client=ssm, parameter="p")


# --- TokenProvider with a fake SDK credential --------------------------------------------------


class FakeSdkCredential:
    """Stands in for ClientSecretCredential: hands out numbered tokens living ``lifetime`` s."""

    issued: list[str]

    def __init__(self, issued: list[str], lifetime: float, fail: Exception | None = None) -> None:
        self.issued, self.lifetime, self.fail = issued, lifetime, fail

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        if self.fail is not None:
            raise self.fail
        token = f"token-{len(self.issued)}"
        self.issued.append(token)
        return AccessToken(token, int(1_000_000 + self.lifetime))


def provider(
    clock: FakeClock, issued: list[str], lifetime: float = 3600, fail: Exception | None = None
) -> TokenProvider:
    creds = AzureCredentials(tenant_id="t", client_id="c", client_secret=SECRET, subscriptions="s")
    return TokenProvider(
        creds,
        clock=clock,
        credential_factory=lambda: FakeSdkCredential(issued, lifetime, fail),
        sdk_time=lambda: 1_000_000.0,
    )


def test_token_is_cached_and_refreshed_five_minutes_before_expiry_on_the_clock() -> None:
    clock, issued = FakeClock(T0), list[str]()
    tokens = provider(clock, issued)
    assert tokens.token().reveal() == "token-0"
    assert tokens.expires_at == T0 + timedelta(hours=1)
    clock.advance(3600 - 301)
    assert tokens.token().reveal() == "token-0"
    clock.advance(2)  # now inside the 5-minute margin
    assert tokens.token().reveal() == "token-1"
    assert tokens.refreshes == 2
    assert SECRET not in repr(tokens)


def test_short_lived_tokens_refresh_halfway() -> None:
    clock, issued = FakeClock(T0), list[str]()
    tokens = provider(clock, issued, lifetime=120)
    tokens.token()
    clock.advance(59)
    assert tokens.token().reveal() == "token-0"
    clock.advance(2)
    assert tokens.token().reveal() == "token-1"


def test_force_refresh_dedupes_concurrent_401s() -> None:
    clock, issued = FakeClock(T0), list[str]()
    tokens = provider(clock, issued)

    async def main() -> list[str]:
        stale = await tokens.atoken()
        fresh = await asyncio.gather(*(tokens.aforce_refresh(stale) for _ in range(5)))
        return [t.reveal() for t in fresh]

    assert asyncio.run(main()) == ["token-1"] * 5
    assert issued == ["token-0", "token-1"]
    assert tokens.force_refresh().reveal() == "token-2"  # without a rejected token: always new


def test_get_token_serves_sdk_clients_from_the_cache() -> None:
    clock, issued = FakeClock(T0), list[str]()
    tokens = provider(clock, issued)
    first = tokens.get_token("https://management.azure.com/.default")
    second = tokens.get_token("https://management.azure.com/.default")
    assert first.token == second.token == "token-0" and len(issued) == 1
    assert first.expires_on == 1_000_000 + 3600


def test_sdk_errors_are_mapped_without_the_secret() -> None:
    clock = FakeClock(T0)
    bad = provider(
        clock, [], fail=ClientAuthenticationError(message=f"AADSTS7000215: Invalid client secret {SECRET}")
    )
    with pytest.raises(AuthError) as info:
        bad.token()
    assert "client c in tenant t" in str(info.value) and SECRET not in str(info.value)
    down = provider(clock, [], fail=ServiceRequestError("connection refused"))
    with pytest.raises(TransientCollectError):
        down.token()


def test_token_provider_needs_a_source() -> None:
    with pytest.raises(CredentialsError):
        TokenProvider()


def test_static_token() -> None:
    static = StaticToken("abc")
    assert "abc" not in repr(static)
    assert asyncio.run(static.atoken()).reveal() == "abc"
    assert asyncio.run(static.aforce_refresh()).reveal() == "abc"


# --- the real ClientSecretCredential flow against the emulator (offline) ---------------------


def test_client_secret_flow_offline_with_refresh_before_expiry(caplog: pytest.LogCaptureFixture) -> None:
    from spotlake.collect.base import AzureEndpoints
    from spotlake.testing.azure import AzureEmulator
    from spotlake.testing.world import World

    clock = FakeClock(T0)
    emu = AzureEmulator(World.published_example(), clock=clock)
    creds = AzureCredentials(
        tenant_id=emu.tenant_id,
        client_id=emu.client_id,
        client_secret=emu.client_secret,
        subscriptions=emu.subscriptions,
    )
    endpoints = AzureEndpoints(authority="https://login.emulator.test")
    tokens = TokenProvider(creds, endpoints=endpoints, clock=clock, transport=emu.azure_transport())
    caplog.set_level(logging.DEBUG)
    first = tokens.token()
    assert emu.stats.count("token", 200) >= 1
    assert tokens.expires_at is not None
    assert abs((tokens.expires_at - (T0 + timedelta(hours=1))).total_seconds()) < 5
    clock.advance(3000)
    assert tokens.token() == first  # still more than 5 minutes left: cached, no request
    before = emu.stats.count("token")
    clock.advance(400)  # inside the margin: refreshed before it expires
    second = tokens.token()
    assert second != first and emu.stats.count("token") > before
    assert emu.client_secret not in repr(tokens)
    # Neither the secret nor a token shows up in any log line (ours, azure-identity's, msal's).
    for hidden in (emu.client_secret, first.reveal(), second.reveal()):
        assert hidden not in caplog.text


def test_client_secret_flow_wrong_tenant_is_an_auth_error() -> None:
    from spotlake.collect.base import AzureEndpoints
    from spotlake.testing.azure import AzureEmulator
    from spotlake.testing.world import World

    emu = AzureEmulator(World.published_example())
    creds = AzureCredentials(
        tenant_id="00000000-0000-0000-0000-000000000000",
        client_id=emu.client_id,
        client_secret=emu.client_secret,
        subscriptions="s",
    )
    tokens = TokenProvider(
        creds,
        endpoints=AzureEndpoints(authority="https://login.emulator.test"),
        clock=emu.clock,
        transport=emu.azure_transport(),
    )
    with pytest.raises(AuthError) as info:
        tokens.token()
    assert emu.client_secret not in str(info.value)


def test_a_failed_early_refresh_keeps_using_the_still_valid_token() -> None:
    """Inside the refresh margin a token is still valid; a transient token-endpoint failure then
    must not fail the caller (the next call tries to refresh again)."""
    from azure.core.credentials import AccessToken
    from azure.core.exceptions import ServiceRequestError

    from spotlake.errors import TransientError as _Transient

    clock = FakeClock(datetime(2026, 1, 1, tzinfo=UTC))
    calls = {"n": 0}

    class Flaky:
        def get_token(self, *scopes: str, **kwargs: object) -> AccessToken:
            calls["n"] += 1
            if calls["n"] == 1:
                return AccessToken("first", int(time.time()) + 3600)
            raise ServiceRequestError("token endpoint unreachable")

    provider = TokenProvider(credential_factory=Flaky, clock=clock)
    assert provider.token().reveal() == "first"
    clock.advance(3600 - 120)  # inside the 5-minute refresh margin, 2 minutes before expiry
    assert provider.token().reveal() == "first"
    assert calls["n"] == 2
    clock.advance(300)  # now really expired: the failure surfaces
    with pytest.raises(_Transient):
        provider.token()
