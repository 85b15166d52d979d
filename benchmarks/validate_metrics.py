"""Time the metric part of the validate stage on Adult, in-process with pandas (no Spark).

Train and holdout: a seeded 80/20 split of adult.data; synthetic: a bootstrap resample of adult.test, 10,000
rows. Each frame is bounded to `validate.max_rows` (20,000) rows as validate's samples are, then every metric
runs as validate's `_evaluate` runs it (one SharedWork for all), followed by what the shape checks and the
report take from the results: the per-column shapes, the DCR distances and the association matrices, and the
explanation of what gives synthetic rows away (synthlake.evaluation.explain: its rule hints are checked on the
frames).

    .venv/bin/python benchmarks/validate_metrics.py [--seed 0] [--synthetic-rows 10000]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
from adult_data import ROOT  # benchmarks/ is on sys.path when a script in it runs

from pipelines.config import load_dataset
from synthlake.evaluation import METRICS, SharedWork, get_metric
from synthlake.evaluation.base import bounded
from synthlake.evaluation.explain import explain

MAX_ROWS = 20_000


def frames(seed: int, synthetic_rows: int) -> tuple[dict[str, pd.DataFrame], object]:
    dataset = load_dataset(ROOT / "conf/datasets/adult.yaml")
    options = dict(header=None, names=dataset.metadata.names, sep=",", skipinitialspace=True, na_values="?")
    data = pd.read_csv(ROOT / "data/adult/adult.data", **options).dropna(how="all")
    test = pd.read_csv(ROOT / "data/adult/adult.test", skiprows=1, **options).dropna(how="all")
    test["income"] = test["income"].str.rstrip(".")  # adult.test writes ">50K."
    rng = np.random.default_rng(seed)
    holdout = rng.random(len(data)) < 0.2
    synthetic = test.iloc[rng.integers(0, len(test), synthetic_rows)].reset_index(drop=True)
    out = {"real": data[~holdout], "holdout": data[holdout], "synthetic": synthetic}
    return {k: bounded(v, MAX_ROWS, seed).reset_index(drop=True) for k, v in out.items()}, dataset


def timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure(f: dict, dataset, seed: int) -> dict[str, float]:
    meta = dataset.metadata
    context = {"holdout": f["holdout"], "quasi_identifiers": dataset.quasi_identifiers or None,
               "sensitive": dataset.sensitive_column, "canaries": None}
    times, results, shared = {}, {}, SharedWork()
    for name, cls in METRICS.items():
        if cls.missing_context(meta, context):
            continue
        metric = get_metric(name, max_rows=None, seed=seed)
        times[name] = timed(lambda n=name, m=metric: results.__setitem__(
            n, m.evaluate(f["real"], f["synthetic"], meta, shared=shared, **context)))
    times["shape checks"] = timed(lambda: results["column_shapes"].details["shapes"])
    times["report: dcr"] = timed(lambda: results["dcr_share"].details["to_train"])
    times["report: associations"] = timed(lambda: results["column_pair_trends"].details["associations"])
    times["report: explanation"] = timed(lambda: explain(f["real"], f["synthetic"], meta, results, seed=seed))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--synthetic-rows", type=int, default=10_000)
    args = parser.parse_args()
    f, dataset = frames(args.seed, args.synthetic_rows)
    print(f"rows: {', '.join(f'{k} {len(v):,}' for k, v in f.items())}")
    times = measure(f, dataset, args.seed)
    print(f"| {'step':<24} | seconds |\n|{'-' * 26}|---------|")
    for name, seconds in times.items():
        print(f"| {name:<24} | {seconds:7.2f} |")
    print(f"| {'total':<24} | {sum(times.values()):7.2f} |")


if __name__ == "__main__":
    main()
