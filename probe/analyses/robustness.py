"""How robust is zero-shot transfer to noisy input, layer by layer?

Runs :func:`probe.layers` with seeded character-level perturbations of the target-language
PUD text (typos at three rates, dropped diacritics, lower-casing; word segmentation and
gold labels unchanged; English and the probes' training data stay clean) and plots, per
layer, the drop of zero-shot POS accuracy and of PUD retrieval from clean to perturbed
text with 95% paired sentence-bootstrap intervals. Each perturbed text is its own cache
entry. German by default (it has case and umlauts, so all three kinds change words); add
languages with ``--langs de,ru,...`` (each costs one extraction per perturbation).

    python3 -m probe.analyses.robustness [--model e5-small-q4] [--langs de] [--quick]
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ._common import log, outputs, record, script_cli, write_json
from probe.results import closed

NAME = "robustness"
CLAIM = ("Noisy target text hurts the lower and middle layers most; the last layers, trained for "
         "sentence similarity, are the most robust, for the probe as for retrieval.")

PERTURB = "typo:0.05,0.1,0.2,drop-diacritics,lowercase"
QUICK_PERTURB = "typo:0.1,lowercase"


def summarise(rep: dict) -> dict:
    """Per perturbation and language: the layer that loses least and most, for each metric."""
    out = {}
    for pert, per_lang in rep["robustness"]["results"].items():
        for lang, r in per_lang.items():
            row = {"changed_words": r["changed_words"]}
            for metric, drops in (("pos", r["pos"]["drop"]), ("retrieval", r["retrieval_drop"])):
                d = np.asarray(drops)[:, 0]
                row[metric] = {"least_hurt_layer": int(np.argmin(d)), "most_hurt_layer": int(np.argmax(d)),
                               "min_drop": float(d.min()), "max_drop": float(d.max()),
                               "significant_layers": [l for l, (_d, lo, hi) in enumerate(drops) if not lo <= 0 <= hi]}
            out[f"{pert} {lang}"] = row
    return out


def main(model: str = "e5-small-q4", out_root: Path = Path("."), quick: bool = False, *,
         langs: str = "de", perturb: str | None = None, seed: int = 0) -> list[Path]:
    from probe.layerwise import LayerResult, layers

    t0 = time.time()
    perturb = perturb or (QUICK_PERTURB if quick else PERTURB)
    targets = [x for x in langs.split(",") if x]
    log(f"{NAME}: English → {', '.join(targets)} perturbed by {perturb} ({model})")
    extra = {"train": ("ud", "dev"), "max_iter": 15, "n_boot": 200} if quick else {}
    res = layers(targets, model=model, tasks="pos", seed=seed, tatoeba=False, perturb=perturb,
                 progress=False, **extra)
    rep = res.report
    results = {"summary": summarise(rep), "robustness": rep["robustness"], "noise": rep["noise"],
               "clean": {"pos": {l: [x["accuracy"] for x in rep["probes"]["pos"][l]] for l in targets},
                         "retrieval": {l: [(x["en2xx"] + x["xx2en"]) / 2 for x in rep["retrieval"]["pud"][l]["plain"]]
                                       for l in targets}}}
    rec = record(NAME, __file__, CLAIM, rep["model"], rep["data"], rep["seeds"],
                 {**rep["config"], "quick": quick}, results, t0)
    json_path, fig_path = outputs(out_root, NAME)
    write_json(json_path, rec)
    return [json_path, *closed(LayerResult(rep).plot_robustness(fig_path), fig_path)]


if __name__ == "__main__":
    script_cli(main, __doc__, "typo:0.1 and lowercase only, EWT dev for probes, fewer iterations",
               [("--langs", {"help": "comma-separated PUD targets (default: de)"}),
                ("--perturb", {"help": f"perturbations (default: {PERTURB})"}),
                ("--seed", {"type": int, "help": "perturbation/probe/bootstrap seed (default: 0)"})])
