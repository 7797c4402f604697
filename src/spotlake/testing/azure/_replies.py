"""What every emulated service shares: the request it is given, the :class:`Reply` it returns.

A service sees a request already parsed by :meth:`AzureEmulator.handle` (:class:`ServiceRequest`)
and answers with a :class:`Reply` built by the helpers here, in the shapes the real services use:
ARM's JSON error envelope (:func:`error_reply`), Entra ID's OAuth error (:func:`oauth_error`), the
SPS quota's plain-text 429 (:func:`too_many_requests`). JSON is rendered by :func:`dumps`, compactly
and in a fixed key order, so identical payloads give identical bytes.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any, Final, Literal, Protocol

import attrs

from spotlake.testing.faults import Decision

__all__ = [
    "JSON_HEADERS",
    "Action",
    "Reply",
    "Service",
    "ServiceRequest",
    "b64url",
    "dumps",
    "error_reply",
    "oauth_error",
    "ok_reply",
    "too_many_requests",
    "unb64url",
]

Action = Literal["respond", "timeout", "reset"]

JSON_HEADERS: Final = (("Content-Type", "application/json; charset=utf-8"),)


@attrs.frozen(kw_only=True)
class Reply:
    """The emulator's answer to one request, and what the transport must do with it.

    ``action`` "respond": wait ``delay`` seconds then send status/headers/body; "timeout": stall
    (``delay`` + ``stall`` seconds) and never answer; "reset": drop the connection after ``delay``.
    """

    status: int = 200
    headers: tuple[tuple[str, str], ...] = JSON_HEADERS
    body: bytes = b""
    endpoint: str = "other"
    action: Action = "respond"
    delay: float = 0.0
    stall: float = 0.0

    def json(self) -> Any:
        return json.loads(self.body)


@attrs.frozen(kw_only=True)
class ServiceRequest:
    """A request as a service sees it: decoded path, last value of each query parameter, lower-case
    header names, raw body, the base URL the client used (for links), and the fault decision."""

    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]
    body: bytes
    base_url: str
    decision: Decision


class Service(Protocol):
    """One emulated service: the requests it takes (:meth:`accepts`) and its answer to each."""

    @property
    def endpoint(self) -> str:
        """The endpoint name in statistics and fault settings (``prices``, ``sps``...)."""
        ...

    def accepts(self, method: str, path: str) -> bool: ...

    def __call__(self, request: ServiceRequest) -> Reply: ...


def dumps(payload: object) -> bytes:
    """Compact, key-order-preserving JSON (byte-identical for identical payloads)."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


def error_reply(status: int, code: str, message: str, endpoint: str) -> Reply:
    """An error in ARM's envelope: ``{"error": {"code": ..., "message": ...}}``."""
    return Reply(status=status, body=dumps({"error": {"code": code, "message": message}}), endpoint=endpoint)


def oauth_error(error: str, description: str, code: int, endpoint: str, *, status: int = 400) -> Reply:
    """An error in the shape Microsoft Entra ID's token endpoint answers with."""
    body = {"error": error, "error_description": description, "error_codes": [code]}
    return Reply(status=status, body=dumps(body), endpoint=endpoint)


def ok_reply(payload: object, endpoint: str) -> Reply:
    """A 200 with ``payload`` as JSON."""
    return Reply(status=200, body=dumps(payload), endpoint=endpoint)


def too_many_requests(seconds: int, endpoint: str) -> Reply:
    """The SPS quota's 429: plain text, not the JSON error envelope, and ``Retry-After``."""
    text = (
        f"You have reached the maximum number of requests allowed. Please try again after {seconds} seconds."
    )
    return Reply(
        status=429,
        headers=(("Content-Type", "text/plain; charset=utf-8"), ("Retry-After", str(seconds))),
        body=text.encode(),
        endpoint=endpoint,
    )


def b64url(data: bytes) -> str:
    """Unpadded base64url, as JWTs and continuation tokens use."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    """The inverse of :func:`b64url` (restores the padding)."""
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
