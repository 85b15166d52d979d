"""Draft a config of related tables from several sources (`synthlake infer-config A B ...`, or a folder of them):
each table's column kinds as for one table (synthlake.inference), then, over every row, with Spark:

- a primary key: the first text or integer column whose values are unique and never null (a name like `id`,
  `*_id` or `key` first);
- foreign keys (inclusion dependencies): a text or integer column of one table, named as another table's primary
  key or as that table, whose non-null values are, for at least FK_COVERAGE of them, that table's key values; a
  table keeps one, its parent (of those, the largest table: a lookup such as `stores` is small), the others are
  written as comments (a second parent is not supported yet);
- an order for a child: a datetime column, else an integer one, that increases within most of its parents;
  then its `steps`: the numeric and datetime columns whose step from the previous row varies less than
  STEP_SPREAD times the column does (they move a little each row, as a storm's position does).
The root is the table with no parent that has the most tables under it; tables outside its tree are left out of
the draft, with a comment. Each choice is written with its evidence as a YAML comment.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from pipelines.config import RelatedDatasetConfig, load_env, project_root, resolve
from pipelines.context import StageError
from pipelines.source import guess_format, load_table
from pipelines.spark import column
from synthlake.inference import infer_columns

FK_COVERAGE = 0.95  # share of a column's non-null values found among the parent's keys
ORDER_SHARE = 0.95  # share of parents whose children's order column never decreases in the source's order
# a column is stepped where stddev(step from the previous row) < STEP_SPREAD * stddev(column): a storm's position
# (0.07) is, its wind (0.23) is not, as a drawn step's error adds up over a sequence (storms' observations accuracy
# 0.868 with lat and long stepped, 0.844 with wind, pressure and the diameters too: README, Related tables benchmark)
STEP_SPREAD = 0.1
_KEY_NAME = re.compile(r"(?i)(^|_)(id|key)$")


def infer_related_config(sources: list[str], name: str, output: str | None = None, sample_rows: int = 10_000,
                         force: bool = False, env_name: str | None = None) -> Path:
    from pipelines.spark import get_spark

    out = Path(output) if output else project_root() / "conf" / "datasets" / f"{name}.yaml"
    if out.exists() and not force:
        raise StageError(f"{out} exists; pass --force to overwrite it or --output to write elsewhere")
    spark = get_spark(load_env(env_name), app_name=f"synthlake-infer-{name}")
    tables = {_table_name(s): _read(spark, s) for s in _expand(sources)}
    if len(tables) < 2:
        raise StageError(f"{sources}: related tables need two sources or more (one table: pass one source)")
    notes: list[str] = []
    keys = {t: _primary_key(df, columns, notes, t) for t, (df, columns, _) in tables.items()}
    parents = _foreign_keys(tables, keys, notes)
    root = _root(tables, parents, notes)
    kept = _tree(root, parents)
    config = {"name": name, "tables": [_table_config(t, tables[t], keys[t], parents.get(t), notes) for t in kept]}
    for left_out in [t for t in tables if t not in kept]:
        notes.append(f"table '{left_out}' left out: it is not under the root table '{root}'")
    text = (f"# Drafted by `synthlake infer-config` from {len(tables)} sources. Review the kinds, keys and order.\n"
            + "".join(f"# {n}\n" for n in notes) + yaml.safe_dump(config, sort_keys=False, width=110))
    RelatedDatasetConfig.model_validate(yaml.safe_load(text))  # the draft loads as it is
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    return out


def _expand(sources: list[str]) -> list[str]:
    """The sources, a folder standing for the tables in it (its files, and its Delta tables' folders)."""
    found = []
    for source in sources:
        path = Path(resolve(source))
        if path.is_dir() and not (path / "_delta_log").is_dir():
            found += sorted(str(p) for p in path.iterdir() if p.suffix in (".csv", ".parquet")
                            or (p / "_delta_log").is_dir())
        else:
            found.append(source)
    return found


def _table_name(source: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9_]", "_", Path(source.rstrip("/")).stem) or "table"
    return stem if stem[0].isalpha() else f"t_{stem}"


def _read(spark, source: str):
    """(DataFrame, inferred ColumnSpecs, source config) of one source."""
    fmt = guess_format(source)
    options = {"header": "true", "inferSchema": "true"} if fmt == "csv" else {}
    df = load_table(spark, fmt, resolve(source), options, source)
    options.pop("inferSchema", None)
    columns = infer_columns(df.limit(10_000).toPandas())
    return df, columns, {"path": _relative(source), "format": fmt, "options": options}


def _key_like(df, name: str) -> bool:
    return df.schema[name].dataType.simpleString() in ("string", "int", "bigint", "smallint")


def _primary_key(df, columns, notes: list[str], table: str) -> str | None:
    from pyspark.sql import functions as F

    candidates = sorted((c.name for c in columns if _key_like(df, c.name)),
                        key=lambda n: not _KEY_NAME.search(n))
    rows = df.count()
    for name in candidates:
        found = df.agg(F.count_distinct(column(name)).alias("d"), F.count(column(name)).alias("n")).first()
        if found["d"] == rows and found["n"] == rows:
            notes.append(f"table '{table}': primary_key '{name}': {rows} rows, {rows} distinct values, no null")
            return name
    notes.append(f"table '{table}': no primary key (no text or integer column unique and never null)")
    return None


def _foreign_keys(tables: dict, keys: dict, notes: list[str]) -> dict[str, tuple[str, str, float]]:
    """table -> (column, parent, coverage) of its best covered inclusion dependency."""
    best: dict[str, tuple[str, str, float]] = {}
    sizes = {t: df.count() for t, (df, _, _) in tables.items()}
    for child, (df, columns, _) in tables.items():
        found = []
        for parent, key in keys.items():
            if parent == child or key is None:
                continue
            parent_keys = tables[parent][0].select(column(key).cast("string").alias("__key")).distinct()
            for c in columns:
                if c.name == keys[child] or not _key_like(df, c.name) or not _names_key(c.name, parent, key):
                    continue
                share = _coverage(df, c.name, parent_keys)
                if share is not None and share >= FK_COVERAGE:
                    found.append((c.name, parent, share))
        # a lookup (stores, airlines) is small; the owner, the entity the rows belong to, the largest
        found.sort(key=lambda f: -sizes[f[1]])
        if found:
            best[child] = found[0]
            notes.append(f"table '{child}': foreign key '{found[0][0]}' -> '{found[0][1]}' ({found[0][2]:.1%} of "
                         "its non-null values are keys there)")
        for c, parent, share in found[1:]:
            notes.append(f"table '{child}': '{c}' also references '{parent}' ({share:.1%}); one parent per table "
                         "is supported: left out")
    return best


def _names_key(name: str, parent: str, key: str) -> bool:
    """A column named as the parent's key, or as the parent (`storm_id`, `storm`, `storms_key` for `storms`):
    values alone would match any small integers to an integer key."""
    name, parent, key = name.lower(), parent.lower(), key.lower()
    return name == key or name.removesuffix("_id").removesuffix("_key") in (parent, parent.removesuffix("s"))


def _coverage(df, name: str, parent_keys) -> float | None:
    values = df.select(column(name).cast("string").alias("__key")).where("__key IS NOT NULL").distinct()
    total = values.count()
    if not total:
        return None
    return values.join(parent_keys, "__key", "left_semi").count() / total


def _root(tables: dict, parents: dict, notes: list[str]) -> str:
    roots = [t for t in tables if t not in parents]
    if not roots:
        raise StageError(f"tables {list(tables)}: every one references another; no root table to start from")
    root = max(roots, key=lambda r: len(_tree(r, parents)))
    notes.append(f"root table '{root}' (no foreign key; {len(_tree(root, parents)) - 1} tables under it)")
    return root


def _tree(root: str, parents: dict) -> list[str]:
    """`root` and the tables under it, parents first."""
    order, frontier = [root], [root]
    while frontier:
        frontier = [t for t, (_, p, _) in parents.items() if p in frontier and t not in order]
        order += frontier
    return order


def _table_config(name: str, table, key: str | None, parent: tuple | None, notes: list[str]) -> dict:
    df, columns, source = table
    keyed = {key} | ({parent[0]} if parent else set())
    specs = [{"name": c.name, "kind": "identifier"} if c.name in keyed else
             c.model_dump(mode="json", exclude_defaults=True) for c in columns]
    config = {"name": name, "source": source, "primary_key": key}
    if parent:
        config["foreign_keys"] = [{"column": parent[0], "parent": parent[1]}]
        order = _order(df, columns, parent[0], notes, name)
        if order:
            config["order_by"] = order
            config["steps"] = _steps(df, [c for c in columns if c.name not in keyed], parent[0], order, notes, name)
    return {**{k: v for k, v in config.items() if v is not None}, "columns": specs}


def _order(df, columns, fk: str, notes: list[str], table: str) -> str | None:
    """A datetime, else integer, column that never decreases within ORDER_SHARE of the parents (source order)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    kinds = {"datetime": 0, "numeric": 1}
    candidates = sorted((c for c in columns if c.kind.value in kinds and c.name != fk
                         and (c.kind.value == "datetime" or c.integer)), key=lambda c: kinds[c.kind.value])
    ordered = df.withColumn("__row", F.monotonically_increasing_id())
    within = Window.partitionBy(column(fk)).orderBy("__row")
    for c in candidates:
        steps = ordered.withColumn("__back", column(c.name) < F.lag(column(c.name)).over(within))
        per_parent = steps.groupBy(column(fk)).agg(F.max(F.col("__back").cast("int")).alias("back"),
                                                    F.count_distinct(column(c.name)).alias("values"))
        never_back = (F.coalesce(F.col("back"), F.lit(0)) == 0).cast("double")
        found = per_parent.agg(F.avg(never_back).alias("share"), F.max("values").alias("most")).first()
        if found["most"] and found["most"] > 1 and found["share"] >= ORDER_SHARE:
            notes.append(f"table '{table}': order_by '{c.name}' (never decreases within {found['share']:.1%} of "
                         f"the '{fk}' groups, in the source's row order)")
            return c.name
    return None


def _steps(df, columns, fk: str, order: str, notes: list[str], table: str) -> list[str]:
    """Of `columns` (the keys left out), the numeric and datetime ones (but the order) whose step from the previous
    row, in `order` within each `fk` group, is small beside the column's own spread."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    names = [c.name for c in columns if c.kind.value in ("numeric", "datetime") and c.name != order]
    if not names:
        return []
    kinds = {c.name: c.kind.value for c in columns}
    numbers = [(column(n).cast("timestamp") if kinds[n] == "datetime" else column(n)).cast("double") for n in names]
    within = Window.partitionBy(column(fk)).orderBy(column(order))
    rows = df.select(*[x.alias(f"c{i}") for i, x in enumerate(numbers)],
                     *[(x - F.lag(x).over(within)).alias(f"s{i}") for i, x in enumerate(numbers)])
    spreads = rows.agg(*[F.stddev(c).alias(c) for c in rows.columns]).first()
    steps = []
    for i, name in enumerate(names):
        spread, step = spreads[f"c{i}"], spreads[f"s{i}"]
        if spread and step is not None and step < STEP_SPREAD * spread:
            steps.append(name)
            notes.append(f"table '{table}': steps '{name}' (its step from the previous row varies "
                         f"{step / spread:.2f} times as much as it does)")
    return steps


def _relative(source: str) -> str:
    try:
        return str(Path(resolve(source)).relative_to(project_root()))
    except ValueError:
        return source
