"""OpenLineage events: a run per stage with the datasets it reads and writes, to files or an HTTP endpoint.

Each stage emits START before it begins (before its Spark session starts, where it starts one) and COMPLETE
or FAIL when it ends, as a run of job ``<dataset>.<stage>`` in the environment's namespace. Its inputs and
outputs are what pipelines.stages declares: the run-folder records it reads and writes, and outside the run
folder the source, the Delta tables and the registered model. ``synthlake run`` wraps its five stage runs
in one run of job ``<dataset>.run``, their parent.

A stage started by another system names that system's run in ``OPENLINEAGE_PARENT_ID`` and
``OPENLINEAGE_ROOT_PARENT_ID`` (``namespace/job/run id``, as Airflow's OpenLineage provider and dbt pass
them; the DAGs set them to the task's run and the DAG's run), and its run gets that parent. With the
environment's ``openlineage.spark_listener`` the openlineage-spark listener adds Spark's own events (one per
action), whose parent is the run that started the session.

Dataset names follow OpenLineage's naming, as the Spark listener writes them: a local path is namespace
``file`` with the absolute path as name; ``scheme://authority/path`` is namespace ``scheme://authority`` and
the path (``s3a``/``s3n`` as ``s3``); the registered model is ``models:/<name>`` in the namespace of the
MLflow tracking URI, its version a facet.

Lineage never fails a stage: an event that cannot be delivered is a warning on stderr. A bad setting is a
ConfigError before the stage starts. ``OPENLINEAGE_DISABLED=true`` turns the events off.
"""

from __future__ import annotations

import os
import re
import sys
import traceback
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from pipelines.config import ConfigError, EnvConfig, resolve
from pipelines.stages import declared as stage_declared

if TYPE_CHECKING:
    from pipelines.context import RunContext

# The Spark listener (Maven Central); 1.53.0 emits input and output datasets under Spark 4.2 and Delta 4.4.
SPARK_PACKAGE = "io.openlineage:openlineage-spark_2.13:1.53.0"
SPARK_LISTENER = "io.openlineage.spark.agent.OpenLineageSparkListener"
# the file transport's files under `openlineage.path`: ours, and the Spark listener's (two writers, two files)
EVENTS_FILE = "synthlake.ndjson"
SPARK_EVENTS_FILE = "spark.ndjson"
PRODUCER = "urn:synthlake:0.1.0"  # synthlake.__version__, without importing the engine
PARENT_ENV, ROOT_PARENT_ENV = "OPENLINEAGE_PARENT_ID", "OPENLINEAGE_ROOT_PARENT_ID"
# HTTP: an endpoint that is down costs a stage a few seconds per event, not minutes
HTTP_RETRY = {"total": 2, "connect": 2, "read": 2, "backoff_factor": 0.5}


class RunRef(NamedTuple):
    """A run of a job: what a child's parent facet names."""

    namespace: str
    job: str
    run_id: str

    @classmethod
    def parse(cls, text: str | None) -> RunRef | None:
        """``namespace/job/run id`` (the namespace may hold '/'), else None."""
        parts = (text or "").rsplit("/", 2)
        if len(parts) != 3 or not all(parts) or not _is_uuid(parts[2]):
            return None
        return cls(*parts)

    def __str__(self) -> str:
        return f"{self.namespace}/{self.job}/{self.run_id}"


def _is_uuid(text: str) -> bool:
    from uuid import UUID

    try:
        UUID(text)
        return True
    except ValueError:
        return False


def parents_from_env() -> tuple[RunRef | None, RunRef | None]:
    """The parent and root runs another system handed us in OPENLINEAGE_PARENT_ID / _ROOT_PARENT_ID."""
    parent, root = (os.environ.get(name) for name in (PARENT_ENV, ROOT_PARENT_ENV))
    refs = RunRef.parse(parent), RunRef.parse(root)
    for name, text, ref in ((PARENT_ENV, parent, refs[0]), (ROOT_PARENT_ENV, root, refs[1])):
        if text and ref is None:
            _warn(f"{name}={text!r} is not namespace/job/run-uuid: ignored")
    return refs


# ---- datasets -----------------------------------------------------------------------------------------
def dataset_name(location: str) -> tuple[str, str]:
    """(namespace, name) of a path or URI, in OpenLineage's naming."""
    match = re.match(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://([^/]*)(.*)$", location)
    if match is None or match.group(1) == "file":
        path = location[len("file://"):] if match else location
        return "file", str(Path(resolve(path)))
    scheme, authority, path = match.groups()
    scheme = {"s3a": "s3", "s3n": "s3"}.get(scheme.lower(), scheme.lower())
    return f"{scheme}://{authority}", path.lstrip("/") or "/"


def stage_datasets(ctx: RunContext, stage: str, completed: bool = False) -> tuple[list, list]:
    """The stage's inputs and outputs as OpenLineage datasets: its records, then what lies outside the run. The
    registered model's version: an input's from train's record; an output's once the stage has `completed`."""
    from openlineage.client.event_v2 import InputDataset, OutputDataset

    declared = stage_declared(stage)
    store = ctx.store

    def datasets(cls, records: tuple[str, ...], external: tuple[str, ...], versioned: bool) -> list:
        found = [(*dataset_name(str(store.path(r))), {}) for r in records]
        found += [_external(ctx, name, versioned) for name in external]
        return [cls(namespace=ns, name=name, facets=facets) for ns, name, facets in found]

    return (datasets(InputDataset, declared.reads, declared.inputs, True),
            datasets(OutputDataset, declared.writes, declared.outputs, completed))


def _external(ctx: RunContext, kind: str, versioned: bool) -> tuple[str, str, dict]:
    from openlineage.client.facet_v2 import dataset_version_dataset, storage_dataset

    if kind == "registered_model":
        facets = {}
        version = _model_version(ctx) if versioned else None  # before train ends, its record is an earlier try's
        if version is not None:
            facets["version"] = dataset_version_dataset.DatasetVersionDatasetFacet(datasetVersion=version)
        return _mlflow_namespace(ctx.env), f"models:/{ctx.model_name}", facets
    if kind == "source":
        source = ctx.dataset.source
        layer, fmt = ("delta", "parquet") if source.format == "delta" else ("file", source.format)
        namespace, name = dataset_name(resolve(source.path))
    elif kind in ("staging", "published", "audit"):
        layer, fmt = "delta", "parquet"
        namespace, name = dataset_name(ctx.table_path(kind))
    else:
        raise ValueError(f"pipelines.stages names an unknown dataset {kind!r}")
    return namespace, name, {"storage": storage_dataset.StorageDatasetFacet(storageLayer=layer, fileFormat=fmt)}


def _mlflow_namespace(env: EnvConfig) -> str:
    """The tracking URI as pipelines.tracking.tracking_uri resolves it (sqlite:///relative/path against the
    project root), without importing what that module pulls in (MLflow's model code)."""
    uri = env.mlflow.tracking_uri
    match = re.match(r"^sqlite:///(?!/)(.+)$", uri)
    return f"sqlite:///{resolve(match.group(1))}" if match else uri


def _model_version(ctx: RunContext) -> str | None:
    """The run's registered model version, once train has recorded it."""
    from pipelines.records import TrainRecord

    if not ctx.store.path("train").is_file():
        return None
    try:
        return ctx.store.read(TrainRecord).model_version
    except Exception:  # noqa: BLE001 - a stage that needs the record says what is wrong with it
        return None


# ---- the client ---------------------------------------------------------------------------------------
def _off(env: EnvConfig) -> bool:
    """Lineage is off in this environment, or OPENLINEAGE_DISABLED=true."""
    return not env.openlineage.enabled or os.environ.get("OPENLINEAGE_DISABLED", "").strip().lower() == "true"


def _client(env: EnvConfig):
    """An OpenLineage client on the environment's transport; None when lineage is off."""
    if _off(env):
        return None
    from openlineage.client import OpenLineageClient

    settings = env.openlineage
    if settings.transport == "file":
        from openlineage.client.transport.file import FileConfig, FileTransport

        folder = Path(resolve(settings.path))
        folder.mkdir(parents=True, exist_ok=True)
        transport = FileTransport(FileConfig(log_file_path=str(folder / EVENTS_FILE), append=True))
    else:
        from openlineage.client.transport.http import HttpConfig, HttpTransport

        config = {"url": settings.url, "endpoint": settings.endpoint, "timeout": settings.timeout_s,
                  "retry": HTTP_RETRY}
        key = api_key(env)
        if key:
            config["auth"] = {"type": "api_key", "apiKey": key}
        transport = HttpTransport(HttpConfig.from_dict(config))
    return OpenLineageClient(transport=transport)


def api_key(env: EnvConfig) -> str | None:
    name = env.openlineage.api_key_env
    if name is None:
        return None
    if not os.environ.get(name):
        raise ConfigError(f"openlineage.api_key_env: environment variable {name} is not set")
    return os.environ[name]


def _warn(message: str) -> None:
    print(f"[synthlake] lineage: {message}", file=sys.stderr, flush=True)


# ---- runs ---------------------------------------------------------------------------------------------
class LineageRun:
    """One run of a job: `start()`, then `complete()` or `fail(exc)`. Without a client, nothing is sent."""

    def __init__(self, ctx: RunContext, job: str, stage: str | None, parent: RunRef | None,
                 root: RunRef | None) -> None:
        from openlineage.client.uuid import generate_new_uuid

        self.ctx, self.stage, self.parent, self.root = ctx, stage, parent, root or parent
        self.client = _client(ctx.env)
        self.ref = RunRef(ctx.env.openlineage.namespace, job, str(generate_new_uuid()))

    def start(self) -> None:
        self._emit("START")

    def complete(self) -> None:
        self._emit("COMPLETE")

    def fail(self, exc: BaseException) -> None:
        from openlineage.client.facet_v2 import error_message_run

        trace = "".join(traceback.format_exception(exc))
        self._emit("FAIL", {"errorMessage": error_message_run.ErrorMessageRunFacet(
            message=f"{type(exc).__name__}: {exc}", programmingLanguage="python", stackTrace=trace)})

    @property
    def active(self) -> bool:
        return self.client is not None

    def _emit(self, state: str, run_facets: dict | None = None) -> None:
        if self.client is None:
            return
        try:
            event = self._event(state, run_facets or {})
        except Exception as exc:  # noqa: BLE001 - a dataset that cannot be named must not stop the stage
            _warn(f"no {state} event for {self.ref.job}: {type(exc).__name__}: {exc}")
            return
        try:
            self.client.emit(event)
        except Exception as exc:  # noqa: BLE001 - an endpoint that is down must not stop the stage
            _warn(f"could not send the {state} event of {self.ref.job} (run {self.ref.run_id}): {exc}")

    def _event(self, state: str, run_facets: dict[str, Any]):
        from openlineage.client.event_v2 import Job, Run, RunEvent, RunState
        from openlineage.client.facet_v2 import job_type_job, parent_run, tags_run

        facets: dict[str, Any] = {"tags": tags_run.TagsRunFacet(tags=[
            tags_run.TagsRunFacetFields(key="synthlake.run_id", value=self.ctx.run_id, source="SYNTHLAKE"),
            tags_run.TagsRunFacetFields(key="synthlake.dataset", value=self.ctx.dataset.name, source="SYNTHLAKE"),
        ])}
        if self.parent is not None:
            root = self.root or self.parent
            facets["parent"] = parent_run.ParentRunFacet(
                run=parent_run.Run(runId=self.parent.run_id),
                job=parent_run.Job(namespace=self.parent.namespace, name=self.parent.job),
                root=parent_run.Root(run=parent_run.RootRun(runId=root.run_id),
                                     job=parent_run.RootJob(namespace=root.namespace, name=root.job)))
        facets.update(run_facets)
        completed = state == "COMPLETE"
        inputs, outputs = stage_datasets(self.ctx, self.stage, completed) if self.stage else ([], [])
        job_type = job_type_job.JobTypeJobFacet(processingType="BATCH", integration="SYNTHLAKE",
                                                jobType="STAGE" if self.stage else "PIPELINE")
        return RunEvent(eventType=getattr(RunState, state), eventTime=datetime.now(UTC).isoformat(),
                        run=Run(runId=self.ref.run_id, facets=facets),
                        job=Job(namespace=self.ref.namespace, name=self.ref.job, facets={"jobType": job_type}),
                        inputs=inputs, outputs=outputs, producer=PRODUCER)


@contextmanager
def _running(run: LineageRun) -> Iterator[LineageRun]:
    run.start()
    try:
        yield run
    except BaseException as exc:
        run.fail(exc)
        raise
    run.complete()


def stage_run(ctx: RunContext, stage: str, parent: LineageRun | None = None) -> AbstractContextManager[LineageRun]:
    """``with stage_run(ctx, "train") as run:``: START now, COMPLETE or FAIL (with the error) at the end. Its
    parent: `parent` (`synthlake run`'s run), else the run named in OPENLINEAGE_PARENT_ID."""
    if parent is not None and parent.active:
        refs = parent.ref, parent.root or parent.ref
    else:
        refs = parents_from_env()
    return _running(LineageRun(ctx, f"{ctx.dataset.name}.{stage}", stage, *refs))


def pipeline_run(ctx: RunContext) -> AbstractContextManager[LineageRun]:
    """`synthlake run`'s run (job ``<dataset>.run``), the parent of its stage runs; no datasets of its own."""
    return _running(LineageRun(ctx, f"{ctx.dataset.name}.run", None, *parents_from_env()))


# ---- Spark ------------------------------------------------------------------------------------------
def spark_conf(env: EnvConfig, app_name: str, parent: LineageRun | None = None) -> dict[str, str]:
    """Spark conf for the openlineage-spark listener ({} unless lineage and `spark_listener` are on): the same
    transport and namespace as ours, the run that starts the session as the parent of Spark's events."""
    settings = env.openlineage
    if not settings.spark_listener or _off(env):
        return {}
    conf = {"spark.extraListeners": SPARK_LISTENER, "spark.openlineage.namespace": settings.namespace,
            "spark.openlineage.appName": app_name}
    if settings.transport == "file":
        folder = Path(resolve(settings.path))
        folder.mkdir(parents=True, exist_ok=True)
        conf |= {"spark.openlineage.transport.type": "file",
                 "spark.openlineage.transport.location": str(folder / SPARK_EVENTS_FILE)}
    else:
        conf |= {"spark.openlineage.transport.type": "http", "spark.openlineage.transport.url": settings.url,
                 "spark.openlineage.transport.endpoint": settings.endpoint,
                 "spark.openlineage.transport.timeoutInMillis": str(int(settings.timeout_s * 1000))}
        key = api_key(env)
        if key:
            conf |= {"spark.openlineage.transport.auth.type": "api_key",
                     "spark.openlineage.transport.auth.apiKey": key,
                     # Spark shows its conf (UI, event log) with values of matching keys redacted
                     "spark.redaction.regex": r"(?i)secret|password|token|access[.]?key|apikey"}
    if parent is not None and parent.active:
        root = parent.root or parent.ref
        conf |= {"spark.openlineage.parentJobNamespace": parent.ref.namespace,
                 "spark.openlineage.parentJobName": parent.ref.job,
                 "spark.openlineage.parentRunId": parent.ref.run_id,
                 "spark.openlineage.rootParentJobNamespace": root.namespace,
                 "spark.openlineage.rootParentJobName": root.job,
                 "spark.openlineage.rootParentRunId": root.run_id}
    return conf
