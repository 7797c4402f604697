"""EC2 on-demand prices per (instance type, region) from the AWS Price List Query API.

One Pricing client (the API answers in ``us-east-1``, also ``eu-central-1`` and ``ap-south-1``;
``pricing_region``) is asked, per region, for
``GetProducts(ServiceCode="AmazonEC2", Filters=[TERM_MATCH operatingSystem=Linux, tenancy=Shared,
preInstalledSw=NA, capacitystatus=Used, regionCode=<region>])``, paged through ``NextToken``. Each
``PriceList`` entry is a JSON *string* (a product and its terms); the price is
``terms.OnDemand.*.priceDimensions.*.pricePerUnit.USD`` of the hourly dimension. Rows:
:data:`~spotlake.model.AWS_ONDEMAND_SCHEMA`.

On-demand prices change a few times a year, so collect them daily: the collector takes no view on
cadence, the pipeline decides when to run it.

Accounting is the spot-price collector's (:mod:`spotlake.collect.aws.spot_prices`): one unit per
region, whole or failed. Throttling (``ThrottlingException``) and 5xx are retried on the injected
clock; access denied fails the region; a page that finally fails drops the earlier pages' rows.
An entry that cannot be read (not JSON, no type or region, a price that is not a number, several
different hourly prices, another region's product) is payload drift: the region fails with a
:class:`~spotlake.errors.PayloadError` reason naming how many entries and the first problem, and
none of its rows are reported, since a region missing some types would look like those types had
gone. A product with no on-demand term at all is skipped with a note (it is not sold on demand).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any, Final

import attrs
import pandas as pd

from spotlake.clock import Clock, SystemClock
from spotlake.collect._paging import as_float, as_str
from spotlake.collect.aws._boto import (
    AwsCaller,
    ClientFactory,
    RegionFailed,
    client_for,
    default_clients,
    each_region,
    positive,
    region_names,
)
from spotlake.collect.base import CollectResult, Failure, ReportBuilder, run_sync
from spotlake.collect.http import Backoff
from spotlake.errors import ConfigError, PayloadError
from spotlake.model import AWS_ONDEMAND_SCHEMA, Source, conform, empty_frame
from spotlake.redact import scrub

__all__ = [
    "PRICING_FILTERS",
    "AwsOnDemandCollector",
    "NotOnDemand",
    "ondemand_entry",
    "pricing_filters",
]

SOURCE: Final = Source.AWS_ONDEMAND

#: The product attributes that select the plain Linux on-demand price of an instance type.
PRICING_FILTERS: Final[Mapping[str, str]] = {
    "operatingSystem": "Linux",
    "tenancy": "Shared",
    "preInstalledSw": "NA",
    "capacitystatus": "Used",
}


def pricing_filters(region: str) -> list[dict[str, str]]:
    """``GetProducts`` filters for the Linux on-demand products of ``region``."""
    terms = {**PRICING_FILTERS, "regionCode": region}
    return [{"Type": "TERM_MATCH", "Field": field, "Value": value} for field, value in terms.items()]


class NotOnDemand(Exception):
    """A well-formed product with no on-demand term (skipped, not an error)."""


def _mapping(value: object, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise PayloadError(f"{SOURCE}: {what} is {type(value).__name__}, expected an object", source=SOURCE)
    return value


def ondemand_entry(entry: object, region: str) -> tuple[str, float]:
    """``(instance type, USD per hour)`` of one ``PriceList`` entry (a JSON string, or its object).

    Raises :class:`PayloadError` saying what is wrong with a malformed entry, and
    :class:`NotOnDemand` for a product without an on-demand term."""
    if isinstance(entry, str | bytes):
        try:
            entry = json.loads(entry)
        except (ValueError, RecursionError) as exc:
            raise PayloadError(
                f"{SOURCE}: a PriceList entry is not JSON: {scrub(str(exc))[:100]}", source=SOURCE
            ) from exc
    doc = _mapping(entry, "a PriceList entry")
    attributes = _mapping(_mapping(doc.get("product"), "'product'").get("attributes"), "'product.attributes'")
    size, where = as_str(attributes.get("instanceType")), as_str(attributes.get("regionCode"))
    if not size or not size.strip():
        raise PayloadError(
            f"{SOURCE}: a PriceList entry has no product.attributes.instanceType", source=SOURCE
        )
    if where != region:
        raise PayloadError(
            f"{SOURCE}: the entry of {size} is for region {where!r}, not the {region!r} asked for",
            source=SOURCE,
        )
    terms = _mapping(doc.get("terms"), f"'terms' of {size}").get("OnDemand")
    if not terms:
        raise NotOnDemand(size)
    hourly: set[float] = set()
    other: set[float] = set()
    for term in _mapping(terms, f"'terms.OnDemand' of {size}").values():
        dimensions = _mapping(
            _mapping(term, f"an on-demand term of {size}").get("priceDimensions"), "'priceDimensions'"
        )
        for dimension in dimensions.values():
            dim = _mapping(dimension, f"a price dimension of {size}")
            usd = as_float(_mapping(dim.get("pricePerUnit"), f"'pricePerUnit' of {size}").get("USD"))
            if usd is None or usd < 0 or not math.isfinite(usd):
                raise PayloadError(
                    f"{SOURCE}: the on-demand price of {size} is not a USD amount: "
                    f"{scrub(repr(dim.get('pricePerUnit')))[:100]}",
                    source=SOURCE,
                )
            unit = as_str(dim.get("unit")) or ""
            (hourly if unit.lower() in ("hrs", "hours", "hour") else other).add(usd)
    prices = hourly or other
    if len(prices) != 1:
        raise PayloadError(
            f"{SOURCE}: {size} has {len(prices)} different on-demand prices {sorted(prices)}, expected one",
            source=SOURCE,
        )
    return size.strip(), prices.pop()


def _region_rows(region: str, entries: Sequence[object]) -> tuple[dict[str, float], list[str]]:
    prices: dict[str, float] = {}
    notes: list[str] = []
    problems: list[str] = []
    skipped = duplicates = 0
    for entry in entries:
        try:
            size, price = ondemand_entry(entry, region)
        except NotOnDemand:
            skipped += 1
            continue
        except PayloadError as exc:
            problems.append(str(exc))
            continue
        if size in prices:
            duplicates += 1
            price = min(price, prices[size])
        prices[size] = price
    if problems:
        raise PayloadError(
            f"{len(problems)} of {len(entries)} PriceList entries cannot be read (first: {problems[0]})",
            source=SOURCE,
        )
    if skipped:
        notes.append(f"{region}: {skipped} product(s) without an on-demand term skipped")
    if duplicates:
        notes.append(f"{region}: {duplicates} instance type(s) priced twice; the lowest price kept")
    return prices, notes


@attrs.define(kw_only=True)
class AwsOnDemandCollector:
    """Collects the Linux on-demand price per (instance type, region) into
    :data:`~spotlake.model.AWS_ONDEMAND_SCHEMA`. See the module docstring (collect daily).

    ``clients(service, region)`` builds the Pricing client (default:
    :func:`~spotlake.collect.aws.default_clients`, which honours
    ``AWS_ENDPOINT_URL_PRICING``); ``page_size`` is ``MaxResults`` (at most 100).
    """

    source: Source = attrs.field(default=SOURCE, init=False)
    regions: tuple[str, ...] = attrs.field(converter=region_names)
    clients: ClientFactory = default_clients
    pricing_region: str = "us-east-1"
    clock: Clock = attrs.field(factory=SystemClock)
    concurrency: int = attrs.field(default=4, validator=positive)
    max_attempts: int = attrs.field(default=6, validator=positive)
    backoff: Backoff = attrs.field(factory=Backoff)
    page_size: int = attrs.field(default=100, validator=positive)
    max_pages: int = attrs.field(default=1000, validator=positive)
    allow_partial: bool = False

    def __attrs_post_init__(self) -> None:
        if not self.regions:
            raise ConfigError("AwsOnDemandCollector needs at least one region to collect")
        if self.page_size > 100:
            raise ConfigError(
                "AwsOnDemandCollector: page_size is at most 100 (GetProducts' MaxResults), "
                f"got {self.page_size}"
            )

    async def acollect(self) -> CollectResult:
        """Collect every region's prices (a few regions at once); see the module docstring."""
        report = ReportBuilder(source=SOURCE, started_at=self.clock.now())
        caller = AwsCaller(
            source=SOURCE,
            report=report,
            clock=self.clock,
            max_attempts=self.max_attempts,
            backoff=self.backoff,
            max_pages=self.max_pages,
            permission="pricing:GetProducts",
        )
        client: Any = None
        client_failure: Failure | None = None
        try:
            client = client_for(self.clients, "pricing", self.pricing_region, source=SOURCE)
        except RegionFailed as failed:
            client_failure = failed.failure

        async def region(name: str) -> tuple[dict[str, float], list[str]]:
            what = f"{name} GetProducts"
            if client_failure is not None:
                raise RegionFailed(Failure(what=what, reason=client_failure.reason, attempts=0))
            params = {
                "ServiceCode": "AmazonEC2",
                "Filters": pricing_filters(name),
                "FormatVersion": "aws_v1",
                "MaxResults": self.page_size,
            }
            entries = await caller.pages(client.get_products, params, list_key="PriceList", what=what)
            try:
                return _region_rows(name, entries)
            except PayloadError as exc:
                failure = Failure(what=what, reason=f"{SOURCE}: {exc}; the region's prices were dropped")
                raise RegionFailed(failure) from exc

        results = await each_region(self.regions, region, report=report, concurrency=self.concurrency)
        rows: list[tuple[str, str, float]] = []
        for name, (prices, notes) in results.items():
            report.notes.extend(notes)
            rows.extend((size, name, price) for size, price in prices.items())
        frame = _frame(rows)
        done = report.build(rows=len(frame), at=self.clock.now())
        if not self.allow_partial:
            done.require_complete("on-demand prices")
        return CollectResult(frame=frame, report=done)

    def collect(self) -> CollectResult:
        """Blocking facade over :meth:`acollect`."""
        return run_sync(self.acollect())


def _frame(rows: list[tuple[str, str, float]]) -> pd.DataFrame:
    if not rows:
        return empty_frame(AWS_ONDEMAND_SCHEMA)
    frame = pd.DataFrame(rows, columns=list(AWS_ONDEMAND_SCHEMA))
    frame = frame.sort_values(["region", "size"], kind="stable").reset_index(drop=True)
    return conform(frame, AWS_ONDEMAND_SCHEMA, source=SOURCE)
