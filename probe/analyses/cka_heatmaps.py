"""Where does each English layer find its counterpart in another language?

Layer × layer debiased linear CKA between English and each PUD language's parallel
sentence vectors (mean of the layer's word vectors, 1000 sentences), one small heatmap
per language plus their mean. If representations are aligned layer by layer the
diagonal dominates; an off-diagonal ridge means a layer of one language resembles a
different depth of the other.

Same numbers as the ``cka_matrix`` of :func:`probe.layers` (same cache entries), computed
directly with :func:`probe.cka_matrix`: no probe is fitted and nothing but PUD is read.

    python3 -m probe.analyses.cka_heatmaps [--model e5-small-q4] [--quick]
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ._common import (fig_meta, log, model_record, open_entries, outputs, pud_targets, record,
                              script_cli, write_json)
from probe.results import closed

NAME = "cka_heatmaps"
CLAIM = ("English layer i is most similar to layer i of every other language (a dominant "
         "diagonal), and the similarity is highest in the middle-upper layers.")


def summarise(mats: dict[str, list]) -> dict:
    out = {}
    for lang, M in mats.items():
        M = np.asarray(M)
        best = M.argmax(axis=1)  # for each en layer, the best-matching xx layer
        out[lang] = {"diagonal": np.diag(M).round(5).tolist(),
                     "best_xx_layer_per_en_layer": best.tolist(),
                     "diagonal_is_best_fraction": float(np.mean(best == np.arange(len(M)))),
                     "mean_abs_offset": float(np.mean(np.abs(best - np.arange(len(M))))),
                     "max": float(M.max()), "argmax": [int(x) for x in np.unravel_index(M.argmax(), M.shape)]}
    mean = np.mean([np.asarray(M) for M in mats.values()], axis=0)
    return {"per_language": out, "mean_matrix": mean.round(5).tolist(),
            "diagonal_is_best_fraction_mean": float(np.mean([v["diagonal_is_best_fraction"] for v in out.values()]))}


def plot(rec: dict, path: Path | None = None):
    import matplotlib.pyplot as plt
    import seaborn as sns

    from probe.plotting import setup_style, show_or_save

    setup_style()
    mats = rec["results"]["matrices"]
    langs = list(mats)
    panels = langs + (["mean"] if len(langs) > 1 else [])
    ncol = min(5, len(panels))
    nrow = int(np.ceil(len(panels) / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(2.35 * ncol + 0.9, 2.3 * nrow + 0.4), squeeze=False)
    cbar_ax = fig.add_axes([0.92, 0.25, 0.012, 0.5])
    n = len(next(iter(mats.values())))
    ticks = [i for i in range(n) if i % 4 == 0 or i == n - 1]
    for k, ax in enumerate(axes.flat):
        if k >= len(panels):
            ax.axis("off")
            continue
        name = panels[k]
        M = np.asarray(rec["results"]["summary"]["mean_matrix"] if name == "mean" else mats[name])
        sns.heatmap(M, ax=ax, cmap="viridis", vmin=0, vmax=1, square=True, cbar=k == 0,
                    cbar_ax=cbar_ax if k == 0 else None,
                    cbar_kws={"label": "debiased linear CKA"} if k == 0 else None,
                    xticklabels=False, yticklabels=False)
        ax.invert_yaxis()
        ax.set_xticks([t + 0.5 for t in ticks], [str(t) for t in ticks], fontsize=7, rotation=0)
        ax.set_yticks([t + 0.5 for t in ticks], [str(t) for t in ticks], fontsize=7)
        ax.set_title(f"mean of {len(langs)}" if name == "mean" else f"en vs {name}", fontsize=9)
        if k % ncol == 0:
            ax.set_ylabel("en layer", fontsize=8)
        if k >= len(panels) - ncol:
            ax.set_xlabel("xx layer", fontsize=8)
    fig.subplots_adjust(left=0.05, right=0.9, wspace=0.25, hspace=0.35)
    cap = ("PUD test, 1000 parallel sentences per language, mean-pooled word vectors; "
           "layer 0 = embeddings, L = last")
    return show_or_save(fig, path, fig_meta(rec, cap),
                        f"Layer × layer CKA, English vs each language — {rec['model']['name']}, PUD")


def heatmap(A: list, B: list) -> list:
    """``[L+1, L+1]`` debiased CKA of English layers ``A`` vs another language's layers ``B``
    (each ``[n_sentences, hidden]``), rounded for the record."""
    from probe.similarity import cka_matrix

    return cka_matrix(A, B, debiased=True).round(5).tolist()


def main(model: str = "e5-small-q4", out_root: Path = Path("."), quick: bool = False) -> list[Path]:
    from probe.cache import memoized, source_file
    from probe.encoders import resolve_encoder
    from probe.layerwise import entry_record

    t0 = time.time()
    langs = pud_targets(quick)
    log(f"{NAME}: en vs {', '.join(langs)} ({model})")
    spec = resolve_encoder(model)
    # pooling "first" like `probe layers`, so the PUD entries are shared with layer_tradeoff
    ents = dict(zip(["en", *langs], open_entries(spec, [("pud", c, "test", "first") for c in ["en", *langs]])))
    en = ents["en"]
    A = [np.asarray(en.sentence_vectors(l, "mean"), dtype=np.float32) for l in range(en.n_layers)]
    mats, n_sent = {}, {}
    for lang in langs:
        if ents[lang].sent_ids != en.sent_ids:
            raise RuntimeError(f"PUD {lang} is not sentence-aligned with PUD en")
        B = [np.asarray(ents[lang].sentence_vectors(l, "mean"), dtype=np.float32) for l in range(en.n_layers)]
        # keyed on the code computing it: an edit elsewhere in the package reuses it
        mats[lang] = memoized("cka_heatmaps", {"en": en.meta["key"], "xx": ents[lang].meta["key"]},
                              lambda: heatmap(A, B), code=(heatmap, source_file("similarity")))
        n_sent[lang] = len(B[0])
    results = {"matrices": mats, "summary": summarise(mats), "n_sentences": n_sent}
    data = {"pud": {c: entry_record(e) for c, e in ents.items()}}
    cfg = {"langs": langs, "pooling": "first (word)", "sentence_vectors": "mean of the layer's word vectors",
           "cka": "debiased linear CKA (feature space), cell [i][j] = en layer i vs xx layer j", "quick": quick}
    rec = record(NAME, __file__, CLAIM, model_record(spec, en), data, {}, cfg, results, t0)
    json_path, fig_path = outputs(out_root, NAME)
    write_json(json_path, rec)
    return [json_path, *closed(plot(rec, fig_path), fig_path)]


if __name__ == "__main__":
    script_cli(main, __doc__, "two targets (de, zh) only")
