"""The corpus registry and the real corpora, read through the offline mirror."""
from __future__ import annotations

import pytest

from probe.data import Corpus, CorpusDef, get_corpus, list_corpora, load_corpus
from probe.data.pins import SHA256
from probe.data.tatoeba import read_lines, read_pair
from probe.data.ud import pud_file
from probe.errors import DataFormatError, DownloadError, ProbeError


def count_words(path) -> int:
    """Token lines whose ID is an integer (no ranges, no empty nodes), counted independently."""
    count = 0
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line[:1].isdigit():
                ident = line.split("\t", 1)[0]
                if "-" not in ident and "." not in ident:
                    count += 1
    return count


@pytest.fixture(scope="module")
def pud(mirror):
    return {lang: load_corpus("pud", lang, "test", progress=False) for lang in ("en", "de", "zh")}


def test_registry():
    assert {"pud", "tatoeba", "ud"} <= set(list_corpora())
    assert {"xtreme-pos", "xtreme-ner", "xtreme-xnli", "xtreme-pawsx"} <= set(list_corpora())
    for name in list_corpora():
        corpus = get_corpus(name)
        assert isinstance(corpus, CorpusDef)
        assert corpus.name == name and corpus.description and corpus.splits
        assert corpus.languages()
    assert get_corpus("PUD") is get_corpus("pud")
    assert get_corpus("ud").splits == ("dev", "test", "dev+test")
    assert get_corpus("tatoeba").splits == ("xx", "eng")
    with pytest.raises(ProbeError, match="unknown corpus 'treebank'; choose from pud, ud, tatoeba"):
        get_corpus("treebank")


def test_pud_real_files(pud, mirror):
    for lang, corpus in pud.items():
        assert isinstance(corpus, Corpus)
        assert (corpus.name, corpus.lang, corpus.split) == ("pud", lang, "test")
        assert len(corpus.sentences) == 1000
        (info,) = corpus.files
        folder, name = pud_file(lang)
        assert info["relpath"] == f"ud/{folder}/{name}"
        assert info["sha256"] == SHA256[info["relpath"]]
        assert info["commit"] in info["url"]
        assert corpus.n_words == count_words(mirror / info["relpath"])
        for sent in corpus.sentences:
            n = len(sent.words)
            assert n and sent.text
            assert len(sent.upos) == len(sent.head) == len(sent.deprel) == len(sent.space_after) == n
            assert all(0 <= h <= n for h in sent.head) and sent.head.count(0) >= 1
    ids = [[s.sent_id for s in corpus.sentences] for corpus in pud.values()]
    assert ids[0] == ids[1] == ids[2]
    assert ids[0][0] == "n01001011"


def test_corpus_sha256_is_stable(pud):
    en = pud["en"]
    again = Corpus(en.name, en.lang, en.split, [], [dict(f) for f in en.files])
    assert en.sha256 == again.sha256
    assert len({c.sha256 for c in pud.values()}) == 3


def test_pud_unknown_language_lists_choices():
    with pytest.raises(ProbeError) as info:
        load_corpus("pud", "afr", "test")
    message = str(info.value)
    assert "no Afrikaans (af)" in message
    assert "ar, cs, de, en, es, fi, fr, gl, hi, id, is, it, ja, ko, pl, pt, ru, sv, th, tr, zh" in message


def test_bad_split_lists_splits():
    with pytest.raises(ProbeError, match="no split 'train'; splits: dev, test, dev\\+test"):
        load_corpus("ud", "en", "train")


def test_pud_not_in_local_mirror_is_a_download_error(mirror, tmp_path, monkeypatch):
    monkeypatch.setenv("PROBE_HOME", str(tmp_path))
    monkeypatch.setenv("PROBE_DATA_MIRROR", str(mirror))
    with pytest.raises(DownloadError, match="ja_pud-ud-test.conllu"):
        load_corpus("pud", "ja", "test")


def test_ud_dev_plus_test(mirror):
    dev = load_corpus("ud", "zh", "dev", progress=False)
    test = load_corpus("ud", "zh", "test", progress=False)
    both = load_corpus("ud", "zh", "dev+test", progress=False)
    assert len(dev) and len(test)
    assert [s.sent_id for s in both] == [s.sent_id for s in dev] + [s.sent_id for s in test]
    assert both.n_words == dev.n_words + test.n_words == sum(
        count_words(mirror / f["relpath"]) for f in both.files
    )
    assert [f["relpath"] for f in both.files] == [
        "ud/UD_Chinese-GSD/zh_gsd-ud-dev.conllu", "ud/UD_Chinese-GSD/zh_gsd-ud-test.conllu",
    ]
    assert len({dev.sha256, test.sha256, both.sha256}) == 3
    with pytest.raises(ProbeError, match="corpus 'ud' has no Japanese"):
        load_corpus("ud", "ja", "dev")


def test_tatoeba(mirror):
    xx = load_corpus("tatoeba", "de", "xx", progress=False)
    eng = load_corpus("tatoeba", "deu", "eng", progress=False)
    assert (xx.lang, xx.split, eng.split) == ("de", "xx", "eng")
    lines = (mirror / "tatoeba/v1/tatoeba.deu-eng.deu").read_text(encoding="utf-8").splitlines()
    assert len(xx) == len(eng) == len(lines) == 1000
    assert [s.sent_id for s in xx] == [s.sent_id for s in eng] == [str(i) for i in range(1, 1001)]
    first = xx.sentences[0]
    assert first.text == lines[0].strip() and first.words == lines[0].split()
    assert first.upos is None and first.head is None and first.deprel is None
    assert len(first.space_after) == len(first.words)
    assert xx.n_words == sum(len(line.split()) for line in lines)
    assert [f["relpath"] for f in xx.files] == ["tatoeba/v1/tatoeba.deu-eng.deu", "tatoeba/v1/tatoeba.deu-eng.eng"]
    assert xx.sha256 != eng.sha256
    # the language's own code names its side too
    assert [s.text for s in load_corpus("tatoeba", "de", "deu", progress=False)] == [s.text for s in xx]
    assert load_corpus("tatoeba", "cmn", "xx", progress=False).lang == "zh"
    assert load_corpus("tatoeba", "ber", "xx", progress=False).lang == "ber"
    with pytest.raises(ProbeError, match="corpus 'tatoeba' has no English"):
        load_corpus("tatoeba", "en", "xx")


def test_tatoeba_reader_errors(tmp_path):
    good = tmp_path / "good.txt"
    good.write_text("a b\nc d\n", encoding="utf-8")
    assert read_lines(good) == ["a b", "c d"]

    bad_utf8 = tmp_path / "bad.xxx"
    bad_utf8.write_bytes(b"ok\nfine\ncaf\xe9\n")
    with pytest.raises(DataFormatError, match=r"bad\.xxx: line 3: invalid UTF-8"):
        read_lines(bad_utf8)

    empty_line = tmp_path / "gap.xxx"
    empty_line.write_text("one\n\nthree\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"gap\.xxx: line 2: empty line"):
        read_lines(empty_line)

    empty = tmp_path / "empty.xxx"
    empty.write_bytes(b"")
    with pytest.raises(DataFormatError, match=r"empty\.xxx: line 1: file is empty"):
        read_lines(empty)

    longer = tmp_path / "long.eng"
    longer.write_text("a\nb\nc\n", encoding="utf-8")
    with pytest.raises(DataFormatError) as info:
        read_pair(good, longer)
    assert str(info.value).startswith(f"{longer}: line 3: no translation")
    assert info.value.line == 3
