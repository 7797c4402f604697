"""Send Azure traffic to a loopback emulator while clients keep Azure's real ``https://`` URLs.

Pointing the SDKs at ``http://127.0.0.1:PORT`` does not work: MSAL refuses an authority that is not
TLS-protected, and azure-core's bearer-token policy refuses to send a token over plain http. So
instead the clients are left on ``https://management.azure.com``, ``https://prices.azure.com`` and
``https://login.microsoftonline.com``, and these transports rewrite each request's scheme, host and
port to the emulator's base URL just before it goes on the wire (the path and query are kept), and
say which URL the client used in ``X-Forwarded-Proto``/``X-Forwarded-Host``, which the emulator's
server honours like any reverse proxy's, so the links it returns stay on the https URLs.

Used by ``spotlake collect azure --endpoint URL`` (an emulator or a proxy of yours) and by
``make demo``; tests of code that builds its own clients can use them too. Never use them against
anything but a server you run yourself.
"""

from __future__ import annotations

from typing import Any

import httpx

from spotlake.errors import ConfigError

__all__ = ["RedirectTransport", "redirect_azure_transport"]


def _target(base_url: str) -> httpx.URL:
    try:
        url = httpx.URL(base_url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise ConfigError(
            f"endpoint {base_url!r} is not a URL ({exc}); expected http(s)://host:port"
        ) from None
    if url.scheme not in ("http", "https") or not url.host:
        raise ConfigError(
            f"endpoint {base_url!r} is not usable: expected http(s)://host:port, e.g. http://127.0.0.1:8080"
        )
    return url


def _rewrite(url: httpx.URL, target: httpx.URL) -> httpx.URL:
    prefix = target.path.rstrip("/")
    return url.copy_with(scheme=target.scheme, host=target.host, port=target.port, path=prefix + url.path)


class RedirectTransport(httpx.AsyncBaseTransport, httpx.BaseTransport):
    """An httpx transport (sync and async) that delivers every request to ``base_url``."""

    def __init__(self, base_url: str, **transport_options: Any) -> None:
        self._target = _target(base_url)
        self._sync = httpx.HTTPTransport(**transport_options)
        self._async = httpx.AsyncHTTPTransport(**transport_options)

    def _redirected(self, request: httpx.Request) -> httpx.Request:
        request.headers["X-Forwarded-Proto"] = request.url.scheme
        request.headers["X-Forwarded-Host"] = request.url.netloc.decode("ascii")
        request.url = _rewrite(request.url, self._target)
        return request

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return self._sync.handle_request(self._redirected(request))

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self._async.handle_async_request(self._redirected(request))

    def close(self) -> None:
        self._sync.close()

    async def aclose(self) -> None:
        await self._async.aclose()

    def __repr__(self) -> str:
        return f"RedirectTransport({str(self._target)!r})"


def redirect_azure_transport(base_url: str) -> Any:
    """An azure-core ``HttpTransport`` (requests-based) delivering every request to ``base_url``.

    For ``azure.identity.ClientSecretCredential(..., transport=...)`` and
    ``ResourceGraphClient(..., transport=...)``.
    """
    import requests
    import requests.adapters
    from azure.core.pipeline.transport import RequestsTransport

    target = _target(base_url)

    class _Adapter(requests.adapters.HTTPAdapter):
        def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
            original = request.url or ""
            asked = httpx.URL(original)
            # Tell the server which URL the client used, so links it returns (token endpoints,
            # next pages) point back at the https URL the client accepts.
            request.headers["X-Forwarded-Proto"] = asked.scheme
            request.headers["X-Forwarded-Host"] = asked.netloc.decode("ascii")
            request.url = str(_rewrite(asked, target))
            response = super().send(request, *args, **kwargs)
            # Report the URL the client asked for, so SDK logic that looks at it is unaffected.
            response.url = original
            return response

    session = requests.Session()
    session.trust_env = False  # never route loopback traffic through a proxy from the environment
    adapter = _Adapter()
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return RequestsTransport(session=session, session_owner=True)
