"""input="text": pieces of the sentence's own text aligned to words by character offsets."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

import probe.extraction as ex
from probe.alignment import FLAG_REASONS, TextTokenization, align_words, piece_starts
from probe.cache import FORMAT_VERSION, CacheKey
from probe.data.spans import locate_spans
from probe.data.ud import parse_conllu
from probe.errors import ProbeError
from tiny import MemCorpus, Sent, random_corpus, tiny_bert, tiny_spec, unigram_tokenizer

NO_OWN = 1 + FLAG_REASONS.index("no_own_piece")
MWT = 1 + FLAG_REASONS.index("multiword_token")


@pytest.fixture()
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("PROBE_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_chinese_word_inside_a_neighbours_piece_takes_it_and_is_flagged():
    # XLM-R pieces of 我们去了学校。: ▁我们 | 去了 | 学校 | 。 ; the words 去 and 了 share 去了.
    text = "我们去了学校。"
    offsets = [(0, 2), (2, 4), (4, 6), (6, 7)]
    pieces, reason = align_words(text, locate_spans(text, ["我们", "去", "了", "学校", "。"]), offsets)
    assert pieces == [[0], [1], [1], [2], [3]]
    assert reason.tolist() == [0, 0, NO_OWN, 0, 0]


def test_piece_spanning_two_words():
    # one piece over both words: the second word has no piece of its own
    pieces, reason = align_words("abcd", [(0, 2), (2, 4)], [(0, 4)])
    assert pieces == [[0], [0]] and reason.tolist() == [0, NO_OWN]
    # a piece that crosses the boundary but a later piece starts inside word 2: that one is its own
    pieces, reason = align_words("abcd", [(0, 2), (2, 4)], [(0, 3), (3, 4)])
    assert pieces == [[0], [1]] and reason.tolist() == [0, 0]


def test_german_multiword_token_zum_shares_the_tokens_pieces():
    conllu = ("# sent_id = 1\n# text = Ich gehe zum Markt.\n"
              "1\tIch\tich\tPRON\t_\t_\t2\tnsubj\t_\t_\n"
              "2\tgehe\tgehen\tVERB\t_\t_\t0\troot\t_\t_\n"
              "3-4\tzum\t_\t_\t_\t_\t_\t_\t_\t_\n"
              "3\tzu\tzu\tADP\t_\t_\t5\tcase\t_\t_\n"
              "4\tdem\tder\tDET\t_\t_\t5\tdet\t_\t_\n"
              "5\tMarkt\tMarkt\tNOUN\t_\t_\t2\tobl\t_\tSpaceAfter=No\n"
              "6\t.\t.\tPUNCT\t_\t_\t2\tpunct\t_\t_\n\n")
    s = parse_conllu(conllu)[0]
    assert s.words == ["Ich", "gehe", "zu", "dem", "Markt", "."]
    assert s.spans == [(0, 3), (4, 8), (9, 12), (9, 12), (13, 18), (18, 19)]
    # SentencePiece offsets include the space before "▁word"
    offsets = [(0, 3), (3, 8), (8, 12), (12, 18), (18, 19)]
    pieces, reason = align_words(s.text, s.spans, offsets)
    assert pieces == [[0], [1], [2], [2], [3], [4]]
    assert reason.tolist() == [0, 0, MWT, MWT, 0, 0]


def test_space_after_no_rebuilds_the_text_and_spans():
    conllu = ("# sent_id = 2\n"
              "1\tab\tab\tNOUN\t_\t_\t0\troot\t_\tSpaceAfter=No\n"
              "2\t,\t,\tPUNCT\t_\t_\t1\tpunct\t_\t_\n"
              "3\tcd\tcd\tNOUN\t_\t_\t1\tdep\t_\tSpaceAfter=No\n"
              "4\t.\t.\tPUNCT\t_\t_\t1\tpunct\t_\t_\n\n")
    s = parse_conllu(conllu)[0]
    assert s.text == "ab, cd."
    assert s.spans == [(0, 2), (2, 3), (4, 6), (6, 7)]
    tok = unigram_tokenizer()
    t = TextTokenization(tok, [s], max_length=64, pooling="first")
    unit = t.units[0]
    assert unit.word.tolist() == [0, 1, 2, 3]
    names = tok.convert_ids_to_tokens(unit.input_ids)
    # the text reaches the model without a "▁" before the glued words
    assert names[1:-1].count("\u2581a") == 1 and "\u2581b" not in names
    assert [names[p] for p in unit.pos] == ["\u2581a", "<unk>", "\u2581c", "<unk>"]


def test_zero_width_character_is_skipped_as_a_piece_start():
    text = "ab\u200bcd"
    # a tokenizer piece over "\u200bc": it starts at "c", so it is the word "cd"'s own piece
    assert piece_starts(text, [(0, 2), (2, 4), (4, 5), (2, 2)]).tolist() == [0, 3, 4, -1]
    pieces, reason = align_words(text, [(0, 2), (2, 3), (3, 5)], [(0, 2), (2, 4), (4, 5)])
    assert pieces == [[0], [1], [1, 2]]
    assert reason.tolist() == [0, NO_OWN, 0]
    # end to end with the toy tokenizer: every word gets a vector, the zero-width one flagged
    t = TextTokenization(unigram_tokenizer(), [Sent("z", ["ab", "\u200b", "cd"], text=text)], 64, "first")
    assert sorted(t.units[0].word.tolist()) == [0, 1, 2]
    assert t.flagged.tolist() == [False, True, False]


def test_text_longer_than_the_model_limit_is_windowed_on_piece_offsets(home):
    spec = tiny_spec(max_positions=24)
    corpus = random_corpus(n=6, seed=3, long_every=3, long_len=40)
    tok = unigram_tokenizer()
    t = TextTokenization(tok, corpus.sentences, 24, "first")
    assert t.n_windowed == 2
    for u in t.units:
        assert len(u.input_ids) <= 24
    words = np.concatenate([u.word for u in t.units])
    assert sorted(words.tolist()) == list(range(corpus.n_words))  # each word once, in one window
    entry = ex.extract_corpus(spec, corpus, input="text", progress=False)
    assert entry.input == "text" and entry.meta["extractor"]["windowed_sentences"] == 2
    assert np.isfinite(np.asarray(entry.layer(2), dtype=np.float32)).all()


def test_text_mode_equals_words_mode_when_the_text_is_the_words_joined_by_spaces(home):
    # the toy tokenizer puts "▁" before each space-separated word either way, so the model
    # reads the same pieces and both modes must give the same numbers
    spec = tiny_spec(max_positions=64)
    corpus = random_corpus(n=20, seed=4)
    words = ex.extract_corpus(spec, corpus, input="words", progress=False)
    text = ex.extract_corpus(spec, corpus, input="text", progress=False)
    assert words.path != text.path and ".text." in text.path.name
    assert not text.flagged.any() and text.meta["input"]["flagged_words"] == 0
    for layer in range(3):
        np.testing.assert_array_equal(words.layer(layer), text.layer(layer))
        np.testing.assert_array_equal(words.sentence_vectors(layer), text.sentence_vectors(layer))


def test_flagged_words_are_stored_and_counted(home):
    spec = tiny_spec(max_positions=64)
    mwt = Sent("a", ["ab", "c", "d", "ab"], text="ab cd ab")
    mwt.spans = [(0, 2), (3, 5), (3, 5), (6, 8)]  # "cd" is a multiword token of c + d
    entry = ex.extract_corpus(spec, MemCorpus([mwt, Sent("b", ["ab", "cd"], text="ab cd")]),
                              input="text", progress=False)
    assert entry.flagged.dtype == bool
    assert entry.flagged.tolist() == [False, True, True, False, False, False]
    assert entry.meta["input"]["mode"] == "text"
    assert entry.meta["input"]["flagged_words"] == 2 and entry.meta["input"]["multiword_token"] == 2
    assert "flagged.npy" in entry.meta["files"]
    # the two words of the token share its (first) piece, hence its vector
    np.testing.assert_array_equal(entry.layer(2)[1], entry.layer(2)[2])


def test_words_mode_keeps_the_cache_key_digest_of_before_the_input_field():
    key = CacheKey(model="m", model_fingerprint="f", corpus="pud", lang="de", split="test",
                   corpus_sha256="c", pooling="first", extractor="v1")
    # the digest formula as it was before CacheKey.input existed
    old = {"model": "m", "model_fingerprint": "f", "corpus": "pud", "lang": "de", "split": "test",
           "corpus_sha256": "c", "pooling": "first", "extractor": "v1", "format": FORMAT_VERSION}
    old_digest = hashlib.sha256(json.dumps(old, sort_keys=True).encode()).hexdigest()
    assert key.digest == old_digest
    assert key.path.name == f"pud.de.test.first.{old_digest[:16]}"
    text = CacheKey(**{**key.__dict__, "input": "text"})
    assert text.digest != old_digest and text.path.name.startswith("pud.de.test.first.text.")


def test_words_mode_entry_has_no_flag_file(home):
    entry = ex.extract_corpus(tiny_spec(max_positions=64), random_corpus(n=5, seed=5), progress=False)
    assert entry.input == "words" and "flagged.npy" not in entry.meta["files"]
    assert entry.meta["key"] == ex.cache_key(tiny_spec(max_positions=64), random_corpus(n=5, seed=5),
                                             "first").digest
    assert not entry.flagged.any()


def test_bad_input_mode_and_pairs_are_refused(home):
    with pytest.raises(ProbeError, match="unknown input mode"):
        ex.extract_corpus(tiny_spec(), random_corpus(n=2), input="chars", progress=False)
    pair = MemCorpus([Sent("p", ["ab", "cd"], text="ab cd", n_first=1)])
    with pytest.raises(ProbeError, match="sentence-pair"):
        ex.extract_corpus(tiny_spec(max_positions=64), pair, input="text", progress=False)


def test_real_corpus_readers_give_spans_that_match_the_text(mirror):
    from probe.data import load_corpus

    for name, lang, split in (("pud", "de", "test"), ("pud", "zh", "test"), ("tatoeba", "de", "xx")):
        c = load_corpus(name, lang, split, progress=False)
        n_mwt = 0
        for s in c.sentences[:300]:
            assert len(s.spans) == len(s.words)
            for i, (w, span) in enumerate(zip(s.words, s.spans)):
                assert span is not None
                shared = (i > 0 and s.spans[i - 1] == span) or (i + 1 < len(s) and s.spans[i + 1] == span)
                n_mwt += shared
                if not shared:
                    assert s.text[span[0]:span[1]] == w
        assert (n_mwt > 0) == (lang == "de" and name == "pud")  # German PUD has zum/im/am...


def test_layers_table_header_states_the_input_mode_and_sentence_vectors():
    from probe.layerwise import LayerResult

    res = LayerResult({"config": {"input": "text", "sentence": "native",
                                  "flagged_words": {"train": 1674, "en": 375, "zh": 1962}}})
    line = res.mode_line
    assert line.startswith("input: text (the sentence text); sentence vectors: native")
    assert "zh 1962" in line and "train 1674" in line
    old = LayerResult({"config": {}})  # a report from before --input existed
    assert old.mode_line == "input: words (pre-split words); sentence vectors: mean-words"
