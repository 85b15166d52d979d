"""tabular_ar's network and its losses (torch); ar_sampler.py samples the same network without torch."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional


class Network(nn.Module):
    """Column i's context is the running sum s_i of the embeddings (width `hidden`) of the tokens before it;
    its head is relu(s_i * gate_i + shift_i), then `layers - 1` more hidden layers, then the logits. A sampled
    row costs one gather-add per column plus the heads: sampling is fast. Layers are nn.Embedding, nn.Linear,
    ReLU and Dropout only (no BatchNorm, no recurrent cells), so Opacus can wrap the model for DP-SGD."""

    def __init__(self, vocab: list[int], hidden: int, layers: int, dropout: float):
        super().__init__()
        cols = len(vocab)
        self.vocab = list(vocab)
        self.embeddings = nn.ModuleList(nn.Embedding(v, hidden) for v in vocab[:-1])
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

    def forward(self, tokens: torch.Tensor) -> list[torch.Tensor]:
        rows, cols = len(tokens), len(self.vocab)
        position = torch.arange(cols, device=tokens.device).expand(rows, cols)
        zeros = torch.zeros(rows, 1, self.gate.embedding_dim, device=tokens.device)
        parts = [emb(tokens[:, j]) for j, emb in enumerate(self.embeddings)]
        context = torch.cat([zeros, torch.stack(parts, dim=1).cumsum(dim=1)], dim=1) if parts else zeros
        x = self.dropout(functional.relu(context * self.gate(position) + self.shift(position)))
        return [head(x[:, i]) for i, head in enumerate(self.heads)]


def row_losses(network: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """Per-row negative log-likelihood: the sum over columns of the cross-entropies."""
    logits = network(tokens)
    return sum(functional.cross_entropy(lg, tokens[:, i], reduction="none") for i, lg in enumerate(logits))


def mean_loss(model: nn.Module, batch: torch.Tensor) -> torch.Tensor:
    logits = model(batch)
    return sum(functional.cross_entropy(lg, batch[:, i]) for i, lg in enumerate(logits))


def val_sums(network: nn.Module, val: torch.Tensor) -> list[torch.Tensor]:
    """The validation rows' summed loss and their count, on this rank's share."""
    network.eval()
    total = torch.zeros((), device=val.device, dtype=torch.float64)
    with torch.no_grad():
        for start in range(0, len(val), 8192):
            total += row_losses(network, val[start : start + 8192]).double().sum()
    return [total, torch.tensor(float(len(val)), dtype=torch.float64, device=val.device)]
