"""How a device is polled: address, SNMP version and credentials, timing, what to read.

Secrets may be given inline (for a lab) or, preferably, in files readable only by
the agent (`*_file`); errors name the key and the fix like the rest of the config.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from msgspec import Meta, field

from agent.structs import Secret, Section

AUTH_PROTOCOLS = ("md5", "sha", "sha224", "sha256", "sha384", "sha512")
# aes192/aes256 extend the key as net-snmp and RFC drafts do (Blumenthal); the -c variants as Cisco does (Reeder).
PRIV_PROTOCOLS = ("des", "aes", "aes192", "aes256", "aes192c", "aes256c")
SECTIONS = ("system", "interfaces", "host", "storage", "ups", "cellular")


def has_cryptography() -> bool:
    """Whether the `cryptography` package is installed (SNMPv3 DES privacy needs it; docs/snmp.md)."""
    from importlib.util import find_spec
    return find_spec("cryptography") is not None


def _secret(inline: Secret | None, path: Path | None, key: str) -> str | None:
    if path is not None:
        try:
            return path.read_text().strip()
        except OSError as exc:
            raise ValueError(f"{key}_file {path}: {exc.strerror}") from None
    return inline.get_secret_value() if inline is not None else None


class V3Settings(Section, kw_only=True):
    user: Annotated[str, Meta(min_length=1, max_length=32)]
    level: Literal["noAuthNoPriv", "authNoPriv", "authPriv"] = "authPriv"
    auth_protocol: Literal[AUTH_PROTOCOLS] = "sha"  # type: ignore[valid-type]
    auth_key: Annotated[Secret | None, Meta(description="passphrase; prefer auth_key_file")] = None
    auth_key_file: Path | None = None
    priv_protocol: Literal[PRIV_PROTOCOLS] = "aes"  # type: ignore[valid-type]
    priv_key: Annotated[Secret | None, Meta(description="passphrase; prefer priv_key_file")] = None
    priv_key_file: Path | None = None
    context: Annotated[str, Meta(max_length=32)] = ""

    def __post_init__(self) -> None:
        for name in ("auth_key", "priv_key"):
            if getattr(self, name) is not None and getattr(self, f"{name}_file") is not None:
                raise ValueError(f"set {name}_file or {name}, not both")
        if self.level in ("authNoPriv", "authPriv") and self.auth_key is None and self.auth_key_file is None:
            raise ValueError(f"level {self.level} needs auth_key_file (or auth_key)")
        if self.level == "authPriv" and self.priv_key is None and self.priv_key_file is None:
            raise ValueError("level authPriv needs priv_key_file (or priv_key)")
        if self.level == "authPriv" and self.priv_protocol == "des" and not has_cryptography():
            raise ValueError("priv_protocol des needs the Python package `cryptography`, which the agent's install "
                             "leaves out: install it beside the agent (pip install cryptography), or use aes, "
                             "which net-snmp and most devices offer")
        for name in ("auth_key", "priv_key"):
            value = getattr(self, name)
            if value is not None and len(value.get_secret_value()) < 8:
                raise ValueError(f"{name} is shorter than 8 characters, which SNMPv3 (RFC 3414) refuses")

    def keys(self) -> tuple[str | None, str | None]:
        auth = _secret(self.auth_key, self.auth_key_file, "auth_key") if self.level != "noAuthNoPriv" else None
        priv = _secret(self.priv_key, self.priv_key_file, "priv_key") if self.level == "authPriv" else None
        return auth, priv


class InterfaceFilter(Section, kw_only=True):
    include: Annotated[list[str], Meta(description="shell patterns on ifName/ifDescr")] = field(
        default_factory=lambda: ["*"])
    exclude: Annotated[list[str], Meta(description="applied after include")] = field(
        default_factory=lambda: ["lo", "lo0"])
    skip_admin_down: Annotated[bool, Meta(description="interfaces switched off on purpose are not reported")] = True


class DeviceSpec(Section, kw_only=True):
    name: Annotated[str, Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$", description="tag `device` in results")]
    host: Annotated[str, Meta(min_length=1)]
    port: Annotated[int, Meta(ge=1, le=65535)] = 161
    version: Annotated[Literal["1", "2c", "3"], Meta(description=(
        "1 only for old UPS cards that speak nothing newer (no 64-bit counters, no GETBULK)"))] = "2c"
    community: Annotated[Secret | None, Meta(description="v2c community; prefer community_file")] = None
    community_file: Path | None = None
    v3: V3Settings | None = None
    profile: Annotated[str, Meta(description="`auto` picks by sysObjectID; or a profile's name")] = "auto"
    interval_s: Annotated[float, Meta(ge=5, le=86_400, description=(
        "how often the device is polled: its events and changed facts go out at the poll that saw them"))] = 60
    report_interval_s: Annotated[float, Meta(ge=5, le=86_400, description=(
        "how often its measurements (rates, levels) go out; rates averaged over the whole interval"))] = 300
    timeout_s: Annotated[float, Meta(gt=0, le=60, description="per request; a modem's agent can be slow")] = 3
    retries: Annotated[int, Meta(ge=0, le=10)] = 2
    max_repetitions: Annotated[int, Meta(ge=1, le=200, description="rows per GETBULK request")] = 25
    sections: Annotated[list[Literal[SECTIONS]] | None, Meta(  # type: ignore[valid-type]
        description="what to read; default: what the profile lists")] = None
    interfaces: InterfaceFilter = field(default_factory=InterfaceFilter)

    def __post_init__(self) -> None:
        if self.version in ("1", "2c"):
            if self.v3 is not None:
                raise ValueError("a `v3` section needs version: \"3\"")
            if self.community is not None and self.community_file is not None:
                raise ValueError("set community_file or community, not both")
            if self.community is None and self.community_file is None:
                raise ValueError(f"version {self.version} needs community_file (or community)")
        elif self.v3 is None:
            raise ValueError("version 3 needs a `v3` section (user, level, keys)")

    def community_string(self) -> str:
        return _secret(self.community, self.community_file, "community") or ""

    def reports_every_s(self) -> float:
        return max(self.report_interval_s, self.interval_s)

    def budget_s(self) -> float:
        """The most one poll may take: every request's retries, bounded by the interval."""
        return min(self.interval_s * 0.9, max(10.0, self.timeout_s * (self.retries + 1) * 4))
