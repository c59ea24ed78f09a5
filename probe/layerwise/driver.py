"""The run function of ``probe layers``: :func:`layers` checks its arguments
(:func:`check_targets`, :func:`parse_train`, :func:`select_layers`, :func:`parse_tasks`), opens or
extracts the cache entries, runs the memoised probes, similarity and noise summaries per layer,
and builds the report of a :class:`~probe.layerwise.result.LayerResult`.
"""
from __future__ import annotations

import sys
import time
from typing import Sequence

import numpy as np

from ..encoders import DEFAULT_MODEL
from ..errors import ProbeError
from ..tasks import PROBE_TASKS
from .crosslingual import similarity_curves
from .entries import ensure_entries, perturbed_entries
from .noise import CKA_GROUPS, count_difference, difference_row, jackknife_noise_summary, memo_noise
from .probing import (SOURCE_LANG, TASKS, fit_probes, langid_probe, probe_code, probe_eval, sentence_ids,
                      split_counts)
from .provenance import entry_record, versions
from .result import LayerResult


def check_targets(langs: Sequence[str]) -> list[str]:
    """Target language codes (no duplicates) that have a PUD treebank; one clear error otherwise."""
    from ..data import languages_with
    from ..languages import get_language

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


def parse_tasks(tasks) -> list[str]:
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



def layers(langs: Sequence[str] | str, model: str = DEFAULT_MODEL, tasks: Sequence[str] = TASKS, *,
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
    from ..encoders import resolve_encoder
    from ..extraction import precision_record
    from ..data.tatoeba import tatoeba_code
    from ..perturb import parse_perturbations
    from ..stats import jackknife_difference

    t0 = time.time()
    log = log or (lambda msg: print(msg, file=sys.stderr))
    precision = precision_record(device, dtype)  # a bad dtype or device fails here, before any work
    tasks = parse_tasks(tasks)
    targets = check_targets(langs)
    perturbations = parse_perturbations(perturb, seed=seed) if perturb else []
    from ..alignment import check_input
    from ..sentences import SentenceVectors, describe

    check_input(input)
    if perturb and sentence in ("mean-pieces", "native"):
        raise ProbeError(f"--perturb with --sentence {sentence} is not supported yet (perturbed text has no "
                         "stored corpus to re-encode); use --sentence mean-words or first")
    spec = resolve_encoder(model) if isinstance(model, str) else model
    sent = SentenceVectors(spec, sentence, device=precision["device"], dtype=dtype, progress=progress)
    wanted = [(train[0], SOURCE_LANG, train[1], pooling)]
    wanted += [("pud", lang, "test", pooling) for lang in [SOURCE_LANG] + targets]
    tat_langs = [l for l in targets if tatoeba and tatoeba_code(l)]
    for lang in tat_langs:
        # Tatoeba has no gold word segmentation (whitespace tokens; a Chinese sentence is one
        # token), so its words are mean-pooled over all their pieces.
        wanted += [("tatoeba", lang, "xx", "mean"), ("tatoeba", lang, "eng", "mean")]
    entries = ensure_entries(spec, wanted, progress=progress, device=device, input=input, dtype=dtype)
    train_entry = entries[0]
    pud = dict(zip([SOURCE_LANG] + targets, entries[1:2 + len(targets)]))
    tat = {lang: (entries[2 + len(targets) + 2 * i], entries[3 + len(targets) + 2 * i])
           for i, lang in enumerate(tat_langs)}
    perturbed = perturbed_entries(spec, targets, perturbations, pooling, pud, progress, device, log, input,
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

    from ..cache import code_version, memoized

    base = {"train": train_entry.meta["key"], "seed": seed, "n_boot": n_boot, "probe": probe_kw}
    # memoised results are keyed on the source of the code computing them (never stale)
    eval_code = code_version(probe_eval, *probe_code())
    langid_code = code_version(langid_probe, sentence_ids, *probe_code())
    pud_keys = {k: v.meta["key"] for k, v in pud.items()}
    for layer in tqdm(layer_ids, desc="probing layers", unit="layer", disable=not progress,
                      file=sys.stderr):
        for task in probe_tasks:
            fitted = []  # fitted lazily: only when some evaluation is not memoised

            def get_fit():
                if not fitted:
                    fitted.append(fit_probes(task, train_entry, layer, seed, probe_kw))
                return fitted[0]

            jobs = [(name, e, False) for name, e in evals.items()] + [("control_en", pud[SOURCE_LANG], True)]
            for name, entry, is_control in jobs:
                res = memoized("probe-eval", {**base, "task": task, "layer": layer,
                                              "eval": entry.meta["key"], "control": is_control},
                               lambda: probe_eval(get_fit(), task, entry, layer, seed, n_boot, is_control),
                               code=eval_code)
                res, c = split_counts(res)
                counts[task][name].append(c)
                (pert_probes[task] if "~" in name else probes[task])[name].append(res)
        if "langid" in tasks:
            langid_rows.append(memoized("langid", {**base, "pud": pud_keys, "layer": layer},
                                        lambda: langid_probe(pud, layer, seed, n_boot, probe_kw),
                                        code=langid_code))
    for task in probes:
        probes[task]["selectivity_en"] = [a["accuracy"] - c["accuracy"] for a, c in
                                          zip(probes[task][SOURCE_LANG], probes[task]["control_en"])]
    counts = {t: {name: np.stack(v) for name, v in per.items()} for t, per in counts.items()}
    t_probe = time.time() - t0 - t_extract
    cka, cka_mat, retrieval, ret_counts, cka_reps = similarity_curves(pud, tat, targets, layer_ids, jackknife=CKA_GROUPS,
                                                                seed=seed, sent=sent)

    # -- noise: which layers are indistinguishable from each curve's best layer
    noise = {"method": "paired sentence bootstrap of value(peak layer) - value(layer), 95% CI; a "
                       "layer whose CI contains 0 is within noise of the peak",
             "n_boot": n_boot, "seed": seed, "curves": {}}
    for task in probe_tasks:
        for name in [*pud]:
            noise["curves"][f"{task} {name}" + ("" if name == SOURCE_LANG else " (zero-shot)")] = \
                memo_noise(counts[task][name], n_boot, seed, layer_ids)
    for lang in targets:
        noise["curves"][f"retrieval en-{lang}"] = memo_noise(ret_counts[lang], n_boot, seed, layer_ids)
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
                    drops = [difference_row(count_difference(counts[task][lang][l], counts[task][name][l], n_boot, seed))
                             for l in range(n)]
                    row[task] = {"accuracy": acc, "drop": drops}
                p_cka, _m, p_ret, p_counts, p_reps = similarity_curves(
                    {SOURCE_LANG: pud[SOURCE_LANG], lang: entry}, {}, [lang], layer_ids, jackknife=CKA_GROUPS,
                    seed=seed, full=False, sent=sent)
                row["cka"] = p_cka[lang]["debiased"]
                row["cka_drop"] = [difference_row(jackknife_difference(cka[lang]["debiased"][l], row["cka"][l],
                                                             cka_reps[lang][l], p_reps[lang][l]))
                                   for l in range(n)]
                row["retrieval"] = [(x["en2xx"] + x["xx2en"]) / 2 for x in p_ret["pud"][lang]["plain"]]
                row["retrieval_drop"] = [difference_row(count_difference(ret_counts[lang][l], p_counts[lang][l], n_boot, seed))
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
