"""The allocator and the job manager on EC2 and SQS (moto, in process), end to end.

moto never runs out of capacity, so :class:`Weather` refuses launches in chosen pools with EC2's
real error codes through a botocore ``before-call`` hook on ``RunInstances``; everything else
(instances, tags, spot requests, terminations, the SQS queue) is moto's. Time is a FakeClock.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import attrs
import boto3
import httpx
import pytest
from botocore.awsrequest import AWSResponse
from ec2_support import AMI, REGION, answer, refuse

from spotlake.clock import FakeClock
from spotlake.compute.allocator import Allocator
from spotlake.compute.events import SqsEvents
from spotlake.compute.health import BreakerState
from spotlake.compute.jobs import JobManager, JobState
from spotlake.compute.launch.base import LaunchFailure
from spotlake.compute.launch.ec2 import Ec2Launcher, Ec2Mode
from spotlake.compute.ledger import CostLedger, EndReason
from spotlake.compute.offers import StaticOffers
from spotlake.compute.policy import SPOT_FIRST, CapacityMix, cost_optimized
from spotlake.compute.policy.fallback import FallbackAction
from spotlake.compute.values import CapacityRequest, CapacityType, Cloud, Offer, PlacementScore, Pool
from spotlake.model import Secret
from spotlake.notify import SlackNotifier

SPOT, OD = CapacityType.SPOT, CapacityType.ON_DEMAND


class Weather:
    """Which pools EC2 refuses now: ``refuse[(zone or '*', spot)] = error code``."""

    def __init__(self, client: Any) -> None:
        self.refuse: dict[tuple[str, bool], str] = {}
        self.asked: list[tuple[str, bool, int]] = []
        self._zones = {s["SubnetId"]: s["AvailabilityZone"] for s in client.describe_subnets()["Subnets"]}
        self._params: dict[str, Any] = {}
        client.meta.events.register("provide-client-params.ec2.RunInstances", self._remember)
        client.meta.events.register("before-call.ec2.RunInstances", self._answer)

    def _remember(self, params: dict[str, Any], **_: Any) -> None:
        self._params = dict(params)

    def _answer(self, **_: Any) -> tuple[AWSResponse, dict[str, Any]] | None:
        params = self._params
        spot = "InstanceMarketOptions" in params
        zone = params.get("Placement", {}).get("AvailabilityZone") or self._zones.get(
            params.get("SubnetId", ""), ""
        )
        self.asked.append((zone, spot, params["MinCount"]))
        code = self.refuse.get((zone, spot)) or self.refuse.get(("*", spot))
        if code is None:
            return None
        result: tuple[AWSResponse, dict[str, Any]] = refuse(code)()
        return result

    def spot_calls(self) -> int:
        return sum(1 for _, spot, _ in self.asked if spot)


def zonal(zone: str, clock: FakeClock, price: float = 0.03, score: int | None = None) -> Offer:
    """An m5.large spot offer in ``zone`` (a name or a zone ID), observed now."""
    now = clock.now()
    return Offer(
        pool=Pool(cloud=Cloud.AWS, region=REGION, zone=zone, instance_type="m5.large"),
        capacity_type=SPOT,
        price=price,
        vcpus=2,
        memory_gib=8,
        score=None if score is None else PlacementScore(value=score, scale=10, observed_at=now),
        observed_at=now,
    )


def market(clock: FakeClock) -> list[Offer]:
    now = clock.now()

    def spot(zone: str, price: float, score: int) -> Offer:
        return zonal(zone, clock, price, score)

    return [
        spot("us-east-1a", 0.030, 9),
        spot("us-east-1b", 0.034, 9),
        spot("us-east-1c", 0.038, 8),
        Offer(
            pool=Pool(cloud=Cloud.AWS, region=REGION, zone=None, instance_type="m5.large"),
            capacity_type=OD,
            price=0.096,
            vcpus=2,
            memory_gib=8,
            observed_at=now,
        ),
    ]


class FreshMarket:
    """An offer source whose data is always observed now (a live source)."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock

    def offers(self) -> Any:
        return StaticOffers(market(self.clock), source="live").offers()


@pytest.fixture
def sqs(ec2_mock: None) -> tuple[Any, str]:
    client = boto3.client("sqs", region_name=REGION)
    return client, client.create_queue(QueueName="spotlake-interruptions")["QueueUrl"]


@pytest.fixture
def weather(ec2: Any) -> Weather:
    return Weather(ec2)


def allocator(
    ec2: Any, clock: FakeClock, *, mode: Ec2Mode = Ec2Mode.INSTANT, mix: CapacityMix | None = None
) -> Allocator:
    launcher = Ec2Launcher(image_id=AMI, clients={REGION: ec2}, clock=clock, mode=mode, poll_interval=30)
    policy = cost_optimized() if mix is None else cost_optimized().with_mix(mix)
    return Allocator(launcher, clock=clock, policy=policy, tags={"team": "ml"})


def live(ec2: Any, ids: list[str]) -> dict[str, dict[str, Any]]:
    reservations = ec2.describe_instances(InstanceIds=ids)["Reservations"]
    return {i["InstanceId"]: i for r in reservations for i in r["Instances"]}


# --- the allocator on EC2 ------------------------------------------------------------------------


def test_spot_first_launch_on_ec2(ec2: Any, clock: FakeClock, weather: Weather) -> None:
    a = allocator(ec2, clock).allocate(market(clock), CapacityRequest(count=10, name="train"))
    assert a.complete and a.units(SPOT) == 7 and a.units(OD) == 3
    instances = live(ec2, [i.id for i in a.instances])
    spot = [i for i in instances.values() if i.get("InstanceLifecycle") == "spot"]
    assert len(spot) == 7 and {i["Placement"]["AvailabilityZone"] for i in spot} == {"us-east-1a"}
    tags = {t["Key"]: t["Value"] for t in spot[0]["Tags"]}
    assert (
        tags["spotlake:allocation"] == a.id and tags["team"] == "ml" and tags["spotlake:request"] == "train"
    )
    assert tags["spotlake:reason"].startswith("spot rank 1")


def test_a_capacity_error_falls_back_to_the_next_pool_within_the_decision(
    ec2: Any, clock: FakeClock, weather: Weather
) -> None:
    weather.refuse[("us-east-1a", True)] = "InsufficientInstanceCapacity"
    a = allocator(ec2, clock).allocate(market(clock), CapacityRequest(count=10))
    assert a.complete and a.units(SPOT) == 7
    [event] = a.fallbacks
    assert (event.failure, event.action, event.pool.zone) == (
        LaunchFailure.NO_CAPACITY,
        FallbackAction.NEXT_POOL,
        "us-east-1a",
    )
    zones = {
        i["Placement"]["AvailabilityZone"]
        for i in live(ec2, [p.instance.id for p in a.placements if p.instance.capacity_type is SPOT]).values()
    }
    assert zones == {"us-east-1b"}


def test_max_spot_instance_count_exceeded_goes_to_on_demand(
    ec2: Any, clock: FakeClock, weather: Weather
) -> None:
    weather.refuse[("*", True)] = "MaxSpotInstanceCountExceeded"
    alloc = allocator(ec2, clock)
    a = alloc.allocate(market(clock), CapacityRequest(count=10))
    assert a.complete and a.units(OD) == 10 and a.units(SPOT) == 0
    assert [(e.failure, e.action) for e in a.fallbacks] == [
        (LaunchFailure.SPOT_LIMIT, FallbackAction.ON_DEMAND)
    ]
    assert weather.spot_calls() == 1  # one refusal names the whole region: no retrying spot
    ledger = CostLedger(clock=clock)
    ledger.record(a)
    fell_back = [e for e in ledger.entries() if e.requested is SPOT]
    assert len(fell_back) == 7 and all(e.realised is OD for e in fell_back)
    assert "spot-limit -> on-demand" in fell_back[0].fallbacks[0]


def test_the_breaker_opens_after_three_failures_and_half_opens_after_its_ttl(
    ec2: Any, clock: FakeClock, weather: Weather
) -> None:
    weather.refuse[("*", True)] = "InsufficientInstanceCapacity"
    alloc = allocator(ec2, clock)
    first = alloc.allocate(market(clock), CapacityRequest(count=4))
    assert len(first.fallbacks) == 3 and alloc.health.breaker(SPOT) is BreakerState.OPEN
    calls = weather.spot_calls()
    clock.advance(alloc.health.limits.capacity_ttl.total_seconds())  # the pool blocks end, the breaker stays
    second = alloc.allocate(market(clock), CapacityRequest(count=4))
    assert weather.spot_calls() == calls and second.units(OD) == 4  # spot not even tried
    clock.advance((alloc.health.limits.breaker_open_for - alloc.health.limits.capacity_ttl).total_seconds())
    assert alloc.health.breaker(SPOT) is BreakerState.HALF_OPEN
    weather.refuse.clear()  # spot is back
    third = alloc.allocate(market(clock), CapacityRequest(count=10))
    probe = [a for a in weather.asked if a[1]][calls]
    assert probe[2] == 1  # the half-open probe asks for one instance
    assert alloc.health.breaker(SPOT) is BreakerState.CLOSED and third.units(SPOT) == 7


def test_an_unfulfilled_spot_request_is_cancelled_at_the_timeout_and_on_demand_replaces_it(
    ec2: Any, clock: FakeClock
) -> None:
    cancelled: list[list[str]] = []
    made: list[str] = []
    ec2.meta.events.register(
        "after-call.ec2.RequestSpotInstances",
        lambda parsed, **_: made.extend(r["SpotInstanceRequestId"] for r in parsed["SpotInstanceRequests"]),
    )
    ec2.meta.events.register(
        "provide-client-params.ec2.CancelSpotInstanceRequests",
        lambda params, **_: cancelled.append(list(params["SpotInstanceRequestIds"])),
    )

    def still_open(**_: Any) -> tuple[AWSResponse, dict[str, Any]]:
        waiting = {"State": "open", "Status": {"Code": "capacity-not-available", "Message": "no capacity"}}
        result: tuple[AWSResponse, dict[str, Any]] = answer(
            {
                "SpotInstanceRequests": []
                if cancelled
                else [{"SpotInstanceRequestId": r, **waiting} for r in made]
            }
        )()
        return result

    ec2.meta.events.register("before-call.ec2.DescribeSpotInstanceRequests", still_open)
    alloc = allocator(ec2, clock, mode=Ec2Mode.REQUEST, mix=SPOT_FIRST)
    offers = [o for o in market(clock) if o.pool.zone in (None, "us-east-1a")]
    start = clock.now()
    a = alloc.allocate(offers, CapacityRequest(count=2))
    assert clock.now() - start == alloc.policy.fallback.spot_timeout  # waited the timeout, on the clock
    assert cancelled == [made]
    assert [(e.failure, e.action) for e in a.fallbacks] == [(LaunchFailure.TIMEOUT, FallbackAction.ON_DEMAND)]
    assert a.complete and a.units(OD) == 2 and all(p.requested is SPOT for p in a.placements)
    assert all(
        i["InstanceLifecycle"] != "spot"
        for i in live(ec2, [i.id for i in a.instances]).values()
        if "InstanceLifecycle" in i
    )


def test_repeated_early_interruptions_trip_the_interruption_breaker(ec2: Any, clock: FakeClock) -> None:
    alloc = allocator(ec2, clock, mix=SPOT_FIRST)
    jobs = JobManager(alloc, FreshMarket(clock), clock=clock, revert=False)
    job = jobs.submit(CapacityRequest(count=1))
    for _ in range(alloc.health.limits.early_overall):
        clock.advance(60)  # a minute after each launch: early
        [p] = job.placements
        jobs.handle(_warning(p.instance.id, clock))
    assert alloc.health.breaker(SPOT) is BreakerState.OPEN
    [p] = job.placements
    assert p.instance.capacity_type is OD and p.requested is SPOT  # the replacement fell back
    assert jobs.ledger.totals().interruptions == alloc.health.limits.early_overall


# --- jobs ----------------------------------------------------------------------------------------


def _warning(instance_id: str, clock: FakeClock) -> Any:
    from spotlake.compute.events import parse_event

    return parse_event(_event_body(instance_id, clock))


def _event_body(instance_id: str, clock: FakeClock) -> str:
    return json.dumps(
        {
            "version": "0",
            "id": f"evt-{instance_id}",
            "detail-type": "EC2 Spot Instance Interruption Warning",
            "source": "aws.ec2",
            "account": "123456789012",
            "time": f"{clock.now():%Y-%m-%dT%H:%M:%SZ}",
            "region": REGION,
            "resources": [f"arn:aws:ec2:{REGION}:123456789012:instance/{instance_id}"],
            "detail": {"instance-id": instance_id, "instance-action": "terminate"},
        }
    )


def test_an_sqs_interruption_checkpoints_replaces_and_is_in_the_ledger(
    ec2: Any, clock: FakeClock, sqs: tuple[Any, str]
) -> None:
    client, url = sqs
    checkpoints: list[tuple[str, Any]] = []
    restarts: list[str] = []
    alloc = allocator(ec2, clock, mix=SPOT_FIRST)
    jobs = JobManager(
        alloc,
        FreshMarket(clock),
        clock=clock,
        checkpoint=lambda job, deadline: checkpoints.append((job.id, deadline)),
        restart=lambda job: restarts.append(job.id),
    )
    job = jobs.submit(CapacityRequest(count=2), name="train")
    assert job.state is JobState.RUNNING and {p.instance.capacity_type for p in job.placements} == {SPOT}
    clock.advance(3600)
    victim = job.placements[0].instance.id
    client.send_message(QueueUrl=url, MessageBody=_event_body(victim, clock))

    batch = jobs.poll(SqsEvents(url, client=client))

    assert len(batch.events) == 1
    assert checkpoints == [(job.id, clock.now() + timedelta(minutes=2))]  # the notice's deadline
    assert victim not in job.instance_ids and len(job.placements) == 2 and job.state is JobState.RUNNING
    assert restarts == [job.id] and job.restarts == 1
    replacement = next(p for p in job.placements if p.instance.launched_at == clock.now())
    assert replacement.instance.id in live(ec2, [replacement.instance.id])
    ended = jobs.ledger.get(victim)
    assert ended is not None and ended.end is EndReason.INTERRUPTED and ended.ended_at == clock.now()
    new = jobs.ledger.get(replacement.instance.id)
    assert new is not None and new.job == job.id
    assert client.receive_message(QueueUrl=url).get("Messages") is None  # handled and deleted


def test_a_hanging_job_is_terminated_and_rescheduled(ec2: Any, clock: FakeClock) -> None:
    jobs = JobManager(allocator(ec2, clock), FreshMarket(clock), clock=clock)
    job = jobs.submit(CapacityRequest(count=2, expected_runtime=timedelta(minutes=20)))
    first = list(job.instance_ids)
    clock.advance(timedelta(minutes=45).total_seconds())
    jobs.tick()
    assert job.state is JobState.RUNNING  # 45 min is 2.25x: not yet
    clock.advance(timedelta(minutes=10).total_seconds())
    jobs.tick()
    states = [t.state for t in job.history]
    assert states[-4:] == [JobState.HANGING, JobState.TERMINATED, JobState.PENDING, JobState.RUNNING]
    assert "over 2.5x its usual 20 min" in job.history[-4].reason
    assert job.attempts == 2 and not set(first) & set(job.instance_ids)
    gone = live(ec2, first)
    assert {i["State"]["Name"] for i in gone.values()} <= {"shutting-down", "terminated"}
    assert {jobs.ledger.get(i).end for i in first} == {EndReason.HANGING}  # type: ignore[union-attr]


def test_no_capacity_anywhere_alerts_once_queues_and_launches_when_it_returns(
    ec2: Any, clock: FakeClock, weather: Weather
) -> None:
    posts: list[dict[str, Any]] = []

    def slack(request: httpx.Request) -> httpx.Response:
        posts.append(json.loads(request.content))
        return httpx.Response(200, text="ok")

    notifier = SlackNotifier(
        webhook=Secret("https://hooks.slack.com/services/T0/B0/XXXX"), transport=httpx.MockTransport(slack)
    )
    weather.refuse[("*", True)] = weather.refuse[("*", False)] = "InsufficientInstanceCapacity"
    alloc = allocator(ec2, clock)
    jobs = JobManager(alloc, FreshMarket(clock), clock=clock, notifier=notifier)

    job = jobs.submit(CapacityRequest(count=3), name="nightly")
    assert job.state is JobState.PENDING and not job.placements
    assert len(posts) == 1 and "nightly needs 3 more instances" in posts[0]["text"]
    asked = len(weather.asked)
    jobs.tick()  # nothing changed yet: no retry, no second alert
    assert len(weather.asked) == asked and len(posts) == 1
    clock.advance(alloc.health.limits.capacity_ttl.total_seconds())
    jobs.tick()  # the blocks ended: retried, still nothing, still one alert
    assert len(weather.asked) > asked and len(posts) == 1 and job.state is JobState.PENDING
    weather.refuse.clear()  # capacity is back
    clock.advance(alloc.health.limits.breaker_open_for.total_seconds())
    jobs.tick()
    assert job.state is JobState.RUNNING and len(job.placements) == 3 and len(posts) == 1


def test_revert_moves_back_to_spot_one_instance_per_cooldown_never_below_the_base(
    ec2: Any, clock: FakeClock, weather: Weather
) -> None:
    mix = CapacityMix(spot_percent=100, base=2)
    alloc = allocator(ec2, clock, mix=mix)
    jobs = JobManager(alloc, FreshMarket(clock), clock=clock)
    weather.refuse[("*", True)] = "MaxSpotInstanceCountExceeded"
    job = jobs.submit(CapacityRequest(count=6))
    assert [p.instance.capacity_type for p in job.placements].count(OD) == 6
    weather.refuse.clear()
    clock.advance(alloc.health.limits.spot_limit_ttl.total_seconds())
    seen = []
    for _ in range(8):
        jobs.tick()
        seen.append(sum(1 for p in job.placements if p.instance.capacity_type is SPOT))
        jobs.tick()  # inside the cooldown: nothing more moves
        assert sum(1 for p in job.placements if p.instance.capacity_type is SPOT) == seen[-1]
        clock.advance(alloc.health.limits.revert_cooldown.total_seconds())
    assert seen == [1, 2, 3, 4, 4, 4, 4, 4]  # one at a time, stopping at the base of 2 on-demand
    assert len(job.placements) == 6
    replaced = [e for e in jobs.ledger.entries() if e.end is EndReason.REPLACED]
    assert len(replaced) == 4 and all(e.realised is OD for e in replaced)
    gone = live(ec2, [e.instance_id for e in replaced])
    assert {i["State"]["Name"] for i in gone.values()} <= {"shutting-down", "terminated"}


@pytest.fixture(autouse=True)
def _no_real_sleep(clock: FakeClock) -> Iterator[None]:
    yield
    assert all(s <= 30 for s in clock.slept)  # spot-request polling only, on the fake clock


def test_zone_ids_from_the_newer_catalog_launch_in_the_zone_they_name(ec2: Any, clock: FakeClock) -> None:
    by_id = {z["ZoneId"]: z["ZoneName"] for z in ec2.describe_availability_zones()["AvailabilityZones"]}
    zone_id = sorted(by_id)[0]
    a = allocator(ec2, clock, mix=SPOT_FIRST).allocate([zonal(zone_id, clock)], CapacityRequest(count=2))
    assert a.complete and not a.fallbacks
    zones = {i["Placement"]["AvailabilityZone"] for i in live(ec2, [i.id for i in a.instances]).values()}
    assert zones == {by_id[zone_id]}


def test_a_zone_id_this_account_lacks_fails_that_pool_only(ec2: Any, clock: FakeClock) -> None:
    known = {z["ZoneId"]: z["ZoneName"] for z in ec2.describe_availability_zones()["AvailabilityZones"]}
    assert "use1-az9" not in known
    offers = [zonal("use1-az9", clock, 0.02), zonal(sorted(known)[0], clock)]
    a = allocator(ec2, clock, mix=SPOT_FIRST).allocate(offers, CapacityRequest(count=2))
    assert a.complete and {p.instance.offer.pool.zone for p in a.placements} == {sorted(known)[0]}
    (failed,) = a.fallbacks
    assert failed.pool.zone == "use1-az9" and failed.failure is LaunchFailure.UNPLACEABLE


def test_a_refused_zone_lookup_fails_the_zone_id_pools_not_all_of_aws(ec2: Any, clock: FakeClock) -> None:
    ec2.meta.events.register("before-call.ec2.DescribeAvailabilityZones", refuse("UnauthorizedOperation"))
    offers = [zonal("use1-az1", clock, 0.02), zonal("us-east-1b", clock)]
    alloc = allocator(ec2, clock, mix=SPOT_FIRST)
    a = alloc.allocate(offers, CapacityRequest(count=2))
    assert a.complete and {p.instance.offer.pool.zone for p in a.placements} == {"us-east-1b"}
    (failed,) = a.fallbacks
    assert "ec2:DescribeAvailabilityZones" in failed.detail
    assert alloc.health.breaker(SPOT) is BreakerState.CLOSED and not alloc.health.blocked(
        offers[1].pool, SPOT
    )


def test_unplaceable_zones_are_no_spot_failures(ec2: Any, clock: FakeClock) -> None:
    """Three zone-ID pools that cannot be placed neither open the spot breaker nor use up the
    decision's failed spot pools: the zone-name pool after them still launches on spot."""
    ec2.meta.events.register("before-call.ec2.DescribeAvailabilityZones", refuse("UnauthorizedOperation"))
    offers = [zonal(z, clock, p) for z, p in (("use1-az1", 0.030), ("use1-az2", 0.031), ("use1-az4", 0.032))]
    alloc = allocator(ec2, clock, mix=SPOT_FIRST)
    a = alloc.allocate([*offers, zonal("us-east-1c", clock, 0.034)], CapacityRequest(count=1))
    assert [(p.instance.offer.pool.zone, p.instance.capacity_type) for p in a.placements] == [
        ("us-east-1c", SPOT)
    ]
    assert [f.failure for f in a.fallbacks] == [LaunchFailure.UNPLACEABLE] * 3
    assert alloc.health.breaker(SPOT) is BreakerState.CLOSED


def test_multi_pool_policies_fall_back_to_one_pool_per_launch_without_a_launch_template(
    ec2: Any, clock: FakeClock, weather: Weather
) -> None:
    alloc = allocator(ec2, clock)
    alloc.policy = attrs.evolve(alloc.policy, pools_per_launch=3)
    a = alloc.allocate(market(clock), CapacityRequest(count=10))
    assert a.complete and a.units(SPOT) == 7  # RunInstances per pool, no CreateFleet that would refuse
