"""Drift between two distributions of one column, given as shares over the same bins.

The bins come from the reference (the champion's training rows): a categorical column's values plus one bin for
the rest, a continuous column's quantile edges plus a bin for nulls. Both sides' shares are counted exactly over
their rows; these functions only compare them.

- PSI (population stability index): sum over bins of (cur - ref) * ln(cur / ref); 0 when equal; by the
  usual rule of thumb, under 0.1 no change, over 0.25 a large one.
- Jensen-Shannon distance (base 2): the square root of the JS divergence, in [0, 1]; for categories.
- KS at the edges: the largest gap between the two cumulative shares at the reference's edges, in [0, 1]; the
  Kolmogorov-Smirnov statistic evaluated where the reference's quantiles lie (a lower bound of the full one).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SMOOTHING = 1e-4  # an empty bin on one side must not make PSI infinite


def _shares(values) -> np.ndarray:
    shares = np.asarray(values, dtype=float)
    if shares.ndim != 1 or len(shares) == 0 or (shares < 0).any():
        raise ValueError("shares must be a non-empty list of non-negative numbers")
    total = shares.sum()
    return shares / total if total > 0 else np.full(len(shares), 1.0 / len(shares))


def psi(reference, current) -> float:
    ref, cur = _shares(reference) + SMOOTHING, _shares(current) + SMOOTHING
    ref, cur = ref / ref.sum(), cur / cur.sum()
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def js_distance(reference, current) -> float:
    ref, cur = _shares(reference), _shares(current)
    mid = (ref + cur) / 2

    def kl(p: np.ndarray) -> float:
        nz = p > 0
        return float(np.sum(p[nz] * np.log2(p[nz] / mid[nz])))

    return float(np.sqrt(max(0.0, (kl(ref) + kl(cur)) / 2)))


def ks_at_edges(reference, current) -> float:
    """Bins in order (the last may be nulls: callers pass the non-null bins only)."""
    return float(np.max(np.abs(np.cumsum(_shares(reference)) - np.cumsum(_shares(current)))))


@dataclass(frozen=True)
class Thresholds:
    psi: float
    js: float  # categories
    ks: float  # continuous columns


def column_drift(reference, current, continuous: bool, limits: Thresholds, nulls: tuple[float, float] = (0.0, 0.0)
                 ) -> dict:
    """A column's scores and whether it drifted. `reference`, `current`: shares per bin (continuous: of the
    non-null values, bins in order); `nulls`: each side's null share, a bin of its own for PSI."""
    ref, cur = _shares(reference), _shares(current)
    with_nulls = (np.r_[ref * (1 - nulls[0]), nulls[0]], np.r_[cur * (1 - nulls[1]), nulls[1]])
    score = psi(*with_nulls)
    if continuous:
        distance, name, limit = ks_at_edges(ref, cur), "ks", limits.ks
    else:
        distance, name, limit = js_distance(*with_nulls), "js", limits.js
    return {"psi": round(score, 6), name: round(distance, 6),
            "drifted": bool(score > limits.psi or distance > limit)}
