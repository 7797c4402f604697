"""A store backend that fails on cue, for testing crash safety through the public seams.

Wrap any :class:`~spotlake.storage.backend.Backend` (a local directory's, S3's) and build the store
on it: ``ObjectStore(FaultyBackend(LocalBackend(path), fail_at=5))`` raises
:class:`~spotlake.errors.StorageError` at the fifth write, as a full disk or a dropped connection
would, and records every operation so a test can see where a run was when it failed::

    backend = FaultyBackend(LocalBackend(tmp_path), fail_at=3)
    store = ObjectStore(backend)
    report = run_cycle(at, store=store, azure=access)   # fails at the third write
    backend.log                                         # [("put", ".staging/..."), ...]

Writes are ``put``, ``move``, ``delete`` and ``swap_pointer``; ``fail_at`` counts them from 1.
``fail_when(op, key)`` picks the failing operation by what it is instead (``fail_at`` then counts
only the operations it matches).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from datetime import timedelta

from spotlake.errors import StorageError
from spotlake.storage.backend import Backend
from spotlake.storage.base import LockInfo

__all__ = ["WRITES", "FaultyBackend"]

#: The operations that change a store.
WRITES = frozenset({"put", "move", "delete", "swap_pointer"})


class FaultyBackend:
    """A :class:`~spotlake.storage.backend.Backend` that raises at a chosen write (see the module)."""

    def __init__(
        self,
        inner: Backend,
        *,
        fail_at: int | None = None,
        fail_when: Callable[[str, str], bool] | None = None,
        error: str = "injected failure",
    ) -> None:
        self.inner = inner
        self.fail_at = fail_at
        self.fail_when = fail_when
        self.error = error
        #: Every write so far, ``(operation, key)``, the failing one included.
        self.log: list[tuple[str, str]] = []
        self._matched = 0
        self.failed: tuple[str, str] | None = None

    @property
    def url(self) -> str:
        return self.inner.url

    @property
    def writes(self) -> int:
        return len(self.log)

    def _write(self, op: str, key: str) -> None:
        self.log.append((op, key))
        if self.fail_when is not None and not self.fail_when(op, key):
            return
        self._matched += 1
        if self.fail_at is not None and self._matched == self.fail_at and self.failed is None:
            self.failed = (op, key)
            raise StorageError(f"{self.error} at write {self.writes} ({op} {key})")

    def put(self, key: str, data: bytes) -> None:
        self._write("put", key)
        self.inner.put(key, data)

    def get(self, key: str) -> bytes | None:
        return self.inner.get(key)

    def move(self, source: str, target: str) -> bool:
        self._write("move", target)
        return self.inner.move(source, target)

    def children(self, prefix: str) -> list[str]:
        return self.inner.children(prefix)

    def list_tree(self, prefix: str) -> list[str]:
        return self.inner.list_tree(prefix)

    def delete(self, keys: Sequence[str]) -> None:
        self._write("delete", keys[0] if keys else "")
        self.inner.delete(keys)

    def remove_temporaries(self, *, older_than: timedelta) -> int:
        return self.inner.remove_temporaries(older_than=older_than)

    def read_pointer(self, key: str) -> tuple[bytes, str] | None:
        return self.inner.read_pointer(key)

    def swap_pointer(self, key: str, data: bytes, *, token: str | None) -> None:
        self._write("swap_pointer", key)
        self.inner.swap_pointer(key, data, token=token)

    def lock(self, run_id: str, *, timeout: float) -> AbstractContextManager[LockInfo]:
        return self.inner.lock(run_id, timeout=timeout)
