"""Reading a support set from a file: the (region, size) pairs the SPS planner covers.

The pipeline takes its support set from the prices collector; this reads one from a CSV instead,
either a plain ``region,size`` list or the public SkyPilot Azure catalog (``spotlake plan --catalog``,
the planner benchmark). The planner itself (:mod:`spotlake.scoring.plan`) does no I/O.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import TextIO

from spotlake.errors import ConfigError

__all__ = ["load_pairs", "read_pairs"]


def load_pairs(path: str | Path) -> frozenset[tuple[str, str]]:
    """Read a support set, the (region, size) pairs to plan, from a CSV file.

    Two layouts are recognised by their header: ``region,size`` (one pair per row, case-insensitive
    column names, extra columns ignored) and the SkyPilot catalog (``Region``, ``InstanceType``,
    ``SpotPrice``: a pair for every row with a non-empty spot price). :class:`ConfigError` names
    the file when it cannot be read or has neither layout.
    """
    p = Path(path)
    try:
        with p.open(newline="", encoding="utf-8") as fh:
            return read_pairs(fh, where=str(p))
    except OSError as exc:
        raise ConfigError(f"cannot read the support set {p}: {exc.strerror or exc}") from exc


def read_pairs(stream: TextIO, *, where: str) -> frozenset[tuple[str, str]]:
    """:func:`load_pairs` over an open text stream (e.g. standard input); ``where`` names it."""
    try:
        reader = csv.DictReader(stream)
        header = {name.strip().lower(): name for name in reader.fieldnames or ()}
        if {"region", "instancetype", "spotprice"} <= header.keys():
            region, size, spot = header["region"], header["instancetype"], header["spotprice"]
            rows = [
                (row[region].strip(), row[size].strip()) for row in reader if (row.get(spot) or "").strip()
            ]
        elif {"region", "size"} <= header.keys():
            region, size = header["region"], header["size"]
            rows = [(row[region].strip(), row[size].strip()) for row in reader]
        else:
            raise ConfigError(
                f"{where}: expected columns 'region,size' or the SkyPilot catalog's "
                f"'Region,InstanceType,SpotPrice', got {list(header.values())}"
            )
    except (csv.Error, UnicodeDecodeError) as exc:
        raise ConfigError(f"{where} is not a readable CSV file: {exc}") from exc
    bad = next((i for i, (r, s) in enumerate(rows) if not r or not s), None)
    if bad is not None:
        raise ConfigError(f"{where}: data row {bad + 1} has an empty region or size")
    return frozenset(rows)
