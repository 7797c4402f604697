"""Fixtures of the compute tests: a moto EC2 (and SQS) in process, offline, on dummy credentials."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from ec2_support import REGION
from moto import mock_aws

from aws_support import offline_aws
from spotlake.clock import FakeClock

# --- fixtures ------------------------------------------------------------------------------------


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Offline AWS (tests/aws_support.py): nothing a test does can reach a real service."""
    offline_aws(monkeypatch, tmp_path, region=REGION)


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
