"""The curves compared across models: each model's relative-depth curves (CKA, PUD retrieval,
zero-shot POS) with their per-sentence counts, each curve's peak and the layers within noise of
it, and whether two models' peak values differ beyond noise (same sentences, paired)."""
from __future__ import annotations

import numpy as np

from ..tasks import POS

#: the curves compared across models: name -> (report path, has per-sentence outcomes)
CURVES = {
    "cka": "debiased linear CKA en–xx (mean over targets)",
    "retrieval": "PUD retrieval en↔xx, accuracy@1 (pooled over targets)",
    f"{POS}_zero_shot": "zero-shot POS accuracy (pooled over target words)",
}


def _pooled(counts: list[np.ndarray]) -> np.ndarray:
    """Per-layer counts of several targets as one curve: ``[L+1, sum of sentences, 2]``."""
    return np.concatenate(counts, axis=1)


def _curve_values(counts: np.ndarray) -> np.ndarray:
    return counts[:, :, 0].sum(1) / counts[:, :, 1].sum(1)


def model_curves(res, langs: list[str]) -> tuple[dict, dict]:
    """Relative-depth curves of one LayerResult and their per-sentence counts (if any)."""
    r = res.report
    curves = {"layers": res.layer_ids, "relative_depth": res.relative_depth,
              "cka": list(np.mean([r["cka"][l]["debiased"] for l in langs], axis=0))}
    counts = {}
    if res.counts is not None and all(f"cka-jackknife en-{l}" in res.counts for l in langs):
        # [L+1, n_groups]: the same sentence groups for every target, so the mean pairs up
        counts["cka"] = np.mean([res.counts[f"cka-jackknife en-{l}"] for l in langs], axis=0)
    if res.counts is not None:
        counts["retrieval"] = _pooled([res.counts[f"retrieval en-{l}"] for l in langs])
        if POS in r["probes"]:
            counts[f"{POS}_zero_shot"] = _pooled([res.counts[f"{POS} {l}"] for l in langs])
    for curve, c in counts.items():
        if curve != "cka":
            curves[curve] = _curve_values(c).tolist()
    if "retrieval" not in curves:  # loaded from JSON: means over targets
        curves["retrieval"] = list(np.mean([[(x["en2xx"] + x["xx2en"]) / 2 for x in
                                             r["retrieval"]["pud"][l]["plain"]] for l in langs], axis=0))
    if f"{POS}_zero_shot" not in curves and POS in r["probes"]:
        curves[f"{POS}_zero_shot"] = list(np.mean([[x["accuracy"] for x in r["probes"][POS][l]]
                                                 for l in langs], axis=0))
    return curves, counts


def peaks_of(curves: dict, counts: dict, n_layers: int, n_boot: int, seed: int) -> dict:
    from ..layerwise import jackknife_noise_summary, noise_summary

    out = {}
    for curve in CURVES:
        if curve not in curves:
            continue
        values = np.asarray(curves[curve])
        if curve in counts:
            ns = (jackknife_noise_summary(values, counts[curve]) if curve == "cka"
                  else noise_summary(counts[curve], n_boot=n_boot, seed=seed))
            peak = ns["peak_layer"]
            tied = ns["within_noise_of_peak"]
            out[curve] = {"layer": peak, "relative": peak / n_layers, "value": float(values[peak]),
                          "within_noise": tied}
        else:
            peak = int(np.argmax(values))
            out[curve] = {"layer": peak, "relative": peak / n_layers, "value": float(values[peak]),
                          "note": "no interval: per-sentence outcomes not available"}
    return out


def model_differences(names, all_counts, peaks, n_boot, seed) -> list[dict]:
    """Each pair of models: is the difference of their peak values within noise?"""
    from ..stats import jackknife_difference, paired_difference_counts

    out = []
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            for curve in CURVES:
                ca, cb = all_counts[a].get(curve), all_counts[b].get(curve)
                if ca is None or cb is None:
                    continue
                la, lb = peaks[a][curve]["layer"], peaks[b][curve]["layer"]
                xa, xb = ca[la], cb[lb]
                if curve == "cka":
                    if xa.shape != xb.shape:
                        continue
                    d = jackknife_difference(peaks[a][curve]["value"], peaks[b][curve]["value"], xa, xb)
                else:
                    if xa.shape != xb.shape or not np.array_equal(xa[:, 1], xb[:, 1]):
                        continue  # different words (e.g. another pooling): not paired
                    d = paired_difference_counts(xa[:, 0], xb[:, 0], xa[:, 1], n_boot=n_boot, seed=seed)
                out.append({"curve": curve, "a": a, "b": b, "layer_a": la, "layer_b": lb,
                            "value_a": peaks[a][curve]["value"], "value_b": peaks[b][curve]["value"],
                            "difference": d.difference, "lo": d.lo, "hi": d.hi,
                            "within_noise": d.within_noise})
    return out
