"""validate: the gate. A Great Expectations suite derived from the profile runs on the full staging rows,
the canary check too; fidelity, utility and privacy metrics run on bounded samples of the training rows,
the holdout and the synthetic rows. Every check is recorded with its threshold, and a report is written."""

from __future__ import annotations

import csv
import json
import math
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import numpy as np

from pipelines.conditioned import condition_checks, meeting, reference
from pipelines.context import RunContext, StageError
from pipelines.records import (
    CheckRecord,
    PrivacySpent,
    ProfileRecord,
    RunStore,
    SampleRecord,
    TrainRecord,
    Verdict,
    check,
)
from pipelines.rule_checks import flag_column, with_flags
from pipelines.source import bounded, read_profiled, read_real
from pipelines.spark import column
from pipelines.thresholds import check_metric_names
from synthlake.evaluation import HEADLINE, METRICS, Direction, MetricResult, SharedWork, get_metric
from synthlake.evaluation.privacy import CanaryShare
from synthlake.metadata import RARE_CATEGORY, ColumnKind

_GX_TYPES = {"bigint": "LongType", "double": "DoubleType", "timestamp": "TimestampType", "string": "StringType"}
SPARK_METRICS = {"canary_share"}  # counted on the full staging table, not on samples (_canary_checks)


class GateFailed(StageError):
    """The run's rows failed validation; the message names the failed checks."""


def run(ctx: RunContext, spark) -> dict:
    check_metric_names(ctx)
    store = ctx.store
    profile = store.read(ProfileRecord)
    record = store.read(SampleRecord)
    # a DP generator never saw the exact min, max or null-free columns: a share of its values must comply
    mostly = ctx.params.validate_.dp_mostly if ctx.dataset.privacy else 1.0
    # the staged rows are kept (memory, then disk) for the expectations and the checks, and let go at the end:
    # a cached plan would otherwise answer a later read of the same partition in this session with these rows,
    # even after a retry's sample stage replaced them
    rules = _fitted_rules(ctx)
    staged = ctx.read_partition(spark, "staging").drop("run_id").persist()
    try:
        checks, metric_checks, frames, results, skipped, gx_result = _validate(ctx, spark, profile, record, rules,
                                                                               staged, mostly)
    finally:
        staged.unpersist()
    failed = [c["check"] for c in checks if c["passed"] is False]
    verdict = {"run_id": ctx.run_id, "passed": not failed, "failed_checks": failed, "checks": checks,
               "skipped_metrics": skipped, "gx_success": gx_result["success"],
               "metrics": {c["check"]: c["value"] for c in metric_checks},
               "rows": {k: len(v) for k, v in frames.items()}, "validated_at": datetime.now(UTC).isoformat()}
    path = store.write(Verdict.model_validate(verdict))
    store.write_json("metrics", headline(verdict))
    report = _write_report(ctx, profile, record, rules, verdict, frames, results)
    _log_to_mlflow(ctx, verdict, report)
    print(f"[synthlake] validate: report {report}", flush=True)
    if failed:
        raise GateFailed(f"validation failed for run {ctx.run_id!r}: {', '.join(failed)} (see {path} and {report})")
    return {"passed": True, "checks": len(checks), "verdict": str(path), "report": str(report),
            **{k: round(v, 4) for k, v in headline(verdict).items() if isinstance(v, float)}}


def _validate(ctx: RunContext, spark, profile: ProfileRecord, record: SampleRecord, rules, staged, mostly: float):
    """Every check on the staged rows (and, apart, the metrics' own): the expectations run on Spark in a thread
    while this one samples the real rows and computes the metrics (most of either is waiting, on the JVM or on
    numpy, so they overlap well)."""
    _import_before_threads()
    with ThreadPoolExecutor(1, thread_name_prefix="gx") as pool:
        print("[synthlake] validate: expectations on the staged rows", flush=True)
        expected = _expected_profile(ctx, profile)
        expectations = pool.submit(lambda: run_expectations(staged, expected, ctx.run_id, mostly, rules))
        frames = reference(_samples(spark, ctx, profile, record, staged), ctx)
        if frames["synthetic"].empty:
            raise StageError(f"staging table has no rows for run {ctx.run_id!r}: run the sample stage first")
        results, skipped = _evaluate(ctx, frames)
        gx_result = expectations.result()
    ctx.store.write_json("gx_result", gx_result)
    metric_checks = _metric_checks(ctx, results)
    checks = _expectation_checks(gx_result, rules)
    checks += _shape_checks(ctx, results) + metric_checks + _canary_checks(ctx, staged)
    checks += condition_checks(ctx, record, staged, frames)
    return checks, metric_checks, frames, results, skipped, gx_result


def _import_before_threads() -> None:
    """Imports what `_validate`'s two threads would import lazily, before the second starts. Two threads importing
    modules of one package at once can fail with Python's `_DeadlockError` (its locks are per module, and packages
    import each other): GX's thread once met the metrics' sklearn in narwhals (altair's and sklearn's)."""
    import great_expectations  # noqa: F401
    import scipy.stats  # noqa: F401
    import sklearn.ensemble  # noqa: F401
    import sklearn.metrics  # noqa: F401
    import sklearn.model_selection  # noqa: F401

    from synthlake.evaluation.gower import warm_up
    warm_up()  # numba imports its compiler's modules at the first call of a compiled function


def _expected_profile(ctx: RunContext, profile: ProfileRecord) -> ProfileRecord:
    """What the expectations hold the rows to: this run's profile, widened by the profile of the source a reused
    champion learned (its rows may keep values, such as last month's largest, that this source lacks)."""
    from pipelines import tracking

    trained = ctx.store.read(TrainRecord)
    if not trained.reused:
        return profile
    tracking.setup(ctx)
    learned = tracking.logged_profile(ctx.store.read(CheckRecord).champion.mlflow_run_id)
    return profile if learned is None else widened(profile, learned)


def widened(profile: ProfileRecord, other: ProfileRecord) -> ProfileRecord:
    """`profile` with each column's range, category set and null fraction stretched to cover `other`'s."""
    columns = {}
    for name, col in profile.columns.items():
        theirs = other.columns.get(name)
        update = {}
        if theirs is not None and col.min is not None and theirs.min is not None:
            update.update(min=min(col.min, theirs.min), max=max(col.max, theirs.max))
        if theirs is not None and col.categories and theirs.categories:
            known = {v for v, _ in col.categories.frequencies}
            extra = [(v, share) for v, share in theirs.categories.frequencies if v not in known]
            update["categories"] = col.categories.model_copy(update={
                "truncated": col.categories.truncated or theirs.categories.truncated,
                "frequencies": col.categories.frequencies + extra})
        if theirs is not None:
            update["null_fraction"] = max(col.null_fraction, theirs.null_fraction)
        columns[name] = col.model_copy(update=update)
    return profile.model_copy(update={"columns": columns})


def headline(verdict: dict) -> dict:
    """The figures DVC, the audit row and the CLI summary show."""
    metrics = verdict["metrics"]
    return {"passed": verdict["passed"], **{k: metrics[k] for k in HEADLINE if k in metrics}}


def _samples(spark, ctx: RunContext, profile: ProfileRecord, record: SampleRecord, staged) -> dict:
    """Bounded pandas samples of the training rows, the holdout and the synthetic rows; of the real rows, those
    that meet the run's `where`."""
    limit, seed = ctx.params.validate_.max_rows, ctx.params.seed
    print(f"[synthlake] validate: metrics on at most {limit} rows per side", flush=True)
    source = meeting(read_profiled(spark, ctx, profile), record.where)  # read once for both sides
    return {"real": bounded(read_real(spark, ctx, "train", profile, source), limit, seed,
                            total=profile.rows).toPandas(),
            "holdout": bounded(read_real(spark, ctx, "holdout", profile, source), limit, seed,
                               total=profile.holdout.rows).toPandas(),
            "synthetic": bounded(staged, limit, seed).toPandas()}


def _expectation_checks(gx_result: dict, rules) -> list[dict]:
    """One check per expectation; a rule's (on its flag column) is named by the rule, its value the number of
    staged rows that break it."""
    labels = {flag_column(i): rule.label for i, rule in enumerate(rules.rules)} if rules else {}
    return [check(labels[r["column"]], "rules", r["unexpected"], 0, "<=", r["success"]) if r["column"] in labels
            else check(f"gx:{r['expectation']}:{r['column']}", "expectation", r["observed"], None, None, r["success"])
            for r in _gx_summary(gx_result)]


def _shape_checks(ctx: RunContext, results: dict[str, MetricResult]) -> list[dict]:
    floor = ctx.params.validate_.min_column_shape
    shapes = results["column_shapes"].details["shapes"]
    return [check(f"column_shape:{s.column}", "column_shape", s.score, floor, ">=", s.score >= floor)
            for s in shapes]


def thresholds(ctx: RunContext) -> dict[str, float | None]:
    """params.yaml's validate.thresholds, the dataset config's thresholds on top."""
    return {**ctx.params.validate_.thresholds, **ctx.dataset.thresholds}


def _op(metric) -> str:
    if metric.direction == Direction.MAXIMIZE:
        return ">="
    if metric.direction == Direction.MINIMIZE:
        return "<="
    return f"|x-{metric.target:g}|<="


def _evaluate(ctx: RunContext, frames: dict) -> tuple[dict[str, MetricResult], dict[str, str]]:
    """Every registered metric the dataset's context allows, sharing their common work; the others are listed
    with what they lack."""
    d = ctx.dataset
    context = {"holdout": frames["holdout"], "quasi_identifiers": d.quasi_identifiers or None,
               "sensitive": d.sensitive_column, "canaries": None}
    shared, results, skipped = SharedWork(), {}, {}
    for name, cls in METRICS.items():
        if name in SPARK_METRICS:
            continue
        lacking = cls.missing_context(d.metadata, context)
        if lacking:
            skipped[name] = f"needs {', '.join(lacking)} in the dataset config"
            continue
        print(f"[synthlake] validate: {name}", flush=True)
        metric = get_metric(name, max_rows=None, seed=ctx.params.seed)  # frames are bounded already
        results[name] = metric.evaluate(frames["real"], frames["synthetic"], d.metadata, shared=shared, **context)
    return results, skipped


def _metric_checks(ctx: RunContext, results: dict[str, MetricResult]) -> list[dict]:
    limits, checks = thresholds(ctx), []
    for name, result in results.items():
        metric, value, threshold = METRICS[name], result.value, limits.get(name)
        passed = None if threshold is None else metric.passes(value, threshold)
        checks.append(check(name, metric.family, None if math.isnan(value) else value, threshold, _op(metric),
                             passed))
    return checks


def _canary_checks(ctx: RunContext, staged) -> list[dict]:
    """Planted values (dataset config `canaries`) searched in every staged row, not a sample: Spark counts,
    CanaryShare says what a canary is and what the share is."""
    if not ctx.dataset.canaries:
        return []
    planted = CanaryShare.planted(ctx.dataset.canaries, ctx.dataset.metadata)
    found = sum(_held(staged, column, values) for column, values in planted.items())
    share = CanaryShare.share(found, sum(len(values) for values in planted.values()))
    threshold = thresholds(ctx).get("canary_share", 0.0)
    passed = None if threshold is None else CanaryShare.passes(share, threshold)
    return [check(CanaryShare.name, CanaryShare.family, share, threshold, _op(CanaryShare), passed)]


def _fitted_rules(ctx: RunContext):
    """The dataset's rules as train fitted them (saved in the model folder, synthlake.generators.ruled), None
    without rules."""
    from synthlake.rules import RULES_FILE, RuleSet

    if not ctx.dataset.rules:
        return None
    saved = ctx.store.path("model") / RULES_FILE
    if not saved.is_file():  # e.g. rules added to the config after training: the rows were not made to hold them
        raise StageError(f"{ctx.config_path} has rules, but run {ctx.run_id!r} was trained without them: "
                         "re-run train and sample")
    return RuleSet.from_state(json.loads(saved.read_text()))


def _held(staged, name: str, values: np.ndarray) -> int:
    """How many of the values some staged row holds in column `name`, compared as floats or as strings (as
    CanaryShare.planted gave them)."""
    held = column(name).cast("double" if values.dtype.kind == "f" else "string")
    return staged.where(held.isin(values.tolist())).select(held).distinct().count()


def build_suite(profile: ProfileRecord, mostly: float = 1.0, rules=None, aliases: dict[str, str] | None = None):
    """Expectations the source satisfied: columns and types, not-null, numeric ranges, category sets; and per
    rule, that no row breaks it (its flag column, pipelines.rule_checks, false on every row). `aliases`: the
    name GX knows a column by, where it differs."""
    import great_expectations as gx
    from great_expectations import expectations as E

    suite = gx.ExpectationSuite(name=f"synthlake-{profile.dataset}-{profile.profile_version}")
    # a column a rule produces (a derived total, an inequality's high) takes the values the rule gives, which
    # may fall outside the source's range (the largest parts together): its rule is its expectation
    produced = {c for rule in (rules.rules if rules else ()) for c in rule.writes}
    for real, col in profile.columns.items():
        name = (aliases or {}).get(real, real)
        suite.add_expectation(E.ExpectColumnToExist(column=name))
        suite.add_expectation(E.ExpectColumnValuesToBeOfType(column=name, type_=_GX_TYPES[col.type]))
        if col.null_fraction == 0:
            suite.add_expectation(E.ExpectColumnValuesToNotBeNull(column=name, mostly=mostly))
        if col.kind == ColumnKind.NUMERIC and col.min is not None and real not in produced:
            suite.add_expectation(E.ExpectColumnValuesToBeBetween(column=name, min_value=col.min,
                                                                  max_value=col.max, mostly=mostly))
        if col.kind == ColumnKind.CATEGORICAL and not col.categories.truncated:
            # generators emit RARE_CATEGORY in place of values too rare to reproduce
            values = [v for v, _ in col.categories.frequencies if v is not None] + [RARE_CATEGORY]
            suite.add_expectation(E.ExpectColumnValuesToBeInSet(column=name, value_set=values))
    for i, rule in enumerate(rules.rules if rules else ()):
        suite.add_expectation(E.ExpectColumnValuesToBeInSet(column=flag_column(i), value_set=[False],
                                                            description=rule.label))
    return suite


def run_expectations(df, profile: ProfileRecord, run_id: str, mostly: float = 1.0, rules=None) -> dict:
    """The suite (build_suite) on `df`; with `rules`, on `df` with their flag columns. GX knows the columns by
    positional aliases (it reads a dot as a struct field and cannot quote a backtick); its result names them as
    they are."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)  # our own progress lines suffice
    batch = (context.data_sources.add_spark(name="synthlake", persist=False)  # the caller persists the rows
             .add_dataframe_asset(name="staging").add_batch_definition_whole_dataframe(run_id))
    aliases = {name: f"__column_{i}" for i, name in enumerate(profile.columns)}
    suite = context.suites.add(build_suite(profile, mostly, rules, aliases))
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(data=batch, suite=suite, name=f"staging-{run_id}"))
    frame = with_flags(df, rules) if rules else df
    frame = frame.select(*[column(c).alias(aliases.get(c, c)) for c in frame.columns])
    # counts, no example values: those cost a Spark job per expectation (half of GX's time on a wide table)
    result = definition.run(batch_parameters={"dataframe": frame},
                            result_format={"result_format": "SUMMARY", "partial_unexpected_count": 0}).to_json_dict()
    names = {alias: name for name, alias in aliases.items()}
    for r in result["results"]:
        kwargs = r["expectation_config"]["kwargs"]
        kwargs["column"] = names.get(kwargs.get("column"), kwargs.get("column"))
    return result


def _gx_summary(result: dict) -> list[dict]:
    out = []
    for r in result["results"]:
        cfg = r["expectation_config"]
        observed = r.get("result", {}).get("unexpected_percent", r.get("result", {}).get("observed_value"))
        out.append({"expectation": cfg["type"], "column": cfg["kwargs"].get("column"),
                    "success": bool(r["success"]), "observed": observed,
                    "unexpected": r.get("result", {}).get("unexpected_count")})
    return out


def _write_report(ctx: RunContext, profile: ProfileRecord, record: SampleRecord, rules, verdict: dict,
                  frames: dict, results: dict[str, MetricResult]):
    from synthlake.evaluation.explain import explain
    from synthlake.report import render_report

    store = ctx.store
    meta = ctx.dataset.metadata
    trained = store.read(TrainRecord)
    decided = store.read(CheckRecord)
    model = f"{trained.model_name} v{trained.model_version}" + (" (the champion, reused)" if trained.reused else
                                                                 f" (training attempt {trained.attempt})")
    facts = {"generator": ctx.dataset.generator, "model": model,
             "synthetic rows": record.rows, "training rows": profile.rows,
             "holdout rows": profile.holdout.rows, "source": profile.source.fingerprint,
             "profile version": profile.profile_version, "validated at": verdict["validated_at"],
             "differential privacy": _privacy_fact(trained.privacy), **_condition_facts(ctx, record)}
    described = [(r.label, r.describe(), profile.rules.get(r.label)) for r in rules.rules] if rules else None
    explanation = explain(frames["real"], frames["synthetic"], meta, results, rules=ctx.dataset.rules,
                          private=ctx.dataset.privacy is not None, seed=ctx.params.seed)
    html = render_report(dataset=ctx.dataset.name, run_id=ctx.run_id, passed=verdict["passed"],
                         checks=verdict["checks"], real=frames["real"], synthetic=frames["synthetic"],
                         metadata=meta, results=results, facts=facts, explanation=explanation, rules=described,
                         drift={"decision": decided.decision, "reason": decided.reason,
                                "thresholds": decided.thresholds,
                                "columns": {c: d.model_dump() for c, d in decided.drift.items()}})
    path = store.write_text("report", html)
    _write_plot_data(store, verdict, results["dcr_share"])
    return path


def _condition_facts(ctx: RunContext, record: SampleRecord) -> dict[str, str]:
    """The run's conditions, for the report's header."""
    d = ctx.dataset
    facts = {"where": record.where, "seed table": record.seed_table,
             "rebalance": d.rebalance and f"{d.rebalance.column}: {d.rebalance.shares}",
             "fairness": d.fairness and f"{d.fairness.target} independent of {', '.join(d.fairness.sensitive)}"}
    return {k: v for k, v in facts.items() if v}


def _privacy_fact(privacy: PrivacySpent | None) -> str:
    if privacy is None:
        return "none (no privacy budget in the dataset config)"
    return f"epsilon {privacy.epsilon:.3f}, delta {privacy.delta:.1e} spent (preprocessing and DP-SGD)"


def _write_plot_data(store: RunStore, verdict: dict, dcr: MetricResult) -> None:
    """CSV files for `dvc plots`: per-column shape scores and the DCR histogram (dcr_share's distances)."""
    to_train, to_holdout = dcr.details["to_train"], dcr.details["to_holdout"]
    with store.path("column_shapes").open("w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["column", "score"])
        out.writerows([c["check"].split(":", 1)[1], round(c["value"], 6)] for c in verdict["checks"]
                      if c["family"] == "column_shape")
    edges = np.histogram_bin_edges(np.r_[to_train, to_holdout], bins=30)
    train_counts, _ = np.histogram(to_train, edges)
    holdout_counts, _ = np.histogram(to_holdout, edges)
    with store.path("dcr").open("w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["distance", "to_train", "to_holdout"])
        rows = zip(edges[:-1], train_counts, holdout_counts, strict=True)
        out.writerows([round(float(e), 6), int(a), int(b)] for e, a, b in rows)


def _log_to_mlflow(ctx: RunContext, verdict: dict, report) -> None:
    import mlflow

    from pipelines import tracking

    trained = ctx.store.read(TrainRecord)
    tracking.setup(ctx)
    values = {tracking.metric_name(c["check"]): c["value"] for c in verdict["checks"]
              if c["family"] != "expectation" and isinstance(c["value"], int | float)}
    with mlflow.start_run(run_id=trained.mlflow_run_id):
        mlflow.log_metrics(values)
        mlflow.set_tag("synthlake.validation", "passed" if verdict["passed"] else "failed")
        for name in ("verdict", "gx_result", "metrics"):
            mlflow.log_artifact(str(ctx.store.path(name)), artifact_path="validation")
        mlflow.log_artifacts(str(report.parent), artifact_path="report")
