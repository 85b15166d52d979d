"""Evaluation metrics: fidelity, utility and privacy, each a small class behind one registry.

    from synthlake.evaluation import evaluate, get_metric
    get_metric("detection_auc").compute(real, synthetic, metadata, seed=7)
    evaluate(real, synthetic, metadata, holdout=holdout, quasi_identifiers=["age", "sex"], sensitive="income")

`real` is always the real training data; see `base` for the context a metric may need.
"""

from __future__ import annotations

import pandas as pd

from synthlake.evaluation.base import DEFAULT_MAX_ROWS, Direction, Metric, MissingContext, bounded
from synthlake.evaluation.fidelity import FIDELITY_METRICS
from synthlake.evaluation.privacy import PRIVACY_METRICS
from synthlake.evaluation.utility import UTILITY_METRICS
from synthlake.metadata import TableMetadata

METRICS: dict[str, type[Metric]] = {m.name: m for m in (*FIDELITY_METRICS, *UTILITY_METRICS, *PRIVACY_METRICS)}


def metric_names() -> list[str]:
    return list(METRICS)


def get_metric(name: str, **options) -> Metric:
    """An instance of the metric registered under `name` (options: max_rows, seed, and the metric's own)."""
    try:
        return METRICS[name](**options)
    except KeyError:
        raise KeyError(f"unknown metric '{name}': choose one of {metric_names()}") from None


def evaluate(real: pd.DataFrame, synthetic: pd.DataFrame, metadata: TableMetadata, names: list[str] | None = None,
             max_rows: int | None = DEFAULT_MAX_ROWS, **context) -> dict[str, float]:
    """Values of the named metrics, in order. Without names: every metric the context allows (those lacking a
    holdout, quasi-identifiers, canaries or a target are left out); a named one lacking them raises
    MissingContext. `max_rows` bounds what each metric reads (the canary check reads all rows)."""
    if names is None:
        names = [n for n, m in METRICS.items() if not m.missing_context(metadata, context)]
    results = {}
    for name in names:
        metric = get_metric(name)
        if metric.default_max_rows is not None:
            metric.max_rows = max_rows
        results[name] = metric.compute(real, synthetic, metadata, **context)
    return results


__all__ = ["DEFAULT_MAX_ROWS", "METRICS", "Direction", "Metric", "MissingContext", "bounded", "evaluate",
           "get_metric", "metric_names"]
