"""The `synthlake` command's contract: help, exit codes and errors that name what is wrong."""

from __future__ import annotations

import subprocess

import pytest
import yaml
from project_fixture import VENV_BIN, make_project, project_env

from pipelines.stages import STAGE_NAMES


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return make_project(tmp_path_factory.mktemp("cli"))


def synthlake(root, *args):
    return subprocess.run([str(VENV_BIN / "synthlake"), *args], cwd=root, env=project_env(root),
                          capture_output=True, text=True, timeout=120)


def test_help_lists_every_command(project):
    out = synthlake(project, "--help")
    assert out.returncode == 0
    for command in ("run", *STAGE_NAMES, "infer-config", "generators", "serve"):
        assert command in out.stdout
    stage_help = synthlake(project, "sample", "--help").stdout
    for option in ("--run-id", "--rows", "--seed", "--params", "--env"):
        assert option in stage_help


def test_unknown_key_in_dataset_config_exits_2_naming_it(project):
    bad = project / "conf" / "datasets" / "typo.yaml"
    bad.write_text((project / "conf" / "datasets" / "adult.yaml").read_text().replace("target:", "tagret:"))
    out = synthlake(project, "run", str(bad))
    assert out.returncode == 2
    assert "tagret" in out.stderr and "typo.yaml" in out.stderr
    assert not (project / "var" / "lake").exists()  # nothing written


def test_wrong_param_type_exits_2_naming_it(project):
    out = synthlake(project, "run", "conf/datasets/adult.yaml", "--rows", "0")
    assert out.returncode == 2 and "rows" in out.stderr


def test_unknown_metric_in_thresholds_exits_2_before_spark_starts(project):
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["validate"]["thresholds"]["acuracy"] = 0.9
    bad = project / "typo-params.yaml"
    bad.write_text(yaml.safe_dump(params))
    out = synthlake(project, "run", "conf/datasets/adult.yaml", "--params", str(bad))
    assert out.returncode == 2
    assert "acuracy" in out.stderr and "validate.thresholds" in out.stderr and "typo-params.yaml" in out.stderr
    assert "SparkContext" not in out.stdout + out.stderr and not (project / "var" / "runs").exists()


def test_bad_hyper_parameter_exits_2_before_spark_starts(project):
    bad = project / "conf" / "datasets" / "hyper-typo.yaml"
    config = yaml.safe_load((project / "conf" / "datasets" / "adult.yaml").read_text())
    bad.write_text(yaml.safe_dump({**config, "hyper": {"hiden_dim": 32}}))
    out = synthlake(project, "run", str(bad))
    assert out.returncode == 2
    assert "hiden_dim" in out.stderr and "hyper-typo.yaml" in out.stderr and "Traceback" not in out.stderr
    assert "SparkContext" not in out.stdout + out.stderr and not (project / "var" / "runs").exists()


def test_generators_lists_every_generator_with_its_parameters(project):
    from synthlake.generators import generator_names, hyper_model

    out = synthlake(project, "generators")
    assert out.returncode == 0
    for name in generator_names():
        assert f"{name}:" in out.stdout
        assert all(field in out.stdout for field in hyper_model(name).model_fields)


def test_stage_without_run_id_is_a_usage_error(project):
    out = synthlake(project, "train", "conf/datasets/adult.yaml")
    assert out.returncode == 2 and "--run-id" in out.stderr


def test_bad_run_id_is_refused(project):
    out = synthlake(project, "profile", "conf/datasets/adult.yaml", "--run-id", "../escape")
    assert out.returncode == 2 and "run id" in out.stderr
