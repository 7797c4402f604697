"""Sharded collection: ``n`` workers split one run's SPS calls; the last one to finish commits.

``run_cycle(..., shard=Shard(i, n))`` (``spotlake collect azure --shard i/n``, e.g. an AWS Batch
array job). Each worker, *without* the run lock, reads the committed state, makes the same
rotation decision and the same deterministic day plan as every other worker
(:func:`~spotlake.pipeline._start.begin`, :func:`~spotlake.pipeline._sps.day_plan`), collects the calls
of :func:`~spotlake.scoring.plan.shard_of` through only ``subscriptions[i::n]`` (disjoint quota
slots, its own ledger document ``quota.shard-i-of-n``) and stores a *part* (the SPS frame and a
:class:`PartDoc`) with :meth:`~spotlake.storage.base.SnapshotStore.put_part`. The worker that
finds all ``n`` parts finalises: under the lock it runs the ordinary cycle with
:class:`MergedParts` as the SPS source, then removes the parts. A run whose parts never all arrive
is never committed (the next run retries its count); see docs/operations.md, "Sharded collection".
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import date, datetime, timedelta
from typing import ClassVar, Final, TypeVar

import attrs
import pandas as pd

from spotlake.clock import ensure_utc
from spotlake.collect.base import CollectReport
from spotlake.collect.prices import PriceResult
from spotlake.collect.quota import LedgerState
from spotlake.collect.sps import FailedCall
from spotlake.errors import ConfigError, ConflictError, CorruptStoreError, PlanError
from spotlake.model import SPS_SCHEMA, Source, conform, empty_frame
from spotlake.pipeline._collection import price_collector
from spotlake.pipeline._run import run_id_of, run_locked
from spotlake.pipeline._sps import PriceCrawl, SpsOutcome, collect_calls, day_plan, ledger_for
from spotlake.pipeline._start import RunStart, begin
from spotlake.pipeline.options import CycleEnv
from spotlake.pipeline.report import RunReport, RunStatus, ShardProgress
from spotlake.pipeline.state import QUOTA_DOC, shard_ledger_doc
from spotlake.scoring.plan import Pair, Plan, PlanReport, shard_plan
from spotlake.serde import dump, dump_doc, load_doc
from spotlake.storage.base import PartSet, SnapshotStore

__all__ = [
    "BATCH_INDEX_ENV",
    "MergedParts",
    "PartDoc",
    "PartHead",
    "Shard",
    "finalise",
    "load_parts",
    "merge_sps_frames",
    "pending_report",
    "pending_runs",
    "plan_groups",
    "present_parts",
    "read_part_doc",
    "run_shard",
    "worker_start",
]

log = logging.getLogger(__name__)

T = TypeVar("T")
D = TypeVar("D")

#: Environment variable AWS Batch sets in each child of an array job (0-based).
BATCH_INDEX_ENV: Final = "AWS_BATCH_JOB_ARRAY_INDEX"

_SHARD_TEXT = re.compile(r"^\s*(\d+|auto)\s*/\s*(\d+)\s*$")


@attrs.frozen(kw_only=True)
class Shard:
    """Shard ``index`` (0-based, like ``AWS_BATCH_JOB_ARRAY_INDEX``) of ``count`` parallel workers."""

    index: int
    count: int

    def __attrs_post_init__(self) -> None:
        if self.count < 1:
            raise ConfigError(f"a run is split into at least 1 shard, got {self.count}")
        if not 0 <= self.index < self.count:
            raise ConfigError(
                f"shard index must be within 0..{self.count - 1} for {self.count} shards "
                f"(0-based, like {BATCH_INDEX_ENV}), got {self.index}"
            )

    @classmethod
    def parse(cls, text: str, *, environ: Mapping[str, str] | None = None) -> Shard:
        """``"i/n"`` (e.g. ``"1/3"``), or ``"auto/n"`` taking the index from ``AWS_BATCH_JOB_ARRAY_INDEX``."""
        match = _SHARD_TEXT.fullmatch(text)
        if match is None:
            raise ConfigError(f"--shard {text!r}: expected INDEX/COUNT (0-based, e.g. 0/3) or auto/COUNT")
        raw_index, count = match.group(1), int(match.group(2))
        if raw_index == "auto":
            env = os.environ if environ is None else environ
            value = env.get(BATCH_INDEX_ENV, "")
            if not value.strip().isdigit():
                raise ConfigError(
                    f"--shard {text!r}: {BATCH_INDEX_ENV} is {'not set' if not value else repr(value)}; "
                    "'auto' only works inside an AWS Batch array job (or pass the index: --shard 0/3)"
                )
            raw_index = value.strip()
        return cls(index=int(raw_index), count=count)

    @property
    def label(self) -> str:
        """``shard-1-of-3``: used in file and state document names."""
        return f"shard-{self.index}-of-{self.count}"

    @property
    def ledger_doc(self) -> str:
        """The state document holding this shard's quota ledger."""
        return shard_ledger_doc(self.label)

    def subscriptions(self, subscriptions: Sequence[str]) -> tuple[str, ...]:
        """This shard's subscriptions, ``subscriptions[index::count]``: disjoint quota slots per shard."""
        return self.members(subscriptions, what="subscriptions", given="the credentials list")

    def members(self, items: Sequence[T], *, what: str, given: str) -> tuple[T, ...]:
        """This shard's share of ``items`` (subscriptions, accounts), ``items[index::count]``:
        each shard uses its own, so shards never compete for one budget. :class:`ConfigError` when
        there are fewer than ``count`` (``given``: who listed them, for the message)."""
        if len(items) < self.count:
            raise ConfigError(
                f"{self.count} shards need at least {self.count} {what} (each shard uses its own, so "
                f"shards never compete for quota), but {given} {len(items)}; "
                f"add {what} or run fewer shards"
            )
        return tuple(items[self.index :: self.count])


@attrs.frozen(kw_only=True)
class PartHead:
    """What every shard part (Azure's :class:`PartDoc`, AWS's ``AwsPartDoc``) says of its run."""

    at: datetime
    index: int
    count: int
    #: The state version the worker read: parts of another version are never merged.
    base_version: str | None
    desired_count: int
    day: date
    #: The identity of the day's plan the worker followed (workers must agree on it).
    plan_digest: str

    def matches(self, start: RunStart, at: datetime) -> bool:
        """Collected for this run against the state ``start`` read."""
        return (
            self.at == at
            and self.base_version == start.state.version
            and self.desired_count == start.decision.desired_count
        )


H = TypeVar("H", bound=PartHead)


@attrs.frozen(kw_only=True)
class PartDoc(PartHead):
    """What one shard worker collected, besides its SPS frame (stored with the part)."""

    DOC_FORMAT: ClassVar[int] = 1

    #: The whole day's plan the worker followed (its identity is ``plan_digest``, without timing).
    plan: Plan
    shard_plan: PlanReport
    #: Index of this shard's first call in the whole plan (failures use the whole plan's numbers).
    call_offset: int
    covered_pairs: frozenset[Pair]
    failed_calls: tuple[FailedCall, ...]
    invalid_regions: frozenset[str]
    invalid_sizes: frozenset[str]
    ledger_doc: str
    ledger: LedgerState
    report: CollectReport
    written_at: datetime


def load_parts(store: SnapshotStore, at: datetime, count: int, kind: type[H]) -> list[tuple[H, pd.DataFrame]]:
    """Every part of the run at ``at`` split into ``count`` shards, for its finaliser (a part that
    vanished meanwhile is a :class:`CorruptStoreError`: another finaliser committed and removed it)."""
    parts: list[tuple[H, pd.DataFrame]] = []
    for index in range(count):
        where = f"{store.url} part {index}/{count} of {run_id_of(at)}"
        found = store.read_part(at, index=index, count=count)
        if found is None:
            raise CorruptStoreError(
                f"{where}: the part vanished while finalising (another finaliser committed and "
                "removed it?); run the shard again"
            )
        raw, frame = found
        parts.append((load_doc(raw, kind, where=where, hint="run that shard again"), frame))
    return parts


def plan_groups(docs: Sequence[PartHead], start: RunStart, at: datetime) -> list[list[int]]:
    """The shards grouped by the plan they followed, the plan most followed first (ties: the one of
    the lowest shard), after checking every part was collected against the state ``start`` read
    (:class:`ConflictError` naming the shards to run again otherwise)."""
    stale = [d for d in docs if not d.matches(start, at)]
    if stale:
        raise ConflictError(
            f"run {at.isoformat()}: the parts of shards {[d.index for d in stale]} were collected against "
            f"state {[d.base_version for d in stale]}, but the store is now at {start.state.version} (a run "
            "committed in between); run those shards again (they replace their parts and the last one "
            "finalises)"
        )
    by_plan: dict[str, list[int]] = {}
    for doc in docs:
        by_plan.setdefault(doc.plan_digest, []).append(doc.index)
    return sorted(by_plan.values(), key=lambda idx: (-len(idx), idx[0]))


def plan_digest(plan: Plan) -> str:
    """Identity of a plan's calls, support and forbidden cells (not its timing)."""
    body = {k: v for k, v in dump(plan).items() if k != "report"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def pending_runs(store: SnapshotStore) -> list[PartSet]:
    """Sharded runs with parts in ``store`` (oldest first), for ``spotlake status`` and operators.

    A run committed by its finaliser has no parts left; one listed here waits for its missing
    shards (rerun them), or is older than the last committed run and will never commit (its parts
    are removed by the next finalised run).
    """
    return store.part_sets()


def read_part_doc(store: SnapshotStore, at: datetime, shard: Shard, kind: type[D]) -> D | None:
    """The document of ``shard``'s stored part of the run at ``at`` (``None``: none, or unreadable,
    so the worker collects its part again)."""
    raw = store.part_doc(at, index=shard.index, count=shard.count)
    if raw is None:
        return None
    try:
        return load_doc(raw, kind, where=f"{store.url} part {shard.label} of {run_id_of(at)}")
    except CorruptStoreError as exc:
        log.warning("%s; collecting the part again", exc)
        return None


def present_parts(store: SnapshotStore, at: datetime, shard: Shard) -> ShardProgress:
    """Which parts of the run at ``at`` split like ``shard`` are stored, as seen by ``shard``."""
    present = next((p.present for p in store.part_sets(at) if p.count == shard.count), ())
    return ShardProgress(index=shard.index, count=shard.count, present=present)


def worker_start(
    store: SnapshotStore, at: datetime, shard: Shard, *, now: datetime, max_skew: timedelta
) -> RunStart | RunReport:
    """What a shard worker starts from, without the lock: the committed docs and version (the
    finaliser re-reads everything under the lock), or the ``skipped`` report of a committed run
    (whose leftover parts, of a finaliser that died after its commit, are removed)."""
    start = begin(store.read_state(frames=False), at, where=store.url, now=now, max_skew=max_skew)
    if isinstance(start, RunReport):
        store.remove_parts(through=at)
        return attrs.evolve(start, shard=ShardProgress(index=shard.index, count=shard.count))
    return start


def pending_report(
    start: RunStart,
    progress: ShardProgress,
    *,
    at: datetime,
    part: CollectReport,
    failed: int,
    plan: PlanReport | None = None,
) -> RunReport:
    """The report of a worker that stored its part while others are missing."""
    return RunReport(
        at=at,
        status=RunStatus.PENDING,
        desired_count=start.decision.desired_count,
        new_day=start.decision.new_day,
        state_version=start.state.version,
        plan=plan,
        collectors={part.source: part},
        failed_calls=failed,
        shard=progress,
    )


async def finalise(
    store: SnapshotStore,
    progress: ShardProgress,
    *,
    at: datetime,
    lock_timeout: float,
    run: Callable[[], Awaitable[RunReport]],
) -> RunReport:
    """Commit a run whose parts are all there: ``run`` (the ordinary cycle, its SPS merged from the
    parts) under the lock; the parts removed once the run stands."""
    with store.lock(run_id_of(at), timeout=lock_timeout):
        report = await run()
    if report.status in (RunStatus.COMMITTED, RunStatus.SKIPPED):
        store.remove_parts(through=at)
    return attrs.evolve(report, shard=attrs.evolve(progress, finalised=report.status is RunStatus.COMMITTED))


async def run_shard(at: datetime, env: CycleEnv, shard: Shard) -> RunReport:
    """Collect this shard's calls into a part (no lock); finalise the run if every part is there."""
    store = env.store
    subscriptions = shard.subscriptions(env.azure.credentials.subscriptions)
    start = worker_start(store, at, shard, now=env.clock.now(), max_skew=env.opts.max_clock_skew)
    if isinstance(start, RunReport):
        return start
    doc = read_part_doc(store, at, shard, PartDoc)
    if doc is not None and doc.matches(start, at):
        # A retried worker (crash, or exit 75 at finalisation) keeps its part: quota is scarce.
        log.info("run %s %s: part already written against this state; not collecting again", at, shard.label)
    else:
        doc = await _collect_part(at, env, shard, start, subscriptions)
    progress = present_parts(store, at, shard)
    if progress.missing:
        failed = len(doc.failed_calls)
        return pending_report(start, progress, at=at, part=doc.report, failed=failed, plan=doc.shard_plan)
    return await finalise(
        store,
        progress,
        at=at,
        lock_timeout=env.opts.lock_timeout,
        run=lambda: run_locked(at, env, lambda _start, _token: MergedParts(store, at, shard.count)),
    )


async def _collect_part(
    at: datetime, env: CycleEnv, shard: Shard, start: RunStart, subscriptions: Sequence[str]
) -> PartDoc:
    """Collect the shard's calls and store its part."""

    async def crawl() -> PriceResult:
        return await price_collector(env).acollect()

    plan = await day_plan(start, crawl, env)
    shards = shard_plan(plan, shard.count)
    offset = sum(len(p.calls) for p in shards[: shard.index])
    mine = shards[shard.index]
    stored = start.ledgers.get(shard.ledger_doc) or start.ledgers.get(QUOTA_DOC)
    ledger = ledger_for(stored, plan=plan, subscriptions=subscriptions, opts=env.opts)
    result = await collect_calls(mine.calls, start=start, ledger=ledger, env=env, token=env.token())
    doc = PartDoc(
        at=at,
        index=shard.index,
        count=shard.count,
        base_version=start.state.version,
        desired_count=start.decision.desired_count,
        day=start.day,
        plan=plan,
        plan_digest=plan_digest(plan),
        shard_plan=mine.report,
        call_offset=offset,
        covered_pairs=result.covered_pairs,
        # Call indices are the whole plan's, so failures read the same as in an unsharded run.
        failed_calls=tuple(attrs.evolve(f, index=offset + f.index) for f in result.failed_calls),
        invalid_regions=result.invalid_regions,
        invalid_sizes=result.invalid_sizes,
        ledger_doc=shard.ledger_doc,
        ledger=result.ledger.state(at),
        report=result.report,
        written_at=ensure_utc(env.clock.now()),
    )
    env.store.put_part(at, index=shard.index, count=shard.count, doc=dump_doc(doc), frame=result.frame)
    return doc


@attrs.frozen
class MergedParts:
    """The SPS source of a finaliser: every shard's part, merged and checked against the state."""

    store: SnapshotStore
    at: datetime
    count: int

    async def __call__(self, start: RunStart, prices: PriceCrawl) -> SpsOutcome:
        return merge_parts(load_parts(self.store, self.at, self.count, PartDoc), start, self.at)


def merge_parts(parts: Sequence[tuple[PartDoc, pd.DataFrame]], start: RunStart, at: datetime) -> SpsOutcome:
    """One run's SPS outcome from its shards' parts, checked against the state being committed on."""
    docs = [doc for doc, _ in parts]
    groups = plan_groups(docs, start, at)
    plan = docs[groups[0][0]].plan  # the plan most shards followed is the day's plan
    incomplete = None
    if len(groups) > 1:
        incomplete = (
            f"shards did not all follow one plan ({' / '.join(str(g) for g in groups)}: the price "
            "crawls differed, or the workers ran with different --plan-search or call limits); "
            "pairs may be missing, so the count is retried next run"
        )
        log.warning("run %s: %s", at.isoformat(), incomplete)
    failed = tuple(f for d in docs for f in d.failed_calls)
    frame = merge_sps_frames([f for _, f in parts])
    report = CollectReport.combine(
        Source.SPS,
        [(f"shard {d.index}/{len(docs)}", d.report) for d in docs],
        rows=len(frame),
        failures=(f.to_failure() for f in failed),
        notes=[incomplete] if incomplete else [],
    )
    return SpsOutcome(
        plan=plan,
        frame=frame,
        report=report,
        failed_calls=failed,
        covered_pairs=frozenset(p for d in docs for p in d.covered_pairs),
        invalid_regions=frozenset(r for d in docs for r in d.invalid_regions),
        invalid_sizes=frozenset(s for d in docs for s in d.invalid_sizes),
        ledgers={d.ledger_doc: d.ledger for d in docs},
        incomplete=incomplete,
    )


def merge_sps_frames(frames: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """One run's SPS frame (``SPS_SCHEMA``) from the frames its shards' workers collected.

    Rows are concatenated in shard order; a cell two calls both scored (covers may overlap) keeps
    its first row. :class:`~spotlake.errors.PlanError` when the frames mix desired counts.
    """
    if not frames:
        return empty_frame(SPS_SCHEMA)
    out = pd.concat([conform(f, SPS_SCHEMA, source=Source.SPS) for f in frames], ignore_index=True)
    counts = sorted(int(c) for c in out["desired_count"].unique())
    if len(counts) > 1:
        raise PlanError(f"shard frames of one run must share one desired count, got {counts}")
    out = out.drop_duplicates(subset=["size", "region", "zone"], keep="first")
    return out.sort_values(["region", "size", "zone"], na_position="first").reset_index(drop=True)
