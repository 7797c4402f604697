"""Keys, names and codecs of the store layout."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hypothesis_support import examples
from spotlake.errors import ConfigError, CorruptStoreError
from spotlake.storage.layout import (
    Pointer,
    check_name,
    decode_doc,
    decode_frame,
    encode_doc,
    frame_key,
    new_version,
    parse_frame_key,
    run_minute,
    version_seq,
)


def test_frame_keys_are_hive_partitioned_and_utc() -> None:
    at = datetime(2026, 1, 2, 3, 4, 59, tzinfo=UTC)
    assert frame_key("raw", at, "sps") == "raw/source=sps/date=2026-01-02/03-04.parquet"
    assert frame_key("merged", at) == "merged/date=2026-01-02/03-04.parquet"
    assert frame_key("changes", at) == "changes/date=2026-01-02/03-04.parquet"
    # A non-UTC run time files under its UTC minute; a naive one is taken as UTC.
    kst = timezone(timedelta(hours=9))
    assert frame_key("merged", datetime(2026, 1, 2, 12, 4, tzinfo=kst)) == frame_key("merged", at)
    assert frame_key("merged", datetime(2026, 1, 2, 3, 4)) == frame_key("merged", at)


def test_frame_key_rejects_bad_kind_and_source() -> None:
    with pytest.raises(ConfigError, match="source"):
        frame_key("raw", datetime(2026, 1, 1, tzinfo=UTC), "nope")
    with pytest.raises(ConfigError, match="no source"):
        frame_key("merged", datetime(2026, 1, 1, tzinfo=UTC), "sps")
    with pytest.raises(ConfigError, match="unknown frame kind"):
        frame_key("bogus", datetime(2026, 1, 1, tzinfo=UTC))  # type: ignore[arg-type]


@settings(max_examples=examples(60), deadline=None)
@given(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)))
def test_frame_key_round_trips_to_the_run_minute(at: datetime) -> None:
    assert parse_frame_key(frame_key("raw", at, "prices")) == run_minute(at)


def test_parse_frame_key_ignores_other_files() -> None:
    assert parse_frame_key("merged/date=2026-01-01/.12-30.parquet.abc.tmp") is None
    assert parse_frame_key("merged/date=2026-13-01/12-30.parquet") is None
    assert parse_frame_key("merged/12-30.parquet") is None


def test_names_must_be_safe_file_names() -> None:
    assert check_name("doc", "rotation.v2") == "rotation.v2"
    for bad in ["", "../x", "a/b", ".hidden", "x" * 200, "spa ce"]:
        with pytest.raises(ConfigError):
            check_name("doc", bad)


def test_versions_sort_in_commit_order() -> None:
    versions = [new_version(seq) for seq in (0, 9, 10, 99, 12345)]
    assert versions == sorted(versions)
    assert [version_seq(v) for v in versions] == [1, 10, 11, 100, 12346]
    assert new_version(3) != new_version(3)
    assert version_seq("not-a-version") is None


def test_pointer_round_trip_and_corruption() -> None:
    p = Pointer(
        version=new_version(0), seq=1, committed_at=datetime(2026, 1, 1, tzinfo=UTC), run_id="r", previous=()
    )
    assert Pointer.decode(p.encode(), where="x") == p
    with pytest.raises(CorruptStoreError, match="CURRENT"):
        Pointer.decode(b"{not json", where="state/CURRENT")


def test_docs_are_json_and_refuse_nan() -> None:
    doc = {"when": datetime(2026, 1, 1, tzinfo=UTC), "n": 1, "nested": {"a": [1, None]}}
    assert decode_doc(encode_doc(doc, name="d"), where="d") == {
        "when": "2026-01-01T00:00:00+00:00",
        "n": 1,
        "nested": {"a": [1, None]},
    }
    with pytest.raises(ConfigError, match="NaN"):
        encode_doc({"x": float("nan")}, name="d")
    with pytest.raises(ConfigError, match="not JSON"):
        encode_doc({"x": object()}, name="d")
    with pytest.raises(CorruptStoreError):
        decode_doc(b"[1, 2]", where="d")


def test_undecodable_parquet_is_a_corrupt_store_error() -> None:
    with pytest.raises(CorruptStoreError, match="somewhere"):
        decode_frame(b"PAR1 garbage", where="somewhere")
    assert decode_frame(pd.DataFrame({"a": [1]}).to_parquet(), where="x")["a"].tolist() == [1]
