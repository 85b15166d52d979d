"""publish: write-audit-publish. Only a run whose verdict passed replaces its partition of the published
table; the model version becomes `champion`; an audit row records the lineage (one row per dataset and run id)."""

from __future__ import annotations

import json
import random
import time
from datetime import UTC, datetime

from pipelines import catalog
from pipelines.context import RunContext, StageError
from pipelines.records import (
    AttemptsRecord,
    CheckRecord,
    PrivacySpent,
    ProfileRecord,
    PublishRecord,
    SampleRecord,
    TrainRecord,
    Verdict,
)
from pipelines.spark import column, delta_options
from pipelines.validate import HEADLINE, GateFailed

AUDIT_SCHEMA = ("run_id string, dataset string, source_fingerprint string, profile_version string, "
                "model_name string, model_version string, mlflow_run_id string, `rows` bigint, "
                "verdict string, failed_checks string, retrain_decision string, retrain_reason string, "
                "drifted_columns string, attempts int, "
                + "".join(f"{m} double, " for m in HEADLINE)
                + "epsilon double, delta double, report string, started_at timestamp, published_at timestamp")


def run(ctx: RunContext, spark) -> dict:
    store = ctx.store
    verdict = store.read(Verdict)
    if not verdict.passed:
        raise GateFailed(f"run {ctx.run_id!r} failed validation, not publishing: "
                         f"{', '.join(verdict.failed_checks)}")
    profile = store.read(ProfileRecord)
    trained = store.read(TrainRecord)
    staged = ctx.read_partition(spark, "staging")
    rows = staged.count()
    expected = store.read(SampleRecord).rows
    if rows != expected:
        raise StageError(f"staging holds {rows} rows for run {ctx.run_id!r}, the sample stage wrote "
                         f"{expected}: re-run sample and validate")
    published = ctx.table_path("published")
    retry_conflicts("the published table", lambda: (
        with_column_comments(staged, ctx).write.format("delta").mode("overwrite").partitionBy("run_id")
        .option("replaceWhere", ctx.partition_filter).options(**delta_options(staged.columns)).save(published)))
    set_champion(ctx, trained)
    check = store.read(CheckRecord)
    attempts = store.read(AttemptsRecord).attempts if store.path("attempts").exists() else []
    audit = {
        "run_id": ctx.run_id, "dataset": ctx.dataset.name,
        "source_fingerprint": profile.source.fingerprint, "profile_version": profile.profile_version,
        "model_name": trained.model_name, "model_version": trained.model_version,
        "mlflow_run_id": trained.mlflow_run_id, "rows": rows, "verdict": "passed",
        "failed_checks": json.dumps(verdict.failed_checks),
        "retrain_decision": check.decision, "retrain_reason": check.reason,
        "drifted_columns": json.dumps(check.drifted_columns), "attempts": max(1, len(attempts)),
        **{m: _number(verdict.metrics.get(m)) for m in HEADLINE},
        **_privacy_columns(trained.privacy),
        "report": str(store.path("report")),
        "started_at": profile.created_at, "published_at": datetime.now(UTC),
    }
    retry_conflicts("the published table's properties", lambda: catalog.record_lineage(spark, published, audit))
    retry_conflicts("the audit table", lambda: _upsert_audit(spark, ctx.table_path("audit"), audit))
    if ctx.env.catalog.register_on_publish:
        catalog.register(spark, ctx.env, ctx.dataset)
    result = PublishRecord(published_table=published, rows=rows, model_version=trained.model_version,
                           alias="champion", audit_table=ctx.table_path("audit"))
    store.write(result)
    return result.model_dump()


CONFLICTS = {"ConcurrentAppendException", "ConcurrentDeleteReadException", "ConcurrentDeleteDeleteException",
             "ConcurrentTransactionException", "ConcurrentWriteException", "MetadataChangedException",
             "ProtocolChangedException"}  # Delta's commit conflicts: another writer committed first


def retry_conflicts(what: str, commit, attempts: int = 6):
    """Run `commit` (a whole Delta write: it re-reads the table) again when another writer's commit conflicts
    with it, e.g. two runs publishing at once (both creating the table, or both MERGEing audit rows); after a
    short, growing, jittered wait, with a line naming the conflict. Other errors, and the last conflict, raise."""
    for attempt in range(1, attempts + 1):
        try:
            return commit()
        except Exception as exc:
            name = type(exc).__name__
            if name not in CONFLICTS or attempt == attempts:
                raise
            wait = 0.5 * 2 ** (attempt - 1) * (1 + random.random())
            print(f"[synthlake] publish: {name} on {what} (a concurrent commit), retrying in {wait:.1f}s "
                  f"(retry {attempt} of {attempts - 1})", flush=True)
            time.sleep(wait)


def with_column_comments(frame, ctx: RunContext):
    """The configured columns with their comments (kept by Delta when this write creates the table), run_id."""
    columns = [column(c.name).alias(c.name, metadata={"comment": catalog.column_comment(c)})
               for c in ctx.dataset.columns]
    return frame.select(*columns, "run_id")


def _privacy_columns(privacy: PrivacySpent | None) -> dict:
    """The privacy spent (epsilon, delta) by a DP run; nulls for a run without differential privacy."""
    if privacy is None:
        return {"epsilon": None, "delta": None}
    return {"epsilon": privacy.epsilon, "delta": privacy.delta}


def _number(value) -> float | None:
    return None if value is None else float(value)


def set_champion(ctx: RunContext, trained: TrainRecord) -> None:
    """The published version becomes the champion; the challenger alias, if it named it, is spent."""
    from mlflow import MlflowClient

    from pipelines import tracking

    tracking.setup(ctx)
    tracking.set_alias(trained.model_name, tracking.CHAMPION, trained.model_version)
    client = MlflowClient()
    if str(client.get_registered_model(trained.model_name).aliases.get(tracking.CHALLENGER)) == trained.model_version:
        client.delete_registered_model_alias(trained.model_name, tracking.CHALLENGER)


def _upsert_audit(spark, path: str, row: dict) -> None:
    """MERGE on (dataset, run_id): a retried publish updates its audit row instead of adding a second one, and
    datasets sharing the audit table keep theirs under one run id (two datasets' nightly-YYYYMMDD runs). Schema
    evolution lets an audit table written by an older synthlake gain the newer columns."""
    from delta.tables import DeltaTable

    update = spark.createDataFrame([row], AUDIT_SCHEMA)
    if not DeltaTable.isDeltaTable(spark, path):
        update.write.format("delta").mode("append").save(path)
        return
    (DeltaTable.forPath(spark, path).alias("a")
     .merge(update.alias("u"), "a.run_id = u.run_id AND a.dataset = u.dataset")
     .withSchemaEvolution().whenMatchedUpdateAll().whenNotMatchedInsertAll().execute())
