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

Sampling (synthlake.generators.ar_sampler) runs in one compiled loop over tiles of rows: a column costs
one embedding add into the running context, its head, and an inverse-CDF draw with one uniform per row and
column. The uniforms come from numpy's default_rng(seed) in blocks of fixed size, so the same (n, seed,
row_offset) gives the same rows and a shorter sample is a prefix of a longer one. `frozen()` is that sampler
alone (column encodings in synthlake.generators.ar_columns, weights as numpy arrays): the sample stage's
executors load it without torch.

Identifier and PII columns are never learned: `synthlake.fakes.generated_column` fills them. Only torch,
numpy, pandas, pyarrow and numba are used (no `ctgan`, no `rdt`; opacus only under privacy). A model saves
as a state_dict plus JSON.

Differential privacy (`privacy={"epsilon": e, "delta": d}`; add/remove-one-row neighbours): everything the
model keeps from the rows is DP and charged to the one budget, by basic composition.
- `dp_preprocessing_share` of epsilon goes to the column encodings, split evenly over the learned columns
  (synthlake.dp): numeric and datetime columns get bounds, quantile bins, knots and a null token from noisy
  histograms over data-independent grids (no real value is stored; datetimes at one-second resolution);
  categorical columns keep the categories whose Laplace count clears the stability threshold (half of delta,
  split over them), always with an "other" token. The row count kept is a noisy one.
- the rest of epsilon, and the rest of delta, goes to DP-SGD through Opacus (`train`): Poisson sampling,
  per-row clipping to `max_grad_norm`, the noise multiplier the accountant (`dp_accountant`) needs for the
  fixed `epochs`; no validation split, no early stopping; one process only.
- `privacy_report` (also in generator.json) gives the spend: preprocessing epsilons + the accountant's
  epsilon at the DP-SGD delta <= the requested epsilon.
Refused with a ValueError: epsilon <= 0, delta outside (0, 1) or >= 1/rows, a budget for which no noise
multiplier suffices, privacy with several processes. Degraded gracefully: a categorical column with no
category above the threshold generates only "other" (RARE_CATEGORY) and nulls; a numeric column with no
histogram bucket clearly above noise gets the largest noisy bucket as its bounds. The DP noise is drawn from
OS entropy through numpy's and torch's default generators (not a cryptographically secure RNG, as Opacus
without secure_mode); `dp_noise_seed` seeds it for tests only.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import torch
import torch.distributed as dist
from torch import nn
from torch.nn import functional

from synthlake import dp
from synthlake.generators.ar_columns import CategoricalColumn, Column, NumericColumn, column_from_json, split_width
from synthlake.generators.ar_sampler import FrozenSampler, to_frame
from synthlake.generators.base import EpochCallback, Generator, HyperParam
from synthlake.metadata import RARE_CATEGORY, ColumnKind, TableMetadata

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
    "dp_preprocessing_share": HyperParam(
        0.3, low=0.01, high=0.9, doc="with privacy: the share of epsilon the column encodings spend"
    ),
    "max_grad_norm": HyperParam(1.0, low=1e-6, high=1e6, doc="with privacy: DP-SGD's per-row gradient clip"),
    "dp_accountant": HyperParam("rdp", choices=("rdp", "prv"), doc="with privacy: Opacus' DP-SGD accountant"),
}
WEIGHTS_FILE = "generator.pt"



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


# ---- the generator -------------------------------------------------------------------------------------


class AutoregressiveGenerator(Generator):
    """`privacy={"epsilon": e, "delta": d}` makes everything learned from the rows (epsilon, delta)-DP:
    see `prepare` and `train`; `privacy_report` then says how the budget was spent."""

    name = "tabular_ar"
    hyper_params = HYPER_PARAMS
    supports_privacy = True
    resumable = True

    def __init__(self, metadata: TableMetadata, privacy: dict[str, float] | None = None, **hyper: Any):
        super().__init__(metadata, privacy=privacy, **hyper)
        self.columns: list[Column] | None = None
        self.network: nn.Module | None = None
        self.training: dict[str, Any] = {}
        self.privacy_report: dict[str, Any] | None = None
        self._budget: dp.Budget | None = None  # set by prepare() under privacy, spent by train()
        self._noisy_rows: float | None = None
        # tests only: seeds the DP noise (preprocessing and DP-SGD), which voids the guarantee against anyone
        # who knows the seed; None draws it from the OS's entropy
        self.dp_noise_seed: int | None = None
        self._sampler: FrozenSampler | None = None

    # ---- tokens ----------------------------------------------------------------------------------
    def _splits(self) -> list[int]:
        return [split_width(c.vocab, self.hyper["split_above"]) for c in self.columns]

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

    # ---- training --------------------------------------------------------------------------------
    def _fit(self, table: pd.DataFrame) -> None:
        encoded = self.prepare(table, seed=0)
        self.train(encoded, seed=0)

    def prepare(self, table: pd.DataFrame, seed: int) -> np.ndarray:
        """Fit the column encodings (once, before any training process starts); return the token matrix,
        int32, one row per table row, one column per model column (a column with more than `split_above`
        tokens takes two). The encoding is deterministic: `seed` is unused."""
        h = self.hyper
        self.network, self._sampler, self.privacy_report = None, None, None
        if self.privacy is not None:
            return self._prepare_dp(table)
        self.columns = []
        for spec in self.metadata.learned_columns:
            if spec.kind == ColumnKind.CATEGORICAL:
                column = CategoricalColumn.fit(spec, table[spec.name], h["min_category_count"], h["max_categories"])
            else:
                column = NumericColumn.fit(spec, table[spec.name], h["max_bins"], h["bin_knots"])
            self.columns.append(column)
        return self._to_sub([c.encode(table[c.name]) for c in self.columns])

    def _noise_rng(self, stream: int) -> np.random.Generator:
        entropy = None if self.dp_noise_seed is None else [self.dp_noise_seed, stream]
        return np.random.default_rng(np.random.SeedSequence(entropy))

    def _prepare_dp(self, table: pd.DataFrame) -> np.ndarray:
        """The DP column encodings. The preprocessing share of epsilon is split evenly over the learned
        columns, half of delta over the categorical ones (category selection); each column's encoding comes
        from its own noisy histogram (synthlake.dp). A column left with no category above the threshold keeps
        only "other" (generated as RARE_CATEGORY) and null; a numeric column whose noisy histogram shows no
        bucket clearly above noise gets the largest noisy bucket as its bounds. Nulls in a column whose noisy
        null count did not pass its threshold are encoded as "other" (categorical) or the middle token."""
        epsilon, delta = self.privacy["epsilon"], self.privacy["delta"]
        if delta >= 1 / len(table):
            raise ValueError(
                f"privacy delta={delta:g} must be below 1/rows = {1 / len(table):.3g}: with delta that large, "
                f"releasing a row outright is within budget"
            )
        specs = self.metadata.learned_columns
        categorical = [s.name for s in specs if s.kind == ColumnKind.CATEGORICAL]
        budget = dp.split_budget(epsilon, delta, self.hyper["dp_preprocessing_share"], [s.name for s in specs],
                                 categorical)
        rng = self._noise_rng(0)
        self.columns, totals = [], []
        for spec in specs:
            eps = budget.column_epsilon[spec.name]
            if spec.kind == ColumnKind.CATEGORICAL:
                column, total = CategoricalColumn.fit_dp(
                    spec, table[spec.name], (eps, budget.column_delta[spec.name]), self.hyper, rng
                )
            else:
                column, total = NumericColumn.fit_dp(spec, table[spec.name], eps, self.hyper, rng)
            self.columns.append(column)
            totals.append(total)
            if isinstance(column, CategoricalColumn) and not column.categories:
                warnings.warn(
                    f"privacy: no category of column '{spec.name}' clears the threshold at epsilon {eps:.3g}: it "
                    f"generates only {RARE_CATEGORY!r} and nulls (raise epsilon or dp_preprocessing_share)",
                    stacklevel=3,
                )
        self._budget = budget
        self._noisy_rows = float(np.median(totals))  # post-processing of the released counts
        return self._to_sub([c.encode(_dp_fill_nulls(c, table[c.name])) for c in self.columns])

    def train(
        self,
        encoded: np.ndarray,
        seed: int,
        device: str = "cpu",
        on_epoch: EpochCallback | None = None,
        checkpoint_dir: str | Path | None = None,
    ) -> list[dict[str, float]]:
        """Adam on the summed cross-entropies, early stopping on a held-out validation loss (the best weights
        are kept). Under torch.distributed each process trains on its shard of the training rows, the model in
        DistributedDataParallel; every process gets the same split, the same initial weights and the same
        number of steps. `on_epoch(record)` gets each epoch's history record on rank 0 (val_loss nan without a
        split).

        `checkpoint_dir`: after every epoch rank 0 writes CHECKPOINT_FILE there (atomically), before calling
        `on_epoch`; a later train() that finds one written for the same rows, encodings, hyper-parameters
        (other than `epochs` without privacy), privacy and seed resumes after its epoch, on every rank, and
        ends with the weights an uninterrupted run would have. A checkpoint that does not match is ignored
        (and overwritten).
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
        if self.privacy is not None:
            if world > 1:
                raise ValueError("differential privacy trains in one process: set train.num_processes: 1")
            with warnings.catch_warnings():  # Opacus' notes on integer inputs and on RDP orders are noise here
                warnings.filterwarnings("ignore", message="Full backward hook is firing")
                warnings.filterwarnings("ignore", message="Optimal order is the largest alpha")
                return self._train_dp(encoded, vocab, seed, device, on_epoch, checkpoint_dir)

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
        gen = torch.Generator()

        history: list[dict[str, float]] = []
        best, best_state, best_epoch, waited, stopped = math.inf, None, -1, 0, False
        ckpt = _Checkpoint(checkpoint_dir, self._signature(encoded, seed, world)) if checkpoint_dir else None
        state = ckpt.load(device) if ckpt else None
        if state is not None:
            network.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            history, best, best_state = state["history"], state["best"], state["best_state"]
            best_epoch, waited, stopped = state["best_epoch"], state["waited"], state["stopped"]
        if ckpt and world > 1:
            dist.barrier()  # every rank has read the checkpoint before rank 0 writes the next
        for epoch in range(len(history), 0 if stopped else h["epochs"]):
            network.train()
            # the batch order and the dropout masks come from (seed, rank, epoch): a resumed run continues them
            gen.manual_seed(_stream(seed, rank, epoch, 0))
            torch.manual_seed(_stream(seed, rank, epoch, 1))
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
            if not math.isnan(val_loss):
                if val_loss < best - 1e-4:
                    best, best_epoch, waited = val_loss, epoch, 0
                    best_state = copy.deepcopy(network.state_dict())
                else:
                    waited += 1
                    stopped = waited >= h["patience"]
            if ckpt and rank == 0:
                ckpt.save({"model": network.state_dict(), "optimizer": opt.state_dict(), "history": history,
                           "best": best, "best_state": best_state, "best_epoch": best_epoch, "waited": waited,
                           "stopped": stopped})
            if on_epoch and rank == 0:
                on_epoch(history[-1])
            if stopped:
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

    def _train_dp(
        self,
        encoded: np.ndarray,
        vocab: list[int],
        seed: int,
        device: str,
        on_epoch: EpochCallback | None,
        checkpoint_dir: str | Path | None,
    ) -> list[dict[str, float]]:
        """DP-SGD (Opacus: per-row gradients clipped to `max_grad_norm`, Gaussian noise, Adam on the noisy
        mean): `epochs` fixed passes, no validation split and no early stopping (choosing an epoch by a real
        loss is not accounted). Each step takes every row independently with probability q = batch_size /
        the noisy row count (Poisson sampling); the noise multiplier is the smallest that keeps `epochs / q`
        steps within the DP-SGD share of the budget. Each history record carries the total epsilon spent so
        far; its `loss` (the mean over the step's rows) is a diagnostic, not DP, and not kept in the model."""
        from opacus import GradSampleModule
        from opacus.accountants import create_accountant
        from opacus.optimizers import DPOptimizer

        if self._budget is None or self._noisy_rows is None:
            raise RuntimeError("privacy: call prepare() (in this process's model) before train()")
        h, budget = self.hyper, self._budget
        rows = max(1.0, self._noisy_rows)
        q = min(1.0, h["batch_size"] / rows)
        steps_per_epoch = max(1, round(1 / q))
        steps = h["epochs"] * steps_per_epoch
        sigma = dp.noise_multiplier(budget.sgd_epsilon, budget.sgd_delta, q, steps, h["dp_accountant"])

        torch.manual_seed(seed)
        network = self._build(vocab).to(device)
        model = GradSampleModule(network, batch_first=True, loss_reduction="mean", strict=True)
        opt = torch.optim.Adam(network.parameters(), lr=h["lr"], weight_decay=h["weight_decay"])
        noise = torch.Generator(device=device).manual_seed(int(self._noise_rng(1).integers(2**62)))
        optimizer = DPOptimizer(
            opt,
            noise_multiplier=sigma,
            max_grad_norm=h["max_grad_norm"],
            expected_batch_size=q * rows,
            loss_reduction="mean",
            generator=noise,
        )
        accountant = create_accountant(h["dp_accountant"])
        optimizer.attach_step_hook(accountant.get_optimizer_hook_fn(sample_rate=q))
        sampling = torch.Generator().manual_seed(int(self._noise_rng(2).integers(2**62)))
        data = torch.from_numpy(encoded.astype(np.int64)).to(device)
        params = [p for p in network.parameters() if p.requires_grad]
        pre_epsilon = sum(budget.column_epsilon.values())

        history: list[dict[str, float]] = []
        extra = {"noise_multiplier": sigma, "sample_rate": q}
        ckpt = _Checkpoint(checkpoint_dir, self._signature(encoded, seed, 1, extra)) if checkpoint_dir else None
        state = ckpt.load(device) if ckpt else None
        if state is not None:
            network.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            noise.set_state(state["noise_rng"])
            sampling.set_state(state["sampling_rng"])
            accountant.history = [tuple(step) for step in state["accountant"]]
            history = state["history"]
        for epoch in range(len(history), h["epochs"]):
            network.train()
            torch.manual_seed(_stream(seed, 0, epoch, 1))  # dropout
            total, counted = 0.0, 0
            for _ in range(steps_per_epoch):
                batch = data[(torch.rand(len(data), generator=sampling) < q).to(device)]
                optimizer.zero_grad(set_to_none=True)
                if len(batch):
                    loss = _mean_loss(model, batch)
                    loss.backward()
                    total, counted = total + loss.item(), counted + 1
                else:  # an empty Poisson batch: the step is noise alone
                    for p in params:
                        p.grad_sample = torch.zeros(0, *p.shape, device=p.device)
                optimizer.step()
            spent = pre_epsilon + accountant.get_epsilon(delta=budget.sgd_delta)
            history.append({"epoch": epoch, "loss": total / counted if counted else math.nan, "val_loss": math.nan,
                            "epsilon": spent})
            if ckpt:
                ckpt.save({"model": network.state_dict(), "optimizer": opt.state_dict(), "history": history,
                           "noise_rng": noise.get_state(), "sampling_rng": sampling.get_state(),
                           "accountant": [list(step) for step in accountant.history]})
            if on_epoch:
                on_epoch(history[-1])
        model._close()
        for p in params:
            p.grad_sample = None
        self.network, self._sampler = network.cpu().eval(), None
        self.privacy_report = self._privacy_report(sigma, q, steps, history[-1]["epsilon"] - pre_epsilon)
        self.training = {"epochs_run": len(history), "rows": round(rows), "best_epoch": None, "best_val_loss": None}
        return history

    def _signature(self, encoded: np.ndarray, seed: int, world: int, extra: dict | None = None) -> str:
        """What a checkpoint must have been written for to be resumed from."""
        hyper = {k: v for k, v in self.hyper.items() if k != "temperature" and (self.privacy or k != "epochs")}
        rows = hashlib.sha256(np.ascontiguousarray(encoded).tobytes()).hexdigest()
        return json.dumps(
            {"rows": rows, "shape": list(encoded.shape), "columns": [c.to_json() for c in self.columns],
             "hyper": hyper, "privacy": self.privacy, "seed": seed, "world": world, **(extra or {})},
            sort_keys=True,
        )

    def _privacy_report(self, sigma: float, q: float, steps: int, sgd_epsilon: float) -> dict[str, Any]:
        budget = self._budget
        return {
            "epsilon": sum(budget.column_epsilon.values()) + sgd_epsilon,
            "delta": sum(budget.column_delta.values()) + budget.sgd_delta,
            "requested": dict(self.privacy),
            "preprocessing": dict(budget.column_epsilon),
            "preprocessing_delta": dict(budget.column_delta),
            "dp_sgd": {
                "epsilon": sgd_epsilon,
                "delta": budget.sgd_delta,
                "noise_multiplier": sigma,
                "sample_rate": q,
                "steps": steps,
                "max_grad_norm": self.hyper["max_grad_norm"],
                "accountant": self.hyper["dp_accountant"],
            },
        }

    def _build(self, vocab: list[int]) -> nn.Module:
        h = self.hyper
        return _Network(vocab, h["hidden_dim"], h["hidden_layers"], h["dropout"])

    # ---- sampling --------------------------------------------------------------------------------
    def _sample(self, n: int, seed: int, row_offset: int) -> pd.DataFrame:
        return to_frame(self.frozen().sample_arrow(n, seed, row_offset))

    def _sample_arrow(self, n: int, seed: int, row_offset: int) -> pa.Table:
        return self.frozen().sample_arrow(n, seed, row_offset)

    def frozen(self) -> FrozenSampler:
        """The fitted model as a torch-free sampler (built once, after fitting or loading)."""
        if self.network is None or self.columns is None:
            raise RuntimeError("the generator is not fitted")
        if self._sampler is None:
            self._sampler = FrozenSampler.from_network(self.network, self.metadata, self.columns, self._splits(),
                                                       self.hyper["temperature"])
        return self._sampler

    def save_sampler(self, directory: str | Path) -> None:
        self.frozen().save(directory)

    # ---- persistence -----------------------------------------------------------------------------
    def _save(self, directory: Path) -> dict[str, Any]:
        if self.network is None or self.columns is None:
            raise RuntimeError("cannot save an unfitted generator")
        torch.save(self.network.state_dict(), directory / WEIGHTS_FILE)
        return {
            "columns": [c.to_json() for c in self.columns],
            "training": self.training,
            "privacy_report": self.privacy_report,
        }

    def _load(self, directory: Path, state: dict[str, Any]) -> None:
        self.columns = [column_from_json(c) for c in state["columns"]]
        self.training = state.get("training", {})
        self.privacy_report = state.get("privacy_report")
        self.network = self._build(self._sub_vocab())
        weights = torch.load(directory / WEIGHTS_FILE, map_location="cpu", weights_only=True)
        self.network.load_state_dict(weights)
        self.network.eval()
        self._sampler = None


CHECKPOINT_FILE = "checkpoint.pt"


class _Checkpoint:
    """A training checkpoint: tensors, state dicts and plain values, saved with torch.save and loaded with
    weights_only=True (no pickled objects); `signature` says what it was written for."""

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


def _stream(seed: int, rank: int, epoch: int, purpose: int) -> int:
    """A seed for one (seed, rank, epoch, purpose): random streams that a resumed run picks up exactly."""
    return int(np.random.SeedSequence([seed, rank, epoch, purpose]).generate_state(1, np.uint64)[0] >> 1)


def _dp_fill_nulls(column: Column, values: pd.Series) -> pd.Series:
    """Under DP a column's null token exists only if its noisy null count passed a threshold: nulls in a
    column without one are encoded as "other" (categorical) or the middle value of the column's bins."""
    if column.null or not values.isna().any():
        return values
    if isinstance(column, CategoricalColumn):
        return values.astype(object).where(values.notna(), RARE_CATEGORY + "\0")  # not a kept category
    if column.values is not None:
        middle = column.values[len(column.values) // 2]
    else:
        knots = column.knots[len(column.knots) // 2]
        middle = knots[len(knots) // 2]
    if column.datetime:
        stamp = pd.Timestamp(middle, unit="s", tz="UTC")
        if column.tz is None:
            stamp = stamp.tz_localize(None)
        else:
            stamp = stamp.tz_convert(column.tz)
        return values.where(values.notna(), stamp)
    return values.astype(float).fillna(middle)


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
