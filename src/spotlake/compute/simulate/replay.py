"""Replay the public "Can't Be Late" spot traces: measured EC2 GPU spot availability as a :class:`Trace`.

The traces (repository skypilot-org/spot-traces; a copy sits in ``../shared/data/spot-traces/``)
are one JSON file per pool, ``{"metadata": {"gap_seconds": N}, "data": [0, 1, ...]}``: one value
per tick of ``N`` seconds, the number of spot instances obtainable (the availability files) or
held (the preemption files) at that tick. The file name says the pool:

* ``us-west-2a_k80_1.json``: zone ``us-west-2a``, one K80 GPU per instance (``p2.xlarge``);
  600 s ticks from 2022-10-26 (:data:`AVAILABILITY_START`);
* ``preemption_us-east-1c_v100_1.json``: a held ``p3.2xlarge`` in ``us-east-1c``; 32 s ticks from
  2023-04-22 (:data:`PREEMPTION_START`).

:data:`GPU_TYPES` maps the GPU and count of a name to its EC2 type; :data:`EC2_TYPES` holds each
type's shape and prices. A positive value means spot capacity was obtainable: the pool then has
``capacity`` instances (the files measure one instance, so how many a workload may get is the
caller's assumption; 64 by default, so several jobs can share a pool); 0 means none.

The traces carry no prices (three preemption files have a ``prices`` list, a constant 0.918 USD/h):
a pool's spot price is constant over the trace, its zone's price from :data:`EC2_TYPES` (the
region's median for a zone the table has no price for); ``file_prices=True`` uses a file's own
``prices`` instead where it has them. On-demand capacity is unlimited at the region's price.

Files with different tick lengths (the 600 s and 32 s files) are refused, not resampled: they
were measured months apart, and mixing them in one trace would pretend they were simultaneous.
Load each kind as its own trace (``load_spot_traces(directory, pattern="preemption_*.json")``).
A missing file, malformed JSON, a value that is not a count, or a name that says no known pool is
a :class:`~spotlake.errors.ConfigError` naming the file and what to do.
"""

from __future__ import annotations

import json
import math
import os
import re
import statistics
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

import attrs
import numpy as np

from spotlake.clock import ensure_utc
from spotlake.compute.simulate.trace import (
    FloatSeries,
    InstanceShape,
    IntSeries,
    OnDemandPrice,
    PoolSeries,
    Trace,
)
from spotlake.compute.values import Cloud, Pool
from spotlake.errors import ConfigError

__all__ = [
    "AVAILABILITY_START",
    "DEFAULT_CAPACITY",
    "EC2_TYPES",
    "GPU_TYPES",
    "PREEMPTION_START",
    "Ec2Type",
    "load_spot_trace",
    "load_spot_traces",
]

#: When the 600 s availability files start (the data set's README).
AVAILABILITY_START: Final = datetime(2022, 10, 26, tzinfo=UTC)
#: When the 32 s preemption files start.
PREEMPTION_START: Final = datetime(2023, 4, 22, tzinfo=UTC)
#: Instances a pool offers at a tick whose value says spot is obtainable, unless the caller says.
DEFAULT_CAPACITY: Final = 64

PathLike = str | os.PathLike[str]


@attrs.frozen(kw_only=True)
class Ec2Type:
    """An EC2 type's shape, on-demand price per region and spot price per zone (USD per hour)."""

    shape: InstanceShape
    on_demand: Mapping[str, float]
    spot: Mapping[str, float]

    def spot_price(self, zone: str, region: str) -> float | None:
        """The zone's spot price; the median of the region's zones when the zone has none."""
        if zone in self.spot:
            return self.spot[zone]
        prices = [p for z, p in self.spot.items() if z.startswith(region) and len(z) == len(region) + 1]
        return statistics.median(prices) if prices else None


# The prices and shapes are rows of the public SkyPilot catalog v3 aws.csv (repository
# skypilot-org/skypilot-catalog, commit 76b7d2d; ../shared/data/aws_vms_catalog_us.csv): on-demand
# per region, spot per zone name; zones the catalog has no spot price for are left out (us-east-1f
# and us-west-2d for p2, ...), so they get the region's median.
EC2_TYPES: Final[Mapping[str, Ec2Type]] = {
    "p2.xlarge": Ec2Type(
        shape=InstanceShape(vcpus=4, memory_gib=61.0, gpus=1),
        on_demand={"us-east-1": 0.9, "us-east-2": 0.9, "us-west-2": 0.9},
        spot={
            "us-east-1a": 0.3554, "us-east-1b": 0.5994, "us-east-1c": 0.4561, "us-east-1d": 0.362,
            "us-east-1e": 0.2706, "us-east-2a": 0.27, "us-east-2b": 0.27, "us-east-2c": 0.27,
            "us-west-2a": 0.3552, "us-west-2b": 0.2922, "us-west-2c": 0.3189,
        },
    ),
    "p2.8xlarge": Ec2Type(
        shape=InstanceShape(vcpus=32, memory_gib=488.0, gpus=8),
        on_demand={"us-east-1": 7.2, "us-east-2": 7.2, "us-west-2": 7.2},
        spot={
            "us-east-1a": 2.16, "us-east-1b": 2.16, "us-east-1c": 2.16, "us-east-1d": 2.16,
            "us-east-1e": 2.16, "us-east-2a": 2.16, "us-east-2b": 2.16, "us-east-2c": 2.16,
            "us-west-2a": 2.16, "us-west-2b": 2.16, "us-west-2c": 2.16,
        },
    ),
    "p3.2xlarge": Ec2Type(
        shape=InstanceShape(vcpus=8, memory_gib=61.0, gpus=1),
        on_demand={"us-east-1": 3.06, "us-east-2": 3.06, "us-west-2": 3.06},
        spot={
            "us-east-1a": 1.8041, "us-east-1c": 1.7214, "us-east-1d": 1.3105, "us-east-1f": 2.1311,
            "us-east-2a": 1.3539, "us-east-2b": 1.6818,
            "us-west-2a": 0.9503, "us-west-2b": 1.0124, "us-west-2c": 0.9747,
        },
    ),
    "p3.16xlarge": Ec2Type(
        shape=InstanceShape(vcpus=64, memory_gib=488.0, gpus=8),
        on_demand={"us-east-1": 24.48, "us-east-2": 24.48, "us-west-2": 24.48},
        spot={
            "us-east-1a": 17.1149, "us-east-1c": 8.1397, "us-east-1d": 8.2624, "us-east-1f": 8.6074,
            "us-east-2a": 7.344, "us-east-2b": 7.344,
            "us-west-2a": 9.2943, "us-west-2b": 9.5341, "us-west-2c": 9.7269,
        },
    ),
}  # fmt: skip

#: (GPU, GPUs per instance) of a trace file's name -> the EC2 type measured.
GPU_TYPES: Final[Mapping[tuple[str, int], str]] = {
    ("k80", 1): "p2.xlarge",
    ("k80", 8): "p2.8xlarge",
    ("v100", 1): "p3.2xlarge",
    ("v100", 8): "p3.16xlarge",
}

_NAME: Final = re.compile(
    r"^(?P<preemption>preemption_)?(?P<zone>(?P<region>[a-z]{2}(?:-[a-z]+)+-\d+)[a-z])_(?P<gpu>[a-z0-9]+)_(?P<count>\d+)$"
)
_FORMAT: Final = '{"metadata": {"gap_seconds": N}, "data": [0, 1, ...]}'


@attrs.frozen(kw_only=True, eq=False)
class _File:
    """One trace file, read and checked."""

    path: Path
    pool: Pool
    gap: int
    start: datetime
    data: IntSeries
    prices: FloatSeries | None


def _known() -> str:
    return ", ".join(f"{gpu}_{n} ({t})" for (gpu, n), t in GPU_TYPES.items())


def _pool_of_name(path: Path) -> tuple[Pool, bool]:
    """The pool a file's name says, and whether it is a preemption file."""
    match = _NAME.match(path.stem)
    if match is None:
        raise ConfigError(
            f"spot trace {path}: the name is neither <zone>_<gpu>_<count>.json nor "
            "preemption_<zone>_<gpu>_<count>.json (e.g. us-west-2a_k80_1.json); rename it or pass pool="
        )
    key = (match["gpu"], int(match["count"]))
    if key not in GPU_TYPES:
        raise ConfigError(
            f"spot trace {path}: no EC2 type for {key[0]} x {key[1]} (known: {_known()}); pass pool="
        )
    pool = Pool(cloud=Cloud.AWS, region=match["region"], zone=match["zone"], instance_type=GPU_TYPES[key])
    return pool, match["preemption"] is not None


def _load_json(path: Path) -> object:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"spot trace {path} does not exist: check the path") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"spot trace {path} cannot be read: {exc}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"spot trace {path} is not JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}); "
            f"expected {_FORMAT}"
        ) from None


def _counts(path: Path, value: object) -> IntSeries:
    if not isinstance(value, list) or not value:
        raise ConfigError(f"spot trace {path}: 'data' must be a non-empty list of counts; expected {_FORMAT}")
    bad = next((i for i, v in enumerate(value) if type(v) is not int or v < 0), None)
    if bad is not None:
        raise ConfigError(
            f"spot trace {path}: tick {bad} of 'data' is {value[bad]!r}, not a count of instances "
            "(0, 1, ...): fix or re-download the file"
        )
    return np.asarray(value, dtype=np.int64)


def _prices(path: Path, value: object, ticks: int) -> FloatSeries:
    if not (
        isinstance(value, list)
        and len(value) == ticks
        and all(type(v) in (int, float) and math.isfinite(v) and v > 0 for v in value)
    ):
        raise ConfigError(
            f"spot trace {path}: 'prices' must be {ticks} positive numbers (one per tick of 'data'); "
            "fix the file or load it with file_prices=False"
        )
    return np.asarray(value, dtype=np.float64)


def _read(path: PathLike, pool: Pool | None, *, file_prices: bool) -> _File:
    where = Path(path)
    doc = _load_json(where)
    named, preemption = (pool, where.stem.startswith("preemption_")) if pool else _pool_of_name(where)
    if named.zone is None or named.cloud is not Cloud.AWS:
        raise ConfigError(f"spot trace {where}: the pool must be a zonal AWS pool, got {named}")
    metadata = doc.get("metadata") if isinstance(doc, dict) else None
    gap = metadata.get("gap_seconds") if isinstance(metadata, dict) else None
    if not isinstance(doc, dict) or type(gap) is not int or gap <= 0:
        raise ConfigError(f"spot trace {where}: no positive integer metadata.gap_seconds; expected {_FORMAT}")
    data = _counts(where, doc.get("data"))
    prices = _prices(where, doc["prices"], len(data)) if file_prices and "prices" in doc else None
    return _File(
        path=where,
        pool=named,
        gap=gap,
        start=PREEMPTION_START if preemption else AVAILABILITY_START,
        data=data,
        prices=prices,
    )


def _ec2_type(file: _File) -> Ec2Type:
    known = EC2_TYPES.get(file.pool.instance_type)
    if known is None:
        raise ConfigError(
            f"spot trace {file.path}: no prices or shape for {file.pool.instance_type}; "
            f"use one of {', '.join(EC2_TYPES)}"
        )
    return known


def _build(files: Sequence[_File], *, capacity: int, start: datetime | None, name: str) -> Trace:
    if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
        raise ConfigError(
            f"capacity is the instances a pool offers when spot is obtainable (>= 1), got {capacity!r}"
        )
    gaps: dict[int, list[str]] = {}
    for file in files:
        gaps.setdefault(file.gap, []).append(file.path.name)
    if len(gaps) > 1:
        said = "; ".join(f"{gap} s: {', '.join(names)}" for gap, names in sorted(gaps.items()))
        raise ConfigError(
            f"spot traces with different tick lengths ({said}) cannot share a trace: they were not "
            "measured together; load each kind on its own (e.g. pattern='preemption_*.json')"
        )
    lengths = {len(f.data) for f in files}
    if len(lengths) > 1:
        said = ", ".join(f"{f.path.name}: {len(f.data)}" for f in files)
        raise ConfigError(f"spot traces of one trace must have as many ticks each; got {said}")
    starts = {f.start for f in files}
    if start is None and len(starts) > 1:
        raise ConfigError(
            "the spot traces start on different dates (availability and preemption files): pass start="
        )
    series: dict[Pool, PoolSeries] = {}
    on_demand: dict[tuple[str, str], OnDemandPrice] = {}
    shapes: dict[str, InstanceShape] = {}
    for file in files:
        pool = file.pool
        assert pool.zone is not None
        if pool in series:
            raise ConfigError(f"spot trace {file.path}: another file of this trace is pool {pool} too")
        known = _ec2_type(file)
        od = known.on_demand.get(pool.region)
        spot = known.spot_price(pool.zone, pool.region)
        if od is None or spot is None:
            raise ConfigError(
                f"spot trace {file.path}: no price for {pool.instance_type} in {pool.region} "
                f"(regions with prices: {', '.join(sorted(known.on_demand))})"
            )
        prices = file.prices if file.prices is not None else np.full(len(file.data), spot)
        series[pool] = PoolSeries(pool=pool, available=np.where(file.data > 0, capacity, 0), price=prices)
        on_demand[(pool.region, pool.instance_type)] = OnDemandPrice(
            region=pool.region, instance_type=pool.instance_type, price=od
        )
        shapes[pool.instance_type] = known.shape
    prices_od = tuple(on_demand[k] for k in sorted(on_demand))
    return Trace(
        name=name,
        cloud=Cloud.AWS,
        start=ensure_utc(start) if start is not None else starts.pop(),
        step=timedelta(seconds=files[0].gap),
        spot=series,
        on_demand=prices_od,
        shapes=shapes,
    )


def load_spot_trace(
    path: PathLike,
    *,
    pool: Pool | None = None,
    capacity: int = DEFAULT_CAPACITY,
    start: datetime | None = None,
    file_prices: bool = False,
    name: str | None = None,
) -> Trace:
    """One trace file as a one-pool trace (see the module docstring).

    ``pool``: the pool the file measured, instead of the one its name says (its type must be in
    :data:`EC2_TYPES`). ``capacity``: instances the pool offers at a tick where spot is
    obtainable. ``start``: the first tick's time (default: the data set's start for the file's
    kind). ``file_prices``: use the file's ``prices`` list where it has one. ``name``: the trace's
    name (default: the file's stem).
    """
    file = _read(path, pool, file_prices=file_prices)
    return _build([file], capacity=capacity, start=start, name=name or file.path.stem)


def load_spot_traces(
    source: PathLike | Iterable[PathLike],
    *,
    capacity: int = DEFAULT_CAPACITY,
    start: datetime | None = None,
    file_prices: bool = False,
    pattern: str = "*.json",
    name: str | None = None,
) -> Trace:
    """Several trace files (or every file of a directory matching ``pattern``) as one trace.

    Each file is one pool, named by its file name; the files must have the same tick length and
    number of ticks. The other arguments are those of :func:`load_spot_trace`. The default name is
    the directory's, or the files' stems joined by ``+``.
    """
    if isinstance(source, str | os.PathLike):
        directory = Path(source)
        if not directory.is_dir():
            return load_spot_trace(
                directory, capacity=capacity, start=start, file_prices=file_prices, name=name
            )
        paths = sorted(directory.glob(pattern))
        if not paths:
            raise ConfigError(f"no spot trace in {directory} matches {pattern!r}")
        default = directory.name
    else:
        paths = [Path(p) for p in source]
        if not paths:
            raise ConfigError("load_spot_traces needs at least one file")
        default = "+".join(p.stem for p in paths)
    files = [_read(p, None, file_prices=file_prices) for p in paths]
    return _build(files, capacity=capacity, start=start, name=name or default)
