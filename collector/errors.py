"""pydantic's validation errors, written for whoever edits the file: one line per problem,
`clinicwatch.yaml: state.rules.down_after_s: Input should be greater than 0`."""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

# Union branch names pydantic puts in an error's location; they say nothing to the reader.
BRANCHES = frozenset({"bool", "int", "float", "str", "constrained-int", "constrained-str"})


def error_path(loc: tuple) -> str:
    """A pydantic error location as a reader writes it: `clinics[3].contacts.email`."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in BRANCHES or "[" in str(part):
            continue
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def explain(path: Path | str, exc: ValidationError) -> str:
    """Every problem pydantic found in file `path`, one per line."""
    return "\n".join(f"{path}: {error_path(e['loc'])}: {e['msg']}" for e in exc.errors())
