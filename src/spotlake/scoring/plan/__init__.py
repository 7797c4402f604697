"""The SPS call planner: cover every supported (region, size) pair with as few calls as possible.

A Spot Placement Scores call scores a rectangle ``regions x sizes`` of at most 8 regions and 5 sizes,
and calls are the scarce resource (about 10 per hour per (subscription, location)). Given the
support set (every (region, size) with a Linux spot price) :func:`plan_calls` returns a deterministic
:class:`Plan`: a tuple of :class:`~spotlake.model.SpsCall` covering every pair, plus a
:class:`PlanReport` with the lower bound (:func:`lower_bound`) and the efficiency ratio.

How it plans (see docs/planner.md for the reasoning and measured numbers):

1. Constructions (:mod:`~spotlake.scoring.plan._construct`), each a complete cover. *Greedy
   rectangles*: repeatedly take the call covering the most uncovered pairs, grown from the size with
   most uncovered regions by alternating "best 5 sizes for these regions" / "best 8 regions for
   these sizes". *Widened exact groups + piece-aware greedy*: near-identical region sets (a family
   whose sizes miss a few different regions) are widened to their union, whole chunks of 5 identical
   sets are planned exactly, and a greedy that ranks first the sizes a call saves a whole call
   covers the rest. *Size chunks*: identical region sets in chunks of 5, leftovers chunked by
   similarity. *Region chunks* (and, when regions are the scarcer side, region-first greedy): the
   same on the transposed incidence.
2. Local improvement (:mod:`~spotlake.scoring.plan._improve`) of the constructions within 3 % of the
   best: a call is eliminated when every pair only it covers fits into other calls' free slots (add
   a region to a call with fewer than 8 that holds the size, or the size to a call with fewer than 5
   that holds the region); then regions/sizes that cover nothing only they cover are trimmed (fewer
   wasted cells).
3. Small worlds (where one call is 10-15 % of the plan) also get seeded greedy restarts on
   relabelled copies, which stop once a cover meets the lower bound (it is then optimal).
4. The cover with the fewest calls wins (then fewest cells, then construction order); calls sorted.
   Steps 1-4 are :mod:`~spotlake.scoring.plan._cover`.
5. Optionally (``plan_calls(search=N)``) the order search (:mod:`~spotlake.scoring.plan._search`)
   re-plans under N mutated size/region orders and keeps the plan with the fewest calls.

:mod:`~spotlake.scoring.plan.solve` runs these steps and checks the cover; the lower bound is in
:mod:`~spotlake.scoring.plan.bounds` and the values in :mod:`~spotlake.scoring.plan.values`.
Everything iterates over sorted indices, never over a set, so the output is identical across runs
and across ``PYTHONHASHSEED`` values. The package is pure: no I/O (reading a support set from a CSV
is :func:`spotlake.collect.catalog.load_pairs`), and time is only measured (with
``time.perf_counter``) for the report.

Also here: :func:`repair_plan` (drop values learned invalid without re-planning the day) and
:func:`restrict_plan` (a plan for a subset of sizes/regions) in :mod:`~spotlake.scoring.plan.repair`,
:func:`shard_plan`/:func:`shard_of`/:func:`merge_plans` (near-equal shards for parallel workers, and
back) in :mod:`~spotlake.scoring.plan.shards`, and :func:`plan_summary`/:func:`format_summary` (what
the CLI prints) in :mod:`~spotlake.scoring.plan.summary`.
"""

from __future__ import annotations

from spotlake.scoring.plan.bounds import lower_bound
from spotlake.scoring.plan.repair import repair_plan, restrict_plan
from spotlake.scoring.plan.shards import merge_plans, shard_of, shard_plan
from spotlake.scoring.plan.solve import plan_calls
from spotlake.scoring.plan.summary import format_summary, plan_summary
from spotlake.scoring.plan.values import Pair, Plan, PlanReport

__all__ = [
    "Pair",
    "Plan",
    "PlanReport",
    "format_summary",
    "lower_bound",
    "merge_plans",
    "plan_calls",
    "plan_summary",
    "repair_plan",
    "restrict_plan",
    "shard_of",
    "shard_plan",
]
