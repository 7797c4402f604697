"""The ``spotlake`` command: a thin face over the library.

::

    spotlake collect azure [--at T] [--store DIR|s3://B/P] [--endpoint URL] [--timestream] [--cloudwatch]
                           [--shard I/N | --shard auto/N]
    spotlake plan (--catalog CSV | --pairs CSV|-)
    spotlake status [--store ...]
    spotlake show [--store ...] [--changes] [--at T] [--where 'COLUMN OP VALUE' ...] [--limit N | --all]
    spotlake rollback [--store ...] [--to VERSION]
    spotlake allocate (--store ... | --offers CSV) (--vcpus N | --count N | --memory GIB) [--preset ...]
                      [--max-price USD] [--launch ...]   (spotlake.cli.allocate)
    spotlake simulate --trace (FILE|DIR|generated|store) [--workload week|deadline]
                      [--policies ...] [--json] [--plot OUT.png]   (spotlake.cli.simulate)

Every command takes ``--json`` (machine-readable stdout) and ``--quiet`` (no progress on stderr,
for cron). Exit codes: 0 done (or already done), 1 the run failed, 2 bad usage or configuration,
3 committed but some SPS calls failed (their pairs are unknown this run) or the sinks were not fed
(a later run delivers them), 75 another run holds the store's lock (try later; EX_TEMPFAIL), 141
standard output closed early (``spotlake status --json | head``: quietly, no traceback). A shard
worker (``--shard``) that stored its part while other shards' parts are still missing exits 0
("pending").

Times: every time printed (text or JSON) is ISO 8601 UTC to the second, ``2026-03-02T00:10:00+00:00``.
``collect`` snaps its run time (``--at`` or now) down to the 10-minute grid (12:17 -> 12:10): the
grid point is the run's identity, so a rerun within the same 10 minutes is a no-op once committed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from spotlake import __version__
from spotlake.cli._format import GRID_MINUTES, iso, normalise_times, snap_to_grid
from spotlake.cli._help import ENVIRONMENT, EPILOG, SHOW_EPILOG, Parser
from spotlake.cli._show import cmd_show
from spotlake.cli._where import WHERE_HELP
from spotlake.errors import ConfigError, LockedError, PlanError, SpotlakeError
from spotlake.model import DEFAULT_PLAN_SEARCH, Cloud
from spotlake.redact import scrub

if TYPE_CHECKING:
    from spotlake.collect.quota import LedgerSnapshot
    from spotlake.pipeline import RunReport, StoreStatus
    from spotlake.storage import GenerationInfo

__all__ = [
    "EXIT_BROKEN_PIPE",
    "EXIT_FAILED",
    "EXIT_LOCKED",
    "EXIT_OK",
    "EXIT_PARTIAL",
    "EXIT_USAGE",
    "main",
]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_PARTIAL = 3
EXIT_LOCKED = 75

DEFAULT_STORE = os.environ.get("SPOTLAKE_STORE", "./spotlake-data")


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r} (--all: every row)")
    return value


def _skew_minutes(text: str) -> int:
    value = _non_negative_int(text)
    if value > _MAX_SKEW_MINUTES:
        raise argparse.ArgumentTypeError(f"at most {_MAX_SKEW_MINUTES} minutes (a year), got {text!r}")
    return value


_MAX_SKEW_MINUTES = 366 * 24 * 60


def _parse_at(text: str | None) -> datetime:
    if not text:
        return datetime.now(UTC)
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ConfigError(f"--at {text!r} is not an ISO 8601 time (e.g. 2026-11-24T12:10Z)") from exc
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _run_time(text: str | None, *, quiet: bool) -> datetime:
    """The run time of ``collect``: ``--at`` (or now) snapped down to the 10-minute grid."""
    at = _parse_at(text)
    snapped = snap_to_grid(at)
    if text and snapped != at.replace(second=0, microsecond=0) and not quiet:
        print(
            f"spotlake: run time {iso(at)} snapped to {iso(snapped)}"
            f" (runs are on the {GRID_MINUTES}-minute grid)",
            file=sys.stderr,
        )
    return snapped


def _require_store(location: str) -> None:
    """A local store must be an existing directory (an S3 prefix with nothing under it is empty)."""
    if location.startswith("s3://"):
        return
    if not Path(location).is_dir():
        raise ConfigError(
            f"no store at {location} (no such directory): check --store, or run `spotlake collect azure"
            f" --store {location}` first"
        )


def _emit(args: argparse.Namespace, payload: Any, text: str) -> None:
    """Print ``text``, or with ``--json`` the payload (a typed report goes through spotlake.serde).

    Times in the JSON are rewritten to the CLI's one format (``spotlake.cli._format.iso``)."""
    if args.json:
        from spotlake.serde import dump

        print(json.dumps(normalise_times(dump(payload)), indent=2, default=str))
    else:
        print(text)


# --- collect --------------------------------------------------------------------------------


def _cmd_collect(args: argparse.Namespace) -> int:
    from spotlake.collect.auth import AzureCredentials, slack_webhook
    from spotlake.notify import SlackNotifier
    from spotlake.pipeline import AzureAccess, CycleOptions, RunStatus, Shard, SnapshotWriter, run_cycle
    from spotlake.progress import ProgressBoard
    from spotlake.storage import open_store

    at = _run_time(args.at, quiet=args.quiet)
    # Usage errors first, before any credential lookup or network call.
    shard = Shard.parse(args.shard) if args.shard is not None else None
    if args.credentials == "env":
        credentials = AzureCredentials.from_env()
    else:
        import boto3

        credentials = AzureCredentials.from_dynamodb(
            client=boto3.client("dynamodb"), table=args.dynamodb_table, zonal=not args.regional
        )
    if shard is not None:
        shard.subscriptions(credentials.subscriptions)  # enough subscriptions for N shards? (exit 2)
    if args.endpoint:
        # An emulator (or any server of yours): clients keep Azure's https URLs and the transports
        # deliver the requests to --endpoint (see spotlake.collect.redirect for why).
        from spotlake.collect.redirect import RedirectTransport, redirect_azure_transport

        access = AzureAccess(
            credentials=credentials,
            transport=RedirectTransport(args.endpoint),
            azure_transport=redirect_azure_transport(args.endpoint),
        )
    else:
        access = AzureAccess(credentials=credentials)
    store = open_store(args.store)

    timeseries = None
    if args.timestream:
        from spotlake.storage.timestream import TimestreamSink

        timeseries = TimestreamSink(
            database=args.timestream_database, table=args.timestream_table, layout=args.timestream_layout
        )
    metrics = None
    if args.cloudwatch:
        from spotlake.storage.cloudwatch import CloudWatchSink

        metrics = CloudWatchSink(log_group=args.log_group, namespace=args.metrics_namespace)
    writers: list[SnapshotWriter] = []
    if args.compat_bucket:
        from spotlake.storage.compat import CompatWriter

        writers.append(CompatWriter(bucket=args.compat_bucket))
    notifier = None
    if args.slack:
        webhook = slack_webhook()  # the environment first: no AWS call needed
        if webhook is None:
            import boto3

            webhook = slack_webhook(ssm_client=boto3.client("ssm"))
        if webhook is None:
            raise ConfigError(
                "--slack: no webhook found; set SPOTLAKE_SLACK_WEBHOOK_URL or the SSM parameter "
                "error_notification_slack_webhook_url"
            )
        notifier = SlackNotifier(webhook=webhook)

    board = ProgressBoard(quiet=args.quiet)  # concurrent collectors share one terminal line

    def progress(label: str) -> Callable[[int, int | None], None] | None:
        return None if args.quiet else board.bar(label)

    try:
        report = run_cycle(
            at,
            store=store,
            azure=access,
            options=CycleOptions(
                zonal=not args.regional,
                lock_timeout=args.lock_timeout,
                plan_search=args.plan_search,
                max_clock_skew=timedelta(minutes=args.max_clock_skew),
            ),
            timeseries=timeseries,
            metrics=metrics,
            extra_writers=writers,
            notifier=notifier,
            progress=progress,
            shard=shard,
        )
    finally:
        board.close()  # end the progress line before any message is printed
    _emit(args, report, _run_text(report, store=args.store))
    if report.status is RunStatus.FAILED:
        # A run refused for its configuration (a run time ahead of the clock, too few
        # subscriptions for the shards) is a usage error; anything else failed on the way.
        return EXIT_USAGE if report.error_type == "ConfigError" else EXIT_FAILED
    if report.status is RunStatus.COMMITTED and (report.failed_calls or report.delivery_error):
        return EXIT_PARTIAL
    return EXIT_OK


def _run_text(report: RunReport, *, store: str) -> str:
    from spotlake.model import Source
    from spotlake.pipeline import RunStatus

    when = iso(report.at)
    if report.status is RunStatus.FAILED:
        return f"run {when} FAILED: {report.error_type}: {report.error}"
    if report.status is RunStatus.SKIPPED:
        return f"run {when} already committed; nothing to do"
    sps = report.collector(Source.SPS)
    if report.status is RunStatus.PENDING and report.shard is not None:
        return (
            f"run {when} shard {report.shard.index}/{report.shard.count}: "
            f"{sps.succeeded if sps else 0}/{sps.planned if sps else 0} SPS calls ok, part stored; "
            f"waiting for shards {list(report.shard.missing)} (the last one to finish commits the run)"
        )
    prices = report.collector(Source.PRICES)
    plan, scoring = report.plan, report.scoring
    lines = [
        f"run {when}  desired count {report.desired_count}"
        + ("  (new day: plan rebuilt)" if report.new_day else ""),
        f"  prices: {prices.rows if prices else 0} (region, size) rows"
        f" from {prices.succeeded if prices else 0} pages",
        f"  SPS: {sps.succeeded if sps else 0}/{sps.planned if sps else 0} calls ok"
        + (
            f" (plan {plan.calls} calls, lower bound {plan.lower_bound}, ratio {plan.ratio:.3f})"
            if plan is not None
            else ""
        )
        + f", {sps.rows if sps else 0} scores",
    ]
    if scoring is not None:
        lines.append(
            f"  merged rows: {scoring.snapshot_rows}; changes: {scoring.new} new, {scoring.changed} changed,"
            f" {scoring.ceased} ceased, {scoring.unchanged} unchanged"
        )
    lines.append(f"  state {report.state_version} in {store}")
    if report.shard is not None and report.shard.finalised:
        lines.append(f"  merged {report.shard.count} shard parts; finalised by shard {report.shard.index}")
    if report.failed_calls:
        lines.append(
            f"  WARNING: {report.failed_calls} SPS calls failed; the scores of their {report.unknown.count}"
            " (region, size) pairs are unknown this run (see --json for reasons)"
        )
    if report.delivery_error:
        lines.append(f"  WARNING: committed, but the sinks were not fed: {report.delivery_error}")
    return "\n".join(lines)


# --- plan -----------------------------------------------------------------------------------


def _cmd_plan(args: argparse.Namespace) -> int:
    from spotlake.collect.catalog import load_pairs, read_pairs
    from spotlake.progress import Progress
    from spotlake.scoring.plan import format_summary, plan_calls, plan_summary

    source = args.catalog or args.pairs
    pairs = read_pairs(sys.stdin, where="standard input") if source == "-" else load_pairs(source)
    what = "standard input" if source == "-" else str(source)
    bar = None if args.quiet or not args.search else Progress("order search")
    try:
        plan = plan_calls(
            pairs, max_regions=args.max_regions, max_sizes=args.max_sizes, search=args.search, progress=bar
        )
    finally:
        if bar is not None:
            bar.close()
    summary = plan_summary(
        plan, quota_per_hour=args.quota, interval_minutes=args.interval, locations=args.locations
    )
    _emit(args, {"input": what, **summary}, f"{what}\n{format_summary(summary)}")
    return EXIT_OK


# --- status / show --------------------------------------------------------------------------


def _cmd_status(args: argparse.Namespace) -> int:
    from spotlake.pipeline import store_status
    from spotlake.storage import open_store

    _require_store(args.store)
    cloud = Cloud(args.cloud)
    status = store_status(open_store(args.store, cloud=cloud), now=datetime.now(UTC))
    _emit(args, status, _status_text(status, cloud=cloud))
    return EXIT_OK


def _status_text(status: StoreStatus, *, cloud: Cloud = Cloud.AZURE) -> str:
    last_committed = status.last_run_at
    pending_lines = [
        f"sharded run {iso(p.at)} not committed:"
        f" parts of shards {list(p.present)} of {p.count} stored,"
        + (
            f" missing {list(p.missing)} (rerun them: collect {cloud} --at {iso(p.at)} --shard I/{p.count})"
            if last_committed is None or p.at > last_committed
            else " older than the last committed run, so never committed (the next sharded commit removes it)"
        )
        for p in status.pending_shards
    ]
    if status.empty:
        return "\n".join([f"{status.store}: empty store (no run committed yet)", *pending_lines])
    rotation, nxt, plan = status.rotation, status.next_run, status.plan
    scoring = status.last_report.scoring if status.last_report else None
    lines = [
        f"store {status.store}  state {status.state_version}",
        f"last run {iso(status.last_run_at) if status.last_run_at else '?'}"
        f"  desired count {status.last_desired_count}",
        f"rotation: next count {nxt.desired_count if nxt else '?'}"
        f"{' (new UTC day)' if nxt and nxt.new_day else ''},"
        f" day {rotation.day}, failed attempts {rotation.attempts}, counts skipped {rotation.skipped}",
    ]
    if cloud is Cloud.AZURE:  # the SPS plan, learned values and quota ledgers are Azure's documents
        lines += [
            f"learned invalid: {len(rotation.invalid_regions)} regions, {len(rotation.invalid_sizes)} sizes",
            f"plan for {status.plan_date}: {plan.calls if plan else '?'} calls"
            f" (lower bound {plan.lower_bound if plan else '?'})",
            *(_quota_line(name, snap) for name, snap in status.quota.items()),
        ]
        if not status.quota:
            lines.append("quota: no SPS calls recorded yet")
    if scoring is not None:
        lines.append(
            f"last run changes: {scoring.new} new, {scoring.changed} changed, {scoring.ceased} ceased"
        )
    if status.undelivered:
        lines.append(
            f"sinks owed {len(status.undelivered)} committed run(s), oldest"
            f" {iso(status.undelivered[0])} (the next run delivers them)"
        )
    return "\n".join([*lines, *pending_lines])


def _quota_line(name: str, snap: LedgerSnapshot) -> str:
    free = (
        f", next slot frees at {iso(snap.next_free_at)}" if snap.capacity == 0 and snap.next_free_at else ""
    )
    return (
        f"{name}: {snap.calls_in_window} calls in the current window over {snap.slots} slots"
        f" (budget {snap.budget} per {snap.window_seconds / 60:.0f} min each); capacity now"
        f" {snap.capacity} calls, {snap.exhausted_slots} slots marked exhausted{free}"
    )


def _cmd_rollback(args: argparse.Namespace) -> int:
    from spotlake.storage import open_store

    store = open_store(args.store)
    kept = store.kept_generations()
    if not kept:
        raise ConfigError(f"{args.store} has no committed state to roll back")
    if args.to is None:
        lines = [f"{'version':<30} {'run':<18} committed at", *(_generation_line(g) for g in kept)]
        lines.append("roll back with: spotlake rollback --store STORE --to VERSION")
        _emit(args, kept, "\n".join(lines))
        return EXIT_OK
    if args.to not in {g.version for g in kept}:
        raise ConfigError(
            f"--to {args.to!r} is not a kept state of {args.store}; kept: {[g.version for g in kept]}"
        )
    with store.lock("operator-rollback", timeout=args.lock_timeout):
        current = store.read_state(frames=False).version
        store.rollback(args.to, expected_version=current, run_id="operator-rollback")
    after = store.kept_generations()
    _emit(
        args, after, f"{args.store}: rolled back from {current} to {args.to}; the next run continues from it"
    )
    return EXIT_OK


def _generation_line(info: GenerationInfo) -> str:
    when = iso(info.committed_at) if info.committed_at else "?"
    return f"{info.version:<30} {info.run_id or '?':<18} {when}{'  (current)' if info.current else ''}"


# --- parser ---------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    common = Parser(add_help=False)
    common.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    common.add_argument("--quiet", "-q", action="store_true", help="no progress output (for cron)")
    common.add_argument("--verbose", "-v", action="store_true", help="log details to stderr")

    parser = Parser(prog="spotlake", description=__doc__.split("\n\n")[0], epilog=EPILOG)
    parser.add_argument("--version", action="version", version=f"spotlake {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    collect = sub.add_parser("collect", help="run one collection cycle", epilog=ENVIRONMENT)
    collect_sub = collect.add_subparsers(dest="provider", required=True)
    az = collect_sub.add_parser("azure", parents=[common], help="collect Azure spot data", epilog=ENVIRONMENT)
    az.add_argument(
        "--at",
        help=f"run time, ISO 8601 UTC (default: now), snapped down to the {GRID_MINUTES}-minute grid "
        "(12:17 runs as 12:10; a rerun in the same 10 minutes is the same run)",
    )
    az.add_argument("--store", default=DEFAULT_STORE, help="local directory or s3://bucket/prefix")
    az.add_argument(
        "--endpoint",
        help="send every Azure request to this base URL (the emulator, e.g. http://127.0.0.1:8080)",
    )
    az.add_argument(
        "--credentials",
        choices=("env", "dynamodb"),
        default="env",
        help="env: the AZURE_* variables below; dynamodb: the AzureAuth table of the original deployment",
    )
    az.add_argument("--dynamodb-table", default="AzureAuth", help="the table of --credentials dynamodb")
    az.add_argument("--regional", action="store_true", help="regional SPS requests instead of zonal")
    az.add_argument("--timestream", action="store_true", help="write the changes to Amazon Timestream")
    az.add_argument("--timestream-database", default="spotlake", help="Timestream database")
    az.add_argument("--timestream-table", default="azure", help="Timestream table")
    az.add_argument(
        "--timestream-layout",
        choices=("spotlake", "original"),
        default="spotlake",
        help="record layout: spotlake's, or the original deployment's",
    )
    az.add_argument("--cloudwatch", action="store_true", help="per-run counts to CloudWatch")
    az.add_argument("--log-group", default="/spotlake/azure", help="CloudWatch Logs group")
    az.add_argument("--metrics-namespace", default="spotlake", help="CloudWatch metrics namespace")
    az.add_argument("--compat-bucket", help="also write the original deployment's S3 layout to this bucket")
    az.add_argument("--slack", action="store_true", help="notify Slack on failure")
    az.add_argument("--lock-timeout", type=float, default=0.0, help="seconds to wait for another run")
    az.add_argument(
        "--plan-search",
        type=_non_negative_int,
        default=DEFAULT_PLAN_SEARCH,
        help=f"re-plans searching for fewer SPS calls when the day's plan is rebuilt (default "
        f"{DEFAULT_PLAN_SEARCH}; 0 = plain plan)",
    )
    az.add_argument(
        "--max-clock-skew",
        type=_skew_minutes,
        default=15,
        metavar="MINUTES",
        help="refuse a run time more than this far ahead of the clock (default 15)",
    )
    az.add_argument(
        "--shard",
        metavar="I/N",
        help="collect SPS shard I of N (0-based; auto/N reads AWS_BATCH_JOB_ARRAY_INDEX); the worker that "
        "completes the set of parts commits the run (docs/operations.md, 'Sharded collection')",
    )
    az.set_defaults(func=_cmd_collect)
    from spotlake.cli.collect_aws import add_collect_aws_parser

    add_collect_aws_parser(collect_sub, common, DEFAULT_STORE, run_time=_run_time, emit=_emit)

    plan = sub.add_parser("plan", parents=[common], help="plan SPS calls and print the summary")
    src = plan.add_mutually_exclusive_group(required=True)
    src.add_argument("--catalog", help="a SkyPilot-style catalog CSV (Region, InstanceType, SpotPrice)")
    src.add_argument(
        "--pairs",
        help="a CSV with region,size columns ('-' reads standard input, e.g. from "
        "'python -m spotlake.testing.azure pairs --seed 0')",
    )
    plan.add_argument("--max-regions", type=int, default=8, help="regions per SPS call")
    plan.add_argument("--max-sizes", type=int, default=5, help="VM sizes per SPS call")
    plan.add_argument(
        "--search",
        "--plan-search",
        type=_non_negative_int,
        default=0,
        help="re-plans spent searching tie-break orders for fewer calls (~0.4 s each at 60 x 800)",
    )
    plan.add_argument("--quota", type=int, default=10, help="SPS calls per hour per (subscription, location)")
    plan.add_argument("--interval", type=int, default=10, help="minutes between runs")
    plan.add_argument("--locations", type=int, default=None, help="URL locations per subscription")
    plan.set_defaults(func=_cmd_plan)

    status = sub.add_parser("status", parents=[common], help="rotation, quota windows and the last run")
    status.add_argument("--store", default=DEFAULT_STORE, help="local directory or s3://bucket/prefix")
    status.add_argument(
        "--cloud", choices=("azure", "aws"), default="azure", help="whose runs (default azure)"
    )
    status.set_defaults(func=_cmd_status)

    rollback = sub.add_parser(
        "rollback",
        parents=[common],
        help="list the committed states a store keeps, or restore one (--to VERSION)",
    )
    rollback.add_argument("--store", default=DEFAULT_STORE, help="local directory or s3://bucket/prefix")
    rollback.add_argument("--to", metavar="VERSION", help="the kept state to make current again")
    rollback.add_argument("--lock-timeout", type=float, default=0.0, help="seconds to wait for a run")
    rollback.set_defaults(func=_cmd_rollback)

    show = sub.add_parser("show", parents=[common], help="the latest snapshot or changes", epilog=SHOW_EPILOG)
    show.add_argument("--store", default=DEFAULT_STORE, help="local directory or s3://bucket/prefix")
    show.add_argument("--cloud", choices=("azure", "aws"), default="azure", help="whose data (default azure)")
    show.add_argument("--changes", action="store_true", help="the changeset instead of the snapshot")
    show.add_argument(
        "--at", help="the run at this time (ISO 8601 UTC, to the minute) instead of the latest run"
    )
    show.add_argument("--where", action="append", metavar="'COLUMN OP VALUE'", help=WHERE_HELP)
    rows = show.add_mutually_exclusive_group()
    rows.add_argument(
        "--limit", type=_positive_int, default=20, help="show at most this many rows (a whole number >= 1)"
    )
    rows.add_argument("--all", action="store_true", help="show every row (no --limit)")
    show.set_defaults(func=cmd_show)

    from spotlake.cli.allocate import add_allocate_parser

    add_allocate_parser(sub, common, DEFAULT_STORE)

    from spotlake.cli.simulate import add_simulate_parser

    add_simulate_parser(sub, common, DEFAULT_STORE)

    from spotlake.cli.offers import add_offers_parser

    add_offers_parser(sub, common, DEFAULT_STORE)
    return parser


#: The exit code when stdout is closed before everything was written (128 + SIGPIPE, what a shell
#: reports for ``cat big | head``): quiet, and visible to ``set -o pipefail``.
EXIT_BROKEN_PIPE = 141


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``spotlake`` command; returns its exit code (see ``spotlake --help``)."""
    try:
        code = _main(argv)
        sys.stdout.flush()  # here, not at interpreter exit, so a closed pipe is caught below
    except BrokenPipeError:
        # The reader went away (``spotlake status --json | head``): stop quietly.
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    return code


def _silence_stdout() -> None:
    """Point stdout (and stderr when it is the same pipe, ``2>&1 | head``) at /dev/null, so the
    flush at interpreter exit does not fail again with "Exception ignored ... BrokenPipeError"."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        out = sys.stdout.fileno()
        targets = [out]
        with contextlib.suppress(OSError, ValueError):
            err = sys.stderr.fileno()
            if os.path.samestat(os.fstat(out), os.fstat(err)):
                targets.append(err)
        for fd in targets:
            os.dup2(devnull, fd)
    except (OSError, ValueError):  # a stream without a descriptor (a test's capture): nothing to do
        pass
    finally:
        os.close(devnull)


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # Scrub secrets by their shape from every record the handlers print: ours and third-party
    # loggers' alike (httpx, httpcore, azure, botocore log URLs, headers and bodies).
    from spotlake.redact import scrub_handlers

    scrub_handlers(logging.getLogger())
    try:
        code: int = args.func(args)
    except BrokenPipeError:
        raise
    except LockedError as exc:
        print(f"spotlake: {scrub(str(exc))}", file=sys.stderr)
        return EXIT_LOCKED
    except (ConfigError, PlanError) as exc:
        print(f"spotlake: {scrub(str(exc))}", file=sys.stderr)
        return EXIT_USAGE
    except SpotlakeError as exc:
        print(f"spotlake: {type(exc).__name__}: {scrub(str(exc))}", file=sys.stderr)
        return EXIT_FAILED
    except Exception as exc:
        if type(exc).__module__.startswith("botocore"):
            # No region, no credentials, a bad profile: AWS configuration, not a spotlake failure.
            print(f"spotlake: AWS configuration: {type(exc).__name__}: {scrub(str(exc))}", file=sys.stderr)
            return EXIT_USAGE
        if args.verbose:  # the traceback, scrubbed like every other output
            print(scrub(traceback.format_exc()), file=sys.stderr, end="")
        print(
            f"spotlake: unexpected {type(exc).__name__}: {scrub(str(exc))}"
            " (run with --verbose for the traceback)",
            file=sys.stderr,
        )
        return EXIT_FAILED
    return code
