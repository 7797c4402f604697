"""The outbox: each sink is owed runs on its own, a run a sink keeps refusing is parked, a backlog
is worked off a bounded amount per run, and a store from before outboxes gets its last run delivered.
"""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from pipeline_support import emulator, in_process_access, run_time
from spotlake.errors import ConfigError, SinkError
from spotlake.pipeline import CycleOptions, RunReport, RunStatus, run_cycle
from spotlake.pipeline._delivery import MAX_ATTEMPTS
from spotlake.storage import ObjectStore, open_store
from spotlake.storage.local import LocalBackend
from spotlake.testing.azure import AzureEmulator
from spotlake.testing.backends import FaultyBackend

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


class Named(Recording):
    """A snapshot writer with a stable name (its target, say): how its deliveries are tracked."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name


def test_reordering_sinks_never_hands_one_sinks_deliveries_to_another(tmp_path: Path) -> None:
    """Before: a sink was its class name plus its position, so after a reorder B inherited A's
    delivery markers and never got the run it was owed, while A got a run twice."""
    emu = emulator()
    store = open_store(str(tmp_path))
    a, b = Named("bucket-a"), Named("bucket-b")
    b.down = True
    first = cycles(emu, store, [0], a, b)[0]
    assert first.undelivered == (run_time(0),)
    b.down = False
    last = cycles(emu, store, [1, 2], b, a)[-1]
    assert b.got == [run_time(0), run_time(1), run_time(2)], "B got the run it was owed"
    assert a.got == [run_time(0), run_time(1), run_time(2)], "A got each run once"
    assert last.undelivered == () and last.delivery_error is None


def test_a_run_without_a_sink_configured_keeps_what_that_sink_is_owed(tmp_path: Path) -> None:
    """Before: the entries owed to a sink left out of one run (or removed, or moved in the list)
    were dropped with a log line: not undelivered, not parked, no error."""
    emu = emulator()
    store = open_store(str(tmp_path))
    a, b = Named("bucket-a"), Named("bucket-b")
    a.down = True
    cycles(emu, store, [0], a, b)
    a.down = False
    without = cycles(emu, store, [1], b)[0]  # a run (a manual one, say) without A
    assert without.status is RunStatus.COMMITTED
    assert without.undelivered == (run_time(0),), "A is still owed the run of 00:00"
    assert "bucket-a" in (without.delivery_error or "") and "not configured" in (without.delivery_error or "")
    assert without.parked == ()
    back = cycles(emu, store, [2], a, b)[0]
    assert a.got == [run_time(0), run_time(2)], "configured again, A gets its backlog"
    assert b.got == [run_time(0), run_time(1), run_time(2)]
    assert back.undelivered == () and back.delivery_error is None


def test_what_a_sink_no_longer_configured_is_owed_is_given_up_on_after_a_week(tmp_path: Path) -> None:
    emu = emulator()
    store = open_store(str(tmp_path))
    a, b = Named("bucket-a"), Named("bucket-b")
    a.down = True
    cycles(emu, store, [0], a, b)
    assert cycles(emu, store, [1], b)[0].undelivered == (run_time(0),)
    week = 7 * 24 * 6  # runs in a week
    late = cycles(emu, store, [week + 1], b)[0]
    assert late.parked == (run_time(0),) and late.undelivered == ()
    assert "given up" in (late.delivery_error or "")


def test_two_sinks_with_one_name_are_a_config_error(tmp_path: Path) -> None:
    emu = emulator()
    store = open_store(str(tmp_path))
    with pytest.raises(ConfigError, match="bucket-a"):
        cycles(emu, store, [0], Named("bucket-a"), Named("bucket-a"))
    with pytest.raises(ConfigError, match="name"):
        cycles(emu, store, [0], Recording(), Recording())  # unnamed: known by their class alone
    with pytest.raises(ConfigError, match="sink name"):
        cycles(emu, store, [0], Named("no/slashes"))


def test_a_catch_up_budget_that_delivers_nothing_is_a_config_error() -> None:
    """Before: delivery_catch_up=0 was accepted, and a backlog was then never delivered."""
    for bad in (0, -1):
        with pytest.raises(ConfigError, match="delivery_catch_up"):
            CycleOptions(delivery_catch_up=bad)


def test_a_sink_down_for_a_whole_run_is_not_counted_as_refusing_a_run(tmp_path: Path) -> None:
    """Before: a delivery marker written by an earlier run counted as "the sink takes runs now",
    so a sink down for the whole run was counted as refusing the owed run it failed."""
    emu = emulator()
    store = open_store(str(tmp_path))
    sink = Recording(refuse={run_time(1)})
    reports = []
    for i in range(2 + 2 * MAX_ATTEMPTS):
        sink.down = i % 2 == 0 and i > 0  # down for every even run after the first
        reports.extend(cycles(emu, store, [i], sink))
    parked = [r.at for r in reports if r.parked]
    # Refusals count only in the runs the sink was up (runs 3, 5, 7): parked at the third.
    assert parked == [run_time(1 + 2 * MAX_ATTEMPTS)]
    assert run_time(1) not in sink.got


def test_a_delivery_whose_marker_could_not_be_written_is_not_called_a_refusal(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Before: the sink took the run, the marker write failed, and the run was reported and logged
    as not fed (and, on a re-delivery, counted as the sink refusing it)."""
    emu = emulator()
    markers = FaultyBackend(
        LocalBackend(tmp_path),
        fail_when=lambda op, key: op == "put" and key.startswith("delivered/"),
        fail_at=1,
    )
    store = ObjectStore(markers)
    sink = Recording()
    with caplog.at_level(logging.WARNING):
        first = cycles(emu, store, [0], sink)[0]
    assert markers.failed is not None and sink.got == [run_time(0)]
    assert "marker" in (first.delivery_error or "") and "not fed" not in caplog.text
    assert first.undelivered == (run_time(0),), "no marker: it is delivered again"
    second = cycles(emu, store, [1], sink)[0]
    assert sink.got == [run_time(0), run_time(0), run_time(1)] and second.undelivered == ()
    assert second.delivery_error is None


def test_runs_owed_under_the_names_of_before_sinks_had_names_are_still_delivered(tmp_path: Path) -> None:
    """Sinks used to be named by class (and position): a store upgraded with runs owed under
    those names delivers them to the one sink the old name can mean, instead of keeping them as
    owed to a sink nobody configures."""
    emu = emulator()
    store = open_store(str(tmp_path))
    a = Named("bucket-a")
    a.down = True
    cycles(emu, store, [0], a)
    state = store.read_state()
    outbox = dict(state.docs["outbox"])
    outbox["owed"] = [{**entry, "sink": "named"} for entry in outbox["owed"]]  # as 0.2 wrote it
    store.commit_state(
        expected_version=state.version, frames=state.frames, docs={**state.docs, "outbox": outbox}
    )
    a.down = False
    report = cycles(emu, store, [1], a)[0]
    assert a.got == [run_time(0), run_time(1)]
    assert report.undelivered == () and report.delivery_error is None
