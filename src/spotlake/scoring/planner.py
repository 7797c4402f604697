"""The SPS call planner: cover every supported (region, size) pair with as few calls as possible.

A Spot Placement Scores call scores a rectangle ``regions x sizes`` of at most 8 regions and 5 sizes,
and calls are the scarce resource (about 10 per hour per (subscription, location)). Given the
support set (every (region, size) with a Linux spot price) the planner returns a deterministic
:class:`Plan`: a tuple of :class:`~spotlake.model.SpsCall` covering every pair, plus a
:class:`PlanReport` with the lower bound (:func:`lower_bound`) and the efficiency ratio.

How it plans (see docs/planner.md for the reasoning and measured numbers):

1. Constructions, each a complete cover. *Greedy rectangles*: repeatedly take the call covering the
   most uncovered pairs, grown from the size with most uncovered regions by alternating "best 5
   sizes for these regions" / "best 8 regions for these sizes". *Widened exact groups + piece-aware
   greedy*: near-identical region sets (a family whose sizes miss a few different regions) are
   widened to their union, whole chunks of 5 identical sets are planned exactly, and a greedy that
   ranks first the sizes a call saves a whole call covers the rest. *Size chunks*: identical region
   sets in chunks of 5, leftovers chunked by similarity. *Region chunks* (and, when regions are the
   scarcer side, region-first greedy): the same on the transposed incidence.
2. Local improvement of the constructions within 3 % of the best: a call is eliminated when every
   pair only it covers fits into other calls' free slots (add a region to a call with fewer than 8
   that holds the size, or the size to a call with fewer than 5 that holds the region); then
   regions/sizes that cover nothing only they cover are trimmed (fewer wasted cells).
3. Small worlds (where one call is 10-15 % of the plan) also get seeded greedy restarts on
   relabelled copies, which stop once a cover meets the lower bound (it is then optimal).
4. The cover with the fewest calls wins (then fewest cells, then construction order); calls sorted.

Everything iterates over sorted indices, never over a set, so the output is identical across runs
and across ``PYTHONHASHSEED`` values. The planner is pure: no I/O, and time is only measured (with
``time.perf_counter``) for the report.

Also here: :func:`repair_plan` (drop values learned invalid without re-planning the day),
:func:`restrict_plan` (a plan for a subset of sizes/regions), :func:`shard_plan`/:func:`merge_plans`
(near-equal shards for parallel workers, and back), :func:`plan_summary`/:func:`format_summary` (what
the CLI prints) and :func:`load_pairs` (read a support set from a CSV).
"""

from __future__ import annotations

import csv
import functools
import math
import random
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Final, cast

import attrs
import numpy as np
import numpy.typing as npt
import pandas as pd

from spotlake.errors import ConfigError, PlanError
from spotlake.model import MAX_SPS_REGIONS, MAX_SPS_SIZES, SPS_SCHEMA, SpsCall, conform, empty_frame

__all__ = [
    "Pair",
    "Plan",
    "PlanReport",
    "format_summary",
    "load_pairs",
    "lower_bound",
    "merge_plans",
    "merge_shard_frames",
    "plan_calls",
    "plan_summary",
    "repair_plan",
    "restrict_plan",
    "shard_of",
    "shard_plan",
]

#: A (region, size) pair, e.g. ``("eastus", "Standard_D2s_v5")``.
Pair = tuple[str, str]

#: Version of :meth:`Plan.to_json`'s layout; bumped when it changes incompatibly.
PLAN_FORMAT: Final = 1

#: Elimination passes of the local improvement. The second pass still finds a few calls (the first
#: one's changes open new slack); a third finds almost nothing on every world we measured.
_ELIMINATION_PASSES: Final = 2

#: Alternation rounds when growing one greedy rectangle; it settles in 2-3 on every world measured.
_GREEDY_ROUNDS: Final = 4

#: Constructions with more calls than this factor times the best construction are not improved:
#: elimination removes 0-3 % of the calls, so they cannot catch up, and improving costs ~0.1 s each.
_IMPROVE_WITHIN: Final = 1.03

#: Near-identical region sets (see :func:`_fill_near_identical`): at most this many regions apart,
#: or this share of the wider set. 5 / 10 % groups the emulator's families (holes of ~5 % per size)
#: without merging unrelated ones. With groups' remainder columns left to the greedy, 5 gave 1-9
#: fewer calls than 2 on each of 8 family worlds (seeds 0-5 at 60 x 800, 60 x 1000, 40 x 500); rel
#: 15 % and 5 % gave more calls on every family world.
_FILL_ABS: Final = 5
_FILL_REL: Final = 0.1

#: Order search (``plan_calls(search=N)``): the share of moves that swap two sizes of one family,
#: then that gather a family into one block; the rest swap two regions (docs/planner.md, step 5).
_SWAP_IN_FAMILY: Final = 0.5
_MOVE_FAMILY: Final = 0.8

#: Below this many (size x region) cells every construction is cheap enough to always build.
_SMALL_CELLS: Final = 20_000

#: Seeded greedy restarts on small worlds: at most this many, and at most ``_RESTART_CELLS / cells``
#: (each restart costs time proportional to the cells), which keeps them within ~0.2 s.
_MAX_RESTARTS: Final = 24
_RESTART_CELLS: Final = 20_000


# --- value objects ---------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class PlanReport:
    """How good a plan is: ``calls`` against the ``lower_bound`` no plan can beat.

    ``cells`` counts every (region, size) the calls score; ``wasted_cells`` those outside the support
    set (they cost nothing extra but are minimised). ``ratio = calls / lower_bound`` (1.0 when both
    are 0). ``seconds`` is the time the planner took. ``strategy`` names the construction that won.
    """

    pairs: int
    regions: int
    sizes: int
    calls: int
    cells: int
    wasted_cells: int
    lower_bound: int
    ratio: float
    seconds: float
    max_regions: int
    max_sizes: int
    strategy: str

    def to_json(self) -> dict[str, Any]:
        return attrs.asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PlanReport:
        try:
            return cls(
                pairs=int(data["pairs"]),
                regions=int(data["regions"]),
                sizes=int(data["sizes"]),
                calls=int(data["calls"]),
                cells=int(data["cells"]),
                wasted_cells=int(data["wasted_cells"]),
                lower_bound=int(data["lower_bound"]),
                ratio=float(data["ratio"]),
                seconds=float(data["seconds"]),
                max_regions=int(data["max_regions"]),
                max_sizes=int(data["max_sizes"]),
                strategy=str(data["strategy"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"stored plan report is malformed ({exc!r}); rebuild the plan") from exc


@attrs.frozen(kw_only=True, eq=False)
class Plan:
    """A deterministic list of SPS calls covering every pair of ``support``, with its report.

    ``support`` is kept so the plan can be repaired (:func:`repair_plan`) or restricted
    (:func:`restrict_plan`) later without the original input; ``forbidden`` holds the cells learned
    invalid, which no call scores. Two plans are equal when their calls, support, forbidden cells
    and limits are equal (the timing in the report is ignored).
    """

    calls: tuple[SpsCall, ...]
    support: frozenset[Pair] = attrs.field(repr=lambda s: f"<{len(s)} pairs>")
    report: PlanReport
    forbidden: frozenset[Pair] = attrs.field(default=frozenset(), repr=lambda s: f"<{len(s)} pairs>")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Plan):
            return NotImplemented
        mine, theirs = self.report, other.report
        return (
            self.calls == other.calls
            and self.support == other.support
            and self.forbidden == other.forbidden
            and (mine.max_regions, mine.max_sizes) == (theirs.max_regions, theirs.max_sizes)
        )

    def __hash__(self) -> int:
        return hash((self.calls, len(self.support)))

    def __len__(self) -> int:
        return len(self.calls)

    def covered(self) -> frozenset[Pair]:
        """Every (region, size) cell some call scores (a superset of :attr:`support`)."""
        return frozenset(p for c in self.calls for p in c.pairs())

    def to_json(self) -> dict[str, Any]:
        """A compact JSON-able value: region and size names once, support as index lists per size."""
        regions = sorted(
            {r for r, _ in self.support | self.forbidden} | {r for c in self.calls for r in c.regions}
        )
        r_index = {r: i for i, r in enumerate(regions)}
        per_size: dict[str, list[int]] = {}
        for r, s in sorted(self.support, key=lambda p: (p[1], p[0])):
            per_size.setdefault(s, []).append(r_index[r])
        return {
            "format": PLAN_FORMAT,
            "regions": regions,
            "support": per_size,
            "forbidden": [[r_index[r], s] for r, s in sorted(self.forbidden)],
            "calls": [c.to_json() for c in self.calls],
            "report": self.report.to_json(),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Plan:
        """Read :meth:`to_json`'s output back; :class:`ConfigError` if it is not such a value."""
        if data.get("format") != PLAN_FORMAT:
            raise ConfigError(
                f"stored plan has format {data.get('format')!r}, this spotlake reads {PLAN_FORMAT}; "
                "rebuild the plan"
            )
        try:
            regions = [str(r) for r in data["regions"]]
            support = frozenset(
                (regions[int(i)], str(s)) for s, idx in dict(data["support"]).items() for i in idx
            )
            forbidden = frozenset((regions[int(i)], str(s)) for i, s in data.get("forbidden", []))
            calls = tuple(SpsCall.from_json(c) for c in data["calls"])
            report = PlanReport.from_json(data["report"])
        except (KeyError, TypeError, ValueError, IndexError, ConfigError) as exc:
            raise ConfigError(f"stored plan is malformed ({exc}); rebuild the plan") from exc
        return cls(calls=calls, support=support, report=report, forbidden=forbidden)


# --- lower bound -----------------------------------------------------------------------------


def _check_limits(max_regions: int, max_sizes: int) -> None:
    if not 1 <= max_regions <= MAX_SPS_REGIONS or not 1 <= max_sizes <= MAX_SPS_SIZES:
        raise PlanError(
            f"call limits must be 1..{MAX_SPS_REGIONS} regions and 1..{MAX_SPS_SIZES} sizes, "
            f"got {max_regions} regions and {max_sizes} sizes"
        )


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def lower_bound(
    pairs: Iterable[Pair], max_regions: int = MAX_SPS_REGIONS, max_sizes: int = MAX_SPS_SIZES
) -> int:
    """Calls no plan can do with: the largest of three counting arguments.

    - every call scores at most ``max_regions * max_sizes`` cells: ``ceil(pairs / 40)``;
    - region ``r`` with ``k_r`` sizes is in at least ``ceil(k_r / 5)`` calls, and a call holds at most
      8 regions: ``ceil(sum_r ceil(k_r / 5) / 8)``;
    - size ``s`` in ``m_s`` regions is in at least ``ceil(m_s / 8)`` calls, and a call holds at most
      5 sizes: ``ceil(sum_s ceil(m_s / 8) / 5)``.
    """
    _check_limits(max_regions, max_sizes)
    unique = set(pairs)
    if not unique:
        return 0
    per_region: dict[str, int] = {}
    per_size: dict[str, int] = {}
    for r, s in unique:
        per_region[r] = per_region.get(r, 0) + 1
        per_size[s] = per_size.get(s, 0) + 1
    by_cells = _ceil_div(len(unique), max_regions * max_sizes)
    by_regions = _ceil_div(sum(_ceil_div(k, max_sizes) for k in per_region.values()), max_regions)
    by_sizes = _ceil_div(sum(_ceil_div(m, max_regions) for m in per_size.values()), max_sizes)
    return max(by_cells, by_regions, by_sizes)


# --- the planning core (indices and bitmasks) ------------------------------------------------

# Internally sizes are "items" and regions are "columns": ``masks[i]`` is the bitmask of the columns
# item i must be scored in. A call is (sorted item indices, sorted column indices). The region-chunk
# construction runs the same code on the transposed incidence and transposes its calls back.

_Call = tuple[tuple[int, ...], tuple[int, ...]]


@functools.lru_cache(maxsize=1 << 16)
def _bits(mask: int) -> tuple[int, ...]:
    """Indices of the set bits of ``mask``, ascending (cached: the same masks recur constantly)."""
    out: list[int] = []
    while mask:
        low = mask & -mask
        out.append(low.bit_length() - 1)
        mask ^= low
    return tuple(out)


def _bool_rows(masks: Sequence[int], n_cols: int) -> npt.NDArray[np.bool_]:
    out = np.zeros((len(masks), n_cols), dtype=np.bool_)
    for i, m in enumerate(masks):
        out[i, _bits(m)] = True
    return out


def _chunk_construction(masks: Sequence[int], n_cols: int, per_call: int, per_block: int) -> list[_Call]:
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
    calls: list[_Call] = []
    for chunk in chunks:
        union = 0
        for i in chunk:
            union |= masks[i]
        cols = _bits(union)
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
    rows = _bool_rows([masks[i] for i in order], n_cols)
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
            extra_blocks = -(-new_sizes // per_block) - _ceil_div(size, per_block)
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


def _fill_near_identical(masks: Sequence[int]) -> list[int]:
    """Each item's mask widened to the union of its group of near-identical masks.

    Azure rolls sizes out by family, but a family's sizes each miss a few different regions; with
    different holes, sizes of one family cannot share calls on whole blocks of 8 regions. Covering the
    family's union instead (the holes become wasted cells, trimmed later where possible) lets them.
    Items join, in order of decreasing width, the group whose union differs from their mask in the
    fewest columns, if at most ``max(_FILL_ABS, _FILL_REL * width)``; else they start a group.
    """
    order = sorted(range(len(masks)), key=lambda i: (-masks[i].bit_count(), masks[i], i))
    n_cols = max((m.bit_length() for m in masks), default=0)
    rows = _bool_rows(masks, n_cols)
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
) -> tuple[list[_Call], list[int], dict[int, int]]:
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
    calls: list[_Call] = []
    covered: list[int] = []
    rest: dict[int, int] = {}
    for m in sorted(groups, key=lambda m: (-m.bit_count(), m)):
        items = groups[m]
        full = len(items) - len(items) % per_call
        for k in range(0, full, per_call):
            chunk = tuple(items[k : k + per_call])
            # Columns most of the chunk really needs first; ties by index (deterministic).
            need = {c: sum(1 for i in chunk if real[i] >> c & 1) for c in _bits(m)}
            cols = sorted(need, key=lambda c: (-need[c], c))
            n_full = len(cols) - len(cols) % per_block
            calls.extend((chunk, tuple(sorted(cols[j : j + per_block]))) for j in range(0, n_full, per_block))
            tail = sum(1 << c for c in cols[n_full:])
            for i in chunk:
                if real[i] & tail:
                    rest[i] = real[i] & tail
        covered.extend(items[:full])
    return calls, covered, rest


def _greedy_construction(
    support: npt.NDArray[np.bool_],
    per_call: int,
    per_block: int,
    *,
    piece_aware: bool,
    masks: Sequence[int] | None = None,
    real: Sequence[int] | None = None,
) -> list[_Call]:
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
    calls: list[_Call] = []
    if masks is not None:
        calls, done, rest = _exact_groups(masks, masks if real is None else real, per_call, per_block)
        left[done] = False
        for i, tail in rest.items():
            left[i, list(_bits(tail))] = True
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


def _transpose_masks(masks: Sequence[int], n_cols: int) -> list[int]:
    out = [0] * n_cols
    for i, m in enumerate(masks):
        for c in _bits(m):
            out[c] |= 1 << i
    return out


class _Improver:
    """Local improvement of a cover: eliminate calls whose unique pairs fit in other calls' slack.

    Mutable scratch state, private to one planning run. Items are sizes and columns are regions;
    ``forbidden[i]`` is the mask of columns item i must never be scored with (learned invalid
    pairs), which every extension respects. Column sets of calls are int bitmasks, so the inner
    loops are a few integer operations.
    """

    def __init__(
        self,
        masks: Sequence[int],
        n_cols: int,
        calls: Sequence[_Call],
        *,
        per_call: int,
        per_block: int,
        forbidden: Sequence[int],
    ) -> None:
        self.masks = masks
        self.per_call = per_call
        self.per_block = per_block
        self.forbidden = forbidden
        self.support = _bool_rows(masks, n_cols)
        self.count = np.zeros((len(masks), n_cols), dtype=np.int32)
        self.items: list[list[int]] = []
        self.cols: list[int] = []  # bitmask per call
        self.alive: list[bool] = []
        self.by_item: list[dict[int, None]] = [{} for _ in masks]
        # Calls with a free item slot: the only ones that can take an extra item.
        self.open: dict[int, None] = {}
        for items, cols in calls:
            self._add(list(items), sum(1 << c for c in cols))

    # bookkeeping ----------------------------------------------------------------------------

    def _cover(self, items: list[int], cols: int, delta: int) -> None:
        if items and cols:
            self.count[np.ix_(items, _bits(cols))] += delta

    def _add(self, items: list[int], cols: int) -> None:
        cid = len(self.items)
        self.items.append(sorted(items))
        self.cols.append(cols)
        self.alive.append(True)
        self._cover(self.items[cid], cols, 1)
        for i in items:
            self.by_item[i][cid] = None
        if len(items) < self.per_call:
            self.open[cid] = None

    def _kill(self, cid: int) -> None:
        self.alive[cid] = False
        self._cover(self.items[cid], self.cols[cid], -1)
        for i in self.items[cid]:
            del self.by_item[i][cid]
        self.open.pop(cid, None)

    def _set(self, cid: int, items: list[int], cols: int) -> None:
        """Replace call ``cid``'s items and columns (grown or trimmed)."""
        self._cover(self.items[cid], self.cols[cid], -1)
        for i in self.items[cid]:
            del self.by_item[i][cid]
        self.items[cid], self.cols[cid] = sorted(items), cols
        self._cover(self.items[cid], cols, 1)
        for i in self.items[cid]:
            self.by_item[i][cid] = None
        if len(items) < self.per_call:
            self.open[cid] = None
        else:
            self.open.pop(cid, None)

    def _only_here(self, items: Sequence[int], cols: Sequence[int]) -> npt.NDArray[np.bool_]:
        """Which cells of ``items x cols`` are support cells covered exactly once."""
        rows = np.asarray(items)
        only: npt.NDArray[np.bool_] = self.support[rows][:, cols] & (self.count[rows][:, cols] == 1)
        return only

    def _unique(self, cid: int) -> dict[int, int]:
        """Support cells only call ``cid`` covers: item -> column bitmask."""
        items, cols = self.items[cid], _bits(self.cols[cid])
        sub = self._only_here(items, cols)
        out: dict[int, int] = {}
        for a, b in zip(*np.nonzero(sub), strict=True):
            item = items[int(a)]
            out[item] = out.get(item, 0) | 1 << cols[int(b)]
        return out

    # moves ----------------------------------------------------------------------------------

    def _cols_ok(self, items: Iterable[int], cols: int) -> bool:
        return not any(self.forbidden[i] & cols for i in items)

    def _try_eliminate(self, cid: int) -> bool:
        """Re-cover call ``cid``'s unique pairs with other calls' free slots; drop it if that works."""
        need = self._unique(cid)
        if not need:
            self._kill(cid)
            return True
        # Tentative extensions: call id -> (items, column mask) after the extension.
        plan: dict[int, tuple[list[int], int]] = {}
        for item in sorted(need, key=lambda i: (-need[i].bit_count(), i)):
            remaining = need[item]
            for its, cs in plan.values():
                if item in its:
                    remaining &= ~cs
            while remaining:
                best: tuple[int, int, int] | None = None  # (-gain, kind, call)
                best_cols = 0
                # Kind 0: add the item to a call with a free size slot already holding needed regions.
                for d in (*self.open, *plan):
                    if d == cid:
                        continue
                    its, cs = plan.get(d, (self.items[d], self.cols[d]))
                    if len(its) >= self.per_call or item in its:
                        continue
                    gain = (remaining & cs).bit_count()
                    if gain and not self.forbidden[item] & cs:
                        key = (-gain, 0, d)
                        if best is None or key < best:
                            best = key
                # Kind 1: add needed regions to a call that already holds the item and has room.
                for d in self.by_item[item]:
                    if d == cid:
                        continue
                    its, cs = plan.get(d, (self.items[d], self.cols[d]))
                    room = self.per_block - cs.bit_count()
                    if room <= 0:
                        continue
                    addable = 0
                    for c in _bits(remaining):
                        if room == 0:
                            break
                        if self._cols_ok(its, 1 << c):
                            addable |= 1 << c
                            room -= 1
                    if addable:
                        key = (-addable.bit_count(), 1, d)
                        if best is None or key < best:
                            best, best_cols = key, addable
                if best is None:
                    return False
                _, kind, d = best
                its, cs = plan.get(d, (self.items[d], self.cols[d]))
                if kind == 0:
                    plan[d] = ([*its, item], cs)
                    remaining &= ~cs
                else:
                    plan[d] = (its, cs | best_cols)
                    remaining &= ~best_cols
        self._kill(cid)
        for d in sorted(plan):
            its, cs = plan[d]
            self._set(d, its, cs)
        return True

    def eliminate(self) -> None:
        for _ in range(_ELIMINATION_PASSES):
            live = [c for c in range(len(self.items)) if self.alive[c]]
            unique = {c: sum(m.bit_count() for m in self._unique(c).values()) for c in live}
            removed = 0
            for cid in sorted(live, key=lambda c: (unique[c], c)):
                if self.alive[cid] and self._try_eliminate(cid):
                    removed += 1
            if not removed:
                break

    def trim(self) -> None:
        """Drop items/columns of a call that cover no support cell only that call covers."""
        for cid in range(len(self.items)):
            while self.alive[cid]:
                items, cols = self.items[cid], _bits(self.cols[cid])
                sub = self._only_here(items, cols)
                if not sub.any():
                    self._kill(cid)
                    break
                keep_items = [items[a] for a in np.flatnonzero(sub.any(axis=1))]
                keep_cols = [cols[b] for b in np.flatnonzero(sub.any(axis=0))]
                if len(keep_items) == len(items) and len(keep_cols) == len(cols):
                    break
                self._set(cid, keep_items, sum(1 << c for c in keep_cols))

    def result(self) -> list[_Call]:
        return [
            (tuple(self.items[c]), tuple(_bits(self.cols[c])))
            for c in range(len(self.items))
            if self.alive[c]
        ]


def _split_forbidden(calls: Iterable[_Call], forbidden: Sequence[int]) -> list[_Call]:
    """Split calls until none scores a forbidden cell: (R - {r}) x S and {r} x (S - {s})."""
    out: list[_Call] = []
    todo = list(calls)
    while todo:
        items, cols = todo.pop()
        bad = next(((i, c) for i in items for c in cols if forbidden[i] >> c & 1), None)
        if bad is None:
            out.append((items, cols))
            continue
        i, c = bad
        rest_cols = tuple(x for x in cols if x != c)
        rest_items = tuple(x for x in items if x != i)
        if rest_cols:
            todo.append((items, rest_cols))
        if rest_items:
            todo.append((rest_items, (c,)))
    return out


@attrs.frozen
class _Indexed:
    regions: tuple[str, ...]
    sizes: tuple[str, ...]
    masks: tuple[int, ...]  # per size: bitmask of its regions
    forbidden: tuple[int, ...]  # per size: bitmask of regions it must never be scored with


def _index(pairs: Iterable[Pair], forbidden: Iterable[Pair]) -> _Indexed:
    support = set(pairs)
    banned = set(forbidden)
    regions = tuple(sorted({r for r, _ in support}))
    sizes = tuple(sorted({s for _, s in support}))
    r_index = {r: i for i, r in enumerate(regions)}
    s_index = {s: i for i, s in enumerate(sizes)}
    masks = [0] * len(sizes)
    for r, s in support:
        masks[s_index[s]] |= 1 << r_index[r]
    forb = [0] * len(sizes)
    for r, s in banned:
        if r in r_index and s in s_index:
            forb[s_index[s]] |= 1 << r_index[r]
    return _Indexed(regions=regions, sizes=sizes, masks=tuple(masks), forbidden=tuple(forb))


def _validate_pairs(pairs: Iterable[Pair]) -> set[Pair]:
    out: set[Pair] = set()
    for p in pairs:
        if not (isinstance(p, tuple) and len(p) == 2 and all(isinstance(x, str) and x for x in p)):
            raise PlanError(f"a support pair must be a (region, size) tuple of non-empty strings, got {p!r}")
        out.add(p)
    return out


def _solve(idx: _Indexed, max_regions: int, max_sizes: int, bound: int) -> tuple[list[_Call], str]:
    """Best cover of ``idx`` over the constructions; calls as (size indices, region indices).

    Every construction is cheap; the local improvement is not, so only constructions within
    ``_IMPROVE_WITHIN`` of the best construction are improved (always at least the best one).
    Small worlds, where one call is a large share of the plan, then get seeded restarts of the
    greedy (see :func:`_restarts`) unless the plan already meets ``bound``.
    """
    n_regions, n_sizes = len(idx.regions), len(idx.sizes)
    support = _bool_rows(idx.masks, n_regions)
    # Near-identical region sets widened to their union: covering this superset of every size's
    # regions also covers the real support, and the widened families plan as exact groups.
    filled = _fill_near_identical(idx.masks)
    widened = filled != list(idx.masks)
    wide = _bool_rows(filled, n_regions) if widened else support
    built: list[tuple[list[_Call], str]] = [
        # Plain greedy wins on unstructured worlds; exact groups + piece-aware greedy on the widened
        # support wins on family-structured ones (every measured world: docs/planner.md).
        (_greedy_construction(support, max_sizes, max_regions, piece_aware=False), "greedy"),
        (
            _greedy_construction(
                wide, max_sizes, max_regions, piece_aware=True, masks=filled, real=idx.masks
            ),
            f"{'widened+' if widened else ''}exact-groups+greedy-pieces",
        ),
        (_chunk_construction(idx.masks, n_regions, max_sizes, max_regions), "size-chunks"),
    ]
    region_masks = _transpose_masks(idx.masks, n_regions)
    by_regions = _chunk_construction(region_masks, n_sizes, max_regions, max_sizes)
    built.append(([(cols, items) for items, cols in by_regions], "region-chunks"))
    cells = n_sizes * n_regions
    if n_regions * max_sizes >= n_sizes * max_regions or cells <= _SMALL_CELLS:
        # Regions are the scarcer side (or the world is small): also grow rectangles region-first.
        flipped = _greedy_construction(support.T.copy(), max_regions, max_sizes, piece_aware=False)
        built.append(([(cols, items) for items, cols in flipped], "greedy-regions"))
    fewest = min(len(calls) for calls, _ in built)
    candidates = [(calls, name) for calls, name in built if len(calls) <= fewest * _IMPROVE_WITHIN]
    best: tuple[int, int] | None = None
    best_calls: list[_Call] = []
    best_name = ""
    for k, (built_calls, name) in enumerate((*candidates, *_restarts(support, max_sizes, max_regions))):
        if best is not None and best[0] <= bound and k >= len(candidates):
            # Optimal: no restart can beat the lower bound. The constructions all still run, as
            # one meeting the bound with fewer wasted cells may come later (the real catalog).
            break
        calls = _split_forbidden(built_calls, idx.forbidden) if any(idx.forbidden) else built_calls
        improver = _Improver(
            idx.masks, n_regions, calls, per_call=max_sizes, per_block=max_regions, forbidden=idx.forbidden
        )
        improver.eliminate()
        improver.trim()
        result = improver.result()
        key = (len(result), sum(len(a) * len(b) for a, b in result))
        if best is None or key < best:
            best, best_calls, best_name = key, result, name
    return best_calls, best_name


def _restarts(
    support: npt.NDArray[np.bool_], max_sizes: int, max_regions: int
) -> Iterator[tuple[list[_Call], str]]:
    """Greedy covers with other tie-breaks, for small worlds: sizes and regions relabelled by a
    permutation from ``numpy.random.default_rng(k)`` for k = 0, 1, ... (fixed seeds: deterministic).

    On a 10 x 25 world a single call is 10-15 % of the plan, and ties decide it; the restarts find
    the proven optimum where the plain greedy is one call above it. Generated lazily, so the caller
    stops as soon as a plan meets the lower bound. The count shrinks with the world's size so the
    whole budget stays within ~0.2 s; worlds above ``_SMALL_CELLS`` cells get none.
    """
    n_items, n_cols = support.shape
    cells = n_items * n_cols
    if cells > _SMALL_CELLS:
        return
    for k in range(min(_MAX_RESTARTS, _RESTART_CELLS // max(cells, 1))):
        rng = np.random.default_rng(k)
        item_perm, col_perm = rng.permutation(n_items), rng.permutation(n_cols)
        shuffled = np.ascontiguousarray(support[item_perm][:, col_perm])
        for piece_aware in (False, True):
            calls = _greedy_construction(shuffled, max_sizes, max_regions, piece_aware=piece_aware)
            yield (
                [
                    (
                        tuple(sorted(int(item_perm[i]) for i in items)),
                        tuple(sorted(int(col_perm[c]) for c in cols)),
                    )
                    for items, cols in calls
                ],
                f"greedy-restart-{k}",
            )


def _to_calls(idx: _Indexed, calls: Iterable[_Call]) -> tuple[SpsCall, ...]:
    named = [
        (tuple(idx.regions[c] for c in cols), tuple(idx.sizes[i] for i in items)) for items, cols in calls
    ]
    return tuple(SpsCall(regions=r, sizes=s) for r, s in sorted(named))


def _report(
    calls: Sequence[SpsCall],
    support: frozenset[Pair],
    *,
    max_regions: int,
    max_sizes: int,
    seconds: float,
    strategy: str,
    bound: int | None = None,
) -> PlanReport:
    cells = {p for c in calls for p in c.pairs()}
    lb = lower_bound(support, max_regions, max_sizes) if bound is None else bound
    n_cells = sum(c.cells for c in calls)
    return PlanReport(
        pairs=len(support),
        regions=len({r for r, _ in support}),
        sizes=len({s for _, s in support}),
        calls=len(calls),
        cells=n_cells,
        wasted_cells=n_cells - len(cells & support),
        lower_bound=lb,
        ratio=(len(calls) / lb) if lb else 1.0,
        seconds=round(seconds, 4),
        max_regions=max_regions,
        max_sizes=max_sizes,
        strategy=strategy,
    )


def _permuted(idx: _Indexed, size_order: Sequence[int], region_order: Sequence[int]) -> _Indexed:
    """``idx`` with sizes and regions renumbered: new size ``i`` is old ``size_order[i]``, etc."""
    support = _bool_rows(idx.masks, len(idx.regions))[np.asarray(size_order)][:, np.asarray(region_order)]
    banned = _bool_rows(idx.forbidden, len(idx.regions))[np.asarray(size_order)][:, np.asarray(region_order)]
    weights = [1 << j for j in range(len(region_order))]

    def masks(rows: npt.NDArray[np.bool_]) -> tuple[int, ...]:
        return tuple(sum(w for w, on in zip(weights, row.tolist(), strict=True) if on) for row in rows)

    return _Indexed(
        regions=tuple(idx.regions[j] for j in region_order),
        sizes=tuple(idx.sizes[i] for i in size_order),
        masks=masks(support),
        forbidden=masks(banned),
    )


def _family_groups(masks: Sequence[int]) -> list[int]:
    """Group label per size: sizes whose widened region sets (:func:`_fill_near_identical`) are
    equal, i.e. a family whose sizes each miss a few regions. Name order does not keep a family
    together (Azure names sort by vCPU count first: ``D16_v2, D16_v3, ...``), so it is not used."""
    labels: dict[int, int] = {}
    return [labels.setdefault(m, len(labels)) for m in _fill_near_identical(masks)]


def _order_search(
    idx: _Indexed,
    calls: list[_Call],
    *,
    max_regions: int,
    max_sizes: int,
    bound: int,
    iterations: int,
    progress: Callable[[int, int | None], None] | None = None,
) -> tuple[list[_Call], str | None]:
    """Re-plan under ``iterations`` mutated size/region orders; the fewest-call cover, and a label
    ``"<construction>+order-search(<re-plan>/<iterations>)"`` naming where it was found (``None``
    when no re-plan beat ``calls``).

    The constructions break ties by index, and on family worlds the tie order decides more than the
    local improvement can repair: freeing up to ~30 related calls of a plan never admitted a cheaper
    re-cover in our experiments, while other orders move the plan by several calls. So this is a
    hill climb over orders (a mutated order is kept when its plan is no longer than the current
    one's): swap two sizes of one family (any two sizes, for a size without family), gather one
    family's sizes into one block at a random place, or swap two regions. Seeded
    ``random.Random(0)``: deterministic for a given ``iterations``. Stops early at the lower bound.
    """
    rng = random.Random(0)
    groups = _family_groups(idx.masks)
    sizes, regions = list(range(len(idx.sizes))), list(range(len(idx.regions)))
    best, current, found = calls, len(calls), None
    for done in range(iterations):
        if progress is not None:
            progress(done, iterations)
        if len(best) <= bound:
            break
        new_sizes, new_regions = list(sizes), list(regions)
        move = rng.random()
        if move < _SWAP_IN_FAMILY:
            group = groups[rng.choice(new_sizes)]
            members = [k for k, i in enumerate(new_sizes) if groups[i] == group]
            if len(members) < 2:  # a size without family (uniform worlds): swap it with any size
                members = list(range(len(new_sizes)))
            if len(members) > 1:
                a, b = rng.sample(members, 2)
                new_sizes[a], new_sizes[b] = new_sizes[b], new_sizes[a]
        elif move < _MOVE_FAMILY:
            group = groups[rng.choice(new_sizes)]
            block = [i for i in new_sizes if groups[i] == group]
            rest = [i for i in new_sizes if groups[i] != group]
            at = rng.randrange(len(rest) + 1)
            new_sizes = rest[:at] + block + rest[at:]
        elif len(new_regions) > 1:
            a, b = rng.sample(range(len(new_regions)), 2)
            new_regions[a], new_regions[b] = new_regions[b], new_regions[a]
        if new_sizes == sizes and new_regions == regions:
            continue  # nothing moved (one size, or one family in one block): no re-plan needed
        shuffled, name = _solve(_permuted(idx, new_sizes, new_regions), max_regions, max_sizes, bound)
        if len(shuffled) <= current:
            sizes, regions, current = new_sizes, new_regions, len(shuffled)
            if len(shuffled) < len(best):
                found = f"{name}+order-search({done + 1}/{iterations})"
                best = [
                    (tuple(sorted(new_sizes[i] for i in items)), tuple(sorted(new_regions[c] for c in cols)))
                    for items, cols in shuffled
                ]
    if progress is not None:
        progress(iterations, iterations)
    return best, found


def plan_calls(
    pairs: Iterable[Pair],
    *,
    max_regions: int = MAX_SPS_REGIONS,
    max_sizes: int = MAX_SPS_SIZES,
    forbidden: Iterable[Pair] = (),
    search: int = 0,
    progress: Callable[[int, int | None], None] | None = None,
) -> Plan:
    """Plan SPS calls that cover every (region, size) of ``pairs``; deterministic.

    ``forbidden`` lists cells no call may score (pairs learned invalid: the API rejects the whole
    call); they are also removed from the support. ``search`` > 0 spends that many extra re-plans
    (each costs about one plain plan: ~0.4 s at 60 x 800) searching tie-break orders for fewer calls
    (see :func:`_order_search`); still deterministic, as the budget is a count, not a time.
    ``progress(done, total)`` is called once per re-plan of the search.
    :class:`PlanError` for limits outside 1..8 / 1..5, a negative ``search`` or malformed pairs.
    """
    _check_limits(max_regions, max_sizes)
    if isinstance(search, bool) or not isinstance(search, int) or search < 0:
        raise PlanError(f"search must be a whole number of re-plans >= 0, got {search!r}")
    started = time.perf_counter()
    banned = _validate_pairs(forbidden)
    support = frozenset(_validate_pairs(pairs) - banned)
    idx = _index(support, banned)
    bound = lower_bound(support, max_regions, max_sizes)
    calls, strategy = _solve(idx, max_regions, max_sizes, bound) if support else ([], "empty")
    if search and support and len(calls) > bound:
        calls, found = _order_search(
            idx,
            calls,
            max_regions=max_regions,
            max_sizes=max_sizes,
            bound=bound,
            iterations=search,
            progress=progress,
        )
        strategy = found or strategy
    _check_cover(idx, calls)
    sps_calls = _to_calls(idx, calls)
    seconds = time.perf_counter() - started
    report = _report(
        sps_calls,
        support,
        max_regions=max_regions,
        max_sizes=max_sizes,
        seconds=seconds,
        strategy=strategy,
        bound=bound,
    )
    return Plan(calls=sps_calls, support=support, report=report, forbidden=frozenset(banned))


# --- repair and subsets ----------------------------------------------------------------------


def repair_plan(
    plan: Plan,
    *,
    invalid_regions: Iterable[str] = (),
    invalid_sizes: Iterable[str] = (),
    invalid_pairs: Iterable[Pair] = (),
) -> Plan:
    """The plan without values learned invalid, repaired locally instead of re-planned.

    Invalid regions and sizes (rejected by the API for every call) are removed from every call and
    from the support; a call left empty disappears. An invalid pair (a size rejected in one region)
    is forbidden: every call scoring it is split in two ((regions - r) x sizes and r x (sizes - s)).
    Then the same local improvement as :func:`plan_calls` runs on the result (eliminating calls the
    removals made redundant, trimming waste), so the repaired plan never has more calls than the
    split one and keeps every remaining pair covered. Much cheaper than a new plan: no construction.
    """
    started = time.perf_counter()
    bad_regions = set(invalid_regions)
    bad_sizes = set(invalid_sizes)
    banned = _validate_pairs(invalid_pairs) | set(plan.forbidden)
    support = frozenset(
        (r, s)
        for r, s in plan.support
        if r not in bad_regions and s not in bad_sizes and (r, s) not in banned
    )
    limits = plan.report
    idx = _index(support, banned)
    r_index = {r: i for i, r in enumerate(idx.regions)}
    s_index = {s: i for i, s in enumerate(idx.sizes)}
    calls: list[_Call] = []
    for call in plan.calls:
        # Names outside the new support (invalid, or covering nothing any more) leave the call.
        items = tuple(s_index[s] for s in call.sizes if s in s_index)
        cols = tuple(r_index[r] for r in call.regions if r in r_index)
        if items and cols:
            calls.append((items, cols))
    if any(idx.forbidden):
        calls = _split_forbidden(calls, idx.forbidden)
    improver = _Improver(
        idx.masks,
        len(idx.regions),
        calls,
        per_call=limits.max_sizes,
        per_block=limits.max_regions,
        forbidden=idx.forbidden,
    )
    improver.eliminate()
    improver.trim()
    _check_cover(idx, improver.result())
    sps_calls = _to_calls(idx, improver.result())
    report = _report(
        sps_calls,
        support,
        max_regions=limits.max_regions,
        max_sizes=limits.max_sizes,
        seconds=time.perf_counter() - started,
        strategy=f"repaired {limits.strategy}",
    )
    return Plan(calls=sps_calls, support=support, report=report, forbidden=frozenset(banned))


def _check_cover(idx: _Indexed, calls: Iterable[_Call]) -> None:
    """Raise :class:`PlanError` if a support pair is left uncovered (a planner bug, never input)."""
    covered = [0] * len(idx.masks)
    for items, cols in calls:
        cmask = sum(1 << c for c in cols)
        for i in items:
            covered[i] |= cmask
    missing = [i for i, m in enumerate(idx.masks) if m & ~covered[i]]
    if missing:
        raise PlanError(
            f"internal planner error: {len(missing)} size(s) left uncovered, e.g. {idx.sizes[missing[0]]}; "
            "please report it with the support set"
        )


def restrict_plan(
    plan: Plan, *, regions: Iterable[str] | None = None, sizes: Iterable[str] | None = None
) -> Plan:
    """A fresh plan for part of ``plan``'s support: only these regions and/or sizes.

    For example the sizes a team wants scored at every desired count, planned separately from the
    day's full rotation. Forbidden cells carry over. ``None`` keeps that side whole.
    """
    keep_r = None if regions is None else set(regions)
    keep_s = None if sizes is None else set(sizes)
    subset = [
        (r, s) for r, s in plan.support if (keep_r is None or r in keep_r) and (keep_s is None or s in keep_s)
    ]
    return plan_calls(
        subset,
        max_regions=plan.report.max_regions,
        max_sizes=plan.report.max_sizes,
        forbidden=plan.forbidden,
    )


# --- shards ----------------------------------------------------------------------------------


def shard_plan(plan: Plan, shards: int) -> list[Plan]:
    """Split ``plan`` into ``shards`` consecutive parts whose call counts differ by at most one.

    Shard ``i`` holds calls ``[start_i, end_i)`` of ``plan.calls`` (in plan order), its support is
    the part of the plan's support those calls cover, and :func:`merge_plans` of the shards gives
    the plan back. With more shards than calls the last shards are empty (their worker idles).
    """
    if shards < 1:
        raise PlanError(f"a plan is split into at least 1 shard, got {shards}")
    n = len(plan.calls)
    bounds = [(k * n) // shards for k in range(shards + 1)]
    out: list[Plan] = []
    earlier: set[Pair] = set()
    for k in range(shards):
        calls = plan.calls[bounds[k] : bounds[k + 1]]
        covered = {p for c in calls for p in c.pairs()}
        # A pair two shards both score belongs to the first one: shard supports partition the plan's.
        part = frozenset((plan.support & covered) - earlier)
        earlier |= covered
        report = _report(
            calls,
            part,
            max_regions=plan.report.max_regions,
            max_sizes=plan.report.max_sizes,
            seconds=0.0,
            strategy=f"shard {k + 1}/{shards} of {plan.report.strategy}",
        )
        out.append(Plan(calls=calls, support=part, report=report, forbidden=plan.forbidden))
    return out


def shard_of(plan: Plan, index: int, shards: int) -> Plan:
    """Shard ``index`` (0-based, e.g. ``AWS_BATCH_JOB_ARRAY_INDEX``) of :func:`shard_plan`."""
    if not 0 <= index < shards:
        raise PlanError(f"shard index must be within 0..{shards - 1}, got {index}")
    return shard_plan(plan, shards)[index]


def merge_plans(plans: Sequence[Plan]) -> Plan:
    """Join shards (or any plans with the same limits) back into one plan, calls in sorted order."""
    if not plans:
        raise PlanError("merge_plans needs at least one plan")
    limits = {(p.report.max_regions, p.report.max_sizes) for p in plans}
    if len(limits) != 1:
        raise PlanError(f"cannot merge plans made with different call limits: {sorted(limits)}")
    max_regions, max_sizes = limits.pop()
    calls = tuple(sorted((c for p in plans for c in p.calls), key=lambda c: (c.regions, c.sizes)))
    support = frozenset().union(*(p.support for p in plans))
    forbidden = frozenset().union(*(p.forbidden for p in plans))
    strategies = sorted({p.report.strategy.split(" of ", 1)[-1] for p in plans})
    report = _report(
        calls,
        support,
        max_regions=max_regions,
        max_sizes=max_sizes,
        seconds=sum(p.report.seconds for p in plans),
        strategy=" + ".join(strategies),
    )
    return Plan(calls=calls, support=support, report=report, forbidden=forbidden)


def merge_shard_frames(frames: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """One run's SPS frame (``SPS_SCHEMA``) from the frames its shards' workers collected.

    Rows are concatenated in shard order; a cell two calls both scored (covers may overlap) keeps
    its first row. :class:`PlanError` when the frames mix desired counts (they are not one run).
    """
    if not frames:
        return empty_frame(SPS_SCHEMA)
    out = pd.concat([conform(f, SPS_SCHEMA, source="sps") for f in frames], ignore_index=True)
    counts = sorted(int(c) for c in out["desired_count"].unique())
    if len(counts) > 1:
        raise PlanError(f"shard frames of one run must share one desired count, got {counts}")
    out = out.drop_duplicates(subset=["size", "region", "zone"], keep="first")
    return out.sort_values(["region", "size", "zone"], na_position="first").reset_index(drop=True)


# --- summary for people ----------------------------------------------------------------------


def plan_summary(
    plan: Plan,
    *,
    quota_per_hour: int = 10,
    interval_minutes: float = 10,
    locations: int | None = None,
) -> dict[str, Any]:
    """What a plan costs in quota: the numbers the CLI prints.

    Sweeping the whole plan every ``interval_minutes`` needs ``calls * 60 / interval`` calls per
    hour. One subscription gives ``quota_per_hour`` calls per hour per URL location it routes
    through, and ``locations`` locations (default: the plan's regions, every region being a valid
    location), so ``subscriptions = ceil(calls_per_hour / (quota_per_hour * locations))``.
    """
    if quota_per_hour < 1 or interval_minutes <= 0:
        raise ConfigError(
            "quota_per_hour must be >= 1 and interval_minutes > 0, "
            f"got {quota_per_hour} and {interval_minutes}"
        )
    r = plan.report
    n_locations = r.regions if locations is None else locations
    if n_locations < 1:
        raise ConfigError(f"locations must be >= 1, got {n_locations}")
    calls_per_hour = r.calls * 60.0 / interval_minutes
    per_subscription = quota_per_hour * n_locations
    return {
        "pairs": r.pairs,
        "regions": r.regions,
        "sizes": r.sizes,
        "calls": r.calls,
        "lower_bound": r.lower_bound,
        "ratio": round(r.ratio, 4),
        "cells": r.cells,
        "wasted_cells": r.wasted_cells,
        "strategy": r.strategy,
        "plan_seconds": r.seconds,
        "max_regions": r.max_regions,
        "max_sizes": r.max_sizes,
        "interval_minutes": interval_minutes,
        "quota_per_hour": quota_per_hour,
        "locations": n_locations,
        "calls_per_hour": round(calls_per_hour, 2),
        "calls_per_hour_per_subscription": per_subscription,
        "subscriptions": math.ceil(calls_per_hour / per_subscription) if r.calls else 0,
    }


def format_summary(summary: Mapping[str, Any]) -> str:
    """:func:`plan_summary`'s dict as a few aligned lines of text."""
    lines = [
        ("support", f"{summary['pairs']} pairs ({summary['regions']} regions x {summary['sizes']} sizes)"),
        (
            "calls",
            f"{summary['calls']} (<= {summary['max_regions']} regions x {summary['max_sizes']} sizes each)",
        ),
        ("lower bound", f"{summary['lower_bound']} (ratio {summary['ratio']:.3f})"),
        ("cells", f"{summary['cells']} scored, {summary['wasted_cells']} outside the support"),
        ("strategy", f"{summary['strategy']} in {summary['plan_seconds']:.3f} s"),
        (
            "sweep",
            f"every {summary['interval_minutes']:g} min = {summary['calls_per_hour']:g} calls/hour",
        ),
        (
            "subscriptions",
            f"{summary['subscriptions']} at {summary['quota_per_hour']} calls/hour per "
            f"(subscription, location) over {summary['locations']} locations",
        ),
    ]
    width = max(len(k) for k, _ in lines)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in lines)


# --- reading support sets --------------------------------------------------------------------


def load_pairs(path: str | Path) -> frozenset[Pair]:
    """Read a support set from a CSV file.

    Two layouts are recognised by their header: ``region,size`` (one pair per row, case-insensitive
    column names, extra columns ignored) and the SkyPilot catalog (``Region``, ``InstanceType``,
    ``SpotPrice``: a pair for every row with a non-empty spot price). :class:`ConfigError` names
    the file when it cannot be read or has neither layout.
    """
    p = Path(path)
    try:
        with p.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            header = {name.strip().lower(): name for name in reader.fieldnames or ()}
            if {"region", "instancetype", "spotprice"} <= header.keys():
                region, size, spot = header["region"], header["instancetype"], header["spotprice"]
                rows = [
                    (row[region].strip(), row[size].strip())
                    for row in reader
                    if (row.get(spot) or "").strip()
                ]
            elif {"region", "size"} <= header.keys():
                region, size = header["region"], header["size"]
                rows = [(row[region].strip(), row[size].strip()) for row in reader]
            else:
                raise ConfigError(
                    f"{p}: expected columns 'region,size' or the SkyPilot catalog's "
                    f"'Region,InstanceType,SpotPrice', got {list(header.values())}"
                )
    except OSError as exc:
        raise ConfigError(f"cannot read the support set {p}: {exc.strerror or exc}") from exc
    except (csv.Error, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p} is not a readable CSV file: {exc}") from exc
    bad = next((i for i, (r, s) in enumerate(rows) if not r or not s), None)
    if bad is not None:
        raise ConfigError(f"{p}: data row {bad + 1} has an empty region or size")
    return frozenset(rows)
