"""The gates' metric names, checked against the metric registry.

Not in pipelines.config: importing the registry there made every stage depend on every metric, so that in
DVC a metric's edit re-ran profile and train. The CLI checks before Spark starts; the validate stage, which
imports the registry anyway, checks again for the jobs that Airflow and DVC start.
"""

from __future__ import annotations

from pipelines.config import ConfigError, params_file
from pipelines.context import RunContext
from synthlake.evaluation import metric_names


def check_metric_names(ctx: RunContext) -> None:
    """Every key of params.yaml's validate.thresholds and of the dataset config's thresholds is a metric."""
    known = metric_names()
    for path, key, thresholds in ((params_file(ctx.params_path), "validate.thresholds",
                                   ctx.params.validate_.thresholds),
                                  (ctx.config_path, "thresholds", ctx.dataset.thresholds)):
        unknown = sorted(set(thresholds) - set(known))
        if unknown:
            raise ConfigError(f"{path}: {key}: unknown metrics {unknown}; known: {known}")
