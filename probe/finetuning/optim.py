"""Optimisation pieces of the trainer: :class:`RowAdamW` (AdamW over the rows of the word-
embedding matrix a batch used), global-norm clipping over dense and sparse gradients, and the
linear warm-up/decay schedule.
"""
from __future__ import annotations

import math
from typing import Callable


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


def clip_grad_norm_(params, max_norm: float) -> float:
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


def linear_schedule(total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / max(1, warmup_steps)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    return factor
