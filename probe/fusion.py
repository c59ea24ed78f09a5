"""Layer fusion on cached hidden states: AIF/DLFA and the baselines it is compared with.

The encoder is frozen and its hidden states are cached per layer, one vector per word, so
everything here trains on cached features only.

Fusion (after arXiv 2205.08497, which follows Attentional Feature Fusion, Dai et al. 2021)
------------------------------------------------------------------------------------------
DLFA fuses the last layer ``X`` (layer L) with one lower layer ``Y`` (layer k)::

    W = X + Y
    M = AIF(W)                      # [B, T, E], every entry in (0, 1)
    Z = M * X + (1 - M) * Y         # feeds the task head

AIF, the paper's attention block, has two context-aggregation branches, each a bottleneck
of two point-wise convolutions ``E -> E/r -> E`` with a normalisation after each and a ReLU
between (SENet-like). The *global* branch first takes the masked mean of ``W`` over T, so it
sees one vector per sequence; the *local* branch runs at every position. Their outputs are
summed (the global one broadcast over T) and squashed by a sigmoid.

The paper does not publish its hyper-parameters; the choices made here, all exposed:

* ``r = 4``: the bottleneck ratio AFF uses by default; with E=384 the bottleneck is 96
  wide, which keeps the block cheap enough for ~50-run sweeps on a CPU.
* ``norm = "layer"``: LayerNorm over features. It is computed per position, so padding can
  never leak into real positions, it behaves the same in training and inference, and it is
  stable with the small batches used for probing. ``"batch"`` (AFF's original choice) is a
  *masked* BatchNorm whose statistics come from real positions only; ``"none"`` drops it.
* ``attn_dropout = 0``: dropout on the bottleneck activations; off by default because the
  attention block is small next to the head.

Conventions: ``mask`` is ``[B, T]`` bool, True at real words. Outputs at real positions
never depend on what the padded positions hold; outputs at padded positions are zero (DLFA,
the baselines) or meaningless (AIF's map) and every consumer here ignores them. DLFA and AIF
zero their inputs' padding first, so even NaN padding stays out of their gradients; the
trainer's batches are zero-padded anyway.

Baselines share the combiner interface ``forward(feats, mask) -> [B, T, E]`` where ``feats``
maps layer index to ``[B, T, E]`` (a dict, or a list indexed by layer): :class:`LastLayer`,
:class:`SingleLayer`, :class:`ConcatFusion` (``[X; Y] -> Linear(2E -> E)``) and
:class:`ScalarMix` (ELMo: softmax-normalised weights over all layers and a scalar gamma), and
the capacity-matched control :class:`FixedGateFusion` (``"dlfa-fixed"``: DLFA's AIF block
and head with the layer gate fixed at 0.5; DLFA's gate is non-linear while the other
baselines feed a linear head, so this control separates layer choice from capacity).
Each combiner names the layers it reads in ``layers`` so that the batcher loads only those.

Training: :class:`FusionClassifier`, a scikit-learn style estimator over *feature views*.

Feature views
-------------
A view is any object with

* ``n_layers: int``: number of cached layers *including* layer 0 (the embedding output);
* ``layer(i) -> array [n_words, hidden]``: the cached states of layer ``i``; may be a float16
  ``np.memmap``. Only the layers a method needs are ever requested;
* ``offsets: array [n_sent + 1]`` int64: sentence ``s`` is words ``offsets[s]:offsets[s+1]``
  (for pair tasks a "sentence" is a whole pair);
* ``labels``: ``[n_words]`` ints for tagging, ``[n_sent]`` ints for sequence tasks; negative
  values mark unlabelled words, ignored in training and scoring; may be None for predict;
* ``segment``: ``[n_words]`` int8, 0 for words of the first sentence of a pair and 1 for the
  second; None for single sentences;
* optionally ``label_names``: list of label strings (needed for entity F1).

:class:`ArrayView` is the in-memory implementation; a cache reader only has to provide the
same attributes.

Speed
-----
A POS sweep is ~50 training runs, so one run must take seconds. Mini-batches are gathered
with vectorised numpy indexing (sentences are sorted by length so that batches need little
padding; one flat word index and one ``[B, T]`` scatter per batch), only the needed layers
are read, everything is float32, and torch's thread setting is left alone unless
``n_threads`` is given. The default budget is ``max_train=4000`` training sentences (a
seeded subsample), ``epochs=3``, batches of 32 sentences and dev selection on at most
``max_dev=1000`` seeded dev sentences after every epoch: ~375 optimizer steps. Pass
``max_train=None`` / ``max_dev=None`` to use everything.

Measured on synthetic data the size of XTREME's English UD POS training set (21,253
sentences, 375k words, 13 float16 memmapped layers of 384), one torch thread, with dev
selection (3 x 1000 sentences) and scoring two target sets (80k + 158k words): a DLFA run
costs ~8 s of CPU, ``last``/``layer`` ~3 s, ``concat`` ~9 s, ``scalarmix`` (reads all 13
layers) ~15 s; a 13 k x 3 seeds + 4 baselines x 3 seeds sweep is ~7 CPU-minutes.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Mapping, Protocol, Sequence, Union

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .errors import ProbeError
from .threads import torch_threads

__all__ = [
    "AIF",
    "DLFA",
    "MaskedBatchNorm",
    "LastLayer",
    "SingleLayer",
    "ConcatFusion",
    "ScalarMix",
    "DLFAFusion",
    "FixedGateFusion",
    "count_parameters",
    "TokenTaggingHead",
    "SequenceClassificationHead",
    "FusionModel",
    "FeatureView",
    "ArrayView",
    "FusionClassifier",
    "masked_mean",
    "build_combiner",
    "method_layers",
    "METHODS",
    "NORMS",
]

NORMS = ("layer", "batch", "none")
METHODS = ("dlfa", "dlfa-fixed", "last", "layer", "concat", "scalarmix")
#: AdamW learning rate of the scalar mix's layer logits (see :class:`ScalarMix`)
MIX_LR = 0.05
TASKS = ("tagging", "pair", "sentence")
IGNORE = -100

Feats = Union[Mapping[int, Tensor], Sequence[Tensor]]


# --------------------------------------------------------------------------- helpers


def masked_mean(x: Tensor, mask: Tensor, zero_padded: bool = False) -> Tensor:
    """Mean of ``x: [B, T, E]`` over real positions of ``mask: [B, T]`` -> ``[B, E]``.

    A sequence with no real position gets a zero vector rather than NaN. Pass
    ``zero_padded=True`` when padded positions of ``x`` are already zero, to skip the
    masking pass.
    """
    m = mask.unsqueeze(-1)
    total = x.sum(1) if zero_padded else _zero_padding(x, mask).sum(1)
    count = m.sum(1).clamp_min(1).to(x.dtype)
    return total / count


def _zero_padding(x: Tensor, mask: Tensor) -> Tensor:
    # torch.where rather than a multiply: NaN * 0 would still be NaN
    return torch.where(mask.unsqueeze(-1), x, torch.zeros((), dtype=x.dtype, device=x.device))


def _layer(feats: Feats, i: int) -> Tensor:
    try:
        return feats[i]
    except (KeyError, IndexError):
        raise ProbeError(f"layer {i} is missing from the features given to the combiner") from None


# --------------------------------------------------------------------------- AIF / DLFA


class MaskedBatchNorm(nn.Module):
    """BatchNorm over the last dimension whose batch statistics skip padded positions.

    ``x: [..., C]``, ``mask: [...]`` bool (None = all real). In training, mean and variance
    come from the real positions of the batch (and update the running estimates); in eval
    the running estimates are used. With fewer than two real positions there is no usable
    variance, so the running estimates are used even in training.
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1):
        super().__init__()
        self.eps = eps
        self.momentum = momentum
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        c = x.shape[-1]
        flat = x.reshape(-1, c)
        if mask is None:
            keep = torch.ones(flat.shape[0], dtype=torch.bool, device=x.device)
        else:
            keep = mask.reshape(-1)
        n = int(keep.sum())
        if self.training and n >= 2:
            k = keep.unsqueeze(-1)
            zero = torch.zeros((), dtype=x.dtype, device=x.device)
            mean = torch.where(k, flat, zero).sum(0) / n
            var = torch.where(k, (flat - mean) ** 2, zero).sum(0) / n
            with torch.no_grad():
                self.running_mean.lerp_(mean.detach(), self.momentum)
                self.running_var.lerp_(var.detach() * n / (n - 1), self.momentum)
        else:
            mean, var = self.running_mean, self.running_var
        return (x - mean) * torch.rsqrt(var + self.eps) * self.weight + self.bias


class _Norm(nn.Module):
    """Uniform ``(x, mask)`` interface over the three normalisation choices."""

    def __init__(self, kind: str, width: int):
        super().__init__()
        if kind not in NORMS:
            raise ProbeError(f"unknown norm {kind!r}; choose one of {', '.join(NORMS)}")
        self.kind = kind
        if kind == "layer":
            self.norm = nn.LayerNorm(width)
        elif kind == "batch":
            self.norm = MaskedBatchNorm(width)
        else:
            self.norm = nn.Identity()

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        if self.kind == "batch":
            return self.norm(x, mask)
        return self.norm(x)


class _Bottleneck(nn.Module):
    """Point-wise conv E -> E/r, norm, ReLU, (dropout), point-wise conv E/r -> E, norm.

    A 1x1 convolution over a sequence is a Linear applied at every position.
    """

    def __init__(self, hidden: int, r: int, norm: str, dropout: float):
        super().__init__()
        inner = max(1, hidden // r)
        self.down = nn.Linear(hidden, inner)
        self.norm1 = _Norm(norm, inner)
        # nn.Dropout(0) still copies its input in training mode
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.up = nn.Linear(inner, hidden)
        self.norm2 = _Norm(norm, hidden)

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        h = torch.relu(self.norm1(self.down(x), mask))
        return self.norm2(self.up(self.drop(h)), mask)


class AIF(nn.Module):
    """Attentional information fusion block: ``m = sigmoid(local(w) + global(w))``.

    Parameters
    ----------
    hidden : width E of the features.
    r : bottleneck ratio; the branches are ``E -> E // r -> E``.
    norm : ``"layer"`` (default), ``"batch"`` (masked BatchNorm) or ``"none"``.
    dropout : dropout on the bottleneck activations of both branches.

    ``forward(w: [B, T, E], mask: [B, T] bool) -> m: [B, T, E]`` with entries in (0, 1).
    Real positions do not depend on padded ones: padding is zeroed, the global branch uses
    a masked mean over T, and the normalisations are per position (LayerNorm) or take their
    statistics from real positions only (masked BatchNorm).
    """

    def __init__(self, hidden: int, r: int = 4, norm: str = "layer", dropout: float = 0.0):
        super().__init__()
        if r < 1:
            raise ProbeError(f"bottleneck ratio r must be >= 1, got {r}")
        self.hidden, self.r, self.norm = hidden, r, norm
        self.local_branch = _Bottleneck(hidden, r, norm, dropout)
        self.global_branch = _Bottleneck(hidden, r, norm, dropout)

    def forward(self, w: Tensor, mask: Tensor) -> Tensor:
        return self._attend(_zero_padding(w, mask), mask)

    def _attend(self, w: Tensor, mask: Tensor) -> Tensor:
        """``forward`` for a ``w`` whose padded positions are already zero."""
        pooled = masked_mean(w, mask, zero_padded=True).unsqueeze(1)  # [B, 1, E]
        g = self.global_branch(pooled, None)  # every pooled row is real
        loc = self.local_branch(w, mask)  # [B, T, E]
        return torch.sigmoid(loc + g)


class DLFA(nn.Module):
    """Fusion of the last layer with one lower layer through an AIF attention map.

    ``forward(x_last: [B, T, E], y_k: [B, T, E], mask: [B, T]) -> z: [B, T, E]`` with
    ``W = X + Y``, ``M = AIF(W)``, ``Z = M * X + (1 - M) * Y``. Padded positions of ``z``
    are zero. Parameters are those of :class:`AIF` (``dropout`` acts inside it).
    """

    def __init__(self, hidden: int, r: int = 4, norm: str = "layer", dropout: float = 0.0):
        super().__init__()
        self.aif = AIF(hidden, r=r, norm=norm, dropout=dropout)

    def forward(self, x_last: Tensor, y_k: Tensor, mask: Tensor) -> Tensor:
        # zeroing both inputs (not just W) keeps NaN/inf padding out of the backward pass too
        x = _zero_padding(x_last, mask)
        y = _zero_padding(y_k, mask)
        m = self.aif._attend(x + y, mask)
        # y + m * (x - y) == m * x + (1 - m) * y with one fewer [B, T, E] temporary; it is
        # zero wherever x and y are
        return y + m * (x - y)

    def gate(self, x_last: Tensor, y_k: Tensor, mask: Tensor) -> Tensor:
        """The attention map ``M: [B, T, E]`` (weight of the last layer) for inspection."""
        return self.aif(_zero_padding(x_last, mask) + _zero_padding(y_k, mask), mask)


# --------------------------------------------------------------------------- combiners


class SingleLayer(nn.Module):
    """Baseline: the features of one layer, unchanged."""

    def __init__(self, layer: int):
        super().__init__()
        self.layers = (int(layer),)

    def forward(self, feats: Feats, mask: Tensor) -> Tensor:
        return _zero_padding(_layer(feats, self.layers[0]), mask)


class LastLayer(SingleLayer):
    """Baseline: the last layer only (index ``n_layers - 1``)."""

    def __init__(self, n_layers: int):
        super().__init__(n_layers - 1)


class ConcatFusion(nn.Module):
    """Baseline: ``[X; Y] -> Linear(2E -> E)`` at every position (X = last, Y = layer k)."""

    def __init__(self, hidden: int, k: int, last: int):
        super().__init__()
        self.layers = (int(last), int(k))
        self.proj = nn.Linear(2 * hidden, hidden)

    def forward(self, feats: Feats, mask: Tensor) -> Tensor:
        x, y = (_layer(feats, i) for i in self.layers)
        return _zero_padding(self.proj(torch.cat([x, y], dim=-1)), mask)


class ScalarMix(nn.Module):
    """Baseline (ELMo): ``gamma * sum_i softmax(s)_i * h_i`` over all ``n_layers`` layers.

    The weights start uniform (s = 0) and gamma at 1.

    The logits ``s`` need their own, larger learning rate (``FusionClassifier(mix_lr=...)``,
    default :data:`MIX_LR`): Adam moves a parameter by about ``lr`` per step whatever its
    gradient's size, so with the head's 1e-3 (pair tasks) and the ~100-400 steps of a probe
    run the logits can drift by at most ~0.1-0.4, i.e. every weight stays within ~1.5x of
    1/n_layers (measured: 0.074-0.081 on XNLI and PAWS-X with e5-small-q4) whatever the
    data say. Weight decay is never applied to them either: it would pull them back to
    uniform.
    """

    def __init__(self, n_layers: int):
        super().__init__()
        self.layers = tuple(range(n_layers))
        self.scalars = nn.Parameter(torch.zeros(n_layers))
        self.gamma = nn.Parameter(torch.ones(()))

    def forward(self, feats: Feats, mask: Tensor) -> Tensor:
        w = torch.softmax(self.scalars, dim=0)
        out = w[0] * _layer(feats, self.layers[0])
        for i, layer in enumerate(self.layers[1:], start=1):
            out = out + w[i] * _layer(feats, layer)
        return _zero_padding(self.gamma * out, mask)

    def weights(self) -> np.ndarray:
        """Softmax-normalised layer weights ``[n_layers]``."""
        return torch.softmax(self.scalars.detach(), 0).cpu().numpy()


class DLFAFusion(nn.Module):
    """:class:`DLFA` behind the combiner interface: reads the last layer and layer k."""

    def __init__(self, hidden: int, k: int, last: int, r: int = 4, norm: str = "layer",
                 dropout: float = 0.0):
        super().__init__()
        self.layers = (int(last), int(k))
        self.dlfa = DLFA(hidden, r=r, norm=norm, dropout=dropout)

    def forward(self, feats: Feats, mask: Tensor) -> Tensor:
        return self.dlfa(_layer(feats, self.layers[0]), _layer(feats, self.layers[1]), mask)


class FixedGateFusion(nn.Module):
    """Capacity-matched control for DLFA: the layer gate is fixed at 0.5.

    ``forward(feats, mask) -> [B, T, E]``: ``Z = 2 * AIF(W) * (X + Y) / 2`` with
    ``W = X + Y``, X = the last layer, Y = layer k. It holds the very same :class:`AIF`
    block as :class:`DLFAFusion` (same parameters, same non-linearity, same head after it),
    but the two layers always enter with weight 0.5 each: the learned map ``2 * AIF(W)``
    rescales the *mean* of the layers per feature (it is symmetric in X and Y), so it cannot
    weigh one layer against the other. With ``AIF(W) = 0.5`` it is exactly the mean.

    Why: DLFA's gate is a small non-linear network, while the ``last``/``layer``/``concat``
    baselines feed their features straight into a linear head. "DLFA beats layer k" can be
    that extra non-linear capacity rather than choosing between layers; DLFA minus this
    control is what the learned *layer choice* adds.
    """

    def __init__(self, hidden: int, k: int, last: int, r: int = 4, norm: str = "layer",
                 dropout: float = 0.0):
        super().__init__()
        self.layers = (int(last), int(k))
        self.aif = AIF(hidden, r=r, norm=norm, dropout=dropout)

    def forward(self, feats: Feats, mask: Tensor) -> Tensor:
        x = _zero_padding(_layer(feats, self.layers[0]), mask)
        y = _zero_padding(_layer(feats, self.layers[1]), mask)
        w = x + y
        # 2 * m * (x + y) / 2: zero wherever x and y are, so padding stays zero
        return self.aif._attend(w, mask) * w

    def mean(self, feats: Feats, mask: Tensor) -> Tensor:
        """The fixed-gate fusion itself, ``(X + Y) / 2`` (before the feature rescaling)."""
        x, y = (_zero_padding(_layer(feats, i), mask) for i in self.layers)
        return 0.5 * (x + y)


def count_parameters(module: nn.Module) -> int:
    """Number of trainable scalars (``requires_grad``) in ``module``."""
    return int(sum(p.numel() for p in module.parameters() if p.requires_grad))


def _resolve_k(method: str, n_layers: int, k: int | None) -> int | None:
    if method not in METHODS:
        raise ProbeError(f"unknown fusion method {method!r}; choose one of {', '.join(METHODS)}")
    if method in ("last", "scalarmix"):
        return None
    last = n_layers - 1
    if k is None:
        raise ProbeError(f"method {method!r} needs a layer k (0..{last})")
    kk = int(k) + n_layers if int(k) < 0 else int(k)
    if not 0 <= kk <= last:
        raise ProbeError(f"layer k={k} is out of range for {n_layers} layers (0..{last})")
    return kk


def method_layers(method: str, n_layers: int, k: int | None = None) -> tuple[int, ...]:
    """The layer indices ``method`` reads (what a batcher must load), without duplicates."""
    kk = _resolve_k(method, n_layers, k)
    last = n_layers - 1
    if method == "last":
        return (last,)
    if method == "scalarmix":
        return tuple(range(n_layers))
    if method == "layer":
        return (kk,)
    return tuple(dict.fromkeys((last, kk)))


def build_combiner(method: str, n_layers: int, hidden: int, k: int | None = None, r: int = 4,
                   norm: str = "layer", attn_dropout: float = 0.0) -> nn.Module:
    """The combiner for ``method`` (one of :data:`METHODS`); ``k < 0`` counts from the end."""
    kk = _resolve_k(method, n_layers, k)
    last = n_layers - 1
    if method == "last":
        return LastLayer(n_layers)
    if method == "scalarmix":
        return ScalarMix(n_layers)
    if method == "layer":
        return SingleLayer(kk)
    if method == "concat":
        return ConcatFusion(hidden, kk, last)
    if norm not in NORMS:
        raise ProbeError(f"unknown norm {norm!r}; choose one of {', '.join(NORMS)}")
    if method == "dlfa-fixed":
        return FixedGateFusion(hidden, kk, last, r=r, norm=norm, dropout=attn_dropout)
    return DLFAFusion(hidden, kk, last, r=r, norm=norm, dropout=attn_dropout)


# --------------------------------------------------------------------------- heads


class TokenTaggingHead(nn.Module):
    """Dropout then ``Linear(E -> n_labels)`` at every position: ``[B, T, E] -> [B, T, C]``."""

    def __init__(self, hidden: int, n_labels: int, dropout: float = 0.1):
        super().__init__()
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.out = nn.Linear(hidden, n_labels)

    def forward(self, z: Tensor, mask: Tensor, segment: Tensor | None = None) -> Tensor:
        return self.out(self.drop(z))


class SequenceClassificationHead(nn.Module):
    """Masked mean pooling then an MLP: ``z: [B, T, E] -> logits: [B, C]``.

    With ``pair=True`` the two sentences of a pair are pooled separately (``segment: [B, T]``
    0/1) into ``u`` and ``v`` and the classifier sees ``[u; v; |u - v|; u * v]`` (4E). That
    is the InferSent recipe: the encoder is frozen, so the head must be handed explicit
    comparison features; pooling the joint sequence alone would blur which words came from
    which sentence. With ``pair=False`` the whole sequence is pooled (E).

    The classifier is ``Dropout -> Linear(F -> H) -> ReLU -> Dropout -> Linear(H -> C)``
    with ``H = mlp_hidden`` (default E); ``mlp_hidden=0`` gives a single ``Linear(F -> C)``.
    """

    def __init__(self, hidden: int, n_labels: int, pair: bool = True,
                 mlp_hidden: int | None = None, dropout: float = 0.1):
        super().__init__()
        self.pair = pair
        width = 4 * hidden if pair else hidden
        h = hidden if mlp_hidden is None else int(mlp_hidden)
        if h > 0:
            self.mlp = nn.Sequential(nn.Dropout(dropout), nn.Linear(width, h), nn.ReLU(),
                                     nn.Dropout(dropout), nn.Linear(h, n_labels))
        else:
            self.mlp = nn.Sequential(nn.Dropout(dropout), nn.Linear(width, n_labels))

    def forward(self, z: Tensor, mask: Tensor, segment: Tensor | None = None) -> Tensor:
        if not self.pair:
            return self.mlp(masked_mean(z, mask))
        if segment is None:
            raise ProbeError("a pair head needs the segment array (which words are sentence 2)")
        second = segment.bool()
        u = masked_mean(z, mask & ~second)
        v = masked_mean(z, mask & second)
        return self.mlp(torch.cat([u, v, (u - v).abs(), u * v], dim=-1))


class FusionModel(nn.Module):
    """A combiner followed by a head: ``forward(feats, mask, segment=None) -> logits``."""

    def __init__(self, combiner: nn.Module, head: nn.Module):
        super().__init__()
        self.combiner = combiner
        self.head = head

    @property
    def layers(self) -> tuple[int, ...]:
        return tuple(self.combiner.layers)

    def forward(self, feats: Feats, mask: Tensor, segment: Tensor | None = None) -> Tensor:
        return self.head(self.combiner(feats, mask), mask, segment)


# --------------------------------------------------------------------------- views


class FeatureView(Protocol):
    """Cached word-level hidden states of one data split (see the module docstring)."""

    n_layers: int
    offsets: np.ndarray
    labels: np.ndarray | None
    segment: np.ndarray | None

    def layer(self, i: int) -> np.ndarray: ...


class ArrayView:
    """In-memory :class:`FeatureView`.

    Parameters
    ----------
    layers : ``[n_layers, n_words, hidden]`` array, or a sequence of ``[n_words, hidden]``
        arrays (memmaps work too).
    offsets : ``[n_sent + 1]`` word boundaries, starting at 0 and ending at n_words.
    labels : ``[n_words]`` (tagging) or ``[n_sent]`` (sequence tasks) ints, or None.
    segment : ``[n_words]`` 0/1 for sentence pairs, or None.
    label_names : optional label strings, index = label id.

    ``accessed`` records which layers were requested, so tests can check that a method
    reads only the layers it needs.
    """

    def __init__(self, layers, offsets, labels=None, segment=None, label_names=None):
        self._layers = list(layers)
        self.n_layers = len(self._layers)
        if self.n_layers == 0:
            raise ProbeError("ArrayView needs at least one layer")
        self.offsets = np.asarray(offsets, dtype=np.int64)
        n_words = self._layers[0].shape[0]
        if self.offsets.ndim != 1 or len(self.offsets) < 1 or self.offsets[0] != 0:
            raise ProbeError("offsets must be a 1-d array starting at 0")
        if np.any(np.diff(self.offsets) < 0) or self.offsets[-1] != n_words:
            raise ProbeError(f"offsets must be non-decreasing and end at n_words={n_words}")
        for i, a in enumerate(self._layers):
            if a.ndim != 2 or a.shape[0] != n_words:
                raise ProbeError(f"layer {i} has shape {a.shape}, expected ({n_words}, hidden)")
        self.labels = None if labels is None else np.asarray(labels, dtype=np.int64)
        self.segment = None if segment is None else np.asarray(segment, dtype=np.int8)
        if self.segment is not None and self.segment.shape != (n_words,):
            raise ProbeError(f"segment must have shape ({n_words},), got {self.segment.shape}")
        self.label_names = None if label_names is None else list(label_names)
        self.accessed: set[int] = set()

    @property
    def n_sentences(self) -> int:
        return len(self.offsets) - 1

    @property
    def hidden(self) -> int:
        return int(self._layers[0].shape[1])

    def layer(self, i: int) -> np.ndarray:
        if not 0 <= i < self.n_layers:
            raise ProbeError(f"layer {i} out of range (0..{self.n_layers - 1})")
        self.accessed.add(i)
        return self._layers[i]


def _view_hidden(view, layer: int) -> int:
    h = getattr(view, "hidden", None)
    return int(h) if h is not None else int(view.layer(layer).shape[1])


@dataclass
class _Batch:
    feats: dict[int, Tensor]
    mask: Tensor  # [B, T] bool
    segment: Tensor | None  # [B, T] bool
    rows: np.ndarray  # [N] batch row of each word
    cols: np.ndarray  # [N] position of each word
    words: np.ndarray  # [N] global word index
    sents: np.ndarray  # [B] global sentence index


class _Gatherer:
    """Builds padded float32 batches from a view with vectorised numpy gathers."""

    def __init__(self, view, layers: Sequence[int], device: str, need_segment: bool):
        self.view = view
        self.layers = tuple(dict.fromkeys(layers))  # dedupe, keep order (k may equal L)
        self.device = torch.device(device)
        self.offsets = np.asarray(view.offsets, dtype=np.int64)
        self.lengths = np.diff(self.offsets)
        self.arrays = {i: view.layer(i) for i in self.layers}
        self.segment = None
        if need_segment:
            if getattr(view, "segment", None) is None:
                raise ProbeError("this task needs view.segment (which words are sentence 2)")
            self.segment = np.asarray(view.segment)

    def batch(self, sents: np.ndarray) -> _Batch:
        starts = self.offsets[sents]
        lens = self.lengths[sents]
        b, t = len(sents), max(int(lens.max(initial=0)), 1)
        n = int(lens.sum())
        rows = np.repeat(np.arange(b), lens)
        first = np.repeat(np.cumsum(lens) - lens, lens)
        cols = np.arange(n) - first
        words = np.repeat(starts, lens) + cols
        flat = torch.from_numpy(rows * t + cols)
        mask = np.zeros((b, t), dtype=bool)
        mask[rows, cols] = True
        feats = {}
        for i, arr in self.arrays.items():
            # np.take beats fancy indexing on memmaps; torch converts float16 faster than numpy
            src = torch.from_numpy(np.ascontiguousarray(np.take(arr, words, axis=0)))
            dense = torch.zeros(b * t, arr.shape[1], dtype=torch.float32)
            dense.index_copy_(0, flat, src.to(torch.float32))
            feats[i] = dense.view(b, t, -1).to(self.device)
        seg = None
        if self.segment is not None:
            s = np.zeros((b, t), dtype=bool)
            s[rows, cols] = self.segment[words] != 0
            seg = torch.from_numpy(s).to(self.device)
        return _Batch(feats, torch.from_numpy(mask).to(self.device), seg, rows, cols, words,
                      np.asarray(sents))


def _length_batches(lengths: np.ndarray, sents: np.ndarray, batch_size: int,
                    rng: np.random.Generator | None) -> list[np.ndarray]:
    """Batches of sentences of similar length; shuffled (ties and batch order) if rng."""
    tiebreak = rng.random(len(sents)) if rng is not None else np.arange(len(sents))
    order = sents[np.lexsort((tiebreak, lengths[sents]))]
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    if rng is not None:
        batches = [batches[j] for j in rng.permutation(len(batches))]
    return batches


# --------------------------------------------------------------------------- estimator


from sklearn.base import BaseEstimator, ClassifierMixin  # noqa: E402 - kept next to the estimator

from .errors import ParameterError  # noqa: E402


class FusionClassifier(ClassifierMixin, BaseEstimator):
    """Train a layer-fusion method plus a task head on cached features (sklearn style).

    Parameters
    ----------
    method : ``"dlfa"`` (last layer fused with layer k through AIF), ``"dlfa-fixed"``
        (the capacity-matched control: same AIF block, layer gate fixed at 0.5, see
        :class:`FixedGateFusion`), ``"last"`` (last layer only), ``"layer"`` (layer k only),
        ``"concat"`` ([last; k] -> Linear) or ``"scalarmix"`` (ELMo mix of all layers).
    k : the lower layer for ``dlfa``, ``dlfa-fixed``, ``layer`` and ``concat`` (0 = embedding output,
        negative counts from the end); ignored by ``last`` and ``scalarmix``.
    task : ``"tagging"`` (a label per word), ``"pair"`` (a label per sentence pair, needs
        ``view.segment``) or ``"sentence"`` (a label per single sentence).
    r, norm, attn_dropout : AIF bottleneck ratio, normalisation and internal dropout.
    dropout : dropout on the fused features before the head (every method).
    mlp_hidden : hidden width of the sequence-classification MLP (None = E, 0 = linear).
    lr, weight_decay : AdamW settings.
    mix_lr : AdamW learning rate of the scalar mix's layer logits (``scalarmix`` only; no
        weight decay on them); None = ``lr``. See :class:`ScalarMix` for why it differs.
    epochs : passes over the (subsampled) training sentences.
    batch_size : sentences (or pairs) per optimizer step.
    max_steps : stop after this many optimizer steps even mid-epoch (None = no limit).
    max_train : seeded subsample of at most this many training sentences (None = all).
    max_dev : seeded subsample of at most this many dev sentences for model selection.
    metric : ``"accuracy"`` or ``"f1"`` (entity-level F1 over IOB2 tags, via seqeval; needs
        ``label_names`` or ``view.label_names``); used for selection and :meth:`score`.
    label_names : label strings for ``metric="f1"``.
    n_labels : number of labels (None = ``max(train labels) + 1``).
    eval_batch_size : sentences per batch when predicting.
    seed : seeds subsampling, batching, initialisation and dropout.
    device : torch device string.
    n_threads : if given, ``torch.set_num_threads`` for the duration of each call.

    Learned attributes: ``model_`` (:class:`FusionModel`), ``layers_`` (layers read),
    ``n_layers_``, ``hidden_``, ``n_labels_``, ``history_`` (per epoch: steps, train loss,
    dev score, seconds), ``best_epoch_``, ``best_score_`` (None without dev),
    ``n_train_sentences_``, ``fit_seconds_``, ``n_params_`` (trainable scalars:
    ``{"combiner", "head", "total"}``).
    """

    def __init__(self, method: str = "dlfa", k: int | None = None, task: str = "tagging",
                 r: int = 4, norm: str = "layer", dropout: float = 0.1,
                 attn_dropout: float = 0.0, mlp_hidden: int | None = None, lr: float = 1e-3,
                 weight_decay: float = 0.0, mix_lr: float | None = MIX_LR, epochs: int = 3,
                 batch_size: int = 32,
                 max_steps: int | None = None, max_train: int | None = 4000,
                 max_dev: int | None = 1000, metric: str = "accuracy",
                 label_names: Sequence[str] | None = None, n_labels: int | None = None,
                 eval_batch_size: int = 256, seed: int = 0, device: str = "cpu",
                 n_threads: int | None = None):
        self.method = method
        self.k = k
        self.task = task
        self.r = r
        self.norm = norm
        self.dropout = dropout
        self.attn_dropout = attn_dropout
        self.mlp_hidden = mlp_hidden
        self.lr = lr
        self.weight_decay = weight_decay
        self.mix_lr = mix_lr
        self.epochs = epochs
        self.batch_size = batch_size
        self.max_steps = max_steps
        self.max_train = max_train
        self.max_dev = max_dev
        self.metric = metric
        self.label_names = label_names
        self.n_labels = n_labels
        self.eval_batch_size = eval_batch_size
        self.seed = seed
        self.device = device
        self.n_threads = n_threads

    def set_params(self, **params) -> "FusionClassifier":
        """scikit-learn's ``set_params``; an unknown name raises :class:`ParameterError`."""
        from sklearn.base import BaseEstimator

        try:
            return BaseEstimator.set_params(self, **params)
        except ValueError as exc:
            raise ParameterError(str(exc)) from None

    # ------------------------------------------------------------------ checks

    def _check_params(self) -> None:
        if self.method not in METHODS:
            raise ParameterError(f"unknown fusion method {self.method!r}; choose one of {', '.join(METHODS)}")
        if self.task not in TASKS:
            raise ParameterError(f"unknown task {self.task!r}; choose one of {', '.join(TASKS)}")
        if self.metric not in ("accuracy", "f1"):
            raise ParameterError(f"unknown metric {self.metric!r}; choose accuracy or f1")
        if self.metric == "f1" and self.task != "tagging":
            raise ParameterError("metric='f1' (entity F1) only applies to tagging tasks")
        if self.epochs < 1 or self.batch_size < 1:
            raise ParameterError("epochs and batch_size must be >= 1")

    def _labels(self, view) -> np.ndarray:
        labels = getattr(view, "labels", None)
        if labels is None:
            raise ProbeError("this view has no labels")
        labels = np.asarray(labels, dtype=np.int64)
        n_sent = len(view.offsets) - 1
        want = int(view.offsets[-1]) if self.task == "tagging" else n_sent
        if labels.shape != (want,):
            unit = "words" if self.task == "tagging" else "sentences"
            raise ProbeError(f"labels have shape {labels.shape}, expected one per {unit} ({want},)")
        return labels

    # ------------------------------------------------------------------ training

    def fit(self, train_view, dev_view=None) -> "FusionClassifier":
        """Train on ``train_view``; with ``dev_view`` keep the weights of the best epoch."""
        self._check_params()
        started = time.perf_counter()
        with torch_threads(self.n_threads), torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            self._fit(train_view, dev_view)
        self.fit_seconds_ = time.perf_counter() - started
        return self

    def _fit(self, train_view, dev_view) -> None:
        rng = np.random.default_rng(self.seed)
        labels = self._labels(train_view)
        n_layers = int(train_view.n_layers)
        self.n_layers_ = n_layers
        self.n_labels_ = int(self.n_labels) if self.n_labels is not None else int(labels.max()) + 1
        if self.n_labels_ < 2:
            raise ProbeError("need at least two labels to train a classifier")
        if labels.max() >= self.n_labels_:
            raise ProbeError(f"label {labels.max()} >= n_labels={self.n_labels_}")

        self.layers_ = method_layers(self.method, n_layers, self.k)
        self.hidden_ = _view_hidden(train_view, self.layers_[0])
        combiner = build_combiner(self.method, n_layers, self.hidden_, k=self.k, r=self.r,
                                  norm=self.norm, attn_dropout=self.attn_dropout)
        if self.task == "tagging":
            head = TokenTaggingHead(self.hidden_, self.n_labels_, dropout=self.dropout)
        else:
            head = SequenceClassificationHead(self.hidden_, self.n_labels_,
                                              pair=self.task == "pair",
                                              mlp_hidden=self.mlp_hidden, dropout=self.dropout)
        model = FusionModel(combiner, head).to(self.device)
        self.model_ = model
        self.n_params_ = {"combiner": count_parameters(combiner), "head": count_parameters(head),
                          "total": count_parameters(model)}

        n_sent = len(train_view.offsets) - 1
        sents = np.arange(n_sent)
        if self.task != "tagging":
            sents = sents[labels >= 0]
        if self.max_train is not None and len(sents) > self.max_train:
            sents = np.sort(rng.choice(sents, size=int(self.max_train), replace=False))
        if len(sents) == 0:
            raise ProbeError("no training sentences")
        self.n_train_sentences_ = int(len(sents))

        dev_sents = None
        if dev_view is not None:
            dev_sents = np.arange(len(dev_view.offsets) - 1)
            if self.max_dev is not None and len(dev_sents) > self.max_dev:
                dev_rng = np.random.default_rng(self.seed + 1)
                dev_sents = np.sort(dev_rng.choice(dev_sents, size=int(self.max_dev),
                                                   replace=False))

        gather = _Gatherer(train_view, self.layers_, self.device, self.task == "pair")
        opt = torch.optim.AdamW(self._param_groups(model), lr=self.lr,
                                weight_decay=self.weight_decay)
        self.history_ = []
        best_state, best_score, best_epoch = None, -np.inf, None
        steps = 0
        for epoch in range(1, self.epochs + 1):
            t0 = time.perf_counter()
            model.train()
            total, count = 0.0, 0
            for batch_sents in _length_batches(gather.lengths, sents, self.batch_size, rng):
                batch = gather.batch(batch_sents)
                logits = model(batch.feats, batch.mask, batch.segment)
                target = self._targets(batch, labels, logits)
                loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1),
                                       ignore_index=IGNORE)
                if not torch.isfinite(loss):
                    continue  # a batch without any labelled word
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += float(loss.detach())
                count += 1
                steps += 1
                if self.max_steps is not None and steps >= self.max_steps:
                    break
            record = {"epoch": epoch, "steps": steps,
                      "train_loss": total / max(count, 1), "dev_score": None}
            if dev_view is not None:
                score = self._score(dev_view, dev_sents)
                record["dev_score"] = score
                if score > best_score:
                    best_score, best_epoch = score, epoch
                    best_state = {n: v.detach().clone() for n, v in model.state_dict().items()}
            record["seconds"] = time.perf_counter() - t0
            self.history_.append(record)
            if self.max_steps is not None and steps >= self.max_steps:
                break
        if best_state is not None:
            model.load_state_dict(best_state)
            self.best_epoch_, self.best_score_ = best_epoch, float(best_score)
        else:
            self.best_epoch_, self.best_score_ = len(self.history_), None
        model.eval()

    def _param_groups(self, model: FusionModel) -> list[dict]:
        """AdamW groups: the scalar mix's logits at ``mix_lr`` without decay, the rest at ``lr``."""
        mix = getattr(model.combiner, "scalars", None) if isinstance(model.combiner, ScalarMix) \
            else None
        rest = [p for p in model.parameters() if p is not mix]
        groups = [{"params": rest}]
        if mix is not None:
            lr = self.lr if self.mix_lr is None else float(self.mix_lr)
            groups.append({"params": [mix], "lr": lr, "weight_decay": 0.0})
        return groups

    def _targets(self, batch: _Batch, labels: np.ndarray, logits: Tensor) -> Tensor:
        if self.task == "tagging":
            y = np.full(batch.mask.shape, IGNORE, dtype=np.int64)
            y[batch.rows, batch.cols] = labels[batch.words]
        else:
            y = labels[batch.sents].copy()
        y[y < 0] = IGNORE
        return torch.from_numpy(y).to(logits.device)

    # ------------------------------------------------------------------ inference

    def _check_fitted(self) -> None:
        if not hasattr(self, "model_"):
            raise ProbeError("this FusionClassifier is not fitted yet; call fit() first")

    def _predict(self, view, sents: np.ndarray | None = None) -> np.ndarray:
        """Predicted label ids: ``[n_words]`` for tagging (only ``sents``' words are set, the
        rest -1), ``[n_sent]`` otherwise."""
        if int(view.n_layers) != self.n_layers_:
            raise ProbeError(f"view has {view.n_layers} layers, the model was trained on "
                             f"{self.n_layers_}")
        model = self.model_
        model.eval()
        gather = _Gatherer(view, self.layers_, self.device, self.task == "pair")
        n_sent = len(gather.offsets) - 1
        if sents is None:
            sents = np.arange(n_sent)
        size = int(gather.offsets[-1]) if self.task == "tagging" else n_sent
        out = np.full(size, -1, dtype=np.int64)
        with torch.inference_mode():
            for batch_sents in _length_batches(gather.lengths, sents, self.eval_batch_size, None):
                batch = gather.batch(batch_sents)
                pred = model(batch.feats, batch.mask, batch.segment).argmax(-1).cpu().numpy()
                if self.task == "tagging":
                    out[batch.words] = pred[batch.rows, batch.cols]
                else:
                    out[batch.sents] = pred
        return out

    def predict(self, view) -> np.ndarray:
        """Label ids: ``[n_words]`` for tagging (split with ``view.offsets``), else ``[n_sent]``."""
        self._check_fitted()
        with torch_threads(self.n_threads):
            return self._predict(view)

    def predict_sentences(self, view) -> list[np.ndarray]:
        """Tagging only: one ``[n_words_s]`` array of label ids per sentence."""
        pred = self.predict(view)
        return np.split(pred, np.asarray(view.offsets[1:-1]))

    def score(self, view) -> float:
        """Accuracy (labelled words or sentences) or entity F1, per ``metric``."""
        self._check_fitted()
        with torch_threads(self.n_threads):
            return self._score(view, None)

    def _score(self, view, sents: np.ndarray | None) -> float:
        labels = self._labels(view)
        pred = self._predict(view, sents)
        offsets = np.asarray(view.offsets, dtype=np.int64)
        if sents is None:
            sents = np.arange(len(offsets) - 1)
        if self.task != "tagging":
            gold, guess = labels[sents], pred[sents]
            keep = gold >= 0
            return float((gold[keep] == guess[keep]).mean()) if keep.any() else 0.0
        if self.metric == "accuracy":
            words = _words_of(offsets, sents)
            gold, guess = labels[words], pred[words]
            keep = gold >= 0
            return float((gold[keep] == guess[keep]).mean()) if keep.any() else 0.0
        names = self.label_names or getattr(view, "label_names", None)
        if names is None:
            raise ProbeError("metric='f1' needs label_names (or view.label_names)")
        from .data.xtreme import entity_f1

        names = list(names)
        gold_s, pred_s = [], []
        for s in sents:
            a, b = offsets[s], offsets[s + 1]
            g = labels[a:b]
            keep = g >= 0
            gold_s.append([names[i] for i in g[keep]])
            pred_s.append([names[i] if 0 <= i < len(names) else "O" for i in pred[a:b][keep]])
        return entity_f1(gold_s, pred_s)


def _words_of(offsets: np.ndarray, sents: np.ndarray) -> np.ndarray:
    starts, lens = offsets[sents], offsets[sents + 1] - offsets[sents]
    first = np.repeat(np.cumsum(lens) - lens, lens)
    return np.repeat(starts, lens) + np.arange(int(lens.sum())) - first
