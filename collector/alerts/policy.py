"""The notification policy: which messages about the state engine's incidents go to which recipient, and
when. Plain logic on a scripted clock, like the engine it follows; no I/O.

Alertmanager's semantics (docs/alerts.md), applied per incident and recipient, to the part of the
incident in the recipient's scope (a region's administrators see that region's clinics of it, a
clinic's own contact only that clinic):

- `open`: the first message waits `group_wait_s` after the engine found the first clinic in scope
  down, so clinics failing together arrive as one message; nothing is sent if they are all back
  before then.
- `update`: when the clinics down in scope changed, at most once per `group_interval_s`.
- `reminder`: while nothing changes and something is still down, once per `repeat_interval_s`.
- `recovery`: once everything in scope is back, with how long it lasted; sent to every recipient
  who was told of the incident, even when a silence began since (Alertmanager drops it).
- escalation recipients hear of an incident only once it has stayed open `escalate_after_s`.
- a silence mutes a message whose clinics it all covers; the message is still decided and recorded
  (`muted`), so nothing is lost from the record and the timing is the same as if it had been sent.

Each message is an Intent with a key that names it for good (incident, kind, number, recipient): a
restarted collector that decides again from the same memory decides the same keys, and the
notification log (collector.alerts.log) holds each key once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from collector.state.incidents import Incident

OPEN, UPDATE, REMINDER, RECOVERY = "open", "update", "reminder", "recovery"


@dataclass(frozen=True)
class Recipient:
    id: str
    clinics: frozenset[str] = frozenset()
    regions: frozenset[str] = frozenset()
    everything: bool = False
    escalation: bool = False  # hears of an incident only once it has stayed open escalate_after_s

    def covers(self, clinic: str, region: str) -> bool:
        return self.everything or clinic in self.clinics or (bool(region) and region in self.regions)


@dataclass(frozen=True)
class Silence:
    """Mutes messages about the clinics, regions or incidents it names, from start to end (UTC ms)."""
    id: str
    start: int
    end: int
    clinics: frozenset[str] = frozenset()
    regions: frozenset[str] = frozenset()
    incidents: frozenset[str] = frozenset()
    author: str = ""
    comment: str = ""

    def covers(self, clinic: str, region: str, incident: str, now: int) -> bool:
        return self.start <= now < self.end and (
            clinic in self.clinics or (bool(region) and region in self.regions) or incident in self.incidents)


@dataclass(frozen=True)
class Timing:
    group_wait_s: float = 30
    group_interval_s: float = 300
    repeat_interval_s: float = 4 * 3600
    escalate_after_s: float = 1800


@dataclass(frozen=True)
class Intent:
    """One message to one recipient (each of its channels gets it)."""
    incident: str
    kind: str  # open | update | reminder | recovery
    n: int  # the how-manieth of its kind to this recipient about this incident
    recipient: str
    at: int  # when it was decided (UTC ms)
    down: tuple[str, ...]  # the recipient's clinics still down
    back: tuple[str, ...]  # the recipient's clinics of the incident that are back
    began: int  # when the first of the recipient's clinics went down
    ended: int | None  # recovery: when the last came back
    cause: str
    muted: bool = False  # a silence covered it: recorded, not sent

    @property
    def key(self) -> str:
        return f"{self.incident}/{self.kind}/{self.n}/{self.recipient}"


@dataclass
class _Memory:
    last_at: int
    down: frozenset[str]
    told: bool  # a message went out unmuted
    recovered: bool = False
    counts: dict[str, int] = field(default_factory=dict)


class Policy:
    def __init__(self, timing: Timing, recipients: list[Recipient], regions: dict[str, str]) -> None:
        self.timing = timing
        self.recipients = list(recipients)
        self.regions = dict(regions)  # clinic -> region
        self.memory: dict[tuple[str, str], _Memory] = {}
        self.seen: dict[tuple[str, str], int] = {}  # not yet told: when the policy first saw it down

    def decide(self, incidents: list[Incident], silences: list[Silence], now: int) -> list[Intent]:
        """What to send now about these incidents (the open ones, and any that closed since the last call)."""
        t = self.timing
        out: list[Intent] = []
        for incident in incidents:
            for recipient in self.recipients:
                mine = [m for m in incident.members if recipient.covers(m.clinic, self.regions.get(m.clinic, ""))]
                if not mine:
                    continue
                down = frozenset(m.clinic for m in mine if m.left is None and incident.closed is None)
                back = tuple(sorted({m.clinic for m in mine} - down))
                began = min(m.joined for m in mine)
                key = (incident.id, recipient.id)
                memory = self.memory.get(key)
                kind = None
                if memory is None:
                    if not down:
                        self.seen.pop(key, None)  # all back before anyone was told: nothing to say
                        continue
                    # Group wait counts from when this policy first saw the recipient's part of the
                    # incident (a clinic's down state is dated back to its last sign of life, so from
                    # that date the wait would often be over before anyone saw it).
                    seen = self.seen.setdefault(key, now)
                    if recipient.escalation:
                        kind = OPEN if now >= incident.opened + t.escalate_after_s * 1000 else None
                    elif now >= seen + t.group_wait_s * 1000:
                        kind = OPEN
                elif not down:
                    if not memory.recovered:
                        kind = RECOVERY
                elif memory.recovered or (down != memory.down and now >= memory.last_at + t.group_interval_s * 1000):
                    kind = UPDATE
                elif now >= memory.last_at + t.repeat_interval_s * 1000:
                    kind = REMINDER
                if kind is None:
                    continue
                region_of = self.regions.get
                if kind == RECOVERY:
                    # Told once, told it is over, silence or not; never told: it stays unsaid.
                    muted = not memory.told  # type: ignore[union-attr]
                else:
                    muted = all(any(s.covers(c, region_of(c, ""), incident.id, now) for s in silences) for c in down)
                if memory is None:
                    memory = self.memory[key] = _Memory(now, down, False)
                    self.seen.pop(key, None)
                n = memory.counts[kind] = memory.counts.get(kind, 0) + 1
                memory.last_at, memory.down = now, down
                memory.told = memory.told or not muted
                memory.recovered = kind == RECOVERY
                ended = max(now if m.left is None else m.left for m in mine) if kind == RECOVERY else None
                out.append(Intent(incident.id, kind, n, recipient.id, now, tuple(sorted(down)), back, began, ended,
                                  incident.cause, muted))
        return out

    def forget(self, before: int) -> None:
        """Drop the memory of incidents recovered before `before` (UTC ms)."""
        self.memory = {k: m for k, m in self.memory.items() if not (m.recovered and m.last_at < before)}
