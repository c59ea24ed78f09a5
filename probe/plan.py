"""``probe plan``: what a run will extract, and what it will cost, before any work.

For each model and each cache entry a ``probe extract``/``layers``/``compare`` run needs,
the plan tokenizes the corpus exactly as the extraction will (same windows, same batches)
and reports:

- the cache size on disk: exact array sizes (``(L+1)`` float16 layers of
  ``[n_words, hidden]``, sentence vectors, offsets, labels) plus the JSON files;
- forward FLOPs: ``2 x non-embedding parameters`` per token, plus attention
  (``4 x T x hidden`` per token and layer) over the padded batches;
- peak memory: the runtime, the float32 weights, the hidden states of every layer of the
  batches in flight, attention scores and feed-forward activations of one layer, and the
  largest entry while it is published (an estimate, not a measurement; file-backed pages
  of a large entry count as resident until flushed, though the system can reclaim them);
- an estimated time: the FLOPs divided by a matrix-product rate measured now on the
  device (a few tenths of a second), so a busy machine shows as slower. An estimate.

It loads the tokenizer and the config, never the weights (parameters are counted on
PyTorch's ``meta`` device). Entries already in the cache are listed as cached (0 bytes to
write, no time).

>>> p = plan("random:xlm-roberta-large", "de,zh", command="compare")   # doctest: +SKIP
>>> print(p.format())                                                   # doctest: +SKIP
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from .errors import ProbeError

COMMANDS = ("extract", "layers", "compare")
_NPY_HEADER = 128  # np.save's version 1.0 header for these shapes
# Resident size before the weights load: Python, torch, transformers and a 250k-piece
# SentencePiece tokenizer (599 MiB measured for random:xlm-roberta-large's).
RUNTIME_BYTES = 600 << 20


@dataclass
class EntryPlan:
    corpus: str
    lang: str
    split: str
    pooling: str
    n_sentences: int
    n_words: int
    n_pieces: int
    padded_tokens: int
    disk_bytes: int
    flops: float
    cached: bool
    path: str


@dataclass
class ModelPlan:
    name: str
    n_layers: int
    hidden: int
    params: int
    params_embedding: int
    peak_bytes: int
    entries: list[EntryPlan] = field(default_factory=list)

    @property
    def disk_bytes(self) -> int:
        return sum(e.disk_bytes for e in self.entries if not e.cached)

    @property
    def flops(self) -> float:
        return sum(e.flops for e in self.entries if not e.cached)


@dataclass
class Plan:
    command: str
    device: str
    dtype: str
    flops_per_s: float
    models: list[ModelPlan]
    notes: list[str] = field(default_factory=list)

    @property
    def disk_bytes(self) -> int:
        return sum(m.disk_bytes for m in self.models)

    @property
    def seconds(self) -> float:
        return sum(m.flops for m in self.models) / self.flops_per_s

    def to_dict(self) -> dict:
        from dataclasses import asdict

        return {**asdict(self), "disk_bytes": self.disk_bytes, "seconds": self.seconds}

    def format(self) -> str:
        from .cache import human_bytes

        lines = [f"plan for `probe {self.command}` on {self.device} ({self.dtype}); nothing has been run"]
        for m in self.models:
            lines.append(f"\n{m.name}: L={m.n_layers} layers x {m.hidden} hidden, {m.params / 1e6:.0f}M parameters "
                         f"({m.params_embedding / 1e6:.0f}M in embeddings); peak memory ~{human_bytes(m.peak_bytes)} "
                         f"(estimate)")
            lines.append(f"  {'entry':34s} {'sents':>6s} {'words':>7s} {'pieces':>7s} {'disk':>10s} "
                         f"{'TFLOP':>8s} {'time':>8s}")
            for e in m.entries:
                what = f"{e.corpus}/{e.lang}/{e.split} ({e.pooling})"
                disk = "cached" if e.cached else human_bytes(e.disk_bytes)
                t = "-" if e.cached else _duration(e.flops / self.flops_per_s)
                lines.append(f"  {what[:34]:34s} {e.n_sentences:6d} {e.n_words:7d} {e.n_pieces:7d} {disk:>10s} "
                             f"{e.flops / 1e12:8.2f} {t:>8s}")
        lines.append(f"\ntotal to write: {human_bytes(self.disk_bytes)} of cache; forward "
                     f"{sum(m.flops for m in self.models) / 1e12:.1f} TFLOP; estimated extraction time "
                     f"{_duration(self.seconds)} at {self.flops_per_s / 1e9:.0f} GFLOP/s (a matrix product "
                     f"measured now on {self.device}; analysis time not included)")
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


# --------------------------------------------------------------------------- sizes
def _npy_bytes(shape: Sequence[int], itemsize: int) -> int:
    return _NPY_HEADER + int(np.prod(shape, dtype=np.int64)) * itemsize


def _json_bytes(obj) -> int:
    return len((json.dumps(obj, indent=1, ensure_ascii=False) + "\n").encode("utf-8"))


def entry_disk_bytes(data, n_layers: int, hidden: int) -> int:
    """Bytes an entry of ``data`` takes on disk: what :func:`~probe.extraction.extract_corpus`
    writes (``n_layers`` = L + 1 hidden-state layers), meta.json estimated at 4 KiB."""
    from .extraction import label_arrays

    n_words = sum(len(s.words) for s in data.sentences)
    n_sent = len(data.sentences)
    total = n_layers * _npy_bytes((n_words, hidden), 2)           # layer_XX.npy
    total += 2 * _npy_bytes((n_layers, n_sent, hidden), 2)         # sent_mean, sent_first
    total += _npy_bytes((n_sent + 1,), 8)                          # offsets
    if any(getattr(s, "n_first", None) is not None for s in data.sentences):
        total += _npy_bytes((n_words,), 1)                         # segment
    for arr, _vocab in label_arrays(data.sentences).values():
        total += _npy_bytes(arr.shape, arr.itemsize)
    total += _json_bytes([s.words for s in data.sentences]) + _json_bytes([s.sent_id for s in data.sentences])
    return total + 4096


# --------------------------------------------------------------------------- model facts
def _model_facts(spec):
    """``(config, tokenizer, params, embedding params)`` without loading weights."""
    from pathlib import Path

    import torch
    import transformers

    from .encoders import model_from_config

    if (Path(spec.source) / "config.json").is_file():
        config = transformers.AutoConfig.from_pretrained(spec.source)
        tokenizer = transformers.AutoTokenizer.from_pretrained(spec.source, use_fast=True)
        with torch.device("meta"):
            model = model_from_config(config)
    else:  # a spec built in code (tests): its loader is all there is
        model, tokenizer = spec.loader()
        config = model.config
    params = sum(p.numel() for p in model.parameters())
    emb = model.get_input_embeddings()
    emb_params = sum(p.numel() for p in emb.parameters()) if emb is not None else 0
    return model, config, tokenizer, params, emb_params


def measure_flops_per_s(device: str, dtype: str = "float32", seconds: float = 0.3, size: int = 1024) -> float:
    """Achieved FLOP/s of a ``[size, size] @ [size, size]`` product on ``device`` now."""
    import torch

    dev = torch.device(device)
    dt = getattr(torch, dtype)
    a = torch.randn(size, size, device=dev).to(dt)
    b = torch.randn(size, size, device=dev).to(dt)
    (a @ b).sum().item()  # warm-up
    n, t0 = 0, time.perf_counter()
    while True:
        (a @ b).sum().item()
        n += 1
        elapsed = time.perf_counter() - t0
        if elapsed >= seconds:
            return 2 * size ** 3 * n / elapsed


def auto_batch_tokens(model, device: str, max_length: int = 512, fraction: float = 0.5) -> int:
    """A token budget per batch that fits ``fraction`` of the device's free memory (with
    the model already on it): per token, every layer's hidden states (the extraction keeps
    them all), one layer's feed-forward activations, attention scores over ``max_length``
    and the Q/K/V/output projections, all float32. On the CPU: the default budget (larger
    batches do not run faster there)."""
    import torch

    from .extraction import DEFAULT_BATCH_TOKENS

    dev = torch.device(device)
    if dev.type != "cuda":
        return DEFAULT_BATCH_TOKENS
    free, _total = torch.cuda.mem_get_info(dev)
    if next(model.parameters()).device.type != "cuda":  # its float32 weights will move there first
        free -= sum(p.numel() for p in model.parameters()) * 4
    config = model.config
    L, H = int(config.num_hidden_layers), int(config.hidden_size)
    inter = int(getattr(config, "intermediate_size", 0) or getattr(config, "d_ff", 0) or 4 * H)
    heads = int(getattr(config, "num_attention_heads", 0) or 1)
    per_token = 4 * ((L + 1) * H + 2 * inter + heads * max_length + 4 * H)
    tokens = int(fraction * free // per_token)
    return max(max_length, min(tokens, 1 << 17))


def _wanted(command: str, targets: list[str], *, corpus, split, pooling, train, tatoeba, fusion):
    """``(corpus, lang, split, pooling)`` of every entry the command reads."""
    from .layerwise import SOURCE_LANG

    if command == "extract":
        return [(corpus, lang, split, pooling) for lang in targets]
    wanted = [(train[0], SOURCE_LANG, train[1], pooling)]
    wanted += [("pud", lang, "test", pooling) for lang in [SOURCE_LANG] + targets]
    if tatoeba:
        from .data.tatoeba import tatoeba_code

        for lang in targets:
            if tatoeba_code(lang):
                wanted += [("tatoeba", lang, "xx", "mean"), ("tatoeba", lang, "eng", "mean")]
    if command == "compare" and fusion:
        wanted += _fusion_wanted(targets)
    return wanted


def _fusion_wanted(targets, n_train=1500, n_dev=500, n_test=500, data_seed=0):
    """The entries of compare's DLFA run (POS on XTREME UDPOS, its defaults)."""
    from .data.xtreme import corpus_name, subsample_split, task_def
    from .layerwise import SOURCE_LANG
    from .transfer import FUSION_POOLING, target_split_of

    pooling = FUSION_POOLING[task_def("pos").kind]
    name = corpus_name("pos")
    out = [(name, SOURCE_LANG, subsample_split("train", n_train, data_seed), pooling),
           (name, SOURCE_LANG, subsample_split("dev", n_dev, data_seed), pooling)]
    return out + [(name, lang, subsample_split(target_split_of("pos", lang), n_test, data_seed), pooling)
                  for lang in targets]


def plan(models, langs, *, command: str = "compare", corpus: str = "pud", split: str | None = None,
         pooling: str = "first", tasks="pos", train: tuple[str, str] = ("ud", "dev+test"),
         tatoeba: bool = False, fusion: bool = True, batch_tokens: int | None = None,
         device: str | None = None, dtype: str = "float32", workers: int | None = None,
         progress: bool = False) -> Plan:
    """Size ``probe <command>`` for ``models`` and ``langs`` without running it (see module doc)."""
    import torch

    from .cache import open_entry
    from .data import get_corpus
    from .encoders import check_device, pick_device, resolve_encoder
    from .extraction import (DEFAULT_BATCH_TOKENS, Tokenization, cache_key, check_dtype, plan_batches,
                             resolve_workers)
    from .languages import parse_langs

    if command not in COMMANDS:
        raise ProbeError(f"unknown command to plan {command!r}; choose from {', '.join(COMMANDS)}")
    check_dtype(dtype)
    batch_tokens = batch_tokens or DEFAULT_BATCH_TOKENS
    if isinstance(models, str):
        models = [m.strip() for m in models.split(",") if m.strip()]
    targets = [lang.code for lang in parse_langs(langs)] if isinstance(langs, str) else list(langs)
    if command == "extract":
        split = split or get_corpus(corpus).splits[0]
    device = check_device(pick_device(device))
    workers, _ = resolve_workers(device, workers)
    specs = [resolve_encoder(m) if isinstance(m, str) else m for m in models]
    # (the probe tasks do not change what is extracted: every task reads the same entries)
    wanted = _wanted(command, targets, corpus=corpus, split=split, pooling=pooling, train=train,
                     tatoeba=tatoeba, fusion=fusion)
    loaded = {}
    out = []
    for spec in specs:
        model, config, tok, params, emb_params = _model_facts(spec)
        L, H = int(config.num_hidden_layers), int(config.hidden_size)
        inter = int(getattr(config, "intermediate_size", 0) or getattr(config, "d_ff", 0) or 4 * H)
        heads = int(getattr(config, "num_attention_heads", 0) or 1)
        from .encoders import model_max_length

        max_length = model_max_length(model, tok)
        mp = ModelPlan(spec.name, L, H, params, emb_params, 0)
        biggest_batch = 0
        biggest_entry = 0
        for c, lang, sp, pool in wanted:
            key = (c, lang, sp)
            if key not in loaded:
                loaded[key] = get_corpus(c).load(lang, sp, progress=progress)
            data = loaded[key]
            n_first = [getattr(s, "n_first", None) for s in data.sentences]
            is_pair = any(k is not None for k in n_first)
            tz = Tokenization(tok, [s.words for s in data.sentences], max_length, pool,
                              n_first=n_first if is_pair else None)
            lengths = [len(u.input_ids) for u in tz.units]
            padded, flops = 0, 0.0
            for b in plan_batches(lengths, batch_tokens):
                T = max(lengths[i] for i in b)
                padded += T * len(b)
                biggest_batch = max(biggest_batch, T * len(b))
                # linear layers: 2 FLOPs per weight per token; attention: QK^T and AV
                flops += len(b) * T * (2.0 * (params - emb_params) + 4.0 * L * T * H)
            disk = entry_disk_bytes(data, L + 1, H)
            biggest_entry = max(biggest_entry, disk)
            hit = open_entry(cache_key(spec, data, pool, device=device, dtype=dtype)) is not None
            path = str(cache_key(spec, data, pool, device=device, dtype=dtype).path)
            mp.entries.append(EntryPlan(c, lang, sp, pool, len(data.sentences), data.n_words, int(sum(lengths)),
                                        padded, disk, flops, hit, path))
        # float32 weights; per batch in flight: every layer's hidden states, one layer's
        # attention scores and feed-forward activations (float32); the entry assembly.
        T_max = max_length
        act = biggest_batch * (L + 1) * H * 4 + (biggest_batch // max(1, min(T_max, biggest_batch))) \
            * heads * min(T_max, biggest_batch) ** 2 * 4 + biggest_batch * inter * 4 * 2
        # The publish holds the whole entry in memory (small entries) or writes it through
        # memmaps whose dirty file pages count in the resident size until flushed (large).
        assembly = biggest_entry
        mp.peak_bytes = int(RUNTIME_BYTES + params * 4 + workers * act + assembly)
        out.append(mp)
        del model
    rate = measure_flops_per_s(device, dtype)
    notes = []
    if torch.device(device).type == "cpu":
        import os

        notes.append(f"load average now {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores: a busy machine "
                     f"measures (and runs) slower")
    return Plan(command, device, dtype, rate, out, notes)


# --------------------------------------------------------------------------- CLI
def add_parser(subparsers):
    from .options import add_dtype_option

    import argparse

    p = subparsers.add_parser(
        "plan", help="size a run before starting it: entries, cache size, memory, FLOPs, time",
        description="Print what `probe extract`, `probe layers` or `probe compare` would extract for the "
                    "given models and languages, the cache size it would write, peak memory, forward "
                    "FLOPs and an estimated extraction time on this device, without running anything "
                    "(tokenizers and configs are read; weights are not loaded).")
    p.add_argument("what", nargs="?", default="compare", choices=list(COMMANDS),
                   help="the command to plan (default: compare)")
    p.add_argument("--models", "--model", dest="models", required=True, help="comma-separated encoders")
    p.add_argument("--lang", required=True, help="comma-separated languages (targets for layers/compare)")
    p.add_argument("--corpus", default="pud", help="extract: the corpus (default: pud)")
    p.add_argument("--split", default=None, help="extract: the split (default: the corpus's first)")
    p.add_argument("--pooling", default="first", choices=["first", "mean", "last"])
    p.add_argument("--train", default="ud:dev+test", help="layers/compare: English probe training data")
    p.add_argument("--tatoeba", action=argparse.BooleanOptionalAction, default=None,
                   help="include Tatoeba retrieval (default: as the command does: layers yes, compare no)")
    p.add_argument("--no-fusion", action="store_true", help="compare: without the DLFA fusion runs")
    p.add_argument("--batch-tokens", type=int, default=None)
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N, mps or auto (default: auto)")
    add_dtype_option(p)
    p.add_argument("--json", action="store_true", help="print the plan as JSON")
    return p


def run(args) -> int:
    from .layerwise import parse_train

    p = plan(args.models, args.lang, command=args.what, corpus=args.corpus, split=args.split,
             pooling=args.pooling, train=parse_train(args.train),
             tatoeba=(args.what == "layers") if args.tatoeba is None else args.tatoeba,
             fusion=not args.no_fusion, batch_tokens=args.batch_tokens,
             device=None if args.device == "auto" else args.device, dtype=args.dtype)
    print(json.dumps(p.to_dict(), indent=1) if args.json else p.format())
    return 0
