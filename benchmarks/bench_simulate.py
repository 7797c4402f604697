"""Benchmark: the allocator simulator (``spotlake.compute.simulate``) on real and generated traces.

Part 1, the shared spot traces (``../shared/data/spot-traces/*.json``, the public "Can't Be Late"
traces; in a plain clone, where they are absent, the 200-tick excerpts committed in
``tests/fixtures/spot-traces/``). Each file is its own one-pool trace
(:func:`~spotlake.compute.simulate.load_spot_trace`) and runs the classic single-job deadline
setup (:func:`~spotlake.compute.simulate.deadline_job`): a 48-hour job pinned to the file's
instance type, deadlines 52 and 70 hours, restart overheads 0.02, 0.05 and 0.1 hours, continuous
checkpoints. A trace shorter than the longest deadline (the excerpts) gets the job scaled down:
work = 60 % of the trace's span, the deadlines scaled by the same factor (52/48 and 70/48 of the
work) and the restart overheads scaled by it too. Contenders: on-demand, greedy, uniform-progress,
spotlake-deadline, asg-like and skypilot-like, via :func:`~spotlake.compute.simulate.compare`.

Part 2, generated markets: :func:`~spotlake.compute.simulate.generate_trace` (50 pools, 7 days,
5-minute ticks) with :func:`~spotlake.compute.simulate.generate_workload` (500 jobs over 6 days)
for seeds 1..3, every contender (:data:`~spotlake.compute.simulate.CONTENDERS`), and seeds 4..10 with
the contenders the week's targets compare (on-demand, greedy, SkyPilot-like, ours), and ours taken
apart on seeds 1..3 (:func:`ablations`: without respot, and with SlackGuard in place of the
planner). The speed claim:
one :func:`~spotlake.compute.simulate.simulate` of spotlake-deadline on seed 1, median of 3 runs.

``python -m benchmarks --only simulate [--quick]``; quick mode runs part 1 with the 0.05 h overhead
only and without the traces of more than 5,000 ticks (the full 32 s preemption files: seconds per
run), and part 2 on one seed, 100 jobs, a 2-day trace (1 day of submissions), without the further
seeds.
"""

from __future__ import annotations

import statistics
import time
from collections import defaultdict
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any, Final

import attrs

from spotlake.compute.simulate import (
    CONTENDERS,
    OPTIMUM,
    ComparisonRow,
    SlackGuard,
    Trace,
    compare,
    contenders,
    deadline_job,
    generate_trace,
    generate_workload,
    load_spot_trace,
    simulate,
)
from spotlake.compute.simulate.workload import DEADLINE_JOB_DEADLINES, DEADLINE_JOB_OVERHEADS

ROOT: Final = Path(__file__).resolve().parents[1]
SHARED: Final = ROOT.parent / "shared" / "data" / "spot-traces"
EXCERPTS: Final = ROOT / "tests" / "fixtures" / "spot-traces"

OURS: Final = "spotlake-deadline"
UP: Final = "uniform-progress"
#: The contenders of the single-job deadline setup, in the order of its tables.
DEADLINE_CONTENDERS: Final = ("on-demand", "greedy", UP, OURS, "asg-like", "skypilot-like")
WORK: Final = timedelta(hours=48)
#: The excerpts' scaled job: this share of the trace's span.
SCALED_SHARE: Final = 0.6
#: Quick mode leaves out traces longer than this (the 32 s preemption files: seconds per run).
QUICK_MAX_TICKS: Final = 5_000

#: Seeds run beyond the targets' three (full mode only), with :data:`FURTHER_CONTENDERS`.
FURTHER_SEEDS: Final = tuple(range(4, 11))

TARGET_VS_ON_DEMAND: Final = 0.5
TARGET_SECONDS: Final = 10.0
_HOUR: Final = timedelta(hours=1)


def trace_source(directory: Path | None = None) -> tuple[Path, bool]:
    """The directory of spot traces to use and whether it is the shared data set (else the
    committed excerpts)."""
    if directory is not None:
        return directory, directory.resolve() == SHARED.resolve()
    if SHARED.is_dir() and any(SHARED.glob("*.json")):
        return SHARED, True
    return EXCERPTS, False


def _plain(row: ComparisonRow) -> dict[str, Any]:
    """A table row as JSON (the score unrounded: the targets compare it)."""
    out = attrs.asdict(row)
    for key, digits in (("cost", 4), ("vs_on_demand", 4), ("spot_share", 4), ("work_lost_h", 3)):
        if out[key] is not None:
            out[key] = round(out[key], digits)
    return out


def _hours(delta: timedelta) -> float:
    return round(delta / _HOUR, 4)


def _setups(
    trace: Trace, overheads: Sequence[timedelta]
) -> tuple[timedelta, list[timedelta], list[timedelta], float]:
    """The job's work, deadlines and restart overheads on ``trace`` and the scale applied (1.0: the
    classic setup; a trace shorter than the longest deadline gets the whole job scaled down)."""
    span = trace.end - trace.start
    if span >= max(DEADLINE_JOB_DEADLINES):
        return WORK, list(DEADLINE_JOB_DEADLINES), list(overheads), 1.0
    work = timedelta(seconds=round(span.total_seconds() * SCALED_SHARE))
    scale = work / WORK
    deadlines = [timedelta(seconds=round(d.total_seconds() * scale)) for d in DEADLINE_JOB_DEADLINES]
    scaled = [timedelta(seconds=max(1, round(o.total_seconds() * scale))) for o in overheads]
    return work, deadlines, scaled, scale


def _room_for_two_restarts(trace: Trace, work: timedelta, deadline: timedelta, overhead: timedelta) -> bool:
    """The deadline leaves the job, after its first start, slack for two switches (the notice
    plus a restart overhead each; continuous checkpoints lose no work)."""
    return deadline - work - overhead >= 2 * (trace.notice + overhead)


def deadline_setups(directory: Path, *, quick: bool) -> dict[str, Any]:
    """Part 1: every trace file of ``directory`` x deadlines x overheads, the deadline contenders
    compared on each. Quick: the middle overhead only, and no trace of more than
    :data:`QUICK_MAX_TICKS` ticks (the 32 s preemption files; their excerpts stay)."""
    overheads = (DEADLINE_JOB_OVERHEADS[1],) if quick else DEADLINE_JOB_OVERHEADS
    rows: list[dict[str, Any]] = []
    traces: list[dict[str, Any]] = []
    skipped: list[str] = []
    started = time.perf_counter()
    for path in sorted(directory.glob("*.json")):
        trace = load_spot_trace(path)
        if quick and trace.ticks > QUICK_MAX_TICKS:
            skipped.append(path.name)
            continue
        instance_type = next(iter(trace.spot)).instance_type
        work, deadlines, scaled, scale = _setups(trace, overheads)
        traces.append(
            {
                "trace": trace.name,
                "instance_type": instance_type,
                "step_s": int(trace.step.total_seconds()),
                "ticks": trace.ticks,
                "span_h": _hours(trace.end - trace.start),
                "work_h": _hours(work),
                "deadlines_h": [_hours(d) for d in deadlines],
                "overheads_h": [_hours(o) for o in scaled],
                "scale": round(scale, 6),
            }
        )
        for nominal, deadline in zip(DEADLINE_JOB_DEADLINES, deadlines, strict=True):
            for nominal_overhead, overhead in zip(overheads, scaled, strict=True):
                workload = deadline_job(
                    work=work, deadline=deadline, restart_overhead=overhead, instance_type=instance_type
                )
                t = time.perf_counter()
                result = compare(trace, workload, DEADLINE_CONTENDERS)
                seconds = time.perf_counter() - t
                setup = {
                    "trace": trace.name,
                    "nominal_deadline_h": _hours(nominal),
                    "deadline_h": _hours(deadline),
                    "nominal_overhead_h": _hours(nominal_overhead),
                    "overhead_h": _hours(overhead),
                    "work_h": _hours(work),
                    "room_for_two_restarts": _room_for_two_restarts(trace, work, deadline, overhead),
                    "seconds": round(seconds, 3),
                }
                rows.extend({**setup, **_plain(row)} for row in result.rows())
    return {
        "traces": traces,
        "overheads_h": [_hours(o) for o in overheads],
        "skipped": skipped,
        "rows": rows,
        "seconds": round(time.perf_counter() - started, 2),
    }


def _deadline_summary(part: dict[str, Any]) -> dict[str, Any]:
    """Per (trace, deadline): each contender's mean score over the overheads, its misses and the
    setups where ours scores at least Uniform Progress; per trace, the same count and ours' and
    Uniform Progress's mean score over all its setups (the trace's score); our misses in the setups
    with room for two restarts."""
    setups: dict[tuple[str, float], dict[float, dict[str, dict[str, Any]]]] = defaultdict(dict)
    for row in part["rows"]:
        by_overhead = setups[(row["trace"], row["nominal_deadline_h"])]
        by_overhead.setdefault(row["overhead_h"], {})[row["contender"]] = row
    table = []
    vs_up: dict[str, dict[str, Any]] = {}
    with_room = ours_missed_with_room = 0
    for (trace, deadline), by_overhead in setups.items():
        runs = list(by_overhead.values())
        wins = sum(r[OURS]["score"] >= r[UP]["score"] - 1e-9 for r in runs)
        table.append(
            {
                "trace": trace,
                "nominal_deadline_h": deadline,
                "score": {
                    c: round(statistics.fmean(r[c]["score"] for r in runs), 2)
                    for c in (*DEADLINE_CONTENDERS, OPTIMUM)
                },
                "misses": {c: sum(int(r[c]["misses"]) for r in runs) for c in DEADLINE_CONTENDERS},
                "ours_at_least_up": wins,
                "setups": len(runs),
            }
        )
        entry = vs_up.setdefault(trace, {"at_least_up": 0, "setups": 0, "ours": [], "up": []})
        entry["at_least_up"] += wins
        entry["setups"] += len(runs)
        entry["ours"] += [r[OURS]["score"] for r in runs]
        entry["up"] += [r[UP]["score"] for r in runs]
        for r in runs:
            if r[OURS]["room_for_two_restarts"]:
                with_room += 1
                ours_missed_with_room += int(r[OURS]["misses"]) > 0
    for entry in vs_up.values():
        entry["ours_mean"] = round(statistics.fmean(entry.pop("ours")), 3)
        entry["up_mean"] = round(statistics.fmean(entry.pop("up")), 3)
    return {
        "table": table,
        "ours_vs_up": vs_up,
        "setups": sum(len(v) for v in setups.values()),
        "setups_with_room": with_room,
        "ours_missed_with_room": ours_missed_with_room,
    }


def generated_runs(seeds: Sequence[int], *, jobs: int, days: int) -> dict[str, Any]:
    """Part 2: each seed's generated trace and workload, every contender compared."""
    out: list[dict[str, Any]] = []
    for seed in seeds:
        trace = generate_trace(seed=seed, days=days)
        workload = generate_workload(seed=seed, jobs=jobs, start=trace.start, span=timedelta(days=days - 1))
        steps: dict[str, int] = defaultdict(int)

        def count(name: str, _now: object, steps: dict[str, int] = steps) -> None:
            steps[name] += 1

        t = time.perf_counter()
        result = compare(trace, workload, CONTENDERS, progress=count)
        seconds = time.perf_counter() - t
        out.append(
            {
                "seed": seed,
                "trace": trace.name,
                "pools": len(trace.spot),
                "ticks": trace.ticks,
                "jobs": len(workload.jobs),
                "compare_seconds": round(seconds, 2),
                "steps": dict(steps),
                "rows": [_plain(r) for r in result.rows()],
            }
        )
    return {"seeds": out}


#: The contenders of the further seeds: the ones the week's targets compare.
FURTHER_CONTENDERS: Final = ("on-demand", "greedy", "skypilot-like", OURS)


def further_seeds(seeds: Sequence[int], *, jobs: int, days: int) -> list[dict[str, Any]]:
    """Part 2, more markets: the week's targets compare ours with greedy and SkyPilot-like on
    three seeds, where one job more or less decides them; these seeds say whether a ranking holds."""
    out = []
    for seed in seeds:
        trace = generate_trace(seed=seed, days=days)
        workload = generate_workload(seed=seed, jobs=jobs, start=trace.start, span=timedelta(days=days - 1))
        rows = [_plain(r) for r in compare(trace, workload, FURTHER_CONTENDERS).rows()]
        out.append({"seed": seed, "rows": rows})
    return out


#: The variants of :func:`ablations`, in the order of its table: ours, and ours with a piece taken away.
ABLATIONS: Final = ("ours", "without respot", "SlackGuard, without respot")


def ablations(seeds: Sequence[int], *, jobs: int, days: int) -> list[dict[str, Any]]:
    """Part 2, ours taken apart: ours as it is, without its respot rule, and with
    :class:`SlackGuard` (its own waiting rule) in place of the planner and without respot; each
    with its cost over the all-on-demand run's, misses and moves to cheaper spot."""
    (ours,) = contenders([OURS])
    (on_demand,) = contenders(["on-demand"])
    variants = dict(
        zip(
            ABLATIONS,
            (ours, attrs.evolve(ours, respot=None), attrs.evolve(ours, controller=SlackGuard(), respot=None)),
            strict=True,
        )
    )
    out = []
    for seed in seeds:
        trace = generate_trace(seed=seed, days=days)
        workload = generate_workload(seed=seed, jobs=jobs, start=trace.start, span=timedelta(days=days - 1))
        od = simulate(trace, workload, on_demand).cost
        runs = {name: simulate(trace, workload, c) for name, c in variants.items()}
        out.append(
            {
                "seed": seed,
                "variants": {
                    name: {"vs_on_demand": round(r.cost / od, 4), "misses": r.misses, "respots": r.respots}
                    for name, r in runs.items()
                },
            }
        )
    return out


def _ablation_markdown(part: list[dict[str, Any]]) -> list[str]:
    if not part:
        return []
    md = [
        "",
        "Ours taken apart (`vs OD` / misses, and moves to cheaper spot): without its respot rule "
        "(`attrs.evolve(ours, respot=None)`), and with `SlackGuard`'s own waiting rule in place of the "
        "planner, also without respot:",
        "",
        "| seed | " + " | ".join(ABLATIONS) + " |",
        "|---:|" + "---:|" * len(ABLATIONS),
    ]
    for s in part:
        cells = [
            f"{v['vs_on_demand']:.3f} / {v['misses']}" + (f" ({v['respots']} moves)" if v["respots"] else "")
            for v in (s["variants"][name] for name in ABLATIONS)
        ]
        md.append(f"| {s['seed']} | " + " | ".join(cells) + " |")
    return md


def time_simulate(seed: int, *, jobs: int, days: int, repeats: int = 3) -> dict[str, Any]:
    """The speed claim: one ``simulate`` of spotlake-deadline, median of ``repeats`` runs."""
    trace = generate_trace(seed=seed, days=days)
    workload = generate_workload(seed=seed, jobs=jobs, start=trace.start, span=timedelta(days=days - 1))
    (ours,) = contenders([OURS])
    samples = []
    for _ in range(repeats):
        t = time.perf_counter()
        simulate(trace, workload, ours)
        samples.append(time.perf_counter() - t)
    return {"seed": seed, "jobs": jobs, "days": days, "samples_s": [round(s, 3) for s in samples],
            "median_s": round(statistics.median(samples), 3)}  # fmt: skip


def _row(rows: list[dict[str, Any]], contender: str) -> dict[str, Any]:
    return next(r for r in rows if r["contender"] == contender)


def _fmt_cell(score: float, missed: int) -> str:
    return f"{score:.1f}" + (f" ({missed} miss)" if missed else "")


def _deadline_markdown(
    part: dict[str, Any], summary: dict[str, Any], *, shared: bool, where: Path
) -> list[str]:
    scaled = [t for t in part["traces"] if t["scale"] != 1.0]
    md = [
        "### 1. Single-job deadline setup on the spot traces",
        "",
        (
            f"Traces: the shared data set ({where}), each file its own one-pool trace."
            if shared
            else f"Traces: **the shared data set is absent: the committed 200-tick excerpts** ({where}), "
            "each file its own one-pool trace."
        ),
        "Job: 48 h of work pinned to the file's instance type, deadlines 52 h and 70 h, restart overheads "
        "0.02 / 0.05 / 0.1 h, continuous checkpoints.",
    ]
    if scaled:
        md.append(
            f"**Scaled down** on {len(scaled)} trace(s) shorter than 70 h: work = {SCALED_SHARE:.0%} of the "
            "trace's span, deadlines 52/48 and 70/48 of that work, restart overheads scaled by the same "
            "factor (the 2-minute notice and the tick are not): "
            + "; ".join(
                f"{t['trace']} ({t['span_h']:g} h span: {t['work_h']:g} h work, deadlines "
                f"{' / '.join(f'{d:g}' for d in t['deadlines_h'])} h, overheads "
                f"{' / '.join(f'{o:g}' for o in t['overheads_h'])} h)"
                for t in scaled
            )
            + ". The deadline column below says the nominal deadline."
        )
    if len(part["overheads_h"]) < len(DEADLINE_JOB_OVERHEADS) or part["skipped"]:
        md.append(
            f"Quick mode: overhead {' / '.join(f'{o:g}' for o in part['overheads_h'])} h only"
            + (f"; skipped the traces of more than {QUICK_MAX_TICKS:,} ticks ({', '.join(part['skipped'])})"
               if part["skipped"] else "")
            + "."
        )  # fmt: skip
    md += [
        f"{summary['setups']} setups x {len(DEADLINE_CONTENDERS)} contenders in {part['seconds']:.1f} s. "
        "Cells: normalised score (0 = all on-demand, 100 = hindsight optimum) averaged over the "
        "overheads, with deadline misses summed over them; the last column counts the setups where ours "
        "scores at least Uniform Progress (the target compares each trace's mean over all its "
        "setups). A run that misses may score above 100: waiting for spot "
        "costs nothing, so a contender that never falls back (asg-like, skypilot-like) can finish late, "
        "or not at all, for less than the optimum. Full rows per (trace, deadline, overhead): "
        "`report.json`.",
        "",
        "| trace | deadline | " + " | ".join(DEADLINE_CONTENDERS) + " | ours >= UP |",
        "|---|---:|" + "---:|" * len(DEADLINE_CONTENDERS) + "---:|",
    ]
    for entry in summary["table"]:
        cells = [_fmt_cell(entry["score"][c], entry["misses"][c]) for c in DEADLINE_CONTENDERS]
        wins = f"{entry['ours_at_least_up']}/{entry['setups']}"
        md.append(
            f"| {entry['trace']} | {entry['nominal_deadline_h']:g} h | " + " | ".join(cells) + f" | {wins} |"
        )
    md.append("")
    return md


def _generated_markdown(part: dict[str, Any], timing: dict[str, Any], *, jobs: int, days: int) -> list[str]:
    seeds = part["seeds"]
    first = seeds[0]
    md = [
        "### 2. Generated markets",
        "",
        f"`generate_trace(seed=s)`: {first['pools']} pools, {days} days, 5-minute ticks ({first['ticks']} "
        f"ticks); `generate_workload(seed=s, jobs={jobs}, span={days - 1} days)`; every contender. "
        "`vs OD`: cost over the all-on-demand run's; score: 0 = all on-demand, 100 = hindsight optimum.",
        "",
        f"Seed {first['seed']} ({first['compare_seconds']:.1f} s for the comparison):",
        "",
        "| contender | cost USD | vs OD | score | misses | unfinished | interruptions | fallbacks "
        "| spot share |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in first["rows"]:
        share = "" if r["spot_share"] is None else f"{r['spot_share']:.2f}"
        md.append(
            f"| {r['contender']} | {r['cost']:.2f} | {r['vs_on_demand']:.3f} | {r['score']:.1f} "
            f"| {r['misses']} | {r['unfinished']} | {r['interruptions']} | {r['fallbacks']} | {share} |"
        )
    md += [
        "",
        "Per seed (ours = spotlake-deadline; `vs OD` / misses):",
        "",
        "| seed | optimum | ours | ours score | greedy | skypilot-like | uniform-progress | compare s |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in seeds:
        rows = s["rows"]
        ours, opt = _row(rows, OURS), _row(rows, OPTIMUM)

        def pair(name: str, rows: list[dict[str, Any]] = rows) -> str:
            r = _row(rows, name)
            return f"{r['vs_on_demand']:.3f} / {r['misses']}"

        md.append(
            f"| {s['seed']} | {opt['vs_on_demand']:.3f} | {pair(OURS)} | {ours['score']:.1f} "
            f"| {pair('greedy')} | {pair('skypilot-like')} | {pair(UP)} | {s['compare_seconds']:.1f} |"
        )
    md += _further_markdown(part.get("further", []))
    md += _ablation_markdown(part.get("ablations", []))
    steps = first["steps"].get(OURS, 0)
    rate = steps / timing["median_s"] if timing["median_s"] else 0.0
    md += [
        "",
        f"Speed: one `simulate()` of spotlake-deadline on seed {timing['seed']} ({timing['jobs']} jobs, "
        f"{first['pools']} pools, {timing['days']} days): median {timing['median_s']:.2f} s of 3 "
        f"({', '.join(f'{x:.2f}' for x in timing['samples_s'])} s); {steps:,} simulated event times "
        f"(steps of the engine's loop), {rate:,.0f} per second. All {len(CONTENDERS)} contenders plus the "
        f"optimum on {len(seeds)} seed(s): {sum(s['compare_seconds'] for s in seeds):.1f} s.",
        "",
    ]
    return md


def _further_markdown(further: list[dict[str, Any]]) -> list[str]:
    if not further:
        return []
    md = [
        "",
        f"Seeds {further[0]['seed']}-{further[-1]['seed']} (on-demand, greedy, SkyPilot-like and ours "
        "only; `vs OD` / misses; the last column is ours' cost minus SkyPilot-like's, as a share of "
        "the all-on-demand cost):",
        "",
        "| seed | optimum | ours | greedy | skypilot-like | ours - skypilot-like |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    cheaper = 0
    for s in further:
        rows = s["rows"]
        ours, sky = _row(rows, OURS), _row(rows, "skypilot-like")
        gap = (ours["cost"] - sky["cost"]) / _row(rows, "on-demand")["cost"]
        cheaper += ours["cost"] < sky["cost"]
        cells = [f"{_row(rows, c)['vs_on_demand']:.3f} / {_row(rows, c)['misses']}" for c in (OURS, "greedy")]
        md.append(
            f"| {s['seed']} | {_row(rows, OPTIMUM)['vs_on_demand']:.3f} | {cells[0]} | {cells[1]} "
            f"| {sky['vs_on_demand']:.3f} / {sky['misses']} | {gap * 100:+.2f} % |"
        )
    misses = {c: sum(int(_row(s["rows"], c)["misses"]) for s in further) for c in FURTHER_CONTENDERS[1:]}
    md += [
        "",
        f"Ours is cheaper than SkyPilot-like on {cheaper} of {len(further)}; misses in all: ours "
        f"{misses[OURS]}, greedy {misses['greedy']}, SkyPilot-like {misses['skypilot-like']}.",
    ]
    return md


def run(quick: bool, *, traces: Path | None = None) -> dict[str, Any]:
    """``traces``: the spot-trace directory (default: the shared data set, else the excerpts)."""
    seeds, jobs, days = ((1,), 100, 2) if quick else ((1, 2, 3), 500, 7)
    where, shared = trace_source(traces)
    part1 = deadline_setups(where, quick=quick)
    summary = _deadline_summary(part1)
    part2 = generated_runs(seeds, jobs=jobs, days=days)
    part2["further"] = further_seeds(() if quick else FURTHER_SEEDS, jobs=jobs, days=days)
    part2["ablations"] = ablations(seeds, jobs=jobs, days=days)
    timing = time_simulate(seeds[0], jobs=jobs, days=days)

    # "on every shared trace": a trace's score is the mean over its setups (deadlines x overheads)
    up = summary["ours_vs_up"]
    margins = {t: v["ours_mean"] - v["up_mean"] for t, v in up.items()}
    up_met = bool(margins) and all(m >= 0 for m in margins.values())
    up_traces = sum(m >= 0 for m in margins.values())
    up_count = sum(v["at_least_up"] for v in up.values())
    up_total = sum(v["setups"] for v in up.values())
    up_short = [f"{t} {m:+.2f}" for t, m in margins.items() if m < 0]
    closest = min(margins, key=lambda t: margins[t], default=None)

    per_seed = []
    for s in part2["seeds"]:
        rows = s["rows"]
        ours, greedy, sky = _row(rows, OURS), _row(rows, "greedy"), _row(rows, "skypilot-like")
        per_seed.append(
            {
                "seed": s["seed"],
                "ours_vs_on_demand": ours["vs_on_demand"],
                "ours_misses": ours["misses"],
                "greedy_misses": greedy["misses"],
                "ours_cost": ours["cost"],
                "skypilot_cost": sky["cost"],
            }
        )
    vs_od = ", ".join(f"seed {p['seed']}: {p['ours_vs_on_demand']:.3f}x" for p in per_seed)
    vs_greedy = ", ".join(f"seed {p['seed']}: {p['ours_misses']} vs {p['greedy_misses']}" for p in per_seed)
    vs_sky = ", ".join(
        f"seed {p['seed']}: {p['ours_cost']:.2f} vs {p['skypilot_cost']:.2f} USD" for p in per_seed
    )
    week = "" if not quick else f" (quick: {jobs} jobs x {days} days)"
    targets = {
        "spotlake-deadline has zero misses whenever the deadline leaves room for two restarts "
        f"({summary['ours_missed_with_room']} missed of {summary['setups_with_room']} such setups; "
        f"{summary['setups']} setups in all)": summary["ours_missed_with_room"] == 0,
        "spotlake-deadline's normalised score is at least Uniform Progress's on every shared trace "
        f"(mean over each trace's setups: {up_traces}/{len(up)} traces"
        + (f", the closest {closest} {margins[closest]:+.2f} points" if closest is not None else "")
        + f"{'; short: ' + ', '.join(up_short) if up_short else ''}; "
        f"per setup {up_count}/{up_total})": up_met,
        f"ours (spotlake-deadline) <= {TARGET_VS_ON_DEMAND}x the all-on-demand cost on the 500-job week"
        f"{week} ({vs_od})": all(p["ours_vs_on_demand"] <= TARGET_VS_ON_DEMAND for p in per_seed),
        f"ours has no more deadline misses than greedy ({vs_greedy})": all(
            p["ours_misses"] <= p["greedy_misses"] for p in per_seed
        ),
        f"ours is cheaper than the SkyPilot-like baseline ({vs_sky})": all(
            p["ours_cost"] < p["skypilot_cost"] for p in per_seed
        ),
        f"a week x 500 jobs x 50 pools simulates in under {TARGET_SECONDS:g} s here{week} "
        f"(median {timing['median_s']:.2f} s)": timing["median_s"] < TARGET_SECONDS,
    }
    md = [
        "Targets:",
        "",
        *(f"- {'met' if ok else '**MISSED**'}: {desc}" for desc, ok in targets.items()),
        "",
    ]
    md += _deadline_markdown(part1, summary, shared=shared, where=where)
    md += _generated_markdown(part2, timing, jobs=jobs, days=days)
    return {
        "name": "simulate",
        "title": "Allocator simulator: contenders on spot traces and generated markets",
        "quick": quick,
        "spot_traces": {"directory": str(where), "shared": shared},
        "deadline": {**part1, "summary": summary},
        "generated": {**part2, "per_seed": per_seed, "jobs": jobs, "days": days},
        "simulate_timing": timing,
        "targets": targets,
        "markdown": "\n".join(md).rstrip() + "\n",
    }
