"""The SPS quota ledger: sliding windows per (subscription, location), 429 marks, persistence."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hypothesis_support import examples
from spotlake.collect.quota import DEFAULT_WINDOW, LedgerState, QuotaLedger, Slot
from spotlake.errors import ConfigError, CorruptStoreError
from spotlake.serde import dump_doc, load_doc

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)



def save(book: QuotaLedger, now: datetime | None = None) -> dict[str, Any]:
    """The ledger as the pipeline stores it (a versioned document)."""
    return dump_doc(book.state(now))


def reload(doc: dict[str, Any]) -> QuotaLedger:
    return QuotaLedger.from_state(load_doc(doc, LedgerState, where="test ledger"))

def ledger(subs: int = 2, locs: int = 2, budget: int = 10, window_s: float = 3600) -> QuotaLedger:
    return QuotaLedger(
        subscriptions=[f"sub-{i}" for i in range(subs)],
        locations=[f"loc{j}" for j in range(locs)],
        budget=budget,
        window=timedelta(seconds=window_s),
    )


def take(book: QuotaLedger, now: datetime) -> Slot | None:
    slot = book.acquire(now)
    if slot is not None:
        book.record(slot, now)
    return slot


def test_default_window_has_a_margin_over_the_servers_hour() -> None:
    assert timedelta(hours=1) < DEFAULT_WINDOW
    assert QuotaLedger(subscriptions=["s"], locations=["l"]).budget == 10


def test_single_slot_takes_budget_then_refuses_until_the_first_call_leaves_the_window() -> None:
    book = ledger(subs=1, locs=1, budget=10)
    for i in range(10):
        assert take(book, T0 + timedelta(seconds=i)) is not None
    assert book.acquire(T0 + timedelta(seconds=11)) is None  # the 11th call has nowhere to go
    assert book.capacity(T0 + timedelta(seconds=11)) == 0
    assert book.next_free_at(T0 + timedelta(seconds=11)) == T0 + timedelta(seconds=3600)
    assert book.acquire(T0 + timedelta(seconds=3600)) is not None


def test_eleventh_call_goes_to_another_slot() -> None:
    book = ledger(subs=1, locs=2, budget=10)
    used = [take(book, T0) for _ in range(11)]
    assert None not in used
    counts = {slot: used.count(slot) for slot in set(used)}
    assert sorted(counts.values()) == [5, 6]  # spread, not 10 + 1


def test_acquire_spreads_round_robin_over_subscriptions_first() -> None:
    book = ledger(subs=3, locs=2)
    order = [take(book, T0 + timedelta(seconds=i)) for i in range(6)]
    assert [s.subscription for s in order if s] == ["sub-0", "sub-1", "sub-2"] * 2
    assert len(set(order)) == 6
    # Next round starts again with the least recently used slot.
    assert take(book, T0 + timedelta(seconds=10)) == order[0]


def test_acquire_is_deterministic() -> None:
    a, b = ledger(subs=4, locs=3), ledger(subs=4, locs=3)
    for i in range(50):
        now = T0 + timedelta(seconds=7 * i)
        assert take(a, now) == take(b, now)


def test_mark_exhausted_skips_the_slot_until_then() -> None:
    book = ledger(subs=1, locs=2)
    first = book.acquire(T0)
    assert first is not None
    book.mark_exhausted(first, T0 + timedelta(seconds=600))
    for _ in range(10):
        assert take(book, T0) != first
    assert book.acquire(T0) is None
    assert book.next_free_at(T0) == T0 + timedelta(seconds=600)
    assert book.acquire(T0 + timedelta(seconds=600)) == first
    # An earlier mark never shortens a later one.
    book.mark_exhausted(first, T0 + timedelta(seconds=900))
    book.mark_exhausted(first, T0 + timedelta(seconds=700))
    assert book.exhausted_until(first, T0) == T0 + timedelta(seconds=900)


def test_capacity_and_snapshot() -> None:
    book = ledger(subs=2, locs=2, budget=3)
    assert book.capacity(T0) == 12
    take(book, T0)
    take(book, T0)
    snap = book.snapshot(T0)
    assert (snap.capacity, snap.calls_in_window, snap.slots, snap.next_free_at) == (10, 2, 4, T0)


def test_record_refuses_foreign_slots_and_bad_config() -> None:
    book = ledger()
    with pytest.raises(ConfigError):
        book.record(Slot(subscription="other", location="loc0"), T0)
    with pytest.raises(ConfigError):
        QuotaLedger(subscriptions=[], locations=["x"])
    with pytest.raises(ConfigError):
        QuotaLedger(subscriptions=["a"], locations=["x"], budget=0)
    with pytest.raises(ConfigError):
        QuotaLedger(subscriptions=["a/b"], locations=["x"])


def test_json_prunes_old_entries_and_round_trips() -> None:
    book = ledger(subs=2, locs=1, budget=10)
    take(book, T0)
    take(book, T0 + timedelta(seconds=3000))
    slot = book.slots[1]
    book.mark_exhausted(slot, T0 + timedelta(seconds=100))
    saved = save(book, now=T0 + timedelta(seconds=3700))
    assert sum(len(v) for v in saved["calls"].values()) == 1
    assert saved["exhausted"] == {}
    again = reload(json.loads(json.dumps(saved)))
    assert again == book
    assert save(again) == saved


def test_with_slots_keeps_history_of_surviving_slots() -> None:
    book = ledger(subs=2, locs=1, budget=2)
    take(book, T0)
    take(book, T0)
    grown = book.with_slots(locations=["loc0", "loc9"])
    assert grown.capacity(T0) == book.capacity(T0) + 4
    shrunk = book.with_slots(subscriptions=["sub-1"])
    assert shrunk.capacity(T0) == 1


def test_a_malformed_stored_ledger_is_a_clear_error() -> None:
    good = save(ledger())
    for bad in (
        {},
        {**good, "format": 99},
        {**good, "budget": "x"},
        {**good, "calls": {"nokey": ["x"]}},
        {**good, "calls": {"sub-0/loc0": ["not a time"]}},
        {**good, "calls": [1]},
    ):
        with pytest.raises((ConfigError, CorruptStoreError)):
            reload(bad)


# --- properties ------------------------------------------------------------------------------

steps = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=900),  # seconds to advance
        st.sampled_from(["call", "call", "call", "429"]),
        st.integers(min_value=0, max_value=7200),  # Retry-After for a 429
    ),
    max_size=120,
)


@settings(max_examples=examples(60), deadline=None)
@given(
    steps=steps,
    budget=st.integers(min_value=1, max_value=4),
    window=st.integers(min_value=60, max_value=4000),
)
def test_never_more_than_budget_calls_in_any_window(
    steps: list[tuple[int, str, int]], budget: int, window: int
) -> None:
    book = ledger(subs=2, locs=2, budget=budget, window_s=window)
    now = T0
    sent: dict[Slot, list[datetime]] = {}
    marks: dict[Slot, datetime] = {}
    for advance, action, retry_after in steps:
        now += timedelta(seconds=advance)
        slot = book.acquire(now)
        if slot is None:
            assert book.capacity(now) == 0
            free = book.next_free_at(now)
            assert free is not None and free > now
            continue
        assert marks.get(slot, T0) <= now  # a marked slot is never handed out
        book.record(slot, now)
        sent.setdefault(slot, []).append(now)
        if action == "429":
            until = now + timedelta(seconds=retry_after)
            book.mark_exhausted(slot, until)
            marks[slot] = max(marks.get(slot, until), until)
    span = timedelta(seconds=window)
    for stamps in sent.values():
        for i, start in enumerate(stamps):
            inside = [t for t in stamps[i:] if t < start + span]
            assert len(inside) <= budget


@settings(max_examples=examples(60), deadline=None)
@given(steps=steps)
def test_json_round_trip_preserves_decisions(steps: list[tuple[int, str, int]]) -> None:
    book = ledger(subs=2, locs=3, budget=3, window_s=1800)
    now = T0
    for advance, action, retry_after in steps:
        now += timedelta(seconds=advance)
        slot = take(book, now)
        if slot is not None and action == "429":
            book.mark_exhausted(slot, now + timedelta(seconds=retry_after))
    copy = reload(json.loads(json.dumps(save(book))))
    assert copy == book
    pruned = reload(save(book, now=now))
    for k in range(0, 4000, 250):
        later = now + timedelta(seconds=k)
        assert copy.capacity(later) == book.capacity(later) == pruned.capacity(later)
        assert copy.next_free_at(later) == book.next_free_at(later) == pruned.next_free_at(later)
        assert copy.acquire(later) == book.acquire(later) == pruned.acquire(later)


def test_from_support_uses_every_supported_region_as_a_location() -> None:
    pairs = {("westus", "A"), ("eastus", "A"), ("eastus", "B")}
    book = QuotaLedger.from_support(subscriptions=["s1", "s2"], support_pairs=pairs)
    assert book.locations == ("eastus", "westus") and len(book.slots) == 4


def test_round_robin_resumes_where_the_last_run_stopped() -> None:
    book = ledger(subs=3, locs=3)
    for i in range(4):
        take(book, T0 + timedelta(seconds=i))
    reloaded = reload(json.loads(json.dumps(save(book, now=T0 + timedelta(seconds=5)))))
    assert reloaded.acquire(T0 + timedelta(seconds=5)) == book.slots[4]
