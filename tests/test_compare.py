"""`probe compare`: models of different depth on one relative-depth axis, and noise summaries."""
from __future__ import annotations

import json

import numpy as np
import pytest

from probe.compare import compare, nearest_layer, relative_depth
from probe.errors import ProbeError
from probe.layerwise import layer_ranges, noise_summary
from tiny import tiny_spec


def test_probe_compare_is_the_function_and_the_package_both_import():
    """``probe.compare`` is a package and, in probe's public API, a function: right after
    ``import probe`` the attribute is the function; ``from probe.compare import ...`` works."""
    import subprocess
    import sys
    from pathlib import Path

    code = ("import probe, inspect\n"
            "f = probe.compare\n"
            "assert inspect.isfunction(f) and f.__name__ == 'compare', f\n"
            "assert inspect.isfunction(probe.layers) and probe.layers.__name__ == 'layers'\n"
            "from probe.compare import CompareResult, compare\n"
            "assert compare is f and CompareResult is probe.CompareResult\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[1],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_relative_depth_and_nearest_layer():
    assert relative_depth(2).tolist() == [0.0, 0.5, 1.0]
    assert relative_depth(24)[12] == 0.5
    # the middle of a 6-, 12- and 24-layer model are the same relative depth
    assert [nearest_layer(0.5, L) for L in (6, 12, 24)] == [3, 6, 12]
    assert nearest_layer(1.0, 6, fusable=True) == 5  # DLFA fuses a layer below the last
    assert nearest_layer(0.0, 6) == 0
    with pytest.raises(ProbeError):
        nearest_layer(1.5, 6)
    with pytest.raises(ProbeError):
        relative_depth(0)


def test_noise_summary_against_a_brute_force_bootstrap():
    rng = np.random.default_rng(0)
    n_sent, n_layers = 80, 4
    totals = rng.integers(3, 12, size=n_sent)
    p = np.array([0.5, 0.8, 0.78, 0.3])  # layer 2 is close to the peak (1); 0 and 3 are not
    correct = np.stack([rng.binomial(totals, q) for q in p])
    counts = np.stack([np.stack([c, totals], axis=1) for c in correct])
    ns = noise_summary(counts, n_boot=400, seed=3)
    values = correct.sum(1) / totals.sum()
    assert ns["peak_layer"] == int(np.argmax(values)) == 1
    assert ns["peak_value"] == pytest.approx(values[1])
    # brute force: resample sentences, recompute the paired difference, percentile CI
    gen = np.random.default_rng(3)
    idx = [gen.integers(0, n_sent, n_sent) for _ in range(400)]
    for layer in range(n_layers):
        if layer == 1:
            continue
        reps = [(correct[1, i].sum() - correct[layer, i].sum()) / totals[i].sum() for i in idx]
        lo, hi = np.quantile(reps, [0.025, 0.975])
        d, blo, bhi = ns["difference_to_peak"][layer]
        assert d == pytest.approx(values[1] - values[layer], abs=1e-6)
        assert (blo, bhi) == pytest.approx((lo, hi), abs=1e-6)
        assert (layer in ns["within_noise_of_peak"]) == bool(lo <= 0 <= hi)
    assert 0 not in ns["within_noise_of_peak"] and 3 not in ns["within_noise_of_peak"]
    assert layer_ranges([0, 1, 2, 5, 7, 8]) == "0-2, 5, 7-8"


@pytest.mark.slow
def test_compare_two_tiny_models_of_different_depth(mirror, tmp_path):
    """Two random tiny encoders, 2 and 4 layers: every curve lives on [0, 1] relative depth,
    peaks are reported both ways, and the fusion layer sits at the same relative depth."""
    shallow = tiny_spec(max_positions=512, layers=2, hidden=16, seed=1, name="tiny-2")
    deep = tiny_spec(max_positions=512, layers=4, hidden=16, seed=2, name="tiny-4")
    res = compare([shallow, deep], "de", tasks="upos", train=("ud", "dev"), n_boot=100,
                  fusion=True, fusion_seeds=1, fusion_examples=60, fusion_dev=30, fusion_test=30,
                  fusion_epochs=1, progress=False)
    rep = res.report
    assert rep["config"]["tasks"] == ["pos"]  # "upos" accepted, "pos" recorded
    assert [m["n_layers"] for m in rep["models"]] == [2, 4]
    assert rep["curves"]["tiny-2"]["relative_depth"] == [0.0, 0.5, 1.0]
    assert rep["curves"]["tiny-4"]["relative_depth"] == [0.0, 0.25, 0.5, 0.75, 1.0]
    for name, L in (("tiny-2", 2), ("tiny-4", 4)):
        cur = rep["curves"][name]
        for curve in ("cka", "retrieval", "pos_zero_shot"):
            assert len(cur[curve]) == L + 1
            pk = rep["peaks"][name][curve]
            assert pk["relative"] == pytest.approx(pk["layer"] / L)
            assert pk["value"] == pytest.approx(max(cur[curve]))
        for curve in ("cka", "retrieval", "pos_zero_shot"):
            assert rep["peaks"][name][curve]["layer"] in rep["peaks"][name][curve]["within_noise"]
        # the layer results behind the curves are the layers() numbers
        lr = res.layer_results[name].report
        assert cur["cka"] == pytest.approx(lr["cka"]["de"]["debiased"])
    # DLFA fuses the layer nearest relative depth 0.5: layer 1 of 2, layer 2 of 4
    assert rep["fusion"]["tiny-2"]["k"] == 1 and rep["fusion"]["tiny-4"]["k"] == 2
    assert rep["fusion"]["tiny-2"]["relative"] == rep["fusion"]["tiny-4"]["relative"] == 0.5
    # the two models are scored on the same sentences, so their peaks are compared pairwise
    diffs = {d["curve"]: d for d in rep["model_differences"]}
    assert set(diffs) == {"cka", "retrieval", "pos_zero_shot"}
    d = diffs["pos_zero_shot"]
    assert d["difference"] == pytest.approx(d["value_a"] - d["value_b"], abs=1e-9)
    assert d["within_noise"] == (d["lo"] <= 0 <= d["hi"])
    table = res.table()
    assert list(table.index) == ["tiny-2", "tiny-4"] and table.loc["tiny-4", "L"] == 4
    paths = res.save(tmp_path / "cmp")
    assert (tmp_path / "cmp" / "compare.png").is_file() and (tmp_path / "cmp" / "compare.pdf").is_file()
    saved = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert saved["peaks"] == json.loads(json.dumps(rep["peaks"]))
    assert any(p.name == "tiny-4.json" for p in paths)


@pytest.mark.slow  # loads (or converts) the real encoder
def test_compare_rejects_a_duplicate_model_before_any_work():
    with pytest.raises(ProbeError, match="listed twice"):
        compare("e5-small-q4,e5-small-q4", "de", progress=False)


def test_cka_jackknife_against_brute_force_and_invariances():
    from probe.similarity import cka_jackknife, linear_cka
    from probe.stats import jackknife_difference

    rng = np.random.default_rng(4)
    X = rng.standard_normal((120, 10))
    Y = X @ rng.standard_normal((10, 6)) + 0.5 * rng.standard_normal((120, 6))
    reps = cka_jackknife(X, Y, n_groups=6, seed=2)
    group = np.random.default_rng(2).permutation(120) % 6
    brute = [linear_cka(X[group != g], Y[group != g]) for g in range(6)]
    assert reps == pytest.approx(brute, abs=1e-12)
    # each replicate is a CKA: invariant to isotropic scaling and orthogonal maps
    Q = np.linalg.qr(rng.standard_normal((10, 10)))[0]
    assert cka_jackknife(3 * X @ Q, Y, n_groups=6, seed=2) == pytest.approx(reps, abs=1e-10)
    # jackknife standard error of a difference, by the textbook formula
    reps_b = cka_jackknife(X, X[:, :6], n_groups=6, seed=2)
    full_a, full_b = linear_cka(X, Y), linear_cka(X, X[:, :6])
    d = reps - reps_b
    se = np.sqrt(5 / 6 * np.sum((d - d.mean()) ** 2))
    r = jackknife_difference(full_a, full_b, reps, reps_b)
    assert (r.lo, r.hi) == pytest.approx((full_a - full_b - 1.959964 * se, full_a - full_b + 1.959964 * se))
    with pytest.raises(ProbeError):
        cka_jackknife(X, Y, n_groups=1)
