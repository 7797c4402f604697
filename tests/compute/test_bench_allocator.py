"""The allocator benchmark runs and reports (its numbers are the report's business, not a test's)."""

from __future__ import annotations

from benchmarks import bench_allocator


def test_the_allocator_benchmark_reports_its_measurements_and_baseline() -> None:
    result = bench_allocator.run(quick=True)
    assert result["name"] == "allocator" and result["offers"] == 2_000 and result["requests"] == 30
    assert result["decide_ms"]["median"] > 0 and result["baseline_ms"]["median"] > 0
    assert "| `decide` (filters, rankings, mix, plan) |" in result["markdown"]
    assert len(result["targets"]) == 1
