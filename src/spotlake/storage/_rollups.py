"""Month roll-ups: a closed month's day digests in one file, sorted by key across the month.

A day digest makes a day one file, but a year is still 365 of them, and finding one size in each
costs a footer and a row group per day (a few milliseconds): over a second for a year. A roll-up
(``.digest/merged/month=2026-01.parquet``) holds every row of a month's day digests sorted by the
kind's key and run time in row groups of :data:`ROW_GROUP` rows, so one size's month is a row
group or two of one file.

Only closed months are rolled up (months before the newest day of the kind; the month being
collected changes every run), and only for reads that cover the whole month. A roll-up records
each day's stamp (its run minutes and epoch, as the day's digest does); a read compares them with
the days' listings and epochs, so a late run, a rerun, a rollback or a hand-deleted file in any of
its days makes it stale, and it is rebuilt from the day digests. Building sorts the month in
memory, so one month is built at a time and a month of more than :data:`MAX_ROWS` rows is not
rolled up; nor is one the store will not keep (a reader with read-only credentials): such months
are read through their day digests, as before. Like digests, roll-ups are a cache under
``.digest/``: deleting them loses nothing.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Final

from spotlake.errors import CorruptStoreError, StorageError
from spotlake.storage._digests import DayDigests, DayStamp, Filters, open_parquet, select, write_sorted
from spotlake.storage.backend import Backend
from spotlake.storage.layout import RUN_AT_COLUMN, rollup_key

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.parquet as pq

__all__ = ["MAX_ROWS", "ROW_GROUP", "MonthRollups"]

log = logging.getLogger(__name__)

#: Rows per row group of a roll-up: a month of one size in one or two of them at the volumes of
#: a few hundred rows per run; still a small part of a month at a collection's full volume.
ROW_GROUP: Final = 65_536
#: The largest month rolled up: building holds the month in memory, sorted (about 1 GB at 4 M
#: rows of the merged schema).
MAX_ROWS: Final = 4_000_000
_STAMPS_META: Final = b"spotlake.rollup_days"

#: A month's days: day folder (``merged/date=2026-01-01/``) -> its run minutes and frame keys.
Days = Mapping[str, Mapping[datetime, str]]


class MonthRollups:
    """Reads whole closed months through their roll-ups (see the module docstring). One instance
    per store: it builds one month at a time and remembers the roll-ups the store would not keep."""

    def __init__(self, backend: Backend, days: DayDigests) -> None:
        self._backend = backend
        self._days = days
        self._building = threading.Lock()  # one month in memory at a time
        self._unkept: set[str] = set()  # roll-ups the store refused to keep: read by days

    def read(
        self,
        kind_prefix: str,
        month: str,
        days: Days,
        *,
        columns: Sequence[str] | None,
        filters: Filters,
        empty: pa.Table,
    ) -> pa.Table | None:
        """The rows of the month's ``days`` (every day folder of the month under ``kind_prefix``,
        ``month`` as ``2026-01``) that pass ``filters``, oldest run first; ``None`` when the month
        is not rolled up (too big, or the store would not keep it): read its days instead."""
        key = rollup_key(kind_prefix, month)
        want = {_day_name(day): self._days.stamp(day, runs) for day, runs in days.items()}  # epochs first
        found = self._fresh(key, want)
        if found is None:
            if key in self._unkept:
                return None
            with self._building:
                found = self._fresh(key, want)  # another thread may have built it meanwhile
                if found is None:
                    found = self._build(key, days, empty=empty)
        if found is None:
            return None
        return select(found, columns=columns, filters=filters).sort_by(RUN_AT_COLUMN)

    def _fresh(self, key: str, want: Mapping[str, DayStamp]) -> pq.ParquetFile | None:
        """The stored roll-up if it was built from exactly the days ``want`` stamps."""
        data = self._backend.get(key)
        if data is None:
            return None
        found = open_parquet(data, where=f"{self._backend.url}/{key}")
        return found if found is not None and _stamps(found) == want else None

    def _build(self, key: str, days: Days, *, empty: pa.Table) -> pq.ParquetFile | None:
        """Build, store and return the roll-up; ``None`` when the month is too big for one."""
        import pyarrow as pa

        files = {day: self._days.file(day, runs, empty=empty) for day, runs in sorted(days.items())}
        rows = sum(file.metadata.num_rows for file, _ in files.values())
        if rows > MAX_ROWS:
            log.info(
                "%s: %s would hold %d rows, more than a roll-up does; reading its days",
                self._backend.url,
                key,
                rows,
            )
            return None
        table = pa.concat_tables([file.read() for file, _ in files.values()], promote_options="permissive")
        stamps = {_day_name(day): stamp for day, (_, stamp) in files.items()}
        del files
        data = write_sorted(
            table.replace_schema_metadata(None), {_STAMPS_META: _encode(stamps)}, row_group=ROW_GROUP
        )
        del table
        try:
            self._backend.put(key, data)
        except StorageError as exc:  # a read-only store: this read uses it, later ones read by days
            log.info("%s: could not write the roll-up %s (%s); reading by days", self._backend.url, key, exc)
            self._unkept.add(key)
        built = open_parquet(data, where=f"roll-up {key}")
        if built is None:  # pragma: no cover - we just wrote it
            raise CorruptStoreError(f"the roll-up {key} built unreadable")
        return built


def _day_name(day_prefix: str) -> str:
    """``date=2026-01-01`` for ``merged/date=2026-01-01/``."""
    return day_prefix.rstrip("/").rsplit("/", 1)[-1]


def _encode(stamps: Mapping[str, DayStamp]) -> bytes:
    return json.dumps({day: json.loads(stamp.encode()) for day, stamp in sorted(stamps.items())}).encode()


def _stamps(file: pq.ParquetFile) -> dict[str, DayStamp] | None:
    """The day stamps a roll-up was built from; ``None`` if it has none (it is rebuilt)."""
    raw = (file.schema_arrow.metadata or {}).get(_STAMPS_META)
    try:
        decoded = json.loads(raw) if raw is not None else None
    except ValueError:  # damaged metadata: rebuilt
        return None
    if not isinstance(decoded, dict):
        return None
    stamps = {str(day): DayStamp.decode(value) for day, value in decoded.items()}
    return None if any(stamp is None for stamp in stamps.values()) else stamps  # type: ignore[return-value]
