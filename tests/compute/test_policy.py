"""Each policy object alone and composed: filters, rankers, the mix, fallback, presets."""

from __future__ import annotations

import random
from datetime import timedelta

import numpy as np
import pytest
from compute_support import T0, market, on_demand, pool, spot

from spotlake.compute.book import OfferBook
from spotlake.compute.health import Block, BreakerState, Scope
from spotlake.compute.launch.base import LaunchFailure
from spotlake.compute.policy.base import Context, FloatArray, Ranker
from spotlake.compute.policy.fallback import Fallback, FallbackAction
from spotlake.compute.policy.filters import AllowedPools, Fits, Fresh, Healthy, MaxPrice, MinScore
from spotlake.compute.policy.mix import CapacityMix, Split
from spotlake.compute.policy.presets import PRESETS, preset
from spotlake.compute.policy.rankers import ByEviction, ByPrice, ByScore, PriceCapacity, ScoreAtLeast
from spotlake.compute.values import CapacityRequest, CapacityType, Cloud, Offer, TaskClass
from spotlake.errors import ConfigError


def ctx(offers: list[Offer], request: CapacityRequest | None = None, **kw: object) -> Context:
    return Context(book=OfferBook.of(offers), request=request or CapacityRequest(count=1), now=T0, **kw)  # type: ignore[arg-type]


def kept(f: object, c: Context) -> list[str]:
    mask = f(c)  # type: ignore[operator]
    return [str(o.pool) + "/" + o.capacity_type for o, k in zip(c.book.offers, mask, strict=True) if k]


def ranked(r: Ranker, c: Context) -> list[str]:
    return [
        c.book.offers[i].pool.zone or c.book.offers[i].pool.instance_type
        for i in r.order(c, np.ones(len(c.book), dtype=bool))
    ]


# --- filters -------------------------------------------------------------------------------------


def test_fits_keeps_what_the_request_allows_and_says_what_it_asked() -> None:
    offers = [
        spot(vcpus=2),
        spot("us-east-1b", vcpus=8),
        spot("us-west-2a", vcpus=8),
        on_demand(vcpus=8, instance_type="c5.2xlarge"),
    ]
    c = ctx(offers, CapacityRequest(count=1, min_vcpus=4, regions=["us-east-1"], families="m5"))
    assert kept(Fits(), c) == ["aws:us-east-1b:m5.xlarge/spot"]
    assert "at least 4 vCPUs" in Fits().reason(c, np.ones(4, dtype=bool))


def test_max_price_uses_the_request_cap_or_its_own() -> None:
    c = ctx(market(), CapacityRequest(count=1, max_price=0.07))
    assert len(kept(MaxPrice(), c)) == 2
    assert len(kept(MaxPrice(0.2), c)) == 4
    assert "0.07 $/h" in MaxPrice().reason(c, np.ones(5, dtype=bool))
    assert len(kept(MaxPrice(), ctx(market()))) == 5  # no cap: everything


def test_min_score_concerns_spot_only_and_unknown_scores_are_kept_unless_required() -> None:
    offers = [*market(), spot("us-east-1d", score=None)]
    c = ctx(offers)
    got = kept(MinScore(0.7), c)
    assert "aws:us-east-1a:m5.xlarge/spot" not in got  # 3/10
    assert {"aws:us-east-1b:m5.xlarge/spot", "aws:us-east-1d:m5.xlarge/spot"} <= set(got)
    assert sum(g.endswith("on-demand") for g in got) == 2
    assert "aws:us-east-1d:m5.xlarge/spot" not in kept(MinScore(0.7, require=True), c)


def test_fresh_drops_old_data_and_keeps_undated_catalog_rows() -> None:
    offers = [
        spot(observed_at=T0 - timedelta(hours=2)),
        spot("us-east-1b", observed_at=T0),
        spot("us-east-1c", observed_at=None),
    ]
    assert kept(Fresh(timedelta(hours=1)), ctx(offers)) == [
        "aws:us-east-1b:m5.xlarge/spot",
        "aws:us-east-1c:m5.xlarge/spot",
    ]


def test_allowed_pools() -> None:
    assert kept(AllowedPools({pool("us-east-1b")}), ctx(market())) == ["aws:us-east-1b:m5.xlarge/spot"]


def test_healthy_drops_blocked_scopes_and_open_breakers() -> None:
    until = T0 + timedelta(minutes=3)
    zone_block = Block(
        scope=Scope(
            capacity_type=CapacityType.SPOT,
            cloud=Cloud.AWS,
            region="us-east-1",
            zone="us-east-1a",
            instance_type="m5.xlarge",
        ),
        until=until,
        reason="no-capacity",
    )
    c = ctx(market(), blocks=(zone_block,))
    assert "aws:us-east-1a:m5.xlarge/spot" not in kept(Healthy(), c)
    assert len(kept(Healthy(), c)) == 4
    region_block = Block(
        scope=Scope(capacity_type=CapacityType.SPOT, cloud=Cloud.AWS, region="us-east-1"),
        until=until,
        reason="spot-limit",
    )
    assert all(k.endswith("on-demand") for k in kept(Healthy(), ctx(market(), blocks=(region_block,))))
    c = ctx(
        market(), breakers={CapacityType.SPOT: BreakerState.OPEN, CapacityType.ON_DEMAND: BreakerState.CLOSED}
    )
    assert all(k.endswith("on-demand") for k in kept(Healthy(), c))
    assert Healthy().reason(c, np.ones(5, dtype=bool)) == "blocked: the spot breaker is open"
    half = ctx(market(), breakers={CapacityType.SPOT: BreakerState.HALF_OPEN})
    assert len(kept(Healthy(), half)) == 5  # half-open lets a probe through


def test_filters_compose_with_and() -> None:
    both = Fits() & MaxPrice(0.07) & MinScore(0.5)
    assert [f.name for f in both.filters][1:] == [
        "above the maximum price",
        "placement score below 0.50 of its scale",
    ]
    assert kept(both, ctx(market())) == ["aws:us-east-1b:m5.xlarge/spot"]


# --- rankers -------------------------------------------------------------------------------------


def test_by_price_is_per_unit_of_the_request() -> None:
    offers = [on_demand(price=0.192), on_demand(instance_type="m5.2xlarge", price=0.3, vcpus=8)]
    assert ranked(ByPrice(), ctx(offers, CapacityRequest(count=1))) == ["m5.xlarge", "m5.2xlarge"]
    assert ranked(ByPrice(), ctx(offers, CapacityRequest(vcpus=8))) == ["m5.2xlarge", "m5.xlarge"]


def test_score_and_eviction_rankers_put_unknowns_last() -> None:
    offers = [*market()[:3], spot("us-east-1d")]
    assert ranked(ByScore(), ctx(offers)) == ["us-east-1c", "us-east-1b", "us-east-1a", "us-east-1d"]
    assert ranked(ByEviction(), ctx(offers)) == ["us-east-1c", "us-east-1b", "us-east-1a", "us-east-1d"]


def test_lexicographic_score_at_least_then_price() -> None:
    r = ScoreAtLeast(0.7).then(ByPrice())
    assert ranked(r, ctx(market()[:3])) == ["us-east-1b", "us-east-1c", "us-east-1a"]
    assert repr(r) == "ScoreAtLeast(0.70) then ByPrice()"


def test_price_capacity_trades_price_for_availability() -> None:
    offers = market()[:3]
    assert ranked(PriceCapacity(risk=0), ctx(offers)) == ["us-east-1a", "us-east-1b", "us-east-1c"]
    assert ranked(PriceCapacity(risk=1), ctx(offers)) == ["us-east-1b", "us-east-1c", "us-east-1a"]
    assert ranked(PriceCapacity(risk=4), ctx(offers)) == ["us-east-1c", "us-east-1b", "us-east-1a"]
    with pytest.raises(ConfigError):
        PriceCapacity(risk=-1)


def test_order_never_depends_on_input_order() -> None:
    offers = [spot(f"us-east-1{z}", price=0.05) for z in "abcdef"] + market()
    c = ctx(offers)
    want = ranked(ByPrice(), c)
    for seed in range(5):
        shuffled = offers[:]
        random.Random(seed).shuffle(shuffled)
        assert ranked(ByPrice(), ctx(shuffled)) == want


def test_a_new_policy_in_ten_lines() -> None:
    class PreferZone(Ranker):
        def __init__(self, zone: str) -> None:
            self.zone = zone

        def __call__(self, ctx: Context) -> FloatArray:
            key: FloatArray = (ctx.book.zone != self.zone).astype(float)
            return key

    policy = preset("cost_optimized").with_spot_ranker(PreferZone("us-east-1c").then(ByPrice()))
    assert ranked(policy.spot_ranker, ctx(market()[:3])) == ["us-east-1c", "us-east-1a", "us-east-1b"]


# --- the mix -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mix", "total", "want"),
    [
        (CapacityMix(70), 10, Split(3, 7)),
        (CapacityMix(70), 1, Split(0, 1)),  # 0.3 rounds to 0 on-demand
        (CapacityMix(50), 1, Split(1, 0)),  # a half goes to on-demand
        (CapacityMix(30), 1, Split(1, 0)),
        (CapacityMix(70, base=2), 12, Split(5, 7)),
        (CapacityMix(70, base=20), 12, Split(12, 0)),  # the base first, even above the total
        (CapacityMix(100), 5, Split(0, 5)),
        (CapacityMix(0), 5, Split(5, 0)),
        (CapacityMix(70), 45, Split(14, 31)),  # 13.5 -> 14 on-demand
    ],
)
def test_mix_split_and_its_rounding_rule(mix: CapacityMix, total: int, want: Split) -> None:
    assert mix.split(total) == want


@pytest.mark.parametrize(
    "bad", [{"spot_percent": 101}, {"spot_percent": -1}, {"spot_percent": 50, "base": -1}]
)
def test_mix_rejects_nonsense(bad: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        CapacityMix(**bad)


# --- fallback and presets -----------------------------------------------------------------------


def test_fallback_table() -> None:
    f = Fallback(spot_pools=2)
    spot_type, od = CapacityType.SPOT, CapacityType.ON_DEMAND
    assert f.after(LaunchFailure.NO_CAPACITY, spot_type, 1) is FallbackAction.NEXT_POOL
    assert f.after(LaunchFailure.NO_CAPACITY, spot_type, 2) is FallbackAction.ON_DEMAND
    assert f.after(LaunchFailure.PRICE_TOO_LOW, spot_type, 1) is FallbackAction.NEXT_POOL
    assert f.after(LaunchFailure.TIMEOUT, spot_type, 1) is FallbackAction.NEXT_POOL
    assert f.after(LaunchFailure.SPOT_LIMIT, spot_type, 1) is FallbackAction.ON_DEMAND
    assert f.after(LaunchFailure.AUTH, spot_type, 1) is FallbackAction.GIVE_UP
    assert f.after(LaunchFailure.NO_CAPACITY, od, 9) is FallbackAction.NEXT_POOL
    assert f.after(LaunchFailure.AUTH, od, 1) is FallbackAction.GIVE_UP


def test_presets_and_task_classes() -> None:
    assert set(PRESETS) == {"cost_optimized", "balanced", "performance_optimized"}
    assert preset("cost-optimized").mix.spot_percent == 70
    assert preset("balanced").mix.spot_percent == 50
    assert preset("performance_optimized").mix.spot_percent == 30
    for name in PRESETS:
        p = preset(name)
        assert p.mix_for(TaskClass.CRITICAL).spot_percent == 0
        assert p.mix_for(TaskClass.BATCH).spot_percent == 70
        assert p.mix_for(TaskClass.NORMAL) == p.mix
    with pytest.raises(ConfigError, match="unknown preset 'cheapest'; use one of cost_optimized, balanced"):
        preset("cheapest")
