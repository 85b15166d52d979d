"""An autoregressive generator over discretised columns, in the spirit of MOSTLY AI's TabularARGN.

Every learned column becomes a column of tokens:

- numeric and datetime columns: one token per distinct value when there are few (an integer column with
  at most `max_bins` values is reproduced exactly), else quantile bins; a sampled bin becomes a value by
  interpolating between within-bin quantiles (`bin_knots` of them) kept from the real values, so continuous
  columns stay continuous;
- categorical columns: one token per category seen at least `min_category_count` times (at most
  `max_categories` of them), one "other" token for the rest, generated as `RARE_CATEGORY`: a value seen in a
  handful of rows could single those rows out, so rare values are neither stored in the model nor emitted;
- a column with nulls gets one more token for null;
- a column with more than `split_above` tokens is modelled as two: a coarse token (token // F) and a fine one
  (token % F), F = ceil(sqrt(tokens)): narrow heads, cheap to train and to sample.

The model factorises p(row) = prod_i p(column_i | columns < i) in the metadata's learned-column order. Each
model column j has an embedding table of width `hidden_dim`; the context of column i is the running sum of
the embeddings of the tokens before it, s_i = sum_{j<i} E_j[t_j]; its head is
relu(s_i * gate_i + shift_i), then `hidden_layers - 1` more hidden layers, then the logits over its tokens. The
loss is the sum of the columns' cross-entropies. Layers are nn.Embedding, nn.Linear, ReLU and Dropout only (no
BatchNorm, no recurrent cells), so Opacus can wrap the model for DP-SGD.

Sampling goes column by column over batches of rows: a column costs one embedding gather-add into the running
context, its head, and an inverse-CDF draw with one uniform per row and column. The uniforms come from numpy's
default_rng(seed) in blocks of fixed size, so the same (n, seed, row_offset) gives the same rows and a shorter
sample is a prefix of a longer one.

Identifier and PII columns are never learned: `synthlake.fakes.generated_column` fills them. Only torch,
numpy and pandas are used (no `ctgan`, no `rdt`). A model saves as a state_dict plus JSON.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
from torch import nn
from torch.nn import functional

from synthlake.fakes import generated_column
from synthlake.generators.base import EpochCallback, Generator, HyperParam
from synthlake.metadata import RARE_CATEGORY, ColumnKind, ColumnSpec, TableMetadata

HYPER_PARAMS: dict[str, HyperParam] = {
    "epochs": HyperParam(40, low=1, high=100_000, doc="most passes over the training rows"),
    "batch_size": HyperParam(512, low=1, high=10_000_000, doc="global batch, split over the processes"),
    "lr": HyperParam(3e-3, low=1e-6, high=1.0, doc="Adam learning rate"),
    "weight_decay": HyperParam(0.0, low=0.0, high=1.0, doc="Adam weight decay"),
    "hidden_dim": HyperParam(64, low=1, high=8192, doc="width of the embeddings, the context and the heads"),
    "hidden_layers": HyperParam(1, low=1, high=8, doc="hidden layers in each column's head"),
    "dropout": HyperParam(0.0, low=0.0, high=0.9, doc="dropout after each hidden layer"),
    "max_bins": HyperParam(100, low=2, high=4096, doc="quantile bins of a numeric or datetime column"),
    "bin_knots": HyperParam(9, low=2, high=257, doc="within-bin quantiles a sampled value interpolates"),
    "min_category_count": HyperParam(5, low=1, high=1_000_000_000, doc="rarer categories share one token"),
    "max_categories": HyperParam(1000, low=1, high=100_000, doc="most category tokens of a column"),
    "val_fraction": HyperParam(0.1, low=0.0, high=0.5, doc="rows held out for early stopping"),
    "patience": HyperParam(5, low=1, high=100_000, doc="epochs without a better validation loss before stopping"),
    "split_above": HyperParam(32, low=2, high=1_000_000, doc="columns with more tokens are two: coarse, fine"),
    "temperature": HyperParam(1.0, low=0.01, high=10.0, doc="sampling temperature (1: the learned distribution)"),
}
WEIGHTS_FILE = "generator.pt"
_MAX_LOGIT_ELEMENTS = 1 << 23  # rows x tokens held at once while sampling
_CHUNK = 8192  # rows sampled at once



# ---- column encodings ----------------------------------------------------------------------------------


@dataclass
class _CategoricalColumn:
    """Tokens: the kept categories (most frequent first), then "other" if any were merged, then null."""

    name: str
    categories: list[str]
    rare: bool = False  # some categories were merged into the "other" token
    null: bool = False

    @classmethod
    def fit(cls, spec: ColumnSpec, values: pd.Series, min_count: int, max_categories: int) -> _CategoricalColumn:
        labels = _category_strings(values)
        counts = labels.dropna().value_counts()
        order = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))  # ties by value: independent of row order
        kept = [v for v, c in order if c >= min_count][:max_categories]
        return cls(spec.name, kept, len(order) > len(kept), bool(labels.isna().any()))

    @property
    def other_token(self) -> int | None:
        return len(self.categories) if self.rare else None

    @property
    def null_token(self) -> int | None:
        return len(self.categories) + bool(self.rare) if self.null else None

    @property
    def vocab(self) -> int:
        return len(self.categories) + bool(self.rare) + self.null

    def encode(self, values: pd.Series) -> np.ndarray:
        labels = _category_strings(values)
        tokens = pd.Index(self.categories).get_indexer(labels.fillna("")).astype(np.int64)
        missing = labels.isna().to_numpy()
        unknown = (tokens < 0) & ~missing
        if unknown.any():
            if self.other_token is None:
                raise ValueError(
                    f"column '{self.name}': categories not seen when fitting: {sorted(set(labels[unknown]))[:5]}"
                )
            tokens[unknown] = self.other_token
        if missing.any():
            if self.null_token is None:
                raise ValueError(f"column '{self.name}': nulls, but none were seen when fitting")
            tokens[missing] = self.null_token
        return tokens

    def decode(self, tokens: np.ndarray, u: np.ndarray) -> pd.Series:
        values = np.empty(len(tokens), dtype=object)
        known = tokens < len(self.categories)
        values[known] = np.asarray(self.categories, dtype=object)[tokens[known]]
        if self.other_token is not None:
            values[tokens == self.other_token] = RARE_CATEGORY
        if self.null_token is not None:
            values[tokens == self.null_token] = None
        return pd.Series(values, name=self.name, dtype=object)

    def to_json(self) -> dict[str, Any]:
        return {
            "type": "categorical",
            "name": self.name,
            "categories": self.categories,
            "rare": self.rare,
            "null": self.null,
        }


@dataclass
class _NumericColumn:
    """Tokens: one per distinct value (`values`, exact) or one per quantile bin (`edges`, `knots`), then null.

    Bin b holds edges[b-1] < x <= edges[b]; knots[b] are the bin's quantiles at 0, 1/(K-1), ..., 1.
    Datetimes are seconds since the epoch (UTC) inside; `tz` is the training column's time zone, if any, and
    `resolution` the coarsest unit (day, hour, minute, second) every training value is a whole number of.
    """

    name: str
    integer: bool = False
    datetime: bool = False
    tz: str | None = None
    resolution: float | None = None
    values: list[float] | None = None
    edges: list[float] | None = None
    knots: list[list[float]] | None = None
    null: bool = False

    @classmethod
    def fit(cls, spec: ColumnSpec, series: pd.Series, max_bins: int, n_knots: int) -> _NumericColumn:
        is_dt = spec.kind == ColumnKind.DATETIME
        tz = None
        if is_dt:
            dtype = pd.to_datetime(series, utc=False).dtype if len(series) else None
            tz = str(dtype.tz) if getattr(dtype, "tz", None) is not None else None
        x = _to_seconds(series) if is_dt else pd.to_numeric(series, errors="raise").to_numpy(float, na_value=np.nan)
        null = bool(np.isnan(x).any())
        x = np.sort(x[~np.isnan(x)])
        column = cls(spec.name, integer=spec.integer, datetime=is_dt, tz=tz, null=null)
        if is_dt and x.size:
            column.resolution = next((r for r in (86400.0, 3600.0, 60.0, 1.0) if np.all(np.mod(x, r) == 0)), None)
        distinct = np.unique(x)
        if distinct.size <= max_bins and (spec.integer or 4 * distinct.size <= x.size):
            column.values = distinct.tolist()
            return column
        edges = np.unique(np.quantile(x, np.arange(1, max_bins) / max_bins, method="lower"))
        edges = edges[edges < x[-1]]  # the last bin (edges[-1], max] is not empty
        bounds = np.searchsorted(x, edges, side="right")  # bin b is x[bounds[b-1]:bounds[b]]
        starts, stops = np.r_[0, bounds], np.r_[bounds, x.size]
        q = np.linspace(0, 1, n_knots)
        column.edges = edges.tolist()
        column.knots = [np.quantile(x[a:b], q).tolist() for a, b in zip(starts, stops, strict=True)]
        return column

    @property
    def bins(self) -> int:
        return len(self.values) if self.values is not None else len(self.knots)

    @property
    def null_token(self) -> int | None:
        return self.bins if self.null else None

    @property
    def vocab(self) -> int:
        return self.bins + self.null

    def encode(self, series: pd.Series) -> np.ndarray:
        x = (
            _to_seconds(series)
            if self.datetime
            else pd.to_numeric(series, errors="raise").to_numpy(float, na_value=np.nan)
        )
        missing = np.isnan(x)
        if self.values is not None:
            tokens = np.minimum(np.searchsorted(self.values, x), max(self.bins - 1, 0))
        else:
            tokens = np.searchsorted(self.edges, x, side="left")
        tokens = tokens.astype(np.int64)
        if missing.any():
            if self.null_token is None:
                raise ValueError(f"column '{self.name}': nulls, but none were seen when fitting")
            tokens[missing] = self.null_token
        return tokens

    def decode(self, tokens: np.ndarray, u: np.ndarray) -> pd.Series:
        x = np.full(len(tokens), np.nan)
        present = tokens < self.bins
        t = tokens[present]
        if self.values is not None:
            x[present] = np.asarray(self.values)[t]
        else:
            knots = np.asarray(self.knots)
            pos = u[present] * (knots.shape[1] - 1)
            lo = np.minimum(pos.astype(np.int64), knots.shape[1] - 2)
            left = knots[t, lo]
            x[present] = left + (pos - lo) * (knots[t, lo + 1] - left)
            if self.integer:
                x = np.round(x)
            elif self.datetime and self.resolution:
                x = np.round(x / self.resolution) * self.resolution
        if self.datetime:
            values = pd.Series(pd.to_datetime(x, unit="s"), name=self.name).astype("datetime64[ns]")
            if self.tz is not None:
                values = values.dt.tz_localize("UTC").dt.tz_convert(self.tz)
            return values
        if self.integer:
            if self.null:
                return pd.Series(pd.array(np.where(np.isnan(x), None, x), dtype="Int64"), name=self.name)
            return pd.Series(x.astype(np.int64), name=self.name)
        return pd.Series(x, name=self.name)

    def to_json(self) -> dict[str, Any]:
        return {
            "type": "numeric",
            "name": self.name,
            "integer": self.integer,
            "datetime": self.datetime,
            "tz": self.tz,
            "resolution": self.resolution,
            "values": self.values,
            "edges": self.edges,
            "knots": self.knots,
            "null": self.null,
        }


_Column = _CategoricalColumn | _NumericColumn


def _column_from_json(data: dict[str, Any]) -> _Column:
    data = dict(data)
    kind = data.pop("type")
    return _CategoricalColumn(**data) if kind == "categorical" else _NumericColumn(**data)


def _category_strings(values: pd.Series) -> pd.Series:
    """Categories as strings (as the CTGAN encoding keeps them), nulls as NaN."""
    values = values.astype(object)
    return values.astype(str).where(values.notna(), None)


def _to_seconds(values: pd.Series) -> np.ndarray:
    ts = pd.to_datetime(values, errors="raise", utc=True)
    return (ts - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy(dtype=float, na_value=np.nan)


def _split(vocab: int, above: int) -> int:
    """The fine vocabulary a column of `vocab` tokens is split by (0: not split): token = coarse * F + fine."""
    return math.ceil(math.sqrt(vocab)) if vocab > above else 0


# ---- the network ---------------------------------------------------------------------------------------


class _Network(nn.Module):
    """Column i's context is the running sum s_i of the embeddings (width `hidden`) of the tokens before it;
    its head is relu(s_i * gate_i + shift_i), then `layers - 1` more hidden layers, then the logits. A sampled
    row costs one gather-add per column plus the heads: sampling is fast."""

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


def _losses(network: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """Per-row negative log-likelihood: the sum over columns of the cross-entropies."""
    logits = network(tokens)
    return sum(functional.cross_entropy(lg, tokens[:, i], reduction="none") for i, lg in enumerate(logits))


def _mean_loss(model: nn.Module, batch: torch.Tensor) -> torch.Tensor:
    logits = model(batch)
    return sum(functional.cross_entropy(lg, batch[:, i]) for i, lg in enumerate(logits))


def _draw(logits: torch.Tensor, u: torch.Tensor, temperature: float) -> torch.Tensor:
    """Inverse-CDF sampling: one uniform per row picks a token.

    The logits are shifted by the batch's largest one, not each row's (a row-wise softmax is several times
    slower on narrow rows); the few rows whose probabilities that would underflow get an exact softmax.
    """
    if temperature != 1.0:
        logits = logits / temperature
    cdf = (logits - logits.max()).exp_().cumsum_(dim=1)
    weak = cdf[:, -1] < 1e-30
    if weak.any():
        cdf[weak] = torch.softmax(logits[weak], dim=1).cumsum_(dim=1)
    return torch.searchsorted(cdf, u.unsqueeze(1) * cdf[:, -1:]).squeeze(1)


def _padded_output(layer: nn.Linear) -> tuple[torch.Tensor, torch.Tensor]:
    """An output layer as (bias, weight.T) padded to a multiple of 16 outputs: skinny matrix products are
    several times slower on CPU than ones 16 wide. The padding is sliced off the product."""
    v, width = layer.out_features, 16 * math.ceil(layer.out_features / 16)
    weight = torch.zeros(width, layer.in_features)
    weight[:v] = layer.weight.detach()
    bias = torch.zeros(width)
    bias[:v] = layer.bias.detach()
    return bias, weight.T.contiguous()


class _Sampler:
    """The network rearranged for sampling, column by column over a batch of rows."""

    def __init__(self, network: nn.Module):
        self.net = network.eval()
        self.vocab = network.vocab
        self.hiddens = [head[:-1] for head in network.heads]  # the layers between the context and the logits
        self.outputs = [_padded_output(head[-1]) for head in network.heads]

    @torch.no_grad()
    def tokens(self, u: torch.Tensor, temperature: float) -> torch.Tensor:
        """Tokens for len(u) rows; u holds one uniform per row and column."""
        net, m, cols = self.net, len(u), len(self.vocab)
        out = torch.empty(cols, m, dtype=torch.long)
        context = torch.zeros(m, net.gate.embedding_dim)
        gate, shift = net.gate.weight, net.shift.weight
        for i in range(cols):
            x = torch.addcmul(shift[i], context, gate[i]).relu_()
            tok = _draw(self._logits(i, x), u[:, i], temperature)
            out[i] = tok
            if i < cols - 1:
                context += functional.embedding(tok, net.embeddings[i].weight)
        return out.T

    def _logits(self, i: int, x: torch.Tensor) -> torch.Tensor:
        bias, weight = self.outputs[i]
        return torch.addmm(bias, self.hiddens[i](x), weight)[:, : self.vocab[i]].contiguous()


# ---- the generator -------------------------------------------------------------------------------------


class AutoregressiveGenerator(Generator):
    name = "tabular_ar"
    hyper_params = HYPER_PARAMS

    def __init__(self, metadata: TableMetadata, **hyper: Any):
        super().__init__(metadata, **hyper)
        self.columns: list[_Column] | None = None
        self.network: nn.Module | None = None
        self.training: dict[str, Any] = {}
        self._sampler: _Sampler | None = None

    # ---- tokens ----------------------------------------------------------------------------------
    def _splits(self) -> list[int]:
        return [_split(c.vocab, self.hyper["split_above"]) for c in self.columns]

    def _sub_vocab(self) -> list[int]:
        """The model's columns: a column with many tokens is two, its coarse and its fine token."""
        vocab = []
        for column, fine in zip(self.columns, self._splits(), strict=True):
            vocab += [math.ceil(column.vocab / fine), fine] if fine else [column.vocab]
        return vocab

    def _to_sub(self, tokens: list[np.ndarray]) -> np.ndarray:
        parts = []
        for t, fine in zip(tokens, self._splits(), strict=True):
            parts += [t // fine, t % fine] if fine else [t]
        return np.column_stack(parts).astype(np.int32)

    def _from_sub(self, sub: np.ndarray) -> list[np.ndarray]:
        tokens, k = [], 0
        for column, fine in zip(self.columns, self._splits(), strict=True):
            if fine:
                tokens.append(np.minimum(sub[:, k] * fine + sub[:, k + 1], column.vocab - 1))
                k += 2
            else:
                tokens.append(sub[:, k])
                k += 1
        return tokens

    # ---- training --------------------------------------------------------------------------------
    def _fit(self, table: pd.DataFrame) -> None:
        encoded = self.prepare(table, seed=0)
        self.train(encoded, seed=0)

    def prepare(self, table: pd.DataFrame, seed: int) -> np.ndarray:
        """Fit the column encodings (once, before any training process starts); return the token matrix,
        int32, one row per table row, one column per model column (a column with more than `split_above`
        tokens takes two). The encoding is deterministic: `seed` is unused."""
        h = self.hyper
        self.columns = []
        for spec in self.metadata.learned_columns:
            if spec.kind == ColumnKind.CATEGORICAL:
                column = _CategoricalColumn.fit(spec, table[spec.name], h["min_category_count"], h["max_categories"])
            else:
                column = _NumericColumn.fit(spec, table[spec.name], h["max_bins"], h["bin_knots"])
            self.columns.append(column)
        self.network, self._sampler = None, None
        return self._to_sub([c.encode(table[c.name]) for c in self.columns])

    def train(
        self,
        encoded: np.ndarray,
        seed: int,
        device: str = "cpu",
        on_epoch: EpochCallback | None = None,
    ) -> list[dict[str, float]]:
        """Adam on the summed cross-entropies, early stopping on a held-out validation loss (the best weights
        are kept). Under torch.distributed each process trains on its shard of the training rows, the model in
        DistributedDataParallel; every process gets the same split, the same initial weights and the same
        number of steps. `on_epoch(record)` gets each epoch's history record on rank 0 (val_loss nan without a
        split).
        """
        if self.columns is None:
            raise RuntimeError("call prepare() before train()")
        h = self.hyper
        encoded = np.asarray(encoded)
        vocab = self._sub_vocab()
        if encoded.ndim != 2 or encoded.shape[1] != len(vocab):
            raise ValueError(f"encoded rows must have {len(vocab)} columns, got shape {encoded.shape}")
        if len(encoded) and ((encoded < 0).any() or (encoded >= np.asarray(vocab)).any()):
            raise ValueError("encoded rows hold tokens outside the columns' vocabularies: prepare() them again")
        rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)

        order = np.random.default_rng(seed).permutation(len(encoded))  # the same split on every rank
        n_val = int(len(encoded) * h["val_fraction"]) if len(encoded) >= 20 else 0
        val_rows, train_rows = order[:n_val], order[n_val:]
        if len(train_rows) < world:
            raise ValueError(f"{len(train_rows)} training rows cannot be split over {world} processes")
        shard = torch.from_numpy(encoded[np.sort(train_rows[rank::world])].astype(np.int64)).to(device)
        val = torch.from_numpy(encoded[np.sort(val_rows[rank::world])].astype(np.int64)).to(device)
        local_batch = max(1, h["batch_size"] // world)
        steps = max(1, math.ceil(len(train_rows) / h["batch_size"]))  # equal on every rank

        torch.manual_seed(seed)  # identical initial weights on every rank
        network = self._build(vocab).to(device)
        model = torch.nn.parallel.DistributedDataParallel(network) if world > 1 else network
        opt = torch.optim.Adam(network.parameters(), lr=h["lr"], weight_decay=h["weight_decay"])
        gen = torch.Generator().manual_seed(seed * 7919 + rank)

        history: list[dict[str, float]] = []
        best, best_state, best_epoch, waited = math.inf, None, -1, 0
        for epoch in range(h["epochs"]):
            network.train()
            rows = _batch_order(len(shard), steps * local_batch, gen).to(device)
            total = torch.zeros((), device=device)
            for step in range(steps):
                batch = shard[rows[step * local_batch : (step + 1) * local_batch]]
                loss = _mean_loss(model, batch)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += loss.detach()
            losses = torch.stack([(total / steps).double(), *_val_sums(network, val)]).cpu()
            if world > 1:
                dist.all_reduce(losses)
            train_loss = losses[0].item() / world
            val_loss = losses[1].item() / losses[2].item() if losses[2] > 0 else math.nan
            history.append({"epoch": epoch, "loss": train_loss, "val_loss": val_loss})
            if on_epoch and rank == 0:
                on_epoch(history[-1])
            if math.isnan(val_loss):
                continue
            if val_loss < best - 1e-4:
                best, best_epoch, waited = val_loss, epoch, 0
                best_state = copy.deepcopy(network.state_dict())
            else:
                waited += 1
                if waited >= h["patience"]:
                    break
        if best_state is not None:
            network.load_state_dict(best_state)
        self.network, self._sampler = network.cpu().eval(), None
        self.training = {
            "epochs_run": len(history),
            "rows": len(encoded),
            "best_epoch": best_epoch if best_state is not None else None,
            "best_val_loss": best if best_state is not None else None,
        }
        return history

    def _build(self, vocab: list[int]) -> nn.Module:
        h = self.hyper
        return _Network(vocab, h["hidden_dim"], h["hidden_layers"], h["dropout"])

    # ---- sampling --------------------------------------------------------------------------------
    def _sample(self, n: int, seed: int, row_offset: int) -> pd.DataFrame:
        if self.network is None or self.columns is None:
            raise RuntimeError("the generator is not fitted")
        if self._sampler is None:
            self._sampler = _Sampler(self.network)
        cols, sub = len(self.columns), len(self._sampler.vocab)
        rng = np.random.default_rng(seed)
        # uniforms are drawn in blocks of a fixed size, so a shorter sample is a prefix of a longer one
        block = min(65_536, max(1024, (1 << 21) // (sub + cols)))
        chunk = max(256, min(_CHUNK, _MAX_LOGIT_ELEMENTS // max(self._sampler.vocab)))
        tokens, within = np.empty((n, sub), dtype=np.int64), np.empty((n, cols))
        for b0 in range(0, n, block):
            m = min(block, n - b0)
            u = rng.random((block, sub + cols))[:m]
            within[b0 : b0 + m] = u[:, sub:]
            ut = torch.from_numpy(u[:, :sub].T.astype(np.float32)).T  # columns contiguous
            for c0 in range(0, m, chunk):
                part = self._sampler.tokens(ut[c0 : c0 + chunk], self.hyper["temperature"])
                tokens[b0 + c0 : b0 + c0 + len(part)] = part.numpy()
        values = self._from_sub(tokens)
        table = {c.name: c.decode(values[i], within[:, i]) for i, c in enumerate(self.columns)}
        for spec in self.metadata.columns:
            if not spec.learned:
                table[spec.name] = generated_column(spec, n, seed, row_offset)
        return pd.DataFrame({name: v.reset_index(drop=True) for name, v in table.items()})

    # ---- persistence -----------------------------------------------------------------------------
    def _save(self, directory: Path) -> dict[str, Any]:
        if self.network is None or self.columns is None:
            raise RuntimeError("cannot save an unfitted generator")
        torch.save(self.network.state_dict(), directory / WEIGHTS_FILE)
        return {"columns": [c.to_json() for c in self.columns], "training": self.training}

    def _load(self, directory: Path, state: dict[str, Any]) -> None:
        self.columns = [_column_from_json(c) for c in state["columns"]]
        self.training = state.get("training", {})
        self.network = self._build(self._sub_vocab())
        weights = torch.load(directory / WEIGHTS_FILE, map_location="cpu", weights_only=True)
        self.network.load_state_dict(weights)
        self.network.eval()
        self._sampler = None


def _val_sums(network: nn.Module, val: torch.Tensor) -> list[torch.Tensor]:
    """The validation rows' summed loss and their count, on this rank's share."""
    network.eval()
    total = torch.zeros((), device=val.device, dtype=torch.float64)
    with torch.no_grad():
        for start in range(0, len(val), 8192):
            total += _losses(network, val[start : start + 8192]).double().sum()
    return [total, torch.tensor(float(len(val)), dtype=torch.float64, device=val.device)]


def _batch_order(rows: int, needed: int, gen: torch.Generator) -> torch.Tensor:
    """`needed` row indices: shuffled passes over `rows` rows, as many as it takes."""
    passes = [torch.randperm(rows, generator=gen) for _ in range(math.ceil(needed / rows))]
    return torch.cat(passes)[:needed]
