"""The ctgan generator's own behaviour; the contract every generator keeps is in test_generator_contract.py."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest
import torch

from synthlake.generators import get_generator
from synthlake.generators.ctgan_model import CTGANGenerator
from synthlake.metadata import ColumnKind, ColumnSpec, TableMetadata

TINY = {"epochs": 1, "batch_size": 100, "generator_dim": [32], "discriminator_dim": [32], "embedding_dim": 16,
        "max_modes": 3}


def test_save_writes_only_json_and_weights(fitted_ctgan, tmp_path):
    model, _ = fitted_ctgan
    model.save(tmp_path / "model")
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == ["generator.json", "generator.pt"]
    weights = torch.load(tmp_path / "model" / "generator.pt", weights_only=True)
    assert weights and all(isinstance(v, torch.Tensor) for v in weights.values())


def test_ctgan_hyper_parameters_are_checked():
    with pytest.raises(ValueError, match="'pac' = 0"):
        CTGANGenerator(TableMetadata(columns=[ColumnSpec(name="x", kind=ColumnKind.NUMERIC)]), pac=0)
    with pytest.raises(ValueError, match="'generator_dim'"):
        CTGANGenerator(TableMetadata(columns=[ColumnSpec(name="x", kind=ColumnKind.NUMERIC)]), generator_dim=[256, -1])


def test_saved_weights_hold_no_pickled_objects(fitted_ctgan, tmp_path):
    """weights_only loading refuses pickled objects; prove the check bites on a file that holds one."""
    model, _ = fitted_ctgan
    model.save(tmp_path)
    torch.load(tmp_path / "generator.pt", weights_only=True)
    torch.save({"model": model.network}, tmp_path / "whole.pt")  # what we must not do
    with pytest.raises(pickle.UnpicklingError):
        torch.load(tmp_path / "whole.pt", weights_only=True)


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
