"""EC2 behind the :class:`~spotlake.compute.launch.base.Launcher` protocol: three ways to ask, one answer.

:class:`Ec2Launcher` launches the instances of one AWS offer (one instance type in one zone, spot
or on-demand) in one of three modes (:class:`Ec2Mode`), because EC2 has three contracts:

``instant`` (the default)
    ``RunInstances`` with ``MinCount = MaxCount = count``: all or nothing, answered at once, and a
    refusal names its cause, so the allocator moves to the next pool straight away. Spot goes
    through ``InstanceMarketOptions`` (one-time, terminate on interruption), so no persistent
    request is ever left behind.
``fleet``
    ``CreateFleet`` of type ``instant``, one launch-template override for the offer's pool: EC2
    gives what it has (partial fulfilment) and says in ``Errors`` why it stopped. The fleet API
    only launches from a launch template, so this mode needs one.
``request``
    ``RequestSpotInstances`` (one-time), then ``DescribeSpotInstanceRequests`` polled on the
    injected clock until every request is fulfilled or the launch's ``timeout`` passes. A request
    may wait for capacity, but never outlives the decision that made it: at the timeout the open
    requests are cancelled, an instance one of them got meanwhile is terminated, and the rest is
    :attr:`LaunchFailure.TIMEOUT`. Spot requests take no launch template, so spot launches in this
    mode need an AMI; on-demand offers use ``RunInstances``.

Whatever the mode, :meth:`Ec2Launcher.launch_pools` (the optional
:class:`~spotlake.compute.launch.base.PoolSetLauncher` protocol) launches over several ranked pools
of one region and capacity type in ONE ``CreateFleet`` (``instant``) call, one launch-template
override per pool, and lets EC2's allocation strategy choose where the capacity is: spot asks for
``price-capacity-optimized`` (EC2 weighs price and spare capacity, which is what a pool set is
for); on-demand asks for ``prioritized`` with ``Priority`` = rank (0 first), because on-demand
prices are the same in every zone of a region, so ``lowest-price`` would only compare instance
types and throw away the ranking the allocator made (health, scores, preferences). Each instance
in the answer is mapped back to the offer of the pool it landed in, each entry of ``Errors`` to a
:class:`~spotlake.compute.launch.base.LaunchError` on the pool it names. Like fleet mode, it needs
a launch template.

Provider errors are mapped here, once, to a :class:`~spotlake.compute.launch.base.LaunchError` in
the result, never raised: API codes through :data:`~spotlake.compute.launch.base.EC2_FAILURES`
(unknown codes are ``OTHER``), closed spot requests through :data:`SPOT_STATUS_FAILURES`, network
failures as ``OTHER`` (the allocator tries elsewhere). Messages are scrubbed and cut short, since
EC2 messages can carry long encoded blobs and an error travels into logs and reports. Only bugs
raise: a non-AWS offer, a count below one, a call botocore refuses to send.

Every instance, spot request and fleet carries :func:`ec2_tags` (who launched it, its capacity
type and pool, the caller's tags), so whatever spotlake started can be found and accounted for.

One EC2 client per region (the offer's ``pool.region``), built on first use with
:func:`spotlake.storage.aws.make_client` so the standard endpoint settings (``AWS_ENDPOINT_URL``,
``AWS_ENDPOINT_URL_EC2``, the shared config file) apply, or injected (a mapping region -> client,
or a factory). Every launch call carries a fresh ``ClientToken``, so botocore's own retries of a
timed-out call cannot launch twice. botocore is imported only when an error is classified or a
client built: importing this module costs nothing.
"""

from __future__ import annotations

import base64
import logging
import math
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from enum import StrEnum
from typing import Any, Final

import attrs

from spotlake.clock import Clock, SystemClock, ensure_utc
from spotlake.compute.launch.base import (
    EC2_FAILURES,
    Instance,
    LaunchError,
    LaunchFailure,
    LaunchResult,
    PoolSetResult,
)
from spotlake.compute.values import Cloud, Offer
from spotlake.errors import ComputeError, ConfigError
from spotlake.redact import scrub
from spotlake.retry import polling
from spotlake.storage.aws import error_code, error_message, make_client

__all__ = [
    "LAUNCHED_BY",
    "SPOT_STATUS_FAILURES",
    "ClientSource",
    "Ec2Launcher",
    "Ec2Mode",
    "LaunchTemplate",
    "ec2_tags",
]

log = logging.getLogger(__name__)

#: The tag every instance spotlake launches carries, with the value ``spotlake``.
LAUNCHED_BY: Final = "spotlake:launched-by"
CAPACITY_TYPE_TAG: Final = "spotlake:capacity-type"
POOL_TAG: Final = "spotlake:pool"
#: EC2's limits: keys of at most 128 characters, values of at most 256, 50 tags per resource.
TAG_KEY_MAX: Final = 128
TAG_VALUE_MAX: Final = 256
TAGS_MAX: Final = 50

#: ``Status.Code`` of a spot request that closed unfulfilled, and what it means for allocation.
#: A request still *open* at the timeout is ``TIMEOUT`` whatever its status says.
SPOT_STATUS_FAILURES: Final[Mapping[str, LaunchFailure]] = {
    "price-too-low": LaunchFailure.PRICE_TOO_LOW,
    "capacity-not-available": LaunchFailure.NO_CAPACITY,
    "capacity-oversubscribed": LaunchFailure.NO_CAPACITY,
    "constraint-not-fulfillable": LaunchFailure.NO_CAPACITY,
    "launch-group-constraint": LaunchFailure.NO_CAPACITY,
    "az-group-constraint": LaunchFailure.NO_CAPACITY,
    "placement-group-constraint": LaunchFailure.NO_CAPACITY,
    "schedule-expired": LaunchFailure.TIMEOUT,
}

#: Instance ids EC2 does not know (gone long ago, or never in this region): nothing to terminate.
_GONE_CODES: Final = frozenset({"InvalidInstanceID.NotFound", "InvalidInstanceID.Malformed"})
_REQUEST_NOT_FOUND: Final = "InvalidSpotInstanceRequestID.NotFound"
_TERMINATE_BATCH: Final = 100
_MESSAGE_MAX: Final = 400
_CLOSED_STATES: Final = frozenset({"closed", "cancelled", "failed"})
#: Failures that belong to one pool (its capacity, its price): a whole ``CreateFleet`` call refused
#: with one of these is charged to the first pool only, anything else to every pool of the call.
_POOL_FAILURES: Final = frozenset(
    {LaunchFailure.NO_CAPACITY, LaunchFailure.PRICE_TOO_LOW, LaunchFailure.TIMEOUT}
)

#: Where EC2 clients come from: a mapping region -> client, or a factory called with the region.
ClientSource = Mapping[str, Any] | Callable[[str], Any]


class Ec2Mode(StrEnum):
    """Which EC2 API a launch goes through (the module docstring says why each exists)."""

    INSTANT = "instant"
    FLEET = "fleet"
    REQUEST = "request"


@attrs.frozen(kw_only=True)
class LaunchTemplate:
    """A launch template by ``id`` or by ``name`` (exactly one), at ``version`` (default: its default)."""

    id: str | None = None
    name: str | None = None
    version: str | None = None

    def __attrs_post_init__(self) -> None:
        if (self.id is None) == (self.name is None):
            raise ConfigError("a launch template is named by exactly one of id or name")
        if self.name is not None and not 3 <= len(self.name) <= 128:
            raise ConfigError(f"a launch template name has 3 to 128 characters, got {self.name!r}")

    def spec(self) -> dict[str, str]:
        """The ``LaunchTemplate(Specification)`` parameter; the version is always sent, because
        ``CreateFleet`` refuses a specification without one."""
        key, value = ("LaunchTemplateId", self.id) if self.id else ("LaunchTemplateName", self.name)
        return {key: str(value), "Version": self.version or "$Default"}


def ec2_tags(offer: Offer, tags: Mapping[str, str]) -> dict[str, str]:
    """The tags of an instance launched for ``offer``: spotlake's three, then the caller's.

    spotlake's tags win over a caller's of the same key (they state facts of the launch). Keys
    starting with ``aws:`` are dropped (EC2 reserves them and would refuse the whole launch), keys
    and values are cut to EC2's 128 and 256 characters, and only the first 50 tags are kept: a
    launch must never fail because of a label.
    """
    ours = {LAUNCHED_BY: "spotlake", CAPACITY_TYPE_TAG: str(offer.capacity_type), POOL_TAG: str(offer.pool)}
    merged: dict[str, str] = {}
    for raw_key, value in [*ours.items(), *((str(k), str(v)) for k, v in tags.items() if k not in ours)]:
        key = raw_key[:TAG_KEY_MAX]
        if key and not key.lower().startswith("aws:") and key not in merged and len(merged) < TAGS_MAX:
            merged[key] = value[:TAG_VALUE_MAX]
    return merged


class _StillOpen(Exception):
    """Some spot request is not settled yet (the polling loop retries on it)."""


class Ec2Launcher:
    """Launches and terminates EC2 instances for AWS offers (see the module docstring).

    How an instance starts: a ``launch_template`` or an ``image_id`` (or both: the AMI overrides
    the template's). ``subnets`` maps a zone name to the subnet to launch into; a zone without one
    goes into ``Placement.AvailabilityZone`` (EC2 then uses the default VPC's subnet there).
    ``security_group_ids``, ``key_name``, ``instance_profile`` (a name or an ARN) and ``user_data``
    (the script text, encoded here) complete it. In ``fleet`` mode security groups and user data
    must be in the launch template: ``CreateFleet`` has no parameter for them. The same holds for
    :meth:`launch_pools`, which always goes through ``CreateFleet``.

    ``clients`` injects the EC2 clients (tests); ``regions`` lists regions :meth:`terminate`
    searches for ids it did not launch; ``poll_interval`` is the wait between two looks at open
    spot requests (on ``clock``).
    """

    def __init__(
        self,
        *,
        launch_template: LaunchTemplate | None = None,
        image_id: str | None = None,
        subnets: Mapping[str, str] | None = None,
        security_group_ids: Sequence[str] = (),
        key_name: str | None = None,
        instance_profile: str | None = None,
        user_data: str | None = None,
        mode: Ec2Mode | str = Ec2Mode.INSTANT,
        clients: ClientSource | None = None,
        regions: Sequence[str] = (),
        clock: Clock | None = None,
        poll_interval: float = 5.0,
    ) -> None:
        self.mode = Ec2Mode(mode)
        if launch_template is None and image_id is None:
            raise ConfigError("an EC2 launcher needs a launch template or an AMI id")
        if self.mode is Ec2Mode.FLEET and launch_template is None:
            raise ConfigError("fleet mode launches from a launch template: give launch_template")
        if self.mode is Ec2Mode.FLEET and (security_group_ids or user_data is not None):
            raise ConfigError("fleet mode takes security groups and user data from the launch template only")
        if self.mode is Ec2Mode.REQUEST and image_id is None:
            raise ConfigError("request mode needs an AMI id: spot requests take no launch template")
        if not (math.isfinite(poll_interval) and poll_interval > 0):
            raise ConfigError(f"poll_interval must be a positive number of seconds, got {poll_interval!r}")
        self.launch_template = launch_template
        self.image_id = image_id
        self.subnets: Mapping[str, str] = dict(subnets or {})
        groups = [security_group_ids] if isinstance(security_group_ids, str) else security_group_ids
        self.security_group_ids = tuple(groups)
        self.key_name = key_name
        self.instance_profile = instance_profile
        self.user_data = user_data
        self.regions = tuple(regions)
        self.poll_interval = poll_interval
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._source = clients
        self._clients: dict[str, Any] = {}
        #: instance id -> the region it was launched in (what :meth:`terminate` needs).
        self._launched: dict[str, str] = {}
        self._lock = threading.Lock()

    # --- the protocol ------------------------------------------------------------------------------

    def launch(
        self,
        offer: Offer,
        count: int,
        *,
        max_price: float | None,
        tags: Mapping[str, str],
        timeout: timedelta,
    ) -> LaunchResult:
        """Launch ``count`` instances of ``offer``; provider errors come back in the result.

        ``max_price`` caps the spot price (ignored for on-demand); ``timeout`` bounds the wait for
        spot requests in ``request`` mode (the other modes are answered at once).
        """
        if offer.pool.cloud is not Cloud.AWS:
            raise ConfigError(f"the EC2 launcher launches AWS offers, got {offer.pool}")
        if count < 1:
            raise ConfigError(f"a launch asks for at least one instance, got {count}")
        if max_price is not None and not (math.isfinite(max_price) and max_price > 0):
            raise ConfigError(f"max_price must be a positive price per hour, got {max_price!r}")
        labels = ec2_tags(offer, tags)
        try:
            client = self._client(offer.pool.region)
            if self.mode is Ec2Mode.FLEET:
                return self._fleet(client, offer, count, max_price, labels)
            if self.mode is Ec2Mode.REQUEST and offer.spot:
                return self._request(client, offer, count, max_price, labels, timeout=timeout)
            return self._run(client, offer, count, max_price, labels)
        except Exception as exc:
            error = _provider_error(offer, exc)
            if error is None:
                raise
            log.info("EC2 launch refused: %s", error)
            return LaunchResult(error=error)

    def launch_pools(
        self,
        offers: Sequence[Offer],
        count: int,
        *,
        max_price: float | None,
        tags: Mapping[str, str],
        timeout: timedelta,
    ) -> PoolSetResult:
        """Launch ``count`` instances over ``offers`` (ranked best first) in one ``CreateFleet`` call.

        The offers must be AWS offers of one region and one capacity type, each pool at most once,
        and the launcher must have a launch template (and no security groups or user data of its
        own, which ``CreateFleet`` could not carry): anything else is a
        :class:`~spotlake.errors.ConfigError`. The request has one override per offer, in rank
        order (the instance type, the zone's subnet from ``subnets`` or else its
        ``AvailabilityZone``, ``MaxPrice`` for spot when ``max_price`` is given, ``Priority`` =
        rank for on-demand), ``count`` instances of the offers' capacity type as target, and
        ``SingleInstanceType``/``SingleAvailabilityZone`` off; the module docstring says which
        allocation strategy and why. ``timeout`` is not used: an instant fleet is answered at once.

        Each instance carries the offer whose (instance type, zone) it landed in, read from the
        answer's ``LaunchTemplateAndOverrides.Overrides`` (subnet -> zone through ``subnets``) or
        the entry's own type and zone; an entry that names no unique pool is looked up with
        ``DescribeInstances``, and one still unplaced goes to the best ranked offer that fits
        (logged): a launched instance is never dropped. The instances are tagged at launch with
        what is true of them all (:func:`ec2_tags` without the pool tag), then each pool's
        instances get their ``spotlake:pool`` tag with ``CreateTags`` (a failure there is logged,
        the launch stands); :attr:`Instance.tags` are the single-pool modes' tags for its offer.

        Each ``Errors`` entry becomes a :class:`LaunchError` on the pool its override names (one
        per pool and code; an entry naming no pool goes to the first offer), whether or not the
        target was met, since a pool that refused is worth knowing either way. Fewer instances than
        asked with no ``Errors`` entry is ``NO_CAPACITY`` on the first offer. A refusal of the
        whole call is charged to every pool when its cause is not the pools' (permissions, quotas,
        the spot limit, a bad request, the network): that is the truth for each of them. A
        capacity, price or timeout code names no pool, so it goes to the first offer only.
        """
        ranked = self._pool_set(offers, count, max_price)
        first = ranked[0]
        try:
            client = self._client(first.pool.region)
            return self._fleet_over(client, ranked, count, max_price, tags)
        except Exception as exc:
            error = _provider_error(first, exc)
            if error is None:
                raise
            log.info("EC2 fleet over %d pools refused: %s", len(ranked), error)
            if error.kind in _POOL_FAILURES or len(ranked) == 1:
                return PoolSetResult(errors=(error,))
            rest = (_provider_error(o, exc) for o in ranked[1:])
            return PoolSetResult(errors=(error, *(e for e in rest if e is not None)))

    def terminate(self, ids: Sequence[str]) -> None:
        """Terminate instances, region by region; ids EC2 does not know are taken as gone.

        An id this launcher launched is terminated in its launch region. Any other id is looked
        for in every region the launcher knows (``regions``, the injected clients' regions, the
        regions it launched in), in that order, until one accepts it; an id no known region has is
        logged and skipped: EC2 forgets terminated instances after a while, so "not found
        anywhere" usually means long gone. Already terminated ids are accepted by EC2, unknown ones
        (``InvalidInstanceID.NotFound``) ignored. Any other failure does not stop the other
        regions; at the end a :class:`~spotlake.errors.ComputeError` lists what could not be
        terminated, because an instance left running costs money and must not go unnoticed.
        """
        wanted = list(dict.fromkeys(str(i) for i in ids))
        with self._lock:
            home = {i: self._launched.get(i) for i in wanted}
        by_region: dict[str, list[str]] = {}
        for instance_id, region in home.items():
            if region is not None:
                by_region.setdefault(region, []).append(instance_id)
        failures: list[str] = []
        for region, group in by_region.items():
            _gone, failure = self._terminate_in(region, group)
            failures.extend([failure] if failure else [])
        unknown = [i for i, region in home.items() if region is None]
        searching: list[str] = []  # failures matter only if the ids are not found elsewhere
        for region in self._known_regions() if unknown else []:
            unknown, failure = self._terminate_in(region, unknown)
            searching.extend([failure] if failure else [])
            if not unknown:
                break
        if unknown and searching:
            failures.extend(searching)
        elif unknown:
            log.warning("instances not found in any known region, taken as gone: %s", unknown)
        if failures:
            raise ComputeError("some instances could not be terminated: " + "; ".join(failures))

    # --- clients and bookkeeping -------------------------------------------------------------------

    def _client(self, region: str) -> Any:
        with self._lock:
            client = self._clients.get(region)
            if client is None:
                source = self._source
                if source is None:
                    client = make_client("ec2", region_name=region)
                elif isinstance(source, Mapping):
                    client = source.get(region)
                    if client is None:
                        raise ConfigError(f"no EC2 client was given for region {region}")
                else:
                    client = source(region)
                self._clients[region] = client
            return client

    def _known_regions(self) -> list[str]:
        with self._lock:
            found = [*self.regions, *self._clients, *self._launched.values()]
        if isinstance(self._source, Mapping):
            found.extend(self._source)
        return list(dict.fromkeys(found))

    def _terminate_in(self, region: str, ids: Sequence[str]) -> tuple[list[str], str | None]:
        """Terminate ``ids`` in ``region``: (the ids EC2 does not know there, what failed).

        On a failure every id counts as unresolved (the caller may look for them elsewhere)."""
        client = self._client(region)
        missing: list[str] = []
        try:
            for start in range(0, len(ids), _TERMINATE_BATCH):
                batch = list(ids[start : start + _TERMINATE_BATCH])
                try:
                    client.terminate_instances(InstanceIds=batch)
                except Exception as exc:
                    if error_code(exc) not in _GONE_CODES:
                        raise
                    missing.extend(_one_by_one(client, batch))
        except Exception as exc:
            if not _is_provider_error(exc):
                raise
            return list(ids), f"{', '.join(ids)} in {region} ({_exc_text(exc)})"
        with self._lock:
            for instance_id in ids:
                self._launched.pop(instance_id, None)
        return missing, None

    def _instances(self, offer: Offer, ids: Sequence[str], tags: Mapping[str, str]) -> tuple[Instance, ...]:
        with self._lock:
            self._launched.update(dict.fromkeys(ids, offer.pool.region))
        now = ensure_utc(self._clock.now())
        return tuple(
            Instance(
                id=instance_id,
                offer=offer,
                capacity_type=offer.capacity_type,
                price=offer.price,
                launched_at=now,
                tags=dict(tags),
            )
            for instance_id in ids
        )

    def _where_and_how(self, offer: Offer) -> dict[str, Any]:
        """The placement and instance settings RunInstances and spot requests share."""
        params: dict[str, Any] = {"InstanceType": offer.pool.instance_type}
        zone = offer.pool.zone
        if zone is not None and zone in self.subnets:
            params["SubnetId"] = self.subnets[zone]
        elif zone is not None:
            params["Placement"] = {"AvailabilityZone": zone}
        if self.image_id is not None:
            params["ImageId"] = self.image_id
        if self.security_group_ids:
            params["SecurityGroupIds"] = list(self.security_group_ids)
        if self.key_name is not None:
            params["KeyName"] = self.key_name
        if self.instance_profile is not None:
            params["IamInstanceProfile"] = _profile(self.instance_profile)
        return params

    # --- instant: RunInstances, all or nothing -----------------------------------------------------

    def _run(
        self, client: Any, offer: Offer, count: int, max_price: float | None, tags: Mapping[str, str]
    ) -> LaunchResult:
        params = self._where_and_how(offer)
        params.update(MinCount=count, MaxCount=count, ClientToken=_token())
        params["TagSpecifications"] = [_tag_spec("instance", tags)]
        if self.launch_template is not None:
            params["LaunchTemplate"] = self.launch_template.spec()
        if self.user_data is not None:
            params["UserData"] = self.user_data  # botocore encodes RunInstances' user data itself
        if offer.spot:
            spot = {"SpotInstanceType": "one-time", "InstanceInterruptionBehavior": "terminate"}
            if max_price is not None:
                spot["MaxPrice"] = _price(max_price)
            params["InstanceMarketOptions"] = {"MarketType": "spot", "SpotOptions": spot}
            params["TagSpecifications"].append(_tag_spec("spot-instances-request", tags))
        answer = client.run_instances(**params)
        ids = [str(i["InstanceId"]) for i in answer.get("Instances", [])]
        instances = self._instances(offer, ids, tags)
        if len(ids) >= count:
            return LaunchResult(instances=instances)
        # MinCount makes this EC2's bug, but the caller must still not count on what is missing.
        message = f"RunInstances started {len(ids)} of {count}"
        return LaunchResult(instances=instances, error=_error(offer, LaunchFailure.NO_CAPACITY, message))

    # --- fleet: CreateFleet (instant), partial fulfilment -----------------------------------------

    def _fleet_override(self, offer: Offer, max_price: float | None) -> dict[str, Any]:
        """One ``CreateFleet`` launch-template override: the offer's pool and the spot price cap."""
        override = self._where_and_how(offer)
        override.pop("SecurityGroupIds", None)  # refused for CreateFleet; never sent
        if "Placement" in override:  # an override names the zone directly
            override["AvailabilityZone"] = override.pop("Placement")["AvailabilityZone"]
        if offer.spot and max_price is not None:
            override["MaxPrice"] = _price(max_price)
        return override

    def _fleet(
        self, client: Any, offer: Offer, count: int, max_price: float | None, tags: Mapping[str, str]
    ) -> LaunchResult:
        assert self.launch_template is not None  # checked at construction
        override = self._fleet_override(offer, max_price)
        target = {"TotalTargetCapacity": count, "DefaultTargetCapacityType": str(offer.capacity_type)}
        options: dict[str, Any]
        if offer.spot:
            target["SpotTargetCapacity"] = count
            spot = {
                "AllocationStrategy": "price-capacity-optimized",
                "InstanceInterruptionBehavior": "terminate",
            }
            options = {"SpotOptions": spot}
        else:
            target["OnDemandTargetCapacity"] = count
            options = {"OnDemandOptions": {"AllocationStrategy": "lowest-price"}}
        answer = client.create_fleet(
            Type="instant",
            LaunchTemplateConfigs=[
                {"LaunchTemplateSpecification": self.launch_template.spec(), "Overrides": [override]}
            ],
            TargetCapacitySpecification=target,
            TagSpecifications=[_tag_spec("instance", tags), _tag_spec("fleet", tags)],
            ClientToken=_token(),
            **options,
        )
        ids = [str(i) for entry in answer.get("Instances") or [] for i in entry.get("InstanceIds") or []]
        instances = self._instances(offer, ids, tags)
        if len(ids) >= count:
            return LaunchResult(instances=instances)
        errors = answer.get("Errors") or [{}]
        code = errors[0].get("ErrorCode")
        kind = EC2_FAILURES.get(code, LaunchFailure.OTHER) if code else LaunchFailure.NO_CAPACITY
        why = f"{code}: {_clean(str(errors[0].get('ErrorMessage') or ''))}" if code else "no reason given"
        error = _error(offer, kind, f"CreateFleet got {len(ids)} of {count}: {why}", code)
        return LaunchResult(instances=instances, error=error)

    # --- pool sets: CreateFleet (instant) over ranked pools ----------------------------------------

    def _pool_set(self, offers: Sequence[Offer], count: int, max_price: float | None) -> list[Offer]:
        """The offers of a pool-set launch, checked (a ConfigError says what is wrong)."""
        ranked = list(offers)
        if not ranked:
            raise ConfigError("a pool-set launch needs at least one offer")
        if count < 1:
            raise ConfigError(f"a launch asks for at least one instance, got {count}")
        if max_price is not None and not (math.isfinite(max_price) and max_price > 0):
            raise ConfigError(f"max_price must be a positive price per hour, got {max_price!r}")
        for offer in ranked:
            if offer.pool.cloud is not Cloud.AWS:
                raise ConfigError(f"the EC2 launcher launches AWS offers, got {offer.pool}")
        regions = sorted({o.pool.region for o in ranked})
        if len(regions) > 1:
            raise ConfigError(f"a pool-set launch is one CreateFleet call in one region, got {regions}")
        kinds = sorted({str(o.capacity_type) for o in ranked})
        if len(kinds) > 1:
            raise ConfigError(f"a pool-set launch is of one capacity type, got {kinds}")
        pools = [o.pool for o in ranked]
        twice = sorted({str(p) for p in pools if pools.count(p) > 1})
        if twice:
            raise ConfigError(f"a pool-set launch names each pool once, got {', '.join(twice)} twice")
        if self.launch_template is None:
            raise ConfigError(
                "launch_pools launches through CreateFleet, which needs a launch template: "
                "give the Ec2Launcher launch_template=LaunchTemplate(id=... or name=...)"
            )
        if self.security_group_ids or self.user_data is not None:
            raise ConfigError(
                "launch_pools launches through CreateFleet, which takes security groups and user "
                "data from the launch template only: put them there, not on the Ec2Launcher"
            )
        return ranked

    def _fleet_over(
        self,
        client: Any,
        ranked: Sequence[Offer],
        count: int,
        max_price: float | None,
        tags: Mapping[str, str],
    ) -> PoolSetResult:
        assert self.launch_template is not None  # checked by _pool_set
        first = ranked[0]
        # Fleet tag specifications tag every instance alike: the pool tag is added per pool after.
        common = {k: v for k, v in ec2_tags(first, tags).items() if k != POOL_TAG}
        overrides = []
        for rank, offer in enumerate(ranked):
            override = self._fleet_override(offer, max_price)
            if not offer.spot:  # the prioritized strategy reads it (price-capacity-optimized would not)
                override["Priority"] = float(rank)
            overrides.append(override)
        capacity_type = str(first.capacity_type)
        target: dict[str, Any] = {"TotalTargetCapacity": count, "DefaultTargetCapacityType": capacity_type}
        spread = {"SingleInstanceType": False, "SingleAvailabilityZone": False}
        options: dict[str, Any]
        if first.spot:
            target["SpotTargetCapacity"] = count
            spot = {
                "AllocationStrategy": "price-capacity-optimized",
                "InstanceInterruptionBehavior": "terminate",
                **spread,
            }
            options = {"SpotOptions": spot}
        else:
            target["OnDemandTargetCapacity"] = count
            options = {"OnDemandOptions": {"AllocationStrategy": "prioritized", **spread}}
        answer = client.create_fleet(
            Type="instant",
            LaunchTemplateConfigs=[
                {"LaunchTemplateSpecification": self.launch_template.spec(), "Overrides": overrides}
            ],
            TargetCapacitySpecification=target,
            TagSpecifications=[_tag_spec("instance", common), _tag_spec("fleet", common)],
            ClientToken=_token(),
            **options,
        )
        places = _Places(ranked, self.subnets)
        landed: dict[int, list[str]] = {}
        unplaced: list[tuple[str, list[int]]] = []
        for entry in answer.get("Instances") or []:
            candidates = places.of(entry)
            for instance_id in (str(i) for i in entry.get("InstanceIds") or []):
                if len(candidates) == 1:
                    landed.setdefault(candidates[0], []).append(instance_id)
                else:
                    unplaced.append((instance_id, candidates))
        if unplaced:
            self._place_by_describe(client, places, unplaced, landed)
        instances: list[Instance] = []
        for index in sorted(landed):
            offer, ids = ranked[index], landed[index]
            labels = ec2_tags(offer, tags)
            self._tag_pool(client, offer, ids)
            instances.extend(self._instances(offer, ids, labels))
        got, n = len(instances), len(ranked)
        errors: dict[tuple[int, str | None], LaunchError] = {}
        for entry in answer.get("Errors") or []:
            candidates = places.of(entry)
            index = candidates[0] if candidates else 0
            code = entry.get("ErrorCode")
            code = str(code) if code else None
            kind = EC2_FAILURES.get(code, LaunchFailure.OTHER) if code else LaunchFailure.OTHER
            why = (
                f"{code}: {_clean(str(entry.get('ErrorMessage') or ''))}"
                if code
                else "an error without a code"
            )
            message = f"CreateFleet over {n} pools got {got} of {count}; this pool: {why}"
            errors.setdefault((index, code), _error(ranked[index], kind, message, code))
        if got < count and not errors:
            message = f"CreateFleet over {n} pools got {got} of {count}: no reason given"
            errors[(0, None)] = _error(first, LaunchFailure.NO_CAPACITY, message)
        return PoolSetResult(instances=tuple(instances), errors=tuple(errors.values()))

    def _place_by_describe(
        self,
        client: Any,
        places: _Places,
        unplaced: Sequence[tuple[str, list[int]]],
        landed: dict[int, list[str]],
    ) -> None:
        """Place the instances the fleet's answer did not: by what ``DescribeInstances`` says of
        them, else on the best ranked offer that could fit (never dropped: they are running)."""
        seen: dict[str, Mapping[str, Any]] = {}
        try:
            answer = client.describe_instances(InstanceIds=[i for i, _ in unplaced])
            seen = {str(i["InstanceId"]): i for r in answer.get("Reservations", []) for i in r["Instances"]}
        except Exception as exc:
            if not _is_provider_error(exc):
                raise
            log.warning("could not describe fleet instances to place them: %s", _exc_text(exc))
        for instance_id, candidates in unplaced:
            found = places.of(seen[instance_id]) if instance_id in seen else []
            if len(found) != 1:
                found = found or candidates or [0]
                log.warning(
                    "fleet instance %s names no single pool; placed on %s",
                    instance_id,
                    places.offers[found[0]].pool,
                )
            landed.setdefault(found[0], []).append(instance_id)

    def _tag_pool(self, client: Any, offer: Offer, ids: Sequence[str]) -> None:
        try:
            client.create_tags(Resources=list(ids), Tags=[{"Key": POOL_TAG, "Value": str(offer.pool)}])
        except Exception as exc:
            if not _is_provider_error(exc):
                raise
            log.warning("could not tag fleet instances %s with their pool: %s", list(ids), _exc_text(exc))

    # --- request: RequestSpotInstances, waited for on the clock -----------------------------------

    def _request(
        self,
        client: Any,
        offer: Offer,
        count: int,
        max_price: float | None,
        tags: Mapping[str, str],
        *,
        timeout: timedelta,
    ) -> LaunchResult:
        spec = self._where_and_how(offer)
        if self.user_data is not None:  # RequestSpotInstances wants it encoded already
            spec["UserData"] = base64.b64encode(self.user_data.encode()).decode("ascii")
        price = {"SpotPrice": _price(max_price)} if max_price is not None else {}
        answer = client.request_spot_instances(
            InstanceCount=count,
            Type="one-time",
            InstanceInterruptionBehavior="terminate",
            LaunchSpecification=spec,
            TagSpecifications=[_tag_spec("spot-instances-request", tags)],
            ClientToken=_token(),
            **price,
        )
        request_ids = [str(r["SpotInstanceRequestId"]) for r in answer.get("SpotInstanceRequests", [])]
        seen, poll_error = self._wait(client, request_ids, timeout)
        fulfilled = [str(seen[r]["InstanceId"]) for r in request_ids if _fulfilled(seen.get(r))]
        unsettled = [r for r in request_ids if _unsettled(seen.get(r))]
        notes = self._withdraw(client, offer.pool.region, unsettled) if unsettled else []
        if fulfilled:  # EC2 does not copy a request's tags onto its instance
            try:
                client.create_tags(Resources=fulfilled, Tags=_tag_spec("instance", tags)["Tags"])
            except Exception as exc:
                if not _is_provider_error(exc):
                    raise
                log.warning("could not tag spot instances %s: %s", fulfilled, _exc_text(exc))
        instances = self._instances(offer, fulfilled, tags)
        if len(fulfilled) >= count:
            return LaunchResult(instances=instances)
        missing = f"{count - len(fulfilled)} of {count} spot requests"
        error = _request_error(
            offer, missing, request_ids=request_ids, seen=seen, timeout=timeout, poll_error=poll_error
        )
        if notes:
            error = _error(offer, error.kind, f"{error}; {'; '.join(notes)}", error.code, prefix=False)
        return LaunchResult(instances=instances, error=error)

    def _wait(
        self, client: Any, request_ids: Sequence[str], timeout: timedelta
    ) -> tuple[dict[str, dict[str, Any]], BaseException | None]:
        """Poll the requests until all are settled or ``timeout`` passes: (last seen, a fatal error)."""
        seen: dict[str, dict[str, Any]] = {}

        def look() -> None:
            try:
                answer = client.describe_spot_instance_requests(SpotInstanceRequestIds=list(request_ids))
            except Exception as exc:
                if error_code(exc) == _REQUEST_NOT_FOUND:  # not listed yet (eventual consistency)
                    raise _StillOpen from exc
                raise
            seen.update({str(r["SpotInstanceRequestId"]): r for r in answer.get("SpotInstanceRequests", [])})
            if any(_unsettled(seen.get(r)) for r in request_ids):
                raise _StillOpen

        every, seconds = self.poll_interval, timeout.total_seconds()
        try:
            for attempt in polling(clock=self._clock, timeout=seconds, every=every, on=_StillOpen):
                with attempt:
                    look()
        except _StillOpen:
            pass  # the timeout passed
        except Exception as exc:
            if not _is_provider_error(exc):
                raise
            return seen, exc
        return seen, None

    def _withdraw(self, client: Any, region: str, request_ids: list[str]) -> list[str]:
        """Cancel open requests and terminate what they got meanwhile; notes on what went wrong."""
        try:
            client.cancel_spot_instance_requests(SpotInstanceRequestIds=request_ids)
            answer = client.describe_spot_instance_requests(SpotInstanceRequestIds=request_ids)
        except Exception as exc:
            if not _is_provider_error(exc):
                raise
            if error_code(exc) != _REQUEST_NOT_FOUND:  # NotFound after cancelling: nothing launched
                log.error("withdrawing spot requests %s failed: %s", request_ids, _exc_text(exc))
                return [f"withdrawing {', '.join(request_ids)} failed ({_exc_text(exc)}): they may launch"]
            answer = {}
        late = [str(r["InstanceId"]) for r in answer.get("SpotInstanceRequests", []) if r.get("InstanceId")]
        if not late:
            return []
        _gone, failure = self._terminate_in(region, late)
        if failure:
            log.error("instances of cancelled spot requests still running: %s", failure)
            return [f"instances of cancelled requests not terminated: {failure}"]
        return []


# --- helpers ---------------------------------------------------------------------------------------


class _Places:
    """Which of a pool set's offers an entry of EC2's answer (a fleet instance or error, a
    described instance) is about, from the instance type and the zone it names."""

    def __init__(self, offers: Sequence[Offer], subnets: Mapping[str, str]) -> None:
        self.offers = offers
        self.zone_of_subnet = {subnet: zone for zone, subnet in subnets.items()}

    def of(self, entry: Mapping[str, Any]) -> list[int]:
        """The indexes of the offers the entry may be about, best ranked first (one: it is known).

        The override the entry echoes wins over the entry's own fields; a zone comes from a
        subnet (through ``subnets``), an ``AvailabilityZone`` or a ``Placement``. A zone matches
        an offer of that zone, else a regional offer (no zone); no zone matches any offer of the
        type; no type, any offer."""
        overrides = (entry.get("LaunchTemplateAndOverrides") or {}).get("Overrides") or {}
        instance_type = overrides.get("InstanceType") or entry.get("InstanceType")
        zone = self._zone(overrides) or self._zone(entry)
        found = [
            i
            for i, offer in enumerate(self.offers)
            if instance_type is None or offer.pool.instance_type == instance_type
        ]
        if zone is not None:
            zonal = [i for i in found if self.offers[i].pool.zone == zone]
            found = zonal or [i for i in found if self.offers[i].pool.zone is None]
        return found

    def _zone(self, fields: Mapping[str, Any]) -> str | None:
        subnet = fields.get("SubnetId")
        if subnet and subnet in self.zone_of_subnet:
            return self.zone_of_subnet[str(subnet)]
        zone = fields.get("AvailabilityZone") or (fields.get("Placement") or {}).get("AvailabilityZone")
        return str(zone) if zone else None


def _token() -> str:
    return uuid.uuid4().hex


def _price(value: float) -> str:
    """A price as EC2 reads it: plain decimals, never ``1e-05``."""
    return f"{value:.6f}".rstrip("0").rstrip(".")


def _profile(profile: str) -> dict[str, str]:
    return {"Arn": profile} if profile.startswith("arn:") else {"Name": profile}


def _tag_spec(resource: str, tags: Mapping[str, str]) -> dict[str, Any]:
    return {"ResourceType": resource, "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}


def _fulfilled(request: Mapping[str, Any] | None) -> bool:
    return request is not None and request.get("State") == "active" and bool(request.get("InstanceId"))


def _unsettled(request: Mapping[str, Any] | None) -> bool:
    """Neither fulfilled nor closed: still waiting for capacity (or not listed yet)."""
    return not _fulfilled(request) and (request is None or request.get("State") not in _CLOSED_STATES)


def _clean(text: str) -> str:
    """A provider message fit for an error: scrubbed, on one line, not too long."""
    text = " ".join(scrub(text).split())
    return text if len(text) <= _MESSAGE_MAX else text[: _MESSAGE_MAX - 1] + "…"


def _exc_text(exc: BaseException) -> str:
    code = error_code(exc)
    return f"{code}: {_clean(error_message(exc))}" if code else f"{type(exc).__name__}: {_clean(str(exc))}"


def _one_by_one(client: Any, ids: Sequence[str]) -> list[str]:
    """Terminate ids one at a time (one unknown id fails a whole call): the ones EC2 does not know."""
    missing = []
    for instance_id in ids:
        try:
            client.terminate_instances(InstanceIds=[instance_id])
        except Exception as exc:
            if error_code(exc) not in _GONE_CODES:
                raise
            missing.append(instance_id)
    return missing


def _error(
    offer: Offer, kind: LaunchFailure, message: str, code: str | None = None, *, prefix: bool = True
) -> LaunchError:
    text = f"{offer.capacity_type} launch in {offer.pool}: {message}" if prefix else message
    return LaunchError(text, kind=kind, pool=offer.pool, capacity_type=offer.capacity_type, code=code)


def _is_provider_error(exc: BaseException) -> bool:
    """An error EC2, or the way to it, answered with, as opposed to a bug in the call."""
    from botocore.exceptions import BotoCoreError, ClientError, ParamValidationError

    if isinstance(exc, ParamValidationError):
        return False  # botocore refused to send the call: a bug (or a configuration value) to fix
    return isinstance(exc, ClientError | BotoCoreError)


def _provider_error(offer: Offer, exc: BaseException) -> LaunchError | None:
    """The :class:`LaunchError` for a provider failure; ``None`` for a bug (to be re-raised)."""
    if not _is_provider_error(exc):
        return None
    from botocore.exceptions import NoCredentialsError, PartialCredentialsError

    code = error_code(exc)
    if code is not None:
        kind = EC2_FAILURES.get(code, LaunchFailure.OTHER)
        return _error(offer, kind, f"{code}: {_clean(error_message(exc))}", code)
    name = type(exc).__name__
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return _error(offer, LaunchFailure.AUTH, f"no usable AWS credentials ({name})", name)
    where = f"could not reach EC2 in {offer.pool.region} ({name}: {_clean(str(exc))})"
    return _error(
        offer, LaunchFailure.OTHER, f"{where}; if the call was sent, instances may have started", name
    )


def _request_error(
    offer: Offer,
    missing: str,
    *,
    request_ids: Sequence[str],
    seen: Mapping[str, Mapping[str, Any]],
    timeout: timedelta,
    poll_error: BaseException | None,
) -> LaunchError:
    """Why spot requests got fewer instances than asked: a polling error, the first request that
    closed unfulfilled (its status says why), or else the timeout."""
    if poll_error is not None:
        cause = _provider_error(offer, poll_error)
        assert cause is not None  # _wait returns provider errors only
        return _error(
            offer, cause.kind, f"{missing} unresolved, cancelled: {cause}", cause.code, prefix=False
        )
    for request_id in request_ids:
        request = seen.get(request_id)
        if request is not None and not _unsettled(request) and not _fulfilled(request):  # closed
            status = request.get("Status") or {}
            code = str(status.get("Code") or request.get("State"))
            why = f"{request_id} {code}: {_clean(str(status.get('Message') or ''))}"
            kind = SPOT_STATUS_FAILURES.get(code, LaunchFailure.OTHER)
            return _error(offer, kind, f"{missing} not fulfilled: {why}", code)
    still = next((seen[r] for r in request_ids if r in seen and _unsettled(seen[r])), {})
    status_code = (still.get("Status") or {}).get("Code")
    last = f" (last status: {status_code})" if status_code else ""
    waited = f"{missing} still open after {timeout.total_seconds():g} s, cancelled{last}"
    return _error(offer, LaunchFailure.TIMEOUT, waited, str(status_code) if status_code else None)
