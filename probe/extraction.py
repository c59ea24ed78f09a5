"""Extraction: run an encoder over a corpus once and cache every layer, word by word.

Pipeline: tokenize pre-split words with the fast tokenizer → choose, per word, the
subword pieces that represent it (``first``, ``mean`` or ``last`` pooling; a bare
SentencePiece ``▁`` piece is never used when the word has a content piece) → cut
sentences longer than the model's limit into overlapping word windows (each word is
taken from the window where it has the most context on both sides) → sort by length,
batch under a token budget → forward under ``torch.inference_mode`` → pool pieces to
words with one ``index_add`` per batch → keep resumable chunks (on disk every
:data:`CHECKPOINT_SECONDS` and at once on an error or interrupt) → publish the entry.

>>> entry = extract("e5-small-q4", "pud", "de")      # doctest: +SKIP
>>> entry.layer(0).shape                              # [n_words, 384], 0 = embeddings
"""
from __future__ import annotations

import operator
import os
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from . import __version__
from .cache import FORMAT_VERSION, CacheEntry, CacheKey, EntryBuilder, open_entry
from .errors import ProbeError
from .files import atomic_write_json
from . import options
from .options import DEFAULT_DTYPE, check_dtype
from .threads import torch_threads
from .tokenization import POOLINGS, Tokenization, Unit, assign_windows, token_id, window_plan

# Older names, kept for callers that imported them from here.
_window_plan, _assign_windows, _token_id = window_plan, assign_windows, token_id

EXTRACTOR_VERSION = "1"
DEFAULT_BATCH_TOKENS = 1024
# Entries up to this size (all layers, float16) are assembled in memory before writing
# (peak memory of the publish: about this much for the chunks, plus two layers in flight).
IN_RAM_ENTRY_BYTES = 256 << 20
# Finished chunks of such entries are written to disk (for resumption) in one batch once
# this many seconds have passed since the last write, and at once on any error or
# interrupt; so a short extraction writes no chunk files at all, and even a SIGKILL or a
# power loss loses at most this much work. $PROBE_CHECKPOINT_SECONDS overrides it (0 =
# write every chunk as soon as it is done, the behaviour for larger entries).
CHECKPOINT_SECONDS = 10.0
# On CPU, this many batches run at once, each in its own thread with an equal share of
# torch's intra-op threads: the matrix products of a small encoder (e5-small: 384 wide,
# batches of ~1k tokens) gain little from splitting one op across cores, while whole
# batches side by side keep every core busy and overlap the Python and pooling work
# between ops. Measured in benchmarks/README.md (section 1).
CPU_WORKERS = 2
# Compute precisions of the forward pass. float32 is the default on every device; the
# others run the float32 model under torch.autocast (matrix products in that dtype,
# normalisations in float32). A non-default precision or a device other than the CPU is
# part of the cache key (see extractor_tag), so numbers of different precisions never mix.
# (Defined in probe.options, whose checks run before any work; named here for callers.)
DTYPES = options.DTYPES


def _checkpoint_seconds() -> float:
    raw = os.environ.get("PROBE_CHECKPOINT_SECONDS")
    if raw is None or raw.strip() == "":
        return CHECKPOINT_SECONDS
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise ProbeError(f"PROBE_CHECKPOINT_SECONDS={raw!r}: expected a number of seconds >= 0")
    return value


def resolve_workers(device: str, workers: int | None = None) -> tuple[int, int]:
    """``(batches run at once, torch intra-op threads during the run)`` for ``device``.

    ``workers=None`` picks :data:`CPU_WORKERS` on CPU when torch has at least that many
    threads, else 1; accelerators always run one batch at a time on the calling thread.
    The threads torch has are split evenly between the workers.
    """
    import torch

    threads = torch.get_num_threads()
    if workers is None:
        workers = CPU_WORKERS if device == "cpu" and threads >= CPU_WORKERS else 1
    else:
        try:
            n = operator.index(workers)  # ints and numpy integers; not floats or bools
        except TypeError:
            n = 0
        if isinstance(workers, bool) or n < 1:
            raise ProbeError(f"workers={workers!r}: expected a whole number >= 1")
        workers = n
    if device != "cpu":
        workers = 1
    return workers, max(1, threads // workers)


def in_order(fn, items, workers: int):
    """``fn(item)`` for every item, yielded in order; with ``workers > 1`` up to that many
    calls run at once on worker threads (torch releases the GIL inside its ops) and one
    more is queued. Closing the generator early (an error or an interrupt in the caller)
    cancels the queued calls and waits for the running ones."""
    if workers <= 1:
        for item in items:
            yield fn(item)
        return
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="probe-forward") as pool:
        queue = deque()
        try:
            for item in items:
                queue.append(pool.submit(fn, item))
                if len(queue) > workers:
                    yield queue.popleft().result()
            while queue:
                yield queue.popleft().result()
        finally:
            for future in queue:
                future.cancel()


def plan_batches(lengths: Sequence[int], batch_tokens: int) -> list[list[int]]:
    """Unit indices grouped into batches, longest first, with ``B * max_len <= batch_tokens``."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    batches, cur, cur_max = [], [], 0
    for i in order:
        new_max = max(cur_max, lengths[i])
        if cur and new_max * (len(cur) + 1) > batch_tokens:
            batches.append(cur)
            cur, new_max = [], lengths[i]
        cur.append(i)
        cur_max = new_max
    if cur:
        batches.append(cur)
    return batches


def pad_batch(units: list[Unit], pad_id: int) -> dict:
    """The model inputs of a batch of units, right-padded to the longest: ``input_ids`` and
    ``attention_mask`` ``[B, T]`` (int64, CPU), and ``token_type_ids`` when a unit has them."""
    import torch

    B, T = len(units), max(len(u.input_ids) for u in units)
    ids = torch.full((B, T), pad_id, dtype=torch.long)
    att = torch.zeros((B, T), dtype=torch.long)
    with_types = any(u.token_type_ids is not None for u in units)
    types = torch.zeros((B, T), dtype=torch.long) if with_types else None
    for b, u in enumerate(units):
        ids[b, :len(u.input_ids)] = torch.as_tensor(u.input_ids)
        att[b, :len(u.input_ids)] = 1
        if with_types and u.token_type_ids is not None:
            types[b, :len(u.token_type_ids)] = torch.as_tensor(u.token_type_ids)
    out = {"input_ids": ids, "attention_mask": att}
    if with_types:
        out["token_type_ids"] = types
    return out


def forward_batch(encoder, units: list[Unit], device: str, pad_id: int, dtype: str = DEFAULT_DTYPE):
    """Run one batch; return word vectors ``[L+1, n_words_in_batch, H]`` (float16, CPU),
    their global word indices, and first-token vectors ``[L+1, n_first_windows, H]``
    (float16) with their sentence indices. Pooling is done in float32. ``dtype`` other
    than float32: the forward runs under ``torch.autocast`` in that precision."""
    import torch

    batch = pad_batch(units, pad_id)
    B, T = batch["input_ids"].shape
    flat_pos = torch.as_tensor(np.concatenate([b * T + u.pos for b, u in enumerate(units)]))
    words = np.concatenate([u.word for u in units])
    uniq, local = np.unique(words, return_inverse=True)
    inputs = {name: t.to(device) for name, t in batch.items()}
    device_type = torch.device(device).type
    with torch.inference_mode(), torch.autocast(device_type=device_type, dtype=getattr(torch, dtype),
                                                enabled=dtype != "float32"):
        out = encoder.model(**inputs, output_hidden_states=True)
        hidden = out.hidden_states  # L+1 tensors [B, T, H]
        n_layers, H = len(hidden), hidden[0].shape[-1]
        first_rows = [b for b, u in enumerate(units) if u.window == 0]
        rows = torch.as_tensor(first_rows, dtype=torch.long, device=hidden[0].device)
        # Gather only the pooled pieces of each layer (never a stacked copy of every position).
        if len(uniq) == len(words):
            # One piece per word (first/last pooling, and mean pooling of single-piece
            # words): the piece *is* the word vector; take them in word order.
            order = np.empty(len(local), dtype=np.int64)
            order[local] = np.arange(len(local))
            take = flat_pos[torch.as_tensor(order)].to(hidden[0].device)
            vecs = torch.empty((n_layers, len(take), H), dtype=torch.float16, device=take.device)
            for l, h in enumerate(hidden):  # gather + round per layer: no float32 stack
                vecs[l].copy_(h.reshape(B * T, H).index_select(0, take))
        else:
            take = flat_pos.to(hidden[0].device)
            local_t = torch.as_tensor(local, device=hidden[0].device)
            pieces = torch.stack([h.reshape(B * T, H)[take] for h in hidden]).float()
            sums = torch.zeros((n_layers, len(uniq), H), dtype=torch.float32, device=pieces.device)
            sums.index_add_(1, local_t, pieces)
            counts = torch.bincount(local_t, minlength=len(uniq)).clamp_min(1).to(sums.dtype)
            vecs = (sums / counts[None, :, None]).to(torch.float16)
        first = torch.empty((n_layers, len(first_rows), H), dtype=torch.float16, device=rows.device)
        for l, h in enumerate(hidden):
            first[l].copy_(h[rows, 0, :])
        # Rounded to float16 by torch (vectorised; the same IEEE round-to-nearest-even as
        # numpy's much slower astype), so the chunk writer only copies bytes.
    first_sent = np.asarray([units[b].sentence for b in first_rows], dtype=np.int64)
    return vecs.cpu().numpy(), uniq, first.cpu().numpy(), first_sent


class SentenceMeans:
    """Per-sentence means of float16 word vectors, ``[n_words, H] -> [n_sentences, H]``.

    Each sentence's words are summed in float32 in word order (first word, then += the
    next), then divided by the word count and rounded to float16: exactly the values of
    ``np.add.reduceat(layer, offsets[:-1], axis=0, dtype=np.float32) / lengths``, ~7x
    faster, because the sum runs over word position *k* for every sentence at once
    (sentences sorted by length, so those with more than *k* words are a prefix).
    A sentence without words gets a zero vector.

    >>> means = SentenceMeans(np.array([0, 2, 5]))       # two sentences: 2 and 3 words
    >>> means(np.ones((5, 4), np.float16)).shape          # [n_sentences, H]
    (2, 4)
    """

    def __init__(self, offsets: np.ndarray):
        import torch

        offsets = np.asarray(offsets, dtype=np.int64)
        lengths = np.diff(offsets)
        self.n_sent = len(lengths)
        order = np.argsort(-lengths, kind="stable")  # longest first
        order = order[lengths[order] > 0]            # sentences without words stay zero
        sorted_len = lengths[order]
        self.rows = torch.as_tensor(order)
        self.starts = torch.as_tensor(offsets[:-1][order])
        self.lengths = torch.as_tensor(sorted_len, dtype=torch.float32)[:, None]
        # active[k]: how many sentences (a prefix of the sorted order) have more than k words
        longest = int(sorted_len[0]) if len(order) else 0
        self.active = np.searchsorted(-sorted_len, -np.arange(longest), side="left")

    def __call__(self, layer: np.ndarray) -> np.ndarray:
        import torch

        H = layer.shape[1]
        out = torch.zeros((self.n_sent, H), dtype=torch.float16)
        if len(self.rows):
            words = torch.from_numpy(np.asarray(layer))
            acc = words.index_select(0, self.starts).float()
            for k in range(1, len(self.active)):
                n = int(self.active[k])
                acc[:n] += words.index_select(0, self.starts[:n] + k)
            out[self.rows] = (acc / self.lengths).half()
        return out.numpy()


def label_arrays(sentences) -> dict[str, tuple[np.ndarray, list[str] | None]]:
    """Label arrays with their vocabularies: ``upos``, ``deprel``, ``tags`` ``[n_words]`` as ids
    into a sorted vocabulary, ``head`` ``[n_words]`` as ints (-1 = missing), and the
    sentence-level ``label`` ``[n_sentences]``."""
    out = {}
    for name in ("upos", "deprel"):
        seqs = [getattr(s, name, None) for s in sentences]
        if any(x is None for x in seqs):
            continue
        flat = [v for seq in seqs for v in seq]
        vocab = sorted({v for v in flat if v not in ("_", "", None)})
        index = {v: i for i, v in enumerate(vocab)}
        out[name] = (np.asarray([index.get(v, -1) for v in flat], dtype=np.int16), vocab)
    tags = [getattr(s, "tags", None) for s in sentences]
    if all(t is not None for t in tags):
        vocab = sorted({v for seq in tags for v in seq})
        index = {v: i for i, v in enumerate(vocab)}
        out["tags"] = (np.asarray([index[v] for seq in tags for v in seq], dtype=np.int16), vocab)
    sent_labels = [getattr(s, "label", None) for s in sentences]
    if all(x is not None for x in sent_labels):
        vocab = sorted(set(sent_labels))
        index = {v: i for i, v in enumerate(vocab)}
        out["label"] = (np.asarray([index[v] for v in sent_labels], dtype=np.int16), vocab)
    heads = [getattr(s, "head", None) for s in sentences]
    if all(h is not None for h in heads):
        out["head"] = (np.asarray([-1 if h is None else h for seq in heads for h in seq], dtype=np.int32), None)
    return out


def extractor_tag(device: str = "cpu", dtype: str = DEFAULT_DTYPE, segments: bool = False) -> str:
    """The ``extractor`` field of a cache key: ``v1`` for a float32 forward on the CPU
    without segment ids (the key every earlier entry has), with ``;device=cuda``,
    ``;dtype=bfloat16;autocast`` and ``;segments`` appended when they apply, so that
    entries computed on another device type, in another precision, or with sentence-pair
    segment ids never share a key with those."""
    device_type = str(device).split(":")[0]
    tag = f"v{EXTRACTOR_VERSION}"
    if device_type != "cpu":
        tag += f";device={device_type}"
    if dtype != DEFAULT_DTYPE:
        tag += f";dtype={dtype};autocast"
    if segments:
        tag += ";segments"
    return tag


def entry_precision(meta: dict) -> str:
    """``float32@cpu``, ``bfloat16@cuda``... from an entry's meta.json. Entries written
    before the precision was recorded ran float32, except on CUDA, where the forward
    always ran under bfloat16 autocast."""
    ext = meta.get("extractor", {})
    device_type = ext.get("device_type") or str(ext.get("device", "cpu")).split(":")[0]
    dtype = meta.get("compute_dtype") or ("bfloat16" if device_type == "cuda" else DEFAULT_DTYPE)
    return f"{dtype}@{device_type}"


def precision_record(device: str | None = None, dtype: str = DEFAULT_DTYPE) -> dict:
    """What every driver's report records about its forward passes: ``{"dtype", "device",
    "device_type", "autocast", "cache_tag"}`` (``cache_tag``: the :func:`extractor_tag` of
    the entries it reads, segment ids aside). ``device=None`` or ``"auto"``: the device
    :func:`~probe.encoders.pick_device` chooses. A bad ``dtype`` or device is one
    :class:`ProbeError`, raised before any work."""
    from .encoders import check_device, pick_device

    check_dtype(dtype)
    device = check_device(pick_device(device))
    return {"dtype": dtype, "device": device, "device_type": device.split(":")[0],
            "autocast": dtype != DEFAULT_DTYPE, "cache_tag": extractor_tag(device, dtype)}


def _is_pairs(corpus) -> bool:
    return any(getattr(s, "n_first", None) is not None for s in corpus.sentences)


def cache_key(spec, corpus, pooling: str, max_length: int | None = None, *, device: str | None = None,
              dtype: str = DEFAULT_DTYPE, encoder=None, input: str = "words") -> CacheKey:
    """The key of ``corpus`` extracted by ``spec``. ``device=None``: the device
    :func:`~probe.encoders.pick_device` chooses. Sentence pairs of a model with segment
    ids (see :func:`~probe.encoders.pair_segment_ids`) get their own key."""
    from .encoders import pair_segment_ids, pick_device

    check_dtype(dtype)
    segments = _is_pairs(corpus) and pair_segment_ids(spec, encoder)
    return CacheKey(model=spec.name, model_fingerprint=spec.fingerprint, corpus=corpus.name,
                    lang=corpus.lang, split=corpus.split, corpus_sha256=corpus.sha256,
                    pooling=pooling, extractor=extractor_tag(pick_device(device), dtype, segments),
                    input=input)


def extract(model, corpus: str, lang: str, split: str | None = None, *, pooling: str = "first",
            batch_tokens: int = DEFAULT_BATCH_TOKENS, device: str | None = None,
            progress: bool = True, encoder=None, workers: int | None = None,
            dtype: str = DEFAULT_DTYPE, input: str = "words") -> CacheEntry:
    """Extract (or open from cache) every layer's word vectors of one corpus split.

    ``model`` is a name (see :mod:`probe.encoders`) or an :class:`~probe.encoders.EncoderSpec`.
    ``workers``: batches run at once on CPU (default :data:`CPU_WORKERS` when torch has
    that many threads; see :func:`resolve_workers`). ``device``: ``cpu``, ``cuda``,
    ``cuda:N``, ``mps`` or None (auto). ``dtype``: the forward's precision, one of
    :data:`DTYPES` (float32 by default on every device; others under autocast). ``input``: ``"words"``
    (pre-split words) or ``"text"`` (the sentence's own text, see :mod:`probe.alignment`). Returns
    the :class:`~probe.cache.CacheEntry`; a cache hit loads no model.
    """
    from .data import get_corpus
    from .encoders import resolve_encoder

    if pooling not in POOLINGS:
        raise ProbeError(f"unknown pooling {pooling!r}; choose from {', '.join(POOLINGS)}")
    spec = resolve_encoder(model) if isinstance(model, str) else model
    cdef = get_corpus(corpus)
    data = cdef.load(lang, split or cdef.splits[0], progress=progress)
    return extract_corpus(spec, data, pooling=pooling, batch_tokens=batch_tokens, device=device,
                          progress=progress, encoder=encoder, workers=workers, dtype=dtype, input=input)


def extract_corpus(spec, data, *, pooling: str = "first", batch_tokens: int = DEFAULT_BATCH_TOKENS,
                   device: str | None = None, progress: bool = True, encoder=None,
                   shard: tuple[int, int] | None = None, publish: bool = True,
                   workers: int | None = None, dtype: str = DEFAULT_DTYPE,
                   input: str = "words") -> CacheEntry | None:
    """Like :func:`extract` for an already loaded corpus (a ``probe.data.Corpus``).

    ``shard=(rank, world)`` computes only the chunks ``i`` with ``i % world == rank``
    (chunks are planned deterministically, so shards from several processes combine into
    exactly the single-process entry); ``publish=False`` stops after writing chunks and
    returns None. :mod:`probe.distributed` uses both. ``workers``: as for :func:`extract`.
    """
    if not data.sentences:
        raise ProbeError(f"corpus {data.name}/{data.lang}/{data.split} has no sentences")
    from .alignment import check_input
    from .encoders import check_device, pair_segment_ids, pick_device

    device = check_device(pick_device(device))
    key = cache_key(spec, data, pooling, device=device, dtype=dtype, encoder=encoder,
                    input=check_input(input))
    hit = open_entry(key)
    if hit is not None:
        found, wanted = entry_precision(hit.meta), f"{dtype}@{device.split(':')[0]}"
        if found != wanted:  # only entries of older versions, keyed before the precision was
            print(f"probe: warning: {hit.path.name} was computed as {found}, not {wanted}, by an older "
                  f"version under the same key; `probe cache rm` it to recompute", file=sys.stderr)
        return hit
    checkpoint_seconds = _checkpoint_seconds()
    from tqdm.auto import tqdm

    t0 = time.time()
    workers, intra_op = resolve_workers(device, workers)
    encoder = encoder or spec.load()
    import torch

    # float32 weights whatever the checkpoint's dtype; other precisions come from autocast.
    encoder.model.to(device=device, dtype=torch.float32)
    sentences_words = [s.words for s in data.sentences]
    n_first = [getattr(s, "n_first", None) for s in data.sentences]
    is_pair = any(k is not None for k in n_first)
    segments = is_pair and pair_segment_ids(spec, encoder)
    if input == "text":
        from .alignment import TextTokenization

        tok = TextTokenization(encoder.tokenizer, data.sentences, encoder.max_length, pooling)
    else:
        tok = Tokenization(encoder.tokenizer, sentences_words, encoder.max_length, pooling,
                           n_first=n_first if is_pair else None, segment_ids=segments)
    if tok.clipped_words:
        print(f"probe: warning: {len(tok.clipped_words)} words of over-long sentence pairs did not fit "
              f"the model ({encoder.max_length} tokens) and get zero vectors (recorded in meta.json)",
              file=sys.stderr)
    lengths = [len(u.input_ids) for u in tok.units]
    batches = plan_batches(lengths, batch_tokens)
    # Chunks of whole batches: the unit of resumption after an interruption.
    chunks, cur, cur_tok = [], [], 0
    for b in batches:
        cur.append(b)
        cur_tok += sum(lengths[i] for i in b)
        if cur_tok >= batch_tokens:
            chunks.append(cur)
            cur, cur_tok = [], 0
    if cur:
        chunks.append(cur)
    plan = {"key": key.digest, "batch_tokens": batch_tokens, "n_units": len(tok.units),
            "chunks": [[len(b) for b in c] for c in chunks]}
    builder = EntryBuilder(key, plan, lock=publish)
    if builder.finished is not None:  # another process built it while this one waited
        return builder.finished
    pad_id = encoder.tokenizer.pad_token_id if encoder.tokenizer.pad_token_id is not None else 0
    n_total = int(tok.offsets[-1])
    done = [i for i in range(len(chunks)) if builder.has_chunk(i)]
    bar = tqdm(total=n_total, unit="word", disable=not progress, file=sys.stderr,
               desc=f"{spec.name} {data.name}/{data.lang}/{data.split}")
    for i in done:
        bar.update(sum(len(tok.units[u].word) for b in chunks[i] for u in b))
    rank, world = shard or (0, 1)

    n_layers, H, n_sent = encoder.n_layers + 1, encoder.hidden, len(data.sentences)
    # Small entries are assembled in memory and written with plain file writes (page
    # faults on fresh file-backed memmaps cost more than the copy); large ones go through
    # memmaps so that memory stays bounded. Same bytes either way.
    in_ram = n_layers * (n_total + 2 * n_sent) * H * 2 <= IN_RAM_ENTRY_BYTES
    # Chunks computed here stay in memory for the publish when the entry is small (no
    # read-back); resumed or other ranks' chunks are read from their files.
    keep = in_ram and publish
    kept: dict[int, dict[str, np.ndarray]] = {}
    unsaved: dict[int, dict[str, np.ndarray]] = {}
    interval = checkpoint_seconds if keep else 0.0

    def save(batch: dict[int, dict[str, np.ndarray]]):
        for i, arrays in batch.items():
            builder.write_chunk(i, **arrays)

    def save_unsaved_now():
        # On an error or interrupt: whatever is only in memory goes to disk before the
        # exception propagates, so the next run resumes from it. Best effort: the
        # original exception is what the caller must see.
        try:
            save(unsaved)
            unsaved.clear()
        except Exception as err:  # noqa: BLE001
            print(f"probe: warning: could not save finished chunks for resumption: {err}", file=sys.stderr)

    # Chunk files (npz, fsync) are written by one background thread while the next
    # chunk's forward runs; at most one write is pending.
    from concurrent.futures import ThreadPoolExecutor

    pending, inflight = None, {}
    last_save = time.monotonic()
    todo = [i for i in range(len(chunks)) if i not in done and i % world == rank]

    def forward(batch):
        return forward_batch(encoder, [tok.units[u] for u in batch], device, pad_id, dtype)

    results = in_order(forward, [b for i in todo for b in chunks[i]], workers)
    try:
        with torch_threads(intra_op), \
                ThreadPoolExecutor(max_workers=1, thread_name_prefix="probe-chunk-writer") as writer:
            for i in todo:
                parts = [next(results) for _ in chunks[i]]
                arrays = dict(vecs=np.concatenate([p[0] for p in parts], axis=1),
                              words=np.concatenate([p[1] for p in parts]),
                              first=np.concatenate([p[2] for p in parts], axis=1),
                              first_sent=np.concatenate([p[3] for p in parts]))
                if keep:
                    kept[i] = arrays
                unsaved[i] = arrays
                if time.monotonic() - last_save >= interval:
                    if pending is not None:
                        pending.result()
                    inflight = dict(unsaved)
                    pending = writer.submit(save, inflight)
                    unsaved.clear()
                    last_save = time.monotonic()
                bar.update(len(arrays["words"]))
            results.close()
            if pending is not None:
                pending.result()
            pending = None
    except BaseException:
        results.close()  # stop the forward workers before saving what they finished
        # The writer has finished (the executor's exit waits for it). If its last batch
        # failed, those chunks are retried with the rest.
        if pending is not None and pending.exception() is not None:
            unsaved.update(inflight)
        save_unsaved_now()
        raise
    bar.close()
    if not publish:  # every chunk was written (no checkpoint interval without a publish)
        return None
    missing = [i for i in range(len(chunks)) if i not in kept and not builder.has_chunk(i)]
    if missing:
        raise ProbeError(f"cannot publish {key.path.name}: chunks {missing[:5]} not computed (shards missing?)")

    def build(tmp: Path) -> dict:
        def new_array(name, shape):
            if in_ram:
                return np.zeros(shape, dtype=np.float16)
            return np.lib.format.open_memmap(tmp / name, mode="w+", dtype=np.float16, shape=shape)

        def chunk(i):
            z = kept.get(i)
            if z is None:
                with builder.read_chunk(i) as f:
                    z = {k: f[k] for k in f.files}
            return z

        seen = np.zeros(n_total, dtype=bool)
        first = new_array("sent_first.npy", (n_layers, n_sent, H))
        # In memory, every chunk is kept (bounded by IN_RAM_ENTRY_BYTES) and each layer is
        # assembled by its own publish task below; through memmaps, chunks are scattered
        # one at a time, so memory stays bounded by a chunk.
        zs = []
        layers = [None if in_ram else new_array(f"layer_{l:02d}.npy", (n_total, H)) for l in range(n_layers)]
        for i in range(len(chunks)):
            z = chunk(i)
            if in_ram:
                zs.append(z)
            else:
                for l in range(n_layers):
                    layers[l][z["words"]] = z["vecs"][l]
            first[:, z["first_sent"]] = z["first"]
            seen[z["words"]] = True
        seen[np.asarray(tok.clipped_words, dtype=np.int64)] = True
        if not seen.all():
            missing = int((~seen).sum())
            raise ProbeError(f"internal error: {missing} words received no vector")
        mean = new_array("sent_mean.npy", (n_layers, n_sent, H))
        sentence_means = SentenceMeans(tok.offsets)

        def finish_layer(l):
            layer = layers[l]
            if layer is None:
                layer = np.zeros((n_total, H), dtype=np.float16)
                for z in zs:
                    layer[z["words"]] = z["vecs"][l]
            mean[l] = sentence_means(layer)  # of the stored float16 vectors, summed in float32
            if in_ram:
                builder.save_array(tmp, f"layer_{l:02d}.npy", layer)
            else:
                layer.flush()

        # The cores are free once the forward passes are done: each layer is assembled,
        # averaged per sentence, written, checksummed and fsynced on one of two threads
        # (numpy, hashlib and file I/O release the GIL) while this thread writes the rest.
        # (One torch thread each: the sentence means are the only torch work here.)
        with torch_threads(1), ThreadPoolExecutor(max_workers=2, thread_name_prefix="probe-publish") as pool:
            layer_jobs = [pool.submit(finish_layer, l) for l in range(n_layers)]
            if in_ram:
                builder.save_array(tmp, "sent_first.npy", first)
            else:
                first.flush()
            builder.save_array(tmp, "offsets.npy", tok.offsets)
            for name, arr in getattr(tok, "entry_arrays", dict)().items():  # input="text": flagged.npy
                builder.save_array(tmp, name, arr)
            labels_meta = {}
            if is_pair:
                seg = np.concatenate([(np.arange(len(w)) >= (k if k is not None else len(w))).astype(np.int8)
                                      for w, k in zip(sentences_words, n_first)])
                builder.save_array(tmp, "segment.npy", seg)
            for name, (arr, vocab) in label_arrays(data.sentences).items():
                builder.save_array(tmp, f"{name}.npy", arr)
                labels_meta[name] = {"vocab": vocab, "dtype": str(arr.dtype), "missing": -1}
            atomic_write_json(tmp / "words.json", sentences_words)
            atomic_write_json(tmp / "sent_ids.json", [s.sent_id for s in data.sentences])
            for job in layer_jobs:
                job.result()
        if in_ram:
            builder.save_array(tmp, "sent_mean.npy", mean)
        else:
            mean.flush()
        return {
            "format_version": FORMAT_VERSION,
            "key": key.digest,
            "key_fields": key.__dict__,
            "probe_version": __version__,
            "model": {"name": spec.name, "fingerprint": spec.fingerprint, "source": spec.source,
                      "note": spec.note},
            "corpus": {"name": data.name, "lang": data.lang, "split": data.split,
                       "sha256": data.sha256, "files": data.files},
            "layer_indexing": "0 = embedding output, n_layers = last transformer layer",
            "n_layers": encoder.n_layers,
            "hidden": H,
            "dtype": "float16",
            "pooling": pooling,
            "input": tok.entry_meta() if input == "text" else {"mode": "words"},
            "n_sentences": n_sent,
            "n_words": n_total,
            "n_pieces": int(sum(lengths)),
            "labels": labels_meta,
            "compute_dtype": dtype,
            "extractor": {"version": EXTRACTOR_VERSION, "batch_tokens": batch_tokens,
                          "max_length": encoder.max_length, "device": device,
                          "device_type": device.split(":")[0], "compute_dtype": dtype,
                          "autocast": dtype != DEFAULT_DTYPE, "segment_ids": bool(segments),
                          "workers": workers, "intra_op_threads": intra_op,
                          "windowed_sentences": tok.n_windowed,
                          "clipped_words": tok.n_clipped_words + len(tok.clipped_words),
                          "zero_vector_words": tok.clipped_words[:1000],
                          "sentence_pairs": is_pair,
                          "words_replaced_by_unk": tok.n_replaced_words,
                          "seconds": round(time.time() - t0, 2)},
        }

    try:
        return builder.publish(build)
    except BaseException:
        save_unsaved_now()  # a failed publish (disk full, interrupt) keeps the forward work
        raise
