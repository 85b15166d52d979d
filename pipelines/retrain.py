"""retrain: after a failed gate, train again with the next step of the ladder, until one passes.

params.yaml `train.ladder.<generator>` lists hyper-parameters (over `train.hyper` and the config's `hyper`) for
each further attempt, e.g. more epochs, then a wider model; `train.max_attempts` bounds the trainings of one run.
The first training attempt uses the settings as they are (when the run reused the champion and its rows failed,
that comes first). Each attempt trains (its own MLflow run, a child of the run's), samples and validates; the
first that passes is the run's, and publish goes on with it: later attempts only run when earlier ones failed, so
it is the best passing one. When none passes the stage fails naming every attempt's failed checks, and nothing is
published. `synthlake run` calls it when validate fails; the Airflow DAGs run it as the task after validate that
runs only when validate failed; `dvc repro` stops at the failed gate instead.
"""

from __future__ import annotations

import importlib
import time

from pipelines.context import RunContext, StageError
from pipelines.records import Attempt, AttemptsRecord, TrainRecord, Verdict
from pipelines.validate import GateFailed


def run(ctx: RunContext, spark) -> dict:
    store = ctx.store
    verdict = store.read(Verdict) if store.path("verdict").exists() else None
    attempts = _attempts(ctx, verdict)
    if verdict is not None and verdict.passed:
        return {"passed": True, "attempts": len(attempts), "model_version": store.read(TrainRecord).model_version}
    if ctx.params.retrain == "never":
        raise GateFailed(f"run {ctx.run_id!r} failed validation and retrain is never: {_failures(attempts)}")
    steps = [{}, *ctx.params.train.ladder.get(ctx.dataset.generator, [])]
    while len(attempts) < ctx.params.train.max_attempts:
        trained = sum(not a.reused for a in attempts)
        if trained >= len(steps):
            break
        _try(ctx.for_attempt(len(attempts) + 1, steps[trained]), spark)
        attempts.append(_attempt(store.read(TrainRecord), store.read(Verdict)))
        store.write(AttemptsRecord(attempts=attempts))
        if attempts[-1].passed:
            return {"passed": True, "attempts": len(attempts), "model_version": attempts[-1].model_version}
    raise GateFailed(f"run {ctx.run_id!r}: no attempt passed its gate ({len(attempts)} of at most "
                     f"{ctx.params.train.max_attempts}; steps in params.yaml train.ladder."
                     f"{ctx.dataset.generator}): {_failures(attempts)}")


def _try(ctx: RunContext, spark) -> None:
    """Train, sample and validate one attempt (its verdict says whether its gate passed)."""
    for stage in ("train", "sample", "validate"):
        started = time.monotonic()
        print(f"[synthlake] retrain: attempt {ctx.attempt}, {stage} ...", flush=True)
        try:
            importlib.import_module(f"pipelines.{stage}").run(ctx, spark)
        except GateFailed as exc:
            print(f"[synthlake] retrain: attempt {ctx.attempt} failed its gate: {exc}", flush=True)
            return
        print(f"[synthlake] retrain: attempt {ctx.attempt}, {stage} done in {time.monotonic() - started:.1f}s",
              flush=True)


def _attempts(ctx: RunContext, verdict: Verdict | None) -> list[Attempt]:
    """The attempts judged so far: the record's (a retried retrain goes on after the last), else the first (the
    train stage's, judged by `verdict`)."""
    store = ctx.store
    if store.path("attempts").exists():
        return store.read(AttemptsRecord).attempts
    if verdict is None:
        raise StageError(f"run {ctx.run_id!r} has no verdict: validate did not run after the latest sample "
                         "(an earlier stage failed?), so there is no failed gate to retrain for")
    first = [_attempt(store.read(TrainRecord), verdict)]
    store.write(AttemptsRecord(attempts=first))
    return first


def _attempt(trained: TrainRecord, verdict: Verdict) -> Attempt:
    return Attempt(attempt=trained.attempt, reused=trained.reused, hyper_step=trained.hyper_step,
                   model_version=trained.model_version, mlflow_run_id=trained.mlflow_run_id,
                   passed=verdict.passed, failed_checks=verdict.failed_checks)


def _failures(attempts: list[Attempt]) -> str:
    return "; ".join(f"attempt {a.attempt} ({'the champion' if a.reused else a.hyper_step or 'as configured'}, "
                     f"version {a.model_version}) failed {', '.join(a.failed_checks)}" for a in attempts)

