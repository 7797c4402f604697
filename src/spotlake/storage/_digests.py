"""Day digests: every committed run of one day of one frame kind in one Parquet file.

A year of 10-minute runs is 52,560 files per frame kind; a reader that opens each of them to find
one size takes minutes. So long reads go through digests (``.digest/merged/date=2026-01-01.parquet``,
``.digest/raw/source=sps/date=...``): one file per kind and day, its rows sorted by the kind's key
and run time in row groups of :data:`ROW_GROUP` rows, so a filter on ``size`` reads the footer and
a row group or two.

Readers write them (the first read of a day after it changed pays for it once); runs never do.
A digest names in its metadata the run minutes it holds (only those it could read) and the day's
*epoch*, a token (``.digest/merged/date=2026-01-01.epoch``) that publishing, hiding, restoring or
writing a frame of the day replaces, before its moves and after them. A digest whose minutes
differ from the day's frames (the day's next run, a late run, a rollback that hid one) or whose
epoch is not the day's (a rerun of the same minute, even one that lands while a reader is building
the digest from the old file: the reader read the epoch first) is rebuilt, so the day still
being collected is rebuilt once per run, by the first read after it. Digests live
under a hidden
folder: pandas, pyarrow, DuckDB and Spark reading the frame folders never see them, and deleting
them loses nothing.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final, NamedTuple

import pandas as pd

from spotlake.errors import ConfigError, CorruptStoreError, StorageError
from spotlake.storage.backend import Backend
from spotlake.storage.layout import PARQUET_COMPRESSION, RUN_AT_COLUMN, digest_key, epoch_key

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.parquet as pq

__all__ = [
    "ROW_GROUP",
    "DayDigests",
    "DayStamp",
    "Filters",
    "open_parquet",
    "select",
    "to_frame",
    "write_sorted",
]

log = logging.getLogger(__name__)

#: Rows per row group of a digest: small enough that a filter on one size skips most of a day.
ROW_GROUP: Final = 4_096
_RUNS_META: Final = b"spotlake.digest_runs"
#: Columns a digest is sorted by, in this order, when the kind has them.
_SORT: Final = ("size", "region", "zone", "desired_count", RUN_AT_COLUMN)

#: Column -> the values it may take (pyarrow's ``in`` filter).
Filters = Mapping[str, Sequence[Any]]


def read_parquet(data: bytes, *, where: str) -> pa.Table:
    """A frame file's rows; :class:`CorruptStoreError` naming ``where`` if it is unreadable."""
    import pyarrow.parquet as pq

    try:
        return pq.read_table(io.BytesIO(data))
    except Exception as exc:  # any decoding failure means the file is damaged
        raise CorruptStoreError(
            f"{where} is not readable Parquet ({type(exc).__name__}: {exc}); nothing was overwritten"
        ) from exc


class DayDigests:
    """Reads one day of a frame kind through its digest (see the module docstring)."""

    def __init__(self, backend: Backend) -> None:
        self._backend = backend

    def read(
        self,
        day_prefix: str,
        runs: Mapping[datetime, str],
        *,
        columns: Sequence[str] | None,
        filters: Filters,
        empty: pa.Table,
    ) -> pa.Table:
        """The rows of the day (``day_prefix``: ``merged/date=2026-01-01/``; ``runs``: its run
        minutes and frame keys) that pass ``filters``, from the digest, built first if needed.
        ``empty``: the kind's schema as a table (a day whose frames all vanished gives it)."""
        file, _ = self.file(day_prefix, runs, empty=empty)
        return select(file, columns=columns, filters=filters)

    def stamp(self, day_prefix: str, runs: Mapping[datetime, str]) -> DayStamp:
        """What a fresh digest of the day records now: its run minutes and epoch (the epoch is
        read first, before any frame, so a digest built from it is never fresher than it says)."""
        epoch = self._backend.get(epoch_key(day_prefix)) or b""
        return DayStamp(_minutes(runs), epoch.decode())

    def file(
        self, day_prefix: str, runs: Mapping[datetime, str], *, empty: pa.Table
    ) -> tuple[pq.ParquetFile, DayStamp]:
        """The day's digest, read or (when missing, damaged or stale) built and stored, with the
        stamp it was built under."""
        key = digest_key(day_prefix)
        now = self.stamp(day_prefix, runs)
        data = self._backend.get(key)
        if data is not None:
            found = open_parquet(data, where=f"{self._backend.url}/{key}")
            if found is not None and _stamp(found) == now:
                return found, now
        data, built_stamp = self._build(runs, epoch=now.epoch, empty=empty)
        try:
            self._backend.put(key, data)
        except StorageError as exc:  # a read-only store still reads, just without the digest
            log.info(
                "%s: could not write the digest %s (%s); reading the day's files", self._backend.url, key, exc
            )
        built = open_parquet(data, where=f"digest of {day_prefix}")
        if built is None:  # pragma: no cover - we just wrote it
            raise CorruptStoreError(f"the digest of {day_prefix} built unreadable")
        return built, built_stamp

    def _build(self, runs: Mapping[datetime, str], *, epoch: str, empty: pa.Table) -> tuple[bytes, DayStamp]:
        import pyarrow as pa

        tables, read = [], {}
        for at in sorted(runs):
            key = runs[at]
            data = self._backend.get(key)
            if data is None:  # gone since the listing: not in this digest, so the next read rebuilds
                continue
            tables.append(read_parquet(data, where=f"{self._backend.url}/{key}"))
            read[at] = key
        table = pa.concat_tables(tables, promote_options="permissive") if tables else empty
        stamp = DayStamp(_minutes(read), epoch)
        return write_sorted(table, {_RUNS_META: stamp.encode()}, row_group=ROW_GROUP), stamp


class DayStamp(NamedTuple):
    """What a day digest was built from: the minutes of day of its runs and the day's epoch."""

    minutes: tuple[int, ...]
    epoch: str

    def encode(self) -> bytes:
        return json.dumps({"minutes": list(self.minutes), "epoch": self.epoch}).encode()

    @classmethod
    def decode(cls, raw: Any) -> DayStamp | None:
        """The stamp in a digest's metadata; ``None`` (the digest is rebuilt) for anything else,
        including the stamps of older spotlake versions."""
        if not isinstance(raw, dict) or not isinstance(raw.get("minutes"), list):
            return None
        try:
            return cls(tuple(int(m) for m in raw["minutes"]), str(raw.get("epoch", "")))
        except (TypeError, ValueError):
            return None


def _minutes(runs: Iterable[datetime]) -> tuple[int, ...]:
    return tuple(sorted(at.hour * 60 + at.minute for at in runs))


def write_sorted(table: pa.Table, meta: Mapping[bytes, bytes], *, row_group: int) -> bytes:
    """``table`` sorted by the kind's key and run time, with ``meta`` in its schema, as Parquet
    bytes in row groups of ``row_group`` rows."""
    import pyarrow.parquet as pq

    order = [(c, "ascending") for c in _SORT if c in table.column_names]
    if order:
        table = table.sort_by(order)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), **meta})
    buf = io.BytesIO()
    pq.write_table(table, buf, compression=PARQUET_COMPRESSION, row_group_size=row_group)
    return buf.getvalue()


def open_parquet(data: bytes, *, where: str) -> pq.ParquetFile | None:
    """A digest's file, or ``None`` (with a warning) when it is damaged: it is rebuilt."""
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(io.BytesIO(data))
    except Exception:  # a damaged digest is rebuilt
        log.warning("digest %s is unreadable; rebuilding it", where)
        return None


def _stamp(file: pq.ParquetFile) -> DayStamp | None:
    """The run minutes a digest holds and the day's epoch it was built under."""
    raw = (file.schema_arrow.metadata or {}).get(_RUNS_META)
    try:
        return None if raw is None else DayStamp.decode(json.loads(raw))
    except ValueError:  # damaged metadata: rebuilt
        return None


def select(file: pq.ParquetFile, *, columns: Sequence[str] | None, filters: Filters) -> pa.Table:
    """The rows passing ``filters``: only the row groups whose statistics admit a wanted value
    are read (the digest is sorted by its key, so a size sits in one or two of them)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    meta = file.metadata
    names = file.schema_arrow.names
    groups = []
    for g in range(meta.num_row_groups):
        group = meta.row_group(g)
        if all(
            col not in names or _admits(group.column(names.index(col)).statistics, values)
            for col, values in filters.items()
        ):
            groups.append(g)
    wanted = list(dict.fromkeys([*(columns or names), *filters]))
    present = [c for c in wanted if c in names]
    table = file.read_row_groups(groups, columns=present) if groups else file.schema_arrow.empty_table()
    for col in wanted:  # a column this file lacks (frames written before it existed): all null
        if col not in names:
            table = table.append_column(col, pa.nulls(table.num_rows))
    table = table.select(wanted)
    if filters and table.num_rows:
        mask = None
        for col, values in filters.items():
            column = table.column(col)
            if pa.types.is_null(column.type):  # a column the file lacks: only a None filter admits it
                test = pa.array([None in values] * table.num_rows, pa.bool_())
                mask = test if mask is None else pc.and_(mask, test)
                continue
            try:
                allowed = pa.array(list(values)).cast(column.type)
            except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
                raise ConfigError(
                    f"filter on {col!r}: {list(values)[:5]} are not {column.type} values ({exc})"
                ) from None
            test = pc.is_in(column, value_set=allowed)
            mask = test if mask is None else pc.and_(mask, test)
        table = table.filter(mask)
    return table.select(list(columns or names))


def _admits(stats: Any, values: Sequence[Any]) -> bool:
    """Whether a column chunk with these statistics may hold one of ``values``."""
    if stats is None or not stats.has_min_max:
        return True
    try:
        present = [v for v in values if v is not None]
        return len(present) < len(values) or any(stats.min <= v <= stats.max for v in present)
    except TypeError:  # values of another type than the column's: let the row filter decide
        return True


def to_frame(tables: Sequence[pa.Table], empty: pd.DataFrame) -> pd.DataFrame:
    """The tables as one frame with the columns and dtypes of ``empty`` (the kind's schema):
    one conversion for all of them, not one per file."""
    import pyarrow as pa

    tables = [t.replace_schema_metadata(None) for t in tables if t.num_rows]
    if not tables:
        return empty
    table = pa.concat_tables(tables, promote_options="permissive")
    out = table.to_pandas(
        types_mapper={pa.string(): pd.StringDtype(), pa.large_string(): pd.StringDtype()}.get
    )
    for col in empty.columns:
        if col in out.columns and out[col].dtype != empty[col].dtype:
            out[col] = out[col].astype(empty[col].dtype)
    result: pd.DataFrame = out[[c for c in empty.columns if c in out.columns]]
    return result
