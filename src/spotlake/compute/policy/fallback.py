"""Fallback: what to try after a launch fails, within the same decision.

The health registry remembers the failure (so the pool or scope is left out while its TTL lasts);
this policy only says where the units go now: the next spot pool in the ranking, or on-demand, or
nowhere (a failure that no other pool can fix, such as missing permissions).
"""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum

import attrs

from spotlake.compute.launch.base import LaunchFailure
from spotlake.compute.values import CapacityType

__all__ = ["Fallback", "FallbackAction"]


class FallbackAction(StrEnum):
    """What :meth:`Fallback.after` says to do after a failed launch."""

    #: Try the next pool of the same capacity type.
    NEXT_POOL = "next-pool"
    #: Move what is left of the spot part to on-demand.
    ON_DEMAND = "on-demand"
    #: Stop: no other pool would do better (the request stays unfilled and is reported).
    GIVE_UP = "give-up"


@attrs.frozen(kw_only=True)
class Fallback:
    """Where a failed launch's units go.

    ``spot_timeout``: how long a spot request may stay unfulfilled before it is cancelled (the
    design's 5 minutes). ``spot_pools``: how many spot pools one decision tries before the rest
    goes to on-demand (each failure also counts on the spot breaker).
    """

    spot_timeout: timedelta = timedelta(minutes=5)
    spot_pools: int = 3

    def after(self, failure: LaunchFailure, capacity_type: CapacityType, failures: int) -> FallbackAction:
        """The action after the ``failures``-th failed launch of ``capacity_type`` in this decision."""
        if failure is LaunchFailure.AUTH:
            return FallbackAction.GIVE_UP
        if capacity_type is CapacityType.ON_DEMAND or failure is LaunchFailure.UNPLACEABLE:
            return FallbackAction.NEXT_POOL
        if failure in (LaunchFailure.SPOT_LIMIT, LaunchFailure.QUOTA):
            return FallbackAction.ON_DEMAND  # the region's spot is out, no other spot pool there helps
        return FallbackAction.NEXT_POOL if failures < self.spot_pools else FallbackAction.ON_DEMAND
