"""Failure notifications (Slack incoming webhooks).

The webhook URL is a secret (anyone holding it can post to the channel): it is held as a
:class:`spotlake.model.Secret`, revealed only to build the request, and never logged: while the
request is sent, httpx's request log goes through :class:`spotlake.redact.SecretFilter`, which
recognises webhook URLs by their shape (any case, percent-encoded or not). The message text is
scrubbed the same way before it is sent, so an error quoting a token or a secret-named field does
not reach the channel. A notification that cannot be delivered is logged (without the URL) and never
masks the error that caused it: notifying is best effort by design.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Protocol

import attrs
import httpx

from spotlake.model import Secret
from spotlake.redact import SecretFilter, scrub

__all__ = ["Notifier", "SlackNotifier"]

log = logging.getLogger(__name__)

#: A URL's path, query or fragment (group "base" keeps the scheme and host).
_URL_TAIL = re.compile(r"(?P<base>\b[a-z][a-z0-9+.-]*://[^/?#\s\"'<>]+)[/?#][^\s\"'<>]*", re.IGNORECASE)


class Notifier(Protocol):
    """Something that tells a human a run failed."""

    def notify(self, title: str, text: str) -> bool:
        """Send one message; True when it was delivered."""
        ...


@attrs.frozen(kw_only=True)
class SlackNotifier:
    """Posts a message to a Slack incoming webhook.

    ``transport`` is injectable (tests use :class:`httpx.MockTransport`); ``timeout`` is short because a
    notification must never hold up or hang a collection run.
    """

    webhook: Secret
    transport: httpx.BaseTransport | None = None
    timeout: float = 10.0

    def notify(self, title: str, text: str) -> bool:
        payload = {"text": scrub(f"*{title}*\n{text}")}
        # httpx logs every request URL at INFO; for a webhook the URL is the secret. A logger's
        # filter sees its own records before any handler does.
        redact = _WebhookLog()
        httpx_log = logging.getLogger("httpx")
        httpx_log.addFilter(redact)
        try:
            with httpx.Client(transport=self.transport, timeout=self.timeout) as client:
                response = client.post(
                    self.webhook.reveal(),
                    content=json.dumps(payload),
                    headers={"content-type": "application/json"},
                )
        except httpx.HTTPError as exc:
            # Name the exception type only: its message may contain the webhook URL.
            log.warning("Slack notification not delivered: %s", type(exc).__name__)
            return False
        finally:
            httpx_log.removeFilter(redact)
        if response.status_code >= 300:
            log.warning("Slack notification not delivered: HTTP %s", response.status_code)
            return False
        return True


class _WebhookLog(SecretFilter):
    """httpx's records while a webhook is posted: scrubbed, and every URL cut to its host, because
    the path of a webhook URL is its secret whatever its shape (not only Slack's)."""

    def filter(self, record: logging.LogRecord) -> bool:
        super().filter(record)
        record.msg = _URL_TAIL.sub(lambda m: f"{m['base']}/***", str(record.msg))
        return True
