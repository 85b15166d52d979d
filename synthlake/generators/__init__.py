"""Generators by name: `generator:` in a dataset config picks one.

A generator's module is imported when it is asked for, not with this package: using `tabular_ar` never
loads `ctgan` (Business Source License) or its dependencies.
"""

from __future__ import annotations

import json
from importlib import import_module
from pathlib import Path

from synthlake.generators.base import SAMPLER_FILE, Generator, HyperParam

DEFAULT = "tabular_ar"
# name -> ("module:class", the pip extra its dependencies come with, if any)
_REGISTRY: dict[str, tuple[str, str | None]] = {
    "ctgan": ("synthlake.generators.ctgan_model:CTGANGenerator", "ctgan"),
    "tabular_ar": ("synthlake.generators.autoregressive:AutoregressiveGenerator", None),
}

# name -> "module:class" of the light sampler the generator's save_sampler writes
_SAMPLERS: dict[str, str] = {"tabular_ar": "synthlake.generators.ar_sampler:FrozenSampler"}


def get_generator(name: str) -> type[Generator]:
    try:
        target, extra = _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown generator {name!r}; known: {sorted(_REGISTRY)}") from None
    module, cls = target.split(":")
    try:
        return getattr(import_module(module), cls)
    except ModuleNotFoundError as exc:
        if extra is None or exc.name is None or exc.name.startswith("synthlake"):
            raise
        raise ImportError(f"generator {name!r} needs the optional extra: pip install 'synthlake[{extra}]' "
                          f"(missing module {exc.name!r})") from exc


def load_sampler(directory: str | Path):
    """What Generator.save_sampler wrote: the generator's light sampler, else the generator itself; either
    has sample_arrow(n, seed, row_offset)."""
    path = Path(directory) / SAMPLER_FILE
    if not path.is_file():
        return Generator.load(directory)
    name = json.loads(path.read_text())["generator"]
    if name not in _SAMPLERS:
        raise ValueError(f"{path}: no light sampler for generator {name!r}; known: {sorted(_SAMPLERS)}")
    module, cls = _SAMPLERS[name].split(":")
    return getattr(import_module(module), cls).load(directory)


def generator_names() -> list[str]:
    return sorted(_REGISTRY)


__all__ = ["Generator", "HyperParam", "get_generator", "generator_names", "load_sampler"]
