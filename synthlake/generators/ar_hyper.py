"""Hyper-parameters of the column encodings and of tabular_ar (no torch here: configs are checked first)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from synthlake.generators.base import HyperParams


class EncodingHyper(HyperParams):
    """How the columns become tokens (synthlake.generators.ar_columns): shared by the generators that use them."""

    max_bins: int = Field(100, ge=2, le=4096, description="quantile bins of a numeric or datetime column")
    bin_knots: int = Field(9, ge=2, le=257, description="within-bin quantiles a sampled value interpolates")
    min_category_count: int = Field(5, ge=1, le=1_000_000_000, description="rows; rarer categories share one token")
    max_categories: int = Field(1000, ge=1, le=100_000, description="most category tokens of a column")


class TabularARHyper(EncodingHyper):
    epochs: int = Field(40, ge=1, le=100_000, description="most passes over the training rows")
    batch_size: int = Field(512, ge=1, le=10_000_000, description="rows per step, global (split over the processes)")
    min_steps: int = Field(8, ge=1, le=100_000,
                           description="steps per epoch at least: a smaller table gets smaller batches (of at least "
                                       "32 rows), so that its few hundred rows are learned in more than one step "
                                       "(not under privacy, where DP-SGD's batches are Poisson samples of "
                                       "batch_size)")
    lr: float = Field(3e-3, ge=1e-6, le=1.0, description="Adam learning rate")
    weight_decay: float = Field(0.0, ge=0.0, le=1.0, description="Adam weight decay")
    hidden_dim: int = Field(64, ge=1, le=8192, description="width of the embeddings, the context and the heads")
    hidden_layers: int = Field(1, ge=1, le=8, description="hidden layers in each column's head")
    dropout: float = Field(0.0, ge=0.0, le=0.9, description="dropout probability after each hidden layer")
    val_fraction: float = Field(0.1, ge=0.0, le=0.5, description="share of rows held out for early stopping")
    patience: int = Field(5, ge=1, le=100_000, description="epochs without a better validation loss before stopping")
    split_above: int = Field(32, ge=2, le=1_000_000, description="tokens; wider columns are two: coarse, fine")
    order_mixing: float = Field(0.5, ge=0.0, le=1.0,
                                description="share of training rows seen in a random column order, which lets "
                                            "conditional sampling draw any columns first (0: none, no conditions)")
    temperature: float = Field(1.0, ge=0.01, le=10.0, description="sampling temperature (1: the learned distribution)")
    dp_preprocessing_share: float = Field(0.3, ge=0.01, le=0.9,
                                          description="with privacy: share of epsilon the column encodings spend")
    max_grad_norm: float = Field(1.0, ge=1e-6, le=1e6, description="with privacy: DP-SGD's per-row gradient clip (L2)")
    dp_accountant: Literal["rdp", "prv"] = Field("rdp", description="with privacy: Opacus' DP-SGD accountant")
