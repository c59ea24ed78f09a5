"""The result of one ``layers`` run: :class:`LayerResult` (the JSON-ready report and the
per-sentence counts; table, text, save/load, paired differences between layers or models) and
:func:`layer_ranges`, how layer lists are written in its text."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ProbeError
from ..options import precision_text
from ..results import ResultDisplay, SavedFiles, closed, load_counts, report_file, save_counts
from ..tasks import POS, recorded_curve, recorded_task
from .noise import count_difference
from .plots import draw_cka_heatmap, draw_probes, draw_robustness, draw_similarity, draw_tradeoff


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
        from ..stats import jackknife_difference

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
        return count_difference(a, b, n_boot, seed)

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
        line = self.input_line
        if self.report.get("precision"):
            line += "; " + precision_text(self.report["precision"])
        return line

    @property
    def input_line(self) -> str:
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
        return {"model": r["model"], "data_caption": f"{data_caption}; {self.input_line}",
                "seed": r["seeds"]["probe"], "versions": r["versions"], "precision": r.get("precision")}

    # -- figures
    def plot_probes(self, path: Path | None = None, *, ax=None):
        """Probe accuracy per layer (one panel per probe task); returns the Figure.

        ``ax``: Axes to draw into (one per task), else a new figure; ``path``: also save it
        there (.png + .pdf)."""
        from ..plotting import show_or_save

        owned = ax is None
        fig = draw_probes(self, ax)
        cap = "probe train: UD English-EWT dev+test; eval: PUD (" + ", ".join(["en"] + self.langs) + \
              "); 95% sentence-bootstrap bands"
        return show_or_save(fig, path, self._meta(cap), "Structural probes per layer", owned=owned)

    def plot_similarity(self, path: Path | None = None, *, ax=None):
        """CKA and retrieval per layer (two panels); returns the Figure (``ax``: two Axes)."""
        from ..plotting import show_or_save

        owned = ax is None
        fig = draw_similarity(self, ax)
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
        from ..plotting import show_or_save

        owned = ax is None
        fig = draw_tradeoff(self, ax)
        cap = f"targets: {', '.join(self.langs)}; probes on UD EWT→PUD, similarity on PUD"
        return show_or_save(fig, path, self._meta(cap), "Structure vs cross-lingual alignment across layers",
                            owned=owned)

    def plot_cka_heatmap(self, lang: str, path: Path | None = None, *, ax=None):
        """Layer x layer CKA of English vs ``lang``; returns the Figure."""
        from ..plotting import show_or_save

        owned = ax is None
        fig = draw_cka_heatmap(self, lang, ax)
        cap = f"PUD en vs {lang}, 1000 parallel sentences, mean-pooled sentence vectors"
        return show_or_save(fig, path, self._meta(cap), f"Layer × layer CKA, English vs {lang}", owned=owned)

    def save(self, out_dir: Path, *, figures: bool = True) -> SavedFiles:
        """Write ``report.json``, ``counts.npz`` (the per-sentence outcomes) and, with
        ``figures``, every figure into ``out_dir``. Returns the paths written; as a path it is
        ``out_dir``, so ``LayerResult.load(res.save(d))`` round-trips."""
        from ..files import atomic_write_json

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
        from ..plotting import show_or_save

        owned = ax is None
        fig = draw_robustness(self, ax)
        rob = self.report["robustness"]
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
