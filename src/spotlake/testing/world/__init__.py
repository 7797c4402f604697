"""The emulator's world: a deterministic model of Azure regions, VM sizes, prices and spot capacity.

A :class:`World` is the ground truth every emulated endpoint answers from, and the oracle tests
check collectors and scoring against. It is built either from a seed (:meth:`World.generate`) or
from the shared SkyPilot catalog CSV (:meth:`World.from_catalog`).

Everything random is derived by hashing (``blake2b`` over the seed and a key, then ``splitmix64``
mixing), never Python's ``hash()`` (salted per process) nor a shared RNG, so a value depends only on
(seed, key): the same seed gives the same world in any process, in any order of questions.

The package, one idea per module:

- :mod:`~spotlake.testing.world.values`: :class:`Region`, :class:`VmSize`, :class:`Offer`;
- :mod:`~spotlake.testing.world.families`: the generated size catalogue and :func:`family_of`;
- :mod:`~spotlake.testing.world.rollout`: where a generated world sells each size, at what price;
- :mod:`~spotlake.testing.world.catalog`: the same read from the SkyPilot catalog CSV;
- :mod:`~spotlake.testing.world.capacity`: the SPS score, spot quota and eviction models;
- ``_world``: the :class:`World` itself; ``_hashing``: the deterministic randomness.
"""

from __future__ import annotations

from spotlake.testing.world._world import World
from spotlake.testing.world.capacity import EVICTION_BUCKET_NAMES, SPS_BUCKET_SECONDS, bucket_start
from spotlake.testing.world.families import family_of
from spotlake.testing.world.rollout import Layout
from spotlake.testing.world.values import PRICE_EPOCH, Offer, Region, VmSize

__all__ = [
    "EVICTION_BUCKET_NAMES",
    "PRICE_EPOCH",
    "SPS_BUCKET_SECONDS",
    "Layout",
    "Offer",
    "Region",
    "VmSize",
    "World",
    "bucket_start",
    "family_of",
]
