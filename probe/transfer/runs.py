"""One fusion run: a (method, k, seed) trained on English and scored on every target,
memoised under a key that holds the code that computes it (:func:`run_code`).

* :func:`sentence_counts`: additive per-sentence counts, from which every score and bootstrap
  interval is computed (summed counts give exactly the task metric);
* ``_train_and_score`` fits one :class:`probe.fusion.FusionClassifier` and scores it;
  :func:`memo_run` / :func:`memo_lookup` run it through :func:`probe.cache.memoized` or
  only look it up;
* :func:`drop_examples` and :func:`reference_rates_for`: what the report does with a
  target's counts (leaked pairs dropped; majority-class and chance rates).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from ..errors import ProbeError
from . import views
from .settings import RUN_VERSION
from .views import CachedView

__all__ = ["sentence_counts", "run_code", "memo_run", "memo_lookup", "drop_examples",
           "reference_rates_for"]


def sentence_counts(view, pred: np.ndarray, metric: str) -> np.ndarray:
    """Additive per-sentence counts ``[n_sentences, c]`` (int64) for the bootstrap.

    accuracy: ``c = 2`` (correct, labelled items); for pair/sentence tasks one item per
    sentence. f1: ``c = 3`` (true-positive, predicted and gold entities per sentence, with
    seqeval's default IOB2 chunking), so summed counts give exactly seqeval's micro F1.
    """
    labels = np.asarray(view.labels, dtype=np.int64)
    offsets = np.asarray(view.offsets, dtype=np.int64)
    n_sent = len(offsets) - 1
    kind = getattr(view, "kind", None)
    per_sentence = kind == "pair" or (kind is None and len(labels) == n_sent != offsets[-1])
    if per_sentence:
        if metric != "accuracy":
            raise ProbeError("entity F1 needs word-level labels")
        ok = labels >= 0
        return np.stack([((pred == labels) & ok).astype(np.int64), ok.astype(np.int64)], 1)
    sid = np.repeat(np.arange(n_sent), np.diff(offsets))
    ok = labels >= 0
    if metric == "accuracy":
        correct = np.bincount(sid, weights=((pred == labels) & ok), minlength=n_sent)
        total = np.bincount(sid, weights=ok, minlength=n_sent)
        return np.stack([correct, total], 1).astype(np.int64)
    from seqeval.metrics.sequence_labeling import get_entities

    names = list(view.label_names)
    out = np.zeros((n_sent, 3), dtype=np.int64)
    for s in range(n_sent):
        a, b = offsets[s], offsets[s + 1]
        keep = ok[a:b]
        gold = [names[i] for i in labels[a:b][keep]]
        guess = [names[i] if 0 <= i < len(names) else "O" for i in pred[a:b][keep]]
        g, p = set(get_entities(gold)), set(get_entities(guess))
        out[s] = (len(g & p), len(p), len(g))
    return out


def _metric(totals: np.ndarray, metric: str) -> np.ndarray:
    """Metric from summed counts ``[..., c]`` -> ``[...]`` (:func:`probe.stats.score_from_counts`)."""
    from ..stats import score_from_counts

    return score_from_counts(totals, metric)

def drop_examples(result: dict, keep: dict[str, np.ndarray], metric: str) -> dict:
    """A run's result with each target's dropped examples (``keep`` False) removed from its
    per-sentence counts and its score recomputed; the memoised run itself is untouched."""
    if not any((~k).any() for k in keep.values()):
        return result
    out = {**result, "targets": dict(result["targets"])}
    for lang, k in keep.items():
        t = result["targets"][lang]
        counts = np.asarray(t["counts"], dtype=np.int64)[:, k]  # [c, n_kept]
        out["targets"][lang] = {"score": float(_metric(counts.sum(1), metric)),
                                "counts": counts.tolist()}
    return out


def reference_rates_for(td, train_view, target_view, keep: np.ndarray | None) -> dict:
    """Majority-class and chance rate of one target, scored with the task metric."""
    from ..stats import reference_rates

    labels = np.asarray(target_view.labels, dtype=np.int64)
    offsets = np.asarray(target_view.offsets, dtype=np.int64)
    if keep is not None and td.kind != "tagging":
        labels = np.where(keep, labels, -1)  # dropped pairs count as unlabelled
    if td.metric == "f1":
        view = _CountsView(labels, offsets, target_view.label_names, td.kind)

        def score(pred):
            return float(_metric(sentence_counts(view, pred, "f1").sum(0), "f1"))
    else:
        score = None
    r = reference_rates(train_view.labels, labels, score, n_draws=20, seed=0)
    names = list(target_view.label_names)
    return {"majority": r.majority, "chance": r.chance, "majority_label": names[r.majority_label],
            "metric": td.metric, "note": (
                f"majority: predict the most frequent English training label "
                f"({names[r.majority_label]!r}) everywhere; chance: random labels with the English "
                f"training frequencies (mean of {r.n_chance_draws} draws)")}


@dataclass
class _CountsView:
    labels: np.ndarray
    offsets: np.ndarray
    label_names: list
    kind: str


# ----------------------------------------------------------------------------- one run


def _run_key(job: dict) -> dict:
    return {"task": job["task"], "method": job["method"], "k": job["k"], "seed": job["seed"],
            "train": job["keys"]["train"], "dev": job["keys"]["dev"],
            "targets": job["keys"]["targets"], "classifier": job["params"],
            "run_version": RUN_VERSION}


def _train_and_score(job: dict) -> dict:
    """Fit one (method, k, seed) on English, score English dev and every target."""
    from ..cache import CacheEntry
    from ..data.xtreme import task_def
    from ..fusion import FusionClassifier

    td = task_def(job["task"])
    train = CachedView(CacheEntry(job["paths"]["train"]), job["task"])
    dev = CachedView(CacheEntry(job["paths"]["dev"]), job["task"])
    clf = FusionClassifier(method=job["method"], k=job["k"], task=td.kind, metric=td.metric,
                           label_names=list(td.labels), n_labels=len(td.labels),
                           seed=job["seed"], max_train=None, max_dev=None,
                           n_threads=job.get("threads", 1), **job["params"])
    clf.fit(train, dev)
    out = {"dev_score": clf.best_score_, "best_epoch": clf.best_epoch_,
           "history": clf.history_, "fit_seconds": round(clf.fit_seconds_, 3),
           "n_train": clf.n_train_sentences_, "layers_read": list(clf.layers_),
           "n_params": clf.n_params_, "targets": {}}
    t0 = time.perf_counter()
    for lang, path in job["paths"]["targets"].items():
        view = CachedView(CacheEntry(path), job["task"])
        counts = sentence_counts(view, clf.predict(view), td.metric)
        score = float(_metric(counts.sum(0), td.metric))
        # column-wise int lists keep the memo small and exact
        out["targets"][lang] = {"score": score, "counts": counts.T.tolist()}
    out["eval_seconds"] = round(time.perf_counter() - t0, 3)
    if job["method"] == "scalarmix":
        out["scalarmix_weights"] = clf.model_.combiner.weights().round(5).tolist()
    return out


def run_code(task: str) -> str:
    """The code a fusion run's numbers depend on, as a :func:`probe.cache.code_version`
    digest (part of the key of its memoised result): the functions that train and score a run
    (here and in ``views.py``, looked up in their modules), the fusion module
    (:class:`probe.fusion.FusionClassifier`), the metrics and the task's definition. Editing
    one of them recomputes the runs; editing anything else in the package reuses them."""
    from ..cache import code_version, source_file
    from ..data.xtreme import entity_f1, task_def

    return code_version(_train_and_score, views.CachedView, views.map_labels, sentence_counts, _metric,
                        entity_f1, source_file("fusion"), source_file("stats"), repr(task_def(task)))


def memo_run(job: dict, code: str | None = None) -> dict:
    """One run, memoised; ``code``: its :func:`run_code` (computed here if not given)."""
    from ..cache import memoized

    return memoized("fusion-run", _run_key(job), lambda: _train_and_score(job),
                    code=code or run_code(job["task"]))


class _Missing(Exception):
    pass


def memo_lookup(job: dict, code: str | None = None) -> dict | None:
    from ..cache import memoized

    def missing():
        raise _Missing

    try:
        return memoized("fusion-run", _run_key(job), missing, code=code or run_code(job["task"]))
    except _Missing:
        return None
