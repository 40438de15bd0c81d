"""The collector's configuration: one YAML file validated into a typed model (errors name file, key, fix)."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from collector.alerts.channels.email import SmtpServer
from collector.alerts.channels.sms import SmsGateway
from collector.errors import explain
from collector.state.rules import StateRules
from wire import yamlio


class ConfigError(ValueError):
    pass


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _read_secret(path: Path | None, key: str) -> str | None:
    if path is None:
        return None
    try:
        return path.read_text().strip()
    except OSError as exc:
        raise ConfigError(f"{key} {path}: {exc.strerror}") from None


class IntakeConfig(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    username: str | None = Field(default="clinicwatch-collector")
    password_file: Path | None = None
    ca_file: Path | None = Field(default=None, description="TLS to the broker when set")
    client_id: str = Field(default="clinicwatch-collector-1", description="unique per collector process")
    share_group: str | None = Field(default=None, description="several collectors split the load: $share/<group>/")
    session_expiry_s: int = Field(default=86_400, ge=0, description="the broker keeps messages this long for us")
    keepalive_s: int = Field(default=30, ge=5)
    receive_maximum: int = Field(default=5000, ge=1, le=65535, description=(
        "unacknowledged messages the broker may send at once; acks wait for the store, so a small window "
        "throttles intake, and this times the message size bounds the collector's memory"))

    def password(self) -> str | None:
        return _read_secret(self.password_file, "intake.password_file")


class StoreConfig(_Section):
    kind: Literal["influx_v1", "influx_v2"] = Field(description="influx_v1: /write (InfluxDB 1.x); influx_v2: "
                                                                "influxdb-client (InfluxDB 2.x/3.x, 1.8+)")
    url: str = Field(pattern=r"^https?://")
    database: str | None = Field(default=None, description="influx_v1")
    bucket: str | None = Field(default=None, description="influx_v2")
    org: str = Field(default="clinicwatch", description="influx_v2")
    token_file: Path | None = Field(default=None, description="influx_v2 token")
    batch_points: int = Field(default=5000, ge=1, le=100_000)
    flush_interval_s: float = Field(default=1.0, gt=0, le=60)
    timeout_s: float = Field(default=10, gt=0)

    @model_validator(mode="after")
    def _target(self) -> "StoreConfig":
        if self.kind == "influx_v1" and not self.database:
            raise ValueError("influx_v1 needs `database`")
        if self.kind == "influx_v2" and not self.bucket:
            raise ValueError("influx_v2 needs `bucket`")
        return self

    def token(self) -> str | None:
        return _read_secret(self.token_file, "store.token_file")


class StateConfig(_Section):
    engine: bool = Field(default=True, description=(
        "run the state engine in this collector; in a shared-subscription group exactly one collector does "
        "(every ingest process feeds it)"))
    client_id: str | None = Field(default=None, description="the engine's MQTT client id (default: intake's + '-state')")
    maintenance_file: Path | None = Field(default=None, description=(
        "YAML list of maintenance windows (clinics or regions, start, end); re-read when it changes"))
    lag_s: float = Field(default=2.0, ge=0, le=60, description=(
        "the engine judges the fleet this long in the past, so facts from several ingest processes are in"))
    snapshot_s: float = Field(default=300, gt=0, description=(
        "the whole engine is written down at most this often, once the facts since the last time number 10 a "
        "clinic (and at the latest 12 times this); after a restart the journal since is replayed"))
    status_interval_s: float = Field(default=60, ge=0, description=(
        "every clinic's current state is written as a clinic_status point this often (0: never); Grafana's "
        "fleet map, counts and availability panels read them"))
    rules: StateRules = Field(default_factory=StateRules)


class AlertsConfig(_Section):
    """When and how incidents are told to the registry's contacts (collector/alerts, docs/alerts.md)."""
    group_wait_s: float = Field(default=30, ge=0, description=(
        "wait this long after a clinic is found down before the first message, so clinics failing together "
        "arrive as one"))
    group_interval_s: float = Field(default=300, ge=0, description="at most one update per incident this often")
    repeat_interval_s: float = Field(default=14_400, gt=0, description="a reminder while nothing changes")
    escalate_after_s: float = Field(default=1800, ge=0, description=(
        "contacts with escalation: true hear of an incident once it has been open this long"))
    deadline_s: float = Field(default=3600, gt=0, description=(
        "a message not delivered this long after it was decided is given up and reported (expired)"))
    retry_min_s: float = Field(default=5, gt=0, description="first retry of a failed send; doubles each time")
    retry_max_s: float = Field(default=300, gt=0)
    status_url: str | None = Field(default=None, pattern=r"^https?://", description=(
        "the status page's address; messages link to <status_url>/incidents/<id>, emails each clinic to "
        "<status_url>/clinics/<id>"))
    email: SmtpServer | None = Field(default=None, description="the SMTP server for contacts with an email")
    sms: SmsGateway | None = Field(default=None, description="the HTTP SMS gateway for contacts with a phone")
    silences_file: Path | None = Field(default=None, description=(
        "the silences `clinicwatch-collector silence` manages (default: <data_dir>/silences.yaml)"))


class BasicAuth(_Section):
    user: str = Field(min_length=1)
    password_file: Path = Field(description="file holding the password")

    def password(self) -> str:
        return _read_secret(self.password_file, "status_page.basic_auth.password_file") or ""


class StatusPageConfig(_Section):
    """The status page (collector/web/statuspage.py), served beside the API on metrics_host:metrics_port."""
    enabled: bool = Field(default=True, description=(
        "serve /, /clinics/<id> and /incidents/<id> (needs the state engine)"))
    title: str = Field(default="ClinicWatch", max_length=120, description="the page's heading, e.g. the health service")
    tz: str = Field(default="UTC", description="time zone of the times shown, e.g. Europe/Madrid")
    basic_auth: BasicAuth | None = Field(default=None, description=(
        "ask for this user and password on the status page and the JSON API (/metrics stays open); needed "
        "when metrics_host is a public address"))

    @model_validator(mode="after")
    def _zone(self) -> "StatusPageConfig":
        from collector.registry import check_zone

        check_zone(self.tz)
        return self


class CollectorConfig(_Section):
    intake: IntakeConfig = Field(default_factory=IntakeConfig)
    store: StoreConfig
    registry: Path = Field(description="the clinic registry: YAML, or .csv as a spreadsheet exports it")
    data_dir: Path = Field(default=Path("/var/lib/clinicwatch-collector"), description="dead letters and spool")
    spool_max_mb: float = Field(default=2048, gt=0, description="past this, stop acknowledging: the broker holds")
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(default=9465, ge=0, le=65535, description=(
        "Prometheus /metrics and the state API (/api/v1/...); 0 turns both off"))
    state: StateConfig = Field(default_factory=StateConfig)
    alerts: AlertsConfig = Field(default_factory=AlertsConfig)
    status_page: StatusPageConfig = Field(default_factory=StatusPageConfig)

    @model_validator(mode="after")
    def _private(self) -> "CollectorConfig":
        # No login is needed on a private network; a public address must not show the fleet to anyone.
        try:
            public = ipaddress.ip_address(self.metrics_host).is_global
        except ValueError:
            public = False  # a name, or 0.0.0.0 / ::: the operator's network decides
        if public and self.metrics_port and self.status_page.enabled and self.status_page.basic_auth is None:
            raise ValueError(f"metrics_host {self.metrics_host} is a public address: set status_page.basic_auth "
                             "(user, password_file), bind a private address, or set status_page.enabled: false")
        return self

    def silences_path(self) -> Path:
        return self.alerts.silences_file or self.data_dir / "silences.yaml"


def load_collector_config(path: Path) -> CollectorConfig:
    document = yamlio.load_file(path, "configuration", ConfigError)
    try:
        config = CollectorConfig.model_validate(document)
    except ValidationError as exc:
        raise ConfigError(explain(path, exc)) from None
    if not config.registry.is_absolute():
        config = config.model_copy(update={"registry": path.parent / config.registry})
    window_file = config.state.maintenance_file
    if window_file is not None and not window_file.is_absolute():
        state = config.state.model_copy(update={"maintenance_file": path.parent / window_file})
        config = config.model_copy(update={"state": state})
    return config
