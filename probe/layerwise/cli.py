"""``probe layers``: the sub-command's parser (:func:`add_parser`) and :func:`run`, which calls
:func:`probe.layers`, prints the per-layer table, the noise summary and (with ``--perturb``) the
robustness drops, and saves the report and figures.
"""
from __future__ import annotations

from pathlib import Path

from ..encoders import DEFAULT_MODEL
from ..options import INPUT_HELP, LAYER_NOTE, MODEL_HELP, add_dtype_option
from ..tasks import PROBE_TASKS
from .driver import parse_train


def add_parser(subparsers) -> None:
    """Add the ``layers`` command to an ``argparse`` subparsers object."""
    la = subparsers.add_parser("layers", help="which layers carry structure vs cross-lingual information",
                        description="Per-layer analysis, English -> each target language: linear probes "
                                    "(part of speech, universal dependency relation; trained on UD English-EWT "
                                    "dev+test, evaluated on English PUD and zero-shot on each target's "
                                    "PUD, with a control task), language identity, debiased linear CKA "
                                    "and parallel-sentence retrieval (PUD and Tatoeba). Extracts what is "
                                    "missing from the cache, prints a per-layer table and writes "
                                    "report.json and figures. " + LAYER_NOTE)
    la.add_argument("--lang", required=True, help="comma-separated target languages with a PUD treebank "
                                                   "(e.g. de,zh)")
    la.add_argument("--model", default=DEFAULT_MODEL, help=MODEL_HELP + " (default: auto)")
    la.add_argument("--tasks", default=",".join(PROBE_TASKS),
                    help=f"comma-separated probe tasks: {PROBE_TASKS.listing()} (default: all)")
    la.add_argument("--layers", default=None, metavar="L[,L...]",
                    help="analyse only these layers, e.g. 0,6,-1 (0 = embeddings, -1 = last; default: all)")
    la.add_argument("--out", default="out/layers", help="output directory (default: out/layers)")
    la.add_argument("--pooling", default="first", choices=["first", "mean", "last"],
                    help="subword-to-word pooling (default: first content piece)")
    la.add_argument("--input", default="words", choices=["words", "text"], help=INPUT_HELP)
    la.add_argument("--sentence", default="mean-words", choices=["mean-words", "mean-pieces", "first", "native"],
                    help="sentence vectors for CKA and retrieval: mean of the word vectors, mean of all "
                         "input pieces, the first token, or the model's own recipe (e5: 'query: ' prefix, "
                         "mean of all tokens) (default: mean-words)")
    la.add_argument("--seed", type=int, default=0, help="seed of probes, control task, bootstrap (default: 0)")
    la.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples for 95%% CIs (default: 1000)")
    la.add_argument("--max-iter", type=int, default=30, help="L-BFGS iterations per probe (default: 30)")
    la.add_argument("--no-tatoeba", action="store_true", help="skip Tatoeba retrieval")
    la.add_argument("--train", default="ud:dev+test",
                    help="English probe training data as corpus:split (default: ud:dev+test, i.e. "
                         "UD English-EWT dev and test)")
    la.add_argument("--perturb", action="append", default=None, metavar="SPEC",
                    help="perturb the target-language text and report how each layer degrades: "
                         "typo:RATE[,RATE...], drop-diacritics, lowercase (comma-separated or repeated, "
                         "e.g. typo:0.05,0.1,0.2,lowercase); seeded with --seed, labels and word "
                         "segmentation kept, perturbed text cached under its own key")
    la.add_argument("--device", default="auto", help="cuda, mps, cpu or auto (default: auto)")
    add_dtype_option(la)
    la.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args) -> int:
    """Run ``probe layers`` with parsed ``args``; returns the exit status."""
    from . import layers  # the package's public function, looked up at call time (a patched one too)

    res = layers(args.lang, model=args.model, tasks=args.tasks, pooling=args.pooling, seed=args.seed,
                 n_boot=args.n_boot, tatoeba=not args.no_tatoeba, progress=not args.quiet,
                 device=args.device, train=parse_train(args.train), max_iter=args.max_iter,
                 perturb=args.perturb, layers=args.layers,
                 input=args.input, sentence=args.sentence, dtype=args.dtype)
    r = res.report
    print(f"model: {r['model']['name']} (fingerprint {r['model']['fingerprint'][:12]}); "
          f"English -> {', '.join(res.langs)}; {LAYER_NOTE}")
    print("POS/dep: probe accuracy (en in-language on PUD, others zero-shot); sel: POS selectivity "
          "(task - control); CKA: debiased linear CKA of PUD sentence vectors; R a>b: PUD retrieval "
          "accuracy@1; langID: language-identity accuracy")
    print(res.format_table())
    print("\nWithin noise of each curve's best layer (95%: paired sentence bootstrap; CKA: "
          "delete-a-group jackknife over sentences):")
    for line in res.noise_lines():
        print("  " + line)
    if r.get("robustness"):
        print("\nRobustness: drop of zero-shot accuracy / retrieval from clean to perturbed target text "
              "(positive = worse), per layer:")
        df = res.robustness_table()
        cols = [c for c in [f"{t} drop" for t in r["config"]["tasks"]] + ["retrieval drop"] if c in df.columns]
        wide = df.pivot_table(index="layer", columns=["perturbation", "lang"], values=cols)
        print(wide.to_string(float_format=lambda v: f"{v:.3f}"))
    paths = res.save(Path(args.out))
    print(f"wrote {len(paths)} files to {args.out}/ (report.json, "
          f"{sum(1 for p in paths if p.suffix == '.png')} figures) in {r['timings_s']['total']:.0f} s")
    return 0
