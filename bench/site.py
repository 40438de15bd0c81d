"""The sample clinic (firmware_configs/agent.yaml) pointed at an emulated link's central side.

Shared by the benchmarks: DNS answered by dnsmasq, HTTPS by a local server with a
test CA, TCP and ICMP at the link's central address.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from lab.certs import CertificateAuthority
from lab.links import EmulatedLink
from lab.servers import Dnsmasq
from lab.webserver import WebServer

REPO = Path(__file__).resolve().parent.parent


def sample_config() -> dict[str, Any]:
    """firmware_configs/agent.yaml, the sample clinic's configuration, as it is written."""
    return yaml.safe_load((REPO / "firmware_configs" / "agent.yaml").read_text())


@contextlib.contextmanager
def sample_site(directory: Path, link: EmulatedLink, speed: float = 1.0, lan: bool = False) -> Iterator[dict[str, Any]]:
    """Yield the sample config as a dict, its probes aimed at this link, intervals divided by `speed`. With
    `lan`, the probe of the clinic's gateway stays on the clinic's own network (lab.links.add_lan), as in
    a clinic; otherwise it crosses the link like the others."""
    sample = sample_config()
    ca = CertificateAuthority(directory)
    cert = ca.issue("records", [link.central_ip], days_valid=90)
    with Dnsmasq({"records.salud.example": link.central_ip}, host=link.central_ip) as dns, \
            WebServer(link.central_ip, cert=cert) as web:
        probes = []
        for spec in sample["probes"]:
            spec = dict(spec)
            if lan and spec["kind"] == "icmp" and spec["name"] == "gateway":
                spec["host"] = link.add_lan(f"{spec['host']}/24")
            for key in ("host", "server"):
                if key in spec and not (lan and spec["name"] == "gateway"):
                    spec[key] = link.central_ip
            if spec["kind"] == "dns":
                spec["port"] = dns.port
            if spec["kind"] == "http":
                spec["url"], spec["ca_file"] = web.url("/status/200"), str(ca.ca_file)
            if spec["kind"] == "tcp":
                spec["port"] = web.port
            if spec["kind"] == "throughput":
                spec["download_url"], spec["upload_url"] = web.url("/download?bytes=100000000"), web.url("/upload")
                spec["verify_tls"] = False
            if speed != 1.0:
                spec["interval_s"] = max(1.0, _default_interval(spec) / speed)
            probes.append(spec)
        state = directory / "state"
        state.mkdir(exist_ok=True)
        yield {"clinic_id": sample["clinic_id"], "state_dir": str(state), "probes": probes}


def _default_interval(spec: dict[str, Any]) -> float:
    from agent.probes import PROBES
    from agent.structs import default_of

    model = PROBES[spec["kind"]][0]
    return float(spec.get("interval_s", default_of(model, "interval_s")))
