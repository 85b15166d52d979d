"""Generators by name: `generator:` in a dataset config picks one.

A generator's module is imported when it is asked for, not with this package: using `tabular_ar` never
loads `ctgan` (Business Source License) or its dependencies.
"""

from __future__ import annotations

from importlib import import_module

from synthlake.generators.base import Generator, HyperParam

DEFAULT = "tabular_ar"
# name -> ("module:class", the pip extra its dependencies come with, if any)
_REGISTRY: dict[str, tuple[str, str | None]] = {
    "ctgan": ("synthlake.generators.ctgan_model:CTGANGenerator", "ctgan"),
    "tabular_ar": ("synthlake.generators.autoregressive:AutoregressiveGenerator", None),
}


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


def generator_names() -> list[str]:
    return sorted(_REGISTRY)


__all__ = ["Generator", "HyperParam", "get_generator", "generator_names"]
