"""What ``finetune.json`` holds: :func:`build_report` turns the run records (per-example
counts of every fusion, seed and target) into scores, seed-and-sentence intervals, gains over
``none`` and over each ``dlfa:K``'s control, reference rates and the data record;
:func:`read_report` reads a saved one back.
"""
from __future__ import annotations

import json

import numpy as np

from ..errors import ProbeError
from ..results import report_file
from ..transfer import PAPER  # one citation string for both harnesses
from .evaluation import score_from_counts


#: Zero-shot gains of DLFA over standard fine-tuning reported by arXiv 2205.08497 for mBERT
#: (points of accuracy; entity F1 for NER), as quoted in issue #14.
PAPER_GAINS = {"xnli": 1.5, "pawsx": 2.4, "ner": 1.2, "pos": 1.5}

#: What each task trains on, named in every output (the mirror's data, see its README).
TRAINING_DATA = {
    "pos": "UD POS (XTREME udpos) English train file",
    "ner": "PAN-X/WikiANN (XTREME panx) English train file",
    "xnli": "XNLI train: the mirror's 10k MultiNLI subset (TaxiNLI), not the full 393k",
    "pawsx": "PAWS-X: no training file is mirrored; a seeded 75% of English dev trains, the "
             "other 25% selects (target dev splits are that held-out share only)",
}

#: The controls of ``dlfa:K`` at the same K, in the order the report prefers them.
CONTROLS = ("dlfa-matched", "dlfa-fixed")

_LEAKAGE_RULE = ("target pairs whose PAWS-X id (dev line) occurs in the English training or "
                 "selection share, or whose text equals such a pair, are dropped "
                 "(probe.data.xtreme.source_overlap)")


def _interval(counts: np.ndarray, metric: str, n_boot: int) -> dict:
    """95% interval of the seed-mean score, ``counts: [n_seeds, n_sent, c]``: over seeds and
    sentences (:func:`probe.stats.seed_sentence_bootstrap`), or, from one seed, over target
    sentences only (:func:`probe.stats.bootstrap_ci`, the same sentence resamples), as
    ``probe fuse`` reports it."""
    from ..stats import bootstrap_ci, seed_sentence_bootstrap
    from ..stats import score_from_counts as scores

    r = seed_sentence_bootstrap(counts, metric, n_boot=n_boot, seed=0)
    if r.lo is not None:
        ci, covers = [r.lo, r.hi], "training seeds and target sentences"
    else:
        lo, hi = bootstrap_ci(lambda t: scores(t, metric), counts[0], n_boot=n_boot, seed=0)
        ci, covers = [lo, hi], "target sentences only (one seed)"
    return {"ci95": ci, "ci95_covers": covers, "n_seeds": r.n_seeds, "interval_note": r.note}


def _gain(counts: np.ndarray, base: np.ndarray, metric: str, n_boot: int, vs: str) -> dict:
    """Seed-mean difference ``counts - base`` (``[n_seeds, n_sent, c]`` each, the same
    sentences) with its seed-and-sentence interval; None interval from one seed."""
    from ..stats import seed_sentence_bootstrap

    r = seed_sentence_bootstrap(counts, metric, minus=base, n_boot=n_boot, seed=0)
    ci = None if r.lo is None else [r.lo, r.hi]
    return {"vs": vs, "mean": r.estimate, "points": 100 * r.estimate, "ci95": ci,
            "n_seeds": r.n_seeds, "note": r.note,
            "significant": bool(ci is not None and (ci[0] > 0 or ci[1] < 0))}


def build_report(*, task, td, spec, L, specs, seeds, targets, target_split, corpora, encoded,
                  rates, runs, params, n_boot, use_types, device, keep, dtype) -> dict:
    """``finetune.json`` from the run records (``runs[(fusion, seed)]``, each target's
    per-example ``counts: [c, n]``); ``keep[lang]: [n]`` bool selects the scored examples."""
    from ..stats import at_chance

    names = [s.name for s in specs]
    metric = td.metric
    cache: dict = {}

    def counts(name, lang):  # [n_seeds, n_kept, c]
        if (name, lang) not in cache:
            per = []
            for s in seeds:
                c = np.asarray(runs[(name, s)]["targets"][lang]["counts"], dtype=np.int64).T
                if len(c) != len(keep[lang]):
                    raise ProbeError(f"run {name} seed {s}: {len(c)} {lang} examples recorded, "
                                     f"the target has {len(keep[lang])}")
                per.append(c[keep[lang]])
            cache[(name, lang)] = np.stack(per)
        return cache[(name, lang)]

    def dev_mean(name):
        vals = [runs[(name, s)]["dev_score"] for s in seeds]
        vals = [v for v in vals if v is not None]
        return float(np.mean(vals)) if vals else None

    dlfa = [s for s in specs if s.kind == "dlfa"]
    selected = max(dlfa, key=lambda s: dev_mean(s.name) or -1).name if len(dlfa) > 1 else (
        dlfa[0].name if dlfa else None)
    results = {}
    for lang in targets:
        rows = {}
        for fs in specs:
            name = fs.name
            c = counts(name, lang)
            per_seed = [float(x) for x in score_from_counts(c.sum(1), metric).reshape(-1)]
            row = {"mean": float(np.mean(per_seed)), "per_seed": per_seed,
                   "std": float(np.std(per_seed, ddof=1)) if len(per_seed) > 1 else None,
                   **_interval(c, metric, n_boot), "english_dev": dev_mean(name)}
            row["at_chance"] = at_chance(row["ci95"][0], rates[lang]["majority"], row["mean"])
            if "none" in names and name != "none":
                row["gain_vs_none"] = _gain(c, counts("none", lang), metric, n_boot, "none")
            if fs.kind == "dlfa":
                # fusion or capacity? DLFA over its control at the same K
                ctl = {f"{k}:{fs.k}": _gain(c, counts(f"{k}:{fs.k}", lang), metric, n_boot,
                                            f"{k}:{fs.k}")
                       for k in CONTROLS if f"{k}:{fs.k}" in names}
                if ctl:
                    row["gain_vs_control"] = ctl
            rows[name] = row
        results[lang] = rows
    first = runs[(names[0], seeds[0])]
    data = {}
    for role, c in corpora.items():
        info = getattr(c, "subsample", None)
        data[role] = {"lang": c.lang, "split": c.split, "n_examples": len(c),
                      "n_words": c.n_words, "subsample": info,
                      "files": [{"relpath": f["relpath"], "sha256": f["sha256"]} for f in c.files],
                      "n_truncated_words": encoded[role].n_truncated_words}
    leakage = {lang: {"n_dropped": int((~keep[lang]).sum()), "n_evaluated": int(keep[lang].sum()),
                      "n_loaded": int(len(keep[lang])),
                      "rule": _LEAKAGE_RULE if task == "pawsx" else
                      "no shared ids between training data and targets"} for lang in targets}
    return {
        "kind": "probe.finetune",
        "task": task,
        "task_info": {"kind": td.kind, "metric": metric, "labels": list(td.labels),
                      "training_data": TRAINING_DATA[task]},
        "langs": targets,
        "target_split": target_split,
        "model": {"name": spec.name, "fingerprint": spec.fingerprint, "n_layers": L,
                  "segment_ids": use_types, "note": getattr(spec, "note", "")},
        "fine_tuned": True,
        "fusions": names,
        "selected_dlfa": selected,
        "selection": ("K of dlfa picked by the best mean English-dev score over seeds among the "
                      "K run" if len(dlfa) > 1 else "only one K was run"),
        "seeds": seeds,
        "n_seeds": len(seeds),
        "params": params,
        "dtype": dtype,
        "device": device,
        "data": data,
        "leakage": leakage,
        "reference_rates": rates,
        "results": results,
        "statistics": {
            "ci95": "percentile bootstrap over training seeds and target sentences "
                    "(probe.stats.seed_sentence_bootstrap); one seed: target sentences only",
            "gains": "difference of seed means; sentences resampled paired, each system's seeds "
                     "independently; one seed: no gain interval",
            "at_chance": "ci95 reaches down to the majority-class rate (probe.stats.at_chance)",
            "reference_rates": "probe.stats.reference_rates: majority = English training's most "
                               "frequent label everywhere; chance = random labels with English "
                               "training frequencies",
            "gain_vs_control": "dlfa:K minus its control at the same K (dlfa-matched:K: DLFA's "
                               "parameters, gate fixed at 0.5; dlfa-fixed:K: gate 0.5, no block)"},
        "parameters": {n: runs[(n, seeds[0])]["parameters"] for n in names},
        "runs": [{k: v for k, v in runs[(n, s)].items() if k != "targets"} |
                 {"targets": {l: score_from_counts(counts(n, l)[i].sum(0), metric)
                              for l in targets}}
                 for n in names for i, s in enumerate(seeds)],
        "paper": {"source": PAPER, "gain_points": PAPER_GAINS.get(task),
                  "model": "mBERT (bert-base-multilingual-cased), full XTREME training data",
                  "note": "the paper's gain is DLFA over standard fine-tuning, averaged over "
                          "its target languages; quoted from issue #14"},
        "n_boot": n_boot,
        "first_run_history": first["history"],
    }


def read_report(path) -> dict:
    """The report saved in ``path`` (a folder holding ``finetune.json``, or the file itself);
    a :class:`ProbeError` when it is unreadable or not a fine-tuning report."""
    path = report_file(path, "finetune.json")
    try:
        rep = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ProbeError(f"{path}: unreadable finetune.json ({e})") from None
    if rep.get("kind") != "probe.finetune":
        raise ProbeError(f"{path}: not a finetune.json (kind {rep.get('kind')!r})")
    return rep
