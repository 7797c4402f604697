"""The simulator benchmark runs and reports (its numbers are the report's business, not a test's)."""

from __future__ import annotations

from benchmarks import bench_simulate

from spotlake.compute.simulate import CONTENDERS, OPTIMUM


def test_the_simulator_benchmark_reports_both_parts_and_its_targets() -> None:
    result = bench_simulate.run(quick=True, traces=bench_simulate.EXCERPTS)  # the shared set: make bench
    assert result["name"] == "simulate" and result["quick"] is True
    assert len(result["targets"]) == 6 and all(isinstance(ok, bool) for ok in result["targets"].values())

    deadline = result["deadline"]
    assert deadline["rows"] and deadline["summary"]["table"]
    setups = {(r["trace"], r["deadline_h"], r["overhead_h"]) for r in deadline["rows"]}
    assert len(deadline["rows"]) == len(setups) * (len(bench_simulate.DEADLINE_CONTENDERS) + 1)
    assert {r["contender"] for r in deadline["rows"]} == {*bench_simulate.DEADLINE_CONTENDERS, OPTIMUM}
    assert set(deadline["summary"]["ours_vs_up"]) == {t["trace"] for t in deadline["traces"]}

    assert result["generated"]["further"] == []  # quick mode runs no further seeds
    (taken_apart,) = result["generated"]["ablations"]
    assert list(taken_apart["variants"]) == list(bench_simulate.ABLATIONS)
    assert taken_apart["variants"]["without respot"]["respots"] == 0
    (seed,) = result["generated"]["seeds"]
    assert seed["jobs"] == 100 and [r["contender"] for r in seed["rows"]] == [*CONTENDERS, OPTIMUM]
    assert result["simulate_timing"]["median_s"] > 0 and len(result["simulate_timing"]["samples_s"]) == 3

    md = result["markdown"]
    assert "### 1. Single-job deadline setup" in md and "### 2. Generated markets" in md
    assert "| trace | deadline | on-demand | greedy |" in md and "| contender | cost USD |" in md
    assert "Ours taken apart" in md
    if not result["spot_traces"]["shared"]:
        assert "committed 200-tick excerpts" in md


def test_the_excerpts_get_a_scaled_down_job_that_can_meet_its_deadlines() -> None:
    part = bench_simulate.deadline_setups(bench_simulate.EXCERPTS, quick=True)
    assert part["traces"] and not part["skipped"]  # the excerpts are short: none is left out
    for trace in part["traces"]:
        assert trace["scale"] < 1 and trace["work_h"] < trace["span_h"]
    for row in part["rows"]:
        assert row["deadline_h"] > row["work_h"] + row["overhead_h"]
    assert "Scaled down" in "\n".join(
        bench_simulate._deadline_markdown(
            part, bench_simulate._deadline_summary(part), shared=False, where=bench_simulate.EXCERPTS
        )
    )


def test_the_further_seeds_compare_ours_with_the_targets_baselines_and_count_the_wins() -> None:
    part = bench_simulate.further_seeds((4, 5), jobs=30, days=2)
    assert [s["seed"] for s in part] == [4, 5]
    for s in part:
        assert [r["contender"] for r in s["rows"]] == [*bench_simulate.FURTHER_CONTENDERS, OPTIMUM]
    md = "\n".join(bench_simulate._further_markdown(part))
    assert "Seeds 4-5" in md and md.count("\n| 4 |") == 1 and md.count("\n| 5 |") == 1
    cheaper = sum(
        bench_simulate._row(s["rows"], bench_simulate.OURS)["cost"]
        < bench_simulate._row(s["rows"], "skypilot-like")["cost"]
        for s in part
    )
    assert f"cheaper than SkyPilot-like on {cheaper} of 2" in md
    misses = {
        c: sum(int(bench_simulate._row(s["rows"], c)["misses"]) for s in part)
        for c in (bench_simulate.OURS, "greedy", "skypilot-like")
    }
    assert (
        f"misses in all: ours {misses[bench_simulate.OURS]}, greedy {misses['greedy']}, "
        f"SkyPilot-like {misses['skypilot-like']}." in md
    )
    rows = part[0]["rows"]
    gap = (
        bench_simulate._row(rows, bench_simulate.OURS)["cost"]
        - bench_simulate._row(rows, "skypilot-like")["cost"]
    ) / bench_simulate._row(rows, "on-demand")["cost"]
    (line,) = [x for x in md.splitlines() if x.startswith("| 4 |")]
    assert line.endswith(f"| {gap * 100:+.2f} % |")
    assert bench_simulate._further_markdown([]) == []
