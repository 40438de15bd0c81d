"""Message schema v1 of the ClinicWatch wire contract (docs/wire-contract.md).

Typed models for the four message kinds; both the agent (which builds them)
and the collector (which validates what arrives) use these, so the contract is
written once. Limits live here as named constants.

msgspec rather than pydantic: the same strict checks, in a fraction of the memory the agent has on
a router (pydantic and the schemas it builds were about 18 MiB of the agent's 44 MiB after imports;
docs/agent.md, footprint), and faster decoding for the collector.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any, Literal, Union

from msgspec import Meta, Struct

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

ClinicId = Annotated[str, Meta(pattern=CLINIC_ID_PATTERN)]
BootId = Annotated[str, Meta(pattern=BOOT_ID_PATTERN)]
Name = Annotated[str, Meta(pattern=NAME_PATTERN)]
Text = Annotated[str, Meta(max_length=MAX_TEXT)]
Millis = Annotated[int, Meta(ge=0, le=INT64_MAX)]
Seq = Annotated[int, Meta(ge=0, le=INT64_MAX)]
# A finite number: NaN and infinities fail both bounds (JSON has neither; msgspec would write them as null).
Finite = Annotated[float, Meta(ge=-sys.float_info.max, le=sys.float_info.max)]
Value = Union[bool, Annotated[int, Meta(ge=INT64_MIN, le=INT64_MAX)], Finite, Text]

# How far the wall clock could be trusted when a timestamp was taken:
#   ntp   - clock synchronised at measurement time
#   fixed - taken unsynchronised, recomputed by the agent from `mono` after sync
#   none  - raw, unsynchronised clock; the collector corrects it from `mono`
ClockSync = Literal["ntp", "fixed", "none"]
TRUSTED_SYNC = ("ntp", "fixed")


class _Strict(Struct, forbid_unknown_fields=True, frozen=True, omit_defaults=True, kw_only=True):
    """msgspec structs: strict types (no "1" for 1), unknown keys refused, defaults (None, {}) left out
    when encoded. Built from a document with `wire.build` (which checks every constraint); the
    constructor does not check them."""


class Recorded(_Strict, kw_only=True):
    """What every sample and event carries: identity and time."""

    seq: Seq  # unique per (clinic, boot): redelivery is harmless, loss is countable
    t: Millis  # UTC wall clock at measurement, milliseconds since the epoch
    mono: Millis  # agent's monotonic clock at measurement, milliseconds, per boot
    sync: ClockSync


class Sample(Recorded, kw_only=True):
    m: Name  # measurement, e.g. "icmp", "snmp_if"
    tags: Annotated[dict[Name, Text], Meta(max_length=MAX_TAGS)] = {}
    f: Annotated[dict[Name, Value], Meta(min_length=1, max_length=MAX_FIELDS)]  # fields


class Event(Recorded, kw_only=True):
    kind: Name  # e.g. "link_down", "outage", "device_reboot", "on_battery"
    detail: Annotated[dict[Name, Value], Meta(max_length=MAX_FIELDS)] = {}


class _Envelope(_Strict, kw_only=True):
    v: Literal[1]
    clinic: ClinicId


class Telemetry(_Envelope, kw_only=True):
    boot: BootId
    # Agent's monotonic clock when the batch was sent; present only when the samples' `mono`
    # comes from that same clock (no reboot since), so unsynchronised samples can be corrected.
    mono_now: Millis | None = None
    samples: Annotated[list[Sample], Meta(min_length=1, max_length=MAX_SAMPLES)]


class Events(_Envelope, kw_only=True):
    boot: BootId
    mono_now: Millis | None = None
    events: Annotated[list[Event], Meta(min_length=1, max_length=MAX_EVENTS)]


class Status(_Envelope, kw_only=True):
    state: Literal["online", "offline"]
    boot: BootId
    agent: Annotated[str, Meta(max_length=64)]  # agent version
    t: Millis | None = None  # absent in the Last Will, which is fixed at connect time
    reason: Text | None = None
    # Birth only: the longest the agent stays quiet while its link is up (its flush interval plus the
    # longest wait for its next result); the collector calls it silent only past this.
    quiet_max_s: Annotated[int, Meta(ge=1, le=86_400)] | None = None


class Config(_Envelope, kw_only=True):
    rev: Annotated[int, Meta(ge=1, le=INT64_MAX)]
    config: dict[str, Any]


Message = Telemetry | Events | Status | Config
MODELS: dict[str, type[Message]] = {
    "telemetry": Telemetry,
    "event": Events,
    "status": Status,
    "config": Config,
}
