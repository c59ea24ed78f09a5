"""The language registry: lookups by code and name; the PUD, UD and Tatoeba corpora's coverage
of it (their folder and file names live with the corpora in probe.data)."""
from __future__ import annotations

import dataclasses
import re

import pytest

from probe.errors import ProbeError
from probe.data import languages_with
from probe.data.tatoeba import TATOEBA_CODES, tatoeba_code
from probe.data.ud import PUD_TREEBANKS, UD_TREEBANKS, pud_file, ud_files
from probe.languages import LANGUAGES, Language, all_languages, get_language, parse_langs

PUD_UPSTREAM = {
    "Arabic", "Chinese", "Czech", "English", "Finnish", "French", "Galician", "German", "Hindi",
    "Icelandic", "Indonesian", "Italian", "Japanese", "Korean", "Polish", "Portuguese", "Russian",
    "Spanish", "Swedish", "Thai", "Turkish",
}
SCRIPTS = {
    "Latin", "Cyrillic", "Arabic", "Greek", "Hebrew", "Armenian", "Georgian", "Devanagari", "Bengali",
    "Tamil", "Telugu", "Malayalam", "Khmer", "Thai", "Ethiopic", "Han", "Hangul", "Japanese",
}


def test_lookup_by_iso1_iso3_and_name():
    assert get_language("de").iso3 == "deu"
    assert get_language("zh").iso3 == "cmn"
    assert get_language("deu").iso1 == "de"
    assert get_language("cmn").iso1 == "zh"
    assert get_language("German") is get_language("de")
    assert get_language("  GERMAN ") is get_language("DE")
    assert get_language("mandarin") is get_language("zh")
    assert get_language(get_language("fr")) is get_language("fr")


def test_macrolanguage_codes_resolve_to_tatoeba_languages():
    assert get_language("zho").iso3 == "cmn"
    assert get_language("fa").iso3 == "pes"
    assert get_language("fas").iso3 == "pes"
    assert get_language("ms").iso3 == "zsm"
    assert get_language("lv").iso3 == "lvs"
    assert get_language("sw").iso3 == "swh"


def test_languages_without_iso1_use_iso3():
    ber = get_language("ber")
    assert ber.iso1 is None
    assert ber.code == "ber"
    assert get_language("Swiss German").iso3 == "gsw"


def test_unknown_language_lists_choices():
    with pytest.raises(ProbeError) as info:
        get_language("xx")
    message = str(info.value)
    assert message.startswith("unknown language 'xx'; supported: ")
    choices = message.split("supported: ", 1)[1].split(", ")
    assert {"ar", "cs", "de", "en", "zh", "ber"} <= set(choices)
    assert choices == sorted(choices)


def test_codes_are_unique():
    iso3 = [lang.iso3 for lang in LANGUAGES]
    iso1 = [lang.iso1 for lang in LANGUAGES if lang.iso1]
    assert len(iso3) == len(set(iso3))
    assert len(iso1) == len(set(iso1))
    assert all_languages() == list(LANGUAGES)


def test_fields_are_well_formed():
    for lang in LANGUAGES:
        assert re.fullmatch(r"[a-z]{3}", lang.iso3), lang
        assert lang.iso1 is None or re.fullmatch(r"[a-z]{2}", lang.iso1), lang
        assert lang.name and lang.family and lang.genus, lang
        assert lang.lineage == f"{lang.family}/{lang.genus}"
        assert lang.script in SCRIPTS, lang
    assert get_language("de").lineage == "Indo-European/Germanic"
    assert get_language("zh").script == "Han"
    assert get_language("ko").script == "Hangul"
    assert get_language("hi").script == "Devanagari"
    assert get_language("ru").script == "Cyrillic"
    assert get_language("ar").script == "Arabic"


def test_language_is_frozen_and_hashable():
    de = get_language("de")
    with pytest.raises(dataclasses.FrozenInstanceError):
        de.name = "x"  # type: ignore[misc]
    assert {de: 1}[get_language("deu")] == 1
    assert isinstance(de, Language)


def test_all_upstream_pud_languages_registered():
    pud = {get_language(code).name for code in PUD_TREEBANKS}
    assert pud == PUD_UPSTREAM
    assert len(pud) >= 20
    assert {lang.name for lang in languages_with("pud")} == pud
    assert PUD_TREEBANKS["de"] == "UD_German-PUD"
    assert pud_file("de") == ("UD_German-PUD", "de_pud-ud-test.conllu")
    assert pud_file(get_language("ja")) == ("UD_Japanese-PUD", "ja_pud-ud-test.conllu")
    assert "af" not in PUD_TREEBANKS and pud_file("afr") is None


def test_larger_ud_treebanks():
    assert set(UD_TREEBANKS) == {lang.code for lang in languages_with("ud")} == {"en", "de", "zh", "fr"}
    assert ud_files("en") == {
        "dev": ("UD_English-EWT", "en_ewt-ud-dev.conllu"),
        "test": ("UD_English-EWT", "en_ewt-ud-test.conllu"),
    }
    assert ud_files("cmn")["test"] == ("UD_Chinese-GSD", "zh_gsd-ud-test.conllu")
    assert ud_files("fi") == {}


def test_the_corpora_name_registered_languages_and_language_is_metadata_only():
    """Corpus folder and file names are keyed by registered languages; a Language itself
    carries no corpus names."""
    assert all(get_language(code).code == code for code in [*PUD_TREEBANKS, *UD_TREEBANKS])
    assert all(get_language(code).iso3 == code for code in TATOEBA_CODES)
    assert len(TATOEBA_CODES) == 112
    fields = {f.name for f in dataclasses.fields(Language)}
    assert fields == {"iso1", "iso3", "name", "family", "genus", "script", "aliases"}


def test_every_mirrored_tatoeba_language_resolves(mirror):
    codes = sorted({
        m[1] for path in (mirror / "tatoeba" / "v1").iterdir()
        if (m := re.fullmatch(r"tatoeba\.([a-z]{3})-eng\.[a-z]{3}", path.name))
    })
    assert len(codes) == 108
    for code in codes:
        lang = get_language(code)
        assert tatoeba_code(lang) == code
        assert (mirror / "tatoeba" / "v1" / f"tatoeba.{code}-eng.{code}").is_file()
    registered = {tatoeba_code(lang) for lang in languages_with("tatoeba")}
    assert registered == TATOEBA_CODES and tatoeba_code("en") is None
    assert set(codes) <= registered
    assert len(registered) >= 108


def test_mirrored_pud_folders_are_registered(mirror):
    folders = {path.name for path in (mirror / "ud").iterdir() if path.name.endswith("-PUD")}
    assert folders <= set(PUD_TREEBANKS.values())


def test_parse_langs():
    assert [lang.iso3 for lang in parse_langs("de,zh")] == ["deu", "cmn"]
    assert [lang.code for lang in parse_langs(" de, deu  zh,,fr ")] == ["de", "zh", "fr"]
    assert [lang.code for lang in parse_langs(["German", "cmn"])] == ["de", "zh"]
    with pytest.raises(ProbeError, match="no languages given"):
        parse_langs(" , ")
    with pytest.raises(ProbeError, match="unknown language 'qq'"):
        parse_langs("de,qq")


def test_languages_with():
    assert {lang.code for lang in languages_with("ud")} == {"en", "de", "zh", "fr"}
    assert {lang.name for lang in languages_with("pud")} == PUD_UPSTREAM
    tatoeba = languages_with("tatoeba")
    assert get_language("cmn") in tatoeba and get_language("en") not in tatoeba
    with pytest.raises(ProbeError, match="unknown corpus 'nope'; choose from pud, ud, tatoeba"):
        languages_with("nope")
