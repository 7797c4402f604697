"""Local improvement of a cover: eliminate calls whose pairs fit elsewhere, then trim waste.

Given any complete cover in index form (a construction's, or a stored plan's after repair),
:class:`Improver` eliminates calls when every pair only that call covers fits into other calls' free
slots (add a region to a call with fewer than 8 that holds the size, or the size to a call with
fewer than 5 that holds the region), then trims regions/sizes that cover nothing only they cover.
:func:`split_forbidden` first splits calls that score a forbidden cell (a pair learned invalid);
every extension afterwards respects those cells (docs/planner.md, step 2).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Final

import numpy as np
import numpy.typing as npt

from spotlake.scoring.plan._bits import Call, bits, bool_rows

__all__ = ["Improver", "split_forbidden"]

#: Elimination passes of the local improvement. The second pass still finds a few calls (the first
#: one's changes open new slack); a third finds almost nothing on every world we measured.
_ELIMINATION_PASSES: Final = 2


class Improver:
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
        calls: Sequence[Call],
        *,
        per_call: int,
        per_block: int,
        forbidden: Sequence[int],
    ) -> None:
        self.masks = masks
        self.per_call = per_call
        self.per_block = per_block
        self.forbidden = forbidden
        self.support = bool_rows(masks, n_cols)
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
            self.count[np.ix_(items, bits(cols))] += delta

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
        items, cols = self.items[cid], bits(self.cols[cid])
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
                    for c in bits(remaining):
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
                items, cols = self.items[cid], bits(self.cols[cid])
                sub = self._only_here(items, cols)
                if not sub.any():
                    self._kill(cid)
                    break
                keep_items = [items[a] for a in np.flatnonzero(sub.any(axis=1))]
                keep_cols = [cols[b] for b in np.flatnonzero(sub.any(axis=0))]
                if len(keep_items) == len(items) and len(keep_cols) == len(cols):
                    break
                self._set(cid, keep_items, sum(1 << c for c in keep_cols))

    def result(self) -> list[Call]:
        return [
            (tuple(self.items[c]), tuple(bits(self.cols[c]))) for c in range(len(self.items)) if self.alive[c]
        ]


def split_forbidden(calls: Iterable[Call], forbidden: Sequence[int]) -> list[Call]:
    """Split calls until none scores a forbidden cell: (R - {r}) x S and {r} x (S - {s})."""
    out: list[Call] = []
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
