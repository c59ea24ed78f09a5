"""The figures of a :class:`~probe.layerwise.LayerResult`, drawn by its ``plot_*`` methods (which add
the caption and metadata and save when given a path): each ``draw_*`` takes the result and
``ax`` (Axes to draw into, or None for a new figure) and returns the Figure."""
from __future__ import annotations

import numpy as np

from ..errors import ProbeError
from ..tasks import POS


def draw_probes(res, ax=None):
    """Probe accuracy per layer, one panel per probe task, into ``ax`` (one Axes per task;
    None: a new figure); returns the Figure."""
    from ..plotting import LAYER_AXIS, palette, subplots

    r = res.report
    tasks = list(r["probes"])  # the word-level probe tasks, in report order
    fig, axes = subplots(ax, max(len(tasks), 1), figsize=(5.2 * max(len(tasks), 1), 3.8))
    L = res.layer_ids
    for ax, task in zip(axes, tasks):
        cols = palette(len(res.langs) + 1)
        for lang, c in zip(["en"] + res.langs, cols):
            rows = r["probes"][task][lang]
            acc = [x["accuracy"] for x in rows]
            lo = [x["accuracy_ci"][0] for x in rows]
            hi = [x["accuracy_ci"][1] for x in rows]
            label = "en (in-language)" if lang == "en" else f"{lang} (zero-shot)"
            ax.plot(L, acc, marker="o", ms=3, color=c, label=label)
            ax.fill_between(L, lo, hi, color=c, alpha=0.2, lw=0)
        ctrl = [x["accuracy"] for x in r["probes"][task]["control_en"]]
        ax.plot(L, ctrl, ls="--", color="0.4", label="control task (en)")
        ax.set_xlabel(LAYER_AXIS)
        ax.set_ylabel("accuracy (fraction of words)")
        ax.set_title(f"{task.upper()} probe (trained on English)")
        ax.set_ylim(0, 1)
        ax.legend(fontsize=8)
    return fig


def draw_similarity(res, ax=None):
    """CKA and retrieval per layer into ``ax`` (two Axes; None: a new figure); returns the Figure."""
    from ..plotting import LAYER_AXIS, palette, subplots

    r = res.report
    L = res.layer_ids
    fig, (a1, a2) = subplots(ax, 2, figsize=(10.5, 3.8))
    cols = palette(len(res.langs))
    for lang, c in zip(res.langs, cols):
        a1.plot(L, r["cka"][lang]["debiased"], marker="o", ms=3, color=c, label=f"en–{lang}")
        plain = r["retrieval"]["pud"][lang]["plain"]
        cent = r["retrieval"]["pud"][lang]["centered"]
        a2.plot(L, [(x["en2xx"] + x["xx2en"]) / 2 for x in plain], marker="o", ms=3, color=c,
                label=f"en↔{lang}")
        a2.plot(L, [(x["en2xx"] + x["xx2en"]) / 2 for x in cent], ls="--", color=c,
                label=f"en↔{lang}, mean-centred")
    a1.set(xlabel=LAYER_AXIS, ylabel="debiased linear CKA", title="CKA of PUD sentence vectors")
    a2.set(xlabel=LAYER_AXIS, ylabel="accuracy@1 (mean of both directions)",
           title="PUD parallel-sentence retrieval", ylim=(0, 1))
    a1.legend(fontsize=8)
    a2.legend(fontsize=7)
    return fig


def draw_tradeoff(res, ax=None):
    """Every curve of :meth:`LayerResult.tradeoff_curves` on one axis ``ax`` (None: a new
    figure); returns the Figure."""
    from ..plotting import LAYER_AXIS, palette, subplots

    curves = res.tradeoff_curves()
    fig, (ax,) = subplots(ax, 1, figsize=(7.5, 4.2))
    cols = palette(len(curves))
    for (name, v), c in zip(curves.items(), cols):
        style = "-" if "structure" in name or "zero-shot" in name else ("--" if "cross" in name else ":")
        ax.plot(res.layer_ids, v, ls=style, marker="o", ms=3, color=c, label=name)
    ax.set(xlabel=LAYER_AXIS, ylabel="normalised score (0 = worst layer, 1 = best layer)",
           ylim=(-0.05, 1.05))
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return fig


def draw_cka_heatmap(res, lang: str, ax=None):
    """Layer x layer CKA of English vs ``lang`` into ``ax`` (None: a new figure); returns the Figure."""
    import seaborn as sns

    from ..plotting import subplots

    if lang not in res.report["cka_matrix"]:
        raise ProbeError(f"no CKA matrix for {lang!r}; this result has {', '.join(res.report['cka_matrix'])}")
    M = np.asarray(res.report["cka_matrix"][lang])
    fig, (ax,) = subplots(ax, 1, figsize=(6.2, 5.2))
    sns.heatmap(M, ax=ax, xticklabels=res.layer_ids, yticklabels=res.layer_ids, cmap="viridis", vmin=0, vmax=1, square=True,
                cbar_kws={"label": "debiased linear CKA"})
    ax.invert_yaxis()
    ax.set(xlabel=f"{lang} layer (0 = embeddings)", ylabel="en layer (0 = embeddings)")
    return fig


def draw_robustness(res, ax=None):
    """Drop of zero-shot POS and of retrieval per layer under each perturbation into ``ax``
    (one Axes per panel; None: a new figure); returns the Figure."""
    from ..plotting import LAYER_AXIS, palette, subplots

    rob = res.report.get("robustness")
    if not rob:
        raise ProbeError("this result has no robustness analysis (run layers(..., perturb=...))")
    perts = list(rob["results"])
    metrics = [m for m in (POS, "retrieval") if m == "retrieval" or
               m in next(iter(next(iter(rob["results"].values())).values()))]
    fig, axes = subplots(ax, len(metrics), figsize=(5.4 * len(metrics), 3.9))
    cols = palette(len(perts))
    styles = ["-", "--", ":", "-."]
    L = res.layer_ids
    for ax, metric in zip(axes, metrics):
        for (pert, per_lang), c in zip(rob["results"].items(), cols):
            for k, (lang, r) in enumerate(per_lang.items()):
                d = np.asarray(r[metric]["drop"] if metric != "retrieval" else r["retrieval_drop"])
                ax.plot(L, d[:, 0], color=c, ls=styles[k % len(styles)], marker="o", ms=2.5,
                        label=f"{pert}, {lang} ({r['changed_words']:.0%} words changed)")
                ax.fill_between(L, d[:, 1], d[:, 2], color=c, alpha=0.12, lw=0)
        ax.axhline(0, color="0.3", lw=0.8)
        ax.set_xlabel(LAYER_AXIS)
        ax.set_ylabel("accuracy drop (clean − perturbed)")
        ax.set_title("zero-shot POS probe (trained on clean English)" if metric == POS
                     else "PUD retrieval en↔xx (accuracy@1, both directions)")
    axes[-1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return fig
