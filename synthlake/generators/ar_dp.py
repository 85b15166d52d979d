"""tabular_ar under differential privacy (add/remove-one-row neighbours): DP column encodings and DP-SGD.

Everything the model keeps from the rows is DP and charged to the one budget, by basic composition:
- `dp_preprocessing_share` of epsilon goes to the column encodings, split evenly over the learned columns
  (synthlake.dp): numeric and datetime columns get bounds, quantile bins, knots and a null token from noisy
  histograms over data-independent grids (no real value is stored; datetimes at one-second resolution);
  categorical columns keep the categories whose Laplace count clears the stability threshold (half of delta,
  split over them), always with an "other" token. The row count kept is a noisy one.
- the rest of epsilon, and the rest of delta, goes to DP-SGD through Opacus (`DPSGD`): Poisson sampling,
  per-row clipping to `max_grad_norm`, the noise multiplier the accountant (`dp_accountant`) needs for the
  fixed `epochs`; no validation split, no early stopping; one process only.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import numpy as np
import pandas as pd
import torch

from synthlake import dp
from synthlake.generators.ar_columns import CategoricalColumn, Column, NumericColumn
from synthlake.generators.training import StatePart
from synthlake.metadata import RARE_CATEGORY, ColumnKind, TableMetadata


def fit_columns(metadata: TableMetadata, table: pd.DataFrame, privacy: dict, hyper: dict,
                rng: np.random.Generator) -> tuple[list[Column], dp.Budget, float]:
    """The DP column encodings, the budget split and the noisy row count. A column left with no category
    above the threshold keeps only "other" (generated as RARE_CATEGORY) and null; a numeric column whose noisy
    histogram shows no bucket clearly above noise gets the largest noisy bucket as its bounds."""
    epsilon, delta = privacy["epsilon"], privacy["delta"]
    if delta >= 1 / len(table):
        raise ValueError(f"privacy delta={delta:g} must be below 1/rows = {1 / len(table):.3g}: with delta that "
                         f"large, releasing a row outright is within budget")
    specs = metadata.learned_columns
    categorical = [s.name for s in specs if s.kind == ColumnKind.CATEGORICAL]
    budget = dp.split_budget(epsilon, delta, hyper["dp_preprocessing_share"], [s.name for s in specs], categorical)
    columns, totals = [], []
    for spec in specs:
        eps = budget.column_epsilon[spec.name]
        if spec.kind == ColumnKind.CATEGORICAL:
            column, total = CategoricalColumn.fit_dp(spec, table[spec.name], (eps, budget.column_delta[spec.name]),
                                                     hyper, rng)
            if not column.categories:
                warnings.warn(f"privacy: no category of column '{spec.name}' clears the threshold at epsilon "
                              f"{eps:.3g}: it generates only {RARE_CATEGORY!r} and nulls (raise epsilon or "
                              f"dp_preprocessing_share)", stacklevel=4)
        else:
            column, total = NumericColumn.fit_dp(spec, table[spec.name], eps, hyper, rng)
        columns.append(column)
        totals.append(total)
    return columns, budget, float(np.median(totals))  # the median: post-processing of the released counts


def fill_nulls(column: Column, values: pd.Series) -> pd.Series:
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
        stamp = stamp.tz_localize(None) if column.tz is None else stamp.tz_convert(column.tz)
        return values.where(values.notna(), stamp)
    return values.astype(float).fillna(middle)


class DPSGD:
    """DP-SGD around a network (Opacus: per-row gradients clipped to `max_grad_norm`, Gaussian noise, Adam on
    the noisy mean). Each step takes every row independently with probability q = batch_size / the noisy row
    count (Poisson sampling); the noise multiplier is the smallest that keeps `epochs / q` steps within the
    DP-SGD share of the budget. The noise comes from `noise_rng` (OS entropy unless a test seeds it)."""

    def __init__(self, network: torch.nn.Module, optimizer: torch.optim.Optimizer, budget: dp.Budget,
                 noisy_rows: float, hyper: dict, noise_rng, device: str):
        from opacus import GradSampleModule
        from opacus.accountants import create_accountant
        from opacus.optimizers import DPOptimizer

        self.budget, self.hyper = budget, hyper
        rows = max(1.0, noisy_rows)
        self.rows = round(rows)
        self.q = min(1.0, hyper["batch_size"] / rows)
        self.steps_per_epoch = max(1, round(1 / self.q))
        self.steps = hyper["epochs"] * self.steps_per_epoch
        self.sigma = dp.noise_multiplier(budget.sgd_epsilon, budget.sgd_delta, self.q, self.steps,
                                         hyper["dp_accountant"])
        self.model = GradSampleModule(network, batch_first=True, loss_reduction="mean", strict=True)
        self.noise = torch.Generator(device=device).manual_seed(int(noise_rng(1).integers(2**62)))
        self.optimizer = DPOptimizer(optimizer, noise_multiplier=self.sigma, max_grad_norm=hyper["max_grad_norm"],
                                     expected_batch_size=self.q * rows, loss_reduction="mean", generator=self.noise)
        self.accountant = create_accountant(hyper["dp_accountant"])
        self.optimizer.attach_step_hook(self.accountant.get_optimizer_hook_fn(sample_rate=self.q))
        self.sampling = torch.Generator().manual_seed(int(noise_rng(2).integers(2**62)))
        self.params = [p for p in network.parameters() if p.requires_grad]

    def poisson_batches(self, data: torch.Tensor) -> Iterator[torch.Tensor]:
        """One epoch of Poisson batches (some may be empty)."""
        for _ in range(self.steps_per_epoch):
            yield data[(torch.rand(len(data), generator=self.sampling) < self.q).to(data.device)]

    def empty_step(self) -> None:
        """An empty Poisson batch: the step is noise alone."""
        for p in self.params:
            p.grad_sample = torch.zeros(0, *p.shape, device=p.device)

    def epsilon(self) -> float:
        """The total spent so far: preprocessing plus the accountant's DP-SGD epsilon."""
        return sum(self.budget.column_epsilon.values()) + self.accountant.get_epsilon(delta=self.budget.sgd_delta)

    def signature(self) -> dict:
        return {"noise_multiplier": self.sigma, "sample_rate": self.q}

    def parts(self) -> dict[str, StatePart]:
        def set_accountant(steps):
            self.accountant.history = [tuple(step) for step in steps]

        return {"noise_rng": (self.noise.get_state, self.noise.set_state),
                "sampling_rng": (self.sampling.get_state, self.sampling.set_state),
                "accountant": (lambda: [list(step) for step in self.accountant.history], set_accountant)}

    def close(self) -> None:
        self.model._close()
        for p in self.params:
            p.grad_sample = None

    def report(self, privacy: dict, final_epsilon: float) -> dict:
        budget = self.budget
        pre = sum(budget.column_epsilon.values())
        sgd = final_epsilon - pre
        return {
            "epsilon": pre + sgd,
            "delta": sum(budget.column_delta.values()) + budget.sgd_delta,
            "requested": dict(privacy),
            "preprocessing": dict(budget.column_epsilon),
            "preprocessing_delta": dict(budget.column_delta),
            "dp_sgd": {"epsilon": sgd, "delta": budget.sgd_delta, "noise_multiplier": self.sigma,
                       "sample_rate": self.q, "steps": self.steps, "max_grad_norm": self.hyper["max_grad_norm"],
                       "accountant": self.hyper["dp_accountant"]},
        }
