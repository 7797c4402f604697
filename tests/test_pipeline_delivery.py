"""The outbox: each sink is owed runs on its own, a run a sink keeps refusing is parked, a backlog
is worked off a bounded amount per run, and a store from before outboxes gets its last run delivered.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from pipeline_support import emulator, in_process_access, run_time
from spotlake.errors import ConfigError, SinkError
from spotlake.pipeline import CycleOptions, RunReport, RunStatus, run_cycle
from spotlake.pipeline._delivery import MAX_ATTEMPTS
from spotlake.storage import open_store
from spotlake.testing.azure import AzureEmulator

#: A small catch-up budget, so the backlog test needs few cycles.
CATCH_UP = 3
OPTIONS = CycleOptions(delivery_catch_up=CATCH_UP)


class Recording:
    """A snapshot writer that records what it took and can refuse some runs, or everything."""

    def __init__(self, refuse: set[datetime] | None = None) -> None:
        self.got: list[datetime] = []
        self.refuse = refuse or set()
        self.down = False

    def write(self, snapshot: Any, *, run_at: datetime) -> None:
        if self.down or run_at in self.refuse:
            raise SinkError(f"refused the run of {run_at:%H:%M} (injected)")
        self.got.append(run_at)


class Other(Recording):
    """A second writer type, so both get their own outbox entries."""


def cycles(emu: AzureEmulator, store: Any, times: list[int], *sinks: Recording) -> list[RunReport]:
    out = []
    for i in times:
        emu.clock.set(run_time(i))  # type: ignore[attr-defined]
        out.append(
            run_cycle(
                run_time(i),
                store=store,
                azure=in_process_access(emu),
                extra_writers=list(sinks),
                clock=emu.clock,
                options=OPTIONS,
            )
        )
    return out


def test_a_sink_that_is_down_never_holds_back_another(tmp_path: Path) -> None:
    """Before: one delivery marker for all sinks, so a Timestream outage starved latest_azure.json."""
    emu = emulator()
    store = open_store(str(tmp_path))
    down, up = Recording(), Other()
    down.down = True
    reports = cycles(emu, store, [0, 1, 2], down, up)
    assert [r.status for r in reports] == [RunStatus.COMMITTED] * 3
    assert up.got == [run_time(0), run_time(1), run_time(2)], "the working sink got every run at once"
    assert reports[-1].undelivered == (run_time(0), run_time(1), run_time(2))
    down.down = False
    back = cycles(emu, store, [3], down, up)[0]
    assert down.got == [run_time(i) for i in range(4)] and back.undelivered == ()
    assert up.got == [run_time(i) for i in range(4)], "nothing delivered twice to the working sink"


def test_a_run_a_working_sink_keeps_refusing_is_parked_and_stops_blocking(tmp_path: Path) -> None:
    """Before: one run a sink always rejects blocked every later run for a week."""
    emu = emulator()
    store = open_store(str(tmp_path))
    sink = Recording(refuse={run_time(1)})
    # The refusal at its own commit, then MAX_ATTEMPTS refusals while the sink takes later runs.
    reports = cycles(emu, store, list(range(3 + MAX_ATTEMPTS)), sink)
    assert all(r.status is RunStatus.COMMITTED for r in reports)
    assert sink.got == [run_time(i) for i in range(3 + MAX_ATTEMPTS) if i != 1], "later runs flow past it"
    assert reports[-1].parked == (run_time(1),) and reports[-1].undelivered == ()
    assert "given up" in (reports[-1].delivery_error or "")


def test_a_long_backlog_is_worked_off_a_bounded_amount_per_run(tmp_path: Path) -> None:
    emu = emulator()
    store = open_store(str(tmp_path))
    sink = Recording()
    sink.down = True
    backlog = 2 * CATCH_UP + 2
    cycles(emu, store, list(range(backlog)), sink)
    sink.down = False
    owed = [len(r.undelivered) for r in cycles(emu, store, [backlog, backlog + 1, backlog + 2], sink)]
    # Each run delivers at most CATCH_UP owed runs, then its own.
    assert owed == [backlog - CATCH_UP, backlog - 2 * CATCH_UP, 0]
    assert sorted(sink.got) == [run_time(i) for i in range(backlog + 3)], "each run exactly once"


def test_a_store_from_before_outboxes_gets_its_last_run_delivered(tmp_path: Path) -> None:
    emu = emulator()
    store = open_store(str(tmp_path))
    cycles(emu, store, [0], Recording())  # no sink wanted it then...
    state = store.read_state()
    docs = {k: v for k, v in state.docs.items() if k != "outbox"}  # ...and no outbox, as 0.1 wrote it
    store.commit_state(expected_version=state.version, frames=state.frames, docs=docs, run_id="0.1")
    sink = Recording()
    report = cycles(emu, store, [1], sink)[0]
    assert report.status is RunStatus.COMMITTED
    assert sink.got == [run_time(0), run_time(1)], "the last run before the upgrade is delivered (once)"


def test_a_catch_up_budget_that_delivers_nothing_is_a_config_error() -> None:
    """Before: delivery_catch_up=0 was accepted, and a backlog was then never delivered."""
    for bad in (0, -1):
        with pytest.raises(ConfigError, match="delivery_catch_up"):
            CycleOptions(delivery_catch_up=bad)
