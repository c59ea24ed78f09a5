"""Write notebooks/explore.ipynb, the guided tour, from the cell sources below.

The notebook is generated so that its code is reviewable here and reproducible; after
changing a cell, regenerate it and execute it so it is committed with the outputs of a
real run (the full mode, not ``PROBE_NOTEBOOK_QUICK``)::

    python3 notebooks/make_explore.py
    PROBE_DATA_MIRROR=../shared/data python3 notebooks/make_explore.py --execute

The tour uses only the public API (``import probe`` and ``probe.__all__``, the result
objects' methods) plus scikit-learn; tests/test_notebook.py checks that.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent
NOTEBOOK = HERE / "explore.ipynb"

md, code = new_markdown_cell, new_code_cell

CELLS = [
    md("""# A guided tour of `probe`

Which layers of a multilingual encoder carry *structure*, which carry *cross-lingual* information,
does fusing a lower layer with the last one help, and what does fine-tuning change? Each question
below is one call of the public API, on the offline encoder **e5-small-q4** (multilingual-e5-small,
dequantised from 4 bits) and real data (Universal Dependencies, PUD, XTREME):

1. `probe.extract`: every layer's word vectors of a corpus, cached;
2. `probe.layers`: per-layer probes, cross-lingual CKA and retrieval, with intervals and control tasks;
3. two layers compared with a paired bootstrap (`LayerResult.difference`);
4. `probe.fuse`: DLFA layer fusion on the frozen encoder against its baselines, the capacity-matched
   control and the majority-class and chance rates;
5. `probe.finetune` (the paper's own experiment, end to end) and `probe.compare` of the encoder before
   and after fine-tuning;
6. noisy input (`perturb=`), and the probes as scikit-learn estimators.

Layer indices everywhere: 0 = the embedding output, L = the last layer. Figures are drawn inline;
nothing is written to disk except the cache (under `$PROBE_HOME`) and the paths given explicitly
(here a temporary folder for the fine-tuned encoder).

**Two modes.** The outputs committed with this notebook come from the full mode (German and Chinese,
the budgets printed by the next cell). With `PROBE_NOTEBOOK_QUICK=1` (what the test suite runs) every
budget shrinks to a smoke test: one language, few training examples, tiny fine-tuning. Numbers in quick
mode mean nothing; every number quoted in the text below is printed by a cell, never typed in."""),
    code("""import os
import tempfile
import time
import warnings

import probe

# progress bars are off below; tqdm would only warn that ipywidgets is not installed
warnings.filterwarnings("ignore", message="IProgress not found")

QUICK = os.environ.get("PROBE_NOTEBOOK_QUICK", "") not in ("", "0")
MODEL = "e5-small-q4"
LANGS = ["de"] if QUICK else ["de", "zh"]
# probes: trained on English UD EWT (corpus, split); quick mode takes the smaller dev split
TRAIN = ("ud", "dev") if QUICK else ("ud", "dev+test")
# the same probe settings everywhere, so later calls reuse the memoised per-layer results
PROBING = dict(train=TRAIN, n_boot=100 if QUICK else 1000, max_iter=5 if QUICK else 30, tatoeba=False)
TASKS = ["pos"] if QUICK else ["pos", "deprel", "langid"]  # section 2; later sections probe POS only
FUSE = dict(layers=[6] if QUICK else [4, 6, 8], seeds=2 if QUICK else 3, epochs=1 if QUICK else 3,
            max_examples=200 if QUICK else 1500, max_dev=100 if QUICK else 500,
            max_test=100 if QUICK else 500, n_boot=100 if QUICK else 1000)
# the budget of results/finetune_gains.json (its seed 0), one seed
FINETUNE = dict(max_examples=64 if QUICK else 2000, max_dev=32 if QUICK else 500,
                max_test=64 if QUICK else 1000, epochs=1 if QUICK else 2, lr=5e-5, seeds=1,
                n_boot=100 if QUICK else 1000)
WORK = tempfile.mkdtemp(prefix="probe-tour-")  # the fine-tuned encoder and its run records
t_start = time.time()
print(f"probe {probe.__version__}; model {MODEL}; languages {LANGS}; quick mode: {QUICK}")
print("budgets: probes", PROBING, TASKS, "\\n         fuse", FUSE, "\\n         finetune", FINETUNE)"""),
    md("""## 1. Extract (or open) a cache entry

`probe.extract(model, corpus, lang, split)` runs the encoder once and caches every layer's word vectors
(float16, one row per word, the word's first subword) and sentence vectors; a second call only opens the
entry. Its key covers the model's weights, the data files, the pooling, the precision and the code, so a
changed input never reads stale vectors. Gold labels are stored under the treebank's column names (`upos`,
`deprel`, `head`); `labels("pos")` reads the same column under the toolkit's task name."""),
    code("""de = probe.extract(MODEL, "pud", LANGS[0], "test", progress=False)
print(de)
L = de.last_layer
print(f"layer {L // 2}: {de.layer(L // 2).shape} {de.layer(L // 2).dtype}; "
      f"sentence vectors: {de.sentence_vectors(L // 2).shape}; last layer L = {L}")
print("first sentence:", " ".join(de.words[0]))
print("its POS tags:  ", " ".join(de.vocab("pos")[i] for i in de.labels("pos")[:len(de.words[0])]))"""),
    md("""## 2. Every layer at once: `probe.layers`

Linear probes (multinomial logistic regression) are trained on English UD EWT at every layer and tested
in-language on English PUD (a different treebank) and zero-shot on each target's PUD; a control task
(each word type gets a fixed random label, Hewitt & Liang 2019) gives the probe's *selectivity*. Debiased
linear CKA and nearest-neighbour retrieval compare the English and target sentence vectors of the parallel
PUD sentences. Every accuracy carries a 95% sentence-bootstrap interval; CKA a jackknife interval.
The result's table is its display; `noise_lines()` says which layers are within noise of each curve's peak."""),
    code("""res = probe.layers(LANGS, model=MODEL, tasks=TASKS, progress=False, **PROBING)
res"""),
    code("""print("\\n".join(res.noise_lines()))"""),
    md("""`plot_tradeoff()` puts every curve on one axis, each scaled from its worst layer (0) to its best (1), so
the layers where structure peaks and where cross-lingual alignment peaks can be read off together.
Scaled curves hide absolute levels: read those in the table above."""),
    code("""res.plot_tradeoff();"""),
    md("""Layer × layer CKA between English and the target: cell (i, j) compares English layer i with target layer j
on the same parallel sentences. A bright diagonal means the two languages are represented alike at the
same depth."""),
    code("""res.plot_cka_heatmap(LANGS[-1]);"""),
    md("""## 3. Are two layers really different?

A curve's peak is a single number; whether it beats another layer depends on the test set's sampling
noise. `difference(curve, a, b)` is a paired sentence bootstrap: both layers are scored on the same
resampled sentences (CKA curves use the jackknife instead). `curves()` lists what it accepts."""),
    code("""print(res.curves())
peak = {}
for curve in (f"pos {LANGS[0]}", f"retrieval en-{LANGS[0]}"):
    noise = res.report["noise"]["curves"]
    name = next(n for n in noise if n.startswith(curve))   # e.g. "pos de (zero-shot)"
    peak[curve] = noise[name]["peak_layer"]
    for other in (L, 0):
        if other == peak[curve]:
            continue
        d = res.difference(curve, peak[curve], other)
        verdict = "within noise" if d.within_noise else "a real difference"
        print(f"{curve}: peak layer {peak[curve]} - layer {other} = {d.difference:+.3f} "
              f"[95% CI {d.lo:+.3f}, {d.hi:+.3f}] -> {verdict}")"""),
    md("""## 4. Layer fusion on a frozen encoder: `probe.fuse`

DLFA (the seed paper's *dynamic layer fusion*, through its AIF block) fuses the last layer L with a lower
layer k; here only the fusion block and the task head train, on cached hidden states of XTREME POS (English
train, zero-shot targets). Its gain over the last layer alone is easy to overstate, so the table puts
every method next to:

* **layer k only**: a linear head on layer k alone; much of a "fusion gain" can be "use a middle layer";
* **DLFA gate=0.5 (control)**: the same AIF block and head, same parameter count, with the gate fixed at
  0.5; DLFA minus this is what learning *which* layer to trust adds;
* each target's **majority-class** and **chance** rates (a score whose interval reaches the majority rate
  is marked at chance).

k for DLFA is selected on English dev; the interval resamples training seeds *and* target sentences."""),
    code("""fz = probe.fuse("pos", LANGS, model=MODEL, methods=["dlfa", "dlfa-fixed", "last", "layer"],
                progress=False, **FUSE)
print(fz.format_table())"""),
    code("""k = fz.report["selected_k"]["dlfa"]
for lang in LANGS:
    row = next(r for r in fz.report["results"] if r["method"] == "dlfa" and r["k"] == k and r["lang"] == lang)
    for name, g in (("last layer", row["gain_vs_last"]), (f"layer {k} alone", row.get("gain_vs_layer_k")),
                    ("the gate-0.5 control", row.get("gain_vs_fixed_gate"))):
        if g is None:
            continue
        if g["ci95"] is None:
            verdict = "no interval (one seed)"
        else:
            verdict = f"[{g['ci95'][0]:+.3f}, {g['ci95'][1]:+.3f}] -> " + (
                "significant" if g["significant"] else "within noise")
        print(f"{lang}: DLFA (k={k}) over {name}: {g['mean']:+.3f} {verdict}")"""),
    code("""fz.plot_gain();"""),
    md("""**What the committed full run showed** (German and Chinese, three seeds; the verdicts printed two cells
above): DLFA beat the last layer beyond noise in both languages, but it did not differ beyond noise from
layer k alone, nor from the gate-0.5 control. On this frozen encoder the "fusion gain" is the gain of reading
a middle layer."""),
    md("""## 5. The paper's experiment: fine-tuning end to end, and what it does to the layers

`probe.finetune` trains the *whole* encoder with a POS head on English (XTREME's recipe: AdamW, linear
warm-up schedule, batch 32; the learning rate of `results/finetune_gains.json`), keeps the epoch with the best
English-dev score, and evaluates zero-shot next to the majority-class and chance rates.
`fusion="none"` is standard fine-tuning, the paper's baseline (`"dlfa:K"` would put the DLFA block inside).
The full mode uses one seed at the budget of `results/finetune_gains.json` (a subsample of the English
training set; that file holds three seeds and DLFA inside), far below the paper's full training data.

`save_model=` writes the fine-tuned encoder as a Hugging Face model directory, which every other call
accepts as a model, so `probe.compare` can put the encoder before and after fine-tuning on one axis."""),
    code("""tuned_dir = os.path.join(WORK, "e5-small-q4-pos")
ft = probe.finetune("pos", LANGS, model=MODEL, fusion="none", out=os.path.join(WORK, "runs"),
                    save_model=tuned_dir, progress=False, **FINETUNE)
print(ft.format_table())"""),
    code("""ft.plot();"""),
    md("""`probe.compare` runs the same per-layer analysis on each model (the base model's numbers are memoised from
section 2) and reports, per curve, each model's peak layer, the layers within noise of it, and whether the
two models' peaks differ beyond noise (paired bootstrap on the same sentences)."""),
    code("""import dataclasses

# a short display name for the fine-tuned encoder (its source stays the directory)
tuned = dataclasses.replace(probe.resolve_encoder(tuned_dir), name="e5-small-q4+pos-ft")
cmp = probe.compare([MODEL, tuned], LANGS, tasks="pos", fusion=False, progress=False, **PROBING)
cmp"""),
    code("""peaks = cmp.report["peaks"]
for curve in peaks[MODEL]:
    a, b = peaks[MODEL][curve], peaks[tuned.name][curve]
    print(f"{curve}: peak layer {a['layer']} ({a['value']:.3f}) before fine-tuning -> "
          f"layer {b['layer']} ({b['value']:.3f}) after")
print("\\n".join(cmp.noise_lines()))"""),
    code("""cmp.plot();"""),
    md("""**What the committed full run showed** (one fine-tuning seed; the peaks and verdicts printed two cells
above): after fine-tuning on English POS, cross-lingual CKA and sentence retrieval peak at a lower layer and
their peaks are lower beyond noise (retrieval most: the fine-tuned encoder's best layer retrieves translations
far worse than the base model's best layer), while the zero-shot POS probe peaks at a lower layer and slightly
higher, also beyond noise."""),
    md("""## 6. Noisy input, and the probes as scikit-learn estimators

`perturb=` re-scores the English-trained probes (and retrieval, CKA) on perturbed copies of the target
sentences: seeded typos here, with the words' segmentation and gold labels kept. Each perturbed copy has its
own cache entry. The drop per layer carries a paired-bootstrap interval."""),
    code("""# quick mode: three layers only (the English probes are fitted again to score the perturbed text)
noisy = probe.layers(LANGS[:1], model=MODEL, tasks="pos", perturb="typo:0.1", layers=[0, L // 2, L] if QUICK else None,
                     progress=False, **PROBING)
drops = noisy.robustness_table()
print(drops[["layer", "changed_words", "pos", "pos drop", "pos lo", "pos hi"]].round(3).to_string(index=False))"""),
    code("""noisy.plot_robustness();"""),
    md("""`probe.LinearProbe` is a scikit-learn estimator, so model selection works as usual. Words of one sentence
are not independent, so the folds split by sentence (`GroupKFold`), not by word."""),
    code("""import numpy as np
from sklearn.model_selection import GridSearchCV, GroupKFold

train = probe.extract(MODEL, TRAIN[0], "en", TRAIN[1], progress=False)
n = 3000 if QUICK else 20000
X = np.asarray(train.layer(L // 2)[:n], dtype=np.float32)
y = np.asarray(train.labels("pos")[:n])
groups = np.repeat(np.arange(train.n_sentences), np.diff(train.offsets))[:n]
keep = y >= 0
search = GridSearchCV(probe.LinearProbe(max_iter=30), {"C": [0.01, 0.1, 1.0]}, cv=GroupKFold(3))
search.fit(X[keep], y[keep], groups=groups[keep])
for C, m, s in zip(search.cv_results_["param_C"], search.cv_results_["mean_test_score"],
                   search.cv_results_["std_test_score"]):
    print(f"C = {C}: cross-validated accuracy {m:.3f} ± {s:.3f} (std over 3 folds)")
print(f"best C at layer {L // 2}: {search.best_params_['C']} ({keep.sum()} English words)")"""),
    md("""The fine-tuned encoder and its run records were written to a temporary folder; the next cell removes it
(skip it to keep the encoder: every call above accepts its folder as a model). The cache stays."""),
    code("""import shutil

shutil.rmtree(WORK)
print(f"tour finished in {time.time() - t_start:.0f} s")"""),
    md("""## Where next

* `probe layers --lang de,zh --model e5-small-q4`: the same analysis from the command line, writing
  `report.json`, per-sentence counts and every figure.
* `probe fuse --task pos --lang de,zh`: the full fusion sweep over every k, with the other baselines
  (`concat`, `scalarmix`) and the other XTREME tasks (`ner`, `xnli`, `pawsx`).
* `probe finetune --task pos --lang de,zh --fusion none,dlfa:6 --seeds 3 --save-model out/ft-pos`: the
  paper's experiment with DLFA trained jointly; then `probe compare --models e5-small-q4,out/ft-pos/none-seed0
  --lang de,zh`.
* `probe layers --lang de --perturb typo:0.05,0.1,0.2,drop-diacritics,lowercase`: robustness per layer.
* Every result object saves and loads: `probe.LayerResult.load(res.save(folder))`."""),
]


def build() -> nbformat.NotebookNode:
    return new_notebook(cells=CELLS, metadata={
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"}})


def execute(nb: nbformat.NotebookNode, timeout: int = 3600) -> nbformat.NotebookNode:
    """Run every cell in a fresh kernel whose working folder is this one (as Jupyter would),
    importing this checkout's ``probe`` whatever is installed."""
    import os

    import nbclient

    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE.parent), os.environ.get("PYTHONPATH")]))

    nbclient.NotebookClient(nb, kernel_name="python3", timeout=timeout,
                            resources={"metadata": {"path": str(HERE)}}).execute()
    return nb


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--execute", action="store_true", help="also execute it (nbclient) and keep the outputs")
    p.add_argument("--out", type=Path, default=NOTEBOOK, help=f"where to write it (default {NOTEBOOK})")
    args = p.parse_args(argv)
    nb = build()
    if args.execute:
        execute(nb)
    nbformat.write(nb, args.out)
    print("wrote", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
