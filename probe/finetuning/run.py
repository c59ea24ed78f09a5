"""The paper's own experiment: DLFA inside an end-to-end fine-tuned encoder.

:func:`finetune` is the API behind ``probe finetune``. For one XTREME task it fine-tunes the
*whole* encoder plus a task head on English, keeps the epoch with the best English-dev score,
and evaluates that model zero-shot on each target language, for every fusion setting and
seed asked for:

* ``none``: standard fine-tuning (the paper's baseline): the head reads the last layer L;
* ``dlfa:K``: the AIF/DLFA block of :mod:`probe.fusion` (reused as is) fuses layer K with the
  last layer, ``Z = M * X_L + (1 - M) * X_K``, and the head reads ``Z``; encoder, block and
  head are trained jointly. ``dlfa:all`` runs every K = 0..L-1 and picks K on English dev;
* ``dlfa-matched:K``: the capacity-matched control, :class:`probe.fusion.FixedGateFusion`
  (DLFA's AIF block and parameter count, the two layers always weighted 0.5 each);
* ``dlfa-fixed:K``: the control with the gate fixed at 0.5 (``Z = (X_L + X_K) / 2``): same
  head, same layers, no attention block, so "DLFA beats standard fine-tuning" can be told
  apart from "mixing in layer K at all helps".

Recipe (XTREME's defaults; every one an argument and recorded in ``finetune.json``): AdamW,
learning rate 2e-5, linear schedule with warm-up (10% of the steps), batch 32, max length
128, gradient clipping at 1.0, weight decay 0. Word-level tasks label the first subword of
each word (the first *content* piece: a bare SentencePiece ``▁`` piece is skipped); words cut
off by the max length count as wrong in evaluation (their number is reported). Sentence
pairs are encoded together; models whose config has ``type_vocab_size >= 2`` get segment ids
(0 for the first sentence, 1 from the first piece of the second). Pair heads read the first
token (``<s>``/``[CLS]``) of the (fused) sequence.

Speed on CPU: the ~96M-parameter word-embedding matrix of multilingual models dominates an
AdamW step when every row is updated. ``embeddings="sparse"`` (default) computes a sparse
gradient and updates only the rows a batch used (AdamW moments kept per row, bias
correction from the global step: "lazy" AdamW; with weight decay 0 its first step equals
dense AdamW's exactly); ``"freeze"`` keeps the matrix fixed; ``"full"`` is dense AdamW. On a
GPU, ``dtype="bfloat16"``/``"float16"`` (the toolkit's ``--dtype`` vocabulary; the older
``precision="bf16"|"fp16"`` still works, deprecated) runs forward and backward under autocast
(float16 with a gradient scaler) and ``grad_accum`` splits each batch into micro-batches (the
loss is normalised over the whole batch, so the update equals the unsplit one up to rounding).

Resume: after every epoch a checkpoint (weights that can change, optimiser, schedule, dev
history, best epoch's weights) is written atomically under ``<out>/runs``; a run started again
continues after the last finished epoch, and a finished run is read back, not retrained. Each
epoch's data order and dropout are seeded by ``(seed, epoch)``, so a resumed run ends with the
same weights as an uninterrupted one.

Numbers: the definitions of ``probe fuse``, from :mod:`probe.stats`, so both harnesses mean the
same thing by every number. Per target: the seed-mean score and a 95% interval over seeds *and*
target sentences (:func:`probe.stats.seed_sentence_bootstrap`; with one seed, target sentences
only); the gain over ``none`` and, for ``dlfa:K``, over its control at the same K
(``dlfa-matched:K`` / ``dlfa-fixed:K``: does fusion help, or only the extra capacity?), each
with a seed-and-sentence interval (the sentences resampled paired, each system's seeds
independently; one seed: no gain interval); the majority-class rate (English training's most
frequent label predicted everywhere, scored with the task metric) and the chance rate (random
labels drawn with the English training frequencies), :func:`probe.stats.reference_rates`. A
method whose interval reaches down to the majority rate is marked "at chance"
(:func:`probe.stats.at_chance`). PAWS-X target pairs that are English training or selection
pairs are dropped before scoring and counted (``leakage``,
:func:`probe.data.xtreme.source_overlap`); run records keep every target example, so the drop
happens when the report is built. Layer indices: 0 = embedding output, L = last layer.

>>> res = finetune("pos", "de,zh", model="e5-small-q4", fusion="none", seeds=1,
...                max_examples=2000, epochs=2)                 # doctest: +SKIP
>>> print(res.format_table()); res.save("out/finetune/pos")     # doctest: +SKIP
"""
from __future__ import annotations

import hashlib
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..errors import ProbeError
from ..options import count_or_all, parse_budget, parse_seeds
from ..results import ResultDisplay, SavedFiles, report_file

__all__ = [
    "finetune",
    "FinetuneResult",
    "FusionSpec",
    "parse_fusion",
    "FinetuneModel",
    "fixed_gate_module",
    "RowAdamW",
    "encode_examples",
    "example_counts",
    "score_from_counts",
    "PAPER_GAINS",
    "RECIPE",
    "summary_figure",
    "add_parser",
    "run",
]

SOURCE_LANG = "en"
RUN_VERSION = 1  # bump when a run's numbers would change for the same inputs
#: ``dtype`` (the toolkit's vocabulary, :data:`probe.extraction.DTYPES`) -> the value run keys
#: store under ``params["precision"]`` (the name runs were first recorded with; kept so that
#: existing run records keep their ids).
PRECISIONS = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}
IGNORE = -100

#: Zero-shot gains of DLFA over standard fine-tuning reported by arXiv 2205.08497 for mBERT
#: (points of accuracy; entity F1 for NER), as quoted in issue #14.
PAPER_GAINS = {"xnli": 1.5, "pawsx": 2.4, "ner": 1.2, "pos": 1.5}
PAPER = "arXiv 2205.08497 (DLFA with AIF; mBERT fine-tuned end to end)"

#: XTREME's fine-tuning recipe, the defaults of :func:`finetune`.
RECIPE = {"lr": 2e-5, "warmup": 0.1, "batch_size": 32, "max_length": 128,
          "weight_decay": 0.0, "max_grad_norm": 1.0, "adam_eps": 1e-8,
          "adam_betas": (0.9, 0.999), "dropout": 0.1}

#: Per-task default budgets (English train / English dev / each target, in examples; None =
#: all) and epochs, sized for a CPU; pass ``max_examples=None`` etc. for the full splits.
TASK_BUDGETS = {"pos": (2000, 500, 1000), "ner": (2000, 500, 1000),
                "xnli": (2000, 500, 1000), "pawsx": (None, None, 1000)}

#: What each task trains on, named in every output (the mirror's data, see its README).
TRAINING_DATA = {
    "pos": "UD POS (XTREME udpos) English train file",
    "ner": "PAN-X/WikiANN (XTREME panx) English train file",
    "xnli": "XNLI train: the mirror's 10k MultiNLI subset (TaxiNLI), not the full 393k",
    "pawsx": "PAWS-X: no training file is mirrored; a seeded 75% of English dev trains, the "
             "other 25% selects (target dev splits are that held-out share only)",
}


def _log_default(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- fusion specs


@dataclass(frozen=True)
class FusionSpec:
    """One fusion setting: ``kind`` is ``none``, ``dlfa`` or ``dlfa-fixed``; ``k`` the layer."""

    kind: str
    k: int | None = None

    @property
    def name(self) -> str:
        return self.kind if self.k is None else f"{self.kind}:{self.k}"


_FUSION_KINDS = ("none", "dlfa", "dlfa-fixed", "dlfa-matched")


def parse_fusion(text, n_layers: int | None) -> list[FusionSpec]:
    """``"none,dlfa:6,dlfa-fixed:6"`` / ``"dlfa:all"`` -> specs (``all`` = K 0..L-1).

    ``n_layers`` is L (None: K is not range-checked and ``all`` is refused).
    """
    items = text if isinstance(text, (list, tuple)) else str(text).split(",")
    out: list[FusionSpec] = []
    for raw in items:
        if isinstance(raw, FusionSpec):
            out.append(raw)
            continue
        item = str(raw).strip().lower()
        if not item:
            continue
        kind, _, k = item.partition(":")
        if kind not in _FUSION_KINDS:
            raise ProbeError(f"unknown fusion {raw!r}; use none, dlfa:K, dlfa:all, dlfa-fixed:K, dlfa-matched:K")
        if kind == "none":
            if k:
                raise ProbeError(f"fusion 'none' takes no layer, got {raw!r}")
            out.append(FusionSpec("none"))
            continue
        if not k:
            raise ProbeError(f"fusion {kind!r} needs a layer: {kind}:K or {kind}:all")
        if k == "all":
            if n_layers is None:
                raise ProbeError(f"{kind}:all needs the model's number of layers")
            out += [FusionSpec(kind, i) for i in range(n_layers)]
            continue
        try:
            kk = int(k)
        except ValueError:
            raise ProbeError(f"bad layer in fusion {raw!r}: expected an integer or 'all'") from None
        if n_layers is not None and not 0 <= kk < n_layers:
            raise ProbeError(f"fused layer K must be in 0..{n_layers - 1} (0 = embeddings; "
                             f"layer {n_layers} is the last layer itself), got {kk}")
        out.append(FusionSpec(kind, kk))
    if not out:
        raise ProbeError("no fusion setting given")
    return list(dict.fromkeys(out))


# ----------------------------------------------------------------------------- encoding


@dataclass
class Encoded:
    """Tokenised examples of one split.

    ``ids[i]``, ``types[i]``: ``[n_pieces_i]`` int64 token and segment ids; ``positions[i]``:
    ``[n_words_i]`` piece index of each word's first content piece (-1 = cut off by the max
    length); ``labels[i]``: ``[n_words_i]`` label ids (-1 = unlabelled) for tagging, else one
    int per example in ``labels`` (an array ``[n]``).
    """

    kind: str
    ids: list
    types: list
    positions: list
    labels: object
    n_truncated_words: int = 0

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def lengths(self) -> np.ndarray:
        return np.fromiter((len(x) for x in self.ids), dtype=np.int64, count=len(self.ids))


def encode_examples(tokenizer, sentences, kind: str, label_names: Sequence[str],
                    max_length: int = 128, segment_ids: bool = True) -> Encoded:
    """Tokenise corpus sentences (``words``; ``tags`` or ``label`` + ``n_first``) for training."""
    index = {v: i for i, v in enumerate(label_names)}

    def lab(v):
        if v is None:
            return -1
        try:
            return index[v]
        except KeyError:
            raise ProbeError(f"label {v!r} is not one of the task's labels "
                             f"({', '.join(label_names)})") from None

    vocab = tokenizer.get_vocab()
    bare = vocab.get("\u2581")
    sentences = list(sentences)
    ids, types, positions, labels = [], [], [], []
    truncated = 0
    step = 256
    for start in range(0, len(sentences), step):
        chunk = sentences[start:start + step]
        if kind == "tagging":
            enc = tokenizer([list(s.words) for s in chunk], is_split_into_words=True,
                            truncation=True, max_length=max_length)
        else:
            enc = tokenizer([list(s.words[:s.n_first]) for s in chunk],
                            [list(s.words[s.n_first:]) for s in chunk],
                            is_split_into_words=True, truncation=True, max_length=max_length)
        for j, s in enumerate(chunk):
            row = np.asarray(enc["input_ids"][j], dtype=np.int64)
            ids.append(row)
            seq = enc.sequence_ids(j)
            tt = np.zeros(len(row), dtype=np.int64)
            if kind != "tagging" and segment_ids:
                second = [p for p, q in enumerate(seq) if q == 1]
                if second:
                    tt[second[0]:] = 1
            types.append(tt)
            if kind == "tagging":
                wids = enc.word_ids(j)
                pos = np.full(len(s.words), -1, dtype=np.int64)
                for p, w in enumerate(wids):
                    if w is None:
                        continue
                    if pos[w] < 0:
                        pos[w] = p
                    elif row[pos[w]] == bare and pos[w] == p - 1:
                        pos[w] = p  # first *content* piece: skip a bare "▁"
                truncated += int((pos < 0).sum())
                positions.append(pos)
                labels.append(np.asarray([lab(t) for t in s.tags], dtype=np.int64))
            else:
                positions.append(np.zeros(1, dtype=np.int64))
                labels.append(lab(s.label))
    if kind != "tagging":
        labels = np.asarray(labels, dtype=np.int64)
    return Encoded(kind, ids, types, positions, labels, truncated)


def _collate(enc: Encoded, rows: np.ndarray, pad_id: int, device):
    """A padded batch: ``input_ids, attention_mask, token_type_ids: [B, T]`` and targets
    (``[B, T]`` with IGNORE off labelled first pieces for tagging, ``[B]`` for pairs)."""
    import torch

    lens = [len(enc.ids[r]) for r in rows]
    width = max(lens)
    ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    types = np.zeros((len(rows), width), dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for b, r in enumerate(rows):
        n = lens[b]
        ids[b, :n] = enc.ids[r]
        types[b, :n] = enc.types[r]
        mask[b, :n] = 1
    if enc.kind == "tagging":
        y = np.full((len(rows), width), IGNORE, dtype=np.int64)
        for b, r in enumerate(rows):
            pos, lab = enc.positions[r], enc.labels[r]
            keep = (pos >= 0) & (lab >= 0)
            y[b, pos[keep]] = lab[keep]
    else:
        y = np.asarray(enc.labels)[rows].copy()
        y[y < 0] = IGNORE
    t = lambda a: torch.from_numpy(a).to(device)  # noqa: E731
    return t(ids), t(mask), t(types), t(y)


# ----------------------------------------------------------------------------- model


def fixed_gate_module():
    import torch
    from torch import nn

    class _FixedGateModule(nn.Module):
        """The gate-fixed control: ``Z = g * X_L + (1 - g) * X_K`` with ``g = 0.5``, padding 0.

        ``forward(x_last: [B, T, E], y_k: [B, T, E], mask: [B, T] bool) -> [B, T, E]``;
        no parameters (the same head as DLFA reads it)."""

        def __init__(self, gate: float = 0.5):
            super().__init__()
            self.gate = float(gate)

        def forward(self, x_last, y_k, mask):
            z = self.gate * x_last + (1.0 - self.gate) * y_k
            return torch.where(mask.unsqueeze(-1), z, torch.zeros((), dtype=z.dtype,
                                                                   device=z.device))

    return _FixedGateModule


def _build_model_class():
    from torch import nn

    from ..fusion import DLFA, FixedGateFusion, TokenTaggingHead

    class FinetuneModel(nn.Module):
        """Encoder + optional layer fusion + task head, trained end to end.

        ``forward(input_ids, attention_mask, token_type_ids=None) -> logits`` with logits
        ``[B, T, C]`` (tagging: every piece; the loss reads first pieces) or ``[B, C]`` (pairs:
        the first token of the fused sequence). ``fusion.kind == "dlfa"``: :class:`probe.fusion.DLFA`
        over hidden states ``K`` and ``L``; ``"dlfa-fixed"``: the 0.5 gate (no parameters);
        ``"dlfa-matched"``: :class:`probe.fusion.FixedGateFusion`, the 0.5 gate with DLFA's own
        AIF block (the same parameter count as DLFA); ``"none"``: layer L.
        """

        def __init__(self, encoder, kind: str, n_labels: int, fusion: FusionSpec,
                     dropout: float = 0.1, r: int = 4, norm: str = "layer",
                     use_token_types: bool = True):
            super().__init__()
            self.encoder = encoder
            self.kind = kind
            self.fusion_spec = fusion
            self.use_token_types = use_token_types
            hidden = int(encoder.config.hidden_size)
            if fusion.kind == "dlfa":
                self.fusion = DLFA(hidden, r=r, norm=norm)
            elif fusion.kind == "dlfa-fixed":
                self.fusion = fixed_gate_module()(0.5)
            elif fusion.kind == "dlfa-matched":
                # capacity-matched control: DLFA's AIF block, the layers always at 0.5 each
                self.fusion = FixedGateFusion(hidden, fusion.k, int(encoder.config.num_hidden_layers),
                                              r=r, norm=norm)
            else:
                self.fusion = None
            if kind == "tagging":
                self.head = TokenTaggingHead(hidden, n_labels, dropout=dropout)
            else:
                self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden, n_labels))

        def features(self, input_ids, attention_mask, token_type_ids=None):
            """The (fused) sequence the head reads: ``[B, T, E]``."""
            need_all = self.fusion is not None
            kw = {}
            if token_type_ids is not None and self.use_token_types:
                kw["token_type_ids"] = token_type_ids
            out = self.encoder(input_ids=input_ids, attention_mask=attention_mask,
                               output_hidden_states=need_all, **kw)
            if not need_all:
                return out.last_hidden_state
            hs = out.hidden_states
            if self.fusion_spec.kind == "dlfa-matched":
                return self.fusion(hs, attention_mask.bool())
            return self.fusion(hs[-1], hs[self.fusion_spec.k], attention_mask.bool())

        def forward(self, input_ids, attention_mask, token_type_ids=None):
            z = self.features(input_ids, attention_mask, token_type_ids)
            if self.kind == "tagging":
                return self.head(z, attention_mask.bool())
            return self.head(z[:, 0])

    return FinetuneModel


def FinetuneModel(*args, **kwargs):  # noqa: N802 - a class built lazily (torch import)
    """See ``_build_model_class``: ``FinetuneModel(encoder, kind, n_labels, fusion, ...)``."""
    global _MODEL_CLASS
    if _MODEL_CLASS is None:
        _MODEL_CLASS = _build_model_class()
    return _MODEL_CLASS(*args, **kwargs)


_MODEL_CLASS = None


def _loss(logits, y):
    """Summed cross-entropy over labelled items (the caller divides by the batch's count)."""
    from torch.nn import functional as F

    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), y.reshape(-1),
                           ignore_index=IGNORE, reduction="sum")


# ----------------------------------------------------------------------------- optimiser


class RowAdamW:
    """AdamW for one embedding matrix whose gradient is sparse: only the rows a batch used
    are updated ("lazy" Adam; bias correction uses the global step, decoupled weight decay
    is applied to the updated rows only). ``touched`` marks rows ever updated, so a
    checkpoint stores just those rows.

    With ``weight_decay=0`` the first step equals dense AdamW's (untouched rows have zero
    moments and zero gradient, so dense AdamW leaves them unchanged too).
    """

    def __init__(self, weight, lr: float, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0):
        import torch

        self.weight = weight
        self.lr = lr
        self.base_lr = lr
        self.betas = tuple(betas)
        self.eps = eps
        self.weight_decay = weight_decay
        self.step_count = 0
        self.exp_avg = torch.zeros_like(weight, requires_grad=False)
        self.exp_avg_sq = torch.zeros_like(weight, requires_grad=False)
        self.touched = torch.zeros(weight.shape[0], dtype=torch.bool)

    def step(self) -> None:
        import torch

        g = self.weight.grad
        if g is None:
            return
        self.step_count += 1
        g = g.coalesce() if g.is_sparse else g.to_sparse().coalesce()
        rows, vals = g.indices()[0], g.values()
        if rows.numel() == 0:
            return
        b1, b2 = self.betas
        with torch.no_grad():
            w = self.weight.data
            m = self.exp_avg[rows].mul_(b1).add_(vals, alpha=1 - b1)
            v = self.exp_avg_sq[rows].mul_(b2).addcmul_(vals, vals, value=1 - b2)
            self.exp_avg[rows] = m
            self.exp_avg_sq[rows] = v
            bc1 = 1 - b1 ** self.step_count
            bc2 = 1 - b2 ** self.step_count
            wr = w[rows]
            if self.weight_decay:
                wr.mul_(1 - self.lr * self.weight_decay)
            denom = (v.sqrt() / math.sqrt(bc2)).add_(self.eps)
            wr.addcdiv_(m, denom, value=-self.lr / bc1)
            w[rows] = wr
            self.touched[rows.cpu()] = True

    def zero_grad(self) -> None:
        self.weight.grad = None

    def state_dict(self) -> dict:
        rows = self.touched.nonzero().flatten()
        return {"step": self.step_count, "rows": rows.clone(),
                "exp_avg": self.exp_avg[rows.to(self.exp_avg.device)].cpu().clone(),
                "exp_avg_sq": self.exp_avg_sq[rows.to(self.exp_avg.device)].cpu().clone()}

    def load_state_dict(self, state: dict) -> None:
        rows = state["rows"]
        self.step_count = int(state["step"])
        d = self.exp_avg.device
        self.exp_avg.zero_()
        self.exp_avg_sq.zero_()
        self.exp_avg[rows.to(d)] = state["exp_avg"].to(d)
        self.exp_avg_sq[rows.to(d)] = state["exp_avg_sq"].to(d)
        self.touched.zero_()
        self.touched[rows] = True


def _clip_(params, max_norm: float) -> float:
    """Global-norm clipping over dense and sparse gradients; returns the norm before."""
    import torch

    sq = []
    for p in params:
        g = p.grad
        if g is None:
            continue
        if g.is_sparse:
            g = g.coalesce()
            p.grad = g
            sq.append(g.values().float().pow(2).sum())
        else:
            sq.append(g.float().pow(2).sum())
    if not sq:
        return 0.0
    total = torch.stack(sq).sum().sqrt()
    if max_norm and max_norm > 0:
        coef = (max_norm / (total + 1e-6)).clamp(max=1.0)
        for p in params:
            if p.grad is None:
                continue
            if p.grad.is_sparse:
                p.grad = torch.sparse_coo_tensor(p.grad.indices(), p.grad.values() * coef,
                                                 p.grad.shape, check_invariants=False).coalesce()
            else:
                p.grad.mul_(coef.to(p.grad.dtype))
    return float(total)


def _linear_schedule(total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / max(1, warmup_steps)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    return factor


# ----------------------------------------------------------------------------- trainer


def _word_embeddings(encoder):
    emb = encoder.get_input_embeddings()
    if emb is None or not hasattr(emb, "weight"):
        raise ProbeError("this encoder exposes no input embedding matrix")
    return emb


class _Trainer:
    """One (fusion, seed) run: training with per-epoch checkpoints, selection, evaluation."""

    def __init__(self, model, train: Encoded, dev: Encoded, *, kind: str, metric: str,
                 label_names, params: dict, seed: int, pad_id: int, device: str,
                 ckpt_path: Path | None, log: Callable[[str], None]):
        self.model = model
        self.train, self.dev = train, dev
        self.kind, self.metric, self.label_names = kind, metric, list(label_names)
        self.p = params
        self.seed = int(seed)
        self.pad_id = pad_id
        self.device = device
        self.ckpt_path = ckpt_path
        self.log = log
        self._setup_optim()

    # ---------------------------------------------------------------- optimiser
    def _setup_optim(self) -> None:
        import torch

        p = self.p
        emb = _word_embeddings(self.model.encoder)
        self.emb = emb
        mode = p["embeddings"]
        if mode not in ("sparse", "freeze", "full"):
            raise ProbeError(f"embeddings must be sparse, freeze or full, got {mode!r}")
        emb.weight.requires_grad_(mode != "freeze")
        emb.sparse = mode == "sparse"
        decay, no_decay = [], []
        for name, prm in self.model.named_parameters():
            if prm is emb.weight or not prm.requires_grad:
                continue
            (no_decay if prm.ndim < 2 or "norm" in name.lower() else decay).append(prm)
        if mode == "full":
            decay.append(emb.weight)
        groups = [{"params": decay, "weight_decay": p["weight_decay"]},
                  {"params": no_decay, "weight_decay": 0.0}]
        self.opt = torch.optim.AdamW(groups, lr=p["lr"], betas=tuple(p["adam_betas"]),
                                     eps=p["adam_eps"])
        self.row_opt = (RowAdamW(emb.weight, p["lr"], p["adam_betas"], p["adam_eps"],
                                 p["weight_decay"]) if mode == "sparse" else None)
        self.trainable = [q for g in groups for q in g["params"]] + (
            [emb.weight] if mode == "sparse" else [])
        micro = self._micro_size()
        n_batches = math.ceil(len(self.train) / p["batch_size"])
        self.total_steps = n_batches * p["epochs"]
        self.warmup_steps = int(round(p["warmup"] * self.total_steps))
        self.schedule = _linear_schedule(self.total_steps, self.warmup_steps)
        self.micro = micro
        self.step = 0

    def _micro_size(self) -> int:
        bs, acc = int(self.p["batch_size"]), int(self.p["grad_accum"])
        if acc < 1 or bs < 1 or bs % acc:
            raise ProbeError(f"batch_size ({bs}) must be a positive multiple of grad_accum ({acc})")
        return bs // acc

    def _set_lr(self) -> None:
        lr = self.p["lr"] * self.schedule(self.step)
        for g in self.opt.param_groups:
            g["lr"] = lr
        if self.row_opt is not None:
            self.row_opt.lr = lr

    def _autocast(self):
        import contextlib

        import torch

        prec = self.p["precision"]
        if prec == "fp32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if prec == "bf16" else torch.float16
        dev = "cuda" if str(self.device).startswith("cuda") else "cpu"
        return torch.autocast(dev, dtype=dtype)

    # ---------------------------------------------------------------- batches
    def epoch_batches(self, epoch: int) -> list[np.ndarray]:
        """Seeded by (seed, epoch): random order, then length-sorted within pools of 50
        batches so that a batch needs little padding; batch order shuffled again."""
        rng = np.random.default_rng([self.seed, epoch, 7])
        order = rng.permutation(len(self.train))
        lengths = self.train.lengths
        bs = int(self.p["batch_size"])
        pool = bs * 50
        batches = []
        for s in range(0, len(order), pool):
            chunk = order[s:s + pool]
            chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
            batches += [chunk[i:i + bs] for i in range(0, len(chunk), bs)]
        perm = rng.permutation(len(batches))
        return [batches[i] for i in perm]

    def train_step(self, rows: np.ndarray) -> float:
        """One optimiser step on a batch (micro-batches of ``batch_size / grad_accum``)."""
        import torch

        self.model.train()
        parts = [rows[i:i + self.micro] for i in range(0, len(rows), self.micro)]
        collated = [_collate(self.train, r, self.pad_id, self.device) for r in parts]
        n_items = sum(int((c[3] != IGNORE).sum()) for c in collated)
        if n_items == 0:
            self.step += 1
            return float("nan")
        self._set_lr()
        total = 0.0
        scaler = getattr(self, "_scaler", None)
        for ids, mask, types, y in collated:
            with self._autocast():
                logits = self.model(ids, mask, types)
            loss = _loss(logits, y) / n_items
            if scaler is not None:
                scaler.scale(loss).backward()
            else:
                loss.backward()
            total += float(loss.detach())
        row_ok = True
        if scaler is not None:
            scaler.unscale_(self.opt)
            g = self.emb.weight.grad
            if self.row_opt is not None and g is not None:
                # the scaler only unscales (and checks) the dense optimiser's gradients
                g = g.coalesce()
                vals = g.values() / scaler.get_scale()
                row_ok = bool(torch.isfinite(vals).all())
                self.emb.weight.grad = torch.sparse_coo_tensor(g.indices(), vals, g.shape,
                                                                check_invariants=False)
        _clip_(self.trainable, self.p["max_grad_norm"])
        if scaler is not None:
            scaler.step(self.opt)
            scaler.update()
        else:
            self.opt.step()
        if self.row_opt is not None:
            if row_ok:
                self.row_opt.step()
            self.row_opt.zero_grad()
        self.opt.zero_grad(set_to_none=True)
        self.step += 1
        return total

    # ---------------------------------------------------------------- checkpoints
    def _changing_state(self) -> dict:
        """Weights that training can change: all but the word embeddings, plus the rows of
        those the sparse optimiser touched (or all of them when updated densely)."""
        out = {}
        emb_name = None
        for name, prm in self.model.named_parameters():
            if prm is self.emb.weight:
                emb_name = name
                continue
            out[name] = prm.detach().cpu().clone()
        for name, buf in self.model.named_buffers():
            out[name] = buf.detach().cpu().clone()
        mode = self.p["embeddings"]
        if mode == "full":
            out[emb_name] = self.emb.weight.detach().cpu().clone()
        elif mode == "sparse":
            rows = self.row_opt.touched.nonzero().flatten()
            out["__emb_rows__"] = rows.clone()
            out["__emb_vals__"] = self.emb.weight.detach()[rows.to(self.emb.weight.device)].cpu().clone()
        out["__emb_name__"] = emb_name
        return out

    def _load_changing_state(self, state: dict, base_emb=None) -> None:
        import torch

        own = dict(self.model.named_parameters())
        own.update(dict(self.model.named_buffers()))
        with torch.no_grad():
            for name, v in state.items():
                if name.startswith("__"):
                    continue
                own[name].copy_(v.to(own[name].device))
            if "__emb_rows__" in state:
                w = self.emb.weight
                if base_emb is not None:
                    w.copy_(base_emb.to(w.device))
                w[state["__emb_rows__"].to(w.device)] = state["__emb_vals__"].to(w.device)

    def save_checkpoint(self, epoch: int, history: list, best: dict | None) -> None:
        import torch

        from ..files import atomic_open

        if self.ckpt_path is None:
            return
        state = {"epoch": epoch, "step": self.step, "history": history,
                 "model": self._changing_state(), "opt": self.opt.state_dict(),
                 "row_opt": None if self.row_opt is None else self.row_opt.state_dict(),
                 "best": best, "seed": self.seed}
        self.ckpt_path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_open(self.ckpt_path) as f:
            torch.save(state, f)

    def load_checkpoint(self) -> dict | None:
        import torch

        if self.ckpt_path is None or not self.ckpt_path.is_file():
            return None
        try:
            state = torch.load(self.ckpt_path, map_location="cpu", weights_only=False)
        except Exception as e:  # a damaged file: start the run again rather than fail
            self.log(f"checkpoint {self.ckpt_path} unreadable ({type(e).__name__}); restarting run")
            return None
        self._load_changing_state(state["model"])
        self.opt.load_state_dict(state["opt"])
        if self.row_opt is not None and state["row_opt"] is not None:
            self.row_opt.load_state_dict(state["row_opt"])
        self.step = int(state["step"])
        return state

    # ---------------------------------------------------------------- loop
    def fit(self, base_emb=None) -> dict:
        import torch

        p = self.p
        if p["precision"] == "fp16" and str(self.device).startswith("cuda"):
            self._scaler = torch.amp.GradScaler("cuda")
        history: list = []
        best = None  # {"epoch", "score", "state"}
        start_epoch = 1
        if base_emb is None and self.row_opt is not None:
            # restoring the best epoch must also undo rows first touched after it
            base_emb = self.emb.weight.detach().clone()
        state = self.load_checkpoint()
        if state is not None:
            history, best = state["history"], state["best"]
            start_epoch = int(state["epoch"]) + 1
            self.log(f"  resumed after epoch {state['epoch']} from {self.ckpt_path}")
        for epoch in range(start_epoch, int(p["epochs"]) + 1):
            t0 = time.perf_counter()
            torch.manual_seed(_mix_seed(self.seed, epoch))
            losses, tokens = [], 0
            for rows in self.epoch_batches(epoch):
                losses.append(self.train_step(rows))
                tokens += int(self.train.lengths[rows].sum())
            train_s = time.perf_counter() - t0
            dev_score = None
            if self.dev is not None and len(self.dev):
                pred = predict(self.model, self.dev, self.pad_id, self.device,
                               p["eval_batch_size"], self._autocast)
                counts = example_counts(self.dev, pred, self.metric, self.label_names)
                dev_score = score_from_counts(counts.sum(0), self.metric)
            rec = {"epoch": epoch, "steps": self.step,
                   "train_loss": float(np.nanmean(losses)) if losses else None,
                   "dev_score": dev_score, "train_seconds": round(train_s, 3),
                   "train_tokens": tokens,
                   "tokens_per_s": round(tokens / train_s, 1) if train_s > 0 else None,
                   "seconds": round(time.perf_counter() - t0, 3)}
            history.append(rec)
            self.log(f"  epoch {epoch}: loss {rec['train_loss']:.4f}, English dev "
                     f"{'-' if dev_score is None else f'{dev_score:.4f}'}, "
                     f"{rec['tokens_per_s']} train tokens/s")
            if best is None or (dev_score is not None and dev_score > best["score"]):
                best = {"epoch": epoch, "score": dev_score, "state": self._changing_state()}
            self.save_checkpoint(epoch, history, best)
        if best is not None and best["epoch"] != len(history):
            self._load_changing_state(best["state"], base_emb=base_emb)
        self.model.eval()
        return {"history": history, "best_epoch": None if best is None else best["epoch"],
                "dev_score": None if best is None else best["score"]}


def _mix_seed(seed: int, epoch: int) -> int:
    return int(hashlib.sha256(f"{seed}|{epoch}".encode()).hexdigest()[:8], 16)


# ----------------------------------------------------------------------------- evaluation


def predict(model, enc: Encoded, pad_id: int, device, batch_size: int = 64, autocast=None):
    """Predicted label ids: a list of ``[n_words_i]`` arrays (tagging; -1 where the word was
    cut off) or an ``[n]`` array (pairs)."""
    import contextlib

    import torch

    model.eval()
    order = np.argsort(enc.lengths, kind="stable")
    out = [None] * len(enc) if enc.kind == "tagging" else np.full(len(enc), -1, dtype=np.int64)
    ctx = autocast or contextlib.nullcontext
    with torch.inference_mode():
        for s in range(0, len(order), batch_size):
            rows = order[s:s + batch_size]
            ids, mask, types, _ = _collate(enc, rows, pad_id, device)
            with ctx():
                logits = model(ids, mask, types)
            guess = logits.argmax(-1).cpu().numpy()
            for b, r in enumerate(rows):
                if enc.kind == "tagging":
                    pos = enc.positions[r]
                    pr = np.full(len(pos), -1, dtype=np.int64)
                    ok = pos >= 0
                    pr[ok] = guess[b, pos[ok]]
                    out[r] = pr
                else:
                    out[r] = guess[b]
    return out


def example_counts(enc: Encoded, pred, metric: str, label_names: Sequence[str]) -> np.ndarray:
    """Additive per-example counts ``[n, c]`` int64: accuracy ``(correct, labelled)``; entity
    F1 ``(true positive, predicted, gold entities)`` with seqeval's IOB2 chunking, so summed
    counts give seqeval's micro F1 exactly."""
    n = len(enc)
    if enc.kind != "tagging":
        gold = np.asarray(enc.labels)
        pred = np.asarray(pred)
        ok = gold >= 0
        return np.stack([((pred == gold) & ok), ok], 1).astype(np.int64)
    if metric == "accuracy":
        out = np.zeros((n, 2), dtype=np.int64)
        for i in range(n):
            g, p = enc.labels[i], pred[i]
            ok = g >= 0
            out[i] = ((g == p) & ok).sum(), ok.sum()
        return out
    from seqeval.metrics.sequence_labeling import get_entities

    names = list(label_names)
    out = np.zeros((n, 3), dtype=np.int64)
    for i in range(n):
        g, p = enc.labels[i], pred[i]
        ok = g >= 0
        gs = [names[j] for j in g[ok]]
        ps = [names[j] if 0 <= j < len(names) else "O" for j in p[ok]]
        a, b = set(get_entities(gs)), set(get_entities(ps))
        out[i] = len(a & b), len(b), len(a)
    return out


def score_from_counts(totals, metric: str):
    """Metric from summed counts ``[..., c]`` -> float or ``[...]``
    (:func:`probe.stats.score_from_counts`, a plain float for one total)."""
    from ..stats import score_from_counts as scores

    s = scores(totals, metric)
    return float(s) if s.ndim == 0 else s


def _reference(train: Encoded, target: Encoded, keep: np.ndarray, metric: str,
               label_names: Sequence[str]) -> dict:
    """Majority-class and chance rate of one target's kept examples (``keep: [n]`` bool),
    with ``probe fuse``'s definitions: :func:`probe.stats.reference_rates` on the English
    training labels, scored with the task metric (entity F1 through :func:`example_counts`)."""
    from ..stats import reference_rates

    names = list(label_names)
    rows = np.flatnonzero(keep)
    score = None  # accuracy over labelled items, stats' default
    if target.kind == "tagging":
        train_flat = (np.concatenate(train.labels) if len(train) else np.zeros(0, np.int64))
        gold = [np.asarray(target.labels[i], dtype=np.int64) for i in rows]
        flat = np.concatenate(gold) if gold else np.zeros(0, np.int64)
        if metric == "f1":
            sub = Encoded("tagging", [target.ids[i] for i in rows], [target.types[i] for i in rows],
                          [target.positions[i] for i in rows], gold)
            cuts = np.cumsum([len(g) for g in gold])[:-1]
            # pred: [n_words] over the kept sentences, in order
            score = lambda pred: score_from_counts(  # noqa: E731
                example_counts(sub, np.split(pred, cuts), "f1", names).sum(0), "f1")
    else:
        train_flat = np.asarray(train.labels, dtype=np.int64)
        flat = np.asarray(target.labels, dtype=np.int64)[rows]
    r = reference_rates(train_flat, flat, score)  # stats' defaults, as in probe fuse
    return {"majority": r.majority, "chance": r.chance,
            "majority_label": names[r.majority_label], "metric": metric,
            "n_chance_draws": r.n_chance_draws, "note": (
                f"majority: predict the most frequent English training label "
                f"({names[r.majority_label]!r}) everywhere; chance: random labels with the English "
                f"training frequencies (mean of {r.n_chance_draws} draws); probe.stats.reference_rates")}


def _interval(counts: np.ndarray, metric: str, n_boot: int) -> dict:
    """95% interval of the seed-mean score, ``counts: [n_seeds, n_sent, c]``: over seeds and
    sentences (:func:`probe.stats.seed_sentence_bootstrap`), or, from one seed, over target
    sentences only (:func:`probe.stats.bootstrap_ci`, the same sentence resamples), as
    ``probe fuse`` reports it."""
    from ..stats import bootstrap_ci, seed_sentence_bootstrap
    from ..stats import score_from_counts as scores

    r = seed_sentence_bootstrap(counts, metric, n_boot=n_boot, seed=0)
    if r.lo is not None:
        ci, covers = [r.lo, r.hi], "training seeds and target sentences"
    else:
        lo, hi = bootstrap_ci(lambda t: scores(t, metric), counts[0], n_boot=n_boot, seed=0)
        ci, covers = [lo, hi], "target sentences only (one seed)"
    return {"ci95": ci, "ci95_covers": covers, "n_seeds": r.n_seeds, "interval_note": r.note}


def _gain(counts: np.ndarray, base: np.ndarray, metric: str, n_boot: int, vs: str) -> dict:
    """Seed-mean difference ``counts - base`` (``[n_seeds, n_sent, c]`` each, the same
    sentences) with its seed-and-sentence interval; None interval from one seed."""
    from ..stats import seed_sentence_bootstrap

    r = seed_sentence_bootstrap(counts, metric, minus=base, n_boot=n_boot, seed=0)
    ci = None if r.lo is None else [r.lo, r.hi]
    return {"vs": vs, "mean": r.estimate, "points": 100 * r.estimate, "ci95": ci,
            "n_seeds": r.n_seeds, "note": r.note,
            "significant": bool(ci is not None and (ci[0] > 0 or ci[1] < 0))}


# ----------------------------------------------------------------------------- API


def _count_params(module) -> int:
    return int(sum(p.numel() for p in module.parameters()))


def _trainable_count(model, embeddings: str) -> dict:
    emb = _word_embeddings(model.encoder).weight.numel()
    enc = _count_params(model.encoder)
    fusion = 0 if model.fusion is None else _count_params(model.fusion)
    head = _count_params(model.head)
    trainable = enc + fusion + head - (emb if embeddings == "freeze" else 0)
    return {"encoder": enc, "word_embeddings": emb, "fusion": fusion, "head": head,
            "trainable": trainable,
            "note": {"freeze": "word embeddings frozen",
                     "sparse": "word-embedding rows updated only when a batch uses them",
                     "full": "every parameter updated every step"}[embeddings]}


def _params_key(params: dict) -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _run_params(*, lr, warmup, batch_size, grad_accum, max_length, weight_decay, max_grad_norm,
                dropout, epochs, precision, embeddings, r, norm, eval_batch_size) -> dict:
    """The recipe part of a run's key and record. Its fields and their values are part of
    every run id (:func:`_run_id`): renaming or adding one orphans existing run records."""
    return {"lr": lr, "warmup": warmup, "batch_size": int(batch_size),
            "grad_accum": int(grad_accum), "max_length": int(max_length),
            "weight_decay": weight_decay, "max_grad_norm": max_grad_norm,
            "dropout": dropout, "epochs": int(epochs), "precision": precision,
            "embeddings": embeddings, "r": int(r), "norm": norm,
            "adam_betas": list(RECIPE["adam_betas"]), "adam_eps": RECIPE["adam_eps"],
            "optimizer": "AdamW", "schedule": "linear with warm-up",
            "eval_batch_size": int(eval_batch_size)}


def _run_id(task: str, fusion: str, seed: int, fingerprint: str, data: dict, params: dict) -> str:
    """File stem of one (fusion, seed) run's record and checkpoint under ``<out>/runs``:
    ``data`` maps each role (``train``, ``dev``, ``target:<lang>``) to its corpus sha256."""
    key = {"task": task, "fusion": fusion, "seed": seed, "model": fingerprint,
           "data": data, "params": params, "run_version": RUN_VERSION}
    return f"{fusion.replace(':', '')}-s{seed}-{_params_key(key)}"


def _precision_of(dtype: str | None, precision: str | None) -> str:
    """The internal precision (``fp32|bf16|fp16``) of ``dtype`` (``float32|bfloat16|float16``,
    default float32) or of the deprecated ``precision`` alias."""
    if dtype is not None and dtype not in PRECISIONS:
        raise ProbeError(f"dtype must be float32, bfloat16 or float16, got {dtype!r}")
    if precision is None:
        return PRECISIONS[dtype or "float32"]
    import warnings

    warnings.warn("precision= is deprecated; use dtype='float32'|'bfloat16'|'float16'",
                  DeprecationWarning, stacklevel=3)
    if precision not in PRECISIONS.values():
        raise ProbeError(f"precision must be fp32, bf16 or fp16, got {precision!r} "
                         f"(deprecated: use dtype float32, bfloat16 or float16)")
    if dtype is not None and PRECISIONS[dtype] != precision:
        raise ProbeError(f"dtype={dtype!r} and precision={precision!r} disagree; give dtype only")
    return precision


def finetune(task: str, langs, model="e5-small-q4", fusion="none", seeds=1,
             max_examples="auto", max_dev="auto", max_test="auto", epochs: int = 3,
             lr: float = RECIPE["lr"], warmup: float = RECIPE["warmup"],
             batch_size: int = RECIPE["batch_size"], max_length: int = RECIPE["max_length"],
             weight_decay: float = RECIPE["weight_decay"],
             max_grad_norm: float = RECIPE["max_grad_norm"], dropout: float = RECIPE["dropout"],
             grad_accum: int = 1, dtype: str | None = None, embeddings: str = "sparse",
             r: int = 4, norm: str = "layer", eval_batch_size: int = 64, data_seed: int = 0,
             n_boot: int = 1000, n_threads: int | None = None, device: str | None = None,
             out: str | Path | None = None, save_model: str | Path | None = None,
             keep_checkpoints: bool = False, encoder=None, progress: bool = True,
             log: Callable[[str], None] | None = None,
             precision: str | None = None) -> "FinetuneResult":
    """Fine-tune ``model`` end to end on English ``task`` and evaluate zero-shot on ``langs``.

    Parameters
    ----------
    task : ``pos``, ``ner``, ``xnli`` or ``pawsx``.
    langs : target languages (``"de,zh"`` or a list).
    model : encoder name (``e5-small-q4``, a local HF directory, ...) or an EncoderSpec.
    fusion : ``"none"``, ``"dlfa:K"``, ``"dlfa:all"``, ``"dlfa-fixed:K"``,
        ``"dlfa-matched:K"`` or a comma list.
    seeds : number of seeds (0..n-1) or a list.
    max_examples, max_dev, max_test : seeded subsamples (``data_seed``) of English train,
        English dev and each target; None = whole split; ``"auto"`` = :data:`TASK_BUDGETS`.
    epochs, lr, warmup (fraction of steps), batch_size, max_length, weight_decay,
    max_grad_norm, dropout : the recipe (XTREME's defaults, :data:`RECIPE`).
    grad_accum : micro-batches per optimiser step (``batch_size`` must be a multiple).
    dtype : ``float32`` (default), ``bfloat16`` or ``float16``: autocast precision of forward
        and backward (float16 adds a gradient scaler on CUDA); as ``--dtype`` elsewhere.
    embeddings : ``sparse`` (update used rows only), ``freeze`` or ``full`` (dense AdamW).
    r, norm : the DLFA block's bottleneck ratio and normalisation (:class:`probe.fusion.AIF`).
    out : folder for run records and checkpoints (``runs/``); default ``out/finetune/<task>``.
    save_model : write the fine-tuned encoder(s) here as Hugging Face model directories
        (one run: the folder itself; several: ``<dir>/<fusion>-seed<s>``).
    keep_checkpoints : keep each run's last checkpoint after it finished (default: remove).
    encoder : an already loaded :class:`probe.encoders.Encoder` of ``model``.
    precision : deprecated alias of ``dtype`` (``fp32``, ``bf16``, ``fp16``).
    """
    import torch

    from ..data import get_corpus
    from ..data.xtreme import corpus_name, source_overlap, subsample_split, task_def
    from ..encoders import EncoderSpec, pick_device, resolve_encoder
    from ..languages import parse_langs
    from ..layerwise import versions
    from ..threads import torch_threads

    t_start = time.time()
    log = log or (_log_default if progress else (lambda msg: None))
    td = task_def(task)
    cdef = get_corpus(corpus_name(task))
    targets = []
    for lang in parse_langs(langs):
        cdef.check(lang, "test")
        if lang.code not in targets:
            targets.append(lang.code)
    seed_list = parse_seeds(seeds)
    if epochs < 1:
        raise ProbeError(f"epochs must be >= 1, got {epochs}")
    precision = _precision_of(dtype, precision)
    dtype = {v: k for k, v in PRECISIONS.items()}[precision]
    if embeddings not in ("sparse", "freeze", "full"):
        raise ProbeError(f"embeddings must be sparse, freeze or full, got {embeddings!r}")
    if not 0 <= warmup < 1:
        raise ProbeError(f"warmup is a fraction of the steps in [0, 1), got {warmup}")
    spec = model if isinstance(model, EncoderSpec) else resolve_encoder(model)
    device = pick_device(device)
    b_train, b_dev, b_test = TASK_BUDGETS[task]
    n_train, n_dev, n_test = (parse_budget(v, d, name) for v, d, name in (
        (max_examples, b_train, "max_examples"), (max_dev, b_dev, "max_dev"),
        (max_test, b_test, "max_test")))
    out_dir = Path(out or Path("out") / "finetune" / task)

    from ..transfer import target_split_of  # the fuse harness's choice: test, else dev

    target_split = {lang: target_split_of(task, lang) for lang in targets}
    wanted = [("train", SOURCE_LANG, subsample_split("train", n_train, data_seed)),
              ("dev", SOURCE_LANG, subsample_split("dev", n_dev, data_seed))]
    wanted += [(f"target:{l}", l, subsample_split(target_split[l], n_test, data_seed))
               for l in targets]
    corpora = {role: cdef.load(lang, split, progress=progress) for role, lang, split in wanted}
    # PAWS-X target pairs that are (translations of) English training/selection pairs are left
    # out of every score, as in probe fuse; runs still predict them, so run keys and records
    # do not depend on the rule
    overlap = {l: source_overlap(corpora[f"target:{l}"]) for l in targets}
    for l, mask in overlap.items():
        if len(mask) and mask.all():
            raise ProbeError(
                f"{task} {l} {corpora[f'target:{l}'].split}: all {len(mask)} target pairs are "
                f"translations of the English training or selection pairs (the same PAWS-X ids), "
                f"so nothing is left to evaluate; use a language with a test file (de, zh)")
    keep = {l: ~mask for l, mask in overlap.items()}

    with torch_threads(n_threads):
        enc_obj = encoder or spec.load()
        base_model = enc_obj.model
        tok = enc_obj.tokenizer
        L = int(base_model.config.num_hidden_layers)
        specs = parse_fusion(fusion, L)
        use_types = int(getattr(base_model.config, "type_vocab_size", 1) or 1) >= 2
        pad_id = tok.pad_token_id if tok.pad_token_id is not None else 0
        label_names = list(td.labels)
        t0 = time.perf_counter()
        encoded = {role: encode_examples(tok, c.sentences, td.kind, label_names, max_length,
                                         segment_ids=use_types) for role, c in corpora.items()}
        encode_s = time.perf_counter() - t0
        rates = {l: _reference(encoded["train"], encoded[f"target:{l}"], keep[l], td.metric,
                               label_names) for l in targets}
        params = _run_params(lr=lr, warmup=warmup, batch_size=batch_size, grad_accum=grad_accum,
                             max_length=max_length, weight_decay=weight_decay,
                             max_grad_norm=max_grad_norm, dropout=dropout, epochs=epochs,
                             precision=precision, embeddings=embeddings, r=r, norm=norm,
                             eval_batch_size=eval_batch_size)
        data_key = {role: c.sha256 for role, c in corpora.items()}
        init_state = {k: v.detach().clone() for k, v in base_model.state_dict().items()}
        base_emb = _word_embeddings(base_model).weight.detach().clone()
        runs = {}
        for fs in specs:
            for seed in seed_list:
                run_id = _run_id(task, fs.name, seed, spec.fingerprint, data_key, params)
                rec_path = out_dir / "runs" / f"{run_id}.json"
                if rec_path.is_file() and not save_model:
                    runs[(fs.name, seed)] = json.loads(rec_path.read_text())
                    log(f"{fs.name} seed {seed}: finished before, read {rec_path}")
                    continue
                log(f"{fs.name} seed {seed}: fine-tuning on {len(encoded['train'])} English "
                    f"examples, {epochs} epoch(s)")
                base_model.load_state_dict(init_state)
                torch.manual_seed(seed)
                net = FinetuneModel(base_model, td.kind, len(label_names), fs, dropout=dropout,
                                    r=r, norm=norm, use_token_types=use_types).to(device)
                trainer = _Trainer(net, encoded["train"], encoded["dev"], kind=td.kind,
                                   metric=td.metric, label_names=label_names, params=params,
                                   seed=seed, pad_id=pad_id, device=device,
                                   ckpt_path=out_dir / "runs" / f"{run_id}.ckpt", log=log)
                t_fit = time.perf_counter()
                fit = trainer.fit(base_emb=base_emb)
                fit_s = time.perf_counter() - t_fit
                t_ev = time.perf_counter()
                rec = {"fusion": fs.name, "seed": seed, **fit,
                       "fit_seconds": round(fit_s, 2),
                       "parameters": _trainable_count(net, embeddings), "targets": {}}
                for l in targets:
                    e = encoded[f"target:{l}"]
                    pred = predict(net, e, pad_id, device, eval_batch_size, trainer._autocast)
                    counts = example_counts(e, pred, td.metric, label_names)
                    rec["targets"][l] = {"score": score_from_counts(counts.sum(0), td.metric),
                                         "counts": counts.T.tolist()}
                rec["eval_seconds"] = round(time.perf_counter() - t_ev, 2)
                if save_model:
                    dest = Path(save_model)
                    if len(specs) * len(seed_list) > 1:
                        dest = dest / f"{fs.name.replace(':', '')}-seed{seed}"
                    _save_encoder(net.encoder, tok, dest, {
                        "base_model": spec.name, "base_fingerprint": spec.fingerprint,
                        "task": task, "fusion": fs.name, "seed": seed, "params": params,
                        "best_epoch": fit["best_epoch"], "english_dev": fit["dev_score"]})
                    rec["saved_model"] = str(dest)
                    log(f"  wrote the fine-tuned encoder to {dest}")
                from ..files import atomic_write_json

                rec_path.parent.mkdir(parents=True, exist_ok=True)
                atomic_write_json(rec_path, rec)
                if not keep_checkpoints:
                    trainer.ckpt_path.unlink(missing_ok=True)
                runs[(fs.name, seed)] = rec
                _word_embeddings(base_model).sparse = False
        base_model.load_state_dict(init_state)
        _word_embeddings(base_model).weight.requires_grad_(True)

    report = _build_report(task=task, td=td, spec=spec, L=L, specs=specs, seeds=seed_list,
                           targets=targets, target_split=target_split, corpora=corpora,
                           encoded=encoded, rates=rates, runs=runs, params=params,
                           n_boot=n_boot, use_types=use_types, device=device, keep=keep,
                           dtype=dtype)
    report["versions"] = versions()
    report["timings_s"] = {"total": round(time.time() - t_start, 1),
                           "tokenize": round(encode_s, 2)}
    return FinetuneResult(report)


def _save_encoder(encoder, tokenizer, dest: Path, record: dict) -> None:
    """A Hugging Face model directory (config, safetensors, tokenizer) + how it was made."""
    from ..files import atomic_write_json

    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    emb = _word_embeddings(encoder)
    emb.sparse = False
    encoder.save_pretrained(dest, safe_serialization=True)
    tokenizer.save_pretrained(dest)
    atomic_write_json(dest / "probe_finetune.json", record, default=str)


# ----------------------------------------------------------------------------- report


#: The controls of ``dlfa:K`` at the same K, in the order the report prefers them.
CONTROLS = ("dlfa-matched", "dlfa-fixed")

_LEAKAGE_RULE = ("target pairs whose PAWS-X id (dev line) occurs in the English training or "
                 "selection share, or whose text equals such a pair, are dropped "
                 "(probe.data.xtreme.source_overlap)")


def _build_report(*, task, td, spec, L, specs, seeds, targets, target_split, corpora, encoded,
                  rates, runs, params, n_boot, use_types, device, keep, dtype) -> dict:
    """``finetune.json`` from the run records (``runs[(fusion, seed)]``, each target's
    per-example ``counts: [c, n]``); ``keep[lang]: [n]`` bool selects the scored examples."""
    from ..stats import at_chance

    names = [s.name for s in specs]
    metric = td.metric
    cache: dict = {}

    def counts(name, lang):  # [n_seeds, n_kept, c]
        if (name, lang) not in cache:
            per = []
            for s in seeds:
                c = np.asarray(runs[(name, s)]["targets"][lang]["counts"], dtype=np.int64).T
                if len(c) != len(keep[lang]):
                    raise ProbeError(f"run {name} seed {s}: {len(c)} {lang} examples recorded, "
                                     f"the target has {len(keep[lang])}")
                per.append(c[keep[lang]])
            cache[(name, lang)] = np.stack(per)
        return cache[(name, lang)]

    def dev_mean(name):
        vals = [runs[(name, s)]["dev_score"] for s in seeds]
        vals = [v for v in vals if v is not None]
        return float(np.mean(vals)) if vals else None

    dlfa = [s for s in specs if s.kind == "dlfa"]
    selected = max(dlfa, key=lambda s: dev_mean(s.name) or -1).name if len(dlfa) > 1 else (
        dlfa[0].name if dlfa else None)
    results = {}
    for lang in targets:
        rows = {}
        for fs in specs:
            name = fs.name
            c = counts(name, lang)
            per_seed = [float(x) for x in score_from_counts(c.sum(1), metric).reshape(-1)]
            row = {"mean": float(np.mean(per_seed)), "per_seed": per_seed,
                   "std": float(np.std(per_seed, ddof=1)) if len(per_seed) > 1 else None,
                   **_interval(c, metric, n_boot), "english_dev": dev_mean(name)}
            row["at_chance"] = at_chance(row["ci95"][0], rates[lang]["majority"], row["mean"])
            if "none" in names and name != "none":
                row["gain_vs_none"] = _gain(c, counts("none", lang), metric, n_boot, "none")
            if fs.kind == "dlfa":
                # fusion or capacity? DLFA over its control at the same K
                ctl = {f"{k}:{fs.k}": _gain(c, counts(f"{k}:{fs.k}", lang), metric, n_boot,
                                            f"{k}:{fs.k}")
                       for k in CONTROLS if f"{k}:{fs.k}" in names}
                if ctl:
                    row["gain_vs_control"] = ctl
            rows[name] = row
        results[lang] = rows
    first = runs[(names[0], seeds[0])]
    data = {}
    for role, c in corpora.items():
        info = getattr(c, "subsample", None)
        data[role] = {"lang": c.lang, "split": c.split, "n_examples": len(c),
                      "n_words": c.n_words, "subsample": info,
                      "files": [{"relpath": f["relpath"], "sha256": f["sha256"]} for f in c.files],
                      "n_truncated_words": encoded[role].n_truncated_words}
    leakage = {lang: {"n_dropped": int((~keep[lang]).sum()), "n_evaluated": int(keep[lang].sum()),
                      "n_loaded": int(len(keep[lang])),
                      "rule": _LEAKAGE_RULE if task == "pawsx" else
                      "no shared ids between training data and targets"} for lang in targets}
    return {
        "kind": "probe.finetune",
        "task": task,
        "task_info": {"kind": td.kind, "metric": metric, "labels": list(td.labels),
                      "training_data": TRAINING_DATA[task]},
        "langs": targets,
        "target_split": target_split,
        "model": {"name": spec.name, "fingerprint": spec.fingerprint, "n_layers": L,
                  "segment_ids": use_types, "note": getattr(spec, "note", "")},
        "fine_tuned": True,
        "fusions": names,
        "selected_dlfa": selected,
        "selection": ("K of dlfa picked by the best mean English-dev score over seeds among the "
                      "K run" if len(dlfa) > 1 else "only one K was run"),
        "seeds": seeds,
        "n_seeds": len(seeds),
        "params": params,
        "dtype": dtype,
        "device": device,
        "data": data,
        "leakage": leakage,
        "reference_rates": rates,
        "results": results,
        "statistics": {
            "ci95": "percentile bootstrap over training seeds and target sentences "
                    "(probe.stats.seed_sentence_bootstrap); one seed: target sentences only",
            "gains": "difference of seed means; sentences resampled paired, each system's seeds "
                     "independently; one seed: no gain interval",
            "at_chance": "ci95 reaches down to the majority-class rate (probe.stats.at_chance)",
            "reference_rates": "probe.stats.reference_rates: majority = English training's most "
                               "frequent label everywhere; chance = random labels with English "
                               "training frequencies",
            "gain_vs_control": "dlfa:K minus its control at the same K (dlfa-matched:K: DLFA's "
                               "parameters, gate fixed at 0.5; dlfa-fixed:K: gate 0.5, no block)"},
        "parameters": {n: runs[(n, seeds[0])]["parameters"] for n in names},
        "runs": [{k: v for k, v in runs[(n, s)].items() if k != "targets"} |
                 {"targets": {l: score_from_counts(counts(n, l)[i].sum(0), metric)
                              for l in targets}}
                 for n in names for i, s in enumerate(seeds)],
        "paper": {"source": PAPER, "gain_points": PAPER_GAINS.get(task),
                  "model": "mBERT (bert-base-multilingual-cased), full XTREME training data",
                  "note": "the paper's gain is DLFA over standard fine-tuning, averaged over "
                          "its target languages; quoted from issue #14"},
        "n_boot": n_boot,
        "first_run_history": first["history"],
    }


class FinetuneResult(ResultDisplay):
    """What :func:`finetune` measured; ``report`` is what ``finetune.json`` holds. In Jupyter
    it shows :meth:`table`."""

    def __init__(self, report: dict):
        self.report = report

    def _headline(self) -> str:
        r = self.report
        return (f"{r['task']} fine-tuned {r['model']['name']} -> {', '.join(self.langs)}, "
                f"{r['n_seeds']} seed(s)")

    def table(self):
        """Per fusion setting: each target's mean score, whether it is at chance, the gain over
        ``none`` and (``dlfa:K`` rows) over each control at the same K, plus the trainable
        parameters, as a pandas DataFrame; the first rows are each target's majority-class and
        chance rates."""
        import pandas as pd

        r = self.report
        rows = [{lang: r["reference_rates"][lang][key] for lang in self.langs}
                for key in ("majority", "chance")]
        controls = [k for k in CONTROLS if any(n.startswith(k + ":") for n in r["fusions"])]
        for name in r["fusions"]:
            row = {"params": r["parameters"][name]["trainable"]}
            for lang in self.langs:
                res = r["results"][lang][name]
                row[lang] = res["mean"]
                row[f"{lang} at chance"] = res["at_chance"]
                row[f"{lang} gain"] = (res.get("gain_vs_none") or {}).get("mean")
                ctl = res.get("gain_vs_control") or {}
                for k in controls:
                    g = next((v for c, v in ctl.items() if c.split(":")[0] == k), None)
                    row[f"{lang} gain vs {k}"] = None if g is None else g["mean"]
            rows.append(row)
        return pd.DataFrame(rows, index=pd.Index(["majority class", "chance"] + list(r["fusions"]),
                                                 name="fusion"))

    @property
    def task(self) -> str:
        return self.report["task"]

    @property
    def langs(self) -> list[str]:
        return list(self.report["langs"])

    def __repr__(self) -> str:
        r = self.report
        parts = []
        for lang in self.langs:
            for name, row in r["results"][lang].items():
                parts.append(f"{lang}/{name}={row['mean']:.3f}")
        return (f"FinetuneResult(task={r['task']!r}, model={r['model']['name']!r}, "
                f"seeds={r['n_seeds']}, {', '.join(parts[:6])}{', ...' if len(parts) > 6 else ''})")

    def format_table(self) -> str:
        r = self.report
        metric = "entity F1" if r["task_info"]["metric"] == "f1" else "accuracy"
        lines = [f"{r['task']} zero-shot {metric}, model {r['model']['name']} FINE-TUNED on "
                 f"English ({r['data']['train']['n_examples']} examples, "
                 f"{r['params']['epochs']} epoch(s)); {r['n_seeds']} seed(s); 95% interval: "
                 + ("seeds and target sentences" if r["n_seeds"] > 1 else
                    "target sentences only (one seed: no gain interval)")]
        lines.append(f"training data: {r['task_info']['training_data']}")
        leak = r.get("leakage") or {}
        if any(v["n_dropped"] for v in leak.values()) or r["task"] == "pawsx":
            lines.append("dropped target pairs that are English training/selection pairs: "
                         + ", ".join(f"{l} {v['n_dropped']} of {v['n_loaded']} "
                                     f"({v['n_evaluated']} scored)" for l, v in leak.items()))
        head = f"{'fusion':14s} {'params':>11s} {'en dev':>7s}"
        for lang in self.langs:
            head += (f" | {lang + ' (' + r['target_split'][lang] + ')':>12s} {'95% CI':>15s} "
                     f"{'majority':>8s} {'gain vs none':>22s}")
        lines.append(head)

        def gain_text(g):
            return f"{g['mean']:+.4f}" + (f" [{g['ci95'][0]:+.3f},{g['ci95'][1]:+.3f}]"
                                          if g["ci95"] else " (1 seed)")

        for name in r["fusions"]:
            p = r["parameters"][name]["trainable"]
            dev = r["results"][self.langs[0]][name]["english_dev"] if self.langs else None
            line = f"{name:14s} {p:11,d} {'-' if dev is None else f'{dev:.4f}':>7s}"
            for lang in self.langs:
                row = r["results"][lang][name]
                ci = row["ci95"]
                g = row.get("gain_vs_none")
                mark = "*" if row["at_chance"] else " "
                maj = r["reference_rates"][lang]["majority"]
                line += (f" | {row['mean']:11.4f}{mark} [{ci[0]:.3f},{ci[1]:.3f}] {maj:8.3f} "
                         f"{gain_text(g) if g else '':>22s}")
            lines.append(line)
        ctl = [(name, c, {lang: r["results"][lang][name]["gain_vs_control"][c]
                          for lang in self.langs})
               for name in r["fusions"]
               for c in (r["results"][self.langs[0]][name].get("gain_vs_control") or {})
               if self.langs]
        if ctl:
            lines.append("DLFA over its control at the same K (fusion, not extra capacity, if > 0):")
            for name, c, gains in ctl:
                lines.append(f"  {name} - {c}: " + "; ".join(
                    f"{lang} {gain_text(g)}" for lang, g in gains.items()))
        ref = "; ".join(f"{l}: majority {v['majority']:.3f} ({v['majority_label']}), "
                        f"chance {v['chance']:.3f}" for l, v in r["reference_rates"].items())
        lines.append(f"reference rates: {ref} (majority: English training's most frequent "
                     f"label everywhere; chance: random labels with its frequencies)")
        lines.append("* = at chance: the interval reaches down to the majority rate")
        pg = r["paper"]["gain_points"]
        if pg is not None:
            lines.append(f"paper ({r['paper']['model']}): DLFA over standard fine-tuning "
                         f"{pg:+.1f} points on {r['task']}")
        if r.get("selected_dlfa"):
            lines.append(f"dlfa K selected on English dev: {r['selected_dlfa']} ({r['selection']})")
        return "\n".join(lines)

    def _caption(self) -> str:
        r = self.report
        d = r["data"]
        tg = ", ".join(f"{l} {d['target:' + l]['split']} ({d['target:' + l]['n_examples']})"
                       for l in self.langs)
        return (f"fine-tuned end to end; XTREME {r['task']}: train en {d['train']['split']} "
                f"({d['train']['n_examples']}), dev en {d['dev']['split']} "
                f"({d['dev']['n_examples']}), targets {tg}; {r['params']['epochs']} epoch(s), "
                f"{r['n_seeds']} seed(s)")

    def _meta(self, caption: str) -> dict:
        r = self.report
        return {"model": r["model"], "versions": r.get("versions", {}),
                "seed": ",".join(map(str, r["seeds"])), "data_caption": caption}

    def plot(self, ax=None):
        """Scores per fusion and target with 95% intervals, majority and chance lines;
        returns the figure (save it with :meth:`save`)."""
        import matplotlib.pyplot as plt

        from ..plotting import palette, setup_style

        setup_style()
        r = self.report
        if ax is None:
            fig, ax = plt.subplots(figsize=(1.6 + 1.4 * len(self.langs) * max(1, len(r["fusions"]) / 2), 3.4))
        else:
            fig = ax.figure
        names = r["fusions"]
        colors = palette(len(names))
        width = 0.8 / max(1, len(names))
        for j, name in enumerate(names):
            for i, lang in enumerate(self.langs):
                row = r["results"][lang][name]
                x = i + (j - (len(names) - 1) / 2) * width
                lo, hi = row["ci95"]
                ax.bar(x, row["mean"], width * 0.9, color=colors[j],
                       hatch="//" if row["at_chance"] else None,
                       label=(name + (" (at chance)" if row["at_chance"] else "")) if i == 0 else None)
                ax.errorbar(x, row["mean"], yerr=[[row["mean"] - lo], [hi - row["mean"]]],
                            color="k", lw=1, capsize=2)
        for i, lang in enumerate(self.langs):
            rr = r["reference_rates"][lang]
            ax.hlines(rr["majority"], i - 0.45, i + 0.45, colors="0.3", linestyles="--",
                      label="majority class" if i == 0 else None)
            ax.hlines(rr["chance"], i - 0.45, i + 0.45, colors="0.6", linestyles=":",
                      label="chance (training label frequencies)" if i == 0 else None)
        ax.set_xticks(range(len(self.langs)))
        ax.set_xticklabels([f"{l} ({r['target_split'][l]})" for l in self.langs])
        ax.set_ylabel(r["task_info"]["metric"])
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
        return fig

    def plot_gains(self, ax=None):
        """Measured gain over ``none`` per fusion and target next to the paper's gain, and
        (hatched) each ``dlfa:K``'s gain over its control at the same K; 95% intervals where
        there is more than one seed."""
        import matplotlib.pyplot as plt

        from ..plotting import palette, setup_style

        setup_style()
        r = self.report
        if ax is None:
            fig, ax = plt.subplots(figsize=(5.5, 3.2))
        else:
            fig = ax.figure
        names = [n for n in r["fusions"] if n != "none"]
        colors = palette(len(self.langs) + 1)
        labels = []
        x = 0

        def bar(g, color, hatch=None):
            ax.bar(x, g["points"], 0.8, color=color, hatch=hatch)
            if g["ci95"]:
                ax.errorbar(x, g["points"], yerr=[[g["points"] - 100 * g["ci95"][0]],
                                                  [100 * g["ci95"][1] - g["points"]]],
                            color="k", lw=1, capsize=2)

        for name in names:
            for i, lang in enumerate(self.langs):
                g = r["results"][lang][name].get("gain_vs_none")
                if not g:
                    continue
                bar(g, colors[i])
                labels.append(f"{name}\n{lang}")
                x += 1
        for name in names:
            for i, lang in enumerate(self.langs):
                for c, g in (r["results"][lang][name].get("gain_vs_control") or {}).items():
                    bar(g, colors[i], hatch="//")
                    labels.append(f"{name}\n-{c}\n{lang}")
                    x += 1
        pg = r["paper"]["gain_points"]
        if pg is not None and "none" in r["fusions"]:
            ax.bar(x, pg, 0.8, color=colors[-1], hatch="..")
            labels.append("paper\n(mBERT)")
            x += 1
        ax.axhline(0, color="k", lw=0.8)
        ax.set_xticks(range(len(labels)))
        ax.set_xticklabels(labels, fontsize=7)
        ax.set_ylabel("gain (points) over standard\nfine-tuning; hatched: over the control")
        return fig

    def save(self, out_dir) -> SavedFiles:
        """Write ``finetune.json`` and the two figures (.png + .pdf) under ``out_dir``; as a
        path the returned list is ``out_dir`` (``FinetuneResult.load(res.save(d))``)."""
        from ..files import atomic_write_json
        from ..plotting import finish

        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / "finetune.json"
        atomic_write_json(path, self.report)
        paths = [path]
        cap = self._caption()
        paths += finish(self.plot(), out_dir / "scores.png", self._meta(
            cap + "; bars: 95% interval; hatched = at chance"),
            f"Zero-shot {self.task}, fine-tuned {self.report['model']['name']}")
        has_control = any(row.get("gain_vs_control") for res in self.report["results"].values()
                          for row in res.values())
        if has_control or (any(n != "none" for n in self.report["fusions"])
                           and "none" in self.report["fusions"]):
            paths += finish(self.plot_gains(), out_dir / "gains.png", self._meta(
                cap + "; hatched: DLFA over its capacity control at the same K"),
                f"DLFA gain over standard fine-tuning and over its control, {self.task}")
        return SavedFiles(out_dir, paths)

    @classmethod
    def load(cls, path) -> "FinetuneResult":
        path = report_file(path, "finetune.json")
        try:
            rep = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise ProbeError(f"{path}: unreadable finetune.json ({e})") from None
        if rep.get("kind") != "probe.finetune":
            raise ProbeError(f"{path}: not a finetune.json (kind {rep.get('kind')!r})")
        return cls(rep)


def summary_figure(paths, out: Path, fusion: str | None = None) -> list[Path]:
    """Measured DLFA gains (mean over targets, per task) next to the paper's four gains.

    ``paths``: finetune.json files or folders holding ``*/finetune.json``. The measured bar
    is the ``fusion`` setting (default: each report's dev-selected DLFA) with its mean
    interval bounds over targets; tasks without a report show the paper's bar only.
    """
    import matplotlib.pyplot as plt

    from ..plotting import finish, setup_style

    setup_style()
    reports = {}
    for p in ([paths] if isinstance(paths, (str, Path)) else paths):
        p = Path(p)
        files = [p] if p.is_file() else ([p / "finetune.json"] if (p / "finetune.json").is_file()
                                         else sorted(p.glob("*/finetune.json")))
        for f in files:
            rep = FinetuneResult.load(f).report
            reports[rep["task"]] = rep
    if not reports:
        raise ProbeError(f"no finetune.json found in {paths}")
    tasks = ["pos", "ner", "xnli", "pawsx"]
    fig, ax = plt.subplots(figsize=(6.5, 3.4))
    caps = []
    for i, t in enumerate(tasks):
        ax.bar(i - 0.2, PAPER_GAINS[t], 0.38, color="0.7", label="paper (mBERT)" if i == 0 else None)
        rep = reports.get(t)
        if rep is None:
            continue
        name = fusion or rep.get("selected_dlfa")
        gains = [rep["results"][l][name].get("gain_vs_none") for l in rep["langs"]
                 if name in rep["results"][l]]
        gains = [g for g in gains if g]
        if not gains:
            continue
        m = float(np.mean([g["points"] for g in gains]))
        ax.bar(i + 0.2, m, 0.38, color="C0", label="measured" if not caps else None)
        cis = [g["ci95"] for g in gains if g["ci95"]]
        if cis:
            lo, hi = 100 * np.mean([c[0] for c in cis]), 100 * np.mean([c[1] for c in cis])
            ax.errorbar(i + 0.2, m, yerr=[[m - lo], [hi - m]], color="k", lw=1, capsize=2)
        d = rep["data"]
        caps.append(f"{t}: {name}, train {d['train']['n_examples']}, "
                    f"{rep['params']['epochs']} ep, {rep['n_seeds']} seeds, "
                    f"targets {','.join(rep['langs'])}")
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xticks(range(len(tasks)))
    ax.set_xticklabels(tasks)
    ax.set_ylabel("DLFA gain over standard\nfine-tuning (points)")
    ax.legend(fontsize=8)
    first = next(iter(reports.values()))
    meta = {"model": first["model"], "versions": first.get("versions", {}),
            "data_caption": "fine-tuned end to end, zero-shot from English, mean over targets "
                            "(interval: mean of per-target seed+sentence bounds); "
                            + "; ".join(caps)}
    return finish(fig, Path(out), meta, "DLFA in a fine-tuned encoder: measured vs paper")


# ----------------------------------------------------------------------------- CLI


def add_parser(subparsers) -> None:
    """Add the ``finetune`` command to an ``argparse`` subparsers object."""
    import argparse

    p = subparsers.add_parser(
        "finetune", help="fine-tune the encoder end to end (optionally with DLFA), zero-shot eval",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "The paper's experiment (arXiv 2205.08497): fine-tune the whole encoder with a task\n"
            "head on English, keep the epoch with the best English-dev score, evaluate zero-shot\n"
            "on each target. --fusion none is standard fine-tuning; dlfa:K fuses layer K with the\n"
            "last layer through AIF/DLFA (trained jointly); dlfa:all runs every K and picks K on\n"
            "English dev; dlfa-matched:K (DLFA's parameters, gate fixed at 0.5) and dlfa-fixed:K\n"
            "(gate 0.5, no block) are controls: DLFA's gain over them is reported. Recipe defaults\n"
            "are XTREME's (AdamW, lr 2e-5, linear warm-up/decay, batch 32, max length 128).\n"
            "Interrupted runs resume after the last finished epoch. Prints zero-shot scores\n"
            "with 95% intervals (seeds and sentences), majority and chance rates (the same\n"
            "definitions as probe fuse), drops PAWS-X target pairs that are English training\n"
            "pairs (count reported), and writes\n"
            "finetune.json and figures to --out. Layer 0 is the embedding output."))
    p.add_argument("--task", required=True, choices=["pos", "ner", "xnli", "pawsx"])
    p.add_argument("--lang", required=True, help="comma-separated target languages, e.g. de,zh")
    p.add_argument("--model", default="e5-small-q4",
                   help="encoder: e5-small-q4, a Hugging Face id or a local directory "
                        "(default: e5-small-q4)")
    p.add_argument("--fusion", default="none",
                   help="none, dlfa:K, dlfa:all, dlfa-fixed:K, dlfa-matched:K (capacity-matched control), "
                        "or a comma list (default: none)")
    p.add_argument("--seeds", default="1", help="number of seeds, or a comma list (default: 1)")
    p.add_argument("--max-examples", type=count_or_all, default="auto", metavar="N|all",
                   help="seeded subsample of English training examples (default: auto = "
                        + ", ".join(f"{t} {b[0] or 'all'}" for t, b in TASK_BUDGETS.items()) + ")")
    p.add_argument("--max-dev", type=count_or_all, default="auto", metavar="N|all",
                   help="seeded subsample of English dev (default: auto)")
    p.add_argument("--max-test", type=count_or_all, default="auto", metavar="N|all",
                   help="seeded subsample of each target (default: auto)")
    p.add_argument("--epochs", type=int, default=3, help="training epochs (default: 3)")
    p.add_argument("--lr", type=float, default=RECIPE["lr"], help="peak learning rate (default: 2e-5)")
    p.add_argument("--warmup", type=float, default=RECIPE["warmup"],
                   help="warm-up fraction of the steps (default: 0.1)")
    p.add_argument("--batch-size", type=int, default=RECIPE["batch_size"], help="(default: 32)")
    p.add_argument("--grad-accum", type=int, default=1,
                   help="micro-batches per optimiser step (default: 1)")
    p.add_argument("--max-length", type=int, default=RECIPE["max_length"], help="(default: 128)")
    p.add_argument("--weight-decay", type=float, default=RECIPE["weight_decay"], help="(default: 0)")
    p.add_argument("--max-grad-norm", type=float, default=RECIPE["max_grad_norm"], help="(default: 1)")
    p.add_argument("--dropout", type=float, default=RECIPE["dropout"], help="head dropout (default: 0.1)")
    p.add_argument("--dtype", default=None, choices=list(PRECISIONS),
                   help="precision of forward and backward; bfloat16/float16 run under autocast "
                        "(float16 with a gradient scaler on CUDA) (default: float32)")
    p.add_argument("--precision", default=None, choices=list(PRECISIONS.values()),
                   help="deprecated alias of --dtype (fp32, bf16, fp16)")
    p.add_argument("--embeddings", default="sparse", choices=["sparse", "freeze", "full"],
                   help="word-embedding updates: only rows a batch uses (sparse), none (freeze) or "
                        "dense AdamW (full) (default: sparse)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--n-boot", type=int, default=1000, help="bootstrap replicates (default: 1000)")
    p.add_argument("--device", default="auto", help="cuda, mps, cpu or auto")
    p.add_argument("--out", default=None, help="output directory (default: out/finetune/<task>)")
    p.add_argument("--save-model", default=None, metavar="DIR",
                   help="write the fine-tuned encoder as a Hugging Face model directory")
    p.add_argument("--quiet", action="store_true", help="no stage messages")


def run(args) -> int:
    """Run ``probe finetune`` from parsed arguments (finetune() registers the corpora)."""
    out = Path(args.out or Path("out") / "finetune" / args.task)
    if args.precision is not None:
        print("probe: note: --precision is deprecated; use --dtype float32|bfloat16|float16",
              file=sys.stderr)
    res = finetune(args.task, args.lang, model=args.model, fusion=args.fusion, seeds=args.seeds,
                   max_examples=args.max_examples, max_dev=args.max_dev, max_test=args.max_test,
                   epochs=args.epochs, lr=args.lr, warmup=args.warmup, batch_size=args.batch_size,
                   grad_accum=args.grad_accum, max_length=args.max_length,
                   weight_decay=args.weight_decay, max_grad_norm=args.max_grad_norm,
                   dropout=args.dropout, dtype=args.dtype, precision=args.precision,
                   embeddings=args.embeddings,
                   n_threads=args.threads, n_boot=args.n_boot,
                   device=None if args.device == "auto" else args.device, out=out,
                   save_model=args.save_model, progress=not args.quiet)
    print(res.format_table())
    paths = res.save(out)
    t = res.report["timings_s"]["total"]
    print(f"wrote {out}/finetune.json and {sum(1 for p in paths if p.suffix == '.png')} figure(s); "
          f"total {t:.0f} s")
    return 0
