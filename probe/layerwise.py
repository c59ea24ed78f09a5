"""Which layers carry structure and which carry cross-lingual information?

:func:`layers` is the toolkit's main analysis and the API behind ``probe layers``:

- **structure**: linear probes per layer (part of speech, universal dependency relation) trained
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
from .options import precision_text
from .results import ResultDisplay, SavedFiles, closed, load_counts, report_file, save_counts
from .tasks import POS, PROBE_TASKS, recorded_curve, recorded_task
from .tasks import UPOS_TAGS as _UD_TAGS

TASKS = tuple(PROBE_TASKS)  # ("pos", "deprel", "langid"); "upos" is accepted for "pos"
UPOS_TAGS = list(_UD_TAGS)  # the POS probe's labels, also read from here (notebook, benchmarks)
SOURCE_LANG = "en"


# ----------------------------------------------------------------------------- provenance
def versions() -> dict:
    """Versions of the code and libraries that produced a result (from the installed packages'
    metadata: a warm run need not import torch, transformers and scikit-learn to name them)."""
    from importlib.metadata import PackageNotFoundError, version

    def installed(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "not installed"

    out = {"probe": __version__, "python": platform.python_version(), "numpy": np.__version__,
           "torch": installed("torch"), "transformers": installed("transformers"),
           "scikit-learn": installed("scikit-learn")}
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


def open_or_extract(spec, data, pooling: str, *, loaded: dict, progress=True, device=None, input="words",
                    dtype: str = "float32"):
    """The cache entry of an already loaded corpus (e.g. a subset or a perturbed copy),
    extracted if missing. The model is loaded only then, once per ``loaded`` dict: pass the
    same dict to successive calls. ``device`` and ``dtype`` (the forward's precision) select
    the entry: a bfloat16 run opens and builds bfloat16 entries only."""
    from .cache import open_entry
    from .extraction import cache_key, extract_corpus

    entry = open_entry(cache_key(spec, data, pooling, device=device, dtype=dtype, input=input))
    if entry is None:
        if "encoder" not in loaded:
            loaded["encoder"] = spec.load()
        entry = extract_corpus(spec, data, pooling=pooling, progress=progress, device=device,
                               encoder=loaded["encoder"], input=input, dtype=dtype)
    return entry


def ensure_entries(spec, wanted: Sequence[tuple[str, str, str, str]], *, progress=True, device=None,
                   input="words", dtype: str = "float32"):
    """Open or extract ``(corpus, lang, split, pooling)`` entries, loading the model at most once."""
    from .data import load_corpus

    loaded: dict = {}
    return [open_or_extract(spec, load_corpus(corpus, lang, split), pooling, loaded=loaded, progress=progress,
                            device=device, input=input, dtype=dtype) for corpus, lang, split, pooling in wanted]


def check_targets(langs: Sequence[str]) -> list[str]:
    """Target language codes (no duplicates) that have a PUD treebank; one clear error otherwise."""
    from .data import languages_with
    from .languages import get_language

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


def parse_train(text: str) -> tuple[str, str]:
    """A probe training set written ``corpus:split`` (``"ud:dev+test"``) as ``(corpus, split)``."""
    corpus, sep, split = str(text).partition(":")
    if not sep or not corpus or not split:
        raise ProbeError(f"--train must look like corpus:split (e.g. ud:dev+test), not {text!r}")
    return corpus, split


def select_layers(layers, last_layer: int) -> list[int]:
    """The layers ``layers=`` selects out of ``0..last_layer``: ``None``/``"all"`` = every one;
    a list or ``"0,6,-1"`` (negative counts from the end); sorted, no duplicates."""
    if layers is None or (isinstance(layers, str) and layers.strip().lower() == "all"):
        return list(range(last_layer + 1))
    items = layers.split(",") if isinstance(layers, str) else (
        [layers] if isinstance(layers, (int, np.integer)) else list(layers))
    out = set()
    for item in items:
        text = str(item).strip()
        try:
            value = int(text)
        except ValueError:
            raise ProbeError(f"layers must be integers (0 = embeddings, {last_layer} = last) or 'all', "
                             f"not {item!r}") from None
        if isinstance(item, float) and item != value or isinstance(item, bool):
            raise ProbeError(f"layers must be integers, not {item!r}")
        layer = value + last_layer + 1 if value < 0 else value
        if not 0 <= layer <= last_layer:
            raise ProbeError(f"layer {value} is out of range: this model has layers 0..{last_layer}")
        out.add(layer)
    if not out:
        raise ProbeError("layers= selects no layer")
    return sorted(out)


# the earlier private names, kept for callers outside the package
_check_targets = check_targets


def _parse_tasks(tasks) -> list[str]:
    """Probe tasks by their recorded names (:data:`probe.tasks.PROBE_TASKS`: ``upos`` ->
    ``pos``), no duplicates; an unknown name is one error listing the valid ones."""
    names = tasks.split(",") if isinstance(tasks, str) else list(tasks)
    out = []
    for t in (str(x).strip() for x in names):
        if t and PROBE_TASKS.canonical(t) not in out:
            out.append(PROBE_TASKS.canonical(t))
    if not out:
        raise ProbeError(f"no probe task given; choose from {PROBE_TASKS.listing()}")
    return out


def _universal(names: list[str]) -> list[str]:
    return [n.split(":")[0] for n in names]


def _label_ids(entry, task: str, vocab: list[str]) -> np.ndarray:
    """Entry labels of probe task ``task`` (read from its label column) mapped onto a
    shared vocabulary (``-1`` = missing/unknown)."""
    column = PROBE_TASKS[task].column
    names = entry.vocab(column)
    if PROBE_TASKS[task].universal:
        names = _universal(names)
    index = {v: i for i, v in enumerate(vocab)}
    lut = np.asarray([index.get(n, -1) for n in names] + [-1], dtype=np.int64)
    raw = np.asarray(entry.labels(column), dtype=np.int64)
    return lut[np.where(raw >= 0, raw, len(names))]


def entry_labels(entry, task: str, vocab: list[str]) -> np.ndarray:
    """``[n_words]`` label ids of probe task ``task`` (``pos``, or ``upos``; ``deprel``) in
    ``entry`` mapped onto ``vocab`` (``-1`` = missing or not in ``vocab``; ``deprel``
    reduced to universal relations), as the probes read them."""
    return _label_ids(entry, task, vocab)


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
@dataclass(repr=False)
class LayerResult(ResultDisplay):
    """All numbers of one ``layers`` run (``report`` is JSON-ready) with table and plots.

    ``counts``: per-sentence outcomes of each curve, ``{"pos de": [n_layers, n_sentences, 2]
    (correct, total)}``, for paired comparisons (:meth:`difference`); :meth:`save` writes them
    to ``counts.npz`` next to ``report.json`` and :meth:`load` reads them back.

    One vocabulary: a report saved when the POS probe was recorded as ``upos`` is read with
    ``pos`` (task, curve and count names).

    In Jupyter the result shows its per-layer table; ``repr`` is short.
    """

    report: dict
    counts: dict | None = field(default=None, repr=False)

    def __post_init__(self):
        self.report = _recorded_names(self.report)
        if self.counts:
            self.counts = {recorded_curve(k): v for k, v in self.counts.items()}

    def difference(self, curve: str, layer_a: int, layer_b: int, other: "LayerResult | None" = None,
                   *, n_boot: int = 1000, seed: int = 0):
        """Paired sentence bootstrap of ``curve`` at ``layer_a`` minus at ``layer_b`` (of
        ``other``, another model's result on the same sentences, if given).

        ``curve``: a key of :attr:`counts`, e.g. ``"pos de"``, ``"retrieval en-de"``, or
        ``"cka en-de"`` (a delete-a-group jackknife interval instead of the bootstrap).
        Returns :class:`probe.stats.PairedDifference` (``within_noise`` when the 95% CI holds 0).

        >>> res.difference("pos de", 7, 12).within_noise       # doctest: +SKIP
        False
        """
        from .stats import jackknife_difference

        other = other or self
        curve = recorded_curve(curve)  # "upos de" is accepted for "pos de"
        for r in (self, other):
            if r.counts is None:
                raise ProbeError("this result has no per-sentence outcomes (it was loaded from a "
                                 "report.json saved without counts.npz)")
        ia, ib = self._position(layer_a), other._position(layer_b)
        if curve.startswith("cka "):  # "cka en-de": jackknife replicates, not sentence counts
            key, lang = "cka-jackknife " + curve[4:], curve.split("-", 1)[1]
            for r in (self, other):
                if key not in r.counts:
                    raise ProbeError(f"unknown curve {curve!r}; choose from {self.curves()}")
            va = self.report["cka"][lang]["debiased"][ia]
            vb = other.report["cka"][lang]["debiased"][ib]
            return jackknife_difference(va, vb, self.counts[key][ia], other.counts[key][ib])
        for r in (self, other):
            if curve not in r.counts:
                raise ProbeError(f"unknown curve {curve!r}; choose from {self.curves()}")
        a, b = self.counts[curve][ia], other.counts[curve][ib]
        if a.shape != b.shape or not np.array_equal(a[:, 1], b[:, 1]):
            raise ProbeError(f"{curve}: the two results were not scored on the same sentences and words")
        return _count_difference(a, b, n_boot, seed)

    def curves(self) -> list[str]:
        """Names :meth:`difference` accepts (``"pos de"``, ``"retrieval en-de"``, ``"cka en-de"``)."""
        return sorted(("cka " + k[len("cka-jackknife "):]) if k.startswith("cka-jackknife ") else k
                      for k in (self.counts or {}))

    def _position(self, layer: int) -> int:
        """Row of ``layer`` in the per-layer lists (the report may hold a subset of layers)."""
        try:
            return self.layer_ids.index(int(layer))
        except ValueError:
            raise ProbeError(f"layer {layer} was not analysed; this result has layers "
                             f"{layer_ranges(self.layer_ids)}") from None

    def _headline(self) -> str:
        r = self.report
        tasks = ",".join(r.get("config", {}).get("tasks", []))
        return (f"{r['model']['name']} (L = {r['model']['n_layers']}), English -> {', '.join(self.langs)}; "
                f"layers {layer_ranges(self.layer_ids)}; tasks {tasks}"
                + (f"; {precision_text(r['precision'])}" if r.get("precision") else ""))

    def noise_lines(self) -> list[str]:
        """One line per curve: its best layer and the layers within noise of it."""
        out = []
        for name, n in self.report.get("noise", {}).get("curves", {}).items():
            tied = [l for l in n["within_noise_of_peak"] if l != n["peak_layer"]]
            out.append(f"{name}: peak at layer {n['peak_layer']} ({n['peak_value']:.3f}); "
                       + (f"layers {layer_ranges(n['within_noise_of_peak'])} are within noise of it"
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
        if POS in pr:
            cols["POS en"] = [x["accuracy"] for x in pr[POS]["en"]]
            for lang in self.langs:
                cols[f"POS {lang}"] = [x["accuracy"] for x in pr[POS][lang]]
                if any("unflagged" in x for x in pr[POS][lang]):  # input="text": without flagged words
                    cols[f"POS {lang} -flag"] = [x.get("unflagged", x)["accuracy"] for x in pr[POS][lang]]
            cols["POS sel"] = pr[POS]["selectivity_en"]
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
        """What the model read, how sentence vectors were made and the forward's precision
        (reports made before these options existed read as the defaults of that time; the
        precision is stated only when recorded)."""
        line = self._input_line
        if self.report.get("precision"):
            line += "; " + precision_text(self.report["precision"])
        return line

    @property
    def _input_line(self) -> str:
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
        # the precision has its own place in the caption (probe.plotting.provenance)
        return {"model": r["model"], "data_caption": f"{data_caption}; {self._input_line}",
                "seed": r["seeds"]["probe"], "versions": r["versions"], "precision": r.get("precision")}

    # -- figures
    def plot_probes(self, path: Path | None = None, *, ax=None):
        """Probe accuracy per layer (one panel per probe task); returns the Figure.

        ``ax``: Axes to draw into (one per task), else a new figure; ``path``: also save it
        there (.png + .pdf)."""
        from .plotting import LAYER_AXIS, palette, show_or_save, subplots

        r = self.report
        tasks = list(r["probes"])  # the word-level probe tasks, in report order
        owned = ax is None
        fig, axes = subplots(ax, max(len(tasks), 1), figsize=(5.2 * max(len(tasks), 1), 3.8))
        L = self.layer_ids
        for ax, task in zip(axes, tasks):
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
        return show_or_save(fig, path, self._meta(cap), "Structural probes per layer", owned=owned)

    def plot_similarity(self, path: Path | None = None, *, ax=None):
        """CKA and retrieval per layer (two panels); returns the Figure (``ax``: two Axes)."""
        from .plotting import LAYER_AXIS, palette, show_or_save, subplots

        r = self.report
        L = self.layer_ids
        owned = ax is None
        fig, (a1, a2) = subplots(ax, 2, figsize=(10.5, 3.8))
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
        return show_or_save(fig, path, self._meta(cap), "Cross-lingual similarity per layer", owned=owned)

    def tradeoff_curves(self) -> dict[str, list[float]]:
        """Curves min-max normalised over layers (0 = the curve's worst layer, 1 = its best)."""
        r = self.report
        curves = {}
        if POS in r["probes"]:
            curves["POS en (structure)"] = [x["accuracy"] for x in r["probes"][POS]["en"]]
            curves["POS zero-shot, mean over targets"] = list(np.mean(
                [[x["accuracy"] for x in r["probes"][POS][l]] for l in self.langs], axis=0))
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

    def plot_tradeoff(self, path: Path | None = None, *, ax=None):
        """Every curve min-max normalised on one axis; returns the Figure.

        >>> fig = res.plot_tradeoff()                  # doctest: +SKIP
        >>> res.plot_tradeoff(ax=my_axes)              # doctest: +SKIP
        """
        from .plotting import LAYER_AXIS, palette, show_or_save, subplots

        curves = self.tradeoff_curves()
        owned = ax is None
        fig, (ax,) = subplots(ax, 1, figsize=(7.5, 4.2))
        cols = palette(len(curves))
        for (name, v), c in zip(curves.items(), cols):
            style = "-" if "structure" in name or "zero-shot" in name else ("--" if "cross" in name else ":")
            ax.plot(self.layer_ids, v, ls=style, marker="o", ms=3, color=c, label=name)
        ax.set(xlabel=LAYER_AXIS, ylabel="normalised score (0 = worst layer, 1 = best layer)",
               ylim=(-0.05, 1.05))
        ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
        cap = f"targets: {', '.join(self.langs)}; probes on UD EWT→PUD, similarity on PUD"
        return show_or_save(fig, path, self._meta(cap), "Structure vs cross-lingual alignment across layers",
                            owned=owned)

    def plot_cka_heatmap(self, lang: str, path: Path | None = None, *, ax=None):
        """Layer x layer CKA of English vs ``lang``; returns the Figure."""
        import seaborn as sns

        from .plotting import show_or_save, subplots

        if lang not in self.report["cka_matrix"]:
            raise ProbeError(f"no CKA matrix for {lang!r}; this result has {', '.join(self.report['cka_matrix'])}")
        M = np.asarray(self.report["cka_matrix"][lang])
        owned = ax is None
        fig, (ax,) = subplots(ax, 1, figsize=(6.2, 5.2))
        sns.heatmap(M, ax=ax, xticklabels=self.layer_ids, yticklabels=self.layer_ids, cmap="viridis", vmin=0, vmax=1, square=True,
                    cbar_kws={"label": "debiased linear CKA"})
        ax.invert_yaxis()
        ax.set(xlabel=f"{lang} layer (0 = embeddings)", ylabel="en layer (0 = embeddings)")
        cap = f"PUD en vs {lang}, 1000 parallel sentences, mean-pooled sentence vectors"
        return show_or_save(fig, path, self._meta(cap), f"Layer × layer CKA, English vs {lang}", owned=owned)

    def save(self, out_dir: Path, *, figures: bool = True) -> SavedFiles:
        """Write ``report.json``, ``counts.npz`` (the per-sentence outcomes) and, with
        ``figures``, every figure into ``out_dir``. Returns the paths written; as a path it is
        ``out_dir``, so ``LayerResult.load(res.save(d))`` round-trips."""
        from .files import atomic_write_json

        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        rep = out_dir / "report.json"
        atomic_write_json(rep, self.report)
        paths = SavedFiles(out_dir, [rep])
        if self.counts:
            paths.append(save_counts(out_dir / "counts.npz", self.counts))
        if figures:
            drawn = [("probes", self.plot_probes), ("similarity", self.plot_similarity),
                     ("tradeoff", self.plot_tradeoff)]
            drawn += [(f"cka_en-{lang}", lambda p, lang=lang: self.plot_cka_heatmap(lang, p))
                      for lang in self.langs]
            if self.report.get("robustness"):
                drawn.append(("robustness", self.plot_robustness))
            for name, plot in drawn:
                paths += closed(plot(out_dir / f"{name}.png"), out_dir / f"{name}.png")
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
                # the per-layer lists follow layer_ids (a layers= subset), so index by position
                for i, l in enumerate(self.layer_ids):
                    row = {"perturbation": pert, "lang": lang, "layer": l,
                           "changed_words": r["changed_words"]}
                    for task in self.report["config"]["tasks"]:
                        if task in r:
                            row[f"{task}"] = r[task]["accuracy"][i]
                            row[f"{task} drop"], row[f"{task} lo"], row[f"{task} hi"] = r[task]["drop"][i]
                    row["retrieval"] = r["retrieval"][i]
                    row["retrieval drop"], row["retrieval lo"], row["retrieval hi"] = r["retrieval_drop"][i]
                    row["cka drop"], row["cka lo"], row["cka hi"] = r["cka_drop"][i]
                    rows.append(row)
        return pd.DataFrame(rows)

    def plot_robustness(self, path: Path | None = None, *, ax=None):
        """Drop of zero-shot POS and of retrieval per layer under each perturbation; returns
        the Figure (``ax``: one Axes per panel)."""
        from .plotting import LAYER_AXIS, palette, show_or_save, subplots

        rob = self.report.get("robustness")
        if not rob:
            raise ProbeError("this result has no robustness analysis (run layers(..., perturb=...))")
        perts = list(rob["results"])
        metrics = [m for m in (POS, "retrieval") if m == "retrieval" or
                   m in next(iter(next(iter(rob["results"].values())).values()))]
        owned = ax is None
        fig, axes = subplots(ax, len(metrics), figsize=(5.4 * len(metrics), 3.9))
        cols = palette(len(perts))
        styles = ["-", "--", ":", "-."]
        L = self.layer_ids
        for ax, metric in zip(axes, metrics):
            for (pert, per_lang), c in zip(rob["results"].items(), cols):
                for k, (lang, r) in enumerate(per_lang.items()):
                    d = np.asarray(r[metric]["drop"] if metric != "retrieval" else r["retrieval_drop"])
                    ax.plot(L, d[:, 0], color=c, ls=styles[k % len(styles)], marker="o", ms=2.5,
                            label=f"{pert}, {lang} ({r['changed_words']:.0%} words changed)")
                    ax.fill_between(L, d[:, 1], d[:, 2], color=c, alpha=0.12, lw=0)
            ax.axhline(0, color="0.3", lw=0.8)
            ax.set_xlabel(LAYER_AXIS)
            ax.set_ylabel("accuracy drop (clean − perturbed)")
            ax.set_title("zero-shot POS probe (trained on clean English)" if metric == POS
                         else "PUD retrieval en↔xx (accuracy@1, both directions)")
        axes[-1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
        cap = (f"perturbed PUD {', '.join(self.langs)} (seed {rob['seed']}); English and probe training "
               "data clean; 95% paired sentence-bootstrap bands")
        return show_or_save(fig, path, self._meta(cap), owned=owned, title=
                            f"Robustness of zero-shot transfer to noisy input, per layer — "
                      f"{self.report['model']['name']}, PUD")

    @classmethod
    def load(cls, path: Path) -> "LayerResult":
        """A saved result: ``path`` is the folder :meth:`save` wrote (or its ``report.json``);
        ``counts.npz`` beside it, if present, restores the per-sentence outcomes."""
        rep = report_file(path, "report.json")
        try:
            report = json.loads(rep.read_text())
        except ValueError as exc:
            raise ProbeError(f"{rep}: not a JSON report ({exc})") from None
        return cls(report, counts=load_counts(rep.with_name("counts.npz")))

    @property
    def n_layers(self) -> int:
        """L, the index of the model's last layer."""
        return int(self.report["model"].get("n_layers", self.layer_ids[-1]))

    @property
    def relative_depth(self) -> list[float]:
        """``layer / L`` for every layer: 0 = embeddings, 1 = last layer."""
        return [l / self.n_layers for l in self.layer_ids]


# ----------------------------------------------------------------------------- analysis
def _recorded_names(report: dict) -> dict:
    """``report`` with its task and curve names in the API's vocabulary (a report saved when
    the POS probe was recorded as ``upos`` reads ``pos``); unchanged sections are shared."""
    report = dict(report)
    if "config" in report and "tasks" in report["config"]:
        report["config"] = {**report["config"], "tasks": [recorded_task(t) for t in report["config"]["tasks"]]}
    if "probes" in report:
        report["probes"] = {recorded_task(t): v for t, v in report["probes"].items()}
    if "curves" in report.get("noise", {}):
        report["noise"] = {**report["noise"],
                           "curves": {recorded_curve(k): v for k, v in report["noise"]["curves"].items()}}
    if report.get("robustness"):
        rob = report["robustness"]
        report["robustness"] = {**rob, "results": {
            p: {lang: {recorded_task(k): v for k, v in row.items()} for lang, row in per_lang.items()}
            for p, per_lang in rob["results"].items()}}
    return report


def _probe_vocab(task, train) -> list[str]:
    """The label list of probe task ``task``: fixed (``pos``) or the training entry's own
    (``deprel``, universal relations)."""
    t = PROBE_TASKS[task]
    return list(t.labels) if t.labels else sorted(set(_universal(train.vocab(t.column))))


def _module_source(name: str) -> Path:
    """A module of this package as its source file (hashed without importing it: a warm run
    need not import torch just to check its memoised results)."""
    return Path(__file__).with_name(f"{name}.py")


def _probe_code() -> tuple:
    """The code a fitted probe and its evaluation depend on (keys of their memoised results)."""
    return (_fit_probes, _label_ids, _probe_vocab, _universal, _sentence_ids, _split_counts,
            _module_source("probes"), _module_source("stats"), repr(list(PROBE_TASKS.values())))


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
    from .cache import code_version

    fields = json.dumps({"train": train.meta["key"], "task": task, "layer": layer, "seed": seed,
                         "probe": probe_kw, "code": code_version(*_probe_code())},
                        sort_keys=True, default=str)
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


def _similarity(pud: dict, tatoeba: dict, targets, layer_ids, en_key: str = SOURCE_LANG, *,
                jackknife: int = 0, seed: int = 0, full: bool = True, sent=None):
    """CKA, CKA matrices and retrieval of English vs each target; also per-sentence retrieval
    counts ``{lang: [n_layers, n_sentences, 2]}`` (hits in both directions, out of 2) and, with
    ``jackknife=g``, delete-a-group CKA replicates ``{lang: [n_layers, g]}`` (same groups
    everywhere); one row per layer of ``layer_ids`` (an int ``L`` means layers ``0..L``).
    ``full=False`` computes only same-layer debiased CKA and plain retrieval (no layer × layer
    matrix, biased CKA or mean-centred retrieval): what the robustness comparison reads.

    Each language pair is memoised in the cache like the probes (keyed by both entries, the
    settings and the source of the code that computes it). ``sent(entry, layer)``: the sentence
    vectors (default: mean of the word vectors); its ``definition`` is part of the key."""
    from .cache import code_version, memoized

    similarity = _module_source("similarity")
    layer_ids = list(range(layer_ids + 1)) if isinstance(layer_ids, (int, np.integer)) else list(layer_ids)
    sent = sent or _mean_words
    definition = getattr(sent, "definition", "mean-words")
    en = pud[en_key]
    pair_code = code_version(_similarity_pair, _aligned_rows, _ret, similarity)
    cka, cka_mat, ret, counts, reps = {}, {}, {}, {}, {}
    for lang in targets:
        xx = pud[lang]
        r = memoized("similarity", {"en": en.meta["key"], "xx": xx.meta["key"], "layers": layer_ids,
                                    "jackknife": jackknife, "seed": seed, "full": full, "sentence": definition},
                     lambda: _similarity_pair(en, xx, layer_ids, jackknife=jackknife, seed=seed, full=full,
                                              sent=sent),
                     code=pair_code)
        cka[lang], ret[lang] = r["cka"], r["retrieval"]
        if full:
            cka_mat[lang] = r["cka_matrix"]
        counts[lang] = np.asarray(r["counts"], dtype=np.int64)
        if jackknife:
            reps[lang] = np.asarray(r["jackknife"], dtype=np.float64)
    tat_code = code_version(_tatoeba_pair, _ret, similarity)
    tat = {lang: memoized("retrieval-tatoeba", {"xx": xx.meta["key"], "eng": eng.meta["key"], "layers": layer_ids,
                                                 "sentence": definition},
                          lambda: _tatoeba_pair(xx, eng, layer_ids, sent), code=tat_code)
           for lang, (xx, eng) in tatoeba.items()}
    return cka, cka_mat, {"pud": ret, "tatoeba": tat}, counts, reps


def _mean_words(entry, layer: int):
    """The default sentence vectors: the mean of the word vectors ``[n_sentences, hidden]``."""
    return entry.sentence_vectors(layer, "mean")


def _similarity_pair(en, xx, layer_ids: list[int], *, jackknife: int, seed: int, full: bool,
                     sent=_mean_words) -> dict:
    """:func:`_similarity` for one pair of PUD entries, JSON-ready (rows: ``layer_ids``)."""
    from .similarity import cka_jackknife, cka_matrix, linear_cka

    ia, ib = _aligned_rows(en, xx)
    A = [np.asarray(sent(en, l), dtype=np.float32)[ia] for l in layer_ids]
    B = [np.asarray(sent(xx, l), dtype=np.float32)[ib] for l in layer_ids]
    n = len(layer_ids)
    out: dict = {}
    if full:
        out["cka_matrix"] = np.asarray(cka_matrix(A, B, debiased=True)).tolist()
        out["cka"] = {"debiased": [float(out["cka_matrix"][l][l]) for l in range(n)],
                      "biased": [float(linear_cka(A[l], B[l], debiased=False)) for l in range(n)]}
    else:
        out["cka"] = {"debiased": [float(linear_cka(A[l], B[l])) for l in range(n)]}
    out["cka"]["n_sentences"] = int(len(ia))
    if jackknife:
        out["jackknife"] = np.stack([cka_jackknife(A[l], B[l], n_groups=jackknife, seed=seed)
                                     for l in range(n)]).tolist()
    out["retrieval"], layer_counts = {}, []
    for kind in ("plain", "centered") if full else ("plain",):
        rows = []
        for l in range(n):
            row, hits = _ret(A[l], B[l], kind == "centered")
            rows.append(row)
            if kind == "plain":
                layer_counts.append(np.stack([hits, np.full(len(hits), 2)], axis=1))
        out["retrieval"][kind] = rows
    out["counts"] = np.stack(layer_counts).tolist()
    return out


def _tatoeba_pair(xx, eng, layer_ids: list[int], sent=_mean_words) -> dict:
    """Tatoeba retrieval (plain and mean-centred) of one language's pairs at every layer."""
    out = {}
    for kind in ("plain", "centered"):
        out[kind] = [_ret(np.asarray(sent(eng, l), dtype=np.float32),
                          np.asarray(sent(xx, l), dtype=np.float32),
                          kind == "centered")[0] for l in layer_ids]
    out["n_pairs"] = xx.n_sentences
    return out


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
        diffs.append(_row(d))
        if d.within_noise:
            tied.append(ids[l])
    return {"peak_layer": ids[peak], "peak_value": float(values[peak]), "within_noise_of_peak": tied,
            "difference_to_peak": diffs}


def _memo_noise(counts: np.ndarray, n_boot: int, seed: int, layer_ids) -> dict:
    """:func:`noise_summary`, memoised under a digest of the counts themselves (a warm run
    repeats no bootstrap)."""
    from .cache import code_version, memoized

    counts = np.ascontiguousarray(counts, dtype=np.int64)
    digest = hashlib.sha256(str(counts.shape).encode() + counts.tobytes()).hexdigest()
    return memoized("noise", {"counts": digest, "n_boot": n_boot, "seed": seed, "layers": list(layer_ids)},
                    lambda: noise_summary(counts, n_boot=n_boot, seed=seed, layer_ids=layer_ids),
                    code=code_version(noise_summary, _ties_with_peak, _count_difference, _row,
                                      _module_source("stats")))


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
    return _ties_with_peak(values, lambda p, l: _count_difference(counts[p], counts[l], n_boot, seed),
                           layer_ids)


#: delete-a-group jackknife groups for CKA intervals
CKA_GROUPS = 20


def jackknife_noise_summary(values, replicates, *, layer_ids=None) -> dict:
    """Like :func:`noise_summary` for a statistic with jackknife replicates (CKA).

    ``values: [n_layers]`` full-sample values; ``replicates: [n_layers, n_groups]`` the
    statistic without each group (the same groups at every layer). A layer is within noise of
    the peak when the 95% jackknife interval of their difference contains 0.
    """
    from .stats import jackknife_difference

    values = np.asarray(values, dtype=np.float64)
    reps = np.asarray(replicates, dtype=np.float64)
    return _ties_with_peak(values, lambda p, l: jackknife_difference(values[p], values[l], reps[p], reps[l]),
                           layer_ids)


def layer_ranges(layers_: list[int]) -> str:
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


_layer_ranges = layer_ranges


def _perturbed_entries(spec, targets, perturbations, pooling, pud, progress, device, log, input="words",
                       dtype="float32"):
    """``{(str(p), lang): (entry, changed_fraction)}`` for perturbed target PUD text.

    A perturbation that changes no word (e.g. lowercase on Chinese) reuses the clean entry.
    """
    from .data import load_corpus
    from .perturb import changed_fraction, perturb_corpus

    out, loaded = {}, {}
    if not perturbations:  # nothing to perturb: do not parse the clean text again
        return out
    for lang in targets:
        clean = load_corpus("pud", lang, "test", progress=progress)
        for p in perturbations:
            data = perturb_corpus(clean, p)
            frac = changed_fraction(clean, data)
            if progress:
                log(f"PUD {lang} perturbed by {p}: {frac:.1%} of the words changed")
            entry = pud[lang] if frac == 0 else open_or_extract(spec, data, pooling, loaded=loaded,
                                                                 progress=progress, device=device, input=input,
                                                                 dtype=dtype)
            out[(str(p), lang)] = (entry, frac)
    return out


def layers(langs: Sequence[str] | str, model: str = "auto", tasks: Sequence[str] = TASKS, *,
           pooling: str = "first", seed: int = 0, n_boot: int = 1000, tatoeba: bool = True,
           train: tuple[str, str] = ("ud", "dev+test"), C: float = 1.0, max_iter: int = 30,
           perturb=None, layers=None, progress: bool = True, device: str | None = None,
           log=None, input: str = "words",
           sentence: str = "mean-words", dtype: str = "float32") -> LayerResult:
    """Run the per-layer analysis for English → each of ``langs``.

    ``tasks``: probe tasks (:data:`probe.tasks.PROBE_TASKS`), ``pos`` (part of speech, UD's
    universal tags; ``upos`` is accepted and recorded as ``pos``), ``deprel``, ``langid``.
    ``layers``: the layers to analyse, e.g. ``[0, 6, 12]``, ``"0,6,-1"`` (negative counts from
    the end) or ``None``/``"all"`` (every layer, 0 = embeddings).

    Missing cache entries are extracted first (the model is loaded only then).
    Probes run ``max_iter`` L-BFGS iterations (default 30: on e5-small POS probes the
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

    ``dtype``: the precision of the forward pass, ``float32`` (default, every device),
    ``bfloat16`` or ``float16`` (under autocast); it selects the cache entries (a bfloat16 run
    reads and builds bfloat16 entries only, and every memoised result is keyed by its
    entries) and, with the device type, is recorded in ``report["precision"]``, the table
    header and every figure's caption and metadata.
    Returns a :class:`LayerResult`; ``result.report`` holds every number with the model,
    data, seeds and versions that produced it; ``result.counts`` the per-sentence outcomes.
    """
    from .encoders import resolve_encoder
    from .extraction import precision_record
    from .languages import get_language
    from .perturb import parse_perturbations
    from .stats import jackknife_difference

    t0 = time.time()
    log = log or (lambda msg: print(msg, file=sys.stderr))
    precision = precision_record(device, dtype)  # a bad dtype or device fails here, before any work
    tasks = _parse_tasks(tasks)
    targets = check_targets(langs)
    perturbations = parse_perturbations(perturb, seed=seed) if perturb else []
    from .alignment import check_input
    from .sentences import SentenceVectors, describe

    check_input(input)
    if perturb and sentence in ("mean-pieces", "native"):
        raise ProbeError(f"--perturb with --sentence {sentence} is not supported yet (perturbed text has no "
                         "stored corpus to re-encode); use --sentence mean-words or first")
    spec = resolve_encoder(model) if isinstance(model, str) else model
    sent = SentenceVectors(spec, sentence, device=precision["device"], dtype=dtype, progress=progress)
    wanted = [(train[0], SOURCE_LANG, train[1], pooling)]
    wanted += [("pud", lang, "test", pooling) for lang in [SOURCE_LANG] + targets]
    tat_langs = [l for l in targets if tatoeba and get_language(l).tatoeba]
    for lang in tat_langs:
        # Tatoeba has no gold word segmentation (whitespace tokens; a Chinese sentence is one
        # token), so its words are mean-pooled over all their pieces.
        wanted += [("tatoeba", lang, "xx", "mean"), ("tatoeba", lang, "eng", "mean")]
    entries = ensure_entries(spec, wanted, progress=progress, device=device, input=input, dtype=dtype)
    train_entry = entries[0]
    pud = dict(zip([SOURCE_LANG] + targets, entries[1:2 + len(targets)]))
    tat = {lang: (entries[2 + len(targets) + 2 * i], entries[3 + len(targets) + 2 * i])
           for i, lang in enumerate(tat_langs)}
    perturbed = _perturbed_entries(spec, targets, perturbations, pooling, pud, progress, device, log, input,
                                   dtype)
    t_extract = time.time() - t0
    L = train_entry.last_layer
    layer_ids = select_layers(layers, L)
    n = len(layer_ids)
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

    from .cache import code_version, memoized

    base = {"train": train_entry.meta["key"], "seed": seed, "n_boot": n_boot, "probe": probe_kw}
    # memoised results are keyed on the source of the code computing them (never stale)
    eval_code = code_version(_probe_eval, *_probe_code())
    langid_code = code_version(_langid, _sentence_ids, *_probe_code())
    pud_keys = {k: v.meta["key"] for k, v in pud.items()}
    for layer in tqdm(layer_ids, desc="probing layers", unit="layer", disable=not progress,
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
                               lambda: _probe_eval(get_fit(), task, entry, layer, seed, n_boot, is_control),
                               code=eval_code)
                res, c = _split_counts(res)
                counts[task][name].append(c)
                (pert_probes[task] if "~" in name else probes[task])[name].append(res)
        if "langid" in tasks:
            langid_rows.append(memoized("langid", {**base, "pud": pud_keys, "layer": layer},
                                        lambda: _langid(pud, layer, seed, n_boot, probe_kw),
                                        code=langid_code))
    for task in probes:
        probes[task]["selectivity_en"] = [a["accuracy"] - c["accuracy"] for a, c in
                                          zip(probes[task][SOURCE_LANG], probes[task]["control_en"])]
    counts = {t: {name: np.stack(v) for name, v in per.items()} for t, per in counts.items()}
    t_probe = time.time() - t0 - t_extract
    cka, cka_mat, retrieval, ret_counts, cka_reps = _similarity(pud, tat, targets, layer_ids, jackknife=CKA_GROUPS,
                                                                seed=seed, sent=sent)

    # -- noise: which layers are indistinguishable from each curve's best layer
    noise = {"method": "paired sentence bootstrap of value(peak layer) - value(layer), 95% CI; a "
                       "layer whose CI contains 0 is within noise of the peak",
             "n_boot": n_boot, "seed": seed, "curves": {}}
    for task in probe_tasks:
        for name in [*pud]:
            noise["curves"][f"{task} {name}" + ("" if name == SOURCE_LANG else " (zero-shot)")] = \
                _memo_noise(counts[task][name], n_boot, seed, layer_ids)
    for lang in targets:
        noise["curves"][f"retrieval en-{lang}"] = _memo_noise(ret_counts[lang], n_boot, seed, layer_ids)
    for lang in targets:
        noise["curves"][f"cka en-{lang}"] = jackknife_noise_summary(cka[lang]["debiased"], cka_reps[lang],
                                                                    layer_ids=layer_ids)
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
                             for l in range(n)]
                    row[task] = {"accuracy": acc, "drop": drops}
                p_cka, _m, p_ret, p_counts, p_reps = _similarity(
                    {SOURCE_LANG: pud[SOURCE_LANG], lang: entry}, {}, [lang], layer_ids, jackknife=CKA_GROUPS,
                    seed=seed, full=False, sent=sent)
                row["cka"] = p_cka[lang]["debiased"]
                row["cka_drop"] = [_row(jackknife_difference(cka[lang]["debiased"][l], row["cka"][l],
                                                             cka_reps[lang][l], p_reps[lang][l]))
                                   for l in range(n)]
                row["retrieval"] = [(x["en2xx"] + x["xx2en"]) / 2 for x in p_ret["pud"][lang]["plain"]]
                row["retrieval_drop"] = [_row(_count_difference(ret_counts[lang][l], p_counts[lang][l], n_boot, seed))
                                         for l in range(n)]
                per_lang[lang] = row
            robustness["results"][str(p)] = per_lang

    report = {
        "question": "which layers carry structure (probes) and which carry cross-lingual information "
                    "(CKA, retrieval)",
        "layer_indexing": "0 = embedding output, L = last transformer layer",
        "layers": layer_ids,
        "model": {"name": spec.name, "fingerprint": spec.fingerprint, "source": spec.source,
                  "note": getattr(spec, "note", ""), "n_layers": L, "hidden": train_entry.hidden},
        "precision": precision,
        "config": {"langs": targets, "source_lang": SOURCE_LANG, "tasks": tasks, "pooling": pooling,
                   "dtype": dtype,
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
