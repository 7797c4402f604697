"""Spot-first compute allocation with fallback to on-demand, using what spotlake collects.

The data's journey (docs/allocator.md):

* **offers** (:mod:`spotlake.compute.offers`): a store's latest Azure snapshot, a catalog CSV, an
  explicit list or a live source, as :class:`~spotlake.compute.values.Offer` values;
* **policy** (:mod:`spotlake.compute.policy`): filters, rankers, the capacity mix, fallback and
  presets; :func:`~spotlake.compute.decide.decide` turns them into a ranked, explained plan;
* **launch** (:mod:`spotlake.compute.launch`): the :class:`~spotlake.compute.allocator.Allocator`
  carries the plan out through a launcher (EC2, in memory, the simulator), falling back along
  the ranking and teaching the :class:`~spotlake.compute.health.HealthRegistry`;
* **ledger** (:mod:`spotlake.compute.ledger`): every instance's requested and realised capacity
  type, price and fallbacks, and the cost against all on-demand.

:class:`~spotlake.compute.jobs.JobManager` runs jobs on top: interruptions, hangs, waiting for
capacity, moving back to spot.
"""

from __future__ import annotations

from spotlake.compute.allocator import Allocation, Allocator, FallbackEvent, Placement
from spotlake.compute.decide import Decision, Role, Step, Verdict, decide
from spotlake.compute.health import HealthLimits, HealthRegistry, HealthState
from spotlake.compute.jobs import Job, JobManager, JobState
from spotlake.compute.ledger import CostLedger, EndReason, LedgerEntry, LedgerTotals
from spotlake.compute.policy import CapacityMix, Policy, preset
from spotlake.compute.revert import Reverter, RevertMove
from spotlake.compute.values import (
    CapacityRequest,
    CapacityType,
    Cloud,
    Offer,
    PlacementScore,
    Pool,
    TaskClass,
)

__all__ = [
    "Allocation",
    "Allocator",
    "CapacityMix",
    "CapacityRequest",
    "CapacityType",
    "Cloud",
    "CostLedger",
    "Decision",
    "EndReason",
    "FallbackEvent",
    "HealthLimits",
    "HealthRegistry",
    "HealthState",
    "Job",
    "JobManager",
    "JobState",
    "LedgerEntry",
    "LedgerTotals",
    "Offer",
    "Placement",
    "PlacementScore",
    "Policy",
    "Pool",
    "RevertMove",
    "Reverter",
    "Role",
    "Step",
    "TaskClass",
    "Verdict",
    "decide",
    "preset",
]
