"""The default store: a local directory of Parquet and JSON files.

Layout: see :mod:`spotlake.storage.layout`. The directory is plain files, so pandas, pyarrow and
DuckDB read it without spotlake (``pd.read_parquet(root / "raw" / "source=sps")``).

Guarantees, and how:

* **Atomic writes**: every file is written to a hidden temporary file in the same directory,
  flushed and fsynced, then renamed over the target with :func:`os.replace` (atomic on POSIX), and
  the directory is fsynced so the rename survives a power cut. A crash leaves at worst a hidden
  ``.*.tmp`` file that readers ignore.
* **State commits**: a new generation directory is written, then ``state/CURRENT`` is replaced in
  one ``os.replace``. The compare-and-swap (is CURRENT still what this run read?) runs under an
  exclusive ``flock`` on ``state/.commit.lock``, held for microseconds, so two processes committing
  on the same parent cannot both succeed.
* **Run lock**: an exclusive ``flock`` on ``.spotlake.lock`` in the root, which records the holder
  (run id, pid, host, since when). The kernel releases a ``flock`` when its process dies, so a
  crashed run never leaves the store locked; the next run sees the dead holder's record, logs it
  and reports it in :attr:`~spotlake.storage.base.LockInfo.recovered`.

``flock`` needs a POSIX system and a file system that supports it (local disks do; NFS via
``fcntl`` emulation on Linux). For several machines sharing one store, use the S3 store.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import socket
import uuid
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, Any

from spotlake.clock import Clock, SystemClock, ensure_utc
from spotlake.errors import ConfigError, ConflictError, LockedError, StorageError
from spotlake.retry import polling
from spotlake.storage.base import LockInfo
from spotlake.storage.core import DEFAULT_KEEP_GENERATIONS, ObjectStore
from spotlake.storage.layout import COMMIT_LOCK_KEY, LOCK_KEY

__all__ = ["DEFAULT_LOCAL_LOCK_TTL", "LOCK_FILE", "LocalBackend", "LocalStore"]

log = logging.getLogger(__name__)

LOCK_FILE = LOCK_KEY
COMMIT_LOCK_FILE = COMMIT_LOCK_KEY

#: A run holding the lock longer than this is reported as probably hung in LockedError messages.
#: Collection runs every 10 minutes and takes a few; an hour is far beyond a healthy run.
DEFAULT_LOCAL_LOCK_TTL = timedelta(hours=1)

#: How often a waiting locker retries (seconds, on the store's clock).
LOCK_POLL_SECONDS = 1.0


def _fcntl() -> Any:
    try:
        import fcntl
    except ImportError as exc:  # pragma: no cover - Windows
        raise StorageError(
            "the local store's locks need a POSIX system (fcntl); on Windows use WSL or the S3 store"
        ) from exc
    return fcntl


class LocalBackend:
    """Files under a root directory (see :class:`~spotlake.storage.core.Backend`)."""

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        clock: Clock | None = None,
        lock_ttl: timedelta = DEFAULT_LOCAL_LOCK_TTL,
        poll_seconds: float = LOCK_POLL_SECONDS,
        fsync: bool = True,
    ) -> None:
        self._root = Path(root).expanduser().absolute()
        if self._root.exists() and not self._root.is_dir():
            raise ConfigError(f"store root {self._root} exists and is not a directory")
        self._clock: Clock = clock or SystemClock()
        self._lock_ttl = lock_ttl
        self._poll = poll_seconds
        self._fsync = fsync

    @property
    def url(self) -> str:
        return str(self._root)

    @property
    def root(self) -> Path:
        return self._root

    def _path(self, key: str) -> Path:
        if key.startswith("/") or ".." in key.split("/"):
            raise ConfigError(f"store key {key!r} escapes the store root")
        return self._root / key

    # --- objects -------------------------------------------------------------------------------

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.parent / f".{path.name}.{uuid.uuid4().hex[:12]}.tmp"
            try:
                with open(tmp, "wb") as fh:
                    fh.write(data)
                    self._sync(fh)
                os.replace(tmp, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    tmp.unlink()
                raise
            self._sync_dir(path.parent)
        except OSError as exc:
            raise StorageError(f"cannot write {path}: {exc.strerror or exc}") from exc

    def _sync(self, fh: IO[bytes]) -> None:
        fh.flush()
        if self._fsync:
            os.fsync(fh.fileno())

    def _sync_dir(self, directory: Path) -> None:
        # The rename is durable only once the directory entry is on disk.
        if not self._fsync:
            return
        try:
            fd = os.open(directory, os.O_RDONLY)
        except OSError:
            return
        try:
            os.fsync(fd)
        except OSError:
            pass  # some file systems refuse fsync on directories; the rename is still atomic
        finally:
            os.close(fd)

    def get(self, key: str) -> bytes | None:
        path = self._path(key)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StorageError(f"cannot read {path}: {exc.strerror or exc}") from exc

    def children(self, prefix: str) -> list[str]:
        directory = self._path(prefix.rstrip("/")) if prefix else self._root
        try:
            with os.scandir(directory) as entries:
                return [
                    e.name + "/" if e.is_dir() else e.name
                    for e in entries
                    if not e.name.startswith(".")  # temporary files and lock files
                ]
        except (FileNotFoundError, NotADirectoryError):
            return []
        except OSError as exc:
            raise StorageError(f"cannot list {directory}: {exc.strerror or exc}") from exc

    def move(self, source: str, target: str) -> bool:
        src, dst = self._path(source), self._path(target)
        try:
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, dst)  # atomic; readers see the old file or the new one
        except FileNotFoundError:
            if src.exists():  # the target's folder could not be made
                raise StorageError(f"cannot move {src} to {dst}: the target folder is missing") from None
            return False
        except OSError as exc:
            raise StorageError(f"cannot move {src} to {dst}: {exc.strerror or exc}") from exc
        self._sync_dir(dst.parent)
        self._remove_empty_dirs({src.parent})
        return True

    def remove_temporaries(self, *, older_than: timedelta) -> int:
        """Delete ``.*.tmp`` files left by writes a crash interrupted (by file age)."""
        if not self._root.is_dir():
            return 0
        cutoff = self._clock.now().timestamp() - older_than.total_seconds()
        removed = 0
        for path in self._root.rglob(".*.tmp"):
            try:
                if path.is_file() and path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed += 1
            except OSError as exc:
                log.warning("could not remove the temporary file %s: %s", path, exc.strerror or exc)
        if removed:
            log.warning("%s: removed %d temporary file(s) left by interrupted writes", self.url, removed)
        return removed

    def list_tree(self, prefix: str) -> list[str]:
        directory = self._path(prefix.rstrip("/"))
        if not directory.is_dir():
            return []
        return sorted(p.relative_to(self._root).as_posix() for p in directory.rglob("*") if p.is_file())

    def delete(self, keys: Sequence[str]) -> None:
        parents: set[Path] = set()
        for key in keys:
            path = self._path(key)
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            parents.add(path.parent)
        self._remove_empty_dirs(parents)

    def _remove_empty_dirs(self, parents: set[Path]) -> None:
        """Remove directories that deletes or moves emptied (generation folders, stages), deepest first."""
        for directory in sorted(parents, key=lambda p: len(p.parts), reverse=True):
            current = directory
            while current != self._root and self._root in current.parents:
                try:
                    current.rmdir()
                except OSError:
                    break
                current = current.parent

    # --- pointer -------------------------------------------------------------------------------

    def read_pointer(self, key: str) -> tuple[bytes, str] | None:
        data = self.get(key)
        if data is None:
            return None
        return data, hashlib.sha256(data).hexdigest()

    def swap_pointer(self, key: str, data: bytes, *, token: str | None) -> None:
        with self._commit_lock():
            found = self.read_pointer(key)
            current = found[1] if found else None
            if current != token:
                raise ConflictError(f"{self._path(key)} changed since it was read")
            self.put(key, data)

    @contextlib.contextmanager
    def _commit_lock(self) -> Iterator[None]:
        fcntl = _fcntl()
        path = self._path(COMMIT_LOCK_FILE)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StorageError(f"cannot open {path}: {exc.strerror or exc}") from exc
        try:
            # Blocking: the holder keeps it only for one compare and one rename, and a dead
            # holder's flock is released by the kernel.
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    # --- run lock ------------------------------------------------------------------------------

    def lock(self, run_id: str, *, timeout: float) -> AbstractContextManager[LockInfo]:
        return self._run_lock(run_id, timeout)

    @contextlib.contextmanager
    def _run_lock(self, run_id: str, timeout: float) -> Iterator[LockInfo]:
        fcntl = _fcntl()
        path = self._root / LOCK_FILE
        try:
            self._root.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StorageError(f"cannot open the lock file {path}: {exc.strerror or exc}") from exc
        try:
            try:
                for attempt in polling(
                    clock=self._clock, timeout=timeout, every=self._poll, on=BlockingIOError
                ):
                    with attempt:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise LockedError(self._locked_message(_read_holder(fd), timeout)) from None
            previous = _read_holder(fd)
            now = ensure_utc(self._clock.now())
            info = LockInfo(
                run_id=run_id,
                owner=f"pid {os.getpid()} on host {socket.gethostname()}",
                acquired_at=now,
                expires_at=None,
                recovered=previous.describe() if previous else None,
            )
            if previous is not None:
                log.warning(
                    "%s: taking over the lock of %s, which ended without releasing it (crashed or killed); "
                    "its partial output, if any, was never committed",
                    self.url,
                    previous.describe(),
                )
            try:
                _write_holder(fd, info)
                yield info
            finally:
                # An empty lock file means "released cleanly"; the flock goes with the fd.
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, 0)
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def _locked_message(self, holder: LockInfo | None, timeout: float) -> str:
        waited = f" after waiting {timeout:g} s" if timeout > 0 else ""
        if holder is None:
            return (
                f"store {self.url} is locked by another run (its details are still being written){waited}; "
                "try again shortly"
            )
        age = ensure_utc(self._clock.now()) - holder.acquired_at
        hint = (
            "Wait for it to finish (pass a timeout to wait); the lock is released automatically when "
            "that process exits."
        )
        if age > self._lock_ttl:
            hint = (
                f"It has held the lock for {age}, longer than a run should take ({self._lock_ttl}): "
                f"it is probably hung. Stop that process ({holder.owner}); its lock is then released."
            )
        return f"store {self.url} is locked by {holder.describe()}{waited}. {hint}"


def _read_holder(fd: int) -> LockInfo | None:
    try:
        size = os.fstat(fd).st_size
        raw = os.pread(fd, max(size, 1), 0)
    except OSError:
        return None
    if not raw.strip():
        return None
    try:
        body = json.loads(raw)
        return LockInfo(
            run_id=str(body["run_id"]),
            owner=str(body["owner"]),
            acquired_at=ensure_utc(datetime.fromisoformat(body["acquired_at"])),
        )
    except (ValueError, KeyError, TypeError):
        return None


def _write_holder(fd: int, info: LockInfo) -> None:
    body = json.dumps(
        {"run_id": info.run_id, "owner": info.owner, "acquired_at": info.acquired_at.isoformat()}
    ).encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, body, 0)
    os.fsync(fd)


class LocalStore(ObjectStore):
    """A :class:`~spotlake.storage.base.SnapshotStore` in a local directory (created on first write).

    ``keep_generations`` committed states are kept (older ones are deleted after each commit);
    ``lock_ttl`` is how long a run may hold the lock before waiting runs call it hung;
    ``fsync=False`` trades durability on power loss for speed (tests, scratch stores).
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        clock: Clock | None = None,
        keep_generations: int = DEFAULT_KEEP_GENERATIONS,
        lock_ttl: timedelta = DEFAULT_LOCAL_LOCK_TTL,
        poll_seconds: float = LOCK_POLL_SECONDS,
        fsync: bool = True,
    ) -> None:
        clock = clock or SystemClock()
        backend = LocalBackend(root, clock=clock, lock_ttl=lock_ttl, poll_seconds=poll_seconds, fsync=fsync)
        super().__init__(backend, clock=clock, keep_generations=keep_generations)
        self._local = backend

    @property
    def root(self) -> Path:
        """The store's directory."""
        return self._local.root
