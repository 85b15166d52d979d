"""synthlake.generators.ar_sampler: tabular_ar's compiled, torch-free sampler."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import torch
from test_autoregressive import TINY, make_table, table_metadata  # tests/unit is on sys.path

from synthlake.generators import get_generator
from synthlake.generators.ar_sampler import FrozenSampler


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return get_generator("tabular_ar")(table_metadata(), **TINY).fit(make_table())


def expected_tokens(network, tokens: np.ndarray, u: np.ndarray, temperature: float) -> np.ndarray:
    """The inverse-CDF draw of every column from the network's own forward pass (teacher-forced on the
    sampled tokens), in float64: the first token whose cumulative probability exceeds u."""
    with torch.no_grad():
        logits = network.eval()(torch.from_numpy(tokens).long())
    out = np.empty_like(tokens)
    for i, lg in enumerate(logits):
        cdf = torch.softmax(lg.double() / temperature, dim=1).cumsum(dim=1).numpy()
        out[:, i] = np.minimum((cdf < u[:, i : i + 1]).sum(axis=1), cdf.shape[1] - 1)
    return out


@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_the_compiled_loop_draws_what_the_network_gives(model, temperature):
    frozen = FrozenSampler.from_network(model.network, model.metadata, model.columns, model._splits(), temperature)
    u = np.random.default_rng(1).random((3000, len(frozen.arrays["vocab"]))).astype(np.float32)
    tokens = frozen.tokens(u)
    expected = expected_tokens(model.network, tokens, u.astype(np.float64), temperature)
    # float32 against float64 rounding moves a draw only when u lies within ~1e-6 of a CDF step
    assert (tokens == expected).mean() > 0.999
    assert tokens.min() >= 0 and (tokens < frozen.arrays["vocab"]).all()


def test_rows_do_not_depend_on_how_they_are_batched(model):
    frozen = model.freeze()
    u = np.random.default_rng(2).random((1000, len(frozen.arrays["vocab"])))
    whole = frozen.tokens(u)
    parts = np.concatenate([frozen.tokens(u[:1]), frozen.tokens(u[1:377]), frozen.tokens(u[377:])])
    np.testing.assert_array_equal(whole, parts)
    assert frozen.tokens(u[:0]).shape == (0, len(frozen.arrays["vocab"]))


def test_arrow_types_and_the_pandas_view(model):
    table = model.sample_arrow(400, seed=3)
    assert table.column_names == model.metadata.names
    types = dict(zip(table.column_names, table.schema.types, strict=True))
    assert types["age"] == pa.int64() and types["visits"] == pa.int64() and types["income"] == pa.float64()
    assert types["color"] == pa.string() and types["customer_id"] == pa.string() and types["email"] == pa.string()
    assert types["signup"] == pa.timestamp("us")
    assert table.column("visits").null_count > 0 and table.column("color").null_count > 0
    frame = model.sample(400, seed=3)
    assert str(frame["visits"].dtype) == "Int64" and str(frame["age"].dtype) == "int64"
    assert str(frame["signup"].dtype) == "datetime64[ns]"
    assert frame["visits"].isna().sum() == table.column("visits").null_count
    assert frame["color"].tolist() == table.column("color").to_pylist()
