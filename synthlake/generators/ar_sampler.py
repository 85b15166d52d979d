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
from functools import partial
from pathlib import Path

import numpy as np
import pyarrow as pa
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

from synthlake.conditions import Conditions
from synthlake.fakes import generated_column
from synthlake.generators import ar_conditional
from synthlake.generators.ar_columns import Column, NumericColumn, column_from_json, join_split
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
def _tokens(u, order, fixed, allow, fine, vocab, gate, shift, hid_w, hid_b, out_w, out_b, emb, inv_temp, out,
            lanes):  # pragma: no cover
    """Draw the model columns `order` names, in that order, into `out` (rows x model columns).

    fixed[r, i] >= 0 gives row r's token of column i instead of drawing it (an empty `fixed`: none);
    allow[i, p, j] (0 or 1) weighs token j of column i, where p is 0, or for a split column's fine token
    (`fine[i]`) the row's coarse token just drawn (an empty `allow`: every token allowed)."""
    n, cols = u.shape
    width, layers = gate.shape[1], hid_w.shape[1]
    has_fixed, masked = fixed.shape[0] > 0, allow.shape[0] > 0
    ctx = np.empty((width, lanes), np.float32)
    x, y = np.empty((width, lanes), np.float32), np.empty((width, lanes), np.float32)
    cdf = np.empty((out_w.shape[1], lanes), np.float32)
    top, total, target = np.empty(lanes, np.float32), np.empty(lanes, np.float32), np.empty(lanes, np.float32)
    tok = np.empty(lanes, np.int32)
    given = np.full(lanes, -1, np.int32)
    tiles = np.zeros((cols, lanes), np.int32)  # the tile's tokens so far (a fine token's allow row)
    ut = np.empty((cols, lanes), np.float32)
    for r0 in range(0, n, lanes):
        m = min(lanes, n - r0)  # the last tile's spare lanes draw from u = 0.5 and are not written out
        for t in range(lanes):
            for i in range(cols):
                ut[i, t] = u[r0 + t, i] if t < m else np.float32(0.5)
        ctx[:, :] = 0.0
        for k in range(order.shape[0]):
            i = order[k]
            drawn = m
            if has_fixed:
                drawn = 0
                for t in range(m):
                    given[t] = fixed[r0 + t, i]
                    drawn += given[t] < 0
            if drawn == 0:  # every row's token is given: no head to run (spare lanes take token 0)
                tok[:] = 0
            else:
                _draw(i, ctx, x, y, cdf, top, total, target, tok, ut, allow, fine, tiles, masked, vocab, gate,
                      shift, hid_w, hid_b, out_w, out_b, inv_temp, width, layers, lanes)
            if has_fixed:
                for t in range(m):
                    if given[t] >= 0:
                        tok[t] = given[t]
            for t in range(m):
                out[r0 + t, i] = tok[t]
                tiles[i, t] = tok[t]
            if k < order.shape[0] - 1:  # ctx += emb[token], lane by lane (a gather over lanes is slower)
                e = emb[i]
                for t in range(lanes):
                    et = e[tok[t]]
                    for k2 in range(width):
                        ctx[k2, t] += et[k2]
    return out


@njit(**_JIT)
def _draw(i, ctx, x, y, cdf, top, total, target, tok, ut, allow, fine, tiles, masked, vocab, gate, shift, hid_w,
          hid_b, out_w, out_b, inv_temp, width, layers, lanes):  # pragma: no cover
    """tok[t] for every lane: column i's head on the context, then an inverse-CDF draw (over allowed tokens)."""
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
    if masked:
        for j in range(v):
            cj = cdf[j]
            for t in range(lanes):
                total[t] += allow[i, tiles[i - 1, t] if fine[i] else 0, j] * _exp_neg(cj[t] - top[t])
                cj[t] = total[t]
    else:
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
    if masked:  # u rounded up to 1 lands past the last allowed token: step back to it
        for t in range(lanes):
            p = tiles[i - 1, t] if fine[i] else 0
            while tok[t] > 0 and allow[i, p, tok[t]] == 0:
                tok[t] -= 1


class FrozenSampler:
    """A fitted tabular_ar ready to sample, without torch: the column encodings, how wide columns are split,
    and the network's weights packed into dense float32 arrays for the compiled loop. Saved as JSON plus an
    .npz of plain arrays (loaded with allow_pickle=False)."""

    ARRAYS = ("vocab", "gate", "shift", "hid_w", "hid_b", "out_w", "out_b", "emb")

    def __init__(self, metadata: TableMetadata, columns: list[Column], splits: list[int],
                 arrays: dict[str, np.ndarray], temperature: float, flexible: bool = False):
        self.metadata, self.columns, self.splits = metadata, columns, splits
        self.arrays, self.temperature = arrays, temperature
        self.flexible = flexible  # trained on random column orders too: can sample conditionally

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
        return cls(metadata, columns, splits, a, temperature, flexible=len(network.embeddings) == cols)

    def tokens(self, u: np.ndarray, order: np.ndarray | None = None, fixed: np.ndarray | None = None,
               allow: np.ndarray | None = None, fine: np.ndarray | None = None) -> np.ndarray:
        """Model-column tokens (rows x model columns, int32) for `u`: one uniform per row and model column.
        By default every column is drawn in its own order; see _tokens for `order`, `fixed`, `allow`, `fine`
        (columns `order` leaves out are -1)."""
        u = np.ascontiguousarray(u, dtype=np.float32)
        sub = u.shape[1]
        out = np.full(u.shape, -1, dtype=np.int32)
        order = np.arange(sub, dtype=np.int32) if order is None else order
        fixed = np.zeros((0, sub), np.int32) if fixed is None else np.ascontiguousarray(fixed, dtype=np.int32)
        allow = np.zeros((0, 1, 1), np.float32) if allow is None else allow
        fine = np.zeros(sub, np.int32) if fine is None else fine
        return _tokens(u, order, fixed, allow, fine, *(self.arrays[k] for k in self.ARRAYS),
                       np.float32(1.0 / self.temperature), out, LANES)

    def draw(self, n: int, rng: np.random.Generator, plan=None, order: np.ndarray | None = None):
        """(model-column tokens, within-bin uniforms) of n rows, one stream of uniforms row after row (a
        shorter sample is a prefix of a longer one), a block at a time to bound memory; `plan`
        (ar_conditional.Plan) fixes and restricts tokens and sets the order, which `order` may override."""
        cols, sub = len(self.columns), len(self.arrays["vocab"])
        block = min(65_536, max(1024, (1 << 21) // (sub + cols)))
        tokens, within = np.empty((n, sub), dtype=np.int64), np.empty((n, cols))
        if plan is not None and order is None:
            order = plan.order()
        for b0 in range(0, n, block):
            m = min(block, n - b0)
            u = rng.random((m, sub + cols))
            within[b0 : b0 + m] = u[:, sub:]
            if plan is None:
                tokens[b0 : b0 + m] = self.tokens(u[:, :sub])
            else:
                fixed = plan.fixed[b0 : b0 + m] if len(plan.fixed) else None
                tokens[b0 : b0 + m] = self.tokens(u[:, :sub], order, fixed, plan.allow, plan.fine)
        return tokens, within

    def decode(self, tokens: np.ndarray, within: np.ndarray, seed: int, row_offset: int,
               clip: dict | None = None) -> pa.Table:
        """The rows of model-column `tokens`, generated columns filled in; `clip`: column -> ValueSet the
        values of numeric columns are moved into (conditional sampling)."""
        n = len(tokens)
        values = join_split(tokens, self.columns, self.splits)
        table = {}
        for i, c in enumerate(self.columns):
            if clip and c.name in clip and isinstance(c, NumericColumn):
                table[c.name] = c.decode(values[i], within[:, i], partial(ar_conditional.clip_bounds, c, clip[c.name]))
            else:
                table[c.name] = c.decode(values[i], within[:, i])
        for spec in self.metadata.columns:
            if not spec.learned:
                table[spec.name] = pa.array(generated_column(spec, n, seed, row_offset), type=pa.string())
        return pa.table(table).select(self.metadata.names)

    def sample_arrow(self, n: int, seed: int, row_offset: int = 0, conditions: Conditions | None = None) -> pa.Table:
        """n rows in the metadata's column order; the same (n, seed, row_offset, conditions) gives the same
        rows. `conditions` (synthlake.conditions): see ar_conditional."""
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        if conditions:
            return ar_conditional.sample(self, n, seed, row_offset, conditions)
        tokens, within = self.draw(n, np.random.default_rng(seed))
        return self.decode(tokens, within, seed, row_offset)

    def head_probs(self, i: int, context: np.ndarray | None = None) -> np.ndarray:
        """Model column i's token probabilities given a context (the sum of the embeddings of the tokens drawn
        before it; none: the column's learned marginal, for a flexible model)."""
        a = self.arrays
        context = np.zeros(a["gate"].shape[1], np.float32) if context is None else context
        x = np.maximum(context * a["gate"][i] + a["shift"][i], 0.0)
        for layer in range(a["hid_w"].shape[1]):
            x = np.maximum(a["hid_w"][i, layer] @ x + a["hid_b"][i, layer], 0.0)
        v = int(a["vocab"][i])
        logits = (a["out_w"][i, :v] @ x + a["out_b"][i, :v]).astype(np.float64) / self.temperature
        p = np.exp(logits - logits.max())
        return p / p.sum()

    def save(self, directory: str | Path) -> None:
        state = {"metadata": self.metadata.model_dump(mode="json"), "columns": [c.to_json() for c in self.columns],
                 "splits": self.splits, "temperature": self.temperature, "flexible": self.flexible}
        write_sampler_file(directory, "tabular_ar", state)
        np.savez(Path(directory) / ARRAYS_FILE, **self.arrays)

    @classmethod
    def load(cls, directory: str | Path) -> FrozenSampler:
        directory = Path(directory)
        state = json.loads((directory / SAMPLER_FILE).read_text())
        with np.load(directory / ARRAYS_FILE, allow_pickle=False) as data:
            arrays = {k: data[k] for k in cls.ARRAYS}
        return cls(TableMetadata.model_validate(state["metadata"]), [column_from_json(c) for c in state["columns"]],
                   state["splits"], arrays, state["temperature"], state.get("flexible", False))


def _array(parameter) -> np.ndarray:
    return np.ascontiguousarray(parameter.detach().cpu().numpy(), dtype=np.float32)
