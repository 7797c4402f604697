"""spotlake.redact: secrets recognised by their shape (any case, any escaping), the logging filter,
and the HTTP error messages built from response bodies."""

from __future__ import annotations

import io
import logging
from urllib.parse import quote, unquote

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hypothesis_support import examples
from spotlake.collect.http import error_for_response, read_json
from spotlake.errors import PayloadError
from spotlake.redact import MARK, SecretFilter, scrub, scrub_handlers

SECRET = "Zq8~xV7mN2pR5tW1yB4cD6"
JWT = (
    "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9."
    "eyJhdWQiOiJodHRwczovL21hbmFnZW1lbnQuYXp1cmUuY29tIiwianRpIjo3fQ."
    "c2lnbmF0dXJlLW9mLXRoZS10b2tlbi0xMjM0NTY3ODk"
)
HOOK_PATH = "T0AB12CD3/B0EF45GH6/xk9QmZ2vL7tR4wN8pY1cJ3sD"


def gone(secret: str, text: str) -> bool:
    forms = {text, unquote(text), unquote(unquote(text))}
    return all(secret.lower() not in form.lower() for form in forms)


@pytest.mark.parametrize(
    "text",
    [
        # JWTs: whole, or cut short anywhere after the header.
        f"token {JWT} expired",
        f"Content: {JWT[:40]}",
        # Bearer and Authorization.
        f"Authorization: Bearer {SECRET}",
        f"authorization={SECRET}",
        f"{{'Authorization': 'Bearer {SECRET}'}}",
        f"BEARER {SECRET}",
        # JSON fields, quoted, escaped, cut before the closing quote.
        f'{{"access_token": "{SECRET}", "token_type": "Bearer"}}',
        f'{{"refresh_token":"{SECRET}"}}',
        f'{{"id_token":"{SECRET}"',
        f'{{"client_secret":"{SECRET}',
        f'{{\\"access_token\\":\\"{SECRET}\\"}}',
        f"{{'password': '{SECRET}'}}",
        f'"Token": "{SECRET}"',
        # Forms, query parameters, environment dumps, headers.
        f"client_id=abc&client_secret={SECRET}&grant_type=client_credentials",
        f"https://acct.blob.core.windows.net/c/b?sv=2024-01-01&sig={quote(SECRET, safe='')}&sp=r",
        f"AZURE_CLIENT_SECRET={SECRET}",
        f"X-Api-Key: {SECRET}",
        f"AccountKey={SECRET};EndpointSuffix=core.windows.net",
        f"password => {SECRET}",
        # A long opaque value after a secret word.
        f"Invalid client secret {SECRET} provided",
        # URLs with userinfo.
        f"https://admin:{SECRET}@db.example.org:5432/x",
        f"HTTPS://{SECRET}@github.com/o/r.git",
    ],
)
def test_secret_shapes_are_scrubbed(text: str) -> None:
    out = scrub(text)
    assert MARK in out
    assert gone(SECRET, out) and gone(JWT[:20], out), out


@pytest.mark.parametrize(
    "url",
    [
        f"https://hooks.slack.com/services/{HOOK_PATH}",
        f"HTTP://HOOKS.SLACK.COM/SERVICES/{HOOK_PATH.upper()}",
        f"https://hooks.slack.com:443/services/{HOOK_PATH}",
        f"https%3A%2F%2Fhooks.slack.com%2Fservices%2F{HOOK_PATH.replace('/', '%2F')}",
        f"https%253A%252F%252Fhooks.slack.com%252Fservices%252F{HOOK_PATH.replace('/', '%252F')}",
        f"https://hooks%2Eslack%2Ecom/services/{HOOK_PATH}",
        # One character escaped (%4C is "L"), and JSON's escaped slashes.
        "https://hooks.slack.com/services/T0AB12CD3/B0EF45GH6/xk9QmZ2v%4C7tR4wN8pY1cJ3sD",
        "https:" + f"//hooks.slack.com/services/{HOOK_PATH}".replace("/", "\\/"),
        f"http://127.0.0.1:8080/services/{HOOK_PATH}",
        f"https://contoso.webhook.office.com/webhookb2/{HOOK_PATH}",
        f"https://discord.com/api/webhooks/{HOOK_PATH}",
    ],
)
def test_webhook_urls_are_scrubbed_in_any_case_or_encoding(url: str) -> None:
    for text in (
        url,
        f'HTTP Request: POST {url} "HTTP/1.1 200 OK"',
        f'{{"url": "{url}"}}',
        f"?next={url}&x=1",
    ):
        out = scrub(text)
        assert gone("xk9QmZ2v", out), out
        assert gone("xk9QmZ2vL7tR4wN8pY1cJ3sD", out), out


@pytest.mark.parametrize(
    "text",
    [
        "sps: call #3 [eastus,westus x Standard_D2s_v3] via sub-a/eastus got HTTP 429: try again after 60 s",
        "auth: the token endpoint failed for client 5fce9f7a-5b4f-4bb6-8680-85da2a4cb556 (HTTP 503)",
        "sps: the bearer token was rejected; check the tenant, client id and secret",
        '{"token_type":"Bearer","expires_in":3600,"token_endpoint":"https://login.example/t/oauth2/v2.0/token"}',
        "GET https://management.azure.com/subscriptions/s/providers/Microsoft.Compute/skus?api-version=2021-07-01",
        "stored runs/2026-03-02T0010/snapshot.parquet under key runs/2026-03-02T0010",
        "AzureCredentials(tenant_id='t', client_id='c', client_secret=Secret('***'), subscriptions=('s',))",
        "50% of the calls; 100%2 is not an escape",
    ],
)
def test_ordinary_messages_are_left_alone(text: str) -> None:
    assert scrub(text) == text


@settings(max_examples=examples(200), deadline=None)
@given(st.text(max_size=200))
def test_scrub_is_idempotent_and_never_fails(text: str) -> None:
    once = scrub(text)
    assert scrub(once) == once


def test_the_filter_scrubs_message_args_exception_and_stack() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger("test_redact.third_party")
    logger.propagate = False
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    scrub_handlers(logger)
    scrub_handlers(logger)  # once is enough: no second filter
    assert sum(isinstance(f, SecretFilter) for f in handler.filters) == 1
    try:
        logger.debug(
            "POST %s with %r", f"https://hooks.slack.com/services/{HOOK_PATH}", {"client_secret": SECRET}
        )
        try:
            raise ValueError(f'Content: {{"access_token":"{JWT}"}}')
        except ValueError:
            logger.exception("token request failed", stack_info=True)
        bad = "bad args %s %s"  # a record whose args do not fit is still shown, scrubbed
        logger.info(bad, f"password={SECRET}")
    finally:
        logger.removeHandler(handler)
    text = stream.getvalue()
    assert "token request failed" in text and "ValueError" in text and "Stack (most recent call last)" in text
    assert gone(SECRET, text) and gone("xk9QmZ2v", text) and gone(JWT[:20], text), text


def test_http_error_messages_built_from_bodies_are_scrubbed() -> None:
    request = httpx.Request("POST", "https://management.azure.com/x")
    bodies = {
        500: f'{{"error": {{"code": "X", "message": "upstream said access_token={SECRET} and {JWT}"}}}}',
        401: f"Bearer {SECRET} is not valid here; Authorization: Bearer {JWT}",
        400: f'{{"message": "client_secret \\"{SECRET}\\" is malformed"}}',
        403: f"<html>forbidden https://user:{SECRET}@host/ {JWT[:50]}</html>",
    }
    for status, body in bodies.items():
        error = error_for_response("sps", "call #0", httpx.Response(status, text=body, request=request))
        assert error.status == status
        assert gone(SECRET, str(error)) and gone(JWT[:20], str(error)), str(error)
    cut = httpx.Response(200, content=f'{{"access_token":"{JWT}'.encode(), request=request)
    with pytest.raises(PayloadError) as info:
        read_json("auth", "token", cut)
    assert gone(JWT[:20], str(info.value))
