"""Sentence vectors in a stated, selectable definition.

=============  ==========================================================================
``mean-words`` mean of the sentence's word vectors (each word pooled from its pieces as
               the entry was extracted); stored in every cache entry (``sent_mean.npy``)
``first``      the first token's vector (``<s>`` / ``[CLS]``); stored in every entry
``mean-pieces`` mean of every piece of the input as fed (special tokens excluded): the
               pre-split pieces for ``input="words"``, the raw text's for ``input="text"``
``native``     the model's own recipe where the toolkit knows it (:data:`NATIVE`): for
               e5, ``"query: " + text`` and the mean over all tokens, special ones
               included, so the last layer gives the model's published sentence embedding
=============  ==========================================================================

``mean-pieces`` and ``native`` need their own forward pass (the input differs from the word
extraction's); their vectors ``[n_layers, n_sentences, hidden]`` (float16) are cached under
``$PROBE_HOME/cache/sentences/`` keyed by the word entry's fields plus the definition
(and, like the word entries, the device type and precision when they are not float32 on
the CPU). Inputs longer than the model's limit are truncated (counted in the sidecar JSON), as the
models' own recipes do.
"""
from __future__ import annotations

import hashlib
import json
import re
import sys
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .errors import ProbeError

DEFINITIONS = ("mean-words", "mean-pieces", "first", "native")
DESCRIPTIONS = {
    "mean-words": "mean of the layer's word vectors",
    "mean-pieces": "mean of all pieces of the input as fed (special tokens excluded)",
    "first": "the first token's vector (<s>/[CLS])",
    "native": "the model's own sentence-embedding recipe",
}
VERSION = 1


@dataclass(frozen=True)
class NativeRecipe:
    """How a model family's authors embed a sentence: ``prefix + text``, then ``pool``
    (``mean-all``: mean over every token of the input, special ones included)."""

    family: str
    pattern: str  # matched (re.search) against the model name
    prefix: str
    pool: str
    source: str

    def describe(self) -> str:
        return f"{self.family}: {self.prefix!r} + text, {self.pool} ({self.source})"


NATIVE: list[NativeRecipe] = []


def register_recipe(recipe: NativeRecipe) -> NativeRecipe:
    NATIVE.append(recipe)
    return recipe


register_recipe(NativeRecipe(
    family="e5", pattern=r"(^|[/:_-])(multilingual-)?e5([-_]|$)", prefix="query: ", pool="mean-all",
    source="intfloat/multilingual-e5 model card: 'query: ' prefix for symmetric tasks, "
           "average pooling over the attention mask (special tokens included)"))


def native_recipe(model_name: str) -> NativeRecipe:
    for recipe in NATIVE:
        if re.search(recipe.pattern, model_name):
            return recipe
    known = ", ".join(r.family for r in NATIVE)
    raise ProbeError(f"no native sentence recipe known for model {model_name!r} (known: {known}); "
                     f"choose --sentence from {', '.join(d for d in DEFINITIONS if d != 'native')}")


def check_definition(definition: str) -> str:
    if definition not in DEFINITIONS:
        raise ProbeError(f"unknown sentence-vector definition {definition!r}; choose from {', '.join(DEFINITIONS)}")
    return definition


def describe(definition: str, model_name: str) -> str:
    if definition == "native":
        return f"native: {native_recipe(model_name).describe()}"
    return f"{definition}: {DESCRIPTIONS[definition]}"


def _inputs(tokenizer, data, definition: str, input: str, model_name: str, max_length: int):
    """Token ids (with special tokens), a keep-mask of the pooled positions per sentence,
    and how many inputs were longer than ``max_length`` (cut, keeping the closing token)."""
    if definition == "native":
        recipe = native_recipe(model_name)
        enc = tokenizer([recipe.prefix + s.text for s in data.sentences], return_special_tokens_mask=True)
    elif input == "text":
        enc = tokenizer([s.text for s in data.sentences], return_special_tokens_mask=True)
    else:
        enc = tokenizer([list(s.words) for s in data.sentences], is_split_into_words=True,
                        return_special_tokens_mask=True)
    ids, keep, n_truncated = [], [], 0
    for x, m in zip(enc["input_ids"], enc["special_tokens_mask"]):
        x, m = list(x), np.asarray(m, dtype=bool)
        k = np.ones(len(x), dtype=bool) if definition == "native" else ~m
        if len(x) > max_length:
            n_truncated += 1
            x = x[:max_length - 1] + x[-1:]
            k = np.concatenate([k[:max_length - 1], k[-1:]])
        ids.append(x)
        keep.append(k)
    return ids, keep, n_truncated


def encode(encoder, ids: list[list[int]], keep: list[np.ndarray], *, layers: Sequence[int] | None = None,
           batch_tokens: int = 4096, device: str = "cpu", progress: bool = False,
           dtype: str = "float32") -> np.ndarray:
    """Mean over the ``keep`` positions of each input: ``[n_layers_kept, n_inputs, hidden]``
    float16 (summed in float32). ``layers`` (default all, 0 = embeddings) are the hidden
    states kept. ``dtype`` other than float32: the forward runs under ``torch.autocast`` in
    that precision, as the word extraction does."""
    import torch
    from tqdm.auto import tqdm

    from .extraction import plan_batches

    pad = encoder.tokenizer.pad_token_id if encoder.tokenizer.pad_token_id is not None else 0
    n_all = encoder.n_layers + 1
    layers = list(range(n_all)) if layers is None else [l % n_all for l in layers]
    out = np.zeros((len(layers), len(ids), encoder.hidden), dtype=np.float16)
    batches = plan_batches([len(x) for x in ids], batch_tokens)
    model = encoder.model.to(device=device, dtype=torch.float32)  # other precisions: autocast
    device_type = torch.device(device).type
    for batch in tqdm(batches, disable=not progress, file=sys.stderr, unit="batch", desc="sentence vectors"):
        T = max(len(ids[i]) for i in batch)
        x = torch.full((len(batch), T), pad, dtype=torch.long)
        att = torch.zeros((len(batch), T), dtype=torch.long)
        w = torch.zeros((len(batch), T), dtype=torch.float32)
        for b, i in enumerate(batch):
            x[b, :len(ids[i])] = torch.as_tensor(ids[i])
            att[b, :len(ids[i])] = 1
            w[b, :len(ids[i])] = torch.as_tensor(keep[i], dtype=torch.float32)
        w = w / w.sum(1, keepdim=True).clamp_min(1)
        with torch.inference_mode(), torch.autocast(device_type=device_type, dtype=getattr(torch, dtype),
                                                    enabled=dtype != "float32"):
            if layers == [n_all - 1]:  # the last layer only: no stack of every hidden state
                hs = {n_all - 1: model(input_ids=x.to(device), attention_mask=att.to(device)).last_hidden_state}
            else:
                hs = model(input_ids=x.to(device), attention_mask=att.to(device),
                           output_hidden_states=True).hidden_states
            for k, l in enumerate(layers):
                v = torch.einsum("bth,bt->bh", hs[l].float(), w.to(hs[l].device))
                out[k, batch] = v.half().cpu().numpy()
    return out


def compute(spec, data, definition: str, *, input: str = "words", layers: Sequence[int] | None = None,
            encoder=None, device: str = "cpu", progress: bool = False,
            dtype: str = "float32") -> tuple[np.ndarray, dict]:
    """Sentence vectors of ``data`` by ``definition`` (``mean-pieces`` or ``native``), not
    cached: ``([n_layers_kept, n_sentences, hidden] float16, info)``."""
    check_definition(definition)
    if definition not in ("mean-pieces", "native"):
        raise ProbeError(f"{definition!r} sentence vectors are read from the word entry (CacheEntry)")
    encoder = encoder or spec.load()
    ids, keep, n_truncated = _inputs(encoder.tokenizer, data, definition, input, spec.name, encoder.max_length)
    vecs = encode(encoder, ids, keep, layers=layers, device=device, progress=progress, dtype=dtype)
    info = {"definition": describe(definition, spec.name), "input": "text" if definition == "native" else input,
            "n_sentences": len(ids), "n_tokens": int(sum(len(x) for x in ids)),
            "truncated_sentences": n_truncated, "layers": layers, "device": device, "compute_dtype": dtype}
    return vecs, info


def _key(spec, data, definition: str, input: str, layers, device: str = "cpu", dtype: str = "float32") -> str:
    from .extraction import extractor_tag

    fields = {"model": spec.name, "fingerprint": spec.fingerprint, "corpus": data.name, "lang": data.lang,
              "split": data.split, "corpus_sha256": data.sha256, "definition": definition,
              "recipe": describe(definition, spec.name),
              "input": "text" if definition == "native" else input,
              "layers": None if layers is None else list(layers), "v": VERSION}
    tag = extractor_tag(device, dtype)
    if tag != extractor_tag():  # float32 on the CPU keeps the key it always had
        fields["extractor"] = tag
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


def cached(spec, data, definition: str, *, input: str = "words", layers: Sequence[int] | None = None,
           loaded: dict | None = None, device: str = "cpu", progress: bool = False,
           dtype: str = "float32") -> tuple[np.ndarray, dict]:
    """:func:`compute`, stored under ``$PROBE_HOME/cache/sentences/`` (atomic writes; the
    file name is a digest of the model fingerprint, corpus sha256, definition, input and
    layers, plus the device type and precision when not float32 on the CPU, so it never
    goes stale). ``loaded``: a dict sharing one loaded encoder."""
    from .cache import slug, atomic_save_npy, cache_dir
    from .files import atomic_write_json

    digest = _key(spec, data, definition, input, layers, device, dtype)
    folder = cache_dir() / "sentences" / slug(spec.name)
    stem = f"{slug(data.name)}.{slug(data.lang)}.{slug(data.split)}.{definition}.{digest[:16]}"
    npy, meta = folder / f"{stem}.npy", folder / f"{stem}.json"
    if npy.exists() and meta.exists():
        try:
            info = json.loads(meta.read_text())
            if info.get("digest") == digest:
                return np.load(npy, mmap_mode="r"), info
        except (OSError, ValueError):
            pass  # unreadable: recompute
    loaded = {} if loaded is None else loaded
    if "encoder" not in loaded:
        loaded["encoder"] = spec.load()
    vecs, info = compute(spec, data, definition, input=input, layers=layers, encoder=loaded["encoder"],
                         device=device, progress=progress, dtype=dtype)
    info["digest"] = digest
    folder.mkdir(parents=True, exist_ok=True)
    atomic_save_npy(npy, vecs)
    atomic_write_json(meta, info)  # written last: marks the vectors complete
    return vecs, info


class SentenceVectors:
    """``sv(entry, layer) -> [n_sentences, hidden]`` in one definition, for any cache entry.

    ``mean-words`` / ``first`` read the entry; ``mean-pieces`` / ``native`` run (once, then
    cached) their own forward pass over the entry's corpus, in the entry's input mode, on
    ``device`` in precision ``dtype`` (as the word entries were extracted).
    """

    def __init__(self, spec, definition: str = "mean-words", *, device: str = "cpu", progress: bool = False,
                 dtype: str = "float32"):
        from .options import check_dtype

        self.spec = spec
        self.definition = check_definition(definition)
        if definition == "native":
            native_recipe(spec.name)  # fail early for an unknown model
        self.device = device
        self.dtype = check_dtype(dtype)
        self.progress = progress
        self.loaded: dict = {}
        self._memo: dict = {}
        self.info: dict = {}

    def __call__(self, entry, layer: int) -> np.ndarray:
        if self.definition == "mean-words":
            return entry.sentence_vectors(layer, "mean")
        if self.definition == "first":
            return entry.sentence_vectors(layer, "first")
        key = entry.meta["key"]
        if key not in self._memo:
            from .data import load_corpus

            c = entry.meta["corpus"]
            data = load_corpus(c["name"], c["lang"], c["split"], progress=False)
            if data.sha256 != c["sha256"]:
                raise ProbeError(f"{entry.path}: its corpus changed since extraction (sha256 differs)")
            vecs, info = cached(self.spec, data, self.definition, input=entry.input, loaded=self.loaded,
                                device=self.device, progress=self.progress, dtype=self.dtype)
            self._memo[key] = vecs
            self.info[key] = info
        return self._memo[key][layer]
