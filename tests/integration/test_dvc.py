"""DVC runs the stages without Airflow: dvc.yaml's graph, its deps and its idempotence.

The slow test runs `dvc repro` three times in a copy of the project (tiny params): everything, then nothing
(all up to date), then only validate and publish after a validate param changed. The fast test checks
dvc.yaml against pipelines.stages (the stages in order, each one's outs and record deps) and each stage's
code deps against the project modules it imports, exactly: a module left out is a silent stale output, one
too many re-runs a stage for nothing. On a mismatch it prints the deps to paste.
"""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from project_fixture import REPO as REPO_ROOT
from project_fixture import VENV_BIN, make_project, project_env

from pipelines.config import load_any_dataset
from pipelines.records import LAYOUT
from pipelines.stages import RELATED_STAGES, STAGE_NAMES, STAGES

PACKAGES = ("jobs", "pipelines", "synthlake")
RUN_ID = "dvc"
DATASET = "adult"
RELATED = ("storms", "nycflights")  # the demos of related tables: dvc.yaml's stage related@<dataset> each
RELATED_RUNS = {f"related@{d}" for d in RELATED}
CODE_DIRS = ("jobs", "pipelines", "synthlake")
LAZY_IMPORT = re.compile(r"^(jobs|pipelines|synthlake)(\.\w+)+:\w+$")
REPRO_TIMEOUT_S = 900  # one dvc command: the first repro took 5-9 min on a shared 2-core machine


# ---- the deps cover the imports (no subprocess, milliseconds) ---------------------------------------
def _module_file(name: str) -> Path | None:
    base = REPO_ROOT.joinpath(*name.split("."))
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    return None


def _project_imports(path: Path) -> set[str]:
    """Project modules a file imports, at any depth (function-level imports included), the modules named in
    "package.module:Class" strings (the generator registry imports them lazily), plus sibling .py files it
    names in a string (code handed to MLflow as a file, e.g. tracking.MODEL_CODE)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names |= {f"{node.module}.{a.name}" for a in node.names}  # `from pipelines import tracking`
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and LAZY_IMPORT.match(node.value):
            names.add(node.value.split(":")[0])  # a registry entry imported on first use: "module:Class"
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and re.fullmatch(r"\w+\.py", node.value):
            sibling = path.with_name(node.value)
            if sibling.is_file():
                names.add(".".join(sibling.relative_to(REPO_ROOT).with_suffix("").parts))
    return {n for n in names if n.split(".")[0] in PACKAGES}


def stage_code(stage: str) -> set[str]:
    """The files behind jobs/<stage>_job.py: it imports pipelines.<stage> by name (jobs.common.run_stage)."""
    return code_of([f"jobs.{stage}_job", f"pipelines.{stage}"])


def code_of(modules: list[str]) -> set[str]:
    """The project files `modules` import, themselves included."""
    todo, files = list(modules), set()
    while todo:
        parts = todo.pop().split(".")
        for i in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__.py and a/b/__init__.py
            path = _module_file(".".join(parts[:i]))
            if path is not None and path not in files:
                files.add(path)
                todo.extend(_project_imports(path))
    return {str(p.relative_to(REPO_ROOT)) for p in files}


def dvc_stages() -> dict:
    """dvc.yaml's stages as DVC names them (a `foreach` stage's as `<stage>@<key>`), variables interpolated."""
    doc = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())
    variables = {k: v for entry in doc.get("vars", []) if isinstance(entry, dict) for k, v in entry.items()}

    def interpolate(text: str, local: dict) -> str:
        return re.sub(r"\$\{(\w+)\}", lambda m: str({**variables, **local}[m.group(1)]), text)

    def parsed(stage: dict, local: dict) -> dict:
        outs = [interpolate(next(iter(o)) if isinstance(o, dict) else o, local)
                for key in ("outs", "metrics", "plots") for o in stage.get(key, [])]
        commands = [stage["cmd"]] if isinstance(stage["cmd"], str) else stage["cmd"]
        return {"cmd": " && ".join(interpolate(c, local) for c in commands), "commands":
                [interpolate(c, local) for c in commands], "outs": outs, "params": stage.get("params", []),
                "deps": {interpolate(d, local) for d in stage.get("deps", [])}}

    stages = {}
    for name, stage in doc["stages"].items():
        if "foreach" in stage:
            for key, item in stage["foreach"].items():
                stages[f"{name}@{key}"] = parsed(stage["do"], {"key": key, "item": item})
        else:
            stages[name] = parsed(stage, {})
    return stages


def run_files(names: tuple[str, ...]) -> set[str]:
    return {f"var/runs/{DATASET}/{RUN_ID}/{LAYOUT[name]}" for name in names}


def test_dvc_yaml_runs_the_declared_stages_in_order_with_their_records():
    stages = dvc_stages()
    assert tuple(stages) == (*STAGE_NAMES, *sorted(RELATED_RUNS, key=lambda s: s != "related@storms"))
    for stage in STAGES:
        dvc = stages[stage.name]
        assert (REPO_ROOT / "jobs" / f"{stage.name}_job.py").is_file(), f"jobs/{stage.name}_job.py is missing"
        assert f"-m jobs.{stage.name}_job " in dvc["cmd"] and f"--run-id {RUN_ID}" in dvc["cmd"]
        assert set(dvc["outs"]) == run_files(stage.writes), f"dvc.yaml: outs of {stage.name!r}"
        assert {d for d in dvc["deps"] if d.startswith("var/")} == run_files(stage.reads), \
            f"dvc.yaml: record deps of {stage.name!r}"


@pytest.mark.parametrize("name", STAGE_NAMES)
def test_dvc_yaml_code_deps_are_exactly_what_the_stage_imports(name):
    deps = dvc_stages()[name]["deps"]
    listed = {d for d in deps if d.split("/")[0] in CODE_DIRS}
    expected = stage_code(name)
    paste = "\n".join(f"      - {d}" for d in sorted(expected))
    assert listed == expected, (f"dvc.yaml: stage {name!r} lists {sorted(listed - expected)} it does not import "
                                f"and lacks {sorted(expected - listed)}; its code deps are:\n{paste}")
    stale = {d for d in deps if not (REPO_ROOT / d).exists() and not d.startswith("var/")}
    assert not stale, f"dvc.yaml: stage {name!r} depends on files that do not exist: {sorted(stale)}"


@pytest.mark.parametrize("dataset", RELATED)
def test_a_related_tables_demo_runs_their_stages_in_order_on_exactly_their_code(dataset):
    stage = dvc_stages()[f"related@{dataset}"]
    commands = [c.split(" -m jobs.related_job ")[1] for c in stage["commands"]]
    assert commands == [f"run conf/datasets/{dataset}.yaml --run-id {RUN_ID} --env local"]  # its stages, in order
    writes = tuple(w for s in RELATED_STAGES for w in s.writes)
    assert set(stage["outs"]) == {f"var/runs/{dataset}/{RUN_ID}/{LAYOUT[w]}" for w in writes}
    sources = {t.source.path for t in load_any_dataset(REPO_ROOT / f"conf/datasets/{dataset}.yaml").tables}
    folders = {d for d in stage["deps"] if d.startswith("data/")}
    assert len(folders) == 1 and all(path.startswith(f"{next(iter(folders))}/") for path in sources)
    listed = {d for d in stage["deps"] if d.split("/")[0] in CODE_DIRS}
    expected = code_of(["jobs.related_job", "pipelines.related", "pipelines.related_validate"])
    paste = "\n".join(f"      - {d}" for d in sorted(expected))
    assert listed == expected, f"dvc.yaml: the related stage's code deps are:\n{paste}"


# ---- dvc repro in a copy of the project ---------------------------------------------------------------
def _env(root: Path) -> dict[str, str]:
    # The copy's code first on the path, so what runs is what DVC hashed as deps.
    return project_env(root, PYTHONPATH=str(root))


def _make_dvc_project(root: Path) -> Path:
    """project_fixture's tiny project plus what DVC needs: dvc.yaml, the code it hashes, a git repo."""
    make_project(root)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in CODE_DIRS:
        shutil.copytree(REPO_ROOT / name, root / name, ignore=ignore)
    shutil.copy2(REPO_ROOT / "dvc.yaml", root / "dvc.yaml")
    subprocess.run(["git", "init", "-q"], cwd=root, env=_env(root), check=True)
    (root / ".gitignore").write_text((REPO_ROOT / ".gitignore").read_text())
    _dvc(root, "init", "-q")
    # The repository's DVC config: analytics off, the default remote in var/dvc-remote.
    shutil.copy2(REPO_ROOT / ".dvc" / "config", root / ".dvc" / "config")
    return root


def _set_param(root: Path, section: str, key: str, value) -> None:
    params = yaml.safe_load((root / "params.yaml").read_text())
    params[section][key] = value
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def _dvc(root: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(VENV_BIN / "dvc"), *args], cwd=root, env=_env(root), text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=REPRO_TIMEOUT_S)
    if check and proc.returncode != 0:
        pytest.fail(f"dvc {' '.join(args)} exited {proc.returncode}:\n{proc.stdout[-6000:]}")
    return proc


def _repro(root: Path, *targets: str) -> tuple[set[str], set[str], float]:
    """`dvc repro [targets]`: the stages that ran, the ones skipped as unchanged, and the seconds it took."""
    started = time.monotonic()
    out = _dvc(root, "repro", *targets).stdout
    seconds = time.monotonic() - started
    ran = set(re.findall(r"Running stage '([\w@]+)'", out))
    skipped = set(re.findall(r"Stage '([\w@]+)' didn't change, skipping", out))
    stage_seconds = re.findall(r"\[synthlake\] (\w+): done in ([\d.]+)s", out)
    print(f"\n[dvc] repro {seconds:.1f}s; in the stages (Spark start excluded): "
          + (", ".join(f"{name} {sec}s" for name, sec in stage_seconds) or "none"))
    return ran, skipped, seconds


def _published_rows(root: Path, table: str) -> int:
    from deltalake import DeltaTable

    dataset = yaml.safe_load((root / "conf" / "datasets" / f"{DATASET}.yaml").read_text())
    path = root / "var" / "lake" / dataset["output"][table]
    return DeltaTable(str(path)).to_pyarrow_table(filters=[("run_id", "=", RUN_ID)]).num_rows


@pytest.mark.slow
def test_dvc_repro_runs_the_pipeline_once_and_then_only_what_changed(tmp_path):
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    root = _make_dvc_project(tmp_path / "project")
    run_dir = root / "var" / "runs" / DATASET / RUN_ID
    timings = {}

    # 1. Everything runs, in order, and the run's rows are published (the related tables' too).
    ran, _, timings["first"] = _repro(root)
    assert ran == {*STAGE_NAMES, *RELATED_RUNS}
    # attempts.json: only after a failed gate (pipelines.retrain; dvc repro stops there)
    flat = tuple(name for name in LAYOUT if not name.startswith("related_"))  # the related tables' are their own
    for path in run_files(flat) - run_files(("model", "train_work", "train_checkpoints", "attempts")):
        assert (root / path).is_file(), path
    model_files = {p.name for p in (run_dir / LAYOUT["model"]).iterdir()}
    assert model_files == {"generator.json", "generator.pt", "sampler.json", "sampler.npz"}
    assert json.loads((run_dir / LAYOUT["verdict"]).read_text())["passed"] is True
    assert _published_rows(root, "published") == 200
    for dataset, tables in (("storms", {"storms", "observations"}), ("nycflights", {"planes", "flights"})):
        related = json.loads((root / "var/runs" / dataset / RUN_ID / LAYOUT["related_publish"]).read_text())
        assert set(related["tables"]) == tables and min(related["rows"].values()) > 0, dataset
    lock = yaml.safe_load((root / "dvc.lock").read_text())
    assert set(lock["stages"]) == {*STAGE_NAMES, *RELATED_RUNS}
    model_out = next(o for o in lock["stages"]["train"]["outs"] if o["path"].endswith("/model"))
    assert model_out["md5"].endswith(".dir") and model_out["nfiles"] >= 2  # the model is in DVC's cache
    source = next(d for d in lock["stages"]["profile"]["deps"] if d["path"] == "data/adult/adult.data")
    assert source["md5"]  # the version of the data the run learned from

    metrics = json.loads(_dvc(root, "metrics", "show", "--json").stdout)
    headline = json.loads((run_dir / LAYOUT["metrics"]).read_text())
    assert f'"accuracy": {headline["accuracy"]}' in json.dumps(metrics)  # metrics.json's figures, read by DVC
    plots = _dvc(root, "plots", "show", "--json").stdout
    assert "column_shapes.csv" in plots and "dcr.csv" in plots
    _dvc(root, "push", "-q")
    assert any((root / "var" / "dvc-remote").rglob("*")), "dvc push sent nothing to the default remote"

    # 2. Nothing changed: nothing runs.
    ran, skipped, timings["second"] = _repro(root)
    assert ran == set() and skipped == {*STAGE_NAMES, *RELATED_RUNS}
    assert "up to date" in _dvc(root, "status").stdout

    # 3. A validate param changed: validate and publish run again, and the partition is replaced, not added.
    _set_param(root, "validate", "max_rows", 1000)
    ran, skipped, timings["after_param_change"] = _repro(root, "publish")  # the related tables' stage would too
    assert ran == {"validate", "publish"}
    assert skipped == {"profile", "check", "train", "sample"}
    assert _published_rows(root, "published") == 200
    assert _published_rows(root, "audit") == 1
    print("\n[dvc] repro seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()))
