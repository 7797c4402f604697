"""Sharded collection: N workers split one run's SPS calls and the last one commits the merged run.

Three shards on one local store against the in-process emulator give the same committed run as an
unsharded cycle on the same world and time; a missing shard leaves the run uncommitted until it is
run; a finaliser that finds the lock held keeps its part for the retry; the CLI's ``--shard``.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import attrs
import httpx
import pandas as pd
import pytest

from pipeline_support import T0, emulator, in_process_access, run_time
from spotlake.cli import EXIT_OK, EXIT_USAGE, build_parser, main
from spotlake.errors import ConfigError, LockedError
from spotlake.model import Source
from spotlake.pipeline import RunReport, RunStatus, Shard, ShardProgress, pending_runs, run_cycle
from spotlake.scoring.plan import Plan
from spotlake.serde import load
from spotlake.storage import PartSet, open_store
from spotlake.testing.azure import AzureEmulator

PENDING, COMMITTED = RunStatus.PENDING, RunStatus.COMMITTED
SKIPPED, FAILED = RunStatus.SKIPPED, RunStatus.FAILED

_SPS_PATH = re.compile(
    r"/subscriptions/([^/]+)/providers/Microsoft\.Compute/locations/[^/]+/placementScores", re.I
)


class RecordingTransport(httpx.AsyncBaseTransport):
    """Passes requests on and remembers the subscription of every SPS request."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.sps_subscriptions: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        match = _SPS_PATH.search(request.url.path)
        if match:
            self.sps_subscriptions.append(match.group(1))
        return await self.inner.handle_async_request(request)


def shard_run(
    emu: AzureEmulator, store: Any, at: datetime, index: int, count: int, **kwargs: Any
) -> tuple[RunReport, set[str]]:
    """Run shard ``index`` of ``count``; also return the subscriptions its SPS requests used."""
    emu.clock.set(at)  # type: ignore[attr-defined]
    access = in_process_access(emu)
    assert access.transport is not None
    recorder = RecordingTransport(access.transport)
    report = run_cycle(
        at,
        store=store,
        azure=attrs.evolve(access, transport=recorder),
        clock=emu.clock,
        shard=Shard(index=index, count=count),
        **kwargs,
    )
    return report, set(recorder.sps_subscriptions)


def plain_run(emu: AzureEmulator, store: Any, at: datetime) -> RunReport:
    emu.clock.set(at)  # type: ignore[attr-defined]
    return run_cycle(at, store=store, azure=in_process_access(emu), clock=emu.clock)


def sorted_frame(frame: pd.DataFrame | None, keys: list[str]) -> pd.DataFrame:
    assert frame is not None
    return frame.sort_values(keys, na_position="first").reset_index(drop=True)


def test_three_shards_commit_the_same_run_as_an_unsharded_cycle(tmp_path: Path) -> None:
    emu_sharded, emu_plain = emulator(), emulator()
    store = open_store(str(tmp_path / "sharded"))
    reference = open_store(str(tmp_path / "plain"))
    subscriptions = emu_sharded.subscriptions

    runs = [shard_run(emu_sharded, store, T0, i, 3) for i in range(3)]
    reports = [r for r, _ in runs]
    assert [r.status for r in reports] == [PENDING, PENDING, COMMITTED], [r.error for r in reports]
    assert reports[0].shard is not None and reports[0].shard.missing == (1, 2)
    assert reports[1].shard is not None and reports[1].shard.missing == (2,)
    assert reports[2].shard is not None and reports[2].shard.finalised is True
    assert store.read_state().version == reports[2].state_version

    plain = plain_run(emu_plain, reference, T0)
    assert plain.status is COMMITTED, plain.error
    assert plain.plan is not None
    final = reports[2]
    assert final.desired_count == plain.desired_count == 1 and final.new_day

    # Near-equal shards of one plan, each through its own subscriptions[i::3].
    per_shard = [r.collectors[Source.SPS].planned for r in reports[:2]]
    assert final.collectors[Source.SPS].planned == plain.plan.calls
    assert final.plan is not None and final.plan.calls == plain.plan.calls
    used = [subs for _, subs in runs]
    assert all(used) and not (used[0] & used[1] or used[0] & used[2] or used[1] & used[2])
    for i, subs in enumerate(used):
        assert subs <= set(subscriptions[i::3])
    calls = [*per_shard, plain.plan.calls - sum(per_shard)]
    assert max(calls) - min(calls) <= 1 and sum(calls) == plain.plan.calls

    # Same SPS rows, same scores, same snapshot as the unsharded run.
    keys = ["region", "size", "zone"]
    assert final.collectors[Source.SPS].rows == plain.collectors[Source.SPS].rows > 0
    pd.testing.assert_frame_equal(
        sorted_frame(store.read_frame(kind="raw", source="sps", at=T0), keys),
        sorted_frame(reference.read_frame(kind="raw", source="sps", at=T0), keys),
    )
    pd.testing.assert_frame_equal(
        sorted_frame(store.read_frame(kind="merged", at=T0), keys),
        sorted_frame(reference.read_frame(kind="merged", at=T0), keys),
    )
    assert final.scoring is not None and plain.scoring is not None
    assert final.scoring.new == plain.scoring.new > 0

    # One committed run: rotation advanced once, same plan, the shards' quota ledgers kept.
    docs, ref_docs = store.read_state().docs, reference.read_state().docs
    assert docs["rotation"] == ref_docs["rotation"] and docs["rotation"]["index"] == 1
    assert load(docs["plan"]["plan"], Plan, where="t") == load(ref_docs["plan"]["plan"], Plan, where="t")
    for i in range(3):
        ledger = docs[f"quota.shard-{i}-of-3"]
        assert set(ledger["subscriptions"]) == set(subscriptions[i::3])
        assert ledger["calls"], "the shard's calls are on its ledger"
    assert store.backend.list_tree("shards/") == [] and pending_runs(store) == []

    # A late worker finds the run committed; the next run reuses the stored plan with count 5.
    late, _ = shard_run(emu_sharded, store, T0, 1, 3)
    assert late.status is SKIPPED
    nxt = [shard_run(emu_sharded, store, run_time(1), i, 3)[0] for i in (2, 0, 1)]
    assert [r.status for r in nxt] == [PENDING, PENDING, COMMITTED], [r.error for r in nxt]
    assert nxt[2].desired_count == 5 and not nxt[2].new_day
    assert nxt[2].shard == ShardProgress(index=1, count=3, present=(0, 1, 2), finalised=True)


def test_a_missing_shard_leaves_the_run_uncommitted_until_it_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    emu = emulator()
    store = open_store(str(tmp_path))
    assert plain_run(emu, store, T0).status is COMMITTED
    before = store.read_state()

    at = run_time(1)
    for i in (0, 2):
        assert shard_run(emu, store, at, i, 3)[0].status is PENDING
    after = store.read_state()
    assert after.version == before.version and after.docs == before.docs
    assert pending_runs(store) == [PartSet(at=at, count=3, present=(0, 2))]
    assert pending_runs(store)[0].missing == (1,)
    assert main(["status", "--store", str(tmp_path)]) == EXIT_OK
    assert "missing [1]" in capsys.readouterr().out

    # The last shard's finaliser finds the lock held: LockedError (exit 75), its part is kept ...
    with store.lock("someone-else"), pytest.raises(LockedError):
        shard_run(emu, store, at, 1, 3)
    assert store.read_state().version == before.version
    sps_requests = emu.stats.count("sps")
    # ... and its retry finalises without collecting again.
    report, used = shard_run(emu, store, at, 1, 3)
    assert report.status is COMMITTED, report.error
    assert not used and emu.stats.count("sps") == sps_requests
    assert report.desired_count == 5
    assert report.plan is not None and report.collectors[Source.SPS].planned == report.plan.calls
    state = store.read_state()
    assert state.docs["rotation"]["index"] == 2 and state.docs["last_run"]["at"] == at.isoformat()
    assert pending_runs(store) == []


class RacingStore:
    """A store that lets another worker finalise right after this worker looks at the parts."""

    def __init__(self, inner: Any, race: Any) -> None:
        self.inner = inner
        self.race = race
        self.raced = False

    def part_sets(self, at: Any = None) -> Any:
        seen = self.inner.part_sets(at)
        if at is not None and not self.raced:  # between this look and this worker's lock
            self.raced = True
            self.race()
        return seen

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_a_finaliser_that_loses_the_race_reports_skipped(tmp_path: Path) -> None:
    """Two workers both see every part; one commits and removes the parts before the other locks."""
    emu = emulator()
    store = open_store(str(tmp_path))
    assert plain_run(emu, store, T0).status is COMMITTED
    at = run_time(1)
    for i in (0, 1):
        assert shard_run(emu, store, at, i, 3)[0].status is PENDING
    raced: list[RunReport] = []
    racing = RacingStore(store, lambda: raced.append(shard_run(emu, store, at, 2, 3)[0]))
    late, _ = shard_run(emu, racing, at, 2, 3)
    assert raced[0].status is COMMITTED, raced[0].error
    assert late.status is SKIPPED, late.error
    assert store.read_state().docs["last_run"]["at"] == at.isoformat()
    assert pending_runs(store) == []


def test_parts_against_a_state_that_moved_are_not_merged(tmp_path: Path) -> None:
    emu = emulator()
    store = open_store(str(tmp_path))
    # Shard 0 of 00:10 collects before 00:00 is committed; its part is stale once 00:00 commits.
    assert shard_run(emu, store, run_time(1), 0, 2)[0].status is PENDING
    assert plain_run(emu, store, T0).status is COMMITTED
    version = store.read_state().version
    report, _ = shard_run(emu, store, run_time(1), 1, 2)
    assert report.status is FAILED and report.error_type == "ConflictError"
    assert "shards [0]" in (report.error or "") and store.read_state().version == version
    # Rerunning the stale shard replaces its part and completes the run.
    again, _ = shard_run(emu, store, run_time(1), 0, 2)
    assert again.status is COMMITTED, again.error
    assert again.desired_count == 5


def test_fewer_subscriptions_than_shards_is_a_config_error(tmp_path: Path) -> None:
    emu = emulator()
    access = in_process_access(emu)
    two = attrs.evolve(
        access, credentials=attrs.evolve(access.credentials, subscriptions=emu.subscriptions[:2])
    )
    report = run_cycle(
        T0, store=open_store(str(tmp_path)), azure=two, clock=emu.clock, shard=Shard(index=0, count=3)
    )
    assert report.status is FAILED and report.error_type == "ConfigError"
    assert "3 shards need at least 3 subscriptions" in (report.error or "") and "list 2" in (
        report.error or ""
    )


def test_shard_parsing() -> None:
    assert Shard.parse("1/3") == Shard(index=1, count=3)
    assert Shard.parse("auto/4", environ={"AWS_BATCH_JOB_ARRAY_INDEX": "2"}) == Shard(index=2, count=4)
    with pytest.raises(ConfigError, match="AWS_BATCH_JOB_ARRAY_INDEX is not set"):
        Shard.parse("auto/4", environ={})
    with pytest.raises(ConfigError, match=r"within 0\.\.2"):
        Shard.parse("3/3")
    with pytest.raises(ConfigError, match="INDEX/COUNT"):
        Shard.parse("x")
    with pytest.raises(ConfigError, match="at least 1 shard"):
        Shard(index=0, count=0)
    assert Shard(index=0, count=2).subscriptions(["a", "b", "c"]) == ("a", "c")


def test_cli_shard_option(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    args = build_parser().parse_args(["collect", "azure", "--shard", "1/3"])
    assert Shard.parse(args.shard) == Shard(index=1, count=3)
    base = ["collect", "azure", "--store", str(tmp_path), "--at", T0.isoformat(), "--quiet"]
    assert main([*base, "--shard", "3/3"]) == EXIT_USAGE
    assert "shard index must be within 0..2" in capsys.readouterr().err
    assert main([*base, "--shard", "x"]) == EXIT_USAGE
    assert "expected INDEX/COUNT" in capsys.readouterr().err
    emu = emulator()
    monkeypatch.setenv("AZURE_TENANT_ID", emu.tenant_id)
    monkeypatch.setenv("AZURE_CLIENT_ID", emu.client_id)
    monkeypatch.setenv("AZURE_CLIENT_SECRET", emu.client_secret)
    monkeypatch.setenv("AZURE_SUBSCRIPTION_IDS", ",".join(emu.subscriptions[:2]))
    assert main([*base, "--shard", "2/3"]) == EXIT_USAGE
    assert "3 shards need at least 3 subscriptions" in capsys.readouterr().err


def test_cli_single_shard_worker_commits(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    emu = emulator()
    for name, value in {
        "AZURE_TENANT_ID": emu.tenant_id,
        "AZURE_CLIENT_ID": emu.client_id,
        "AZURE_CLIENT_SECRET": emu.client_secret,
        "AZURE_SUBSCRIPTION_IDS": ",".join(emu.subscriptions),
        "AWS_BATCH_JOB_ARRAY_INDEX": "0",
    }.items():
        monkeypatch.setenv(name, value)
    with emu.serve() as url:
        argv = ["collect", "azure", "--endpoint", url, "--store", str(tmp_path), "--at", T0.isoformat()]
        code = main([*argv, "--quiet", "--json", "--shard", "auto/1"])
    payload = json.loads(capsys.readouterr().out)
    assert code == EXIT_OK and payload["status"] == "committed", payload["error"]
    assert payload["shard"]["finalised"] and payload["shard"]["count"] == 1


def test_parts_that_followed_different_plans_commit_but_retry_the_count(tmp_path: Path) -> None:
    emu = emulator()
    store = open_store(str(tmp_path))
    assert shard_run(emu, store, T0, 0, 2)[0].status is PENDING
    # Simulate shard 0 having planned from a different price crawl (prices changed in between).
    found = store.read_part(T0, index=0, count=2)
    assert found is not None
    doc, frame = found
    store.put_part(T0, index=0, count=2, doc={**doc, "plan_digest": "another plan"}, frame=frame)
    report, _ = shard_run(emu, store, T0, 1, 2)
    assert report.status is COMMITTED, report.error
    assert any("did not all follow one plan" in n for n in report.collectors[Source.SPS].notes)
    # Coverage is what the shards scored, but the count is not taken as fully collected.
    rotation = store.read_state().docs["rotation"]
    assert rotation["index"] == 0 and rotation["attempts"] == 1


def test_a_part_whose_frame_does_not_match_its_document_is_refused(tmp_path: Path) -> None:
    emu = emulator()
    store = open_store(str(tmp_path))
    assert shard_run(emu, store, T0, 0, 2)[0].status is PENDING
    store.backend.put("shards/2026-03-02T00-00/part-0-of-2.parquet", b"not the frame")
    report, _ = shard_run(emu, store, T0, 1, 2)
    assert report.status is FAILED and report.error_type == "CorruptStoreError"
    assert "part-0-of-2.parquet does not match" in (report.error or "")
    assert store.read_state().version is None
