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
    """One language: its codes, English name, lineage and script (metadata only).

    ``family``/``genus``: e.g. ``"Indo-European"``/``"Germanic"`` (:attr:`lineage` joins them).
    ``aliases``: further codes and names that resolve to this language.
    Which corpora have a language, and under which folder or file name, is each corpus's own
    business (:mod:`probe.data`: :func:`probe.data.languages_with`, ``PUD_TREEBANKS``,
    ``UD_TREEBANKS``, ``TATOEBA_CODES``).
    """

    iso1: str | None
    iso3: str
    name: str
    family: str
    genus: str
    script: str
    aliases: tuple[str, ...] = ()

    @property
    def code(self) -> str:
        """The short code used in file names and reports: ISO 639-1 if any, else ISO 639-3."""
        return self.iso1 or self.iso3

    @property
    def lineage(self) -> str:
        """``"family/genus"``, e.g. ``"Indo-European/Germanic"``."""
        return f"{self.family}/{self.genus}"

    def __str__(self) -> str:
        return f"{self.name} ({self.code})"


IE = "Indo-European"
AA = "Afro-Asiatic"
AN = "Austronesian"
CON = "Constructed"

# iso1, iso3, name, family, genus, script, aliases
_TABLE: list[tuple] = [
    ("af", "afr", "Afrikaans", IE, "Germanic", "Latin", ()),
    ("am", "amh", "Amharic", AA, "Semitic", "Ethiopic", ()),
    (None, "ang", "Old English", IE, "Germanic", "Latin", ("Anglo-Saxon",)),
    ("ar", "ara", "Arabic", AA, "Semitic", "Arabic", ()),
    (None, "arq", "Algerian Arabic", AA, "Semitic", "Arabic", ()),
    (None, "arz", "Egyptian Arabic", AA, "Semitic", "Arabic", ()),
    (None, "ast", "Asturian", IE, "Romance", "Latin", ()),
    (None, "awa", "Awadhi", IE, "Indo-Aryan", "Devanagari", ()),
    ("az", "aze", "Azerbaijani", "Turkic", "Oghuz", "Latin", ("Azeri",)),
    ("be", "bel", "Belarusian", IE, "Slavic", "Cyrillic", ()),
    ("bn", "ben", "Bengali", IE, "Indo-Aryan", "Bengali", ("Bangla",)),
    (None, "ber", "Berber", AA, "Berber", "Latin", ("Tamazight",)),
    ("bs", "bos", "Bosnian", IE, "Slavic", "Latin", ()),
    ("br", "bre", "Breton", IE, "Celtic", "Latin", ()),
    ("bg", "bul", "Bulgarian", IE, "Slavic", "Cyrillic", ()),
    ("ca", "cat", "Catalan", IE, "Romance", "Latin", ()),
    (None, "cbk", "Chavacano", "Creole", "Spanish-based", "Latin", ("Zamboanga Chavacano",)),
    (None, "ceb", "Cebuano", AN, "Philippine", "Latin", ()),
    ("cs", "ces", "Czech", IE, "Slavic", "Latin", ("cze",)),
    ("ch", "cha", "Chamorro", AN, "Chamorro", "Latin", ()),
    ("zh", "cmn", "Chinese", "Sino-Tibetan", "Sinitic", "Han", ("zho", "chi", "Mandarin", "Mandarin Chinese")),
    ("kw", "cor", "Cornish", IE, "Celtic", "Latin", ()),
    (None, "csb", "Kashubian", IE, "Slavic", "Latin", ()),
    ("cy", "cym", "Welsh", IE, "Celtic", "Latin", ("wel",)),
    ("da", "dan", "Danish", IE, "Germanic", "Latin", ()),
    ("de", "deu", "German", IE, "Germanic", "Latin", ("ger",)),
    (None, "dsb", "Lower Sorbian", IE, "Slavic", "Latin", ()),
    (None, "dtp", "Central Dusun", AN, "North Borneo", "Latin", ("Kadazan Dusun",)),
    ("el", "ell", "Greek", IE, "Hellenic", "Greek", ("gre", "Modern Greek")),
    ("en", "eng", "English", IE, "Germanic", "Latin", ()),
    ("eo", "epo", "Esperanto", CON, "International auxiliary", "Latin", ()),
    ("et", "est", "Estonian", "Uralic", "Finnic", "Latin", ("ekk",)),
    ("eu", "eus", "Basque", "Isolate", "Basque", "Latin", ("baq",)),
    ("fo", "fao", "Faroese", IE, "Germanic", "Latin", ()),
    ("fi", "fin", "Finnish", "Uralic", "Finnic", "Latin", ()),
    ("fr", "fra", "French", IE, "Romance", "Latin", ("fre",)),
    ("fy", "fry", "Western Frisian", IE, "Germanic", "Latin", ("Frisian",)),
    ("gd", "gla", "Scottish Gaelic", IE, "Celtic", "Latin", ("Gaelic",)),
    ("ga", "gle", "Irish", IE, "Celtic", "Latin", ()),
    ("gl", "glg", "Galician", IE, "Romance", "Latin", ()),
    (None, "gsw", "Swiss German", IE, "Germanic", "Latin", ("Alemannic",)),
    ("he", "heb", "Hebrew", AA, "Semitic", "Hebrew", ()),
    ("hi", "hin", "Hindi", IE, "Indo-Aryan", "Devanagari", ()),
    ("hr", "hrv", "Croatian", IE, "Slavic", "Latin", ()),
    (None, "hsb", "Upper Sorbian", IE, "Slavic", "Latin", ()),
    ("hu", "hun", "Hungarian", "Uralic", "Ugric", "Latin", ()),
    ("hy", "hye", "Armenian", IE, "Armenian", "Armenian", ("arm",)),
    ("io", "ido", "Ido", CON, "International auxiliary", "Latin", ()),
    ("ie", "ile", "Interlingue", CON, "International auxiliary", "Latin", ("Occidental",)),
    ("ia", "ina", "Interlingua", CON, "International auxiliary", "Latin", ()),
    ("id", "ind", "Indonesian", AN, "Malayic", "Latin", ()),
    ("is", "isl", "Icelandic", IE, "Germanic", "Latin", ("ice",)),
    ("it", "ita", "Italian", IE, "Romance", "Latin", ()),
    ("jv", "jav", "Javanese", AN, "Javanese", "Latin", ()),
    ("ja", "jpn", "Japanese", "Japonic", "Japanese", "Japanese", ()),
    (None, "kab", "Kabyle", AA, "Berber", "Latin", ()),
    ("ka", "kat", "Georgian", "Kartvelian", "Karto-Zan", "Georgian", ("geo",)),
    ("kk", "kaz", "Kazakh", "Turkic", "Kipchak", "Cyrillic", ()),
    ("km", "khm", "Khmer", "Austroasiatic", "Khmer", "Khmer", ("Cambodian",)),
    ("ko", "kor", "Korean", "Koreanic", "Korean", "Hangul", ()),
    ("ku", "kur", "Kurdish", IE, "Iranian", "Latin", ("Kurmanji",)),
    (None, "kzj", "Coastal Kadazan", AN, "North Borneo", "Latin", ()),
    ("la", "lat", "Latin", IE, "Italic", "Latin", ()),
    (None, "lfn", "Lingua Franca Nova", CON, "International auxiliary", "Latin", ("Elefen",)),
    ("lt", "lit", "Lithuanian", IE, "Baltic", "Latin", ()),
    ("lv", "lvs", "Latvian", IE, "Baltic", "Latin", ("lav", "Standard Latvian")),
    ("ml", "mal", "Malayalam", "Dravidian", "Southern Dravidian", "Malayalam", ()),
    ("mr", "mar", "Marathi", IE, "Indo-Aryan", "Devanagari", ()),
    (None, "max", "North Moluccan Malay", AN, "Malayic", "Latin", ("Ternate Malay",)),
    (None, "mhr", "Eastern Mari", "Uralic", "Mari", "Cyrillic", ("Meadow Mari", "Mari")),
    ("mk", "mkd", "Macedonian", IE, "Slavic", "Cyrillic", ("mac",)),
    ("mn", "mon", "Mongolian", "Mongolic", "Mongolian", "Cyrillic", ()),
    (None, "nds", "Low German", IE, "Germanic", "Latin", ("Low Saxon", "Plattdeutsch")),
    ("nl", "nld", "Dutch", IE, "Germanic", "Latin", ("dut", "Flemish")),
    ("nn", "nno", "Norwegian Nynorsk", IE, "Germanic", "Latin", ("Nynorsk",)),
    ("nb", "nob", "Norwegian Bokmål", IE, "Germanic", "Latin",
     ("no", "nor", "Norwegian", "Bokmål", "Bokmal", "Norwegian Bokmal")),
    (None, "nov", "Novial", CON, "International auxiliary", "Latin", ()),
    ("oc", "oci", "Occitan", IE, "Romance", "Latin", ()),
    (None, "orv", "Old East Slavic", IE, "Slavic", "Cyrillic", ("Old Russian",)),
    (None, "pam", "Kapampangan", AN, "Philippine", "Latin", ("Pampanga", "Pampangan")),
    ("fa", "pes", "Persian", IE, "Iranian", "Arabic", ("fas", "per", "Farsi", "Iranian Persian")),
    (None, "pms", "Piedmontese", IE, "Romance", "Latin", ()),
    ("pl", "pol", "Polish", IE, "Slavic", "Latin", ()),
    ("pt", "por", "Portuguese", IE, "Romance", "Latin", ()),
    ("ro", "ron", "Romanian", IE, "Romance", "Latin", ("rum", "Moldavian")),
    ("ru", "rus", "Russian", IE, "Slavic", "Cyrillic", ()),
    ("sk", "slk", "Slovak", IE, "Slavic", "Latin", ("slo",)),
    ("sl", "slv", "Slovenian", IE, "Slavic", "Latin", ("Slovene",)),
    ("es", "spa", "Spanish", IE, "Romance", "Latin", ("Castilian",)),
    ("sq", "sqi", "Albanian", IE, "Albanian", "Latin", ("alb",)),
    ("sr", "srp", "Serbian", IE, "Slavic", "Latin", ()),
    ("sv", "swe", "Swedish", IE, "Germanic", "Latin", ()),
    (None, "swg", "Swabian", IE, "Germanic", "Latin", ()),
    ("sw", "swh", "Swahili", "Niger-Congo", "Bantu", "Latin", ("swa", "Kiswahili")),
    ("ta", "tam", "Tamil", "Dravidian", "Southern Dravidian", "Tamil", ()),
    ("tt", "tat", "Tatar", "Turkic", "Kipchak", "Cyrillic", ()),
    ("te", "tel", "Telugu", "Dravidian", "South-Central Dravidian", "Telugu", ()),
    ("tl", "tgl", "Tagalog", AN, "Philippine", "Latin", ("Filipino",)),
    ("th", "tha", "Thai", "Kra-Dai", "Tai", "Thai", ()),
    ("tk", "tuk", "Turkmen", "Turkic", "Oghuz", "Latin", ()),
    ("tr", "tur", "Turkish", "Turkic", "Oghuz", "Latin", ()),
    (None, "tzl", "Talossan", CON, "Artistic", "Latin", ()),
    ("ug", "uig", "Uyghur", "Turkic", "Karluk", "Arabic", ("Uighur",)),
    ("uk", "ukr", "Ukrainian", IE, "Slavic", "Cyrillic", ()),
    ("ur", "urd", "Urdu", IE, "Indo-Aryan", "Arabic", ()),
    ("uz", "uzb", "Uzbek", "Turkic", "Karluk", "Latin", ()),
    ("vi", "vie", "Vietnamese", "Austroasiatic", "Vietic", "Latin", ()),
    (None, "war", "Waray", AN, "Philippine", "Latin", ("Waray-Waray",)),
    (None, "wuu", "Wu Chinese", "Sino-Tibetan", "Sinitic", "Han", ("Wu", "Shanghainese")),
    ("xh", "xho", "Xhosa", "Niger-Congo", "Bantu", "Latin", ("isiXhosa",)),
    ("yi", "yid", "Yiddish", IE, "Germanic", "Hebrew", ()),
    (None, "yue", "Cantonese", "Sino-Tibetan", "Sinitic", "Han", ("Yue Chinese",)),
    ("ms", "zsm", "Malay", AN, "Malayic", "Latin", ("msa", "may", "Standard Malay")),
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
