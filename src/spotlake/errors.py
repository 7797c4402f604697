"""Every error spotlake raises, in one tree.

Catch :class:`SpotlakeError` to handle anything spotlake raises; catch a branch to handle one
failure domain. :class:`TransientError` is a *marker* mixed into the errors worth retrying, so a
retry policy asks ``isinstance(exc, TransientError)`` instead of listing classes.

::

    SpotlakeError
    ├── ConfigError                 bad configuration or input given to spotlake (fix the input)
    │   └── CredentialsError        credentials missing or malformed (names the source, never the secret)
    ├── CollectError                a collector could not get its data (``source`` names which)
    │   ├── TransientCollectError   + TransientError: 429/5xx/timeouts/resets; retried, then reported
    │   ├── AuthError               401 after a token refresh, or 403 (names the missing role)
    │   ├── QuotaExhaustedError     no (subscription, location) slot has quota left
    │   ├── InvalidRequestError     HTTP 400/404/other 4xx that retrying cannot fix
    │   ├── PayloadError            a response that is not the documented shape (malformed JSON, drift)
    │   └── IncompleteDataError     pages/calls finally failed; ``missing`` lists exactly which
    ├── PlanError                   the planner was given an impossible task
    ├── StorageError                a store or sink failed
    │   ├── LockedError             another run holds the store's lock
    │   ├── ConflictError           a conditional write lost a race (state changed underneath)
    │   └── CorruptStoreError       a stored file cannot be read back; nothing was overwritten
    ├── SinkError                   a time-series / metrics sink refused data
    └── ComputeError                the allocator could not obtain capacity
        └── CapacityError           + TransientError: a provider had no capacity for an offer

Messages say what failed and what to do. They never contain secrets (client secrets, tokens,
webhook URLs): build messages from identifiers only, and pass secrets through
:class:`spotlake.model.Secret`, whose ``repr``/``str`` are redacted.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "AuthError",
    "CapacityError",
    "CollectError",
    "ComputeError",
    "ConfigError",
    "ConflictError",
    "CorruptStoreError",
    "CredentialsError",
    "IncompleteDataError",
    "InvalidRequestError",
    "LockedError",
    "PayloadError",
    "PlanError",
    "QuotaExhaustedError",
    "SinkError",
    "SpotlakeError",
    "StorageError",
    "TransientCollectError",
    "TransientError",
]


class SpotlakeError(Exception):
    """Root of every error spotlake raises on purpose."""


class TransientError(SpotlakeError):
    """Marker: the same operation may succeed if tried again later."""


class ConfigError(SpotlakeError):
    """Configuration or input given to spotlake is wrong; the message says how to fix it."""


class CredentialsError(ConfigError):
    """Credentials are missing or malformed. The message names the source, never the secret."""


class CollectError(SpotlakeError):
    """A collector could not get its data.

    ``source`` names the collector ("prices", "sps", "eviction", "skus", "auth") so a caller
    that runs several collectors can tell which one failed.
    """

    def __init__(self, message: str, *, source: str, status: int | None = None) -> None:
        super().__init__(message)
        self.source = source
        self.status = status


class TransientCollectError(CollectError, TransientError):
    """A 429, 5xx, timeout or reset: retried with backoff, then reported if it persists.

    ``retry_after`` is the server's requested wait in seconds, when it gave one.
    """

    def __init__(
        self,
        message: str,
        *,
        source: str,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, source=source, status=status)
        self.retry_after = retry_after


class AuthError(CollectError):
    """Authentication failed (401 after one token refresh) or authorisation was denied (403)."""


class QuotaExhaustedError(CollectError):
    """Every (subscription, location) slot is over its call budget; ``retry_at`` says when one frees."""

    def __init__(self, message: str, *, source: str, retry_at: str | None = None) -> None:
        super().__init__(message, source=source, status=429)
        self.retry_at = retry_at


class InvalidRequestError(CollectError):
    """A 4xx that retrying cannot fix. ``invalid_values`` holds values the server named as invalid."""

    def __init__(
        self,
        message: str,
        *,
        source: str,
        status: int | None = None,
        parameter: str | None = None,
        invalid_values: Sequence[str] = (),
    ) -> None:
        super().__init__(message, source=source, status=status)
        self.parameter = parameter
        self.invalid_values = tuple(invalid_values)


class PayloadError(CollectError):
    """A response that is not the documented shape (malformed JSON, missing required fields)."""


class IncompleteDataError(CollectError):
    """Some pages or calls finally failed. ``missing`` names each one and why."""

    def __init__(self, message: str, *, source: str, missing: Sequence[str] = ()) -> None:
        super().__init__(message, source=source)
        self.missing = tuple(missing)


class PlanError(SpotlakeError):
    """The planner was given an impossible task (e.g. limits below 1)."""


class StorageError(SpotlakeError):
    """A store or sink could not read or write."""


class LockedError(StorageError):
    """Another run holds the store's lock. Wait for it, or remove a stale lock as the message says."""


class ConflictError(StorageError):
    """A conditional write lost a race: another run changed the state first. Nothing was overwritten."""


class CorruptStoreError(StorageError):
    """A stored file cannot be read back. Nothing was overwritten; the message names the file."""


class SinkError(StorageError):
    """A time-series or metrics sink refused data after retries."""


class ComputeError(SpotlakeError):
    """The allocator could not obtain capacity."""


class CapacityError(ComputeError, TransientError):
    """A provider had no capacity (or the max price was too low) for one offer."""

    def __init__(self, message: str, *, reason: str = "capacity") -> None:
        super().__init__(message)
        self.reason = reason
