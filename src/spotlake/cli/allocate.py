"""``spotlake allocate``: the ranked decision for a capacity request, and (``--launch``) carrying it out.

::

    spotlake allocate (--store DIR|s3://B/P | --offers CSV) (--vcpus N | --count N | --memory GIB)
                      [--preset NAME] [--task-class critical|normal|batch] [--max-price USD]
                      [--region R ...] [--zone Z ...] [--type T ...] [--family F ...]
                      [--min-vcpus N] [--min-memory GIB] [--gpus N] [--max-per-pool N]
                      [--at T] [--max-age MINUTES] [--limit N] [--json]
                      [--launch (--image-id AMI | --launch-template ID) [--subnet ZONE=SUBNET ...]]

A dry run by default: the plan, the best candidates of each capacity type with the reason for
each, and how many offers each filter dropped. ``--launch`` carries the plan out on EC2 with the
caller's AWS credentials (AWS offers only). Exit 2 when the request cannot be served (nothing
fits, every offer above the max price, an unknown preset), with the reason, and nothing is
launched; exit 1 when a launch got less than the plan (fallbacks ran out).
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from spotlake.cli._args import positive_float
from spotlake.errors import ConfigError

if TYPE_CHECKING:
    from spotlake.compute.allocator import Allocation
    from spotlake.compute.offers import OfferSet
    from spotlake.compute.report import CandidateLine, DecisionReport

__all__ = ["add_allocate_parser"]

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_FAILED = 1


def _offers(args: argparse.Namespace) -> OfferSet:
    from spotlake.compute.offers import AwsStoreOffers, CatalogOffers, StoreOffers
    from spotlake.model import Cloud
    from spotlake.storage import open_store

    if args.offers:
        return CatalogOffers(args.offers, regions=set(args.region) if args.region else None).offers()
    store = open_store(args.store or args.default_store, cloud=args.cloud)
    if Cloud(args.cloud) is Cloud.AWS:
        return AwsStoreOffers(store, at=args.at_time).offers()
    return StoreOffers(store, at=args.at_time).offers()


def _request(args: argparse.Namespace) -> Any:
    from spotlake.compute.values import CapacityRequest

    return CapacityRequest(
        count=args.count,
        vcpus=args.vcpus,
        memory_gib=args.memory,
        min_vcpus=args.min_vcpus,
        min_memory_gib=args.min_memory,
        gpus=args.gpus,
        instance_types=args.type,
        families=args.family,
        regions=args.region,
        zones=args.zone,
        task_class=args.task_class,
        max_price=args.max_price,
        max_per_pool=args.max_per_pool,
        name="spotlake allocate",
    )


def _cmd_allocate(args: argparse.Namespace) -> int:
    from spotlake.cli import _emit, _parse_at
    from spotlake.compute.decide import decide
    from spotlake.compute.policy.presets import default_filters, preset
    from spotlake.compute.report import decision_report

    policy = preset(args.preset)  # an unknown preset is a ConfigError: exit 2
    policy = policy.with_filters(default_filters(timedelta(minutes=args.max_age)))
    request = _request(args)
    args.at_time = _parse_at(args.at) if args.at else None
    offers = _offers(args)
    now = args.at_time or datetime.now(UTC)
    if not args.launch:
        decision = decide(offers.offers, request, policy, now=now)
        report = decision_report(decision, source=offers.source, warnings=offers.warnings, limit=args.limit)
        _emit(args, report, _decision_text(report))
        return EXIT_OK if report.ok else EXIT_USAGE
    return _launch(args, offers, request, policy)


def _launch(args: argparse.Namespace, offers: OfferSet, request: Any, policy: Any) -> int:
    from spotlake.cli import _emit
    from spotlake.clock import SystemClock
    from spotlake.compute.allocator import Allocator
    from spotlake.compute.launch.ec2 import Ec2Launcher, LaunchTemplate
    from spotlake.compute.report import decision_report
    from spotlake.compute.values import Cloud

    if args.at:
        raise ConfigError("--launch decides now: drop --at")
    aws = [o for o in offers.offers if o.pool.cloud is Cloud.AWS]
    if not aws:
        raise ConfigError(f"--launch works on EC2 and {offers.source} holds no AWS offers (a dry run works)")
    if not args.image_id and not args.launch_template:
        raise ConfigError("--launch needs --image-id AMI or --launch-template ID")
    subnets = dict(_pair(s) for s in args.subnet or ())
    launcher = Ec2Launcher(
        image_id=args.image_id,
        launch_template=LaunchTemplate(id=args.launch_template) if args.launch_template else None,
        subnets=subnets,
    )
    allocator = Allocator(launcher, clock=SystemClock(), policy=policy)
    decision = allocator.decide(aws, request)
    report = decision_report(decision, source=offers.source, warnings=offers.warnings, limit=args.limit)
    if not report.ok:  # nothing is launched for a request that cannot be served whole
        _emit(args, report, _decision_text(report))
        return EXIT_USAGE
    allocation = allocator.carry_out(decision)
    _emit(
        args, allocation_summary(allocation), _decision_text(report) + "\n\n" + _allocation_text(allocation)
    )
    return EXIT_OK if allocation.complete else EXIT_FAILED


def _pair(text: str) -> tuple[str, str]:
    zone, sep, subnet = text.partition("=")
    if not sep or not zone or not subnet:
        raise ConfigError(f"--subnet takes ZONE=SUBNET (e.g. us-east-1a=subnet-0abc), got {text!r}")
    return zone, subnet


def allocation_summary(allocation: Allocation) -> dict[str, Any]:
    """What ``--launch --json`` prints: the instances and fallbacks, typed values serialised."""
    from spotlake.serde import dump

    return {
        "id": allocation.id,
        "complete": allocation.complete,
        "unfilled": allocation.unfilled,
        "spot_share": allocation.spot_share,
        "hourly_cost": allocation.hourly_cost,
        "instances": [
            {
                "id": p.instance.id,
                "pool": str(p.instance.offer.pool),
                "capacity_type": p.instance.capacity_type.value,
                "requested": p.requested.value,
                "price": p.instance.price,
                "reason": p.reason,
            }
            for p in allocation.placements
        ],
        "fallbacks": [dump(e) for e in allocation.fallbacks],
        "notes": list(allocation.notes),
    }


# --- text -----------------------------------------------------------------------------------------


def _candidate_line(c: CandidateLine) -> str:
    score = c.score or "-"
    return (
        f"  {c.rank:>3}  {c.pool:<42} {c.price:>9.4f} {c.price_per_unit:>9.4f}  {score:>5}  "
        f"{c.eviction or '-':>6}  {c.reason}"
    )


def _decision_text(r: DecisionReport) -> str:
    lines = [
        f"request: {r.amount:g} {r.unit}, task class {r.task_class}, policy {r.policy} ({r.mix}); "
        f"at {r.at:%Y-%m-%d %H:%M} UTC",
        f"offers:  {r.offers} from {r.source}",
        f"split:   {r.spot_units:g} spot + {r.on_demand_units:g} on-demand {r.unit}",
    ]
    if r.plan:
        lines.append(f"plan ({r.hourly_cost:.4f} $/h):")
        for s in r.plan:
            lines.append(
                f"  {s.role:<9} {s.count:>4} x {s.instance_type:<20} {s.zone or s.region:<16} "
                f"{s.price:>9.4f} $/h  (rank {s.rank})"
            )
    if r.problem:
        lines.append(f"cannot serve the request: {r.problem}")
    header = (
        f"  {'rank':>4} {'pool':<42} {'$/h':>9} {'$/' + _unit_name(r):>9}  {'score':>5}  {'evict':>6}  reason"
    )
    for title, rows, more in (("spot", r.spot, r.more_spot), ("on-demand", r.on_demand, r.more_on_demand)):
        if rows:
            lines.append(f"{title} candidates:")
            lines.append(header)
            lines.extend(_candidate_line(c) for c in rows)
            if more:
                lines.append(f"  ... and {more} more")
    if r.dropped:
        lines.append("dropped:")
        lines.extend(f"  {n:>6}  {reason}" for reason, n in r.dropped.items())
    lines.extend(f"warning: {w}" for w in r.warnings)
    return "\n".join(lines)


def _unit_name(r: DecisionReport) -> str:
    return {"instances": "inst", "vcpus": "vCPU", "memory": "GiB"}[r.unit.value]


def _allocation_text(a: Allocation) -> str:
    lines = [
        f"launched ({a.id}): {len(a.placements)} instance(s), spot share {a.spot_share:.0%}, "
        f"{a.hourly_cost:.4f} $/h"
    ]
    lines.extend(f"  {i.id}  {i.capacity_type:<9} {i.offer.pool}  {i.price:.4f} $/h" for i in a.instances)
    lines.extend(
        f"  fallback: {e.capacity_type} {e.pool}: {e.failure} -> {e.action} ({e.detail})" for e in a.fallbacks
    )
    lines.extend(f"  note: {n}" for n in a.notes)
    if not a.complete:
        lines.append(f"  {a.unfilled:g} {a.request.unit} could not be launched")
    return "\n".join(lines)


# --- parser ---------------------------------------------------------------------------------------


def add_allocate_parser(sub: Any, common: argparse.ArgumentParser, default_store: str) -> None:
    from spotlake.compute.policy.presets import PRESETS
    from spotlake.compute.values import TaskClass

    p = sub.add_parser(
        "allocate",
        parents=[common],
        help="the ranked spot-first decision for a capacity request (a dry run unless --launch)",
    )
    src = p.add_mutually_exclusive_group()
    src.add_argument(
        "--store", default=None, help=f"a spotlake store (default {default_store}); --cloud picks the tree"
    )
    src.add_argument("--offers", help="a catalog CSV (SkyPilot format, e.g. aws_vms_catalog_us.csv)")
    p.add_argument(
        "--cloud",
        choices=("azure", "aws"),
        default="azure",
        help="with --store: whose offers (default: azure)",
    )
    how_much = p.add_mutually_exclusive_group(required=True)
    how_much.add_argument("--vcpus", type=int, help="total vCPUs")
    how_much.add_argument("--count", type=int, help="number of instances")
    how_much.add_argument("--memory", type=positive_float, help="total GiB of memory")
    p.add_argument("--preset", default="cost_optimized", help=f"one of {', '.join(PRESETS)}")
    p.add_argument("--task-class", default="normal", choices=[t.value for t in TaskClass])
    p.add_argument("--max-price", type=positive_float, help="USD per instance-hour, never exceeded")
    p.add_argument("--region", action="append", help="allowed region (repeatable)")
    p.add_argument("--zone", action="append", help="allowed zone (repeatable)")
    p.add_argument("--type", action="append", help="allowed instance type (repeatable)")
    p.add_argument("--family", action="append", help="allowed family, e.g. m5 (repeatable)")
    p.add_argument("--min-vcpus", type=int, default=1, help="vCPUs of every instance, at least")
    p.add_argument("--min-memory", type=float, default=0.0, help="GiB of every instance, at least")
    p.add_argument("--gpus", type=int, default=0, help="GPUs of every instance, at least")
    p.add_argument("--max-per-pool", type=int, help="instances from one pool, at most (diversification)")
    p.add_argument(
        "--at", help="decide as of this time, ISO 8601 UTC (default now; the store's data up to it)"
    )
    p.add_argument(
        "--max-age",
        type=positive_float,
        default=60.0,
        metavar="MINUTES",
        help="leave out data older than this",
    )
    p.add_argument("--limit", type=int, default=10, help="candidates listed per capacity type")
    p.add_argument("--launch", action="store_true", help="launch on EC2 with your AWS credentials")
    p.add_argument("--image-id", help="AMI to launch (with --launch)")
    p.add_argument("--launch-template", help="launch template id (with --launch)")
    p.add_argument("--subnet", action="append", metavar="ZONE=SUBNET", help="subnet per zone (repeatable)")
    p.set_defaults(func=_cmd_allocate, default_store=default_store)
