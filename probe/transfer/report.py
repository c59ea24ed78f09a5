"""``fusion.json`` built from the finished runs (:func:`build_report`): per method, k and
language the seed mean and std, the seed-and-sentence bootstrap interval, the gains (over the
last layer, over layer k alone, over the fixed-gate control), the at-chance flags, the
dev-selected k (:func:`select_k`) and each language's best k (:func:`oracle_k`, an oracle).
"""
from __future__ import annotations

import numpy as np

from ..stats import score_from_counts
from .settings import CAPACITY_NOTE, FROZEN_NOTE, METHODS, PAPER, SOURCE_LANG

__all__ = ["build_report", "select_k", "oracle_k"]


def _boot_mean(counts: np.ndarray, metric: str, n_boot: int, seed: int = 0,
               minus: np.ndarray | None = None) -> tuple[float, float]:
    """95% percentile bootstrap CI over target sentences only of the seed-mean score (minus
    another system's); the reported ``ci95_sentences``. ``ci95`` also resamples seeds
    (:func:`_interval`).

    ``counts: [n_seeds, n_sent, c]``; ``minus``: same layout for the paired baseline.
    """
    from ..stats import bootstrap_replicates

    a = np.asarray(counts, dtype=np.float64)
    na, n_sent, c = a.shape
    parts = [a.transpose(1, 0, 2).reshape(n_sent, na * c)]
    nb = 0
    if minus is not None:
        b = np.asarray(minus, dtype=np.float64)
        nb = b.shape[0]
        parts.append(b.transpose(1, 0, 2).reshape(n_sent, nb * c))
    flat = np.concatenate(parts, axis=1)

    def stat(tot):
        tot = tot.reshape(len(tot), na + nb, c)
        score = score_from_counts(tot, metric)
        out = score[:, :na].mean(1)
        if nb:
            out = out - score[:, na:].mean(1)
        return out

    reps = bootstrap_replicates(stat, flat, n_boot=n_boot, seed=seed)
    lo, hi = np.nanquantile(reps, [0.025, 0.975])
    return float(lo), float(hi)


def _interval(counts: np.ndarray, metric: str, n_boot: int,
              minus: np.ndarray | None = None) -> dict:
    """Seed-and-sentence bootstrap (:func:`probe.stats.seed_sentence_bootstrap`) as a dict:
    ``ci95`` ([lo, hi], or None from one seed), ``n_seeds`` and ``interval_note``."""
    from ..stats import seed_sentence_bootstrap

    r = seed_sentence_bootstrap(counts, metric, minus=minus, n_boot=n_boot, seed=0)
    return {"ci95": None if r.lo is None else [r.lo, r.hi], "n_seeds": r.n_seeds,
            "interval_note": r.note}

def _seed_scores(runs, method, k, seeds, lang=None) -> np.ndarray:
    if lang is None:
        return np.asarray([runs[(method, k, s)]["dev_score"] for s in seeds], dtype=float)
    return np.asarray([runs[(method, k, s)]["targets"][lang]["score"] for s in seeds], dtype=float)


def select_k(runs, method, ks, seeds) -> int:
    """The k with the best mean English-dev score (ties: the higher k)."""
    means = [_seed_scores(runs, method, k, seeds).mean() for k in ks]
    best = max(means)
    return max(k for k, m in zip(ks, means) if m == best)


def oracle_k(runs, method, ks, seeds, lang) -> int:
    """The k with the best mean target score for ``lang`` (an oracle; ties: the higher k)."""
    means = [_seed_scores(runs, method, k, seeds, lang).mean() for k in ks]
    best = max(means)
    return max(k for k, m in zip(ks, means) if m == best)


def _stats(values: np.ndarray) -> dict:
    v = np.asarray(values, dtype=float)
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0,
            "per_seed": [float(x) for x in v]}


def build_report(*, task, td, spec, L, hidden, ks, seeds, methods, concat, targets,
                  target_split, runs, n_boot, n_sent_target, reference) -> dict:
    from ..stats import at_chance

    metric = td.metric
    counts_cache: dict = {}

    def counts(method, k, lang):
        key = (method, k, lang)
        if key not in counts_cache:
            counts_cache[key] = np.stack([np.asarray(runs[(method, k, s)]["targets"][lang]["counts"],
                                                     dtype=np.int64).T for s in seeds])
        return counts_cache[key]

    keys = sorted({(m, k) for (m, k, _s) in runs}, key=lambda mk: (METHODS.index(mk[0]),
                                                                    -1 if mk[1] is None else mk[1]))
    def gain(method, k, lang, other):
        """``method`` minus ``other`` = (method, k) with a seed-and-sentence interval."""
        a, b = counts(method, k, lang), counts(*other, lang)
        iv = _interval(a, metric, n_boot, minus=b)
        d = _seed_scores(runs, method, k, seeds, lang) - _seed_scores(runs, *other, seeds, lang).mean()
        return {"mean": float(d.mean()), "std": float(d.std(ddof=1)) if len(d) > 1 else 0.0,
                **iv, "ci95_sentences": list(_boot_mean(a, metric, n_boot, minus=b)),
                "significant": bool(iv["ci95"] is not None and (iv["ci95"][0] > 0 or
                                                                iv["ci95"][1] < 0))}

    params = {}
    results, en_dev = [], []
    for method, k in keys:
        dev = _seed_scores(runs, method, k, seeds)
        en_dev.append({"method": method, "k": k, **_stats(dev),
                       "best_epoch": [runs[(method, k, s)]["best_epoch"] for s in seeds]})
        n_params = runs[(method, k, seeds[0])].get("n_params")
        params[f"{method}" + ("" if k is None else f"@{k}")] = n_params
        for lang in targets:
            c = counts(method, k, lang)
            iv = _interval(c, metric, n_boot)
            sent_ci = list(_boot_mean(c, metric, n_boot))
            row = {"method": method, "k": k, "lang": lang,
                   **_stats(_seed_scores(runs, method, k, seeds, lang)),
                   "ci95": iv["ci95"] or sent_ci,
                   "ci95_covers": ("training seeds and target sentences" if iv["ci95"]
                                   else "target sentences only (one seed)"),
                   "ci95_sentences": sent_ci, "n_seeds": iv["n_seeds"],
                   "params": n_params}
            ref = reference[lang]
            row["at_chance"] = at_chance(row["ci95"][0], ref["majority"], row["mean"])
            if method == "last":
                row["gain_vs_last"] = {"mean": 0.0, "std": 0.0, "ci95": [0.0, 0.0],
                                       "n_seeds": len(seeds), "significant": False}
            else:
                row["gain_vs_last"] = gain(method, k, lang, ("last", None))
            if method in ("dlfa", "dlfa-fixed", "concat") and ("layer", k, seeds[0]) in runs:
                # does fusing add anything over the lower layer on its own (same k)?
                row["gain_vs_layer_k"] = gain(method, k, lang, ("layer", k))
            if method == "dlfa" and ("dlfa-fixed", k, seeds[0]) in runs:
                # what does the learned layer gate add over the same block with gate 0.5?
                row["gain_vs_fixed_gate"] = gain(method, k, lang, ("dlfa-fixed", k))
            results.append(row)

    def find(method, k, lang):
        for r in results:
            if r["method"] == method and r["k"] == k and r["lang"] == lang:
                return r
        return None

    selected = {}
    for method in ("dlfa", "dlfa-fixed", "layer", "concat"):
        if method in methods:
            have = sorted({k for (m, k, _s) in runs if m == method})
            if have:
                selected[method] = select_k(runs, method, have, seeds)
    best = {}
    comparison = {}
    for lang in targets:
        if "dlfa" in methods:
            kb = oracle_k(runs, "dlfa", ks, seeds, lang)
            r = find("dlfa", kb, lang)
            best[lang] = {"k": kb, **_pick(r), "gain_vs_layer_k": r.get("gain_vs_layer_k"),
                          "gain_vs_fixed_gate": r.get("gain_vs_fixed_gate")}
        comp = {"last": _pick(find("last", None, lang))}
        for method in ("layer", "scalarmix", "concat", "dlfa-fixed", "dlfa"):
            if method not in methods:
                continue
            k = selected.get(method) if method != "scalarmix" else None
            if method == "dlfa-fixed" and "dlfa" in selected:
                k = selected["dlfa"]  # the control belongs at DLFA's own k
            r = find(method, k, lang)
            if r is not None:
                comp[method] = {"k": k, **_pick(r)}
        for method in ("concat", "dlfa-fixed"):
            if method in methods and lang in best:
                r = find(method, best[lang]["k"], lang)
                if r is not None:
                    comp[f"{method}@best_k"] = {"k": best[lang]["k"], **_pick(r)}
        if lang in best:
            comp["dlfa@best_k"] = {"k": best[lang]["k"], **_pick(find("dlfa", best[lang]["k"], lang))}
        comparison[lang] = comp

    weights = None
    if "scalarmix" in methods:
        weights = np.mean([runs[("scalarmix", None, s)]["scalarmix_weights"] for s in seeds],
                          axis=0).round(4).tolist()
    return {
        "kind": "probe.fusion",
        "format_version": 1,
        "task": task,
        "task_info": {"folder": td.folder, "kind": td.kind, "metric": metric,
                      "labels": list(td.labels), "source_lang": SOURCE_LANG,
                      "train_fraction": td.train_fraction},
        "frozen_encoder": True,
        "frozen_encoder_note": FROZEN_NOTE,
        "paper": PAPER,
        "layer_indexing": "0 = embedding output, L = last transformer layer",
        "model": {"name": spec.name, "fingerprint": spec.fingerprint, "source": spec.source,
                  "note": getattr(spec, "note", ""), "n_layers": L, "hidden": hidden},
        "langs": targets,
        "target_split": target_split,
        "n_target_sentences": n_sent_target,
        "reference": reference,
        "n_seeds": len(seeds),
        "params": params,
        "capacity_note": CAPACITY_NOTE,
        "ks": ks,
        "config": {"methods": methods, "concat": concat, "n_boot": n_boot,
                   "selection": "selected k = best mean English-dev score over seeds; best k per "
                                "language = best mean target score (oracle)",
                   "uncertainty": f"std = sample std over seeds; ci95 = percentile bootstrap "
                                  f"over the {len(seeds)} training seed(s) and the target "
                                  f"sentences (pairs) of the seed-mean score (gains: sentences "
                                  f"paired, seeds resampled per method); one seed gives no gain "
                                  f"interval; ci95_sentences = sentences only",
                   "at_chance": "ci95 reaches down to the majority-class rate; such a result is "
                                "never highlighted as best",
                   "concat_policy": ("concat and dlfa-fixed at the dev-selected DLFA k and each "
                                     "language's best DLFA k" if concat == "best" else "every k")},
        "selected_k": selected,
        "best_k": best,
        "comparison": comparison,
        "results": results,
        "en_dev": en_dev,
        "scalarmix_weights": weights,
        "runs": [{"method": m, "k": k, "seed": s, "dev_score": r["dev_score"],
                  "best_epoch": r["best_epoch"], "fit_seconds": r["fit_seconds"],
                  "n_train": r["n_train"], "n_params": r.get("n_params"),
                  "scores": {lang: r["targets"][lang]["score"] for lang in targets}}
                 for (m, k, s), r in sorted(runs.items(), key=lambda x: (
                     METHODS.index(x[0][0]), -1 if x[0][1] is None else x[0][1], x[0][2]))],
    }


def _pick(row: dict | None) -> dict:
    if row is None:
        return {}
    return {"mean": row["mean"], "std": row["std"], "ci95": row["ci95"],
            "n_seeds": row["n_seeds"], "at_chance": row["at_chance"], "params": row["params"],
            "gain_vs_last": row["gain_vs_last"]}
