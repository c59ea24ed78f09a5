"""probe.layerwise: which layers carry structure and which carry cross-lingual information?

:func:`layers` is the toolkit's main analysis and the API behind ``probe layers``:

- **structure**: linear probes per layer (part of speech, universal dependency relation) trained
  on English (EWT dev+test), evaluated in-language on English PUD and zero-shot on each
  target language's PUD, with a Hewitt & Liang control task (selectivity = task − control);
- **language identity**: a probe over the chosen languages' PUD words (held-out
  sentences) — high accuracy means the layer is language-specific;
- **cross-lingual similarity**: debiased linear CKA between English and each target's
  PUD sentence vectors, a layer × layer CKA matrix, and parallel-sentence retrieval
  (accuracy@1 both ways, with and without per-language mean-centering) on PUD and Tatoeba.

The parts, each one concept (read them in this order):

* ``driver.py``: :func:`layers`, the run function (argument checks: :func:`check_targets`,
  :func:`parse_train`, :func:`select_layers`; the loop over layers with its memoised results;
  the report);
* ``entries.py``: the cache entries a run reads, opened or extracted
  (:func:`open_or_extract`, :func:`ensure_entries`), and perturbed target text;
* ``probing.py``: the word-level probes: labels (:func:`entry_labels`), the task and control
  probes fitted on English (weights cached), their evaluation per entry and layer, and the
  language-identity probe; :func:`~probe.layerwise.probing.probe_code` lists the code their
  memo keys hash;
* ``crosslingual.py``: CKA and retrieval per layer, memoised per language pair;
* ``noise.py``: which layers are within noise of a curve's best layer (:func:`noise_summary`,
  :func:`jackknife_noise_summary`);
* ``provenance.py``: :func:`versions` and :func:`entry_record`, what a report says produced it;
* ``result.py``: :class:`LayerResult` (table, text, save/load, :meth:`~LayerResult.difference`)
  and :func:`layer_ranges`; ``plots.py``: its figures;
* ``cli.py``: ``probe layers`` (``add_parser``, ``run``), registered by :mod:`probe.cli`.

Memoised results (fitted probes, evaluations, similarity, noise summaries) are keyed on the
source of the code that computes them (:func:`probe.cache.code_version`), so an edit to that
code never reuses old numbers.

Layer indices: 0 = embedding output, L = last transformer layer.

>>> res = layers(["de", "zh"], model="e5-small-q4")     # doctest: +SKIP
>>> res.table()                                         # doctest: +SKIP
>>> res.plot_tradeoff()                                 # doctest: +SKIP
"""
from __future__ import annotations

from .crosslingual import aligned_rows, similarity_curves
from .driver import check_targets, layers, parse_tasks, parse_train, select_layers
from .entries import ensure_entries, open_or_extract
from .noise import CKA_GROUPS, jackknife_noise_summary, noise_summary
from .probing import SOURCE_LANG, TASKS, UPOS_TAGS, entry_labels
from .provenance import entry_record, versions
from .result import LayerResult, layer_ranges

__all__ = [
    "layers",
    "LayerResult",
    "check_targets",
    "parse_train",
    "parse_tasks",
    "select_layers",
    "open_or_extract",
    "ensure_entries",
    "entry_labels",
    "aligned_rows",
    "similarity_curves",
    "noise_summary",
    "jackknife_noise_summary",
    "layer_ranges",
    "versions",
    "entry_record",
    "TASKS",
    "UPOS_TAGS",
    "SOURCE_LANG",
    "CKA_GROUPS",
]
