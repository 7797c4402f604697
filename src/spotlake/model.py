"""Value objects and frame schemas shared by every part of spotlake.

The collectors, the scoring engine, the stores and the allocator exchange pandas frames whose
columns and dtypes are fixed here, so each part can be written and tested on its own. Missing data
is ``<NA>``/``NaN`` (never ``-1`` or ``"N/A"``). Region names are Azure ARM names (``eastus``);
size names keep Azure's case exactly (``Standard_DC2as_v5``).

Schemas (column -> pandas dtype):

``PRICES_SCHEMA`` (one row per (region, size) with a Linux price)
    region, region_name, size, ondemand_price, spot_price, savings_pct
``SPS_SCHEMA`` (one row per score returned by the Spot Placement Scores API)
    size, region, zone (``<NA>`` for a regional request), desired_count, score (the API's string,
    unknown strings kept), score_value (High=3, Medium=2, Low=1, else ``<NA>``), quota_available
``EVICTION_SCHEMA`` (one row per (region, size) in Resource Graph's SpotResources)
    region, size, eviction_bucket ("0-5" ... "20+", unknown kept), if_score (3.0 ... 1.0, else NaN)
``SKUS_SCHEMA`` (one row per (size, region) from the Compute SKUs API)
    size, region, family, vcpus, memory_gib, zones ("1,2,3" or ``<NA>``), restricted, restriction
``SNAPSHOT_SCHEMA`` (the merged frame of one run; key: size, region, zone, desired_count)
    SPS columns, prices, eviction, family, T2/T3 and the observation time. Rows without an SPS
    partner (a price with no score) are kept with ``<NA>`` SPS columns.
AWS sources reuse the shapes above where the meaning is the same: ``aws_sps`` rows are
``SPS_SCHEMA`` (size = instance type, zone = availability-zone ID such as ``use1-az1``,
desired_count = target capacity, score = the API's integer as a string, score_value 1 ... 10,
quota_available ``<NA>``); ``aws_advisor`` rows are ``EVICTION_SCHEMA`` (the Spot Instance
Advisor's interruption range mapped to the same buckets). Three are AWS's own:

``AWS_SPOT_PRICES_SCHEMA`` (one row per (instance type, zone) with a Linux/UNIX spot price)
    size, region, zone (zone ID), spot_price, price_at (when AWS set that price)
``AWS_ONDEMAND_SCHEMA`` (one row per (instance type, region) from the Pricing API)
    size, region, ondemand_price
``AWS_TYPES_SCHEMA`` (one row per (instance type, zone) offered)
    size, region, zone (zone ID), family (``m5`` for ``m5.large``), vcpus, memory_gib
``CHANGES_SCHEMA`` (what goes to the time-series sink): the snapshot columns plus ``change``
    (a :class:`ChangeKind`: "new", "changed", "ceased" or "expired") and ``changed_fields``
    (comma-separated value columns).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from enum import StrEnum
from typing import Final

import attrs
import pandas as pd

from spotlake.errors import ConfigError, PayloadError

__all__ = [
    "AWS_ONDEMAND_SCHEMA",
    "AWS_SCORES",
    "AWS_SPOT_PRICES_SCHEMA",
    "AWS_TYPES_SCHEMA",
    "AZURE_SCORES",
    "CHANGES_SCHEMA",
    "CHANGE_KINDS",
    "DESIRED_COUNTS",
    "EVICTION_BUCKETS",
    "EVICTION_SCHEMA",
    "KNOWN_SCORES",
    "PRICES_SCHEMA",
    "SCORE_VALUES",
    "SKUS_SCHEMA",
    "SNAPSHOT_KEY",
    "SNAPSHOT_SCHEMA",
    "SPS_SCHEMA",
    "ChangeKind",
    "Cloud",
    "ScoreScale",
    "Secret",
    "Source",
    "SpsCall",
    "conform",
    "empty_frame",
    "if_score",
    "score_value",
]

# --- Clouds and sources ----------------------------------------------------------------------


class Cloud(StrEnum):
    """A cloud spotlake collects from and allocates on."""

    AWS = "aws"
    AZURE = "azure"


class Source(StrEnum):
    """A collected source: each has a collector, a raw frame schema and a place in the store."""

    PRICES = "prices"
    SPS = "sps"
    EVICTION = "eviction"
    SKUS = "skus"
    AWS_SPS = "aws_sps"
    AWS_SPOT_PRICES = "aws_spot_prices"
    AWS_ONDEMAND = "aws_ondemand"
    AWS_TYPES = "aws_types"
    AWS_ADVISOR = "aws_advisor"


# --- Spot Placement Scores -------------------------------------------------------------------

#: Score strings the SPS API documents. Others may appear (schema drift) and are kept as-is.
KNOWN_SCORES: Final = ("High", "Medium", "Low", "DataNotFoundOrStale", "RestrictedSkuNotAvailable")

#: Numeric value of a score; every other string has no numeric value (``<NA>``).
SCORE_VALUES: Final[Mapping[str, int]] = {"High": 3, "Medium": 2, "Low": 1}


@attrs.frozen(kw_only=True)
class ScoreScale:
    """A cloud's placement-score scale and where T2 and T3 sit on it (docs/data-model.md).

    T3 of a cell is the largest desired count up to which every observed count scored at least
    ``t3_at``; T2 the same with ``t2_at``. Azure scores High/Medium/Low (3/2/1): T3 means High and
    T2 Medium or better. AWS scores 1 ... 10; one instance type per query (spotlake.collect.aws.plan)
    keeps scores low, and the original system put T3 at 3 and T2 at 2 on that scale, so spotlake
    does too: an AWS T3 of 20 means what it meant in the original's time series.
    """

    cloud: Cloud
    lowest: int
    highest: int
    t2_at: int
    t3_at: int

    def __attrs_post_init__(self) -> None:
        if not self.lowest <= self.t2_at <= self.t3_at <= self.highest:
            raise ConfigError(
                f"score scale {self.cloud}: need lowest <= t2_at <= t3_at <= highest, got "
                f"{self.lowest} <= {self.t2_at} <= {self.t3_at} <= {self.highest}"
            )


#: Azure's Spot Placement Scores: Low=1, Medium=2, High=3.
AZURE_SCORES: Final = ScoreScale(cloud=Cloud.AZURE, lowest=1, highest=3, t2_at=2, t3_at=3)
#: EC2 spot placement scores: 1 ... 10.
AWS_SCORES: Final = ScoreScale(cloud=Cloud.AWS, lowest=1, highest=10, t2_at=2, t3_at=3)

#: The desired-count rotation: one count per 10-minute run, a full cycle every 110 minutes.
DESIRED_COUNTS: Final = (1, 5, 10, 15, 20, 25, 30, 35, 40, 45, 50)

#: Per-call limits of the SPS API.
MAX_SPS_REGIONS: Final = 8
MAX_SPS_SIZES: Final = 5
#: Re-plans spent searching for fewer SPS calls when the day's plan is rebuilt (once a UTC day):
#: ~7 s at 60 regions x 800 sizes for 0.2-0.9 % fewer calls on every run of the day (docs/planner.md).
DEFAULT_PLAN_SEARCH: Final = 20


def score_value(score: str | None) -> int | None:
    """High=3, Medium=2, Low=1; anything else (including unknown strings) has no score."""
    if score is None:
        return None
    return SCORE_VALUES.get(score)


# --- Eviction rate ---------------------------------------------------------------------------

#: Eviction-rate buckets (percent) and the original system's IF score (higher = more stable).
EVICTION_BUCKETS: Final[Mapping[str, float]] = {
    "0-5": 3.0,
    "5-10": 2.5,
    "10-15": 2.0,
    "15-20": 1.5,
    "20+": 1.0,
}


def if_score(bucket: str | None) -> float:
    """IF score of an eviction bucket; NaN for a missing or unknown bucket (kept, not guessed)."""
    if bucket is None:
        return math.nan
    return EVICTION_BUCKETS.get(bucket.strip(), math.nan)


# --- SPS calls -------------------------------------------------------------------------------


def _check_names(
    kind: str, limit: int
) -> Callable[[object, attrs.Attribute[tuple[str, ...]], tuple[str, ...]], None]:
    def check(_inst: object, _attr: attrs.Attribute[tuple[str, ...]], value: tuple[str, ...]) -> None:
        if not value:
            raise ConfigError(f"an SPS call needs at least one {kind}")
        if len(value) > limit:
            raise ConfigError(f"an SPS call takes at most {limit} {kind}s, got {len(value)}: {list(value)}")
        if len(set(value)) != len(value):
            raise ConfigError(f"an SPS call lists a {kind} twice: {list(value)}")

    return check


def _str_tuple(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(str(v) for v in values)


@attrs.frozen(kw_only=True)
class SpsCall:
    """One Spot Placement Scores request: every size in ``sizes`` scored in every region of ``regions``.

    The desired count and zonal/regional mode are chosen per run, not per call.
    """

    regions: tuple[str, ...] = attrs.field(
        converter=_str_tuple, validator=_check_names("region", MAX_SPS_REGIONS)
    )
    sizes: tuple[str, ...] = attrs.field(converter=_str_tuple, validator=_check_names("size", MAX_SPS_SIZES))

    @property
    def cells(self) -> int:
        """Number of (region, size) cells this call scores."""
        return len(self.regions) * len(self.sizes)

    def pairs(self) -> set[tuple[str, str]]:
        """The (region, size) pairs this call covers."""
        return {(r, s) for r in self.regions for s in self.sizes}


# --- Secrets ---------------------------------------------------------------------------------


class Secret:
    """A secret string that never shows itself: ``repr``/``str``/f-strings print ``Secret('***')``.

    Call :meth:`reveal` at the single place that must send it (an HTTP header, an SDK argument).
    Deliberately not an attrs class: ``attrs.asdict`` of a value holding a Secret must not recurse
    into it and copy the plain text out.
    """

    __slots__ = ("_value",)
    _value: str

    def __init__(self, value: str) -> None:
        object.__setattr__(self, "_value", value)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("spotlake.model.Secret is immutable")

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", self._value))

    def __bool__(self) -> bool:
        return bool(self._value)

    def __reduce__(self) -> str:
        # Refuse pickling so a secret cannot end up in a file by accident.
        raise TypeError("spotlake.model.Secret cannot be pickled")


# --- Frame schemas ---------------------------------------------------------------------------

Schema = Mapping[str, str]

PRICES_SCHEMA: Final[Schema] = {
    "region": "string",
    "region_name": "string",
    "size": "string",
    "ondemand_price": "float64",
    "spot_price": "float64",
    "savings_pct": "float64",
}

SPS_SCHEMA: Final[Schema] = {
    "size": "string",
    "region": "string",
    "zone": "string",
    "desired_count": "int64",
    "score": "string",
    "score_value": "Int8",
    "quota_available": "boolean",
}

EVICTION_SCHEMA: Final[Schema] = {
    "region": "string",
    "size": "string",
    "eviction_bucket": "string",
    "if_score": "float64",
}

SKUS_SCHEMA: Final[Schema] = {
    "size": "string",
    "region": "string",
    "family": "string",
    "vcpus": "Int64",
    "memory_gib": "float64",
    "zones": "string",
    "restricted": "boolean",
    "restriction": "string",
}

AWS_SPOT_PRICES_SCHEMA: Final[Schema] = {
    "size": "string",
    "region": "string",
    "zone": "string",
    "spot_price": "float64",
    "price_at": "datetime64[us, UTC]",
}

AWS_ONDEMAND_SCHEMA: Final[Schema] = {
    "size": "string",
    "region": "string",
    "ondemand_price": "float64",
}

AWS_TYPES_SCHEMA: Final[Schema] = {
    "size": "string",
    "region": "string",
    "zone": "string",
    "family": "string",
    "vcpus": "Int64",
    "memory_gib": "float64",
}

#: Key of a snapshot/changeset row.
SNAPSHOT_KEY: Final = ("size", "region", "zone", "desired_count")

SNAPSHOT_SCHEMA: Final[Schema] = {
    "size": "string",
    "region": "string",
    "zone": "string",
    "desired_count": "Int64",
    "region_name": "string",
    "family": "string",
    "score": "string",
    "score_value": "Int8",
    "quota_available": "boolean",
    "ondemand_price": "float64",
    "spot_price": "float64",
    "savings_pct": "float64",
    "eviction_bucket": "string",
    "if_score": "float64",
    "t2": "Int64",
    "t3": "Int64",
    "observed_at": "datetime64[us, UTC]",
}


class ChangeKind(StrEnum):
    """What happened to a key between two runs (the ``change`` column of a changeset)."""

    NEW = "new"
    CHANGED = "changed"
    #: The offering is gone: the API stopped answering the key, or its pair left the support set.
    CEASED = "ceased"
    #: Not observed for longer than the history's max age (e.g. its calls kept failing): no longer
    #: current, but not known to be gone.
    EXPIRED = "expired"


#: Change kinds in a changeset, in order.
CHANGE_KINDS: Final = tuple(k.value for k in ChangeKind)

CHANGES_SCHEMA: Final[Schema] = {
    **SNAPSHOT_SCHEMA,
    "change": "string",
    "changed_fields": "string",
}


def empty_frame(schema: Schema) -> pd.DataFrame:
    """A zero-row frame with exactly the schema's columns and dtypes."""
    return pd.DataFrame({col: pd.Series([], dtype=dtype) for col, dtype in schema.items()})


def conform(frame: pd.DataFrame, schema: Schema, *, source: str) -> pd.DataFrame:
    """Return ``frame`` with exactly the schema's columns, in order, cast to the schema's dtypes.

    Raises :class:`PayloadError` naming ``source`` and the column when a column is missing or a
    value cannot be cast (so a drifted payload becomes a clear error, not a KeyError downstream).
    """
    missing = [c for c in schema if c not in frame.columns]
    if missing:
        raise PayloadError(f"{source}: frame lacks columns {missing}", source=source)
    # Positional, not label, alignment: a sorted or filtered frame keeps its row order and values.
    frame = frame.reset_index(drop=True)
    out: dict[str, pd.Series] = {}
    for col, dtype in schema.items():
        try:
            out[col] = frame[col].astype(pd.api.types.pandas_dtype(dtype))
        except (TypeError, ValueError) as exc:
            raise PayloadError(
                f"{source}: column {col!r} cannot be read as {dtype}: {exc}", source=source
            ) from exc
    return pd.DataFrame(out, index=pd.RangeIndex(len(frame)))
