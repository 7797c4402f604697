"""Where each thing lives in a store, and how frames and documents become bytes.

The same relative keys are used by the local directory (relative paths under the root) and by S3
(keys under ``bucket/prefix``)::

    raw/source={source}/date=YYYY-MM-DD/HH-MM.parquet    one file per source and run minute
    merged/date=YYYY-MM-DD/HH-MM.parquet                 the merged snapshot of a run
    changes/date=YYYY-MM-DD/HH-MM.parquet                the changeset of a run
    state/CURRENT                                        pointer: JSON naming the committed generation
    state/generations/{version}/manifest.json            what the generation holds
    state/generations/{version}/frames/{name}.parquet    state frames
    state/generations/{version}/docs/{name}.json         state documents
    .staging/{stage}/{frame key}                         a run's frames until its state commit publishes them
    shards/YYYY-MM-DDTHH-MM/part-{i}-of-{n}.json|.parquet   a shard worker's part of a sharded run
    delivered/{stage}/{sink}                             marker: a committed run reached one sink
    .spotlake.lock                                       the run lock
    .rolled-back/{version}/{frame key}                   frames of runs a rollback took back (hidden)
    .digest/{kind folder}date=YYYY-MM-DD.parquet         a complete day's runs in one file (a read cache)
    .digest/{kind folder}month=YYYY-MM.parquet           a closed month's days in one file (a read cache)
    state/ROLLBACK                                       a rollback being carried out

``source=`` and ``date=`` are Hive partitions, so pandas, pyarrow.dataset, DuckDB
(``hive_partitioning=1``), Athena and Spark read the tree without spotlake. No frame schema has a
``source`` or ``date`` column, so partition columns never clash on read. Each per-run file also
carries a ``run_at`` column (timestamp[us, UTC], the run minute) so rows read in bulk say which run
they came from; :func:`decode_run_frame` drops it again.

Files that are being written start with ``.`` (``.HH-MM.parquet.<id>.tmp``), which pyarrow, pandas
and Spark skip and which ``*.parquet`` globs do not match. A run writes its frames under the hidden
``.staging/`` folder; only the state commit that records them moves them to their keys, so the
frame folders hold committed runs only (docs/operations.md, "What readers see").

Versions are ``g{seq:012d}-{random}``: ``seq`` is the parent's ``seq`` + 1, so versions sort in
commit order whatever the wall clock says, and two runs racing from the same parent get distinct
names (only one of them can be published).
"""

from __future__ import annotations

import functools
import io
import json
import re
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import attrs
import pandas as pd

from spotlake.clock import ensure_utc
from spotlake.errors import ConfigError, CorruptStoreError, StorageError
from spotlake.model import (
    AWS_ONDEMAND_SCHEMA,
    AWS_SPOT_PRICES_SCHEMA,
    AWS_TYPES_SCHEMA,
    CHANGES_SCHEMA,
    EVICTION_SCHEMA,
    PRICES_SCHEMA,
    SKUS_SCHEMA,
    SNAPSHOT_SCHEMA,
    SPS_SCHEMA,
    Schema,
    Source,
)
from spotlake.storage.base import RAW_SOURCES, FrameKind

__all__ = [
    "COMMIT_LOCK_KEY",
    "CURRENT_KEY",
    "DELIVERED_PREFIX",
    "GENERATIONS_PREFIX",
    "LOCK_KEY",
    "PARTS_PREFIX",
    "ROLLBACK_KEY",
    "ROLLED_BACK_PREFIX",
    "RUN_AT_COLUMN",
    "STAGING_PREFIX",
    "Pointer",
    "check_name",
    "decode_doc",
    "decode_frame",
    "decode_run_frame",
    "delivered_key",
    "encode_doc",
    "encode_frame",
    "encode_run_frame",
    "frame_key",
    "frame_kind",
    "frame_prefix",
    "generation_prefix",
    "hidden_key",
    "new_stage",
    "new_version",
    "parse_frame_key",
    "parse_part_name",
    "parse_run_dir",
    "part_key",
    "parts_prefix",
    "run_dir",
    "run_minute",
    "schema_for",
    "stage_created",
    "stage_prefix",
    "version_seq",
]

RUN_AT_COLUMN: Final = "run_at"
CURRENT_KEY: Final = "state/CURRENT"
#: The run lock: a flock'ed file locally, a conditionally written object on S3.
LOCK_KEY: Final = ".spotlake.lock"
#: Local stores only: the file whose flock guards the compare-and-swap of the state pointer.
COMMIT_LOCK_KEY: Final = "state/.commit.lock"
GENERATIONS_PREFIX: Final = "state/generations/"
STAGING_PREFIX: Final = ".staging/"
#: Frames of runs a rollback took back, kept hidden so that undoing the rollback restores them.
ROLLED_BACK_PREFIX: Final = ".rolled-back/"
#: A rollback in progress: what it hides and restores, finished by the next run if interrupted.
ROLLBACK_KEY: Final = "state/ROLLBACK"
PARTS_PREFIX: Final = "shards/"
DELIVERED_PREFIX: Final = "delivered/"
#: Append-only tables of other parts of spotlake (e.g. the compute cost ledger):
#: ``tables/{name}/{YYYY-MM-DDTHHMMSS}-{token}.parquet``, one file per append.
TABLES_PREFIX: Final = "tables/"
#: Day digests: a cache of whole days for long reads (spotlake.storage._digests).
DIGEST_PREFIX: Final = ".digest/"

# zstd: smaller than snappy at similar speed, and read by pandas/pyarrow, DuckDB, Athena and Spark.
PARQUET_COMPRESSION: Final = "zstd"

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_VERSION_RE = re.compile(r"^g(\d{12})-[0-9a-f]{8,32}$")
_FRAME_FILE_RE = re.compile(r"^(\d{2})-(\d{2})\.parquet$")
_STAGE_RE = re.compile(r"^(\d{8}T\d{6})-[0-9a-f]{8,32}$")
_RUN_DIR_RE = re.compile(r"^(\d{4}-\d{2}-\d{2})T(\d{2})-(\d{2})$")
_PART_RE = re.compile(r"^part-(\d+)-of-(\d+)\.(json|parquet)$")

_SCHEMAS: Final[Mapping[tuple[FrameKind, Source | None], Schema]] = {
    (FrameKind.RAW, Source.PRICES): PRICES_SCHEMA,
    (FrameKind.RAW, Source.SPS): SPS_SCHEMA,
    (FrameKind.RAW, Source.EVICTION): EVICTION_SCHEMA,
    (FrameKind.RAW, Source.SKUS): SKUS_SCHEMA,
    (FrameKind.RAW, Source.AWS_SPS): SPS_SCHEMA,
    (FrameKind.RAW, Source.AWS_SPOT_PRICES): AWS_SPOT_PRICES_SCHEMA,
    (FrameKind.RAW, Source.AWS_ONDEMAND): AWS_ONDEMAND_SCHEMA,
    (FrameKind.RAW, Source.AWS_TYPES): AWS_TYPES_SCHEMA,
    (FrameKind.RAW, Source.AWS_ADVISOR): EVICTION_SCHEMA,
    (FrameKind.MERGED, None): SNAPSHOT_SCHEMA,
    (FrameKind.CHANGES, None): CHANGES_SCHEMA,
}


def check_name(what: str, name: str) -> str:
    """A state frame/doc name must be a safe file name (letters, digits, ``_ . -``)."""
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise ConfigError(
            f"{what} name {name!r} is not usable as a file name: use letters, digits, '_', '.', '-' "
            "(starting with a letter or digit, at most 128 characters)"
        )
    return name


def frame_kind(kind: FrameKind | str, source: str | None) -> tuple[FrameKind, Source | None]:
    """``(kind, source)`` checked: raw frames name one of the sources, the others none."""
    checked = FrameKind.of(kind)
    if checked is FrameKind.RAW:
        try:
            return checked, Source(str(source))
        except ValueError:
            raise ConfigError(
                f"raw frames need source= one of {[s.value for s in RAW_SOURCES]}, got {source!r}"
            ) from None
    if source is not None:
        raise ConfigError(f"{checked} frames have no source (got source={source!r})")
    return checked, None


def schema_for(kind: FrameKind | str, source: str | None = None) -> Schema:
    """The documented schema of a frame kind (for validation and empty reads)."""
    return _SCHEMAS[frame_kind(kind, source)]


def run_minute(at: datetime) -> datetime:
    """The run minute a timestamp files under (UTC, seconds dropped): runs are keyed per minute."""
    return ensure_utc(at).replace(second=0, microsecond=0)


def frame_prefix(kind: FrameKind | str, source: str | None = None) -> str:
    """``raw/source=sps/`` or ``merged/``: the folder holding every file of a kind."""
    checked, src = frame_kind(kind, source)
    return f"raw/source={src}/" if checked is FrameKind.RAW else f"{checked}/"


def frame_key(kind: FrameKind | str, at: datetime, source: str | None = None) -> str:
    """``raw/source=sps/date=2026-01-01/12-30.parquet`` for a run at 12:30 UTC."""
    minute = run_minute(at)
    return f"{frame_prefix(kind, source)}date={minute:%Y-%m-%d}/{minute:%H-%M}.parquet"


def digest_key(day_prefix: str) -> str:
    """``.digest/merged/date=2026-01-01.parquet`` for the day folder ``merged/date=2026-01-01/``."""
    return f"{DIGEST_PREFIX}{day_prefix.rstrip('/')}.parquet"


def rollup_key(kind_prefix: str, month: str) -> str:
    """``.digest/merged/month=2026-01.parquet``: the day digests of a closed month in one file,
    sorted by key across the month (spotlake.storage._rollups)."""
    return f"{DIGEST_PREFIX}{kind_prefix}month={month}.parquet"


def epoch_key(day_prefix: str) -> str:
    """``.digest/merged/date=2026-01-01.epoch``: a token replaced whenever a frame of the day is
    written or moved, so a digest built before that is known stale (spotlake.storage._digests)."""
    return f"{DIGEST_PREFIX}{day_prefix.rstrip('/')}.epoch"


def parse_frame_key(key: str) -> datetime | None:
    """The run minute of a frame key (relative to its kind prefix or not); ``None`` if not a frame file."""
    parts = key.rsplit("/", 2)
    if len(parts) < 2:
        return None
    date_part, file_part = parts[-2], parts[-1]
    if not date_part.startswith("date="):
        return None
    day, time = _parse_day(date_part[5:]), _parse_time(file_part)
    return None if day is None or time is None else day + time


def parse_day_folder(day_prefix: str) -> datetime | None:
    """Midnight UTC of a day folder (``merged/date=2026-01-01/``); ``None`` if it names no day."""
    name = day_prefix.rstrip("/").rsplit("/", 1)[-1]
    return _parse_day(name[5:]) if name.startswith("date=") else None


@functools.lru_cache(maxsize=4096)
def _parse_day(text: str) -> datetime | None:
    """``2026-01-01`` as midnight UTC (cached: a year of keys names 365 days 52,560 times)."""
    try:
        return datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        return None


@functools.lru_cache(maxsize=2048)
def _parse_time(name: str) -> timedelta | None:
    """``12-30.parquet`` as 12 h 30 min (cached: a day has at most 1,440 such names)."""
    match = _FRAME_FILE_RE.fullmatch(name)
    return None if match is None else timedelta(hours=int(match.group(1)), minutes=int(match.group(2)))


def run_dir(at: datetime) -> str:
    """``2026-01-01T12-30``: a run minute as one path segment (shard parts, delivery markers)."""
    return f"{run_minute(at):%Y-%m-%dT%H-%M}"


def parse_run_dir(name: str) -> datetime | None:
    """The run minute of a :func:`run_dir` segment (a trailing ``/`` is allowed), or ``None``."""
    match = _RUN_DIR_RE.fullmatch(name.rstrip("/"))
    if match is None:
        return None
    try:
        day = datetime.strptime(match.group(1), "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        return None
    return day + timedelta(hours=int(match.group(2)), minutes=int(match.group(3)))


def new_stage(now: datetime) -> str:
    """A fresh staging id, stamped with its creation time so abandoned stages can be aged out."""
    return f"{ensure_utc(now):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:12]}"


def stage_created(stage: str) -> datetime | None:
    """When a staging id was made, ``None`` if ``stage`` is not one."""
    match = _STAGE_RE.fullmatch(stage.rstrip("/"))
    if match is None:
        return None
    return datetime.strptime(match.group(1), "%Y%m%dT%H%M%S").replace(tzinfo=UTC)


def stage_prefix(stage: str) -> str:
    """``.staging/{stage}/``: a run's frames before its commit publishes them."""
    if stage_created(stage) is None:
        raise ConfigError(f"{stage!r} is not a staging id")
    return f"{STAGING_PREFIX}{stage}/"


def hidden_key(version: str, key: str) -> str:
    """``.rolled-back/{version}/{key}``: where a rollback keeps a frame of a run it took back."""
    return f"{ROLLED_BACK_PREFIX}{version}/{key}"


def parts_prefix(at: datetime) -> str:
    """``shards/2026-01-01T12-30/``: the parts of one sharded run."""
    return f"{PARTS_PREFIX}{run_dir(at)}/"


def part_key(at: datetime, index: int, count: int, ext: str) -> str:
    """``shards/2026-01-01T12-30/part-1-of-3.json`` (``ext`` is ``json`` or ``parquet``)."""
    return f"{parts_prefix(at)}part-{index}-of-{count}.{ext}"


def parse_part_name(name: str) -> tuple[int, int, str] | None:
    """``(index, count, ext)`` of a part file name, ``None`` if it is not one."""
    match = _PART_RE.fullmatch(name)
    return (int(match.group(1)), int(match.group(2)), match.group(3)) if match else None


def table_prefix(name: str) -> str:
    """Where the appends of table ``name`` live."""
    return f"{TABLES_PREFIX}{check_name('table', name)}/"


def table_key(name: str, at: datetime) -> str:
    """A new file for one append to table ``name`` at ``at`` (names sort by time)."""
    return f"{table_prefix(name)}{ensure_utc(at):%Y-%m-%dT%H%M%S}-{uuid.uuid4().hex[:12]}.parquet"


def delivered_key(run: str, sink: str) -> str:
    """``delivered/{run}/{sink}``: present once the committed run (its stage) reached the sink."""
    return f"{DELIVERED_PREFIX}{stage_prefix(run)[len(STAGING_PREFIX) :]}{check_name('sink', sink)}"


def generation_prefix(version: str) -> str:
    return f"{GENERATIONS_PREFIX}{version}/"


def new_version(parent_seq: int) -> str:
    """A fresh generation id one step after ``parent_seq``."""
    return f"g{parent_seq + 1:012d}-{uuid.uuid4().hex[:12]}"


def version_seq(version: str) -> int | None:
    """The sequence number of a version id, ``None`` if the name is not a version."""
    match = _VERSION_RE.fullmatch(version)
    return int(match.group(1)) if match else None


# --- the CURRENT pointer ---------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class Pointer:
    """Content of ``state/CURRENT``: the committed generation and the ones kept before it."""

    version: str
    seq: int
    committed_at: datetime
    run_id: str | None = None
    previous: tuple[str, ...] = ()

    def encode(self) -> bytes:
        body = {
            "format": 1,
            "version": self.version,
            "seq": self.seq,
            "committed_at": self.committed_at.isoformat(),
            "run_id": self.run_id,
            "previous": list(self.previous),
        }
        return (json.dumps(body, indent=2, sort_keys=True) + "\n").encode()

    @classmethod
    def decode(cls, data: bytes, *, where: str) -> Pointer:
        try:
            body = json.loads(data)
            return cls(
                version=str(body["version"]),
                seq=int(body["seq"]),
                committed_at=ensure_utc(datetime.fromisoformat(body["committed_at"])),
                run_id=body.get("run_id"),
                previous=tuple(str(v) for v in body.get("previous", ())),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise CorruptStoreError(
                f"state pointer {where} is not a spotlake pointer ({exc}); nothing was changed. Restore it "
                f"from a generation under {GENERATIONS_PREFIX} (see docs/operations.md, 'Recovery')"
            ) from exc


# --- codecs ----------------------------------------------------------------------------------


#: Parquet schema metadata key recording the dtypes of a frame's (non-range) index. pyarrow's pandas
#: metadata restores the index itself (so plain pandas gets it back too), but not always its dtype
#: (a ``string`` index comes back as ``str``); spotlake casts it back on read.
_INDEX_META: Final = b"spotlake.index_dtypes"


def encode_frame(frame: pd.DataFrame, *, what: str) -> bytes:
    """Parquet bytes of a frame, keeping dtypes (string, Int64, boolean, tz-aware) and the index."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pa.Table.from_pandas(frame)
        if not isinstance(frame.index, pd.RangeIndex):
            dtypes = [str(frame.index.get_level_values(i).dtype) for i in range(frame.index.nlevels)]
            meta = dict(table.schema.metadata or {})
            meta[_INDEX_META] = json.dumps(dtypes).encode()
            table = table.replace_schema_metadata(meta)
        buf = io.BytesIO()
        pq.write_table(table, buf, compression=PARQUET_COMPRESSION)
    except Exception as exc:  # pyarrow raises ArrowInvalid/ArrowTypeError/ArrowNotImplementedError
        raise StorageError(f"cannot write {what} as Parquet: {type(exc).__name__}: {exc}") from exc
    return buf.getvalue()


def decode_frame(data: bytes, *, where: str) -> pd.DataFrame:
    """The frame in Parquet bytes; :class:`CorruptStoreError` naming ``where`` if unreadable."""
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(io.BytesIO(data))
        frame: pd.DataFrame = table.to_pandas()
        raw_meta = (table.schema.metadata or {}).get(_INDEX_META)
        if raw_meta:
            dtypes = json.loads(raw_meta)
            levels = [
                frame.index.get_level_values(i).astype(pd.api.types.pandas_dtype(d))
                for i, d in enumerate(dtypes)
            ]
            frame.index = (
                levels[0] if len(levels) == 1 else pd.MultiIndex.from_arrays(levels, names=frame.index.names)
            )
    except Exception as exc:  # any decoding failure means the file is damaged
        raise CorruptStoreError(
            f"{where} is not readable Parquet ({type(exc).__name__}: {exc}); nothing was overwritten"
        ) from exc
    return frame


def encode_run_frame(frame: pd.DataFrame, *, at: datetime, what: str) -> bytes:
    """Parquet bytes of a per-run frame with its ``run_at`` column appended (index dropped)."""
    if RUN_AT_COLUMN in frame.columns:
        raise ConfigError(
            f"{what} has a column named {RUN_AT_COLUMN!r}, which the store adds itself; rename it"
        )
    stamped = frame.reset_index(drop=True)
    run_at = pd.Timestamp(run_minute(at)).as_unit("us")
    stamped[RUN_AT_COLUMN] = pd.Series(run_at, index=stamped.index, dtype="datetime64[us, UTC]")
    return encode_frame(stamped, what=what)


def decode_run_frame(data: bytes, *, where: str) -> pd.DataFrame:
    """The frame as it was put (``run_at`` column removed)."""
    frame = decode_frame(data, where=where)
    return frame.drop(columns=[RUN_AT_COLUMN], errors="ignore")


def _json_default(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def encode_doc(doc: Mapping[str, Any], *, name: str) -> bytes:
    """JSON bytes of a state document (datetimes as ISO strings; NaN refused)."""
    try:
        text = json.dumps(dict(doc), indent=2, sort_keys=True, default=_json_default, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"state document {name!r} is not JSON-serialisable ({exc}); store only str/int/float/bool/"
            "None/list/dict (datetimes become ISO strings; NaN is not allowed: use None)"
        ) from exc
    return (text + "\n").encode()


def decode_doc(data: bytes, *, where: str) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except ValueError as exc:
        raise CorruptStoreError(f"{where} is not valid JSON ({exc}); nothing was overwritten") from exc
    if not isinstance(value, dict):
        raise CorruptStoreError(f"{where} holds a JSON {type(value).__name__}, not an object")
    return value
