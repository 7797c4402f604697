"""An invalid S3 bucket name in a store URL is a usage error, caught before any network call.

``parse_s3_url`` applies S3's naming rules for general purpose buckets; the CLI maps the
``ConfigError`` to exit 2 and prints which rule the name breaks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import boto3
import pytest

from spotlake.cli import main
from spotlake.errors import ConfigError
from spotlake.storage import open_store
from spotlake.storage.s3 import S3Store, parse_s3_url

VALID = [
    "abc",
    "my-bucket",
    "spotlake-test-bucket",
    "my.dotted.bucket",
    "a1.b2-c3",
    "0bucket9",
    "1.2.3",  # three numbers are not an IP address
    "a" * 63,
]

#: (bucket, words the message must contain: the rule it breaks)
INVALID = [
    ("Invalid_Bucket!", "lowercase letters, digits, dots and hyphens"),
    ("MyBucket", "lowercase letters, digits, dots and hyphens"),
    ("my_bucket", "lowercase letters, digits, dots and hyphens"),
    ("ab", "3 to 63 characters"),
    ("a" * 64, "3 to 63 characters"),
    ("-bucket", "start and end with a letter or digit"),
    ("bucket-", "start and end with a letter or digit"),
    (".bucket", "start and end with a letter or digit"),
    ("bucket.", "start and end with a letter or digit"),
    ("my..bucket", "two dots in a row"),
    ("192.168.5.4", "IP address"),
    ("xn--bucket", "prefix 'xn--'"),
    ("sthree-bucket", "prefix 'sthree-'"),
    ("amzn-s3-demo-bucket", "prefix 'amzn-s3-demo-'"),
    ("bucket-s3alias", "suffix '-s3alias'"),
    ("bucket--ol-s3", "suffix '--ol-s3'"),
    ("bucket.mrap", "suffix '.mrap'"),
    ("bucket--x-s3", "suffix '--x-s3'"),
    ("bucket--table-s3", "suffix '--table-s3'"),
]


@pytest.mark.parametrize("bucket", VALID)
def test_valid_names_parse(bucket: str) -> None:
    assert parse_s3_url(f"s3://{bucket}/some/prefix/") == (bucket, "some/prefix")
    assert parse_s3_url(f"s3://{bucket}") == (bucket, "")


@pytest.mark.parametrize(("bucket", "rule"), INVALID)
def test_invalid_names_are_config_errors_naming_rule_and_bucket(bucket: str, rule: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_s3_url(f"s3://{bucket}/x")
    message = str(caught.value)
    assert rule in message
    assert repr(bucket) in message


def test_the_message_lists_the_characters_not_allowed() -> None:
    with pytest.raises(ConfigError, match=r"\(found 'I', '_', 'B', '!'"):
        parse_s3_url("s3://Invalid_Bucket!/x")


def test_open_store_refuses_before_building_a_client(monkeypatch: pytest.MonkeyPatch) -> None:
    # No client is built (one would need a region and credentials): the URL alone is refused.
    def no_client(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a boto3 client was built for an invalid store URL")

    monkeypatch.setattr(boto3, "client", no_client)
    with pytest.raises(ConfigError, match="Invalid_Bucket"):
        open_store("s3://Invalid_Bucket!/x")
    with pytest.raises(ConfigError, match=r"my\.\.bucket"):
        S3Store.from_url("s3://my..bucket/x")


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[str]:
    """Dummy Azure and AWS settings, and a log of every AWS request (there must be none)."""
    monkeypatch.setenv("AZURE_TENANT_ID", "00000000-0000-0000-0000-000000000001")
    monkeypatch.setenv("AZURE_CLIENT_ID", "00000000-0000-0000-0000-000000000002")
    monkeypatch.setenv("AZURE_CLIENT_SECRET", "not-a-secret")
    monkeypatch.setenv("AZURE_SUBSCRIPTION_IDS", "00000000-0000-0000-0000-000000000003")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    boto3.setup_default_session()
    assert boto3.DEFAULT_SESSION is not None
    sent: list[str] = []

    def refuse(request: Any, **_: Any) -> None:
        sent.append(request.url)
        raise AssertionError(f"network call for an invalid store URL: {request.url}")

    boto3.DEFAULT_SESSION.events.register("before-send", refuse)
    return sent


@pytest.mark.parametrize(
    ("argv", "rule"),
    [
        (["collect", "azure", "--store", "s3://Invalid_Bucket!/x"], "lowercase letters"),
        (["collect", "azure", "--store", "s3://my..bucket/x", "--timestream"], "two dots in a row"),
        (["status", "--store", "s3://MyBucket/spotlake"], "lowercase letters"),
        (["status", "--store", "s3://ab/spotlake"], "3 to 63 characters"),
        (["status", "--store", "s3://10.0.0.1/spotlake"], "IP address"),
        (["show", "--store", "s3://xn--lake/spotlake"], "prefix 'xn--'"),
    ],
)
def test_cli_exits_2_with_the_rule(
    argv: list[str], rule: str, cli_env: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*argv, "--quiet"]) == 2
    err = capsys.readouterr().err
    bucket = argv[argv.index("--store") + 1].removeprefix("s3://").split("/")[0]
    assert err.startswith("spotlake: ")
    assert rule in err and repr(bucket) in err
    assert "Traceback" not in err
    assert cli_env == []
