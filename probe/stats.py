"""Percentile bootstrap over sentences, vectorised.

Words of one sentence are not independent, so confidence intervals resample
*sentences* with replacement and recompute the word-level metric on the words of
the resampled sentences.  For additive metrics this never touches words again:
each sentence is summarised once by its counts (``[n_sentences, ...]``: correct
and total words; per-class tp/fp/fn), a replicate's totals are ``w @ counts``
with ``w: [n_sentences]`` how often each sentence was drawn, and the metric is
evaluated on those totals for a block of replicates at once.

Sentences are given either by ``offsets: [n_sentences + 1]`` (sentence ``s`` is
words ``offsets[s]:offsets[s+1]``, ``offsets[0] == 0``, ``offsets[-1] == n_words``)
or by ``sentence_ids: [n_words]`` (any labels; words need not be contiguous).
With neither, every word is its own resampling unit.

Resampled indices come from :func:`bootstrap_indices`: one
``numpy.random.Generator(seed)`` draws ``integers(0, n_sentences, n_sentences)``
once per replicate, in replicate order, so results do not depend on how the
vectorised code blocks its work and a slow reference loop reproduces them exactly.

The interval is the percentile interval ``quantile(replicates, [alpha/2,
1 - alpha/2])`` (``numpy.nanquantile``, linear interpolation; replicates where
the metric is undefined, e.g. only empty sentences drawn, are ignored).

>>> import numpy as np
>>> correct = np.array([1, 1, 0, 1, 0, 1, 1, 1], bool)
>>> offsets = np.array([0, 3, 5, 8])
>>> lo, hi = bootstrap_accuracy(correct, offsets, n_boot=200, seed=0)
>>> bool(lo <= correct.mean() <= hi)
True
"""
from __future__ import annotations

from typing import Callable, Iterator, NamedTuple

import numpy as np

from .errors import ProbeError

__all__ = [
    "CI",
    "PairedDifference",
    "sentence_groups",
    "per_sentence_counts",
    "bootstrap_indices",
    "bootstrap_replicates",
    "bootstrap_ci",
    "bootstrap_ci_generic",
    "bootstrap_accuracy",
    "confusion_counts",
    "macro_f1_from_counts",
    "bootstrap_macro_f1",
    "difference_within_noise",
    "paired_difference_counts",
    "jackknife_difference",
    "ReferenceRates",
    "SeedSentenceInterval",
    "score_from_counts",
    "majority_label",
    "reference_rates",
    "seed_sentence_bootstrap",
    "at_chance",
    "best_above_chance",
]

_BLOCK_ELEMS = 1 << 22  # replicate-block size x n_sentences (about 32 MB of float64 weights)


class CI(NamedTuple):
    """A percentile confidence interval; unpacks as ``lo, hi``."""

    lo: float
    hi: float


class PairedDifference(NamedTuple):
    """Paired-bootstrap result for ``metric(a) - metric(b)``."""

    difference: float  #: point estimate on the full data
    lo: float
    hi: float
    within_noise: bool  #: ``lo <= 0 <= hi``: the CI of the difference contains 0


# --------------------------------------------------------------------------- grouping


def sentence_groups(n_words: int, offsets=None, sentence_ids=None) -> tuple[np.ndarray, int]:
    """Sentence index of every word, ``[n_words]`` int64 in ``0..n_sentences-1``, and ``n_sentences``.

    >>> sentence_groups(5, offsets=[0, 2, 2, 5])
    (array([0, 0, 2, 2, 2]), 3)
    >>> sentence_groups(4, sentence_ids=["b", "a", "b", "c"])
    (array([1, 0, 1, 2]), 3)
    """
    if offsets is not None and sentence_ids is not None:
        raise ProbeError("give either offsets or sentence_ids, not both")
    if offsets is not None:
        offsets = np.asarray(offsets)
        if offsets.ndim != 1 or len(offsets) < 1 or not np.issubdtype(offsets.dtype, np.integer):
            raise ProbeError("offsets must be a 1-D integer array [n_sentences + 1]")
        sizes = np.diff(offsets)
        if offsets[0] != 0 or offsets[-1] != n_words or (sizes < 0).any():
            raise ProbeError(
                f"offsets must be non-decreasing from 0 to n_words={n_words}, "
                f"got {offsets[0]}..{offsets[-1]}"
            )
        return np.repeat(np.arange(len(sizes)), sizes), len(sizes)
    if sentence_ids is not None:
        sentence_ids = np.asarray(sentence_ids)
        if sentence_ids.shape != (n_words,):
            raise ProbeError(f"sentence_ids must have shape ({n_words},), got {sentence_ids.shape}")
        uniq, inverse = np.unique(sentence_ids, return_inverse=True)
        return inverse.astype(np.int64).ravel(), len(uniq)
    return np.arange(n_words), n_words


def per_sentence_counts(values, offsets=None, *, sentence_ids=None) -> np.ndarray:
    """Sum word-level ``values: [n_words, ...]`` per sentence -> ``[n_sentences, ...]`` float64.

    >>> per_sentence_counts(np.array([1, 0, 1, 1]), [0, 1, 4])
    array([1., 2.])
    """
    values = np.asarray(values, dtype=np.float64)
    group, n_groups = sentence_groups(len(values), offsets, sentence_ids)
    flat = values.reshape(len(values), -1)
    out = np.stack([np.bincount(group, weights=flat[:, j], minlength=n_groups) for j in range(flat.shape[1])], axis=1)
    return out.reshape((n_groups,) + values.shape[1:])


# --------------------------------------------------------------------------- resampling


def _check_boot(n_boot: int, alpha: float) -> None:
    if int(n_boot) < 1:
        raise ProbeError(f"n_boot must be >= 1, got {n_boot}")
    if not 0 < alpha < 1:
        raise ProbeError(f"alpha must be in (0, 1), got {alpha}")


def bootstrap_indices(n_groups: int, n_boot: int, seed=0) -> Iterator[np.ndarray]:
    """The resampled sentence indices of each replicate, ``[n_groups]`` int64, in order.

    This is the single source of randomness of the module: replicate ``k`` is the
    ``k``-th ``rng.integers(0, n_groups, n_groups)`` of ``np.random.default_rng(seed)``.

    >>> [i.tolist() for i in bootstrap_indices(3, 2, seed=0)]
    [[2, 1, 1], [0, 0, 0]]
    """
    if n_groups < 1:
        raise ProbeError("bootstrap needs at least one sentence")
    rng = np.random.default_rng(seed)
    for _ in range(int(n_boot)):
        yield rng.integers(0, n_groups, n_groups)


def _weight_blocks(n_groups: int, n_boot: int, seed) -> Iterator[np.ndarray]:
    """Blocks ``[b, n_groups]`` of draw counts (how often each sentence was drawn)."""
    block = max(1, min(int(n_boot), _BLOCK_ELEMS // n_groups))
    it = bootstrap_indices(n_groups, n_boot, seed)
    remaining = int(n_boot)
    while remaining:
        b = min(block, remaining)
        idx = np.stack([next(it) for _ in range(b)])  # [b, n_groups]
        flat = (idx + (np.arange(b) * n_groups)[:, None]).ravel()
        yield np.bincount(flat, minlength=b * n_groups).reshape(b, n_groups).astype(np.float64)
        remaining -= b


def bootstrap_replicates(statistic: Callable, counts, *, n_boot: int = 1000, seed=0) -> np.ndarray:
    """Bootstrap replicates ``[n_boot]`` of ``statistic`` applied to resampled count totals.

    ``counts: [n_sentences, ...]`` are additive per-sentence counts; ``statistic``
    maps totals ``[b, ...]`` (a block of replicates) to ``[b]`` metric values.
    """
    counts = np.asarray(counts, dtype=np.float64)
    if counts.ndim < 1 or len(counts) < 1:
        raise ProbeError("counts must be an array [n_sentences, ...] with at least one sentence")
    G = len(counts)
    flat = counts.reshape(G, -1)
    out = []
    for w in _weight_blocks(G, n_boot, seed):
        totals = (w @ flat).reshape((len(w),) + counts.shape[1:])
        out.append(np.asarray(statistic(totals), dtype=np.float64).reshape(len(w)))
    return np.concatenate(out)


def _percentile(reps: np.ndarray, alpha: float) -> CI:
    if np.isnan(reps).all():
        return CI(float("nan"), float("nan"))
    lo, hi = np.nanquantile(reps, [alpha / 2, 1 - alpha / 2])
    return CI(float(lo), float(hi))


def bootstrap_ci(
    statistic: Callable, counts, *, n_boot: int = 1000, seed=0, alpha: float = 0.05
) -> CI:
    """Percentile bootstrap CI over sentences for a metric of additive counts.

    ``counts: [n_sentences, ...]``: per-sentence sufficient statistics (see
    :func:`per_sentence_counts`); ``statistic(totals: [b, ...]) -> [b]`` is the
    metric of summed counts, vectorised over a block of ``b`` replicates.  The
    point estimate is ``statistic(counts.sum(0)[None])[0]``.

    >>> counts = np.array([[2, 3], [1, 2], [3, 3]])      # correct, total per sentence
    >>> lo, hi = bootstrap_ci(lambda t: t[:, 0] / t[:, 1], counts, n_boot=100, seed=1)
    >>> bool(0 <= lo <= 6 / 8 <= hi <= 1)
    True
    """
    _check_boot(n_boot, alpha)
    return _percentile(bootstrap_replicates(statistic, counts, n_boot=n_boot, seed=seed), alpha)


def bootstrap_ci_generic(
    word_statistic: Callable[[np.ndarray], float],
    n_words: int,
    offsets=None,
    *,
    sentence_ids=None,
    n_boot: int = 1000,
    seed=0,
    alpha: float = 0.05,
) -> CI:
    """Percentile bootstrap CI over sentences for *any* word-level metric (slow path).

    ``word_statistic(word_index: [m] int) -> float`` computes the metric on the
    words ``word_index`` (all words of the resampled sentences, with repeats).
    One Python call per replicate: use :func:`bootstrap_ci` when the metric is
    a function of additive per-sentence counts.  Same resamples as the fast path.

    >>> y = np.array([1, 0, 1, 1, 0, 1])
    >>> lo, hi = bootstrap_ci_generic(lambda i: y[i].mean(), 6, [0, 2, 4, 6], n_boot=50)
    >>> bool(lo <= y.mean() <= hi)
    True
    """
    _check_boot(n_boot, alpha)
    group, G = sentence_groups(n_words, offsets, sentence_ids)
    order = np.argsort(group, kind="stable")
    sizes = np.bincount(group, minlength=G)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    reps = np.empty(int(n_boot))
    for k, idx in enumerate(bootstrap_indices(G, n_boot, seed)):
        lens = sizes[idx]
        total = int(lens.sum())
        # positions starts[idx[j]] + 0..lens[j]-1, concatenated
        pos = np.repeat(starts[idx] - np.concatenate([[0], np.cumsum(lens)[:-1]]), lens) + np.arange(total)
        reps[k] = word_statistic(order[pos]) if total else np.nan
    return _percentile(reps, alpha)


# --------------------------------------------------------------------------- metrics


def _acc_stat(t: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return t[:, 0] / t[:, 1]


def bootstrap_accuracy(
    correct, offsets=None, *, sentence_ids=None, n_boot: int = 1000, seed=0, alpha: float = 0.05
) -> CI:
    """Sentence-bootstrap CI of word accuracy.

    ``correct: [n_words]`` bool; sentences by ``offsets: [n_sentences + 1]`` or
    ``sentence_ids: [n_words]``.  Returns ``CI(lo, hi)``.

    >>> c = np.array([1, 1, 1, 0, 1, 0], bool)
    >>> lo, hi = bootstrap_accuracy(c, [0, 2, 4, 6], n_boot=100)
    >>> bool(0 <= lo <= c.mean() <= hi <= 1)
    True
    """
    correct = np.asarray(correct).astype(np.float64).ravel()
    counts = per_sentence_counts(np.stack([correct, np.ones_like(correct)], axis=1), offsets, sentence_ids=sentence_ids)
    return bootstrap_ci(_acc_stat, counts, n_boot=n_boot, seed=seed, alpha=alpha)


def confusion_counts(y_true, y_pred, offsets=None, sentence_ids=None, n_labels: int | None = None) -> np.ndarray:
    """Per-sentence ``[n_sentences, 3, n_labels]`` float64 counts: tp, fp, fn per class.

    ``y_true, y_pred: [n_words]`` integer codes in ``0..n_labels-1``.

    >>> confusion_counts([0, 1, 1], [0, 0, 1], [0, 1, 3], n_labels=2)[1].tolist()
    [[0.0, 1.0], [1.0, 0.0], [0.0, 1.0]]
    """
    y_true = np.asarray(y_true).ravel()
    y_pred = np.asarray(y_pred).ravel()
    if y_true.shape != y_pred.shape:
        raise ProbeError(f"y_true and y_pred must have the same length, got {len(y_true)} and {len(y_pred)}")
    if not (np.issubdtype(y_true.dtype, np.integer) and np.issubdtype(y_pred.dtype, np.integer)):
        raise ProbeError("labels must be integer codes 0..n_labels-1 (see probe.probes.evaluate for any labels)")
    if n_labels is None:
        n_labels = int(max(y_true.max(initial=-1), y_pred.max(initial=-1))) + 1
    if len(y_true) and (min(y_true.min(), y_pred.min()) < 0 or max(y_true.max(), y_pred.max()) >= n_labels):
        raise ProbeError(f"labels must lie in 0..{n_labels - 1}")
    group, G = sentence_groups(len(y_true), offsets, sentence_ids)
    hit = y_true == y_pred
    out = np.zeros(G * 3 * n_labels)
    base = group * (3 * n_labels)
    out += np.bincount(base[hit] + y_true[hit], minlength=len(out))  # tp
    out += np.bincount(base[~hit] + n_labels + y_pred[~hit], minlength=len(out))  # fp
    out += np.bincount(base[~hit] + 2 * n_labels + y_true[~hit], minlength=len(out))  # fn
    return out.reshape(G, 3, n_labels)


def macro_f1_from_counts(totals) -> np.ndarray:
    """Macro-F1 from summed ``[b, 3, n_labels]`` (tp, fp, fn) -> ``[b]``.

    Averages ``2tp / (2tp + fp + fn)`` over the labels that occur in ``y_true`` or
    ``y_pred`` (``tp + fp + fn > 0``), like ``sklearn.metrics.f1_score(average="macro")``.
    """
    totals = np.asarray(totals, dtype=np.float64)
    tp, fp, fn = totals[:, 0], totals[:, 1], totals[:, 2]
    den = 2 * tp + fp + fn
    present = den > 0
    f1 = np.divide(2 * tp, den, out=np.zeros_like(den), where=present)
    n_present = present.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n_present > 0, f1.sum(axis=1) / n_present, np.nan)


def bootstrap_macro_f1(
    y_true,
    y_pred,
    offsets=None,
    n_labels: int | None = None,
    *,
    sentence_ids=None,
    n_boot: int = 1000,
    seed=0,
    alpha: float = 0.05,
) -> CI:
    """Sentence-bootstrap CI of macro-F1.

    ``y_true, y_pred: [n_words]`` integer codes in ``0..n_labels-1`` (default: max
    code + 1).  Each replicate averages F1 over the labels present in its own
    resample (``y_true`` or ``y_pred``), matching sklearn on the resampled words.

    >>> t = np.array([0, 1, 2, 1, 0, 2]); p = np.array([0, 1, 1, 1, 0, 2])
    >>> lo, hi = bootstrap_macro_f1(t, p, [0, 3, 6], 3, n_boot=100)
    >>> bool(0 <= lo <= hi <= 1)
    True
    """
    counts = confusion_counts(y_true, y_pred, offsets, sentence_ids, n_labels)
    return bootstrap_ci(macro_f1_from_counts, counts, n_boot=n_boot, seed=seed, alpha=alpha)


def difference_within_noise(
    a_correct,
    b_correct,
    offsets=None,
    *,
    sentence_ids=None,
    n_boot: int = 1000,
    seed=0,
    alpha: float = 0.05,
) -> PairedDifference:
    """Paired sentence bootstrap of the accuracy difference ``acc(a) - acc(b)``.

    ``a_correct, b_correct: [n_words]`` bool, two systems on the same words.  Both
    are resampled with the *same* sentences in every replicate.  Returns
    ``PairedDifference(difference, lo, hi, within_noise)`` where ``within_noise``
    is true when the ``1 - alpha`` CI of the difference contains 0.

    >>> a = np.array([1, 1, 0, 1, 1, 0], bool); b = np.array([1, 0, 0, 1, 1, 0], bool)
    >>> r = difference_within_noise(a, b, [0, 2, 4, 6], n_boot=200)
    >>> round(r.difference, 4), r.within_noise
    (0.1667, True)
    """
    _check_boot(n_boot, alpha)
    a = np.asarray(a_correct).astype(np.float64).ravel()
    b = np.asarray(b_correct).astype(np.float64).ravel()
    if a.shape != b.shape:
        raise ProbeError(f"a_correct and b_correct must have the same length, got {len(a)} and {len(b)}")
    counts = per_sentence_counts(np.stack([a - b, np.ones_like(a)], axis=1), offsets, sentence_ids=sentence_ids)
    diff = float(_acc_stat(counts.sum(axis=0)[None])[0])
    lo, hi = _percentile(bootstrap_replicates(_acc_stat, counts, n_boot=n_boot, seed=seed), alpha)
    return PairedDifference(diff, lo, hi, bool(lo <= 0 <= hi))


def paired_difference_counts(
    correct_a, correct_b, totals, *, n_boot: int = 1000, seed=0, alpha: float = 0.05
) -> PairedDifference:
    """Like :func:`difference_within_noise`, from per-sentence counts.

    ``correct_a, correct_b, totals: [n_sentences]``: how many units of each sentence
    system a and b got right, out of ``totals`` (words for a probe; 2 for retrieval
    counted in both directions).  Both systems must be scored on the same sentences,
    e.g. two layers, two models, or clean vs perturbed text with the same gold labels.

    >>> r = paired_difference_counts([2, 1, 3], [1, 1, 3], [3, 2, 3], n_boot=200)
    >>> round(r.difference, 4), r.lo <= r.difference <= r.hi
    (0.125, True)
    """
    _check_boot(n_boot, alpha)
    a = np.asarray(correct_a, dtype=np.float64).ravel()
    b = np.asarray(correct_b, dtype=np.float64).ravel()
    t = np.asarray(totals, dtype=np.float64).ravel()
    if not (a.shape == b.shape == t.shape):
        raise ProbeError(f"correct_a, correct_b and totals need one value per sentence, got lengths "
                         f"{len(a)}, {len(b)}, {len(t)}")
    counts = np.stack([a - b, t], axis=1)
    diff = float(_acc_stat(counts.sum(axis=0)[None])[0])
    lo, hi = _percentile(bootstrap_replicates(_acc_stat, counts, n_boot=n_boot, seed=seed), alpha)
    return PairedDifference(diff, lo, hi, bool(lo <= 0 <= hi))


def jackknife_difference(full_a: float, full_b: float, reps_a, reps_b, *, z: float = 1.959964) -> PairedDifference:
    """``a - b`` with a delete-a-group jackknife interval from paired replicates.

    ``reps_a, reps_b: [n_groups]``: the statistic without group ``g`` (same groups for both,
    e.g. :func:`probe.similarity.cka_jackknife` with one seed). The standard error is
    ``sqrt((g - 1) / g * sum((d_g - mean(d))^2))`` with ``d_g = reps_a[g] - reps_b[g]``; the
    interval is ``d ± z * se`` (normal approximation, 95% by default).

    >>> r = jackknife_difference(0.8, 0.7, [0.80, 0.81, 0.79], [0.70, 0.70, 0.70])
    >>> round(r.difference, 3), r.within_noise
    (0.1, False)
    """
    da = np.asarray(reps_a, dtype=np.float64).ravel()
    db = np.asarray(reps_b, dtype=np.float64).ravel()
    if da.shape != db.shape or len(da) < 2:
        raise ProbeError(f"need paired replicates of the same length >= 2, got {len(da)} and {len(db)}")
    d = da - db
    g = len(d)
    se = float(np.sqrt((g - 1) / g * np.sum((d - d.mean()) ** 2)))
    diff = float(full_a - full_b)
    lo, hi = diff - z * se, diff + z * se
    return PairedDifference(diff, lo, hi, bool(lo <= 0 <= hi))


# --------------------------------------------------------------------------- honest numbers
#
# Shared by every harness that trains on English and scores zero-shot targets (``probe fuse``,
# ``probe finetune``): what a model that learned nothing would score, an interval that covers
# training seeds as well as target sentences, and the "at chance" rule.


class ReferenceRates(NamedTuple):
    """What predictors that learned nothing score on one target (see :func:`reference_rates`)."""

    majority_label: int  #: the most frequent label of the *training* data
    majority: float  #: score of predicting ``majority_label`` everywhere
    chance: float  #: mean score of guessing labels at random with the training frequencies
    n_chance_draws: int  #: random guesses averaged for ``chance``


class SeedSentenceInterval(NamedTuple):
    """A seed-and-sentence bootstrap result (see :func:`seed_sentence_bootstrap`).

    ``lo``/``hi`` are None when an interval would not cover seed variance: fewer than two
    seeds on a side of a difference (one seed gives no gain interval).
    """

    estimate: float  #: the statistic on the full data (mean over seeds; a difference of means)
    lo: float | None
    hi: float | None
    n_seeds: int  #: seeds behind the estimate (the smaller side for a difference)
    n_sentences: int
    n_boot: int
    note: str


def score_from_counts(totals, metric: str) -> np.ndarray:
    """Metric from summed additive counts ``[..., c]`` -> ``[...]`` float64.

    ``metric="accuracy"``: ``c = 2`` (correct, labelled items). ``metric="f1"``: ``c = 3``
    (true-positive, predicted and gold entities), giving micro F1. An empty denominator
    scores 0.

    >>> score_from_counts(np.array([[3, 4], [0, 0]]), "accuracy").tolist()
    [0.75, 0.0]
    >>> float(score_from_counts(np.array([2, 3, 5]), "f1"))
    0.5
    """
    t = np.asarray(totals, dtype=np.float64)
    if metric == "accuracy":
        return np.where(t[..., 1] > 0, t[..., 0] / np.maximum(t[..., 1], 1), 0.0)
    if metric == "f1":
        den = t[..., 1] + t[..., 2]
        return np.where(den > 0, 2 * t[..., 0] / np.maximum(den, 1), 0.0)
    raise ProbeError(f"unknown metric {metric!r}; choose accuracy or f1")


def majority_label(train_labels) -> int:
    """The most frequent label id among ``train_labels: [n]`` (negative = unlabelled, skipped;
    ties: the smallest id).

    >>> majority_label([2, 0, 2, -1, 1])
    2
    """
    y = np.asarray(train_labels, dtype=np.int64).ravel()
    y = y[y >= 0]
    if len(y) == 0:
        raise ProbeError("no labelled training items to take a majority class from")
    return int(np.argmax(np.bincount(y)))


def _accuracy_score(gold: np.ndarray):
    ok = gold >= 0

    def score(pred: np.ndarray) -> float:
        return float((pred[ok] == gold[ok]).mean()) if ok.any() else 0.0

    return score


def reference_rates(train_labels, target_labels, score=None, *, n_draws: int = 20,
                    seed=0) -> ReferenceRates:
    """Majority-class and chance rate of one target, scored like the real predictions.

    ``train_labels: [n_train]`` and ``target_labels: [n_target]`` are label ids (words for
    a tagging task, examples for a classification task; negative = unlabelled). The
    majority class is taken from the *training* labels, because that is what a model that
    learned only the label prior predicts on the target. ``score(pred: [n_target]) ->
    float`` scores a full prediction against the target's gold labels (default: accuracy
    over labelled items); pass the task's own metric, e.g. entity F1, for which the
    all-majority ("O") predictor scores 0.

    * ``majority``: ``score`` of predicting the majority label everywhere;
    * ``chance``: mean ``score`` of ``n_draws`` random predictions drawn with the training
      label frequencies (``numpy.random.default_rng(seed)``). For accuracy its expectation
      is ``sum_c p_train(c) p_target(c)``.

    >>> r = reference_rates([0, 0, 0, 1], [0, 1, 1, 1], n_draws=200)
    >>> r.majority_label, r.majority, round(r.chance, 1)
    (0, 0.25, 0.4)
    """
    train = np.asarray(train_labels, dtype=np.int64).ravel()
    gold = np.asarray(target_labels, dtype=np.int64).ravel()
    if len(gold) == 0:
        raise ProbeError("the target has no items")
    if int(n_draws) < 1:
        raise ProbeError(f"n_draws must be >= 1, got {n_draws}")
    score = score or _accuracy_score(gold)
    maj = majority_label(train)
    majority = float(score(np.full(len(gold), maj, dtype=np.int64)))
    prior = np.bincount(train[train >= 0]).astype(np.float64)
    prior /= prior.sum()
    rng = np.random.default_rng(seed)
    draws = [float(score(rng.choice(len(prior), size=len(gold), p=prior)))
             for _ in range(int(n_draws))]
    return ReferenceRates(maj, majority, float(np.mean(draws)), int(n_draws))


def seed_sentence_bootstrap(counts, metric: str = "accuracy", *, minus=None,
                            n_boot: int = 1000, seed=0, alpha: float = 0.05) -> SeedSentenceInterval:
    """Two-level percentile bootstrap over training seeds *and* target sentences.

    ``counts: [n_seeds, n_sentences, c]``: additive per-sentence counts of each seed's
    predictions on the same target sentences (see :func:`score_from_counts` for ``c``).
    The statistic is the seed-mean score; with ``minus`` (same layout, another system on the
    same sentences, possibly a different number of seeds) it is the difference of the two
    seed means, a gain.

    Each replicate draws the sentences with replacement once (the same resample for both
    systems: paired) and, independently, each system's seeds with replacement (the runs of
    the two systems are independent trainings), then averages the resampled seeds' scores on
    the resampled sentences. So the interval widens when seeds disagree, which a
    sentence-only bootstrap of the seed mean does not do. Sentence draws come from
    :func:`bootstrap_indices` (``seed``); seed draws from a second generator
    (``default_rng([seed, 1])``).

    A gain needs at least two seeds on each side, and so does an interval that claims to
    cover seed variance: with one seed ``lo``/``hi`` are None and ``note`` says why (the
    single seed's score is still the estimate).

    >>> a = np.array([[[1, 1]] * 40 + [[0, 1]] * 10, [[1, 1]] * 30 + [[0, 1]] * 20])
    >>> r = seed_sentence_bootstrap(a, n_boot=300)
    >>> round(r.estimate, 2), r.n_seeds, r.lo < 0.7 < r.hi
    (0.7, 2, True)
    >>> seed_sentence_bootstrap(a[:1], n_boot=10).lo is None
    True
    """
    _check_boot(n_boot, alpha)
    a = np.asarray(counts, dtype=np.float64)
    if a.ndim != 3:
        raise ProbeError(f"counts must be [n_seeds, n_sentences, c], got shape {a.shape}")
    parts = [a]
    if minus is not None:
        b = np.asarray(minus, dtype=np.float64)
        if b.ndim != 3 or b.shape[1:] != a.shape[1:]:
            raise ProbeError(f"minus must be [n_seeds, {a.shape[1]}, {a.shape[2]}] (the same "
                             f"sentences), got shape {b.shape}")
        parts.append(b)
    sizes = [p.shape[0] for p in parts]
    n_sent, c = a.shape[1], a.shape[2]
    if min(sizes) < 1 or n_sent < 1:
        raise ProbeError("need at least one seed and one sentence")

    def seed_means(scores_list):
        out = scores_list[0].mean(-1)
        if len(scores_list) > 1:
            out = out - scores_list[1].mean(-1)
        return out

    full = [score_from_counts(p.sum(1), metric) for p in parts]  # [n_seeds] each
    estimate = float(seed_means(full))
    n_seeds = min(sizes)
    what = "gain" if minus is not None else "score"
    if n_seeds < 2:
        return SeedSentenceInterval(estimate, None, None, n_seeds, n_sent, 0,
                                    f"one seed: no {what} interval (it could not cover seed "
                                    f"variance)")
    flat = np.concatenate([p.transpose(1, 0, 2).reshape(n_sent, -1) for p in parts], axis=1)
    total = sum(sizes)
    seed_rng = np.random.default_rng([int(seed), 1])

    def stat(tot):  # tot: [b, total * c], the resampled sentences' summed counts
        b = len(tot)
        scores = score_from_counts(tot.reshape(b, total, c), metric)  # [b, total]
        res, start = [], 0
        for n in sizes:
            pick = seed_rng.integers(0, n, (b, n))  # seed resample per replicate
            res.append(np.take_along_axis(scores[:, start:start + n], pick, axis=1))
            start += n
        return seed_means(res)

    reps = bootstrap_replicates(stat, flat, n_boot=n_boot, seed=seed)
    lo, hi = _percentile(reps, alpha)
    return SeedSentenceInterval(estimate, lo, hi, n_seeds, n_sent, int(n_boot),
                                f"percentile bootstrap over {sizes if len(sizes) > 1 else sizes[0]}"
                                f" seed(s) and {n_sent} target sentences, {int(n_boot)} replicates")


def at_chance(lo: float | None, reference: float, estimate: float | None = None) -> bool:
    """Whether a score is within noise of (or below) a reference rate such as the majority rate.

    True when the interval's lower end ``lo`` reaches down to ``reference`` (the interval
    overlaps it, or lies below it). Without an interval (``lo`` None, e.g. one seed) only
    the point ``estimate`` can be compared, and an estimate at or below the reference is
    at chance; with neither it is at chance (nothing shows otherwise).

    >>> at_chance(0.55, 0.56), at_chance(0.60, 0.56), at_chance(None, 0.56, 0.58)
    (True, False, False)
    """
    if lo is not None and np.isfinite(lo):
        return bool(lo <= reference)
    if estimate is not None and np.isfinite(estimate):
        return bool(estimate <= reference)
    return True


def best_above_chance(estimates, chance_flags) -> int | None:
    """Index of the best estimate among those not at chance; None when all are at chance.

    What a table may highlight as "best": a result within noise of the majority rate never is.

    >>> best_above_chance([0.9, 0.7, 0.8], [True, False, False])
    2
    >>> best_above_chance([0.5, 0.6], [True, True]) is None
    True
    """
    best, idx = -np.inf, None
    for i, (e, flag) in enumerate(zip(estimates, chance_flags)):
        if not flag and e is not None and np.isfinite(e) and e > best:
            best, idx = e, i
    return idx
