"""The S3 store against moto: empty bucket, the local layout, conditional writes, lock, errors."""

from __future__ import annotations

import json
import re
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber
from storage_samples import RAW_FRAMES, RUN_AT, changes_frame, snapshot_frame

from spotlake.clock import FakeClock
from spotlake.errors import ConfigError, ConflictError, LockedError, StorageError
from spotlake.storage import LocalStore, open_store
from spotlake.storage.s3 import LOCK_KEY, S3Store, parse_s3_url

BUCKET = "spotlake-test-bucket"
PREFIX = "team/spotlake"


@pytest.fixture
def store(s3_client: Any, clock: FakeClock) -> S3Store:
    return S3Store(BUCKET, PREFIX, client=s3_client, clock=clock, keep_generations=2, poll_seconds=5)


def keys(client: Any, prefix: str = PREFIX) -> list[str]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix + "/")
    return sorted(o["Key"][len(prefix) + 1 :] for page in pages for o in page.get("Contents", []))


def fill(store: Any) -> str:
    for source, make in RAW_FRAMES.items():
        store.put_frame(kind="raw", source=source, at=RUN_AT, frame=make())
    store.put_frame(kind="merged", at=RUN_AT, frame=snapshot_frame(6))
    store.put_frame(kind="changes", at=RUN_AT, frame=changes_frame(6))
    version: str = store.commit_state(
        expected_version=None, frames={"history": snapshot_frame(4)}, docs={"rotation": {"index": 2}}
    )
    return version


def test_moto_honours_conditional_puts(s3_client: Any) -> None:
    """Checked, not assumed: moto 5.2 answers 412 to a failed If-None-Match / If-Match on PutObject."""
    first = s3_client.put_object(Bucket=BUCKET, Key="k", Body=b"1", IfNoneMatch="*")
    with pytest.raises(ClientError, match="PreconditionFailed"):
        s3_client.put_object(Bucket=BUCKET, Key="k", Body=b"2", IfNoneMatch="*")
    with pytest.raises(ClientError, match="PreconditionFailed"):
        s3_client.put_object(Bucket=BUCKET, Key="k", Body=b"3", IfMatch='"0000"')
    s3_client.put_object(Bucket=BUCKET, Key="k", Body=b"4", IfMatch=first["ETag"])


def test_parse_s3_url() -> None:
    assert parse_s3_url("s3://bkt/x/y/") == ("bkt", "x/y")  # a bucket name has 3 characters or more
    assert parse_s3_url("s3://bkt") == ("bkt", "")
    with pytest.raises(ConfigError):
        parse_s3_url("s3:///x")


def test_empty_bucket_works_without_seeding(s3_client: Any, clock: FakeClock) -> None:
    store = open_store(f"s3://{BUCKET}/{PREFIX}", s3_client=s3_client, clock=clock)
    assert isinstance(store, S3Store)
    assert store.read_state().version is None
    assert store.latest("merged") is None
    assert len(store.read_frames("raw", source="sps")) == 0
    version = store.commit_state(expected_version=None, frames={}, docs={"a": {"b": 1}})
    assert store.read_state().version == version


def test_same_layout_as_the_local_store(store: S3Store, tmp_path: Path) -> None:
    local = LocalStore(tmp_path, fsync=False)
    s3_version, local_version = fill(store), fill(local)
    local_keys = sorted(
        p.relative_to(tmp_path).as_posix()
        for p in tmp_path.rglob("*")
        if p.is_file() and not p.name.startswith(".")
    )
    s3_keys = keys(store.client)
    assert [k.replace(s3_version, "V") for k in s3_keys] == [
        k.replace(local_version, "V") for k in local_keys
    ]
    assert "raw/source=sps/date=2026-03-14/12-30.parquet" in s3_keys
    assert f"state/generations/{s3_version}/frames/history.parquet" in s3_keys


def test_frames_and_state_round_trip_exactly(store: S3Store) -> None:
    fill(store)
    for source, make in RAW_FRAMES.items():
        pd.testing.assert_frame_equal(store.read_frame(kind="raw", source=source, at=RUN_AT), make())
    pd.testing.assert_frame_equal(store.latest("merged"), snapshot_frame(6))
    pd.testing.assert_frame_equal(store.latest("changes"), changes_frame(6))
    state = store.read_state()
    pd.testing.assert_frame_equal(state.frames["history"], snapshot_frame(4))
    assert state.docs == {"rotation": {"index": 2}}
    assert len(store.read_frames("merged", start=RUN_AT, end=RUN_AT)) == 6


def test_first_and_later_commits_are_conditional(store: S3Store) -> None:
    seen: list[dict[str, Any]] = []

    def capture(params: dict[str, Any], **_: Any) -> None:
        if params["Key"].endswith("state/CURRENT"):
            seen.append({k: v for k, v in params.items() if k.startswith("If")})

    store.client.meta.events.register("provide-client-params.s3.PutObject", capture)
    v1 = store.commit_state(expected_version=None, frames={}, docs={})
    store.commit_state(expected_version=v1, frames={}, docs={})
    assert seen[0] == {"IfNoneMatch": "*"}
    assert set(seen[1]) == {"IfMatch"} and re.fullmatch(r'"[0-9a-f]+"', seen[1]["IfMatch"])


def test_commit_loses_the_race_when_the_pointer_moves_underneath(store: S3Store, s3_client: Any) -> None:
    """Another run publishes between our pre-check and our pointer write: If-Match rejects ours."""
    base = store.commit_state(expected_version=None, frames={}, docs={"who": {"n": 0}})
    other = S3Store(BUCKET, PREFIX, client=s3_client)
    fired = False

    def other_run_commits(params: dict[str, Any], **_: Any) -> None:
        nonlocal fired
        if params["Key"].endswith("manifest.json") and not fired:
            fired = True
            other.commit_state(expected_version=base, frames={}, docs={"who": {"n": 2}}, run_id="other")

    s3_client.meta.events.register("provide-client-params.s3.PutObject", other_run_commits)
    with pytest.raises(ConflictError, match="other"):
        store.commit_state(expected_version=base, frames={}, docs={"who": {"n": 1}})
    s3_client.meta.events.unregister("provide-client-params.s3.PutObject", other_run_commits)
    assert store.read_state().docs == {"who": {"n": 2}}
    # Our unpublished generation was removed; only the winner's chain is left.
    assert len(store.generations()) == 2


def test_two_writers_on_one_prefix_exactly_one_commits(s3_client: Any) -> None:
    a, b = S3Store(BUCKET, PREFIX, client=s3_client), S3Store(BUCKET, PREFIX, client=s3_client)
    sa, sb = a.read_state(), b.read_state()
    a.commit_state(expected_version=sa.version, frames={}, docs={"w": {"by": "a"}})
    with pytest.raises(ConflictError):
        b.commit_state(expected_version=sb.version, frames={}, docs={"w": {"by": "b"}})
    assert b.read_state().docs == {"w": {"by": "a"}}


def test_failed_write_mid_commit_keeps_the_old_state(store: S3Store, s3_client: Any) -> None:
    old = store.commit_state(expected_version=None, frames={"f": snapshot_frame(2)}, docs={"d": {"v": 1}})
    for fail_at in range(1, 5):  # frame, doc, manifest, pointer
        calls = 0

        def fail(params: dict[str, Any], _at: int = fail_at, **_: Any) -> None:
            nonlocal calls
            calls += 1
            if calls == _at:
                raise ClientError({"Error": {"Code": "InternalError", "Message": "boom"}}, "PutObject")

        s3_client.meta.events.register("before-call.s3.PutObject", fail)
        with pytest.raises(StorageError, match="InternalError"):
            store.commit_state(expected_version=old, frames={"f": snapshot_frame(3)}, docs={"d": {"v": 2}})
        s3_client.meta.events.unregister("before-call.s3.PutObject", fail)
        state = store.read_state()
        assert state.version == old and state.docs == {"d": {"v": 1}}
        if fail_at < 4:
            assert store.generations() == [old]
        else:
            # A failed pointer PUT may still be applied (a timeout): its complete generation is
            # left to the next commit's garbage collection.
            assert len(store.generations()) == 2
    newer = store.commit_state(expected_version=old, frames={"f": snapshot_frame(3)}, docs={"d": {"v": 3}})
    assert newer in store.generations() and len(store.generations()) == 2, "the orphan was collected"


def test_old_generations_are_collected(store: S3Store) -> None:
    versions: list[str] = []
    version = None
    for i in range(4):
        version = store.commit_state(
            expected_version=version, frames={"f": snapshot_frame(1)}, docs={"i": {"i": i}}
        )
        versions.append(version)
    assert store.generations() == versions[-2:]


def test_lock_excludes_a_second_run_and_is_released(store: S3Store, s3_client: Any, clock: FakeClock) -> None:
    other = S3Store(BUCKET, PREFIX, client=s3_client, clock=clock, poll_seconds=5)
    with store.lock("run-a") as info:
        assert info.expires_at == info.acquired_at + timedelta(minutes=30)
        assert LOCK_KEY in keys(s3_client)
        with (
            pytest.raises(LockedError, match=r"run 'run-a' \(pid \d+ on host .*\) since .*expires at") as exc,
            other.lock("run-b", timeout=20),
        ):
            pass
        assert "after waiting 20 s" in str(exc.value)
        assert clock.slept == [5, 5, 5, 5]
    assert LOCK_KEY not in keys(s3_client)
    with other.lock("run-b") as info:
        assert info.recovered is None


def test_expired_lock_is_taken_over_and_not_deleted_by_its_old_owner(
    store: S3Store, s3_client: Any, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    other = S3Store(BUCKET, PREFIX, client=s3_client, clock=clock)
    with caplog.at_level("WARNING"), store.lock("dead-run"):
        clock.advance(31 * 60)  # the holder "died": its lock expires
        with other.lock("next-run") as info:
            assert info.recovered is not None and "dead-run" in info.recovered
            lock_body = s3_client.get_object(Bucket=BUCKET, Key=f"{PREFIX}/{LOCK_KEY}")["Body"].read()
            assert b"next-run" in lock_body
        clock.advance(1)
        # the new holder released; the first one now exits and must not fail
    assert "took over the expired lock" in caplog.text
    assert LOCK_KEY not in keys(s3_client)


def test_lock_released_by_a_run_whose_lock_was_taken_over_keeps_the_new_lock(
    store: S3Store, s3_client: Any, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    other = S3Store(BUCKET, PREFIX, client=s3_client, clock=clock)
    first = store.lock("slow-run")
    first.__enter__()
    clock.advance(31 * 60)
    second = other.lock("next-run")
    second.__enter__()
    with caplog.at_level("WARNING"):
        first.__exit__(None, None, None)  # conditional delete: the lock is no longer ours
    assert "taken over" in caplog.text
    assert LOCK_KEY in keys(s3_client)
    second.__exit__(None, None, None)
    assert LOCK_KEY not in keys(s3_client)


def test_missing_bucket_and_access_denied_are_clear(s3_client: Any) -> None:
    with pytest.raises(StorageError, match="bucket 'no-such-bucket' does not exist"):
        S3Store("no-such-bucket", "p", client=s3_client).put_frame(
            kind="merged", at=RUN_AT, frame=snapshot_frame(1)
        )
    store = S3Store(BUCKET, PREFIX, client=s3_client)
    with Stubber(s3_client) as stub:
        stub.add_client_error("get_object", service_error_code="AccessDenied", http_status_code=403)
        with pytest.raises(StorageError, match=r"access denied .* s3:GetObject"):
            store.read_state()


def test_pointer_write_that_landed_but_reported_failure_is_kept(store: S3Store, s3_client: Any) -> None:
    """A lost response whose retry fails If-Match: the commit did happen and must not be undone."""
    import boto3

    plain = boto3.client("s3", region_name="us-east-1")
    base = store.commit_state(expected_version=None, frames={}, docs={"n": {"v": 0}})

    def land_then_fail(params: dict[str, Any], **_: Any) -> None:
        if params["Key"].endswith("state/CURRENT"):
            plain.put_object(**params)
            raise ClientError({"Error": {"Code": "PreconditionFailed", "Message": "retry lost"}}, "PutObject")

    s3_client.meta.events.register("provide-client-params.s3.PutObject", land_then_fail)
    version = store.commit_state(expected_version=base, frames={}, docs={"n": {"v": 1}})
    s3_client.meta.events.unregister("provide-client-params.s3.PutObject", land_then_fail)
    state = store.read_state()
    assert state.version == version and state.docs == {"n": {"v": 1}}


def test_two_runs_taking_over_an_expired_lock_only_one_gets_it(
    store: S3Store, s3_client: Any, clock: FakeClock
) -> None:
    dead = store.lock("dead-run")
    dead.__enter__()
    clock.advance(31 * 60)
    rival = S3Store(BUCKET, PREFIX, client=s3_client, clock=clock).lock("rival")
    fired = False

    def rival_first(params: dict[str, Any], **_: Any) -> None:
        nonlocal fired
        if params["Key"].endswith(LOCK_KEY) and "IfMatch" in params and not fired:
            fired = True
            rival.__enter__()  # the rival's takeover lands between our read and our conditional put

    s3_client.meta.events.register("provide-client-params.s3.PutObject", rival_first)
    with pytest.raises(LockedError, match="rival"), store.lock("late-run"):
        pass
    s3_client.meta.events.unregister("provide-client-params.s3.PutObject", rival_first)
    assert fired
    rival.__exit__(None, None, None)


def _lock_expiry(client: Any) -> str:
    body = client.get_object(Bucket=BUCKET, Key=f"{PREFIX}/{LOCK_KEY}")["Body"].read()
    return str(json.loads(body)["expires_at"])


def test_a_live_run_renews_its_lock_so_it_never_looks_dead(s3_client: Any, clock: FakeClock) -> None:
    """Before: a run outlasting the 30-minute TTL had its lock taken over while it still worked."""
    store = S3Store(BUCKET, PREFIX, client=s3_client, clock=clock, heartbeat=0.02)
    other = S3Store(BUCKET, PREFIX, client=s3_client, clock=clock)
    with store.lock("long-run") as info:
        clock.advance(31 * 60)  # longer than the TTL: without a heartbeat the lock would be stale
        deadline = time.monotonic() + 5
        while _lock_expiry(s3_client) == info.expires_at.isoformat() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert _lock_expiry(s3_client) > clock.now().isoformat(), "the heartbeat pushed the expiry on"
        with pytest.raises(LockedError, match="keeps renewing"), other.lock("next-run"):
            pass
    assert LOCK_KEY not in keys(s3_client)


def test_a_run_whose_lock_was_taken_over_learns_it_at_its_next_renewal(
    store: S3Store, s3_client: Any, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    from spotlake.storage._s3_lock import S3RunLock

    stalled = S3RunLock(store.backend, clock=clock, ttl=timedelta(minutes=30), poll_seconds=5)  # type: ignore[arg-type]
    held = stalled.hold("stalled-run", timeout=0)
    info = held.__enter__()
    clock.advance(31 * 60)  # it stalled past the TTL without renewing: another run takes over
    with S3Store(BUCKET, PREFIX, client=s3_client, clock=clock).lock("next-run"):
        with caplog.at_level("ERROR"):
            assert stalled.renew(info) is False
        assert stalled.lost.is_set() and "was taken over by another run" in caplog.text
        held.__exit__(None, None, None)  # must not delete the new holder's lock
        assert LOCK_KEY in keys(s3_client)
