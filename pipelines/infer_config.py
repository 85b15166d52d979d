"""Draft a dataset config from any CSV, Parquet or Delta source: column kinds inferred from a sample, business
rules discovered over every row (pipelines.rule_discovery), each with its evidence as a YAML comment."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from pipelines.config import DatasetConfig, load_env, load_params, project_root, resolve
from pipelines.context import StageError
from pipelines.source import guess_format, is_flat, load_table
from pipelines.spark import column
from synthlake.inference import infer_columns


def infer_config(source: str, fmt: str | None = None, name: str | None = None, output: str | None = None,
                 header: bool = True, sample_rows: int = 10_000, force: bool = False,
                 env_name: str | None = None, rules: bool = True) -> Path:
    """Writes the draft config and returns its path; `rules`: discover business rules over the whole source."""
    from pipelines.rule_discovery import discover
    from pipelines.source import read_source
    from pipelines.spark import get_spark
    from synthlake.rule_discovery import rules_yaml

    fmt = fmt or guess_format(source)
    name = name or re.sub(r"[^A-Za-z0-9_-]", "_", Path(source.rstrip("/")).stem) or "dataset"
    if not name[0].isalpha():
        name = f"t_{name}"
    out = Path(output) if output else project_root() / "conf" / "datasets" / f"{name}.yaml"
    if out.exists() and not force:
        raise StageError(f"{out} exists; pass --force to overwrite it or --output to write elsewhere")
    options = {"header": str(header).lower()} if fmt == "csv" else {}
    spark = get_spark(load_env(env_name), app_name=f"synthlake-infer-{name}")
    if fmt == "csv":
        options["inferSchema"] = "true"
    table = load_table(spark, fmt, resolve(source), options, source)
    options.pop("inferSchema", None)
    flat, nested = _flat_columns(table)
    if not flat:
        raise StageError(f"{source} has no flat columns to learn (all are arrays, structs or maps)")
    sample = table.select(flat).limit(sample_rows).toPandas()
    if sample.empty:
        raise StageError(f"{source} has no rows to infer column kinds from")
    if fmt == "csv" and not header:
        sample.columns = [f"col_{i}" for i in range(len(sample.columns))]
    columns = [c.model_dump(mode="json", exclude_defaults=True) for c in infer_columns(sample)]
    config = {
        "name": name,
        "source": {"path": _relative(source), "format": fmt, "options": options},
        "target": None,
        "generator": "tabular_ar",
        "columns": columns,
        "output": {"staging": f"{name}_staging", "published": name, "audit": "synthlake_audit"},
    }
    dataset = DatasetConfig.model_validate(config)
    rules_text = ""
    if rules:
        share = load_params().train.max_rule_violations
        discovery, rows = discover(read_source(spark, dataset, check=False), dataset.metadata, sample_rows,
                                   share)
        rules_text = rules_yaml(discovery, rows, share)
    output_part = {"output": config.pop("output")}
    text = (f"# Drafted by `synthlake infer-config` from {source} (column kinds from {len(sample)} rows).\n"
            "# Review the column kinds and the rules; set `target:` to the column models will predict.\n"
            + "".join(f"# Left out: column {n!r} is {t}; synthlake learns flat columns.\n" for n, t in nested)
            + yaml.safe_dump(config, sort_keys=False, width=110) + rules_text
            + yaml.safe_dump(output_part, sort_keys=False, width=110))
    DatasetConfig.model_validate(yaml.safe_load(text))  # the draft must load as it is, rules and all
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    return out


def _flat_columns(table):
    """The columns to learn, decimals as doubles (pandas would hold them as objects, read as categories), and
    the nested ones left out, (name, type) each."""
    from pyspark.sql import types as T

    flat, nested = [], []
    for field in table.schema.fields:
        if not is_flat(field.dataType):
            nested.append((field.name, field.dataType.simpleString()))
        elif isinstance(field.dataType, T.DecimalType):
            flat.append(column(field.name).cast("double").alias(field.name))
        else:
            flat.append(column(field.name))
    return flat, nested


def _relative(source: str) -> str:
    try:
        return str(Path(resolve(source)).relative_to(project_root()))
    except ValueError:
        return source
