"""An in-memory launcher for tests and dry runs: capacity and failures are whatever you script.

::

    launcher = FakeLauncher(clock=clock)
    launcher.set_capacity(pool, CapacityType.SPOT, 2)          # two spot instances left there
    launcher.fail_next(pool, CapacityType.SPOT, LaunchFailure.NO_CAPACITY)
    launcher.set_unfulfilled(pool)                              # spot requests there time out

Everything it launched is in :attr:`FakeLauncher.running`; :meth:`FakeLauncher.interrupt` takes
an instance away as the cloud would.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from datetime import timedelta

from spotlake.clock import Clock, ensure_utc
from spotlake.compute.launch.base import Instance, LaunchError, LaunchFailure, LaunchResult, PoolSetResult
from spotlake.compute.values import CapacityType, Offer, Pool

__all__ = ["FakeLauncher"]


class FakeLauncher:
    """A :class:`~spotlake.compute.launch.base.Launcher` (and ``PoolSetLauncher``) that never
    leaves the process."""

    def __init__(self, *, clock: Clock) -> None:
        self._clock = clock
        self._ids = itertools.count(1)
        self._capacity: dict[tuple[Pool, CapacityType], int] = {}
        self._failures: dict[tuple[Pool, CapacityType], list[LaunchFailure]] = {}
        self._unfulfilled: set[Pool] = set()
        #: Live instances by id.
        self.running: dict[str, Instance] = {}
        #: Every launch call: (offer, count, max_price).
        self.calls: list[tuple[Offer, int, float | None]] = []
        #: Every multi-pool launch: its offers, in the order given (each pool's launch is in ``calls`` too).
        self.pool_calls: list[tuple[Offer, ...]] = []

    # --- scripting -----------------------------------------------------------------------------

    def set_capacity(self, pool: Pool, capacity_type: CapacityType, count: int | None) -> None:
        """How many more instances the pool can give (``None``: unlimited, the default)."""
        if count is None:
            self._capacity.pop((pool, capacity_type), None)
        else:
            self._capacity[(pool, capacity_type)] = count

    def fail_next(self, pool: Pool, capacity_type: CapacityType, *kinds: LaunchFailure) -> None:
        """The next launches in the pool fail with these kinds, in order."""
        self._failures.setdefault((pool, capacity_type), []).extend(kinds)

    def set_unfulfilled(self, pool: Pool, unfulfilled: bool = True) -> None:
        """Spot requests in the pool stay open until their timeout."""
        if unfulfilled:
            self._unfulfilled.add(pool)
        else:
            self._unfulfilled.discard(pool)

    def interrupt(self, instance_id: str) -> Instance:
        """The cloud takes a spot instance back."""
        return self.running.pop(instance_id)

    # --- the protocol --------------------------------------------------------------------------

    def launch(
        self,
        offer: Offer,
        count: int,
        *,
        max_price: float | None,
        tags: Mapping[str, str],
        timeout: timedelta,
    ) -> LaunchResult:
        self.calls.append((offer, count, max_price))
        key = (offer.pool, offer.capacity_type)
        scripted = self._failures.get(key)
        if scripted:
            return LaunchResult(error=self._error(offer, scripted.pop(0)))
        if offer.spot and max_price is not None and offer.price > max_price:
            return LaunchResult(error=self._error(offer, LaunchFailure.PRICE_TOO_LOW))
        if offer.spot and offer.pool in self._unfulfilled:
            self._clock.sleep(timeout.total_seconds())  # the request stays open, then is cancelled
            return LaunchResult(error=self._error(offer, LaunchFailure.TIMEOUT))
        available = self._capacity.get(key)
        got = count if available is None else min(count, available)
        if available is not None:
            self._capacity[key] = available - got
        now = ensure_utc(self._clock.now())
        instances = tuple(
            Instance(
                id=f"i-fake{next(self._ids):08d}",
                offer=offer,
                capacity_type=offer.capacity_type,
                price=offer.price,
                launched_at=now,
                tags=dict(tags),
            )
            for _ in range(got)
        )
        for instance in instances:
            self.running[instance.id] = instance
        error = None if got == count else self._error(offer, LaunchFailure.NO_CAPACITY)
        return LaunchResult(instances=instances, error=error)

    def can_launch_pools(self) -> bool:
        return True

    def launch_pools(
        self,
        offers: Sequence[Offer],
        count: int,
        *,
        max_price: float | None,
        tags: Mapping[str, str],
        timeout: timedelta,
    ) -> PoolSetResult:
        """Like EC2 Fleet over several pools: the pools are filled in the given order, each as
        far as its scripted capacity goes; each pool that refuses says why."""
        self.pool_calls.append(tuple(offers))
        instances: list[Instance] = []
        errors: list[LaunchError] = []
        for offer in offers:
            left = count - len(instances)
            if left <= 0:
                break
            result = self.launch(offer, left, max_price=max_price, tags=tags, timeout=timedelta(0))
            instances.extend(result.instances)
            if result.error is not None:
                errors.append(result.error)
        return PoolSetResult(instances=tuple(instances), errors=tuple(errors))

    def terminate(self, ids: Sequence[str]) -> None:
        for instance_id in ids:
            self.running.pop(instance_id, None)

    @staticmethod
    def _error(offer: Offer, kind: LaunchFailure) -> LaunchError:
        return LaunchError(
            f"{offer.capacity_type} in {offer.pool}: {kind} (scripted)",
            kind=kind,
            pool=offer.pool,
            capacity_type=offer.capacity_type,
            code=kind.value,
        )
