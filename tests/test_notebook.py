"""The analysis notebook executes against a real run (nbclient, a fresh kernel) and shows figures."""

from __future__ import annotations

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

pytestmark = pytest.mark.integration
NOTEBOOK = Path(__file__).parents[1] / "notebooks" / "analyse_front.ipynb"


def _snapshot(folder: Path) -> dict[str, float]:
    return {str(p.relative_to(folder)): p.stat().st_mtime for p in folder.rglob("*") if p.is_file()}


def test_notebook_runs_and_shows_figures(results_run, tmp_path, monkeypatch):
    # as on a fresh checkout: no matplotlib backend chosen beforehand (the tests' Agg is not inherited)
    monkeypatch.delenv("MPLBACKEND", raising=False)
    monkeypatch.setenv("DALP_RUN", str(results_run))
    monkeypatch.setenv("DALP_NOTEBOOK_CACHE", str(tmp_path / "cache"))
    source_before = _snapshot(NOTEBOOK.parent)
    run_before = _snapshot(results_run)
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(NOTEBOOK.parent)}})
    client.execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 5  # Pareto, history, distributions, deployment gap, the budget choice
    text = "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
    assert f"run folder: {results_run}" in text and "figures emulated" in text and "picked " in text
    assert _snapshot(NOTEBOOK.parent) == source_before  # nothing written into the source tree
    assert _snapshot(results_run) == run_before  # nor into the run folder
    assert not (tmp_path / "cache").exists()  # DALP_RUN given: no smoke run of its own
