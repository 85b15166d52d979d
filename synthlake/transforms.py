"""Reversible column encodings for neural generators, saved as plain JSON.

Numeric and datetime columns use mode-specific normalisation (as in CTGAN): a Bayesian Gaussian
mixture finds the modes, each value is encoded as (its mode, its offset within the mode). Categorical
columns are one-hot. A column with nulls gets a two-way null flag so nulls come back at their rate.
Everything fitted is kept as numbers in JSON: loading a model never unpickles code.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import BayesianGaussianMixture

from synthlake.column_types import category_strings, most_frequent_first, to_float
from synthlake.metadata import ColumnKind, ColumnSpec, TableMetadata

# A span of the encoded vector and the activation that produces it: "tanh" or "softmax".
Span = tuple[int, str]

_BGM_MAX_ROWS = 10_000  # the mixture is fitted on a sample: modes need thousands of rows, not millions
_MIN_MODE_WEIGHT = 0.005
_NULL_TOKEN = "\x00null"  # stands for a missing category in the category list


@dataclass
class ContinuousEncoder:
    name: str
    is_datetime: bool
    integer: bool
    minimum: float
    maximum: float
    means: list[float]
    stds: list[float]
    weights: list[float]
    null_rate: float = 0.0

    @classmethod
    def fit(cls, spec: ColumnSpec, values: pd.Series, max_modes: int, seed: int) -> ContinuousEncoder:
        is_dt = spec.kind == ColumnKind.DATETIME
        x = to_float(values, datetime=is_dt)
        present = x[~np.isnan(x)]
        if present.size == 0:
            raise ValueError(f"column '{spec.name}': no non-null values to learn from")
        sample = present
        if sample.size > _BGM_MAX_ROWS:
            sample = np.random.default_rng(seed).choice(sample, _BGM_MAX_ROWS, replace=False)
        means, stds, weights = _fit_modes(sample, max_modes, seed)
        return cls(
            name=spec.name, is_datetime=is_dt, integer=spec.integer,
            minimum=float(present.min()), maximum=float(present.max()),
            means=means, stds=stds, weights=weights, null_rate=float(np.isnan(x).mean()),
        )

    @property
    def spans(self) -> list[Span]:
        spans = [(1, "tanh"), (len(self.means), "softmax")]
        return spans + [(2, "softmax")] if self.null_rate > 0 else spans

    def transform(self, values: pd.Series, rng: np.random.Generator) -> np.ndarray:
        x = to_float(values, datetime=self.is_datetime)
        missing = np.isnan(x)
        x = np.where(missing, self.means[int(np.argmax(self.weights))], x)
        mu, sd, w = (np.asarray(a)[None, :] for a in (self.means, self.stds, self.weights))
        log_p = np.log(w) - np.log(sd) - 0.5 * ((x[:, None] - mu) / sd) ** 2
        p = np.exp(log_p - log_p.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        # Draw each row's mode from its posterior, as CTGAN does, rather than taking the argmax.
        mode = (p.cumsum(axis=1) > rng.random((len(x), 1))).argmax(axis=1)
        scalar = np.clip((x - mu[0, mode]) / (4 * sd[0, mode]), -0.99, 0.99)
        parts = [scalar[:, None], np.eye(len(self.means))[mode]]
        if self.null_rate > 0:
            parts.append(np.eye(2)[missing.astype(int)])
        return np.concatenate(parts, axis=1)

    def inverse(self, encoded: np.ndarray) -> pd.Series:
        k = len(self.means)
        mode = encoded[:, 1 : 1 + k].argmax(axis=1)
        x = np.clip(encoded[:, 0], -1, 1) * 4 * np.asarray(self.stds)[mode] + np.asarray(self.means)[mode]
        x = np.clip(x, self.minimum, self.maximum)
        if self.integer or self.is_datetime:
            x = np.round(x)
        if self.null_rate > 0:
            x = np.where(encoded[:, 1 + k : 3 + k].argmax(axis=1) == 1, np.nan, x)
        return _from_float(x, self.name, self.is_datetime, self.integer)


@dataclass
class CategoricalEncoder:
    name: str
    categories: list[str]  # _NULL_TOKEN stands for null
    frequencies: list[float] = field(default_factory=list)

    @classmethod
    def fit(cls, spec: ColumnSpec, values: pd.Series) -> CategoricalEncoder:
        counts = most_frequent_first(category_strings(values, _NULL_TOKEN).value_counts().items())
        total = sum(c for _, c in counts)
        return cls(spec.name, [str(v) for v, _ in counts], [c / total for _, c in counts])

    @property
    def spans(self) -> list[Span]:
        return [(len(self.categories), "softmax")]

    def transform(self, values: pd.Series, rng: np.random.Generator) -> np.ndarray:
        index = {c: i for i, c in enumerate(self.categories)}
        codes = category_strings(values, _NULL_TOKEN).map(index)
        if codes.isna().any():
            unseen = sorted(category_strings(values, _NULL_TOKEN)[codes.isna()].unique())[:5]
            raise ValueError(f"column '{self.name}': categories not seen when fitting: {unseen}")
        return np.eye(len(self.categories))[codes.to_numpy(dtype=int)]

    def inverse(self, encoded: np.ndarray) -> pd.Series:
        values = np.asarray(self.categories, dtype=object)[encoded.argmax(axis=1)]
        values[values == _NULL_TOKEN] = None
        return pd.Series(values, name=self.name, dtype=object)


Encoder = ContinuousEncoder | CategoricalEncoder


class TableTransformer:
    """Encodes the learned columns of a table into one float matrix and back."""

    def __init__(self, encoders: list[Encoder]):
        self.encoders = encoders

    @classmethod
    def fit(cls, table: pd.DataFrame, metadata: TableMetadata, max_modes: int = 10, seed: int = 0):
        encoders: list[Encoder] = []
        for spec in metadata.learned_columns:
            if spec.kind == ColumnKind.CATEGORICAL:
                encoders.append(CategoricalEncoder.fit(spec, table[spec.name]))
            else:
                encoders.append(ContinuousEncoder.fit(spec, table[spec.name], max_modes, seed))
        return cls(encoders)

    @property
    def output_info(self) -> list[list[Span]]:
        """Spans grouped per column, the layout CTGAN's DataSampler expects."""
        return [e.spans for e in self.encoders]

    @property
    def dim(self) -> int:
        return sum(d for spans in self.output_info for d, _ in spans)

    def transform(self, table: pd.DataFrame, seed: int = 0) -> np.ndarray:
        rng = np.random.default_rng(seed)
        parts = [e.transform(table[e.name], rng) for e in self.encoders]
        return np.concatenate(parts, axis=1).astype(np.float32)

    def inverse(self, encoded: np.ndarray) -> pd.DataFrame:
        columns, start = {}, 0
        for enc in self.encoders:
            width = sum(d for d, _ in enc.spans)
            columns[enc.name] = enc.inverse(encoded[:, start : start + width])
            start += width
        return pd.DataFrame(columns)

    def to_json(self) -> list[dict[str, Any]]:
        return [{"type": type(e).__name__, **e.__dict__} for e in self.encoders]

    @classmethod
    def from_json(cls, data: list[dict[str, Any]]) -> TableTransformer:
        kinds = {"ContinuousEncoder": ContinuousEncoder, "CategoricalEncoder": CategoricalEncoder}
        encoders = []
        for item in data:
            item = dict(item)
            kind = item.pop("type")
            if kind not in kinds:
                raise ValueError(f"unknown encoder type {kind!r} in saved model")
            encoders.append(kinds[kind](**item))
        return cls(encoders)


def _fit_modes(x: np.ndarray, max_modes: int, seed: int) -> tuple[list[float], list[float], list[float]]:
    if np.unique(x).size == 1:
        return [float(x[0])], [1e-3 + abs(float(x[0])) * 1e-3], [1.0]
    bgm = BayesianGaussianMixture(
        n_components=min(max_modes, np.unique(x).size),
        weight_concentration_prior_type="dirichlet_process",
        weight_concentration_prior=0.001,
        max_iter=100,
        random_state=seed,
    )
    with warnings.catch_warnings():  # 100 iterations are plenty to place the modes; silence the nag
        warnings.simplefilter("ignore", ConvergenceWarning)
        bgm.fit(x.reshape(-1, 1))
    keep = bgm.weights_ > _MIN_MODE_WEIGHT
    weights = bgm.weights_[keep] / bgm.weights_[keep].sum()
    stds = np.sqrt(bgm.covariances_.reshape(-1)[keep])
    return bgm.means_.reshape(-1)[keep].tolist(), np.maximum(stds, 1e-6).tolist(), weights.tolist()


def _from_float(x: np.ndarray, name: str, is_datetime: bool, integer: bool) -> pd.Series:
    if is_datetime:
        # whole seconds to nanoseconds here, nulls masked: pandas' to_datetime(unit="s") leaves a NaN's
        # fraction uninitialised and rounds it under errstate(over="raise"), which fails now and then
        missing = np.isnan(x)
        ns = np.where(missing, 0, x).astype(np.int64) * 1_000_000_000
        return pd.Series(pd.to_datetime(ns, utc=True).where(~missing), name=name)
    if integer:
        return pd.Series(pd.array(np.where(np.isnan(x), None, x), dtype="Int64"), name=name)
    return pd.Series(x, name=name)
