"""The result of ``compare``: :class:`CompareResult`, per-model curves on relative depth, peak
tables and noise-aware differences (table, text, save/load)."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ..options import precision_text
from ..results import ResultDisplay, SavedFiles, closed, load_counts, report_file, save_counts
from ..tasks import recorded_curve, recorded_task
from .curves import CURVES
from .plots import draw_curves


@dataclass(repr=False)
class CompareResult(ResultDisplay):
    """Per-model curves on relative depth, peak tables and noise-aware differences.

    ``report`` is JSON-ready; ``layer_results`` holds each model's
    :class:`~probe.layerwise.LayerResult` (with per-sentence outcomes) when computed here.
    """

    report: dict
    layer_results: dict = field(default_factory=dict, repr=False)

    def __post_init__(self):
        # one vocabulary: a comparison saved with "upos_zero_shot" reads "pos_zero_shot"
        r = dict(self.report)
        if "config" in r:
            c = r["config"] = dict(r["config"])
            if "tasks" in c:
                c["tasks"] = [recorded_task(t) for t in c["tasks"]]
            if "curves" in c:
                c["curves"] = {recorded_curve(k): v for k, v in c["curves"].items()}
        for section in ("peaks", "curves"):
            if section in r:
                r[section] = {m: {recorded_curve(k): v for k, v in per.items()} for m, per in r[section].items()}
        if "model_differences" in r:
            r["model_differences"] = [{**d, "curve": recorded_curve(d["curve"])} for d in r["model_differences"]]
        self.report = r

    @property
    def models(self) -> list[str]:
        return [m["name"] for m in self.report["models"]]

    def _headline(self) -> str:
        return (f"{' vs '.join(self.models)}, English -> {', '.join(self.report['config']['langs'])}; "
                "peak layers per model" + (f"; {self.precision_line}" if self.report.get("precision") else ""))

    @property
    def precision_line(self) -> str:
        """``"precision: float32 on cpu"``: the forward passes behind every curve ("precision:
        not recorded" for reports made before it was)."""
        rec = self.report.get("precision")
        return precision_text(rec) if rec else "precision: not recorded"

    def table(self):
        """One row per model: L, peak layer (absolute / relative) and value of each curve,
        the layers within noise of the peak, and the fusion gain."""
        import pandas as pd

        from ..layerwise import layer_ranges

        rows = []
        for m in self.report["models"]:
            name = m["name"]
            row = {"model": name, "L": m["n_layers"], "hidden": m["hidden"]}
            for curve in CURVES:
                pk = self.report["peaks"][name].get(curve)
                if pk is None:  # e.g. no POS probe in --tasks
                    continue
                row[f"{curve} peak"] = pk["layer"]
                row[f"{curve} peak rel"] = round(pk["relative"], 3)
                row[f"{curve} value"] = round(pk["value"], 4)
                if "within_noise" in pk:
                    row[f"{curve} tied layers"] = layer_ranges(pk["within_noise"])
            fus = self.report.get("fusion", {}).get(name)
            if fus:
                row["fusion k"] = fus["k"]
                row["fusion k rel"] = round(fus["relative"], 3)
                row["fusion gain"] = round(fus["mean_gain"], 4)
                row["fusion gain within noise"] = fus["all_within_noise"]
            rows.append(row)
        return pd.DataFrame(rows).set_index("model")

    def noise_lines(self) -> list[str]:
        """Human-readable differences between models (same sentences, paired bootstrap)."""
        out = []
        for d in self.report.get("model_differences", []):
            verdict = "within noise" if d["within_noise"] else "a real difference"
            out.append(f"{d['curve']}: peak {d['a']} {d['value_a']:.3f} vs {d['b']} {d['value_b']:.3f}, "
                       f"difference {d['difference']:+.3f} [{d['lo']:+.3f}, {d['hi']:+.3f}]: {verdict}")
        for name, fus in self.report.get("fusion", {}).items():
            for lang, g in fus["gain"].items():
                verdict = "within noise" if g["within_noise"] else "a real gain" if g["mean"] > 0 else "a real loss"
                ci = "no interval, one seed" if g["ci95"] is None else \
                    f"{g['ci95'][0]:+.3f}, {g['ci95'][1]:+.3f}"
                out.append(f"fusion {name} {lang}: DLFA at k={fus['k']} vs last layer {g['mean']:+.3f} "
                           f"[{ci}]: {verdict}")
        return out

    def plot(self, path: Path | None = None, *, ax=None):
        """CKA, retrieval and zero-shot POS against relative depth, one line per model;
        returns the Figure (``ax``: one Axes per panel; ``path``: also save it there)."""
        from ..plotting import show_or_save

        owned = ax is None
        fig = draw_curves(self, ax)
        langs = ", ".join(self.report["config"]["langs"])
        cap = (f"English → {langs}; probes on UD EWT → PUD, similarity on PUD; depth 0 = embeddings, 1 = last "
               "layer; ★ = peak, ○ = layers within noise of it (95%: paired sentence bootstrap; CKA: jackknife)")
        meta = {"model": {"name": " vs ".join(self.models)}, "data_caption": cap,
                "seed": self.report["seeds"]["probe"], "versions": self.report["versions"],
                "precision": self.report.get("precision")}
        return show_or_save(fig, path, meta, "Layer trade-off across encoders, by relative depth", owned=owned)

    def save(self, out_dir: Path, *, figures: bool = True) -> SavedFiles:
        """Write ``compare.json``, each model's ``layers/<model>.json`` and
        ``layers/<model>.counts.npz`` (per-sentence outcomes) and, with ``figures``,
        ``compare.png``/``.pdf``. As a path the returned list is ``out_dir``:
        ``CompareResult.load(res.save(d))`` round-trips."""
        from ..files import atomic_write_json

        out_dir = Path(out_dir)
        (out_dir / "layers").mkdir(parents=True, exist_ok=True)
        paths = SavedFiles(out_dir, [out_dir / "compare.json"])
        atomic_write_json(paths[0], self.report)
        for name, res in self.layer_results.items():
            paths.append(out_dir / "layers" / f"{_file_name(name)}.json")
            atomic_write_json(paths[-1], res.report)
            if res.counts:
                paths.append(save_counts(out_dir / "layers" / f"{_file_name(name)}.counts.npz", res.counts))
        if figures:
            paths += closed(self.plot(out_dir / "compare.png"), out_dir / "compare.png")
        return paths

    @classmethod
    def load(cls, path: Path) -> "CompareResult":
        """A saved comparison: the folder :meth:`save` wrote (or its ``compare.json``); each
        model's layer result (with its counts) is read back when saved beside it."""
        from ..layerwise import LayerResult

        rep = report_file(path, "compare.json")
        report = json.loads(rep.read_text())
        results = {}
        for m in report.get("models", []):
            f = rep.parent / "layers" / f"{_file_name(m['name'])}.json"
            if f.is_file():
                results[m["name"]] = LayerResult(json.loads(f.read_text()),
                                                 counts=load_counts(f.with_name(f.stem + ".counts.npz")))
        return cls(report, results)


def _file_name(model: str) -> str:
    return model.replace("/", "_").replace(":", "_")
