"""The cross-task summary of saved sweeps: :func:`summary_table` reads ``fusion.json`` files
(or folders holding them) and averages each method over a task's target languages;
:func:`summary_highlight` says which cell may be bold (never one at chance). The figure is
:func:`probe.transfer.plots.summary_figure`.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..errors import ProbeError
from .settings import TASK_ORDER

__all__ = ["summary_table", "summary_highlight", "SUMMARY_ROWS"]

#: Rows of the summary, in order: (method, label).
SUMMARY_ROWS = (("last", "last layer only"), ("layer", "layer k only (dev k)"),
                ("scalarmix", "ELMo scalar mix"), ("concat", "concat [L; k] (dev k)"),
                ("dlfa-fixed", "DLFA gate 0.5, control (dev k)"),
                ("dlfa", "DLFA (dev k)"), ("dlfa@best_k", "DLFA best k (oracle)"))


def _fusion_files(paths) -> list[Path]:
    if isinstance(paths, (str, Path)):
        paths = [paths]
    out = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            if (p / "fusion.json").is_file():
                out.append(p / "fusion.json")
            else:
                out += sorted(p.glob("*/fusion.json"))
        elif p.is_file():
            out.append(p)
    return out


def summary_table(paths) -> dict:
    """Rows of the cross-task summary from ``fusion.json`` files (or folders holding them).

    Returns ``{"tasks": [...], "rows": {method: {task: {"mean", "std", "langs", "at_chance",
    ...}}}, "reference": {task: {"majority", "chance"} or None}, ...}`` where each cell
    averages, over the task's target languages, the seed-mean score (``mean``) and the seed
    std (``std``) of that method; ``at_chance`` is True when the method is at chance in any
    of the languages, None when the file predates reference rates (then nothing can be
    called best). The last task file found wins for a task.
    """
    reports = {}
    for f in _fusion_files(paths):
        try:
            rep = json.loads(f.read_text())
        except (OSError, ValueError) as e:
            raise ProbeError(f"{f}: unreadable fusion.json ({e})") from None
        if rep.get("kind") != "probe.fusion":
            continue
        reports[rep["task"]] = rep
    if not reports:
        raise ProbeError("no fusion.json found in " + ", ".join(map(str, paths if isinstance(
            paths, (list, tuple)) else [paths])))
    tasks = [t for t in TASK_ORDER if t in reports] + sorted(set(reports) - set(TASK_ORDER))
    rows: dict = {}
    for method, _label in SUMMARY_ROWS:
        for t in tasks:
            rep = reports[t]
            cells = [rep["comparison"][l].get(method) for l in rep["langs"]]
            cells = [c for c in cells if c]
            if not cells:
                continue
            flags = [c.get("at_chance") for c in cells]
            rows.setdefault(method, {})[t] = {
                "mean": float(np.mean([c["mean"] for c in cells])),
                "std": float(np.mean([c["std"] for c in cells])),
                "gain": float(np.mean([c["gain_vs_last"]["mean"] for c in cells])),
                "at_chance": None if any(f is None for f in flags) else any(flags),
                "n_seeds": rep.get("n_seeds", len(rep["seeds"]["train"])),
                "langs": rep["langs"], "k": sorted({c.get("k") for c in cells if c.get("k") is not None})}
    reference = {}
    for t in tasks:
        refs = [reports[t].get("reference", {}).get(l) for l in reports[t]["langs"]]
        reference[t] = None if not all(refs) else {
            "majority": float(np.mean([x["majority"] for x in refs])),
            "chance": float(np.mean([x["chance"] for x in refs]))}
    first = reports[tasks[0]]
    return {"tasks": tasks, "rows": rows, "reference": reference,
            "n_seeds": {t: reports[t].get("n_seeds", len(reports[t]["seeds"]["train"])) for t in tasks},
            "metrics": {t: reports[t]["task_info"]["metric"] for t in tasks},
            "langs": {t: reports[t]["langs"] for t in tasks},
            "models": sorted({reports[t]["model"]["name"] for t in tasks}),
            "precision": {t: reports[t].get("precision") for t in tasks},
            "model": first["model"], "versions": first["versions"],
            "seeds": sorted({s for t in tasks for s in reports[t]["seeds"]["train"]})}


def summary_highlight(table: dict) -> dict:
    """``{task: method or None}``: the cell :func:`summary_figure` may bold per task.

    The best mean among the non-oracle methods that are *not* at chance
    (:func:`probe.stats.best_above_chance`); None when every method is at chance or the
    task's file predates reference rates (``at_chance`` None counts as at chance).
    """
    from ..stats import best_above_chance

    out = {}
    for t in table["tasks"]:
        cand = [(m, row[t]) for m, row in table["rows"].items()
                if t in row and m != "dlfa@best_k"]
        i = best_above_chance([c["mean"] for _m, c in cand],
                              [c["at_chance"] is not False for _m, c in cand])
        out[t] = None if i is None else cand[i][0]
    return out
