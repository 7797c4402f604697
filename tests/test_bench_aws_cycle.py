"""The AWS cycle benchmark runs and reports (its numbers are the report's business, not a test's)."""

from __future__ import annotations

from typing import Any

import attrs
import pytest
from benchmarks import bench_aws_cycle

from spotlake.testing.aws.catalog import AwsCatalog

PHASES = ("before_sps_s", "sps_s", "sps_in_calls_s", "sps_own_s", "scoring_s", "commit_s", "after_s")


@pytest.fixture(scope="module")
def result() -> dict[str, Any]:
    return bench_aws_cycle.run(quick=True)


def test_the_quick_run_reports_every_part(result: dict[str, Any]) -> None:
    assert result["name"] == "aws_cycle" and result["quick"] is True
    assert result["source"].startswith("generated world") and result["workaround"] is None
    assert len(result["targets"]) == 4 and all(isinstance(ok, bool) for ok in result["targets"].values())
    md = result["markdown"]
    for heading in (
        "### Time per cycle",
        "### Placement-score queries per cycle",
        "### With AWS's latency",
        "### The account book at a day's size",
    ):
        assert heading in md
    assert "| cycle | at | capacity | wall s | before SPS |" in md


def test_the_cycles_numbers_are_consistent(result: dict[str, Any]) -> None:
    plan = result["plan"]
    assert 0 < plan["lower_bound"] <= plan["optimum"] <= plan["queries"]
    rows = result["cycles"]
    assert [r["cycle"] for r in rows] == [1, 2] and [r["capacity"] for r in rows] == [1, 5]
    assert rows[0]["new_day"] and rows[0]["ondemand"] and not rows[1]["ondemand"]
    assert [r["book_before"] for r in rows] == [0, plan["queries"]]  # the first cycle's configurations
    for r in rows:
        assert r["status"] == "committed" and r["error"] is None
        assert r["failed_calls"] == 0 and r["unknown"] == 0
        assert r["sps_queries"] == r["sps_requests"] == plan["queries"] > 0
        assert r["merged_rows"] == r["sps_rows"] == result["shape"]["offerings"]
        assert r["wall_s"] > 0 and all(r[k] is not None and r[k] >= 0 for k in PHASES)
        assert sum(r[k] for k in PHASES if k not in ("sps_in_calls_s", "sps_own_s")) <= r["wall_s"] + 0.05
        assert (
            r["projected_s"] >= -(-r["sps_requests"] // bench_aws_cycle.STREAMS) * bench_aws_cycle.SPS_LATENCY
        )
    day = result["day"]
    assert day is not None and day["records"] == result["book"]["records"]
    assert day["projected_s"] >= -(-plan["queries"] // bench_aws_cycle.STREAMS) * bench_aws_cycle.SPS_LATENCY
    assert "projected: new configurations, a day's book" in result["markdown"]
    book = result["book"]
    assert book["records"] == plan["queries"] * 11 and book["new_query_ms"] > 0


def test_the_workaround_drops_only_spot_prices_without_an_on_demand_price() -> None:
    world = AwsCatalog.generate(1, types=6)
    gone = next(iter(world.ondemand))
    holed = attrs.evolve(world, ondemand={k: v for k, v in world.ondemand.items() if k != gone})
    patched = bench_aws_cycle.without_unpriced_spot(holed)
    region = {z: r for r, zones in world.zones.items() for z in zones}
    dropped = set(world.spot) - set(patched.spot)
    assert dropped and all((t, region[z]) == gone for t, z in dropped)
    assert set(patched.spot_at) == set(patched.spot) and patched.offerings == world.offerings
    assert bench_aws_cycle.without_unpriced_spot(world).spot == world.spot
