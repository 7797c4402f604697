"""``spotlake simulate``: the contenders on a spot trace and a workload, compared in one table.

::

    spotlake simulate --trace (FILE|DIR | generated | store) [--store DIR] [--start T] [--end T]
                      [--seed N] [--pools N] [--days D]
                      [--workload (week|deadline)] [--jobs N] [--work H] [--deadline H] [--overhead H]
                      [--policies NAME,NAME,...] [--json] [--plot OUT.png]

The trace is a spot-traces JSON file or a directory of them, ``generated`` (a seeded synthetic
market of ``--pools`` pools over ``--days``), or ``store`` (the history the store ``--store``
collected, between ``--start`` and ``--end``). The workload is ``week`` (``--jobs`` seeded jobs
submitted over the trace's span but its last day, or its first half for a trace of two days or
less) or ``deadline`` (one job of ``--work`` hours due
``--deadline`` hours after it starts, restarting in ``--overhead`` hours). The table is printed
(``--json``: its rows); ``--plot`` writes cost against misses as a PNG (needs ``spotlake[plot]``).
Progress goes to stderr, one line per contender. Exit 2 for bad arguments or data.
"""

from __future__ import annotations

import argparse
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from spotlake.cli._args import positive_float
from spotlake.errors import ConfigError

if TYPE_CHECKING:
    from spotlake.compute.simulate import Comparison, Trace, Workload

__all__ = ["add_simulate_parser"]


def _trace(args: argparse.Namespace) -> Trace:
    from spotlake.compute.simulate import generate_trace, load_spot_traces, trace_from_store

    if args.trace == "generated":
        return generate_trace(seed=args.seed, pools=args.pools, days=args.days)
    if args.trace == "store":
        from spotlake.cli import _parse_at
        from spotlake.storage import open_store

        start = _parse_at(args.start) if args.start else None
        end = _parse_at(args.end) if args.end else None
        return trace_from_store(open_store(args.store or args.default_store), start=start, end=end)
    return load_spot_traces(args.trace)


def _workload(args: argparse.Namespace, trace: Trace) -> Workload:
    from spotlake.compute.simulate import deadline_job, generate_workload

    if args.workload == "deadline":
        first = next(iter(trace.spot))
        return deadline_job(
            work=timedelta(hours=args.work),
            deadline=timedelta(hours=args.deadline),
            restart_overhead=timedelta(hours=args.overhead),
            instance_type=first.instance_type,
        )
    span = trace.end - trace.start
    span = span - timedelta(days=1) if span > timedelta(days=2) else span / 2
    types = sorted({p.instance_type for p in trace.spot}) if len(trace.spot) < 8 else []
    return generate_workload(
        seed=args.seed, jobs=args.jobs, span=span, start=trace.start, instance_types=types
    )


def _cmd_simulate(args: argparse.Namespace) -> int:
    from spotlake.cli import _emit
    from spotlake.compute.simulate import compare, contenders
    from spotlake.progress import Progress, ProgressBoard

    _check(args)
    names = [n.strip() for n in args.policies.split(",") if n.strip()] if args.policies else None
    chosen = contenders(names)  # an unknown name is a ConfigError: exit 2
    trace = _trace(args)
    workload = _workload(args, trace)
    total = (trace.end - trace.start).total_seconds()
    board = ProgressBoard(quiet=args.quiet)
    bars: dict[str, Progress] = {}

    def progress(name: str, now: datetime) -> None:
        if name not in bars:
            for bar in bars.values():
                bar.close()
            bars[name] = board.bar(f"simulate {name}")
        done = int(100 * (now - trace.start).total_seconds() / total) if total else 100
        bars[name](min(done, 100), 100)

    comparison = compare(trace, workload, chosen, progress=progress)
    for bar in bars.values():
        bar.close()
    if args.plot:
        from spotlake.compute.simulate.plot import cost_vs_misses

        cost_vs_misses(comparison, args.plot)
    _emit(args, _payload(comparison), _table(comparison) + (f"\nplot: {args.plot}" if args.plot else ""))
    return 0


def _payload(comparison: Comparison) -> dict[str, Any]:
    return {
        "trace": comparison.trace,
        "workload": comparison.workload,
        "on_demand_cost": comparison.on_demand_cost,
        "rows": list(comparison.rows()),
    }


def _table(comparison: Comparison) -> str:
    head = (
        f"{'contender':22} {'cost USD':>10} {'vs OD':>6} {'score':>7} {'misses':>6} {'unfin':>5} "
        f"{'intr':>5} {'fallb':>5} {'spot':>5}"
    )
    lines = [f"{comparison.workload} on {comparison.trace}", head, "-" * len(head)]
    for r in comparison.rows():
        vs = f"{r.vs_on_demand:.3f}" if r.vs_on_demand is not None else "-"
        spot = f"{r.spot_share:.2f}" if r.spot_share is not None else "-"
        lines.append(
            f"{r.contender:22} {r.cost:10.4g} {vs:>6} {r.score:7.1f} {r.misses:6d} {r.unfinished:5d} "
            f"{r.interruptions:5d} {r.fallbacks:5d} {spot:>5}"
        )
    lines.append("score: 0 = all on-demand, 100 = the hindsight optimum (read it with the misses)")
    return "\n".join(lines)


def add_simulate_parser(sub: Any, common: argparse.ArgumentParser, default_store: str) -> None:
    from spotlake.compute.simulate import CONTENDERS

    p = sub.add_parser(
        "simulate",
        parents=[common],
        help="compare allocation policies on a spot trace and a workload (simulated time)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--trace",
        required=True,
        help="a spot-traces JSON file or directory, 'generated', or 'store' (with --store)",
    )
    p.add_argument("--store", default=None, help=f"with --trace store: the store (default {default_store})")
    p.add_argument("--start", help="with --trace store: from this time, ISO 8601 UTC")
    p.add_argument("--end", help="with --trace store: up to this time, ISO 8601 UTC")
    p.add_argument("--seed", type=int, default=1, help="seed of the generated trace and workload (default 1)")
    p.add_argument("--pools", type=int, default=50, help="pools of a generated trace (default 50)")
    p.add_argument("--days", type=positive_float, default=7.0, help="days of a generated trace (default 7)")
    p.add_argument("--workload", choices=("week", "deadline"), default="week", help="default week")
    p.add_argument("--jobs", type=int, default=500, help="jobs of the week workload (default 500)")
    p.add_argument(
        "--work", type=positive_float, default=48.0, help="deadline job: hours of work (default 48)"
    )
    p.add_argument("--deadline", type=positive_float, default=52.0, help="deadline job: hours (default 52)")
    p.add_argument("--overhead", type=positive_float, default=0.05, help="deadline job: restart hours (0.05)")
    p.add_argument("--policies", help=f"contenders, comma-separated (default all: {', '.join(CONTENDERS)})")
    p.add_argument("--plot", metavar="OUT.png", help="write cost against misses as a PNG")
    p.set_defaults(func=_cmd_simulate, default_store=default_store)


def _check(args: argparse.Namespace) -> None:
    if args.trace != "store" and (args.start or args.end):
        raise ConfigError("--start and --end go with --trace store")
