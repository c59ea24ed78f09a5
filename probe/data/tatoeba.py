"""Tatoeba v1 (LASER ``data/tatoeba/v1``, the XTREME Tatoeba task): the ``tatoeba`` corpus.

For each language ``xxx`` two files, ``tatoeba.xxx-eng.xxx`` and ``tatoeba.xxx-eng.eng``:
line *i* of one translates line *i* of the other (up to 1000 pairs; the English side
differs from language to language). Split ``xx`` is the language side, ``eng`` its
English side; ``sent_id`` is the 1-based line number, so the two splits align by it.
Words are whitespace tokens.

Both files are validated on every load: UTF-8, no empty lines, equal line counts;
violations raise :class:`~probe.errors.DataFormatError` naming the file and line.
"""
from __future__ import annotations

from pathlib import Path

from probe.data import Corpus, CorpusDef, Sentence, data_error as _error, register_corpus
from probe.data.text import strip_bom, utf8_problem
from probe.data.pins import LASER_COMMIT, SHA256
from probe.data.spans import locate_spans
from probe.download import RemoteFile
from probe.errors import DataFormatError
from probe.languages import LANGUAGES, Language, get_language

__all__ = ["TATOEBA_RAW_URL", "TATOEBA_CODES", "tatoeba_code", "tatoeba_remote", "read_lines", "read_pair",
           "TatoebaCorpus"]

#: Raw-file URL of a Tatoeba v1 file in the LASER repository at a commit.
TATOEBA_RAW_URL = "https://raw.githubusercontent.com/facebookresearch/LASER/{ref}/data/tatoeba/v1/{file}"

#: The 112 languages of Tatoeba v1, by the three-letter code in its file names
#: (``tatoeba.deu-eng.deu``). Each is the ISO 639-3 code (:attr:`~probe.languages.Language.iso3`)
#: of a registered language: where Tatoeba names an individual language inside a
#: macrolanguage (``cmn``, ``pes``, ``zsm``, ``lvs``, ``swh``), so does the registry.
TATOEBA_CODES: frozenset[str] = frozenset("""
    afr amh ang ara arq arz ast awa aze bel ben ber bos bre bul cat cbk ceb ces cha cmn cor csb
    cym dan deu dsb dtp ell epo est eus fao fin fra fry gla gle glg gsw heb hin hrv hsb hun hye
    ido ile ina ind isl ita jav jpn kab kat kaz khm kor kur kzj lat lfn lit lvs mal mar max mhr
    mkd mon nds nld nno nob nov oci orv pam pes pms pol por ron rus slk slv spa sqi srp swe swg
    swh tam tat tel tgl tha tuk tur tzl uig ukr urd uzb vie war wuu xho yid yue zsm
""".split())


def tatoeba_code(lang: str | Language) -> str | None:
    """The code of the language in Tatoeba v1 file names, or None when Tatoeba does not have
    it (English, the side every pair shares, is not a Tatoeba language)."""
    iso3 = get_language(lang).iso3
    return iso3 if iso3 in TATOEBA_CODES else None


def tatoeba_remote(code: str, side: str) -> RemoteFile:
    """The :class:`RemoteFile` of ``tatoeba.<code>-eng.<side>`` (side: ``code`` or ``"eng"``)."""
    filename = f"tatoeba.{code}-eng.{side}"
    relpath = f"tatoeba/v1/{filename}"
    return RemoteFile(
        relpath=relpath,
        url=TATOEBA_RAW_URL.format(ref=LASER_COMMIT, file=filename),
        sha256=SHA256.get(relpath),
        commit=LASER_COMMIT,
    )


def read_lines(path: str | Path) -> list[str]:
    """The lines of a one-sentence-per-line file, stripped; strict UTF-8, no empty lines."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise DataFormatError(f"cannot read file: {exc.strerror or exc}", path=path) from exc
    if not data:
        raise _error("file is empty", path, 1)
    raw_lines = data.split(b"\n")
    if raw_lines[-1] == b"":
        raw_lines.pop()  # the final newline
    lines: list[str] = []
    for number, raw in enumerate(raw_lines, 1):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _error(utf8_problem(raw, exc), path, number) from None
        if number == 1:
            text = strip_bom(text, path)
        text = text.strip()
        if not text:
            raise _error("empty line (every line must hold one sentence)", path, number)
        lines.append(text)
    return lines


def read_pair(xx_path: str | Path, eng_path: str | Path) -> tuple[list[str], list[str]]:
    """Both sides of a Tatoeba pair, checked to have the same number of lines."""
    xx, eng = read_lines(xx_path), read_lines(eng_path)
    if len(xx) != len(eng):
        longer = xx_path if len(xx) > len(eng) else eng_path
        raise _error(
            f"no translation: {xx_path} has {len(xx)} lines but {eng_path} has {len(eng)}",
            longer,
            min(len(xx), len(eng)) + 1,
        )
    return xx, eng


def _sentence(number: int, text: str) -> Sentence:
    words = text.split()
    return Sentence(
        sent_id=str(number),
        text=text,
        words=words,
        upos=None,
        head=None,
        deprel=None,
        space_after=[True] * (len(words) - 1) + [False],
        spans=locate_spans(text, words),
    )


@register_corpus
class TatoebaCorpus(CorpusDef):
    name = "tatoeba"
    description = ("Tatoeba v1 (LASER/XTREME): up to 1000 sentence pairs <lang>-English per language; "
                   "split 'xx' = the language side, 'eng' = its English side, aligned by line")
    splits = ("xx", "eng")

    def languages(self) -> list[Language]:
        return [lang for lang in LANGUAGES if lang.iso3 in TATOEBA_CODES]

    def _split(self, lang: str | Language, split: str) -> tuple[Language, str]:
        language = get_language(lang)
        if tatoeba_code(language) and split == tatoeba_code(language):
            split = "xx"  # "deu" for the German side
        return self.check(language, split), split

    def remote_files(self, lang: str | Language, split: str) -> list[RemoteFile]:
        language, _ = self._split(lang, split)
        code = tatoeba_code(language)
        assert code is not None
        return [tatoeba_remote(code, code), tatoeba_remote(code, "eng")]

    def load(self, lang: str | Language, split: str, *, progress: bool = True) -> Corpus:
        language, split = self._split(lang, split)
        (xx_path, xx_info), (eng_path, eng_info) = self.fetch(language, split, progress=progress)
        xx, eng = read_pair(xx_path, eng_path)
        lines = xx if split == "xx" else eng
        return Corpus(
            name=self.name,
            lang=language.code,
            split=split,
            sentences=[_sentence(number, text) for number, text in enumerate(lines, 1)],
            files=[xx_info, eng_info],
        )
