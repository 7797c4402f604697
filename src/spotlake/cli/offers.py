"""``spotlake offers``: the store's spot offers, ranked as ``spotlake.open(store).offers()`` ranks them.

::

    spotlake offers [--store DIR|s3://...] [--vcpus N] [--memory GIB] [--min-score High|Medium|Low]
                    [--count N] [--region R ...] [--max-price USD] [--limit N] [--json]

Cheapest spot price first; among equal prices the higher tier, the lower eviction rate, the
fresher observation (docs/analysis.md, "Offers"). ``--json`` prints
``{"total": N, "shown": M, "truncated": bool, "rows": [...]}`` (the shape of ``show --json``);
times are ISO 8601 UTC to the second, ages are seconds. Exit 2 for bad arguments or a store that
holds no collected run.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from spotlake.cli._args import positive_float
from spotlake.cli._format import iso_columns
from spotlake.errors import ConfigError

__all__ = ["add_offers_parser"]


def _cmd_offers(args: argparse.Namespace) -> int:
    from spotlake.analysis import open as open_lake
    from spotlake.storage import open_store

    if args.limit is not None and args.limit < 1:
        raise ConfigError(f"--limit must be at least 1, got {args.limit}")
    lake = open_lake(open_store(args.store, cloud=args.cloud), cloud=args.cloud)
    if not lake.runs():
        print(
            f"spotlake offers: {args.store} holds no collected run (run spotlake collect first)",
            file=sys.stderr,
        )
        return 2
    found = lake.offers(
        vcpus=args.vcpus,
        memory=args.memory,
        min_score=args.min_score,
        count=args.count,
        regions=args.region,
        max_price=args.max_price,
    )
    shown = found.head(args.limit) if args.limit is not None else found
    if args.json:
        rows = iso_columns(shown.assign(age=shown["age"].dt.total_seconds()))
        payload = {
            "total": len(found),
            "shown": len(shown),
            "truncated": len(shown) < len(found),
            # the rows as show --json has them: times ISO 8601 UTC; the age in seconds
            "rows": json.loads(rows.to_json(orient="records")),
        }
        print(json.dumps(payload, indent=2))
        return 0
    if found.empty:
        print("no offer matches (widen --vcpus/--memory/--min-score/--region/--max-price)")
        return 0
    cols = ["rank", "size", "region", "zone", "vcpus", "memory_gib", "spot_price", "savings_pct", "t2", "t3"]
    print(shown[cols].to_string(index=False))
    if len(shown) < len(found):
        print(f"... {len(found) - len(shown)} more (--limit)")
    return 0


def add_offers_parser(sub: Any, common: argparse.ArgumentParser, default_store: str) -> None:
    """Register ``spotlake offers`` on the CLI's subparsers."""
    p = sub.add_parser(
        "offers",
        parents=[common],
        help="spot offers ranked cheapest first, from the store's latest observations",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--store", default=default_store, help=f"the store (default {default_store})")
    p.add_argument("--cloud", choices=("azure", "aws"), default="azure", help="whose offers (default azure)")
    p.add_argument("--vcpus", type=int, help="at least this many vCPUs")
    p.add_argument("--memory", type=positive_float, help="at least this many GiB of memory")
    p.add_argument(
        "--min-score",
        choices=("High", "Medium", "Low", "high", "medium", "low"),
        help="placement scored at least this at every desired count up to --count",
    )
    p.add_argument("--count", type=int, default=1, help="instances wanted, for --min-score (default 1)")
    p.add_argument("--region", action="append", help="only this region (repeatable)")
    p.add_argument("--max-price", type=positive_float, help="at most this spot price, USD/h")
    p.add_argument("--limit", type=int, default=20, help="show the first N (default 20)")
    p.set_defaults(func=_cmd_offers)
