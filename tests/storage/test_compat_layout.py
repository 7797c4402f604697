"""The original deployment's S3 layout (docs/operations.md): exact keys and contents."""

from __future__ import annotations

import gzip
import io
import json
from datetime import timedelta
from typing import Any

import pandas as pd
import pytest
from storage_samples import RUN_AT, snapshot_frame

from spotlake.errors import ConfigError, StorageError
from spotlake.storage.compat import LATEST_KEY, QUERY_SELECTOR_KEY, CompatWriter, raw_key, to_original_frame

BUCKET = "spotlake-test-bucket"


def body(client: Any, key: str) -> bytes:
    data: bytes = client.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    return data


def test_a_row_served_with_its_last_known_values_says_when_it_was_observed() -> None:
    snapshot = snapshot_frame(2)
    snapshot.loc[1, "observed_at"] = pd.Timestamp(RUN_AT - timedelta(minutes=110))
    frame = to_original_frame(snapshot, run_at=RUN_AT)
    assert frame["time"].tolist() == [
        f"{RUN_AT:%Y-%m-%d %H:%M:%S}",
        f"{RUN_AT - timedelta(minutes=110):%Y-%m-%d %H:%M:%S}",
    ]


def test_original_columns() -> None:
    frame = to_original_frame(snapshot_frame(4), run_at=RUN_AT)
    assert list(frame.columns) == [
        "InstanceTier",
        "InstanceType",
        "Region",
        "AvailabilityZone",
        "DesiredCount",
        "OndemandPrice",
        "SpotPrice",
        "Savings",
        "IF",
        "Score",
        "T2",
        "T3",
        "time",
    ]
    assert frame.loc[1, "InstanceTier"] == "Standard" and frame.loc[1, "InstanceType"] == "D1s_v5"
    assert frame.loc[1, "Region"] == "East US" and frame.loc[0, "time"] == "2026-03-14 12:30:00"
    with pytest.raises(ConfigError):
        to_original_frame(snapshot_frame(1).drop(columns=["t2"]), run_at=RUN_AT)


def test_writes_the_three_original_objects(s3_client: Any) -> None:
    writer = CompatWriter(client=s3_client, bucket=BUCKET)
    keys = writer.write(snapshot_frame(5), run_at=RUN_AT)
    assert keys == ["rawdata/azure/2026/03/14/12-30-00.csv.gz", QUERY_SELECTOR_KEY, LATEST_KEY]
    assert raw_key(RUN_AT) == keys[0]

    latest = json.loads(body(s3_client, LATEST_KEY))
    assert len(latest) == 5 and [r["id"] for r in latest] == [1, 2, 3, 4, 5]
    assert latest[0]["AvailabilityZone"] == "N/A" and latest[0]["OndemandPrice"] == -1  # original fills
    assert latest[1]["SpotPrice"] == pytest.approx(0.0101) and latest[1]["Score"] == "Medium"

    csv = pd.read_csv(io.BytesIO(gzip.decompress(body(s3_client, keys[0]))))
    assert len(csv) == 5 and pd.isna(csv.loc[0, "OndemandPrice"])

    selector = json.loads(body(s3_client, QUERY_SELECTOR_KEY))
    assert selector[0] == {"InstanceTier": "Standard", "InstanceType": "D0s_v5", "Region": "East US"}
    assert len(selector) == 5


def test_query_selector_accumulates_and_reruns_are_idempotent(s3_client: Any) -> None:
    writer = CompatWriter(client=s3_client, bucket=BUCKET)
    writer.write(snapshot_frame(3), run_at=RUN_AT)
    first = body(s3_client, raw_key(RUN_AT))
    writer.write(snapshot_frame(3), run_at=RUN_AT)
    assert body(s3_client, raw_key(RUN_AT)) == first  # same run, same object
    writer.write(snapshot_frame(6), run_at=RUN_AT + timedelta(minutes=10))
    selector = json.loads(body(s3_client, QUERY_SELECTOR_KEY))
    assert len(selector) == 6  # union of both runs, no duplicates


def test_broken_selector_is_reported(s3_client: Any) -> None:
    s3_client.put_object(Bucket=BUCKET, Key=QUERY_SELECTOR_KEY, Body=b"{oops")
    with pytest.raises(StorageError, match="not JSON"):
        CompatWriter(client=s3_client, bucket=BUCKET).write(snapshot_frame(2), run_at=RUN_AT)
