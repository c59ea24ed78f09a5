"""Do the layers that carry structure differ from the layers that are cross-lingual?

English → every available PUD language: per-layer linear probes (POS, dependency
relation; trained on UD English-EWT dev+test, evaluated on English PUD and zero-shot on
each target's PUD; the dependency-relation probe on request, see :data:`DEFAULT_TASKS`),
a language-identity probe, debiased linear CKA and parallel-sentence
retrieval of PUD sentence vectors. One :func:`probe.layers` call; the per-layer probe fits
are memoised in the cache, so a re-run only redraws.

Writes ``results/layer_tradeoff.json`` (summary + the full ``layers`` report) and
``figures/layer_tradeoff.png``/``.pdf``.

    python3 -m probe.analyses.layer_tradeoff [--model e5-small-q4] [--quick]
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ._common import csv_list, fig_meta, log, outputs, pud_targets, record, script_cli, write_json
from probe.results import closed

NAME = "layer_tradeoff"
#: Probe tasks run by default. The dependency-relation probe (``deprel``, 37 labels, plus its
#: control task) costs about twice the POS probes per layer and would take the figures run
#: past its 30-minute budget on 2 CPU cores; add it with ``--tasks pos,deprel,langid``.
DEFAULT_TASKS = ("pos", "langid")
CLAIM = ("Structure (probe accuracy) peaks in different layers than cross-lingual alignment "
         "(CKA, retrieval): the trade-off across depth.")


def _mean_ret(rows) -> list[float]:
    return [(x["en2xx"] + x["xx2en"]) / 2 for x in rows]


def summarise(report: dict) -> dict:
    """Per-layer curves (raw), their peak layers, and per-language peak layers."""
    langs = report["config"]["langs"]
    pr = report["probes"]
    curves: dict[str, list[float]] = {}
    if "pos" in pr:
        curves["pos_en"] = [x["accuracy"] for x in pr["pos"]["en"]]
        curves["pos_zero_shot_mean"] = np.mean([[x["accuracy"] for x in pr["pos"][l]] for l in langs], 0).tolist()
        curves["pos_control_en"] = [x["accuracy"] for x in pr["pos"]["control_en"]]
        curves["pos_selectivity_en"] = pr["pos"]["selectivity_en"]
    if "deprel" in pr:
        curves["deprel_en"] = [x["accuracy"] for x in pr["deprel"]["en"]]
        curves["deprel_zero_shot_mean"] = np.mean([[x["accuracy"] for x in pr["deprel"][l]] for l in langs], 0).tolist()
    if report.get("langid"):
        curves["langid"] = [x["accuracy"] for x in report["langid"]]
    curves["cka_mean"] = np.mean([report["cka"][l]["debiased"] for l in langs], 0).tolist()
    ret = report["retrieval"]["pud"]
    curves["retrieval_mean"] = np.mean([_mean_ret(ret[l]["plain"]) for l in langs], 0).tolist()
    curves["retrieval_centered_mean"] = np.mean([_mean_ret(ret[l]["centered"]) for l in langs], 0).tolist()
    peaks = {k: int(np.argmax(v)) for k, v in curves.items() if k not in ("pos_control_en", "langid")}
    if "langid" in curves:
        peaks["langid_min"] = int(np.argmin(curves["langid"]))
    per_lang = {}
    for l in langs:
        d = {"cka_peak": int(np.argmax(report["cka"][l]["debiased"])),
             "retrieval_peak": int(np.argmax(_mean_ret(ret[l]["plain"]))),
             "retrieval_centered_peak": int(np.argmax(_mean_ret(ret[l]["centered"]))),
             "cka_max": float(np.max(report["cka"][l]["debiased"])),
             "retrieval_max": float(np.max(_mean_ret(ret[l]["plain"])))}
        for task in ("pos", "deprel"):
            if task in pr:
                acc = [x["accuracy"] for x in pr[task][l]]
                d[f"{task}_zero_shot_peak"] = int(np.argmax(acc))
                d[f"{task}_zero_shot_max"] = float(np.max(acc))
        per_lang[l] = d
    return {"curves": {k: [round(float(x), 5) for x in v] for k, v in curves.items()},
            "peak_layer": peaks, "per_language": per_lang}


def plot(rec: dict, path: Path | None = None):
    import matplotlib.pyplot as plt

    from probe.plotting import LAYER_AXIS, palette, setup_style, show_or_save

    setup_style()
    rep = rec["results"]["layers_report"]
    langs = rep["config"]["langs"]
    L = rep["layers"]
    c = rec["results"]["curves"]
    col = palette(6)
    fig, axes = plt.subplots(2, 2, figsize=(10.5, 7.2))
    (a, b), (cc, d) = axes

    # A: structure
    pr = rep["probes"]
    for task, colr in (("pos", col[0]), ("deprel", col[1])):
        if task not in pr:
            continue
        a.plot(L, c[f"{task}_en"], marker="o", ms=3, color=colr, label=f"{task.upper()} en (in-language)")
        zs = np.array([[x["accuracy"] for x in pr[task][l]] for l in langs])
        a.plot(L, zs.mean(0), ls="--", color=colr, label=f"{task.upper()} zero-shot (mean of {len(langs)})")
        a.fill_between(L, zs.min(0), zs.max(0), color=colr, alpha=0.15, lw=0)
    if "pos_control_en" in c:
        a.plot(L, c["pos_control_en"], ls=":", color="0.4", label="POS control task (en)")
    if "langid" in c:
        a.plot(L, c["langid"], marker="s", ms=3, color=col[4], label=f"language ID ({len(langs) + 1} languages)")
    a.set(xlabel=LAYER_AXIS, ylabel="probe accuracy (fraction of words)", ylim=(0, 1.02),
          title="Structure: linear probes (band = range over targets)")
    a.legend(fontsize=7, loc="lower right")

    # B: CKA, C: retrieval — one thin grey line per language, the mean in colour
    for l in langs:
        b.plot(L, rep["cka"][l]["debiased"], color="0.7", lw=0.8)
        cc.plot(L, _mean_ret(rep["retrieval"]["pud"][l]["plain"]), color="0.7", lw=0.8)
    b.plot(L, c["cka_mean"], color=col[2], lw=2.2, marker="o", ms=3, label="mean over targets")
    b.plot([], [], color="0.7", lw=0.8, label="one target language")
    b.set(xlabel=LAYER_AXIS, ylabel="debiased linear CKA (en vs xx)",
          title="Cross-lingual: CKA of PUD sentence vectors")
    b.legend(fontsize=7)
    cc.plot(L, c["retrieval_mean"], color=col[3], lw=2.2, marker="o", ms=3, label="mean, plain")
    cc.plot(L, c["retrieval_centered_mean"], color=col[3], lw=1.6, ls="--", label="mean, mean-centred")
    cc.plot([], [], color="0.7", lw=0.8, label="one target (plain)")
    cc.set(xlabel=LAYER_AXIS, ylabel="accuracy@1 (mean of en→xx, xx→en)", ylim=(0, 1.02),
           title="Cross-lingual: PUD retrieval (1000 candidates)")
    cc.legend(fontsize=7)

    # D: everything min-max normalised, peak layers marked
    show = [("pos_en", "POS en", col[0], "-"), ("pos_zero_shot_mean", "POS zero-shot", col[0], "--"),
            ("deprel_en", "deprel en", col[1], "-"), ("cka_mean", "CKA en–xx", col[2], "-"),
            ("retrieval_mean", "retrieval en↔xx", col[3], "-"), ("langid", "language ID", col[4], ":")]
    for key, label, colr, ls in show:
        if key not in c:
            continue
        v = np.asarray(c[key])
        v = (v - v.min()) / (v.max() - v.min()) if v.max() > v.min() else v * 0
        # language ID is high where layers are language-specific: mark its lowest layer
        k = int(np.argmin(v)) if key == "langid" else int(np.argmax(v))
        d.plot(L, v, ls=ls, color=colr, label=f"{label} ({'lowest' if key == 'langid' else 'peak'} L{k})")
        d.plot([L[k]], [v[k]], marker="*", ms=9, color=colr)
    d.set(xlabel=LAYER_AXIS, ylabel="normalised score (0 = worst, 1 = best layer)", ylim=(-0.05, 1.08),
          title="Trade-off: each curve rescaled to [0, 1]")
    d.legend(fontsize=7, loc="lower left")
    for ax in axes.flat:
        ax.set_xticks(L)
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    cap = (f"probes: UD English-EWT dev+test → PUD test, en + {len(langs)} targets; "
           f"CKA/retrieval: PUD, 1000 parallel sentences, mean of word vectors")
    return show_or_save(fig, path, fig_meta(rec, cap),
                        f"Structure vs cross-lingual alignment per layer — {rec['model']['name']}, PUD")


def main(model: str = "e5-small-q4", out_root: Path = Path("."), quick: bool = False, *,
         tasks=DEFAULT_TASKS, seed: int = 0, n_boot: int = 1000) -> list[Path]:
    from probe.layerwise import layers

    t0 = time.time()
    langs = pud_targets(quick)
    log(f"{NAME}: English → {', '.join(langs)} ({model})")
    # quick: fewer L-BFGS iterations and bootstrap resamples (a smoke run, not for the record)
    extra = {"max_iter": 15, "n_boot": min(n_boot, 200)} if quick else {"n_boot": n_boot}
    res = layers(langs, model=model, tasks=tasks, seed=seed, tatoeba=False, progress=False, **extra)
    rep = res.report
    results = summarise(rep)
    results["layers_report"] = rep
    rec = record(NAME, __file__, CLAIM, rep["model"], rep["data"], rep["seeds"],
                 {**rep["config"], "quick": quick}, results, t0)
    json_path, fig_path = outputs(out_root, NAME)
    write_json(json_path, rec)
    return [json_path, *closed(plot(rec, fig_path), fig_path)]


if __name__ == "__main__":
    script_cli(main, __doc__, "two targets (de, zh), 15 L-BFGS iterations, 200 bootstrap resamples",
               [("--tasks", {"type": csv_list, "help": f"probe tasks: pos, deprel, langid (default: {','.join(DEFAULT_TASKS)})"}),
                ("--seed", {"type": int, "help": "probe, control-task and bootstrap seed (default: 0)"}),
                ("--n-boot", {"type": int, "help": "bootstrap resamples (default: 1000)"})])
