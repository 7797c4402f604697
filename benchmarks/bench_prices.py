"""Price crawl: spotlake's concurrent crawler vs a sequential crawl vs the original's 12-thread $skip crawl.

Setup, the same for every crawler and measured in the same run:

- the Azure emulator (``spotlake.testing``) serves the default world (quick: a smaller one) over
  loopback from its **own process** (so its CPU does not compete with the crawler's for the GIL),
  with ``latency`` seconds per page and 5% faults per request attempt (a mix of 500/503/429 with
  Retry-After, connection resets and truncated JSON). A fresh server per crawler, same seed: every
  crawler meets the same fault pattern for the same requests.
- each crawler runs in its own subprocess; peak memory is that process's ``ru_maxrss`` (resident
  set, via ``resource``), wall time covers the crawl and building the prices frame.
- the same retry policy (6 attempts, spotlake's jittered backoff honouring Retry-After) and the
  same page parser and frame builder for all three, so only the schedule differs.

Crawlers:

- ``spotlake``: :class:`spotlake.collect.prices.PriceCollector` (async, galloping probes + fill).
- ``sequential``: follow ``NextPageLink`` one page at a time (``$skip`` fallback on a full page).
- ``threads12``: the original's design (``ThreadPoolExecutor(max_workers=12)`` over ``$skip``
  offsets, stop at the first empty page), made fair: same retries (the original retried 5 times
  with a fixed 2 s sleep and then dropped the page silently), and workers stop taking offsets
  as soon as the end is seen (the original polled for it once a second, sending more requests).

``requests`` is what the server counted for the prices endpoint (every attempt, retries
included). ``lost pages`` = pages of the list the crawler did not return. The emulator renders a
page in ~25 ms of CPU; the real API's CPU is not ours, so the benchmark server memoises rendered
pages (the dicts; each answer is still serialised per request) to keep the server from being the
bottleneck for every crawler alike.

Run: ``python -m benchmarks --only prices`` (add ``--quick`` for a smoke run).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import resource
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

SEED = 0
FAULT_RATE = 0.05


def _fault_args(latency: float) -> list[str]:
    # 5% of attempts fail: 1.5% 500, 1% 503, 1% 429 (Retry-After: 1), 0.75% reset, 0.75% truncated.
    return [
        f"prices.latency={latency}",
        "prices.errors.500=0.015",
        "prices.errors.503=0.01",
        "prices.errors.429=0.01",
        "prices.retry_after=1",
        "prices.reset_rate=0.0075",
        "prices.truncated_rate=0.0075",
        f"prices.seed={SEED}",
    ]


# --- the server process ----------------------------------------------------------------------


def _serve(args: argparse.Namespace) -> None:
    from spotlake.testing.azure import AzureEmulator, Faults
    from spotlake.testing.azure.wire import base_url, make_server
    from spotlake.testing.world import World

    # The measured world (223 pages); the default "family" layout has a few more pairs (232 pages).
    world = World.generate(seed=SEED, n_regions=args.regions, n_sizes=args.sizes, layout="family-holes")
    emu = AzureEmulator(world, faults=Faults.parse(_fault_args(args.latency)), seed=SEED)
    table = emu.prices
    render = table.page
    memo: dict[tuple[Any, ...], dict[str, object]] = {}
    lock = threading.Lock()

    def page(**kw: Any) -> dict[str, object]:
        key = tuple(sorted(kw.items()))
        with lock:
            hit = memo.get(key)
        if hit is None:
            hit = render(**kw)
            with lock:
                memo[key] = hit
        return hit

    table.page = page  # type: ignore[method-assign]
    from spotlake.collect.prices import PRICE_FILTER

    pages = table.page_count(PRICE_FILTER)
    server = make_server(emu, "127.0.0.1", 0)
    url = base_url(server)
    # Warm the memo (the benchmark injects no empty-NextPageLink faults, so one variant per page).
    for i in range(pages + 2):
        page(odata_filter=PRICE_FILTER, skip=i * 1000, currency="USD", base_url=url, empty_next_link=None)
    emu.stats.reset()
    print(json.dumps({"url": url, "pages": pages, "truth_rows": len(world.offers)}), flush=True)
    server.serve_forever()


# --- crawlers (each runs in its own process) -------------------------------------------------


def _crawl_spotlake(url: str, concurrency: int) -> dict[str, Any]:
    from spotlake.collect.base import AzureEndpoints
    from spotlake.collect.prices import PriceCollector

    collector = PriceCollector(endpoints=AzureEndpoints.single(url), concurrency=concurrency, timeout=10.0)
    result = collector.collect()
    return {"pages": result.report.succeeded, "rows": len(result.frame), "failed": result.report.failed}


def _policy() -> Any:
    import tenacity

    from spotlake.collect.http import Backoff, is_transient
    from spotlake.errors import PayloadError

    backoff = Backoff()

    def wait(state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        retry_after = getattr(exc, "retry_after", None)
        return backoff.delay(state.attempt_number, retry_after if isinstance(retry_after, float) else None)

    return tenacity.Retrying(
        stop=tenacity.stop_after_attempt(6),
        wait=wait,
        retry=tenacity.retry_if_exception(lambda e: is_transient(e) or isinstance(e, PayloadError)),
        reraise=True,
    )


def _get_page(client: httpx.Client, url: str) -> Any:
    from spotlake.collect.http import error_for_response, read_json
    from spotlake.collect.prices import parse_price_page

    for attempt in _policy():
        with attempt:
            response = client.get(url)
            if response.status_code != 200:
                raise error_for_response("prices", url, response)
            return parse_price_page(read_json("prices", url, response))
    raise AssertionError("unreachable")


def _skip_url(base: str, skip: int) -> str:
    from spotlake.collect.prices import PRICE_FILTER

    params = {"currencyCode": "'USD'", "$filter": PRICE_FILTER, "$skip": str(skip)}
    return str(httpx.URL(base + "/api/retail/prices", params=params))


def _frame(pages: list[Any]) -> int:
    from datetime import UTC, datetime

    from spotlake.collect.prices import prices_frame

    frame, _ = prices_frame((row for p in pages for row in p.rows), now=datetime.now(UTC))
    return len(frame)


def _crawl_sequential(url: str) -> dict[str, Any]:
    pages: list[Any] = []
    failed = 0
    with httpx.Client(timeout=10.0) as client:
        next_url: str | None = _skip_url(url, 0)
        skip = 0
        while next_url is not None:
            try:
                page = _get_page(client, next_url)
            except Exception:
                failed += 1
                break
            pages.append(page)
            skip += page.count
            if page.next_link:
                next_url = page.next_link
            elif page.count >= 1000:
                next_url = _skip_url(url, skip)  # empty NextPageLink on a full page: $skip fallback
            else:
                next_url = None
    return {"pages": len(pages), "rows": _frame(pages), "failed": failed}


def _crawl_threads12(url: str) -> dict[str, Any]:
    results: dict[int, Any] = {}
    failed: list[int] = []
    end = threading.Event()
    lock = threading.Lock()
    local = threading.local()

    def client() -> httpx.Client:
        if not hasattr(local, "client"):
            local.client = httpx.Client(timeout=10.0)
        return local.client  # type: ignore[no-any-return]

    def get(index: int) -> None:
        if end.is_set():
            return
        try:
            page = _get_page(client(), _skip_url(url, index * 1000))
        except Exception:
            with lock:
                failed.append(index)
            return
        with lock:
            results[index] = page
        if page.count == 0:
            end.set()

    with ThreadPoolExecutor(max_workers=12) as pool:
        futures = [pool.submit(get, i) for i in range(2000)]
        # Stop at the first empty page (or if every offset has been tried: the server is down).
        while not end.wait(0.05) and not all(f.done() for f in futures):
            pass
        pool.shutdown(wait=True, cancel_futures=True)
    del futures
    last = min((i for i, p in results.items() if p.count == 0), default=max(results, default=0))
    pages = [results[i] for i in range(last + 1) if i in results]
    missing = [i for i in range(last + 1) if i not in results]
    return {"pages": len(pages), "rows": _frame(pages), "failed": len(missing)}


def _crawl(args: argparse.Namespace) -> None:
    # Import before the clock starts: interpreter start-up and pandas are not the crawl.
    for module in ("spotlake.collect.prices", "spotlake.collect.http", "tenacity", "pandas"):
        importlib.import_module(module)
    started, cpu = time.perf_counter(), time.process_time()
    if args.kind == "spotlake":
        out = _crawl_spotlake(args.url, args.concurrency)
    elif args.kind == "sequential":
        out = _crawl_sequential(args.url)
    else:
        out = _crawl_threads12(args.url)
    out["wall_s"] = time.perf_counter() - started
    out["cpu_s"] = time.process_time() - cpu
    out["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(out), flush=True)


# --- the driver ------------------------------------------------------------------------------


def _run_one(kind: str, *, regions: int, sizes: int, latency: float, concurrency: int) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.getcwd(), os.environ.get("PYTHONPATH", "")])}
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "benchmarks.bench_prices",
            "serve",
            "--regions",
            str(regions),
            "--sizes",
            str(sizes),
            "--latency",
            str(latency),
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert server.stdout is not None
        info = json.loads(server.stdout.readline())
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "benchmarks.bench_prices",
                "crawl",
                kind,
                "--url",
                info["url"],
                "--concurrency",
                str(concurrency),
            ],
            capture_output=True,
            text=True,
            env=env,
            check=False,
            timeout=900,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"{kind} crawl failed: {proc.stderr[-2000:]}")
        out: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
        stats = httpx.get(info["url"] + "/_emulator/stats", timeout=10).json()
        prices = stats.get("prices", {})
        out["requests"] = sum(int(v) for v in prices.values())
        out["faults"] = sum(int(v) for k, v in prices.items() if k != "200")
        out["list_pages"] = info["pages"]
        # A lost page shows as a failure the crawler admits, or (silently) as rows missing.
        out["lost_pages"] = out["failed"]
        out["frame_correct"] = out["rows"] == info["truth_rows"]
        out["crawler"] = kind
        return out
    finally:
        server.terminate()
        server.wait(timeout=10)


def _table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| crawler | latency ms | wall s | pages/s | crawler CPU s | requests | faults met | lost pages "
        "| frame correct | peak RSS MiB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['crawler']} | {r['latency_ms']} | {r['wall_s']} | {r['pages_per_s']} | {r['cpu_s']} | "
            f"{r['requests']} | {r['faults']} | {r['lost_pages']} | {r['frame_correct']} "
            f"| {r['peak_rss_mib']} |"
        )
    return "\n".join(lines)


def run(quick: bool) -> dict[str, Any]:
    regions, sizes = (30, 300) if quick else (60, 800)
    # The setting (100 ms per page) and a slower one, as pages over the internet are, where
    # the schedule rather than JSON decoding decides the wall time.
    latency, slow = (0.05, 0.2) if quick else (0.1, 0.4)
    concurrency = 32
    plan = [(k, latency) for k in ("spotlake", "threads12", "sequential")]
    plan += [(k, slow) for k in ("spotlake", "threads12")]
    rows = []
    for kind, lat in plan:
        row = _run_one(kind, regions=regions, sizes=sizes, latency=lat, concurrency=concurrency)
        row["latency_ms"] = round(lat * 1000)
        row["pages_per_s"] = round(row["list_pages"] / row["wall_s"], 1)
        row["wall_s"] = round(row["wall_s"], 2)
        row["cpu_s"] = round(row["cpu_s"], 2)
        row["peak_rss_mib"] = round(row["peak_rss_mib"], 1)
        rows.append(row)
    ours, twelve, seq, ours_slow, twelve_slow = rows
    speedup = twelve["wall_s"] / ours["wall_s"]
    speedup_slow = twelve_slow["wall_s"] / ours_slow["wall_s"]
    ms = f"{latency * 1000:.0f} ms"
    targets = {
        f"spotlake loses no page under {FAULT_RATE:.0%} faults": all(
            r["lost_pages"] == 0 and r["frame_correct"] for r in (ours, ours_slow)
        ),
        f"spotlake >= 2x faster than the 12-thread $skip crawl at {ms}/page (measured {speedup:.2f}x)": (
            speedup >= 2.0
        ),
        f"spotlake sends no more requests than the 12-thread crawl at {ms}/page": (
            ours["requests"] <= twelve["requests"]
        ),
    }
    markdown = (
        f"{ours['list_pages']} pages (~620 KB of JSON each), {FAULT_RATE:.0%} faults per attempt "
        f"(500/503/429 with Retry-After/reset/truncated), spotlake concurrency {concurrency}. Emulator "
        "in its own process (rendered pages memoised), each crawler in its own process; peak RSS = "
        "ru_maxrss of the crawler's process; crawler CPU = its process time. Same retry policy, page "
        "parser and frame builder for every crawler.\n\n"
        + _table(rows)
        + "\n\n"
        + f"Speed-up over the 12-thread crawl: {speedup:.2f}x at {ms}/page, {speedup_slow:.2f}x at "
        f"{slow * 1000:.0f} ms/page; over the sequential crawl: {seq['wall_s'] / ours['wall_s']:.2f}x.\n\n"
        "Reading it: at 100 ms per page a crawler needs ~10 ms of CPU per page to decode and filter "
        "620 KB of JSON and the emulator ~10 ms to serve it, so on a 2-core machine both concurrent "
        "crawlers are CPU-bound near the same rate and the schedule cannot make a 2x difference; the "
        "slower setting shows the schedule's effect (fewer round trips, fewer wasted requests).\n"
    )
    return {"name": "prices", "title": "Price crawl", "rows": rows, "targets": targets, "markdown": markdown}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_prices")
    sub = parser.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--regions", type=int, default=60)
    s.add_argument("--sizes", type=int, default=800)
    s.add_argument("--latency", type=float, default=0.1)
    c = sub.add_parser("crawl")
    c.add_argument("kind", choices=("spotlake", "sequential", "threads12"))
    c.add_argument("--url", required=True)
    c.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args(argv)
    if args.cmd == "serve":
        _serve(args)
    else:
        _crawl(args)


if __name__ == "__main__":
    main()
