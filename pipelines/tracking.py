"""MLflow: where runs are logged and models registered; the registered model is a pyfunc."""

from __future__ import annotations

import contextlib
import fcntl
import re
import tempfile
from pathlib import Path

from pipelines.config import EnvConfig, resolve
from pipelines.context import RunContext
from pipelines.records import ProfileRecord

MODEL_CODE = Path(__file__).with_name("mlflow_model.py")
CHAMPION = "champion"  # the model version whose rows were last published
CHALLENGER = "challenger"  # the newest trained version, before its gate


def metric_name(name: str) -> str:
    """A check's name as MLflow accepts it (letters, digits, _ - . / and spaces; ':' as '.'): any other
    character, e.g. a quote in a column's name or the '#' of a rule's label, becomes '_'."""
    return re.sub(r"[^\w.\- /]", "_", name.replace(":", "."))


def tracking_uri(env: EnvConfig) -> str:
    """sqlite:///relative/path resolves against the project root, like every other path."""
    uri = env.mlflow.tracking_uri
    match = re.match(r"^sqlite:///(?!/)(.+)$", uri)
    if match:
        path = Path(resolve(match.group(1)))
        path.parent.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{path}"
    return uri


_READY_STORES: set[str] = set()  # SQLite stores this process has opened (their tables exist)


@contextlib.contextmanager
def _store_lock(uri: str):
    """For a SQLite store, an exclusive lock (flock on DB.lock beside it) held by one process at a time: two runs
    that open a new store at once would both create its tables (MLflow's migrations: "table ... already exists")
    and both create the experiment. Other stores serialize themselves: no lock."""
    if not uri.startswith("sqlite:///"):
        yield
        return
    with open(f"{uri.removeprefix('sqlite:///')}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def use_store(env: EnvConfig) -> None:
    """Point MLflow's tracking and registry at the environment's store (no experiment needed); a SQLite store's
    tables are created once, under _store_lock."""
    import mlflow

    uri = tracking_uri(env)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    if uri.startswith("sqlite:///") and uri not in _READY_STORES:
        from mlflow import MlflowClient

        with _store_lock(uri):
            MlflowClient(uri, uri).search_registered_models(max_results=1)  # opens both stores: tables made
        _READY_STORES.add(uri)


def setup(ctx: RunContext) -> str:
    """Point MLflow at the environment's store; return the experiment id (created if missing, by one process of
    those starting at once on a SQLite store)."""
    import mlflow

    use_store(ctx.env)
    name = ctx.env.mlflow.experiment
    with _store_lock(tracking_uri(ctx.env)):
        experiment = mlflow.get_experiment_by_name(name)
        if experiment is None:
            location = ctx.env.mlflow.artifact_location
            if not location.startswith("mlflow-artifacts:"):  # else the tracking server's store, through it
                location = resolve(location)
                if "://" not in location:
                    location = Path(location).as_uri()
            return mlflow.create_experiment(name, artifact_location=location)
    return experiment.experiment_id


def log_model(model_dir: Path, registered_name: str):
    """Log the saved generator and its Sampler as a pyfunc (models-from-code: nothing pickled); register it."""
    import mlflow

    import synthlake

    return mlflow.pyfunc.log_model(
        name="model",
        python_model=str(MODEL_CODE),
        artifacts={"generator": str(model_dir)},
        registered_model_name=registered_name,
        pip_requirements=[f"synthlake=={synthlake.__version__}"],
    )


def load_sampler(ctx: RunContext, name: str, version: str | int):
    """The Sampler inside a registered model version, loaded through its pyfunc."""
    setup(ctx)
    return registered_sampler(name, version)


def registered_sampler(name: str, version: str | int):
    """The Sampler of a registered model version, from the store MLflow points at (see use_store)."""
    import mlflow

    return mlflow.pyfunc.load_model(f"models:/{name}/{version}").unwrap_python_model().sampler


def champion_version(name: str) -> str | None:
    """The version the `champion` alias of a registered model points at; None without model or alias."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        return str(MlflowClient().get_model_version_by_alias(name, CHAMPION).version)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise


def attempt_run(ctx: RunContext, run_id: str):
    """The MLflow run a training attempt logs into: the run's own (`run_id`, started by the check stage) for the
    first attempt, a child run of it for each later one (pipelines.retrain)."""
    import mlflow

    if ctx.attempt == 1:
        return mlflow.start_run(run_id=run_id)
    experiment = mlflow.get_run(run_id).info.experiment_id
    return mlflow.start_run(experiment_id=experiment, run_name=f"{ctx.dataset.name}-{ctx.run_id}-attempt{ctx.attempt}",
                            tags={"mlflow.parentRunId": run_id, "synthlake.run_id": ctx.run_id,
                                  "synthlake.dataset": ctx.dataset.name})


def set_alias(name: str, alias: str, version: str | int) -> None:
    from mlflow import MlflowClient

    MlflowClient().set_registered_model_alias(name, alias, str(version))


def logged_profile(run_id: str) -> ProfileRecord | None:
    """The profile a training run logged to MLflow (the source its model learned); None if absent or unreadable."""
    import mlflow

    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="profile.json", dst_path=tmp)
            return ProfileRecord.model_validate_json(Path(path).read_text())
        except Exception as exc:  # noqa: BLE001 - a model logged without (or with an older) profile
            print(f"[synthlake] the profile of MLflow run {run_id} could not be read ({type(exc).__name__})",
                  flush=True)
            return None
