"""``spotlake collect aws``: one AWS collection cycle into the store's AWS tree.

::

    spotlake collect aws --regions us-east-1,us-west-2 [--store DIR|s3://...] [--profiles a,b,c]
                         [--types m5.large,...] [--at TIME] [--timestream [--timestream-layout aws]]
                         [--shard I/N | --shard auto/N] [--emulate SEED] [--json] [--quiet]

Credentials come from boto3's default chain (the environment, ``~/.aws``, an instance or task
role); ``--profiles`` names the ``~/.aws/config`` profiles of the accounts placement scores are
asked from, one account each, in order (docs/collectors.md, "AWS"). Every client honours the
standard endpoint configuration (``AWS_ENDPOINT_URL`` and the per-service variables).
``--emulate SEED`` collects from spotlake's offline AWS emulator instead (a seeded world of three
regions; no account needed), which is what ``make demo`` does.
``--shard I/N`` splits the placement-score queries over N workers (an AWS Batch array job:
``auto/N``), each asking through its own share of the accounts; the worker that completes the set
of parts commits the run (docs/operations.md, "Sharded collection").
Exit codes: 0 committed (or, for a shard, its part stored while others are missing), 3 committed
with failed queries, a source that failed for some region or undelivered sinks, 1 failed, 2 bad
arguments, 75 the run's lock is held (retry).
"""

from __future__ import annotations

import argparse
from datetime import timedelta
from typing import Any

from spotlake.cli._format import iso
from spotlake.errors import ConfigError

__all__ = ["add_collect_aws_parser"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_PARTIAL = 0, 1, 2, 3


def _names(text: str | None) -> tuple[str, ...]:
    return tuple(n.strip() for n in (text or "").split(",") if n.strip())


def _cmd_collect_aws(args: argparse.Namespace, *, run_time: Any, emit: Any) -> int:
    from spotlake.clock import FakeClock, SystemClock
    from spotlake.model import Cloud
    from spotlake.pipeline.aws import AwsAccess, AwsCycleOptions, run_aws_cycle
    from spotlake.pipeline.report import RunStatus
    from spotlake.pipeline.shards import Shard
    from spotlake.storage import open_store

    at = run_time(args.at, quiet=args.quiet)
    regions = _names(args.regions)
    shard = Shard.parse(args.shard) if args.shard is not None else None
    if args.emulate is not None:
        from spotlake.testing.aws.catalog import AwsCatalog
        from spotlake.testing.aws.emulator import AwsEmulator

        clock: Any = FakeClock(at)
        emulator = AwsEmulator(AwsCatalog.generate(args.emulate), clock=clock, seed=args.emulate)
        access = AwsAccess(
            regions=regions or emulator.regions,
            accounts=emulator.accounts,
            clients=emulator.clients,
            advisor_transport=emulator.advisor_transport(),
        )
    else:
        if not regions:
            raise ConfigError("collect aws: name the regions to collect, e.g. --regions us-east-1,us-west-2")
        clock = SystemClock()
        access = AwsAccess(regions=regions, accounts=_accounts(_names(args.profiles)))
    if shard is not None:  # enough accounts for N shards? (exit 2, before any call)
        shard.members(access.accounts, what="accounts", given="--profiles names")
    timeseries = None
    if args.timestream:
        from spotlake.storage.timestream import TimestreamSink

        timeseries = TimestreamSink(
            database=args.timestream_database, table=args.timestream_table, layout=args.timestream_layout
        )
    store = open_store(args.store, cloud=Cloud.AWS)
    report = run_aws_cycle(
        at,
        store=store,
        access=access,
        options=AwsCycleOptions(
            instance_types=_names(args.types),
            lock_timeout=args.lock_timeout,
            max_clock_skew=timedelta(minutes=args.max_clock_skew),
        ),
        timeseries=timeseries,
        clock=clock,
        shard=shard,
    )
    emit(args, report, _text(report, store=store.url))
    if report.status is RunStatus.FAILED:
        return EXIT_USAGE if report.error_type == "ConfigError" else EXIT_FAILED
    incomplete = any(r.failures for r in report.collectors.values())
    if report.status is RunStatus.COMMITTED and (report.failed_calls or report.delivery_error or incomplete):
        return EXIT_PARTIAL
    return EXIT_OK


def _accounts(profiles: tuple[str, ...]) -> tuple[Any, ...]:
    import boto3

    from spotlake.collect.aws import AwsAccount

    if not profiles:
        return (AwsAccount.from_session("default", boto3.session.Session()),)
    return tuple(AwsAccount.from_session(p, boto3.session.Session(profile_name=p)) for p in profiles)


def _text(report: Any, *, store: str) -> str:
    from spotlake.model import Source
    from spotlake.pipeline.report import RunStatus

    when = iso(report.at)
    if report.status is RunStatus.FAILED:
        return f"AWS run {when} FAILED: {report.error_type}: {report.error}"
    if report.status is RunStatus.SKIPPED:
        return f"AWS run {when} already committed; nothing to do"
    if report.status is RunStatus.PENDING and report.shard is not None:
        part = report.collector(Source.AWS_SPS)
        return (
            f"AWS run {when} shard {report.shard.index}/{report.shard.count}: "
            f"{part.succeeded if part else 0}/{part.planned if part else 0} placement-score queries ok, "
            f"part stored; waiting for shards {list(report.shard.missing)} (the last one to finish "
            "commits the run)"
        )
    sps, spot, types = (
        report.collector(s) for s in (Source.AWS_SPS, Source.AWS_SPOT_PRICES, Source.AWS_TYPES)
    )
    lines = [
        f"AWS run {when}  target capacity {report.desired_count}"
        + ("  (new day: queries re-planned, on-demand prices fetched)" if report.new_day else ""),
        f"  offerings: {types.rows if types else 0} (type, zone) rows; "
        f"spot prices: {spot.rows if spot else 0}",
        f"  placement scores: {sps.succeeded if sps else 0}/{sps.planned if sps else 0} queries ok, "
        f"{sps.rows if sps else 0} scores",
    ]
    if report.scoring is not None:
        s = report.scoring
        lines.append(
            f"  merged rows: {s.snapshot_rows}; changes: {s.new} new, {s.changed} changed, "
            f"{s.ceased} ceased, {s.unchanged} unchanged"
        )
    lines.append(f"  state {report.state_version} in {store}")
    if report.shard is not None and report.shard.finalised:
        lines.append(f"  merged {report.shard.count} shard parts; finalised by shard {report.shard.index}")
    if report.failed_calls:
        lines.append(
            f"  WARNING: {report.failed_calls} queries failed; the scores of their {report.unknown.count}"
            " (region, type) pairs are unknown this run (see --json for reasons)"
        )
    for source, collected in sorted(report.collectors.items()):
        if collected.failures and source is not Source.AWS_SPS:
            lines.append(
                f"  WARNING: {source}: {collected.failed} of {collected.planned} regions failed (their "
                f"last known values are kept; first: {collected.failures[0]})"
            )
    if report.delivery_error:
        lines.append(f"  WARNING: committed, but the sinks were not fed: {report.delivery_error}")
    return "\n".join(lines)


def add_collect_aws_parser(
    collect_sub: Any, common: argparse.ArgumentParser, default_store: str, *, run_time: Any, emit: Any
) -> None:
    """Register ``collect aws`` (``run_time``/``emit``: the CLI's run-time parser and printer)."""
    aws = collect_sub.add_parser(
        "aws", parents=[common], help="collect AWS spot data into the store's aws/ tree", description=__doc__
    )
    aws.add_argument("--at", help="run time, ISO 8601 UTC (default: now), snapped down to the 10-minute grid")
    aws.add_argument(
        "--store", default=default_store, help="local directory or s3://bucket/prefix (AWS data: its aws/)"
    )
    aws.add_argument("--regions", help="comma-separated regions to collect (required unless --emulate)")
    aws.add_argument(
        "--profiles",
        help="comma-separated AWS profiles, one placement-score account each (default: the default chain)",
    )
    aws.add_argument("--types", help="comma-separated instance types to score (default: every type offered)")
    aws.add_argument("--emulate", type=int, metavar="SEED", help="collect from the offline AWS emulator")
    aws.add_argument(
        "--shard",
        metavar="I/N",
        help="send placement-score shard I of N through every N-th account (0-based; auto/N reads "
        "AWS_BATCH_JOB_ARRAY_INDEX); the worker that completes the set of parts commits the run",
    )
    aws.add_argument("--timestream", action="store_true", help="write the changes to Amazon Timestream")
    aws.add_argument("--timestream-database", default="spotlake", help="Timestream database")
    aws.add_argument("--timestream-table", default="aws", help="Timestream table")
    aws.add_argument(
        "--timestream-layout",
        choices=("spotlake", "aws"),
        default="spotlake",
        help="record layout: spotlake's, or the original deployment's AWS table",
    )
    aws.add_argument("--lock-timeout", type=float, default=0.0, help="seconds to wait for another AWS run")
    aws.add_argument(
        "--max-clock-skew", type=int, default=15, metavar="MINUTES", help="refuse run times this far ahead"
    )
    aws.set_defaults(func=lambda args: _cmd_collect_aws(args, run_time=run_time, emit=emit))
