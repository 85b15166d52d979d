"""Quality and speed of the flagship generator (tabular_ar) on UCI Adult.

    .venv/bin/python benchmarks/flagship_quality.py [--epochs 60] [--rows 32000] [--threads 2]
        [--set hidden_dim=256 --set lr=0.002 ...] [--generator tabular_ar] [--epsilon 4 --delta 1e-5]

Fits on data/adult/adult.data, samples --rows rows, and prints: training seconds, sampling rows/s, and the
metrics accuracy, column_shapes, column_pair_trends, quality (the mean of those two, as SDMetrics' quality
score), tstr and trtr (AUC on data/adult/adult.test), dcr_share and exact_match_share. With --epsilon the
generator trains with differential privacy (privacy={"epsilon", "delta"}) and its privacy report is printed.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pandas as pd
import torch
from adult_data import load_adult  # benchmarks/ is on sys.path when a script in it runs

from synthlake.evaluation import evaluate
from synthlake.generators import TrainOptions, get_generator
from synthlake.metadata import TableMetadata

METRICS = ["accuracy", "column_shapes", "column_pair_trends", "tstr", "trtr", "dcr_share", "exact_match_share"]


def parse_value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def ctgan_sample_rate(real: pd.DataFrame, metadata: TableMetadata, rows: int, seed: int) -> float:
    """ctgan's sample() speed on the same machine and threads: the peer (its quality is not measured)."""
    model = get_generator("ctgan")(metadata, epochs=1)
    model.train(model.prepare(real.head(2000), seed=seed), TrainOptions(seed=seed))
    model.sample(1000, seed=seed)
    started = time.perf_counter()
    model.sample(rows, seed=seed + 1)
    return rows / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generator", default="tabular_ar")
    parser.add_argument("--epochs", type=int, default=None, help="the generator's epochs (default: its own)")
    parser.add_argument("--rows", type=int, default=32_000, help="synthetic rows to sample")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--set", action="append", default=[], metavar="NAME=VALUE", help="a hyper-parameter (VALUE as JSON), repeatable"
    )
    parser.add_argument("--epsilon", type=float, default=None, help="train with differential privacy at this epsilon")
    parser.add_argument("--delta", type=float, default=1e-5, help="the DP delta (with --epsilon)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument(
        "--compare-ctgan", action="store_true", help="also time ctgan's sample() (1 epoch on 2000 rows) as the peer"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    real, holdout, metadata = load_adult()
    hyper = dict(item.split("=", 1) for item in args.set)
    hyper = {k: parse_value(v) for k, v in hyper.items()}
    if args.epochs is not None:
        hyper["epochs"] = args.epochs
    privacy = {"epsilon": args.epsilon, "delta": args.delta} if args.epsilon is not None else None
    model = get_generator(args.generator)(metadata, privacy=privacy, **hyper)

    started = time.perf_counter()
    encoded = model.prepare(real, seed=args.seed)
    history = model.train(encoded, TrainOptions(seed=args.seed))
    train_s = time.perf_counter() - started

    model.sample(1000, seed=args.seed + 99)  # warm-up: lazy set-up is not sampling speed
    started = time.perf_counter()
    synthetic = model.sample(args.rows, seed=args.seed + 1)
    sample_s = time.perf_counter() - started

    peer = ctgan_sample_rate(real, metadata, args.rows, args.seed) if args.compare_ctgan else None
    scores = evaluate(real, synthetic, metadata, names=METRICS, holdout=holdout, seed=args.seed)
    scores["quality"] = (scores["column_shapes"] + scores["column_pair_trends"]) / 2
    last = history[-1] if history else {}
    results = {
        "generator": args.generator,
        "hyper": model.hyper,
        "train_rows": len(real),
        "epochs_run": len(history),
        "train_s": train_s,
        "sample_rows_per_s": args.rows / sample_s,
        "final": last,
        "training": getattr(model, "training", None),
        "privacy_report": getattr(model, "privacy_report", None),
        **scores,
    }

    print(
        f"\n{args.generator} on Adult ({len(real)} training rows, {len(holdout)} holdout), "
        f"{args.threads} torch threads; overrides: {hyper or 'none'}"
    )
    print(f"epochs run {len(history)}; last epoch: {json.dumps(last)}")
    if results["privacy_report"]:
        report = results["privacy_report"]
        print(f"privacy: epsilon {report['epsilon']:.4f} delta {report['delta']:.3g}; DP-SGD {report['dp_sgd']}")
    rows = [("train seconds", f"{train_s:.1f}"), ("sample rows/s", f"{args.rows / sample_s:,.0f}")]
    if peer is not None:
        results["ctgan_sample_rows_per_s"] = peer
        rows.append(("ctgan sample rows/s", f"{peer:,.0f}"))
    for name in [
        "accuracy",
        "column_shapes",
        "column_pair_trends",
        "quality",
        "tstr",
        "trtr",
        "dcr_share",
        "exact_match_share",
    ]:
        rows.append((name, f"{scores[name]:.4f}"))
    width = max(len(r[0]) for r in rows)
    for name, value in rows:
        print(f"{name:<{width}} | {value:>10}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
