""":func:`fuse`, the run function behind ``probe fuse`` (the method, its choices and its
numbers are described in :mod:`probe.transfer`): argument checks, data and cache entries
(extracted when missing), the plan of runs handed to :class:`~probe.transfer.runner.Runner`,
and the report's provenance (data, cache, seeds, versions, timings).
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Callable, Sequence

from ..errors import ProbeError
from ..encoders import DEFAULT_MODEL
from ..options import log_default, parse_budget, parse_seeds, parse_targets
from .report import build_report, oracle_k, select_k
from .result import FusionResult
from .runner import Runner
from .runs import drop_examples, reference_rates_for
from .settings import (FUSION_POOLING, METHODS, SOURCE_LANG, TASK_BUDGETS, TASK_LR,
                       TRAINING_DATA)
from .views import CachedView

__all__ = ["fuse", "target_split_of"]

# FusionClassifier settings fuse() sets itself; everything else may be passed through
_MANAGED = {"method", "k", "task", "seed", "epochs", "max_train", "max_dev", "metric",
            "label_names", "n_labels", "n_threads"}


def _parse_layers(layers, last: int | None) -> list[int] | None:
    """``"all"`` -> 0..L-1; ``"0,3,6"`` or a list -> those (checked against L when known)."""
    if layers is None or (isinstance(layers, str) and layers.strip().lower() == "all"):
        return list(range(last)) if last is not None else None
    if isinstance(layers, str):
        try:
            ks = [int(x) for x in layers.replace(",", " ").split()]
        except ValueError:
            raise ProbeError(f"--layers must be 'all' or comma-separated integers, got {layers!r}") from None
    else:
        ks = [int(x) for x in layers]
    if not ks:
        raise ProbeError("no layers given")
    if last is not None:
        bad = [k for k in ks if not 0 <= k < last]
        if bad:
            raise ProbeError(f"fused layer k must be in 0..{last - 1} (0 = embeddings; layer "
                             f"{last} is the last layer itself), got {bad}")
    return sorted(set(ks))


def _model_layers(spec) -> int | None:
    """L from the model's config.json without loading it (None if unknown)."""
    try:
        cfg = json.loads((Path(spec.source) / "config.json").read_text())
        return int(cfg["num_hidden_layers"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def target_split_of(task: str, lang: str) -> str:
    """``test`` when the language has a test file, else (not for English) ``dev``."""
    from ..data.xtreme import task_def, task_file, xtreme_root

    td = task_def(task)
    root = xtreme_root()
    try:
        task_file(root, task, td.test, lang)
        return "test"
    except ProbeError:
        if lang == SOURCE_LANG:
            raise ProbeError(f"{task} has no English test file; English dev is the model-selection "
                             f"set, so English cannot be a target here") from None
        dev_file = td.dev[0]
        try:
            task_file(root, task, dev_file, lang)
        except ProbeError:
            raise ProbeError(f"{task} has neither a test nor a dev file for {lang} under "
                             f"{root / td.folder}") from None
        return "dev"


def _cpu_seconds() -> float:
    """User + system CPU time of this process and its reaped children."""
    import resource

    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def _entry_info(entry, corpus, role: str) -> dict:
    from ..layerwise import entry_record

    rec = entry_record(entry)
    rec["role"] = role
    rec["disk_bytes"] = int(entry.disk_bytes)
    rec["subsample"] = getattr(corpus, "subsample", None)
    rec["extraction_seconds"] = entry.meta.get("extractor", {}).get("seconds")
    return rec


# ----------------------------------------------------------------------------- API


def fuse(task: str, langs: Sequence[str] | str, model=DEFAULT_MODEL, layers="all", seeds=3,
         methods: Sequence[str] = METHODS, max_examples: int | None | str = "auto",
         max_dev: int | None | str = "auto", max_test: int | None | str = "auto",
         epochs: int = 3, concat: str = "best", n_jobs: int | None = None, n_boot: int = 1000,
         data_seed: int = 0, pooling: str | None = None, progress: bool = True,
         device: str | None = None, encoder=None, log: Callable[[str], None] | None = None,
         dtype: str = "float32", **fusion_kw) -> "FusionResult":
    """Zero-shot transfer sweep of DLFA and its baselines for one XTREME task.

    Parameters
    ----------
    task : ``pos``, ``ner``, ``xnli`` or ``pawsx``.
    langs : target languages (``"de,zh"`` or a list); each needs a test (or dev) file.
    model : encoder name (default ``auto``, as every command) or :class:`~probe.encoders.EncoderSpec` (frozen; see
        :mod:`probe.transfer`).
    layers : the fused layers k of DLFA/layer/concat: ``"all"`` (0..L-1), ``"0,3,6"`` or a list.
    seeds : number of training seeds (0..n-1) or an explicit list.
    methods : any of :data:`METHODS`; ``last`` is always run (every gain is against it).
    max_examples, max_dev, max_test : seeded subsample sizes of English train, English dev
        and each target; None = the whole split, ``"auto"`` = the task's
        :data:`TASK_BUDGETS` entry.
    epochs : training epochs of every run (the epoch with the best English-dev score is kept).
    concat : ``"best"`` (concat and the ``dlfa-fixed`` control at the dev-selected and
        per-language best DLFA k) or ``"all"`` (both at every k).
    n_jobs : parallel training processes (default ``min(2, cpu count)``), one thread each.
    n_boot : bootstrap replicates for the 95% intervals.
    data_seed : seed of the data subsamples (the training seeds are ``seeds``).
    pooling : subword pooling for the cache (default: ``first`` for token tasks, ``mean``
        for pair tasks).
    device : extraction device (default: automatic).
    dtype : precision of the extraction's forward pass: ``float32`` (default, every device),
        ``bfloat16`` or ``float16`` (under autocast). It selects the cache entries (and so the
        memoised runs, keyed by their entries) and, with the device type, is recorded in
        ``report["precision"]``, the table header and the figures.
    encoder : an already loaded :class:`~probe.encoders.Encoder` of ``model``, used for
        any extraction instead of loading the model again.
    log : stage messages (default: stderr when ``progress``).
    **fusion_kw : further :class:`probe.fusion.FusionClassifier` settings (``lr``, default
        :data:`TASK_LR`; ``batch_size``, ``dropout``, ``r``, ``norm``, ...), shared by every
        method.

    Returns a :class:`FusionResult`; ``result.report`` holds every number with the model,
    data files and sha256, seeds, versions and timings that produced it.
    """
    from ..cache import human_bytes, open_entry
    from ..data import get_corpus
    from ..data.xtreme import corpus_name, subsample_split, task_def
    from ..encoders import resolve_encoder
    from ..extraction import POOLINGS, cache_key, extract_corpus, precision_record
    from ..fusion import FusionClassifier
    from ..layerwise import versions

    precision = precision_record(device, dtype)  # a bad dtype or device: one error, before any work
    t_start = time.time()
    cpu_start = _cpu_seconds()
    log = log or (log_default if progress else (lambda msg: None))
    from ..tasks import task_name

    task = task_name(task)  # "upos" is accepted for "pos" (one vocabulary with probe.layers)
    td = task_def(task)
    targets = parse_targets(langs, task)
    seed_list = parse_seeds(seeds)
    methods = [m.strip() for m in (methods.split(",") if isinstance(methods, str) else methods)]
    bad = [m for m in methods if m not in METHODS]
    if bad:
        raise ProbeError(f"unknown method(s) {', '.join(bad)}; choose from {', '.join(METHODS)}")
    methods = ["last"] + [m for m in METHODS if m in methods and m != "last"]
    if concat not in ("best", "all"):
        raise ProbeError(f"concat must be 'best' or 'all', got {concat!r}")
    if epochs < 1:
        raise ProbeError(f"epochs must be >= 1, got {epochs}")
    managed = sorted(set(fusion_kw) & _MANAGED)
    if managed:
        raise ProbeError(f"fuse() sets {', '.join(managed)} itself")
    valid = set(FusionClassifier().get_params())
    unknown = sorted(set(fusion_kw) - valid)
    if unknown:
        raise ProbeError(f"unknown FusionClassifier setting(s): {', '.join(unknown)}")
    params = {**{k: v for k, v in FusionClassifier().get_params().items() if k not in _MANAGED},
              "lr": TASK_LR[td.kind], "epochs": int(epochs), **fusion_kw}
    pooling = pooling or FUSION_POOLING[td.kind]
    if pooling not in POOLINGS:
        raise ProbeError(f"unknown pooling {pooling!r}; choose from {', '.join(POOLINGS)}")
    budget = TASK_BUDGETS[task]
    n_train, n_dev, n_test = (parse_budget(v, default, name) for v, default, name in (
        (max_examples, budget.train, "max_examples"), (max_dev, budget.dev, "max_dev"),
        (max_test, budget.test, "max_test")))
    if n_jobs is None:
        n_jobs = min(2, os.cpu_count() or 1)
    n_jobs = max(1, int(n_jobs))

    spec = resolve_encoder(model) if isinstance(model, str) else model
    if encoder is not None and encoder.fingerprint != spec.fingerprint:
        raise ProbeError(f"the encoder given is {encoder.name}, not the model {spec.name}")
    L_hint = _model_layers(spec)
    if L_hint is not None:
        _parse_layers(layers, L_hint)  # fail before any extraction
    else:
        _parse_layers(layers, None)

    # ------------------------------------------------------------------ data + cache
    cdef = get_corpus(corpus_name(task))
    target_split = {lang: target_split_of(task, lang) for lang in targets}
    wanted = [("train", SOURCE_LANG, subsample_split("train", n_train, data_seed)),
              ("dev", SOURCE_LANG, subsample_split("dev", n_dev, data_seed))]
    wanted += [(f"target:{lang}", lang, subsample_split(target_split[lang], n_test, data_seed))
               for lang in targets]
    log(f"fuse {task}: loading data ({', '.join(f'{lang} {s}' for _, lang, s in wanted)})")
    corpora = {role: cdef.load(lang, split, progress=progress) for role, lang, split in wanted}
    from ..data.xtreme import source_overlap

    # target pairs that are (translations of) English training/selection pairs: dropped
    overlap = {lang: source_overlap(corpora[f"target:{lang}"]) for lang in targets}
    for lang, mask in overlap.items():
        if mask.all():
            data = corpora[f"target:{lang}"]
            raise ProbeError(
                f"{task} {lang} {data.split}: all {len(mask)} target pairs are translations of the "
                f"English training or selection pairs (the same PAWS-X ids), so nothing is left to "
                f"evaluate; use a language with a test file (de, zh)")
    keep = {lang: ~mask for lang, mask in overlap.items()}
    entries, built = {}, []
    t0 = time.time()
    cpu0 = _cpu_seconds()
    for role, data in corpora.items():
        entry = open_entry(cache_key(spec, data, pooling, device=device, dtype=dtype, encoder=encoder))
        if entry is None:
            if encoder is None:
                log(f"loading {spec.name} for extraction")
                encoder = spec.load()
            log(f"extracting {data.name}/{data.lang}/{data.split}: {len(data)} examples, "
                f"{data.n_words} words")
            entry = extract_corpus(spec, data, pooling=pooling, progress=progress,
                                   device=device, encoder=encoder, dtype=dtype)
            built.append(role)
        entries[role] = entry
    del encoder
    t_extract = time.time() - t0
    cpu_extract = _cpu_seconds() - cpu0
    L = entries["train"].last_layer
    ks = _parse_layers(layers, L)
    n_sent_target = {lang: int(keep[lang].sum()) for lang in targets}
    train_view = CachedView(entries["train"], task)
    reference = {lang: reference_rates_for(td, train_view, CachedView(entries[f"target:{lang}"], task),
                                  keep[lang]) for lang in targets}
    del train_view

    # ------------------------------------------------------------------ runs
    base_job = {
        "task": task,
        "params": params,
        "threads": 1,
        "paths": {"train": str(entries["train"].path), "dev": str(entries["dev"].path),
                  "targets": {lang: str(entries[f"target:{lang}"].path) for lang in targets}},
        "keys": {"train": entries["train"].meta["key"], "dev": entries["dev"].meta["key"],
                 "targets": {lang: entries[f"target:{lang}"].meta["key"] for lang in targets}},
    }

    def job(method, k, seed):
        return {**base_job, "method": method, "k": k, "seed": seed}

    plan = [("last", None)]
    if "dlfa" in methods:
        plan += [("dlfa", k) for k in ks]
    if "layer" in methods:
        plan += [("layer", k) for k in ks]
    if "scalarmix" in methods:
        plan.append(("scalarmix", None))
    if concat == "all":
        plan += [(m, k) for m in ("concat", "dlfa-fixed") if m in methods for k in ks]
    jobs = [job(m, k, s) for m, k in plan for s in seed_list]
    t1 = time.time()
    cpu1 = _cpu_seconds()
    log(f"training {len(jobs)} runs ({len(plan)} method/k x {len(seed_list)} seeds) on "
        f"{n_jobs} process(es)")
    with Runner(n_jobs, progress) as runner:
        results, n_computed = runner.run(jobs, f"fuse {task}")
        results = [drop_examples(r, keep, td.metric) for r in results]
        runs = dict(zip([(j["method"], j["k"], j["seed"]) for j in jobs], results))
        controls = [m for m in ("concat", "dlfa-fixed") if m in methods]
        if controls and concat == "best":
            extra = set()
            if "dlfa" in methods:
                extra.add(select_k(runs, "dlfa", ks, seed_list))
                for lang in targets:
                    extra.add(oracle_k(runs, "dlfa", ks, seed_list, lang))
            else:
                extra.add(ks[-1])
            cjobs = [job(m, k, s) for m in controls for k in sorted(extra) for s in seed_list]
            log(f"training {len(cjobs)} {' and '.join(controls)} runs at k = "
                f"{', '.join(map(str, sorted(extra)))}")
            results, n_more = runner.run(cjobs, f"fuse {task} {'+'.join(controls)}")
            results = [drop_examples(r, keep, td.metric) for r in results]
            runs.update(zip([(j["method"], j["k"], j["seed"]) for j in cjobs], results))
            n_computed += n_more
    t_train = time.time() - t1
    cpu_train = _cpu_seconds() - cpu1

    # ------------------------------------------------------------------ report
    report = build_report(
        task=task, td=td, spec=spec, L=L, hidden=entries["train"].hidden, ks=ks,
        seeds=seed_list, methods=methods, concat=concat, targets=targets,
        target_split=target_split, runs=runs, n_boot=n_boot, n_sent_target=n_sent_target,
        reference=reference)
    n_used = int(entries["train"].n_sentences)
    report["precision"] = precision
    report["training_data"] = {
        "description": TRAINING_DATA[task].format(n_used=f"{n_used:,}"),
        "n_used": n_used, "split": corpora["train"].split,
        "files": [f["relpath"] for f in corpora["train"].files]}
    report["leakage"] = {
        lang: {"n_dropped": int(overlap[lang].sum()), "n_evaluated": int(keep[lang].sum()),
               "n_loaded": int(len(keep[lang])),
               "rule": ("target pairs whose PAWS-X id (dev line) occurs in the English training "
                        "or selection share, or whose text equals such a pair, are dropped")
               if task == "pawsx" else "no shared ids between training data and targets"}
        for lang in targets}
    report["data"] = {
        "train": _entry_info(entries["train"], corpora["train"], "train (English)"),
        "dev": _entry_info(entries["dev"], corpora["dev"], "model selection (English dev)"),
        "targets": {lang: _entry_info(entries[f"target:{lang}"], corpora[f"target:{lang}"],
                                      f"zero-shot target ({target_split[lang]} split)")
                    for lang in targets},
    }
    subs = []
    for role, data in corpora.items():
        info = getattr(data, "subsample", None)
        if info and info["applied"]:
            subs.append(f"{role}: {info['n_used']} of {info['n_available']} examples "
                        f"(seed {info['seed']})")
    report["subsample_note"] = ("seeded subsamples used: " + "; ".join(subs)) if subs else \
        "no subsampling: every split was used whole"
    disk = int(sum(e.disk_bytes for e in entries.values()))
    report["cache"] = {"disk_bytes": disk, "disk_human": human_bytes(disk), "pooling": pooling,
                       "entries": {role: str(e.path) for role, e in entries.items()},
                       "built_now": built}
    report["config"].update({
        "budget": {"max_examples": n_train, "max_dev": n_dev, "max_test": n_test,
                   "task_default": TASK_BUDGETS[task].__dict__},
        "classifier": {**params, "n_labels": len(td.labels), "metric": td.metric,
                       "max_train": None, "max_dev": None, "n_threads": 1},
        "n_jobs": n_jobs, "pooling": pooling, "dtype": dtype,
    })
    report["seeds"] = {"train": seed_list, "data": data_seed, "bootstrap": 0,
                       "pawsx_carve": 0}
    report["versions"] = versions()
    report["timings_s"] = {
        "extract_or_open": round(t_extract, 2),
        "extraction_per_entry": {role: entries[role].meta.get("extractor", {}).get("seconds")
                                 for role in built},
        "training": round(t_train, 2),
        "total": round(time.time() - t_start, 2),
        # CPU seconds (this process + finished worker processes) do not depend on how busy
        # the machine was, unlike the wall-clock times above
        "cpu": {"extract_or_open": round(cpu_extract, 1), "training": round(cpu_train, 1),
                "total": round(_cpu_seconds() - cpu_start, 1)},
        "runs_computed": n_computed,
        "runs_reused": len(runs) - n_computed,
    }
    return FusionResult(report)
