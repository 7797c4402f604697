"""`make demo`: real collection cycles against the bundled Azure emulator, into ./spotlake-data.

1. starts the emulator as a separate process on 127.0.0.1 (``python -m spotlake.testing.azure serve``);
2. runs three consecutive collection cycles 10 simulated minutes apart through the same code path as
   ``spotlake collect azure`` (real azure-identity token flow, Resource Graph SDK, REST collectors);
3. prints a short summary: calls vs the lower bound, rows, changes, the T2/T3 distribution, and
   where the Parquet files are;
4. runs as many AWS cycles at the same run times into the store's ``aws/`` tree, against the
   bundled offline AWS emulator (``spotlake collect aws --emulate``'s world), and summarises them.

Options: ``--regions/--sizes`` (world size), ``--cycles``, ``--store``, ``--seed``, ``--start``,
``--no-aws``.
The run times are on the 10-minute grid (as ``spotlake collect`` snaps them) and end at the last grid
point at or before now, so the store answers "the last hour" (``spotlake allocate`` leaves out data
older than an hour). A store that already holds runs from that window is continued after its last
run instead (nothing stored is replaced; those run times may be ahead of now). The emulator's clock
is moved to each run time through its admin endpoint, so the scores evolve as they would over 20
minutes of real time.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pandas as pd

from spotlake.clock import FakeClock, ShiftedClock
from spotlake.collect.auth import AzureCredentials, TokenProvider
from spotlake.collect.redirect import RedirectTransport, redirect_azure_transport
from spotlake.model import Cloud, Source
from spotlake.pipeline import AzureAccess, RunReport, run_cycle
from spotlake.pipeline.aws import AwsAccess, run_aws_cycle
from spotlake.progress import ProgressBoard
from spotlake.storage import open_store
from spotlake.testing.aws.catalog import AwsCatalog
from spotlake.testing.aws.emulator import AwsEmulator

Emulator = tuple[subprocess.Popen[str], str, dict[str, object]]

GRID = timedelta(minutes=10)


def demo_run_times(now: datetime, cycles: int, last: datetime | None = None) -> list[datetime]:
    """``cycles`` run times on the 10-minute grid ending at the last grid point at or before ``now``;
    if the store's ``last`` run is inside that window, the ones after ``last`` instead."""
    now = now.astimezone(UTC).replace(second=0, microsecond=0)
    end = now - timedelta(minutes=now.minute % 10)
    first = end - GRID * (cycles - 1)
    if last is not None and last >= first:
        first = last + GRID
    return [first + GRID * i for i in range(cycles)]


def start_emulator(args: argparse.Namespace, start: datetime) -> Emulator:
    cmd = [
        sys.executable, "-m", "spotlake.testing.azure", "serve", "--port", "0",
        "--seed", str(args.seed), "--regions", str(args.regions), "--sizes", str(args.sizes),
        "--start", start.isoformat(),
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        proc.kill()
        raise SystemExit("demo: the emulator did not start (run `python -m spotlake.testing.azure serve`)")
    url, info = line.split(" ", 1)
    return proc, url, json.loads(info)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", default="./spotlake-data")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--regions", type=int, default=30)
    parser.add_argument("--sizes", type=int, default=300)
    parser.add_argument("--cycles", type=int, default=3)
    parser.add_argument("--no-aws", action="store_true", help="skip the AWS cycles")
    parser.add_argument(
        "--start",
        default=None,
        help="first run time (default: the runs end at the last 10-minute grid point at or before now)",
    )
    args = parser.parse_args()

    store = open_store(args.store)
    last = store.read_state(frames=False).docs.get("last_run")
    last_at = datetime.fromisoformat(str(last["at"])) if last else None
    if args.start:
        start = datetime.fromisoformat(args.start)
        start = start if start.tzinfo else start.replace(tzinfo=UTC)
    else:
        start = demo_run_times(datetime.now(UTC), args.cycles, last_at)[0]
        if last_at is not None and start == last_at + GRID:
            # Continue the store's time series: nothing already stored is replaced.
            print(f"{args.store} already holds runs up to {last['at']}; continuing from {start.isoformat()}")
    started = time.monotonic()
    proc, url, info = start_emulator(args, start)
    try:
        print(f"emulator: {url} ({args.regions} regions x {args.sizes} sizes, seed {args.seed})")
        credentials = AzureCredentials(
            tenant_id=str(info["tenant_id"]),
            client_id=str(info["client_id"]),
            client_secret=str(info["client_secret"]),
            subscriptions=[str(s) for s in info["subscriptions"]],  # type: ignore[attr-defined]
        )
        # Simulated time for spotlake too (token expiry, quota windows), with real sleeps.
        clock = ShiftedClock(start)
        azure_transport = redirect_azure_transport(url)
        access = AzureAccess(
            credentials=credentials,
            transport=RedirectTransport(url),
            azure_transport=azure_transport,
            token=TokenProvider(credentials, transport=azure_transport, clock=clock),
        )
        reports: list[RunReport] = []
        for i in range(args.cycles):
            at = start + GRID * i
            httpx.post(f"{url}/_emulator/clock", json={"now": at.isoformat()}).raise_for_status()
            clock.set(at)
            board = ProgressBoard()  # prices and SPS run at once: one shared progress line
            try:
                report = run_cycle(
                    at,
                    store=store,
                    azure=access,
                    clock=clock,
                    progress=board.bar,
                )
            finally:
                board.close()
            reports.append(report)
            if not report.ok:
                print(f"cycle {i + 1} FAILED: {report.error_type}: {report.error}")
                return 1
            print(summary_line(i + 1, report))
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    print_summary(reports, Path(args.store), seconds=time.monotonic() - started)
    return 0 if args.no_aws else aws_demo(args, [r.at for r in reports])


def aws_demo(args: argparse.Namespace, times: list[datetime]) -> int:
    """AWS cycles at ``times`` into the store's aws/ tree, from the offline AWS emulator."""
    store = open_store(args.store, cloud=Cloud.AWS)
    last = store.read_state(frames=False).docs.get("last_run")
    last_at = datetime.fromisoformat(str(last["at"])) if last else None
    times = [at for at in times if last_at is None or at > last_at]  # never replace a stored run
    if not times:
        print(f"\naws: {store.url} already holds these runs")
        return 0
    clock = FakeClock(times[0])
    emulator = AwsEmulator(AwsCatalog.generate(args.seed), clock=clock, seed=args.seed)
    access = AwsAccess(
        regions=emulator.regions,
        accounts=emulator.accounts,
        clients=emulator.clients,
        advisor_transport=emulator.advisor_transport(),
    )
    print(f"\naws emulator: {len(emulator.regions)} regions x {len(emulator.catalog.types)} instance types")
    for i, at in enumerate(times):
        clock.set(at)
        report = run_aws_cycle(at, store=store, access=access, clock=clock)
        if not report.ok:
            print(f"aws cycle {i + 1} FAILED: {report.error_type}: {report.error}")
            return 1
        sps, scoring = report.collector(Source.AWS_SPS), report.scoring
        print(
            f"aws cycle {i + 1}: {at:%H:%M} target capacity {report.desired_count}: "
            f"{sps.succeeded if sps else 0}/{sps.planned if sps else 0} placement-score queries, "
            f"{sps.rows if sps else 0} zone scores, {scoring.snapshot_rows if scoring else 0} merged rows"
        )
    print(f"  Parquet files under {Path(args.store).resolve()}/aws/ (the same layout)")
    print(f"  try: .venv/bin/spotlake show --store {args.store} --cloud aws --limit 5")
    print(f"       .venv/bin/spotlake offers --store {args.store} --cloud aws --vcpus 4")
    return 0


def summary_line(n: int, report: RunReport) -> str:
    plan, scoring = report.plan, report.scoring
    sps = report.collector(Source.SPS)
    assert plan is not None and scoring is not None and sps is not None  # a committed run has them
    return (
        f"cycle {n}: {report.at:%Y-%m-%d %H:%M} count={report.desired_count:<3}"
        f" SPS calls {sps.succeeded}/{plan.calls} (lower bound {plan.lower_bound}),"
        f" {sps.rows} scores, {scoring.snapshot_rows} merged rows,"
        f" changes: {scoring.new} new / {scoring.changed} changed / {scoring.ceased} ceased"
        f" ({report.seconds:.1f} s)"
    )


def print_summary(reports: list[RunReport], store: Path, *, seconds: float) -> None:
    last = reports[-1]
    snapshot = open_store(str(store)).latest("merged")
    print("\nsummary")
    plan = last.plan
    assert plan is not None
    print(
        f"  plan: {plan.calls} SPS calls for {plan.pairs} (region, size) pairs;"
        f" lower bound {plan.lower_bound}, ratio {plan.ratio:.3f}"
    )
    scored = [r.scoring for r in reports if r.scoring is not None]
    print(f"  merged rows written: {sum(s.snapshot_rows for s in scored)} over {len(reports)} cycles")
    total = {
        "new": sum(s.new for s in scored),
        "changed": sum(s.changed for s in scored),
        "ceased": sum(s.ceased for s in scored),
        "unchanged": sum(s.unchanged for s in scored),
    }
    written = total["new"] + total["changed"] + total["ceased"]
    print(
        f"  time-series records: {written} ({total['new']} first observations of a (size, region, zone,"
        f" count), {total['changed']} changed, {total['ceased']} ceased); {total['unchanged']} unchanged rows"
        " not written (the original wrote every row every run)"
    )
    seen_again = total["changed"] + total["unchanged"]
    if seen_again:
        print(
            f"  of the rows whose count had been seen before, {100 * total['changed'] / seen_again:.1f} %"
            " changed and were written"
        )
    else:
        print(
            "  every count here was seen for the first time; a count repeats after 11 cycles"
            " (run with --cycles 14 to see what fraction of repeat observations changes)"
        )
    if snapshot is not None and len(snapshot):
        for col in ("t2", "t3"):
            dist = snapshot[col].value_counts(dropna=False).sort_index()
            shown = ", ".join(f"{'none' if pd.isna(k) else k}: {v}" for k, v in dist.items())
            print(f"  {col.upper()} distribution (latest snapshot): {shown}")
    print(f"  Parquet files under {store.resolve()}/ (raw/, merged/, changes/, state/)")
    print(f"  try: .venv/bin/spotlake status --store {store}")
    print(f"       .venv/bin/spotlake show --store {store} --changes --limit 5")
    recent = datetime.now(UTC) - timedelta(minutes=55) <= last.at <= datetime.now(UTC)
    at = "" if recent else f" --at {last.at + timedelta(minutes=5):%Y-%m-%dT%H:%MZ}"
    print(f"       .venv/bin/spotlake allocate --store {store} --vcpus 16{at}  (spot-first decision)")
    print(f"  done in {seconds:.1f} s")


if __name__ == "__main__":
    raise SystemExit(main())
