"""Simulate the allocator before you deploy it: the same policies and :class:`JobManager` on a
launcher and clock driven by spot traces (docs/allocator.md, "Simulate before you deploy").

The journey: a :class:`Trace` (:func:`load_spot_traces` for the public spot traces,
:func:`generate_trace` for a seeded synthetic market, :func:`trace_from_store` for the history a
spotlake store collected) and a :class:`Workload` (:func:`generate_workload`, :func:`deadline_job`)
go into :func:`compare`, which runs each :class:`Contender` with :func:`simulate` on a
:class:`SimLauncher` and returns a :class:`Comparison` (``to_frame()``: the table), with the
hindsight optimum (:func:`hindsight_cost`) as the limit.
"""

from __future__ import annotations

from spotlake.compute.simulate.compare import COLUMNS, OPTIMUM, Comparison, ComparisonRow, compare
from spotlake.compute.simulate.contenders import CONTENDERS, Contender, contenders
from spotlake.compute.simulate.controllers import (
    Controller,
    JobView,
    Mode,
    SlackGuard,
    UniformProgress,
)
from spotlake.compute.simulate.engine import JobOutcome, RunResult, TraceOffers, simulate
from spotlake.compute.simulate.generate import Dynamics, generate_trace
from spotlake.compute.simulate.history import trace_from_store
from spotlake.compute.simulate.launcher import Bill, SimLauncher
from spotlake.compute.simulate.optimum import OptimumReport, hindsight_cost
from spotlake.compute.simulate.planner import DeadlinePlanner, Plan, SpotModel, plan
from spotlake.compute.simulate.replay import load_spot_trace, load_spot_traces
from spotlake.compute.simulate.respot_rule import RespotRule
from spotlake.compute.simulate.trace import InstanceShape, OnDemandPrice, PoolSeries, Trace
from spotlake.compute.simulate.workload import Progress, SimJob, Workload, deadline_job, generate_workload

__all__ = [
    "COLUMNS",
    "CONTENDERS",
    "OPTIMUM",
    "Bill",
    "Comparison",
    "ComparisonRow",
    "Contender",
    "Controller",
    "DeadlinePlanner",
    "Dynamics",
    "InstanceShape",
    "JobOutcome",
    "JobView",
    "Mode",
    "OnDemandPrice",
    "OptimumReport",
    "Plan",
    "PoolSeries",
    "Progress",
    "RespotRule",
    "RunResult",
    "SimJob",
    "SimLauncher",
    "SlackGuard",
    "SpotModel",
    "Trace",
    "TraceOffers",
    "UniformProgress",
    "Workload",
    "compare",
    "contenders",
    "deadline_job",
    "generate_trace",
    "generate_workload",
    "hindsight_cost",
    "load_spot_trace",
    "load_spot_traces",
    "plan",
    "simulate",
    "trace_from_store",
]
