"""The placement-score collector's account book and its run-time index (spotlake.collect.aws.accounts)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import spotlake.collect.aws as aws
from spotlake.collect.aws import sps
from spotlake.collect.aws.accounts import (
    CONFIG_WINDOW,
    WINDOW_MARGIN,
    AccountBook,
    BookIndex,
    FullAccount,
    ServedConfiguration,
)
from spotlake.serde import dump_doc, load_doc

T0 = datetime(2026, 5, 4, 9, 30, tzinfo=UTC)
OCCUPIES = CONFIG_WINDOW + WINDOW_MARGIN
FREE = CONFIG_WINDOW - WINDOW_MARGIN


def served(key: str, account: str, at: datetime) -> ServedConfiguration:
    return ServedConfiguration(key=key, account=account, at=at)


# The rules, spelled out as walks over every record (what the index must answer, faster).


def servers(book: AccountBook, key: str, now: datetime) -> tuple[str, ...]:
    fresh = [s for s in reversed(book.served) if s.key == key and now - s.at < FREE]
    return tuple(dict.fromkeys(s.account for s in fresh))


def in_window(book: AccountBook, account: str, now: datetime) -> list[datetime]:
    return [s.at for s in book.served if s.account == account and now - s.at < OCCUPIES]


def remaining(book: AccountBook, account: str, limit: int, now: datetime) -> int:
    if any(f.account == account and f.until > now for f in book.full):
        return 0
    return max(0, limit - len(in_window(book, account, now)))


def frees_at(book: AccountBook, account: str, limit: int, now: datetime) -> datetime | None:
    marks = [f.until for f in book.full if f.account == account and f.until > now]
    times = in_window(book, account, now)
    if marks:
        return max(marks)
    return times[0] + OCCUPIES if times and len(times) >= limit else None


def test_the_index_answers_as_the_rules_do() -> None:
    rng = random.Random(5)
    edges = [timedelta(0), FREE, CONFIG_WINDOW, OCCUPIES]  # ties and window edges, to the microsecond

    def moment() -> datetime:
        return (
            T0
            - rng.choice(edges)
            + timedelta(minutes=rng.choice([-5, -1, 0, 0, 1, 5, rng.randint(-60, 900)]))
        )

    for _ in range(200):
        accounts, keys = ["a", "b", "c"][: rng.randint(1, 3)], [f"k{i}" for i in range(rng.randint(1, 5))]
        book, index = AccountBook(), BookIndex()
        for _ in range(rng.randint(0, 30)):  # out of time order on purpose
            key, account, at = rng.choice(keys), rng.choice(accounts), moment()
            book = book.with_served(key, account, at)
            index.add_served(key, account, at)
            if rng.random() < 0.1:
                until = moment() + timedelta(hours=rng.randint(0, 30))
                book = book.with_full(account, until)
                index.add_full(account, until)
        assert index.book() == book and BookIndex(book).book() == book
        for now in [T0 + timedelta(minutes=m) for m in (-1500, -5, 0, 1, 5, 60, 1440, 1800)]:
            for key in keys:
                assert book.servers(key, now) == index.servers(key, now) == servers(book, key, now)
            for account in [*accounts, "unknown"]:
                expected = in_window(book, account, now)
                assert book.in_window(account, now) == index.in_window(account, now) == expected
                assert index.used(account, now) == len(expected)
                assert index.oldest(account, now) == (expected[0] if expected else None)
                for limit in (0, 1, 2, 5):
                    want = remaining(book, account, limit, now)
                    assert book.remaining(account, limit, now) == index.remaining(account, limit, now) == want
                    want_at = frees_at(book, account, limit, now)
                    assert (
                        book.frees_at(account, limit, now) == index.frees_at(account, limit, now) == want_at
                    )
            assert index.book(pruned_at=now) == book.pruned(now)


def test_the_stored_document_is_unchanged_by_the_index() -> None:
    book = AccountBook(
        served=[served("k2", "b", T0), served("k1", "a", T0 - timedelta(hours=2))],
        full=[FullAccount(account="b", until=T0 + timedelta(hours=1))],
    )
    document = {
        "format": 1,
        "served": [
            {"key": "k1", "account": "a", "at": "2026-05-04T07:30:00+00:00"},
            {"key": "k2", "account": "b", "at": "2026-05-04T09:30:00+00:00"},
        ],
        "full": [{"account": "b", "until": "2026-05-04T10:30:00+00:00"}],
    }
    assert dump_doc(book) == document
    assert book.remaining("a", 10, T0) == 9 and book.servers("k2", T0) == ("b",)  # builds its index
    assert dump_doc(book) == document and repr(book) == repr(load_doc(document, AccountBook, where="t"))
    loaded = load_doc(document, AccountBook, where="test book")
    assert loaded == book and hash(loaded) == hash(book)


def test_the_book_is_still_importable_where_it_was() -> None:
    assert sps.AccountBook is aws.AccountBook is AccountBook
    assert (sps.ServedConfiguration, sps.FullAccount) == (ServedConfiguration, FullAccount)
    assert (sps.CONFIG_WINDOW, sps.WINDOW_MARGIN) == (CONFIG_WINDOW, WINDOW_MARGIN)
