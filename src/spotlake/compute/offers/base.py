"""What an offer source gives the allocator, and the one-method protocol every source implements.

A source is anything with ``offers() -> OfferSet``: a static catalog
(:class:`~spotlake.compute.offers.catalog.CatalogOffers`), a spotlake store
(:class:`~spotlake.compute.offers.store.StoreOffers`), an explicit list (:class:`StaticOffers`), or
a live source such as an EC2 ``DescribeSpotPriceHistory`` reader. An :class:`OfferSet` carries the
offers with where they came from, how new its newest observation is and every warning about the
data (rows skipped, stale snapshots), so nothing is dropped or used stale without a trace::

    catalog = CatalogOffers("../shared/data/aws_vms_catalog_us.csv", regions={"us-east-1"})
    azure = StoreOffers(spotlake.open_store("./spotlake-data"))
    offers = OfferSet.combine([catalog.offers(), azure.offers()])
    for warning in offers.warnings:
        log.warning(warning)
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Protocol, runtime_checkable

import attrs

from spotlake.clock import ensure_utc
from spotlake.compute.values import Offer
from spotlake.errors import ConfigError

__all__ = ["OfferSet", "OfferSource", "StaticOffers"]


def _offer_tuple(value: Iterable[Offer]) -> tuple[Offer, ...]:
    items = tuple(value)
    wrong = next((o for o in items if not isinstance(o, Offer)), None)
    if wrong is not None:
        raise ConfigError(f"an offer set holds Offer values only, got {type(wrong).__name__}: {wrong!r}")
    return items


def _unique_offers(
    _inst: object, _attr: attrs.Attribute[tuple[Offer, ...]], value: tuple[Offer, ...]
) -> None:
    # Keys of plain strings: hashing the attrs Pool values costs several times more.
    keys = [(o.pool.cloud, o.pool.region, o.pool.zone, o.pool.instance_type, o.capacity_type) for o in value]
    if len(set(keys)) == len(keys):
        return
    seen: set[tuple[str, str, str | None, str, str]] = set()
    for offer, key in zip(value, keys, strict=True):
        if key in seen:
            raise ConfigError(
                f"two {offer.capacity_type} offers for pool {offer.pool}: an offer set has at most one "
                "offer per pool and capacity type (deduplicate the input)"
            )
        seen.add(key)


def _texts(value: Iterable[str]) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else tuple(str(v) for v in value)


def _utc_or_none(value: datetime | None) -> datetime | None:
    return None if value is None else ensure_utc(value)


def newest(offers: Iterable[Offer]) -> datetime | None:
    """The newest ``observed_at`` of ``offers``; ``None`` when none of them is dated."""
    return max((o.observed_at for o in offers if o.observed_at is not None), default=None)


@attrs.frozen(kw_only=True)
class OfferSet:
    """Offers from one source (or several, :meth:`combine`), with what is known about their data.

    ``source`` names where they came from (a path, a store URL and run); ``observed_at`` is the
    newest observation among the offers (``None``: an undated catalog); ``warnings`` say what the
    source skipped, could not read or found stale, each with a count. At most one offer per
    (pool, capacity type), checked at construction.
    """

    offers: tuple[Offer, ...] = attrs.field(converter=_offer_tuple, validator=_unique_offers)
    source: str
    observed_at: datetime | None = attrs.field(default=None, converter=_utc_or_none)
    warnings: tuple[str, ...] = attrs.field(default=(), converter=_texts)

    def __len__(self) -> int:
        return len(self.offers)

    @property
    def spot(self) -> tuple[Offer, ...]:
        """The spot offers, in order."""
        return tuple(o for o in self.offers if o.spot)

    @property
    def on_demand(self) -> tuple[Offer, ...]:
        """The on-demand offers, in order."""
        return tuple(o for o in self.offers if not o.spot)

    def age(self, now: datetime) -> timedelta | None:
        """How old the newest observation is at ``now``; ``None`` for an undated set."""
        return None if self.observed_at is None else ensure_utc(now) - self.observed_at

    @classmethod
    def combine(cls, sets: Iterable[OfferSet]) -> OfferSet:
        """One set of the offers of ``sets`` (in order), their sources joined with ``" + "`` and
        every warning prefixed with its source; two sets offering one pool and capacity type is a
        :class:`ConfigError`."""
        parts = tuple(sets)
        offers = tuple(o for s in parts for o in s.offers)
        return cls(
            offers=offers,
            source=" + ".join(s.source for s in parts),
            observed_at=newest(offers),
            warnings=tuple(f"{s.source}: {w}" for s in parts for w in s.warnings),
        )


@runtime_checkable
class OfferSource(Protocol):
    """Anything that can say what capacity is on offer now.

    ``offers()`` is called once per decision (or per simulation step) and returns the current
    :class:`OfferSet`; a source reads its data on every call unless it knows the data cannot have
    changed. A live source (e.g. EC2 ``DescribeSpotPriceHistory`` plus the pricing API) dates each
    offer with its observation time and reports what it could not get in ``warnings``; it raises
    a :class:`~spotlake.errors.SpotlakeError` (not a bare exception) when it can offer nothing.
    """

    def offers(self) -> OfferSet:
        """The offers now, with their source, newest observation and warnings."""
        ...


@attrs.frozen
class StaticOffers:
    """An explicit list of offers as a source (tests, a hand-written fleet, a replayed decision).

    ``StaticOffers([offer, ...], source="my fleet")``; ``offers()`` always returns the same set.
    """

    items: tuple[Offer, ...] = attrs.field(converter=_offer_tuple, validator=_unique_offers)
    source: str = attrs.field(default="explicit offers", kw_only=True)

    def offers(self) -> OfferSet:
        return OfferSet(offers=self.items, source=self.source, observed_at=newest(self.items))
