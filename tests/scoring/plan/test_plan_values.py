"""Plan values: JSON round trips through spotlake.serde, and stored values that are not plans are refused."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from plan_support import SETTINGS, any_pairs

from spotlake.errors import CorruptStoreError
from spotlake.scoring.plan import Pair, Plan, plan_calls
from spotlake.serde import dump, load


@SETTINGS
@given(pairs=any_pairs)
def test_json_round_trip(pairs: frozenset[Pair]) -> None:
    plan = plan_calls(pairs, forbidden=sorted(pairs)[:2])
    data = json.loads(json.dumps(dump(plan)))
    back = load(data, Plan, where="test")
    assert back == plan
    assert back.report.calls == plan.report.calls
    assert back.forbidden == plan.forbidden


def test_a_malformed_stored_plan_is_refused_naming_where() -> None:
    data = dump(plan_calls([("r", "s")]))
    with pytest.raises(CorruptStoreError, match="format 99"):
        load({**data, "format": 99}, Plan, where="the stored plan")
    with pytest.raises(CorruptStoreError, match="the stored plan"):
        load({**data, "calls": [{"regions": "r"}]}, Plan, where="the stored plan")
    with pytest.raises(CorruptStoreError, match="report"):
        load({k: v for k, v in data.items() if k != "report"}, Plan, where="the stored plan")
    with pytest.raises(CorruptStoreError, match="region index"):
        load({**data, "support": {"s": [7]}}, Plan, where="the stored plan")
    # The compact layout names each region once.
    assert data["regions"] == ["r"] and data["support"] == {"s": [0]}

