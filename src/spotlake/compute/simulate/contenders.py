"""The ways of getting capacity the simulator compares, each as the real allocator configures it.

A :class:`Contender` is a :class:`~spotlake.compute.policy.presets.Policy` plus how the
:class:`~spotlake.compute.jobs.JobManager` runs it (health limits, revert, on-demand fallback) and,
for deadline-aware ones, a :class:`~spotlake.compute.simulate.controllers.Controller` that decides
per job, at every step, whether it should be on on-demand now. Nothing here launches anything: the engine
(:mod:`spotlake.compute.simulate.engine`) runs each contender on the same trace and workload.

The contenders (:func:`contenders` builds them by name):

``on-demand``
    Everything on on-demand (the reference every saving is measured against).
``greedy``
    Spot while there is spot, else on-demand; back to spot when it is healthy again.
``skypilot-like``
    SkyPilot's managed spot jobs: spot pools in price order, a failed pool is skipped for the rest
    of that launch only (a blocklist without TTL, not shared across launches), and when every pool
    failed the job waits and retries spot (it never falls back to on-demand).
``asg-like``
    An Auto Scaling group's fixed mix: 70 % spot over the two cheapest pools and 30 % on-demand,
    rounded per request by the allocator's rule (a one-instance job is all spot), with no
    fallback: spot units that find no spot wait for it.
``uniform-progress``
    The deadline-aware rule published with the "Can't Be Late" traces, from its description: a job uses spot
    when it can; when it cannot and its progress is behind the straight line from submission to
    deadline it uses on-demand, and it leaves on-demand as soon as it is ahead of the line again.
    One pool (the cheapest), as in the paper's single-zone setting.
``cost_optimized``, ``balanced``, ``performance_optimized``
    spotlake's presets as they are.
``spotlake-deadline``
    Ours, deadline-aware: placement scores and several pools (price-capacity ranking, three pools
    per launch), spot whenever there is spot, waits for it and returns from on-demand planned per
    job on the spot it has seen, never below a reserve of two restarts, and a running job leaves
    spot when one more interruption would cost its deadline and is likely enough
    (:class:`~spotlake.compute.simulate.planner.DeadlinePlanner`); a job running on spot moves
    to cheaper spot when the saving over its work left pays for the restart
    (:class:`~spotlake.compute.simulate.respot_rule.RespotRule`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Final

import attrs

from spotlake.compute.health import HealthLimits
from spotlake.compute.policy.fallback import Fallback
from spotlake.compute.policy.mix import ON_DEMAND_ONLY, SPOT_FIRST, CapacityMix
from spotlake.compute.policy.presets import Policy, balanced, cost_optimized, performance_optimized
from spotlake.compute.policy.rankers import ByPrice, PriceCapacity
from spotlake.compute.simulate.controllers import Controller, UniformProgress
from spotlake.compute.simulate.planner import DeadlinePlanner
from spotlake.compute.simulate.respot_rule import RespotRule
from spotlake.errors import ConfigError

__all__ = ["CONTENDERS", "Contender", "contenders"]

#: Blocks that last longer than any simulation: a pool or breaker that failed stays failed.
_FOREVER: Final = timedelta(days=3650)


@attrs.frozen(kw_only=True)
class Contender:
    """One way of getting capacity (see the module docstring)."""

    name: str
    policy: Policy
    limits: HealthLimits = attrs.field(factory=HealthLimits)
    #: Move fallen-back capacity back to spot when it is healthy (the allocator's revert).
    revert: bool = True
    #: Spot units that find no spot go to on-demand (else they wait for spot).
    on_demand_fallback: bool = True
    #: Decides per job with a deadline (``None``: the policy alone decides).
    controller: Controller | None = None
    #: Moves a job running on spot to cheaper spot when that pays (``None``: never; needs a
    #: controller, which is asked first).
    respot: RespotRule | None = attrs.field(default=None)
    #: Only the cheapest this many spot pools are used (``None``: all of them).
    pools: int | None = None
    description: str = ""

    def __attrs_post_init__(self) -> None:
        if self.respot is not None and self.controller is None:
            raise ConfigError(
                f"contender {self.name!r} has a respot rule but no controller: the engine asks the "
                "controller first and moves a job only when it keeps the job on spot; add one"
            )


def _sim_limits() -> HealthLimits:
    """The registry's limits, with a revert cooldown of five minutes: a simulated job waits for no
    operator, and the deadline-aware controllers move jobs back to spot as soon as they may."""
    return HealthLimits(revert_cooldown=timedelta(minutes=5))


def _all() -> dict[str, Contender]:
    base = cost_optimized()
    return {
        c.name: c
        for c in (
            Contender(
                name="on-demand",
                policy=attrs.evolve(base.only(ON_DEMAND_ONLY), name="on-demand"),
                revert=False,
                description="everything on on-demand",
            ),
            Contender(
                name="greedy",
                policy=attrs.evolve(base.only(SPOT_FIRST), name="greedy", spot_ranker=ByPrice()),
                limits=_sim_limits(),
                description="spot while available, else on-demand, back to spot when healthy",
            ),
            Contender(
                name="skypilot-like",
                policy=attrs.evolve(
                    base.only(SPOT_FIRST),
                    name="skypilot-like",
                    spot_ranker=ByPrice(),
                    fallback=Fallback(spot_pools=10_000),
                ),
                limits=HealthLimits(capacity_ttl=timedelta(0), breaker_failures=10**9),
                revert=False,
                on_demand_fallback=False,
                description="price order, per-launch blocklist without TTL, waits for spot",
            ),
            Contender(
                name="asg-like",
                policy=attrs.evolve(
                    base.only(CapacityMix(spot_percent=70)), name="asg-like", spot_ranker=ByPrice(), spread=2
                ),
                limits=HealthLimits(breaker_failures=10**9),
                revert=False,
                on_demand_fallback=False,
                description="fixed 30 % on-demand + 70 % spot over 2 pools, no fallback",
            ),
            Contender(
                name="uniform-progress",
                policy=attrs.evolve(base.only(SPOT_FIRST), name="uniform-progress", spot_ranker=ByPrice()),
                limits=_sim_limits(),
                on_demand_fallback=False,
                controller=UniformProgress(),
                pools=1,
                description="Can't Be Late's Uniform Progress, one pool",
            ),
            Contender(name="cost_optimized", policy=cost_optimized(), limits=_sim_limits()),
            Contender(name="balanced", policy=balanced(), limits=_sim_limits()),
            Contender(name="performance_optimized", policy=performance_optimized(), limits=_sim_limits()),
            Contender(
                name="spotlake-deadline",
                policy=attrs.evolve(
                    base.only(SPOT_FIRST),
                    name="spotlake-deadline",
                    spot_ranker=PriceCapacity(risk=0.5),
                    pools_per_launch=3,
                ),
                limits=_sim_limits(),
                on_demand_fallback=False,
                controller=DeadlinePlanner(),
                respot=RespotRule(),
                description="scores and several pools; planned waits, a reserve of two restarts, "
                "moves to cheaper spot when the saving pays for the restart",
            ),
        )
    }


#: Every contender's name, in the order of the comparison table.
CONTENDERS: Final = tuple(_all())


def contenders(names: Sequence[str] | None = None) -> tuple[Contender, ...]:
    """The contenders ``names`` (all of them by default), in the order given."""
    known = _all()
    wanted = list(names) if names else list(known)
    unknown = [n for n in wanted if n not in known]
    if unknown:
        raise ConfigError(f"unknown contender(s) {', '.join(unknown)}; known: {', '.join(known)}")
    return tuple(known[n] for n in wanted)
