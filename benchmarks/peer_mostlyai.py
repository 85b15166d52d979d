"""The peer for benchmarks/conditions.py: mostlyai-engine's TabularARGN, run in its own virtual environment.

    .venv-peer/bin/python benchmarks/peer_mostlyai.py JOB.json RESULT.json

mostlyai-engine 2.7.3 (Apache-2.0) pins psutil<6 and pulls in transformers, torchvision and torchaudio, which
would change synthlake's .venv; `make peer-env` makes .venv-peer with it instead, and conditions.py runs this
script there in a subprocess. Nothing of synthlake is imported here: rows come and go as Parquet.

JOB.json: {"train": rows.parquet, "workspace": a fresh folder, "seed": 0, "max_training_time": minutes,
"max_epochs": 100, "train_threads": 2, "sample_threads": 1, "warmup_rows": 1000,
"tasks": [{"name", "n", "seed_data": partial rows.parquet or null, "rebalancing": {"column", "probabilities"}
or null, "fairness": {"target_column", "sensitive_columns"} or null, "repeats": 3, "out": rows.parquet}]}.

Trains once (TabularARGN: split, analyze, encode, train, with flexible generation on, its default), then runs
each task `repeats` times after one warm-up sample (each call is TabularARGN.sample(): generate into the
workspace, read back into pandas, as a user gets the rows), writes the last call's rows to `out`, and writes
RESULT.json: {"version", "train_s", "epochs", "rows" (trained on), "tasks": {name: {"rows", "seconds": [...]}}}.
With "tasks": [] it trains only (no warm-up sample either).
"""

from __future__ import annotations

import json
import sys
import time
from importlib.metadata import version
from pathlib import Path

import pandas as pd
import torch


def main(job_path: str, result_path: str) -> None:
    job = json.loads(Path(job_path).read_text())
    from mostlyai.engine import TabularARGN

    torch.set_num_threads(job.get("train_threads", 2))
    real = pd.read_parquet(job["train"])
    model = TabularARGN(max_training_time=job["max_training_time"], max_epochs=job.get("max_epochs", 100),
                        workspace_dir=job["workspace"], random_state=job.get("seed", 0), verbose=0)
    started = time.perf_counter()
    model.fit(real)
    train_s = time.perf_counter() - started
    result = {"version": version("mostlyai-engine"), "train_s": train_s, "epochs": trained_epochs(job["workspace"]),
              "train_threads": torch.get_num_threads(), "rows": len(real), "tasks": {}}

    torch.set_num_threads(job.get("sample_threads", 1))
    if job["tasks"]:  # a job of training alone (benchmarks/cluster_scale.py) samples nothing
        model.sample(n_samples=job.get("warmup_rows", 1000))  # warm-up: lazy set-up is not sampling speed
    for task in job["tasks"]:
        seed_data = pd.read_parquet(task["seed_data"]) if task.get("seed_data") else None
        seconds, rows = [], None
        for _ in range(task.get("repeats", 1)):
            started = time.perf_counter()
            rows = model.sample(n_samples=None if seed_data is not None else task["n"], seed_data=seed_data,
                                rebalancing=task.get("rebalancing"), fairness=task.get("fairness"))
            seconds.append(time.perf_counter() - started)
        rows.to_parquet(task["out"])
        result["tasks"][task["name"]] = {"rows": len(rows), "seconds": seconds}
        print(f"[peer] {task['name']}: {len(rows)} rows, best {min(seconds):.2f} s", flush=True)
    Path(result_path).write_text(json.dumps(result, indent=1))


def trained_epochs(workspace: str | Path) -> float | None:
    """The last epoch of the training log (ModelStore/model-data/progress-messages.csv), if written (also
    peer_mostlyai_sequential.py's)."""
    logs = list(Path(workspace).glob("**/progress-messages.csv"))
    if not logs:
        return None
    log = pd.read_csv(logs[0])
    return float(log["epoch"].max()) if "epoch" in log and len(log) else None


if __name__ == "__main__":
    main(*sys.argv[1:3])
