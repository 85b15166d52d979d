"""ctgan's hyper-parameters (no torch or ctgan here: configs are checked before anything heavy loads)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator

from synthlake.generators.base import HyperParams

Width = Annotated[int, Field(ge=1, le=16_384)]


class CTGANHyper(HyperParams):
    epochs: int = Field(10, ge=1, le=100_000, description="passes over the training rows")
    batch_size: int = Field(500, ge=1, le=10_000_000, description="rows per step, global; a multiple of 2 * pac")
    embedding_dim: int = Field(128, ge=1, le=4096, description="noise dimension of the generator")
    generator_dim: list[Width] = Field([256, 256], min_length=1, description="hidden widths of the generator")
    discriminator_dim: list[Width] = Field([256, 256], min_length=1,
                                           description="hidden widths of the discriminator")
    generator_lr: float = Field(2e-4, ge=0.0, le=1.0, description="Adam learning rate of the generator")
    discriminator_lr: float = Field(2e-4, ge=0.0, le=1.0, description="Adam learning rate of the discriminator")
    weight_decay: float = Field(1e-6, ge=0.0, le=1.0, description="Adam weight decay")
    pac: int = Field(10, ge=1, le=1000, description="rows the discriminator sees together")
    max_modes: int = Field(10, ge=1, le=100, description="Gaussian-mixture modes per continuous column")

    @model_validator(mode="after")
    def _batch_fits_pac(self) -> CTGANHyper:
        if self.batch_size % (2 * self.pac):
            raise ValueError(f"batch_size ({self.batch_size}) must be a multiple of 2 * pac ({self.pac})")
        return self
