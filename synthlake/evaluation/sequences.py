"""How related tables compare with the real ones beyond each table's columns: sequence lengths (children per
parent) and within-sequence coherence (what follows what), on pandas frames with keys.

- `length_similarity`: 1 - the KS statistic between the real and synthetic numbers of children per parent
  (parents without children count as 0);
- `coherence`: per column, 1 - the total variation distance between the real and synthetic distributions of
  consecutive pairs (value at t, value at t + 1) within a sequence, numeric columns binned at the real deciles:
  the share of transitions the synthetic sequences get right (1 = identical);
- `autocorrelation`: the mean lag-1 autocorrelation of a numeric column within sequences (a real vs synthetic
  figure, for the report);
- `parent_child_trends`: how a parent's columns go with its children's aggregates (their count; the mean, first
  and last of each numeric column), the column-pair trends (synthlake.evaluation.fidelity) of each pair of a
  parent column and an aggregate, real against synthetic, averaged.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from synthlake.column_types import category_strings, to_float
from synthlake.evaluation.fidelity import column_pair_trends
from synthlake.metadata import ColumnKind, ColumnSpec, TableMetadata

NULL = "\x00null"  # a null value's label in a transition


def children_per_parent(parent_keys: pd.Series, child_keys: pd.Series) -> np.ndarray:
    counts = child_keys.value_counts()
    return parent_keys.map(counts).fillna(0).to_numpy(dtype=float)


def length_similarity(real: np.ndarray, synthetic: np.ndarray) -> float:
    if not len(real) or not len(synthetic):
        return float("nan")
    grid = np.union1d(real, synthetic)
    cdf_real = np.searchsorted(np.sort(real), grid, side="right") / len(real)
    cdf_syn = np.searchsorted(np.sort(synthetic), grid, side="right") / len(synthetic)
    return float(1.0 - np.abs(cdf_real - cdf_syn).max())


def coherence(real: pd.DataFrame, synthetic: pd.DataFrame, key: str, order_by: str,
              specs: list[ColumnSpec]) -> dict[str, float]:
    """Each column's consecutive-pair similarity (see the module), by column name."""
    real, synthetic = _ordered(real, key, order_by), _ordered(synthetic, key, order_by)
    scores = {}
    for spec in specs:
        labels = _labeller(real[spec.name], spec)
        pairs_real, pairs_syn = _pairs(real, key, labels(real[spec.name])), _pairs(synthetic, key,
                                                                                   labels(synthetic[spec.name]))
        if pairs_real.empty or pairs_syn.empty:
            scores[spec.name] = float("nan")
            continue
        p, q = pairs_real.value_counts(normalize=True), pairs_syn.value_counts(normalize=True)
        p, q = p.align(q, fill_value=0.0)
        scores[spec.name] = float(1.0 - 0.5 * np.abs(p - q).sum())
    return scores


def autocorrelation(rows: pd.DataFrame, key: str, order_by: str, column: str) -> float:
    """The mean over sequences (of 3 or more values that vary) of the lag-1 autocorrelation of `column`."""
    rows = _ordered(rows, key, order_by)
    x = pd.Series(to_float(rows[column]), index=rows.index)
    previous = x.groupby(rows[key]).shift(1)
    frame = pd.DataFrame({"key": rows[key], "x": x, "prev": previous}).dropna()
    values = [group["x"].corr(group["prev"]) for _, group in frame.groupby("key") if len(group) >= 2]
    values = [v for v in values if np.isfinite(v)]
    return float(np.mean(values)) if values else float("nan")


def parent_child_trends(real: tuple[pd.DataFrame, pd.DataFrame], synthetic: tuple[pd.DataFrame, pd.DataFrame],
                        key: str, parent_key: str, order_by: str | None, parent_specs: list[ColumnSpec],
                        child_specs: list[ColumnSpec]) -> float:
    """The mean column-pair trend (1 = the same) over (parent column, child aggregate) pairs; `real` and
    `synthetic` are (parents, their children) each."""
    numeric = [c.name for c in child_specs if c.kind == ColumnKind.NUMERIC]
    frames = [_with_aggregates(parents, children, key, parent_key, order_by, numeric)
              for parents, children in (real, synthetic)]
    aggregates = [c for c in frames[0].columns if c.startswith("children.")]
    metadata = TableMetadata(columns=[*parent_specs,
                                      *[ColumnSpec(name=a, kind=ColumnKind.NUMERIC) for a in aggregates]])
    parent_names = {c.name for c in parent_specs}
    scores = [t.score for t in column_pair_trends(frames[0], frames[1], metadata)
              if (t.column_1 in parent_names) != (t.column_2 in parent_names) and np.isfinite(t.score)]
    return float(np.mean(scores)) if scores else float("nan")


def _with_aggregates(parents: pd.DataFrame, children: pd.DataFrame, key: str, parent_key: str,
                     order_by: str | None, numeric: list[str]) -> pd.DataFrame:
    """`parents` with their children's count and each numeric column's mean, first and last (in order)."""
    rows = _ordered(children, key, order_by) if order_by else children
    groups = rows.groupby(key, sort=False)
    parts = {"children.count": groups.size()}
    for name in numeric:
        values = pd.Series(to_float(rows[name]), index=rows.index).groupby(rows[key].to_numpy())
        parts[f"children.mean.{name}"] = values.mean()
        if order_by:
            parts[f"children.first.{name}"], parts[f"children.last.{name}"] = values.first(), values.last()
    aggregates = pd.DataFrame(parts)
    out = parents.join(aggregates, on=parent_key)
    out["children.count"] = out["children.count"].fillna(0)
    return out


def _ordered(rows: pd.DataFrame, key: str, order_by: str) -> pd.DataFrame:
    return rows.sort_values([key, order_by], kind="stable").reset_index(drop=True)


def _labeller(real: pd.Series, spec: ColumnSpec):
    """Values to labels: categories as they are, numbers and datetimes by the real deciles' bins."""
    if spec.kind == ColumnKind.CATEGORICAL:
        return lambda values: category_strings(values, NULL)
    x = to_float(real)
    edges = np.unique(np.nanquantile(x, np.linspace(0.1, 0.9, 9))) if np.isfinite(x).any() else np.array([])

    def labels(values: pd.Series) -> pd.Series:
        v = to_float(values)
        bins = np.searchsorted(edges, v, side="left").astype(str)
        return pd.Series(np.where(np.isnan(v), NULL, bins), dtype=object)

    return labels


def _pairs(rows: pd.DataFrame, key: str, labels: pd.Series) -> pd.Series:
    """`a -> b` for each consecutive pair of rows within a sequence."""
    following = labels.groupby(rows[key].to_numpy()).shift(-1)
    keep = following.notna()
    return labels[keep] + " -> " + following[keep]
