"""Zero-shot layer-fusion transfer (probe.transfer) and the XTREME corpora.

Fast tests use tests/tiny.py's random encoder; two tests use the real offline model
e5-small-q4 on the mirror's XTREME files (a few examples, a reduced sweep).
"""
from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

from probe.data.xtreme import PANX_TAGS, UPOS_TAGS, XNLI_LABELS, entity_f1, label_ids
from probe.errors import ProbeError
from probe.extraction import extract_corpus
from probe.fusion import FusionClassifier
from probe.options import parse_seeds
from probe.transfer import CachedView, FusionResult, sentence_counts, summary_figure, summary_table
from probe.transfer.cli import add_parser, run
from probe.transfer.driver import _parse_layers
from probe.transfer.report import _boot_mean
from probe.transfer.runs import _metric
from tiny import MemCorpus, Sent, tiny_spec


@pytest.fixture()
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("PROBE_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def _tagged(tags_per_sentence, lang, seed=0):
    rng = np.random.default_rng(seed)
    sents = []
    for i, tags in enumerate(tags_per_sentence):
        words = ["".join(rng.choice(list("abcdef"), size=2)) for _ in tags]
        sents.append(Sent(f"s{i}", words, text=" ".join(words), tags=list(tags)))
    return MemCorpus(sents, name=f"mem-{lang}", lang=lang)


# --------------------------------------------------------------------------- views


def test_view_maps_labels_by_name_across_languages(home):
    spec = tiny_spec(max_positions=64)
    # the cache stores ids into each entry's own sorted vocabulary: here NOUN=0 in English
    # but ADJ=0, NOUN=1 in the target; the view must give both the task's ids
    en = _tagged([["NOUN", "VERB", "NOUN"], ["VERB", "PUNCT"]], "en")
    xx = _tagged([["ADJ", "NOUN"], ["X", "VERB", "ADJ", "PUNCT"]], "de", seed=1)
    e_en = extract_corpus(spec, en, progress=False)
    e_xx = extract_corpus(spec, xx, progress=False)
    assert e_en.vocab("tags") == ["NOUN", "PUNCT", "VERB"]
    assert e_xx.vocab("tags")[0] == "ADJ"
    for corpus, entry in ((en, e_en), (xx, e_xx)):
        view = CachedView(entry, "pos")
        flat = [t for s in corpus.sentences for t in s.tags]
        assert view.labels.tolist() == label_ids("pos", flat).tolist()
        assert view.label_names == list(UPOS_TAGS)
        assert view.n_layers == 3 and view.layer(2).shape == (len(flat), 16)
        assert view.segment is None and view.offsets[-1] == len(flat)
    # the same word-level tags as NER labels are rejected by name, not silently remapped
    with pytest.raises(ProbeError, match="not in the task's label list"):
        CachedView(e_en, "ner")


def test_pair_corpus_view_segments_and_training(home):
    spec = tiny_spec(max_positions=64)
    rng = np.random.default_rng(0)
    sents = []
    for i in range(24):
        a = ["".join(rng.choice(list("abc"), 2)) for _ in range(int(rng.integers(1, 5)))]
        b = ["".join(rng.choice(list("def"), 2)) for _ in range(int(rng.integers(1, 5)))]
        sents.append(Sent(f"p{i}", a + b, label=XNLI_LABELS[i % 3], n_first=len(a)))
    corpus = MemCorpus(sents, name="mem-pairs", lang="en")
    entry = extract_corpus(spec, corpus, pooling="mean", progress=False)
    want = np.concatenate([np.arange(len(s.words)) >= s.n_first for s in sents]).astype(np.int8)
    assert entry.segment.tolist() == want.tolist()
    view = CachedView(entry, "xnli")
    assert view.labels.tolist() == [i % 3 for i in range(24)]
    assert view.segment.dtype == np.int8
    clf = FusionClassifier(method="dlfa", k=0, task="pair", n_labels=3, epochs=1,
                           max_train=None, max_dev=None, n_threads=1).fit(view, view)
    counts = sentence_counts(view, clf.predict(view), "accuracy")
    assert counts.shape == (24, 2) and counts[:, 1].tolist() == [1] * 24
    assert _metric(counts.sum(0), "accuracy") == pytest.approx(clf.score(view))
    # a pair task on an entry without segments is a user error
    single = extract_corpus(spec, _tagged([["NOUN"]], "en"), progress=False)
    with pytest.raises(ProbeError, match="segment"):
        CachedView(single, "xnli")


class _View:
    def __init__(self, labels, offsets, names, kind="tagging"):
        self.labels, self.offsets, self.label_names, self.kind = labels, offsets, names, kind


def test_entity_counts_sum_to_seqeval_f1():
    rng = np.random.default_rng(3)
    lens = rng.integers(1, 12, 60)
    offsets = np.concatenate([[0], np.cumsum(lens)])
    gold = rng.integers(0, len(PANX_TAGS), offsets[-1])
    pred = np.where(rng.random(offsets[-1]) < 0.7, gold, rng.integers(0, len(PANX_TAGS), offsets[-1]))
    view = _View(gold, offsets, PANX_TAGS)
    counts = sentence_counts(view, pred, "f1")
    names = list(PANX_TAGS)
    g = [[names[i] for i in gold[a:b]] for a, b in zip(offsets[:-1], offsets[1:])]
    p = [[names[i] for i in pred[a:b]] for a, b in zip(offsets[:-1], offsets[1:])]
    assert _metric(counts.sum(0), "f1") == pytest.approx(entity_f1(g, p))
    acc = sentence_counts(view, pred, "accuracy")
    assert acc[:, 1].tolist() == lens.tolist()
    assert _metric(acc.sum(0), "accuracy") == pytest.approx((gold == pred).mean())


def test_bootstrap_of_seed_means_and_paired_gain():
    rng = np.random.default_rng(0)
    n = 300
    a = np.stack([np.stack([rng.random(n) < 0.8, np.ones(n)], 1) for _ in range(3)]).astype(int)
    lo, hi = _boot_mean(a, "accuracy", n_boot=300)
    mean = np.mean([_metric(x.sum(0), "accuracy") for x in a])
    assert lo < mean < hi and hi - lo < 0.15
    assert _boot_mean(a, "accuracy", n_boot=100, minus=a) == (0.0, 0.0)


def test_argument_parsing():
    assert _parse_layers("all", 12) == list(range(12))
    assert _parse_layers("6, 0,3", 12) == [0, 3, 6]
    with pytest.raises(ProbeError, match=r"0\.\.11"):
        _parse_layers("12", 12)
    with pytest.raises(ProbeError, match="comma-separated integers"):
        _parse_layers("top", 12)
    assert parse_seeds(3) == [0, 1, 2] and parse_seeds([4, 1]) == [1, 4]
    with pytest.raises(ProbeError):
        parse_seeds(0)
    parser = argparse.ArgumentParser(prog="probe")
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["fuse", "--task", "pos", "--lang", "de,zh"])
    assert (args.model, args.layers, args.seeds, args.out, args.max_examples) == \
        ("auto", "all", 3, None, "auto")
    assert parser.parse_args(["fuse", "--task", "ner", "--lang", "de", "--max-test", "all",
                              "--max-examples", "500"]).max_test is None
    with pytest.raises(SystemExit):
        parser.parse_args(["fuse", "--task", "pos", "--lang", "de", "--max-dev", "0"])
    helptext = parser._subparsers._group_actions[0].choices["fuse"].format_help()
    assert "FROZEN" in helptext and "--max-examples" in helptext and "layer L" in helptext


# --------------------------------------------------------------------------- real data


def test_xtreme_corpora_subsample_identity(mirror):
    from probe.data import get_corpus, load_corpus

    if not (mirror / "xtreme").is_dir():
        pytest.skip("the mirror has no xtreme/ folder")
    a = load_corpus("xtreme-pos", "zh", "test@40s0")
    assert a.split == "test@40s0" and len(a) == 40
    assert a.subsample == {"max_examples": 40, "seed": 0, "n_available": 3455, "n_used": 40,
                           "applied": True}
    assert a.files[0]["relpath"] == "xtreme/udpos/test-zh.tsv" and len(a.files[0]["sha256"]) == 64
    assert a.sentences[0].tags and a.sentences[0].sent_id.startswith("test-zh:")
    b = load_corpus("xtreme-pos", "zh", "test@40s1")
    whole = load_corpus("xtreme-pos", "zh", "test")
    assert len({a.sha256, b.sha256, whole.sha256}) == 3
    # a "subsample" as large as the split is the split: same name, same digest, same cache entry
    same = load_corpus("xtreme-pos", "zh", "test@99999")
    assert same.split == "test" and same.sha256 == whole.sha256 and not same.subsample["applied"]
    paws = load_corpus("xtreme-pawsx", "en", "train")
    held = load_corpus("xtreme-pawsx", "de", "dev")
    assert len(paws) == 1499 and len(held) == 501
    assert held.sentences[0].n_first and held.sentences[0].label in ("0", "1")
    assert {f["relpath"] for f in held.files} == {"xtreme/pawsx/dev-de.tsv", "xtreme/pawsx/dev-en.tsv"}
    with pytest.raises(ProbeError, match="leak-free"):
        load_corpus("xtreme-pos", "de", "test")
    with pytest.raises(ProbeError, match="has no Japanese"):
        load_corpus("xtreme-pos", "ja", "test")
    with pytest.raises(ProbeError, match="unknown split"):
        get_corpus("xtreme-ner").load("de", "validation")


@pytest.fixture(scope="module")
def e5(mirror):
    from probe.encoders import resolve_encoder

    if not (mirror / "xtreme").is_dir():
        pytest.skip("the mirror has no xtreme/ folder")
    try:
        spec = resolve_encoder("e5-small-q4")
    except ProbeError as exc:
        pytest.skip(f"e5-small-q4 unavailable: {exc}")
    return spec, spec.load()  # loaded once for the module


@pytest.mark.slow  # loads (or converts) the real encoder
def test_pair_task_corpus_extracts_with_segments(e5):
    from probe.data import load_corpus

    spec, encoder = e5
    data = load_corpus("xtreme-xnli", "de", "test@6s0")
    entry = extract_corpus(spec, data, pooling="mean", progress=False, encoder=encoder)
    assert entry.n_layers == 13 and entry.meta["extractor"]["sentence_pairs"] is True
    seg = np.asarray(entry.segment)
    offsets = np.asarray(entry.offsets)
    for s, sent in enumerate(data.sentences):
        part = seg[offsets[s]:offsets[s + 1]]
        assert part.tolist() == [0] * sent.n_first + [1] * (len(sent.words) - sent.n_first)
    view = CachedView(entry, "xnli")
    assert view.labels.tolist() == label_ids("xnli", [s.label for s in data.sentences]).tolist()
    assert np.isfinite(np.asarray(view.layer(12), dtype=np.float32)).all()


SWEEP = {"layers": [0, 6], "seeds": 2, "max_examples": 80, "max_dev": 30, "max_test": 40,
         "epochs": 2, "n_boot": 200}


@pytest.mark.slow  # loads (or converts) the real encoder
def test_reduced_pos_sweep_with_the_real_model(e5, tmp_path, capsys):
    from probe.transfer import fuse

    spec, encoder = e5
    res = fuse("pos", "de", model=spec, encoder=encoder, n_jobs=2, progress=False, **SWEEP)
    n_runs = len(res.report["runs"])
    assert n_runs >= 2 * 6 and res.report["timings_s"]["runs_computed"] == n_runs

    # the CLI with the same settings: every entry and every run comes from the cache/memo
    parser = argparse.ArgumentParser(prog="probe")
    add_parser(parser.add_subparsers(dest="command"))
    out = tmp_path / "fusion" / "pos"
    args = parser.parse_args([
        "fuse", "--task", "pos", "--lang", "de", "--model", "e5-small-q4", "--layers", "0,6",
        "--seeds", "2", "--max-examples", "80", "--max-dev", "30", "--max-test", "40",
        "--epochs", "2", "--n-boot", "200", "--out", str(out), "--quiet"])
    assert run(args) == 0
    printed = capsys.readouterr().out
    assert "FROZEN" in printed and "DLFA" in printed and str(out) in printed

    rep = json.loads((out / "fusion.json").read_text())
    assert rep["timings_s"]["runs_computed"] == 0 and rep["cache"]["built_now"] == []
    assert rep["results"] == json.loads(json.dumps(res.report["results"]))
    assert rep["task"] == "pos" and rep["langs"] == ["de"] and rep["ks"] == [0, 6]
    assert rep["model"]["name"] == "e5-small-q4"
    assert rep["model"]["fingerprint"] == spec.fingerprint and rep["model"]["n_layers"] == 12
    assert rep["frozen_encoder"] is True and "fine-tunes mBERT" in rep["frozen_encoder_note"]
    assert rep["seeds"]["train"] == [0, 1] and "data" in rep["seeds"]
    assert {"probe", "torch", "numpy", "transformers"} <= set(rep["versions"])
    # German has no XTREME POS test file in the mirror: its dev file is the target
    assert rep["target_split"] == {"de": "dev"}
    data = rep["data"]
    assert data["train"]["split"] == "train@80s0" and data["train"]["n_sentences"] == 80
    assert data["train"]["subsample"]["n_available"] == 21253
    assert data["targets"]["de"]["split"] == "dev@40s0"
    for rec in (data["train"], data["dev"], data["targets"]["de"]):
        assert len(rec["sha256"]) == 64 and rec["files"] and len(rec["files"][0]["sha256"]) == 64
    assert "80 of 21253" in rep["subsample_note"]
    assert rep["cache"]["disk_bytes"] > 0 and rep["cache"]["disk_bytes"] == sum(
        r["disk_bytes"] for r in (data["train"], data["dev"], data["targets"]["de"]))

    methods = {(r["method"], r["k"]) for r in rep["results"]}
    assert {("last", None), ("dlfa", 0), ("dlfa", 6), ("layer", 0), ("layer", 6),
            ("scalarmix", None)} <= methods
    assert any(m == "concat" for m, _ in methods)
    for row in rep["results"]:
        assert 0 <= row["mean"] <= 1 and len(row["per_seed"]) == 2
        assert all(0 <= x <= 1 for x in row["per_seed"])
        assert 0 <= row["ci95"][0] <= row["ci95"][1] <= 1
    last = next(r for r in rep["results"] if r["method"] == "last")
    assert last["gain_vs_last"]["mean"] == 0
    assert rep["best_k"]["de"]["k"] in (0, 6)
    dlfa6 = next(r for r in rep["results"] if r["method"] == "dlfa" and r["k"] == 6)
    lo, hi = dlfa6["gain_vs_layer_k"]["ci95"]
    assert -1 <= lo <= hi <= 1
    assert {"last", "layer", "scalarmix", "concat", "dlfa", "dlfa-fixed"} <= set(rep["comparison"]["de"])
    # honest numbers (issue 14): reference rates, at-chance flags, seeds, parameters, data
    ref = rep["reference"]["de"]
    assert 0 < ref["chance"] < ref["majority"] < 1 and ref["majority_label"] == "NOUN"
    assert f"majority class (NOUN) {ref['majority']:.3f}" in printed
    assert "majority-class rate" in rep["config"]["at_chance"]
    assert rep["n_seeds"] == 2 and "2 seed(s)" in printed
    for row in rep["results"]:
        assert row["n_seeds"] == 2 and isinstance(row["at_chance"], bool)
        assert row["ci95_covers"] == "training seeds and target sentences"
        assert row["at_chance"] == (row["ci95"][0] <= ref["majority"])
        assert row["params"]["total"] == row["params"]["combiner"] + row["params"]["head"]
    fixed = {r["k"] for r in rep["results"] if r["method"] == "dlfa-fixed"}
    assert fixed and rep["params"][f"dlfa-fixed@{min(fixed)}"] == rep["params"][f"dlfa@{min(fixed)}"]
    assert rep["params"]["last"]["combiner"] == 0
    assert all("gain_vs_fixed_gate" in r for r in rep["results"]
               if r["method"] == "dlfa" and r["k"] in fixed)
    assert "POS train" in rep["training_data"]["description"] and "80 sentences used" in printed
    assert rep["leakage"]["de"]["n_dropped"] == 0 and rep["n_target_sentences"]["de"] == 40
    assert "dlfa-fixed is the capacity-matched control" in printed
    for name in ("gain_vs_k", "baselines"):
        assert (out / f"{name}.png").stat().st_size > 0 and (out / f"{name}.pdf").exists()
    assert (out.parent / "summary.png").exists()

    # the cross-task summary reads whichever tasks exist
    other = json.loads(json.dumps(rep))
    other["task"] = "ner"
    (tmp_path / "fusion" / "ner").mkdir()
    (tmp_path / "fusion" / "ner" / "fusion.json").write_text(json.dumps(other))
    table = summary_table([tmp_path / "fusion"])
    assert table["tasks"] == ["pos", "ner"] and "dlfa" in table["rows"]
    paths = summary_figure([tmp_path / "fusion"], tmp_path / "summary.png")
    assert paths[0].stat().st_size > 0
    assert FusionResult.load(out).report["task"] == "pos"
