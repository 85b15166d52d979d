"""A Spark standalone cluster (one master, two workers) and an MLflow server on this machine's loopback, for
trying and testing conf/env/cluster.yaml without a real cluster: `make cluster-up`, `make cluster-down`.

    python -m pipelines.loopback_cluster up --state var/cluster     # then: . var/cluster/env.sh
    python -m pipelines.loopback_cluster down --state var/cluster

Everything runs from the installed pyspark ($SPARK_HOME: its package folder) and mlflow, each process in a process
group of its own (its pid in STATE/pids), its log in STATE/logs. `up` waits until the master lists every worker
ALIVE and MLflow answers /health, then writes STATE/env.sh: the variables conf/env/cluster.yaml reads. The MLflow
store (STATE/mlflow.db, STATE/mlartifacts) and the work and lake folders outlive `down`.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

HOST = "127.0.0.1"


class ClusterError(RuntimeError):
    """A process failed to start or the cluster did not come up; the message names it and ends with its log."""


def free_port() -> int:
    """A TCP port nothing listens on at 127.0.0.1 now (for a server to start on)."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def spark_home() -> Path:
    import pyspark

    return Path(pyspark.__file__).parent


def _env() -> dict[str, str]:
    """The processes' environment: this venv's python on the executors, everything bound to loopback, no MLflow
    job runners (seven more processes)."""
    return {**os.environ, "SPARK_HOME": str(spark_home()), "PYSPARK_PYTHON": sys.executable,
            "PYSPARK_DRIVER_PYTHON": sys.executable, "SPARK_LOCAL_IP": HOST, "MLFLOW_DISABLE_TELEMETRY": "true",
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


def _start(state: Path, name: str, cmd: list[str]) -> subprocess.Popen:
    with open(state / "logs" / f"{name}.log", "ab") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=_env(),
                                cwd=state, start_new_session=True)  # its own process group: `down` stops it whole
    (state / "pids" / f"{name}.pid").write_text(f"{proc.pid} {_started(proc.pid)}")
    return proc


def _started(pid: int) -> str:
    """When a process started (Linux: /proc/PID/stat's starttime), which tells a reused pid from ours."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (FileNotFoundError, IndexError):
        return "?"


def processes(state: Path) -> dict[str, tuple[int, str]]:
    pids = {}
    for path in sorted((state / "pids").glob("*.pid")):
        pid, _, started = path.read_text().partition(" ")
        pids[path.stem] = int(pid), started.strip() or "?"
    return pids


def alive(pgid: int, started: str) -> bool:
    """Whether the process group we started still has a process (a reused pid is not ours)."""
    try:
        os.waitpid(pgid, os.WNOHANG)  # a child of this process that exited: reaped, or it counts in its group
    except ChildProcessError:
        pass
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    now = _started(pgid)  # "?": the leader exited, what remains of its group is ours (a live group's id is not reused)
    return now in ("?", started) or started == "?"


def log_tail(state: Path, name: str, lines: int = 40) -> str:
    path = state / "logs" / f"{name}.log"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else "(no log)"


def _get(url: str) -> bytes | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.read()
    except OSError:
        return None


def master_state(ui_url: str) -> dict:
    """The master's JSON UI: workers, cores, active and completed applications."""
    body = _get(f"{ui_url}/json/")
    return {} if body is None else json.loads(body)


def up(state: Path, workers: int = 2, cores: int = 1, memory: str = "2g", timeout_s: float = 180) -> dict[str, str]:
    """Start the master, the workers and MLflow; wait until they are ready; write and return env.sh's variables."""
    state = Path(state).resolve()
    for sub in ("logs", "pids", "work", "lake", "mlartifacts"):
        (state / sub).mkdir(parents=True, exist_ok=True)
    running = [n for n, (pid, started) in processes(state).items() if alive(pid, started)]
    if running:
        raise ClusterError(f"{state}: {', '.join(running)} already running (stop them first: down)")
    for pid_file in (state / "pids").glob("*.pid"):
        pid_file.unlink()
    port, ui_port, mlflow_port = free_port(), free_port(), free_port()
    spark_class = str(spark_home() / "bin" / "spark-class")
    ui_url, mlflow_url = f"http://{HOST}:{ui_port}", f"http://{HOST}:{mlflow_port}"
    try:
        procs = _start_all(state, spark_class, port, ui_port, mlflow_port, workers, cores, memory)
        _wait_ready(state, procs, ui_url, mlflow_url, workers, timeout_s)
    except (ClusterError, OSError):
        down(state)
        raise
    env = {"SYNTHLAKE_ENV": "cluster", "SPARK_MASTER_URL": f"spark://{HOST}:{port}", "SPARK_LOCAL_IP": HOST,
           "MLFLOW_TRACKING_URI": mlflow_url, "MLFLOW_ARTIFACT_LOCATION": "mlflow-artifacts:/synthlake",
           "SYNTHLAKE_WORK_DIR": str(state / "work"), "SYNTHLAKE_LAKE_DIR": str(state / "lake"),
           "SPARK_MASTER_UI": ui_url}
    (state / "env.sh").write_text("# written by pipelines.loopback_cluster up; source it: . env.sh\n"
                                  + "".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items()))
    return env


def _start_all(state: Path, spark_class: str, port: int, ui_port: int, mlflow_port: int, workers: int, cores: int,
               memory: str) -> dict[str, subprocess.Popen]:
    procs = {"master": _start(state, "master", [spark_class, "org.apache.spark.deploy.master.Master", "--host", HOST,
                                                "--port", str(port), "--webui-port", str(ui_port)])}
    for i in range(1, workers + 1):
        work_dir = state / f"worker-{i}"  # the executors' working directories: app-ID/EXECUTOR under it
        work_dir.mkdir(exist_ok=True)
        procs[f"worker-{i}"] = _start(state, f"worker-{i}", [
            spark_class, "org.apache.spark.deploy.worker.Worker", f"spark://{HOST}:{port}", "--host", HOST,
            "--cores", str(cores), "--memory", memory, "--webui-port", str(free_port()), "--work-dir", str(work_dir)])
    procs["mlflow"] = _start(state, "mlflow", [
        str(Path(sys.executable).with_name("mlflow")), "server", "--host", HOST, "--port", str(mlflow_port),
        "--workers", "1", "--backend-store-uri", f"sqlite:///{state / 'mlflow.db'}",
        "--artifacts-destination", str(state / "mlartifacts")])
    return procs


def _wait_ready(state: Path, procs: dict[str, subprocess.Popen], ui_url: str, mlflow_url: str, workers: int,
                timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        dead = [n for n, proc in procs.items() if proc.poll() is not None]
        if dead:
            raise ClusterError(f"{dead[0]} exited while starting; the end of {state / 'logs' / dead[0]}.log:\n"
                               + log_tail(state, dead[0]))
        alive = [w for w in master_state(ui_url).get("workers", []) if w.get("state") == "ALIVE"]
        healthy = _get(f"{mlflow_url}/health") is not None
        if len(alive) >= workers and healthy:
            return
        if time.monotonic() > deadline:
            name = "mlflow" if not healthy else "master" if not alive else f"worker-{len(alive) + 1}"
            raise ClusterError(f"not ready after {timeout_s:.0f}s ({len(alive)}/{workers} workers ALIVE, MLflow "
                               f"{'up' if healthy else 'not answering'}); the end of {name}.log:\n"
                               + log_tail(state, name))
        time.sleep(1)


def down(state: Path, grace_s: float = 20) -> list[str]:
    """Stop every process group `up` started (SIGTERM, then SIGKILL after `grace_s`); return the names stopped."""
    state = Path(state).resolve()
    if not (state / "pids").is_dir():
        return []
    pids = {n: p for n, p in processes(state).items() if alive(*p)}
    for name in sorted(pids, key=lambda n: n == "master"):  # workers and MLflow first, the master last
        os.killpg(pids[name][0], signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while any(alive(*p) for p in pids.values()) and time.monotonic() < deadline:
        time.sleep(0.5)
    for pid, started in pids.values():
        if alive(pid, started):
            os.killpg(pid, signal.SIGKILL)
    for pid_file in (state / "pids").glob("*.pid"):
        pid_file.unlink()
    return sorted(pids)


def read_env(state: Path) -> dict[str, str]:
    """The variables of STATE/env.sh (what `. env.sh` exports)."""
    env = {}
    for line in (Path(state) / "env.sh").read_text().splitlines():
        if line.startswith("export "):
            key, _, value = line.removeprefix("export ").partition("=")
            env[key] = shlex.split(value)[0] if value else ""
    return env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.loopback_cluster", description=__doc__.split("\n")[0])
    parser.add_argument("action", choices=["up", "down"])
    parser.add_argument("--state", default="var/cluster", help="its pids, logs, env.sh and stores (var/cluster)")
    parser.add_argument("--workers", type=int, default=2, help="workers, each with --cores and --memory (2)")
    parser.add_argument("--cores", type=int, default=1, help="cores per worker (1)")
    parser.add_argument("--memory", default="2g", help="memory per worker (2g)")
    args = parser.parse_args(argv)
    state = Path(args.state).resolve()
    if args.action == "down":
        stopped = down(state)
        print(f"stopped: {', '.join(stopped)}" if stopped else f"{state}: nothing running")
        return 0
    try:
        env = up(state, args.workers, args.cores, args.memory)
    except ClusterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"Spark master {env['SPARK_MASTER_URL']} (UI {env['SPARK_MASTER_UI']}), {args.workers} workers; "
          f"MLflow {env['MLFLOW_TRACKING_URI']}\nthen: . {state / 'env.sh'} && synthlake run CONFIG --env cluster")
    return 0


if __name__ == "__main__":
    sys.exit(main())
