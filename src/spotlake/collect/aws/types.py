"""EC2 instance types offered per availability-zone ID, with their vCPUs and memory.

Per region: ``DescribeInstanceTypeOfferings(LocationType="availability-zone-id")`` lists the
(type, zone ID) pairs offered, and ``DescribeInstanceTypes`` the types' sizes (``VCpuInfo.DefaultVCpus``,
``MemoryInfo.SizeInMiB`` / 1024), both paged through ``NextToken``. The family is the part of the
type before the dot (``m5`` for ``m5.large``). Rows: :data:`~spotlake.model.AWS_TYPES_SCHEMA`, one
per (type, zone ID) offered.

Only the types offered are described, at most ``types_page_size`` (100, the API's limit) named per
``DescribeInstanceTypes`` call: smaller answers than listing every type, and a type the region
offers is one it knows (AWS refuses a whole call naming an unknown type with ``InvalidInstanceType``,
which fails the region).

Accounting is the spot-price collector's (:mod:`spotlake.collect.aws.spot_prices`): one unit per
region, whole or failed; throttling and 5xx retried on the injected clock, access denied and
regions not enabled fail the region, a page that finally fails drops the region's rows. An
offering without a type or zone is payload drift and fails the region. A type offered but not
described, or described without vCPUs or memory, keeps its rows with ``<NA>``/NaN sizes and a note.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

import attrs
import pandas as pd

from spotlake.clock import Clock, SystemClock
from spotlake.collect._paging import as_float, as_int, as_str
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
from spotlake.model import AWS_TYPES_SCHEMA, Source, conform, empty_frame

__all__ = ["AwsInstanceTypeCollector", "family_of", "type_rows"]

SOURCE: Final = Source.AWS_TYPES

#: One row: size, region, zone ID, family, vCPUs, memory GiB.
Row = tuple[str, str, str, str, int | None, float | None]


def family_of(instance_type: str) -> str:
    """The family of an instance type: the part before the dot (``m5`` for ``m5.large``)."""
    return instance_type.split(".", 1)[0]


def type_rows(
    region: str, offerings: Sequence[object], types: Sequence[object]
) -> tuple[list[Row], list[str]]:
    """Offerings and type descriptions of one region -> rows (one per (type, zone)) and notes.

    Raises :class:`PayloadError` for an offering or description without its type or zone."""
    sizes: dict[str, tuple[int | None, float | None]] = {}
    for i, item in enumerate(types):
        if not isinstance(item, Mapping) or not (name := as_str(item.get("InstanceType"))):
            raise PayloadError(f"{SOURCE}: {region} instance type {i} has no InstanceType", source=SOURCE)
        vcpu_info, memory_info = item.get("VCpuInfo"), item.get("MemoryInfo")
        vcpus = as_int(vcpu_info.get("DefaultVCpus")) if isinstance(vcpu_info, Mapping) else None
        mib = as_float(memory_info.get("SizeInMiB")) if isinstance(memory_info, Mapping) else None
        sizes[name] = (vcpus, mib / 1024 if mib is not None else None)
    rows: dict[tuple[str, str], Row] = {}
    undescribed: set[str] = set()
    for i, item in enumerate(offerings):
        name = as_str(item.get("InstanceType")) if isinstance(item, Mapping) else None
        zone = as_str(item.get("Location")) if isinstance(item, Mapping) else None
        if not name or not zone:
            raise PayloadError(
                f"{SOURCE}: {region} offering {i} has no InstanceType or Location", source=SOURCE
            )
        if name not in sizes:
            undescribed.add(name)
        vcpus, memory = sizes.get(name, (None, None))
        rows[(name, zone)] = (name, region, zone, family_of(name), vcpus, memory)
    notes: list[str] = []
    if undescribed:
        shown = ", ".join(sorted(undescribed)[:5]) + (" ..." if len(undescribed) > 5 else "")
        notes.append(
            f"{region}: {len(undescribed)} offered type(s) not described by DescribeInstanceTypes "
            f"(kept without vCPUs and memory): {shown}"
        )
    unsized = sorted(
        {r[0] for r in rows.values() if r[0] not in undescribed and (r[4] is None or r[5] is None)}
    )
    if unsized:
        notes.append(
            f"{region}: {len(unsized)} type(s) described without vCPUs or memory: {', '.join(unsized[:5])}"
        )
    return list(rows.values()), notes


@attrs.define(kw_only=True)
class AwsInstanceTypeCollector:
    """Collects the instance types offered per zone ID, with family, vCPUs and memory, into
    :data:`~spotlake.model.AWS_TYPES_SCHEMA`. See the module docstring.

    ``clients(service, region)`` builds each region's EC2 client (default:
    :func:`~spotlake.collect.aws.default_clients`). ``offerings_page_size`` is the
    offerings' ``MaxResults`` (up to 1000), ``types_page_size`` the types named per
    ``DescribeInstanceTypes`` call (up to 100).
    """

    source: Source = attrs.field(default=SOURCE, init=False)
    regions: tuple[str, ...] = attrs.field(converter=region_names)
    clients: ClientFactory = default_clients
    clock: Clock = attrs.field(factory=SystemClock)
    concurrency: int = attrs.field(default=8, validator=positive)
    max_attempts: int = attrs.field(default=6, validator=positive)
    backoff: Backoff = attrs.field(factory=Backoff)
    offerings_page_size: int = attrs.field(default=1000, validator=positive)
    types_page_size: int = attrs.field(default=100, validator=positive)
    max_pages: int = attrs.field(default=1000, validator=positive)
    allow_partial: bool = False

    def __attrs_post_init__(self) -> None:
        if not self.regions:
            raise ConfigError("AwsInstanceTypeCollector needs at least one region to collect")
        if self.types_page_size > 100:
            raise ConfigError(
                f"AwsInstanceTypeCollector: types_page_size is at most 100, got {self.types_page_size}"
            )

    async def _region(self, caller: AwsCaller, region: str) -> tuple[list[Row], list[str]]:
        client: Any = client_for(self.clients, "ec2", region, source=SOURCE)
        offerings = await caller.pages(
            client.describe_instance_type_offerings,
            {"LocationType": "availability-zone-id", "MaxResults": self.offerings_page_size},
            list_key="InstanceTypeOfferings",
            what=f"{region} DescribeInstanceTypeOfferings",
        )
        names = sorted(
            {n for o in offerings if isinstance(o, Mapping) and (n := as_str(o.get("InstanceType")))}
        )
        types: list[Any] = []
        what = f"{region} DescribeInstanceTypes"
        for start in range(0, len(names), self.types_page_size):
            batch = names[start : start + self.types_page_size]
            types += await caller.pages(
                client.describe_instance_types,
                {"InstanceTypes": batch},
                list_key="InstanceTypes",
                what=f"{what} (types {start + 1}-{start + len(batch)} of {len(names)})",
            )
        try:
            return type_rows(region, offerings, types)
        except PayloadError as exc:
            raise RegionFailed(Failure(what=what, reason=f"{exc}; the region's types were dropped")) from exc

    async def acollect(self) -> CollectResult:
        """Collect every region (concurrently); see the module docstring for the accounting."""
        report = ReportBuilder(source=SOURCE, started_at=self.clock.now())
        caller = AwsCaller(
            source=SOURCE,
            report=report,
            clock=self.clock,
            max_attempts=self.max_attempts,
            backoff=self.backoff,
            max_pages=self.max_pages,
            permission="ec2:DescribeInstanceTypeOfferings and ec2:DescribeInstanceTypes",
        )
        results = await each_region(
            self.regions, lambda r: self._region(caller, r), report=report, concurrency=self.concurrency
        )
        rows: list[Row] = []
        for region_rows, notes in results.values():
            rows.extend(region_rows)
            report.notes.extend(notes)
        frame = _frame(rows)
        done = report.build(rows=len(frame), at=self.clock.now())
        if not self.allow_partial:
            done.require_complete("instance types")
        return CollectResult(frame=frame, report=done)

    def collect(self) -> CollectResult:
        """Blocking facade over :meth:`acollect`."""
        return run_sync(self.acollect())


def _frame(rows: list[Row]) -> pd.DataFrame:
    if not rows:
        return empty_frame(AWS_TYPES_SCHEMA)
    frame = pd.DataFrame(rows, columns=list(AWS_TYPES_SCHEMA))
    frame["vcpus"] = pd.array(frame["vcpus"].tolist(), dtype="Int64")
    frame["memory_gib"] = pd.to_numeric(frame["memory_gib"], errors="coerce")
    frame = frame.sort_values(["region", "size", "zone"], kind="stable").reset_index(drop=True)
    return conform(frame, AWS_TYPES_SCHEMA, source=SOURCE)
