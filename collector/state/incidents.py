"""Incidents: clinics that fail together, grouped without a hand-built dependency tree.

A clinic that goes `down` (or starts flapping) joins the open incident it shares the most with, if
the last clinic joined that incident within `group_window_s`: the same upstream hop (when known),
else the same ISP in the same region, else the same ISP, else the same region. Otherwise it opens an
incident of its own. A clinic leaves when it is back; the incident ends when its last clinic is back.
The incident's suspected common cause is what all its clinics share, and the cause most of them have.
Plain logic on a scripted clock.
"""

from __future__ import annotations

import bisect
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Place:
    region: str = ""
    isp: str = ""
    upstream: str = ""  # first hop past the clinic's own network, when traceroute knows it


@dataclass
class Member:
    clinic: str
    joined: int
    left: int | None = None
    cause: str | None = None


@dataclass
class Incident:
    id: str
    opened: int
    closed: int | None = None
    members: list[Member] = field(default_factory=list)
    last_join: int = 0
    scope: str = ""  # what every clinic in it shares, e.g. "isp=Movistar region=Illes Balears"
    cause: str = "unknown"
    changed: bool = True

    def open_members(self) -> list[Member]:
        return [m for m in self.members if m.left is None]

    def clinics(self) -> list[str]:
        return sorted({m.clinic for m in self.members})

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("changed")
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Incident":
        members = [Member(**m) for m in data.pop("members")]
        return cls(**data, members=members, changed=False)


def _affinity(a: Place, b: Place) -> int:
    if a.upstream and a.upstream == b.upstream:
        return 4
    same_isp = bool(a.isp) and a.isp == b.isp
    same_region = bool(a.region) and a.region == b.region
    if same_isp and same_region:
        return 3
    if same_isp:
        return 2
    if same_region:
        return 1
    return 0


class Incidents:
    def __init__(self, group_window_s: float) -> None:
        self.window_ms = int(group_window_s * 1000)
        self.open: dict[str, Incident] = {}
        self.by_clinic: dict[str, str] = {}  # clinic -> open incident id
        self.places: dict[str, Place] = {}
        self.changed: list[Incident] = []

    def set_places(self, places: dict[str, Place]) -> None:
        self.places = places

    def down(self, clinic: str, at: int, cause: str | None) -> Incident:
        """The clinic is down (or flapping) from `at`: join or open an incident."""
        current = self.by_clinic.get(clinic)
        if current is not None:
            incident = self.open[current]
            for member in incident.open_members():
                if member.clinic == clinic and member.cause != cause:
                    member.cause = cause
                    self._describe(incident)
            return incident
        place = self.places.get(clinic, Place())
        best, best_score = None, 0
        for incident in self.open.values():
            if at - incident.last_join > self.window_ms:
                continue
            score = min(_affinity(place, self.places.get(m.clinic, Place())) for m in incident.members)
            if score > best_score or (score == best_score and best is not None and score > 0
                                      and incident.last_join > best.last_join):
                best, best_score = incident, score
        if best is None:
            best = Incident(id=f"inc-{at}-{clinic}", opened=at)
            self.open[best.id] = best
        # In the order the clinics went down: several judged at one look come in no particular order, and
        # one judged late (a Last Will that took longer) may have gone down before the others.
        bisect.insort(best.members, Member(clinic, at, None, cause), key=lambda m: (m.joined, m.clinic))
        best.last_join = max(best.last_join, at)
        best.opened = min(best.opened, at)
        self.by_clinic[clinic] = best.id
        self._describe(best)
        return best

    def up(self, clinic: str, at: int) -> Incident | None:
        """The clinic is back (or in maintenance) from `at`: it leaves its incident, which may end."""
        incident_id = self.by_clinic.pop(clinic, None)
        if incident_id is None:
            return None
        incident = self.open[incident_id]
        for member in incident.open_members():
            if member.clinic == clinic:
                member.left = max(at, member.joined)
        if not incident.open_members():
            incident.closed = max(m.left or at for m in incident.members)
            del self.open[incident_id]
        self._describe(incident)
        return incident

    def _describe(self, incident: Incident) -> None:
        places = [self.places.get(c, Place()) for c in incident.clinics()]
        shared = []
        for name in ("upstream", "isp", "region"):
            values = {getattr(p, name) for p in places}
            if len(values) == 1 and next(iter(values)):
                shared.append(f"{name}={next(iter(values))}")
        incident.scope = " ".join(shared) if len(places) > 1 else f"clinic={incident.clinics()[0]}"
        causes = Counter(m.cause or "unknown" for m in incident.members)
        incident.cause = causes.most_common(1)[0][0]
        incident.changed = True
        if incident not in self.changed:
            self.changed.append(incident)

    def take_changed(self) -> list[Incident]:
        out, self.changed = self.changed, []
        for incident in out:
            incident.changed = False
        return out
