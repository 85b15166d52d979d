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
row_offset) gives the same rows and a shorter sample is a prefix of a longer one. `freeze()` is that sampler
alone (column encodings in synthlake.generators.ar_columns, weights as numpy arrays): the sample stage's
executors load it without torch.

Identifier and PII columns are never learned: `synthlake.fakes.generated_column` fills them. Only torch,
numpy, pandas, pyarrow and numba are used (no `ctgan`, no `rdt`; opacus only under privacy). A model saves
as a state_dict plus JSON.

Differential privacy (`privacy={"epsilon": e, "delta": d}`): see synthlake.generators.ar_dp. `privacy_report`
(also in generator.json) gives the spend: preprocessing epsilons + the accountant's epsilon at the DP-SGD
delta <= the requested epsilon. Refused with a ValueError: epsilon <= 0, delta outside (0, 1) or >= 1/rows, a
budget for which no noise multiplier suffices, privacy with several processes. The DP noise is drawn from OS
entropy through numpy's and torch's default generators (not a cryptographically secure RNG, as Opacus without
secure_mode); `dp_noise_seed` seeds it for tests only.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist

from synthlake.generators import ar_dp
from synthlake.generators.ar_columns import (
    Column,
    column_from_json,
    encode_rows,
    fit_columns,
    split_width,
)
from synthlake.generators.ar_hyper import TabularARHyper
from synthlake.generators.ar_network import Network, column_ranks, mean_loss, val_sums
from synthlake.generators.ar_sampler import FrozenSampler
from synthlake.generators.base import Generator, TrainOptions
from synthlake.generators.training import EarlyStopping, EpochLoop, across_ranks, batch_order, rank_and_world, stream
from synthlake.metadata import TableMetadata

WEIGHTS_FILE = "generator.pt"
MIN_BATCH_ROWS = 32  # the smallest batch that min_steps makes: smaller ones would be mostly noise


class AutoregressiveGenerator(Generator):
    """`privacy={"epsilon": e, "delta": d}` makes everything learned from the rows (epsilon, delta)-DP:
    see `prepare` and `train`; `privacy_report` then says how the budget was spent."""

    name = "tabular_ar"
    Hyper = TabularARHyper
    supports_privacy = True
    resumable = True
    shards = True

    def __init__(self, metadata: TableMetadata, privacy: dict[str, float] | None = None, **hyper: Any):
        super().__init__(metadata, privacy=privacy, **hyper)
        self.columns: list[Column] | None = None
        self.network: torch.nn.Module | None = None
        self.training: dict[str, Any] = {}
        self._dp: tuple | None = None  # (budget, noisy row or unit count): set by prepare() under privacy
        self._units: np.ndarray | None = None  # each prepared row's privacy unit (with privacy.unit): not saved
        # tests only: seeds the DP noise (preprocessing and DP-SGD), which voids the guarantee against anyone
        # who knows the seed; None draws it from the OS's entropy
        self.dp_noise_seed: int | None = None
        self._sampler: FrozenSampler | None = None

    # ---- tokens ----------------------------------------------------------------------------------
    def _splits(self) -> list[int]:
        return [split_width(c.vocab, self.hyper["split_above"]) for c in self.columns]

    def vocabulary(self) -> list[int]:
        """Each model column's number of tokens (a column with many tokens is two, its coarse and its fine token):
        the width of the encoded rows."""
        vocab = []
        for column, fine in zip(self.columns, self._splits(), strict=True):
            vocab += [math.ceil(column.vocab / fine), fine] if fine else [column.vocab]
        return vocab

    def _owners(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per model column: the table column it belongs to, and 1 for a split column's fine token."""
        owners, fine = [], []
        for c, split in enumerate(self._splits()):
            owners += [c, c] if split else [c]
            fine += [0, 1] if split else [0]
        return torch.tensor(owners), torch.tensor(fine)


    # ---- encoding --------------------------------------------------------------------------------
    def prepare(self, table: pd.DataFrame, seed: int = 0) -> np.ndarray:
        """Fit the column encodings (once, before any training process starts); return the token matrix,
        int32, one row per table row, one column per model column (a column with more than `split_above`
        tokens takes two). The encoding is deterministic: `seed` is unused. Under privacy the encodings are
        DP (ar_dp.fit_columns), and nulls a column keeps no token for are filled (ar_columns.fill_nulls)."""
        h = self.hyper
        self.network, self._sampler, self.privacy_report = None, None, None
        if self.privacy is not None:
            table, self._units = ar_dp.capped_units(table, self.privacy)
            self.use_dp_counts(ar_dp.TableCounts(table), len(table),
                               None if self._units is None else int(self._units.max(initial=-1)) + 1)
        else:
            self.columns = fit_columns(self.metadata, table, h)
        return self.encoder()(table)

    def use_dp_counts(self, counts: ar_dp.ColumnCounts, rows: int, units: int | None = None) -> None:
        """Under privacy, instead of prepare(): the DP column encodings from the counts of `rows` rows
        (pipelines.encode gives them from Spark aggregates), charged to the budget as prepare() charges them.
        `units`: the number of privacy units (prepare() only: DP-SGD needs each row's unit)."""
        if self.privacy is None:
            raise ValueError("without privacy, encodings fitted elsewhere come through use_columns()")
        if self.privacy.get("unit") and units is None:
            raise ValueError(f"privacy unit '{self.privacy['unit']}': the rows' units come through prepare()")
        self.network, self._sampler, self.privacy_report = None, None, None
        self.columns, budget, noisy_size = ar_dp.fit_columns(self.metadata, counts, rows, self.privacy, self.hyper,
                                                             self._noise_rng(0), units)
        self._dp = (budget, noisy_size)

    def use_columns(self, columns: list[Column]) -> None:
        """Take column encodings fitted elsewhere instead of prepare(): pipelines.encode fits them from Spark
        aggregates, the same way `fit_columns` fits them from a table (approximate quantiles aside). Not under
        privacy, whose encodings are DP."""
        if self.privacy is not None:
            raise ValueError("under differential privacy the column encodings come from prepare() or use_dp_counts()")
        if [c.name for c in columns] != [s.name for s in self.metadata.learned_columns]:
            raise ValueError("one encoding per learned column, in the metadata's order")
        self.columns, self.network, self._sampler, self.privacy_report = columns, None, None, None

    def encoder(self) -> Callable[[pd.DataFrame], np.ndarray]:
        """Rows -> the model's token matrix (int32), with the fitted encodings; torch-free and picklable, so that
        executors encode the training rows."""
        if self.columns is None:
            raise RuntimeError("call prepare() or use_columns() first")
        return functools.partial(encode_rows, self.columns, self._splits(), dp_nulls=self.privacy is not None)

    def _noise_rng(self, stream_id: int) -> np.random.Generator:
        entropy = None if self.dp_noise_seed is None else [self.dp_noise_seed, stream_id]
        return np.random.default_rng(np.random.SeedSequence(entropy))

    # ---- training --------------------------------------------------------------------------------
    def train(self, encoded: np.ndarray, options: TrainOptions) -> list[dict[str, float]]:
        """Adam on the summed cross-entropies. Without privacy: early stopping on a held-out validation loss
        (the best weights are kept); under torch.distributed each process trains on its shard of the training
        rows, the model in DistributedDataParallel, with the same split, the same initial weights and the same
        number of steps. Under privacy: DP-SGD (ar_dp.DPSGD) for the fixed `epochs`, in one process, no
        validation split; each record carries the total epsilon spent so far, and its `loss` is a diagnostic,
        not DP, and not kept in the model.

        `options.checkpoint_dir`: after every epoch rank 0 writes a checkpoint there (atomically), before
        calling `on_epoch`; a later train() that finds one written for the same rows, encodings,
        hyper-parameters (other than `epochs` without privacy), privacy and seed resumes after its epoch, on
        every rank, and ends with the weights an uninterrupted run would have.

        `options.sharded`: `encoded` holds this process's own rows (the train stage's executors wrote a shard
        per process), not every process's: each takes its validation rows from its own, and the processes agree
        on the number of steps. In one process it trains as unsharded."""
        if self.columns is None:
            raise RuntimeError("call prepare() before train()")
        encoded = np.asarray(encoded)
        vocab = self.vocabulary()
        if encoded.ndim != 2 or encoded.shape[1] != len(vocab):
            raise ValueError(f"encoded rows must have {len(vocab)} columns, got shape {encoded.shape}")
        if len(encoded) and ((encoded < 0).any() or (encoded >= np.asarray(vocab)).any()):
            raise ValueError("encoded rows hold tokens outside the columns' vocabularies: prepare() them again")
        rank, world = rank_and_world()
        if self.privacy is not None:
            if world > 1:
                raise ValueError("differential privacy trains in one process: set train.num_processes: 1")
            if self._dp is None:
                raise RuntimeError("privacy: call prepare() (in this process's model) before train()")
            if self._units is not None and len(self._units) != len(encoded):
                raise ValueError(f"privacy unit: {len(self._units)} rows' units for {len(encoded)} encoded rows "
                                 "(train on the rows prepare() returned)")
            with warnings.catch_warnings():  # Opacus' notes on integer inputs and on RDP orders are noise here
                warnings.filterwarnings("ignore", message="Full backward hook is firing")
                warnings.filterwarnings("ignore", message="Optimal order is the largest alpha")
                return self._train(encoded, vocab, options, 0, 1)
        return self._train(encoded, vocab, options, rank, world)

    def _train(self, encoded: np.ndarray, vocab: list[int], options: TrainOptions, rank: int,
               world: int) -> list[dict[str, float]]:
        """The one training loop, with DP-SGD as an option."""
        h, seed, device = self.hyper, options.seed, options.device
        shard, val, train_rows, rows = self._split_rows(encoded, seed, rank, world, device, options.sharded)
        torch.manual_seed(seed)  # identical initial weights on every rank
        network = self._build(vocab).to(device)
        opt = torch.optim.Adam(network.parameters(), lr=h["lr"], weight_decay=h["weight_decay"])
        parts = {"model": (network.state_dict, network.load_state_dict),
                 "optimizer": (opt.state_dict, opt.load_state_dict)}
        if self.privacy is not None:
            private = ar_dp.DPSGD(network, opt, *self._dp, h, self._noise_rng, device, self._units)
            model, step_opt, extra = private.model, private.optimizer, private.signature()
            batches, early = (lambda epoch: private.poisson_batches(shard)), None
            parts.update(private.parts())
        else:
            private, step_opt, extra = None, opt, None
            model = torch.nn.parallel.DistributedDataParallel(network) if world > 1 else network
            batches = self._shuffled_batches(shard, train_rows, seed, rank, world)
            early = EarlyStopping(network, h["patience"])

        owners, fine = self._owners()
        orders = torch.Generator()

        def one_epoch(epoch: int) -> dict[str, float]:
            network.train()
            torch.manual_seed(stream(seed, rank, epoch, 1))  # dropout: a resumed run continues the masks
            orders.manual_seed(stream(seed, rank, epoch, 2))  # and the column orders
            total, counted = torch.zeros((), device=device), 0
            for batch in batches(epoch):
                step_opt.zero_grad(set_to_none=True)
                if len(batch):
                    ranks = column_ranks(owners, fine, len(batch), h["order_mixing"], orders)
                    loss = mean_loss(model, batch, None if ranks is None else ranks.to(device))
                    loss.backward()
                    if private is not None:
                        private.before_step()
                    total, counted = total + loss.detach(), counted + 1
                else:
                    private.empty_step()
                step_opt.step()
            losses = torch.stack([(total / max(counted, 1)).double(), *val_sums(network, val)]).cpu()
            if world > 1:
                dist.all_reduce(losses)
            record = {"loss": losses[0].item() / world if counted else math.nan,
                      "val_loss": losses[1].item() / losses[2].item() if losses[2] > 0 else math.nan}
            return record if private is None else {**record, "epsilon": private.epsilon()}

        signature = self._signature(encoded, seed, world, extra, options.sharded)
        loop = EpochLoop(options, signature, parts, early)
        history = loop.run(h["epochs"], one_epoch)
        self.network, self._sampler = network.cpu().eval(), None
        if private is None:
            self.training = {"epochs_run": len(history), "rows": rows, **early.summary()}
        else:
            private.close()
            self.privacy_report = private.report(self.privacy, history[-1]["epsilon"])
            self.training = {"epochs_run": len(history), "rows": private.rows, "best_epoch": None,
                             "best_val_loss": None}
        return history

    def _split_rows(self, encoded: np.ndarray, seed: int, rank: int, world: int, device: str, sharded: bool):
        """This rank's training shard and validation rows (none under privacy) as tensors on `device`, the
        number of training rows over all ranks and the number of rows."""
        def tensor(rows: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(rows.astype(np.int64)).to(device)

        if self.privacy is not None:
            return tensor(encoded), tensor(encoded[:0]), len(encoded), len(encoded)
        if not sharded:
            order = np.random.default_rng(seed).permutation(len(encoded))  # the same split on every rank
            n_val = int(len(encoded) * self.hyper["val_fraction"]) if len(encoded) >= 20 else 0
            val_rows, train_rows = order[:n_val], order[n_val:]
            if len(train_rows) < world:
                raise ValueError(f"{len(train_rows)} training rows cannot be split over {world} processes")
            return tensor(encoded[np.sort(train_rows[rank::world])]), \
                tensor(encoded[np.sort(val_rows[rank::world])]), len(train_rows), len(encoded)
        rows = across_ranks(len(encoded), dist.ReduceOp.SUM, device) if world > 1 else len(encoded)
        order = np.random.default_rng(seed if world == 1 else [seed, rank]).permutation(len(encoded))
        n_val = int(len(encoded) * self.hyper["val_fraction"]) if rows >= 20 else 0
        val_rows, train_rows = order[:n_val], order[n_val:]
        if world > 1 and across_ranks(len(train_rows), dist.ReduceOp.MIN, device) == 0:  # every rank raises, or none
            raise ValueError(f"a process has no training rows in its shard ({rows} rows over {world} processes)")
        if not len(train_rows):
            raise ValueError(f"{rows} rows leave no training rows")
        total = across_ranks(len(train_rows), dist.ReduceOp.SUM, device) if world > 1 else len(train_rows)
        return tensor(encoded[np.sort(train_rows)]), tensor(encoded[np.sort(val_rows)]), total, rows

    def _shuffled_batches(self, shard: torch.Tensor, train_rows: int, seed: int, rank: int, world: int):
        """Per epoch, the same number of steps on every rank, each over this rank's shuffled shard."""
        batch = self._batch_rows(train_rows)
        local_batch = max(1, batch // world)
        steps = max(1, math.ceil(train_rows / batch))
        gen = torch.Generator()

        def batches(epoch: int):
            gen.manual_seed(stream(seed, rank, epoch, 0))  # the batch order: a resumed run continues it
            rows = batch_order(len(shard), steps * local_batch, gen).to(shard.device)
            for step in range(steps):
                yield shard[rows[step * local_batch : (step + 1) * local_batch]]

        return batches

    def _batch_rows(self, train_rows: int) -> int:
        """batch_size, or fewer rows where it leaves under min_steps steps an epoch: storms' 505 parents, learned in
        one step an epoch, scored a parent accuracy of 0.823; in 8 steps, 0.913 (README: Related tables benchmark)."""
        h = self.hyper
        if math.ceil(train_rows / h["batch_size"]) >= h["min_steps"]:
            return h["batch_size"]
        return min(h["batch_size"], max(MIN_BATCH_ROWS, math.ceil(train_rows / h["min_steps"])))

    def _signature(self, encoded: np.ndarray, seed: int, world: int, extra: dict | None = None,
                   sharded: bool = False) -> str:
        """What a checkpoint must have been written for to be resumed from (the same on every rank: sharded
        rows are hashed over all the shards)."""
        hyper = {k: v for k, v in self.hyper.items() if k != "temperature" and (self.privacy or k != "epochs")}
        hashed = hashlib.sha256(np.ascontiguousarray(encoded).tobytes())
        if self._units is not None:  # the same rows grouped otherwise are other training data
            hashed.update(self._units.tobytes())
        rows, shape = hashed.hexdigest(), list(encoded.shape)
        if sharded and world > 1:
            shards: list[Any] = [None] * world
            dist.all_gather_object(shards, (rows, len(encoded)))
            rows = hashlib.sha256("".join(h for h, _ in shards).encode()).hexdigest()
            shape = [sum(n for _, n in shards), shape[1]]
        return json.dumps(
            {"rows": rows, "shape": shape, "columns": [c.to_json() for c in self.columns],
             "hyper": hyper, "privacy": self.privacy, "seed": seed, "world": world, **(extra or {}),
             **({"sharded": True} if sharded else {})},
            sort_keys=True,
        )

    def _build(self, vocab: list[int], flexible: bool | None = None) -> torch.nn.Module:
        h = self.hyper
        flexible = h["order_mixing"] > 0 if flexible is None else flexible
        return Network(vocab, h["hidden_dim"], h["hidden_layers"], h["dropout"], flexible=flexible)

    # ---- sampling --------------------------------------------------------------------------------
    def freeze(self) -> FrozenSampler:
        """The fitted model as a torch-free sampler (built once, after fitting or loading)."""
        if self.network is None or self.columns is None:
            raise RuntimeError("the generator is not fitted")
        if self._sampler is None:
            self._sampler = FrozenSampler.from_network(self.network, self.metadata, self.columns, self._splits(),
                                                       self.hyper["temperature"])
        return self._sampler

    # ---- persistence -----------------------------------------------------------------------------
    def _save(self, directory: Path) -> dict[str, Any]:
        if self.network is None or self.columns is None:
            raise RuntimeError("cannot save an unfitted generator")
        torch.save(self.network.state_dict(), directory / WEIGHTS_FILE)
        return {"columns": [c.to_json() for c in self.columns], "training": self.training}

    def _load(self, directory: Path, state: dict[str, Any]) -> None:
        self.columns = [column_from_json(c) for c in state["columns"]]
        self.training = state.get("training", {})
        vocab = self.vocabulary()
        weights = torch.load(directory / WEIGHTS_FILE, map_location="cpu", weights_only=True)
        # a model saved before order_mixing existed was trained in one order: its last column has no embedding
        self.network = self._build(vocab, flexible=f"embeddings.{len(vocab) - 1}.weight" in weights)
        self.network.load_state_dict(weights)
        self.network.eval()
        self._sampler = None

