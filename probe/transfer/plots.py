"""The figures of a :class:`~probe.transfer.FusionResult` (:func:`plot_gain`,
:func:`plot_baselines`; the result's methods of the same names call them) and the
cross-task results table :func:`summary_figure`, drawn from saved ``fusion.json`` files.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..options import precision_text
from .settings import METHOD_LABELS
from .summary import SUMMARY_ROWS, summary_highlight, summary_table

__all__ = ["plot_gain", "plot_baselines", "summary_figure"]


def plot_gain(result, path: Path | None = None, *, ax=None):
    """Gain of DLFA over the last layer vs the fused layer k, one line per language;
    returns the Figure (``ax``: two Axes; ``path``: also save it there)."""
    from ..plotting import palette, show_or_save, subplots

    r = result.report
    ks = r["ks"]
    L = r["model"]["n_layers"]
    owned = ax is None
    fig, (a1, a2) = subplots(ax, 2, figsize=(11, 4))
    cols = palette(len(result.langs))
    for lang, c in zip(result.langs, cols):
        rows = {x["k"]: x for x in r["results"] if x["method"] == "dlfa" and x["lang"] == lang}
        if not rows:
            continue
        kk = [k for k in ks if k in rows]
        g = np.asarray([rows[k]["gain_vs_last"]["mean"] for k in kk])
        sd = np.asarray([rows[k]["gain_vs_last"]["std"] for k in kk])
        a1.plot(kk, g, marker="o", ms=3, color=c, label=f"{lang} ({r['target_split'][lang]})")
        a1.fill_between(kk, g - sd, g + sd, color=c, alpha=0.2, lw=0)
        if lang in r["best_k"]:
            b = r["best_k"][lang]
            # a best k at chance is not highlighted: hollow star
            a1.plot([b["k"]], [b["gain_vs_last"]["mean"]], marker="*", ms=11, color=c,
                    mfc="none" if b.get("at_chance") else c,
                    label=f"{lang}: best k at chance" if b.get("at_chance") else None)
        a2.plot(kk, [rows[k]["mean"] for k in kk], marker="o", ms=3, color=c,
                label=f"{lang}: DLFA (L + k)")
        single = {x["k"]: x["mean"] for x in r["results"]
                  if x["method"] == "layer" and x["lang"] == lang}
        if single:
            sk = [k for k in ks if k in single]
            a2.plot(sk, [single[k] for k in sk], ls="--", color=c, label=f"{lang}: layer k only")
        last = next(x["mean"] for x in r["results"] if x["method"] == "last" and x["lang"] == lang)
        a2.axhline(last, color=c, ls=":", lw=1)
        ref = (r.get("reference") or {}).get(lang)
        if ref:
            a2.axhline(ref["majority"], color=c, ls="-.", lw=1,
                       label=f"{lang}: majority class {ref['majority']:.2f}")
            a2.axhline(ref["chance"], color=c, ls=(0, (1, 3)), lw=0.8,
                       label=f"{lang}: chance {ref['chance']:.2f}")
    a1.axhline(0, color="0.3", lw=0.8)
    metric = r["task_info"]["metric"]
    a1.set(xlabel=f"fused layer k (0 = embeddings; fused with layer L = {L})",
           ylabel=f"{metric} gain over last layer",
           title="DLFA gain vs fused layer\n(band: ± seed std; ★ best k, hollow: at chance)")
    a2.set(xlabel=f"layer k (0 = embeddings, L = {L})", ylabel=metric,
           title="zero-shot score\n(dotted: last layer only; dash-dot: majority class)")
    for a in (a1, a2):
        a.set_xticks(ks)  # layers are whole numbers, also for a few chosen k
    a1.legend(fontsize=8)
    # four entries per target: beside the panel, not over the curves
    a2.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1), borderaxespad=0)
    return show_or_save(fig, path, result.figure_meta(result.caption()), owned=owned, title=
                        f"Layer fusion, {r['task']} zero-shot from English ({r['model']['name']}, frozen)")


def plot_baselines(result, path: Path | None = None, *, ax=None):
    """Best fusion vs each baseline, per language, with 95% bootstrap error bars; returns
    the Figure (``ax``: one Axes; ``path``: also save it there)."""
    from ..plotting import palette, show_or_save, subplots

    r = result.report
    order = [m for m in ("last", "layer", "scalarmix", "concat", "dlfa-fixed", "dlfa",
                         "dlfa@best_k")
             if any(m in r["comparison"][l] for l in result.langs)]
    owned = ax is None
    fig, (ax,) = subplots(ax, 1, figsize=(2.2 + 1.6 * len(result.langs) * max(len(order), 1) / 4, 4))
    width = 0.8 / max(len(order), 1)
    cols = palette(len(order))
    lows = []
    for j, (m, c) in enumerate(zip(order, cols)):
        xs, ys, err, faint = [], [], [[], []], []
        for i, lang in enumerate(result.langs):
            comp = r["comparison"][lang].get(m)
            if not comp:
                continue
            xs.append(i + (j - (len(order) - 1) / 2) * width)
            ys.append(comp["mean"])
            err[0].append(max(comp["mean"] - comp["ci95"][0], 0))
            err[1].append(max(comp["ci95"][1] - comp["mean"], 0))
            lows.append(comp["ci95"][0])
            faint.append(bool(comp.get("at_chance")))
        k = next((r["comparison"][l][m].get("k") for l in result.langs if m in r["comparison"][l]), None)
        label = METHOD_LABELS[m] + ("" if k is None or m.endswith("best_k") else f" (k={k})")
        bars = ax.bar(xs, ys, width=width * 0.95, color=c, yerr=err, capsize=2, label=label,
                      hatch="//" if m.endswith("best_k") else None, edgecolor="white")
        for bar, at in zip(bars, faint):
            if at:  # within noise of the majority rate: greyed out and marked
                bar.set_alpha(0.35)
                ax.annotate("~", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                            ha="center", va="bottom", fontsize=9)
    for i, lang in enumerate(result.langs):
        ref = (r.get("reference") or {}).get(lang)
        if ref:
            lo_x, hi_x = i - 0.45, i + 0.45
            ax.hlines(ref["majority"], lo_x, hi_x, colors="0.15", linestyles="-.", lw=1,
                      label="majority class" if i == 0 else None)
            ax.hlines(ref["chance"], lo_x, hi_x, colors="0.45", linestyles=":", lw=1,
                      label="chance (training label frequencies)" if i == 0 else None)
            lows += [ref["majority"], ref["chance"]]
    ax.set_xticks(range(len(result.langs)))
    ax.set_xticklabels([f"{l} ({r['target_split'][l]})" for l in result.langs])
    lo = min(lows) if lows else 0
    ax.set_ylim(max(0.0, lo - 0.05), None)
    ax.set_ylabel(r["task_info"]["metric"])
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    cap = (result.caption() + "; k selected on English dev; error bars: 95% bootstrap interval "
           "of the seed mean over seeds and target sentences; ~ faded: at chance (interval "
           "reaches the majority rate)")
    return show_or_save(fig, path, result.figure_meta(cap), owned=owned, title=
                        f"Fusion vs baselines, {r['task']} (mean over seeds {r['seeds']['train']})")


def summary_figure(paths, out: Path) -> list[Path]:
    """A results table figure across tasks (like the paper's), from existing fusion.json files.

    ``paths``: fusion.json files and/or folders (a folder holding ``<task>/fusion.json``,
    such as ``out/fusion``). Cells: mean over target languages of the seed-mean score x 100,
    ± the mean seed std; the first rows give the majority-class and chance rates. A cell at
    chance in any language (its interval reaches the majority rate) is marked "~" and greyed;
    the best non-oracle cell per task that is *not* at chance is bold
    (:func:`probe.stats.best_above_chance`): when every method is at chance nothing is bold,
    and neither is anything for a file without reference rates. Writes ``out`` (.png + .pdf).
    """
    import matplotlib.pyplot as plt

    from ..plotting import finish, setup_style

    setup_style()
    s = summary_table(paths)
    highlight = summary_highlight(s)
    tasks = s["tasks"]
    labels = [lab for m, lab in SUMMARY_ROWS if m in s["rows"]]
    methods = [m for m, _lab in SUMMARY_ROWS if m in s["rows"]]
    n_ref = 2
    cell_text = [[("n/a" if s["reference"][t] is None else f"{100 * s['reference'][t][key]:.1f}")
                  for t in tasks] for key in ("majority", "chance")]
    for m in methods:
        row = []
        for t in tasks:
            c = s["rows"][m].get(t)
            row.append("" if c is None else f"{100 * c['mean']:.1f} ± {100 * c['std']:.1f}"
                       + (" ~" if c.get("at_chance") else ""))
        cell_text.append(row)
    labels = ["majority class", "chance"] + labels
    cols = [f"{t} ({'F1' if s['metrics'][t] == 'f1' else 'acc'})\n→ {','.join(s['langs'][t])}"
            f"\n{s['n_seeds'][t]} seed(s)" for t in tasks]
    fig, ax = plt.subplots(figsize=(2.2 + 1.9 * len(tasks), 0.9 + 0.42 * (len(methods) + n_ref)))
    ax.axis("off")
    tab = ax.table(cellText=cell_text, rowLabels=labels, colLabels=cols, loc="center",
                   cellLoc="center")
    tab.auto_set_font_size(False)
    tab.set_fontsize(9)
    tab.scale(1, 1.6)
    for j, t in enumerate(tasks):
        for i in range(n_ref):
            tab[i + 1, j].set_text_props(color="0.35", fontstyle="italic")
        # the oracle row picks k on the targets themselves: it is not a competitor
        for i, m in enumerate(methods):
            if s["rows"][m].get(t, {}).get("at_chance"):
                tab[i + 1 + n_ref, j].set_text_props(color="0.55")
        best = highlight.get(t)
        if best is not None:
            tab[methods.index(best) + 1 + n_ref, j].set_text_props(fontweight="bold")
    for j in range(len(tasks)):
        tab[0, j].set_height(tab[0, j].get_height() * 2.0)
    # the tasks' features may come from different precisions: one line when they agree
    precisions = {t: (precision_text(p) if p else "precision: not recorded") for t, p in s["precision"].items()}
    features = (next(iter(precisions.values())) if len(set(precisions.values())) == 1 else
                "; ".join(f"{t} {text}" for t, text in precisions.items()))
    meta = {"model": s["model"], "versions": s["versions"], "seed": ",".join(map(str, s["seeds"])),
            "data_caption": "XTREME, zero-shot from English, mean over target languages; frozen "
                            "encoder (the paper fine-tunes mBERT); ~ grey: at chance (95% "
                            "interval over seeds and sentences reaches the majority rate) in a "
                            f"language, never bold; features: {features}"}
    return finish(fig, Path(out), meta, "Layer fusion on a frozen encoder: zero-shot results")
