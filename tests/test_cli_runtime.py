"""Run times and progress (issue 14): ``collect`` snaps its run time to the 10-minute grid, a
progress bar never shows more done than its total, and the demo's runs end near now."""

from __future__ import annotations

import importlib.util
import io
import json
import re
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType

import pytest

from pipeline_support import emulator, in_process_access, run_time
from spotlake.cli import EXIT_OK, main
from spotlake.pipeline import RunStatus, run_cycle
from spotlake.progress import Progress, ProgressBoard
from spotlake.storage import open_store
from spotlake.testing.azure import AzureEmulator

ROOT = Path(__file__).resolve().parents[1]


# --- the 10-minute grid ----------------------------------------------------------------------


def test_collect_snaps_its_run_time_to_the_grid_so_a_rerun_a_minute_later_is_a_no_op(
    served: tuple[AzureEmulator, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: --at 00:13 committed a run at 00:13, and a rerun at 00:14 was a new run with the
    next desired count."""
    emu, url = served
    emu.clock.set(run_time(1) + timedelta(minutes=3))  # type: ignore[attr-defined]
    base = ["collect", "azure", "--endpoint", url, "--store", str(tmp_path), "--json"]
    assert main([*base, "--at", "2026-03-02T00:13:20Z"]) == EXIT_OK
    out = capsys.readouterr()
    report = json.loads(out.out)
    assert report["status"] == "committed" and report["at"] == "2026-03-02T00:10:00+00:00"
    assert "snapped to 2026-03-02T00:10:00+00:00" in out.err
    assert main([*base, "--at", "2026-03-02T00:14Z", "--quiet"]) == EXIT_OK
    out = capsys.readouterr()
    assert json.loads(out.out)["status"] == "skipped" and out.err == ""  # --quiet: no note either
    assert open_store(str(tmp_path)).run_times("merged") == [run_time(1)]
    # On the grid: no note.
    assert main([*base, "--at", "2026-03-02T00:20Z"]) == EXIT_OK
    out = capsys.readouterr()
    assert json.loads(out.out)["status"] == "committed" and "snapped" not in out.err


# --- progress --------------------------------------------------------------------------------


def _counts(text: str) -> list[tuple[str, int, int]]:
    return [(label, int(d), int(t)) for label, d, t in re.findall(r"(\w+) \[[#-]+\] (\d+)/(\d+)", text)]


def test_progress_of_a_real_cycle_never_shows_more_done_than_total(tmp_path: Path) -> None:
    """Before: the price crawl reported every page it fetched, including the probes past the end of
    the list, against the list's length: ``prices 6/2`` here, ``49/48`` in the demo."""
    emu = emulator()
    out = io.StringIO()
    board = ProgressBoard(stream=out)
    store = open_store(str(tmp_path))
    report = run_cycle(
        run_time(0), store=store, azure=in_process_access(emu), clock=emu.clock, progress=board.bar
    )
    board.close()
    assert report.status is RunStatus.COMMITTED
    counts = _counts(out.getvalue())
    assert {label for label, _, _ in counts} >= {"prices", "sps"}
    assert all(done <= total for _, done, total in counts), out.getvalue()
    assert ("prices", 2, 2) in counts  # the last line says the whole list


def test_a_bar_caps_done_at_total_in_a_log_and_on_a_terminal() -> None:
    log = io.StringIO()
    bar = Progress("prices", stream=log)
    bar(3, None)
    bar(51, 48)
    bar.close("48 pages")
    assert "51/48" not in log.getvalue() and "prices [########################] 48/48" in log.getvalue()

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty = Tty()
    bar = Progress("prices", stream=tty)
    bar(51, 48)
    bar.close()
    assert "48/48" in tty.getvalue() and "51/48" not in tty.getvalue()


# --- the demo's run times --------------------------------------------------------------------


def _demo() -> ModuleType:
    spec = importlib.util.spec_from_file_location("spotlake_demo", ROOT / "examples" / "demo.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_the_demo_runs_end_at_the_last_grid_point_at_or_before_now() -> None:
    """Before: the demo wrote its runs at 00:00-00:20 UTC today, so "the last hour" was empty."""
    demo = _demo()
    now = datetime(2026, 3, 2, 14, 37, 12, tzinfo=UTC)
    assert demo.demo_run_times(now, 3) == [
        datetime(2026, 3, 2, 14, 10, tzinfo=UTC),
        datetime(2026, 3, 2, 14, 20, tzinfo=UTC),
        datetime(2026, 3, 2, 14, 30, tzinfo=UTC),
    ]
    on_grid = datetime(2026, 3, 2, 14, 30, tzinfo=UTC)
    assert demo.demo_run_times(on_grid, 1) == [on_grid]
    # A store whose last run is older than the window: a gap, then runs ending near now.
    assert demo.demo_run_times(now, 2, last=datetime(2026, 3, 2, 9, 0, tzinfo=UTC))[-1] == on_grid
    # A store that already holds runs in the window is continued after its last run.
    assert demo.demo_run_times(now, 2, last=on_grid) == [on_grid + timedelta(minutes=10 * i) for i in (1, 2)]
    # Today's real clock: the last run is within the last 10 minutes.
    last = demo.demo_run_times(datetime.now(UTC), 3)[-1]
    assert timedelta(0) <= datetime.now(UTC) - last < timedelta(minutes=10) and last.minute % 10 == 0
