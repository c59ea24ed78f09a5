"""The guided-tour notebook runs top to bottom on a small subset (PROBE_NOTEBOOK_QUICK=1).

It uses the real offline encoder (e5-small-q4) and the offline data mirror, extracting
only a few dozen sentences per corpus into this test session's PROBE_HOME.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "explore.ipynb"


def _text(outputs) -> str:
    parts = []
    for out in outputs:
        if out.get("output_type") == "stream":
            parts.append(out.get("text", ""))
        elif "data" in out and "text/plain" in out["data"]:
            parts.append(out["data"]["text/plain"])
    return "".join(parts)


def test_explore_notebook_runs_in_quick_mode(mirror, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    monkeypatch.setenv("PROBE_NOTEBOOK_QUICK", "1")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(nb, kernel_name="python3", timeout=600,
                                     resources={"metadata": {"path": str(NOTEBOOK.parent)}})
    t0 = time.time()
    client.execute()  # raises CellExecutionError if any cell fails
    seconds = time.time() - t0

    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count for c in code), "every code cell ran"
    text = "\n".join(_text(c.outputs) for c in code)
    assert "quick mode: True" in text
    assert "UPOS accuracy de (zero-shot)" in text
    assert "layer 0" in text and "German zero-shot UPOS" in text
    assert "CKA on 50 parallel sentences" in text
    assert "DLFA gain over the last layer" in text
    images = [o for c in code for o in c.outputs if "image/png" in o.get("data", {})]
    assert images, "the CKA heatmap was drawn"
    assert seconds < 240, f"quick notebook took {seconds:.0f} s"
    assert os.environ.get("PROBE_HOME"), "conftest gives the session its own cache"
