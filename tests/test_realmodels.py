"""Real models on real hardware: precision and device in the cache key, encoder-decoder
models, Hub access, the distributed timeout (issue 13, item 1)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import probe.extraction as ex
from probe.cache import CacheKey
from probe.errors import ProbeError
from tiny import random_corpus, tiny_spec

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture()
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("PROBE_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


class _Spec:
    name, fingerprint, source = "e5-small-q4", "f" * 64, "/nonexistent"


class _Corpus:
    name, lang, split, sha256, sentences = "pud", "de", "test", "c" * 64, []


def test_cpu_float32_single_sentence_key_is_what_it_was():
    # The digest every existing CPU float32 entry (and committed figure) was built under.
    key = ex.cache_key(_Spec(), _Corpus(), "first", device="cpu", dtype="float32")
    assert key.extractor == "v1"
    assert key.digest == "1ba27cc44c8b40a33f7e429bdd1fc8984907ecc86af7d6147092d6418baf2e69"
    assert key.digest == CacheKey(model="e5-small-q4", model_fingerprint="f" * 64, corpus="pud", lang="de",
                                  split="test", corpus_sha256="c" * 64, pooling="first", extractor="v1").digest


def test_precision_device_type_and_segments_are_in_the_extractor_tag():
    assert ex.extractor_tag("cpu", "float32") == "v1"
    assert ex.extractor_tag("cuda:1", "float32") == "v1;device=cuda"
    assert ex.extractor_tag("cuda", "bfloat16") == "v1;device=cuda;dtype=bfloat16;autocast"
    assert ex.extractor_tag("cpu", "float16", segments=True) == "v1;dtype=float16;autocast;segments"
    tags = {ex.extractor_tag(d, t) for d in ("cpu", "cuda", "cuda:1", "mps") for t in ex.DTYPES}
    assert len(tags) == 9  # cuda and cuda:1 share a device type


def test_two_precisions_give_two_entries_and_cache_ls_shows_them(home, capsys):
    from probe.cli import main

    spec, corpus = tiny_spec(max_positions=64), random_corpus(n=12)
    e32 = ex.extract_corpus(spec, corpus, progress=False, dtype="float32")
    ebf = ex.extract_corpus(spec, corpus, progress=False, dtype="bfloat16")
    assert e32.path != ebf.path
    assert (e32.meta["compute_dtype"], ebf.meta["compute_dtype"]) == ("float32", "bfloat16")
    assert ebf.meta["extractor"]["autocast"] and not e32.meta["extractor"]["autocast"]
    a = np.asarray(e32.layer(2), dtype=np.float32)
    b = np.asarray(ebf.layer(2), dtype=np.float32)
    assert not np.array_equal(a, b)  # bfloat16 really ran
    np.testing.assert_allclose(b, a, atol=0.1, rtol=0.05)  # ... and is close
    assert ex.extract_corpus(spec, corpus, progress=False, dtype="bfloat16").path == ebf.path  # a hit
    assert main(["cache", "ls"]) == 0
    out = capsys.readouterr().out
    assert "float32@cpu" in out and "bfloat16@cpu" in out


def test_old_entries_report_the_precision_they_ran_in():
    assert ex.entry_precision({"extractor": {"device": "cpu"}}) == "float32@cpu"
    assert ex.entry_precision({"extractor": {"device": "cuda"}}) == "bfloat16@cuda"  # old bf16 autocast


def test_bad_dtype_and_unavailable_devices_are_one_line_errors(home):
    spec, corpus = tiny_spec(), random_corpus(n=3)
    with pytest.raises(ProbeError, match="unknown dtype"):
        ex.extract_corpus(spec, corpus, progress=False, dtype="fp8")
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(ProbeError, match="CUDA is not available"):
            ex.extract_corpus(spec, corpus, progress=False, device="cuda:1")
    with pytest.raises(ProbeError, match="unknown device"):
        ex.extract_corpus(spec, corpus, progress=False, device="gpu7")
    assert not (home / "cache").exists() or not any((home / "cache").rglob("*.partial"))


def test_unsupported_encoder_decoder_fails_in_one_line_before_any_work(home, tmp_path, capsys):
    from transformers import BartConfig, BartModel

    from probe.encoders import resolve_encoder
    from standins import sentencepiece_tokenizer

    tok = sentencepiece_tokenizer("xlmr")
    cfg = BartConfig(vocab_size=len(tok.get_vocab()), d_model=16, encoder_layers=1, decoder_layers=1,
                     encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32,
                     decoder_ffn_dim=32, max_position_embeddings=64)
    BartModel(cfg).save_pretrained(tmp_path / "bart")
    tok.save_pretrained(tmp_path / "bart")
    with pytest.raises(ProbeError, match="encoder-decoder model.*mt5") as err:
        resolve_encoder(str(tmp_path / "bart"))
    assert "\n" not in str(err.value)
    assert not (home / "cache").exists()


def test_mt5_checkpoint_runs_its_encoder_and_leaves_no_partial(home, tmp_path):
    from probe.encoders import resolve_encoder
    from standins import build_standin

    spec = resolve_encoder(str(build_standin("mt5", tmp_path / "mt5", layers=3)))
    entry = ex.extract_corpus(spec, random_corpus(n=5), progress=False)
    assert entry.n_layers == 4 and type(spec.load().model).__name__ == "MT5EncoderModel"
    assert not list((home / "cache").rglob("*.partial"))


def test_pooler_load_report_becomes_one_note(home, tmp_path, capfd):
    from probe.encoders import resolve_encoder
    from standins import build_standin

    resolve_encoder(str(build_standin("bert", tmp_path / "bert"))).load()
    err = capfd.readouterr().err
    assert "LOAD REPORT" not in err and "UNEXPECTED" not in err
    notes = [line for line in err.splitlines() if line.startswith("probe:")]
    assert len(notes) == 1 and "pooler" in notes[0]


def test_hub_fetches_bin_weights_only_when_there_are_no_safetensors(monkeypatch, tmp_path):
    import huggingface_hub

    from probe import hub

    assert hub.weight_patterns(["config.json", "pytorch_model.bin"]) == ["*.bin"]
    assert hub.weight_patterns(["model.safetensors", "pytorch_model.bin"]) == ["*.safetensors"]
    repos = {"org/old": ["config.json", "pytorch_model.bin"], "org/new": ["config.json", "model.safetensors",
                                                                          "pytorch_model.bin"]}
    calls = []

    def fake_snapshot(repo_id, allow_patterns, **kw):  # a Hub holding `repos`, honouring the patterns
        import fnmatch

        calls.append((repo_id, allow_patterns, kw))
        out = tmp_path / repo_id
        out.mkdir(parents=True, exist_ok=True)
        for f in repos[repo_id]:
            if any(fnmatch.fnmatch(f, p) for p in allow_patterns):
                (out / f).write_text("x")
        return str(out)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot)
    monkeypatch.setenv("HF_HUB_ETAG_TIMEOUT", "7")
    old = Path(hub.snapshot("org/old", local_only=False))
    assert sorted(p.name for p in old.iterdir()) == ["config.json", "pytorch_model.bin"]
    new = Path(hub.snapshot("org/new", local_only=False))
    assert sorted(p.name for p in new.iterdir()) == ["config.json", "model.safetensors"]  # never both
    assert all(kw["etag_timeout"] == 7.0 for _r, _p, kw in calls)


def test_offline_error_says_the_hub_is_unreachable_and_how_to_predownload():
    from probe import hub

    msg = hub.cannot_load_message("xlm-roberta-large", ConnectionError("no route"))
    assert "Hub is unreachable" in msg and "huggingface-cli download xlm-roberta-large" in msg
    assert "HF_HOME" in msg and "\n" not in msg
    missing = type("RepositoryNotFoundError", (Exception,), {})("404")  # named as huggingface_hub's
    assert "no accessible repository" in hub.cannot_load_message("x/y", missing)


def test_hub_timeout_is_set_before_huggingface_hub_is_imported():
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_HUB_")}
    code = ("import probe, transformers, huggingface_hub.constants as c; "
            "print(c.HF_HUB_ETAG_TIMEOUT, c.HF_HUB_DOWNLOAD_TIMEOUT)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["5", "5"]


def test_distributed_timeout_is_configurable_and_reaches_the_process_group(monkeypatch):
    import torch.distributed as dist

    from probe import distributed

    assert distributed.dist_timeout() == distributed.DEFAULT_TIMEOUT_S >= 3600
    monkeypatch.setenv("PROBE_DIST_TIMEOUT", "90")
    assert distributed.dist_timeout() == 90 and distributed.dist_timeout(30) == 30
    monkeypatch.setenv("PROBE_DIST_TIMEOUT", "soon")
    with pytest.raises(ProbeError, match="PROBE_DIST_TIMEOUT"):
        distributed.dist_timeout()
    monkeypatch.delenv("PROBE_DIST_TIMEOUT")
    seen = {}

    class Stop(Exception):
        pass

    def fake_init(**kw):
        seen.update(kw)
        raise Stop

    monkeypatch.setattr(dist, "init_process_group", fake_init)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(Stop):
        distributed.extract_distributed(tiny_spec, random_corpus, timeout_s=1234, device="cpu")
    assert seen["timeout"].total_seconds() == 1234


def test_bench_gpu_quick_smoke(capsys, tmp_path, monkeypatch):
    import importlib.util

    bench = REPO / "benchmarks"
    monkeypatch.syspath_prepend(str(bench))
    monkeypatch.setenv("PROBE_HOME", str(tmp_path / "home"))
    spec = importlib.util.spec_from_file_location("bench_gpu_under_test", bench / "bench_gpu.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main(["--quick"]) == 0
    lines = [l for l in capsys.readouterr().out.splitlines() if l.startswith("RESULT ")]
    assert len(lines) == 2 and "float32" in lines[0] and "bfloat16" in lines[1]


def test_a_legacy_cuda_entry_under_the_cpu_key_is_flagged(home, capsys):
    import json

    spec, corpus = tiny_spec(), random_corpus(n=4)
    entry = ex.extract_corpus(spec, corpus, progress=False, device="cpu")
    meta = json.loads((entry.path / "meta.json").read_text())
    del meta["compute_dtype"]  # as written by an older version on a GPU (bf16 autocast, key "v1")
    meta["extractor"] = {k: v for k, v in meta["extractor"].items() if k != "device_type"}
    meta["extractor"]["device"] = "cuda"
    (entry.path / "meta.json").write_text(json.dumps(meta))
    capsys.readouterr()
    assert ex.extract_corpus(spec, corpus, progress=False, device="cpu").path == entry.path
    assert "computed as bfloat16@cuda, not float32@cpu" in capsys.readouterr().err
