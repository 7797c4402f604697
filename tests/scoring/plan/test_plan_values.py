"""Plan values: JSON round trips, and stored values that are not plans are a ConfigError."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from plan_support import SETTINGS, any_pairs

from spotlake.errors import ConfigError
from spotlake.scoring.plan import Pair, Plan, plan_calls


@SETTINGS
@given(pairs=any_pairs)
def test_json_round_trip(pairs: frozenset[Pair]) -> None:
    plan = plan_calls(pairs, forbidden=sorted(pairs)[:2])
    data = json.loads(json.dumps(plan.to_json()))
    back = Plan.from_json(data)
    assert back == plan
    assert back.report.calls == plan.report.calls
    assert back.forbidden == plan.forbidden


def test_malformed_stored_plan_is_a_config_error() -> None:
    data = plan_calls([("r", "s")]).to_json()
    with pytest.raises(ConfigError, match="format"):
        Plan.from_json({**data, "format": 99})
    with pytest.raises(ConfigError, match="malformed"):
        Plan.from_json({**data, "calls": [{"regions": "r"}]})
    with pytest.raises(ConfigError, match="malformed"):
        Plan.from_json({k: v for k, v in data.items() if k != "report"})

