"""The AWS cycle (spotlake.pipeline.aws): a whole AWS run into the store's aws/ tree through the
same engine as Azure's, against the offline AWS emulator (spotlake.testing.aws)."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from aws_support import emulator_access as access
from spotlake.clock import FakeClock
from spotlake.collect.aws.sps import AccountBook
from spotlake.model import DESIRED_COUNTS, ChangeKind, Cloud, Source
from spotlake.pipeline.aws import AwsCycleOptions, run_aws_cycle
from spotlake.pipeline.report import RunStatus
from spotlake.pipeline.state import AWS_ACCOUNTS_DOC, AWS_PLAN_DOC, StateDocs
from spotlake.storage import ObjectStore, open_store
from spotlake.storage.base import FrameKind
from spotlake.testing.aws.catalog import NOW, AwsCatalog, AwsFaults
from spotlake.testing.aws.emulator import AwsEmulator
from spotlake.testing.aws.sps import FaultKind, PlacementScoreFake

START = NOW.replace(minute=0)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


def emulator(clock: FakeClock, **kw: object) -> AwsEmulator:
    return AwsEmulator(AwsCatalog.generate(1, types=6), clock=clock, **kw)  # type: ignore[arg-type]


def runs(
    store: ObjectStore,
    emu: AwsEmulator,
    clock: FakeClock,
    n: int,
    *,
    start: datetime = START,
    options: AwsCycleOptions | None = None,
) -> list:
    reports = []
    for i in range(n):
        at = start + timedelta(minutes=10 * i)
        clock.set(at)
        reports.append(run_aws_cycle(at, store=store, access=access(emu), clock=clock, options=options))
    return reports


def test_a_rotation_of_aws_runs_scores_every_zone_on_aws_s_scale(tmp_path: Path, clock: FakeClock) -> None:
    emu = emulator(clock)
    store = open_store(tmp_path, cloud=Cloud.AWS, clock=clock)
    reports = runs(store, emu, clock, 3)
    assert [r.status for r in reports] == [RunStatus.COMMITTED] * 3
    assert [r.desired_count for r in reports] == list(DESIRED_COUNTS[:3])
    assert all(r.failed_calls == 0 and r.unknown.count == 0 for r in reports)
    merged = store.latest(FrameKind.MERGED)
    assert merged is not None
    scored = merged[merged["desired_count"].notna()]
    offered = {(t, z) for t, z in emu.catalog.offerings}
    assert set(zip(scored["size"], scored["zone"], strict=True)) == offered  # every offered zone
    assert scored["score_value"].between(1, 10).all()
    assert (scored["score"] == scored["score_value"].astype(str)).all()
    assert scored["t3"].le(scored["t2"]).all() and scored["t2"].notna().all()
    # each zone's own spot price, and savings from it
    for row in scored.itertuples():  # each zone's own price, or none where AWS has none
        price = emu.catalog.spot.get((row.size, row.zone))
        assert (price is None and pd.isna(row.spot_price)) or row.spot_price == pytest.approx(price)
    assert {"aws_sps", "aws_types", "aws_spot_prices", "aws_advisor", "aws_ondemand"} <= {
        p.name.removeprefix("source=") for p in (tmp_path / "aws" / "raw").iterdir()
    }
    assert reports[0].collector(Source.AWS_ONDEMAND) is not None  # the day's first run
    assert reports[1].collector(Source.AWS_ONDEMAND) is None  # later runs: the state's prices
    assert scored["ondemand_price"].notna().any()
    assert open_store(tmp_path).read_state().version is None  # the Azure tree is untouched


def test_a_rerun_of_a_committed_time_is_a_no_op(tmp_path: Path, clock: FakeClock) -> None:
    emu = emulator(clock)
    store = open_store(tmp_path, cloud=Cloud.AWS, clock=clock)
    (first,) = runs(store, emu, clock, 1)
    again = run_aws_cycle(START, store=store, access=access(emu), clock=clock)
    assert again.status is RunStatus.SKIPPED and again.state_version == first.state_version


def test_accounts_rotate_and_a_failed_query_is_unknown_never_ceased(tmp_path: Path, clock: FakeClock) -> None:
    """Day 1: the second account fills up (MaxConfigLimitExceeded) and the first takes the rest.
    Day 2, same count: the first account is refused; its queries cannot move to the full second
    one, so their keys are unknown: served with day 1's values, never ceased, and the count is
    retried."""
    catalog = AwsCatalog.generate(1, types=6)
    offerings = [(t, catalog.region_of(z), z) for t, z in catalog.offerings]
    scores = PlacementScoreFake(
        seed=0, clock=clock, offerings=offerings, few_types_cap=None, account_limits={"account-2": 2}
    )
    emu = AwsEmulator(catalog, clock=clock, accounts=2, scores=scores)
    store = open_store(tmp_path, cloud=Cloud.AWS, clock=clock)
    keep = AwsCycleOptions(history_max_age=timedelta(hours=30))  # day 1's observations stay live
    (day1,) = runs(store, emu, clock, 1, options=keep)
    assert day1.status is RunStatus.COMMITTED and day1.failed_calls == 0
    assert {c.account for c in scores.calls if c.new_configuration} == {"account-1", "account-2"}
    book = StateDocs(store.read_state(), "t").account_book()
    assert isinstance(book, AccountBook) and "account-2" in {f.account for f in book.full}
    live = store.latest(FrameKind.MERGED)
    assert live is not None

    scores.inject(FaultKind.ACCESS_DENIED, account="account-1")
    day2_at = START + timedelta(hours=23)  # a new UTC day: count 1 again, within 24 h
    (day2,) = runs(store, emu, clock, 1, start=day2_at, options=keep)
    assert day2.status is RunStatus.COMMITTED and day2.desired_count == day1.desired_count
    assert 0 < day2.failed_calls < len(StateDocs(store.read_state(), "t").aws_plan().plan.queries)  # type: ignore[union-attr]
    assert day2.unknown.count > 0
    changes = store.read_history(FrameKind.CHANGES, start=day2_at)
    assert not changes["change"].isin([ChangeKind.CEASED.value, ChangeKind.EXPIRED.value]).any()
    merged = store.latest(FrameKind.MERGED)
    assert merged is not None and len(merged) == len(live)  # unknown keys kept, with day 1's time
    assert (merged["observed_at"] == START).any() and (merged["observed_at"] == day2_at).any()
    again = run_aws_cycle(
        day2_at + timedelta(minutes=10), store=store, access=access(emu), clock=clock, options=keep
    )
    assert again.desired_count == day2.desired_count  # not fully collected: retried


def test_repeated_configurations_cost_no_new_budget(tmp_path: Path, clock: FakeClock) -> None:
    emu = emulator(clock)
    store = open_store(tmp_path, cloud=Cloud.AWS, clock=clock)
    runs(store, emu, clock, 1)
    first_day = [c for c in emu.scores.calls if c.new_configuration]
    # the next day the same count comes round again: the same configurations, on the same accounts
    runs(store, emu, clock, 1, start=START + timedelta(hours=23))  # a new UTC day, within 24 h
    second_day = [c for c in emu.scores.calls if c.new_configuration][len(first_day) :]
    assert first_day and not second_day
    state = store.read_state()
    assert AWS_PLAN_DOC in state.docs and AWS_ACCOUNTS_DOC in state.docs


def test_a_run_every_region_refuses_fails_and_commits_nothing(tmp_path: Path, clock: FakeClock) -> None:
    catalog = AwsCatalog.generate(1, types=6)
    faults = AwsFaults(denied=dict.fromkeys(catalog.regions, "UnauthorizedOperation"))
    emu = AwsEmulator(catalog, clock=clock, faults=faults)
    store = open_store(tmp_path, cloud=Cloud.AWS, clock=clock)
    (report,) = runs(store, emu, clock, 1)
    assert report.status is RunStatus.FAILED and report.error
    assert store.read_state().version is None


def test_only_the_instance_types_asked_for_are_scored(tmp_path: Path, clock: FakeClock) -> None:
    emu = emulator(clock)
    store = open_store(tmp_path, cloud=Cloud.AWS, clock=clock)
    wanted = sorted(emu.catalog.types)[:2]
    clock.set(START)
    report = run_aws_cycle(
        START, store=store, access=access(emu), clock=clock, options=AwsCycleOptions(instance_types=wanted)
    )
    assert report.status is RunStatus.COMMITTED
    merged = store.latest(FrameKind.MERGED)
    assert merged is not None
    assert set(merged.loc[merged["desired_count"].notna(), "size"]) == set(wanted)


def test_a_failure_at_any_write_step_loses_nothing(tmp_path: Path, clock: FakeClock) -> None:
    """The AWS tree has the Azure tree's crash safety (the same stage/commit/publish): a run that
    fails before its pointer swap leaves the previous state and shows readers nothing of itself;
    after it, the run stands and the next run publishes what was left staged."""
    import shutil

    from spotlake.storage.local import LocalBackend
    from spotlake.testing.backends import FaultyBackend

    template = tmp_path / "template"
    runs(open_store(template, cloud=Cloud.AWS, clock=clock), emulator(clock), clock, 1)
    probe = tmp_path / "probe"
    shutil.copytree(template, probe)
    counting = FaultyBackend(LocalBackend(probe / "aws"))
    second = START + timedelta(minutes=10)
    clock.set(second)
    assert run_aws_cycle(second, store=ObjectStore(counting), access=access(emulator(clock)), clock=clock).ok
    ops = [op for op, _ in counting.log]
    swap = ops.index("swap_pointer") + 1
    for fail_at in sorted({1, 3, swap - 1, swap, swap + 1, len(ops)}):
        root = tmp_path / f"store-{fail_at}"
        shutil.copytree(template, root)
        store = open_store(root, cloud=Cloud.AWS, clock=clock)
        before = store.read_state()
        backend = FaultyBackend(LocalBackend(root / "aws"), fail_at=fail_at)
        report = run_aws_cycle(
            second, store=ObjectStore(backend), access=access(emulator(clock)), clock=clock
        )
        after = store.read_state()
        if fail_at <= swap:
            assert report.status is RunStatus.FAILED and "injected failure" in (report.error or ""), fail_at
            assert after.version == before.version, fail_at
            assert store.run_times("merged") == [START], fail_at
        else:
            assert report.status is RunStatus.COMMITTED and after.version != before.version, fail_at
        third = second + timedelta(minutes=10)
        assert run_aws_cycle(third, store=store, access=access(emulator(clock)), clock=clock).ok, fail_at
        assert store.run_times("merged")[-1] == third and len(store.run_times("merged")) in (2, 3), fail_at


def test_the_clouds_have_their_own_locks(tmp_path: Path, clock: FakeClock) -> None:
    from spotlake.errors import LockedError

    azure = open_store(tmp_path, clock=clock)
    aws = open_store(tmp_path, cloud=Cloud.AWS, clock=clock)
    with azure.lock("an Azure run"):
        (report,) = runs(aws, emulator(clock), clock, 1)  # not blocked by Azure's run
        assert report.status is RunStatus.COMMITTED
    with aws.lock("another AWS run"), pytest.raises(LockedError):
        run_aws_cycle(START + timedelta(minutes=10), store=aws, access=access(emulator(clock)), clock=clock)
