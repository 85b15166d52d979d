"""Bad input, fuzzed: awkward source tables through `synthlake infer-config` and `synthlake run`, in one process
(one JVM). Each case ends in a published table, or in exit 2 (bad config) or 3 (refused) with one line naming the
column, file or setting: never a traceback, never a table left behind.
"""

from __future__ import annotations

import contextlib
import decimal
import io

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from project_fixture import make_project, spark_session

from jobs.cli import main

pytestmark = pytest.mark.slow
ROWS = 300
NESTED = ["tags", "info", "attrs"]
# plain columns besides the awkward ones: past 100 (MLflow's batch of params, Spark's whole-stage codegen fields),
# and the column-pair metrics grow with its square (200 took about 10 minutes of a 2-core CI run)
WIDE = 110


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = make_project(tmp_path_factory.mktemp("bad-input"), params={
        "rows": ROWS, "sample": {"partitions": 2, "block_rows": 150}, "train": {"max_attempts": 1}})
    (root / "src").mkdir()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SYNTHLAKE_HOME", str(root))
        mp.chdir(root)
        yield root


@pytest.fixture(scope="module")
def spark(project):
    session = spark_session("synthlake-bad-input-tests")
    yield session
    session.stop()


def cli(*argv: str) -> tuple[int, list[str]]:
    """`synthlake ARGV` in this process: its exit code and the lines it wrote to stderr."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(list(argv))
    lines = [line for line in err.getvalue().splitlines() if line.strip()]
    assert not any("Traceback" in line for line in lines), "\n".join(lines)
    return code, lines


def assert_refused(result: tuple[int, list[str]], code: int, *words: str) -> None:
    """Exit `code` with exactly one error line holding each of `words`."""
    rc, lines = result
    errors = [line for line in lines if line.startswith("error:")]
    assert rc == code and len(errors) == 1, (rc, lines)
    for word in words:
        assert word in errors[0], errors[0]


def awkward_table(rng) -> pa.Table:
    """Every kind of awkward column at once, WIDE plain columns besides: names Spark, Delta, GX and MLflow each
    read specially, non-finite and all-null numbers, decimals, booleans, integers past 2**53, time zones,
    nanosecond timestamps (pandas' default), and nested types."""
    n = ROWS * 2
    noisy = rng.normal(size=n)
    noisy[rng.random(n) < 0.1] = np.nan
    noisy[rng.random(n) < 0.05] = np.inf
    noisy[rng.random(n) < 0.05] = -np.inf
    columns = {
        "straße ü": rng.integers(0, 90, n), "a.b": rng.choice(["x", "y", "z"], n), "back`tick": rng.integers(0, 9, n),
        "select": rng.choice(["p", "q"], n), "it's \"quoted\"": rng.integers(0, 7, n), "from": noisy,
        " padded": rng.choice(["k", "l", "m"], n), "all null": pa.array([None] * n, pa.float64()),
        "constant": [5] * n,
        "price": pa.array([decimal.Decimal(f"{x:.2f}") for x in rng.uniform(0, 999, n)], pa.decimal128(10, 2)),
        "flag": rng.random(n) < 0.3, "big": (2**60 + rng.integers(0, 10_000, n)).astype(np.int64),
        "seen at": pa.array(pd.date_range("2024-03-30", periods=n, freq="37min", tz="Europe/Paris")),
        "logged": pa.array(pd.date_range("2024-01-01", periods=n, freq="h").values),  # datetime64[ns]
        "tags": [[1, 2]] * n, "info": [{"x": 1, "y": "a"}] * n,
        "attrs": pa.array([[("k", 1)]] * n, pa.map_(pa.string(), pa.int64())),
        **{f"f{i}": rng.normal(size=n) if i % 2 else rng.choice(["u", "v"], n) for i in range(WIDE)},
    }
    table = pa.table(columns)
    assert table.schema.field("logged").type == pa.timestamp("ns")
    return table


def test_an_awkward_table_is_inferred_and_published_with_its_names(project, spark):
    pq.write_table(awkward_table(np.random.default_rng(3)), project / "src" / "awkward.parquet")
    config = project / "conf" / "datasets" / "awkward.yaml"
    assert cli("infer-config", "src/awkward.parquet", "--name", "awkward", "--output", str(config))[0] == 0
    text = config.read_text()
    for name in NESTED:
        assert f"# Left out: column {name!r}" in text
    kinds = {c["name"]: c["kind"] for c in yaml.safe_load(text)["columns"]}
    flat = [n for n in awkward_table(np.random.default_rng(0)).column_names if n not in NESTED]
    assert list(kinds) == flat
    assert kinds["price"] == "numeric" and kinds["logged"] == "datetime" and kinds["seen at"] == "datetime"

    rc, lines = cli("run", str(config), "--run-id", "awkward-1")
    assert rc == 0, lines
    published = spark.read.format("delta").load(str(project / "var" / "lake" / "awkward"))
    assert published.columns == [*flat, "run_id"] and published.count() == ROWS
    types = dict(published.dtypes)
    assert types["logged"] == "timestamp" and types["seen at"] == "timestamp" and types["big"] == "bigint"
    assert published.where("isnan(`from`) OR abs(`from`) = double('inf')").count() == 0  # read as missing
    detail = spark.sql(f"DESCRIBE DETAIL delta.`{project / 'var' / 'lake' / 'awkward'}`").first()
    assert detail["properties"]["delta.columnMapping.mode"] == "name"  # Delta refuses spaces otherwise


def test_free_text_is_inferred_as_faked_text_not_learned(project, spark):
    rng = np.random.default_rng(5)
    pd.DataFrame({"amount": rng.integers(0, 100, 100_000),
                  "comment": [f"note {i} {rng.integers(10**9)}" for i in range(100_000)]}
                 ).to_parquet(project / "src" / "notes.parquet")
    out = project / "conf" / "datasets" / "notes.yaml"
    assert cli("infer-config", "src/notes.parquet", "--no-rules", "--output", str(out))[0] == 0
    columns = {c["name"]: c for c in yaml.safe_load(out.read_text())["columns"]}
    assert columns["comment"]["kind"] == "pii" and columns["comment"]["pii"] == "text"


def _write_sources(src):
    pq.write_table(pa.table({"a": pa.array([], pa.int64()), "b": pa.array([], pa.string())}), src / "empty.parquet")
    (src / "header_only.csv").write_text("a,b\n")
    (src / "corrupt.parquet").write_bytes(b"PAR1 but no footer")
    (src / "twice.csv").write_text("a,b,A\n" + "".join(f"{i},x,{i}\n" for i in range(50)))
    pq.write_table(pa.table({"tags": [[1, 2]] * 5}), src / "nested_only.parquet")


@pytest.mark.parametrize(("source", "words"), [
    ("empty.parquet", ["empty.parquet", "no rows"]),
    ("header_only.csv", ["header_only.csv", "no rows"]),
    ("missing.parquet", ["missing.parquet", "does not exist"]),
    ("corrupt.parquet", ["corrupt.parquet", "cannot read"]),
    ("twice.csv", ["twice.csv", "'A' twice"]),
    ("nested_only.parquet", ["nested_only.parquet", "no flat columns"]),
])
def test_infer_config_refuses_a_source_it_cannot_learn_naming_it(project, spark, source, words):
    _write_sources(project / "src")
    out = project / "conf" / "datasets" / "refused.yaml"
    assert_refused(cli("infer-config", f"src/{source}", "--output", str(out)), 3, *words)
    assert not out.exists()


def _config(project, name: str, source: str, fmt: str, columns: list[dict]) -> str:
    options = {"header": "true"} if fmt == "csv" else {}
    config = {"name": name, "source": {"path": source, "format": fmt, "options": options}, "columns": columns,
              "output": {"staging": f"{name}_staging", "published": name}}
    path = project / "conf" / "datasets" / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return str(path)


NUMBER, WORD = {"name": "a", "kind": "numeric"}, {"name": "b", "kind": "categorical"}


@pytest.mark.parametrize(("case", "code", "words"), [
    ("one_row", 3, ["'bad_one_row'", "too small"]),
    ("nested", 2, ["'tags'", "array<bigint>", "flat columns"]),
    ("mixed", 3, ["column 'a'", "numeric", "'abc'"]),
    ("twice", 3, ["twice.csv", "'A' twice"]),
    ("gone", 3, ["gone.parquet", "does not exist"]),
])
def test_a_run_refuses_a_bad_source_and_leaves_no_table(project, spark, case, code, words):
    src = project / "src"
    _write_sources(src)
    pq.write_table(pa.table({"a": [1.0], "b": ["x"]}), src / "one_row.parquet")
    pq.write_table(pa.table({"a": [1.0] * 20, "b": ["x"] * 20, "tags": [[1, 2]] * 20}), src / "nested.parquet")
    (src / "mixed.csv").write_text("a,b\n" + "".join(f"{i if i % 7 else 'abc'},x\n" for i in range(1, 60)))
    sources = {"one_row": ("src/one_row.parquet", "parquet", [NUMBER, WORD]),
               "nested": ("src/nested.parquet", "parquet", [NUMBER, {"name": "tags", "kind": "categorical"}]),
               "mixed": ("src/mixed.csv", "csv", [NUMBER, WORD]),
               "twice": ("src/twice.csv", "csv", [NUMBER, WORD]),
               "gone": ("src/gone.parquet", "parquet", [NUMBER, WORD])}
    name = f"bad_{case}"
    assert_refused(cli("run", _config(project, name, *sources[case]), "--run-id", f"{name}-1"), code, *words)
    lake = project / "var" / "lake"
    assert not (lake / name).exists() and not (lake / f"{name}_staging").exists()


def test_nanosecond_timestamps_are_read_floored_to_the_microsecond(project, spark):
    from pipelines.source import load_table

    stamps = pd.Series(pd.to_datetime(["2024-05-01 12:34:56.123456789", "1969-12-31 23:59:59.999999999",
                                       "2262-04-11 23:47:16.854775807"]))
    pd.DataFrame({"at": stamps}).to_parquet(project / "src" / "stamps.parquet")  # datetime64[ns]
    read = load_table(spark, "parquet", str(project / "src" / "stamps.parquet"), {}, "stamps").toPandas()["at"]
    assert list(read) == list(stamps.dt.floor("us"))
