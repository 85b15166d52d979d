"""Fidelity metrics: how closely synthetic columns follow the real ones. 1 is identical, 0 disjoint."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from synthlake.metadata import ColumnKind, TableMetadata


def ks_complement(real: pd.Series, synthetic: pd.Series) -> float:
    """1 - the Kolmogorov-Smirnov statistic between the two empirical distributions (nulls ignored)."""
    a, b = _numeric(real), _numeric(synthetic)
    if a.size == 0 or b.size == 0:
        return float(a.size == b.size)
    grid = np.union1d(a, b)
    cdf_a = np.searchsorted(np.sort(a), grid, side="right") / a.size
    cdf_b = np.searchsorted(np.sort(b), grid, side="right") / b.size
    return float(1 - np.abs(cdf_a - cdf_b).max())


def tv_complement(real: pd.Series, synthetic: pd.Series) -> float:
    """1 - the total variation distance between category frequencies (null counts as a category)."""
    fa = real.astype(object).where(real.notna(), None).value_counts(normalize=True, dropna=False)
    fb = synthetic.astype(object).where(synthetic.notna(), None).value_counts(normalize=True, dropna=False)
    both = fa.index.union(fb.index)
    return float(1 - 0.5 * np.abs(fa.reindex(both, fill_value=0) - fb.reindex(both, fill_value=0)).sum())


@dataclass(frozen=True)
class ColumnShape:
    column: str
    metric: str
    score: float


def column_shapes(real: pd.DataFrame, synthetic: pd.DataFrame, metadata: TableMetadata) -> list[ColumnShape]:
    """KS complement for numeric and datetime columns, TV complement for categorical ones."""
    scores = []
    for spec in metadata.learned_columns:
        if spec.kind == ColumnKind.CATEGORICAL:
            scores.append(ColumnShape(spec.name, "tv_complement", tv_complement(real[spec.name],
                                                                                  synthetic[spec.name])))
        else:
            scores.append(ColumnShape(spec.name, "ks_complement", ks_complement(real[spec.name],
                                                                                  synthetic[spec.name])))
    return scores


def _numeric(values: pd.Series) -> np.ndarray:
    if pd.api.types.is_datetime64_any_dtype(values):
        values = (pd.to_datetime(values, utc=True) - pd.Timestamp(0, tz="UTC")).dt.total_seconds()
    x = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    return x[~np.isnan(x)]
