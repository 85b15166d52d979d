"""Check names become MLflow metric names that MLflow's own validation accepts, whatever the column names."""

from __future__ import annotations

import pytest
from mlflow.utils.validation import _validate_metric_name

from pipelines.tracking import metric_name


@pytest.mark.parametrize("check", [
    "column_shape:fill_inc_questionnaire_for_veteran's_admin", "rule #0 (inequality)", 'column_shape:a"b,c;d',
    "column_shape:âge moyen", "column_shape:dotted.name with spaces", "accuracy"])
def test_every_check_name_is_a_valid_mlflow_metric_name(check):
    name = metric_name(check)
    _validate_metric_name(name)
    assert name == check.replace(":", ".") or any(c in check for c in "'#()\",;")
