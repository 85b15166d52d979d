"""Generators by name: `generator:` in a dataset config picks one.

One registry entry per generator names its class, its hyper-parameter model, its Sampler class and the pip
extra its dependencies come with. Each is imported when it is asked for, not with this package: using
`tabular_ar` never loads `ctgan` (Business Source License), and checking hyper-parameters loads no torch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path
from typing import Any

from synthlake.generators.base import SAMPLER_FILE, Generator, HyperParams, Sampler, TrainOptions

DEFAULT = "tabular_ar"


@dataclass(frozen=True)
class Entry:
    generator: str  # "module:Class" of the Generator
    hyper: str  # "module:Class" of its HyperParams (a module without torch)
    sampler: str = "synthlake.generators.base:GeneratorSampler"  # "module:Class" of what freeze() returns
    extra: str | None = None  # the pip extra that brings its dependencies
    torch_free_sampler: bool = False  # its Sampler loads and samples without importing torch


REGISTRY: dict[str, Entry] = {
    "tabular_ar": Entry("synthlake.generators.autoregressive:AutoregressiveGenerator",
                        "synthlake.generators.ar_hyper:TabularARHyper",
                        sampler="synthlake.generators.ar_sampler:FrozenSampler", torch_free_sampler=True),
    "ctgan": Entry("synthlake.generators.ctgan_model:CTGANGenerator", "synthlake.generators.ctgan_hyper:CTGANHyper",
                   extra="ctgan"),
    "gaussian_copula": Entry("synthlake.generators.gaussian_copula:GaussianCopulaGenerator",
                             "synthlake.generators.gaussian_copula:GaussianCopulaHyper",
                             sampler="synthlake.generators.gaussian_copula:CopulaSampler",
                             torch_free_sampler=True),
}


def entry(name: str) -> Entry:
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown generator {name!r}; known: {generator_names()}") from None


def get_generator(name: str) -> type[Generator]:
    return _load(name, entry(name).generator)


def hyper_model(name: str) -> type[HyperParams]:
    return _load(name, entry(name).hyper)


def check_hyper(name: str, values: dict[str, Any]) -> dict[str, Any]:
    """The generator's hyper-parameters with defaults filled in; a ValueError names a bad one (no torch)."""
    return hyper_model(name).check(name, values)


def load_sampler(directory: str | Path) -> Sampler:
    """The Sampler that Generator.freeze().save(directory) wrote, of the class its generator registers."""
    path = Path(directory) / SAMPLER_FILE
    if not path.is_file():
        raise ValueError(f"{directory} holds no sampler ({SAMPLER_FILE} is missing)")
    name = json.loads(path.read_text())["generator"]
    if name == "ruled":  # a sampler wrapped in the dataset's rules (synthlake.rules), around any generator's
        from synthlake.generators.ruled import RuledSampler

        return RuledSampler.load(directory)
    return _load(name, entry(name).sampler).load(directory)


def generator_names() -> list[str]:
    return sorted(REGISTRY)


def _load(name: str, target: str):
    module, cls = target.split(":")
    try:
        return getattr(import_module(module), cls)
    except ModuleNotFoundError as exc:
        extra = REGISTRY[name].extra
        if extra is None or exc.name is None or exc.name.startswith("synthlake"):
            raise
        raise ImportError(f"generator {name!r} needs the optional extra: pip install 'synthlake[{extra}]' "
                          f"(missing module {exc.name!r})") from exc


__all__ = ["DEFAULT", "REGISTRY", "Entry", "Generator", "HyperParams", "Sampler", "TrainOptions", "check_hyper",
           "entry", "generator_names", "get_generator", "hyper_model", "load_sampler"]
