""":class:`FinetuneResult`, what :func:`probe.finetune` returns: the report (``finetune.json``)
as a table, text, figures, and saved/loaded files.
"""
from __future__ import annotations

from pathlib import Path

from ..results import ResultDisplay, SavedFiles, closed
from .plots import draw_gains, draw_scores
from .report import CONTROLS, read_report


class FinetuneResult(ResultDisplay):
    """What :func:`finetune` measured; ``report`` is what ``finetune.json`` holds. In Jupyter
    it shows :meth:`table`."""

    def __init__(self, report: dict):
        self.report = report

    def _headline(self) -> str:
        r = self.report
        return (f"{r['task']} fine-tuned {r['model']['name']} -> {', '.join(self.langs)}, "
                f"{r['n_seeds']} seed(s)")

    def table(self):
        """Per fusion setting: each target's mean score, whether it is at chance, the gain over
        ``none`` and (``dlfa:K`` rows) over each control at the same K, plus the trainable
        parameters, as a pandas DataFrame; the first rows are each target's majority-class and
        chance rates."""
        import pandas as pd

        r = self.report
        rows = [{lang: r["reference_rates"][lang][key] for lang in self.langs}
                for key in ("majority", "chance")]
        controls = [k for k in CONTROLS if any(n.startswith(k + ":") for n in r["fusions"])]
        for name in r["fusions"]:
            row = {"params": r["parameters"][name]["trainable"]}
            for lang in self.langs:
                res = r["results"][lang][name]
                row[lang] = res["mean"]
                row[f"{lang} at chance"] = res["at_chance"]
                row[f"{lang} gain"] = (res.get("gain_vs_none") or {}).get("mean")
                ctl = res.get("gain_vs_control") or {}
                for k in controls:
                    g = next((v for c, v in ctl.items() if c.split(":")[0] == k), None)
                    row[f"{lang} gain vs {k}"] = None if g is None else g["mean"]
            rows.append(row)
        return pd.DataFrame(rows, index=pd.Index(["majority class", "chance"] + list(r["fusions"]),
                                                 name="fusion"))

    @property
    def task(self) -> str:
        return self.report["task"]

    @property
    def langs(self) -> list[str]:
        return list(self.report["langs"])

    def __repr__(self) -> str:
        r = self.report
        parts = []
        for lang in self.langs:
            for name, row in r["results"][lang].items():
                parts.append(f"{lang}/{name}={row['mean']:.3f}")
        return (f"FinetuneResult(task={r['task']!r}, model={r['model']['name']!r}, "
                f"seeds={r['n_seeds']}, {', '.join(parts[:6])}{', ...' if len(parts) > 6 else ''})")

    def format_table(self) -> str:
        r = self.report
        metric = "entity F1" if r["task_info"]["metric"] == "f1" else "accuracy"
        lines = [f"{r['task']} zero-shot {metric}, model {r['model']['name']} FINE-TUNED on "
                 f"English ({r['data']['train']['n_examples']} examples, "
                 f"{r['params']['epochs']} epoch(s)); {r['n_seeds']} seed(s); 95% interval: "
                 + ("seeds and target sentences" if r["n_seeds"] > 1 else
                    "target sentences only (one seed: no gain interval)")]
        lines.append(f"training data: {r['task_info']['training_data']}")
        leak = r.get("leakage") or {}
        if any(v["n_dropped"] for v in leak.values()) or r["task"] == "pawsx":
            lines.append("dropped target pairs that are English training/selection pairs: "
                         + ", ".join(f"{l} {v['n_dropped']} of {v['n_loaded']} "
                                     f"({v['n_evaluated']} scored)" for l, v in leak.items()))
        head = f"{'fusion':14s} {'params':>11s} {'en dev':>7s}"
        for lang in self.langs:
            head += (f" | {lang + ' (' + r['target_split'][lang] + ')':>12s} {'95% CI':>15s} "
                     f"{'majority':>8s} {'gain vs none':>22s}")
        lines.append(head)

        def gain_text(g):
            return f"{g['mean']:+.4f}" + (f" [{g['ci95'][0]:+.3f},{g['ci95'][1]:+.3f}]"
                                          if g["ci95"] else " (1 seed)")

        for name in r["fusions"]:
            p = r["parameters"][name]["trainable"]
            dev = r["results"][self.langs[0]][name]["english_dev"] if self.langs else None
            line = f"{name:14s} {p:11,d} {'-' if dev is None else f'{dev:.4f}':>7s}"
            for lang in self.langs:
                row = r["results"][lang][name]
                ci = row["ci95"]
                g = row.get("gain_vs_none")
                mark = "*" if row["at_chance"] else " "
                maj = r["reference_rates"][lang]["majority"]
                line += (f" | {row['mean']:11.4f}{mark} [{ci[0]:.3f},{ci[1]:.3f}] {maj:8.3f} "
                         f"{gain_text(g) if g else '':>22s}")
            lines.append(line)
        ctl = [(name, c, {lang: r["results"][lang][name]["gain_vs_control"][c]
                          for lang in self.langs})
               for name in r["fusions"]
               for c in (r["results"][self.langs[0]][name].get("gain_vs_control") or {})
               if self.langs]
        if ctl:
            lines.append("DLFA over its control at the same K (fusion, not extra capacity, if > 0):")
            for name, c, gains in ctl:
                lines.append(f"  {name} - {c}: " + "; ".join(
                    f"{lang} {gain_text(g)}" for lang, g in gains.items()))
        ref = "; ".join(f"{l}: majority {v['majority']:.3f} ({v['majority_label']}), "
                        f"chance {v['chance']:.3f}" for l, v in r["reference_rates"].items())
        lines.append(f"reference rates: {ref} (majority: English training's most frequent "
                     f"label everywhere; chance: random labels with its frequencies)")
        lines.append("* = at chance: the interval reaches down to the majority rate")
        pg = r["paper"]["gain_points"]
        if pg is not None:
            lines.append(f"paper ({r['paper']['model']}): DLFA over standard fine-tuning "
                         f"{pg:+.1f} points on {r['task']}")
        if r.get("selected_dlfa"):
            lines.append(f"dlfa K selected on English dev: {r['selected_dlfa']} ({r['selection']})")
        return "\n".join(lines)

    def _caption(self) -> str:
        r = self.report
        d = r["data"]
        tg = ", ".join(f"{l} {d['target:' + l]['split']} ({d['target:' + l]['n_examples']})"
                       for l in self.langs)
        return (f"fine-tuned end to end; XTREME {r['task']}: train en {d['train']['split']} "
                f"({d['train']['n_examples']}), dev en {d['dev']['split']} "
                f"({d['dev']['n_examples']}), targets {tg}; {r['params']['epochs']} epoch(s), "
                f"{r['n_seeds']} seed(s)")

    def _meta(self, caption: str) -> dict:
        r = self.report
        return {"model": r["model"], "versions": r.get("versions", {}),
                "seed": ",".join(map(str, r["seeds"])), "data_caption": caption}

    def plot(self, path: Path | None = None, *, ax=None):
        """Scores per fusion and target with 95% intervals, majority and chance lines; returns
        the Figure (``ax``: one Axes to draw into; ``path``: also save it there, .png + .pdf)."""
        from ..plotting import show_or_save

        owned = ax is None
        fig = draw_scores(self.report, ax)
        return show_or_save(fig, path, self._meta(
            self._caption() + "; bars: 95% interval; hatched = at chance"),
            f"Zero-shot {self.task}, fine-tuned {self.report['model']['name']}", owned=owned)

    def plot_gains(self, path: Path | None = None, *, ax=None):
        """Measured gain over ``none`` per fusion and target next to the paper's gain, and
        (hatched) each ``dlfa:K``'s gain over its control at the same K; 95% intervals where
        there is more than one seed. Returns the Figure (``ax``: one Axes; ``path``: also save
        it there)."""
        from ..plotting import show_or_save

        owned = ax is None
        fig = draw_gains(self.report, ax)
        return show_or_save(fig, path, self._meta(
            self._caption() + "; hatched: DLFA over its capacity control at the same K"),
            f"DLFA gain over standard fine-tuning and over its control, {self.task}", owned=owned)

    def save(self, out_dir) -> SavedFiles:
        """Write ``finetune.json`` and the two figures (.png + .pdf) under ``out_dir``; as a
        path the returned list is ``out_dir`` (``FinetuneResult.load(res.save(d))``)."""
        from ..files import atomic_write_json

        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / "finetune.json"
        atomic_write_json(path, self.report)
        paths = [path]
        paths += closed(self.plot(out_dir / "scores.png"), out_dir / "scores.png")
        has_control = any(row.get("gain_vs_control") for res in self.report["results"].values()
                          for row in res.values())
        if has_control or (any(n != "none" for n in self.report["fusions"])
                           and "none" in self.report["fusions"]):
            paths += closed(self.plot_gains(out_dir / "gains.png"), out_dir / "gains.png")
        return SavedFiles(out_dir, paths)

    @classmethod
    def load(cls, path) -> "FinetuneResult":
        """A saved report: the folder :meth:`save` wrote, or its ``finetune.json``."""
        return cls(read_report(path))
