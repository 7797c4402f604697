"""Every read path docs/analysis.md shows (the analysis API, pandas, pyarrow, DuckDB) runs as
written against a store the real pipeline filled: each ```python block of the page, in order, in
one namespace, with ``spotlake-data`` pointing at that store."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

DOC = Path(__file__).resolve().parents[1] / "docs" / "analysis.md"
BLOCK = re.compile(r"```python\n(.*?)```", re.S)


@pytest.fixture(scope="module")
def namespace(filled_store: Path) -> Iterator[dict[str, Any]]:
    root = filled_store
    blocks = BLOCK.findall(DOC.read_text())
    assert len(blocks) >= 7, "docs/analysis.md lost its examples"
    ns: dict[str, Any] = {}
    for code in blocks:
        exec(compile(code.replace("spotlake-data", str(root)), str(DOC), "exec"), ns)
    ns["_root"] = root
    yield ns


def test_the_analysis_api_blocks_answer(namespace: dict[str, Any]) -> None:
    assert namespace["runs"] and not namespace["latest"].empty and not namespace["current"].empty
    assert not namespace["history"].empty and "spot_price" in namespace["history"]
    # the fixture's runs are in the past: the last hour is empty, the columns are there
    assert list(namespace["t3_last_hour"].columns)[-3:] == ["t2", "t3", "rotation_complete"]
    assert "score_before" in namespace["changed"] and "changed_fields" in namespace["moves"]
    assert (namespace["offers"]["vcpus"] >= 16).all()
    assert len(namespace["cheapest_high_everywhere"]) <= 1


def test_each_raw_source_reads_with_its_own_columns(namespace: dict[str, Any]) -> None:
    # the bug these paths replace: raw/ read as one dataset lost the price columns silently
    prices, high = namespace["prices"], namespace["high"]
    assert {"ondemand_price", "spot_price", "savings_pct", "date"} <= set(prices.columns) and len(prices)
    assert prices["spot_price"].notna().any()
    assert list(high.columns) == ["size", "region", "zone"] and len(high)


def test_pandas_and_duckdb_read_the_same_rows(namespace: dict[str, Any]) -> None:
    root: Path = namespace["_root"]
    merged, changes, by_region = namespace["merged"], namespace["changes"], namespace["by_region"]
    assert len(merged) == sum(len(pd.read_parquet(p)) for p in (root / "merged").rglob("*.parquet"))
    assert len(changes) == sum(len(pd.read_parquet(p)) for p in (root / "changes").rglob("*.parquet"))
    prices = namespace["prices"]
    assert sorted(by_region["region"]) == sorted(prices["region"].unique())
    assert by_region["spot"].is_monotonic_increasing


def test_the_digests_stay_out_of_the_files_a_reader_sees(namespace: dict[str, Any]) -> None:
    root: Path = namespace["_root"]
    assert (root / ".digest").is_dir(), "the history above read through the digests"
    files = {
        p.relative_to(root).parts[0]
        for p in root.rglob("*.parquet")
        if not any(part.startswith(".") for part in p.relative_to(root).parts)
    }
    assert ".digest" not in files
    assert len(pd.read_parquet(root / "merged")) == len(namespace["merged"])
