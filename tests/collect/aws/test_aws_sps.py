"""The AWS placement-score collector against the deterministic fake, behind real boto3 EC2 clients.

The fake answers ``GetSpotPlacementScores`` through a botocore ``before-call`` hook (moto does not
implement it); everything else a client might send goes to moto (``mock_aws``), on dummy
credentials and without endpoint settings, so nothing can reach AWS.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import attrs
import boto3
import botocore.loaders
import botocore.session
import pandas as pd
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from aws_support import offline_aws
from spotlake.clock import FakeClock
from spotlake.collect.aws.sps import (
    CONFIG_WINDOW,
    WINDOW_MARGIN,
    AccountBook,
    AccountStatus,
    AwsAccount,
    AwsSpsCollector,
    AwsSpsResult,
    CollectionStopped,
    FailureReason,
    ServedConfiguration,
    configuration_key,
)
from spotlake.collect.base import Collector
from spotlake.collect.http import Backoff
from spotlake.errors import ConfigError
from spotlake.model import SPS_SCHEMA, Source
from spotlake.serde import dump, dump_doc, load_doc
from spotlake.testing.aws.sps import FaultKind, Outcome, PlacementScoreFake

REGION = "us-east-1"
T0 = datetime(2026, 5, 4, 9, 30, tzinfo=UTC)
CAPACITY = 5
#: One model loader for every session: each new one would read the EC2 model again (~0.2 s).
LOADER = botocore.loaders.create_loader()


# --- fixtures and helpers --------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """Offline AWS (tests/aws_support.py) and moto behind every client."""
    offline_aws(monkeypatch, tmp_path, region=REGION)
    with mock_aws():
        yield


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def fake(clock: FakeClock) -> PlacementScoreFake:
    """A world whose single-type scores use the whole 1 ... 10 range (no few-types cap)."""
    return PlacementScoreFake(seed=7, clock=clock, few_types_cap=None)


@attrs.frozen
class Query:
    """A planned query as spotlake.collect.aws.plan.AwsSpsQuery has it."""

    instance_type: str
    regions: tuple[str, ...]
    zones: int

    @property
    def key(self) -> str:
        return f"{self.instance_type}|{','.join(sorted(self.regions))}"


def query(fake: PlacementScoreFake, instance_type: str, *regions: str) -> Query:
    return Query(instance_type, regions, sum(len(fake.zones_of(r)) for r in regions))


def session(**credentials: str) -> Any:
    core = botocore.session.get_session()
    core.register_component("data_loader", LOADER)
    return boto3.Session(botocore_session=core, region_name=REGION, **credentials)


def account(fake: PlacementScoreFake, name: str, *, limit: int = 10) -> AwsAccount:
    """An account whose EC2 clients are answered by ``fake`` as ``name``."""
    where = session()
    return AwsAccount(
        name=name, client_factory=lambda: fake.install(where.client("ec2"), account=name), config_limit=limit
    )


def collector(
    fake: PlacementScoreFake,
    clock: FakeClock,
    queries: list[Query],
    names: tuple[str, ...] = ("a", "b"),
    **options: Any,
) -> AwsSpsCollector:
    accounts = options.pop("accounts", None) or [account(fake, n) for n in names]
    return AwsSpsCollector(
        queries=queries,
        target_capacity=options.pop("target_capacity", CAPACITY),
        accounts=accounts,
        clock=clock,
        backoff=Backoff(base=0.5, cap=4.0, seed=0),
        **options,
    )


def balanced(result: AwsSpsResult) -> None:
    report = result.report
    assert report.planned == report.succeeded + report.failed
    assert report.rows == len(result.frame)
    assert list(result.frame.columns) == list(SPS_SCHEMA)
    assert {c: str(t) for c, t in result.frame.dtypes.items()} == dict(SPS_SCHEMA)


# --- rows ------------------------------------------------------------------------------------------


def test_rows_follow_the_schema_and_the_answers(fake: PlacementScoreFake, clock: FakeClock) -> None:
    q1, q2 = query(fake, "m5.large", "us-east-1", "eu-west-1"), query(fake, "c5.xlarge", "us-west-2")
    run = collector(fake, clock, [q1, q2])
    assert isinstance(run, Collector)
    assert run.source is Source.AWS_SPS
    result = run.collect()

    balanced(result)
    frame = result.frame
    assert len(frame) == 9 + 4
    for row in frame.itertuples():
        assert row.zone in fake.zones_of(row.region)
        assert row.score_value == fake.score(row.size, row.zone, CAPACITY)
        assert row.score == str(row.score_value)
        assert 1 <= row.score_value <= 10
    assert (frame["desired_count"] == CAPACITY).all()
    assert frame["quota_available"].isna().all()
    assert frame["score_value"].nunique() > 1
    report = result.report
    assert (report.planned, report.succeeded, report.failed, report.requests, report.retried) == (
        2,
        2,
        0,
        2,
        0,
    )
    assert report.complete
    # Equal budgets: the order given; then the account with more left.
    assert result.served_by == {configuration_key(q1, CAPACITY): "a", configuration_key(q2, CAPACITY): "b"}
    assert {(s.key, s.account, s.at) for s in result.book.served} == {
        (configuration_key(q1, CAPACITY), "a", T0),
        (configuration_key(q2, CAPACITY), "b", T0),
    }
    assert result.accounts == {"a": AccountStatus.USABLE, "b": AccountStatus.USABLE}
    assert asyncio.run(run.acollect()).frame.equals(frame)  # the async face: same rows (repeats now)


def test_a_zone_the_answer_omits_is_not_a_row(clock: FakeClock) -> None:
    offerings = [("m5.large", "us-east-1", "use1-az1"), ("m5.large", "us-east-1", "use1-az2")]
    offerings += [("c5.large", "us-east-1", f"use1-az{i}") for i in range(1, 7)]
    fake = PlacementScoreFake(seed=7, clock=clock, offerings=offerings)
    result = collector(fake, clock, [query(fake, "m5.large", "us-east-1")]).collect()

    balanced(result)
    assert sorted(result.frame["zone"]) == ["use1-az1", "use1-az2"]  # use1-az3..6: unknown, no row
    assert not result.frame.isna()[["zone", "score", "score_value"]].any().any()
    assert result.report.complete and result.truncated == ()


def test_every_page_is_followed(clock: FakeClock) -> None:
    fake = PlacementScoreFake(seed=7, clock=clock, page_size=3)
    q = query(fake, "m5.large", "us-east-1", "us-west-2")  # 10 zones: 4 pages of 3
    result = collector(fake, clock, [q]).collect()

    balanced(result)
    assert len(result.frame) == 10 and result.truncated == ()
    assert result.report.requests == 4 and result.report.complete
    calls = fake.calls
    assert calls[0].next_token is None and all(c.next_token for c in calls[1:])
    assert [c.new_configuration for c in calls] == [True, False, False, False]
    assert sorted(result.frame["zone"]) == sorted(fake.zones_of("us-east-1") + fake.zones_of("us-west-2"))


def test_the_top_10_truncation_is_reported(fake: PlacementScoreFake, clock: FakeClock) -> None:
    q = query(fake, "m5.large", "us-east-1", "us-west-2", "eu-west-1")  # 13 zones
    result = collector(fake, clock, [q]).collect()

    balanced(result)
    assert len(result.frame) == 10
    assert result.truncated == (configuration_key(q, CAPACITY),)
    assert any("top 10 of 13 zones" in note for note in result.report.notes)
    assert result.report.complete  # a cut answer is not a failure: the other zones are unknown


# --- accounts --------------------------------------------------------------------------------------


def test_repeats_go_to_the_account_that_served_them(fake: PlacementScoreFake, clock: FakeClock) -> None:
    q1, q2 = query(fake, "m5.large", "us-east-1"), query(fake, "r5.large", "eu-west-1")
    first = collector(fake, clock, [q1, q2]).collect()
    clock.advance(600)
    second = collector(fake, clock, [q2, q1], book=first.book).collect()

    assert second.served_by == first.served_by
    assert second.report.complete and second.report.requests == 2
    assert [c.new_configuration for c in fake.calls] == [True, True, False, False]
    assert (fake.configurations("a"), fake.configurations("b")) == (1, 1)
    assert second.book == first.book  # a repeat records nothing new
    # Past the window (and the margin), the same configuration is a new one again.
    clock.advance((CONFIG_WINDOW + WINDOW_MARGIN).total_seconds())
    third = collector(fake, clock, [q1], book=second.book).collect()
    assert fake.calls[-1].new_configuration and len(third.book.served) == 1


def test_config_limit_moves_the_query_to_the_next_account(clock: FakeClock) -> None:
    fake = PlacementScoreFake(seed=7, clock=clock, account_limits={"a": 1})  # the book believes 10
    queries = [query(fake, t, "us-east-1") for t in ("m5.large", "c5.large", "r5.large")]
    run = collector(fake, clock, queries)
    result = run.collect()

    balanced(result)
    assert result.report.complete and result.report.requests == 4
    assert list(result.served_by.values()) == ["a", "b", "b"]
    assert [(c.account, c.outcome) for c in fake.calls] == [
        ("a", Outcome.ANSWERED),
        ("b", Outcome.ANSWERED),
        ("a", Outcome.CONFIG_LIMIT),
        ("b", Outcome.ANSWERED),
    ]
    (mark,) = result.book.full
    assert (mark.account, mark.until) == ("a", T0 + CONFIG_WINDOW + WINDOW_MARGIN)
    assert sorted(s.account for s in result.book.served) == ["a", "b", "b"]
    assert any("account a is full (MaxConfigLimitExceeded)" in n for n in result.report.notes)
    assert result.accounts == {"a": AccountStatus.FULL, "b": AccountStatus.USABLE}


def test_all_accounts_full_fails_every_remaining_query(clock: FakeClock) -> None:
    fake = PlacementScoreFake(seed=7, clock=clock, config_limit=1)
    queries = [query(fake, t, "eu-west-1") for t in ("m5.large", "c5.large", "r5.large", "t3.large")]
    result = collector(fake, clock, queries).collect()

    balanced(result)
    report = result.report
    assert (report.planned, report.succeeded, report.failed, report.requests) == (4, 2, 2, 4)
    assert [f.reason for f in result.failed_queries] == [FailureReason.ALL_ACCOUNTS_FULL] * 2
    assert [f.attempts for f in result.failed_queries] == [2, 0]  # the last one was never sent
    assert all("every account used its new configurations" in str(f) for f in report.failures)
    assert "all accounts full: 2 query(ies) not scored" in report.notes
    assert set(result.frame["size"]) == {"m5.large", "c5.large"}  # failed queries: no rows at all
    assert result.accounts == {"a": AccountStatus.FULL, "b": AccountStatus.FULL}

    # The book survives the store (spotlake.serde) and keeps the next run from asking in vain.
    book = load_doc(dump_doc(result.book), AccountBook, where="test book")
    assert book == result.book
    clock.advance(3600)
    sent = len(fake.calls)
    later = collector(fake, clock, [query(fake, "c6i.large", "eu-west-1")], book=book).collect()
    assert len(fake.calls) == sent and later.report.failed == 1 and later.report.requests == 0


def test_access_denied_account_is_skipped_for_the_run(fake: PlacementScoreFake, clock: FakeClock) -> None:
    fake.inject(FaultKind.ACCESS_DENIED, account="a")
    queries = [query(fake, t, "us-east-2") for t in ("m5.large", "c5.large")]
    result = collector(fake, clock, queries).collect()

    balanced(result)
    assert result.report.complete and len(result.frame) == 6
    assert set(result.served_by.values()) == {"b"}
    assert [c.account for c in fake.calls] == ["a", "b", "b"]  # a is asked once, then left alone
    assert any("account a refused" in n and "UnauthorizedOperation" in n for n in result.report.notes)
    assert result.accounts["a"] is AccountStatus.DENIED

    alone = collector(fake, clock, queries[:1], names=("a",)).collect()
    (failed,) = alone.failed_queries
    assert failed.reason is FailureReason.NO_USABLE_ACCOUNT and "a denied" in failed.message


# --- errors ----------------------------------------------------------------------------------------


def test_throttling_is_retried_with_backoff_then_succeeds(fake: PlacementScoreFake, clock: FakeClock) -> None:
    fake.inject(FaultKind.THROTTLING, times=2)
    result = collector(fake, clock, [query(fake, "m5.large", "us-east-1")]).collect()

    assert result.report.complete and len(result.frame) == 6
    assert (result.report.requests, result.report.retried) == (3, 2)
    assert [c.outcome for c in fake.calls] == [Outcome.THROTTLED, Outcome.THROTTLED, Outcome.ANSWERED]
    assert len(clock.slept) == 2 and clock.now() > T0  # backed off on the fake clock, never for real


def test_throttling_to_exhaustion_fails_the_query_without_rows(clock: FakeClock) -> None:
    fake = PlacementScoreFake(seed=7, clock=clock, page_size=3)
    fake.inject(FaultKind.THROTTLING, first=2)  # the first page arrives, the second never does
    q = query(fake, "m5.large", "us-east-1")
    result = collector(fake, clock, [q], max_attempts=4).collect()

    balanced(result)
    assert result.frame.empty  # no partial answer: the zones stay unknown, never "gone"
    (failed,) = result.failed_queries
    assert failed.reason is FailureReason.RETRIES_EXHAUSTED and failed.reason.retry_next_run
    assert failed.attempts == 5 and (result.report.requests, result.report.retried) == (5, 3)
    text = str(result.report.failures[0])
    for part in ("m5.large", "us-east-1", "capacity 5", "account a", "RequestLimitExceeded"):
        assert part in text
    assert [s.key for s in result.book.served] == [configuration_key(q, CAPACITY)]  # EC2 counted it


def test_an_invalid_query_fails_alone_naming_itself(fake: PlacementScoreFake, clock: FakeClock) -> None:
    good, bad = query(fake, "m5.large", "eu-west-2"), Query("m5.large", ("mars-north-1",), 3)
    result = collector(fake, clock, [bad, good]).collect()

    balanced(result)
    (failed,) = result.failed_queries
    assert failed.reason is FailureReason.INVALID_REQUEST and failed.status == 400
    text = str(result.report.failures[0])
    for part in ("m5.large", "mars-north-1", "capacity 5", "account a", "InvalidParameterValue"):
        assert part in text
    assert set(result.frame["region"]) == {"eu-west-2"}
    assert [s.key for s in result.book.served] == [configuration_key(good, CAPACITY)]


def test_credentials_never_show(
    fake: PlacementScoreFake, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    key_id, secret, token = (
        "AKIACANARY1234567890",
        "canary/Secret+Value+0123456789abcdefXYZ",
        "canary-token-42",
    )
    accounts = []
    for name in ("a", "b"):
        where = session(aws_access_key_id=key_id, aws_secret_access_key=secret, aws_session_token=token)
        fake.install(where, account=name)  # clients the session makes later are answered as ``name``
        accounts.append(AwsAccount.from_session(name, where))
    fake.inject(FaultKind.ACCESS_DENIED, account="a")
    fake.inject(FaultKind.THROTTLING, account="b", first=2)
    run = collector(fake, clock, [query(fake, "m5.large", "us-east-1")] * 2, accounts=accounts)
    result = run.collect()

    assert result.report.succeeded == 1 and result.report.failed == 1
    assert "account a refused" in caplog.text and "RequestLimitExceeded" in caplog.text
    shown = [repr(run), repr(accounts), repr(result.report), str(dump(result.report)), repr(result.book)]
    shown += [str(f) for f in result.report.failures] + list(result.report.notes) + [caplog.text]
    for text in shown:
        for canary in (key_id, secret, token):
            assert canary not in text


def test_same_seed_same_frame() -> None:
    def run(seed: int) -> pd.DataFrame:
        clock = FakeClock(T0)
        fake = PlacementScoreFake(seed=seed, clock=clock, few_types_cap=None, throttle_rate=0.3)
        queries = [query(fake, t, "us-east-1", "eu-west-1") for t in ("m5.large", "c5.large")]
        return collector(fake, clock, queries).collect().frame

    pd.testing.assert_frame_equal(run(11), run(11))
    assert not run(11).equals(run(12))


def test_bad_options_are_refused_clearly(fake: PlacementScoreFake, clock: FakeClock) -> None:
    q = query(fake, "m5.large", "us-east-1")
    with pytest.raises(ConfigError, match="target_capacity=0"):
        collector(fake, clock, [q], target_capacity=0)
    with pytest.raises(ConfigError, match="its own name"):
        collector(fake, clock, [q], names=("a", "a"))
    with pytest.raises(ConfigError, match="names 11 regions"):
        collector(fake, clock, [Query("m5.large", tuple(fake.regions[:11]), 30)])
    with pytest.raises(ConfigError, match="non-empty name"):
        AwsAccount(name=" ", client_factory=lambda: None)


# --- the fake itself -------------------------------------------------------------------------------


def test_fake_scores_fall_with_capacity_and_few_types_score_low(clock: FakeClock) -> None:
    fake = PlacementScoreFake(seed=3, clock=clock)
    capped = PlacementScoreFake(seed=3, clock=clock, few_types_cap=None)
    zones = [z for r in fake.regions for z in fake.zones_of(r)]
    three = ["m5.large", "m5a.large", "m6i.large"]
    for zone in zones:
        assert (fake.score("m5.large", zone, 1) or 0) <= 3
        falling = [capped.score(three, zone, capacity) or 0 for capacity in (1, 50, 2000)]
        assert falling == sorted(falling, reverse=True) and falling[-1] >= 1
    assert max(fake.score(three, z, 1) or 0 for z in zones) > 3
    assert fake.region_score(three, "us-east-1", 10) is not None


def test_fake_limits_new_configurations_per_rolling_day(clock: FakeClock) -> None:
    fake = PlacementScoreFake(seed=3, clock=clock, config_limit=1)
    first = {"InstanceTypes": ["m5.large"], "TargetCapacity": 1, "SingleAvailabilityZone": True}
    other = {**first, "TargetCapacity": 2}
    assert fake.answer("a", first)[0] == 200
    assert fake.answer("a", other)[1]["Error"]["Code"] == "MaxConfigLimitExceeded"
    assert fake.answer("a", first)[0] == 200  # a repeat is free
    assert fake.answer("b", other)[0] == 200  # another account has its own budget
    clock.advance(CONFIG_WINDOW.total_seconds())
    assert fake.answer("a", other)[0] == 200


def test_fake_refuses_a_foreign_next_token(fake: PlacementScoreFake) -> None:
    client = fake.install(session().client("ec2"), account="a")
    with pytest.raises(ClientError) as caught:
        client.get_spot_placement_scores(InstanceTypes=["m5.large"], TargetCapacity=1, NextToken="0.1.bad")
    assert caught.value.response["Error"]["Code"] == "InvalidPaginationToken"
    assert fake.calls[-1].outcome is Outcome.INVALID and fake.calls[-1].account == "a"


# --- scale -----------------------------------------------------------------------------------------


def test_a_days_book_and_thousands_of_queries(clock: FakeClock) -> None:
    """A day's book (50,000 records) and 3,000 queries: every query goes to the right account.

    The collector asks the book per query and account, and the fake counts configurations per call:
    were either a walk over every record (the cost this size would show as minutes, not about a
    second), this test would crawl. Its time is measured in benchmarks/, not asserted here."""
    fake = PlacementScoreFake(seed=7, clock=clock, config_limit=10**6)  # the book holds the budgets
    names = ("a", "b", "c")
    queries = [query(fake, f"x{i}.large", "us-east-2") for i in range(3000)]
    keys = [configuration_key(q, CAPACITY) for q in queries]
    served: list[ServedConfiguration] = []
    repeats: dict[str, str] = {}
    for i, key in enumerate(keys):
        if i % 3 == 0:  # served an hour ago: a free repeat for that account
            repeats[key] = names[i // 3 % 3]
            served.append(ServedConfiguration(key=key, account=repeats[key], at=T0 - timedelta(hours=1)))
        elif i % 3 == 1:  # counted against the budget, but too old to repeat for free: a new one
            served.append(ServedConfiguration(key=key, account=names[i % 2], at=T0 - CONFIG_WINDOW))
    older = 50_000 - len(served)  # the rest over the last 25 h, unevenly; past 24 h 5 min: not counted
    served += [
        ServedConfiguration(
            key=f"y{j}.large|us-east-1|{CAPACITY}",
            account="aaabbcc"[j % 7],
            at=T0 - j * timedelta(hours=25) / older,
        )
        for j in range(older)
    ]
    used = Counter(s.account for s in served if T0 - s.at < CONFIG_WINDOW + WINDOW_MARGIN)
    budget = dict(zip(names, (700, 800, 900), strict=True))  # 2,400 for 2,000 new configurations
    accounts = [account(fake, n, limit=used[n] + budget[n]) for n in names]
    expected: dict[str, str] = {}
    for key in keys:  # the rule: the account that served it, else the most budget left (ties: order)
        if key in repeats:
            expected[key] = repeats[key]
        else:
            expected[key] = max(names, key=lambda n: (budget[n], -names.index(n)))
            budget[expected[key]] -= 1
    book = AccountBook(served=served)

    result = collector(fake, clock, queries, accounts=accounts, book=book).collect()

    assert result.report.complete and (result.report.succeeded, result.report.requests) == (3000, 3000)
    assert result.served_by == expected
    assert set(Counter(expected[k] for k in keys if k not in repeats)) == set(names)  # all took new ones
    assert len(result.book.served) == used.total() + 2000  # pruned: the records out of the window
    assert {n: fake.configurations(n) for n in names} == Counter(expected.values())  # the fake's count
    assert result.accounts == dict.fromkeys(names, AccountStatus.USABLE) | {
        n: AccountStatus.FULL for n in names if budget[n] == 0
    }


# --- streams ---------------------------------------------------------------------------------------


def test_streams_decide_as_the_sequence_does(clock: FakeClock) -> None:
    """Four accounts, run in sequence and as streams: the same rows, report, failures, book, notes.

    a holds only a repeat and is denied; b's budget is used up in the book (it serves a repeat);
    c's true limit is 2 where the book believes 10 (refuses the third: full); d is throttled. The
    backoff waits nothing, so the fake clock stands still and the book's times agree too."""

    def run(concurrency: int) -> tuple[AwsSpsResult, PlacementScoreFake]:
        clock = FakeClock(T0)
        fake = PlacementScoreFake(seed=7, clock=clock, few_types_cap=None, account_limits={"c": 2})
        fake.inject(FaultKind.ACCESS_DENIED, account="a")
        fake.inject(FaultKind.THROTTLING, account="d", first=2, times=2)
        new = [query(fake, t, "eu-west-1", "us-east-1") for t in ("m5.large", "c5.large", "r5.large")]
        new += [query(fake, t, "us-west-2") for t in ("m6i.large", "c6i.large", "r6i.large")]
        repeat_a, repeat_b = query(fake, "t3.large", "eu-west-2"), query(fake, "t3.small", "eu-west-2")
        bad = Query("m5.large", ("mars-north-1",), 3)
        queries = [*new[:3], repeat_b, *new[3:], new[0], repeat_a, bad]
        book = AccountBook(
            served=[
                ServedConfiguration(key=configuration_key(q, CAPACITY), account=n, at=T0 - timedelta(hours=1))
                for q, n in ((repeat_a, "a"), (repeat_b, "b"))
            ]
        )
        accounts = [account(fake, "a", limit=1), account(fake, "b", limit=1)]
        accounts += [account(fake, "c"), account(fake, "d")]
        result = AwsSpsCollector(
            queries=queries,
            target_capacity=CAPACITY,
            accounts=accounts,
            book=book,
            clock=clock,
            backoff=Backoff(base=0.0, cap=0.0),
            concurrency=concurrency,
        ).collect()
        return result, fake

    (sequence, seq_fake), (streams, fake) = run(1), run(8)

    balanced(streams)
    pd.testing.assert_frame_equal(streams.frame, sequence.frame)
    report, expected = streams.report, sequence.report
    counts = ("planned", "succeeded", "failed", "requests", "retried", "rows", "notes", "failures")
    assert {c: getattr(report, c) for c in counts} == {c: getattr(expected, c) for c in counts}
    assert streams.failed_queries == sequence.failed_queries
    assert (streams.book, streams.served_by, streams.accounts) == (
        sequence.book,
        sequence.served_by,
        sequence.accounts,
    )
    assert streams.truncated == sequence.truncated
    # The scenario does what it says.
    assert (report.succeeded, report.failed, report.retried) == (9, 1, 2)
    assert [f.reason for f in streams.failed_queries] == [FailureReason.INVALID_REQUEST]
    assert streams.failed_queries[0].account == "d"
    assert streams.accounts == {
        "a": AccountStatus.DENIED,
        "b": AccountStatus.FULL,
        "c": AccountStatus.FULL,
        "d": AccountStatus.USABLE,
    }
    assert Counter(streams.served_by.values()) == {"b": 1, "c": 2, "d": 5}
    assert any("account c is full" in n for n in report.notes)
    for name in "abcd":  # each account got the same calls (in another order: refused ones come later)
        mine, theirs = (
            Counter((c.instance_types, c.regions, c.outcome) for c in f.calls if c.account == name)
            for f in (seq_fake, fake)
        )
        assert mine == theirs


@attrs.define
class BarrierClient:
    """An EC2 client whose every call waits for the other account's call (a ``threading.Barrier``)."""

    barrier: threading.Barrier
    entered: list[str]
    name: str

    def get_spot_placement_scores(self, **params: Any) -> dict[str, Any]:
        self.entered.append(self.name)
        self.barrier.wait()  # raises BrokenBarrierError on its timeout: the calls did not overlap
        scores = [{"Region": r, "AvailabilityZoneId": f"{r}-az1", "Score": 7} for r in params["RegionNames"]]
        return {"SpotPlacementScores": scores}


def test_accounts_are_asked_at_the_same_time(fake: PlacementScoreFake, clock: FakeClock) -> None:
    def run(concurrency: int, timeout: float) -> tuple[AwsSpsResult, list[str]]:
        barrier, entered = threading.Barrier(2, timeout=timeout), []
        accounts = [
            AwsAccount(name=n, client_factory=lambda n=n: BarrierClient(barrier, entered, n)) for n in "ab"
        ]
        queries = [query(fake, t, "us-east-1") for t in ("m5.large", "c5.large")]  # one per account
        return collector(fake, clock, queries, accounts=accounts, concurrency=concurrency).collect(), entered

    result, entered = run(concurrency=8, timeout=10.0)  # would wait out the timeout, one at a time
    assert result.report.complete and sorted(entered) == ["a", "b"]
    assert result.served_by == {
        f"m5.large|us-east-1|{CAPACITY}": "a",
        f"c5.large|us-east-1|{CAPACITY}": "b",
    }
    assert len(result.frame) == 2 and set(result.frame["score_value"]) == {7}
    with pytest.raises(threading.BrokenBarrierError):  # in sequence, the first call waits alone
        run(concurrency=1, timeout=0.2)


def test_concurrency_must_be_positive(fake: PlacementScoreFake, clock: FakeClock) -> None:
    with pytest.raises(ConfigError, match="concurrency=0"):
        collector(fake, clock, [query(fake, "m5.large", "us-east-1")], concurrency=0)


@attrs.define
class SlowClient:
    """An EC2 client that takes ``delay`` seconds per call and counts them; ``fail`` raises a bug."""

    delay: float = 0.0
    fail: bool = False
    calls: list[str] = attrs.field(factory=list)
    after: Callable[[int], None] | None = None

    def get_spot_placement_scores(self, **params: Any) -> dict[str, Any]:
        self.calls.append(params["InstanceTypes"][0])
        if self.fail:
            raise RuntimeError("a bug in a worker")
        time.sleep(self.delay)
        if self.after is not None:
            self.after(len(self.calls))
        scores = [{"Region": r, "AvailabilityZoneId": f"{r}-az1", "Score": 5} for r in params["RegionNames"]]
        return {"SpotPlacementScores": scores}


def plain_queries(n: int) -> list[Query]:
    return [Query(f"m{i}.large", ("us-east-1",), 1) for i in range(n)]


def test_a_query_that_fails_unspent_frees_its_reservation_for_the_next(
    fake: PlacementScoreFake, clock: FakeClock
) -> None:
    """One account with budget for two new configurations; the first query EC2 refuses outright
    (never counted). In sequence the next two are scored; streams must not fail the third because
    the round had reserved a unit for the refused one."""
    bad = Query("m5.large", ("mars-north-1",), 3)
    queries = [bad, query(fake, "c5.large", "us-east-1"), query(fake, "r5.large", "us-east-1")]

    def run(concurrency: int) -> AwsSpsResult:
        accounts = [account(fake, "a", limit=2)]
        return collector(fake, clock, queries, accounts=accounts, concurrency=concurrency).collect()

    sequence, streams = run(1), run(8)
    assert (sequence.report.succeeded, streams.report.succeeded) == (2, 2)
    assert [f.reason for f in streams.failed_queries] == [FailureReason.INVALID_REQUEST]
    assert streams.book == sequence.book and streams.served_by == sequence.served_by


def test_a_stream_that_raises_stops_the_others_before_their_next_query(clock: FakeClock) -> None:
    broken, slow = SlowClient(fail=True), SlowClient(delay=0.02)
    accounts = [
        AwsAccount(name="a", client_factory=lambda: broken),
        AwsAccount(name="b", client_factory=lambda: slow),
    ]
    run = AwsSpsCollector(
        queries=plain_queries(20), target_capacity=CAPACITY, accounts=accounts, clock=clock, concurrency=8
    )
    with pytest.raises(RuntimeError, match="a bug in a worker"):
        run.collect()
    assert broken.calls == ["m0.large"]
    assert len(slow.calls) < 10  # b's queue had 10 queries; it stopped at the next one


def test_a_stop_set_from_outside_sends_no_further_query(clock: FakeClock) -> None:
    stop = threading.Event()
    client = SlowClient(after=lambda n: stop.set() if n == 3 else None)
    for concurrency in (1, 8):
        client.calls.clear()
        stop.clear()
        run = AwsSpsCollector(
            queries=plain_queries(12),
            target_capacity=CAPACITY,
            accounts=[AwsAccount(name="a", client_factory=lambda: client, config_limit=50)],
            clock=clock,
            concurrency=concurrency,
        )
        with pytest.raises(CollectionStopped, match="stopped after 3 of 12 queries"):
            run.collect(stop=stop)
        assert len(client.calls) == 3


def test_a_cancelled_acollect_stops_its_thread(clock: FakeClock) -> None:
    client = SlowClient(delay=0.02)
    run = AwsSpsCollector(
        queries=plain_queries(200),
        target_capacity=CAPACITY,
        accounts=[AwsAccount(name="a", client_factory=lambda: client, config_limit=500)],
        clock=clock,
    )

    async def cancel_soon() -> None:
        task = asyncio.ensure_future(run.acollect())
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(cancel_soon())
    sent = len(client.calls)
    time.sleep(0.1)
    assert 0 < sent < 200 and len(client.calls) == sent  # nothing sent after the cancellation
