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

The launcher's parts live beside it: what goes into every call (tags, prices, tokens) in
:mod:`._ec2_params`, the mapping of provider errors in :mod:`._ec2_errors`, the pool-set
``CreateFleet`` in :mod:`._ec2_fleet` and ``request`` mode in :mod:`._ec2_requests`.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from enum import StrEnum
from typing import Any, Final

import attrs

from spotlake.clock import Clock, SystemClock, ensure_utc
from spotlake.compute.launch._ec2_errors import (
    SPOT_STATUS_FAILURES,
    clean,
    exc_text,
    is_provider_error,
    launch_error,
    provider_error,
)
from spotlake.compute.launch._ec2_fleet import call_fleet, check_pool_set, create_fleet_over, fleet_refusal
from spotlake.compute.launch._ec2_params import (
    CAPACITY_TYPE_TAG,
    LAUNCHED_BY,
    POOL_TAG,
    ec2_tags,
    price,
    profile,
    tag_spec,
    token,
)
from spotlake.compute.launch._ec2_requests import request_spot
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
from spotlake.storage.aws import error_code, make_client

__all__ = [
    "CAPACITY_TYPE_TAG",
    "LAUNCHED_BY",
    "POOL_TAG",
    "SPOT_STATUS_FAILURES",
    "ClientSource",
    "Ec2Launcher",
    "Ec2Mode",
    "LaunchTemplate",
    "ec2_tags",
]

log = logging.getLogger(__name__)

#: Instance ids EC2 does not know (gone long ago, or never in this region): nothing to terminate.
_GONE_CODES: Final = frozenset({"InvalidInstanceID.NotFound", "InvalidInstanceID.Malformed"})
_TERMINATE_BATCH: Final = 100

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
        #: region -> zone ID -> zone name, as this account names them.
        self._zone_names: dict[str, dict[str, str]] = {}
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
                return request_spot(
                    client,
                    offer,
                    count,
                    max_price,
                    labels,
                    spec=self._where_and_how(offer),
                    user_data=self.user_data,
                    timeout=timeout,
                    clock=self._clock,
                    poll_interval=self.poll_interval,
                    record=self._instances,
                    terminate=lambda ids: self._terminate_in(offer.pool.region, ids)[1],
                )
            return self._run(client, offer, count, max_price, labels)
        except _UnplaceableZone as exc:
            return LaunchResult(error=_unplaceable(offer, exc))
        except Exception as exc:
            error = provider_error(offer, exc)
            if error is None:
                raise
            log.info("EC2 launch refused: %s", error)
            return LaunchResult(error=error)

    def can_launch_pools(self) -> bool:
        """Whether :meth:`launch_pools` works as configured: a launch template, and no security
        groups or user data of the launcher's own (``CreateFleet`` could not carry them)."""
        return self.launch_template is not None and not self.security_group_ids and self.user_data is None

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
        ranked = check_pool_set(offers, count, max_price)
        template = self.launch_template
        if template is None:
            raise ConfigError(
                "launch_pools launches through CreateFleet, which needs a launch template: "
                "give the Ec2Launcher launch_template=LaunchTemplate(id=... or name=...)"
            )
        if self.security_group_ids or self.user_data is not None:
            raise ConfigError(
                "launch_pools launches through CreateFleet, which takes security groups and user "
                "data from the launch template only: put them there, not on the Ec2Launcher"
            )
        placeable: list[Offer] = []
        zones: list[str | None] = []
        unplaceable: list[LaunchError] = []
        try:
            client = self._client(ranked[0].pool.region)
            for offer in ranked:
                try:
                    zones.append(self._zone_name(offer))
                except _UnplaceableZone as exc:
                    unplaceable.append(_unplaceable(offer, exc))
                    continue
                placeable.append(offer)
            if not placeable:
                return PoolSetResult(errors=tuple(unplaceable))
            result = create_fleet_over(
                client,
                placeable,
                count,
                tags,
                template=template.spec(),
                overrides=[self._fleet_override(offer, max_price) for offer in placeable],
                subnets=self.subnets,
                zones=zones,
                record=self._instances,
            )
        except Exception as exc:
            refused = fleet_refusal(placeable or ranked, exc)
            if refused is None:
                raise
            return PoolSetResult(errors=(*refused.errors, *unplaceable))
        # the call's own errors first: a shortfall is charged to the first error's pool
        return PoolSetResult(instances=result.instances, errors=(*result.errors, *unplaceable))

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
            if not is_provider_error(exc):
                raise
            return list(ids), f"{', '.join(ids)} in {region} ({exc_text(exc)})"
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
            name = self._zone_name(offer) or zone
            if name in self.subnets:
                params["SubnetId"] = self.subnets[name]
            else:
                params["Placement"] = {"AvailabilityZone": name}
        if self.image_id is not None:
            params["ImageId"] = self.image_id
        if self.security_group_ids:
            params["SecurityGroupIds"] = list(self.security_group_ids)
        if self.key_name is not None:
            params["KeyName"] = self.key_name
        if self.instance_profile is not None:
            params["IamInstanceProfile"] = profile(self.instance_profile)
        return params

    def _zone_name(self, offer: Offer) -> str | None:
        """The account's name for the offer's zone given by ID (``use1-az1``; the catalogs with
        zone IDs write those, the same in every account), which EC2's placement takes; a name is
        itself. Looked up once per region with ``DescribeAvailabilityZones``. A zone this account
        does not have, or a lookup EC2 refuses, is :class:`_UnplaceableZone`: that pool's
        failure, never the whole allocation's (nor, for a missing permission, all of AWS's)."""
        region, zone = offer.pool.region, offer.pool.zone
        if zone is None or zone.startswith(region):
            return zone
        with self._lock:
            known = self._zone_names.get(region)
        if known is None:
            try:
                answer = self._client(region).describe_availability_zones(AllAvailabilityZones=True)
            except Exception as exc:
                if not is_provider_error(exc):
                    raise
                raise _UnplaceableZone(
                    f"zone ID {zone} could not be mapped to a zone name ({type(exc).__name__}: "
                    f"{clean(str(exc))}); allow ec2:DescribeAvailabilityZones, or use zone names"
                ) from exc
            known = {z["ZoneId"]: z["ZoneName"] for z in answer.get("AvailabilityZones", []) if "ZoneId" in z}
            with self._lock:
                self._zone_names[region] = known
        if zone not in known:
            raise _UnplaceableZone(f"{region} has no availability zone {zone!r} in this account")
        return known[zone]

    # --- instant: RunInstances, all or nothing -----------------------------------------------------

    def _run(
        self, client: Any, offer: Offer, count: int, max_price: float | None, tags: Mapping[str, str]
    ) -> LaunchResult:
        params = self._where_and_how(offer)
        params.update(MinCount=count, MaxCount=count, ClientToken=token())
        params["TagSpecifications"] = [tag_spec("instance", tags)]
        if self.launch_template is not None:
            params["LaunchTemplate"] = self.launch_template.spec()
        if self.user_data is not None:
            params["UserData"] = self.user_data  # botocore encodes RunInstances' user data itself
        if offer.spot:
            spot = {"SpotInstanceType": "one-time", "InstanceInterruptionBehavior": "terminate"}
            if max_price is not None:
                spot["MaxPrice"] = price(max_price)
            params["InstanceMarketOptions"] = {"MarketType": "spot", "SpotOptions": spot}
            params["TagSpecifications"].append(tag_spec("spot-instances-request", tags))
        answer = client.run_instances(**params)
        ids = [str(i["InstanceId"]) for i in answer.get("Instances", [])]
        instances = self._instances(offer, ids, tags)
        if len(ids) >= count:
            return LaunchResult(instances=instances)
        # MinCount makes this EC2's bug, but the caller must still not count on what is missing.
        message = f"RunInstances started {len(ids)} of {count}"
        return LaunchResult(
            instances=instances, error=launch_error(offer, LaunchFailure.NO_CAPACITY, message)
        )

    # --- fleet: CreateFleet (instant), partial fulfilment -----------------------------------------

    def _fleet_override(self, offer: Offer, max_price: float | None) -> dict[str, Any]:
        """One ``CreateFleet`` launch-template override: the offer's pool and the spot price cap."""
        override = self._where_and_how(offer)
        override.pop("SecurityGroupIds", None)  # refused for CreateFleet; never sent
        if "Placement" in override:  # an override names the zone directly
            override["AvailabilityZone"] = override.pop("Placement")["AvailabilityZone"]
        if offer.spot and max_price is not None:
            override["MaxPrice"] = price(max_price)
        return override

    def _fleet(
        self, client: Any, offer: Offer, count: int, max_price: float | None, tags: Mapping[str, str]
    ) -> LaunchResult:
        assert self.launch_template is not None  # checked at construction
        override = self._fleet_override(offer, max_price)
        template = self.launch_template.spec()
        answer = call_fleet(client, template, [override], count, spot=offer.spot, tags=tags)
        ids = [str(i) for entry in answer.get("Instances") or [] for i in entry.get("InstanceIds") or []]
        instances = self._instances(offer, ids, tags)
        if len(ids) >= count:
            return LaunchResult(instances=instances)
        errors = answer.get("Errors") or [{}]
        code = errors[0].get("ErrorCode")
        kind = EC2_FAILURES.get(code, LaunchFailure.OTHER) if code else LaunchFailure.NO_CAPACITY
        why = f"{code}: {clean(str(errors[0].get('ErrorMessage') or ''))}" if code else "no reason given"
        error = launch_error(offer, kind, f"CreateFleet got {len(ids)} of {count}: {why}", code)
        return LaunchResult(instances=instances, error=error)


class _UnplaceableZone(Exception):
    """An offer's zone ID this account cannot place: no such zone here, or the lookup refused."""


def _unplaceable(offer: Offer, exc: _UnplaceableZone) -> LaunchError:
    """That pool's failure (``UNPLACEABLE``: the allocator tries elsewhere), never the allocation's."""
    return launch_error(offer, LaunchFailure.UNPLACEABLE, str(exc), "UnplaceableZone")


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
