"""The AWS SPS planner benchmark runs and reports (its numbers are the report's business, not a test's)."""

from __future__ import annotations

from pathlib import Path

from benchmarks import bench_aws_plan

EXCERPT = Path(__file__).resolve().parent / "fixtures" / "aws_catalog_excerpt.csv"


def test_the_aws_plan_benchmark_reports_every_part_on_a_generated_catalog() -> None:
    result = bench_aws_plan.run(quick=True, catalog=None)  # a plain clone has no shared catalog
    assert result["name"] == "aws_plan" and result["quick"] is True
    assert result["source"].startswith("generated catalog")
    assert len(result["targets"]) == 3 and all(isinstance(ok, bool) for ok in result["targets"].values())

    sweep = result["sweep"]
    assert sweep["lower_bound"] <= sweep["optimum"] == sweep["ours"] == sweep["original"]
    assert sweep["multi_group"] <= sweep["multi_3"] <= sweep["ours"]
    assert not result["off_optimum"]

    week = result["week"]
    assert [r["day"] for r in week] == [1, 2]
    for row in week:
        assert len(row["changes"]) == bench_aws_plan.CHANGES_PER_DAY
        assert 0 <= row["ours"] <= row["queries"] and 0 <= row["original"] <= row["queries"]
    assert set(result["timing"]) == {"cold_s", "with_previous_s", "from_frame_s"}

    md = result["markdown"]
    for heading in ("### Queries per sweep", "### New configurations per day", "### Time to plan"):
        assert heading in md
    assert "| planner | queries per sweep | per rotation (11 capacities) | note |" in md
    assert "| day | catalog changes | queries | ours | deterministic re-solve | original (re-solving) |" in md


def test_the_catalog_reader_keeps_one_row_per_type_and_zone() -> None:
    frame = bench_aws_plan.load_catalog(EXCERPT)
    assert list(frame.columns) == ["size", "region", "zone"]
    assert len(frame) == 30 and not frame.duplicated(["size", "zone"]).any()


def test_the_generated_catalog_has_the_real_catalogs_shape() -> None:
    frame = bench_aws_plan.generated_catalog(0)
    assert frame["region"].nunique() == 22 and frame["zone"].nunique() == 70
    assert not frame.duplicated(["size", "zone"]).any()
    assert frame.equals(bench_aws_plan.generated_catalog(0))  # seeded
