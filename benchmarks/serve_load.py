"""Serving under load on loopback: `synthlake serve` against `mlflow models serve` of the same registered model.

    .venv/bin/python benchmarks/serve_load.py [--requests 300] [--big-requests 50] [--total 10000] [--seconds 120]
                                              [--project DIR] [--epochs 3] [--no-peer]

Without --project, trains tabular_ar on Adult (--epochs, a few: serving cost does not depend on them), logs
and registers it as `synthlake-adult` in a throwaway project's SQLite MLflow store and sets its `champion`
alias, as the train and publish stages do (no Spark). With --project DIR (e.g. `--project .` after
`make run`), serves that project's champion instead.

For each server, started as a subprocess on 127.0.0.1 (ours: `synthlake serve --dataset adult`, default
settings, no token; the peer: `mlflow models serve -m models:/synthlake-adult@champion --env-manager local`,
1 uvicorn worker, its default) and driven by one asyncio httpx client in this process:
  1. latency: --requests sequential requests of 1 row, then of 100 rows, then --big-requests of 10,000 rows
     (JSON rows both ways: ours `{"rows", "seed"}` at /v1/datasets/adult/rows, the peer's `dataframe_records`
     at /invocations), each timed until its whole body is read; p50 and p99;
  2. throughput: 16 concurrent clients (connections kept alive) send 100-row requests until the server has
     answered --total requests in all (phase 1 included) or --seconds pass;
  3. memory: the serving process's RSS once ready (model loaded, before any request), after all requests,
     and its peak (VmHWM).
Each phase first sends a few warm-up requests (counted in the total). Each request gets its own seed. The
client shares the machine's cores with the server: on a small machine the figures include its cost.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil  # installed with dvc and airflow
from adult_data import ROOT, load_adult  # benchmarks/ is on sys.path when a script in it runs

from jobs.common import quiet_services

BIN = Path(sys.executable).parent
DATASET = "adult"
MODEL = f"synthlake-{DATASET}"
SIZES = (1, 100, 10_000)
CLIENTS = 16
THROUGHPUT_ROWS = 100
WARMUP = 3
TIMEOUT = 120  # seconds, each request


# ---- a champion in a registry ----------------------------------------------------------------------------
def make_project(root: Path) -> None:
    """A project at `root`: the repo's conf/ (its local environment's store lands in root/var)."""
    shutil.copytree(ROOT / "conf", root / "conf")


def train_champion(epochs: int) -> str:
    """tabular_ar on Adult, saved as the train stage saves it, logged, registered, made champion."""
    import mlflow
    from mlflow import MlflowClient

    from pipelines import tracking
    from pipelines.context import RunContext
    from synthlake.generators import get_generator

    real, _, metadata = load_adult()
    model = get_generator("tabular_ar")(metadata, epochs=epochs).fit(real)
    folder = Path(os.environ["SYNTHLAKE_HOME"]) / "model"
    model.save(folder)
    model.freeze().save(folder)
    ctx = RunContext.open(str(ROOT / "conf/datasets/adult.yaml"), "bench-serve-load")
    with mlflow.start_run(experiment_id=tracking.setup(ctx)):
        version = str(tracking.log_model(folder, MODEL).registered_model_version)
    MlflowClient().set_registered_model_alias(MODEL, tracking.CHAMPION, version)
    return version


def registry_uri() -> str:
    from pipelines import tracking
    from pipelines.config import load_env

    return tracking.tracking_uri(load_env())


# ---- a server process --------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    name: str
    command: list[str]
    ready_path: str
    rows_path: str
    env: dict[str, str]
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def body(self, rows: int, seed: int) -> dict:
        if self.rows_path == "/invocations":
            return {"dataframe_records": [{"rows": rows, "seed": seed}]}
        return {"rows": rows, "seed": seed}

    def count(self, response: httpx.Response) -> int:
        data = response.json()
        return len(data["predictions"] if isinstance(data, dict) else data)

    def start(self, log: Path, deadline_s: float = 300) -> float:
        """Start and wait until the ready path answers 200; the seconds that took."""
        started = time.perf_counter()
        with log.open("w") as out:
            self.proc = subprocess.Popen([*self.command, "--port", str(self.port)], cwd=self.env["SYNTHLAKE_HOME"],
                                         env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        while time.perf_counter() - started < deadline_s:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; see {log}:\n"
                                   + log.read_text()[-3000:])
            try:
                if httpx.get(self.base + self.ready_path, timeout=5).status_code == 200:
                    return time.perf_counter() - started
            except httpx.TransportError:
                pass
            time.sleep(0.25)
        raise RuntimeError(f"{self.name}: {self.ready_path} not ready within {deadline_s} s; see {log}")

    def serving_pid(self) -> int:
        """The process listening on the port: ours is the started one; mlflow's CLI runs uvicorn under it."""
        root = psutil.Process(self.proc.pid)
        for p in [root, *root.children(recursive=True)]:
            try:
                if any(c.laddr and c.laddr.port == self.port and c.status == psutil.CONN_LISTEN
                       for c in p.net_connections("tcp")):
                    return p.pid
            except psutil.Error:
                continue
        raise RuntimeError(f"{self.name}: no process of the tree listens on {self.port}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)  # the session started for it: the server and its children
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process and its threads."""
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def memory_mib(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of a process, MiB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


# ---- the load --------------------------------------------------------------------------------------------
@dataclass
class Result:
    start_s: float = 0.0
    latency_ms: dict[int, tuple[float, float, int]] = field(default_factory=dict)  # rows: (p50, p99, requests)
    bytes_per_response: dict[int, int] = field(default_factory=dict)
    throughput: float = 0.0  # requests/s
    throughput_requests: int = 0
    throughput_cpu: tuple[float, float] = (0.0, 0.0)  # cores busy in the phase: the server's, this client's
    requests: int = 0
    rss_ready: float = 0.0
    rss_after: float = 0.0
    rss_peak: float = 0.0
    load: tuple[float, float] = (0.0, 0.0)  # the machine's 1-minute load average when the run starts and ends


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


class Load:
    def __init__(self, server: Server, client: httpx.AsyncClient):
        self.server, self.client, self.sent = server, client, 0

    async def post(self, rows: int) -> httpx.Response:
        self.sent += 1
        response = await self.client.post(self.server.rows_path, json=self.server.body(rows, self.sent),
                                          headers={"Accept": "application/json"})
        if response.status_code != 200:
            raise RuntimeError(f"{self.server.name}: {response.status_code} {response.text[:500]}")
        return response

    async def latency(self, rows: int, requests: int, deadline: float) -> tuple[list[float], int]:
        for _ in range(WARMUP):
            response = await self.post(rows)
        if (got := self.server.count(response)) != rows:
            raise RuntimeError(f"{self.server.name}: asked for {rows} rows, got {got}")
        times = []
        while len(times) < requests and time.perf_counter() < deadline:
            started = time.perf_counter()
            await self.post(rows)
            times.append((time.perf_counter() - started) * 1000)
        return times, len(response.content)

    async def throughput(self, total: int, deadline: float) -> tuple[int, float]:
        for _ in range(WARMUP):
            await self.post(THROUGHPUT_ROWS)
        done = 0

        async def one_client():
            nonlocal done
            while self.sent < total and time.perf_counter() < deadline:
                await self.post(THROUGHPUT_ROWS)
                done += 1

        started = time.perf_counter()
        await asyncio.gather(*(one_client() for _ in range(CLIENTS)))
        return done, done / (time.perf_counter() - started)


async def drive(server: Server, pid: int, args: argparse.Namespace, result: Result) -> None:
    limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
    async with httpx.AsyncClient(base_url=server.base, timeout=TIMEOUT, limits=limits) as client:
        load = Load(server, client)
        for rows in SIZES:
            requests = args.big_requests if rows >= 10_000 else args.requests
            print(f"[bench] {server.name}: {requests} sequential requests of {rows:,} row(s)", flush=True)
            times, size = await load.latency(rows, requests, time.perf_counter() + args.seconds)
            result.latency_ms[rows] = (percentile(times, 50), percentile(times, 99), len(times))
            result.bytes_per_response[rows] = size
        print(f"[bench] {server.name}: {CLIENTS} clients up to {args.total:,} requests in all", flush=True)
        serving, wall, client = cpu_seconds(pid), time.perf_counter(), time.process_time()
        result.throughput_requests, result.throughput = await load.throughput(args.total,
                                                                              time.perf_counter() + args.seconds)
        wall = time.perf_counter() - wall
        result.throughput_cpu = ((cpu_seconds(pid) - serving) / wall, (time.process_time() - client) / wall)
        result.requests = load.sent


def measure(server: Server, args: argparse.Namespace, logs: Path) -> Result:
    result = Result()
    started_load = os.getloadavg()[0]
    try:
        print(f"[bench] starting {server.name}", flush=True)
        result.start_s = server.start(logs / f"{server.name.split()[0]}.log")
        pid = server.serving_pid()
        result.rss_ready = memory_mib(pid)[0]
        asyncio.run(drive(server, pid, args, result))
        result.rss_after, result.rss_peak = memory_mib(pid)
        result.load = (started_load, os.getloadavg()[0])
    finally:
        server.stop()
    return result


# ---- the table --------------------------------------------------------------------------------------------
def print_table(results: dict[str, Result], args: argparse.Namespace) -> None:
    print(f"\nServing Adult's champion (tabular_ar) on loopback, {os.cpu_count()} cores; latency: sequential "
          f"requests, one client; throughput: {CLIENTS} concurrent clients, {THROUGHPUT_ROWS}-row requests; JSON "
          "rows both ways\n")
    heads = [f"p50 / p99 ms, {rows:,} row{'s' if rows > 1 else ''}" for rows in SIZES]
    print(f"| server | {' | '.join(heads)} | requests/s, {CLIENTS} clients | RSS ready -> after (peak), MiB |")
    print("|---|" + "---|" * (len(SIZES) + 2))
    peer = results.get("mlflow models serve")
    for name, r in results.items():
        cells = [f"{r.latency_ms[rows][0]:.1f} / {r.latency_ms[rows][1]:.1f}" for rows in SIZES]
        rate = f"{r.throughput:,.0f}"
        if peer is not None and r is not peer:
            rate += f" ({r.throughput / peer.throughput:.1f}x)"
        memory = f"{r.rss_ready:.0f} -> {r.rss_after:.0f} ({r.rss_peak:.0f}) after {r.requests:,} requests"
        print(f"| {name} | {' | '.join(cells)} | {rate} | {memory} |")
    print()
    for name, r in results.items():
        counts = ", ".join(f"{r.latency_ms[rows][2]:,} x {rows:,}" for rows in SIZES)
        sizes = ", ".join(f"{r.bytes_per_response[rows]:,}" for rows in SIZES)
        server_cores, client_cores = r.throughput_cpu
        print(f"{name}: ready {r.start_s:.1f} s after start; latency over {counts} requests; throughput over "
              f"{r.throughput_requests:,} requests, the server busy {server_cores:.2f} cores and this client "
              f"{client_cores:.2f}; response bytes {sizes}; load average {r.load[0]:.1f} -> {r.load[1]:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300, help="sequential requests of 1 and of 100 rows")
    parser.add_argument("--big-requests", type=int, default=50, help="sequential requests of 10,000 rows")
    parser.add_argument("--total", type=int, default=10_000, help="requests in all, per server")
    parser.add_argument("--seconds", type=float, default=120, help="the most each phase runs, per server")
    parser.add_argument("--project", type=Path, help="serve this project's champion (default: train one)")
    parser.add_argument("--epochs", type=int, default=3, help="tabular_ar epochs when training the champion")
    parser.add_argument("--no-peer", action="store_true", help="skip `mlflow models serve`")
    args = parser.parse_args()
    quiet_services()
    with tempfile.TemporaryDirectory(prefix="serve-load-") as tmp:
        tmp = Path(tmp)
        if args.project is None:
            home = tmp / "project"
            make_project(home)
            os.environ["SYNTHLAKE_HOME"] = str(home)
            print(f"[bench] training tabular_ar ({args.epochs} epoch(s)) and registering it in {home}", flush=True)
            version = train_champion(args.epochs)
        else:
            home = args.project.resolve()
            os.environ["SYNTHLAKE_HOME"] = str(home)
            version = None
        uri = registry_uri()
        if version is None:
            from pipelines import tracking
            from pipelines.config import load_env

            tracking.use_store(load_env())
            version = tracking.champion_version(MODEL)
            if version is None:
                raise SystemExit(f"{home}: {MODEL} has no champion in {uri}")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SYNTHLAKE_", "MLFLOW_TRACKING", "PYSPARK"))}
        env.update(SYNTHLAKE_HOME=str(home), PATH=os.pathsep.join([str(BIN), env.get("PATH", "")]))
        servers = [Server("synthlake serve", [str(BIN / "synthlake"), "serve", "--dataset", DATASET], "/readyz",
                          f"/v1/datasets/{DATASET}/rows", env)]
        if not args.no_peer:
            peer_env = {**env, "MLFLOW_TRACKING_URI": uri, "MLFLOW_REGISTRY_URI": uri}
            servers.append(Server("mlflow models serve", [str(BIN / "mlflow"), "models", "serve", "-m",
                                                          f"models:/{MODEL}@champion", "--env-manager", "local",
                                                          "--host", "127.0.0.1"], "/ping", "/invocations",
                                  peer_env))
        print(f"[bench] model {MODEL} version {version} in {uri}", flush=True)
        results = {s.name: measure(s, args, tmp) for s in servers}
    print_table(results, args)


if __name__ == "__main__":
    main()
