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
from lab.servers import Dnsmasq, _udp_bound
from lab.webserver import WebServer

REPO = Path(__file__).resolve().parent.parent


def sample_config() -> dict[str, Any]:
    """firmware_configs/agent.yaml, the sample clinic's configuration, as it is written."""
    return yaml.safe_load((REPO / "firmware_configs" / "agent.yaml").read_text())


class InClinic:
    """A lab server run inside the clinic's namespace, on its own network's address (a device at the clinic).
    Mixed in before the server class; `netns` and `port` are set by the subclass."""

    netns: str
    port: int
    proc: Any

    def command(self) -> list[str]:
        return ["ip", "netns", "exec", self.netns, *super().command()]  # type: ignore[misc]

    def ready(self) -> bool:  # bound in the clinic's namespace, which this process's /proc/net does not show
        return _udp_bound(self.port, self.proc.pid)


class LanDnsmasq(InClinic, Dnsmasq):
    """The clinic router's resolver, port 53, answering `records` (as the central one does)."""

    def __init__(self, link: EmulatedLink, records: dict[str, str], host: str, **kw: object) -> None:
        super().__init__(records, host=host, **kw)  # type: ignore[call-arg]
        self.netns, self.port = link.netns, 53


@contextlib.contextmanager
def sample_site(directory: Path, link: EmulatedLink, speed: float = 1.0, lan: bool = False) -> Iterator[dict[str, Any]]:
    """Yield the sample config as a dict, its probes aimed at this link, intervals divided by `speed`. With
    `lan`, the probe of the clinic's gateway stays on the clinic's own network (lab.links.add_lan), as in
    a clinic, and so does the DNS probe of the router's resolver (a dnsmasq at the gateway's address);
    otherwise they cross the link like the others."""
    sample = sample_config()
    ca = CertificateAuthority(directory)
    cert = ca.issue("records", [link.central_ip], days_valid=90)
    answers = {"records.salud.example": link.central_ip}
    with Dnsmasq(answers, host=link.central_ip) as dns, WebServer(link.central_ip, cert=cert) as web, \
            contextlib.ExitStack() as on_lan:
        probes = []
        gateway = None
        for spec in sample["probes"]:
            spec = dict(spec)
            if lan and spec["kind"] == "icmp" and spec["name"] == "gateway":
                gateway = spec["host"] = link.add_lan(f"{spec['host']}/24")
            asks_router = lan and spec["kind"] == "dns" and spec["server"] == gateway
            for key in ("host", "server"):
                if key in spec and not (lan and spec["name"] == "gateway") and not asks_router:
                    spec[key] = link.central_ip
            if spec["kind"] == "dns":
                spec["port"] = on_lan.enter_context(LanDnsmasq(link, answers, gateway)).port if asks_router else dns.port
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
