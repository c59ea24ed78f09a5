"""probe.compare: encoders on one axis of relative depth. Does the picture change with model size?

:func:`compare` runs the same per-layer analysis (:func:`probe.layers`) for each model,
reusing the cache, and puts every curve on **relative depth** ``layer / L`` (0 = the
embedding output, 1 = the last layer), so a 6-, 12- and 24-layer model share one figure.
For each model it reports the peak layer (absolute and relative) of cross-lingual CKA,
PUD retrieval and zero-shot POS, and the zero-shot POS gain of DLFA fusion at the layer
nearest a chosen relative depth (:func:`probe.fuse`). Differences between models are
tested on the same sentences with a paired sentence bootstrap, so the summary says when
two models' peaks (or two layers') are within noise.

The parts, each one concept (read them in this order):

* ``driver.py``: :func:`compare`, the run function (models resolved and targets checked before
  any work, :func:`probe.layers` and the DLFA run per model, the report);
* ``depth.py``: :func:`relative_depth` and :func:`nearest_layer`;
* ``curves.py``: :data:`CURVES`, each model's relative-depth curves, their peaks and the
  differences between models;
* ``result.py``: :class:`CompareResult` (table, text, save/load); ``plots.py``: its figure;
* ``cli.py``: ``probe compare`` (``add_parser``, ``run``), registered by :mod:`probe.cli`.

``probe.compare`` names both this package and, in :mod:`probe`'s public API, the function
:func:`compare`: ``probe.compare(...)`` right after ``import probe`` calls the function
(as it did when this was one module), and ``from probe.compare import compare, CompareResult``
works as well.

>>> res = compare(["e5-small-q4", "random:e5-small-q4"], "de,zh")   # doctest: +SKIP
>>> res.table()                                        # doctest: +SKIP
>>> res.plot("compare.png")                            # doctest: +SKIP

Offline, ``e5-small-q4`` and its ``random:`` control are available; with the Hugging Face
Hub, ``bert-base-multilingual-cased``, ``xlm-roberta-base``, ``xlm-roberta-large`` and
``intfloat/multilingual-e5-{small,base,large}`` work the same way.
"""
from __future__ import annotations

from .curves import CURVES
from .depth import nearest_layer, relative_depth
from .driver import compare
from .result import CompareResult

__all__ = ["compare", "CompareResult", "relative_depth", "nearest_layer", "CURVES"]
