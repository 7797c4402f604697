"""Collection against faulty SPS, checked against the emulator world's ground truth.

The world answers every (region, size, zone) of every call the same way whether or not a fault
hits it, and its support set never changes. So across many cycles with 500s, timeouts, 429s and
quota exhaustion: no key may cease (each ceased row would be false), no cell may lose its T2/T3,
and every (region, size) a run planned is either answered or reported unknown, never both.
"""

from __future__ import annotations

from pathlib import Path

import attrs
import pytest

from pipeline_support import credentials_of, emulator, in_process_access, run_time, small_world
from spotlake.model import Source
from spotlake.pipeline import CycleOptions, RunReport, RunStatus, run_cycle
from spotlake.pipeline.state import PLAN_DOC, DayPlan
from spotlake.serde import load_doc
from spotlake.storage import open_store
from spotlake.testing.azure import EndpointFaults, Faults

CYCLES = 14


#: The adversarial run's mix (20 % 500s, 10 % 429s, 8 % timeouts), and a heavier one under which
#: calls also run out of retries.
FAULTS = {
    "as-found": EndpointFaults(errors={500: 0.2, 429: 0.1}, timeout_rate=0.08, seed=1),
    "heavy": EndpointFaults(errors={500: 0.45, 429: 0.1}, timeout_rate=0.2, seed=2),
}


def faulty_cycles(tmp_path: Path, kind: str) -> tuple[list[RunReport], object]:
    emu = emulator(small_world(), faults=Faults(sps=FAULTS[kind]))
    creds = credentials_of(emu)
    # Two subscriptions over three URL locations at 8 calls an hour: about what six runs of the
    # plan's 8 calls need, less the retries the faults cost, so quota runs out now and then too.
    access = attrs.evolve(
        in_process_access(emu), credentials=attrs.evolve(creds, subscriptions=creds.subscriptions[:2])
    )
    locations = tuple(r.name for r in emu.world.regions[:3])
    options = CycleOptions(sps_budget=8, sps_locations=locations)
    store = open_store(str(tmp_path / f"faulty-{kind}"))
    reports = []
    for i in range(CYCLES):
        emu.clock.set(run_time(i))  # type: ignore[attr-defined]
        reports.append(run_cycle(run_time(i), store=store, azure=access, options=options, clock=emu.clock))
    return reports, store


@pytest.mark.parametrize("kind", sorted(FAULTS))
def test_faulty_sps_never_fakes_a_ceased_row_loses_no_tier_and_reports_every_unknown_pair(
    tmp_path: Path, kind: str
) -> None:
    reports, store = faulty_cycles(tmp_path, kind)
    committed = [r for r in reports if r.status is RunStatus.COMMITTED]
    assert len(committed) >= CYCLES // 3, [(r.status, r.error) for r in reports]
    reasons = {f.reason.split(":")[0] for r in committed for f in r.collectors[Source.SPS].failures}
    # Quota ran out too: some calls of committed runs, or whole runs (retried next run).
    assert "quota" in reasons or any("(quota)" in (r.error or "") for r in reports), reasons
    if kind == "heavy":
        assert "retries-exhausted" in reasons, reasons

    observed_cells: set[tuple[object, ...]] = set()
    for report in committed:
        at = report.at
        changes = store.read_frame(kind="changes", at=at)  # type: ignore[attr-defined]
        raw = store.read_frame(kind="raw", source="sps", at=at)  # type: ignore[attr-defined]
        assert changes is not None and raw is not None
        # No ceased row: the world still answers every key.
        ceased = changes[changes["change"] == "ceased"]
        assert ceased.empty, (at, ceased[["size", "region", "zone", "desired_count"]].head())
        # Every planned pair is answered or reported unknown, and none is both.
        plan = plan_at(store, report)
        answered = set(zip(raw["region"].astype(str), raw["size"].astype(str), strict=True))
        unknown = set(report.unknown.pairs)
        assert report.unknown.count == len(unknown)
        assert not answered & unknown, (at, sorted(answered & unknown)[:5])
        missing = plan.covered() - answered - unknown
        assert not missing, (at, sorted(missing)[:5])
        if report.failed_calls:
            assert unknown, at
        observed_cells |= set(
            changes.loc[changes["change"] == "new", ["size", "region", "zone"]].itertuples(index=False)
        )

    # No T2/T3 lost: every cell ever observed is still in the state, with its tiers.
    view = store.read_state().frames["rows"]  # type: ignore[attr-defined]
    in_state = set(view[["size", "region", "zone"]].itertuples(index=False))
    assert observed_cells <= in_state, sorted(observed_cells - in_state)[:5]
    assert view["t2"].notna().all() and view["t3"].notna().all()


def plan_at(store: object, report: RunReport) -> object:
    """The day plan the run used (the state committed by the run holds it)."""
    from spotlake.storage import ObjectStore

    assert isinstance(store, ObjectStore)
    state = store.read_state(frames=False)
    day = load_doc(state.docs[PLAN_DOC], DayPlan, where="test")
    assert day.date == report.at.date()
    return day.plan
