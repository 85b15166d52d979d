"""`synthlake stream` through restarts: a kill -9 mid-stream, and a crash between a batch's Delta commit and the
checkpoint's commit (the checkpoint left as such a crash leaves it). After each restart the table must hold
every micro-batch once, with its own rows, and identifiers that go on.

The champion is a tiny copula registered without Spark (champion_fixture); each `synthlake stream` is a real
subprocess with its own Spark session, so the module starts Spark three times.
"""

from __future__ import annotations

import subprocess
import time

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from champion_fixture import register, write_config
from project_fixture import VENV_BIN, make_project, project_env

ROWS_PER_SECOND, BATCH_SECONDS = 500, 0.5
BATCH_ROWS = 250  # three seeded blocks per batch: the project's block_rows is 100


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = make_project(tmp_path_factory.mktemp("stream"))
    write_config(root, "flow")
    write_config(root, "unpublished")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SYNTHLAKE_HOME", str(root))
        register(root, "flow", start=0)
        yield root


def stream_command(dataset: str, *args: str) -> list[str]:
    return [str(VENV_BIN / "synthlake"), "stream", f"conf/datasets/{dataset}.yaml", *args]


def stream(project, *args: str, dataset: str = "flow", timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(stream_command(dataset, "--rows-per-second", str(ROWS_PER_SECOND), "--batch-seconds",
                                         str(BATCH_SECONDS), *args),
                          cwd=project, env=project_env(project), capture_output=True, text=True, timeout=timeout)


def table(project) -> pa.Table:
    from deltalake import DeltaTable

    return DeltaTable(str(project / "var/lake/flow_stream")).to_pyarrow_table()


def batch_ids(project) -> list[int]:
    return sorted(set(table(project).column("batch_id").to_pylist()))


def assert_every_batch_once(project, batches: int) -> pa.Table:
    rows = table(project)
    counts = rows.group_by("batch_id").aggregate([("id", "count")]).to_pydict()
    assert dict(zip(counts["batch_id"], counts["id_count"], strict=True)) == dict.fromkeys(range(batches), BATCH_ROWS)
    assert sorted(int(i) for i in rows.column("id").to_pylist()) == list(range(batches * BATCH_ROWS))
    return rows


def crash_after_delta_commit(project) -> int:
    """Leave the checkpoint as a crash right after the last batch's Delta commit would: that batch's commit
    file gone, and no later batch planned (a stop may have planned one). Return the batch to be replayed."""
    checkpoint = project / "var/streams/flow/checkpoint"
    last = max(batch_ids(project))
    assert (checkpoint / "commits" / str(last)).exists()
    doomed = [checkpoint / "commits" / str(last)]
    doomed += [p for p in (checkpoint / "offsets").iterdir() if p.name.isdigit() and int(p.name) > last]
    for path in doomed:  # with Hadoop's checksum file beside it
        path.unlink()
        path.with_name(f".{path.name}.crc").unlink(missing_ok=True)
    return last


def test_batches_survive_a_kill_and_a_lost_commit(project):
    # kill -9 while batches are being written, then restart: it goes on from the next batch.
    proc = subprocess.Popen(stream_command("flow", "--rows-per-second", str(ROWS_PER_SECOND), "--batch-seconds",
                                           str(BATCH_SECONDS)),
                            cwd=project, env=project_env(project), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 180
        first_commit = project / "var/lake/flow_stream/_delta_log/00000000000000000000.json"
        while not first_commit.exists() or len(batch_ids(project)) < 3:
            assert proc.poll() is None, "the stream exited by itself"
            assert time.monotonic() < deadline, "no 3 batches in 180 s"
            time.sleep(0.2)
    finally:
        proc.kill()
        proc.wait()
    killed_at = max(batch_ids(project))
    resumed = stream(project, "--max-batches", "2")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "stopped after 2 micro-batches" in resumed.stdout
    assert max(batch_ids(project)) >= killed_at + 1
    assert_every_batch_once(project, max(batch_ids(project)) + 1)

    # A crash after a batch's Delta commit, before the checkpoint recorded it: Spark replays that batch.
    replay = crash_after_delta_commit(project)
    replayed = stream(project, "--max-batches", "2")
    assert replayed.returncode == 0, replayed.stderr[-3000:]
    assert f"batch {replay}," in replayed.stdout  # replayed, and skipped by Delta: its rows are there once
    rows = assert_every_batch_once(project, max(batch_ids(project)) + 1)
    assert max(batch_ids(project)) == replay + 1
    assert set(rows.column("model_version").to_pylist()) == {"1"}


def test_a_batch_holds_the_models_seeded_blocks(project):
    """Batch 1 is blocks 3, 4 and 5 of the layout: each seeded from (seed, block) and numbered from its row."""
    from pipelines.config import load_env
    from pipelines.stream import champion_files
    from synthlake.generators import load_sampler
    from synthlake.seeding import BlockLayout, block_seed

    if not (project / "var/lake/flow_stream").exists():  # this test run alone
        assert stream(project, "--max-batches", "2").returncode == 0
    _, files = champion_files(load_env("local"), "flow")
    folder = project / "sampler"
    folder.mkdir(exist_ok=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    sampler, layout = load_sampler(folder), BlockLayout(BATCH_ROWS, 100)
    expected = pa.concat_tables(
        sampler.sample_arrow(100, seed=block_seed(7, b), row_offset=layout.row_offset(b)).slice(0, layout.size(b))
        for b in layout.blocks(1))
    got = table(project).filter(pc.field("batch_id") == 1).select(expected.column_names).sort_by("id")
    assert got.column("id").to_pylist() == [str(i) for i in range(BATCH_ROWS, 2 * BATCH_ROWS)]
    assert got.equals(expected.sort_by("id").cast(got.schema))


def test_a_restart_with_other_settings_is_refused(project):
    """Fewer rows per batch would number batch b's rows from b x 100: identifiers already written."""
    if not (project / "var/streams/flow/settings.json").exists():  # this test run alone
        assert stream(project, "--max-batches", "1").returncode == 0
    done = stream(project, "--max-batches", "1", "--batch-seconds", "0.2")
    assert done.returncode == 2
    assert done.stderr.startswith("error: stream 'flow' was started with {'rows_per_batch': 250, 'block_rows': 100, "
                                  "'seed': 7}, not {'rows_per_batch': 100, ")
    other = stream(project, "--max-batches", "1", "--batch-seconds", "0.2", "--name", "slow")
    assert other.returncode == 0, other.stderr[-3000:]
    from deltalake import DeltaTable

    assert DeltaTable(str(project / "var/lake/flow_stream_slow")).to_pyarrow_table().num_rows == 100


@pytest.mark.parametrize(("dataset", "args", "code", "message"), [
    ("unpublished", (), 3, "model synthlake-unpublished has no 'champion' alias: publish a run of dataset "
                            "'unpublished' first"),
    ("flow", ("--batch-seconds", "0"), 2, "--batch-seconds 0.0: must be more than 0"),
    ("flow", ("--name", "a/b"), 2, "--name 'a/b': use letters, digits, _ and -"),
])
def test_refusals_are_one_line(project, dataset, args, code, message):
    done = stream(project, *args, dataset=dataset, timeout=120)
    assert done.returncode == code
    assert done.stderr.strip() == f"error: {message}"
    assert not (project / "var/lake/unpublished_stream").exists()
