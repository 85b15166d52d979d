"""A Gaussian copula over tabular_ar's column encodings: a fast baseline, written through the contract alone.

Each learned column is encoded into tokens exactly as tabular_ar encodes it (synthlake.generators.ar_columns:
quantile bins with within-bin knots for numbers and datetimes, kept categories most frequent first, "other",
null). A column's marginal is the frequency of its tokens; its rows get normal scores, Phi^-1 of the middle of
their token's CDF step; the copula is the correlation matrix of those scores, shrunk towards the identity so
that it stays positive definite. Sampling draws correlated normals, maps each through Phi and the column's
token CDF, and decodes the tokens with the column's own uniforms. Identifiers and PII are generated, never
learned. numpy, scipy and pyarrow only: no torch, in training or sampling.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from pydantic import Field
from scipy.special import ndtr, ndtri

from synthlake.fakes import generated_column
from synthlake.generators.ar_columns import Column, column_from_json, fit_columns
from synthlake.generators.ar_hyper import EncodingHyper
from synthlake.generators.base import SAMPLER_FILE, Generator, TrainOptions, write_sampler_file
from synthlake.metadata import TableMetadata

EPS = 1e-9  # uniforms are kept inside (EPS, 1 - EPS): Phi^-1 of 0 or 1 is infinite


class GaussianCopulaHyper(EncodingHyper):
    shrinkage: float = Field(1e-3, ge=0.0, le=1.0, description="weight of the identity in the correlation matrix")


class CopulaSampler:
    """The fitted copula: column encodings, token CDFs and the Cholesky factor of the correlation matrix."""

    def __init__(self, metadata: TableMetadata, columns: list[Column], cdfs: list[np.ndarray], chol: np.ndarray):
        self.metadata, self.columns, self.cdfs, self.chol = metadata, columns, cdfs, chol

    def sample_arrow(self, n: int, seed: int, row_offset: int = 0) -> pa.Table:
        """Row after row from one stream (a shorter sample is a prefix of a longer one): per row, one uniform
        per column for the copula, then one per column for the value inside its token."""
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        d = len(self.columns)
        u = np.random.default_rng(seed).random((n, 2 * d))
        z = ndtri(np.clip(u[:, :d], EPS, 1 - EPS)) @ self.chol.T
        v = ndtr(z)
        table = {}
        for i, (column, cdf) in enumerate(zip(self.columns, self.cdfs, strict=True)):
            tokens = np.minimum(np.searchsorted(cdf, v[:, i], side="right"), len(cdf) - 1)
            table[column.name] = column.decode(tokens, u[:, d + i])
        for spec in self.metadata.columns:
            if not spec.learned:
                table[spec.name] = pa.array(generated_column(spec, n, seed, row_offset), type=pa.string())
        return pa.table(table).select(self.metadata.names)

    def state(self) -> dict[str, Any]:
        return {"metadata": self.metadata.model_dump(mode="json"), "columns": [c.to_json() for c in self.columns],
                "cdfs": [c.tolist() for c in self.cdfs], "chol": self.chol.tolist()}

    def save(self, directory: str | Path) -> None:
        write_sampler_file(directory, GaussianCopulaGenerator.name, self.state())

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> CopulaSampler:
        return cls(TableMetadata.model_validate(state["metadata"]), [column_from_json(c) for c in state["columns"]],
                   [np.asarray(c, dtype=float) for c in state["cdfs"]], np.asarray(state["chol"], dtype=float))

    @classmethod
    def load(cls, directory: str | Path) -> CopulaSampler:
        return cls.from_state(json.loads((Path(directory) / SAMPLER_FILE).read_text()))


class GaussianCopulaGenerator(Generator):
    name = "gaussian_copula"
    Hyper = GaussianCopulaHyper

    def __init__(self, metadata: TableMetadata, privacy: dict[str, float] | None = None, **hyper: Any):
        super().__init__(metadata, privacy=privacy, **hyper)
        self.columns: list[Column] | None = None
        self.sampler: CopulaSampler | None = None

    def prepare(self, table: pd.DataFrame, seed: int = 0) -> np.ndarray:
        """The column encodings, fitted; the token matrix (rows x learned columns). `seed` is unused."""
        self.columns, self.sampler = fit_columns(self.metadata, table, self.hyper), None
        return np.column_stack([c.encode(table[c.name]) for c in self.columns]).astype(np.int32)

    def train(self, encoded: np.ndarray, options: TrainOptions) -> list[dict[str, float]]:
        """Token CDFs and the normal scores' correlation, in one pass (every process computes the same)."""
        if self.columns is None:
            raise RuntimeError("call prepare() before train()")
        encoded = np.asarray(encoded)
        cdfs, scores = [], np.empty(encoded.shape)
        for i, column in enumerate(self.columns):
            p = np.bincount(encoded[:, i], minlength=column.vocab) / len(encoded)
            cdf = np.cumsum(p)
            cdfs.append(cdf)
            scores[:, i] = ndtri(np.clip(cdf[encoded[:, i]] - p[encoded[:, i]] / 2, EPS, 1 - EPS))
        corr = np.nan_to_num(np.corrcoef(scores, rowvar=False).reshape(len(cdfs), len(cdfs)))  # constant: 0
        np.fill_diagonal(corr, 1.0)
        corr = (1 - self.hyper["shrinkage"]) * corr + self.hyper["shrinkage"] * np.eye(len(cdfs))
        self.sampler = CopulaSampler(self.metadata, self.columns, cdfs, np.linalg.cholesky(corr))
        history = [{"epoch": 0, "mean_abs_correlation": float(np.abs(corr[np.triu_indices(len(cdfs), 1)]).mean())
                    if len(cdfs) > 1 else 0.0}]
        if options.on_epoch:
            options.on_epoch(history[0])
        return history

    def freeze(self) -> CopulaSampler:
        if self.sampler is None:
            raise RuntimeError("the generator is not fitted")
        return self.sampler

    def _save(self, directory: Path) -> dict[str, Any]:
        return self.freeze().state()

    def _load(self, directory: Path, state: dict[str, Any]) -> None:
        self.sampler = CopulaSampler.from_state(state)
        self.columns = self.sampler.columns
