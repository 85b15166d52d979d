"""OpenLineage (pipelines.lineage): every stage run emits START and COMPLETE (or FAIL) with its input and output
datasets, to files under var/lineage by default or to an HTTP endpoint.

The slow test runs `synthlake run` once on a tiny project with the openlineage-spark listener on and reads what
the file transport appended: per stage, the datasets it names, its parent (the `synthlake run` run) and
Spark's own events under it. The others need no Spark: the settings, the HTTP transport against a server on
127.0.0.1, a failing stage, a parent handed over in OPENLINEAGE_PARENT_ID, lineage turned off. (The Airflow
tasks' events and the stage runs under them: tests/integration/test_dags.py's end-to-end DAG run.)
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from project_fixture import REPO, VENV_BIN, make_project, project_env

from pipelines.config import ConfigError, load_env
from pipelines.context import RunContext, StageError
from pipelines.lineage import EVENTS_FILE, SPARK_EVENTS_FILE, stage_run
from pipelines.stages import STAGE_NAMES

RUN_ID = "lineage-1"
AIRFLOW_TASK = "airflow/synthlake_on_demand.train/01a244d7-d01b-77e2-945b-aaa11c8dd33d"
AIRFLOW_DAG = "airflow/synthlake_on_demand/01a244d7-d01b-7395-8b66-469aa4c1e781"


def read_events(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def set_lineage(root: Path, **settings) -> None:
    """The project's conf/env/local.yaml with these `openlineage:` settings (None removes one)."""
    path = root / "conf" / "env" / "local.yaml"
    env = yaml.safe_load(path.read_text())
    merged = {**env.get("openlineage", {}), **settings}
    env["openlineage"] = {k: v for k, v in merged.items() if v is not None}
    path.write_text(yaml.safe_dump(env, sort_keys=False))


@pytest.fixture
def project(tmp_path, monkeypatch):
    root = make_project(tmp_path / "project")
    monkeypatch.setenv("SYNTHLAKE_HOME", str(root))
    for name in ("OPENLINEAGE_PARENT_ID", "OPENLINEAGE_ROOT_PARENT_ID", "OPENLINEAGE_DISABLED"):
        monkeypatch.delenv(name, raising=False)
    return root


def context(root: Path, run_id: str = "it-lineage") -> RunContext:
    return RunContext.open(str(root / "conf" / "datasets" / "adult.yaml"), run_id)


# ---- settings -----------------------------------------------------------------------------------------
def test_repo_environments_send_events_to_files_by_default(monkeypatch):
    monkeypatch.setenv("SYNTHLAKE_HOME", str(REPO))
    monkeypatch.setenv("SYNTHLAKE_WORK_DIR", "/mnt/shared/synthlake")
    monkeypatch.setenv("SYNTHLAKE_LAKE_DIR", "s3a://bucket/lake")
    monkeypatch.setenv("SPARK_MASTER_URL", "spark://master:7077")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow:5000")
    monkeypatch.setenv("MLFLOW_ARTIFACT_LOCATION", "s3://bucket/mlflow")
    local, cluster = load_env("local").openlineage, load_env("cluster").openlineage
    assert (local.enabled, local.transport, local.path, local.namespace) == (True, "file", "var/lineage", "synthlake")
    assert local.spark_listener is False
    assert (cluster.transport, cluster.path) == ("file", "/mnt/shared/synthlake/lineage")


@pytest.mark.parametrize(("settings", "named"), [
    ({"transport": "kafka"}, "openlineage.transport"),
    ({"transport": "http"}, "transport http needs url"),
    ({"transport": "http", "url": "marquez:5000"}, "openlineage.url"),
    ({"url": "http://marquez:5000"}, "url and api_key_env are settings of transport http"),
    ({"transport": "http", "url": "http://marquez:5000", "timeout_s": 0}, "openlineage.timeout_s"),
    ({"transport": "http", "url": "http://marquez:5000", "api_key_env": "not a name"}, "openlineage.api_key_env"),
    ({"namespace": ""}, "openlineage.namespace"),
    ({"spark_listner": True}, "openlineage.spark_listner"),
])
def test_a_bad_setting_is_a_config_error_naming_it(project, settings, named):
    set_lineage(project, **settings)
    with pytest.raises(ConfigError, match="local.yaml") as error:
        load_env("local")
    assert named in str(error.value)


def test_an_api_key_variable_that_is_not_set_stops_the_stage_before_it_starts(project, monkeypatch):
    monkeypatch.delenv("SYNTHLAKE_TEST_OL_KEY", raising=False)
    set_lineage(project, transport="http", url="http://127.0.0.1:9", api_key_env="SYNTHLAKE_TEST_OL_KEY")
    started = []
    with pytest.raises(ConfigError, match="openlineage.api_key_env.*SYNTHLAKE_TEST_OL_KEY"):
        with stage_run(context(project), "profile"):
            started.append(True)
    assert not started


# ---- transports, failures, parents (no Spark) ---------------------------------------------------------
class Collector(BaseHTTPRequestHandler):
    received: list[tuple[str, str | None, dict]] = []

    def do_POST(self):  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append((self.path, self.headers.get("Authorization"), json.loads(body)))
        self.send_response(201)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def endpoint():
    Collector.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Collector)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", Collector.received
    server.shutdown()
    server.server_close()


def test_http_transport_posts_each_event_with_the_api_key(project, endpoint, monkeypatch):
    url, received = endpoint
    monkeypatch.setenv("SYNTHLAKE_TEST_OL_KEY", "s3cret")
    set_lineage(project, transport="http", url=url, api_key_env="SYNTHLAKE_TEST_OL_KEY", namespace="lake-prod")
    ctx = context(project)
    with stage_run(ctx, "profile") as run:
        assert [e["eventType"] for _, _, e in received] == ["START"]
    assert [(path, auth) for path, auth, _ in received] == [("/api/v1/lineage", "Bearer s3cret")] * 2
    start, complete = (event for _, _, event in received)
    assert complete["eventType"] == "COMPLETE" and complete["run"]["runId"] == start["run"]["runId"] == run.ref.run_id
    assert complete["job"] == {**complete["job"], "namespace": "lake-prod", "name": "adult.profile"}
    assert [(d["namespace"], d["name"]) for d in complete["inputs"]] == [("file", str(REPO / "data/adult/adult.data"))]
    assert [d["name"] for d in complete["outputs"]] == [str(ctx.store.path("profile"))]
    assert not (project / "var" / "lineage").exists()  # nothing written to files


def test_an_unreachable_endpoint_warns_and_the_stage_goes_on(project, capsys):
    set_lineage(project, transport="http", url="http://127.0.0.1:9", timeout_s=1)  # the discard port: closed
    started = time.monotonic()
    with stage_run(context(project), "profile"):
        done = True
    assert done and time.monotonic() - started < 30
    err = capsys.readouterr().err
    assert "could not send the START event of adult.profile" in err and "COMPLETE" in err


def test_a_failing_stage_emits_fail_with_its_error(project):
    with pytest.raises(StageError, match="not publishing"):
        with stage_run(context(project), "publish"):
            raise StageError("run 'it-lineage' failed validation, not publishing: accuracy")
    start, fail = read_events(project / "var" / "lineage" / EVENTS_FILE)
    assert (start["eventType"], fail["eventType"]) == ("START", "FAIL")
    error = fail["run"]["facets"]["errorMessage"]
    assert error["message"] == "StageError: run 'it-lineage' failed validation, not publishing: accuracy"
    assert error["programmingLanguage"] == "python" and "Traceback" in error["stackTrace"]
    assert {d["name"] for d in fail["outputs"]} >= {str(project / "var" / "lake" / "adult")}


def test_the_parent_handed_over_in_the_environment_becomes_the_runs_parent(project, monkeypatch, capsys):
    monkeypatch.setenv("OPENLINEAGE_PARENT_ID", AIRFLOW_TASK)
    monkeypatch.setenv("OPENLINEAGE_ROOT_PARENT_ID", AIRFLOW_DAG)
    with stage_run(context(project), "train"):
        pass
    monkeypatch.setenv("OPENLINEAGE_PARENT_ID", "not-a-parent")
    monkeypatch.delenv("OPENLINEAGE_ROOT_PARENT_ID")
    with stage_run(context(project), "train"):
        pass
    first, _, second, _ = read_events(project / "var" / "lineage" / EVENTS_FILE)
    parent = first["run"]["facets"]["parent"]
    assert (parent["job"]["namespace"], parent["job"]["name"], parent["run"]["runId"]) == tuple(
        AIRFLOW_TASK.split("/"))
    root = parent["root"]
    assert (root["job"]["namespace"], root["job"]["name"], root["run"]["runId"]) == tuple(AIRFLOW_DAG.split("/"))
    assert "parent" not in second["run"]["facets"]
    assert "OPENLINEAGE_PARENT_ID='not-a-parent' is not namespace/job/run-uuid" in capsys.readouterr().err


def test_lineage_turned_off_sends_nothing(project, monkeypatch):
    set_lineage(project, enabled=False)
    with stage_run(context(project), "profile"):
        pass
    set_lineage(project, enabled=True)
    monkeypatch.setenv("OPENLINEAGE_DISABLED", "true")
    with stage_run(context(project), "profile"):
        pass
    assert not (project / "var" / "lineage").exists()


# ---- a real run -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """`synthlake run` once, with the Spark listener on: the project's root and the events each file holds."""
    root = make_project(tmp_path_factory.mktemp("lineage"))
    set_lineage(root, spark_listener=True)
    started = time.monotonic()
    proc = subprocess.run([str(VENV_BIN / "synthlake"), "run", "conf/datasets/adult.yaml", "--run-id", RUN_ID],
                          cwd=root, env=project_env(root), capture_output=True, text=True, timeout=1200)
    print(f"\n[timing] synthlake run with lineage and the Spark listener {time.monotonic() - started:.1f}s")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    folder = root / "var" / "lineage"
    return root, read_events(folder / EVENTS_FILE), read_events(folder / SPARK_EVENTS_FILE)


def expected_datasets(root: Path) -> dict[str, tuple[set, set]]:
    """Each stage's (inputs, outputs) as (namespace, name): its run records, then what lies outside the run."""
    run = root / "var" / "runs" / "adult" / RUN_ID

    def records(*names: str) -> set:
        return {("file", str(run / name)) for name in names}

    source = ("file", str((REPO / "data" / "adult" / "adult.data").resolve()))
    lake = root / "var" / "lake"
    staging, published, audit = (("file", str(lake / name)) for name in ("adult_staging", "adult", "synthlake_audit"))
    model = (f"sqlite:///{root / 'var' / 'mlflow.db'}", "models:/synthlake-adult")
    return {
        "profile": ({source}, records("profile.json")),
        "check": ({source} | records("profile.json"), records("check.json")),
        "train": ({source} | records("profile.json", "check.json"), {model} | records("train.json", "model")),
        "sample": ({model} | records("train.json", "model"), {staging} | records("sample.json")),
        "validate": ({source, staging} | records("profile.json", "check.json", "train.json", "sample.json"),
                     records("gx_result.json", "validation.json", "report/report.html", "metrics.json",
                             "report/column_shapes.csv", "report/dcr.csv")),
        "publish": ({staging, model} | records("profile.json", "check.json", "train.json", "sample.json",
                                               "validation.json"),
                    {published, audit} | records("publish.json")),
    }


def names(datasets: list[dict]) -> set[tuple[str, str]]:
    return {(d["namespace"], d["name"]) for d in datasets}


@pytest.mark.slow
def test_each_stage_emits_start_and_complete_with_its_input_and_output_datasets(pipeline):
    root, events, _ = pipeline
    expected = expected_datasets(root)
    [pipeline_run] = {e["run"]["runId"] for e in events if e["job"]["name"] == "adult.run"}
    jobs = [(e["job"]["name"], e["eventType"]) for e in events]
    assert jobs == [("adult.run", "START"),
                    *[(f"adult.{stage}", state) for stage in STAGE_NAMES for state in ("START", "COMPLETE")],
                    ("adult.run", "COMPLETE")]
    for stage in STAGE_NAMES:
        start, complete = (e for e in events if e["job"]["name"] == f"adult.{stage}")
        assert start["run"]["runId"] == complete["run"]["runId"] != pipeline_run
        for event in (start, complete):
            assert event["job"]["namespace"] == "synthlake"
            assert (names(event["inputs"]), names(event["outputs"])) == expected[stage], (stage, event["eventType"])
            parent = event["run"]["facets"]["parent"]
            assert (parent["job"]["name"], parent["run"]["runId"]) == ("adult.run", pipeline_run)
            tags = {t["key"]: t["value"] for t in event["run"]["facets"]["tags"]["tags"]}
            assert tags["synthlake.run_id"] == RUN_ID and tags["synthlake.dataset"] == "adult"


@pytest.mark.slow
def test_the_registered_model_version_links_train_sample_and_publish(pipeline):
    root, events, _ = pipeline
    trained = json.loads((root / "var" / "runs" / "adult" / RUN_ID / "train.json").read_text())

    def model(event: dict, side: str) -> dict:
        return next(d for d in event[side] if d["name"] == "models:/synthlake-adult")

    completed = {e["job"]["name"].split(".")[1]: e for e in events if e["eventType"] == "COMPLETE"}
    assert model(completed["train"], "outputs")["facets"]["version"]["datasetVersion"] == trained["model_version"]
    for stage in ("sample", "publish"):
        assert model(completed[stage], "inputs")["facets"]["version"]["datasetVersion"] == trained["model_version"]


@pytest.mark.slow
def test_spark_events_hang_under_the_run_that_started_the_session(pipeline):
    root, events, spark_events = pipeline
    [pipeline_run] = {e["run"]["runId"] for e in events if e["job"]["name"] == "adult.run"}
    application = [e for e in spark_events if e["run"]["facets"].get("parent", {}).get("job", {}).get("name")
                   == "adult.run"]
    assert {e["eventType"] for e in application} >= {"START", "COMPLETE"}
    assert {e["run"]["facets"]["parent"]["run"]["runId"] for e in application} == {pipeline_run}
    # Spark names the datasets it reads and writes as the stage events do
    expected = expected_datasets(root)
    read = set().union(*(names(e.get("inputs") or []) for e in spark_events))
    written = set().union(*(names(e.get("outputs") or []) for e in spark_events))
    source = next(iter(expected["profile"][0]))
    published = ("file", str(root / "var" / "lake" / "adult"))
    assert source in read and published in written, (sorted(read), sorted(written))
