"""The S3 store: the local layout under ``s3://bucket/prefix``, with conditional writes for safety.

* Objects are written with one ``PutObject`` each (S3 replaces an object atomically).
* ``state/CURRENT`` is replaced with ``If-Match: <etag it had when read>``, or created with
  ``If-None-Match: *`` on the first commit, so of two runs committing on the same parent exactly one
  succeeds; the other gets :class:`~spotlake.errors.ConflictError` (S3 answers 412, or 409 when two
  conditional writes race).
* The run lock is the object ``.spotlake.lock`` (:mod:`spotlake.storage._s3_lock`): created with
  ``If-None-Match: *``, renewed by a heartbeat while the run lives, taken over with ``If-Match``
  once expired, released with a conditional ``DeleteObject``.
* An empty bucket works: nothing needs seeding.

IAM: ``s3:GetObject``, ``s3:PutObject``, ``s3:DeleteObject`` on ``bucket/prefix/*`` and
``s3:ListBucket`` on the bucket (with an ``s3:prefix`` condition if you like).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from contextlib import AbstractContextManager
from datetime import timedelta
from typing import Any, NoReturn

from spotlake.clock import Clock, SystemClock
from spotlake.errors import ConfigError, ConflictError, StorageError
from spotlake.storage._s3_lock import S3RunLock
from spotlake.storage.aws import (
    ACCESS_DENIED_CODES,
    error_code,
    error_message,
    http_status,
    make_client,
    transport_error,
)
from spotlake.storage.base import LockInfo
from spotlake.storage.core import DEFAULT_KEEP_GENERATIONS, ObjectStore
from spotlake.storage.layout import LOCK_KEY

__all__ = ["DEFAULT_S3_LOCK_TTL", "LOCK_KEY", "S3Backend", "S3Store", "bucket_name_problem", "parse_s3_url"]

log = logging.getLogger(__name__)


#: An S3 lock older than this is presumed dead and may be taken over. Runs start every 10 minutes
#: and take a few; 30 minutes lets a slow run finish while a crashed one blocks at most 3 runs.
DEFAULT_S3_LOCK_TTL = timedelta(minutes=30)

#: How often a waiting locker polls the lock object (seconds, on the store's clock).
LOCK_POLL_SECONDS = 5.0

_CONFLICT_CODES = frozenset({"PreconditionFailed", "ConditionalRequestConflict"})
_MISSING_CODES = frozenset({"NoSuchKey", "404", "NotFound"})


#: S3's naming rules for general purpose buckets, besides length and characters: reserved prefixes
#: and suffixes (access point and Multi-Region Access Point aliases, directory and table buckets).
_RESERVED_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
_RESERVED_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")
_BUCKET_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789.-")
_IP_ADDRESS = re.compile(r"\d{1,3}(\.\d{1,3}){3}")


def bucket_name_problem(bucket: str) -> str | None:
    """The S3 naming rule ``bucket`` breaks (a phrase for a message), or ``None`` for a valid name.

    The rules of general purpose buckets: 3 to 63 characters; lowercase letters, digits, dots and
    hyphens; a letter or digit first and last; no two dots in a row; not an IP address; none of the
    reserved prefixes and suffixes.
    """
    if not 3 <= len(bucket) <= 63:
        return f"a bucket name must have 3 to 63 characters (this one has {len(bucket)})"
    bad = sorted(set(bucket) - _BUCKET_CHARS, key=bucket.index)
    if bad:
        found = ", ".join(repr(c) for c in bad)
        return f"a bucket name may contain only lowercase letters, digits, dots and hyphens (found {found})"
    if not (bucket[0].isalnum() and bucket[-1].isalnum()):
        return "a bucket name must start and end with a letter or digit"
    if ".." in bucket:
        return "a bucket name must not contain two dots in a row"
    if _IP_ADDRESS.fullmatch(bucket):
        return "a bucket name must not be formatted as an IP address"
    for prefix in _RESERVED_PREFIXES:
        if bucket.startswith(prefix):
            return f"the prefix {prefix!r} is reserved by S3"
    for suffix in _RESERVED_SUFFIXES:
        if bucket.endswith(suffix):
            return f"the suffix {suffix!r} is reserved by S3"
    return None


def parse_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` -> ``("bucket", "some/prefix")``.

    :class:`ConfigError` (a usage error, before any network call) for anything else, including a
    bucket name S3 does not allow (:func:`bucket_name_problem`).
    """
    if not url.startswith("s3://"):
        raise ConfigError(f"not an S3 URL: {url!r} (expected s3://bucket/prefix)")
    bucket, _, prefix = url[len("s3://") :].partition("/")
    if not bucket:
        raise ConfigError(f"S3 URL {url!r} names no bucket (expected s3://bucket/prefix)")
    problem = bucket_name_problem(bucket)
    if problem is not None:
        raise ConfigError(f"S3 URL {url!r}: {bucket!r} is not a valid bucket name: {problem}")
    return bucket, prefix.strip("/")


class S3Backend:
    """Objects under ``s3://bucket/prefix`` (see :class:`~spotlake.storage.core.Backend`)."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        client: Any = None,
        clock: Clock | None = None,
        lock_ttl: timedelta = DEFAULT_S3_LOCK_TTL,
        poll_seconds: float = LOCK_POLL_SECONDS,
        heartbeat: float | None = None,
    ) -> None:
        self._bucket = bucket
        self._prefix = prefix.strip("/")
        self._client = client if client is not None else make_client("s3")
        self._clock: Clock = clock or SystemClock()
        self._lock_ttl = lock_ttl
        self._poll = poll_seconds
        self._heartbeat = heartbeat

    @property
    def url(self) -> str:
        return f"s3://{self._bucket}/{self._prefix}" if self._prefix else f"s3://{self._bucket}"

    @property
    def client(self) -> Any:
        return self._client

    @property
    def bucket(self) -> str:
        return self._bucket

    def key(self, rel: str) -> str:
        """The full object key of a store-relative key."""
        return f"{self._prefix}/{rel}" if self._prefix else rel

    def _rel(self, full: str) -> str:
        return full[len(self._prefix) + 1 :] if self._prefix else full

    def _fail(self, exc: BaseException, action: str, rel: str) -> NoReturn:
        where = f"s3://{self._bucket}/{self.key(rel)}"
        code = error_code(exc)
        if code == "NoSuchBucket":
            raise StorageError(
                f"bucket {self._bucket!r} does not exist (while trying to {action} {where}); create it "
                "first (aws s3 mb) or fix the store URL"
            ) from exc
        if code in ACCESS_DENIED_CODES or http_status(exc) == 403:
            raise StorageError(
                f"access denied trying to {action} {where} ({code}); the role needs s3:GetObject, "
                f"s3:PutObject, s3:DeleteObject on {self.url}/* and s3:ListBucket on the bucket"
            ) from exc
        if transport_error(exc):
            raise StorageError(f"could not reach S3 to {action} {where}: {exc}") from exc
        raise StorageError(f"S3 refused to {action} {where}: {code}: {error_message(exc)}") from exc

    # --- objects -------------------------------------------------------------------------------

    def put(self, key: str, data: bytes) -> None:
        try:
            self._client.put_object(Bucket=self._bucket, Key=self.key(key), Body=data)
        except Exception as exc:
            self._fail(exc, "write", key)

    def _get(self, key: str) -> tuple[bytes, str] | None:
        try:
            response = self._client.get_object(Bucket=self._bucket, Key=self.key(key))
            return response["Body"].read(), str(response["ETag"])
        except Exception as exc:
            if error_code(exc) in _MISSING_CODES:
                return None
            self._fail(exc, "read", key)

    def get(self, key: str) -> bytes | None:
        found = self._get(key)
        return found[0] if found else None

    def children(self, prefix: str) -> list[str]:
        full = self.key(prefix)
        out: list[str] = []
        try:
            paginator = self._client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self._bucket, Prefix=full, Delimiter="/"):
                out.extend(p["Prefix"][len(full) :] for p in page.get("CommonPrefixes", []))
                out.extend(o["Key"][len(full) :] for o in page.get("Contents", []))
        except Exception as exc:
            self._fail(exc, "list", prefix)
        return [name for name in out if name and not name.startswith(".")]

    def move(self, source: str, target: str) -> bool:
        # S3 has no rename: copy (the target is replaced whole), then delete the source.
        try:
            self._client.copy_object(
                Bucket=self._bucket,
                Key=self.key(target),
                CopySource={"Bucket": self._bucket, "Key": self.key(source)},
            )
        except Exception as exc:
            if error_code(exc) in _MISSING_CODES:
                return False
            self._fail(exc, "copy to", target)
        self.delete([source])
        return True

    def remove_temporaries(self, *, older_than: timedelta) -> int:
        return 0  # S3 writes whole objects: an interrupted PutObject leaves nothing behind

    def list_tree(self, prefix: str) -> list[str]:
        full = self.key(prefix)
        out: list[str] = []
        try:
            paginator = self._client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self._bucket, Prefix=full):
                out.extend(self._rel(o["Key"]) for o in page.get("Contents", []))
        except Exception as exc:
            self._fail(exc, "list", prefix)
        return sorted(out)

    def delete(self, keys: Sequence[str]) -> None:
        # DeleteObjects takes at most 1000 keys per call.
        for start in range(0, len(keys), 1000):
            chunk = keys[start : start + 1000]
            try:
                response = self._client.delete_objects(
                    Bucket=self._bucket,
                    Delete={"Objects": [{"Key": self.key(k)} for k in chunk], "Quiet": True},
                )
            except Exception as exc:
                self._fail(exc, "delete objects under", chunk[0])
            errors = response.get("Errors", [])
            if errors:
                first = errors[0]
                raise StorageError(
                    f"S3 could not delete {len(errors)} object(s) under {self.url}, e.g. "
                    f"{first.get('Key')}: {first.get('Code')} {first.get('Message')}"
                )

    # --- pointer -------------------------------------------------------------------------------

    def read_pointer(self, key: str) -> tuple[bytes, str] | None:
        return self._get(key)

    def swap_pointer(self, key: str, data: bytes, *, token: str | None) -> None:
        condition = {"IfMatch": token} if token is not None else {"IfNoneMatch": "*"}
        try:
            self._client.put_object(Bucket=self._bucket, Key=self.key(key), Body=data, **condition)
        except Exception as exc:
            if error_code(exc) in _CONFLICT_CODES or http_status(exc) in (409, 412):
                raise ConflictError(f"s3://{self._bucket}/{self.key(key)} changed since it was read") from exc
            self._fail(exc, "update", key)

    # --- conditional objects (the run lock) ---------------------------------------------------

    def get_tagged(self, key: str) -> tuple[bytes, str] | None:
        """An object's content and ETag, ``None`` if it does not exist."""
        return self._get(key)

    def put_if(self, key: str, data: bytes, *, etag: str | None) -> str | None:
        """Write ``key`` only if its ETag is ``etag`` (``None``: only if it does not exist).

        Returns the new ETag, or ``None`` if the condition failed.
        """
        condition = {"IfMatch": etag} if etag is not None else {"IfNoneMatch": "*"}
        try:
            response = self._client.put_object(Bucket=self._bucket, Key=self.key(key), Body=data, **condition)
            return str(response["ETag"])
        except Exception as exc:
            if error_code(exc) in _CONFLICT_CODES or http_status(exc) in (409, 412):
                return None
            self._fail(exc, "write", key)

    def delete_if(self, key: str, *, etag: str) -> bool:
        """Delete ``key`` only if its ETag is ``etag``; ``False`` if it changed (a missing key is gone)."""
        try:
            self._client.delete_object(Bucket=self._bucket, Key=self.key(key), IfMatch=etag)
        except Exception as exc:
            if error_code(exc) in _CONFLICT_CODES or http_status(exc) in (409, 412):
                return False
            if error_code(exc) in _MISSING_CODES:
                return True
            self._fail(exc, "delete", key)
        return True

    def lock(self, run_id: str, *, timeout: float) -> AbstractContextManager[LockInfo]:
        return S3RunLock(
            self, clock=self._clock, ttl=self._lock_ttl, poll_seconds=self._poll, heartbeat=self._heartbeat
        ).hold(run_id, timeout=timeout)


class S3Store(ObjectStore):
    """A :class:`~spotlake.storage.base.SnapshotStore` under ``s3://bucket/prefix``.

    ``client`` is a boto3 S3 client (built from the default credential chain when omitted).
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        client: Any = None,
        clock: Clock | None = None,
        keep_generations: int = DEFAULT_KEEP_GENERATIONS,
        lock_ttl: timedelta = DEFAULT_S3_LOCK_TTL,
        poll_seconds: float = LOCK_POLL_SECONDS,
        heartbeat: float | None = None,
    ) -> None:
        clock = clock or SystemClock()
        backend = S3Backend(
            bucket,
            prefix,
            client=client,
            clock=clock,
            lock_ttl=lock_ttl,
            poll_seconds=poll_seconds,
            heartbeat=heartbeat,
        )
        super().__init__(backend, clock=clock, keep_generations=keep_generations)
        self._s3 = backend

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> S3Store:
        bucket, prefix = parse_s3_url(url)
        return cls(bucket, prefix, **kwargs)

    @property
    def bucket(self) -> str:
        return self._s3.bucket

    @property
    def client(self) -> Any:
        return self._s3.client

    def object_key(self, rel: str) -> str:
        """The full S3 key of a store-relative key (e.g. ``state/CURRENT``)."""
        return self._s3.key(rel)
