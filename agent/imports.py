"""Keeping a library's optional imports out of the agent's memory."""

from __future__ import annotations

import contextlib
import importlib
import sys
import types
from collections.abc import Iterator
from typing import Any


@contextlib.contextmanager
def kept_out(name: str) -> Iterator[None]:
    """Within the block, `import name` fails as if `name` were not installed: for a library that loads,
    when it finds it, a module the agent never uses. Only within: a later `import name` works as usual.
    Nothing is done if `name` is loaded already."""
    if name in sys.modules:
        yield
        return
    sys.modules[name] = None  # type: ignore[assignment]
    try:
        yield
    finally:
        del sys.modules[name]


@contextlib.contextmanager
def deferred(name: str) -> Iterator[None]:
    """Within the block, `import name` gives a stand-in that imports the real module when one of its
    attributes is first asked for: for a library that imports, at its own import, a module it uses only
    on a path the agent seldom takes. After the block `import name` imports the real module as usual
    (and rebinds it on its package). Nothing is done if `name` is loaded already."""
    if name in sys.modules:
        yield
        return
    package, _, child = name.rpartition(".")
    stand_in = types.ModuleType(name, "A stand-in: imports the real module at first use (agent.imports.deferred).")

    def real(attribute: str) -> Any:
        if sys.modules.get(name) is stand_in:
            del sys.modules[name]
        return getattr(importlib.import_module(name), attribute)

    stand_in.__getattr__ = real  # type: ignore[attr-defined]  # a module's __getattr__ (PEP 562)
    sys.modules[name] = stand_in
    if package:
        # `import a.b` of a module already in sys.modules does not bind it on `a`: the library reads `a.b`.
        setattr(importlib.import_module(package), child, stand_in)
    try:
        yield
    finally:
        if sys.modules.get(name) is stand_in:
            del sys.modules[name]
