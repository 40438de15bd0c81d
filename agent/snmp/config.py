"""How a device is polled: address, SNMP version and credentials, timing, what to read.

Secrets may be given inline (for a lab) or, preferably, in files readable only by
the agent (`*_file`); errors name the key and the fix like the rest of the config.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

AUTH_PROTOCOLS = ("md5", "sha", "sha224", "sha256", "sha384", "sha512")
# aes192/aes256 extend the key as net-snmp and RFC drafts do (Blumenthal); the -c variants as Cisco does (Reeder).
PRIV_PROTOCOLS = ("des", "aes", "aes192", "aes256", "aes192c", "aes256c")
SECTIONS = ("system", "interfaces", "host", "storage", "ups", "cellular")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _secret(inline: SecretStr | None, path: Path | None, key: str) -> str | None:
    if path is not None:
        try:
            return path.read_text().strip()
        except OSError as exc:
            raise ValueError(f"{key}_file {path}: {exc.strerror}") from None
    return inline.get_secret_value() if inline is not None else None


class V3Settings(_Section):
    user: str = Field(min_length=1, max_length=32)
    level: Literal["noAuthNoPriv", "authNoPriv", "authPriv"] = "authPriv"
    auth_protocol: Literal[AUTH_PROTOCOLS] = "sha"  # type: ignore[valid-type]
    auth_key: SecretStr | None = Field(default=None, description="passphrase; prefer auth_key_file")
    auth_key_file: Path | None = None
    priv_protocol: Literal[PRIV_PROTOCOLS] = "aes"  # type: ignore[valid-type]
    priv_key: SecretStr | None = Field(default=None, description="passphrase; prefer priv_key_file")
    priv_key_file: Path | None = None
    context: str = Field(default="", max_length=32)

    @model_validator(mode="after")
    def _keys(self) -> "V3Settings":
        for name in ("auth_key", "priv_key"):
            if getattr(self, name) is not None and getattr(self, f"{name}_file") is not None:
                raise ValueError(f"set {name}_file or {name}, not both")
        if self.level in ("authNoPriv", "authPriv") and self.auth_key is None and self.auth_key_file is None:
            raise ValueError(f"level {self.level} needs auth_key_file (or auth_key)")
        if self.level == "authPriv" and self.priv_key is None and self.priv_key_file is None:
            raise ValueError("level authPriv needs priv_key_file (or priv_key)")
        for name in ("auth_key", "priv_key"):
            value = getattr(self, name)
            if value is not None and len(value.get_secret_value()) < 8:
                raise ValueError(f"{name} is shorter than 8 characters, which SNMPv3 (RFC 3414) refuses")
        return self

    def keys(self) -> tuple[str | None, str | None]:
        auth = _secret(self.auth_key, self.auth_key_file, "auth_key") if self.level != "noAuthNoPriv" else None
        priv = _secret(self.priv_key, self.priv_key_file, "priv_key") if self.level == "authPriv" else None
        return auth, priv


class InterfaceFilter(_Section):
    include: list[str] = Field(default_factory=lambda: ["*"], description="shell patterns on ifName/ifDescr")
    exclude: list[str] = Field(default_factory=lambda: ["lo", "lo0"], description="applied after include")
    skip_admin_down: bool = Field(default=True, description="interfaces switched off on purpose are not reported")


class DeviceSpec(_Section):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$", description="tag `device` in results")
    host: str
    port: int = Field(default=161, ge=1, le=65535)
    version: Literal["1", "2c", "3"] = Field(default="2c", description="1 only for old UPS cards that speak "
                                                                      "nothing newer (no 64-bit counters, no GETBULK)")
    community: SecretStr | None = Field(default=None, description="v2c community; prefer community_file")
    community_file: Path | None = None
    v3: V3Settings | None = None
    profile: str = Field(default="auto", description="`auto` picks by sysObjectID; or a profile's name")
    interval_s: float = Field(default=60, ge=5, le=86_400)
    timeout_s: float = Field(default=3, gt=0, le=60, description="per request; a modem's agent can be slow")
    retries: int = Field(default=2, ge=0, le=10)
    max_repetitions: int = Field(default=25, ge=1, le=200, description="rows per GETBULK request")
    sections: list[Literal[SECTIONS]] | None = Field(  # type: ignore[valid-type]
        default=None, description="what to read; default: what the profile lists")
    interfaces: InterfaceFilter = Field(default_factory=InterfaceFilter)

    @model_validator(mode="after")
    def _credentials(self) -> "DeviceSpec":
        if self.version in ("1", "2c"):
            if self.v3 is not None:
                raise ValueError("a `v3` section needs version: \"3\"")
            if self.community is not None and self.community_file is not None:
                raise ValueError("set community_file or community, not both")
            if self.community is None and self.community_file is None:
                raise ValueError(f"version {self.version} needs community_file (or community)")
        elif self.v3 is None:
            raise ValueError("version 3 needs a `v3` section (user, level, keys)")
        return self

    def community_string(self) -> str:
        return _secret(self.community, self.community_file, "community") or ""

    def budget_s(self) -> float:
        """The most one poll may take: every request's retries, bounded by the interval."""
        return min(self.interval_s * 0.9, max(10.0, self.timeout_s * (self.retries + 1) * 4))
