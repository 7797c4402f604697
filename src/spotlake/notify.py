"""Failure notifications (Slack incoming webhooks).

The webhook URL is a secret (anyone holding it can post to the channel): it is held as a
:class:`spotlake.model.Secret`, revealed only to build the request, and never logged. A
notification that cannot be delivered is logged (without the URL) and never masks the error that
caused it: notifying is best effort by design.
"""

from __future__ import annotations

import json
import logging
from typing import Protocol

import attrs
import httpx

from spotlake.model import Secret

__all__ = ["Notifier", "SlackNotifier"]

log = logging.getLogger(__name__)


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
        payload = {"text": f"*{title}*\n{text}"}
        # httpx logs every request URL at INFO; for a webhook the URL is the secret.
        redact = _Redact(self.webhook)
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


class _Redact(logging.Filter):
    """Rewrites log records that would show the secret (formatted message), keeping the rest."""

    def __init__(self, secret: Secret) -> None:
        super().__init__()
        self._secret = secret

    def filter(self, record: logging.LogRecord) -> bool:
        value = self._secret.reveal()
        message = record.getMessage()
        if value and value in message:
            record.msg = message.replace(value, "<redacted webhook>")
            record.args = None
        return True
