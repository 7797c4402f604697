"""An offer book: offers as columns, built once and decided on many times.

Policies (:mod:`spotlake.compute.policy`) are vectorised over these columns, so ranking ten thousand
offers costs a few numpy operations instead of ten thousand Python calls. Build a book once per
offer set (``OfferBook.of(offers)``) and pass it to every decision on those offers.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

import attrs
import numpy as np
import numpy.typing as npt

from spotlake.clock import ensure_utc
from spotlake.compute.values import Offer, Unit

__all__ = ["OfferBook"]

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
ObjArray = npt.NDArray[np.object_]


def _floats(values: Iterable[float | None]) -> FloatArray:
    return np.fromiter((np.nan if v is None else float(v) for v in values), dtype=np.float64)


def _objects(values: Iterable[object]) -> ObjArray:
    out: ObjArray = np.array(list(values), dtype=object)
    return out


@attrs.frozen(eq=False)
class OfferBook:
    """The offers and their columns (row ``i`` of every column is ``offers[i]``)."""

    offers: tuple[Offer, ...]
    price: FloatArray
    vcpus: FloatArray
    memory: FloatArray
    gpus: FloatArray
    spot: BoolArray
    #: Placement score as a fraction of its scale (NaN: unknown).
    score: FloatArray
    #: Interruption-frequency score, 3.0 (< 5 %) .. 1.0 (> 20 %) (NaN: unknown).
    eviction: FloatArray
    #: When each offer's data was observed, as seconds since the epoch (NaN: undated catalog).
    observed: FloatArray
    cloud: ObjArray
    region: ObjArray
    zone: ObjArray
    instance_type: ObjArray
    family: ObjArray
    #: ``str(offer.pool)``: the key of the pool, for health and tie-breaking.
    pool: ObjArray
    #: Each offer's place in the sorted pool names, then capacity type: the final tie-break,
    #: so an order never depends on the input's order or the process.
    identity: npt.NDArray[np.int64]

    @classmethod
    def of(cls, offers: Sequence[Offer] | Iterable[Offer]) -> OfferBook:
        items = tuple(offers)
        pool = _objects(str(o.pool) for o in items)
        names = [f"{p}|{o.capacity_type.value}" for p, o in zip(pool, items, strict=True)]
        identity = np.empty(len(items), dtype=np.int64)
        identity[np.argsort(np.array(names, dtype=str), kind="stable")] = np.arange(len(items))
        return cls(
            offers=items,
            price=_floats(o.price for o in items),
            vcpus=_floats(o.vcpus for o in items),
            memory=_floats(o.memory_gib for o in items),
            gpus=_floats(o.gpus for o in items),
            spot=np.fromiter((o.spot for o in items), dtype=bool, count=len(items)),
            score=_floats(None if o.score is None else o.score.normalized for o in items),
            eviction=_floats(o.eviction_score for o in items),
            observed=_floats(None if o.observed_at is None else o.observed_at.timestamp() for o in items),
            cloud=_objects(o.pool.cloud.value for o in items),
            region=_objects(o.pool.region for o in items),
            zone=_objects(o.pool.zone for o in items),
            instance_type=_objects(o.pool.instance_type for o in items),
            family=_objects(o.family for o in items),
            pool=pool,
            identity=identity,
        )

    def __len__(self) -> int:
        return len(self.offers)

    def weight(self, unit: Unit) -> FloatArray:
        """What one instance of each offer covers of a request counted in ``unit``."""
        if unit is Unit.VCPUS:
            return self.vcpus
        if unit is Unit.MEMORY:
            return self.memory
        return np.ones(len(self), dtype=np.float64)

    def age_seconds(self, now: datetime) -> FloatArray:
        """How old each offer's data is at ``now`` (NaN: undated)."""
        result: FloatArray = ensure_utc(now).timestamp() - self.observed
        return result
