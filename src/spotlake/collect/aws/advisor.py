"""Interruption frequency per (region, instance type) from the public Spot Instance Advisor document.

The advisor publishes one JSON document (``url``, by default :data:`DEFAULT_ADVISOR_URL`; point it
at a mirror or a test server)::

    {"ranges": [{"index": 0, "label": "<5%", "dots": 0, "max": 5}, ..., {"index": 4, "label": ">20%", ...}],
     "spot_advisor": {"us-east-1": {"Linux": {"m5.large": {"s": 70, "r": 1}, ...}, "Windows": {...}}, ...},
     "instance_types": {"m5.large": {"emr": true, "cores": 2, "ram_gb": 8.0}, ...}}

``r`` indexes ``ranges`` and ``s`` is the saving over on-demand in percent. The Linux entries become
:data:`~spotlake.model.EVICTION_SCHEMA` rows with Azure's buckets: each range's *label* (never its
position) names the bucket (``<5%`` -> ``0-5``, ``5-10%`` -> ``5-10``, ``10-15%`` -> ``10-15``,
``15-20%`` -> ``15-20``, ``>20%`` -> ``20+``; :data:`RANGE_BUCKETS`), and the IF score is
:func:`spotlake.model.if_score` of the bucket. A label not in that table is kept as the bucket with a
NaN score; an ``r`` that indexes no range leaves the bucket ``<NA>`` (NaN score); both are noted in
the report.

The document is fetched over httpx (injectable ``transport``) with the collectors' retry policy
(:func:`spotlake.collect._paging.fetch_json`: 429/5xx/timeouts/undecodable bodies, tenacity on the
injected clock): one unit of work. A document missing the keys above, or of another shape, is drift:
:class:`~spotlake.errors.PayloadError` naming the source and the key (raised unless
``allow_partial``, which returns an empty frame with the failure in the report).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Final

import attrs
import httpx
import pandas as pd

from spotlake.clock import Clock, SystemClock
from spotlake.collect._paging import Attempts, as_int, fetch_json
from spotlake.collect.aws._boto import positive, region_names
from spotlake.collect.base import CollectResult, Failure, ReportBuilder, run_sync
from spotlake.collect.http import Backoff
from spotlake.errors import CollectError, ConfigError, PayloadError
from spotlake.model import EVICTION_SCHEMA, Source, conform, empty_frame, if_score

__all__ = [
    "ADVISOR_OS",
    "DEFAULT_ADVISOR_URL",
    "RANGE_BUCKETS",
    "SpotAdvisorCollector",
    "advisor_frame",
    "bucket_of_label",
]

SOURCE: Final = Source.AWS_ADVISOR

#: Where AWS publishes the Spot Instance Advisor's data.
DEFAULT_ADVISOR_URL: Final = "https://spot-bid-advisor.s3.amazonaws.com/spot-advisor-data.json"

#: The operating system whose entries are collected (the others, e.g. Windows, are ignored).
ADVISOR_OS: Final = "Linux"

#: The advisor's interruption-range labels -> spotlake's eviction buckets (Azure's).
RANGE_BUCKETS: Final[Mapping[str, str]] = {
    "<5%": "0-5",
    "5-10%": "5-10",
    "10-15%": "10-15",
    "15-20%": "15-20",
    ">20%": "20+",
}

_WHAT: Final = "the Spot Instance Advisor document"


def bucket_of_label(label: str) -> str | None:
    """The eviction bucket of a range label (spaces ignored: ``"< 5%"`` is ``"<5%"``), else ``None``."""
    return RANGE_BUCKETS.get("".join(label.split()))


def _mapping(value: object, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise PayloadError(
            f"{SOURCE}: {_WHAT} changed shape: {what} is {type(value).__name__}, expected an object",
            source=SOURCE,
        )
    return value


def _ranges(document: Mapping[str, Any]) -> dict[int, str]:
    ranges = document.get("ranges")
    if not isinstance(ranges, list) or not ranges:
        raise PayloadError(
            f"{SOURCE}: {_WHAT} changed shape: 'ranges' is missing or not a list of ranges", source=SOURCE
        )
    labels: dict[int, str] = {}
    for i, item in enumerate(ranges):
        entry = _mapping(item, f"ranges[{i}]")
        index, label = as_int(entry.get("index")), entry.get("label")
        if index is None or not isinstance(label, str) or not label.strip():
            raise PayloadError(
                f"{SOURCE}: {_WHAT} changed shape: ranges[{i}] lacks an integer 'index' or a 'label'",
                source=SOURCE,
            )
        if index in labels:
            raise PayloadError(f"{SOURCE}: {_WHAT} lists range index {index} twice", source=SOURCE)
        labels[index] = label.strip()
    return labels


def advisor_frame(document: object, *, regions: tuple[str, ...] = ()) -> tuple[pd.DataFrame, list[str]]:
    """The advisor document -> an :data:`~spotlake.model.EVICTION_SCHEMA` frame of its Linux entries
    (only ``regions`` when given) and notes. Raises :class:`PayloadError` when the document lacks
    ``ranges`` or ``spot_advisor`` or they are not the documented shape."""
    doc = _mapping(document, "the document")
    labels = _ranges(doc)
    advisor = doc.get("spot_advisor")
    if not isinstance(advisor, Mapping):
        raise PayloadError(
            f"{SOURCE}: {_WHAT} changed shape: 'spot_advisor' is missing or not an object", source=SOURCE
        )
    rows: list[tuple[str, str, str | None, float]] = []
    no_linux: list[str] = []
    unknown_labels: dict[str, int] = {}
    unknown_index: dict[str, int] = {}
    wanted = set(regions)
    seen: set[str] = set()
    for region_key, by_os in advisor.items():
        region = str(region_key).strip()
        if wanted and region not in wanted:
            continue
        seen.add(region)
        linux = _mapping(by_os, f"spot_advisor[{region!r}]").get(ADVISOR_OS)
        if linux is None:
            no_linux.append(region)
            continue
        for size_key, entry in _mapping(linux, f"spot_advisor[{region!r}][{ADVISOR_OS!r}]").items():
            raw = entry.get("r") if isinstance(entry, Mapping) else None
            index = as_int(raw)
            label = labels.get(index) if index is not None else None
            if label is None:
                unknown_index[repr(raw)] = unknown_index.get(repr(raw), 0) + 1
                rows.append((region, str(size_key).strip(), None, math.nan))
                continue
            bucket = bucket_of_label(label)
            if bucket is None:
                unknown_labels[label] = unknown_labels.get(label, 0) + 1
                bucket = label
            rows.append((region, str(size_key).strip(), bucket, if_score(bucket)))
    notes: list[str] = []
    if no_linux:
        notes.append(
            f"{len(no_linux)} region(s) without {ADVISOR_OS} entries: {', '.join(sorted(no_linux)[:5])}"
        )
    for label, n in sorted(unknown_labels.items()):
        notes.append(f"{n} entries in range {label!r}, which is not a known bucket: kept as is, IF score NaN")
    for raw, n in sorted(unknown_index.items()):
        notes.append(f"{n} entries with range index {raw}, which no range has: bucket <NA>, IF score NaN")
    missing = sorted(wanted - seen)
    if missing:
        notes.append(f"{len(missing)} region(s) asked for are not in the document: {', '.join(missing[:5])}")
    return _frame(rows), notes


def _frame(rows: list[tuple[str, str, str | None, float]]) -> pd.DataFrame:
    if not rows:
        return empty_frame(EVICTION_SCHEMA)
    frame = pd.DataFrame(rows, columns=list(EVICTION_SCHEMA))
    frame = frame.drop_duplicates(["region", "size"], keep="last")
    frame = frame.sort_values(["region", "size"], kind="stable").reset_index(drop=True)
    return conform(frame, EVICTION_SCHEMA, source=SOURCE)


def _http_url(_inst: object, _attr: attrs.Attribute[str], value: str) -> None:
    try:
        url = httpx.URL(value)
    except (httpx.InvalidURL, TypeError) as exc:
        raise ConfigError(f"SpotAdvisorCollector: url {value!r} is not a URL: {exc}") from exc
    if url.scheme not in ("http", "https") or not url.host:
        raise ConfigError(f"SpotAdvisorCollector: url must be an http(s) URL with a host, got {value!r}")


@attrs.define(kw_only=True)
class SpotAdvisorCollector:
    """Collects the Spot Instance Advisor's Linux interruption ranges into
    :data:`~spotlake.model.EVICTION_SCHEMA` (``aws_advisor``). See the module docstring.

    ``regions`` keeps only those regions (empty: every region of the document); ``transport`` is
    httpx's (a ``MockTransport`` in tests); ``max_attempts`` the tries of the one request.
    """

    source: Source = attrs.field(default=SOURCE, init=False)
    url: str = attrs.field(default=DEFAULT_ADVISOR_URL, validator=_http_url)
    regions: tuple[str, ...] = attrs.field(default=(), converter=region_names)
    transport: httpx.AsyncBaseTransport | None = None
    clock: Clock = attrs.field(factory=SystemClock)
    max_attempts: int = attrs.field(default=6, validator=positive)
    backoff: Backoff = attrs.field(factory=Backoff)
    timeout: float = 60.0
    allow_partial: bool = False

    async def acollect(self) -> CollectResult:
        """Fetch and map the document; see the module docstring."""
        report = ReportBuilder(source=SOURCE, started_at=self.clock.now(), planned=1)
        tries = Attempts()
        body: Any = None
        async with httpx.AsyncClient(transport=self.transport, timeout=httpx.Timeout(self.timeout)) as client:

            async def request() -> httpx.Request:
                return client.build_request("GET", self.url)

            try:
                body = await fetch_json(
                    client,
                    request,
                    source=SOURCE,
                    what=_WHAT,
                    report=report,
                    clock=self.clock,
                    max_attempts=self.max_attempts,
                    backoff=self.backoff,
                    attempts=tries,
                )
            except CollectError as exc:
                report.failures.append(
                    Failure(what=_WHAT, reason=str(exc), status=exc.status, attempts=tries.count)
                )
        frame = empty_frame(EVICTION_SCHEMA)
        drift: PayloadError | None = None
        if not report.failures:
            try:
                frame, notes = advisor_frame(body, regions=self.regions)
            except PayloadError as exc:
                drift = exc
                report.failures.append(Failure(what=_WHAT, reason=str(exc), attempts=tries.count))
            else:
                report.succeeded += 1
                report.notes.extend(notes)
        done = report.build(rows=len(frame), at=self.clock.now())
        if not self.allow_partial:
            if drift is not None:
                raise drift
            done.require_complete("Spot Instance Advisor data")
        return CollectResult(frame=frame, report=done)

    def collect(self) -> CollectResult:
        """Blocking facade over :meth:`acollect`."""
        return run_sync(self.acollect())
