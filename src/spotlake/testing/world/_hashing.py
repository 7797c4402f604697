"""Deterministic randomness for the world: every random value is a hash of (seed, key).

``blake2b`` over the seed and the key's parts gives a 64-bit value (:func:`h64`, or a uniform float
with :func:`uniform`); ``splitmix64`` mixing (:func:`mix`, and :func:`mix_np` bit-identically over
numpy arrays) derives independent streams from one key. Never Python's ``hash()`` (salted per
process) nor a shared RNG, so a value depends only on (seed, key).
"""

from __future__ import annotations

import hashlib
from typing import Final

import numpy as np
import numpy.typing as npt

__all__ = ["MASK64", "h64", "mix", "mix_np", "uniform", "unit53", "unit_np"]

MASK64: Final = (1 << 64) - 1
_TWO64: Final = float(1 << 64)
_GOLDEN: Final = 0x9E3779B97F4A7C15


def h64(seed: int, *parts: object) -> int:
    """A 64-bit hash of (seed, parts): stable across processes and platforms."""
    key = "\x1f".join([str(seed), *(str(p) for p in parts)]).encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little")


def uniform(seed: int, *parts: object) -> float:
    """A uniform float in [0, 1) determined by (seed, parts)."""
    return h64(seed, *parts) / _TWO64


def mix(x: int) -> int:
    """splitmix64 finaliser on a Python int (bit-identical to :func:`mix_np`)."""
    z = (x + _GOLDEN) & MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


def mix_np(x: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """splitmix64 finaliser over an array; uint64 arithmetic wraps exactly like ``& MASK64``."""
    with np.errstate(over="ignore"):
        z = x + np.uint64(_GOLDEN)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def unit_np(x: npt.NDArray[np.uint64]) -> npt.NDArray[np.float64]:
    """A uniform float in [0, 1) per element, from its top 53 bits (identical to :func:`unit53`)."""
    return (x >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def unit53(x: int) -> float:
    """A uniform float in [0, 1) from the top 53 bits of a 64-bit value (exactly representable)."""
    return (x >> 11) / float(1 << 53)
