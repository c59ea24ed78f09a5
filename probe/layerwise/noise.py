"""Which layers are within noise of a curve's best layer: paired sentence bootstrap of per-sentence
counts (:func:`noise_summary`, memoised by :func:`memo_noise`) and delete-a-group jackknife for
CKA (:func:`jackknife_noise_summary`)."""
from __future__ import annotations

import hashlib

import numpy as np

from ..cache import source_file


def difference_row(d) -> list:
    """A :class:`probe.stats.PairedDifference` as ``[diff, lo, hi]`` for the report."""
    return [round(d.difference, 6), round(d.lo, 6), round(d.hi, 6)]


def count_difference(a: np.ndarray, b: np.ndarray, n_boot: int, seed: int):
    """Paired sentence bootstrap of ``acc(a) - acc(b)`` from ``[n_sentences, 2]`` counts each."""
    from ..stats import paired_difference_counts

    return paired_difference_counts(a[:, 0], b[:, 0], a[:, 1], n_boot=n_boot, seed=seed)


def _ties_with_peak(values, difference, layer_ids=None) -> dict:
    """Peak of ``values`` and the layers whose ``difference(peak, layer)`` interval holds 0
    (``layer_ids``: the layer of each row, default ``0..n-1``)."""
    values = np.asarray(values, dtype=np.float64)
    ids = list(range(len(values))) if layer_ids is None else [int(l) for l in layer_ids]
    peak = int(np.argmax(values))
    tied, diffs = [], []
    for l in range(len(values)):
        if l == peak:
            tied.append(ids[l])
            diffs.append([0.0, 0.0, 0.0])
            continue
        d = difference(peak, l)
        diffs.append(difference_row(d))
        if d.within_noise:
            tied.append(ids[l])
    return {"peak_layer": ids[peak], "peak_value": float(values[peak]), "within_noise_of_peak": tied,
            "difference_to_peak": diffs}


def memo_noise(counts: np.ndarray, n_boot: int, seed: int, layer_ids) -> dict:
    """:func:`noise_summary`, memoised under a digest of the counts themselves (a warm run
    repeats no bootstrap)."""
    from ..cache import code_version, memoized

    counts = np.ascontiguousarray(counts, dtype=np.int64)
    digest = hashlib.sha256(str(counts.shape).encode() + counts.tobytes()).hexdigest()
    return memoized("noise", {"counts": digest, "n_boot": n_boot, "seed": seed, "layers": list(layer_ids)},
                    lambda: noise_summary(counts, n_boot=n_boot, seed=seed, layer_ids=layer_ids),
                    code=code_version(noise_summary, _ties_with_peak, count_difference, difference_row,
                                      source_file("stats")))


def noise_summary(counts: np.ndarray, *, n_boot: int = 1000, seed: int = 0, layer_ids=None) -> dict:
    """Which layers are indistinguishable from the best one, by paired sentence bootstrap.

    ``counts: [n_layers, n_sentences, 2]`` per-sentence (correct, total) of one curve, the
    same sentences at every layer. For each layer the 95% CI of ``value(peak) - value(layer)``
    is computed with the same resampled sentences for both; a layer whose CI contains 0 is
    *within noise* of the peak.

    Returns ``{"peak_layer", "peak_value", "within_noise_of_peak": [layers],
    "difference_to_peak": [[diff, lo, hi] per layer]}``.
    """
    counts = np.asarray(counts, dtype=np.float64)
    values = counts[:, :, 0].sum(1) / counts[:, :, 1].sum(1)
    return _ties_with_peak(values, lambda p, l: count_difference(counts[p], counts[l], n_boot, seed),
                           layer_ids)


#: delete-a-group jackknife groups for CKA intervals
CKA_GROUPS = 20


def jackknife_noise_summary(values, replicates, *, layer_ids=None) -> dict:
    """Like :func:`noise_summary` for a statistic with jackknife replicates (CKA).

    ``values: [n_layers]`` full-sample values; ``replicates: [n_layers, n_groups]`` the
    statistic without each group (the same groups at every layer). A layer is within noise of
    the peak when the 95% jackknife interval of their difference contains 0.
    """
    from ..stats import jackknife_difference

    values = np.asarray(values, dtype=np.float64)
    reps = np.asarray(replicates, dtype=np.float64)
    return _ties_with_peak(values, lambda p, l: jackknife_difference(values[p], values[l], reps[p], reps[l]),
                           layer_ids)
