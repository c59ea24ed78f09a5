""":class:`FusionResult`, what :func:`probe.fuse` returns: the report (``fusion.json``) as a
table, text, figures (drawn by :mod:`probe.transfer.plots`), and saved/loaded files.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..files import atomic_write_json
from ..options import precision_text
from ..results import ResultDisplay, SavedFiles, closed, report_file
from .plots import plot_baselines, plot_gain
from .settings import METHOD_LABELS

__all__ = ["FusionResult"]


@dataclass(repr=False)
class FusionResult(ResultDisplay):
    """All numbers of one :func:`fuse` sweep (``report`` is JSON-ready), table and figures.

    In Jupyter the result shows its per-method table; ``repr`` is short."""

    report: dict

    def _headline(self) -> str:
        r = self.report
        return (f"{r['task']} on {r['model']['name']} (L = {r['model']['n_layers']}), English -> "
                f"{', '.join(self.langs)}; fused layers k = {', '.join(map(str, r.get('ks', [])))}; "
                f"seeds {r['seeds']['train']}" + (f"; {precision_text(r['precision'])}" if r.get("precision") else ""))

    @property
    def task(self) -> str:
        return self.report["task"]

    @property
    def langs(self) -> list[str]:
        return self.report["langs"]

    def table(self):
        """Per method (selected k) and language: mean score, k, whether it is at chance, and
        the trainable parameters, as a pandas DataFrame; the first two rows are each target's
        majority-class and chance rates."""
        import pandas as pd

        refs = self.report.get("reference") or {}
        rows, index = [], []
        for key, label in (("majority", "majority class"), ("chance", "chance")):
            if refs:
                rows.append({lang: refs[lang][key] for lang in self.langs if lang in refs})
                index.append(label)
        for method, label in METHOD_LABELS.items():
            row = {}
            for lang in self.langs:
                comp = self.report["comparison"][lang].get(method)
                if comp:
                    row[f"{lang}"] = comp["mean"]
                    row[f"{lang} k"] = comp.get("k")
                    row[f"{lang} at chance"] = comp.get("at_chance")
                    row["params"] = (comp.get("params") or {}).get("total")
            if row:
                rows.append(row)
                index.append(label)
        return pd.DataFrame(rows, index=pd.Index(index, name="method"))

    def format_table(self) -> str:
        """A compact text table: mean +- std over seeds, gain vs last with its 95% interval
        (seeds and sentences), trainable parameters, and per target the majority-class and
        chance rates; rows within noise of the majority rate are marked ``(at chance)``."""
        r = self.report
        metric = r["task_info"]["metric"]
        n_seeds = r.get("n_seeds", len(r["seeds"]["train"]))
        head = f"{'method':28s} {'k':>3s} {'params':>8s} {'en dev':>13s}"
        for lang in self.langs:
            head += f" {lang + ' (' + r['target_split'][lang] + ')':>15s} {'gain vs last [95% CI]':>26s}"
        interval = (f"95% intervals: bootstrap over the {n_seeds} seeds and the target sentences"
                    if n_seeds > 1 else "95% intervals: target sentences only (one seed: they "
                    "cannot cover seed variance, and there is no gain interval)")
        lines = [f"{r['task']}: {metric}, mean ± std over {n_seeds} seed(s) {r['seeds']['train']}; "
                 + interval + f"; k = fused layer (0 = embeddings, L = {r['model']['n_layers']}); "
                 f"dev-selected k unless marked"
                 + (f"; features: {precision_text(r['precision'])}" if r.get("precision") else "")]
        for lang in self.langs:
            ref = (r.get("reference") or {}).get(lang)
            if ref:
                lines.append(f"  {lang}: majority class ({ref['majority_label']}) "
                             f"{ref['majority']:.3f}, chance {ref['chance']:.3f}; "
                             f"{r['n_target_sentences'][lang]} target examples evaluated")
        lines.append(head)

        def dev_of(method, k):
            for d in r["en_dev"]:
                if d["method"] == method and d["k"] == k:
                    return f"{d['mean']:.3f}±{d['std']:.3f}"
            return ""

        any_chance = False
        for method, label in METHOD_LABELS.items():
            comps = {lang: r["comparison"][lang].get(method) for lang in self.langs}
            if not any(comps.values()):
                continue
            first = next(c for c in comps.values() if c)
            n_par = first.get("params")
            par = "" if not n_par else f"{n_par['total']:,}"
            if method.endswith("@best_k"):
                line = f"{label:28s} {'*':>3s} {par:>8s} {'':>13s}"
            else:
                k = first.get("k")
                base = method.split("@")[0]
                line = f"{label:28s} {'' if k is None else k:>3} {par:>8s} {dev_of(base, k):>13s}"
            for lang in self.langs:
                c = comps[lang]
                if not c:
                    line += f" {'':>15s} {'':>26s}"
                    continue
                score = f"{c['mean']:.3f}±{c['std']:.3f}"
                if method.endswith("@best_k"):
                    score = f"k={c['k']} {c['mean']:.3f}"
                if c.get("at_chance"):
                    score += "~"
                    any_chance = True
                g = c["gain_vs_last"]
                if method == "last":
                    gain = ""
                elif g.get("ci95") is None:
                    gain = f"{g['mean']:+.3f} [no interval]"
                else:
                    gain = f"{g['mean']:+.3f} [{g['ci95'][0]:+.3f}, {g['ci95'][1]:+.3f}]"
                line += f" {score:>15s} {gain:>26s}"
            lines.append(line)
        if any_chance:
            lines.append("~ at chance: the 95% interval reaches down to the majority-class rate")
        return "\n".join(lines)

    def figure_meta(self, caption: str) -> dict:
        """The provenance a figure of this result is stamped with."""
        r = self.report
        return {"model": r["model"], "data_caption": caption,
                "seed": ",".join(map(str, r["seeds"]["train"])), "versions": r["versions"],
                "precision": r.get("precision")}

    def caption(self) -> str:
        """One line saying what data the figures rest on."""
        r = self.report
        tr = r["data"]["train"]
        targets = ", ".join(f"{l} {r['data']['targets'][l]['split']} "
                            f"({r['data']['targets'][l]['n_sentences']})" for l in self.langs)
        refs = r.get("reference") or {}
        ref = "; ".join(f"{l} majority {refs[l]['majority']:.2f}, chance {refs[l]['chance']:.2f}"
                        for l in self.langs if l in refs)
        return (f"XTREME {r['task']}: train en {tr['split']} ({tr['n_sentences']}), "
                f"targets {targets}; {r.get('n_seeds', len(r['seeds']['train']))} seed(s); "
                f"frozen encoder" + (f"; {ref}" if ref else ""))

    def plot_gain(self, path: Path | None = None, *, ax=None):
        """Gain of DLFA over the last layer vs the fused layer k, one line per language;
        returns the Figure (``ax``: two Axes; ``path``: also save it there)."""
        return plot_gain(self, path, ax=ax)

    def plot_baselines(self, path: Path | None = None, *, ax=None):
        """Best fusion vs each baseline, per language, with 95% bootstrap error bars; returns
        the Figure (``ax``: one Axes; ``path``: also save it there)."""
        return plot_baselines(self, path, ax=ax)

    def save(self, out_dir: Path, *, figures: bool = True) -> SavedFiles:
        """Write ``fusion.json`` and (``figures``) the ``gain_vs_k`` and ``baselines`` figures
        (.png + .pdf). As a path the returned list is ``out_dir``: ``FusionResult.load(res.save(d))``."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / "fusion.json"
        atomic_write_json(path, self.report)
        paths = SavedFiles(out_dir, [path])
        if figures:
            paths += closed(self.plot_gain(out_dir / "gain_vs_k.png"), out_dir / "gain_vs_k.png")
            paths += closed(self.plot_baselines(out_dir / "baselines.png"), out_dir / "baselines.png")
        return paths

    @classmethod
    def load(cls, path: Path) -> "FusionResult":
        """A saved sweep: the folder :meth:`save` wrote, or its ``fusion.json``."""
        return cls(json.loads(report_file(path, "fusion.json").read_text()))
