"""Entry point of the stages of related tables (pipelines.related): `spark-submit jobs/related_job.py STAGE CONFIG
--run-id ID` (or `python -m jobs.related_job ...`), STAGE one of pipelines.stages.RELATED_STAGE_NAMES, or `run`: all
of them in order, in one Spark session. `synthlake run` and `synthlake <stage>` come here when the config has
`tables:`; the DAGs (a task per stage) and dvc.yaml (`run`: one stage, one JVM) call it directly."""

from __future__ import annotations

import argparse
import json
import sys
import time

from jobs.common import add_run_arguments, guarded, new_run_id, quiet_services
from pipelines.stages import RELATED_STAGE_NAMES


def main(argv: list[str] | None = None) -> int:
    quiet_services()
    parser = argparse.ArgumentParser(prog="jobs/related_job.py", description="a stage of related tables")
    parser.add_argument("stage", choices=[*RELATED_STAGE_NAMES, "run"])
    add_run_arguments(parser)
    args = parser.parse_args(argv)
    return guarded(lambda: run_related(args, list(RELATED_STAGE_NAMES) if args.stage == "run" else [args.stage]))


def is_related(args) -> bool:
    from pipelines.config import RelatedDatasetConfig, load_any_dataset

    return isinstance(load_any_dataset(args.config), RelatedDatasetConfig)


def run_related(args, stages: list[str]) -> None:
    """Stages of a run of related tables in one Spark session, a summary at the end."""
    from pipelines import related
    from pipelines.config import ConfigError, load_any_dataset
    from pipelines.spark import get_spark

    names = list(RELATED_STAGE_NAMES)
    if unknown := [s for s in stages if s not in names]:
        raise ConfigError(f"{args.config}: related tables run the stages {names}, not {unknown} (train profiles "
                          "and checks each table)")
    if args.where or args.seed_table:
        raise ConfigError(f"{args.config}: --where and --seed-table apply to one table, not to related tables")
    run_id = args.run_id or new_run_id(load_any_dataset(args.config).name)
    ctx = related.open_context(args.config, run_id, args.params, args.env, rows=args.rows, seed=args.seed,
                               retrain=args.retrain)
    spark = get_spark(ctx.env, app_name=f"synthlake-run-{ctx.dataset.name}")
    results = {}
    try:
        for stage in stages:
            results[stage] = run_stage(stage, ctx, spark)
    finally:
        _print_related_summary(ctx, results, stages)


def _print_related_summary(ctx, results: dict, stages: list[str]) -> None:
    from pipelines.records import RelatedVerdict

    lines = [f"\nsynthlake run {ctx.run_id} ({ctx.dataset.name}: {', '.join(t.name for t in ctx.dataset.tables)})"]
    for table, model in results.get("train", {}).items():
        lines.append(f"  model of {table}: {model}")
    if "sample" in results:
        lines.append(f"  sampled rows:      {results['sample']['rows']}")
    if ctx.store.path("related_verdict").exists():
        v = ctx.store.read(RelatedVerdict)
        gated = [c for c in v.checks if c.passed is not None]
        lines.append(f"  validation:        {'PASSED' if v.passed else 'FAILED'} "
                     f"({len(gated) - len(v.failed_checks)}/{len(gated)} checks)  {ctx.store.path('related_verdict')}")
        if v.failed_checks:
            lines.append(f"  failed checks:     {', '.join(v.failed_checks)}")
    if "publish" in results:
        for table, path in results["publish"]["tables"].items():
            lines.append(f"  published {table}: {path}  (partition run_id='{ctx.run_id}')")
    elif "publish" in stages:
        lines.append("  published:         nothing (the run stopped before publish)")
    print("\n".join(lines), flush=True)


def run_stage(stage: str, ctx, spark) -> dict:
    """One stage, its result printed as a line of JSON (as jobs.common.run_stage prints a flat stage's)."""
    from pipelines import related, related_validate

    run = {"train": related.train, "sample": related.sample, "validate": related_validate.run,
           "publish": related.publish}[stage]
    started = time.monotonic()
    print(f"[synthlake] {stage}: run {ctx.run_id} of related tables {ctx.dataset.name} ...", flush=True)
    result = run(ctx, spark)
    print(f"[synthlake] {stage}: done in {time.monotonic() - started:.1f}s {json.dumps(result, default=str)}",
          flush=True)
    return result


if __name__ == "__main__":
    sys.exit(main())
