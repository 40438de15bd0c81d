"""The agent's configuration: one YAML file validated into a typed model.

Errors name the file, the key (as a path: `probes[2].port`) and the fix. Unknown
keys are refused, so a misspelt key cannot silently fall back to a default.
"""

from __future__ import annotations

from pathlib import Path

from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from agent.probes import PROBES, AnyProbeSpec
from agent.snmp.config import DeviceSpec
from wire import yamlio
from wire.codec import error_path
from wire.schema import CLINIC_ID_PATTERN


if TYPE_CHECKING:
    from agent.snmp.profiles import Profiles


class ConfigError(ValueError):
    pass


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TlsConfig(_Section):
    ca_file: Path = Field(description="CA that signed the broker's certificate")
    cert_file: Path | None = Field(default=None, description="client certificate, if the broker asks for one")
    key_file: Path | None = None

    @model_validator(mode="after")
    def _pair(self) -> "TlsConfig":
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together: set both or neither")
        return self


class MqttConfig(_Section):
    host: str
    port: int = Field(default=8883, ge=1, le=65535)
    username: str | None = Field(default=None, description="defaults to the clinic id")
    password_file: Path | None = Field(default=None, description="file holding the password (preferred)")
    password: SecretStr | None = Field(default=None, description="inline password; prefer password_file")
    tls: TlsConfig | None = Field(default=None, description="omit only on a trusted local network")
    keepalive_s: int = Field(default=60, ge=5, le=3600, description="a dead link is noticed within 1.5x this")
    reconnect_min_s: float = Field(default=1, gt=0)
    reconnect_max_s: float = Field(default=300, gt=0, description="backoff cap; each wait is random below it")
    batch_max_records: int = Field(default=500, ge=1, le=5000)
    flush_interval_s: float = Field(default=30, ge=0, le=3600, description=(
        "samples wait up to this long to go out together (fewer, compressed messages); events never wait"))
    inflight_batches: int = Field(default=4, ge=1, le=100, description="batches awaiting PUBACK at once")

    @model_validator(mode="after")
    def _one_password(self) -> "MqttConfig":
        if self.password is not None and self.password_file is not None:
            raise ValueError("set password_file or password, not both")
        if self.reconnect_min_s > self.reconnect_max_s:
            raise ValueError("reconnect_min_s must not exceed reconnect_max_s")
        return self

    def secret(self) -> str | None:
        if self.password_file is not None:
            try:
                return self.password_file.read_text().strip()
            except OSError as exc:
                raise ConfigError(f"mqtt.password_file {self.password_file}: {exc.strerror}") from None
        return self.password.get_secret_value() if self.password else None


class OutboxConfig(_Section):
    max_mb: float = Field(default=64, gt=0, description="past this, old samples are thinned (events kept)")
    synchronous: Literal["full", "normal"] = Field(default="full", description="full survives power cuts")


class ClockConfig(_Section):
    sync_check: Literal["kernel", "file", "assume"] = Field(
        default="kernel", description="kernel: adjtimex(); file: `sync_marker` exists; assume: has an RTC")
    sync_marker: Path | None = Field(default=None, description="e.g. /run/systemd/timesync/synchronized")

    @model_validator(mode="after")
    def _marker(self) -> "ClockConfig":
        if self.sync_check == "file" and self.sync_marker is None:
            raise ValueError("sync_check: file needs sync_marker")
        return self


class RemoteSettings(_Section):
    """What the central site may change through the retained config topic."""

    probes: list[AnyProbeSpec] = Field(default_factory=list)
    self_metrics_interval_s: float = Field(default=300, ge=5, description="agent health telemetry")

    @model_validator(mode="after")
    def _unique_probe_names(self) -> "RemoteSettings":
        _check_unique(self.probes)
        return self


def _check_unique(probes: list) -> None:
    seen: set[tuple[str, str]] = set()
    for spec in probes:
        key = (spec.kind, spec.name)
        if key in seen:
            raise ValueError(f"two {spec.kind} probes are named {spec.name!r}; give each its own name")
        seen.add(key)


class AgentConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    clinic_id: str = Field(pattern=CLINIC_ID_PATTERN, description="the clinic's id, as registered centrally")
    state_dir: Path = Field(default=Path("/var/lib/clinicwatch"), description="outbox, ledgers, boot id")
    mqtt: MqttConfig | None = Field(default=None, description="where to report; needed by `run`")
    outbox: OutboxConfig = Field(default_factory=OutboxConfig)
    clock: ClockConfig = Field(default_factory=ClockConfig)
    self_metrics_interval_s: float = Field(default=300, ge=5)
    data_budget_mb: float | None = Field(default=None, gt=0, description="the agent's own WAN traffic a month "
                                         "(probes, reporting, throughput tests), MB; warned of at risk and spent")
    probes: list[AnyProbeSpec] = Field(default_factory=list)
    devices: list[DeviceSpec] = Field(default_factory=list, description="SNMP devices at the clinic (docs/snmp.md)")
    snmp_profile_dirs: list[Path] = Field(default_factory=lambda: [Path("/etc/clinicwatch/snmp-profiles")],
                                          description="operator's SNMP device profiles (YAML), added to built-ins")

    def with_remote(self, settings: RemoteSettings) -> "AgentConfig":
        return self.model_copy(update={"probes": settings.probes,
                                       "self_metrics_interval_s": settings.self_metrics_interval_s})

    @model_validator(mode="after")
    def _unique_probe_names(self) -> "AgentConfig":
        _check_unique(self.probes)
        names = [device.name for device in self.devices]
        for name in names:
            if names.count(name) > 1:
                raise ValueError(f"two devices are named {name!r}; give each its own name")
        return self

    def profiles(self, source: str = "the configuration") -> "Profiles":
        """The SNMP device profiles (built-in and the operator's); checks every device's `profile`."""
        from agent.snmp.profiles import ProfileError, load_profiles

        try:
            profiles = load_profiles(tuple(self.snmp_profile_dirs))
        except ProfileError as exc:
            raise ConfigError(str(exc)) from None
        for number, device in enumerate(self.devices):
            if device.profile != "auto" and device.profile not in profiles.by_name:
                raise ConfigError(f"{source}: devices[{number}].profile: no SNMP profile named {device.profile!r} "
                                  f"(use `auto` or one of: {', '.join(sorted(profiles.by_name))})")
        return profiles


def _fix(error: dict) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        return "remove it or check its spelling"
    if kind == "missing":
        return "add it"
    if kind == "union_tag_invalid":
        return f"use one of: {error['ctx']['expected_tags']}"
    if kind == "union_tag_not_found":
        return f"add `kind:` ({', '.join(PROBES)})"
    return "correct the value"


def format_errors(source: str, exc: ValidationError, what: str = "configuration") -> str:
    lines = [f"{source}: {exc.error_count()} problem(s) in the {what}:"]
    for error in exc.errors():
        where = error_path(error["loc"], set(PROBES), top="(top level)")
        lines.append(f"  {source}: {where}: {error['msg']} ({_fix(error)})")
    return "\n".join(lines)


def parse_config(document: object, source: str) -> AgentConfig:
    try:
        return AgentConfig.model_validate(document)
    except ValidationError as exc:
        raise ConfigError(format_errors(source, exc)) from None


def parse_remote(document: object, source: str) -> RemoteSettings:
    try:
        return RemoteSettings.model_validate(document)
    except ValidationError as exc:
        raise ConfigError(format_errors(source, exc)) from None


def load_config(path: Path) -> AgentConfig:
    document = yamlio.load_file(path, "configuration", ConfigError)
    if not isinstance(document, dict):
        raise ConfigError(f"{path}: the configuration must be a mapping of keys (clinic_id, probes, ...)")
    config = parse_config(document, str(path))
    if config.devices:
        config.profiles(str(path))
    return config
