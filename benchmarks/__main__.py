"""Run every benchmark module and write benchmarks/results/report.{json,md}.

Usage: ``python -m benchmarks [--quick] [--only NAME ...] [--strict]``. Missed targets are printed
and written to the report; ``--strict`` also makes them the exit status.
"""

from __future__ import annotations

import argparse
import importlib
import json
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller inputs, for a smoke run")
    parser.add_argument("--only", nargs="*", default=None, help="module names, e.g. planner scoring")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--strict", action="store_true", help="exit 1 when any target is missed")
    args = parser.parse_args(argv)

    names = sorted(p.stem.removeprefix("bench_") for p in HERE.glob("bench_*.py"))
    if args.only:
        names = [n for n in names if n in args.only]
    results: list[dict[str, Any]] = []
    for name in names:
        print(f"== benchmark {name} ...", flush=True)
        module = importlib.import_module(f"benchmarks.bench_{name}")
        started = time.perf_counter()
        result = module.run(quick=args.quick)
        result["seconds"] = round(time.perf_counter() - started, 2)
        results.append(result)
        for desc, ok in result.get("targets", {}).items():
            print(f"   [{'met' if ok else 'MISSED'}] {desc}")

    args.out.mkdir(parents=True, exist_ok=True)
    meta = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "machine": platform.machine(),
        "cpus": __import__("os").cpu_count(),
        "quick": args.quick,
    }
    report = {"meta": meta, "results": results}
    (args.out / "report.json").write_text(json.dumps(report, indent=2, default=str))
    lines = [f"# spotlake benchmark report\n\n{meta['when']}, Python {meta['python']}, {meta['cpus']} CPUs"]
    lines += [f"\n## {r.get('title', r['name'])}\n\n{r.get('markdown', '')}" for r in results]
    (args.out / "report.md").write_text("\n".join(lines) + "\n")
    print(f"report: {args.out / 'report.md'} and report.json")
    missed = [d for r in results for d, ok in r.get("targets", {}).items() if not ok]
    if missed:
        print(f"{len(missed)} target(s) missed (see the report):")
        for desc in missed:
            print(f"  MISSED {desc}")
    return 1 if missed and args.strict else 0


if __name__ == "__main__":
    raise SystemExit(main())
