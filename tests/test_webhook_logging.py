"""The Slack webhook URL never shows in logs, however it is spelled, and a message sent to Slack
carries no secret.

httpx logs every request URL at INFO, normalised: the scheme and host lower-cased, a default port
dropped, characters percent-encoded. So a webhook configured as ``HTTP://HOOKS.SLACK.COM/...`` or
with a space is logged in another spelling than the one configured, and looking for the configured
string finds nothing. These tests spell it every such way.
"""

from __future__ import annotations

import json
import logging
from urllib.parse import unquote

import httpx
import pytest

from spotlake.model import Secret
from spotlake.notify import SlackNotifier

#: The secret part of the webhook: what must never show, in any case or encoding.
CANARY = "canaryHookXq7Lm2pR5tV8"
SPELLINGS = {
    "upper-case": f"HTTP://HOOKS.SLACK.COM/services/T0CANARY/B0CANARY/{CANARY}",
    "default-port": f"https://hooks.slack.com:443/services/T0CANARY/B0CANARY/{CANARY}",
    "escaped-char": f"https://hooks.slack.com/services/T0CANARY/B0CANARY/{CANARY} x",
    "percent-encoded": f"https://hooks.slack.com/services/T0CANARY/B0CANARY/{CANARY[:6]}%{ord(CANARY[6]):02X}{CANARY[7:]}",
    "other-host": f"https://relay.example.org/services/T0CANARY/B0CANARY/{CANARY}",
    "not-slack-shaped": f"https://chat.example.org/incoming/{CANARY}",
}


def leaked(text: str) -> bool:
    """True when the canary shows in ``text``: as is, in any case, or once percent-decoded."""
    forms = {text, unquote(text), unquote(unquote(text))}
    return any(CANARY.lower() in form.lower() for form in forms)


@pytest.mark.parametrize("spelling", list(SPELLINGS))
@pytest.mark.parametrize("answer", [200, 404])
def test_the_webhook_never_shows_in_debug_logs(
    spelling: str, answer: int, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[httpx.Request] = []

    def slack(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(answer, text="ok" if answer == 200 else "no_service")

    notifier = SlackNotifier(webhook=Secret(SPELLINGS[spelling]), transport=httpx.MockTransport(slack))
    with caplog.at_level(logging.DEBUG):
        assert notifier.notify("spotlake run failed", "details") is (answer == 200)
    assert seen, "the request was sent"
    assert any(r.name == "httpx" for r in caplog.records), "httpx logged the request"
    assert not leaked(caplog.text), caplog.text
    assert not any(leaked(r.getMessage()) for r in caplog.records)
    assert not leaked(repr(notifier))


def test_the_message_sent_to_slack_is_scrubbed() -> None:
    bodies: list[bytes] = []

    def slack(request: httpx.Request) -> httpx.Response:
        bodies.append(request.content)
        return httpx.Response(200, text="ok")

    token = "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9.eyJhdWQiOiJodHRwczovL21hbmFnZW1lbnQ.c2lnbmF0dXJlQ2FuYXJ5"
    text = (
        'AuthError: auth: token endpoint: Content: {"token_type":"Bearer","access_token":"'
        + token[:60]
        + f"\nclient_secret=S3cret~Canary123456 webhook https://hooks.slack.com/services/T0/B0/{CANARY}"
    )
    notifier = SlackNotifier(webhook=Secret(SPELLINGS["upper-case"]), transport=httpx.MockTransport(slack))
    assert notifier.notify("spotlake run failed", text)
    sent = json.loads(bodies[0])["text"]
    assert sent.startswith("*spotlake run failed*\nAuthError: auth: token endpoint")
    for secret in (token[:60], "eyJ0eXAi", "S3cret~Canary", CANARY):
        assert secret.lower() not in sent.lower(), sent
