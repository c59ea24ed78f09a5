"""Universal Dependencies treebanks: the CoNLL-U reader and the ``pud``/``ud`` corpora.

:func:`read_conllu` reads a CoNLL-U file into :class:`~probe.data.Sentence` objects
with the :mod:`conllu` library, after our own line-by-line validation; any malformed
input raises :class:`~probe.errors.DataFormatError` whose message names the file and
the line (``de.conllu: line 12: token line has 9 tab-separated columns, expected 10``),
never another exception type.

Words are the lines with an integer ID; multiword-token ranges (``3-4``) and empty
nodes (``8.1``) are not words, but a range's ``SpaceAfter=No`` applies to its last
word (the words inside a range are never followed by a space).
"""
from __future__ import annotations

import re
from pathlib import Path

import conllu
import conllu.parser

from probe.data import Corpus, CorpusDef, Sentence, data_error as _error, register_corpus
from probe.data.pins import SHA256, UD_COMMITS
from probe.data.text import strip_bom, utf8_problem
from probe.data.spans import locate_spans
from probe.download import RemoteFile
from probe.errors import DataFormatError
from probe.languages import LANGUAGES, Language, get_language

__all__ = [
    "read_conllu",
    "parse_conllu",
    "ud_remote",
    "UD_RAW_URL",
    "UPSTREAM_DEFAULT_REF",
    "PUDCorpus",
    "UDCorpus",
    "PUD_TREEBANKS",
    "UD_TREEBANKS",
    "pud_file",
    "ud_files",
]

#: Raw-file URL of a UD treebank repository at a commit or branch.
UD_RAW_URL = "https://raw.githubusercontent.com/UniversalDependencies/{folder}/{ref}/{file}"
#: The ref used for treebanks without a pinned commit (their files are accepted once).
UPSTREAM_DEFAULT_REF = "master"

FIELDS = ("id", "form", "lemma", "upos", "xpos", "feats", "head", "deprel", "deps", "misc")

_WORD_ID = re.compile(r"[1-9][0-9]*")
_RANGE_ID = re.compile(r"([1-9][0-9]*)-([1-9][0-9]*)")
_EMPTY_ID = re.compile(r"(0|[1-9][0-9]*)\.([1-9][0-9]*)")
_HEAD = re.compile(r"0|[1-9][0-9]*")
_NEG_INT = re.compile(r"-[0-9]+")
# columns we do not use are kept as raw strings (conllu parses only ID, HEAD and MISC)
_FIELD_PARSERS = {
    **conllu.parser.DEFAULT_FIELD_PARSERS,
    "xpos": lambda line, i: line[i],
    "feats": lambda line, i: line[i],
    "deps": lambda line, i: line[i],
}
# how the conllu library splits a token line into columns
_CONLLU_SPLIT = re.compile(r"\t| {2,}")


def _decode_lines(data: bytes | str, path: object) -> list[str]:
    """The lines of ``data`` without terminators (``\\n`` or ``\\r\\n``), strictly UTF-8."""
    if isinstance(data, str):
        lines = data.split("\n")
        lines = [line[:-1] if line.endswith("\r") else line for line in lines]
    else:
        lines = []
        for number, raw in enumerate(data.split(b"\n"), 1):
            if raw.endswith(b"\r"):
                raw = raw[:-1]
            try:
                lines.append(raw.decode("utf-8"))
            except UnicodeDecodeError as exc:
                raise _error(utf8_problem(raw, exc), path, number) from None
    if lines:
        lines[0] = strip_bom(lines[0], path)
    if lines and lines[-1] == "":
        lines.pop()  # the final newline
    return lines


def _blocks(lines: list[str]) -> list[list[tuple[int, str]]]:
    """Sentence blocks of ``(line number, line)``, split at blank lines like :mod:`conllu`."""
    blocks: list[list[tuple[int, str]]] = []
    current: list[tuple[int, str]] = []
    for number, line in enumerate(lines, 1):
        if line.strip() == "":
            if current:
                blocks.append(current)
                current = []
        else:
            current.append((number, line))
    if current:
        blocks.append(current)
    return blocks


class _TokenLine:
    """One validated token line: kind ``word``/``range``/``empty`` and parsed ID."""

    __slots__ = ("number", "cols", "kind", "first", "last")

    def __init__(self, number: int, cols: list[str], kind: str, first: int, last: int):
        self.number, self.cols, self.kind, self.first, self.last = number, cols, kind, first, last


def _validate_token_line(number: int, line: str, path: object) -> _TokenLine:
    cols = line.split("\t")
    if len(cols) != len(FIELDS):
        raise _error(f"token line has {len(cols)} tab-separated columns, expected {len(FIELDS)}", path, number)
    for i, value in enumerate(cols):
        if value == "":
            raise _error(f"column {i + 1} ({FIELDS[i].upper()}) is empty; use '_' for no value", path, number)
        if "  " in value:
            raise _error(f"column {i + 1} ({FIELDS[i].upper()}) contains two consecutive spaces", path, number)
    if line != line.strip() or _CONLLU_SPLIT.split(line.strip()) != cols:
        raise _error("token line starts or ends with whitespace", path, number)

    ident, head = cols[0], cols[6]
    if _WORD_ID.fullmatch(ident):
        kind, first = "word", int(ident)
        last = first
    elif match := _RANGE_ID.fullmatch(ident):
        kind, first, last = "range", int(match[1]), int(match[2])
        if last <= first:
            raise _error(f"multiword token range {ident!r} must span at least two words", path, number)
    elif match := _EMPTY_ID.fullmatch(ident):
        kind, first, last = "empty", int(match[1]), int(match[2])
    else:
        raise _error(
            f"invalid ID {ident!r}: expected a word index (1, 2, ...), a range like 3-4 "
            f"or an empty node like 8.1",
            path,
            number,
        )
    if head != "_" and not _HEAD.fullmatch(head):
        if _NEG_INT.fullmatch(head):
            raise _error(f"HEAD {head} out of range: heads are 0 (root) or a word ID", path, number)
        raise _error(f"invalid HEAD {head!r}: not an integer", path, number)
    return _TokenLine(number, cols, kind, first, last)


def _check_tree(heads: list[int], lines: list[int], path: object) -> None:
    """Every word's head chain must end at the root (0): no self-loops, no cycles."""
    state = [0] * (len(heads) + 1)  # 0 unseen, 1 on the current chain, 2 reaches root
    state[0] = 2
    for start in range(1, len(heads) + 1):
        chain = []
        node = start
        while state[node] == 0:
            state[node] = 1
            chain.append(node)
            node = heads[node - 1]
        if state[node] == 1:
            raise _error(f"word {node} is part of a cycle of HEADs (it does not reach the root)", path,
                         lines[node - 1])
        for item in chain:
            state[item] = 2


def _conllu_tokens(block: list[tuple[int, str]], path: object) -> conllu.TokenList:
    """Parse one validated block with the conllu library; its errors become DataFormatErrors."""
    try:
        return conllu.parse_token_and_metadata(
            "\n".join(line for _, line in block), fields=FIELDS, field_parsers=dict(_FIELD_PARSERS)
        )
    except Exception as exc:  # noqa: BLE001 - whatever the library raises is a format error
        for number, line in block:
            if line.strip().startswith("#"):
                continue
            try:
                conllu.parser.parse_line(line.strip(), list(FIELDS), dict(_FIELD_PARSERS))
            except Exception as line_exc:  # noqa: BLE001
                raise _error(f"cannot parse token line: {line_exc}", path, number) from None
        raise _error(f"cannot parse sentence: {exc}", path, block[0][0]) from None


def _space_after(misc: object) -> bool:
    return not (isinstance(misc, dict) and misc.get("SpaceAfter") == "No")


def _sentence(block: list[tuple[int, str]], index: int, path: object, name: str) -> Sentence:
    token_lines: list[_TokenLine] = []
    words = 0
    range_end = 0
    range_line = 0
    for number, line in block:
        if line.strip().startswith("#"):
            continue
        tok = _validate_token_line(number, line, path)
        expected = words + 1
        if tok.kind == "word":
            if tok.first != expected:
                raise _error(f"word ID {tok.first} out of sequence, expected {expected}", path, number)
            words += 1
        elif tok.kind == "range":
            if tok.first != expected:
                raise _error(f"multiword token {tok.cols[0]} must start at the next word ID, {expected}",
                             path, number)
            if range_end >= expected:
                raise _error(f"multiword token {tok.cols[0]} overlaps the one on line {range_line}", path, number)
            range_end, range_line = tok.last, number
        elif tok.first != words:
            raise _error(f"empty node {tok.cols[0]} must follow word {tok.first}", path, number)
        token_lines.append(tok)
    if words == 0:
        first = token_lines[0].number if token_lines else block[0][0]
        raise _error("sentence has no words (no token line with an integer ID)", path, first)

    parsed = _conllu_tokens(block, path)
    if len(parsed) != len(token_lines):  # cannot happen after validation; never trust silently
        raise _error(f"conllu read {len(parsed)} tokens, expected {len(token_lines)}", path, block[0][0])

    forms: list[str] = []
    upos: list[str] = []
    heads: list[int | None] = []
    deprels: list[str] = []
    space_after: list[bool] = []
    word_lines: list[int] = []
    surface: list[tuple[str, bool]] = []  # (form, space after) of the tokens in the text
    surface_words: list[range] = []  # the words (0-based) each surface token stands for
    ranges: dict[int, tuple[int, bool]] = {}  # last word of a range -> (range line, space after)
    covered_until = 0
    for tok, token in zip(token_lines, parsed):
        if tok.kind == "range":
            if tok.last > words:
                raise _error(f"multiword token {tok.cols[0]} ends after the last word ({words})", path,
                             tok.number)
            ranges[tok.last] = (tok.number, _space_after(token.get("misc")))
            surface.append((token["form"], _space_after(token.get("misc"))))
            surface_words.append(range(tok.first - 1, tok.last))
            covered_until = tok.last
            continue
        if tok.kind == "empty":
            continue
        word_id = tok.first
        forms.append(token["form"])
        upos.append(token["upos"])
        heads.append(token["head"])
        deprels.append(token["deprel"])
        word_lines.append(tok.number)
        space = _space_after(token.get("misc"))
        if word_id < covered_until:
            space = False  # inside a multiword token
        elif word_id in ranges:
            space = space and ranges[word_id][1]
        else:
            surface.append((token["form"], space))
            surface_words.append(range(word_id - 1, word_id))
        space_after.append(space)

    head_list: list[int] | None
    if all(h is None for h in heads):
        head_list = None
    else:
        for h, number in zip(heads, word_lines):
            if h is None:
                raise _error("HEAD is '_' while other words of the sentence have one", path, number)
            if h > words:
                raise _error(f"HEAD {h} out of range: the sentence has {words} words", path, number)
        head_list = [int(h) for h in heads]  # type: ignore[arg-type]
        for i, h in enumerate(head_list, 1):
            if h == i:
                raise _error(f"word {i} is its own HEAD", path, word_lines[i - 1])
        _check_tree(head_list, word_lines, path)

    meta = parsed.metadata
    sent_id = meta.get("sent_id") or f"{name}:{index}"
    text = meta.get("text")
    if text is None:
        text = "".join(form + (" " if space else "") for form, space in surface).rstrip(" ")
    spans: list[tuple[int, int] | None] = [None] * words
    for span, word_ids in zip(locate_spans(str(text), [form for form, _ in surface]), surface_words):
        for w in word_ids:
            spans[w] = span
    return Sentence(
        sent_id=str(sent_id),
        text=str(text),
        words=forms,
        upos=None if all(u == "_" for u in upos) else upos,
        head=head_list,
        deprel=None if all(d == "_" for d in deprels) else deprels,
        space_after=space_after,
        spans=spans,
    )


def parse_conllu(data: bytes | str, path: object = "<conllu>") -> list[Sentence]:
    """Sentences of a CoNLL-U document given as bytes or text; ``path`` names it in errors."""
    lines = _decode_lines(data, path)
    name = Path(str(path)).name
    blocks = _blocks(lines)
    if not blocks:
        raise _error("no sentences: the file is empty", path, len(lines) + 1 if lines else 1)
    sentences = []
    seen: dict[str, int] = {}
    for index, block in enumerate(blocks, 1):
        sentence = _sentence(block, index, path, name)
        first = seen.setdefault(sentence.sent_id, block[0][0])
        if first != block[0][0]:
            raise _error(f"duplicate sent_id {sentence.sent_id!r} (first used by the sentence on line {first})",
                         path, block[0][0])
        sentences.append(sentence)
    return sentences


def read_conllu(path: str | Path) -> list[Sentence]:
    """Sentences of the CoNLL-U file ``path`` (see the module docstring for validation)."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise DataFormatError(f"cannot read file: {exc.strerror or exc}", path=path) from exc
    return parse_conllu(data, path)


# ---------------------------------------------------------------------------
# corpora

#: The Parallel UD treebank folder of each language (by :attr:`~probe.languages.Language.code`):
#: the 21 PUD treebanks upstream.
PUD_TREEBANKS: dict[str, str] = {
    "ar": "UD_Arabic-PUD", "cs": "UD_Czech-PUD", "de": "UD_German-PUD", "en": "UD_English-PUD",
    "es": "UD_Spanish-PUD", "fi": "UD_Finnish-PUD", "fr": "UD_French-PUD", "gl": "UD_Galician-PUD",
    "hi": "UD_Hindi-PUD", "id": "UD_Indonesian-PUD", "is": "UD_Icelandic-PUD", "it": "UD_Italian-PUD",
    "ja": "UD_Japanese-PUD", "ko": "UD_Korean-PUD", "pl": "UD_Polish-PUD", "pt": "UD_Portuguese-PUD",
    "ru": "UD_Russian-PUD", "sv": "UD_Swedish-PUD", "th": "UD_Thai-PUD", "tr": "UD_Turkish-PUD",
    "zh": "UD_Chinese-PUD",
}
#: The larger UD treebank (with dev and test files) of each language that has one.
UD_TREEBANKS: dict[str, str] = {
    "de": "UD_German-GSD", "en": "UD_English-EWT", "fr": "UD_French-GSD", "zh": "UD_Chinese-GSD",
}


def pud_file(lang: str | Language) -> tuple[str, str] | None:
    """``(treebank folder, file name)`` of the language's PUD test file, or None."""
    code = get_language(lang).code
    if code not in PUD_TREEBANKS:
        return None
    return (PUD_TREEBANKS[code], f"{code}_pud-ud-test.conllu")


def ud_files(lang: str | Language) -> dict[str, tuple[str, str]]:
    """``{split: (treebank folder, file name)}`` of the language's larger UD treebank (dev,
    test); empty when it has none."""
    code = get_language(lang).code
    folder = UD_TREEBANKS.get(code)
    if folder is None:
        return {}
    treebank = folder.rsplit("-", 1)[1].lower()
    return {split: (folder, f"{code}_{treebank}-ud-{split}.conllu") for split in ("dev", "test")}


def ud_remote(folder: str, filename: str) -> RemoteFile:
    """The :class:`RemoteFile` of ``filename`` in UD repository ``folder``, pinned where we can."""
    commit = UD_COMMITS.get(folder)
    relpath = f"ud/{folder}/{filename}"
    ref = commit or UPSTREAM_DEFAULT_REF
    return RemoteFile(
        relpath=relpath,
        url=UD_RAW_URL.format(folder=folder, ref=ref, file=filename),
        sha256=SHA256.get(relpath) if commit else None,
        commit=ref,
    )


class _Treebanks(CorpusDef):
    """A corpus of UD treebank files: read with :func:`read_conllu`, concatenated."""

    def _file_names(self, language: Language, split: str) -> list[tuple[str, str]]:
        raise NotImplementedError

    def remote_files(self, lang: str | Language, split: str) -> list[RemoteFile]:
        language = self.check(lang, split)
        return [ud_remote(folder, name) for folder, name in self._file_names(language, split)]

    def load(self, lang: str | Language, split: str, *, progress: bool = True) -> Corpus:
        language = self.check(lang, split)
        sentences: list[Sentence] = []
        files = []
        for path, info in self.fetch(language, split, progress=progress):
            sentences.extend(read_conllu(path))
            files.append(info)
        return Corpus(name=self.name, lang=language.code, split=split, sentences=sentences, files=files)


@register_corpus
class PUDCorpus(_Treebanks):
    name = "pud"
    description = ("Parallel Universal Dependencies: the same 1000 sentences in each language, "
                   "aligned by sent_id, with gold UPOS and dependency trees")
    splits = ("test",)

    def languages(self) -> list[Language]:
        return [lang for lang in LANGUAGES if lang.code in PUD_TREEBANKS]

    def _file_names(self, language: Language, split: str) -> list[tuple[str, str]]:
        file = pud_file(language)
        assert file is not None
        return [file]


@register_corpus
class UDCorpus(_Treebanks):
    name = "ud"
    description = ("larger Universal Dependencies treebanks (English-EWT, German-GSD, Chinese-GSD, "
                   "French-GSD): dev, test or both concatenated (dev+test)")
    splits = ("dev", "test", "dev+test")

    def languages(self) -> list[Language]:
        return [lang for lang in LANGUAGES if lang.code in UD_TREEBANKS]

    def _file_names(self, language: Language, split: str) -> list[tuple[str, str]]:
        files = ud_files(language)
        return [files[part] for part in split.split("+")]
