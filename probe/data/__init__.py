"""Corpora: small registered definitions that download, validate and load text.

Each corpus is a :class:`CorpusDef` registered with :func:`register_corpus`; look one up
with :func:`get_corpus` and load a language and split::

    corpus = get_corpus("pud").load("de", "test")      # or load_corpus("pud", "de", "test")
    corpus.sentences[0].words, corpus.sentences[0].head

Registered: ``pud`` (Parallel UD, test), ``ud`` (larger UD treebanks: dev, test,
dev+test) and ``tatoeba`` (Tatoeba v1: split ``xx`` the language side, ``eng`` its
English side). See :mod:`probe.data.ud` and :mod:`probe.data.tatoeba`.
"""
from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, TypeVar

from probe.download import RemoteFile, expected_sha256, fetch, sha256_file
from probe.errors import DataFormatError, ProbeError
from probe.languages import Language, get_language
from probe.registry import Registry

__all__ = [
    "Sentence",
    "Corpus",
    "CorpusDef",
    "register_corpus",
    "get_corpus",
    "list_corpora",
    "load_corpus",
    "languages_with",
    "CORPORA",
    "data_error",
]


def data_error(problem: str, path: object, line: int | None = None) -> DataFormatError:
    """A :class:`DataFormatError` reading ``PATH: line N: PROBLEM``, ``.path``/``.line`` set."""
    if line is None:
        return DataFormatError(problem, path=path)
    err = DataFormatError(f"line {line}: {problem}", path=path)
    err.problem = problem
    err.line = line
    return err


@dataclass
class Sentence:
    """One sentence: its words and, for treebanks, gold annotation.

    ``head``: 1-based index of each word's head, 0 for the root (None without trees).
    ``space_after[i]``: whether a space follows word ``i`` in ``text``.
    ``tags``: per-word labels of a tagging task (e.g. IOB2 entity tags).
    ``label``: a sentence-level label (e.g. NLI class); ``n_first``: for a sentence pair,
    the number of words of the first sentence (``words = words_a + words_b``), encoded
    together in one forward pass.
    ``spans``: ``[start, end)`` of each word in ``text`` (the words of a multiword token
    share the token's span; None where the reader could not locate a word); None when the
    reader records no spans (:mod:`probe.alignment` then locates the words itself).
    """

    sent_id: str
    text: str
    words: list[str]
    upos: list[str] | None = None
    head: list[int] | None = None
    deprel: list[str] | None = None
    space_after: list[bool] = field(default_factory=list)
    tags: list[str] | None = None
    label: str | None = None
    n_first: int | None = None
    spans: list[tuple[int, int] | None] | None = None

    def __len__(self) -> int:
        return len(self.words)


@dataclass
class Corpus:
    """Loaded sentences of one corpus, language and split, with their provenance.

    ``lang``: ISO 639-1 code where one exists, else ISO 639-3.
    ``files``: ``{"relpath", "sha256", "commit", "url"}`` of every file read.
    ``perturbation``: set on a perturbed copy (:func:`probe.perturb.perturb_corpus`), e.g.
    ``"typo:0.1"``; it is part of :attr:`sha256` and therefore of the cache key.
    """

    name: str
    lang: str
    split: str
    sentences: list[Sentence]
    files: list[dict] = field(default_factory=list)
    perturbation: str | None = None

    @property
    def n_words(self) -> int:
        return sum(len(s.words) for s in self.sentences)

    @property
    def sha256(self) -> str:
        """A stable digest of what was loaded: corpus, language, split and each file's checksum."""
        digest = hashlib.sha256()
        digest.update(f"{self.name}\0{self.lang}\0{self.split}\0".encode("utf-8"))
        for info in self.files:
            digest.update(f"{info['relpath']}\0{info['sha256']}\n".encode("utf-8"))
        if self.perturbation:
            digest.update(f"perturbation\0{self.perturbation}\n".encode("utf-8"))
        return digest.hexdigest()

    def __len__(self) -> int:
        return len(self.sentences)

    def __iter__(self) -> Iterator[Sentence]:
        return iter(self.sentences)


class CorpusDef(ABC):
    """A registered corpus: ``name``, ``description``, ``splits``, languages and loader."""

    name: str = ""
    description: str = ""
    splits: tuple[str, ...] = ()

    @abstractmethod
    def languages(self) -> list[Language]:
        """The languages this corpus has."""

    @abstractmethod
    def remote_files(self, lang: str | Language, split: str) -> list[RemoteFile]:
        """The files :meth:`load` reads for ``lang``/``split`` (for prefetching)."""

    @abstractmethod
    def load(self, lang: str | Language, split: str, *, progress: bool = True) -> Corpus:
        """Download (if needed), validate and read ``lang``/``split``."""

    def fetch(self, lang: str | Language, split: str, *, progress: bool = True) -> list[tuple[Path, dict]]:
        """Fetch (verified) the files of ``lang``/``split``: ``[(local path, file info)]``.

        The info dicts are what :attr:`Corpus.files` holds: relpath, sha256, commit, url.
        """
        out = []
        for remote in self.remote_files(lang, split):
            path = fetch(remote, progress=progress)
            info = {
                "relpath": remote.relpath,
                "sha256": expected_sha256(remote) or sha256_file(path),
                "commit": remote.commit,
                "url": remote.url,
            }
            out.append((path, info))
        return out

    def has_language(self, lang: str | Language) -> bool:
        return get_language(lang) in self.languages()

    def check(self, lang: str | Language, split: str) -> Language:
        """The language, after checking it and ``split`` exist here (else :class:`ProbeError`)."""
        language = get_language(lang)
        if language not in self.languages():
            choices = ", ".join(sorted(x.code for x in self.languages()))
            raise ProbeError(f"corpus {self.name!r} has no {language.name} ({language.code}); it has: {choices}")
        if split not in self.splits:
            raise ProbeError(f"corpus {self.name!r} has no split {split!r}; splits: {', '.join(self.splits)}")
        return language

    def __repr__(self) -> str:
        return f"<corpus {self.name}: {self.description}>"


#: name -> :class:`CorpusDef` instance (names are case-insensitive)
CORPORA = Registry("corpus")

_C = TypeVar("_C", bound=type)


def register_corpus(cls: _C) -> _C:
    """Class decorator: instantiate a :class:`CorpusDef` subclass and register it by ``name``."""
    load = getattr(cls, "load", None)
    if load is not None and not getattr(load, "_defers_checksums", False):
        cls.load = _deferring(load)
    instance = cls()
    if not instance.name:
        raise ValueError(f"{cls.__name__} has no name")
    CORPORA.register(instance.name, instance)  # ValueError if the name is taken
    return cls


def _deferring(load):
    """``load`` recording the checksums of unpinned files only once they have parsed."""
    import functools

    from probe.download import deferred_checksums

    @functools.wraps(load)
    def wrapper(self, *args, **kwargs):
        with deferred_checksums():
            return load(self, *args, **kwargs)

    wrapper._defers_checksums = True
    return wrapper


def list_corpora() -> list[str]:
    """Names of the registered corpora, sorted."""
    return sorted(CORPORA)


def get_corpus(name: str) -> CorpusDef:
    """The registered corpus ``name`` (case-insensitive); :class:`ProbeError` lists the names."""
    return CORPORA[name]


def languages_with(corpus_name: str) -> list[Language]:
    """The languages the registered corpus ``corpus_name`` has (formerly in
    :mod:`probe.languages`, which the corpus registry imports)."""
    return list(get_corpus(corpus_name).languages())


def load_corpus(name: str, lang: str | Language, split: str, **kwargs) -> Corpus:
    """Shorthand for ``get_corpus(name).load(lang, split)``."""
    return get_corpus(name).load(lang, split, **kwargs)


# the built-in corpora register themselves on import (treebanks first: the order of listings)
from probe.data import ud as _ud  # noqa: E402
from probe.data import tatoeba as _tatoeba  # noqa: E402
from probe.data import xtreme as _xtreme  # noqa: E402

_BUILT_IN = (_ud, _tatoeba, _xtreme)  # imported for their registrations only
