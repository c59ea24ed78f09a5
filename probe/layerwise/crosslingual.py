"""Cross-lingual similarity per layer: debiased linear CKA (same layer and layer x layer) and
parallel-sentence retrieval of English against each target, on PUD and Tatoeba, with
per-sentence retrieval counts and CKA jackknife replicates for the noise summaries.

Each language pair is memoised like the probes: keyed by both entries, the settings and the
source of the code that computes it.
"""
from __future__ import annotations

import numpy as np

from ..cache import source_file
from ..errors import ProbeError
from .probing import SOURCE_LANG


def aligned_rows(a, b) -> tuple[np.ndarray, np.ndarray]:
    """Row indices pairing two PUD entries by sent_id (identical order in practice)."""
    ia, ib = a.sent_ids, b.sent_ids
    if ia == ib:
        idx = np.arange(len(ia))
        return idx, idx
    pos = {s: i for i, s in enumerate(ib)}
    pairs = [(i, pos[s]) for i, s in enumerate(ia) if s in pos]
    if not pairs:
        raise ProbeError(f"{a.path} and {b.path} share no sent_id")
    pa, pb = zip(*pairs)
    return np.asarray(pa), np.asarray(pb)


def similarity_curves(pud: dict, tatoeba: dict, targets, layer_ids, en_key: str = SOURCE_LANG, *,
                jackknife: int = 0, seed: int = 0, full: bool = True, sent=None):
    """CKA, CKA matrices and retrieval of English vs each target; also per-sentence retrieval
    counts ``{lang: [n_layers, n_sentences, 2]}`` (hits in both directions, out of 2) and, with
    ``jackknife=g``, delete-a-group CKA replicates ``{lang: [n_layers, g]}`` (same groups
    everywhere); one row per layer of ``layer_ids`` (an int ``L`` means layers ``0..L``).
    ``full=False`` computes only same-layer debiased CKA and plain retrieval (no layer × layer
    matrix, biased CKA or mean-centred retrieval): what the robustness comparison reads.

    Each language pair is memoised in the cache like the probes (keyed by both entries, the
    settings and the source of the code that computes it). ``sent(entry, layer)``: the sentence
    vectors (default: mean of the word vectors); its ``definition`` is part of the key."""
    from ..cache import code_version, memoized

    similarity = source_file("similarity")
    layer_ids = list(range(layer_ids + 1)) if isinstance(layer_ids, (int, np.integer)) else list(layer_ids)
    sent = sent or _mean_words
    definition = getattr(sent, "definition", "mean-words")
    en = pud[en_key]
    pair_code = code_version(_similarity_pair, aligned_rows, _ret, similarity)
    cka, cka_mat, ret, counts, reps = {}, {}, {}, {}, {}
    for lang in targets:
        xx = pud[lang]
        r = memoized("similarity", {"en": en.meta["key"], "xx": xx.meta["key"], "layers": layer_ids,
                                    "jackknife": jackknife, "seed": seed, "full": full, "sentence": definition},
                     lambda: _similarity_pair(en, xx, layer_ids, jackknife=jackknife, seed=seed, full=full,
                                              sent=sent),
                     code=pair_code)
        cka[lang], ret[lang] = r["cka"], r["retrieval"]
        if full:
            cka_mat[lang] = r["cka_matrix"]
        counts[lang] = np.asarray(r["counts"], dtype=np.int64)
        if jackknife:
            reps[lang] = np.asarray(r["jackknife"], dtype=np.float64)
    tat_code = code_version(_tatoeba_pair, _ret, similarity)
    tat = {lang: memoized("retrieval-tatoeba", {"xx": xx.meta["key"], "eng": eng.meta["key"], "layers": layer_ids,
                                                 "sentence": definition},
                          lambda: _tatoeba_pair(xx, eng, layer_ids, sent), code=tat_code)
           for lang, (xx, eng) in tatoeba.items()}
    return cka, cka_mat, {"pud": ret, "tatoeba": tat}, counts, reps


def _mean_words(entry, layer: int):
    """The default sentence vectors: the mean of the word vectors ``[n_sentences, hidden]``."""
    return entry.sentence_vectors(layer, "mean")


def _similarity_pair(en, xx, layer_ids: list[int], *, jackknife: int, seed: int, full: bool,
                     sent=_mean_words) -> dict:
    """:func:`_similarity` for one pair of PUD entries, JSON-ready (rows: ``layer_ids``)."""
    from ..similarity import cka_jackknife, cka_matrix, linear_cka

    ia, ib = aligned_rows(en, xx)
    A = [np.asarray(sent(en, l), dtype=np.float32)[ia] for l in layer_ids]
    B = [np.asarray(sent(xx, l), dtype=np.float32)[ib] for l in layer_ids]
    n = len(layer_ids)
    out: dict = {}
    if full:
        out["cka_matrix"] = np.asarray(cka_matrix(A, B, debiased=True)).tolist()
        out["cka"] = {"debiased": [float(out["cka_matrix"][l][l]) for l in range(n)],
                      "biased": [float(linear_cka(A[l], B[l], debiased=False)) for l in range(n)]}
    else:
        out["cka"] = {"debiased": [float(linear_cka(A[l], B[l])) for l in range(n)]}
    out["cka"]["n_sentences"] = int(len(ia))
    if jackknife:
        out["jackknife"] = np.stack([cka_jackknife(A[l], B[l], n_groups=jackknife, seed=seed)
                                     for l in range(n)]).tolist()
    out["retrieval"], layer_counts = {}, []
    for kind in ("plain", "centered") if full else ("plain",):
        rows = []
        for l in range(n):
            row, hits = _ret(A[l], B[l], kind == "centered")
            rows.append(row)
            if kind == "plain":
                layer_counts.append(np.stack([hits, np.full(len(hits), 2)], axis=1))
        out["retrieval"][kind] = rows
    out["counts"] = np.stack(layer_counts).tolist()
    return out


def _tatoeba_pair(xx, eng, layer_ids: list[int], sent=_mean_words) -> dict:
    """Tatoeba retrieval (plain and mean-centred) of one language's pairs at every layer."""
    out = {}
    for kind in ("plain", "centered"):
        out[kind] = [_ret(np.asarray(sent(eng, l), dtype=np.float32),
                          np.asarray(sent(xx, l), dtype=np.float32),
                          kind == "centered")[0] for l in layer_ids]
    out["n_pairs"] = xx.n_sentences
    return out


def _ret(A, B, center):
    """Retrieval accuracies both ways and per-sentence hits ``[n]`` (0, 1 or 2 directions)."""
    from ..similarity import retrieval_hits

    h = retrieval_hits(A, B, center=center)
    n = len(h["a2b"])
    return ({"en2xx": int(h["a2b"].sum()) / n, "xx2en": int(h["b2a"].sum()) / n},
            h["a2b"].astype(np.int64) + h["b2a"].astype(np.int64))
