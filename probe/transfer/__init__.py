"""probe.transfer: zero-shot cross-lingual transfer with layer fusion (AIF/DLFA) on cached
hidden states.

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

The parts, each one concept (read them in this order):

* ``driver.py``: :func:`fuse`, the run function (argument checks, data and cache entries,
  the plan of runs, the report's provenance) and :func:`target_split_of`;
* ``settings.py``: the fixed choices (:data:`METHODS`, :data:`TASK_BUDGETS`,
  :data:`TASK_LR`, the notes every report carries);
* ``views.py``: cache entries as training data with the task's label ids
  (:class:`CachedView`, :func:`map_labels`);
* ``runs.py``: one (method, k, seed) run, trained and scored (:func:`sentence_counts`), and
  its memo key, which holds the code it depends on (:func:`run_code`);
* ``runner.py``: :class:`~probe.transfer.runner.Runner`, the jobs of a sweep in this process
  or in a pool of worker processes, finished runs read from the memo;
* ``report.py``: ``fusion.json`` built from the runs (intervals, gains, selected and best k);
* ``result.py``: :class:`FusionResult` (table, text, save/load); ``plots.py``: its figures
  and :func:`summary_figure`; ``summary.py``: the cross-task summary of saved sweeps
  (:func:`summary_table`, :func:`summary_highlight`);
* ``cli.py``: ``probe fuse`` (``add_parser``, ``run``), registered by ``probe/cli.py`` and
  not re-exported here.

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

from .settings import (CAPACITY_NOTE, FROZEN_NOTE, FUSION_POOLING, METHODS, PAPER, RUN_VERSION,
                       SOURCE_LANG, TASK_BUDGETS, TASK_LR, TRAINING_DATA, Budget)
from .views import CachedView, map_labels
from .runs import run_code, sentence_counts
from .summary import summary_highlight, summary_table
from .plots import summary_figure
from .result import FusionResult
from .driver import fuse, target_split_of

__all__ = [
    "fuse",
    "FusionResult",
    "CachedView",
    "map_labels",
    "Budget",
    "TASK_BUDGETS",
    "TASK_LR",
    "FUSION_POOLING",
    "METHODS",
    "SOURCE_LANG",
    "RUN_VERSION",
    "PAPER",
    "FROZEN_NOTE",
    "TRAINING_DATA",
    "CAPACITY_NOTE",
    "target_split_of",
    "run_code",
    "sentence_counts",
    "summary_table",
    "summary_figure",
    "summary_highlight",
]
