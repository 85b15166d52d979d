"""train: fit the dataset's generator with TorchDistributor (DDP), log to MLflow, register the model."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np

from pipelines.config import ConfigError
from pipelines.context import RunContext, StageError
from pipelines.records import CheckRecord, ProfileRecord, TrainPlacement, TrainRecord
from pipelines.source import bounded, read_real

ENCODED_FILE = "encoded.npy"  # in train_work: the rows encoded on the driver (else pipelines.encode.SHARDS)
RANK0_FILE = "rank0.json"  # in train_work: where rank 0 ran (host, working directory), written by rank 0
LOST_PROCESS = "TorchDistributor failed during training"  # how TorchDistributor says a process exited non-zero


def run(ctx: RunContext, spark) -> dict:
    """Train, unless the check stage decided to reuse the champion (and this is the run's first attempt)."""
    store = ctx.store
    check = store.read(CheckRecord)
    result = _reuse(ctx, check) if check.decision == "reuse" and ctx.attempt == 1 else _train(ctx, spark, check)
    store.write(result)
    return result.model_dump()


def _train(ctx: RunContext, spark, check: CheckRecord) -> TrainRecord:
    import mlflow

    from pipelines import tracking

    store = ctx.store
    p = ctx.params.train
    work = store.path("train_work")
    model_dir = store.path("model")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    model, rules, training_rows = _encode(ctx, spark, work)
    on_executors = ctx.env.train_on == "executors"
    use_gpu = _use_gpu(spark, p.use_gpu, on_executors)
    processes = p.num_processes
    if ctx.dataset.privacy is not None and processes > 1:
        print("[synthlake] train: differential privacy trains in one process (train.num_processes ignored)",
              flush=True)
        processes = 1
    # checkpoints outlive a killed attempt (train_work does not): a retry resumes from the last epoch
    checkpoints = store.path("train_checkpoints") if model.resumable else None
    if checkpoints is not None and ctx.attempt > 1:
        shutil.rmtree(checkpoints, ignore_errors=True)  # the earlier attempt's, of other hyper-parameters
    history = _distributed_fit(spark, model, work, model_dir, ctx.params.seed, processes, use_gpu, checkpoints,
                               None if rules is None else rules.state(), on_executors)
    placement = TrainPlacement(train_on=ctx.env.train_on, processes=processes,
                               **json.loads((work / RANK0_FILE).read_text()))
    shutil.rmtree(work)
    if checkpoints is not None:
        shutil.rmtree(checkpoints, ignore_errors=True)
    privacy = _privacy_spent(model_dir)

    tracking.setup(ctx)
    with tracking.attempt_run(ctx, check.mlflow_run_id) as run:
        mlflow.set_tags({"synthlake.attempt": ctx.attempt, "synthlake.training_key": check.training_key})
        mlflow.log_params({"generator": ctx.dataset.generator, "seed": ctx.params.seed,
                           "training_rows": training_rows, "num_processes": processes,
                           "use_gpu": use_gpu, "train_on": placement.train_on,
                           "rank0_host": placement.rank0_host, "rank0_working_dir": placement.rank0_working_dir,
                           **model.hyper})
        if privacy is not None:
            mlflow.log_params({"dp.epsilon_budget": ctx.dataset.privacy.epsilon,
                               "dp.delta_budget": ctx.dataset.privacy.delta})
            mlflow.log_metrics({"dp.epsilon_spent": privacy["epsilon"], "dp.delta_spent": privacy["delta"]})
            mlflow.log_dict(privacy, "privacy.json")
        for h in history:
            mlflow.log_metrics({k: v for k, v in h.items() if k != "epoch" and v == v}, step=h["epoch"])  # no NaN
        mlflow.log_artifact(str(store.path("profile")))
        info = tracking.log_model(model_dir, ctx.model_name)
    tracking.set_alias(ctx.model_name, tracking.CHALLENGER, info.registered_model_version)
    return TrainRecord(mlflow_run_id=run.info.run_id, model_name=ctx.model_name,
                       model_version=str(info.registered_model_version), model_uri=info.model_uri,
                       training_rows=training_rows, epochs=len(history),
                       final_losses=history[-1] if history else None, privacy=privacy,
                       attempt=ctx.attempt, hyper_step=ctx.hyper_step, placement=placement)


def _encode(ctx: RunContext, spark, work: Path):
    """The model with its encodings fitted and the training rows encoded into `work`: by the executors
    (pipelines.encode: shards, the driver never holds the rows) when the generator shards, there are no rules,
    and the rows are more than train.driver_encode_rows or training runs on the executors; else on the driver
    (ENCODED_FILE). Returns the model, the fitted rules (or None) and the number of training rows."""
    from pipelines import encode

    profile, p = ctx.store.read(ProfileRecord), ctx.params.train
    step = f", hyper-parameters {ctx.hyper_step}" if ctx.hyper_step else ""
    model = build_model(ctx) if ctx.dataset.ruleset is None else None
    rows = min(p.max_rows, profile.rows)
    if model is not None and encode.encodes_on_spark(model) and (
            ctx.env.train_on == "executors" or rows > p.driver_encode_rows):
        print(f"[synthlake] train: attempt {ctx.attempt}, encoding about {rows} rows on the executors{step}",
              flush=True)
        rows = encode.fit_and_encode(spark, training_rows(spark, ctx, profile, exact=False), model, work)
        return model, None, rows
    table = training_rows(spark, ctx, profile).toPandas()
    rules = fit_rules(ctx, table)
    model = build_model(ctx, None if rules is None else rules.learned_metadata())
    print(f"[synthlake] train: attempt {ctx.attempt}, encoding {len(table)} rows on the driver{step}", flush=True)
    encoded = model.prepare(table if rules is None else rules.transform(table), seed=ctx.params.seed)
    np.save(work / ENCODED_FILE, encoded)
    return model, rules, len(table)


def training_rows(spark, ctx: RunContext, profile: ProfileRecord, exact: bool = True):
    """The training rows (never the holdout), sampled down to train.max_rows by the run seed (see `bounded` for
    `exact`)."""
    return bounded(read_real(spark, ctx, "train", profile), ctx.params.train.max_rows, ctx.params.seed,
                   total=profile.rows, exact=exact)


def _reuse(ctx: RunContext, check: CheckRecord) -> TrainRecord:
    """The champion as this run's model: its files in the run folder (what DVC tracks), nothing trained."""
    import mlflow
    from mlflow import MlflowClient
    from mlflow.models import Model

    from pipelines import tracking

    champion = check.champion
    tracking.setup(ctx)
    model_dir = ctx.store.path("model")
    with tempfile.TemporaryDirectory() as tmp:
        uri = f"models:/{champion.model_name}/{champion.model_version}"
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=tmp))
        generator = Model.load(local).flavors["python_function"]["artifacts"]["generator"]["path"]
        shutil.rmtree(model_dir, ignore_errors=True)
        shutil.copytree(local / generator, model_dir)
    trained_on = MlflowClient().get_run(champion.mlflow_run_id).data.params.get("training_rows", "0")
    with mlflow.start_run(run_id=check.mlflow_run_id):
        mlflow.set_tags({"synthlake.reused_model_version": champion.model_version,
                         "synthlake.reused_from_run": champion.mlflow_run_id})
    print(f"[synthlake] train: reusing {champion.model_name} version {champion.model_version} ({check.reason})",
          flush=True)
    return TrainRecord(mlflow_run_id=check.mlflow_run_id, model_name=champion.model_name,
                       model_version=champion.model_version, model_uri=uri, training_rows=int(trained_on),
                       epochs=0, final_losses=None, privacy=_privacy_spent(model_dir), reused=True)


def _privacy_spent(model_dir: Path) -> dict | None:
    """The trained model's privacy accounting (None without DP): rank 0 trained it in another process."""
    from synthlake.generators import Generator

    return Generator.load(model_dir).privacy_report


def fit_rules(ctx: RunContext, table):
    """The dataset's rules fitted on the training rows (None without rules); the profile stage has checked
    that the source keeps them."""
    rules = ctx.dataset.ruleset
    return None if rules is None else rules.fit(table)


def build_model(ctx: RunContext, metadata=None):
    """The dataset's generator on `metadata` (default: the dataset's; with rules, the table they learn) with
    params.yaml's train.hyper.<generator>, the dataset config's `hyper` on top; a bad name or value is a config
    error naming the setting."""
    from synthlake.generators import get_generator

    name, privacy = ctx.dataset.generator, ctx.dataset.privacy
    metadata = metadata or ctx.dataset.metadata
    hyper = hyper_settings(ctx)
    try:
        if privacy is None:
            return get_generator(name)(metadata, **hyper)
        return get_generator(name)(metadata, privacy=privacy.model_dump(), **hyper)
    except (ValueError, ImportError) as exc:
        raise ConfigError(f"{ctx.config_path} generator {name!r} (its `hyper`, params.yaml train.hyper.{name} "
                          f"or `privacy`): {exc}") from exc


def hyper_settings(ctx: RunContext, step: dict | None = None) -> dict:
    """params.yaml's train.hyper.<generator>, the dataset config's `hyper` on top, then the training attempt's
    ladder step (`step`, default the context's)."""
    step = ctx.hyper_step if step is None else step
    return {**ctx.params.train.hyper.get(ctx.dataset.generator, {}), **ctx.dataset.hyper, **step}


def check_hyper(ctx: RunContext) -> None:
    """The generator's name and hyper-parameters, as configured and with each step of its retraining ladder,
    checked against its declared model (no torch): a typo is a config error before any Spark starts."""
    from synthlake.generators import check_hyper as check

    name = ctx.dataset.generator
    for step in [{}, *ctx.params.train.ladder.get(name, [])]:
        try:
            check(name, hyper_settings(ctx, step))
        except (ValueError, ImportError) as exc:
            where = f"params.yaml train.ladder.{name} step {step}" if step else \
                f"{ctx.config_path} generator {name!r} (its `hyper` or params.yaml train.hyper.{name})"
            raise ConfigError(f"{where}: {exc}") from exc


def _use_gpu(spark, setting: str, on_executors: bool = False) -> bool:
    """GPUs when asked for (or, on auto, when CUDA is there and Spark's driver has GPUs configured). On the
    executors: when Spark gives each task GPUs (spark.task.resource.gpu.amount); the driver cannot see their CUDA."""
    import torch

    if on_executors:
        key, cuda = "spark.task.resource.gpu.amount", True
    else:
        key, cuda = "spark.driver.resource.gpu.amount", torch.cuda.is_available()
    configured = spark.conf.get(key, "0") not in ("0", "")
    if setting == "true":
        if not cuda or not configured:
            raise StageError(f"train.use_gpu is true but CUDA is not available or {key} is not set in the "
                             "environment's spark.conf")
        return True
    return setting == "auto" and cuda and configured


def _distributed_fit(spark, model, work: Path, model_dir: Path, seed: int, processes: int, use_gpu: bool,
                     checkpoints: Path | None = None, rules: dict | None = None, on_executors: bool = False):
    """Train in `processes` processes: on the driver's machine (TorchDistributor's local mode), or one per Spark
    barrier task on the executors (env train_on: executors), which must see `work` and `model_dir`."""
    from pyspark.ml.torch.distributor import TorchDistributor

    print(f"[synthlake] train: {processes} process(es) on the {'executors' if on_executors else 'driver'}, "
          f"{'GPU' if use_gpu else 'CPU'}", flush=True)
    distributor = TorchDistributor(num_processes=processes, local_mode=not on_executors, use_gpu=use_gpu)
    # on the executors each process has the cores Spark gave its task; on the driver, a share of the machine
    threads = int(spark.conf.get("spark.task.cpus", "1")) if on_executors else None
    try:
        history_json = distributor.run(train_process, model, str(work), str(model_dir), seed, use_gpu,
                                       None if checkpoints is None else str(checkpoints), rules, threads)
    except Exception as exc:
        if LOST_PROCESS not in str(exc):
            raise
        kept = f"; the epochs checkpointed in {checkpoints} are kept: running the train stage again for this " \
               "run id resumes from the last" if checkpoints is not None else ""
        raise StageError(f"a training process failed or was lost (its log is above){kept}") from None
    if history_json is None:
        raise StageError("training returned no result from rank 0; see the training processes' log above")
    return json.loads(history_json)


def train_process(model, work: str, model_dir: str, seed: int, use_gpu: bool, checkpoints: str | None = None,
                  rules: dict | None = None, threads: int | None = None) -> str:
    """One training process (run by torchrun under TorchDistributor): join the group, train, save. `rules`: the
    fitted synthlake.rules state, wrapped around the saved Sampler so that its rows hold them. `threads`: torch's
    CPU threads (default: the machine's cores shared by the processes)."""
    import os
    import socket

    import torch
    import torch.distributed as dist

    from pipelines.encode import SHARDS, rank_rows
    from synthlake.generators import TrainOptions

    dist.init_process_group("nccl" if use_gpu else "gloo")
    rank = dist.get_rank()
    if rank == 0:  # where it runs: the driver's machine, or an executor (its working directory under the worker's)
        (Path(work) / RANK0_FILE).write_text(json.dumps({"rank0_host": socket.gethostname(),
                                                         "rank0_working_dir": os.getcwd()}))
    device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if use_gpu else "cpu"
    if use_gpu:
        torch.cuda.set_device(device)  # NCCL's object collectives use the current device
    else:
        torch.set_num_threads(threads or max(1, (os.cpu_count() or 1) // dist.get_world_size()))
    shards = Path(work) / SHARDS
    if shards.exists():  # encoded on the executors: this process reads its own rows only
        encoded = rank_rows(shards, rank, dist.get_world_size())
    else:
        encoded = np.load(Path(work) / ENCODED_FILE, mmap_mode="r")

    def progress(record: dict) -> None:
        figures = " ".join(f"{k} {v:.4f}" for k, v in record.items() if k != "epoch")
        of = f"/{model.hyper['epochs']}" if "epochs" in model.hyper else ""  # a generator may declare no epochs
        print(f"[synthlake] train: epoch {record['epoch'] + 1}{of} {figures}", flush=True)

    options = TrainOptions(seed=seed, device=device, on_epoch=progress, checkpoint_dir=checkpoints,
                           sharded=shards.exists())
    history = model.train(np.asarray(encoded), options)
    if rank == 0:  # the whole model (to resume or inspect) and its Sampler (what sampling and serving load)
        tmp = Path(model_dir + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        model.save(tmp)
        sampler_of(model.freeze(), rules).save(tmp)
        shutil.rmtree(model_dir, ignore_errors=True)
        tmp.rename(model_dir)
    dist.barrier()
    dist.destroy_process_group()
    return json.dumps(history)


def sampler_of(frozen, rules: dict | None):
    """The trained model's Sampler, wrapped in the dataset's fitted rules if it has any."""
    if rules is None:
        return frozen
    from synthlake.generators.ruled import RuledSampler
    from synthlake.rules import RuleSet

    return RuledSampler(frozen, RuleSet.from_state(rules))
