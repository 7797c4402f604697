"""Canary secrets never leave spotlake, on any output channel, in any case or encoding.

The canaries: a client secret the emulator is told to accept (or that it refuses), a Slack webhook
URL whose path is a canary (served by a loopback HTTP server started here), and every access token
the emulator issues, whole or cut short. Real failure paths run through the public seams (the
emulator and its faults, ``spotlake.cli.main`` with ``-v --json --slack``, ``run_cycle``), and every
channel is searched: stdout, stderr, every log record at DEBUG from every logger (and, before any
handler's filter, the records of spotlake's own loggers), the Slack request bodies, every file
written in the store, the reports and errors. A channel leaks when a canary shows in it as it is,
lower-cased, or percent-decoded.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx
import pandas as pd
import pytest

from pipeline_support import T0, in_process_access, small_world
from spotlake.cli import EXIT_FAILED, main
from spotlake.clock import FakeClock
from spotlake.model import Secret
from spotlake.notify import SlackNotifier
from spotlake.pipeline import RunStatus, run_cycle
from spotlake.serde import dump
from spotlake.storage import open_store
from spotlake.testing.azure import AzureEmulator, Faults, Reply
from spotlake.testing.faults import fault_matrix

#: Shaped like an Entra ID client secret.
CANARY_SECRET = "Qk8~CanaryClientSecret.v7Jm-4Lp2Rt9Wz5Yk1"
#: The secret part of the webhook URL.
CANARY_HOOK = "CanaryHookSecretXq7Lm2pR5tV8wY1z"
HOOK_PATH = f"/services/T0CANARY1/B0CANARY2/{CANARY_HOOK}"
#: Base64url of '{"typ":"JWT"': how every token the emulator issues begins.
JWT_HEAD = "eyJ0eXAiOiJKV1Qi"
# Token-endpoint fault seeds (each test checks that the fault did cut a token answer in half):
#: for the CLI run (rate 0.5): some token answers cut, the run recovers and commits;
CLI_TRUNCATED_SEED = 8
#: for the spotlake process (rate 0.5, with SPS answering 403): token answers cut, then the 403.
PROCESS_TRUNCATED_SEED = 1


def truncating(rate: float, seed: int) -> Faults:
    return Faults(token=fault_matrix("token", kinds=["truncated"], rate=rate, seed=seed)["truncated"])


class RecordingEmulator(AzureEmulator):
    """The Azure emulator, noting every access token it issues or receives: whole, or cut short.

    With ``faultless_discovery`` the OpenID configuration (which the token faults would cut too) is
    answered by a fault-free twin, so that every token request is hit by the token faults."""

    def __init__(self, *args: Any, faultless_discovery: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.tokens: set[str] = set()
        self.cut_tokens: list[str] = []
        self._twin = (
            AzureEmulator(self.world, clock=self.clock, seed=self.seed) if faultless_discovery else None
        )

    def handle(self, method: str, url: str, headers: Mapping[str, str], body: bytes) -> Reply:
        if self._twin is not None and method.upper() == "GET" and "openid-configuration" in url.lower():
            return self._twin.handle(method, url, headers, body)
        reply = super().handle(method, url, headers, body)
        auth = {k.lower(): v for k, v in headers.items()}.get("authorization", "")
        if auth.lower().startswith("bearer "):
            self.tokens.add(auth[7:].strip())
        text = reply.body.decode("utf-8", "replace")
        found = re.search(r'"access_token"\s*:\s*"([^"]*)', text)
        if reply.endpoint == "token" and found:
            (self.tokens.add if found[0] + '"' in text else self.cut_tokens.append)(found[1])
        return reply


class SlackServer(ThreadingHTTPServer):
    """A loopback stand-in for Slack: answers 200 to every POST and keeps the path and the body."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, bytes]] = []
        super().__init__(("127.0.0.1", 0), _SlackHandler)


class _SlackHandler(BaseHTTPRequestHandler):
    server: SlackServer

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        self.server.requests.append((self.path, body))
        self.send_response(200)
        self.send_header("content-type", "text/plain")
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: Any) -> None:  # never print the path
        pass


@pytest.fixture
def slack() -> Iterator[SlackServer]:
    server = SlackServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def webhook(server: SlackServer, spelling: str) -> str:
    """The canary webhook URL, spelled as configured: plainly; upper-cased (httpx logs it lower-cased);
    with one character percent-escaped; with a character httpx escapes when it logs the URL."""
    base = f"http://127.0.0.1:{server.server_address[1]}"
    if spelling == "upper-case":
        return f"HTTP://127.0.0.1:{server.server_address[1]}{HOOK_PATH.upper()}"
    if spelling == "escaped":
        i = len(HOOK_PATH) - 8
        return f"{base}{HOOK_PATH[:i]}%{ord(HOOK_PATH[i]):02X}{HOOK_PATH[i + 1 :]}"
    if spelling == "escaped-by-httpx":
        return f"{base}{HOOK_PATH}\u00e9"
    return base + HOOK_PATH


class Canaries:
    """The secrets to look for, and every channel's text."""

    def __init__(self, emu: RecordingEmulator) -> None:
        self.emu = emu
        self.channels: dict[str, str] = {}

    def secrets(self) -> list[str]:
        found = [CANARY_SECRET, CANARY_HOOK, JWT_HEAD]
        for token in self.emu.tokens:
            found += [token, token.rsplit(".", 1)[-1]]  # the whole token, and its signature alone
        found += [cut[:40] for cut in self.emu.cut_tokens]
        return found

    def add(self, channel: str, text: str) -> None:
        self.channels[channel] = self.channels.get(channel, "") + "\n" + text

    def assert_none_leaked(self) -> None:
        leaks = []
        for channel, text in self.channels.items():
            forms = {text, unquote(text), unquote(unquote(text)), text.replace("\\/", "/")}
            lowered = [form.lower() for form in forms]
            for secret in self.secrets():
                if any(secret.lower() in form for form in lowered):
                    where = text.lower().find(secret.lower())
                    leaks.append(
                        f"{channel}: {secret[:12]}... near {text[max(0, where - 80) : where + 40]!r}"
                    )
        assert not leaks, "\n".join(leaks)


class RawRecords(logging.Handler):
    """spotlake's own records as logged, before any handler's filter (mounted on the ``spotlake``
    logger, whose handlers run before the root logger's): they must be clean at construction."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())
        if record.exc_info:
            self.lines.append(logging.Formatter().formatException(record.exc_info))


@pytest.fixture
def raw_records() -> Iterator[RawRecords]:
    handler = RawRecords()
    logger = logging.getLogger("spotlake")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


def store_text(root: Path) -> str:
    """Every file under ``root``: its bytes (unzipped when gzip), and parquet tables as CSV."""
    parts = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        data = path.read_bytes()
        if data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
        parts.append(f"== {path.relative_to(root)}\n{data.decode('latin-1')}")
        if path.suffix == ".parquet":
            parts.append(pd.read_parquet(path).to_csv(index=False))
    return "\n".join(parts)


def collect_args(url: str, store: Path) -> list[str]:
    return ["collect", "azure", "--endpoint", url, "--store", str(store), "--at", T0.isoformat()]


def recording_emulator(**kwargs: Any) -> RecordingEmulator:
    return RecordingEmulator(small_world(), clock=FakeClock(T0), **kwargs)


def set_env(monkeypatch: pytest.MonkeyPatch, emu: AzureEmulator, *, secret: str, hook: str) -> None:
    monkeypatch.setenv("AZURE_TENANT_ID", emu.tenant_id)
    monkeypatch.setenv("AZURE_CLIENT_ID", emu.client_id)
    monkeypatch.setenv("AZURE_CLIENT_SECRET", secret)
    monkeypatch.setenv("AZURE_SUBSCRIPTION_IDS", ",".join(emu.subscriptions))
    monkeypatch.setenv("SPOTLAKE_SLACK_WEBHOOK_URL", hook)


SCENARIOS = {
    # Token answers cut in half: the body held half an access token (the run recovers: the failure
    # is transient and retried).
    "truncated-token": {"accept": True},
    # The client secret refused: 401 invalid_client, the run fails and Slack is told.
    "wrong-secret-401": {"accept": False},
    # Tokens issued, then SPS answers 403 on every subscription: the run fails and Slack is told.
    "sps-403": {"accept": True},
}


@pytest.mark.parametrize(
    ("scenario", "spelling"),
    [
        ("truncated-token", "plain"),
        ("wrong-secret-401", "plain"),
        ("wrong-secret-401", "upper-case"),
        ("wrong-secret-401", "escaped"),
        ("sps-403", "plain"),
        ("sps-403", "upper-case"),
        ("sps-403", "escaped-by-httpx"),
    ],
)
def test_no_canary_on_any_channel_of_a_cli_run(
    scenario: str,
    spelling: str,
    slack: SlackServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    raw_records: RawRecords,
) -> None:
    caplog.set_level(logging.DEBUG)  # every logger, through the root logger
    faults = None
    if scenario == "truncated-token":
        faults = truncating(0.5, CLI_TRUNCATED_SEED)
    emu = recording_emulator(
        faults=faults,
        forbidden_subscriptions=tuple(small_world().subscriptions) if scenario == "sps-403" else (),
    )
    if SCENARIOS[scenario]["accept"]:
        emu.client_secret = CANARY_SECRET  # the emulator reads it when it answers a token request
    set_env(monkeypatch, emu, secret=CANARY_SECRET, hook=webhook(slack, spelling))
    store = tmp_path / "store"
    with emu.serve() as url:
        code = main([*collect_args(url, store), "--json", "-v", "--quiet", "--slack"])
    out, err = capsys.readouterr()
    report = json.loads(out)

    # The failure really happened, and really went through the secrets ...
    assert emu.stats.count("token") > 0
    assert {"truncated-token": emu.cut_tokens, "wrong-secret-401": emu.stats.count("token", 401)}.get(
        scenario, emu.stats.count("sps", 403)
    ), "the fault was hit"
    assert any(r.name.startswith("httpx") for r in caplog.records), "requests were logged"
    if report["status"] == "failed":
        assert len(slack.requests) == 1, "Slack was told"
        path, body = slack.requests[0]
        assert unquote(path).lower().startswith(HOOK_PATH.lower())
        assert report["error_type"] in json.loads(body)["text"]

    # ... and no channel shows a secret,
    canaries = Canaries(emu)
    canaries.add("stdout (--json)", out)
    canaries.add("stderr", err)
    canaries.add("log records (DEBUG, every logger)", caplog.text)
    canaries.add("log messages", "\n".join(r.getMessage() for r in caplog.records))
    canaries.add("spotlake log records before any filter", "\n".join(raw_records.lines))
    canaries.add("Slack requests", "\n".join(b.decode("utf-8", "replace") for _, b in slack.requests))
    canaries.add("store files", store_text(store))
    canaries.assert_none_leaked()

    # and the run ended as it should: a cut token answer is transient (retried, so the run almost
    # always recovers; which collector gets the cut answers depends on timing) and never an AuthError.
    if scenario == "truncated-token":
        assert emu.stats.count("token", 200) > 2 and report.get("error_type") != "AuthError", report
        assert report["status"] == "committed" or "token endpoint failed" in report["error"], report
        return
    assert code == EXIT_FAILED, report
    if scenario == "wrong-secret-401":
        assert not emu.tokens and report["error_type"] == "AuthError"
    else:
        assert emu.tokens and report["error_type"] == "AuthError" and "403" in report["error"]


@pytest.mark.parametrize("scenario", ["truncated-token", "sps-403"])
def test_no_canary_in_the_reports_errors_and_slack_messages_of_the_library(
    scenario: str, tmp_path: Path, caplog: pytest.LogCaptureFixture, raw_records: RawRecords
) -> None:
    """``run_cycle`` in-process: the RunReport (repr, str, JSON), the Slack message."""
    caplog.set_level(logging.DEBUG)
    faults = None
    if scenario == "truncated-token":  # every token answer cut: the run fails
        faults = truncating(1.0, 0)
    emu = recording_emulator(
        faults=faults,
        faultless_discovery=True,
        forbidden_subscriptions=tuple(small_world().subscriptions) if scenario == "sps-403" else (),
    )
    emu.client_secret = CANARY_SECRET  # in_process_access gives the emulator's credentials
    access = in_process_access(emu)
    sent: list[bytes] = []

    def slack(request: httpx.Request) -> httpx.Response:
        sent.append(request.content)
        return httpx.Response(200, text="ok")

    notifier = SlackNotifier(
        webhook=Secret(f"https://HOOKS.SLACK.COM{HOOK_PATH}"), transport=httpx.MockTransport(slack)
    )
    report = run_cycle(
        T0, store=open_store(str(tmp_path / "store")), azure=access, notifier=notifier, clock=FakeClock(T0)
    )
    assert report.status is RunStatus.FAILED and sent
    assert emu.cut_tokens if scenario == "truncated-token" else emu.tokens, "the fault was hit"
    canaries = Canaries(emu)
    canaries.add("report repr", repr(report))
    canaries.add("report str", str(report))
    canaries.add("report JSON", json.dumps(dump(report), default=str))
    canaries.add("Slack message", b"\n".join(sent).decode())
    canaries.add("spotlake log records before any filter", "\n".join(raw_records.lines))
    canaries.add("store files", store_text(tmp_path / "store"))
    canaries.assert_none_leaked()
    if scenario == "truncated-token":  # reported as the transient failure it is
        assert report.error_type == "IncompleteDataError" and "token endpoint failed" in (report.error or "")
    else:
        assert report.error_type == "AuthError"


def test_no_canary_on_the_real_stderr_of_a_spotlake_process(slack: SlackServer, tmp_path: Path) -> None:
    """The command as a user runs it: its own logging handler on stderr (``-v``), nothing of pytest's."""
    emu = recording_emulator(
        faults=truncating(0.5, PROCESS_TRUNCATED_SEED),
        forbidden_subscriptions=tuple(small_world().subscriptions),
    )
    emu.client_secret = CANARY_SECRET
    env = {
        **os.environ,
        "AZURE_TENANT_ID": emu.tenant_id,
        "AZURE_CLIENT_ID": emu.client_id,
        "AZURE_CLIENT_SECRET": CANARY_SECRET,
        "AZURE_SUBSCRIPTION_IDS": ",".join(emu.subscriptions),
        "SPOTLAKE_SLACK_WEBHOOK_URL": webhook(slack, "upper-case"),
    }
    with emu.serve() as url:
        proc = subprocess.run(
            [sys.executable, "-m", "spotlake.cli", *collect_args(url, tmp_path / "store"), "-v", "--slack"],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            check=False,
        )
    assert proc.returncode == EXIT_FAILED, proc.stderr[-2000:]
    assert emu.cut_tokens and slack.requests
    assert "HTTP Request: POST" in proc.stderr and "spotlake.pipeline" in proc.stderr  # -v logged
    canaries = Canaries(emu)
    canaries.add("stdout", proc.stdout)
    canaries.add("stderr", proc.stderr)
    canaries.add("Slack requests", "\n".join(b.decode() for _, b in slack.requests))
    canaries.add("store files", store_text(tmp_path / "store"))
    canaries.assert_none_leaked()
    assert emu.tokens and emu.stats.count("sps", 403), "the cut token answer was retried; SPS said 403"


def test_the_canary_check_finds_a_leak() -> None:
    """The checker itself: a canary in any case or encoding is found."""
    emu = recording_emulator()
    emu.tokens.add(f"{JWT_HEAD}J9.eyJhdWQiOiJ4In0.c2lnbmF0dXJlMTIzNDU2Nzg")
    for text in (
        CANARY_SECRET.upper(),
        f"url=http%3A%2F%2F127.0.0.1%2Fservices%2FT%2FB%2F{CANARY_HOOK}",
        f"http://127.0.0.1/services/T/B/{CANARY_HOOK[:8]}%{ord(CANARY_HOOK[8]):02x}{CANARY_HOOK[9:]}",
        "sig c2lnbmF0dXJlMTIzNDU2Nzg",
    ):
        canaries = Canaries(emu)
        canaries.add("sample", f"before {text} after")
        with pytest.raises(AssertionError):
            canaries.assert_none_leaked()
