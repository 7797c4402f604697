"""Credentials: the Azure service principal, bearer tokens for the SPS API, and the Slack webhook.

- :class:`AzureCredentials`: tenant id, client id, client secret (a :class:`spotlake.model.Secret`)
  and the subscription ids to spread SPS calls over. Built from explicit arguments,
  :meth:`~AzureCredentials.from_env` (``AZURE_TENANT_ID``, ``AZURE_CLIENT_ID``,
  ``AZURE_CLIENT_SECRET``, ``AZURE_SUBSCRIPTION_IDS``) or :meth:`~AzureCredentials.from_dynamodb`
  (the original deployment's ``AzureAuth`` table, docs/sps-and-credentials.md).
- :class:`TokenProvider`: wraps ``azure.identity.ClientSecretCredential`` (imported lazily), caches
  the token, refreshes it ``refresh_margin`` before it expires *on the injected clock*, and offers
  :meth:`~TokenProvider.force_refresh` for the collector's 401 path. Sync and async access; it also
  satisfies azure-core's ``TokenCredential`` protocol, so SDK clients (Resource Graph) can share it.
- :func:`slack_webhook`: the failure-notification webhook URL from the environment or SSM.

Secrets never appear in reprs, logs or error messages: messages are built from identifiers only,
and any text coming back from a service goes through :func:`spotlake.redact.scrub` (secrets by
their shape: tokens, secret-named fields, webhook URLs) before it is shown.

A token request that failed on the way (no answer, a 5xx/408/429, or a 2xx whose body is cut or
garbled) is a :class:`TransientCollectError`, retried like any transient error; a refusal of the
credentials (400/401, e.g. ``invalid_client``, ``unauthorized_client``, an unknown tenant) is an
:class:`AuthError`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, Protocol, runtime_checkable
from urllib.parse import urlsplit

import attrs

from spotlake.clock import Clock, SystemClock
from spotlake.collect.base import AzureEndpoints
from spotlake.errors import (
    AuthError,
    CollectError,
    CredentialsError,
    TransientCollectError,
    TransientError,
)
from spotlake.model import Secret
from spotlake.redact import scrub

if TYPE_CHECKING:
    from azure.core.credentials import AccessToken

__all__ = [
    "DEFAULT_AUTH_TABLE",
    "MANAGEMENT_SCOPE",
    "SLACK_WEBHOOK_ENV",
    "SLACK_WEBHOOK_PARAMETER",
    "AzureCredentials",
    "BearerTokenSource",
    "StaticToken",
    "TokenProvider",
    "slack_webhook",
]

log = logging.getLogger(__name__)

#: OAuth scope of Azure Resource Manager (the SPS API lives there).
MANAGEMENT_SCOPE: Final = "https://management.azure.com/.default"
#: The original deployment's credentials table (docs/sps-and-credentials.md).
DEFAULT_AUTH_TABLE: Final = "AzureAuth"
#: Item keys in that table: one service principal for zonal, one for regional collection.
DYNAMODB_KEY_ZONAL: Final = "login_auth_az_true"
DYNAMODB_KEY_REGIONAL: Final = "login_auth_az_false"
SLACK_WEBHOOK_ENV: Final = "SPOTLAKE_SLACK_WEBHOOK_URL"
SLACK_WEBHOOK_PARAMETER: Final = "error_notification_slack_webhook_url"
#: Authority hosts azure-identity knows; any other host (the emulator) skips instance discovery,
#: which would otherwise ask login.microsoftonline.com about it over the internet.
_KNOWN_AUTHORITIES: Final = frozenset(
    {"login.microsoftonline.com", "login.chinacloudapi.cn", "login.microsoftonline.us"}
)
_ENV_VARS: Final = ("AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET", "AZURE_SUBSCRIPTION_IDS")


# --- credentials -----------------------------------------------------------------------------


def _to_secret(value: str | Secret) -> Secret:
    return value if isinstance(value, Secret) else Secret(str(value))


def _to_subscriptions(value: str | Iterable[str]) -> tuple[str, ...]:
    items = value.split(",") if isinstance(value, str) else [str(v) for v in value]
    out: list[str] = []
    for item in items:
        sub = item.strip()
        if sub and sub not in out:
            out.append(sub)
    return tuple(out)


def _strip(value: object) -> str:
    return str(value).strip()


def _non_empty(_inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if isinstance(value, Secret):
        ok = bool(value.reveal().strip())
    elif isinstance(value, tuple):
        ok = bool(value)
    else:
        ok = bool(str(value).strip())
    if not ok:
        raise CredentialsError(f"Azure credentials: {attribute.name} is empty")


@attrs.frozen(kw_only=True)
class AzureCredentials:
    """An Azure service principal plus the subscriptions it may call SPS in.

    ``client_secret`` is a :class:`Secret` (a plain string is wrapped), so ``repr`` shows
    ``Secret('***')``. ``subscriptions`` accepts a comma-separated string or any iterable.
    """

    tenant_id: str = attrs.field(converter=_strip, validator=_non_empty)
    client_id: str = attrs.field(converter=_strip, validator=_non_empty)
    client_secret: Secret = attrs.field(converter=_to_secret, validator=_non_empty)
    subscriptions: tuple[str, ...] = attrs.field(converter=_to_subscriptions, validator=_non_empty)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> AzureCredentials:
        """Read ``AZURE_TENANT_ID``, ``AZURE_CLIENT_ID``, ``AZURE_CLIENT_SECRET`` and
        ``AZURE_SUBSCRIPTION_IDS`` (comma-separated). Raises :class:`CredentialsError` naming every
        missing variable."""
        env = os.environ if environ is None else environ
        missing = [name for name in _ENV_VARS if not env.get(name, "").strip()]
        if missing:
            raise CredentialsError(
                f"Azure credentials from the environment: {', '.join(missing)} "
                f"{'is' if len(missing) == 1 else 'are'} not set (need all of {', '.join(_ENV_VARS)})"
            )
        return cls(
            tenant_id=env["AZURE_TENANT_ID"],
            client_id=env["AZURE_CLIENT_ID"],
            client_secret=Secret(env["AZURE_CLIENT_SECRET"].strip()),
            subscriptions=env["AZURE_SUBSCRIPTION_IDS"],
        )

    @classmethod
    def from_dynamodb(
        cls,
        *,
        client: Any = None,
        table: str = DEFAULT_AUTH_TABLE,
        key: str | None = None,
        zonal: bool = True,
        key_attribute: str = "id",
        region_name: str | None = None,
    ) -> AzureCredentials:
        """Read the original deployment's item (docs/sps-and-credentials.md).

        The item is ``{key_attribute: key, "data": {...}}`` with ``data`` holding ``tenant_id``,
        ``client_id``, ``client_secret`` and ``subscriptions`` (comma-separated string or list).
        ``data`` may be a DynamoDB map (how the original wrote it) or a JSON string. ``key``
        defaults to ``login_auth_az_true`` (zonal) or ``login_auth_az_false`` (regional).
        ``client`` is a boto3 DynamoDB *client*; one is built when omitted.
        """
        item_key = key or (DYNAMODB_KEY_ZONAL if zonal else DYNAMODB_KEY_REGIONAL)
        where = f"DynamoDB table {table!r}, item {item_key!r}"
        if client is None:
            import boto3
            from botocore.config import Config

            # No endpoint discovery (optional for DynamoDB): its answer would override a configured
            # endpoint (AWS_ENDPOINT_URL...), as spotlake.storage.aws.make_client explains.
            client = boto3.client(
                "dynamodb", region_name=region_name, config=Config(endpoint_discovery_enabled=False)
            )
        from boto3.dynamodb.types import TypeDeserializer
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            response = client.get_item(TableName=table, Key={key_attribute: {"S": item_key}})
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "ClientError")
            raise CredentialsError(f"Azure credentials from {where}: DynamoDB refused ({code})") from None
        except BotoCoreError as exc:
            raise CredentialsError(
                f"Azure credentials from {where}: cannot reach DynamoDB ({type(exc).__name__})"
            ) from None
        raw_item = response.get("Item")
        if not raw_item:
            raise CredentialsError(f"Azure credentials from {where}: the item does not exist")
        raw_data = raw_item.get("data")
        if raw_data is None:
            raise CredentialsError(f"Azure credentials from {where}: the item has no 'data' attribute")
        try:
            data = TypeDeserializer().deserialize(raw_data)
        except (TypeError, ValueError, KeyError):
            raise CredentialsError(
                f"Azure credentials from {where}: 'data' is not a DynamoDB value"
            ) from None
        return cls._from_mapping(data, where=where)

    @classmethod
    def _from_mapping(cls, data: object, *, where: str) -> AzureCredentials:
        if isinstance(data, str):
            try:
                data = json.loads(data)
            except ValueError:
                # Never echo the text: it holds the secret.
                raise CredentialsError(
                    f"Azure credentials from {where}: 'data' is a string but not JSON"
                ) from None
        if not isinstance(data, Mapping):
            raise CredentialsError(
                f"Azure credentials from {where}: 'data' must be a map or a JSON object, "
                f"got {type(data).__name__}"
            )
        fields = ("tenant_id", "client_id", "client_secret", "subscriptions")
        missing = [f for f in fields if not data.get(f)]
        if missing:
            raise CredentialsError(f"Azure credentials from {where}: 'data' lacks {', '.join(missing)}")
        subs = data["subscriptions"]
        if not isinstance(subs, str | list | tuple | set | frozenset):
            raise CredentialsError(
                f"Azure credentials from {where}: 'subscriptions' must be a comma-separated string or a list"
            )
        try:
            return cls(
                tenant_id=str(data["tenant_id"]),
                client_id=str(data["client_id"]),
                client_secret=Secret(str(data["client_secret"])),
                subscriptions=sorted(subs) if isinstance(subs, set | frozenset) else subs,
            )
        except CredentialsError as exc:
            raise CredentialsError(f"{exc} (from {where})") from None


# --- tokens ----------------------------------------------------------------------------------


@runtime_checkable
class BearerTokenSource(Protocol):
    """What the SPS collector needs from a credential: a bearer token, and a refresh after a 401."""

    async def atoken(self) -> Secret:
        """A bearer token valid now."""
        ...

    async def aforce_refresh(self, rejected: Secret | None = None) -> Secret:
        """A new token because ``rejected`` was refused (no-op if it was already replaced)."""
        ...


class StaticToken:
    """A fixed bearer token (e.g. from ``az account get-access-token``); it cannot be refreshed."""

    def __init__(self, token: str | Secret) -> None:
        self._token = _to_secret(token)

    async def atoken(self) -> Secret:
        return self._token

    async def aforce_refresh(self, rejected: Secret | None = None) -> Secret:
        return self._token

    def __repr__(self) -> str:
        return "StaticToken(***)"


class _SdkCredential(Protocol):
    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken: ...


class _TokenAnswers:
    """What the token endpoint answered during one fetch: azure-identity's errors do not say."""

    def __init__(self) -> None:
        self.status: int | None = None
        self.retry_after: float | None = None

    def record(self, pipeline_response: Any) -> None:
        response = getattr(pipeline_response, "http_response", None)
        status = getattr(response, "status_code", None)
        if isinstance(status, int):
            self.status = status
            header = getattr(response, "headers", {}).get("Retry-After")
            try:
                self.retry_after = max(0.0, min(float(header), 3600.0)) if header else None
            except ValueError:
                self.retry_after = None


def _failed_on_the_way(exc: BaseException, status: int | None) -> bool:
    """True when a token request failed in transit, not because the credentials were refused: the
    last answer was a 5xx/408/429 or a 2xx without a usable token (a body cut short or not JSON),
    or the SDK error was caused by a connection failure, a timeout or an undecodable body."""
    from azure.core.exceptions import DecodeError, ServiceRequestError, ServiceResponseError

    if status is not None and (status >= 500 or status in (408, 429) or 200 <= status < 300):
        return True
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, DecodeError | ServiceRequestError | ServiceResponseError):
            return True
        cause = cause.__cause__ or cause.__context__
    return False


@attrs.frozen
class _Cached:
    token: Secret
    refresh_at: datetime  # on the injected clock
    expires_at: datetime  # on the injected clock
    expires_on: int  # the SDK's epoch value, handed back through get_token()


class TokenProvider:
    """Bearer tokens for Azure Resource Manager, cached and refreshed before they expire.

    ``credentials`` build an ``azure.identity.ClientSecretCredential`` against
    ``endpoints.authority`` (``disable_instance_discovery`` when that is not an Azure login host,
    ``transport`` passed through, e.g. the emulator's ``azure_transport()``). Alternatively give
    ``credential_factory`` returning any azure-core ``TokenCredential`` (managed identity, CLI...).

    Expiry is tracked on ``clock``: the SDK reports an absolute epoch (``expires_on``) stamped on
    the machine's real clock, so it is turned into a lifetime with ``sdk_time`` (default
    ``time.time``, the SDK's own reference) and added to ``clock.now()``. Every refresh builds a fresh
    SDK credential so its internal cache cannot hand back the token being replaced.
    """

    def __init__(
        self,
        credentials: AzureCredentials | None = None,
        *,
        endpoints: AzureEndpoints | None = None,
        clock: Clock | None = None,
        transport: Any = None,
        scope: str = MANAGEMENT_SCOPE,
        refresh_margin: timedelta = timedelta(minutes=5),
        credential_factory: Callable[[], _SdkCredential] | None = None,
        sdk_time: Callable[[], float] = time.time,
    ) -> None:
        if credentials is None and credential_factory is None:
            raise CredentialsError("TokenProvider needs credentials or a credential_factory")
        self._credentials = credentials
        self._endpoints = endpoints or AzureEndpoints()
        self._clock: Clock = clock or SystemClock()
        self._transport = transport
        self.scope = scope
        self.refresh_margin = refresh_margin
        self._factory = credential_factory
        self._sdk_time = sdk_time
        self._lock = threading.Lock()
        self._cached: _Cached | None = None
        #: How many tokens were obtained (first one included): for tests and run reports.
        self.refreshes = 0

    def __repr__(self) -> str:
        who = self._credentials.client_id if self._credentials else "custom credential"
        return f"TokenProvider(client_id={who!r}, authority={self._endpoints.authority!r})"

    # --- building the SDK credential ------------------------------------------------------

    def _build(self, answers: _TokenAnswers) -> _SdkCredential:
        if self._factory is not None:
            return self._factory()
        assert self._credentials is not None
        from azure.identity import ClientSecretCredential

        authority = self._endpoints.authority.rstrip("/")
        host = urlsplit(authority if "://" in authority else f"https://{authority}").hostname or ""
        # azure-core calls raw_response_hook with every answer: the status the SDK's error hides.
        kwargs: dict[str, Any] = {"authority": authority, "raw_response_hook": answers.record}
        if host.lower() not in _KNOWN_AUTHORITIES:
            kwargs["disable_instance_discovery"] = True
        if self._transport is not None:
            kwargs["transport"] = self._transport
        creds = self._credentials
        return ClientSecretCredential(
            creds.tenant_id, creds.client_id, creds.client_secret.reveal(), **kwargs
        )

    @staticmethod
    def _scrub(text: str) -> str:
        # The SDK's message may quote the token endpoint's body ("Content: {...access_token...").
        return scrub(text)[:300]

    def _fetch(self, scopes: tuple[str, ...], **kwargs: Any) -> AccessToken:
        """Ask the SDK for a token, mapping its errors to spotlake's (never showing the secret)."""
        from azure.core.exceptions import AzureError, ClientAuthenticationError

        who = (
            f"client {self._credentials.client_id} in tenant {self._credentials.tenant_id}"
            if self._credentials
            else "the configured credential"
        )
        answers = _TokenAnswers()
        credential = self._build(answers)
        error: CollectError
        try:
            return credential.get_token(*scopes, **kwargs)
        except ClientAuthenticationError as exc:
            status = getattr(getattr(exc, "response", None), "status_code", None)
            if not isinstance(status, int):
                status = answers.status
            detail = self._scrub(str(getattr(exc, "message", None) or type(exc).__name__))
            if _failed_on_the_way(exc, status):
                said = f"HTTP {status}" if status is not None else "no answer"
                error = TransientCollectError(
                    f"auth: the token endpoint failed for {who} ({said}): {detail}",
                    source="auth",
                    status=status,
                    retry_after=answers.retry_after,
                )
            else:
                error = AuthError(
                    f"auth: could not obtain a token for {who}: {detail}; check the tenant id, client "
                    "id and client secret (and that the secret has not expired)",
                    source="auth",
                    status=status,
                )
        except AzureError as exc:
            error = TransientCollectError(
                f"auth: the token endpoint was unreachable for {who} ({type(exc).__name__})",
                source="auth",
            )
        finally:
            # Close the throw-away credential's own HTTP session; never an injected transport,
            # which belongs to the caller (azure-core would close its session for good).
            close = getattr(credential, "close", None)
            if callable(close) and self._transport is None and self._factory is None:
                close()
        # Raised outside the except clause: the SDK's error (whose message may quote the token
        # endpoint's body) is not even kept as __context__.
        raise error

    def _refresh_locked(self) -> _Cached:
        token = self._fetch((self.scope,))
        now = self._clock.now()
        lifetime = max(0.0, float(token.expires_on) - self._sdk_time())
        expires_at = now + timedelta(seconds=lifetime)
        margin = self.refresh_margin.total_seconds()
        # A token shorter-lived than twice the margin is refreshed halfway, not at once.
        early = margin if lifetime > 2 * margin else lifetime / 2
        cached = _Cached(
            token=Secret(token.token),
            refresh_at=expires_at - timedelta(seconds=early),
            expires_at=expires_at,
            expires_on=int(token.expires_on),
        )
        self._cached = cached
        self.refreshes += 1
        log.debug("auth: obtained a token valid for %.0f s", lifetime)
        return cached

    def _current(self) -> _Cached | None:
        cached = self._cached
        if cached is not None and self._clock.now() < cached.refresh_at:
            return cached
        return None

    # --- public access ---------------------------------------------------------------------

    @property
    def expires_at(self) -> datetime | None:
        """When the cached token expires, on the injected clock (``None`` before the first one)."""
        return self._cached.expires_at if self._cached else None

    def token(self) -> Secret:
        """A token valid for at least ``refresh_margin`` more (refreshing it if needed)."""
        cached = self._current()
        if cached is not None:
            return cached.token
        with self._lock:
            cached = self._current()  # another thread may have refreshed while we waited
            if cached is not None:
                return cached.token
            try:
                return self._refresh_locked().token
            except TransientError:
                # The early refresh failed (token endpoint down for a moment): a token that is still
                # valid is better than failing every call; the next call tries to refresh again.
                old = self._cached
                if old is not None and self._clock.now() < old.expires_at:
                    log.warning("token refresh failed; using the current token until it expires")
                    return old.token
                raise

    def force_refresh(self, rejected: Secret | None = None) -> Secret:
        """A new token now (after a 401). If ``rejected`` was already replaced by another caller,
        that newer token is returned instead of fetching yet another one."""
        with self._lock:
            cached = self._cached
            if rejected is not None and cached is not None and cached.token != rejected:
                return cached.token
            return self._refresh_locked().token

    async def atoken(self) -> Secret:
        cached = self._current()
        if cached is not None:
            return cached.token
        # The SDK credential is blocking; keep it off the event loop.
        return await asyncio.to_thread(self.token)

    async def aforce_refresh(self, rejected: Secret | None = None) -> Secret:
        return await asyncio.to_thread(self.force_refresh, rejected)

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        """azure-core ``TokenCredential`` protocol, so SDK clients can share this provider's cache."""
        from azure.core.credentials import AccessToken

        if (scopes and tuple(scopes) != (self.scope,)) or kwargs.get("claims"):
            # Another audience, or a claims challenge (CAE): bypass the cache.
            return self._fetch(tuple(scopes) or (self.scope,), **kwargs)
        self.token()
        cached = self._cached
        assert cached is not None
        return AccessToken(cached.token.reveal(), cached.expires_on)


# --- Slack webhook ---------------------------------------------------------------------------


def slack_webhook(
    environ: Mapping[str, str] | None = None,
    *,
    ssm_client: Any = None,
    parameter: str = SLACK_WEBHOOK_PARAMETER,
) -> Secret | None:
    """The Slack webhook URL for failure notifications, or ``None`` when none is configured.

    ``SPOTLAKE_SLACK_WEBHOOK_URL`` wins; otherwise, when an SSM client is given, the SecureString
    parameter ``parameter`` (decrypted). A missing parameter is ``None``; any other SSM failure is a
    :class:`CredentialsError` naming the parameter (never its value).
    """
    env = os.environ if environ is None else environ
    value = env.get(SLACK_WEBHOOK_ENV, "").strip()
    if value:
        return Secret(value)
    if ssm_client is None:
        return None
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        response = ssm_client.get_parameter(Name=parameter, WithDecryption=True)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "ClientError")
        if code == "ParameterNotFound":
            return None
        raise CredentialsError(
            f"Slack webhook: SSM parameter {parameter!r} could not be read ({code})"
        ) from None
    except BotoCoreError as exc:
        raise CredentialsError(
            f"Slack webhook: cannot reach SSM for parameter {parameter!r} ({type(exc).__name__})"
        ) from None
    text = str(response.get("Parameter", {}).get("Value", "")).strip()
    return Secret(text) if text else None
