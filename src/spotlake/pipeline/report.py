"""What one collection cycle did, typed end to end: :class:`RunReport` and its parts.

The report holds the typed reports of every stage (the plan's :class:`~spotlake.scoring.plan.PlanReport`,
one :class:`~spotlake.collect.base.CollectReport` per :class:`~spotlake.model.Source`, the scoring
engine's :class:`~spotlake.scoring.engine.ScoreReport`, one
:class:`~spotlake.storage.base.SinkReport` per sink). ``spotlake.serde.dump(report)`` is what the
CLI prints with ``--json`` and what the store keeps in its ``last_run`` document (docs/cli.md lists
the fields).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum
from typing import ClassVar

import attrs

from spotlake.collect.base import CollectReport
from spotlake.model import Source
from spotlake.scoring.engine import ScoreReport
from spotlake.scoring.plan import PlanReport
from spotlake.storage.base import SinkReport

__all__ = ["RunReport", "RunStatus", "ShardProgress", "UnknownPairs"]


class RunStatus(StrEnum):
    """How a run ended."""

    #: The run's state and frames are committed (some SPS calls may still have failed).
    COMMITTED = "committed"
    #: The run time was committed already: nothing to do (an idempotent rerun).
    SKIPPED = "skipped"
    #: Nothing was committed; the previous state stands and the count is retried next run.
    FAILED = "failed"
    #: A shard worker stored its part; other shards' parts are still missing.
    PENDING = "pending"


@attrs.frozen(kw_only=True)
class ShardProgress:
    """For a sharded run: this worker's shard, the parts present and missing, who finalised."""

    index: int
    count: int
    present: tuple[int, ...] = ()
    finalised: bool = False

    @property
    def missing(self) -> tuple[int, ...]:
        return tuple(i for i in range(self.count) if i not in self.present)


@attrs.frozen(kw_only=True)
class UnknownPairs:
    """(region, size) pairs whose SPS call failed this run: their scores are unknown, not gone.

    The snapshot serves their keys with the last known values (and the older ``observed_at``);
    the changeset records nothing for them.
    """

    count: int = 0
    #: Every unknown pair, sorted.
    pairs: tuple[tuple[str, str], ...] = ()


def _collectors(value: Mapping[Source, CollectReport]) -> dict[Source, CollectReport]:
    return {Source(k): v for k, v in value.items()}


@attrs.frozen(kw_only=True)
class RunReport:
    """What one cycle did."""

    DOC_FORMAT: ClassVar[int] = 2

    at: datetime
    status: RunStatus
    desired_count: int | None = None
    new_day: bool = False
    state_version: str | None = None
    plan: PlanReport | None = None
    #: One report per collected source.
    collectors: dict[Source, CollectReport] = attrs.field(factory=dict, converter=_collectors)
    scoring: ScoreReport | None = None
    sinks: tuple[SinkReport, ...] = ()
    #: SPS calls of the plan that failed (their pairs are :attr:`unknown`).
    failed_calls: int = 0
    unknown: UnknownPairs = attrs.field(factory=UnknownPairs)
    seconds: float = 0.0
    error: str | None = None
    error_type: str | None = None
    #: The run committed but feeding the sinks failed; a later run delivers it again.
    delivery_error: str | None = None
    #: Committed runs some sink is still owed (this one included when it failed).
    undelivered: tuple[datetime, ...] = ()
    #: Owed runs given up on this run (a sink kept refusing them while taking others, or the
    #: backlog outgrew a week); their frames stay in the store.
    parked: tuple[datetime, ...] = ()
    shard: ShardProgress | None = None

    @property
    def ok(self) -> bool:
        return self.status is not RunStatus.FAILED

    def collector(self, source: Source) -> CollectReport | None:
        """The report of one source, ``None`` if it was not collected in this run."""
        return self.collectors.get(source)

    @property
    def counts(self) -> dict[str, int]:
        """The per-run counts sent to the metrics sink."""
        sps = self.collector(Source.SPS) or self.collector(Source.AWS_SPS)
        scoring = self.scoring
        return {
            "collected": sps.rows if sps else 0,
            "merged": scoring.snapshot_rows if scoring else 0,
            "new": scoring.new if scoring else 0,
            "changed": scoring.changed if scoring else 0,
            "ceased": scoring.ceased if scoring else 0,
            "failed_calls": self.failed_calls,
            "unknown_pairs": self.unknown.count,
        }
