"""XTREME task data in the layout of XTREME's own download folder, and the task metrics.

Layout: ``<root>/<folder>/<split>-<lang>.tsv`` (what XTREME's ``scripts/download_data.sh``
writes under ``download/``), with ``folder`` one of ``udpos``, ``panx``, ``xnli``, ``pawsx``:

* token tasks (``udpos``: ``token<TAB>UPOS``; ``panx``: ``token<TAB>IOB2 tag``), one word per
  line and a blank line between sentences -> ``[(words, tags), ...]``;
* pair tasks (``xnli``: ``premise<TAB>hypothesis<TAB>entailment|neutral|contradiction``;
  ``pawsx``: ``sentence1<TAB>sentence2<TAB>0|1``), one pair per line ->
  ``[(words_a, words_b, label), ...]``. A header line (a label column named ``label`` or
  ``gold_label``) is recognised and skipped, and then its column names pick the columns.

Pair sentences are split into words on whitespace. Chinese, Japanese and Thai text has few
or no spaces, so a "word" there may be a whole clause; that is acceptable because subword
pooling happens later and a pair task only pools over words, but word counts in those
languages are not comparable with others.

Root resolution (:func:`xtreme_root`): ``$PROBE_DATA_MIRROR/xtreme`` when the mirror is a local
folder containing ``xtreme/``; else ``$PROBE_XTREME_DIR`` (point it at an existing XTREME
``download/`` folder); else ``probe.paths.data_dir() / "xtreme"``. On a networked machine
:func:`export_from_hub` writes the Hugging Face copies of the tasks into that layout.

Tasks (:data:`XTREME_TASKS`): English training data, English dev for model selection, and a
target-language test file. PAWS-X has no mirrored training set, so it trains on a seeded
share of the English dev file and selects on the rest. PAWS-X dev files are translations of
the same pairs, line by line, so evaluating on another language's full dev file would test on
translations of training pairs: its ``"dev"`` split in any language is the held-out share only,
which makes it a leak-free target set for languages without a test file.

Metrics: accuracy for pos, xnli and pawsx; entity-level F1 (seqeval's default, conlleval-style
chunking of IOB2 tags, as XTREME reports) for ner.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ..errors import DataFormatError, DownloadError, ProbeError
from ..paths import data_dir, data_mirror

__all__ = [
    "TaskDef",
    "XTREME_TASKS",
    "UPOS_TAGS",
    "PANX_TAGS",
    "XNLI_LABELS",
    "PAWSX_LABELS",
    "xtreme_root",
    "task_def",
    "task_file",
    "available_languages",
    "read_token_file",
    "read_pair_file",
    "read_split",
    "read_task_split",
    "label_ids",
    "accuracy",
    "entity_f1",
    "evaluate",
    "export_from_hub",
]

UPOS_TAGS = ("ADJ", "ADP", "ADV", "AUX", "CCONJ", "DET", "INTJ", "NOUN", "NUM", "PART",
             "PRON", "PROPN", "PUNCT", "SCONJ", "SYM", "VERB", "X")
PANX_TAGS = ("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC")
XNLI_LABELS = ("entailment", "neutral", "contradiction")
PAWSX_LABELS = ("0", "1")


@dataclass(frozen=True)
class TaskDef:
    """One XTREME task as this toolkit runs it.

    ``train`` and ``dev`` name files as ``(split, lang)``; the test file is
    ``(test, <target lang>)``. With ``train_fraction`` set, ``train`` and ``dev`` are the same
    file and a seeded permutation gives that share of its lines to training and the rest
    to model selection.
    """

    folder: str
    kind: str  # "tagging" | "pair"
    metric: str  # "accuracy" | "f1"
    labels: tuple[str, ...]
    train: tuple[str, str] = ("train", "en")
    dev: tuple[str, str] = ("dev", "en")
    test: str = "test"
    train_fraction: float | None = None


XTREME_TASKS: dict[str, TaskDef] = {
    "pos": TaskDef(folder="udpos", kind="tagging", metric="accuracy", labels=UPOS_TAGS),
    "ner": TaskDef(folder="panx", kind="tagging", metric="f1", labels=PANX_TAGS),
    "xnli": TaskDef(folder="xnli", kind="pair", metric="accuracy", labels=XNLI_LABELS),
    "pawsx": TaskDef(folder="pawsx", kind="pair", metric="accuracy", labels=PAWSX_LABELS,
                     train=("dev", "en"), dev=("dev", "en"), train_fraction=0.75),
}

_SPLIT_FILE = re.compile(r"^(?P<split>[A-Za-z0-9_]+)-(?P<lang>[A-Za-z0-9_]+)\.tsv$")


# --------------------------------------------------------------------------- locations


def xtreme_root() -> Path:
    """Folder holding ``<task folder>/<split>-<lang>.tsv`` (see the module docstring)."""
    mirror = data_mirror()
    if mirror and "://" not in mirror:
        candidate = Path(mirror).expanduser() / "xtreme"
        if candidate.is_dir():
            return candidate
    user = os.environ.get("PROBE_XTREME_DIR", "").strip()
    if user:
        return Path(user).expanduser()
    return data_dir() / "xtreme"


def task_def(task: str) -> TaskDef:
    """The :class:`TaskDef` registered as ``task`` in :data:`XTREME_TASKS`."""
    try:
        return XTREME_TASKS[task]
    except KeyError:
        known = ", ".join(XTREME_TASKS)
        raise ProbeError(f"unknown XTREME task {task!r}; known: {known}") from None


def task_file(root: Path, task: str, split: str, lang: str) -> Path:
    """``<root>/<folder>/<split>-<lang>.tsv``; ProbeError listing what exists when missing."""
    folder = Path(root) / task_def(task).folder
    path = folder / f"{split}-{lang}.tsv"
    if path.is_file():
        return path
    if not folder.is_dir():
        raise ProbeError(
            f"no XTREME {task} data: {folder} does not exist (set PROBE_XTREME_DIR to an XTREME "
            f"download/ folder, or use probe.data.xtreme.export_from_hub on a networked machine)")
    have = sorted(p.name[:-4] for p in folder.glob("*.tsv") if _SPLIT_FILE.match(p.name))
    raise ProbeError(f"{path} does not exist; available in {folder}: "
                     f"{', '.join(have) if have else 'nothing'}")


def available_languages(root: Path, task: str, split: str) -> list[str]:
    """Languages with a ``<split>-<lang>.tsv`` file for ``task`` under ``root``."""
    folder = Path(root) / task_def(task).folder
    langs = []
    for p in folder.glob(f"{split}-*.tsv"):
        m = _SPLIT_FILE.match(p.name)
        if m and m["split"] == split:
            langs.append(m["lang"])
    return sorted(langs)


# --------------------------------------------------------------------------- readers


def _lines(path: Path) -> Iterable[tuple[int, str]]:
    try:
        with open(path, encoding="utf-8", newline="") as f:
            for number, raw in enumerate(f, start=1):
                yield number, raw.rstrip("\r\n")
    except UnicodeDecodeError as e:
        raise DataFormatError(f"not UTF-8 text ({e.reason} at byte {e.start})", path) from None


TokenExample = tuple[list[str], list[str]]
PairExample = tuple[list[str], list[str], str]


def read_token_file(path: Path, labels: Sequence[str] | None = None) -> list[TokenExample]:
    """``token<TAB>tag`` lines, blank line between sentences -> ``[(words, tags), ...]``.

    ``labels``: the allowed tags; any other tag is a :class:`DataFormatError` naming the
    file and line, as are lines without exactly two columns and empty tokens.
    """
    path = Path(path)
    allowed = None if labels is None else frozenset(labels)
    sentences: list[TokenExample] = []
    words: list[str] = []
    tags: list[str] = []
    for number, line in _lines(path):
        if not line.strip():
            if words:
                sentences.append((words, tags))
                words, tags = [], []
            continue
        cols = line.split("\t")
        if len(cols) != 2:
            hint = " (no tag column: XTREME withholds some test labels)" if len(cols) == 1 else ""
            raise DataFormatError(f"expected 2 tab-separated columns token<TAB>tag, "
                                  f"found {len(cols)}{hint}", path, number)
        token, tag = cols[0].strip(), cols[1].strip()
        if not token:
            raise DataFormatError("empty token", path, number)
        if allowed is not None and tag not in allowed:
            raise DataFormatError(f"unknown tag {tag!r}; expected one of {', '.join(labels)}",
                                  path, number)
        words.append(token)
        tags.append(tag)
    if words:
        sentences.append((words, tags))
    return sentences


_HEADER_LABELS = {"label", "gold_label", "labels"}
_HEADER_A = ("sentence1", "premise", "sentence_a", "text_a")
_HEADER_B = ("sentence2", "hypothesis", "sentence_b", "text_b")


def read_pair_file(path: Path, labels: Sequence[str] | None = None) -> list[PairExample]:
    """``text_a<TAB>text_b<TAB>label`` lines -> ``[(words_a, words_b, label), ...]``.

    Words are the whitespace-separated pieces of each text. A header line is recognised by
    its label column being called ``label``/``gold_label``; its column names then locate
    the two texts and the label (so ``id<TAB>sentence1<TAB>sentence2<TAB>label`` works).
    Blank lines are skipped. Wrong column counts, empty texts and labels outside
    ``labels`` raise :class:`DataFormatError` naming the file and line.
    """
    path = Path(path)
    allowed = None if labels is None else frozenset(labels)
    ia, ib, il, width = 0, 1, 2, 3
    pairs: list[PairExample] = []
    first = True
    for number, line in _lines(path):
        if not line.strip():
            continue
        cols = line.split("\t")
        if first:
            first = False
            names = [c.strip().lower() for c in cols]
            if names[-1] in _HEADER_LABELS or (any(n in _HEADER_LABELS for n in names)
                                                and any(n in _HEADER_A for n in names)):
                try:
                    ia = next(names.index(n) for n in _HEADER_A if n in names)
                    ib = next(names.index(n) for n in _HEADER_B if n in names)
                    il = next(names.index(n) for n in names if n in _HEADER_LABELS)
                except StopIteration:
                    raise DataFormatError(
                        f"header line without recognisable columns: {', '.join(names)}",
                        path, number) from None
                width = len(cols)
                continue
        if len(cols) != width:
            hint = ""
            if len(cols) == width - 1:
                hint = " (no label column: XTREME withholds some test labels)"
            raise DataFormatError(
                f"expected {width} tab-separated columns, found {len(cols)}{hint}", path, number)
        a, b, label = cols[ia].split(), cols[ib].split(), cols[il].strip()
        if not a or not b:
            raise DataFormatError("empty sentence", path, number)
        if allowed is not None and label not in allowed:
            raise DataFormatError(f"unknown label {label!r}; expected one of {', '.join(labels)}",
                                  path, number)
        pairs.append((a, b, label))
    return pairs


def read_split(root: Path, task: str, split: str, lang: str) -> list[tuple]:
    """The whole file ``<split>-<lang>.tsv`` of ``task``, labels checked against the task's."""
    td = task_def(task)
    path = task_file(root, task, split, lang)
    if td.kind == "tagging":
        return read_token_file(path, td.labels)
    return read_pair_file(path, td.labels)


def _carve(examples: Sequence[tuple], fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded split of pair examples into (train, held-out) line indices, in file order.

    Identical pairs (in either order) go to the same side: PAWS-X's English dev file
    repeats a few pairs, and a copy on each side would leak test items into training.
    """
    group: dict[tuple, int] = {}
    ids = np.array([group.setdefault(tuple(sorted((tuple(a), tuple(b)))), len(group))
                    for a, b, _ in examples], dtype=np.int64)
    perm = np.random.default_rng(seed).permutation(len(group))
    in_train = np.zeros(len(group), dtype=bool)
    in_train[perm[:int(round(len(group) * fraction))]] = True
    return np.flatnonzero(in_train[ids]), np.flatnonzero(~in_train[ids])


def read_task_split(root: Path, task: str, split: str, lang: str | None = None,
                    seed: int = 0) -> list[tuple]:
    """Examples of ``task`` for the role ``split`` (``"train"``, ``"dev"`` or ``"test"``).

    ``train``/``dev`` read the task's training/selection files, by default in their own
    language (English); a different ``lang`` reads that language's file of the same split.
    ``test`` reads ``<test>-<lang>.tsv`` and needs ``lang``. For tasks with
    ``train_fraction`` (PAWS-X), ``train`` is a seeded share of the dev file's distinct pairs
    (duplicates stay together) and ``dev`` the rest; ``seed`` picks the share, and the same
    lines are held out in every language, since those files are line-parallel translations.

    Token tasks give ``[(words, tags)]``; pair tasks ``[(words_a, words_b, label)]``.
    """
    td = task_def(task)
    if split == "test":
        if lang is None:
            raise ProbeError(f"the test split of {task} needs a target language")
        try:
            return read_split(root, task, td.test, lang)
        except ProbeError as e:
            if td.train_fraction is None or isinstance(e, DataFormatError):
                raise
            raise ProbeError(f"{e}; the held-out share of dev-{lang} "
                             f"(split='dev', lang={lang!r}) is a leak-free substitute") from None
    if split not in ("train", "dev"):
        raise ProbeError(f"unknown split {split!r}; choose train, dev or test")
    file_split, default_lang = td.train if split == "train" else td.dev
    lang = lang or default_lang
    examples = read_split(root, task, file_split, lang)
    if td.train_fraction is None:
        return examples
    # the share is drawn on the training language's file so that every language holds out
    # the same (line-parallel) pairs
    base_lang = td.train[1]
    base = examples if lang == base_lang else read_split(root, task, td.train[0], base_lang)
    if len(base) != len(examples):
        raise ProbeError(
            f"{task_file(root, task, file_split, lang)} has {len(examples)} examples but the "
            f"{base_lang} file has {len(base)}; the held-out share needs line-parallel files")
    train_idx, held_idx = _carve(base, td.train_fraction, seed)
    keep = train_idx if split == "train" else held_idx
    return [examples[i] for i in keep]


def label_ids(task: str, labels: Iterable[str]) -> np.ndarray:
    """Label strings -> int64 ids in the task's label order (``[n]``)."""
    index = {name: i for i, name in enumerate(task_def(task).labels)}
    try:
        return np.fromiter((index[x] for x in labels), dtype=np.int64)
    except KeyError as e:
        raise ProbeError(f"label {e.args[0]!r} is not a {task} label") from None


# --------------------------------------------------------------------------- metrics


def accuracy(gold: Sequence, pred: Sequence) -> float:
    """Share of equal items; nested sequences (one per sentence) are flattened."""
    g, p = _flatten(gold), _flatten(pred)
    if len(g) != len(p):
        raise ProbeError(f"gold has {len(g)} items, predictions {len(p)}")
    if not g:
        return 0.0
    return float(np.mean([a == b for a, b in zip(g, p)]))


def _flatten(items: Sequence) -> list:
    if len(items) and isinstance(items[0], (list, tuple, np.ndarray)):
        return [x for sub in items for x in sub]
    return list(items)


def entity_f1(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]) -> float:
    """Entity-level micro F1 over IOB2 tag sequences (one per sentence), via seqeval."""
    from seqeval.metrics import f1_score

    gold = [list(s) for s in gold]
    pred = [list(s) for s in pred]
    if len(gold) != len(pred) or any(len(a) != len(b) for a, b in zip(gold, pred)):
        raise ProbeError("gold and predicted tag sequences differ in number or length")
    return float(f1_score(gold, pred))


def evaluate(task: str, gold: Sequence, pred: Sequence) -> float:
    """The task's metric: accuracy, or entity F1 for ``ner`` (per-sentence tag lists)."""
    if task_def(task).metric == "f1":
        return entity_f1(gold, pred)
    return accuracy(gold, pred)


# --------------------------------------------------------------------------- export

_UD_NAMES = {
    "af": "Afrikaans", "ar": "Arabic", "bg": "Bulgarian", "de": "German", "el": "Greek",
    "en": "English", "es": "Spanish", "et": "Estonian", "eu": "Basque", "fa": "Persian",
    "fi": "Finnish", "fr": "French", "he": "Hebrew", "hi": "Hindi", "hu": "Hungarian",
    "id": "Indonesian", "it": "Italian", "ja": "Japanese", "kk": "Kazakh", "ko": "Korean",
    "mr": "Marathi", "nl": "Dutch", "pt": "Portuguese", "ru": "Russian", "ta": "Tamil",
    "te": "Telugu", "th": "Thai", "tl": "Tagalog", "tr": "Turkish", "ur": "Urdu",
    "vi": "Vietnamese", "wo": "Wolof", "yo": "Yoruba", "zh": "Chinese",
}
_HUB_SPLIT = {"train": "train", "dev": "validation", "test": "test"}


def _hub_source(task: str, lang: str) -> tuple[str, str, tuple[str, ...]]:
    """(dataset id, config, columns) on the Hugging Face hub for one task and language."""
    if task == "pos":
        if lang not in _UD_NAMES:
            raise ProbeError(f"no XTREME udpos configuration known for language {lang!r}")
        return "google/xtreme", f"udpos.{_UD_NAMES[lang]}", ("tokens", "pos_tags")
    if task == "ner":
        return "google/xtreme", f"PAN-X.{lang}", ("tokens", "ner_tags")
    if task == "xnli":
        return "facebook/xnli", lang, ("premise", "hypothesis", "label")
    if task == "pawsx":
        return "google-research-datasets/paws-x", lang, ("sentence1", "sentence2", "label")
    task_def(task)
    raise ProbeError(f"no hub source for task {task!r}")


def _label_names(feature) -> list[str] | None:
    # a ClassLabel has .names; a Sequence(ClassLabel) has .feature.names
    names = getattr(feature, "names", None)
    if names is None:
        names = getattr(getattr(feature, "feature", None), "names", None)
    return list(names) if names is not None else None


def _clean(text: str) -> str:
    # a tab or newline inside a text would break the one-example-per-line format
    return " ".join(str(text).split())


def _as_label(value, names: list[str] | None) -> str | None:
    if isinstance(value, str):
        return value
    if value is None or int(value) < 0:
        return None  # unlabelled
    return names[int(value)] if names is not None else str(int(value))


def export_from_hub(task: str, langs: Sequence[str], root: Path | None = None,
                    splits: Sequence[str] = ("train", "dev", "test")) -> list[Path]:
    """Write Hugging Face copies of an XTREME task as ``<root>/<folder>/<split>-<lang>.tsv``.

    Needs the ``datasets`` package and network access. Sources: ``google/xtreme``
    (``udpos.<Language>``, ``PAN-X.<lang>``), ``facebook/xnli`` (the English train split is
    MultiNLI, as in XTREME) and ``google-research-datasets/paws-x``. A split a language does
    not have is skipped. Returns the files written. ``root`` defaults to :func:`xtreme_root`.
    """
    td = task_def(task)
    try:
        import datasets  # heavy and optional: only this function needs it
    except ImportError:
        raise ProbeError("export_from_hub needs the Hugging Face 'datasets' package "
                         "(pip install datasets) and network access") from None
    root = Path(root) if root is not None else xtreme_root()
    folder = root / td.folder
    written: list[Path] = []
    for lang in langs:
        name, config, columns = _hub_source(task, lang)
        for split in splits:
            if split not in _HUB_SPLIT:
                raise ProbeError(f"unknown split {split!r}; choose train, dev or test")
            try:
                ds = datasets.load_dataset(name, config, split=_HUB_SPLIT[split])
            except ValueError as e:
                if "split" in str(e).lower():
                    continue  # this language has no such split
                raise DownloadError(f"could not load {name} ({config}) {split}: {e}") from e
            except Exception as e:  # network, hub and cache failures all end here
                raise DownloadError(f"could not load {name} ({config}) {split} from the "
                                    f"Hugging Face hub: {e}") from e
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"{split}-{lang}.tsv"
            tmp = path.with_suffix(".tsv.part")
            names = _label_names(ds.features[columns[-1]])
            with open(tmp, "w", encoding="utf-8", newline="\n") as out:
                for ex in ds:
                    if td.kind == "tagging":
                        tokens = ex[columns[0]]
                        tags = [_as_label(t, names) for t in ex[columns[1]]]
                        if not tokens or any(t is None for t in tags):
                            continue
                        for token, tag in zip(tokens, tags):
                            out.write(f"{_clean(token) or '_'}\t{tag}\n")
                        out.write("\n")
                    else:
                        label = _as_label(ex[columns[2]], names)
                        a, b = _clean(ex[columns[0]]), _clean(ex[columns[1]])
                        if label is None or not a or not b:
                            continue
                        out.write(f"{a}\t{b}\t{label}\n")
            tmp.replace(path)
            written.append(path)
    return written
