"""Digests: the facts ingest hands the state engine, over MQTT so that any number of ingest processes
(a shared-subscription group, several machines) feed one engine.

Topic `clinicwatch/collector/v1/facts` (outside the clinics' `clinicwatch/v1/` tree), QoS 1. Payload:
MessagePack `{"v": 1, "src": <ingest client id>, "sent": <ms>, "facts": [row, ...]}`, rows as
collector.state.facts.to_row makes them. MessagePack rather than JSON: a digest is encoded by ingest
and decoded by the engine for every fact, and msgpack does both in about a quarter of the CPU of the
standard json module (bench.state_engine), in two thirds of the bytes. Not compressed: a 10,000-clinic
fleet's facts are ~70 kB/s on the collector's own network, and zlib cost more CPU than the rest. An ingest process publishes one at least every 0.25 s, empty
or not: the engine takes their flow as its sign that ingest is running (else it is blind). A message's
facts are published, and acknowledged by the broker, before the message itself is acknowledged, so a
collector killed at any moment loses no fact (it may send one twice: facts are idempotent).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import msgpack

from collector.state.facts import Fact, from_row, to_row

TOPIC = "clinicwatch/collector/v1/facts"
MAX_FACTS = 20_000  # per digest


@dataclass
class Digest:
    src: str
    sent: int
    facts: list[Fact]


def encode(facts: list[Fact], src: str) -> bytes:
    document = {"v": 1, "src": src, "sent": time.time_ns() // 1_000_000, "facts": [to_row(f) for f in facts]}
    return msgpack.packb(document)  # type: ignore[no-any-return]


def decode(payload: bytes) -> Digest:
    """Raises ValueError for a payload that is not a digest."""
    try:
        # Arrays as tuples: half the CPU of lists here (bench.state_engine), and facts are read only.
        document = msgpack.unpackb(payload, use_list=False)
        if not isinstance(document, dict) or document.get("v") != 1:
            raise ValueError(f"unsupported digest version {document.get('v')!r}")
        return Digest(str(document["src"]), int(document["sent"]), [from_row(r) for r in document["facts"]])
    except (msgpack.UnpackException, UnicodeDecodeError, KeyError, TypeError, IndexError, AttributeError,
            ValueError) as exc:
        raise ValueError(f"not a digest: {exc}") from None
