"""Desired-count rotation: which desired count a run collects, and when to rebuild the day's plan.

SPS scores depend on the desired count (how many VMs one would ask for). Each 10-minute run collects
one count of :data:`~spotlake.model.DESIRED_COUNTS` (1, 5, 10, ... 50: a full cycle every 110
minutes). The first run of a UTC day collects count 1 and rebuilds the day's plan from the fresh
support set (the original's "first-time optimisation"). The original advanced its index *before*
collecting, so a failed run silently lost its count; here the index only advances when the run
reports success, so a failed count is retried by the next run. After ``max_attempts`` failures in a
row the count is skipped *explicitly* (recorded in the state) so one broken count cannot stall the
rotation.

The state is a small frozen value (:class:`RotationState`, a few hundred bytes of JSON, stored by
the pipeline as a state document, see :mod:`spotlake.pipeline.state`); the day's plan is stored
next to it. Values the API rejected are remembered here too (``invalid_*``) so the planner can
repair the plan. The functions are pure: the caller passes the current time (read from its injected
:class:`~spotlake.clock.Clock`).

Pipeline use, per run::

    state = StateDocs(snapshot, where).rotation()              # missing -> a fresh state
    decision = begin_run(state, clock.now())
    if decision.rebuild_plan or stored plan missing: plan = plan_calls(support, forbidden=...)
    ... collect SPS at decision.desired_count ...
    state = finish_run(state, decision, succeeded=ok)           # commit with the run's other state
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime
from typing import ClassVar, Final

import attrs

from spotlake.clock import ensure_utc
from spotlake.errors import ConfigError
from spotlake.model import DESIRED_COUNTS

__all__ = [
    "DEFAULT_MAX_ATTEMPTS",
    "RotationState",
    "RunDecision",
    "begin_run",
    "finish_run",
    "learn_invalid",
]

#: Failed runs in a row on one count before the rotation skips it (and records the skip). Three
#: runs are 30 minutes: long enough to ride out a throttling window, short enough that the other
#: counts do not go stale for a whole cycle.
DEFAULT_MAX_ATTEMPTS: Final = 3


def _counts(value: Iterable[int]) -> tuple[int, ...]:
    return tuple(int(v) for v in value)


def _check_counts(_inst: object, _attr: object, value: tuple[int, ...]) -> None:
    if not value or any(c < 1 for c in value) or len(set(value)) != len(value):
        raise ConfigError(f"desired counts must be distinct positive integers, got {list(value)}")


def _sorted_names(value: Iterable[str]) -> tuple[str, ...]:
    return tuple(sorted({str(v) for v in value}))


def _sorted_pairs(value: Iterable[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted({(str(r), str(s)) for r, s in value}))


@attrs.frozen(kw_only=True)
class RotationState:
    """Where the rotation stands between runs.

    ``index`` is the position in ``counts`` of the next count to collect; ``day`` the UTC date of
    the plan in use (``None`` before the first successful run); ``attempts`` the failed runs in a
    row on ``counts[index]``; ``skipped`` how many counts were given up after ``max_attempts``
    failures (``last_skipped`` the latest one, for alerts). ``invalid_*`` are values the SPS API
    rejected: regions, sizes, and (region, size) pairs. Collections are kept sorted and de-duplicated
    so equal states serialise identically.
    """

    #: Layout version of the stored document (``spotlake.serde.dump_doc``).
    DOC_FORMAT: ClassVar[int] = 1

    counts: tuple[int, ...] = attrs.field(default=DESIRED_COUNTS, converter=_counts, validator=_check_counts)
    index: int = attrs.field(default=0)
    day: date | None = None
    attempts: int = 0
    skipped: int = 0
    last_skipped: int | None = None
    invalid_regions: tuple[str, ...] = attrs.field(default=(), converter=_sorted_names)
    invalid_sizes: tuple[str, ...] = attrs.field(default=(), converter=_sorted_names)
    invalid_pairs: tuple[tuple[str, str], ...] = attrs.field(default=(), converter=_sorted_pairs)

    @index.validator
    def _check_index(self, _attr: object, value: int) -> None:
        if not 0 <= value < len(self.counts):
            raise ConfigError(f"rotation index must be within 0..{len(self.counts) - 1}, got {value}")


@attrs.frozen(kw_only=True)
class RunDecision:
    """What one run does: collect ``desired_count`` (position ``index``) for UTC day ``day``.

    ``new_day``: the first run of a UTC day (the count is reset to the first one). ``rebuild_plan``:
    build the day's plan from a fresh support set (a new day, or no plan ever built) instead of
    reusing the stored one. ``attempt`` is 1 for a first try and counts up while a count is retried.
    """

    desired_count: int
    index: int
    day: date
    new_day: bool
    rebuild_plan: bool
    attempt: int

    @property
    def retry(self) -> bool:
        """This run retries a count an earlier run failed."""
        return self.attempt > 1


def begin_run(state: RotationState, now: datetime) -> RunDecision:
    """Decide what the run at ``now`` (any timezone; compared as a UTC date) collects."""
    today = ensure_utc(now).date()
    if state.day is None or state.day != today:
        # A new UTC day (or the very first run): count 1, and a fresh plan for the day. A run on an
        # earlier date than the state's (a clock set back) is treated the same way: replan, restart.
        return RunDecision(
            desired_count=state.counts[0],
            index=0,
            day=today,
            new_day=True,
            rebuild_plan=True,
            # index 0 with failed attempts means earlier new-day runs failed: this is a retry.
            attempt=1 + (state.attempts if state.index == 0 else 0),
        )
    return RunDecision(
        desired_count=state.counts[state.index],
        index=state.index,
        day=today,
        new_day=False,
        rebuild_plan=False,
        attempt=state.attempts + 1,
    )


def finish_run(
    state: RotationState,
    decision: RunDecision,
    *,
    succeeded: bool,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
) -> RotationState:
    """The state after the run ``decision`` described finished (``succeeded`` or not).

    Success advances to the next count (wrapping around) and adopts the decision's day. Failure (a
    run that committed but could not collect its whole count) adopts the day too and keeps the count
    for the next run; after ``max_attempts`` failures in a row on one count, that count is skipped
    and the skip is recorded (``skipped``/``last_skipped``). A run that fails outright never reaches
    here (nothing is committed), so the next run makes the same decision again.
    """
    if max_attempts < 1:
        raise ConfigError(f"max_attempts must be >= 1, got {max_attempts}")
    n = len(state.counts)
    if decision.index >= n or state.counts[decision.index] != decision.desired_count:
        raise ConfigError(
            f"run decision (count {decision.desired_count} at position {decision.index}) does not belong "
            f"to this rotation {list(state.counts)}; call begin_run with the same state"
        )
    if succeeded:
        return attrs.evolve(state, index=(decision.index + 1) % n, day=decision.day, attempts=0)
    if decision.new_day:
        # finish_run(succeeded=False) describes a run that committed what it got (a run failing
        # outright commits nothing and is simply run again as a new-day run), so the day's plan is
        # stored: adopt the day and retry count 1 like any other count. Otherwise quota pressure
        # would keep every run of the day re-planning on count 1.
        state = attrs.evolve(state, day=decision.day)
    if decision.attempt >= max_attempts:
        return attrs.evolve(
            state,
            index=(decision.index + 1) % n,
            attempts=0,
            skipped=state.skipped + 1,
            last_skipped=decision.desired_count,
        )
    return attrs.evolve(state, index=decision.index, attempts=decision.attempt)


def learn_invalid(
    state: RotationState,
    *,
    regions: Iterable[str] = (),
    sizes: Iterable[str] = (),
    pairs: Iterable[tuple[str, str]] = (),
) -> RotationState:
    """Remember values the SPS API rejected (its HTTP 400 names them), for the planner's repair."""
    return attrs.evolve(
        state,
        invalid_regions=(*state.invalid_regions, *regions),
        invalid_sizes=(*state.invalid_sizes, *sizes),
        invalid_pairs=(*state.invalid_pairs, *pairs),
    )
