"""Small helpers shared by the AWS adapters: lazy boto3 clients and reading botocore errors.

boto3 is imported only here and only when a client has to be built, so ``import spotlake`` and the
local store never pay for it.
"""

from __future__ import annotations

from typing import Any

from spotlake.errors import StorageError

__all__ = ["error_code", "error_message", "http_status", "make_client", "transport_error"]

#: Error codes meaning "the caller may not do this" across S3, Timestream and CloudWatch.
ACCESS_DENIED_CODES = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "UnauthorizedOperation",
        "UnrecognizedClientException",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "ExpiredTokenException",
    }
)


def make_client(service: str, *, region_name: str | None = None) -> Any:
    """A boto3 client for ``service`` from the default credential chain and endpoint settings.

    The endpoint settings are ``AWS_ENDPOINT_URL``, ``AWS_ENDPOINT_URL_<SERVICE>`` and the shared
    config file's ``endpoint_url`` (globally or in a ``services`` section); botocore applies them to
    every client. A service with endpoint discovery (Timestream write) needs one more step: botocore
    skips discovery only for an ``endpoint_url`` passed to the client, so with a *configured*
    endpoint it still asks that endpoint for an address (``DescribeEndpoints``) and sends the writes
    there, which is the real service when the configured endpoint is a local stand-in. A configured
    endpoint is therefore passed explicitly, and wins over discovery.
    """
    try:
        import boto3
    except ImportError as exc:  # pragma: no cover - boto3 is a declared dependency
        raise StorageError(f"the {service} adapter needs boto3: pip install boto3") from exc
    where: dict[str, Any] = {"region_name": region_name} if region_name else {}
    client = boto3.client(service, **where)
    if client.meta.service_model.endpoint_discovery_operation is None:
        return client
    from botocore.config import Config

    # The endpoint the client would use without the settings: a different one means a configured one.
    default = boto3.client(service, config=Config(ignore_configured_endpoint_urls=True), **where)
    if client.meta.endpoint_url == default.meta.endpoint_url:
        return client
    return boto3.client(service, endpoint_url=client.meta.endpoint_url, **where)


def error_code(exc: BaseException) -> str | None:
    """The AWS error code of a botocore ``ClientError`` (``None`` for anything else)."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        return str(code) if code is not None else None
    return None


def error_message(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        message = response.get("Error", {}).get("Message")
        if message:
            return str(message)
    return str(exc)


def http_status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return int(status) if status is not None else None
    return None


def transport_error(exc: BaseException) -> bool:
    """True for botocore's non-HTTP failures (no credentials, endpoint unreachable, timeouts)."""
    try:
        from botocore.exceptions import BotoCoreError
    except ImportError:  # pragma: no cover
        return False
    return isinstance(exc, BotoCoreError)
