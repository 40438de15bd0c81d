"""The probe registry: one module per probe kind, all with the same signature, registered here only.

Validation of the config (`ProbeSpecs`), the CLI and the result names all derive from `PROBES`.
"""

from __future__ import annotations

import asyncio
from typing import Union

from agent.probes import dns, http, icmp, tcp, throughput, traceroute
from agent.probes.base import ProbeContext, ProbeFunction, ProbeResult, ProbeSpec, Traffic, run_probe

PROBES: dict[str, tuple[type[ProbeSpec], ProbeFunction]] = {
    "icmp": (icmp.IcmpSpec, icmp.probe),
    "tcp": (tcp.TcpSpec, tcp.probe),
    "dns": (dns.DnsSpec, dns.probe),
    "http": (http.HttpSpec, http.probe),
    "traceroute": (traceroute.TracerouteSpec, traceroute.probe),
    "throughput": (throughput.ThroughputSpec, throughput.probe),
}

# One of the probe specs, told apart by `kind` (each spec's msgspec tag).
AnyProbeSpec = Union[tuple(spec for spec, _ in PROBES.values())]  # type: ignore[valid-type]


def spec_of(document: dict, source: str = "probe") -> ProbeSpec:
    """One probe's settings from plain values (as in the configuration's `probes:`), checked."""
    from agent.structs import convert

    return convert(document, AnyProbeSpec, source, "probe")  # type: ignore[arg-type]


async def run_one(spec: ProbeSpec, ctx: ProbeContext, traffic: Traffic | None = None) -> ProbeResult:
    kind = spec.kind  # type: ignore[attr-defined]
    return await run_probe(kind, PROBES[kind][1], spec, ctx, traffic)


async def run_round(specs: list[ProbeSpec], ctx: ProbeContext) -> list[ProbeResult]:
    """Run every probe at once; each has its own timeout, so none waits for another."""
    return list(await asyncio.gather(*(run_one(spec, ctx) for spec in specs)))


__all__ = ["PROBES", "AnyProbeSpec", "ProbeContext", "ProbeResult", "ProbeSpec", "Traffic", "run_one", "run_round",
           "spec_of"]
