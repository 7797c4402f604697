"""The Spot Placement Scores API's wire format: a request's body, and an answer as a typed frame.

Pure: no I/O. :func:`parse_scores` is what :class:`~spotlake.collect.sps.SpsCollector` applies to
every answer; a body of the wrong shape is a :class:`~spotlake.errors.PayloadError` naming what is
wrong, unknown score strings are kept (their ``score_value`` is ``<NA>``), a missing
``availabilityZone`` is ``<NA>`` (a regional score).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from spotlake.errors import PayloadError
from spotlake.model import SCORE_VALUES, SPS_SCHEMA, Source, conform

__all__ = ["Rows", "empty_rows", "parse_scores", "request_body", "rows_frame", "scores_rows"]

SOURCE = Source.SPS

#: An answer's rows as column lists (size, region, zone, score, quota_available).
Rows = dict[str, list[Any]]


def request_body(
    regions: Sequence[str], sizes: Sequence[str], *, desired_count: int, zonal: bool
) -> dict[str, Any]:
    """The JSON body of one SPS request."""
    return {
        "desiredLocations": list(regions),
        "desiredSizes": [{"sku": size} for size in sizes],
        "desiredCount": desired_count,
        "availabilityZones": zonal,
    }


def empty_rows() -> Rows:
    return {"size": [], "region": [], "zone": [], "score": [], "quota_available": []}


def scores_rows(body: object, *, what: str) -> Rows:
    """Validate an SPS answer and return its rows as column lists. Raises :class:`PayloadError`."""

    def bad(detail: str) -> PayloadError:
        return PayloadError(f"{SOURCE}: {what} returned an unexpected body: {detail}", source=SOURCE)

    if not isinstance(body, dict):
        raise bad(f"expected a JSON object, got {type(body).__name__}")
    items = body.get("placementScores")
    if not isinstance(items, list):
        raise bad("'placementScores' is missing or not a list")
    rows = empty_rows()
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise bad(f"placementScores[{i}] is {type(item).__name__}, not an object")
        sku, region, score = item.get("sku"), item.get("region"), item.get("score")
        for name, value in (("sku", sku), ("region", region), ("score", score)):
            if not isinstance(value, str) or not value:
                raise bad(f"placementScores[{i}].{name} is missing or not a non-empty string")
        zone = item.get("availabilityZone")
        if isinstance(zone, bool) or not (zone is None or isinstance(zone, str | int)):
            raise bad(f"placementScores[{i}].availabilityZone is {type(zone).__name__}")
        quota = item.get("isQuotaAvailable")
        if quota is not None and not isinstance(quota, bool):
            raise bad(f"placementScores[{i}].isQuotaAvailable is {type(quota).__name__}, not a boolean")
        rows["size"].append(sku)
        rows["region"].append(region)
        rows["zone"].append(None if zone is None or zone == "" else str(zone))
        rows["score"].append(score)
        rows["quota_available"].append(quota)
    return rows


def rows_frame(rows: Rows, desired_count: int) -> pd.DataFrame:
    """Rows of one or more answers as a frame with :data:`SPS_SCHEMA` at ``desired_count``."""
    frame = pd.DataFrame(
        {
            "size": pd.Series(rows["size"], dtype="string"),
            "region": pd.Series(rows["region"], dtype="string"),
            "zone": pd.Series(rows["zone"], dtype="string"),
            "score": pd.Series(rows["score"], dtype="string"),
            "quota_available": pd.Series(rows["quota_available"], dtype="boolean"),
        }
    )
    frame["desired_count"] = desired_count
    # Unknown score strings map to <NA>: kept as text, never guessed.
    frame["score_value"] = frame["score"].map(dict(SCORE_VALUES)).astype(pd.api.types.pandas_dtype("Int8"))
    return conform(frame, SPS_SCHEMA, source=SOURCE)


def parse_scores(body: object, *, desired_count: int, what: str = "an SPS call") -> pd.DataFrame:
    """An SPS answer as a frame with :data:`SPS_SCHEMA`, or :class:`PayloadError` if it has the wrong
    shape. Unknown score strings are kept; a missing ``availabilityZone`` is ``<NA>``."""
    return rows_frame(scores_rows(body, what=what), desired_count)
