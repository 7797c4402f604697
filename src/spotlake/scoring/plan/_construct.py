"""Constructions: complete covers of a support set, built fast, for the local improvement to refine.

Each construction works on the index form (:mod:`spotlake.scoring.plan._bits`: sizes are items,
regions are columns) and returns every call it needs. :func:`greedy_construction` grows greedy
rectangles (optionally after planning whole groups of identical region sets exactly, see
:func:`fill_near_identical`); :func:`chunk_construction` cuts identical region sets into chunks and
chunks the leftovers by similarity; :func:`transpose_masks` lets both run region-first.
:mod:`spotlake.scoring.plan._cover` decides which to build and keeps the best. Ties are broken by
index everywhere, so the output only depends on the input's order (docs/planner.md, step 1).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, cast

import numpy as np
import numpy.typing as npt

from spotlake.scoring.plan._bits import Call, bits, bool_rows, ceil_div

__all__ = ["chunk_construction", "fill_near_identical", "greedy_construction", "transpose_masks"]

#: Alternation rounds when growing one greedy rectangle; it settles in 2-3 on every world measured.
_GREEDY_ROUNDS: Final = 4

#: Near-identical region sets (see :func:`fill_near_identical`): at most this many regions apart,
#: or this share of the wider set. 5 / 10 % groups the emulator's families (holes of ~5 % per size)
#: without merging unrelated ones. With groups' remainder columns left to the greedy, 5 gave 1-9
#: fewer calls than 2 on each of 8 family worlds (seeds 0-5 at 60 x 800, 60 x 1000, 40 x 500); rel
#: 15 % and 5 % gave more calls on every family world.
_FILL_ABS: Final = 5
_FILL_REL: Final = 0.1


def chunk_construction(masks: Sequence[int], n_cols: int, per_call: int, per_block: int) -> list[Call]:
    """Cut items into chunks of ``per_call`` and each chunk's column union into blocks of ``per_block``.

    Items with identical masks are chunked together first (no waste at all). The leftovers (fewer
    than ``per_call`` per mask) are chunked greedily: seed with the widest leftover, then add the
    item that adds the fewest blocks, then the fewest new columns, preferring wide items.
    """
    groups: dict[int, list[int]] = {}
    for i, m in enumerate(masks):
        if m:
            groups.setdefault(m, []).append(i)
    chunks: list[list[int]] = []
    pool: list[int] = []
    for m in sorted(groups, key=lambda m: (-m.bit_count(), m)):
        items = groups[m]
        full = len(items) - len(items) % per_call
        chunks.extend(items[k : k + per_call] for k in range(0, full, per_call))
        pool.extend(items[full:])
    if pool:
        chunks.extend(_chunk_leftovers(masks, pool, n_cols, per_call, per_block))
    calls: list[Call] = []
    for chunk in chunks:
        union = 0
        for i in chunk:
            union |= masks[i]
        cols = bits(union)
        for k in range(0, len(cols), per_block):
            block = cols[k : k + per_block]
            bmask = sum(1 << c for c in block)
            members = tuple(i for i in chunk if masks[i] & bmask)
            calls.append((members, tuple(block)))
    return calls


def _chunk_leftovers(
    masks: Sequence[int], pool: list[int], n_cols: int, per_call: int, per_block: int
) -> list[list[int]]:
    order = sorted(pool, key=lambda i: (-masks[i].bit_count(), masks[i], i))
    rows = bool_rows([masks[i] for i in order], n_cols)
    widths = rows.sum(axis=1)
    alive = np.ones(len(order), dtype=np.bool_)
    rank = np.arange(len(order))
    chunks: list[list[int]] = []
    for seed in range(len(order)):
        if not alive[seed]:
            continue
        alive[seed] = False
        chunk = [order[seed]]
        union = rows[seed].copy()
        size = int(widths[seed])
        while len(chunk) < per_call:
            cand = np.flatnonzero(alive)
            if cand.size == 0:
                break
            new_sizes = (rows[cand] | union).sum(axis=1)
            extra_blocks = -(-new_sizes // per_block) - ceil_div(size, per_block)
            growth = new_sizes - size
            # Adding an item that needs as many new blocks as it would need on its own saves nothing
            # and spoils the chunk for better partners: stop instead.
            own_blocks = -(-widths[cand] // per_block)
            ok = extra_blocks < own_blocks
            if not ok.any():
                break
            cand, extra_blocks, growth = cand[ok], extra_blocks[ok], growth[ok]
            pick = np.lexsort((rank[cand], growth, extra_blocks))[0]
            best = int(cand[pick])
            alive[best] = False
            chunk.append(order[best])
            union |= rows[best]
            size = int(union.sum())
        chunks.append(chunk)
    return chunks


def fill_near_identical(masks: Sequence[int]) -> list[int]:
    """Each item's mask widened to the union of its group of near-identical masks.

    Azure rolls sizes out by family, but a family's sizes each miss a few different regions; with
    different holes, sizes of one family cannot share calls on whole blocks of 8 regions. Covering the
    family's union instead (the holes become wasted cells, trimmed later where possible) lets them.
    Items join, in order of decreasing width, the group whose union differs from their mask in the
    fewest columns, if at most ``max(_FILL_ABS, _FILL_REL * width)``; else they start a group.
    """
    order = sorted(range(len(masks)), key=lambda i: (-masks[i].bit_count(), masks[i], i))
    n_cols = max((m.bit_length() for m in masks), default=0)
    rows = bool_rows(masks, n_cols)
    unions = np.zeros_like(rows)  # group g's union in row g
    union_width = np.zeros(len(masks), dtype=np.int64)
    group_of = np.zeros(len(masks), dtype=np.int64)
    groups = 0
    for i in order:
        width = int(rows[i].sum())
        diff = (unions[:groups] ^ rows[i]).sum(axis=1)
        limit = np.maximum(_FILL_ABS, _FILL_REL * np.maximum(width, union_width[:groups]))
        near = np.flatnonzero(diff <= limit)
        if near.size:
            g = int(near[np.argmin(diff[near])])  # fewest columns apart; the oldest group on ties
        else:
            g = groups
            groups += 1
        unions[g] |= rows[i]
        union_width[g] = int(unions[g].sum())
        group_of[i] = g
    union_masks = [sum(1 << int(c) for c in np.flatnonzero(unions[g])) for g in range(groups)]
    return [union_masks[int(group_of[i])] if masks[i] else 0 for i in range(len(masks))]


def _exact_groups(
    masks: Sequence[int], real: Sequence[int], per_call: int, per_block: int
) -> tuple[list[Call], list[int], dict[int, int]]:
    """Whole chunks of ``per_call`` items with identical masks, in whole blocks of ``per_block`` columns.

    Each chunk's columns are cut into ``len // per_block`` full blocks (calls that waste nothing on
    the widened support) and a remainder of ``len % per_block`` columns that is *not* planned here:
    it is returned, restricted to each item's ``real`` mask, for the greedy to cover together with
    other chunks' remainders and the leftover items. The remainder holds the chunk's columns fewest of
    its items really need (its holes), so after restriction it often spans fewer items. Emitting it
    as one short call per chunk instead cost 4-11 calls more on every 60 x 800 family world measured.
    Returns the calls, the chunked items, and the remainder masks (item -> columns still to cover).
    """
    groups: dict[int, list[int]] = {}
    for i, m in enumerate(masks):
        if m:
            groups.setdefault(m, []).append(i)
    calls: list[Call] = []
    covered: list[int] = []
    rest: dict[int, int] = {}
    for m in sorted(groups, key=lambda m: (-m.bit_count(), m)):
        items = groups[m]
        full = len(items) - len(items) % per_call
        for k in range(0, full, per_call):
            chunk = tuple(items[k : k + per_call])
            # Columns most of the chunk really needs first; ties by index (deterministic).
            need = {c: sum(1 for i in chunk if real[i] >> c & 1) for c in bits(m)}
            cols = sorted(need, key=lambda c: (-need[c], c))
            n_full = len(cols) - len(cols) % per_block
            calls.extend((chunk, tuple(sorted(cols[j : j + per_block]))) for j in range(0, n_full, per_block))
            tail = sum(1 << c for c in cols[n_full:])
            for i in chunk:
                if real[i] & tail:
                    rest[i] = real[i] & tail
        covered.extend(items[:full])
    return calls, covered, rest


def greedy_construction(
    support: npt.NDArray[np.bool_],
    per_call: int,
    per_block: int,
    *,
    piece_aware: bool,
    masks: Sequence[int] | None = None,
    real: Sequence[int] | None = None,
) -> list[Call]:
    """Greedy rectangles: repeatedly take the call that covers the most uncovered pairs.

    Each call starts from the item with the most uncovered columns (its widest columns first) and
    alternates "best ``per_call`` items for these columns" / "best ``per_block`` columns for these
    items" until it stops changing. With ``piece_aware`` items are ranked first by whether the call
    saves them a whole call of their own (their uncovered count drops past a multiple of
    ``per_block``), which keeps the residual in whole blocks. Given the items' ``masks``, whole
    groups of identical masks are planned in full blocks first (:func:`_exact_groups`) and the
    greedy covers the rest (leftover items, and the groups' remainder columns restricted to the
    ``real`` masks when the ``masks`` were widened), pairing up the groups' leftovers across groups.
    """
    left = support.copy()
    calls: list[Call] = []
    if masks is not None:
        calls, done, rest = _exact_groups(masks, masks if real is None else real, per_call, per_block)
        left[done] = False
        for i, tail in rest.items():
            left[i, list(bits(tail))] = True
    # The same matrix column-major: gathering whole rows is much faster than gathering columns.
    left_t = left.T.copy()  # a copy in C order (never a view of ``left``)
    remaining = left.sum(axis=1).astype(np.int64)
    item_rank = np.arange(left.shape[0])
    col_rank = np.arange(left.shape[1])

    n_items = left.shape[0]

    def top_k(key: npt.NDArray[np.int64], k: int) -> npt.NDArray[np.intp]:
        # The k smallest keys in order; keys are unique (they end in the index), so no ties.
        if key.size > k:
            part = np.argpartition(key, k)[:k]
            return part[np.argsort(key[part])]
        return np.argsort(key)

    def best_items(cols: npt.NDArray[np.intp]) -> npt.NDArray[np.intp]:
        gain = left_t[cols].sum(axis=0)
        # Most gain first (then lowest index), as one integer key per item.
        key = (per_block - gain) * n_items + item_rank
        if piece_aware:
            # ceil(rem / b) - ceil((rem - gain) / b): calls of its own this call saves the item
            # (0 or 1 since gain <= b); items it saves a call rank before all others.
            saved = -(-remaining // per_block) + (gain - remaining) // per_block
            key = key + (1 - saved) * (per_block + 1) * n_items
        top = top_k(key, per_call)
        return cast("npt.NDArray[np.intp]", top[gain[top] > 0])

    def best_cols(items: npt.NDArray[np.intp]) -> npt.NDArray[np.intp]:
        gain = left[items].sum(axis=0)
        top = top_k((per_call - gain) * left.shape[1] + col_rank, per_block)
        return cast("npt.NDArray[np.intp]", top[gain[top] > 0])

    while True:
        seed = int(np.argmax(remaining))
        if remaining[seed] == 0:
            break
        cols = np.flatnonzero(left[seed])
        if cols.size > per_block:
            width = left_t[cols].sum(axis=1)
            cols = cols[np.lexsort((cols, -width))[:per_block]]
        items = best_items(cols)
        for _ in range(_GREEDY_ROUNDS):
            new_cols = best_cols(items)
            new_items = best_items(new_cols)
            if np.array_equal(np.sort(new_cols), np.sort(cols)) and np.array_equal(
                np.sort(new_items), np.sort(items)
            ):
                break
            cols, items = new_cols, new_items
        items, cols = np.sort(items), np.sort(cols)
        calls.append((tuple(int(i) for i in items), tuple(int(c) for c in cols)))
        left[np.ix_(items, cols)] = False
        left_t[np.ix_(cols, items)] = False
        remaining[items] = left[items].sum(axis=1)
    return calls


def transpose_masks(masks: Sequence[int], n_cols: int) -> list[int]:
    out = [0] * n_cols
    for i, m in enumerate(masks):
        for c in bits(m):
            out[c] |= 1 << i
    return out
