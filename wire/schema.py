"""Message schema v1 of the ClinicWatch wire contract (docs/wire-contract.md).

Typed models for the four message kinds; both the agent (which builds them)
and the collector (which validates what arrives) use these, so the contract is
written once. Limits live here as named constants.
"""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field

VERSION = 1

# Size limits. A clinic pays for LTE bytes; a collector must not be blown up.
MAX_PAYLOAD_BYTES = 256 * 1024  # on the wire (after compression)
MAX_DECODED_BYTES = 1024 * 1024  # after decompression
MAX_SAMPLES = 5000  # per telemetry batch
MAX_EVENTS = 1000  # per event batch
MAX_TAGS = 8
MAX_FIELDS = 64
MAX_TEXT = 256

CLINIC_ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"
BOOT_ID_PATTERN = r"^[0-9a-f]{8,32}$"
NAME_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

ClinicId = Annotated[str, Field(pattern=CLINIC_ID_PATTERN)]
BootId = Annotated[str, Field(pattern=BOOT_ID_PATTERN)]
Name = Annotated[str, Field(pattern=NAME_PATTERN)]
Text = Annotated[str, Field(max_length=MAX_TEXT)]
Millis = Annotated[int, Field(ge=0, le=INT64_MAX)]
Seq = Annotated[int, Field(ge=0, le=INT64_MAX)]
Value = Union[
    bool,
    Annotated[int, Field(ge=INT64_MIN, le=INT64_MAX)],
    Annotated[float, Field(allow_inf_nan=False)],
    Text,
]

# How far the wall clock could be trusted when a timestamp was taken:
#   ntp   - clock synchronised at measurement time
#   fixed - taken unsynchronised, recomputed by the agent from `mono` after sync
#   none  - raw, unsynchronised clock; the collector corrects it from `mono`
ClockSync = Literal["ntp", "fixed", "none"]
TRUSTED_SYNC = ("ntp", "fixed")


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class Recorded(_Strict):
    """What every sample and event carries: identity and time."""

    seq: Seq  # unique per (clinic, boot): redelivery is harmless, loss is countable
    t: Millis  # UTC wall clock at measurement, milliseconds since the epoch
    mono: Millis  # agent's monotonic clock at measurement, milliseconds, per boot
    sync: ClockSync


class Sample(Recorded):
    m: Name  # measurement, e.g. "icmp", "snmp_if"
    tags: dict[Name, Text] = Field(default_factory=dict, max_length=MAX_TAGS)
    f: dict[Name, Value] = Field(min_length=1, max_length=MAX_FIELDS)  # fields


class Event(Recorded):
    kind: Name  # e.g. "link_down", "outage", "device_reboot", "on_battery"
    detail: dict[Name, Value] = Field(default_factory=dict, max_length=MAX_FIELDS)


class _Envelope(_Strict):
    v: Literal[1]
    clinic: ClinicId


class Telemetry(_Envelope):
    boot: BootId
    # Agent's monotonic clock when the batch was sent; present only when the samples' `mono`
    # comes from that same clock (no reboot since), so unsynchronised samples can be corrected.
    mono_now: Millis | None = None
    samples: list[Sample] = Field(min_length=1, max_length=MAX_SAMPLES)


class Events(_Envelope):
    boot: BootId
    mono_now: Millis | None = None
    events: list[Event] = Field(min_length=1, max_length=MAX_EVENTS)


class Status(_Envelope):
    state: Literal["online", "offline"]
    boot: BootId
    agent: Annotated[str, Field(max_length=64)]  # agent version
    t: Millis | None = None  # absent in the Last Will, which is fixed at connect time
    reason: Text | None = None


class Config(_Envelope):
    rev: Annotated[int, Field(ge=1, le=INT64_MAX)]
    config: dict[str, object]


Message = Telemetry | Events | Status | Config
MODELS: dict[str, type[Message]] = {
    "telemetry": Telemetry,
    "event": Events,
    "status": Status,
    "config": Config,
}
