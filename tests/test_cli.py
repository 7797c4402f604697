"""The ``spotlake`` command: collect against a loopback emulator, status, show, plan, exit codes."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline_support import T0, emulator, run_time
from spotlake.cli import EXIT_LOCKED, EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, main
from spotlake.storage import open_store
from spotlake.testing.azure import AzureEmulator

# Real SkyPilot catalog rows, committed (tests/fixtures/README.md): no ../shared/data needed.
CATALOG = Path(__file__).resolve().parent / "fixtures" / "catalog_world_excerpt.csv"


def collect(url: str, store: Path, at: str, *extra: str) -> int:
    return main(["collect", "azure", "--endpoint", url, "--store", str(store), "--at", at, "--quiet", *extra])


def test_collect_status_show(
    served: tuple[AzureEmulator, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    emu, url = served
    store = tmp_path / "data"
    for i in range(2):
        emu.clock.set(run_time(i))  # type: ignore[attr-defined]
        assert collect(url, store, run_time(i).isoformat(), "--json") == EXIT_OK
        report = json.loads(capsys.readouterr().out)
        assert report["status"] == "committed"
        assert report["desired_count"] == (1, 5)[i]

    # Rerunning a committed time is a no-op, exit 0.
    assert collect(url, store, run_time(1).isoformat()) == EXIT_OK
    assert "already committed" in capsys.readouterr().out

    assert main(["status", "--store", str(store), "--json"]) == EXIT_OK
    status = json.loads(capsys.readouterr().out)
    assert status["last_desired_count"] == 5
    # The runs were on 2026-03-02; a run started now is on a later UTC day: count 1, a new plan.
    assert status["next_run"] == {"desired_count": 1, "new_day": True, "rebuild_plan": True}
    assert status["plan"]["calls"] >= status["plan"]["lower_bound"] > 0
    assert status["quota"]["quota"]["calls_in_window"] > 0

    assert main(["status", "--store", str(store)]) == EXIT_OK
    assert "last run" in capsys.readouterr().out

    assert main(["show", "--store", str(store), "--json", "--limit", "3"]) == EXIT_OK
    shown = json.loads(capsys.readouterr().out)
    rows = shown["rows"]
    assert len(rows) == 3 and {"size", "region", "zone", "t2", "t3"} <= set(rows[0])
    assert shown["truncated"] and shown["total"] > 3 and shown["run_at"] == run_time(1).isoformat()

    assert main(["show", "--store", str(store), "--changes", "--where", "change=new"]) == EXIT_OK
    assert "rows)" in capsys.readouterr().out


def test_collect_exits_75_while_another_run_holds_the_lock(
    served: tuple[AzureEmulator, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, url = served
    store = open_store(str(tmp_path))
    with store.lock("someone-else"):
        assert collect(url, tmp_path, T0.isoformat()) == EXIT_LOCKED
    assert "lock" in capsys.readouterr().err.lower()


def test_bad_input_exits_2_with_a_clear_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["collect", "azure", "--store", str(tmp_path), "--at", "yesterday-ish"]) == EXIT_USAGE
    assert "ISO 8601" in capsys.readouterr().err


def test_missing_credentials_name_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for var in ("AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET", "AZURE_SUBSCRIPTION_IDS"):
        monkeypatch.delenv(var, raising=False)
    assert main(["collect", "azure", "--store", str(tmp_path)]) == EXIT_USAGE
    assert "AZURE_" in capsys.readouterr().err


def test_status_of_an_empty_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "--store", str(tmp_path)]) == EXIT_OK
    assert "empty store" in capsys.readouterr().out
    # No directory at all is a mistyped --store, not an empty store.
    assert main(["status", "--store", str(tmp_path / "nothing")]) == EXIT_USAGE
    assert "no store at" in capsys.readouterr().err


def world_pairs(monkeypatch: pytest.MonkeyPatch, *args: str) -> None:
    """Feed an emulator world's support set to ``spotlake plan --pairs -`` on standard input."""
    proc = subprocess.run(
        [sys.executable, "-m", "spotlake.testing.azure", "pairs", *args],
        capture_output=True,
        text=True,
        check=True,
    )
    monkeypatch.setattr(sys, "stdin", io.StringIO(proc.stdout))


def test_plan_for_an_emulator_world(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    world_pairs(monkeypatch, "--seed", "3", "--regions", "20", "--sizes", "200")
    assert main(["plan", "--pairs", "-", "--json"]) == EXIT_OK
    summary = json.loads(capsys.readouterr().out)
    assert summary["calls"] >= summary["lower_bound"] > 0
    assert summary["subscriptions"] >= 1


def test_plan_search_option(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "spotlake.testing.azure",
            "pairs",
            "--seed",
            "0",
            "--regions",
            "20",
            "--sizes",
            "120",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    base = ["plan", "--pairs", "-", "--json"]
    monkeypatch.setattr(sys, "stdin", io.StringIO(proc.stdout))
    assert main(base) == EXIT_OK
    plain = json.loads(capsys.readouterr().out)
    monkeypatch.setattr(sys, "stdin", io.StringIO(proc.stdout))
    assert main([*base, "--search", "8"]) == EXIT_OK
    out = capsys.readouterr()
    searched = json.loads(out.out)
    assert searched["calls"] == searched["lower_bound"] == plain["calls"] - 1
    assert "+order-search(" in searched["strategy"] and searched["strategy"].endswith("/8)")
    assert "order search" in out.err  # progress on stderr, JSON on stdout
    with pytest.raises(SystemExit) as exit_info:
        main([*base, "--search", "-1"])
    assert exit_info.value.code == EXIT_USAGE
    assert "whole number >= 0" in capsys.readouterr().err


def test_plan_for_the_real_catalog(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "--catalog", str(CATALOG)]) == EXIT_OK
    out = capsys.readouterr().out
    assert "calls" in out and "lower bound" in out


def test_console_entry_point_runs() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "spotlake.cli", "--help"], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0 and "collect" in proc.stdout


def test_collect_exits_3_when_some_sps_calls_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """One subscription and an emulator allowing 1 SPS call per hour per location: the plan needs
    more calls than there are slots, so the run commits what it got and says so with exit 3."""
    emu = emulator(sps_calls_per_hour=1)
    monkeypatch.setenv("AZURE_TENANT_ID", emu.tenant_id)
    monkeypatch.setenv("AZURE_CLIENT_ID", emu.client_id)
    monkeypatch.setenv("AZURE_CLIENT_SECRET", emu.client_secret)
    monkeypatch.setenv("AZURE_SUBSCRIPTION_IDS", emu.subscriptions[0])
    with emu.serve() as url:
        code = collect(url, tmp_path, T0.isoformat(), "--json")
    report = json.loads(capsys.readouterr().out)
    assert code == EXIT_PARTIAL, report
    assert report["status"] == "committed" and report["failed_calls"] > 0
    assert report["collectors"]["sps"]["succeeded"] > 0
    assert report["unknown"]["count"] > 0


def test_a_sink_outage_exits_3_and_the_next_runs_still_collect(
    served: tuple[AzureEmulator, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Before: with an unreachable compat bucket every later run exited 1 and collected nothing."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    capsys.readouterr()  # the server announces itself on stdout
    try:
        host, port = server.get_host_and_port()
        for var, value in {
            "AWS_ENDPOINT_URL": f"http://{host}:{port}",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
        }.items():
            monkeypatch.setenv(var, value)
        emu, url = served
        store = tmp_path / "data"
        codes, reports = [], []
        for i in range(2):
            emu.clock.set(run_time(i))  # type: ignore[attr-defined]
            codes.append(
                collect(url, store, run_time(i).isoformat(), "--json", "--compat-bucket", "no-such-bucket")
            )
            reports.append(json.loads(capsys.readouterr().out))
        assert codes == [EXIT_PARTIAL, EXIT_PARTIAL]
        assert [r["status"] for r in reports] == ["committed", "committed"]
        assert "no-such-bucket" in reports[1]["delivery_error"] and len(reports[1]["undelivered"]) == 2
        assert main(["status", "--store", str(store)]) == EXIT_OK
        assert "sinks owed 2 committed run(s)" in capsys.readouterr().out
    finally:
        server.stop()
