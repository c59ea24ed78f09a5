"""Zero-shot cross-lingual transfer with layer fusion (AIF/DLFA) on cached hidden states.

:func:`fuse` is the API behind ``probe fuse``. For one XTREME task it

1. extracts (or opens from the cache) English train, English dev and each target
   language's test split (seeded subsamples, see *Budget*);
2. trains every method on English, selects the epoch on English dev, and scores the
   selected model zero-shot on each target: DLFA (last layer L fused with layer k through
   AIF, :mod:`probe.fusion`) for every k in ``layers`` (default 0..L-1), and the baselines
   in the same harness (same head, optimiser, epochs, batch size and data):
   ``last`` (layer L only), ``layer`` (layer k only, every k), ``concat``
   (``[X_L; X_k] -> Linear``), ``scalarmix`` (ELMo mix of all layers) and ``dlfa-fixed``
   (the capacity-matched control: DLFA's block and head with the layer gate fixed at 0.5);
3. repeats each run for every seed, memoising each (method, k, seed) run with
   :func:`probe.cache.memoized`, so an interrupted sweep resumes where it stopped;
4. reports per method, k and language the mean +- std over seeds, a 95% bootstrap
   interval over seeds and target sentences, the gain over the last-layer baseline, the
   target's majority-class and chance rates with an "at chance" flag, the trainable
   parameter count, and the best k per language.

**The encoder is frozen.** Every method trains only its fusion block and task head on
hidden states read from the cache; arXiv 2205.08497 fine-tunes mBERT end to end. Absolute
scores and gains are therefore not comparable with the paper's tables: this measures what
fusing layers of a *frozen* encoder buys. The report says so (``frozen_encoder``).

Choices (all recorded in ``fusion.json``):

* **Targets**: the target's ``test`` file; a language without one (XTREME POS German
  is not mirrored) falls back to its ``dev`` file, which is leak-free here because
  training and selection only ever see English (not for PAWS-X, whose dev files are
  translations of the very English pairs used for training and selection: such a target
  is refused, see *Training data and leakage*). English as a target is in-language.
* **Budget** (:data:`TASK_BUDGETS`): seeded subsamples (``data_seed``) of English train,
  English dev and each target, sized so the default POS sweep (English -> de, zh; 12 k
  x 3 seeds of DLFA and of layer-k, plus last, concat and scalarmix; extraction from an
  empty cache included) stays under 15 minutes on 2 CPU cores. A subsample is part of the
  corpus identity (``train@3000s0``), so it has its own cache entry; the report lists it.
* **Pooling**: first subword piece per word for token tasks; the mean over pieces for
  pair tasks, because a "word" of a Chinese or Japanese pair is a whole clause.
* **concat** and **dlfa-fixed**: ``concat="best"`` runs them at the DLFA k selected on
  English dev and at every language's best DLFA k (so there is an equal-k comparison with
  DLFA); ``concat="all"`` runs every k.
* **Selection**: the "selected k" of DLFA, layer and concat is, for each method, the k
  with the best mean English-dev score among the k it ran (an honest zero-shot choice);
  "best k" per language is the DLFA k with the best mean target score (an oracle, as in a
  per-language sweep figure), shown next to concat at that same k. DLFA and concat rows
  also carry ``gain_vs_layer_k``: the difference to layer k *alone* at the same k (paired
  bootstrap CI), i.e. what the fusion adds beyond picking a better layer.
* **Uncertainty**: ``std`` is the sample standard deviation over seeds. ``ci95`` is a
  percentile bootstrap over training seeds *and* target sentences (pairs for pair tasks)
  of the seed-mean score (:func:`probe.stats.seed_sentence_bootstrap`): each replicate
  resamples the sentences and, independently, each method's seeds; gains resample the
  sentences paired (the same resample for both systems). Every row says how many seeds it
  rests on (``n_seeds``). With one seed there is no gain interval (None) and a score's
  ``ci95`` falls back to sentences only (``ci95_covers`` says which);
  ``ci95_sentences`` is always the sentence-only interval, for comparison. ``n_boot``
  replicates, seed 0.
* **Reference rates** (``reference``): per target, the majority-class rate (the most
  frequent *English training* label predicted everywhere, scored with the task metric: 0
  entity F1 for NER) and the chance rate (random labels drawn with the training
  frequencies, mean of 20 draws), :func:`probe.stats.reference_rates`. A row whose
  ``ci95`` reaches down to the majority rate is ``at_chance`` and is never highlighted as
  best (:func:`probe.stats.at_chance`).
* **Capacity control**: ``dlfa-fixed`` (see :data:`CAPACITY_NOTE`) runs at the same k as
  concat; DLFA rows carry ``gain_vs_fixed_gate``. Every (method, k) records its trainable
  parameter count (``params``).
* **Training data and leakage**: ``training_data`` names what was trained on
  (:data:`TRAINING_DATA`). PAWS-X target pairs whose id occurs in the English training or
  selection share are dropped before scoring (``leakage``: how many, per language; see
  :func:`probe.data.xtreme.source_overlap`); a target left with no pair is an error.
* **Optimiser**: AdamW, the same for every method (the scalar mix's layer logits get
  ``mix_lr``, see :class:`probe.fusion.ScalarMix`: with the head's rate they barely move); ``lr`` 1e-2 for token tasks and 1e-3
  (FusionClassifier's default) for pair tasks, chosen on *English dev*. With 1e-3 the
  linear tagging head on e5-small-q4's last layer (whose states have a smaller norm than
  middle layers') is far from converged after 3 epochs (English dev accuracy 0.65 against
  0.85 for a converged logistic regression on the same features), which would inflate
  every gain over the last layer; 1e-2 brings it to 0.82 and leaves the other methods
  unchanged or better. The pair tasks' MLP head does better on English dev with 1e-3.
  Pass ``lr=`` to override; every run still shares it.
* **Parallelism**: up to ``n_jobs`` runs in separate processes, one torch thread each
  (small per-step ops gain nothing from intra-op threads, and two threads per process on
  a busy 2-core machine slow a run down several times).

Layer indices: 0 = embedding output, L = last transformer layer.

>>> res = fuse("pos", ["de", "zh"], model="e5-small-q4")      # doctest: +SKIP
>>> print(res.format_table()); res.save("out/fusion/pos")     # doctest: +SKIP
"""
from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..errors import ProbeError
from ..options import add_dtype_option, count_or_all, parse_budget, parse_seeds, precision_text
from ..options import parse_targets as _parse_targets  # shared with probe.finetuning

_parse_seeds = parse_seeds  # the older name

__all__ = [
    "fuse",
    "FusionResult",
    "CachedView",
    "map_labels",
    "Budget",
    "TASK_BUDGETS",
    "METHODS",
    "FROZEN_NOTE",
    "TRAINING_DATA",
    "CAPACITY_NOTE",
    "sentence_counts",
    "summary_table",
    "summary_figure",
    "summary_highlight",
    "add_parser",
    "run",
]

SOURCE_LANG = "en"
METHODS = ("dlfa", "dlfa-fixed", "last", "layer", "concat", "scalarmix")
RUN_VERSION = 2  # bump when a run's numbers would change for the same inputs
PAPER = "arXiv 2205.08497 (DLFA with AIF; mBERT fine-tuned end to end)"
FROZEN_NOTE = ("The encoder is frozen: every method trains only its fusion block and task head "
               "on hidden states read from the cache. The paper (arXiv 2205.08497) fine-tunes "
               "mBERT end to end, so absolute scores and gains are not comparable with its "
               "tables.")
CAPACITY_NOTE = ("DLFA's gate is a small non-linear network (AIF) while the last/layer/concat "
                 "baselines feed their features to a linear head (tagging) or the same MLP head "
                 "(pairs), so DLFA's gain over them can be extra capacity rather than fusion. "
                 "dlfa-fixed is the capacity-matched control: the same AIF block and head "
                 "(same parameter count) with the layer gate fixed at 0.5; DLFA minus "
                 "dlfa-fixed is what choosing between the two layers adds.")
#: What each task actually trains on (``{n_used}`` is filled in from the run).
TRAINING_DATA = {
    "pos": "POS train: XTREME's English UD POS training set (21,253 sentences, UD v2.5 "
           "English treebanks, as XTREME); {n_used} sentences used",
    "ner": "NER train: PAN-X (WikiANN) English train (20,000 sentences, as XTREME); {n_used} "
           "sentences used",
    "xnli": "XNLI train: the mirrored 10,071-pair MultiNLI subset (TaxiNLI), not the full "
            "392,702-pair MultiNLI train set XTREME uses; {n_used} pairs used",
    "pawsx": "PAWS-X train: no PAWS-X training set is mirrored (XTREME uses its 49,401 English "
             "pairs); training is a seeded 75% of the English dev file (1,499 distinct pairs), "
             "selection the other 501; {n_used} pairs used",
}
# FusionClassifier settings fuse() sets itself; everything else may be passed through
_MANAGED = {"method", "k", "task", "seed", "epochs", "max_train", "max_dev", "metric",
            "label_names", "n_labels", "n_threads"}


@dataclass(frozen=True)
class Budget:
    """Seeded subsample sizes in examples (sentences or pairs); None = the whole split."""

    train: int | None
    dev: int | None
    test: int | None


#: Default budgets, for e5-small-q4 on 2 CPU cores. Extraction runs at ~250-600 words/s
#: (busy to idle machine, ~4 CPU-ms per word); a 3-epoch run on 3000 POS sentences (~53k
#: words) costs ~2 (last, layer k) to ~6 (DLFA, concat) CPU-s, scalarmix more. The default
#: POS sweep en -> de, zh extracts ~125k words; with 3000/1000/2000 it took 14.8 min on a
#: machine shared with other jobs (CPU: 250 s extraction, 290 s training), so the targets
#: and dev were cut to keep a margin. NER sentences are short (8 words); XNLI/PAWS-X pairs
#: are 30-45 words, so fewer of them.
TASK_BUDGETS: dict[str, Budget] = {
    "pos": Budget(train=3000, dev=800, test=1500),
    "ner": Budget(train=5000, dev=800, test=1500),
    "xnli": Budget(train=2000, dev=500, test=1000),
    "pawsx": Budget(train=None, dev=None, test=1000),  # all 1499 / 501 carved English pairs
}
FUSION_POOLING = {"tagging": "first", "pair": "mean"}
#: Default learning rate per task kind, chosen on English dev (see the module docstring).
TASK_LR = {"tagging": 1e-2, "pair": 1e-3}


def _log_default(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- views


class CachedView:
    """A cache entry as a :class:`probe.fusion.FeatureView` with task-level label ids.

    ``labels``: ``[n_words]`` (token tasks, from the entry's ``tags``) or ``[n_sentences]``
    (pair tasks, from ``label``) ids into ``label_names`` = the task's fixed label list.
    The cache stores ids into a per-entry vocabulary (the sorted labels present in that
    split), which differs between languages and subsamples; mapping by *name* keeps ids
    consistent between the English training data and every target. -1 = unlabelled.
    ``segment``: ``[n_words]`` int8 (0 = first sentence, 1 = second) for pairs, else None.
    """

    def __init__(self, entry, task: str):
        from ..data.xtreme import task_def

        td = task_def(task)
        self.entry = entry
        self.task = task
        self.kind = td.kind
        self.n_layers = int(entry.n_layers)
        self.hidden = int(entry.hidden)
        self.offsets = np.asarray(entry.offsets, dtype=np.int64)
        self.label_names = list(td.labels)
        seg = entry.segment
        self.segment = None if seg is None else np.asarray(seg, dtype=np.int8)
        if td.kind == "pair" and self.segment is None:
            raise ProbeError(f"{entry.path}: a {task} entry needs a segment array (sentence pairs)")
        self.labels = map_labels(entry, "tags" if td.kind == "tagging" else "label",
                                 self.label_names)

    @property
    def n_sentences(self) -> int:
        return len(self.offsets) - 1

    def layer(self, i: int) -> np.ndarray:
        """``[n_words, hidden]`` float16 memmap of layer ``i``."""
        return self.entry.layer(i)


def map_labels(entry, name: str, label_names: Sequence[str]) -> np.ndarray:
    """The entry's ``name`` labels as ids into ``label_names`` (int64; -1 stays -1)."""
    vocab = entry.vocab(name)
    index = {v: i for i, v in enumerate(label_names)}
    unknown = [v for v in vocab if v not in index]
    if unknown:
        raise ProbeError(f"{entry.path}: label(s) {', '.join(map(repr, unknown))} are not in the "
                         f"task's label list ({', '.join(label_names)})")
    lut = np.asarray([index[v] for v in vocab] + [-1], dtype=np.int64)
    raw = np.asarray(entry.labels(name), dtype=np.int64)
    return lut[np.where(raw >= 0, raw, len(vocab))]


# ----------------------------------------------------------------------------- scoring


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


def _boot_mean(counts: np.ndarray, metric: str, n_boot: int, seed: int = 0,
               minus: np.ndarray | None = None) -> tuple[float, float]:
    """95% percentile bootstrap CI over target sentences only of the seed-mean score (minus
    another system's); the reported ``ci95_sentences``. ``ci95`` also resamples seeds
    (:func:`_interval`).

    ``counts: [n_seeds, n_sent, c]``; ``minus``: same layout for the paired baseline.
    """
    from ..stats import bootstrap_replicates

    a = np.asarray(counts, dtype=np.float64)
    na, n_sent, c = a.shape
    parts = [a.transpose(1, 0, 2).reshape(n_sent, na * c)]
    nb = 0
    if minus is not None:
        b = np.asarray(minus, dtype=np.float64)
        nb = b.shape[0]
        parts.append(b.transpose(1, 0, 2).reshape(n_sent, nb * c))
    flat = np.concatenate(parts, axis=1)

    def stat(tot):
        tot = tot.reshape(len(tot), na + nb, c)
        score = _metric(tot, metric)
        out = score[:, :na].mean(1)
        if nb:
            out = out - score[:, na:].mean(1)
        return out

    reps = bootstrap_replicates(stat, flat, n_boot=n_boot, seed=seed)
    lo, hi = np.nanquantile(reps, [0.025, 0.975])
    return float(lo), float(hi)


def _interval(counts: np.ndarray, metric: str, n_boot: int,
              minus: np.ndarray | None = None) -> dict:
    """Seed-and-sentence bootstrap (:func:`probe.stats.seed_sentence_bootstrap`) as a dict:
    ``ci95`` ([lo, hi], or None from one seed), ``n_seeds`` and ``interval_note``."""
    from ..stats import seed_sentence_bootstrap

    r = seed_sentence_bootstrap(counts, metric, minus=minus, n_boot=n_boot, seed=0)
    return {"ci95": None if r.lo is None else [r.lo, r.hi], "n_seeds": r.n_seeds,
            "interval_note": r.note}


def _drop_examples(result: dict, keep: dict[str, np.ndarray], metric: str) -> dict:
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


def _reference(td, train_view, target_view, keep: np.ndarray | None) -> dict:
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
    digest (part of the key of its memoised result): the functions here that train and score
    a run, the fusion module (:class:`probe.fusion.FusionClassifier`), the metrics and the
    task's definition. Editing one of them recomputes the runs; editing anything else in the
    package reuses them."""
    from ..cache import code_version, source_file
    from ..data.xtreme import entity_f1, task_def

    return code_version(_train_and_score, CachedView, map_labels, sentence_counts, _metric, entity_f1,
                        source_file("fusion"), source_file("stats"), repr(task_def(task)))


def _memo_run(job: dict, code: str | None = None) -> dict:
    """One run, memoised; ``code``: its :func:`run_code` (computed here if not given)."""
    from ..cache import memoized

    return memoized("fusion-run", _run_key(job), lambda: _train_and_score(job),
                    code=code or run_code(job["task"]))


class _Missing(Exception):
    pass


def _memo_lookup(job: dict, code: str | None = None) -> dict | None:
    from ..cache import memoized

    def missing():
        raise _Missing

    try:
        return memoized("fusion-run", _run_key(job), missing, code=code or run_code(job["task"]))
    except _Missing:
        return None


def _worker_init() -> None:
    # one intra-op thread per worker process: see the module docstring
    import torch

    torch.set_num_threads(1)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # torch's first optimizer step and first ops import and initialise a lot lazily (seconds
    # on a busy machine); do it here so it is not booked to the first run's fit time
    from ..fusion import ArrayView, FusionClassifier

    rng = np.random.default_rng(0)
    view = ArrayView(rng.standard_normal((2, 12, 8)).astype(np.float32), [0, 4, 8, 12],
                     labels=np.arange(12) % 2)
    FusionClassifier(method="dlfa", k=0, epochs=1, max_train=None, max_dev=None).fit(view, view)


class _main_hidden:
    """Hide the ``__main__`` script from spawned workers while they start.

    A spawned child re-runs the parent's main script (as ``__mp_main__``) before it unpickles
    anything, so a user script that calls :func:`fuse` without an ``if __name__ ==
    "__main__":`` guard would start the sweep again in every worker. The workers only need
    :mod:`probe.transfer`, so the script's path and spec are hidden while the pool starts
    processes (pool processes start inside ``submit``).
    """

    def __enter__(self):
        self.main = sys.modules.get("__main__")
        self.saved = {k: self.main.__dict__[k] for k in ("__file__", "__spec__")
                      if self.main is not None and k in self.main.__dict__}
        for k in self.saved:
            setattr(self.main, k, None)
        return self

    def __exit__(self, *exc):
        for k, v in self.saved.items():
            setattr(self.main, k, v)
        return False


class _Runner:
    """Runs sweep jobs, reusing memoised ones.

    ``n_jobs == 1``: in this process (one torch thread per run). Otherwise a pool of spawned
    worker processes (spawn, not fork: a forked child of a process that already ran torch
    ops can hang in the OpenMP runtime), started on first need and kept for the whole
    sweep, because each worker pays torch's warm-up once. Use as a context manager.
    """

    def __init__(self, n_jobs: int, progress: bool):
        self.n_jobs = max(1, int(n_jobs))
        self.progress = progress
        self.pool = None

    def __enter__(self) -> "_Runner":
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if self.pool is not None:
            # on an error or Ctrl-C, drop queued runs; finished ones are memoised already
            self.pool.shutdown(wait=exc_type is None, cancel_futures=exc_type is not None)
            self.pool = None
        return False

    def _pool(self):
        if self.pool is None:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor

            self.pool = ProcessPoolExecutor(max_workers=self.n_jobs,
                                            mp_context=mp.get_context("spawn"),
                                            initializer=_worker_init)
        return self.pool

    def run(self, jobs: list[dict], desc: str) -> tuple[list[dict], int]:
        """(results in job order, number of runs trained now rather than reused)."""
        from tqdm.auto import tqdm

        code = {task: run_code(task) for task in {j["task"] for j in jobs}}  # hashed once per sweep
        results: list[dict | None] = [_memo_lookup(j, code[j["task"]]) for j in jobs]
        todo = [i for i, r in enumerate(results) if r is None]
        if not todo:
            return results, 0  # type: ignore[return-value]
        # longest runs first so that the pool's tail is short
        weight = {"scalarmix": 4, "concat": 3, "dlfa": 3, "dlfa-fixed": 3, "layer": 1, "last": 1}
        todo.sort(key=lambda i: -weight.get(jobs[i]["method"], 1))
        bar = tqdm(total=len(todo), desc=desc, unit="run", disable=not self.progress,
                   file=sys.stderr)
        if self.n_jobs == 1:
            for i in todo:
                results[i] = _memo_run(jobs[i], code[jobs[i]["task"]])
                bar.update(1)
        else:
            from concurrent.futures import as_completed

            pool = self._pool()
            with _main_hidden():
                futures = {pool.submit(_memo_run, jobs[i], code[jobs[i]["task"]]): i for i in todo}
            for fut in as_completed(futures):
                results[futures[fut]] = fut.result()
                bar.update(1)
        bar.close()
        return results, len(todo)  # type: ignore[return-value]


# ----------------------------------------------------------------------------- helpers


def _parse_layers(layers, last: int | None) -> list[int] | None:
    """``"all"`` -> 0..L-1; ``"0,3,6"`` or a list -> those (checked against L when known)."""
    if layers is None or (isinstance(layers, str) and layers.strip().lower() == "all"):
        return list(range(last)) if last is not None else None
    if isinstance(layers, str):
        try:
            ks = [int(x) for x in layers.replace(",", " ").split()]
        except ValueError:
            raise ProbeError(f"--layers must be 'all' or comma-separated integers, got {layers!r}") from None
    else:
        ks = [int(x) for x in layers]
    if not ks:
        raise ProbeError("no layers given")
    if last is not None:
        bad = [k for k in ks if not 0 <= k < last]
        if bad:
            raise ProbeError(f"fused layer k must be in 0..{last - 1} (0 = embeddings; layer "
                             f"{last} is the last layer itself), got {bad}")
    return sorted(set(ks))


def _model_layers(spec) -> int | None:
    """L from the model's config.json without loading it (None if unknown)."""
    try:
        cfg = json.loads((Path(spec.source) / "config.json").read_text())
        return int(cfg["num_hidden_layers"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def target_split_of(task: str, lang: str) -> str:
    """``test`` when the language has a test file, else (not for English) ``dev``."""
    from ..data.xtreme import task_def, task_file, xtreme_root

    td = task_def(task)
    root = xtreme_root()
    try:
        task_file(root, task, td.test, lang)
        return "test"
    except ProbeError:
        if lang == SOURCE_LANG:
            raise ProbeError(f"{task} has no English test file; English dev is the model-selection "
                             f"set, so English cannot be a target here") from None
        dev_file = td.dev[0]
        try:
            task_file(root, task, dev_file, lang)
        except ProbeError:
            raise ProbeError(f"{task} has neither a test nor a dev file for {lang} under "
                             f"{root / td.folder}") from None
        return "dev"


def _cpu_seconds() -> float:
    """User + system CPU time of this process and its reaped children."""
    import resource

    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def _entry_info(entry, corpus, role: str) -> dict:
    from ..layerwise import entry_record

    rec = entry_record(entry)
    rec["role"] = role
    rec["disk_bytes"] = int(entry.disk_bytes)
    rec["subsample"] = getattr(corpus, "subsample", None)
    rec["extraction_seconds"] = entry.meta.get("extractor", {}).get("seconds")
    return rec


# ----------------------------------------------------------------------------- API


def fuse(task: str, langs: Sequence[str] | str, model="e5-small-q4", layers="all", seeds=3,
         methods: Sequence[str] = METHODS, max_examples: int | None | str = "auto",
         max_dev: int | None | str = "auto", max_test: int | None | str = "auto",
         epochs: int = 3, concat: str = "best", n_jobs: int | None = None, n_boot: int = 1000,
         data_seed: int = 0, pooling: str | None = None, progress: bool = True,
         device: str | None = None, encoder=None, log: Callable[[str], None] | None = None,
         dtype: str = "float32", **fusion_kw) -> "FusionResult":
    """Zero-shot transfer sweep of DLFA and its baselines for one XTREME task.

    Parameters
    ----------
    task : ``pos``, ``ner``, ``xnli`` or ``pawsx``.
    langs : target languages (``"de,zh"`` or a list); each needs a test (or dev) file.
    model : encoder name or :class:`~probe.encoders.EncoderSpec` (frozen; see the module
        docstring).
    layers : the fused layers k of DLFA/layer/concat: ``"all"`` (0..L-1), ``"0,3,6"`` or a list.
    seeds : number of training seeds (0..n-1) or an explicit list.
    methods : any of :data:`METHODS`; ``last`` is always run (every gain is against it).
    max_examples, max_dev, max_test : seeded subsample sizes of English train, English dev
        and each target; None = the whole split, ``"auto"`` = the task's
        :data:`TASK_BUDGETS` entry.
    epochs : training epochs of every run (the epoch with the best English-dev score is kept).
    concat : ``"best"`` (concat and the ``dlfa-fixed`` control at the dev-selected and
        per-language best DLFA k) or ``"all"`` (both at every k).
    n_jobs : parallel training processes (default ``min(2, cpu count)``), one thread each.
    n_boot : bootstrap replicates for the 95% intervals.
    data_seed : seed of the data subsamples (the training seeds are ``seeds``).
    pooling : subword pooling for the cache (default: ``first`` for token tasks, ``mean``
        for pair tasks).
    device : extraction device (default: automatic).
    dtype : precision of the extraction's forward pass: ``float32`` (default, every device),
        ``bfloat16`` or ``float16`` (under autocast). It selects the cache entries (and so the
        memoised runs, keyed by their entries) and, with the device type, is recorded in
        ``report["precision"]``, the table header and the figures.
    encoder : an already loaded :class:`~probe.encoders.Encoder` of ``model``, used for
        any extraction instead of loading the model again.
    log : stage messages (default: stderr when ``progress``).
    **fusion_kw : further :class:`probe.fusion.FusionClassifier` settings (``lr``, default
        :data:`TASK_LR`; ``batch_size``, ``dropout``, ``r``, ``norm``, ...), shared by every
        method.

    Returns a :class:`FusionResult`; ``result.report`` holds every number with the model,
    data files and sha256, seeds, versions and timings that produced it.
    """
    from ..cache import human_bytes, open_entry
    from ..data import get_corpus
    from ..data.xtreme import corpus_name, subsample_split, task_def
    from ..encoders import resolve_encoder
    from ..extraction import POOLINGS, cache_key, extract_corpus, precision_record
    from ..fusion import FusionClassifier
    from ..layerwise import versions

    precision = precision_record(device, dtype)  # a bad dtype or device: one error, before any work
    t_start = time.time()
    cpu_start = _cpu_seconds()
    log = log or (_log_default if progress else (lambda msg: None))
    from ..tasks import task_name

    task = task_name(task)  # "upos" is accepted for "pos" (one vocabulary with probe.layers)
    td = task_def(task)
    targets = _parse_targets(langs, task)
    seed_list = parse_seeds(seeds)
    methods = [m.strip() for m in (methods.split(",") if isinstance(methods, str) else methods)]
    bad = [m for m in methods if m not in METHODS]
    if bad:
        raise ProbeError(f"unknown method(s) {', '.join(bad)}; choose from {', '.join(METHODS)}")
    methods = ["last"] + [m for m in METHODS if m in methods and m != "last"]
    if concat not in ("best", "all"):
        raise ProbeError(f"concat must be 'best' or 'all', got {concat!r}")
    if epochs < 1:
        raise ProbeError(f"epochs must be >= 1, got {epochs}")
    managed = sorted(set(fusion_kw) & _MANAGED)
    if managed:
        raise ProbeError(f"fuse() sets {', '.join(managed)} itself")
    valid = set(FusionClassifier().get_params())
    unknown = sorted(set(fusion_kw) - valid)
    if unknown:
        raise ProbeError(f"unknown FusionClassifier setting(s): {', '.join(unknown)}")
    params = {**{k: v for k, v in FusionClassifier().get_params().items() if k not in _MANAGED},
              "lr": TASK_LR[td.kind], "epochs": int(epochs), **fusion_kw}
    pooling = pooling or FUSION_POOLING[td.kind]
    if pooling not in POOLINGS:
        raise ProbeError(f"unknown pooling {pooling!r}; choose from {', '.join(POOLINGS)}")
    budget = TASK_BUDGETS[task]
    n_train, n_dev, n_test = (parse_budget(v, default, name) for v, default, name in (
        (max_examples, budget.train, "max_examples"), (max_dev, budget.dev, "max_dev"),
        (max_test, budget.test, "max_test")))
    if n_jobs is None:
        n_jobs = min(2, os.cpu_count() or 1)
    n_jobs = max(1, int(n_jobs))

    spec = resolve_encoder(model) if isinstance(model, str) else model
    if encoder is not None and encoder.fingerprint != spec.fingerprint:
        raise ProbeError(f"the encoder given is {encoder.name}, not the model {spec.name}")
    L_hint = _model_layers(spec)
    if L_hint is not None:
        _parse_layers(layers, L_hint)  # fail before any extraction
    else:
        _parse_layers(layers, None)

    # ------------------------------------------------------------------ data + cache
    cdef = get_corpus(corpus_name(task))
    target_split = {lang: target_split_of(task, lang) for lang in targets}
    wanted = [("train", SOURCE_LANG, subsample_split("train", n_train, data_seed)),
              ("dev", SOURCE_LANG, subsample_split("dev", n_dev, data_seed))]
    wanted += [(f"target:{lang}", lang, subsample_split(target_split[lang], n_test, data_seed))
               for lang in targets]
    log(f"fuse {task}: loading data ({', '.join(f'{lang} {s}' for _, lang, s in wanted)})")
    corpora = {role: cdef.load(lang, split, progress=progress) for role, lang, split in wanted}
    from ..data.xtreme import source_overlap

    # target pairs that are (translations of) English training/selection pairs: dropped
    overlap = {lang: source_overlap(corpora[f"target:{lang}"]) for lang in targets}
    for lang, mask in overlap.items():
        if mask.all():
            data = corpora[f"target:{lang}"]
            raise ProbeError(
                f"{task} {lang} {data.split}: all {len(mask)} target pairs are translations of the "
                f"English training or selection pairs (the same PAWS-X ids), so nothing is left to "
                f"evaluate; use a language with a test file (de, zh)")
    keep = {lang: ~mask for lang, mask in overlap.items()}
    entries, built = {}, []
    t0 = time.time()
    cpu0 = _cpu_seconds()
    for role, data in corpora.items():
        entry = open_entry(cache_key(spec, data, pooling, device=device, dtype=dtype, encoder=encoder))
        if entry is None:
            if encoder is None:
                log(f"loading {spec.name} for extraction")
                encoder = spec.load()
            log(f"extracting {data.name}/{data.lang}/{data.split}: {len(data)} examples, "
                f"{data.n_words} words")
            entry = extract_corpus(spec, data, pooling=pooling, progress=progress,
                                   device=device, encoder=encoder, dtype=dtype)
            built.append(role)
        entries[role] = entry
    del encoder
    t_extract = time.time() - t0
    cpu_extract = _cpu_seconds() - cpu0
    L = entries["train"].last_layer
    ks = _parse_layers(layers, L)
    n_sent_target = {lang: int(keep[lang].sum()) for lang in targets}
    train_view = CachedView(entries["train"], task)
    reference = {lang: _reference(td, train_view, CachedView(entries[f"target:{lang}"], task),
                                  keep[lang]) for lang in targets}
    del train_view

    # ------------------------------------------------------------------ runs
    base_job = {
        "task": task,
        "params": params,
        "threads": 1,
        "paths": {"train": str(entries["train"].path), "dev": str(entries["dev"].path),
                  "targets": {lang: str(entries[f"target:{lang}"].path) for lang in targets}},
        "keys": {"train": entries["train"].meta["key"], "dev": entries["dev"].meta["key"],
                 "targets": {lang: entries[f"target:{lang}"].meta["key"] for lang in targets}},
    }

    def job(method, k, seed):
        return {**base_job, "method": method, "k": k, "seed": seed}

    plan = [("last", None)]
    if "dlfa" in methods:
        plan += [("dlfa", k) for k in ks]
    if "layer" in methods:
        plan += [("layer", k) for k in ks]
    if "scalarmix" in methods:
        plan.append(("scalarmix", None))
    if concat == "all":
        plan += [(m, k) for m in ("concat", "dlfa-fixed") if m in methods for k in ks]
    jobs = [job(m, k, s) for m, k in plan for s in seed_list]
    t1 = time.time()
    cpu1 = _cpu_seconds()
    log(f"training {len(jobs)} runs ({len(plan)} method/k x {len(seed_list)} seeds) on "
        f"{n_jobs} process(es)")
    with _Runner(n_jobs, progress) as runner:
        results, n_computed = runner.run(jobs, f"fuse {task}")
        results = [_drop_examples(r, keep, td.metric) for r in results]
        runs = dict(zip([(j["method"], j["k"], j["seed"]) for j in jobs], results))
        controls = [m for m in ("concat", "dlfa-fixed") if m in methods]
        if controls and concat == "best":
            extra = set()
            if "dlfa" in methods:
                extra.add(_select_k(runs, "dlfa", ks, seed_list))
                for lang in targets:
                    extra.add(_oracle_k(runs, "dlfa", ks, seed_list, lang))
            else:
                extra.add(ks[-1])
            cjobs = [job(m, k, s) for m in controls for k in sorted(extra) for s in seed_list]
            log(f"training {len(cjobs)} {' and '.join(controls)} runs at k = "
                f"{', '.join(map(str, sorted(extra)))}")
            results, n_more = runner.run(cjobs, f"fuse {task} {'+'.join(controls)}")
            results = [_drop_examples(r, keep, td.metric) for r in results]
            runs.update(zip([(j["method"], j["k"], j["seed"]) for j in cjobs], results))
            n_computed += n_more
    t_train = time.time() - t1
    cpu_train = _cpu_seconds() - cpu1

    # ------------------------------------------------------------------ report
    report = _build_report(
        task=task, td=td, spec=spec, L=L, hidden=entries["train"].hidden, ks=ks,
        seeds=seed_list, methods=methods, concat=concat, targets=targets,
        target_split=target_split, runs=runs, n_boot=n_boot, n_sent_target=n_sent_target,
        reference=reference)
    n_used = int(entries["train"].n_sentences)
    report["precision"] = precision
    report["training_data"] = {
        "description": TRAINING_DATA[task].format(n_used=f"{n_used:,}"),
        "n_used": n_used, "split": corpora["train"].split,
        "files": [f["relpath"] for f in corpora["train"].files]}
    report["leakage"] = {
        lang: {"n_dropped": int(overlap[lang].sum()), "n_evaluated": int(keep[lang].sum()),
               "n_loaded": int(len(keep[lang])),
               "rule": ("target pairs whose PAWS-X id (dev line) occurs in the English training "
                        "or selection share, or whose text equals such a pair, are dropped")
               if task == "pawsx" else "no shared ids between training data and targets"}
        for lang in targets}
    report["data"] = {
        "train": _entry_info(entries["train"], corpora["train"], "train (English)"),
        "dev": _entry_info(entries["dev"], corpora["dev"], "model selection (English dev)"),
        "targets": {lang: _entry_info(entries[f"target:{lang}"], corpora[f"target:{lang}"],
                                      f"zero-shot target ({target_split[lang]} split)")
                    for lang in targets},
    }
    subs = []
    for role, data in corpora.items():
        info = getattr(data, "subsample", None)
        if info and info["applied"]:
            subs.append(f"{role}: {info['n_used']} of {info['n_available']} examples "
                        f"(seed {info['seed']})")
    report["subsample_note"] = ("seeded subsamples used: " + "; ".join(subs)) if subs else \
        "no subsampling: every split was used whole"
    disk = int(sum(e.disk_bytes for e in entries.values()))
    report["cache"] = {"disk_bytes": disk, "disk_human": human_bytes(disk), "pooling": pooling,
                       "entries": {role: str(e.path) for role, e in entries.items()},
                       "built_now": built}
    report["config"].update({
        "budget": {"max_examples": n_train, "max_dev": n_dev, "max_test": n_test,
                   "task_default": TASK_BUDGETS[task].__dict__},
        "classifier": {**params, "n_labels": len(td.labels), "metric": td.metric,
                       "max_train": None, "max_dev": None, "n_threads": 1},
        "n_jobs": n_jobs, "pooling": pooling, "dtype": dtype,
    })
    report["seeds"] = {"train": seed_list, "data": data_seed, "bootstrap": 0,
                       "pawsx_carve": 0}
    report["versions"] = versions()
    report["timings_s"] = {
        "extract_or_open": round(t_extract, 2),
        "extraction_per_entry": {role: entries[role].meta.get("extractor", {}).get("seconds")
                                 for role in built},
        "training": round(t_train, 2),
        "total": round(time.time() - t_start, 2),
        # CPU seconds (this process + finished worker processes) do not depend on how busy
        # the machine was, unlike the wall-clock times above
        "cpu": {"extract_or_open": round(cpu_extract, 1), "training": round(cpu_train, 1),
                "total": round(_cpu_seconds() - cpu_start, 1)},
        "runs_computed": n_computed,
        "runs_reused": len(runs) - n_computed,
    }
    return FusionResult(report)


def _seed_scores(runs, method, k, seeds, lang=None) -> np.ndarray:
    if lang is None:
        return np.asarray([runs[(method, k, s)]["dev_score"] for s in seeds], dtype=float)
    return np.asarray([runs[(method, k, s)]["targets"][lang]["score"] for s in seeds], dtype=float)


def _select_k(runs, method, ks, seeds) -> int:
    """The k with the best mean English-dev score (ties: the higher k)."""
    means = [_seed_scores(runs, method, k, seeds).mean() for k in ks]
    best = max(means)
    return max(k for k, m in zip(ks, means) if m == best)


def _oracle_k(runs, method, ks, seeds, lang) -> int:
    """The k with the best mean target score for ``lang`` (an oracle; ties: the higher k)."""
    means = [_seed_scores(runs, method, k, seeds, lang).mean() for k in ks]
    best = max(means)
    return max(k for k, m in zip(ks, means) if m == best)


def _stats(values: np.ndarray) -> dict:
    v = np.asarray(values, dtype=float)
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0,
            "per_seed": [float(x) for x in v]}


def _build_report(*, task, td, spec, L, hidden, ks, seeds, methods, concat, targets,
                  target_split, runs, n_boot, n_sent_target, reference) -> dict:
    from ..stats import at_chance

    metric = td.metric
    counts_cache: dict = {}

    def counts(method, k, lang):
        key = (method, k, lang)
        if key not in counts_cache:
            counts_cache[key] = np.stack([np.asarray(runs[(method, k, s)]["targets"][lang]["counts"],
                                                     dtype=np.int64).T for s in seeds])
        return counts_cache[key]

    keys = sorted({(m, k) for (m, k, _s) in runs}, key=lambda mk: (METHODS.index(mk[0]),
                                                                    -1 if mk[1] is None else mk[1]))
    def gain(method, k, lang, other):
        """``method`` minus ``other`` = (method, k) with a seed-and-sentence interval."""
        a, b = counts(method, k, lang), counts(*other, lang)
        iv = _interval(a, metric, n_boot, minus=b)
        d = _seed_scores(runs, method, k, seeds, lang) - _seed_scores(runs, *other, seeds, lang).mean()
        return {"mean": float(d.mean()), "std": float(d.std(ddof=1)) if len(d) > 1 else 0.0,
                **iv, "ci95_sentences": list(_boot_mean(a, metric, n_boot, minus=b)),
                "significant": bool(iv["ci95"] is not None and (iv["ci95"][0] > 0 or
                                                                iv["ci95"][1] < 0))}

    params = {}
    results, en_dev = [], []
    for method, k in keys:
        dev = _seed_scores(runs, method, k, seeds)
        en_dev.append({"method": method, "k": k, **_stats(dev),
                       "best_epoch": [runs[(method, k, s)]["best_epoch"] for s in seeds]})
        n_params = runs[(method, k, seeds[0])].get("n_params")
        params[f"{method}" + ("" if k is None else f"@{k}")] = n_params
        for lang in targets:
            c = counts(method, k, lang)
            iv = _interval(c, metric, n_boot)
            sent_ci = list(_boot_mean(c, metric, n_boot))
            row = {"method": method, "k": k, "lang": lang,
                   **_stats(_seed_scores(runs, method, k, seeds, lang)),
                   "ci95": iv["ci95"] or sent_ci,
                   "ci95_covers": ("training seeds and target sentences" if iv["ci95"]
                                   else "target sentences only (one seed)"),
                   "ci95_sentences": sent_ci, "n_seeds": iv["n_seeds"],
                   "params": n_params}
            ref = reference[lang]
            row["at_chance"] = at_chance(row["ci95"][0], ref["majority"], row["mean"])
            if method == "last":
                row["gain_vs_last"] = {"mean": 0.0, "std": 0.0, "ci95": [0.0, 0.0],
                                       "n_seeds": len(seeds), "significant": False}
            else:
                row["gain_vs_last"] = gain(method, k, lang, ("last", None))
            if method in ("dlfa", "dlfa-fixed", "concat") and ("layer", k, seeds[0]) in runs:
                # does fusing add anything over the lower layer on its own (same k)?
                row["gain_vs_layer_k"] = gain(method, k, lang, ("layer", k))
            if method == "dlfa" and ("dlfa-fixed", k, seeds[0]) in runs:
                # what does the learned layer gate add over the same block with gate 0.5?
                row["gain_vs_fixed_gate"] = gain(method, k, lang, ("dlfa-fixed", k))
            results.append(row)

    def find(method, k, lang):
        for r in results:
            if r["method"] == method and r["k"] == k and r["lang"] == lang:
                return r
        return None

    selected = {}
    for method in ("dlfa", "dlfa-fixed", "layer", "concat"):
        if method in methods:
            have = sorted({k for (m, k, _s) in runs if m == method})
            if have:
                selected[method] = _select_k(runs, method, have, seeds)
    best = {}
    comparison = {}
    for lang in targets:
        if "dlfa" in methods:
            kb = _oracle_k(runs, "dlfa", ks, seeds, lang)
            r = find("dlfa", kb, lang)
            best[lang] = {"k": kb, **_pick(r), "gain_vs_layer_k": r.get("gain_vs_layer_k"),
                          "gain_vs_fixed_gate": r.get("gain_vs_fixed_gate")}
        comp = {"last": _pick(find("last", None, lang))}
        for method in ("layer", "scalarmix", "concat", "dlfa-fixed", "dlfa"):
            if method not in methods:
                continue
            k = selected.get(method) if method != "scalarmix" else None
            if method == "dlfa-fixed" and "dlfa" in selected:
                k = selected["dlfa"]  # the control belongs at DLFA's own k
            r = find(method, k, lang)
            if r is not None:
                comp[method] = {"k": k, **_pick(r)}
        for method in ("concat", "dlfa-fixed"):
            if method in methods and lang in best:
                r = find(method, best[lang]["k"], lang)
                if r is not None:
                    comp[f"{method}@best_k"] = {"k": best[lang]["k"], **_pick(r)}
        if lang in best:
            comp["dlfa@best_k"] = {"k": best[lang]["k"], **_pick(find("dlfa", best[lang]["k"], lang))}
        comparison[lang] = comp

    weights = None
    if "scalarmix" in methods:
        weights = np.mean([runs[("scalarmix", None, s)]["scalarmix_weights"] for s in seeds],
                          axis=0).round(4).tolist()
    return {
        "kind": "probe.fusion",
        "format_version": 1,
        "task": task,
        "task_info": {"folder": td.folder, "kind": td.kind, "metric": metric,
                      "labels": list(td.labels), "source_lang": SOURCE_LANG,
                      "train_fraction": td.train_fraction},
        "frozen_encoder": True,
        "frozen_encoder_note": FROZEN_NOTE,
        "paper": PAPER,
        "layer_indexing": "0 = embedding output, L = last transformer layer",
        "model": {"name": spec.name, "fingerprint": spec.fingerprint, "source": spec.source,
                  "note": getattr(spec, "note", ""), "n_layers": L, "hidden": hidden},
        "langs": targets,
        "target_split": target_split,
        "n_target_sentences": n_sent_target,
        "reference": reference,
        "n_seeds": len(seeds),
        "params": params,
        "capacity_note": CAPACITY_NOTE,
        "ks": ks,
        "config": {"methods": methods, "concat": concat, "n_boot": n_boot,
                   "selection": "selected k = best mean English-dev score over seeds; best k per "
                                "language = best mean target score (oracle)",
                   "uncertainty": f"std = sample std over seeds; ci95 = percentile bootstrap "
                                  f"over the {len(seeds)} training seed(s) and the target "
                                  f"sentences (pairs) of the seed-mean score (gains: sentences "
                                  f"paired, seeds resampled per method); one seed gives no gain "
                                  f"interval; ci95_sentences = sentences only",
                   "at_chance": "ci95 reaches down to the majority-class rate; such a result is "
                                "never highlighted as best",
                   "concat_policy": ("concat and dlfa-fixed at the dev-selected DLFA k and each "
                                     "language's best DLFA k" if concat == "best" else "every k")},
        "selected_k": selected,
        "best_k": best,
        "comparison": comparison,
        "results": results,
        "en_dev": en_dev,
        "scalarmix_weights": weights,
        "runs": [{"method": m, "k": k, "seed": s, "dev_score": r["dev_score"],
                  "best_epoch": r["best_epoch"], "fit_seconds": r["fit_seconds"],
                  "n_train": r["n_train"], "n_params": r.get("n_params"),
                  "scores": {lang: r["targets"][lang]["score"] for lang in targets}}
                 for (m, k, s), r in sorted(runs.items(), key=lambda x: (
                     METHODS.index(x[0][0]), -1 if x[0][1] is None else x[0][1], x[0][2]))],
    }


def _pick(row: dict | None) -> dict:
    if row is None:
        return {}
    return {"mean": row["mean"], "std": row["std"], "ci95": row["ci95"],
            "n_seeds": row["n_seeds"], "at_chance": row["at_chance"], "params": row["params"],
            "gain_vs_last": row["gain_vs_last"]}


# ----------------------------------------------------------------------------- result


_LABEL = {"last": "last layer only", "layer": "layer k only", "scalarmix": "ELMo scalar mix",
          "concat": "concat [L; k] + linear", "dlfa-fixed": "DLFA gate=0.5 (control)",
          "dlfa": "DLFA (AIF) L + k", "concat@best_k": "concat at best k",
          "dlfa-fixed@best_k": "control at best k", "dlfa@best_k": "DLFA at best k (oracle)"}


from ..results import ResultDisplay, SavedFiles, closed, report_file  # noqa: E402 - used by FusionResult


@dataclass(repr=False)
class FusionResult(ResultDisplay):
    """All numbers of one :func:`fuse` sweep (``report`` is JSON-ready), table and figures.

    In Jupyter the result shows its per-method table; ``repr`` is short."""

    report: dict

    def _headline(self) -> str:
        r = self.report
        return (f"{r['task']} on {r['model']['name']} (L = {r['model']['n_layers']}), English -> "
                f"{', '.join(self.langs)}; fused layers k = {', '.join(map(str, r.get('ks', [])))}; "
                f"seeds {r['seeds']['train']}" + (f"; {precision_text(r['precision'])}" if r.get("precision") else ""))

    @property
    def task(self) -> str:
        return self.report["task"]

    @property
    def langs(self) -> list[str]:
        return self.report["langs"]

    def table(self):
        """Per method (selected k) and language: mean score, k, whether it is at chance, and
        the trainable parameters, as a pandas DataFrame; the first two rows are each target's
        majority-class and chance rates."""
        import pandas as pd

        refs = self.report.get("reference") or {}
        rows, index = [], []
        for key, label in (("majority", "majority class"), ("chance", "chance")):
            if refs:
                rows.append({lang: refs[lang][key] for lang in self.langs if lang in refs})
                index.append(label)
        for method, label in _LABEL.items():
            row = {}
            for lang in self.langs:
                comp = self.report["comparison"][lang].get(method)
                if comp:
                    row[f"{lang}"] = comp["mean"]
                    row[f"{lang} k"] = comp.get("k")
                    row[f"{lang} at chance"] = comp.get("at_chance")
                    row["params"] = (comp.get("params") or {}).get("total")
            if row:
                rows.append(row)
                index.append(label)
        return pd.DataFrame(rows, index=pd.Index(index, name="method"))

    def format_table(self) -> str:
        """A compact text table: mean +- std over seeds, gain vs last with its 95% interval
        (seeds and sentences), trainable parameters, and per target the majority-class and
        chance rates; rows within noise of the majority rate are marked ``(at chance)``."""
        r = self.report
        metric = r["task_info"]["metric"]
        n_seeds = r.get("n_seeds", len(r["seeds"]["train"]))
        head = f"{'method':28s} {'k':>3s} {'params':>8s} {'en dev':>13s}"
        for lang in self.langs:
            head += f" {lang + ' (' + r['target_split'][lang] + ')':>15s} {'gain vs last [95% CI]':>26s}"
        interval = (f"95% intervals: bootstrap over the {n_seeds} seeds and the target sentences"
                    if n_seeds > 1 else "95% intervals: target sentences only (one seed: they "
                    "cannot cover seed variance, and there is no gain interval)")
        lines = [f"{r['task']}: {metric}, mean ± std over {n_seeds} seed(s) {r['seeds']['train']}; "
                 + interval + f"; k = fused layer (0 = embeddings, L = {r['model']['n_layers']}); "
                 f"dev-selected k unless marked"
                 + (f"; features: {precision_text(r['precision'])}" if r.get("precision") else "")]
        for lang in self.langs:
            ref = (r.get("reference") or {}).get(lang)
            if ref:
                lines.append(f"  {lang}: majority class ({ref['majority_label']}) "
                             f"{ref['majority']:.3f}, chance {ref['chance']:.3f}; "
                             f"{r['n_target_sentences'][lang]} target examples evaluated")
        lines.append(head)

        def dev_of(method, k):
            for d in r["en_dev"]:
                if d["method"] == method and d["k"] == k:
                    return f"{d['mean']:.3f}±{d['std']:.3f}"
            return ""

        any_chance = False
        for method, label in _LABEL.items():
            comps = {lang: r["comparison"][lang].get(method) for lang in self.langs}
            if not any(comps.values()):
                continue
            first = next(c for c in comps.values() if c)
            n_par = first.get("params")
            par = "" if not n_par else f"{n_par['total']:,}"
            if method.endswith("@best_k"):
                line = f"{label:28s} {'*':>3s} {par:>8s} {'':>13s}"
            else:
                k = first.get("k")
                base = method.split("@")[0]
                line = f"{label:28s} {'' if k is None else k:>3} {par:>8s} {dev_of(base, k):>13s}"
            for lang in self.langs:
                c = comps[lang]
                if not c:
                    line += f" {'':>15s} {'':>26s}"
                    continue
                score = f"{c['mean']:.3f}±{c['std']:.3f}"
                if method.endswith("@best_k"):
                    score = f"k={c['k']} {c['mean']:.3f}"
                if c.get("at_chance"):
                    score += "~"
                    any_chance = True
                g = c["gain_vs_last"]
                if method == "last":
                    gain = ""
                elif g.get("ci95") is None:
                    gain = f"{g['mean']:+.3f} [no interval]"
                else:
                    gain = f"{g['mean']:+.3f} [{g['ci95'][0]:+.3f}, {g['ci95'][1]:+.3f}]"
                line += f" {score:>15s} {gain:>26s}"
            lines.append(line)
        if any_chance:
            lines.append("~ at chance: the 95% interval reaches down to the majority-class rate")
        return "\n".join(lines)

    def _meta(self, caption: str) -> dict:
        r = self.report
        return {"model": r["model"], "data_caption": caption,
                "seed": ",".join(map(str, r["seeds"]["train"])), "versions": r["versions"],
                "precision": r.get("precision")}

    def _caption(self) -> str:
        r = self.report
        tr = r["data"]["train"]
        targets = ", ".join(f"{l} {r['data']['targets'][l]['split']} "
                            f"({r['data']['targets'][l]['n_sentences']})" for l in self.langs)
        refs = r.get("reference") or {}
        ref = "; ".join(f"{l} majority {refs[l]['majority']:.2f}, chance {refs[l]['chance']:.2f}"
                        for l in self.langs if l in refs)
        return (f"XTREME {r['task']}: train en {tr['split']} ({tr['n_sentences']}), "
                f"targets {targets}; {r.get('n_seeds', len(r['seeds']['train']))} seed(s); "
                f"frozen encoder" + (f"; {ref}" if ref else ""))

    def plot_gain(self, path: Path | None = None, *, ax=None):
        """Gain of DLFA over the last layer vs the fused layer k, one line per language;
        returns the Figure (``ax``: two Axes; ``path``: also save it there)."""
        from ..plotting import palette, show_or_save, subplots

        r = self.report
        ks = r["ks"]
        L = r["model"]["n_layers"]
        owned = ax is None
        fig, (a1, a2) = subplots(ax, 2, figsize=(11, 4))
        cols = palette(len(self.langs))
        for lang, c in zip(self.langs, cols):
            rows = {x["k"]: x for x in r["results"] if x["method"] == "dlfa" and x["lang"] == lang}
            if not rows:
                continue
            kk = [k for k in ks if k in rows]
            g = np.asarray([rows[k]["gain_vs_last"]["mean"] for k in kk])
            sd = np.asarray([rows[k]["gain_vs_last"]["std"] for k in kk])
            a1.plot(kk, g, marker="o", ms=3, color=c, label=f"{lang} ({r['target_split'][lang]})")
            a1.fill_between(kk, g - sd, g + sd, color=c, alpha=0.2, lw=0)
            if lang in r["best_k"]:
                b = r["best_k"][lang]
                # a best k at chance is not highlighted: hollow star
                a1.plot([b["k"]], [b["gain_vs_last"]["mean"]], marker="*", ms=11, color=c,
                        mfc="none" if b.get("at_chance") else c,
                        label=f"{lang}: best k at chance" if b.get("at_chance") else None)
            a2.plot(kk, [rows[k]["mean"] for k in kk], marker="o", ms=3, color=c,
                    label=f"{lang}: DLFA (L + k)")
            single = {x["k"]: x["mean"] for x in r["results"]
                      if x["method"] == "layer" and x["lang"] == lang}
            if single:
                sk = [k for k in ks if k in single]
                a2.plot(sk, [single[k] for k in sk], ls="--", color=c, label=f"{lang}: layer k only")
            last = next(x["mean"] for x in r["results"] if x["method"] == "last" and x["lang"] == lang)
            a2.axhline(last, color=c, ls=":", lw=1)
            ref = (r.get("reference") or {}).get(lang)
            if ref:
                a2.axhline(ref["majority"], color=c, ls="-.", lw=1,
                           label=f"{lang}: majority class {ref['majority']:.2f}")
                a2.axhline(ref["chance"], color=c, ls=(0, (1, 3)), lw=0.8,
                           label=f"{lang}: chance {ref['chance']:.2f}")
        a1.axhline(0, color="0.3", lw=0.8)
        metric = r["task_info"]["metric"]
        a1.set(xlabel=f"fused layer k (0 = embeddings; fused with layer L = {L})",
               ylabel=f"{metric} gain over last layer",
               title="DLFA gain vs fused layer\n(band: ± seed std; ★ best k, hollow: at chance)")
        a2.set(xlabel=f"layer k (0 = embeddings, L = {L})", ylabel=metric,
               title="zero-shot score\n(dotted: last layer only; dash-dot: majority class)")
        a1.legend(fontsize=8)
        a2.legend(fontsize=7)
        return show_or_save(fig, path, self._meta(self._caption()), owned=owned, title=
                            f"Layer fusion, {r['task']} zero-shot from English ({r['model']['name']}, frozen)")

    def plot_baselines(self, path: Path | None = None, *, ax=None):
        """Best fusion vs each baseline, per language, with 95% bootstrap error bars; returns
        the Figure (``ax``: one Axes; ``path``: also save it there)."""
        from ..plotting import palette, show_or_save, subplots

        r = self.report
        order = [m for m in ("last", "layer", "scalarmix", "concat", "dlfa-fixed", "dlfa",
                             "dlfa@best_k")
                 if any(m in r["comparison"][l] for l in self.langs)]
        owned = ax is None
        fig, (ax,) = subplots(ax, 1, figsize=(2.2 + 1.6 * len(self.langs) * max(len(order), 1) / 4, 4))
        width = 0.8 / max(len(order), 1)
        cols = palette(len(order))
        lows = []
        for j, (m, c) in enumerate(zip(order, cols)):
            xs, ys, err, faint = [], [], [[], []], []
            for i, lang in enumerate(self.langs):
                comp = r["comparison"][lang].get(m)
                if not comp:
                    continue
                xs.append(i + (j - (len(order) - 1) / 2) * width)
                ys.append(comp["mean"])
                err[0].append(max(comp["mean"] - comp["ci95"][0], 0))
                err[1].append(max(comp["ci95"][1] - comp["mean"], 0))
                lows.append(comp["ci95"][0])
                faint.append(bool(comp.get("at_chance")))
            k = next((r["comparison"][l][m].get("k") for l in self.langs if m in r["comparison"][l]), None)
            label = _LABEL[m] + ("" if k is None or m.endswith("best_k") else f" (k={k})")
            bars = ax.bar(xs, ys, width=width * 0.95, color=c, yerr=err, capsize=2, label=label,
                          hatch="//" if m.endswith("best_k") else None, edgecolor="white")
            for bar, at in zip(bars, faint):
                if at:  # within noise of the majority rate: greyed out and marked
                    bar.set_alpha(0.35)
                    ax.annotate("~", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                                ha="center", va="bottom", fontsize=9)
        for i, lang in enumerate(self.langs):
            ref = (r.get("reference") or {}).get(lang)
            if ref:
                lo_x, hi_x = i - 0.45, i + 0.45
                ax.hlines(ref["majority"], lo_x, hi_x, colors="0.15", linestyles="-.", lw=1,
                          label="majority class" if i == 0 else None)
                ax.hlines(ref["chance"], lo_x, hi_x, colors="0.45", linestyles=":", lw=1,
                          label="chance (training label frequencies)" if i == 0 else None)
                lows += [ref["majority"], ref["chance"]]
        ax.set_xticks(range(len(self.langs)))
        ax.set_xticklabels([f"{l} ({r['target_split'][l]})" for l in self.langs])
        lo = min(lows) if lows else 0
        ax.set_ylim(max(0.0, lo - 0.05), None)
        ax.set_ylabel(r["task_info"]["metric"])
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
        cap = (self._caption() + "; k selected on English dev; error bars: 95% bootstrap interval "
               "of the seed mean over seeds and target sentences; ~ faded: at chance (interval "
               "reaches the majority rate)")
        return show_or_save(fig, path, self._meta(cap), owned=owned, title=
                            f"Fusion vs baselines, {r['task']} (mean over seeds {r['seeds']['train']})")

    def save(self, out_dir: Path, *, figures: bool = True) -> SavedFiles:
        """Write ``fusion.json`` and (``figures``) the ``gain_vs_k`` and ``baselines`` figures
        (.png + .pdf). As a path the returned list is ``out_dir``: ``FusionResult.load(res.save(d))``."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        from ..files import atomic_write_json

        path = out_dir / "fusion.json"
        atomic_write_json(path, self.report)
        paths = SavedFiles(out_dir, [path])
        if figures:
            paths += closed(self.plot_gain(out_dir / "gain_vs_k.png"), out_dir / "gain_vs_k.png")
            paths += closed(self.plot_baselines(out_dir / "baselines.png"), out_dir / "baselines.png")
        return paths

    @classmethod
    def load(cls, path: Path) -> "FusionResult":
        """A saved sweep: the folder :meth:`save` wrote, or its ``fusion.json``."""
        return cls(json.loads(report_file(path, "fusion.json").read_text()))


# ----------------------------------------------------------------------------- summary


_TASK_ORDER = ("pos", "ner", "xnli", "pawsx")
_SUMMARY_ROWS = (("last", "last layer only"), ("layer", "layer k only (dev k)"),
                 ("scalarmix", "ELMo scalar mix"), ("concat", "concat [L; k] (dev k)"),
                 ("dlfa-fixed", "DLFA gate 0.5, control (dev k)"),
                 ("dlfa", "DLFA (dev k)"), ("dlfa@best_k", "DLFA best k (oracle)"))


def _fusion_files(paths) -> list[Path]:
    if isinstance(paths, (str, Path)):
        paths = [paths]
    out = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            if (p / "fusion.json").is_file():
                out.append(p / "fusion.json")
            else:
                out += sorted(p.glob("*/fusion.json"))
        elif p.is_file():
            out.append(p)
    return out


def summary_table(paths) -> dict:
    """Rows of the cross-task summary from ``fusion.json`` files (or folders holding them).

    Returns ``{"tasks": [...], "rows": {method: {task: {"mean", "std", "langs", "at_chance",
    ...}}}, "reference": {task: {"majority", "chance"} or None}, ...}`` where each cell
    averages, over the task's target languages, the seed-mean score (``mean``) and the seed
    std (``std``) of that method; ``at_chance`` is True when the method is at chance in any
    of the languages, None when the file predates reference rates (then nothing can be
    called best). The last task file found wins for a task.
    """
    reports = {}
    for f in _fusion_files(paths):
        try:
            rep = json.loads(f.read_text())
        except (OSError, ValueError) as e:
            raise ProbeError(f"{f}: unreadable fusion.json ({e})") from None
        if rep.get("kind") != "probe.fusion":
            continue
        reports[rep["task"]] = rep
    if not reports:
        raise ProbeError("no fusion.json found in " + ", ".join(map(str, paths if isinstance(
            paths, (list, tuple)) else [paths])))
    tasks = [t for t in _TASK_ORDER if t in reports] + sorted(set(reports) - set(_TASK_ORDER))
    rows: dict = {}
    for method, _label in _SUMMARY_ROWS:
        for t in tasks:
            rep = reports[t]
            cells = [rep["comparison"][l].get(method) for l in rep["langs"]]
            cells = [c for c in cells if c]
            if not cells:
                continue
            flags = [c.get("at_chance") for c in cells]
            rows.setdefault(method, {})[t] = {
                "mean": float(np.mean([c["mean"] for c in cells])),
                "std": float(np.mean([c["std"] for c in cells])),
                "gain": float(np.mean([c["gain_vs_last"]["mean"] for c in cells])),
                "at_chance": None if any(f is None for f in flags) else any(flags),
                "n_seeds": rep.get("n_seeds", len(rep["seeds"]["train"])),
                "langs": rep["langs"], "k": sorted({c.get("k") for c in cells if c.get("k") is not None})}
    reference = {}
    for t in tasks:
        refs = [reports[t].get("reference", {}).get(l) for l in reports[t]["langs"]]
        reference[t] = None if not all(refs) else {
            "majority": float(np.mean([x["majority"] for x in refs])),
            "chance": float(np.mean([x["chance"] for x in refs]))}
    first = reports[tasks[0]]
    return {"tasks": tasks, "rows": rows, "reference": reference,
            "n_seeds": {t: reports[t].get("n_seeds", len(reports[t]["seeds"]["train"])) for t in tasks},
            "metrics": {t: reports[t]["task_info"]["metric"] for t in tasks},
            "langs": {t: reports[t]["langs"] for t in tasks},
            "models": sorted({reports[t]["model"]["name"] for t in tasks}),
            "precision": {t: reports[t].get("precision") for t in tasks},
            "model": first["model"], "versions": first["versions"],
            "seeds": sorted({s for t in tasks for s in reports[t]["seeds"]["train"]})}


def summary_highlight(table: dict) -> dict:
    """``{task: method or None}``: the cell :func:`summary_figure` may bold per task.

    The best mean among the non-oracle methods that are *not* at chance
    (:func:`probe.stats.best_above_chance`); None when every method is at chance or the
    task's file predates reference rates (``at_chance`` None counts as at chance).
    """
    from ..stats import best_above_chance

    out = {}
    for t in table["tasks"]:
        cand = [(m, row[t]) for m, row in table["rows"].items()
                if t in row and m != "dlfa@best_k"]
        i = best_above_chance([c["mean"] for _m, c in cand],
                              [c["at_chance"] is not False for _m, c in cand])
        out[t] = None if i is None else cand[i][0]
    return out


def summary_figure(paths, out: Path) -> list[Path]:
    """A results table figure across tasks (like the paper's), from existing fusion.json files.

    ``paths``: fusion.json files and/or folders (a folder holding ``<task>/fusion.json``,
    such as ``out/fusion``). Cells: mean over target languages of the seed-mean score x 100,
    ± the mean seed std; the first rows give the majority-class and chance rates. A cell at
    chance in any language (its interval reaches the majority rate) is marked "~" and greyed;
    the best non-oracle cell per task that is *not* at chance is bold
    (:func:`probe.stats.best_above_chance`): when every method is at chance nothing is bold,
    and neither is anything for a file without reference rates. Writes ``out`` (.png + .pdf).
    """
    import matplotlib.pyplot as plt

    from ..plotting import finish, setup_style

    setup_style()
    s = summary_table(paths)
    highlight = summary_highlight(s)
    tasks = s["tasks"]
    labels = [lab for m, lab in _SUMMARY_ROWS if m in s["rows"]]
    methods = [m for m, _lab in _SUMMARY_ROWS if m in s["rows"]]
    n_ref = 2
    cell_text = [[("n/a" if s["reference"][t] is None else f"{100 * s['reference'][t][key]:.1f}")
                  for t in tasks] for key in ("majority", "chance")]
    for m in methods:
        row = []
        for t in tasks:
            c = s["rows"][m].get(t)
            row.append("" if c is None else f"{100 * c['mean']:.1f} ± {100 * c['std']:.1f}"
                       + (" ~" if c.get("at_chance") else ""))
        cell_text.append(row)
    labels = ["majority class", "chance"] + labels
    cols = [f"{t} ({'F1' if s['metrics'][t] == 'f1' else 'acc'})\n→ {','.join(s['langs'][t])}"
            f"\n{s['n_seeds'][t]} seed(s)" for t in tasks]
    fig, ax = plt.subplots(figsize=(2.2 + 1.9 * len(tasks), 0.9 + 0.42 * (len(methods) + n_ref)))
    ax.axis("off")
    tab = ax.table(cellText=cell_text, rowLabels=labels, colLabels=cols, loc="center",
                   cellLoc="center")
    tab.auto_set_font_size(False)
    tab.set_fontsize(9)
    tab.scale(1, 1.6)
    for j, t in enumerate(tasks):
        for i in range(n_ref):
            tab[i + 1, j].set_text_props(color="0.35", fontstyle="italic")
        # the oracle row picks k on the targets themselves: it is not a competitor
        for i, m in enumerate(methods):
            if s["rows"][m].get(t, {}).get("at_chance"):
                tab[i + 1 + n_ref, j].set_text_props(color="0.55")
        best = highlight.get(t)
        if best is not None:
            tab[methods.index(best) + 1 + n_ref, j].set_text_props(fontweight="bold")
    for j in range(len(tasks)):
        tab[0, j].set_height(tab[0, j].get_height() * 2.0)
    # the tasks' features may come from different precisions: one line when they agree
    precisions = {t: (precision_text(p) if p else "precision: not recorded") for t, p in s["precision"].items()}
    features = (next(iter(precisions.values())) if len(set(precisions.values())) == 1 else
                "; ".join(f"{t} {text}" for t, text in precisions.items()))
    meta = {"model": s["model"], "versions": s["versions"], "seed": ",".join(map(str, s["seeds"])),
            "data_caption": "XTREME, zero-shot from English, mean over target languages; frozen "
                            "encoder (the paper fine-tunes mBERT); ~ grey: at chance (95% "
                            "interval over seeds and sentences reaches the majority rate) in a "
                            f"language, never bold; features: {features}"}
    return finish(fig, Path(out), meta, "Layer fusion on a frozen encoder: zero-shot results")


# ----------------------------------------------------------------------------- CLI


def add_parser(subparsers) -> None:
    """Add the ``fuse`` command to an ``argparse`` subparsers object."""
    import argparse

    budgets = "; ".join(f"{t} {b.train or 'all'}/{b.dev or 'all'}/{b.test or 'all'}"
                        for t, b in TASK_BUDGETS.items())
    p = subparsers.add_parser(
        "fuse", help="AIF/DLFA layer fusion vs baselines, zero-shot from English (XTREME)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Zero-shot cross-lingual transfer with layer fusion on cached hidden states.\n\n"
            "Trains on English, selects the epoch on English dev, and evaluates zero-shot on each\n"
            "target language: DLFA (the last layer L fused with layer k through AIF) for every k,\n"
            "and in the same harness (same head, optimiser, epochs and data) the baselines: last\n"
            "layer only, layer k only, concat [L; k] + linear, the ELMo scalar mix, and dlfa-fixed\n"
            "(the capacity-matched control: DLFA's AIF block and head with the layer gate fixed\n"
            "at 0.5). Every run is repeated per seed and memoised, so an interrupted sweep\n"
            "resumes. Prints a table (mean ± std over seeds, gain over the last layer with a 95%\n"
            "bootstrap interval over seeds and target sentences - none from one seed -, trainable\n"
            "parameters, each target's majority-class and chance rate, '~' = at chance) and writes\n"
            "fusion.json and figures to --out; also refreshes a cross-task summary table figure\n"
            "(summary.png, where a result at chance is never bold) in the parent of --out.\n"
            "PAWS-X target pairs that share an id with the English training/selection pairs are\n"
            "dropped (count printed).\n\n"
            "The encoder is FROZEN (features from the cache); the paper (arXiv 2205.08497)\n"
            "fine-tunes mBERT end to end, so numbers are not comparable with its tables.\n\n"
            "Data: XTREME task files under $PROBE_DATA_MIRROR/xtreme or $PROBE_XTREME_DIR. A target\n"
            "without a test file (e.g. POS German) is evaluated on its dev file, which is leak-free\n"
            "since only English is used for training and selection (not PAWS-X: its dev files\n"
            "translate the English training pairs). Default seeded subsamples\n"
            f"(English train/dev/each target, in examples):\n  {budgets}.\n\n"
            "Layer 0 is the embedding output; layer L is the last transformer layer."))
    p.add_argument("--task", required=True, choices=list(_TASK_ORDER),
                   help="XTREME task: pos (UD POS, accuracy), ner (PAN-X, entity F1), xnli, pawsx "
                        "(sentence pairs, accuracy)")
    p.add_argument("--lang", required=True,
                   help="comma-separated target languages, e.g. de,zh (see `probe data ls`)")
    p.add_argument("--model", default="auto",
                   help="encoder: e5-small-q4 (offline), auto (bert-base-multilingual-cased if "
                        "loadable, else e5-small-q4), a Hugging Face id or a local directory "
                        "(default: auto)")
    p.add_argument("--layers", default="all",
                   help="fused layers k: 'all' (0..L-1) or comma-separated, e.g. 0,3,6 (default: all)")
    p.add_argument("--seeds", type=int, default=3, help="training seeds per run (default: 3)")
    p.add_argument("--methods", default=",".join(METHODS),
                   help="comma-separated subset of " + ", ".join(METHODS) +
                        " (last is always run; default: all)")
    p.add_argument("--max-examples", type=count_or_all, default="auto", metavar="N|all",
                   help="seeded subsample of N English training examples, or all (default: auto "
                        "= the task's budget above); a subsample gets its own cache entry and is "
                        "reported")
    p.add_argument("--max-dev", type=count_or_all, default="auto", metavar="N|all",
                   help="seeded subsample of English dev, or all (default: the task's budget)")
    p.add_argument("--max-test", type=count_or_all, default="auto", metavar="N|all",
                   help="seeded subsample of each target's test set, or all (default: the task's "
                        "budget)")
    p.add_argument("--epochs", type=int, default=3, help="training epochs per run (default: 3)")
    p.add_argument("--concat", default="best", choices=["best", "all"],
                   help="run concat at the dev-selected and per-language best DLFA k (best) or at "
                        "every k (all) (default: best)")
    p.add_argument("--jobs", type=int, default=None,
                   help="parallel training processes, one thread each (default: min(2, cores))")
    p.add_argument("--n-boot", type=int, default=1000,
                   help="bootstrap replicates for 95%% intervals (default: 1000)")
    p.add_argument("--out", default=None,
                   help="output directory (default: out/fusion/<task>)")
    p.add_argument("--device", default="auto", help="extraction device: cuda, mps, cpu or auto")
    add_dtype_option(p)
    p.add_argument("--quiet", action="store_true", help="no progress bars or stage messages")


def run(args) -> int:
    """Run ``probe fuse`` from parsed arguments; prints the table and where files went.
    (:func:`fuse` imports probe.data.xtreme, which registers the XTREME corpora, first.)"""
    res = fuse(args.task, args.lang, model=args.model, layers=args.layers, seeds=args.seeds,
               methods=args.methods, max_examples=args.max_examples,
               max_dev=args.max_dev, max_test=args.max_test, epochs=args.epochs,
               concat=args.concat, n_jobs=args.jobs, n_boot=args.n_boot,
               progress=not args.quiet, device=None if args.device == "auto" else args.device,
               dtype=args.dtype)
    r = res.report
    out = Path(args.out or Path("out") / "fusion" / args.task)
    print(f"model: {r['model']['name']} (fingerprint {r['model']['fingerprint'][:12]}), FROZEN "
          f"encoder: features from the cache (the paper fine-tunes mBERT end to end)")
    tr = r["data"]["train"]
    print(f"data: train en {tr['split']} ({tr['n_sentences']} examples), dev en "
          f"{r['data']['dev']['split']}, targets " +
          ", ".join(f"{l} {r['data']['targets'][l]['split']}" for l in res.langs))
    print(r["subsample_note"])
    print(r["training_data"]["description"])
    for lang, lk in r["leakage"].items():
        if lk["n_dropped"]:
            print(f"{lang}: dropped {lk['n_dropped']} of {lk['n_loaded']} target pairs that are "
                  f"(translations of) English training/selection pairs; {lk['n_evaluated']} evaluated")
    print(res.format_table())
    print("note: " + r["capacity_note"])
    def vs_alone(b):
        g = b.get("gain_vs_layer_k")
        if not g:
            return ""
        iv = "no interval" if g.get("ci95") is None else \
            f"{g['ci95'][0]:+.3f}, {g['ci95'][1]:+.3f}"
        return f", {g['mean']:+.3f} [{iv}] vs layer {b['k']} alone"

    best = ", ".join(f"{l}: k={b['k']} ({b['gain_vs_last']['mean']:+.3f} vs last{vs_alone(b)}"
                     f"{', at chance' if b.get('at_chance') else ''})"
                     for l, b in r["best_k"].items())
    if best:
        print(f"best k per language (oracle): {best}; dev-selected k: "
              + ", ".join(f"{m} {k}" for m, k in r["selected_k"].items()))
    t = r["timings_s"]
    print(f"cache: {r['cache']['disk_human']} on disk for this task's {len(r['cache']['entries'])} "
          f"entries; time: {t['total']:.0f} s (extraction/open {t['extract_or_open']:.0f} s, "
          f"training {t['training']:.0f} s)")
    paths = res.save(out)
    summary = []
    try:
        summary = summary_figure([out.parent], out.parent / "summary.png")
    except ProbeError:
        pass
    print(f"wrote {out}/fusion.json and {sum(1 for p in paths if p.suffix == '.png')} figures"
          + (f"; summary of {', '.join(summary_table([out.parent])['tasks'])}: {summary[0]}"
             if summary else ""))
    return 0
