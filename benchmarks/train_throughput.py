"""Training throughput of the CTGAN loop under TorchDistributor with 1 and 2 processes (DDP, CPU).

    .venv/bin/python benchmarks/train_throughput.py [--epochs 3]

Prints a table: processes, seconds per epoch, training rows per second, final losses. The peer is the
same loop in one process, in the same run.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from jobs.common import quiet_services
from pipelines.config import EnvConfig, load_dataset
from pipelines.source import read_source
from pipelines.spark import get_spark
from pipelines.train import _distributed_fit
from synthlake.generators import get_generator


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    quiet_services()
    dataset = load_dataset("conf/datasets/adult.yaml")
    spark = get_spark(EnvConfig(spark={"conf": {"spark.ui.enabled": "false"}}))
    table = read_source(spark, dataset).toPandas()
    rows = []
    for processes in args.processes:
        model = get_generator("ctgan")(dataset.metadata, epochs=args.epochs)
        encoded = model.prepare(table, seed=0)
        work = Path(tempfile.mkdtemp())
        np.save(work / "encoded.npy", encoded)
        started = time.perf_counter()
        history = _distributed_fit(spark, model, work, str(work / "model"), 0, processes, False)
        elapsed = time.perf_counter() - started
        shutil.rmtree(work)
        rows.append((processes, elapsed / args.epochs, len(table) * args.epochs / elapsed, history[-1]))
    print(f"\nCTGAN training on Adult ({len(table)} rows), {args.epochs} epochs, CPU, TorchDistributor local mode")
    print(f"{'processes':>9} | {'s/epoch':>8} | {'rows/s':>8} | {'loss G':>7} | {'loss D':>7}")
    for processes, per_epoch, rate, last in rows:
        print(f"{processes:>9} | {per_epoch:>8.2f} | {rate:>8.0f} | {last['loss_generator']:>7.3f} | "
              f"{last['loss_discriminator']:>7.3f}")
    print("(each row includes ~5-10 s of torchrun start-up)")


if __name__ == "__main__":
    main()
