"""The token endpoint answers odd credentials and bodies with Entra ID's OAuth errors, never a crash.

Non-ASCII secrets, client ids and tenants, bodies that are not valid UTF-8 or not form-encoded: each
gets the 400/401 ``{"error", "error_description", "error_codes"}`` reply the Microsoft identity
platform gives, in-process, over the loopback server, and through azure-identity.
"""

from __future__ import annotations

from urllib.parse import quote

import httpx
import pytest

from spotlake.testing.azure import AzureEmulator

SECRET = "sécret-ü"


def token_path(tenant: str) -> str:
    return f"/{quote(tenant)}/oauth2/v2.0/token"


def form(emu: AzureEmulator, **overrides: str) -> dict[str, str]:
    return {
        "grant_type": "client_credentials",
        "client_id": emu.client_id,
        "client_secret": emu.client_secret,
        "scope": "https://management.azure.com/.default",
        **overrides,
    }


def raw_form(emu: AzureEmulator, secret: bytes) -> bytes:
    """A form body whose secret is sent as raw bytes, not percent-encoded."""
    return (
        b"grant_type=client_credentials&client_id="
        + emu.client_id.encode()
        + b"&client_secret="
        + secret
        + b"&scope=https%3A%2F%2Fmanagement.azure.com%2F.default"
    )


FORM_TYPE = {"Content-Type": "application/x-www-form-urlencoded"}


def assert_oauth_error(reply: httpx.Response, status: int, error: str, code: int) -> None:
    assert reply.status_code == status, reply.text
    body = reply.json()
    assert body["error"] == error
    assert body["error_codes"] == [code]
    assert body["error_description"].startswith(f"AADSTS{code}:")


@pytest.fixture
def login(emu: AzureEmulator) -> httpx.Client:
    return httpx.Client(transport=emu.transport(), base_url="https://login.emulator.test")


def test_a_non_ascii_secret_is_a_wrong_secret(emu: AzureEmulator, login: httpx.Client) -> None:
    path = token_path(emu.tenant_id)
    encoded = login.post(path, data=form(emu, client_secret=SECRET))  # percent-encoded UTF-8
    assert_oauth_error(encoded, 401, "invalid_client", 7000215)
    raw = login.post(path, content=raw_form(emu, SECRET.encode()), headers=FORM_TYPE)
    assert_oauth_error(raw, 401, "invalid_client", 7000215)
    assert emu.stats.count("token", 401) == 2


def test_a_secret_that_is_not_utf8_is_a_wrong_secret(emu: AzureEmulator, login: httpx.Client) -> None:
    path = token_path(emu.tenant_id)
    for secret in (b"%FF%FEsecret", b"\xff\xfesecret", SECRET.encode("latin-1")):
        reply = login.post(path, content=raw_form(emu, secret), headers=FORM_TYPE)
        assert_oauth_error(reply, 401, "invalid_client", 7000215)


def test_a_non_ascii_secret_over_the_loopback_server(emu: AzureEmulator) -> None:
    with emu.serve() as base_url, httpx.Client(base_url=base_url, timeout=10) as client:
        reply = client.post(token_path(emu.tenant_id), data=form(emu, client_secret=SECRET))
        assert_oauth_error(reply, 401, "invalid_client", 7000215)


def test_azure_identity_with_a_non_ascii_secret_is_refused(emu: AzureEmulator) -> None:
    from azure.core.exceptions import ClientAuthenticationError
    from azure.identity import ClientSecretCredential

    credential = ClientSecretCredential(
        emu.tenant_id,
        emu.client_id,
        SECRET,
        authority="https://login.microsoftonline.com",
        disable_instance_discovery=True,
        transport=emu.azure_transport(),
    )
    with pytest.raises(ClientAuthenticationError, match="AADSTS7000215"):
        credential.get_token("https://management.azure.com/.default")


def test_a_non_ascii_client_id_is_an_unknown_application(emu: AzureEmulator, login: httpx.Client) -> None:
    path = token_path(emu.tenant_id)
    encoded = login.post(path, data=form(emu, client_id="clïent-ü"))
    assert_oauth_error(encoded, 400, "unauthorized_client", 700016)
    raw = b"grant_type=client_credentials&client_id=cl\xc3\xafent&client_secret=" + emu.client_secret.encode()
    assert_oauth_error(login.post(path, content=raw, headers=FORM_TYPE), 400, "unauthorized_client", 700016)


@pytest.mark.parametrize("tenant", ["ténant-ü", "\u79df\u6237"])
def test_a_non_ascii_tenant_is_not_found(emu: AzureEmulator, login: httpx.Client, tenant: str) -> None:
    token = login.post(token_path(tenant), data=form(emu))
    assert_oauth_error(token, 400, "invalid_request", 90002)
    assert tenant in token.json()["error_description"]
    config = login.get(f"/{quote(tenant)}/v2.0/.well-known/openid-configuration")
    assert_oauth_error(config, 400, "invalid_request", 90002)


def test_a_body_that_is_not_a_form_misses_the_grant_type(emu: AzureEmulator, login: httpx.Client) -> None:
    path = token_path(emu.tenant_id)
    # A JSON body with every right value (a common client mistake): Entra ID sees no parameters.
    as_json = login.post(path, json=form(emu))
    assert_oauth_error(as_json, 400, "invalid_request", 900144)
    assert "'grant_type'" in as_json.json()["error_description"]
    for body in (b"", b"\xff\xfe\x00\x80not utf-8 at all", "sécret".encode()):
        reply = login.post(path, content=body, headers=FORM_TYPE)
        assert_oauth_error(reply, 400, "invalid_request", 900144)


def test_a_form_without_a_client_id_names_it(emu: AzureEmulator, login: httpx.Client) -> None:
    body = {k: v for k, v in form(emu).items() if k != "client_id"}
    reply = login.post(token_path(emu.tenant_id), data=body)
    assert_oauth_error(reply, 400, "invalid_request", 900144)
    assert "'client_id'" in reply.json()["error_description"]


def test_the_right_credentials_still_get_a_token(emu: AzureEmulator, login: httpx.Client) -> None:
    reply = login.post(token_path(emu.tenant_id), data=form(emu))
    assert reply.status_code == 200 and reply.json()["token_type"] == "Bearer"
