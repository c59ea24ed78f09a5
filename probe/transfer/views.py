"""Cache entries as training data: :class:`CachedView` (a :class:`probe.fusion.FeatureView`
whose labels are ids into the task's fixed label list) and :func:`map_labels`.

Both are part of a fusion run's memo key (:func:`probe.transfer.runs.run_code`): an edit here
recomputes the runs.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..errors import ProbeError

__all__ = ["CachedView", "map_labels"]


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
