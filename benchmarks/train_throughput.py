"""Training throughput and quality under TorchDistributor with 1 and 2 processes (DDP, gloo on CPU).

    .venv/bin/python benchmarks/train_throughput.py [--generator tabular_ar] [--epochs 10]

Trains on adult.data through the train stage's own distributed path (pipelines.train._distributed_fit, each
process on its shard), with early stopping off so every run does the same work, and prints a table:
processes, seconds per epoch (torchrun start-up included), training rows per second, final loss, and the
accuracy of 20,000 sampled rows against the training data. The peer is the same loop in one process, in the
same run: the point is that 2 processes reach the same quality.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from adult_data import load_adult  # benchmarks/ is on sys.path when a script in it runs

from jobs.common import quiet_services
from pipelines.config import EnvConfig
from pipelines.spark import get_spark
from pipelines.train import _distributed_fit
from synthlake.evaluation import get_metric
from synthlake.generators import Generator, get_generator


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generator", default="tabular_ar")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    quiet_services()
    table, _, metadata = load_adult()
    spark = get_spark(EnvConfig(spark={"conf": {"spark.ui.enabled": "false"}}))
    hyper = {"epochs": args.epochs, **({"patience": args.epochs} if args.generator == "tabular_ar" else {})}
    rows = []
    for processes in args.processes:
        model = get_generator(args.generator)(metadata, **hyper)
        encoded = model.prepare(table, seed=0)
        work = Path(tempfile.mkdtemp())
        np.save(work / "encoded.npy", encoded)
        started = time.perf_counter()
        history = _distributed_fit(spark, model, work, str(work / "model"), 0, processes, False)
        elapsed = time.perf_counter() - started
        synthetic = Generator.load(work / "model").sample(20_000, seed=1)
        accuracy = get_metric("accuracy").compute(table, synthetic, metadata)
        shutil.rmtree(work)
        last = {k: v for k, v in history[-1].items() if k != "epoch"}
        rows.append((processes, elapsed / len(history), len(table) * len(history) / elapsed, last, accuracy))
    spark.stop()
    print(f"\n{args.generator} on Adult ({len(table)} rows), {args.epochs} epochs, CPU, TorchDistributor local mode")
    print("| processes | s/epoch | training rows/s | final losses | accuracy |")
    print("|---|---|---|---|---|")
    for processes, per_epoch, rate, last, accuracy in rows:
        losses = ", ".join(f"{k} {v:.3f}" for k, v in last.items())
        print(f"| {processes} | {per_epoch:.2f} | {rate:,.0f} | {losses} | {accuracy:.4f} |")
    print("(each row includes the torchrun start-up, a few seconds)")


if __name__ == "__main__":
    main()
