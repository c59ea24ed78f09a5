"""AIF/DLFA fusion, the baseline combiners, the heads and the FusionClassifier trainer."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from probe.errors import ProbeError
from probe.fusion import (
    AIF,
    DLFA,
    ArrayView,
    ConcatFusion,
    FusionClassifier,
    LastLayer,
    ScalarMix,
    SequenceClassificationHead,
    SingleLayer,
    TokenTaggingHead,
    build_combiner,
    masked_mean,
    method_layers,
)

E = 16


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _batch(lengths, hidden=E, seed=0):
    g = torch.Generator().manual_seed(seed)
    b, t = len(lengths), max(lengths)
    mask = torch.arange(t)[None, :] < torch.tensor(lengths)[:, None]
    x = torch.randn(b, t, hidden, generator=g)
    y = torch.randn(b, t, hidden, generator=g)
    return x, y, mask


def _repad(x, mask, extra, fill):
    """Same real content, ``extra`` more padded positions, padding filled with ``fill``."""
    b, t, h = x.shape
    x2 = torch.full((b, t + extra, h), fill)
    m2 = torch.zeros(b, t + extra, dtype=torch.bool)
    m2[:, :t] = mask
    x2[:, :t] = torch.where(mask[..., None], x, torch.full_like(x, fill))
    return x2, m2


# --------------------------------------------------------------------------- modules


@pytest.mark.parametrize("norm", ["layer", "batch", "none"])
def test_aif_and_dlfa_shapes_and_range(norm):
    x, y, mask = _batch([5, 3, 1])
    aif = AIF(E, r=4, norm=norm).eval()
    m = aif(x + y, mask)
    assert m.shape == (3, 5, E)
    real = m[mask]
    assert torch.all(real > 0) and torch.all(real < 1)
    z = DLFA(E, norm=norm).eval()(x, y, mask)
    assert z.shape == (3, 5, E)
    assert torch.all(z[~mask] == 0)


@pytest.mark.parametrize("norm", ["layer", "batch", "none"])
@pytest.mark.parametrize("fill", [0.0, 1e6, float("nan")])
@pytest.mark.parametrize("training", [False, True])
def test_padding_changes_nothing(norm, fill, training):
    torch.manual_seed(0)
    x, y, mask = _batch([6, 2, 4])
    dlfa = DLFA(E, norm=norm, dropout=0.0)
    dlfa.train(training)
    ref = copy.deepcopy(dlfa)(x, y, mask)
    x2, m2 = _repad(x, mask, 5, fill)
    y2, _ = _repad(y, mask, 5, fill)
    out = copy.deepcopy(dlfa)(x2, y2, m2)
    assert torch.allclose(out[:, :6][mask], ref[mask], atol=1e-5)
    assert torch.isfinite(out[m2]).all()


@pytest.mark.parametrize("norm", ["layer", "batch"])
def test_dlfa_backward_survives_nan_padding(norm):
    x, y, mask = _batch([4, 2])
    x2, m2 = _repad(x, mask, 3, float("nan"))
    y2, _ = _repad(y, mask, 3, float("nan"))
    dlfa = DLFA(E, norm=norm).train()
    dlfa(x2, y2, m2)[m2].sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in dlfa.parameters() if p.grad is not None)


def test_masked_batchnorm_statistics_ignore_padding():
    w, _, mask = _batch([5, 2])
    a = AIF(E, norm="batch").train()
    b = copy.deepcopy(a)
    a(w, mask)
    w2, m2 = _repad(w, mask, 4, 1e6)
    b(w2, m2)
    for (name, x), (_, y) in zip(a.named_buffers(), b.named_buffers()):
        assert torch.allclose(x, y, atol=1e-5), name
    moved = a.local_branch.norm1.norm.running_mean
    assert not torch.allclose(moved, torch.zeros_like(moved))


@pytest.mark.parametrize("norm", ["layer", "batch", "none"])
def test_gate_at_one_half_gives_the_mean(norm):
    x, y, mask = _batch([4, 3])
    dlfa = DLFA(E, norm=norm).eval()
    with torch.no_grad():
        for p in dlfa.parameters():
            p.zero_()
    m = dlfa.gate(x, y, mask)
    assert torch.allclose(m[mask], torch.full_like(m[mask], 0.5))
    z = dlfa(x, y, mask)
    assert torch.allclose(z[mask], ((x + y) / 2)[mask], atol=1e-6)


def test_masked_mean():
    x = torch.arange(12, dtype=torch.float32).reshape(1, 4, 3).repeat(2, 1, 1)
    mask = torch.tensor([[True, True, False, False], [False, False, False, False]])
    out = masked_mean(x, mask)
    assert torch.allclose(out[0], x[0, :2].mean(0))
    assert torch.all(out[1] == 0)


def test_combiners_shapes_and_layers():
    feats = {i: torch.randn(2, 5, E) for i in range(4)}
    mask = torch.ones(2, 5, dtype=torch.bool)
    as_list = [feats[i] for i in range(4)]
    for comb in (LastLayer(4), SingleLayer(1), ConcatFusion(E, 1, 3), ScalarMix(4),
                 build_combiner("dlfa", 4, E, k=1)):
        assert comb(feats, mask).shape == (2, 5, E)
        assert comb(as_list, mask).shape == (2, 5, E)
    assert torch.equal(LastLayer(4)(feats, mask), feats[3])
    mix = ScalarMix(4)
    assert torch.allclose(mix(feats, mask), sum(feats.values()) / 4, atol=1e-6)
    assert method_layers("dlfa", 13, 3) == (12, 3)
    assert method_layers("dlfa", 13, 12) == (12,)
    assert method_layers("last", 13) == (12,)
    assert method_layers("layer", 13, -1) == (12,)
    assert method_layers("scalarmix", 3) == (0, 1, 2)
    with pytest.raises(ProbeError):
        build_combiner("dlfa", 4, E)
    with pytest.raises(ProbeError):
        build_combiner("dlfa", 4, E, k=4)
    with pytest.raises(ProbeError):
        build_combiner("nope", 4, E)
    with pytest.raises(ProbeError):
        build_combiner("dlfa", 4, E, k=1, norm="group")


def test_heads_shapes():
    z = torch.randn(3, 7, E)
    mask = torch.ones(3, 7, dtype=torch.bool)
    assert TokenTaggingHead(E, 5)(z, mask).shape == (3, 7, 5)
    seg = torch.zeros(3, 7, dtype=torch.bool)
    seg[:, 4:] = True
    assert SequenceClassificationHead(E, 3)(z, mask, seg).shape == (3, 3)
    assert SequenceClassificationHead(E, 3, mlp_hidden=0)(z, mask, seg).shape == (3, 3)
    assert SequenceClassificationHead(E, 2, pair=False)(z, mask).shape == (3, 2)
    with pytest.raises(ProbeError):
        SequenceClassificationHead(E, 3)(z, mask, None)


# --------------------------------------------------------------------------- views / trainer


def _tagging_view(n_sent, k, n_layers=5, n_labels=4, seed=0, strength=3.0):
    """Word labels linearly present in layer ``k`` only; every other layer is pure noise."""
    rng = np.random.default_rng(seed)
    protos = np.random.default_rng(99).standard_normal((n_labels, E))
    lens = rng.integers(2, 14, n_sent)
    offsets = np.concatenate([[0], np.cumsum(lens)])
    y = rng.integers(0, n_labels, offsets[-1])
    layers = rng.standard_normal((n_layers, offsets[-1], E)).astype(np.float16)
    layers[k] += (strength * protos[y]).astype(np.float16)
    return ArrayView(layers, offsets, y)


def test_gather_matches_a_word_loop():
    from probe.fusion import _Gatherer

    view = _tagging_view(20, 2)
    g = _Gatherer(view, (4, 2), "cpu", need_segment=False)
    sents = np.array([3, 0, 17])
    batch = g.batch(sents)
    for row, s in enumerate(sents):
        a, b = view.offsets[s], view.offsets[s + 1]
        n = b - a
        assert batch.mask[row, :n].all() and not batch.mask[row, n:].any()
        for layer in (4, 2):
            expect = torch.from_numpy(view.layer(layer)[a:b].astype(np.float32))
            assert torch.equal(batch.feats[layer][row, :n], expect)
            assert torch.all(batch.feats[layer][row, n:] == 0)


def test_dlfa_finds_the_informative_layer_and_last_layer_does_not():
    k = 1
    train, dev, test = (_tagging_view(n, k, seed=s) for n, s in ((300, 0), (60, 1), (100, 2)))
    common = dict(epochs=6, batch_size=16, lr=5e-3, max_train=None, seed=0)
    dlfa = FusionClassifier(method="dlfa", k=k, **common).fit(train, dev)
    last = FusionClassifier(method="last", **common).fit(train, dev)
    assert train.accessed == {k, 4}
    assert dlfa.score(test) > 0.9
    assert last.score(test) < 0.4  # chance is 0.25
    pred = dlfa.predict(test)
    assert pred.shape == (test.offsets[-1],) and pred.min() >= 0
    assert len(dlfa.predict_sentences(test)) == len(test.offsets) - 1
    assert dlfa.best_epoch_ in range(1, 7) and len(dlfa.history_) == 6


def test_scalar_mix_weights_the_informative_layer():
    k = 2
    train = _tagging_view(300, k, seed=0)
    # no dev view: dev selection would stop at the first perfect epoch, before the weights
    # have moved far from uniform
    clf = FusionClassifier(method="scalarmix", epochs=6, batch_size=16, lr=2e-2,
                           max_train=None).fit(train)
    weights = clf.model_.combiner.weights()
    assert int(np.argmax(weights)) == k
    assert weights[k] > 2 * np.delete(weights, k).max()
    assert train.accessed == set(range(5))


def test_training_is_seeded_and_padding_free_of_eval_batching():
    train, test = _tagging_view(120, 1, seed=0), _tagging_view(40, 1, seed=3)
    kw = dict(method="dlfa", k=1, epochs=2, batch_size=16, max_train=80, seed=7)
    a = FusionClassifier(**kw).fit(train)
    b = FusionClassifier(**kw).fit(train)
    assert np.array_equal(a.predict(test), b.predict(test))
    one = FusionClassifier(**kw, eval_batch_size=1).fit(train)
    assert np.array_equal(one.predict(test), a.predict(test))
    assert a.n_train_sentences_ == 80 and a.best_score_ is None


def test_max_steps_and_params():
    train = _tagging_view(100, 1)
    clf = FusionClassifier(method="concat", k=1, epochs=5, batch_size=10, max_steps=7,
                           max_train=None).fit(train)
    assert clf.history_[-1]["steps"] == 7 and len(clf.history_) == 1
    assert clf.get_params()["k"] == 1
    assert clf.set_params(k=2).k == 2
    with pytest.raises(ProbeError):
        clf.set_params(bogus=1)
    with pytest.raises(ProbeError):
        FusionClassifier().predict(train)
    with pytest.raises(ProbeError):
        FusionClassifier(method="dlfa").fit(train)  # no k
    sklearn_base = pytest.importorskip("sklearn.base")
    clone = sklearn_base.clone(clf)
    assert clone.get_params() == clf.get_params() and not hasattr(clone, "model_")


def test_entity_f1_metric_in_selection():
    names = ["O", "B-PER", "I-PER"]
    rng = np.random.default_rng(0)
    protos = rng.standard_normal((3, E)) * 3

    def view(n, seed):
        r = np.random.default_rng(seed)
        lens = r.integers(3, 9, n)
        off = np.concatenate([[0], np.cumsum(lens)])
        tags = []
        for length in lens:  # well-formed IOB2: O ... B I I ... O
            t = [0] * length
            s = r.integers(0, length - 1)
            t[s], t[s + 1] = 1, 2
            tags += t
        y = np.array(tags)
        layers = r.standard_normal((3, off[-1], E)).astype(np.float32)
        layers[2] += protos[y]
        return ArrayView(layers, off, y, label_names=names)

    clf = FusionClassifier(method="last", metric="f1", epochs=4, lr=1e-2,
                           max_train=None).fit(view(150, 0), view(40, 1))
    assert clf.score(view(50, 2)) > 0.8
    assert clf.best_score_ is not None


def _pair_view(n, seed, n_topics=4):
    """Label 1 when both sentences share a topic; every word carries its sentence's topic."""
    rng = np.random.default_rng(seed)
    protos = np.random.default_rng(7).standard_normal((n_topics, E)) * 2
    la, lb = rng.integers(2, 8, n), rng.integers(2, 8, n)
    ta = rng.integers(0, n_topics, n)
    same = rng.random(n) < 0.5
    tb = np.where(same, ta, (ta + rng.integers(1, n_topics, n)) % n_topics)
    lens = la + lb
    offsets = np.concatenate([[0], np.cumsum(lens)])
    segment = np.concatenate([np.r_[np.zeros(a), np.ones(b)] for a, b in zip(la, lb)])
    topic = np.concatenate([np.r_[np.full(a, x), np.full(b, z)]
                            for a, b, x, z in zip(la, lb, ta, tb)]).astype(int)
    words = protos[topic] + rng.standard_normal((offsets[-1], E))
    layers = np.stack([rng.standard_normal(words.shape), words]).astype(np.float32)
    return ArrayView(layers, offsets, same.astype(int), segment=segment)


def test_trivial_pair_task_is_learnt():
    train, dev, test = _pair_view(400, 0), _pair_view(80, 1), _pair_view(150, 2)
    clf = FusionClassifier(method="dlfa", k=0, task="pair", epochs=8, batch_size=16, lr=3e-3,
                           max_train=None).fit(train, dev)
    assert clf.score(test) > 0.85
    pred = clf.predict(test)
    assert pred.shape == (150,) and set(np.unique(pred)) <= {0, 1}
    with pytest.raises(ProbeError):
        no_segment = ArrayView([train.layer(0), train.layer(1)], train.offsets, train.labels)
        FusionClassifier(method="last", task="pair").fit(no_segment)


def test_array_view_validation():
    layers = np.zeros((2, 5, E), np.float32)
    with pytest.raises(ProbeError):
        ArrayView(layers, [0, 2, 4])  # does not end at n_words
    with pytest.raises(ProbeError):
        ArrayView(layers, [0, 3, 2, 5])
    view = ArrayView(layers, [0, 2, 5], labels=[0, 1, 0, 1, 1])
    assert view.n_layers == 2 and view.hidden == E and view.n_sentences == 2
    with pytest.raises(ProbeError):
        FusionClassifier(method="last", task="pair").fit(view)  # word labels for a pair task
