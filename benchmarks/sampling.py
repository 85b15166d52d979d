"""Sampling speed: the sample stage (Spark mapInArrow into Delta) against the `ctgan` package's sample().

    .venv/bin/python benchmarks/sampling.py [--rows 10000000] [--partitions 2] [--block-rows 20000]

In one run: fits tabular_ar on Adult (a few epochs: sampling cost does not depend on them) and the `ctgan`
package's CTGAN (1 epoch, likewise); times Spark's start on its own (the session, then its Python workers,
started by one trivial job); then writes --rows rows through the sample stage's own code (seeded blocks over
--partitions partitions, the executors loading the sampler as the stage ships it) into a fresh Delta table,
Delta commit included, once with each writer (`arrow`, the default, and `spark`); and times ctgan's sample()
of --ctgan-rows rows on all the cores torch uses by default (best of 3). Also prints tabular_ar's in-process
sample_arrow() on one thread (best of 3). The stage runs once per writer, its Python workers' imports and
compiled-code loading included. Needs the `ctgan` extra.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from adult_data import ROOT, load_adult  # benchmarks/ is on sys.path when a script in it runs

from jobs.common import quiet_services
from pipelines.config import EnvConfig, Params, load_dataset, load_env
from pipelines.context import RunContext
from pipelines.sample import sampler_files, write_staging
from pipelines.spark import get_spark
from synthlake.generators import get_generator


def timed(fn):
    started = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - started


def best_seconds(fn, repeats: int = 3) -> float:
    """In-process samplers: the best of a few runs (the machine's noise only ever slows a run down)."""
    return min(timed(fn)[1] for _ in range(repeats))


def stage_rows_per_s(spark, model, rows: int, partitions: int, block_rows: int, writer: str, work: Path) -> float:
    dataset = load_dataset(ROOT / "conf/datasets/adult.yaml")
    params = Params(rows=rows, sample={"partitions": partitions, "block_rows": block_rows, "writer": writer})
    env = EnvConfig(work_dir=str(work), lake_dir=str(work / "lake"))
    ctx = RunContext(str(ROOT / "conf/datasets/adult.yaml"), dataset, params, env, "bench-sampling")
    files = sampler_files(model.freeze())  # what the stage ships to its executors
    path = str(work / "lake" / "staging")
    _, seconds = timed(lambda: write_staging(spark, ctx, files, path))
    written = spark.read.format("delta").load(path).count()
    if written != rows:
        raise RuntimeError(f"wrote {written} rows, expected {rows}")
    return rows / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000, help="rows the sample stage writes")
    parser.add_argument("--partitions", type=int, default=2)
    parser.add_argument("--block-rows", type=int, default=20_000)
    parser.add_argument("--ctgan-rows", type=int, default=100_000, help="rows ctgan's sample() draws")
    parser.add_argument("--epochs", type=int, default=3, help="tabular_ar epochs (sampling cost is the same)")
    args = parser.parse_args()
    quiet_services()
    real, _, metadata = load_adult()

    default_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    print("[bench] fitting tabular_ar", flush=True)
    ours = get_generator("tabular_ar")(metadata, epochs=args.epochs).fit(real)
    ours.sample_arrow(1000, seed=0)
    in_process_s = best_seconds(lambda: ours.sample_arrow(200_000, seed=1))

    print("[bench] starting Spark", flush=True)
    spark, spark_start_s = timed(lambda: get_spark(load_env(), app_name="synthlake-bench-sampling"))
    _, workers_start_s = timed(lambda: spark.range(0, 2, 1, 2).mapInArrow(lambda b: b, "id long").collect())
    stage_rates = {}
    for writer in ("arrow", "spark"):
        print(f"[bench] sample stage, {writer} writer", flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            stage_rates[writer] = stage_rows_per_s(spark, ours, args.rows, args.partitions, args.block_rows, writer,
                                                   Path(tmp))
    spark.stop()

    torch.set_num_threads(default_threads)  # ctgan as a user runs it: torch's default threads
    from ctgan import CTGAN

    print("[bench] fitting ctgan (1 epoch)", flush=True)
    peer = CTGAN(epochs=1)
    peer.fit(real, discrete_columns=[c.name for c in metadata.columns if c.kind == "categorical"])
    peer.sample(1000)
    ctgan_s = best_seconds(lambda: peer.sample(args.ctgan_rows))
    ctgan_rate = args.ctgan_rows / ctgan_s

    print(f"\nSampling on this machine; Spark start {spark_start_s:.1f} s (session) + {workers_start_s:.1f} s "
          "(Python workers), not counted below\n")
    print("| sampler | rows | rows/s | vs ctgan sample() |")
    print("|---|---|---|---|")
    stage = f"sample stage: tabular_ar, {args.partitions} partitions, Delta write included"
    rows = [(f"{stage}, arrow writer (default)", args.rows, stage_rates["arrow"]),
            (f"{stage}, spark writer", args.rows, stage_rates["spark"]),
            ("tabular_ar sample_arrow(), in process, 1 thread", 200_000, 200_000 / in_process_s),
            (f"ctgan package sample(), {torch.get_num_threads()} threads", args.ctgan_rows, ctgan_rate)]
    for name, n, rate in rows:
        print(f"| {name} | {n:,} | {rate:,.0f} | {rate / ctgan_rate:.1f}x |")


if __name__ == "__main__":
    main()
