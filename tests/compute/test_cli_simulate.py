"""``spotlake simulate``: the comparison table from a trace file, a generated market and a store's
history, as text, JSON and a PNG plot; bad arguments exit 2 with the reason."""

from __future__ import annotations

import json
from pathlib import Path
from typing import cast

import pytest

from pipeline_support import emulator, in_process_access, run_time
from spotlake.cli import main
from spotlake.clock import FakeClock
from spotlake.compute.simulate import COLUMNS, OPTIMUM
from spotlake.pipeline import RunStatus, run_cycle
from spotlake.storage import open_store

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "spot-traces"
K80 = str(FIXTURES / "us-west-2a_k80_1.json")  # 200 ticks of 600 s: 33 hours


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["simulate", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_a_deadline_job_on_a_trace_file_prints_the_table_and_writes_the_plot(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    png = tmp_path / "cost.png"
    policies = "on-demand,greedy,uniform-progress,spotlake-deadline"
    code, out, _ = run(
        capsys, "--trace", K80, "--workload", "deadline", "--work", "20", "--deadline", "24",
        "--policies", policies, "--plot", str(png), "--quiet",
    )  # fmt: skip
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "deadline-job on us-west-2a_k80_1"
    names = [line.split()[0] for line in lines[3:8]]
    assert names == [*policies.split(","), OPTIMUM]
    on_demand = next(line for line in lines if line.startswith("on-demand")).split()
    assert on_demand[2] == "1.000" and on_demand[3] == "0.0"  # the reference: score 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"plot: {png}" in out


def test_json_rows_are_the_library_table(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(
        capsys, "--trace", "generated", "--days", "1", "--pools", "8", "--jobs", "20",
        "--policies", "on-demand,greedy", "--json", "--quiet",
    )  # fmt: skip
    assert code == 0 and err == ""
    payload = json.loads(out)
    assert payload["trace"] == "generated aws seed 1" and payload["workload"] == "generated-1"
    rows = payload["rows"]
    assert [r["contender"] for r in rows] == ["on-demand", "greedy", OPTIMUM]
    assert all(list(r) == list(COLUMNS) for r in rows)
    assert rows[0]["vs_on_demand"] == 1.0 and rows[2]["score"] == 100.0
    assert rows[1]["cost"] < rows[0]["cost"] and rows[1]["completed"] == 20


def test_progress_goes_to_stderr_per_contender(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(
        capsys, "--trace", "generated", "--days", "1", "--pools", "4", "--jobs", "5",
        "--policies", "on-demand,greedy",
    )  # fmt: skip
    assert code == 0 and "simulate on-demand" in err and "simulate greedy" in err
    assert "simulate" not in out


def test_a_store_history_is_a_trace(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    emu = emulator()
    store = open_store(str(tmp_path / "data"))
    for i in range(4):
        cast(FakeClock, emu.clock).set(run_time(i))
        report = run_cycle(run_time(i), store=store, azure=in_process_access(emu), clock=emu.clock)
        assert report.status is RunStatus.COMMITTED, report.error
    code, out, _ = run(
        capsys, "--trace", "store", "--store", str(tmp_path / "data"), "--jobs", "10",
        "--policies", "on-demand,greedy", "--json", "--quiet",
    )  # fmt: skip
    assert code == 0
    payload = json.loads(out)
    assert " history 2026-" in payload["trace"]
    assert [r["contender"] for r in payload["rows"]] == ["on-demand", "greedy", OPTIMUM]
    # the README's command on a demo-sized store (a few runs): a short deadline job completes
    code, out, _ = run(
        capsys, "--trace", "store", "--store", str(tmp_path / "data"), "--workload", "deadline",
        "--work", "0.25", "--deadline", "0.5", "--json", "--quiet",
    )  # fmt: skip
    rows = {r["contender"]: r for r in json.loads(out)["rows"]}
    assert code == 0 and all(r["completed"] == 1 for r in rows.values())
    assert rows["spotlake-deadline"]["misses"] == 0 and rows["spotlake-deadline"]["spot_share"] > 0.5


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--trace", "generated", "--policies", "nope"], "unknown contender(s) nope"),
        (["--trace", "/nonexistent/trace.json"], "trace.json"),
        (["--trace", "generated", "--start", "2026-01-01T00:00Z"], "--start and --end go with --trace store"),
    ],
)
def test_bad_arguments_exit_2_with_the_reason(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code, _, err = run(capsys, *argv, "--quiet")
    assert code == 2 and message in err


def test_the_docs_example_runs_and_ranks_the_optimum_lowest(capsys: pytest.CaptureFixture[str]) -> None:
    text = (Path(__file__).resolve().parents[2] / "docs" / "allocator.md").read_text()
    section = text[text.index("## Simulate before you deploy") :]
    code = section[
        section.index("```python") + len("```python") : section.index("```", section.index("```python") + 3)
    ]
    scope: dict[str, object] = {}
    exec(compile(code, "docs/allocator.md", "exec"), scope)  # the snippet exactly as documented
    table = scope["table"]
    out = capsys.readouterr().out
    assert "spotlake-deadline" in out and OPTIMUM in out
    costs = dict(zip(table["contender"], table["cost"], strict=True))  # type: ignore[index]
    assert costs["on-demand"] == max(costs.values()) and costs[OPTIMUM] < costs["greedy"]
