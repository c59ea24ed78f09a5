"""probe: which layers of a multilingual encoder carry structure, which carry
cross-lingual information, and does fusing a lower layer with the last help?

Layer indices everywhere: 0 = embedding output, L = last transformer layer.

>>> import probe                                                  # doctest: +SKIP
>>> entry = probe.extract("e5-small-q4", "pud", "de", "test")     # doctest: +SKIP
>>> res = probe.layers(["de", "zh"], model="e5-small-q4")         # doctest: +SKIP
"""
from __future__ import annotations

import importlib

from .hub import set_hub_timeouts as _set_hub_timeouts

__version__ = "0.1.0"

# Before anything imports huggingface_hub, which reads its timeouts once at import.
_set_hub_timeouts()

# Public API, imported lazily so `import probe` (and a cached CLI run) stays fast.
_EXPORTS = {
    "load_encoder": "probe.encoders",
    "resolve_encoder": "probe.encoders",
    "extract": "probe.extraction",
    "CacheEntry": "probe.cache",
    "load_corpus": "probe.data",
    "get_corpus": "probe.data",
    "get_language": "probe.languages",
    "layers": "probe.layerwise",
    "LayerResult": "probe.layerwise",
    "compare": "probe.compare",
    "CompareResult": "probe.compare",
    "perturb_corpus": "probe.perturb",
    "fuse": "probe.transfer",
    "FusionResult": "probe.transfer",
    "finetune": "probe.finetuning",
    "FinetuneResult": "probe.finetuning",
    "FusionClassifier": "probe.fusion",
    "LinearProbe": "probe.probes",
    "ControlTask": "probe.probes",
    "linear_cka": "probe.similarity",
    "cka_matrix": "probe.similarity",
    "retrieval_accuracy": "probe.similarity",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'probe' has no attribute {name!r}")
