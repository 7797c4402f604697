"""The account book of the placement-score collector: which account took which configuration, when.

EC2 lets an account use about 10 *new* configurations in a rolling :data:`CONFIG_WINDOW` and repeat
them for free. :class:`AccountBook` is the persisted record (a versioned document of
:mod:`spotlake.serde`, ``aws_accounts``): the configurations served (:class:`ServedConfiguration`)
and the accounts that said they were full (:class:`FullAccount`). Its window has
:data:`WINDOW_MARGIN` on the safe side each way: a repeat is trusted free for 24 h minus it, a new
configuration occupies budget for 24 h plus it.

:class:`BookIndex` is the same records indexed for questions asked once per query: per key, who
served it and when it was last served; per account, the sorted times of its records (``bisect``);
per account, its full mark. Built once from a book in O(n), it answers in O(log n), takes a new
record in O(1) (times arrive in order; O(log n) search otherwise) and turns back into a book once.
The collector keeps one for a run; a book's own questions use one built on first use, so a book
of a day's records (tens of thousands) costs linear time per run, not per query.
"""

from __future__ import annotations

from bisect import bisect_right, insort
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import ClassVar, Final

import attrs

from spotlake.clock import ensure_utc

__all__ = [
    "CONFIG_WINDOW",
    "WINDOW_MARGIN",
    "AccountBook",
    "BookIndex",
    "FullAccount",
    "ServedConfiguration",
]

#: EC2's rolling window for new configurations.
CONFIG_WINDOW: Final = timedelta(hours=24)
#: Safety margin on the book's window, each way.
WINDOW_MARGIN: Final = timedelta(minutes=5)
#: How long a record counts against its account's budget.
_OCCUPIES: Final = CONFIG_WINDOW + WINDOW_MARGIN
#: How long a configuration is trusted to repeat for free.
_FREE: Final = CONFIG_WINDOW - WINDOW_MARGIN


@attrs.frozen(kw_only=True)
class ServedConfiguration:
    """``account`` took configuration ``key`` as a new one at ``at`` (counting against its limit)."""

    key: str
    account: str
    at: datetime = attrs.field(converter=ensure_utc)


@attrs.frozen(kw_only=True)
class FullAccount:
    """``account`` refused new configurations (``MaxConfigLimitExceeded``) and is full until ``until``."""

    account: str
    until: datetime = attrs.field(converter=ensure_utc)


def _served(values: Iterable[ServedConfiguration]) -> tuple[ServedConfiguration, ...]:
    return tuple(sorted(values, key=lambda s: (s.at, s.key, s.account)))


def _full(values: Iterable[FullAccount]) -> tuple[FullAccount, ...]:
    latest = {m.account: m for m in sorted(values, key=lambda m: m.until)}  # one mark per account
    return tuple(latest[a] for a in sorted(latest))


@attrs.frozen(kw_only=True)
class AccountBook:
    """The persisted record of which account served which configuration, and which accounts are full.

    An immutable value (every change returns a new book) and a versioned document of
    :mod:`spotlake.serde`: ``dump_doc(book)`` / ``load_doc(data, AccountBook, where=...)``. Its
    questions are answered by a :class:`BookIndex` built on first use (not stored, not compared).
    """

    DOC_FORMAT: ClassVar[int] = 1

    served: tuple[ServedConfiguration, ...] = attrs.field(default=(), converter=_served)
    full: tuple[FullAccount, ...] = attrs.field(default=(), converter=_full)
    _index: BookIndex | None = attrs.field(default=None, init=False, eq=False, repr=False)

    def _indexed(self) -> BookIndex:
        index = self._index
        if index is None:  # built once; never changed afterwards (a run builds its own)
            index = BookIndex(self)
            object.__setattr__(self, "_index", index)
        return index

    def servers(self, key: str, now: datetime) -> tuple[str, ...]:
        """Accounts that may repeat configuration ``key`` for free at ``now``, latest first."""
        return self._indexed().servers(key, now)

    def in_window(self, account: str, now: datetime) -> list[datetime]:
        """When each configuration ``account`` is known to count at ``now`` was taken, oldest first."""
        return self._indexed().in_window(account, now)

    def remaining(self, account: str, limit: int, now: datetime) -> int:
        """New configurations ``account`` may still take at ``now`` (0 while it is marked full)."""
        return self._indexed().remaining(account, limit, now)

    def frees_at(self, account: str, limit: int, now: datetime) -> datetime | None:
        """When an account without budget at ``now`` takes a new configuration again (else ``None``)."""
        return self._indexed().frees_at(account, limit, now)

    def with_served(self, key: str, account: str, at: datetime) -> AccountBook:
        """This book plus ``account`` having taken ``key`` as a new configuration at ``at``.

        O(n): for one record at a time over a run, use a :class:`BookIndex`."""
        return attrs.evolve(self, served=(*self.served, ServedConfiguration(key=key, account=account, at=at)))

    def with_full(self, account: str, until: datetime) -> AccountBook:
        """This book with ``account`` marked full until ``until``."""
        return attrs.evolve(self, full=(*self.full, FullAccount(account=account, until=until)))

    @classmethod
    def merged(cls, books: Iterable[AccountBook]) -> AccountBook:
        """Every record of ``books`` once, and each account's latest full mark (the books of a
        sharded run's workers, each of which started from the same book and used its own accounts)."""
        books = list(books)
        return cls(served=set().union(*(b.served for b in books)), full=[m for b in books for m in b.full])

    def pruned(self, now: datetime) -> AccountBook:
        """Without records out of the window and expired marks (what is worth persisting)."""
        served = [s for s in self.served if now - s.at < _OCCUPIES]
        return AccountBook(served=served, full=[f for f in self.full if f.until > now])


class BookIndex:
    """A book's records indexed for a run (see the module docstring): the same answers as
    :class:`AccountBook`'s questions, records and marks added in place, :meth:`book` at the end."""

    __slots__ = ("_by_key", "_full", "_served", "_times")

    def __init__(self, book: AccountBook | None = None) -> None:
        #: Every record, in the order added (the book's, then the run's).
        self._served: list[ServedConfiguration] = []
        #: Configuration key -> account -> when it last took it.
        self._by_key: dict[str, dict[str, datetime]] = {}
        #: Account -> when it took each of its configurations, sorted.
        self._times: dict[str, list[datetime]] = {}
        #: Account -> its (latest) full mark.
        self._full: dict[str, datetime] = {}
        if book is not None:
            for record in book.served:
                self._add(record)
            for mark in book.full:
                self._mark(mark)

    def __repr__(self) -> str:
        return f"BookIndex({len(self._served)} record(s), {len(self._full)} full mark(s))"

    # --- questions ---------------------------------------------------------------------------------

    def servers(self, key: str, now: datetime) -> tuple[str, ...]:
        """Accounts that may repeat configuration ``key`` for free at ``now``, latest first."""
        since = now - _FREE
        fresh = [(at, account) for account, at in self._by_key.get(key, {}).items() if at > since]
        return tuple(account for _, account in sorted(fresh, reverse=True))

    def in_window(self, account: str, now: datetime) -> list[datetime]:
        """When each configuration ``account`` is known to count at ``now`` was taken, oldest first."""
        times = self._times.get(account, [])
        return times[bisect_right(times, now - _OCCUPIES) :]

    def used(self, account: str, now: datetime) -> int:
        """How many configurations ``account`` is known to count at ``now``."""
        times = self._times.get(account, [])
        return len(times) - bisect_right(times, now - _OCCUPIES)

    def oldest(self, account: str, now: datetime) -> datetime | None:
        """When the oldest configuration ``account`` counts at ``now`` was taken (``None``: none)."""
        times = self._times.get(account, [])
        first = bisect_right(times, now - _OCCUPIES)
        return times[first] if first < len(times) else None

    def full_until(self, account: str, now: datetime) -> datetime | None:
        """``account``'s full mark when it is still in force at ``now``."""
        until = self._full.get(account)
        return until if until is not None and until > now else None

    def remaining(self, account: str, limit: int, now: datetime) -> int:
        """New configurations ``account`` may still take at ``now`` (0 while it is marked full)."""
        if self.full_until(account, now) is not None:
            return 0
        return max(0, limit - self.used(account, now))

    def frees_at(self, account: str, limit: int, now: datetime) -> datetime | None:
        """When an account without budget at ``now`` takes a new configuration again (else ``None``)."""
        if (until := self.full_until(account, now)) is not None:
            return until
        used = self.used(account, now)
        oldest = self.oldest(account, now)
        return oldest + _OCCUPIES if oldest is not None and used >= limit else None

    # --- changes -----------------------------------------------------------------------------------

    def add_served(self, key: str, account: str, at: datetime) -> None:
        """``account`` took ``key`` as a new configuration at ``at``."""
        self._add(ServedConfiguration(key=key, account=account, at=at))

    def add_full(self, account: str, until: datetime) -> None:
        """``account`` is marked full until ``until`` (the latest mark of an account holds)."""
        self._mark(FullAccount(account=account, until=until))

    def book(self, *, pruned_at: datetime | None = None) -> AccountBook:
        """The records as a book; with ``pruned_at``, as :meth:`AccountBook.pruned` at that time."""
        served: Iterable[ServedConfiguration] = self._served
        full = [FullAccount(account=a, until=u) for a, u in self._full.items()]
        if pruned_at is not None:
            since = pruned_at - _OCCUPIES
            served = [s for s in self._served if s.at > since]
            full = [f for f in full if f.until > pruned_at]
        return AccountBook(served=served, full=full)

    def _add(self, record: ServedConfiguration) -> None:
        self._served.append(record)
        latest = self._by_key.setdefault(record.key, {})
        known = latest.get(record.account)
        if known is None or record.at > known:
            latest[record.account] = record.at
        times = self._times.setdefault(record.account, [])
        if not times or times[-1] <= record.at:
            times.append(record.at)  # the usual case: a book's records and a run's come in time order
        else:
            insort(times, record.at)

    def _mark(self, mark: FullAccount) -> None:
        known = self._full.get(mark.account)
        if known is None or mark.until > known:
            self._full[mark.account] = mark.until
