"""Progress output for long work (price crawls, SPS plans), for terminals and for cron logs.

Collectors accept a ``progress(done, total)`` callback; :class:`Progress` turns those calls into a
single updating line on a terminal, or into a few plain lines (every 25 %) when the output is a
file or a pipe, so cron mail and CloudWatch logs are not flooded. ``quiet=True`` prints nothing.
Output goes to stderr so ``--json`` output on stdout stays machine-readable.

Collectors run concurrently (prices and SPS overlap), so bars that share a terminal are drawn by one
:class:`ProgressBoard` on one line (``prices [#####-----] 120/223 | sps [##--------] 30/793``); each
bar's summary line is printed above it when the bar closes.

A bar never shows more done than its total: ``done`` is capped at ``total``. The price crawl reports
every page it fetched, including the probe pages it requests past the end of the list to find that
end (``49/48`` before the cap), and a total that is learned late must not make the display lie.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO

__all__ = ["Progress", "ProgressBoard"]

_WIDTH = 24  # bar width for one bar on the line; shared lines split it


class ProgressBoard:
    """The bars sharing one output stream; on a terminal they are redrawn together on one line."""

    def __init__(self, *, stream: TextIO | None = None, quiet: bool = False) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.quiet = quiet
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._lock = threading.Lock()
        self._bars: list[Progress] = []
        self._last_draw = 0.0
        self._line_open = False  # a drawn line not yet ended with a newline

    def bar(self, label: str) -> Progress:
        """A new bar on this board."""
        return Progress(label, board=self)

    def close(self) -> None:
        """Close every bar still open (without summaries), ending the terminal line."""
        for bar in list(self._bars):
            bar.close()

    # -- used by Progress ----------------------------------------------------------------------

    def _attach(self, bar: Progress) -> None:
        with self._lock:
            self._bars.append(bar)

    def _update(self, bar: Progress, done: int, total: int | None) -> None:
        if total is not None:
            done = min(done, total)  # never "51/48" (see the module docstring)
        with self._lock:
            bar._state = (done, total)
            if self.tty:
                now = time.monotonic()
                if now - self._last_draw < 0.1 and (total is None or done < total):
                    return
                self._last_draw = now
                self._draw()
            elif total:
                quarter = min(4, done * 4 // total)
                if quarter > bar._last_step:
                    bar._last_step = quarter
                    self.stream.write(bar._line(_WIDTH) + "\n")
                    self.stream.flush()

    def _finish(self, bar: Progress, summary: str) -> None:
        with self._lock:
            if bar._finished:  # closed twice at once (the pipeline's threads): the first one wins
                return
            bar._finished = True
            self._bars.remove(bar)
            elapsed = time.monotonic() - bar._started
            end = f"{bar.label}: {summary} ({elapsed:.1f} s)" if summary else ""
            if self.tty:
                if end:
                    self.stream.write("\r" + end + "\x1b[K\n")
                    self._line_open = False
                if any(b._state is not None for b in self._bars):
                    self._draw()
                elif self._line_open:  # end the line, keeping the last state visible
                    self.stream.write("\n")
                    self._line_open = False
            elif end:
                self.stream.write(end + "\n")
            self.stream.flush()

    def _draw(self) -> None:
        shown = [b for b in self._bars if b._state is not None]
        if not shown:
            return
        width = max(8, _WIDTH // len(shown))
        self.stream.write("\r" + " | ".join(b._line(width) for b in shown) + "\x1b[K")
        self._line_open = True
        self.stream.flush()


class Progress:
    """A named progress display; call the instance as ``progress(done, total)``.

    Standalone (``Progress("prices")``) it has a board of its own; bars that run at the same time
    should come from one :meth:`ProgressBoard.bar` so they share the terminal line.
    """

    def __init__(
        self,
        label: str,
        *,
        stream: TextIO | None = None,
        quiet: bool = False,
        board: ProgressBoard | None = None,
    ) -> None:
        self.label = label
        self.board = board if board is not None else ProgressBoard(stream=stream, quiet=quiet)
        self._state: tuple[int, int | None] | None = None
        self._last_step = 0
        self._started = time.monotonic()
        self._finished = False
        if not self.board.quiet:
            self.board._attach(self)

    def __call__(self, done: int, total: int | None) -> None:
        if self.board.quiet or self._finished:
            return
        self.board._update(self, done, total)

    def close(self, summary: str = "") -> None:
        """End this bar, optionally with a summary line."""
        if self.board.quiet or self._finished:
            return
        self.board._finish(self, summary)

    def _line(self, width: int) -> str:
        done, total = self._state if self._state is not None else (0, None)
        if total:
            filled = min(width, done * width // total)
            bar = "#" * filled + "-" * (width - filled)
            return f"{self.label} [{bar}] {done}/{total}"
        return f"{self.label} {done}"
