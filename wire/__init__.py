"""The ClinicWatch wire contract, v1: topics, message schema, encoding, validation.

Imported by both the agent and the collector so that nothing about the wire is
written twice. The written spec is docs/wire-contract.md.
"""

from wire.codec import (
    HOLD_CLOCK_S,
    KINDS,
    MAX_AGE_MS,
    MAX_FUTURE_MS,
    TOPIC_ROOT,
    Reason,
    Rejected,
    build,
    decode,
    effective_time,
    encode,
    held_seconds,
    parse_topic,
    records,
    subscription,
    topic,
)
from wire.schema import VERSION, Config, Event, Events, Message, Sample, Status, Telemetry

__all__ = [
    "HOLD_CLOCK_S", "KINDS", "MAX_AGE_MS", "MAX_FUTURE_MS", "TOPIC_ROOT", "VERSION", "Config", "Event", "Events", "Message",
    "Reason", "Rejected", "build", "Sample", "Status", "Telemetry", "decode", "effective_time", "encode", "held_seconds",
    "parse_topic", "records", "subscription", "topic",
]
