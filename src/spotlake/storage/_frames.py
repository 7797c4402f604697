"""Per-run frames: staged by a run, published by its state commit, read by everyone else.

A run writes its raw frames, merged snapshot and changeset into a :class:`Stage` under the hidden
``.staging/{stage}/`` folder. The state commit that records the stage (in its generation's
manifest) is the moment the run exists; right after it, :meth:`RunFrames.publish` moves the staged
files to their Hive-partitioned keys (``raw/source=sps/date=.../HH-MM.parquet``). So:

* a run that fails, crashes or loses the compare-and-swap before its commit never reaches a frame
  folder, whatever the lock did: readers only ever see committed runs, and a committed frame is
  only ever replaced by a later *committed* run of the same minute;
* a crash between the commit and the move leaves the files staged; the next commit (and every
  cycle, at its start) finishes the move first, because the generation names the stage;
* stages nobody committed are swept once they are older than any run could take.
"""

from __future__ import annotations

import functools
import itertools
import logging
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pandas as pd

from spotlake.clock import Clock, ensure_utc
from spotlake.errors import ConfigError, StorageError
from spotlake.model import empty_frame
from spotlake.storage._digests import DayDigests, Filters, to_frame
from spotlake.storage._rollups import MonthRollups
from spotlake.storage.backend import Backend
from spotlake.storage.base import FrameKind, SweepReport
from spotlake.storage.layout import (
    ROLLED_BACK_PREFIX,
    RUN_AT_COLUMN,
    STAGING_PREFIX,
    decode_frame,
    decode_run_frame,
    digest_key,
    encode_run_frame,
    epoch_key,
    frame_key,
    frame_kind,
    frame_prefix,
    hidden_key,
    new_stage,
    parse_day_folder,
    parse_frame_key,
    rollup_key,
    run_minute,
    schema_for,
    stage_created,
    stage_prefix,
)

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["READ_THREADS", "RunFrames", "Stage"]

#: Days or months :meth:`RunFrames.read_history` reads at once (one month is built at a time).
READ_THREADS = 4

log = logging.getLogger(__name__)


class Stage:
    """The frames of one run before its commit (see the module docstring)."""

    def __init__(self, frames: RunFrames, at: datetime, name: str) -> None:
        self._frames = frames
        self._at = run_minute(at)
        self._name = name
        self._keys: list[str] = []

    @property
    def at(self) -> datetime:
        return self._at

    @property
    def name(self) -> str:
        return self._name

    @property
    def keys(self) -> tuple[str, ...]:
        """The final keys of the frames staged so far."""
        return tuple(self._keys)

    def put_frame(self, *, kind: FrameKind | str, frame: pd.DataFrame, source: str | None = None) -> str:
        key = self._frames.write(stage_prefix(self._name), kind=kind, at=self._at, frame=frame, source=source)
        if key not in self._keys:
            self._keys.append(key)
        return key

    def __repr__(self) -> str:
        return f"Stage({self._name!r}, at={self._at.isoformat()}, frames={len(self._keys)})"


class RunFrames:
    """Staging, publication and reading of the frames per run of one store."""

    def __init__(self, backend: Backend, *, clock: Clock) -> None:
        self._backend = backend
        self._clock = clock
        self._digests = DayDigests(backend)
        self._rollups = MonthRollups(backend, self._digests)

    @property
    def url(self) -> str:
        return self._backend.url

    # --- writing -------------------------------------------------------------------------------

    def stage(self, at: datetime) -> Stage:
        return Stage(self, at, new_stage(self._clock.now()))

    def write(
        self, prefix: str, *, kind: FrameKind | str, at: datetime, frame: pd.DataFrame, source: str | None
    ) -> str:
        """Validate and write one frame under ``prefix`` (a stage, or ``""`` for its final key)."""
        schema = schema_for(kind, source)
        if not isinstance(frame, pd.DataFrame):
            raise ConfigError(f"put_frame needs a DataFrame, got {type(frame).__name__}")
        checked, _ = frame_kind(kind, source)
        missing = [c for c in schema if c not in frame.columns]
        what = f"{checked} frame" + (f" of source {source!r}" if source else "")
        if missing:
            raise ConfigError(f"{what} lacks the schema's columns {missing}; build it with spotlake.model")
        key = frame_key(kind, at, source)
        self._backend.put(prefix + key, encode_run_frame(frame, at=at, what=what))
        if not prefix:  # written straight to its key: its day changed
            self._forget_digests((key,))
        return key

    def publish(self, stage: str, keys: tuple[str, ...]) -> int:
        """Move a committed stage's frames to their keys; safe to repeat. Returns frames moved."""
        prefix = stage_prefix(stage)
        staged = set(self._backend.list_tree(prefix))
        if not staged:  # published already (the usual case when a run starts), or the moves were
            self._forget_digests(keys)  # done and the process stopped before the digests were dropped
            return 0
        self._forget_digests(keys)
        moved = sum(1 for key in keys if prefix + key in staged and self._backend.move(prefix + key, key))
        self._forget_digests(keys)
        leftovers = sorted(staged - {prefix + key for key in keys})
        if leftovers:  # written into the stage but not recorded by the commit: never published
            self._backend.delete(leftovers)
        if moved:
            log.info("%s: published %d frame(s) of stage %s", self.url, moved, stage)
        return moved

    def require_staged(self, stage: str, keys: tuple[str, ...]) -> None:
        """:class:`StorageError` unless every key is staged (the sweep removed an abandoned stage)."""
        prefix = stage_prefix(stage)
        staged = set(self._backend.list_tree(prefix))
        missing = [key for key in keys if prefix + key not in staged]
        if missing:
            raise StorageError(
                f"{self.url}: {len(missing)} frame(s) of stage {stage} are gone (e.g. {missing[0]}): the "
                "run stalled longer than the sweep's age and its stage was removed; nothing was committed, "
                "run again"
            )

    def hide(self, version: str, keys: tuple[str, ...]) -> int:
        """Move the frames a generation published out of the frame folders (a rollback took it back)."""
        moved = sum(1 for key in keys if self._backend.move(key, hidden_key(version, key)))
        self._forget_digests(keys)
        return moved

    def restore(self, version: str, keys: tuple[str, ...]) -> int:
        """Move a hidden generation's frames back (a rollback to it, or undoing the one that hid them)."""
        moved = sum(1 for key in keys if self._backend.move(hidden_key(version, key), key))
        self._forget_digests(keys)
        return moved

    def _forget_digests(self, keys: tuple[str, ...]) -> None:
        """The days these frames file under changed: a new epoch for each, and their digests and
        their months' roll-ups go."""
        days = sorted({key.rsplit("/", 1)[0] + "/" for key in keys if parse_frame_key(key) is not None})
        for day in days:  # a new epoch first: a digest being built from the old files is stale
            self._backend.put(epoch_key(day), uuid.uuid4().hex.encode())
        if days:  # (a stale digest or roll-up is never read: this only tidies; see _digests, _rollups)
            months = {rollup_key(day[: day.rindex("date=")], _month_of(day)) for day in days}
            self._backend.delete([*(digest_key(day) for day in days), *sorted(months)])

    def hidden_versions(self) -> list[str]:
        """Generations whose frames a rollback hid."""
        return [c.rstrip("/") for c in self._backend.children(ROLLED_BACK_PREFIX) if c.endswith("/")]

    def forget_hidden(self, version: str) -> None:
        """Delete a hidden generation's frames (the generation is gone: no rollback restores them)."""
        keys = self._backend.list_tree(f"{ROLLED_BACK_PREFIX}{version}/")
        if keys:
            self._backend.delete(keys)

    def discard(self, stage: str) -> None:
        keys = self._backend.list_tree(stage_prefix(stage))
        if keys:
            self._backend.delete(keys)

    def sweep(self, *, older_than: timedelta, keep: set[str], temporaries: bool = True) -> SweepReport:
        """Remove stages older than ``older_than`` that no kept generation names, and temporaries
        (a walk of the whole store: callers do it once in a while)."""
        cutoff = ensure_utc(self._clock.now()) - older_than
        stages = files = 0
        for child in self._backend.children(STAGING_PREFIX):
            name = child.rstrip("/")
            created = stage_created(name)
            if created is None or name in keep or created > cutoff:
                continue
            doomed = self._backend.list_tree(stage_prefix(name))
            if doomed:
                self._backend.delete(doomed)
            stages += 1
            files += len(doomed)
        if stages:
            log.warning("%s: removed %d abandoned stage(s) of runs that never committed", self.url, stages)
        removed = self._backend.remove_temporaries(older_than=older_than) if temporaries else 0
        return SweepReport(stages=stages, files=files, temporaries=removed)

    # --- reading -------------------------------------------------------------------------------

    def read_frame(
        self, *, kind: FrameKind | str, at: datetime, source: str | None = None
    ) -> pd.DataFrame | None:
        key = frame_key(kind, at, source)
        data = self._backend.get(key)
        if data is None:
            return None
        return decode_run_frame(data, where=f"{self.url}/{key}")

    def run_times(
        self,
        kind: FrameKind | str,
        *,
        source: str | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> list[datetime]:
        return [at for at, _key in self._frame_keys(kind, source, start, end)]

    def _frame_keys(
        self, kind: FrameKind | str, source: str | None, start: datetime | None, end: datetime | None
    ) -> Iterator[tuple[datetime, str]]:
        lo = run_minute(start) if start is not None else None
        hi = ensure_utc(end) if end is not None else None
        for day in self._days(kind, source, lo, hi):
            found = self._day_runs(day)
            yield from ((at, found[at]) for at in sorted(found) if _between(at, lo, hi))

    def read_frames(
        self,
        kind: FrameKind | str,
        *,
        source: str | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> pd.DataFrame:
        parts: list[pd.DataFrame] = []
        for _at, key in self._frame_keys(kind, source, start, end):
            data = self._backend.get(key)
            if data is not None:  # replaced between listing and reading: skip it
                parts.append(decode_frame(data, where=f"{self.url}/{key}"))
        if not parts:
            empty = empty_frame(schema_for(kind, source))
            empty[RUN_AT_COLUMN] = pd.Series([], dtype="datetime64[us, UTC]")
            return empty
        return pd.concat(parts, ignore_index=True)

    def read_history(
        self,
        kind: FrameKind | str,
        *,
        source: str | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        columns: Sequence[str] | None = None,
        where: Filters | None = None,
    ) -> pd.DataFrame:
        """The rows of every frame of a kind in ``[start, end]`` that pass ``where`` (column ->
        allowed values), with ``columns`` only (``run_at`` always), oldest run first. Each day is
        read through its digest (spotlake.storage._digests), each whole closed month through its
        roll-up (spotlake.storage._rollups)."""
        schema = schema_for(kind, source)
        known = [*schema, RUN_AT_COLUMN]
        wanted = list(dict.fromkeys([*(columns or schema), RUN_AT_COLUMN]))
        where = dict(where or {})
        lone = [c for c, v in where.items() if isinstance(v, str | bytes)]
        if lone:
            raise ConfigError(f"where= takes a list of values per column: {lone[0]}=[...], not a bare string")
        unknown = [c for c in [*wanted, *where] if c not in known]
        if unknown:
            raise ConfigError(f"{kind} frames have no column(s) {unknown}; columns: {known}")
        empty = empty_frame(schema)
        empty[RUN_AT_COLUMN] = pd.Series([], dtype="datetime64[us, UTC]")
        empty = empty[wanted]
        lo = run_minute(start) if start is not None else None
        hi = ensure_utc(end) if end is not None else None
        digests, rollups = self._digests, self._rollups
        blank = _arrow(empty_frame(schema))

        def day(prefix: str) -> pa.Table | None:  # a day through its digest (see _digests)
            whole = self._day_runs(prefix)
            runs = [at for at in whole if _between(at, lo, hi)]
            if not runs:
                return None
            table = digests.read(prefix, whole, columns=wanted, filters=where, empty=blank)
            if len(runs) < len(whole):  # the window cuts the day
                table = table.filter(_within(table, min(runs), max(runs)))
            return table.sort_by(RUN_AT_COLUMN)  # stable: by run, each in key order

        def month(name: str, prefixes: list[str]) -> pa.Table | None:  # a closed month (see _rollups)
            import pyarrow as pa

            listed = {prefix: self._day_runs(prefix) for prefix in prefixes}
            days = {prefix: runs for prefix, runs in listed.items() if runs}
            if not days:
                return None
            table = rollups.read(kind_prefix, name, days, columns=wanted, filters=where, empty=blank)
            if table is not None:
                return table
            parts = [t for t in map(day, sorted(days)) if t is not None]  # not rolled up: by days
            return pa.concat_tables(parts, promote_options="permissive") if parts else None

        kind_prefix = frame_prefix(kind, source)
        newest = self._newest_month(kind, source)
        tasks: list[Callable[[], pa.Table | None]] = []
        for name, group in itertools.groupby(self._days(kind, source, lo, hi), key=_month_of):
            prefixes = list(group)
            if name and name < newest and _covers(name, lo, hi):
                tasks.append(functools.partial(month, name, prefixes))
            else:
                tasks.extend(functools.partial(day, prefix) for prefix in prefixes)
        # Parquet decoding releases the GIL: a few days or months at once keep the cores busy
        with ThreadPoolExecutor(max_workers=min(READ_THREADS, max(len(tasks), 1))) as pool:
            tables = [t for t in pool.map(lambda task: task(), tasks) if t is not None]
        return to_frame(tables, empty)

    def _days(
        self, kind: FrameKind | str, source: str | None, lo: datetime | None, hi: datetime | None
    ) -> list[str]:
        """The day folders of a kind (``merged/date=2026-01-01/``) that may hold runs in ``[lo, hi]``."""
        prefix = frame_prefix(kind, source)
        days = sorted(c for c in self._backend.children(prefix) if c.startswith("date=") and c.endswith("/"))
        first = f"date={lo:%Y-%m-%d}/" if lo is not None else ""
        last = f"date={hi:%Y-%m-%d}/" if hi is not None else "~"
        return [prefix + d for d in days if first <= d <= last]

    def _newest_month(self, kind: FrameKind | str, source: str | None) -> str:
        """The month of the newest day folder holding a run (``""`` for none): the month still
        being collected, which is never rolled up. An empty folder does not count."""
        for prefix in reversed(self._days(kind, source, None, None)):
            if self._day_runs(prefix):
                return _month_of(prefix)
        return ""

    def _day_runs(self, day: str) -> dict[datetime, str]:
        """A day folder's frame files by run minute."""
        found = {}
        for name in self._backend.children(day):
            at = parse_frame_key(day + name)
            if at is not None:
                found[at] = day + name
        return found

    def latest(self, kind: FrameKind | str, *, source: str | None = None) -> pd.DataFrame | None:
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


def _within(table: pa.Table, lo: datetime, hi: datetime) -> pa.Array:
    import pyarrow as pa
    import pyarrow.compute as pc

    run_at = table.column(RUN_AT_COLUMN)
    return pc.and_(
        pc.greater_equal(run_at, pa.scalar(lo, type=run_at.type)),
        pc.less_equal(run_at, pa.scalar(hi, type=run_at.type)),
    )


def _arrow(frame: pd.DataFrame) -> pa.Table:
    """The kind's empty frame with ``run_at`` as an Arrow table (what a day without rows holds)."""
    import pyarrow as pa

    frame = frame.copy()
    frame[RUN_AT_COLUMN] = pd.Series([], dtype="datetime64[us, UTC]")
    return pa.Table.from_pandas(frame, preserve_index=False)


def _month_of(day_prefix: str) -> str:
    """``2026-01`` for ``merged/date=2026-01-31/``; ``""`` for a folder that names no day."""
    day = parse_day_folder(day_prefix)
    return f"{day:%Y-%m}" if day is not None else ""


def _covers(month: str, lo: datetime | None, hi: datetime | None) -> bool:
    """Whether ``[lo, hi]`` holds every minute of ``month`` (``2026-01``)."""
    start = datetime.strptime(month, "%Y-%m").replace(tzinfo=UTC)
    after = (start + timedelta(days=32)).replace(day=1)
    return (lo is None or lo <= start) and (hi is None or hi >= after - timedelta(minutes=1))


def _between(at: datetime, lo: datetime | None, hi: datetime | None) -> bool:
    return (lo is None or at >= lo) and (hi is None or at <= hi)
