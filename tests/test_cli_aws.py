"""``spotlake collect aws`` against the offline AWS emulator, and the readers of the AWS tree:
``spotlake show --cloud aws``, ``spotlake offers --cloud aws`` and ``spotlake.open(..., cloud="aws")``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import spotlake
from spotlake.cli import main


def collect(store: Path, at: str, *extra: str) -> int:
    return main(["collect", "aws", "--emulate", "3", "--store", str(store), "--at", at, "-q", *extra])


def test_collect_aws_commits_into_the_aws_tree_and_every_reader_finds_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "lake"
    assert collect(store, "2026-05-04T09:00") == 0
    assert "placement scores:" in capsys.readouterr().out
    assert collect(store, "2026-05-04T09:10", "--json") == 0
    report = json.loads(capsys.readouterr().out)
    assert report["status"] == "committed" and report["desired_count"] == 5
    assert set(report["collectors"]) >= {"aws_sps", "aws_spot_prices", "aws_types", "aws_advisor"}
    assert collect(store, "2026-05-04T09:10") == 0  # the same run again: nothing to do
    assert "already committed" in capsys.readouterr().out
    assert (store / "aws" / "merged").is_dir() and not (store / "merged").exists()

    assert main(["show", "--store", str(store), "--cloud", "aws", "--json", "--limit", "3"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["shown"] == 3 and shown["rows"][0]["zone"].count("-az") == 1  # zone IDs
    args = ["show", "--store", str(store), "--cloud", "aws", "--where", "score_value>=3", "--json", "--all"]
    assert main(args) == 0  # the README's line
    assert all(r["score_value"] >= 3 for r in json.loads(capsys.readouterr().out)["rows"])
    assert main(["offers", "--store", str(store), "--cloud", "aws", "--vcpus", "4", "--json"]) == 0
    offers = json.loads(capsys.readouterr().out)
    lake = spotlake.open(str(store), cloud="aws")
    ranked = lake.offers(vcpus=4)
    assert offers["total"] == len(ranked) > 0
    assert [r["size"] for r in offers["rows"]] == ranked["size"].head(len(offers["rows"])).tolist()
    assert lake.latest()["vcpus"].notna().all()  # shapes from the aws_types frame
    argv = [
        "allocate",
        "--store",
        str(store),
        "--cloud",
        "aws",
        "--vcpus",
        "8",
        "--at",
        "2026-05-04T09:15",
        "--json",
    ]
    assert main(argv) == 0
    decision = json.loads(capsys.readouterr().out)
    assert "aws" in json.dumps(decision) and "-az" in json.dumps(decision)  # AWS pools, zone IDs
    assert spotlake.open(str(store)).runs() == []  # the Azure tree holds nothing


def test_collect_aws_needs_regions_without_the_emulator(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["collect", "aws", "--store", str(tmp_path), "--at", "2026-05-04T09:00", "-q"])
    assert code == 2 and "--regions" in capsys.readouterr().err


def test_the_offline_example_in_the_collectors_doc_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = (Path(__file__).resolve().parents[1] / "docs" / "collectors.md").read_text()
    section = text[text.index("### Trying it offline") :]
    block = section[
        section.index("```python") + len("```python") : section.index("```", section.index("```python") + 9)
    ]
    monkeypatch.chdir(tmp_path)
    exec(compile(block, "docs/collectors.md", "exec"), {})
    assert (tmp_path / "spotlake-data" / "aws" / "merged").is_dir()
