"""Natural input: tokenize each sentence's own text once and map pieces back to words.

``input="words"`` (the default, :class:`probe.tokenization.Tokenization`) feeds the model
the corpus words pre-split, as XTREME does; for a SentencePiece model that puts a word
boundary ``▁`` before every word, so Chinese or Japanese reach the model with a "space"
between all words. ``input="text"`` (:class:`TextTokenization`, here) feeds the
sentence's raw text (CoNLL-U ``# text``, rebuilt from ``SpaceAfter=No`` when absent;
Tatoeba's line) and aligns by character offsets:

* a piece *starts* at its first character that is neither whitespace nor an invisible
  format character (SentencePiece offsets include the space before ``▁word``); a piece
  with no such character (a bare ``▁``) belongs to no word;
* each word takes the pieces that start inside its character span ``[start, end)``
  (``Sentence.spans``), pooled like the words mode (``first``, ``mean``, ``last``);
* a word with no piece of its own (its characters lie inside a neighbour's piece, e.g.
  Chinese ``去了`` for the words ``去`` ``了``) takes the piece covering its first
  character; the words of a multiword token (German ``zum`` = ``zu`` + ``dem``) share
  the token's pieces; words whose span could not be located take the nearest piece. All
  of these are *flagged* (``flagged.npy``, ``[n_words]`` bool), so a word-level probe can
  be scored with and without them;
* a text longer than the model's limit is cut into overlapping windows on piece offsets
  (the same plan as the words mode: each word is read in the window where it has the
  most context on both sides).

The units produced are the same :class:`probe.tokenization.Unit` objects, so the forward
pass, pooling and cache are shared with the words mode.
"""
from __future__ import annotations

import unicodedata
from typing import Sequence

import numpy as np

from .errors import ProbeError
from .tokenization import POOLINGS, Tokenization, Unit, piece_windows

INPUTS = ("words", "text")

#: Why a word was flagged (bit values of the reasons counted in the entry's meta.json).
FLAG_REASONS = ("no_own_piece", "multiword_token", "unlocated")


def check_input(input: str) -> str:
    if input not in INPUTS:
        raise ProbeError(f"unknown input mode {input!r}; choose from {', '.join(INPUTS)}")
    return input


def _visible(ch: str) -> bool:
    return not ch.isspace() and unicodedata.category(ch) != "Cf"


def piece_starts(text: str, offsets: Sequence[tuple[int, int]]) -> np.ndarray:
    """``[n_pieces]`` int64: where each piece starts in ``text`` (its first visible
    character), or -1 for a piece without one (a bare ``▁``, a lone zero-width space)."""
    out = np.full(len(offsets), -1, dtype=np.int64)
    for i, (a, b) in enumerate(offsets):
        for c in range(a, b):
            if _visible(text[c]):
                out[i] = c
                break
    return out


def align_words(text: str, spans: Sequence[tuple[int, int] | None],
                offsets: Sequence[tuple[int, int]]) -> tuple[list[list[int]], np.ndarray]:
    """Pieces of each word, and why each word is flagged (0 = not flagged).

    ``spans``: each word's ``[start, end)`` in ``text`` (None = not located);
    ``offsets``: each piece's ``(start, end)`` from the tokenizer (without special tokens).
    Returns ``(pieces, reason)``: ``pieces[w]`` is a non-empty sorted list of piece indices
    (empty only when the text has no piece at all) and ``reason[w]`` is 0 or 1 + the index
    into :data:`FLAG_REASONS`.

    >>> align_words("去了", [(0, 1), (1, 2)], [(0, 2)])
    ([[0], [0]], array([0, 1], dtype=int8))
    """
    n = len(spans)
    starts = piece_starts(text, offsets)
    content = np.nonzero(starts >= 0)[0]
    cstart = starts[content]
    raw_start = np.asarray([a for a, _ in offsets], dtype=np.int64)
    raw_end = np.asarray([b for _, b in offsets], dtype=np.int64)
    pieces: list[list[int]] = []
    reason = np.zeros(n, dtype=np.int8)

    def covering(at: int) -> list[int]:
        if len(offsets) == 0:
            return []
        # The piece whose raw extent holds `at`, else the nearest content piece before it,
        # else the first content piece (or piece) of the text.
        i = int(np.searchsorted(raw_start, at, side="right")) - 1
        if i >= 0 and raw_end[i] > at:
            return [i]
        j = int(np.searchsorted(cstart, at, side="right")) - 1
        if j >= 0:
            return [int(content[j])]
        return [int(content[0])] if len(content) else [0]

    last_end = 0
    for w, span in enumerate(spans):
        if span is None:
            pieces.append(covering(last_end))
            reason[w] = 1 + FLAG_REASONS.index("unlocated")
            continue
        a, b = span
        lo, hi = np.searchsorted(cstart, [a, b], side="left")
        own = [int(i) for i in content[lo:hi]]
        if own:
            pieces.append(own)
        else:
            pieces.append(covering(a))
            reason[w] = 1 + FLAG_REASONS.index("no_own_piece")
        last_end = b
    # Multiword tokens: words sharing one span share the token's pieces.
    for w in range(n):
        if spans[w] is not None and ((w > 0 and spans[w - 1] == spans[w]) or
                                     (w + 1 < n and spans[w + 1] == spans[w])):
            reason[w] = 1 + FLAG_REASONS.index("multiword_token")
    return pieces, reason


class TextTokenization:
    """Piece-level view of a corpus tokenized from each sentence's raw text.

    The same interface as :class:`probe.tokenization.Tokenization` (``units``, ``offsets``,
    ``n_windowed``, ...), plus ``flagged`` (``[n_words]`` bool) and ``flag_counts``.
    """

    def __init__(self, tokenizer, sentences, max_length: int, pooling: str):
        from .data.spans import locate_spans

        if pooling not in POOLINGS:
            raise ProbeError(f"unknown pooling {pooling!r}; choose from {', '.join(POOLINGS)}")
        if not getattr(tokenizer, "is_fast", False):
            raise ProbeError("input='text' needs a fast tokenizer (character offsets); "
                             f"{type(tokenizer).__name__} has none: use input='words'")
        if any(getattr(s, "n_first", None) is not None for s in sentences):
            raise ProbeError("input='text' does not support sentence-pair corpora yet; use input='words'")
        frame = Tokenization(tokenizer, [["a"]], max_length, pooling)  # the special-token frame
        self.prefix_ids, self.suffix_ids = frame.prefix_ids, frame.suffix_ids
        self.n_prefix = frame.n_prefix
        self.budget = frame.budget
        self.max_length = max_length
        self.pooling = pooling
        self.clipped_words: list[int] = []
        self.n_replaced_words = 0  # words of texts that tokenize to nothing (they get <unk>)
        self.n_windowed = 0
        self.n_clipped_words = 0
        self.units: list = []
        self.offsets = np.zeros(len(sentences) + 1, dtype=np.int64)
        np.cumsum([len(s.words) for s in sentences], out=self.offsets[1:])
        n_total = int(self.offsets[-1])
        self.reason = np.zeros(n_total, dtype=np.int8)
        self.n_pieces = 0
        unk = tokenizer.unk_token_id
        step = 512
        for lo in range(0, len(sentences), step):
            batch = sentences[lo:lo + step]
            texts = [s.text for s in batch]
            enc = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True)
            for j, s in enumerate(batch):
                ids = list(enc["input_ids"][j])
                offs = [tuple(o) for o in enc["offset_mapping"][j]]
                if not ids:
                    ids, offs = [unk], [(0, len(s.text))]
                    self.n_replaced_words += len(s.words)
                spans = getattr(s, "spans", None)
                if spans is None:
                    spans = locate_spans(s.text, s.words)
                if len(spans) != len(s.words):
                    raise ProbeError(f"sentence {s.sent_id}: {len(spans)} spans for {len(s.words)} words")
                pieces, reason = align_words(s.text, spans, offs)
                base = int(self.offsets[lo + j])
                self.reason[base:base + len(s.words)] = reason
                self.n_pieces += len(ids)
                self._add(lo + j, np.asarray(ids, dtype=np.int64), pieces, base)

    def _pooled(self, pieces: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
        """``(pos, word)``: the pooled piece positions of each word (local word index)."""
        pos, word = [], []
        for w, ps in enumerate(pieces):
            if self.pooling == "first":
                ps = ps[:1]
            elif self.pooling == "last":
                ps = ps[-1:]
            pos.extend(ps)
            word.extend([w] * len(ps))
        return np.asarray(pos, dtype=np.int64), np.asarray(word, dtype=np.int64)

    def _add(self, s, ids, pieces, base):
        pos, word = self._pooled(pieces)
        if len(ids) <= self.budget:
            self.units.append(Unit(s, 0, self._with_specials(ids), pos + self.n_prefix, word + base))
            return
        self.n_windowed += 1
        piece_start = np.asarray([min(p) for p in pieces], dtype=np.int64)
        piece_end = np.asarray([max(p) + 1 for p in pieces], dtype=np.int64)
        # Shared (covering) pieces keep both arrays non-decreasing, as the plan needs.
        piece_start = np.maximum.accumulate(piece_start)
        piece_end = np.maximum.accumulate(piece_end)
        owner, spans, clipped = piece_windows(piece_start, piece_end, self.budget)
        self.n_clipped_words += clipped
        for k, (lo, hi) in enumerate(spans):
            mine = (owner[word] == k) & (pos >= lo) & (pos < hi)
            self.units.append(Unit(s, k, self._with_specials(ids[lo:hi]), pos[mine] - lo + self.n_prefix,
                                   word[mine] + base))

    def _with_specials(self, ids: np.ndarray) -> list[int]:
        return self.prefix_ids + [int(i) for i in ids] + self.suffix_ids

    @property
    def flagged(self) -> np.ndarray:
        """``[n_words]`` bool: words without a piece of their own (see the module doc)."""
        return self.reason > 0

    @property
    def flag_counts(self) -> dict:
        out = {"flagged_words": int(self.flagged.sum()), "n_words": int(len(self.reason))}
        for i, name in enumerate(FLAG_REASONS):
            out[name] = int((self.reason == i + 1).sum())
        return out

    def entry_arrays(self) -> dict[str, np.ndarray]:
        """Extra arrays stored in the cache entry."""
        return {"flagged.npy": self.flagged}

    def entry_meta(self) -> dict:
        """What ``meta.json`` records about this input mode."""
        return {"mode": "text", "source": "the sentence's own text (CoNLL-U # text, rebuilt from "
                "SpaceAfter=No when absent; Tatoeba's line), tokenized once with offsets",
                "n_pieces": self.n_pieces, **self.flag_counts}
