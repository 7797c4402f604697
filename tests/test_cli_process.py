"""The ``spotlake`` command as a process: a closed pipe, ``--version``, ``python -m spotlake``,
``--help`` contents, the emulator's ``--export`` lines and the README's by-hand emulator steps."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

import spotlake
from spotlake.cli import EXIT_BROKEN_PIPE, EXIT_OK
from spotlake.storage import open_store
from spotlake.testing.azure.identity import credentials

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def spotlake_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "spotlake", *args]


# --- a closed pipe ---------------------------------------------------------------------------


def test_output_into_a_closed_pipe_exits_141_quietly(tmp_path: Path) -> None:
    """Before: `spotlake status --json | head` could end in "unexpected BrokenPipeError" (exit 1)
    or Python's "Exception ignored ... BrokenPipeError" at exit (exit 120)."""
    proc = subprocess.Popen(
        spotlake_cmd("show", "--store", str(tmp_path), "--json"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # the reader is gone before anything is written: every write is EPIPE
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == EXIT_BROKEN_PIPE == 141
    assert err == "", err


@pytest.mark.skipif(shutil.which("head") is None, reason="needs head")
def test_a_real_pipe_into_head(tmp_path: Path) -> None:
    """The same through a shell pipeline: the first line arrives, nothing on stderr, and pipefail
    sees 141 (what a shell reports for `cat big | head`)."""
    cmd = " ".join(spotlake_cmd("status", "--store", str(tmp_path), "--json"))
    proc = subprocess.run(
        ["bash", "-o", "pipefail", "-c", f"{cmd} | head -c 1"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.stdout == "{" and proc.stderr == "" and proc.returncode in (0, EXIT_BROKEN_PIPE)


# --- --version, python -m spotlake, --help -----------------------------------------------------


def test_version_and_python_m_spotlake() -> None:
    """Before: no --version, and `python -m spotlake` was "No module named spotlake.__main__"."""
    proc = subprocess.run(spotlake_cmd("--version"), capture_output=True, text=True, check=False)
    assert proc.returncode == EXIT_OK and proc.stdout.strip() == f"spotlake {spotlake.__version__}"


def test_help_lists_defaults_and_the_environment(capsys: pytest.CaptureFixture[str]) -> None:
    """Before: neither the defaults nor the AZURE_* variables appeared in --help."""
    from spotlake.cli import main

    def help_of(*argv: str) -> str:
        with pytest.raises(SystemExit) as exit_info:
            main([*argv, "--help"])
        assert exit_info.value.code == 0
        return " ".join(capsys.readouterr().out.split())  # unwrapped

    top = help_of()
    for name in ("AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET", "AZURE_SUBSCRIPTION_IDS"):
        assert name in top
    assert "SPOTLAKE_STORE" in top and "141" in top and "10-minute grid" in top
    assert "+00:00" in top and "--version" in top
    collect = help_of("collect", "azure")
    assert "AZURE_CLIENT_SECRET" in collect
    assert "(default: ./spotlake-data)" in collect or "(default: " in collect
    assert "(default: AzureAuth)" in collect and "(default: spotlake)" in collect
    assert "(default: 15)" in collect or "(default 15)" in collect
    show = help_of("show")
    assert "(default: 20)" in show and "--all" in show and "!=" in show and ">=" in show


# --- the emulator's export lines and the README's steps ------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_emulator_export_lines_are_the_credentials_it_accepts(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "spotlake.testing.azure", "serve", "--seed", "3", "--regions", "2",
         "--sizes", "5", "--export"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(6)]
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert lines[0].startswith("#") and "test-only" in lines[0]
    env = dict(re.fullmatch(r"export (\w+)=(\S+)\n", line).groups() for line in lines[1:])  # type: ignore[union-attr]
    tenant, client, secret = credentials(3)
    assert env["AZURE_TENANT_ID"] == tenant and env["AZURE_CLIENT_ID"] == client
    assert env["AZURE_CLIENT_SECRET"] == secret and len(env["AZURE_SUBSCRIPTION_IDS"].split(",")) >= 1
    assert env["SPOTLAKE_EMULATOR_URL"].startswith("http://127.0.0.1:")


def _readme_steps() -> str:
    text = (ROOT / "README.md").read_text()
    match = re.search(r"Against the emulator[^\n]*\n\n```\n(.*?)```", text, re.S)
    assert match, "README.md lost its by-hand emulator steps"
    return match.group(1)


@pytest.mark.skipif(shutil.which("bash") is None, reason="the README's steps are bash")
def test_the_readme_emulator_steps_run_as_written(tmp_path: Path) -> None:
    """Before: the steps failed with "AZURE_TENANT_ID ... are not set" (the credentials the
    emulator printed were never exported). Run with bash, in a fresh directory, with the venv on
    PATH; only the port is changed (8080 may be taken)."""
    steps = _readme_steps()
    assert "--port 8080" in steps and "--export" in steps
    script = "set -e\n" + steps.replace("--port 8080", f"--port {_free_port()}")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE_", "SPOTLAKE_"))}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    proc = subprocess.run(
        ["bash", "-c", script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    runs = re.findall(r"^run (\S+)  desired count", proc.stdout, re.M)
    assert len(runs) == 1 and re.fullmatch(r"\S+T\d\d:\d0:00\+00:00", runs[0])  # on the grid
    assert "rows)" in proc.stdout and "Traceback" not in proc.stderr
    assert "High" in proc.stdout  # score=high matched the stored "High"
    store = open_store(str(tmp_path / "spotlake-data"))
    assert store.run_times("merged") == [datetime.fromisoformat(runs[0])]
