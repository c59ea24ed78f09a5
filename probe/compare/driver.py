"""The run function of ``probe compare``: :func:`compare` resolves every model before any work,
runs :func:`probe.layers` (and a small DLFA fusion run, :func:`probe.fuse`) for each, and builds
the report of a :class:`~probe.compare.result.CompareResult`.
"""
from __future__ import annotations

import sys
import time
from typing import Sequence

import numpy as np

from ..errors import ProbeError
from ..tasks import POS
from .curves import CURVES, model_curves, model_differences, peaks_of
from .depth import nearest_layer
from .result import CompareResult


def compare(models: Sequence | str, langs: Sequence[str] | str, *, tasks: Sequence[str] | str = POS,
            fusion: bool = True, fusion_depth: float = 0.5, fusion_seeds: int = 2,
            fusion_examples: int | str = 1500, fusion_dev: int | str = 500, fusion_test: int | str = 500,
            fusion_epochs: int = 3, seed: int = 0, n_boot: int = 1000,
            train: tuple[str, str] = ("ud", "dev+test"), max_iter: int = 30, tatoeba: bool = False,
            progress: bool = True, device: str | None = None, log=None,
            dtype: str = "float32") -> CompareResult:
    """Run :func:`probe.layers` (and a small DLFA fusion run) for each model; compare them.

    ``models``: names (``"e5-small-q4,random:e5-small-q4"``) or
    :class:`~probe.encoders.EncoderSpec` objects; every name is resolved before any work.
    ``fusion_depth``: DLFA fuses the layer nearest this relative depth with the last one
    (POS, English → ``langs``; ``fusion_seeds`` training seeds, seeded subsamples of
    ``fusion_examples``/``fusion_dev``/``fusion_test``); ``fusion=False`` skips it.
    ``dtype``: the forward's precision for every model (float32 by default; bfloat16 or
    float16 under autocast), passed to :func:`probe.layers` and :func:`probe.fuse`; it and the
    device type are recorded in the report, the table header and the figure.
    Other arguments as in :func:`probe.layers`.
    """
    from ..encoders import resolve_encoder
    from ..extraction import precision_record
    from ..layerwise import check_targets, layers, versions

    precision = precision_record(device, dtype)  # a bad dtype or device: one error, before any work
    t0 = time.time()
    log = log or ((lambda msg: print(msg, file=sys.stderr)) if progress else (lambda msg: None))
    if isinstance(models, str):
        models = [m.strip() for m in models.split(",") if m.strip()]
    if len(models) < 1:
        raise ProbeError("compare needs at least one model")
    specs = [resolve_encoder(m) if isinstance(m, str) else m for m in models]
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ProbeError(f"a model is listed twice: {', '.join(names)}")
    targets = check_targets(langs)
    if fusion:  # fail before any work if a target has no POS data for the fusion run
        from ..data import get_corpus
        from ..data.xtreme import corpus_name
        from ..languages import parse_langs

        pos = get_corpus(corpus_name(POS))
        for lang in parse_langs(targets):
            pos.check(lang, "test")
    results, curves, counts, peaks, fus, infos = {}, {}, {}, {}, {}, []
    for spec in specs:
        log(f"compare: {spec.name}: per-layer analysis, English -> {', '.join(targets)}")
        res = layers(targets, model=spec, tasks=tasks, seed=seed, n_boot=n_boot, tatoeba=tatoeba,
                     train=train, max_iter=max_iter, progress=progress, device=device, log=log, dtype=dtype)
        L = res.n_layers
        results[spec.name] = res
        curves[spec.name], counts[spec.name] = model_curves(res, targets)
        peaks[spec.name] = peaks_of(curves[spec.name], counts[spec.name], L, n_boot, seed)
        infos.append({"name": spec.name, "fingerprint": spec.fingerprint, "source": spec.source,
                      "note": getattr(spec, "note", ""), "n_layers": L, "hidden": res.report["model"]["hidden"]})
        if fusion:
            from ..transfer import fuse

            k = nearest_layer(fusion_depth, L, fusable=True)
            log(f"compare: {spec.name}: DLFA fusing layer {k} (relative depth {k / L:.2f}) with layer {L}")
            fr = fuse(POS, targets, model=spec, layers=[k], seeds=fusion_seeds, methods=["dlfa"],
                      max_examples=fusion_examples, max_dev=fusion_dev, max_test=fusion_test,
                      epochs=fusion_epochs, n_boot=n_boot, progress=progress, device=device, dtype=dtype)
            gain = {}
            for lang in targets:
                g = fr.report["comparison"][lang]["dlfa"]["gain_vs_last"]
                # one seed gives no gain interval (it could not cover seed variance): no claim
                ci = g["ci95"]
                gain[lang] = {"mean": g["mean"], "ci95": ci,
                              "within_noise": ci is None or bool(ci[0] <= 0 <= ci[1])}
            fus[spec.name] = {"task": POS, "k": k, "relative": k / L, "gain": gain,
                              "mean_gain": float(np.mean([g["mean"] for g in gain.values()])),
                              "all_within_noise": all(g["within_noise"] for g in gain.values()),
                              "seeds": fusion_seeds, "data": fr.report.get("data"),
                              "config": fr.report.get("config")}
    report = {
        "question": "does a different (e.g. larger) encoder move the cross-lingual peak, the structural "
                    "peak, and the fusion gain, on one axis of relative depth?",
        "layer_indexing": "0 = embedding output, L = last transformer layer; relative depth = layer / L",
        "models": infos,
        "precision": precision,
        "config": {"dtype": dtype, "langs": targets, "tasks": results[names[0]].report["config"]["tasks"],  # as recorded: "pos"
                   "train": {"corpus": train[0], "split": train[1]}, "max_iter": max_iter, "n_boot": n_boot,
                   "tatoeba": tatoeba, "fusion": fusion, "fusion_depth": fusion_depth,
                   "curves": CURVES},
        "seeds": {"probe": seed, "bootstrap": seed, "fusion": list(range(fusion_seeds)) if fusion else []},
        "versions": versions(),
        "curves": curves,
        "peaks": peaks,
        "model_differences": model_differences(names, counts, peaks, n_boot, seed),
        "noise_method": "probes and retrieval: paired sentence bootstrap (95% CI) on the same PUD sentences; "
                        "CKA: delete-a-group jackknife over the same sentence groups (95% normal interval)",
        "timings_s": {"total": round(time.time() - t0, 2)},
    }
    if fusion:
        report["fusion"] = fus
    return CompareResult(report, results)
