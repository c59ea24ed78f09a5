"""Which layers carry structure and which carry cross-lingual information?

:func:`layers` is the toolkit's main analysis and the API behind ``probe layers``:

- **structure**: linear probes per layer (UPOS, universal dependency relation) trained
  on English (EWT dev+test), evaluated in-language on English PUD and zero-shot on each
  target language's PUD, with a Hewitt & Liang control task (selectivity = task − control);
- **language identity**: a probe over the chosen languages' PUD words (held-out
  sentences) — high accuracy means the layer is language-specific;
- **cross-lingual similarity**: debiased linear CKA between English and each target's
  PUD sentence vectors, a layer × layer CKA matrix, and parallel-sentence retrieval
  (accuracy@1 both ways, with and without per-language mean-centering) on PUD and Tatoeba.

Layer indices: 0 = embedding output, L = last transformer layer.

>>> res = layers(["de", "zh"], model="e5-small-q4")     # doctest: +SKIP
>>> res.table()                                         # doctest: +SKIP
>>> res.plot_tradeoff()                                 # doctest: +SKIP
"""
from __future__ import annotations

import hashlib
import json
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from . import __version__
from .errors import ProbeError

UPOS_TAGS = ["ADJ", "ADP", "ADV", "AUX", "CCONJ", "DET", "INTJ", "NOUN", "NUM", "PART", "PRON",
             "PROPN", "PUNCT", "SCONJ", "SYM", "VERB", "X"]
TASKS = ("upos", "deprel", "langid")
SOURCE_LANG = "en"


# ----------------------------------------------------------------------------- provenance
def versions() -> dict:
    """Versions of the code and libraries that produced a result."""
    import numpy
    import sklearn
    import torch
    import transformers

    out = {"probe": __version__, "python": platform.python_version(), "numpy": numpy.__version__,
           "torch": torch.__version__, "transformers": transformers.__version__,
           "scikit-learn": sklearn.__version__}
    try:
        root = Path(__file__).resolve().parent.parent
        sha = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=5).stdout.strip()
        if sha:
            dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--", "probe"],
                                   capture_output=True, text=True, timeout=5).stdout.strip()
            out["git"] = sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return out


def entry_record(entry) -> dict:
    c = entry.meta["corpus"]
    return {"corpus": c["name"], "lang": c["lang"], "split": c["split"], "sha256": c["sha256"],
            "files": c.get("files", []), "n_sentences": entry.n_sentences, "n_words": entry.n_words,
            "pooling": entry.meta["pooling"], "cache_key": entry.meta["key"],
            "input": entry.input, "flagged_words": int(np.asarray(entry.flagged).sum())}


# ----------------------------------------------------------------------------- data
@dataclass
class Inputs:
    """The cache entries one analysis reads."""

    spec: object
    train: object                      # English training treebank (EWT dev+test)
    pud: dict                          # lang -> PUD entry (English first)
    tatoeba: dict = field(default_factory=dict)  # lang -> (xx entry, eng entry)


def open_or_extract(spec, data, pooling: str, *, loaded: dict, progress=True, device=None, input="words"):
    """The cache entry of an already loaded corpus (e.g. a subset or a perturbed copy),
    extracted if missing. The model is loaded only then, once per ``loaded`` dict: pass the
    same dict to successive calls."""
    from .cache import open_entry
    from .extraction import cache_key, extract_corpus

    entry = open_entry(cache_key(spec, data, pooling, input=input))
    if entry is None:
        if "encoder" not in loaded:
            loaded["encoder"] = spec.load()
        entry = extract_corpus(spec, data, pooling=pooling, progress=progress, device=device,
                               encoder=loaded["encoder"], input=input)
    return entry


def ensure_entries(spec, wanted: Sequence[tuple[str, str, str, str]], *, progress=True, device=None,
                   input="words"):
    """Open or extract ``(corpus, lang, split, pooling)`` entries, loading the model at most once."""
    from .data import load_corpus

    loaded: dict = {}
    return [open_or_extract(spec, load_corpus(corpus, lang, split), pooling, loaded=loaded, progress=progress,
                            device=device, input=input) for corpus, lang, split, pooling in wanted]


def _check_targets(langs: Sequence[str]):
    from .languages import get_language, languages_with

    if isinstance(langs, str):
        langs = [x for x in langs.split(",") if x.strip()]
    if not langs:
        raise ProbeError("no target language given")
    pud_langs = languages_with("pud")
    supported = ", ".join(sorted(l.code for l in pud_langs if l.code != SOURCE_LANG))
    out = []
    for code in langs:
        try:
            lang = get_language(code.strip())
        except ProbeError:
            raise ProbeError(f"unknown language {code.strip()!r}; supported target languages (with a "
                             f"PUD treebank): {supported}") from None
        if lang not in pud_langs:
            raise ProbeError(f"language {code.strip()!r} ({lang.name}) has no PUD treebank; supported "
                             f"target languages: {supported}")
        if lang.code == SOURCE_LANG:
            raise ProbeError("English is the source language; choose target languages: " + supported)
        if lang.code not in out:
            out.append(lang.code)
    return out


def _universal(names: list[str]) -> list[str]:
    return [n.split(":")[0] for n in names]


def _label_ids(entry, task: str, vocab: list[str]) -> np.ndarray:
    """Entry labels mapped onto a shared vocabulary (``-1`` = missing/unknown)."""
    names = entry.vocab(task)
    if task == "deprel":
        names = _universal(names)
    index = {v: i for i, v in enumerate(vocab)}
    lut = np.asarray([index.get(n, -1) for n in names] + [-1], dtype=np.int64)
    raw = np.asarray(entry.labels(task), dtype=np.int64)
    return lut[np.where(raw >= 0, raw, len(names))]


def _sentence_ids(entry) -> np.ndarray:
    return np.repeat(np.arange(entry.n_sentences), np.diff(entry.offsets))


def _aligned_rows(a, b) -> tuple[np.ndarray, np.ndarray]:
    """Row indices pairing two PUD entries by sent_id (identical order in practice)."""
    ia, ib = a.sent_ids, b.sent_ids
    if ia == ib:
        idx = np.arange(len(ia))
        return idx, idx
    pos = {s: i for i, s in enumerate(ib)}
    pairs = [(i, pos[s]) for i, s in enumerate(ia) if s in pos]
    if not pairs:
        raise ProbeError(f"{a.path} and {b.path} share no sent_id")
    pa, pb = zip(*pairs)
    return np.asarray(pa), np.asarray(pb)


# ----------------------------------------------------------------------------- result
@dataclass
class LayerResult:
    """All numbers of one ``layers`` run (``report`` is JSON-ready) with table and plots.

    ``counts``: per-sentence outcomes of each curve, ``{"upos de": [n_layers, n_sentences, 2]
    (correct, total)}``, for paired comparisons (:meth:`difference`); not saved in
    ``report.json`` (None after :meth:`load`).
    """

    report: dict
    counts: dict | None = field(default=None, repr=False)

    def difference(self, curve: str, layer_a: int, layer_b: int, other: "LayerResult | None" = None,
                   *, n_boot: int = 1000, seed: int = 0):
        """Paired sentence bootstrap of ``curve`` at ``layer_a`` minus at ``layer_b`` (of
        ``other``, another model's result on the same sentences, if given).

        ``curve``: a key of :attr:`counts`, e.g. ``"upos de"``, ``"retrieval en-de"``, or
        ``"cka en-de"`` (a delete-a-group jackknife interval instead of the bootstrap).
        Returns :class:`probe.stats.PairedDifference` (``within_noise`` when the 95% CI holds 0).

        >>> res.difference("upos de", 7, 12).within_noise      # doctest: +SKIP
        False
        """
        from .stats import jackknife_difference

        other = other or self
        if curve.startswith("cka "):  # "cka en-de": jackknife replicates, not sentence counts
            key, lang = "cka-jackknife " + curve[4:], curve.split("-", 1)[1]
            for r in (self, other):
                if r.counts is None or key not in r.counts:
                    raise ProbeError(f"no jackknife replicates for {curve!r} (a result loaded from "
                                     "report.json has none)")
            va = self.report["cka"][lang]["debiased"][layer_a]
            vb = other.report["cka"][lang]["debiased"][layer_b]
            return jackknife_difference(va, vb, self.counts[key][layer_a], other.counts[key][layer_b])
        for r in (self, other):
            if r.counts is None or curve not in r.counts:
                raise ProbeError(f"no per-sentence outcomes for {curve!r} (a result loaded from "
                                 f"report.json has none; choose from {sorted(self.counts or [])})")
        a, b = self.counts[curve][layer_a], other.counts[curve][layer_b]
        if a.shape != b.shape or not np.array_equal(a[:, 1], b[:, 1]):
            raise ProbeError(f"{curve}: the two results were not scored on the same sentences and words")
        return _count_difference(a, b, n_boot, seed)

    def noise_lines(self) -> list[str]:
        """One line per curve: its best layer and the layers within noise of it."""
        out = []
        for name, n in self.report.get("noise", {}).get("curves", {}).items():
            tied = [l for l in n["within_noise_of_peak"] if l != n["peak_layer"]]
            out.append(f"{name}: peak at layer {n['peak_layer']} ({n['peak_value']:.3f}); "
                       + (f"layers {_layer_ranges(n['within_noise_of_peak'])} are within noise of it"
                          if tied else "every other layer is significantly lower"))
        return out

    @property
    def langs(self) -> list[str]:
        return self.report["config"]["langs"]

    @property
    def layer_ids(self) -> list[int]:
        return self.report["layers"]

    def table(self):
        """Per-layer summary as a pandas DataFrame (index: layer)."""
        import pandas as pd

        r = self.report
        cols: dict[str, list] = {}
        pr = r["probes"]
        if "upos" in pr:
            cols["UPOS en"] = [x["accuracy"] for x in pr["upos"]["en"]]
            for lang in self.langs:
                cols[f"UPOS {lang}"] = [x["accuracy"] for x in pr["upos"][lang]]
                if any("unflagged" in x for x in pr["upos"][lang]):  # input="text": without flagged words
                    cols[f"UPOS {lang} -flag"] = [x.get("unflagged", x)["accuracy"] for x in pr["upos"][lang]]
            cols["UPOS sel"] = pr["upos"]["selectivity_en"]
        if "deprel" in pr:
            cols["dep en"] = [x["accuracy"] for x in pr["deprel"]["en"]]
        for lang in self.langs:
            cols[f"CKA en-{lang}"] = r["cka"][lang]["debiased"]
        for lang in self.langs:
            ret = r["retrieval"]["pud"][lang]["plain"]
            cols[f"R en>{lang}"] = [x["en2xx"] for x in ret]
            cols[f"R {lang}>en"] = [x["xx2en"] for x in ret]
        if "langid" in r and r["langid"]:
            cols["langID"] = [x["accuracy"] for x in r["langid"]]
        df = pd.DataFrame(cols, index=pd.Index(self.layer_ids, name="layer"))
        return df

    @property
    def mode_line(self) -> str:
        """What the model read and how sentence vectors were made (reports made before
        these options existed read as the defaults of that time)."""
        c = self.report["config"]
        mode = c.get("input", "words")
        line = f"input: {mode} ({'pre-split words' if mode == 'words' else 'the sentence text'}); " \
               f"sentence vectors: {c.get('sentence', 'mean-words')}"
        flagged = {k: v for k, v in c.get("flagged_words", {}).items() if v}
        if flagged:
            line += "; flagged words: " + ", ".join(f"{k} {v}" for k, v in flagged.items())
        return line

    def format_table(self) -> str:
        df = self.table()
        return self.mode_line + "\n" + df.to_string(float_format=lambda v: f"{v:.3f}")

    def _meta(self, data_caption: str) -> dict:
        r = self.report
        return {"model": r["model"], "data_caption": f"{data_caption}; {self.mode_line}",
                "seed": r["seeds"]["probe"], "versions": r["versions"]}

    # -- figures
    def plot_probes(self, path: Path | None = None):
        import matplotlib.pyplot as plt

        from .plotting import LAYER_AXIS, finish, palette, setup_style

        setup_style()
        r = self.report
        tasks = [t for t in ("upos", "deprel") if t in r["probes"]]
        fig, axes = plt.subplots(1, max(len(tasks), 1), figsize=(5.2 * max(len(tasks), 1), 3.8),
                                 squeeze=False)
        L = self.layer_ids
        for ax, task in zip(axes[0], tasks):
            cols = palette(len(self.langs) + 1)
            for lang, c in zip(["en"] + self.langs, cols):
                rows = r["probes"][task][lang]
                acc = [x["accuracy"] for x in rows]
                lo = [x["accuracy_ci"][0] for x in rows]
                hi = [x["accuracy_ci"][1] for x in rows]
                label = "en (in-language)" if lang == "en" else f"{lang} (zero-shot)"
                ax.plot(L, acc, marker="o", ms=3, color=c, label=label)
                ax.fill_between(L, lo, hi, color=c, alpha=0.2, lw=0)
            ctrl = [x["accuracy"] for x in r["probes"][task]["control_en"]]
            ax.plot(L, ctrl, ls="--", color="0.4", label="control task (en)")
            ax.set_xlabel(LAYER_AXIS)
            ax.set_ylabel("accuracy (fraction of words)")
            ax.set_title(f"{task.upper()} probe (trained on English)")
            ax.set_ylim(0, 1)
            ax.legend(fontsize=8)
        cap = "probe train: UD English-EWT dev+test; eval: PUD (" + ", ".join(["en"] + self.langs) + \
              "); 95% sentence-bootstrap bands"
        return finish(fig, path or Path("probes.png"), self._meta(cap), "Structural probes per layer")

    def plot_similarity(self, path: Path | None = None):
        import matplotlib.pyplot as plt

        from .plotting import LAYER_AXIS, finish, palette, setup_style

        setup_style()
        r = self.report
        L = self.layer_ids
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(10.5, 3.8))
        cols = palette(len(self.langs))
        for lang, c in zip(self.langs, cols):
            a1.plot(L, r["cka"][lang]["debiased"], marker="o", ms=3, color=c, label=f"en–{lang}")
            plain = r["retrieval"]["pud"][lang]["plain"]
            cent = r["retrieval"]["pud"][lang]["centered"]
            a2.plot(L, [(x["en2xx"] + x["xx2en"]) / 2 for x in plain], marker="o", ms=3, color=c,
                    label=f"en↔{lang}")
            a2.plot(L, [(x["en2xx"] + x["xx2en"]) / 2 for x in cent], ls="--", color=c,
                    label=f"en↔{lang}, mean-centred")
        a1.set(xlabel=LAYER_AXIS, ylabel="debiased linear CKA", title="CKA of PUD sentence vectors")
        a2.set(xlabel=LAYER_AXIS, ylabel="accuracy@1 (mean of both directions)",
               title="PUD parallel-sentence retrieval", ylim=(0, 1))
        a1.legend(fontsize=8)
        a2.legend(fontsize=7)
        cap = "PUD test, 1000 parallel sentences per language, mean-pooled word vectors"
        return finish(fig, path or Path("similarity.png"), self._meta(cap),
                      "Cross-lingual similarity per layer")

    def tradeoff_curves(self) -> dict[str, list[float]]:
        """Curves min-max normalised over layers (0 = the curve's worst layer, 1 = its best)."""
        r = self.report
        curves = {}
        if "upos" in r["probes"]:
            curves["UPOS en (structure)"] = [x["accuracy"] for x in r["probes"]["upos"]["en"]]
            curves["UPOS zero-shot, mean over targets"] = list(np.mean(
                [[x["accuracy"] for x in r["probes"]["upos"][l]] for l in self.langs], axis=0))
        if "deprel" in r["probes"]:
            curves["deprel en (structure)"] = [x["accuracy"] for x in r["probes"]["deprel"]["en"]]
        curves["CKA en–xx (cross-lingual)"] = list(np.mean([r["cka"][l]["debiased"] for l in self.langs], 0))
        curves["retrieval en↔xx (cross-lingual)"] = list(np.mean(
            [[(x["en2xx"] + x["xx2en"]) / 2 for x in r["retrieval"]["pud"][l]["plain"]] for l in self.langs], 0))
        if r.get("langid"):
            curves["language ID (language-specific)"] = [x["accuracy"] for x in r["langid"]]
        out = {}
        for k, v in curves.items():
            v = np.asarray(v, dtype=float)
            span = v.max() - v.min()
            out[k] = list((v - v.min()) / span) if span > 0 else list(np.zeros_like(v))
        return out

    def plot_tradeoff(self, path: Path | None = None):
        import matplotlib.pyplot as plt

        from .plotting import LAYER_AXIS, finish, palette, setup_style

        setup_style()
        curves = self.tradeoff_curves()
        fig, ax = plt.subplots(figsize=(7.5, 4.2))
        cols = palette(len(curves))
        for (name, v), c in zip(curves.items(), cols):
            style = "-" if "structure" in name or "zero-shot" in name else ("--" if "cross" in name else ":")
            ax.plot(self.layer_ids, v, ls=style, marker="o", ms=3, color=c, label=name)
        ax.set(xlabel=LAYER_AXIS, ylabel="normalised score (0 = worst layer, 1 = best layer)",
               ylim=(-0.05, 1.05))
        ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
        cap = f"targets: {', '.join(self.langs)}; probes on UD EWT→PUD, similarity on PUD"
        return finish(fig, path or Path("tradeoff.png"), self._meta(cap),
                      "Structure vs cross-lingual alignment across layers")

    def plot_cka_heatmap(self, lang: str, path: Path | None = None):
        import matplotlib.pyplot as plt
        import seaborn as sns

        from .plotting import finish, setup_style

        setup_style()
        M = np.asarray(self.report["cka_matrix"][lang])
        fig, ax = plt.subplots(figsize=(6.2, 5.2))
        sns.heatmap(M, ax=ax, cmap="viridis", vmin=0, vmax=1, square=True,
                    cbar_kws={"label": "debiased linear CKA"})
        ax.invert_yaxis()
        ax.set(xlabel=f"{lang} layer (0 = embeddings)", ylabel="en layer (0 = embeddings)")
        cap = f"PUD en vs {lang}, 1000 parallel sentences, mean-pooled sentence vectors"
        return finish(fig, path or Path(f"cka_en-{lang}.png"), self._meta(cap),
                      f"Layer × layer CKA, English vs {lang}")

    def save(self, out_dir: Path) -> list[Path]:
        """Write ``report.json`` and every figure into ``out_dir``; returns the paths."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        from .files import atomic_write_json

        rep = out_dir / "report.json"
        atomic_write_json(rep, self.report)
        paths = [rep]
        paths += self.plot_probes(out_dir / "probes.png")
        paths += self.plot_similarity(out_dir / "similarity.png")
        paths += self.plot_tradeoff(out_dir / "tradeoff.png")
        for lang in self.langs:
            paths += self.plot_cka_heatmap(lang, out_dir / f"cka_en-{lang}.png")
        if self.report.get("robustness"):
            paths += self.plot_robustness(out_dir / "robustness.png")
        return paths

    def robustness_table(self):
        """Per perturbation, language and layer: scores and drops, as a long pandas DataFrame."""
        import pandas as pd

        rows = []
        rob = self.report.get("robustness")
        if not rob:
            raise ProbeError("this result has no robustness analysis (run layers(..., perturb=...))")
        for pert, per_lang in rob["results"].items():
            for lang, r in per_lang.items():
                for l in self.layer_ids:
                    row = {"perturbation": pert, "lang": lang, "layer": l,
                           "changed_words": r["changed_words"]}
                    for task in ("upos", "deprel"):
                        if task in r:
                            row[f"{task}"] = r[task]["accuracy"][l]
                            row[f"{task} drop"], row[f"{task} lo"], row[f"{task} hi"] = r[task]["drop"][l]
                    row["retrieval"] = r["retrieval"][l]
                    row["retrieval drop"], row["retrieval lo"], row["retrieval hi"] = r["retrieval_drop"][l]
                    row["cka drop"], row["cka lo"], row["cka hi"] = r["cka_drop"][l]
                    rows.append(row)
        return pd.DataFrame(rows)

    def plot_robustness(self, path: Path | None = None):
        """Drop of zero-shot UPOS and of retrieval per layer under each perturbation."""
        import matplotlib.pyplot as plt

        from .plotting import LAYER_AXIS, finish, palette, setup_style

        setup_style()
        rob = self.report["robustness"]
        perts = list(rob["results"])
        metrics = [m for m in ("upos", "retrieval") if m == "retrieval" or
                   m in next(iter(next(iter(rob["results"].values())).values()))]
        fig, axes = plt.subplots(1, len(metrics), figsize=(5.4 * len(metrics), 3.9), squeeze=False)
        cols = palette(len(perts))
        styles = ["-", "--", ":", "-."]
        L = self.layer_ids
        for ax, metric in zip(axes[0], metrics):
            for (pert, per_lang), c in zip(rob["results"].items(), cols):
                for k, (lang, r) in enumerate(per_lang.items()):
                    d = np.asarray(r[metric]["drop"] if metric != "retrieval" else r["retrieval_drop"])
                    ax.plot(L, d[:, 0], color=c, ls=styles[k % len(styles)], marker="o", ms=2.5,
                            label=f"{pert}, {lang} ({r['changed_words']:.0%} words changed)")
                    ax.fill_between(L, d[:, 1], d[:, 2], color=c, alpha=0.12, lw=0)
            ax.axhline(0, color="0.3", lw=0.8)
            ax.set_xlabel(LAYER_AXIS)
            ax.set_ylabel("accuracy drop (clean − perturbed)")
            ax.set_title("zero-shot UPOS probe (trained on clean English)" if metric == "upos"
                         else "PUD retrieval en↔xx (accuracy@1, both directions)")
        axes[0][-1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
        cap = (f"perturbed PUD {', '.join(self.langs)} (seed {rob['seed']}); English and probe training "
               "data clean; 95% paired sentence-bootstrap bands")
        return finish(fig, path or Path("robustness.png"), self._meta(cap),
                      f"Robustness of zero-shot transfer to noisy input, per layer — "
                      f"{self.report['model']['name']}, PUD")

    @classmethod
    def load(cls, path: Path) -> "LayerResult":
        return cls(json.loads(Path(path).read_text()))

    @property
    def n_layers(self) -> int:
        """L, the index of the last layer."""
        return self.layer_ids[-1]

    @property
    def relative_depth(self) -> list[float]:
        """``layer / L`` for every layer: 0 = embeddings, 1 = last layer."""
        return [l / self.n_layers for l in self.layer_ids]


# ----------------------------------------------------------------------------- analysis
def _probe_vocab(task, train) -> list[str]:
    return UPOS_TAGS if task == "upos" else sorted(set(_universal(train.vocab("deprel"))))


_PROBE_STATE = ("classes_", "coef_", "intercept_", "mean_", "scale_", "n_iter_", "n_features_in_")


def _fit_probes(task, train, layer, seed, probe_kw):
    """The task probe and its control-task probe at ``layer``, fitted on ``train``.

    Fitted weights are stored in the cache (keyed by the training entry, task, layer, seed
    and probe settings), so evaluating a new language, a perturbed text or a new model's
    comparison later never refits a probe.
    """
    from .cache import atomic_save_npy, cache_dir
    from .probes import ControlTask, LinearProbe

    vocab = _probe_vocab(task, train)
    y_train = _label_ids(train, task, vocab)
    keep = y_train >= 0
    words_train = np.asarray(train.flat_words, dtype=object)[keep]
    control = ControlTask(seed=seed).fit(words_train, y_train[keep])
    fields = json.dumps({"train": train.meta["key"], "task": task, "layer": layer, "seed": seed,
                         "probe": probe_kw, "v": 1}, sort_keys=True, default=str)
    folder = cache_dir() / "results" / "probe-fit" / hashlib.sha256(fields.encode()).hexdigest()[:32]
    probes = []
    try:
        if json.loads((folder / "key.json").read_text()) == fields:
            for name in ("task", "control"):
                p = LinearProbe(seed=seed, **probe_kw)
                for attr in _PROBE_STATE:
                    value = np.load(folder / f"{name}.{attr}.npy", allow_pickle=False)
                    setattr(p, attr, value if value.ndim else value.item())
                probes.append(p)
    except (OSError, ValueError, KeyError):
        probes = []  # missing or unreadable: refit and overwrite
    if len(probes) != 2:
        X_train = np.asarray(train.layer(layer), dtype=np.float32)[keep]
        probes = [LinearProbe(seed=seed, **probe_kw).fit(X_train, y_train[keep]),
                  LinearProbe(seed=seed, **probe_kw).fit(X_train, control.transform(words_train))]
        del X_train
        folder.mkdir(parents=True, exist_ok=True)
        for name, p in zip(("task", "control"), probes):
            for attr in _PROBE_STATE:
                atomic_save_npy(folder / f"{name}.{attr}.npy", np.asarray(getattr(p, attr)))
        (folder / "key.json").write_text(fields)  # written last: marks the fit complete
    return vocab, probes[0], control, probes[1]


def _probe_eval(fitted, task, entry, layer, seed, n_boot, control: bool = False) -> dict:
    """Evaluate a fitted probe (or its control) on one entry at ``layer``.

    Besides :func:`probe.probes.evaluate`'s numbers, keeps per-sentence ``correct`` and
    ``total`` word counts, which paired bootstraps (layer vs layer, model vs model,
    clean vs perturbed) resample.
    """
    from .probes import evaluate

    vocab, probe, ctrl, ctrl_probe = fitted
    y = _label_ids(entry, task, vocab)
    ok = y >= 0
    X = np.asarray(entry.layer(layer), dtype=np.float32)[ok]
    sid = _sentence_ids(entry)[ok]
    if control:
        y_true = ctrl.transform(np.asarray(entry.flat_words, dtype=object)[ok])
        y_pred = ctrl_probe.predict(X)
    else:
        y_true, y_pred = y[ok], probe.predict(X)
    out = evaluate(y_true, y_pred, sentence_ids=sid, n_boot=n_boot, seed=seed)
    flagged = np.asarray(entry.flagged)[ok]
    if flagged.any():  # input="text": words without a piece of their own (probe.alignment)
        clean = ~flagged
        out["unflagged"] = {**evaluate(np.asarray(y_true)[clean], np.asarray(y_pred)[clean],
                                       sentence_ids=sid[clean], n_boot=n_boot, seed=seed),
                            "flagged_words": int(flagged.sum())}
    correct = np.asarray(y_true) == np.asarray(y_pred)
    out["per_sentence"] = {
        "correct": np.bincount(sid, weights=correct, minlength=entry.n_sentences).astype(int).tolist(),
        "total": np.bincount(sid, minlength=entry.n_sentences).astype(int).tolist()}
    return out


def _split_counts(res: dict) -> tuple[dict, np.ndarray]:
    """``res`` without its per-sentence counts, and the counts as ``[n_sentences, 2]``."""
    ps = res.get("per_sentence")
    rest = {k: v for k, v in res.items() if k != "per_sentence"}
    counts = np.stack([ps["correct"], ps["total"]], axis=1) if ps else None
    return rest, counts


def _langid(pud: dict, layer: int, seed: int, n_boot: int, probe_kw, holdout=0.2):
    """Language identity of PUD words; train/test split by sentence (same split everywhere)."""
    from .probes import LinearProbe, evaluate

    langs = list(pud)
    n = min(e.n_sentences for e in pud.values())
    rng = np.random.default_rng(seed)
    test_sent = np.zeros(n, dtype=bool)
    test_sent[rng.permutation(n)[: int(round(holdout * n))]] = True
    Xtr, ytr, Xte, yte, ste = [], [], [], [], []
    for k, lang in enumerate(langs):
        e = pud[lang]
        sid = _sentence_ids(e)
        in_range = sid < n
        is_test = np.zeros(len(sid), dtype=bool)
        is_test[in_range] = test_sent[sid[in_range]]
        X = np.asarray(e.layer(layer), dtype=np.float32)
        Xtr.append(X[in_range & ~is_test])
        ytr.append(np.full(int((in_range & ~is_test).sum()), k))
        Xte.append(X[is_test])
        yte.append(np.full(int(is_test.sum()), k))
        ste.append(sid[is_test] + k * n)  # a sentence of each language is its own unit
    probe = LinearProbe(seed=seed, **probe_kw).fit(np.concatenate(Xtr), np.concatenate(ytr))
    Xte = np.concatenate(Xte)
    res = evaluate(np.concatenate(yte), probe.predict(Xte), sentence_ids=np.concatenate(ste),
                   n_boot=n_boot, seed=seed)
    res["chance"] = 1.0 / len(langs)
    return res


def _similarity(pud: dict, tatoeba: dict, targets, L: int, en_key: str = SOURCE_LANG, *,
                jackknife: int = 0, seed: int = 0, full: bool = True, sent=None):
    """CKA, CKA matrices and retrieval of English vs each target; also per-sentence retrieval
    counts ``{lang: [L+1, n_sentences, 2]}`` (hits in both directions, out of 2) and, with
    ``jackknife=g``, delete-a-group CKA replicates ``{lang: [L+1, g]}`` (same groups everywhere).
    ``full=False`` computes only same-layer debiased CKA and plain retrieval (no layer × layer
    matrix, biased CKA or mean-centred retrieval): what the robustness comparison reads.
    ``sent(entry, layer)``: the sentence vectors (default: mean of the word vectors)."""
    from .similarity import cka_jackknife, cka_matrix, linear_cka

    sent = sent or (lambda entry, l: entry.sentence_vectors(l, "mean"))

    en = pud[en_key]
    cka, cka_mat, ret, counts, reps = {}, {}, {}, {}, {}
    for lang in targets:
        ia, ib = _aligned_rows(en, pud[lang])
        A = [np.asarray(sent(en, l), dtype=np.float32)[ia] for l in range(L + 1)]
        B = [np.asarray(sent(pud[lang], l), dtype=np.float32)[ib] for l in range(L + 1)]
        if full:
            cka_mat[lang] = cka_matrix(A, B, debiased=True).tolist()
            cka[lang] = {"debiased": [float(np.asarray(cka_mat[lang])[l, l]) for l in range(L + 1)],
                         "biased": [linear_cka(A[l], B[l], debiased=False) for l in range(L + 1)]}
        else:
            cka[lang] = {"debiased": [linear_cka(A[l], B[l]) for l in range(L + 1)]}
        cka[lang]["n_sentences"] = int(len(ia))
        if jackknife:
            reps[lang] = np.stack([cka_jackknife(A[l], B[l], n_groups=jackknife, seed=seed)
                                   for l in range(L + 1)])
        ret[lang], layer_counts = {}, []
        for kind in ("plain", "centered") if full else ("plain",):
            rows = []
            for l in range(L + 1):
                row, hits = _ret(A[l], B[l], kind == "centered")
                rows.append(row)
                if kind == "plain":
                    layer_counts.append(np.stack([hits, np.full(len(hits), 2)], axis=1))
            ret[lang][kind] = rows
        counts[lang] = np.stack(layer_counts)
    tat = {}
    for lang, (xx, eng) in tatoeba.items():
        tat[lang] = {}
        for kind in ("plain", "centered"):
            tat[lang][kind] = [_ret(np.asarray(sent(eng, l), dtype=np.float32),
                                    np.asarray(sent(xx, l), dtype=np.float32),
                                    kind == "centered")[0] for l in range(L + 1)]
        tat[lang]["n_pairs"] = xx.n_sentences
    return cka, cka_mat, {"pud": ret, "tatoeba": tat}, counts, reps


def _ret(A, B, center):
    """Retrieval accuracies both ways and per-sentence hits ``[n]`` (0, 1 or 2 directions)."""
    from .similarity import retrieval_hits

    h = retrieval_hits(A, B, center=center)
    n = len(h["a2b"])
    return ({"en2xx": int(h["a2b"].sum()) / n, "xx2en": int(h["b2a"].sum()) / n},
            h["a2b"].astype(np.int64) + h["b2a"].astype(np.int64))


def _row(d) -> list:
    """A :class:`probe.stats.PairedDifference` as ``[diff, lo, hi]`` for the report."""
    return [round(d.difference, 6), round(d.lo, 6), round(d.hi, 6)]


def _count_difference(a: np.ndarray, b: np.ndarray, n_boot: int, seed: int):
    """Paired sentence bootstrap of ``acc(a) - acc(b)`` from ``[n_sentences, 2]`` counts each."""
    from .stats import paired_difference_counts

    return paired_difference_counts(a[:, 0], b[:, 0], a[:, 1], n_boot=n_boot, seed=seed)


def _ties_with_peak(values, difference) -> dict:
    """Peak of ``values`` and the layers whose ``difference(peak, layer)`` interval holds 0."""
    values = np.asarray(values, dtype=np.float64)
    peak = int(np.argmax(values))
    tied, diffs = [], []
    for l in range(len(values)):
        if l == peak:
            tied.append(l)
            diffs.append([0.0, 0.0, 0.0])
            continue
        d = difference(peak, l)
        diffs.append(_row(d))
        if d.within_noise:
            tied.append(l)
    return {"peak_layer": peak, "peak_value": float(values[peak]), "within_noise_of_peak": tied,
            "difference_to_peak": diffs}


def noise_summary(counts: np.ndarray, *, n_boot: int = 1000, seed: int = 0) -> dict:
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
    return _ties_with_peak(values, lambda p, l: _count_difference(counts[p], counts[l], n_boot, seed))


#: delete-a-group jackknife groups for CKA intervals
CKA_GROUPS = 20


def jackknife_noise_summary(values, replicates) -> dict:
    """Like :func:`noise_summary` for a statistic with jackknife replicates (CKA).

    ``values: [n_layers]`` full-sample values; ``replicates: [n_layers, n_groups]`` the
    statistic without each group (the same groups at every layer). A layer is within noise of
    the peak when the 95% jackknife interval of their difference contains 0.
    """
    from .stats import jackknife_difference

    values = np.asarray(values, dtype=np.float64)
    reps = np.asarray(replicates, dtype=np.float64)
    return _ties_with_peak(values, lambda p, l: jackknife_difference(values[p], values[l], reps[p], reps[l]))


def _layer_ranges(layers_: list[int]) -> str:
    """``[3, 4, 5, 8]`` -> ``"3-5, 8"``."""
    out, run = [], []
    for l in sorted(layers_):
        if run and l == run[-1] + 1:
            run.append(l)
        else:
            if run:
                out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
            run = [l]
    if run:
        out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
    return ", ".join(out)


def _perturbed_entries(spec, targets, perturbations, pooling, pud, progress, device, log, input="words"):
    """``{(str(p), lang): (entry, changed_fraction)}`` for perturbed target PUD text.

    A perturbation that changes no word (e.g. lowercase on Chinese) reuses the clean entry.
    """
    from .data import load_corpus
    from .perturb import changed_fraction, perturb_corpus

    out, loaded = {}, {}
    for lang in targets:
        clean = load_corpus("pud", lang, "test", progress=progress)
        for p in perturbations:
            data = perturb_corpus(clean, p)
            frac = changed_fraction(clean, data)
            if progress:
                log(f"PUD {lang} perturbed by {p}: {frac:.1%} of the words changed")
            entry = pud[lang] if frac == 0 else open_or_extract(spec, data, pooling, loaded=loaded,
                                                                 progress=progress, device=device, input=input)
            out[(str(p), lang)] = (entry, frac)
    return out


def layers(langs: Sequence[str] | str, model: str = "auto", tasks: Sequence[str] = TASKS, *,
           pooling: str = "first", seed: int = 0, n_boot: int = 1000, tatoeba: bool = True,
           train: tuple[str, str] = ("ud", "dev+test"), C: float = 1.0, max_iter: int = 30,
           perturb=None, progress: bool = True, device: str | None = None, log=None,
           input: str = "words", sentence: str = "mean-words") -> LayerResult:
    """Run the per-layer analysis for English → each of ``langs``.

    Missing cache entries are extracted first (the model is loaded only then).
    Probes run ``max_iter`` L-BFGS iterations (default 30: on e5-small UPOS probes the
    in-language accuracy was within 0.1 points of 100 iterations at a third of the time).
    Fitted probes and each layer's evaluation are memoised in the cache, so an interrupted
    or repeated analysis only computes what is missing.

    ``perturb``: perturbations of the *target-language* PUD text (``"typo:0.05,0.1,
    drop-diacritics"`` or a list, see :mod:`probe.perturb`; seeded with ``seed``). The
    English-trained probes are evaluated on the perturbed text and retrieval/CKA recomputed
    against clean English; ``report["robustness"]`` holds, per layer, each score and its
    drop from clean text with a paired-bootstrap 95% CI.

    ``report["noise"]`` says, for every per-layer curve (probe accuracies and PUD retrieval:
    paired sentence bootstrap; CKA: delete-a-group jackknife), which layers are within noise
    of the best one.

    ``input``: what the model reads, ``"words"`` (pre-split) or ``"text"`` (the sentence's
    own text; see :mod:`probe.alignment`), for every entry (training, PUD, Tatoeba); with
    ``"text"`` each probe result also has ``unflagged`` (accuracy without the flagged words).
    ``sentence``: the sentence-vector definition for CKA and retrieval (see
    :mod:`probe.sentences`). Both are recorded in the report and stated in the table and
    figures.
    Returns a :class:`LayerResult`; ``result.report`` holds every number with the model,
    data, seeds and versions that produced it; ``result.counts`` the per-sentence outcomes.
    """
    from .encoders import resolve_encoder
    from .languages import get_language
    from .perturb import parse_perturbations
    from .stats import jackknife_difference

    t0 = time.time()
    log = log or (lambda msg: print(msg, file=sys.stderr))
    tasks = [t.strip() for t in (tasks.split(",") if isinstance(tasks, str) else tasks) if t.strip()]
    bad = [t for t in tasks if t not in TASKS]
    if bad:
        raise ProbeError(f"unknown task(s) {', '.join(bad)}; choose from {', '.join(TASKS)}")
    targets = _check_targets(langs)
    perturbations = parse_perturbations(perturb, seed=seed) if perturb else []
    from .alignment import check_input
    from .sentences import SentenceVectors, describe

    check_input(input)
    if perturb and sentence in ("mean-pieces", "native"):
        raise ProbeError(f"--perturb with --sentence {sentence} is not supported yet (perturbed text has no "
                         "stored corpus to re-encode); use --sentence mean-words or first")
    spec = resolve_encoder(model) if isinstance(model, str) else model
    sent = SentenceVectors(spec, sentence, device=device or "cpu", progress=progress)
    wanted = [(train[0], SOURCE_LANG, train[1], pooling)]
    wanted += [("pud", lang, "test", pooling) for lang in [SOURCE_LANG] + targets]
    tat_langs = [l for l in targets if tatoeba and get_language(l).tatoeba]
    for lang in tat_langs:
        # Tatoeba has no gold word segmentation (whitespace tokens; a Chinese sentence is one
        # token), so its words are mean-pooled over all their pieces.
        wanted += [("tatoeba", lang, "xx", "mean"), ("tatoeba", lang, "eng", "mean")]
    entries = ensure_entries(spec, wanted, progress=progress, device=device, input=input)
    train_entry = entries[0]
    pud = dict(zip([SOURCE_LANG] + targets, entries[1:2 + len(targets)]))
    tat = {lang: (entries[2 + len(targets) + 2 * i], entries[3 + len(targets) + 2 * i])
           for i, lang in enumerate(tat_langs)}
    perturbed = _perturbed_entries(spec, targets, perturbations, pooling, pud, progress, device, log, input)
    t_extract = time.time() - t0
    L = train_entry.last_layer
    probe_kw = {"C": C, "max_iter": max_iter}

    # evaluation sets: name -> entry ("de", "control_en", or "de~typo:0.1")
    evals = {lang: e for lang, e in pud.items()}
    evals.update({f"{lang}~{p}": e for (p, lang), (e, _f) in perturbed.items()})
    probe_tasks = [t for t in tasks if t != "langid"]
    probes: dict = {t: {name: [] for name in [*pud, "control_en"]} for t in probe_tasks}
    counts: dict = {t: {name: [] for name in [*evals, "control_en"]} for t in probe_tasks}
    pert_probes: dict = {t: {name: [] for name in evals if "~" in name} for t in probe_tasks}
    langid_rows = []
    from tqdm.auto import tqdm

    from .cache import memoized

    base = {"train": train_entry.meta["key"], "seed": seed, "n_boot": n_boot, "probe": probe_kw}
    pud_keys = {k: v.meta["key"] for k, v in pud.items()}
    for layer in tqdm(range(L + 1), desc="probing layers", unit="layer", disable=not progress,
                      file=sys.stderr):
        for task in probe_tasks:
            fitted = []  # fitted lazily: only when some evaluation is not memoised

            def get_fit():
                if not fitted:
                    fitted.append(_fit_probes(task, train_entry, layer, seed, probe_kw))
                return fitted[0]

            jobs = [(name, e, False) for name, e in evals.items()] + [("control_en", pud[SOURCE_LANG], True)]
            for name, entry, is_control in jobs:
                res = memoized("probe-eval", {**base, "task": task, "layer": layer,
                                              "eval": entry.meta["key"], "control": is_control},
                               lambda: _probe_eval(get_fit(), task, entry, layer, seed, n_boot, is_control))
                res, c = _split_counts(res)
                counts[task][name].append(c)
                (pert_probes[task] if "~" in name else probes[task])[name].append(res)
        if "langid" in tasks:
            langid_rows.append(memoized("langid", {**base, "pud": pud_keys, "layer": layer},
                                        lambda: _langid(pud, layer, seed, n_boot, probe_kw)))
    for task in probes:
        probes[task]["selectivity_en"] = [a["accuracy"] - c["accuracy"] for a, c in
                                          zip(probes[task][SOURCE_LANG], probes[task]["control_en"])]
    counts = {t: {name: np.stack(v) for name, v in per.items()} for t, per in counts.items()}
    t_probe = time.time() - t0 - t_extract
    cka, cka_mat, retrieval, ret_counts, cka_reps = _similarity(pud, tat, targets, L, jackknife=CKA_GROUPS,
                                                                seed=seed, sent=sent)

    # -- noise: which layers are indistinguishable from each curve's best layer
    noise = {"method": "paired sentence bootstrap of value(peak layer) - value(layer), 95% CI; a "
                       "layer whose CI contains 0 is within noise of the peak",
             "n_boot": n_boot, "seed": seed, "curves": {}}
    for task in probe_tasks:
        for name in [*pud]:
            noise["curves"][f"{task} {name}" + ("" if name == SOURCE_LANG else " (zero-shot)")] = \
                noise_summary(counts[task][name], n_boot=n_boot, seed=seed)
    for lang in targets:
        noise["curves"][f"retrieval en-{lang}"] = noise_summary(ret_counts[lang], n_boot=n_boot, seed=seed)
    for lang in targets:
        noise["curves"][f"cka en-{lang}"] = jackknife_noise_summary(cka[lang]["debiased"], cka_reps[lang])
    noise["cka_method"] = (f"CKA: delete-a-group jackknife over sentences ({CKA_GROUPS} seeded groups, the "
                           "same for every layer), 95% normal interval of value(peak) - value(layer); a "
                           "bootstrap would duplicate rows, which the debiased estimator does not allow")

    robustness = None
    if perturbations:
        robustness = {"perturbations": [str(p) for p in perturbations], "seed": seed,
                      "applied_to": "target-language PUD sentences (English and the training data "
                                    "stay clean); word segmentation and labels unchanged",
                      "drop": "clean - perturbed (positive = worse) as [diff, lo, hi]; 95% CI: paired "
                              "sentence bootstrap (probes, retrieval), paired delete-a-group jackknife (CKA)",
                      "results": {}}
        for p in perturbations:
            per_lang = {}
            for lang in targets:
                entry, frac = perturbed[(str(p), lang)]
                name = f"{lang}~{p}"
                row = {"changed_words": frac, "cache_key": entry.meta["key"]}
                for task in probe_tasks:
                    acc = [r["accuracy"] for r in pert_probes[task][name]]
                    drops = [_row(_count_difference(counts[task][lang][l], counts[task][name][l], n_boot, seed))
                             for l in range(L + 1)]
                    row[task] = {"accuracy": acc, "drop": drops}
                p_cka, _m, p_ret, p_counts, p_reps = _similarity(
                    {SOURCE_LANG: pud[SOURCE_LANG], lang: entry}, {}, [lang], L, jackknife=CKA_GROUPS,
                    seed=seed, full=False, sent=sent)
                row["cka"] = p_cka[lang]["debiased"]
                row["cka_drop"] = [_row(jackknife_difference(cka[lang]["debiased"][l], row["cka"][l],
                                                             cka_reps[lang][l], p_reps[lang][l]))
                                   for l in range(L + 1)]
                row["retrieval"] = [(x["en2xx"] + x["xx2en"]) / 2 for x in p_ret["pud"][lang]["plain"]]
                row["retrieval_drop"] = [_row(_count_difference(ret_counts[lang][l], p_counts[lang][l], n_boot, seed))
                                         for l in range(L + 1)]
                per_lang[lang] = row
            robustness["results"][str(p)] = per_lang

    report = {
        "question": "which layers carry structure (probes) and which carry cross-lingual information "
                    "(CKA, retrieval)",
        "layer_indexing": "0 = embedding output, L = last transformer layer",
        "layers": list(range(L + 1)),
        "model": {"name": spec.name, "fingerprint": spec.fingerprint, "source": spec.source,
                  "note": getattr(spec, "note", ""), "n_layers": L, "hidden": train_entry.hidden},
        "config": {"langs": targets, "source_lang": SOURCE_LANG, "tasks": tasks, "pooling": pooling,
                   "probe": {"kind": "LinearProbe (multinomial logistic regression, L-BFGS)", **probe_kw},
                   "train": {"corpus": train[0], "split": train[1]},
                   "in_language_eval": "English PUD (held out: a different treebank from the training one)",
                   "sentence_vectors": describe(sentence, spec.name), "n_boot": n_boot,
                   "input": input, "sentence": sentence,
                   "flagged_words": {name: int(np.asarray(e.flagged).sum()) for name, e in
                                     [("train", train_entry), *pud.items()]},
                   "control_task": "Hewitt & Liang 2019: each word type gets a fixed random label drawn "
                                   "from the training label distribution",
                   "perturb": [str(p) for p in perturbations]},
        "seeds": {"probe": seed, "control": seed, "bootstrap": seed, "langid_split": seed,
                  "perturbation": seed},
        "data": {"train": entry_record(train_entry),
                 "pud": {k: entry_record(v) for k, v in pud.items()},
                 "tatoeba": {k: {"xx": entry_record(a), "eng": entry_record(b)} for k, (a, b) in tat.items()},
                 "perturbed": {f"{lang}~{p}": entry_record(e) for (p, lang), (e, _f) in perturbed.items()}},
        "versions": versions(),
        "probes": probes,
        "langid": langid_rows,
        "cka": cka,
        "cka_matrix": cka_mat,
        "retrieval": retrieval,
        "noise": noise,
        "timings_s": {"extract_or_open": round(t_extract, 2), "probes": round(t_probe, 2),
                      "similarity": round(time.time() - t0 - t_extract - t_probe, 2),
                      "total": round(time.time() - t0, 2)},
    }
    if robustness:
        report["robustness"] = robustness
    sent_counts = {f"{t} {name}": c for t, per in counts.items() for name, c in per.items()}
    sent_counts.update({f"retrieval en-{lang}": c for lang, c in ret_counts.items()})
    sent_counts.update({f"cka-jackknife en-{lang}": r for lang, r in cka_reps.items()})
    return LayerResult(report, counts=sent_counts)
