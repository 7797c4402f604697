"""Filling a share of a request with whole instances from ranked pools.

One algorithm for the plan (:func:`spotlake.compute.decide.decide`) and for carrying it out
(:class:`spotlake.compute.allocator.Allocator`), so what a dry run shows is what a launch tries:

* spot never goes over its share: a pool gets ``floor(share / weight)`` instances; what no spot
  instance fits exactly is left over (the caller moves it to on-demand);
* on-demand covers its share: ``ceil(share / weight)``, so its last instance may overshoot;
* a pool's share is capped by ``cap_units`` (spreading across pools) and ``max_count``
  (instances per pool), but a spot instance that fits what is left is never refused for the cap;
* with ``probe`` the proposals are single instances until one is launched (a half-open
  breaker's probe: a proposal the caller skips, e.g. a pool blocked meanwhile, is no probe).

The caller reports what each proposal really got with :meth:`Fill.took`; a failed launch took
nothing and the walk goes on to the next pool.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator

import attrs
import numpy as np
import numpy.typing as npt

__all__ = ["EPS", "Fill", "Proposal", "whole_instances"]

#: Tolerance when dividing units by an instance's weight (memory sizes are not whole numbers).
EPS = 1e-9


def whole_instances(
    units: float, weight: float, *, spot: bool, cap_units: float = math.inf, max_count: int | None = None
) -> int:
    """Instances of one pool for ``units`` of a request (see the module docstring)."""
    if weight <= 0 or units <= EPS:
        return 0
    share = min(units, cap_units)
    count = math.floor(share / weight + EPS) if spot else max(1, math.ceil(share / weight - EPS))
    if count == 0 and spot and units >= weight - EPS:
        count = 1  # the cap is below one instance, but one still fits what is left
    return count if max_count is None else min(count, max_count)


@attrs.frozen
class Proposal:
    """Launch ``count`` instances of the offer at book index ``index`` (``rank`` among the
    candidates, from 1); each covers ``weight`` units."""

    rank: int
    index: int
    count: int
    weight: float
    probe: bool


class Fill:
    """The walk over one capacity type's ranked candidates (see the module docstring)."""

    def __init__(
        self,
        order: npt.NDArray[np.int64],
        weight: npt.NDArray[np.float64],
        units: float,
        *,
        spot: bool,
        cap_units: float = math.inf,
        max_count: int | None = None,
        probe: bool = False,
    ) -> None:
        self.left = units
        self._candidates: Iterator[tuple[int, int]] = enumerate(order.tolist(), start=1)
        self._weight = weight
        self._spot = spot
        self._cap = cap_units
        self._max_count = max_count
        self._probe = probe
        self._skip: set[int] = set()

    def skip(self, indices: Iterable[int]) -> None:
        """Leave these candidates out of later proposals (a multi-pool launch already used them)."""
        self._skip.update(indices)

    def next(self) -> Proposal | None:
        """The next pool to launch in and how many, or ``None`` when the share is covered or
        the candidates are used up."""
        if self.left <= EPS:
            return None
        for rank, index in self._candidates:
            if index in self._skip:
                continue
            weight = float(self._weight[index])
            count = whole_instances(
                self.left,
                weight,
                spot=self._spot,
                cap_units=self._cap,
                max_count=1 if self._probe else self._max_count,
            )
            if count:
                return Proposal(rank=rank, index=index, count=count, weight=weight, probe=self._probe)
        return None

    def took(self, units: float) -> None:
        """What the last proposal really got, in units (it was launched: a probe is done)."""
        self.left -= units
        self._probe = False

    @property
    def remaining(self) -> float:
        return max(self.left, 0.0)
