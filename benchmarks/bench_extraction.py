"""Extraction throughput: our extractor vs a naive per-sentence loop vs the bare forward pass.

Variants, timed in this process in alternating order (medians of ``--rounds``):

- ``ours``: ``probe.extraction.extract_corpus`` end to end into a throwaway PROBE_HOME
  (tokenization and alignment, length-sorted token-budget batches, forward, pooling,
  chunk writes, assembling and publishing the entry with its checksums);
- ``ours-ckpt0``: the same with ``PROBE_CHECKPOINT_SECONDS=0``: every finished chunk is
  written to disk (npz, fsync) at once, as for entries too large to keep in memory; by
  default a run this short keeps its chunks in memory and writes none (see
  ``probe.extraction.CHECKPOINT_SECONDS``);
- ``ours-inner``: its inner loop only: forward + pooling (``forward_batch``) + a chunk
  write after every chunk in a background thread (the extractor's loop with
  ``PROBE_CHECKPOINT_SECONDS=0``);
- ``naive``: a per-sentence Hugging Face loop (tokenize one sentence with
  ``is_split_into_words``, forward with ``output_hidden_states=True``, first piece of each
  word via ``word_ids``, append to Python lists);
- ``bare``: the model's forward pass alone over the very batches ``ours`` runs, run the same
  way (on CPU: ``probe.extraction.CPU_WORKERS`` batches at once, each with its share of
  torch's threads; ``--workers`` overrides);
- ``bare-1``: the same forward passes one batch at a time with all of torch's threads (the
  usual loop; reported for reference);
- ``matmul``: a float32 ``[batch_tokens, H] @ [H, 4H]`` matmul, the machine's reference rate.

FLOPs of the forward pass are counted with ``torch.utils.flop_counter.FlopCounterMode`` on
the real (padded) batches, CPU attention kernels included.

    python benchmarks/bench_extraction.py                 # English PUD, 300 sentences, e5-small-q4
    python benchmarks/bench_extraction.py --quick         # smoke run
"""
from __future__ import annotations

import dataclasses
import os
import shutil
import sys
import tempfile
from pathlib import Path
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402


def _corpus(args, spec):
    if args.model.startswith("tiny"):
        return C.tiny_module().random_corpus(n=args.sentences, seed=1, max_len=30)
    from probe.data import load_corpus

    full = load_corpus("pud", args.lang, "test", progress=False)
    return dataclasses.replace(full, sentences=full.sentences[:args.sentences],
                               split=f"test[:{args.sentences}]")


def _batches(encoder, data, batch_tokens):
    """The (ids, attention mask) tensors of the batches extract_corpus runs, in its order."""
    from probe.extraction import Tokenization, pad_batch, plan_batches

    tok = Tokenization(encoder.tokenizer, [s.words for s in data.sentences], encoder.max_length, "first")
    lengths = [len(u.input_ids) for u in tok.units]
    pad = encoder.tokenizer.pad_token_id if encoder.tokenizer.pad_token_id is not None else 0
    out = []
    for b in plan_batches(lengths, batch_tokens):
        inputs = pad_batch([tok.units[i] for i in b], pad)
        out.append((inputs["input_ids"], inputs["attention_mask"]))
    return tok, out


def _inner_loop(encoder, tok, batch_tokens, workdir: Path, workers: int):
    """extract_corpus's loop body: forward + pooling (``workers`` batches at once) + one
    chunk file per token budget, written by one background thread while the next chunk's
    forward runs (as there with a checkpoint after every chunk)."""
    from concurrent.futures import ThreadPoolExecutor

    from probe.extraction import forward_batch, in_order, plan_batches

    lengths = [len(u.input_ids) for u in tok.units]
    pad = encoder.tokenizer.pad_token_id if encoder.tokenizer.pad_token_id is not None else 0
    parts, cur_tok, k, pending = [], 0, 0, None
    plan = plan_batches(lengths, batch_tokens)
    results = in_order(lambda b: forward_batch(encoder, [tok.units[u] for u in b], "cpu", pad), plan, workers)
    with ThreadPoolExecutor(max_workers=1) as writer:
        for b in plan:
            parts.append(next(results))
            cur_tok += sum(lengths[i] for i in b)
            if cur_tok >= batch_tokens:
                if pending is not None:
                    pending.result()
                pending = writer.submit(_write_chunk, workdir / f"chunk_{k:05d}.npz", parts)
                parts, cur_tok, k = [], 0, k + 1
        if parts:
            if pending is not None:
                pending.result()
            pending = writer.submit(_write_chunk, workdir / f"chunk_{k:05d}.npz", parts)
        if pending is not None:
            pending.result()


def _write_chunk(path, parts):
    import numpy as np

    from probe.cache import atomic_save_npz

    atomic_save_npz(path, vecs=np.concatenate([p[0] for p in parts], axis=1),  # float16 already
                    words=np.concatenate([p[1] for p in parts]),
                    first=np.concatenate([p[2] for p in parts], axis=1),
                    first_sent=np.concatenate([p[3] for p in parts]))


def _naive(encoder, data):
    """The per-sentence loop people write first."""
    import numpy as np
    import torch

    model, tokenizer = encoder.model, encoder.tokenizer
    per_layer = [[] for _ in range(encoder.n_layers + 1)]
    with torch.no_grad():
        for s in data.sentences:
            enc = tokenizer(s.words, is_split_into_words=True, return_tensors="pt", truncation=True,
                            max_length=encoder.max_length)
            out = model(**enc, output_hidden_states=True)
            first, seen = [], set()
            for i, w in enumerate(enc.word_ids(0)):
                if w is not None and w not in seen:
                    seen.add(w)
                    first.append(i)
            for layer, h in enumerate(out.hidden_states):
                per_layer[layer].append(h[0, first].numpy())
    return [np.concatenate(x) for x in per_layer]


def _flops(model, batches) -> int:
    import torch
    from torch.utils import flop_counter as fcm

    def sdpa(q, k, v, *args, out_shape=None, **kwargs):
        return fcm.sdpa_flop_count(q, k, v)

    custom = {}
    for name in ("_scaled_dot_product_flash_attention_for_cpu",):
        op = getattr(torch.ops.aten, name, None)
        if op is not None:
            custom[op] = sdpa
    with torch.inference_mode(), fcm.FlopCounterMode(display=False, custom_mapping=custom) as fc:
        for ids, att in batches:
            model(input_ids=ids, attention_mask=att, output_hidden_states=True)
    return int(fc.get_total_flops())


def main(argv=None) -> int:
    p = C.parser(__doc__, home="PROBE_HOME holding the converted model (default $PROBE_HOME or "
                                   "/tmp/benchhome); cache writes go to throwaway directories",
                 quick="smoke run: 24 sentences, 2 rounds", threads=True)
    p.add_argument("--model", default="e5-small-q4", help="encoder (tiny[@max_positions]: tests' random "
                                                          "encoder on a random corpus, smoke runs only)")
    p.add_argument("--lang", default="en", help="PUD language (default en)")
    p.add_argument("--sentences", type=int, default=300, help="first N PUD sentences (default 300)")
    p.add_argument("--rounds", type=int, default=5, help="timed rounds per variant (default 5)")
    p.add_argument("--naive-rounds", type=int, default=3,
                   help="rounds of the slow naive loop, within the first rounds (default 3)")
    p.add_argument("--batch-tokens", type=int, default=None, help="default: the extractor's default")
    p.add_argument("--workers", type=int, default=None,
                   help="batches at once on CPU (default: the extractor's choice, see "
                        "probe.extraction.resolve_workers)")
    args = p.parse_args(argv)
    from probe.threads import torch_threads

    with torch_threads(C.threads_for(args)):
        return _run(args)


def _run(args) -> int:
    if args.quick:
        args.sentences, args.rounds, args.naive_rounds = min(args.sentences, 24), min(args.rounds, 2), 2
    home = C.setup_env(args.home)

    import torch

    from probe.extraction import DEFAULT_BATCH_TOKENS, in_order, extract_corpus, resolve_workers
    from probe.threads import torch_threads

    batch_tokens = args.batch_tokens or DEFAULT_BATCH_TOKENS
    workers, intra_op = resolve_workers("cpu", args.workers)
    C.print_machine("bench_extraction")
    spec = C.resolve_model(args.model)
    encoder = spec.load()
    encoder.model.to("cpu").eval()
    data = _corpus(args, spec)
    n_words = sum(len(s.words) for s in data.sentences)
    tok, batches = _batches(encoder, data, batch_tokens)
    n_tokens = sum(int(a.sum()) for _, a in batches)
    n_padded = sum(a.numel() for _, a in batches)
    print(f"model {spec.name} ({encoder.n_layers} layers, hidden {encoder.hidden}); corpus "
          f"{data.name}/{data.lang}/{data.split}: {len(data.sentences)} sentences, {n_words} words, "
          f"{n_tokens} tokens in {len(batches)} batches of <= {batch_tokens} tokens "
          f"({n_padded - n_tokens} padding); {args.rounds} rounds ({min(args.rounds, args.naive_rounds)} of "
          f"the naive loop); ours and bare: {workers} batch(es) at once x {intra_op} torch thread(s), "
          f"bare-1 and naive: 1 x {torch.get_num_threads()}")

    H = encoder.hidden
    rows = min(batch_tokens, 8192)
    A, B = torch.randn(rows, H), torch.randn(H, 4 * H)
    mm_reps = 20

    def forward(batch):
        with torch.inference_mode():
            encoder.model(input_ids=batch[0], attention_mask=batch[1], output_hidden_states=True)

    def bare_1():
        for b in batches:
            forward(b)

    def bare():
        with torch_threads(intra_op):
            for _ in in_order(forward, batches, workers):
                pass

    def matmul():
        for _ in range(mm_reps):
            torch.mm(A, B)

    homes, scratch = [], []

    def new_home():
        homes.append(tempfile.mkdtemp(prefix="bench-extract-"))
        os.environ["PROBE_HOME"] = homes[-1]

    def new_scratch():
        scratch.append(Path(tempfile.mkdtemp(prefix="bench-inner-")))

    def ours():
        extract_corpus(spec, data, batch_tokens=batch_tokens, device="cpu", progress=False, encoder=encoder,
                       workers=workers)

    def ours_ckpt0():
        with mock.patch.dict(os.environ, {"PROBE_CHECKPOINT_SECONDS": "0"}):
            ours()

    def inner():
        with torch_threads(intra_op):
            _inner_loop(encoder, tok, batch_tokens, scratch[-1], workers)

    # warm-up (oneDNN kernels, allocator): every variant once, untimed
    bare()
    bare_1()
    matmul()
    _naive(encoder, dataclasses.replace(data, sentences=data.sentences[:5]))
    flops = _flops(encoder.model, batches)

    variants = {"ours": ours, "ours-ckpt0": ours_ckpt0, "ours-inner": inner,
                "naive": lambda: _naive(encoder, data), "bare": bare, "bare-1": bare_1,
                "matmul": matmul}
    try:
        times = C.interleaved(variants, args.rounds, setup={"ours": new_home, "ours-ckpt0": new_home,
                                                                "ours-inner": new_scratch},
                              max_rounds={"naive": args.naive_rounds})
    finally:
        for h in homes:
            shutil.rmtree(h, ignore_errors=True)
        for s in scratch:
            shutil.rmtree(s, ignore_errors=True)
        os.environ["PROBE_HOME"] = home
    m = {k: C.med(v) for k, v in times.items()}

    print(f"{'variant':12s} {'median s':>9s} {'min s':>8s} {'max s':>8s} {'runs':>4s} {'words/s':>9s}")
    for k in ("ours", "ours-ckpt0", "ours-inner", "naive", "bare", "bare-1"):
        print(f"{k:12s} {m[k]:9.3f} {min(times[k]):8.3f} {max(times[k]):8.3f} {len(times[k]):4d} "
              f"{n_words / m[k]:9.0f}")
    b = {k: min(v) for k, v in times.items()}
    print(f"best-of (min) ratios, less exposed to other jobs on the machine: naive/ours "
          f"{b['naive'] / b['ours']:.2f}x, inner/bare {b['ours-inner'] / b['bare']:.2f}x, ours/bare "
          f"{b['ours'] / b['bare']:.2f}x, forward/matmul rate "
          f"{(flops / b['bare']) / (2.0 * rows * H * 4 * H * mm_reps / b['matmul']):.2f}x")
    mm_flops = 2.0 * rows * H * 4 * H * mm_reps
    mm_rate = mm_flops / m["matmul"] / 1e9
    fwd_rate = flops / m["bare"] / 1e9
    ours_rate = flops / m["ours"] / 1e9
    print(f"forward FLOPs (FlopCounterMode, real padded batches): {flops / 1e9:.2f} GFLOP "
          f"({flops / max(n_tokens, 1) / 1e6:.1f} MFLOP per real token)")
    print(f"achieved: bare forward {fwd_rate:.1f} GFLOP/s, ours end to end {ours_rate:.1f} GFLOP/s; "
          f"float32 matmul [{rows}, {H}] @ [{H}, {4 * H}]: {mm_rate:.1f} GFLOP/s "
          f"(median of {len(times['matmul'])} x {mm_reps} matmuls)")
    useful = flops * n_tokens / max(n_padded, 1)
    print(f"padding: {1 - n_tokens / max(n_padded, 1):.1%} of the positions in the forward batches; "
          f"useful (non-padding) work ~{useful / 1e9:.1f} GFLOP (scaled by the token share: exact for "
          f"the linear layers) -> bare forward ~{useful / m['bare'] / 1e9:.1f}, naive loop "
          f"~{useful / m['naive'] / 1e9:.1f} useful GFLOP/s")
    print(f"batches side by side: bare-1 / bare = {m['bare-1'] / m['bare']:.2f}x ({workers} x {intra_op} "
          f"threads vs 1 x {torch.get_num_threads()}); naive / bare-1 = {m['naive'] / m['bare-1']:.2f}x")
    C.ratio_line("words/s ours (extract_corpus, end to end) / naive per-sentence loop",
                 m["naive"] / m["ours"], ">= 2.5x", m["naive"] / m["ours"] >= 2.5)
    C.ratio_line("time ours inner loop (forward + pooling + chunk writes) / bare forward",
                 m["ours-inner"] / m["bare"], "<= 1.2x", m["ours-inner"] / m["bare"] <= 1.2)
    C.ratio_line("time ours end to end (+ tokenization, alignment, publish) / bare forward",
                 m["ours"] / m["bare"], "<= 1.2x", m["ours"] / m["bare"] <= 1.2)
    C.ratio_line("time ours with a checkpoint after every chunk (PROBE_CHECKPOINT_SECONDS=0) / bare forward",
                 m["ours-ckpt0"] / m["bare"], "<= 1.2x", m["ours-ckpt0"] / m["bare"] <= 1.2)
    C.ratio_line("forward GFLOP/s / float32 matmul GFLOP/s", fwd_rate / mm_rate, ">= 0.50x",
                 fwd_rate / mm_rate >= 0.5)
    useful_rate = useful / m["bare"] / 1e9
    C.ratio_line("useful forward GFLOP/s (padding excluded) / float32 matmul GFLOP/s", useful_rate / mm_rate,
                 ">= 0.50x", useful_rate / mm_rate >= 0.5)
    C.print_load_after()
    return 0


if __name__ == "__main__":
    sys.exit(main())
