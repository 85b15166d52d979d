"""Differential privacy: the mechanisms the generators' preprocessing uses, and the budget accounting.

Neighbouring tables differ by adding or removing one row. A row touches exactly one bucket of each column's
histogram (a value bucket, the null bucket, or an out-of-grid bucket), so a histogram of counts has
L1-sensitivity 1 and the Laplace mechanism with scale 1/epsilon releases it epsilon-DP. Columns compose
(basic composition): the preprocessing epsilon is the sum of the columns' epsilons.

- `dp_numeric`: bounds from a noisy histogram over a fixed symmetric-log grid (half the column's epsilon),
  then a noisy histogram over a linear grid between those bounds, with a null bucket (the other half). Bin
  edges, within-bin knots and the null share are read off the noisy histogram: no real value is kept.
- `dp_categories`: noisy counts of the observed categories, a category kept only above the stability
  threshold tau = 1 + ln(1/delta)/epsilon, which makes releasing category names (epsilon, delta)-DP.
- `noise_multiplier` / `accountant_epsilon`: DP-SGD through Opacus' accountants ("rdp" or "prv").

With a unit of privacy (`privacy.unit`: the column naming whose rows they are), neighbours differ by one unit's
rows, at most `unit_rows` of them: every histogram's sensitivity is that k, its noise Laplace(k/epsilon), and the
category threshold grows to match (`category_threshold`).

Total: epsilon = sum of the preprocessing epsilons + the DP-SGD accountant's epsilon at its delta; delta =
the categorical columns' deltas + the DP-SGD delta.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from pydantic import ValidationError

from synthlake.metadata import PrivacyBudget

# the coarse grid: t = sign(x) log10(1 + |x|) in steps of 1/4 over [-12, 12] (values beyond: the end buckets)
LOG_STEP = 1 / 4
LOG_LIMIT = 12.0
FINE_BUCKETS = 256  # at most, in the linear grid between the DP bounds (fewer when the noise would swamp them)
_BOUNDS_FALSE_POSITIVE = 0.01  # an empty coarse bucket widens the bounds with at most this probability
_KNOWN_FALSE_POSITIVE = 0.05  # a null bucket appears from noise alone with at most this probability


# ---- the budget ----------------------------------------------------------------------------------------


def check_privacy(privacy: Any) -> dict[str, float] | None:
    """The privacy setting as {"epsilon", "delta"} (and "unit", "unit_rows" with a unit; None: no DP), checked
    by synthlake.metadata.PrivacyBudget; a ValueError names what is wrong."""
    if privacy is None:
        return None
    try:
        budget = PrivacyBudget.model_validate(privacy)
        return budget.model_dump(exclude=None if budget.unit else {"unit", "unit_rows"})  # a row is the unit
    except ValidationError as exc:
        wrong = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'privacy'}: {e['msg']}" for e in exc.errors())
        raise ValueError(f"privacy {privacy!r}: {wrong}") from None


@dataclass
class Budget:
    """How one (epsilon, delta) is spent: per column in preprocessing, the rest in DP-SGD."""

    epsilon: float
    delta: float
    column_epsilon: dict[str, float] = field(default_factory=dict)
    column_delta: dict[str, float] = field(default_factory=dict)
    sgd_epsilon: float = 0.0
    sgd_delta: float = 0.0
    units_epsilon: float = 0.0  # the noisy count of privacy units (with a unit column only)

    @property
    def preprocessing_epsilon(self) -> float:
        return sum(self.column_epsilon.values()) + self.units_epsilon


def split_budget(
    epsilon: float, delta: float, share: float, columns: list[str], categorical: list[str], units: bool = False
) -> Budget:
    """`share` of epsilon split evenly over `columns` (and the count of units, with `units`), the rest to DP-SGD;
    half of delta split evenly over the `categorical` columns (none: all of it to DP-SGD), the rest to DP-SGD."""
    if not 0 < share < 1:
        raise ValueError(f"the preprocessing share of epsilon must be in (0, 1), got {share}")
    parts = len(columns) + units
    pre = epsilon * share / max(1, parts)
    delta_pre = delta / 2 if categorical else 0.0
    return Budget(
        epsilon,
        delta,
        {c: pre for c in columns},
        {c: delta_pre / len(categorical) for c in categorical},
        epsilon - pre * parts,
        delta - delta_pre,
        pre if units else 0.0,
    )


# ---- mechanisms ----------------------------------------------------------------------------------------


def laplace_counts(counts: np.ndarray, epsilon: float, rng: np.random.Generator) -> np.ndarray:
    """A histogram of sensitivity 1 (one row touches one bucket) plus Laplace(1/epsilon) noise: epsilon-DP."""
    if epsilon <= 0:
        raise ValueError(f"epsilon must be > 0, got {epsilon}")
    counts = np.asarray(counts, dtype=float)
    return counts + rng.laplace(0.0, 1.0 / epsilon, counts.shape)


def category_threshold(epsilon: float, delta: float, unit_rows: int = 1) -> float:
    """tau = k (1 + ln(k/delta)/epsilon) for counts noised at Laplace(k/epsilon), where one unit adds at most k
    rows (k = 1: a row is the unit). A unit brings at most k categories absent without it, each of count <= k,
    each passing with probability <= exp(-(tau - k) epsilon / k) / 2 = delta / 2k: all of them, <= delta/2."""
    if not 0 < delta < 1:
        raise ValueError(f"delta must be in (0, 1), got {delta}")
    return unit_rows * (1.0 + math.log(unit_rows / delta) / epsilon)


def known_bucket_threshold(epsilon: float) -> float:
    """A noisy count above this is taken as a bucket that has rows (an empty one passes w.p. <= 5%/2)."""
    return math.log(1.0 / _KNOWN_FALSE_POSITIVE) / epsilon


@dataclass
class DPCategories:
    categories: list[str]  # kept, by noisy count (largest first), ties by name
    null: bool
    noisy_total: float  # the noisy row count: the sum of the clipped noisy counts


def dp_categories(
    labels: list[str | None] | np.ndarray,
    epsilon: float,
    delta: float,
    max_categories: int,
    rng: np.random.Generator,
    min_count: int = 1,
) -> DPCategories:
    """(epsilon, delta)-DP category selection: Laplace(1/epsilon) counts of the observed categories and of
    null; a category is kept above max(tau, min_count), at most `max_categories` of them."""
    values = np.asarray(labels, dtype=object)
    missing = np.array([v is None or (isinstance(v, float) and math.isnan(v)) for v in values], dtype=bool)
    names, counts = np.unique(values[~missing].astype(str), return_counts=True)
    return dp_categories_from_counts(names.tolist(), counts, int(missing.sum()), epsilon, delta, max_categories,
                                     rng, min_count)


def dp_categories_from_counts(
    names: list[str],
    counts: np.ndarray,
    nulls: int,
    epsilon: float,
    delta: float,
    max_categories: int,
    rng: np.random.Generator,
    min_count: int = 1,
    unit_rows: int = 1,
) -> DPCategories:
    """`dp_categories` from the exact counts of every observed category (sorted by name) and of nulls, as
    Spark aggregates give them; `unit_rows`: the most rows one privacy unit adds (the counts' sensitivity)."""
    noisy = laplace_counts(np.r_[np.asarray(counts, dtype=float), nulls], epsilon / unit_rows, rng)
    tau = max(category_threshold(epsilon, delta, unit_rows), float(min_count))
    order = sorted(zip(noisy[:-1].tolist(), list(names), strict=True), key=lambda cv: (-cv[0], cv[1]))
    kept = [name for count, name in order if count >= tau][:max_categories]
    null = bool(noisy[-1] > known_bucket_threshold(epsilon / unit_rows))
    return DPCategories(kept, null, float(np.clip(noisy, 0, None).sum()))


def symlog(x: np.ndarray) -> np.ndarray:
    return np.sign(x) * np.log10(1.0 + np.abs(x))


def symexp(t: np.ndarray) -> np.ndarray:
    return np.sign(t) * (10.0 ** np.abs(t) - 1.0)


def coarse_grid() -> np.ndarray:
    """The data-independent bucket edges of the coarse (bounds) histogram, in symlog space."""
    return np.arange(-LOG_LIMIT, LOG_LIMIT + LOG_STEP / 2, LOG_STEP)


class Histograms(Protocol):
    """The two histograms a numeric column's DP encoding reads: what an array gives (`ArrayHistograms`) or
    Spark aggregates (pipelines.encode). A row touches one bucket of each."""

    def coarse(self) -> np.ndarray:
        """Counts of the non-null values per bucket of `coarse_grid()` (symlog values clipped to the grid)."""

    def fine(self, lo: float, hi: float, buckets: int) -> tuple[np.ndarray, int]:
        """Counts of the non-null values, clipped to [lo, hi], per bucket of `buckets` equal-width buckets
        between them (`fine_bucket`); and the number of nulls."""


def coarse_bucket(x: np.ndarray) -> np.ndarray:
    """The coarse-grid bucket of each value."""
    t = np.clip(symlog(np.asarray(x, dtype=float)), -LOG_LIMIT, LOG_LIMIT - 1e-12)
    return np.searchsorted(coarse_grid(), t, side="right") - 1


def fine_bucket(x: np.ndarray, lo: float, hi: float, buckets: int) -> np.ndarray:
    """The equal-width bucket between lo and hi of each value, clipped to them."""
    grid = np.linspace(lo, hi, buckets + 1)
    return np.clip(np.searchsorted(grid, np.clip(x, lo, hi), side="right") - 1, 0, buckets - 1)


@dataclass
class ArrayHistograms:
    """`Histograms` of an array of values (NaN = null)."""

    x: np.ndarray

    def coarse(self) -> np.ndarray:
        present = self.x[~np.isnan(self.x)]
        return np.bincount(coarse_bucket(present), minlength=len(coarse_grid()) - 1)[: len(coarse_grid()) - 1]

    def fine(self, lo: float, hi: float, buckets: int) -> tuple[np.ndarray, int]:
        missing = np.isnan(self.x)
        return np.bincount(fine_bucket(self.x[~missing], lo, hi, buckets), minlength=buckets), int(missing.sum())


def dp_bounds(x: np.ndarray, epsilon: float, rng: np.random.Generator) -> tuple[float, float, float]:
    """epsilon-DP bounds of the non-null values x (see `dp_bounds_of`)."""
    return dp_bounds_of(ArrayHistograms(np.asarray(x, dtype=float)).coarse(), epsilon, rng)


def dp_bounds_of(counts: np.ndarray, epsilon: float, rng: np.random.Generator) -> tuple[float, float, float]:
    """epsilon-DP bounds from the coarse histogram: the outermost coarse-grid buckets whose noisy count passes
    a threshold that an empty bucket crosses with small probability (none: the largest noisy bucket); and
    the noisy count in the buckets that passed."""
    edges = coarse_grid()
    noisy = laplace_counts(counts, epsilon, rng)
    threshold = math.log(len(noisy) / _BOUNDS_FALSE_POSITIVE) / epsilon  # P(an empty bucket passes) <~ 1%
    passed = np.flatnonzero(noisy > threshold)
    lo_b, hi_b = (passed[0], passed[-1]) if passed.size else (int(np.argmax(noisy)),) * 2
    return float(symexp(edges[lo_b])), float(symexp(edges[hi_b + 1])), float(noisy[passed].sum())


@dataclass
class DPNumeric:
    lo: float
    hi: float
    null: bool
    noisy_total: float
    values: list[float] | None = None  # integers in [lo, hi] when there are at most max_bins of them
    edges: list[float] | None = None
    knots: list[list[float]] | None = None


def _inverse_cdf(grid: np.ndarray, mass: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Quantiles q of the distribution uniform within each grid bucket with these masses."""
    cdf = np.r_[0.0, np.cumsum(mass)]
    cdf /= cdf[-1]
    return np.interp(q, cdf, grid)


def dp_numeric(
    x: np.ndarray,
    epsilon: float,
    max_bins: int,
    n_knots: int,
    rng: np.random.Generator,
    integer: bool = False,
) -> DPNumeric:
    """epsilon-DP encoding of a numeric column (NaN = null): epsilon/2 for the bounds, epsilon/2 for a noisy
    histogram over F linear buckets between them plus a null bucket (values clipped to the bounds), F (8 to
    FINE_BUCKETS) chosen from the noisy row count so the clipped noise stays near 5% of the rows. Fine
    buckets whose noisy count does not clear ln(F) Laplace scales are taken as empty: the bins then span only
    where the noisy histogram shows rows. An integer column with at most `max_bins` integers in its bounds
    keeps them all as values (the set is data-independent given the bounds); otherwise `max_bins` quantile
    bins of the noisy histogram, each with `n_knots` within-bin quantiles of it."""
    return dp_numeric_of(ArrayHistograms(np.asarray(x, dtype=float)), epsilon, max_bins, n_knots, rng, integer)


def dp_numeric_of(
    histograms: Histograms,
    epsilon: float,
    max_bins: int,
    n_knots: int,
    rng: np.random.Generator,
    integer: bool = False,
) -> DPNumeric:
    """`dp_numeric` from a column's histograms (an array's, or Spark's aggregates)."""
    lo, hi, rows = dp_bounds_of(histograms.coarse(), epsilon / 2, rng)
    if integer:
        lo, hi = float(math.floor(lo)), float(math.ceil(hi))
    if hi <= lo:
        hi = lo + 1.0
    # as many fine buckets as keep the clipped noise (about scale/2 a bucket) near 5% of the rows
    fine = int(np.clip(0.1 * rows * epsilon / 2, 8, FINE_BUCKETS))
    grid = np.linspace(lo, hi, fine + 1)
    inside, nulls = histograms.fine(lo, hi, fine)
    noisy = laplace_counts(np.r_[inside, nulls], epsilon / 2, rng)
    null = bool(noisy[-1] > known_bucket_threshold(epsilon / 2))
    mass = np.where(noisy[:-1] > math.log(fine) / (epsilon / 2), noisy[:-1], 0.0)
    if mass.sum() <= 0:
        mass = np.ones(fine)
    result = DPNumeric(lo, hi, null, float(np.clip(noisy, 0, None).sum()))
    if integer and hi - lo + 1 <= max_bins:
        result.values = np.arange(lo, hi + 1).tolist()
        return result
    edges = _inverse_cdf(grid, mass, np.arange(1, max_bins) / max_bins)
    edges = np.unique(edges[(edges > lo) & (edges < hi)])
    if integer:  # integer values: bins with integer edges, none empty of integers
        edges = np.unique(np.floor(edges))
        edges = edges[(edges >= lo) & (edges < hi)]
    bounds = np.r_[lo, edges, hi]
    cdf = np.r_[0.0, np.cumsum(mass)] / mass.sum()
    at = np.interp(bounds, grid, cdf)  # the noisy CDF at the bin bounds
    q = np.linspace(0, 1, n_knots)
    knots = []
    for b in range(len(bounds) - 1):
        if at[b + 1] > at[b]:
            k = _inverse_cdf(grid, mass, at[b] + q * (at[b + 1] - at[b]))
            k = np.clip(k, bounds[b], bounds[b + 1])
        else:  # no noisy mass in the bin: uniform over it
            k = bounds[b] + q * (bounds[b + 1] - bounds[b])
        knots.append(np.maximum.accumulate(k).tolist())
    result.edges, result.knots = edges.tolist(), knots
    return result


# ---- DP-SGD accounting ---------------------------------------------------------------------------------


def accountant_epsilon(noise_multiplier: float, sample_rate: float, steps: int, delta: float, accountant: str) -> float:
    """The epsilon of `steps` Poisson-sampled Gaussian steps, by a fresh Opacus accountant."""
    from opacus.accountants import create_accountant

    acc = create_accountant(accountant)
    acc.history = [(noise_multiplier, sample_rate, steps)]
    return float(acc.get_epsilon(delta=delta))


def noise_multiplier(epsilon: float, delta: float, sample_rate: float, steps: int, accountant: str) -> float:
    """The smallest noise multiplier (to Opacus' tolerance) that keeps DP-SGD within (epsilon, delta); a
    ValueError naming them if none can."""
    from opacus.accountants.utils import get_noise_multiplier

    try:
        sigma = get_noise_multiplier(
            target_epsilon=epsilon,
            target_delta=delta,
            sample_rate=sample_rate,
            steps=steps,
            accountant=accountant,
            epsilon_tolerance=0.005,
        )
    except ValueError as exc:
        raise ValueError(
            f"DP-SGD cannot meet epsilon={epsilon:.4g}, delta={delta:.3g} with sample rate {sample_rate:.4g} "
            f"over {steps} steps ({exc}): raise epsilon, or lower epochs or batch_size"
        ) from None
    spent = accountant_epsilon(sigma, sample_rate, steps, delta, accountant)
    if not spent <= epsilon:
        raise ValueError(f"DP-SGD cannot meet epsilon={epsilon:.4g}, delta={delta:.3g} (reaches {spent:.4g})")
    return float(sigma)
