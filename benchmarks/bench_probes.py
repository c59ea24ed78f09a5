"""A full 13-layer UPOS sweep: our LinearProbe vs scikit-learn's LogisticRegression defaults.

Per layer of e5-small-q4: train on UD English-EWT dev+test (all words with a UPOS tag, or a
seeded random subset of ``--max-train-words``), test on English PUD. Compared, on the same
float32 features, timed in this process in alternating order layer by layer:

- ``LinearProbe(max_iter=30)``: what ``probe layers`` runs (C=1, L-BFGS in torch);
- ``LinearProbe(max_iter=100)``;
- ``sklearn.linear_model.LogisticRegression()`` with default settings (lbfgs, C=1,
  max_iter=100, raw features: it usually stops unconverged; its n_iter_ is shown).

Fit times only (prediction is a single matmul for all three).

    python benchmarks/bench_probes.py                          # all ~50k training words
    python benchmarks/bench_probes.py --max-train-words 20000
    python benchmarks/bench_probes.py --quick                  # smoke run
"""
from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402


def _entries(args):
    if args.model.startswith("tiny"):
        from probe.extraction import extract_corpus

        tiny = C.tiny_module()
        spec = C.resolve_model(args.model)
        return (extract_corpus(spec, tiny.random_corpus(n=300, seed=0), progress=False),
                extract_corpus(spec, tiny.random_corpus(n=80, seed=1), progress=False))
    from probe.layerwise import ensure_entries

    spec = C.resolve_model(args.model)
    return ensure_entries(spec, [("ud", "en", "dev+test", "first"), ("pud", "en", "test", "first")],
                          progress=False)


def main(argv=None) -> int:
    p = C.parser(__doc__, home="PROBE_HOME with (or for) the cache entries", quick="smoke run (tiny sizes)",
                 threads=True)
    p.add_argument("--model", default="e5-small-q4", help="encoder (tiny: tests' random encoder, smoke only)")
    p.add_argument("--max-train-words", type=int, default=None, help="random subset of the training words")
    p.add_argument("--layers", default=None, help="comma-separated layers (default: all)")
    args = p.parse_args(argv)
    from probe.threads import torch_threads

    with torch_threads(C.threads_for(args)):
        return _run(args)


def _run(args) -> int:
    if args.quick and args.max_train_words is None:
        args.max_train_words = 1000
    C.setup_env(args.home)

    import numpy as np
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    from probe.layerwise import UPOS_TAGS, entry_labels
    from probe.probes import LinearProbe

    C.print_machine("bench_probes")
    train, test = _entries(args)
    y_train_all = entry_labels(train, "pos", UPOS_TAGS)
    rows_train = np.nonzero(y_train_all >= 0)[0]
    if args.max_train_words and args.max_train_words < len(rows_train):
        rng = np.random.default_rng(0)
        rows_train = np.sort(rng.choice(rows_train, args.max_train_words, replace=False))
    y_train = y_train_all[rows_train]
    y_test_all = entry_labels(test, "pos", UPOS_TAGS)
    rows_test = np.nonzero(y_test_all >= 0)[0]
    y_test = y_test_all[rows_test]
    layers = [int(x) for x in args.layers.split(",")] if args.layers else list(range(train.n_layers))
    print(f"model {train.model}; train {train.meta['corpus']['name']}/{train.lang}/{train.meta['corpus']['split']} "
          f"{len(rows_train)} words, test {test.meta['corpus']['name']}/{test.lang}/{test.meta['corpus']['split']} "
          f"{len(rows_test)} words; {len(np.unique(y_train))} UPOS classes; {train.hidden}-d; layers {layers}")

    variants = {
        "lp30": lambda: LinearProbe(C=1.0, max_iter=30, seed=0),
        "lp100": lambda: LinearProbe(C=1.0, max_iter=100, seed=0),
        "sklearn": lambda: LogisticRegression(),
    }
    res = {k: {"acc": [], "t": [], "iters": []} for k in variants}
    print(f"{'layer':>5s} {'acc lp30':>9s} {'acc lp100':>9s} {'acc skl':>8s} {'d30 pt':>7s} {'d100 pt':>7s} "
          f"{'t lp30':>7s} {'t lp100':>7s} {'t skl':>7s} {'skl it':>6s} {'lp it':>5s}")
    for i, layer in enumerate(layers):
        X_train = np.asarray(train.layer(layer), dtype=np.float32)[rows_train]
        X_test = np.asarray(test.layer(layer), dtype=np.float32)[rows_test]
        names = list(variants) if i % 2 == 0 else list(variants)[::-1]
        for k in names:
            model = variants[k]()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                t0 = time.perf_counter()
                model.fit(X_train, y_train)
                res[k]["t"].append(time.perf_counter() - t0)
            res[k]["acc"].append(float(np.mean(model.predict(X_test) == y_test)))
            it = getattr(model, "n_iter_", None)
            res[k]["iters"].append(int(np.max(it)) if it is not None else -1)
        a = {k: res[k]["acc"][-1] for k in variants}
        t = {k: res[k]["t"][-1] for k in variants}
        print(f"{layer:5d} {a['lp30']:9.4f} {a['lp100']:9.4f} {a['sklearn']:8.4f} "
              f"{100 * (a['lp30'] - a['sklearn']):+7.2f} {100 * (a['lp100'] - a['sklearn']):+7.2f} "
              f"{t['lp30']:7.2f} {t['lp100']:7.2f} {t['sklearn']:7.2f} {res['sklearn']['iters'][-1]:6d} "
              f"{res['lp100']['iters'][-1]:5d}", flush=True)

    tot = {k: sum(res[k]["t"]) for k in variants}
    print(f"total fit time over {len(layers)} layers: " + ", ".join(f"{k} {v:.1f} s" for k, v in tot.items()))
    for k, label in (("lp30", "LinearProbe(max_iter=30)"), ("lp100", "LinearProbe(max_iter=100)")):
        d = 100 * (np.asarray(res[k]["acc"]) - np.asarray(res["sklearn"]["acc"]))
        C.target_line("ACCURACY", f"max |{label} - LogisticRegression()| over {len(layers)} layers",
                      float(np.abs(d).max()), "points", "<= 0.5 points", float(np.abs(d).max()) <= 0.5)
        print(f"  mean difference {d.mean():+.3f} points, per layer: " + " ".join(f"{x:+.2f}" for x in d))
        r = tot["sklearn"] / tot[k]
        C.ratio_line(f"fit time LogisticRegression() / {label}, sum over layers", r, ">= 3x", r >= 3)
        per = np.asarray(res["sklearn"]["t"]) / np.asarray(res[k]["t"])
        print(f"  per-layer speed ratio: median {np.median(per):.2f}x, min {per.min():.2f}x, max {per.max():.2f}x")
    C.print_load_after()
    return 0


if __name__ == "__main__":
    sys.exit(main())
