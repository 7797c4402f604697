"""The plan summary the CLI prints: quota arithmetic and the text layout."""

from __future__ import annotations

import math

import pytest

from spotlake.errors import ConfigError
from spotlake.scoring.plan import format_summary, plan_calls, plan_summary


def test_plan_summary_counts_subscriptions() -> None:
    pairs = [(f"r{i}", f"s{j}") for i in range(9) for j in range(50)]
    plan = plan_calls(pairs)
    assert plan.report.calls == 20  # 50 sizes -> 10 chunks of 5, 9 regions -> 2 blocks each
    summary = plan_summary(plan)
    assert summary["calls_per_hour"] == 120  # every 10 minutes
    assert summary["locations"] == 9
    assert summary["subscriptions"] == math.ceil(120 / (10 * 9))
    assert plan_summary(plan, quota_per_hour=10, interval_minutes=10, locations=1)["subscriptions"] == 12
    text = format_summary(summary)
    assert "20 (<= 8 regions x 5 sizes each)" in text
    assert "subscriptions" in text and "lower bound" in text
    with pytest.raises(ConfigError):
        plan_summary(plan, quota_per_hour=0)
    with pytest.raises(ConfigError):
        plan_summary(plan, locations=0)
