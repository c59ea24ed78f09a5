"""How much of a per-layer curve is the input format rather than the model?

Runs the per-layer analysis (:func:`probe.layers`) twice on the same data: ``input="words"``
(the corpus words pre-split, XTREME style: a SentencePiece model sees a word boundary
before every word, also in Chinese or Korean-inside-eojeol text) and ``input="text"`` (the
sentence's own text, pieces aligned to words by character offsets; see
:mod:`probe.alignment`). English → zh, ko, de, per layer:

* PUD retrieval accuracy@1 (mean of both directions; chance 1/1000) and debiased CKA of
  the sentence vectors (the same definition in both modes, ``--sentence``), English also
  read in the mode under test;
* zero-shot POS of the English-trained probe (trained in the same mode), with and without
  the flagged words (words without a piece of their own in the text mode), with the
  majority-tag rate of each language as the floor;
* text − words per layer with a 95 % paired sentence bootstrap (retrieval, POS) or a
  delete-a-group jackknife (CKA): a difference whose interval holds 0 is within noise.

    python3 -m probe.analyses.input_format [--model e5-small-q4] [--langs zh,ko,de] [--quick]
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ._common import csv_list, fig_meta, log, model_record, outputs, record, script_cli, write_json

NAME = "input_format"
CLAIM = ("Feeding the sentence's own text instead of pre-split words raises cross-lingual retrieval and "
         "CKA for languages written without spaces, and costs word-level probes on the words that lose "
         "their own piece.")
LANGS = ("zh", "ko", "de")
QUICK_LANGS = ("zh", "de")
MODES = ("words", "text")


def _majority(entry, vocab) -> float:
    from probe.layerwise import entry_labels

    y = entry_labels(entry, "pos", vocab)
    y = y[y >= 0]
    return float(np.bincount(y).max() / len(y)) if len(y) else float("nan")


def compare(res: dict, langs, n_boot: int, seed: int) -> dict:
    """Per language and layer, both modes' curves and text − words with 95 % intervals."""
    out = {}
    L = res["words"].layer_ids
    for lang in langs:
        row = {}
        for mode in MODES:
            r = res[mode].report
            up = r["probes"]["pos"][lang]
            row[mode] = {
                "retrieval": [(x["en2xx"] + x["xx2en"]) / 2 for x in r["retrieval"]["pud"][lang]["plain"]],
                "cka": r["cka"][lang]["debiased"],
                "pos": [x["accuracy"] for x in up],
                "pos_ci": [x["accuracy_ci"] for x in up],
                "pos_unflagged": [x.get("unflagged", x)["accuracy"] for x in up],
                "pos_unflagged_ci": [x.get("unflagged", x)["accuracy_ci"] for x in up],
                "flagged_words": r["config"]["flagged_words"].get(lang, 0),
            }
        diff = {}
        for name, curve in (("retrieval", f"retrieval en-{lang}"), ("cka", f"cka en-{lang}"),
                            ("pos", f"pos {lang}")):
            diff[name] = []
            for l in L:
                d = res["text"].difference(curve, l, l, other=res["words"], n_boot=n_boot, seed=seed)
                diff[name].append({"diff": round(d.difference, 5), "ci": [round(d.lo, 5), round(d.hi, 5)],
                                   "within_noise": bool(d.within_noise)})
        row["text_minus_words"] = diff
        out[lang] = row
    return out


def plot(rec: dict, path: Path) -> list[Path]:
    import matplotlib.pyplot as plt

    from probe.plotting import LAYER_AXIS, finish, palette, setup_style

    setup_style()
    r = rec["results"]
    langs = list(r["per_language"])
    fig, axes = plt.subplots(1, 3, figsize=(15.5, 4.4))
    cols = dict(zip(langs, palette(len(langs))))
    for lang in langs:
        d = r["per_language"][lang]
        L = list(range(len(d["words"]["pos"])))
        for mode, ls in (("words", "--"), ("text", "-")):
            axes[0].plot(L, d[mode]["retrieval"], ls=ls, marker="o", ms=2.5, color=cols[lang],
                         label=f"{lang} {mode}")
            axes[1].plot(L, d[mode]["cka"], ls=ls, marker="o", ms=2.5, color=cols[lang], label=f"{lang} {mode}")
            axes[2].plot(L, d[mode]["pos"], ls=ls, marker="o", ms=2.5, color=cols[lang], label=f"{lang} {mode}")
        axes[2].plot(L, d["text"]["pos_unflagged"], ls=":", marker="x", ms=3, color=cols[lang],
                     label=f"{lang} text, without {d['text']['flagged_words']} flagged words")
        axes[2].axhline(r["majority"][lang], color=cols[lang], lw=0.8, alpha=0.5)
    axes[0].axhline(r["retrieval_chance"], color="0.5", lw=0.8)
    axes[0].set(xlabel=LAYER_AXIS, ylabel="accuracy@1 (mean of en→xx, xx→en)", ylim=(0, 1.02),
                title="PUD retrieval (grey: chance)")
    axes[1].set(xlabel=LAYER_AXIS, ylabel="debiased linear CKA", title="CKA en–xx")
    axes[2].set(xlabel=LAYER_AXIS, ylabel="accuracy (fraction of words)", ylim=(0, 1),
                title="zero-shot POS (thin lines: majority tag)")
    for ax in axes:
        ax.legend(fontsize=6.5)
    cap = (f"PUD, English → {', '.join(langs)}; dashed: pre-split words, solid: the sentence text; "
           f"sentence vectors: {rec['config']['sentence']}; probes trained on UD English-EWT dev+test in the "
           "same input mode; differences with 95% paired intervals in results/input_format.json")
    return finish(fig, path, fig_meta(rec, cap),
                  f"Input format: pre-split words vs the sentence's own text — {rec['model']['name']}")


def main(model: str = "e5-small-q4", out_root: Path = Path("."), quick: bool = False, *,
         langs=None, sentence: str = "mean-words", seed: int = 0, n_boot: int = 1000) -> list[Path]:
    from probe.layerwise import layers

    t0 = time.time()
    langs = list(langs or (QUICK_LANGS if quick else LANGS))
    res = {}
    for mode in MODES:
        log(f"{NAME}: probe.layers({langs}, input={mode!r}, sentence={sentence!r}) with {model}")
        res[mode] = layers(langs, model=model, tasks=["pos"], tatoeba=False, seed=seed, n_boot=n_boot,
                           progress=False, input=mode, sentence=sentence)
    from probe.encoders import resolve_encoder
    from probe.layerwise import UPOS_TAGS

    spec = resolve_encoder(model)
    words_report = res["words"].report
    n_sent = words_report["cka"][langs[0]]["n_sentences"]
    results = {"per_language": compare(res, langs, n_boot, seed), "retrieval_chance": 1.0 / n_sent,
               "n_sentences": {lang: words_report["cka"][lang]["n_sentences"] for lang in langs}}
    from probe.layerwise import ensure_entries

    opened = ensure_entries(spec, [("pud", lang, "test", "first") for lang in langs], progress=False)
    vocab = list(UPOS_TAGS)
    results["majority"] = {lang: _majority(e, vocab) for lang, e in zip(langs, opened)}
    data = {mode: res[mode].report["data"] for mode in MODES}
    cfg = {"langs": langs, "modes": list(MODES), "sentence": sentence, "tasks": ["pos"], "n_boot": n_boot,
           "quick": quick, "probe": words_report["config"]["probe"]}
    rec = record(NAME, __file__, CLAIM, {**model_record(spec), "n_layers": words_report["model"]["n_layers"]},
                 data, {"probe": seed, "bootstrap": seed}, cfg, results, t0)
    json_path, fig_path = outputs(out_root, NAME)
    write_json(json_path, rec)
    return [json_path, *plot(rec, fig_path)]


if __name__ == "__main__":
    script_cli(main, __doc__, f"{len(QUICK_LANGS)} languages only",
               [("--langs", {"type": csv_list, "help": f"comma-separated PUD languages (default: {','.join(LANGS)})"}),
                ("--sentence", {"help": "sentence-vector definition (default: mean-words)"}),
                ("--seed", {"type": int, "help": "probe and bootstrap seed (default: 0)"})])
