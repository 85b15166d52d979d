"""pipelines.config: the repo's configs load; every mistake is a ConfigError naming the key and the file."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipelines.config import ConfigError, load_dataset, load_env, load_params
from pipelines.context import RunContext
from pipelines.thresholds import check_metric_names

REPO = Path(__file__).resolve().parents[2]
ADULT = REPO / "conf" / "datasets" / "adult.yaml"

VALID_DATASET = {
    "name": "shop",
    "source": {"path": "data/shop.csv", "format": "csv", "options": {"header": "true"}},
    "target": "churned",
    "generator": "ctgan",
    "columns": [
        {"name": "customer_id", "kind": "identifier"},
        {"name": "age", "kind": "numeric", "integer": True},
        {"name": "email", "kind": "pii", "pii": "email"},
        {"name": "churned", "kind": "categorical"},
    ],
    "output": {"staging": "shop_staging", "published": "shop"},
}


def write_yaml(path: Path, data) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def dataset_file(tmp_path: Path, **changes) -> Path:
    data = copy.deepcopy(VALID_DATASET)
    data.update(changes)
    return write_yaml(tmp_path / "shop.yaml", data)


def config_error(loader, path: Path, *args) -> str:
    with pytest.raises(ConfigError) as info:
        loader(path, *args)
    message = str(info.value)
    assert str(path) in message, "the error must name the file"
    return message


# ---- the repo's own configs ----------------------------------------------------------------------
def test_repo_adult_dataset_loads_as_written():
    path = REPO / "conf" / "datasets" / "adult.yaml"
    raw = yaml.safe_load(path.read_text())
    dataset = load_dataset(path)
    assert dataset.name == raw["name"]
    assert dataset.metadata.names == [c["name"] for c in raw["columns"]]
    assert dataset.target == raw["target"] and dataset.target in dataset.metadata.names
    assert [c.kind.value for c in dataset.columns] == [c["kind"] for c in raw["columns"]]
    assert [c.integer for c in dataset.columns] == [c.get("integer", False) for c in raw["columns"]]
    assert dataset.source.format == raw["source"]["format"]
    assert dataset.output.published == raw["output"]["published"]


def test_repo_params_load_as_written():
    path = REPO / "params.yaml"
    raw = yaml.safe_load(path.read_text())
    params = load_params(path)
    assert params.seed == raw["seed"] and params.rows == raw["rows"]
    for key, value in raw["train"].items():
        assert getattr(params.train, key) == value, key
    for key, value in raw["sample"].items():
        assert getattr(params.sample, key) == value, key
    for key, value in raw["validate"].items():
        assert getattr(params.validate_, key) == value, key
    assert params.profile.holdout_fraction == raw["profile"]["holdout_fraction"]


def test_repo_local_env_loads(monkeypatch):
    monkeypatch.setenv("SYNTHLAKE_HOME", str(REPO))
    raw = yaml.safe_load((REPO / "conf" / "env" / "local.yaml").read_text())
    env = load_env("local")
    assert env.work_dir == raw["work_dir"] and env.lake_dir == raw["lake_dir"]
    assert env.spark.master == raw["spark"]["master"]


def test_unknown_environment_names_the_missing_file(monkeypatch, tmp_path):
    monkeypatch.setenv("SYNTHLAKE_HOME", str(tmp_path))
    with pytest.raises(ConfigError, match="nowhere.yaml"):
        load_env("nowhere")


def test_training_runs_on_the_driver_locally_and_on_the_executors_on_a_cluster(monkeypatch):
    monkeypatch.setenv("SYNTHLAKE_HOME", str(REPO))
    for var in ("SYNTHLAKE_WORK_DIR", "SYNTHLAKE_LAKE_DIR", "SPARK_MASTER_URL", "MLFLOW_TRACKING_URI",
                "MLFLOW_ARTIFACT_LOCATION"):
        monkeypatch.setenv(var, "/somewhere")
    assert load_env("local").train_on == "driver"
    assert load_env("cluster").train_on == "executors"


def test_unknown_train_on_is_named(monkeypatch, tmp_path):
    monkeypatch.setenv("SYNTHLAKE_HOME", str(tmp_path))
    (tmp_path / "conf" / "env").mkdir(parents=True)
    path = write_yaml(tmp_path / "conf" / "env" / "odd.yaml", {"train_on": "gpus"})
    with pytest.raises(ConfigError) as info:
        load_env("odd")
    assert str(path) in str(info.value) and "train_on" in str(info.value) and "executors" in str(info.value)


# ---- mistakes in a dataset config ----------------------------------------------------------------
def test_valid_dataset_fixture_loads(tmp_path):
    """The base of the failure cases below is itself valid, so each case fails for its own reason."""
    dataset = load_dataset(dataset_file(tmp_path))
    assert dataset.metadata.names == ["customer_id", "age", "email", "churned"]


def test_unknown_top_level_key_is_named(tmp_path):
    message = config_error(load_dataset, dataset_file(tmp_path, colour_scheme="dark"))
    assert "colour_scheme" in message


def test_unknown_nested_key_is_named_with_its_path(tmp_path):
    data = copy.deepcopy(VALID_DATASET)
    data["source"]["compresion"] = "gzip"
    message = config_error(load_dataset, write_yaml(tmp_path / "d.yaml", data))
    assert "source.compresion" in message


def test_unknown_key_in_a_column_is_named(tmp_path):
    data = copy.deepcopy(VALID_DATASET)
    data["columns"][1]["integr"] = True
    message = config_error(load_dataset, write_yaml(tmp_path / "d.yaml", data))
    assert "integr" in message


def test_target_not_among_columns_is_named(tmp_path):
    message = config_error(load_dataset, dataset_file(tmp_path, target="lifetime_value"))
    assert "lifetime_value" in message


def test_duplicate_column_names_are_named(tmp_path):
    data = copy.deepcopy(VALID_DATASET)
    data["columns"].append({"name": "age", "kind": "categorical"})
    message = config_error(load_dataset, write_yaml(tmp_path / "d.yaml", data))
    assert "duplicate" in message and "age" in message


def test_pii_kind_without_pii_type_is_named(tmp_path):
    data = copy.deepcopy(VALID_DATASET)
    data["columns"][2] = {"name": "email", "kind": "pii"}
    message = config_error(load_dataset, write_yaml(tmp_path / "d.yaml", data))
    assert "email" in message and "pii" in message


def test_unknown_column_kind_is_an_error(tmp_path):
    data = copy.deepcopy(VALID_DATASET)
    data["columns"][1]["kind"] = "number"
    message = config_error(load_dataset, write_yaml(tmp_path / "d.yaml", data))
    assert "columns.1.kind" in message


def test_only_generated_columns_is_an_error(tmp_path):
    data = copy.deepcopy(VALID_DATASET)
    data["columns"] = [c for c in data["columns"] if c["kind"] in ("identifier", "pii")]
    data["target"] = None
    message = config_error(load_dataset, write_yaml(tmp_path / "d.yaml", data))
    assert "no column to learn" in message


def test_missing_file_and_non_mapping_file_are_config_errors(tmp_path):
    missing = tmp_path / "absent.yaml"
    with pytest.raises(ConfigError, match="absent.yaml"):
        load_dataset(missing)
    listing = tmp_path / "list.yaml"
    listing.write_text("- a\n- b\n")
    config_error(load_dataset, listing)
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: [unclosed\n")
    assert "YAML" in config_error(load_dataset, broken)


# ---- mistakes in params ---------------------------------------------------------------------------
def test_unknown_params_key_is_named(tmp_path):
    message = config_error(load_params, write_yaml(tmp_path / "params.yaml", {"rowz": 10}))
    assert "rowz" in message


def test_nested_params_typo_is_named(tmp_path):
    message = config_error(load_params, write_yaml(tmp_path / "params.yaml", {"train": {"epoch": 3}}))
    assert "train.epoch" in message


def test_wrong_type_is_named(tmp_path):
    message = config_error(load_params, write_yaml(tmp_path / "params.yaml", {"rows": "many"}))
    assert "rows" in message


def test_out_of_bounds_value_is_named(tmp_path):
    message = config_error(load_params, write_yaml(tmp_path / "params.yaml", {"train": {"num_processes": 0}}))
    assert "train.num_processes" in message


def test_missing_params_file_gives_defaults(tmp_path):
    params = load_params(tmp_path / "no-params.yaml")
    assert params.rows >= 1 and params.train.hyper == {}  # every generator on its own defaults


# ---- environment variables and overrides ----------------------------------------------------------
def test_env_vars_are_expanded(tmp_path, monkeypatch):
    monkeypatch.setenv("SYNTHLAKE_TEST_BUCKET", "s3a://bucket-under-test")
    data = copy.deepcopy(VALID_DATASET)
    data["source"]["path"] = "${SYNTHLAKE_TEST_BUCKET}/raw/shop.parquet"
    data["source"]["options"] = {"token": "${SYNTHLAKE_TEST_BUCKET}"}
    dataset = load_dataset(write_yaml(tmp_path / "d.yaml", data))
    assert dataset.source.path == "s3a://bucket-under-test/raw/shop.parquet"
    assert dataset.source.options["token"] == "s3a://bucket-under-test"


def test_unset_env_var_is_named(tmp_path, monkeypatch):
    monkeypatch.delenv("SYNTHLAKE_TEST_UNSET_VAR", raising=False)
    data = copy.deepcopy(VALID_DATASET)
    data["source"]["path"] = "${SYNTHLAKE_TEST_UNSET_VAR}/shop.csv"
    with pytest.raises(ConfigError, match="SYNTHLAKE_TEST_UNSET_VAR"):
        load_dataset(write_yaml(tmp_path / "d.yaml", data))


def test_overrides_apply_on_top_of_the_file(tmp_path):
    path = write_yaml(tmp_path / "params.yaml", {"seed": 3, "rows": 500, "train": {"max_rows": 5000}})
    params = load_params(path, {"rows": 1234, "seed": 99})
    assert (params.rows, params.seed, params.train.max_rows) == (1234, 99, 5000)


def test_unset_overrides_keep_the_file_values(tmp_path):
    """The CLI passes None for options not given: they must not replace the file's values."""
    path = write_yaml(tmp_path / "params.yaml", {"seed": 3, "rows": 500})
    params = load_params(path, {"rows": None, "seed": None})
    assert (params.rows, params.seed) == (500, 3)


def test_invalid_override_is_a_config_error(tmp_path):
    path = write_yaml(tmp_path / "params.yaml", {"rows": 500})
    assert "rows" in config_error(load_params, path, {"rows": 0})


# ---- gates and privacy columns -----------------------------------------------------------------------
def threshold_error(monkeypatch, dataset: Path, params: Path) -> str:
    """check_metric_names' error for a context opened from these files (the repo's environment)."""
    monkeypatch.setenv("SYNTHLAKE_HOME", str(REPO))
    ctx = RunContext.open(str(dataset), "r1", params_path=str(params))
    with pytest.raises(ConfigError) as info:
        check_metric_names(ctx)
    return str(info.value)


def test_unknown_metric_in_params_thresholds_is_named(tmp_path, monkeypatch):
    params = write_yaml(tmp_path / "params.yaml", {"validate": {"thresholds": {"acuracy": 0.9}}})
    load_params(params)  # loading needs no metric registry: the validate stage and the CLI check the names
    message = threshold_error(monkeypatch, dataset_file(tmp_path), params)
    assert "acuracy" in message and "validate.thresholds" in message and str(params) in message


def test_unknown_metric_in_dataset_thresholds_is_named(tmp_path, monkeypatch):
    dataset = dataset_file(tmp_path, thresholds={"dcr": 0.1})
    message = threshold_error(monkeypatch, dataset, write_yaml(tmp_path / "params.yaml", {}))
    assert "dcr" in message and "dcr_share" in message  # the known names are listed
    assert str(dataset) in message


def test_known_metric_names_pass(tmp_path, monkeypatch):
    monkeypatch.setenv("SYNTHLAKE_HOME", str(REPO))
    check_metric_names(RunContext.open(str(dataset_file(tmp_path, thresholds={"dcr_share": 0.1})), "r1"))


def test_config_does_not_import_the_metric_registry():
    """A metric's edit must not invalidate the stages before validate in DVC (dvc.yaml's deps follow imports)."""
    code = ("import sys; from pipelines import config, context\n"
            f"config.load_params({str(REPO / 'params.yaml')!r}); config.load_dataset({str(ADULT)!r})\n"
            "print('synthlake.evaluation' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip() == "False"


@pytest.mark.parametrize("key, value", [("quasi_identifiers", ["age", "zip"]), ("sensitive", "zip"),
                                        ("canaries", {"zip": ["00000"]})])
def test_privacy_columns_must_be_configured_columns(tmp_path, key, value):
    message = config_error(load_dataset, dataset_file(tmp_path, **{key: value}))
    assert key in message and "zip" in message


def test_sensitive_defaults_to_the_target_and_thresholds_may_be_null(tmp_path):
    dataset = load_dataset(dataset_file(tmp_path, quasi_identifiers=["age"], thresholds={"tstr": None}))
    assert dataset.sensitive_column == "churned" and dataset.thresholds == {"tstr": None}


def test_holdout_fraction_must_leave_rows_on_both_sides(tmp_path):
    for fraction in (0, 1):
        path = write_yaml(tmp_path / "p.yaml", {"profile": {"holdout_fraction": fraction}})
        message = config_error(load_params, path)
        assert "profile.holdout_fraction" in message


@pytest.mark.parametrize("privacy, key", [({"epsilon": 0}, "privacy.epsilon"), ({"delta": 1e-5}, "privacy.epsilon"),
                                          ({"epsilon": 1, "delta": 0.5}, "privacy.delta"),
                                          ({"epsilon": 1, "rho": 2}, "privacy.rho")])
def test_a_bad_privacy_budget_is_named(tmp_path, privacy, key):
    assert key in config_error(load_dataset, dataset_file(tmp_path, privacy=privacy))


def test_privacy_budget_loads_with_a_default_delta(tmp_path):
    dataset = load_dataset(dataset_file(tmp_path, privacy={"epsilon": 2}))
    assert (dataset.privacy.epsilon, dataset.privacy.delta) == (2, 1e-5)
    assert load_dataset(dataset_file(tmp_path)).privacy is None


def test_a_privacy_unit_must_be_a_configured_column(tmp_path):
    message = config_error(load_dataset, dataset_file(tmp_path, privacy={"epsilon": 2, "unit": "customer"}))
    assert "privacy.unit: 'customer' is not a configured column" in message
    dataset = load_dataset(dataset_file(tmp_path, privacy={"epsilon": 2, "unit": "age", "unit_rows": 5}))
    assert (dataset.privacy.unit, dataset.privacy.unit_rows) == ("age", 5)
    assert "privacy.unit_rows" in config_error(load_dataset, dataset_file(tmp_path, privacy={"epsilon": 2,
                                                                                           "unit_rows": 0}))


def test_a_rule_is_checked_when_the_config_loads_and_named(tmp_path):
    message = config_error(load_dataset, dataset_file(tmp_path, rules=[
        {"kind": "range", "column": "age", "low": 18},
        {"kind": "inequality", "low": "age", "high": "churned"}]))
    assert "rule #1 (inequality)" in message and "churned" in message


def test_a_rule_that_learns_from_the_rows_is_refused_under_a_privacy_budget(tmp_path):
    rules = [{"kind": "unique", "columns": ["customer_id"]},
             {"kind": "fixed_combinations", "columns": ["churned", "age"]}]
    assert load_dataset(dataset_file(tmp_path, rules=rules[:1], privacy={"epsilon": 1.0, "delta": 1e-6})).ruleset
    message = config_error(load_dataset, dataset_file(tmp_path, rules=rules, privacy={"epsilon": 1.0, "delta": 1e-6}))
    assert "rule #1 (fixed_combinations)" in message and "privacy" in message
