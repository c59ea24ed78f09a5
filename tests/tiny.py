"""Tiny random-weight encoders and in-memory corpora for fast unit tests.

Never used for reported results: the weights are random.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from probe.encoders import EncoderSpec

LETTERS = "abcdefghij"


def unigram_tokenizer():
    """A SentencePiece-style (Unigram + Metaspace) fast tokenizer over a toy vocabulary."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    pieces = [("<s>", 0.0), ("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    pieces += [(f"\u2581{c}", -3.0) for c in LETTERS]
    pieces += [(c, -4.0) for c in LETTERS]
    pieces += [("\u4e2d", -5.0), ("\u6587", -5.0)]  # Han pieces that never carry a "▁"
    tok = Tokenizer(models.Unigram(pieces, unk_id=3, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always")
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", 0), ("</s>", 2)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                                   unk_token="<unk>", pad_token="<pad>", cls_token="<s>",
                                   sep_token="</s>", model_max_length=1_000_000)


def tiny_bert(max_positions=24, layers=2, hidden=16, vocab_size=32, seed=0):
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=vocab_size, hidden_size=hidden, num_hidden_layers=layers,
                     num_attention_heads=2, intermediate_size=2 * hidden,
                     max_position_embeddings=max_positions, pad_token_id=1)
    return BertModel(cfg, add_pooling_layer=False).eval()


def tiny_spec(max_positions=24, layers=2, hidden=16, seed=0, name="tiny") -> EncoderSpec:
    fp = hashlib.sha256(f"{name}|{max_positions}|{layers}|{hidden}|{seed}".encode()).hexdigest()

    def loader():
        return tiny_bert(max_positions, layers, hidden, seed=seed), unigram_tokenizer()

    return EncoderSpec(name=name, fingerprint=fp, source="tests/tiny.py", loader=loader)


@dataclass
class Sent:
    sent_id: str
    words: list
    text: str = ""
    upos: list | None = None
    head: list | None = None
    deprel: list | None = None
    space_after: list = field(default_factory=list)
    tags: list | None = None
    label: str | None = None
    n_first: int | None = None


@dataclass
class MemCorpus:
    """Stands in for probe.data.Corpus."""

    sentences: list
    name: str = "mem"
    lang: str = "xx"
    split: str = "test"
    files: list = field(default_factory=list)

    @property
    def sha256(self) -> str:
        h = hashlib.sha256()
        for s in self.sentences:
            h.update(("\t".join(s.words) + "\n").encode())
        return h.hexdigest()

    @property
    def n_words(self) -> int:
        return sum(len(s.words) for s in self.sentences)


def random_corpus(n=40, seed=0, max_len=12, long_every=0, long_len=60):
    rng = np.random.default_rng(seed)
    tags = ["NOUN", "VERB", "ADJ"]
    sents = []
    for i in range(n):
        k = long_len if long_every and i % long_every == 0 else int(rng.integers(1, max_len))
        words = ["".join(rng.choice(list(LETTERS), size=int(rng.integers(1, 4)))) for _ in range(k)]
        sents.append(Sent(sent_id=f"s{i}", words=words, text=" ".join(words),
                          upos=[tags[len(w) % 3] for w in words],
                          head=[0] + [1] * (k - 1), deprel=["root"] + ["dep:x"] * (k - 1)))
    return MemCorpus(sents)


def tiny_corpus_def(n: int = 120, seed: int = 0):
    """A registrable corpus ``tiny`` (German, split ``test``) of ``random_corpus`` sentences,
    for command-line tests: ``monkeypatch.setitem(probe.data.CORPORA, "tiny", tiny_corpus_def())``."""
    from probe.data import CorpusDef
    from probe.languages import get_language

    class TinyCorpus(CorpusDef):
        name = "tiny"
        description = "random letters (tests only)"
        splits = ("test",)

        def languages(self):
            return [get_language("de")]

        def remote_files(self, lang, split):
            return []

        def load(self, lang, split, *, progress=True):
            corpus = random_corpus(n=n, seed=seed)
            return MemCorpus(corpus.sentences, name="tiny", lang=self.check(lang, split).code, split=split)

    return TinyCorpus()
