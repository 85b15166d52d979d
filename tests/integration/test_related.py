"""Related tables end to end on the storms demo (conf/datasets/storms.yaml): `synthlake run` learns, generates,
validates and publishes storms and their observations; the published keys are exact, the rows the same on any
number of partitions, the set published whole or not at all, and bad key configs are refused naming the key."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
import yaml
from project_fixture import VENV_BIN, make_project, project_env, spark_session

from pipelines import related
from pipelines.context import StageError
from pipelines.records import RelatedSampleRecord, RelatedVerdict

RUN = "storms-run"
ROOTS = 90


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = make_project(tmp_path_factory.mktemp("related"), params={
        "rows": ROOTS, "train": {"hyper": {"tabular_ar": {"epochs": 2}}},
        "sample": {"partitions": 3, "root_block_rows": 25}})
    mp = pytest.MonkeyPatch()
    mp.setenv("SYNTHLAKE_HOME", str(root))
    yield root
    mp.undo()


def synthlake(project, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run([str(VENV_BIN / "synthlake"), *args], cwd=project, env=project_env(project),
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def completed(project):
    done = synthlake(project, "run", "conf/datasets/storms.yaml", "--run-id", RUN)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


@pytest.fixture(scope="module")
def spark(completed):
    session = spark_session("synthlake-related-tests")
    yield session
    session.stop()


def context(project, run_id: str = RUN, **overrides) -> related.RelatedContext:
    return related.open_context(str(project / "conf/datasets/storms.yaml"), run_id, **overrides)


def published(spark, project, table: str, run_id: str = RUN):
    return spark.read.format("delta").load(str(project / f"var/lake/storms_{table}")).where(f"run_id = '{run_id}'")


def test_the_demo_publishes_both_tables_with_every_key_exact(project, completed, spark):
    assert "published storms" in completed.stdout and "published observations" in completed.stdout
    storms, observations = published(spark, project, "storms"), published(spark, project, "observations")
    assert storms.count() == ROOTS and storms.select("storm_id").distinct().count() == ROOTS
    rows = observations.count()
    assert rows > ROOTS and observations.select("observation_id").distinct().count() == rows
    orphans = observations.join(storms, ["storm_id", "run_id"], "left_anti").count()
    assert orphans == 0
    assert observations.schema["time"].dataType.simpleString() == "timestamp"
    verdict = context(project).store.read(RelatedVerdict)
    checks = {c.check for c in verdict.checks}
    assert {"gx:expect_column_values_to_be_unique:observations.observation_id",
            "gx:expect_column_values_to_be_in_set:observations.__parent_found", "coherence:observations",
            "children_per_parent:observations", "column_shapes:storms", "entity_exact_match_share",
            "entity_unique_match_share", "entity_dcr_share"} <= checks
    assert verdict.passed and all(c.passed for c in verdict.checks if c.family == "keys")
    entity = {c.check: c for c in verdict.checks if c.family == "privacy"}
    # no storm copied whole; entity_unique_match_share is the gate where params set
    # validate.thresholds.exact_match_share (the tests' do not), entity_exact_match_share is reported
    assert entity["entity_exact_match_share"].value == 0 and entity["entity_unique_match_share"].value == 0
    assert entity["entity_unique_match_share"].passed is not False and entity["entity_exact_match_share"].passed is None
    assert 0 <= entity["entity_dcr_share"].value <= 1  # against the storms held out of both models


def test_each_sequence_is_in_time_order(project, completed, spark):
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    observations = published(spark, project, "observations")
    position = F.expr("int(substring_index(observation_id, '-', -1))")  # a child's key: <parent key>-<position>
    in_storm = Window.partitionBy("storm_id").orderBy(position)
    steps = observations.withColumn("back", F.col("time") < F.lag("time").over(in_storm))
    assert steps.where("back").count() == 0


def test_the_rows_are_the_same_on_one_partition(project, completed, spark):
    ctx = context(project, "storms-one-partition")
    ctx.store.run_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy(context(project).store.path("related_train"), ctx.store.path("related_train"))
    one = related.RelatedContext(ctx.config_path, ctx.dataset, ctx.params.model_copy(
        update={"sample": ctx.params.sample.model_copy(update={"partitions": 1})}), ctx.env, ctx.run_id)
    related.sample(one, spark)
    for table in ("storms", "observations"):
        staged = spark.read.format("delta").load(str(project / f"var/lake/storms_{table}_staging"))
        mine = staged.where(f"run_id = '{one.run_id}'").drop("run_id")
        theirs = published(spark, project, table).drop("run_id")
        assert mine.count() == theirs.count() and mine.exceptAll(theirs).count() == 0, table


def test_a_failed_publish_of_one_table_withdraws_the_others(project, completed, spark):
    ctx = context(project)
    record = ctx.store.read(RelatedSampleRecord)
    wrong = record.model_copy(update={"rows": {**record.rows, "observations": record.rows["observations"] + 1}})
    ctx.store.write(wrong)  # the observations' staging no longer holds what sample wrote: publish refuses it
    try:
        with pytest.raises(StageError, match="sample stage wrote"):
            related.publish(ctx, spark)
        assert published(spark, project, "storms").count() == 0  # published first, then withdrawn
    finally:
        ctx.store.write(record)
    related.publish(ctx, spark)  # a retry publishes the set again, once
    assert published(spark, project, "storms").count() == ROOTS
    assert published(spark, project, "observations").count() == record.rows["observations"]


def test_a_parent_key_that_repeats_in_the_source_is_refused(project, completed, spark, tmp_path):
    storms = tmp_path / "storms.csv"
    lines = (project / "data/storms/storms.csv").read_text().splitlines()
    storms.write_text("\n".join([*lines, lines[1]]) + "\n")
    config = yaml.safe_load((project / "conf/datasets/storms.yaml").read_text())
    config["tables"][0]["source"]["path"] = str(storms)
    path = tmp_path / "storms.yaml"
    path.write_text(yaml.safe_dump(config))
    ctx = related.open_context(str(path), "duplicate-keys")
    with pytest.raises(StageError, match="table 'storms': primary_key 'storm_id' is not a key of the source: 1 "
                                         "values appear more than once"):
        related.train(ctx, spark)


@pytest.mark.parametrize(("change", "needle"), [
    (lambda c: c["tables"][1]["foreign_keys"][0].update(column="storm"),
     "table 'observations': foreign key 'storm' is not one of its columns"),
    (lambda c: c["tables"][1]["foreign_keys"][0].update(parent="hurricanes"),
     "points at table 'hurricanes', which is not one of ['storms', 'observations']"),
    (lambda c: c["tables"][0].update(foreign_keys=[{"column": "storm_id", "parent": "observations"}]),
     "foreign keys form a cycle: storms -> observations -> storms"),
])
def test_bad_key_configs_exit_2_naming_the_key(project, tmp_path, change, needle):
    config = yaml.safe_load((project / "conf/datasets/storms.yaml").read_text())
    change(config)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config))
    done = synthlake(project, "run", str(path), timeout=120)
    assert done.returncode == 2 and needle in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_a_second_run_on_unchanged_tables_reuses_both_models(project, completed):
    done = synthlake(project, "run", "conf/datasets/storms.yaml", "--run-id", "storms-again")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    first, again = context(project), context(project, "storms-again")
    for table in ("storms", "observations"):
        check = json.loads((again.model_context(table).store.path("check")).read_text())
        assert check["decision"] == "reuse", (table, check["reason"])
    trained = json.loads(again.store.path("related_train").read_text())["tables"]
    before = json.loads(first.store.path("related_train").read_text())["tables"]
    assert {t: m["model_version"] for t, m in trained.items()} == {t: m["model_version"] for t, m in before.items()}


def test_a_set_that_fails_its_gate_is_not_published(project, completed, spark):
    from pipelines import related_validate
    from pipelines.validate import GateFailed

    ctx = context(project, "storms-strict")
    ctx.store.run_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy(context(project).store.path("related_train"), ctx.store.path("related_train"))
    related.sample(ctx, spark)
    strict = related.RelatedContext(ctx.config_path, ctx.dataset.model_copy(update={"min_column_shape": 0.999}),
                                    ctx.params, ctx.env, ctx.run_id)
    with pytest.raises(GateFailed, match="column_shapes:storms"):
        related_validate.run(strict, spark)
    assert not strict.store.read(RelatedVerdict).passed
    with pytest.raises(GateFailed, match="failed validation, not publishing"):
        related.publish(strict, spark)
    assert published(spark, project, "storms", "storms-strict").count() == 0
    assert published(spark, project, "observations", "storms-strict").count() == 0


def test_a_private_set_is_learned_private_per_entity(project, completed, spark, tmp_path):
    """privacy: on a related config: each table's model is DP with the storm (and all its observations) as the
    unit, at most unit_rows observations per storm learned, the budget split over the two models."""
    import pandas as pd

    from pipelines.records import RelatedTrainRecord
    from synthlake.related_frames import ENTITY

    config = yaml.safe_load((project / "conf/datasets/storms.yaml").read_text())
    config["privacy"] = {"epsilon": 6.0, "delta": 1e-6, "unit_rows": 12}
    path = tmp_path / "private.yaml"
    path.write_text(yaml.safe_dump(config))
    ctx = related.open_context(str(path), "storms-private")
    related.train(ctx, spark)
    record = ctx.store.read(RelatedTrainRecord)
    storms = pd.read_csv(project / "data/storms/storms.csv")
    for table, unit_rows in (("storms", 1), ("observations", 12)):
        spent = record.tables[table].privacy.model_dump()
        assert spent["unit"]["column"] == ENTITY and spent["unit"]["unit_rows"] == unit_rows, table
        noisy = spent["unit"]["noisy_units"]  # a noisy count of the training split's storms
        assert len(storms) / 2 < noisy < len(storms) + 10 / spent["unit"]["count_epsilon"], table
        assert spent["requested"]["epsilon"] == 3.0 and 2.5 < spent["epsilon"] <= 3.0, table
        frame = pd.read_parquet(ctx.model_context(table).dataset.source.path)
        assert frame.groupby(ENTITY).size().max() <= unit_rows, table  # what one storm adds to this model
    assert record.privacy.epsilon == pytest.approx(sum(m.privacy.epsilon for m in record.tables.values()))
    assert record.privacy.epsilon <= 6.0 and record.privacy.delta <= 1e-6
    related.sample(ctx, spark)  # the private models generate the set, keys exact
    observations = spark.read.format("delta").load(ctx.table_path("observations", "staging")) \
        .where("run_id = 'storms-private'")
    generated = spark.read.format("delta").load(ctx.table_path("storms", "staging")).where("run_id = 'storms-private'")
    assert observations.join(generated, ["storm_id", "run_id"], "left_anti").count() == 0


def test_privacy_unit_on_a_related_config_exits_2(project, tmp_path):
    config = yaml.safe_load((project / "conf/datasets/storms.yaml").read_text())
    config["privacy"] = {"epsilon": 1.0, "unit": "storm_id"}
    path = tmp_path / "unit.yaml"
    path.write_text(yaml.safe_dump(config))
    done = synthlake(project, "train", str(path), "--run-id", "unit", timeout=120)
    assert done.returncode == 2 and "privacy.unit 'storm_id': the unit of related tables is their root" in done.stderr
