"""The boto3 plumbing every AWS collector shares: its calls, their errors and their retries.

* clients: :func:`default_clients` (a :data:`ClientFactory`) honours the standard endpoint
  configuration (``AWS_ENDPOINT_URL``, ``AWS_ENDPOINT_URL_<SERVICE>``, the config file) with
  botocore's own retries off (:func:`botocore_config`), since ours run on the injected clock;
* errors: :func:`aws_error` maps a failed boto3 call to a spotlake error (throttling and 5xx
  transient, :data:`ACCESS_DENIED_CODES` an :class:`~spotlake.errors.AuthError` ...), its provider
  message scrubbed and cut short (:func:`clean_message`);
* retries and accounting: :class:`AwsCaller` calls (and pages) boto3 methods in a worker thread,
  retried with tenacity and counted in the report; :func:`each_region` runs one unit of work per
  region, a :class:`RegionFailed` failing that region alone;
* options: :func:`region_names` validates region codes, :func:`positive` numeric options.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final, TypeVar

import attrs

from spotlake.clock import Clock
from spotlake.collect._paging import Attempts, as_str
from spotlake.collect.base import Failure, ReportBuilder
from spotlake.collect.http import Backoff, retrying
from spotlake.errors import (
    AuthError,
    CollectError,
    ConfigError,
    InvalidRequestError,
    PayloadError,
    TransientCollectError,
)
from spotlake.model import Source
from spotlake.redact import scrub

if TYPE_CHECKING:
    from botocore.config import Config
    from botocore.exceptions import ClientError

__all__ = [
    "ACCESS_DENIED_CODES",
    "MESSAGE_MAX",
    "THROTTLING_CODES",
    "AwsCaller",
    "ClientFactory",
    "RegionFailed",
    "aws_error",
    "botocore_config",
    "clean_message",
    "client_error_parts",
    "client_for",
    "default_clients",
    "each_region",
    "positive",
    "region_names",
]

T = TypeVar("T")

#: ``(service, region) -> boto3 client``: how the AWS collectors get their clients.
ClientFactory = Callable[[str, str], Any]

#: Error codes meaning "this caller may not do this here": the region is not enabled for the account,
#: or the credentials or their policy do not allow the call. Retrying cannot help.
ACCESS_DENIED_CODES: Final = frozenset(
    {
        "AuthFailure",
        "OptInRequired",
        "UnauthorizedOperation",
        "AccessDenied",
        "AccessDeniedException",
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "ExpiredToken",
        "ExpiredTokenException",
        "SignatureDoesNotMatch",
    }
)

#: Error codes of throttling and of a service that is busy or failing: retried with backoff.
THROTTLING_CODES: Final = frozenset(
    {
        "RequestLimitExceeded",
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "TooManyRequestsException",
        "RequestThrottled",
        "RequestThrottledException",
        "SlowDown",
        "EC2ThrottledException",
        "InternalError",
        "InternalFailure",
        "InternalErrorException",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "Unavailable",
    }
)

_REGION: Final = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d+$")
#: Longest provider message kept in an error (longer ones are cut, ending in "…").
MESSAGE_MAX: Final = 300


def botocore_config() -> Config:
    """A botocore ``Config`` with botocore's own retries off: the collectors retry on their clock,
    and count every attempt."""
    from botocore.config import Config

    return Config(retries={"total_max_attempts": 1, "mode": "standard"})


def default_clients(service: str, region: str) -> Any:
    """A boto3 client for ``service`` in ``region``: default credential chain, standard endpoint
    configuration (``AWS_ENDPOINT_URL``, ``AWS_ENDPOINT_URL_<SERVICE>``, the config file's
    ``endpoint_url``), and botocore's own retries off (the collectors retry on their clock)."""
    import boto3

    return boto3.client(service, region_name=region, config=botocore_config())


def region_names(values: Iterable[str]) -> tuple[str, ...]:
    """Validated, de-duplicated AWS region codes (``us-east-1``), in the order given."""
    out: list[str] = []
    for value in values:
        region = str(value).strip()
        if not _REGION.match(region):
            raise ConfigError(
                f"{region!r} is not an AWS region code (like 'us-east-1'); fix the regions to collect"
            )
        if region not in out:
            out.append(region)
    return tuple(out)


def positive(_inst: object, attr: attrs.Attribute[int], value: int) -> None:
    """attrs validator: ``value`` is at least 1, else a :class:`ConfigError` naming the class and field."""
    if value < 1:
        raise ConfigError(f"{type(_inst).__name__}: {attr.name} must be at least 1, got {value}")


def clean_message(text: str) -> str:
    """A provider message fit for an error: scrubbed, on one line, at most :data:`MESSAGE_MAX` long."""
    text = " ".join(scrub(text).split())
    return text if len(text) <= MESSAGE_MAX else text[: MESSAGE_MAX - 1] + "…"


def client_error_parts(exc: ClientError, *, unknown_code: str = "Unknown") -> tuple[str, str, int | None]:
    """A botocore ``ClientError``'s error code (``unknown_code`` when it has none), its message
    (:func:`clean_message`) and its HTTP status (``None`` when not an integer)."""
    response = exc.response if isinstance(exc.response, dict) else {}
    error = response.get("Error", {})
    code = str(error.get("Code") or unknown_code)
    message = clean_message(str(error.get("Message") or ""))
    raw_status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return code, message, int(raw_status) if isinstance(raw_status, int) else None


def aws_error(exc: BaseException, *, source: str, what: str, permission: str = "") -> CollectError:
    """The spotlake error for a failed boto3 call: throttling, 5xx and transport failures are
    :class:`TransientCollectError` (retried); access denied and regions not enabled are
    :class:`AuthError` naming what to do (``permission`` names the IAM action the call needs);
    other refusals :class:`InvalidRequestError`. Messages are scrubbed and cut short."""
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        NoCredentialsError,
        ParamValidationError,
        PartialCredentialsError,
    )

    prefix = f"{source}: {what}"
    if isinstance(exc, ClientError):
        code, message, status = client_error_parts(exc)
        text = f"{prefix} was refused: {code}: {message}"
        if code in THROTTLING_CODES or (status is not None and status >= 500):
            return TransientCollectError(text, source=source, status=status)
        if code == "OptInRequired":
            return AuthError(
                f"{text}. The region is not enabled for this account: opt in to it, or leave it out "
                "of the regions to collect",
                source=source,
                status=status,
            )
        if code in ACCESS_DENIED_CODES:
            needs = f" (the policy must allow {permission})" if permission else ""
            return AuthError(
                f"{text}. Check the credentials and their IAM policy{needs}, and that the region is "
                "enabled for the account",
                source=source,
                status=status,
            )
        return InvalidRequestError(text, source=source, status=status)
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return AuthError(
            f"{prefix}: no usable AWS credentials ({type(exc).__name__}); set them in the environment, "
            "a profile or an instance role",
            source=source,
        )
    if isinstance(exc, ParamValidationError):
        return InvalidRequestError(
            f"{prefix}: botocore refused the request: {clean_message(str(exc))}", source=source
        )
    if isinstance(exc, BotoCoreError):
        return TransientCollectError(
            f"{prefix} failed in transport ({type(exc).__name__}: {clean_message(str(exc))})", source=source
        )
    if isinstance(exc, CollectError):
        return exc
    return CollectError(f"{prefix} failed: {type(exc).__name__}: {clean_message(str(exc))}", source=source)


class RegionFailed(Exception):
    """A region's data could not be collected whole; ``failure`` says which call and why."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(str(failure))
        self.failure = failure


@attrs.frozen(kw_only=True)
class AwsCaller:
    """Calls boto3 methods for one collection: in a worker thread, retried on transient errors with
    tenacity on ``clock``, every attempt counted in ``report`` (requests, retries)."""

    source: Source
    report: ReportBuilder = attrs.field(eq=False)
    clock: Clock
    max_attempts: int
    backoff: Backoff
    max_pages: int = 1000
    permission: str = ""

    async def call(
        self, method: Callable[..., Any], params: Mapping[str, Any], *, what: str, attempts: Attempts
    ) -> Mapping[str, Any]:
        """One call (retried); raises the final :class:`CollectError`. ``attempts.count`` says how
        many tries it took, also when it raises."""
        async for attempt in retrying(clock=self.clock, max_attempts=self.max_attempts, backoff=self.backoff):
            with attempt:
                attempts.count += 1
                self.report.requests += 1
                if attempts.count > 1:
                    self.report.retried += 1
                try:
                    response = await asyncio.to_thread(method, **params)
                except Exception as exc:
                    raise aws_error(exc, source=self.source, what=what, permission=self.permission) from exc
                if not isinstance(response, Mapping):
                    raise PayloadError(
                        f"{self.source}: {what} answered {type(response).__name__}, expected an object",
                        source=self.source,
                    )
                return response
        raise AssertionError("unreachable: tenacity either returns or raises")  # pragma: no cover

    async def one(
        self, method: Callable[..., Any], params: Mapping[str, Any], *, what: str
    ) -> Mapping[str, Any]:
        """One call whose final failure is a :class:`RegionFailed` naming ``what``."""
        attempts = Attempts()
        try:
            return await self.call(method, params, what=what, attempts=attempts)
        except CollectError as exc:
            failure = Failure(what=what, reason=str(exc), status=exc.status, attempts=attempts.count)
            raise RegionFailed(failure) from exc

    async def pages(
        self, method: Callable[..., Any], params: Mapping[str, Any], *, list_key: str, what: str
    ) -> list[Any]:
        """Every item of a ``NextToken``-paged listing, or :class:`RegionFailed` naming the page that
        failed. Items of pages fetched before a failure are dropped: the listing is whole or absent."""
        items: list[Any] = []
        token: str | None = None
        seen: set[str] = set()
        for index in range(self.max_pages):
            page_what = f"{what} page {index}"
            attempts = Attempts()
            try:
                response = await self.call(
                    method,
                    {**params, **({"NextToken": token} if token else {})},
                    what=page_what,
                    attempts=attempts,
                )
                page = response.get(list_key, [])
                if not isinstance(page, list):
                    raise PayloadError(
                        f"{self.source}: {page_what}: '{list_key}' is {type(page).__name__}, expected a list",
                        source=self.source,
                    )
            except CollectError as exc:
                dropped = (
                    f"; the {index} page(s) before it ({len(items)} item(s)) were dropped, the listing "
                    "being incomplete"
                    if index
                    else ""
                )
                failure = Failure(
                    what=page_what, reason=f"{exc}{dropped}", status=exc.status, attempts=attempts.count
                )
                raise RegionFailed(failure) from exc
            items.extend(page)
            next_token = as_str(response.get("NextToken"))
            if not next_token:
                return items
            if next_token in seen:
                raise RegionFailed(
                    Failure(
                        what=page_what,
                        reason=f"{self.source}: NextToken repeats an earlier one: the listing loops",
                    )
                )
            seen.add(next_token)
            token = next_token
        raise RegionFailed(
            Failure(
                what=f"{what} pages after {self.max_pages}",
                reason=f"{self.source}: the listing did not end within max_pages={self.max_pages}",
                attempts=0,
            )
        )


async def each_region(
    regions: Sequence[str],
    work: Callable[[str], Awaitable[T]],
    *,
    report: ReportBuilder,
    concurrency: int,
) -> dict[str, T]:
    """Run ``work`` for every region (at most ``concurrency`` at once), one unit of work each: a
    result counts as succeeded, a :class:`RegionFailed` as a failure. Returns the results by region,
    in the order of ``regions``."""
    limit = asyncio.Semaphore(concurrency)

    async def one(region: str) -> T | Failure:
        async with limit:
            try:
                return await work(region)
            except RegionFailed as failed:
                return failed.failure

    outcomes = await asyncio.gather(*(one(r) for r in regions))
    report.planned += len(regions)
    results: dict[str, T] = {}
    for region, outcome in zip(regions, outcomes, strict=True):
        if isinstance(outcome, Failure):
            report.failures.append(attrs.evolve(outcome, scope=region))
        else:
            report.succeeded += 1
            results[region] = outcome
    return results


def client_for(clients: ClientFactory, service: str, region: str, *, source: Source) -> Any:
    """``clients(service, region)``, its failure (bad endpoint configuration ...) a :class:`RegionFailed`."""
    try:
        return clients(service, region)
    except Exception as exc:
        error = aws_error(exc, source=source, what=f"{region}: building the {service} client")
        raise RegionFailed(Failure(what=f"{region} {service} client", reason=str(error))) from exc
