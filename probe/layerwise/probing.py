"""The word-level probes of ``layers``: labels of a probe task, the task probe and its control
probe fitted on English (weights stored in the cache), their evaluation on one entry at one
layer (with per-sentence counts), and the language-identity probe.

The memo keys of these results hash the source of the code listed by :func:`probe_code`
(:func:`probe.cache.code_version`): an edit to any of it recomputes them.
"""
from __future__ import annotations

import hashlib
import json

import numpy as np

from ..cache import source_file
from ..tasks import PROBE_TASKS
from ..tasks import UPOS_TAGS as _UD_TAGS

TASKS = tuple(PROBE_TASKS)  # ("pos", "deprel", "langid"); "upos" is accepted for "pos"
UPOS_TAGS = list(_UD_TAGS)  # the POS probe's labels, also read from here (notebook, benchmarks)
SOURCE_LANG = "en"


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


def sentence_ids(entry) -> np.ndarray:
    return np.repeat(np.arange(entry.n_sentences), np.diff(entry.offsets))


def _probe_vocab(task, train) -> list[str]:
    """The label list of probe task ``task``: fixed (``pos``) or the training entry's own
    (``deprel``, universal relations)."""
    t = PROBE_TASKS[task]
    return list(t.labels) if t.labels else sorted(set(_universal(train.vocab(t.column))))


def probe_code() -> tuple:
    """The code a fitted probe and its evaluation depend on (keys of their memoised results)."""
    return (fit_probes, _label_ids, _probe_vocab, _universal, sentence_ids, split_counts,
            source_file("probes"), source_file("stats"), repr(list(PROBE_TASKS.values())))


_PROBE_STATE = ("classes_", "coef_", "intercept_", "mean_", "scale_", "n_iter_", "n_features_in_")


def fit_probes(task, train, layer, seed, probe_kw):
    """The task probe and its control-task probe at ``layer``, fitted on ``train``.

    Fitted weights are stored in the cache (keyed by the training entry, task, layer, seed
    and probe settings), so evaluating a new language, a perturbed text or a new model's
    comparison later never refits a probe.
    """
    from ..cache import atomic_save_npy, cache_dir
    from ..probes import ControlTask, LinearProbe

    vocab = _probe_vocab(task, train)
    y_train = _label_ids(train, task, vocab)
    keep = y_train >= 0
    words_train = np.asarray(train.flat_words, dtype=object)[keep]
    control = ControlTask(seed=seed).fit(words_train, y_train[keep])
    from ..cache import code_version

    fields = json.dumps({"train": train.meta["key"], "task": task, "layer": layer, "seed": seed,
                         "probe": probe_kw, "code": code_version(*probe_code())},
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


def probe_eval(fitted, task, entry, layer, seed, n_boot, control: bool = False) -> dict:
    """Evaluate a fitted probe (or its control) on one entry at ``layer``.

    Besides :func:`probe.probes.evaluate`'s numbers, keeps per-sentence ``correct`` and
    ``total`` word counts, which paired bootstraps (layer vs layer, model vs model,
    clean vs perturbed) resample.
    """
    from ..probes import evaluate

    vocab, probe, ctrl, ctrl_probe = fitted
    y = _label_ids(entry, task, vocab)
    ok = y >= 0
    X = np.asarray(entry.layer(layer), dtype=np.float32)[ok]
    sid = sentence_ids(entry)[ok]
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


def split_counts(res: dict) -> tuple[dict, np.ndarray]:
    """``res`` without its per-sentence counts, and the counts as ``[n_sentences, 2]``."""
    ps = res.get("per_sentence")
    rest = {k: v for k, v in res.items() if k != "per_sentence"}
    counts = np.stack([ps["correct"], ps["total"]], axis=1) if ps else None
    return rest, counts


def langid_probe(pud: dict, layer: int, seed: int, n_boot: int, probe_kw, holdout=0.2):
    """Language identity of PUD words; train/test split by sentence (same split everywhere)."""
    from ..probes import LinearProbe, evaluate

    langs = list(pud)
    n = min(e.n_sentences for e in pud.values())
    rng = np.random.default_rng(seed)
    test_sent = np.zeros(n, dtype=bool)
    test_sent[rng.permutation(n)[: int(round(holdout * n))]] = True
    Xtr, ytr, Xte, yte, ste = [], [], [], [], []
    for k, lang in enumerate(langs):
        e = pud[lang]
        sid = sentence_ids(e)
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
