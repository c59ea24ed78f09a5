"""Seeded character-level perturbations and the robustness analysis of `probe layers`."""
from __future__ import annotations

import unicodedata

import numpy as np
import pytest

from probe.data import Corpus, Sentence
from probe.errors import ProbeError
from probe.perturb import Perturbation, changed_fraction, parse_perturbations, perturb_corpus


def _corpus(lang="de"):
    sents = [
        Sentence("s1", "Die Größe des Hauses ist schön.", ["Die", "Größe", "des", "Hauses", "ist", "schön", "."],
                 upos=["DET", "NOUN", "DET", "NOUN", "AUX", "ADJ", "PUNCT"], head=[2, 6, 4, 2, 6, 0, 6],
                 deprel=["det", "nsubj", "det", "nmod", "cop", "root", "punct"],
                 space_after=[True, True, True, True, True, False, False]),
        Sentence("s2", "Émile fährt nach Zürich", ["Émile", "fährt", "nach", "Zürich"],
                 upos=["PROPN", "VERB", "ADP", "PROPN"], space_after=[True, True, True, False]),
        Sentence("s3", "Й и ё", ["Й", "и", "ё"], upos=["X", "X", "X"], space_after=[True, True, False]),
    ]
    return Corpus("pud", lang, "test", sents, files=[{"relpath": "x.conllu", "sha256": "0" * 64}])


def test_parse_perturbations():
    ps = parse_perturbations("typo:0.05,0.1,0.2,drop-diacritics,lowercase")
    assert [str(p) for p in ps] == ["typo:0.05", "typo:0.1", "typo:0.2", "drop-diacritics", "lowercase"]
    assert parse_perturbations(["typo:0.1", "lowercase"]) == [Perturbation("typo", 0.1), Perturbation("lowercase")]
    for bad in ("typo", "typo:2", "lowercase:0.1", "shout", "0.1", "typo:x", ""):
        with pytest.raises(ProbeError):
            parse_perturbations(bad)


def test_drop_diacritics_and_lowercase_keep_segmentation_and_labels():
    c = _corpus()
    d = perturb_corpus(c, "drop-diacritics")
    assert d.sentences[0].words == ["Die", "Große", "des", "Hauses", "ist", "schon", "."]
    assert d.sentences[1].words == ["Emile", "fahrt", "nach", "Zurich"]
    assert d.sentences[2].words == ["И", "и", "е"]
    assert d.sentences[0].text == "Die Große des Hauses ist schon."
    low = perturb_corpus(c, "lowercase")
    assert low.sentences[1].words == ["émile", "fährt", "nach", "zürich"]
    for p in (d, low):
        for a, b in zip(c.sentences, p.sentences):
            assert len(a.words) == len(b.words) and a.upos == b.upos and a.head == b.head
            assert a.deprel == b.deprel and a.sent_id == b.sent_id
    # Devanagari vowel signs are letters of their script, not accents: kept
    hi = Corpus("pud", "hi", "test", [Sentence("h", "किताब", ["किताब"])])
    assert perturb_corpus(hi, "drop-diacritics").sentences[0].words == ["किताब"]
    assert changed_fraction(c, d) == pytest.approx(7 / 14)


def test_typo_is_seeded_per_sentence_and_scales_with_the_rate():
    rng = np.random.default_rng(0)
    words = ["".join(rng.choice(list("abcdefghijklmnopqrstuvwxyz"), size=int(rng.integers(2, 9))))
             for _ in range(3000)]
    sents = [Sentence(f"s{i}", " ".join(words[i:i + 10]), words[i:i + 10]) for i in range(0, 3000, 10)]
    c = Corpus("pud", "en", "test", sents)
    a = perturb_corpus(c, "typo:0.1")
    assert [s.words for s in a.sentences] == [s.words for s in perturb_corpus(c, "typo:0.1").sentences]
    # a sentence gets the same edits in a subset (seeded by sent_id, not position); only the
    # replacement letters, drawn by the corpus's letter frequencies, may differ
    sub = Corpus("pud", "en", "test", sents[5:9])
    changed = [[x != y for x, y in zip(s.words, t.words)] for s, t in zip(sents[5:9], a.sentences[5:9])]
    sub_p = perturb_corpus(sub, "typo:0.1").sentences
    assert [[x != y for x, y in zip(s.words, t.words)] for s, t in zip(sents[5:9], sub_p)] == changed
    assert [[len(w) for w in s.words] for s in sub_p] == [[len(w) for w in s.words] for s in a.sentences[5:9]]
    other_seed = perturb_corpus(c, Perturbation("typo", 0.1, seed=1))
    assert [s.words for s in other_seed.sentences] != [s.words for s in a.sentences]
    fracs = [changed_fraction(c, perturb_corpus(c, f"typo:{r}")) for r in (0.02, 0.1, 0.3)]
    assert fracs[0] < fracs[1] < fracs[2]
    # about 1 - (1 - r)^len of the words change (an edit can rarely be a no-op)
    expected = np.mean([1 - 0.9 ** len(w) for w in words])
    assert fracs[1] == pytest.approx(expected, abs=0.05)
    for s in perturb_corpus(c, "typo:0.3").sentences:
        assert all(w and not any(ch.isspace() for ch in w) for w in s.words)


def test_perturbed_corpus_gets_its_own_cache_key():
    from probe.extraction import cache_key
    from tiny import tiny_spec

    c = _corpus()
    spec = tiny_spec()
    keys = {cache_key(spec, x, "first").digest for x in
            (c, perturb_corpus(c, "typo:0.1"), perturb_corpus(c, "typo:0.2"),
             perturb_corpus(c, Perturbation("typo", 0.1, seed=1)), perturb_corpus(c, "lowercase"))}
    assert len(keys) == 5
    p = perturb_corpus(c, "typo:0.1")
    assert p.split == "test~typo:0.1" and p.perturbation == "typo:0.1"
    assert unicodedata.is_normalized("NFC", " ".join(perturb_corpus(c, "drop-diacritics").sentences[1].words))


@pytest.mark.slow
def test_layers_robustness_with_a_tiny_model(mirror, tmp_path):
    from probe.layerwise import LayerResult, layers
    from tiny import tiny_spec

    spec = tiny_spec(max_positions=512, layers=2, hidden=16, seed=5, name="tiny-robust")
    res = layers("de,zh", model=spec, tasks="upos", train=("ud", "dev"), tatoeba=False, n_boot=100,
                 perturb="typo:0.2,lowercase", progress=False)
    rob = res.report["robustness"]
    assert rob["perturbations"] == ["typo:0.2", "lowercase"]
    zh_lower = rob["results"]["lowercase"]["zh"]
    de_typo = rob["results"]["typo:0.2"]["de"]
    assert zh_lower["changed_words"] < 0.05 < de_typo["changed_words"]
    assert de_typo["cache_key"] != res.report["data"]["pud"]["de"]["cache_key"]
    for l in res.layer_ids:
        d, lo, hi = de_typo["pos"]["drop"][l]
        clean = res.report["probes"]["pos"]["de"][l]["accuracy"]
        assert d == pytest.approx(clean - de_typo["pos"]["accuracy"][l], abs=1e-6)
        assert lo <= d <= hi
        d, lo, hi = de_typo["cka_drop"][l]
        assert d == pytest.approx(res.report["cka"]["de"]["debiased"][l] - de_typo["cka"][l], abs=1e-6)
        assert lo <= d <= hi
    # noise summary: every curve names its peak and the peak is among the tied layers
    for name, n in res.report["noise"]["curves"].items():
        assert n["peak_layer"] in n["within_noise_of_peak"]
    assert res.difference("pos de", 1, 1).difference == 0
    cka_diff = res.difference("cka en-de", 2, 0)
    cka = res.report["cka"]["de"]["debiased"]
    assert cka_diff.difference == pytest.approx(cka[2] - cka[0]) and cka_diff.lo <= cka_diff.difference <= cka_diff.hi
    assert "cka en-zh" in res.report["noise"]["curves"]
    table = res.robustness_table()
    assert len(table) == 2 * 2 * 3  # perturbations x languages x layers
    assert {"pos", "pos drop", "retrieval drop"} <= set(table.columns)
    paths = res.save(tmp_path / "out")
    assert any(p.name == "robustness.png" for p in paths)
    # a second run extracts nothing and fits nothing: the same numbers from the cache
    again = layers("de,zh", model=spec, tasks="upos", train=("ud", "dev"), tatoeba=False, n_boot=100,
                   perturb="typo:0.2,lowercase", progress=False)
    assert again.report["robustness"]["results"] == rob["results"]
    loaded = LayerResult.load(tmp_path / "out" / "report.json")  # counts.npz restored beside it
    assert loaded.difference("pos de", 0, 1) == res.difference("pos de", 0, 1)
    (tmp_path / "out" / "counts.npz").unlink()
    with pytest.raises(ProbeError, match="per-sentence"):
        LayerResult.load(tmp_path / "out").difference("pos de", 0, 1)


def test_cli_rejects_a_bad_perturbation_before_any_work(capsys):
    from probe.cli import main

    assert main(["layers", "--lang", "de", "--model", "e5-small-q4", "--perturb", "typo:5", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "rate in (0, 1]" in err[0]
    assert main(["layers", "--lang", "de", "--model", "e5-small-q4", "--perturb", "blur"]) == 2
    assert "choose from typo, drop-diacritics, lowercase" in capsys.readouterr().err


def test_robustness_table_reads_a_layer_subset_by_position():
    """With ``layers=[0, 6, 12]`` the per-layer lists hold three rows: layer 6 is row 1."""
    from probe.layerwise import LayerResult

    layer_ids = [0, 6, 12]
    drops = [[0.1 * (i + 1), 0.1 * i, 0.1 * (i + 2)] for i in range(3)]
    row = {"changed_words": 0.3, "pos": {"accuracy": [0.5, 0.6, 0.7], "drop": drops},
           "retrieval": [0.8, 0.85, 0.9], "retrieval_drop": drops, "cka_drop": drops}
    report = {"layers": layer_ids, "model": {"name": "m", "n_layers": 12},
              "config": {"tasks": ["pos"], "langs": ["de"]},
              "robustness": {"results": {"typo:0.1": {"de": row}}}}
    table = LayerResult(report).robustness_table()
    assert list(table["layer"]) == layer_ids
    assert list(table["pos"]) == [0.5, 0.6, 0.7]
    assert list(table["retrieval"]) == [0.8, 0.85, 0.9]
    assert table.loc[table["layer"] == 6, "pos drop"].item() == pytest.approx(0.2)
