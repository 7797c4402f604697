"""Progress output for long work (price crawls, SPS plans), for terminals and for cron logs.

Collectors accept a ``progress(done, total)`` callback; :class:`Progress` turns those calls into a
single updating line on a terminal, or into a few plain lines (every 25 %) when the output is a
file or a pipe, so cron mail and CloudWatch logs are not flooded. ``quiet=True`` prints nothing.
Output goes to stderr so ``--json`` output on stdout stays machine-readable.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO

__all__ = ["Progress"]


class Progress:
    """A named progress display; call the instance as ``progress(done, total)``."""

    def __init__(self, label: str, *, stream: TextIO | None = None, quiet: bool = False) -> None:
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.quiet = quiet
        self._tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._lock = threading.Lock()
        self._last_step = 0
        self._last_draw = 0.0
        self._started = time.monotonic()
        self._finished = False

    def __call__(self, done: int, total: int | None) -> None:
        if self.quiet or self._finished:
            return
        with self._lock:
            if self._tty:
                now = time.monotonic()
                if now - self._last_draw < 0.1 and (total is None or done < total):
                    return
                self._last_draw = now
                self.stream.write("\r" + self._line(done, total) + "\x1b[K")
                self.stream.flush()
            elif total:
                quarter = min(4, done * 4 // total)
                if quarter > self._last_step:
                    self._last_step = quarter
                    self.stream.write(self._line(done, total) + "\n")
                    self.stream.flush()

    def close(self, summary: str = "") -> None:
        """End the display, optionally with a summary line."""
        if self.quiet or self._finished:
            return
        self._finished = True
        with self._lock:
            elapsed = time.monotonic() - self._started
            end = f"{self.label}: {summary} ({elapsed:.1f} s)" if summary else ""
            if self._tty:
                self.stream.write("\r" + end + "\x1b[K\n" if end else "\n")
            elif end:
                self.stream.write(end + "\n")
            self.stream.flush()

    def _line(self, done: int, total: int | None) -> str:
        if total:
            width = 24
            filled = min(width, done * width // total)
            bar = "#" * filled + "-" * (width - filled)
            return f"{self.label} [{bar}] {done}/{total}"
        return f"{self.label} {done}"
