"""Seeded character-level perturbations of a corpus, for robustness analyses.

A perturbation rewrites the *characters* of each word and nothing else: the word
segmentation, the number of words, every label (UPOS, heads, relations, tags) and the
sentence ids stay as they were, so a probe's gold labels and a parallel corpus's
alignment still apply. Each kind is a small registered definition:

- ``typo:<rate>``: every letter is, with probability ``rate``, deleted, doubled,
  swapped with the next letter, or replaced by a letter drawn by frequency from the
  corpus's own letters (so a Chinese sentence gets Chinese typos, a Russian one Cyrillic);
  a word never loses its last character;
- ``drop-diacritics``: combining accents (U+0300–U+036F after NFD) removed, e.g.
  ``Größe → Große``, ``й → и``; marks that are letters of their script (Devanagari
  vowel signs, Arabic harakat) are kept;
- ``lowercase``: ``str.lower`` per word.

Randomness is seeded per sentence (``seed`` and ``sent_id``), so a sentence is
perturbed the same way whatever the corpus order or subset.

>>> from probe.data import Corpus, Sentence
>>> c = Corpus("pud", "de", "test", [Sentence("s1", "Die Größe", ["Die", "Größe"], upos=["DET", "NOUN"])])
>>> p = perturb_corpus(c, "drop-diacritics")
>>> p.sentences[0].words, p.split, p.sentences[0].upos
(['Die', 'Große'], 'test~drop-diacritics', ['DET', 'NOUN'])
>>> [str(x) for x in parse_perturbations("typo:0.05,0.1,lowercase")]
['typo:0.05', 'typo:0.1', 'lowercase']
"""
from __future__ import annotations

import hashlib
import unicodedata
from dataclasses import dataclass, replace
from typing import Callable, Sequence

import numpy as np

from .errors import ProbeError
from .registry import Registry

__all__ = ["Perturbation", "PERTURBATIONS", "parse_perturbations", "perturb_corpus", "perturb_words",
           "changed_fraction"]


@dataclass(frozen=True)
class _Kind:
    name: str
    takes_rate: bool
    fn: Callable  # (word: str, rng, rate, alphabet) -> str
    help: str


#: name -> the perturbation's kind (whether it takes a rate, its word function, help)
PERTURBATIONS = Registry("perturbation")


def _register(name: str, takes_rate: bool, help: str):
    def deco(fn):
        PERTURBATIONS.register(name, _Kind(name, takes_rate, fn, help))
        return fn
    return deco


@dataclass(frozen=True)
class Perturbation:
    """One perturbation: ``kind`` (a key of :data:`PERTURBATIONS`), ``rate`` (typo only), ``seed``."""

    kind: str
    rate: float | None = None
    seed: int = 0

    def __post_init__(self):
        k = PERTURBATIONS[self.kind]  # ProbeError listing the kinds
        object.__setattr__(self, "kind", k.name)  # "Typo" is recorded as "typo"
        if k.takes_rate and (self.rate is None or not 0 < self.rate <= 1):
            raise ProbeError(f"perturbation {self.kind} needs a rate in (0, 1], e.g. {self.kind}:0.1")
        if not k.takes_rate and self.rate is not None:
            raise ProbeError(f"perturbation {self.kind} takes no rate")

    def __str__(self) -> str:
        return f"{self.kind}:{self.rate:g}" if self.rate is not None else self.kind

    @property
    def tag(self) -> str:
        """What goes into a perturbed corpus's split name (and so into its cache key)."""
        return str(self) + (f"@{self.seed}" if self.seed and PERTURBATIONS[self.kind].takes_rate else "")


def parse_perturbations(text: str | Sequence[str], seed: int = 0) -> list[Perturbation]:
    """``"typo:0.05,0.1,0.2,drop-diacritics,lowercase"`` -> perturbations, in order.

    Bare numbers after ``typo:r`` are further rates of the same kind; a list of such
    strings (a repeated command-line flag) is concatenated.
    """
    parts = [text] if isinstance(text, str) else list(text)
    out: list[Perturbation] = []
    last_kind = None
    for part in parts:
        for token in (t.strip() for t in part.split(",")):
            if not token:
                continue
            kind, sep, rate = token.partition(":")
            if not sep and _is_number(kind):
                if last_kind is None or not PERTURBATIONS[last_kind].takes_rate:
                    raise ProbeError(f"bad perturbation list {part!r}: rate {kind} follows no typo:<rate>")
                kind, rate = last_kind, kind
            elif sep and not _is_number(rate):
                raise ProbeError(f"bad perturbation {token!r}: {rate!r} is not a rate")
            p = Perturbation(kind.strip(), float(rate) if rate else None, seed)
            if p not in out:
                out.append(p)
            last_kind = p.kind
    if not out:
        raise ProbeError("no perturbation given (e.g. typo:0.05,0.1 or lowercase)")
    return out


def _is_number(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def _sentence_rng(seed: int, sent_id: str, kind: str) -> np.random.Generator:
    h = hashlib.sha256(f"{seed}\0{kind}\0{sent_id}".encode()).digest()
    return np.random.default_rng(int.from_bytes(h[:8], "little"))


@_register("typo", True, "letters deleted, doubled, swapped or replaced with probability <rate>")
def _typo(word: str, rng: np.random.Generator, rate: float, alphabet) -> str:
    chars = list(word)
    out: list[str] = []
    i = 0
    while i < len(chars):
        c = chars[i]
        if not c.isalpha() or rng.random() >= rate:
            out.append(c)
            i += 1
            continue
        op = int(rng.integers(4))
        if op == 0 and len(chars) > 1:                      # delete
            pass
        elif op == 1:                                        # double
            out += [c, c]
        elif op == 2 and i + 1 < len(chars):                 # swap with the next character
            out += [chars[i + 1], c]
            i += 1
        else:                                                # replace (also the fallbacks)
            out.append(_draw(alphabet, rng) if alphabet else c)
        i += 1
    return "".join(out) or word


@_register("drop-diacritics", False, "combining accents removed (NFD, U+0300-U+036F)")
def _drop_diacritics(word: str, rng, rate, alphabet) -> str:
    stripped = "".join(c for c in unicodedata.normalize("NFD", word) if not 0x300 <= ord(c) <= 0x36F)
    return unicodedata.normalize("NFC", stripped) or word


@_register("lowercase", False, "every word lower-cased")
def _lowercase(word: str, rng, rate, alphabet) -> str:
    return word.lower()


def _draw(alphabet, rng) -> str:
    letters, cdf = alphabet
    return letters[min(int(np.searchsorted(cdf, rng.random(), side="right")), len(letters) - 1)]


def perturb_words(words: Sequence[str], p: Perturbation, sent_id: str = "",
                  alphabet: tuple[list[str], np.ndarray] | None = None) -> list[str]:
    """The perturbed words of one sentence (same length; no word becomes empty or gains a space).

    ``alphabet``: ``(letters, cumulative probabilities)`` that typo replacements are drawn
    from (default: the sentence's own letters, uniformly).
    """
    kind = PERTURBATIONS[p.kind]
    rng = _sentence_rng(p.seed, sent_id, str(p))
    if alphabet is None:
        own = sorted({c for w in words for c in w if c.isalpha()})
        alphabet = (own, np.arange(1, len(own) + 1) / max(len(own), 1)) if own else None
    out = []
    for w in words:
        new = kind.fn(w, rng, p.rate, alphabet)
        out.append(w if (not new or any(ch.isspace() for ch in new)) else new)
    return out


def _alphabet(corpus) -> tuple[list[str], np.ndarray] | None:
    """The corpus's letters and their cumulative frequencies (typos use the corpus's script)."""
    from collections import Counter

    counts = Counter(c for s in corpus.sentences for w in s.words for c in w if c.isalpha())
    if not counts:
        return None
    letters = sorted(counts)
    freq = np.asarray([counts[c] for c in letters], dtype=np.float64)
    return letters, np.cumsum(freq) / freq.sum()


def _text(words: list[str], space_after: list[bool]) -> str:
    if not space_after or len(space_after) != len(words):
        return " ".join(words)
    return "".join(w + (" " if sp else "") for w, sp in zip(words, space_after)).rstrip()


def perturb_corpus(corpus, p: Perturbation | str, seed: int = 0):
    """A copy of ``corpus`` whose words are perturbed; labels, ids and segmentation kept.

    Its split is ``<split>~<perturbation>`` and its :attr:`~probe.data.Corpus.sha256` includes
    the perturbation, so its cache entry never collides with the clean one.
    """
    from .data import Corpus

    if isinstance(p, str):
        (p,) = parse_perturbations(p, seed=seed)
    alphabet = _alphabet(corpus) if PERTURBATIONS[p.kind].takes_rate else None
    sents = []
    for s in corpus.sentences:
        words = perturb_words(s.words, p, s.sent_id, alphabet)
        sents.append(replace(s, words=words, text=_text(words, list(s.space_after)), spans=None))
    base = getattr(corpus, "perturbation", None)
    tag = p.tag if not base else f"{base}+{p.tag}"
    return Corpus(name=corpus.name, lang=corpus.lang, split=f"{corpus.split}~{p.tag}", sentences=sents,
                  files=list(corpus.files), perturbation=tag)


def changed_fraction(clean, perturbed) -> float:
    """Fraction of words whose text differs between two corpora of the same segmentation."""
    n = changed = 0
    for a, b in zip(clean.sentences, perturbed.sentences):
        n += len(a.words)
        changed += sum(x != y for x, y in zip(a.words, b.words))
    return changed / n if n else 0.0
