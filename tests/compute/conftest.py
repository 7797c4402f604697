"""Fixtures of the compute tests: a moto EC2 (and SQS) in process, offline, on dummy credentials."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from ec2_support import REGION
from moto import mock_aws

from spotlake.clock import FakeClock

# --- fixtures ------------------------------------------------------------------------------------


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Dummy credentials, no endpoint settings (any ``AWS_ENDPOINT_URL*``), no profile or config
    files, a fresh boto3 default session: nothing a test does can reach a real service."""
    for var in [v for v in os.environ if v.startswith("AWS_ENDPOINT_URL")]:
        monkeypatch.delenv(var)
    for var in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_REGION"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")  # see ec2_support.ami
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)


@pytest.fixture
def ec2_mock(aws_env: None) -> Iterator[None]:
    with mock_aws():
        yield


@pytest.fixture
def ec2(ec2_mock: None) -> Any:
    """A moto EC2 client in :data:`REGION`."""
    return boto3.client("ec2", region_name=REGION)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2026, 5, 4, 9, 30, tzinfo=UTC))
