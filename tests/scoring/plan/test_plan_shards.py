"""Shards partition a plan and merge back into it; impossible shard requests are a PlanError."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from plan_support import SETTINGS, any_pairs

from spotlake.errors import PlanError
from spotlake.scoring.plan import Pair, merge_plans, plan_calls, shard_of, shard_plan


@SETTINGS
@given(pairs=any_pairs, shards=st.integers(1, 7))
def test_shards_partition_the_plan(pairs: frozenset[Pair], shards: int) -> None:
    plan = plan_calls(pairs)
    parts = shard_plan(plan, shards)
    assert len(parts) == shards
    assert [c for p in parts for c in p.calls] == list(plan.calls)
    sizes = [len(p.calls) for p in parts]
    assert max(sizes) - min(sizes) <= 1
    seen: set[Pair] = set()
    for part in parts:
        assert not seen & part.support, "a pair belongs to two shards"
        assert part.support <= part.covered()
        seen |= part.support
    assert seen == plan.support
    merged = merge_plans(parts)
    assert merged == plan
    assert [shard_of(plan, i, shards).calls for i in range(shards)] == [p.calls for p in parts]


def test_bad_shard_input_is_a_plan_error() -> None:
    plan = plan_calls([("r", "s")])
    with pytest.raises(PlanError):
        shard_plan(plan, 0)
    with pytest.raises(PlanError):
        shard_of(plan, 3, 3)
    with pytest.raises(PlanError):
        merge_plans([])
    with pytest.raises(PlanError, match="different call limits"):
        merge_plans([plan, plan_calls([("r", "s")], max_regions=4)])
