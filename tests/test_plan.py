"""`probe plan`: sizes agree with what the extraction then writes."""
from __future__ import annotations

import pytest

from probe.plan import entry_disk_bytes, plan
from standins import build_standin
from tiny import MemCorpus, Sent


@pytest.fixture()
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("PROBE_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_planned_size_is_what_extraction_writes_on_real_corpora(mirror, home, tmp_path, capsys):
    from probe.cli import main
    from probe.extraction import extract

    model = str(build_standin("xlmr", tmp_path / "xlmr", layers=3, hidden=32))
    p = plan(model, "de,zh", command="extract", corpus="pud", device="cpu")
    (m,) = p.models
    assert (m.n_layers, m.hidden) == (3, 32) and not any(e.cached for e in m.entries)
    assert m.flops > 0 and m.peak_bytes > m.params * 4 and p.seconds > 0
    for e in m.entries:
        entry = extract(model, "pud", e.lang, progress=False, device="cpu")
        assert e.n_words == entry.n_words and e.n_sentences == entry.n_sentences
        assert e.n_pieces == entry.meta["n_pieces"]
        # exact arrays; only meta.json is estimated (a few KiB of an entry)
        assert abs(e.disk_bytes - entry.disk_bytes) <= 0.02 * entry.disk_bytes
    again = plan(model, "de,zh", command="extract", corpus="pud", device="cpu")
    assert all(e.cached for e in again.models[0].entries) and again.disk_bytes == 0
    assert main(["plan", "extract", "--models", model, "--lang", "de", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "cached" in out and "nothing has been run" in out


def test_entry_size_formula_counts_pairs_and_labels(home, tmp_path):
    from probe.encoders import resolve_encoder
    from probe.extraction import extract_corpus

    sents = [Sent(f"s{i}", ["the", "house", "is", "red"] * (i + 1), upos=["DET", "NOUN", "AUX", "ADJ"] * (i + 1))
             for i in range(5)]
    sents += [Sent("p", ["das", "Haus", "ist", "rot"], n_first=2, label="entailment")]
    for s in sents[:-1]:
        s.label = "x"
    sents[-1].upos = ["DET", "NOUN", "AUX", "ADJ"]
    corpus = MemCorpus(sents)
    spec = resolve_encoder(str(build_standin("bert", tmp_path / "bert")))
    entry = extract_corpus(spec, corpus, progress=False)
    files = {k: v["size"] for k, v in entry.meta["files"].items()}
    planned = entry_disk_bytes(corpus, entry.n_layers, entry.hidden)
    # every file but meta.json exactly; meta.json is the 4 KiB estimate
    assert planned - 4096 == sum(files.values())
