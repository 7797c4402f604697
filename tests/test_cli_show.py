"""``spotlake show`` and ``status`` on a real store: --limit/--all, the JSON shape, --where
comparisons, missing stores and run times, and the one timestamp format (issue 14)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pipeline_support import emulator, in_process_access, run_time
from spotlake.cli import EXIT_OK, EXIT_USAGE, main
from spotlake.pipeline import RunStatus, run_cycle
from spotlake.storage import open_store

#: The CLI's one time format: ISO 8601, UTC, whole seconds, +00:00.
ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00$")
LOOKS_LIKE_A_TIME = re.compile(r"^\d{4}-\d\d-\d\d[T ]\d\d:\d\d")


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Two committed runs of the small emulator world (built once for the module)."""
    path = tmp_path_factory.mktemp("store")
    emu = emulator()
    s = open_store(str(path))
    for i in range(2):
        emu.clock.set(run_time(i))  # type: ignore[attr-defined]
        report = run_cycle(run_time(i), store=s, azure=in_process_access(emu), clock=emu.clock)
        assert report.status is RunStatus.COMMITTED
    yield path


def show(capsys: pytest.CaptureFixture[str], store: Path, *args: str) -> dict[str, Any]:
    assert main(["show", "--store", str(store), "--json", *args]) == EXIT_OK
    payload: dict[str, Any] = json.loads(capsys.readouterr().out)
    return payload


def usage_error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """Run ``argv``, insist on exit 2 (argparse's SystemExit or main's return), give stderr."""
    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = int(exc.code or 0)
    assert code == EXIT_USAGE
    return capsys.readouterr().err


# --- --limit / --all -------------------------------------------------------------------------


def test_limit_must_be_a_positive_whole_number_and_all_shows_every_row(
    store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: --limit 0 showed 0 rows and --limit -1 every row but the last, both exit 0."""
    for bad in ("0", "-1", "x"):
        err = usage_error(capsys, "show", "--store", str(store), "--limit", bad)
        assert "whole number >= 1" in err and "--all" in err
    total = show(capsys, store, "--all")
    assert total["shown"] == total["total"] == len(total["rows"]) > 20 and not total["truncated"]
    assert len(show(capsys, store, "--limit", "7")["rows"]) == 7
    assert main(["show", "--store", str(store), "--all"]) == EXIT_OK
    text = capsys.readouterr().out
    assert f"({total['total']} of {total['total']} rows)" in text and "--all for more" not in text
    err = usage_error(capsys, "show", "--store", str(store), "--all", "--limit", "3")
    assert "not allowed with" in err


# --- the JSON shape --------------------------------------------------------------------------


def test_json_is_one_object_that_marks_truncation(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Before: --json printed a bare list cut at 20 rows, with nothing saying rows were left out."""
    cut = show(capsys, store)
    assert set(cut) == {"kind", "run_at", "total", "shown", "truncated", "rows"}
    assert cut["kind"] == "merged" and cut["run_at"] == "2026-03-02T00:10:00+00:00"
    assert cut["shown"] == len(cut["rows"]) == 20 < cut["total"] and cut["truncated"] is True
    whole = show(capsys, store, "--limit", str(cut["total"]))
    assert whole["truncated"] is False and whole["shown"] == whole["total"] == cut["total"]
    changes = show(capsys, store, "--changes", "--at", "2026-03-02T00:00Z", "--all")
    assert changes["kind"] == "changes" and changes["run_at"] == "2026-03-02T00:00:00+00:00"
    assert {r["change"] for r in changes["rows"]} == {"new"}
    with pytest.raises(SystemExit):  # the shape is documented in --help
        main(["show", "--help"])
    help_text = capsys.readouterr().out
    assert '"truncated"' in help_text and '"total"' in help_text and '"rows"' in help_text


# --- --where ---------------------------------------------------------------------------------


def test_where_compares_typed_values_and_text_ignores_case(
    store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: score=high found nothing (stored values are High) and spot_price<0.01 was an error."""
    high = show(capsys, store, "--all", "--where", "score=high")
    assert high["total"] > 0 and {r["score"] for r in high["rows"]} == {"High"}
    not_high = show(capsys, store, "--all", "--where", "score!=HIGH")
    assert not_high["total"] > 0 and "High" not in {r["score"] for r in not_high["rows"]}
    everything = show(capsys, store, "--all")["rows"]
    prices = [r["spot_price"] for r in everything if r["spot_price"] is not None]
    cut = sorted(prices)[len(prices) // 2]
    for op, check in {
        "<": lambda v: v < cut,
        "<=": lambda v: v <= cut,
        ">": lambda v: v > cut,
        ">=": lambda v: v >= cut,
        "=": lambda v: v == cut,
        "!=": lambda v: v != cut,
    }.items():
        got = show(capsys, store, "--all", "--where", f"spot_price{op}{cut}")
        assert got["total"] == sum(1 for v in prices if check(v)) > 0, op
    both = show(capsys, store, "--all", "--where", "score=high", "--where", f"spot_price < {cut}")
    assert both["total"] > 0
    assert all(r["score"] == "High" and r["spot_price"] < cut for r in both["rows"])
    zoneless = show(capsys, store, "--all", "--where", "zone=null")
    assert zoneless["total"] == sum(1 for r in everything if r["zone"] is None) > 0
    since = show(capsys, store, "--all", "--where", "observed_at>=2026-03-02T00:10Z")
    assert since["total"] == sum(1 for r in everything if r["observed_at"] >= "2026-03-02T00:10")


def test_where_errors_are_clear(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = usage_error(capsys, "show", "--store", str(store), "--where", "scroe=high")
    assert "no column 'scroe'" in err and "score" in err and "spot_price" in err  # the column list
    err = usage_error(capsys, "show", "--store", str(store), "--where", "score<high")
    assert "text" in err and "= and !=" in err
    err = usage_error(capsys, "show", "--store", str(store), "--where", "spot_price<cheap")
    assert "numeric" in err
    err = usage_error(capsys, "show", "--store", str(store), "--where", "spot_price~0.1")
    assert "COLUMN OP VALUE" in err


# --- missing stores and run times ------------------------------------------------------------


def test_a_missing_store_or_run_time_exits_2_and_an_empty_store_shows_no_rows(
    store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: both printed "no data yet" and exited 0."""
    err = usage_error(capsys, "show", "--store", str(tmp_path / "typo"))
    assert "no store at" in err and "typo" in err
    err = usage_error(capsys, "show", "--store", str(store), "--at", "2026-03-02T00:05Z")
    assert "no run" in err and "2026-03-02T00:00:00+00:00" in err and "2026-03-02T00:10:00+00:00" in err
    # An existing store with no committed run yet: nothing to show is not an error.
    empty = show(capsys, tmp_path)
    assert empty == {"kind": "merged", "run_at": None, "total": 0, "shown": 0, "truncated": False, "rows": []}
    assert main(["show", "--store", str(tmp_path)]) == EXIT_OK
    assert "no merged data yet" in capsys.readouterr().out
    err = usage_error(capsys, "show", "--store", str(tmp_path), "--at", "2026-03-02T00:00Z")
    assert "no committed run" in err
    assert show(capsys, store, "--at", "2026-03-02T00:00:30Z")["run_at"] == "2026-03-02T00:00:00+00:00"


# --- one timestamp format --------------------------------------------------------------------


def _times(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [t for v in value.values() for t in _times(v)]
    if isinstance(value, list):
        return [t for v in value for t in _times(v)]
    return [value] if isinstance(value, str) and LOOKS_LIKE_A_TIME.match(value) else []


def test_show_and_status_print_times_in_one_format(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Before: show --json wrote 2026-03-02T00:10:00.000Z, status --json 2026-03-02T00:10:00+00:00
    (and its own clock with microseconds)."""
    shown = show(capsys, store, "--all")
    assert main(["status", "--store", str(store), "--json"]) == EXIT_OK
    status = json.loads(capsys.readouterr().out)
    for payload in (shown, status):
        times = _times(payload)
        assert times and all(ISO_UTC.match(t) for t in times), [t for t in times if not ISO_UTC.match(t)]
    assert shown["run_at"] == status["last_run_at"] == "2026-03-02T00:10:00+00:00"
    assert {r["observed_at"] for r in shown["rows"]} <= {"2026-03-02T00:00:00+00:00", shown["run_at"]}
    # The text outputs use the same format.
    assert main(["status", "--store", str(store)]) == EXIT_OK
    assert "last run 2026-03-02T00:10:00+00:00" in capsys.readouterr().out
    assert main(["show", "--store", str(store), "--limit", "1"]) == EXIT_OK
    text = capsys.readouterr().out
    assert "2026-03-02T00:10:00+00:00" in text and "2026-03-02 00:10" not in text
