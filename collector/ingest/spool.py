"""Disk spool for points the database could not take: each batch a file, written and fsynced
before the messages it came from are acknowledged, replayed oldest first when the database is back.

Bounded by `max_bytes`: when full, the pipeline stops acknowledging, and the broker
(which holds unacknowledged messages in the collector's persistent session) becomes
the buffer. Memory stays bounded either way.
"""

from __future__ import annotations

import itertools
import os
import time
from pathlib import Path


class Spool:
    def __init__(self, directory: Path, max_bytes: int) -> None:
        self.dir = directory
        self.max_bytes = max_bytes
        directory.mkdir(parents=True, exist_ok=True)
        for stale in directory.glob("*.tmp"):
            stale.unlink()  # a batch half-written when the process died was never acknowledged
        self._counter = itertools.count()

    def files(self) -> list[Path]:
        return sorted(self.dir.glob("*.lp"))

    def bytes(self) -> int:
        return sum(p.stat().st_size for p in self.files())

    def has_room(self, lines: list[str]) -> bool:
        return self.bytes() + sum(len(line) + 1 for line in lines) <= self.max_bytes

    def put(self, lines: list[str]) -> Path:
        name = f"{time.time_ns():020d}-{os.getpid()}-{next(self._counter):06d}"
        final = self.dir / f"{name}.lp"
        self.rewrite(final, lines)
        return final

    def rewrite(self, path: Path, lines: list[str]) -> None:
        """Write `path` (a new batch, or what is left of a replayed one) whole or not at all, durably."""
        tmp = path.with_suffix(".tmp")
        with open(tmp, "w") as out:
            out.write("\n".join(lines))
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(self.dir, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def read(self, path: Path) -> list[str]:
        return path.read_text().split("\n")
