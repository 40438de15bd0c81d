"""The state engine's rules: thresholds per link type and the timing of hysteresis, flap damping and
incident grouping. Configured under `state:` in the collector's configuration (docs/collector.md,
Clinic state); every value here is a default that an operator may override.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

LINK_TYPES = ("fibre", "dsl", "lte", "satellite", "other")


class LinkRules(BaseModel):
    """When a link of one type is `degraded`, and how long silence or failing probes must last to be `down`."""
    model_config = ConfigDict(extra="forbid", frozen=True)
    loss_pct: float = Field(gt=0, le=100, description="mean ICMP loss towards the central targets")
    rtt_ms: float = Field(gt=0, description="median ICMP round trip towards the central targets")
    jitter_ms: float = Field(gt=0, description="median ICMP jitter towards the central targets")
    silence_s: float = Field(default=300, ge=10, description=(
        "no message at all for this long: down (the agent's Last Will usually says so sooner, 1.5x its "
        "MQTT keepalive after the last packet; keep this above the agent's flush interval plus the "
        "longest wait between two of its samples)"))
    down_after_s: float = Field(default=60, ge=0, description=(
        "every central target failing for this long, while the agent still reports: down"))


DEFAULT_LINKS = {
    "fibre": LinkRules(loss_pct=2, rtt_ms=80, jitter_ms=20),
    "dsl": LinkRules(loss_pct=3, rtt_ms=150, jitter_ms=40),
    "lte": LinkRules(loss_pct=5, rtt_ms=250, jitter_ms=60),
    # A geostationary hop is ~550 ms by physics: 600 ms is normal there, never on fibre.
    "satellite": LinkRules(loss_pct=5, rtt_ms=1000, jitter_ms=150, silence_s=360),
    "other": LinkRules(loss_pct=5, rtt_ms=300, jitter_ms=80),
}


class StateRules(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    links: dict[str, LinkRules] = Field(default_factory=lambda: dict(DEFAULT_LINKS))
    lan_targets: frozenset[str] = Field(default=frozenset({"gateway"}), description=(
        "probe target names on the clinic's own LAN (its router); every other target is central"))
    quality_window_s: float = Field(default=600, gt=0, description="loss, RTT and jitter are judged over this")
    quality_min_samples: int = Field(default=3, ge=1)
    clear_ratio: float = Field(default=0.8, gt=0, le=1, description=(
        "hysteresis: degraded ends only when every figure is below this share of its threshold"))
    down_after_probes: int = Field(default=3, ge=1, description="failing central probes in a row, besides down_after_s")
    blip_min_probes: int = Field(default=2, ge=1, description=(
        "failing central probes in a row that mark a short cut for flap detection"))
    flap_slot_s: float = Field(default=60, gt=0, description="flap detection looks at the link in slots this long")
    flap_settle_s: float = Field(default=90, ge=0, description=(
        "a slot is judged this long after it ends (a failed check travels at once, with what waited)"))
    flap_high_pct: float = Field(default=20, gt=0, le=100, description="percent state change that starts flapping")
    flap_low_pct: float = Field(default=5, ge=0, le=100, description="... and that ends it")
    flap_down_hold_s: float = Field(default=600, ge=0, description=(
        "while flapping, a cut shorter than this stays `degraded` (flapping) instead of `down`"))
    lan_event_window_s: float = Field(default=300, ge=0, description=(
        "a router reboot or interface down this long before a silence makes its cause lan_or_device"))
    group_window_s: float = Field(default=180, ge=0, description=(
        "a clinic that goes down within this long of the last one to join an open incident, in the same "
        "region or with the same ISP, joins it"))
    blind_after_s: float = Field(default=15, gt=0, description=(
        "no word from any ingest process for this long: the collector is blind, and silence proves nothing"))

    @field_validator("links")
    @classmethod
    def _keep_defaults(cls, links: dict[str, LinkRules]) -> dict[str, LinkRules]:
        unknown = sorted(set(links) - set(LINK_TYPES))
        if unknown:
            raise ValueError(f"unknown link type(s) {', '.join(unknown)}; the registry's are {', '.join(LINK_TYPES)}")
        return {**DEFAULT_LINKS, **links}  # a type not given keeps its defaults

    def link(self, kind: str) -> LinkRules:
        return self.links.get(kind) or self.links.get("other") or DEFAULT_LINKS["other"]
