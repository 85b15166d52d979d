"""The `synthlake` command: the whole pipeline, one stage at a time, or a drafted dataset config."""

from __future__ import annotations

import argparse
import re
import sys
import textwrap

from jobs.common import (
    add_run_arguments,
    guarded,
    new_run_id,
    open_context,
    quiet_services,
    run_alone,
    run_stage,
)
from jobs.related_job import is_related, run_related
from pipelines.stages import STAGE_NAMES

EPILOG = f"""examples:
  synthlake run conf/datasets/adult.yaml --rows 5000 --seed 7
  synthlake {STAGE_NAMES[0]} conf/datasets/adult.yaml --run-id my-run      (then {', '.join(STAGE_NAMES[1:])})
  synthlake infer-config data/customers.parquet --name customers
  synthlake generators                                            (hyper-parameters for params.yaml)
  synthlake export conf/datasets/adult.yaml --run-id my-run --format csv --to exports/adult   (a published run)
  synthlake serve --port 8000                                     (rows over HTTP from the champion models)
  synthlake stream conf/datasets/adult.yaml --rows-per-second 1000  (a Delta table fed by micro-batches)
  synthlake sql --port 10000                                      (BI tools: jdbc:hive2://127.0.0.1:10000/synthetic)
"""


def main(argv: list[str] | None = None) -> int:
    quiet_services()
    parser = argparse.ArgumentParser(
        prog="synthlake", description="Learn a table, publish a validated synthetic copy to Delta Lake.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help=f"run every stage ({', '.join(STAGE_NAMES)})",
                         description="Run the whole pipeline for one dataset config under a new run id.")
    add_run_arguments(run, run_id_required=False)
    run.set_defaults(handler=_run_all)

    for stage in STAGE_NAMES:
        p = sub.add_parser(stage, help=f"run only the {stage} stage of a run",
                           description=f"Run the {stage} stage for an existing (or new) run id.")
        add_run_arguments(p)
        p.set_defaults(handler=lambda args, stage=stage: _run_one(stage, args))

    retrain = sub.add_parser("retrain", help="after a failed validate: train again with the ladder's next steps",
                             description="Train, sample and validate again with each further step of params.yaml "
                                         "train.ladder.<generator> (at most train.max_attempts trainings), until "
                                         "one passes its gate; then run publish. `run` does this by itself.")
    add_run_arguments(retrain)
    retrain.set_defaults(handler=lambda args: _run_one("retrain", args))

    infer = sub.add_parser("infer-config", help="draft a dataset config from a CSV, Parquet or Delta source",
                           description="Infer column kinds from a sample of SOURCE, find the business rules "
                                       "its rows obey (derived columns, lookups, inequalities, fixed "
                                       "combinations: over every row, evidence as comments) and write a "
                                       "dataset config that `synthlake run` accepts as it is.")
    infer.add_argument("source", nargs="+",
                       help="path or URI of the source table; several (or a folder of tables): related tables, "
                            "their keys and order inferred")
    infer.add_argument("--format", choices=["csv", "parquet", "delta"],
                       help="source format (default: from the file extension; a folder with _delta_log is delta)")
    infer.add_argument("--name", help="dataset name (default: from the source's file name)")
    infer.add_argument("--output", help="where to write the config (default: conf/datasets/NAME.yaml)")
    infer.add_argument("--no-header", action="store_true", help="CSV without a header line")
    infer.add_argument("--sample-rows", type=int, default=10_000, help="rows read to infer kinds (10000)")
    infer.add_argument("--force", action="store_true", help="overwrite an existing config")
    infer.add_argument("--no-rules", action="store_true",
                       help="skip rule discovery (a pass over the whole source; README: Rules)")
    infer.add_argument("--env", help="environment in conf/env (default: $SYNTHLAKE_ENV or local)")
    infer.set_defaults(handler=_infer)

    gens = sub.add_parser("generators", help="list the generators and their hyper-parameters",
                          description="The generators a dataset config's `generator:` may name, with each "
                                      "hyper-parameter's default and bounds (set them in params.yaml under "
                                      "train.hyper.<generator>).")
    gens.set_defaults(handler=lambda args: print(describe_generators()))

    _add_export(sub)
    _add_serve(sub)
    _add_stream(sub)
    _add_sql(sub)

    args = parser.parse_args(argv)
    return guarded(lambda: args.handler(args))


def _add_serve(sub) -> None:
    serve = sub.add_parser("serve", help="serve synthetic rows over HTTP from each dataset's champion model",
                           description="A FastAPI app under uvicorn: POST /v1/datasets/NAME/rows, GET /healthz, "
                                       "GET /readyz, docs at /docs. Bearer tokens come from "
                                       "$SYNTHLAKE_SERVE_TOKENS (comma-separated); without one the server "
                                       "starts only on a loopback host.")
    _add_server_arguments(serve, port=8000, served="rows")
    serve.add_argument("--max-rows", type=int, default=100_000, help="most rows one request may ask for (100000)")
    serve.add_argument("--reload-interval", type=float, default=5.0, metavar="SECONDS",
                       help="check each champion alias at most this often, on request, and reload a moved one (5)")
    serve.set_defaults(handler=_serve)


def _add_server_arguments(parser, port: int, served: str) -> None:
    """What `serve` and `sql` share: where to listen, the environment, which datasets' `served` to serve."""
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    parser.add_argument("--port", type=int, default=port, help=f"port ({port})")
    parser.add_argument("--env", help="environment in conf/env (default: $SYNTHLAKE_ENV or local)")
    parser.add_argument("--dataset", action="append", dest="datasets", metavar="NAME",
                        help=f"a dataset whose {served} to serve, repeatable (default: every conf/datasets/*.yaml)")


def _serve(args) -> None:
    from serving.server import serve

    serve(args.host, args.port, args.env, args.datasets, args.max_rows, args.reload_interval)


def _add_stream(sub) -> None:
    stream = sub.add_parser("stream", help="append synthetic micro-batches to a Delta table, until stopped",
                            description="A Spark Structured Streaming query: every --batch-seconds, "
                                        "rows-per-second x batch-seconds rows from the dataset's champion model "
                                        "appended to the Delta table <published>_stream (<published>_stream_NAME "
                                        "with --name) under the lake, with a checkpoint under "
                                        "<work_dir>/streams/NAME: restarted with the same settings, it goes on "
                                        "from the next batch, none lost or repeated. Stop it with Ctrl-C or SIGTERM.")
    stream.add_argument("config", help="dataset config, e.g. conf/datasets/adult.yaml")
    stream.add_argument("--rows-per-second", type=float, required=True, help="rows generated per second")
    stream.add_argument("--batch-seconds", type=float, default=1.0, help="seconds between micro-batches (1)")
    stream.add_argument("--name", help="the stream's name: its checkpoint and Delta writer id (default: dataset)")
    stream.add_argument("--max-batches", type=int, help="stop after this many micro-batches (default: never)")
    stream.add_argument("--seed", type=int, help="seed of the stream's rows (default: params.yaml seed)")
    stream.add_argument("--params", help="params file (default: params.yaml in the project root)")
    stream.add_argument("--env", help="environment in conf/env (default: $SYNTHLAKE_ENV or local)")
    stream.set_defaults(handler=_stream)


def _stream(args) -> None:
    from pipelines import stream
    from pipelines.config import load_dataset, load_env, load_params
    from pipelines.spark import get_spark

    dataset = load_dataset(args.config)
    spec = stream.StreamSpec(dataset, load_params(args.params, {"seed": args.seed}), load_env(args.env),
                             args.rows_per_second, args.batch_seconds, args.name, args.max_batches)
    version, files = stream.champion_files(spec.env, dataset.name)  # refused before Spark starts
    spec.check_restart()
    batches = stream.run(spec, get_spark(spec.env, app_name=f"synthlake-stream-{dataset.name}"), version, files)
    print(f"[synthlake] stream {spec.stream_name}: stopped after {batches} micro-batches", flush=True)


def _add_sql(sub) -> None:
    sql = sub.add_parser("sql", help="Spark's Thrift JDBC/ODBC server over the published tables (for BI tools)",
                         description="Register each dataset's published and audit tables in the environment's "
                                     "catalog (database `synthetic` by default) and serve them over HiveServer2's "
                                     "protocol: connect with jdbc:hive2://HOST:PORT/synthetic, PyHive or an ODBC "
                                     "driver for Spark/Hive. Loopback only (no authentication). Stop with Ctrl-C.")
    _add_server_arguments(sql, port=10000, served="tables")
    sql.add_argument("--sync-interval", type=float, default=10.0, metavar="SECONDS",
                     help="look for newly published tables this often (10)")
    sql.set_defaults(handler=_sql)


def _sql(args) -> None:
    from pipelines import sql_server
    from pipelines.config import dataset_configs, load_env

    sql_server.serve(load_env(args.env), args.host, args.port, dataset_configs(args.datasets), args.sync_interval)


def describe_generators() -> str:
    """Each generator's hyper-parameters, from its declared model (no torch imported)."""
    from synthlake.generators import entry, generator_names, hyper_model

    lines = []
    for name in generator_names():
        extra = entry(name).extra
        lines.append(f"{name}:" + (f"  (pip install 'synthlake[{extra}]')" if extra else ""))
        for key, default, bounds, doc in hyper_model(name).describe():
            lines.append(f"  {key:<22} default {default!r:<12} {bounds:<22} {doc}")
        lines.append("")
    return "\n".join(lines).rstrip()


def _open_checked(args, run_id: str):
    """The run's context, the gates' metric names and the generator's hyper-parameters checked too: a typo
    there is exit 2 before Spark starts."""
    from pipelines.thresholds import check_metric_names
    from pipelines.train import check_hyper

    ctx = open_context(args, run_id)
    check_metric_names(ctx)
    check_hyper(ctx)
    return ctx


def _run_one(stage: str, args) -> None:
    if is_related(args):
        run_related(args, [stage])
        return
    run_alone(stage, _open_checked(args, args.run_id))


def _run_all(args) -> None:
    """The stages in one Spark session, and the retraining ladder when validate fails; in OpenLineage, one run of
    job <dataset>.run, the parent of the stages' runs and of Spark's own events."""
    from pipelines.config import load_dataset
    from pipelines.lineage import pipeline_run, stage_run
    from pipelines.spark import get_spark
    from pipelines.stages import RELATED_STAGE_NAMES
    from pipelines.validate import GateFailed

    if is_related(args):
        run_related(args, list(RELATED_STAGE_NAMES))
        return
    run_id = args.run_id or new_run_id(load_dataset(args.config).name)
    ctx = _open_checked(args, run_id)
    with pipeline_run(ctx) as lineage:
        spark = get_spark(ctx.env, app_name=f"synthlake-run-{ctx.dataset.name}", lineage_parent=lineage)
        results = {}
        try:
            for stage in STAGE_NAMES:
                try:
                    with stage_run(ctx, stage, parent=lineage):
                        results[stage] = run_stage(stage, ctx, spark)
                except GateFailed:
                    if stage != "validate":
                        raise
                    with stage_run(ctx, "retrain", parent=lineage):
                        results["retrain"] = run_stage("retrain", ctx, spark)
        finally:
            _print_summary(ctx, results)


def _print_summary(ctx, results: dict) -> None:
    from pipelines.records import AttemptsRecord, TrainRecord, Verdict
    from synthlake.evaluation import HEADLINE

    store = ctx.store
    lines = [f"\nsynthlake run {ctx.run_id} ({ctx.dataset.name})"]
    if "check" in results:
        lines.append(textwrap.fill(f"check:             {results['check']['decision']}: {results['check']['reason']}",
                                   width=118, initial_indent="  ", subsequent_indent=" " * 21))
    if "train" in results:
        t = store.read(TrainRecord)
        lines.append(f"  MLflow run:        {t.mlflow_run_id}  (model {t.model_name} version {t.model_version}"
                     f"{', the champion reused' if t.reused else ''})")
    if store.path("attempts").exists():
        for a in store.read(AttemptsRecord).attempts:
            lines.append(f"  attempt {a.attempt}:         version {a.model_version} "
                         f"{'the champion' if a.reused else a.hyper_step or 'as configured'}: "
                         f"{'passed' if a.passed else 'failed ' + ', '.join(a.failed_checks)}")
    if store.path("verdict").exists():
        v = store.read(Verdict)
        gated = [c for c in v.checks if c.passed is not None]
        lines.append(f"  validation:        {'PASSED' if v.passed else 'FAILED'} "
                     f"({len(gated) - len(v.failed_checks)}/{len(gated)} checks)  {store.path('verdict')}")
        if v.failed_checks:
            lines.append(f"  failed checks:     {', '.join(v.failed_checks)}")
        m = v.metrics
        figures = ", ".join(f"{k} {m[k]:.3f}" for k in HEADLINE if m.get(k) is not None)
        lines.append(textwrap.fill(f"metrics:           {figures} ({v.rows['synthetic']} synthetic rows)",
                                   width=118, initial_indent="  ", subsequent_indent=" " * 21))
        lines.append(f"  report:            {store.path('report')}")
    if "publish" in results:
        p = results["publish"]
        lines.append(f"  published table:   {p['published_table']}  ({p['rows']} rows, partition "
                     f"run_id='{ctx.run_id}')")
        lines.append(f"  model alias:       {p['alias']} -> version {p['model_version']}")
    else:
        lines.append("  published:         nothing (the run stopped before publish)")
    print("\n".join(lines), flush=True)


def _infer(args) -> None:
    from pathlib import Path

    from pipelines.config import resolve
    from pipelines.infer_config import infer_config
    from pipelines.infer_related import infer_related_config

    first = Path(resolve(args.source[0]))
    if len(args.source) > 1 or (first.is_dir() and not (first / "_delta_log").is_dir()):
        name = args.name or re.sub(r"[^A-Za-z0-9_-]", "_", first.name if len(args.source) == 1 else "related")
        path = infer_related_config(args.source, name, output=args.output, sample_rows=args.sample_rows,
                                    force=args.force, env_name=args.env)
        print(f"wrote {path}; review it, then: synthlake run {path}")
        return
    path = infer_config(args.source[0], fmt=args.format, name=args.name, output=args.output,
                        header=not args.no_header, sample_rows=args.sample_rows, force=args.force,
                        env_name=args.env, rules=not args.no_rules)
    print(f"wrote {path}; review it, then: synthlake run {path}")


def _add_export(sub) -> None:
    export = sub.add_parser("export", help="write a published run's rows as CSV, JSON, Parquet or a PostgreSQL table",
                            description="Write one run's partition of the published table (never staging) with "
                                        "the configured columns and types, without run_id. A re-export replaces "
                                        "the previous one whole; a failure leaves it as it was. Files: --to is a "
                                        "folder (replaced only if missing, empty or an earlier export). jdbc: --to "
                                        "is jdbc:postgresql://HOST:PORT/DATABASE, the table is created from the "
                                        "config's types; the password comes from $SYNTHLAKE_JDBC_PASSWORD.")
    export.add_argument("config", help="dataset config, e.g. conf/datasets/adult.yaml")
    export.add_argument("--run-id", required=True, help="the published run to export")
    export.add_argument("--format", required=True, choices=["csv", "json", "parquet", "jdbc"],
                        help="csv (with a header), json (JSON Lines), parquet or jdbc (a PostgreSQL table)")
    export.add_argument("--to", required=True, metavar="TARGET", help="a folder, or a JDBC URL for jdbc")
    export.add_argument("--files", type=int, default=1, help="csv/json/parquet: at most this many files (1)")
    export.add_argument("--table", help="jdbc: [SCHEMA.]TABLE, used as written (default: the dataset's name)")
    export.add_argument("--user", help="jdbc: the database user")
    export.add_argument("--env", help="environment in conf/env (default: $SYNTHLAKE_ENV or local)")
    export.set_defaults(handler=_export)


def _export(args) -> None:
    from pipelines import export
    from pipelines.context import RunContext
    from pipelines.spark import get_spark

    ctx = RunContext.open(args.config, args.run_id, env_name=args.env)
    spec = export.ExportSpec(args.format, args.to, args.files, args.table, args.user).checked(ctx.dataset)
    spark = get_spark(ctx.env, app_name=f"synthlake-export-{ctx.dataset.name}",
                      extra_packages=export.spark_packages(spec.format))
    result = export.run(ctx, spark, spec)
    where = f"table {result['table']} at {result['target']}" if spec.format == "jdbc" else result["target"]
    print(f"[synthlake] export: {result['rows']} rows of run {ctx.run_id} ({ctx.dataset.name}, published table "
          f"version {result['published_version']}) -> {where} ({spec.format})", flush=True)


if __name__ == "__main__":
    sys.exit(main())
