"""Sharded AWS collection: ``n`` workers split one run's placement-score queries; the last commits.

``run_aws_cycle(..., shard=Shard(i, n))`` (``spotlake collect aws --shard i/n``, e.g. an AWS Batch
array job) works as Azure's sharded run (:mod:`spotlake.pipeline.shards`, whose :class:`Shard` and
part storage it uses). Each worker, without the tree's lock, reads the committed state, lists the
offerings and makes the same day plan as every other worker
(:func:`~spotlake.pipeline._aws_collect.plan_day`), then sends only its own queries
(:meth:`~spotlake.collect.aws.plan.AwsSpsPlan.shard`: every query of the instance types a stable
hash gives it) through only its own accounts (``accounts[i::n]``), starting from the committed
account book, and stores a part: the score frame and an :class:`AwsPartDoc`. The worker that finds
all ``n`` parts finalises: under the lock it runs the ordinary AWS cycle (prices, offerings,
Advisor, scoring, commit) with :class:`MergedAwsParts` as its placement-score source, then removes
the parts.

Why the shares are stable: EC2 charges an account only for *new* configurations. A type hashed to
a shard stays there whatever other types come or go, and the shard's accounts stay its own while
the account list and ``n`` stay the same, so each day's queries repeat on the accounts that served
them the day before, as in an unsharded run. The merged book is the union of the workers' books
(their accounts are disjoint). A run whose parts never all arrive is never committed (the next run
retries its capacity); parts collected against another state are refused, as on Azure
(docs/operations.md, "Sharded collection").
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, ClassVar

import attrs
import pandas as pd

from spotlake.clock import ensure_utc
from spotlake.collect.aws import AccountBook, AwsAccount, AwsSpsResult
from spotlake.collect.aws.sps import AccountStatus, FailedQuery
from spotlake.collect.base import CollectReport
from spotlake.model import Source
from spotlake.pipeline._aws_collect import (
    AwsSpsOutcome,
    Pair,
    list_offerings,
    plan_day,
    score_queries,
)
from spotlake.pipeline._start import RunStart
from spotlake.pipeline.report import RunReport
from spotlake.pipeline.shards import (
    PartHead,
    Shard,
    finalise,
    load_parts,
    merge_sps_frames,
    pending_report,
    plan_groups,
    present_parts,
    read_part_doc,
    worker_start,
)
from spotlake.pipeline.state import AwsDayPlan, StateDocs
from spotlake.serde import dump, dump_doc
from spotlake.storage.base import SnapshotStore

if TYPE_CHECKING:
    from spotlake.pipeline.aws import AwsCycleEnv

__all__ = ["AwsPartDoc", "MergedAwsParts", "merge_aws_parts", "run_aws_shard"]

log = logging.getLogger(__name__)


@attrs.frozen(kw_only=True)
class AwsPartDoc(PartHead):
    """What one AWS shard worker collected, besides its score frame (stored with the part)."""

    DOC_FORMAT: ClassVar[int] = 1

    #: The whole day's plan the worker followed (its identity is ``plan_digest``).
    day_plan: AwsDayPlan
    #: (region, type) pairs its successful queries covered.
    asked: frozenset[Pair]
    #: Its failed queries, numbered by their place in the whole plan.
    failed_queries: tuple[FailedQuery, ...]
    #: The book it started from plus what its accounts served.
    book: AccountBook
    truncated: tuple[str, ...]
    served_by: dict[str, str]
    accounts: dict[str, AccountStatus]
    report: CollectReport
    written_at: datetime


def aws_plan_digest(day_plan: AwsDayPlan) -> str:
    """Identity of a day plan's queries (what the workers must agree on)."""
    body = dump(day_plan.plan)
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


async def run_aws_shard(at: datetime, env: AwsCycleEnv, shard: Shard) -> RunReport:
    """Collect this shard's queries into a part (no lock); finalise the run if every part is there."""
    from spotlake.pipeline.aws import run_aws_locked  # the cycle imports this module

    store = env.store
    accounts = shard.members(env.access.accounts, what="accounts", given="AwsAccess lists")
    start = worker_start(store, at, shard, now=env.clock.now(), max_skew=env.opts.max_clock_skew)
    if isinstance(start, RunReport):
        return start
    docs = StateDocs(start.state, store.url)
    types = await list_offerings(env.access, env.clock)  # costs no account budget
    day_plan = plan_day(start, docs, types, env.opts.instance_types)
    doc = read_part_doc(store, at, shard, AwsPartDoc)
    if doc is not None and doc.matches(start, at) and doc.plan_digest == aws_plan_digest(day_plan):
        # A retried worker keeps its part: every query it sent took account budget.
        log.info(
            "AWS run %s %s: part already written against this state; not collecting again", at, shard.label
        )
    else:
        # A part being replaced spent budget too: its records join the committed book.
        book = docs.account_book()
        if doc is not None:
            book = AccountBook.merged([book, doc.book])
        doc = await _collect_part(at, env, shard, start, day_plan=day_plan, book=book, accounts=accounts)
    progress = present_parts(store, at, shard)
    if progress.missing:
        return pending_report(start, progress, at=at, part=doc.report, failed=len(doc.failed_queries))
    return await finalise(
        store,
        progress,
        at=at,
        lock_timeout=env.opts.lock_timeout,
        run=lambda: run_aws_locked(at, env, MergedAwsParts(store, at, shard.count)),
    )


async def _collect_part(
    at: datetime,
    env: AwsCycleEnv,
    shard: Shard,
    start: RunStart,
    *,
    day_plan: AwsDayPlan,
    book: AccountBook,
    accounts: Sequence[AwsAccount],
) -> AwsPartDoc:
    """Send this shard's queries of the day's plan, starting from ``book``, and store the part."""
    store = env.store
    positions = day_plan.plan.shard(shard.index, shard.count)
    queries = [day_plan.plan.queries[i] for i in positions]
    result, asked = await score_queries(
        queries,
        target_capacity=start.decision.desired_count,
        accounts=accounts,
        book=book,
        clock=env.clock,
        concurrency=env.opts.sps_concurrency,
    )
    doc = AwsPartDoc(
        at=at,
        index=shard.index,
        count=shard.count,
        base_version=start.state.version,
        desired_count=start.decision.desired_count,
        day=start.day,
        day_plan=day_plan,
        plan_digest=aws_plan_digest(day_plan),
        asked=asked,
        # Numbered in the whole plan, so failures read the same as in an unsharded run.
        failed_queries=tuple(attrs.evolve(f, index=positions[f.index]) for f in result.failed_queries),
        book=result.book,
        truncated=result.truncated,
        served_by=result.served_by,
        accounts=result.accounts,
        report=result.report,
        written_at=ensure_utc(env.clock.now()),
    )
    store.put_part(at, index=shard.index, count=shard.count, doc=dump_doc(doc), frame=result.frame)
    log.info(
        "AWS run %s %s: %d of %d queries (%d accounts), %d scored; part stored",
        *(at, shard.label, len(queries), len(day_plan.plan), len(accounts), result.report.succeeded),
    )
    return doc


@attrs.frozen
class MergedAwsParts:
    """The placement-score source of a finaliser: every shard's part, merged and checked."""

    store: SnapshotStore
    at: datetime
    count: int

    async def __call__(self, start: RunStart, day_plan: AwsDayPlan) -> AwsSpsOutcome:
        parts = load_parts(self.store, self.at, self.count, AwsPartDoc)
        # The finaliser's own part followed its own plan (a worker whose plan changed collects
        # its part again), so a finaliser asked for other types shows as a plan disagreement.
        return merge_aws_parts(parts, start, self.at)


def merge_aws_parts(
    parts: Sequence[tuple[AwsPartDoc, pd.DataFrame]],
    start: RunStart,
    at: datetime,
) -> AwsSpsOutcome:
    """One run's placement scores from its shards' parts, checked against the state committed on."""
    docs = [doc for doc, _ in parts]
    groups = plan_groups(docs, start, at)
    day_plan = docs[groups[0][0]].day_plan  # the plan most shards followed is the day's plan
    incomplete = None
    if len(groups) > 1:
        incomplete = (
            f"shards did not all follow one plan ({' / '.join(str(g) for g in groups)}: their offering "
            "listings or instance types differed); some pairs may not have been asked, so the capacity "
            "is retried next run"
        )
    if incomplete:
        log.warning("AWS run %s: %s", at.isoformat(), incomplete)
    failed = tuple(sorted((f for d in docs for f in d.failed_queries), key=lambda f: f.index))
    frame = merge_sps_frames([f for _, f in parts])
    report = CollectReport.combine(
        Source.AWS_SPS,
        [(f"shard {d.index}/{len(docs)}", d.report) for d in docs],
        rows=len(frame),
        failures=(f.to_failure() for f in failed),
        notes=[incomplete] if incomplete else [],
    )
    result = AwsSpsResult(
        frame=frame,
        report=report,
        book=AccountBook.merged(d.book for d in docs),
        failed_queries=failed,
        truncated=tuple(sorted({k for d in docs for k in d.truncated})),
        served_by={k: v for d in docs for k, v in d.served_by.items()},
        accounts={k: v for d in docs for k, v in d.accounts.items()},
    )
    asked = frozenset(p for d in docs for p in d.asked)
    return AwsSpsOutcome(day_plan=day_plan, result=result, asked=asked, incomplete=incomplete)
