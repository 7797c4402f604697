"""A seeded AWS world for the AWS collectors' tests, answered behind real boto3 clients.

:class:`AwsCatalog` is the world: regions -> zone IDs (``use1-az1``) and this *account's* zone names
(``us-east-1a``: AWS maps names to IDs differently in every account, so the world shuffles them by
``account``), instance types (family, vCPUs, memory), the (type, zone ID) offerings, an on-demand
price per (type, region) and a spot price per (type, zone ID) with the time it was set.
:meth:`AwsCatalog.default` reads the real SkyPilot catalog (``../shared/data/aws_vms_catalog.csv``,
:data:`SHARED_CATALOG`) when it is there and otherwise generates a world from the seed, so a plain
clone runs the same tests; :meth:`AwsCatalog.load` and :meth:`AwsCatalog.generate` pick one.

moto has no Pricing API and answers every spot price with ``0.00001``, so the world is served
through botocore events on a real client: a ``before-parameter-build`` handler captures the call's
API parameters in its context and a ``before-call`` handler answers in the service's place (botocore
neither signs nor sends the request, and turns an error answer into the ``ClientError`` the service
would cause). :func:`install_zones`, :func:`install_spot_prices`, :func:`install_pricing` and
:func:`install_instance_types` answer ``DescribeAvailabilityZones``, ``DescribeSpotPriceHistory``,
``GetProducts`` (``PriceList`` entries as JSON strings, the real format) and
``DescribeInstanceTypeOfferings``/``DescribeInstanceTypes``, paged with an opaque ``NextToken``.
Keep moto (``mock_aws``) active as well, so a call no handler answers never leaves the process.

:class:`AwsFaults` injects what the services do and the fakes otherwise would not: throttling on
the n-th call, access denied / region not enabled for a region, a page that fails every time, and
malformed records. :func:`spot_advisor_json` builds the Spot Instance Advisor's document for the
world, :func:`advisor_buckets` the buckets it was built from, and :class:`AdvisorServer` serves it
through an ``httpx.MockTransport``.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import attrs
import httpx
import pandas as pd

from spotlake.collect.aws.advisor import DEFAULT_ADVISOR_URL, RANGE_BUCKETS
from spotlake.errors import ConfigError

__all__ = [
    "NOW",
    "SHARED_CATALOG",
    "AdvisorServer",
    "AwsCatalog",
    "AwsFaults",
    "AwsType",
    "advisor_buckets",
    "advisor_transport",
    "install_instance_types",
    "install_pricing",
    "install_spot_prices",
    "install_zones",
    "price_list_entry",
    "spot_advisor_json",
]

#: The real catalog, next to the repository (absent in a plain clone).
SHARED_CATALOG: Final = Path(__file__).resolve().parents[5] / "shared" / "data" / "aws_vms_catalog.csv"
#: The world's "now": spot prices were set before it.
NOW: Final = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)

#: Regions of a generated world, in order, with their real zone IDs.
_ZONE_IDS: Final[tuple[tuple[str, tuple[str, ...]], ...]] = (
    ("us-east-1", tuple(f"use1-az{i}" for i in range(1, 7))),
    ("us-west-2", tuple(f"usw2-az{i}" for i in range(1, 5))),
    ("eu-west-1", ("euw1-az1", "euw1-az2", "euw1-az3")),
    ("ap-northeast-1", ("apne1-az1", "apne1-az2", "apne1-az4")),
    ("us-east-2", ("use2-az1", "use2-az2", "use2-az3")),
    ("eu-central-1", ("euc1-az1", "euc1-az2", "euc1-az3")),
    ("us-west-1", ("usw1-az1", "usw1-az3")),
    ("ca-central-1", ("cac1-az1", "cac1-az2", "cac1-az4")),
    ("ap-southeast-1", ("apse1-az1", "apse1-az2", "apse1-az3")),
    ("ap-south-1", ("aps1-az1", "aps1-az2", "aps1-az3")),
)
#: family -> (on-demand $/vCPU-hour, GiB per vCPU) of a generated world; sizes large ... 8xlarge.
_FAMILIES: Final[Mapping[str, tuple[float, float]]] = {
    "m5": (0.048, 4.0),
    "c5": (0.0425, 2.0),
    "r5": (0.063, 8.0),
    "m6i": (0.048, 4.0),
    "c6g": (0.034, 2.0),
    "r6g": (0.0504, 8.0),
    "m7i": (0.0504, 4.0),
    "i3": (0.078, 7.625),
}
_SIZES: Final = (("large", 2), ("xlarge", 4), ("2xlarge", 8), ("4xlarge", 16), ("8xlarge", 32))
_COLUMNS: Final = ("InstanceType", "vCPUs", "MemoryGiB", "Price", "SpotPrice", "Region", "AvailabilityZone")
#: Labels of the advisor's ranges, best first, and their ``max`` as the document gives it.
_RANGE_LABELS: Final = tuple(RANGE_BUCKETS)
_RANGE_MAX: Final = (5, 11, 16, 22, 100)


def _unit(*parts: object) -> float:
    """A number in [0, 1) that is a function of ``parts`` only (no shared RNG)."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


@attrs.frozen(kw_only=True)
class AwsType:
    """An instance type of the world."""

    name: str
    family: str
    vcpus: int
    memory_gib: float


def _account_names(region: str, zone_ids: Sequence[str], seed: int, account: int) -> dict[str, str]:
    """Zone ID -> this account's zone name: the letters a, b, ... rotated by a seeded non-zero step,
    so no name points at the zone its position suggests (as in a real account)."""
    ids = sorted(zone_ids)
    n = len(ids)
    step = 1 + int(_unit(seed, account, region) * (n - 1)) if n > 1 else 0
    return {zone: f"{region}{chr(ord('a') + (i + step) % n)}" for i, zone in enumerate(ids)}


@attrs.define
class _Draft:
    """A world's parts while a loader fills them in."""

    types: dict[str, AwsType] = attrs.field(factory=dict)
    zones: dict[str, set[str]] = attrs.field(factory=dict)
    offerings: list[tuple[str, str]] = attrs.field(factory=list)
    ondemand: dict[tuple[str, str], float] = attrs.field(factory=dict)
    spot: dict[tuple[str, str], float] = attrs.field(factory=dict)

    def world(self, regions: Sequence[str], *, seed: int, account: int) -> AwsCatalog:
        names: dict[str, str] = {}
        for region in regions:
            names.update(_account_names(region, sorted(self.zones[region]), seed, account))
        at = {
            key: NOW - timedelta(seconds=int(60 + _unit(seed, "at", *key) * 72 * 3600)) for key in self.spot
        }
        return AwsCatalog(
            regions=tuple(regions),
            zones={r: tuple(sorted(self.zones[r])) for r in regions},
            zone_names=names,
            types=dict(sorted(self.types.items())),
            offerings=tuple(sorted(set(self.offerings))),
            ondemand=dict(self.ondemand),
            spot=dict(self.spot),
            spot_at=at,
            seed=seed,
        )


@attrs.frozen(kw_only=True)
class AwsCatalog:
    """The world (see the module docstring). Build it with :meth:`default`, :meth:`load` or
    :meth:`generate`; every value is a function of the seed (and of the file, when loaded)."""

    regions: tuple[str, ...]
    #: region -> its zone IDs, sorted.
    zones: Mapping[str, tuple[str, ...]]
    #: zone ID -> this account's zone name.
    zone_names: Mapping[str, str]
    types: Mapping[str, AwsType]
    #: (type, zone ID) pairs offered, sorted.
    offerings: tuple[tuple[str, str], ...]
    #: (type, region) -> on-demand $/hour.
    ondemand: Mapping[tuple[str, str], float]
    #: (type, zone ID) -> spot $/hour, and when it was set.
    spot: Mapping[tuple[str, str], float]
    spot_at: Mapping[tuple[str, str], datetime]
    seed: int = 0
    #: "generated", or the path of the catalog read.
    origin: str = "generated"

    @classmethod
    def default(
        cls,
        seed: int = 0,
        *,
        path: Path = SHARED_CATALOG,
        regions: Sequence[str] | None = None,
        types: Sequence[str] | None = None,
        account: int = 0,
    ) -> AwsCatalog:
        """The real catalog at ``path`` when it exists (only ``regions`` and ``types`` when given),
        else a generated world of ``regions`` (default: 3 regions) and 12 types."""
        if path.exists():
            return cls.load(path, seed=seed, regions=regions, types=types, account=account)
        return cls.generate(seed, regions=regions if regions is not None else 3, account=account)

    @classmethod
    def generate(
        cls, seed: int = 0, *, regions: int | Sequence[str] = 3, types: int = 12, account: int = 0
    ) -> AwsCatalog:
        """A world of ``regions`` (a count of the built-in regions, or their names) and ``types``
        instance types, every offering, price and time drawn from ``seed``."""
        known = dict(_ZONE_IDS)
        names = [r for r, _ in _ZONE_IDS][:regions] if isinstance(regions, int) else list(regions)
        unknown = [r for r in names if r not in known]
        if unknown or not names:
            raise ConfigError(f"a generated AWS world has the regions {list(known)}; got {names}")
        combos = sorted(
            ((f, s, v) for f in _FAMILIES for s, v in _SIZES), key=lambda c: _unit(seed, "type", c[0], c[1])
        )[:types]
        world_types = {
            f"{f}.{s}": AwsType(name=f"{f}.{s}", family=f, vcpus=v, memory_gib=_FAMILIES[f][1] * v)
            for f, s, v in combos
        }
        draft = _Draft(types=world_types)
        for r_index, region in enumerate(names):
            draft.zones[region] = set(known[region])
            for name, kind in world_types.items():
                if r_index and _unit(seed, "in", name, region) < 0.1:
                    continue  # not sold in this region (the first region sells every type)
                base = _FAMILIES[kind.family][0] * kind.vcpus * (1 + 0.25 * _unit(seed, "od", region))
                draft.ondemand[(name, region)] = round(base, 4)
                zones = [z for z in known[region] if _unit(seed, "zone", name, z) < 0.8] or [known[region][0]]
                for zone in zones:
                    draft.offerings.append((name, zone))
                    if _unit(seed, "no-spot", name, zone) >= 0.05:
                        draft.spot[(name, zone)] = round(
                            base * (0.25 + 0.5 * _unit(seed, "spot", name, zone)), 4
                        )
        return draft.world(names, seed=seed, account=account)

    @classmethod
    def load(
        cls,
        path: str | Path = SHARED_CATALOG,
        *,
        seed: int = 0,
        regions: Sequence[str] | None = None,
        types: Sequence[str] | None = None,
        account: int = 0,
    ) -> AwsCatalog:
        """The SkyPilot AWS catalog (zone IDs), only ``regions``/``types`` when given. Rows repeated
        for a (type, zone) are read once (``p4de.24xlarge`` has two); an empty ``Price`` or
        ``SpotPrice`` means no such price. :class:`ConfigError` for a missing file or column."""
        p = Path(path)
        try:
            frame = pd.read_csv(p, usecols=list(_COLUMNS))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read the AWS catalog {p}: {exc}") from exc
        if regions is not None:
            frame = frame[frame["Region"].isin(list(regions))]
        if types is not None:
            frame = frame[frame["InstanceType"].isin(list(types))]
        frame = frame.drop_duplicates(["InstanceType", "AvailabilityZone"], keep="first")
        if frame.empty:
            raise ConfigError(f"the AWS catalog {p} has no rows for regions={regions} types={types}")
        draft = _Draft()
        for size, vcpus, memory, price, spot_price, region, zone in frame.itertuples(index=False, name=None):
            kind = AwsType(name=size, family=size.split(".")[0], vcpus=int(vcpus), memory_gib=float(memory))
            draft.types.setdefault(size, kind)
            draft.zones.setdefault(region, set()).add(zone)
            draft.offerings.append((size, zone))
            if pd.notna(price):
                draft.ondemand.setdefault((size, region), float(price))
            if pd.notna(spot_price):
                draft.spot[(size, zone)] = float(spot_price)
        world = draft.world(sorted(draft.zones), seed=seed, account=account)
        return attrs.evolve(world, origin=str(p))

    def region_of(self, zone_id: str) -> str:
        """The region of a zone ID of the world."""
        for region, zones in self.zones.items():
            if zone_id in zones:
                return region
        raise KeyError(zone_id)

    def offerings_in(self, region: str) -> list[tuple[str, str]]:
        """The (type, zone ID) offerings of ``region``."""
        zones = set(self.zones.get(region, ()))
        return [(t, z) for t, z in self.offerings if z in zones]

    def spot_rows(self, region: str | None = None) -> list[tuple[str, str, str, float, datetime]]:
        """``(size, region, zone ID, spot price, set at)`` per priced (type, zone), sorted."""
        rows = [(t, self.region_of(z), z, p, self.spot_at[(t, z)]) for (t, z), p in self.spot.items()]
        return sorted(r for r in rows if region is None or r[1] == region)

    def ondemand_rows(self, region: str | None = None) -> list[tuple[str, str, float]]:
        """``(size, region, on-demand price)``, sorted."""
        return sorted((t, r, p) for (t, r), p in self.ondemand.items() if region is None or r == region)


# --- faults -----------------------------------------------------------------------------------


@attrs.define(kw_only=True)
class AwsFaults:
    """Faults the handlers inject; the call counter and log are shared by every client given them.

    ``throttle_calls``: numbers (1-based, counted over every answered call) answered with the
    service's throttling error; ``denied``: region -> error code (``AuthFailure``, ``OptInRequired``,
    ``UnauthorizedOperation`` ...) for every call about that region; ``failing_pages``: region ->
    the page index (0-based) of a listing that fails every time with ``InternalError`` (500);
    ``malformed``: region -> how many malformed records its first page carries.
    """

    throttle_calls: frozenset[int] = attrs.field(factory=frozenset, converter=frozenset)
    denied: Mapping[str, str] = attrs.field(factory=dict)
    failing_pages: Mapping[str, int] = attrs.field(factory=dict)
    malformed: Mapping[str, int] = attrs.field(factory=dict)
    calls: int = 0
    #: (operation, region, page index, outcome) of every call answered.
    log: list[tuple[str, str, int, str]] = attrs.field(factory=list)
    _lock: threading.Lock = attrs.field(factory=threading.Lock, repr=False)

    def decide(
        self, operation: str, region: str, page: int, throttle: tuple[int, str]
    ) -> tuple[int, str] | None:
        """The (status, error code) this call is answered with, or ``None`` to answer normally.
        ``throttle`` is the service's throttling answer; a failing page hits listings only (not
        ``DescribeAvailabilityZones``)."""
        with self._lock:
            self.calls += 1
            if self.calls in self.throttle_calls:
                fault: tuple[int, str] | None = throttle
            elif region in self.denied:
                fault = (401 if self.denied[region] == "AuthFailure" else 403, self.denied[region])
            elif self.failing_pages.get(region) == page and operation != "DescribeAvailabilityZones":
                fault = (500, "InternalError")
            else:
                fault = None
            self.log.append((operation, region, page, fault[1] if fault else "ok"))
            return fault


# --- botocore handlers ------------------------------------------------------------------------

_PARAMS: Final = "spotlake_api_params"
Items = Callable[[Mapping[str, Any], str], list[Any]]


def _install(
    client: Any,
    operation: str,
    items: Items,
    *,
    list_key: str,
    faults: AwsFaults | None,
    page_size: int | None,
    max_results: int,
    region_of: Callable[[Mapping[str, Any]], str] | None = None,
    bad_item: Callable[[int], Any] | None = None,
    throttle: tuple[int, str] = (503, "RequestLimitExceeded"),
    extra: Mapping[str, Any] | None = None,
) -> None:
    """Answer ``operation`` on ``client`` with pages of ``items(params, region)`` (see the module
    docstring); the page size is ``MaxResults`` (default ``max_results``), capped at ``page_size``."""
    service = client.meta.service_model.service_id.hyphenize()
    own_region = str(client.meta.region_name)

    def capture(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context[_PARAMS] = dict(params)

    def answer(context: dict[str, Any], **_: Any) -> tuple[Any, dict[str, Any]]:
        params: Mapping[str, Any] = context.get(_PARAMS, {})
        region = region_of(params) if region_of is not None else own_region
        size = min(int(params.get("MaxResults") or max_results), page_size or max_results)
        page, offset = 0, 0
        token = params.get("NextToken")
        if token:
            parts = str(token).split("/")
            if len(parts) != 4 or parts[:2] != [operation, region]:
                return _reply(
                    {"Error": {"Code": "InvalidNextToken", "Message": "The token is not valid"}}, 400
                )
            page, offset = int(parts[2]), int(parts[3])
        fault = faults.decide(operation, region, page, throttle) if faults is not None else None
        if fault is not None:
            status, code = fault
            return _reply({"Error": {"Code": code, "Message": f"injected {code} for {region}"}}, status)
        everything = list(items(params, region))
        if page == 0 and faults is not None and bad_item is not None:
            everything[:0] = [bad_item(i) for i in range(faults.malformed.get(region, 0))]
        body: dict[str, Any] = {**(extra or {}), list_key: everything[offset : offset + size]}
        if offset + size < len(everything):
            body["NextToken"] = f"{operation}/{region}/{page + 1}/{offset + size}"
        return _reply(body, 200)

    client.meta.events.register(f"before-parameter-build.{service}.{operation}", capture)
    client.meta.events.register(f"before-call.{service}.{operation}", answer)


def _reply(parsed: dict[str, Any], status: int) -> tuple[Any, dict[str, Any]]:
    from botocore.awsrequest import AWSResponse

    meta = {"HTTPStatusCode": status, "RequestId": "spotlake-aws-world", "HTTPHeaders": {}}
    return AWSResponse("https://aws-world.invalid", status, {}, None), {**parsed, "ResponseMetadata": meta}


def install_zones(client: Any, world: AwsCatalog, *, faults: AwsFaults | None = None) -> None:
    """Answer ``DescribeAvailabilityZones`` on an EC2 client with the world's zones of its region,
    named as in the world's account."""

    def items(_params: Mapping[str, Any], region: str) -> list[Any]:
        return [
            {
                "ZoneName": world.zone_names[z],
                "ZoneId": z,
                "RegionName": region,
                "ZoneType": "availability-zone",
                "State": "available",
                "OptInStatus": "opt-in-not-required",
            }
            for z in world.zones.get(region, ())
        ]

    _install(
        client,
        "DescribeAvailabilityZones",
        items,
        list_key="AvailabilityZones",
        faults=faults,
        page_size=None,
        max_results=10_000,
    )


def install_spot_prices(
    client: Any,
    world: AwsCatalog,
    *,
    faults: AwsFaults | None = None,
    page_size: int | None = None,
    superseded: bool = True,
    zones: bool = True,
) -> None:
    """Answer ``DescribeSpotPriceHistory`` on an EC2 client with the world's Linux/UNIX prices of
    its region (zone *names* of the world's account, prices as AWS's strings), and, with ``zones``,
    ``DescribeAvailabilityZones`` (:func:`install_zones`). With ``superseded``, every third price
    also has an older record (as when the window covers a change): the latest is the world's.
    Malformed records (``faults.malformed``) lack their price."""
    if zones:
        install_zones(client, world, faults=faults)

    def items(params: Mapping[str, Any], region: str) -> list[Any]:
        if "Linux/UNIX" not in params.get("ProductDescriptions", ["Linux/UNIX"]):
            return []
        wanted = set(params.get("InstanceTypes") or ())
        records: list[dict[str, Any]] = []
        for i, (size, _, zone, price, at) in enumerate(world.spot_rows(region)):
            if wanted and size not in wanted:
                continue
            record = {
                "AvailabilityZone": world.zone_names[zone],
                "InstanceType": size,
                "ProductDescription": "Linux/UNIX",
                "SpotPrice": f"{price:.6f}",
                "Timestamp": at,
            }
            older = {**record, "SpotPrice": f"{price * 1.1:.6f}", "Timestamp": at - timedelta(hours=7)}
            if superseded and i % 3 == 0:
                records.extend([record, older] if i % 2 else [older, record])
            else:
                records.append(record)
        return records

    def bad(i: int) -> Any:
        return {"AvailabilityZone": f"{client.meta.region_name}a", "InstanceType": f"bad{i}.large"}

    _install(
        client,
        "DescribeSpotPriceHistory",
        items,
        list_key="SpotPriceHistory",
        faults=faults,
        page_size=page_size,
        max_results=1000,
        bad_item=bad,
    )


def _term(sku: str, code: str, price: float, what: str) -> dict[str, Any]:
    rate = f"{sku}.{code}.6YS6EN2CT7"
    dimension: dict[str, Any] = {
        "unit": "Hrs",
        "endRange": "Inf",
        "beginRange": "0",
        "appliesTo": [],
        "rateCode": rate,
    }
    dimension |= {"description": f"${price:.4f} per {what} Hour", "pricePerUnit": {"USD": f"{price:.10f}"}}
    term = {"priceDimensions": {rate: dimension}, "sku": sku, "offerTermCode": code, "termAttributes": {}}
    return {f"{sku}.{code}": term | {"effectiveDate": "2026-04-01T00:00:00Z"}}


def price_list_entry(world: AwsCatalog, size: str, region: str, price: float) -> str:
    """One ``GetProducts`` ``PriceList`` entry, a JSON string as the Pricing API sends it, with an
    on-demand term (the price) and a reserved one (which the collector must ignore)."""
    sku = hashlib.blake2b(f"{size}/{region}".encode(), digest_size=8).hexdigest().upper()
    kind = world.types[size]
    attributes = {**_LINUX_FILTERS, "instanceType": size, "regionCode": region, "operation": "RunInstances"}
    attributes |= {"vcpu": str(kind.vcpus), "memory": f"{kind.memory_gib:g} GiB", "servicecode": "AmazonEC2"}
    terms = {
        "OnDemand": _term(sku, "JRTCKXETXF", price, f"On Demand Linux {size} Instance"),
        "Reserved": _term(sku, "4NA7Y494T4", price * 0.6, f"Linux {size} reserved, 1yr No Upfront"),
    }
    doc = {
        "product": {"productFamily": "Compute Instance", "attributes": attributes, "sku": sku},
        "serviceCode": "AmazonEC2",
        "terms": terms,
        "version": "20260401000000",
        "publicationDate": "2026-04-01T00:00:00Z",
    }
    return json.dumps(doc)


#: The filter values a Linux on-demand query uses; another value matches no product of the world.
_LINUX_FILTERS: Final = {
    "operatingSystem": "Linux",
    "tenancy": "Shared",
    "preInstalledSw": "NA",
    "capacitystatus": "Used",
}


def _filters(params: Mapping[str, Any]) -> dict[str, str]:
    return {
        str(f.get("Field")): str(f.get("Value"))
        for f in params.get("Filters") or ()
        if isinstance(f, Mapping)
    }


def install_pricing(
    client: Any, world: AwsCatalog, *, faults: AwsFaults | None = None, page_size: int | None = None
) -> None:
    """Answer ``GetProducts`` on a Pricing client with the world's on-demand prices of the region in
    the ``regionCode`` filter (Linux, shared tenancy, no pre-installed software, used capacity; any
    other filter value matches nothing), at most 100 entries a page. Faults are keyed by that region;
    malformed entries (``faults.malformed``) are not JSON or lack their price."""

    def items(params: Mapping[str, Any], region: str) -> list[Any]:
        filters = _filters(params)
        if params.get("ServiceCode") != "AmazonEC2" or any(
            filters.get(k, v) != v for k, v in _LINUX_FILTERS.items()
        ):
            return []
        return [price_list_entry(world, size, r, price) for size, r, price in world.ondemand_rows(region)]

    def bad(i: int) -> Any:
        return "{not json" if i % 2 == 0 else json.dumps({"product": {"attributes": {}}, "terms": {}})

    _install(
        client,
        "GetProducts",
        items,
        list_key="PriceList",
        faults=faults,
        page_size=page_size,
        max_results=100,
        region_of=lambda params: _filters(params).get("regionCode", ""),
        bad_item=bad,
        throttle=(400, "ThrottlingException"),
        extra={"FormatVersion": "aws_v1"},
    )


def install_instance_types(
    client: Any, world: AwsCatalog, *, faults: AwsFaults | None = None, page_size: int | None = None
) -> None:
    """Answer ``DescribeInstanceTypeOfferings`` (by zone ID, zone name or region) and
    ``DescribeInstanceTypes`` (the types offered in the region) on an EC2 client from the world."""

    def offerings(params: Mapping[str, Any], region: str) -> list[Any]:
        kind = params.get("LocationType") or "region"
        pairs = world.offerings_in(region)
        if kind == "region":
            return [
                {"InstanceType": t, "LocationType": kind, "Location": region}
                for t in sorted({t for t, _ in pairs})
            ]
        name = kind == "availability-zone"
        return [
            {"InstanceType": t, "LocationType": kind, "Location": world.zone_names[z] if name else z}
            for t, z in pairs
        ]

    def described(params: Mapping[str, Any], region: str) -> list[Any]:
        wanted = set(params.get("InstanceTypes") or ())
        offered = sorted({t for t, _ in world.offerings_in(region)})
        return [
            {
                "InstanceType": t,
                "VCpuInfo": {"DefaultVCpus": world.types[t].vcpus},
                "MemoryInfo": {"SizeInMiB": int(world.types[t].memory_gib * 1024)},
            }
            for t in offered
            if not wanted or t in wanted
        ]

    common: dict[str, Any] = {"faults": faults, "page_size": page_size}
    _install(
        client,
        "DescribeInstanceTypeOfferings",
        offerings,
        list_key="InstanceTypeOfferings",
        max_results=1000,
        bad_item=lambda i: {"LocationType": "availability-zone-id"},
        **common,
    )
    _install(client, "DescribeInstanceTypes", described, list_key="InstanceTypes", max_results=100, **common)


# --- the Spot Instance Advisor ----------------------------------------------------------------


def advisor_buckets(world: AwsCatalog, seed: int = 0) -> dict[tuple[str, str], str]:
    """(region, type) -> the eviction bucket (``"0-5"`` ... ``"20+"``) the advisor document of
    ``seed`` gives, for every type offered in a region (the test's truth)."""
    buckets = list(RANGE_BUCKETS.values())
    weights = (0.45, 0.2, 0.15, 0.1, 0.1)
    out: dict[tuple[str, str], str] = {}
    for region in world.regions:
        for size in sorted({t for t, _ in world.offerings_in(region)}):
            u, acc = _unit(seed, "advisor", region, size), 0.0
            for bucket, weight in zip(buckets, weights, strict=True):
                acc += weight
                if u < acc or bucket == buckets[-1]:
                    out[(region, size)] = bucket
                    break
    return out


def spot_advisor_json(
    world: AwsCatalog, seed: int = 0, *, range_order: Sequence[str] | None = None
) -> dict[str, Any]:
    """The advisor document of the world: ``ranges``, ``spot_advisor`` (per region, Linux and
    Windows entries ``{"s": savings %, "r": range index}``) and ``instance_types``.

    ``range_order`` lists the five labels in the order of their indexes (default ``<5%`` first):
    a shuffled order checks that a reader maps indexes through the labels."""
    labels = tuple(range_order) if range_order is not None else _RANGE_LABELS
    if sorted(labels) != sorted(_RANGE_LABELS):
        raise ConfigError(f"range_order must order the labels {list(_RANGE_LABELS)}, got {list(labels)}")
    index_of = {label: i for i, label in enumerate(labels)}
    label_of = {bucket: label for label, bucket in RANGE_BUCKETS.items()}
    ranges = [
        {"index": i, "label": label, "dots": i, "max": _RANGE_MAX[_RANGE_LABELS.index(label)]}
        for i, label in enumerate(labels)
    ]
    advisor: dict[str, Any] = {}
    for (region, size), bucket in advisor_buckets(world, seed).items():
        prices = [p for (t, z), p in world.spot.items() if t == size and z in world.zones[region]]
        od = world.ondemand.get((size, region))
        savings = (
            round(100 * (1 - min(prices) / od)) if prices and od else int(50 + 40 * _unit(seed, "s", size))
        )
        entry = {"s": savings, "r": index_of[label_of[bucket]]}
        windows = {"s": max(0, savings - 20), "r": index_of[label_of[bucket]]}
        by_os = advisor.setdefault(region, {"Linux": {}, "Windows": {}})
        by_os["Linux"][size] = entry
        by_os["Windows"][size] = windows
    kinds = {
        t.name: {"emr": t.family.startswith(("m", "c", "r")), "cores": t.vcpus, "ram_gb": t.memory_gib}
        for t in world.types.values()
    }
    return {"global_rate": "<10%", "ranges": ranges, "spot_advisor": advisor, "instance_types": kinds}


@attrs.define(kw_only=True)
class AdvisorServer:
    """Serves an advisor document (an object, or raw bytes to send as they are) at ``url``'s path
    through :meth:`transport`. ``statuses`` answer the first requests in turn (429 with
    ``Retry-After: 2``, 5xx ...); every request is kept in ``requests``."""

    document: Any
    url: str = DEFAULT_ADVISOR_URL
    statuses: Sequence[int] = ()
    requests: list[httpx.Request] = attrs.field(factory=list)

    def handle(self, request: httpx.Request) -> httpx.Response:
        """The answer to one request."""
        self.requests.append(request)
        n = len(self.requests)
        if n <= len(self.statuses):
            status = self.statuses[n - 1]
            headers = {"Retry-After": "2"} if status == 429 else {}
            return httpx.Response(status, headers=headers, text=f"injected {status}")
        if request.method != "GET" or request.url.path != httpx.URL(self.url).path:
            return httpx.Response(404, text="<Error><Code>NoSuchKey</Code></Error>")
        body = self.document if isinstance(self.document, bytes) else json.dumps(self.document).encode()
        return httpx.Response(200, headers={"Content-Type": "application/json"}, content=body)

    def transport(self) -> httpx.MockTransport:
        """An httpx transport answering through :meth:`handle`."""
        return httpx.MockTransport(self.handle)


def advisor_transport(world: AwsCatalog, seed: int = 0, **server: Any) -> httpx.MockTransport:
    """An httpx transport serving :func:`spot_advisor_json` of the world (``server``: the other
    :class:`AdvisorServer` fields)."""
    return AdvisorServer(document=spot_advisor_json(world, seed), **server).transport()
