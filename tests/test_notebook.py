"""examples/notebook/analysis.ipynb runs end to end, headless and offline, and draws its figures."""

from __future__ import annotations

from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "notebook" / "analysis.ipynb"
FIGURES = ("score_heatmap.png", "price_and_score.png", "savings_vs_eviction.png", "t2t3_distribution.png")


def test_the_notebook_runs_headless_and_writes_its_figures(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, filled_store: Path
) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    store = filled_store
    figures = tmp_path / "figures"
    monkeypatch.setenv("SPOTLAKE_STORE", str(store))
    monkeypatch.setenv("SPOTLAKE_FIGURES", str(figures))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    for name in FIGURES:
        png = figures / name
        assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        assert png.stat().st_size > 10_000, f"{name} looks empty"
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert any("runs," in "".join(o.get("text", "")) for o in outputs)
