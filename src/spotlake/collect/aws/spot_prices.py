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

Clients, errors and retries are the boto3 plumbing every AWS collector shares
(:mod:`spotlake.collect.aws._boto`); its public names are importable from here too, as before.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Final

import attrs
import pandas as pd

from spotlake.clock import Clock, SystemClock, ensure_utc
from spotlake.collect._paging import as_float, as_str
from spotlake.collect.aws._boto import (
    ACCESS_DENIED_CODES,
    THROTTLING_CODES,
    AwsCaller,
    ClientFactory,
    RegionFailed,
    aws_error,
    client_for,
    default_clients,
    each_region,
    positive,
    region_names,
)
from spotlake.collect.base import CollectResult, Failure, ReportBuilder, run_sync
from spotlake.collect.http import Backoff
from spotlake.errors import ConfigError, PayloadError
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
    concurrency: int = attrs.field(default=8, validator=positive)
    max_attempts: int = attrs.field(default=6, validator=positive)
    backoff: Backoff = attrs.field(factory=Backoff)
    page_size: int = attrs.field(default=1000, validator=positive)
    max_pages: int = attrs.field(default=1000, validator=positive)
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
