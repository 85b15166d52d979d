"""tabular_ar's network and its losses (torch); ar_sampler.py samples the same network without torch."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional


class Network(nn.Module):
    """Column i's context is the sum s_i of the embeddings (width `hidden`) of the tokens before it in the
    row's column order; its head is relu(s_i * gate_i + shift_i), then `layers - 1` more hidden layers, then
    the logits. A sampled row costs one gather-add per column plus the heads: sampling is fast. Layers are
    nn.Embedding, nn.Linear, ReLU and Dropout only (no BatchNorm, no recurrent cells), so Opacus can wrap the
    model for DP-SGD.

    The order is the columns' own unless `ranks` says otherwise; a network trained on other orders too
    (`flexible`: every column has an embedding, the last one included) can sample any columns first, which
    is how conditional sampling works (synthlake.conditions)."""

    def __init__(self, vocab: list[int], hidden: int, layers: int, dropout: float, flexible: bool = False):
        super().__init__()
        cols = len(vocab)
        self.vocab = list(vocab)
        self.embeddings = nn.ModuleList(nn.Embedding(v, hidden) for v in (vocab if flexible else vocab[:-1]))
        for emb in self.embeddings:
            nn.init.normal_(emb.weight, std=1 / math.sqrt(max(1, cols - 1)))
        self.gate, self.shift = nn.Embedding(cols, hidden), nn.Embedding(cols, hidden)
        nn.init.ones_(self.gate.weight)
        nn.init.normal_(self.shift.weight, std=0.1)
        self.dropout = nn.Dropout(dropout) if dropout else nn.Identity()
        heads = []
        for v in vocab:
            parts: list[nn.Module] = []
            for _ in range(layers - 1):
                parts += [nn.Linear(hidden, hidden), nn.ReLU()] + ([nn.Dropout(dropout)] if dropout else [])
            heads.append(nn.Sequential(*parts, nn.Linear(hidden, v)))
        self.heads = nn.ModuleList(heads)

    def forward(self, tokens: torch.Tensor, ranks: torch.Tensor | None = None) -> list[torch.Tensor]:
        """`ranks` (rows x columns): each column's place in the row's order; None: the columns' own order."""
        rows, cols = len(tokens), len(self.vocab)
        position = torch.arange(cols, device=tokens.device).expand(rows, cols)
        zeros = torch.zeros(rows, 1, self.gate.embedding_dim, device=tokens.device)
        parts = [emb(tokens[:, j]) for j, emb in enumerate(self.embeddings)]
        if ranks is not None:  # column i sees the columns j placed before it: mask[r, i, j] = ranks[r, j] < ranks[r, i]
            before = (ranks[:, None, : len(parts)] < ranks[:, :, None]).to(zeros.dtype)
            context = torch.einsum("rij,rjh->rih", before, torch.stack(parts, dim=1))
        else:
            context = torch.cat([zeros, torch.stack(parts, dim=1).cumsum(dim=1)], dim=1)[:, :cols] if parts else zeros
        x = self.dropout(functional.relu(context * self.gate(position) + self.shift(position)))
        return [head(x[:, i]) for i, head in enumerate(self.heads)]


def row_losses(network: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """Per-row negative log-likelihood in the columns' own order: the sum over columns of the cross-entropies."""
    logits = network(tokens)
    return sum(functional.cross_entropy(lg, tokens[:, i], reduction="none") for i, lg in enumerate(logits))


def mean_loss(model: nn.Module, batch: torch.Tensor, ranks: torch.Tensor | None = None) -> torch.Tensor:
    logits = model(batch, ranks)
    return sum(functional.cross_entropy(lg, batch[:, i]) for i, lg in enumerate(logits))


def column_ranks(owners: torch.Tensor, fine: torch.Tensor, rows: int, share: float,
                 gen: torch.Generator) -> torch.Tensor | None:
    """Per row, each model column's place in a column order: a random order of the table's columns for a
    `share` of the rows (a split column's coarse token still right before its fine one), the columns' own
    order for the rest. None when share is 0. `owners[j]`: the table column model column j belongs to;
    `fine[j]`: 1 for a split column's fine token."""
    if share <= 0:
        return None
    columns = int(owners.max()) + 1
    keys = torch.rand(rows, columns, generator=gen)
    natural = torch.rand(rows, generator=gen) >= share
    keys[natural] = torch.arange(columns, dtype=keys.dtype)
    place = keys.argsort(dim=1).argsort(dim=1)
    return place[:, owners] * 2 + fine


def val_sums(network: nn.Module, val: torch.Tensor) -> list[torch.Tensor]:
    """The validation rows' summed loss and their count, on this rank's share."""
    network.eval()
    total = torch.zeros((), device=val.device, dtype=torch.float64)
    with torch.no_grad():
        for start in range(0, len(val), 8192):
            total += row_losses(network, val[start : start + 8192]).double().sum()
    return [total, torch.tensor(float(len(val)), dtype=torch.float64, device=val.device)]
