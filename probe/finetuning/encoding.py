"""Corpus sentences as token ids for fine-tuning (:class:`Encoded`), and padded batches.

Word-level tasks label each word's first *content* piece (a bare SentencePiece ``▁`` piece is
skipped); sentence pairs are encoded together, with segment ids when the model has them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..errors import ProbeError

#: Target id the loss and the counts skip (unlabelled items, padding, non-first pieces).
IGNORE = -100


@dataclass
class Encoded:
    """Tokenised examples of one split.

    ``ids[i]``, ``types[i]``: ``[n_pieces_i]`` int64 token and segment ids; ``positions[i]``:
    ``[n_words_i]`` piece index of each word's first content piece (-1 = cut off by the max
    length); ``labels[i]``: ``[n_words_i]`` label ids (-1 = unlabelled) for tagging, else one
    int per example in ``labels`` (an array ``[n]``).
    """

    kind: str
    ids: list
    types: list
    positions: list
    labels: object
    n_truncated_words: int = 0

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def lengths(self) -> np.ndarray:
        return np.fromiter((len(x) for x in self.ids), dtype=np.int64, count=len(self.ids))


def encode_examples(tokenizer, sentences, kind: str, label_names: Sequence[str],
                    max_length: int = 128, segment_ids: bool = True) -> Encoded:
    """Tokenise corpus sentences (``words``; ``tags`` or ``label`` + ``n_first``) for training."""
    index = {v: i for i, v in enumerate(label_names)}

    def lab(v):
        if v is None:
            return -1
        try:
            return index[v]
        except KeyError:
            raise ProbeError(f"label {v!r} is not one of the task's labels "
                             f"({', '.join(label_names)})") from None

    vocab = tokenizer.get_vocab()
    bare = vocab.get("\u2581")
    sentences = list(sentences)
    ids, types, positions, labels = [], [], [], []
    truncated = 0
    step = 256
    for start in range(0, len(sentences), step):
        chunk = sentences[start:start + step]
        if kind == "tagging":
            enc = tokenizer([list(s.words) for s in chunk], is_split_into_words=True,
                            truncation=True, max_length=max_length)
        else:
            enc = tokenizer([list(s.words[:s.n_first]) for s in chunk],
                            [list(s.words[s.n_first:]) for s in chunk],
                            is_split_into_words=True, truncation=True, max_length=max_length)
        for j, s in enumerate(chunk):
            row = np.asarray(enc["input_ids"][j], dtype=np.int64)
            ids.append(row)
            seq = enc.sequence_ids(j)
            tt = np.zeros(len(row), dtype=np.int64)
            if kind != "tagging" and segment_ids:
                second = [p for p, q in enumerate(seq) if q == 1]
                if second:
                    tt[second[0]:] = 1
            types.append(tt)
            if kind == "tagging":
                wids = enc.word_ids(j)
                pos = np.full(len(s.words), -1, dtype=np.int64)
                for p, w in enumerate(wids):
                    if w is None:
                        continue
                    if pos[w] < 0:
                        pos[w] = p
                    elif row[pos[w]] == bare and pos[w] == p - 1:
                        pos[w] = p  # first *content* piece: skip a bare "▁"
                truncated += int((pos < 0).sum())
                positions.append(pos)
                labels.append(np.asarray([lab(t) for t in s.tags], dtype=np.int64))
            else:
                positions.append(np.zeros(1, dtype=np.int64))
                labels.append(lab(s.label))
    if kind != "tagging":
        labels = np.asarray(labels, dtype=np.int64)
    return Encoded(kind, ids, types, positions, labels, truncated)


def collate(enc: Encoded, rows: np.ndarray, pad_id: int, device):
    """A padded batch: ``input_ids, attention_mask, token_type_ids: [B, T]`` and targets
    (``[B, T]`` with IGNORE off labelled first pieces for tagging, ``[B]`` for pairs)."""
    import torch

    lens = [len(enc.ids[r]) for r in rows]
    width = max(lens)
    ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    types = np.zeros((len(rows), width), dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for b, r in enumerate(rows):
        n = lens[b]
        ids[b, :n] = enc.ids[r]
        types[b, :n] = enc.types[r]
        mask[b, :n] = 1
    if enc.kind == "tagging":
        y = np.full((len(rows), width), IGNORE, dtype=np.int64)
        for b, r in enumerate(rows):
            pos, lab = enc.positions[r], enc.labels[r]
            keep = (pos >= 0) & (lab >= 0)
            y[b, pos[keep]] = lab[keep]
    else:
        y = np.asarray(enc.labels)[rows].copy()
        y[y < 0] = IGNORE
    t = lambda a: torch.from_numpy(a).to(device)  # noqa: E731
    return t(ids), t(mask), t(types), t(y)
