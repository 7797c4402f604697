"""Offer sources: where the allocator's offers come from.

* :class:`CatalogOffers`: a SkyPilot-format catalog CSV (real EC2 on-demand and per-zone spot prices);
* :class:`StoreOffers`: the latest merged Azure snapshot of a spotlake store;
* :class:`AwsStoreOffers`: the latest merged snapshot of a store's AWS tree;
* :class:`LiveAwsOffers`: live EC2 and Pricing calls through the AWS collectors, cached for a TTL;
* :class:`StaticOffers`: an explicit list;
* :class:`OfferSource`: the protocol a live source (e.g. EC2 spot price history) implements.

Each returns an :class:`OfferSet`: the offers, their source, the newest observation and warnings.
"""

from __future__ import annotations

from spotlake.compute.offers.aws import AwsStoreOffers, LiveAwsOffers
from spotlake.compute.offers.base import OfferSet, OfferSource, StaticOffers
from spotlake.compute.offers.catalog import CatalogOffers, ZoneKind, zone_kind
from spotlake.compute.offers.store import StoreOffers

__all__ = [
    "AwsStoreOffers",
    "CatalogOffers",
    "LiveAwsOffers",
    "OfferSet",
    "OfferSource",
    "StaticOffers",
    "StoreOffers",
    "ZoneKind",
    "zone_kind",
]
