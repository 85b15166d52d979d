"""pipelines.delta_files: Parquet written with pyarrow, committed to Delta with delta-rs (no Spark here; the
stage tests read the same tables with Spark)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from deltalake import DeltaTable

from pipelines import delta_files
from pipelines.context import StageError

SCHEMA = pa.schema([("x", pa.int64()), ("y", pa.float64()), ("c", pa.string()), ("run_id", pa.string())])


def batches(rows: int, run_id: str, seed: int = 0, size: int = 250):
    rng = np.random.default_rng(seed)
    for start in range(0, rows, size):
        n = min(size, rows - start)
        y = rng.normal(size=n)
        c = np.where(rng.random(n) < 0.1, None, rng.choice(["a", "b"], n)).tolist()
        yield pa.record_batch([pa.array(np.arange(start, start + n)), pa.array(y), pa.array(c, pa.string()),
                               pa.array([run_id] * n)], schema=SCHEMA)


def write(table: str, rows: int, run_id: str, seed: int = 0, fail_after: int | None = None) -> None:
    def sample(_):
        for i, batch in enumerate(batches(rows, run_id, seed)):
            if fail_after is not None and i == fail_after:
                raise RuntimeError("executor lost")
            yield batch

    out = list(delta_files.file_writer(sample, table, ("run_id", run_id))(iter([])))
    delta_files.commit(table, pa.Table.from_batches(out).to_pylist(), SCHEMA, ("run_id", run_id))


def partition(table: str, run_id: str):
    return DeltaTable(table).to_pyarrow_table(filters=[("run_id", "=", run_id)]).sort_by("x")


def test_files_are_committed_with_their_statistics(tmp_path, monkeypatch):
    monkeypatch.setattr(delta_files, "FILE_ROWS", 1000)
    monkeypatch.setattr(delta_files, "ROW_GROUP_ROWS", 300)
    table = str(tmp_path / "t")
    write(table, 2600, "run:1+a")
    got = partition(table, "run:1+a")
    expected = pa.Table.from_batches(list(batches(2600, "run:1+a")))
    assert got.select(["x", "y", "c"]).equals(expected.select(["x", "y", "c"]))
    actions = pa.table(DeltaTable(table).get_add_actions(flatten=True)).to_pylist()
    assert sorted(a["num_records"] for a in actions) == [600, 1000, 1000]  # files roll over at FILE_ROWS
    for action in actions:
        assert action["path"].startswith("run_id=run_1_a/")  # ':' and '+' kept out of folder names
        assert action["partition.run_id"] == "run:1+a"
        rows = got.filter(pa.compute.and_(pa.compute.greater_equal(got["x"], action["min.x"]),
                                          pa.compute.less_equal(got["x"], action["max.x"])))
        assert rows.num_rows == action["num_records"]  # x runs 0..2599 in order: bounds select exactly a file
        assert action["null_count.c"] == rows["c"].null_count
        assert action["min.y"] == pytest.approx(min(rows["y"].to_pylist()))


def test_a_rewrite_replaces_its_partition_only(tmp_path):
    table = str(tmp_path / "t")
    write(table, 900, "a")
    write(table, 400, "b")
    write(table, 300, "a", seed=5)  # a retry of run a with other rows
    assert partition(table, "a").num_rows == 300
    assert partition(table, "a")["y"].to_pylist() == pa.Table.from_batches(list(batches(300, "a", 5)))["y"].to_pylist()
    assert partition(table, "b").num_rows == 400
    assert DeltaTable(table).version() == 2


def test_a_failed_task_leaves_no_file_and_no_rows(tmp_path):
    table = str(tmp_path / "t")
    write(table, 500, "a")
    with pytest.raises(RuntimeError, match="executor lost"):
        write(table, 900, "b", fail_after=2)
    assert not list(Path(table).glob("run_id=b/*"))
    assert DeltaTable(table).version() == 0 and partition(table, "a").num_rows == 500


def test_a_table_with_other_columns_is_refused_by_name(tmp_path):
    table = str(tmp_path / "t")
    write(table, 100, "a")
    other = pa.schema([("x", pa.string()), ("run_id", pa.string())])
    with pytest.raises(StageError, match=r"holds columns \[x long, y double, c string, run_id string\]"):
        delta_files.commit(table, [], other, ("run_id", "b"))
    assert DeltaTable(table).version() == 0


def test_nan_gives_a_file_no_bounds(tmp_path):
    table = str(tmp_path / "t")
    nan = pa.record_batch([pa.array([1, 2]), pa.array([0.5, float("nan")]), pa.array(["a", "b"]),
                           pa.array(["r", "r"])], schema=SCHEMA)
    out = list(delta_files.file_writer(lambda _: iter([nan]), table, ("run_id", "r"))(iter([])))
    stats = json.loads(out[0].column("stats")[0].as_py())
    assert "y" not in stats["minValues"] and stats["minValues"]["x"] == 1 and stats["numRecords"] == 2
