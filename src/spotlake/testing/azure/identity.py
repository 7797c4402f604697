"""The emulated Microsoft Entra ID: the client-credentials token endpoint, OpenID configuration, and
the bearer-token check every ARM service runs.

``POST /{tenant}/oauth2/v2.0/token`` grants a token to the emulator's own client (``client_id`` and
``client_secret`` derived from the seed by :func:`credentials`); ``GET
/{tenant}/v2.0/.well-known/openid-configuration`` tells azure-identity where that endpoint is.
Tokens are JWT-shaped, signed with a per-emulator key, expire after :data:`TOKEN_LIFETIME` seconds
on the emulator clock, and are accepted only by the emulator that issued them.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import threading
import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Final
from urllib.parse import parse_qs

from spotlake.clock import ensure_utc
from spotlake.testing.azure._replies import (
    Reply,
    ServiceRequest,
    b64url,
    dumps,
    error_reply,
    oauth_error,
    ok_reply,
)

if TYPE_CHECKING:
    from spotlake.testing.azure.emulator import AzureEmulator

__all__ = ["TOKEN_LIFETIME", "IdentityService", "credentials"]

#: Tokens live one hour, as Entra ID's client-credential tokens do.
TOKEN_LIFETIME: Final = 3600

_TOKEN_PATH: Final = re.compile(r"^/(?P<tenant>[^/]+)/oauth2/v2\.0/token/?$", re.IGNORECASE)
_OIDC_PATH: Final = re.compile(
    r"^/(?P<tenant>[^/]+)/v2\.0/\.well-known/openid-configuration/?$", re.IGNORECASE
)


def _guid(seed: int, what: str) -> str:
    raw = hashlib.blake2b(f"{seed}\x1f{what}".encode(), digest_size=16).digest()
    return str(uuid.UUID(bytes=raw, version=4))


def credentials(seed: int) -> tuple[str, str, str]:
    """The (tenant id, client id, client secret) an emulator of ``seed`` accepts: emulator-only values."""
    secret = b64url(hashlib.blake2b(f"{seed}\x1fsecret".encode(), digest_size=24).digest())
    return _guid(seed, "tenant"), _guid(seed, "client"), secret


class IdentityService:
    """Issues tokens to the emulator's client and checks the bearer tokens the ARM services receive.

    Reads the credentials, the seed and the clock from ``emu`` when it answers.
    """

    endpoint = "token"

    def __init__(self, emu: AzureEmulator) -> None:
        self._emu = emu
        self._signing_key = hashlib.blake2b(f"{emu.seed}\x1fsigning".encode(), digest_size=32).digest()
        self._lock = threading.Lock()
        self._tokens: dict[str, datetime] = {}
        self._token_counter = 0

    def accepts(self, method: str, path: str) -> bool:
        return bool(_TOKEN_PATH.match(path) and method == "POST") or bool(
            _OIDC_PATH.match(path) and method == "GET"
        )

    def issue_token(self, *, lifetime: int = TOKEN_LIFETIME) -> str:
        """A bearer token valid for ``lifetime`` seconds on the emulator clock."""
        emu = self._emu
        now = ensure_utc(emu.clock.now())
        with self._lock:
            self._token_counter += 1
            serial = self._token_counter
        claims = {
            "aud": "https://management.azure.com",
            "iss": f"https://sts.windows.net/{emu.tenant_id}/",
            "tid": emu.tenant_id,
            "appid": emu.client_id,
            "iat": int(now.timestamp()),
            "exp": int(now.timestamp()) + lifetime,
            "jti": serial,
        }
        head = b64url(dumps({"typ": "JWT", "alg": "HS256"}))
        body = b64url(dumps(claims))
        sig = b64url(hmac.new(self._signing_key, f"{head}.{body}".encode(), hashlib.sha256).digest())
        token = f"{head}.{body}.{sig}"
        with self._lock:
            self._tokens[token] = now + timedelta(seconds=lifetime)
        return token

    def check_bearer(self, headers: Mapping[str, str], endpoint: str) -> Reply | None:
        """The 401 ARM answers a missing, malformed, unknown or expired bearer token with; ``None``
        when the token is good. ``headers`` keys are lower-case."""
        auth = headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        if not auth:
            return error_reply(
                401,
                "AuthenticationFailed",
                "Authentication failed. The 'Authorization' header is missing.",
                endpoint,
            )
        if scheme.lower() != "bearer" or not token.strip():
            return error_reply(
                401,
                "AuthenticationFailed",
                "Authentication failed. The 'Authorization' header is provided in an invalid format.",
                endpoint,
            )
        with self._lock:
            expiry = self._tokens.get(token.strip())
        if expiry is None:
            return error_reply(401, "InvalidAuthenticationToken", "The access token is invalid.", endpoint)
        if ensure_utc(self._emu.clock.now()) >= expiry:
            return error_reply(
                401,
                "ExpiredAuthenticationToken",
                "The access token expiry UTC time is earlier than current UTC time.",
                endpoint,
            )
        return None

    def __call__(self, request: ServiceRequest) -> Reply:
        ep = self.endpoint
        emu = self._emu
        oidc = _OIDC_PATH.match(request.path)
        match = oidc or _TOKEN_PATH.match(request.path)
        assert match is not None  # routed here only when one of them matched
        tenant = match["tenant"]
        if tenant not in (emu.tenant_id, "organizations", "common") or (tenant != emu.tenant_id and not oidc):
            return oauth_error("invalid_request", f"AADSTS90002: Tenant '{tenant}' not found.", 90002, ep)
        if oidc is not None:
            return ok_reply(_openid_configuration(f"{request.base_url}/{tenant}"), ep)
        form = _form(request.body)
        missing = next((name for name in ("grant_type", "client_id") if name not in form), None)
        if missing is not None:
            # Also the answer to a body that is not form-encoded (JSON, say): it has no parameters.
            return oauth_error(
                "invalid_request",
                f"AADSTS900144: The request body must contain the following parameter: '{missing}'.",
                900144,
                ep,
            )
        if form.get("grant_type") != "client_credentials":
            return oauth_error(
                "unsupported_grant_type",
                "AADSTS70003: The app requested an unsupported grant type.",
                70003,
                ep,
            )
        if form.get("client_id") != emu.client_id:
            return oauth_error(
                "unauthorized_client", "AADSTS700016: Application was not found in the directory.", 700016, ep
            )
        # Compared as UTF-8 bytes: compare_digest refuses str with non-ASCII characters, and a
        # secret that is not ours, whatever its characters, is simply a wrong secret.
        if not hmac.compare_digest(form.get("client_secret", "").encode(), emu.client_secret.encode()):
            return oauth_error(
                "invalid_client", "AADSTS7000215: Invalid client secret provided.", 7000215, ep, status=401
            )
        token = self.issue_token()
        return ok_reply(
            {
                "token_type": "Bearer",
                "expires_in": TOKEN_LIFETIME,
                "ext_expires_in": TOKEN_LIFETIME,
                "access_token": token,
            },
            ep,
        )


def _form(body: bytes) -> dict[str, str]:
    """The last value of each parameter of a form-encoded body.

    Bytes that are not UTF-8, raw or percent-encoded, become U+FFFD (so they match no credential);
    a body that is not a form yields no usable parameters.
    """
    return {k: v[-1] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}


def _openid_configuration(tenant_url: str) -> dict[str, object]:
    t = tenant_url
    return {
        "token_endpoint": f"{t}/oauth2/v2.0/token",
        "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt"],
        "jwks_uri": f"{t}/discovery/v2.0/keys",
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "issuer": f"{t}/v2.0",
        "authorization_endpoint": f"{t}/oauth2/v2.0/authorize",
        "device_authorization_endpoint": f"{t}/oauth2/v2.0/devicecode",
        "end_session_endpoint": f"{t}/oauth2/v2.0/logout",
        "tenant_region_scope": "NA",
    }
