"""Character spans of words in their sentence's raw text.

``locate_spans(text, forms)`` finds each surface form in ``text`` left to right; the
corpus readers use it to give every :class:`~probe.data.Sentence` its word spans, which
:mod:`probe.alignment` needs to map a tokenizer's pieces (tokenized from the raw text)
back to the corpus words.
"""
from __future__ import annotations

from typing import Sequence

__all__ = ["locate_spans"]


def locate_spans(text: str, forms: Sequence[str]) -> list[tuple[int, int] | None]:
    """``[start, end)`` of each form in ``text``, searched in order from the previous match.

    A form that does not occur (the ``# text`` line and the forms disagree, e.g. after a
    normalisation) gets the characters between its located neighbours when there are
    any (shared by all unlocated forms of that gap), else None.

    >>> locate_spans("Ich gehe zum Markt.", ["Ich", "gehe", "zum", "Markt", "."])
    [(0, 3), (4, 8), (9, 12), (13, 18), (18, 19)]
    """
    spans: list[tuple[int, int] | None] = []
    cursor = 0
    pending: list[int] = []  # unlocated forms since the last located one

    def fill_gap(end: int):
        lo, hi = cursor, end
        while lo < hi and text[lo].isspace():
            lo += 1
        while hi > lo and text[hi - 1].isspace():
            hi -= 1
        for i in pending:
            spans[i] = (lo, hi) if hi > lo else None
        pending.clear()

    for form in forms:
        at = text.find(form, cursor) if form else -1
        if at < 0:
            pending.append(len(spans))
            spans.append(None)
            continue
        if pending:
            fill_gap(at)
        spans.append((at, at + len(form)))
        cursor = at + len(form)
    if pending:
        fill_gap(len(text))
    return spans
