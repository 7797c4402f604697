"""Desired-count rotation: one count per run, count 1 and a new plan each UTC day, no silent skips."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hypothesis_support import examples
from spotlake.clock import FakeClock
from spotlake.errors import ConfigError, CorruptStoreError
from spotlake.model import DESIRED_COUNTS
from spotlake.scoring.rotation import (
    DEFAULT_MAX_ATTEMPTS,
    RotationState,
    RunDecision,
    begin_run,
    finish_run,
    learn_invalid,
)
from spotlake.serde import dump_doc, load_doc

START = datetime(2026, 3, 1, 0, 5, tzinfo=UTC)


def run_once(state: RotationState, clock: FakeClock, ok: bool = True) -> tuple[RunDecision, RotationState]:
    decision = begin_run(state, clock.now())
    new_state = finish_run(state, decision, succeeded=ok)
    clock.advance(600)
    return decision, new_state


def test_first_run_collects_count_one_and_builds_the_plan() -> None:
    decision = begin_run(RotationState(), START)
    assert decision.desired_count == 1
    assert decision.new_day and decision.rebuild_plan
    assert decision.day == date(2026, 3, 1)
    assert decision.attempt == 1 and not decision.retry


def test_a_day_of_successful_runs_cycles_through_every_count() -> None:
    clock = FakeClock(START)
    state = RotationState()
    seen: list[int] = []
    rebuilds = 0
    for _ in range(30):
        decision, state = run_once(state, clock)
        seen.append(decision.desired_count)
        rebuilds += decision.rebuild_plan
    assert seen == [*DESIRED_COUNTS, *DESIRED_COUNTS, *DESIRED_COUNTS[:8]]
    assert rebuilds == 1  # only the day's first run rebuilds the plan


def test_a_failed_run_is_retried_not_skipped() -> None:
    clock = FakeClock(START)
    state = RotationState()
    _, state = run_once(state, clock)  # count 1 ok
    first, state = run_once(state, clock, ok=False)  # count 5 fails
    assert first.desired_count == 5
    retry, state = run_once(state, clock)
    assert retry.desired_count == 5 and retry.retry and retry.attempt == 2
    after, _ = run_once(state, clock)
    assert after.desired_count == 10 and after.attempt == 1


def test_a_count_failing_max_attempts_times_is_skipped_explicitly() -> None:
    clock = FakeClock(START)
    state = RotationState()
    _, state = run_once(state, clock)
    for attempt in range(1, DEFAULT_MAX_ATTEMPTS + 1):
        decision, state = run_once(state, clock, ok=False)
        assert (decision.desired_count, decision.attempt) == (5, attempt)
    assert state.skipped == 1 and state.last_skipped == 5
    nxt, _ = run_once(state, clock)
    assert nxt.desired_count == 10 and nxt.attempt == 1


def test_a_partly_failed_first_run_of_the_day_adopts_the_day_and_retries_count_one() -> None:
    clock = FakeClock(START)
    state = RotationState()
    for _ in range(5):
        _, state = run_once(state, clock)
    clock.set(datetime(2026, 3, 2, 0, 1, tzinfo=UTC))
    decision, state = run_once(state, clock, ok=False)
    assert decision.new_day and decision.rebuild_plan and decision.desired_count == 1
    # The run committed its plan: the day is adopted, so later runs reuse the plan and retry count 1.
    assert state.day == date(2026, 3, 2) and state.index == 0
    decision, state = run_once(state, clock, ok=False)
    assert not decision.new_day and not decision.rebuild_plan
    assert (decision.desired_count, decision.attempt) == (1, 2)
    decision, state = run_once(state, clock, ok=False)
    assert decision.attempt == DEFAULT_MAX_ATTEMPTS
    assert state.index == 1 and state.skipped == 1 and state.last_skipped == 1, "skipped, and recorded"


def test_the_utc_date_decides_the_day_not_the_local_one() -> None:
    state = finish_run(RotationState(), begin_run(RotationState(), START), succeeded=True)
    # 2026-03-01 20:00 in UTC-5 is already 2026-03-02 01:00 UTC: a new day.
    local = datetime(2026, 3, 1, 20, 0, tzinfo=timezone(timedelta(hours=-5)))
    decision = begin_run(state, local)
    assert decision.new_day and decision.day == date(2026, 3, 2)
    # A naive datetime is taken as UTC.
    assert not begin_run(state, datetime(2026, 3, 1, 23, 59)).new_day


def test_mid_cycle_day_change_restarts_at_count_one() -> None:
    clock = FakeClock(datetime(2026, 3, 1, 23, 0, tzinfo=UTC))
    state = RotationState()
    counts = []
    for _ in range(9):
        decision, state = run_once(state, clock)
        counts.append((decision.day.day, decision.desired_count))
    assert counts[:6] == [(1, 1), (1, 5), (1, 10), (1, 15), (1, 20), (1, 25)]
    assert counts[6:] == [(2, 1), (2, 5), (2, 10)]


def test_state_round_trips_through_json() -> None:
    state = learn_invalid(
        RotationState(index=3, day=date(2026, 3, 1), attempts=1, skipped=2, last_skipped=20),
        regions=["nowhere"],
        sizes=["Standard_X1"],
        pairs=[("eastus", "Standard_Y2")],
    )
    text = json.dumps(dump_doc(state))
    assert len(text) < 400
    assert load_doc(json.loads(text), RotationState, where="test") == state


def test_a_malformed_stored_state_is_a_clear_error() -> None:
    good = dump_doc(RotationState())
    with pytest.raises(CorruptStoreError, match="format"):
        load_doc({**good, "format": 2}, RotationState, where="test")
    with pytest.raises(CorruptStoreError, match="day"):
        load_doc({**good, "day": "yesterday"}, RotationState, where="test")
    with pytest.raises(CorruptStoreError, match="rotation index"):
        load_doc({**good, "index": 11}, RotationState, where="test")
    with pytest.raises(ConfigError, match="desired counts"):
        RotationState(counts=(1, 1))


def test_learn_invalid_deduplicates_and_sorts() -> None:
    state = learn_invalid(RotationState(), sizes=["b", "a"], regions=["x"])
    state = learn_invalid(state, sizes=["a", "c"], pairs=[("r", "s"), ("r", "s")])
    assert state.invalid_sizes == ("a", "b", "c")
    assert state.invalid_regions == ("x",)
    assert state.invalid_pairs == (("r", "s"),)


def test_finish_run_refuses_a_decision_from_another_rotation() -> None:
    decision = begin_run(RotationState(), START)
    with pytest.raises(ConfigError, match="does not belong"):
        finish_run(RotationState(counts=(2, 4)), decision, succeeded=True)
    with pytest.raises(ConfigError, match="max_attempts"):
        finish_run(RotationState(), decision, succeeded=False, max_attempts=0)


@settings(max_examples=examples(80), deadline=None)
@given(outcomes=st.lists(st.tuples(st.integers(1, 400), st.booleans()), min_size=1, max_size=120))
def test_no_count_is_ever_skipped_silently(outcomes: list[tuple[int, bool]]) -> None:
    """Within a day, the counts of successful runs follow the rotation; every gap is a recorded skip."""
    clock = FakeClock(START)
    state = RotationState()
    expected_next: int | None = None  # index the next run must use, unless a new day starts
    for minutes, ok in outcomes:
        decision = begin_run(state, clock.now())
        if decision.new_day:
            assert decision.index == 0 and decision.rebuild_plan
        else:
            assert decision.index == expected_next
        before = state.skipped
        state = finish_run(state, decision, succeeded=ok)
        n = len(state.counts)
        if ok:
            assert state.index == (decision.index + 1) % n and state.day == decision.day
        elif state.skipped == before + 1:
            assert decision.attempt == DEFAULT_MAX_ATTEMPTS and state.index == (decision.index + 1) % n
        else:
            assert state.index == decision.index and state.attempts == decision.attempt
        expected_next = state.index
        clock.advance(minutes * 60)
