"""The AWS spot placement score planner: which queries one full sweep sends.

EC2's ``GetSpotPlacementScores`` takes instance types, ``RegionNames``, a ``TargetCapacity`` and
``SingleAvailabilityZone=True``, and scores (1 to 10) at most the top 10 zones of the regions it
names. To score every zone of every region where a type is offered, the type's regions are grouped
into *bins* of at most :data:`MAX_ZONES` zones in total: a query naming a region scores all of that
region's zones (and only the top 10 overall), so a region is never split across queries. Since every
region has at least one zone, a query of at most 10 zones also names at most 10 regions, the API's
limit on ``RegionNames``.

One instance type per query
    Every query names exactly one instance type, as the original SpotLake does. A query naming
    several types scores a *fleet* of those types, a different quantity from any one type's score,
    which could not be split back per type. AWS advises three or more types per query and says one
    or two give scores that "will always be low"; spotlake keeps single-type queries anyway, so the
    collected time series keeps the meaning it has always had (one type's score in one zone). The
    planner benchmark (``benchmarks/bench_aws_plan.py``) measures what several types per query
    would save.

Exact packing
    Per type, the regions (items, sized by their zone counts) are packed into the fewest bins of
    capacity ``max_zones``: an exact minimum bin packing in pure Python. Sizes are small integers
    (1 to 6 zones in the real catalog) and a type is offered in at most a few dozen regions, so a
    memoised search over *count vectors* (how many regions of each size are left) is exact and
    fast: the bin holding the largest remaining region is, without loss of generality, filled
    maximally (no other remaining region fits in it), and each count vector is solved once per plan
    (types with the same sizes share the work). The search stops at the first packing that meets
    the counting bound ``max(ceil(zones / max_zones), regions of more than half a bin)``.

Stability
    AWS limits the *new* request configurations an account may send in 24 hours; a configuration
    used in the last 24 hours may be repeated freely. So the plan must not move from day to day:
    the same offerings give identical queries, and given the ``previous`` plan,
    :func:`plan_queries` keeps as many of a type's previous queries as it can while the type still
    gets the minimum number of queries. A previous query is reusable when every region it names is
    still offered for the type and their zones still fit in one query; among the reusable ones the
    largest subset is kept whose complement packs optimally into the remaining bins (the subsets
    are tried from the fewest dropped up, the emptiest queries dropped first, at most
    :data:`MAX_SUBSETS` of them per type; past that the type is repacked from scratch). The other
    regions are packed afresh. A type whose offerings did not change keeps every query.

Regions with more zones than a query scores
    A region offering a type in more than ``max_zones`` zones gets a query of its own, which scores
    its top ``max_zones`` zones only; the plan lists such (type, region) in
    :attr:`AwsSpsPlan.truncated` so the collector can report the zones it cannot score.

Determinism
    Types, regions and candidate subsets are visited in sorted order and the search uses no set or
    dict iteration order, so the plan is identical across runs and ``PYTHONHASHSEED`` values.

The module does no I/O: :func:`offerings_from_frame` builds the planner's input from an
instance-type-offerings frame (``AWS_TYPES_SCHEMA``'s size, region and zone columns).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from itertools import combinations
from typing import TYPE_CHECKING, Final

import attrs

from spotlake.errors import ConfigError, PlanError

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "MAX_SUBSETS",
    "MAX_ZONES",
    "AwsSpsPlan",
    "AwsSpsQuery",
    "offerings_from_frame",
    "plan_queries",
]

#: Zones one ``GetSpotPlacementScores`` response scores at most (``SingleAvailabilityZone=True``);
#: also the API's limit on ``RegionNames``.
MAX_ZONES: Final = 10

#: Subsets of a type's reusable previous queries tried before the type is repacked from scratch.
MAX_SUBSETS: Final = 4096

_KEY_SEPARATOR: Final = "|"
_REGION_SEPARATOR: Final = ","


def _check_name(kind: str, name: object) -> str:
    if not isinstance(name, str) or not name or name != name.strip():
        raise ConfigError(
            f"an AWS SPS {kind} must be a non-empty string without surrounding spaces: {name!r}"
        )
    if _KEY_SEPARATOR in name or _REGION_SEPARATOR in name:
        raise ConfigError(
            f"an AWS SPS {kind} cannot contain {_KEY_SEPARATOR!r} or {_REGION_SEPARATOR!r}: {name!r}"
        )
    return name


def _names(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(values)


@attrs.frozen(kw_only=True)
class AwsSpsQuery:
    """One ``GetSpotPlacementScores`` query: ``instance_type`` scored in every zone of ``regions``.

    ``regions`` is sorted and names each region once; ``zones`` is how many zones the query scores
    (the regions' zones offering the type, at most :data:`MAX_ZONES`). The target capacity is
    chosen per run, not per query: one query is sent once per capacity.
    """

    instance_type: str
    regions: tuple[str, ...] = attrs.field(converter=_names)
    zones: int

    def __attrs_post_init__(self) -> None:
        _check_name("instance type", self.instance_type)
        for region in self.regions:
            _check_name("region", region)
        if not self.regions:
            raise ConfigError(f"an AWS SPS query for {self.instance_type} names no region")
        if list(self.regions) != sorted(set(self.regions)):
            raise ConfigError(f"an AWS SPS query's regions must be sorted and distinct: {list(self.regions)}")
        if isinstance(self.zones, bool) or not isinstance(self.zones, int):
            raise ConfigError(f"an AWS SPS query's zones must be an integer: {self.zones!r}")
        if not len(self.regions) <= self.zones <= MAX_ZONES:
            raise ConfigError(
                f"an AWS SPS query of {len(self.regions)} region(s) scores between "
                f"{len(self.regions)} and {MAX_ZONES} zones, not {self.zones}"
            )

    @property
    def key(self) -> str:
        """The query's request configuration apart from the capacity, e.g. ``m5.large|eu-west-1,us-east-1``.

        Stable across runs: the collector remembers by it which account sent which configuration.
        """
        return f"{self.instance_type}{_KEY_SEPARATOR}{_REGION_SEPARATOR.join(self.regions)}"


def _order(query: AwsSpsQuery) -> tuple[str, tuple[str, ...]]:
    return query.instance_type, query.regions


def _sorted_queries(queries: Iterable[AwsSpsQuery]) -> tuple[AwsSpsQuery, ...]:
    return tuple(sorted(queries, key=_order))


def _sorted_pairs(pairs: Iterable[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((str(t), str(r)) for t, r in pairs))


@attrs.frozen(kw_only=True)
class AwsSpsPlan:
    """The queries of one full sweep (one target capacity), sorted by instance type, then regions.

    ``lower_bound`` is a count no plan can go below: per type, ``ceil(zones / max_zones)`` over the
    regions that fit in a query, plus one query per region in ``truncated`` (regions offering a
    type in more than ``max_zones`` zones, scored by a query of their own that sees only the top
    ``max_zones``). Each type's queries are an exact minimum packing, so ``len(plan)`` is the
    optimum and may exceed the bound when sizes do not pack perfectly.
    """

    queries: tuple[AwsSpsQuery, ...] = attrs.field(converter=_sorted_queries)
    lower_bound: int
    max_zones: int = MAX_ZONES
    truncated: tuple[tuple[str, str], ...] = attrs.field(default=(), converter=_sorted_pairs)

    def __attrs_post_init__(self) -> None:
        if isinstance(self.max_zones, bool) or not isinstance(self.max_zones, int):
            raise ConfigError(f"an AWS SPS plan's max_zones must be an integer: {self.max_zones!r}")
        keys = [q.key for q in self.queries]
        if len(set(keys)) != len(keys):
            raise ConfigError("an AWS SPS plan lists a query twice")
        over = [q.key for q in self.queries if q.zones > self.max_zones]
        if over:
            raise ConfigError(f"AWS SPS queries scoring more than max_zones={self.max_zones} zones: {over}")

    def __len__(self) -> int:
        return len(self.queries)

    @property
    def zones(self) -> int:
        """(instance type, zone) scores one sweep returns."""
        return sum(q.zones for q in self.queries)

    def keys(self) -> frozenset[str]:
        """Every query's :attr:`AwsSpsQuery.key`."""
        return frozenset(q.key for q in self.queries)

    def per_type(self) -> dict[str, tuple[AwsSpsQuery, ...]]:
        """The queries grouped by instance type, types in sorted order."""
        out: dict[str, list[AwsSpsQuery]] = {}
        for query in self.queries:
            out.setdefault(query.instance_type, []).append(query)
        return {itype: tuple(queries) for itype, queries in out.items()}

    def shard(self, index: int, count: int) -> tuple[int, ...]:
        """Positions of the queries shard ``index`` of ``count`` sends: every query of the instance
        types a stable hash of the type's name gives that shard.

        Not a balanced slice of the sorted list: a type stays with its shard from day to day
        whatever other types come or go, so the shard's accounts repeat the configurations they
        served the day before (free) instead of taking new ones.
        """
        if not 0 <= index < count:
            raise ConfigError(f"shard {index} of {count}: the index must be within 0..{count - 1}")
        return tuple(i for i, q in enumerate(self.queries) if _shard_of(q.instance_type, count) == index)

    def changed_since(self, previous: AwsSpsPlan | None) -> int:
        """Queries (request configurations) of this plan that ``previous`` does not have.

        These are the configurations a sweep sends that the day before did not (per target
        capacity); all of them when there is no previous plan.
        """
        before = previous.keys() if previous is not None else frozenset()
        return sum(q.key not in before for q in self.queries)


# --- exact bin packing over count vectors -------------------------------------------------------


def _shard_of(instance_type: str, count: int) -> int:
    digest = hashlib.sha256(instance_type.encode()).digest()
    return int.from_bytes(digest[:8], "big") % count


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


class _Packer:
    """Exact minimum bin packing of items sized 1..capacity, memoised over count vectors.

    A count vector ``c`` has ``c[i]`` items of size ``i + 1``. The memo maps a vector to its
    minimum number of bins and the contents (a count vector) of the bin holding its largest item.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._memo: dict[tuple[int, ...], tuple[int, tuple[int, ...]]] = {}

    def counts(self, sizes: Iterable[int]) -> tuple[int, ...]:
        out = [0] * self.capacity
        for size in sizes:
            out[size - 1] += 1
        return tuple(out)

    def bound(self, counts: Sequence[int]) -> int:
        total = sum((i + 1) * n for i, n in enumerate(counts))
        over_half = sum(n for i, n in enumerate(counts) if 2 * (i + 1) > self.capacity)
        return max(_ceil_div(total, self.capacity), over_half)

    def bins(self, counts: tuple[int, ...]) -> int:
        return self._solve(counts)[0]

    def pack(self, counts: tuple[int, ...]) -> list[tuple[int, ...]]:
        """An optimal packing: the count vector of each bin, deterministic for a given ``counts``."""
        out: list[tuple[int, ...]] = []
        left = counts
        while any(left):
            _, first = self._solve(left)
            out.append(first)
            left = tuple(a - b for a, b in zip(left, first, strict=True))
        return out

    def _solve(self, counts: tuple[int, ...]) -> tuple[int, tuple[int, ...]]:
        known = self._memo.get(counts)
        if known is not None:
            return known
        if not any(counts):
            return 0, counts
        largest = max(i for i, n in enumerate(counts) if n)
        rest = list(counts)
        rest[largest] -= 1
        bound = self.bound(counts)
        best_bins, best_bin = sum(counts) + 1, counts
        for filling in self._fillings(rest, self.capacity - (largest + 1)):
            remaining = tuple(a - b for a, b in zip(rest, filling, strict=True))
            bins = 1 + self._solve(remaining)[0]
            if bins < best_bins:
                chosen = list(filling)
                chosen[largest] += 1
                best_bins, best_bin = bins, tuple(chosen)
                if bins == bound:
                    break
        self._memo[counts] = (best_bins, best_bin)
        return best_bins, best_bin

    def _fillings(self, rest: Sequence[int], room: int) -> list[tuple[int, ...]]:
        """Every maximal way to fill ``room`` with items of ``rest`` (no other remaining item fits).

        Largest items first, more of them first: the order in which the search tries them.
        """
        out: list[tuple[int, ...]] = []
        take = [0] * len(rest)

        def walk(i: int, left: int) -> None:
            if i < 0:
                if all(take[j] == rest[j] or j + 1 > left for j in range(len(rest))):
                    out.append(tuple(take))
                return
            for k in range(min(rest[i], left // (i + 1)), -1, -1):
                take[i] = k
                walk(i - 1, left - k * (i + 1))
            take[i] = 0

        walk(min(room, len(rest)) - 1, room)
        return out


# --- planning ----------------------------------------------------------------------------------


def _validated(offerings: Mapping[str, Mapping[str, int]]) -> list[tuple[str, list[tuple[str, int]]]]:
    out: list[tuple[str, list[tuple[str, int]]]] = []
    for itype in sorted(offerings, key=lambda t: (str(t), repr(t))):
        _check_name("instance type", itype)
        regions = offerings[itype]
        items: list[tuple[str, int]] = []
        for region in sorted(regions, key=lambda r: (str(r), repr(r))):
            _check_name("region", region)
            zones = regions[region]
            if isinstance(zones, bool) or not isinstance(zones, int) or zones < 1:
                raise ConfigError(
                    f"offerings of {itype} in {region}: the number of zones must be a positive "
                    f"integer, got {zones!r} (leave a region out where the type is not offered)"
                )
            items.append((region, zones))
        out.append((itype, items))
    return out


def _reusable(previous: Sequence[AwsSpsQuery], zones: Mapping[str, int], capacity: int) -> list[AwsSpsQuery]:
    """Previous queries still valid (every region offered, their zones fit), pairwise disjoint,
    emptiest first (the first to drop), with their zone counts brought up to date."""
    out: list[AwsSpsQuery] = []
    taken: set[str] = set()
    for query in previous:
        if not all(r in zones for r in query.regions) or any(r in taken for r in query.regions):
            continue
        total = sum(zones[r] for r in query.regions)
        if total > capacity:
            continue
        taken.update(query.regions)
        out.append(attrs.evolve(query, zones=total))
    return sorted(out, key=lambda q: (q.zones, q.regions))


def _fill(
    itype: str, regions: Sequence[tuple[str, int]], bins: Sequence[tuple[int, ...]]
) -> list[AwsSpsQuery]:
    """Regions assigned to the bins of a packing: per size, regions in name order, bins in order."""
    by_size: dict[int, list[str]] = {}
    for region, size in sorted(regions, key=lambda item: (item[1], item[0])):
        by_size.setdefault(size, []).append(region)
    queries: list[AwsSpsQuery] = []
    for contents in bins:
        names: list[str] = []
        zones = 0
        for i, n in enumerate(contents):
            if n:
                names += by_size[i + 1][:n]
                del by_size[i + 1][:n]
                zones += (i + 1) * n
        queries.append(AwsSpsQuery(instance_type=itype, regions=tuple(sorted(names)), zones=zones))
    return queries


def _plan_type(
    itype: str, regions: Sequence[tuple[str, int]], previous: Sequence[AwsSpsQuery], packer: _Packer
) -> list[AwsSpsQuery]:
    """One type's queries: an optimal packing that keeps as many ``previous`` queries as it can."""
    if not regions:
        return []
    zones = dict(regions)
    best = packer.bins(packer.counts(zones.values()))
    candidates = _reusable(previous, zones, packer.capacity)
    tried = 0
    for dropped_count in range(len(candidates) + 1):
        for dropped in combinations(range(len(candidates)), dropped_count):
            tried += 1
            if tried > MAX_SUBSETS:
                return _fill(itype, regions, packer.pack(packer.counts(zones.values())))
            skip = set(dropped)
            kept = [q for i, q in enumerate(candidates) if i not in skip]
            in_kept = {r for q in kept for r in q.regions}
            rest = [(r, z) for r, z in regions if r not in in_kept]
            counts = packer.counts(z for _, z in rest)
            if len(kept) + packer.bound(counts) > best or len(kept) + packer.bins(counts) != best:
                continue
            return kept + _fill(itype, rest, packer.pack(counts))
    raise AssertionError("unreachable: dropping every previous query leaves an optimal packing")


def plan_queries(
    offerings: Mapping[str, Mapping[str, int]],
    *,
    previous: AwsSpsPlan | None = None,
    max_zones: int = MAX_ZONES,
) -> AwsSpsPlan:
    """The queries of a full sweep scoring every zone of ``offerings``, one instance type per query.

    ``offerings`` maps an instance type to ``{region: zones offering it}`` (see
    :func:`offerings_from_frame`). Each type's regions are packed exactly into the fewest queries
    of at most ``max_zones`` zones; a region with more zones gets a query of its own and is listed
    in :attr:`AwsSpsPlan.truncated`. Given the ``previous`` plan (yesterday's), every type keeps as
    many of its previous queries as an optimal plan allows (see the module's "Stability"). The
    result depends only on the arguments' contents, never on their iteration order.

    :class:`~spotlake.errors.PlanError` if ``max_zones`` is not between 1 and :data:`MAX_ZONES`;
    :class:`~spotlake.errors.ConfigError` for an empty name, a name with ``|`` or ``,`` (they
    would make query keys ambiguous) or a zone count that is not a positive integer.
    """
    if isinstance(max_zones, bool) or not isinstance(max_zones, int) or not 1 <= max_zones <= MAX_ZONES:
        raise PlanError(f"max_zones must be an integer between 1 and {MAX_ZONES}, got {max_zones!r}")
    before = previous.per_type() if previous is not None else {}
    packer = _Packer(max_zones)
    queries: list[AwsSpsQuery] = []
    truncated: list[tuple[str, str]] = []
    bound = 0
    for itype, items in _validated(offerings):
        fits = [(r, z) for r, z in items if z <= max_zones]
        for region, _ in (item for item in items if item[1] > max_zones):
            truncated.append((itype, region))
            queries.append(AwsSpsQuery(instance_type=itype, regions=(region,), zones=max_zones))
        bound += len(items) - len(fits) + _ceil_div(sum(z for _, z in fits), max_zones)
        queries += _plan_type(itype, fits, before.get(itype, ()), packer)
    return AwsSpsPlan(queries=queries, lower_bound=bound, max_zones=max_zones, truncated=truncated)


# --- input -------------------------------------------------------------------------------------


def _iter_rows(frame: pd.DataFrame) -> Iterator[tuple[object, object, object]]:
    yield from zip(frame["size"].tolist(), frame["region"].tolist(), frame["zone"].tolist(), strict=True)


def offerings_from_frame(frame: pd.DataFrame) -> dict[str, dict[str, int]]:
    """``{instance type: {region: zones offering it}}`` from an instance-type-offerings frame.

    ``frame`` has the columns ``size`` (instance type), ``region`` and ``zone`` (a zone ID, the
    same in every account), one row per (type, zone) offered, like ``AWS_TYPES_SCHEMA``; other
    columns are ignored and repeated (type, zone) rows count once. Types and regions come out
    sorted. :class:`~spotlake.errors.ConfigError` if a column is missing, a value is missing or
    empty, or a zone appears under two regions.
    """
    missing = [c for c in ("size", "region", "zone") if c not in frame.columns]
    if missing:
        raise ConfigError(
            f"an instance-type-offerings frame needs the columns size, region and zone; missing {missing}"
        )
    zone_region: dict[str, str] = {}
    seen: set[tuple[str, str]] = set()
    counts: dict[str, dict[str, int]] = {}
    for n, (size, region, zone) in enumerate(_iter_rows(frame)):
        if not (isinstance(size, str) and isinstance(region, str) and isinstance(zone, str)) or not (
            size and region and zone
        ):
            raise ConfigError(
                f"instance-type-offerings row {n}: size, region and zone must be non-empty strings, "
                f"got {size!r}, {region!r}, {zone!r}"
            )
        if zone_region.setdefault(zone, region) != region:
            raise ConfigError(
                f"instance-type-offerings row {n}: zone {zone} is listed under {zone_region[zone]} "
                f"and {region}; a zone ID belongs to one region"
            )
        if (size, zone) in seen:
            continue
        seen.add((size, zone))
        per_region = counts.setdefault(size, {})
        per_region[region] = per_region.get(region, 0) + 1
    return {size: dict(sorted(counts[size].items())) for size in sorted(counts)}
