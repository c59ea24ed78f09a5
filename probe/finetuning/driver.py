"""The run function :func:`finetune` (``probe finetune``): argument checks, data loading,
the loop over fusion settings and seeds with run records and checkpoints under ``<out>/runs``
(a finished run is read back, an interrupted one resumes), and the report.

A run's id (:func:`_run_id`) hashes the task, fusion, seed, model fingerprint, data sha256s
and the recipe (:func:`_run_params`); a running sweep finds its records by it, so neither
may drift.
"""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Callable

from ..errors import ProbeError
from ..encoders import DEFAULT_MODEL
from ..options import log_default, parse_budget, parse_seeds, parse_targets
from .encoding import encode_examples
from .evaluation import example_counts, predict, score_from_counts, target_reference
from .model import FinetuneModel, parse_fusion
from .report import build_report
from .result import FinetuneResult
from .training import Trainer, word_embeddings

SOURCE_LANG = "en"
RUN_VERSION = 1  # bump when a run's numbers would change for the same inputs
#: ``dtype`` (the toolkit's vocabulary, :data:`probe.extraction.DTYPES`) -> the value run keys
#: store under ``params["precision"]`` (the name runs were first recorded with; kept so that
#: existing run records keep their ids).
PRECISIONS = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}

#: XTREME's fine-tuning recipe, the defaults of :func:`finetune`.
RECIPE = {"lr": 2e-5, "warmup": 0.1, "batch_size": 32, "max_length": 128,
          "weight_decay": 0.0, "max_grad_norm": 1.0, "adam_eps": 1e-8,
          "adam_betas": (0.9, 0.999), "dropout": 0.1}

#: Per-task default budgets (English train / English dev / each target, in examples; None =
#: all) and epochs, sized for a CPU; pass ``max_examples=None`` etc. for the full splits.
TASK_BUDGETS = {"pos": (2000, 500, 1000), "ner": (2000, 500, 1000),
                "xnli": (2000, 500, 1000), "pawsx": (None, None, 1000)}


def _count_params(module) -> int:
    return int(sum(p.numel() for p in module.parameters()))


def _trainable_count(model, embeddings: str) -> dict:
    emb = word_embeddings(model.encoder).weight.numel()
    enc = _count_params(model.encoder)
    fusion = 0 if model.fusion is None else _count_params(model.fusion)
    head = _count_params(model.head)
    trainable = enc + fusion + head - (emb if embeddings == "freeze" else 0)
    return {"encoder": enc, "word_embeddings": emb, "fusion": fusion, "head": head,
            "trainable": trainable,
            "note": {"freeze": "word embeddings frozen",
                     "sparse": "word-embedding rows updated only when a batch uses them",
                     "full": "every parameter updated every step"}[embeddings]}


def _params_key(params: dict) -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _run_params(*, lr, warmup, batch_size, grad_accum, max_length, weight_decay, max_grad_norm,
                dropout, epochs, precision, embeddings, r, norm, eval_batch_size) -> dict:
    """The recipe part of a run's key and record. Its fields and their values are part of
    every run id (:func:`_run_id`): renaming or adding one orphans existing run records."""
    return {"lr": lr, "warmup": warmup, "batch_size": int(batch_size),
            "grad_accum": int(grad_accum), "max_length": int(max_length),
            "weight_decay": weight_decay, "max_grad_norm": max_grad_norm,
            "dropout": dropout, "epochs": int(epochs), "precision": precision,
            "embeddings": embeddings, "r": int(r), "norm": norm,
            "adam_betas": list(RECIPE["adam_betas"]), "adam_eps": RECIPE["adam_eps"],
            "optimizer": "AdamW", "schedule": "linear with warm-up",
            "eval_batch_size": int(eval_batch_size)}


def _run_id(task: str, fusion: str, seed: int, fingerprint: str, data: dict, params: dict) -> str:
    """File stem of one (fusion, seed) run's record and checkpoint under ``<out>/runs``:
    ``data`` maps each role (``train``, ``dev``, ``target:<lang>``) to its corpus sha256."""
    key = {"task": task, "fusion": fusion, "seed": seed, "model": fingerprint,
           "data": data, "params": params, "run_version": RUN_VERSION}
    return f"{fusion.replace(':', '')}-s{seed}-{_params_key(key)}"


def _precision_of(dtype: str | None, precision: str | None) -> str:
    """The internal precision (``fp32|bf16|fp16``) of ``dtype`` (``float32|bfloat16|float16``,
    default float32) or of the deprecated ``precision`` alias."""
    if dtype is not None and dtype not in PRECISIONS:
        raise ProbeError(f"dtype must be float32, bfloat16 or float16, got {dtype!r}")
    if precision is None:
        return PRECISIONS[dtype or "float32"]
    import warnings

    warnings.warn("precision= is deprecated; use dtype='float32'|'bfloat16'|'float16'",
                  DeprecationWarning, stacklevel=3)
    if precision not in PRECISIONS.values():
        raise ProbeError(f"precision must be fp32, bf16 or fp16, got {precision!r} "
                         f"(deprecated: use dtype float32, bfloat16 or float16)")
    if dtype is not None and PRECISIONS[dtype] != precision:
        raise ProbeError(f"dtype={dtype!r} and precision={precision!r} disagree; give dtype only")
    return precision


def finetune(task: str, langs, model=DEFAULT_MODEL, fusion="none", seeds=1,
             max_examples="auto", max_dev="auto", max_test="auto", epochs: int = 3,
             lr: float = RECIPE["lr"], warmup: float = RECIPE["warmup"],
             batch_size: int = RECIPE["batch_size"], max_length: int = RECIPE["max_length"],
             weight_decay: float = RECIPE["weight_decay"],
             max_grad_norm: float = RECIPE["max_grad_norm"], dropout: float = RECIPE["dropout"],
             grad_accum: int = 1, dtype: str | None = None, embeddings: str = "sparse",
             r: int = 4, norm: str = "layer", eval_batch_size: int = 64, data_seed: int = 0,
             n_boot: int = 1000, n_threads: int | None = None, device: str | None = None,
             out: str | Path | None = None, save_model: str | Path | None = None,
             keep_checkpoints: bool = False, encoder=None, progress: bool = True,
             log: Callable[[str], None] | None = None,
             precision: str | None = None) -> "FinetuneResult":
    """Fine-tune ``model`` end to end on English ``task`` and evaluate zero-shot on ``langs``.

    Parameters
    ----------
    task : ``pos``, ``ner``, ``xnli`` or ``pawsx``.
    langs : target languages (``"de,zh"`` or a list).
    model : encoder name (default ``auto``: mBERT if loadable, else ``e5-small-q4``; a Hugging Face
        id, a local HF directory, ...) or an EncoderSpec.
    fusion : ``"none"``, ``"dlfa:K"``, ``"dlfa:all"``, ``"dlfa-fixed:K"``,
        ``"dlfa-matched:K"`` or a comma list.
    seeds : number of seeds (0..n-1) or a list.
    max_examples, max_dev, max_test : seeded subsamples (``data_seed``) of English train,
        English dev and each target; None = whole split; ``"auto"`` = :data:`TASK_BUDGETS`.
    epochs, lr, warmup (fraction of steps), batch_size, max_length, weight_decay,
    max_grad_norm, dropout : the recipe (XTREME's defaults, :data:`RECIPE`).
    grad_accum : micro-batches per optimiser step (``batch_size`` must be a multiple).
    dtype : ``float32`` (default), ``bfloat16`` or ``float16``: autocast precision of forward
        and backward (float16 adds a gradient scaler on CUDA); as ``--dtype`` elsewhere.
    embeddings : ``sparse`` (update used rows only), ``freeze`` or ``full`` (dense AdamW).
    r, norm : the DLFA block's bottleneck ratio and normalisation (:class:`probe.fusion.AIF`).
    out : folder for run records and checkpoints (``runs/``); default ``out/finetune/<task>``.
    save_model : write the fine-tuned encoder(s) here as Hugging Face model directories
        (one run: the folder itself; several: ``<dir>/<fusion>-seed<s>``).
    keep_checkpoints : keep each run's last checkpoint after it finished (default: remove).
    encoder : an already loaded :class:`probe.encoders.Encoder` of ``model``.
    precision : deprecated alias of ``dtype`` (``fp32``, ``bf16``, ``fp16``).
    """
    import torch

    from ..data import get_corpus
    from ..data.xtreme import corpus_name, source_overlap, subsample_split, task_def
    from ..encoders import EncoderSpec, pick_device, resolve_encoder
    from ..layerwise import versions
    from ..threads import torch_threads

    t_start = time.time()
    log = log or (log_default if progress else (lambda msg: None))
    td = task_def(task)
    cdef = get_corpus(corpus_name(task))
    targets = parse_targets(langs, task)  # as probe fuse (in order, no repeats, checked)
    seed_list = parse_seeds(seeds)
    if epochs < 1:
        raise ProbeError(f"epochs must be >= 1, got {epochs}")
    precision = _precision_of(dtype, precision)
    dtype = {v: k for k, v in PRECISIONS.items()}[precision]
    if embeddings not in ("sparse", "freeze", "full"):
        raise ProbeError(f"embeddings must be sparse, freeze or full, got {embeddings!r}")
    if not 0 <= warmup < 1:
        raise ProbeError(f"warmup is a fraction of the steps in [0, 1), got {warmup}")
    spec = model if isinstance(model, EncoderSpec) else resolve_encoder(model)
    device = pick_device(device)
    b_train, b_dev, b_test = TASK_BUDGETS[task]
    n_train, n_dev, n_test = (parse_budget(v, d, name) for v, d, name in (
        (max_examples, b_train, "max_examples"), (max_dev, b_dev, "max_dev"),
        (max_test, b_test, "max_test")))
    out_dir = Path(out or Path("out") / "finetune" / task)

    from ..transfer import target_split_of  # the fuse harness's choice: test, else dev

    target_split = {lang: target_split_of(task, lang) for lang in targets}
    wanted = [("train", SOURCE_LANG, subsample_split("train", n_train, data_seed)),
              ("dev", SOURCE_LANG, subsample_split("dev", n_dev, data_seed))]
    wanted += [(f"target:{l}", l, subsample_split(target_split[l], n_test, data_seed))
               for l in targets]
    corpora = {role: cdef.load(lang, split, progress=progress) for role, lang, split in wanted}
    # PAWS-X target pairs that are (translations of) English training/selection pairs are left
    # out of every score, as in probe fuse; runs still predict them, so run keys and records
    # do not depend on the rule
    overlap = {l: source_overlap(corpora[f"target:{l}"]) for l in targets}
    for l, mask in overlap.items():
        if len(mask) and mask.all():
            raise ProbeError(
                f"{task} {l} {corpora[f'target:{l}'].split}: all {len(mask)} target pairs are "
                f"translations of the English training or selection pairs (the same PAWS-X ids), "
                f"so nothing is left to evaluate; use a language with a test file (de, zh)")
    keep = {l: ~mask for l, mask in overlap.items()}

    with torch_threads(n_threads):
        enc_obj = encoder or spec.load()
        base_model = enc_obj.model
        tok = enc_obj.tokenizer
        L = int(base_model.config.num_hidden_layers)
        specs = parse_fusion(fusion, L)
        use_types = int(getattr(base_model.config, "type_vocab_size", 1) or 1) >= 2
        pad_id = tok.pad_token_id if tok.pad_token_id is not None else 0
        label_names = list(td.labels)
        t0 = time.perf_counter()
        encoded = {role: encode_examples(tok, c.sentences, td.kind, label_names, max_length,
                                         segment_ids=use_types) for role, c in corpora.items()}
        encode_s = time.perf_counter() - t0
        rates = {l: target_reference(encoded["train"], encoded[f"target:{l}"], keep[l],
                                     td.metric, label_names) for l in targets}
        params = _run_params(lr=lr, warmup=warmup, batch_size=batch_size, grad_accum=grad_accum,
                             max_length=max_length, weight_decay=weight_decay,
                             max_grad_norm=max_grad_norm, dropout=dropout, epochs=epochs,
                             precision=precision, embeddings=embeddings, r=r, norm=norm,
                             eval_batch_size=eval_batch_size)
        data_key = {role: c.sha256 for role, c in corpora.items()}
        init_state = {k: v.detach().clone() for k, v in base_model.state_dict().items()}
        base_emb = word_embeddings(base_model).weight.detach().clone()
        runs = {}
        for fs in specs:
            for seed in seed_list:
                run_id = _run_id(task, fs.name, seed, spec.fingerprint, data_key, params)
                rec_path = out_dir / "runs" / f"{run_id}.json"
                if rec_path.is_file() and not save_model:
                    runs[(fs.name, seed)] = json.loads(rec_path.read_text())
                    log(f"{fs.name} seed {seed}: finished before, read {rec_path}")
                    continue
                log(f"{fs.name} seed {seed}: fine-tuning on {len(encoded['train'])} English "
                    f"examples, {epochs} epoch(s)")
                base_model.load_state_dict(init_state)
                torch.manual_seed(seed)
                net = FinetuneModel(base_model, td.kind, len(label_names), fs, dropout=dropout,
                                    r=r, norm=norm, use_token_types=use_types).to(device)
                trainer = Trainer(net, encoded["train"], encoded["dev"], kind=td.kind,
                                  metric=td.metric, label_names=label_names, params=params,
                                  seed=seed, pad_id=pad_id, device=device,
                                  ckpt_path=out_dir / "runs" / f"{run_id}.ckpt", log=log)
                t_fit = time.perf_counter()
                fit = trainer.fit(base_emb=base_emb)
                fit_s = time.perf_counter() - t_fit
                t_ev = time.perf_counter()
                rec = {"fusion": fs.name, "seed": seed, **fit,
                       "fit_seconds": round(fit_s, 2),
                       "parameters": _trainable_count(net, embeddings), "targets": {}}
                for l in targets:
                    e = encoded[f"target:{l}"]
                    pred = predict(net, e, pad_id, device, eval_batch_size, trainer.autocast)
                    counts = example_counts(e, pred, td.metric, label_names)
                    rec["targets"][l] = {"score": score_from_counts(counts.sum(0), td.metric),
                                         "counts": counts.T.tolist()}
                rec["eval_seconds"] = round(time.perf_counter() - t_ev, 2)
                if save_model:
                    dest = Path(save_model)
                    if len(specs) * len(seed_list) > 1:
                        dest = dest / f"{fs.name.replace(':', '')}-seed{seed}"
                    _save_encoder(net.encoder, tok, dest, {
                        "base_model": spec.name, "base_fingerprint": spec.fingerprint,
                        "task": task, "fusion": fs.name, "seed": seed, "params": params,
                        "best_epoch": fit["best_epoch"], "english_dev": fit["dev_score"]})
                    rec["saved_model"] = str(dest)
                    log(f"  wrote the fine-tuned encoder to {dest}")
                from ..files import atomic_write_json

                rec_path.parent.mkdir(parents=True, exist_ok=True)
                atomic_write_json(rec_path, rec)
                if not keep_checkpoints:
                    trainer.ckpt_path.unlink(missing_ok=True)
                runs[(fs.name, seed)] = rec
                word_embeddings(base_model).sparse = False
        base_model.load_state_dict(init_state)
        word_embeddings(base_model).weight.requires_grad_(True)

    report = build_report(task=task, td=td, spec=spec, L=L, specs=specs, seeds=seed_list,
                           targets=targets, target_split=target_split, corpora=corpora,
                           encoded=encoded, rates=rates, runs=runs, params=params,
                           n_boot=n_boot, use_types=use_types, device=device, keep=keep,
                           dtype=dtype)
    report["versions"] = versions()
    report["timings_s"] = {"total": round(time.time() - t_start, 1),
                           "tokenize": round(encode_s, 2)}
    return FinetuneResult(report)


def _save_encoder(encoder, tokenizer, dest: Path, record: dict) -> None:
    """A Hugging Face model directory (config, safetensors, tokenizer) + how it was made."""
    from ..files import atomic_write_json
    from ..loading import quiet_loading

    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    emb = word_embeddings(encoder)
    emb.sparse = False
    with quiet_loading():  # transformers' "Writing model shards" bar ignores progress=False
        encoder.save_pretrained(dest, safe_serialization=True)
        tokenizer.save_pretrained(dest)
    atomic_write_json(dest / "probe_finetune.json", record, default=str)
