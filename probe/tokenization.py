"""Tokenization of pre-split words: the pieces each word gets, the special-token frame,
sentence pairs (with segment ids where the model has them) and overlapping windows for
sentences longer than the model's limit. :mod:`probe.extraction` runs the forward passes;
:mod:`probe.alignment` builds the same :class:`Unit` objects from a sentence's own text.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .errors import ProbeError

POOLINGS = ("first", "mean", "last")


@dataclass
class Unit:
    """One forward pass input: a whole sentence or one window of a long one.

    ``input_ids`` include the special tokens. ``pos`` / ``word`` list, for every piece
    that is pooled, its position in ``input_ids`` and the global word index it belongs to.
    """

    sentence: int
    window: int
    input_ids: list[int]
    pos: np.ndarray
    word: np.ndarray
    token_type_ids: list[int] | None = None  # segment ids of a sentence pair, when the model has them


def window_plan(piece_start: np.ndarray, piece_end: np.ndarray, budget: int) -> list[tuple[int, int]]:
    """Word ranges ``[a, b)`` of overlapping windows whose pieces fit in ``budget``.

    Consecutive windows overlap by about half a window so every word but those at the
    sentence edges can be read with context on both sides.
    """
    n = len(piece_start)
    windows = []
    a = 0
    while True:
        b = a
        while b < n and piece_end[b] - piece_start[a] <= budget:
            b += 1
        b = max(b, a + 1)  # a single over-long word still forms its own (clipped) window
        windows.append((a, b))
        if b >= n:
            return windows
        half = piece_start[a] + (piece_end[b - 1] - piece_start[a]) // 2
        nxt = int(np.searchsorted(piece_start, half, side="left"))
        a = max(a + 1, min(nxt, b - 1) if b - 1 > a else b)


def assign_windows(piece_start, piece_end, windows) -> np.ndarray:
    """For each word, the window in which it is farthest from both window edges."""
    n = len(piece_start)
    best = np.zeros(n, dtype=np.int64)
    best_margin = np.full(n, -1, dtype=np.int64)
    for w, (a, b) in enumerate(windows):
        left = piece_start[a:b] - piece_start[a]
        right = piece_end[b - 1] - piece_end[a:b]
        margin = np.minimum(left, right)
        better = margin > best_margin[a:b]
        best[a:b][better] = w
        best_margin[a:b][better] = margin[better]
    return best


def piece_windows(piece_start: np.ndarray, piece_end: np.ndarray, budget: int):
    """The windows of a sentence too long for the model, from each word's piece range
    ``[piece_start, piece_end)`` (both ``[n_words]``, non-decreasing).

    Returns ``owner: [n_words]`` (the window each word is read from, see
    :func:`assign_windows`), the piece range ``(lo, hi)`` of every window, and how many
    windows were clipped to ``budget`` (a single word longer than the model's limit).
    """
    windows = window_plan(piece_start, piece_end, budget)
    owner = assign_windows(piece_start, piece_end, windows)
    spans, clipped = [], 0
    for a, b in windows:
        lo, hi = int(piece_start[a]), int(piece_end[b - 1])
        if hi - lo > budget:
            clipped += 1
            hi = lo + budget
        spans.append((lo, hi))
    return owner, spans, clipped


def token_id(tokenizer, token: str) -> int | None:
    """The id of ``token`` in the vocabulary, or None. Fast tokenizers answer from their
    backend; ``get_vocab()`` builds a Python dict of the whole vocabulary (~0.2 s for a
    250k-piece SentencePiece model), so it is only the fallback."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        return backend.token_to_id(token)
    return tokenizer.get_vocab().get(token)


class Tokenization:
    """Piece-level view of a list of pre-split sentences for one tokenizer."""

    def __init__(self, tokenizer, sentences_words: Sequence[Sequence[str]], max_length: int,
                 pooling: str, n_first: Sequence[int | None] | None = None, segment_ids: bool = False):
        """``segment_ids``: give sentence pairs the tokenizer's segment ids (``token_type_ids``
        of ``tokenizer(a, b)``); for models with a segment embedding (BERT, mBERT)."""
        if pooling not in POOLINGS:
            raise ProbeError(f"unknown pooling {pooling!r}; choose from {', '.join(POOLINGS)}")
        self.tokenizer = tokenizer
        self.pooling = pooling
        # Learn the special-token frame (<s> ... </s>, [CLS] ... [SEP]) from one probe call:
        # tokenizer APIs for it differ across transformers versions.
        probe_enc = tokenizer([["a"]], is_split_into_words=True, add_special_tokens=True)
        probe_ids, probe_wids = probe_enc["input_ids"][0], probe_enc.word_ids(0)
        inside = [i for i, w in enumerate(probe_wids) if w is not None]
        self.prefix_ids = list(probe_ids[:inside[0]])
        self.suffix_ids = list(probe_ids[inside[-1] + 1:])
        self.n_prefix = len(self.prefix_ids)
        self.n_special = self.n_prefix + len(self.suffix_ids)
        self.budget = max_length - self.n_special
        self.max_length = max_length
        self.pair_types = None
        if n_first is not None and any(k is not None for k in n_first):
            pair = tokenizer([["a"]], [["b"]], is_split_into_words=True, add_special_tokens=True,
                             return_token_type_ids=True)
            p_ids, p_seq = pair["input_ids"][0], pair.sequence_ids(0)
            a_at, b_at = p_seq.index(0), p_seq.index(1)
            self.pair_frame = (list(p_ids[:a_at]), list(p_ids[a_at + 1:b_at]), list(p_ids[b_at + 1:]))
            types = [int(t) for t in pair.get("token_type_ids", [[0] * len(p_ids)])[0]]
            if segment_ids and any(types):
                # (frame before A, A's pieces, frame between, B's pieces, frame after)
                self.pair_types = (types[:a_at], types[a_at], types[a_at + 1:b_at], types[b_at],
                                   types[b_at + 1:])
        self.n_first = n_first
        self.clipped_words: list[int] = []
        self.bare_id = token_id(tokenizer, "\u2581")
        self.n_replaced_words = 0
        self.n_windowed = 0
        self.n_clipped_words = 0
        self.units: list[Unit] = []
        offsets = np.zeros(len(sentences_words) + 1, dtype=np.int64)
        np.cumsum([len(w) for w in sentences_words], out=offsets[1:])
        self.offsets = offsets
        step = 512
        for lo in range(0, len(sentences_words), step):
            batch = [list(w) for w in sentences_words[lo:lo + step]]
            enc = tokenizer(batch, is_split_into_words=True, add_special_tokens=False)
            for j, words in enumerate(batch):
                ids = enc["input_ids"][j]
                wids = enc.word_ids(j)
                counts = np.bincount([w for w in wids if w is not None], minlength=len(words))
                if (counts == 0).any():
                    ids, wids = self._replace_empty(words, counts)
                ids = np.asarray(ids, dtype=np.int64)
                wids = np.asarray([-1 if w is None else w for w in wids], dtype=np.int64)
                k = n_first[lo + j] if n_first is not None else None
                if k is None:
                    self._add_sentence(lo + j, ids, wids, len(words))
                else:
                    self._add_pair(lo + j, ids, wids, len(words), k)

    def _replace_empty(self, words, counts):
        """Words that tokenize to nothing (e.g. a lone zero-width character) become <unk>,
        so that every corpus word still gets a vector and word counts stay exact."""
        unk = self.tokenizer.unk_token
        fixed = [w if c > 0 else unk for w, c in zip(words, counts)]
        self.n_replaced_words += int((counts == 0).sum())
        enc = self.tokenizer([fixed], is_split_into_words=True, add_special_tokens=False)
        return enc["input_ids"][0], enc.word_ids(0)

    def _pooled_pieces(self, ids: np.ndarray, wids: np.ndarray, n_words: int):
        """Positions (into ``ids``) of the pieces pooled for each word, and their words."""
        content = np.ones(len(ids), dtype=bool) if self.bare_id is None else ids != self.bare_id
        has_content = np.zeros(n_words, dtype=bool)
        valid = wids >= 0
        has_content[wids[valid & content]] = True
        # A piece counts if it is content, or if its word has no content piece at all.
        keep = valid & (content | ~has_content[np.where(valid, wids, 0)])
        pos = np.nonzero(keep)[0]
        w = wids[pos]
        if self.pooling == "mean":
            return pos, w
        # first / last: one piece per word. pos is sorted; words are contiguous.
        if self.pooling == "first":
            sel = np.ones(len(w), dtype=bool)
            sel[1:] = w[1:] != w[:-1]
        else:
            sel = np.ones(len(w), dtype=bool)
            sel[:-1] = w[1:] != w[:-1]
        return pos[sel], w[sel]

    def _add_sentence(self, s: int, ids: np.ndarray, wids: np.ndarray, n_words: int):
        base = int(self.offsets[s])
        if len(ids) <= self.budget:
            pos, w = self._pooled_pieces(ids, wids, n_words)
            self.units.append(Unit(s, 0, self._with_specials(ids), pos + self.n_prefix, w + base))
            return
        self.n_windowed += 1
        valid = wids >= 0
        piece_start = np.full(n_words, len(ids), dtype=np.int64)
        piece_end = np.zeros(n_words, dtype=np.int64)
        idx = np.arange(len(ids))
        np.minimum.at(piece_start, wids[valid], idx[valid])
        np.maximum.at(piece_end, wids[valid], idx[valid] + 1)
        owner, spans, clipped = piece_windows(piece_start, piece_end, self.budget)
        self.n_clipped_words += clipped
        for k, (lo, hi) in enumerate(spans):
            sub_ids, sub_wids = ids[lo:hi], wids[lo:hi].copy()
            pos, w = self._pooled_pieces(sub_ids, sub_wids, n_words)
            mine = owner[w] == k
            self.units.append(Unit(s, k, self._with_specials(sub_ids), pos[mine] + self.n_prefix,
                                   w[mine] + base))

    def _add_pair(self, s: int, ids: np.ndarray, wids: np.ndarray, n_words: int, n_a: int):
        """A sentence pair ``words[:n_a]`` / ``words[n_a:]`` as one input, e.g.
        ``<s> A </s></s> B </s>``. Pairs too long for the model lose pieces from the end of
        the longer side (longest-first); words left without a piece are recorded in
        ``clipped_words`` and get zero vectors."""
        pre, mid, post = self.pair_frame
        budget = self.max_length - len(pre) - len(mid) - len(post)
        is_a = wids < n_a
        a_ids, b_ids = ids[is_a], ids[~is_a]
        a_w, b_w = wids[is_a], wids[~is_a]
        na, nb = len(a_ids), len(b_ids)
        while na + nb > budget:
            if na >= nb:
                na -= 1
            else:
                nb -= 1
        if (na, nb) != (len(a_ids), len(b_ids)):
            kept = set(a_w[:na].tolist()) | set(b_w[:nb].tolist())
            self.clipped_words += [int(self.offsets[s]) + w for w in range(n_words) if w not in kept]
        cat_ids = np.concatenate([a_ids[:na], b_ids[:nb]])
        cat_w = np.concatenate([a_w[:na], b_w[:nb]])
        pos, w = self._pooled_pieces(cat_ids, cat_w, n_words)
        pos = pos + len(pre) + np.where(pos >= na, len(mid), 0)
        input_ids = pre + [int(i) for i in a_ids[:na]] + mid + [int(i) for i in b_ids[:nb]] + post
        types = None
        if self.pair_types is not None:
            t_pre, t_a, t_mid, t_b, t_post = self.pair_types
            types = t_pre + [t_a] * na + t_mid + [t_b] * nb + t_post
        self.units.append(Unit(s, 0, input_ids, pos, w + int(self.offsets[s]), types))

    def _with_specials(self, ids: np.ndarray) -> list[int]:
        return self.prefix_ids + [int(i) for i in ids] + self.suffix_ids
