"""Tiny save_pretrained stand-ins of real architectures, with their kind of tokenizer.

Each stand-in is a directory that ``probe`` loads like any local model (config.json,
model.safetensors, tokenizer.json), so the whole real loading path is exercised:
BERT + WordPiece (segment ids on sentence pairs, a pooler in the checkpoint), XLM-R +
SentencePiece, DistilBERT + WordPiece, DeBERTa-v2 + SentencePiece, and an mT5
encoder-decoder checkpoint + SentencePiece (only its encoder may run).

Random weights: for conformance tests only, never for results.
"""
from __future__ import annotations

from pathlib import Path

WORDS = ["the", "house", "is", "red", "das", "Haus", "ist", "rot", "un", "believ", "able",
         "ing", "sch", "ön", "我", "们", "中", "文", "好", ".", ","]
LETTERS = "abcdefghijklmnopqrstuvwxyzäöüéHDS"


def wordpiece_tokenizer(pair_type_ids: bool = True):
    """A cased WordPiece tokenizer (``[CLS] A [SEP] B [SEP]``, B with segment id 1)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab += [w for w in WORDS] + [c for c in LETTERS if c not in WORDS]
    vocab += ["##" + w for w in ("able", "ing", "ön", "s", "e", "n")] + ["##" + c for c in LETTERS]
    vocab = list(dict.fromkeys(vocab))
    ids = {t: i for i, t in enumerate(vocab)}
    tok = Tokenizer(models.WordPiece(ids, unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(lowercase=False, strip_accents=False,
                                                handle_chinese_chars=True, clean_text=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    b = "$B:1 [SEP]:1" if pair_type_ids else "$B [SEP]"
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair=f"[CLS] $A [SEP] {b}",
        special_tokens=[("[CLS]", ids["[CLS]"]), ("[SEP]", ids["[SEP]"])])
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]",
                                   cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]",
                                   model_max_length=512,
                                   model_input_names=["input_ids", "token_type_ids", "attention_mask"])


def sentencepiece_tokenizer(frame: str = "xlmr"):
    """A SentencePiece-style (Unigram + Metaspace) tokenizer with the special-token frame of
    XLM-R (``<s> A </s></s> B </s>``), DeBERTa-v2 (``[CLS] A [SEP] B [SEP]``) or T5
    (``A </s> B </s>``)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    if frame == "t5":
        specials = ["<pad>", "</s>", "<unk>"]
    elif frame == "deberta":
        specials = ["[PAD]", "[CLS]", "[SEP]", "[UNK]"]
    else:
        specials = ["<s>", "<pad>", "</s>", "<unk>"]
    pieces = [(s, 0.0) for s in specials] + [("\u2581", -2.0)]
    pieces += [(f"\u2581{w}", -3.0) for w in WORDS if w not in ("able", "ing", "ön")]
    pieces += [(w, -3.5) for w in ("able", "ing", "ön", "believ")]
    pieces += [(f"\u2581{c}", -6.0) for c in LETTERS] + [(c, -7.0) for c in LETTERS]
    pieces += [(c, -5.0) for c in "我们中文好"]  # Han pieces without a "▁" (a bare ▁ precedes them)
    pieces = list(dict.fromkeys(pieces))
    unk = specials.index(specials[-1])
    tok = Tokenizer(models.Unigram(pieces, unk_id=unk, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always")
    ids = {p: i for i, (p, _s) in enumerate(pieces)}
    if frame == "t5":
        post = processors.TemplateProcessing(single="$A </s>", pair="$A </s> $B:1 </s>:1",
                                             special_tokens=[("</s>", ids["</s>"])])
        kw = dict(eos_token="</s>", unk_token="<unk>", pad_token="<pad>")
    elif frame == "deberta":
        post = processors.TemplateProcessing(single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
                                             special_tokens=[("[CLS]", ids["[CLS]"]), ("[SEP]", ids["[SEP]"])])
        kw = dict(cls_token="[CLS]", sep_token="[SEP]", unk_token="[UNK]", pad_token="[PAD]")
    else:
        post = processors.TemplateProcessing(single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>",
                                             special_tokens=[("<s>", ids["<s>"]), ("</s>", ids["</s>"])])
        kw = dict(bos_token="<s>", eos_token="</s>", cls_token="<s>", sep_token="</s>",
                  unk_token="<unk>", pad_token="<pad>")
    tok.post_processor = post
    return PreTrainedTokenizerFast(tokenizer_object=tok, model_max_length=512, **kw)


def _bert(vocab, layers, hidden, with_pooler=True):
    from transformers import BertConfig, BertModel

    cfg = BertConfig(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
                     intermediate_size=2 * hidden, max_position_embeddings=64, type_vocab_size=2,
                     pad_token_id=0)
    return BertModel(cfg, add_pooling_layer=with_pooler)


def _xlmr(vocab, layers, hidden):
    from transformers import XLMRobertaConfig, XLMRobertaModel

    cfg = XLMRobertaConfig(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers,
                           num_attention_heads=2, intermediate_size=2 * hidden,
                           max_position_embeddings=66, type_vocab_size=1, pad_token_id=1,
                           bos_token_id=0, eos_token_id=2)
    return XLMRobertaModel(cfg, add_pooling_layer=False)


def _distilbert(vocab, layers, hidden):
    from transformers import DistilBertConfig, DistilBertModel

    cfg = DistilBertConfig(vocab_size=vocab, dim=hidden, n_layers=layers, n_heads=2, hidden_dim=2 * hidden,
                           max_position_embeddings=64, pad_token_id=0)
    return DistilBertModel(cfg)


def _deberta(vocab, layers, hidden):
    from transformers import DebertaV2Config, DebertaV2Model

    cfg = DebertaV2Config(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers,
                          num_attention_heads=2, intermediate_size=2 * hidden, max_position_embeddings=64,
                          relative_attention=True, position_buckets=16, max_relative_positions=-1,
                          pos_att_type=["p2c", "c2p"], position_biased_input=False, share_att_key=True,
                          norm_rel_ebd="layer_norm", type_vocab_size=0, pad_token_id=0)
    return DebertaV2Model(cfg)


def _mt5(vocab, layers, hidden):
    from transformers import MT5Config, MT5Model

    cfg = MT5Config(vocab_size=vocab, d_model=hidden, d_ff=2 * hidden, d_kv=hidden // 2, num_heads=2,
                    num_layers=layers, num_decoder_layers=1, feed_forward_proj="gated-gelu",
                    relative_attention_num_buckets=8, pad_token_id=0, eos_token_id=1,
                    decoder_start_token_id=0, tie_word_embeddings=False)
    return MT5Model(cfg)  # the whole encoder-decoder, as mT5 checkpoints are published


# name -> (model builder, tokenizer builder)
STANDINS = {
    "bert": (_bert, wordpiece_tokenizer),
    "xlmr": (_xlmr, lambda: sentencepiece_tokenizer("xlmr")),
    "distilbert": (_distilbert, lambda: wordpiece_tokenizer(pair_type_ids=False)),
    "deberta-v2": (_deberta, lambda: sentencepiece_tokenizer("deberta")),
    "mt5": (_mt5, lambda: sentencepiece_tokenizer("t5")),
}


def build_standin(kind: str, out: Path, layers: int = 2, hidden: int = 16, seed: int = 0) -> Path:
    """Write stand-in ``kind`` (see :data:`STANDINS`) to ``out`` with save_pretrained."""
    import torch

    make_model, make_tok = STANDINS[kind]
    tok = make_tok()
    torch.manual_seed(seed)
    model = make_model(len(tok.get_vocab()), layers, hidden).eval()
    out = Path(out)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out
