"""synthlake's Airflow 3 DAGs: when the spark-submit stages run, never what they do.

Every dataset config conf/datasets/<dataset>.yaml gets two DAGs that chain the same stages, profile >> check >>
train >> sample >> validate >> publish (the order of pipelines.stages), one `SparkSubmitOperator` per stage running
`jobs/<stage>_job.py` of this project. The check stage decides whether train trains or reuses the champion (source
unchanged or not drifted); a ``retrain`` task between validate and publish runs only when validate failed, and tries
the retraining ladder (pipelines.retrain); publish runs when validate or retrain passed, and updates the asset
``synthlake.<dataset>.published``:

- ``synthlake_<dataset>_on_demand``: manual trigger, with params ``rows``, ``seed`` and ``retrain`` (defaults:
  params.yaml's), and optionally ``where`` and ``seed_table`` (the rows' conditions, README: Conditions); its
  run id is Airflow's dag run id (``manual__2026-...+00:00``).
- ``synthlake_<dataset>_scheduled``: on the config's ``schedule:`` (cron, UTC), no catch-up, and on every
  event of the asset ``synthlake.<dataset>.source`` (the source's URI); rows from params.yaml, the seed
  derived from params.yaml's and the logical date; its run id is ``nightly-YYYYMMDD`` of the logical date, so
  a retry or a rerun of the same night replaces that night's partition, with the same rows, instead of adding
  a second one (a run an asset event started has no logical date: its run id stands in).

A dataset of related tables (a config with ``tables:``, pipelines.related) gets the same two DAGs, chaining its
own stages, train >> sample >> validate >> publish (pipelines.stages.RELATED_STAGES), without the retraining
ladder; its scheduled DAG also runs on an event of any of its tables' source assets
(``synthlake.<dataset>.<table>.source``).

Parsing this file reads the dataset configs and params.yaml (for those defaults) and, of the project, imports
only the stage list (pipelines.stages, plain Python): neither pyspark, pandas, mlflow nor synthlake (a test
checks it).
Everything else that depends on the machine is resolved when a task runs, in this order:

================  ====================================================================================
Spark connection  Airflow Variable ``synthlake_spark_conn_id`` (an Airflow Variable can also come from
                  env ``AIRFLOW_VAR_SYNTHLAKE_SPARK_CONN_ID``), else ``spark_local``; define that one with
                  ``AIRFLOW_CONN_SPARK_LOCAL='{"conn_type":"spark","host":"local[2]"}'``
environment       Airflow Variable ``synthlake_env``, else env ``SYNTHLAKE_ENV``, else ``local``
                  (``conf/env/<name>.yaml``, passed to the jobs as ``--env``)
project home      env ``SYNTHLAKE_HOME`` of the worker, else the folder above ``dags/``; the jobs read
                  ``conf/`` and ``params.yaml`` from there
Ivy cache         ``ivy_dir`` of the environment's yaml (relative to the home), else ``<home>/var/ivy``
Python            the worker's interpreter (``sys.executable``): ``PYSPARK_PYTHON`` for driver and
                  executors, and its ``bin/`` (where pip put ``spark-submit``) goes first on ``PATH``
packages          Delta's jar, and the openlineage-spark listener's where the environment's yaml sets
                  ``openlineage.spark_listener: true``
lineage parent    where Airflow's OpenLineage provider sends events (``[openlineage] transport``): the
                  task's run and the DAG's run, as ``OPENLINEAGE_PARENT_ID`` and
                  ``OPENLINEAGE_ROOT_PARENT_ID`` for the job, whose stage run names them as its parent
================  ====================================================================================

Exit codes of the jobs: 0 done, 1 a crash (retried), 2 bad configuration or arguments, 3 a refused stage
such as a failed validation gate (2 and 3 fail at once, without retries: they cannot get better by themselves).
"""

from __future__ import annotations

import hashlib
import operator
import os
import re
import sys
from datetime import datetime, timedelta, timezone
from functools import reduce
from pathlib import Path
from typing import Any

import yaml  # Airflow depends on PyYAML
from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.sdk import DAG, Asset, AssetOrTimeSchedule, AssetWatcher, CronTriggerTimetable, Param
from airflow.sdk.exceptions import AirflowFailException

from pipelines.source_watch import SourceChangeTrigger
from pipelines.stages import RELATED_STAGE_NAMES, STAGE_NAMES

PROJECT_ROOT = Path(__file__).resolve().parents[1]  # no I/O: just the path of this file

# Maven coordinates of the Delta jar for spark-submit --packages, and of the OpenLineage Spark listener's. Kept
# as constants so that parsing stays light; tests/integration/test_dags.py asserts they equal
# pipelines.spark.delta_package() and pipelines.lineage.SPARK_PACKAGE.
DELTA_PACKAGE = "io.delta:delta-spark_4.2_2.13:4.4.0"
OPENLINEAGE_SPARK_PACKAGE = "io.openlineage:openlineage-spark_2.13:1.53.0"

DEFAULT_CONN_ID = "spark_local"
CONN_ID_VARIABLE = "synthlake_spark_conn_id"
ENV_VARIABLE = "synthlake_env"
NO_RETRY_EXIT_CODES = frozenset({2, 3})  # bad config or arguments, a refused stage (failed gate): retrying cannot help
RUN_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:+-]{0,127}$")  # = pipelines.context.RUN_ID_PATTERN

# Generous ceilings per stage: a hung Spark job must not hold a worker slot forever.
STAGE_TIMEOUT = {
    "profile": timedelta(minutes=30),
    "check": timedelta(minutes=30),
    "train": timedelta(hours=4),
    "sample": timedelta(hours=1),
    "validate": timedelta(hours=1),
    "publish": timedelta(minutes=30),
    "retrain": timedelta(hours=8),  # up to train.max_attempts - 1 more trainings, each sampled and validated
}


# ---- resolved when a task runs (Jinja macros and filters), never at parse time -----------------------
def synthlake_home() -> str:
    """The project root the jobs resolve conf/, params.yaml and relative paths against."""
    return os.environ.get("SYNTHLAKE_HOME") or str(PROJECT_ROOT)


def synthlake_python() -> str:
    """The interpreter of the worker, i.e. the project's environment: Spark's Python workers must use it."""
    return sys.executable


def synthlake_path() -> str:
    """PATH with the interpreter's bin/ first, where pip installed spark-submit next to python."""
    return os.pathsep.join(filter(None, [str(Path(sys.executable).parent), os.environ.get("PATH")]))


def synthlake_env_default() -> str:
    return os.environ.get("SYNTHLAKE_ENV") or "local"


def _env_settings(env_name: str) -> dict[str, Any]:
    """conf/env/<env_name>.yaml of the home as plain YAML ({} where there is none)."""
    env_file = Path(synthlake_home()) / "conf" / "env" / f"{env_name}.yaml"
    data = yaml.safe_load(env_file.read_text()) if env_file.is_file() else None
    return data if isinstance(data, dict) else {}


def synthlake_ivy_dir(env_name: str) -> str:
    """Spark's Ivy cache for --packages: the environment's `ivy_dir`, resolved against the home."""
    ivy = os.path.expandvars(str(_env_settings(env_name).get("ivy_dir") or "var/ivy"))
    return str((Path(synthlake_home()) / ivy).resolve()) if "://" not in ivy else ivy


def synthlake_packages(env_name: str) -> str:
    """spark-submit's --packages: Delta's jar, and the OpenLineage Spark listener's where the environment turns
    it on (pipelines.config.OpenLineageEnv: enabled, default true; spark_listener, default false)."""
    lineage = _env_settings(env_name).get("openlineage") or {}
    listener = lineage.get("enabled", True) is True and lineage.get("spark_listener", False) is True
    return ",".join([DELTA_PACKAGE, *([OPENLINEAGE_SPARK_PACKAGE] if listener else [])])


def synthlake_lineage_parent(task_instance: Any, root: bool = False) -> str:
    """``namespace/job/run id`` of the task's OpenLineage run (`root`: the DAG run's) as Airflow's OpenLineage
    provider names it in its own events; empty where the provider sends none (no transport configured)."""
    try:
        task_instance.dag_id  # noqa: B018 - rendered without a task instance (a test), there is no run
    except Exception:  # noqa: BLE001 - Jinja's Undefined raises its own error
        return ""
    from airflow.providers.openlineage.conf import is_disabled
    from airflow.providers.openlineage.plugins.macros import lineage_parent_id, lineage_root_parent_id

    if is_disabled():
        return ""
    return (lineage_root_parent_id if root else lineage_parent_id)(task_instance)


def synthlake_seed(key: Any) -> int:
    """A run's seed from its key (the logical date, else the run id) and params.yaml's seed: another night,
    other rows; the same night again, the same rows."""
    path = Path(synthlake_home()) / "params.yaml"
    params = read_yaml(path) if path.is_file() else None
    base = params.get("seed", 0) if isinstance(params, dict) else 0
    digest = hashlib.sha256(f"{base}:{key}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def safe_run_id(value: Any) -> str:
    """An Airflow run id as a synthlake run id: 1-128 of [A-Za-z0-9_.:+-], starting alphanumeric.

    Airflow's own ids (manual__2026-01-01T02:00:00.123456+00:00, scheduled__...) pass unchanged; ids
    given through the API or UI may hold other characters, which become '_'.
    """
    text = str(value)
    if RUN_ID_PATTERN.match(text):
        return text
    text = re.sub(r"[^A-Za-z0-9_.:+-]", "_", text)
    if not text or not RUN_ID_PATTERN.match(text[0]):
        text = "r" + text
    return text[:128]


MACROS = {
    "synthlake_home": synthlake_home,
    "synthlake_python": synthlake_python,
    "synthlake_path": synthlake_path,
    "synthlake_env_default": synthlake_env_default,
    "synthlake_ivy_dir": synthlake_ivy_dir,
    "synthlake_packages": synthlake_packages,
    "synthlake_lineage_parent": synthlake_lineage_parent,
    "synthlake_seed": synthlake_seed,
}
FILTERS = {"synthlake_run_id": safe_run_id}

# Jinja, rendered when a task runs (var.value.get reads an Airflow Variable, with a default)
_ENV_EXPR = f"var.value.get('{ENV_VARIABLE}', synthlake_env_default())"
ENV_NAME = "{{ " + _ENV_EXPR + " }}"
CONN_ID = "{{ var.value.get('" + CONN_ID_VARIABLE + "', '" + DEFAULT_CONN_ID + "') }}"
SPARK_CONF = {"spark.jars.ivy": "{{ synthlake_ivy_dir(" + _ENV_EXPR + ") }}"}
PACKAGES = "{{ synthlake_packages(" + _ENV_EXPR + ") }}"
ENV_VARS = {
    "PYSPARK_PYTHON": "{{ synthlake_python() }}",
    "PYSPARK_DRIVER_PYTHON": "{{ synthlake_python() }}",
    "PATH": "{{ synthlake_path() }}",
    "SYNTHLAKE_HOME": "{{ synthlake_home() }}",
    # spark-submit runs `python jobs/<stage>_job.py`, which would put jobs/ first on sys.path, where a
    # module named like a stdlib one shadows it (a jobs/profile.py once broke pyspark's `import cProfile`).
    # Python 3.11's safe path leaves the script's folder off sys.path; the jobs import the project as the
    # installed package it is.
    "PYTHONSAFEPATH": "1",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "GX_ANALYTICS_ENABLED": "false",
    "DVC_NO_ANALYTICS": "1",
    "DO_NOT_TRACK": "1",
    # the parent of the stage's OpenLineage run (pipelines.lineage): this task's run, under the DAG run
    "OPENLINEAGE_PARENT_ID": "{{ synthlake_lineage_parent(ti) }}",
    "OPENLINEAGE_ROOT_PARENT_ID": "{{ synthlake_lineage_parent(ti, root=True) }}",
}

DEFAULT_ARGS = {
    "owner": "synthlake",
    "retries": 2,
    "retry_delay": timedelta(minutes=2),
    "retry_exponential_backoff": 2.0,  # a multiplier in Airflow 3.3 (True would mean 1: constant)
    "max_retry_delay": timedelta(minutes=15),
}


class SynthlakeStageOperator(SparkSubmitOperator):
    """spark-submit of jobs/<stage>_job.py.

    Adds to SparkSubmitOperator what it lacks: a templated connection id (its own is fixed at parse
    time), and no retries when the job exits with a code meaning "bad configuration".
    """

    template_fields = (*SparkSubmitOperator.template_fields, "conn_id")

    def __init__(self, *, stage: str, conn_id: str = CONN_ID, **kwargs: Any) -> None:
        super().__init__(conn_id=conn_id, **kwargs)
        self.stage = stage
        self.conn_id = conn_id

    def execute(self, context: Any) -> None:
        self._conn_id = self.conn_id  # rendered by now
        self._hook = None  # a hook built before rendering would hold the template, not the id
        try:
            return super().execute(context)
        except Exception as exc:
            process = getattr(self._hook, "_submit_sp", None)
            code = getattr(process, "returncode", None)
            if code in NO_RETRY_EXIT_CODES:
                raise AirflowFailException(
                    f"{self.application} exited {code} (bad configuration or a refused stage): not retrying"
                ) from exc
            raise


def stage_task(stage: str, args: list[str], related: bool = False, **kwargs: Any) -> SynthlakeStageOperator:
    """spark-submit of jobs/<stage>_job.py, or of jobs/related_job.py <stage> for related tables."""
    return SynthlakeStageOperator(
        task_id=stage,
        stage=stage,
        application=str(PROJECT_ROOT / "jobs" / ("related_job.py" if related else f"{stage}_job.py")),
        application_args=[stage, *args] if related else args,
        name=f"synthlake-{stage}",
        packages=PACKAGES,
        conf=dict(SPARK_CONF),
        env_vars=dict(ENV_VARS),
        execution_timeout=STAGE_TIMEOUT[stage],
        **kwargs,
    )


def stage_args(dataset: str, run_id: str, extra: list[str] | None = None) -> list[str]:
    # absolute: spark-submit runs in the worker's cwd, and the jobs read a relative config path from there
    config = "{{ synthlake_home() }}/conf/datasets/" + dataset + ".yaml"
    return [config, "--run-id", run_id, "--env", ENV_NAME, *(extra or [])]


def chain_stages(args: list[str], related: bool = False) -> list[SynthlakeStageOperator]:
    """The stages in order, and the retraining ladder (jobs/retrain_job.py) between validate and publish: it runs
    only when validate failed, and publish runs when either passed (never when both failed or an earlier stage
    did, as retrain refuses a run without a verdict). Related tables: their own stages, without the ladder."""
    tasks = [stage_task(stage, args, related) for stage in (RELATED_STAGE_NAMES if related else STAGE_NAMES)]
    for upstream, downstream in zip(tasks, tasks[1:], strict=False):
        upstream >> downstream
    if related:
        return tasks
    validate, publish = tasks[STAGE_NAMES.index("validate")], tasks[-1]
    retrain = stage_task("retrain", args, trigger_rule="all_failed")
    validate >> retrain >> publish
    publish.trigger_rule = "one_success"
    return tasks


def read_yaml(path: Path) -> Any:
    """A small YAML file, with libyaml where present (parse time: 100 dataset configs in well under a second)."""
    return yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # noqa: S506 - safe


def params_default(params: Any, key: str) -> dict[str, Any]:
    """params.yaml's `key` as a Param default, so that a trigger without it runs what the jobs would; none
    (the trigger must give it) where params.yaml lacks it."""
    return {"default": params[key]} if isinstance(params, dict) and key in params else {}


# ---- the DAGs: a pair per dataset config -----------------------------------------------------------
START = datetime(2026, 1, 1, tzinfo=timezone.utc)  # noqa: UP017
DAG_ID = re.compile(r"[^A-Za-z0-9_]")


def dataset_entries() -> list[tuple[str, str | None, Any, bool]]:
    """(file stem, schedule, source asset(s), related) of each conf/datasets/*.yaml of the home, read at parse time
    (no data). A dataset of related tables has an asset per table's source; an event on any starts a run."""
    entries = []
    for path in sorted((Path(synthlake_home()) / "conf" / "datasets").glob("*.yaml")):
        config = read_yaml(path)
        if not isinstance(config, dict):
            continue  # the jobs refuse it with a clear error when it runs
        poll = config.get("source_poll_seconds", 300)
        if isinstance(config.get("tables"), list):
            tables = [t for t in config["tables"] if isinstance(t, dict)]
            assets = [table_asset(f"{path.stem}.{t.get('name')}", t.get("source"), poll) for t in tables]
            entries.append((path.stem, config.get("schedule"), reduce(operator.or_, assets), True))
        else:
            entries.append((path.stem, config.get("schedule"), table_asset(path.stem, config.get("source"), poll),
                            False))
    return entries


def table_asset(stem: str, source: Any, poll_seconds: float | None) -> Asset:
    """The asset of a source config (`source:` of a dataset or of one of its tables)."""
    path = str((source if isinstance(source, dict) else {}).get("path") or stem)
    if "://" in path:
        return source_asset(stem, path)
    local = (Path(synthlake_home()) / path).resolve()
    return source_asset(stem, local.as_uri(), str(local), poll_seconds)


def source_asset(stem: str, uri: str, local: str | None = None, poll_seconds: float | None = None) -> Asset:
    """The dataset's source: an event on it starts the scheduled DAG. The job that writes it sends one; for a
    `local` source, a watcher's trigger polling it every `poll_seconds` (pipelines.source_watch) does too."""
    watchers = [] if not (local and poll_seconds) else [AssetWatcher(
        name=f"synthlake_{DAG_ID.sub('_', stem)}_source_change",
        trigger=SourceChangeTrigger(path=local, poll_interval=float(poll_seconds)))]
    return Asset(name=f"synthlake.{stem}.source", uri=uri, watchers=watchers)


def published_asset(stem: str) -> Asset:
    """The dataset's published table: every successful publish updates it, for downstream DAGs to wait on."""
    return Asset(name=f"synthlake.{stem}.published", uri=f"synthlake://{stem}/published")


def chain_dataset(stem: str, run_id: str, extra: list[str], related: bool) -> None:
    tasks = chain_stages(stage_args(stem, run_id, extra), related)
    tasks[-1].outlets = [published_asset(stem)]


def on_demand_dag(stem: str, params: Any, related: bool = False) -> DAG:
    """A manual trigger; `params` (params.yaml) gives the rows and seed defaults."""
    with DAG(
        dag_id=f"synthlake_{DAG_ID.sub('_', stem)}_on_demand",
        description=f"Learn {stem} and publish a validated synthetic copy, on request",
        schedule=None, start_date=START, catchup=False,
        max_active_runs=1,  # one run at a time: the stages are heavy and share the lake and the registry
        default_args=DEFAULT_ARGS, user_defined_macros=MACROS, user_defined_filters=FILTERS,
        params={
            "rows": Param(**params_default(params, "rows"), type="integer", minimum=1, description="synthetic rows"),
            "seed": Param(**params_default(params, "seed"), type="integer", minimum=0, maximum=2**31 - 1,
                          description="the run's seed"),
            "where": Param("", type="string", maxLength=4000,
                           description="a condition every row meets (Spark SQL on learned columns); empty: none"),
            "seed_table": Param("", type="string", maxLength=1000,
                                description="a table of partial rows, one output row each, keeping their values; "
                                            "empty: none"),
            "retrain": Param(**params_default(params, "retrain"), enum=["auto", "always", "never"],
                             description="auto: train only without a champion, on changed settings or a drifted "
                                         "source; always; never"),
        },
        tags=["synthlake", stem], doc_md=__doc__,
    ) as dag:
        chain_dataset(stem, "{{ run_id | synthlake_run_id }}",
                      ["--rows", "{{ params.rows }}", "--seed", "{{ params.seed }}",
                       "--where", "{{ params.where }}", "--seed-table", "{{ params.seed_table }}",
                       "--retrain", "{{ params.retrain }}"], related)
    return dag


def scheduled_dag(stem: str, cron: str | None, source: Any, related: bool = False) -> DAG:
    """On the config's `schedule:` (cron, UTC) and whenever the source asset is updated; rows from params.yaml,
    the seed from the logical date (synthlake_seed), so each night gives new rows and a rerun the same ones."""
    schedule = (AssetOrTimeSchedule(timetable=CronTriggerTimetable(cron, timezone="UTC"), assets=source)
                if cron else source)
    with DAG(
        dag_id=f"synthlake_{DAG_ID.sub('_', stem)}_scheduled",
        description=f"Publish tonight's synthetic partition of {stem}, and one when its source changes",
        schedule=schedule, start_date=START, catchup=False, max_active_runs=1,
        default_args=DEFAULT_ARGS, user_defined_macros=MACROS, user_defined_filters=FILTERS,
        tags=["synthlake", stem], doc_md=__doc__,
    ) as dag:
        # Keyed by the logical date: a rerun of the same night replaces its partition, with the same rows. A run
        # without a logical date (the source's asset event, a manual trigger) is keyed by its own run id.
        key = "{% if ds_nodash is defined and ds_nodash %}nightly-{{ ds_nodash }}{% else %}" \
              "{{ run_id | synthlake_run_id }}{% endif %}"
        chain_dataset(stem, key, ["--seed", "{{ synthlake_seed(" + _KEY_EXPR + ") }}"], related)
    return dag


_KEY_EXPR = "ds_nodash if ds_nodash is defined and ds_nodash else run_id"

_PARAMS_FILE = Path(synthlake_home()) / "params.yaml"
_PARAMS = read_yaml(_PARAMS_FILE) if _PARAMS_FILE.is_file() else None
for _stem, _cron, _source, _related in dataset_entries():
    on_demand_dag(_stem, _PARAMS, _related)
    scheduled_dag(_stem, _cron, _source, _related)
