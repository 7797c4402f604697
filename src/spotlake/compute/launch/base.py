"""What a launcher is: one narrow protocol, the instances it returns, and the failures it reports.

A :class:`Launcher` launches ``count`` instances of one :class:`~spotlake.compute.values.Offer` and
returns a :class:`LaunchResult`: the instances it got and, when it got fewer than asked, the
:class:`LaunchError` saying why. Every provider error is mapped at this boundary to a
:class:`LaunchFailure` kind (:data:`EC2_FAILURES` for EC2's codes), which is all the allocator and
the health registry look at. Launchers: :mod:`~spotlake.compute.launch.ec2` (boto3),
:mod:`~spotlake.compute.launch.fake` (in memory, for tests) and the simulator.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Final, Protocol, runtime_checkable

import attrs

from spotlake.compute.values import CapacityType, Offer, Pool
from spotlake.errors import CapacityError

__all__ = [
    "EC2_FAILURES",
    "Instance",
    "LaunchError",
    "LaunchFailure",
    "LaunchResult",
    "Launcher",
    "PoolSetLauncher",
    "PoolSetResult",
]


class LaunchFailure(StrEnum):
    """Why a launch got less than it asked for, as the allocator and health registry see it."""

    #: The pool has no capacity now (try another pool; remembered for a few minutes).
    NO_CAPACITY = "no-capacity"
    #: The account's spot instance limit in the region is reached (spot there is out for a while).
    SPOT_LIMIT = "spot-limit"
    #: The spot price is above the maximum price offered.
    PRICE_TOO_LOW = "price-too-low"
    #: A spot request was not fulfilled in time (it was cancelled).
    TIMEOUT = "timeout"
    #: An account quota (vCPUs, instances) is reached for this capacity type in the region.
    QUOTA = "quota"
    #: Credentials or permissions: nothing will launch until fixed.
    AUTH = "auth"
    #: Anything else the provider refused: the next pool is tried (an unknown refusal may be the
    #: pool's), and it counts on the spot breaker like a capacity failure.
    OTHER = "other"
    #: The launcher cannot place this pool at all (a zone this account does not have, or whose
    #: name it could not look up): the pool is blocked and the next one tried, but it says nothing
    #: about spot's health (no breaker count, not one of the decision's failed spot pools).
    UNPLACEABLE = "unplaceable"


#: EC2 error codes and what they mean for allocation.
EC2_FAILURES: Final[Mapping[str, LaunchFailure]] = {
    "InsufficientInstanceCapacity": LaunchFailure.NO_CAPACITY,
    "InsufficientCapacity": LaunchFailure.NO_CAPACITY,
    "UnfulfillableCapacity": LaunchFailure.NO_CAPACITY,
    "InsufficientHostCapacity": LaunchFailure.NO_CAPACITY,
    "MaxSpotInstanceCountExceeded": LaunchFailure.SPOT_LIMIT,
    "SpotMaxPriceTooLow": LaunchFailure.PRICE_TOO_LOW,
    "VcpuLimitExceeded": LaunchFailure.QUOTA,
    "InstanceLimitExceeded": LaunchFailure.QUOTA,
    "UnauthorizedOperation": LaunchFailure.AUTH,
    "AuthFailure": LaunchFailure.AUTH,
    "OptInRequired": LaunchFailure.AUTH,
}


class LaunchError(CapacityError):
    """A launch that got less than it asked for: which pool, which capacity type, why."""

    def __init__(
        self,
        message: str,
        *,
        kind: LaunchFailure,
        pool: Pool,
        capacity_type: CapacityType,
        code: str | None = None,
    ) -> None:
        super().__init__(message, reason=kind.value)
        self.kind = kind
        self.pool = pool
        self.capacity_type = capacity_type
        self.code = code


@attrs.frozen(kw_only=True)
class Instance:
    """One launched instance: what it is, what it costs, when it started."""

    id: str
    offer: Offer
    capacity_type: CapacityType
    #: USD per hour at launch.
    price: float
    launched_at: datetime
    tags: Mapping[str, str] = attrs.field(factory=dict)


@attrs.frozen(kw_only=True)
class LaunchResult:
    """The instances a launch got; ``error`` says why when it got fewer than asked."""

    instances: tuple[Instance, ...] = ()
    error: LaunchError | None = None


@runtime_checkable
class Launcher(Protocol):
    """Launches and terminates instances on one cloud."""

    def launch(
        self,
        offer: Offer,
        count: int,
        *,
        max_price: float | None,
        tags: Mapping[str, str],
        timeout: timedelta,
    ) -> LaunchResult:
        """Launch ``count`` instances of ``offer`` (spot or on-demand as the offer says).

        ``max_price`` caps a spot price (USD per hour); ``timeout`` bounds how long a spot request
        may stay unfulfilled before it is cancelled (``LaunchFailure.TIMEOUT``). Provider errors
        come back in the result, mapped to a :class:`LaunchFailure`; only a bug raises.
        """
        ...

    def terminate(self, ids: Sequence[str]) -> None:
        """Terminate instances (already gone ones are ignored)."""
        ...


@runtime_checkable
class PoolSetLauncher(Launcher, Protocol):
    """A launcher that can let the cloud choose among several pools in one call (EC2 Fleet).

    The allocator uses it when the policy asks for ``pools_per_launch`` > 1: the next ranked
    pools of one capacity type and one instance size go in one request, and the cloud's own
    allocation strategy (price-capacity-optimized for spot) picks where capacity is deepest.
    """

    def can_launch_pools(self) -> bool:
        """Whether this launcher, as configured, can launch over several pools (EC2 Fleet needs a
        launch template); the allocator falls back to one pool per launch when it cannot."""
        ...

    def launch_pools(
        self,
        offers: Sequence[Offer],
        count: int,
        *,
        max_price: float | None,
        tags: Mapping[str, str],
        timeout: timedelta,
    ) -> PoolSetResult:
        """Launch ``count`` instances over ``offers`` (ranked best first, one capacity type).

        Each instance carries the offer it landed in; ``errors`` says, per pool, why the cloud
        gave fewer than asked (a pool not named there was not refused).
        """
        ...


@attrs.frozen(kw_only=True)
class PoolSetResult:
    """What a multi-pool launch got, and each refusal with its pool."""

    instances: tuple[Instance, ...] = ()
    errors: tuple[LaunchError, ...] = ()
