"""tabular_ar under differential privacy (add/remove-one-row or one-unit neighbours): DP column encodings and DP-SGD.

Everything the model keeps from the rows is DP and charged to the one budget, by basic composition:
- `dp_preprocessing_share` of epsilon goes to the column encodings, split evenly over the learned columns
  (synthlake.dp): numeric and datetime columns get bounds, quantile bins, knots and a null token from noisy
  histograms over data-independent grids (no real value is stored; datetimes at one-second resolution);
  categorical columns keep the categories whose Laplace count clears the stability threshold (half of delta,
  split over them), always with an "other" token. The row count kept is a noisy one.
- the rest of epsilon, and the rest of delta, goes to DP-SGD through Opacus (`DPSGD`): Poisson sampling,
  per-row clipping to `max_grad_norm`, the noise multiplier the accountant (`dp_accountant`) needs for the
  fixed `epochs`; no validation split, no early stopping; one process only.

With a unit of privacy (`privacy.unit`, a column: a customer, or a related table's entity) the neighbours differ
by one unit: a unit's first `unit_rows` rows are learned (`capped_units`), the histograms' sensitivity is that
many rows, a noisy count of the units takes one more share of the preprocessing epsilon, and DP-SGD samples,
clips and accounts per unit.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pandas as pd
import torch

from synthlake import dp
from synthlake.column_types import category_strings, to_float
from synthlake.generators.ar_columns import CategoricalColumn, Column, NumericColumn, column_time_zone
from synthlake.generators.training import StatePart
from synthlake.metadata import RARE_CATEGORY, ColumnKind, ColumnSpec, TableMetadata


class ColumnCounts(Protocol):
    """What the DP encodings read of the rows: exact counts, noised by synthlake.dp. `TableCounts` gives them
    from a table; pipelines.encode from Spark aggregates."""

    def categories(self, spec: ColumnSpec) -> tuple[list[str], np.ndarray, int]:
        """Every observed label (sorted), its count, and the number of nulls."""

    def histograms(self, spec: ColumnSpec) -> dp.Histograms:
        """The numeric (or datetime, in seconds) column's histograms."""

    def time_zone(self, spec: ColumnSpec) -> str | None:
        """A datetime column's time zone."""


@dataclass
class TableCounts:
    """`ColumnCounts` of a table."""

    table: pd.DataFrame

    def categories(self, spec: ColumnSpec) -> tuple[list[str], np.ndarray, int]:
        labels = category_strings(self.table[spec.name])
        names, counts = np.unique(labels.dropna().to_numpy(dtype=str), return_counts=True)
        return names.tolist(), counts, int(labels.isna().sum())

    def histograms(self, spec: ColumnSpec) -> dp.Histograms:
        return dp.ArrayHistograms(to_float(self.table[spec.name], datetime=spec.kind == ColumnKind.DATETIME))

    def time_zone(self, spec: ColumnSpec) -> str | None:
        return column_time_zone(self.table[spec.name])


def fit_columns(metadata: TableMetadata, counts: ColumnCounts, rows: int, privacy: dict, hyper: dict,
                rng: np.random.Generator, units: int | None = None) -> tuple[list[Column], dp.Budget, float]:
    """The DP column encodings from the `rows` rows' counts, the budget split and the noisy row count (with a
    unit of privacy: the noisy count of the `units` units, the rows capped at `unit_rows` per unit). A column
    left with no category above the threshold keeps only "other" (generated as RARE_CATEGORY) and null; a
    numeric column whose noisy histogram shows no bucket clearly above noise gets the largest noisy bucket as
    its bounds."""
    epsilon, delta = privacy["epsilon"], privacy["delta"]
    k = unit_rows(privacy)
    size, what = (rows, "rows") if units is None else (units, "units")
    if delta >= 1 / max(size, 1):
        raise ValueError(f"privacy delta={delta:g} must be below 1/{what} = {1 / max(size, 1):.3g}: with delta that "
                         f"large, releasing a {what[:-1]} outright is within budget")
    specs = metadata.learned_columns
    categorical = [s.name for s in specs if s.kind == ColumnKind.CATEGORICAL]
    budget = dp.split_budget(epsilon, delta, hyper["dp_preprocessing_share"], [s.name for s in specs], categorical,
                             units=units is not None)
    columns, totals = [], []
    for spec in specs:
        eps = budget.column_epsilon[spec.name]
        if spec.kind == ColumnKind.CATEGORICAL:
            column, total = CategoricalColumn.fit_dp(spec, counts.categories(spec),
                                                     (eps, budget.column_delta[spec.name]), hyper, rng, k)
            if not column.categories:
                warnings.warn(f"privacy: no category of column '{spec.name}' clears the threshold at epsilon "
                              f"{eps:.3g}: it generates only {RARE_CATEGORY!r} and nulls (raise epsilon or "
                              f"dp_preprocessing_share)", stacklevel=4)
        else:
            tz = counts.time_zone(spec) if spec.kind == ColumnKind.DATETIME else None
            column, total = NumericColumn.fit_dp(spec, tz, counts.histograms(spec), eps / k, hyper, rng)
        columns.append(column)
        totals.append(total)
    if units is not None:  # sensitivity 1: a unit is one unit
        return columns, budget, float(dp.laplace_counts(np.array([units]), budget.units_epsilon, rng)[0])
    return columns, budget, float(np.median(totals))  # the median: post-processing of the released counts


def unit_rows(privacy: dict) -> int:
    """The most rows one privacy unit adds: its `unit_rows` with a unit column, else 1 (a row)."""
    return privacy["unit_rows"] if privacy.get("unit") else 1


def capped_units(table: pd.DataFrame, privacy: dict) -> tuple[pd.DataFrame, np.ndarray | None]:
    """The rows learned under `privacy`, and each one's unit (0..units-1; None without a unit column): a unit's
    first `unit_rows` rows, in the table's order, the rest left out (so that one unit adds at most that many)."""
    unit = privacy.get("unit")
    if not unit:
        return table, None
    if unit not in table.columns:
        raise ValueError(f"privacy unit '{unit}' is not a column of the training rows")
    codes = pd.factorize(table[unit], use_na_sentinel=False)[0]
    kept = pd.Series(codes).groupby(codes).cumcount().to_numpy() < privacy["unit_rows"]
    if not kept.all():
        warnings.warn(f"privacy unit '{unit}': {int((~kept).sum())} rows beyond the first {privacy['unit_rows']} of "
                      "their unit left out (raise privacy.unit_rows to keep them, at more noise)", stacklevel=3)
    return table[kept].reset_index(drop=True), pd.factorize(codes[kept])[0].astype(np.int64)


class DPSGD:
    """DP-SGD around a network (Opacus: per-row gradients clipped to `max_grad_norm`, Gaussian noise, Adam on
    the noisy mean). Each step takes every row independently with probability q = batch_size / the noisy row
    count (Poisson sampling); the noise multiplier is the smallest that keeps `epochs / q` steps within the
    DP-SGD share of the budget. The noise comes from `noise_rng` (OS entropy unless a test seeds it).

    With `units` (each row's privacy unit, 0..units-1) the unit takes the row's place: each step takes every unit
    with probability q = batch_size / the noisy unit count, with all of its rows, and a unit's gradient (the mean
    of its rows') is what is clipped and noised (`before_step`, between backward and step)."""

    def __init__(self, network: torch.nn.Module, optimizer: torch.optim.Optimizer, budget: dp.Budget,
                 noisy_size: float, hyper: dict, noise_rng, device: str, units: np.ndarray | None = None):
        from opacus import GradSampleModule
        from opacus.accountants import create_accountant
        from opacus.optimizers import DPOptimizer

        self.budget, self.hyper = budget, hyper
        rows = max(1.0, noisy_size)
        self.rows = round(rows)  # rows, or units
        self.units = None if units is None else torch.from_numpy(np.asarray(units, dtype=np.int64))
        self.unit_count = 0 if units is None or not len(units) else int(units.max()) + 1
        self.batch_units: torch.Tensor | None = None  # the current chunk's rows' units, numbered 0.. in it
        self.last_chunk = True  # whether the current chunk ends its batch
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
        """One epoch of Poisson batches (some may be empty). With units, a batch's rows come in chunks of whole
        units, about `batch_size` rows each (per-row gradients of every row of a batch at once would not fit):
        every chunk but the last is clipped and accumulated without a step (`before_step`)."""
        for _ in range(self.steps_per_epoch):
            if self.units is None:
                yield data[(torch.rand(len(data), generator=self.sampling) < self.q).to(data.device)]
            else:
                yield from self._unit_chunks(data, torch.rand(self.unit_count, generator=self.sampling) < self.q)

    def _unit_chunks(self, data: torch.Tensor, chosen: torch.Tensor) -> Iterator[torch.Tensor]:
        rows = torch.nonzero(chosen[self.units]).flatten()
        rows = rows[torch.argsort(self.units[rows], stable=True)]  # a unit's rows together
        units, sizes = torch.unique_consecutive(self.units[rows], return_counts=True)
        chunk_of_unit = (torch.cumsum(sizes, 0) - sizes) // self.hyper["batch_size"]
        chunk_of_row = torch.repeat_interleave(chunk_of_unit, sizes)
        chunks = int(chunk_of_unit.max()) + 1 if len(units) else 1
        for chunk in range(chunks):
            mine = rows[chunk_of_row == chunk]
            self.last_chunk = chunk == chunks - 1
            self.batch_units = torch.unique_consecutive(self.units[mine], return_inverse=True)[1].to(data.device)
            yield data[mine.to(data.device)]

    def before_step(self) -> None:
        """After backward, before the optimizer's step: with units, the per-row gradients become one per unit,
        and a chunk that is not its batch's last is clipped and accumulated, not stepped."""
        if self.units is None:
            return
        self._per_unit()
        self.optimizer.signal_skip_step(do_skip=not self.last_chunk)

    def _per_unit(self) -> None:
        """Each parameter's per-row gradients replaced by their mean per unit, so that the optimizer clips (and
        counts) one gradient per unit."""
        index = self.batch_units
        n = int(index.max()) + 1
        rows = torch.bincount(index, minlength=n)
        for p in self.params:
            grads = p.grad_sample
            summed = torch.zeros((n, *grads.shape[1:]), dtype=grads.dtype, device=grads.device)
            summed.index_add_(0, index, grads)
            p.grad_sample = summed / rows.view(-1, *[1] * (grads.dim() - 1)).to(grads.dtype)

    def empty_step(self) -> None:
        """An empty Poisson batch: the step is noise alone."""
        for p in self.params:
            p.grad_sample = torch.zeros(0, *p.shape, device=p.device)

    def epsilon(self) -> float:
        """The total spent so far: preprocessing plus the accountant's DP-SGD epsilon."""
        return self.budget.preprocessing_epsilon + self.accountant.get_epsilon(delta=self.budget.sgd_delta)

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
        pre = budget.preprocessing_epsilon
        sgd = final_epsilon - pre
        # the noisy count of units (what DP-SGD's sample rate came from), not the exact one, which is not DP
        unit = {"unit": {"column": privacy["unit"], "unit_rows": privacy["unit_rows"], "noisy_units": self.rows,
                         "count_epsilon": budget.units_epsilon}} if self.units is not None else {}
        return {
            "epsilon": pre + sgd,
            "delta": sum(budget.column_delta.values()) + budget.sgd_delta,
            "requested": dict(privacy),
            **unit,
            "preprocessing": dict(budget.column_epsilon),
            "preprocessing_delta": dict(budget.column_delta),
            "dp_sgd": {"epsilon": sgd, "delta": budget.sgd_delta, "noise_multiplier": self.sigma,
                       "sample_rate": self.q, "steps": self.steps, "max_grad_norm": self.hyper["max_grad_norm"],
                       "accountant": self.hyper["dp_accountant"]},
        }
