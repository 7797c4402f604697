"""The Azure emulator's core: one transport-independent request handler for every emulated service.

:meth:`AzureEmulator.handle` takes (method, URL, headers, body) and returns a :class:`Reply`
(status, headers, body, plus what the fault layer wants the transport to do: wait, stall, reset).
Three thin adapters put it on the wire: an ``httpx.MockTransport`` handler, an azure-core
transport (for azure-identity and the Resource Graph SDK), and a threaded loopback HTTP server.
So the behaviour is the same however a test reaches it.

Services (all on one base URL):

=============================================================================  ===========
``GET  /api/retail/prices``                                                    prices
``POST /subscriptions/{sub}/providers/Microsoft.Compute/locations/{loc}/``     sps
``     placementScores/spot/generate``
``POST /providers/Microsoft.ResourceGraph/resources``                          graph
``GET  /subscriptions/{sub}/providers/Microsoft.Compute/skus``                 skus
``POST /{tenant}/oauth2/v2.0/token``, ``GET /{tenant}/v2.0/.well-known/...``   token
``GET /_emulator/health``, ``GET /_emulator/stats``, ``POST /_emulator/clock``  admin
=============================================================================  ===========
"""

from __future__ import annotations

import base64
import collections
import contextlib
import hashlib
import hmac
import json
import math
import re
import threading
import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, Literal
from urllib.parse import parse_qs, unquote, urlsplit

import attrs
import httpx

from spotlake.clock import Clock, FakeClock, ensure_utc
from spotlake.errors import ConfigError
from spotlake.model import MAX_SPS_REGIONS, MAX_SPS_SIZES
from spotlake.testing.azure.prices import CURRENCY_RATES, FilterError, PriceTable, dumps
from spotlake.testing.faults import Decision, EndpointFaults, Faults
from spotlake.testing.world import World

if TYPE_CHECKING:
    from azure.core.pipeline.transport import HttpTransport

__all__ = ["AzureEmulator", "EmulatorStats", "Reply"]

Action = Literal["respond", "timeout", "reset"]

#: Tokens live one hour, as Entra ID's client-credential tokens do.
TOKEN_LIFETIME: Final = 3600
#: The SPS quota window (observed in production: ~10 calls per hour per subscription and location).
SPS_WINDOW_SECONDS: Final = 3600
#: Largest desiredCount the SPS API accepts.
MAX_DESIRED_COUNT: Final = 1000
#: Resource Graph and SKUs page sizes (Resource Graph's $top is capped at 1000).
GRAPH_PAGE_SIZE: Final = 1000
SKUS_PAGE_SIZE: Final = 1000
#: Unknown strings a drifted payload may carry (collectors must keep them, not crash).
DRIFT_SCORES: Final = ("VeryHigh", "Unavailable", "RestrictedSkuNotAvailableInZone")
DRIFT_BUCKETS: Final = ("20-25", "unknown")

_JSON = (("Content-Type", "application/json; charset=utf-8"),)
_SPS_PATH = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)/providers/microsoft\.compute/locations/(?P<loc>[^/]+)"
    r"/placementscores/spot/generate/?$",
    re.IGNORECASE,
)
_SKUS_PATH = re.compile(r"^/subscriptions/(?P<sub>[^/]+)/providers/microsoft\.compute/skus/?$", re.IGNORECASE)
_GRAPH_PATH = re.compile(r"^/providers/microsoft\.resourcegraph/resources/?$", re.IGNORECASE)
_TOKEN_PATH = re.compile(r"^/(?P<tenant>[^/]+)/oauth2/v2\.0/token/?$", re.IGNORECASE)
_OIDC_PATH = re.compile(r"^/(?P<tenant>[^/]+)/v2\.0/\.well-known/openid-configuration/?$", re.IGNORECASE)
_API_VERSION = re.compile(r"^\d{4}-\d{2}-\d{2}(-preview)?$")
_SUPPORT_INFO = "Please provide below info when asking for support: timestamp, correlationId."
_INVALID_QUERY = (
    "Query is invalid. The emulator answers only the spot eviction-rate query "
    "(SpotResources | where type =~ 'microsoft.compute/skuspotevictionrate/location' | project ...)."
)
_EVICTION_QUERY = re.compile(r"spotresources.*skuspotevictionrate", re.IGNORECASE | re.DOTALL)


@attrs.frozen(kw_only=True)
class Reply:
    """The emulator's answer to one request, and what the transport must do with it.

    ``action`` "respond": wait ``delay`` seconds then send status/headers/body; "timeout": stall
    (``delay`` + ``stall`` seconds) and never answer; "reset": drop the connection after ``delay``.
    """

    status: int = 200
    headers: tuple[tuple[str, str], ...] = _JSON
    body: bytes = b""
    endpoint: str = "other"
    action: Action = "respond"
    delay: float = 0.0
    stall: float = 0.0

    def json(self) -> Any:
        return json.loads(self.body)


def _error(status: int, code: str, message: str, endpoint: str) -> Reply:
    return Reply(status=status, body=dumps({"error": {"code": code, "message": message}}), endpoint=endpoint)


def _oauth_error(error: str, description: str, code: int, endpoint: str, *, status: int = 400) -> Reply:
    """An error in the shape Microsoft Entra ID's token endpoint answers with."""
    body = {"error": error, "error_description": description, "error_codes": [code]}
    return Reply(status=status, body=dumps(body), endpoint=endpoint)


def _ok(payload: object, endpoint: str) -> Reply:
    return Reply(status=200, body=dumps(payload), endpoint=endpoint)


class EmulatorStats:
    """Request counters per endpoint and outcome (HTTP status, or "timeout"/"reset"). Thread-safe."""

    def __init__(self) -> None:
        self._counts: collections.Counter[tuple[str, str]] = collections.Counter()
        self._lock = threading.Lock()

    def record(self, endpoint: str, outcome: int | str) -> None:
        with self._lock:
            self._counts[(endpoint, str(outcome))] += 1

    def count(self, endpoint: str, outcome: int | str | None = None) -> int:
        """Requests to ``endpoint`` (with that outcome, if given)."""
        with self._lock:
            if outcome is None:
                return sum(n for (ep, _), n in self._counts.items() if ep == endpoint)
            return self._counts[(endpoint, str(outcome))]

    def to_json(self) -> dict[str, dict[str, int]]:
        with self._lock:
            out: dict[str, dict[str, int]] = {}
            for (ep, outcome), n in sorted(self._counts.items()):
                out.setdefault(ep, {})[outcome] = n
            return out

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()

    def __repr__(self) -> str:
        return f"EmulatorStats({self.to_json()})"


def _guid(seed: int, what: str) -> str:
    raw = hashlib.blake2b(f"{seed}\x1f{what}".encode(), digest_size=16).digest()
    return str(uuid.UUID(bytes=raw, version=4))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class AzureEmulator:
    """An offline Azure: Retail Prices, Spot Placement Scores, Resource Graph, Compute SKUs, Entra ID.

    Answers from ``world``; time (SPS scores, quota windows, token expiry, in-process latency) comes
    from ``clock`` (a :class:`FakeClock` by default). ``faults`` injects seeded failures;
    ``sps_calls_per_hour`` is the SPS quota per (subscription, URL location) over a sliding hour.
    ``forbidden_subscriptions`` answer 403 (a principal without "Compute Recommendations Role").
    """

    def __init__(
        self,
        world: World,
        *,
        clock: Clock | None = None,
        faults: Faults | None = None,
        sps_calls_per_hour: int = 10,
        seed: int = 0,
        forbidden_subscriptions: tuple[str, ...] = (),
    ) -> None:
        if sps_calls_per_hour < 1:
            raise ConfigError(f"sps_calls_per_hour must be >= 1, got {sps_calls_per_hour}")
        self.world = world
        self.clock: Clock = clock if clock is not None else FakeClock()
        self.faults = faults if faults is not None else Faults()
        self.sps_calls_per_hour = sps_calls_per_hour
        self.seed = seed
        self.forbidden_subscriptions = frozenset(forbidden_subscriptions)
        self.tenant_id = _guid(seed, "tenant")
        self.client_id = _guid(seed, "client")
        self.client_secret = _b64(hashlib.blake2b(f"{seed}\x1fsecret".encode(), digest_size=24).digest())
        self.stats = EmulatorStats()
        self._signing_key = hashlib.blake2b(f"{seed}\x1fsigning".encode(), digest_size=32).digest()
        self._lock = threading.Lock()
        self._tokens: dict[str, datetime] = {}
        self._token_counter = 0
        self._quota: dict[tuple[str, str], collections.deque[datetime]] = {}
        self._attempts: collections.Counter[tuple[str, str]] = collections.Counter()
        self._prices: PriceTable | None = None
        self._skus_sorted: list[tuple[str, str]] | None = None

    def __repr__(self) -> str:
        # Never the client secret or tokens.
        return (
            f"AzureEmulator(world={self.world.source!r}, regions={len(self.world.regions)}, "
            f"sizes={len(self.world.sizes)}, seed={self.seed})"
        )

    @property
    def subscriptions(self) -> tuple[str, ...]:
        """Subscription ids the emulator accepts."""
        return self.world.subscriptions

    @property
    def prices(self) -> PriceTable:
        """The price table (built on first use: a default world has ~200k rows)."""
        with self._lock:
            if self._prices is None:
                self._prices = PriceTable(self.world)
            return self._prices

    # -- transports --------------------------------------------------------------------------

    def handler(self, request: httpx.Request) -> httpx.Response:
        """In-process handler for ``httpx.MockTransport`` (see :meth:`transport`)."""
        from spotlake.testing.azure.wire import httpx_handler

        return httpx_handler(self, request)

    def transport(self) -> httpx.MockTransport:
        """An httpx transport answering from this emulator; works for Client and AsyncClient."""
        return httpx.MockTransport(self.handler)

    def azure_transport(self) -> HttpTransport[Any, Any]:
        """An azure-core transport answering in-process (for azure-identity and ResourceGraphClient)."""
        from spotlake.testing.azure.wire import azure_transport

        return azure_transport(self)

    def serve(self, host: str = "127.0.0.1", port: int = 0) -> contextlib.AbstractContextManager[str]:
        """Serve on a loopback port in a background thread: ``with emu.serve() as base_url: ...``."""
        from spotlake.testing.azure.wire import serve

        return serve(self, host, port)

    # -- credentials -------------------------------------------------------------------------

    def issue_token(self, *, lifetime: int = TOKEN_LIFETIME) -> str:
        """Issue a bearer token valid for ``lifetime`` seconds on the emulator clock (for tests that
        skip the OAuth flow)."""
        now = ensure_utc(self.clock.now())
        with self._lock:
            self._token_counter += 1
            serial = self._token_counter
        claims = {
            "aud": "https://management.azure.com",
            "iss": f"https://sts.windows.net/{self.tenant_id}/",
            "tid": self.tenant_id,
            "appid": self.client_id,
            "iat": int(now.timestamp()),
            "exp": int(now.timestamp()) + lifetime,
            "jti": serial,
        }
        head = _b64(dumps({"typ": "JWT", "alg": "HS256"}))
        body = _b64(dumps(claims))
        sig = _b64(hmac.new(self._signing_key, f"{head}.{body}".encode(), hashlib.sha256).digest())
        token = f"{head}.{body}.{sig}"
        with self._lock:
            self._tokens[token] = now + timedelta(seconds=lifetime)
        return token

    def _check_bearer(self, headers: Mapping[str, str], endpoint: str) -> Reply | None:
        auth = headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        if not auth:
            return _error(
                401,
                "AuthenticationFailed",
                "Authentication failed. The 'Authorization' header is missing.",
                endpoint,
            )
        if scheme.lower() != "bearer" or not token.strip():
            return _error(
                401,
                "AuthenticationFailed",
                "Authentication failed. The 'Authorization' header is provided in an invalid format.",
                endpoint,
            )
        with self._lock:
            expiry = self._tokens.get(token.strip())
        if expiry is None:
            return _error(401, "InvalidAuthenticationToken", "The access token is invalid.", endpoint)
        if ensure_utc(self.clock.now()) >= expiry:
            return _error(
                401,
                "ExpiredAuthenticationToken",
                "The access token expiry UTC time is earlier than current UTC time.",
                endpoint,
            )
        return None

    # -- dispatch ----------------------------------------------------------------------------

    def handle(self, method: str, url: str, headers: Mapping[str, str], body: bytes) -> Reply:
        """Answer one request. ``headers`` keys may be any case."""
        parts = urlsplit(url)
        base_url = f"{parts.scheme or 'http'}://{parts.netloc}"
        path = unquote(parts.path) or "/"
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        hdrs = {k.lower(): v for k, v in headers.items()}
        method = method.upper()
        endpoint, service = self._route(method, path)
        if service is None:
            if endpoint == "admin":
                reply = self._admin(method, path, body)
            else:
                reply = _error(404, "NotFound", f"The emulator has no route for {method} {path}.", "other")
            self.stats.record(reply.endpoint, reply.status)
            return reply
        faults = self.faults.for_endpoint(endpoint)
        decision = self._decide(endpoint, faults, method=method, path=path, query=parts.query, body=body)
        if decision.kind in ("timeout", "reset"):
            self.stats.record(endpoint, decision.kind)
            return Reply(
                status=0,
                body=b"",
                endpoint=endpoint,
                action=decision.kind,
                delay=decision.delay,
                stall=faults.stall,
            )
        if decision.kind == "status" and decision.status is not None:
            reply = self._injected(endpoint, decision.status, faults)
        else:
            ctx = _Ctx(path=path, query=query, headers=hdrs, body=body, base_url=base_url, decision=decision)
            reply = service(ctx)
            if reply.status == 200:
                reply = self._mangle(reply, decision)
        reply = attrs.evolve(reply, delay=decision.delay)
        self.stats.record(endpoint, reply.status)
        return reply

    def _route(self, method: str, path: str) -> tuple[str, Any]:
        low = path.lower()
        if low.startswith("/_emulator/"):
            return "admin", None
        if low.rstrip("/") == "/api/retail/prices" and method == "GET":
            return "prices", self._prices_service
        if _SPS_PATH.match(path) and method == "POST":
            return "sps", self._sps_service
        if _GRAPH_PATH.match(path) and method == "POST":
            return "graph", self._graph_service
        if _SKUS_PATH.match(path) and method == "GET":
            return "skus", self._skus_service
        if (_TOKEN_PATH.match(path) and method == "POST") or (_OIDC_PATH.match(path) and method == "GET"):
            return "token", self._token_service
        return "other", None

    def _decide(
        self, endpoint: str, faults: EndpointFaults, *, method: str, path: str, query: str, body: bytes
    ) -> Decision:
        if not faults.active:
            return Decision()
        identity = f"{method} {path}?{query} {hashlib.blake2b(body, digest_size=8).hexdigest()}"
        with self._lock:
            self._attempts[(endpoint, identity)] += 1
            attempt = self._attempts[(endpoint, identity)]
        return faults.decide(endpoint, identity, attempt)

    def _injected(self, endpoint: str, status: int, faults: EndpointFaults) -> Reply:
        if status == 429:
            if endpoint == "sps":
                return _too_many(faults.retry_after, endpoint)
            reply = _error(429, "TooManyRequests", "Rate limit exceeded. Please retry later.", endpoint)
            return attrs.evolve(reply, headers=(*reply.headers, ("Retry-After", str(faults.retry_after))))
        messages = {
            500: ("InternalServerError", "An internal server error occurred."),
            502: ("BadGateway", "The gateway received an invalid response."),
            503: ("ServiceUnavailable", "The service is temporarily unavailable. Please retry."),
            504: ("GatewayTimeout", "The gateway did not receive a response in time."),
        }
        code, message = messages[status]
        return _error(status, code, message, endpoint)

    @staticmethod
    def _mangle(reply: Reply, decision: Decision) -> Reply:
        if decision.malformed:
            return attrs.evolve(
                reply, body=b"<html><body>Service Unavailable</body></html>" + reply.body[:64]
            )
        if decision.truncated:
            return attrs.evolve(reply, body=reply.body[: max(1, len(reply.body) // 2)])
        return reply

    # -- admin -------------------------------------------------------------------------------

    def _admin(self, method: str, path: str, body: bytes) -> Reply:
        route = path.lower().rstrip("/")
        if route == "/_emulator/health" and method == "GET":
            return _ok(
                {
                    "status": "ok",
                    "now": self.clock.now().isoformat(),
                    "regions": len(self.world.regions),
                    "sizes": len(self.world.sizes),
                },
                "admin",
            )
        if route == "/_emulator/stats" and method == "GET":
            return _ok(self.stats.to_json(), "admin")
        if route == "/_emulator/clock" and method == "POST":
            if not isinstance(self.clock, FakeClock):
                return _error(
                    409, "Conflict", "The emulator runs on the system clock; it cannot be moved.", "admin"
                )
            try:
                data = json.loads(body or b"{}")
                if "now" in data:
                    self.clock.set(datetime.fromisoformat(str(data["now"])))
                if "advance" in data:
                    self.clock.advance(float(data["advance"]))
            except (ValueError, TypeError) as exc:
                return _error(
                    400,
                    "BadRequest",
                    f"clock: expected {{'now': iso8601}} or {{'advance': s}}: {exc}",
                    "admin",
                )
            return _ok({"now": self.clock.now().isoformat()}, "admin")
        return _error(404, "NotFound", f"The emulator has no admin route {method} {path}.", "admin")

    # -- prices ------------------------------------------------------------------------------

    def _prices_service(self, ctx: _Ctx) -> Reply:
        currency = ctx.query.get("currencyCode", "USD").strip().strip("'\"").upper() or "USD"
        if currency not in CURRENCY_RATES:
            return _error(400, "InvalidCurrencyCode", f"Invalid currency code '{currency}'.", "prices")
        raw_skip = ctx.query.get("$skip", "0") or "0"
        try:
            skip = int(raw_skip)
            if skip < 0:
                raise ValueError(raw_skip)
        except ValueError:
            return _error(400, "InvalidSkip", f"Invalid value '{raw_skip}' for $skip.", "prices")
        odata = ctx.query.get("$filter", "")
        empty: Literal["", "null"] | None = None
        if ctx.decision.empty_next_link:
            empty = "" if ctx.decision.salt % 2 else "null"  # both spellings have been seen: "" and null
        try:
            page = self.prices.page(
                odata_filter=odata, skip=skip, currency=currency, base_url=ctx.base_url, empty_next_link=empty
            )
        except FilterError as exc:
            return _error(400, "InvalidFilter", str(exc), "prices")
        if ctx.decision.drift:
            items = page["Items"]
            assert isinstance(items, list)
            for item in items:
                # Optional fields vanish (as they have over the API's versions).
                for key in ("isPrimaryMeterRegion", "tierMinimumUnits", "effectiveEndDate", "location"):
                    item.pop(key, None)
        return _ok(page, "prices")

    # -- SPS ---------------------------------------------------------------------------------

    def _sps_service(self, ctx: _Ctx) -> Reply:
        ep = "sps"
        m = _SPS_PATH.match(ctx.path)
        assert m is not None
        sub, loc = m["sub"], m["loc"]
        bad = (
            self._check_api_version(ctx, ep)
            or self._check_bearer(ctx.headers, ep)
            or self._check_sub(sub, ep)
        )
        if bad is not None:
            return bad
        if not self.world.has_region(loc):
            return _error(
                400,
                "InvalidParameter",
                f"The value '{loc}' provided for the input parameter 'location' is not valid.",
                ep,
            )
        retry = self._take_quota(sub, loc)
        if retry is not None:
            return _too_many(retry, ep)
        try:
            data = json.loads(ctx.body)
        except (ValueError, UnicodeDecodeError):
            return _error(
                400,
                "InvalidRequestContent",
                "The request content was invalid and could not be deserialized.",
                ep,
            )
        if not isinstance(data, dict):
            return _error(400, "InvalidRequestContent", "The request content must be a JSON object.", ep)
        for field in ("desiredLocations", "desiredSizes", "desiredCount"):
            if data.get(field) is None:
                return _error(400, "BadRequest", f"Required parameter '{field}' is missing (null).", ep)
        locations, sizes_in, count = data["desiredLocations"], data["desiredSizes"], data["desiredCount"]
        zonal = data.get("availabilityZones", False)
        if not isinstance(locations, list) or not locations or not all(isinstance(x, str) for x in locations):
            return _error(
                400, "InvalidParameter", "'desiredLocations' must be a non-empty list of region names.", ep
            )
        if len(locations) > MAX_SPS_REGIONS:
            return _error(
                400,
                "InvalidParameter",
                f"The number of desiredLocations ({len(locations)}) exceeds the maximum of "
                f"{MAX_SPS_REGIONS}.",
                ep,
            )
        if (
            not isinstance(sizes_in, list)
            or not sizes_in
            or not all(isinstance(x, dict) and isinstance(x.get("sku"), str) for x in sizes_in)
        ):
            return _error(
                400,
                "InvalidParameter",
                '\'desiredSizes\' must be a non-empty list of objects like {"sku": "Standard_D2s_v3"}.',
                ep,
            )
        if len(sizes_in) > MAX_SPS_SIZES:
            return _error(
                400,
                "InvalidParameter",
                f"The number of desiredSizes ({len(sizes_in)}) exceeds the maximum of {MAX_SPS_SIZES}.",
                ep,
            )
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_DESIRED_COUNT:
            return _error(
                400,
                "InvalidParameter",
                f"The value '{count}' provided for the input parameter 'desiredCount' is not valid. "
                f"It must be an integer between 1 and {MAX_DESIRED_COUNT}.",
                ep,
            )
        if not isinstance(zonal, bool):
            return _error(
                400,
                "InvalidParameter",
                f"The value '{zonal}' provided for the input parameter 'availabilityZones' is not valid.",
                ep,
            )
        for region in locations:
            if not self.world.has_region(region):
                return _error(
                    400,
                    "InvalidParameter",
                    f"The value '{region}' provided for the input parameter 'desiredLocations' is not valid.",
                    ep,
                )
        sizes = [x["sku"] for x in sizes_in]
        for size in sizes:
            if not self.world.has_size(size):
                return _error(
                    400,
                    "InvalidParameter",
                    f"The value '{size}' provided for the input parameter 'desiredSizes' is not valid.",
                    ep,
                )
        now = self.clock.now()
        scores: list[dict[str, object]] = []
        for size in sizes:
            for region in locations:
                zones = self.world.region(region).zones if zonal else ()
                for zone in zones or (None,):
                    entry: dict[str, object] = {"sku": size, "region": region}
                    if zone is not None:
                        entry["availabilityZone"] = zone
                    entry["score"] = self.world.sps_score(region, size, zone, count, now)
                    entry["isQuotaAvailable"] = self.world.quota_available(region, size, count, now)
                    scores.append(entry)
        if ctx.decision.drift and scores:
            victim = scores[ctx.decision.salt % len(scores)]
            victim["score"] = DRIFT_SCORES[ctx.decision.salt % len(DRIFT_SCORES)]
            for entry in scores:
                entry.pop("isQuotaAvailable", None)
        payload = {
            "desiredLocations": locations,
            "desiredSizes": [{"sku": s} for s in sizes],
            "desiredCount": count,
            "availabilityZones": zonal,
            "placementScores": scores,
        }
        return _ok(payload, ep)

    def _take_quota(self, subscription: str, location: str) -> int | None:
        """Count one call on (subscription, location); seconds to wait when over the limit."""
        now = ensure_utc(self.clock.now())
        window = timedelta(seconds=SPS_WINDOW_SECONDS)
        with self._lock:
            calls = self._quota.setdefault((subscription.lower(), location.lower()), collections.deque())
            while calls and calls[0] <= now - window:
                calls.popleft()
            if len(calls) >= self.sps_calls_per_hour:
                return max(1, math.ceil((calls[0] + window - now).total_seconds()))
            calls.append(now)
            return None

    def quota_used(self, subscription: str, location: str) -> int:
        """SPS calls counted in the current window of (subscription, location)."""
        now = ensure_utc(self.clock.now())
        with self._lock:
            calls = self._quota.get((subscription.lower(), location.lower()), collections.deque())
            return sum(1 for t in calls if t > now - timedelta(seconds=SPS_WINDOW_SECONDS))

    def _check_api_version(self, ctx: _Ctx, endpoint: str) -> Reply | None:
        version = ctx.query.get("api-version")
        if not version:
            return _error(
                400,
                "MissingApiVersionParameter",
                "The api-version query parameter (?api-version=) is required for all requests.",
                endpoint,
            )
        if not _API_VERSION.match(version):
            return _error(
                400,
                "InvalidApiVersionParameter",
                f"The api-version '{version}' is invalid. The supported versions are of the form "
                "'yyyy-mm-dd' or 'yyyy-mm-dd-preview'.",
                endpoint,
            )
        return None

    def _check_sub(self, subscription: str, endpoint: str) -> Reply | None:
        if subscription not in self.world.subscriptions:
            return _error(
                404,
                "SubscriptionNotFound",
                f"The subscription '{subscription}' could not be found.",
                endpoint,
            )
        if subscription in self.forbidden_subscriptions:
            return _error(
                403,
                "AuthorizationFailed",
                f"The client '{self.client_id}' does not have authorization to perform action "
                "'Microsoft.Compute/locations/placementScores/generate/action' over scope "
                f"'/subscriptions/{subscription}' or the scope is invalid.",
                endpoint,
            )
        return None

    # -- Resource Graph ----------------------------------------------------------------------

    def _graph_service(self, ctx: _Ctx) -> Reply:
        ep = "graph"
        bad = self._check_api_version(ctx, ep) or self._check_bearer(ctx.headers, ep)
        if bad is not None:
            return bad
        try:
            data = json.loads(ctx.body)
        except (ValueError, UnicodeDecodeError):
            return _error(
                400, "BadRequest", "The request content was invalid and could not be deserialized.", ep
            )
        if not isinstance(data, dict) or not isinstance(data.get("query"), str):
            return _error(400, "BadRequest", "The request must be a JSON object with a 'query' string.", ep)
        subs = data.get("subscriptions") or []
        if not isinstance(subs, list) or any(s not in self.world.subscriptions for s in subs):
            return _error(400, "BadRequest", "One or more subscriptions are invalid or not accessible.", ep)
        if not _EVICTION_QUERY.search(data["query"]):
            details = [{"code": "InvalidQuery", "message": _INVALID_QUERY}]
            error = {"code": "BadRequest", "message": _SUPPORT_INFO, "details": details}
            return Reply(status=400, body=dumps({"error": error}), endpoint=ep)
        options = data.get("options") or {}
        if not isinstance(options, dict):
            return _error(400, "BadRequest", "'options' must be an object.", ep)
        top = options.get("$top", GRAPH_PAGE_SIZE)
        if isinstance(top, bool) or not isinstance(top, int) or not 1 <= top <= GRAPH_PAGE_SIZE:
            return _error(400, "BadRequest", f"$top must be an integer within 1..{GRAPH_PAGE_SIZE}.", ep)
        offset = options.get("$skip", 0) or 0
        token = options.get("$skipToken")
        if token:
            try:
                offset = int(json.loads(_unb64(str(token)))["o"])
            except (ValueError, KeyError, TypeError):
                return _error(400, "BadRequest", "The $skipToken is invalid.", ep)
        if not isinstance(offset, int) or offset < 0:
            return _error(400, "BadRequest", "$skip must be a non-negative integer.", ep)
        rows = self.world.eviction_rows()
        chunk = rows[offset : offset + top]
        records = [{"location": r, "skuName": s, "evictionRate": b} for r, s, b in chunk]
        if ctx.decision.drift and records:
            records[ctx.decision.salt % len(records)]["evictionRate"] = DRIFT_BUCKETS[ctx.decision.salt % 2]
        result_format = options.get("resultFormat", "objectArray")
        payload: dict[str, object] = {"totalRecords": len(rows), "count": len(records)}
        if result_format == "table":
            payload["data"] = {
                "columns": [{"name": n, "type": "string"} for n in ("location", "skuName", "evictionRate")],
                "rows": [[x["location"], x["skuName"], x["evictionRate"]] for x in records],
            }
        else:
            payload["data"] = records
        payload["facets"] = []
        payload["resultTruncated"] = "false"
        if offset + top < len(rows):
            payload["$skipToken"] = _b64(dumps({"o": offset + top}))
        return _ok(payload, ep)

    # -- Compute SKUs ------------------------------------------------------------------------

    def _skus_service(self, ctx: _Ctx) -> Reply:
        ep = "skus"
        m = _SKUS_PATH.match(ctx.path)
        assert m is not None
        sub = m["sub"]
        bad = self._check_api_version(ctx, ep) or self._check_bearer(ctx.headers, ep)
        if bad is None and sub not in self.world.subscriptions:
            bad = _error(404, "SubscriptionNotFound", f"The subscription '{sub}' could not be found.", ep)
        if bad is not None:
            return bad
        pairs = self._sku_cache()
        odata = ctx.query.get("$filter", "")
        if odata:
            fm = re.fullmatch(r"\s*location\s+eq\s+'([^']*)'\s*", odata)
            if fm is None:
                return _error(400, "InvalidFilter", "Only $filter=location eq '<region>' is supported.", ep)
            pairs = [p for p in pairs if p[1] == fm.group(1)]
        offset = 0
        if ctx.query.get("$skiptoken"):
            try:
                offset = int(json.loads(_unb64(ctx.query["$skiptoken"]))["o"])
            except (ValueError, KeyError, TypeError):
                return _error(400, "InvalidSkipToken", "The $skiptoken is invalid.", ep)
        chunk = pairs[offset : offset + SKUS_PAGE_SIZE]
        items = [self._sku_item(size, region, ctx.decision) for size, region in chunk]
        payload: dict[str, object] = {"value": items}
        if offset + SKUS_PAGE_SIZE < len(pairs):
            token = _b64(dumps({"o": offset + SKUS_PAGE_SIZE}))
            extra = f"&$filter={odata}" if odata else ""
            payload["nextLink"] = (
                f"{ctx.base_url}/subscriptions/{sub}/providers/Microsoft.Compute/skus"
                f"?api-version={ctx.query['api-version']}{extra}&$skiptoken={token}"
            )
        return _ok(payload, ep)

    def _sku_cache(self) -> list[tuple[str, str]]:
        with self._lock:
            cached = self._skus_sorted
        if cached is None:
            cached = sorted((s, r) for r, s in self.world.offered_pairs())
            with self._lock:
                self._skus_sorted = cached
        return cached

    def _sku_item(self, size_name: str, region: str, decision: Decision) -> dict[str, object]:
        size = self.world.size(size_name)
        zones = list(self.world.region(region).zones)
        tier, _, short = size_name.partition("_")
        restrictions: list[dict[str, object]] = []
        roll = _unit(self.seed, "sku-restriction", size_name, region)
        if roll < 0.03:
            restrictions.append(
                {
                    "type": "Location",
                    "values": [region],
                    "restrictionInfo": {"locations": [region]},
                    "reasonCode": "NotAvailableForSubscription",
                }
            )
        elif roll < 0.08 and zones:
            restrictions.append(
                {
                    "type": "Zone",
                    "values": [region],
                    "restrictionInfo": {"locations": [region], "zones": zones[-1:]},
                    "reasonCode": "NotAvailableForSubscription",
                }
            )
        item: dict[str, object] = {
            "resourceType": "virtualMachines",
            "name": size_name,
            "tier": tier,
            "size": short,
            "family": size.family,
            "locations": [region],
            "locationInfo": [{"location": region, "zones": zones, "zoneDetails": []}],
            "capabilities": [
                {"name": "vCPUs", "value": str(size.vcpus)},
                {"name": "MemoryGB", "value": f"{size.memory_gib:g}"},
                {
                    "name": "LowPriorityCapable",
                    "value": "True" if (region, size_name) in self.world.support_pairs() else "False",
                },
            ],
            "restrictions": restrictions,
        }
        if decision.drift and _unit(decision.salt, size_name, region) < 0.2:
            item.pop("restrictions")
            item.pop("locationInfo")
        return item

    # -- token -------------------------------------------------------------------------------

    def _token_service(self, ctx: _Ctx) -> Reply:
        ep = "token"
        oidc = _OIDC_PATH.match(ctx.path)
        match = oidc or _TOKEN_PATH.match(ctx.path)
        assert match is not None  # routed here only when one of them matched
        tenant = match["tenant"]
        if tenant not in (self.tenant_id, "organizations", "common") or (
            tenant != self.tenant_id and not oidc
        ):
            return _oauth_error("invalid_request", f"AADSTS90002: Tenant '{tenant}' not found.", 90002, ep)
        issuer_base = ctx.base_url
        if oidc is not None:
            t = f"{issuer_base}/{tenant}"
            return _ok(
                {
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
                },
                ep,
            )
        form = {k: v[-1] for k, v in parse_qs(ctx.body.decode("utf-8", "replace")).items()}
        if form.get("grant_type") != "client_credentials":
            return _oauth_error(
                "unsupported_grant_type",
                "AADSTS70003: The app requested an unsupported grant type.",
                70003,
                ep,
            )
        if form.get("client_id") != self.client_id:
            return _oauth_error(
                "unauthorized_client", "AADSTS700016: Application was not found in the directory.", 700016, ep
            )
        if not hmac.compare_digest(form.get("client_secret", ""), self.client_secret):
            return _oauth_error(
                "invalid_client", "AADSTS7000215: Invalid client secret provided.", 7000215, ep, status=401
            )
        token = self.issue_token()
        return _ok(
            {
                "token_type": "Bearer",
                "expires_in": TOKEN_LIFETIME,
                "ext_expires_in": TOKEN_LIFETIME,
                "access_token": token,
            },
            ep,
        )


def _too_many(seconds: int, endpoint: str) -> Reply:
    # The SPS API answers its quota with plain text, not the JSON error envelope.
    text = (
        f"You have reached the maximum number of requests allowed. Please try again after {seconds} seconds."
    )
    return Reply(
        status=429,
        headers=(("Content-Type", "text/plain; charset=utf-8"), ("Retry-After", str(seconds))),
        body=text.encode(),
        endpoint=endpoint,
    )


def _unit(seed: int, *parts: object) -> float:
    key = "\x1f".join([str(seed), *(str(p) for p in parts)]).encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little") / float(1 << 64)


@attrs.frozen(kw_only=True)
class _Ctx:
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]
    body: bytes
    base_url: str
    decision: Decision
