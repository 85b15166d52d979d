"""Privacy: how much the synthetic table gives away about the real rows it was learned from.

Distances between rows are exact Gower distances over the learned columns (see `gower`): each column
contributes a value in [0, 1], the distance is their mean.

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

dcr_share and mia_auc read the same distances, from one pass over the synthetic rows against equal samples
of training and holdout rows (`record_distances`): through a `SharedWork`, an evaluation computes it once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pandas as pd

from synthlake.column_types import is_continuous, to_float
from synthlake.evaluation.base import (
    Direction,
    Discretizer,
    Metric,
    MetricResult,
    row_hashes,
    to_labels,
    tvd,
)
from synthlake.evaluation.gower import GowerEncoder, nearest
from synthlake.metadata import ColumnKind, ColumnSpec, TableMetadata


def _equal_samples(real: pd.DataFrame, holdout: pd.DataFrame, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    n = min(len(real), len(holdout))
    return real.sample(n=n, random_state=seed), holdout.sample(n=n, random_state=seed + 1)


@dataclass(frozen=True)
class RecordDistances:
    """Gower distances between the synthetic rows and equal samples of training and holdout rows."""

    to_train: np.ndarray  # each synthetic row's distance to its closest training row
    to_holdout: np.ndarray  # ... and to its closest holdout row
    train_to_synthetic: np.ndarray  # each sampled training row's distance to its closest synthetic row
    holdout_to_synthetic: np.ndarray  # ... and each sampled holdout row's


def record_distances(real: pd.DataFrame, synthetic: pd.DataFrame, holdout: pd.DataFrame, metadata: TableMetadata,
                     seed: int = 0) -> RecordDistances:
    """Closest-record distances both ways, with equal numbers of training and holdout rows (the larger side
    sampled down): one pass over each distance matrix."""
    real, holdout = _equal_samples(real, holdout, seed)
    encoder = GowerEncoder(real, metadata.learned_columns, holdout, synthetic)
    s = encoder.encode(synthetic)
    to_train, train_to_synthetic = nearest(encoder.encode(real), s)
    to_holdout, holdout_to_synthetic = nearest(encoder.encode(holdout), s)
    return RecordDistances(to_train[:, 0], to_holdout[:, 0], train_to_synthetic, holdout_to_synthetic)


def _record_distances(shared, real, synthetic, holdout, metadata, seed) -> RecordDistances:
    return shared.get("record distances", lambda: record_distances(real, synthetic, holdout, metadata, seed),
                      real, synthetic, holdout, metadata, seed=seed)


def dcr_share(to_train: np.ndarray, to_holdout: np.ndarray) -> float | None:
    """Share of synthetic rows closer to their closest training row than to their closest holdout row, ties
    counting half; None when the two arrays do not pair up (different lengths) or hold no finite pair."""
    t, h = np.asarray(to_train, dtype=float).ravel(), np.asarray(to_holdout, dtype=float).ravel()
    if t.size != h.size:
        return None
    keep = np.isfinite(t) & np.isfinite(h)
    t, h = t[keep], h[keep]
    if t.size == 0:
        return None
    return float(np.mean(t < h) + np.mean(t == h) / 2)


class _Privacy(Metric):
    family: ClassVar[str] = "privacy"


class ExactMatchShare(_Privacy):
    """Share of synthetic rows identical to some real training row over the learned columns."""

    name = "exact_match_share"
    meaning = "share of synthetic rows identical to a training row, 0 ideal"
    direction = Direction.MINIMIZE

    def _compute(self, real, synthetic, metadata, *, seed, **context):
        if len(synthetic) == 0:
            return float("nan")
        specs = metadata.learned_columns
        return float(np.isin(row_hashes(synthetic, specs), row_hashes(real, specs)).mean())


class DCRShare(_Privacy):
    """Share of synthetic rows closer to a training row than to a holdout row (ties half): 0.5 ideal.
    Details: `to_train` and `to_holdout`, each synthetic row's distance to its closest training and holdout row
    (the DCR histogram)."""

    name = "dcr_share"
    meaning = "share of synthetic rows closer to a training row than to a holdout row, 0.5 ideal"
    direction = Direction.TARGET
    target = 0.5
    requires = ("holdout",)

    def _compute(self, real, synthetic, metadata, *, seed, shared, holdout, **context):
        if len(synthetic) == 0 or min(len(real), len(holdout)) == 0:
            return MetricResult(float("nan"), {"to_train": np.empty(0), "to_holdout": np.empty(0)})
        d = _record_distances(shared, real, synthetic, holdout, metadata, seed)
        return self.from_distances(d.to_train, d.to_holdout)

    @staticmethod
    def from_distances(to_train: np.ndarray, to_holdout: np.ndarray) -> MetricResult:
        share = dcr_share(to_train, to_holdout)
        return MetricResult(float("nan") if share is None else share,
                            {"to_train": to_train, "to_holdout": to_holdout})


class NNDR(_Privacy):
    """Mean over synthetic rows of (distance to the closest training row) / (to the second closest). Details:
    `ratios`, each synthetic row's ratio. Its distances are to every training row, with the CDFs of all of
    them: not dcr_share's equal samples."""

    name = "nndr"
    meaning = "mean nearest / second-nearest training distance ratio, higher is safer"
    direction = Direction.MAXIMIZE

    def _compute(self, real, synthetic, metadata, *, seed, **context):
        if len(real) < 2 or len(synthetic) == 0:
            return float("nan")
        encoder = GowerEncoder(real, metadata.learned_columns, synthetic)
        d, _ = nearest(encoder.encode(real), encoder.encode(synthetic), k=2)
        ratio = np.divide(d[:, 0], d[:, 1], out=np.zeros(len(d)), where=d[:, 1] > 0)
        return MetricResult(float(ratio.mean()), {"ratios": ratio})


class MembershipInferenceAUC(_Privacy):
    """ROC AUC of a distance-to-closest-synthetic-record attack, members (training rows) against as many
    non-members (holdout rows): 0.5 ideal. Details: `members` and `non_members`, each attacked row's distance
    to its closest synthetic row."""

    name = "mia_auc"
    meaning = "AUC of a membership-inference attack, 0.5 = membership does not show"
    direction = Direction.TARGET
    target = 0.5
    requires = ("holdout",)

    def _compute(self, real, synthetic, metadata, *, seed, shared, holdout, **context):
        from sklearn.metrics import roc_auc_score

        if min(len(real), len(holdout)) == 0 or len(synthetic) == 0:
            return float("nan")
        d = _record_distances(shared, real, synthetic, holdout, metadata, seed)
        labels = np.r_[np.ones(len(d.train_to_synthetic)), np.zeros(len(d.holdout_to_synthetic))]
        value = roc_auc_score(labels, -np.r_[d.train_to_synthetic, d.holdout_to_synthetic])
        return MetricResult(value, {"members": d.train_to_synthetic, "non_members": d.holdout_to_synthetic})


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
    meaning = "smallest group sharing quasi-identifier values, higher is safer"
    direction = Direction.MAXIMIZE
    requires = ("quasi_identifiers",)

    def _compute(self, real, synthetic, metadata, *, seed, quasi_identifiers, **context):
        if len(synthetic) == 0:
            return float("nan")
        return float(np.bincount(_qi_groups(real, synthetic, metadata, _as_list(quasi_identifiers))).min())


class LDiversity(_Privacy):
    """The fewest distinct sensitive values within a quasi-identifier group (distinct l-diversity)."""

    name = "l_diversity"
    meaning = "fewest distinct sensitive values in a quasi-identifier group, higher is safer"
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
    meaning = "largest distance of a group's sensitive distribution from the table's, lower is safer"
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
    distinct row, found when some synthetic row equals it on all of the frame's columns; or a mapping of a
    column to the values planted in it, each distinct value one canary, found when some synthetic row holds it
    (compared as `planted` says). Any column may be named, identifiers and PII included. Reads the whole
    synthetic table unless given a `max_rows`: a canary that appears once must not be sampled away. The
    validate stage counts the same way on every staged row, with Spark, from `planted` and `share`."""

    name = "canary_share"
    meaning = "share of planted canaries found in the synthetic data, 0 ideal"
    direction = Direction.MINIMIZE
    requires = ("canaries",)
    default_max_rows = None

    @staticmethod
    def planted(canaries: Mapping[str, Iterable], metadata: TableMetadata) -> dict[str, np.ndarray]:
        """Each column's distinct canary values as its values compare: numeric and datetime columns as floats
        (datetimes as seconds since the epoch, UTC), any other column as strings."""
        out = {}
        for column, values in canaries.items():
            spec, values = _spec(metadata, column), pd.Series(list(values))
            compared = _compared(values, spec)
            if is_continuous(spec) and np.isnan(compared[values.notna().to_numpy()]).any():
                raise ValueError(f"canaries of {spec.kind.value} column {column!r} must be numbers or datetimes")
            out[column] = pd.unique(compared)
        return out

    @staticmethod
    def share(found: int, planted: int) -> float:
        return found / planted if planted else float("nan")

    def _compute(self, real, synthetic, metadata, *, seed, canaries, **context):
        if not isinstance(canaries, Mapping):
            rows = canaries.drop_duplicates()
            specs = [_spec(metadata, c) for c in rows.columns]
            _check_columns(specs, synthetic)
            found = np.isin(row_hashes(rows, specs), row_hashes(synthetic, specs))
            return MetricResult(self.share(int(found.sum()), len(rows)), {"found": rows[found]})
        planted = self.planted(canaries, metadata)
        _check_columns([_spec(metadata, c) for c in planted], synthetic)
        found = {}
        for column, values in planted.items():
            held = _compared(synthetic[column], _spec(metadata, column))
            found[column] = values[pd.Series(values).isin(held).to_numpy()]  # hashed: the table may be large
        count = sum(len(v) for v in found.values())
        return MetricResult(self.share(count, sum(len(v) for v in planted.values())), {"found": found})


def _compared(values: pd.Series, spec: ColumnSpec) -> np.ndarray:
    """Canaries as their column compares; one that does not convert is nan (planted() refuses it by name)."""
    if not is_continuous(spec):
        return to_labels(values).to_numpy()
    return to_float(values, datetime=spec.kind == ColumnKind.DATETIME, errors="coerce")


def _check_columns(specs: list[ColumnSpec], synthetic: pd.DataFrame) -> None:
    absent = [s.name for s in specs if s.name not in synthetic.columns]
    if absent:
        raise ValueError(f"canary columns {absent} are not in the synthetic table")


PRIVACY_METRICS: tuple[type[Metric], ...] = (ExactMatchShare, DCRShare, NNDR, MembershipInferenceAUC, KAnonymity,
                                             LDiversity, TCloseness, CanaryShare)

