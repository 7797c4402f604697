"""Progress output (terminal vs log file) and Slack notification (never leaks the webhook)."""

from __future__ import annotations

import io
import json
import logging
import time

import httpx
import pytest

from spotlake.model import Secret
from spotlake.notify import SlackNotifier
from spotlake.progress import Progress, ProgressBoard

HOOK = "https://hooks.slack.example/services/T000/B000/very-secret-token"


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_in_a_log_file_prints_a_few_lines() -> None:
    out = io.StringIO()
    bar = Progress("prices", stream=out)
    for i in range(1, 201):
        bar(i, 200)
    bar.close("200 pages")
    lines = out.getvalue().splitlines()
    assert len(lines) == 5  # 25 %, 50 %, 75 %, 100 % and the summary
    assert lines[-1].startswith("prices: 200 pages")


def test_progress_on_a_terminal_redraws_one_line() -> None:
    out = Tty()
    bar = Progress("sps", stream=out)
    bar(5, 5)
    bar.close()
    assert out.getvalue().count("\n") == 1 and "\r" in out.getvalue()


def test_concurrent_bars_share_one_terminal_line() -> None:
    out = Tty()
    board = ProgressBoard(stream=out)
    prices, sps = board.bar("prices"), board.bar("sps")
    prices(10, 200)
    time.sleep(0.11)  # redraws are throttled to 10 per second
    sps(3, 40)
    assert out.getvalue().count("\n") == 0
    last = out.getvalue().rsplit("\r", 1)[-1]
    assert "prices [" in last and "10/200" in last and "sps [" in last and "3/40" in last
    prices.close("200 pages")
    # The summary gets its own line; the remaining bar is redrawn below it.
    assert out.getvalue().count("\n") == 1
    text = out.getvalue()
    assert "prices: 200 pages" in text and text.rsplit("\n", 1)[-1].startswith("\rsps [")
    board.close()
    assert out.getvalue().endswith("\n") and out.getvalue().count("\n") == 2


def test_concurrent_bars_in_a_log_file_keep_their_own_lines() -> None:
    out = io.StringIO()
    board = ProgressBoard(stream=out)
    prices, sps = board.bar("prices"), board.bar("sps")
    for i in range(1, 5):
        prices(i, 4)
        sps(i, 4)
    board.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 8 and sum(line.startswith("sps [") for line in lines) == 4


def test_a_bar_never_drawn_leaves_no_blank_line_and_double_close_is_harmless() -> None:
    out = Tty()
    board = ProgressBoard(stream=out)
    idle = board.bar("order search")  # e.g. the plan already met the bound: never called
    idle.close()
    idle.close()
    assert out.getvalue() == ""
    drawn, silent = board.bar("prices"), board.bar("sps")
    drawn(1, 2)
    drawn.close()  # the line shows its last state; the other bar has nothing to show
    silent.close()
    assert out.getvalue().count("\n") == 1 and "1/2" in out.getvalue()


def test_quiet_progress_prints_nothing() -> None:
    out = io.StringIO()
    bar = Progress("x", stream=out, quiet=True)
    bar(1, 2)
    bar.close("done")
    assert out.getvalue() == ""


def test_slack_notification_is_sent() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, text="ok")

    notifier = SlackNotifier(webhook=Secret(HOOK), transport=httpx.MockTransport(handler))
    assert notifier.notify("run failed", "details")
    assert str(seen[0].url) == HOOK
    assert json.loads(seen[0].content)["text"].startswith("*run failed*")
    assert "very-secret" not in repr(notifier)


@pytest.mark.parametrize("failure", ["status", "network"])
def test_a_failed_notification_never_logs_the_webhook(failure: str, caplog: pytest.LogCaptureFixture) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if failure == "network":
            raise httpx.ConnectError(f"cannot connect to {request.url}")
        return httpx.Response(404, text="no_service")

    notifier = SlackNotifier(webhook=Secret(HOOK), transport=httpx.MockTransport(handler))
    with caplog.at_level(logging.DEBUG):
        assert notifier.notify("t", "x") is False
    assert caplog.records, "the failure is logged"
    assert "very-secret" not in caplog.text
