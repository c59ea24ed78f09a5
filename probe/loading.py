"""Quiet checkpoint loading.

transformers 5 draws a per-tensor "Loading weights: 100%|...| 197/197" bar on every
``from_pretrained``, also under ``--quiet`` / ``progress=False``, and for a load of a few
seconds it says nothing a user needs; :func:`quiet_loading` turns it off around a load and
restores the previous setting afterwards (a notebook that enabled or disabled the bars
keeps its choice).

>>> with quiet_loading():                                  # doctest: +SKIP
...     model = BertModel.from_pretrained(path)
"""
from __future__ import annotations

import contextlib

__all__ = ["quiet_loading"]


@contextlib.contextmanager
def quiet_loading(*, errors_only: bool = False):
    """transformers' progress bars off (and with ``errors_only`` its log below ERROR, e.g.
    the load-report table) for the duration of the block; the previous state is restored
    even when the load fails."""
    from transformers.utils import logging as hf_logging

    bars, level = hf_logging.is_progress_bar_enabled(), hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()
    if errors_only:
        hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        if errors_only:
            hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()
