"""The AWS SPS planner: exact packing, coverage, truncated regions, determinism, stability, input."""

from __future__ import annotations

import math
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
from benchmarks.bench_aws_plan import min_bins_milp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hypothesis_support import examples, hash_seeds
from spotlake.collect.aws.plan import (
    MAX_ZONES,
    AwsSpsPlan,
    AwsSpsQuery,
    offerings_from_frame,
    plan_queries,
)
from spotlake.errors import ConfigError, CorruptStoreError, PlanError
from spotlake.serde import dump, load

Offerings = dict[str, dict[str, int]]

REGIONS = [f"zz-region-{i:02d}" for i in range(16)]
TYPES = [f"t{i}.large" for i in range(6)]
EXCERPT = Path(__file__).resolve().parents[2] / "fixtures" / "aws_catalog_excerpt.csv"

SETTINGS = settings(max_examples=examples(60), deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def any_offerings(draw: st.DrawFn, max_size: int = 12) -> Offerings:
    """A few types, each in a subset of the regions with 1..max_size zones (more than 10: truncated)."""
    out: Offerings = {}
    for itype in draw(st.lists(st.sampled_from(TYPES), unique=True, max_size=4)):
        regions = draw(st.lists(st.sampled_from(REGIONS), unique=True, max_size=len(REGIONS)))
        # Mostly 2..4 zones, as in the real catalog, with 1, 5, 6 and truncated regions now and then.
        sizes = st.one_of(st.integers(2, 4), st.integers(1, max_size))
        out[itype] = {r: draw(sizes) for r in regions}
    return out


def assert_valid(plan: AwsSpsPlan, offerings: Offerings, max_zones: int = MAX_ZONES) -> None:
    """Everything a plan promises: each (type, region) in exactly one query, within the limits."""
    covered = sorted((q.instance_type, r) for q in plan.queries for r in q.regions)
    assert covered == sorted((t, r) for t, regions in offerings.items() for r in regions)
    truncated = sorted(
        (t, r) for t, regions in offerings.items() for r, z in regions.items() if z > max_zones
    )
    assert list(plan.truncated) == truncated
    for q in plan.queries:
        zones = [offerings[q.instance_type][r] for r in q.regions]
        if (q.instance_type, q.regions[0]) in truncated:
            assert q.regions == (q.regions[0],) and q.zones == max_zones  # alone: the top max_zones only
        else:
            assert q.zones == sum(zones) <= max_zones and all(z <= max_zones for z in zones)
    assert list(plan.queries) == sorted(plan.queries, key=lambda q: (q.instance_type, q.regions))
    bound = sum(
        sum(z > max_zones for z in regions.values())
        + math.ceil(sum(z for z in regions.values() if z <= max_zones) / max_zones)
        for regions in offerings.values()
    )
    assert plan.lower_bound == bound <= len(plan)
    assert plan.max_zones == max_zones


def type_queries(plan: AwsSpsPlan, itype: str) -> tuple[AwsSpsQuery, ...]:
    return plan.per_type().get(itype, ())


# --- coverage and exactness ----------------------------------------------------------------------


@SETTINGS
@given(offerings=any_offerings(), max_zones=st.integers(1, MAX_ZONES))
def test_every_region_is_in_exactly_one_query_within_the_limit(offerings: Offerings, max_zones: int) -> None:
    assert_valid(plan_queries(offerings, max_zones=max_zones), offerings, max_zones)


@settings(max_examples=examples(50), deadline=None)
@given(
    sizes=st.lists(st.one_of(st.integers(2, 4), st.integers(1, 6)), min_size=1, max_size=14),
    capacity=st.integers(6, MAX_ZONES),
)
def test_each_type_gets_the_exact_minimum_number_of_queries(sizes: list[int], capacity: int) -> None:
    offerings = {"m5.large": {REGIONS[i]: z for i, z in enumerate(sizes)}}
    plan = plan_queries(offerings, max_zones=capacity)
    assert_valid(plan, offerings, capacity)
    assert len(plan) == min_bins_milp(sizes, capacity)


@pytest.mark.parametrize(
    ("sizes", "queries"),
    [
        ([5, 4, 4, 3, 2, 2], 2),  # first-fit decreasing needs 3: 5+4, 4+3+2, 2
        ([3] * 10, 4),  # three 3-zone regions a query: above the counting bound (3)
        ([6, 6, 6, 4, 4, 4], 3),
        ([6, 6, 6, 1], 3),  # regions of more than half a query cannot share one
        ([3, 3, 3, 3, 3, 3, 2, 2, 2, 2, 2, 2, 4, 4, 4, 6], 5),  # 48 zones, no zone left over
    ],
)
def test_hard_packings_are_exact(sizes: list[int], queries: int) -> None:
    offerings = {"c5.xlarge": {REGIONS[i]: z for i, z in enumerate(sizes)}}
    plan = plan_queries(offerings)
    assert_valid(plan, offerings)
    assert len(plan) == queries


def test_a_region_with_more_zones_than_a_query_scores_is_queried_alone_and_reported() -> None:
    offerings = {"big.metal": {"r-a": 12, "r-b": 3, "r-c": 4}, "m5.large": {"r-a": 3}}
    plan = plan_queries(offerings)
    assert [(q.key, q.zones) for q in plan.queries] == [
        ("big.metal|r-a", 10),
        ("big.metal|r-b,r-c", 7),
        ("m5.large|r-a", 3),
    ]
    assert plan.truncated == (("big.metal", "r-a"),)
    assert plan.lower_bound == 3 and plan.zones == 20
    assert plan_queries(offerings, previous=plan) == plan


def test_no_offerings_no_queries() -> None:
    assert plan_queries({}) == AwsSpsPlan(queries=(), lower_bound=0)
    assert plan_queries({"m5.large": {}}).queries == ()


def test_the_whole_excerpt_of_the_real_catalog() -> None:
    # Real rows (zone names, two regions): every type is in us-east-1's 6 zones and us-west-2's 4.
    raw = pd.read_csv(EXCERPT, dtype=str)
    frame = raw.rename(columns={"InstanceType": "size", "Region": "region", "AvailabilityZone": "zone"})
    offerings = offerings_from_frame(frame)
    assert offerings == {
        t: {"us-east-1": 6, "us-west-2": 4} for t in ("m5.large", "mac1.metal", "p3.2xlarge")
    }
    assert offerings_from_frame(pd.concat([frame, frame])) == offerings  # repeated rows count once
    plan = plan_queries(offerings)
    assert [q.key for q in plan.queries] == [
        "m5.large|us-east-1,us-west-2",
        "mac1.metal|us-east-1,us-west-2",
        "p3.2xlarge|us-east-1,us-west-2",
    ]
    assert {q.zones for q in plan.queries} == {10} and plan.lower_bound == 3


# --- determinism ---------------------------------------------------------------------------------


@SETTINGS
@given(offerings=any_offerings(), seed=st.integers(0, 2**32 - 1))
def test_output_does_not_depend_on_input_order(offerings: Offerings, seed: int) -> None:
    rng = random.Random(seed)
    types = list(offerings)
    rng.shuffle(types)
    shuffled: Offerings = {}
    for itype in types:
        regions = list(offerings[itype].items())
        rng.shuffle(regions)
        shuffled[itype] = dict(regions)
    assert plan_queries(shuffled) == plan_queries(offerings)


_SCRIPT = textwrap.dedent(
    """
    import hashlib, random
    from spotlake.collect.aws.plan import plan_queries
    rng = random.Random(7)
    regions = [f"region-{i:02d}" for i in range(22)]
    offerings = {}
    for t in range(60):
        chosen = rng.sample(regions, rng.randint(1, 22))
        offerings[f"type{t}.large"] = {r: rng.choice((1, 2, 3, 3, 3, 4, 6)) for r in chosen}
    plan = plan_queries(offerings)
    for t in rng.sample(sorted(offerings), 10):
        offerings[t][rng.choice(regions)] = rng.randint(1, 6)
    later = plan_queries(offerings, previous=plan)
    for p in (plan, later):
        print(hashlib.sha256("\\n".join(q.key for q in p.queries).encode()).hexdigest(), len(p))
    """
)


def test_identical_across_pythonhashseed_values() -> None:
    outputs = set()
    for seed in hash_seeds():
        proc = subprocess.run(
            [sys.executable, "-c", _SCRIPT],
            capture_output=True,
            text=True,
            check=True,
            env={"PYTHONHASHSEED": seed, "PATH": "/usr/bin:/bin"},
            timeout=120,
        )
        outputs.add(proc.stdout.strip())
    assert len(outputs) == 1, outputs


# --- stability -----------------------------------------------------------------------------------


@SETTINGS
@given(offerings=any_offerings())
def test_the_same_offerings_and_their_plan_give_the_same_plan(offerings: Offerings) -> None:
    plan = plan_queries(offerings)
    again = plan_queries(offerings, previous=plan)
    assert again == plan and again.changed_since(plan) == 0
    assert plan_queries(offerings) == plan


@SETTINGS
@given(offerings=any_offerings(max_size=6).filter(bool), data=st.data())
def test_adding_a_region_to_a_type_changes_only_that_types_queries(
    offerings: Offerings, data: st.DataObject
) -> None:
    itype = data.draw(st.sampled_from(sorted(offerings)))
    absent = [r for r in REGIONS if r not in offerings[itype]]
    if not absent:
        return
    plan = plan_queries(offerings)
    grown = {t: dict(regions) for t, regions in offerings.items()}
    grown[itype][data.draw(st.sampled_from(absent))] = data.draw(st.integers(1, 6))
    later = plan_queries(grown, previous=plan)
    assert_valid(later, grown)
    assert later.per_type() | {itype: ()} == plan.per_type() | {itype: ()}  # every other type as it was
    changed = later.changed_since(plan)
    assert changed <= len(type_queries(later, itype))
    if len(type_queries(later, itype)) > len(type_queries(plan, itype)):
        assert changed == 1  # every previous query kept, the new region queried on its own


@SETTINGS
@given(
    offerings=any_offerings(max_size=6).filter(lambda o: any(len(r) > 1 for r in o.values())), data=st.data()
)
def test_removing_a_region_changes_at_most_its_query_unless_the_type_needs_fewer(
    offerings: Offerings, data: st.DataObject
) -> None:
    itype = data.draw(st.sampled_from(sorted(t for t, regions in offerings.items() if len(regions) > 1)))
    plan = plan_queries(offerings)
    shrunk = {t: dict(regions) for t, regions in offerings.items()}
    del shrunk[itype][data.draw(st.sampled_from(sorted(shrunk[itype])))]
    later = plan_queries(shrunk, previous=plan)
    assert_valid(later, shrunk)
    assert later.per_type() | {itype: ()} == plan.per_type() | {itype: ()}
    if len(type_queries(later, itype)) == len(type_queries(plan, itype)):
        assert later.changed_since(plan) <= 1


def test_a_new_region_goes_into_a_query_with_room_and_the_other_queries_stay() -> None:
    regions = {f"r{i}": 3 for i in range(7)}  # packs 3 + 3 + 3, 3 + 3 + 3, 3: the last has room
    plan = plan_queries({"m5.large": regions})
    later = plan_queries({"m5.large": {**regions, "r7": 3}}, previous=plan)
    assert len(plan) == len(later) == 3
    assert later.changed_since(plan) == 1
    assert len(plan.keys() & later.keys()) == 2


def test_when_the_minimum_needs_a_repack_the_type_is_repacked() -> None:
    # 3+3+3 and 4+4 are optimal for five regions; a sixth 3-zone region still fits in two queries,
    # but only as 3+3+4 twice: both queries change (no plan of two queries keeps either).
    offerings = {"m5.large": {"a": 3, "b": 3, "c": 3, "d": 4, "e": 4}}
    plan = plan_queries(offerings)
    later = plan_queries({"m5.large": {**offerings["m5.large"], "f": 3}}, previous=plan)
    assert len(plan) == len(later) == 2
    assert later.changed_since(plan) == 2
    assert all(q.zones == 10 for q in later.queries)


def test_a_zone_count_change_that_still_fits_keeps_the_query() -> None:
    plan = plan_queries({"m5.large": {"a": 3, "b": 3, "c": 3}})
    later = plan_queries({"m5.large": {"a": 4, "b": 3, "c": 3}}, previous=plan)
    assert later.keys() == plan.keys() and later.queries[0].zones == 10
    assert later.changed_since(plan) == 0


def test_a_hand_made_previous_plan_is_reused_when_it_is_optimal() -> None:
    # Not the packing the planner would choose from scratch, but as good: kept as it is.
    mine = AwsSpsPlan(
        queries=(
            AwsSpsQuery(instance_type="m5.large", regions=("a", "d"), zones=6),
            AwsSpsQuery(instance_type="m5.large", regions=("b", "c"), zones=6),
        ),
        lower_bound=2,
    )
    plan = plan_queries({"m5.large": {"a": 3, "b": 3, "c": 3, "d": 3}}, previous=mine)
    assert plan.keys() == mine.keys()
    assert plan_queries({"m5.large": {"a": 3, "b": 3, "c": 3, "d": 3}}).keys() != mine.keys()


def test_the_plan_round_trips_through_serde() -> None:
    plan = plan_queries({"big.metal": {"r-a": 12, "r-b": 3}, "m5.large": {"r-a": 3, "r-b": 6, "r-c": 2}})
    assert load(dump(plan), AwsSpsPlan, where="aws-plan.json") == plan
    data = dump(plan)
    data["queries"][0]["regions"] = ["r-z", "r-a"]
    with pytest.raises(CorruptStoreError):
        load(data, AwsSpsPlan, where="aws-plan.json")


# --- bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize("max_zones", [0, -1, 11, True])
def test_impossible_limits_are_a_plan_error(max_zones: int) -> None:
    with pytest.raises(PlanError, match="max_zones"):
        plan_queries({"m5.large": {"a": 3}}, max_zones=max_zones)


@pytest.mark.parametrize(
    ("offerings", "match"),
    [
        ({"m5.large": {"a": 0}}, "positive integer"),
        ({"m5.large": {"a": -2}}, "positive integer"),
        ({"m5.large": {"a": 2.5}}, "positive integer"),
        ({"m5.large": {"a": True}}, "positive integer"),
        ({"m5|large": {"a": 3}}, "cannot contain"),
        ({"m5.large": {"a,b": 3}}, "cannot contain"),
        ({"": {"a": 3}}, "non-empty"),
        ({"m5.large": {" a": 3}}, "non-empty"),
    ],
)
def test_bad_offerings_are_a_config_error(offerings: Offerings, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        plan_queries(offerings)


def test_a_query_checks_itself() -> None:
    with pytest.raises(ConfigError, match="sorted and distinct"):
        AwsSpsQuery(instance_type="m5.large", regions=("b", "a"), zones=6)
    with pytest.raises(ConfigError, match="no region"):
        AwsSpsQuery(instance_type="m5.large", regions=(), zones=1)
    with pytest.raises(ConfigError, match="not 11"):
        AwsSpsQuery(instance_type="m5.large", regions=("a",), zones=11)
    query = AwsSpsQuery(instance_type="m5.large", regions=["a", "b"], zones=6)
    assert query.regions == ("a", "b")
    with pytest.raises(ConfigError, match="twice"):
        AwsSpsPlan(queries=(query, query), lower_bound=1)
    with pytest.raises(ConfigError, match="more than max_zones=5"):
        AwsSpsPlan(queries=(query,), lower_bound=2, max_zones=5)


def test_bad_frames_are_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"missing \['zone'\]"):
        offerings_from_frame(pd.DataFrame({"size": ["m5.large"], "region": ["a"]}))
    with pytest.raises(ConfigError, match="row 1"):
        offerings_from_frame(
            pd.DataFrame({"size": ["m5.large", "m5.large"], "region": ["a", pd.NA], "zone": ["a1", "a2"]})
        )
    with pytest.raises(ConfigError, match="zone a1 is listed under a and b"):
        offerings_from_frame(
            pd.DataFrame({"size": ["m5.large", "c5.large"], "region": ["a", "b"], "zone": ["a1", "a1"]})
        )


def test_an_empty_frame_has_no_offerings() -> None:
    frame = pd.DataFrame({"size": pd.Series([], dtype="string"), "region": [], "zone": []})
    assert offerings_from_frame(frame) == {}


def test_keys_name_the_configuration() -> None:
    query = AwsSpsQuery(instance_type="m5.large", regions=("eu-west-1", "us-east-1"), zones=6)
    assert query.key == "m5.large|eu-west-1,us-east-1"
