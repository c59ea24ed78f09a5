"""Training one (fusion, seed) run: :class:`Trainer` (optimisers, seeded batches, micro-
batches, autocast, per-epoch checkpoints that resume, English-dev selection of the epoch).

Each epoch's data order and dropout are seeded by ``(seed, epoch)``, so a resumed run ends
with the same weights as an uninterrupted one.
"""
from __future__ import annotations

import hashlib
import math
import time
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import ProbeError
from .encoding import IGNORE, Encoded, collate
from .evaluation import example_counts, predict, score_from_counts
from .optim import RowAdamW, clip_grad_norm_, linear_schedule


def summed_loss(logits, y):
    """Summed cross-entropy over labelled items (the caller divides by the batch's count)."""
    from torch.nn import functional as F

    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), y.reshape(-1),
                           ignore_index=IGNORE, reduction="sum")


def word_embeddings(encoder):
    emb = encoder.get_input_embeddings()
    if emb is None or not hasattr(emb, "weight"):
        raise ProbeError("this encoder exposes no input embedding matrix")
    return emb


class Trainer:
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
        emb = word_embeddings(self.model.encoder)
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
        self.schedule = linear_schedule(self.total_steps, self.warmup_steps)
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

    def autocast(self):
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
        collated = [collate(self.train, r, self.pad_id, self.device) for r in parts]
        n_items = sum(int((c[3] != IGNORE).sum()) for c in collated)
        if n_items == 0:
            self.step += 1
            return float("nan")
        self._set_lr()
        total = 0.0
        scaler = getattr(self, "_scaler", None)
        for ids, mask, types, y in collated:
            with self.autocast():
                logits = self.model(ids, mask, types)
            loss = summed_loss(logits, y) / n_items
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
        clip_grad_norm_(self.trainable, self.p["max_grad_norm"])
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
                               p["eval_batch_size"], self.autocast)
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
