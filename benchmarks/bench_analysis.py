"""Benchmark: ``spotlake.open(store).history(size=...)`` over a year of 10-minute runs.

A synthesised store (no emulator: a year of runs through the emulator would take hours) holds
one merged frame per 10-minute run, written at the keys and in the format a collection run
writes (``store.put_frame``): :data:`SIZES` sizes x :data:`REGIONS` regions x one zone per run,
the desired count rotating as a collection rotates it, prices and scores drifting. The same run
measures:

* the baseline: reading the whole ``merged/`` folder with ``pandas.read_parquet`` and filtering
  one size (what an analyst does without the analysis API);
* ``history(size=...)`` cold: the first read, which also writes one digest per day and one roll-up
  per closed month;
* ``history(size=...)`` warm: every later read (median of 5), the number the target is about.

Targets: warm ``history()`` at least 20x faster than the pandas read and under 1 s.
``python -m benchmarks --only analysis [--quick]``; quick: 30 days instead of 365.
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd

import spotlake
from spotlake.model import DESIRED_COUNTS, SNAPSHOT_SCHEMA
from spotlake.storage import open_store

SIZES: Final = 40
REGIONS: Final = 10
START: Final = datetime(2025, 1, 1, tzinfo=UTC)
TARGET_SPEEDUP: Final = 20.0
TARGET_SECONDS: Final = 1.0


def _frame(at: datetime, run: int, rng: np.random.Generator) -> pd.DataFrame:
    n = SIZES * REGIONS
    sizes = np.repeat([f"Standard_D{i}s_v5" for i in range(SIZES)], REGIONS)
    regions = np.tile([f"region{j}" for j in range(REGIONS)], SIZES)
    score_value = rng.integers(1, 4, size=n)
    frame = pd.DataFrame(
        {
            "size": sizes,
            "region": regions,
            "zone": "1",
            "desired_count": DESIRED_COUNTS[run % len(DESIRED_COUNTS)],
            "region_name": regions,
            "family": "standardDSv5Family",
            "score": np.array(["Low", "Medium", "High"])[score_value - 1],
            "score_value": score_value,
            "quota_available": True,
            "ondemand_price": 0.1 + np.arange(n) / 1000,
            "spot_price": 0.02 + rng.random(n) / 100,
            "savings_pct": 80.0,
            "eviction_bucket": "0-5",
            "if_score": 3.0,
            "t2": rng.integers(0, 51, size=n),
            "t3": rng.integers(0, 51, size=n),
            "observed_at": at,
        }
    )
    for col, dtype in SNAPSHOT_SCHEMA.items():
        frame[col] = frame[col].astype(dtype)
    return frame


def synthesise(root: Path, days: int) -> int:
    """Write ``days`` days of 10-minute runs into a store at ``root``; returns the run count.

    The first run goes through ``store.put_frame``; the others are its file with the run's own
    values (count, scores, prices, tiers, times) swapped in, written to their keys: the same
    bytes a run would write, minus the validation, so a year takes minutes, not half an hour."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from spotlake.storage.layout import PARQUET_COMPRESSION, frame_key

    store = open_store(str(root))
    rng = np.random.default_rng(7)
    runs = days * 144
    store.put_frame(kind="merged", at=START, frame=_frame(START, 0, rng))
    template = pq.read_table(root / frame_key("merged", START))
    n = template.num_rows
    names = template.schema.names
    for run in range(1, runs):
        at = START + timedelta(minutes=10 * run)
        score_value = rng.integers(1, 4, size=n).astype("int8")
        swaps = {
            "desired_count": pa.array(np.full(n, DESIRED_COUNTS[run % len(DESIRED_COUNTS)]), pa.int64()),
            "score": pa.array(np.array(["Low", "Medium", "High"])[score_value - 1], pa.string()),
            "score_value": pa.array(score_value, pa.int8()),
            "spot_price": pa.array(0.02 + rng.random(n) / 100, pa.float64()),
            "t2": pa.array(rng.integers(0, 51, size=n), pa.int64()),
            "t3": pa.array(rng.integers(0, 51, size=n), pa.int64()),
            "observed_at": pa.array(np.full(n, at.replace(tzinfo=None)), pa.timestamp("us", tz="UTC")),
            "run_at": pa.array(np.full(n, at.replace(tzinfo=None)), pa.timestamp("us", tz="UTC")),
        }
        table = template
        for col, values in swaps.items():
            table = table.set_column(names.index(col), col, values.cast(template.schema.field(col).type))
        path = root / frame_key("merged", at)
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, path, compression=PARQUET_COMPRESSION)
    return runs


def run(quick: bool) -> dict[str, Any]:
    days = 30 if quick else 365
    size = "Standard_D7s_v5"
    root = Path(tempfile.mkdtemp(prefix="spotlake-bench-analysis-"))
    try:
        t = time.perf_counter()
        runs = synthesise(root, days)
        write_s = time.perf_counter() - t

        t = time.perf_counter()
        everything = pd.read_parquet(root / "merged")
        baseline = everything[everything["size"] == size]
        baseline_s = time.perf_counter() - t
        rows_total = len(everything)
        del everything

        lake = spotlake.open(str(root))
        t = time.perf_counter()
        cold = lake.history(size=size)
        cold_s = time.perf_counter() - t
        samples = []
        for _ in range(5):
            t = time.perf_counter()
            warm = lake.history(size=size)
            samples.append(time.perf_counter() - t)
        warm_s = statistics.median(samples)
        assert len(warm) == len(cold) == len(baseline), (len(warm), len(cold), len(baseline))
    finally:
        shutil.rmtree(root, ignore_errors=True)

    speedup = baseline_s / warm_s if warm_s else float("inf")
    targets = {
        f"history() of one size over {days} days of 10-minute runs is >= {TARGET_SPEEDUP:g}x faster than "
        f"reading the whole store with pandas ({speedup:.0f}x)": speedup >= TARGET_SPEEDUP,
        f"... and under {TARGET_SECONDS:g} s ({warm_s:.3f} s)": warm_s < TARGET_SECONDS,
    }
    md = [
        "Targets:",
        "",
        *(f"- {'met' if ok else '**MISSED**'}: {desc}" for desc, ok in targets.items()),
        "",
        f"Store: {days} days x 144 runs = {runs:,} merged files of {SIZES * REGIONS} rows "
        f"({rows_total:,} rows), written in {write_s:.0f} s.",
        "",
        "| read | seconds | rows |",
        "|---|---:|---:|",
        f"| `pd.read_parquet(store/'merged')` + filter (baseline) | {baseline_s:.2f} | {len(baseline):,} |",
        f"| `history(size=...)` cold (writes {days} day digests and the closed months' roll-ups) "
        f"| {cold_s:.2f} | {len(cold):,} |",
        f"| `history(size=...)` warm, median of 5 | {warm_s:.3f} | {len(warm):,} |",
        "",
    ]
    return {
        "name": "analysis",
        "title": "Analysis API: one size's history over a year of runs",
        "quick": quick,
        "days": days,
        "runs": runs,
        "rows": rows_total,
        "write_s": round(write_s, 2),
        "baseline_s": round(baseline_s, 3),
        "cold_s": round(cold_s, 3),
        "warm_s": round(warm_s, 4),
        "warm_samples_s": [round(s, 4) for s in samples],
        "speedup": round(speedup, 1),
        "targets": targets,
        "markdown": "\n".join(md),
    }
