"""UCI Adult as the benchmarks use it: adult.data to train on, adult.test held out."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import yaml

from synthlake.metadata import TableMetadata

ROOT = Path(__file__).resolve().parents[1]


def load_adult() -> tuple[pd.DataFrame, pd.DataFrame, TableMetadata]:
    config = yaml.safe_load((ROOT / "conf/datasets/adult.yaml").read_text())
    metadata = TableMetadata(columns=config["columns"], target=config["target"])
    options = dict(header=None, names=metadata.names, sep=",", skipinitialspace=True, na_values="?")
    train = pd.read_csv(ROOT / "data/adult/adult.data", **options)
    test = pd.read_csv(ROOT / "data/adult/adult.test", skiprows=1, **options)  # line 1: "|1x3 Cross validator"
    test["income"] = test["income"].str.rstrip(".")  # adult.test writes ">50K."
    return train.dropna(how="all"), test.dropna(how="all"), metadata
