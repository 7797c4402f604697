"""Adapters that put :meth:`AzureEmulator.handle` on the wire.

- :func:`httpx_handler`: for ``httpx.MockTransport`` (sync and async clients). Latency waits on the
  emulator's clock (a FakeClock makes it instant); a timeout raises ``httpx.ReadTimeout``, a reset
  ``httpx.RemoteProtocolError``.
- :func:`azure_transport`: an azure-core ``RequestsTransport`` whose ``requests`` session is served
  in-process, for azure-identity and the Resource Graph SDK (they do not use httpx). Any host works,
  so an ``https://`` authority (which azure-identity insists on) reaches the emulator offline.
- :func:`serve`: a threaded loopback HTTP server (stdlib ``ThreadingHTTPServer``). Latency is slept
  for real; a timeout holds the connection ``stall`` seconds then closes it unanswered; a reset
  aborts the TCP connection (RST).
"""

from __future__ import annotations

import contextlib
import http
import io
import socket
import struct
import sys
import threading
from collections.abc import Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

import httpx
import requests
import requests.adapters
from requests.structures import CaseInsensitiveDict
from requests.utils import get_encoding_from_headers

from spotlake.clock import SystemClock

if TYPE_CHECKING:
    from azure.core.pipeline.transport import HttpTransport

    from spotlake.testing.azure.emulator import AzureEmulator

__all__ = ["azure_transport", "httpx_handler", "serve"]


def httpx_handler(emu: AzureEmulator, request: httpx.Request) -> httpx.Response:
    """Answer an httpx request in-process."""
    body = request.read()
    reply = emu.handle(request.method, str(request.url), dict(request.headers), body)
    if reply.delay > 0:
        emu.clock.sleep(reply.delay)
    if reply.action == "timeout":
        emu.clock.sleep(reply.stall)
        raise httpx.ReadTimeout("emulated timeout: the server did not answer", request=request)
    if reply.action == "reset":
        raise httpx.RemoteProtocolError("Server disconnected without sending a response.", request=request)
    return httpx.Response(reply.status, headers=list(reply.headers), content=reply.body, request=request)


def azure_transport(emu: AzureEmulator) -> HttpTransport[Any, Any]:
    """An azure-core transport served by ``emu`` in-process."""
    from azure.core.pipeline.transport import RequestsTransport

    class _OnEmulatorTime(RequestsTransport):  # type: ignore[misc]
        """azure-core's retries wait on the emulator's clock (instant on a fake one), like every
        other wait in spotlake's tests."""

        def sleep(self, duration: float) -> None:
            emu.clock.sleep(duration)

    adapter = _EmulatorAdapter(emu)
    session = requests.Session()
    session.trust_env = False  # never pick up proxies or netrc from the environment
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    transport: HttpTransport[Any, Any] = _OnEmulatorTime(session=session, session_owner=False)
    return transport


class _EmulatorAdapter(requests.adapters.BaseAdapter):
    """A ``requests`` adapter that answers from the emulator instead of a socket."""

    def __init__(self, emu: AzureEmulator) -> None:
        super().__init__()
        self._emu = emu

    def send(  # noqa: PLR0917 - the signature requests calls
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: object = None,
        verify: object = True,
        cert: object = None,
        proxies: Mapping[str, str] | None = None,
    ) -> requests.Response:
        raw = request.body or b""
        body = raw.encode() if isinstance(raw, str) else raw if isinstance(raw, bytes) else b""
        headers = {k: v if isinstance(v, str) else v.decode() for k, v in request.headers.items()}
        reply = self._emu.handle(request.method or "GET", request.url or "", headers, body)
        if reply.delay > 0:
            self._emu.clock.sleep(reply.delay)
        if reply.action == "timeout":
            self._emu.clock.sleep(reply.stall)
            raise requests.exceptions.ReadTimeout(
                "emulated timeout: the server did not answer", request=request
            )
        if reply.action == "reset":
            raise requests.exceptions.ConnectionError("Connection reset by peer (emulated)", request=request)
        resp = requests.Response()
        resp.status_code = reply.status
        resp.headers = CaseInsensitiveDict(dict(reply.headers))
        resp._content = reply.body
        resp._content_consumed = True
        resp.raw = io.BytesIO(reply.body)
        resp.url = request.url or ""
        resp.request = request
        resp.reason = _reason(reply.status)
        resp.encoding = get_encoding_from_headers(resp.headers)
        return resp

    def close(self) -> None:
        return None


def _reason(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


@contextlib.contextmanager
def serve(emu: AzureEmulator, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Run a loopback HTTP server for ``emu`` in a background thread; yields its base URL."""
    server = make_server(emu, host, port)
    thread = threading.Thread(target=server.serve_forever, name="azure-emulator", daemon=True)
    thread.start()
    try:
        yield base_url(server)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def base_url(server: ThreadingHTTPServer) -> str:
    host, port = server.server_address[0], server.server_address[1]
    shown = host.decode() if isinstance(host, bytes) else str(host)
    return f"http://{shown}:{port}"


class _QuietServer(ThreadingHTTPServer):
    """A client that hangs up before the answer is written (a crawler cancelling speculative pages,
    a timed-out request) is normal traffic, not a server error: don't print a traceback for it."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


def make_server(emu: AzureEmulator, host: str = "127.0.0.1", port: int = 0) -> ThreadingHTTPServer:
    """A ready (not yet serving) threaded HTTP server answering from ``emu``."""
    real = SystemClock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "spotlake-azure-emulator"

        def log_message(self, format: str, *args: Any) -> None:
            return None  # quiet: tests and demos read stdout

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            # Honour reverse-proxy headers (spotlake.collect.redirect sends them) so the links the
            # emulator returns use the URL the client asked for.
            scheme = self.headers.get("X-Forwarded-Proto") or "http"
            host = self.headers.get("X-Forwarded-Host") or self.headers.get("Host") or netloc
            url = f"{scheme}://{host}{self.path}"
            reply = emu.handle(self.command, url, dict(self.headers.items()), body)
            if reply.delay > 0:
                real.sleep(reply.delay)
            if reply.action == "timeout":
                real.sleep(reply.stall)
                self.close_connection = True
                return
            if reply.action == "reset":
                # SO_LINGER with a zero timeout makes close() send RST: a connection reset.
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.close_connection = True
                return
            self.send_response(reply.status)
            for name, value in reply.headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(reply.body)

        do_GET = _serve
        do_POST = _serve
        do_PUT = _serve
        do_DELETE = _serve

    server = _QuietServer((host, port), Handler)
    server.daemon_threads = True
    netloc = base_url(server).removeprefix("http://")
    return server
