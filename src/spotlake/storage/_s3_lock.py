"""The S3 store's run lock: one object taken with conditional writes, kept alive by a heartbeat.

* Taking it: ``.spotlake.lock`` is created with ``If-None-Match: *``; it records the holder and
  an expiry. A lock past its expiry (its run died) is taken over with ``If-Match: <its ETag>``, so
  two waiting runs cannot both take it.
* Keeping it: while the run works, a heartbeat thread rewrites the object every ``heartbeat``
  seconds (a third of the TTL by default) with a later expiry, conditionally on the ETag it last
  wrote. So a live run never looks dead however long it takes, and a crashed one stops renewing
  and expires a TTL later. If a renewal finds the object changed (the lock was taken over: the run
  stalled for longer than the TTL), the run is told in the log; its commit stays protected by the
  state's compare-and-swap, and its frames by the stage that only its own commit can publish.
* Releasing it: a conditional ``DeleteObject`` with the last ETag, so a run never deletes a lock
  taken over from it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Final

import attrs

from spotlake.clock import Clock, ensure_utc
from spotlake.errors import LockedError, SpotlakeError
from spotlake.retry import polling
from spotlake.storage.base import LockInfo
from spotlake.storage.layout import LOCK_KEY

if TYPE_CHECKING:
    from spotlake.storage.s3 import S3Backend

__all__ = ["LOCK_KEY", "S3RunLock"]

log = logging.getLogger(__name__)

#: Immediate re-tries when the lock object changes between our look and our conditional write.
_MAX_RACES: Final = 20


class S3RunLock:
    """Holds the run lock of one S3 store (see the module docstring)."""

    def __init__(
        self,
        objects: S3Backend,
        *,
        clock: Clock,
        ttl: timedelta,
        poll_seconds: float,
        heartbeat: float | None = None,
    ) -> None:
        self._objects = objects
        self._clock = clock
        self._ttl = ttl
        self._poll = poll_seconds
        self._every = heartbeat if heartbeat is not None else ttl.total_seconds() / 3
        self._etag: str | None = None
        self._guard = threading.Lock()
        #: Written into every version of the lock object this hold writes: a write whose answer was
        #: lost (the retry then fails its condition) is recognised as ours by it.
        self._nonce = uuid.uuid4().hex
        #: Set when a renewal found the lock taken over by another run.
        self.lost = threading.Event()

    @contextlib.contextmanager
    def hold(self, run_id: str, *, timeout: float) -> Iterator[LockInfo]:
        try:
            for attempt in polling(clock=self._clock, timeout=timeout, every=self._poll, on=_Held):
                with attempt:
                    info = self._take(run_id)
        except _Held as held:
            raise LockedError(self._locked_message(held.holder, timeout)) from None
        stop = threading.Event()
        beat = threading.Thread(target=self._beat, args=(info, stop), name="spotlake-s3-lock", daemon=True)
        beat.start()
        try:
            yield info
        finally:
            stop.set()
            beat.join()
            self._release(info)

    def renew(self, info: LockInfo) -> bool:
        """Push the expiry one TTL into the future; ``False`` if the lock was taken over."""
        with self._guard:
            if self._etag is None:
                return False
            now = ensure_utc(self._clock.now())
            renewed = attrs.evolve(info, expires_at=now + self._ttl)
            etag = self._objects.put_if(LOCK_KEY, _encode(renewed, self._nonce), etag=self._etag)
            if etag is None:
                etag = self._still_mine()
            if etag is None:
                self._etag = None
                self.lost.set()
                log.error(
                    "%s: the lock of %s was taken over by another run (this run stalled longer than the "
                    "lock TTL %s); its commit can only fail safely now",
                    self._objects.url,
                    info.describe(),
                    self._ttl,
                )
                return False
            self._etag = etag
            return True

    def _beat(self, info: LockInfo, stop: threading.Event) -> None:
        while not stop.wait(self._every):
            try:
                if not self.renew(info):
                    return
            except SpotlakeError as exc:  # S3 unreachable for a moment: try again next beat
                log.warning("%s: renewing the run lock failed (%s); trying again", self._objects.url, exc)

    def _take(self, run_id: str) -> LockInfo:
        """Take the lock now, or raise :class:`_Held` naming its live holder."""
        for _race in range(_MAX_RACES):
            now = ensure_utc(self._clock.now())
            info = LockInfo(run_id=run_id, owner=_owner(), acquired_at=now, expires_at=now + self._ttl)
            body = _encode(info, self._nonce)
            etag = self._objects.put_if(LOCK_KEY, body, etag=None)
            if etag is not None:
                self._etag = etag
                return info
            found = self._objects.get_tagged(LOCK_KEY)
            if found is not None and _nonce_of(found[0]) == self._nonce:
                # Our own write landed though its answer was lost (the retry failed its condition).
                self._etag = found[1]
                return info
            holder = _decode(found[0]) if found else None
            if found is not None and holder is not None and holder.expires_at and holder.expires_at > now:
                raise _Held(holder)
            # Gone, unreadable or expired: take it (over) at once, conditionally, so of two waiting
            # runs only one succeeds; the loser looks again.
            if found is not None:
                etag = self._objects.put_if(LOCK_KEY, body, etag=found[1])
                if etag is not None:
                    self._etag = etag
                    previous = holder.describe() if holder else "an unreadable lock object"
                    log.warning(
                        "%s: took over the expired lock of %s (never released: presumably it died)",
                        self._objects.url,
                        previous,
                    )
                    return attrs.evolve(info, recovered=previous)
        # A lock that keeps changing hands this fast means a misbehaving peer.
        raise LockedError(f"store {self._objects.url}: the lock object keeps changing; try again later")

    def _still_mine(self) -> str | None:
        """The lock object's ETag if it is a version this hold wrote (a write whose answer was lost)."""
        found = self._objects.get_tagged(LOCK_KEY)
        return found[1] if found is not None and _nonce_of(found[0]) == self._nonce else None

    def _release(self, info: LockInfo) -> None:
        with self._guard:
            etag, self._etag = self._etag, None
        if etag is not None and not self._objects.delete_if(LOCK_KEY, etag=etag):
            etag = self._still_mine()  # our last renewal landed though its answer was lost
            if etag is not None and self._objects.delete_if(LOCK_KEY, etag=etag):
                return
            etag = None
        if etag is None:
            log.warning(
                "%s: the lock of %s was taken over by another run before it was released; raise the "
                "lock TTL if runs legitimately stall this long",
                self._objects.url,
                info.describe(),
            )

    def _locked_message(self, holder: LockInfo, timeout: float) -> str:
        waited = f" after waiting {timeout:g} s" if timeout > 0 else ""
        until = holder.expires_at.isoformat() if holder.expires_at else "?"
        return (
            f"store {self._objects.url} is locked by {holder.describe()}{waited}. Wait for it to finish; "
            f"if that run died, its lock expires at {until} (a live run keeps renewing it) and the next "
            f"run takes it over (or delete {self._objects.url}/{LOCK_KEY} once you are sure it is gone)"
        )


class _Held(Exception):
    """Internal: the lock is held by a live run (retried until the timeout)."""

    def __init__(self, holder: LockInfo) -> None:
        super().__init__(holder.describe())
        self.holder = holder


def _owner() -> str:
    owner = f"pid {os.getpid()} on host {socket.gethostname()}"
    job = os.environ.get("AWS_BATCH_JOB_ID")
    return f"{owner}, AWS Batch job {job}" if job else owner


def _encode(info: LockInfo, nonce: str) -> bytes:
    return json.dumps(
        {
            "run_id": info.run_id,
            "owner": info.owner,
            "acquired_at": info.acquired_at.isoformat(),
            "expires_at": info.expires_at.isoformat() if info.expires_at else None,
            # Which hold wrote it; also keeps two runs' identical bodies from sharing an ETag.
            "nonce": nonce,
        }
    ).encode()


def _nonce_of(data: bytes) -> str | None:
    try:
        nonce = json.loads(data).get("nonce")
    except (ValueError, AttributeError):
        return None
    return nonce if isinstance(nonce, str) else None


def _decode(data: bytes) -> LockInfo | None:
    try:
        body = json.loads(data)
        expires = body.get("expires_at")
        return LockInfo(
            run_id=str(body["run_id"]),
            owner=str(body["owner"]),
            acquired_at=ensure_utc(datetime.fromisoformat(body["acquired_at"])),
            expires_at=ensure_utc(datetime.fromisoformat(expires)) if expires else None,
        )
    except (ValueError, KeyError, TypeError):
        return None
