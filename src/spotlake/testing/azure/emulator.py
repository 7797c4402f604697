"""The Azure emulator's core: one transport-independent request handler for every emulated service.

:meth:`AzureEmulator.handle` takes (method, URL, headers, body) and returns a :class:`Reply`
(status, headers, body, plus what the fault layer wants the transport to do: wait, stall, reset).
Three thin adapters put it on the wire: an ``httpx.MockTransport`` handler, an azure-core
transport (for azure-identity and the Resource Graph SDK), and a threaded loopback HTTP server
(:mod:`~spotlake.testing.azure.wire`). So the behaviour is the same however a test reaches it.

The core routes each request to its service, applies the fault layer around it (timeouts, resets
and injected statuses before the service runs; truncation and malformation after), counts outcomes
in :class:`EmulatorStats`, and answers the admin endpoints. Services (all on one base URL):

=============================================================================  ===========
``GET  /api/retail/prices``                                                    prices
``POST /subscriptions/{sub}/providers/Microsoft.Compute/locations/{loc}/``     sps
``     placementScores/spot/generate``
``POST /providers/Microsoft.ResourceGraph/resources``                          graph
``GET  /subscriptions/{sub}/providers/Microsoft.Compute/skus``                 skus
``POST /{tenant}/oauth2/v2.0/token``, ``GET /{tenant}/v2.0/.well-known/...``   token
``GET /_emulator/health``, ``GET /_emulator/stats``, ``POST /_emulator/clock``  admin
=============================================================================  ===========

Each service lives in its own module: :mod:`~spotlake.testing.azure.prices`,
:mod:`~spotlake.testing.azure.sps`, :mod:`~spotlake.testing.azure.graph`,
:mod:`~spotlake.testing.azure.skus` and :mod:`~spotlake.testing.azure.identity` (token).
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import json
import threading
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import parse_qs, unquote, urlsplit

import attrs
import httpx

from spotlake.clock import Clock, FakeClock
from spotlake.errors import ConfigError
from spotlake.testing.azure._replies import (
    Reply,
    Service,
    ServiceRequest,
    error_reply,
    ok_reply,
    too_many_requests,
)
from spotlake.testing.azure.graph import GraphService
from spotlake.testing.azure.identity import TOKEN_LIFETIME, IdentityService, credentials
from spotlake.testing.azure.prices import PricesService, PriceTable
from spotlake.testing.azure.skus import SkusService
from spotlake.testing.azure.sps import SpsService
from spotlake.testing.faults import Decision, EndpointFaults, Faults
from spotlake.testing.world import World

if TYPE_CHECKING:
    from azure.core.pipeline.transport import HttpTransport

__all__ = ["AzureEmulator", "EmulatorStats", "Reply"]

#: The JSON error envelope of each status the fault layer injects (429 has its own shapes).
_INJECTED: Final[Mapping[int, tuple[str, str]]] = {
    500: ("InternalServerError", "An internal server error occurred."),
    502: ("BadGateway", "The gateway received an invalid response."),
    503: ("ServiceUnavailable", "The service is temporarily unavailable. Please retry."),
    504: ("GatewayTimeout", "The gateway did not receive a response in time."),
}


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
        self.tenant_id, self.client_id, self.client_secret = credentials(seed)
        self.stats = EmulatorStats()
        self._lock = threading.Lock()
        self._attempts: collections.Counter[tuple[str, str]] = collections.Counter()
        self._identity = IdentityService(self)
        self._prices = PricesService(self)
        self._sps = SpsService(self, self._identity)
        # Routing order: the first service that accepts a request answers it.
        self._services: tuple[Service, ...] = (
            self._prices,
            self._sps,
            GraphService(self, self._identity),
            SkusService(self, self._identity),
            self._identity,
        )

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
        return self._prices.table

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

    # -- credentials and quota ---------------------------------------------------------------

    def issue_token(self, *, lifetime: int = TOKEN_LIFETIME) -> str:
        """Issue a bearer token valid for ``lifetime`` seconds on the emulator clock (for tests that
        skip the OAuth flow)."""
        return self._identity.issue_token(lifetime=lifetime)

    def quota_used(self, subscription: str, location: str) -> int:
        """SPS calls counted in the current window of (subscription, location)."""
        return self._sps.quota_used(subscription, location)

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
                reply = error_reply(
                    404, "NotFound", f"The emulator has no route for {method} {path}.", "other"
                )
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
            request = ServiceRequest(
                path=path, query=query, headers=hdrs, body=body, base_url=base_url, decision=decision
            )
            reply = service(request)
            if reply.status == 200:
                reply = self._mangle(reply, decision)
        reply = attrs.evolve(reply, delay=decision.delay)
        self.stats.record(endpoint, reply.status)
        return reply

    def _route(self, method: str, path: str) -> tuple[str, Service | None]:
        if path.lower().startswith("/_emulator/"):
            return "admin", None
        for service in self._services:
            if service.accepts(method, path):
                return service.endpoint, service
        return "other", None

    # -- fault layer -------------------------------------------------------------------------

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

    @staticmethod
    def _injected(endpoint: str, status: int, faults: EndpointFaults) -> Reply:
        if status == 429:
            if endpoint == "sps":
                return too_many_requests(faults.retry_after, endpoint)
            reply = error_reply(429, "TooManyRequests", "Rate limit exceeded. Please retry later.", endpoint)
            return attrs.evolve(reply, headers=(*reply.headers, ("Retry-After", str(faults.retry_after))))
        code, message = _INJECTED[status]
        return error_reply(status, code, message, endpoint)

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
            return ok_reply(
                {
                    "status": "ok",
                    "now": self.clock.now().isoformat(),
                    "regions": len(self.world.regions),
                    "sizes": len(self.world.sizes),
                },
                "admin",
            )
        if route == "/_emulator/stats" and method == "GET":
            return ok_reply(self.stats.to_json(), "admin")
        if route == "/_emulator/clock" and method == "POST":
            if not isinstance(self.clock, FakeClock):
                return error_reply(
                    409, "Conflict", "The emulator runs on the system clock; it cannot be moved.", "admin"
                )
            try:
                data = json.loads(body or b"{}")
                if "now" in data:
                    self.clock.set(datetime.fromisoformat(str(data["now"])))
                if "advance" in data:
                    self.clock.advance(float(data["advance"]))
            except (ValueError, TypeError) as exc:
                return error_reply(
                    400,
                    "BadRequest",
                    f"clock: expected {{'now': iso8601}} or {{'advance': s}}: {exc}",
                    "admin",
                )
            return ok_reply({"now": self.clock.now().isoformat()}, "admin")
        return error_reply(404, "NotFound", f"The emulator has no admin route {method} {path}.", "admin")
