"""A deterministic EC2 ``GetSpotPlacementScores`` answered behind a real boto3 client.

moto does not implement the API, so :class:`PlacementScoreFake` answers it through botocore's
``before-call.ec2.GetSpotPlacementScores`` event: a handler that returns an ``(http response,
parsed dict)`` pair takes the place of the service (botocore skips signing and sending, then turns
an answer with status >= 300 into the ``ClientError`` the real service would cause). Parameters
are still validated by botocore first (``MaxResults`` below 10, a missing ``TargetCapacity``), and
the handler reads the call's API parameters, captured by a ``before-parameter-build`` handler in
the call's context. :meth:`PlacementScoreFake.install` registers both on a client (or on a boto3
``Session``, whose later clients copy its handlers) as one *account*: the per-account limits, faults
and the record of calls are keyed by it. Only this operation is answered: use moto (``mock_aws``)
for the rest, so nothing can reach a real endpoint.

The world, all of it a function of ``seed`` and the clock's time (no shared RNG, no sleeping):

- regions -> zone IDs (:data:`DEFAULT_ZONES`, real IDs such as ``use1-az1``), or the
  ``(instance type, region, zone ID)`` offerings given (an ``AWS_TYPES_SCHEMA`` frame's rows);
- a spot *pool* per (instance type, zone ID): ``10 ** (3 * q)`` instances, ``q`` a hash of the seed
  and the pair that drifts every ``drift_period`` (by ``drift``, a share of ``q``);
- the score of a configuration in a zone: ``1 + round(9 * (p / (p + capacity)) ** 2)`` for the pools
  ``p`` of its types summed (regional: over the region's zones too), so larger target capacities
  score lower; with fewer than :data:`FEW_TYPES` instance types it is at most ``few_types_cap``, as
  AWS documents; a zone where none of the types is offered is not in the answer.

The service's limits: only the ``top`` (10) best zones or regions are answered, best first; pages
of at most ``MaxResults`` (and ``page_size``, when set) with an opaque ``NextToken`` bound to the
configuration and the first page's time (later pages answer from the same snapshot); per account, at
most ``config_limit`` *new* configurations (instance types, regions, capacity, unit, single zone)
in a rolling 24 h (:data:`CONFIG_WINDOW`): a configuration counted in the window is repeated for free,
a new one over the limit is refused with ``MaxConfigLimitExceeded``; a target capacity over the
account's ``max_target_capacity``, an unknown region or instance type, more than 10 regions are
``InvalidParameterValue``. Faults (:class:`Fault`: throttling, access denied, internal errors) hit
calls by account and call number, or at a seeded ``throttle_rate``. Every call is recorded
(:attr:`PlacementScoreFake.calls`) with its account, time, outcome and the scores it returned.
"""

from __future__ import annotations

import functools
import hashlib
import math
import re
import threading
from bisect import bisect_right, insort
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Final, TypeVar

import attrs

from spotlake.clock import Clock, FakeClock
from spotlake.errors import ConfigError

__all__ = [
    "CONFIG_WINDOW",
    "DEFAULT_CONFIG_LIMIT",
    "DEFAULT_MAX_TARGET_CAPACITY",
    "DEFAULT_ZONES",
    "FEW_TYPES",
    "FEW_TYPES_CAP",
    "OPERATION",
    "TOP_RESULTS",
    "Fault",
    "FaultKind",
    "Outcome",
    "PlacementScoreFake",
    "RecordedCall",
]

T = TypeVar("T")

#: The EC2 operation the fake answers.
OPERATION: Final = "GetSpotPlacementScores"
#: The API answers the best 10 regions or zones only.
TOP_RESULTS: Final = 10
#: New configurations an account may use in a rolling :data:`CONFIG_WINDOW`.
DEFAULT_CONFIG_LIMIT: Final = 10
#: The rolling window new configurations are counted in.
CONFIG_WINDOW: Final = timedelta(hours=24)
#: Fewer instance types than this in a configuration always score low ...
FEW_TYPES: Final = 3
#: ... at most this.
FEW_TYPES_CAP: Final = 3
#: The account's target capacity limit (AWS sets one per account, from its usage).
DEFAULT_MAX_TARGET_CAPACITY: Final = 2000
#: ``MaxResults`` bounds and the most regions one call may name.
MIN_MAX_RESULTS: Final = 10
MAX_MAX_RESULTS: Final = 1000
MAX_REGIONS: Final = 10

#: Real regions and their availability-zone IDs (the default world).
DEFAULT_ZONES: Final[Mapping[str, tuple[str, ...]]] = {
    "us-east-1": tuple(f"use1-az{i}" for i in range(1, 7)),
    "us-east-2": ("use2-az1", "use2-az2", "use2-az3"),
    "us-west-1": ("usw1-az1", "usw1-az3"),
    "us-west-2": ("usw2-az1", "usw2-az2", "usw2-az3", "usw2-az4"),
    "ca-central-1": ("cac1-az1", "cac1-az2", "cac1-az4"),
    "sa-east-1": ("sae1-az1", "sae1-az2", "sae1-az3"),
    "eu-west-1": ("euw1-az1", "euw1-az2", "euw1-az3"),
    "eu-west-2": ("euw2-az1", "euw2-az2", "euw2-az3"),
    "eu-west-3": ("euw3-az1", "euw3-az2", "euw3-az3"),
    "eu-central-1": ("euc1-az1", "euc1-az2", "euc1-az3"),
    "eu-north-1": ("eun1-az1", "eun1-az2", "eun1-az3"),
    "ap-south-1": ("aps1-az1", "aps1-az2", "aps1-az3"),
    "ap-northeast-1": ("apne1-az1", "apne1-az2", "apne1-az4"),
    "ap-northeast-2": ("apne2-az1", "apne2-az2", "apne2-az3", "apne2-az4"),
    "ap-southeast-1": ("apse1-az1", "apse1-az2", "apse1-az3"),
    "ap-southeast-2": ("apse2-az1", "apse2-az2", "apse2-az3"),
}

_EPOCH: Final = datetime(2000, 1, 1, tzinfo=UTC)
_POOL_DECADES: Final = 3.0
_TYPE_SHAPE: Final = re.compile(r"^[a-z][a-z0-9-]*\.[a-z0-9]+$")
#: Where the API parameters of a call wait for the before-call handler (the call's own context).
_PARAMS: Final = "spotlake_sps_fake_params"
_CONFIG_LIMIT_MESSAGE: Final = (
    "You have exceeded your maximum allowed spot placement configurations. You can retry "
    "configurations that you used within the last 24 hours, or wait for 24 hours before specifying "
    "a new configuration."
)


def _unit(seed: int, *parts: object) -> float:
    """A uniform float in [0, 1) determined by (seed, parts): stable across processes."""
    key = "\x1f".join([str(seed), *(str(p) for p in parts)]).encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little") / float(1 << 64)


class FaultKind(StrEnum):
    """An injected refusal, and the error EC2 answers with."""

    #: ``RequestLimitExceeded`` (HTTP 503): the account's request rate.
    THROTTLING = "throttling"
    #: ``UnauthorizedOperation`` (HTTP 403): the credentials may not call the API.
    ACCESS_DENIED = "access-denied"
    #: ``InternalError`` (HTTP 500).
    INTERNAL_ERROR = "internal-error"


_FAULT_ERRORS: Final[Mapping[FaultKind, tuple[str, int, str]]] = {
    FaultKind.THROTTLING: ("RequestLimitExceeded", 503, "Request limit exceeded."),
    FaultKind.ACCESS_DENIED: (
        "UnauthorizedOperation",
        403,
        "You are not authorized to perform this operation (ec2:GetSpotPlacementScores).",
    ),
    FaultKind.INTERNAL_ERROR: ("InternalError", 500, "An internal error has occurred."),
}


class Outcome(StrEnum):
    """How the fake answered one call."""

    ANSWERED = "answered"
    THROTTLED = "throttled"
    DENIED = "denied"
    INTERNAL_ERROR = "internal-error"
    CONFIG_LIMIT = "config-limit"
    INVALID = "invalid"
    DRY_RUN = "dry-run"


_FAULT_OUTCOMES: Final[Mapping[FaultKind, Outcome]] = {
    FaultKind.THROTTLING: Outcome.THROTTLED,
    FaultKind.ACCESS_DENIED: Outcome.DENIED,
    FaultKind.INTERNAL_ERROR: Outcome.INTERNAL_ERROR,
}


def _positive(_inst: object, attr: attrs.Attribute[int], value: int) -> None:
    if value < 1:
        raise ConfigError(f"placement-score fault: {attr.name} must be at least 1, got {value}")


def _positive_or_none(_inst: object, attr: attrs.Attribute[int | None], value: int | None) -> None:
    if value is not None and value < 1:
        raise ConfigError(f"placement-score fault: {attr.name} must be at least 1 or None, got {value}")


@attrs.frozen(kw_only=True)
class Fault:
    """Refuse calls with ``kind``: ``times`` calls (every one when ``None``) from call number ``first``.

    Calls are numbered from 1 over ``account``'s calls when it is set, over every call otherwise.
    """

    kind: FaultKind = attrs.field(converter=FaultKind)
    account: str | None = None
    first: int = attrs.field(default=1, validator=_positive)
    times: int | None = attrs.field(default=None, validator=_positive_or_none)

    def hits(self, *, account: str, number: int, account_number: int) -> bool:
        """Whether this fault refuses the call ``number`` (``account_number`` of ``account``)."""
        if self.account is not None and self.account != account:
            return False
        n = account_number if self.account is not None else number
        return n >= self.first and (self.times is None or n < self.first + self.times)


@attrs.frozen(kw_only=True)
class RecordedCall:
    """One call the fake received, and what it answered.

    ``regions`` are as asked (empty: every region); ``scores`` are this page's ``(region, zone ID,
    score)`` entries (zone ``None`` for a regional call); ``new_configuration`` says whether the call
    counted against the account's limit.
    """

    number: int
    account: str
    at: datetime
    instance_types: tuple[str, ...]
    regions: tuple[str, ...]
    target_capacity: int | None
    single_zone: bool
    next_token: str | None
    outcome: Outcome
    error_code: str | None = None
    new_configuration: bool = False
    scores: tuple[tuple[str, str | None, int], ...] = ()


class _Refused(Exception):
    """Internal: the call is answered with this EC2 error."""

    def __init__(self, outcome: Outcome, code: str, status: int, message: str) -> None:
        super().__init__(message)
        self.outcome = outcome
        self.code = code
        self.status = status
        self.message = message


def _invalid(message: str, code: str = "InvalidParameterValue") -> _Refused:
    return _Refused(Outcome.INVALID, code, 400, message)


#: (instance types, regions, target capacity, unit, single zone): what the limit counts.
_Config = tuple[tuple[str, ...], tuple[str, ...], int, str, bool]


class _Window:
    """One account's configurations counted in the rolling window, updated per call in O(log n)
    amortised: ``counted`` (configuration -> when) answers "is it counted?", ``entries`` (when, a
    sequence number, configuration) sorted by time from ``start`` prunes from the front and counts
    by ``bisect``, so no call walks every configuration."""

    __slots__ = ("added", "counted", "entries", "start")

    def __init__(self) -> None:
        self.counted: dict[_Config, datetime] = {}
        self.entries: list[tuple[datetime, int, _Config]] = []
        self.added = 0
        self.start = 0

    def prune(self, now: datetime) -> None:
        """Forget the configurations counted :data:`CONFIG_WINDOW` or longer before ``now``."""
        entries, start = self.entries, self.start
        while start < len(entries) and now - entries[start][0] >= CONFIG_WINDOW:
            del self.counted[entries[start][2]]
            start += 1
        if start > 64 and 2 * start > len(entries):  # drop the forgotten ones now and then
            del entries[:start]
            start = 0
        self.start = start

    def add(self, config: _Config, now: datetime) -> None:
        """Count ``config`` from ``now``."""
        self.counted[config] = now
        self.added += 1
        entry = (now, self.added, config)
        if len(self.entries) == self.start or self.entries[-1][0] <= now:
            self.entries.append(entry)  # the usual case: calls come in time order
        else:
            insort(self.entries, entry, lo=self.start)

    def count(self, now: datetime) -> int:
        """How many of the counted configurations were counted in the window before ``now``."""
        first = bisect_right(self.entries, now - CONFIG_WINDOW, lo=self.start, key=lambda e: e[0])
        return len(self.entries) - first


@attrs.frozen
class _Request:
    config: _Config
    max_results: int
    offset: int
    bucket: int


class PlacementScoreFake:
    """A deterministic world of spot placement scores with EC2's limits (see the module docstring).

    ``clock`` gives the time scores are computed at and the 24-hour windows run on (read only: the
    fake never sleeps). ``config_limit`` is every account's limit of new configurations, unless
    ``account_limits`` names the account. Thread-safe.
    """

    def __init__(
        self,
        *,
        seed: int = 0,
        clock: Clock | None = None,
        zones: Mapping[str, Sequence[str]] | None = None,
        offerings: Iterable[tuple[str, str, str]] | None = None,
        config_limit: int = DEFAULT_CONFIG_LIMIT,
        account_limits: Mapping[str, int] | None = None,
        max_target_capacity: int = DEFAULT_MAX_TARGET_CAPACITY,
        top: int = TOP_RESULTS,
        page_size: int | None = None,
        few_types_cap: int | None = FEW_TYPES_CAP,
        drift_period: timedelta = timedelta(hours=1),
        drift: float = 0.25,
        throttle_rate: float = 0.0,
        faults: Iterable[Fault] = (),
    ) -> None:
        if config_limit < 0 or top < 1 or max_target_capacity < 1:
            raise ConfigError("placement-score fake: config_limit >= 0, top >= 1, max_target_capacity >= 1")
        if page_size is not None and page_size < 1:
            raise ConfigError(f"placement-score fake: page_size must be at least 1, got {page_size}")
        if not 0.0 <= drift <= 1.0 or not 0.0 <= throttle_rate <= 1.0:
            raise ConfigError("placement-score fake: drift and throttle_rate must be within [0, 1]")
        if drift_period <= timedelta(0):
            raise ConfigError("placement-score fake: drift_period must be positive")
        self.seed = seed
        self.clock: Clock = clock or FakeClock()
        self.config_limit = config_limit
        self.account_limits = dict(account_limits or {})
        self.max_target_capacity = max_target_capacity
        self.top = top
        self.page_size = page_size
        self.few_types_cap = few_types_cap
        self.drift_period = drift_period
        self.drift = drift
        self.throttle_rate = throttle_rate
        self._offered: frozenset[tuple[str, str]] | None = None
        world: dict[str, set[str]] = {}
        if offerings is not None:
            pairs = set()
            for instance_type, region, zone in offerings:
                world.setdefault(str(region), set()).add(str(zone))
                pairs.add((str(instance_type), str(zone)))
            self._offered = frozenset(pairs)
        else:
            for region, ids in (zones if zones is not None else DEFAULT_ZONES).items():
                world[str(region)] = {str(z) for z in ids}
        if not world:
            raise ConfigError("placement-score fake: the world has no region")
        self._zones: dict[str, tuple[str, ...]] = {r: tuple(sorted(z)) for r, z in sorted(world.items())}
        self._types = frozenset(t for t, _ in self._offered) if self._offered is not None else None
        self._lock = threading.Lock()
        self._faults: list[Fault] = list(faults)
        self._calls: list[RecordedCall] = []
        self._per_account: dict[str, int] = {}
        #: account -> the configurations counted in its rolling window.
        self._windows: dict[str, _Window] = {}

    def __repr__(self) -> str:
        return (
            f"PlacementScoreFake(seed={self.seed}, regions={len(self._zones)}, calls={len(self._calls)}, "
            f"config_limit={self.config_limit})"
        )

    # --- installing --------------------------------------------------------------------------------

    def install(self, target: T, *, account: str) -> T:
        """Answer ``GetSpotPlacementScores`` on ``target`` as ``account``; returns ``target``.

        ``target`` is a boto3 EC2 client, or a boto3 ``Session`` (clients it creates afterwards copy
        its handlers). Installing again on the same target switches its account.
        """
        if not account:
            raise ConfigError("placement-score fake: install needs an account name")
        events = self._events(target)
        uid = self._uid()
        self.uninstall(target)
        events.register(f"before-parameter-build.ec2.{OPERATION}", _capture, unique_id=f"{uid}-params")
        events.register(
            f"before-call.ec2.{OPERATION}", functools.partial(self._hook, account), unique_id=f"{uid}-call"
        )
        return target

    def uninstall(self, target: object) -> None:
        """Stop answering on ``target`` (a no-op where the fake is not installed)."""
        events = self._events(target)
        uid = self._uid()
        events.unregister(f"before-parameter-build.ec2.{OPERATION}", unique_id=f"{uid}-params")
        events.unregister(f"before-call.ec2.{OPERATION}", unique_id=f"{uid}-call")

    def _uid(self) -> str:
        return f"spotlake-placement-score-fake-{id(self)}"

    @staticmethod
    def _events(target: object) -> Any:
        meta = getattr(target, "meta", None)
        events = getattr(meta, "events", None) if meta is not None else getattr(target, "events", None)
        if events is None or not hasattr(events, "register"):
            raise ConfigError(
                f"placement-score fake: install on a boto3 EC2 client or Session, not {type(target).__name__}"
            )
        return events

    # --- faults and inspection ---------------------------------------------------------------------

    def inject(
        self, kind: FaultKind, *, account: str | None = None, first: int = 1, times: int | None = None
    ) -> Fault:
        """Add a :class:`Fault` (see there) and return it."""
        fault = Fault(kind=kind, account=account, first=first, times=times)
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        """Remove every injected fault (``throttle_rate`` stays)."""
        with self._lock:
            self._faults.clear()

    @property
    def calls(self) -> tuple[RecordedCall, ...]:
        """Every call received so far, in order."""
        with self._lock:
            return tuple(self._calls)

    @property
    def regions(self) -> tuple[str, ...]:
        """The world's regions, sorted."""
        return tuple(self._zones)

    def zones_of(self, region: str) -> tuple[str, ...]:
        """The zone IDs of ``region`` (empty for a region outside the world)."""
        return self._zones.get(region, ())

    def offers(self, instance_type: str, zone: str) -> bool:
        """Whether ``instance_type`` is offered in zone ID ``zone``."""
        if self._offered is not None:
            return (instance_type, zone) in self._offered
        return _TYPE_SHAPE.match(instance_type) is not None

    def limit_of(self, account: str) -> int:
        """``account``'s limit of new configurations per rolling 24 h."""
        return self.account_limits.get(account, self.config_limit)

    def configurations(self, account: str, *, at: datetime | None = None) -> int:
        """New configurations ``account`` has used in the 24 h before ``at`` (default: now)."""
        now = at or self.clock.now()
        with self._lock:
            window = self._windows.get(account)
            return window.count(now) if window is not None else 0

    def score(
        self,
        instance_types: str | Sequence[str],
        zone: str,
        target_capacity: int,
        *,
        at: datetime | None = None,
    ) -> int | None:
        """The score of the configuration in zone ID ``zone`` at ``at`` (``None``: not offered there)."""
        types = (instance_types,) if isinstance(instance_types, str) else tuple(instance_types)
        return self._score(types, (zone,), target_capacity, self._bucket(at or self.clock.now()))

    def region_score(
        self,
        instance_types: str | Sequence[str],
        region: str,
        target_capacity: int,
        *,
        at: datetime | None = None,
    ) -> int | None:
        """The regional score (``SingleAvailabilityZone=False``) of the configuration in ``region``."""
        types = (instance_types,) if isinstance(instance_types, str) else tuple(instance_types)
        bucket = self._bucket(at or self.clock.now())
        return self._score(types, self.zones_of(region), target_capacity, bucket)

    # --- the model ---------------------------------------------------------------------------------

    def _bucket(self, at: datetime) -> int:
        return math.floor((at - _EPOCH) / self.drift_period)

    def _pool(self, instance_type: str, zone: str, bucket: int) -> float:
        base = _unit(self.seed, "pool", instance_type, zone)
        wobble = _unit(self.seed, "drift", instance_type, zone, bucket)
        return math.pow(10.0, _POOL_DECADES * ((1.0 - self.drift) * base + self.drift * wobble))

    def _score(self, types: Sequence[str], zones: Sequence[str], capacity: int, bucket: int) -> int | None:
        unique = sorted(set(types))
        pools = [self._pool(t, z, bucket) for z in zones for t in unique if self.offers(t, z)]
        if not pools:
            return None
        pool = sum(pools)
        share = pool / (pool + capacity)
        value = 1 + round(9 * share * share)
        if len(unique) < FEW_TYPES and self.few_types_cap is not None:
            value = min(value, self.few_types_cap)
        return max(1, min(10, value))

    # --- answering ---------------------------------------------------------------------------------

    def _hook(self, account: str, *, context: Mapping[str, Any], **_: Any) -> tuple[Any, dict[str, Any]]:
        params = context.get(_PARAMS)
        if not isinstance(params, Mapping):
            raise RuntimeError("placement-score fake: the call's parameters were not captured")
        status, parsed = self.answer(account, params)
        from botocore.awsrequest import AWSResponse

        meta = {"HTTPStatusCode": status, "RequestId": "placement-score-fake", "HTTPHeaders": {}}
        return AWSResponse("https://ec2.fake.invalid", status, {}, None), {**parsed, "ResponseMetadata": meta}

    def answer(self, account: str, params: Mapping[str, Any]) -> tuple[int, dict[str, Any]]:
        """Answer one call's API ``params`` as ``account``: (HTTP status, botocore's parsed answer).

        What the installed hook calls; callable directly to test the world without a client.
        """
        with self._lock:
            now = self.clock.now()
            number = len(self._calls) + 1
            account_number = self._per_account.get(account, 0) + 1
            self._per_account[account] = account_number
            types = tuple(str(t) for t in params.get("InstanceTypes") or ())
            regions = tuple(str(r) for r in params.get("RegionNames") or ())
            capacity = params.get("TargetCapacity")
            token = params.get("NextToken") or None
            record = functools.partial(
                RecordedCall,
                number=number,
                account=account,
                at=now,
                instance_types=types,
                regions=regions,
                target_capacity=capacity if isinstance(capacity, int) else None,
                single_zone=bool(params.get("SingleAvailabilityZone", False)),
                next_token=token,
            )
            try:
                self._check_faults(account, number, account_number)
                request = self._request(params, now)
                if params.get("DryRun"):
                    raise _Refused(
                        Outcome.DRY_RUN,
                        "DryRunOperation",
                        412,
                        "Request would have succeeded, but DryRun flag is set.",
                    )
                new = self._count(account, request.config, now) if token is None else False
            except _Refused as refusal:
                self._calls.append(record(outcome=refusal.outcome, error_code=refusal.code))
                return refusal.status, {"Error": {"Code": refusal.code, "Message": refusal.message}}
            entries = self._ranked(request.config, request.bucket)
            end = request.offset + min(request.max_results, self.page_size or request.max_results)
            page = entries[request.offset : end]
            self._calls.append(record(outcome=Outcome.ANSWERED, new_configuration=new, scores=tuple(page)))
        answer: dict[str, Any] = {
            "SpotPlacementScores": [
                {"Region": r, "Score": s} | ({"AvailabilityZoneId": z} if z is not None else {})
                for r, z, s in page
            ]
        }
        if end < len(entries):
            answer["NextToken"] = self._token(request.config, end, request.bucket)
        return 200, answer

    def _check_faults(self, account: str, number: int, account_number: int) -> None:
        for fault in self._faults:
            if fault.hits(account=account, number=number, account_number=account_number):
                code, status, message = _FAULT_ERRORS[fault.kind]
                raise _Refused(_FAULT_OUTCOMES[fault.kind], code, status, message)
        if self.throttle_rate and _unit(self.seed, "throttle", number) < self.throttle_rate:
            code, status, message = _FAULT_ERRORS[FaultKind.THROTTLING]
            raise _Refused(Outcome.THROTTLED, code, status, message)

    def _request(self, params: Mapping[str, Any], now: datetime) -> _Request:
        if params.get("InstanceRequirementsWithMetadata") is not None:
            raise _invalid("InstanceRequirementsWithMetadata is not modelled by the placement-score fake.")
        types = tuple(sorted({str(t) for t in params.get("InstanceTypes") or ()}))
        if not types:
            raise _invalid("Either InstanceTypes or InstanceRequirementsWithMetadata must be specified.")
        for instance_type in types:
            known = self._types is not None and instance_type in self._types
            if not known and (self._types is not None or _TYPE_SHAPE.match(instance_type) is None):
                raise _invalid(f"The instance type '{instance_type}' is not valid.")
        capacity = params.get("TargetCapacity")
        if not isinstance(capacity, int) or capacity < 1:
            raise _invalid("TargetCapacity must be a positive integer.")
        if capacity > self.max_target_capacity:
            raise _invalid(
                f"TargetCapacity {capacity} exceeds the maximum of {self.max_target_capacity} "
                "for this account."
            )
        unit = str(params.get("TargetCapacityUnitType") or "units")
        if unit != "units":
            raise _invalid(f"TargetCapacityUnitType '{unit}' requires InstanceRequirementsWithMetadata.")
        asked = tuple(sorted({str(r) for r in params.get("RegionNames") or ()}))
        if len(asked) > MAX_REGIONS:
            raise _invalid(f"RegionNames can name at most {MAX_REGIONS} regions, got {len(asked)}.")
        for region in asked:
            if region not in self._zones:
                raise _invalid(f"The region '{region}' is not valid.")
        max_results = params.get("MaxResults", MAX_MAX_RESULTS)
        if not isinstance(max_results, int) or not MIN_MAX_RESULTS <= max_results <= MAX_MAX_RESULTS:
            raise _invalid(f"MaxResults must be between {MIN_MAX_RESULTS} and {MAX_MAX_RESULTS}.")
        single = bool(params.get("SingleAvailabilityZone", False))
        config: _Config = (types, asked or tuple(self._zones), capacity, unit, single)
        token = params.get("NextToken") or None
        if token is None:
            return _Request(config=config, max_results=max_results, offset=0, bucket=self._bucket(now))
        offset, bucket = self._read_token(str(token), config)
        return _Request(config=config, max_results=max_results, offset=offset, bucket=bucket)

    def _count(self, account: str, config: _Config, now: datetime) -> bool:
        """Count ``config`` against ``account``'s window; True when it is new (refused over the limit)."""
        window = self._windows.setdefault(account, _Window())
        window.prune(now)
        if config in window.counted:
            return False
        if len(window.counted) >= self.limit_of(account):
            raise _Refused(Outcome.CONFIG_LIMIT, "MaxConfigLimitExceeded", 400, _CONFIG_LIMIT_MESSAGE)
        window.add(config, now)
        return True

    def _ranked(self, config: _Config, bucket: int) -> list[tuple[str, str | None, int]]:
        types, regions, capacity, _unit_type, single = config
        entries: list[tuple[str, str | None, int]] = []
        for region in regions:
            zones = self._zones[region]
            if single:
                for zone in zones:
                    value = self._score(types, (zone,), capacity, bucket)
                    if value is not None:
                        entries.append((region, zone, value))
            else:
                value = self._score(types, zones, capacity, bucket)
                if value is not None:
                    entries.append((region, None, value))
        entries.sort(key=lambda e: (-e[2], e[0], e[1] or ""))
        return entries[: self.top]

    def _digest(self, config: _Config, offset: int, bucket: int) -> str:
        text = "\x1f".join([str(self.seed), repr(config), str(offset), str(bucket)])
        return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()

    def _token(self, config: _Config, offset: int, bucket: int) -> str:
        return f"{offset}.{bucket}.{self._digest(config, offset, bucket)}"

    def _read_token(self, token: str, config: _Config) -> tuple[int, int]:
        parts = token.split(".")
        try:
            offset, bucket = int(parts[0]), int(parts[1])
        except (IndexError, ValueError):
            offset, bucket = -1, 0
        if len(parts) != 3 or offset < 0 or parts[2] != self._digest(config, offset, bucket):
            raise _invalid(
                "The specified pagination token is not valid for this request.", "InvalidPaginationToken"
            )
        return offset, bucket


def _capture(params: Mapping[str, Any], context: dict[str, Any], **_: Any) -> None:
    """``before-parameter-build``: keep the call's API parameters for the before-call hook."""
    context[_PARAMS] = dict(params)
