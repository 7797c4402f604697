"""What the EC2 launcher writes into every call: spotlake's tags, prices, idempotency tokens.

Every instance, spot request and fleet carries :func:`ec2_tags` (who launched it, its capacity type
and pool, the caller's tags), so whatever spotlake started can be found and accounted for. Every
launch call carries a fresh :func:`token` as its ``ClientToken``, so botocore's own retries of a
timed-out call cannot launch twice.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any, Final

from spotlake.compute.values import Offer

__all__ = [
    "CAPACITY_TYPE_TAG",
    "LAUNCHED_BY",
    "POOL_TAG",
    "ec2_tags",
    "price",
    "profile",
    "tag_spec",
    "token",
]

#: The tag every instance spotlake launches carries, with the value ``spotlake``.
LAUNCHED_BY: Final = "spotlake:launched-by"
CAPACITY_TYPE_TAG: Final = "spotlake:capacity-type"
POOL_TAG: Final = "spotlake:pool"
#: EC2's limits: keys of at most 128 characters, values of at most 256, 50 tags per resource.
TAG_KEY_MAX: Final = 128
TAG_VALUE_MAX: Final = 256
TAGS_MAX: Final = 50


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


def tag_spec(resource: str, tags: Mapping[str, str]) -> dict[str, Any]:
    """A ``TagSpecifications`` entry: ``tags`` on the resources of type ``resource``."""
    return {"ResourceType": resource, "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}


def token() -> str:
    """A fresh ``ClientToken``."""
    return uuid.uuid4().hex


def price(value: float) -> str:
    """A price as EC2 reads it: plain decimals, never ``1e-05``."""
    return f"{value:.6f}".rstrip("0").rstrip(".")


def profile(name_or_arn: str) -> dict[str, str]:
    """The ``IamInstanceProfile`` parameter for an instance profile's name or ARN."""
    return {"Arn": name_or_arn} if name_or_arn.startswith("arn:") else {"Name": name_or_arn}
