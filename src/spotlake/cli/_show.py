"""``spotlake show``: the latest (or one run's) merged snapshot or changeset, filtered and cut."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from spotlake.cli._format import GRID_MINUTES, iso, iso_columns
from spotlake.cli._where import apply_where
from spotlake.errors import ConfigError

__all__ = ["cmd_show", "no_run_message"]

EXIT_OK = 0  # spotlake.cli.EXIT_OK (not imported: spotlake.cli imports this module)


def cmd_show(args: argparse.Namespace) -> int:
    """Print one frame of the store (see ``spotlake show --help`` for the JSON shape, exit codes)."""
    from spotlake.cli import _emit, _parse_at, _require_store
    from spotlake.storage import FrameKind, open_store

    _require_store(args.store)
    store = open_store(args.store, cloud=args.cloud)
    kind = FrameKind.CHANGES if args.changes else FrameKind.MERGED
    run_at = (
        _parse_at(args.at).astimezone(UTC).replace(second=0, microsecond=0)
        if args.at
        else store.latest_run_at(kind)
    )
    frame = None if run_at is None else store.read_frame(kind=kind, at=run_at)
    if run_at is not None and frame is None and args.at:
        raise ConfigError(no_run_message(store.run_times(kind), run_at, kind=str(kind), where=args.store))
    if run_at is None or frame is None:  # an existing store with no committed run: no rows, no error
        empty: dict[str, Any] = {"kind": str(kind), "run_at": None, "total": 0, "shown": 0}
        _emit(
            args,
            {**empty, "truncated": False, "rows": []},
            f"{args.store}: no {kind} data yet (no run committed)",
        )
        return EXIT_OK
    if args.where:
        frame = apply_where(frame, args.where)
    limit = None if args.all else args.limit
    shown = iso_columns(frame if limit is None else frame.head(limit))
    truncated = len(shown) < len(frame)
    if args.json:
        payload = {
            "kind": str(kind),
            "run_at": iso(run_at),
            "total": len(frame),
            "shown": len(shown),
            "truncated": truncated,
            "rows": json.loads(shown.to_json(orient="records")),
        }
        print(json.dumps(payload, indent=2))
    else:
        with pd.option_context("display.width", 200, "display.max_columns", 30):
            print(shown.to_string(index=False))
        more = "; --limit N or --all for more" if truncated else ""
        print(f"({len(shown)} of {len(frame)} rows) {kind} of the run at {iso(run_at)}{more}")
    return EXIT_OK


def no_run_message(times: list[datetime], at: datetime, *, kind: str, where: str) -> str:
    """Why ``--at`` found nothing, naming the nearest committed runs before and after it."""
    if not times:
        return f"--at {iso(at)}: {where} has no committed run yet"
    before = [t for t in times if t < at]
    after = [t for t in times if t > at]
    near = [f"before: {iso(t)}" for t in before[-1:]] + [f"after: {iso(t)}" for t in after[:1]]
    return (
        f"--at {iso(at)}: no run with {kind} data at that time in {where}"
        f" (runs are on the {GRID_MINUTES}-minute grid; nearest {', '.join(near)})"
    )
