"""Shard parts: what each worker of a sharded run collected, until one worker commits the run.

A part is two objects under ``shards/{run}/``: the SPS frame (``part-{i}-of-{n}.parquet``) and a
JSON document (``part-{i}-of-{n}.json``) written last. The document is the part's commit mark (a
frame without one is ignored) and carries the frame's SHA-256, so a frame and a document left by
two racing reruns of one shard never pair up silently. What the document says is the pipeline's
business (:mod:`spotlake.pipeline.shards`); this module only stores and checks it.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import pandas as pd

from spotlake.errors import CorruptStoreError, SpotlakeError
from spotlake.storage.backend import Backend
from spotlake.storage.base import PartSet
from spotlake.storage.layout import (
    PARTS_PREFIX,
    decode_doc,
    decode_frame,
    encode_doc,
    encode_frame,
    parse_part_name,
    parse_run_dir,
    part_key,
    parts_prefix,
    run_minute,
)

__all__ = ["ShardParts"]

log = logging.getLogger(__name__)

#: Layout version of the envelope around a part's document.
PART_FORMAT = 2


class ShardParts:
    """The shard parts of one store."""

    def __init__(self, backend: Backend) -> None:
        self._backend = backend

    def put(
        self, at: datetime, *, index: int, count: int, doc: Mapping[str, Any], frame: pd.DataFrame
    ) -> None:
        data = encode_frame(frame, what=f"SPS part {index} of {count}")
        envelope = {"format": PART_FORMAT, "frame_sha256": hashlib.sha256(data).hexdigest(), "doc": dict(doc)}
        self._backend.put(part_key(at, index, count, "parquet"), data)
        self._backend.put(
            part_key(at, index, count, "json"), encode_doc(envelope, name=f"part {index}/{count}")
        )

    def doc(self, at: datetime, *, index: int, count: int) -> dict[str, Any] | None:
        envelope = self._envelope(at, index, count)
        return None if envelope is None else dict(envelope["doc"])

    def read(self, at: datetime, *, index: int, count: int) -> tuple[dict[str, Any], pd.DataFrame] | None:
        envelope = self._envelope(at, index, count)
        key = part_key(at, index, count, "parquet")
        data = self._backend.get(key)
        if envelope is None or data is None:
            return None
        if hashlib.sha256(data).hexdigest() != envelope.get("frame_sha256"):
            raise CorruptStoreError(
                f"{self._backend.url}/{key} does not match its document (two runs of shard {index}/{count} "
                "raced); run that shard again to rewrite its part"
            )
        return dict(envelope["doc"]), decode_frame(data, where=f"{self._backend.url}/{key}")

    def _envelope(self, at: datetime, index: int, count: int) -> dict[str, Any] | None:
        key = part_key(at, index, count, "json")
        raw = self._backend.get(key)
        if raw is None:
            return None
        envelope = decode_doc(raw, where=f"{self._backend.url}/{key}")
        if envelope.get("format") != PART_FORMAT or not isinstance(envelope.get("doc"), dict):
            raise CorruptStoreError(
                f"{self._backend.url}/{key} is not a part this spotlake wrote (format "
                f"{envelope.get('format')!r}); run that shard again to rewrite it"
            )
        return envelope

    def sets(self, at: datetime | None = None) -> list[PartSet]:
        runs = (
            [parts_prefix(at)[len(PARTS_PREFIX) :]]
            if at is not None
            else sorted(self._backend.children(PARTS_PREFIX))
        )
        out: list[PartSet] = []
        for run in runs:
            when = parse_run_dir(run)
            if when is None:
                continue
            by_count: dict[int, set[int]] = {}
            for name in self._backend.children(PARTS_PREFIX + run.rstrip("/") + "/"):
                parsed = parse_part_name(name)
                if parsed is not None and parsed[2] == "json" and parsed[0] < parsed[1]:
                    by_count.setdefault(parsed[1], set()).add(parsed[0])
            out.extend(
                PartSet(at=when, count=count, present=tuple(sorted(present)))
                for count, present in sorted(by_count.items())
            )
        return out

    def remove(self, *, through: datetime) -> None:
        last = run_minute(through)
        try:
            doomed: list[str] = []
            for child in self._backend.children(PARTS_PREFIX):
                when = parse_run_dir(child)
                if when is not None and when <= last:
                    doomed.extend(self._backend.list_tree(PARTS_PREFIX + child.rstrip("/") + "/"))
            if doomed:
                self._backend.delete(doomed)
        except SpotlakeError as exc:  # the run is committed; leftovers are removed by the next one
            log.warning("could not remove shard parts under %s/%s: %s", self._backend.url, PARTS_PREFIX, exc)
