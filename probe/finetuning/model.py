"""The network that is fine-tuned: which layers are fused (:class:`FusionSpec`,
:func:`parse_fusion`) and :func:`FinetuneModel`, the encoder + optional fusion block + task
head trained end to end. Layer 0 = embedding output, L = last layer.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import ProbeError

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
