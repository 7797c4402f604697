"""Offline AWS for the tests: dummy credentials and no way to reach a real service."""

from __future__ import annotations

import os
from pathlib import Path

import boto3
import pytest

from spotlake.pipeline.aws import AwsAccess
from spotlake.testing.aws.emulator import AwsEmulator


def offline_aws(monkeypatch: pytest.MonkeyPatch, folder: Path, *, region: str = "us-east-1") -> None:
    """Dummy credentials, no endpoint settings (any ``AWS_ENDPOINT_URL*``), no profile or config
    files (``folder`` holds none), no instance metadata, moto's default AMIs not loaded, a fresh
    boto3 default session: nothing a test does can reach a real service."""
    for var in [v for v in os.environ if v.startswith("AWS_ENDPOINT_URL")]:
        monkeypatch.delenv(var)
    for var in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_REGION"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", region)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(folder / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(folder / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")  # see tests/compute/ec2_support.ami
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)


def emulator_access(emu: AwsEmulator) -> AwsAccess:
    """How a cycle reaches the offline AWS world ``emu``: its regions, accounts and clients."""
    return AwsAccess(
        regions=emu.regions,
        accounts=emu.accounts,
        clients=emu.clients,
        advisor_transport=emu.advisor_transport(),
    )
