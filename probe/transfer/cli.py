"""``probe fuse``: the command line of :func:`probe.transfer.fuse` (:func:`add_parser`,
:func:`run`); ``probe/cli.py`` registers this module.
"""
from __future__ import annotations

from pathlib import Path

from ..errors import ProbeError
from ..encoders import DEFAULT_MODEL
from ..options import add_dtype_option, count_or_all
from .driver import fuse
from .plots import summary_figure
from .settings import METHODS, TASK_BUDGETS, TASK_ORDER
from .summary import summary_table

__all__ = ["add_parser", "run"]


def add_parser(subparsers) -> None:
    """Add the ``fuse`` command to an ``argparse`` subparsers object."""
    import argparse

    budgets = "; ".join(f"{t} {b.train or 'all'}/{b.dev or 'all'}/{b.test or 'all'}"
                        for t, b in TASK_BUDGETS.items())
    p = subparsers.add_parser(
        "fuse", help="AIF/DLFA layer fusion vs baselines, zero-shot from English (XTREME)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Zero-shot cross-lingual transfer with layer fusion on cached hidden states.\n\n"
            "Trains on English, selects the epoch on English dev, and evaluates zero-shot on each\n"
            "target language: DLFA (the last layer L fused with layer k through AIF) for every k,\n"
            "and in the same harness (same head, optimiser, epochs and data) the baselines: last\n"
            "layer only, layer k only, concat [L; k] + linear, the ELMo scalar mix, and dlfa-fixed\n"
            "(the capacity-matched control: DLFA's AIF block and head with the layer gate fixed\n"
            "at 0.5). Every run is repeated per seed and memoised, so an interrupted sweep\n"
            "resumes. Prints a table (mean ± std over seeds, gain over the last layer with a 95%\n"
            "bootstrap interval over seeds and target sentences - none from one seed -, trainable\n"
            "parameters, each target's majority-class and chance rate, '~' = at chance) and writes\n"
            "fusion.json and figures to --out; also refreshes a cross-task summary table figure\n"
            "(summary.png, where a result at chance is never bold) in the parent of --out.\n"
            "PAWS-X target pairs that share an id with the English training/selection pairs are\n"
            "dropped (count printed).\n\n"
            "The encoder is FROZEN (features from the cache); the paper (arXiv 2205.08497)\n"
            "fine-tunes mBERT end to end, so numbers are not comparable with its tables.\n\n"
            "Data: XTREME task files under $PROBE_DATA_MIRROR/xtreme or $PROBE_XTREME_DIR. A target\n"
            "without a test file (e.g. POS German) is evaluated on its dev file, which is leak-free\n"
            "since only English is used for training and selection (not PAWS-X: its dev files\n"
            "translate the English training pairs). Default seeded subsamples\n"
            f"(English train/dev/each target, in examples):\n  {budgets}.\n\n"
            "Layer 0 is the embedding output; layer L is the last transformer layer."))
    p.add_argument("--task", required=True, choices=list(TASK_ORDER),
                   help="XTREME task: pos (UD POS, accuracy), ner (PAN-X, entity F1), xnli, pawsx "
                        "(sentence pairs, accuracy)")
    p.add_argument("--lang", required=True,
                   help="comma-separated target languages, e.g. de,zh (see `probe data ls`)")
    p.add_argument("--model", default=DEFAULT_MODEL,
                   help="encoder: e5-small-q4 (offline), auto (bert-base-multilingual-cased if "
                        "loadable, else e5-small-q4), a Hugging Face id or a local directory "
                        "(default: auto)")
    p.add_argument("--layers", default="all",
                   help="fused layers k: 'all' (0..L-1) or comma-separated, e.g. 0,3,6 (default: all)")
    p.add_argument("--seeds", type=int, default=3, help="training seeds per run (default: 3)")
    p.add_argument("--methods", default=",".join(METHODS),
                   help="comma-separated subset of " + ", ".join(METHODS) +
                        " (last is always run; default: all)")
    p.add_argument("--max-examples", type=count_or_all, default="auto", metavar="N|all",
                   help="seeded subsample of N English training examples, or all (default: auto "
                        "= the task's budget above); a subsample gets its own cache entry and is "
                        "reported")
    p.add_argument("--max-dev", type=count_or_all, default="auto", metavar="N|all",
                   help="seeded subsample of English dev, or all (default: the task's budget)")
    p.add_argument("--max-test", type=count_or_all, default="auto", metavar="N|all",
                   help="seeded subsample of each target's test set, or all (default: the task's "
                        "budget)")
    p.add_argument("--epochs", type=int, default=3, help="training epochs per run (default: 3)")
    p.add_argument("--concat", default="best", choices=["best", "all"],
                   help="run concat at the dev-selected and per-language best DLFA k (best) or at "
                        "every k (all) (default: best)")
    p.add_argument("--jobs", type=int, default=None,
                   help="parallel training processes, one thread each (default: min(2, cores))")
    p.add_argument("--n-boot", type=int, default=1000,
                   help="bootstrap replicates for 95%% intervals (default: 1000)")
    p.add_argument("--out", default=None,
                   help="output directory (default: out/fusion/<task>)")
    p.add_argument("--device", default="auto", help="extraction device: cuda, mps, cpu or auto")
    add_dtype_option(p)
    p.add_argument("--quiet", action="store_true", help="no progress bars or stage messages")


def run(args) -> int:
    """Run ``probe fuse`` from parsed arguments; prints the table and where files went.
    (:func:`fuse` imports probe.data.xtreme, which registers the XTREME corpora, first.)"""
    res = fuse(args.task, args.lang, model=args.model, layers=args.layers, seeds=args.seeds,
               methods=args.methods, max_examples=args.max_examples,
               max_dev=args.max_dev, max_test=args.max_test, epochs=args.epochs,
               concat=args.concat, n_jobs=args.jobs, n_boot=args.n_boot,
               progress=not args.quiet, device=None if args.device == "auto" else args.device,
               dtype=args.dtype)
    r = res.report
    out = Path(args.out or Path("out") / "fusion" / args.task)
    print(f"model: {r['model']['name']} (fingerprint {r['model']['fingerprint'][:12]}), FROZEN "
          f"encoder: features from the cache (the paper fine-tunes mBERT end to end)")
    tr = r["data"]["train"]
    print(f"data: train en {tr['split']} ({tr['n_sentences']} examples), dev en "
          f"{r['data']['dev']['split']}, targets " +
          ", ".join(f"{l} {r['data']['targets'][l]['split']}" for l in res.langs))
    print(r["subsample_note"])
    print(r["training_data"]["description"])
    for lang, lk in r["leakage"].items():
        if lk["n_dropped"]:
            print(f"{lang}: dropped {lk['n_dropped']} of {lk['n_loaded']} target pairs that are "
                  f"(translations of) English training/selection pairs; {lk['n_evaluated']} evaluated")
    print(res.format_table())
    print("note: " + r["capacity_note"])
    def vs_alone(b):
        g = b.get("gain_vs_layer_k")
        if not g:
            return ""
        iv = "no interval" if g.get("ci95") is None else \
            f"{g['ci95'][0]:+.3f}, {g['ci95'][1]:+.3f}"
        return f", {g['mean']:+.3f} [{iv}] vs layer {b['k']} alone"

    best = ", ".join(f"{l}: k={b['k']} ({b['gain_vs_last']['mean']:+.3f} vs last{vs_alone(b)}"
                     f"{', at chance' if b.get('at_chance') else ''})"
                     for l, b in r["best_k"].items())
    if best:
        print(f"best k per language (oracle): {best}; dev-selected k: "
              + ", ".join(f"{m} {k}" for m, k in r["selected_k"].items()))
    t = r["timings_s"]
    print(f"cache: {r['cache']['disk_human']} on disk for this task's {len(r['cache']['entries'])} "
          f"entries; time: {t['total']:.0f} s (extraction/open {t['extract_or_open']:.0f} s, "
          f"training {t['training']:.0f} s)")
    paths = res.save(out)
    summary = []
    try:
        summary = summary_figure([out.parent], out.parent / "summary.png")
    except ProbeError:
        pass
    print(f"wrote {out}/fusion.json and {sum(1 for p in paths if p.suffix == '.png')} figures"
          + (f"; summary of {', '.join(summary_table([out.parent])['tasks'])}: {summary[0]}"
             if summary else ""))
    return 0
