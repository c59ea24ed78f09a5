"""Does another encoder move the layer trade-off? Models compared on relative depth.

Runs :func:`probe.compare` for the chosen model and its ``random:`` control (same
architecture and tokenizer, random weights: the usual probing baseline), English → de, zh:
per-layer CKA, PUD retrieval and zero-shot POS on one axis of relative depth (layer / L),
each model's peak layers (absolute and relative, with the layers within noise of the
peak), the DLFA fusion gain at relative depth 0.5, and whether the models' differences
are within noise. Offline only ``e5-small-q4`` and its control exist; on a machine that
reaches the Hugging Face Hub pass more, e.g.
``--models bert-base-multilingual-cased,xlm-roberta-base,xlm-roberta-large``.

    python3 -m probe.analyses.scaling [--model e5-small-q4] [--models A,B,...] [--quick]
"""
from __future__ import annotations

import time
from pathlib import Path

from ._common import QUICK_PUD, log, outputs, record, script_cli, write_json
from probe.results import closed

NAME = "scaling"
CLAIM = ("A trained encoder's cross-lingual peak sits at a different relative depth than its "
         "structural (zero-shot POS) peak, and both differ from a random-weight control beyond noise.")

#: fusion settings shared with fusion_sweep, so e5's DLFA runs and cache entries are reused
FUSION = {"fusion_seeds": 2, "fusion_examples": 1500, "fusion_dev": 500, "fusion_test": 500}
QUICK_FUSION = {"fusion_seeds": 1, "fusion_examples": 300, "fusion_dev": 100, "fusion_test": 100}


def main(model: str = "e5-small-q4", out_root: Path = Path("."), quick: bool = False, *,
         models: str | None = None, langs: str | None = None, seed: int = 0) -> list[Path]:
    from probe.compare import compare

    t0 = time.time()
    names = [m for m in (models or f"{model},random:{model}").split(",") if m]
    targets = [x for x in (langs or ",".join(QUICK_PUD)).split(",") if x]
    log(f"{NAME}: {' vs '.join(names)}, English → {', '.join(targets)}")
    extra = {"train": ("ud", "dev"), "n_boot": 200, "max_iter": 15, **QUICK_FUSION} if quick else FUSION
    res = compare(names, targets, tasks="pos", seed=seed, progress=False, **extra)
    rep = res.report
    results = {"table": res.table().reset_index().to_dict(orient="records"),
               "noise_summary": res.noise_lines(), "compare_report": rep}
    data = {name: r.report["data"] for name, r in res.layer_results.items()}
    rec = record(NAME, __file__, CLAIM, {"name": " vs ".join(res.models), "models": rep["models"]}, data,
                 rep["seeds"], {**rep["config"], "quick": quick}, results, t0)
    json_path, fig_path = outputs(out_root, NAME)
    write_json(json_path, rec)
    return [json_path, *closed(res.plot(fig_path), fig_path)]


if __name__ == "__main__":
    script_cli(main, __doc__, "small run: EWT dev for probes, 15 L-BFGS iterations, a tiny fusion run",
               [("--models", {"help": "comma-separated encoders (default: MODEL,random:MODEL)"}),
                ("--langs", {"help": "comma-separated PUD targets (default: de,zh)"}),
                ("--seed", {"type": int, "help": "probe/bootstrap seed (default: 0)"})])
