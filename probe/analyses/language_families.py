"""Are languages of the same family (genus) more similar inside the encoder?

Every pair of the available PUD languages (English included) is compared at one layer:
debiased linear CKA and parallel-sentence retrieval (accuracy@1, mean of both
directions) of their PUD sentence vectors (1000 parallel sentences, mean of the layer's
word vectors). The layer is ``--layer`` or, by default, the one with the highest mean
English–xx CKA. The matrices are ordered by family and genus.

Test: the statistic is mean within-group similarity minus mean between-group similarity
over language pairs; its p-value comes from a permutation test that shuffles the group
labels over languages (one-sided, "same group is more similar"). Run for families and
for genera, for CKA and retrieval at the chosen layer and, as a robustness check, for CKA
at every layer. Everything lands in ``results/language_families.json``.

    python3 -m probe.analyses.language_families [--model e5-small-q4] [--layer K] [--quick]
"""
from __future__ import annotations

import time
from itertools import combinations
from pathlib import Path
from typing import Sequence

import numpy as np

from ._common import (available_langs, fig_meta, log, model_record, open_entries, outputs, record,
                              script_cli, write_json)
from probe.results import closed

NAME = "language_families"
CLAIM = ("Languages of the same family (genus) are more similar to each other in the encoder's "
         "representations than languages of different families.")
N_PERM = 10000
QUICK_LANGS = ("en", "de", "sv", "es", "fr", "ru", "zh")


# --------------------------------------------------------------------------- the test
def group_contrast(S: np.ndarray, labels: Sequence) -> tuple[float, float, float]:
    """(within mean, between mean, within − between) over the off-diagonal pairs of ``S``."""
    S = np.asarray(S, dtype=float)
    lab = np.asarray(labels, dtype=object)
    iu = np.triu_indices(len(lab), k=1)
    same = (lab[:, None] == lab[None, :])[iu]
    vals = S[iu]
    if same.all() or not same.any():
        return float("nan"), float("nan"), float("nan")
    w, b = float(vals[same].mean()), float(vals[~same].mean())
    return w, b, w - b


def permutation_test(S: np.ndarray, labels: Sequence, n_perm: int = N_PERM, seed: int = 0) -> dict:
    """Is similarity higher within groups than between? Permutation test over group labels.

    ``S``: symmetric ``[n, n]`` similarity of ``n`` languages (the diagonal is ignored);
    ``labels``: one group label per language. The statistic is mean within-group pair
    similarity minus mean between-group pair similarity; the null distribution shuffles
    the labels over languages (group sizes kept), ``n_perm`` times with ``seed``. The
    one-sided p-value is ``(1 + #{perm >= observed}) / (1 + n_perm)``.

    >>> S = np.array([[1, .9, .1, .1], [.9, 1, .1, .1], [.1, .1, 1, .8], [.1, .1, .8, 1]])
    >>> r = permutation_test(S, ["a", "a", "b", "b"], n_perm=999)
    >>> round(r["difference"], 3), r["p_value"] <= 1 / 3 + 1e-9
    (0.75, True)
    """
    S = np.asarray(S, dtype=float)
    if S.ndim != 2 or S.shape[0] != S.shape[1] or S.shape[0] != len(labels):
        raise ValueError(f"S must be [n, n] with n = len(labels) = {len(labels)}, got {S.shape}")
    w, b, diff = group_contrast(S, labels)
    lab = np.asarray(labels, dtype=object)
    n_groups_multi = sum(1 for g in set(lab.tolist()) if (lab == g).sum() > 1)
    out = {"within_mean": w, "between_mean": b, "difference": diff, "n_perm": n_perm, "seed": seed,
           "n_languages": len(lab), "n_within_pairs": int(sum((lab[i] == lab[j]) for i, j in combinations(range(len(lab)), 2))),
           "n_groups": len(set(lab.tolist())), "n_groups_with_2plus": n_groups_multi}
    if np.isnan(diff):
        out.update(p_value=float("nan"), null_mean=float("nan"), null_sd=float("nan"))
        return out
    rng = np.random.default_rng(seed)
    iu = np.triu_indices(len(lab), k=1)
    vals = S[iu]
    codes = np.unique(lab, return_inverse=True)[1].ravel()
    null = np.empty(n_perm)
    total = vals.sum()
    for start in range(0, n_perm, 2000):  # blocks of permutations, vectorised
        perms = np.stack([rng.permutation(codes) for _ in range(min(2000, n_perm - start))])
        same = perms[:, iu[0]] == perms[:, iu[1]]  # [block, n_pairs]
        s_in = same @ vals
        n_in = same.sum(axis=1)
        null[start:start + len(perms)] = s_in / n_in - (total - s_in) / (len(vals) - n_in)
    out.update(p_value=float((1 + np.sum(null >= diff - 1e-12)) / (1 + n_perm)),
               null_mean=float(null.mean()), null_sd=float(null.std()))
    return out


# --------------------------------------------------------------------------- similarity
def _vectors(entries: dict, layer: int) -> dict[str, np.ndarray]:
    return {l: np.asarray(e.sentence_vectors(layer, "mean"), dtype=np.float32) for l, e in entries.items()}


def cka_languages(entries: dict, layer: int) -> np.ndarray:
    """``[n, n]`` debiased linear CKA between the languages' sentence vectors at ``layer``
    (one :func:`probe.cka_matrix` call: each language's self-terms are computed once)."""
    from probe.similarity import cka_matrix

    V = _vectors(entries, layer)
    return cka_matrix([V[l] for l in entries], debiased=True)


def retrieval_languages(entries: dict, layer: int, center: bool) -> np.ndarray:
    """``[n, n]`` retrieval accuracy@1 (mean of both directions) between the languages."""
    from probe.similarity import retrieval_accuracy

    V = _vectors(entries, layer)
    langs = list(entries)
    out = np.eye(len(langs))
    for i, j in combinations(range(len(langs)), 2):
        out[i, j] = out[j, i] = retrieval_accuracy(V[langs[i]], V[langs[j]], center=center)["mean"]
    return out


def _aligned(entries: dict) -> dict:
    """Restrict every entry to the sent_ids all share (PUD: identical order in practice)."""
    ids = [e.sent_ids for e in entries.values()]
    if all(x == ids[0] for x in ids):
        return entries
    raise ValueError("PUD entries do not share sentence order; cannot compare them pairwise")


def _fmt_p(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def plot(rec: dict, path: Path | None = None):
    import matplotlib.pyplot as plt
    import seaborn as sns

    from probe.plotting import LAYER_AXIS, palette, setup_style, show_or_save

    setup_style()
    r = rec["results"]
    langs = r["order"]
    lin = r["lineage"]
    layer = r["layer"]
    fig = plt.figure(figsize=(15, 5.4))
    gs = fig.add_gridspec(1, 3, width_ratios=[1, 1, 0.85], wspace=0.5)
    ticks = [f"{l} · {lin[l]['genus']}" for l in langs]
    fam = [lin[l]["family"] for l in langs]
    bounds = [i for i in range(1, len(langs)) if fam[i] != fam[i - 1]]
    for k, (key, label) in enumerate((("cka", "debiased linear CKA"), ("retrieval", "retrieval accuracy@1"))):
        ax = fig.add_subplot(gs[0, k])
        M = np.asarray(r["matrices"][key], dtype=float)
        M_show = M.copy()
        np.fill_diagonal(M_show, np.nan)
        sns.heatmap(M_show, ax=ax, cmap="viridis", square=True, xticklabels=ticks, yticklabels=ticks,
                    cbar_kws={"label": label, "shrink": 0.8})
        for bnd in bounds:
            ax.axhline(bnd, color="white", lw=1.5)
            ax.axvline(bnd, color="white", lw=1.5)
        ax.tick_params(labelsize=6.5)
        t_f = r["tests"][key]["family"]
        t_g = r["tests"][key]["genus"]
        ax.set_title(f"{label}, layer {layer}\nsame − different genus: {t_g['difference']:+.3f} "
                     f"({_fmt_p(t_g['p_value'])})\nsame − different family: {t_f['difference']:+.3f} "
                     f"({_fmt_p(t_f['p_value'])})", fontsize=8.5)
    ax = fig.add_subplot(gs[0, 2])
    cols = palette(2)
    L = list(range(len(r["per_layer"])))
    for grp, c, ls in zip(("genus", "family"), cols, ["-", "--"]):
        d = [row["cka"][grp]["difference"] for row in r["per_layer"]]
        p = [row["cka"][grp]["p_value"] for row in r["per_layer"]]
        ax.plot(L, d, ls=ls, color=c, marker="o", ms=3, label=f"same {grp} − different {grp}")
        sig = [i for i in L if p[i] < 0.05]
        ax.plot(sig, [d[i] for i in sig], ls="none", marker="o", ms=7, mfc="none", color=c)
    ax.axhline(0, color="0.5", lw=0.8)
    ax.axvline(layer, color="0.5", lw=0.8, ls=":")
    ax.set(xlabel=LAYER_AXIS, ylabel="within − between group mean CKA",
           title="Same-group advantage in CKA per layer\n(open circle: permutation p < 0.05)")
    ax.set_xticks(L)
    ax.legend(fontsize=7)
    n = len(langs)
    cap = (f"PUD test, 1000 parallel sentences × {n} languages, mean-pooled word vectors; layer {layer} "
           f"({r['layer_choice']}); {r['tests']['cka']['genus']['n_perm']} label permutations")
    return show_or_save(fig, path, fig_meta(rec, cap),
                        f"Language × language similarity by family — {rec['model']['name']}, PUD")


def main(model: str = "e5-small-q4", out_root: Path = Path("."), quick: bool = False, *,
         layer: int | None = None, n_perm: int = N_PERM, seed: int = 0) -> list[Path]:
    from probe.encoders import resolve_encoder
    from probe.languages import get_language
    from probe.cache import memoized, source_file
    from probe.layerwise import entry_record

    t0 = time.time()
    langs = available_langs("pud", "test", QUICK_LANGS if quick else None)
    if "en" not in langs:
        raise RuntimeError("English PUD is not available")
    lang_objs = {c: get_language(c) for c in langs}
    order = sorted(langs, key=lambda c: (lang_objs[c].family, lang_objs[c].genus, c))
    log(f"{NAME}: {len(order)} PUD languages ({model})")
    spec = resolve_encoder(model)
    # pooling "first" like `probe layers`, so its PUD entries are shared
    ents = open_entries(spec, [("pud", c, "test", "first") for c in order])
    entries = _aligned(dict(zip(order, ents)))
    n_layers = ents[0].n_layers

    keys = {c: e.meta["key"] for c, e in entries.items()}

    code = (_vectors, cka_languages, retrieval_languages, source_file("similarity"))

    def memo(kind, layer, fn):  # similarity matrices are memoised in the cache like probe results
        return np.asarray(memoized(f"language_families_{kind}", {"entries": keys, "layer": layer},
                                   lambda: fn().tolist(), code=code))

    cka = [memo("cka", l, lambda l=l: cka_languages(entries, l)) for l in range(n_layers)]
    en = order.index("en")
    en_cka = [float(np.mean([M[en, j] for j in range(len(order)) if j != en])) for M in cka]
    best = int(np.argmax(en_cka))
    if layer is None:
        layer, choice = best, "highest mean en–xx CKA"
    else:
        layer = layer % n_layers
        choice = "--layer"

    fams = [lang_objs[c].family for c in order]
    gens = [lang_objs[c].lineage for c in order]

    def tests(M):
        return {"family": permutation_test(M, fams, n_perm, seed), "genus": permutation_test(M, gens, n_perm, seed)}

    per_layer = [{"cka": tests(M)} for M in cka]
    chosen = {"cka": cka[layer],
              "retrieval": memo("retrieval", layer, lambda: retrieval_languages(entries, layer, False)),
              "retrieval_centered": memo("retrieval_centered", layer,
                                         lambda: retrieval_languages(entries, layer, True))}
    results = {
        "layer": layer, "layer_choice": choice, "best_mean_en_cka_layer": best,
        "mean_en_xx_cka_per_layer": [round(x, 5) for x in en_cka],
        "order": order,
        "lineage": {c: {"family": lang_objs[c].family, "genus": lang_objs[c].genus, "script": lang_objs[c].script}
                    for c in order},
        "matrices": {k: np.round(M, 5).tolist() for k, M in chosen.items()},
        "tests": {k: tests(M) for k, M in chosen.items()},
        "per_layer": per_layer,
        "per_layer_note": "per-layer tests use CKA only; retrieval is computed at the chosen layer",
        "test": ("statistic = mean within-group − mean between-group similarity over language pairs; "
                 "one-sided permutation test shuffling group labels over languages (group sizes kept); "
                 "genus = family/genus (e.g. Indo-European/Germanic)"),
    }
    cfg = {"langs": order, "layer": layer, "pooling": "first (word), sentence vector = mean of words",
           "n_perm": n_perm, "quick": quick}
    data = {"pud": {c: entry_record(e) for c, e in entries.items()}}
    rec = record(NAME, __file__, CLAIM, model_record(spec, ents[0]), data, {"permutation": seed}, cfg, results, t0)
    json_path, fig_path = outputs(out_root, NAME)
    write_json(json_path, rec)
    return [json_path, *closed(plot(rec, fig_path), fig_path)]


if __name__ == "__main__":
    script_cli(main, __doc__, f"{len(QUICK_LANGS)} languages only",
               [("--layer", {"type": int, "help": "layer to compare at (0 = embeddings, L = last, negative counts "
                                                  "from the end; default: the layer with the highest mean en–xx CKA)"}),
                ("--n-perm", {"type": int, "help": f"label permutations (default: {N_PERM})"}),
                ("--seed", {"type": int, "help": "permutation seed (default: 0)"})])
