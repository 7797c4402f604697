"""The store logic shared by the local directory and S3: one algorithm over a small blob backend.

A :class:`Backend` knows how to put/get/list/delete whole objects atomically, how to swap the state
pointer with compare-and-swap, and how to lock; :class:`ObjectStore` builds the
:class:`~spotlake.storage.base.SnapshotStore` on top, so the commit protocol, validation and garbage
collection are written (and tested) once.

Commit protocol (crash-safe at every step)::

    1. read CURRENT (content + CAS token); if its version != expected_version -> ConflictError
    2. write the new generation's frames and docs under state/generations/{new}/
    3. write state/generations/{new}/manifest.json (a generation without one is incomplete)
    4. swap CURRENT to {new} if the token still matches -> else ConflictError, delete {new}
    5. garbage-collect generations older than the ones kept (best effort; never the current one)

A crash before step 4 leaves an unreferenced generation (collected by a later commit) and the old
state in force; step 4 is one atomic operation (os.replace locally, a conditional PUT on S3).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any, Protocol

import pandas as pd

from spotlake.clock import Clock, SystemClock, ensure_utc
from spotlake.errors import ConfigError, ConflictError, CorruptStoreError, StorageError
from spotlake.model import empty_frame
from spotlake.storage.base import FrameKind, LockInfo, StateSnapshot
from spotlake.storage.layout import (
    CURRENT_KEY,
    GENERATIONS_PREFIX,
    RUN_AT_COLUMN,
    Pointer,
    check_name,
    decode_doc,
    decode_frame,
    decode_run_frame,
    encode_doc,
    encode_frame,
    encode_run_frame,
    frame_key,
    frame_prefix,
    generation_prefix,
    new_version,
    parse_frame_key,
    run_minute,
    schema_for,
    version_seq,
)

__all__ = ["DEFAULT_KEEP_GENERATIONS", "Backend", "ObjectStore"]

log = logging.getLogger(__name__)

#: Generations kept after a commit (the current one included). Two or more lets a reader that
#: started just before a commit finish reading the generation it found, and leaves the operator
#: a few previous states to roll back to (docs/operations.md, "Recovery").
DEFAULT_KEEP_GENERATIONS = 5


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

    def children(self, prefix: str) -> list[str]:
        """Immediate children of a folder prefix (ending in ``/``): sub-folders end with ``/``."""
        ...

    def list_tree(self, prefix: str) -> list[str]:
        """Every object key under a prefix, recursively."""
        ...

    def delete(self, keys: Sequence[str]) -> None:
        """Delete objects; missing ones are ignored."""
        ...

    def read_pointer(self, key: str) -> tuple[bytes, str] | None:
        """The pointer's content and a token for :meth:`swap_pointer`, ``None`` if absent."""
        ...

    def swap_pointer(self, key: str, data: bytes, *, token: str | None) -> None:
        """Replace the pointer only if it is unchanged since ``token`` was read (``None``: absent).

        Raises :class:`ConflictError` otherwise.
        """
        ...

    def lock(self, run_id: str, *, timeout: float) -> AbstractContextManager[LockInfo]: ...


class ObjectStore:
    """A :class:`~spotlake.storage.base.SnapshotStore` over a :class:`Backend`."""

    def __init__(
        self,
        backend: Backend,
        *,
        clock: Clock | None = None,
        keep_generations: int = DEFAULT_KEEP_GENERATIONS,
    ) -> None:
        if keep_generations < 1:
            raise ConfigError(f"keep_generations must be at least 1, got {keep_generations}")
        self._backend = backend
        self._clock: Clock = clock or SystemClock()
        self._keep = keep_generations

    @property
    def url(self) -> str:
        return self._backend.url

    @property
    def backend(self) -> Backend:
        return self._backend

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"

    # --- lock ----------------------------------------------------------------------------------

    def lock(self, run_id: str, *, timeout: float = 0.0) -> AbstractContextManager[LockInfo]:
        """Hold the store's run lock for the duration of a ``with`` block.

        Waits up to ``timeout`` seconds (on the store's clock) for a run holding it, then raises
        :class:`~spotlake.errors.LockedError` naming that run, its process and since when.
        """
        if not run_id:
            raise ConfigError("a run lock needs a non-empty run_id (it is shown to whoever waits for it)")
        return self._backend.lock(run_id, timeout=timeout)

    # --- state ---------------------------------------------------------------------------------

    def _pointer(self) -> tuple[Pointer, str] | None:
        found = self._backend.read_pointer(CURRENT_KEY)
        if found is None:
            return None
        data, token = found
        return Pointer.decode(data, where=f"{self.url}/{CURRENT_KEY}"), token

    @property
    def version(self) -> str | None:
        """The committed version, without reading the state itself."""
        found = self._pointer()
        return found[0].version if found else None

    def read_state(self, *, frames: bool = True) -> StateSnapshot:
        """The committed state; ``frames=False`` skips the (possibly large) state frames."""
        # A commit that lands between reading CURRENT and reading the files can garbage-collect
        # the generation we found only after `keep` further commits; retry once for good measure.
        for attempt in range(2):
            found = self._pointer()
            if found is None:
                return StateSnapshot(version=None)
            pointer = found[0]
            try:
                return self._read_generation(pointer, with_frames=frames)
            except _MissingGenerationFile:
                if attempt == 1 or self.version == pointer.version:
                    raise CorruptStoreError(
                        f"{self.url}: the committed state {pointer.version} is incomplete (a file is "
                        "missing); nothing was changed. Point state/CURRENT at a previous generation "
                        "(docs/operations.md, 'Recovery')"
                    ) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _read_generation(self, pointer: Pointer, *, with_frames: bool) -> StateSnapshot:
        prefix = generation_prefix(pointer.version)
        manifest = self._get_required(prefix + "manifest.json")
        body = decode_doc(manifest, where=f"{self.url}/{prefix}manifest.json")
        frame_names = [str(n) for n in body.get("frames", [])]
        doc_names = [str(n) for n in body.get("docs", [])]
        frames: dict[str, pd.DataFrame] = {}
        if with_frames:
            for name in frame_names:
                key = f"{prefix}frames/{name}.parquet"
                frames[name] = decode_frame(self._get_required(key), where=f"{self.url}/{key}")
        docs: dict[str, dict[str, Any]] = {}
        for name in doc_names:
            key = f"{prefix}docs/{name}.json"
            docs[name] = decode_doc(self._get_required(key), where=f"{self.url}/{key}")
        return StateSnapshot(
            version=pointer.version,
            frames=frames,
            docs=docs,
            committed_at=pointer.committed_at,
            run_id=pointer.run_id,
        )

    def _get_required(self, key: str) -> bytes:
        data = self._backend.get(key)
        if data is None:
            raise _MissingGenerationFile(key)
        return data

    def commit_state(
        self,
        *,
        expected_version: str | None,
        frames: Mapping[str, pd.DataFrame],
        docs: Mapping[str, Mapping[str, Any]],
        run_id: str | None = None,
    ) -> str:
        """Replace the whole state (exactly ``frames`` and ``docs``) if it is still ``expected_version``.

        Returns the new version. Raises :class:`~spotlake.errors.ConflictError` when another run
        committed since ``expected_version`` was read (nothing of ours is published then).
        """
        # Encode everything first: bad names or data fail before a single byte is written.
        encoded: dict[str, bytes] = {}
        for name, frame in frames.items():
            check_name("state frame", name)
            if not isinstance(frame, pd.DataFrame):
                raise ConfigError(f"state frame {name!r} is a {type(frame).__name__}, not a DataFrame")
            encoded[f"frames/{name}.parquet"] = encode_frame(frame, what=f"state frame {name!r}")
        for name, doc in docs.items():
            check_name("state document", name)
            encoded[f"docs/{name}.json"] = encode_doc(doc, name=name)

        found = self._pointer()
        current = found[0] if found else None
        token = found[1] if found else None
        current_version = current.version if current else None
        if current_version != expected_version:
            raise ConflictError(self._conflict_message(expected_version, current))

        version = new_version(current.seq if current else 0)
        prefix = generation_prefix(version)
        now = ensure_utc(self._clock.now())
        written: list[str] = []
        try:
            for rel, data in encoded.items():
                self._backend.put(prefix + rel, data)
                written.append(prefix + rel)
            manifest = {
                "format": 1,
                "version": version,
                "parent": current_version,
                "run_id": run_id,
                "created_at": now.isoformat(),
                "frames": sorted(frames),
                "docs": sorted(docs),
                "rows": {name: len(frame) for name, frame in frames.items()},
            }
            self._backend.put(prefix + "manifest.json", encode_doc(manifest, name="manifest"))
            written.append(prefix + "manifest.json")
        except BaseException:
            # Leave nothing half-written behind when we can; a crash (no chance to run this)
            # leaves an unreferenced generation that a later commit collects.
            self._discard(written)
            raise
        previous = (current_version, *current.previous) if current and current_version else ()
        pointer = Pointer(
            version=version,
            seq=(current.seq if current else 0) + 1,
            committed_at=now,
            run_id=run_id,
            previous=previous[: self._keep - 1],
        )
        try:
            self._backend.swap_pointer(CURRENT_KEY, pointer.encode(), token=token)
        except BaseException as exc:
            # The write may have landed even though it reported failure (a lost response whose
            # retry then fails its own precondition): look before deciding it did not.
            landed = self._pointer_or_none()
            if landed is not None and landed.version == version and isinstance(exc, Exception):
                log.warning(
                    "%s: the state pointer write reported %r but did land; commit kept", self.url, exc
                )
            else:
                if landed is not None and landed.version != version:
                    self._discard(written)  # definitely unpublished: remove it now
                if isinstance(exc, ConflictError):
                    raise ConflictError(self._conflict_message(expected_version, landed)) from None
                raise
        self._collect_garbage(pointer)
        return version

    def rollback(self, version: str, *, expected_version: str | None, run_id: str | None = None) -> None:
        """Make a kept earlier generation the committed state again (operator recovery).

        The generation must still exist and be readable; the one rolled back from stays among the
        kept generations, so the rollback itself can be undone the same way.
        """
        found = self._pointer()
        if found is None:
            raise ConflictError(f"{self.url} has no committed state to roll back")
        current, token = found
        if current.version != expected_version:
            raise ConflictError(self._conflict_message(expected_version, current))
        if version_seq(version) is None:
            raise ConfigError(f"{version!r} is not a generation id (see store.generations())")
        probe = Pointer(version=version, seq=current.seq, committed_at=current.committed_at)
        try:
            self._read_generation(probe, with_frames=True)  # refuse to publish an unreadable state
        except _MissingGenerationFile as exc:
            raise CorruptStoreError(
                f"{self.url}: generation {version} is incomplete or gone ({exc})"
            ) from None
        # seq keeps growing so versions written after the rollback still sort after everything.
        previous = (current.version, *(v for v in current.previous if v != version))
        pointer = Pointer(
            version=version,
            seq=current.seq + 1,
            committed_at=ensure_utc(self._clock.now()),
            run_id=run_id or "rollback",
            previous=previous[: max(self._keep - 1, 1)],
        )
        self._backend.swap_pointer(CURRENT_KEY, pointer.encode(), token=token)

    def _pointer_or_none(self) -> Pointer | None:
        try:
            found = self._pointer()
        except StorageError:
            return None
        return found[0] if found else None

    def _conflict_message(self, expected: str | None, current: Pointer | None) -> str:
        if current is None:
            now = "the store has no committed state"
        else:
            by = f" by run {current.run_id!r}" if current.run_id else ""
            now = f"it is now {current.version} (committed{by} at {current.committed_at.isoformat()})"
        return (
            f"{self.url}: state changed underneath this run: expected version {expected!r}, but {now}. "
            "Another run committed first; nothing of this run's state was published. Re-read the state "
            "and run again (hold store.lock() to serialise runs)"
        )

    def _discard(self, keys: Sequence[str]) -> None:
        try:
            self._backend.delete(keys)
        except Exception as exc:  # cleanup is best effort; the GC of a later commit retries it
            log.warning("could not remove unpublished state files under %s: %s", self.url, exc)

    def _collect_garbage(self, pointer: Pointer) -> None:
        """Delete generations that are neither kept nor possibly still being written."""
        keep = {pointer.version, *pointer.previous}
        try:
            doomed: list[str] = []
            for key in self._backend.list_tree(GENERATIONS_PREFIX):
                version = key[len(GENERATIONS_PREFIX) :].split("/", 1)[0]
                seq = version_seq(version)
                # A generation with a higher seq may belong to a run still committing on top of
                # this one: never touch it. Same or lower seq and not kept: superseded or orphaned.
                if seq is not None and seq <= pointer.seq and version not in keep:
                    doomed.append(key)
            if doomed:
                self._backend.delete(doomed)
        except Exception as exc:  # the commit itself succeeded; the next commit retries the cleanup
            log.warning("garbage collection of old generations under %s failed: %s", self.url, exc)

    def generations(self) -> list[str]:
        """Versions present in the store (committed, kept or orphaned), oldest first."""
        names = {
            key[len(GENERATIONS_PREFIX) :].split("/", 1)[0]
            for key in self._backend.list_tree(GENERATIONS_PREFIX)
        }
        return sorted(n for n in names if version_seq(n) is not None)

    # --- frames --------------------------------------------------------------------------------

    def put_frame(
        self, *, kind: FrameKind, at: datetime, frame: pd.DataFrame, source: str | None = None
    ) -> str:
        """Store one run's frame under its Hive-partitioned key; a repeat of the same run overwrites it.

        ``at`` is the run time (UTC); runs are keyed per minute. The frame must have its kind's
        documented columns (extra columns are kept). Returns the key written.
        """
        schema = schema_for(kind, source)
        if not isinstance(frame, pd.DataFrame):
            raise ConfigError(f"put_frame needs a DataFrame, got {type(frame).__name__}")
        missing = [c for c in schema if c not in frame.columns]
        what = f"{kind} frame" + (f" of source {source!r}" if source else "")
        if missing:
            raise ConfigError(f"{what} lacks the schema's columns {missing}; build it with spotlake.model")
        key = frame_key(kind, at, source)
        self._backend.put(key, encode_run_frame(frame, at=at, what=what))
        return key

    def read_frame(self, *, kind: FrameKind, at: datetime, source: str | None = None) -> pd.DataFrame | None:
        """The frame stored for the run at ``at`` (same minute) exactly as put, or ``None``."""
        key = frame_key(kind, at, source)
        data = self._backend.get(key)
        if data is None:
            return None
        return decode_run_frame(data, where=f"{self.url}/{key}")

    def run_times(
        self,
        kind: FrameKind,
        *,
        source: str | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> list[datetime]:
        """Run minutes that have a frame of this kind in ``[start, end]``, oldest first."""
        return [at for at, _key in self._frame_keys(kind, source, start, end)]

    def _frame_keys(
        self, kind: FrameKind, source: str | None, start: datetime | None, end: datetime | None
    ) -> Iterator[tuple[datetime, str]]:
        prefix = frame_prefix(kind, source)
        lo = run_minute(start) if start is not None else None
        hi = ensure_utc(end) if end is not None else None
        days = sorted(c for c in self._backend.children(prefix) if c.startswith("date=") and c.endswith("/"))
        for day in days:
            day_text = day[len("date=") : -1]
            if lo is not None and day_text < f"{lo:%Y-%m-%d}":
                continue
            if hi is not None and day_text > f"{hi:%Y-%m-%d}":
                continue
            found: list[tuple[datetime, str]] = []
            for name in self._backend.children(prefix + day):
                at = parse_frame_key(day + name)
                if at is None or (lo is not None and at < lo) or (hi is not None and at > hi):
                    continue
                found.append((at, prefix + day + name))
            yield from sorted(found)

    def read_frames(
        self,
        kind: FrameKind,
        *,
        source: str | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> pd.DataFrame:
        """Every frame of a kind with a run time in ``[start, end]``, concatenated oldest first.

        Each row carries ``run_at`` (the run minute, UTC). With nothing stored, an empty frame
        with the kind's schema (plus ``run_at``) comes back.
        """
        parts: list[pd.DataFrame] = []
        for _at, key in self._frame_keys(kind, source, start, end):
            data = self._backend.get(key)
            if data is not None:  # deleted between listing and reading: skip it
                parts.append(decode_frame(data, where=f"{self.url}/{key}"))
        if not parts:
            empty = empty_frame(schema_for(kind, source))
            empty[RUN_AT_COLUMN] = pd.Series([], dtype="datetime64[us, UTC]")
            return empty
        return pd.concat(parts, ignore_index=True)

    def latest(self, kind: FrameKind = "merged", *, source: str | None = None) -> pd.DataFrame | None:
        """The most recent frame of a kind (as put, without ``run_at``), or ``None``."""
        prefix = frame_prefix(kind, source)
        days = sorted(
            (c for c in self._backend.children(prefix) if c.startswith("date=") and c.endswith("/")),
            reverse=True,
        )
        for day in days:
            names = [n for n in self._backend.children(prefix + day) if parse_frame_key(day + n) is not None]
            if names:
                key = prefix + day + max(names)
                data = self._backend.get(key)
                if data is not None:
                    return decode_run_frame(data, where=f"{self.url}/{key}")
        return None

    def latest_run_at(self, kind: FrameKind = "merged", *, source: str | None = None) -> datetime | None:
        """The run minute of the most recent frame of a kind."""
        times = self.run_times(kind, source=source)
        return times[-1] if times else None


class _MissingGenerationFile(StorageError):
    """Internal: a file named by the committed generation is absent (maybe collected meanwhile)."""
