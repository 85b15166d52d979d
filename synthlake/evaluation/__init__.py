"""Evaluation metrics: fidelity, utility and privacy, each a small class behind one registry.

    from synthlake.evaluation import evaluate, get_metric
    get_metric("detection_auc").compute(real, synthetic, metadata, seed=7)
    get_metric("dcr_share").evaluate(real, synthetic, metadata, holdout=holdout).details["to_train"]
    evaluate(real, synthetic, metadata, holdout=holdout, quasi_identifiers=["age", "sex"], sensitive="income")

`real` is always the real training data; see `base` for the context a metric may need. Each metric class
says what it means (`meaning`); HEADLINE names the figures a run reports first.
"""

from __future__ import annotations

import pandas as pd

from synthlake.evaluation.base import (
    DEFAULT_MAX_ROWS,
    Direction,
    Metric,
    MetricResult,
    MissingContext,
    SharedWork,
    bounded,
)
from synthlake.evaluation.fidelity import FIDELITY_METRICS
from synthlake.evaluation.privacy import PRIVACY_METRICS
from synthlake.evaluation.utility import UTILITY_METRICS
from synthlake.metadata import TableMetadata

METRICS: dict[str, type[Metric]] = {m.name: m for m in (*FIDELITY_METRICS, *UTILITY_METRICS, *PRIVACY_METRICS)}
# The figures metrics.json, the audit row and the CLI summary show; the audit table has a column for each, in
# this order.
HEADLINE: tuple[str, ...] = ("accuracy", "column_shapes", "column_pair_trends", "detection_auc", "tstr", "trtr",
                             "utility_gap", "exact_match_share", "dcr_share", "mia_auc")


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
    """Values of the named metrics, in order (see `evaluate_results`)."""
    results = evaluate_results(real, synthetic, metadata, names, max_rows, **context)
    return {name: result.value for name, result in results.items()}


def evaluate_results(real: pd.DataFrame, synthetic: pd.DataFrame, metadata: TableMetadata,
                     names: list[str] | None = None, max_rows: int | None = DEFAULT_MAX_ROWS,
                     **context) -> dict[str, MetricResult]:
    """Results of the named metrics, in order, sharing their common work. Without names: every metric the
    context allows (those lacking a holdout, quasi-identifiers, canaries or a target are left out); a named one
    lacking them raises MissingContext. `max_rows` bounds what each metric reads (the canary check reads all
    rows)."""
    if names is None:
        names = [n for n, m in METRICS.items() if not m.missing_context(metadata, context)]
    shared, results = SharedWork(), {}
    for name in names:
        metric = get_metric(name)
        if metric.default_max_rows is not None:
            metric.max_rows = max_rows
        results[name] = metric.evaluate(real, synthetic, metadata, shared=shared, **context)
    return results


__all__ = ["DEFAULT_MAX_ROWS", "HEADLINE", "METRICS", "Direction", "Metric", "MetricResult", "MissingContext",
           "SharedWork", "bounded", "evaluate", "evaluate_results", "get_metric", "metric_names"]
