"""The cache entries a ``layers`` run reads: opened from the cache or extracted (the model is
loaded at most once per run), and the perturbed copies of the target text."""
from __future__ import annotations

from typing import Sequence


def open_or_extract(spec, data, pooling: str, *, loaded: dict, progress=True, device=None, input="words",
                    dtype: str = "float32"):
    """The cache entry of an already loaded corpus (e.g. a subset or a perturbed copy),
    extracted if missing. The model is loaded only then, once per ``loaded`` dict: pass the
    same dict to successive calls. ``device`` and ``dtype`` (the forward's precision) select
    the entry: a bfloat16 run opens and builds bfloat16 entries only."""
    from ..cache import open_entry
    from ..extraction import cache_key, extract_corpus

    entry = open_entry(cache_key(spec, data, pooling, device=device, dtype=dtype, input=input))
    if entry is None:
        if "encoder" not in loaded:
            loaded["encoder"] = spec.load()
        entry = extract_corpus(spec, data, pooling=pooling, progress=progress, device=device,
                               encoder=loaded["encoder"], input=input, dtype=dtype)
    return entry


def ensure_entries(spec, wanted: Sequence[tuple[str, str, str, str]], *, progress=True, device=None,
                   input="words", dtype: str = "float32"):
    """Open or extract ``(corpus, lang, split, pooling)`` entries, loading the model at most once."""
    from ..data import load_corpus

    loaded: dict = {}
    return [open_or_extract(spec, load_corpus(corpus, lang, split), pooling, loaded=loaded, progress=progress,
                            device=device, input=input, dtype=dtype) for corpus, lang, split, pooling in wanted]



def perturbed_entries(spec, targets, perturbations, pooling, pud, progress, device, log, input="words",
                       dtype="float32"):
    """``{(str(p), lang): (entry, changed_fraction)}`` for perturbed target PUD text.

    A perturbation that changes no word (e.g. lowercase on Chinese) reuses the clean entry.
    """
    from ..data import load_corpus
    from ..perturb import changed_fraction, perturb_corpus

    out, loaded = {}, {}
    if not perturbations:  # nothing to perturb: do not parse the clean text again
        return out
    for lang in targets:
        clean = load_corpus("pud", lang, "test", progress=progress)
        for p in perturbations:
            data = perturb_corpus(clean, p)
            frac = changed_fraction(clean, data)
            if progress:
                log(f"PUD {lang} perturbed by {p}: {frac:.1%} of the words changed")
            entry = pud[lang] if frac == 0 else open_or_extract(spec, data, pooling, loaded=loaded,
                                                                 progress=progress, device=device, input=input,
                                                                 dtype=dtype)
            out[(str(p), lang)] = (entry, frac)
    return out
