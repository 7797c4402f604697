"""The state documents a cycle reads and commits, typed: names, shapes and how to read them.

A store's state is named frames (the scoring engine's T2/T3 history) and named documents. The
pipeline's documents are:

* ``rotation``: :class:`~spotlake.scoring.rotation.RotationState` (which count is next);
* ``plan``: :class:`DayPlan`, the day's SPS plan;
* ``aws_plan``: :class:`AwsDayPlan`, the day's AWS placement-score queries (AWS tree only);
* ``aws_accounts``: the :class:`~spotlake.collect.aws.sps.AccountBook` (AWS tree only);
* ``quota`` (and ``quota.shard-i-of-n`` per shard): the SPS quota ledger;
* ``last_run``: :class:`LastRun`, the last committed run and its report;
* ``outbox``: :class:`Outbox`, committed runs whose sink delivery is still owed.

Each is a versioned document (:mod:`spotlake.serde`); a document this spotlake cannot read is a
:class:`~spotlake.errors.CorruptStoreError` naming the store, the document and what to do.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any, ClassVar, Final, TypeVar

import attrs

from spotlake.clock import ensure_utc
from spotlake.collect.aws.plan import AwsSpsPlan
from spotlake.collect.aws.sps import AccountBook
from spotlake.collect.quota import LedgerState, QuotaLedger
from spotlake.errors import ConfigError, CorruptStoreError
from spotlake.pipeline.report import RunReport
from spotlake.scoring.plan import Plan
from spotlake.scoring.rotation import RotationState
from spotlake.serde import load_doc
from spotlake.storage.base import StateSnapshot

__all__ = [
    "AWS_ACCOUNTS_DOC",
    "AWS_ONDEMAND_DOC",
    "AWS_PLAN_DOC",
    "LAST_RUN_DOC",
    "OUTBOX_DOC",
    "PLAN_DOC",
    "QUOTA_DOC",
    "ROTATION_DOC",
    "AwsDayPlan",
    "AwsOnDemandDay",
    "DayPlan",
    "LastRun",
    "Outbox",
    "Owed",
    "StateDocs",
    "legacy_run",
    "shard_ledger_doc",
]

T = TypeVar("T")

log = logging.getLogger(__name__)

ROTATION_DOC: Final = "rotation"
PLAN_DOC: Final = "plan"
QUOTA_DOC: Final = "quota"
LAST_RUN_DOC: Final = "last_run"
OUTBOX_DOC: Final = "outbox"
AWS_PLAN_DOC: Final = "aws_plan"
AWS_ACCOUNTS_DOC: Final = "aws_accounts"
AWS_ONDEMAND_DOC: Final = "aws_ondemand"


@attrs.frozen(kw_only=True)
class DayPlan:
    """The SPS plan of one UTC day (rebuilt by the day's first run)."""

    DOC_FORMAT: ClassVar[int] = 1

    date: date
    plan: Plan


@attrs.frozen(kw_only=True)
class AwsDayPlan:
    """The AWS placement-score queries of one UTC day (re-planned by the day's first run, from
    the day before's so that configurations repeat: spotlake.collect.aws.plan)."""

    DOC_FORMAT: ClassVar[int] = 1

    date: date
    plan: AwsSpsPlan
    #: Made from complete offerings (else provisional: the next run plans again).
    complete: bool = True
    #: The instance types asked for (empty: every type offered); another choice re-plans.
    instance_types: tuple[str, ...] = ()


@attrs.frozen(kw_only=True)
class AwsOnDemandDay:
    """Which day the stored on-demand prices are of, and the regions they still lack (fetched
    again by every run until none is missing)."""

    DOC_FORMAT: ClassVar[int] = 1

    date: date
    missing: tuple[str, ...] = ()


@attrs.frozen(kw_only=True)
class LastRun:
    """The last committed run: when, which count, and its report (as JSON, for operators)."""

    DOC_FORMAT: ClassVar[int] = 2

    at: datetime
    desired_count: int
    report: RunReport | None = None


@attrs.frozen(kw_only=True)
class Owed:
    """One committed run one sink has not taken yet.

    ``run`` is the run's stage (unique per committed run, even for a minute committed again after a
    rollback); ``attempts`` counts the deliveries that failed while the sink took other runs.
    ``failed_after``: a failed delivery not counted yet, and the newest committed run when it
    failed; if the sink takes a later run, it was up, and the failure counts as a refusal.
    """

    at: datetime
    run: str
    sink: str
    attempts: int = 0
    failed_after: datetime | None = None


@attrs.frozen(kw_only=True)
class Outbox:
    """What the sinks are owed, oldest first (see :mod:`spotlake.pipeline._delivery`).

    A run's entries are added by its own commit (one per sink) and leave once the sink's delivery
    marker exists, so a sink outage loses nothing.
    """

    DOC_FORMAT: ClassVar[int] = 2

    owed: tuple[Owed, ...] = ()

    @property
    def runs(self) -> tuple[datetime, ...]:
        """The runs some sink is owed, oldest first."""
        return tuple(sorted({o.at for o in self.owed}))


def legacy_run(at: datetime) -> str:
    """The run name (a stage id) given to a run committed before runs had stages (spotlake 0.1)."""
    return f"{ensure_utc(at):%Y%m%dT%H%M%S}-000000000000"


def shard_ledger_doc(label: str) -> str:
    """The quota ledger document of one shard (``quota.shard-1-of-3``)."""
    return f"{QUOTA_DOC}.{label}"


@attrs.frozen
class StateDocs:
    """Typed access to the documents of one committed state."""

    state: StateSnapshot
    where: str

    def _load(self, name: str, cls: type[T], hint: str) -> T | None:
        doc = self.state.docs.get(name)
        if not doc:
            return None
        return load_doc(_upgraded(doc), cls, where=f"{self.where} state document {name!r}", hint=hint)

    def rotation(self) -> RotationState:
        found = self._load(
            ROTATION_DOC,
            RotationState,
            f"delete the '{ROTATION_DOC}' document of a kept generation or roll back (docs/operations.md)",
        )
        return found or RotationState()

    def day_plan(self) -> DayPlan | None:
        """The stored day plan; ``None`` (the run rebuilds it) when it is missing or unreadable."""
        try:
            return self._load(PLAN_DOC, DayPlan, "")
        except CorruptStoreError as exc:  # the plan is a cache of the day's support set
            log.warning("%s; the run rebuilds the day's plan", exc)
            return None

    def aws_plan(self) -> AwsDayPlan | None:
        """The stored AWS day plan; ``None`` (re-planned from scratch) when missing or unreadable."""
        try:
            return self._load(AWS_PLAN_DOC, AwsDayPlan, "")
        except CorruptStoreError as exc:  # a cache of the day's offerings
            log.warning("%s; the run plans the day's queries again", exc)
            return None

    def aws_ondemand(self) -> AwsOnDemandDay | None:
        """The day and gaps of the stored on-demand prices (``None``: fetch them)."""
        try:
            return self._load(AWS_ONDEMAND_DOC, AwsOnDemandDay, "")
        except CorruptStoreError as exc:  # bookkeeping of a cache: fetch again
            log.warning("%s; the run fetches the on-demand prices again", exc)
            return None

    def account_book(self) -> AccountBook:
        """Which account served which configuration (empty when missing: accounts are then tried
        in order, and a full one says so with MaxConfigLimitExceeded)."""
        hint = "delete the document: the next run starts a fresh book"
        return self._load(AWS_ACCOUNTS_DOC, AccountBook, hint) or AccountBook()

    def last_run(self) -> LastRun | None:
        return self._load(LAST_RUN_DOC, LastRun, "roll back to a kept generation (docs/operations.md)")

    def outbox(self) -> Outbox | None:
        """The outbox; ``None`` for a store written before outboxes (its last run may be owed)."""
        return self._load(OUTBOX_DOC, Outbox, "roll back to a kept generation (docs/operations.md)")

    def ledger(self, name: str = QUOTA_DOC) -> QuotaLedger | None:
        hint = "delete the ledger document: the next run starts a fresh one"
        state = self._load(name, LedgerState, hint)
        if state is None:
            return None
        try:
            return QuotaLedger.from_state(state)
        except ConfigError as exc:
            raise CorruptStoreError(f"{self.where} state document {name!r}: {exc}; {hint}") from exc

    def ledgers(self) -> dict[str, QuotaLedger]:
        """Every quota ledger (the unsharded one and each shard's), by document name."""
        out: dict[str, QuotaLedger] = {}
        for name in sorted(self.state.docs):
            if name == QUOTA_DOC or name.startswith(QUOTA_DOC + "."):
                ledger = self.ledger(name)
                if ledger is not None:
                    out[name] = ledger
        return out


def _upgraded(doc: Mapping[str, Any]) -> Mapping[str, Any]:
    """Documents written by spotlake 0.1, before the versioned documents, in today's shape."""
    if "format" in doc:
        return doc
    if doc.get("version") == 1 and "window_seconds" in doc:  # a quota ledger
        rest = {k: v for k, v in doc.items() if k not in ("version", "window_seconds")}
        return {"format": 1, "window": doc["window_seconds"], **rest}
    if "at" in doc and "desired_count" in doc:  # a last run, with a report of another shape
        return {"format": 2, "at": doc["at"], "desired_count": doc["desired_count"]}
    if "date" in doc and isinstance(doc.get("plan"), Mapping):  # a day plan
        return {"format": 1, **doc}
    return doc
