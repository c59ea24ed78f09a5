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

Corpora: the four tasks are registered as ``xtreme-pos``, ``xtreme-ner``, ``xtreme-xnli`` and
``xtreme-pawsx`` (:class:`XtremeCorpus`), so ``load_corpus("xtreme-pos", "fr", "test")`` gives a
:class:`~probe.data.Corpus` whose sentences carry ``tags`` (token tasks) or ``n_first`` and
``label`` (pair tasks: ``words = words_a + words_b``). Splits are the task roles ``train``,
``dev`` and ``test`` of :func:`read_task_split`, optionally with a seeded subsample:
``train@3000s0`` is 3000 examples drawn without replacement with seed 0 (kept in file order).
The subsample is part of the split name and therefore of :attr:`Corpus.sha256` and of the
cache key; a subsample at least as large as the split is no subsample, and the corpus then
keeps the plain split name (same content, same cache entry).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ..errors import DataFormatError, DownloadError, ProbeError
from ..languages import Language, get_language
from ..paths import data_dir, data_mirror
from ..registry import Registry
from ..tasks import TASK_ALIASES, UPOS_TAGS
from . import Corpus, CorpusDef, Sentence, register_corpus
from .text import strip_bom, utf8_problem

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
    "XtremeCorpus",
    "corpus_name",
    "parse_split",
    "subsample_split",
    "PAIR_CARVE_SEED",
    "source_overlap",
]

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


#: The XTREME tasks by name (``upos`` is accepted for ``pos``, as everywhere).
XTREME_TASKS = Registry("XTREME task", aliases=TASK_ALIASES)
XTREME_TASKS.register("pos", TaskDef(folder="udpos", kind="tagging", metric="accuracy", labels=UPOS_TAGS))
XTREME_TASKS.register("ner", TaskDef(folder="panx", kind="tagging", metric="f1", labels=PANX_TAGS))
XTREME_TASKS.register("xnli", TaskDef(folder="xnli", kind="pair", metric="accuracy", labels=XNLI_LABELS))
XTREME_TASKS.register("pawsx", TaskDef(folder="pawsx", kind="pair", metric="accuracy", labels=PAWSX_LABELS,
                                       train=("dev", "en"), dev=("dev", "en"), train_fraction=0.75))

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
    """The :class:`TaskDef` registered as ``task`` in :data:`XTREME_TASKS` (ProbeError
    listing the tasks when there is none)."""
    return XTREME_TASKS[task]


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
    """``(line number, text)`` without terminators; strict UTF-8 decoded line by line, so
    an error names its line and column; a leading byte-order mark is removed (reported)."""
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            raw = raw.rstrip(b"\r\n")
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise DataFormatError(utf8_problem(raw, e), path, number) from None
            yield number, strip_bom(text, path) if number == 1 else text


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


# --------------------------------------------------------------------------- corpora

#: Seed of the train/held-out carve of tasks with ``train_fraction`` (PAWS-X). It is fixed so
#: that ``train`` and ``dev`` are complementary whatever else is seeded; changing it changes
#: the data behind the split names, so it is part of the corpus definition.
PAIR_CARVE_SEED = 0

_SUBSAMPLE = re.compile(r"^(?P<base>[a-z]+)(?:@(?P<n>[0-9]+)(?:s(?P<seed>[0-9]+))?)?$")


def corpus_name(task: str) -> str:
    """The registered corpus name of an XTREME task: ``"pos"`` -> ``"xtreme-pos"``."""
    task_def(task)
    return f"xtreme-{task}"


def parse_split(split: str) -> tuple[str, int | None, int]:
    """``"train@3000s1"`` -> ``("train", 3000, 1)``; ``"dev"`` -> ``("dev", None, 0)``.

    The seed defaults to 0 (``"train@3000"`` means ``"train@3000s0"``).
    """
    m = _SUBSAMPLE.match(str(split).strip())
    if not m or m["base"] not in ("train", "dev", "test"):
        raise ProbeError(f"unknown split {split!r}; use train, dev or test, optionally with a "
                         f"seeded subsample like train@3000s0 (3000 examples, seed 0)")
    n = int(m["n"]) if m["n"] is not None else None
    if n is not None and n < 1:
        raise ProbeError(f"subsample size must be >= 1 in split {split!r}")
    return m["base"], n, int(m["seed"] or 0)


def subsample_split(base: str, max_examples: int | None, seed: int = 0) -> str:
    """The split name for at most ``max_examples`` examples of ``base`` (None = all)."""
    if max_examples is None:
        return base
    if int(max_examples) < 1:
        raise ProbeError(f"max_examples must be >= 1, got {max_examples}")
    return f"{base}@{int(max_examples)}s{int(seed)}"


def _file_record(root: Path, path: Path) -> dict:
    from ..download import sha256_file

    # relpath in the mirror's layout (xtreme/<folder>/<file>) whatever the root is, so the
    # same bytes give the same corpus digest from a mirror or from an XTREME download folder
    return {"relpath": f"xtreme/{path.parent.name}/{path.name}", "sha256": sha256_file(path),
            "commit": None, "url": None, "root": str(root)}


class XtremeCorpus(CorpusDef):
    """One XTREME task as a corpus (see the module docstring); subclasses set ``task``.

    Reads from :func:`xtreme_root`; nothing is downloaded (``remote_files`` is empty), and
    each file read is recorded with its sha256 in :attr:`Corpus.files`. ``sent_id`` is
    ``"<file split>-<lang>:<n>"`` with ``n`` the 1-based index of the example (sentence or
    pair) in that file, so subsamples and PAWS-X shares stay traceable. The returned
    :class:`~probe.data.Corpus` has one extra attribute, ``subsample``: None for a plain
    split, else ``{"max_examples", "seed", "n_available", "n_used", "applied"}``.
    """

    task: str = ""
    splits = ("train", "dev", "test")

    @property
    def taskdef(self) -> TaskDef:
        return task_def(self.task)

    def languages(self) -> list[Language]:
        """Languages with at least one file of this task under :func:`xtreme_root`."""
        folder = xtreme_root() / self.taskdef.folder
        codes = sorted({m["lang"] for p in folder.glob("*.tsv")
                        if (m := _SPLIT_FILE.match(p.name))})
        out: list[Language] = []
        for code in codes:
            try:
                lang = get_language(code)
            except ProbeError:
                continue  # a file for a language the registry does not know
            if lang not in out:
                out.append(lang)
        return out

    def remote_files(self, lang, split) -> list:
        return []  # a local XTREME download folder or the mirror, see xtreme_root()

    def check(self, lang, split) -> Language:
        language = get_language(lang)
        parse_split(split)
        folder = xtreme_root() / self.taskdef.folder
        # without a data folder at all, load() raises task_file's hint on where to get it
        if folder.is_dir() and language not in self.languages():
            have = ", ".join(x.code for x in self.languages())
            raise ProbeError(f"corpus {self.name!r} has no {language.name} ({language.code}) "
                             f"files in {folder}; it has: {have}")
        return language

    def _file_split(self, base: str) -> str:
        td = self.taskdef
        if base == "test":
            return td.test
        return (td.train if base == "train" else td.dev)[0]

    def _files_read(self, root: Path, base: str, code: str) -> list[Path]:
        td = self.taskdef
        paths = [task_file(root, self.task, self._file_split(base), code)]
        if base != "test" and td.train_fraction is not None and code != td.train[1]:
            # the held-out share is drawn on the training language's file
            paths.append(task_file(root, self.task, td.train[0], td.train[1]))
        return paths

    def _positions(self, root: Path, base: str, n_examples: int) -> np.ndarray:
        """0-based positions in the file of the examples ``read_task_split`` returned."""
        td = self.taskdef
        if base == "test" or td.train_fraction is None:
            return np.arange(n_examples)
        ref = read_split(root, self.task, td.train[0], td.train[1])
        train_idx, held_idx = _carve(ref, td.train_fraction, PAIR_CARVE_SEED)
        return train_idx if base == "train" else held_idx

    def load(self, lang, split, *, progress: bool = True) -> Corpus:
        language = self.check(lang, split)
        base, n_max, seed = parse_split(split)
        td = self.taskdef
        root = xtreme_root()
        code = language.code
        try:
            examples = read_task_split(root, self.task, base, code, seed=PAIR_CARVE_SEED)
        except ProbeError as e:
            if base != "test" or isinstance(e, DataFormatError) or "leak-free" in str(e) \
                    or not (root / td.folder / f"{td.dev[0]}-{code}.tsv").is_file():
                raise
            raise ProbeError(f"{e}; for a model trained on {td.train[1]} only, split 'dev' of "
                             f"{code} is a leak-free zero-shot substitute") from None
        if not examples:
            raise ProbeError(f"{self.name} {code} {base}: the file has no examples")
        files = [_file_record(root, p) for p in self._files_read(root, base, code)]
        position = self._positions(root, base, len(examples))
        keep = np.arange(len(examples))
        name_split, info = base, None
        if n_max is not None:
            applied = n_max < len(examples)
            if applied:
                keep = np.sort(np.random.default_rng(seed).choice(len(examples), size=n_max,
                                                                  replace=False))
                name_split = subsample_split(base, n_max, seed)
            info = {"max_examples": n_max, "seed": seed, "n_available": len(examples),
                    "n_used": int(len(keep)), "applied": bool(applied)}
        prefix = f"{self._file_split(base)}-{code}"
        sentences = []
        for i in keep.tolist():
            ex = examples[i]
            sid = f"{prefix}:{int(position[i]) + 1}"
            if td.kind == "tagging":
                words, tags = ex
                text = " ".join(words)
                extra = {"tags": list(tags)}
            else:
                a, b, label = ex
                words = list(a) + list(b)
                text = " ".join(a) + "\t" + " ".join(b)
                extra = {"label": label, "n_first": len(a)}
            sentences.append(Sentence(sent_id=sid, text=text, words=list(words),
                                      space_after=[True] * (len(words) - 1) + [False], **extra))
        corpus = Corpus(name=self.name, lang=code, split=name_split, sentences=sentences,
                        files=files)
        corpus.subsample = info
        return corpus


def _describe(task: str) -> str:
    td = task_def(task)
    what = "token task, sentences carry tags" if td.kind == "tagging" else \
        "sentence pairs: words = a + b, n_first, label"
    extra = ""
    if td.train_fraction is not None:
        extra = (f"; train = a seeded {td.train_fraction:.0%} of English dev, dev = the rest "
                 f"(the same held-out pairs in every language)")
    return (f"XTREME {task} ({td.folder}/; {what}; metric {td.metric}){extra}; splits "
            f"train/dev/test, seeded subsample as train@N[sSEED]")


# One registered corpus per task in XTREME_TASKS (xtreme-pos, xtreme-ner, ...): a new task
# needs only its TaskDef.
for _task in XTREME_TASKS:
    register_corpus(type(f"Xtreme{_task.title()}Corpus", (XtremeCorpus,),
                         {"task": _task, "name": corpus_name(_task), "description": _describe(_task),
                          "__module__": __name__}))


def _pair_text(words_a: Sequence[str], words_b: Sequence[str]) -> tuple[str, str]:
    # unordered and whitespace/case-normalised: a pair and its swap are the same item
    a, b = (" ".join(w).lower() for w in (words_a, words_b))
    return (a, b) if a <= b else (b, a)


def source_overlap(corpus: Corpus, root: Path | None = None) -> np.ndarray:
    """``[n_examples]`` bool: target examples that are (translations of) source-language
    training or selection examples, for tasks whose training data is carved from a
    line-parallel dev file (``train_fraction``, i.e. PAWS-X); all False for other tasks.

    PAWS-X files carry no id column, but its dev files are line-parallel translations, so
    the line number of ``dev-<lang>.tsv`` is the pair's id and English ``train``/``dev``
    (the carve) use ids ``0..n-1``. A target pair counts as overlapping when

    * it comes from the ``dev`` file itself (its own line is an id of the English
      training or selection share), or
    * its text (unordered, whitespace- and case-normalised) equals a line of the target
      language's dev file whose id the English training or selection share uses (the
      mirrored test files repeat a few dev pairs, and untranslated ``NS`` placeholders).
    """
    td = task_def(corpus.name.removeprefix("xtreme-")) if corpus.name.startswith("xtreme-") \
        else None
    n = len(corpus.sentences)
    out = np.zeros(n, dtype=bool)
    if td is None or td.kind != "pair" or td.train_fraction is None:
        return out
    root = root or xtreme_root()
    src_file, src_lang = td.train
    ref = read_split(root, corpus.name.removeprefix("xtreme-"), src_file, src_lang)
    train_idx, held_idx = _carve(ref, td.train_fraction, PAIR_CARVE_SEED)
    used = set(train_idx.tolist()) | set(held_idx.tolist())
    prefix_dev = f"{src_file}-{corpus.lang}:"
    texts: dict[tuple[str, str], bool] = {}
    try:
        lines = read_split(root, corpus.name.removeprefix("xtreme-"), src_file, corpus.lang)
    except ProbeError:
        lines = []  # no dev file in this language: only ids can match
    for i, (a, b, _label) in enumerate(lines):
        if i in used:
            texts[_pair_text(a, b)] = True
    for j, sent in enumerate(corpus.sentences):
        if sent.sent_id.startswith(prefix_dev) and int(sent.sent_id.rsplit(":", 1)[1]) - 1 in used:
            out[j] = True
        elif _pair_text(sent.words[:sent.n_first], sent.words[sent.n_first:]) in texts:
            out[j] = True
    return out
