"""The agent's configuration: one YAML file validated into a typed model.

Errors name the file, the key (as a path: `probes[2].port`) and the fix. Unknown
keys are refused, so a misspelt key cannot silently fall back to a default.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

from msgspec import Meta, field, structs

from agent.probes import PROBES, AnyProbeSpec
from agent.snmp.config import DeviceSpec
from agent.structs import ConfigError, Secret, Section, convert
from wire import yamlio
from wire.schema import CLINIC_ID_PATTERN


if TYPE_CHECKING:
    from agent.snmp.profiles import Profiles

__all__ = ["AgentConfig", "ConfigError", "MqttConfig", "PROBES", "RemoteSettings", "load_config", "parse_config",
           "parse_remote"]


class TlsConfig(Section, kw_only=True):
    ca_file: Annotated[Path, Meta(description="CA that signed the broker's certificate")]
    cert_file: Annotated[Path | None, Meta(description="client certificate, if the broker asks for one")] = None
    key_file: Path | None = None

    def __post_init__(self) -> None:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together: set both or neither")


class MqttConfig(Section, kw_only=True):
    host: Annotated[str, Meta(min_length=1)]
    port: Annotated[int, Meta(ge=1, le=65535)] = 8883
    username: Annotated[str | None, Meta(description="defaults to the clinic id")] = None
    password_file: Annotated[Path | None, Meta(description="file holding the password (preferred)")] = None
    password: Annotated[Secret | None, Meta(description="inline password; prefer password_file")] = None
    tls: Annotated[TlsConfig | None, Meta(description="omit only on a trusted local network")] = None
    keepalive_s: Annotated[int, Meta(ge=5, le=3600, description=(
        "a dead link is noticed within 1.5x this; keep it at the flush interval or above, or pings cost as "
        "much as batches"))] = 180
    reconnect_min_s: Annotated[float, Meta(gt=0)] = 1
    reconnect_max_s: Annotated[float, Meta(gt=0, description="backoff cap; each wait is random below it")] = 300
    batch_max_records: Annotated[int, Meta(ge=1, le=5000)] = 500
    flush_interval_s: Annotated[float, Meta(ge=0, le=3600, description=(
        "samples wait up to this long to go out together (fewer, compressed messages); an event or a failed "
        "check sends them at once"))] = 180
    inflight_batches: Annotated[int, Meta(ge=1, le=100, description="batches awaiting PUBACK at once")] = 4

    def __post_init__(self) -> None:
        if self.password is not None and self.password_file is not None:
            raise ValueError("set password_file or password, not both")
        if self.reconnect_min_s > self.reconnect_max_s:
            raise ValueError("reconnect_min_s must not exceed reconnect_max_s")

    def secret(self) -> str | None:
        if self.password_file is not None:
            try:
                return self.password_file.read_text().strip()
            except OSError as exc:
                raise ConfigError(f"mqtt.password_file {self.password_file}: {exc.strerror}") from None
        return self.password.get_secret_value() if self.password else None


class OutboxConfig(Section, kw_only=True):
    max_mb: Annotated[float, Meta(gt=0, description="past this, old samples are thinned (events kept)")] = 64
    synchronous: Annotated[Literal["full", "normal"], Meta(description="full survives power cuts")] = "full"


class ClockConfig(Section, kw_only=True):
    sync_check: Annotated[Literal["kernel", "file", "assume"], Meta(description=(
        "kernel: adjtimex(); file: `sync_marker` exists; assume: has an RTC"))] = "kernel"
    sync_marker: Annotated[Path | None, Meta(description="e.g. /run/systemd/timesync/synchronized")] = None

    def __post_init__(self) -> None:
        if self.sync_check == "file" and self.sync_marker is None:
            raise ValueError("sync_check: file needs sync_marker")


class RemoteSettings(Section, kw_only=True):
    """What the central site may change through the retained config topic."""

    probes: list[AnyProbeSpec] = []
    self_metrics_interval_s: Annotated[float, Meta(ge=5, description="agent health telemetry")] = 300

    def __post_init__(self) -> None:
        _check_unique(self.probes)


def _check_unique(probes: list) -> None:
    seen: set[tuple[str, str]] = set()
    for spec in probes:
        key = (spec.kind, spec.name)
        if key in seen:
            raise ValueError(f"two {spec.kind} probes are named {spec.name!r}; give each its own name")
        seen.add(key)


class AgentConfig(Section, kw_only=True):
    clinic_id: Annotated[str, Meta(pattern=CLINIC_ID_PATTERN, description="the clinic's id, as registered centrally")]
    state_dir: Annotated[Path, Meta(description="outbox, ledgers, boot id")] = Path("/var/lib/clinicwatch")
    mqtt: Annotated[MqttConfig | None, Meta(description="where to report; needed by `run`")] = None
    outbox: OutboxConfig = field(default_factory=OutboxConfig)
    clock: ClockConfig = field(default_factory=ClockConfig)
    self_metrics_interval_s: Annotated[float, Meta(ge=5)] = 300
    # The agent's own WAN traffic a month (probes, reporting, throughput tests), MB; warned of at risk and spent.
    data_budget_mb: Annotated[float, Meta(gt=0)] | None = None
    probes: list[AnyProbeSpec] = []
    devices: Annotated[list[DeviceSpec], Meta(description="SNMP devices at the clinic (docs/snmp.md)")] = []
    snmp_profile_dirs: Annotated[list[Path], Meta(description=(
        "operator's SNMP device profiles (YAML), added to built-ins"))] = field(
        default_factory=lambda: [Path("/etc/clinicwatch/snmp-profiles")])

    def with_remote(self, settings: RemoteSettings) -> AgentConfig:
        return structs.replace(self, probes=settings.probes, self_metrics_interval_s=settings.self_metrics_interval_s)

    def __post_init__(self) -> None:
        _check_unique(self.probes)
        names = [device.name for device in self.devices]
        for name in names:
            if names.count(name) > 1:
                raise ValueError(f"two devices are named {name!r}; give each its own name")

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


def parse_config(document: object, source: str) -> AgentConfig:
    return convert(document, AgentConfig, source)


def parse_remote(document: object, source: str) -> RemoteSettings:
    return convert(document, RemoteSettings, source, "remote configuration")


def load_config(path: Path) -> AgentConfig:
    document = yamlio.load_file(path, "configuration", ConfigError)
    if not isinstance(document, dict):
        raise ConfigError(f"{path}: the configuration must be a mapping of keys (clinic_id, probes, ...)")
    config = parse_config(document, str(path))
    if config.devices:
        config.profiles(str(path))
    return config
