"""``probe finetune``: the sub-command's parser (:func:`add_parser`) and :func:`run`, which
calls :func:`probe.finetune`, prints the table and saves the report and figures.
"""
from __future__ import annotations

import sys
from pathlib import Path

from ..encoders import DEFAULT_MODEL
from ..options import count_or_all
from .driver import PRECISIONS, RECIPE, TASK_BUDGETS, finetune


def add_parser(subparsers) -> None:
    """Add the ``finetune`` command to an ``argparse`` subparsers object."""
    import argparse

    p = subparsers.add_parser(
        "finetune", help="fine-tune the encoder end to end (optionally with DLFA), zero-shot eval",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "The paper's experiment (arXiv 2205.08497): fine-tune the whole encoder with a task\n"
            "head on English, keep the epoch with the best English-dev score, evaluate zero-shot\n"
            "on each target. --fusion none is standard fine-tuning; dlfa:K fuses layer K with the\n"
            "last layer through AIF/DLFA (trained jointly); dlfa:all runs every K and picks K on\n"
            "English dev; dlfa-matched:K (DLFA's parameters, gate fixed at 0.5) and dlfa-fixed:K\n"
            "(gate 0.5, no block) are controls: DLFA's gain over them is reported. Recipe defaults\n"
            "are XTREME's (AdamW, lr 2e-5, linear warm-up/decay, batch 32, max length 128).\n"
            "Interrupted runs resume after the last finished epoch. Prints zero-shot scores\n"
            "with 95% intervals (seeds and sentences), majority and chance rates (the same\n"
            "definitions as probe fuse), drops PAWS-X target pairs that are English training\n"
            "pairs (count reported), and writes\n"
            "finetune.json and figures to --out. Layer 0 is the embedding output."))
    p.add_argument("--task", required=True, choices=["pos", "ner", "xnli", "pawsx"])
    p.add_argument("--lang", required=True, help="comma-separated target languages, e.g. de,zh")
    p.add_argument("--model", default=DEFAULT_MODEL,
                   help="encoder: e5-small-q4 (offline), auto (bert-base-multilingual-cased, the paper's "
                        "model, if loadable, else e5-small-q4), a Hugging Face id or a local directory "
                        "(default: auto)")
    p.add_argument("--fusion", default="none",
                   help="none, dlfa:K, dlfa:all, dlfa-fixed:K, dlfa-matched:K (capacity-matched control), "
                        "or a comma list (default: none)")
    p.add_argument("--seeds", default="1", help="number of seeds, or a comma list (default: 1)")
    p.add_argument("--max-examples", type=count_or_all, default="auto", metavar="N|all",
                   help="seeded subsample of English training examples (default: auto = "
                        + ", ".join(f"{t} {b[0] or 'all'}" for t, b in TASK_BUDGETS.items()) + ")")
    p.add_argument("--max-dev", type=count_or_all, default="auto", metavar="N|all",
                   help="seeded subsample of English dev (default: auto)")
    p.add_argument("--max-test", type=count_or_all, default="auto", metavar="N|all",
                   help="seeded subsample of each target (default: auto)")
    p.add_argument("--epochs", type=int, default=3, help="training epochs (default: 3)")
    p.add_argument("--lr", type=float, default=RECIPE["lr"], help="peak learning rate (default: 2e-5)")
    p.add_argument("--warmup", type=float, default=RECIPE["warmup"],
                   help="warm-up fraction of the steps (default: 0.1)")
    p.add_argument("--batch-size", type=int, default=RECIPE["batch_size"], help="(default: 32)")
    p.add_argument("--grad-accum", type=int, default=1,
                   help="micro-batches per optimiser step (default: 1)")
    p.add_argument("--max-length", type=int, default=RECIPE["max_length"], help="(default: 128)")
    p.add_argument("--weight-decay", type=float, default=RECIPE["weight_decay"], help="(default: 0)")
    p.add_argument("--max-grad-norm", type=float, default=RECIPE["max_grad_norm"], help="(default: 1)")
    p.add_argument("--dropout", type=float, default=RECIPE["dropout"], help="head dropout (default: 0.1)")
    p.add_argument("--dtype", default=None, choices=list(PRECISIONS),
                   help="precision of forward and backward; bfloat16/float16 run under autocast "
                        "(float16 with a gradient scaler on CUDA) (default: float32)")
    p.add_argument("--precision", default=None, choices=list(PRECISIONS.values()),
                   help="deprecated alias of --dtype (fp32, bf16, fp16)")
    p.add_argument("--embeddings", default="sparse", choices=["sparse", "freeze", "full"],
                   help="word-embedding updates: only rows a batch uses (sparse), none (freeze) or "
                        "dense AdamW (full) (default: sparse)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--n-boot", type=int, default=1000, help="bootstrap replicates (default: 1000)")
    p.add_argument("--device", default="auto", help="cuda, mps, cpu or auto")
    p.add_argument("--out", default=None, help="output directory (default: out/finetune/<task>)")
    p.add_argument("--save-model", default=None, metavar="DIR",
                   help="write the fine-tuned encoder as a Hugging Face model directory")
    p.add_argument("--quiet", action="store_true", help="no stage messages")


def run(args) -> int:
    """Run ``probe finetune`` from parsed arguments (finetune() registers the corpora)."""
    out = Path(args.out or Path("out") / "finetune" / args.task)
    if args.precision is not None:
        print("probe: note: --precision is deprecated; use --dtype float32|bfloat16|float16",
              file=sys.stderr)
    res = finetune(args.task, args.lang, model=args.model, fusion=args.fusion, seeds=args.seeds,
                   max_examples=args.max_examples, max_dev=args.max_dev, max_test=args.max_test,
                   epochs=args.epochs, lr=args.lr, warmup=args.warmup, batch_size=args.batch_size,
                   grad_accum=args.grad_accum, max_length=args.max_length,
                   weight_decay=args.weight_decay, max_grad_norm=args.max_grad_norm,
                   dropout=args.dropout, dtype=args.dtype, precision=args.precision,
                   embeddings=args.embeddings,
                   n_threads=args.threads, n_boot=args.n_boot,
                   device=None if args.device == "auto" else args.device, out=out,
                   save_model=args.save_model, progress=not args.quiet)
    print(res.format_table())
    paths = res.save(out)
    t = res.report["timings_s"]["total"]
    print(f"wrote {out}/finetune.json and {sum(1 for p in paths if p.suffix == '.png')} figure(s); "
          f"total {t:.0f} s")
    return 0
