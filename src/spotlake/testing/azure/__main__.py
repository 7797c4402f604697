"""``python -m spotlake.testing.azure serve``: run the Azure emulator as a loopback HTTP server.

``python -m spotlake.testing.azure pairs [--seed N --regions N --sizes N --layout L]`` prints a
world's support set as ``region,size`` CSV, for the planner: ``... pairs --seed 0 | spotlake plan
--pairs -``.

Prints one line to stdout and flushes it, then serves until interrupted (SIGINT/SIGTERM)::

    http://127.0.0.1:8123 {"url": "...", "tenant_id": "...", "client_id": "...", "client_secret": "...",
                           "subscriptions": [...], "seed": 0}

The first token is the base URL (every service and the token endpoint live under it); the rest is
JSON with the credentials the emulator accepts. These are emulator-only values, never real ones.

With ``--export`` it prints shell lines instead, once it listens, for ``spotlake collect azure``::

    # spotlake Azure emulator at http://127.0.0.1:8080 (test-only credentials, never real ones)
    export AZURE_TENANT_ID=...
    export AZURE_CLIENT_ID=...
    export AZURE_CLIENT_SECRET=...
    export AZURE_SUBSCRIPTION_IDS=sub1,sub2,...
    export SPOTLAKE_EMULATOR_URL=http://127.0.0.1:8080
"""

from __future__ import annotations

import argparse
import csv
import json
import shlex
import signal
import sys
import threading
from collections.abc import Sequence
from datetime import datetime
from types import FrameType

from spotlake.clock import Clock, FakeClock, SystemClock
from spotlake.errors import ConfigError
from spotlake.testing.azure.emulator import AzureEmulator
from spotlake.testing.azure.wire import base_url, make_server
from spotlake.testing.faults import Faults
from spotlake.testing.world import World

__all__ = ["build_parser", "export_lines", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m spotlake.testing.azure", description=__doc__.splitlines()[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve every emulated Azure endpoint on a loopback port")
    serve.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=0, help="port (0 = any free port; the URL is printed)")
    pairs = sub.add_parser("pairs", help="print a world's support set as region,size CSV (for spotlake plan)")
    for command in (serve, pairs):
        command.add_argument("--seed", type=int, default=0, help="world and credential seed (default 0)")
        command.add_argument(
            "--regions", type=int, default=60, help="regions in a generated world (default 60)"
        )
        command.add_argument(
            "--sizes", type=int, default=800, help="VM sizes in a generated world (default 800)"
        )
        command.add_argument("--layout", choices=("family", "family-holes", "uniform"), default="family")
        command.add_argument(
            "--catalog", help="build the world from a catalog CSV instead (e.g. azure_vms_catalog.csv)"
        )
        command.add_argument("--example", action="store_true", help="the published SPS example world")
    serve.add_argument(
        "--sps-per-hour", type=int, default=10, help="SPS calls per (subscription, location) per hour"
    )
    serve.add_argument(
        "--clock",
        choices=("fake", "system"),
        default="fake",
        help="fake: time moves only via POST /_emulator/clock (default); system: wall clock",
    )
    serve.add_argument(
        "--start", help="start time of the fake clock (ISO 8601, default 2026-01-01T00:00:00Z)"
    )
    serve.add_argument(
        "--export",
        action="store_true",
        help="print `export AZURE_...=...` shell lines (the emulator's test-only credentials and "
        "SPOTLAKE_EMULATOR_URL) instead of the URL and JSON line",
    )
    serve.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="ENDPOINT.KNOB=VALUE",
        help="e.g. prices.latency=0.1, sps.errors.429=0.2, all.reset_rate=0.01 (repeatable)",
    )
    return parser


def _world(args: argparse.Namespace) -> World:
    if args.example:
        return World.published_example(args.seed)
    if args.catalog:
        return World.from_catalog(args.catalog, seed=args.seed)
    return World.generate(args.seed, n_regions=args.regions, n_sizes=args.sizes, layout=args.layout)


def export_lines(info: dict[str, object]) -> str:
    """The ``export`` lines of ``serve --export`` for the emulator described by ``info``."""
    subscriptions = info["subscriptions"]
    assert isinstance(subscriptions, list)
    env = {
        "AZURE_TENANT_ID": str(info["tenant_id"]),
        "AZURE_CLIENT_ID": str(info["client_id"]),
        "AZURE_CLIENT_SECRET": str(info["client_secret"]),
        "AZURE_SUBSCRIPTION_IDS": ",".join(map(str, subscriptions)),
        "SPOTLAKE_EMULATOR_URL": str(info["url"]),
    }
    head = f"# spotlake Azure emulator at {info['url']} (test-only credentials, never real ones)\n"
    return head + "".join(f"export {name}={shlex.quote(value)}\n" for name, value in env.items())


def _print_pairs(args: argparse.Namespace) -> int:
    try:
        world = _world(args)
    except (ConfigError, ValueError, OSError) as exc:
        print(f"emulator: {exc}", file=sys.stderr)
        return 2
    out = csv.writer(sys.stdout, lineterminator="\n")
    out.writerow(["region", "size"])
    out.writerows(sorted(world.support_pairs()))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "pairs":
        return _print_pairs(args)
    try:
        clock: Clock
        if args.clock == "system":
            clock = SystemClock()
        else:
            clock = FakeClock(datetime.fromisoformat(args.start) if args.start else None)
        emu = AzureEmulator(
            _world(args),
            clock=clock,
            faults=Faults.parse(args.fault),
            sps_calls_per_hour=args.sps_per_hour,
            seed=args.seed,
        )
        server = make_server(emu, args.host, args.port)
    except (ConfigError, ValueError, OSError) as exc:
        print(f"emulator: {exc}", file=sys.stderr)
        return 2
    url = base_url(server)
    info = {
        "url": url,
        "tenant_id": emu.tenant_id,
        "client_id": emu.client_id,
        "client_secret": emu.client_secret,
        "subscriptions": list(emu.subscriptions),
        "seed": args.seed,
    }
    # One write once the server listens: a reader that sees the text can connect at once.
    sys.stdout.write(export_lines(info) if args.export else f"{url} {json.dumps(info)}\n")
    sys.stdout.flush()

    def stop(_signum: int, _frame: FrameType | None) -> None:
        # shutdown() blocks until serve_forever returns, so call it off the serving thread.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
