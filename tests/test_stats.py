"""Sentence bootstrap: vectorised paths against a slow loop over the same resamples."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score

from probe.errors import ProbeError
from probe.stats import (
    CI,
    bootstrap_accuracy,
    bootstrap_ci,
    bootstrap_ci_generic,
    bootstrap_indices,
    bootstrap_macro_f1,
    confusion_counts,
    difference_within_noise,
    per_sentence_counts,
    sentence_groups,
)


def _corpus(n_sentences: int, seed: int, n_labels: int = 5, p_correct: float = 0.8):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 25, n_sentences)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    n = int(offsets[-1])
    y_true = rng.integers(0, n_labels, n)
    hit = rng.random(n) < p_correct
    y_pred = np.where(hit, y_true, rng.integers(0, n_labels, n))
    return y_true, y_pred, offsets


def _words_of(idx: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    return np.concatenate([np.arange(offsets[s], offsets[s + 1]) for s in idx])


def _quantiles(reps, alpha=0.05):
    lo, hi = np.quantile(reps, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def test_matches_slow_loop_on_the_same_resamples():
    y_true, y_pred, offsets = _corpus(60, seed=0)
    correct = y_true == y_pred
    n_boot, seed = 200, 11
    accs, f1s = [], []
    for idx in bootstrap_indices(len(offsets) - 1, n_boot, seed):
        words = _words_of(idx, offsets)
        accs.append(correct[words].sum() / len(words))
        f1s.append(f1_score(y_true[words], y_pred[words], average="macro"))
    ci = bootstrap_accuracy(correct, offsets, n_boot=n_boot, seed=seed)
    assert isinstance(ci, CI)
    assert tuple(ci) == _quantiles(accs)  # identical, not merely close
    f1_ci = bootstrap_macro_f1(y_true, y_pred, offsets, 5, n_boot=n_boot, seed=seed)
    np.testing.assert_allclose(f1_ci, _quantiles(f1s), rtol=0, atol=1e-12)
    # the generic word-level path draws the same sentences
    generic = bootstrap_ci_generic(lambda w: correct[w].mean(), len(correct), offsets, n_boot=n_boot, seed=seed)
    assert tuple(generic) == _quantiles(accs)


def test_block_size_does_not_change_results(monkeypatch):
    import probe.stats as st

    y_true, y_pred, offsets = _corpus(50, seed=1)
    correct = y_true == y_pred
    ref = bootstrap_accuracy(correct, offsets, n_boot=97, seed=3)
    monkeypatch.setattr(st, "_BLOCK_ELEMS", 50 * 7)  # 7 replicates per block
    assert bootstrap_accuracy(correct, offsets, n_boot=97, seed=3) == ref


def test_ci_contains_estimate_and_shrinks_with_more_sentences():
    widths = []
    for n_sent in (40, 2000):
        y_true, y_pred, offsets = _corpus(n_sent, seed=n_sent)
        correct = y_true == y_pred
        lo, hi = bootstrap_accuracy(correct, offsets, n_boot=500, seed=0)
        assert lo <= correct.mean() <= hi
        f_lo, f_hi = bootstrap_macro_f1(y_true, y_pred, offsets, n_boot=500, seed=0)
        assert f_lo <= f1_score(y_true, y_pred, average="macro") <= f_hi
        widths.append(hi - lo)
    assert widths[1] < widths[0] / 3  # about sqrt(50) = 7x narrower


def test_sentence_ids_equivalent_to_offsets_and_order_free():
    y_true, y_pred, offsets = _corpus(30, seed=2)
    correct = y_true == y_pred
    group, G = sentence_groups(len(correct), offsets)
    assert G == 30
    by_offsets = bootstrap_accuracy(correct, offsets, n_boot=100, seed=5)
    by_ids = bootstrap_accuracy(correct, sentence_ids=group, n_boot=100, seed=5)
    assert by_offsets == by_ids
    perm = np.random.default_rng(0).permutation(len(correct))  # words shuffled, ids follow
    assert bootstrap_accuracy(correct[perm], sentence_ids=group[perm], n_boot=100, seed=5) == by_offsets
    assert bootstrap_macro_f1(y_true[perm], y_pred[perm], sentence_ids=group[perm], n_boot=100, seed=5) == pytest.approx(
        bootstrap_macro_f1(y_true, y_pred, offsets, n_boot=100, seed=5), abs=1e-15
    )


def test_confusion_counts_and_generic_ci():
    y_true, y_pred, offsets = _corpus(20, seed=3, n_labels=4)
    counts = confusion_counts(y_true, y_pred, offsets, n_labels=4)
    assert counts.shape == (20, 3, 4)
    tp, fp, fn = counts.sum(0)
    for k in range(4):
        assert tp[k] == np.sum((y_true == k) & (y_pred == k))
        assert fp[k] == np.sum((y_true != k) & (y_pred == k))
        assert fn[k] == np.sum((y_true == k) & (y_pred != k))
    per_sent = per_sentence_counts(y_true == y_pred, offsets)
    assert per_sent.shape == (20,) and per_sent.sum() == np.sum(y_true == y_pred)
    totals = per_sentence_counts(np.stack([y_true == y_pred, np.ones(len(y_true))], 1), offsets)
    assert bootstrap_ci(lambda t: t[:, 0] / t[:, 1], totals, n_boot=150, seed=9) == bootstrap_accuracy(
        y_true == y_pred, offsets, n_boot=150, seed=9
    )


def test_paired_difference():
    y_true, y_pred, offsets = _corpus(300, seed=4)
    a = y_true == y_pred
    same = difference_within_noise(a, a, offsets, n_boot=200, seed=0)
    assert same.difference == 0 and same.lo == 0 and same.hi == 0 and same.within_noise
    rng = np.random.default_rng(1)
    b = a & (rng.random(len(a)) < 0.7)  # b is clearly worse
    res = difference_within_noise(a, b, offsets, n_boot=300, seed=2)
    assert res.difference == pytest.approx(a.mean() - b.mean())
    assert 0 < res.lo <= res.difference <= res.hi and not res.within_noise
    # paired: same resamples for both systems, checked against a loop
    diffs = []
    for idx in bootstrap_indices(len(offsets) - 1, 300, 2):
        w = _words_of(idx, offsets)
        diffs.append((a[w].sum() - b[w].sum()) / len(w))
    np.testing.assert_allclose((res.lo, res.hi), _quantiles(diffs), rtol=0, atol=1e-15)
    # a tiny random perturbation is within noise
    c = a.copy()
    c[:3] = ~c[:3]
    assert difference_within_noise(a, c, offsets, n_boot=300, seed=2).within_noise


def test_word_level_units_and_errors():
    correct = np.array([1, 0, 1, 1], bool)
    lo, hi = bootstrap_accuracy(correct, n_boot=50, seed=0)  # every word its own unit
    assert 0 <= lo <= hi <= 1
    with pytest.raises(ProbeError):
        bootstrap_accuracy(correct, [0, 2, 3])  # does not end at n_words
    with pytest.raises(ProbeError):
        bootstrap_accuracy(correct, [0, 3, 2, 4])  # decreasing
    with pytest.raises(ProbeError):
        bootstrap_accuracy(correct, [0, 4], sentence_ids=[0, 0, 0, 0])
    with pytest.raises(ProbeError):
        bootstrap_accuracy(correct, [0, 4], n_boot=0)
    with pytest.raises(ProbeError):
        bootstrap_macro_f1([0, 1], [0, 2], n_labels=2)
