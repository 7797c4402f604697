"""What every collector shares: the protocol, the result and report types, endpoints, and a sync facade.

A collector is built with everything it needs (injected HTTP transport or SDK client, credential,
clock, options) and exposes ``acollect()`` (the async core) and ``collect()`` (a blocking facade
for notebooks and scripts). It returns a :class:`CollectResult`: a frame with a documented schema
(see :mod:`spotlake.model`) and a :class:`CollectReport` that accounts for every page or call:
``planned == succeeded + failed`` always holds, and each failure names what and why.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Coroutine, Iterable, Sequence
from datetime import datetime
from typing import Any, Protocol, TypeVar, runtime_checkable

import attrs
import pandas as pd

from spotlake.errors import IncompleteDataError
from spotlake.model import Source

__all__ = [
    "AzureEndpoints",
    "CollectReport",
    "CollectResult",
    "Collector",
    "Failure",
    "ReportBuilder",
    "run_sync",
]

T = TypeVar("T")


@attrs.frozen(kw_only=True)
class AzureEndpoints:
    """Base URLs of the Azure services spotlake talks to. Point them all at the emulator in tests."""

    management: str = "https://management.azure.com"
    prices: str = "https://prices.azure.com"
    authority: str = "https://login.microsoftonline.com"

    @classmethod
    def single(cls, base_url: str) -> AzureEndpoints:
        """Every service behind one base URL (how the loopback emulator serves them)."""
        base = base_url.rstrip("/")
        return cls(management=base, prices=base, authority=base)


@attrs.frozen(kw_only=True)
class Failure:
    """One page or call that finally failed: what it was, why, and after how many attempts."""

    what: str
    reason: str
    status: int | None = None
    attempts: int = 1
    #: The unit whose data the failure leaves out, for collectors that work per unit (the AWS
    #: collectors: a region), so a caller can tell exactly what is unknown.
    scope: str | None = None

    def __str__(self) -> str:
        code = f" (HTTP {self.status})" if self.status is not None else ""
        return f"{self.what}: {self.reason}{code} after {self.attempts} attempt(s)"


@attrs.frozen(kw_only=True)
class CollectReport:
    """Accounting of one collection (immutable; a collector fills a :class:`ReportBuilder`).

    ``planned`` units of work (pages, calls); each ends ``succeeded`` or in ``failures``.
    ``requests`` counts HTTP requests actually sent (including retries); ``retried`` the retries.
    """

    source: Source
    planned: int = 0
    succeeded: int = 0
    failures: tuple[Failure, ...] = ()
    requests: int = 0
    retried: int = 0
    rows: int = 0
    started_at: datetime | None = None
    finished_at: datetime | None = None
    notes: tuple[str, ...] = ()

    @property
    def failed(self) -> int:
        return len(self.failures)

    @classmethod
    def combine(
        cls,
        source: Source,
        parts: Sequence[tuple[str, CollectReport]],
        *,
        rows: int,
        failures: Iterable[Failure] | None = None,
        notes: Iterable[str] = (),
    ) -> CollectReport:
        """One report for work split into labelled ``parts`` (a sharded run's workers): counts
        summed, the span of their times, each part's notes prefixed by its label, then ``notes``.
        ``failures`` replaces the parts' own when they must read differently (renumbered)."""
        reports = [r for _, r in parts]
        starts = [r.started_at for r in reports if r.started_at]
        ends = [r.finished_at for r in reports if r.finished_at]
        return cls(
            source=source,
            planned=sum(r.planned for r in reports),
            succeeded=sum(r.succeeded for r in reports),
            failures=tuple(f for r in reports for f in r.failures) if failures is None else tuple(failures),
            requests=sum(r.requests for r in reports),
            retried=sum(r.retried for r in reports),
            rows=rows,
            started_at=min(starts) if starts else None,
            finished_at=max(ends) if ends else None,
            notes=(*(f"{label}: {note}" for label, r in parts for note in r.notes), *notes),
        )

    @property
    def complete(self) -> bool:
        """True when every planned unit succeeded."""
        return not self.failures and self.succeeded == self.planned

    def require_complete(self, what: str) -> None:
        """Raise :class:`IncompleteDataError` naming every failed unit when anything is missing."""
        if not self.failures:
            return
        missing = [str(f) for f in self.failures]
        shown = "; ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise IncompleteDataError(
            f"{self.source}: {what} incomplete, {len(missing)} of {self.planned} missing: {shown}. "
            "Run again, or pass allow_partial=True to keep what was received.",
            source=self.source,
            missing=missing,
        )


@attrs.define(kw_only=True)
class ReportBuilder:
    """The mutable tally a collector keeps while it works; :meth:`build` freezes it."""

    source: Source
    planned: int = 0
    succeeded: int = 0
    failures: list[Failure] = attrs.field(factory=list)
    requests: int = 0
    retried: int = 0
    started_at: datetime | None = None
    notes: list[str] = attrs.field(factory=list)

    @property
    def failed(self) -> int:
        return len(self.failures)

    def build(self, *, rows: int, at: datetime) -> CollectReport:
        """The finished report: ``rows`` collected, finished ``at``."""
        return CollectReport(
            source=self.source,
            planned=self.planned,
            succeeded=self.succeeded,
            failures=tuple(self.failures),
            requests=self.requests,
            retried=self.retried,
            rows=rows,
            started_at=self.started_at,
            finished_at=at,
            notes=tuple(self.notes),
        )


@attrs.frozen(kw_only=True)
class CollectResult:
    """A collector's output: the frame (schema in :mod:`spotlake.model`) and its report."""

    frame: pd.DataFrame = attrs.field(eq=False)
    report: CollectReport


@runtime_checkable
class Collector(Protocol):
    """The shape every collector has."""

    source: Source

    async def acollect(self) -> CollectResult:
        """Collect, concurrently where the source allows."""
        ...

    def collect(self) -> CollectResult:
        """Blocking facade over :meth:`acollect` (safe inside a running event loop, e.g. Jupyter)."""
        ...


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion from synchronous code.

    Works whether or not an event loop is already running in this thread (a notebook has one):
    in that case the coroutine runs on a fresh loop in a worker thread.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()
