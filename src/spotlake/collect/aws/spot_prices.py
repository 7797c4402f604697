"""EC2 spot prices per (instance type, availability-zone ID): the current Linux/UNIX snapshot.

Per region: ``DescribeAvailabilityZones`` (all zones, opted in or not) maps the account's zone
*names* (``us-east-1a``, shuffled per account) to zone *IDs* (``use1-az1``, the same in every
account), then ``DescribeSpotPriceHistory(ProductDescriptions=["Linux/UNIX"], StartTime=now)`` is
paged through ``NextToken``. With ``StartTime`` = now AWS answers the price in effect for every
(type, zone), timestamped when it was set, plus any record of a change inside the window; the
latest record per (type, zone) is kept. Rows: :data:`~spotlake.model.AWS_SPOT_PRICES_SCHEMA`.

Accounting: one unit of work per region. A region either succeeds whole or fails whole:

* throttling (``RequestLimitExceeded`` ...), 5xx and transport failures are retried per call with
  tenacity on the injected clock; when they persist, the region fails;
* access denied or a region not enabled for the account (``AuthFailure``, ``OptInRequired``,
  ``UnauthorizedOperation`` ...) fails the region at once, with what to do in the reason;
* a page that finally fails after earlier pages succeeded fails the region too, naming the page:
  the rows of the earlier pages are **dropped**, never reported as the region's data. A partial
  list would make every (type, zone) of the missing pages look gone to change detection, whereas
  a failed region is *unknown*, never gone;
* a record that is not the documented shape (no type, zone or numeric price) fails the region with
  a :class:`~spotlake.errors.PayloadError` reason, and so do prices when
  ``DescribeAvailabilityZones`` lists no zone at all. A zone name it does not list (while it lists
  others) has its prices dropped with a note.

By default a failed region raises :class:`~spotlake.errors.IncompleteDataError` after the others
finished; ``allow_partial=True`` returns the complete regions and lists the failed ones.

The boto3 plumbing shared by the AWS collectors lives here as well (:func:`default_clients`,
:func:`aws_error`, :class:`AwsCaller`, :func:`each_region`): clients honour the standard endpoint
configuration (``AWS_ENDPOINT_URL``, ``AWS_ENDPOINT_URL_EC2``, the config file), with botocore's
own retries off, since ours honour the injected clock.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, Final, TypeVar

import attrs
import pandas as pd

from spotlake.clock import Clock, SystemClock, ensure_utc
from spotlake.collect._paging import Attempts, as_float, as_str
from spotlake.collect.base import CollectResult, Failure, ReportBuilder, run_sync
from spotlake.collect.http import Backoff, retrying
from spotlake.errors import (
    AuthError,
    CollectError,
    ConfigError,
    InvalidRequestError,
    PayloadError,
    TransientCollectError,
)
from spotlake.model import AWS_SPOT_PRICES_SCHEMA, Source, conform, empty_frame
from spotlake.redact import scrub

__all__ = [
    "ACCESS_DENIED_CODES",
    "PRODUCT_DESCRIPTION",
    "THROTTLING_CODES",
    "AwsCaller",
    "AwsSpotPriceCollector",
    "ClientFactory",
    "RegionFailed",
    "aws_error",
    "client_for",
    "default_clients",
    "each_region",
    "region_names",
    "spot_price_rows",
]

SOURCE: Final = Source.AWS_SPOT_PRICES

#: The product whose prices are collected (the Linux/UNIX price, VPC or not).
PRODUCT_DESCRIPTION: Final = "Linux/UNIX"

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
_MESSAGE_MAX: Final = 300


# --- boto3 plumbing shared by the AWS collectors ----------------------------------------------


def default_clients(service: str, region: str) -> Any:
    """A boto3 client for ``service`` in ``region``: default credential chain, standard endpoint
    configuration (``AWS_ENDPOINT_URL``, ``AWS_ENDPOINT_URL_<SERVICE>``, the config file's
    ``endpoint_url``), and botocore's own retries off (the collectors retry on their clock)."""
    import boto3
    from botocore.config import Config

    config = Config(retries={"total_max_attempts": 1, "mode": "standard"})
    return boto3.client(service, region_name=region, config=config)


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


def _clean(text: str) -> str:
    text = " ".join(scrub(text).split())
    return text if len(text) <= _MESSAGE_MAX else text[: _MESSAGE_MAX - 1] + "…"


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
        error = exc.response.get("Error", {})
        code = str(error.get("Code") or "Unknown")
        message = _clean(str(error.get("Message") or ""))
        raw_status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        status = int(raw_status) if isinstance(raw_status, int) else None
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
            f"{prefix}: botocore refused the request: {_clean(str(exc))}", source=source
        )
    if isinstance(exc, BotoCoreError):
        return TransientCollectError(
            f"{prefix} failed in transport ({type(exc).__name__}: {_clean(str(exc))})", source=source
        )
    if isinstance(exc, CollectError):
        return exc
    return CollectError(f"{prefix} failed: {type(exc).__name__}: {_clean(str(exc))}", source=source)


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
            report.failures.append(outcome)
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


def _positive(_inst: object, attr: attrs.Attribute[int], value: int) -> None:
    if value < 1:
        raise ConfigError(f"{type(_inst).__name__}: {attr.name} must be at least 1, got {value}")


# --- spot prices ------------------------------------------------------------------------------


def _timestamp(value: object) -> datetime | None:
    if isinstance(value, datetime):
        return ensure_utc(value)
    if isinstance(value, str):
        try:
            return ensure_utc(datetime.fromisoformat(value.replace("Z", "+00:00")))
        except ValueError:
            return None
    return None


def spot_price_rows(
    region: str, records: Sequence[object], zone_ids: Mapping[str, str]
) -> tuple[list[tuple[str, str, str, float, datetime]], list[str]]:
    """``DescribeSpotPriceHistory`` records -> ``(size, region, zone id, price, price_at)`` rows, the
    latest per (type, zone), and notes. Raises :class:`PayloadError` for a record that is not the
    documented shape, or for records when no zone is known (the caller fails the region)."""
    if records and not zone_ids:
        raise PayloadError(
            f"{SOURCE}: {region} DescribeAvailabilityZones listed no zones, so no price can be placed",
            source=SOURCE,
        )
    latest: dict[tuple[str, str], tuple[float, datetime]] = {}
    unknown: dict[str, int] = {}
    other_products = 0
    for i, record in enumerate(records):
        if not isinstance(record, Mapping):
            raise PayloadError(f"{SOURCE}: {region} record {i} is not an object", source=SOURCE)
        size, zone = as_str(record.get("InstanceType")), as_str(record.get("AvailabilityZone"))
        price, at = as_float(record.get("SpotPrice")), _timestamp(record.get("Timestamp"))
        if not size or not zone or price is None or price < 0 or at is None:
            fields = {
                k: record.get(k) for k in ("InstanceType", "AvailabilityZone", "SpotPrice", "Timestamp")
            }
            raise PayloadError(
                f"{SOURCE}: {region} record {i} lacks a type, zone, price or time: "
                f"{scrub(repr(fields))[:200]}",
                source=SOURCE,
            )
        product = as_str(record.get("ProductDescription"))
        if product is not None and product != PRODUCT_DESCRIPTION:
            other_products += 1
            continue
        zone_id = zone_ids.get(zone)
        if zone_id is None:
            unknown[zone] = unknown.get(zone, 0) + 1
            continue
        key = (size, zone_id)
        if key not in latest or at >= latest[key][1]:
            latest[key] = (price, at)
    notes = [
        f"{region}: {n} price(s) in zone {z} dropped: DescribeAvailabilityZones does not list it"
        for z, n in sorted(unknown.items())
    ]
    if other_products:
        notes.append(
            f"{region}: {other_products} record(s) of another product than {PRODUCT_DESCRIPTION} skipped"
        )
    rows = [(size, region, zone_id, price, at) for (size, zone_id), (price, at) in latest.items()]
    return rows, notes


def _spot_frame(rows: Iterable[tuple[str, str, str, float, datetime]]) -> pd.DataFrame:
    data = list(rows)
    if not data:
        return empty_frame(AWS_SPOT_PRICES_SCHEMA)
    frame = pd.DataFrame(data, columns=list(AWS_SPOT_PRICES_SCHEMA))
    frame["price_at"] = pd.to_datetime(frame["price_at"], utc=True)
    frame = frame.sort_values(["region", "size", "zone"], kind="stable").reset_index(drop=True)
    return conform(frame, AWS_SPOT_PRICES_SCHEMA, source=SOURCE)


@attrs.define(kw_only=True)
class AwsSpotPriceCollector:
    """Collects the current Linux/UNIX spot price per (instance type, zone ID) into
    :data:`~spotlake.model.AWS_SPOT_PRICES_SCHEMA`. See the module docstring.

    ``clients(service, region)`` builds the EC2 client of each region (default:
    :func:`default_clients`); ``concurrency`` bounds the regions collected at once;
    ``max_attempts`` the tries per call; ``page_size`` is ``MaxResults`` (AWS allows up to 1000).
    """

    source: Source = attrs.field(default=SOURCE, init=False)
    regions: tuple[str, ...] = attrs.field(converter=region_names)
    clients: ClientFactory = default_clients
    clock: Clock = attrs.field(factory=SystemClock)
    concurrency: int = attrs.field(default=8, validator=_positive)
    max_attempts: int = attrs.field(default=6, validator=_positive)
    backoff: Backoff = attrs.field(factory=Backoff)
    page_size: int = attrs.field(default=1000, validator=_positive)
    max_pages: int = attrs.field(default=1000, validator=_positive)
    allow_partial: bool = False

    def __attrs_post_init__(self) -> None:
        if not self.regions:
            raise ConfigError("AwsSpotPriceCollector needs at least one region to collect")

    async def _region(
        self, caller: AwsCaller, region: str, now: datetime
    ) -> tuple[list[tuple[str, str, str, float, datetime]], list[str]]:
        client = client_for(self.clients, "ec2", region, source=SOURCE)
        zones = await caller.one(
            client.describe_availability_zones,
            {"AllAvailabilityZones": True},
            what=f"{region} DescribeAvailabilityZones",
        )
        zone_ids: dict[str, str] = {}
        for zone in zones.get("AvailabilityZones") or []:
            name = as_str(zone.get("ZoneName")) if isinstance(zone, Mapping) else None
            zone_id = as_str(zone.get("ZoneId")) if isinstance(zone, Mapping) else None
            if name and zone_id:
                zone_ids[name] = zone_id
        what = f"{region} DescribeSpotPriceHistory"
        records = await caller.pages(
            client.describe_spot_price_history,
            {"ProductDescriptions": [PRODUCT_DESCRIPTION], "StartTime": now, "MaxResults": self.page_size},
            list_key="SpotPriceHistory",
            what=what,
        )
        try:
            return spot_price_rows(region, records, zone_ids)
        except PayloadError as exc:
            raise RegionFailed(Failure(what=what, reason=f"{exc}; the region's prices were dropped")) from exc

    async def acollect(self) -> CollectResult:
        """Collect every region (concurrently); see the module docstring for the accounting."""
        now = self.clock.now()
        report = ReportBuilder(source=SOURCE, started_at=now)
        caller = AwsCaller(
            source=SOURCE,
            report=report,
            clock=self.clock,
            max_attempts=self.max_attempts,
            backoff=self.backoff,
            max_pages=self.max_pages,
            permission="ec2:DescribeSpotPriceHistory and ec2:DescribeAvailabilityZones",
        )
        results = await each_region(
            self.regions, lambda r: self._region(caller, r, now), report=report, concurrency=self.concurrency
        )
        for _rows, notes in results.values():
            report.notes.extend(notes)
        frame = _spot_frame(row for rows, _ in results.values() for row in rows)
        done = report.build(rows=len(frame), at=self.clock.now())
        if not self.allow_partial:
            done.require_complete("spot prices")
        return CollectResult(frame=frame, report=done)

    def collect(self) -> CollectResult:
        """Blocking facade over :meth:`acollect`."""
        return run_sync(self.acollect())
