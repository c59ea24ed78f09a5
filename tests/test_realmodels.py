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


# --------------------------------------------------------------------------- dtype in every driver
def _fake_load_corpus(calls: list):
    """probe.data.load_corpus for layers(): small random UD/PUD stand-ins (PUD en and de share
    sentence ids, as the parallel treebanks do); records each call."""
    from tiny import MemCorpus

    seeds = {("ud", "en"): 1, ("pud", "en"): 2, ("pud", "de"): 3}

    def load(corpus, lang, split, progress=True):
        calls.append((corpus, lang, split))
        base = random_corpus(n=30, seed=seeds[(corpus, lang)])
        return MemCorpus(base.sentences, name=corpus, lang=lang, split=split)

    return load


def _png_text(path) -> str:
    from PIL import Image

    with Image.open(path) as im:
        return " ".join(str(v) for v in im.text.values())


def test_layers_dtype_selects_entries_memo_and_is_in_every_output(home, tmp_path, monkeypatch):
    import probe.cache
    import probe.data
    from probe.layerwise import layers

    calls, memo = [], []
    monkeypatch.setattr(probe.data, "load_corpus", _fake_load_corpus(calls))
    real_memoized = probe.cache.memoized

    def spy(kind, fields, compute, **kw):
        memo.append((kind, dict(fields)))
        return real_memoized(kind, fields, compute, **kw)

    monkeypatch.setattr(probe.cache, "memoized", spy)
    spec = tiny_spec(max_positions=64)
    kw = dict(model=spec, tasks="upos", tatoeba=False, n_boot=20, progress=False, device="cpu")
    with pytest.raises(ProbeError, match="unknown dtype 'fp8'"):
        layers("de", dtype="fp8", **kw)
    assert not calls and not (home / "cache").exists()  # refused before any work

    r32 = layers("de", **kw)
    memo32, memo[:] = list(memo), []
    rbf = layers("de", dtype="bfloat16", **kw)
    memobf = list(memo)

    # float32 (the default) reads the entries every earlier version built: extractor "v1"
    de = probe.data.load_corpus("pud", "de", "test")
    old_key = ex.cache_key(spec, de, "first", device="cpu")
    assert old_key.extractor == "v1" and r32.report["data"]["pud"]["de"]["cache_key"] == old_key.digest
    keys32 = {r32.report["data"]["train"]["cache_key"]} | {v["cache_key"] for v in r32.report["data"]["pud"].values()}
    keysbf = {rbf.report["data"]["train"]["cache_key"]} | {v["cache_key"] for v in rbf.report["data"]["pud"].values()}
    assert len(keys32) == len(keysbf) == 3 and not keys32 & keysbf
    from probe.cache import iter_entries

    by_key = {e.meta["key"]: e for e in iter_entries()}
    assert {by_key[k].meta["compute_dtype"] for k in keys32} == {"float32"}
    assert {by_key[k].meta["compute_dtype"] for k in keysbf} == {"bfloat16"}
    # memoised per-entry results are keyed by the entries, with the fields they always had
    for run, keys in ((memo32, keys32), (memobf, keysbf)):
        evals = [f for kind, f in run if kind == "probe-eval"]
        sims = [f for kind, f in run if kind == "similarity"]
        assert evals and sims
        assert all(set(f) == {"train", "seed", "n_boot", "probe", "task", "layer", "eval", "control"}
                   for f in evals)
        assert all(set(f) == {"en", "xx", "layers", "jackknife", "seed", "full", "sentence"} for f in sims)
        assert {f["eval"] for f in evals} | {f["train"] for f in evals} <= keys
        assert {f["en"] for f in sims} | {f["xx"] for f in sims} <= keys

    # recorded in the report, the table header, the repr and the figure (caption and metadata)
    assert r32.report["precision"] == {"dtype": "float32", "device": "cpu", "device_type": "cpu",
                                       "autocast": False, "cache_tag": "v1"}
    assert rbf.report["precision"]["dtype"] == rbf.report["config"]["dtype"] == "bfloat16"
    assert rbf.report["precision"]["autocast"] is True
    text = "precision: bfloat16 (autocast) on cpu"
    assert text in rbf.format_table().splitlines()[0] and text in repr(rbf)
    assert "precision: float32 on cpu" in r32.format_table().splitlines()[0]
    fig = rbf.plot_tradeoff(tmp_path / "tradeoff.png")
    assert any(text in t.get_text() for t in fig.texts)
    assert text in _png_text(tmp_path / "tradeoff.png")


def test_compare_and_fuse_pass_dtype_through_and_record_it(home, tmp_path, mirror, monkeypatch):
    import probe.data
    from probe.cache import iter_entries
    from probe.compare import compare

    calls = []
    monkeypatch.setattr(probe.data, "load_corpus", _fake_load_corpus(calls))
    shallow = tiny_spec(max_positions=512, layers=2, seed=1, name="tiny-2")
    deep = tiny_spec(max_positions=512, layers=3, seed=2, name="tiny-3")
    kw = dict(tasks="upos", n_boot=20, progress=False, device="cpu", fusion_seeds=1, fusion_examples=20,
              fusion_dev=10, fusion_test=10, fusion_epochs=1)
    with pytest.raises(ProbeError, match="unknown dtype"):
        compare([shallow, deep], "de", dtype="float64", **kw)
    assert not calls
    res = compare([shallow, deep], "de", dtype="bfloat16", **kw)
    rep = res.report
    assert rep["precision"]["dtype"] == rep["config"]["dtype"] == "bfloat16"
    for name in ("tiny-2", "tiny-3"):
        assert res.layer_results[name].report["precision"]["dtype"] == "bfloat16"
        assert rep["fusion"][name]["config"]["dtype"] == "bfloat16"
    entries = list(iter_entries())
    corpora = {e.meta["corpus"]["name"] for e in entries}
    assert {"ud", "pud"} < corpora  # ... and the fusion runs' XTREME POS entries
    assert {e.meta["compute_dtype"] for e in entries} == {"bfloat16"}
    text = "precision: bfloat16 (autocast) on cpu"
    assert text in repr(res)
    res.plot(tmp_path / "compare.png")
    assert text in _png_text(tmp_path / "compare.png")


def test_fuse_records_dtype_in_report_table_and_figures(home, tmp_path, mirror):
    from probe.transfer import fuse, summary_figure

    spec = tiny_spec(max_positions=512)
    kw = dict(model=spec, layers=[0], seeds=1, methods=["dlfa"], max_examples=20, max_dev=10, max_test=10,
              epochs=1, n_boot=20, n_jobs=1, progress=False, device="cpu")
    with pytest.raises(ProbeError, match="unknown dtype"):
        fuse("pos", "de", dtype="bf16", **kw)
    assert not (home / "cache").exists()
    res = fuse("pos", "de", dtype="float16", **kw)
    r = res.report
    assert r["precision"]["dtype"] == r["config"]["dtype"] == "float16"
    for e in (r["data"]["train"], r["data"]["dev"], r["data"]["targets"]["de"]):
        assert e["cache_key"] != ex.cache_key(spec, _Corpus(), "first").digest
    from probe.cache import iter_entries

    assert {e.meta["compute_dtype"] for e in iter_entries()} == {"float16"}
    text = "precision: float16 (autocast) on cpu"
    assert text in res.format_table().splitlines()[0] and text in repr(res)
    paths = res.save(tmp_path / "pos")
    assert all(text in _png_text(p) for p in paths if p.suffix == ".png")
    summary = summary_figure([tmp_path], tmp_path / "summary.png")
    assert text in _png_text(summary[0])


@pytest.mark.parametrize("command", [["layers", "--lang", "de"], ["compare", "--models", "a,b", "--lang", "de"],
                                     ["fuse", "--task", "pos", "--lang", "de"]])
def test_dtype_option_of_every_extracting_command(command, monkeypatch, capsys):
    import probe.compare
    import probe.layerwise
    import probe.transfer.cli
    from probe.cli import main

    with pytest.raises(SystemExit) as exit_:  # argparse's refusal, before anything is loaded
        main(command + ["--dtype", "fp8"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--dtype" in err[0] and "fp8" in err[0]
    seen = []

    def stand_in(*args, **kwargs):
        seen.append(kwargs.get("dtype"))
        raise ProbeError("stopped by the test")

    for module, name in ((probe.layerwise, "layers"), (probe.compare, "compare"), (probe.transfer.cli, "fuse")):
        monkeypatch.setattr(module, name, stand_in)
    assert main(command + ["--dtype", "bfloat16"]) == 2 and main(command) == 2
    assert seen == ["bfloat16", "float32"]


def test_quiet_load_prints_no_loading_weights_bar(home, tmp_path, capfd):
    from transformers import BertModel
    from transformers.utils import logging as hf_logging

    from probe.encoders import resolve_encoder
    from probe.loading import quiet_loading
    from standins import build_standin

    path = build_standin("bert", tmp_path / "bert")
    capfd.readouterr()
    BertModel.from_pretrained(path)  # the control: transformers draws the bar to stderr
    assert "Loading weights" in capfd.readouterr().err
    for enabled in (True, False):
        (hf_logging.enable_progress_bar if enabled else hf_logging.disable_progress_bar)()
        try:
            with quiet_loading():
                BertModel.from_pretrained(path, add_pooling_layer=False)
            resolve_encoder(str(path)).load()  # probe's own loading path
            assert "Loading weights" not in capfd.readouterr().err
            assert hf_logging.is_progress_bar_enabled() is enabled  # the previous state is back
        finally:
            hf_logging.enable_progress_bar()
