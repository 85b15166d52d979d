"""synthlake.generators: the registry, the fit/sample/save/load contract, on a tiny CTGAN."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pandas as pd
import pytest
import torch

from synthlake.generators import Generator, generator_names, get_generator
from synthlake.generators.ctgan_model import DEFAULTS, CTGANGenerator
from synthlake.metadata import ColumnKind, ColumnSpec, TableMetadata
from synthlake.seeding import block_count, block_seed, block_size

TINY = {"epochs": 1, "batch_size": 100, "generator_dim": [32], "discriminator_dim": [32], "embedding_dim": 16,
        "max_modes": 3}


# ---- registry and hyper-parameters ---------------------------------------------------------------
def test_registry_finds_ctgan():
    assert "ctgan" in generator_names()
    assert get_generator("ctgan") is CTGANGenerator
    assert issubclass(get_generator("ctgan"), Generator)


def test_unknown_generator_lists_the_known_ones():
    with pytest.raises(ValueError, match="tvae-xl") as info:
        get_generator("tvae-xl")
    for name in generator_names():
        assert name in str(info.value)


def test_unknown_hyper_parameter_is_named(metadata):
    with pytest.raises(ValueError, match="epoch") as info:
        CTGANGenerator(metadata, epoch=3)
    assert "'epoch'" in str(info.value) and "epochs" in str(info.value)


def test_hyper_parameters_override_defaults(metadata):
    model = CTGANGenerator(metadata, epochs=3)
    assert model.hyper["epochs"] == 3
    assert {k: v for k, v in model.hyper.items() if k != "epochs"} == {k: v for k, v in DEFAULTS.items()
                                                                       if k != "epochs"}


# ---- fit preconditions -----------------------------------------------------------------------------
def test_fit_names_missing_columns(metadata, mixed_table):
    with pytest.raises(ValueError, match="income"):
        CTGANGenerator(metadata, **TINY).fit(mixed_table.drop(columns=["income"]))


def test_fit_rejects_an_empty_table(metadata, mixed_table):
    with pytest.raises(ValueError, match="empty"):
        CTGANGenerator(metadata, **TINY).fit(mixed_table.iloc[:0])


def test_unfitted_generator_cannot_sample_or_save(metadata, tmp_path):
    model = CTGANGenerator(metadata, **TINY)
    with pytest.raises(RuntimeError):
        model.sample(10, seed=0)
    with pytest.raises(RuntimeError):
        model.save(tmp_path)


# ---- sampling --------------------------------------------------------------------------------------
def test_sample_has_the_metadata_columns_in_order(fitted_ctgan):
    model, _ = fitted_ctgan
    for n in (0, 1, 99, 250):
        sample = model.sample(n, seed=3)
        assert list(sample.columns) == model.metadata.names
        assert len(sample) == n


def test_negative_n_is_an_error(fitted_ctgan):
    with pytest.raises(ValueError, match="n must be"):
        fitted_ctgan[0].sample(-1, seed=0)


def test_identifiers_are_unique_and_never_copied(fitted_ctgan):
    model, real = fitted_ctgan
    sample = model.sample(500, seed=4)
    ids = sample["customer_id"]
    assert ids.notna().all() and ids.is_unique
    assert not set(ids) & set(real["customer_id"])


def test_pii_is_fake(fitted_ctgan):
    model, real = fitted_ctgan
    emails = model.sample(300, seed=5)["email"]
    assert emails.notna().all()
    assert not set(emails) & set(real["email"])
    assert emails.str.contains("@").all()
    assert emails.nunique() > 1


def test_learned_columns_stay_in_the_training_domain(fitted_ctgan):
    model, real = fitted_ctgan
    sample = model.sample(400, seed=6)
    assert pd.api.types.is_integer_dtype(sample["age"])
    ages = sample["age"].dropna().astype(int)
    assert ages.between(real["age"].min(), real["age"].max()).all()
    income = sample["income"].dropna()
    assert income.between(real["income"].min(), real["income"].max()).all()
    seen = set(real["color"].dropna())
    assert set(sample["color"].dropna()) <= seen
    assert pd.api.types.is_datetime64_any_dtype(sample["signup"])
    signup = sample["signup"].dropna()
    lo, hi = real["signup"].min().tz_localize("UTC"), real["signup"].max().tz_localize("UTC")
    assert ((signup >= lo) & (signup <= hi)).all()


def test_same_seed_same_rows_other_seed_other_rows(fitted_ctgan):
    model, _ = fitted_ctgan
    a = model.sample(200, seed=7, row_offset=1000)
    other = model.sample(200, seed=8, row_offset=1000)  # sampling in between must not change seed 7's rows
    b = model.sample(200, seed=7, row_offset=1000)
    pd.testing.assert_frame_equal(a, b)
    for name in ("income", "signup", "email"):
        assert not a[name].equals(other[name]), name


def test_a_shorter_sample_is_a_prefix_of_a_longer_one(fitted_ctgan):
    """The last block of a run is short: it must hold the same rows as the start of a full block."""
    model, _ = fitted_ctgan
    full, short = model.sample(200, seed=9), model.sample(130, seed=9)
    pd.testing.assert_frame_equal(full.iloc[:130].reset_index(drop=True), short)


def test_blocks_sampled_apart_have_unique_identifiers(fitted_ctgan):
    model, _ = fitted_ctgan
    rows, block_rows, run_seed = 250, 100, 42
    blocks = [model.sample(block_rows, seed=block_seed(run_seed, i), row_offset=i * block_rows)
              .iloc[: block_size(rows, block_rows, i)] for i in range(block_count(rows, block_rows))]
    table = pd.concat(blocks, ignore_index=True)
    assert len(table) == rows
    assert table["customer_id"].is_unique
    assert blocks[0]["email"].tolist()[:50] != blocks[1]["email"].tolist()[:50], "a seed per block"


# ---- persistence -----------------------------------------------------------------------------------
def test_save_writes_only_json_and_weights(fitted_ctgan, tmp_path):
    model, _ = fitted_ctgan
    model.save(tmp_path / "model")
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == ["generator.json", "generator.pt"]
    state = json.loads((tmp_path / "model" / "generator.json").read_text())
    assert state["generator"] == "ctgan" and state["hyper"] == model.hyper
    weights = torch.load(tmp_path / "model" / "generator.pt", weights_only=True)
    assert weights and all(isinstance(v, torch.Tensor) for v in weights.values())


def test_saved_weights_hold_no_pickled_objects(fitted_ctgan, tmp_path):
    """weights_only loading refuses pickled objects; prove the check bites on a file that holds one."""
    model, _ = fitted_ctgan
    model.save(tmp_path)
    torch.load(tmp_path / "generator.pt", weights_only=True)
    torch.save({"model": model.network}, tmp_path / "whole.pt")  # what we must not do
    with pytest.raises(pickle.UnpicklingError):
        torch.load(tmp_path / "whole.pt", weights_only=True)


@pytest.mark.parametrize("loader", [Generator.load, CTGANGenerator.load])
def test_load_gives_identical_samples(fitted_ctgan, tmp_path, loader):
    model, _ = fitted_ctgan
    model.save(tmp_path)
    loaded = loader(tmp_path)
    assert isinstance(loaded, CTGANGenerator)
    assert loaded.metadata == model.metadata and loaded.hyper == model.hyper
    for seed, offset in ((0, 0), (123, 500)):
        pd.testing.assert_frame_equal(loaded.sample(150, seed=seed, row_offset=offset),
                                      model.sample(150, seed=seed, row_offset=offset))


def test_load_of_an_unknown_generator_names_it(fitted_ctgan, tmp_path):
    model, _ = fitted_ctgan
    model.save(tmp_path)
    state = json.loads((tmp_path / "generator.json").read_text())
    state["generator"] = "mystery-gan"
    (tmp_path / "generator.json").write_text(json.dumps(state))
    with pytest.raises(ValueError, match="mystery-gan"):
        Generator.load(tmp_path)


# ---- tables without a categorical column (no conditional vector) ---------------------------------
def test_numeric_only_table_fits_samples_and_reloads(tmp_path):
    rng = np.random.default_rng(2)
    table = pd.DataFrame({"row_id": np.arange(200), "x": rng.normal(0, 1, 200), "n": rng.integers(0, 9, 200)})
    metadata = TableMetadata(columns=[ColumnSpec(name="row_id", kind=ColumnKind.IDENTIFIER),
                                      ColumnSpec(name="x", kind=ColumnKind.NUMERIC),
                                      ColumnSpec(name="n", kind=ColumnKind.NUMERIC, integer=True)])
    model = CTGANGenerator(metadata, **TINY).fit(table)
    assert model.cond_probs is None
    sample = model.sample(120, seed=1)
    assert list(sample.columns) == ["row_id", "x", "n"] and len(sample) == 120
    assert sample["n"].between(0, 8).all()
    model.save(tmp_path)
    pd.testing.assert_frame_equal(CTGANGenerator.load(tmp_path).sample(120, seed=1), sample)


@pytest.mark.parametrize("batch_size,pac,ok", [(500, 10, True), (100, 5, True), (510, 10, False), (90, 10, False)])
def test_ctgan_batch_size_must_be_a_multiple_of_twice_pac(batch_size, pac, ok):
    metadata = TableMetadata(columns=[ColumnSpec(name="x", kind=ColumnKind.NUMERIC)])
    if ok:
        assert get_generator("ctgan")(metadata, batch_size=batch_size, pac=pac).hyper["batch_size"] == batch_size
    else:
        with pytest.raises(ValueError, match="batch_size"):
            get_generator("ctgan")(metadata, batch_size=batch_size, pac=pac)
