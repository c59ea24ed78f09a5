"""The CoNLL-U reader: hand-written fixtures, a long sentence, and malformed input."""
from __future__ import annotations

from pathlib import Path

import conllu
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from probe.data import Sentence
from probe.data.ud import parse_conllu, read_conllu
from probe.errors import DataFormatError

FIXTURES = Path(__file__).parent / "fixtures"
SAMPLE = FIXTURES / "sample.conllu"


def token(i, form, head, deprel="dep", upos="X", misc="_", ident=None):
    return "\t".join([str(ident or i), form, form.lower(), upos, "_", "_", str(head), deprel, "_", misc])


def doc(*sentences: list[str]) -> str:
    return "\n\n".join("\n".join(lines) for lines in sentences) + "\n\n"


VALID = [
    ["# sent_id = a", "# text = one two", token(1, "one", 2), token(2, "two", 0, "root")],
    ["# sent_id = b", token(1, "three", 0, "root")],
]


def test_sample_fixture():
    sents = read_conllu(SAMPLE)
    assert [s.sent_id for s in sents] == ["fx-1", "fx-2", "fx-3", "sample.conllu:4"]
    assert all(isinstance(s, Sentence) for s in sents)

    fr = sents[0]
    assert fr.text == "Je parle du chat."
    assert fr.words == ["Je", "parle", "de", "le", "chat", "."]  # the range line "du" is not a word
    assert fr.upos == ["PRON", "VERB", "ADP", "DET", "NOUN", "PUNCT"]
    assert fr.head == [2, 0, 5, 5, 2, 2]
    assert fr.deprel == ["nsubj", "root", "case", "det", "obl", "punct"]
    assert fr.space_after == [True, True, False, True, False, True]

    es = sents[1]
    assert es.words == ["Da", "me", "lo", ",", "ya", "."]
    # inside "Dámelo" no spaces; its SpaceAfter=No (on the range line) applies to "lo"
    assert es.space_after == [False, False, False, True, False, True]

    en = sents[2]
    assert en.words == ["Sue", "likes", "coffee", "and", "Bill", "tea", "."]  # empty node 5.1 skipped
    assert en.head == [2, 0, 2, 5, 2, 5, 2]
    assert len(en) == 7

    synth = sents[3]
    assert synth.text == "Hello world!"  # no "# text": rebuilt from words and SpaceAfter
    assert synth.words == ["Hello", "world", "!"]


def test_sample_word_count_matches_token_lines():
    lines = SAMPLE.read_text(encoding="utf-8").splitlines()
    words = [ln for ln in lines if ln and not ln.startswith("#") and ln.split("\t")[0].isdigit()]
    assert sum(len(s.words) for s in read_conllu(SAMPLE)) == len(words) == 22


def test_long_sentence_generated():
    n = 300
    lines = ["# sent_id = long", *(token(i, f"w{i}", 0 if i == 1 else i - 1) for i in range(1, n + 1))]
    (sent,) = parse_conllu(doc(lines), "long.conllu")
    assert len(sent.words) == n
    assert sent.head == [0] + list(range(1, n))
    assert sent.text == " ".join(f"w{i}" for i in range(1, n + 1))
    assert sent.space_after == [True] * n


def test_text_and_bytes_input_agree():
    text = doc(*VALID)
    assert parse_conllu(text, "x.conllu") == parse_conllu(text.encode("utf-8"), "x.conllu")
    assert parse_conllu(text.replace("\n", "\r\n").encode(), "x.conllu") == parse_conllu(text, "x.conllu")
    assert parse_conllu(b"\xef\xbb\xbf" + text.encode(), "x.conllu") == parse_conllu(text, "x.conllu")


def test_unannotated_columns_give_none():
    lines = ["\t".join(["1", "hi", "_", "_", "_", "_", "_", "_", "_", "_"]),
             "\t".join(["2", "there", "_", "_", "_", "_", "_", "_", "_", "_"])]
    (sent,) = parse_conllu(doc(lines), "raw.conllu")
    assert sent.words == ["hi", "there"]
    assert sent.upos is None and sent.head is None and sent.deprel is None
    assert sent.sent_id == "raw.conllu:1"


BAD_CASES = {
    # name: (document text, line of the error, words in the message)
    "nine columns": (doc(VALID[0], ["1\tthree\t_\tX\t_\t_\t0\troot\t_"]), 6, "9 tab-separated columns"),
    "eleven columns": (doc([token(1, "a", 0) + "\t_"]), 1, "11 tab-separated columns"),
    "one column": (doc(["just some text"]), 1, "1 tab-separated columns"),
    "garbage id": (doc([token(1, "a", 0, ident="x")]), 1, "invalid ID 'x'"),
    "zero id": (doc([token(1, "a", 0, ident="0")]), 1, "invalid ID '0'"),
    "id out of sequence": (doc([token(1, "a", 0), token(3, "b", 1)]), 2, "out of sequence"),
    "head too large": (doc(VALID[0][:2] + [token(1, "one", 2), token(2, "two", 7)]), 4, "HEAD 7 out of range"),
    "negative head": (doc([token(1, "a", -1)]), 1, "HEAD -1 out of range"),
    "non-integer head": (doc([token(1, "a", "x")]), 1, "invalid HEAD 'x'"),
    "float head": (doc([token(1, "a", "1.5")]), 1, "invalid HEAD '1.5'"),
    "self loop": (doc([token(1, "a", 0), token(2, "b", 2)]), 2, "its own HEAD"),
    "cycle": (doc([token(1, "a", 2), token(2, "b", 1)]), 1, "cycle"),
    "missing head": (doc([token(1, "a", 0), token(2, "b", "_")]), 2, "HEAD is '_'"),
    "empty column": (doc(["1\ta\t\tX\t_\t_\t0\troot\t_\t_"]), 1, "column 3 (LEMMA) is empty"),
    "backwards range": (doc(["2-1\tab\t_\t_\t_\t_\t_\t_\t_\t_", token(1, "a", 0)]), 1, "at least two words"),
    "range past end": (doc(["1-3\tab\t_\t_\t_\t_\t_\t_\t_\t_", token(1, "a", 0), token(2, "b", 1)]), 1,
                       "ends after the last word"),
    "misplaced range": (doc([token(1, "a", 0), "1-2\tab\t_\t_\t_\t_\t_\t_\t_\t_", token(2, "b", 1)]), 2,
                        "must start at the next word ID"),
    "misplaced empty node": (doc([token(1, "a", 0), "3.1\tx\t_\t_\t_\t_\t_\t_\t_\t_", token(2, "b", 1)]), 2,
                             "must follow word 3"),
    "only comments": (doc(["# sent_id = a", "# text = nothing"]), 1, "no words"),
    "trailing space": (doc([token(1, "a", 0) + " "]), 1, "whitespace"),
    "double space in form": (doc([token(1, "a  b", 0)]), 1, "two consecutive spaces"),
    "duplicate sent_id": (doc(VALID[0], ["# sent_id = a", token(1, "x", 0)]), 6, "duplicate sent_id 'a'"),
    "empty file": ("", 1, "no sentences"),
    "blank file": ("\n\n  \n", 4, "no sentences"),
}


@pytest.mark.parametrize("name", sorted(BAD_CASES))
def test_malformed_input_names_file_and_line(name, tmp_path):
    text, line, words = BAD_CASES[name]
    path = tmp_path / "bad.conllu"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DataFormatError) as info:
        read_conllu(path)
    err = info.value
    assert str(err).startswith(f"{path}: line {line}: "), str(err)
    assert words in str(err)
    assert err.line == line and err.path == path


def test_invalid_utf8_names_line(tmp_path):
    path = tmp_path / "latin1.conllu"
    data = doc(*VALID).encode("utf-8").replace(b"three", "thr\u00e9e".encode("latin-1"))
    path.write_bytes(data)
    with pytest.raises(DataFormatError, match=r"latin1\.conllu: line 7: invalid UTF-8"):
        read_conllu(path)


def test_missing_file_is_a_data_format_error(tmp_path):
    with pytest.raises(DataFormatError, match="nope.conllu"):
        read_conllu(tmp_path / "nope.conllu")


def test_conllu_library_errors_are_converted(monkeypatch):
    def boom(*args, **kwargs):
        raise conllu.exceptions.ParseException("library says no")

    monkeypatch.setattr(conllu, "parse_token_and_metadata", boom)
    with pytest.raises(DataFormatError, match=r"x\.conllu: line 1: cannot parse sentence: library says no"):
        parse_conllu(doc(*VALID), "x.conllu")
    monkeypatch.setattr(conllu.parser, "parse_line", boom)
    with pytest.raises(DataFormatError, match=r"x\.conllu: line 3: cannot parse token line: library says no"):
        parse_conllu(doc(*VALID), "x.conllu")


# ---------------------------------------------------------------------------
# property: malformed lines anywhere give sentences or a DataFormatError

VALID_LINES = SAMPLE.read_text(encoding="utf-8").split("\n")
TEMPLATE = ["5", "form", "lemma", "NOUN", "_", "_", "2", "obj", "_", "_"]

texts = st.text(max_size=12)
bad_lines = st.one_of(
    # random column counts
    st.lists(texts, min_size=1, max_size=14).map("\t".join),
    # garbage ids
    texts.map(lambda ident: "\t".join([ident, *TEMPLATE[1:]])),
    # out-of-range or garbage heads
    st.one_of(st.integers(-5, 40).map(str), texts).map(lambda h: "\t".join([*TEMPLATE[:6], h, *TEMPLATE[7:]])),
    # a random value in a random column of a token line
    st.tuples(st.integers(0, 9), texts).map(lambda p: "\t".join(TEMPLATE[: p[0]] + [p[1]] + TEMPLATE[p[0] + 1:])),
    # random unicode, including newlines, tabs and '#'
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, len(VALID_LINES)), bad_lines), min_size=1, max_size=3))
def test_property_malformed_lines_raise_only_data_format_error(insertions):
    lines = list(VALID_LINES)
    for position, line in insertions:
        lines.insert(min(position, len(lines)), line)
    try:
        sentences = parse_conllu("\n".join(lines), "fuzz.conllu")
    except DataFormatError as err:
        assert "fuzz.conllu" in str(err)
        assert "line" in str(err)
    else:
        assert sentences and all(len(s.words) == len(s.space_after) for s in sentences)
        for s in sentences:
            assert s.head is None or all(0 <= h <= len(s.words) for h in s.head)


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 2000), st.binary(min_size=1, max_size=20))
def test_property_random_bytes_raise_only_data_format_error(offset, junk):
    data = SAMPLE.read_bytes()
    offset = min(offset, len(data))
    try:
        parse_conllu(data[:offset] + junk + data[offset:], "bytes.conllu")
    except DataFormatError as err:
        assert "bytes.conllu" in str(err) and "line" in str(err)
