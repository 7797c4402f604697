"""The simulator's launcher: capacity and prices from a trace, interruptions with their notice,
per-second bills, pool-set launches, and the allocator running on it."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

import attrs
import pytest
from compute_support import T0, clock

from spotlake.clock import FakeClock
from spotlake.compute.allocator import Allocator
from spotlake.compute.events import Event, InstanceAction, InstanceState, InterruptionWarning, StateChange
from spotlake.compute.launch.base import Launcher, LaunchFailure, PoolSetLauncher
from spotlake.compute.policy.presets import cost_optimized
from spotlake.compute.simulate.launcher import Bill, SimLauncher
from spotlake.compute.simulate.trace import InstanceShape, OnDemandPrice, PoolSeries, Trace
from spotlake.compute.values import CapacityRequest, CapacityType, Cloud, Offer, Pool

SPOT, OD = CapacityType.SPOT, CapacityType.ON_DEMAND
TYPE = "m5.xlarge"
MINUTE = timedelta(minutes=1)


def pool(zone: str = "us-east-1a", cloud: Cloud = Cloud.AWS) -> Pool:
    region = zone[:-1] if cloud is Cloud.AWS else zone.split("-", maxsplit=1)[0]
    return Pool(cloud=cloud, region=region, zone=zone, instance_type=TYPE)


def make_trace(
    available: Mapping[str, Sequence[int]],
    prices: Mapping[str, Sequence[float]] | None = None,
    *,
    step: timedelta = timedelta(minutes=10),
    cloud: Cloud = Cloud.AWS,
    on_demand: float | None = 0.192,
) -> Trace:
    """Pools named by zone, each with its availability per tick (price 0.05 unless given)."""
    series = []
    for zone, counts in available.items():
        price = (prices or {}).get(zone, [0.05] * len(counts))
        series.append(PoolSeries(pool=pool(zone, cloud), available=list(counts), price=list(price)))
    region = series[0].pool.region
    prices_on_demand: tuple[OnDemandPrice, ...] = (
        () if on_demand is None else (OnDemandPrice(region=region, instance_type=TYPE, price=on_demand),)
    )
    return Trace(
        name="test",
        cloud=cloud,
        start=T0,
        step=step,
        spot=series,
        on_demand=prices_on_demand,
        shapes={TYPE: InstanceShape(vcpus=4, memory_gib=16.0)},
    )


def spot_offer(trace: Trace, zone: str = "us-east-1a", price: float = 0.05) -> Offer:
    p = next((p for p in trace.spot if p.zone == zone), None) or pool(zone, trace.cloud)
    return Offer(pool=p, capacity_type=SPOT, price=price, vcpus=4, memory_gib=16.0)


def od_offer(trace: Trace, price: float = 0.5, instance_type: str = TYPE) -> Offer:
    region = next(iter(trace.spot)).region
    p = Pool(cloud=trace.cloud, region=region, zone=None, instance_type=instance_type)
    return Offer(pool=p, capacity_type=OD, price=price, vcpus=4, memory_gib=16.0)


def setup(
    available: Mapping[str, Sequence[int]],
    prices: Mapping[str, Sequence[float]] | None = None,
    *,
    step: timedelta = timedelta(minutes=10),
    cloud: Cloud = Cloud.AWS,
    on_demand_quota: int | None = None,
) -> tuple[SimLauncher, FakeClock, Trace]:
    trace = make_trace(available, prices, step=step, cloud=cloud)
    c = clock()
    return SimLauncher(trace, clock=c, on_demand_quota=on_demand_quota), c, trace


def go(launcher: SimLauncher, offer: Offer, count: int, max_price: float | None = None) -> list[str]:
    result = launcher.launch(offer, count, max_price=max_price, tags={"k": "v"}, timeout=MINUTE)
    return [i.id for i in result.instances]


# --- launching -----------------------------------------------------------------------------------


def test_it_is_a_launcher_and_a_pool_set_launcher() -> None:
    launcher, _, _ = setup({"us-east-1a": [1]})
    assert isinstance(launcher, Launcher) and isinstance(launcher, PoolSetLauncher)
    assert launcher.can_launch_pools()


def test_spot_launch_at_the_tick_price_all_or_nothing_counting_our_live_instances() -> None:
    launcher, c, trace = setup({"us-east-1a": [3, 3]}, prices={"us-east-1a": [0.05, 0.07]})
    offer = spot_offer(trace, price=0.01)
    result = launcher.launch(offer, 2, max_price=None, tags={"team": "ml"}, timeout=MINUTE)
    assert result.error is None
    assert [i.id for i in result.instances] == ["sim-000001", "sim-000002"]
    first = result.instances[0]
    assert first.price == 0.05 and first.launched_at == T0 and first.tags == {"team": "ml"}
    assert first.capacity_type is SPOT and first.offer == offer

    refused = launcher.launch(offer, 2, max_price=None, tags={}, timeout=MINUTE)
    assert refused.instances == () and refused.error is not None
    assert refused.error.kind is LaunchFailure.NO_CAPACITY
    assert refused.error.code == "InsufficientInstanceCapacity" and refused.error.pool == offer.pool
    assert len(launcher.running()) == 2  # nothing launched: all or nothing

    assert go(launcher, offer, 1) == ["sim-000003"]
    assert go(launcher, offer, 1) == []
    launcher.terminate(["sim-000001", "no-such-id"])
    launcher.terminate(["sim-000001"])  # already gone: ignored
    c.advance(600)
    [again] = launcher.launch(offer, 1, max_price=None, tags={}, timeout=MINUTE).instances
    assert again.id == "sim-000004" and again.price == 0.07 and again.launched_at == T0 + 10 * MINUTE
    assert [i.id for i in launcher.running()] == ["sim-000002", "sim-000003", "sim-000004"]


def test_a_pool_the_trace_does_not_have_is_an_invalid_parameter() -> None:
    launcher, _, trace = setup({"us-east-1a": [3]})
    result = launcher.launch(spot_offer(trace, "us-east-1f"), 1, max_price=None, tags={}, timeout=MINUTE)
    assert result.error is not None and result.error.kind is LaunchFailure.OTHER
    assert result.error.code == "InvalidParameterValue" and not result.instances


def test_the_max_price_caps_the_tick_spot_price() -> None:
    launcher, _, trace = setup({"us-east-1a": [3]}, prices={"us-east-1a": [0.05]})
    offer = spot_offer(trace, price=0.01)  # the offer's (stale) price is not what counts
    result = launcher.launch(offer, 1, max_price=0.049, tags={}, timeout=MINUTE)
    assert result.error is not None and result.error.kind is LaunchFailure.PRICE_TOO_LOW
    assert result.error.code == "SpotMaxPriceTooLow" and not result.instances
    assert go(launcher, offer, 1, max_price=0.05) == ["sim-000001"]


def test_on_demand_price_from_the_trace_and_the_quota() -> None:
    launcher, _, trace = setup({"us-east-1a": [0]}, on_demand_quota=3)
    offer = od_offer(trace, price=9.0)
    result = launcher.launch(offer, 2, max_price=0.001, tags={}, timeout=MINUTE)  # no cap on on-demand
    assert result.error is None and [i.price for i in result.instances] == [0.192, 0.192]
    assert result.instances[0].capacity_type is OD
    refused = launcher.launch(offer, 2, max_price=None, tags={}, timeout=MINUTE)
    assert refused.error is not None and refused.error.kind is LaunchFailure.QUOTA
    assert refused.error.code == "VcpuLimitExceeded" and not refused.instances
    assert len(go(launcher, offer, 1)) == 1
    launcher.terminate(["sim-000001"])
    [other] = launcher.launch(
        od_offer(trace, 0.3, "c5.large"), 1, max_price=None, tags={}, timeout=MINUTE
    ).instances
    assert other.price == 0.3  # the trace has no price for it: the offer's


def test_bugs_raise() -> None:
    launcher, c, trace = setup({"us-east-1a": [3]})
    with pytest.raises(Exception, match="at least one"):
        go(launcher, spot_offer(trace), 0)
    with pytest.raises(Exception, match="max_price"):
        go(launcher, spot_offer(trace), 1, max_price=-1.0)
    c.set(T0 - MINUTE)
    with pytest.raises(Exception, match="start"):
        go(launcher, spot_offer(trace), 1)


# --- interruptions -------------------------------------------------------------------------------


def test_an_aws_interruption_is_warned_two_minutes_before_the_take() -> None:
    launcher, c, trace = setup({"us-east-1a": [2, 1, 1]})
    go(launcher, spot_offer(trace), 2)
    assert launcher.next_event_at() == T0 + 10 * MINUTE
    c.advance(605)
    warning = InterruptionWarning(
        instance_id="sim-000002",  # the later of two launched together
        region="us-east-1",
        at=T0 + 10 * MINUTE,
        action=InstanceAction.TERMINATE,
        deadline=T0 + 12 * MINUTE,
    )
    assert launcher.poll().events == (warning,)
    assert launcher.poll().events == ()
    assert launcher.next_event_at() == T0 + 12 * MINUTE
    assert len(launcher.running()) == 2  # warned, still running
    c.advance(115)
    assert launcher.poll().events == (
        StateChange(
            instance_id="sim-000002", region="us-east-1", at=T0 + 12 * MINUTE, state=InstanceState.TERMINATED
        ),
    )
    assert [i.id for i in launcher.running()] == ["sim-000001"]
    assert launcher.next_event_at() is None
    bill = launcher.bills[1]
    assert bill.end == T0 + 12 * MINUTE and bill.interrupted and bill.seconds == 720


def test_an_azure_interruption_is_warned_thirty_seconds_before() -> None:
    launcher, c, trace = setup({"eastus-1": [1, 0]}, cloud=Cloud.AZURE)
    go(launcher, spot_offer(trace, "eastus-1"), 1)
    c.advance(3600)  # one jump over the boundary and the deadline
    warning, taken = launcher.poll().events
    assert isinstance(warning, InterruptionWarning) and isinstance(taken, StateChange)
    assert warning.region == "eastus" and warning.at == T0 + 10 * MINUTE
    assert warning.deadline == taken.at == T0 + 10 * MINUTE + timedelta(seconds=30)
    assert launcher.bills[0].end == taken.at


def test_the_most_recent_instances_are_warned_and_taken_even_if_capacity_returns() -> None:
    # one-minute ticks: the two-minute notice outlives the dip
    launcher, c, trace = setup({"us-east-1a": [3, 1, 3, 1, 3]}, step=MINUTE)
    go(launcher, spot_offer(trace), 1)
    c.advance(20)
    go(launcher, spot_offer(trace), 2)
    c.advance(50)  # into tick 1
    events = launcher.poll().events
    assert [(e.instance_id, type(e)) for e in events] == [
        ("sim-000003", InterruptionWarning),
        ("sim-000002", InterruptionWarning),
    ]
    c.advance(60)  # tick 2: capacity is back, the warned ones still go
    assert launcher.poll().events == ()
    assert launcher.next_event_at() == T0 + 3 * MINUTE
    c.advance(60)  # tick 3 at the deadline: taken first, then 1 available for the one left: fine
    events = launcher.poll().events
    assert [(e.instance_id, type(e)) for e in events] == [
        ("sim-000002", StateChange),
        ("sim-000003", StateChange),
    ]
    assert [i.id for i in launcher.running()] == ["sim-000001"]


def test_warned_instances_are_not_warned_again() -> None:
    launcher, c, trace = setup({"us-east-1a": [2, 1, 1, 1]}, step=MINUTE)
    go(launcher, spot_offer(trace), 2)
    c.advance(150)  # tick 2: the warned one still runs (deadline at 3 min), the other fits
    [event] = launcher.poll().events
    assert event.instance_id == "sim-000002"
    c.advance(600)
    assert [e.instance_id for e in launcher.poll().events] == ["sim-000002"]
    assert [i.id for i in launcher.running()] == ["sim-000001"]


def test_terminated_before_the_deadline_no_state_change_and_billing_stops() -> None:
    launcher, c, trace = setup({"us-east-1a": [1, 0, 0]}, prices={"us-east-1a": [0.36, 0.36, 0.36]})
    [iid] = go(launcher, spot_offer(trace), 1)
    c.advance(660)
    [warning] = launcher.poll().events
    assert isinstance(warning, InterruptionWarning)
    launcher.terminate([iid])
    assert launcher.next_event_at() is None
    c.advance(3600)
    assert launcher.poll().events == ()
    [bill] = launcher.bills
    assert bill.end == T0 + 11 * MINUTE and not bill.interrupted
    assert bill.cost == pytest.approx(0.36 * 660 / 3600)


def test_events_of_several_pools_come_in_time_order() -> None:
    launcher, c, trace = setup({"us-east-1a": [1, 1, 0, 0], "us-east-1b": [1, 0, 0, 0]})
    go(launcher, spot_offer(trace, "us-east-1a"), 1)
    go(launcher, spot_offer(trace, "us-east-1b"), 1)
    assert launcher.next_event_at() == T0 + 10 * MINUTE
    c.advance(3 * 3600)
    events = launcher.poll().events
    assert [(e.instance_id, type(e).__name__, e.at - T0) for e in events] == [
        ("sim-000002", "InterruptionWarning", 10 * MINUTE),
        ("sim-000002", "StateChange", 12 * MINUTE),
        ("sim-000001", "InterruptionWarning", 20 * MINUTE),
        ("sim-000001", "StateChange", 22 * MINUTE),
    ]


def test_next_event_at() -> None:
    launcher, c, trace = setup({"us-east-1a": [2, 2, 2, 1, 1, 0]})
    assert launcher.next_event_at() is None  # nothing of ours runs
    go(launcher, spot_offer(trace), 1)
    assert launcher.next_event_at() == T0 + 50 * MINUTE  # 1 fits until the pool is empty
    go(launcher, spot_offer(trace), 1)
    assert launcher.next_event_at() == T0 + 30 * MINUTE
    c.set(T0 + 30 * MINUTE)
    assert launcher.next_event_at() == T0 + 32 * MINUTE  # the warned one's deadline
    c.set(T0 + 32 * MINUTE)
    assert launcher.next_event_at() == T0 + 50 * MINUTE
    launcher.terminate(["sim-000001"])
    assert launcher.next_event_at() is None
    go(launcher, od_offer(trace), 1)
    assert launcher.next_event_at() is None  # on-demand is never interrupted


def test_after_the_trace_ends_the_last_tick_holds() -> None:
    launcher, c, trace = setup({"us-east-1a": [1, 1]}, prices={"us-east-1a": [0.36, 0.72]})
    go(launcher, spot_offer(trace), 1)
    assert launcher.next_event_at() is None
    c.advance(3600)  # 40 minutes past the end
    assert launcher.poll().events == ()
    assert launcher.billed_cost() == pytest.approx(0.36 * 600 / 3600 + 0.72 * 3000 / 3600)


# --- billing -------------------------------------------------------------------------------------


def test_per_second_billing_follows_the_spot_price_through_a_change() -> None:
    launcher, c, trace = setup(
        {"us-east-1a": [5, 5]}, prices={"us-east-1a": [0.36, 0.72]}, step=timedelta(hours=1)
    )
    c.advance(1800)
    [spot_id] = go(launcher, spot_offer(trace), 1)
    [od_id] = go(launcher, od_offer(trace), 1)
    c.advance(3600 + 15 * 60 + 7 - 1800)  # to 1 h 15 min 7 s
    assert launcher.billed_cost(T0 + timedelta(hours=1)) == pytest.approx(0.18 + 0.192 / 2)
    launcher.terminate([spot_id, od_id])
    spot_bill, od_bill = launcher.bills
    assert spot_bill == Bill(
        instance_id=spot_id,
        pool=pool("us-east-1a"),
        capacity_type=SPOT,
        start=T0 + timedelta(minutes=30),
        end=T0 + timedelta(hours=1, minutes=15, seconds=7),
        cost=spot_bill.cost,
        seconds=2707.0,
    )
    assert spot_bill.cost == pytest.approx(0.36 * 1800 / 3600 + 0.72 * 907 / 3600)  # 0.3614
    assert spot_bill.cost == pytest.approx(0.3614)
    assert od_bill.cost == pytest.approx(0.192 * 2707 / 3600) and od_bill.capacity_type is OD
    c.advance(3600)
    assert launcher.billed_cost() == pytest.approx(spot_bill.cost + od_bill.cost)


def test_a_running_instance_is_billed_up_to_now_and_has_no_end() -> None:
    launcher, c, trace = setup({"us-east-1a": [5]}, prices={"us-east-1a": [3.6]})
    go(launcher, spot_offer(trace), 1)
    c.advance(90.5)
    [bill] = launcher.bills
    assert bill.end is None and bill.seconds == 90.5 and bill.cost == pytest.approx(0.0905)
    assert launcher.billed_cost() == pytest.approx(0.0905)
    assert launcher.billed_cost(T0 + MINUTE) == pytest.approx(0.06)
    assert launcher.billed_cost(T0 - MINUTE) == 0.0


Lives = dict[str, tuple[datetime, datetime | None]]


def scenario(seed: int) -> tuple[SimLauncher, FakeClock, list[Event], Lives, Trace]:
    """A minute-tick trace of three pools with moving capacity and prices, and random calls on it.

    Returns the launcher, its clock, every event, and each instance's life as the caller saw it."""
    rng = random.Random(seed)
    zones = ["us-east-1a", "us-east-1b", "us-east-1c"]
    ticks = 60
    available = {z: [rng.randint(0, 6) for _ in range(ticks)] for z in zones}
    prices = {z: [round(rng.uniform(0.01, 0.2), 4) for _ in range(ticks)] for z in zones}
    launcher, c, trace = setup(available, prices=prices, step=MINUTE, on_demand_quota=5)
    events: list[Event] = []
    lives: Lives = {}
    for _ in range(200):
        c.advance(rng.randint(1, 40))
        events.extend(launcher.poll().events)
        for e in events:
            if isinstance(e, StateChange) and lives[e.instance_id][1] is None:
                lives[e.instance_id] = (lives[e.instance_id][0], e.at)
        action = rng.random()
        if action < 0.4:
            offer = spot_offer(trace, rng.choice(zones))
            result = launcher.launch(offer, rng.randint(1, 3), max_price=None, tags={}, timeout=MINUTE)
        elif action < 0.5:
            result = launcher.launch(
                od_offer(trace), rng.randint(1, 2), max_price=None, tags={}, timeout=MINUTE
            )
        elif action < 0.6:
            offers = [spot_offer(trace, z) for z in zones]
            pools = launcher.launch_pools(offers, rng.randint(1, 6), max_price=0.15, tags={}, timeout=MINUTE)
            for i in pools.instances:
                lives[i.id] = (i.launched_at, None)
            continue
        else:
            running = [i.id for i in launcher.running()]
            if running:
                victim = rng.choice(running)
                launcher.terminate([victim])
                lives[victim] = (lives[victim][0], c.now())
            continue
        for i in result.instances:
            lives[i.id] = (i.launched_at, None)
    c.advance(4 * 3600)
    tail = launcher.poll().events
    events.extend(tail)
    for e in tail:
        if isinstance(e, StateChange):
            lives[e.instance_id] = (lives[e.instance_id][0], e.at)
    return launcher, c, events, lives, trace


def test_conservation_billed_seconds_are_lifetimes_and_costs_integrate_the_prices() -> None:
    launcher, c, events, lives, trace = scenario(7)
    bills = launcher.bills
    assert {b.instance_id for b in bills} == set(lives)
    assert any(isinstance(e, StateChange) for e in events) and any(b.capacity_type is OD for b in bills)
    now = c.now()
    lifetimes = sum(((end or now) - start).total_seconds() for start, end in lives.values())
    assert sum(b.seconds for b in bills) == pytest.approx(lifetimes)
    for b in bills:
        start, end = lives[b.instance_id]
        assert (b.start, b.end) == (start, end)
        if b.capacity_type is OD:
            continue
        # second by second at the price of the tick each second is in (lives are whole seconds)
        series = trace.spot[b.pool]
        stop = end or now
        seconds = int((stop - start).total_seconds())
        expected = (
            sum(float(series.price[trace.tick(start + timedelta(seconds=s))]) for s in range(seconds)) / 3600
        )
        assert b.cost == pytest.approx(expected, rel=1e-9)
    assert launcher.billed_cost() == pytest.approx(sum(b.cost for b in bills))
    # every take is at its warning's deadline, and nothing is taken unwarned
    deadlines = {e.instance_id: e.deadline for e in events if isinstance(e, InterruptionWarning)}
    for e in events:
        if isinstance(e, StateChange):
            assert deadlines[e.instance_id] == e.at
    assert [e.at for e in events] == sorted(e.at for e in events)


def test_deterministic() -> None:
    first, _, events, _, _ = scenario(11)
    second, _, again, _, _ = scenario(11)
    assert first.bills == second.bills and events == again
    assert len(events) > 0


# --- pool sets -----------------------------------------------------------------------------------


def test_pool_set_spot_takes_the_cheapest_pool_deep_enough_else_the_deepest_first() -> None:
    launcher, _, trace = setup(
        {"us-east-1a": [5], "us-east-1b": [10]}, prices={"us-east-1a": [0.04], "us-east-1b": [0.06]}
    )
    offers = [spot_offer(trace, "us-east-1b"), spot_offer(trace, "us-east-1a")]

    def launch(count: int) -> tuple[list[str | None], list[tuple[str | None, LaunchFailure]]]:
        r = launcher.launch_pools(offers, count, max_price=None, tags={"t": "1"}, timeout=MINUTE)
        return [i.offer.pool.zone for i in r.instances], [(e.pool.zone, e.kind) for e in r.errors]

    assert launch(3) == (["us-east-1a"] * 3, [])  # both can take 3: the cheaper
    assert launch(8) == (["us-east-1b"] * 8, [])  # only b can take 8
    # 2 left in each: none can take 5; the deeper first, ties to the cheaper: a, then b
    assert launch(5) == (
        ["us-east-1a"] * 2 + ["us-east-1b"] * 2,
        [("us-east-1b", LaunchFailure.NO_CAPACITY), ("us-east-1a", LaunchFailure.NO_CAPACITY)],
    )
    assert all(i.price in (0.04, 0.06) and i.tags == {"t": "1"} for i in launcher.running())


def test_pool_set_spot_spreads_and_says_why_each_pool_gave_no_more() -> None:
    launcher, _, trace = setup(
        {"us-east-1a": [1], "us-east-1b": [3], "us-east-1c": [9]},
        prices={"us-east-1a": [0.04], "us-east-1b": [0.05], "us-east-1c": [0.5]},
    )
    offers = [spot_offer(trace, z) for z in ("us-east-1f", "us-east-1a", "us-east-1b", "us-east-1c")]
    r = launcher.launch_pools(offers, 6, max_price=0.1, tags={}, timeout=MINUTE)
    assert [i.offer.pool.zone for i in r.instances] == ["us-east-1b"] * 3 + ["us-east-1a"]
    assert {i.offer.pool for i in r.instances} <= {o.pool for o in offers}
    assert [(e.pool.zone, e.kind, e.code) for e in r.errors] == [
        ("us-east-1f", LaunchFailure.OTHER, "InvalidParameterValue"),
        ("us-east-1a", LaunchFailure.NO_CAPACITY, "InsufficientInstanceCapacity"),
        ("us-east-1b", LaunchFailure.NO_CAPACITY, "InsufficientInstanceCapacity"),
        ("us-east-1c", LaunchFailure.PRICE_TOO_LOW, "SpotMaxPriceTooLow"),
    ]


def test_pool_set_on_demand_is_prioritized_up_to_the_quota() -> None:
    launcher, _, trace = setup({"us-east-1a": [0]}, on_demand_quota=3)
    offers = [od_offer(trace, 0.3, "c5.large"), od_offer(trace)]
    r = launcher.launch_pools(offers, 2, max_price=None, tags={}, timeout=MINUTE)
    assert [i.offer.pool.instance_type for i in r.instances] == ["c5.large"] * 2 and not r.errors
    r = launcher.launch_pools(offers, 3, max_price=None, tags={}, timeout=MINUTE)
    assert [i.offer.pool.instance_type for i in r.instances] == ["c5.large"]
    assert [(e.pool.instance_type, e.kind) for e in r.errors] == [
        ("c5.large", LaunchFailure.QUOTA),
        (TYPE, LaunchFailure.QUOTA),
    ]


def test_pool_set_refuses_mixed_capacity_types() -> None:
    launcher, _, trace = setup({"us-east-1a": [1]})
    with pytest.raises(Exception, match="one capacity type"):
        launcher.launch_pools(
            [spot_offer(trace), od_offer(trace)], 1, max_price=None, tags={}, timeout=MINUTE
        )
    assert launcher.launch_pools([], 1, max_price=None, tags={}, timeout=MINUTE).instances == ()


# --- the allocator on the simulator ----------------------------------------------------------------


def test_the_allocator_allocates_on_the_simulator() -> None:
    trace = make_trace(
        {"us-east-1a": [0, 0], "us-east-1b": [20, 20]},
        prices={"us-east-1a": [0.03] * 2, "us-east-1b": [0.06] * 2},
    )
    c = clock()
    launcher = SimLauncher(trace, clock=c)
    allocator = Allocator(launcher, clock=c, policy=cost_optimized())
    a = allocator.allocate(trace.offers(c.now()), CapacityRequest(count=10))
    assert a.complete and a.units(SPOT) == 7 and a.units(OD) == 3
    assert [(f.pool.zone, f.failure) for f in a.fallbacks] == [("us-east-1a", LaunchFailure.NO_CAPACITY)]
    assert {i.offer.pool.zone for i in a.instances if i.capacity_type is SPOT} == {"us-east-1b"}
    assert {i.id for i in launcher.running()} == {i.id for i in a.instances}
    assert {i.price for i in a.instances if i.capacity_type is OD} == {0.192}

    # over pool sets (EC2 Fleet): the same, in one call
    c2 = clock()
    launcher2 = SimLauncher(trace, clock=c2)
    policy = attrs.evolve(cost_optimized(), pools_per_launch=2)
    a2 = Allocator(launcher2, clock=c2, policy=policy).allocate(
        trace.offers(c2.now()), CapacityRequest(count=10)
    )
    assert a2.complete and a2.units(SPOT) == 7
    assert {i.offer.pool.zone for i in a2.instances if i.capacity_type is SPOT} == {"us-east-1b"}


def test_the_allocator_falls_back_to_on_demand_when_spot_has_no_capacity() -> None:
    trace = make_trace({"us-east-1a": [2]})
    c = clock()
    launcher = SimLauncher(trace, clock=c)
    a = Allocator(launcher, clock=c).allocate(trace.offers(c.now()), CapacityRequest(count=10))
    assert a.complete and a.units(SPOT) == 0 and a.units(OD) == 10
    assert [f.failure for f in a.fallbacks] == [LaunchFailure.NO_CAPACITY]
    assert sum(p.fell_back for p in a.placements) == 7
    assert len(launcher.running()) == 10


def test_working_time_out_lazily_is_the_same_as_watching_it() -> None:
    rng = random.Random(3)
    zones = ["us-east-1a", "us-east-1b"]
    available = {z: [rng.randint(0, 5) for _ in range(30)] for z in zones}
    calls = [(rng.randint(0, 1800), rng.choice(zones), rng.randint(1, 2)) for _ in range(25)]
    runs = []
    for watch in (False, True):
        launcher, c, trace = setup(available, step=MINUTE)
        events: list[Event] = []
        for at, zone, count in sorted(calls):
            while watch and c.now() + timedelta(seconds=5) < T0 + timedelta(seconds=at):
                c.advance(5)
                events.extend(launcher.poll().events)
                launcher.next_event_at()
            c.set(T0 + timedelta(seconds=at))
            go(launcher, spot_offer(trace, zone), count)
        c.advance(3600)
        events.extend(launcher.poll().events)
        runs.append((launcher.bills, events))
    assert runs[0] == runs[1]
    assert any(isinstance(e, StateChange) for e in runs[0][1])
