"""What the placement-score collector (:mod:`spotlake.collect.aws.sps`) returns and raises: each
account's standing, why a query failed, the failed queries and the result."""

from __future__ import annotations

from enum import StrEnum

import attrs

from spotlake.collect.aws.accounts import AccountBook
from spotlake.collect.base import CollectResult, Failure
from spotlake.errors import CollectError

__all__ = ["AccountStatus", "AwsSpsResult", "CollectionStopped", "FailedQuery", "FailureReason"]


class AccountStatus(StrEnum):
    """Where an account stands at the end of a run."""

    #: It may take new configurations.
    USABLE = "usable"
    #: No new configuration until its ``full`` mark or its oldest record leaves the window.
    FULL = "full"
    #: Refused the call (access denied, no credentials): not asked again this run.
    DENIED = "denied"
    #: Its client could not be built.
    BROKEN = "broken"


class FailureReason(StrEnum):
    """Why a planned query ended unscored."""

    #: Every usable account is at its limit of new configurations.
    ALL_ACCOUNTS_FULL = "all-accounts-full"
    #: Every account was refused (access denied, no credentials) or could not be built.
    NO_USABLE_ACCOUNT = "no-usable-account"
    #: Throttling, server or network errors until ``max_attempts``.
    RETRIES_EXHAUSTED = "retries-exhausted"
    #: An error retrying cannot fix (``InvalidParameterValue`` ...).
    INVALID_REQUEST = "invalid-request"
    #: The answer was not the documented shape.
    PAYLOAD = "payload"

    @property
    def retry_next_run(self) -> bool:
        """Not the query's fault: the next run may well succeed."""
        return self is not FailureReason.INVALID_REQUEST


@attrs.frozen(kw_only=True)
class FailedQuery:
    """A planned query that was not scored: which, at what capacity, through which account, why."""

    index: int
    key: str
    instance_type: str
    regions: tuple[str, ...]
    target_capacity: int
    reason: FailureReason
    message: str
    account: str | None = None
    status: int | None = None
    attempts: int = 0

    @property
    def what(self) -> str:
        """The query, for a report line."""
        where = f"in [{','.join(self.regions)}] at capacity {self.target_capacity}"
        return f"aws_sps query #{self.index} {self.instance_type} {where}"

    def to_failure(self) -> Failure:
        """The report's :class:`Failure` for it."""
        via = f" (account {self.account})" if self.account else ""
        reason = f"{self.reason}: {self.message}{via}"
        return Failure(what=self.what, reason=reason, status=self.status, attempts=self.attempts)


@attrs.frozen(kw_only=True)
class AwsSpsResult(CollectResult):
    """What the collection returns: ``frame`` and ``report`` as every collector, plus the rest."""

    #: The book after the run (pruned): persist it for the next run.
    book: AccountBook
    failed_queries: tuple[FailedQuery, ...] = ()
    #: Configuration keys whose answer stopped at the top-10 limit (their other zones: unknown).
    truncated: tuple[str, ...] = ()
    #: Configuration key -> the account that scored it, for the queries that succeeded.
    served_by: dict[str, str] = attrs.field(factory=dict)
    #: Each account's standing at the end of the run.
    accounts: dict[str, AccountStatus] = attrs.field(factory=dict)


class CollectionStopped(CollectError):
    """The collection was abandoned before every query was run (see :meth:`AwsSpsCollector.collect`)."""
