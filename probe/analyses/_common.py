"""Small helpers the analysis scripts share: language availability, corpus subsets,
result records and figure metadata. Not an analysis itself (not in the registry)."""
from __future__ import annotations

import hashlib
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np

#: PUD targets used by ``quick=True`` runs (two scripts, two families).
QUICK_PUD = ("de", "zh")


def log(msg: str) -> None:
    print(f"[analyses] {msg}", file=sys.stderr, flush=True)


def available_langs(corpus: str, split: str, candidates: Sequence | None = None) -> list[str]:
    """Codes of the languages of ``corpus`` whose ``split`` can be loaded here (offline mirror,
    local data or upstream), in registry order. A language that fails to load is skipped."""
    from probe.data import get_corpus
    from probe.errors import ProbeError
    from probe.data import languages_with
    from probe.languages import get_language

    cdef = get_corpus(corpus)
    langs = languages_with(corpus) if candidates is None else [get_language(c) for c in candidates]
    out = []
    for lang in langs:
        try:
            cdef.fetch(lang, split, progress=False)  # verified copy; no parsing
        except ProbeError:
            continue
        out.append(lang.code)
    return out


def open_entries(spec, wanted, *, progress: bool = False):
    """Like :func:`probe.layerwise.ensure_entries` for ``(corpus, lang, split, pooling)``, but
    entries already in the cache are opened without parsing their corpus: the cache key only
    depends on the corpus files' sha256 (fetched and verified here), so a hit is exact; a miss
    falls back to loading and extracting."""
    from probe.cache import open_entry
    from probe.data import Corpus, get_corpus
    from probe.extraction import cache_key
    from probe.languages import get_language
    from probe.layerwise import ensure_entries

    out, missing = [], []
    for i, (corpus, lang, split, pooling) in enumerate(wanted):
        infos = [info for _path, info in get_corpus(corpus).fetch(lang, split, progress=False)]
        stub = Corpus(name=corpus, lang=get_language(lang).code, split=split, sentences=[], files=infos)
        entry = open_entry(cache_key(spec, stub, pooling))
        out.append(entry)
        if entry is None:
            missing.append(i)
    if missing:
        built = ensure_entries(spec, [wanted[i] for i in missing], progress=progress)
        for i, entry in zip(missing, built):
            out[i] = entry
    return out


def pud_targets(quick: bool) -> list[str]:
    """Every PUD language other than English that is available (``quick``: two of them)."""
    langs = [c for c in available_langs("pud", "test") if c != "en"]
    if quick:
        langs = [c for c in QUICK_PUD if c in langs] or langs[:2]
    return sorted(langs)


def subset(corpus, n: int | None, seed: int = 0, indices=None):
    """A seeded random subset of ``n`` sentences of a loaded corpus (order kept), or the corpus
    itself when it has ``n`` sentences or fewer. The split name records the subset, so its
    cache entry never collides with the full corpus's entry: ``xx~n200s0``."""
    from probe.data import Corpus

    if indices is None:
        if n is None or len(corpus.sentences) <= n:
            return corpus
        indices = np.sort(np.random.default_rng(seed).permutation(len(corpus.sentences))[:n])
        tag = f"~n{n}s{seed}"
    else:
        tag = f"~first{len(indices)}" if list(indices) == list(range(len(indices))) else f"~n{len(indices)}s{seed}"
    return Corpus(name=corpus.name, lang=corpus.lang, split=corpus.split + tag,
                  sentences=[corpus.sentences[i] for i in indices], files=list(corpus.files))


def ensure_corpora(spec, corpora: Sequence, pooling: str, *, progress: bool = False, loaded: dict | None = None):
    """Open or extract the cache entries of already loaded (possibly subset) corpora,
    loading the encoder only if something is missing. Pass the same ``loaded`` dict to
    successive calls to load it at most once overall."""
    from probe.layerwise import open_or_extract

    loaded = {} if loaded is None else loaded
    return [open_or_extract(spec, data, pooling, loaded=loaded, progress=progress) for data in corpora]


def script_record(path: str | Path) -> dict:
    path = Path(path)
    return {"script": f"probe/analyses/{path.name}", "script_sha256": hashlib.sha256(path.read_bytes()).hexdigest()}


def model_record(spec, entry=None) -> dict:
    rec = {"name": spec.name, "fingerprint": spec.fingerprint, "source": spec.source,
           "note": getattr(spec, "note", "")}
    if entry is not None:
        rec.update({"n_layers": entry.last_layer, "hidden": entry.hidden})
    return rec


def write_json(path: Path, obj: dict) -> Path:
    from probe.files import atomic_write_json

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, obj, default=_jsonable)
    return path


def _jsonable(x):
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating,)):
        return float(x)
    if isinstance(x, np.ndarray):
        return x.tolist()
    raise TypeError(f"not JSON serialisable: {type(x)}")


def record(name: str, script: str | Path, question: str, model: dict, data: dict, seeds: dict,
           config: dict, results: dict, t0: float) -> dict:
    """The common frame of every ``results/<name>.json``."""
    from probe.layerwise import versions

    return {"analysis": name, "question": question,
            "layer_indexing": "0 = embedding output, L = last transformer layer",
            "model": model, "data": data, "seeds": seeds, "config": config,
            "versions": {**versions(), **script_record(script)},
            "results": results,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "seconds": round(time.time() - t0, 1)}


def fig_meta(rec: dict, data_caption: str) -> dict:
    """Metadata for :func:`probe.plotting.finish` from a result record."""
    seed = next(iter(rec["seeds"].values()), None) if rec.get("seeds") else None
    return {"model": rec["model"], "data_caption": data_caption, "seed": seed,
            "versions": rec["versions"]}


def outputs(out_root: Path, name: str) -> tuple[Path, Path]:
    out_root = Path(out_root)
    return out_root / "results" / f"{name}.json", out_root / "figures" / f"{name}.png"


def script_cli(main, doc: str, quick_help: str, options: Sequence[tuple] = ()) -> None:
    """The command line every analysis script shares: ``--model``, ``--out-root``, ``--quick``
    plus the script's own ``options`` as ``(flag, add_argument kwargs)``; each option is
    passed to ``main`` by its ``dest`` only when given (``None`` keeps main's default)."""
    import argparse

    spec = getattr(sys.modules.get("__main__"), "__spec__", None)  # run as python3 -m probe.analyses.NAME
    p = argparse.ArgumentParser(prog=f"python3 -m {spec.name}" if spec else None, description=doc,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="e5-small-q4", help="encoder name (default: e5-small-q4)")
    p.add_argument("--out-root", type=Path, default=Path("."), help="writes results/ and figures/ here")
    p.add_argument("--quick", action="store_true", help=quick_help)
    dests = [p.add_argument(flag, default=None, **kw).dest for flag, kw in options]
    a = p.parse_args()
    extra = {d: getattr(a, d) for d in dests if getattr(a, d) is not None}
    for path in main(a.model, a.out_root, a.quick, **extra):
        print(path)


def csv_list(text: str) -> list[str]:
    """``"de,zh"`` -> ``["de", "zh"]`` (a command-line list)."""
    return [x.strip() for x in text.split(",") if x.strip()]
