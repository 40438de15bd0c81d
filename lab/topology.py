"""Small routed networks of namespaces joined by veth pairs, for path tests (traceroute).

Unlike EmulatedLink there is no relay: links are plain veth, and routers are
namespaces with forwarding on (set inside them, never in the root namespace).
Addresses must be in 198.18.0.0/15. Everything is removed by `close()`.
"""

from __future__ import annotations

import ipaddress
import itertools
import os

from lab.links import LAB_NET, NETNS_PREFIX, run

_numbers = itertools.count()


class Topology:
    def __init__(self) -> None:
        self.prefix = f"{NETNS_PREFIX}{os.getpid()}-t{next(_numbers)}"
        self.namespaces: dict[str, str] = {}
        self._veths = itertools.count()

    def host(self, name: str, router: bool = False) -> str:
        netns = f"{self.prefix}-{name}"
        run("ip", "netns", "add", netns)
        self.namespaces[name] = netns
        run("ip", "link", "set", "lo", "up", netns=netns)
        if router:
            run("sysctl", "-qw", "net.ipv4.ip_forward=1", netns=netns)
        return netns

    def wire(self, a: str, a_ip: str, b: str, b_ip: str, prefix_len: int = 30) -> None:
        for address in (a_ip, b_ip):
            if ipaddress.ip_address(address) not in LAB_NET:
                raise ValueError(f"{address} is outside {LAB_NET}")
        n = next(self._veths)
        dev_a, dev_b = f"cwv{os.getpid() % 10000}{n}a", f"cwv{os.getpid() % 10000}{n}b"
        run("ip", "link", "add", dev_a, "netns", self.namespaces[a], "type", "veth", "peer", "name", dev_b,
            "netns", self.namespaces[b])
        for ns, dev, ip in ((a, dev_a, a_ip), (b, dev_b, b_ip)):
            run("ip", "addr", "add", f"{ip}/{prefix_len}", "dev", dev, netns=self.namespaces[ns])
            run("ip", "link", "set", dev, "up", netns=self.namespaces[ns])

    def address(self, name: str, ip: str) -> None:
        """An extra address on the host's loopback (a service address reachable by any path)."""
        run("ip", "addr", "add", f"{ip}/32", "dev", "lo", netns=self.namespaces[name])

    def route(self, name: str, destination: str, via: str, replace: bool = False) -> None:
        run("ip", "route", "replace" if replace else "add", destination, "via", via, netns=self.namespaces[name])

    def exec(self, name: str, *cmd: str) -> str:
        return run(*cmd, netns=self.namespaces[name])

    def close(self) -> None:
        for netns in self.namespaces.values():
            try:
                run("ip", "netns", "del", netns)
            except RuntimeError:
                pass
        self.namespaces.clear()

    def __enter__(self) -> "Topology":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
