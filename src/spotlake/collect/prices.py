"""Retail prices (spot and on-demand) from the Azure Retail Prices API, crawled concurrently.

``GET {prices}/api/retail/prices?currencyCode='USD'&$filter=serviceName eq 'Virtual Machines' and
priceType eq 'Consumption'&$skip=N`` answers pages of up to 1000 items with a ``NextPageLink``
(``null`` on the last page). Nothing tells how many pages there are (``Count`` is the size of the
page, not of the list), so the crawl has to discover the end while fetching.

The crawl (:class:`_Crawl`)
---------------------------
Up to ``concurrency`` requests are in flight from the start, chosen so that almost none is wasted
(page 0 confirms the page step, the ``$skip`` of its ``NextPageLink``; the API's is 1000):

- a page is *continuing* when it has a ``NextPageLink`` or is full (a full page without a link is a
  known fault of the API: we fall back to ``$skip``), *terminal* otherwise (short or empty);
- every page below the highest known continuing page holds data and is certainly needed, and so
  is the page right after it (data or the terminal page). These are fetched first, lowest first,
  plus (until a terminal page is seen) a few (``LOOKAHEAD``) past it to keep the pipe full;
- *probes* find the end: while no terminal page is known they gallop (pages 2, 4, 8, ..., four in
  flight), then three probes at a time split the gap between the highest requested page and the
  lowest terminal page into quarters (when the gap is that small, they simply fetch it). A
  probe that lands inside the list is a page we need anyway; only probes past the end are
  wasted (a few during the gallop, about one per bisection step) plus at most ``LOOKAHEAD``
  fill pages, whatever the concurrency;
- once the terminal page is known, requests past it are cancelled and never retried;
- JSON decoding (~10 ms of CPU per 620 KB page) runs on one worker thread and does not hold a
  network slot, so the event loop keeps the connections busy meanwhile.

A page is fetched by following the previous page's ``NextPageLink`` when it has arrived, else by
``$skip``. Every needed page ends fetched or as a :class:`~spotlake.collect.base.Failure` naming
its ``$skip``; by default missing pages raise :class:`~spotlake.errors.IncompleteDataError`
(``allow_partial=True`` returns the partial frame instead, with the report listing them).
Truncated or malformed pages are retried like a 5xx.

Filters and prices (docs/collectors.md)
------------------------------
Kept: Linux (``productName`` without "Windows"), ``type == "Consumption"`` (drops
``DevTestConsumption``), not Low Priority, not expired ("Expired" in the meter/sku name or an
``effectiveEndDate`` in the past), an effective date not in the future, a public-cloud region (see
:func:`is_sovereign`), a region and a size name. Spot rows are those whose ``meterName`` or
``skuName`` ends with " Spot". Per (region, size, spot?) the **latest effective** price wins (ties:
the lower price). Spot and on-demand are paired by (``armRegionName``, ``armSkuName``);
``savings_pct = (ondemand - spot) / ondemand * 100``.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Final
from urllib.parse import parse_qs, urlsplit

import attrs
import httpx
import pandas as pd

from spotlake.clock import Clock, SystemClock
from spotlake.collect._paging import Attempts, as_float, as_list, as_mapping, fetch_json
from spotlake.collect.base import AzureEndpoints, CollectResult, Failure, ReportBuilder, run_sync
from spotlake.collect.http import Backoff
from spotlake.errors import CollectError, ConfigError, PayloadError
from spotlake.model import PRICES_SCHEMA, Source, conform, empty_frame

__all__ = [
    "PRICE_FILTER",
    "PriceCollector",
    "PriceResult",
    "decode_price_page",
    "is_sovereign",
    "parse_price_page",
    "prices_frame",
]

SOURCE: Final = Source.PRICES
RETAIL_PATH: Final = "/api/retail/prices"
PRICE_FILTER: Final = "serviceName eq 'Virtual Machines' and priceType eq 'Consumption'"
#: The API's page size; only a fallback, the real step is read from page 0's NextPageLink.
DEFAULT_PAGE_SIZE: Final = 1000
#: A list longer than this many pages is treated as a runaway server (the real one has hundreds).
DEFAULT_MAX_PAGES: Final = 10_000
#: Pages fetched past the highest known continuing page before a probe confirms them, while no
#: terminal page is known yet. They keep the pipe full while the probes gallop ahead; they can only
#: be wasted on a list shorter than the gallop's reach (the original's 12 threads overshoot every
#: list by up to 11 pages plus the empty page).
LOOKAHEAD: Final = 12
#: Probes in flight while galloping towards the end (targets double: 2, 4, 8, ...).
GALLOP_PROBES: Final = 4
#: Probes per bisection step once a terminal page is known (they split the gap in equal parts).
BISECT_PROBES: Final = 3

# Sovereign and government clouds have their own price lists and no spot placement scores:
# US Government (usgov*, usdod*), US secret/top-secret clouds (usnat*, ussec*), Azure China
# (china*), and the retired "Microsoft Cloud Deutschland" (germanycentral, germanynortheast). The
# public German regions (germanywestcentral, germanynorth) are kept: the original system dropped
# every location starting with "Germany" and lost them, while its "US Gov ..." filter never matched.
_SOVEREIGN: Final = re.compile(r"^(?:usgov|usdod|usnat|ussec|china)|^germany(?:central|northeast)$")

# Fields extracted from each item, in this order.
_COLUMNS: Final = (
    "region",
    "location",
    "size",
    "meter",
    "sku",
    "product",
    "type",
    "price",
    "start",
    "end",
)


def is_sovereign(region: str) -> bool:
    """True for regions of a sovereign or government cloud (dropped from the public price list)."""
    return bool(_SOVEREIGN.search(region.lower()))


@attrs.frozen(kw_only=True)
class PriceResult(CollectResult):
    """Prices frame (:data:`~spotlake.model.PRICES_SCHEMA`) plus what the same crawl yields.

    ``region_names`` maps ARM region names to the API's display names; ``support_pairs`` is
    every (region, size) with a Linux spot price, the SPS planner's input.
    """

    region_names: Mapping[str, str] = attrs.field(factory=dict)
    support_pairs: frozenset[tuple[str, str]] = frozenset()


# --- page parsing (pure) ---------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class PricePage:
    """One parsed page: its item count, ``NextPageLink`` and the extracted rows."""

    count: int
    next_link: str | None
    rows: tuple[tuple[Any, ...], ...]
    invalid_items: int = 0


def parse_price_page(body: object) -> PricePage:
    """Validate one Retail Prices page and extract the fields the collector needs.

    Raises :class:`PayloadError` when the envelope is not the documented shape. An item lacking
    a required field (``armRegionName``, ``armSkuName``, ``meterName``, ``productName``, a numeric
    ``retailPrice``/``unitPrice``) is skipped and counted in ``invalid_items``; optional fields
    (``skuName``, ``type``, ``location``, ``effectiveStartDate``/``EndDate``) may be missing.
    """
    envelope = as_mapping(body, source=SOURCE, what="a price page")
    items = as_list(envelope.get("Items"), source=SOURCE, what="the page's 'Items'")
    link = envelope.get("NextPageLink")
    if link is not None and not isinstance(link, str):
        raise PayloadError(
            f"{SOURCE}: 'NextPageLink' is {type(link).__name__}, expected a string or null", source=SOURCE
        )
    rows: list[tuple[Any, ...]] = []
    invalid = 0
    # This loop runs for every item of every page (~200k per crawl), so it is written for speed:
    # exact type checks, one dict lookup per field, and Windows items (over half the feed, dropped
    # by the frame anyway) skipped before anything else is read.
    for item in items:
        if type(item) is not dict:
            invalid += 1
            continue
        get = item.get
        product = get("productName")
        if type(product) is not str:
            invalid += 1
            continue
        if "Windows" in product:
            continue
        region, size, meter = get("armRegionName"), get("armSkuName"), get("meterName")
        if type(region) is not str or type(size) is not str or type(meter) is not str:
            invalid += 1
            continue
        price = get("retailPrice")
        if type(price) is not float or not math.isfinite(price):
            price = as_float(price)
            if price is None:
                price = as_float(get("unitPrice"))
                if price is None:
                    invalid += 1
                    continue
        location, sku, kind = get("location"), get("skuName"), get("type")
        start, end = get("effectiveStartDate"), get("effectiveEndDate")
        rows.append(
            (
                region,
                location if type(location) is str else "",
                size,
                meter,
                sku if type(sku) is str else "",
                product,
                kind if type(kind) is str and kind else "Consumption",
                price,
                start if type(start) is str else None,
                end if type(end) is str else None,
            )
        )
    return PricePage(count=len(items), next_link=link or None, rows=tuple(rows), invalid_items=invalid)


def decode_price_page(content: bytes) -> PricePage:
    """JSON-decode and parse one page body; a body that is not JSON is a (retryable) PayloadError."""
    try:
        body = json.loads(content)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # RecursionError: absurd nesting
        raise PayloadError(
            f"{SOURCE}: a page body is not JSON ({len(content)} bytes, truncated?): {exc}", source=SOURCE
        ) from exc
    return parse_price_page(body)


def _parse_dates(values: pd.Series) -> pd.Series:
    # Unparseable dates become NaT: a start date we cannot read sorts first (oldest), an end date
    # we cannot read does not expire the meter.
    return pd.to_datetime(values, utc=True, errors="coerce", format="ISO8601")


def prices_frame(
    rows: Iterable[tuple[Any, ...]], *, now: pd.Timestamp | Any
) -> tuple[pd.DataFrame, dict[str, str]]:
    """Filter raw item rows, keep the latest effective price per meter and pair spot/on-demand.

    Pure and vectorised. Returns the frame in :data:`~spotlake.model.PRICES_SCHEMA` (sorted by
    region, size) and the region display-name map.
    """
    raw = pd.DataFrame.from_records(list(rows), columns=list(_COLUMNS))
    if raw.empty:
        return empty_frame(PRICES_SCHEMA), {}
    stamp = pd.Timestamp(now)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    start = _parse_dates(raw["start"])
    end = _parse_dates(raw["end"])
    region = raw["region"].astype("string").str.strip()
    size = raw["size"].astype("string").str.strip()
    meter = raw["meter"].astype("string")
    sku = raw["sku"].astype("string")
    names = meter + " " + sku
    keep = (
        (region != "")
        & (size != "")
        & ~raw["product"].astype("string").str.contains("Windows", regex=False)
        & (raw["type"].astype("string") == "Consumption")
        & ~names.str.contains("Low Priority", regex=False)
        & ~names.str.contains("Expired", regex=False)
        & ~(end.notna() & (end <= stamp))
        & ~(start.notna() & (start > stamp))
        & ~region.str.lower().str.contains(_SOVEREIGN, regex=True)
    ).fillna(False)
    is_spot = meter.str.endswith(" Spot") | sku.str.endswith(" Spot")
    frame = pd.DataFrame(
        {
            "region": region,
            "size": size,
            "spot": is_spot.fillna(False).astype(bool),
            "price": raw["price"].astype("float64"),
            "start": start,
        }
    )[keep.astype(bool)]
    # Latest effective version wins; among versions with the same date, the lower price.
    frame = frame.sort_values(["start", "price"], ascending=[True, False], na_position="first", kind="stable")
    latest = frame.drop_duplicates(["region", "size", "spot"], keep="last")
    ondemand = latest.loc[~latest["spot"], ["region", "size", "price"]].rename(
        columns={"price": "ondemand_price"}
    )
    spot = latest.loc[latest["spot"], ["region", "size", "price"]].rename(columns={"price": "spot_price"})
    paired = ondemand.merge(spot, on=["region", "size"], how="outer")
    od = paired["ondemand_price"]
    paired["savings_pct"] = ((od - paired["spot_price"]) / od.where(od > 0) * 100).astype("float64")

    located = pd.DataFrame({"region": region, "location": raw["location"].astype("string").str.strip()})
    located = located[(located["region"] != "") & (located["location"] != "")].dropna()
    region_names = dict(located.drop_duplicates("region").itertuples(index=False, name=None))
    paired["region_name"] = paired["region"].map(region_names).astype("string")
    # conform() aligns on the index: hand it a fresh RangeIndex or the sort would be undone.
    paired = paired.sort_values(["region", "size"], kind="stable").reset_index(drop=True)
    kept = set(paired["region"].astype(str))
    display = {str(k): str(v) for k, v in region_names.items() if k in kept}
    return conform(paired, PRICES_SCHEMA, source=SOURCE), display


# --- the crawl -------------------------------------------------------------------------------


def _skip_of(link: str) -> int | None:
    """The ``$skip`` a NextPageLink points at, if it has one."""
    try:
        values = parse_qs(urlsplit(link).query).get("$skip")
    except ValueError:
        return None
    if not values:
        return None
    try:
        skip = int(values[0])
    except ValueError:
        return None
    return skip if skip > 0 else None


@attrs.define
class _Outcome:
    page: PricePage | None = None
    failure: Failure | None = None


class _Crawl:
    """Fetch every page of the price list once; see the module docstring for the schedule."""

    def __init__(
        self,
        collector: PriceCollector,
        client: httpx.AsyncClient,
        report: ReportBuilder,
    ) -> None:
        self.c = collector
        self.client = client
        self.report = report
        self.step = DEFAULT_PAGE_SIZE
        self.outcomes: dict[int, _Outcome] = {}
        self.links: dict[int, str] = {}  # page -> its NextPageLink (the URL of page + 1)
        self.inflight: dict[asyncio.Task[_Outcome], int] = {}
        # Decoding a page (~10 ms of CPU for 620 KB of JSON) runs on one worker thread, so the event
        # loop keeps sending requests meanwhile; a task decoding does not hold a network slot.
        self.parser = ThreadPoolExecutor(max_workers=1, thread_name_prefix="prices-decode")
        self.decoding: set[asyncio.Task[Any]] = set()
        self.wake = asyncio.Event()
        self.probes: set[int] = set()
        self.requested: set[int] = set()
        self.fill_cursor = 0
        self.gallop = 2
        self.bisect_queue: list[int] = []
        self.top_continuing = -1  # highest page known to continue
        self.first_terminal: int | None = None  # lowest page known to be terminal

    # -- what we know ------------------------------------------------------------------------

    def _continuing(self, page: PricePage) -> bool:
        return page.next_link is not None or page.count >= self.step

    @property
    def end(self) -> int | None:
        """The last page, once known: a terminal page whose predecessor continues."""
        t = self.first_terminal
        if t is None:
            return None
        if t == 0 or t - 1 <= self.top_continuing:
            return t
        return None

    def _certain_limit(self) -> int:
        end = self.end
        if end is not None:
            return end
        if self.first_terminal is not None:
            # The bisection probes lift top_continuing in big steps; speculating here could only
            # fetch pages past the end.
            return min(self.top_continuing + 1, self.first_terminal - 1)
        return self.top_continuing + 1 + min(LOOKAHEAD, self.c.concurrency)

    def _next_fill(self) -> int | None:
        limit = min(self._certain_limit(), self.c.max_pages - 1)
        while self.fill_cursor in self.requested:
            self.fill_cursor += 1
        return self.fill_cursor if self.fill_cursor <= limit else None

    def _next_probe(self) -> int | None:
        if self.end is not None:
            return None
        cap = self.c.max_pages - 1
        if self.first_terminal is None:
            if len(self.probes) >= GALLOP_PROBES:
                return None
            target = max(self.gallop, max(self.requested, default=0) + 1)
            if target > cap:
                return None
            self.gallop = target * 2
            return target
        upper = self.first_terminal
        self.bisect_queue = [t for t in self.bisect_queue if t < upper and t not in self.requested]
        if not self.bisect_queue and not self.probes:
            lo = max((i for i in self.requested if i < upper), default=self.top_continuing)
            gap = upper - lo - 1  # pages of unknown state between lo and the terminal page
            k = min(BISECT_PROBES, gap)
            self.bisect_queue = sorted({lo + (upper - lo) * j // (k + 1) for j in range(1, k + 1)} - {lo})
        return self.bisect_queue.pop(0) if self.bisect_queue else None

    # -- fetching ----------------------------------------------------------------------------

    def _url(self, index: int) -> httpx.URL:
        base = httpx.URL(self.c.endpoints.prices.rstrip("/") + RETAIL_PATH)
        link = self.links.get(index - 1)
        if link is not None and _skip_of(link) == index * self.step:
            try:
                url = httpx.URL(link)
            except (httpx.InvalidURL, ValueError, TypeError):
                url = None
            # Follow the link only to the endpoint we were given (never to another host).
            if url is not None and (url.scheme, url.host, url.port) == (base.scheme, base.host, base.port):
                return url
        params: dict[str, str] = {"currencyCode": f"'{self.c.currency}'", "$filter": PRICE_FILTER}
        if index:
            params["$skip"] = str(index * self.step)
        return base.copy_merge_params(params)

    async def _fetch(self, index: int) -> _Outcome:
        what = f"page {index} ($skip={index * self.step})"
        tries = Attempts()

        async def build() -> httpx.Request:
            return self.client.build_request("GET", self._url(index))

        async def decode(response: httpx.Response) -> PricePage:
            task = asyncio.current_task()
            assert task is not None
            self.decoding.add(task)
            self.wake.set()  # a network slot is free: let the scheduler send the next request
            try:
                loop = asyncio.get_running_loop()
                return await loop.run_in_executor(self.parser, decode_price_page, response.content)
            finally:
                self.decoding.discard(task)

        try:
            body = await fetch_json(
                self.client,
                build,
                source=SOURCE,
                what=what,
                report=self.report,
                clock=self.c.clock,
                max_attempts=self.c.max_attempts,
                backoff=self.c.backoff,
                attempts=tries,
                decode=decode,
            )
        except CollectError as exc:
            return _Outcome(
                failure=Failure(what=what, reason=str(exc), status=exc.status, attempts=tries.count)
            )
        assert isinstance(body, PricePage)
        return _Outcome(page=body)

    def _start(self, index: int, *, probe: bool) -> None:
        self.requested.add(index)
        if probe:
            self.probes.add(index)
        task = asyncio.create_task(self._fetch(index), name=f"prices-page-{index}")
        self.inflight[task] = index

    def _record(self, index: int, outcome: _Outcome) -> None:
        self.probes.discard(index)
        self.outcomes[index] = outcome
        page = outcome.page
        if page is None:
            return
        if page.next_link is not None:
            self.links[index] = page.next_link
        if self._continuing(page):
            self.top_continuing = max(self.top_continuing, index)
        elif self.first_terminal is None or index < self.first_terminal:
            self.first_terminal = index

    def _cancel_beyond(self, bound: int) -> None:
        for task, index in list(self.inflight.items()):
            if index > bound:
                task.cancel()

    def _learn_step(self, page: PricePage) -> int:
        """The page step page 0 reveals: its NextPageLink's $skip, else its size when full."""
        if page.next_link is not None:
            return _skip_of(page.next_link) or max(page.count, 1)
        if page.count >= DEFAULT_PAGE_SIZE:
            return page.count
        return self.step

    async def _restart(self, step: int) -> None:
        """Page 0 says pages are not DEFAULT_PAGE_SIZE long: drop what was fetched at wrong offsets."""
        for task in self.inflight:
            task.cancel()
        await asyncio.gather(*self.inflight, return_exceptions=True)
        first = self.outcomes[0]
        self.inflight.clear()
        self.outcomes, self.links, self.probes, self.requested = {}, {}, set(), {0}
        self.fill_cursor, self.gallop, self.bisect_queue = 0, 2, []
        self.top_continuing, self.first_terminal = -1, None
        self.step = step
        self._record(0, first)

    async def run(self) -> None:
        # Page 0 goes out together with the first fill pages and probes, assuming the documented
        # page size: one round trip saved on every crawl; a different size (never seen) restarts.
        self._start(0, probe=False)
        try:
            while True:
                while self._has_slot():
                    probe = self._next_probe()
                    if probe is not None:
                        self._start(probe, probe=True)
                        continue
                    fill = self._next_fill()
                    if fill is None:
                        break
                    self._start(fill, probe=False)
                if not self.inflight:
                    return
                self.wake.clear()
                waiter = asyncio.ensure_future(self.wake.wait())
                pending: set[asyncio.Future[Any]] = {*self.inflight, waiter}
                await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                for task in [t for t in self.inflight if t.done()]:
                    index = self.inflight.pop(task)
                    if task.cancelled():
                        self.probes.discard(index)
                        continue
                    outcome = task.result()
                    if index == 0 and outcome.page is not None:
                        step = self._learn_step(outcome.page)
                        if step != self.step:
                            self.outcomes[0] = outcome
                            await self._restart(step)
                            break
                    self._record(index, outcome)
                    if self.c.progress is not None:
                        # probes past the end are fetched too: count the pages of the list only
                        inside = sum(1 for i in self.outcomes if self.end is None or i <= self.end)
                        self.c.progress(inside, None if self.end is None else self.end + 1)
                if self.first_terminal is not None:
                    self._cancel_beyond(self.first_terminal)
        finally:
            for task in self.inflight:
                task.cancel()
            if self.inflight:
                await asyncio.gather(*self.inflight, return_exceptions=True)
            self.parser.shutdown(wait=True, cancel_futures=True)

    def _has_slot(self) -> bool:
        # Network slots exclude tasks that are decoding; decoded-but-unprocessed pages are capped
        # too, so a slow decoder cannot pile up unbounded memory.
        busy = len(self.inflight)
        return busy - len(self.decoding) < self.c.concurrency and busy < 2 * self.c.concurrency

    # -- accounting --------------------------------------------------------------------------

    def settle(self) -> tuple[list[PricePage], list[Failure], int]:
        """The pages that belong to the list, the failures among them, and how many are needed."""
        failures: list[Failure] = []
        end = self.end
        bound = end if end is not None else (self.first_terminal if self.first_terminal is not None else None)
        if bound is None and not any(o.page is not None for o in self.outcomes.values()):
            # Nothing came back at all: name the pages that failed, not thousands of placeholders
            # between them (the list's length is unknown, which is one more failure).
            failures = [o.failure for _, o in sorted(self.outcomes.items()) if o.failure is not None]
            failures.append(
                Failure(what="the rest of the price list", reason="no page could be fetched", attempts=0)
            )
            return [], failures, len(failures)
        if bound is None:
            # No terminal page was ever seen: every page we tried is needed and the list's end is
            # unknown, which is itself a failure to report.
            top = max(self.outcomes, default=0)
            bound = top
            reason = (
                f"the list did not end within max_pages={self.c.max_pages}"
                if top >= self.c.max_pages - 1
                else "the end of the list was never reached"
            )
            if any(o.page is not None for o in self.outcomes.values()):
                failures.append(Failure(what=f"pages after {top} ($skip>{top * self.step})", reason=reason))
        pages: list[PricePage] = []
        for index in range(bound + 1):
            outcome = self.outcomes.get(index)
            if outcome is None:
                failures.append(
                    Failure(
                        what=f"page {index} ($skip={index * self.step})",
                        reason="not fetched: the end of the list is unknown because a nearby page failed",
                        attempts=0,
                    )
                )
            elif outcome.failure is not None:
                failures.append(outcome.failure)
            elif outcome.page is not None:
                pages.append(outcome.page)
        # Pages past the terminal page that still had items mean the list moved under us.
        if self.first_terminal is not None:
            for index, outcome in sorted(self.outcomes.items()):
                if index > self.first_terminal and outcome.page is not None and outcome.page.count > 0:
                    failures.append(
                        Failure(
                            what=f"page {index} ($skip={index * self.step})",
                            reason=(
                                f"has {outcome.page.count} items although page {self.first_terminal} "
                                "ended the list: the price list changed during the crawl; run again"
                            ),
                        )
                    )
        return pages, failures, bound + 1


# --- the collector ---------------------------------------------------------------------------


def _positive(name: str) -> Callable[[object, attrs.Attribute[int], int], None]:
    def check(_inst: object, _attr: attrs.Attribute[int], value: int) -> None:
        if value < 1:
            raise ConfigError(f"PriceCollector: {name} must be at least 1, got {value}")

    return check


@attrs.define(kw_only=True)
class PriceCollector:
    """Collects Linux spot and on-demand prices per (region, size). See the module docstring.

    ``concurrency`` bounds requests in flight; ``max_attempts`` the tries per page;
    ``allow_partial`` returns a frame with pages missing (listed in the report) instead of raising
    :class:`~spotlake.errors.IncompleteDataError`; ``progress(done_pages, total_or_None)`` is
    called as pages arrive (the total is known once the last page has been found).
    """

    source: Source = attrs.field(default=SOURCE, init=False)
    endpoints: AzureEndpoints = attrs.field(factory=AzureEndpoints)
    transport: httpx.AsyncBaseTransport | None = None
    clock: Clock = attrs.field(factory=SystemClock)
    # 32 in flight: the list's few hundred pages then take ~10 round trips instead of ~20 at 12.
    concurrency: int = attrs.field(default=32, validator=_positive("concurrency"))
    max_attempts: int = attrs.field(default=6, validator=_positive("max_attempts"))
    backoff: Backoff = attrs.field(factory=Backoff)
    currency: str = "USD"
    timeout: float = 60.0
    max_pages: int = attrs.field(default=DEFAULT_MAX_PAGES, validator=_positive("max_pages"))
    allow_partial: bool = False
    progress: Callable[[int, int | None], None] | None = None

    async def acollect(self) -> PriceResult:
        report = ReportBuilder(source=SOURCE, started_at=self.clock.now())
        limits = httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency)
        async with httpx.AsyncClient(
            transport=self.transport, timeout=httpx.Timeout(self.timeout), limits=limits
        ) as client:
            crawl = _Crawl(self, client, report)
            await crawl.run()
        pages, failures, needed = crawl.settle()
        report.planned = needed
        report.succeeded = len(pages)
        report.failures = failures
        # A consistency failure is about a page outside the list; keep planned = succeeded + failed.
        report.planned = report.succeeded + report.failed
        invalid = sum(p.invalid_items for p in pages)
        if invalid:
            report.notes.append(
                f"{invalid} item(s) lacked a required field or a numeric price and were skipped"
            )
        beyond = sum(1 for i in crawl.requested if crawl.end is not None and i > crawl.end)
        report.notes.append(
            f"{len(crawl.requested)} page(s) requested for a list of {needed} page(s) "
            f"({beyond} past the end, step {crawl.step})"
        )
        frame, region_names = prices_frame((row for p in pages for row in p.rows), now=self.clock.now())
        done = report.build(rows=len(frame), at=self.clock.now())
        if not self.allow_partial:
            done.require_complete("price list")
        support = frozenset(
            zip(
                frame.loc[frame["spot_price"].notna(), "region"].astype(str),
                frame.loc[frame["spot_price"].notna(), "size"].astype(str),
                strict=True,
            )
        )
        return PriceResult(frame=frame, report=done, region_names=region_names, support_pairs=support)

    def collect(self) -> PriceResult:
        """Blocking facade over :meth:`acollect`."""
        return run_sync(self.acollect())
