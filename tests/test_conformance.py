"""Conformance: cached word vectors equal a direct Hugging Face forward, per architecture.

Tiny save_pretrained stand-ins (tests/standins.py), built once per test session, are
loaded through probe's own local-directory path. For each architecture and pooling, every
cached word vector of every layer must equal what ``tokenizer(words)`` /
``tokenizer(a, b)`` + ``model(**inputs, output_hidden_states=True)`` gives, pooled by
hand from ``word_ids()``, within float16 rounding. The corpus has multi-piece words,
Chinese (a bare ``▁`` piece before Han characters in SentencePiece), unknown words and a
sentence pair (segment ids where the tokenizer and the model have them).
"""
from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch

import probe.extraction as ex
from probe.encoders import resolve_encoder
from standins import STANDINS, build_standin
from tiny import MemCorpus, Sent

SENTENCES = [
    ["the", "house", "is", "red", "."],
    ["das", "Haus", "ist", "schön", "unbelievable", "."],
    ["我们", "中文", "好"],
    ["Haus", "zzq", "reding", "."],
]
PAIR = (["the", "house", "is", "red"], ["das", "Haus", "ist", "rot", "."])


@pytest.fixture(scope="session")
def standins(tmp_path_factory):
    root = tmp_path_factory.mktemp("standins")
    return {kind: build_standin(kind, root / kind) for kind in STANDINS}


@pytest.fixture()
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("PROBE_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def _reference(model, tok, words, n_first, pooling):
    """Word vectors ``[L+1, n_words, H]`` of one input, by hand: tokenizer + forward."""
    if n_first is None:
        enc = tok([words], is_split_into_words=True, return_tensors="pt")
    else:
        enc = tok([words[:n_first]], [words[n_first:]], is_split_into_words=True, return_tensors="pt")
    accepted = inspect.signature(model.forward).parameters
    inputs = {k: v for k, v in enc.items() if k in accepted}
    with torch.no_grad():
        hidden = torch.stack(model(**inputs, output_hidden_states=True).hidden_states)[:, 0].numpy()
    seq, wids = enc.sequence_ids(0), enc.word_ids(0)
    ids = enc["input_ids"][0].tolist()
    bare = tok.get_vocab().get("\u2581")
    out = np.zeros((hidden.shape[0], len(words), hidden.shape[-1]), dtype=np.float32)
    for k in range(len(words)):
        side, w = (0, k) if n_first is None or k < n_first else (1, k - n_first)
        pos = [i for i, (s, x) in enumerate(zip(seq, wids)) if s == side and x == w]
        content = [i for i in pos if ids[i] != bare]
        pos = content or pos
        pick = {"first": pos[:1], "last": pos[-1:], "mean": pos}[pooling]
        out[:, k] = hidden[:, pick].mean(axis=1)
    return out


@pytest.mark.parametrize("kind", list(STANDINS))
def test_cached_word_vectors_equal_a_direct_forward(standins, home, kind):
    spec = resolve_encoder(str(standins[kind]))
    encoder = spec.load()
    model, tok = encoder.model, encoder.tokenizer
    sents = [Sent(f"s{i}", w) for i, w in enumerate(SENTENCES)]
    sents.append(Sent("pair", PAIR[0] + PAIR[1], n_first=len(PAIR[0])))
    corpus = MemCorpus(sents)
    # The sentences really exercise multi-piece words and (SentencePiece) bare pieces.
    pieces = tok(["unbelievable"], is_split_into_words=True, add_special_tokens=False)["input_ids"]
    assert len(pieces) > 1
    for pooling in ex.POOLINGS:
        entry = ex.extract_corpus(spec, corpus, pooling=pooling, progress=False, encoder=encoder)
        for s, sent in enumerate(sents):
            ref = _reference(model, tok, sent.words, sent.n_first, pooling)
            a, b = entry.offsets[s], entry.offsets[s + 1]
            got = np.stack([np.asarray(entry.layer(l)[a:b], dtype=np.float32) for l in range(entry.n_layers)])
            assert got.shape == ref.shape
            # float16 storage: relative rounding 2^-11, plus float32 noise of batching/padding
            np.testing.assert_allclose(got, ref, rtol=2e-3, atol=2e-3,
                                       err_msg=f"{kind} pooling={pooling} sentence {s}")


@pytest.mark.slow
def test_probe_compare_runs_on_two_standins_of_different_depth(mirror, tmp_path, home, capsys):
    """`probe compare` (which runs `probe layers` per model) on a 2-layer BERT+WordPiece and a
    3-layer XLM-R+SentencePiece stand-in, loaded from their directories like any local model."""
    import json

    from probe.cli import main

    bert = build_standin("bert", tmp_path / "bert-2", layers=2)
    xlmr = build_standin("xlmr", tmp_path / "xlmr-3", layers=3, seed=1)
    out = tmp_path / "cmp"
    assert main(["compare", "--models", f"{bert},{xlmr}", "--lang", "de", "--train", "ud:dev", "--n-boot", "50",
                 "--no-fusion", "--quiet", "--out", str(out)]) == 0
    rep = json.loads((out / "compare.json").read_text())
    assert [m["n_layers"] for m in rep["models"]] == [2, 3]
    curves = list(rep["curves"].values())
    assert curves[0]["relative_depth"] == [0.0, 0.5, 1.0]
    assert curves[1]["relative_depth"] == pytest.approx([0.0, 1 / 3, 2 / 3, 1.0])
    assert (out / "compare.png").is_file()
