"""A pool-set launch as ONE ``CreateFleet`` (``instant``) call, and its answer mapped back to the pools.

:meth:`~spotlake.compute.launch.ec2.Ec2Launcher.launch_pools` launches over several ranked pools of
one region and capacity type with one launch-template override per pool, and lets EC2's
allocation strategy choose where the capacity is: spot asks for ``price-capacity-optimized``;
on-demand asks for ``prioritized`` with ``Priority`` = rank (0 first). Each instance in the answer
is mapped back to the offer of the pool it landed in (:class:`_Places`), each entry of ``Errors``
to a :class:`~spotlake.compute.launch.base.LaunchError` on the pool it names.

The launcher hands over what it knows explicitly: the launch template's specification, the
override of each offer, its ``subnets`` (to read a zone from a subnet) and ``record``, which turns
the ids that landed in a pool into :class:`~spotlake.compute.launch.base.Instance` values and
remembers where they run.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from spotlake.compute.launch._ec2_errors import (
    clean,
    exc_text,
    is_provider_error,
    launch_error,
    provider_error,
)
from spotlake.compute.launch._ec2_params import POOL_TAG, ec2_tags, tag_spec, token
from spotlake.compute.launch.base import EC2_FAILURES, Instance, LaunchError, LaunchFailure, PoolSetResult
from spotlake.compute.values import Cloud, Offer
from spotlake.errors import ConfigError

__all__ = ["Record", "call_fleet", "check_pool_set", "create_fleet_over", "fleet_refusal"]

#: The launcher's log: what this module says is said by the launcher.
log = logging.getLogger("spotlake.compute.launch.ec2")

#: Failures that belong to one pool (its capacity, its price): a whole ``CreateFleet`` call refused
#: with one of these is charged to the first pool only, anything else to every pool of the call.
_POOL_FAILURES: Final = frozenset(
    {LaunchFailure.NO_CAPACITY, LaunchFailure.PRICE_TOO_LOW, LaunchFailure.TIMEOUT}
)

#: (offer, the ids launched for it, their tags) -> the instances, remembered by the launcher.
Record = Callable[[Offer, Sequence[str], Mapping[str, str]], tuple[Instance, ...]]


def check_pool_set(offers: Sequence[Offer], count: int, max_price: float | None) -> list[Offer]:
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
    return ranked


def fleet_refusal(ranked: Sequence[Offer], exc: BaseException) -> PoolSetResult | None:
    """The result of a ``CreateFleet`` call refused as a whole; ``None`` for a bug (to be re-raised).

    A cause that is not the pools' (permissions, quotas, the spot limit, a bad request, the
    network) is charged to every pool; a capacity, price or timeout code names no pool, so it goes
    to the first offer only."""
    first = ranked[0]
    error = provider_error(first, exc)
    if error is None:
        return None
    log.info("EC2 fleet over %d pools refused: %s", len(ranked), error)
    if error.kind in _POOL_FAILURES or len(ranked) == 1:
        return PoolSetResult(errors=(error,))
    rest = (provider_error(o, exc) for o in ranked[1:])
    return PoolSetResult(errors=(error, *(e for e in rest if e is not None)))


def create_fleet_over(
    client: Any,
    ranked: Sequence[Offer],
    count: int,
    tags: Mapping[str, str],
    *,
    template: Mapping[str, str],
    overrides: Sequence[Mapping[str, Any]],
    subnets: Mapping[str, str],
    zones: Sequence[str | None],
    record: Record,
) -> PoolSetResult:
    """Launch ``count`` instances over ``ranked`` in one instant ``CreateFleet`` call.

    ``template`` is the ``LaunchTemplateSpecification``, ``overrides`` the override of each offer
    in rank order (``Priority`` = rank is added here for on-demand), ``zones`` each offer's zone
    as this account names it (EC2 answers with names; an offer may name its zone by ID)."""
    first = ranked[0]
    # Fleet tag specifications tag every instance alike: the pool tag is added per pool after.
    common = {k: v for k, v in ec2_tags(first, tags).items() if k != POOL_TAG}
    answer = call_fleet(client, template, overrides, count, spot=first.spot, tags=common)
    places = _Places(ranked, subnets, zones)
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
        _place_by_describe(client, places, unplaced, landed)
    instances: list[Instance] = []
    for index in sorted(landed):
        offer, ids = ranked[index], landed[index]
        labels = ec2_tags(offer, tags)
        _tag_pool(client, offer, ids)
        instances.extend(record(offer, ids, labels))
    got, n = len(instances), len(ranked)
    errors: dict[tuple[int, str | None], LaunchError] = {}
    for entry in answer.get("Errors") or []:
        candidates = places.of(entry)
        index = candidates[0] if candidates else 0
        code = entry.get("ErrorCode")
        code = str(code) if code else None
        kind = EC2_FAILURES.get(code, LaunchFailure.OTHER) if code else LaunchFailure.OTHER
        why = f"{code}: {clean(str(entry.get('ErrorMessage') or ''))}" if code else "an error without a code"
        message = f"CreateFleet over {n} pools got {got} of {count}; this pool: {why}"
        errors.setdefault((index, code), launch_error(ranked[index], kind, message, code))
    if got < count and not errors:
        message = f"CreateFleet over {n} pools got {got} of {count}: no reason given"
        errors[(0, None)] = launch_error(first, LaunchFailure.NO_CAPACITY, message)
    return PoolSetResult(instances=tuple(instances), errors=tuple(errors.values()))


def call_fleet(
    client: Any,
    template: Mapping[str, str],
    overrides: Sequence[Mapping[str, Any]],
    count: int,
    *,
    spot: bool,
    tags: Mapping[str, str],
) -> Any:
    """One instant ``CreateFleet`` of ``count`` instances over ``overrides`` (ranked best first, one
    capacity type): spot ``price-capacity-optimized``, on-demand ``prioritized`` with ``Priority``
    = rank; ``tags`` on the instances and the fleet. The answer, as botocore returns it."""
    ordered = []
    for rank, override in enumerate(overrides):
        entry = dict(override)
        if not spot:  # the prioritized strategy reads it (price-capacity-optimized would not)
            entry["Priority"] = float(rank)
        ordered.append(entry)
    kind = "spot" if spot else "on-demand"
    target: dict[str, Any] = {"TotalTargetCapacity": count, "DefaultTargetCapacityType": kind}
    spread = {"SingleInstanceType": False, "SingleAvailabilityZone": False}
    options: dict[str, Any]
    if spot:
        target["SpotTargetCapacity"] = count
        spot_options = {
            "AllocationStrategy": "price-capacity-optimized",
            "InstanceInterruptionBehavior": "terminate",
            **spread,
        }
        options = {"SpotOptions": spot_options}
    else:
        target["OnDemandTargetCapacity"] = count
        options = {"OnDemandOptions": {"AllocationStrategy": "prioritized", **spread}}
    return client.create_fleet(
        Type="instant",
        LaunchTemplateConfigs=[{"LaunchTemplateSpecification": dict(template), "Overrides": ordered}],
        TargetCapacitySpecification=target,
        TagSpecifications=[tag_spec("instance", tags), tag_spec("fleet", tags)],
        ClientToken=token(),
        **options,
    )


def _place_by_describe(
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
        if not is_provider_error(exc):
            raise
        log.warning("could not describe fleet instances to place them: %s", exc_text(exc))
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


def _tag_pool(client: Any, offer: Offer, ids: Sequence[str]) -> None:
    try:
        client.create_tags(Resources=list(ids), Tags=[{"Key": POOL_TAG, "Value": str(offer.pool)}])
    except Exception as exc:
        if not is_provider_error(exc):
            raise
        log.warning("could not tag fleet instances %s with their pool: %s", list(ids), exc_text(exc))


class _Places:
    """Which of a pool set's offers an entry of EC2's answer (a fleet instance or error, a
    described instance) is about, from the instance type and the zone it names."""

    def __init__(
        self, offers: Sequence[Offer], subnets: Mapping[str, str], zones: Sequence[str | None]
    ) -> None:
        self.offers = offers
        self.zone_of_subnet = {subnet: zone for zone, subnet in subnets.items()}
        #: each offer's zone under every name it goes by (its own, and the account's name for an ID)
        self.zone_names = [{o.pool.zone, z} - {None} for o, z in zip(offers, zones, strict=True)]

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
            zonal = [i for i in found if zone in self.zone_names[i]]
            found = zonal or [i for i in found if self.offers[i].pool.zone is None]
        return found

    def _zone(self, fields: Mapping[str, Any]) -> str | None:
        subnet = fields.get("SubnetId")
        if subnet and subnet in self.zone_of_subnet:
            return self.zone_of_subnet[str(subnet)]
        zone = fields.get("AvailabilityZone") or (fields.get("Placement") or {}).get("AvailabilityZone")
        return str(zone) if zone else None
