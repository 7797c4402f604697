"""The SPS quota ledger: which (subscription, URL location) slot may take the next call, and when.

The Spot Placement Scores API allows about **10 calls per hour per (subscription, URL location)**
pair (observed in production, not documented; see docs/sps-and-credentials.md). The ``{loc}`` in the
URL only routes the call, so every (subscription, location) pair is an independent *slot* with its
own budget, and the collector spreads its calls over all of them.

:class:`QuotaLedger` is pure bookkeeping driven by the times it is given (no clock, no I/O):

- a sliding window per slot holding the timestamps of the calls sent through it;
- "over limit until T" marks learned from 429 answers (``Retry-After`` or the plain-text
  "try again after N seconds"): the server knows better than our count, so a mark wins;
- :meth:`QuotaLedger.acquire` picks a slot deterministically: round-robin over a fixed order of
  subscriptions x locations (location-major, so consecutive calls change subscription first),
  skipping spent or marked slots. That spreads the load evenly and costs O(1) per call even with
  thousands of slots (the original's 91 subscriptions x 56 locations); the cursor is persisted;
- :meth:`QuotaLedger.state` / :meth:`QuotaLedger.from_state` persist it between runs as a
  :class:`LedgerState` (entries older than the window are pruned on save, so the state stays small).

Defaults and why: ``budget=10`` is the observed server limit. ``window=62 min`` (not 60) because
our timestamp is taken *before* the request leaves and the server stamps it on arrival, and the two
clocks may disagree by a little: a window two minutes longer than the server's means an entry never
expires on our side before it has expired on the server's (the original system used 62 minutes
for the same reason). Both are configurable; a 429 teaches the ledger anyway.

The ledger is a small mutable object; :meth:`QuotaLedger.copy` gives an independent copy (the SPS
collector works on a copy, so the caller's ledger is untouched if a run fails) and
:meth:`QuotaLedger.snapshot` a frozen summary for reports.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import ClassVar, Final

import attrs

from spotlake.clock import ensure_utc
from spotlake.errors import ConfigError

__all__ = [
    "DEFAULT_BUDGET",
    "DEFAULT_WINDOW",
    "LedgerSnapshot",
    "LedgerState",
    "QuotaLedger",
    "Slot",
]

#: Calls per slot per window: the limit observed in production.
DEFAULT_BUDGET: Final = 10
#: The server's window is one hour; two minutes of margin for clock skew and request latency.
DEFAULT_WINDOW: Final = timedelta(minutes=62)


@attrs.frozen(kw_only=True)
class LedgerState:
    """A ledger as it is persisted (``spotlake.serde`` turns it into a small JSON document).

    ``calls`` and ``exhausted`` are keyed by :attr:`Slot.key`; ``next`` is the slot the round-robin
    cursor points at.
    """

    DOC_FORMAT: ClassVar[int] = 1

    budget: int
    window: timedelta
    subscriptions: tuple[str, ...]
    locations: tuple[str, ...]
    calls: dict[str, tuple[datetime, ...]] = attrs.field(factory=dict)
    exhausted: dict[str, datetime] = attrs.field(factory=dict)
    next: str | None = None


@attrs.frozen(kw_only=True, order=True)
class Slot:
    """One (subscription, URL location) pair: the unit the SPS quota is counted on."""

    subscription: str
    location: str

    def __str__(self) -> str:
        # Subscription ids are identifiers, not secrets; a short prefix keeps messages readable.
        return f"{self.subscription[:8]}…/{self.location}"

    @property
    def key(self) -> str:
        """Stable string key used in the persisted JSON."""
        return f"{self.subscription}/{self.location}"


@attrs.frozen(kw_only=True)
class LedgerSnapshot:
    """A frozen summary of the ledger at one time (for reports, logs and the CLI)."""

    at: datetime
    slots: int
    budget: int
    window_seconds: float
    capacity: int
    calls_in_window: int
    exhausted_slots: int
    next_free_at: datetime | None


def _clean_ids(values: Iterable[str], kind: str) -> tuple[str, ...]:
    out: list[str] = []
    for raw in values:
        value = str(raw).strip()
        if not value:
            raise ConfigError(f"quota ledger: empty {kind} name")
        if "/" in value:
            raise ConfigError(f"quota ledger: {kind} {value!r} must not contain '/'")
        if value not in out:
            out.append(value)
    if not out:
        raise ConfigError(f"quota ledger: at least one {kind} is needed to make SPS calls")
    return tuple(out)


class QuotaLedger:
    """Sliding-window call budget per (subscription, URL location) slot.

    Not thread-safe: one event loop (one collector) uses a ledger at a time.
    """

    def __init__(
        self,
        *,
        subscriptions: Sequence[str],
        locations: Sequence[str],
        budget: int = DEFAULT_BUDGET,
        window: timedelta = DEFAULT_WINDOW,
    ) -> None:
        if budget < 1:
            raise ConfigError(f"quota ledger: budget must be at least 1 call per window, got {budget}")
        if window <= timedelta(0):
            raise ConfigError(f"quota ledger: window must be positive, got {window}")
        self._subscriptions = _clean_ids(subscriptions, "subscription")
        self._locations = _clean_ids(locations, "location")
        self._budget = budget
        self._window = window
        # Fixed slot order: location-major, so consecutive slots differ in subscription and the
        # tie-break spreads load over subscriptions first (each subscription also has ARM-wide
        # request limits), then over locations.
        self._slots: tuple[Slot, ...] = tuple(
            Slot(subscription=s, location=loc) for loc in self._locations for s in self._subscriptions
        )
        self._order: dict[Slot, int] = {slot: i for i, slot in enumerate(self._slots)}
        self._calls: dict[Slot, deque[datetime]] = {}
        self._exhausted: dict[Slot, datetime] = {}
        self._cursor = 0  # index of the next slot to try
        # "No slot is free from checked_at until until": time alone frees slots, and recording a
        # call or marking a slot never does, so this answer stays right until ``until``.
        self._none_free: tuple[datetime, datetime] | None = None

    @classmethod
    def from_support(
        cls,
        *,
        subscriptions: Sequence[str],
        support_pairs: Iterable[tuple[str, str]],
        budget: int = DEFAULT_BUDGET,
        window: timedelta = DEFAULT_WINDOW,
    ) -> QuotaLedger:
        """A ledger whose URL locations are every region of the support set ((region, size) pairs):
        the most slots the subscriptions can offer, all of them valid routes."""
        locations = sorted({region for region, _size in support_pairs})
        return cls(subscriptions=subscriptions, locations=locations, budget=budget, window=window)

    # --- introspection -----------------------------------------------------------------------

    @property
    def budget(self) -> int:
        """Calls allowed per slot per window."""
        return self._budget

    @property
    def window(self) -> timedelta:
        """Length of the sliding window."""
        return self._window

    @property
    def subscriptions(self) -> tuple[str, ...]:
        return self._subscriptions

    @property
    def locations(self) -> tuple[str, ...]:
        return self._locations

    @property
    def slots(self) -> tuple[Slot, ...]:
        """Every slot, in the ledger's fixed order."""
        return self._slots

    def calls(self, slot: Slot, now: datetime) -> tuple[datetime, ...]:
        """Timestamps of the calls through ``slot`` still inside the window at ``now``."""
        return tuple(self._live(slot, ensure_utc(now)))

    def exhausted_until(self, slot: Slot, now: datetime) -> datetime | None:
        """When the server's over-limit mark on ``slot`` ends, if it is still in force at ``now``."""
        until = self._exhausted.get(slot)
        return until if until is not None and until > ensure_utc(now) else None

    def __repr__(self) -> str:
        return (
            f"QuotaLedger(subscriptions={len(self._subscriptions)}, locations={len(self._locations)}, "
            f"budget={self.budget}, window={self.window})"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, QuotaLedger):
            return NotImplemented
        return self.state() == other.state()

    __hash__ = None  # type: ignore[assignment]  # mutable

    # --- the core ----------------------------------------------------------------------------

    def _live(self, slot: Slot, now: datetime) -> deque[datetime]:
        """The slot's window, pruned of calls that left it by ``now``."""
        calls = self._calls.get(slot)
        if calls is None:
            return deque()
        horizon = now - self.window
        while calls and calls[0] <= horizon:
            calls.popleft()
        if not calls:
            del self._calls[slot]
        return calls

    def _free_at(self, slot: Slot, now: datetime) -> datetime:
        """Earliest time (>= now) at which ``slot`` can take a call."""
        at = now
        until = self._exhausted.get(slot)
        if until is not None and until > at:
            at = until
        calls = self._live(slot, now)
        if len(calls) >= self.budget:
            # The call that must leave the window for one to free up.
            at = max(at, calls[len(calls) - self.budget] + self.window)
        return at

    def is_free(self, slot: Slot, now: datetime) -> bool:
        """True when ``slot`` may take a call at ``now``."""
        return self._free_at(slot, ensure_utc(now)) <= ensure_utc(now)

    def acquire(self, now: datetime) -> Slot | None:
        """The slot the next call should use at ``now``, or ``None`` when every slot is spent.

        Round-robin from the slot after the last one recorded, skipping slots that are full or
        marked over-limit. Does not record anything: call :meth:`record` when the call is sent.
        """
        now = ensure_utc(now)
        cached = self._none_free
        if cached is not None and cached[0] <= now < cached[1]:
            return None
        n = len(self._slots)
        for k in range(n):
            slot = self._slots[(self._cursor + k) % n]
            if self._free_at(slot, now) <= now:
                return slot
        free_at = self.next_free_at(now)
        if free_at is not None:
            self._none_free = (now, free_at)
        return None

    def record(self, slot: Slot, now: datetime) -> None:
        """Count one call sent through ``slot`` at ``now`` (the round-robin moves past it)."""
        self._check_slot(slot)
        now = ensure_utc(now)
        calls = self._calls.setdefault(slot, deque())
        if calls and now < calls[-1]:
            # Keep the window sorted even if the wall clock was set back.
            items = sorted([*calls, now])
            calls.clear()
            calls.extend(items)
        else:
            calls.append(now)
        self._cursor = (self._order[slot] + 1) % len(self._slots)

    def mark_exhausted(self, slot: Slot, until: datetime) -> None:
        """The server said ``slot`` is over its limit until ``until`` (a later mark wins)."""
        self._check_slot(slot)
        until = ensure_utc(until)
        current = self._exhausted.get(slot)
        if current is None or until > current:
            self._exhausted[slot] = until

    def capacity(self, now: datetime) -> int:
        """How many calls the ledger can still place at ``now`` over all slots."""
        now = ensure_utc(now)
        total = 0
        for slot in self._slots:
            until = self._exhausted.get(slot)
            if until is not None and until > now:
                continue
            total += max(0, self.budget - len(self._live(slot, now)))
        return total

    def next_free_at(self, now: datetime) -> datetime | None:
        """``now`` if a slot is free, else when the first one frees up (``None`` if there are no slots)."""
        now = ensure_utc(now)
        best: datetime | None = None
        for slot in self._slots:
            at = self._free_at(slot, now)
            if at <= now:
                return now
            if best is None or at < best:
                best = at
        return best

    def snapshot(self, now: datetime) -> LedgerSnapshot:
        """A frozen summary at ``now``."""
        now = ensure_utc(now)
        in_window = sum(len(self._live(slot, now)) for slot in list(self._calls))
        exhausted = sum(1 for until in self._exhausted.values() if until > now)
        return LedgerSnapshot(
            at=now,
            slots=len(self._slots),
            budget=self.budget,
            window_seconds=self.window.total_seconds(),
            capacity=self.capacity(now),
            calls_in_window=in_window,
            exhausted_slots=exhausted,
            next_free_at=self.next_free_at(now),
        )

    def _check_slot(self, slot: Slot) -> None:
        if slot not in self._order:
            raise ConfigError(f"quota ledger: {slot} is not one of this ledger's slots")

    # --- copies and persistence ------------------------------------------------------------

    def copy(self) -> QuotaLedger:
        """An independent copy (same slots, windows and marks)."""
        return self.with_slots(subscriptions=self._subscriptions, locations=self._locations)

    def with_slots(
        self,
        *,
        subscriptions: Sequence[str] | None = None,
        locations: Sequence[str] | None = None,
        budget: int | None = None,
        window: timedelta | None = None,
    ) -> QuotaLedger:
        """A new ledger over other subscriptions/locations (or limits), keeping the history of every
        slot that survives. Use it when the credentials or the location list changed between runs."""
        out = QuotaLedger(
            subscriptions=self._subscriptions if subscriptions is None else subscriptions,
            locations=self._locations if locations is None else locations,
            budget=self.budget if budget is None else budget,
            window=self.window if window is None else window,
        )
        for slot, calls in self._calls.items():
            if slot in out._order and calls:
                out._calls[slot] = deque(calls)
        for slot, until in self._exhausted.items():
            if slot in out._order:
                out._exhausted[slot] = until
        if self._slots:
            out._cursor = out._order.get(self._slots[self._cursor], 0)
        return out

    def state(self, now: datetime | None = None) -> LedgerState:
        """What to persist. With ``now``, calls that left the window and expired marks are pruned
        first (do pass it when saving: the state stays small)."""
        if now is not None:
            now = ensure_utc(now)
            for slot in list(self._calls):
                self._live(slot, now)
            self._exhausted = {s: u for s, u in self._exhausted.items() if u > now}
        return LedgerState(
            budget=self.budget,
            window=self.window,
            subscriptions=self._subscriptions,
            locations=self._locations,
            calls={slot.key: tuple(calls) for slot, calls in sorted(self._calls.items()) if calls},
            exhausted={slot.key: until for slot, until in sorted(self._exhausted.items())},
            next=self._slots[self._cursor].key,
        )

    @classmethod
    def from_state(cls, state: LedgerState) -> QuotaLedger:
        """The ledger :meth:`state` described; slots of other subscriptions/locations are dropped."""
        ledger = cls(
            subscriptions=state.subscriptions,
            locations=state.locations,
            budget=state.budget,
            window=state.window,
        )
        for key, stamps in state.calls.items():
            slot = ledger._slot_for_key(key)
            if slot is not None:
                ledger._calls[slot] = deque(sorted(ensure_utc(t) for t in stamps))
        for key, until in state.exhausted.items():
            slot = ledger._slot_for_key(key)
            if slot is not None:
                ledger._exhausted[slot] = ensure_utc(until)
        if state.next is not None:
            slot = ledger._slot_for_key(state.next)
            ledger._cursor = ledger._order[slot] if slot is not None else 0
        return ledger

    def _slot_for_key(self, key: str) -> Slot | None:
        sub, sep, loc = key.rpartition("/")
        if not sep:
            raise ConfigError(f"quota ledger state has a malformed slot key {key!r}")
        slot = Slot(subscription=sub, location=loc)
        return slot if slot in self._order else None
