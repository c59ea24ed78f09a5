"""The result objects in a notebook: short repr, HTML table, Display-like plots, save/load.

One small real run (a tiny random-weight encoder over UD English dev and PUD en/de, ~10 s)
serves every test; the numbers are meaningless (random weights), the plumbing is not.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from probe.errors import ProbeError
from probe.layerwise import LayerResult

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture(scope="module")
def result(mirror) -> LayerResult:
    from tiny import tiny_spec

    from probe.layerwise import layers

    spec = tiny_spec(max_positions=512, layers=2, hidden=16, seed=11, name="tiny-results")
    return layers("de", model=spec, tasks="upos,langid", train=("ud", "dev"), tatoeba=False,
                  n_boot=50, progress=False)


@pytest.fixture(scope="module")
def saved(result, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("saved") / "layers"
    result.save(folder, figures=False)
    return folder


def test_repr_is_short_and_html_is_the_per_layer_table(result):
    text = repr(result)
    assert len(text) < 2000
    assert text.startswith("<LayerResult: tiny-results (L = 2), English -> de")
    assert "POS de" in text and "CKA en-de" in text and "UPOS" not in text
    html = result._repr_html_()
    assert "<table" in html and html.count("<tr") == 1 + 1 + 3  # header rows + layers 0..2
    assert f"{result.table().loc[2, 'POS de']:.3f}" in html


def test_save_load_round_trip_answers_difference_exactly(result, saved, tmp_path):
    files = result.save(tmp_path / "again", figures=False)
    assert os.fspath(files) == str(tmp_path / "again")
    assert sorted(p.name for p in files) == ["counts.npz", "report.json"]
    for source in (files, tmp_path / "again", tmp_path / "again" / "report.json", saved):
        back = LayerResult.load(source)
        assert back.curves() == result.curves()
        assert {"pos de", "pos en", "retrieval en-de", "cka en-de"} <= set(back.curves())
        for curve in back.curves():
            for a, b in ((0, 2), (2, 1)):
                assert back.difference(curve, a, b) == result.difference(curve, a, b)
        for name, counts in result.counts.items():
            np.testing.assert_array_equal(back.counts[name], counts)
        assert back.table().equals(result.table())
    with pytest.raises(ProbeError, match="unknown curve 'pos fr'.*pos de"):
        back.difference("upos fr", 0, 1)  # "upos" is read as "pos", in the message too
    with pytest.raises(ProbeError, match="layer 7 was not analysed"):
        back.difference("pos de", 7, 1)
    (tmp_path / "again" / "counts.npz").unlink()
    with pytest.raises(ProbeError, match="no per-sentence outcomes"):
        LayerResult.load(tmp_path / "again").difference("pos de", 0, 1)
    with pytest.raises(ProbeError, match="no such result file"):
        LayerResult.load(tmp_path / "nothing-here")


def test_every_plot_returns_a_figure_takes_ax_and_saves_only_with_a_path(result, tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")  # this test process only (pytest has no display)
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    monkeypatch.chdir(tmp_path)
    panels = {"plot_probes": 1, "plot_similarity": 2, "plot_tradeoff": 1}
    for name, n in panels.items():
        fig = getattr(result, name)()
        assert isinstance(fig, Figure) and len(fig.axes) >= n
        assert os.listdir(tmp_path) == [], f"{name}() wrote a file"
        plt.close(fig)
        mine, axes = plt.subplots(1, n)
        assert getattr(result, name)(ax=axes if n > 1 else axes) is mine
        assert mine._suptitle is None  # the caller's figure is not re-titled
        with pytest.raises(ValueError, match="panel"):
            getattr(result, name)(ax=list(np.ravel([axes] * 3)))
        plt.close(mine)
    fig = result.plot_cka_heatmap("de")
    assert isinstance(fig, Figure) and os.listdir(tmp_path) == []
    with pytest.raises(ProbeError, match="no CKA matrix for 'zh'"):
        result.plot_cka_heatmap("zh")
    with pytest.raises(ProbeError, match="no robustness"):
        result.plot_robustness()
    fig = result.plot_tradeoff(tmp_path / "figs" / "t.png")
    assert sorted(os.listdir(tmp_path / "figs")) == ["t.pdf", "t.png"]
    assert plt.fignum_exists(fig.number)  # returned open: the caller may still change it
    plt.close("all")
    written = result.save(tmp_path / "all")
    assert {p.name for p in written} >= {"report.json", "counts.npz", "tradeoff.png", "cka_en-de.pdf"}
    assert plt.get_fignums() == []  # save() closes what it drew


def test_compare_result_round_trip(result, tmp_path):
    from probe.compare import CompareResult

    report = {"models": [{"name": "tiny-results", "n_layers": 2, "hidden": 16}],
              "config": {"langs": ["de"]}, "peaks": {"tiny-results": {}}, "seeds": {"probe": 0},
              "versions": {}}
    res = CompareResult(report, {"tiny-results": result})
    back = CompareResult.load(res.save(tmp_path / "cmp", figures=False))
    assert back.report == json.loads(json.dumps(report))
    inner = back.layer_results["tiny-results"]
    assert inner.difference("pos de", 0, 2) == result.difference("pos de", 0, 2)
    assert len(repr(back)) < 2000 and repr(back).startswith("<CompareResult: tiny-results")


def _as_saved_with_upos(name: str) -> str:
    """A task or curve name as reports recorded the POS probe before it was ``pos``."""
    return "u" + name if name == "pos" or name.startswith(("pos ", "pos_")) else name


def test_a_result_saved_with_upos_loads_with_pos(result, tmp_path):
    """Folders saved when probe.layers recorded its POS probe as ``upos`` read back in the
    one vocabulary: tasks, probes, noise curves, counts, table and difference say ``pos``."""
    from probe.results import save_counts

    old = json.loads(json.dumps(result.report))
    old["config"]["tasks"] = [_as_saved_with_upos(t) for t in old["config"]["tasks"]]
    old["probes"] = {_as_saved_with_upos(t): v for t, v in old["probes"].items()}
    old["noise"]["curves"] = {_as_saved_with_upos(k): v for k, v in old["noise"]["curves"].items()}
    assert "upos" in old["probes"] and "upos de (zero-shot)" in old["noise"]["curves"]
    folder = tmp_path / "old"
    folder.mkdir()
    (folder / "report.json").write_text(json.dumps(old))
    save_counts(folder / "counts.npz", {_as_saved_with_upos(k): v for k, v in result.counts.items()})

    back = LayerResult.load(folder)
    assert back.report["config"]["tasks"] == result.report["config"]["tasks"] == ["pos", "langid"]
    assert back.report["probes"] == json.loads(json.dumps(result.report["probes"]))
    assert list(back.report["noise"]["curves"]) == list(result.report["noise"]["curves"])
    assert back.curves() == result.curves() and "pos de" in back.curves()
    assert back.table().equals(result.table())
    assert back.difference("pos de", 0, 2) == back.difference("upos de", 0, 2) == result.difference("pos de", 0, 2)


def test_committed_results_with_upos_read_as_pos():
    """The committed analysis records embed reports saved with ``upos``; as result objects
    they read ``pos`` (the records themselves are rewritten when regenerated)."""
    from probe.compare import CompareResult

    layers_report = json.loads((REPO / "results" / "layer_tradeoff.json").read_text())["results"]["layers_report"]
    compare_report = json.loads((REPO / "results" / "scaling.json").read_text())["results"]["compare_report"]
    res = LayerResult(layers_report)
    assert res.report["config"]["tasks"][0] == "pos" and "pos" in res.report["probes"]
    assert "POS en" in res.table().columns and not any("UPOS" in c for c in res.table().columns)
    assert any(k.startswith("pos ") for k in res.report["noise"]["curves"])
    assert "upos" not in repr(res).lower()
    cmp = CompareResult(compare_report)
    assert all("pos_zero_shot" in peaks for peaks in cmp.report["peaks"].values())
    assert "pos_zero_shot peak" in cmp.table().columns
    assert {d["curve"] for d in cmp.report["model_differences"]} >= {"pos_zero_shot"}
    assert "pos_zero_shot" in cmp.report["config"]["curves"]


def test_fusion_result_round_trip_and_display(tmp_path):
    from probe.transfer import FusionResult

    comp = {"mean": 0.5, "std": 0.01, "ci95": [0.48, 0.52], "k": 1,
            "gain_vs_last": {"mean": 0.01, "std": 0.0, "ci95": [-0.01, 0.03]}}
    report = {"kind": "probe.fusion", "task": "pos", "langs": ["de"], "ks": [1],
              "model": {"name": "tiny", "n_layers": 2}, "seeds": {"train": [0, 1]},
              "comparison": {"de": {"last": dict(comp, k=None), "dlfa": comp}}}
    res = FusionResult(report)
    files = res.save(tmp_path / "fus", figures=False)
    back = FusionResult.load(files)
    assert back.report == report and back.table().equals(res.table())
    assert len(repr(back)) < 2000 and "pos on tiny (L = 2)" in repr(back)
    assert "<table" in back._repr_html_() and "DLFA" in back._repr_html_()


def test_jupyter_kernel_keeps_inline_figures_and_plot_writes_nothing(saved, tmp_path, monkeypatch):
    pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    from nbformat.v4 import new_code_cell, new_notebook

    monkeypatch.delenv("MPLBACKEND", raising=False)  # what a user's kernel has
    monkeypatch.setenv("PYTHONPATH", str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    work = tmp_path / "kernel-cwd"
    work.mkdir()
    cells = [
        "import probe, probe.plotting, probe.layerwise, probe.compare, probe.transfer\n"
        "import matplotlib\nprint('backend:', matplotlib.get_backend())",
        "import matplotlib.pyplot as plt\nplt.plot([0, 1], [1, 0]);",  # the user's own figure
        f"res = probe.LayerResult.load({str(saved)!r})\nres",
        "fig = res.plot_tradeoff()",
        "res.plot_similarity()",  # a returned Figure ending a cell: still one image
        "fig",  # shown again on request, from a later cell
        "import os\nprint('files:', sorted(os.listdir('.')))",
    ]
    nb = new_notebook(cells=[new_code_cell(c) for c in cells])
    nbclient.NotebookClient(nb, kernel_name="python3", timeout=120,
                            resources={"metadata": {"path": str(work)}}).execute()
    outs = [c.outputs for c in nb.cells]

    def images(o):
        return [x for x in o if "image/png" in x.get("data", {})]

    assert "backend: module://matplotlib_inline" in "".join(x.get("text", "") for x in outs[0])
    assert len(images(outs[1])) == 1, "the user's own plot renders inline after import probe"
    html = [x["data"]["text/html"] for x in outs[2] if "text/html" in x.get("data", {})]
    assert html and "<table" in html[0]
    assert len(images(outs[3])) == 1, "res.plot_tradeoff() shows its figure inline"
    assert len(images(outs[4])) == 1 and len(images(outs[5])) == 1
    assert "files: []" in "".join(x.get("text", "") for x in outs[6])
    assert os.listdir(work) == []


def test_layers_selects_a_subset_and_accepts_pos(result):
    from tiny import tiny_spec

    from probe.layerwise import layers, select_layers

    assert select_layers(None, 12) == list(range(13)) and select_layers("all", 2) == [0, 1, 2]
    assert select_layers("0,6,-1", 12) == [0, 6, 12] and select_layers([3, 3, 1], 12) == [1, 3]
    for bad in ("13", "x", [1.5], [], "-14"):
        with pytest.raises(ProbeError):
            select_layers(bad, 12)
    spec = tiny_spec(max_positions=512, layers=2, hidden=16, seed=11, name="tiny-results")
    sub = layers("de", model=spec, tasks="pos", layers=[0, -1], train=("ud", "dev"), tatoeba=False,
                 n_boot=50, progress=False)
    assert sub.layer_ids == [0, 2] and list(sub.table().index) == [0, 2]
    assert sub.report["config"]["tasks"] == result.report["config"]["tasks"][:1] == ["pos"]  # one name
    full = result.table()
    for col in ("POS en", "POS de", "CKA en-de", "R en>de"):
        assert list(sub.table()[col]) == pytest.approx(list(full.loc[[0, 2], col]), abs=1e-12)
    assert sub.difference("pos de", 0, 2) == result.difference("upos de", 0, 2)
    assert sub.difference("cka en-de", 2, 0) == result.difference("cka en-de", 2, 0)
    for curve in sub.report["noise"]["curves"].values():
        assert curve["peak_layer"] in (0, 2) and set(curve["within_noise_of_peak"]) <= {0, 2}
    assert np.asarray(sub.report["cka_matrix"]["de"]).shape == (2, 2)
    with pytest.raises(ProbeError, match="layer 1 was not analysed"):
        sub.difference("pos de", 1, 2)
    with pytest.raises(ProbeError, match="unknown probe task 'postag'; choose from pos \\(or upos\\), deprel, langid"):
        layers("de", model=spec, tasks="postag", progress=False)
