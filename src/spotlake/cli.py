"""The ``spotlake`` command: a thin face over the library.

::

    spotlake collect azure [--at T] [--store DIR|s3://B/P] [--endpoint URL] [--timestream] [--cloudwatch]
                           [--shard I/N | --shard auto/N]
    spotlake plan (--catalog CSV | --pairs CSV | --seed N [--regions N --sizes N --layout L])
    spotlake status [--store ...]
    spotlake show [--store ...] [--changes] [--at T] [--limit N]

Every command takes ``--json`` (machine-readable stdout) and ``--quiet`` (no progress on stderr,
for cron). Exit codes: 0 done (or already done), 1 the run failed, 2 bad usage or configuration,
3 committed but some SPS calls failed (their pairs were not collected this run), 75 another run
holds the store's lock (try later; EX_TEMPFAIL). A shard worker (``--shard``) that stored its part
while other shards' parts are still missing exits 0 ("pending").
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from spotlake.errors import ConfigError, LockedError, SpotlakeError
from spotlake.model import DEFAULT_PLAN_SEARCH

__all__ = ["EXIT_FAILED", "EXIT_LOCKED", "EXIT_OK", "EXIT_PARTIAL", "EXIT_USAGE", "main"]

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


def _parse_at(text: str | None) -> datetime:
    if not text:
        return datetime.now(UTC)
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ConfigError(f"--at {text!r} is not an ISO 8601 time (e.g. 2026-11-24T12:10Z)") from exc
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _emit(args: argparse.Namespace, payload: Any, text: str) -> None:
    if args.json:
        print(json.dumps(payload, indent=2, default=str))
    else:
        print(text)


# --- collect --------------------------------------------------------------------------------


def _cmd_collect(args: argparse.Namespace) -> int:
    from spotlake.collect.auth import AzureCredentials, slack_webhook
    from spotlake.notify import SlackNotifier
    from spotlake.pipeline import AzureAccess, CycleOptions, Shard, SnapshotWriter, run_cycle
    from spotlake.progress import ProgressBoard
    from spotlake.storage import open_store

    at = _parse_at(args.at)
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
        # deliver the requests to --endpoint (see spotlake.testing.redirect for why).
        from spotlake.testing.redirect import RedirectTransport, redirect_azure_transport

        azure_transport = redirect_azure_transport(args.endpoint)
        access = AzureAccess(
            credentials=credentials,
            transport=RedirectTransport(args.endpoint),
            azure_transport=azure_transport,
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
                zonal=not args.regional, lock_timeout=args.lock_timeout, plan_search=args.plan_search
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
    payload = report.to_json()
    if report.status == "failed":
        _emit(args, payload, f"run {report.at:%Y-%m-%d %H:%M} FAILED: {report.error_type}: {report.error}")
        return EXIT_FAILED
    if report.status == "skipped":
        text = f"run {report.at:%Y-%m-%d %H:%M} already committed; nothing to do"
        _emit(args, payload, text)
        return EXIT_OK
    if report.status == "pending":
        sps = payload["collectors"].get("sps", {})
        text = (
            f"run {report.at:%Y-%m-%d %H:%M} shard {report.shard['index']}/{report.shard['count']}: "
            f"{sps.get('succeeded', 0)}/{sps.get('planned', 0)} SPS calls ok, part stored; "
            f"waiting for shards {report.shard['missing']} (the last one to finish commits the run)"
        )
        _emit(args, payload, text)
        return EXIT_OK
    text = _summary_text(payload, store=args.store)
    if report.delivery_error:
        text += f"\n  WARNING: committed, but the sinks were not fed: {report.delivery_error}"
    _emit(args, payload, text)
    return EXIT_PARTIAL if report.failed_calls or report.delivery_error else EXIT_OK


def _summary_text(payload: dict[str, Any], *, store: str) -> str:
    plan = payload.get("plan", {})
    scoring = payload.get("scoring", {})
    sps = payload.get("collectors", {}).get("sps", {})
    prices = payload.get("collectors", {}).get("prices", {})
    lines = [
        f"run {payload['at']}  desired count {payload['desired_count']}"
        + ("  (new day: plan rebuilt)" if payload.get("new_day") else ""),
        f"  prices: {prices.get('rows', 0)} (region, size) rows from {prices.get('succeeded', 0)} pages",
        f"  SPS: {sps.get('succeeded', 0)}/{sps.get('planned', 0)} calls ok"
        f" (plan {plan.get('calls', '?')} calls, lower bound {plan.get('lower_bound', '?')},"
        f" ratio {plan.get('ratio', 0):.3f}), {sps.get('rows', 0)} scores",
        f"  merged rows: {scoring.get('snapshot_rows', 0)}; changes: {scoring.get('new', 0)} new,"
        f" {scoring.get('changed', 0)} changed, {scoring.get('ceased', 0)} ceased,"
        f" {scoring.get('unchanged', 0)} unchanged",
        f"  state {payload.get('state_version')} in {store}",
    ]
    shard = payload.get("shard") or {}
    if shard.get("finalised"):
        lines.append(f"  merged {shard['count']} shard parts; finalised by shard {shard['index']}")
    if payload.get("failed_calls"):
        lines.append(f"  WARNING: {payload['failed_calls']} SPS calls failed; see --json for reasons")
    return "\n".join(lines)


# --- plan -----------------------------------------------------------------------------------


def _cmd_plan(args: argparse.Namespace) -> int:
    from spotlake.progress import Progress
    from spotlake.scoring.planner import format_summary, load_pairs, plan_calls, plan_summary

    if args.catalog or args.pairs:
        pairs = load_pairs(args.catalog or args.pairs)
        what = str(args.catalog or args.pairs)
    else:
        from spotlake.testing.world import World

        world = World.generate(args.seed, n_regions=args.regions, n_sizes=args.sizes, layout=args.layout)
        pairs = world.support_pairs()
        what = f"emulator world seed={args.seed} {args.regions} regions x {args.sizes} sizes ({args.layout})"
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
    from spotlake.pipeline import pending_runs
    from spotlake.storage import open_store

    store = open_store(args.store)
    state = store.read_state(frames=False)
    pending = pending_runs(store)
    shard_ledgers = {name: doc for name, doc in state.docs.items() if name.startswith("quota.shard-")}
    docs = state.docs
    last = docs.get("last_run", {})
    rotation = docs.get("rotation", {})
    quota = docs.get("quota", {})
    plan = docs.get("plan", {})
    payload = {
        "store": args.store,
        "state_version": state.version,
        "rotation": rotation,
        "plan": {"date": plan.get("date"), **(plan.get("plan", {}).get("report", {}))},
        "quota": quota,
        "last_run": {k: v for k, v in last.items() if k != "report"},
        "shard_quota": shard_ledgers,
        "pending_shards": [p.to_json() for p in pending],
    }
    last_at = str(last.get("at") or "")[:16]  # minutes, like PendingRun.at
    pending_lines = [
        f"sharded run {p.at} not committed: parts of shards {list(p.present)} of {p.count} stored,"
        + (
            f" missing {list(p.missing)} (rerun them: collect azure --at {p.at} --shard I/{p.count})"
            if p.at > last_at
            else " older than the last committed run, so never committed (the next sharded commit removes it)"
        )
        for p in pending
    ]
    if state.version is None:
        _emit(args, payload, "\n".join([f"{args.store}: empty store (no run committed yet)", *pending_lines]))
        return EXIT_OK
    report = last.get("report", {})
    lines = [
        f"store {args.store}  state {state.version}",
        f"last run {last.get('at')}  status {last.get('status')}  desired count {last.get('desired_count')}",
        f"rotation: next count {_next_count(rotation)}, day {rotation.get('day')},"
        f" failed attempts {rotation.get('attempts', 0)}, counts skipped {rotation.get('skipped', 0)}",
        f"learned invalid: {len(rotation.get('invalid_regions', []))} regions,"
        f" {len(rotation.get('invalid_sizes', []))} sizes",
        f"plan for {plan.get('date')}: {payload['plan'].get('calls')} calls"
        f" (lower bound {payload['plan'].get('lower_bound')})",
        _quota_line(quota),
        *(f"{name}: " + _quota_line(doc) for name, doc in sorted(shard_ledgers.items())),
        f"last run changes: {report.get('scoring', {}).get('new', 0)} new,"
        f" {report.get('scoring', {}).get('changed', 0)} changed,"
        f" {report.get('scoring', {}).get('ceased', 0)} ceased",
        *pending_lines,
    ]
    _emit(args, payload, "\n".join(lines))
    return EXIT_OK


def _quota_line(doc: dict[str, Any]) -> str:
    if not doc:
        return "quota: no SPS calls recorded yet"
    from spotlake.collect.quota import QuotaLedger

    snap = QuotaLedger.from_json(doc).snapshot(datetime.now(UTC))
    free = (
        f", next slot frees at {snap.next_free_at:%H:%M} UTC"
        if snap.capacity == 0 and snap.next_free_at
        else ""
    )
    return (
        f"quota: {snap.calls_in_window} calls in the current window over {snap.slots} slots"
        f" (budget {snap.budget} per {snap.window_seconds / 60:.0f} min each); capacity now"
        f" {snap.capacity} calls, {snap.exhausted_slots} slots marked exhausted{free}"
    )


def _next_count(rotation: dict[str, Any]) -> object:
    """The count the next run collects: the rotation's next one, or the first on a new UTC day."""
    counts, index = rotation.get("counts") or [], rotation.get("index", 0)
    if counts and rotation.get("day") != datetime.now(UTC).date().isoformat():
        return f"{counts[0]} (new UTC day)"
    return counts[index] if 0 <= index < len(counts) else "?"


def _cmd_show(args: argparse.Namespace) -> int:
    from spotlake.storage import FrameKind, open_store

    store = open_store(args.store)
    kind: FrameKind = "changes" if args.changes else "merged"
    frame = store.read_frame(kind=kind, at=_parse_at(args.at)) if args.at else store.latest(kind)
    if frame is None:
        _emit(args, {"rows": []}, f"no {kind} data in {args.store} yet")
        return EXIT_OK
    if args.where:
        for clause in args.where:
            col, _, value = clause.partition("=")
            if col not in frame.columns:
                raise ConfigError(f"--where {clause!r}: no column {col!r}; columns: {list(frame.columns)}")
            frame = frame[frame[col].astype("string") == value]
    shown = frame.head(args.limit)
    if args.json:
        print(shown.to_json(orient="records", date_format="iso", indent=2))
    else:
        with pd.option_context("display.width", 200, "display.max_columns", 30):
            print(shown.to_string(index=False))
        print(f"({len(shown)} of {len(frame)} rows)")
    return EXIT_OK


# --- parser ---------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    common.add_argument("--quiet", "-q", action="store_true", help="no progress output (for cron)")
    common.add_argument("--verbose", "-v", action="store_true", help="log details to stderr")

    parser = argparse.ArgumentParser(prog="spotlake", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    collect = sub.add_parser("collect", help="run one collection cycle")
    collect_sub = collect.add_subparsers(dest="provider", required=True)
    az = collect_sub.add_parser("azure", parents=[common], help="collect Azure spot data")
    az.add_argument("--at", help="run time, ISO 8601 UTC (default: now); minutes are the run's identity")
    az.add_argument("--store", default=DEFAULT_STORE, help="local directory or s3://bucket/prefix")
    az.add_argument(
        "--endpoint",
        help="send every Azure request to this base URL (the emulator, e.g. http://127.0.0.1:8080)",
    )
    az.add_argument("--credentials", choices=("env", "dynamodb"), default="env")
    az.add_argument("--dynamodb-table", default="AzureAuth")
    az.add_argument("--regional", action="store_true", help="regional SPS requests instead of zonal")
    az.add_argument("--timestream", action="store_true", help="write the changes to Amazon Timestream")
    az.add_argument("--timestream-database", default="spotlake")
    az.add_argument("--timestream-table", default="azure")
    az.add_argument("--timestream-layout", choices=("spotlake", "original"), default="spotlake")
    az.add_argument("--cloudwatch", action="store_true", help="per-run counts to CloudWatch")
    az.add_argument("--log-group", default="/spotlake/azure")
    az.add_argument("--metrics-namespace", default="spotlake")
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
        "--shard",
        metavar="I/N",
        help="collect SPS shard I of N (0-based; auto/N reads AWS_BATCH_JOB_ARRAY_INDEX); the worker that "
        "completes the set of parts commits the run (docs/operations.md, 'Sharded collection')",
    )
    az.set_defaults(func=_cmd_collect)

    plan = sub.add_parser("plan", parents=[common], help="plan SPS calls and print the summary")
    src = plan.add_mutually_exclusive_group()
    src.add_argument("--catalog", help="a SkyPilot-style catalog CSV (Region, InstanceType, SpotPrice)")
    src.add_argument("--pairs", help="a CSV with region,size columns")
    plan.add_argument("--seed", type=int, default=0, help="emulator world seed (without --catalog/--pairs)")
    plan.add_argument("--regions", type=int, default=60)
    plan.add_argument("--sizes", type=int, default=800)
    plan.add_argument("--layout", choices=("family", "family-holes", "uniform"), default="family")
    plan.add_argument("--max-regions", type=int, default=8)
    plan.add_argument("--max-sizes", type=int, default=5)
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
    status.add_argument("--store", default=DEFAULT_STORE)
    status.set_defaults(func=_cmd_status)

    show = sub.add_parser("show", parents=[common], help="the latest snapshot or changes")
    show.add_argument("--store", default=DEFAULT_STORE)
    show.add_argument("--changes", action="store_true", help="the changeset instead of the snapshot")
    show.add_argument("--at", help="a specific run time instead of the latest")
    show.add_argument("--where", action="append", help="filter COLUMN=VALUE (repeatable)")
    show.add_argument("--limit", type=int, default=20)
    show.set_defaults(func=_cmd_show)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        code: int = args.func(args)
    except LockedError as exc:
        print(f"spotlake: {exc}", file=sys.stderr)
        return EXIT_LOCKED
    except ConfigError as exc:
        print(f"spotlake: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except SpotlakeError as exc:
        print(f"spotlake: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except Exception as exc:
        if type(exc).__module__.startswith("botocore"):
            # No region, no credentials, a bad profile: AWS configuration, not a spotlake failure.
            print(f"spotlake: AWS configuration: {type(exc).__name__}: {exc}", file=sys.stderr)
            return EXIT_USAGE
        if args.verbose:
            raise
        print(
            f"spotlake: unexpected {type(exc).__name__}: {exc} (run with --verbose for the traceback)",
            file=sys.stderr,
        )
        return EXIT_FAILED
    return code


if __name__ == "__main__":
    raise SystemExit(main())
