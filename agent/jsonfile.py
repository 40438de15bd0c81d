"""The agent's small state files (JSON), written so that a crash or a full flash never leaves half a file."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def write_json(path: Path, value: Any) -> None:
    """Write `value` as JSON to `path` through a temporary file beside it, replaced in one step: a reader
    (or the agent after a SIGKILL) finds the old file or the new one, never a mix. Raises OSError."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(value))
    os.replace(tmp, path)
