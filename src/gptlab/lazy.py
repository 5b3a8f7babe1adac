"""Packages whose public names are imported on first use (PEP 562).

`import gptlab` and the command line's parsers stay light when a package's `__init__` lists its
names instead of importing them: the module that defines a name (and torch, if it needs it) is
imported the first time someone asks for that name.

    __getattr__, __dir__ = lazy_names(__name__, {"generate": ".loop", "GPT": "gptlab.models.gpt"})
"""

from __future__ import annotations

import importlib
import sys


def lazy_names(package: str, names: dict[str, str]):
    """`(__getattr__, __dir__)` for `package`, where `names` maps each public name to the
    module that defines it (".module" is relative to the package)."""

    def __getattr__(name: str):
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(names[name], package), name)
        setattr(sys.modules[package], name, value)  # later lookups find it without coming back
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(names))

    return __getattr__, __dir__
