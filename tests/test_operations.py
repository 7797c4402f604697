"""Operator-facing promises: clock skew, rollback, what readers see after a crash, clear errors.

Each test is the regression test of a defect an adversarial run found (docs/operations.md).
"""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from pipeline_support import emulator, in_process_access, run_time
from spotlake.cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE, main
from spotlake.errors import StorageError
from spotlake.pipeline import CycleOptions, RunReport, RunStatus, run_cycle
from spotlake.storage import ObjectStore, open_store
from spotlake.storage.local import LocalBackend
from spotlake.testing.azure import AzureEmulator
from spotlake.testing.backends import FaultyBackend


def cycle(emu: AzureEmulator, store: Any, at: datetime, **kwargs: Any) -> RunReport:
    return run_cycle(at, store=store, azure=in_process_access(emu), clock=emu.clock, **kwargs)


def test_a_run_time_far_ahead_of_the_clock_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    """Before: --at 9999-12-31T23:59Z committed, then every real run failed ("before the last run")."""
    emu = emulator()
    store = open_store(str(tmp_path))
    emu.clock.set(run_time(0))  # type: ignore[attr-defined]
    far = datetime(9999, 12, 31, 23, 59, tzinfo=UTC)
    report = cycle(emu, store, far)
    assert report.status is RunStatus.FAILED and report.error_type == "ConfigError"
    assert "ahead of the clock" in (report.error or "") and "--max-clock-skew" in (report.error or "")
    assert store.read_state().version is None
    # Within the allowed skew a run a little ahead is fine; a larger allowance admits more.
    assert cycle(emu, store, run_time(1)).status is RunStatus.COMMITTED
    late = CycleOptions(max_clock_skew=timedelta(hours=2))
    assert cycle(emu, store, run_time(0) + timedelta(minutes=90), options=late).status is RunStatus.COMMITTED


def test_the_cli_refuses_a_future_run_time_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    emu = emulator()
    with emu.serve() as url:
        env = {
            "AZURE_TENANT_ID": emu.tenant_id,
            "AZURE_CLIENT_ID": emu.client_id,
            "AZURE_CLIENT_SECRET": emu.client_secret,
            "AZURE_SUBSCRIPTION_IDS": ",".join(emu.subscriptions),
        }
        with pytest.MonkeyPatch.context() as mp:
            for k, v in env.items():
                mp.setenv(k, v)
            code = main(
                [
                    "collect",
                    "azure",
                    "--endpoint",
                    url,
                    "--store",
                    str(tmp_path),
                    "--at",
                    "9999-12-31T23:59Z",
                    "-q",
                ]
            )
    assert code == EXIT_USAGE  # refused for its configuration: nothing was committed
    assert "ahead of the clock" in capsys.readouterr().out


def test_an_operator_rolls_a_store_back_past_a_bad_run_and_collection_resumes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    emu = emulator()
    store = open_store(str(tmp_path))
    for i in range(2):
        emu.clock.set(run_time(i))  # type: ignore[attr-defined]
        assert cycle(emu, store, run_time(i)).status is RunStatus.COMMITTED
    # A run far ahead slips in anyway (an operator allowed a big skew by mistake).
    ahead = run_time(1) + timedelta(days=30)
    bad = cycle(emu, store, ahead, options=CycleOptions(max_clock_skew=timedelta(days=60)))
    assert bad.status is RunStatus.COMMITTED
    emu.clock.set(run_time(2))  # type: ignore[attr-defined]
    blocked = cycle(emu, store, run_time(2))
    assert blocked.status is RunStatus.FAILED and "spotlake rollback --store" in (blocked.error or "")
    # The way out: list the kept states, roll back to the one before the bad run.
    assert main(["rollback", "--store", str(tmp_path), "--json"]) == EXIT_OK
    kept = json.loads(capsys.readouterr().out)
    assert kept[0]["current"] and kept[0]["run_id"] == f"{ahead:%Y-%m-%dT%H:%M}"
    before = kept[1]["version"]
    assert main(["rollback", "--store", str(tmp_path), "--to", before]) == EXIT_OK
    assert "rolled back" in capsys.readouterr().out
    latest = store.latest("merged")
    assert latest is not None and (latest["observed_at"] <= run_time(1)).all(), "the future run is gone"
    assert cycle(emu, store, run_time(2)).status is RunStatus.COMMITTED
    assert main(["rollback", "--store", str(tmp_path), "--to", "g000000000099-nothere"]) == EXIT_USAGE


def test_a_rollback_hides_the_runs_it_takes_back_and_undoing_it_brings_them_back(tmp_path: Path) -> None:
    """Before: after store.rollback() the next run deleted the rolled-back runs' committed frames
    (so the rollback could not be undone); and readers went on seeing the rolled-back runs."""
    emu = emulator()
    store = open_store(str(tmp_path))
    for i in range(3):
        emu.clock.set(run_time(i))  # type: ignore[attr-defined]
        assert cycle(emu, store, run_time(i)).status is RunStatus.COMMITTED
    newest = store.read_state(frames=False).version
    after_first = store.kept_generations()[2].version  # the state committed by the run of 00:00
    store.rollback(after_first, expected_version=newest)
    assert store.run_times("merged") == [run_time(0)], "readers see only the state's runs"
    assert store.run_times("raw", source="sps") == [run_time(0)]
    emu.clock.set(run_time(3))  # type: ignore[attr-defined]
    assert cycle(emu, store, run_time(3)).status is RunStatus.COMMITTED
    assert store.run_times("merged") == [run_time(0), run_time(3)]
    branch = store.read_state(frames=False).version
    # Undo: back to the state of 00:20; its runs come back, the run of 00:30 leaves.
    store.rollback(newest, expected_version=branch)
    assert store.run_times("merged") == [run_time(0), run_time(1), run_time(2)]
    assert store.read_state().docs["last_run"]["at"] == run_time(2).isoformat()
    # And forward again: nothing committed was ever lost.
    store.rollback(branch, expected_version=newest)
    assert store.run_times("merged") == [run_time(0), run_time(3)]


def test_an_interrupted_rollback_is_finished_by_the_next_run(tmp_path: Path) -> None:
    emu = emulator()
    store = open_store(str(tmp_path))
    for i in range(2):
        emu.clock.set(run_time(i))  # type: ignore[attr-defined]
        assert cycle(emu, store, run_time(i)).status is RunStatus.COMMITTED
    newest = store.read_state(frames=False).version
    first = store.kept_generations()[1].version
    # The pointer moves, then the process dies before moving the frames (the first move fails).
    dying = ObjectStore(
        FaultyBackend(LocalBackend(tmp_path), fail_when=lambda op, key: op == "move", fail_at=1)
    )
    with pytest.raises(StorageError):
        dying.rollback(first, expected_version=newest)
    assert store.read_state(frames=False).version == first
    emu.clock.set(run_time(2))  # type: ignore[attr-defined]
    assert cycle(emu, store, run_time(2)).status is RunStatus.COMMITTED
    assert store.run_times("merged") == [run_time(0), run_time(2)]


def test_readers_never_see_a_run_that_crashed_before_its_commit(tmp_path: Path) -> None:
    """Before: after a crash `spotlake show` printed the uncommitted run until the next run."""
    emu = emulator()
    store = open_store(str(tmp_path))
    emu.clock.set(run_time(0))  # type: ignore[attr-defined]
    assert cycle(emu, store, run_time(0)).status is RunStatus.COMMITTED
    # The run of 00:10 writes all its frames, then dies at the state pointer (a crash).
    crashing = FaultyBackend(
        LocalBackend(tmp_path), fail_when=lambda op, key: op == "swap_pointer", fail_at=1
    )
    emu.clock.set(run_time(1))  # type: ignore[attr-defined]
    assert cycle(emu, ObjectStore(crashing), run_time(1)).status is RunStatus.FAILED
    assert any(op == "put" and key.startswith(".staging/") for op, key in crashing.log)
    reader = open_store(str(tmp_path))
    assert reader.run_times("merged") == [run_time(0)]
    assert reader.latest("merged") is not None
    latest = reader.latest("changes")
    assert latest is not None and (latest["observed_at"] == run_time(0)).all()
    assert main(["show", "--store", str(tmp_path), "--json", "--limit", "1"]) == EXIT_OK


def test_the_next_run_sweeps_abandoned_stages_and_orphan_temporary_files(tmp_path: Path) -> None:
    """Before: an orphan .tmp file left by a killed write was never removed."""
    emu = emulator()
    store = open_store(str(tmp_path))
    emu.clock.set(run_time(0))  # type: ignore[attr-defined]
    assert cycle(emu, store, run_time(0)).status is RunStatus.COMMITTED
    orphan = tmp_path / "merged" / "date=2026-03-02" / ".00-10.parquet.0123456789ab.tmp"
    orphan.write_bytes(b"half a file")
    abandoned = tmp_path / ".staging" / "20260302T000500-0123456789ab" / "merged" / "x.parquet"
    abandoned.parent.mkdir(parents=True)
    abandoned.write_bytes(b"a run that died")
    old = time.time() - 7 * 3600  # older than the 6 hours any run could take
    os.utime(orphan, (old, old))
    # The first run of the next UTC day sweeps (temporary files need a walk of the whole store).
    later = run_time(0) + timedelta(days=1)
    emu.clock.set(later)  # type: ignore[attr-defined]
    assert (
        run_cycle(later, store=store, azure=in_process_access(emu), clock=emu.clock).status
        is RunStatus.COMMITTED
    )
    assert not orphan.exists() and not abandoned.exists()


def test_bad_input_and_damaged_state_give_clear_errors_not_tracebacks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # --endpoint that is not a URL: a usage error naming the option's value.
    with pytest.MonkeyPatch.context() as mp:
        for k in ("AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET"):
            mp.setenv(k, "x")
        mp.setenv("AZURE_SUBSCRIPTION_IDS", "00000000-0000-0000-0000-000000000001")
        assert (
            main(["collect", "azure", "--store", str(tmp_path), "--endpoint", "not-a-url", "-q"])
            == EXIT_USAGE
        )
    assert "not-a-url" in capsys.readouterr().err
    # --max-regions 0 is a usage error (exit 2), not a failure.
    assert (
        main(
            [
                "plan",
                "--catalog",
                str(Path(__file__).parent / "fixtures" / "catalog_world_excerpt.csv"),
                "--max-regions",
                "0",
            ]
        )
        == EXIT_USAGE
    )
    assert "call limits must be 1..8 regions" in capsys.readouterr().err
    # A hand-edited last_run document: a clear message and exit 1, no traceback.
    emu = emulator()
    store = open_store(str(tmp_path / "s"))
    emu.clock.set(run_time(0))  # type: ignore[attr-defined]
    cycle(emu, store, run_time(0))
    version = store.read_state(frames=False).version
    doc = tmp_path / "s" / "state" / "generations" / str(version) / "docs" / "last_run.json"
    doc.write_text('{"format": 2, "at": "yesterday", "desired_count": "one"}')
    assert main(["status", "--store", str(tmp_path / "s")]) == EXIT_FAILED
    err = capsys.readouterr().err
    assert "CorruptStoreError" in err and "last_run" in err and "Traceback" not in err
