"""A champion model in a throwaway project's MLflow registry, as the train and publish stages leave it, without
Spark: a tiny Gaussian copula fitted on a few hundred Adult rows, with an identifier (`id`, generated) and a
datetime column (`seen_at`) added. `CONFIG_COLUMNS` is the matching `columns:` of a dataset config.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from project_fixture import REPO


def adult_frame(start: int, rows: int) -> pd.DataFrame:
    from pipelines.config import load_dataset

    names = [c.name for c in load_dataset(REPO / "conf/datasets/adult.yaml").columns]
    frame = pd.read_csv(REPO / "data/adult/adult.data", header=None, names=names, skipinitialspace=True,
                        na_values="?", skiprows=start, nrows=rows)
    frame.insert(0, "id", "")  # generated, never learned
    frame["seen_at"] = pd.Timestamp("2020-01-01") + pd.to_timedelta(frame["fnlwgt"], unit="min")
    return frame


def register(root: Path, dataset: str, start: int, generator: str = "gaussian_copula", **hyper) -> str:
    """Fit a copula (or `generator`) on 300 rows from `start`, log and register it as synthlake-<dataset>, make
    it champion."""
    import mlflow
    from mlflow import MlflowClient

    from pipelines import tracking
    from pipelines.config import load_dataset
    from pipelines.context import RunContext
    from synthlake.generators import get_generator
    from synthlake.metadata import ColumnSpec, TableMetadata

    columns = load_dataset(REPO / "conf/datasets/adult.yaml").columns
    metadata = TableMetadata(columns=[ColumnSpec(name="id", kind="identifier"), *columns,
                                      ColumnSpec(name="seen_at", kind="datetime")], target="income")
    model = get_generator(generator)(metadata, **hyper).fit(adult_frame(start, 300))
    folder = root / "models" / f"{dataset}-{start}"
    model.save(folder)
    model.freeze().save(folder)
    ctx = RunContext.open(str(root / "conf/datasets/adult.yaml"), "serve-test", env_name="local")
    with mlflow.start_run(experiment_id=tracking.setup(ctx)):
        version = str(tracking.log_model(folder, f"synthlake-{dataset}").registered_model_version)
    MlflowClient().set_registered_model_alias(f"synthlake-{dataset}", tracking.CHAMPION, version)
    return version


def write_config(root: Path, dataset: str) -> Path:
    """conf/datasets/<dataset>.yaml under `root`: Adult's config with the copula's `id` and `seen_at` columns."""
    import yaml

    config = yaml.safe_load((REPO / "conf/datasets/adult.yaml").read_text())
    config["name"] = dataset
    config["columns"] = [{"name": "id", "kind": "identifier"}, *config["columns"],
                         {"name": "seen_at", "kind": "datetime"}]
    config["output"] = {"staging": f"{dataset}_staging", "published": dataset}
    path = root / "conf" / "datasets" / f"{dataset}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path
