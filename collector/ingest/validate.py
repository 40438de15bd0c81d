"""Validation: every message is checked against the wire contract and the clinic registry, then
turned into line protocol, or rejected: counted by reason and kept, raw, in the dead letters.

A rejected message never stops intake. `clinicwatch-collector validate --topic T FILE`
re-checks one kept payload.
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
from collector.ingest.agentclock import DRIFT, AgentClocks
from collector.ingest.lineproto import TIME_BOUND, record_line, stamp, telemetry_lines, unstorable
from collector.registry import Registry
from collector.state.facts import Fact, facts_of

MAX_CACHED_HEADS = 200_000  # series (clinic x measurement x tags); a national fleet has tens of thousands
UNKNOWN_CLINIC = "unknown_clinic"  # collector-level reasons, beside the contract's own
UNSTORABLE = "unstorable_value"


class DeadLetters:
    """Append-only JSON-lines file of rejected messages: topic, reason, detail, raw payload (base64)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def keep(self, topic: str, payload: bytes, reason: str, detail: str, received_ms: int) -> None:
        record = {"received_ms": received_ms, "topic": topic, "reason": reason, "detail": detail,
                  "payload_b64": base64.b64encode(payload).decode()}
        with self._lock, open(self.path, "a") as out:
            out.write(json.dumps(record) + "\n")


class Validator:
    def __init__(self, registry: Registry, dead_letters: DeadLetters, clocks: AgentClocks | None = None,
                 clock: Callable[[], float] = time.time, facts: Callable[[list[Fact]], None] | None = None) -> None:
        self.dead_letters = dead_letters
        self.facts = facts  # given: what clinic state needs from each valid message goes there
        self.clocks = clocks or AgentClocks()
        self.clock = clock
        self.rejected: Counter[str] = Counter()
        # Records (samples, events) left out of an otherwise valid message, by reason: the message is
        # kept whole in the dead letters with the reason, and its other records are stored.
        self.rejected_records: Counter[str] = Counter()
        self.accepted: Counter[str] = Counter()
        self.last_seen_ms: dict[str, int] = {}
        self.set_registry(registry)

    def set_registry(self, registry: Registry) -> None:
        self.tags = {c.id: {k: v for k, v in (("region", c.region), ("isp", c.isp), ("link", c.link)) if v}
                     for c in registry.clinics}
        # Series heads (line protocol `measurement,tags`) carry the registry's tags: built anew. A reload
        # runs in the thread that validates (the store process's loop), so no message sees half of it.
        self.heads: dict[tuple, str] = {}

    def lines(self, topic: str, payload: bytes, received_ms: int | None = None,
              held_s: int | None = None) -> list[str] | None:
        """Line protocol for a valid message (possibly none, e.g. for a config echo); None if rejected.

        `received_ms` is when the intake received it (now, if not given); `held_s` how long the broker
        held it, from its expiry interval (None: not known)."""
        if received_ms is None:
            received_ms = int(self.clock() * 1000)
        try:
            message = wire.decode(topic, payload, received_ms)
        except wire.Rejected as rejected:
            return self._reject(topic, payload, str(rejected.reason), rejected.detail, received_ms)
        tags = self.tags.get(message.clinic)
        if tags is None:
            return self._reject(topic, payload, UNKNOWN_CLINIC,
                                f"clinic {message.clinic!r} is not in the registry", received_ms)
        status_fields: dict[str, object] = {}
        if isinstance(message, wire.Status):
            status_fields = {"state": message.state, "boot": message.boot, "agent": message.agent}
            if message.reason is not None:
                status_fields["reason"] = message.reason
            if message.quiet_max_s is not None:
                status_fields["quiet_max_s"] = message.quiet_max_s
            why = unstorable({}, status_fields)
            if why is not None:
                return self._reject(topic, payload, UNSTORABLE, why, received_ms)
        self.accepted[type(message).__name__.lower()] += 1
        self.last_seen_ms[message.clinic] = received_ms
        sent_ms, bound_ms = received_ms, None
        if isinstance(message, (wire.Telemetry, wire.Events)) and message.mono_now is not None:
            placed = self.clocks.place(message.clinic, message.boot, message.mono_now, received_ms, held_s)
            sent_ms, bound_ms = placed.sent_ms, placed.bound_ms
        if self.facts is not None:
            # When the broker got it: a backlog drained after a restart keeps its own times.
            at_ms = received_ms - held_s * 1000 if held_s is not None else received_ms
            self.facts(facts_of(message, at_ms, sent_ms))
        if isinstance(message, wire.Telemetry):
            if len(self.heads) > MAX_CACHED_HEADS:
                self.heads.clear()
            refused: list[tuple[int, str]] = []
            lines = list(telemetry_lines(message, sent_ms, bound_ms, tags, self.heads, refused))
            if refused:
                self._reject_records(topic, payload, "samples", refused, received_ms)
            return lines
        if isinstance(message, wire.Events):
            lines, refused = self._event_lines(message, tags, sent_ms, bound_ms)
            if refused:
                self._reject_records(topic, payload, "events", refused, received_ms)
            return lines
        if isinstance(message, wire.Status):
            return [record_line("agent_status", message.clinic, stamp(received_ms, message.boot), tags,
                                status_fields)]
        return []  # config messages: the collector's own, echoed back

    @staticmethod
    def _event_lines(message: wire.Events, tags: dict[str, str], sent_ms: int,
                     bound_ms: int | None) -> tuple[list[str], list[tuple[int, str]]]:
        lines, refused = [], []
        for index, event in enumerate(message.events):
            why = unstorable({}, event.detail)
            if why is None and "seq" in event.detail:
                why = "detail.seq: the collector stores the event's own seq under this name"
            if why is not None:
                refused.append((index, why))
                continue
            fields = {**event.detail, "seq": event.seq}
            if event.sync not in wire.schema.TRUSTED_SYNC and bound_ms is not None:
                fields[TIME_BOUND] = bound_ms + int(DRIFT * (message.mono_now - event.mono))  # type: ignore
            when = wire.effective_time(event, message.mono_now, sent_ms)
            lines.append(record_line("agent_event", message.clinic, stamp(when, message.boot, event.seq),
                                     {**tags, "kind": event.kind}, fields))
        return lines, refused

    def _reject_records(self, topic: str, payload: bytes, kind: str, refused: list[tuple[int, str]],
                        received_ms: int) -> None:
        self.rejected_records[UNSTORABLE] += len(refused)
        detail = "; ".join(f"{kind}[{index}].{why}" for index, why in refused[:3])
        if len(refused) > 3:
            detail += f" (+{len(refused) - 3} more)"
        self.dead_letters.keep(topic, payload, UNSTORABLE, f"{len(refused)} {kind} not stored, the others were: "
                               f"{detail}", received_ms)

    def _reject(self, topic: str, payload: bytes, reason: str, detail: str, received_ms: int) -> None:
        self.rejected[reason] += 1
        self.dead_letters.keep(topic, payload, reason, detail, received_ms)
        return None
