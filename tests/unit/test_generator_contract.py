"""The engine contract, checked for every registered generator: a new generator gets these tests for free.

Fit, sample, save/load, freeze to a Sampler and load it back, every column kind with nulls, determinism,
a shorter sample is a prefix of a longer one, and the Sampler without torch where the registry declares it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.feather as feather
import pytest
import torch
from test_autoregressive import make_table, table_metadata  # tests/unit is on sys.path

from synthlake.generators import (
    REGISTRY,
    Generator,
    Sampler,
    TrainOptions,
    entry,
    generator_names,
    get_generator,
    hyper_model,
    load_sampler,
)
from synthlake.metadata import RARE_CATEGORY
from synthlake.seeding import block_count, block_seed, block_size

# small models, few epochs: these tests check the contract, not the quality of a model
TINY = {
    "tabular_ar": {"epochs": 3, "batch_size": 128, "hidden_dim": 32, "patience": 2},
    "ctgan": {"epochs": 1, "batch_size": 100, "generator_dim": [32], "discriminator_dim": [32], "embedding_dim": 16,
              "max_modes": 3},
    "gaussian_copula": {},
}


def test_every_registered_generator_has_tiny_settings_here():
    assert sorted(TINY) == generator_names()


@pytest.fixture(scope="module", params=generator_names())
def fitted(request):
    torch.manual_seed(0)
    table = make_table(400)
    return get_generator(request.param)(table_metadata(), **TINY[request.param]).fit(table), table


# ---- the registry and hyper-parameters ---------------------------------------------------------------------
@pytest.mark.parametrize("name", generator_names())
def test_the_registry_names_a_generator_its_hyper_model_and_its_sampler(name):
    klass = get_generator(name)
    assert issubclass(klass, Generator) and klass.name == name and klass.Hyper is hyper_model(name)
    defaults = hyper_model(name).check(name, {})
    assert klass(table_metadata()).hyper == defaults


@pytest.mark.parametrize("name", generator_names())
def test_an_unknown_or_bad_hyper_parameter_is_named(name):
    with pytest.raises(ValueError, match="unknown hyper-parameters") as info:
        get_generator(name)(table_metadata(), no_such_knob=3)
    assert "'no_such_knob'" in str(info.value)
    first = next(iter(hyper_model(name).model_fields))
    with pytest.raises(ValueError, match=f"hyper-parameter '{first}' = 'x'"):
        get_generator(name)(table_metadata(), **{first: "x"})


def test_an_unknown_generator_lists_the_known_ones():
    with pytest.raises(ValueError, match="tvae-xl") as info:
        get_generator("tvae-xl")
    assert all(name in str(info.value) for name in generator_names())


# ---- fitting -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", generator_names())
def test_fit_names_missing_columns_and_refuses_an_empty_table(name):
    table = make_table(50)
    with pytest.raises(ValueError, match="income"):
        get_generator(name)(table_metadata(), **TINY[name]).fit(table.drop(columns=["income"]))
    with pytest.raises(ValueError, match="empty"):
        get_generator(name)(table_metadata(), **TINY[name]).fit(table.iloc[:0])


@pytest.mark.parametrize("name", generator_names())
def test_an_unfitted_generator_cannot_train_sample_or_save(name, tmp_path):
    model = get_generator(name)(table_metadata(), **TINY[name])
    with pytest.raises(RuntimeError):
        model.train(np.zeros((10, 5), dtype=np.int32), TrainOptions())
    with pytest.raises(RuntimeError):
        model.sample(10, seed=0)
    with pytest.raises(RuntimeError):
        model.save(tmp_path)


def test_train_reports_each_epoch(fitted):
    model, table = fitted
    fresh = type(model)(model.metadata, **model.hyper)
    seen = []
    history = fresh.train(fresh.prepare(table.head(200), seed=0), TrainOptions(seed=0, on_epoch=seen.append))
    assert history and seen == history and [h["epoch"] for h in history] == list(range(len(history)))


# ---- sampling ----------------------------------------------------------------------------------------------
def test_every_column_kind_comes_out_typed_and_in_order(fitted):
    model, real = fitted
    sample = model.sample(1500, seed=1)
    assert list(sample.columns) == model.metadata.names and len(sample) == 1500
    assert pd.api.types.is_integer_dtype(sample["age"]) and sample["income"].dtype == np.float64
    assert pd.api.types.is_datetime64_any_dtype(sample["signup"])
    for n in (0, 1, 99):
        assert len(model.sample(n, seed=3)) == n
    with pytest.raises(ValueError, match="n must be"):
        model.sample(-1, seed=0)


def test_learned_columns_stay_in_the_training_domain(fitted):
    model, real = fitted
    sample = model.sample(1500, seed=6)
    assert sample["age"].dropna().between(real["age"].min(), real["age"].max()).all()
    assert sample["income"].dropna().between(real["income"].min(), real["income"].max()).all()
    assert set(sample["color"].dropna()) <= set(real["color"].dropna()) | {RARE_CATEGORY}
    signup = sample["signup"].dropna().dt.tz_localize(None) if sample["signup"].dt.tz else sample["signup"].dropna()
    assert signup.between(real["signup"].min(), real["signup"].max()).all()


def test_nulls_come_out_where_the_real_column_has_them(fitted):
    model, real = fitted
    sample = model.sample(3000, seed=2)
    for column in ("income", "visits", "color", "signup"):
        assert real[column].isna().any() and sample[column].isna().any(), column
    assert sample["age"].notna().all()


def test_identifiers_are_unique_and_pii_is_fake(fitted):
    model, real = fitted
    sample = model.sample(500, seed=4)
    assert sample["customer_id"].is_unique and not set(sample["customer_id"]) & set(real["customer_id"])
    emails = sample["email"]
    assert emails.str.contains("@").all() and emails.nunique() > 1 and not set(emails) & set(real["email"])


def test_same_seed_same_rows_other_seed_other_rows(fitted):
    model, _ = fitted
    a = model.sample_arrow(200, seed=7, row_offset=1000)
    other = model.sample_arrow(200, seed=8, row_offset=1000)  # sampling in between must not change seed 7's rows
    assert model.sample_arrow(200, seed=7, row_offset=1000).equals(a)
    for name in ("age", "income", "color", "signup", "email"):
        assert not a.column(name).equals(other.column(name)), name


def test_a_shorter_sample_is_a_prefix_of_a_longer_one(fitted):
    """The last block of a run is short: it must hold the same rows as the start of a full block."""
    model, _ = fitted
    assert model.sample_arrow(200, seed=9).slice(0, 130).equals(model.sample_arrow(130, seed=9))


def test_blocks_sampled_apart_have_unique_identifiers(fitted):
    model, _ = fitted
    rows, block_rows = 250, 100
    blocks = [model.sample(block_rows, seed=block_seed(42, i), row_offset=i * block_rows)
              .iloc[: block_size(rows, block_rows, i)] for i in range(block_count(rows, block_rows))]
    table = pd.concat(blocks, ignore_index=True)
    assert len(table) == rows and table["customer_id"].is_unique
    for name in ("income", "email"):  # a seed per block
        assert blocks[0][name].head(50).tolist() != blocks[1][name].head(50).tolist(), name


# ---- persistence and the Sampler ---------------------------------------------------------------------------
def test_save_and_load_give_the_same_rows(fitted, tmp_path):
    model, _ = fitted
    model.save(tmp_path)
    state = json.loads((tmp_path / "generator.json").read_text())
    assert state["generator"] == model.name and state["hyper"] == model.hyper
    loaded = Generator.load(tmp_path)
    assert type(loaded) is type(model) and loaded.metadata == model.metadata
    assert loaded.sample_arrow(150, seed=123, row_offset=500).equals(model.sample_arrow(150, seed=123, row_offset=500))


def test_the_frozen_sampler_round_trips(fitted, tmp_path):
    model, _ = fitted
    sampler = model.freeze()
    assert isinstance(sampler, Sampler)
    assert isinstance(sampler, _load_class(entry(model.name).sampler))
    sampler.save(tmp_path)
    loaded = load_sampler(tmp_path)
    assert type(loaded) is type(sampler)
    expected = model.sample_arrow(300, seed=5, row_offset=77)
    assert loaded.sample_arrow(300, seed=5, row_offset=77).equals(expected)
    assert isinstance(expected, pa.Table)


def test_the_sampler_loads_without_torch_where_declared(fitted, tmp_path):
    """Executors and the serving process load the Sampler alone; a declared torch-free one never imports it."""
    model, _ = fitted
    model.freeze().save(tmp_path / "sampler")
    code = ("import sys, pyarrow.feather as f\n"
            "from synthlake.generators import load_sampler\n"
            f"t = load_sampler({str(tmp_path / 'sampler')!r}).sample_arrow(500, seed=7, row_offset=1000)\n"
            f"f.write_feather(t, {str(tmp_path / 'rows.arrow')!r})\n"
            "print('torch' in sys.modules)")
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}  # torch's sums depend on its threads
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.strip() == str(not entry(model.name).torch_free_sampler)
    assert feather.read_table(tmp_path / "rows.arrow").equals(model.sample_arrow(500, seed=7, row_offset=1000))


def test_a_folder_without_a_sampler_or_of_an_unknown_generator_is_refused(fitted, tmp_path):
    model, _ = fitted
    with pytest.raises(ValueError, match="sampler.json"):
        load_sampler(tmp_path)
    model.freeze().save(tmp_path)
    state = json.loads((tmp_path / "sampler.json").read_text())
    (tmp_path / "sampler.json").write_text(json.dumps({**state, "generator": "mystery-gan"}))
    with pytest.raises(ValueError, match="mystery-gan"):
        load_sampler(tmp_path)


def _load_class(target: str):
    from importlib import import_module

    module, cls = target.split(":")
    return getattr(import_module(module), cls)


def test_registry_entries_point_at_real_classes():
    for name, e in REGISTRY.items():
        assert _load_class(e.generator).name == name
        assert hasattr(_load_class(e.sampler), "load")
