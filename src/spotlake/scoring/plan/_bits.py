"""Index-form building blocks the solver modules share: calls as index tuples, bitmask helpers.

Internally sizes are "items" and regions are "columns": ``masks[i]`` is the bitmask of the columns
item i must be scored in. A call is (sorted item indices, sorted column indices). The region-chunk
construction runs the same code on the transposed incidence and transposes its calls back.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

__all__ = ["Call", "bits", "bool_rows", "ceil_div"]

#: A call in index form: (sorted item indices, sorted column indices).
Call = tuple[tuple[int, ...], tuple[int, ...]]


@functools.lru_cache(maxsize=1 << 16)
def bits(mask: int) -> tuple[int, ...]:
    """Indices of the set bits of ``mask``, ascending (cached: the same masks recur constantly)."""
    out: list[int] = []
    while mask:
        low = mask & -mask
        out.append(low.bit_length() - 1)
        mask ^= low
    return tuple(out)


def bool_rows(masks: Sequence[int], n_cols: int) -> npt.NDArray[np.bool_]:
    """``masks`` as a boolean matrix: row i holds the set bits of ``masks[i]`` over ``n_cols`` columns."""
    out = np.zeros((len(masks), n_cols), dtype=np.bool_)
    for i, m in enumerate(masks):
        out[i, bits(m)] = True
    return out


def ceil_div(a: int, b: int) -> int:
    """``ceil(a / b)`` in integers."""
    return -(-a // b)
