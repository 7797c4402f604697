"""Shared plumbing of the paged collectors (prices, eviction rates, size families).

One place for: sending one HTTP request with the retry policy of :mod:`spotlake.collect.http`
while counting requests and retries into a :class:`~spotlake.collect.base.CollectReport`, and the
small structural checks every page parser needs (so a drifted payload becomes a
:class:`~spotlake.errors.PayloadError` naming the field, never a ``KeyError``/``TypeError``).
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol, runtime_checkable

import attrs
import httpx

from spotlake.clock import Clock
from spotlake.collect.base import ReportBuilder
from spotlake.collect.http import Backoff, error_for_response, is_transient, read_json, retrying
from spotlake.errors import PayloadError, TransientCollectError
from spotlake.redact import scrub

__all__ = [
    "AccessTokenLike",
    "Attempts",
    "BearerTokenSourceLike",
    "TokenCredentialLike",
    "as_float",
    "as_int",
    "as_list",
    "as_mapping",
    "as_str",
    "fetch_json",
    "retry_transient_or_payload",
]

#: The scope of every Azure Resource Manager token.
MANAGEMENT_SCOPE = "https://management.azure.com/.default"


class AccessTokenLike(Protocol):
    """azure-core's ``AccessToken`` shape: a bearer token string and its expiry (epoch seconds)."""

    @property
    def token(self) -> str: ...

    @property
    def expires_on(self) -> int: ...


class TokenCredentialLike(Protocol):
    """azure-core's ``TokenCredential`` shape (``ClientSecretCredential`` and friends fit it).

    Declared here so the collectors do not import azure at module import time.
    """

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessTokenLike: ...


@runtime_checkable
class BearerTokenSourceLike(Protocol):
    """spotlake's own token source shape (``spotlake.collect.auth``): async, with a forced refresh.

    Tokens come back as :class:`spotlake.model.Secret` (anything with ``reveal()``).
    """

    async def atoken(self) -> Any: ...

    async def aforce_refresh(self, rejected: Any = None) -> Any: ...


def retry_transient_or_payload(exc: BaseException) -> bool:
    """Retry transient errors and malformed bodies (a truncated page is a transport accident)."""
    return is_transient(exc) or isinstance(exc, PayloadError)


async def fetch_json(
    client: httpx.AsyncClient,
    request: Callable[[], Awaitable[httpx.Request]],
    *,
    source: str,
    what: str,
    report: ReportBuilder,
    clock: Clock,
    max_attempts: int,
    backoff: Backoff,
    on_unauthorized: Callable[[], Awaitable[None]] | None = None,
    attempts: Attempts | None = None,
    parse: Callable[[Any], Any] | None = None,
    decode: Callable[[httpx.Response], Awaitable[Any]] | None = None,
) -> Any:
    """Send ``request()`` (rebuilt for every attempt) until a 2xx JSON body arrives.

    Returns the decoded body, passed through ``parse`` when given (a :class:`PayloadError` from
    ``parse`` is retried like a malformed body); ``decode`` replaces both with an awaitable of
    the caller's (e.g. decoding in a worker thread). ``attempts.count`` says how many tries it
    took (also when it raises). Transient failures (429, 5xx, timeouts, resets) and undecodable
    bodies are retried with ``backoff`` on ``clock``; the last error is raised as a spotlake
    :class:`~spotlake.errors.CollectError`. A 401 calls ``on_unauthorized`` (a token refresh) and is
    retried once; a second 401 is raised as :class:`~spotlake.errors.AuthError`.
    """
    tries = attempts if attempts is not None else Attempts()
    refreshed = False
    async for attempt in retrying(
        clock=clock, max_attempts=max_attempts, backoff=backoff, retry_if=retry_transient_or_payload
    ):
        with attempt:
            tries.count += 1
            if tries.count > 1:
                report.retried += 1
            req = await request()
            report.requests += 1
            try:
                response = await client.send(req)
            except httpx.TimeoutException as exc:
                raise TransientCollectError(
                    f"{source}: {what} timed out ({type(exc).__name__})", source=source
                ) from exc
            except httpx.TransportError as exc:
                raise TransientCollectError(
                    f"{source}: {what} failed in transport ({type(exc).__name__}: {scrub(str(exc))})",
                    source=source,
                ) from exc
            if response.status_code == 401 and on_unauthorized is not None and not refreshed:
                # One refresh per request: a token that expired between issue and use is normal;
                # a second 401 means the credentials themselves are wrong.
                refreshed = True
                await on_unauthorized()
                raise TransientCollectError(
                    f"{source}: {what} got HTTP 401; token refreshed", source=source, status=401
                )
            if not 200 <= response.status_code < 300:
                raise error_for_response(source, what, response)
            if decode is not None:
                return await decode(response)
            try:
                body = read_json(source, what, response)
            except RecursionError as exc:  # absurdly nested JSON: read_json only catches ValueError
                raise PayloadError(
                    f"{source}: {what} returned JSON nested too deeply", source=source
                ) from exc
            return parse(body) if parse is not None else body
    raise AssertionError("unreachable: tenacity either returns or raises")  # pragma: no cover


@attrs.define
class Attempts:
    """How many tries one request took (filled in by :func:`fetch_json`, also when it raises)."""

    count: int = 0


# --- structural checks for page parsers ------------------------------------------------------


def as_mapping(value: object, *, source: str, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise PayloadError(f"{source}: {what} is {type(value).__name__}, expected an object", source=source)
    return value


def as_list(value: object, *, source: str, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise PayloadError(f"{source}: {what} is {type(value).__name__}, expected a list", source=source)
    return value


def as_str(value: object) -> str | None:
    """``value`` if it is a string, else ``None`` (the caller decides whether that is an error)."""
    return value if isinstance(value, str) else None


def as_float(value: object) -> float | None:
    """A finite number (int/float/numeric string, never bool), else ``None``."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


def as_int(value: object) -> int | None:
    """A whole number (int, integral float or numeric string, never bool), else ``None``."""
    number = as_float(value)
    if number is None or not number.is_integer() or abs(number) > 2**53:
        return None
    return int(number)
