"""Privacy: how much the synthetic table gives away about the real rows it was learned from.

Distances between rows are Gower distances over the learned columns: each column contributes a value in
[0, 1] and the distance is their mean. A numeric or datetime column contributes |F(x) - F(y)|, with F the
real training data's empirical CDF (mid-ranks, linear between observed values, flat beyond the real range:
a value past the real maximum is as close as the maximum, which errs on the side of privacy), so an outlier
does not dwarf the other columns; a categorical column contributes 0 for equal values and 1 otherwise; a null is a
value of its own (null and null: 0; null and a value: 1). They are computed exactly, in chunks: the categorical
mismatches as one matrix product of one-hot blocks, the numeric terms column by column (several times faster
than a nearest-neighbour index over the mixed encoding, whose dimension the one-hot columns inflate).

Record-level metrics (against the real training rows `real`, and the holdout the generator never saw):
- exact_match_share: share of synthetic rows identical to some training row (0 ideal).
- dcr_share: share of synthetic rows closer to a training row than to a holdout row (ties count half), with
  equal numbers of training and holdout rows: 0.5 ideal, 1 when the synthetic rows copy the training rows.
- nndr: mean over synthetic rows of the nearest-neighbour distance ratio d1 / d2, the Gower distance to the
  closest training row over that to the second closest (0 / 0 counts as 0): near 0 when synthetic rows sit
  on top of single training rows, higher is safer.
- mia_auc: a membership-inference attack that scores each real row by minus its distance to the closest
  synthetic row and guesses "member" for high scores; its ROC AUC on training rows (members) against as many
  holdout rows (non-members): 0.5 ideal, 1 when membership shows.
Group-level metrics on the synthetic table, over the quasi-identifiers (numeric ones generalised into 10
quantile bins of the real data) and a sensitive column:
- k_anonymity: the size of the smallest quasi-identifier group (higher is safer).
- l_diversity: the fewest distinct sensitive values in a group (a numeric sensitive column in 10 quantile
  bins of the real data; higher is safer).
- t_closeness: the largest distance between a group's sensitive distribution and the whole table's: TVD for a
  categorical column, the earth mover's distance on min-max normalised values for a numeric one (lower is
  safer).
- canary_share: the share of planted canaries (rows or values) that appear in the synthetic table (0 ideal).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pandas as pd

from synthlake.evaluation.base import (
    Direction,
    Discretizer,
    Metric,
    is_continuous,
    row_hashes,
    to_float,
    to_labels,
    tvd,
)
from synthlake.metadata import ColumnKind, ColumnSpec, TableMetadata


@dataclass(frozen=True)
class Encoded:
    """Rows ready for Gower distances: CDF positions (nan for null) and one-hot categories, one block each."""

    cdf: np.ndarray  # (rows, numeric columns), float64
    onehot: np.ndarray  # (rows, all categories of all categorical columns), float32 0/1
    columns: int  # learned columns, numeric and categorical

    def __len__(self) -> int:
        return self.cdf.shape[0]


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
        cdf, onehot = [], []
        for spec in self.specs:
            if is_continuous(spec):
                values, positions = self.cdf[spec.name]
                x = to_float(frame[spec.name])
                f = np.interp(x, values, positions) if values.size else np.zeros_like(x)
                cdf.append(np.where(np.isnan(x), np.nan, f))
            else:
                cats = self.categories[spec.name]
                codes = cats.get_indexer(to_labels(frame[spec.name]))
                block = np.zeros((len(frame), len(cats) + 1), dtype=np.float32)
                block[np.arange(len(frame)), np.where(codes < 0, len(cats), codes)] = 1  # unseen: a column of its own
                onehot.append(block)
        return Encoded(np.column_stack(cdf) if cdf else np.empty((len(frame), 0)),
                       np.hstack(onehot) if onehot else np.empty((len(frame), 0), dtype=np.float32),
                       len(self.specs))

    def distances(self, a: pd.DataFrame, b: pd.DataFrame) -> np.ndarray:
        """The full matrix of Gower distances between the rows of two (small) frames."""
        return _gower(self.encode(a), self.encode(b), slice(None))


def _gower(queries: Encoded, reference: Encoded, rows: slice) -> np.ndarray:
    """Gower distances from queries[rows] to every reference row. Categorical mismatches come from one
    matrix product of the one-hot blocks (exact: sums of 0/1), numeric terms column by column."""
    n_cat = queries.columns - queries.cdf.shape[1]
    d = np.zeros((len(queries.cdf[rows]), len(reference)))
    if queries.onehot.shape[1]:
        d += n_cat - (queries.onehot[rows] @ reference.onehot.T)
    for j in range(queries.cdf.shape[1]):
        a, b = queries.cdf[rows, j], reference.cdf[:, j]
        term = np.abs(a[:, None] - b[None, :])
        a_null, b_null = np.isnan(a), np.isnan(b)
        if a_null.any() or b_null.any():
            term[np.isnan(term)] = 1.0  # a value and a null
            term[np.outer(a_null, b_null)] = 0.0  # two nulls
        d += term
    return d / max(queries.columns, 1)


def _nearest(reference: Encoded, queries: Encoded, k: int = 1, chunk: int = 1 << 22) -> np.ndarray:
    """The k smallest Gower distances from each query row to the reference rows, ascending (exact, computed
    in chunks of about `chunk` distances to bound memory)."""
    out = np.empty((len(queries), k))
    step = max(1, chunk // max(len(reference), 1))
    for start in range(0, len(queries), step):
        rows = slice(start, start + step)
        d = _gower(queries, reference, rows)
        if len(reference) > k:
            d = np.partition(d, k - 1, axis=1)[:, :k]
        out[rows] = np.sort(d, axis=1)
    return out


def _equal_samples(real: pd.DataFrame, holdout: pd.DataFrame, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    n = min(len(real), len(holdout))
    return real.sample(n=n, random_state=seed), holdout.sample(n=n, random_state=seed + 1)


def dcr(real: pd.DataFrame, synthetic: pd.DataFrame, holdout: pd.DataFrame, metadata: TableMetadata,
        seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Each synthetic row's Gower distance to the closest training row and to the closest holdout row, with
    equal numbers of training and holdout rows (the larger side sampled down). For the DCR histogram."""
    real, holdout = _equal_samples(real, holdout, seed)
    encoder = GowerEncoder(real, metadata.learned_columns, holdout, synthetic)
    s = encoder.encode(synthetic)
    return _nearest(encoder.encode(real), s)[:, 0], _nearest(encoder.encode(holdout), s)[:, 0]


class _Privacy(Metric):
    family: ClassVar[str] = "privacy"


class ExactMatchShare(_Privacy):
    """Share of synthetic rows identical to some real training row over the learned columns."""

    name = "exact_match_share"
    direction = Direction.MINIMIZE

    def _compute(self, real, synthetic, metadata, *, seed, **context):
        if len(synthetic) == 0:
            return float("nan")
        specs = metadata.learned_columns
        return float(np.isin(row_hashes(synthetic, specs), row_hashes(real, specs)).mean())


class DCRShare(_Privacy):
    """Share of synthetic rows closer to a training row than to a holdout row (ties half): 0.5 ideal."""

    name = "dcr_share"
    direction = Direction.TARGET
    target = 0.5
    requires = ("holdout",)

    def _compute(self, real, synthetic, metadata, *, seed, holdout, **context):
        if len(synthetic) == 0 or min(len(real), len(holdout)) == 0:
            return float("nan")
        to_train, to_holdout = dcr(real, synthetic, holdout, metadata, seed)
        return float(np.mean(to_train < to_holdout) + np.mean(to_train == to_holdout) / 2)


class NNDR(_Privacy):
    """Mean over synthetic rows of (distance to the closest training row) / (to the second closest)."""

    name = "nndr"
    direction = Direction.MAXIMIZE

    def _compute(self, real, synthetic, metadata, *, seed, **context):
        if len(real) < 2 or len(synthetic) == 0:
            return float("nan")
        encoder = GowerEncoder(real, metadata.learned_columns, synthetic)
        d = _nearest(encoder.encode(real), encoder.encode(synthetic), k=2)
        ratio = np.divide(d[:, 0], d[:, 1], out=np.zeros(len(d)), where=d[:, 1] > 0)
        return float(ratio.mean())


class MembershipInferenceAUC(_Privacy):
    """ROC AUC of a distance-to-closest-synthetic-record attack, members (training rows) against as many
    non-members (holdout rows): 0.5 ideal."""

    name = "mia_auc"
    direction = Direction.TARGET
    target = 0.5
    requires = ("holdout",)

    def _compute(self, real, synthetic, metadata, *, seed, holdout, **context):
        from sklearn.metrics import roc_auc_score

        members, non_members = _equal_samples(real, holdout, seed)
        if len(members) == 0 or len(synthetic) == 0:
            return float("nan")
        encoder = GowerEncoder(members, metadata.learned_columns, non_members, synthetic)
        s = encoder.encode(synthetic)
        d_members = _nearest(s, encoder.encode(members))[:, 0]
        d_non_members = _nearest(s, encoder.encode(non_members))[:, 0]
        labels = np.r_[np.ones(len(d_members)), np.zeros(len(d_non_members))]
        return float(roc_auc_score(labels, -np.r_[d_members, d_non_members]))


# --- group-level metrics on the synthetic table ------------------------------------------------------------


def _qi_groups(real: pd.DataFrame, synthetic: pd.DataFrame, metadata: TableMetadata,
               quasi_identifiers: list[str], bins: int = 10) -> np.ndarray:
    """One integer group id per synthetic row: its generalised quasi-identifier values."""
    specs = [_spec(metadata, name) for name in quasi_identifiers]
    disc = Discretizer(real, [s for s in specs if is_continuous(s)], bins=bins)
    keys = pd.DataFrame({s.name: disc.codes(synthetic, s.name) if is_continuous(s) else to_labels(synthetic[s.name])
                         for s in specs}, index=synthetic.index)
    return keys.groupby(list(keys.columns), sort=False, dropna=False).ngroup().to_numpy()


def _spec(metadata: TableMetadata, name: str) -> ColumnSpec:
    try:
        return metadata.column(name)
    except KeyError:
        return ColumnSpec(name=name, kind=ColumnKind.CATEGORICAL)


def _as_list(value) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


class KAnonymity(_Privacy):
    """The size of the smallest group of synthetic rows sharing their (generalised) quasi-identifiers."""

    name = "k_anonymity"
    direction = Direction.MAXIMIZE
    requires = ("quasi_identifiers",)

    def _compute(self, real, synthetic, metadata, *, seed, quasi_identifiers, **context):
        if len(synthetic) == 0:
            return float("nan")
        return float(np.bincount(_qi_groups(real, synthetic, metadata, _as_list(quasi_identifiers))).min())


class LDiversity(_Privacy):
    """The fewest distinct sensitive values within a quasi-identifier group (distinct l-diversity)."""

    name = "l_diversity"
    direction = Direction.MAXIMIZE
    requires = ("quasi_identifiers", "sensitive")

    def _compute(self, real, synthetic, metadata, *, seed, quasi_identifiers, sensitive, **context):
        if len(synthetic) == 0:
            return float("nan")
        groups = _qi_groups(real, synthetic, metadata, _as_list(quasi_identifiers))
        spec = _spec(metadata, sensitive)
        values = (Discretizer(real, [spec]).codes(synthetic, sensitive) if is_continuous(spec)
                  else to_labels(synthetic[sensitive]).to_numpy())
        return float(pd.Series(values).groupby(groups).nunique().min())


class TCloseness(_Privacy):
    """The largest distance between a quasi-identifier group's sensitive distribution and the table's."""

    name = "t_closeness"
    direction = Direction.MINIMIZE
    requires = ("quasi_identifiers", "sensitive")

    def _compute(self, real, synthetic, metadata, *, seed, quasi_identifiers, sensitive, **context):
        from scipy.stats import wasserstein_distance

        if len(synthetic) == 0:
            return float("nan")
        groups = _qi_groups(real, synthetic, metadata, _as_list(quasi_identifiers))
        spec = _spec(metadata, sensitive)
        if not is_continuous(spec):
            codes, _ = pd.factorize(to_labels(synthetic[sensitive]))
            return max(tvd(codes[groups == g], codes) for g in np.unique(groups))
        x = to_float(synthetic[sensitive])
        keep = ~np.isnan(x)
        x, groups = x[keep], groups[keep]
        if x.size == 0 or np.ptp(x) == 0:
            return 0.0
        x = (x - x.min()) / np.ptp(x)
        return max(float(wasserstein_distance(x[groups == g], x)) for g in np.unique(groups))


class CanaryShare(_Privacy):
    """The share of planted canaries found in the synthetic table. `canaries` is a DataFrame, one canary per
    row, found when some synthetic row equals it on all of the frame's columns; or a mapping of a column to
    the canary values planted in it, each found when some synthetic row holds it. Any column may be named,
    identifiers and PII included. Reads the whole synthetic table unless given a `max_rows`: a canary that
    appears once must not be sampled away."""

    name = "canary_share"
    direction = Direction.MINIMIZE
    requires = ("canaries",)
    default_max_rows = None

    def _compute(self, real, synthetic, metadata, *, seed, canaries, **context):
        frames = ([pd.DataFrame({column: list(values)}) for column, values in canaries.items()]
                  if isinstance(canaries, Mapping) else [canaries])
        found = []
        for frame in frames:
            specs = [_spec(metadata, c) for c in frame.columns]
            absent = [s.name for s in specs if s.name not in synthetic.columns]
            if absent:
                raise ValueError(f"canary columns {absent} are not in the synthetic table")
            found.append(np.isin(row_hashes(frame, specs), row_hashes(synthetic, specs)))
        found = np.concatenate(found) if found else np.array([])
        return float(found.mean()) if found.size else float("nan")


PRIVACY_METRICS: tuple[type[Metric], ...] = (ExactMatchShare, DCRShare, NNDR, MembershipInferenceAUC, KAnonymity,
                                             LDiversity, TCloseness, CanaryShare)

