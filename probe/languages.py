"""The language registry: every language any registered corpus covers.

One :class:`Language` per language, found by ISO 639-1 code, ISO 639-3 code or English
name (case-insensitive) with :func:`get_language`::

    >>> get_language("de").iso3, get_language("zh").iso3, get_language("deu").iso1
    ('deu', 'cmn', 'de')

Coverage: the 21 languages with a Parallel Universal Dependencies (PUD) treebank
upstream and the 112 languages of the Tatoeba v1 test set (LASER ``data/tatoeba/v1``).
Tatoeba names some languages by an individual-language ISO 639-3 code inside a
macrolanguage (``cmn`` Mandarin in ``zho`` Chinese, ``pes`` in ``fas``, ``zsm`` in
``msa``, ``lvs`` in ``lav``, ``swh`` in ``swa``); those carry the macrolanguage's
ISO 639-1 code, and the macrolanguage code resolves to them as an alias.

``script`` is the ISO 15924 script name of the text in our corpora; for languages
written in two scripts (Serbian, Uzbek, Lingua Franca Nova) it is the one most of the
Tatoeba sentences use.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from probe.errors import ProbeError

__all__ = [
    "Language",
    "LANGUAGES",
    "get_language",
    "parse_langs",
    "all_languages",
]


@dataclass(frozen=True)
class Language:
    """One language and where our corpora have it.

    ``family``/``genus``: e.g. ``"Indo-European"``/``"Germanic"`` (:attr:`lineage` joins them).
    ``pud``: the UD PUD treebank folder (``"UD_German-PUD"``) or None.
    ``ud``: the larger UD treebank folder with dev/test splits (``"UD_German-GSD"``) or None;
    :attr:`ud_files` names its files.
    ``tatoeba``: the 3-letter code in Tatoeba v1 file names (``tatoeba.deu-eng.deu``) or None.
    ``aliases``: further codes and names that resolve to this language.
    """

    iso1: str | None
    iso3: str
    name: str
    family: str
    genus: str
    script: str
    pud: str | None = None
    ud: str | None = None
    tatoeba: str | None = None
    aliases: tuple[str, ...] = ()

    @property
    def code(self) -> str:
        """The short code used in file names and reports: ISO 639-1 if any, else ISO 639-3."""
        return self.iso1 or self.iso3

    @property
    def lineage(self) -> str:
        """``"family/genus"``, e.g. ``"Indo-European/Germanic"``."""
        return f"{self.family}/{self.genus}"

    @property
    def ud_files(self) -> dict[str, tuple[str, str]]:
        """``{split: (treebank folder, file name)}`` for the larger UD treebank (dev, test)."""
        if self.ud is None:
            return {}
        treebank = self.ud.rsplit("-", 1)[1].lower()
        prefix = self.code
        return {split: (self.ud, f"{prefix}_{treebank}-ud-{split}.conllu") for split in ("dev", "test")}

    @property
    def pud_file(self) -> tuple[str, str] | None:
        """``(treebank folder, file name)`` of the PUD test file, or None."""
        if self.pud is None:
            return None
        return (self.pud, f"{self.code}_pud-ud-test.conllu")

    def __str__(self) -> str:
        return f"{self.name} ({self.code})"


IE = "Indo-European"
AA = "Afro-Asiatic"
AN = "Austronesian"
CON = "Constructed"

# iso1, iso3, name, family, genus, script, pud, ud, tatoeba, aliases
_TABLE: list[tuple] = [
    ("af", "afr", "Afrikaans", IE, "Germanic", "Latin", None, None, "afr", ()),
    ("am", "amh", "Amharic", AA, "Semitic", "Ethiopic", None, None, "amh", ()),
    (None, "ang", "Old English", IE, "Germanic", "Latin", None, None, "ang", ("Anglo-Saxon",)),
    ("ar", "ara", "Arabic", AA, "Semitic", "Arabic", "UD_Arabic-PUD", None, "ara", ()),
    (None, "arq", "Algerian Arabic", AA, "Semitic", "Arabic", None, None, "arq", ()),
    (None, "arz", "Egyptian Arabic", AA, "Semitic", "Arabic", None, None, "arz", ()),
    (None, "ast", "Asturian", IE, "Romance", "Latin", None, None, "ast", ()),
    (None, "awa", "Awadhi", IE, "Indo-Aryan", "Devanagari", None, None, "awa", ()),
    ("az", "aze", "Azerbaijani", "Turkic", "Oghuz", "Latin", None, None, "aze", ("Azeri",)),
    ("be", "bel", "Belarusian", IE, "Slavic", "Cyrillic", None, None, "bel", ()),
    ("bn", "ben", "Bengali", IE, "Indo-Aryan", "Bengali", None, None, "ben", ("Bangla",)),
    (None, "ber", "Berber", AA, "Berber", "Latin", None, None, "ber", ("Tamazight",)),
    ("bs", "bos", "Bosnian", IE, "Slavic", "Latin", None, None, "bos", ()),
    ("br", "bre", "Breton", IE, "Celtic", "Latin", None, None, "bre", ()),
    ("bg", "bul", "Bulgarian", IE, "Slavic", "Cyrillic", None, None, "bul", ()),
    ("ca", "cat", "Catalan", IE, "Romance", "Latin", None, None, "cat", ()),
    (None, "cbk", "Chavacano", "Creole", "Spanish-based", "Latin", None, None, "cbk", ("Zamboanga Chavacano",)),
    (None, "ceb", "Cebuano", AN, "Philippine", "Latin", None, None, "ceb", ()),
    ("cs", "ces", "Czech", IE, "Slavic", "Latin", "UD_Czech-PUD", None, "ces", ("cze",)),
    ("ch", "cha", "Chamorro", AN, "Chamorro", "Latin", None, None, "cha", ()),
    ("zh", "cmn", "Chinese", "Sino-Tibetan", "Sinitic", "Han", "UD_Chinese-PUD", "UD_Chinese-GSD", "cmn",
     ("zho", "chi", "Mandarin", "Mandarin Chinese")),
    ("kw", "cor", "Cornish", IE, "Celtic", "Latin", None, None, "cor", ()),
    (None, "csb", "Kashubian", IE, "Slavic", "Latin", None, None, "csb", ()),
    ("cy", "cym", "Welsh", IE, "Celtic", "Latin", None, None, "cym", ("wel",)),
    ("da", "dan", "Danish", IE, "Germanic", "Latin", None, None, "dan", ()),
    ("de", "deu", "German", IE, "Germanic", "Latin", "UD_German-PUD", "UD_German-GSD", "deu", ("ger",)),
    (None, "dsb", "Lower Sorbian", IE, "Slavic", "Latin", None, None, "dsb", ()),
    (None, "dtp", "Central Dusun", AN, "North Borneo", "Latin", None, None, "dtp", ("Kadazan Dusun",)),
    ("el", "ell", "Greek", IE, "Hellenic", "Greek", None, None, "ell", ("gre", "Modern Greek")),
    ("en", "eng", "English", IE, "Germanic", "Latin", "UD_English-PUD", "UD_English-EWT", None, ()),
    ("eo", "epo", "Esperanto", CON, "International auxiliary", "Latin", None, None, "epo", ()),
    ("et", "est", "Estonian", "Uralic", "Finnic", "Latin", None, None, "est", ("ekk",)),
    ("eu", "eus", "Basque", "Isolate", "Basque", "Latin", None, None, "eus", ("baq",)),
    ("fo", "fao", "Faroese", IE, "Germanic", "Latin", None, None, "fao", ()),
    ("fi", "fin", "Finnish", "Uralic", "Finnic", "Latin", "UD_Finnish-PUD", None, "fin", ()),
    ("fr", "fra", "French", IE, "Romance", "Latin", "UD_French-PUD", "UD_French-GSD", "fra", ("fre",)),
    ("fy", "fry", "Western Frisian", IE, "Germanic", "Latin", None, None, "fry", ("Frisian",)),
    ("gd", "gla", "Scottish Gaelic", IE, "Celtic", "Latin", None, None, "gla", ("Gaelic",)),
    ("ga", "gle", "Irish", IE, "Celtic", "Latin", None, None, "gle", ()),
    ("gl", "glg", "Galician", IE, "Romance", "Latin", "UD_Galician-PUD", None, "glg", ()),
    (None, "gsw", "Swiss German", IE, "Germanic", "Latin", None, None, "gsw", ("Alemannic",)),
    ("he", "heb", "Hebrew", AA, "Semitic", "Hebrew", None, None, "heb", ()),
    ("hi", "hin", "Hindi", IE, "Indo-Aryan", "Devanagari", "UD_Hindi-PUD", None, "hin", ()),
    ("hr", "hrv", "Croatian", IE, "Slavic", "Latin", None, None, "hrv", ()),
    (None, "hsb", "Upper Sorbian", IE, "Slavic", "Latin", None, None, "hsb", ()),
    ("hu", "hun", "Hungarian", "Uralic", "Ugric", "Latin", None, None, "hun", ()),
    ("hy", "hye", "Armenian", IE, "Armenian", "Armenian", None, None, "hye", ("arm",)),
    ("io", "ido", "Ido", CON, "International auxiliary", "Latin", None, None, "ido", ()),
    ("ie", "ile", "Interlingue", CON, "International auxiliary", "Latin", None, None, "ile", ("Occidental",)),
    ("ia", "ina", "Interlingua", CON, "International auxiliary", "Latin", None, None, "ina", ()),
    ("id", "ind", "Indonesian", AN, "Malayic", "Latin", "UD_Indonesian-PUD", None, "ind", ()),
    ("is", "isl", "Icelandic", IE, "Germanic", "Latin", "UD_Icelandic-PUD", None, "isl", ("ice",)),
    ("it", "ita", "Italian", IE, "Romance", "Latin", "UD_Italian-PUD", None, "ita", ()),
    ("jv", "jav", "Javanese", AN, "Javanese", "Latin", None, None, "jav", ()),
    ("ja", "jpn", "Japanese", "Japonic", "Japanese", "Japanese", "UD_Japanese-PUD", None, "jpn", ()),
    (None, "kab", "Kabyle", AA, "Berber", "Latin", None, None, "kab", ()),
    ("ka", "kat", "Georgian", "Kartvelian", "Karto-Zan", "Georgian", None, None, "kat", ("geo",)),
    ("kk", "kaz", "Kazakh", "Turkic", "Kipchak", "Cyrillic", None, None, "kaz", ()),
    ("km", "khm", "Khmer", "Austroasiatic", "Khmer", "Khmer", None, None, "khm", ("Cambodian",)),
    ("ko", "kor", "Korean", "Koreanic", "Korean", "Hangul", "UD_Korean-PUD", None, "kor", ()),
    ("ku", "kur", "Kurdish", IE, "Iranian", "Latin", None, None, "kur", ("Kurmanji",)),
    (None, "kzj", "Coastal Kadazan", AN, "North Borneo", "Latin", None, None, "kzj", ()),
    ("la", "lat", "Latin", IE, "Italic", "Latin", None, None, "lat", ()),
    (None, "lfn", "Lingua Franca Nova", CON, "International auxiliary", "Latin", None, None, "lfn", ("Elefen",)),
    ("lt", "lit", "Lithuanian", IE, "Baltic", "Latin", None, None, "lit", ()),
    ("lv", "lvs", "Latvian", IE, "Baltic", "Latin", None, None, "lvs", ("lav", "Standard Latvian")),
    ("ml", "mal", "Malayalam", "Dravidian", "Southern Dravidian", "Malayalam", None, None, "mal", ()),
    ("mr", "mar", "Marathi", IE, "Indo-Aryan", "Devanagari", None, None, "mar", ()),
    (None, "max", "North Moluccan Malay", AN, "Malayic", "Latin", None, None, "max", ("Ternate Malay",)),
    (None, "mhr", "Eastern Mari", "Uralic", "Mari", "Cyrillic", None, None, "mhr", ("Meadow Mari", "Mari")),
    ("mk", "mkd", "Macedonian", IE, "Slavic", "Cyrillic", None, None, "mkd", ("mac",)),
    ("mn", "mon", "Mongolian", "Mongolic", "Mongolian", "Cyrillic", None, None, "mon", ()),
    (None, "nds", "Low German", IE, "Germanic", "Latin", None, None, "nds", ("Low Saxon", "Plattdeutsch")),
    ("nl", "nld", "Dutch", IE, "Germanic", "Latin", None, None, "nld", ("dut", "Flemish")),
    ("nn", "nno", "Norwegian Nynorsk", IE, "Germanic", "Latin", None, None, "nno", ("Nynorsk",)),
    ("nb", "nob", "Norwegian Bokmål", IE, "Germanic", "Latin", None, None, "nob",
     ("no", "nor", "Norwegian", "Bokmål", "Bokmal", "Norwegian Bokmal")),
    (None, "nov", "Novial", CON, "International auxiliary", "Latin", None, None, "nov", ()),
    ("oc", "oci", "Occitan", IE, "Romance", "Latin", None, None, "oci", ()),
    (None, "orv", "Old East Slavic", IE, "Slavic", "Cyrillic", None, None, "orv", ("Old Russian",)),
    (None, "pam", "Kapampangan", AN, "Philippine", "Latin", None, None, "pam", ("Pampanga", "Pampangan")),
    ("fa", "pes", "Persian", IE, "Iranian", "Arabic", None, None, "pes", ("fas", "per", "Farsi", "Iranian Persian")),
    (None, "pms", "Piedmontese", IE, "Romance", "Latin", None, None, "pms", ()),
    ("pl", "pol", "Polish", IE, "Slavic", "Latin", "UD_Polish-PUD", None, "pol", ()),
    ("pt", "por", "Portuguese", IE, "Romance", "Latin", "UD_Portuguese-PUD", None, "por", ()),
    ("ro", "ron", "Romanian", IE, "Romance", "Latin", None, None, "ron", ("rum", "Moldavian")),
    ("ru", "rus", "Russian", IE, "Slavic", "Cyrillic", "UD_Russian-PUD", None, "rus", ()),
    ("sk", "slk", "Slovak", IE, "Slavic", "Latin", None, None, "slk", ("slo",)),
    ("sl", "slv", "Slovenian", IE, "Slavic", "Latin", None, None, "slv", ("Slovene",)),
    ("es", "spa", "Spanish", IE, "Romance", "Latin", "UD_Spanish-PUD", None, "spa", ("Castilian",)),
    ("sq", "sqi", "Albanian", IE, "Albanian", "Latin", None, None, "sqi", ("alb",)),
    ("sr", "srp", "Serbian", IE, "Slavic", "Latin", None, None, "srp", ()),
    ("sv", "swe", "Swedish", IE, "Germanic", "Latin", "UD_Swedish-PUD", None, "swe", ()),
    (None, "swg", "Swabian", IE, "Germanic", "Latin", None, None, "swg", ()),
    ("sw", "swh", "Swahili", "Niger-Congo", "Bantu", "Latin", None, None, "swh", ("swa", "Kiswahili")),
    ("ta", "tam", "Tamil", "Dravidian", "Southern Dravidian", "Tamil", None, None, "tam", ()),
    ("tt", "tat", "Tatar", "Turkic", "Kipchak", "Cyrillic", None, None, "tat", ()),
    ("te", "tel", "Telugu", "Dravidian", "South-Central Dravidian", "Telugu", None, None, "tel", ()),
    ("tl", "tgl", "Tagalog", AN, "Philippine", "Latin", None, None, "tgl", ("Filipino",)),
    ("th", "tha", "Thai", "Kra-Dai", "Tai", "Thai", "UD_Thai-PUD", None, "tha", ()),
    ("tk", "tuk", "Turkmen", "Turkic", "Oghuz", "Latin", None, None, "tuk", ()),
    ("tr", "tur", "Turkish", "Turkic", "Oghuz", "Latin", "UD_Turkish-PUD", None, "tur", ()),
    (None, "tzl", "Talossan", CON, "Artistic", "Latin", None, None, "tzl", ()),
    ("ug", "uig", "Uyghur", "Turkic", "Karluk", "Arabic", None, None, "uig", ("Uighur",)),
    ("uk", "ukr", "Ukrainian", IE, "Slavic", "Cyrillic", None, None, "ukr", ()),
    ("ur", "urd", "Urdu", IE, "Indo-Aryan", "Arabic", None, None, "urd", ()),
    ("uz", "uzb", "Uzbek", "Turkic", "Karluk", "Latin", None, None, "uzb", ()),
    ("vi", "vie", "Vietnamese", "Austroasiatic", "Vietic", "Latin", None, None, "vie", ()),
    (None, "war", "Waray", AN, "Philippine", "Latin", None, None, "war", ("Waray-Waray",)),
    (None, "wuu", "Wu Chinese", "Sino-Tibetan", "Sinitic", "Han", None, None, "wuu", ("Wu", "Shanghainese")),
    ("xh", "xho", "Xhosa", "Niger-Congo", "Bantu", "Latin", None, None, "xho", ("isiXhosa",)),
    ("yi", "yid", "Yiddish", IE, "Germanic", "Hebrew", None, None, "yid", ()),
    (None, "yue", "Cantonese", "Sino-Tibetan", "Sinitic", "Han", None, None, "yue", ("Yue Chinese",)),
    ("ms", "zsm", "Malay", AN, "Malayic", "Latin", None, None, "zsm", ("msa", "may", "Standard Malay")),
]

#: Every registered language, ordered by ISO 639-3 code.
LANGUAGES: tuple[Language, ...] = tuple(sorted((Language(*row) for row in _TABLE), key=lambda lang: lang.iso3))


def _build_index(languages: Iterable[Language]) -> dict[str, Language]:
    index: dict[str, Language] = {}
    for lang in languages:
        keys = [lang.iso3, lang.name, *lang.aliases]
        if lang.iso1:
            keys.append(lang.iso1)
        for key in keys:
            key = key.casefold()
            other = index.get(key)
            if other is not None and other is not lang:
                raise AssertionError(f"language key {key!r} names both {other.iso3} and {lang.iso3}")
            index[key] = lang
    return index


_INDEX = _build_index(LANGUAGES)


def all_languages() -> list[Language]:
    """Every registered language, ordered by ISO 639-3 code."""
    return list(LANGUAGES)


def _choices(languages: Iterable[Language]) -> str:
    return ", ".join(sorted(lang.code for lang in languages))


def get_language(code: str | Language) -> Language:
    """The language named by ISO 639-1, ISO 639-3 (or an alias) or English name, any case.

    Raises :class:`ProbeError` listing the supported codes when nothing matches.
    """
    if isinstance(code, Language):
        return code
    key = str(code).strip().casefold()
    lang = _INDEX.get(key)
    if lang is None:
        raise ProbeError(f"unknown language {str(code).strip()!r}; supported: {_choices(LANGUAGES)}")
    return lang


def parse_langs(spec: str | Iterable[str | Language]) -> list[Language]:
    """Languages from ``"de,zh"`` (commas and/or whitespace) or an iterable of codes.

    Order is kept, duplicates are dropped; an empty list is an error.
    """
    if isinstance(spec, str):
        items: list[str | Language] = [part for part in spec.replace(",", " ").split() if part]
    else:
        items = list(spec)
    out: list[Language] = []
    for item in items:
        lang = get_language(item)
        if lang not in out:
            out.append(lang)
    if not out:
        raise ProbeError(f"no languages given; supported: {_choices(LANGUAGES)}")
    return out
