"""Smoke runs of the benchmark scripts' ``--quick`` modes (benchmarks/): they run and print
their ratio lines. The tiny random encoder stands in for the real one; no figures are
checked here (benchmarks/README.md has the real runs)."""
from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name: str):
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location(f"bench_{name}_under_test", BENCH / f"bench_{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _run(name, argv, capsys, tmp_path, monkeypatch) -> str:
    monkeypatch.setenv("PROBE_HOME", str(tmp_path / "home"))
    assert _load(name).main(argv) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"== bench_{name}\nmachine: ") and "nproc=" in out and "torch" in out
    return out


def _ratios(out: str) -> dict[str, float]:
    return {m.group(1): float(m.group(2))
            for m in re.finditer(r"^RATIO (.+?): (-?[0-9.]+|inf|nan)x \(target .+: (?:HOLDS|MISSES|n/a)\)$",
                                 out, re.M)}


def test_bench_extraction_quick(capsys, tmp_path, monkeypatch):
    out = _run("extraction", ["--quick", "--model", "tiny"], capsys, tmp_path, monkeypatch)
    r = _ratios(out)
    keys = " | ".join(r)
    for what in ("/ naive per-sentence loop", "inner loop", "end to end (+ tokenization", "GFLOP/s / float32 matmul"):
        assert what in keys, out
    assert all(v > 0 for v in r.values())
    assert re.search(r"^naive\s+[0-9.]+", out, re.M) and "GFLOP/s" in out


def test_bench_cka_quick(capsys, tmp_path, monkeypatch):
    out = _run("cka", ["--quick", "--model", "tiny"], capsys, tmp_path, monkeypatch)
    keys = " | ".join(_ratios(out))
    assert "time gram-blocked / feature at n=800" in keys, out
    assert "time gram-ref (linear_cka_gram) / feature at n=800" in keys, out
    assert "peak memory gram-ref / feature" in keys and "x linear_cka_gram / cka_matrix" in keys, out
    assert "within-language layer CKA matrix" in out
    diffs = [float(x) for x in re.findall(r"\|CKA differences\| <= ([0-9.e+-]+)", out)]
    assert diffs and max(diffs) < 1e-8  # the three implementations agree


def test_bench_probes_quick(capsys, tmp_path, monkeypatch):
    out = _run("probes", ["--quick", "--model", "tiny"], capsys, tmp_path, monkeypatch)
    keys = " | ".join(_ratios(out))
    assert "LogisticRegression() / LinearProbe(max_iter=30)" in keys, out
    assert "LogisticRegression() / LinearProbe(max_iter=100)" in keys, out
    assert len(re.findall(r"^ACCURACY max \|LinearProbe", out, re.M)) == 2


def test_bench_memory_quick(capsys, tmp_path, monkeypatch, mirror):
    out = _run("memory", ["--quick"], capsys, tmp_path, monkeypatch)
    keys = " | ".join(_ratios(out))
    assert "cache read / data working set" in keys and "working set / largest float32 layer" in keys, out
    assert re.search(r"^2\. measured run .* peak RSS [0-9.]+ MiB", out, re.M), out
