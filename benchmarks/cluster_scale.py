"""Outgrowing one machine (issue 12): the train stage at 100k, 1M and 10M rows, in local mode and on a cluster.

    .venv/bin/python benchmarks/cluster_scale.py [--rows 100000 1000000 10000000] [--placements local cluster]
        [--epochs 3] [--sample-rows 100000000] [--peer-max-rows 1000000] [--work var/bench/cluster_scale]

For each N it makes a census-like source of N rows as Parquet (adult.data resampled with replacement by a seeded
numpy generator, its integer columns jittered and kept integers: age and hours-per-week +-1, fnlwgt and non-zero
capital gains and losses +-5%), written in row groups of --chunk-rows so that 10M rows never sit in memory at
once, and kept under the work folder for later runs with the same N and seed. Then, per placement, it writes a
dataset config (adult.yaml's columns, the Parquet source, tables named per N) and a params file (params.yaml
with train.max_rows = N, tabular_ar's epochs = patience = --epochs so every run does the same work,
val_fraction --val-fraction), and runs `synthlake profile`, `check` and `train` for one run id as subprocesses
(--retrain always: nothing is reused from an earlier run) in a throwaway project under the work folder
(SYNTHLAKE_HOME: its own conf/env, lake, run folders and MLflow store; the repo's Ivy cache):

- local: conf/env/local.yaml as the repo has it (Spark local[2], training in TorchDistributor's local mode);
- cluster: pipelines.loopback_cluster's standalone master with --workers workers of --worker-cores cores and an
  MLflow server, conf/env/cluster.yaml as the repo has it (training in barrier tasks on the executors), with
  the variables of its env.sh, the repo's Ivy cache and local.yaml's shuffle and snapshot partitions (4, 2).

What it measures, per stage process:
- wall seconds of the process (Spark's start and the imports included) and the stage's own seconds (its
  "[synthlake] STAGE: done in" line); the train stage's phases from the times its log lines arrive: the stage's
  first line (imports, Spark's start), then its "encoding" line (what comes before encoding: reading the rows,
  fitting rules), its "process(es) on the" line (encoding, on the driver or on Spark), each "epoch k/N" line
  (torchrun's start-up and epoch 1, then the later epochs), its "done in" line (saving, MLflow);
- training rows/s: train.json's training_rows x epochs / the train process's wall seconds; and per epoch,
  training_rows / the mean time between consecutive "[synthlake] train: epoch k/N" lines (epochs 2 on: no
  start-up in them; needs --epochs 2 or more). training_rows includes the val_fraction rows the loop only scores;
- peak RSS, polled every 0.2 s and summed over each group of processes, the peak of each sum: the driver's
  Python (the synthlake process), its JVM (java children), the training processes (TorchDistributor's wrapper,
  torchrun and what it starts: children of the driver in local mode, of the executors on the cluster), Spark's
  Python workers (other python processes under the JVMs), and on the cluster the executor JVMs (the workers' own
  JVMs apart). RSS counts shared pages in each process. The JSON lists each group's processes.

--sample-rows (0 skips) runs `synthlake sample --rows R` on the cluster for the largest N's run id (the stage's
default writer, `arrow`, and --sample-partitions tasks), and reports rows/s (the stage's own seconds and the
process's), the Parquet files its Delta commit added to the run's partition (from the table's _delta_log), the
time between the last file finished on an executor (its add action's modificationTime) and the commit's
timestamp (collecting the file list, starting delta-rs, the commit), and the commit alone, replayed: the same
add actions committed by pipelines.delta_files.commit, in this process, into a fresh table and again over it.

The peer: mostlyai-engine's TabularARGN (benchmarks/peer_mostlyai.py in .venv-peer, `make peer-env`) trained
on the same Parquet for each N up to --peer-max-rows, max_epochs --epochs, 2 torch threads, no sampling; its
fit() seconds, rows/s (N x epochs / seconds) and the peak RSS of its process tree.

Prints the tables (markdown) and writes every figure to WORK.json (next to the work folder). Each stage's log
is under WORK/logs. A stage that fails is reported with its exit code and the run goes on.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import psutil
import pyarrow as pa
import pyarrow.parquet as pq
import yaml
from adult_data import ROOT, load_adult  # benchmarks/ is on sys.path when a script in it runs

from pipelines import loopback_cluster

VENV_BIN = Path(sys.executable).parent
PEER_PYTHON = ROOT / ".venv-peer" / "bin" / "python"
POLL_S = 0.2
MB = 1 << 20
# integer columns of Adult: ("add", k, low, high): +-k, clipped; ("scale", f): times 1 +- f, rounded, 0 stays 0
JITTER = {"age": ("add", 1, 17, 90), "fnlwgt": ("scale", 0.05), "hours-per-week": ("add", 1, 1, 99),
          "capital-gain": ("scale", 0.05), "capital-loss": ("scale", 0.05)}  # education-num follows education
# the processes TorchDistributor starts for training (its wrapper, then torchrun), and their children
TRAINING = ("pyspark.ml.torch.torch_run_process_wrapper", "torch.distributed.run", "torchrun")
EPOCH_LINE = re.compile(r"\[synthlake\] train: epoch (\d+)/(\d+)")
DONE_LINE = re.compile(r"\[synthlake\] (\w+): done in ([0-9.]+)s")


# ---- the source ---------------------------------------------------------------------------------------
def make_source(folder: Path, n: int, seed: int, chunk_rows: int) -> dict:
    """The census-like Parquet of n rows (reused when present with n rows); returns its path and how it came."""
    path = folder / f"census_n{n}_seed{seed}.parquet"
    if path.exists() and pq.ParquetFile(path).metadata.num_rows == n:
        return {"rows": n, "path": str(path), "reused": True, "seconds": 0.0, "bytes": path.stat().st_size}
    folder.mkdir(parents=True, exist_ok=True)
    adult, _, metadata = load_adult()
    schema = pa.schema([(c.name, pa.int64() if c.kind == "numeric" else pa.string()) for c in metadata.columns])
    base = pa.Table.from_pandas(adult.reset_index(drop=True), schema=schema, preserve_index=False)
    numbers = {name: base.column(name).to_numpy() for name in JITTER}
    rng = np.random.default_rng(seed)
    started = time.perf_counter()
    tmp = path.with_suffix(".parquet.tmp")
    with pq.ParquetWriter(tmp, schema, compression="zstd") as writer:
        done = 0
        while done < n:
            k = min(chunk_rows, n - done)
            rows = rng.integers(0, base.num_rows, k)
            part = base.take(pa.array(rows))
            for name, how in JITTER.items():
                values = numbers[name][rows]
                if how[0] == "add":
                    values = np.clip(values + rng.integers(-how[1], how[1] + 1, k), how[2], how[3])
                else:
                    values = np.rint(values * rng.uniform(1 - how[1], 1 + how[1], k)).astype(np.int64)
                part = part.set_column(schema.get_field_index(name), name, pa.array(values, pa.int64()))
            writer.write_table(part, row_group_size=chunk_rows)
            done += k
    tmp.rename(path)
    return {"rows": n, "path": str(path), "reused": False, "seconds": time.perf_counter() - started,
            "bytes": path.stat().st_size}


# ---- the throwaway project -----------------------------------------------------------------------------
def make_project(root: Path, driver_memory: str | None) -> Path:
    """ROOT's conf/env under `root`: local.yaml's stores moved into root/var, both environments on the repo's
    Ivy cache (it holds the Delta jar); cluster.yaml with local.yaml's shuffle and snapshot partitions."""
    env_dir = root / "conf" / "env"
    (root / "conf" / "datasets").mkdir(parents=True, exist_ok=True)
    env_dir.mkdir(parents=True, exist_ok=True)
    var = root / "var"
    var.mkdir(exist_ok=True)
    local = yaml.safe_load((ROOT / "conf/env/local.yaml").read_text())
    local.update(work_dir=str(var), lake_dir=str(var / "lake"), ivy_dir=str(ROOT / "var" / "ivy"),
                 mlflow={**local["mlflow"], "tracking_uri": f"sqlite:///{var / 'mlflow.db'}",
                         "artifact_location": str(var / "mlartifacts")})
    local["openlineage"] = {**local.get("openlineage", {}), "path": str(var / "lineage")}
    cluster = yaml.safe_load((ROOT / "conf/env/cluster.yaml").read_text())
    cluster["ivy_dir"] = str(ROOT / "var" / "ivy")
    cluster["spark"]["conf"].update({"spark.sql.shuffle.partitions": "4",
                                     "spark.databricks.delta.snapshotPartitions": "2"})
    for env in (local, cluster):
        if driver_memory:
            env["spark"]["conf"]["spark.driver.memory"] = driver_memory
    (env_dir / "local.yaml").write_text(yaml.safe_dump(local, sort_keys=False))
    (env_dir / "cluster.yaml").write_text(yaml.safe_dump(cluster, sort_keys=False))
    return root


def write_config(project: Path, n: int, source: str) -> Path:
    config = yaml.safe_load((ROOT / "conf/datasets/adult.yaml").read_text())
    name = f"census_n{n}"
    config.update(name=name, source={"path": source, "format": "parquet"},
                  output={"staging": f"{name}_staging", "published": name, "audit": f"{name}_audit"})
    config.pop("schedule", None)
    path = project / "conf" / "datasets" / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def write_params(project: Path, n: int, args) -> Path:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["train"]["max_rows"] = max(n, 100)
    params["train"]["hyper"]["tabular_ar"] = {"epochs": args.epochs, "patience": args.epochs,
                                              "val_fraction": args.val_fraction}
    params["sample"]["partitions"] = args.sample_partitions
    path = project / f"params_n{n}.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def subprocess_env(project: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SYNTHLAKE_", "PYSPARK_"))}
    env.update(SYNTHLAKE_HOME=str(project), PATH=os.pathsep.join([str(VENV_BIN), env.get("PATH", "")]),
               PYSPARK_PYTHON=sys.executable, MLFLOW_DISABLE_TELEMETRY="true", GX_ANALYTICS_ENABLED="false",
               DVC_NO_ANALYTICS="1", DO_NOT_TRACK="1", **(extra or {}))
    return env


# ---- running one process, watched -----------------------------------------------------------------------
class Watch:
    """Peak RSS by group over a process tree (and, on the cluster, the workers' trees), polled."""

    def __init__(self, root_pid: int, worker_pids: list[int]):
        self.root_pid, self.worker_pids = root_pid, worker_pids
        self.peaks: dict[str, int] = defaultdict(int)
        self.members: dict[str, set[str]] = defaultdict(set)  # what each group held: "name module-or-class"

    def poll(self) -> None:
        sums: dict[str, int] = defaultdict(int)
        for top, side in [(self.root_pid, "driver")] + [(pid, "cluster") for pid in self.worker_pids]:
            try:
                top_proc = psutil.Process(top)
                tree = [top_proc] + top_proc.children(recursive=True)
            except psutil.Error:
                continue
            info = {}
            for proc in tree:
                try:
                    # read each time: spark-class execs java in the same process (same pid, new cmdline)
                    info[proc.pid] = (proc.ppid(), " ".join(proc.cmdline()), proc.memory_info().rss)
                except psutil.Error:
                    continue
            training = {pid for pid, (_, cmd, _) in info.items() if any(w in cmd for w in TRAINING)}
            for pid, (ppid, cmd, rss) in info.items():
                sums[f"{side}_tree"] += rss if pid != top or side == "driver" else 0
                group = self._group(pid, ppid, cmd, info, training, top, side)
                sums[group] += rss
                self.members[group].add(_short(cmd))
        for group, total in sums.items():
            self.peaks[group] = max(self.peaks[group], total)

    @staticmethod
    def _group(pid, ppid, cmd, info, training, top, side) -> str:
        up = pid
        while up in info:  # a training process, or a child of one
            if up in training:
                return "training"
            up = info[up][0]
        if pid == top:
            return "driver_python" if side == "driver" else "cluster_daemons"  # the worker JVMs themselves
        program = Path(cmd.split(" ", 1)[0]).name
        if program == "java":
            return "driver_jvm" if side == "driver" else "executor_jvm"
        if program.startswith("python"):
            return "python_workers" if side == "driver" else "executor_python"
        return f"{side}_other"  # spark-submit's bash, jspawnhelper, chmod


def _short(cmd: str) -> str:
    """A process as the JSON lists it: its program and its module (-m) or main class."""
    words = cmd.split()
    if not words:
        return "?"
    main = next((w for w in words[1:] if re.match(r"^(-m|org\.apache\.|[\w/.-]+\.py$)", w)), "")
    if main == "-m" and words.index("-m") + 1 < len(words):
        main = "-m " + words[words.index("-m") + 1]
    elif not main and len(words) > 1 and not words[1].startswith("-"):  # a script: .venv/bin/synthlake
        main = Path(words[1]).name
    return f"{Path(words[0]).name} {main}".strip()


def run_watched(cmd: list[str], env: dict[str, str], log: Path, worker_pids: list[int] | None = None) -> dict:
    """Run cmd, timestamp its output lines as they come (seconds since start), poll its memory; its log to `log`."""
    log.parent.mkdir(parents=True, exist_ok=True)
    lines: list[tuple[float, str, str]] = []
    started = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env,
                            cwd=env.get("SYNTHLAKE_HOME", str(ROOT)), text=True, errors="replace", bufsize=1)
    lock = threading.Lock()

    def read(stream, name):
        for line in stream:
            with lock:
                lines.append((time.monotonic() - started, name, line.rstrip("\n")))

    readers = [threading.Thread(target=read, args=(proc.stdout, "out"), daemon=True),
               threading.Thread(target=read, args=(proc.stderr, "err"), daemon=True)]
    for reader in readers:
        reader.start()
    watch = Watch(proc.pid, worker_pids or [])
    while proc.poll() is None:
        watch.poll()
        time.sleep(POLL_S)
    wall = time.monotonic() - started
    for reader in readers:
        reader.join()
    with log.open("w") as out:
        out.write(f"$ {' '.join(cmd)}\n")
        out.writelines(f"{t:9.2f} {name} {text}\n" for t, name, text in lines)
    peaks = {k: v / MB for k, v in watch.peaks.items()}
    members = {k: sorted(v) for k, v in watch.members.items()}
    tail = [text for _, name, text in lines if name == "err"][-15:]
    return {"rc": proc.returncode, "wall_s": wall, "peak_mb": peaks, "processes": members, "lines": lines,
            "log": str(log),
            "error_tail": None if proc.returncode == 0 else "\n".join(tail)}


def stage_seconds(lines, stage: str) -> float | None:
    for _, _, text in lines:
        m = DONE_LINE.search(text)
        if m and m.group(1) == stage:
            return float(m.group(2))
    return None


def first_time(lines, needle: str) -> float | None:
    return next((t for t, _, text in lines if needle in text), None)


def train_phases(lines) -> dict:
    """When the train stage's lines came (seconds since the process started) and what lies between them."""
    epochs: dict[int, float] = {}
    for t, _, text in lines:
        m = EPOCH_LINE.search(text)
        if m:
            epochs.setdefault(int(m.group(1)), t)  # each rank prints it: the first one
    begun, encoding = first_time(lines, "[synthlake] train: run "), first_time(lines, ", encoding ")
    fitting, done = first_time(lines, " process(es) on the "), first_time(lines, "[synthlake] train: done in")
    ks = sorted(epochs)
    gaps = [epochs[k] - epochs[j] for j, k in zip(ks, ks[1:], strict=False) if k == j + 1]

    def span(a, b):
        return None if a is None or b is None else b - a

    return {"start_s": begun, "before_encoding_s": span(begun, encoding), "encoding_s": span(encoding, fitting),
            "first_epoch_s": span(fitting, epochs.get(1)), "epoch_s": sum(gaps) / len(gaps) if gaps else None,
            "after_last_epoch_s": span(epochs[ks[-1]] if ks else None, done), "epoch_times": epochs}


# ---- the pipeline runs ---------------------------------------------------------------------------------
def stage_run(run_id: str, stage: str, cmd: list[str], env: dict[str, str], work: Path,
              worker_pids: list[int]) -> tuple[dict, list]:
    """One `synthlake STAGE` process, watched: its figures (with "failed" when it exits non-zero) and its lines."""
    print(f"[cluster_scale] {run_id}: {stage} ...", flush=True)
    result = run_watched(cmd, env, work / "logs" / f"{run_id}-{stage}.log", worker_pids)
    lines = result.pop("lines")
    result["stage_s"] = stage_seconds(lines, stage)
    print(f"[cluster_scale] {run_id}: {stage} exit {result['rc']}, {result['wall_s']:.1f} s"
          + (f"\n{result['error_tail']}" if result["rc"] else ""), flush=True)
    if result["rc"] != 0:
        result["failed"] = f"{stage} exit {result['rc']}"
    return result, lines


def train_run(n: int, placement: str, config: Path, params: Path, env: dict[str, str], work: Path,
              worker_pids: list[int], run_dir_root: Path) -> dict:
    run_id = f"{placement}-n{n}-{datetime.now(UTC):%Y%m%dT%H%M%S}"
    synthlake = str(VENV_BIN / "synthlake")
    out = {"n": n, "placement": placement, "run_id": run_id, "stages": {}}
    for stage in ("profile", "check", "train"):
        cmd = [synthlake, stage, str(config), "--run-id", run_id, "--params", str(params), "--env", placement,
               "--retrain", "always"]
        result, lines = stage_run(run_id, stage, cmd, env, work, worker_pids)
        if stage == "train":
            result["phases"] = train_phases(lines)
        out["stages"][stage] = result
        if result["rc"] != 0:
            out["failed"] = result.pop("failed")
            return out
    record = json.loads((run_dir_root / config.stem / run_id / "train.json").read_text())
    train = out["stages"]["train"]
    out.update(training_rows=record["training_rows"], epochs=record["epochs"], placement_record=record.get("placement"))
    out["rows_per_s"] = record["training_rows"] * record["epochs"] / train["wall_s"]
    epoch_s = train["phases"]["epoch_s"]
    out["rows_per_s_per_epoch"] = record["training_rows"] / epoch_s if epoch_s else None
    return out


def sample_run(trained: dict, rows: int, config: Path, params: Path, env: dict[str, str], work: Path,
               worker_pids: list[int], run_dir_root: Path) -> dict:
    run_id = trained["run_id"]
    cmd = [str(VENV_BIN / "synthlake"), "sample", str(config), "--run-id", run_id, "--params", str(params), "--env",
           "cluster", "--rows", str(rows)]
    result, _ = stage_run(run_id, "sample", cmd, env, work, worker_pids)
    result.update(n=trained["n"], run_id=run_id, rows=rows)
    if result["rc"] != 0:
        return result
    record = json.loads((run_dir_root / config.stem / run_id / "sample.json").read_text())
    result["staged_rows"] = record["rows"]
    result["partitions"] = record["partitions"]
    result["rows_per_s_stage"] = record["rows"] / result["stage_s"] if result["stage_s"] else None
    result["rows_per_s_wall"] = record["rows"] / result["wall_s"]
    result.update(delta_files(record["staging_table"], run_id, work / "commit_replay"))
    return result


def delta_files(table: str, run_id: str, scratch: Path) -> dict:
    """The run's files in the Delta table's log, the commit's lag after the last of them, and the commit replayed."""
    from pipelines import delta_files as writer

    live: dict[str, dict] = {}
    commit_ts = None
    for log in sorted(Path(table, "_delta_log").glob("*.json")):
        for line in log.read_text().splitlines():
            action = json.loads(line)
            if "add" in action:
                live[action["add"]["path"]] = action["add"]
            elif "remove" in action:
                live.pop(action["remove"]["path"], None)
            elif "commitInfo" in action:
                commit_ts = action["commitInfo"].get("timestamp", commit_ts)
    files = [a for a in live.values() if a.get("partitionValues", {}).get("run_id") == run_id]
    out = {"files": len(files), "file_rows": [json.loads(a["stats"])["numRecords"] for a in files if a.get("stats")],
           "bytes": sum(a["size"] for a in files)}
    last_file = max((a["modificationTime"] for a in files), default=None)
    out["commit_lag_s"] = None if commit_ts is None or last_file is None else (commit_ts - last_file) / 1000
    if not files:
        return out
    # the commit alone: the same add actions, into a fresh table (as a first run) and again over it
    shutil.rmtree(scratch, ignore_errors=True)
    schema = pq.read_schema(Path(table, files[0]["path"])).append(pa.field("run_id", pa.string()))
    replay = [{"path": a["path"], "size": a["size"], "modified": a["modificationTime"], "stats": a.get("stats")}
              for a in files]
    started = time.perf_counter()
    writer.commit(str(scratch), replay, schema, ("run_id", run_id))
    out["commit_create_s"] = time.perf_counter() - started
    started = time.perf_counter()
    writer.commit(str(scratch), replay, schema, ("run_id", run_id))
    out["commit_replace_s"] = time.perf_counter() - started
    shutil.rmtree(scratch, ignore_errors=True)
    return out


def peer_run(n: int, source: str, args, work: Path) -> dict:
    folder = work / "peer" / f"n{n}"
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "workspace").mkdir(parents=True)
    job = {"train": source, "workspace": str(folder / "workspace"), "seed": 0, "max_training_time": 100_000,
           "max_epochs": args.epochs, "train_threads": 2, "tasks": []}
    (folder / "job.json").write_text(json.dumps(job))
    print(f"[cluster_scale] mostlyai-engine, n={n} ...", flush=True)
    cmd = [str(PEER_PYTHON), str(ROOT / "benchmarks" / "peer_mostlyai.py"), str(folder / "job.json"),
           str(folder / "result.json")]
    result = run_watched(cmd, {**os.environ, "SYNTHLAKE_HOME": str(ROOT)}, work / "logs" / f"peer-n{n}.log")
    result.pop("lines")
    result.update(n=n, placement="mostlyai-engine")
    print(f"[cluster_scale] mostlyai-engine, n={n}: exit {result['rc']}, {result['wall_s']:.1f} s"
          + (f"\n{result['error_tail']}" if result["rc"] else ""), flush=True)
    if result["rc"] != 0:
        result["failed"] = f"exit {result['rc']}"
        return result
    peer = json.loads((folder / "result.json").read_text())
    result.update(version=peer["version"], train_s=peer["train_s"], epochs=peer["epochs"],
                  training_rows=peer.get("rows", n))
    result["rows_per_s"] = result["training_rows"] * (peer["epochs"] or 0) / peer["train_s"]
    shutil.rmtree(folder / "workspace", ignore_errors=True)
    return result


# ---- the report ----------------------------------------------------------------------------------------
def fmt(value, spec: str = ",.0f") -> str:
    return "-" if value is None else format(value, spec)


def tables(results: dict) -> str:
    labels = {"local": results["local_label"], "cluster": results["cluster_label"]}
    out = ["| N | placement | training rows | epochs | train stage s (process; stage's own) | training rows/s "
           "(per epoch, epochs 2+) | driver Python peak RSS MB | JVM peak RSS MB | training processes' peak RSS MB "
           "| Spark Python workers MB | executor JVMs MB |", "|" + "---|" * 11]
    rows = sorted(results["train"] + results["peer"], key=lambda r: (r["n"], r["placement"] == "mostlyai-engine"))
    for r in rows:
        if r["placement"] == "mostlyai-engine":
            p = r["peak_mb"]
            if r.get("failed"):
                out.append(f"| {r['n']:,} | mostlyai-engine | failed: {r['failed']} |" + " |" * 8)
                continue
            out.append(f"| {r['n']:,} | mostlyai-engine {r['version']} (2 threads) | {r['training_rows']:,} | "
                       f"{fmt(r['epochs'], 'g')} | {r['train_s']:.1f} (fit(); process {r['wall_s']:.1f}) | "
                       f"{r['rows_per_s']:,.0f} | {fmt(p.get('driver_python'))} (the whole process) | - | "
                       f"{fmt(p.get('training'))} | {fmt(p.get('python_workers'))} | - |")
            continue
        if r.get("failed"):
            out.append(f"| {r['n']:,} | {labels[r['placement']]} | failed: {r['failed']} |" + " |" * 8)
            continue
        t = r["stages"]["train"]
        p = t["peak_mb"]
        cluster = r["placement"] == "cluster"
        out.append(f"| {r['n']:,} | {labels[r['placement']]} | {r['training_rows']:,} | {r['epochs']} | "
                   f"{t['wall_s']:.1f}; {fmt(t['stage_s'], '.1f')} | {r['rows_per_s']:,.0f} "
                   f"({fmt(r['rows_per_s_per_epoch'])}) | {fmt(p.get('driver_python'))} | "
                   f"{fmt(p.get('driver_jvm'))} | {fmt(p.get('training'))} | "
                   f"{fmt(p.get('executor_python' if cluster else 'python_workers'))} | "
                   f"{fmt(p.get('executor_jvm')) if cluster else '-'} |")
    out += ["", "| N | placement | profile s (process; own) | check s | train: imports + Spark start s | to the "
            "encoding line s | encoding s | torchrun start + epoch 1 s | later epochs s/epoch | save + MLflow s |",
            "|" + "---|" * 10]
    for r in results["train"]:
        if r.get("failed") and "train" not in r["stages"]:
            continue
        s = r["stages"]
        ph = s["train"].get("phases", {})
        out.append(f"| {r['n']:,} | {labels[r['placement']]} | {s['profile']['wall_s']:.1f}; "
                   f"{fmt(s['profile']['stage_s'], '.1f')} | {s['check']['wall_s']:.1f} | "
                   + " | ".join(fmt(ph.get(k), ".1f") for k in ("start_s", "before_encoding_s", "encoding_s",
                                                              "first_epoch_s", "epoch_s", "after_last_epoch_s"))
                   + " |")
    if results.get("sample"):
        s = results["sample"]
        out += ["", "| model (N) | rows | tasks | stage s (own; process) | rows/s (own; process) | files in the "
                "partition | rows per file | last file -> commit s | commit alone s (create; replace) | driver "
                "Python MB | JVM MB | executor JVMs MB | executor Python MB |", "|" + "---|" * 13]
        if s.get("failed"):
            out.append(f"| {s['n']:,} | {s['rows']:,} | failed: {s['failed']} |" + " |" * 10)
        else:
            p = s["peak_mb"]
            per_file = f"{min(s['file_rows']):,} to {max(s['file_rows']):,}" if s["file_rows"] else "-"
            out.append(f"| {s['n']:,} | {s['staged_rows']:,} | {s['partitions']} | {fmt(s['stage_s'], '.1f')}; "
                       f"{s['wall_s']:.1f} | {fmt(s['rows_per_s_stage'])}; {s['rows_per_s_wall']:,.0f} | "
                       f"{s['files']} | {per_file} | {fmt(s['commit_lag_s'], '.2f')} | "
                       f"{fmt(s.get('commit_create_s'), '.2f')}; {fmt(s.get('commit_replace_s'), '.2f')} | "
                       f"{fmt(p.get('driver_python'))} | "
                       f"{fmt(p.get('driver_jvm'))} | {fmt(p.get('executor_jvm'))} | "
                       f"{fmt(p.get('executor_python'))} |")
    return "\n".join(out)


# ---- main ----------------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000, 10_000_000])
    parser.add_argument("--placements", nargs="+", choices=["local", "cluster"], default=["local", "cluster"])
    parser.add_argument("--epochs", type=int, default=3, help="tabular_ar epochs (= patience) and the peer's")
    parser.add_argument("--val-fraction", type=float, default=0.01, help="tabular_ar's early-stopping rows (0.01)")
    parser.add_argument("--sample-rows", type=int, default=100_000_000, help="cluster sample, largest N (0: none)")
    parser.add_argument("--sample-partitions", type=int, default=4, help="the sample stage's tasks (params: 4)")
    parser.add_argument("--peer-max-rows", type=int, default=1_000_000, help="the peer runs for N up to this (0: none)")
    parser.add_argument("--work", default="var/bench/cluster_scale")
    parser.add_argument("--seed", type=int, default=0, help="the source's resampling seed")
    parser.add_argument("--chunk-rows", type=int, default=1_000_000, help="rows per Parquet row group of the source")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--worker-cores", type=int, default=1)
    parser.add_argument("--worker-memory", default="2g")
    parser.add_argument("--driver-memory", help="spark.driver.memory in both environments (default: as each says)")
    args = parser.parse_args()

    work = (ROOT / args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    project = make_project(work / "project", args.driver_memory)
    local_master = yaml.safe_load((project / "conf/env/local.yaml").read_text())["spark"]["master"]
    results = {"started": datetime.now(UTC).isoformat(), "args": vars(args), "machine": {
        "cores": os.cpu_count(), "memory_gb": round(psutil.virtual_memory().total / (1 << 30), 1)},
        "commit": subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip(),
        "dirty": subprocess.run(["git", "status", "--porcelain", "pipelines", "synthlake", "jobs"], cwd=ROOT,
                                capture_output=True, text=True).stdout.split("\n"),
        "local_label": local_master,
        "cluster_label": f"loopback, {args.workers} workers x {args.worker_cores} core(s)",
        "sources": [], "train": [], "sample": None, "peer": []}
    json_path = work.with_suffix(".json")

    def save():
        json_path.write_text(json.dumps(results, indent=1, default=str))

    runs = {}
    for n in args.rows:
        source = make_source(work / "sources", n, args.seed, args.chunk_rows)
        how = "reused" if source["reused"] else f"made in {source['seconds']:.1f} s"
        print(f"[cluster_scale] source of {n:,} rows: {source['path']} ({how})", flush=True)
        results["sources"].append(source)
        runs[n] = (write_config(project, n, source["path"]), write_params(project, n, args), source["path"])

    if "local" in args.placements:
        env = subprocess_env(project)
        for n, (config, params, _) in runs.items():
            results["train"].append(train_run(n, "local", config, params, env, work, [], project / "var" / "runs"))
            save()

    if "cluster" in args.placements:
        state = work / "cluster"
        try:
            loopback_cluster.up(state, args.workers, args.worker_cores, args.worker_memory)
            exported = loopback_cluster.read_env(state)
            env = subprocess_env(project, exported)
            workers = [pid for name, (pid, _) in loopback_cluster.processes(state).items() if name.startswith("worker")]
            run_dirs = Path(exported["SYNTHLAKE_WORK_DIR"]) / "runs"
            for n, (config, params, _) in runs.items():
                results["train"].append(train_run(n, "cluster", config, params, env, work, workers, run_dirs))
                save()
            largest = next((r for r in reversed(results["train"]) if r["placement"] == "cluster"), None)
            if args.sample_rows and largest and not largest.get("failed"):
                config, params, _ = runs[largest["n"]]
                results["sample"] = sample_run(largest, args.sample_rows, config, params, env, work, workers, run_dirs)
                save()
        finally:
            loopback_cluster.down(state)

    for n, (_, _, source) in runs.items():
        if n > args.peer_max_rows:
            continue
        if not PEER_PYTHON.exists():
            print(f"[cluster_scale] no {PEER_PYTHON} (make peer-env): the peer is skipped", flush=True)
            break
        results["peer"].append(peer_run(n, source, args, work))
        save()

    results["finished"] = datetime.now(UTC).isoformat()
    save()
    print(f"\ntabular_ar on census-like rows, {args.epochs} epochs (patience {args.epochs}), "
          f"{results['machine']['cores']} cores, {results['machine']['memory_gb']} GiB; peaks polled every {POLL_S} s")
    print(tables(results))
    print(f"\n{json_path}; logs under {work / 'logs'}")


if __name__ == "__main__":
    main()
