"""Fidelity: how closely the synthetic table follows the real one, column by column and pair by pair.

Scores are 1 for identical distributions and lower as they drift apart, except the detection AUC, which is
0.5 when a classifier cannot tell real rows from synthetic ones and 1 when it always can.

- column shapes (as SDMetrics): KS complement for numeric and datetime columns, TV complement for categorical.
- column pair trends (as SDMetrics): correlation similarity 1 - |pearson_real - pearson_synthetic| / 2 for
  two numeric/datetime columns; contingency similarity 1 - TVD of the 2-D contingency table for two
  categorical columns, and for a categorical and a numeric one with the numeric discretised into 10
  equal-width bins over the real range.
- accuracy (as mostlyai-qa): 1 - TVD on discretised columns (numeric: 10 quantile bins of the real data;
  categorical: the 10 most frequent real categories plus "other"), for every column (univariate) and every
  pair (bivariate); `accuracy` is the mean of the two averages.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pandas as pd

from synthlake.evaluation.base import (
    Direction,
    Discretizer,
    FeatureEncoder,
    Metric,
    is_continuous,
    joint_codes,
    openmp_threads,
    pair_tvd,
    to_float,
    tvd,
)
from synthlake.metadata import ColumnKind, TableMetadata

# --- column shapes -----------------------------------------------------------------------------------------


def ks_complement(real: pd.Series, synthetic: pd.Series) -> float:
    """1 - the Kolmogorov-Smirnov statistic between the two empirical distributions (nulls ignored)."""
    a, b = to_float(real), to_float(synthetic)
    a, b = a[~np.isnan(a)], b[~np.isnan(b)]
    if a.size == 0 or b.size == 0:
        return float(a.size == b.size)
    grid = np.union1d(a, b)
    cdf_a = np.searchsorted(np.sort(a), grid, side="right") / a.size
    cdf_b = np.searchsorted(np.sort(b), grid, side="right") / b.size
    return float(1 - np.abs(cdf_a - cdf_b).max())


def tv_complement(real: pd.Series, synthetic: pd.Series) -> float:
    """1 - the total variation distance between category frequencies. A null counts as a category, so a wrong
    missing rate lowers the score (SDMetrics drops nulls first: the two agree when there are none)."""
    a, b = joint_codes(real, synthetic)
    return 1 - tvd(a, b)


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


# --- column pair trends ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PairTrend:
    column_1: str
    column_2: str
    metric: str  # correlation_similarity or contingency_similarity
    score: float  # nan when undefined (a constant column)
    real_correlation: float | None = None  # correlation_similarity only
    synthetic_correlation: float | None = None


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson's r over the rows where both values are present; nan for a constant (or empty) column."""
    keep = ~(np.isnan(x) | np.isnan(y))
    x, y = x[keep], y[keep]
    if x.size < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(np.clip(np.corrcoef(x, y)[0, 1], -1, 1))


def column_pair_trends(real: pd.DataFrame, synthetic: pd.DataFrame, metadata: TableMetadata) -> list[PairTrend]:
    """Every pair of learned columns, in metadata order: correlation similarity for two continuous columns,
    contingency similarity otherwise (a numeric column in a mixed pair in 10 equal-width real bins)."""
    specs = metadata.learned_columns
    bins = Discretizer(real, [s for s in specs if is_continuous(s)], bins=10, quantiles=False)
    real_codes, syn_codes, real_values, syn_values = {}, {}, {}, {}
    for spec in specs:
        if is_continuous(spec):
            real_values[spec.name], syn_values[spec.name] = to_float(real[spec.name]), to_float(synthetic[spec.name])
            real_codes[spec.name] = bins.codes(real, spec.name)
            syn_codes[spec.name] = bins.codes(synthetic, spec.name)
        else:
            real_codes[spec.name], syn_codes[spec.name] = joint_codes(real[spec.name], synthetic[spec.name])
    trends = []
    for a, b in itertools.combinations(specs, 2):
        if is_continuous(a) and is_continuous(b):
            r_real = pearson(real_values[a.name], real_values[b.name])
            r_syn = pearson(syn_values[a.name], syn_values[b.name])
            trends.append(PairTrend(a.name, b.name, "correlation_similarity", 1 - abs(r_real - r_syn) / 2,
                                    r_real, r_syn))
        else:
            score = 1 - pair_tvd(real_codes[a.name], real_codes[b.name], syn_codes[a.name], syn_codes[b.name])
            trends.append(PairTrend(a.name, b.name, "contingency_similarity", score))
    return trends


# --- accuracy ----------------------------------------------------------------------------------------------


def univariate_accuracies(real: pd.DataFrame, synthetic: pd.DataFrame, metadata: TableMetadata,
                          bins: int = 10, top: int = 10) -> dict[str, float]:
    """Per learned column: 1 - TVD of the discretised column (bins learned from `real`)."""
    disc = Discretizer(real, metadata.learned_columns, bins=bins, top=top)
    return {s.name: 1 - tvd(disc.codes(real, s.name), disc.codes(synthetic, s.name)) for s in disc.specs}


def bivariate_accuracies(real: pd.DataFrame, synthetic: pd.DataFrame, metadata: TableMetadata,
                         bins: int = 10, top: int = 10) -> dict[tuple[str, str], float]:
    """Per pair of learned columns: 1 - TVD of the 2-D table of the discretised columns."""
    disc = Discretizer(real, metadata.learned_columns, bins=bins, top=top)
    rc = {s.name: disc.codes(real, s.name) for s in disc.specs}
    sc = {s.name: disc.codes(synthetic, s.name) for s in disc.specs}
    return {(a.name, b.name): 1 - pair_tvd(rc[a.name], rc[b.name], sc[a.name], sc[b.name])
            for a, b in itertools.combinations(disc.specs, 2)}


def _mean(values) -> float:
    values = np.asarray(list(values), dtype=float)
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else float("nan")


# --- metrics -----------------------------------------------------------------------------------------------


class _Fidelity(Metric):
    family: ClassVar[str] = "fidelity"
    direction: ClassVar[Direction] = Direction.MAXIMIZE


class ColumnShapes(_Fidelity):
    """Mean over learned columns of the KS complement (numeric, datetime) or TV complement (categorical)."""

    name = "column_shapes"

    def _compute(self, real, synthetic, metadata, *, seed, **context):
        return _mean(s.score for s in column_shapes(real, synthetic, metadata))


class ColumnPairTrends(_Fidelity):
    """Mean over pairs of learned columns of correlation similarity or contingency similarity (nan pairs,
    those with a constant column, are left out of the mean)."""

    name = "column_pair_trends"

    def _compute(self, real, synthetic, metadata, *, seed, **context):
        return _mean(t.score for t in column_pair_trends(real, synthetic, metadata))


class AccuracyUnivariate(_Fidelity):
    """Mean over learned columns of 1 - TVD on discretised values."""

    name = "accuracy_univariate"

    def _compute(self, real, synthetic, metadata, *, seed, **context):
        return _mean(univariate_accuracies(real, synthetic, metadata).values())


class AccuracyBivariate(_Fidelity):
    """Mean over pairs of learned columns of 1 - TVD of the discretised 2-D tables (nan with one column)."""

    name = "accuracy_bivariate"

    def _compute(self, real, synthetic, metadata, *, seed, **context):
        return _mean(bivariate_accuracies(real, synthetic, metadata).values())


class Accuracy(_Fidelity):
    """The mean of univariate and bivariate accuracy (univariate alone for a one-column table)."""

    name = "accuracy"

    def _compute(self, real, synthetic, metadata, *, seed, **context):
        uni = _mean(univariate_accuracies(real, synthetic, metadata).values())
        bi = _mean(bivariate_accuracies(real, synthetic, metadata).values())
        return _mean([uni, bi])


class DetectionAUC(Metric):
    """Cross-validated ROC AUC of a gradient-boosting classifier told to separate real rows (label 0) from
    synthetic ones (label 1), with equal numbers of each: 0.5 when it cannot, 1 when it always can.

    Folds are grouped by row value, so that a synthetic copy of a real row lands in the same fold as its
    original: otherwise the model would learn the copy's opposite label and score the original below 0.5.
    """

    name = "detection_auc"
    family = "fidelity"
    direction = Direction.TARGET
    target = 0.5

    def __init__(self, max_rows: int | None = -1, seed: int = 0, folds: int = 5, max_iter: int = 100,
                 threads: int | None = 1):
        super().__init__(max_rows, seed)
        self.folds, self.max_iter, self.threads = folds, max_iter, threads

    def _compute(self, real, synthetic, metadata, *, seed, **context):
        from sklearn.ensemble import HistGradientBoostingClassifier
        from sklearn.metrics import roc_auc_score
        from sklearn.model_selection import GroupKFold, cross_val_predict

        n = min(len(real), len(synthetic))
        if n < 2 * self.folds:
            return float("nan")
        real, synthetic = real.sample(n=n, random_state=seed), synthetic.sample(n=n, random_state=seed + 1)
        encoder = FeatureEncoder(real, metadata.learned_columns)
        x = np.vstack([encoder.transform(real), encoder.transform(synthetic)])
        y = np.r_[np.zeros(n, dtype=int), np.ones(n, dtype=int)]
        groups = pd.util.hash_pandas_object(pd.DataFrame(x), index=False).to_numpy()
        if np.unique(groups).size < self.folds:
            return 0.5  # (nearly) every row is the same: nothing to tell apart
        model = HistGradientBoostingClassifier(max_iter=self.max_iter, early_stopping=False,
                                               categorical_features=encoder.categorical_mask, random_state=seed)
        cv = GroupKFold(n_splits=self.folds, shuffle=True, random_state=seed)
        with openmp_threads(self.threads):
            proba = cross_val_predict(model, x, y, groups=groups, cv=cv, method="predict_proba")[:, 1]
        return float(roc_auc_score(y, proba))


FIDELITY_METRICS: tuple[type[Metric], ...] = (ColumnShapes, ColumnPairTrends, AccuracyUnivariate,
                                              AccuracyBivariate, Accuracy, DetectionAUC)

