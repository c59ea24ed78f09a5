"""The analyses' registry (probe.analyses), the family permutation test, and `probe figures`."""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from probe.errors import ProbeError
from probe.figures import add_parser, load_analyses, run

EXPECTED = ["layer_tradeoff", "cka_heatmaps", "language_families", "retrieval_tatoeba", "fusion_sweep", "robustness", "scaling",
            "input_format", "finetune_gains"]
PACKAGE = Path(__file__).resolve().parents[1] / "probe" / "analyses"


@pytest.fixture(scope="module")
def registry():
    return load_analyses()


def test_registry_lists_every_analysis_in_order(registry):
    from probe.analyses import ANALYSES, by_default
    from probe.registry import Registry

    assert registry is ANALYSES and isinstance(registry, Registry)
    assert list(registry) == EXPECTED
    assert sorted(p.stem for p in PACKAGE.glob("[!_]*.py")) == sorted(EXPECTED)  # every module registered
    for name, mod in registry.items():
        assert mod.NAME == name and mod.__name__ == f"probe.analyses.{name}"
        assert callable(mod.main) and mod.CLAIM
        params = list(__import__("inspect").signature(mod.main).parameters)
        assert params[:3] == ["model", "out_root", "quick"]
        assert Path(mod.__file__).resolve() == PACKAGE / f"{name}.py"
    assert [n for n in EXPECTED if not by_default(n)] == ["finetune_gains"]  # hours: only when named


@pytest.mark.parametrize("name", EXPECTED)
def test_each_analysis_runs_as_a_module(name):
    proc = subprocess.run([sys.executable, "-W", "error::RuntimeWarning", "-m", f"probe.analyses.{name}", "--help"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert f"python3 -m probe.analyses.{name}" in proc.stdout and "--quick" in proc.stdout


def _families(registry):
    return registry["language_families"]


def test_permutation_test_finds_block_structure(registry):
    lf = _families(registry)
    rng = np.random.default_rng(0)
    labels = ["a"] * 4 + ["b"] * 4 + ["c"] * 4
    lab = np.array(labels)
    S = 0.2 + 0.05 * rng.random((12, 12))
    S[lab[:, None] == lab[None, :]] += 0.5
    S = (S + S.T) / 2
    np.fill_diagonal(S, 1.0)
    r = lf.permutation_test(S, labels, n_perm=2000, seed=0)
    assert r["within_mean"] > r["between_mean"]
    assert r["difference"] == pytest.approx(r["within_mean"] - r["between_mean"])
    assert r["n_within_pairs"] == 3 * 6 and r["n_groups"] == 3 and r["n_groups_with_2plus"] == 3
    assert r["p_value"] < 0.01
    assert r["p_value"] >= 1 / 2001  # never exactly zero
    # deterministic given the seed
    assert lf.permutation_test(S, labels, n_perm=2000, seed=0)["p_value"] == r["p_value"]
    json.dumps(r)  # JSON-ready


def test_permutation_test_is_not_significant_without_structure(registry):
    lf = _families(registry)
    rng = np.random.default_rng(1)
    X = rng.random((10, 10))
    S = (X + X.T) / 2
    labels = ["a", "a", "a", "b", "b", "b", "c", "c", "d", "e"]
    r = lf.permutation_test(S, labels, n_perm=1000, seed=3)
    assert 0.05 < r["p_value"] <= 1
    assert abs(r["null_mean"]) < 0.05


def test_permutation_test_degenerate_and_bad_input(registry):
    lf = _families(registry)
    S = np.eye(4)
    r = lf.permutation_test(S, ["a", "b", "c", "d"], n_perm=10)  # no within-group pair
    assert np.isnan(r["difference"]) and np.isnan(r["p_value"])
    with pytest.raises(ValueError):
        lf.permutation_test(np.eye(3), ["a", "b"], n_perm=10)


def test_group_contrast_by_hand(registry):
    lf = _families(registry)
    S = np.array([[1, .8, .2], [.8, 1, .4], [.2, .4, 1]])
    w, b, d = lf.group_contrast(S, ["x", "x", "y"])
    assert (w, b) == pytest.approx((0.8, 0.3)) and d == pytest.approx(0.5)


def test_tatoeba_group_means_pool_small_groups(registry):
    rt = registry["retrieval_tatoeba"]
    curve = lambda v: [{"mean": v, "en2xx": v, "xx2en": v}] * 3  # noqa: E731
    per_lang = {f"l{i}": {"family": "Big", "script": "Latin", "plain": curve(0.1 * i)} for i in range(4)}
    per_lang["x"] = {"family": "Lone", "script": "Thai", "plain": curve(0.9)}
    g = rt.group_means(per_lang, "family", "plain", min_group=3)
    assert g["Big"]["n"] == 4 and g["Big"]["mean"] == pytest.approx([0.15] * 3)
    other = [k for k in g if "other" in k]
    assert len(other) == 1 and g[other[0]]["langs"] == ["x"]


def _parser():
    parser = argparse.ArgumentParser(prog="probe")
    sub = parser.add_subparsers(dest="command")
    add_parser(sub)
    return parser


def test_figures_help_documents_every_option(capsys):
    parser = _parser()
    with pytest.raises(SystemExit) as exc:
        parser.parse_args(["figures", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--model", "--only", "--quick", "--out-root", "--list"):
        assert flag in out
    assert "e5-small-q4" in out and "python3 -m probe.analyses.<name>" in out and "--analyses-dir" not in out
    for name in EXPECTED:
        assert name in out
    args = parser.parse_args(["figures"])
    assert args.model == "e5-small-q4" and args.only is None and not args.quick and args.out_root is None


def test_figures_list_and_unknown_analysis(capsys, tmp_path):
    parser = _parser()
    assert run(parser.parse_args(["figures", "--list"])) == 0
    assert "language_families" in capsys.readouterr().out
    with pytest.raises(ProbeError, match="unknown analysis"):
        run(parser.parse_args(["figures", "--only", "nope", "--out-root", str(tmp_path)]))


def test_figures_runs_selected_analyses_and_prints_paths(capsys, tmp_path, monkeypatch, registry):
    calls = []

    def fake_main(model, out_root, quick):
        calls.append((model, Path(out_root), quick))
        p = Path(out_root) / "results" / "cka_heatmaps.json"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("{}")
        return [p]

    monkeypatch.setattr(registry["cka_heatmaps"], "main", fake_main)
    args = _parser().parse_args(["figures", "--only", "cka_heatmaps", "--quick", "--model", "m",
                                 "--out-root", str(tmp_path)])
    assert run(args) == 0
    assert calls == [("m", tmp_path, True)]
    out = capsys.readouterr().out
    assert "cka_heatmaps.json" in out and "1/1 analyses" in out


def test_figures_runs_the_default_analyses_in_order(capsys, tmp_path, monkeypatch, registry):
    calls = []
    for name in EXPECTED:
        def fake_main(model, out_root, quick, name=name):
            calls.append(name)
            return []

        monkeypatch.setattr(registry[name], "main", fake_main)
    assert run(_parser().parse_args(["figures", "--out-root", str(tmp_path)])) == 0
    assert calls == EXPECTED[:-1]  # finetune_gains runs only when named
    assert f"{len(EXPECTED) - 1}/{len(EXPECTED) - 1} analyses" in capsys.readouterr().out
    calls.clear()
    assert run(_parser().parse_args(["figures", "--only", "Finetune_Gains,scaling", "--out-root", str(tmp_path)])) == 0
    assert calls == ["finetune_gains", "scaling"]


def test_figures_keep_going_reports_failure(capsys, tmp_path, monkeypatch, registry):
    def boom(model, out_root, quick):
        raise RuntimeError("no data")

    monkeypatch.setattr(registry["fusion_sweep"], "main", boom)
    args = _parser().parse_args(["figures", "--only", "fusion_sweep", "--keep-going", "--out-root", str(tmp_path)])
    assert run(args) == 1
    assert "no data" in capsys.readouterr().err


def test_subset_gets_its_own_split_name_and_keeps_pairs_aligned():
    from probe.analyses._common import subset
    from probe.data import Corpus, Sentence

    def corpus(split, prefix):
        sents = [Sentence(sent_id=str(i + 1), text=f"{prefix}{i}", words=[f"{prefix}{i}"]) for i in range(50)]
        return Corpus("tatoeba", "de", split, sents, files=[{"relpath": "x", "sha256": "0" * 64}])

    xx, eng = corpus("xx", "w"), corpus("eng", "e")
    a, b = subset(xx, 10, seed=1), subset(eng, 10, seed=1)
    assert a.split == "xx~n10s1" and b.split == "eng~n10s1"
    assert [s.sent_id for s in a.sentences] == [s.sent_id for s in b.sentences]  # same pairs
    assert a.sha256 != xx.sha256  # a different cache entry from the full corpus
    assert subset(xx, 100) is xx and subset(xx, None) is xx
