"""Our generators against the peers on UCI Adult, in one run: train on adult.data, hold out adult.test.

    .venv/bin/python benchmarks/generators.py [--epochs 30] [--rows 32561] [--only tabular_ar ctgan_pkg ...]

Candidates: tabular_ar (the flagship, its default hyper-parameters), tabular_ar with DP at epsilon 1 and 4,
gaussian_copula and ctgan (ours), and the peers: the `ctgan` package's CTGAN, SDV's GaussianCopula and SDV's
CTGAN (the peers need `pip install -e ".[bench]"`). The CTGAN family trains --epochs epochs. Each trains on the
same rows, samples --rows rows, and is scored the same way: accuracy (synthlake.evaluation), SDMetrics'
QualityReport score (the sdmetrics package itself), TSTR AUC on adult.test, DCR share against adult.test,
exact-match share. Prints a markdown table; --json writes the rows too. Torch runs on --threads threads.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import torch
from adult_data import load_adult  # benchmarks/ is on sys.path when a script in it runs

from synthlake.evaluation import evaluate
from synthlake.generators import get_generator
from synthlake.metadata import ColumnKind, TableMetadata

DP_HYPER = {"epochs": 10, "batch_size": 1024}  # DP-SGD: fewer, larger batches (each step spends budget)
Fit = Callable[[pd.DataFrame, TableMetadata], Callable[[int], pd.DataFrame]]  # fit(real, meta) -> sample(n)


def ours(name: str, **hyper) -> Fit:
    def fit(real: pd.DataFrame, metadata: TableMetadata):
        model = get_generator(name)(metadata, **hyper).fit(real)
        return lambda n: model.sample(n, seed=1)
    return fit


def ctgan_package(epochs: int) -> Fit:
    def fit(real: pd.DataFrame, metadata: TableMetadata):
        from ctgan import CTGAN

        model = CTGAN(epochs=epochs)
        model.fit(real, discrete_columns=_categorical(metadata))
        return model.sample
    return fit


def sdv(kind: str, epochs: int) -> Fit:
    def fit(real: pd.DataFrame, metadata: TableMetadata):
        from sdv.metadata import Metadata
        from sdv.single_table import CTGANSynthesizer, GaussianCopulaSynthesizer

        declared = Metadata.load_from_dict({"tables": {"adult": {"columns": _sdtypes(metadata)}}})
        model = (GaussianCopulaSynthesizer(declared) if kind == "gaussian_copula"
                 else CTGANSynthesizer(declared, epochs=epochs))
        model.fit({"adult": real})  # SDV 2 takes and returns {table name: DataFrame}
        return lambda n: model.sample(num_rows=n)["adult"]
    return fit


def _categorical(metadata: TableMetadata) -> list[str]:
    return [c.name for c in metadata.columns if c.kind == ColumnKind.CATEGORICAL]


def _sdtypes(metadata: TableMetadata) -> dict:
    return {c.name: {"sdtype": "categorical" if c.kind == ColumnKind.CATEGORICAL else "numerical"}
            for c in metadata.learned_columns}


def sdmetrics_quality(real: pd.DataFrame, synthetic: pd.DataFrame, metadata: TableMetadata) -> float:
    from sdmetrics.reports.single_table import QualityReport

    report = QualityReport()
    report.generate(real, synthetic, {"columns": _sdtypes(metadata)}, verbose=False)
    return report.get_score()


def candidates(epochs: int) -> dict[str, tuple[Fit, float | None]]:
    """name -> (fit, epsilon)."""
    return {
        "tabular_ar": (ours("tabular_ar"), None),
        "tabular_ar_dp_eps4": (ours("tabular_ar", privacy={"epsilon": 4.0, "delta": 1e-5}, **DP_HYPER), 4.0),
        "tabular_ar_dp_eps1": (ours("tabular_ar", privacy={"epsilon": 1.0, "delta": 1e-5}, **DP_HYPER), 1.0),
        "gaussian_copula": (ours("gaussian_copula"), None),
        "ctgan": (ours("ctgan", epochs=epochs), None),
        "ctgan_pkg": (ctgan_package(epochs), None),
        "sdv_gaussian_copula": (sdv("gaussian_copula", epochs), None),
        "sdv_ctgan": (sdv("ctgan", epochs), None),
    }


def measure(name: str, fit: Fit, epsilon: float | None, real, holdout, metadata, rows: int) -> dict:
    print(f"[bench] {name}: training", flush=True)
    started = time.perf_counter()
    sample = fit(real, metadata)
    train_s = time.perf_counter() - started
    sample(1000)  # warm-up: lazy set-up is not sampling speed
    started = time.perf_counter()
    synthetic = sample(rows)
    sample_s = time.perf_counter() - started
    print(f"[bench] {name}: scoring", flush=True)
    scores = evaluate(real, synthetic, metadata, names=["accuracy", "tstr", "dcr_share", "exact_match_share"],
                      holdout=holdout, seed=0)
    return {"generator": name, "train_s": train_s, "sample_rows_per_s": rows / sample_s,
            "accuracy": scores["accuracy"], "sdmetrics_quality": sdmetrics_quality(real, synthetic, metadata),
            "tstr_auc": scores["tstr"], "dcr_share": scores["dcr_share"],
            "exact_match_share": scores["exact_match_share"], "epsilon": epsilon}


def table(results: list[dict]) -> str:
    head = ("| generator | train s | sample rows/s | accuracy | SDMetrics quality | TSTR AUC | DCR share "
            "| exact match | epsilon |")
    lines = [head, "|" + "---|" * 9]
    for r in results:
        lines.append(f"| {r['generator']} | {r['train_s']:.0f} | {r['sample_rows_per_s']:,.0f} | {r['accuracy']:.3f} "
                     f"| {r['sdmetrics_quality']:.3f} | {r['tstr_auc']:.3f} | {r['dcr_share']:.3f} "
                     f"| {r['exact_match_share']:.4f} | {'-' if r['epsilon'] is None else r['epsilon']} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30, help="epochs of the CTGAN family")
    parser.add_argument("--rows", type=int, default=None, help="synthetic rows (default: as many as training)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--only", nargs="+", help="candidates to run (default: all)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    real, holdout, metadata = load_adult()
    chosen = candidates(args.epochs)
    unknown = sorted(set(args.only or []) - set(chosen))
    if unknown:
        parser.error(f"unknown candidates {unknown}; choose from {sorted(chosen)}")
    results = []
    for name, (fit, epsilon) in chosen.items():
        if args.only and name not in args.only:
            continue
        results.append(measure(name, fit, epsilon, real, holdout, metadata, args.rows or len(real)))
        print(table(results[-1:]), flush=True)
    print(f"\nAdult: {len(real)} training rows, {len(holdout)} holdout rows; torch threads {args.threads}\n")
    print(table(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
