"""A dataset config's `rules:` through the real stages (Spark, Delta, MLflow): the rules are fitted on the
training rows and saved around the Sampler, every published row holds every rule, validate counts the rows
that break each rule over all staged rows, and a rule the source breaks is refused naming it.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml
from project_fixture import make_project, spark_session

from pipelines import check, profile, publish, sample, train, validate
from pipelines.context import RunContext, StageError
from pipelines.records import ProfileRecord, Verdict
from synthlake.generators import load_sampler
from synthlake.generators.ruled import RuledSampler

pytestmark = pytest.mark.slow
ROWS = 400
RULES = [
    {"kind": "inequality", "low": "booked_at", "high": "checkin", "unit": "day"},
    {"kind": "range", "column": "discount", "low": 0, "high": "price"},
    {"kind": "fixed_combinations", "columns": ["country", "currency"]},
    {"kind": "derived", "column": "total", "expression": "price - discount"},
    {"kind": "derived", "column": "arrival_year", "expression": "year(checkin)"},
    {"kind": "presence", "column": "cancelled_at", "when": {"column": "status", "equals": "cancelled"}},
    {"kind": "range", "column": "price", "low": 0},  # keeps the discount's bounds in order
]


def bookings(n: int = 1500, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    booked = pd.Timestamp("2022-01-01") + pd.to_timedelta(rng.integers(0, 500, n), unit="D")
    checkin = booked + pd.to_timedelta(rng.integers(0, 90, n), unit="D")
    pairs = [("FR", "EUR"), ("DE", "EUR"), ("US", "USD"), ("GB", "GBP")]
    pick = rng.choice(len(pairs), n)
    price = np.round(rng.gamma(3, 40, n), 2)
    discount = np.round(price * rng.random(n) * 0.3, 2)
    cancelled = rng.random(n) < 0.3
    return pd.DataFrame({
        "booked_at": booked, "checkin": checkin,
        "country": [pairs[i][0] for i in pick], "currency": [pairs[i][1] for i in pick],
        "price": price, "discount": discount, "total": price - discount,
        "arrival_year": checkin.year.astype(np.int64),
        "status": np.where(cancelled, "cancelled", "ok"),
        "cancelled_at": pd.Series(booked + pd.to_timedelta(rng.integers(0, 20, n), unit="D")).where(cancelled),
    })


COLUMNS = [{"name": "booked_at", "kind": "datetime"}, {"name": "checkin", "kind": "datetime"},
           {"name": "country", "kind": "categorical"}, {"name": "currency", "kind": "categorical"},
           {"name": "price", "kind": "numeric"}, {"name": "discount", "kind": "numeric"},
           {"name": "total", "kind": "numeric"}, {"name": "arrival_year", "kind": "numeric", "integer": True},
           {"name": "status", "kind": "categorical"}, {"name": "cancelled_at", "kind": "datetime"}]


def write_config(root, name: str, rules: list[dict]) -> str:
    config = {"name": name, "source": {"path": "bookings.parquet", "format": "parquet"}, "target": "status",
              "generator": "gaussian_copula", "columns": COLUMNS, "rules": rules,
              "output": {"staging": f"{name}_staging", "published": name}}
    path = root / "conf" / "datasets" / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return str(path)


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = make_project(tmp_path_factory.mktemp("rules"), params={
        "rows": ROWS, "train": {"num_processes": 1}, "sample": {"partitions": 2, "block_rows": 150}})
    bookings().to_parquet(root / "bookings.parquet", coerce_timestamps="us")  # Spark reads no nanoseconds
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SYNTHLAKE_HOME", str(root))
        yield root


@pytest.fixture(scope="module")
def spark(project):
    session = spark_session("synthlake-rules-tests")
    yield session
    session.stop()


def test_every_published_row_holds_every_rule(project, spark):
    ctx = RunContext.open(write_config(project, "bookings", RULES), "rules-run")
    for stage in (profile, check, train, sample, validate, publish):
        stage.run(ctx, spark)
    model = load_sampler(ctx.store.path("model"))
    assert isinstance(model, RuledSampler)
    published = ctx.read_partition(spark, "published").drop("run_id").toPandas()
    assert len(published) == ROWS
    broken = model.rules.violations(published)
    assert broken.sum().to_dict() == dict.fromkeys(broken.columns, 0)
    assert set(zip(published["country"], published["currency"], strict=True)) <= {
        ("FR", "EUR"), ("DE", "EUR"), ("US", "USD"), ("GB", "GBP")}
    assert published["cancelled_at"].notna().equals(published["status"] == "cancelled")
    verdict = ctx.store.read(Verdict)
    rule_checks = [c for c in verdict.checks if c.family == "rules"]
    assert [c.check for c in rule_checks] == list(broken.columns)
    assert all(c.value == 0 and c.passed for c in rule_checks)
    assert ctx.store.read(ProfileRecord).rules == dict.fromkeys(broken.columns, 0.0)  # the source keeps them
    # a produced column's range is its rule's (price - discount may pass the source's largest total): every
    # numeric column here is produced by a rule, so none has a range expectation, as each would without rules
    from pipelines.validate import build_suite

    ranged = {c.check.split(":")[-1] for c in verdict.checks if "expect_column_values_to_be_between" in c.check}
    plain = {e.column for e in build_suite(ctx.store.read(ProfileRecord)).expectations
             if e.expectation_type == "expect_column_values_to_be_between"}
    assert ranged == set() and plain == {"price", "discount", "total", "arrival_year"}
    saved = json.loads((ctx.store.path("model") / "rules.json").read_text())
    assert [r["config"]["kind"] for r in saved["rules"]] == [r["kind"] for r in RULES]


def test_ruled_rows_do_not_depend_on_partitions(project, spark):
    """Rules reverse row by row (row numbers from each block's offset): 1 and 4 partitions give the same rows."""
    frames = []
    for partitions in (1, 4):
        ctx = RunContext.open(str(project / "conf/datasets/bookings.yaml"), "rules-run",
                              sample={"partitions": partitions, "block_rows": 150})
        files = sample.sampler_files(load_sampler(ctx.store.path("model")))
        frame = sample.synthetic_frame(spark, ctx, files).toPandas()
        frames.append(frame.sort_values(list(frame.columns)).reset_index(drop=True))
    assert len(frames[0]) == ROWS and frames[0].equals(frames[1])


def test_each_rule_is_an_expectation_that_counts_the_rows_breaking_it(project, spark):
    """The check is not a formality: staged rows edited to break the range rule are counted by its Great
    Expectations expectation, which fails; the rules that do not read the discount still pass."""
    from pipelines.rule_checks import broken_rows
    from pipelines.validate import _expectation_checks, run_expectations

    ctx = RunContext.open(str(project / "conf/datasets/bookings.yaml"), "rules-run")
    rules = load_sampler(ctx.store.path("model")).rules
    staged = ctx.read_partition(spark, "staging").drop("run_id")
    tampered = staged.withColumn("discount", staged["price"] + 1)
    prof = ctx.store.read(ProfileRecord)
    checks = {c["check"]: c for c in _expectation_checks(run_expectations(tampered, prof, "t", rules=rules), rules)
              if c["family"] == "rules"}
    assert list(checks) == [rule.label for rule in rules.rules]
    assert checks[rules.rules[1].label]["value"] == ROWS and checks[rules.rules[1].label]["passed"] is False
    discount = {rules.rules[1].label, rules.rules[3].label}  # the range and `total = price - discount`
    assert all(c["passed"] is (label not in discount) for label, c in checks.items())
    assert broken_rows(tampered, rules)[rules.rules[1].label] == ROWS
    assert broken_rows(staged, rules) == dict.fromkeys(checks, 0)


def test_a_rule_the_source_breaks_is_refused_naming_it(project, spark):
    path = write_config(project, "broken", [{"kind": "inequality", "low": "price", "high": "discount"}])
    ctx = RunContext.open(path, "broken-run")
    with pytest.raises(StageError, match=r"rule #0 \(inequality\): 100\.00% of the source's training rows break"):
        profile.run(ctx, spark)


def test_a_run_trained_before_its_rules_were_configured_is_refused(project, spark):
    from pipelines.validate import _fitted_rules

    ctx = RunContext.open(str(project / "conf/datasets/bookings.yaml"), "rules-run")
    saved = ctx.store.path("model") / "rules.json"
    hidden = saved.rename(saved.with_suffix(".hidden"))
    try:
        with pytest.raises(StageError, match="has rules, but run 'rules-run' was trained without them"):
            _fitted_rules(ctx)
    finally:
        hidden.rename(saved)
