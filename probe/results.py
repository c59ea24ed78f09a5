"""What every result object shares: a short ``repr``, an HTML table for Jupyter, and the
files of a ``save(dir)`` that ``load(dir)`` reads back.

A result class (:class:`~probe.layerwise.LayerResult`, :class:`~probe.transfer.FusionResult`,
:class:`~probe.compare.CompareResult`) holds a JSON-ready ``report`` and implements
``table()`` (a pandas DataFrame) and ``_headline()`` (one line: what was run on what).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .errors import ProbeError

#: ``repr(result)`` never exceeds this many characters (a notebook cell stays readable)
REPR_LIMIT = 2000


class ResultDisplay:
    """Mixin: ``repr`` = headline + the first rows of ``table()``; ``_repr_html_`` = the table."""

    def _headline(self) -> str:  # overridden by each result
        return type(self).__name__

    def _table_or_none(self):
        try:
            return self.table()
        except (KeyError, IndexError, TypeError, ValueError, ProbeError):
            return None  # a partial report (e.g. an old file) still gets its headline

    def __repr__(self) -> str:
        head = f"<{type(self).__name__}: {self._headline()}>"
        df = self._table_or_none()
        if df is None:
            return head[:REPR_LIMIT]
        import pandas as pd

        with pd.option_context("display.width", 100, "display.max_columns", 8, "display.max_rows", 16,
                               "display.precision", 3):
            body = df.to_string(max_rows=16, max_cols=8, float_format=lambda v: f"{v:.3f}")
        text = f"{head}\n{body}"
        if len(text) > REPR_LIMIT:
            text = text[:REPR_LIMIT - 4].rsplit("\n", 1)[0] + "\n..."
        return text

    def _repr_html_(self) -> str:
        import html

        df = self._table_or_none()
        head = f"<p><b>{html.escape(type(self).__name__)}</b>: {html.escape(self._headline())}</p>"
        if df is None:
            return head
        return head + df.to_html(float_format=lambda v: f"{v:.3f}", border=0)


class SavedFiles(list):
    """The files a ``save(dir)`` wrote; as a path (``os.fspath``) it is the folder, so
    ``Result.load(res.save(d))`` reads it back."""

    def __init__(self, folder, paths=()):
        super().__init__(paths)
        self.folder = Path(folder)

    def __fspath__(self) -> str:
        return str(self.folder)


def report_file(path, name: str) -> Path:
    """``path`` itself, or ``path/name`` when ``path`` is a folder (or a :class:`SavedFiles`)."""
    path = Path(os.fspath(path))
    if path.is_dir():
        path = path / name
    if not path.is_file():
        raise ProbeError(f"{path}: no such result file (save(dir) writes {name} into dir)")
    return path


def save_counts(path: Path, counts: dict) -> Path:
    """Per-sentence outcomes ``{curve: array}`` as one ``.npz`` (atomically); returns ``path``."""
    from .cache import atomic_save_npz

    names = sorted(counts)
    arrays = {f"a{i}": np.asarray(counts[n]) for i, n in enumerate(names)}
    atomic_save_npz(path, names=np.asarray(names, dtype=str), **arrays)
    return path


def load_counts(path: Path) -> dict | None:
    """What :func:`save_counts` wrote (None when there is no such file)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            return {str(n): z[f"a{i}"] for i, n in enumerate(z["names"])}
    except (OSError, ValueError, KeyError) as exc:
        raise ProbeError(f"{path}: unreadable per-sentence counts ({exc})") from None


def closed(fig, path) -> list[Path]:
    """Close a figure a ``save`` drew (and saved to ``path``); returns its saved files."""
    import matplotlib.pyplot as plt

    from .plotting import saved_paths

    plt.close(fig)
    return saved_paths(path)
