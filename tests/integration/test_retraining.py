"""Retraining only when it is needed, through the real stages (Spark, Delta, MLflow) on one dataset whose source
file a test rewrites: the first run trains; an unchanged source and a changed but not drifted one reuse the
champion (no new model version); a drifted column retrains and names the column; a failing gate is recovered by
the ladder's next step or, when no step passes, nothing is published and the error names every attempt.

The tests run in order and share the MLflow store and the lake, as a dataset's nightly runs do.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import yaml
from mlflow import MlflowClient
from project_fixture import make_project, spark_session

from pipelines import check, profile, publish, retrain, sample, train, validate
from pipelines.context import RunContext, StageError
from pipelines.records import AttemptsRecord, CheckRecord, TrainRecord
from pipelines.validate import GateFailed

pytestmark = pytest.mark.slow
COLUMNS = [{"name": "age", "kind": "numeric", "integer": True}, {"name": "weekly_hours", "kind": "numeric"},
           {"name": "job", "kind": "categorical"}, {"name": "label", "kind": "categorical"}]
STAGES = (profile, check, train, sample, validate, publish)


def people(n: int = 1500, seed: int = 1, age_shift: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    job = rng.choice(["clerk", "nurse", "engineer", "driver"], n, p=[0.4, 0.3, 0.2, 0.1])
    age = rng.integers(18, 70, n) + age_shift
    hours = np.round(np.where(job == "engineer", 45, 38) + rng.normal(0, 4, n), 1)
    label = np.where((age > 45) & (job != "driver"), "yes", "no")
    return pd.DataFrame({"age": age, "weekly_hours": hours, "job": job, "label": label})


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = make_project(tmp_path_factory.mktemp("retraining"), params={
        "rows": 600, "train": {"num_processes": 1}, "sample": {"partitions": 2, "block_rows": 300}})
    config = {"name": "staff", "source": {"path": "staff.parquet", "format": "parquet"}, "target": "label",
              "generator": "tabular_ar", "columns": COLUMNS, "hyper": {"epochs": 3},
              "output": {"staging": "staff_staging", "published": "staff"}}
    (root / "conf" / "datasets" / "staff.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    people().to_parquet(root / "staff.parquet")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SYNTHLAKE_HOME", str(root))
        yield root


@pytest.fixture(scope="module")
def spark(project):
    session = spark_session("synthlake-retraining-tests")
    yield session
    session.stop()


def context(project, run_id: str, **overrides) -> RunContext:
    return RunContext.open(str(project / "conf" / "datasets" / "staff.yaml"), run_id, **overrides)


def run_all(ctx: RunContext, spark) -> None:
    for stage in STAGES:
        stage.run(ctx, spark)


def versions(ctx: RunContext) -> int:
    return len(MlflowClient().search_model_versions(f"name = '{ctx.model_name}'"))


def champion(ctx: RunContext) -> str:
    return str(MlflowClient().get_model_version_by_alias(ctx.model_name, "champion").version)


def audit(ctx: RunContext, spark) -> dict:
    return spark.read.format("delta").load(ctx.table_path("audit")).where(f"run_id = '{ctx.run_id}'").first()


def test_the_first_run_trains_and_its_model_becomes_the_champion(project, spark):
    ctx = context(project, "night-1")
    run_all(ctx, spark)
    decided = ctx.store.read(CheckRecord)
    assert decided.decision == "train" and "no champion" in decided.reason and decided.champion is None
    trained = ctx.store.read(TrainRecord)
    assert not trained.reused and trained.epochs >= 1
    assert champion(ctx) == trained.model_version and versions(ctx) == 1
    assert audit(ctx, spark)["retrain_decision"] == "train"


def test_an_unchanged_source_reuses_the_champion_for_new_rows(project, spark):
    ctx = context(project, "night-2", seed=99)
    run_all(ctx, spark)
    decided, trained = ctx.store.read(CheckRecord), ctx.store.read(TrainRecord)
    assert decided.decision == "reuse" and "unchanged" in decided.reason and decided.drift == {}
    assert trained.reused and trained.model_version == champion(ctx) == "1" and versions(ctx) == 1
    assert (ctx.store.path("model") / "generator.json").is_file()  # the champion's files, for DVC
    first = context(project, "night-1").read_partition(spark, "published").drop("run_id").toPandas()
    second = ctx.read_partition(spark, "published").drop("run_id").toPandas()
    assert len(second) == 600 and not first.equals(second)  # another seed, other rows, the same model
    row = audit(ctx, spark)
    assert row["retrain_decision"] == "reuse" and row["model_version"] == "1"
    runs = MlflowClient().search_runs([MlflowClient().get_run(decided.mlflow_run_id).info.experiment_id],
                                      f"tags.`synthlake.run_id` = '{ctx.run_id}'")
    assert [r.data.tags["synthlake.check.decision"] for r in runs] == ["reuse"]
    assert runs[0].data.tags["synthlake.reused_model_version"] == "1"


def test_new_rows_of_the_same_distribution_are_scored_and_reuse_the_champion(project, spark):
    people(seed=2).to_parquet(project / "staff.parquet")
    ctx = context(project, "night-3")
    run_all(ctx, spark)
    decided = ctx.store.read(CheckRecord)
    assert decided.decision == "reuse" and "no column drifted" in decided.reason
    assert set(decided.drift) == {"age", "weekly_hours", "job", "label"} and not decided.drifted_columns
    assert all(d.psi < 0.2 for d in decided.drift.values())
    assert decided.drift["job"].js is not None and decided.drift["age"].ks is not None
    assert versions(ctx) == 1
    metrics = MlflowClient().get_run(decided.mlflow_run_id).data.metrics
    assert metrics["drift.psi.weekly_hours"] == pytest.approx(decided.drift["weekly_hours"].psi)


def test_a_drifted_column_retrains_names_the_column_and_makes_a_new_champion(project, spark):
    people(seed=3, age_shift=25).to_parquet(project / "staff.parquet")
    ctx = context(project, "night-4")
    run_all(ctx, spark)
    decided = ctx.store.read(CheckRecord)
    assert decided.decision == "train" and decided.drifted_columns[0] == "age" and "age (PSI" in decided.reason
    assert decided.drift["age"].psi > 0.2 and decided.drift["age"].ks > 0.1
    assert champion(ctx) == ctx.store.read(TrainRecord).model_version == "2"
    report = ctx.store.path("report").read_text()
    assert "Drift and retraining" in report and "age (PSI" in report


def test_never_refuses_when_the_settings_changed(project, spark):
    ctx = context(project, "night-5", retrain="never")
    changed = replace(ctx, dataset=ctx.dataset.model_copy(update={"hyper": {"epochs": 4}}))
    profile.run(changed, spark)
    with pytest.raises(StageError, match="retrain is never, but the settings a model depends on"):
        check.run(changed, spark)


def _laddered(project, run_id: str, accuracy: float) -> RunContext:
    """A run whose configured model cannot learn (a tiny learning rate) and whose ladder's step can."""
    ctx = context(project, run_id, retrain="always")
    p = ctx.params
    params = p.model_copy(update={
        "train": p.train.model_copy(update={"ladder": {"tabular_ar": [{"lr": 0.01, "epochs": 8}]},
                                            "max_attempts": 2}),
        "validate_": p.validate_.model_copy(update={"thresholds": {**p.validate_.thresholds, "accuracy": accuracy}})})
    dataset = ctx.dataset.model_copy(update={"hyper": {"epochs": 1, "lr": 1e-6}})
    return replace(ctx, params=params, dataset=dataset)


def test_a_failing_gate_is_recovered_by_the_ladder(project, spark):
    ctx = _laddered(project, "night-6", accuracy=0.8)
    for stage in (profile, check, train, sample):
        stage.run(ctx, spark)
    with pytest.raises(GateFailed, match="accuracy"):
        validate.run(ctx, spark)
    result = retrain.run(ctx, spark)
    attempts = ctx.store.read(AttemptsRecord).attempts
    assert result["passed"] and [a.passed for a in attempts] == [False, True]
    assert attempts[0].failed_checks == ["accuracy"] and attempts[1].hyper_step == {"lr": 0.01, "epochs": 8}
    publish.run(ctx, spark)
    assert champion(ctx) == attempts[1].model_version
    assert audit(ctx, spark)["attempts"] == 2
    child = MlflowClient().get_run(attempts[1].mlflow_run_id).data.tags
    assert child["mlflow.parentRunId"] == ctx.store.read(CheckRecord).mlflow_run_id
    assert child["synthlake.attempt"] == "2"


def test_a_gate_no_step_passes_publishes_nothing_and_names_every_attempt(project, spark):
    ctx = _laddered(project, "night-7", accuracy=0.999)
    before = champion(ctx)
    for stage in (profile, check, train, sample):
        stage.run(ctx, spark)
    with pytest.raises(GateFailed):
        validate.run(ctx, spark)
    with pytest.raises(GateFailed, match=r"no attempt passed its gate \(2 of at most 2.*attempt 1 \(as configured, "
                                         r"version \d+\) failed .*accuracy.*; attempt 2 \(\{'lr': 0.01"):
        retrain.run(ctx, spark)
    with pytest.raises(GateFailed):
        publish.run(ctx, spark)
    assert ctx.read_partition(spark, "published").count() == 0 and champion(ctx) == before
