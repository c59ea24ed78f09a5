"""probe: which layers of a multilingual encoder carry structure, which carry
cross-lingual information, and does fusing a lower layer with the last help?

Layer indices everywhere: 0 = embedding output, L = last transformer layer.
"""
from __future__ import annotations

__version__ = "0.1.0"
