"""CTGAN on the `ctgan` package's building blocks, driven by our own training loop.

The package's `fit()` is one long method; owning the loop lets us train data-parallel (the generator in
DistributedDataParallel, each process on its own shard) and later add DP-SGD. The column encoding is
ours (synthlake.transforms) so a model saves as weights plus JSON.

ctgan is under the Business Source License 1.1: see the README's licence notes.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
from ctgan.data_sampler import DataSampler
from ctgan.data_transformer import SpanInfo
from ctgan.synthesizers.ctgan import Discriminator
from ctgan.synthesizers.ctgan import Generator as CTGANNetwork
from torch.nn import functional

from synthlake.fakes import generated_column
from synthlake.generators.base import Generator, TrainOptions
from synthlake.generators.ctgan_hyper import CTGANHyper
from synthlake.generators.training import EpochLoop, average_gradients, rank_and_world
from synthlake.transforms import CategoricalEncoder, TableTransformer

WEIGHTS_FILE = "generator.pt"


class CTGANGenerator(Generator):
    name = "ctgan"
    Hyper = CTGANHyper

    def __init__(self, metadata, **hyper: Any):
        super().__init__(metadata, **hyper)
        self.transformer: TableTransformer | None = None
        self.network: CTGANNetwork | None = None
        self.cond_probs: np.ndarray | None = None

    # ---- training --------------------------------------------------------------------------------
    def prepare(self, table: pd.DataFrame, seed: int = 0) -> np.ndarray:
        """Fit the column encoding (once, before any training process starts); return the encoded rows."""
        h = self.hyper
        self.transformer = TableTransformer.fit(table, self.metadata, h["max_modes"], seed)
        self.cond_probs = _original_cond_probs(self.transformer, len(table))
        return self.transformer.transform(table, seed)

    def train(self, encoded: np.ndarray, options: TrainOptions) -> list[dict[str, float]]:
        """The CTGAN loop. Under torch.distributed each process trains on its shard of `encoded`.

        The generator is wrapped in DistributedDataParallel; the discriminator's gradients are averaged
        by hand, because its gradient penalty needs a double backward, which DDP does not support.
        """
        if self.transformer is None:
            raise RuntimeError("call prepare() before train()")
        h, seed, device = self.hyper, options.seed, options.device
        rank, world = rank_and_world()
        local_batch = h["batch_size"] // world
        if local_batch % h["pac"] or local_batch == 0:
            raise ValueError(f"batch_size {h['batch_size']} split over {world} processes is not a multiple "
                             f"of pac {h['pac']}")
        steps = max(len(encoded) // h["batch_size"], 1)  # equal on every rank, or collectives hang
        shard = encoded[rank::world]

        spans = [[SpanInfo(d, a) for d, a in col] for col in self.transformer.output_info]
        sampler = DataSampler(shard, spans, log_frequency=True)
        torch.manual_seed(seed)  # identical initial weights on every rank
        gen, disc = self._networks(sampler.dim_cond_vec())
        gen, disc = gen.to(device), disc.to(device)
        if world > 1:
            for p in disc.parameters():
                dist.broadcast(p.data, src=0)
            gen_train = torch.nn.parallel.DistributedDataParallel(gen)
        else:
            gen_train = gen
        opt_g = torch.optim.Adam(gen.parameters(), lr=h["generator_lr"], betas=(0.5, 0.9),
                                 weight_decay=h["weight_decay"])
        opt_d = torch.optim.Adam(disc.parameters(), lr=h["discriminator_lr"], betas=(0.5, 0.9),
                                 weight_decay=h["weight_decay"])
        np.random.seed((seed + 7919 * rank) % 2**32)  # DataSampler draws from numpy's global state
        torch.manual_seed(seed + 7919 * rank)


        def one_epoch(epoch: int) -> dict[str, float]:
            for _ in range(steps):
                loss_d = self._discriminator_step(gen_train, disc, opt_d, sampler, shard, local_batch,
                                                   device, world)
                loss_g = self._generator_step(gen_train, disc, opt_g, sampler, local_batch, device)
            losses = torch.tensor([loss_g, loss_d])
            if world > 1:
                dist.all_reduce(losses)
                losses /= world
            return {"loss_generator": losses[0].item(), "loss_discriminator": losses[1].item()}

        history = EpochLoop(options).run(h["epochs"], one_epoch)
        self.network = gen.cpu()
        return history

    def _networks(self, cond_dim: int) -> tuple[CTGANNetwork, Discriminator]:
        h, data_dim = self.hyper, self.transformer.dim
        gen = CTGANNetwork(h["embedding_dim"] + cond_dim, h["generator_dim"], data_dim)
        disc = Discriminator(data_dim + cond_dim, h["discriminator_dim"], pac=h["pac"])
        return gen, disc

    def _noise(self, sampler: DataSampler, batch: int, device: str):
        z = torch.randn(batch, self.hyper["embedding_dim"], device=device)
        condvec = sampler.sample_condvec(batch)
        if condvec is None:
            return z, None, None, None, None
        c, m, col, opt = condvec
        c, m = torch.from_numpy(c).to(device), torch.from_numpy(m).to(device)
        return torch.cat([z, c], dim=1), c, m, col, opt

    def _discriminator_step(self, gen, disc, opt_d, sampler, data, batch, device, world) -> float:
        z, c, _, col, opt = self._noise(sampler, batch, device)
        if c is None:
            real = sampler.sample_data(data, batch, None, None)
        else:
            perm = np.random.permutation(batch)
            real = sampler.sample_data(data, batch, col[perm], opt[perm])
        real = torch.from_numpy(real.astype("float32")).to(device)
        with torch.no_grad():
            fake = _activate(gen(z), self.transformer.output_info, None)
        fake.requires_grad_()  # the gradient penalty differentiates through interpolations with it
        if c is not None:
            fake, real = torch.cat([fake, c], dim=1), torch.cat([real, c[perm]], dim=1)
        loss = -(disc(real).mean() - disc(fake).mean())
        penalty = disc.calc_gradient_penalty(real, fake, device, self.hyper["pac"])
        opt_d.zero_grad(set_to_none=False)
        (loss + penalty).backward()
        if world > 1:
            average_gradients(disc)
        opt_d.step()
        return loss.item()

    def _generator_step(self, gen, disc, opt_g, sampler, batch, device) -> float:
        z, c, m, _, _ = self._noise(sampler, batch, device)
        raw = gen(z)
        fake = _activate(raw, self.transformer.output_info, None)
        y_fake = disc(fake if c is None else torch.cat([fake, c], dim=1))
        cond_loss = 0.0 if c is None else _cond_loss(raw, self.transformer.output_info, c, m)
        loss = -y_fake.mean() + cond_loss
        opt_g.zero_grad(set_to_none=False)
        loss.backward()
        opt_g.step()
        return loss.item()

    # ---- sampling --------------------------------------------------------------------------------
    def _sample(self, n: int, seed: int, row_offset: int) -> pd.DataFrame:
        if self.network is None:
            raise RuntimeError("the generator is not fitted")
        rng, gen = np.random.default_rng(seed), torch.Generator().manual_seed(seed)
        batch, chunks = self.hyper["batch_size"], []
        self.network.train()  # batch statistics, as in training and in ctgan's own sample()
        with torch.no_grad():
            for _ in range(math.ceil(n / batch)):
                z = torch.randn(batch, self.hyper["embedding_dim"], generator=gen)
                if self.cond_probs is not None:
                    cond = np.eye(len(self.cond_probs), dtype=np.float32)[
                        rng.choice(len(self.cond_probs), batch, p=self.cond_probs)]
                    z = torch.cat([z, torch.from_numpy(cond)], dim=1)
                chunks.append(_activate(self.network(z), self.transformer.output_info, gen).numpy())
        encoded = np.concatenate(chunks)[:n] if chunks else np.zeros((0, self.transformer.dim))
        table = self.transformer.inverse(encoded)
        for spec in self.metadata.columns:
            if not spec.learned:
                table[spec.name] = generated_column(spec, n, seed, row_offset)
        return table

    # ---- persistence -----------------------------------------------------------------------------
    def _save(self, directory: Path) -> dict[str, Any]:
        if self.network is None:
            raise RuntimeError("cannot save an unfitted generator")
        torch.save(self.network.state_dict(), directory / WEIGHTS_FILE)
        return {
            "transformer": self.transformer.to_json(),
            "cond_probs": None if self.cond_probs is None else self.cond_probs.tolist(),
        }

    def _load(self, directory: Path, state: dict[str, Any]) -> None:
        self.transformer = TableTransformer.from_json(state["transformer"])
        self.cond_probs = None if state["cond_probs"] is None else np.asarray(state["cond_probs"])
        cond_dim = 0 if self.cond_probs is None else len(self.cond_probs)
        self.network, _ = self._networks(cond_dim)
        weights = torch.load(directory / WEIGHTS_FILE, map_location="cpu", weights_only=True)
        self.network.load_state_dict(weights)


def _activate(raw: torch.Tensor, output_info, gen: torch.Generator | None) -> torch.Tensor:
    """tanh on scalar spans, Gumbel-softmax (tau 0.2) on one-hot spans, drawing from `gen`."""
    parts, start = [], 0
    for spans in output_info:
        for dim, activation in spans:
            logits = raw[:, start : start + dim]
            if activation == "tanh":
                parts.append(torch.tanh(logits))
            else:
                u = torch.rand(logits.shape, generator=gen, device=logits.device).clamp_(1e-10, 1 - 1e-7)
                parts.append(functional.softmax((logits - torch.log(-torch.log(u))) / 0.2, dim=1))
            start += dim
    return torch.cat(parts, dim=1)


def _cond_loss(raw: torch.Tensor, output_info, cond: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Cross-entropy between the generated discrete columns and the condition they were asked for."""
    losses, start, cond_start = [], 0, 0
    for spans in output_info:
        width = sum(d for d, _ in spans)
        if len(spans) == 1 and spans[0][1] == "softmax":
            target = cond[:, cond_start : cond_start + width].argmax(dim=1)
            losses.append(functional.cross_entropy(raw[:, start : start + width], target, reduction="none"))
            cond_start += width
        start += width
    return (torch.stack(losses, dim=1) * mask).sum() / raw.size(0)


def _original_cond_probs(transformer: TableTransformer, n_rows: int) -> np.ndarray | None:
    """The condition distribution CTGAN samples with: log-frequency per discrete column, flattened."""
    per_column = []
    for enc in transformer.encoders:
        if isinstance(enc, CategoricalEncoder):
            logf = np.log(np.asarray(enc.frequencies) * n_rows + 1)
            per_column.append(logf / logf.sum())
    if not per_column:
        return None
    flat = np.concatenate(per_column)
    return flat / flat.sum()
