"""What every generator's training loop shares: its place in the process group, seeded random streams, data
sharding, gradient all-reduce, early stopping, atomic checkpoints and the epoch loop that ties them together.

A generator writes the work of one epoch; `run_epochs` does the rest: resume from a checkpoint written for
the same rows and settings, history, early stopping, a checkpoint after every epoch and the callback (rank 0).
"""

from __future__ import annotations

import copy
import math
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from synthlake.generators.base import TrainOptions

CHECKPOINT_FILE = "checkpoint.pt"
# name -> (get, set): a piece of training state a checkpoint saves and a resumed run restores
StatePart = tuple[Callable[[], Any], Callable[[Any], None]]


def rank_and_world() -> tuple[int, int]:
    """This process's rank and the number of processes (0, 1 outside torch.distributed)."""
    return (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)


def across_ranks(value: int, op, device: str = "cpu") -> int:
    """An integer reduced over the process group with `op` (a torch.distributed.ReduceOp); `device`: the
    process's (NCCL reduces CUDA tensors only)."""
    t = torch.tensor([value], dtype=torch.int64, device=device)
    dist.all_reduce(t, op=op)
    return int(t.item())


def stream(seed: int, rank: int, epoch: int, purpose: int) -> int:
    """A seed for one (seed, rank, epoch, purpose): random streams that a resumed run picks up exactly."""
    return int(np.random.SeedSequence([seed, rank, epoch, purpose]).generate_state(1, np.uint64)[0] >> 1)


def batch_order(rows: int, needed: int, gen: torch.Generator) -> torch.Tensor:
    """`needed` row indices: shuffled passes over `rows` rows, as many as it takes."""
    passes = [torch.randperm(rows, generator=gen) for _ in range(math.ceil(needed / rows))]
    return torch.cat(passes)[:needed]


def average_gradients(module: torch.nn.Module) -> None:
    """All-reduce a module's gradients as one flat buffer: one collective per step, not one per tensor."""
    grads = [p.grad for p in module.parameters()]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


@dataclass
class EarlyStopping:
    """Stop after `patience` epochs without a validation loss better by 1e-4; keep the best weights. A nan
    loss (no validation rows) never stops training."""

    network: torch.nn.Module
    patience: int
    best: float = math.inf
    best_state: dict | None = None
    best_epoch: int = -1
    waited: int = 0
    stopped: bool = False

    def update(self, val_loss: float, epoch: int) -> None:
        if math.isnan(val_loss):
            return
        if val_loss < self.best - 1e-4:
            self.best, self.best_epoch, self.waited = val_loss, epoch, 0
            self.best_state = copy.deepcopy(self.network.state_dict())
        else:
            self.waited += 1
            self.stopped = self.waited >= self.patience

    def restore_best(self) -> None:
        if self.best_state is not None:
            self.network.load_state_dict(self.best_state)

    def summary(self) -> dict[str, Any]:
        kept = self.best_state is not None
        return {"best_epoch": self.best_epoch if kept else None, "best_val_loss": self.best if kept else None}

    def part(self) -> StatePart:
        keys = ("best", "best_state", "best_epoch", "waited", "stopped")
        return (lambda: {k: getattr(self, k) for k in keys},
                lambda state: [setattr(self, k, state[k]) for k in keys])


class Checkpoint:
    """A training checkpoint: tensors, state dicts and plain values, saved atomically with torch.save and
    loaded with weights_only=True (no pickled objects); `signature` says what it was written for."""

    def __init__(self, directory: str | Path, signature: str):
        self.path = Path(directory) / CHECKPOINT_FILE
        self.signature = signature

    def load(self, device: str) -> dict[str, Any] | None:
        if not self.path.exists():
            return None
        state = torch.load(self.path, map_location=device, weights_only=True)
        if state.get("signature") != self.signature:
            warnings.warn(f"{self.path} was written for other rows or settings: training starts afresh", stacklevel=3)
            return None
        return state

    def save(self, state: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        torch.save({**state, "signature": self.signature}, tmp)
        os.replace(tmp, self.path)


@dataclass
class EpochLoop:
    """`run(epochs, one_epoch)`: history records {"epoch": e, **one_epoch(e)}, resumed from `options`'
    checkpoint folder when it holds one with this `signature`; `parts` (and the early stopping) are what a
    checkpoint saves besides the history."""

    options: TrainOptions
    signature: str = ""
    parts: dict[str, StatePart] = field(default_factory=dict)
    early: EarlyStopping | None = None

    def run(self, epochs: int, one_epoch: Callable[[int], dict[str, float]]) -> list[dict[str, float]]:
        rank, world = rank_and_world()
        parts = {**self.parts, **({"early": self.early.part()} if self.early else {})}
        opts = self.options
        ckpt = Checkpoint(opts.checkpoint_dir, self.signature) if opts.checkpoint_dir else None
        state = ckpt.load(opts.device) if ckpt else None
        history: list[dict[str, float]] = []
        if state is not None:
            history = state["history"]
            for name, (_, restore) in parts.items():
                restore(state[name])
        if ckpt and world > 1:
            dist.barrier()  # every rank has read the checkpoint before rank 0 writes the next
        stopped = self.early is not None and self.early.stopped
        for epoch in range(len(history), 0 if stopped else epochs):
            history.append({"epoch": epoch, **one_epoch(epoch)})
            if self.early is not None:
                self.early.update(history[-1].get("val_loss", math.nan), epoch)
            if ckpt and rank == 0:
                ckpt.save({"history": history, **{name: get() for name, (get, _) in parts.items()}})
            if opts.on_epoch and rank == 0:
                opts.on_epoch(history[-1])
            if self.early is not None and self.early.stopped:
                break
        if self.early is not None:
            self.early.restore_best()
        return history
