"""Sharded AWS collection (spotlake.pipeline.aws_shards): N workers split one run's placement-score
queries, each through its own accounts, and the last one to finish commits the merged run.

Against the offline AWS emulator: three shards commit the same run as one unsharded worker on the
same world; each shard's queries go through its own accounts only; a missing shard leaves the run
uncommitted; a retried worker keeps its part; parts of an older state are refused; the next day's
configurations repeat on the accounts that served them; a failed query is unknown, never ceased;
the CLI's ``collect aws --shard``.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import attrs
import pandas as pd
import pytest

from aws_support import emulator_access as access
from spotlake.cli import EXIT_OK, main
from spotlake.clock import FakeClock
from spotlake.collect.aws import AwsSpsPlan, AwsSpsQuery
from spotlake.model import ChangeKind, Cloud
from spotlake.pipeline import Shard, pending_runs
from spotlake.pipeline.aws import AwsCycleOptions, run_aws_cycle
from spotlake.pipeline.aws_shards import AwsPartDoc
from spotlake.pipeline.report import RunReport, RunStatus
from spotlake.pipeline.shards import read_part_doc
from spotlake.pipeline.state import StateDocs
from spotlake.storage import ObjectStore, open_store
from spotlake.storage.base import FrameKind
from spotlake.testing.aws.catalog import NOW, AwsCatalog
from spotlake.testing.aws.emulator import AwsEmulator
from spotlake.testing.aws.sps import FaultKind, PlacementScoreFake

START = NOW.replace(minute=0)
PENDING, COMMITTED, FAILED = RunStatus.PENDING, RunStatus.COMMITTED, RunStatus.FAILED
KEEP = AwsCycleOptions(history_max_age=timedelta(hours=30))


def world(clock: FakeClock, *, accounts: int = 6, limits: dict[str, int] | None = None) -> AwsEmulator:
    catalog = AwsCatalog.generate(1, types=8)
    offerings = [(t, catalog.region_of(z), z) for t, z in catalog.offerings]
    scores = PlacementScoreFake(
        seed=0, clock=clock, offerings=offerings, few_types_cap=None, account_limits=limits or {}
    )
    return AwsEmulator(catalog, clock=clock, accounts=accounts, scores=scores)


def fresh(root: Path, *, accounts: int = 6) -> tuple[FakeClock, AwsEmulator, ObjectStore]:
    """A clock at :data:`START`, an emulated AWS with ``accounts`` accounts and an empty AWS store."""
    clock = FakeClock(START)
    return clock, world(clock, accounts=accounts), open_store(root, cloud=Cloud.AWS, clock=clock)


def shard_run(
    store: ObjectStore, emu: AwsEmulator, clock: FakeClock, at: datetime, index: int, count: int
) -> RunReport:
    clock.set(at)
    return run_aws_cycle(
        at, store=store, access=access(emu), clock=clock, options=KEEP, shard=Shard(index=index, count=count)
    )


def sharded(
    store: ObjectStore, emu: AwsEmulator, clock: FakeClock, at: datetime, count: int
) -> list[RunReport]:
    return [shard_run(store, emu, clock, at, i, count) for i in range(count)]


def comparable(frame: pd.DataFrame | None) -> pd.DataFrame:
    assert frame is not None
    return frame.sort_values(["size", "region", "zone"]).reset_index(drop=True)


def test_three_shards_commit_the_same_run_as_one_worker(tmp_path: Path) -> None:
    clock_a, clock_b = FakeClock(START), FakeClock(START)
    one, three = world(clock_a), world(clock_b)
    plain = open_store(tmp_path / "plain", cloud=Cloud.AWS, clock=clock_a)
    split = open_store(tmp_path / "split", cloud=Cloud.AWS, clock=clock_b)
    for step in range(2):  # the day's first run (plan made) and the next (plan reused)
        at = START + timedelta(minutes=10 * step)
        clock_a.set(at)
        whole = run_aws_cycle(at, store=plain, access=access(one), clock=clock_a, options=KEEP)
        reports = sharded(split, three, clock_b, at, 3)
        assert whole.status is COMMITTED
        assert [r.status for r in reports] == [PENDING, PENDING, COMMITTED]
        last = reports[-1]
        assert last.shard is not None and last.shard.finalised and last.shard.missing == ()
        assert last.desired_count == whole.desired_count and last.failed_calls == 0
        assert last.scoring == whole.scoring
        sps = last.collectors["aws_sps"]  # type: ignore[index]
        assert sps.planned == whole.collectors["aws_sps"].planned  # type: ignore[index]
        assert sps.succeeded == sps.planned and sps.rows == whole.collectors["aws_sps"].rows  # type: ignore[index]
        pd.testing.assert_frame_equal(
            comparable(split.latest(FrameKind.MERGED)), comparable(plain.latest(FrameKind.MERGED))
        )
        assert pending_runs(split) == []  # the finaliser removed the parts
    plan = StateDocs(split.read_state(), "t").aws_plan()
    assert plan is not None and plan == StateDocs(plain.read_state(), "t").aws_plan()


def test_each_shard_asks_through_its_own_accounts_and_the_book_merges(tmp_path: Path) -> None:
    clock, emu, store = fresh(tmp_path)
    names = [a.name for a in emu.accounts]
    plan_types: dict[int, set[str]] = {}
    for index in range(3):
        before = len(emu.scores.calls)
        report = shard_run(store, emu, clock, START, index, 3)
        calls = emu.scores.calls[before:]
        assert {c.account for c in calls} <= set(names[index::3])  # accounts[i::n]
        plan_types[index] = {t for c in calls for t in c.instance_types}
        assert report.status is (COMMITTED if index == 2 else PENDING)
    assert not plan_types[0] & plan_types[1] and not plan_types[1] & plan_types[2]  # types split
    book = StateDocs(store.read_state(), "t").account_book()
    new = [c for c in emu.scores.calls if c.new_configuration]
    assert {(s.account) for s in book.served} == {c.account for c in new}
    assert len(book.served) == len(new)  # every shard's records, once


def test_a_missing_shard_leaves_the_run_pending_until_it_runs(tmp_path: Path) -> None:
    clock, emu, store = fresh(tmp_path)
    first = shard_run(store, emu, clock, START, 0, 2)
    assert first.status is PENDING and first.shard is not None and first.shard.missing == (1,)
    assert store.read_state().version is None
    [pending] = pending_runs(store)
    assert pending.at == START and pending.present == (0,) and pending.count == 2
    calls = len(emu.scores.calls)
    again = shard_run(store, emu, clock, START, 0, 2)  # a retried worker keeps its part
    assert again.status is PENDING and len(emu.scores.calls) == calls
    last = shard_run(store, emu, clock, START, 1, 2)
    assert last.status is COMMITTED and store.read_state().version is not None
    done = shard_run(store, emu, clock, START, 0, 2)  # a late rerun after the commit: a no-op
    assert done.status is RunStatus.SKIPPED and pending_runs(store) == []


def test_parts_of_another_state_are_refused_then_collected_again(tmp_path: Path) -> None:
    clock, emu, store = fresh(tmp_path)
    sharded(store, emu, clock, START, 2)
    at = START + timedelta(minutes=20)
    assert shard_run(store, emu, clock, at, 0, 2).status is PENDING  # collected against state V
    # an unsharded run of an earlier time commits in between (state V2)
    between = START + timedelta(minutes=10)
    clock.set(between)
    assert (
        run_aws_cycle(between, store=store, access=access(emu), clock=clock, options=KEEP).status is COMMITTED
    )
    version = store.read_state().version
    refused = shard_run(store, emu, clock, at, 1, 2)  # against V2: the finaliser finds shard 0 stale
    assert refused.status is FAILED and refused.error_type == "ConflictError"
    assert "shards [0]" in (refused.error or "") and store.read_state().version == version
    again = shard_run(store, emu, clock, at, 0, 2)  # collects its part again, and finalises
    assert again.status is COMMITTED and again.shard is not None and again.shard.finalised
    assert pending_runs(store) == []


def test_a_late_shard_of_a_run_committed_meanwhile_is_a_no_op(tmp_path: Path) -> None:
    clock, emu, store = fresh(tmp_path)
    assert shard_run(store, emu, clock, START, 0, 2).status is PENDING
    # an unsharded worker commits this very run time meanwhile
    assert (
        run_aws_cycle(START, store=store, access=access(emu), clock=clock, options=KEEP).status is COMMITTED
    )
    late = shard_run(store, emu, clock, START, 1, 2)
    assert late.status is RunStatus.SKIPPED and pending_runs(store) == []


def test_the_next_day_repeats_each_shard_s_configurations_for_free(tmp_path: Path) -> None:
    clock, emu, store = fresh(tmp_path)
    sharded(store, emu, clock, START, 3)
    first_day = [c for c in emu.scores.calls if c.new_configuration]
    reports = sharded(store, emu, clock, START + timedelta(hours=23), 3)  # new UTC day, within 24 h
    assert reports[-1].status is COMMITTED and reports[-1].desired_count == 1
    second_day = [c for c in emu.scores.calls if c.new_configuration][len(first_day) :]
    assert first_day and not second_day


def test_a_failed_query_in_one_shard_is_unknown_never_ceased(tmp_path: Path) -> None:
    clock, emu, store = fresh(tmp_path, accounts=2)
    sharded(store, emu, clock, START, 2)
    emu.scores.inject(FaultKind.ACCESS_DENIED, account="account-2")  # shard 1's only account
    at = START + timedelta(minutes=10)
    reports = sharded(store, emu, clock, at, 2)
    last = reports[-1]
    assert last.status is COMMITTED and last.failed_calls > 0 and last.unknown.count > 0
    plan = StateDocs(store.read_state(), "t").aws_plan()
    assert plan is not None
    mine = set(plan.plan.shard(1, 2))
    sps = last.collectors["aws_sps"]  # type: ignore[index]
    numbers = {int(f.what.split("#")[1].split()[0]) for f in sps.failures}
    assert numbers == mine  # numbered in the whole plan
    changes = store.read_history(FrameKind.CHANGES, start=at)
    assert not changes["change"].isin([ChangeKind.CEASED.value, ChangeKind.EXPIRED.value]).any()
    assert last.scoring is not None and last.scoring.ceased == 0
    lost = {(r, plan.plan.queries[p].instance_type) for p in mine for r in plan.plan.queries[p].regions}
    assert {tuple(p) for p in last.unknown.pairs} == lost  # exactly shard 1's pairs
    nxt = sharded(store, emu, clock, at + timedelta(minutes=10), 2)[-1]
    assert nxt.desired_count == last.desired_count  # not fully collected: the capacity is retried


def test_more_shards_than_accounts_is_a_config_error(tmp_path: Path) -> None:
    clock, emu, store = fresh(tmp_path, accounts=2)
    report = shard_run(store, emu, clock, START, 0, 3)
    assert report.status is FAILED and report.error_type == "ConfigError"
    assert "3 shards need at least 3 accounts" in (report.error or "")
    assert not emu.scores.calls and pending_runs(store) == []


def test_plan_shards_split_every_query_once_and_keep_each_type_where_it_was() -> None:
    def plan(types: list[str]) -> AwsSpsPlan:
        queries = [AwsSpsQuery(instance_type=t, regions=("us-east-1",), zones=3) for t in types]
        return AwsSpsPlan(queries=queries, lower_bound=len(queries))

    types = [f"m{i}.large" for i in range(60)]
    for count in (1, 2, 5):
        whole = plan(types)
        shards = [whole.shard(i, count) for i in range(count)]
        assert sorted(i for s in shards for i in s) == list(range(len(whole)))
        grown = plan([*types[5:], "z9.metal", "a1.tiny"])  # types come and go
        for i in range(count):
            before = {whole.queries[p].instance_type for p in shards[i]}
            after = {grown.queries[p].instance_type for p in grown.shard(i, count)}
            assert before & set(types[5:]) == after & set(types[5:])  # the rest stay put
    with pytest.raises(Exception, match="shard 3 of 3"):
        plan(types).shard(3, 3)


def test_cli_collect_aws_shards_commit_when_the_last_one_finishes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    at = "2026-11-24T12:00:00Z"
    base = ["collect", "aws", "--emulate", "1", "--store", str(tmp_path), "--at", at, "--json"]
    assert main([*base[:-1], "--shard", "0/2"]) == EXIT_OK
    out = capsys.readouterr().out
    assert "shard 0/2" in out and "waiting for shards [1]" in out
    assert main(["status", "--store", str(tmp_path), "--cloud", "aws"]) == EXIT_OK
    waiting = capsys.readouterr().out
    assert f"rerun them: collect aws --at {at.removesuffix('Z')}" in waiting and "missing [1]" in waiting
    assert main([*base, "--shard", "1/2"]) == EXIT_OK
    report = json.loads(capsys.readouterr().out)
    assert report["status"] == "committed" and report["shard"]["finalised"] is True
    assert main(["status", "--store", str(tmp_path), "--cloud", "aws"]) == EXIT_OK
    status = capsys.readouterr().out
    assert "no run committed" not in status and "last run 2026-11-24T12:00" in status
    assert "plan for" not in status and "quota" not in status  # Azure's documents, not AWS's


def test_a_retried_worker_asked_for_other_types_collects_its_part_again(tmp_path: Path) -> None:
    """A part is kept for a rerun only when it followed the plan the worker makes now; a part
    replaced still spent budget, so its records join the book."""
    clock, emu, store = fresh(tmp_path)
    types = sorted({t for t, _ in emu.catalog.offerings})

    def run(index: int, wanted: list[str]) -> RunReport:
        options = attrs.evolve(KEEP, instance_types=tuple(wanted))
        return run_aws_cycle(
            START,
            store=store,
            access=access(emu),
            clock=clock,
            options=options,
            shard=Shard(index=index, count=2),
        )

    assert run(0, types[:4]).status is PENDING
    first = list(emu.scores.calls)
    assert run(0, types[:4]).status is PENDING and len(emu.scores.calls) == len(first)  # kept
    assert run(0, types[4:]).status is PENDING and len(emu.scores.calls) > len(first)  # collected again
    doc = read_part_doc(store, START, Shard(index=0, count=2), AwsPartDoc)
    assert doc is not None and doc.day_plan.instance_types == tuple(types[4:])
    served = {(s.key, s.account) for s in doc.book.served}
    assert {
        (f"{c.instance_types[0]}|{','.join(c.regions)}|{c.target_capacity}", c.account)
        for c in first
        if c.new_configuration
    } <= served  # the replaced part's records kept
    last = run(1, types[4:])
    assert last.status is COMMITTED and last.shard is not None and last.shard.finalised
    notes = last.collectors["aws_sps"].notes  # type: ignore[index]
    assert not any("did not all follow one plan" in n for n in notes)
