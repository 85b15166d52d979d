"""validate: the gate. A Great Expectations suite derived from the profile runs on the full staging rows;
fidelity metrics run on bounded samples of both sides. Every check is recorded with its threshold."""

from __future__ import annotations

from pipelines.context import RunContext, StageError
from pipelines.source import bounded, read_source
from synthlake.metadata import ColumnKind, TableMetadata
from synthlake.metrics import column_shapes

_GX_TYPES = {"bigint": "LongType", "double": "DoubleType", "timestamp": "TimestampType", "string": "StringType"}


class GateFailed(StageError):
    """The run's rows failed validation; the message names the failed checks."""


def run(ctx: RunContext, spark) -> dict:
    profile = ctx.read_json("profile.json", "profile")
    ctx.read_json("sample.json", "sample")
    staged = ctx.read_partition(spark, "staging").drop("run_id")
    if staged.isEmpty():
        raise StageError(f"staging table has no rows for run {ctx.run_id!r}: run the sample stage first")
    gx_result = run_expectations(staged, profile, ctx.run_id)
    ctx.write_json("gx_result.json", gx_result)
    checks = [{"check": f"gx:{r['expectation']}:{r['column']}", "value": r["observed"], "threshold": None,
               "passed": r["success"]} for r in _gx_summary(gx_result)]
    fidelity = fidelity_scores(spark, ctx, staged)
    v = ctx.params.validate_
    checks += [{"check": f"column_shape:{c}", "value": s, "threshold": v.min_column_shape,
                "passed": s >= v.min_column_shape} for c, s in fidelity["columns"].items()]
    checks.append({"check": "mean_column_shape", "value": fidelity["mean_shape"],
                   "threshold": v.min_mean_shape, "passed": fidelity["mean_shape"] >= v.min_mean_shape})
    failed = [c["check"] for c in checks if not c["passed"]]
    verdict = {"run_id": ctx.run_id, "passed": not failed, "failed_checks": failed,
               "fidelity": fidelity, "checks": checks, "gx_success": gx_result["success"]}
    path = ctx.write_json("validation.json", verdict)
    _log_to_mlflow(ctx, verdict)
    if failed:
        raise GateFailed(f"validation failed for run {ctx.run_id!r}: {', '.join(failed)} (see {path})")
    return {"passed": True, "mean_column_shape": round(fidelity["mean_shape"], 4),
            "checks": len(checks), "verdict": str(path)}


def build_suite(profile: dict):
    """Expectations the source satisfied: columns and types, not-null, numeric ranges, category sets."""
    import great_expectations as gx
    from great_expectations import expectations as E

    suite = gx.ExpectationSuite(name=f"synthlake-{profile['dataset']}-{profile['profile_version']}")
    for name, col in profile["columns"].items():
        suite.add_expectation(E.ExpectColumnToExist(column=name))
        suite.add_expectation(E.ExpectColumnValuesToBeOfType(column=name, type_=_GX_TYPES[col["type"]]))
        if col["null_fraction"] == 0:
            suite.add_expectation(E.ExpectColumnValuesToNotBeNull(column=name))
        if col["kind"] == ColumnKind.NUMERIC.value and col["min"] is not None:
            suite.add_expectation(E.ExpectColumnValuesToBeBetween(column=name, min_value=col["min"],
                                                                  max_value=col["max"]))
        if col["kind"] == ColumnKind.CATEGORICAL.value and not col["categories"]["truncated"]:
            values = [v for v, _ in col["categories"]["frequencies"] if v is not None]
            suite.add_expectation(E.ExpectColumnValuesToBeInSet(column=name, value_set=values))
    return suite


def run_expectations(df, profile: dict, run_id: str) -> dict:
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)  # our own progress lines suffice
    batch = (context.data_sources.add_spark(name="synthlake")
             .add_dataframe_asset(name="staging").add_batch_definition_whole_dataframe(run_id))
    suite = context.suites.add(build_suite(profile))
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(data=batch, suite=suite, name=f"staging-{run_id}"))
    return definition.run(batch_parameters={"dataframe": df}).to_json_dict()


def _gx_summary(result: dict) -> list[dict]:
    out = []
    for r in result["results"]:
        cfg = r["expectation_config"]
        observed = r.get("result", {}).get("unexpected_percent", r.get("result", {}).get("observed_value"))
        out.append({"expectation": cfg["type"], "column": cfg["kwargs"].get("column"),
                    "success": bool(r["success"]), "observed": observed})
    return out


def fidelity_scores(spark, ctx: RunContext, staged) -> dict:
    """Per-column KS / TV complements on at most validate.max_rows rows of each side."""
    limit = ctx.params.validate_.max_rows
    real = bounded(read_source(spark, ctx.dataset), limit, ctx.params.seed).toPandas()
    synthetic = bounded(staged, limit, ctx.params.seed).toPandas()
    meta: TableMetadata = ctx.dataset.metadata
    shapes = column_shapes(real, synthetic, meta)
    scores = {s.column: s.score for s in shapes}
    return {"columns": scores, "mean_shape": sum(scores.values()) / len(scores),
            "real_rows": len(real), "synthetic_rows": len(synthetic)}


def _log_to_mlflow(ctx: RunContext, verdict: dict) -> None:
    import mlflow

    from pipelines import tracking

    trained = ctx.read_json("train.json", "train")
    tracking.setup(ctx)
    with mlflow.start_run(run_id=trained["mlflow_run_id"]):
        mlflow.log_metrics({"mean_column_shape": verdict["fidelity"]["mean_shape"],
                            **{f"shape.{c}": s for c, s in verdict["fidelity"]["columns"].items()}})
        mlflow.set_tag("synthlake.validation", "passed" if verdict["passed"] else "failed")
        mlflow.log_artifact(str(ctx.run_dir / "validation.json"), artifact_path="validation")
        mlflow.log_artifact(str(ctx.run_dir / "gx_result.json"), artifact_path="validation")
