"""The small blob interface every store is built on: whole objects, one atomic pointer, a lock.

A :class:`Backend` knows how to put/get/list/delete/move whole objects, how to swap the state
pointer with compare-and-swap, and how to lock. :class:`~spotlake.storage.core.ObjectStore` builds
the whole :class:`~spotlake.storage.base.SnapshotStore` on top, so the commit protocol, staging,
validation and garbage collection are written (and tested) once for the local directory
(:class:`~spotlake.storage.local.LocalBackend`) and S3 (:class:`~spotlake.storage.s3.S3Backend`).
A new storage service plugs in here: implement these methods and wrap it in an ``ObjectStore``.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from datetime import timedelta
from typing import Protocol

from spotlake.storage.base import LockInfo

__all__ = ["Backend"]


class Backend(Protocol):
    """Whole-object storage with an atomic pointer swap and a run lock."""

    @property
    def url(self) -> str: ...

    def put(self, key: str, data: bytes) -> None:
        """Write an object atomically: readers see the old content or the new, never a part."""
        ...

    def get(self, key: str) -> bytes | None:
        """The object's content, ``None`` if it does not exist."""
        ...

    def move(self, source: str, target: str) -> bool:
        """Move an object over another (the target is replaced whole); ``False`` if ``source`` is
        gone (moved already: moving is repeated safely after a crash)."""
        ...

    def children(self, prefix: str) -> list[str]:
        """Immediate children of a folder prefix (ending in ``/``): sub-folders end with ``/``.
        Hidden names (starting with ``.``) are not listed."""
        ...

    def list_tree(self, prefix: str) -> list[str]:
        """Every object key under a prefix, recursively."""
        ...

    def delete(self, keys: Sequence[str]) -> None:
        """Delete objects; missing ones are ignored."""
        ...

    def remove_temporaries(self, *, older_than: timedelta) -> int:
        """Delete leftovers of interrupted writes older than ``older_than``; how many."""
        ...

    def read_pointer(self, key: str) -> tuple[bytes, str] | None:
        """The pointer's content and a token for :meth:`swap_pointer`, ``None`` if absent."""
        ...

    def swap_pointer(self, key: str, data: bytes, *, token: str | None) -> None:
        """Replace the pointer only if it is unchanged since ``token`` was read (``None``: absent).

        Raises :class:`~spotlake.errors.ConflictError` otherwise.
        """
        ...

    def lock(self, run_id: str, *, timeout: float) -> AbstractContextManager[LockInfo]: ...
