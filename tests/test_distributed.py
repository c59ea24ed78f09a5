"""Multi-process extraction (probe.distributed): 2 CPU ranks give exactly the single-process entry.

The ranks run in separate processes (torchrun when installed, else the module's own
``--nproc`` launcher, torch.multiprocessing.spawn with gloo on a free localhost port), so
the tiny random encoder and the corpus are named by ``module:function`` factories from
this directory.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from tiny import random_corpus, tiny_spec

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
BATCH_TOKENS = 64  # small batches: many chunks, so each rank owns several


def dist_corpus():
    """The test corpus (a factory the ranks import): long sentences exercise the windows."""
    return random_corpus(n=30, seed=7, long_every=6, long_len=40)


def _entry_dir(home: Path) -> Path:
    from probe.extraction import cache_key

    old = os.environ.get("PROBE_HOME")
    os.environ["PROBE_HOME"] = str(home)
    try:
        return cache_key(tiny_spec(), dist_corpus(), "first").path
    finally:
        os.environ["PROBE_HOME"] = old


class _Watcher(threading.Thread):
    """Polls the entry path while the ranks run: the final directory must only ever appear
    complete (meta.json inside: an atomic rename), and only once (one inode)."""

    def __init__(self, path: Path):
        super().__init__(daemon=True)
        self.path, self.stop = path, threading.Event()
        self.inodes: set[int] = set()
        self.incomplete = 0

    def run(self):
        while not self.stop.is_set():
            try:
                ino = self.path.stat().st_ino
            except FileNotFoundError:
                time.sleep(0.01)
                continue
            self.inodes.add(ino)
            if not (self.path / "meta.json").exists():
                self.incomplete += 1
            time.sleep(0.01)


def _launch(home: Path, nproc: int, launcher: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PROBE_HOME=str(home), TOKENIZERS_PARALLELISM="false",
               PYTHONPATH=os.pathsep.join([str(HERE), str(REPO), os.environ.get("PYTHONPATH", "")]))
    args = ["--spec-factory", "tiny:tiny_spec", "--corpus-factory", "test_distributed:dist_corpus",
            "--batch-tokens", str(BATCH_TOKENS), "--device", "cpu", "--quiet"]
    if launcher == "torchrun":
        cmd = [shutil.which("torchrun"), "--standalone", f"--nproc_per_node={nproc}",
               "-m", "probe.distributed", *args]
    else:
        cmd = [sys.executable, "-m", "probe.distributed", "--nproc", str(nproc), *args]
    return subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=150)


def _arrays(path: Path) -> dict[str, np.ndarray]:
    return {p.name: np.load(p) for p in sorted(path.glob("*.npy"))}


def _single_process_entry(home: Path, monkeypatch):
    import torch

    from probe.extraction import extract_corpus

    monkeypatch.setenv("PROBE_HOME", str(home))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each of the 2 ranks on this machine (GEMM sums may depend on it)
    try:
        return extract_corpus(tiny_spec(), dist_corpus(), batch_tokens=BATCH_TOKENS, device="cpu",
                              progress=False)
    finally:
        torch.set_num_threads(threads)


def test_two_ranks_build_exactly_the_single_process_entry(tmp_path, monkeypatch):
    launcher = "torchrun" if shutil.which("torchrun") else "spawn"
    home = tmp_path / "dist-home"
    final = _entry_dir(home)
    watcher = _Watcher(final)
    watcher.start()
    try:
        proc = _launch(home, 2, launcher)
    finally:
        watcher.stop.set()
        watcher.join()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    logs = [json.loads(line.split("probe.distributed: ", 1)[1])
            for line in proc.stderr.splitlines() if "probe.distributed: {" in line]
    assert sorted(r["rank"] for r in logs) == [0, 1], proc.stderr
    assert all(r["world"] == 2 and r["backend"] == "gloo" and r["threads"] >= 1 for r in logs)
    n_chunks = logs[0]["of"]
    assert n_chunks >= 4 and sum(r["chunks"] for r in logs) == n_chunks  # each chunk computed once
    assert all(r["chunks"] >= 1 for r in logs)                               # by both ranks
    assert [r["rank"] for r in logs if r["published"]] == [0]                # published once, by rank 0

    # published atomically: the directory only ever appeared complete, once; nothing left over
    assert len(watcher.inodes) == 1 and watcher.incomplete == 0
    siblings = sorted(p.name for p in final.parent.iterdir())
    assert siblings == [final.name], siblings  # no .partial / .tmp-* directories
    from probe.cache import CacheEntry

    dist_entry = CacheEntry(final)
    assert dist_entry.verify() == []

    ref = _single_process_entry(tmp_path / "single-home", monkeypatch)
    assert ref.path.name == final.name  # the same content address
    a, b = _arrays(final), _arrays(ref.path)
    assert sorted(a) == sorted(b) and "layer_00.npy" in a and "sent_mean.npy" in a
    for name in a:
        assert a[name].dtype == b[name].dtype and np.array_equal(a[name], b[name]), name
    for name in ("words.json", "sent_ids.json"):
        assert (final / name).read_text() == (ref.path / name).read_text()
    assert dist_entry.meta["n_words"] == ref.meta["n_words"] == dist_corpus().n_words
    assert dist_entry.meta["extractor"]["windowed_sentences"] > 0


def test_single_process_call_is_a_plain_extraction(tmp_path, monkeypatch):
    """Outside a distributed job, extract_distributed is extract_corpus (factories accepted)."""
    from probe.distributed import extract_distributed

    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("PROBE_HOME", str(tmp_path / "home"))
    entry = extract_distributed(tiny_spec, dist_corpus, batch_tokens=BATCH_TOKENS, device="cpu",
                                progress=False, threads=1)
    assert entry.n_words == dist_corpus().n_words and entry.verify() == []


def test_bad_factory_is_one_line_error(capsys):
    from probe.distributed import main

    assert main(["--spec-factory", "no_such_module_xyz:f", "--corpus", "pud", "--lang", "en"]) == 2
    assert "cannot import" in capsys.readouterr().err
