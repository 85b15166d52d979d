"""A run's conditions through the real stages (Spark, Delta, MLflow): `--where`, a seed table, a dataset's
`rebalance:` and `fairness:`. Every published row meets the condition (Spark counts the rows that do not,
with its own SQL parser), 1 and 4 partitions give the same rows, seed rows come out in order, and validate
compares the rows with the real rows that meet the same condition, rebalanced the same way.

One model is trained; each test re-runs sample and validate for the same run id with other conditions (a
retry replaces the run's partition).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml
from project_fixture import make_project, spark_session

from pipelines import check, profile, publish, sample, train, validate
from pipelines.config import ConfigError
from pipelines.context import RunContext
from pipelines.records import SampleRecord, Verdict

pytestmark = pytest.mark.slow
RUN = "cond-run"
COLUMNS = [{"name": "person_id", "kind": "identifier"}, {"name": "sex", "kind": "categorical"},
           {"name": "age", "kind": "numeric", "integer": True}, {"name": "income", "kind": "numeric"},
           {"name": "label", "kind": "categorical"}]


def people(n: int = 2000, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    sex = rng.choice(["F", "M"], n, p=[0.4, 0.6])
    age = rng.integers(18, 90, n)
    rich = rng.random(n) < np.where(sex == "M", 0.35, 0.1) + (age > 50) * 0.2
    return pd.DataFrame({"person_id": [f"P{i}" for i in range(n)], "sex": sex, "age": age,
                         "income": np.round(rng.lognormal(10, 0.5, n), 2), "label": np.where(rich, "yes", "no")})


def write_config(root, **extra) -> str:
    config = {"name": "people", "source": {"path": "people.parquet", "format": "parquet"}, "target": "label",
              "generator": "tabular_ar", "columns": COLUMNS,
              "hyper": {"epochs": 6, "hidden_dim": 32, "batch_size": 256},
              "output": {"staging": "people_staging", "published": "people"}, **extra}
    path = root / "conf" / "datasets" / "people.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return str(path)


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = make_project(tmp_path_factory.mktemp("conditions"), params={
        "rows": 1200, "train": {"num_processes": 1}, "sample": {"partitions": 2, "block_rows": 500}})
    people().to_parquet(root / "people.parquet")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SYNTHLAKE_HOME", str(root))
        yield root


@pytest.fixture(scope="module")
def spark(project):
    session = spark_session("synthlake-conditions-tests")
    ctx = RunContext.open(write_config(project), RUN)
    profile.run(ctx, spark=session)
    check.run(ctx, spark=session)
    train.run(ctx, spark=session)
    yield session
    session.stop()


def _rows(ctx, spark, kind: str = "published") -> pd.DataFrame:
    return ctx.read_partition(spark, kind).drop("run_id").toPandas()


def test_every_published_row_meets_where_and_validate_compares_like_with_like(project, spark):
    where = "age >= 60 AND label = 'yes'"
    ctx = RunContext.open(write_config(project), RUN, where=where)
    for stage in (sample, validate, publish):
        stage.run(ctx, spark)
    rows = _rows(ctx, spark)
    assert len(rows) == 1200 and (rows.age >= 60).all() and (rows.label == "yes").all()
    assert sorted(rows["person_id"].astype(int)) == list(range(1200))
    assert ctx.store.read(SampleRecord).where == where
    verdict = ctx.store.read(Verdict)
    check = next(c for c in verdict.checks if c.check == "where")
    assert check.value == 0 and check.passed
    real = people()
    meets = ((real.age >= 60) & (real.label == "yes")).sum()
    assert verdict.rows["real"] + verdict.rows["holdout"] == meets  # only the real rows that meet it


def test_the_registered_pyfunc_takes_a_where(project, spark):
    import mlflow

    from pipelines import tracking
    from pipelines.records import TrainRecord

    ctx = RunContext.open(write_config(project), RUN)
    tracking.setup(ctx)
    model = mlflow.pyfunc.load_model(f"models:/{ctx.model_name}/{ctx.store.read(TrainRecord).model_version}")
    older = model.predict(pd.DataFrame({"rows": [50], "seed": [1], "where": ["age > 70 AND sex = 'F'"]}))
    assert len(older) == 50 and (older.age > 70).all() and (older.sex == "F").all()
    assert not (model.predict(pd.DataFrame({"rows": [200], "seed": [1]})).age > 70).all()


def test_the_where_check_counts_rows_that_fail_it(project, spark):
    """The check is not a formality: a staged frame with a row outside the condition is counted."""
    from pipelines.conditioned import condition_checks

    ctx = RunContext.open(write_config(project), RUN)
    staged = ctx.read_partition(spark, "staging").drop("run_id")
    record = SampleRecord(staging_table="x", rows=1, partitions=1, seed=0, model_version="1", writer="arrow",
                          where="age >= 60 AND label = 'yes'")
    tampered = staged.withColumn("age", staged["age"] - 50)
    check = next(c for c in condition_checks(ctx, record, tampered, {"real": people()}) if c["check"] == "where")
    assert check["value"] == 1200 and check["passed"] is False


def test_conditional_rows_do_not_depend_on_partitions(project, spark):
    from pipelines.records import TrainRecord
    from pipelines.tracking import load_sampler

    frames = []
    for partitions in (1, 4):
        ctx = RunContext.open(write_config(project), RUN, where="income > 30000 OR income < 10000",
                              sample={"partitions": partitions, "block_rows": 500})
        trained = ctx.store.read(TrainRecord)
        sampler = load_sampler(ctx, trained.model_name, trained.model_version)
        files = sample.sampler_files(sampler)
        conditions = sample.run_conditions(spark, ctx, sampler)
        frames.append(sample.synthetic_frame(spark, ctx, files, conditions).toPandas()
                      .sort_values("person_id", key=lambda s: s.astype(int)).reset_index(drop=True))
    assert frames[0].equals(frames[1])
    assert ((frames[0].income > 30000) | (frames[0].income < 10000)).all()


def test_a_seed_table_gives_one_row_per_seed_row_in_order(project, spark):
    seeds = pd.DataFrame({"sex": ["F"] * 30 + ["M"] * 40, "age": np.arange(20, 90)})
    seeds.to_parquet(project / "seeds.parquet")
    ctx = RunContext.open(write_config(project), RUN, seed_table="seeds.parquet")
    sample.run(ctx, spark)
    rows = _rows(ctx, spark, "staging").sort_values("person_id", key=lambda s: s.astype(int))
    assert len(rows) == 70
    assert rows.sex.tolist() == seeds.sex.tolist() and rows.age.tolist() == seeds.age.tolist()
    assert rows.income.notna().all() and set(rows.label) <= {"yes", "no"}
    # validate reads the 70 rows this retry staged, not the 1,200 an earlier validate of the run had cached
    validate.run(ctx, spark)
    assert ctx.store.read(Verdict).rows["synthetic"] == 70


def test_rebalance_and_fairness_from_the_dataset_config(project, spark):
    ctx = RunContext.open(write_config(project, rebalance={"column": "label", "shares": {"yes": 0.5}}), RUN)
    sample.run(ctx, spark)
    validate.run(ctx, spark)
    rows = _rows(ctx, spark, "staging")
    assert abs((rows.label == "yes").mean() - 0.5) < 0.05 and (people().label == "yes").mean() < 0.4

    ctx = RunContext.open(write_config(project, fairness={"target": "label", "sensitive": ["sex"],
                                                          "max_gap": 0.06}), RUN)
    sample.run(ctx, spark)
    validate.run(ctx, spark)
    verdict = ctx.store.read(Verdict)
    gap = next(c for c in verdict.checks if c.check == "parity_gap")
    real_gap = next(c for c in verdict.checks if c.check == "parity_gap_real")
    assert real_gap.value > 0.15 and gap.value <= 0.06 and gap.passed
    plain = next(c for c in verdict.checks if c.check == "tstr_without_fairness")  # what fairness cost
    fair = next(c for c in verdict.checks if c.check == "tstr")
    assert 0.5 < plain.value <= 1 and 0 < fair.value <= 1 and plain.value != fair.value


def test_conditions_that_cannot_hold_are_refused_naming_the_column(project, spark):
    with pytest.raises(ConfigError, match="no column 'agee'"):
        sample.run(RunContext.open(write_config(project), RUN, where="agee > 3"), spark)
    with pytest.raises(ConfigError, match="rebalance: column 'label' has no categories \\['maybe'\\]"):
        sample.run(RunContext.open(write_config(project, rebalance={"column": "label", "shares": {"maybe": 0.5}}),
                                   RUN), spark)
    with pytest.raises(ConfigError, match="fairness: no column 'gender'"):
        write_config(project, fairness={"target": "label", "sensitive": ["gender"]})
        RunContext.open(str(project / "conf/datasets/people.yaml"), RUN)
