"""Keeping a library's optional imports out of the agent's memory."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator


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
