"""`synthlake infer-config` drafts a config from a new table, and the draft runs the pipeline unedited."""

from __future__ import annotations

import subprocess

import deltalake
import numpy as np
import pandas as pd
import pytest
import yaml
from project_fixture import VENV_BIN, make_project, project_env

from pipelines.config import DatasetConfig

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


COUNTRIES = [("FR", "EUR"), ("DE", "EUR"), ("IT", "EUR"), ("ES", "EUR"), ("US", "USD"), ("CA", "CAD"),
             ("GB", "GBP"), ("CH", "CHF"), ("JP", "JPY"), ("MX", "MXN")]


def orders(n: int = 3000) -> pd.DataFrame:
    """Orders with business logic: date parts, a total, ordered dates, a rate per date, a currency per country;
    and `fee`, below `price` on the first 1,000 rows only (a sample of them would take it for a rule)."""
    rng = np.random.default_rng(1)
    day = rng.integers(0, 120, n)
    ordered = pd.Timestamp("2021-01-01") + pd.to_timedelta(day * 10, unit="D")  # 120 dates over 3+ years
    start = ordered + pd.to_timedelta(rng.integers(0, 60, n), unit="D")
    a, b, price = rng.integers(0, 500, n), rng.integers(0, 100, n), np.round(rng.gamma(2, 50, n), 2)
    fee = np.round(price * rng.uniform(0, 1, n), 2)
    late = np.arange(n) >= 1000
    fee[late] = np.round(price[late] * rng.uniform(0, 1.2, late.sum()), 2)
    pick = rng.choice(len(COUNTRIES), n)
    return pd.DataFrame({
        "order_id": [f"O-{i:06d}" for i in range(n)],
        "order_date": ordered, "order_year": ordered.year.astype("int64"),
        "order_month": ordered.month.astype("int64"),
        "daily_rate": np.round(rng.uniform(0.8, 1.2, 120), 4)[day],
        "start_date": start, "end_date": start + pd.to_timedelta(rng.integers(1, 30, n), unit="D"),
        "a": a, "b": b, "total": a + b,
        "country": [COUNTRIES[i][0] for i in pick], "currency": [COUNTRIES[i][1] for i in pick],
        "price": price, "fee": fee, "qty": rng.integers(1, 6, n), "channel": rng.choice(["web", "shop", "phone"], n),
    })


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = make_project(tmp_path_factory.mktemp("infer"), params={"rows": 150})
    table = customers()
    table["signup_date"] = table["signup_date"].dt.strftime("%Y-%m-%d")
    (root / "data_in").mkdir()
    table.to_csv(root / "data_in" / "customers.csv", index=False)
    table.to_parquet(root / "data_in" / "customers.parquet", index=False)
    orders().to_parquet(root / "data_in" / "orders.parquet", index=False, coerce_timestamps="us")  # Spark: no ns
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


def test_rules_are_discovered_over_the_whole_source_and_hold_on_it(project):
    out = synthlake(project, "infer-config", "data_in/orders.parquet", "--sample-rows", "500")
    assert out.returncode == 0, out.stderr[-3000:]
    text = (project / "conf" / "datasets" / "orders.yaml").read_text()
    config = yaml.safe_load(text)
    assert config["rules"] == [
        {"kind": "derived", "column": "order_year", "expression": "year(order_date)"},
        {"kind": "derived", "column": "order_month", "expression": "month(order_date)"},
        {"kind": "derived", "column": "total", "expression": "a + b"},
        {"kind": "derived", "column": "daily_rate", "lookup": {"by": ["order_date"], "value": "daily_rate"}},
        {"kind": "fixed_combinations", "columns": ["country", "currency"]},
        {"kind": "inequality", "low": "order_date", "high": "start_date", "unit": "day"},
        {"kind": "inequality", "low": "start_date", "high": "end_date", "strict": True, "unit": "day"},
    ]  # not order_date <= end_date (implied), nor fee <= price (broken beyond the 500 rows sampled)
    # the evidence, counted over all 3,000 rows though candidates came from 500
    assert "  # total = a + b: holds on 3,000 of 3,000 rows (0 violations)\n  - {kind: derived, column: total" in text
    assert "# (country, currency) take 10 of the 10 x 7 combinations" in text
    assert "# daily_rate = its own value per order_date (120 keys, 25.0 rows each)" in text
    assert "refused under a `privacy:` budget" in text

    dataset = DatasetConfig.model_validate(config)  # the draft loads as it is, rules and all
    table = orders()
    broken = dataset.ruleset.fit(table).violations(table).sum()
    assert len(broken) == 7 and (broken == 0).all(), broken.to_dict()


def test_several_sources_are_drafted_as_related_tables_with_keys_and_order(project):
    """A folder of tables: customers own their purchases (2% orphans), ordered in time; `store` also names a
    table, which is a second parent: left out with a comment. A customer's balance moves a little each purchase
    (a step), its amounts do not."""
    rng = np.random.default_rng(2)
    folder = project / "data_in" / "shop"
    folder.mkdir()
    people = customers(200)[["customer_id", "age", "plan"]]
    people.to_parquet(folder / "customers.parquet", index=False)
    pd.DataFrame({"store_id": [1, 2, 3], "city": ["Lyon", "Oslo", "Lima"]}).to_parquet(folder / "stores.parquet",
                                                                                         index=False)
    n = 1500
    owner = rng.choice(people["customer_id"], n)
    owner[:30] = "C-99999"  # orphans: no such customer
    purchases = pd.DataFrame({"purchase_id": np.arange(n), "customer_id": owner, "store_id": rng.integers(1, 4, n),
                              "amount": rng.gamma(2, 20, n).round(2),
                              "at": pd.Timestamp("2024-01-01") + pd.to_timedelta(np.arange(n), unit="h")})
    opening = purchases["customer_id"].map(pd.Series(rng.gamma(2.0, 500.0, len(people)), index=people["customer_id"]))
    purchases["balance"] = opening.fillna(1000.0) + purchases.groupby("customer_id")["amount"].cumsum()
    purchases.to_parquet(folder / "purchases.parquet", index=False, coerce_timestamps="us")

    done = synthlake(project, "infer-config", "data_in/shop", "--output", "conf/datasets/shop.yaml")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    text = (project / "conf/datasets/shop.yaml").read_text()
    config = yaml.safe_load(text)
    tables = {t["name"]: t for t in config["tables"]}
    assert config["name"] == "shop" and list(tables) == ["customers", "purchases"]  # customers: the root
    assert tables["customers"]["primary_key"] == "customer_id" and tables["purchases"]["primary_key"] == "purchase_id"
    assert tables["purchases"]["foreign_keys"] == [{"column": "customer_id", "parent": "customers"}]
    assert tables["purchases"]["order_by"] == "at" and tables["purchases"]["steps"] == ["balance"]
    assert "foreign key 'customer_id' -> 'customers' (99.5% of its non-null values" in text
    assert "'store_id' also references 'stores'" in text and "table 'stores' left out" in text
