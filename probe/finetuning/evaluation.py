"""Prediction and scoring of a fine-tuned model: predicted label ids, additive per-example
counts (accuracy or seqeval's entity F1) and the majority/chance rates of a target, with the
definitions of ``probe fuse`` (:mod:`probe.stats`).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .encoding import Encoded, collate


def predict(model, enc: Encoded, pad_id: int, device, batch_size: int = 64, autocast=None):
    """Predicted label ids: a list of ``[n_words_i]`` arrays (tagging; -1 where the word was
    cut off) or an ``[n]`` array (pairs)."""
    import contextlib

    import torch

    model.eval()
    order = np.argsort(enc.lengths, kind="stable")
    out = [None] * len(enc) if enc.kind == "tagging" else np.full(len(enc), -1, dtype=np.int64)
    ctx = autocast or contextlib.nullcontext
    with torch.inference_mode():
        for s in range(0, len(order), batch_size):
            rows = order[s:s + batch_size]
            ids, mask, types, _ = collate(enc, rows, pad_id, device)
            with ctx():
                logits = model(ids, mask, types)
            guess = logits.argmax(-1).cpu().numpy()
            for b, r in enumerate(rows):
                if enc.kind == "tagging":
                    pos = enc.positions[r]
                    pr = np.full(len(pos), -1, dtype=np.int64)
                    ok = pos >= 0
                    pr[ok] = guess[b, pos[ok]]
                    out[r] = pr
                else:
                    out[r] = guess[b]
    return out


def example_counts(enc: Encoded, pred, metric: str, label_names: Sequence[str]) -> np.ndarray:
    """Additive per-example counts ``[n, c]`` int64: accuracy ``(correct, labelled)``; entity
    F1 ``(true positive, predicted, gold entities)`` with seqeval's IOB2 chunking, so summed
    counts give seqeval's micro F1 exactly."""
    n = len(enc)
    if enc.kind != "tagging":
        gold = np.asarray(enc.labels)
        pred = np.asarray(pred)
        ok = gold >= 0
        return np.stack([((pred == gold) & ok), ok], 1).astype(np.int64)
    if metric == "accuracy":
        out = np.zeros((n, 2), dtype=np.int64)
        for i in range(n):
            g, p = enc.labels[i], pred[i]
            ok = g >= 0
            out[i] = ((g == p) & ok).sum(), ok.sum()
        return out
    from seqeval.metrics.sequence_labeling import get_entities

    names = list(label_names)
    out = np.zeros((n, 3), dtype=np.int64)
    for i in range(n):
        g, p = enc.labels[i], pred[i]
        ok = g >= 0
        gs = [names[j] for j in g[ok]]
        ps = [names[j] if 0 <= j < len(names) else "O" for j in p[ok]]
        a, b = set(get_entities(gs)), set(get_entities(ps))
        out[i] = len(a & b), len(b), len(a)
    return out


def score_from_counts(totals, metric: str):
    """Metric from summed counts ``[..., c]`` -> float or ``[...]``
    (:func:`probe.stats.score_from_counts`, a plain float for one total)."""
    from ..stats import score_from_counts as scores

    s = scores(totals, metric)
    return float(s) if s.ndim == 0 else s


def target_reference(train: Encoded, target: Encoded, keep: np.ndarray, metric: str,
               label_names: Sequence[str]) -> dict:
    """Majority-class and chance rate of one target's kept examples (``keep: [n]`` bool),
    with ``probe fuse``'s definitions: :func:`probe.stats.reference_rates` on the English
    training labels, scored with the task metric (entity F1 through :func:`example_counts`)."""
    from ..stats import reference_rates

    names = list(label_names)
    rows = np.flatnonzero(keep)
    score = None  # accuracy over labelled items, stats' default
    if target.kind == "tagging":
        train_flat = (np.concatenate(train.labels) if len(train) else np.zeros(0, np.int64))
        gold = [np.asarray(target.labels[i], dtype=np.int64) for i in rows]
        flat = np.concatenate(gold) if gold else np.zeros(0, np.int64)
        if metric == "f1":
            sub = Encoded("tagging", [target.ids[i] for i in rows], [target.types[i] for i in rows],
                          [target.positions[i] for i in rows], gold)
            cuts = np.cumsum([len(g) for g in gold])[:-1]
            # pred: [n_words] over the kept sentences, in order
            score = lambda pred: score_from_counts(  # noqa: E731
                example_counts(sub, np.split(pred, cuts), "f1", names).sum(0), "f1")
    else:
        train_flat = np.asarray(train.labels, dtype=np.int64)
        flat = np.asarray(target.labels, dtype=np.int64)[rows]
    r = reference_rates(train_flat, flat, score)  # stats' defaults, as in probe fuse
    return {"majority": r.majority, "chance": r.chance,
            "majority_label": names[r.majority_label], "metric": metric,
            "n_chance_draws": r.n_chance_draws, "note": (
                f"majority: predict the most frequent English training label "
                f"({names[r.majority_label]!r}) everywhere; chance: random labels with the English "
                f"training frequencies (mean of {r.n_chance_draws} draws); probe.stats.reference_rates")}
