"""What every stage entry point shares: its arguments, its Spark session and its exit codes."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import secrets
import sys
import time
from datetime import UTC, datetime

# 1 stays Python's own code for a crash (worth a retry); 2 and 3 are verdicts a retry cannot change.
EXIT_OK, EXIT_BAD_INPUT, EXIT_STAGE_REFUSED = 0, 2, 3


def quiet_services() -> None:
    """No telemetry or analytics from the libraries we drive; nothing written to the home directory."""
    for key, value in {"MLFLOW_DISABLE_TELEMETRY": "true", "GX_ANALYTICS_ENABLED": "false",
                       "DVC_NO_ANALYTICS": "1", "DO_NOT_TRACK": "1",
                       "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}.items():
        os.environ.setdefault(key, value)


def add_run_arguments(parser: argparse.ArgumentParser, run_id_required: bool = True) -> None:
    parser.add_argument("config", help="dataset config, e.g. conf/datasets/adult.yaml")
    parser.add_argument("--run-id", required=run_id_required,
                        help="the run's id: every stage of one run uses the same id; a retry replaces it")
    parser.add_argument("--rows", type=int, help="synthetic rows to generate (default: params.yaml rows)")
    parser.add_argument("--seed", type=int, help="the run's seed (default: params.yaml seed)")
    parser.add_argument("--where", help="a condition every synthetic row meets, in Spark SQL on learned columns, "
                                        "e.g. \"age >= 60 AND income = '>50K'\" (names with spaces in backticks)")
    parser.add_argument("--seed-table", metavar="PATH",
                        help="a Delta, Parquet or CSV table of partial rows: each gives one synthetic row that "
                             "keeps its values (rows = its row count)")
    parser.add_argument("--retrain", choices=["auto", "always", "never"],
                        help="auto: train only when the dataset has no champion, the settings changed or the source "
                             "drifted, else sample from the champion; always; never (default: params.yaml retrain)")
    parser.add_argument("--params", help="params file (default: params.yaml in the project root)")
    parser.add_argument("--env", help="environment in conf/env (default: $SYNTHLAKE_ENV or local)")


def open_context(args: argparse.Namespace, run_id: str):
    from pipelines.context import RunContext

    return RunContext.open(args.config, run_id, params_path=args.params, env_name=args.env,
                           rows=args.rows, seed=args.seed, where=args.where or None, seed_table=args.seed_table or None,
                           retrain=args.retrain)


def run_stage(stage: str, ctx, spark) -> dict:
    """Run one stage (`pipelines.<stage>.run`, see pipelines.stages) and print its result as a line of JSON
    (what DVC, Airflow logs and people read)."""
    module = importlib.import_module(f"pipelines.{stage}")
    started = time.monotonic()
    print(f"[synthlake] {stage}: run {ctx.run_id} of dataset {ctx.dataset.name} ...", flush=True)
    result = module.run(ctx, spark)
    print(f"[synthlake] {stage}: done in {time.monotonic() - started:.1f}s {json.dumps(result, default=str)}",
          flush=True)
    return result


def new_run_id(dataset: str) -> str:
    return f"{dataset}-{datetime.now(UTC):%Y%m%dT%H%M%S}-{secrets.token_hex(2)}"


def run_alone(stage: str, ctx) -> dict:
    """One stage in a Spark session of its own (jobs/<stage>_job.py, `synthlake <stage>`), as one OpenLineage run
    (pipelines.lineage): START before Spark starts, COMPLETE or FAIL at the end; the parent of Spark's own events
    where the environment turns them on."""
    from pipelines.lineage import stage_run
    from pipelines.spark import get_spark

    with stage_run(ctx, stage) as lineage:
        spark = get_spark(ctx.env, app_name=f"synthlake-{stage}-{ctx.dataset.name}", lineage_parent=lineage)
        return run_stage(stage, ctx, spark)


def guarded(fn) -> int:
    """Our errors become a message and an exit code: 2 bad configuration or arguments, 3 a stage refused
    (failed gate, missing earlier stage, bad source data). Anything else is a crash: traceback, exit 1."""
    from pipelines.config import ConfigError
    from pipelines.context import StageError

    try:
        fn()
        return EXIT_OK
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except StageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_STAGE_REFUSED


def stage_main(stage: str, argv: list[str] | None = None) -> int:
    """The body of jobs/<stage>_job.py: parse arguments, start Spark, run the stage."""
    quiet_services()
    parser = argparse.ArgumentParser(prog=f"jobs/{stage}_job.py", description=f"synthlake {stage} stage")
    add_run_arguments(parser)
    args = parser.parse_args(argv)

    def go():
        run_alone(stage, open_context(args, args.run_id))

    return guarded(go)
