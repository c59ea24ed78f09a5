"""The figures of fine-tuning reports: :func:`draw_scores` and :func:`draw_gains` (drawn by
:meth:`FinetuneResult.plot` and :meth:`FinetuneResult.plot_gains`) and :func:`summary_figure`,
the measured DLFA gains of saved reports next to the paper's.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import ProbeError
from .report import PAPER_GAINS, read_report


def draw_scores(report: dict, ax=None):
    """Scores per fusion and target with 95% intervals, majority and chance lines, into
    ``ax`` (one Axes; None: a new figure); returns the Figure."""
    from ..plotting import palette, subplots

    r = report
    langs = list(r["langs"])
    # wide enough for the title and legend even with one target and one fusion setting
    width_in = max(5.5, 1.6 + 1.4 * len(langs) * max(1, len(r["fusions"]) / 2))
    fig, (ax,) = subplots(ax, 1, figsize=(width_in, 3.4))
    names = r["fusions"]
    colors = palette(len(names))
    width = 0.8 / max(1, len(names))
    for j, name in enumerate(names):
        for i, lang in enumerate(langs):
            row = r["results"][lang][name]
            x = i + (j - (len(names) - 1) / 2) * width
            lo, hi = row["ci95"]
            ax.bar(x, row["mean"], width * 0.9, color=colors[j],
                   hatch="//" if row["at_chance"] else None,
                   label=(name + (" (at chance)" if row["at_chance"] else "")) if i == 0 else None)
            ax.errorbar(x, row["mean"], yerr=[[row["mean"] - lo], [hi - row["mean"]]],
                        color="k", lw=1, capsize=2)
    for i, lang in enumerate(langs):
        rr = r["reference_rates"][lang]
        ax.hlines(rr["majority"], i - 0.45, i + 0.45, colors="0.3", linestyles="--",
                  label="majority class" if i == 0 else None)
        ax.hlines(rr["chance"], i - 0.45, i + 0.45, colors="0.6", linestyles=":",
                  label="chance (training label frequencies)" if i == 0 else None)
    ax.set_xticks(range(len(langs)))
    ax.set_xticklabels([f"{l} ({r['target_split'][l]})" for l in langs])
    ax.set_ylabel(r["task_info"]["metric"])
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return fig


def draw_gains(report: dict, ax=None):
    """Measured gain over ``none`` per fusion and target next to the paper's gain, and
    (hatched) each ``dlfa:K``'s gain over its control at the same K; 95% intervals where
    there is more than one seed. Draws into ``ax`` (one Axes; None: a new figure);
    returns the Figure."""
    from ..plotting import palette, subplots

    r = report
    langs = list(r["langs"])
    fig, (ax,) = subplots(ax, 1, figsize=(5.5, 3.2))
    names = [n for n in r["fusions"] if n != "none"]
    colors = palette(len(langs) + 1)
    labels = []
    x = 0

    def bar(g, color, hatch=None):
        ax.bar(x, g["points"], 0.8, color=color, hatch=hatch)
        if g["ci95"]:
            ax.errorbar(x, g["points"], yerr=[[g["points"] - 100 * g["ci95"][0]],
                                              [100 * g["ci95"][1] - g["points"]]],
                        color="k", lw=1, capsize=2)

    for name in names:
        for i, lang in enumerate(langs):
            g = r["results"][lang][name].get("gain_vs_none")
            if not g:
                continue
            bar(g, colors[i])
            labels.append(f"{name}\n{lang}")
            x += 1
    for name in names:
        for i, lang in enumerate(langs):
            for c, g in (r["results"][lang][name].get("gain_vs_control") or {}).items():
                bar(g, colors[i], hatch="//")
                labels.append(f"{name}\n-{c}\n{lang}")
                x += 1
    pg = r["paper"]["gain_points"]
    if pg is not None and "none" in r["fusions"]:
        ax.bar(x, pg, 0.8, color=colors[-1], hatch="..")
        labels.append("paper\n(mBERT)")
        x += 1
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, fontsize=7)
    ax.set_ylabel("gain (points) over standard\nfine-tuning; hatched: over the control")
    return fig


def summary_figure(paths, out: Path, fusion: str | None = None) -> list[Path]:
    """Measured DLFA gains (mean over targets, per task) next to the paper's four gains.

    ``paths``: finetune.json files or folders holding ``*/finetune.json``. The measured bar
    is the ``fusion`` setting (default: each report's dev-selected DLFA) with its mean
    interval bounds over targets; tasks without a report show the paper's bar only.
    """
    import matplotlib.pyplot as plt

    from ..plotting import finish, setup_style

    setup_style()
    reports = {}
    for p in ([paths] if isinstance(paths, (str, Path)) else paths):
        p = Path(p)
        files = [p] if p.is_file() else ([p / "finetune.json"] if (p / "finetune.json").is_file()
                                         else sorted(p.glob("*/finetune.json")))
        for f in files:
            rep = read_report(f)
            reports[rep["task"]] = rep
    if not reports:
        raise ProbeError(f"no finetune.json found in {paths}")
    tasks = ["pos", "ner", "xnli", "pawsx"]
    fig, ax = plt.subplots(figsize=(6.5, 3.4))
    caps = []
    for i, t in enumerate(tasks):
        ax.bar(i - 0.2, PAPER_GAINS[t], 0.38, color="0.7", label="paper (mBERT)" if i == 0 else None)
        rep = reports.get(t)
        if rep is None:
            continue
        name = fusion or rep.get("selected_dlfa")
        gains = [rep["results"][l][name].get("gain_vs_none") for l in rep["langs"]
                 if name in rep["results"][l]]
        gains = [g for g in gains if g]
        if not gains:
            continue
        m = float(np.mean([g["points"] for g in gains]))
        ax.bar(i + 0.2, m, 0.38, color="C0", label="measured" if not caps else None)
        cis = [g["ci95"] for g in gains if g["ci95"]]
        if cis:
            lo, hi = 100 * np.mean([c[0] for c in cis]), 100 * np.mean([c[1] for c in cis])
            ax.errorbar(i + 0.2, m, yerr=[[m - lo], [hi - m]], color="k", lw=1, capsize=2)
        d = rep["data"]
        caps.append(f"{t}: {name}, train {d['train']['n_examples']}, "
                    f"{rep['params']['epochs']} ep, {rep['n_seeds']} seeds, "
                    f"targets {','.join(rep['langs'])}")
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xticks(range(len(tasks)))
    ax.set_xticklabels(tasks)
    ax.set_ylabel("DLFA gain over standard\nfine-tuning (points)")
    ax.legend(fontsize=8)
    first = next(iter(reports.values()))
    meta = {"model": first["model"], "versions": first.get("versions", {}),
            "data_caption": "fine-tuned end to end, zero-shot from English, mean over targets "
                            "(interval: mean of per-target seed+sentence bounds); "
                            + "; ".join(caps)}
    return finish(fig, Path(out), meta, "DLFA in a fine-tuned encoder: measured vs paper")
