"""The analyses behind the committed figures: one small script per question.

Each module has ``NAME``, ``CLAIM`` (the claim its figure tests) and
``main(model="e5-small-q4", out_root=Path("."), quick=False) -> list[Path]``, which calls
the public ``probe`` API and writes ``results/<name>.json`` and ``figures/<name>.png``/``.pdf``
under ``out_root``. :data:`ANALYSES` lists them in the order ``probe figures`` runs them
(later ones reuse the cache entries and memoised results of earlier ones).

Run one directly (``python3 analyses/cka_heatmaps.py --quick``) or all of them with
``probe figures`` / ``make figures`` from a source checkout.
"""
from __future__ import annotations

from types import ModuleType

from . import (cka_heatmaps, fusion_sweep, input_format, language_families, layer_tradeoff, retrieval_tatoeba,
               robustness, scaling)

#: name -> module, in run order
ANALYSES: dict[str, ModuleType] = {
    "layer_tradeoff": layer_tradeoff,
    "cka_heatmaps": cka_heatmaps,
    "language_families": language_families,
    "retrieval_tatoeba": retrieval_tatoeba,
    "fusion_sweep": fusion_sweep,
    "robustness": robustness,
    "scaling": scaling,
    "input_format": input_format,
}

__all__ = ["ANALYSES"]
