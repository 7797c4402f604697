"""The EC2 launcher against moto, in process and offline.

moto launches what it is asked to, so every failure EC2 can answer with and moto never produces
(no capacity, spot limits, a price too low, quotas, permissions, a request left open, a fleet's
partial answer) is injected on the client with a botocore ``before-call`` hook: the hook's answer
takes the place of the service's, and botocore turns an error answer into the ``ClientError`` the
real service would cause. Spot requests are polled on a :class:`FakeClock`, so waiting for a
request that never comes costs no real time.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError
from ec2_support import (
    AMI,
    CALLER_TAGS,
    OTHER_REGION,
    REGION,
    TIMEOUT,
    ami,
    answer,
    described,
    launch,
    offer,
    record,
    refuse,
    subnet,
    tags_of,
)

from spotlake.clock import FakeClock
from spotlake.compute.launch.base import Launcher, LaunchFailure, PoolSetLauncher, PoolSetResult
from spotlake.compute.launch.ec2 import (
    LAUNCHED_BY,
    POOL_TAG,
    Ec2Launcher,
    Ec2Mode,
    LaunchTemplate,
    ec2_tags,
)
from spotlake.compute.values import CapacityType, Cloud, Offer, Pool
from spotlake.errors import ComputeError, ConfigError

# --- instant mode --------------------------------------------------------------------------------


def test_spot_first_launch_starts_spot_instances_in_the_zone_with_the_tags(
    ec2: Any, clock: FakeClock
) -> None:
    launcher = Ec2Launcher(image_id=ami(ec2), clients={REGION: ec2}, clock=clock)
    calls = record(ec2)
    spot = offer()

    result = launch(launcher, spot, 2, max_price=0.1)

    assert isinstance(launcher, Launcher)
    assert result.error is None
    assert len(result.instances) == 2
    for instance in result.instances:
        assert instance.offer == spot
        assert instance.capacity_type is CapacityType.SPOT
        assert instance.price == 0.035
        assert instance.launched_at == clock.now()
    live = described(ec2, [i.id for i in result.instances])
    for instance in live.values():
        assert instance["InstanceLifecycle"] == "spot"
        assert instance["Placement"]["AvailabilityZone"] == "us-east-1b"
        assert instance["InstanceType"] == "m5.large"
        assert tags_of(instance) == {
            LAUNCHED_BY: "spotlake",
            "spotlake:capacity-type": "spot",
            "spotlake:pool": "aws:us-east-1b:m5.large",
            **CALLER_TAGS,
        }
    params = next(p for n, p in calls if n == "RunInstances")
    assert (params["MinCount"], params["MaxCount"]) == (2, 2)
    assert params["InstanceMarketOptions"] == {
        "MarketType": "spot",
        "SpotOptions": {
            "MaxPrice": "0.1",
            "SpotInstanceType": "one-time",
            "InstanceInterruptionBehavior": "terminate",
        },
    }
    assert params["ClientToken"]
    assert {s["ResourceType"] for s in params["TagSpecifications"]} == {"instance", "spot-instances-request"}


def test_on_demand_launch_goes_into_the_zones_subnet(ec2: Any, clock: FakeClock) -> None:
    net = subnet(ec2, "us-east-1c")
    launcher = Ec2Launcher(image_id=ami(ec2), subnets={"us-east-1c": net}, clients={REGION: ec2}, clock=clock)
    calls = record(ec2)

    result = launch(launcher, offer(CapacityType.ON_DEMAND, zone="us-east-1c", price=0.096))

    assert result.error is None
    (instance,) = result.instances
    assert (instance.capacity_type, instance.price) == (CapacityType.ON_DEMAND, 0.096)
    live = described(ec2, [instance.id])[instance.id]
    assert "InstanceLifecycle" not in live
    assert (live["SubnetId"], live["Placement"]["AvailabilityZone"]) == (net, "us-east-1c")
    assert tags_of(live)["spotlake:capacity-type"] == "on-demand"
    params = next(p for n, p in calls if n == "RunInstances")
    assert "InstanceMarketOptions" not in params and "Placement" not in params


def test_a_launch_template_alone_is_enough(ec2: Any, clock: FakeClock) -> None:
    ec2.create_launch_template(LaunchTemplateName="workers", LaunchTemplateData={"ImageId": ami(ec2)})
    launcher = Ec2Launcher(launch_template=LaunchTemplate(name="workers"), clients={REGION: ec2}, clock=clock)

    result = launch(launcher, offer())

    assert result.error is None and len(result.instances) == 1


def test_tags_keep_to_ec2s_limits_and_spotlakes_own_win() -> None:
    tags = ec2_tags(
        offer(),
        {
            "spotlake:pool": "a caller cannot move the pool",
            "aws:reserved": "dropped",
            "k" * 200: "v" * 400,
            **{f"extra-{n:02d}": str(n) for n in range(60)},
        },
    )
    assert tags["spotlake:pool"] == "aws:us-east-1b:m5.large"
    assert "aws:reserved" not in tags
    assert tags["k" * 128] == "v" * 256
    assert len(tags) == 50
    assert all(len(k) <= 128 and len(v) <= 256 for k, v in tags.items())


def test_long_caller_tags_are_cut_and_the_launch_still_succeeds(ec2: Any, clock: FakeClock) -> None:
    launcher = Ec2Launcher(image_id=ami(ec2), clients={REGION: ec2}, clock=clock)
    result = launch(launcher, offer(), tags={"spotlake:reason": "x" * 1000})
    assert result.error is None
    assert (
        tags_of(described(ec2, [result.instances[0].id])[result.instances[0].id])["spotlake:reason"]
        == "x" * 256
    )


# --- errors EC2 answers with ---------------------------------------------------------------------

CODES = [
    ("InsufficientInstanceCapacity", LaunchFailure.NO_CAPACITY),
    ("MaxSpotInstanceCountExceeded", LaunchFailure.SPOT_LIMIT),
    ("SpotMaxPriceTooLow", LaunchFailure.PRICE_TOO_LOW),
    ("UnfulfillableCapacity", LaunchFailure.NO_CAPACITY),
    ("InsufficientCapacity", LaunchFailure.NO_CAPACITY),
    ("VcpuLimitExceeded", LaunchFailure.QUOTA),
    ("UnauthorizedOperation", LaunchFailure.AUTH),
    ("SomethingNewFromEc2", LaunchFailure.OTHER),
]


@pytest.mark.parametrize(("code", "kind"), CODES)
@pytest.mark.parametrize("capacity_type", [CapacityType.SPOT, CapacityType.ON_DEMAND])
def test_instant_refusals_come_back_in_the_result_as_their_failure_kind(
    ec2: Any, clock: FakeClock, code: str, kind: LaunchFailure, capacity_type: CapacityType
) -> None:
    launcher = Ec2Launcher(image_id=ami(ec2), clients={REGION: ec2}, clock=clock)
    ec2.meta.events.register("before-call.ec2.RunInstances", refuse(code, f"{code} in us-east-1b"))
    the_offer = offer(capacity_type)

    result = launch(launcher, the_offer, 3)

    assert result.instances == ()
    assert result.error is not None
    assert (result.error.kind, result.error.code) == (kind, code)
    assert (result.error.pool, result.error.capacity_type) == (the_offer.pool, capacity_type)
    assert code in str(result.error) and str(the_offer.pool) in str(result.error)
    assert ec2.describe_instances()["Reservations"] == []


@pytest.mark.parametrize(("code", "kind"), CODES)
def test_fleet_and_request_calls_refused_outright_map_the_same_way(
    ec2: Any, clock: FakeClock, code: str, kind: LaunchFailure
) -> None:
    """Here the hook raises the ClientError itself, the other way an injected refusal can arrive."""

    def raising(**_: Any) -> None:
        raise ClientError({"Error": {"Code": code, "Message": "injected"}}, "CreateFleet")

    image = ami(ec2)
    ec2.create_launch_template(LaunchTemplateName="workers", LaunchTemplateData={"ImageId": image})
    ec2.meta.events.register("before-call.ec2.CreateFleet", raising)
    ec2.meta.events.register("before-call.ec2.RequestSpotInstances", raising)
    fleet = Ec2Launcher(
        launch_template=LaunchTemplate(name="workers"), mode=Ec2Mode.FLEET, clients={REGION: ec2}, clock=clock
    )
    request = Ec2Launcher(image_id=image, mode="request", clients={REGION: ec2}, clock=clock)

    for launcher in (fleet, request):
        result = launch(launcher, offer())
        assert result.error is not None and result.instances == ()
        assert (result.error.kind, result.error.code) == (kind, code)
    assert clock.slept == []


def test_provider_messages_are_scrubbed_and_cut_short(ec2: Any, clock: FakeClock) -> None:
    secret = "client_secret=Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MA"
    message = f"Weird failure ({secret}). Encoded authorization failure message: {'A' * 5000}"
    launcher = Ec2Launcher(image_id=ami(ec2), clients={REGION: ec2}, clock=clock)
    ec2.meta.events.register("before-call.ec2.RunInstances", refuse("Weird.Failure", message))

    result = launch(launcher, offer())

    assert result.error is not None and result.error.kind is LaunchFailure.OTHER
    assert "Zm9vYmFy" not in str(result.error) and "***" in str(result.error)
    assert len(str(result.error)) < 600


def test_network_failures_are_other_and_missing_credentials_are_auth(ec2: Any, clock: FakeClock) -> None:
    def unreachable(**_: Any) -> None:
        raise EndpointConnectionError(endpoint_url="https://ec2.us-east-1.amazonaws.com/")

    def no_credentials(**_: Any) -> None:
        raise NoCredentialsError()

    launcher = Ec2Launcher(image_id=ami(ec2), clients={REGION: ec2}, clock=clock)
    handler_id = "spotlake-test-transport"
    ec2.meta.events.register("before-call.ec2.RunInstances", unreachable, unique_id=handler_id)
    result = launch(launcher, offer())
    assert result.error is not None
    assert (result.error.kind, result.error.code) == (LaunchFailure.OTHER, "EndpointConnectionError")
    assert "could not reach EC2 in us-east-1" in str(result.error)

    ec2.meta.events.unregister("before-call.ec2.RunInstances", unique_id=handler_id)
    ec2.meta.events.register("before-call.ec2.RunInstances", no_credentials)
    result = launch(launcher, offer())
    assert result.error is not None and result.error.kind is LaunchFailure.AUTH


def test_bugs_raise(ec2: Any, clock: FakeClock) -> None:
    launcher = Ec2Launcher(image_id=ami(ec2), clients={REGION: ec2}, clock=clock)
    azure = Offer(
        pool=Pool(cloud=Cloud.AZURE, region="eastus", zone="1", instance_type="Standard_D2s_v5"),
        capacity_type=CapacityType.SPOT,
        price=0.02,
        vcpus=2,
        memory_gib=8.0,
    )
    with pytest.raises(ConfigError, match="AWS offers"):
        launch(launcher, azure)
    with pytest.raises(ConfigError, match="at least one"):
        launch(launcher, offer(), 0)
    with pytest.raises(ConfigError, match="no EC2 client"):
        launch(launcher, offer(region=OTHER_REGION, zone=None))


def test_each_mode_refuses_settings_it_cannot_use() -> None:
    template = LaunchTemplate(id="lt-0123456789abcdef0")
    with pytest.raises(ConfigError, match="launch template or an AMI"):
        Ec2Launcher()
    with pytest.raises(ConfigError, match="fleet mode launches from a launch template"):
        Ec2Launcher(image_id="ami-1", mode=Ec2Mode.FLEET)
    with pytest.raises(ConfigError, match="security groups and user data"):
        Ec2Launcher(launch_template=template, mode=Ec2Mode.FLEET, user_data="#!/bin/sh")
    with pytest.raises(ConfigError, match="request mode needs an AMI"):
        Ec2Launcher(launch_template=template, mode=Ec2Mode.REQUEST)
    with pytest.raises(ConfigError, match="exactly one of id or name"):
        LaunchTemplate(id="lt-1", name="workers")


# --- fleet mode ----------------------------------------------------------------------------------


@pytest.fixture
def fleet_launcher(ec2: Any, clock: FakeClock) -> Ec2Launcher:
    ec2.create_launch_template(LaunchTemplateName="workers", LaunchTemplateData={"ImageId": ami(ec2)})
    return Ec2Launcher(
        launch_template=LaunchTemplate(name="workers"),
        subnets={"us-east-1d": subnet(ec2, "us-east-1d")},
        mode=Ec2Mode.FLEET,
        clients={REGION: ec2},
        clock=clock,
    )


@pytest.mark.parametrize(
    ("capacity_type", "lifecycle"), [(CapacityType.SPOT, "spot"), (CapacityType.ON_DEMAND, None)]
)
def test_fleet_mode_launches_the_offers_pool(
    ec2: Any, fleet_launcher: Ec2Launcher, capacity_type: CapacityType, lifecycle: str | None
) -> None:
    calls = record(ec2)
    result = launch(fleet_launcher, offer(capacity_type, zone="us-east-1d"), 2, max_price=0.05)

    assert result.error is None and len(result.instances) == 2
    for instance in described(ec2, [i.id for i in result.instances]).values():
        assert instance.get("InstanceLifecycle") == lifecycle
        assert instance["Placement"]["AvailabilityZone"] == "us-east-1d"
        assert tags_of(instance)["spotlake:capacity-type"] == str(capacity_type)
        assert tags_of(instance)["spotlake:request"] == "nightly-build"
    params = next(p for n, p in calls if n == "CreateFleet")
    assert params["Type"] == "instant"
    (config,) = params["LaunchTemplateConfigs"]
    (override,) = config["Overrides"]
    assert override["InstanceType"] == "m5.large" and override["SubnetId"].startswith("subnet-")
    assert ("MaxPrice" in override) is (capacity_type is CapacityType.SPOT)
    assert params["TargetCapacitySpecification"]["TotalTargetCapacity"] == 2
    assert params["TargetCapacitySpecification"]["DefaultTargetCapacityType"] == str(capacity_type)
    if capacity_type is CapacityType.SPOT:
        assert params["SpotOptions"]["AllocationStrategy"] == "price-capacity-optimized"
    else:
        assert "OnDemandOptions" in params


def test_fleet_partial_fulfilment_returns_what_it_got_and_why_it_stopped(
    ec2: Any, fleet_launcher: Ec2Launcher
) -> None:
    got = ec2.run_instances(ImageId=ami(ec2), MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    partial = {
        "FleetId": "fleet-injected",
        "Instances": [{"Lifecycle": "spot", "InstanceIds": [got], "InstanceType": "m5.large"}],
        "Errors": [
            {
                "Lifecycle": "spot",
                "ErrorCode": "InsufficientInstanceCapacity",
                "ErrorMessage": "We currently do not have sufficient m5.large capacity in us-east-1d.",
            }
        ],
    }
    ec2.meta.events.register("before-call.ec2.CreateFleet", answer(partial))
    the_offer = offer(zone="us-east-1d")

    result = launch(fleet_launcher, the_offer, 4)

    assert [i.id for i in result.instances] == [got]
    assert result.error is not None
    assert (result.error.kind, result.error.code) == (
        LaunchFailure.NO_CAPACITY,
        "InsufficientInstanceCapacity",
    )
    assert (result.error.pool, result.error.capacity_type) == (the_offer.pool, CapacityType.SPOT)
    assert "got 1 of 4" in str(result.error)
    fleet_launcher.terminate([got])  # remembered: terminated in its region
    assert described(ec2, [got])[got]["State"]["Name"] in {"shutting-down", "terminated"}


# --- pool sets: one CreateFleet over ranked pools -------------------------------------------------

ZONES = ("us-east-1a", "us-east-1b", "us-east-1c")


def launch_pools(launcher: Ec2Launcher, offers: list[Offer], count: int, **kwargs: Any) -> PoolSetResult:
    kwargs.setdefault("max_price", 0.1)
    kwargs.setdefault("tags", CALLER_TAGS)
    kwargs.setdefault("timeout", TIMEOUT)
    return launcher.launch_pools(offers, count, **kwargs)


@pytest.fixture
def pools_launcher(ec2: Any, clock: FakeClock) -> Ec2Launcher:
    """An instant-mode launcher with a launch template and a subnet in each of :data:`ZONES`."""
    ec2.create_launch_template(LaunchTemplateName="workers", LaunchTemplateData={"ImageId": ami(ec2)})
    return Ec2Launcher(
        launch_template=LaunchTemplate(name="workers"),
        subnets={zone: subnet(ec2, zone) for zone in ZONES},
        clients={REGION: ec2},
        clock=clock,
    )


def test_launch_pools_is_one_fleet_over_the_ranked_pools(ec2: Any, pools_launcher: Ec2Launcher) -> None:
    """moto fills an instant fleet from its first override, so every instance lands in the first
    pool here; the partial answer below shows instances landing in several pools."""
    nets = pools_launcher.subnets
    ranked = [
        offer(zone="us-east-1c"),
        offer(zone="us-east-1a"),
        offer(zone="us-east-1b", instance_type="m5a.large"),
    ]
    calls = record(ec2)

    result = launch_pools(pools_launcher, ranked, 3, max_price=0.1)

    assert isinstance(pools_launcher, PoolSetLauncher)
    assert [n for n, _ in calls].count("CreateFleet") == 1 and "RunInstances" not in [n for n, _ in calls]
    params = next(p for n, p in calls if n == "CreateFleet")
    assert params["Type"] == "instant" and params["ClientToken"]
    (config,) = params["LaunchTemplateConfigs"]
    assert config["LaunchTemplateSpecification"] == {"LaunchTemplateName": "workers", "Version": "$Default"}
    assert config["Overrides"] == [
        {"InstanceType": o.pool.instance_type, "SubnetId": nets[str(o.pool.zone)], "MaxPrice": "0.1"}
        for o in ranked
    ]
    assert params["TargetCapacitySpecification"] == {
        "TotalTargetCapacity": 3,
        "DefaultTargetCapacityType": "spot",
        "SpotTargetCapacity": 3,
    }
    assert params["SpotOptions"] == {
        "AllocationStrategy": "price-capacity-optimized",
        "InstanceInterruptionBehavior": "terminate",
        "SingleInstanceType": False,
        "SingleAvailabilityZone": False,
    }
    assert "OnDemandOptions" not in params
    for spec in params["TagSpecifications"]:  # true of every instance: no pool tag at launch
        assert {t["Key"]: t["Value"] for t in spec["Tags"]} == {
            LAUNCHED_BY: "spotlake",
            "spotlake:capacity-type": "spot",
            **CALLER_TAGS,
        }
    assert result.errors == () and len(result.instances) == 3
    live = described(ec2, [i.id for i in result.instances])
    for instance in result.instances:
        assert instance.offer == ranked[0] and instance.capacity_type is CapacityType.SPOT
        assert instance.tags == ec2_tags(ranked[0], CALLER_TAGS)
        assert live[instance.id]["InstanceLifecycle"] == "spot"
        assert live[instance.id]["Placement"]["AvailabilityZone"] == "us-east-1c"
        assert tags_of(live[instance.id]) == instance.tags  # the pool tag added after the launch

    # On-demand: prioritized by rank; a zone without a subnet is named by AvailabilityZone.
    on_demand = [
        offer(CapacityType.ON_DEMAND, zone="us-east-1b", price=0.096),
        offer(CapacityType.ON_DEMAND, zone="us-east-1d", price=0.096),
    ]
    calls.clear()
    answer_od = launch_pools(pools_launcher, on_demand, 1, max_price=0.1)
    params = next(p for n, p in calls if n == "CreateFleet")
    assert params["LaunchTemplateConfigs"][0]["Overrides"] == [
        {"InstanceType": "m5.large", "SubnetId": nets["us-east-1b"], "Priority": 0.0},
        {"InstanceType": "m5.large", "AvailabilityZone": "us-east-1d", "Priority": 1.0},
    ]
    assert params["OnDemandOptions"] == {
        "AllocationStrategy": "prioritized",
        "SingleInstanceType": False,
        "SingleAvailabilityZone": False,
    }
    assert params["TargetCapacitySpecification"]["DefaultTargetCapacityType"] == "on-demand"
    assert "SpotOptions" not in params
    assert answer_od.errors == ()
    (instance,) = answer_od.instances
    assert instance.offer == on_demand[0] and instance.capacity_type is CapacityType.ON_DEMAND
    assert "InstanceLifecycle" not in described(ec2, [instance.id])[instance.id]

    pools_launcher.terminate([i.id for i in (*result.instances, instance)])  # remembered: their region
    states = described(ec2, [i.id for i in (*result.instances, instance)]).values()
    assert {s["State"]["Name"] for s in states} <= {"shutting-down", "terminated"}


def test_a_partial_fleet_answer_is_mapped_back_to_its_pools(ec2: Any, pools_launcher: Ec2Launcher) -> None:
    """Instances in the first two pools (the second's entry without its override: placed by
    describing them, not on the first pool that has their type), InsufficientInstanceCapacity for
    the third."""
    nets = pools_launcher.subnets
    ranked = [offer(zone=zone) for zone in ZONES]

    def started(zone: str, n: int) -> list[str]:
        made = ec2.run_instances(
            ImageId=AMI, InstanceType="m5.large", MinCount=n, MaxCount=n, SubnetId=nets[zone]
        )["Instances"]
        return [str(i["InstanceId"]) for i in made]

    in_a, in_b = started("us-east-1a", 1), started("us-east-1b", 2)

    def landed(ids: list[str], zone: str) -> dict[str, Any]:
        overrides = {"InstanceType": "m5.large", "SubnetId": nets[zone], "MaxPrice": "0.1"}
        return {
            "LaunchTemplateAndOverrides": {"Overrides": overrides},
            "Lifecycle": "spot",
            "InstanceIds": ids,
            "InstanceType": "m5.large",
        }

    partial = {
        "FleetId": "fleet-injected",
        "Instances": [
            landed(in_a, "us-east-1a"),
            {"Lifecycle": "spot", "InstanceIds": in_b, "InstanceType": "m5.large"},  # no override
        ],
        "Errors": [
            {
                "LaunchTemplateAndOverrides": {
                    "Overrides": {"InstanceType": "m5.large", "SubnetId": nets["us-east-1c"]}
                },
                "Lifecycle": "spot",
                "ErrorCode": "InsufficientInstanceCapacity",
                "ErrorMessage": "We currently do not have sufficient m5.large capacity in us-east-1c.",
            }
        ],
    }
    ec2.meta.events.register("before-call.ec2.CreateFleet", answer(partial))
    calls = record(ec2)

    result = launch_pools(pools_launcher, ranked, 4)

    placed = {i.id: i.offer for i in result.instances}
    assert placed == {in_a[0]: ranked[0], in_b[0]: ranked[1], in_b[1]: ranked[1]}
    (error,) = result.errors
    assert (error.kind, error.code) == (LaunchFailure.NO_CAPACITY, "InsufficientInstanceCapacity")
    assert (error.pool, error.capacity_type) == (ranked[2].pool, CapacityType.SPOT)
    assert "got 3 of 4" in str(error) and "us-east-1c" in str(error)
    assert [n for n, _ in calls] == ["CreateFleet", "DescribeInstances", "CreateTags", "CreateTags"]
    live = described(ec2, list(placed))
    assert {i: tags_of(live[i])[POOL_TAG] for i in placed} == {i: str(o.pool) for i, o in placed.items()}


def test_a_fleet_answer_is_mapped_back_to_pools_named_by_zone_id(
    ec2: Any, pools_launcher: Ec2Launcher
) -> None:
    """EC2 answers with zone names (and subnets); offers from the newer catalog name zones by ID."""
    by_name = {z["ZoneName"]: z["ZoneId"] for z in ec2.describe_availability_zones()["AvailabilityZones"]}
    nets = pools_launcher.subnets
    ranked = [offer(zone=by_name[zone]) for zone in ZONES[:2]]
    made = ec2.run_instances(
        ImageId=AMI, InstanceType="m5.large", MinCount=2, MaxCount=2, SubnetId=nets[ZONES[1]]
    )["Instances"]
    ids = [str(i["InstanceId"]) for i in made]
    partial = {
        "FleetId": "fleet-injected",
        "Instances": [
            {
                "LaunchTemplateAndOverrides": {
                    "Overrides": {"InstanceType": "m5.large", "AvailabilityZone": ZONES[1]}
                },
                "InstanceIds": ids,
                "InstanceType": "m5.large",
            }
        ],
        "Errors": [
            {
                "LaunchTemplateAndOverrides": {
                    "Overrides": {"InstanceType": "m5.large", "SubnetId": nets[ZONES[0]]}
                },
                "ErrorCode": "InsufficientInstanceCapacity",
                "ErrorMessage": "no capacity",
            }
        ],
    }
    ec2.meta.events.register("before-call.ec2.CreateFleet", answer(partial))
    calls = record(ec2)

    result = launch_pools(pools_launcher, ranked, 2)

    assert {i.id: i.offer for i in result.instances} == dict.fromkeys(ids, ranked[1])
    assert [e.pool for e in result.errors] == [ranked[0].pool]
    sent = next(p for n, p in calls if n == "CreateFleet")["LaunchTemplateConfigs"][0]["Overrides"]
    assert [o["SubnetId"] for o in sent] == [nets[z] for z in ZONES[:2]]  # IDs placed by their names


def test_a_pool_set_skips_zone_ids_the_account_lacks(ec2: Any, pools_launcher: Ec2Launcher) -> None:
    ranked = [offer(zone="use1-az9"), offer(zone=ZONES[0])]
    result = launch_pools(pools_launcher, ranked, 1)
    assert [i.offer for i in result.instances] == [ranked[1]]
    (error,) = result.errors
    assert (error.pool, error.code, error.kind) == (
        ranked[0].pool,
        "UnplaceableZone",
        LaunchFailure.UNPLACEABLE,
    )


def test_a_refused_pool_set_call_is_charged_to_the_pools_in_it(ec2: Any, pools_launcher: Ec2Launcher) -> None:
    ranked = [offer(zone="use1-az9"), offer(zone=ZONES[0]), offer(zone=ZONES[1])]
    ec2.meta.events.register(
        "before-call.ec2.CreateFleet", refuse("InsufficientInstanceCapacity", "none left")
    )
    result = launch_pools(pools_launcher, ranked, 1)
    assert [(e.pool.zone, e.kind) for e in result.errors] == [
        (ZONES[0], LaunchFailure.NO_CAPACITY),  # the call's first pool, not the skipped one
        ("use1-az9", LaunchFailure.UNPLACEABLE),
    ]


def test_pool_set_refusals_are_charged_to_the_pools_they_concern(
    ec2: Any, pools_launcher: Ec2Launcher
) -> None:
    """A whole call refused for a reason that is no pool's (permissions) counts against every
    pool; a capacity code on the whole call, or an Errors entry naming no pool, against the first;
    a pool's repeated error once; fewer instances than asked without a reason, NO_CAPACITY first."""
    ranked = [offer(zone=zone) for zone in ZONES]
    third = {"Overrides": {"InstanceType": "m5.large", "SubnetId": pools_launcher.subnets["us-east-1c"]}}
    no_capacity = {"LaunchTemplateAndOverrides": third, "ErrorCode": "InsufficientInstanceCapacity"}
    answers = [
        refuse("UnauthorizedOperation", "You are not authorized to perform this operation."),
        refuse("InsufficientInstanceCapacity"),
        answer({"Errors": [{"ErrorCode": "MaxSpotInstanceCountExceeded"}, no_capacity, no_capacity]}),
        answer({"FleetId": "fleet-injected", "Instances": []}),
    ]

    def next_answer(**kwargs: Any) -> Any:
        return answers.pop(0)(**kwargs)

    ec2.meta.events.register("before-call.ec2.CreateFleet", next_answer)

    def outcome(result: PoolSetResult) -> list[tuple[str, LaunchFailure, str | None]]:
        assert result.instances == ()
        return [(str(e.pool), e.kind, e.code) for e in result.errors]

    pools = [str(o.pool) for o in ranked]
    auth = (LaunchFailure.AUTH, "UnauthorizedOperation")
    assert outcome(launch_pools(pools_launcher, ranked, 2)) == [(p, *auth) for p in pools]
    assert outcome(launch_pools(pools_launcher, ranked, 2)) == [
        (pools[0], LaunchFailure.NO_CAPACITY, "InsufficientInstanceCapacity")
    ]
    assert outcome(launch_pools(pools_launcher, ranked, 2)) == [
        (pools[0], LaunchFailure.SPOT_LIMIT, "MaxSpotInstanceCountExceeded"),
        (pools[2], LaunchFailure.NO_CAPACITY, "InsufficientInstanceCapacity"),
    ]
    empty = launch_pools(pools_launcher, ranked, 2)
    assert outcome(empty) == [(pools[0], LaunchFailure.NO_CAPACITY, None)]
    assert "got 0 of 2: no reason given" in str(empty.errors[0])
    assert answers == [] and ec2.describe_instances()["Reservations"] == []


def test_launch_pools_refuses_what_one_fleet_call_cannot_launch() -> None:
    """Checked before any client is used (none is given here)."""
    template = LaunchTemplate(name="workers")
    launcher = Ec2Launcher(launch_template=template, clients={})
    spot = offer()
    azure = Offer(
        pool=Pool(cloud=Cloud.AZURE, region="eastus", zone="1", instance_type="Standard_D2s_v5"),
        capacity_type=CapacityType.SPOT,
        price=0.02,
        vcpus=2,
        memory_gib=8.0,
    )
    cases = [
        ([], 1, "at least one offer"),
        ([spot, offer(CapacityType.ON_DEMAND, zone="us-east-1c")], 1, "one capacity type"),
        ([spot, offer(region=OTHER_REGION, zone="eu-west-1a")], 1, "one region"),
        ([spot, azure], 1, "AWS offers"),
        ([spot, offer(zone="us-east-1c"), offer()], 1, "each pool once"),
        ([spot], 0, "at least one instance"),
    ]
    assert isinstance(launcher, PoolSetLauncher)
    for offers, count, message in cases:
        with pytest.raises(ConfigError, match=message):
            launch_pools(launcher, offers, count)
    with pytest.raises(ConfigError, match="needs a launch template: give the Ec2Launcher launch_template="):
        launch_pools(Ec2Launcher(image_id=AMI, clients={}), [spot], 1)
    with pytest.raises(ConfigError, match="security groups and user data"):
        launch_pools(Ec2Launcher(launch_template=template, user_data="#!/bin/sh", clients={}), [spot], 1)


# --- request mode --------------------------------------------------------------------------------


def test_request_mode_waits_for_spot_requests_and_tags_their_instances(ec2: Any, clock: FakeClock) -> None:
    """moto fulfils a spot request at once: the first look finds it active, and nothing sleeps."""
    net = subnet(ec2, "us-east-1e")
    launcher = Ec2Launcher(
        image_id=ami(ec2),
        subnets={"us-east-1e": net},
        user_data="#!/bin/sh\necho hi",
        mode=Ec2Mode.REQUEST,
        clients={REGION: ec2},
        clock=clock,
    )
    calls = record(ec2)

    result = launch(launcher, offer(zone="us-east-1e"), 2, max_price=0.07)

    assert result.error is None and len(result.instances) == 2
    assert clock.slept == []
    for instance in described(ec2, [i.id for i in result.instances]).values():
        assert instance["InstanceLifecycle"] == "spot"
        assert instance["SubnetId"] == net
        assert tags_of(instance)[LAUNCHED_BY] == "spotlake"
    params = next(p for n, p in calls if n == "RequestSpotInstances")
    assert (params["InstanceCount"], params["Type"], params["SpotPrice"]) == (2, "one-time", "0.07")
    assert params["LaunchSpecification"]["UserData"] == "IyEvYmluL3NoCmVjaG8gaGk="
    assert params["TagSpecifications"][0]["ResourceType"] == "spot-instances-request"


def test_request_mode_launches_on_demand_offers_with_run_instances(ec2: Any, clock: FakeClock) -> None:
    launcher = Ec2Launcher(image_id=ami(ec2), mode=Ec2Mode.REQUEST, clients={REGION: ec2}, clock=clock)
    calls = record(ec2)
    result = launch(launcher, offer(CapacityType.ON_DEMAND))
    assert result.error is None and len(result.instances) == 1
    assert [n for n, _ in calls] == ["RunInstances"]


def test_an_open_spot_request_times_out_on_the_clock_and_is_withdrawn(ec2: Any, clock: FakeClock) -> None:
    """Two requests: one fulfilled, one left open until the timeout; that one is cancelled, and the
    instance it got just before the cancel (the race EC2 allows) is terminated."""
    launcher = Ec2Launcher(
        image_id=ami(ec2), mode=Ec2Mode.REQUEST, clients={REGION: ec2}, clock=clock, poll_interval=15
    )
    made: list[dict[str, Any]] = []
    cancelled: list[list[str]] = []

    def remember_requests(parsed: dict[str, Any], **_: Any) -> None:
        made.extend(parsed["SpotInstanceRequests"])

    def remember_cancel(params: dict[str, Any], **_: Any) -> None:
        cancelled.append(list(params["SpotInstanceRequestIds"]))

    def describe(**_: Any) -> tuple[AWSResponse, dict[str, Any]]:
        first, second = made
        late = {
            "State": "cancelled",
            "InstanceId": second["InstanceId"],
            "Status": {"Code": "request-canceled"},
        }
        still_open = {"State": "open", "Status": {"Code": "capacity-not-available", "Message": "no capacity"}}
        listed = [
            {
                "SpotInstanceRequestId": first["SpotInstanceRequestId"],
                "State": "active",
                "InstanceId": first["InstanceId"],
            },
            {"SpotInstanceRequestId": second["SpotInstanceRequestId"], **(late if cancelled else still_open)},
        ]
        if cancelled:
            listed = listed[1:]
        return answer({"SpotInstanceRequests": listed})()

    ec2.meta.events.register("after-call.ec2.RequestSpotInstances", remember_requests)
    ec2.meta.events.register("provide-client-params.ec2.CancelSpotInstanceRequests", remember_cancel)
    ec2.meta.events.register("before-call.ec2.DescribeSpotInstanceRequests", describe)
    the_offer = offer()
    started, wall = clock.monotonic(), time.monotonic()

    result = launch(launcher, the_offer, 2, timeout=TIMEOUT)

    assert time.monotonic() - wall < 5  # no real sleep
    assert clock.monotonic() - started == TIMEOUT.total_seconds()
    assert max(clock.slept) == 15
    assert [i.id for i in result.instances] == [made[0]["InstanceId"]]
    assert result.error is not None
    assert (result.error.kind, result.error.code) == (LaunchFailure.TIMEOUT, "capacity-not-available")
    assert (result.error.pool, result.error.capacity_type) == (the_offer.pool, CapacityType.SPOT)
    assert "1 of 2 spot requests still open after 600 s" in str(result.error)
    assert cancelled == [[made[1]["SpotInstanceRequestId"]]]
    states = {i: s["State"]["Name"] for i, s in described(ec2, [m["InstanceId"] for m in made]).items()}
    assert states[made[0]["InstanceId"]] == "running"
    assert states[made[1]["InstanceId"]] in {"shutting-down", "terminated"}


def test_a_spot_request_closed_for_its_price_is_price_too_low_without_waiting(
    ec2: Any, clock: FakeClock
) -> None:
    launcher = Ec2Launcher(image_id=ami(ec2), mode=Ec2Mode.REQUEST, clients={REGION: ec2}, clock=clock)
    made: list[str] = []
    ec2.meta.events.register(
        "after-call.ec2.RequestSpotInstances",
        lambda parsed, **_: made.extend(r["SpotInstanceRequestId"] for r in parsed["SpotInstanceRequests"]),
    )

    def describe(**_: Any) -> tuple[AWSResponse, dict[str, Any]]:
        closed = {"State": "closed", "Status": {"Code": "price-too-low", "Message": "Your price is too low"}}
        return answer({"SpotInstanceRequests": [{"SpotInstanceRequestId": r, **closed} for r in made]})()

    ec2.meta.events.register("before-call.ec2.DescribeSpotInstanceRequests", describe)

    result = launch(launcher, offer(), max_price=0.001)

    assert result.instances == ()
    assert result.error is not None
    assert (result.error.kind, result.error.code) == (LaunchFailure.PRICE_TOO_LOW, "price-too-low")
    assert clock.slept == []


def test_a_request_not_listed_yet_is_waited_for_and_a_refused_look_withdraws_it(
    ec2: Any, clock: FakeClock
) -> None:
    """Just after a request EC2 may not list it (NotFound): that is waited out. A look that is
    refused (here: no permission to describe) ends the wait; the requests are cancelled."""
    launcher = Ec2Launcher(image_id=ami(ec2), mode=Ec2Mode.REQUEST, clients={REGION: ec2}, clock=clock)
    answers = [refuse("InvalidSpotInstanceRequestID.NotFound"), refuse("UnauthorizedOperation")]
    ec2.meta.events.register(
        "before-call.ec2.DescribeSpotInstanceRequests", lambda **kw: answers.pop(0)(**kw) if answers else None
    )
    calls = record(ec2)

    result = launch(launcher, offer())

    assert result.instances == ()
    assert result.error is not None
    assert (result.error.kind, result.error.code) == (LaunchFailure.AUTH, "UnauthorizedOperation")
    assert clock.slept == [5.0]
    assert "CancelSpotInstanceRequests" in [n for n, _ in calls]


# --- terminate -----------------------------------------------------------------------------------


def test_terminate_finds_each_instances_region_and_ignores_unknown_ids(ec2: Any, clock: FakeClock) -> None:
    far = boto3.client("ec2", region_name=OTHER_REGION)
    launcher = Ec2Launcher(image_id=ami(ec2), clients={REGION: ec2, OTHER_REGION: far}, clock=clock)
    here = launch(launcher, offer()).instances[0].id
    # Launched by someone else in the other region: this launcher never saw it.
    stranger = far.run_instances(ImageId=ami(far), MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]

    launcher.terminate([here, stranger, "i-0123456789abcdef0", here])
    launcher.terminate([here])  # already terminated: fine

    assert described(ec2, [here])[here]["State"]["Name"] in {"shutting-down", "terminated"}
    assert described(far, [stranger])[stranger]["State"]["Name"] in {"shutting-down", "terminated"}


def test_terminate_reports_instances_it_could_not_terminate(ec2: Any, clock: FakeClock) -> None:
    launcher = Ec2Launcher(image_id=ami(ec2), clients={REGION: ec2}, clock=clock)
    instance = launch(launcher, offer()).instances[0].id
    ec2.meta.events.register("before-call.ec2.TerminateInstances", refuse("UnauthorizedOperation"))

    with pytest.raises(ComputeError, match=f"{instance} in us-east-1 \\(UnauthorizedOperation"):
        launcher.terminate([instance])


# --- endpoints: nothing leaves the process ---------------------------------------------------------


def test_clients_are_built_per_region_and_every_request_stays_in_process(
    ec2_mock: None, monkeypatch: pytest.MonkeyPatch, clock: FakeClock
) -> None:
    """A launcher without injected clients builds its own (make_client, boto3's default session).

    Every request is recorded as it is sent, and the proxy settings name a closed loopback port: a
    request moto did not answer in process would go to that proxy and fail, so the launch would
    come back with an error.
    """
    for var in ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    for var in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(var, raising=False)
    boto3.setup_default_session()
    assert boto3.DEFAULT_SESSION is not None
    sent: list[str] = []
    boto3.DEFAULT_SESSION.events.register_first("before-send", lambda request, **_: sent.append(request.url))
    launcher = Ec2Launcher(image_id=AMI, clock=clock)

    result = launch(launcher, offer(region=OTHER_REGION, zone="eu-west-1a"))
    launcher.terminate([i.id for i in result.instances])

    assert result.error is None and len(result.instances) == 1
    assert len(sent) == 2  # RunInstances, TerminateInstances
    assert {urlsplit(u).hostname for u in sent} == {"ec2.eu-west-1.amazonaws.com"}


def test_lazily_built_clients_honour_aws_endpoint_url(
    aws_env: None, monkeypatch: pytest.MonkeyPatch, clock: FakeClock
) -> None:
    """With ``AWS_ENDPOINT_URL`` naming a loopback moto server, the launcher's clients go there."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        url = f"http://{host}:{port}"
        monkeypatch.setenv("AWS_ENDPOINT_URL", url)
        boto3.setup_default_session()
        assert boto3.DEFAULT_SESSION is not None
        sent: list[str] = []
        boto3.DEFAULT_SESSION.events.register("before-send", lambda request, **_: sent.append(request.url))
        direct = boto3.client("ec2", region_name=OTHER_REGION, endpoint_url=url)
        launcher = Ec2Launcher(image_id=ami(direct), clock=clock)
        sent.clear()

        result = launch(launcher, offer(CapacityType.ON_DEMAND, region=OTHER_REGION, zone="eu-west-1b"))

        assert result.error is None
        assert sent and all(u.startswith(url) for u in sent)
        instance_id = result.instances[0].id
        assert described(direct, [instance_id])[instance_id]["Placement"]["AvailabilityZone"] == "eu-west-1b"
    finally:
        server.stop()
