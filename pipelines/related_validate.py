"""validate, for related tables: the gate over the whole set.

- keys, as Great Expectations expectations on every staged row: each primary key unique and never null, each
  foreign key never null and found among the parent table's staged keys (a left join's flag);
- per table, on bounded samples: accuracy, column shapes, column-pair trends of its learned columns against the
  real table's (synthlake.evaluation);
- per child table: the children-per-parent distribution (length similarity), how the parent's columns go with
  its children's aggregates (parent_child_trends, reported) and, for a sequence, each column's coherence
  (consecutive pairs) and the numeric columns' lag-1 autocorrelation, real and synthetic
  (synthlake.evaluation.sequences);
- privacy by entity (synthlake.evaluation.entities): exact copies of a training entity, and dcr_share against the
  entities held out of every model (reported).
Gates: every key expectation; every table's column shapes, and every child table's length similarity and mean
coherence, at least `validate.min_column_shape` (or the dataset's `min_column_shape`); entity exact matches at
most `validate.thresholds.exact_match_share`.
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np

from pipelines.context import StageError
from pipelines.records import RelatedSampleRecord, RelatedVerdict, check
from pipelines.related import RelatedContext
from pipelines.spark import column
from pipelines.validate import GateFailed
from synthlake.evaluation import evaluate
from synthlake.evaluation.sequences import (
    autocorrelation,
    children_per_parent,
    coherence,
    length_similarity,
    parent_child_trends,
)
from synthlake.metadata import ColumnKind, TableMetadata
from synthlake.related_report import Family, render_related_report

FOUND = "__parent_found"  # the staged child row's foreign key is a staged parent key
TABLE_METRICS = ["accuracy", "column_shapes", "column_pair_trends"]


def run(ctx: RelatedContext, spark) -> dict:
    ctx.store.read(RelatedSampleRecord)  # the sample stage ran
    threshold = ctx.dataset.min_column_shape
    threshold = ctx.params.validate_.min_column_shape if threshold is None else threshold
    staged = {t.name: ctx.table_context(t.name).read_partition(spark, "staging").drop("run_id").persist()
              for t in ctx.dataset.tables}
    try:
        if staged[ctx.dataset.relations.root.name].isEmpty():
            raise StageError(f"run {ctx.run_id!r} staged no rows: run the sample stage first")
        checks = key_checks(ctx, staged)
        figures, families = {}, []
        for table in ctx.dataset.tables:
            figures[table.name], table_checks, family = _table_checks(spark, ctx, table.name, staged, threshold)
            checks += table_checks
            families += [family] if family else []
        figures["entities"], entity_checks = _entity_checks(spark, ctx, staged)
        checks += entity_checks
    finally:
        for df in staged.values():
            df.unpersist()
    failed = [c["check"] for c in checks if c["passed"] is False]
    verdict = RelatedVerdict(run_id=ctx.run_id, passed=not failed, failed_checks=failed, checks=checks,
                             validated_at=datetime.now(UTC))
    path = ctx.store.write(verdict)
    ctx.store.write_json("related_figures", figures)
    report = ctx.store.write_text("related_report", render_related_report(
        dataset=ctx.dataset.name, run_id=ctx.run_id, passed=not failed, checks=checks, families=families))
    print(f"[synthlake] validate: report {report}", flush=True)
    if failed:
        raise GateFailed(f"validation failed for run {ctx.run_id!r}: {', '.join(failed)} (see {report})")
    return {"passed": True, "checks": len(checks), "verdict": str(path), "report": str(report)}


# ---- keys -----------------------------------------------------------------------------------------------
def key_checks(ctx: RelatedContext, staged: dict) -> list[dict]:
    """Great Expectations on every staged row of every table: its keys unique, not null, found."""
    checks = []
    for table in ctx.dataset.tables:
        frame, expectations = staged[table.name], []
        if table.primary_key is not None:
            expectations += [("ExpectColumnValuesToBeUnique", table.primary_key, {}),
                             ("ExpectColumnValuesToNotBeNull", table.primary_key, {})]
        if table.owner is not None:
            parent = ctx.dataset.table(table.owner.parent)
            keys = staged[parent.name].select(column(parent.primary_key).alias(FOUND)).distinct()
            frame = _with_found(frame, table, keys)
            expectations += [("ExpectColumnValuesToNotBeNull", table.owner.column, {}),
                             ("ExpectColumnValuesToBeInSet", FOUND, {"value_set": [True]})]
        for result in run_key_expectations(frame, expectations, f"{ctx.run_id}-{table.name}"):
            checks.append(check(f"gx:{result['type']}:{table.name}.{result['column']}", "keys",
                                result["unexpected"], 0, "==", result["success"]))
    return checks


def _with_found(frame, table, parent_keys):
    """`frame` with FOUND: whether its foreign key is among `parent_keys` (one column, FOUND, of keys)."""
    from pyspark.sql import functions as F

    keys = parent_keys.select(column(FOUND).alias("__key")).withColumn(FOUND, F.lit(True))
    joined = frame.join(keys, frame[_quoted(table.owner.column)] == keys["__key"], "left")
    return joined.drop("__key").fillna(False, subset=[FOUND])


def _quoted(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def run_key_expectations(frame, expectations: list[tuple[str, str, dict]], name: str) -> list[dict]:
    """(class in great_expectations.expectations, column, kwargs) expectations on `frame`, run by Great
    Expectations; one dict per expectation: type, column, success, unexpected (count)."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    if not expectations:
        return []
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch = (context.data_sources.add_spark(name="synthlake", persist=False)
             .add_dataframe_asset(name="keys").add_batch_definition_whole_dataframe(name))
    names = sorted({c for _, c, _ in expectations})
    aliases = {c: f"__column_{i}" for i, c in enumerate(names)}  # GX reads a dot as a struct field
    suite = gx.ExpectationSuite(name=f"keys-{name}")
    for kind, col, kwargs in expectations:
        suite.add_expectation(getattr(gx.expectations, kind)(column=aliases[col], **kwargs))
    suite = context.suites.add(suite)
    definition = context.validation_definitions.add(gx.ValidationDefinition(data=batch, suite=suite, name=name))
    data = frame.select(*[column(c).alias(aliases[c]) for c in names])
    result = definition.run(batch_parameters={"dataframe": data},
                            result_format={"result_format": "SUMMARY", "partial_unexpected_count": 0}).to_json_dict()
    by_alias = {a: c for c, a in aliases.items()}
    return [{"type": r["expectation_config"]["type"], "column": by_alias[r["expectation_config"]["kwargs"]["column"]],
             "success": bool(r["success"]), "unexpected": int(r.get("result", {}).get("unexpected_count") or 0)}
            for r in result["results"]]


# ---- fidelity and sequences ------------------------------------------------------------------------------
def _table_checks(spark, ctx: RelatedContext, name: str, staged: dict, threshold: float):
    from pipelines.source import bounded, read_source

    table = ctx.dataset.table(name)
    limit, seed = ctx.params.validate_.max_rows, ctx.params.seed
    real_df = read_source(spark, ctx.dataset.table_dataset(name), check=False)
    real, synthetic = bounded(real_df, limit, seed).toPandas(), bounded(staged[name], limit, seed).toPandas()
    metadata = TableMetadata(columns=table.learned)
    values = evaluate(real, synthetic, metadata, names=TABLE_METRICS, max_rows=limit, seed=seed)
    figures = {m: _number(v) for m, v in values.items()}
    checks = [check(f"{m}:{name}", "fidelity", figures[m], threshold if m == "column_shapes" else None,
                    ">=" if m == "column_shapes" else None,
                    _at_least(figures[m], threshold) if m == "column_shapes" else None) for m in TABLE_METRICS]
    if table.owner is None:
        return figures, checks, None
    parent = ctx.dataset.table(table.owner.parent)
    real_parents, real_children = _families(spark, ctx, table, parent, limit, seed, None)
    syn_parents, syn_children = _families(spark, ctx, table, parent, limit, seed, staged)
    key, pk = table.owner.column, parent.primary_key
    family = Family(name, key, table.order_by, table.learned, children_per_parent(real_parents[pk], real_children[key]),
                    children_per_parent(syn_parents[pk], syn_children[key]), real_children, syn_children)
    figures["children_per_parent"] = length_similarity(family.real_lengths, family.synthetic_lengths)
    checks.append(check(f"children_per_parent:{name}", "sequences", figures["children_per_parent"], threshold,
                        ">=", _at_least(figures["children_per_parent"], threshold)))
    figures["parent_child_trends"] = _number(parent_child_trends(
        (real_parents, real_children), (syn_parents, syn_children), key, pk, table.order_by, parent.learned,
        table.learned))
    checks.append(check(f"parent_child_trends:{name}", "sequences", figures["parent_child_trends"], None, None,
                        None))
    if table.order_by is not None:
        scores = coherence(real_children, syn_children, key, table.order_by, table.learned)
        figures["coherence"] = {c: _number(v) for c, v in scores.items()}
        mean = _number(np.nanmean(list(scores.values())) if scores else float("nan"))
        checks.append(check(f"coherence:{name}", "sequences", mean, threshold, ">=", _at_least(mean, threshold)))
        figures["autocorrelation"] = {
            c.name: {"real": _number(autocorrelation(real_children, key, table.order_by, c.name)),
                     "synthetic": _number(autocorrelation(syn_children, key, table.order_by, c.name))}
            for c in table.learned if c.kind == ColumnKind.NUMERIC}
    return figures, checks, family


def _families(spark, ctx: RelatedContext, table, parent, limit: int, seed: int, staged: dict | None):
    """(parents, their children in `table`) as pandas, real (staged None) or staged: a bounded sample of parents,
    with all of their children."""
    from pipelines.source import bounded

    parents = bounded(_rows(spark, ctx, staged, parent.name), max(1, limit // 10), seed)
    return parents.toPandas(), _under(_rows(spark, ctx, staged, table.name), table, parents, parent).toPandas()


def _rows(spark, ctx: RelatedContext, staged: dict | None, name: str):
    """Table `name`'s rows: the real source (staged None) or the staged partition."""
    from pipelines.source import read_source

    return read_source(spark, ctx.dataset.table_dataset(name), check=False) if staged is None else staged[name]


def _under(children, table, parents, parent):
    """The rows of `children` (table `table`'s) whose foreign key names one of `parents` (table `parent`'s)."""
    keys = parents.select(column(parent.primary_key).alias("__key"))
    return children.join(keys, children[_quoted(table.owner.column)] == keys["__key"], "left_semi")


# ---- privacy by entity ------------------------------------------------------------------------------------
def _entity_checks(spark, ctx: RelatedContext, staged: dict) -> tuple[dict, list[dict]]:
    """Entity-level privacy (synthlake.evaluation.entities) on bounded samples of entities: exact copies of a
    training entity (reported), of one that no other real entity equals (a gate, at the flat exact_match_share
    threshold), and dcr_share against the entities held out of every model (reported: a few hundred entities make
    it too noisy to gate)."""
    from synthlake.evaluation.entities import entity_dcr_share, entity_match_shares
    from synthlake.related_frames import ENTITY, HOLDOUT, with_entities

    relations, limit, seed = ctx.dataset.relations, max(1, ctx.params.validate_.max_rows // 10), ctx.params.seed
    real = with_entities(_entities(spark, ctx, None, limit, seed), relations, ctx.holdout)
    sides = {side: {name: rows[rows[HOLDOUT] == flag].drop(columns=[ENTITY, HOLDOUT])
                    for name, rows in real.items()} for side, flag in (("train", "false"), ("holdout", "true"))}
    synthetic = _entities(spark, ctx, staged, limit, seed)
    train, holdout = sides["train"], sides["holdout"]
    shares = entity_match_shares(relations, train, holdout, synthetic)
    figures = {name: _number(value) for name, value in shares.items()}
    figures["entity_dcr_share"] = _number(entity_dcr_share(relations, train, holdout, synthetic, seed))
    most = ctx.params.validate_.thresholds.get("exact_match_share")
    unique = figures["entity_unique_match_share"]
    checks = [check("entity_exact_match_share", "privacy", figures["entity_exact_match_share"], None, None, None),
              check("entity_unique_match_share", "privacy", unique, most, "<=",
                    None if most is None else unique is not None and unique <= most),
              check("entity_dcr_share", "privacy", figures["entity_dcr_share"], None, None, None)]
    return figures, checks


def _entities(spark, ctx: RelatedContext, staged: dict | None, limit: int, seed: int) -> dict:
    """A bounded sample of root rows with all of their descendants, real (staged None) or staged, as pandas."""
    from pipelines.source import bounded

    relations = ctx.dataset.relations
    kept = {relations.root.name: bounded(_rows(spark, ctx, staged, relations.root.name), limit, seed)}
    for name in relations.parents_first()[1:]:
        table = relations.table(name)
        parent = relations.table(table.owner.parent)
        kept[name] = _under(_rows(spark, ctx, staged, name), table, kept[parent.name], parent)
    return {name: df.toPandas() for name, df in kept.items()}


def _at_least(value: float | None, threshold: float) -> bool:
    return value is not None and value >= threshold


def _number(value) -> float | None:
    value = float(value)
    return None if np.isnan(value) else value

