"""The cluster environment on a real Spark cluster, on one machine: pipelines.loopback_cluster starts a standalone
master, two workers of one core each and an MLflow server on 127.0.0.1, and `synthlake run --env cluster` runs
against them with the variables of its env.sh, training on the executors (one TorchDistributor process per
Spark barrier task).

What this proves: conf/env/cluster.yaml works against a standalone master and an MLflow server over HTTP; the
executors get the Delta jar from the driver and run the project's Python; training runs in the executors'
barrier tasks, rank 0 in an executor's working directory; the model is registered on the server, its files
uploaded through it. What it does not: several machines. Driver and executors share one filesystem here, so a
work_dir that is not really shared, or a lake the executors cannot reach, would pass.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import deltalake
import pytest
import yaml
from project_fixture import IVY_DIR, VENV_BIN, make_project, project_env

from pipelines import loopback_cluster
from pipelines.records import PublishRecord, SampleRecord, TrainRecord

ROWS = 2000
APP = "synthlake-run-adult"
LOST_EPOCHS = 8
LOST_RUN = "lost-rank"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    state = tmp_path_factory.mktemp("cluster")
    try:
        loopback_cluster.up(state)
        yield state
    finally:
        loopback_cluster.down(state)


def cluster_project(root: Path) -> Path:
    """A tiny project (two training processes: one per worker) whose cluster.yaml is the repo's, but for the
    repo's Ivy cache (it holds the Delta jar) and a 2-core cluster's partition counts."""
    make_project(root, params={"train": {"num_processes": 2}})
    path = root / "conf" / "env" / "cluster.yaml"
    env = yaml.safe_load(path.read_text())
    env["ivy_dir"] = str(IVY_DIR)
    env["spark"]["conf"].update({"spark.sql.shuffle.partitions": "4", "spark.databricks.delta.snapshotPartitions": "2"})
    path.write_text(yaml.safe_dump(env, sort_keys=False))
    return root


@pytest.fixture(scope="module")
def cluster_run(cluster, tmp_path_factory):
    """`synthlake run --env cluster` of Adult against the loopback cluster: (project root, its environment, the
    variables of env.sh, the run's output)."""
    exported = loopback_cluster.read_env(cluster)  # what `. env.sh` exports
    root = cluster_project(tmp_path_factory.mktemp("cluster-run") / "project")
    env = project_env(root, **{**exported, "SYNTHLAKE_WORK_DIR": str(root / "var"),
                               "SYNTHLAKE_LAKE_DIR": str(root / "var" / "lake")})
    started = time.monotonic()
    out = subprocess.run([str(VENV_BIN / "synthlake"), "run", "conf/datasets/adult.yaml", "--env", "cluster",
                          "--rows", str(ROWS)], cwd=root, env=env, capture_output=True, text=True, timeout=600)
    print(f"synthlake run on the loopback cluster: {time.monotonic() - started:.0f}s")
    return root, env, exported, out


@pytest.mark.slow
def test_a_run_on_the_loopback_cluster_trains_on_the_executors_and_registers_on_the_server(cluster, cluster_run):
    from mlflow import MlflowClient

    root, _, exported, out = cluster_run
    assert exported["SYNTHLAKE_ENV"] == "cluster" and exported["SPARK_MASTER_URL"].startswith("spark://127.0.0.1:")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "process(es) on the executors" in out.stdout

    (run_dir,) = (root / "var" / "runs" / "adult").iterdir()
    trained = TrainRecord.model_validate_json((run_dir / "train.json").read_text())
    published = PublishRecord.model_validate_json((run_dir / "publish.json").read_text())

    # the published Delta partition holds the rows asked for
    rows = deltalake.DeltaTable(published.published_table).to_pyarrow_table(
        filters=[("run_id", "=", run_dir.name)])
    assert rows.num_rows == published.rows == ROWS

    # training ran on the executors: rank 0 in an executor's working directory, WORKER/app-ID/EXECUTOR
    placement = trained.placement
    assert placement.train_on == "executors" and placement.processes == 2
    rank0_dir = Path(placement.rank0_working_dir)
    assert rank0_dir.parent.parent in [cluster / "worker-1", cluster / "worker-2"]
    app_id = rank0_dir.parent.name
    assert list(rank0_dir.glob("io.delta_delta-spark_*.jar"))  # the executors fetched the Delta jar from the driver
    assert all((cluster / w / app_id).is_dir() for w in ("worker-1", "worker-2"))  # an executor on each worker

    # the model version is registered on the MLflow server, its files uploaded through it
    uri = exported["MLFLOW_TRACKING_URI"]
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    version = client.get_model_version(trained.model_name, trained.model_version)
    assert version.status == "READY" and version.run_id == trained.mlflow_run_id
    assert client.get_model_version_by_alias(trained.model_name, "champion").version == trained.model_version
    params = client.get_run(trained.mlflow_run_id).data.params
    assert params["train_on"] == "executors" and params["rank0_working_dir"] == str(rank0_dir)
    assert list((cluster / "mlartifacts").rglob("MLmodel"))  # the server's --artifacts-destination

    # the master ran the application
    master = loopback_cluster.master_state(exported["SPARK_MASTER_UI"])
    apps = {a["id"]: a for a in master["activeapps"] + master["completedapps"]}
    assert apps[app_id]["name"] == APP


def test_a_process_that_fails_to_start_is_named_with_the_end_of_its_log(tmp_path, monkeypatch, capsys):
    spark = tmp_path / "spark"
    (spark / "bin").mkdir(parents=True)
    (spark / "bin" / "spark-class").write_text("#!/bin/sh\necho 'no JVM for this test' >&2\nexit 1\n")
    (spark / "bin" / "spark-class").chmod(0o755)
    monkeypatch.setattr(loopback_cluster, "spark_home", lambda: spark)
    state = tmp_path / "state"
    assert loopback_cluster.main(["up", "--state", str(state)]) == 1
    err = capsys.readouterr().err
    assert "exited while starting" in err and "no JVM for this test" in err
    assert not list((state / "pids").iterdir())  # what did start (MLflow) was stopped
    assert not (state / "env.sh").exists()


KILL_ROWS = 100_000  # 1000 seeded blocks of 100 rows (cluster_project's block_rows) over KILL_PARTITIONS tasks
KILL_PARTITIONS = 16


def training_processes() -> list:
    """The training processes running now: the children of the torchrun agents that TorchDistributor started."""
    import psutil

    agents = [p for p in psutil.process_iter(["cmdline"]) if "torch.distributed.run" in (p.info["cmdline"] or [])]
    return [c for a in agents for c in a.children()]


@pytest.mark.slow
def test_a_training_process_lost_on_an_executor_fails_the_attempt_and_the_retry_resumes(cluster, cluster_run):
    """The run's train stage again, with more epochs, and one of its two training processes (rank 0 or 1, each in
    a barrier task on its own executor) killed with SIGKILL once two epochs are checkpointed. The other process's
    collective fails, the barrier stage fails, and the train stage goes on until its model is written: Spark runs
    the barrier stage again, or the stage exits with one line and running it again does; either way the training
    resumes from the checkpoint in the run folder (shared storage) and the history holds every epoch once."""
    from synthlake.generators.training import CHECKPOINT_FILE

    root, env, _, _ = cluster_run
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["train"]["hyper"]["tabular_ar"] = {**params["train"]["hyper"].get("tabular_ar", {}),
                                              "epochs": LOST_EPOCHS, "patience": LOST_EPOCHS + 1}
    (root / "params-lost.yaml").write_text(yaml.safe_dump(params, sort_keys=False))

    def stage(name: str) -> list[str]:
        return [str(VENV_BIN / "synthlake"), name, "conf/datasets/adult.yaml", "--run-id", LOST_RUN,
                "--env", "cluster", "--params", "params-lost.yaml"]

    for name in ("profile", "check"):
        done = subprocess.run(stage(name), cwd=root, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    run_dir = root / "var" / "runs" / "adult" / LOST_RUN
    train = stage("train")
    checkpoint = run_dir / "train_checkpoints" / CHECKPOINT_FILE
    proc = subprocess.Popen(train, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    saves, seen, killed, started = 0, None, None, time.monotonic()
    while killed is None and proc.poll() is None and time.monotonic() - started < 400:
        stamp = checkpoint.stat().st_mtime_ns if checkpoint.exists() else None
        saves += stamp is not None and stamp != seen
        seen = stamp
        if saves >= 2 and (workers := training_processes()):
            killed = workers[-1].pid
            os.kill(killed, signal.SIGKILL)
        time.sleep(0.05)
    stdout, stderr = proc.communicate(timeout=600)
    print(f"train with a training process killed after {saves} checkpoints: {time.monotonic() - started:.0f}s, "
          f"exit {proc.returncode}")
    assert killed is not None, f"no training process to kill:\n{stdout[-2000:]}{stderr[-3000:]}"
    if proc.returncode != 0:
        assert proc.returncode == 3, stderr[-3000:]
        # our one line (Spark's JVM may log the killed barrier tasks after it, as the application stops)
        assert any(line.startswith("error: a training process failed or was lost") for line in stderr.splitlines()), \
            stderr[-3000:]
        again = subprocess.run(train, cwd=root, env=env, capture_output=True, text=True, timeout=600)
        assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
        stdout, stderr = again.stdout, again.stderr
    # rank 0's progress lines, streamed back to the driver by TorchDistributor (on its stderr)
    epochs = [int(n) for n in re.findall(rf"train: epoch (\d+)/{LOST_EPOCHS}", stdout + stderr)]
    assert epochs and epochs[0] >= 3 and epochs[-1] == LOST_EPOCHS, epochs  # resumed after the second epoch
    trained = TrainRecord.model_validate_json((run_dir / "train.json").read_text())
    assert trained.epochs == LOST_EPOCHS and not checkpoint.exists()


@pytest.mark.slow
def test_a_worker_killed_mid_sample_loses_no_rows_and_adds_none(cluster, cluster_run):
    """The run's sample stage twice on the cluster with the same run id and seed: once clean, once with worker-1
    (its JVM and its executor's JVM and Python workers: one process group) killed with SIGKILL once a task has
    finished and most still have to run. Spark re-runs the lost tasks on worker-2 and the staged rows are the
    clean sample's, row for row: blocks are seeded by index alone, and the driver commits only the files that
    successful tasks report, in one Delta commit (pipelines.delta_files).

    The files of killed attempts: a task killed before its writer flushed left none (the arrow writer opens its
    Parquet file at its first flush, here at the task's end); one killed while writing leaves a partial file, and
    a task of the killed executor that had finished but whose result the driver had not received leaves a
    complete one. No Delta version references them, so no reader sees them, but nothing removes them either:
    the task's abort() (best effort) cannot run in a killed process, and synthlake never runs VACUUM. They stay
    on disk, with the files that replacing the partition dropped from the table, until someone runs VACUUM.

    It runs last in this module: the cluster is left with one worker.
    """
    root, env, _, out = cluster_run
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    (run_dir,) = [d for d in (root / "var" / "runs" / "adult").iterdir() if d.name != LOST_RUN]  # cluster_run's
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["sample"]["partitions"] = KILL_PARTITIONS
    (root / "params-kill.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    sample = [str(VENV_BIN / "synthlake"), "sample", "conf/datasets/adult.yaml", "--run-id", run_dir.name,
              "--env", "cluster", "--rows", str(KILL_ROWS), "--params", "params-kill.yaml"]

    def staged() -> list[dict]:
        record = SampleRecord.model_validate_json((run_dir / "sample.json").read_text())
        rows = deltalake.DeltaTable(record.staging_table).to_pyarrow_table(filters=[("run_id", "=", run_dir.name)])
        return rows.sort_by([(c, "ascending") for c in rows.column_names]).to_pylist()

    started = time.monotonic()
    clean = subprocess.run(sample, cwd=root, env=env, capture_output=True, text=True, timeout=600)
    print(f"clean sample of {KILL_ROWS} rows on the cluster: {time.monotonic() - started:.0f}s")
    assert clean.returncode == 0, clean.stdout[-3000:] + clean.stderr[-3000:]
    expected = staged()
    assert len(expected) == KILL_ROWS

    record = SampleRecord.model_validate_json((run_dir / "sample.json").read_text())
    part_dir = Path(record.staging_table) / f"run_id={run_dir.name}"
    old_files = set(part_dir.glob("*.parquet"))
    pid, started_at = loopback_cluster.processes(cluster)["worker-1"]
    started = time.monotonic()
    proc = subprocess.Popen(sample, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killed_at = None
    while proc.poll() is None and time.monotonic() - started < 300:
        if set(part_dir.glob("*.parquet")) - old_files:  # a task has finished; most are still to run
            os.killpg(pid, signal.SIGKILL)
            killed_at = time.monotonic() - started
            break
        time.sleep(0.05)
    stdout, stderr = proc.communicate(timeout=600)
    print(f"sample with worker-1 killed at {killed_at}s: {time.monotonic() - started:.0f}s")
    assert killed_at is not None, f"sample ended before a task finished:\n{stdout[-2000:]}{stderr[-3000:]}"
    assert proc.returncode == 0, stdout[-3000:] + stderr[-3000:]
    assert not loopback_cluster.alive(pid, started_at)  # the worker and its executor are gone
    assert "Lost executor" in stderr or "ExecutorLostFailure" in stderr, stderr[-3000:]
    assert staged() == expected  # row for row: none lost, none twice
