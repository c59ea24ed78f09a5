"""GPU extraction speed (issue 13, item 5): tokens/s of the extraction against the bare
forward of the very same batches, and the forward's share of the device's matrix rate.

For each model (default: the ``random:`` presets of mBERT and xlm-roberta-large size, so
no Hub is needed) and each precision (float32, bfloat16):

- ``extract``: :func:`probe.extraction.extract_corpus` end to end (tokenize, batch,
  forward, pool, write the entry) into a fresh cache, in pieces (tokens) per second;
- ``forward``: only ``model(**batch, output_hidden_states=True)`` over the same padded
  batches, already on the device, synchronised;
- ``peak``: a large square matrix product in the same precision, in FLOP/s; the forward's
  FLOPs (as ``probe plan`` counts them) divided by its time, over that rate.

``--batch-tokens auto`` takes the budget from free device memory (``probe.plan``).
``--quick``: a tiny stand-in on the CPU, a smoke run only (no figures).

    python benchmarks/bench_gpu.py --device cuda --batch-tokens auto
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time

from _common import machine, setup_env, tiny_module  # noqa: F401  (sets sys.path)

DEFAULT_MODELS = "random:bert-base-multilingual-cased,random:xlm-roberta-large"


def _sync(device):
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def _bare_forward_seconds(encoder, tok, batches, device, dtype, pad_id, rounds):
    import torch

    from probe.extraction import pad_batch

    prepared = [{name: t.to(device) for name, t in pad_batch([tok.units[i] for i in b], pad_id).items()}
                for b in batches]
    times = []
    for _ in range(rounds):
        _sync(device)
        t0 = time.perf_counter()
        with torch.inference_mode(), torch.autocast(torch.device(device).type, dtype=getattr(torch, dtype),
                                                    enabled=dtype != "float32"):
            for inputs in prepared:
                encoder.model(**inputs, output_hidden_states=True)
        _sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _forward_flops(config, params_nonemb, batches, lengths):
    L, H = int(config.num_hidden_layers), int(config.hidden_size)
    total = 0.0
    for b in batches:
        T = max(lengths[i] for i in b)
        total += len(b) * T * (2.0 * params_nonemb + 4.0 * L * T * H)
    return total


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default=DEFAULT_MODELS)
    p.add_argument("--dtypes", default="float32,bfloat16")
    p.add_argument("--device", default="cuda")
    p.add_argument("--lang", default="en")
    p.add_argument("--sentences", type=int, default=1000, help="first N English PUD sentences (default 1000)")
    p.add_argument("--batch-tokens", default="auto", help="a number, or auto (default)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="tiny stand-in on the CPU: smoke run, no figures")
    args = p.parse_args(argv)
    setup_env()
    import torch

    from probe.encoders import check_device, resolve_encoder
    from probe.extraction import Tokenization, extract_corpus, plan_batches
    from probe.plan import auto_batch_tokens, measure_flops_per_s

    if args.quick:
        tiny = tiny_module()
        specs = [tiny.tiny_spec(max_positions=128, name="tiny")]
        corpus = tiny.random_corpus(n=40)
        args.device, args.rounds = "cpu", 1
    else:
        specs = [resolve_encoder(m) for m in args.models.split(",")]
        from probe.data import get_corpus

        corpus = get_corpus("pud").load(args.lang, "test", progress=False)
        corpus.sentences = corpus.sentences[:args.sentences]
    device = check_device(args.device)
    print("== bench_gpu")
    print("machine: " + " ".join(f"{k}={v}" for k, v in machine().items()))
    if torch.device(device).type == "cuda":
        print(f"device: {torch.cuda.get_device_name(device)}")
    for spec in specs:
        encoder = spec.load()
        encoder.model.to(device=device, dtype=torch.float32).eval()
        cfg = encoder.model.config
        emb = encoder.model.get_input_embeddings()
        params = sum(q.numel() for q in encoder.model.parameters())
        params_nonemb = params - sum(q.numel() for q in emb.parameters())
        bt = (auto_batch_tokens(encoder.model, device, encoder.max_length) if args.batch_tokens == "auto"
              else int(args.batch_tokens))
        tok = Tokenization(encoder.tokenizer, [s.words for s in corpus.sentences], encoder.max_length, "first")
        lengths = [len(u.input_ids) for u in tok.units]
        batches = plan_batches(lengths, bt)
        n_tokens = sum(lengths)
        flops = _forward_flops(cfg, params_nonemb, batches, lengths)
        pad_id = encoder.tokenizer.pad_token_id or 0
        for dtype in args.dtypes.split(","):
            peak = measure_flops_per_s(device, dtype, seconds=0.5, size=8192 if device != "cpu" else 1024)
            fwd = _bare_forward_seconds(encoder, tok, batches, device, dtype, pad_id, args.rounds)
            ext = []
            for _ in range(args.rounds):
                with tempfile.TemporaryDirectory() as home:
                    import os

                    os.environ["PROBE_HOME"] = home
                    t0 = time.perf_counter()
                    extract_corpus(spec, corpus, batch_tokens=bt, device=device, dtype=dtype, encoder=encoder,
                                   progress=False)
                    ext.append(time.perf_counter() - t0)
            ext_s = statistics.median(ext)
            rate = flops / fwd
            print(f"RESULT {spec.name} {dtype} batch_tokens={bt}: extract {n_tokens / ext_s:,.0f} tok/s, "
                  f"bare forward {n_tokens / fwd:,.0f} tok/s (extract/forward time {ext_s / fwd:.2f}x); forward "
                  f"{rate / 1e12:.2f} TFLOP/s = {100 * rate / peak:.0f}% of the {peak / 1e12:.2f} TFLOP/s "
                  f"{dtype} matrix product")
        del encoder
        if torch.device(device).type == "cuda":
            torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    sys.exit(main())
