"""The world's capacity models: SPS scores, spot core quota and eviction buckets.

All are pure functions of the world's seed and their keys (see
:mod:`~spotlake.testing.world._hashing`), so any process asking in any order gets the same answers.

The SPS model (:func:`score`, vectorised as :func:`score_vector`) is a pure function of (cell key,
10-minute time bucket, desired count), where a cell is (seed, region, size, zone). Each cell has a
base capacity level; time is cut into segments of 2-8 hours (a per-cell period and phase) and the
level is redrawn around its base at each segment boundary, so between consecutive 10-minute buckets
only ~2% of cells move, and most of those keep their score. Larger desired counts subtract a growing
penalty (plus a little per-count noise), so they score lower more often without being strictly
monotone. Pairs without a spot price answer :func:`unsupported_score` instead.

Eviction buckets (:func:`eviction_bucket`) are correlated with a cell's base capacity (plentiful
capacity is evicted less); the spot core quota (:func:`quota_cores`) is fixed per region.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Final

import numpy as np
import numpy.typing as npt

from spotlake.clock import ensure_utc
from spotlake.testing.world._hashing import MASK64, h64, mix, mix_np, uniform, unit53, unit_np

__all__ = [
    "EVICTION_BUCKET_NAMES",
    "SPS_BUCKET_SECONDS",
    "bucket_start",
    "cell_key",
    "eviction_bucket",
    "quota_cores",
    "score",
    "score_vector",
    "sps_bucket",
    "unsupported_score",
    "unsupported_scores",
]

#: SPS scores are constant within a 10-minute bucket (the collection cadence).
SPS_BUCKET_SECONDS: Final = 600
#: The eviction buckets Resource Graph reports, in percent.
EVICTION_BUCKET_NAMES: Final = ("0-5", "5-10", "10-15", "15-20", "20+")

# Constants that separate the independent streams derived from one cell key.
_S_PERIOD, _S_PHASE, _S_BASE, _S_LEVEL, _S_COUNT, _S_STALE = 1, 2, 3, 4, 5, 6
_SEG_MULT: Final = 0xD1B54A32D192ED03
_COUNT_MULT: Final = 0xAEF17502108EF2D9

# Score thresholds on the effective capacity level (tuned so a count-1 run sees roughly
# 45% High, 25% Medium, 30% Low among supported cells).
_HIGH, _MEDIUM = 0.5, 0.32
_PERIOD_MIN, _PERIOD_SPAN = 12, 37  # segments last 12..48 buckets (2-8 hours)


def cell_key(seed: int, region: str, size: str, zone: str | None) -> int:
    """The key of a (region, size, zone or None for regional) cell: every stream derives from it."""
    return h64(seed, "cell", region, size, zone or "")


def sps_bucket(at: datetime) -> int:
    """The number of the 10-minute SPS bucket containing ``at``."""
    return math.floor(ensure_utc(at).timestamp()) // SPS_BUCKET_SECONDS


def bucket_start(at: datetime) -> datetime:
    """Start of the 10-minute SPS bucket containing ``at``."""
    return datetime.fromtimestamp(sps_bucket(at) * SPS_BUCKET_SECONDS, tz=UTC)


def _penalty(count: int) -> float:
    return 0.085 * math.log(count)


def score(key: int, bucket: int, count: int) -> str:
    """The SPS score of a supported cell in ``bucket`` for ``count`` VMs."""
    period = _PERIOD_MIN + mix(key ^ _S_PERIOD) % _PERIOD_SPAN
    phase = mix(key ^ _S_PHASE) % period
    seg = (bucket + phase) // period
    seg_key = key ^ ((seg * _SEG_MULT) & MASK64)
    if unit53(mix(seg_key ^ _S_STALE)) < 0.01:
        return "DataNotFoundOrStale"
    base = unit53(mix(key ^ _S_BASE))
    level = 0.5 * base + 0.5 * unit53(mix(seg_key ^ _S_LEVEL))
    noise = (unit53(mix(seg_key ^ ((count * _COUNT_MULT) & MASK64) ^ _S_COUNT)) - 0.5) * 0.12
    eff = level + noise - _penalty(count)
    return "High" if eff >= _HIGH else "Medium" if eff >= _MEDIUM else "Low"


def score_vector(keys: npt.NDArray[np.uint64], bucket: int, count: int) -> npt.NDArray[np.str_]:
    """:func:`score` over an array of cell keys (bit-identical results)."""
    u64 = np.uint64
    period = u64(_PERIOD_MIN) + mix_np(keys ^ u64(_S_PERIOD)) % u64(_PERIOD_SPAN)
    phase = mix_np(keys ^ u64(_S_PHASE)) % period
    seg = (u64(bucket) + phase) // period
    with np.errstate(over="ignore"):
        seg_key = keys ^ (seg * u64(_SEG_MULT))
    stale = unit_np(mix_np(seg_key ^ u64(_S_STALE))) < 0.01
    base = unit_np(mix_np(keys ^ u64(_S_BASE)))
    level = 0.5 * base + 0.5 * unit_np(mix_np(seg_key ^ u64(_S_LEVEL)))
    count_key = u64((count * _COUNT_MULT) & MASK64)
    noise = (unit_np(mix_np(seg_key ^ count_key ^ u64(_S_COUNT))) - 0.5) * 0.12
    eff = level + noise - _penalty(count)
    scores = np.where(eff >= _HIGH, "High", np.where(eff >= _MEDIUM, "Medium", "Low"))
    return np.where(stale, "DataNotFoundOrStale", scores)


def unsupported_score(key: int) -> str:
    """The score of a pair without a spot price, from its regional cell key (80% restricted)."""
    return "RestrictedSkuNotAvailable" if unit53(mix(key ^ _S_STALE)) < 0.8 else "DataNotFoundOrStale"


def unsupported_scores(keys: npt.NDArray[np.uint64]) -> npt.NDArray[np.str_]:
    """:func:`unsupported_score` over an array of cell keys."""
    return np.where(
        unit_np(mix_np(keys ^ np.uint64(_S_STALE))) < 0.8,
        "RestrictedSkuNotAvailable",
        "DataNotFoundOrStale",
    )


def quota_cores(seed: int, region: str) -> int:
    """Spot vCPU quota of one subscription in a region (Azure's "lowPriorityCores"): a few realistic
    levels, fixed per (seed, region)."""
    levels = (100, 200, 350, 500, 1000)
    return levels[int(uniform(seed, "quota", region) * len(levels))]


def eviction_bucket(seed: int, region: str, size: str) -> str | None:
    """Resource Graph's eviction-rate bucket of a supported pair; ``None`` for the ~4% without a row."""
    if uniform(seed, "eviction-missing", region, size) < 0.04:
        return None
    base = unit53(mix(cell_key(seed, region, size, None) ^ _S_BASE))
    # Skewed towards low rates (most spot capacity is rarely evicted), heavier for scarce pairs.
    x = 5.0 * (0.5 * (1.0 - base) + 0.5 * uniform(seed, "eviction", region, size)) ** 1.6
    return EVICTION_BUCKET_NAMES[min(len(EVICTION_BUCKET_NAMES) - 1, int(x))]
