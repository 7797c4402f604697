"""The state's commit protocol: immutable generations published by one compare-and-swap pointer.

Commit protocol (crash-safe at every step)::

    1. read CURRENT (content + CAS token); if its version != expected_version -> ConflictError
    2. write the new generation's frames and docs under state/generations/{new}/
    3. write state/generations/{new}/manifest.json (a generation without one is incomplete); it
       names the run stage the commit publishes, if any
    4. swap CURRENT to {new} if the token still matches -> else ConflictError, delete {new}
       (any other failure keeps {new}: the write may still be applied; garbage collection or a
       late landing settles it)
    5. garbage-collect generations older than the ones kept (best effort; never the current one)

A crash before step 4 leaves an unreferenced generation (collected by a later commit) and the old
state in force; step 4 is one atomic operation (os.replace locally, a conditional PUT on S3).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

import pandas as pd

from spotlake.clock import Clock, ensure_utc
from spotlake.errors import ConfigError, ConflictError, CorruptStoreError, StorageError
from spotlake.storage.backend import Backend
from spotlake.storage.base import GenerationInfo, StateSnapshot
from spotlake.storage.layout import (
    CURRENT_KEY,
    GENERATIONS_PREFIX,
    Pointer,
    check_name,
    decode_doc,
    decode_frame,
    encode_doc,
    encode_frame,
    generation_prefix,
    new_version,
    version_seq,
)

__all__ = ["DEFAULT_KEEP_GENERATIONS", "Generations", "Publication"]

log = logging.getLogger(__name__)

#: Generations kept after a commit (the current one included). Two or more lets a reader that
#: started just before a commit finish reading the generation it found, and leaves the operator
#: a few previous states to roll back to (docs/operations.md, "Recovery").
DEFAULT_KEEP_GENERATIONS = 5

#: What a generation's manifest says it publishes: the stage and the frame keys staged in it.
Publication = tuple[str, tuple[str, ...]]


class Generations:
    """The committed state of one store (see the module docstring)."""

    def __init__(self, backend: Backend, *, clock: Clock, keep: int) -> None:
        if keep < 1:
            raise ConfigError(f"keep_generations must be at least 1, got {keep}")
        self._backend = backend
        self._clock = clock
        self._keep = keep

    @property
    def url(self) -> str:
        return self._backend.url

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
        publication: Publication | None = None,
        before_swap: Callable[[], None] | None = None,
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
            if publication is not None:
                manifest["publishes"] = {"stage": publication[0], "frames": list(publication[1])}
            self._backend.put(prefix + "manifest.json", encode_doc(manifest, name="manifest"))
            written.append(prefix + "manifest.json")
            if before_swap is not None:
                before_swap()  # last check of what the generation names (e.g. its stage is complete)
        except BaseException as exc:
            # Leave nothing half-written behind when we can; a crash (no chance to run this)
            # leaves an unreferenced generation that a later commit collects.
            self._discard(written)
            if isinstance(exc, StorageError) and not isinstance(exc, ConflictError):
                self._raise_if_superseded(expected_version, token, exc)
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
            try:
                found_now = self._pointer()
            except StorageError:
                # Cannot tell: this is neither a success nor a conflict. Keep everything written
                # (the generation, the run's stage) so that a commit that did land loses nothing.
                raise StorageError(
                    f"{self.url}: the state pointer write failed ({type(exc).__name__}: {exc}) and the "
                    f"pointer cannot be read back, so whether {version} was committed is unknown; the next "
                    "run finds out (store.read_state()) and nothing of this run is removed meanwhile"
                ) from exc
            landed = found_now[0] if found_now else None
            if landed is not None and landed.version == version and isinstance(exc, Exception):
                log.warning(
                    "%s: the state pointer write reported %r but did land; commit kept", self.url, exc
                )
            else:
                if isinstance(exc, ConflictError):
                    # Refused by the compare-and-swap: definitely unpublished, remove it now.
                    self._discard(written)
                    raise ConflictError(self._conflict_message(expected_version, landed)) from None
                # Any other failure (a timeout, say) may still be applied after this read-back:
                # keep the generation, so a late landing names complete files. Unless it lands, it
                # is an orphan with the seq of the next commit, whose garbage collection removes it
                # and whose compare-and-swap stops a late write from landing afterwards.
                raise
        self._collect_garbage(pointer)
        return version

    def rollback(
        self,
        version: str,
        *,
        expected_version: str | None,
        run_id: str | None = None,
        before_swap: Callable[[str], None] | None = None,
    ) -> None:
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
        if before_swap is not None:
            before_swap(current.version)
        # seq keeps growing so versions written after the rollback still sort after everything.
        # The target leaves the previous ones (a rollback to the current version changes nothing).
        previous = tuple(v for v in (current.version, *current.previous) if v != version)
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

    def _raise_if_superseded(
        self, expected_version: str | None, token: str | None, exc: StorageError
    ) -> None:
        """A write that failed while another run committed on the same parent is a conflict: that
        run's garbage collection may remove the files of a generation with its seq as they are
        written, and the caller must read the new state and try again, not report a broken store."""
        try:
            found = self._pointer()
        except StorageError:
            return  # cannot tell: the write's own error stands
        if (found[1] if found else None) != token:
            message = self._conflict_message(expected_version, found[0] if found else None)
            raise ConflictError(f"{message} (this run's write had failed too: {exc})") from exc

    def _discard(self, keys: Sequence[str]) -> None:
        try:
            self._backend.delete(keys)
        except Exception as exc:  # cleanup is best effort; the GC of a later commit retries it
            log.warning("could not remove unpublished state files under %s: %s", self.url, exc)

    def _collect_garbage(self, pointer: Pointer) -> None:
        """Delete generations that are neither kept nor possibly still being written.

        The manifest of a collected generation stays while it is in the history of a kept one
        (above their common ancestor): a rollback between kept generations compares their
        histories, and a history cut short in one branch but not in the other would hide runs
        the target still has (see :meth:`ancestry`).
        """
        keep = {pointer.version, *pointer.previous}
        try:
            lineage = self._lineage(keep)
            doomed: list[str] = []
            for key in self._backend.list_tree(GENERATIONS_PREFIX):
                version, _, rest = key[len(GENERATIONS_PREFIX) :].partition("/")
                seq = version_seq(version)
                # A generation with a higher seq may belong to a run still committing on top of
                # this one: never touch it. Same or lower seq and not kept: superseded or orphaned.
                if seq is None or seq > pointer.seq or version in keep:
                    continue
                if version in lineage and rest == "manifest.json":
                    continue
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

    def kept(self) -> list[GenerationInfo]:
        """The committed generation and the kept previous ones (what a rollback may restore), newest first."""
        found = self._pointer()
        if found is None:
            return []
        pointer = found[0]
        out = []
        for version in (pointer.version, *pointer.previous):
            prefix = generation_prefix(version)
            data = self._backend.get(prefix + "manifest.json")
            if data is None:
                continue  # collected or damaged: not a rollback target
            body = decode_doc(data, where=f"{self.url}/{prefix}manifest.json")
            created = body.get("created_at")
            out.append(
                GenerationInfo(
                    version=version,
                    run_id=body.get("run_id"),
                    committed_at=ensure_utc(datetime.fromisoformat(created)) if created else None,
                    current=version == pointer.version,
                )
            )
        return out

    def publication(self) -> Publication | None:
        """The stage the committed generation publishes (``None``: none, or no state yet)."""
        found = self._pointer()
        return None if found is None else self.publication_of(found[0].version)

    def publication_of(self, version: str) -> Publication | None:
        """The stage a generation published, if it is still in the store and published one."""
        manifest = self._manifest(version)
        body = manifest.get("publishes") if manifest else None
        if not isinstance(body, dict):
            return None
        return str(body["stage"]), tuple(str(k) for k in body.get("frames", ()))

    def ancestry(self, version: str, *, parents: dict[str, str | None] | None = None) -> list[str]:
        """``version`` and its parents, newest first, as far as their manifests are kept.

        Garbage collection keeps the manifests of every kept generation's history down to the
        kept generations' common ancestor, so the histories of two kept generations are both
        complete down to where they meet: what one has and the other lacks is exact. (Below the
        common ancestor they are the same history, cut at the same generation.) ``parents``
        caches the manifests read, across calls.
        """
        known = {} if parents is None else parents
        out: list[str] = []
        current: str | None = version
        while current is not None and current not in out:
            if current not in known:
                manifest = self._manifest(current)
                if manifest is None:
                    break
                parent = manifest.get("parent")
                known[current] = str(parent) if parent else None
            out.append(current)
            current = known[current]
        return out

    def _lineage(self, kept: set[str]) -> set[str]:
        """The generations in the history of some kept generation but not of all of them (what
        a rollback between kept generations may hide or bring back)."""
        parents: dict[str, str | None] = {}
        histories = [set(self.ancestry(version, parents=parents)) for version in sorted(kept)]
        histories = [h for h in histories if h]
        if not histories:
            return set()
        common = set(histories[0])
        everything: set[str] = set()
        for history in histories:
            common &= history
            everything |= history
        return everything - common

    def named(self) -> set[str]:
        """The generations present in the store and those their manifests name as parents."""
        out: set[str] = set()
        for version in self.generations():
            manifest = self._manifest(version)
            if manifest is None:
                continue
            out.add(version)
            parent = manifest.get("parent")
            if parent:
                out.add(str(parent))
        return out

    def _manifest(self, version: str) -> dict[str, Any] | None:
        prefix = generation_prefix(version)
        data = self._backend.get(prefix + "manifest.json")
        return None if data is None else decode_doc(data, where=f"{self.url}/{prefix}manifest.json")

    def kept_publications(self) -> set[str]:
        """Stages named by any kept generation (the sweep must not touch them)."""
        stages: set[str] = set()
        for version in self.generations():
            prefix = generation_prefix(version)
            data = self._backend.get(prefix + "manifest.json")
            if data is None:
                continue
            body = decode_doc(data, where=f"{self.url}/{prefix}manifest.json").get("publishes")
            if isinstance(body, dict):
                stages.add(str(body.get("stage")))
        return stages


class _MissingGenerationFile(StorageError):
    """Internal: a file named by the committed generation is absent (maybe collected meanwhile)."""
