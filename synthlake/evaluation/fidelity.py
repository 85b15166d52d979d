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

Column pair trends also carry the association matrices the report draws (Pearson's r, Cramér's V, the
correlation ratio): the same pairs, a measure a reader knows.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pandas as pd

from synthlake.column_types import is_continuous, to_float
from synthlake.evaluation.base import (
    Direction,
    Discretizer,
    FeatureEncoder,
    Metric,
    MetricResult,
    joint_codes,
    openmp_threads,
    pair_tvd,
    to_labels,
    tvd,
)
from synthlake.metadata import ColumnKind, ColumnSpec, TableMetadata

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


@dataclass(frozen=True)
class Associations:
    """Association matrices of the real and the synthetic rows over the same columns (`association_matrix`)."""

    columns: list[str]
    real: np.ndarray
    synthetic: np.ndarray


def association_matrix(frame: pd.DataFrame, specs: list[ColumnSpec]) -> np.ndarray:
    """Pairwise association of the columns: Pearson's r for two numeric/datetime columns (signed, -1..1),
    Cramér's V for two categorical ones and the correlation ratio η for a categorical and a numeric one
    (both 0..1). Nulls: a category of their own for categorical columns, left out for numeric ones. nan where
    undefined (a constant column)."""
    cont, codes = {}, {}
    for spec in specs:
        if is_continuous(spec):
            cont[spec.name] = to_float(frame[spec.name])
        else:
            codes[spec.name] = pd.factorize(to_labels(frame[spec.name]))[0]
    n = len(specs)
    out = np.eye(n)
    for i, a in enumerate(specs):
        if a.name in cont and _constant(cont[a.name]):
            out[i, i] = np.nan
        for j in range(i + 1, n):
            b = specs[j]
            if a.name in cont and b.name in cont:
                v = pearson(cont[a.name], cont[b.name])
            elif a.name in codes and b.name in codes:
                v = _cramers_v(codes[a.name], codes[b.name])
            else:
                x, c = (cont[a.name], codes[b.name]) if a.name in cont else (cont[b.name], codes[a.name])
                v = _correlation_ratio(c, x)
            out[i, j] = out[j, i] = v
    return out


def _constant(x: np.ndarray) -> bool:
    x = x[~np.isnan(x)]
    return x.size < 2 or np.ptp(x) == 0


def _cramers_v(a: np.ndarray, b: np.ndarray) -> float:
    if a.size == 0:
        return float("nan")
    ka, kb = int(a.max()) + 1, int(b.max()) + 1
    if min(ka, kb) < 2:
        return float("nan")
    table = np.bincount(a * kb + b, minlength=ka * kb).reshape(ka, kb).astype(float)
    n = table.sum()
    expected = np.outer(table.sum(1), table.sum(0)) / n
    chi2 = ((table - expected) ** 2 / np.where(expected > 0, expected, 1)).sum()
    return float(np.sqrt(min(chi2 / (n * (min(ka, kb) - 1)), 1.0)))


def _correlation_ratio(categories: np.ndarray, x: np.ndarray) -> float:
    keep = ~np.isnan(x)
    c, x = categories[keep], x[keep]
    if x.size < 2 or np.ptp(x) == 0:
        return float("nan")
    counts = np.bincount(c)
    sums = np.bincount(c, weights=x)
    present = counts > 0
    means = sums[present] / counts[present]
    between = (counts[present] * (means - x.mean()) ** 2).sum()
    total = ((x - x.mean()) ** 2).sum()
    return float(np.sqrt(min(between / total, 1.0)))


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
    """Mean over learned columns of the KS complement (numeric, datetime) or TV complement (categorical).
    Details: `shapes`, the ColumnShape of each column."""

    name = "column_shapes"
    meaning = "mean per-column similarity (KS / TV complement), 1 = identical"

    def _compute(self, real, synthetic, metadata, *, seed, **context):
        shapes = column_shapes(real, synthetic, metadata)
        return MetricResult(_mean(s.score for s in shapes), {"shapes": shapes})


class ColumnPairTrends(_Fidelity):
    """Mean over pairs of learned columns of correlation similarity or contingency similarity (nan pairs,
    those with a constant column, are left out of the mean). Details: `trends`, the PairTrend of each pair, and
    `associations`, the real and synthetic association matrices."""

    name = "column_pair_trends"
    meaning = "mean similarity of column-pair correlations / contingency tables, 1 = identical"

    def _compute(self, real, synthetic, metadata, *, seed, **context):
        trends = column_pair_trends(real, synthetic, metadata)
        specs = metadata.learned_columns
        associations = Associations([s.name for s in specs], association_matrix(real, specs),
                                    association_matrix(synthetic, specs))
        return MetricResult(_mean(t.score for t in trends), {"trends": trends, "associations": associations})


def _univariate(shared, real, synthetic, metadata) -> dict[str, float]:
    return shared.get("univariate accuracies", lambda: univariate_accuracies(real, synthetic, metadata),
                      real, synthetic, metadata)


def _bivariate(shared, real, synthetic, metadata) -> dict[tuple[str, str], float]:
    return shared.get("bivariate accuracies", lambda: bivariate_accuracies(real, synthetic, metadata),
                      real, synthetic, metadata)


class AccuracyUnivariate(_Fidelity):
    """Mean over learned columns of 1 - TVD on discretised values. Details: `columns`, each column's score."""

    name = "accuracy_univariate"
    meaning = "1 - TVD of each discretised column"

    def _compute(self, real, synthetic, metadata, *, seed, shared, **context):
        scores = _univariate(shared, real, synthetic, metadata)
        return MetricResult(_mean(scores.values()), {"columns": scores})


class AccuracyBivariate(_Fidelity):
    """Mean over pairs of learned columns of 1 - TVD of the discretised 2-D tables (nan with one column).
    Details: `pairs`, each pair's score."""

    name = "accuracy_bivariate"
    meaning = "1 - TVD of each discretised column pair"

    def _compute(self, real, synthetic, metadata, *, seed, shared, **context):
        scores = _bivariate(shared, real, synthetic, metadata)
        return MetricResult(_mean(scores.values()), {"pairs": scores})


class Accuracy(_Fidelity):
    """The mean of univariate and bivariate accuracy (univariate alone for a one-column table). Details: the
    two, `univariate` and `bivariate`."""

    name = "accuracy"
    meaning = "1 - TVD of discretised columns and pairs, 1 = identical"

    def _compute(self, real, synthetic, metadata, *, seed, shared, **context):
        uni = _mean(_univariate(shared, real, synthetic, metadata).values())
        bi = _mean(_bivariate(shared, real, synthetic, metadata).values())
        return MetricResult(_mean([uni, bi]), {"univariate": uni, "bivariate": bi})


class DetectionAUC(Metric):
    """Cross-validated ROC AUC of a gradient-boosting classifier told to separate real rows (label 0) from
    synthetic ones (label 1), with equal numbers of each: 0.5 when it cannot, 1 when it always can.

    Folds are grouped by row value, so that a synthetic copy of a real row lands in the same fold as its
    original: otherwise the model would learn the copy's opposite label and score the original below 0.5.

    Details: `features`, what gives the synthetic rows away: every learned column with its permutation
    importance, most important first. A column's importance is how much the AUC drops when that column alone is
    shuffled (seeded) among the held-out rows of each fold, the fold's model unchanged: about 0 for a column the
    detector does not use, up to AUC - 0.5 for one it relies on alone. Held-out rows only (at most
    `explain_rows` a fold, a seeded choice), no model refitted: one prediction per fold of k copies of those
    rows, k the number of columns.
    """

    name = "detection_auc"
    meaning = "AUC of a classifier telling real from synthetic rows, 0.5 = indistinguishable"
    family = "fidelity"
    direction = Direction.TARGET
    target = 0.5

    def __init__(self, max_rows: int | None = -1, seed: int = 0, folds: int = 5, max_iter: int = 100,
                 threads: int | None = 1, explain_rows: int = 500):
        """`explain_rows`: held-out rows per fold that the feature importances are measured on."""
        super().__init__(max_rows, seed)
        self.folds, self.max_iter, self.threads, self.explain_rows = folds, max_iter, threads, explain_rows

    def _compute(self, real, synthetic, metadata, *, seed, **context):
        from sklearn.base import clone
        from sklearn.ensemble import HistGradientBoostingClassifier
        from sklearn.metrics import roc_auc_score
        from sklearn.model_selection import GroupKFold

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
        rng, k = np.random.default_rng(seed), x.shape[1]
        proba = np.empty(y.size)  # each row's probability of being synthetic, from the fold that held it out
        explained, shuffled = [], []  # held-out rows, and their probabilities with each column shuffled
        with openmp_threads(self.threads):
            for train, test in cv.split(x, y, groups):
                fitted = clone(model).fit(x[train], y[train])
                proba[test] = fitted.predict_proba(x[test])[:, 1]
                rows = np.sort(rng.permutation(test)[: self.explain_rows])
                stacked = np.tile(x[rows], (k, 1))  # copy j has column j shuffled
                for j in range(k):
                    stacked[j * rows.size:(j + 1) * rows.size, j] = rng.permutation(x[rows, j])
                explained.append(rows)
                shuffled.append(fitted.predict_proba(stacked)[:, 1].reshape(k, rows.size))
        rows, shuffled = np.concatenate(explained), np.hstack(shuffled)
        auc, base = float(roc_auc_score(y, proba)), float(roc_auc_score(y[rows], proba[rows]))
        drops = [(s.name, base - float(roc_auc_score(y[rows], shuffled[j]))) for j, s in enumerate(encoder.specs)]
        return MetricResult(auc, {"features": sorted(drops, key=lambda d: -d[1])})


FIDELITY_METRICS: tuple[type[Metric], ...] = (ColumnShapes, ColumnPairTrends, AccuracyUnivariate,
                                              AccuracyBivariate, Accuracy, DetectionAUC)

