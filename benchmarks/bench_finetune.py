"""Fine-tuning throughput: ``probe finetune``'s training step vs the bare forward+backward.

On the same batches of English XTREME POS sentences (32 per batch, length-bucketed as the
trainer does), timed in alternating order, median over rounds:

- ``train step (sparse rows)``: what ``probe finetune`` runs by default: collate, forward,
  loss, backward with a sparse word-embedding gradient, global-norm clipping, AdamW on the
  dense parameters and the row-wise AdamW on the used embedding rows;
- ``bare fwd+bwd``: the same model and gradient settings, pre-collated batches, forward +
  loss + backward only (no clipping, no optimiser) - the floor a training step can reach;
- for reference: the step with the embedding matrix frozen, with dense AdamW over every row
  (``full``), and the forward alone (inference mode).

Target: the training step within 1.3x of the bare forward+backward (tokens/s). GPU: not yet
measured on a GPU (this machine has none).

    python benchmarks/bench_finetune.py [--batches 6] [--rounds 3] [--threads 2]
    python benchmarks/bench_finetune.py --quick            # tiny random encoder, smoke run
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402


def _data(args, tokenizer):
    from probe import finetuning as ft
    from probe.data.xtreme import UPOS_TAGS

    if args.quick:
        tiny = C.tiny_module()
        corpus = tiny.random_corpus(n=32 * args.batches, seed=0)
        sents = [type("S", (), {"words": s.words, "tags": s.upos})() for s in corpus.sentences]
        labels = list(UPOS_TAGS)
    else:
        from probe.data import get_corpus

        sents = get_corpus("xtreme-pos").load("en", f"train@{32 * args.batches}s0",
                                              progress=False).sentences
        labels = list(UPOS_TAGS)
    return ft.encode_examples(tokenizer, sents, "tagging", labels, max_length=128), labels


def main(argv=None) -> int:
    p = C.parser(__doc__, home="PROBE_HOME (default /tmp/benchhome)",
                 quick="tiny random encoder, 2 batches, 1 round (smoke run)", threads=True)
    p.add_argument("--model", default="e5-small-q4")
    p.add_argument("--batches", type=int, default=6, help="batches of 32 sentences (default 6)")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds (default 3)")
    args = p.parse_args(argv)
    if args.quick:
        args.model, args.batches, args.rounds = "tiny", 2, 1
    C.setup_env(args.home)
    import torch

    from probe import finetuning as ft
    from probe.threads import torch_threads

    C.print_machine("bench_finetune")
    with torch_threads(C.threads_for(args)):
        enc = C.resolve_model(args.model).load()
        data, labels = _data(args, enc.tokenizer)
        pad = enc.tokenizer.pad_token_id or 0
        init = {k: v.clone() for k, v in enc.model.state_dict().items()}
        params = {**ft.RECIPE, "adam_betas": list(ft.RECIPE["adam_betas"]), "grad_accum": 1,
                  "epochs": 1, "precision": "fp32", "r": 4, "norm": "layer",
                  "eval_batch_size": 64}

        def trainer(mode):
            enc.model.load_state_dict(init)
            torch.manual_seed(0)
            net = ft.FinetuneModel(enc.model, "tagging", len(labels), ft.FusionSpec("none"))
            return ft.training.Trainer(net, data, None, kind="tagging", metric="accuracy",
                                       label_names=labels, params={**params, "embeddings": mode},
                                       seed=0, pad_id=pad, device="cpu", ckpt_path=None,
                                       log=lambda m: None)

        trainers = {m: trainer(m) for m in ("sparse", "freeze", "full")}
        # the three trainers share one encoder; each call re-applies its own embedding mode
        def use(mode):
            emb = enc.model.get_input_embeddings()
            emb.weight.requires_grad_(mode != "freeze")
            emb.sparse = mode == "sparse"
            return trainers[mode]

        batches = trainers["sparse"].epoch_batches(1)
        tokens = int(sum(data.lengths[b].sum() for b in batches))
        collated = [ft.encoding.collate(data, b, pad, "cpu") for b in batches]
        print(f"data: {len(data)} English POS sentences, {len(batches)} batches of 32, "
              f"{tokens} tokens (padding excluded); model {args.model}")

        def steps(mode):
            def go():
                t = use(mode)
                for b in batches:
                    t.train_step(b)
            return go

        def bare():
            t = use("sparse")
            t.model.train()
            for ids, mask, types, y in collated:
                loss = (ft.training.summed_loss(t.model(ids, mask, types), y)
                        / (y != ft.IGNORE).sum())
                loss.backward()
                t.model.zero_grad(set_to_none=True)

        def forward():
            t = use("sparse")
            t.model.eval()
            with torch.inference_mode():
                for ids, mask, types, _ in collated:
                    t.model(ids, mask, types)

        variants = {"train step (sparse rows)": steps("sparse"), "bare fwd+bwd": bare,
                    "train step (embeddings frozen)": steps("freeze"),
                    "train step (dense AdamW, every row)": steps("full"), "forward only": forward}
        bare()  # warm-up: first backward allocates and initialises lazily
        times = C.interleaved(variants, args.rounds)
        for name, ts in times.items():
            print(f"{name:38s} {tokens / C.med(ts):9.1f} tokens/s  (median of {len(ts)}: "
                  f"{C.med(ts):.2f} s)")
        r = C.med(times["train step (sparse rows)"]) / C.med(times["bare fwd+bwd"])
        C.ratio_line("train step (sparse rows) time / bare fwd+bwd time", r, "<= 1.3x",
                     None if args.quick else r <= 1.3)
        fr = C.med(times["forward only"]) / C.med(times["train step (sparse rows)"])
        print(f"train step tokens/s = {fr:.2f}x the forward's")
    print("GPU: not yet measured on a GPU (no GPU on this machine)")
    C.print_load_after()
    return 0


if __name__ == "__main__":
    sys.exit(main())
