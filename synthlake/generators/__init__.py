"""Generators by name: `generator:` in a dataset config picks one."""

from __future__ import annotations

from synthlake.generators.base import Generator
from synthlake.generators.ctgan_model import CTGANGenerator

_REGISTRY: dict[str, type[Generator]] = {CTGANGenerator.name: CTGANGenerator}


def get_generator(name: str) -> type[Generator]:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown generator {name!r}; known: {sorted(_REGISTRY)}") from None


def generator_names() -> list[str]:
    return sorted(_REGISTRY)


__all__ = ["Generator", "get_generator", "generator_names"]
