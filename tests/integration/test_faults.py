"""Faults in local mode (the issue "a pipeline that survives faults"): two runs of one dataset at once, sharing
the published table, the audit table and the MLflow store; a publish killed with SIGKILL while it writes, and
publish run again for the same run id.

One tiny project (make_project) serves the module: the two concurrent runs are its fixture, and the kill test
re-publishes the first of them. No Spark or Delta is mocked: every stage runs in `synthlake` subprocesses and
the tables are read back with delta-rs (deltalake), as any other reader would.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import deltalake
import pytest
from project_fixture import VENV_BIN, make_project, project_env

from pipelines.records import PublishRecord, SampleRecord

CONFIG = "conf/datasets/adult.yaml"
RUNS = {"fault-a": 200, "fault-b": 300}  # run id -> rows: different counts tell the partitions apart


def synthlake(root: Path, *args: str) -> subprocess.Popen:
    """A `synthlake` subprocess in the project, in a process group of its own (its JVM included)."""
    return subprocess.Popen([str(VENV_BIN / "synthlake"), *args], cwd=root, env=project_env(root),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def partition(table: str, run_id: str) -> list[dict]:
    """A run's rows in a Delta table, as a reader sees its latest version, sorted (on every column by name)."""
    rows = deltalake.DeltaTable(table).to_pyarrow_table(filters=[("run_id", "=", run_id)]).to_pylist()
    return sorted(rows, key=lambda row: [(v is None, v if v is not None else 0) for _, v in sorted(row.items())])


@pytest.fixture(scope="module")
def concurrent(tmp_path_factory):
    """Two `synthlake run`s of the same dataset started together; their outputs by run id, and the project."""
    root = make_project(tmp_path_factory.mktemp("faults") / "project")
    started = time.monotonic()
    procs = {run_id: synthlake(root, "run", CONFIG, "--run-id", run_id, "--rows", str(rows))
             for run_id, rows in RUNS.items()}
    outs = {}
    for run_id, proc in procs.items():
        try:  # one deadline for both: they run at once
            out, _ = proc.communicate(timeout=max(1.0, 600 - (time.monotonic() - started)))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
        outs[run_id] = (proc.returncode, out)
    print(f"two concurrent runs: {time.monotonic() - started:.0f}s")
    for run_id, (_, out) in outs.items():
        print("".join(f"{run_id}: {line}\n" for line in out.splitlines() if "retrying in" in line), end="")
    return root, outs


@pytest.mark.slow
def test_two_runs_of_one_dataset_at_once_both_publish(concurrent):
    root, outs = concurrent
    for run_id, (code, out) in outs.items():
        assert code == 0, f"{run_id}:\n{out[-6000:]}"
    records = {run_id: PublishRecord.model_validate_json(
        (root / "var" / "runs" / "adult" / run_id / "publish.json").read_text()) for run_id in RUNS}
    (published,) = {r.published_table for r in records.values()}  # one published table
    (audit,) = {r.audit_table for r in records.values()}
    for run_id, rows in RUNS.items():
        assert records[run_id].rows == rows
        assert len(partition(published, run_id)) == rows
    audit_rows = deltalake.DeltaTable(audit).to_pyarrow_table(columns=["run_id", "rows"]).to_pylist()
    assert sorted(audit_rows, key=lambda r: r["run_id"]) == [{"run_id": k, "rows": v} for k, v in RUNS.items()]


@pytest.mark.slow
def test_a_publish_killed_while_writing_leaves_the_old_partition_and_a_rerun_completes(concurrent):
    """SIGKILL to the publish process group (driver and JVM) as soon as Spark has written a data file of the new
    partition and before its commit, if the poll catches that window (else after the commit, which must hold
    too). Delta commits the partition's removes and adds in one log entry: readers see the old rows or the new
    ones, never a mix, never both. The data files of the killed write stay on disk, unreferenced, until a VACUUM
    (nothing in synthlake runs one). Publishing the run again replaces the partition with exactly its rows."""
    root, outs = concurrent
    run_id = "fault-a"
    assert outs[run_id][0] == 0, outs[run_id][1][-6000:]
    record = PublishRecord.model_validate_json((root / "var" / "runs" / "adult" / run_id / "publish.json").read_text())
    table = Path(record.published_table)
    staging = SampleRecord.model_validate_json((root / "var" / "runs" / "adult" / run_id / "sample.json").read_text())
    before = partition(str(table), run_id)
    assert len(before) == RUNS[run_id] and before == partition(staging.staging_table, run_id)

    def files() -> set[Path]:
        return {p for p in table.rglob("*.parquet") if "_delta_log" not in p.parts}

    version_before = deltalake.DeltaTable(str(table)).version()
    old_files = files()
    started = time.monotonic()
    proc = synthlake(root, "publish", CONFIG, "--run-id", run_id)
    killed = False
    while proc.poll() is None and time.monotonic() - started < 300:
        if files() - old_files:  # Spark is writing the new partition's files
            os.killpg(proc.pid, signal.SIGKILL)
            killed = True
            break
        time.sleep(0.01)
    out, _ = proc.communicate(timeout=60)
    assert killed, f"publish ended before it wrote a file (exit {proc.returncode}):\n{out[-4000:]}"
    version_after = deltalake.DeltaTable(str(table)).version()
    print(f"publish killed after {time.monotonic() - started:.1f}s, "
          f"{'before' if version_after == version_before else 'after'} its commit")

    after_kill = partition(str(table), run_id)
    assert len(after_kill) == RUNS[run_id]  # the old partition or the new one, whole
    assert after_kill == before
    if version_after == version_before:  # killed before the commit: its files are on disk, in no version
        live = {Path(uri.removeprefix("file://")).resolve() for uri in deltalake.DeltaTable(str(table)).file_uris()}
        assert files() - old_files and not (files() - old_files) & live

    rerun = subprocess.run([str(VENV_BIN / "synthlake"), "publish", CONFIG, "--run-id", run_id], cwd=root,
                           env=project_env(root), capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stdout[-4000:] + rerun.stderr[-4000:]
    republished = partition(str(table), run_id)
    assert len(republished) == RUNS[run_id] and republished == before  # no duplicates, no loss
    assert len(partition(str(table), "fault-b")) == RUNS["fault-b"]  # the other run's partition untouched
    audit = deltalake.DeltaTable(record.audit_table).to_pyarrow_table(columns=["run_id"]).column("run_id")
    assert sorted(audit.to_pylist()) == sorted(RUNS)  # one audit row per run id, the rerun's updated in place
