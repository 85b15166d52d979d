"""`synthlake infer-config` drafts a config from a new table, and the draft runs the pipeline unedited."""

from __future__ import annotations

import subprocess

import deltalake
import numpy as np
import pandas as pd
import pytest
import yaml
from project_fixture import VENV_BIN, make_project, project_env

pytestmark = pytest.mark.slow


def customers(n: int = 400) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    balance = rng.gamma(2.0, 500.0, n).round(2)
    balance[rng.random(n) < 0.1] = np.nan
    return pd.DataFrame({
        "customer_id": [f"C-{i:05d}" for i in range(n)],
        "email": [f"user{i}@example.org" for i in range(n)],
        "signup_date": pd.to_datetime("2024-01-01") + pd.to_timedelta(rng.integers(0, 700, n), unit="D"),
        "age": rng.integers(18, 80, n),
        "balance": balance,
        "plan": rng.choice(["basic", "plus", "pro"], n, p=[0.6, 0.3, 0.1]),
        "churned": rng.integers(0, 2, n),
    })


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = make_project(tmp_path_factory.mktemp("infer"), params={"rows": 150})
    table = customers()
    table["signup_date"] = table["signup_date"].dt.strftime("%Y-%m-%d")
    (root / "data_in").mkdir()
    table.to_csv(root / "data_in" / "customers.csv", index=False)
    table.to_parquet(root / "data_in" / "customers.parquet", index=False)
    return root


def synthlake(root, *args, timeout=900):
    return subprocess.run([str(VENV_BIN / "synthlake"), *args], cwd=root, env=project_env(root),
                          capture_output=True, text=True, timeout=timeout)


def test_inferred_csv_config_runs_the_whole_pipeline_unedited(project):
    out = synthlake(project, "infer-config", "data_in/customers.csv")
    assert out.returncode == 0, out.stderr[-3000:]
    config_path = project / "conf" / "datasets" / "customers.yaml"
    config = yaml.safe_load(config_path.read_text())
    kinds = {c["name"]: (c["kind"], c.get("pii"), c.get("integer")) for c in config["columns"]}
    assert kinds["customer_id"][0] == "identifier"
    assert kinds["email"][:2] == ("pii", "email")
    assert kinds["signup_date"][0] == "datetime"
    assert kinds["age"] == ("numeric", None, True)
    assert kinds["balance"][0] == "numeric" and not kinds["balance"][2]
    assert kinds["plan"][0] == "categorical" and kinds["churned"][0] == "categorical"

    run = synthlake(project, "run", str(config_path), "--run-id", "inferred-1")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "published table:" in run.stdout
    published = deltalake.DeltaTable(str(project / "var" / "lake" / "customers")).to_pandas()
    assert len(published) == 150
    real = customers()
    assert published["customer_id"].is_unique
    assert not set(published["email"]) & set(real["email"])  # PII is generated, never copied
    assert set(published["plan"].dropna()) <= {"basic", "plus", "pro"}
    assert published["balance"].isna().any() and published["age"].dropna().between(18, 79).all()


def test_inferred_parquet_config_loads(project):
    out = synthlake(project, "infer-config", "data_in/customers.parquet", "--name", "customers_pq")
    assert out.returncode == 0, out.stderr[-3000:]
    config = yaml.safe_load((project / "conf" / "datasets" / "customers_pq.yaml").read_text())
    assert config["source"]["format"] == "parquet"
    assert [c["name"] for c in config["columns"]] == list(customers().columns)


def test_existing_config_is_not_overwritten(project):
    target = project / "conf" / "datasets" / "adult.yaml"
    before = target.read_text()
    out = synthlake(project, "infer-config", "data_in/customers.csv", "--name", "adult")
    assert out.returncode == 3 and "--force" in out.stderr
    assert target.read_text() == before
