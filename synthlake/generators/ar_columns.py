"""tabular_ar's column encodings: how a column's values become tokens and tokens become values again.

Kept apart from the network (no torch here), so executors sample without importing torch.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from synthlake import dp
from synthlake.column_types import category_strings, most_frequent_first, to_float
from synthlake.metadata import RARE_CATEGORY, ColumnKind, ColumnSpec, TableMetadata


@dataclass
class CategoricalColumn:
    """Tokens: the kept categories (most frequent first), then "other" if any were merged, then null."""

    name: str
    categories: list[str]
    rare: bool = False  # some categories were merged into the "other" token
    null: bool = False

    @classmethod
    def fit(cls, spec: ColumnSpec, values: pd.Series, min_count: int, max_categories: int) -> CategoricalColumn:
        labels = category_strings(values)
        counts = labels.dropna().value_counts()
        return cls.from_counts(spec, counts.items(), len(counts), bool(labels.isna().any()), min_count,
                               max_categories)

    @classmethod
    def from_counts(cls, spec: ColumnSpec, counts: Iterable[tuple[str, int]], distinct: int, null: bool,
                    min_count: int, max_categories: int) -> CategoricalColumn:
        """From (label, count) pairs (at least the `max_categories` most frequent that occur `min_count` times),
        the number of distinct labels and whether any value is null: what `fit` finds, from aggregates."""
        order = most_frequent_first(counts)
        kept = [v for v, c in order if c >= min_count][:max_categories]
        return cls(spec.name, kept, distinct > len(kept), null)

    @classmethod
    def fit_dp(
        cls, spec: ColumnSpec, counts: tuple[list[str], np.ndarray, int], budget: tuple[float, float], h: dict,
        rng: np.random.Generator, unit_rows: int = 1,
    ) -> tuple[CategoricalColumn, float]:
        """(epsilon, delta)-DP from the exact counts (every observed label, sorted, its count, and the nulls):
        noisy counts, categories above the stability threshold; the "other" token is always there (whether any
        category was dropped is not released). Returns the noisy row count too. `unit_rows`: the most rows one
        privacy unit adds."""
        names, found_counts, nulls = counts
        found = dp.dp_categories_from_counts(names, found_counts, nulls, budget[0], budget[1], h["max_categories"],
                                             rng, h["min_category_count"], unit_rows)
        return cls(spec.name, found.categories, True, found.null), found.noisy_total

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
        labels = category_strings(values)
        tokens = pd.Index(self.categories).get_indexer(labels.fillna("")).astype(np.int64)
        missing = labels.isna().to_numpy()
        unknown = (tokens < 0) & ~missing
        if unknown.any():
            if self.other_token is None:
                raise ValueError(
                    f"column '{self.name}': categories not seen when fitting: {sorted(set(labels[unknown]))[:5]}"
                )
            tokens[unknown] = self.other_token
        return with_nulls(tokens, missing, self.null_token, self.name)

    def decode(self, tokens: np.ndarray, u: np.ndarray) -> pa.Array:
        """Strings: a kept category, RARE_CATEGORY for "other", null for the null token."""
        labels = pa.array(self.categories + [RARE_CATEGORY], type=pa.string())
        null = tokens == self.null_token if self.null_token is not None else None
        return labels.take(pa.array(tokens, mask=null))

    def to_json(self) -> dict[str, Any]:
        return {
            "type": "categorical",
            "name": self.name,
            "categories": self.categories,
            "rare": self.rare,
            "null": self.null,
        }


@dataclass
class NumericColumn:
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
    def fit(cls, spec: ColumnSpec, series: pd.Series, max_bins: int, n_knots: int) -> NumericColumn:
        """Exact values when `keeps_values`, else quantile bins. pipelines.encode fits the same from Spark
        aggregates (approximate quantiles), through the same pieces: `keeps_values`, `bin_edges`,
        `RESOLUTIONS`."""
        is_dt = spec.kind == ColumnKind.DATETIME
        tz = column_time_zone(series) if is_dt else None
        x = to_float(series, datetime=is_dt)
        null = bool(np.isnan(x).any())
        x = np.sort(x[~np.isnan(x)])
        column = cls(spec.name, integer=spec.integer, datetime=is_dt, tz=tz, null=null)
        if is_dt and x.size:
            column.resolution = next((r for r in RESOLUTIONS if np.all(np.mod(x, r) == 0)), None)
        distinct = np.unique(x)
        if keeps_values(spec, distinct.size, x.size, max_bins):
            column.values = distinct.tolist()
            return column
        edges = bin_edges(np.quantile(x, bin_levels(max_bins), method="lower"), x[-1])
        bounds = np.searchsorted(x, edges, side="right")  # bin b is x[bounds[b-1]:bounds[b]]
        starts, stops = np.r_[0, bounds], np.r_[bounds, x.size]
        q = knot_levels(n_knots)
        column.edges = edges.tolist()
        column.knots = [np.quantile(x[a:b], q).tolist() for a, b in zip(starts, stops, strict=True)]
        return column

    @classmethod
    def fit_dp(
        cls, spec: ColumnSpec, tz: str | None, histograms: dp.Histograms, epsilon: float, h: dict,
        rng: np.random.Generator,
    ) -> tuple[NumericColumn, float]:
        """epsilon-DP (synthlake.dp.dp_numeric_of): bounds, bins, knots and the null token from noisy histograms
        over data-independent grids. Datetimes come out at a resolution of one second (the training values'
        resolution is not released). Returns the noisy row count too."""
        is_dt = spec.kind == ColumnKind.DATETIME
        found = dp.dp_numeric_of(histograms, epsilon, h["max_bins"], h["bin_knots"], rng, integer=spec.integer)
        # noisy bounds at a small epsilon may lie centuries away: a datetime keeps to what timestamps can hold
        within = (lambda x: np.clip(x, *DATETIME_SECONDS).tolist()) if is_dt else (lambda x: x)
        column = cls(
            spec.name,
            integer=spec.integer,
            datetime=is_dt,
            tz=tz if is_dt else None,
            resolution=1.0 if is_dt else None,
            values=None if found.values is None else within(found.values),
            edges=None if found.edges is None else within(found.edges),
            knots=None if found.knots is None else [within(k) for k in found.knots],
            null=found.null,
        )
        return column, found.noisy_total

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
        x = to_float(series, datetime=self.datetime)
        missing = np.isnan(x)
        if self.values is not None:
            tokens = np.minimum(np.searchsorted(self.values, x), max(self.bins - 1, 0))
        else:
            tokens = np.searchsorted(self.edges, x, side="left")
        tokens = tokens.astype(np.int64)
        return with_nulls(tokens, missing, self.null_token, self.name)

    def decode(self, tokens: np.ndarray, u: np.ndarray, adjust=None) -> pa.Array:
        """int64, double or timestamp[us] (in the training column's time zone, if any) values; `adjust` maps
        the float values (seconds for datetimes) before they are typed."""
        x = self._values(tokens, u)
        if adjust is not None:
            x = adjust(x)
        missing = np.isnan(x)
        mask = missing if missing.any() else None
        if self.datetime:
            micros = np.round(np.where(missing, 0.0, x) * 1e6).astype(np.int64)
            return pa.array(micros, type=pa.timestamp("us", tz=self.tz), mask=mask)
        if self.integer:
            return pa.array(np.where(missing, 0.0, x).astype(np.int64), mask=mask)
        return pa.array(x, mask=mask)

    def _values(self, tokens: np.ndarray, u: np.ndarray) -> np.ndarray:
        """Float values (seconds for datetimes), NaN for the null token: a bin's value interpolates its knots."""
        x = np.full(len(tokens), np.nan)
        present = tokens < self.bins
        t = tokens[present]
        if self.values is not None:
            x[present] = np.asarray(self.values)[t]
            return x
        knots = np.asarray(self.knots)
        pos = u[present] * (knots.shape[1] - 1)
        lo = np.minimum(pos.astype(np.int64), knots.shape[1] - 2)
        left = knots[t, lo]
        x[present] = left + (pos - lo) * (knots[t, lo + 1] - left)
        if self.integer:
            return np.round(x)
        if self.datetime and self.resolution:
            return np.round(x / self.resolution) * self.resolution
        return x

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


Column = CategoricalColumn | NumericColumn
DATETIME_SECONDS = (-9.2e9, 9.2e9)  # about 1678 to 2261: what a pandas (nanosecond) timestamp holds
RESOLUTIONS = (86400.0, 3600.0, 60.0, 1.0)  # a datetime column's resolution: the first its values are whole in


def keeps_values(spec: ColumnSpec, distinct: int, rows: int, max_bins: int) -> bool:
    """Whether a numeric column keeps one token per distinct value (else quantile bins): an integer column with
    at most `max_bins` values, or any column whose few values repeat (each four times on average)."""
    return distinct <= max_bins and (spec.integer or 4 * distinct <= rows)


def bin_levels(max_bins: int) -> np.ndarray:
    """The quantile levels whose (lower) quantiles are the bin edges."""
    return np.arange(1, max_bins) / max_bins


def knot_levels(n_knots: int) -> np.ndarray:
    """The within-bin quantile levels kept as a bin's knots."""
    return np.linspace(0, 1, n_knots)


def bin_edges(quantiles: np.ndarray, maximum: float) -> np.ndarray:
    """The bins' upper edges from the column's quantiles at `bin_levels`: distinct, and below the maximum so
    that the last bin (edges[-1], maximum] is not empty."""
    edges = np.unique(quantiles)
    return edges[edges < maximum]


def with_nulls(tokens: np.ndarray, missing: np.ndarray, null_token: int | None, name: str) -> np.ndarray:
    """`tokens` with the null token where values are missing; nulls unseen when fitting are an error."""
    if missing.any():
        if null_token is None:
            raise ValueError(f"column '{name}': nulls, but none were seen when fitting")
        tokens[missing] = null_token
    return tokens


def fit_columns(metadata: TableMetadata, table: pd.DataFrame, hyper: dict) -> list[Column]:
    """Every learned column's encoding, fitted on `table` with the encoding hyper-parameters (EncodingHyper)."""
    return [CategoricalColumn.fit(spec, table[spec.name], hyper["min_category_count"], hyper["max_categories"])
            if spec.kind == ColumnKind.CATEGORICAL else
            NumericColumn.fit(spec, table[spec.name], hyper["max_bins"], hyper["bin_knots"])
            for spec in metadata.learned_columns]


def column_from_json(data: dict[str, Any]) -> Column:
    data = dict(data)
    kind = data.pop("type")
    return CategoricalColumn(**data) if kind == "categorical" else NumericColumn(**data)


def column_time_zone(series: pd.Series) -> str | None:
    """A datetime column's time zone, read as pandas reads it (None for naive values, or no values)."""
    dtype = pd.to_datetime(series, utc=False).dtype if len(series) else None
    return str(dtype.tz) if getattr(dtype, "tz", None) is not None else None


def encode_rows(columns: list[Column], splits: list[int], table: pd.DataFrame, dp_nulls: bool = False) -> np.ndarray:
    """The model's token matrix of `table`'s rows (int32, a split column as two: see `model_tokens`); torch-free,
    so that executors encode rows. `dp_nulls`: DP encodings, whose nulls may have no token (`fill_nulls`)."""
    if dp_nulls:
        return model_tokens([c.encode(fill_nulls(c, table[c.name])) for c in columns], splits)
    return model_tokens([c.encode(table[c.name]) for c in columns], splits)


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


def model_tokens(tokens: list[np.ndarray], splits: list[int]) -> np.ndarray:
    """Each column's tokens as the model's columns: a split column's coarse (t // F) and fine (t % F) token."""
    parts = []
    for t, fine in zip(tokens, splits, strict=True):
        parts += [t // fine, t % fine] if fine else [t]
    return np.column_stack(parts).astype(np.int32)


def join_split(sub: np.ndarray, columns: list[Column], splits: list[int]) -> list[np.ndarray]:
    """Each column's tokens from the model columns' tokens: a split column's coarse * F + fine."""
    tokens, k = [], 0
    for column, fine in zip(columns, splits, strict=True):
        if fine:
            tokens.append(np.minimum(sub[:, k] * fine + sub[:, k + 1], column.vocab - 1))
            k += 2
        else:
            tokens.append(sub[:, k])
            k += 1
    return tokens


def split_width(vocab: int, above: int) -> int:
    """The fine vocabulary a column of `vocab` tokens is split by (0: not split): token = coarse * F + fine."""
    return math.ceil(math.sqrt(vocab)) if vocab > above else 0
