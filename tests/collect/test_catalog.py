"""Reading a support set from a CSV: both layouts, and errors that name the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from spotlake.collect.catalog import load_pairs
from spotlake.errors import ConfigError


def test_load_pairs_reads_both_layouts(tmp_path: Path) -> None:
    simple = tmp_path / "pairs.csv"
    simple.write_text("Region,Size,extra\neastus,Standard_D2s_v5,1\nwestus, Standard_D4s_v5 ,2\n")
    assert load_pairs(simple) == {("eastus", "Standard_D2s_v5"), ("westus", "Standard_D4s_v5")}
    catalog = tmp_path / "vms.csv"
    catalog.write_text(
        "InstanceType,vCPUs,Price,SpotPrice,Region\n"
        "Standard_D2s_v5,2,0.1,0.02,eastus\n"
        "Standard_B1s,1,0.01,,eastus\n"
        "Standard_D2s_v5,2,0.1,0.03,westus\n"
    )
    assert load_pairs(catalog) == {("eastus", "Standard_D2s_v5"), ("westus", "Standard_D2s_v5")}


def test_load_pairs_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.csv"):
        load_pairs(tmp_path / "nope.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(ConfigError, match="region,size"):
        load_pairs(bad)
    empty_cell = tmp_path / "empty.csv"
    empty_cell.write_text("region,size\neastus,\n")
    with pytest.raises(ConfigError, match="row 1"):
        load_pairs(empty_cell)
