"""Fault injection: bad options, read-only and full disks, a SIGKILL during the publish,
flipped bytes, a lost meta.json, stale locks and concurrent extractions.

Each case asserts the exit status, exactly one ``probe: error:`` line (no traceback) and
that the cache is intact afterwards (``probe cache verify`` exits 0 once the fault is
gone). A tiny random-weight model saved to a folder stands in for a real encoder and a
registered corpus of random words (tests/tiny.py) for a real one, so the module runs in
well under a minute.
"""
from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from probe.cli import main

REPO = Path(__file__).resolve().parents[1]
CORPUS = ["--corpus", "tiny", "--lang", "de"]
# Run first in a child process: registers the tiny corpus there too.
REGISTER = ("import sys; sys.path.insert(0, {tests!r})\n"
            "import probe.data, tiny\n"
            "probe.data.CORPORA['tiny'] = tiny.tiny_corpus_def()\n").format(tests=str(REPO / "tests"))


@pytest.fixture(autouse=True)
def tiny_corpus(monkeypatch):
    import probe.data
    from tiny import tiny_corpus_def

    monkeypatch.setitem(probe.data.CORPORA, "tiny", tiny_corpus_def())


# --------------------------------------------------------------------------- helpers
@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    from tiny import tiny_bert, unigram_tokenizer

    path = tmp_path_factory.mktemp("model") / "tiny"
    tiny_bert(max_positions=64).save_pretrained(path)
    unigram_tokenizer().save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def built_home(tmp_path_factory, tiny_model) -> Path:
    """A PROBE_HOME holding the finished entry of the tiny model on the tiny corpus."""
    import probe.data
    from tiny import tiny_corpus_def

    home = tmp_path_factory.mktemp("built") / "home"
    old = os.environ.get("PROBE_HOME")
    os.environ["PROBE_HOME"] = str(home)
    probe.data.CORPORA["tiny"] = tiny_corpus_def()
    try:
        assert main(["extract", "--model", str(tiny_model), *CORPUS, "--quiet"]) == 0
    finally:
        os.environ["PROBE_HOME"] = old or ""
        del probe.data.CORPORA["tiny"]
    return home


@pytest.fixture()
def home(tmp_path, monkeypatch, built_home) -> Path:
    """A fresh copy of ``built_home`` as this test's PROBE_HOME."""
    h = tmp_path / "home"
    shutil.copytree(built_home, h)
    monkeypatch.setenv("PROBE_HOME", str(h))
    monkeypatch.delenv("PROBE_NO_VERIFY", raising=False)
    import probe.cache

    probe.cache._VERIFIED.clear()
    probe.cache._CLEANED.clear()
    return h


def entry_dir(home: Path) -> Path:
    (d,) = [p for p in (home / "cache").glob("*/tiny.de.*") if p.is_dir() and p.name.count(".") == 4]
    return d


def run(capsys, *argv) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def assert_one_error(err: str, *needles: str) -> str:
    """Exactly one ``probe: error:`` line, no traceback; returns the line."""
    assert "Traceback" not in err, err
    lines = [l for l in err.splitlines() if l.startswith("probe: error:")]
    assert len(lines) == 1, err
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


def checksums(entry: Path) -> dict:
    return {k: v["sha256"] for k, v in json.loads((entry / "meta.json").read_text())["files"].items()}


def assert_intact(capsys, home: Path, reference: dict | None = None) -> None:
    rc, out, _ = run(capsys, "cache", "verify")
    assert rc == 0, out
    assert "0 corrupt, 0 broken" in out and "0 orphaned temporaries, 0 stale locks" in out
    if reference is not None:
        assert checksums(entry_dir(home)) == reference


def flip_byte(path: Path, at: int = -100) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))


def cli_subprocess(home: Path, *argv, driver: str = "") -> subprocess.Popen:
    """``probe ARGV`` in a fresh process; ``driver`` is Python run first (to inject a fault)."""
    code = REGISTER + driver + "\nfrom probe.cli import main\nsys.exit(main(sys.argv[1:]))"
    env = {**os.environ, "PROBE_HOME": str(home), "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-c", code, *argv], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


# --------------------------------------------------------------------------- options
def _model_only(tmp_path, *names) -> str:
    d = tmp_path / "badmodel"
    d.mkdir()
    for n in names:
        (d / n).write_text("{}" if n.endswith(".json") else "x\n")
    return str(d)


BAD_OPTIONS = {
    "batch-tokens 0": (["extract", *CORPUS, "--batch-tokens", "0"], "--batch-tokens 0"),
    "batch-tokens -5": (["extract", *CORPUS, "--batch-tokens", "-5"], "--batch-tokens -5"),
    "batch-tokens abc": (["extract", *CORPUS, "--batch-tokens", "abc"], "--batch-tokens"),
    "workers 0": (["extract", *CORPUS, "--workers", "0"], "--workers 0"),
    "device tpu": (["extract", *CORPUS, "--device", "tpu"], "--device 'tpu'"),
    "device cuda:x": (["layers", "--lang", "de", "--device", "cuda:x"], "--device"),
    "fusion-depth 7": (["compare", "--models", "random:e5-small-q4", "--lang", "de", "--fusion-depth", "7"],
                       "--fusion-depth 7"),
    "fusion-depth -0.1": (["compare", "--models", "x", "--lang", "de", "--fusion-depth", "-0.1"],
                          "--fusion-depth"),
    "fusion-seeds 0": (["compare", "--models", "x", "--lang", "de", "--fusion-seeds", "0"], "--fusion-seeds 0"),
    "n-boot 0": (["layers", "--lang", "de", "--n-boot", "0"], "--n-boot 0"),
    "max-iter 0": (["layers", "--lang", "de", "--max-iter", "0"], "--max-iter 0"),
    "seeds 0": (["fuse", "--task", "pos", "--lang", "de", "--seeds", "0"], "--seeds 0"),
    "jobs 0": (["fuse", "--task", "pos", "--lang", "de", "--jobs", "0"], "--jobs 0"),
    "unknown option": (["extract", *CORPUS, "--bogus"], "--bogus"),
}


@pytest.mark.parametrize("case", list(BAD_OPTIONS))
def test_bad_option_is_one_line_before_any_loading(case, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PROBE_HOME", str(tmp_path / "home"))
    argv, needle = BAD_OPTIONS[case]
    if argv[0] == "fuse" and "fuse" not in _subcommands():
        pytest.skip("no fuse sub-command here")
    try:
        rc = main(argv)
    except SystemExit as exc:  # argparse's own errors (bad int, unknown option)
        rc = exc.code
    _, err = capsys.readouterr()
    assert rc == 2
    assert_one_error(err, needle)
    assert not (tmp_path / "home").exists()  # nothing fetched, converted or cached


def _subcommands() -> set:
    from probe.cli import build_parser

    p = build_parser()
    return set(next(a for a in p._actions if a.dest == "command").choices)


@pytest.mark.parametrize("files", [("vocab.txt", "notes.txt"), ("config.json",)])
def test_model_folder_without_weights(files, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PROBE_HOME", str(tmp_path / "home"))
    rc, _, err = run(capsys, "extract", "--model", _model_only(tmp_path, *files), *CORPUS)
    assert rc == 2
    assert_one_error(err, "not a model folder", "weights")


def test_out_checked_before_any_work(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PROBE_HOME", str(tmp_path / "home"))
    a_file = tmp_path / "report.txt"
    a_file.write_text("x")
    for out, needle in ((a_file, "is a file"), (a_file / "sub", "is a file, so no folder")):
        rc, _, err = run(capsys, "layers", "--lang", "de", "--model", "e5-small-q4", "--out", str(out))
        assert rc == 2
        assert_one_error(err, str(out), needle)
    # a read-only folder (simulated: root ignores permission bits): the probe write fails
    import probe.options

    real_open = os.open

    def refuse(path, flags, *a, **k):
        if ".probe-write-test-" in str(path):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_open(path, flags, *a, **k)

    monkeypatch.setattr(probe.options.os, "open", refuse)
    rc, _, err = run(capsys, "layers", "--lang", "de", "--out", str(tmp_path / "ro" / "out"))
    assert rc == 2
    assert_one_error(err, "cannot write there", "Read-only file system")
    assert not (tmp_path / "home").exists()


def test_debug_shows_the_traceback(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PROBE_HOME", str(tmp_path / "home"))
    import probe.cli

    def boom(args):
        raise RuntimeError("kaput")

    monkeypatch.setitem(probe.cli._COMMANDS, "data", boom)
    rc, _, err = run(capsys, "data", "ls")
    assert rc == 2
    assert_one_error(err, "unexpected RuntimeError: kaput", "--debug")
    rc, _, err = run(capsys, "--debug", "data", "ls")
    assert rc == 2 and "Traceback" in err and "kaput" in err


# --------------------------------------------------------------------------- disks
def test_read_only_home(home, tiny_model, monkeypatch, capsys):
    """Nothing can be written: a cached entry is still read; a new one fails in one line."""
    ref = checksums(entry_dir(home))
    import probe.files

    def read_only(path):
        raise OSError(errno.EROFS, "Read-only file system", str(path))

    monkeypatch.setattr(probe.files, "durable_open", read_only)
    (home / "file-hashes.json").unlink()  # the memo must be rewritten, and cannot be
    rc, out, err = run(capsys, "extract", "--model", str(tiny_model), *CORPUS, "--quiet")
    assert rc == 0 and out.startswith("cached"), err
    rc, _, err = run(capsys, "extract", "--model", str(tiny_model), *CORPUS, "--pooling", "mean", "--quiet")
    assert rc == 2
    assert_one_error(err, str(home), "Read-only file system", "writable folder")
    monkeypatch.undo()
    monkeypatch.setenv("PROBE_HOME", str(home))
    assert_intact(capsys, home, ref)


def test_full_disk_during_publish(home, tiny_model, monkeypatch, capsys):
    ref = checksums(entry_dir(home))
    shutil.rmtree(entry_dir(home))
    import probe.cache

    real = probe.cache.write_npy
    calls = []

    def full(path, array):
        calls.append(path)
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, array)

    monkeypatch.setattr(probe.cache, "write_npy", full)
    rc, _, err = run(capsys, "extract", "--model", str(tiny_model), *CORPUS, "--quiet")
    assert rc == 2
    assert_one_error(err, "No space left on device", "free some space")
    assert not list((home / "cache").glob("*/*.tmp-*"))  # the half-written publish is gone
    monkeypatch.setattr(probe.cache, "write_npy", real)
    rc, out, err = run(capsys, "extract", "--model", str(tiny_model), *CORPUS, "--quiet")
    assert rc == 0 and out.startswith("built"), err
    assert_intact(capsys, home, ref)  # same bytes as the uninterrupted build


def test_sigkill_at_publish_leaves_an_orphan_that_is_named_and_cleaned(home, tiny_model, capsys):
    ref = checksums(entry_dir(home))
    shutil.rmtree(entry_dir(home))
    driver = (
        "import os, signal, probe.cache\n"
        "real = os.replace\n"
        "def replace(src, dst, *a, **k):\n"
        "    if '.tmp-' in str(src) and os.path.isdir(src):\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        "    return real(src, dst, *a, **k)\n"
        "probe.cache.os.replace = replace\n"
    )
    proc = cli_subprocess(home, "extract", "--model", str(tiny_model), *CORPUS, "--quiet", driver=driver)
    proc.communicate(timeout=120)
    assert proc.returncode == -9
    (orphan,) = list((home / "cache").glob("*/*.tmp-*"))
    assert (orphan / "meta.json").exists()  # killed just before the rename
    rc, out, _ = run(capsys, "cache", "verify")
    assert rc == 1 and "ORPHAN" in out and "1 orphaned temporaries" in out
    rc, out, err = run(capsys, "extract", "--model", str(tiny_model), *CORPUS, "--quiet")
    assert rc == 0 and out.startswith("built"), err
    assert not orphan.exists()  # cleaned by the next run
    assert_intact(capsys, home, ref)


# --------------------------------------------------------------------------- damage
def test_flipped_byte_is_caught_on_use_and_rebuilt(home, tiny_model, capsys, monkeypatch):
    from probe.cache import CacheEntry
    from probe.errors import CacheError

    entry = entry_dir(home)
    ref = checksums(entry)
    flip_byte(entry / "layer_01.npy")
    # --no-verify: read as is
    monkeypatch.setenv("PROBE_NO_VERIFY", "1")
    assert CacheEntry(entry).layer(1).shape[1] == 16
    monkeypatch.delenv("PROBE_NO_VERIFY")
    e = CacheEntry(entry)
    assert e.layer(0).shape[1] == 16  # an intact file: fine
    with pytest.raises(CacheError, match=r"layer_01\.npy: damaged \(sha256 differs"):
        e.layer(1)
    assert not entry.exists()  # removed, so the next command rebuilds it
    rc, out, err = run(capsys, "extract", "--model", str(tiny_model), *CORPUS, "--quiet")
    assert rc == 0 and out.startswith("built"), err
    assert_intact(capsys, home, ref)


def test_flipped_byte_makes_extract_rebuild(home, tiny_model, capsys, monkeypatch):
    entry = entry_dir(home)
    ref = checksums(entry)
    flip_byte(entry / "sent_mean.npy", at=-7)
    rc, out, _ = run(capsys, "cache", "verify")
    assert rc == 1 and "CORRUPT" in out and "sent_mean.npy: sha256 differs" in out
    monkeypatch.setenv("PROBE_NO_VERIFY", "0")  # restored after the test (main sets it)
    rc, out, _ = run(capsys, "--no-verify", "extract", "--model", str(tiny_model), *CORPUS, "--quiet")
    assert rc == 0 and out.startswith("cached")  # not checked, as asked
    monkeypatch.setenv("PROBE_NO_VERIFY", "0")
    rc, out, err = run(capsys, "extract", "--model", str(tiny_model), *CORPUS, "--quiet")
    assert rc == 0 and out.startswith("built") and "damaged" in err, (out, err)
    assert_intact(capsys, home, ref)


def test_command_leaves_the_callers_environment_as_it_was(home, capsys, monkeypatch):
    """probe.cli.main run in-process (a test, a notebook cell) sets MPLBACKEND and
    PROBE_NO_VERIFY for the command only: a Jupyter kernel started afterwards from the same
    process must not inherit the Agg backend."""
    import os

    monkeypatch.delenv("MPLBACKEND", raising=False)
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "true")
    rc, _, _ = run(capsys, "--no-verify", "cache", "ls")
    assert rc == 0
    assert "MPLBACKEND" not in os.environ and "PROBE_NO_VERIFY" not in os.environ
    assert os.environ["TOKENIZERS_PARALLELISM"] == "true"


def test_truncated_file_is_named_and_rebuilt_by_any_open(home, tiny_model, capsys):
    from probe.cache import open_entry
    from probe.extraction import cache_key
    from probe.encoders import resolve_encoder
    import probe.data

    entry = entry_dir(home)
    ref = checksums(entry)
    victim = entry / "layer_02.npy"
    with open(victim, "r+b") as f:
        f.truncate(victim.stat().st_size // 3)
    rc, out, _ = run(capsys, "cache", "verify", "--quick")
    assert rc == 1 and "CORRUPT" in out and "layer_02.npy: size" in out
    # any caller (probe layers, fuse, ...) sees it as missing, without hashing anything
    data = probe.data.CORPORA["tiny"].load("de", "test")
    assert open_entry(cache_key(resolve_encoder(str(tiny_model)), data, "first")) is None
    assert not entry.exists()
    rc, out, err = run(capsys, "extract", "--model", str(tiny_model), *CORPUS, "--quiet")
    assert rc == 0 and out.startswith("built"), err
    assert_intact(capsys, home, ref)


def test_missing_meta_json(home, tiny_model, capsys):
    entry = entry_dir(home)
    ref = checksums(entry)
    (entry / "meta.json").unlink()
    rc, out, _ = run(capsys, "cache", "ls")
    assert rc == 0 and "BROKEN" in out and str(entry) in out
    rc, out, _ = run(capsys, "cache", "verify")
    assert rc == 1 and "BROKEN" in out and "no meta.json" in out and "1 broken" in out
    rc, out, _ = run(capsys, "cache", "rm", "--corpus", "tiny", "--lang", "fr")
    assert rc == 0 and "nothing to remove" in out and entry.exists()
    rc, out, _ = run(capsys, "cache", "rm", "--corpus", "tiny", "--lang", "de")
    assert rc == 0 and f"removed {entry}" in out and not entry.exists()
    # the same state again, healed by the next extraction instead
    rc, out, err = run(capsys, "extract", "--model", str(tiny_model), *CORPUS, "--quiet")
    assert rc == 0 and out.startswith("built")
    (entry / "meta.json").unlink()
    rc, out, err = run(capsys, "extract", "--model", str(tiny_model), *CORPUS, "--quiet")
    assert rc == 0 and out.startswith("built") and "damaged" in err
    assert_intact(capsys, home, ref)


def test_rm_by_key_and_broken(home, capsys):
    entry = entry_dir(home)
    digest = json.loads((entry / "meta.json").read_text())["key"]
    orphan = entry.with_name(entry.name + ".tmp-999999999")  # no such process
    orphan.mkdir()
    lock = entry.with_name(entry.name + ".lock")
    lock.write_text("999999999\n")
    partial = entry.with_name("tiny.de.test.mean.0123456789abcdef.partial")
    partial.mkdir()
    torn = partial / ".chunk_00000.npz.999999999.1.tmp"  # an atomic write cut by a SIGKILL
    torn.write_bytes(b"PK")
    (home / "cache" / "results" / "x").mkdir(parents=True)
    memo_tmp = home / "cache" / "results" / "x" / ".abc.json.999999999.1.tmp"
    memo_tmp.write_text("{")
    rc, out, _ = run(capsys, "cache", "verify", "--quick")
    assert rc == 1 and "ORPHAN" in out and "STALE" in out and "3 orphaned temporaries" in out
    assert "1 resumable partial builds" in out
    rc, out, _ = run(capsys, "cache", "rm", "--broken")
    assert rc == 0 and "orphan" in out and "stale-lock" in out
    assert entry.exists() and not orphan.exists() and not lock.exists()
    assert not torn.exists() and not memo_tmp.exists() and partial.exists()  # resumable work kept
    rc, _, err = run(capsys, "cache", "rm", "feedbeef")
    assert rc == 2
    assert_one_error(err, "no cache item matches feedbeef")
    rc, out, _ = run(capsys, "cache", "rm", digest[:10])
    assert rc == 0 and not entry.exists()
    rc, out, _ = run(capsys, "cache", "verify")
    assert rc == 0


# --------------------------------------------------------------------------- locks
def test_concurrent_extracts_build_once(home, tiny_model, capsys):
    ref = checksums(entry_dir(home))
    shutil.rmtree(entry_dir(home))
    # The first process holds the lock inside its publish until the second one says it
    # waits (at most 60 s), so the second must find the lock taken.
    go = home / "go"
    slow = ("import os, time, probe.cache\n"
            "real = probe.cache.EntryBuilder.publish\n"
            "def publish(self, fn):\n"
            "    t = time.time()\n"
            f"    while not os.path.exists({str(go)!r}) and time.time() - t < 60:\n"
            "        time.sleep(0.05)\n"
            "    return real(self, fn)\n"
            "probe.cache.EntryBuilder.publish = publish\n")
    argv = ("extract", "--model", str(tiny_model), *CORPUS, "--quiet")
    mark = ("import probe.encoders as E\n"
            "_load = E.EncoderSpec.load\n"
            "def load(self):\n"
            "    print('probe-test: model loaded', file=sys.stderr, flush=True)\n"
            "    return _load(self)\n"
            "E.EncoderSpec.load = load\n")
    first = cli_subprocess(home, *argv, driver=mark + slow)
    # Both start (import) at once; the second goes on once the first holds the lock.
    after_lock = ("import glob, time, torch, transformers\n"
                  "t = time.time()\n"
                  f"while not glob.glob({str(home / 'cache' / '*' / '*.lock')!r}) and time.time() - t < 120:\n"
                  "    time.sleep(0.05)\n")
    second = cli_subprocess(home, *argv, driver=mark + after_lock)
    err2 = ""
    for line in second.stderr:  # until it reports that it waits (or ends)
        err2 += line
        if "waiting for process" in line:
            break
    go.touch()
    out1, err1 = first.communicate(timeout=120)
    out2, rest = second.communicate(timeout=120)
    err2 += rest
    assert first.returncode == 0 and second.returncode == 0, (err1, err2)
    assert out1.startswith("built")
    assert out2.startswith("cached") and "waiting for process" in err2, (out2, err2)
    assert "model loaded" in err1 and "model loaded" not in err2  # the second loaded no model
    assert not list((home / "cache").glob("*/*.lock"))
    assert_intact(capsys, home, ref)


def test_lock_held_elsewhere_taken_over_here_and_stale_broken(tmp_path):
    from probe.locks import EntryLock, break_stale_lock, stale_locks

    entry = tmp_path / "m" / "e.x.y.first.0123456789abcdef"
    entry.parent.mkdir()
    lock_file = entry.with_name(entry.name + ".lock")
    # another process holds it: not acquired without waiting, not stale, not broken
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, sys, time; f = open(sys.argv[1], 'a'); "
         "fcntl.flock(f, fcntl.LOCK_EX); print('held', flush=True); time.sleep(30)", str(lock_file)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert not EntryLock(entry).acquire(wait=False)
        assert stale_locks(entry.parent) == []
        assert not break_stale_lock(lock_file) and lock_file.exists()
    finally:
        holder.kill()
        holder.wait()
    # its process is gone: the file is a stale lock, and breaking it removes it
    assert stale_locks(entry.parent) == [lock_file]
    assert break_stale_lock(lock_file) and not lock_file.exists()
    # this process builds again after abandoning a builder (e.g. Ctrl-C in a notebook): taken over
    a = EntryLock(entry)
    assert a.acquire(wait=False) and lock_file.read_text().strip() == str(os.getpid())
    b = EntryLock(entry)
    assert b.acquire(wait=False) and b.held and not a.held
    a.release()  # no effect any more
    assert lock_file.exists() and stale_locks(entry.parent) == []
    b.release()
    assert not lock_file.exists()


# --------------------------------------------------------------------------- data files
def test_tsv_bom_is_removed_and_reported(tmp_path, capsys):
    from probe.data.xtreme import read_token_file

    path = tmp_path / "train-de.tsv"
    path.write_bytes("\ufeffBerlin\tB-LOC\nist\tO\n".encode("utf-8"))
    (sent,) = read_token_file(path)
    assert sent[0] == ["Berlin", "ist"]
    assert "byte-order mark" in capsys.readouterr().err


def test_invalid_utf8_deep_in_a_tsv_names_line_and_column(tmp_path):
    from probe.data.xtreme import read_token_file
    from probe.errors import DataFormatError

    lines = [f"w{i}\tO\n".encode() for i in range(84_628)]
    lines.append("Stra\u00dfe\tO\n".encode("utf-8").replace("\u00df".encode(), b"\xdf"))
    path = tmp_path / "big.tsv"
    path.write_bytes(b"".join(lines))
    with pytest.raises(DataFormatError, match=r"big\.tsv:84629: invalid UTF-8 .* at column 5 "):
        read_token_file(path)


def test_unpinned_checksum_recorded_only_after_parse(tmp_path, monkeypatch):
    """A user file that fails to parse is not pinned: the fixed file is then accepted."""
    from probe.data import data_error
    from probe.data.ud import read_conllu
    from probe.download import RemoteFile, deferred_checksums, fetch, recorded_checksums

    mirror = tmp_path / "mirror"
    (mirror / "ud" / "UD_X").mkdir(parents=True)
    monkeypatch.setenv("PROBE_DATA_MIRROR", str(mirror))
    monkeypatch.setenv("PROBE_HOME", str(tmp_path / "home"))
    src = mirror / "ud" / "UD_X" / "x.conllu"
    good = (REPO / "tests" / "fixtures" / "sample.conllu").read_bytes()
    src.write_bytes(good.replace(b"\t", b" ", 1))  # a broken first token line
    remote = RemoteFile(relpath="ud/UD_X/x.conllu", url="http://unused.invalid/x")

    def load():
        with deferred_checksums():
            return read_conllu(fetch(remote, progress=False))

    with pytest.raises(type(data_error("x", "y"))):
        load()
    assert recorded_checksums() == {}
    src.write_bytes(good)  # the user fixes the file
    assert load()
    from probe.files import sha256_file

    assert recorded_checksums() == {"ud/UD_X/x.conllu": sha256_file(src)}
