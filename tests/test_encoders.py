"""Encoder names: e5-small-q4, random:<name>, auto, and a local Hugging Face directory."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from probe.encoders import load_encoder, resolve_encoder
from probe.errors import ProbeError


@pytest.fixture(scope="module")
def e5():
    return load_encoder("e5-small-q4")


def _hidden(enc, words):
    batch = enc.tokenizer([words], is_split_into_words=True, return_tensors="pt")
    with torch.inference_mode():
        out = enc.model(**batch, output_hidden_states=True)
    return torch.stack(out.hidden_states)[:, 0].numpy()


@pytest.mark.slow  # loads (or converts) the real encoder
def test_e5_small_q4_exposes_every_layer(e5):
    model, tokenizer, fingerprint = e5  # unpacks like the issue asks
    assert e5.n_layers == 12 and e5.hidden == 384 and e5.max_length == 512
    hs = _hidden(e5, ["Der", "Hund", "schläft", "."])
    assert hs.shape[0] == 13  # 0 = embeddings .. 12 = last layer
    assert len(fingerprint) == 64
    # Resolving again is cheap and stable: the converted model is reused.
    assert resolve_encoder("e5-small-q4").fingerprint == fingerprint


@pytest.mark.slow  # loads (or converts) the real encoder
def test_random_control_has_same_architecture_other_weights(e5):
    rnd = load_encoder("random:e5-small-q4")
    rnd2 = load_encoder("random:e5-small-q4@1")
    assert rnd.fingerprint != e5.fingerprint != rnd2.fingerprint
    assert rnd.n_layers == 12 and rnd.hidden == 384
    assert rnd.tokenizer.get_vocab() == e5.tokenizer.get_vocab()
    a, b = _hidden(rnd, ["a", "b"]), _hidden(e5, ["a", "b"])
    assert a.shape == b.shape and not np.allclose(a, b)
    # seeded: the same name gives the same weights
    again = load_encoder("random:e5-small-q4")
    np.testing.assert_array_equal(_hidden(again, ["a", "b"]), a)


@pytest.mark.slow  # loads (or converts) the real encoder
def test_local_huggingface_directory_loads_the_same_model(e5):
    local = load_encoder(e5.source)
    np.testing.assert_allclose(_hidden(local, ["Hello", "world"]), _hidden(e5, ["Hello", "world"]), atol=1e-5)


@pytest.mark.slow  # loads (or converts) the real encoder
def test_auto_falls_back_to_the_offline_model_and_says_why(capsys, monkeypatch):
    import probe.encoders as encoders

    def unreachable(name, local_only=False):
        raise ProbeError(f"cannot load model {name!r}")

    monkeypatch.setattr(encoders, "_resolve_hf", unreachable)  # as offline, whatever the cache holds
    spec = resolve_encoder("auto")
    assert spec.name == "e5-small-q4"
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bert-base-multilingual-cased" in err[0] and "e5-small-q4" in err[0]


def test_unknown_model_lists_valid_choices():
    with pytest.raises(ProbeError, match="e5-small-q4"):
        resolve_encoder("definitely/not-a-model-xyz")
    with pytest.raises(ProbeError, match="random:<model>"):
        resolve_encoder("random:")
