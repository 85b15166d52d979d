"""Exact Gower distances between rows, and each row's nearest neighbours, in one compiled loop (numba).

A Gower distance is over the learned columns: each column contributes a value in [0, 1] and the distance is
their mean. A numeric or datetime column contributes |F(x) - F(y)|, with F the real training data's empirical
CDF (mid-ranks, linear between observed values, flat beyond the real range: a value past the real maximum is as
close as the maximum, which errs on the side of privacy), so an outlier does not dwarf the other columns; a
categorical column contributes 0 for equal values and 1 otherwise; a null is a value of its own (null and
null: 0; null and a value: 1).

The loop takes one query row at a time against every reference row, column by column: the row's distances
stay in cache and each column's pass is vectorised. That is about five times faster than matrices of distances
in numpy (memory-bound) and exact: the terms add up in column order, in float64, without fast-math.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from numba import njit

from synthlake.column_types import is_continuous, to_float
from synthlake.evaluation.base import to_labels
from synthlake.metadata import ColumnSpec

_JIT = {"cache": True, "nogil": True}  # no fastmath: it would reorder the sums and drop the nan tests


@dataclass(frozen=True)
class Encoded:
    """Rows ready for Gower distances, one array row per column (so that a column's pass reads contiguously)."""

    cdf: np.ndarray  # (numeric columns, rows) float64: CDF positions, nan for null
    codes: np.ndarray  # (categorical columns, rows) int64: category codes
    columns: int  # learned columns, numeric and categorical

    def __len__(self) -> int:
        return self.cdf.shape[1]


class GowerEncoder:
    """Encodes rows for exact Gower distances (see the module's docstring)."""

    def __init__(self, real: pd.DataFrame, specs: list[ColumnSpec], *others: pd.DataFrame):
        """The CDFs are the real rows'; the categories are those of all the frames (so that any two different
        values are 1 apart)."""
        self.specs = specs
        self.cdf: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self.categories: dict[str, pd.Index] = {}
        for spec in specs:
            if is_continuous(spec):
                x = np.sort(to_float(real[spec.name]))
                x = x[~np.isnan(x)]
                values, first = np.unique(x, return_index=True)
                counts = np.diff(np.r_[first, x.size])
                # mid-rank empirical CDF at each distinct value
                self.cdf[spec.name] = (values, (first + counts / 2) / max(x.size, 1))
            else:
                labels = pd.concat([to_labels(f[spec.name]) for f in (real, *others)], ignore_index=True)
                self.categories[spec.name] = pd.Index(pd.unique(labels))

    def encode(self, frame: pd.DataFrame) -> Encoded:
        cdf, codes = [], []
        for spec in self.specs:
            if is_continuous(spec):
                values, positions = self.cdf[spec.name]
                x = to_float(frame[spec.name])
                f = np.interp(x, values, positions) if values.size else np.zeros_like(x)
                cdf.append(np.where(np.isnan(x), np.nan, f))
            else:
                cats = self.categories[spec.name]
                found = cats.get_indexer(to_labels(frame[spec.name]))
                codes.append(np.where(found < 0, len(cats), found))  # a value none of the frames held: one code
        n = len(frame)
        return Encoded(np.array(cdf, dtype=np.float64).reshape(len(cdf), n),
                       np.array(codes, dtype=np.int64).reshape(len(codes), n), len(self.specs))

    def distances(self, a: pd.DataFrame, b: pd.DataFrame) -> np.ndarray:
        """The full matrix of Gower distances between the rows of two (small) frames."""
        queries, reference = self.encode(a), self.encode(b)
        out = np.empty((len(queries), len(reference)))
        _all_rows(queries.cdf, queries.codes, reference.cdf, reference.codes, queries.columns, out)
        return out


def nearest(reference: Encoded, queries: Encoded, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """The k smallest Gower distances from each query row to the reference rows, ascending (inf past the
    reference rows), and each reference row's smallest distance to the query rows."""
    out, back = np.empty((len(queries), k)), np.full(len(reference), np.inf)
    _nearest_rows(queries.cdf, queries.codes, reference.cdf, reference.codes, queries.columns, out, back)
    return out, back


def warm_up() -> None:
    """Loads the compiled loops (and numba's compiler, which imports much at its first call) on empty rows."""
    empty = Encoded(np.empty((0, 0)), np.empty((0, 0), dtype=np.int64), 0)
    nearest(empty, empty)


@njit(**_JIT)
def _row(q_cdf, q_codes, i, r_cdf, r_codes, columns, d):
    """d[j] = the Gower distance from query row i to reference row j."""
    d[:] = q_codes.shape[0]  # every categorical column differs, until a code matches
    for c in range(q_codes.shape[0]):
        q, ref = q_codes[c, i], r_codes[c]
        for j in range(d.size):
            d[j] -= 1.0 if ref[j] == q else 0.0
    for c in range(q_cdf.shape[0]):
        a, ref = q_cdf[c, i], r_cdf[c]
        if np.isnan(a):
            for j in range(d.size):
                d[j] += 0.0 if np.isnan(ref[j]) else 1.0
        else:
            for j in range(d.size):
                d[j] += 1.0 if np.isnan(ref[j]) else abs(a - ref[j])
    d /= max(columns, 1)


@njit(**_JIT)
def _nearest_rows(q_cdf, q_codes, r_cdf, r_codes, columns, out, back):
    d = np.empty(back.size)
    for i in range(out.shape[0]):
        _row(q_cdf, q_codes, i, r_cdf, r_codes, columns, d)
        for j in range(d.size):
            back[j] = min(back[j], d[j])
        for m in range(out.shape[1]):  # the m-th smallest: the smallest left, then rule it out
            best, at = np.inf, -1
            for j in range(d.size):
                if d[j] < best:
                    best, at = d[j], j
            out[i, m] = best
            if at >= 0:
                d[at] = np.inf


@njit(**_JIT)
def _all_rows(q_cdf, q_codes, r_cdf, r_codes, columns, out):
    for i in range(out.shape[0]):
        _row(q_cdf, q_codes, i, r_cdf, r_codes, columns, out[i])
