"""Intake: every MQTT message is validated by the wire contract, then stored or dead-lettered.

A rejected message never stops intake: it is counted by reason and kept, raw,
with its reason, in the dead-letter file for inspection
(`clinicwatch-collector validate --topic T FILE` re-checks one).
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import wire
from collector.lineproto import telemetry_lines

Store = Callable[[list[str]], None]


class DeadLetters:
    """Append-only JSON-lines file of rejected messages: topic, reason, detail, raw payload."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def keep(self, topic: str, payload: bytes, rejected: wire.Rejected, received_ms: int) -> None:
        record = {"received_ms": received_ms, "topic": topic, "reason": str(rejected.reason),
                  "detail": rejected.detail, "payload_b64": base64.b64encode(payload).decode()}
        with self._lock, open(self.path, "a") as out:
            out.write(json.dumps(record) + "\n")


class Intake:
    def __init__(self, store: Store, dead_letters: DeadLetters, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.dead_letters = dead_letters
        self.clock = clock
        self.rejected: Counter[str] = Counter()
        self.accepted: Counter[str] = Counter()
        self.points = 0

    def handle(self, topic: str, payload: bytes) -> wire.Message | None:
        received_ms = int(self.clock() * 1000)
        try:
            message = wire.decode(topic, payload, received_ms)
        except wire.Rejected as rejected:
            self.rejected[str(rejected.reason)] += 1
            self.dead_letters.keep(topic, payload, rejected, received_ms)
            return None
        if isinstance(message, wire.Telemetry):
            lines = list(telemetry_lines(message, received_ms))
            self.store(lines)
            self.points += len(lines)
        self.accepted[type(message).__name__.lower()] += 1
        return message
