"""synthlake.generators.autoregressive: the flagship tabular_ar generator, on small tables and few epochs."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from synthlake.generators import TrainOptions
from synthlake.generators.ar_hyper import TabularARHyper
from synthlake.generators.autoregressive import AutoregressiveGenerator
from synthlake.metadata import RARE_CATEGORY, ColumnKind, ColumnSpec, PiiType, TableMetadata

TINY = {"epochs": 3, "batch_size": 128, "hidden_dim": 32, "patience": 2}


def make_table(n: int = 600, seed: int = 0) -> pd.DataFrame:
    """Every column kind: identifier, integers (with and without nulls), float with nulls, categorical with
    nulls, datetime with nulls, email."""
    rng = np.random.default_rng(seed)
    income = rng.lognormal(10.5, 0.4, n)
    income[rng.random(n) < 0.1] = np.nan
    color = pd.Series(rng.choice(["red", "green", "blue", "violet"], n, p=[0.4, 0.3, 0.2, 0.1]), dtype=object)
    color[rng.random(n) < 0.15] = None
    visits = pd.array(rng.integers(0, 2000, n), dtype="Int64")
    visits[rng.random(n) < 0.2] = pd.NA
    signup = pd.Series(pd.Timestamp("2019-01-01") + pd.to_timedelta(rng.integers(0, 3 * 365 * 86400, n), unit="s"))
    signup[rng.random(n) < 0.1] = pd.NaT
    return pd.DataFrame(
        {
            "customer_id": [f"CUST-{v:010d}" for v in rng.choice(10**9, n, replace=False)],
            "age": rng.integers(18, 90, n),
            "income": income,
            "visits": visits,
            "color": color,
            "signup": signup,
            "email": [f"real.person{i}@corp-example.test" for i in range(n)],
        }
    )


def table_metadata() -> TableMetadata:
    return TableMetadata(
        columns=[
            ColumnSpec(name="customer_id", kind=ColumnKind.IDENTIFIER),
            ColumnSpec(name="age", kind=ColumnKind.NUMERIC, integer=True),
            ColumnSpec(name="income", kind=ColumnKind.NUMERIC),
            ColumnSpec(name="visits", kind=ColumnKind.NUMERIC, integer=True),
            ColumnSpec(name="color", kind=ColumnKind.CATEGORICAL),
            ColumnSpec(name="signup", kind=ColumnKind.DATETIME),
            ColumnSpec(name="email", kind=ColumnKind.PII, pii=PiiType.EMAIL),
        ]
    )


@pytest.fixture(scope="module")
def fitted():
    torch.set_num_threads(1)
    table = make_table()
    return AutoregressiveGenerator(table_metadata(), **TINY).fit(table), table


# ---- hyper-parameters ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "value", "needle"),
    [
        ("hidden_dim", 0, "greater than or equal to 1"),
        ("temperature", 0.0, "greater than or equal to 0.01"),
        ("val_fraction", 0.9, "less than or equal to 0.5"),
        ("epochs", 2.5, "valid integer"),
        ("lr", "fast", "valid number"),
        ("dropout", True, "valid number"),
        ("dp_accountant", "gdp", "'rdp' or 'prv'"),
    ],
)
def test_a_bad_hyper_parameter_is_named_with_its_value(name, value, needle):
    with pytest.raises(ValueError, match="hyper-parameter") as info:
        AutoregressiveGenerator(table_metadata(), **{name: value})
    message = str(info.value)
    assert f"'{name}'" in message and repr(value) in message and needle in message


def test_defaults_fill_in_and_overrides_stick():
    model = AutoregressiveGenerator(table_metadata(), epochs=7)
    assert model.hyper == {**TabularARHyper().model_dump(), "epochs": 7}


def test_the_module_loads_no_ctgan_or_rdt():
    """Licence: tabular_ar fits and samples without importing ctgan (BSL) or rdt."""
    code = (
        "import sys, numpy as np, pandas as pd\n"
        "from synthlake.generators import get_generator\n"
        "from synthlake.metadata import TableMetadata\n"
        "md = TableMetadata(columns=[{'name': 'x', 'kind': 'numeric'}, {'name': 'c', 'kind': 'categorical'}])\n"
        "t = pd.DataFrame({'x': np.arange(50.0), 'c': ['a', 'b'] * 25})\n"
        "get_generator('tabular_ar')(md, epochs=1, hidden_dim=8).fit(t).sample(10, seed=0)\n"
        "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    ).stdout.split()
    assert "torch" in loaded
    assert "ctgan" not in loaded and "rdt" not in loaded and "sklearn" not in loaded


def test_ctgan_without_its_extra_names_the_extra():
    """`ctgan` is an optional extra: without the package, asking for the generator says what to install."""
    code = (
        "import sys\n"
        "sys.modules['ctgan'] = None  # as if not installed\n"
        "from synthlake.generators import get_generator\n"
        "get_generator('tabular_ar')\n"
        "try:\n"
        "    get_generator('ctgan')\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "pip install 'synthlake[ctgan]'" in out


# ---- the encoding and the sampled columns ---------------------------------------------------------------------
def test_prepare_gives_a_token_matrix():
    table = make_table(300)
    model = AutoregressiveGenerator(table_metadata(), **TINY)
    encoded = model.prepare(table, seed=0)
    assert encoded.dtype == np.int32 and len(encoded) == 300
    vocab = model.vocabulary()
    assert encoded.shape[1] == len(vocab) >= 5  # a column with many tokens takes two model columns
    assert (encoded >= 0).all() and (encoded < np.asarray(vocab)).all()


def test_sample_has_every_column_kind_right(fitted):
    model, real = fitted
    sample = model.sample(2000, seed=1)
    assert list(sample.columns) == model.metadata.names and len(sample) == 2000
    # integer without nulls: int64, exactly the real values (few distinct values: one token each)
    assert sample["age"].dtype == np.int64
    assert set(sample["age"]) <= set(real["age"])
    # integer with nulls: nullable Int64, integral, within the real range
    assert str(sample["visits"].dtype) == "Int64"
    visits = sample["visits"].dropna()
    assert visits.between(real["visits"].min(), real["visits"].max()).all()
    assert 0.1 < sample["visits"].isna().mean() < 0.3
    # float with nulls: continuous (values between the bins' quantiles), nulls at about their rate
    assert sample["income"].dtype == np.float64
    assert sample["income"].dropna().nunique() > 1000
    assert sample["income"].dropna().between(real["income"].min(), real["income"].max()).all()
    assert 0.04 < sample["income"].isna().mean() < 0.2
    # categorical with nulls
    assert set(sample["color"].dropna()) == set(real["color"].dropna())
    assert 0.07 < sample["color"].isna().mean() < 0.25
    # datetime with nulls: datetime64[ns] again, whole seconds as in the real column, within its range
    assert sample["signup"].dtype == "datetime64[ns]"
    signup = sample["signup"].dropna()
    assert signup.between(real["signup"].min(), real["signup"].max()).all()
    assert (signup.dt.nanosecond == 0).all() and (signup.dt.microsecond == 0).all()
    assert 0.04 < sample["signup"].isna().mean() < 0.2


def test_timezone_aware_datetimes_come_back_in_their_zone():
    rng = np.random.default_rng(5)
    when = pd.Timestamp("2024-03-01", tz="Europe/Paris") + pd.to_timedelta(rng.integers(0, 30, 200), unit="D")
    table = pd.DataFrame({"when": when, "n": rng.integers(0, 3, 200)})
    metadata = TableMetadata(
        columns=[
            ColumnSpec(name="when", kind=ColumnKind.DATETIME),
            ColumnSpec(name="n", kind=ColumnKind.NUMERIC, integer=True),
        ]
    )
    sample = AutoregressiveGenerator(metadata, **TINY).fit(table).sample(300, seed=0)
    assert str(sample["when"].dt.tz) == "Europe/Paris"
    assert set(sample["when"]) <= set(table["when"])  # 30 distinct days: one token each


def test_high_cardinality_categorical_is_bounded():
    rng = np.random.default_rng(1)
    levels = np.array([f"city-{i:04d}" for i in range(3000)])
    n = 12_000
    table = pd.DataFrame({"city": rng.permutation(np.repeat(levels, 4)), "x": rng.normal(0, 1, n)})
    metadata = TableMetadata(
        columns=[ColumnSpec(name="city", kind=ColumnKind.CATEGORICAL), ColumnSpec(name="x", kind=ColumnKind.NUMERIC)]
    )
    model = AutoregressiveGenerator(metadata, epochs=1, hidden_dim=16, max_categories=2000, min_category_count=1)
    model.fit(table)
    column = model.columns[0]
    assert column.vocab == 2001 and len(column.categories) == 2000 and column.rare
    assert max(model.vocabulary()) <= 50  # split into coarse and fine tokens: no head 2000 wide
    assert sum(p.numel() for p in model.network.parameters()) < 50_000
    sample = model.sample(5000, seed=0)
    assert set(sample["city"]) <= {*levels, RARE_CATEGORY} and sample["city"].nunique() > 1000


def test_rare_categories_are_never_stored_nor_generated(tmp_path):
    """A planted canary (a value in 1-4 rows) must not come back: it would single those rows out."""
    values = ["common"] * 900 + ["canary-a"] * 3 + ["canary-b"] * 1 + ["mid"] * 96
    table = pd.DataFrame({"c": values})
    metadata = TableMetadata(columns=[ColumnSpec(name="c", kind=ColumnKind.CATEGORICAL)])
    model = AutoregressiveGenerator(metadata, **{**TINY, "epochs": 20, "min_category_count": 5}).fit(table)
    column = model.columns[0]
    assert column.categories == ["common", "mid"] and column.rare
    counts = model.sample(20_000, seed=0)["c"].value_counts(normalize=True)
    assert counts["common"] == pytest.approx(0.9, abs=0.03)
    assert 0 < counts[RARE_CATEGORY] < 0.05  # 0.4% of the real rows; a 20-epoch toy model is rough
    assert not {"canary-a", "canary-b"} & set(counts.index)
    model.save(tmp_path)
    assert "canary" not in "".join(p.read_text(errors="ignore") for p in tmp_path.iterdir() if p.suffix == ".json")


# ---- persistence ---------------------------------------------------------------------------------------------
def test_save_writes_weights_and_json_and_freeze_a_torch_free_sampler(fitted, tmp_path):
    model, _ = fitted
    model.save(tmp_path / "model")
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == ["generator.json", "generator.pt"]
    weights = torch.load(tmp_path / "model" / "generator.pt", weights_only=True)
    assert weights and all(isinstance(v, torch.Tensor) for v in weights.values())
    model.freeze().save(tmp_path / "sampler")
    assert sorted(p.name for p in (tmp_path / "sampler").iterdir()) == ["sampler.json", "sampler.npz"]


# ---- training ------------------------------------------------------------------------------------------------
def test_train_reports_history_and_calls_back():
    table = make_table(300)
    model = AutoregressiveGenerator(table_metadata(), **{**TINY, "epochs": 2, "patience": 10})
    encoded = model.prepare(table, seed=0)
    calls = []
    history = model.train(encoded, TrainOptions(seed=0, on_epoch=calls.append))
    assert [h["epoch"] for h in history] == [0, 1] and calls == history
    assert all(h["loss"] > 0 and h["val_loss"] > 0 for h in history)
    with pytest.raises(ValueError, match="columns"):
        model.train(encoded[:, :2], TrainOptions(seed=0))


def test_early_stopping_keeps_the_best_weights():
    table = make_table(200)
    model = AutoregressiveGenerator(table_metadata(), epochs=300, batch_size=64, hidden_dim=64, lr=0.02, patience=3)
    history = model.train(model.prepare(table, seed=0), TrainOptions(seed=0))
    assert len(history) < 300, "overfitting 180 rows for 300 epochs must stop early"
    best = min(h["val_loss"] for h in history)
    assert model.training["best_val_loss"] == pytest.approx(best)
    assert model.training["best_epoch"] == len(history) - 1 - 3


def test_without_a_validation_split_every_epoch_runs():
    model = AutoregressiveGenerator(table_metadata(), **{**TINY, "val_fraction": 0.0, "epochs": 3})
    history = model.train(model.prepare(make_table(100), seed=0), TrainOptions(seed=0))
    assert len(history) == 3 and all(np.isnan(h["val_loss"]) for h in history)


def test_it_learns_a_dependency():
    """y is the bin of x, z follows y: the sampled rows keep both far above chance (1/3)."""
    rng = np.random.default_rng(0)
    n = 3000
    x = rng.uniform(0, 90, n)
    y = np.array(["low", "mid", "high"])[(x // 30).astype(int)]
    z = np.where(rng.random(n) < 0.95, np.char.add("z-", y), "noise")
    table = pd.DataFrame({"x": x, "y": y, "z": z})
    metadata = TableMetadata(
        columns=[
            ColumnSpec(name="x", kind=ColumnKind.NUMERIC),
            ColumnSpec(name="y", kind=ColumnKind.CATEGORICAL),
            ColumnSpec(name="z", kind=ColumnKind.CATEGORICAL),
        ]
    )
    model = AutoregressiveGenerator(metadata, epochs=15, batch_size=128, hidden_dim=32, max_bins=30)
    sample = model.fit(table).sample(3000, seed=0)
    expected = np.array(["low", "mid", "high"])[np.clip(sample["x"] // 30, 0, 2).astype(int)]
    assert (sample["y"] == expected).mean() > 0.9
    assert (sample["z"] == "z-" + sample["y"]).mean() > 0.85


# ---- data-parallel training ----------------------------------------------------------------------------------
def _ddp_worker(rank: int, world: int, port: int, model: AutoregressiveGenerator, work: str,
                sharded: bool = False) -> None:
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        calls = []
        encoded = np.load(Path(work) / "encoded.npy")
        options = TrainOptions(seed=3, on_epoch=calls.append, sharded=sharded,
                               checkpoint_dir=Path(work) / "checkpoints" if sharded else None)
        history = model.train(encoded[rank::world] if sharded else encoded, options)
        torch.save(model.network.state_dict(), Path(work) / f"rank{rank}.pt")
        (Path(work) / f"rank{rank}.json").write_text(json.dumps({"history": history, "calls": len(calls)}))
    finally:
        dist.destroy_process_group()


def test_ddp_on_two_processes_trains_identical_weights(tmp_path):
    table = make_table(400)
    model = AutoregressiveGenerator(table_metadata(), **{**TINY, "epochs": 2, "patience": 10})
    np.save(tmp_path / "encoded.npy", model.prepare(table, seed=0))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    torch.multiprocessing.spawn(_ddp_worker, args=(2, port, model, str(tmp_path)), nprocs=2, join=True)
    results = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [h["epoch"] for h in results[0]["history"]] == [0, 1]
    assert results[0]["history"] == results[1]["history"], "losses are all-reduced: every rank sees the same"
    assert results[0]["calls"] == 2 and results[1]["calls"] == 0, "on_epoch runs on rank 0 only"
    w0, w1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert w0.keys() == w1.keys()
    assert all(torch.equal(w0[k], w1[k]) for k in w0)
    single = AutoregressiveGenerator(table_metadata(), **{**TINY, "epochs": 2, "patience": 10})
    single.train(single.prepare(table, seed=0), TrainOptions(seed=3))
    assert any(not torch.equal(w0[k], v) for k, v in single.network.state_dict().items()), "sharded, not copied"


def test_sharded_rows_train_in_step_and_resume_on_every_rank(tmp_path):
    """Each process given its own rows (as the train stage's executors shard them): identical weights on both,
    and the checkpoint's signature, hashed over both shards, resumes on both."""
    table = make_table(400)
    model = AutoregressiveGenerator(table_metadata(), **{**TINY, "epochs": 2, "patience": 10})
    np.save(tmp_path / "encoded.npy", model.prepare(table, seed=0))

    def spawn():
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        torch.multiprocessing.spawn(_ddp_worker, args=(2, port, model, str(tmp_path), True), nprocs=2, join=True)
        return [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]

    first = spawn()
    assert first[0]["history"] == first[1]["history"] and first[0]["calls"] == 2
    w0, w1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert all(torch.equal(w0[k], w1[k]) for k in w0)
    again = spawn()  # every epoch is in the checkpoint: both ranks resume past the end, none trains
    assert again[0]["history"] == first[0]["history"] and again[0]["calls"] == 0


def test_one_sharded_process_trains_as_unsharded():
    table = make_table(300)
    weights = []
    for sharded in (False, True):
        model = AutoregressiveGenerator(table_metadata(), **{**TINY, "epochs": 2})
        model.train(model.prepare(table, seed=0), TrainOptions(seed=1, sharded=sharded))
        weights.append(model.network.state_dict())
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_encodings_fitted_elsewhere_encode_as_prepare_does():
    table = make_table(300)
    prepared = AutoregressiveGenerator(table_metadata(), **TINY)
    encoded = prepared.prepare(table, seed=0)
    other = AutoregressiveGenerator(table_metadata(), **TINY)
    other.use_columns(prepared.columns)
    np.testing.assert_array_equal(other.encoder()(table), encoded)
    assert encoded.shape[1] == len(other.vocabulary())
    with pytest.raises(ValueError, match="one encoding per learned column"):
        other.use_columns(prepared.columns[1:])


# ---- checkpoints -----------------------------------------------------------------------------------------


class _Killed(Exception):
    pass


def _kill_after(epoch: int):
    def on_epoch(record: dict) -> None:
        if record["epoch"] == epoch:
            raise _Killed

    return on_epoch


def _resumed_equals_straight(make_model, table, tmp_path, epochs: int = 4) -> tuple:
    straight = make_model()
    encoded = straight.prepare(table, seed=0)
    full = straight.train(encoded, TrainOptions(seed=3))

    killed = make_model()
    encoded = killed.prepare(table, seed=0)
    with pytest.raises(_Killed):
        killed.train(encoded, TrainOptions(seed=3, on_epoch=_kill_after(1), checkpoint_dir=tmp_path))
    assert (tmp_path / "checkpoint.pt").exists() and not list(tmp_path.glob("*.tmp"))
    seen = []
    resumed = make_model()
    encoded = resumed.prepare(table, seed=0)
    history = resumed.train(encoded, TrainOptions(seed=3, on_epoch=seen.append, checkpoint_dir=tmp_path))
    assert [r["epoch"] for r in seen] == list(range(2, len(full)))  # only the remaining epochs ran
    assert json.dumps(history) == json.dumps(full)  # nan-safe
    for (name, a), b in zip(straight.network.state_dict().items(), resumed.network.state_dict().values(),
                            strict=True):
        assert torch.equal(a, b), name
    return straight, resumed


def test_a_killed_run_resumes_to_the_same_weights(tmp_path):
    hyper = {**TINY, "epochs": 4, "patience": 100, "dropout": 0.1}
    _resumed_equals_straight(lambda: AutoregressiveGenerator(table_metadata(), **hyper), make_table(400), tmp_path)


def test_a_killed_dp_run_resumes_to_the_same_weights_and_budget(tmp_path):
    hyper = {"epochs": 4, "batch_size": 128, "hidden_dim": 16}

    def make_model():
        model = AutoregressiveGenerator(table_metadata(), privacy={"epsilon": 4.0, "delta": 1e-5}, **hyper)
        model.dp_noise_seed = 5  # the same encodings each prepare(): the checkpoint matches
        return model

    straight, resumed = _resumed_equals_straight(make_model, make_table(800), tmp_path)
    assert resumed.privacy_report == straight.privacy_report


def test_a_checkpoint_for_other_settings_is_ignored(tmp_path):
    table = make_table(300)
    first = AutoregressiveGenerator(table_metadata(), **{**TINY, "epochs": 2})
    first.train(first.prepare(table, seed=0), TrainOptions(seed=0, checkpoint_dir=tmp_path))
    other = AutoregressiveGenerator(table_metadata(), **{**TINY, "epochs": 2, "lr": 0.01})
    with pytest.warns(UserWarning, match="starts afresh"):
        history = other.train(other.prepare(table, seed=0), TrainOptions(seed=0, checkpoint_dir=tmp_path))
    assert len(history) == 2
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)  # plain tensors and values only
    assert json.loads(state["signature"])["hyper"]["lr"] == 0.01
