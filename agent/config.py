"""The agent's configuration: one YAML file validated into a typed model.

Errors name the file, the key (as a path: `probes[2].port`) and the fix. Unknown
keys are refused, so a misspelt key cannot silently fall back to a default.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from agent.probes import AnyProbeSpec
from wire.schema import CLINIC_ID_PATTERN


class ConfigError(ValueError):
    pass


class AgentConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    clinic_id: str = Field(pattern=CLINIC_ID_PATTERN, description="the clinic's id, as registered centrally")
    state_dir: Path = Field(default=Path("/var/lib/clinicwatch"), description="outbox, ledgers, boot id")
    probes: list[AnyProbeSpec] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_probe_names(self) -> "AgentConfig":
        seen: set[tuple[str, str]] = set()
        for spec in self.probes:
            key = (spec.kind, spec.name)
            if key in seen:
                raise ValueError(f"two {spec.kind} probes are named {spec.name!r}; give each its own name")
            seen.add(key)
        return self


def _key_path(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("icmp", "tcp", "dns", "http", "traceroute", "throughput") and out.endswith("]"):
            continue  # the discriminated union's branch name
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def _fix(error: dict) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        return "remove it or check its spelling"
    if kind == "missing":
        return "add it"
    if kind == "union_tag_invalid":
        return f"use one of: {error['ctx']['expected_tags']}"
    if kind == "union_tag_not_found":
        return "add `kind:` (icmp, tcp, dns, http, traceroute, throughput)"
    return "correct the value"


def format_errors(source: str, exc: ValidationError) -> str:
    lines = [f"{source}: {exc.error_count()} problem(s) in the configuration:"]
    for error in exc.errors():
        lines.append(f"  {source}: {_key_path(error['loc'])}: {error['msg']} ({_fix(error)})")
    return "\n".join(lines)


def parse_config(document: object, source: str) -> AgentConfig:
    try:
        return AgentConfig.model_validate(document)
    except ValidationError as exc:
        raise ConfigError(format_errors(source, exc)) from None


def load_config(path: Path) -> AgentConfig:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the configuration: {exc.strerror}") from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{path}: not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(document, dict):
        raise ConfigError(f"{path}: the configuration must be a mapping of keys (clinic_id, probes, ...)")
    return parse_config(document, str(path))
