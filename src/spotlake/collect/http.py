"""HTTP plumbing shared by the collectors: status -> error mapping, Retry-After, and the retry policy.

The mapping is the one boundary where HTTP becomes spotlake errors (see :mod:`spotlake.errors`):

=========  ==========================================================================
status     error
=========  ==========================================================================
400        :class:`InvalidRequestError` with ``parameter``/``invalid_values`` parsed from
           Azure's "The value 'x' provided for the input parameter 'p' is not valid"
401, 403   :class:`AuthError` (the caller refreshes its token once on 401)
404, 4xx   :class:`InvalidRequestError`
408, 429   :class:`TransientCollectError` with ``retry_after`` from the header or the
           plain-text body ("... try again after 3600 seconds.")
5xx        :class:`TransientCollectError`
=========  ==========================================================================

Connection errors and timeouts from httpx are transient too (:func:`is_transient`). Body text that
enters a message goes through :func:`spotlake.redact.scrub` first, so no error carries a secret.
Retries use tenacity with the sleeping injected from a :class:`spotlake.clock.Clock`, so tests and
the emulator never wait for real. httpx's own ``retries=`` only covers failed connections, and the
Azure SDK's policy does not retry a POST answered 429: status-code retries are ours.
"""

from __future__ import annotations

import email.utils
import json
import math
import random
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import attrs
import httpx
import tenacity

from spotlake.clock import Clock
from spotlake.errors import (
    AuthError,
    CollectError,
    InvalidRequestError,
    PayloadError,
    TransientCollectError,
    TransientError,
)
from spotlake.redact import scrub

__all__ = [
    "Backoff",
    "error_for_response",
    "is_transient",
    "parse_invalid_value",
    "parse_retry_after",
    "read_json",
    "retrying",
]

_AFTER_SECONDS = re.compile(r"after\s+(\d+(?:\.\d+)?)\s*seconds?", re.IGNORECASE)
_INVALID_VALUE = re.compile(
    r"The value '(?P<value>[^']*)' provided for the input parameter '(?P<param>[^']+)' is not valid",
    re.IGNORECASE,
)
#: Longest wait we honour from a server; beyond this the call is reported instead of waited for.
MAX_HONOURED_RETRY_AFTER = 3600.0


def parse_retry_after(response: httpx.Response, *, now: datetime | None = None) -> float | None:
    """Seconds the server asks us to wait: the Retry-After header (seconds or HTTP date), else the
    plain-text body's "try again after N seconds". ``None`` when it says nothing usable.

    Never more than :data:`MAX_HONOURED_RETRY_AFTER` (an absurd or infinite value would otherwise
    overflow date arithmetic or park a quota slot for years), never NaN or negative."""
    seconds = _raw_retry_after(response, now=now)
    if seconds is None or math.isnan(seconds):
        return None
    return min(max(0.0, seconds), MAX_HONOURED_RETRY_AFTER)


def _raw_retry_after(response: httpx.Response, *, now: datetime | None = None) -> float | None:
    header = response.headers.get("retry-after")
    if header:
        header = header.strip()
        try:
            return max(0.0, float(header))
        except ValueError:
            try:
                when = email.utils.parsedate_to_datetime(header)
            except (TypeError, ValueError):
                when = None
            if when is not None:
                ref = now or datetime.now(UTC)
                if when.tzinfo is None:
                    when = when.replace(tzinfo=UTC)
                return max(0.0, (when - ref).total_seconds())
    try:
        text = response.text
    except (UnicodeDecodeError, httpx.ResponseNotRead):
        return None
    match = _AFTER_SECONDS.search(text[:2000])
    return float(match.group(1)) if match else None


def parse_invalid_value(message: str) -> tuple[str, str] | None:
    """``(parameter, value)`` from Azure's 400 message naming an invalid input value, if it does."""
    match = _INVALID_VALUE.search(message)
    if match is None:
        return None
    return match.group("param"), match.group("value")


def _error_message(response: httpx.Response) -> str:
    """The human message of an error response, scrubbed of secrets (a body may echo a token)."""
    return scrub(_raw_error_message(response))[:500]


def _raw_error_message(response: httpx.Response) -> str:
    """``error.message`` of the JSON envelope, or the text (whole: scrubbed before it is cut)."""
    try:
        text = response.text
    except (UnicodeDecodeError, httpx.ResponseNotRead):
        return f"HTTP {response.status_code}"
    try:
        body = json.loads(text)
    except ValueError:
        return text.strip() or f"HTTP {response.status_code}"
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict) and isinstance(err.get("message"), str):
            return str(err["message"])
        if isinstance(body.get("message"), str):
            return str(body["message"])
    return text.strip()


def error_for_response(source: str, what: str, response: httpx.Response) -> CollectError:
    """The spotlake error for a non-2xx response to ``what`` (a short description of the request)."""
    status = response.status_code
    message = _error_message(response)
    prefix = f"{source}: {what} got HTTP {status}"
    if status in (408, 429) or status >= 500:
        return TransientCollectError(
            f"{prefix}: {message}",
            source=source,
            status=status,
            retry_after=parse_retry_after(response),
        )
    if status == 401:
        return AuthError(
            f"{prefix}: the bearer token was rejected ({message}); check the tenant, client id and secret",
            source=source,
            status=status,
        )
    if status == 403:
        return AuthError(f"{prefix}: permission denied ({message})", source=source, status=status)
    parsed = parse_invalid_value(message) if status == 400 else None
    return InvalidRequestError(
        f"{prefix}: {message}",
        source=source,
        status=status,
        parameter=parsed[0] if parsed else None,
        invalid_values=(parsed[1],) if parsed else (),
    )


def read_json(source: str, what: str, response: httpx.Response) -> Any:
    """Decode a 2xx response's JSON body, or raise :class:`PayloadError` naming the request.

    A body that fails to decode is marked transient by the caller if it looks truncated; here it is
    a PayloadError whose message says what arrived.
    """
    try:
        return json.loads(response.content)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        # RecursionError: absurdly nested JSON, which no Azure API sends.
        size = len(response.content)
        raise PayloadError(
            f"{source}: {what} returned a body that is not JSON ({size} bytes): {scrub(str(exc))}",
            source=source,
            status=response.status_code,
        ) from exc


def is_transient(exc: BaseException) -> bool:
    """True for errors worth retrying: spotlake's transient errors and httpx transport failures."""
    return isinstance(exc, TransientError | httpx.TransportError)


@attrs.frozen(kw_only=True)
class Backoff:
    """Jittered exponential backoff that honours the server's Retry-After.

    ``delay(attempt)`` for attempt 1, 2, ... is uniform in [0, min(cap, base * 2**(attempt-1))]
    ("full jitter"); a Retry-After from the server is a floor. The rng is seeded so a run is
    reproducible.
    """

    base: float = 0.5
    cap: float = 30.0
    #: The longest single wait, whatever the server asks: runs are scheduled every 10 minutes, and a
    #: page that cannot be fetched within a few of them is better reported than waited for.
    max_wait: float = 120.0
    seed: int | None = 0
    _rng: random.Random = attrs.field(init=False, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "_rng", random.Random(self.seed))

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        ceiling = min(self.cap, self.base * (2 ** max(0, attempt - 1)))
        wait = self._rng.uniform(0, ceiling)
        if retry_after is not None:
            wait = max(wait, min(retry_after, MAX_HONOURED_RETRY_AFTER))
        return min(wait, self.max_wait)


def retrying(
    *,
    clock: Clock,
    max_attempts: int,
    backoff: Backoff,
    retry_if: Callable[[BaseException], bool] = is_transient,
) -> tenacity.AsyncRetrying:
    """An async tenacity policy: up to ``max_attempts`` tries, backoff on the injected clock.

    The final exception is re-raised as itself (``reraise=True``), so callers see spotlake errors.
    """

    def wait(state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        retry_after = getattr(exc, "retry_after", None)
        return backoff.delay(state.attempt_number, retry_after if isinstance(retry_after, float) else None)

    return tenacity.AsyncRetrying(
        stop=tenacity.stop_after_attempt(max_attempts),
        wait=wait,
        retry=tenacity.retry_if_exception(retry_if),
        sleep=clock.asleep,
        reraise=True,
    )
