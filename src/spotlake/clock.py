"""Injectable time.

Everything in spotlake that reads the time or waits takes a :class:`Clock`. Production code uses
:class:`SystemClock`; tests, the emulator and the simulator use :class:`FakeClock`, whose ``sleep``
advances its own time instantly, so no test ever sleeps for real and every run is reproducible.

All datetimes are timezone-aware UTC.
"""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "FakeClock", "ShiftedClock", "SystemClock", "ensure_utc"]


def ensure_utc(value: datetime) -> datetime:
    """Return ``value`` as an aware UTC datetime; a naive value is taken to be UTC already."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


@runtime_checkable
class Clock(Protocol):
    """Reads the time and waits."""

    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards (for measuring durations)."""
        ...

    def sleep(self, seconds: float) -> None:
        """Block for ``seconds``."""
        ...

    async def asleep(self, seconds: float) -> None:
        """Wait ``seconds`` without blocking the event loop."""
        ...


class SystemClock:
    """The real clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)

    async def asleep(self, seconds: float) -> None:
        if seconds > 0:
            await asyncio.sleep(seconds)

    def __repr__(self) -> str:
        return "SystemClock()"


class ShiftedClock(SystemClock):
    """Real time, shifted: ``now()`` starts at a chosen instant and runs at the real pace, and sleeps
    are real. For replaying or simulating runs at other times against a live server (the demo sets
    it to each run time) where a :class:`FakeClock`'s instant sleeps would turn backoff into a storm.
    """

    def __init__(self, start: datetime) -> None:
        self._lock = threading.Lock()
        self.set(start)

    def set(self, when: datetime) -> None:
        """From now on, ``now()`` reads ``when`` plus the real time elapsed since this call."""
        with self._lock:
            self._offset = ensure_utc(when) - datetime.now(UTC)

    def now(self) -> datetime:
        with self._lock:
            return datetime.now(UTC) + self._offset

    def __repr__(self) -> str:
        return f"ShiftedClock(now={self.now().isoformat()})"


class FakeClock:
    """A clock that only moves when told to (or when something sleeps on it).

    ``sleep``/``asleep`` advance the time by the requested amount and return at once, so code
    that backs off for an hour finishes instantly in tests while seeing an hour pass.
    ``slept`` records every wait, for assertions about backoff. Thread-safe.
    """

    def __init__(self, start: datetime | None = None) -> None:
        self._now = ensure_utc(start or datetime(2026, 1, 1, tzinfo=UTC))
        self._mono = 0.0
        self._lock = threading.Lock()
        self.slept: list[float] = []

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def monotonic(self) -> float:
        with self._lock:
            return self._mono

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds`` (negative values are refused)."""
        if seconds < 0:
            raise ValueError(f"FakeClock cannot go backwards (asked to advance {seconds} s)")
        with self._lock:
            self._now += timedelta(seconds=seconds)
            self._mono += seconds

    def set(self, when: datetime) -> None:
        """Jump to ``when`` (forward or backward: wall clocks can be reset; monotonic time is kept)."""
        with self._lock:
            self._now = ensure_utc(when)

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            self.slept.append(seconds)
            self.advance(seconds)

    async def asleep(self, seconds: float) -> None:
        self.sleep(seconds)
        await asyncio.sleep(0)

    def __repr__(self) -> str:
        return f"FakeClock(now={self.now().isoformat()})"
