"""End-to-end collection cycles: emulator -> pipeline -> local store.

Crash safety (a failure injected at every write step), idempotent reruns, overlapping runs,
rotation across runs and a day change, and loopback (real sockets, real azure-identity flow).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import attrs
import httpx
import pandas as pd
import pytest

from pipeline_support import T0, credentials_of, emulator, in_process_access, run_time
from spotlake.collect.auth import TokenProvider
from spotlake.collect.redirect import RedirectTransport, redirect_azure_transport
from spotlake.errors import LockedError
from spotlake.model import CHANGES_SCHEMA, SNAPSHOT_SCHEMA, Source
from spotlake.pipeline import AzureAccess, CycleOptions, RunReport, RunStatus, arun_cycle, run_cycle
from spotlake.storage import ObjectStore, open_store
from spotlake.storage.local import LocalBackend
from spotlake.testing.azure import AzureEmulator
from spotlake.testing.backends import FaultyBackend


def cycle(emu: AzureEmulator, store: Any, i: int, **kwargs: Any) -> RunReport:
    at = run_time(i)
    emu.clock.set(at)  # type: ignore[attr-defined]
    return run_cycle(at, store=store, azure=in_process_access(emu), clock=emu.clock, **kwargs)


def test_three_cycles_into_a_local_store(tmp_path: Path) -> None:
    emu = emulator()
    store = open_store(str(tmp_path / "data"))
    reports = [cycle(emu, store, i) for i in range(3)]
    assert [r.status for r in reports] == [RunStatus.COMMITTED] * 3, [r.error for r in reports]
    assert [r.desired_count for r in reports] == [1, 5, 10]
    assert reports[0].new_day
    first = reports[0]
    # Every planned SPS call is accounted for and the plan covers the support set.
    sps = first.collectors[Source.SPS]
    assert first.plan is not None
    assert sps.planned == sps.succeeded + sps.failed == first.plan.calls
    assert first.plan.pairs == len(emu.world.support_pairs())
    # The files are plain Parquet that pandas reads without spotlake.
    merged = pd.read_parquet(tmp_path / "data" / "merged")
    assert set(SNAPSHOT_SCHEMA) <= set(merged.columns)
    raw_sps = pd.read_parquet(tmp_path / "data" / "raw" / "source=sps")
    assert len(raw_sps) == sum(r.collectors[Source.SPS].rows for r in reports)
    latest = store.latest("merged")
    assert latest is not None and set(latest["desired_count"].dropna().unique()) == {10}
    changes = store.latest("changes")
    assert changes is not None and list(changes.columns) == list(CHANGES_SCHEMA)


def test_the_day_plan_uses_the_search_budget(tmp_path: Path) -> None:
    """On this world the plain plan is one call above the lower bound and 8 re-plans meet it."""
    from spotlake.scoring.plan import plan_calls
    from spotlake.testing.world import World

    world = World.generate(0, n_regions=20, n_sizes=120, layout="family")
    reports = []
    for search in (0, 8):
        emu = emulator(world, sps_calls_per_hour=1000)
        store = open_store(str(tmp_path / f"search-{search}"))
        reports.append(cycle(emu, store, 0, options=CycleOptions(plan_search=search)))
    plain, searched = reports
    assert plain.status == searched.status == RunStatus.COMMITTED, [r.error for r in reports]
    assert plain.plan is not None and searched.plan is not None
    assert plain.plan.calls == plan_calls(world.support_pairs()).report.calls
    assert searched.plan.calls == searched.plan.lower_bound == plain.plan.calls - 1
    assert searched.collectors[Source.SPS].planned == searched.plan.calls
    assert "+order-search(" in searched.plan.strategy and searched.plan.strategy.endswith("/8)")


def test_rerunning_a_committed_time_is_a_no_op(tmp_path: Path) -> None:
    emu = emulator()
    store = open_store(str(tmp_path))
    first = cycle(emu, store, 0)
    state = store.read_state()
    again = cycle(emu, store, 0)
    assert again.status == "skipped"
    assert store.read_state().version == state.version
    # The next run still gets the next count: the rerun did not advance the rotation.
    assert cycle(emu, store, 1).desired_count == 5
    assert first.state_version == state.version


def test_a_failure_at_any_write_step_loses_nothing(tmp_path: Path) -> None:
    """A run that fails at any write never shows readers an uncommitted run and loses no commit.

    Before the state pointer moves the run fails and the previous state stands; from the pointer
    swap on the run is committed, and frames whose move failed are published by the next run.
    Every write position is tried with ``HYPOTHESIS_PROFILE=ci``; a spread of them (including
    each side of the pointer swap) by default.
    """
    emu = emulator()
    template = tmp_path / "template"
    assert cycle(emu, open_store(str(template)), 0).status is RunStatus.COMMITTED
    probe = tmp_path / "probe"
    shutil.copytree(template, probe)
    counting = FaultyBackend(LocalBackend(probe))
    assert cycle(emulator(), ObjectStore(counting), 1).status is RunStatus.COMMITTED
    ops = [op for op, _ in counting.log]
    swap = ops.index("swap_pointer") + 1  # 1-based position of the pointer swap
    assert ops.count("put") >= 6 + 2 and ops.count("move") == 6, ops  # staged frames, generation, moves
    positions = range(1, len(ops) + 1)
    if os.environ.get("HYPOTHESIS_PROFILE") != "ci":
        positions = sorted({1, 2, 6, 7, swap - 2, swap - 1, swap, swap + 1, swap + 3, len(ops)})
    for fail_at in positions:
        root = tmp_path / f"store-{fail_at}"
        shutil.copytree(template, root)
        emu = emulator()
        store = open_store(str(root))
        before = store.read_state()
        backend = FaultyBackend(LocalBackend(root), fail_at=fail_at)
        report = cycle(emu, ObjectStore(backend), 1)
        op, key = backend.failed or ("", "")
        where = (fail_at, op, key)
        after = store.read_state()
        if fail_at <= swap:  # the swap itself failing leaves the old state too
            assert report.status is RunStatus.FAILED, (where, report.error)
            assert "injected failure" in (report.error or ""), (where, report.error)
            assert after.version == before.version and after.docs == before.docs, where
            for name, frame in before.frames.items():
                pd.testing.assert_frame_equal(after.frames[name], frame)
            # Readers never see the run that failed.
            assert store.run_times("merged") == [run_time(0)], where
            assert store.run_times("raw", source="sps") == [run_time(0)], where
        else:
            # The pointer moved: the run stands even though a later write failed.
            assert report.status is RunStatus.COMMITTED, (where, report.error)
            assert after.version == report.state_version != before.version, where
        # The next run recovers: it publishes what a failure left staged and collects the next count.
        recovered = cycle(emu, store, 2)
        assert recovered.status is RunStatus.COMMITTED, (where, recovered.error)
        committed = [run_time(0), run_time(2)] if fail_at <= swap else [run_time(0), run_time(1), run_time(2)]
        assert recovered.desired_count == (5 if fail_at <= swap else 10), where
        for kind, source in [("merged", None), ("changes", None), ("raw", "sps"), ("raw", "prices")]:
            assert store.run_times(kind, source=source) == committed, (where, kind, source)


def test_overlapping_runs_exactly_one_commits(tmp_path: Path) -> None:
    emu = emulator()
    store_a, store_b = open_store(str(tmp_path)), open_store(str(tmp_path))
    assert cycle(emu, store_a, 0).status == "committed"
    at = run_time(1)
    emu.clock.set(at)  # type: ignore[attr-defined]
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def run(store: Any) -> None:
        barrier.wait()
        try:
            report = run_cycle(at, store=store, azure=in_process_access(emu), clock=emu.clock)
            outcomes.append(report.status)
        except LockedError:
            outcomes.append("locked")

    threads = [threading.Thread(target=run, args=(s,)) for s in (store_a, store_b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    # Either the second run hit the lock, or it ran after the first and found the time committed.
    assert sorted(outcomes) in (["committed", "locked"], ["committed", "skipped"]), outcomes
    assert store_a.read_state().docs["rotation"] == store_b.read_state().docs["rotation"]


def test_rotation_runs_through_counts_and_restarts_on_a_new_day(tmp_path: Path) -> None:
    emu = emulator()
    store = open_store(str(tmp_path))
    # Start at 22:30 so that the 10th run crosses midnight.
    base = T0 + timedelta(hours=22, minutes=30)
    counts = []
    for i in range(12):
        at = base + timedelta(minutes=10 * i)
        emu.clock.set(at)  # type: ignore[attr-defined]
        report = run_cycle(at, store=store, azure=in_process_access(emu), clock=emu.clock)
        assert report.status == "committed", report.error
        counts.append((at.date(), report.desired_count, report.new_day))
    assert [c for _, c, _ in counts[:9]] == [1, 5, 10, 15, 20, 25, 30, 35, 40]
    assert counts[9][1] == 1 and counts[9][2], "the first run of a UTC day collects count 1"
    assert [c for _, c, _ in counts[10:]] == [5, 10]


def test_quota_exhaustion_is_reported_and_the_count_is_not_skipped(tmp_path: Path) -> None:
    # One subscription x one URL location, 2 calls per hour: far fewer than the plan needs.
    emu = emulator()
    creds = credentials_of(emu)
    access = attrs.evolve(
        in_process_access(emu), credentials=attrs.evolve(creds, subscriptions=creds.subscriptions[:1])
    )
    options = CycleOptions(sps_budget=2, sps_locations=(emu.world.regions[0].name,))
    store = open_store(str(tmp_path))

    def run(i: int) -> RunReport:
        emu.clock.set(run_time(i))  # type: ignore[attr-defined]
        return run_cycle(run_time(i), store=store, azure=access, options=options, clock=emu.clock)

    first = run(0)
    assert first.status == "committed" and first.desired_count == 1
    sps = first.collectors[Source.SPS]
    assert sps.succeeded == 2 and first.failed_calls == sps.planned - 2 > 0
    assert all("quota" in f.reason for f in sps.failures)
    assert first.unknown.count > 0, "the pairs of the failed calls are reported unknown"
    # 10 minutes later no slot is free: nothing can be collected, the run fails and says why.
    second = run(1)
    assert second.status == "failed" and "quota" in (second.error or "")
    # An hour later the quota is back, and the same count is collected again (not skipped).
    third = run(7)
    assert third.status == "committed" and third.desired_count == 1


@pytest.fixture
def loopback(tmp_path: Path) -> Iterator[tuple[AzureEmulator, str]]:
    emu = emulator()
    with emu.serve() as url:
        yield emu, url


def test_loopback_cycle_with_real_token_flow(tmp_path: Path, loopback: tuple[AzureEmulator, str]) -> None:
    emu, url = loopback
    creds = credentials_of(emu)
    azure_transport = redirect_azure_transport(url)
    access = AzureAccess(
        credentials=creds,
        transport=RedirectTransport(url),
        azure_transport=azure_transport,
        token=TokenProvider(creds, transport=azure_transport),
    )
    store = open_store(str(tmp_path / "data"))
    report = run_cycle(T0, store=store, azure=access)
    assert report.status == "committed", report.error
    assert report.plan is not None and report.collectors[Source.SPS].succeeded == report.plan.calls
    assert report.collectors[Source.PRICES].rows > 0
    assert report.collectors[Source.EVICTION].rows > 0
    assert emu.stats.count("token") >= 1


class SlowSps(httpx.AsyncBaseTransport):
    """SPS requests take real time (as they do against Azure); everything else is instant."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if "placementScores" in request.url.path:
            await asyncio.sleep(0.5)
        return await self.inner.handle_async_request(request)


def test_a_failed_price_crawl_stops_the_sps_calls_and_publishes_nothing(tmp_path: Path) -> None:
    from spotlake.testing.azure import EndpointFaults, Faults

    emu = emulator()
    store = open_store(str(tmp_path))
    first = cycle(emu, store, 0)  # stores the day's plan, so the next run's SPS starts at once
    assert first.status == "committed"
    before = store.read_state()
    emu.faults = Faults(prices=EndpointFaults(errors={500: 1.0}))
    emu.stats.reset()
    at = run_time(1)
    emu.clock.set(at)  # type: ignore[attr-defined]
    access = attrs.evolve(in_process_access(emu), transport=SlowSps(emu.transport()))
    failed = run_cycle(at, store=store, azure=access, clock=emu.clock)
    assert failed.status == "failed" and failed.error_type == "IncompleteDataError"
    # The crawl's failure cancelled the SPS calls still in flight: none reached Azure.
    assert emu.stats.count("sps") == 0
    assert store.read_state().version == before.version
    assert store.run_times("merged") == [run_time(0)], "the failed run left no frames"


def test_a_cycle_runs_inside_a_running_event_loop(tmp_path: Path) -> None:
    """A notebook's cells run inside an event loop: the blocking facade and the async core both work."""
    emu = emulator()
    store = open_store(str(tmp_path))

    async def notebook_cell() -> tuple[RunReport, RunReport]:
        asyncio.get_running_loop()  # we are inside a running loop, as in Jupyter
        emu.clock.set(run_time(0))  # type: ignore[attr-defined]
        blocking = run_cycle(run_time(0), store=store, azure=in_process_access(emu), clock=emu.clock)
        emu.clock.set(run_time(1))  # type: ignore[attr-defined]
        awaited = await arun_cycle(run_time(1), store=store, azure=in_process_access(emu), clock=emu.clock)
        return blocking, awaited

    blocking, awaited = asyncio.run(notebook_cell())
    assert blocking.status is RunStatus.COMMITTED, blocking.error
    assert awaited.status is RunStatus.COMMITTED, awaited.error
    assert [blocking.desired_count, awaited.desired_count] == [1, 5]
