"""Extraction and cache on a tiny random encoder: pooling, windows, resume, integrity."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import probe.extraction as ex
from probe.cache import CacheEntry, iter_entries
from probe.errors import ProbeError
from tiny import MemCorpus, Sent, random_corpus, tiny_bert, tiny_spec, unigram_tokenizer


@pytest.fixture()
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("PROBE_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def _brute_force_hidden(model, tok, words):
    """All hidden states of one sentence run alone: [L+1, T, H], plus its piece word ids."""
    enc = tok([words], is_split_into_words=True)
    with torch.no_grad():
        out = model(input_ids=torch.tensor(enc["input_ids"]), output_hidden_states=True)
    return torch.stack(out.hidden_states)[:, 0].numpy(), enc.word_ids(0), enc["input_ids"][0]


def test_bare_metaspace_piece_is_never_the_first_piece():
    tok = unigram_tokenizer()
    t = ex.Tokenization(tok, [["\u4e2d", "ab", "\u6587\u4e2d"]], max_length=64, pooling="first")
    unit = t.units[0]
    pieces = tok.convert_ids_to_tokens(unit.input_ids)
    assert pieces[:3] == ["<s>", "\u2581", "\u4e2d"]  # the Han word is "▁" + "中"
    chosen = [pieces[p] for p in unit.pos]
    assert "\u2581" not in chosen
    assert chosen == ["\u4e2d", "\u2581a", "\u6587"]
    # mean pooling drops the bare piece too; last pooling takes the last piece
    t_mean = ex.Tokenization(tok, [["\u4e2d"]], max_length=64, pooling="mean")
    assert [tok.convert_ids_to_tokens(t_mean.units[0].input_ids)[p] for p in t_mean.units[0].pos] == ["\u4e2d"]


def test_word_made_only_of_a_bare_piece_still_gets_a_vector():
    tok = unigram_tokenizer()
    # "zz" is out of vocabulary: the word becomes "▁" + <unk> pieces
    t = ex.Tokenization(tok, [["zz", "a"]], max_length=64, pooling="first")
    assert sorted(t.units[0].word.tolist()) == [0, 1]


def test_extraction_matches_per_sentence_forward(home):
    spec = tiny_spec(max_positions=64)
    corpus = random_corpus(n=30, seed=1)
    entry = ex.extract_corpus(spec, corpus, pooling="first", batch_tokens=64, progress=False)
    model, tok = tiny_bert(64), unigram_tokenizer()
    assert entry.n_layers == 3 and entry.hidden == 16
    assert entry.n_words == corpus.n_words == entry.layer(2).shape[0]
    assert entry.layer(0).dtype == np.float16
    offs = entry.offsets
    for s, sent in enumerate(corpus.sentences):
        hs, wids, _ = _brute_force_hidden(model, tok, sent.words)
        first_pos = [wids.index(w) for w in range(len(sent.words))]
        for layer in range(3):
            got = np.asarray(entry.layer(layer)[offs[s]:offs[s + 1]], dtype=np.float32)
            np.testing.assert_allclose(got, hs[layer][first_pos], atol=2e-2, rtol=1e-2)
            np.testing.assert_allclose(entry.sentence_vectors(layer, "first")[s], hs[layer][0],
                                       atol=2e-2, rtol=1e-2)
            np.testing.assert_allclose(entry.sentence_vectors(layer, "mean")[s], got.mean(0),
                                       atol=2e-2, rtol=1e-2)
    assert entry.vocab("upos") == ["ADJ", "NOUN", "VERB"]
    # the task vocabulary reads the same column: pos is stored under UD's name upos
    assert entry.vocab("pos") == entry.vocab("upos") and entry.has_labels("pos")
    np.testing.assert_array_equal(entry.labels("pos"), entry.labels("upos"))
    assert entry.labels("head")[0] == 0


def test_poolings_differ_and_mean_is_the_piece_average(home):
    spec = tiny_spec(max_positions=64)
    corpus = MemCorpus([Sent("s0", ["abc", "a", "jih"])])
    first = ex.extract_corpus(spec, corpus, pooling="first", progress=False)
    mean = ex.extract_corpus(spec, corpus, pooling="mean", progress=False)
    last = ex.extract_corpus(spec, corpus, pooling="last", progress=False)
    assert len({first.path, mean.path, last.path}) == 3
    hs, wids, _ = _brute_force_hidden(tiny_bert(64), unigram_tokenizer(), ["abc", "a", "jih"])
    pos0 = [i for i, w in enumerate(wids) if w == 0]
    assert len(pos0) > 1
    np.testing.assert_allclose(mean.layer(2)[0], hs[2][pos0].mean(0), atol=2e-2)
    np.testing.assert_allclose(last.layer(2)[0], hs[2][pos0[-1]], atol=2e-2)
    np.testing.assert_allclose(first.layer(2)[0], hs[2][pos0[0]], atol=2e-2)


def test_long_sentences_use_overlapping_windows_not_truncation(home):
    spec = tiny_spec(max_positions=24)  # 22 content pieces per window
    corpus = random_corpus(n=9, seed=2, long_every=4, long_len=60)
    entry = ex.extract_corpus(spec, corpus, pooling="first", batch_tokens=96, progress=False)
    assert entry.n_words == corpus.n_words
    X = np.asarray(entry.layer(2), dtype=np.float32)
    assert np.isfinite(X).all() and (np.abs(X).sum(1) > 0).all()
    tok = unigram_tokenizer()
    t = ex.Tokenization(tok, [s.words for s in corpus.sentences], 24, "first")
    owned = np.concatenate([u.word for u in t.units])
    assert sorted(owned.tolist()) == list(range(corpus.n_words))  # each word exactly once
    assert max(len(u.input_ids) for u in t.units) <= 24
    n_multi = len({u.sentence for u in t.units if u.window > 0})
    assert entry.meta["extractor"]["windowed_sentences"] == n_multi >= 3
    # The first window, run on its own, gives the vectors of the words it owns.
    long_units = [u for u in t.units if u.sentence == 0]
    assert len(long_units) >= 3
    u0 = long_units[0]
    with torch.no_grad():
        hs = tiny_bert(24)(input_ids=torch.tensor([u0.input_ids]), output_hidden_states=True).hidden_states
    np.testing.assert_allclose(X[u0.word], hs[2][0, u0.pos].numpy(), atol=2e-2, rtol=1e-2)


def test_window_assignment_gives_middle_words_context():
    starts = np.arange(0, 100)
    ends = starts + 1
    windows = ex._window_plan(starts, ends, budget=20)
    assert all(ends[b - 1] - starts[a] <= 20 for a, b in windows)
    assert windows[0][0] == 0 and windows[-1][1] == 100
    owner = ex._assign_windows(starts, ends, windows)
    for w in range(10, 90):  # away from the sentence edges, words see >= ~5 pieces either side
        a, b = windows[owner[w]]
        assert min(w - a, b - 1 - w) >= 4


def test_cache_hit_loads_no_model(home):
    spec = tiny_spec()
    corpus = random_corpus(n=5)
    first = ex.extract_corpus(spec, corpus, progress=False)

    def boom():
        raise AssertionError("model loaded on a cache hit")

    spec2 = tiny_spec()
    spec2.loader = boom
    again = ex.extract_corpus(spec2, corpus, progress=False)
    assert again.path == first.path


def test_interrupted_extraction_resumes_to_identical_arrays(home, monkeypatch, tmp_path):
    spec = tiny_spec(max_positions=64)
    corpus = random_corpus(n=60, seed=3)
    real = ex.forward_batch
    calls = {"n": 0, "fail_at": 12}

    def counting(*a, **k):
        calls["n"] += 1
        if calls["n"] == calls["fail_at"]:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(ex, "forward_batch", counting)
    with pytest.raises(KeyboardInterrupt):
        ex.extract_corpus(spec, corpus, batch_tokens=48, progress=False)
    assert not list(iter_entries())  # nothing published
    partial = list((home / "cache").glob("*/*.partial"))
    assert len(partial) == 1 and len(list(partial[0].glob("chunk_*.npz"))) >= 1

    calls.update(n=0, fail_at=-1)
    resumed = ex.extract_corpus(spec, corpus, batch_tokens=48, progress=False)
    resumed_calls = calls["n"]
    assert not list((home / "cache").glob("*/*.partial"))

    monkeypatch.setenv("PROBE_HOME", str(tmp_path / "clean"))
    calls.update(n=0)
    clean = ex.extract_corpus(spec, corpus, batch_tokens=48, progress=False)
    assert resumed_calls < calls["n"]  # finished chunks were not redone
    for layer in range(3):
        assert np.array_equal(np.asarray(resumed.layer(layer)), np.asarray(clean.layer(layer)))
    assert np.array_equal(np.asarray(resumed.sentence_vectors(2)), np.asarray(clean.sentence_vectors(2)))


def test_verify_detects_truncation(home):
    entry = ex.extract_corpus(tiny_spec(), random_corpus(n=8), progress=False)
    assert entry.verify() == []
    p = entry.path / "layer_01.npy"
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    problems = CacheEntry(entry.path).verify()
    assert problems and "layer_01.npy" in problems[0]


def test_empty_corpus_is_a_clear_error_and_writes_nothing(home):
    with pytest.raises(ProbeError, match="no sentences"):
        ex.extract_corpus(tiny_spec(), MemCorpus([]), progress=False)
    assert not (home / "cache").exists() or not any((home / "cache").rglob("meta.json"))


def test_batches_respect_the_token_budget():
    lengths = [5, 30, 7, 7, 12, 3, 30, 1]
    batches = ex.plan_batches(lengths, 32)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for b in batches:
        assert len(b) == 1 or max(lengths[i] for i in b) * len(b) <= 32


def test_sentence_pairs_are_encoded_together_with_a_segment_array(home):
    spec = tiny_spec(max_positions=64)
    a, b = ["abc", "de"], ["f", "ghij", "a"]
    corpus = MemCorpus([Sent("p0", a + b, label="yes", n_first=2),
                        Sent("p1", ["a"] + ["b", "c"], label="no", n_first=1)])
    entry = ex.extract_corpus(spec, corpus, pooling="first", progress=False)
    assert entry.segment.tolist() == [0, 0, 1, 1, 1, 0, 1, 1]
    assert entry.vocab("label") == ["no", "yes"] and entry.labels("label").tolist() == [1, 0]
    tok = unigram_tokenizer()
    enc = tok([a], [b], is_split_into_words=True)
    pieces = tok.convert_ids_to_tokens(enc["input_ids"][0])
    assert pieces[0] == "<s>" and pieces.count("</s>") == 3  # <s> A </s></s> B </s>
    with torch.no_grad():
        hs = tiny_bert(64)(input_ids=torch.tensor(enc["input_ids"]), output_hidden_states=True).hidden_states
    seq, wids = enc.sequence_ids(0), enc.word_ids(0)
    firsts = [next(i for i, (s_, w) in enumerate(zip(seq, wids)) if s_ == side and w == k)
              for side, n in ((0, len(a)), (1, len(b))) for k in range(n)]
    np.testing.assert_allclose(entry.layer(2)[:5], hs[2][0, firsts].numpy(), atol=2e-2, rtol=1e-2)
    np.testing.assert_allclose(entry.sentence_vectors(2, "first")[0], hs[2][0, 0].numpy(), atol=2e-2)


def test_over_long_pairs_lose_pieces_longest_first_and_say_so(home, capsys):
    spec = tiny_spec(max_positions=16)
    long_a = ["abc"] * 12
    corpus = MemCorpus([Sent("p0", long_a + ["a", "b"], label="x", n_first=12)])
    entry = ex.extract_corpus(spec, corpus, progress=False)
    clipped = entry.meta["extractor"]["zero_vector_words"]
    assert clipped and all(w < 12 for w in clipped)  # the longer (first) side lost words
    assert not np.asarray(entry.layer(1)[clipped], dtype=np.float32).any()
    assert np.asarray(entry.layer(1)[12:], dtype=np.float32).any()  # both B words kept
    assert "zero vectors" in capsys.readouterr().err


def test_memmap_and_in_ram_publish_write_the_same_bytes(home, monkeypatch, tmp_path):
    """Large entries are assembled through memmaps, small ones in memory (with checksums
    taken while writing): the files and recorded sha256 must not depend on the path."""
    spec, corpus = tiny_spec(max_positions=32), random_corpus(n=40, seed=5, max_len=40)
    in_ram = ex.extract_corpus(spec, corpus, pooling="mean", batch_tokens=64, progress=False)
    monkeypatch.setattr(ex, "IN_RAM_ENTRY_BYTES", 0)
    monkeypatch.setenv("PROBE_HOME", str(tmp_path / "memmap"))
    mm = ex.extract_corpus(spec, corpus, pooling="mean", batch_tokens=64, progress=False)
    assert in_ram.meta["files"] == mm.meta["files"]
    assert in_ram.meta["extractor"]["windowed_sentences"] > 0  # windows cross chunks here
    for name in in_ram.meta["files"]:
        assert (in_ram.path / name).read_bytes() == (mm.path / name).read_bytes(), name
    assert in_ram.verify() == [] and mm.verify() == []


@pytest.mark.parametrize("array", [np.arange(12, dtype=np.float16).reshape(3, 4),
                                   np.arange(10, dtype=np.int64)[::2],  # not contiguous
                                   np.zeros((2, 0, 3), dtype=np.float16),
                                   np.array([[1, -1]], dtype=np.int16)])
def test_write_npy_is_np_save_with_its_checksum(tmp_path, array):
    import hashlib
    import io

    from probe.cache import write_npy
    from probe.files import sha256_file

    ref = io.BytesIO()
    np.save(ref, array)
    sha = write_npy(tmp_path / "a.npy", array)
    assert (tmp_path / "a.npy").read_bytes() == ref.getvalue()
    assert sha == hashlib.sha256(ref.getvalue()).hexdigest() == sha256_file(tmp_path / "a.npy")
    assert np.array_equal(np.load(tmp_path / "a.npy"), array)


def test_short_extraction_writes_no_chunk_files_but_an_interrupt_saves_every_finished_chunk(home, monkeypatch):
    """Checkpointing: chunks of small entries reach the disk every CHECKPOINT_SECONDS, and
    at once when the run is interrupted, so no finished chunk is ever lost to Ctrl-C."""
    import json

    from probe.cache import EntryBuilder

    written = []
    real_write = EntryBuilder.write_chunk
    monkeypatch.setattr(EntryBuilder, "write_chunk",
                        lambda self, i, **a: (written.append(i), real_write(self, i, **a)))
    monkeypatch.delenv("PROBE_CHECKPOINT_SECONDS", raising=False)
    monkeypatch.setattr(ex, "CHECKPOINT_SECONDS", 3600.0)
    spec, corpus = tiny_spec(max_positions=64), random_corpus(n=60, seed=3)
    assert ex.extract_corpus(spec, corpus, batch_tokens=48, progress=False).verify() == []
    assert written == []  # published straight from memory

    real_fwd, calls = ex.forward_batch, {"n": 0}

    def failing(*a, **k):
        calls["n"] += 1
        if calls["n"] == 9:
            raise KeyboardInterrupt
        return real_fwd(*a, **k)

    monkeypatch.setattr(ex, "forward_batch", failing)
    with pytest.raises(KeyboardInterrupt):  # one worker: the 9th call is the 9th batch
        ex.extract_corpus(spec, corpus, pooling="mean", batch_tokens=48, progress=False, workers=1)
    partial = next((home / "cache").glob("*/*.partial"))
    sizes = json.loads((partial / "plan.json").read_text())["chunks"]  # batches per chunk
    finished = int(np.searchsorted(np.cumsum([len(c) for c in sizes]), 8, side="right"))
    assert finished >= 2 and sorted(written) == list(range(finished))
    assert sorted(int(p.stem.split("_")[1]) for p in partial.glob("chunk_*.npz")) == list(range(finished))

    written.clear()
    monkeypatch.setenv("PROBE_CHECKPOINT_SECONDS", "0")  # every chunk as soon as it is done
    monkeypatch.setattr(ex, "forward_batch", real_fwd)
    monkeypatch.setenv("PROBE_HOME", str(home / "other"))
    ex.extract_corpus(spec, corpus, batch_tokens=48, progress=False)
    assert sorted(written) == list(range(len(sizes)))

    monkeypatch.setenv("PROBE_CHECKPOINT_SECONDS", "soon")
    monkeypatch.setenv("PROBE_HOME", str(home / "third"))
    with pytest.raises(ProbeError, match="PROBE_CHECKPOINT_SECONDS"):
        ex.extract_corpus(spec, corpus, batch_tokens=48, progress=False)


def test_parallel_batches_give_the_one_worker_entry_and_stop_cleanly_on_an_error(home, monkeypatch, tmp_path):
    """CPU batches run two at a time (each with half of torch's threads): the entry must be
    the one-worker entry, results must be taken in plan order, and a failing batch must
    leave exactly the chunks before it on disk, for a resume to the same entry."""
    import json

    spec, corpus = tiny_spec(max_positions=64), random_corpus(n=60, seed=3)
    assert ex.resolve_workers("cpu", 3) == (3, max(1, torch.get_num_threads() // 3))
    assert ex.resolve_workers("cuda", 4)[0] == 1
    assert ex.resolve_workers("cpu", np.int64(1)) == (1, torch.get_num_threads())
    for bad in (0, 1.5, True, "2"):
        with pytest.raises(ProbeError, match="workers"):
            ex.resolve_workers("cpu", bad)
    threads = torch.get_num_threads()
    one = ex.extract_corpus(spec, corpus, pooling="mean", batch_tokens=48, progress=False, workers=1)
    monkeypatch.setenv("PROBE_HOME", str(tmp_path / "two"))
    two = ex.extract_corpus(spec, corpus, pooling="mean", batch_tokens=48, progress=False, workers=2)
    assert torch.get_num_threads() == threads  # restored
    assert two.meta["extractor"]["workers"] == 2 and one.meta["extractor"]["workers"] == 1
    for name in ("offsets.npy", "layer_00.npy", "layer_02.npy", "sent_mean.npy", "sent_first.npy"):
        a, b = np.load(one.path / name), np.load(two.path / name)
        # one float16 step at most (matrix products with 1 vs 2 threads may round
        # differently); vectors taken out of order would differ by O(1)
        np.testing.assert_allclose(a.astype(np.float32), b.astype(np.float32), rtol=0, atol=4e-3,
                                   err_msg=name)

    # Fail on one planned batch (by content, whatever thread runs it).
    tok = ex.Tokenization(spec.load().tokenizer, [s.words for s in corpus.sentences], 64, "mean")
    plan = ex.plan_batches([len(u.input_ids) for u in tok.units], 48)
    bad = {(tok.units[u].sentence, tok.units[u].window) for u in plan[8]}
    real_fwd = ex.forward_batch

    def failing(encoder, units, *a, **k):
        if {(u.sentence, u.window) for u in units} == bad:
            raise RuntimeError("boom in a worker")
        return real_fwd(encoder, units, *a, **k)

    monkeypatch.setattr(ex, "forward_batch", failing)
    monkeypatch.setenv("PROBE_HOME", str(tmp_path / "failing"))
    with pytest.raises(RuntimeError, match="boom in a worker"):
        ex.extract_corpus(spec, corpus, pooling="mean", batch_tokens=48, progress=False, workers=2)
    assert torch.get_num_threads() == threads
    partial = next((tmp_path / "failing" / "cache").glob("*/*.partial"))
    sizes = json.loads((partial / "plan.json").read_text())["chunks"]
    finished = int(np.searchsorted(np.cumsum([len(c) for c in sizes]), 8, side="right"))
    assert finished >= 2
    assert sorted(int(p.stem.split("_")[1]) for p in partial.glob("chunk_*.npz")) == list(range(finished))
    monkeypatch.setattr(ex, "forward_batch", real_fwd)
    resumed = ex.extract_corpus(spec, corpus, pooling="mean", batch_tokens=48, progress=False, workers=2)
    for name in two.meta["files"]:
        assert (resumed.path / name).read_bytes() == (two.path / name).read_bytes(), name


def test_sentence_means_are_the_word_order_float32_sums_of_reduceat():
    rng = np.random.default_rng(7)
    lengths = np.concatenate([rng.integers(1, 40, 300), [1, 150, 2]])
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    layer = (rng.standard_normal((offsets[-1], 24)) * rng.uniform(0.01, 50, 24)).astype(np.float16)
    layer[offsets[3]:offsets[4]] = -0.0
    ref = (np.add.reduceat(layer, offsets[:-1], axis=0, dtype=np.float32)
           / lengths.astype(np.float32)[:, None]).astype(np.float16)
    got = ex.SentenceMeans(offsets)(layer)
    assert got.dtype == np.float16 and got.shape == ref.shape
    assert np.array_equal(got.view(np.uint16), ref.view(np.uint16))  # same bits, signed zeros too
    # a sentence without words (first, middle, last) gets zeros; the others are unchanged
    offs2 = np.concatenate([[0], offsets[:4], offsets[3:], [offsets[-1]]])
    got2 = ex.SentenceMeans(offs2)(layer)
    assert not got2[[0, 4, len(got2) - 1]].any()
    keep = np.delete(np.arange(len(got2)), [0, 4, len(got2) - 1])
    assert np.array_equal(got2[keep].view(np.uint16), ref.view(np.uint16))
    assert ex.SentenceMeans(np.zeros(3, dtype=np.int64))(np.zeros((0, 5), np.float16)).shape == (2, 5)
