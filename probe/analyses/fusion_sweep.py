"""Does fusing the last layer with a lower layer k help zero-shot transfer, and which k?

A DLFA/AIF fusion sweep through :func:`probe.transfer.fuse` (XTREME POS, zero-shot from
English, frozen encoder: only the fusion block and the head are trained on cached hidden
states): for every fused layer k and target language, the gain of DLFA(L + k) over the
last layer alone (mean over training seeds, 95% bootstrap interval over seeds and target
sentences), next to the "layer k only" baseline and the capacity-matched control (DLFA with
its layer gate fixed at 0.5), with each target's majority-class and chance rate; a score
within noise of the majority rate is marked at chance. Every training run is memoised in
the cache.

Budget: the defaults (:data:`DEFAULTS`) keep the sweep to a few minutes on 2 CPU cores on
top of the other analyses (fewer targets, seeds and examples than ``probe fuse``'s own
defaults); pass larger values for a fuller sweep.

    python3 -m probe.analyses.fusion_sweep [--model e5-small-q4] [--quick]
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ._common import csv_list, fig_meta, log, outputs, record, script_cli, write_json
from probe.results import closed

NAME = "fusion_sweep"
CLAIM = ("Fusing the last layer with a lower layer k (DLFA/AIF) improves zero-shot transfer over the "
         "last layer alone, and the gain depends on k and on the target language.")
#: The sweep run by ``probe figures`` (sized to its 30-minute budget on 2 CPU cores).
DEFAULTS = {"task": "pos", "langs": ["de", "zh", "ar"], "layers": "all", "seeds": 2,
            "methods": ["dlfa", "dlfa-fixed", "last", "layer"], "max_examples": 1500, "max_dev": 500,
            "max_test": 500, "epochs": 3}
QUICK = {"task": "pos", "langs": ["de", "zh"], "layers": "0,4,8,11", "seeds": 1,
         "methods": ["dlfa", "dlfa-fixed", "last", "layer"], "max_examples": 500, "max_dev": 200,
         "max_test": 300, "epochs": 2}


def gains(report: dict) -> dict:
    """``{method: {lang: {k: gain row}}}`` for DLFA and layer-k runs, plus the last-layer score."""
    out: dict = {"dlfa": {}, "layer": {}, "last": {}}
    for row in report["results"]:
        m, lang = row["method"], row["lang"]
        if m == "last":
            out["last"][lang] = {"mean": row["mean"], "std": row["std"], "ci95": row["ci95"],
                                 "at_chance": row.get("at_chance")}
        elif m in ("dlfa", "layer", "dlfa-fixed"):
            out.setdefault(m, {}).setdefault(lang, {})[int(row["k"])] = {
                "score": row["mean"], "score_std": row["std"], "at_chance": row.get("at_chance"),
                "gain": row["gain_vs_last"]["mean"], "gain_std": row["gain_vs_last"]["std"],
                "gain_ci95": row["gain_vs_last"]["ci95"],
                "gain_vs_fixed_gate": row.get("gain_vs_fixed_gate")}
    return out


def summarise(report: dict) -> dict:
    g = gains(report)
    langs, ks = report["langs"], report["ks"]
    dl = g["dlfa"]
    table = {lang: [dl[lang][k]["gain"] if k in dl.get(lang, {}) else None for k in ks] for lang in langs}
    mean_gain = [float(np.mean([dl[l][k]["gain"] for l in langs if k in dl.get(l, {})])) if any(
        k in dl.get(l, {}) for l in langs) else None for k in ks]
    # a gain counts only with an interval (two or more seeds) above 0 and a score above chance
    sig = {lang: [k for k in ks if k in dl.get(lang, {}) and dl[lang][k]["gain_ci95"] is not None
                  and dl[lang][k]["gain_ci95"][0] > 0 and not dl[lang][k]["at_chance"]]
           for lang in langs}
    chance = {lang: [k for k in ks if dl.get(lang, {}).get(k, {}).get("at_chance")] for lang in langs}
    return {"ks": ks, "langs": langs, "metric": report["task_info"]["metric"],
            "n_seeds": report["n_seeds"], "reference": report["reference"],
            "k_at_chance": chance, "training_data": report["training_data"]["description"],
            "params": report["params"],
            "dlfa_gain": table, "dlfa_mean_gain_over_langs": mean_gain,
            "k_with_ci_above_zero": sig, "best_k": report.get("best_k", {}),
            "selected_k": report.get("selected_k", {}), "gains": g}


def plot(rec: dict, path: Path | None = None):
    import matplotlib.pyplot as plt
    import seaborn as sns

    from probe.plotting import palette, setup_style, show_or_save

    setup_style()
    s = rec["results"]["summary"]
    rep = rec["results"]["fusion_report"]
    ks, langs = s["ks"], s["langs"]
    L = rep["model"]["n_layers"]
    metric = s["metric"]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(13, 0.9 + max(2.6, 0.55 * len(langs) + 1.6)),
                                 gridspec_kw={"width_ratios": [1.25, 1]})
    G = np.array([[np.nan if v is None else 100 * v for v in s["dlfa_gain"][l]] for l in langs])
    lim = max(0.5, float(np.nanmax(np.abs(G)))) if np.isfinite(G).any() else 1
    annot = np.array([[("" if not np.isfinite(v) else f"{v:+.1f}"
                        + ("*" if k in s["k_with_ci_above_zero"][l] else "")
                        + ("~" if k in s["k_at_chance"][l] else ""))
                       for v, k in zip(row, ks)] for row, l in zip(G, langs)])
    ref = s["reference"]
    sns.heatmap(G, ax=a1, cmap="vlag", center=0, vmin=-lim, vmax=lim, annot=annot, fmt="",
                annot_kws={"fontsize": 6.5}, xticklabels=ks,
                yticklabels=[f"{l} ({rep['target_split'][l]}; majority {ref[l]['majority']:.2f}, "
                             f"chance {ref[l]['chance']:.2f})" for l in langs],
                cbar_kws={"label": f"gain ({metric}, points)"})
    a1.set(xlabel=f"fused layer k (0 = embeddings; fused with L = {L})", ylabel="target language",
           title=f"DLFA(L + k) − last layer, mean of {s['n_seeds']} seed(s)\n* interval (seeds and "
                 f"sentences) above 0; ~ at chance"
                 + ("" if s["n_seeds"] > 1 else "\none seed: no intervals, nothing starred"))
    cols = palette(3)
    for m, c, label in (("dlfa", cols[0], "DLFA (L + k)"), ("layer", cols[1], "layer k only"),
                        ("dlfa-fixed", cols[2], "DLFA gate 0.5 (control)")):
        rows = s["gains"].get(m)
        if not rows:
            continue
        # keys are ints in memory and strings once the record went through JSON
        rows = {l: {int(k): v for k, v in rows.get(l, {}).items()} for l in langs}
        # the control runs at a few k only: draw the k every target has, joined
        run_k = [k for k in ks if all(k in rows[l] for l in langs)]
        if not run_k:
            continue
        M = np.array([[100 * rows[l][k]["gain"] for k in run_k] for l in langs])
        a2.plot(run_k, M.mean(0), marker="o", ms=3, color=c, label=f"{label}, mean of {len(langs)}",
                ls="-" if len(run_k) > 1 else "none")
        a2.fill_between(run_k, M.min(0), M.max(0), color=c, alpha=0.15, lw=0)
    a2.axhline(0, color="0.3", lw=0.8, label="last layer only")
    a2.set(xlabel=f"layer k (0 = embeddings, L = {L})", ylabel=f"gain over last layer ({metric}, points)",
           title="Mean gain over targets (band: range over targets)")
    a2.set_xticks(ks)
    a2.legend(fontsize=7)
    fig.tight_layout(rect=(0, 0, 1, 0.9), w_pad=3)
    tr = rep["data"]["train"]
    cap = (f"XTREME {rep['task']}: train en {tr['split']} ({tr['n_sentences']} sent.), targets "
           + ", ".join(f"{l} {rep['data']['targets'][l]['split']}" for l in langs)
           + f"; {s['n_seeds']} seed(s); frozen encoder (the paper fine-tunes mBERT); "
           + s["training_data"])
    return show_or_save(fig, path, fig_meta(rec, cap),
                        f"Layer-fusion gains per fused layer and language — {rec['model']['name']}, XTREME {rep['task'].upper()}")


def main(model: str = "e5-small-q4", out_root: Path = Path("."), quick: bool = False, **overrides) -> list[Path]:
    from probe.transfer import fuse  # the fusion sweep API (probe fuse)

    t0 = time.time()
    cfg = {**(QUICK if quick else DEFAULTS), **{k: v for k, v in overrides.items() if v is not None}}
    log(f"{NAME}: {cfg['task']} en → {', '.join(cfg['langs'])}, layers {cfg['layers']}, "
        f"{cfg['seeds']} seed(s) ({model})")
    res = fuse(cfg["task"], cfg["langs"], model=model, layers=cfg["layers"], seeds=cfg["seeds"],
               methods=cfg["methods"], max_examples=cfg["max_examples"], max_dev=cfg["max_dev"],
               max_test=cfg["max_test"], epochs=cfg["epochs"], progress=False)
    rep = res.report
    results = {"summary": summarise(rep), "fusion_report": rep}
    rec = record(NAME, __file__, CLAIM, rep["model"], rep["data"], rep["seeds"], {**cfg, "quick": quick},
                 results, t0)
    json_path, fig_path = outputs(out_root, NAME)
    write_json(json_path, rec)
    return [json_path, *closed(plot(rec, fig_path), fig_path)]


if __name__ == "__main__":
    script_cli(main, __doc__, "tiny sweep (2 targets, 4 layers, 1 seed)",
               [("--task", {"help": f"XTREME task (default: {DEFAULTS['task']})"}),
                ("--langs", {"type": csv_list, "help": f"targets (default: {','.join(DEFAULTS['langs'])})"}),
                ("--layers", {"help": "fused layers k: all or e.g. 0,3,6 (default: all)"}),
                ("--seeds", {"type": int, "help": f"training seeds (default: {DEFAULTS['seeds']})"})])
