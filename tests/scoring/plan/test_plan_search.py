"""The order search: it reaches the proven optimum where the plain plan misses it, and keeps every
guarantee of a plan."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from plan_support import REGIONS, SETTINGS, SIZES, any_pairs, assert_valid, limits

from spotlake.scoring.plan import Pair, plan_calls


@pytest.mark.parametrize("seed", [0, 2])
def test_order_search_reaches_the_proven_optimum(seed: int) -> None:
    """On these worlds the plain plan is one call above the lower bound; the search meets it."""
    from spotlake.testing.world import World

    pairs = World.generate(seed, n_regions=20, n_sizes=120, layout="family").support_pairs()
    plain = plan_calls(pairs)
    searched = plan_calls(pairs, search=8)
    assert_valid(searched, pairs)
    assert plain.report.calls == plain.report.lower_bound + 1
    assert searched.report.calls == searched.report.lower_bound  # optimal
    assert searched.report.strategy.endswith("/8)") and "+order-search(" in searched.report.strategy
    assert plan_calls(pairs, search=8) == searched  # deterministic


@SETTINGS
@given(pairs=any_pairs, lim=limits, data=st.data())
def test_order_search_keeps_every_guarantee(
    pairs: frozenset[Pair], lim: tuple[int, int], data: st.DataObject
) -> None:
    """Under the renumbered orders the search still covers every pair within the limits, never scores
    a forbidden cell, and calls ``progress`` only when there is something to search for."""
    cells = st.tuples(st.sampled_from(REGIONS), st.sampled_from(SIZES))
    forbidden = frozenset(data.draw(st.lists(cells, max_size=10)))
    plain = plan_calls(pairs, max_regions=lim[0], max_sizes=lim[1], forbidden=forbidden)
    seen: list[tuple[int, int | None]] = []
    searched = plan_calls(
        pairs,
        max_regions=lim[0],
        max_sizes=lim[1],
        forbidden=forbidden,
        search=3,
        progress=lambda d, t: seen.append((d, t)),
    )
    assert_valid(searched, pairs - forbidden, *lim)
    assert not searched.covered() & forbidden
    assert searched.report.calls <= plain.report.calls
    if plain.report.calls > plain.report.lower_bound:
        assert seen and seen[-1] == (3, 3)
    else:
        assert not seen  # nothing to search for: the plain plan is optimal

