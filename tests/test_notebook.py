"""The guided-tour notebook (notebooks/explore.ipynb).

The fast tests read the committed notebook: it is what notebooks/make_explore.py writes,
it carries the outputs of a full run (figures included), and its code uses only the public
API. The slow test executes it top to bottom in quick mode (``PROBE_NOTEBOOK_QUICK=1``)
with the real offline encoder (e5-small-q4) and the data mirror, in this test session's
own ``PROBE_HOME``.
"""
from __future__ import annotations

import ast
import importlib.util
import os
import re
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FOLDER = REPO / "notebooks"
NOTEBOOK = FOLDER / "explore.ipynb"
MAX_BYTES = 1_500_000  # the committed notebook, outputs included

# text each section prints (or its result's repr holds) in either mode; each fails if that section broke
SECTION_TEXTS = {
    "setup": "model e5-small-q4; languages",
    "1 extract": "CacheEntry(e5-small-q4 pud/de/test",
    "1 labels": "its POS tags:",
    "2 layers": "<LayerResult: e5-small-q4 (L = ",
    "2 noise": "pos de (zero-shot): peak at layer",
    "3 difference": "pos de: peak layer",
    "4 fuse table": "DLFA gate=0.5 (control)",
    "4 fuse chance": "de: majority class (",
    "4 fuse verdict": "over the gate-0.5 control:",
    "5 finetune": "FINE-TUNED on English",
    "5 compare": "<CompareResult: e5-small-q4 vs e5-small-q4+pos-ft",
    "5 peaks": "before fine-tuning -> layer",
    "6 perturb": "pos drop",
    "6 grid search": "cross-validated accuracy",
    "end": "tour finished in",
}


def _nbformat():
    return pytest.importorskip("nbformat")


def _code_cells(nb):
    return [c for c in nb.cells if c.cell_type == "code"]


def _text(outputs) -> str:
    parts = []
    for out in outputs:
        if out.get("output_type") == "stream":
            parts.append(out.get("text", ""))
        elif "data" in out and "text/plain" in out["data"]:
            parts.append(out["data"]["text/plain"])
    return "".join(parts)


def _is_plot(cell) -> bool:
    """A cell whose last line draws a figure (``res.plot_x(...);``)."""
    last = cell.source.strip().splitlines()[-1]
    return ".plot" in last


def _has_image(cell) -> bool:
    return any("image/png" in o.get("data", {}) for o in cell.outputs)


def _python(source: str) -> str:
    """Cell source without IPython magics (``%config ...``), as plain Python."""
    return "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines())


def _snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in folder.rglob("*") if p.is_file()}


def _generator():
    spec = importlib.util.spec_from_file_location("make_explore", FOLDER / "make_explore.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ----------------------------------------------------------------------------- committed notebook
def test_committed_notebook_is_what_the_generator_writes():
    nbformat = _nbformat()
    committed = nbformat.read(NOTEBOOK, as_version=4)
    built = _generator().build()
    assert [(c.cell_type, c.source) for c in committed.cells] == [(c.cell_type, c.source) for c in built.cells], \
        "regenerate: python3 notebooks/make_explore.py, then execute it"


def test_committed_notebook_has_the_outputs_of_a_full_run():
    nbformat = _nbformat()
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = _code_cells(nb)
    assert all(c.execution_count for c in code), "every code cell was executed"
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1)), "in one top-to-bottom run"
    assert not [o for c in code for o in c.outputs if o.output_type == "error"]
    text = "\n".join(_text(c.outputs) for c in code)
    assert "quick mode: False" in text, "committed outputs come from the full mode"
    for section, snippet in SECTION_TEXTS.items():
        assert snippet in text, f"section {section}: {snippet!r} not in the outputs"
    plots = [c for c in code if _is_plot(c)]
    assert len(plots) >= 6
    missing = [c.source for c in plots if not _has_image(c)]
    assert not missing, f"plot cells without an inline image: {missing}"
    assert NOTEBOOK.stat().st_size < MAX_BYTES


def test_committed_notebook_statements_match_its_outputs():
    """The two "what the committed full run showed" paragraphs say what the outputs print."""
    nbformat = _nbformat()
    nb = nbformat.read(NOTEBOOK, as_version=4)
    text = "\n".join(_text(c.outputs) for c in _code_cells(nb))
    for lang in ("de", "zh"):
        assert re.search(rf"{lang}: DLFA \(k=\d+\) over last layer: \+[\d.]+ \[.*\] -> significant", text)
        assert re.search(rf"{lang}: DLFA \(k=\d+\) over layer \d+ alone: .* -> within noise", text)
        assert re.search(rf"{lang}: DLFA \(k=\d+\) over the gate-0.5 control: .* -> within noise", text)
    peaks = {m[0]: (int(m[1]), float(m[2]), int(m[3]), float(m[4])) for m in re.findall(
        r"(\w+): peak layer (\d+) \(([\d.]+)\) before fine-tuning -> layer (\d+) \(([\d.]+)\) after", text)}
    verdicts = dict(re.findall(r"^(\w+): peak e5-small-q4 .*: (a real difference|within noise)$", text, re.M))
    for curve in ("cka", "retrieval"):
        before_layer, before, after_layer, after = peaks[curve]
        assert after_layer < before_layer and after < before and verdicts[curve] == "a real difference"
    drop = {c: peaks[c][1] - peaks[c][3] for c in ("cka", "retrieval")}
    assert drop["retrieval"] > drop["cka"], "retrieval lost most"
    before_layer, before, after_layer, after = peaks["pos_zero_shot"]
    assert after_layer < before_layer and after > before and verdicts["pos_zero_shot"] == "a real difference"


def _private_uses(source: str, public: set) -> list[str]:
    """What ``source`` takes from ``probe`` beyond ``import probe`` and ``probe.__all__``
    (submodules, private names), and any ``matplotlib.use``."""
    problems = []
    for node in ast.walk(ast.parse(_python(source))):
        if isinstance(node, ast.Import):
            problems += [a.name for a in node.names if a.name.startswith("probe.")]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "probe":
            if node.module != "probe":
                problems.append(f"from {node.module} import ...")
            problems += [f"from probe import {a.name}" for a in node.names if a.name not in public]
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            if node.value.id == "probe" and node.attr not in public:
                problems.append(f"probe.{node.attr}")
            if node.value.id in ("matplotlib", "mpl") and node.attr == "use":
                problems.append("matplotlib.use (the notebook keeps the inline backend)")
    return problems


def test_notebook_code_uses_only_the_public_api():
    nbformat = _nbformat()
    import probe

    public = set(probe.__all__)
    nb = nbformat.read(NOTEBOOK, as_version=4)
    problems = [p for cell in _code_cells(nb) for p in _private_uses(cell.source, public)]
    assert not problems, f"the notebook reaches past probe.__all__: {problems}"


def test_public_api_check_catches_private_use():
    """The check above is not vacuous: each form it must reject is rejected."""
    import probe

    public = set(probe.__all__)
    for src in ("import probe.layerwise", "from probe.layerwise import open_or_extract",
                "from probe import _set_hub_timeouts", "x = probe._EXPORTS", "probe.stats.bootstrap()",
                "import matplotlib\nmatplotlib.use('Agg')"):
        assert _private_uses(src, public), src
    assert not _private_uses("%config X\nimport probe\nprobe.layers(['de'])\nprobe.LinearProbe()", public)


# ----------------------------------------------------------------------------- quick-mode execution
@pytest.mark.slow
def test_explore_notebook_runs_in_quick_mode(mirror, monkeypatch):
    nbformat = _nbformat()
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    assert os.environ.get("PROBE_HOME"), "conftest gives the session its own cache"
    monkeypatch.setenv("PROBE_NOTEBOOK_QUICK", "1")
    # a user's kernel has no MPLBACKEND (a CI runner's environment may set one; probe.cli.main
    # sets Agg only while a command runs), and the kernel would inherit it
    monkeypatch.delenv("MPLBACKEND", raising=False)
    # the kernel imports this checkout's probe, whatever is installed
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    for cell in _code_cells(nb):
        cell.outputs, cell.execution_count = [], None  # nothing carried over from the committed run
    before = _snapshot(FOLDER)
    client = nbclient.NotebookClient(nb, kernel_name="python3", timeout=600,
                                     resources={"metadata": {"path": str(FOLDER)}})
    t0 = time.time()
    client.execute()  # raises CellExecutionError if any cell fails
    seconds = time.time() - t0

    code = _code_cells(nb)
    assert all(c.execution_count for c in code), "every code cell ran"
    text = "\n".join(_text(c.outputs) for c in code)
    assert "quick mode: True" in text
    for section, snippet in SECTION_TEXTS.items():
        assert snippet in text, f"section {section}: {snippet!r} not in the outputs"
    plots = [c for c in code if _is_plot(c)]
    assert len(plots) >= 6, "the tour draws at least six figures"
    blank = {c.source.strip().splitlines()[-1]: [o.get("output_type") for o in c.outputs]
             for c in plots if not _has_image(c)}
    assert not blank, f"plots not drawn inline (cell: its outputs): {blank}"
    assert _snapshot(FOLDER) == before, "the run wrote nothing into the notebook's folder"
    # the time is reported, not asserted (speed is measured in benchmarks/, not by timed
    # tests); nbclient's per-cell timeout above still stops a hung cell
    print(f"quick-mode notebook: {seconds:.0f} s")
