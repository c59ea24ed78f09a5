"""Compare encoders on one axis of relative depth: does the picture change with model size?

:func:`compare` runs the same per-layer analysis (:func:`probe.layers`) for each model,
reusing the cache, and puts every curve on **relative depth** ``layer / L`` (0 = the
embedding output, 1 = the last layer), so a 6-, 12- and 24-layer model share one figure.
For each model it reports the peak layer (absolute and relative) of cross-lingual CKA,
PUD retrieval and zero-shot POS, and the zero-shot POS gain of DLFA fusion at the layer
nearest a chosen relative depth (:func:`probe.fuse`). Differences between models are
tested on the same sentences with a paired sentence bootstrap, so the summary says when
two models' peaks (or two layers') are within noise.

>>> res = compare(["e5-small-q4", "random:e5-small-q4"], "de,zh")   # doctest: +SKIP
>>> res.table()                                        # doctest: +SKIP
>>> res.plot("compare.png")                            # doctest: +SKIP

Offline, ``e5-small-q4`` and its ``random:`` control are available; with the Hugging Face
Hub, ``bert-base-multilingual-cased``, ``xlm-roberta-base``, ``xlm-roberta-large`` and
``intfloat/multilingual-e5-{small,base,large}`` work the same way.
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from .errors import ProbeError
from .options import add_dtype_option, precision_text
from .results import ResultDisplay, SavedFiles, closed, load_counts, report_file, save_counts
from .tasks import POS, recorded_curve, recorded_task

__all__ = ["compare", "CompareResult", "relative_depth", "nearest_layer"]

#: the curves compared across models: name -> (report path, has per-sentence outcomes)
CURVES = {
    "cka": "debiased linear CKA en–xx (mean over targets)",
    "retrieval": "PUD retrieval en↔xx, accuracy@1 (pooled over targets)",
    f"{POS}_zero_shot": "zero-shot POS accuracy (pooled over target words)",
}
#: (panel title, y-axis label) of each curve in :meth:`CompareResult.plot`
_PANELS = {
    "cka": ("Cross-lingual CKA, mean over targets", "debiased linear CKA"),
    "retrieval": ("PUD retrieval en↔xx, pooled", "accuracy@1 (both directions)"),
    f"{POS}_zero_shot": ("Zero-shot POS probe, pooled", "accuracy (fraction of words)"),
}


def relative_depth(n_layers: int) -> np.ndarray:
    """``[L + 1]`` relative depths ``layer / L`` of a model whose last layer is ``L``.

    >>> relative_depth(4).tolist()
    [0.0, 0.25, 0.5, 0.75, 1.0]
    """
    if n_layers < 1:
        raise ProbeError(f"a model needs at least one transformer layer, got L = {n_layers}")
    return np.arange(n_layers + 1) / n_layers


def nearest_layer(depth: float, n_layers: int, *, fusable: bool = False) -> int:
    """The layer whose relative depth is nearest ``depth`` (ties: the lower layer);
    ``fusable`` keeps it below L (DLFA fuses a lower layer with the last one).

    >>> nearest_layer(0.5, 12), nearest_layer(0.5, 6), nearest_layer(1.0, 4, fusable=True)
    (6, 3, 3)
    """
    if not 0 <= depth <= 1:
        raise ProbeError(f"relative depth must be in [0, 1], got {depth}")
    top = n_layers - 1 if fusable else n_layers
    return int(min(range(top + 1), key=lambda l: (abs(l / n_layers - depth), l)))


def _pooled(counts: list[np.ndarray]) -> np.ndarray:
    """Per-layer counts of several targets as one curve: ``[L+1, sum of sentences, 2]``."""
    return np.concatenate(counts, axis=1)


def _curve_values(counts: np.ndarray) -> np.ndarray:
    return counts[:, :, 0].sum(1) / counts[:, :, 1].sum(1)


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

        from .layerwise import layer_ranges

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
        from .plotting import palette, show_or_save, subplots

        shown = [c for c in CURVES if all(c in self.report["peaks"][m] for m in self.models)]
        owned = ax is None
        fig, axes = subplots(ax, len(shown), figsize=(5.0 * len(shown), 3.9))
        cols = palette(len(self.models))
        for ax, curve in zip(axes, shown):
            for m, c in zip(self.report["models"], cols):
                cur = self.report["curves"][m["name"]]
                x, y = cur["relative_depth"], cur[curve]
                ax.plot(x, y, marker="o", ms=3, color=c, label=f"{m['name']} (L = {m['n_layers']})")
                pk = self.report["peaks"][m["name"]][curve]
                ax.plot([pk["relative"]], [pk["value"]], marker="*", ms=11, color=c, mec="k", mew=0.5)
                tied = [l for l in pk.get("within_noise", []) if l != pk["layer"]]
                if tied:  # the other layers within noise of the peak, ringed on the curve
                    ax.scatter([x[l] for l in tied], [y[l] for l in tied], s=70, facecolors="none",
                               edgecolors=c, linewidths=1.2, zorder=3)
            title, ylabel = _PANELS[curve]
            ax.set_title(title)
            ax.set_xlabel("relative depth (layer / L)")
            ax.set_ylabel(ylabel)
            ax.set_xlim(-0.03, 1.03)
        axes[0].legend(fontsize=8)
        if owned:
            fig.subplots_adjust(wspace=0.28)
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
        from .files import atomic_write_json

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
        from .layerwise import LayerResult

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


def _model_curves(res, langs: list[str]) -> tuple[dict, dict]:
    """Relative-depth curves of one LayerResult and their per-sentence counts (if any)."""
    r = res.report
    curves = {"layers": res.layer_ids, "relative_depth": res.relative_depth,
              "cka": list(np.mean([r["cka"][l]["debiased"] for l in langs], axis=0))}
    counts = {}
    if res.counts is not None and all(f"cka-jackknife en-{l}" in res.counts for l in langs):
        # [L+1, n_groups]: the same sentence groups for every target, so the mean pairs up
        counts["cka"] = np.mean([res.counts[f"cka-jackknife en-{l}"] for l in langs], axis=0)
    if res.counts is not None:
        counts["retrieval"] = _pooled([res.counts[f"retrieval en-{l}"] for l in langs])
        if POS in r["probes"]:
            counts[f"{POS}_zero_shot"] = _pooled([res.counts[f"{POS} {l}"] for l in langs])
    for curve, c in counts.items():
        if curve != "cka":
            curves[curve] = _curve_values(c).tolist()
    if "retrieval" not in curves:  # loaded from JSON: means over targets
        curves["retrieval"] = list(np.mean([[(x["en2xx"] + x["xx2en"]) / 2 for x in
                                             r["retrieval"]["pud"][l]["plain"]] for l in langs], axis=0))
    if f"{POS}_zero_shot" not in curves and POS in r["probes"]:
        curves[f"{POS}_zero_shot"] = list(np.mean([[x["accuracy"] for x in r["probes"][POS][l]]
                                                 for l in langs], axis=0))
    return curves, counts


def _peaks(curves: dict, counts: dict, n_layers: int, n_boot: int, seed: int) -> dict:
    from .layerwise import jackknife_noise_summary, noise_summary

    out = {}
    for curve in CURVES:
        if curve not in curves:
            continue
        values = np.asarray(curves[curve])
        if curve in counts:
            ns = (jackknife_noise_summary(values, counts[curve]) if curve == "cka"
                  else noise_summary(counts[curve], n_boot=n_boot, seed=seed))
            peak = ns["peak_layer"]
            tied = ns["within_noise_of_peak"]
            out[curve] = {"layer": peak, "relative": peak / n_layers, "value": float(values[peak]),
                          "within_noise": tied}
        else:
            peak = int(np.argmax(values))
            out[curve] = {"layer": peak, "relative": peak / n_layers, "value": float(values[peak]),
                          "note": "no interval: per-sentence outcomes not available"}
    return out


def _model_differences(names, all_counts, peaks, n_boot, seed) -> list[dict]:
    """Each pair of models: is the difference of their peak values within noise?"""
    from .stats import jackknife_difference, paired_difference_counts

    out = []
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            for curve in CURVES:
                ca, cb = all_counts[a].get(curve), all_counts[b].get(curve)
                if ca is None or cb is None:
                    continue
                la, lb = peaks[a][curve]["layer"], peaks[b][curve]["layer"]
                xa, xb = ca[la], cb[lb]
                if curve == "cka":
                    if xa.shape != xb.shape:
                        continue
                    d = jackknife_difference(peaks[a][curve]["value"], peaks[b][curve]["value"], xa, xb)
                else:
                    if xa.shape != xb.shape or not np.array_equal(xa[:, 1], xb[:, 1]):
                        continue  # different words (e.g. another pooling): not paired
                    d = paired_difference_counts(xa[:, 0], xb[:, 0], xa[:, 1], n_boot=n_boot, seed=seed)
                out.append({"curve": curve, "a": a, "b": b, "layer_a": la, "layer_b": lb,
                            "value_a": peaks[a][curve]["value"], "value_b": peaks[b][curve]["value"],
                            "difference": d.difference, "lo": d.lo, "hi": d.hi,
                            "within_noise": d.within_noise})
    return out


def compare(models: Sequence | str, langs: Sequence[str] | str, *, tasks: Sequence[str] | str = POS,
            fusion: bool = True, fusion_depth: float = 0.5, fusion_seeds: int = 2,
            fusion_examples: int | str = 1500, fusion_dev: int | str = 500, fusion_test: int | str = 500,
            fusion_epochs: int = 3, seed: int = 0, n_boot: int = 1000,
            train: tuple[str, str] = ("ud", "dev+test"), max_iter: int = 30, tatoeba: bool = False,
            progress: bool = True, device: str | None = None, log=None,
            dtype: str = "float32") -> CompareResult:
    """Run :func:`probe.layers` (and a small DLFA fusion run) for each model; compare them.

    ``models``: names (``"e5-small-q4,random:e5-small-q4"``) or
    :class:`~probe.encoders.EncoderSpec` objects; every name is resolved before any work.
    ``fusion_depth``: DLFA fuses the layer nearest this relative depth with the last one
    (POS, English → ``langs``; ``fusion_seeds`` training seeds, seeded subsamples of
    ``fusion_examples``/``fusion_dev``/``fusion_test``); ``fusion=False`` skips it.
    ``dtype``: the forward's precision for every model (float32 by default; bfloat16 or
    float16 under autocast), passed to :func:`probe.layers` and :func:`probe.fuse`; it and the
    device type are recorded in the report, the table header and the figure.
    Other arguments as in :func:`probe.layers`.
    """
    from .encoders import resolve_encoder
    from .extraction import precision_record
    from .layerwise import check_targets, layers, versions

    precision = precision_record(device, dtype)  # a bad dtype or device: one error, before any work
    t0 = time.time()
    log = log or ((lambda msg: print(msg, file=sys.stderr)) if progress else (lambda msg: None))
    if isinstance(models, str):
        models = [m.strip() for m in models.split(",") if m.strip()]
    if len(models) < 1:
        raise ProbeError("compare needs at least one model")
    specs = [resolve_encoder(m) if isinstance(m, str) else m for m in models]
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ProbeError(f"a model is listed twice: {', '.join(names)}")
    targets = check_targets(langs)
    if fusion:  # fail before any work if a target has no POS data for the fusion run
        from .data import get_corpus
        from .data.xtreme import corpus_name
        from .languages import parse_langs

        pos = get_corpus(corpus_name(POS))
        for lang in parse_langs(targets):
            pos.check(lang, "test")
    results, curves, counts, peaks, fus, infos = {}, {}, {}, {}, {}, []
    for spec in specs:
        log(f"compare: {spec.name}: per-layer analysis, English -> {', '.join(targets)}")
        res = layers(targets, model=spec, tasks=tasks, seed=seed, n_boot=n_boot, tatoeba=tatoeba,
                     train=train, max_iter=max_iter, progress=progress, device=device, log=log, dtype=dtype)
        L = res.n_layers
        results[spec.name] = res
        curves[spec.name], counts[spec.name] = _model_curves(res, targets)
        peaks[spec.name] = _peaks(curves[spec.name], counts[spec.name], L, n_boot, seed)
        infos.append({"name": spec.name, "fingerprint": spec.fingerprint, "source": spec.source,
                      "note": getattr(spec, "note", ""), "n_layers": L, "hidden": res.report["model"]["hidden"]})
        if fusion:
            from .transfer import fuse

            k = nearest_layer(fusion_depth, L, fusable=True)
            log(f"compare: {spec.name}: DLFA fusing layer {k} (relative depth {k / L:.2f}) with layer {L}")
            fr = fuse(POS, targets, model=spec, layers=[k], seeds=fusion_seeds, methods=["dlfa"],
                      max_examples=fusion_examples, max_dev=fusion_dev, max_test=fusion_test,
                      epochs=fusion_epochs, n_boot=n_boot, progress=progress, device=device, dtype=dtype)
            gain = {}
            for lang in targets:
                g = fr.report["comparison"][lang]["dlfa"]["gain_vs_last"]
                # one seed gives no gain interval (it could not cover seed variance): no claim
                ci = g["ci95"]
                gain[lang] = {"mean": g["mean"], "ci95": ci,
                              "within_noise": ci is None or bool(ci[0] <= 0 <= ci[1])}
            fus[spec.name] = {"task": POS, "k": k, "relative": k / L, "gain": gain,
                              "mean_gain": float(np.mean([g["mean"] for g in gain.values()])),
                              "all_within_noise": all(g["within_noise"] for g in gain.values()),
                              "seeds": fusion_seeds, "data": fr.report.get("data"),
                              "config": fr.report.get("config")}
    report = {
        "question": "does a different (e.g. larger) encoder move the cross-lingual peak, the structural "
                    "peak, and the fusion gain, on one axis of relative depth?",
        "layer_indexing": "0 = embedding output, L = last transformer layer; relative depth = layer / L",
        "models": infos,
        "precision": precision,
        "config": {"dtype": dtype, "langs": targets, "tasks": results[names[0]].report["config"]["tasks"],  # as recorded: "pos"
                   "train": {"corpus": train[0], "split": train[1]}, "max_iter": max_iter, "n_boot": n_boot,
                   "tatoeba": tatoeba, "fusion": fusion, "fusion_depth": fusion_depth,
                   "curves": CURVES},
        "seeds": {"probe": seed, "bootstrap": seed, "fusion": list(range(fusion_seeds)) if fusion else []},
        "versions": versions(),
        "curves": curves,
        "peaks": peaks,
        "model_differences": _model_differences(names, counts, peaks, n_boot, seed),
        "noise_method": "probes and retrieval: paired sentence bootstrap (95% CI) on the same PUD sentences; "
                        "CKA: delete-a-group jackknife over the same sentence groups (95% normal interval)",
        "timings_s": {"total": round(time.time() - t0, 2)},
    }
    if fusion:
        report["fusion"] = fus
    return CompareResult(report, results)


# ----------------------------------------------------------------------------- CLI
def add_parser(subparsers):
    p = subparsers.add_parser(
        "compare", help="compare encoders' layer trade-off on one axis of relative depth",
        description="Run the per-layer analysis (probes, CKA, retrieval) for each model and a small "
                    "DLFA fusion run, and plot them against relative depth (layer / L), so models of "
                    "different depth share a figure. Prints each model's peak layers (absolute and "
                    "relative), the layers within noise of each peak, the fusion gain, and whether the "
                    "models' differences are within noise. Layer 0 is the embedding output; layer L "
                    "is the last transformer layer.")
    p.add_argument("--models", required=True,
                   help="comma-separated encoders, e.g. e5-small-q4,random:e5-small-q4 or (with the Hub) "
                        "bert-base-multilingual-cased,xlm-roberta-base,xlm-roberta-large")
    p.add_argument("--lang", required=True, help="comma-separated target languages with a PUD treebank")
    p.add_argument("--tasks", default=POS, help=f"probe tasks (default: {POS})")
    p.add_argument("--no-fusion", action="store_true", help="skip the DLFA fusion runs")
    p.add_argument("--fusion-depth", type=float, default=0.5,
                   help="relative depth of the layer DLFA fuses with the last one (default: 0.5)")
    p.add_argument("--fusion-seeds", type=int, default=2, help="training seeds per fusion run (default: 2)")
    p.add_argument("--fusion-examples", type=int, default=1500,
                   help="seeded subsample of English POS training sentences (default: 1500)")
    p.add_argument("--tatoeba", action="store_true", help="also compute Tatoeba retrieval")
    p.add_argument("--train", default="ud:dev+test", help="English probe training data (default: ud:dev+test)")
    p.add_argument("--seed", type=int, default=0, help="seed of probes and bootstrap (default: 0)")
    p.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples (default: 1000)")
    p.add_argument("--max-iter", type=int, default=30, help="L-BFGS iterations per probe (default: 30)")
    p.add_argument("--out", default="out/compare", help="output directory (default: out/compare)")
    p.add_argument("--device", default="auto", help="cuda, mps, cpu or auto (default: auto)")
    add_dtype_option(p)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def run(args) -> int:
    from .layerwise import parse_train

    res = compare(args.models, args.lang, tasks=args.tasks, fusion=not args.no_fusion,
                  fusion_depth=args.fusion_depth, fusion_seeds=args.fusion_seeds,
                  fusion_examples=args.fusion_examples, seed=args.seed, n_boot=args.n_boot,
                  train=parse_train(args.train), max_iter=args.max_iter, tatoeba=args.tatoeba,
                  progress=not args.quiet, device=args.device, dtype=args.dtype)
    import pandas as pd

    with pd.option_context("display.width", 200, "display.max_columns", 40):
        print(f"Peak layers per model (rel = layer / L; tied layers = layers within noise of the peak; "
              f"{res.precision_line}). Layer 0 is the embedding output; layer L is the last transformer layer.")
        print(res.table().T.to_string())
    print("\nWithin noise?")
    for line in res.noise_lines():
        print("  " + line)
    paths = res.save(Path(args.out))
    print(f"wrote {len(paths)} files to {args.out}/ in {res.report['timings_s']['total']:.0f} s")
    return 0
