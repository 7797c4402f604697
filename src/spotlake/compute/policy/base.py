"""The shape of a policy: small objects with one method over one state object, composed like tenacity's.

A decision builds one :class:`Context` (the offer book, the request, the time, what the health
registry says) and hands it to every policy object:

* a :class:`Filter` returns a keep-mask over the book's offers and names its reason (``name``),
  which is what every dropped offer is told; filters combine with ``&``;
* a :class:`Ranker` returns a sort key per offer, lower first; ``a.then(b)`` ranks by ``a`` and
  breaks its ties with ``b`` (a lexicographic order such as "score at least Medium, then price").

Both work on whole columns (numpy), so ten thousand offers cost a few array operations. Writing a
new one is a few lines::

    class PreferZone(Ranker):
        def __init__(self, zone: str) -> None:
            self.zone = zone

        def __call__(self, ctx: Context) -> FloatArray:
            return (ctx.book.zone != self.zone).astype(float)   # the zone first, ties kept

    policy = cost_optimized().with_spot_ranker(PreferZone("us-east-1a").then(ByPrice()))
"""

from __future__ import annotations

import abc
from datetime import datetime

import attrs
import numpy as np
import numpy.typing as npt

from spotlake.compute.book import OfferBook
from spotlake.compute.health import Block, BreakerState
from spotlake.compute.values import CapacityRequest, CapacityType

__all__ = ["AllOf", "BoolArray", "Context", "Filter", "FloatArray", "Lexicographic", "Ranker"]

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


@attrs.frozen(kw_only=True, eq=False)
class Context:
    """What every policy object of one decision looks at."""

    book: OfferBook
    request: CapacityRequest
    now: datetime
    #: Health blocks in force now (see spotlake.compute.health).
    blocks: tuple[Block, ...] = ()
    #: Breaker state per capacity type now.
    breakers: dict[CapacityType, BreakerState] = attrs.field(factory=dict)

    @property
    def weight(self) -> FloatArray:
        """What one instance of each offer covers of the request."""
        return self.book.weight(self.request.unit)

    @property
    def price_per_unit(self) -> FloatArray:
        """Price per hour of one unit of the request (instance, vCPU or GiB) for each offer."""
        with np.errstate(divide="ignore", invalid="ignore"):
            per: FloatArray = np.where(self.weight > 0, self.book.price / self.weight, np.inf)
        return per


class Filter(abc.ABC):
    """Keeps some offers; ``name`` is the reason given to the ones it drops."""

    name: str = "filtered out"

    @abc.abstractmethod
    def __call__(self, ctx: Context) -> BoolArray:
        """``True`` for each offer to keep."""

    def reason(self, ctx: Context, dropped: BoolArray) -> str:
        """Why the dropped offers were dropped (a filter may say more than its name)."""
        return self.name

    def reasons(self, ctx: Context, dropped: BoolArray) -> list[tuple[BoolArray, str]]:
        """The dropped offers in groups with their own reason (by default one group,
        :meth:`reason`); a filter with several causes, such as health blocks, names each."""
        return [(dropped, self.reason(ctx, dropped))]

    def __and__(self, other: Filter) -> AllOf:
        return AllOf((*_parts(self), *_parts(other)))


def _parts(f: Filter) -> tuple[Filter, ...]:
    return f.filters if isinstance(f, AllOf) else (f,)


class AllOf(Filter):
    """Every filter in turn; an offer is told the reason of the first filter that drops it."""

    def __init__(self, filters: tuple[Filter, ...]) -> None:
        self.filters = filters
        self.name = " & ".join(f.name for f in filters)

    def __call__(self, ctx: Context) -> BoolArray:
        keep = np.ones(len(ctx.book), dtype=bool)
        for f in self.filters:
            keep &= f(ctx)
        return keep

    def __repr__(self) -> str:
        return f"AllOf({list(self.filters)!r})"


class Ranker(abc.ABC):
    """Orders offers: the key of each, lower first."""

    @abc.abstractmethod
    def __call__(self, ctx: Context) -> FloatArray:
        """A sort key per offer (lower is better; NaN sorts last)."""

    def then(self, other: Ranker) -> Lexicographic:
        """This order, ties broken by ``other``."""
        mine = self.rankers if isinstance(self, Lexicographic) else (self,)
        theirs = other.rankers if isinstance(other, Lexicographic) else (other,)
        return Lexicographic((*mine, *theirs))

    def order(self, ctx: Context, candidates: BoolArray) -> npt.NDArray[np.int64]:
        """Indices of the candidate offers, best first; exact ties go to the pool's name, so
        the order never depends on the input's order or the process."""
        idx = np.flatnonzero(candidates)
        keys = self._keys(ctx)
        columns = [ctx.book.identity[idx], *(_nan_last(k[idx]) for k in reversed(keys))]
        return idx[np.lexsort(columns)]

    def _keys(self, ctx: Context) -> list[FloatArray]:
        return [self(ctx)]


def _nan_last(values: FloatArray) -> FloatArray:
    out: FloatArray = np.where(np.isnan(values), np.inf, values)
    return out


class Lexicographic(Ranker):
    """Rank by the first ranker, break ties with the next, and so on."""

    def __init__(self, rankers: tuple[Ranker, ...]) -> None:
        self.rankers = rankers

    def __call__(self, ctx: Context) -> FloatArray:
        return self.rankers[0](ctx)

    def _keys(self, ctx: Context) -> list[FloatArray]:
        return [k for r in self.rankers for k in r._keys(ctx)]

    def __repr__(self) -> str:
        return " then ".join(repr(r) for r in self.rankers)
