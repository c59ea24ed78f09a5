"""The analyses behind the committed figures: one small module per question.

Each module has ``NAME``, ``CLAIM`` (the claim its figure tests) and
``main(model="e5-small-q4", out_root=Path("."), quick=False) -> list[Path]``, which calls
the public ``probe`` API and writes ``results/<name>.json`` and ``figures/<name>.png``/``.pdf``
under ``out_root``. :data:`ANALYSES` registers them in the order ``probe figures`` runs them
(later ones reuse the cache entries and memoised results of earlier ones). A module with
``BY_DEFAULT = False`` (``finetune_gains``: hours of fine-tuning) runs only when named
(``probe figures --only finetune_gains``).

Run one directly (``python3 -m probe.analyses.cka_heatmaps --quick``) or all of them with
``probe figures`` / ``make figures``. The modules are imported on first lookup, so listing
the registry (or running one module with ``-m``) imports no other analysis.
"""
from __future__ import annotations

from ..registry import Registry

#: name -> module (imported on first lookup), in run order
ANALYSES = Registry("analysis")
for _name in ("layer_tradeoff", "cka_heatmaps", "language_families", "retrieval_tatoeba", "fusion_sweep",
              "robustness", "scaling", "input_format", "finetune_gains"):
    ANALYSES.register(_name, module=f"{__name__}.{_name}")


def by_default(name: str) -> bool:
    """Whether ``probe figures`` without ``--only`` runs analysis ``name``."""
    return bool(getattr(ANALYSES[name], "BY_DEFAULT", True))


__all__ = ["ANALYSES", "by_default"]
