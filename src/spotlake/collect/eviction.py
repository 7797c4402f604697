"""Eviction rates ("IF", interruption frequency) from Azure Resource Graph's ``SpotResources`` table.

The query (docs/collectors.md) lists one row per (location, size) with an eviction-rate bucket ("0-5",
"5-10", "10-15", "15-20", "20+" percent). Pages are chained by ``$skipToken``, so they are fetched
one after another; each page is retried on 429/5xx/timeouts/resets/undecodable bodies with the
injected clock. A page that finally fails ends the crawl (the next token is unknown) and is
reported; by default that raises :class:`~spotlake.errors.IncompleteDataError`.

Size names are kept exactly as Resource Graph spells them (``Standard_DC2as_v5``): the original
system lower-cased them and no eviction row ever joined a price or a score again.

The Resource Graph SDK client is injected (anything with ``resources(QueryRequest) ->
QueryResponse``); when it is not, one is built from ``credential`` with the SDK's own retries off
(ours honour ``Retry-After`` and the injected clock; the SDK's would sleep for real and does not
retry a POST answered 429 anyway). The SDK is synchronous: each page runs in a worker thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Final, Protocol

import attrs
import pandas as pd

from spotlake.clock import Clock, SystemClock
from spotlake.collect._paging import (
    BearerTokenSourceLike,
    TokenCredentialLike,
    as_float,
    as_list,
    as_str,
    retry_transient_or_payload,
)
from spotlake.collect.base import AzureEndpoints, CollectResult, Failure, ReportBuilder, run_sync
from spotlake.collect.http import MAX_HONOURED_RETRY_AFTER, Backoff, retrying
from spotlake.errors import (
    AuthError,
    CollectError,
    ConfigError,
    InvalidRequestError,
    PayloadError,
    TransientCollectError,
)
from spotlake.model import EVICTION_BUCKETS, EVICTION_SCHEMA, Source, conform, empty_frame
from spotlake.redact import scrub

if TYPE_CHECKING:
    from azure.mgmt.resourcegraph.models import QueryRequest

__all__ = ["EVICTION_QUERY", "EvictionCollector", "ResourceGraphClientLike", "eviction_frame"]

SOURCE: Final = Source.EVICTION

EVICTION_QUERY: Final = (
    "SpotResources | where type =~ 'microsoft.compute/skuspotevictionrate/location' "
    "| project location, skuName=tostring(properties.skuName), "
    "evictionRate=tostring(properties.evictionRate)"
)


class ResourceGraphClientLike(Protocol):
    """What the collector needs of ``azure.mgmt.resourcegraph.ResourceGraphClient``."""

    def resources(self, query: QueryRequest, **kwargs: Any) -> Any: ...


def _azure_error(exc: Exception, what: str) -> CollectError:
    """Map an azure-core exception to a spotlake error (imported lazily: azure is optional at import)."""
    from azure.core.exceptions import (
        AzureError,
        ClientAuthenticationError,
        DecodeError,
        HttpResponseError,
        ServiceRequestError,
        ServiceResponseError,
    )

    prefix = f"{SOURCE}: {what}"
    if isinstance(exc, DecodeError):
        # The SDK's message quotes the body ("Content: ..."): scrubbed before it is cut.
        detail = scrub(exc.message or "")[:300]
        return PayloadError(f"{prefix} returned a body that is not JSON: {detail}", source=SOURCE)
    if isinstance(exc, ServiceRequestError | ServiceResponseError):
        return TransientCollectError(f"{prefix} failed in transport: {type(exc).__name__}", source=SOURCE)
    if isinstance(exc, HttpResponseError):
        status = exc.status_code
        message = scrub(exc.message).splitlines()[0][:300] if exc.message else ""
        if status in (408, 429) or (status is not None and status >= 500):
            retry_after = None
            headers = getattr(exc.response, "headers", None)
            if headers is not None:
                retry_after = as_float(headers.get("Retry-After"))
            return TransientCollectError(
                f"{prefix} got HTTP {status}: {message}",
                source=SOURCE,
                status=status,
                retry_after=min(retry_after, MAX_HONOURED_RETRY_AFTER) if retry_after is not None else None,
            )
        if status in (401, 403) or isinstance(exc, ClientAuthenticationError):
            return AuthError(
                f"{prefix} got HTTP {status}: {message}. The principal needs the Reader role on the "
                "subscriptions it queries; check the tenant, client id and secret.",
                source=SOURCE,
                status=status,
            )
        return InvalidRequestError(f"{prefix} got HTTP {status}: {message}", source=SOURCE, status=status)
    if isinstance(exc, AzureError):
        # e.g. the SDK's DeserializationError: a 2xx whose body is not the documented shape.
        return PayloadError(f"{prefix} returned an unreadable answer: {type(exc).__name__}", source=SOURCE)
    return CollectError(f"{prefix} failed: {type(exc).__name__}: {scrub(str(exc))}", source=SOURCE)


def _rows_of(data: object) -> list[Any]:
    """Rows of a page in either result format (objectArray, or a table of columns and rows)."""
    if isinstance(data, dict) and "columns" in data and "rows" in data:
        columns = [
            # A non-string name (drift) cannot match a field we read; keep it out of the dict keys.
            c.get("name") if isinstance(c, dict) and isinstance(c.get("name"), str) else None
            for c in as_list(data["columns"], source=SOURCE, what="'columns'")
        ]
        rows = as_list(data["rows"], source=SOURCE, what="'rows'")
        return [dict(zip(columns, r, strict=False)) if isinstance(r, list) else r for r in rows]
    return as_list(data, source=SOURCE, what="the page's 'data'")


def eviction_frame(rows: Sequence[object]) -> tuple[pd.DataFrame, int, int]:
    """Rows (dicts with location, skuName, evictionRate) -> EVICTION_SCHEMA frame.

    Returns the frame, how many rows were invalid (no location or size; skipped) and how many
    duplicates of a (region, size) were dropped (the last one wins). Unknown bucket strings are
    kept with a NaN IF score; names keep their case.
    """
    regions: list[str] = []
    sizes: list[str] = []
    buckets: list[str | None] = []
    invalid = 0
    for row in rows:
        if not isinstance(row, dict):
            invalid += 1
            continue
        region, size = as_str(row.get("location")), as_str(row.get("skuName"))
        if not region or not size or not region.strip() or not size.strip():
            invalid += 1
            continue
        bucket = as_str(row.get("evictionRate"))
        regions.append(region.strip())
        sizes.append(size.strip())
        buckets.append(bucket.strip() if bucket is not None and bucket.strip() else None)
    if not regions:
        return empty_frame(EVICTION_SCHEMA), invalid, 0
    frame = pd.DataFrame(
        {
            "region": pd.Series(regions, dtype="string"),
            "size": pd.Series(sizes, dtype="string"),
            "eviction_bucket": pd.Series(buckets, dtype="string"),
        }
    )
    deduped = frame.drop_duplicates(["region", "size"], keep="last")
    duplicates = len(frame) - len(deduped)
    deduped = deduped.assign(
        if_score=deduped["eviction_bucket"].map(dict(EVICTION_BUCKETS)).astype("float64")
    ).sort_values(["region", "size"], kind="stable")
    # conform() aligns on the index: hand it a fresh RangeIndex or rows would be re-ordered/lost.
    deduped = deduped.reset_index(drop=True)
    return conform(deduped, EVICTION_SCHEMA, source=SOURCE), invalid, duplicates


def _str_tuple(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(str(v) for v in values)


def _positive(_inst: object, attr: attrs.Attribute[int], value: int) -> None:
    if value < 1:
        raise ConfigError(f"EvictionCollector: {attr.name} must be at least 1, got {value}")


@attrs.define(kw_only=True)
class EvictionCollector:
    """Collects eviction-rate buckets per (region, size) into :data:`~spotlake.model.EVICTION_SCHEMA`.

    Give either ``client`` (a Resource Graph client) or ``credential`` (an azure-core
    ``TokenCredential``, or spotlake's async token source; ``azure_transport`` and
    ``endpoints.management`` shape the client built from it). ``subscriptions`` scope the query.
    """

    source: Source = attrs.field(default=SOURCE, init=False)
    subscriptions: tuple[str, ...] = attrs.field(converter=_str_tuple)
    client: ResourceGraphClientLike | None = None
    credential: TokenCredentialLike | BearerTokenSourceLike | None = None
    endpoints: AzureEndpoints = attrs.field(factory=AzureEndpoints)
    azure_transport: Any = None
    clock: Clock = attrs.field(factory=SystemClock)
    max_attempts: int = attrs.field(default=6, validator=_positive)
    backoff: Backoff = attrs.field(factory=Backoff)
    page_size: int = attrs.field(default=1000, validator=_positive)
    max_pages: int = attrs.field(default=1000, validator=_positive)
    allow_partial: bool = False

    def __attrs_post_init__(self) -> None:
        if not self.subscriptions:
            raise ConfigError("EvictionCollector needs at least one subscription id to query")
        if self.client is None and self.credential is None:
            raise ConfigError("EvictionCollector needs a Resource Graph `client` or a `credential`")

    def _client(self) -> ResourceGraphClientLike:
        if self.client is not None:
            return self.client
        from azure.mgmt.resourcegraph import ResourceGraphClient

        credential: Any = self.credential
        if not hasattr(credential, "get_token") and isinstance(credential, BearerTokenSourceLike):
            credential = _SyncTokenAdapter(credential, asyncio.get_running_loop(), self.clock)
        kwargs: dict[str, Any] = {"retry_total": 0}
        if self.azure_transport is not None:
            kwargs["transport"] = self.azure_transport
        client: ResourceGraphClientLike = ResourceGraphClient(
            credential, base_url=self.endpoints.management, **kwargs
        )
        return client

    async def _page(
        self, client: ResourceGraphClientLike, token: str | None, index: int, report: ReportBuilder
    ) -> tuple[Any, list[Any]]:
        from azure.mgmt.resourcegraph.models import QueryRequest, QueryRequestOptions

        what = f"page {index}" + (" (first)" if token is None else " ($skipToken)")
        request = QueryRequest(
            subscriptions=list(self.subscriptions),
            query=EVICTION_QUERY,
            options=QueryRequestOptions(top=self.page_size, skip_token=token, result_format="objectArray"),
        )
        call_kwargs: dict[str, Any] = {}
        if self.endpoints.management.startswith("http://"):
            # azure-core refuses bearer tokens over plain http; only a loopback emulator is http.
            call_kwargs["enforce_https"] = False
        attempts = 0
        try:
            async for attempt in retrying(
                clock=self.clock,
                max_attempts=self.max_attempts,
                backoff=self.backoff,
                retry_if=retry_transient_or_payload,
            ):
                with attempt:
                    attempts += 1
                    report.requests += 1
                    if attempts > 1:
                        report.retried += 1
                    try:
                        response = await asyncio.to_thread(client.resources, request, **call_kwargs)
                    except CollectError:
                        raise
                    except Exception as exc:
                        raise _azure_error(exc, what) from exc
                    # A body of the wrong shape is retried like a malformed one.
                    return response, _rows_of(getattr(response, "data", None))
        except AuthError:
            raise  # wrong credentials or a missing role: no page will do better, say so directly
        except CollectError as exc:
            raise _PageFailed(
                Failure(what=what, reason=str(exc), status=exc.status, attempts=attempts)
            ) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    async def acollect(self) -> CollectResult:
        report = ReportBuilder(source=SOURCE, started_at=self.clock.now())
        client = self._client()
        rows: list[object] = []
        token: str | None = None
        total: int | None = None
        for index in range(self.max_pages):
            report.planned += 1
            try:
                response, data = await self._page(client, token, index, report)
            except _PageFailed as failed:
                report.failures.append(failed.failure)
                break
            report.succeeded += 1
            rows.extend(data)
            reported_total = getattr(response, "total_records", None)
            if isinstance(reported_total, int) and not isinstance(reported_total, bool):
                total = reported_total
            next_token = getattr(response, "skip_token", None)
            token = next_token if isinstance(next_token, str) and next_token else None
            if token is None:
                break
        else:
            report.planned += 1
            report.failures.append(
                Failure(what=f"pages after {self.max_pages}", reason="the query did not end within max_pages")
            )
        if not report.failures and total is not None and total != len(rows):
            report.failures.append(
                Failure(
                    what="rows",
                    reason=f"received {len(rows)} rows but Resource Graph reported totalRecords={total}",
                )
            )
            report.planned += 1
        frame, invalid, duplicates = eviction_frame(rows)
        if invalid:
            report.notes.append(f"{invalid} row(s) had no location or skuName and were skipped")
        if duplicates:
            report.notes.append(f"{duplicates} duplicate (region, size) row(s) dropped (last kept)")
        done = report.build(rows=len(frame), at=self.clock.now())
        if not self.allow_partial:
            done.require_complete("eviction rates")
        return CollectResult(frame=frame, report=done)

    def collect(self) -> CollectResult:
        """Blocking facade over :meth:`acollect`."""
        return run_sync(self.acollect())


class _SyncTokenAdapter:
    """azure-core's ``get_token`` over spotlake's async token source, for the synchronous SDK.

    The SDK calls it from the worker thread a page runs in; the token is fetched on the
    collector's event loop. The source refreshes ahead of expiry itself, so the expiry given to
    the SDK is short (it just makes the SDK ask again soon).
    """

    #: Seconds the SDK may reuse a token before asking the source again.
    REUSE = 300

    def __init__(self, source: BearerTokenSourceLike, loop: asyncio.AbstractEventLoop, clock: Clock) -> None:
        self._source = source
        self._loop = loop
        self._clock = clock

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        from azure.core.credentials import AccessToken

        secret = asyncio.run_coroutine_threadsafe(self._source.atoken(), self._loop).result()
        token = secret.reveal() if hasattr(secret, "reveal") else str(secret)
        return AccessToken(token, int(self._clock.now().timestamp()) + self.REUSE)

    def __repr__(self) -> str:
        return "_SyncTokenAdapter(***)"


class _PageFailed(Exception):
    def __init__(self, failure: Failure) -> None:
        super().__init__(str(failure))
        self.failure = failure
