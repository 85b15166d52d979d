"""Each stage on a small slice of Adult, in-process, with real Spark, Delta, MLflow and GX.

One module-scoped run goes profile -> train -> sample -> validate -> publish; the tests then check
what it left behind, and what re-runs, other partition counts and a failing gate do to it.
"""

from __future__ import annotations

import dataclasses
import json
import os

import deltalake
import pandas as pd
import pytest
from project_fixture import make_project, spark_session

from pipelines import check, profile, publish, sample, tracking, train, validate
from pipelines.context import RunContext, StageError
from pipelines.records import CheckRecord, ProfileRecord, TrainRecord, Verdict
from pipelines.validate import GateFailed
from synthlake.generators.ar_sampler import FrozenSampler

pytestmark = pytest.mark.slow
RUN = "it-run-1"
ROWS = 300


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = make_project(tmp_path_factory.mktemp("project"), params={
        "rows": ROWS, "train": {"num_processes": 2, "max_rows": 3000,
                                  "hyper": {"tabular_ar": {"epochs": 2}, "ctgan": {"epochs": 2, "batch_size": 200}}},
        "sample": {"partitions": 3, "block_rows": 64}})
    mp = pytest.MonkeyPatch()
    mp.setenv("SYNTHLAKE_HOME", str(root))
    yield root
    mp.undo()


@pytest.fixture(scope="module")
def spark(project):
    session = spark_session("synthlake-tests")
    yield session
    session.stop()


def context(project, run_id=RUN, **overrides) -> RunContext:
    return RunContext.open(str(project / "conf/datasets/adult.yaml"), run_id, **overrides)


@pytest.fixture(scope="module")
def completed(project, spark):
    ctx = context(project)
    results = {stage.__name__.split(".")[-1]: stage.run(ctx, spark)
               for stage in (profile, check, train, sample, validate, publish)}
    return ctx, results


def test_profile_describes_the_source(completed):
    ctx, _ = completed
    prof = ctx.store.read(ProfileRecord)
    assert prof.rows + prof.holdout.rows == 32561
    assert abs(prof.holdout.rows / 32561 - ctx.params.profile.holdout_fraction) < 0.01
    cols = prof.columns
    assert list(cols) == ctx.dataset.metadata.names
    assert cols["workclass"].null_fraction > 0  # "?" in the source is a null
    assert cols["age"].null_fraction == 0
    assert cols["age"].min == 17 and cols["age"].max == 90
    freqs = dict(cols["sex"].categories.frequencies)
    assert set(freqs) == {"Male", "Female"} and abs(sum(freqs.values()) - 1) < 1e-9
    assert prof.source.fingerprint.startswith("sha256:")
    raw = json.loads(ctx.store.path("profile").read_text())  # each kind's statistics only
    assert "categories" not in raw["columns"]["age"] and "min" not in raw["columns"]["sex"]


def test_holdout_is_disjoint_from_training_rows_and_never_trained_on(completed, spark):
    from pipelines.source import read_real, read_source, split

    ctx, _ = completed
    prof = ctx.store.read(ProfileRecord)
    source = read_source(spark, ctx.dataset)
    train_rows, holdout_rows = read_real(spark, ctx, "train", prof), read_real(spark, ctx, "holdout", prof)
    assert train_rows.count() == prof.rows and holdout_rows.count() == prof.holdout.rows
    assert train_rows.intersect(holdout_rows).count() == 0
    assert source.exceptAll(train_rows.unionAll(holdout_rows)).count() == 0
    trained_on = train.training_rows(spark, ctx, prof)
    assert trained_on.count() > 0
    assert split(trained_on, "holdout", prof.holdout.fraction, prof.holdout.seed).count() == 0
    other_seed = split(source, "holdout", prof.holdout.fraction, prof.holdout.seed + 1)
    assert other_seed.exceptAll(holdout_rows).count() > 0  # the split depends on the seed


def test_validate_records_every_metric_and_writes_the_report(completed):
    from synthlake.evaluation import metric_names

    ctx, results = completed
    verdict = json.loads(ctx.store.path("verdict").read_text())
    measured = set(verdict["metrics"]) | set(verdict["skipped_metrics"])
    assert measured == set(metric_names()) - {"canary_share"}  # no canaries configured for Adult
    assert verdict["skipped_metrics"] == {}  # Adult declares quasi-identifiers and a target
    for row in verdict["checks"]:
        assert set(row) == {"check", "family", "value", "threshold", "op", "passed"}
    assert 0.5 < verdict["metrics"]["accuracy"] <= 1 and 0 <= verdict["metrics"]["dcr_share"] <= 1
    headline = json.loads(ctx.store.path("metrics").read_text())
    assert headline["passed"] is True and headline["accuracy"] == verdict["metrics"]["accuracy"]
    report = ctx.store.path("report").read_text()
    assert results["validate"]["report"] == str(ctx.store.path("report"))
    assert "PASSED" in report and ctx.run_id in report
    assert '<h2 id="why">What distinguishes synthetic rows</h2>' in report  # passed: collapsed, not "why failed"
    for name in ("column_shapes", "dcr"):
        assert len(ctx.store.path(name).read_text().splitlines()) > 2


def test_canaries_are_searched_in_every_staged_row(completed, project, spark):
    ctx, _ = completed
    staged = ctx.read_partition(spark, "staging").drop("run_id")
    present = staged.select("sex").first()["sex"]
    dataset = ctx.dataset.model_copy(update={"canaries": {"sex": [present, "Martian"], "age": ["999"]},
                                             "thresholds": {"canary_share": 0.0}})  # over params' null
    planted = RunContext(ctx.config_path, dataset, ctx.params, ctx.env, ctx.run_id)
    [check] = validate._canary_checks(planted, staged)
    assert check["value"] == pytest.approx(1 / 3) and check["passed"] is False  # one of three found


def test_train_logs_to_mlflow_and_registers_a_pyfunc(completed):
    import mlflow
    from mlflow import MlflowClient

    ctx, results = completed
    trained = results["train"]
    client = MlflowClient()
    history = client.get_metric_history(trained["mlflow_run_id"], "loss")
    assert [m.step for m in history] == [0, 1]
    run = client.get_run(trained["mlflow_run_id"])
    assert run.data.params["num_processes"] == "2"
    placement = trained["placement"]  # the local environment trains on the driver's machine (local mode)
    assert placement["train_on"] == run.data.params["train_on"] == "driver"
    assert placement["rank0_working_dir"] == run.data.params["rank0_working_dir"] == os.getcwd()
    model = mlflow.pyfunc.load_model(f"models:/{ctx.model_name}/{trained['model_version']}")
    rows = model.predict(pd.DataFrame({"rows": [25], "seed": [3]}))
    assert list(rows.columns) == ctx.dataset.metadata.names and len(rows) == 25
    served = model.unwrap_python_model()
    assert isinstance(served.sampler, FrozenSampler)  # the torch-free Sampler, not the whole generator
    assert served.next_offset == 25  # the next request's identifiers continue after these rows
    again = model.predict(pd.DataFrame({"rows": [25], "seed": [3], "offset": [0]}))
    pd.testing.assert_frame_equal(again, rows)
    saved = sorted(p.name for p in ctx.store.path("model").iterdir())
    assert saved == ["generator.json", "generator.pt", "sampler.json", "sampler.npz"]


def test_published_table_reads_back_with_spark_sql_and_delta_rs(completed, spark):
    ctx, results = completed
    path = results["publish"]["published_table"]
    n = spark.sql(f"SELECT count(*) AS n FROM delta.`{path}` WHERE run_id = '{RUN}'").first()["n"]
    assert n == ROWS
    table = deltalake.DeltaTable(path).to_pandas()
    assert len(table[table.run_id == RUN]) == ROWS
    assert set(ctx.dataset.metadata.names) <= set(table.columns)
    real_sexes = {"Male", "Female"}
    assert set(table["sex"].dropna()) <= real_sexes


def test_audit_row_traces_the_run(completed, spark):
    ctx, results = completed
    audit = spark.read.format("delta").load(results["publish"]["audit_table"]).where(f"run_id = '{RUN}'")
    rows = audit.collect()
    assert len(rows) == 1
    row = rows[0]
    prof = ctx.store.read(ProfileRecord)
    assert row["profile_version"] == prof.profile_version
    assert row["started_at"].replace(tzinfo=None) == prof.created_at.astimezone().replace(tzinfo=None)
    assert row["model_version"] == results["train"]["model_version"]
    assert row["rows"] == ROWS and row["verdict"] == "passed"
    verdict = ctx.store.read(Verdict)
    assert row["accuracy"] == pytest.approx(verdict.metrics["accuracy"])
    assert row["dcr_share"] == pytest.approx(verdict.metrics["dcr_share"])
    assert row["report"] == str(ctx.store.path("report"))
    assert row["epsilon"] is None and row["delta"] is None  # no privacy budget configured


def test_audit_rows_are_per_dataset_and_run_id(completed, spark, tmp_path):
    """The audit table is shared by every dataset (params: output.audit), and two datasets' runs can share a run
    id (the scheduled DAGs' nightly-YYYYMMDD): a publish updates its own dataset's row, never another's."""
    _, results = completed
    row = spark.read.format("delta").load(results["publish"]["audit_table"]).where(f"run_id = '{RUN}'").first()
    path = str(tmp_path / "audit")
    adult, other = row.asDict(), {**row.asDict(), "dataset": "other", "rows": 7}
    for audit in (adult, other, {**adult, "rows": 9}):  # the last: adult's publish retried
        publish._upsert_audit(spark, path, audit)
    rows = {r["dataset"]: r["rows"] for r in spark.read.format("delta").load(path).where(f"run_id = '{RUN}'").collect()}
    assert rows == {"adult": 9, "other": 7}


def test_champion_alias_points_at_the_published_version(completed):
    from mlflow import MlflowClient

    ctx, results = completed
    version = MlflowClient().get_model_version_by_alias(ctx.model_name, "champion")
    assert str(version.version) == results["train"]["model_version"]


def test_published_table_carries_its_lineage(completed, spark):
    """The table's comment and properties name the run it last published; its columns say what they are."""
    ctx, results = completed
    path = results["publish"]["published_table"]
    detail = spark.sql(f"DESCRIBE DETAIL delta.`{path}`").first()
    fingerprint = ctx.store.read(ProfileRecord).source.fingerprint
    model = f"{ctx.model_name} version {results['train']['model_version']}"
    assert f"run {RUN}, model {model}, source fingerprint {fingerprint}" in detail["description"]
    assert "no differential privacy, verdict passed" in detail["description"]
    assert detail["properties"]["synthlake.run_id"] == RUN
    assert detail["properties"]["synthlake.epsilon"] == "none"
    schema = spark.read.format("delta").load(path).schema
    assert schema["marital-status"].metadata["comment"].startswith("synthetic categorical column")


def test_rerunning_a_run_id_replaces_instead_of_duplicating(completed, spark):
    """Also with register_on_publish: the publish names the tables in Spark's catalog (here the session's)."""
    ctx, results = completed
    sample.run(ctx, spark)
    validate.run(ctx, spark)
    registering = dataclasses.replace(ctx, env=ctx.env.model_copy(update={
        "catalog": ctx.env.catalog.model_copy(update={"register_on_publish": True})}))
    publish.run(registering, spark)
    for kind in ("staging", "published"):
        n = spark.read.format("delta").load(ctx.table_path(kind)).where(f"run_id = '{RUN}'").count()
        assert n == ROWS, kind
    audit = spark.read.format("delta").load(ctx.table_path("audit")).where(f"run_id = '{RUN}'")
    assert audit.count() == 1
    assert spark.table("synthetic.adult").where(f"run_id = '{RUN}'").count() == ROWS
    assert spark.table("synthetic.synthlake_audit").where(f"run_id = '{RUN}'").count() == 1


def test_same_seed_same_rows_with_1_and_4_partitions(completed, project, spark):
    ctx, _ = completed
    files = sample.sampler_files(FrozenSampler.load(ctx.store.path("model")))
    frames = []
    for partitions in (1, 4):
        c = context(project, sample={"partitions": partitions, "block_rows": 64})
        df = sample.synthetic_frame(spark, c, files).toPandas()
        frames.append(df)
    pd.testing.assert_frame_equal(frames[0], frames[1])
    other_seed = sample.synthetic_frame(spark, context(project, seed=8), files).toPandas()
    assert not frames[0].equals(other_seed)


def test_spark_and_arrow_writers_stage_the_same_rows(completed, project, spark):
    """The default writer (pyarrow files, one delta-rs commit) and Spark's Delta writer agree row for row,
    and Spark reads what delta-rs committed, counts included (from the files' statistics)."""
    ctx, results = completed
    assert results["sample"]["writer"] == "arrow"
    by_spark = context(project, run_id="it-run-spark-writer", sample={"partitions": 2, "block_rows": 64,
                                                                       "writer": "spark"})
    by_spark.store.write(ctx.store.read(TrainRecord))
    assert sample.run(by_spark, spark)["rows"] == ROWS
    columns = [c.name for c in ctx.dataset.columns]
    frames = [c.read_partition(spark, "staging").select(*columns).toPandas() for c in (ctx, by_spark)]
    frames = [f.sort_values(columns).reset_index(drop=True) for f in frames]
    pd.testing.assert_frame_equal(frames[0], frames[1])
    assert ctx.read_partition(spark, "staging").where("age >= 0").count() == ROWS


def test_failed_gate_leaves_published_table_untouched(completed, project, spark):
    from delta.tables import DeltaTable

    ctx, results = completed
    published = results["publish"]["published_table"]
    version_before = DeltaTable.forPath(spark, published).history(1).first()["version"]
    strict = context(project, run_id="it-run-strict",
                     validate={"min_column_shape": 0.0, "thresholds": {"column_shapes": 1.0}})
    for record in (ProfileRecord, CheckRecord, TrainRecord):  # reuse the trained model: the gate is under test
        strict.store.write(ctx.store.read(record))
    sample.run(strict, spark)
    with pytest.raises(GateFailed, match="column_shapes"):
        validate.run(strict, spark)
    verdict = strict.store.read(Verdict)
    assert verdict.passed is False and verdict.failed_checks == ["column_shapes"]
    assert "FAILED" in strict.store.path("report").read_text()
    with pytest.raises(GateFailed, match="column_shapes"):
        publish.run(strict, spark)
    assert DeltaTable.forPath(spark, published).history(1).first()["version"] == version_before
    assert spark.read.format("delta").load(published).where("run_id = 'it-run-strict'").count() == 0


def test_a_private_run_records_the_budget_it_spent(completed, spark, capsys):
    from mlflow import MlflowClient

    from synthlake.metadata import PrivacyBudget

    ctx, _ = completed
    dataset = ctx.dataset.model_copy(update={"privacy": PrivacyBudget(epsilon=2.0, delta=1e-5)})
    # a 2-epoch DP model on 2,600 rows is rough: most, not 95%, of its values fall in the real ranges; its rows
    # are counted and encoded by the executors (driver_encode_rows 0), the DP noise added on the driver
    params = ctx.params.model_copy(update={
        "validate_": ctx.params.validate_.model_copy(update={"dp_mostly": 0.8}),
        "train": ctx.params.train.model_copy(update={"driver_encode_rows": 0})})
    private = RunContext(ctx.config_path, dataset, params, ctx.env, "it-run-dp")
    private.store.write(ctx.store.read(ProfileRecord))  # the same source and split
    for stage in (check, train, sample, validate, publish):
        stage.run(private, spark)
    assert "rows on the executors" in capsys.readouterr().out
    spent = json.loads(private.store.path("train").read_text())["privacy"]
    assert 0 < spent["epsilon"] <= 2.0 and spent["delta"] <= 1e-5
    assert spent["dp_sgd"]["noise_multiplier"] > 0 and sum(spent["preprocessing"].values()) > 0
    run = MlflowClient().get_run(private.store.read(TrainRecord).mlflow_run_id)
    assert run.data.metrics["dp.epsilon_spent"] == pytest.approx(spent["epsilon"])
    audit = spark.read.format("delta").load(private.table_path("audit")).where("run_id = 'it-run-dp'").first()
    assert audit["epsilon"] == pytest.approx(spent["epsilon"]) and audit["delta"] == pytest.approx(spent["delta"])
    assert f"epsilon {spent['epsilon']:.3f}" in private.store.path("report").read_text()
    assert not private.store.path("train_checkpoints").exists()  # removed once the model is saved


def test_a_generator_added_through_the_contract_runs_every_stage(completed, spark):
    """gaussian_copula needs nothing in pipelines/: the stages train it, sample its Sampler and publish."""
    from mlflow import MlflowClient

    from synthlake.generators.gaussian_copula import CopulaSampler

    ctx, _ = completed
    dataset = ctx.dataset.model_copy(update={"generator": "gaussian_copula", "thresholds": {"accuracy": 0.85}})
    copula = RunContext(ctx.config_path, dataset, ctx.params, ctx.env, "it-run-copula")
    copula.store.write(ctx.store.read(ProfileRecord))  # the same source and split
    results = {stage.__name__.split(".")[-1]: stage.run(copula, spark)
               for stage in (check, train, sample, validate, publish)}
    assert results["validate"]["passed"] and results["validate"]["accuracy"] >= 0.85
    assert copula.read_partition(spark, "published").count() == ROWS
    model_dir = copula.store.path("model")
    assert sorted(p.name for p in model_dir.iterdir()) == ["generator.json", "sampler.json"]
    assert isinstance(tracking.load_sampler(copula, ctx.model_name, results["train"]["model_version"]), CopulaSampler)
    params = MlflowClient().get_run(results["train"]["mlflow_run_id"]).data.params
    assert params["generator"] == "gaussian_copula" and params["shrinkage"] == "0.001"


def test_a_source_changed_since_the_profile_is_refused(completed, spark):
    from pipelines.source import read_real

    ctx, _ = completed
    profiled = ctx.store.read(ProfileRecord)
    stale = profiled.model_copy(update={"source": profiled.source.model_copy(update={"fingerprint": "sha256:0"})})
    with pytest.raises(StageError, match="changed since run .* profiled it"):
        read_real(spark, ctx, "train", stale)


def test_stage_out_of_order_names_the_missing_stage(project, spark):
    ctx = context(project, run_id="never-profiled")
    with pytest.raises(StageError, match="run the check stage"):
        train.run(ctx, spark)
    with pytest.raises(StageError, match="run the profile stage"):
        check.run(ctx, spark)


def test_gx_suite_catches_a_planted_bad_value(completed, spark):
    ctx, _ = completed
    prof = ctx.store.read(ProfileRecord)
    staged = spark.read.format("delta").load(ctx.table_path("staging")).where(f"run_id = '{RUN}'")
    bad = staged.drop("run_id").limit(50).toPandas()
    bad.loc[0, "age"] = 500
    bad.loc[1, "sex"] = "Martian"
    result = validate.run_expectations(spark.createDataFrame(bad, staged.drop("run_id").schema), prof, "bad")
    failed = {(r["expectation_config"]["type"], r["expectation_config"]["kwargs"]["column"])
              for r in result["results"] if not r["success"]}
    assert failed == {("expect_column_values_to_be_between", "age"),
                      ("expect_column_values_to_be_in_set", "sex")}


def test_a_bi_tool_queries_the_published_tables_over_thrift(completed, project):
    """`synthlake sql` registers the tables in its embedded metastore and serves them over HiveServer2's
    protocol; PyHive connects as a BI tool's Hive driver would (SASL PLAIN, any user name)."""
    import signal
    import subprocess
    import time

    from project_fixture import VENV_BIN, free_port, project_env
    from pyhive import hive

    ctx, _ = completed
    port = free_port()
    log, errors = project / "sql.out", project / "sql.err"
    with log.open("w") as out, errors.open("w") as err:
        server = subprocess.Popen([str(VENV_BIN / "synthlake"), "sql", "--port", str(port)], cwd=project,
                                  env=project_env(project), stdout=out, stderr=err)
    try:
        deadline = time.monotonic() + 180
        while "jdbc:hive2://" not in log.read_text():
            assert server.poll() is None, f"synthlake sql exited with {server.returncode}"
            assert time.monotonic() < deadline, "the SQL server did not start in 180 s"
            time.sleep(0.5)
        assert "synthetic.adult, synthetic.synthlake_audit" in log.read_text()
        with hive.connect(host="127.0.0.1", port=port, username="bi", database="synthetic") as conn:
            cursor = conn.cursor()
            cursor.execute(f"SELECT count(*) FROM adult WHERE run_id = '{RUN}'")
            assert cursor.fetchall() == [(ROWS,)]
            cursor.execute(f"SELECT verdict, `rows` FROM synthlake_audit WHERE run_id = '{RUN}'")
            assert cursor.fetchall() == [("passed", ROWS)]
            cursor.execute("SELECT `marital-status`, count(*) FROM adult GROUP BY 1")
            assert sum(n for _, n in cursor.fetchall()) >= ROWS
            cursor.execute("SELECT run_id FROM synthlake_audit ORDER BY published_at DESC LIMIT 1")
            (latest,), = cursor.fetchall()
            cursor.execute("DESCRIBE TABLE EXTENDED adult")
            described = {row[0]: row[1:] for row in cursor.fetchall()}
            assert described["age"][1].startswith("synthetic numeric column")
            assert f"Latest: run {latest}, model {ctx.model_name} version" in described["Comment"][0]
        assert (project / "var/metastore/metastore_db").is_dir()  # the embedded metastore, under var/
    finally:
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=60) == 0, errors.read_text()[-3000:]
