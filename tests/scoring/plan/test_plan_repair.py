"""Repair (values learned invalid leave the plan, the rest stays covered) and restricted plans."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from plan_support import SETTINGS, any_pairs, assert_valid

from spotlake.scoring.plan import Pair, plan_calls, repair_plan, restrict_plan


@SETTINGS
@given(pairs=any_pairs, data=st.data())
def test_repair_drops_invalid_values_and_keeps_the_rest_covered(
    pairs: frozenset[Pair], data: st.DataObject
) -> None:
    plan = plan_calls(pairs)
    regions = sorted({r for r, _ in pairs})
    sizes = sorted({s for _, s in pairs})
    bad_regions = data.draw(st.lists(st.sampled_from(regions), max_size=2)) if regions else []
    bad_sizes = data.draw(st.lists(st.sampled_from(sizes), max_size=3)) if sizes else []
    bad_pairs = data.draw(st.lists(st.sampled_from(sorted(pairs)), max_size=4)) if pairs else []
    repaired = repair_plan(
        plan, invalid_regions=bad_regions, invalid_sizes=bad_sizes, invalid_pairs=bad_pairs
    )
    expected = frozenset(
        (r, s) for r, s in pairs if r not in bad_regions and s not in bad_sizes and (r, s) not in bad_pairs
    )
    assert repaired.support == expected
    assert_valid(repaired, expected)
    scored = repaired.covered()
    assert not scored & set(bad_pairs)
    assert not {r for r, _ in scored} & set(bad_regions)
    assert not {s for _, s in scored} & set(bad_sizes)
    # Removing values never needs more calls than the plan had plus one split per call an invalid
    # pair sits in (calls may overlap, so one pair can sit in several).
    splits = sum(1 for call in plan.calls for pair in set(bad_pairs) if pair in call.pairs())
    assert repaired.report.calls <= plan.report.calls + splits


def test_restrict_plan_covers_only_the_subset() -> None:
    pairs = frozenset((f"r{i}", f"s{j}") for i in range(12) for j in range(12) if (i + j) % 3)
    plan = plan_calls(pairs)
    sub = restrict_plan(plan, sizes=["s1", "s2"], regions=[f"r{i}" for i in range(6)])
    expected = frozenset((r, s) for r, s in pairs if s in {"s1", "s2"} and int(r[1:]) < 6)
    assert sub.support == expected
    assert_valid(sub, expected)
    assert {s for c in sub.calls for s in c.sizes} <= {"s1", "s2"}

