"""``probe compare``: the sub-command's parser (:func:`add_parser`) and :func:`run`, which calls
:func:`probe.compare`, prints the peak table and the noise verdicts, and saves the report and
figure.
"""
from __future__ import annotations

from pathlib import Path

from ..options import add_dtype_option
from ..tasks import POS


def add_parser(subparsers):
    """Add the ``compare`` command to an ``argparse`` subparsers object."""
    p = subparsers.add_parser(
        "compare", help="compare encoders' layer trade-off on one axis of relative depth",
        description="Run the per-layer analysis (probes, CKA, retrieval) for each model and a small "
                    "DLFA fusion run, and plot them against relative depth (layer / L), so models of "
                    "different depth share a figure. Prints each model's peak layers (absolute and "
                    "relative), the layers within noise of each peak, the fusion gain, and whether the "
                    "models' differences are within noise. Layer 0 is the embedding output; layer L "
                    "is the last transformer layer.")
    p.add_argument("--models", required=True,
                   help="comma-separated encoders, e.g. e5-small-q4,random:e5-small-q4 or (with the Hub) "
                        "bert-base-multilingual-cased,xlm-roberta-base,xlm-roberta-large")
    p.add_argument("--lang", required=True, help="comma-separated target languages with a PUD treebank")
    p.add_argument("--tasks", default=POS, help=f"probe tasks (default: {POS})")
    p.add_argument("--no-fusion", action="store_true", help="skip the DLFA fusion runs")
    p.add_argument("--fusion-depth", type=float, default=0.5,
                   help="relative depth of the layer DLFA fuses with the last one (default: 0.5)")
    p.add_argument("--fusion-seeds", type=int, default=2, help="training seeds per fusion run (default: 2)")
    p.add_argument("--fusion-examples", type=int, default=1500,
                   help="seeded subsample of English POS training sentences (default: 1500)")
    p.add_argument("--tatoeba", action="store_true", help="also compute Tatoeba retrieval")
    p.add_argument("--train", default="ud:dev+test", help="English probe training data (default: ud:dev+test)")
    p.add_argument("--seed", type=int, default=0, help="seed of probes and bootstrap (default: 0)")
    p.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples (default: 1000)")
    p.add_argument("--max-iter", type=int, default=30, help="L-BFGS iterations per probe (default: 30)")
    p.add_argument("--out", default="out/compare", help="output directory (default: out/compare)")
    p.add_argument("--device", default="auto", help="cuda, mps, cpu or auto (default: auto)")
    add_dtype_option(p)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def run(args) -> int:
    """Run ``probe compare`` with parsed ``args``; returns the exit status."""
    from ..layerwise import parse_train
    from . import compare  # the package's public function, looked up at call time (a patched one too)

    res = compare(args.models, args.lang, tasks=args.tasks, fusion=not args.no_fusion,
                  fusion_depth=args.fusion_depth, fusion_seeds=args.fusion_seeds,
                  fusion_examples=args.fusion_examples, seed=args.seed, n_boot=args.n_boot,
                  train=parse_train(args.train), max_iter=args.max_iter, tatoeba=args.tatoeba,
                  progress=not args.quiet, device=args.device, dtype=args.dtype)
    import pandas as pd

    with pd.option_context("display.width", 200, "display.max_columns", 40):
        print(f"Peak layers per model (rel = layer / L; tied layers = layers within noise of the peak; "
              f"{res.precision_line}). Layer 0 is the embedding output; layer L is the last transformer layer.")
        print(res.table().T.to_string())
    print("\nWithin noise?")
    for line in res.noise_lines():
        print("  " + line)
    paths = res.save(Path(args.out))
    print(f"wrote {len(paths)} files to {args.out}/ in {res.report['timings_s']['total']:.0f} s")
    return 0
