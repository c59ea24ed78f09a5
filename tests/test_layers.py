"""`probe layers`: the main analysis, end to end with the real offline encoder."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from probe.cli import main
from probe.layerwise import LayerResult, check_targets

pytestmark = pytest.mark.slow


def test_unknown_target_language_lists_the_supported_ones(capsys):
    assert main(["layers", "--lang", "xx", "--model", "e5-small-q4"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown language 'xx'" in err[0]
    for code in ("de", "zh", "ar", "ko"):
        assert code in err[0]
    with pytest.raises(Exception, match="no PUD treebank"):
        check_targets(["nl"])  # a real language, but without a PUD treebank


def test_probe_layers_cli_writes_table_report_and_figures(mirror, tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(["layers", "--lang", "de", "--model", "e5-small-q4", "--tasks", "upos,langid",
               "--train", "ud:dev", "--n-boot", "200", "--out", str(out), "--quiet"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "POS en" in printed and "CKA en-de" in printed and "R en>de" in printed
    assert "upos" not in printed.lower()  # "upos" accepted as input, "pos" printed
    rows = [l for l in printed.splitlines() if l.strip()[:2].strip().isdigit()]
    assert len(rows) >= 13  # one row per layer 0..12

    report = json.loads((out / "report.json").read_text())
    assert report["model"]["name"] == "e5-small-q4" and len(report["model"]["fingerprint"]) == 64
    assert report["layers"] == list(range(13))
    assert report["seeds"]["probe"] == 0 and report["versions"]["torch"]
    assert report["data"]["pud"]["de"]["sha256"] and report["data"]["train"]["split"] == "dev"
    assert report["config"]["tasks"] == ["pos", "langid"]
    pos_en = [r["accuracy"] for r in report["probes"]["pos"]["en"]]
    pos_de = [r["accuracy"] for r in report["probes"]["pos"]["de"]]
    ctrl = [r["accuracy"] for r in report["probes"]["pos"]["control_en"]]
    # A real multilingual encoder: English POS is high in the middle layers, zero-shot German
    # is lower than in-language English, and the task beats its control task.
    assert max(pos_en) > 0.9 and max(pos_de) > 0.7 and max(pos_de) < max(pos_en)
    assert all(a > c for a, c in zip(pos_en, ctrl))
    for r in report["probes"]["pos"]["en"]:
        lo, hi = r["accuracy_ci"]
        assert lo <= r["accuracy"] <= hi
    cka = report["cka"]["de"]["debiased"]
    assert len(cka) == 13 and all(-0.1 < c <= 1.0 for c in cka)
    ret = report["retrieval"]["pud"]["de"]["plain"]
    assert max(x["en2xx"] for x in ret) > 0.8  # e5 is trained for sentence retrieval
    assert np.asarray(report["cka_matrix"]["de"]).shape == (13, 13)
    figures = sorted(p.name for p in out.glob("*.png"))
    assert len(figures) >= 4 and "tradeoff.png" in figures and "cka_en-de.png" in figures

    # The saved report round-trips into the API object, and a second run reuses the cache.
    res = LayerResult.load(out / "report.json")
    assert list(res.table().index) == list(range(13))
    proc = subprocess.run([sys.executable, "-m", "probe.cli", "layers", "--lang", "de", "--model",
                           "e5-small-q4", "--tasks", "pos,langid", "--train", "ud:dev", "--n-boot",
                           "200", "--out", str(tmp_path / "again"), "--quiet"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    again = json.loads((tmp_path / "again" / "report.json").read_text())
    assert again["probes"] == json.loads(json.dumps(report["probes"]))
    assert again["timings_s"]["extract_or_open"] < 30
