"""EC2 on moto for the compute tests: constants and helpers (the fixtures are in conftest.py).

moto launches what it is asked to, so every failure EC2 can answer with and moto never produces is
injected on the client with a botocore ``before-call`` hook (:func:`answer`, :func:`refuse`): the
hook's answer takes the place of the service's, and botocore turns an error answer into the
``ClientError`` the real service would cause.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from botocore.awsrequest import AWSResponse

from spotlake.compute.launch.ec2 import Ec2Launcher
from spotlake.compute.values import CapacityType, Cloud, Offer, Pool

REGION = "us-east-1"
AMI = "ami-03cf127a"
OTHER_REGION = "eu-west-1"
TIMEOUT = timedelta(minutes=10)
CALLER_TAGS = {"spotlake:request": "nightly-build", "spotlake:reason": "cheapest spot pool"}


# --- helpers -------------------------------------------------------------------------------------


def ami(client: Any) -> str:
    """An image registered for the test: the fixtures tell moto not to load its thousands of
    default images (``MOTO_EC2_LOAD_DEFAULT_AMIS``), which took about a second per test."""
    image = client.register_image(Name="spotlake-test-worker", RootDeviceName="/dev/xvda")
    return str(image["ImageId"])


def subnet(client: Any, zone: str) -> str:
    subnets = client.describe_subnets(Filters=[{"Name": "availability-zone", "Values": [zone]}])["Subnets"]
    return str(subnets[0]["SubnetId"])


def offer(
    capacity_type: CapacityType = CapacityType.SPOT,
    *,
    zone: str | None = "us-east-1b",
    region: str = REGION,
    instance_type: str = "m5.large",
    price: float = 0.035,
) -> Offer:
    pool = Pool(cloud=Cloud.AWS, region=region, zone=zone, instance_type=instance_type)
    return Offer(pool=pool, capacity_type=capacity_type, price=price, vcpus=2, memory_gib=8.0)


def described(client: Any, ids: list[str]) -> dict[str, dict[str, Any]]:
    reservations = client.describe_instances(InstanceIds=ids)["Reservations"]
    return {i["InstanceId"]: i for r in reservations for i in r["Instances"]}


def tags_of(instance: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in instance.get("Tags", [])}


def answer(parsed: dict[str, Any], status: int = 200) -> Callable[..., Any]:
    """A before-call hook answering in the service's place (an error answer when ``status`` >= 300)."""

    def hook(**_: Any) -> tuple[AWSResponse, dict[str, Any]]:
        meta = {"HTTPStatusCode": status, "RequestId": "injected"}
        return AWSResponse("https://ec2.injected", status, {}, None), {**parsed, "ResponseMetadata": meta}

    return hook


def refuse(code: str, message: str = "injected") -> Callable[..., Any]:
    return answer({"Error": {"Code": code, "Message": message}}, status=400)


def record(client: Any) -> list[tuple[str, dict[str, Any]]]:
    """Every call the client makes, with the parameters the launcher gave it."""
    calls: list[tuple[str, dict[str, Any]]] = []

    def hook(params: dict[str, Any], model: Any, **_: Any) -> None:
        calls.append((model.name, dict(params)))

    client.meta.events.register("provide-client-params.ec2.*", hook)
    return calls


def launch(launcher: Ec2Launcher, the_offer: Offer, count: int = 1, **kwargs: Any) -> Any:
    kwargs.setdefault("max_price", 0.1)
    kwargs.setdefault("tags", CALLER_TAGS)
    kwargs.setdefault("timeout", TIMEOUT)
    return launcher.launch(the_offer, count, **kwargs)
