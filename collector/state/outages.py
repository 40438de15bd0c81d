"""Outage records: every interval a clinic was down, with its cause, the evidence for it, where its
times come from, and every revision made to it after the fact."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Outage:
    id: str
    clinic: str
    start: int  # UTC ms
    end: int | None  # None while it lasts
    cause: str
    source: str  # "collector" (observed here) or "agent" (the agent's own record of a cut it lived through)
    boot: str | None = None  # the agent's boot when it began
    opened_by: str = ""  # what began it: "will", "silence", "shutdown", "probes", "agent_record"
    evidence: list[str] = field(default_factory=list)
    marks: dict[str, str] = field(default_factory=dict)  # kind of evidence -> its first description
    revisions: list[dict[str, Any]] = field(default_factory=list)
    changed: bool = True  # not yet written out since its last change

    def revise(self, at: int, what: str, old: Any, new: Any, why: str) -> None:
        self.revisions.append({"at": at, "what": what, "from": old, "to": new, "why": why})
        self.changed = True

    def overlap(self, start: int, end: int, now: int) -> int:
        mine_end = self.end if self.end is not None else now
        return min(mine_end, end) - max(self.start, start)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("changed")
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Outage":
        return cls(**data, changed=False)
