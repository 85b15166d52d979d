"""Sampling a fitted tabular_ar row by row in one compiled loop (numba), instead of column by column in torch;
executors sample through FrozenSampler, which needs neither torch nor the training code.

Per row and column the work is small (a 64-wide context, a head, a draw over a few dozen tokens), so torch
spends its time moving whole-batch intermediates through memory and dispatching ~15 operations per column.
The compiled loop keeps a tile of rows' contexts, head activations and logits in cache, with the rows in SIMD
lanes (see LANES). Measured on Adult, one thread: 600-700k rows/s, against 300k for the same loop one row at a
time and 245k for the torch loop (benchmarks/sampling.py prints the stage's figure).

Each draw is an inverse CDF: token = the first t with cdf[t] > u * cdf[-1], over exp(logit - row max). Rows
are independent of each other, so the tokens do not depend on how rows are batched.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

from synthlake.fakes import generated_column
from synthlake.generators.ar_columns import Column, column_from_json, join_split
from synthlake.generators.base import SAMPLER_FILE, write_sampler_file
from synthlake.metadata import TableMetadata

ARRAYS_FILE = "sampler.npz"


# The kernel works on a tile of LANES rows at once, with every per-row quantity stored as [feature, lane]
# (lanes contiguous), so each inner loop runs over lanes: LLVM vectorises those loops (8 rows per AVX2 op) and
# a row's draws form no serial chain of horizontal sums. The row-at-a-time loop was latency-bound on
# 64-long dot products (one horizontal sum per token) and called a scalar exp per token; on Adult it gave
# ~300k rows/s against ~600k+ for the tile. The lane count is passed in at run time on purpose: a
# compile-time trip count lets LLVM fully unroll the lane loops, and numba does not enable the SLP
# vectoriser that would put them back together.
LANES = 64
_JIT = {"cache": True, "fastmath": True, "nogil": True, "error_model": "numpy"}


@intrinsic
def _f32_from_bits(typingctx, bits):  # pragma: no cover
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())

    return types.float32(types.int32), codegen


@njit(**_JIT)
def _exp_neg(z):  # pragma: no cover
    """exp(z) for z <= 0 without a libm call, so lane loops vectorise: Cephes' expf (relative error ~1e-7),
    2**n built from its bits. Below -87 it gives exp(-87), which no float32 total of >= 1 can see."""
    z = max(z, np.float32(-87.0))
    n = -np.int32(np.float32(0.5) - z * np.float32(1.44269504))  # round(z / ln 2) for z <= 0
    nf = np.float32(n)
    r = z - nf * np.float32(0.693359375) + nf * np.float32(2.12194440e-4)  # z - n ln 2 in two parts
    p = np.float32(1.9875691500e-4)
    p = p * r + np.float32(1.3981999507e-3)
    p = p * r + np.float32(8.3334519073e-3)
    p = p * r + np.float32(4.1665795894e-2)
    p = p * r + np.float32(1.6666665459e-1)
    p = p * r + np.float32(5.0000001201e-1)
    p = p * r * r + r + np.float32(1.0)
    return p * _f32_from_bits((n + np.int32(127)) << np.int32(23))


@njit(**_JIT)
def _affine(w, b, x, out, rows):  # pragma: no cover
    """out[j, :] = b[j] + sum_k w[j, k] * x[k, :] for j < rows, x and out as [feature, lane]. k is the outer
    loop (four at a time, so each pass over out[j] does four FMAs per load and store) and the rows of out
    are independent within it, so the passes do not wait on each other."""
    width, lanes = x.shape
    for j in range(rows):
        o, bj = out[j], b[j]
        for t in range(lanes):
            o[t] = bj
    k = 0
    while k + 4 <= width:
        x0, x1, x2, x3 = x[k], x[k + 1], x[k + 2], x[k + 3]
        for j in range(rows):
            o, wj = out[j], w[j]
            w0, w1, w2, w3 = wj[k], wj[k + 1], wj[k + 2], wj[k + 3]
            for t in range(lanes):
                o[t] += w0 * x0[t] + w1 * x1[t] + w2 * x2[t] + w3 * x3[t]
        k += 4
    while k < width:
        xk = x[k]
        for j in range(rows):
            o, wk = out[j], w[j, k]
            for t in range(lanes):
                o[t] += wk * xk[t]
        k += 1


@njit(**_JIT)
def _tokens(u, vocab, gate, shift, hid_w, hid_b, out_w, out_b, emb, inv_temp, out, lanes):  # pragma: no cover
    n, cols = u.shape
    width, layers = gate.shape[1], hid_w.shape[1]
    ctx = np.empty((width, lanes), np.float32)
    x, y = np.empty((width, lanes), np.float32), np.empty((width, lanes), np.float32)
    cdf = np.empty((out_w.shape[1], lanes), np.float32)
    top, total, target = np.empty(lanes, np.float32), np.empty(lanes, np.float32), np.empty(lanes, np.float32)
    tok = np.empty(lanes, np.int32)
    ut = np.empty((cols, lanes), np.float32)
    for r0 in range(0, n, lanes):
        m = min(lanes, n - r0)  # the last tile's spare lanes draw from u = 0.5 and are not written out
        for t in range(lanes):
            for i in range(cols):
                ut[i, t] = u[r0 + t, i] if t < m else np.float32(0.5)
        ctx[:, :] = 0.0
        for i in range(cols):
            for k in range(width):
                g, s, c, xk = gate[i, k], shift[i, k], ctx[k], x[k]
                for t in range(lanes):
                    a = c[t] * g + s
                    xk[t] = a if a > np.float32(0.0) else np.float32(0.0)  # not max(): NaN-aware, branches
            for layer in range(layers):  # hidden_layers - 1 more Linear + ReLU
                _affine(hid_w[i, layer], hid_b[i, layer], x, y, width)
                for k in range(width):
                    xk, yk = x[k], y[k]
                    for t in range(lanes):
                        a = yk[t]
                        xk[t] = a if a > np.float32(0.0) else np.float32(0.0)
            v = vocab[i]
            _affine(out_w[i], out_b[i], x, cdf, v)
            for t in range(lanes):
                top[t] = np.float32(-np.inf)
                total[t] = 0.0
                tok[t] = 0
            for j in range(v):
                cj = cdf[j]
                for t in range(lanes):
                    a = cj[t] * inv_temp
                    cj[t] = a
                    top[t] = a if a > top[t] else top[t]
            for j in range(v):
                cj = cdf[j]
                for t in range(lanes):
                    total[t] += _exp_neg(cj[t] - top[t])
                    cj[t] = total[t]
            uti = ut[i]
            for t in range(lanes):
                target[t] = uti[t] * total[t]
            for j in range(v - 1):
                cj = cdf[j]
                for t in range(lanes):
                    tok[t] += np.int32(cj[t] <= target[t])
            for t in range(m):
                out[r0 + t, i] = tok[t]
            if i < cols - 1:  # ctx += emb[token], lane by lane (a gather over lanes is slower)
                e = emb[i]
                for t in range(lanes):
                    et = e[tok[t]]
                    for k in range(width):
                        ctx[k, t] += et[k]
    return out


class FrozenSampler:
    """A fitted tabular_ar ready to sample, without torch: the column encodings, how wide columns are split,
    and the network's weights packed into dense float32 arrays for the compiled loop. Saved as JSON plus an
    .npz of plain arrays (loaded with allow_pickle=False)."""

    ARRAYS = ("vocab", "gate", "shift", "hid_w", "hid_b", "out_w", "out_b", "emb")

    def __init__(self, metadata: TableMetadata, columns: list[Column], splits: list[int],
                 arrays: dict[str, np.ndarray], temperature: float):
        self.metadata, self.columns, self.splits = metadata, columns, splits
        self.arrays, self.temperature = arrays, temperature

    @classmethod
    def from_network(cls, network, metadata: TableMetadata, columns: list[Column], splits: list[int],
                     temperature: float) -> FrozenSampler:
        from torch import nn

        vocab = list(network.vocab)
        cols, width, widest = len(vocab), network.gate.embedding_dim, max(vocab)
        heads = [[m for m in head if isinstance(m, nn.Linear)] for head in network.heads]
        layers = len(heads[0]) - 1
        a = {"vocab": np.asarray(vocab, dtype=np.int64), "gate": _array(network.gate.weight),
             "shift": _array(network.shift.weight),
             "hid_w": np.zeros((cols, layers, width, width), np.float32),
             "hid_b": np.zeros((cols, layers, width), np.float32),
             "out_w": np.zeros((cols, widest, width), np.float32), "out_b": np.zeros((cols, widest), np.float32),
             "emb": np.zeros((cols, widest, width), np.float32)}
        for i, linears in enumerate(heads):
            for layer, linear in enumerate(linears[:-1]):
                a["hid_w"][i, layer], a["hid_b"][i, layer] = _array(linear.weight), _array(linear.bias)
            a["out_w"][i, : vocab[i]], a["out_b"][i, : vocab[i]] = _array(linears[-1].weight), _array(linears[-1].bias)
        for i, embedding in enumerate(network.embeddings):
            a["emb"][i, : vocab[i]] = _array(embedding.weight)
        return cls(metadata, columns, splits, a, temperature)

    def tokens(self, u: np.ndarray) -> np.ndarray:
        """Model-column tokens (rows x model columns, int32) for `u`: one uniform per row and model column."""
        u = np.ascontiguousarray(u, dtype=np.float32)
        out = np.empty(u.shape, dtype=np.int32)
        return _tokens(u, *(self.arrays[k] for k in self.ARRAYS), np.float32(1.0 / self.temperature), out,
                       LANES)

    def sample_arrow(self, n: int, seed: int, row_offset: int = 0) -> pa.Table:
        """n rows in the metadata's column order; the same (n, seed, row_offset) gives the same rows."""
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        cols, sub = len(self.columns), len(self.arrays["vocab"])
        rng = np.random.default_rng(seed)
        # one stream of uniforms, row after row (a shorter sample is a prefix of a longer one), drawn a block
        # at a time to bound memory
        block = min(65_536, max(1024, (1 << 21) // (sub + cols)))
        tokens, within = np.empty((n, sub), dtype=np.int64), np.empty((n, cols))
        for b0 in range(0, n, block):
            m = min(block, n - b0)
            u = rng.random((m, sub + cols))
            within[b0 : b0 + m] = u[:, sub:]
            tokens[b0 : b0 + m] = self.tokens(u[:, :sub])
        values = join_split(tokens, self.columns, self.splits)
        table = {c.name: c.decode(values[i], within[:, i]) for i, c in enumerate(self.columns)}
        for spec in self.metadata.columns:
            if not spec.learned:
                table[spec.name] = pa.array(generated_column(spec, n, seed, row_offset), type=pa.string())
        return pa.table(table).select(self.metadata.names)

    def save(self, directory: str | Path) -> None:
        state = {"metadata": self.metadata.model_dump(mode="json"), "columns": [c.to_json() for c in self.columns],
                 "splits": self.splits, "temperature": self.temperature}
        write_sampler_file(directory, "tabular_ar", state)
        np.savez(Path(directory) / ARRAYS_FILE, **self.arrays)

    @classmethod
    def load(cls, directory: str | Path) -> FrozenSampler:
        directory = Path(directory)
        state = json.loads((directory / SAMPLER_FILE).read_text())
        with np.load(directory / ARRAYS_FILE, allow_pickle=False) as data:
            arrays = {k: data[k] for k in cls.ARRAYS}
        return cls(TableMetadata.model_validate(state["metadata"]), [column_from_json(c) for c in state["columns"]],
                   state["splits"], arrays, state["temperature"])


def _array(parameter) -> np.ndarray:
    return np.ascontiguousarray(parameter.detach().cpu().numpy(), dtype=np.float32)
