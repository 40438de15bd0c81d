"""Emulated clinic links: a network namespace per clinic behind a user-space relay.

    root namespace ("central")                   namespace cwlab-<pid>-<n> ("clinic")
    cw<tok>c 198.18.x.1  <-- lab.relay process -->  cw<tok>k 198.18.x.2 (default route)

Everything the central side runs (broker, database, probe targets) is reached
from the clinic at `link.central_ip`; the clinic is reached at `link.clinic_ip`.
Only addresses in 198.18.0.0/15 are used. `EmulatedLink` is a context manager:
the relay, both devices and the namespace are gone when it exits, also after
an exception, and `sweep_stale()` removes what a killed run left behind.
"""

from __future__ import annotations

import ipaddress
import itertools
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from lab.linkmodel import PROFILES, LinkProfile

NETNS_PREFIX = "cwlab-"
LAB_NET = ipaddress.ip_network("198.18.0.0/15")
_SLOTS = LAB_NET.num_addresses // 4
_link_numbers = itertools.count()


def privileged_reason() -> str | None:
    """Why emulated links cannot run here, or None when they can."""
    if os.geteuid() != 0:
        return "needs root (network namespaces and TUN devices)"
    if not os.path.exists("/dev/net/tun"):
        return "needs /dev/net/tun"
    if shutil.which("ip") is None:
        return "needs iproute2's `ip`"
    return None


def run(*cmd: str, netns: str | None = None) -> str:
    if netns is not None:
        cmd = ("ip", "netns", "exec", netns, *cmd)
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


def sweep_stale() -> list[str]:
    """Delete lab namespaces whose creating process is gone (a killed test run)."""
    removed = []
    for line in run("ip", "netns", "list").splitlines():
        name = line.split()[0] if line.strip() else ""
        if not name.startswith(NETNS_PREFIX):
            continue
        pid = name[len(NETNS_PREFIX):].split("-")[0]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
            shutil.rmtree(Path("/etc/netns") / name, ignore_errors=True)
            removed.append(name)
    return removed


class EmulatedLink:
    """One simulated clinic: a namespace whose only link goes through the relay."""

    def __init__(self, profile: LinkProfile | str = "fibre", seed: int | None = None, **changes: Any) -> None:
        base = PROFILES[profile] if isinstance(profile, str) else profile
        self.profile = base.with_changes(**changes) if changes else base
        self.seed = seed
        number = next(_link_numbers)
        self.netns = f"{NETNS_PREFIX}{os.getpid()}-{number}"
        token = secrets.token_hex(3)
        self.central_dev, self.clinic_dev = f"cw{token}c", f"cw{token}k"
        slot = (os.getpid() * 64 + number) % _SLOTS
        base_ip = LAB_NET.network_address + 4 * slot
        self.central_ip, self.clinic_ip = str(base_ip + 1), str(base_ip + 2)
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._relay: subprocess.Popen[str] | None = None
        self._control: socket.socket | None = None
        self._control_file: Any = None

    # -- lifecycle ---------------------------------------------------------
    def __enter__(self) -> "EmulatedLink":
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _start(self) -> None:
        reason = privileged_reason()
        if reason:
            raise RuntimeError(f"emulated links {reason}")
        self._tmp = tempfile.TemporaryDirectory(prefix="cwlink-")
        control_path = os.path.join(self._tmp.name, "relay.sock")
        run("ip", "netns", "add", self.netns)
        repo_root = str(Path(__file__).resolve().parent.parent)
        cmd = [sys.executable, "-m", "lab.relay", "--central", self.central_dev, "--clinic", self.clinic_dev,
               "--control", control_path, "--profile", json.dumps(self.profile.to_dict())]
        if self.seed is not None:
            cmd += ["--seed", str(self.seed)]
        # Its own session: a Ctrl-C at the terminal reaches the program that owns the link, which closes it.
        self._relay = subprocess.Popen(cmd, cwd=repo_root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                       env={**os.environ, "PYTHONPATH": repo_root}, start_new_session=True)
        assert self._relay.stdout is not None
        if self._relay.stdout.readline().strip() != "READY":
            self._relay.wait(5)
            raise RuntimeError(f"link relay did not start: {self._relay.stderr.read() if self._relay.stderr else ''}")
        # Neither side should send IPv6 chatter (router solicitations) through the link.
        run("sysctl", "-qw", f"net.ipv6.conf.{self.central_dev}.disable_ipv6=1")
        run("ip", "link", "set", self.clinic_dev, "netns", self.netns)
        run("ip", "addr", "add", f"{self.central_ip}/32", "peer", f"{self.clinic_ip}/32", "dev", self.central_dev)
        run("ip", "link", "set", self.central_dev, "up")
        run("sysctl", "-qw", f"net.ipv6.conf.{self.clinic_dev}.disable_ipv6=1", netns=self.netns)
        run("ip", "link", "set", "lo", "up", netns=self.netns)
        run("ip", "addr", "add", f"{self.clinic_ip}/32", "peer", f"{self.central_ip}/32", "dev", self.clinic_dev,
            netns=self.netns)
        run("ip", "link", "set", self.clinic_dev, "up", netns=self.netns)
        run("ip", "route", "add", "default", "dev", self.clinic_dev, netns=self.netns)
        self._control = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._control.connect(control_path)
        self._control_file = self._control.makefile("rb")

    def close(self) -> None:
        if self._control is not None:
            self._control_file.close()
            self._control.close()
            self._control = None
        if self._relay is not None:
            if self._relay.poll() is None:
                self._relay.send_signal(signal.SIGTERM)
                try:
                    self._relay.wait(5)
                except subprocess.TimeoutExpired:
                    self._relay.kill()
                    self._relay.wait()
            for stream in (self._relay.stdout, self._relay.stderr):
                if stream:
                    stream.close()
            self._relay = None
        subprocess.run(["ip", "netns", "del", self.netns], capture_output=True)
        shutil.rmtree(Path("/etc/netns") / self.netns, ignore_errors=True)
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    # -- control -----------------------------------------------------------
    def _request(self, **request: Any) -> dict[str, Any]:
        if self._control is None:
            raise RuntimeError("link is not running")
        self._control.sendall(json.dumps(request).encode() + b"\n")
        reply = json.loads(self._control_file.readline())
        if not reply.get("ok"):
            raise ValueError(f"link relay refused {request}: {reply.get('error')}")
        return reply

    def cut(self) -> None:
        self._request(op="cut")

    def restore(self) -> None:
        self._request(op="restore")

    def reseed(self, seed: int) -> None:
        """Restart the link's random draws: two runs after the same seed see the same delays and drops."""
        self._request(op="reseed", seed=seed)

    def set(self, **changes: Any) -> LinkProfile:
        """Change link parameters while it runs (rtt_ms=..., loss_pct=..., ...)."""
        self.profile = self.profile.with_changes(**changes)
        self._request(op="set", profile=changes)
        return self.profile

    def stats(self) -> dict[str, dict[str, int]]:
        return self._request(op="stats")["stats"]

    def echoes(self) -> list[tuple[int, int, float]]:
        """(ICMP id, seq, round trip in ms) of each echo answered through the link since the last call,
        timed by the relay itself: from the request leaving the clinic to its reply reaching it."""
        return [(int(i), int(s), float(rtt)) for i, s, rtt in self._request(op="echoes")["echoes"]]

    def offlab_drops(self) -> int:
        """Packets the relay refused because they were addressed outside 198.18.0.0/15."""
        return int(self._request(op="stats")["offlab_drops"])

    def add_lan(self, interface: str = "192.168.1.1/24") -> str:
        """Give the clinic a network of its own besides the link: a device (a TUN nobody reads, as the
        kernel here has no dummy devices) holding `interface`, so that its address answers locally and
        its subnet is reached directly, off the default route. Returns the address. Goes with the
        namespace."""
        device = self.clinic_dev[:-1] + "l"
        run("ip", "tuntap", "add", "dev", device, "mode", "tun", netns=self.netns)
        run("ip", "addr", "add", interface, "dev", device, netns=self.netns)
        run("ip", "link", "set", device, "up", netns=self.netns)
        return interface.split("/")[0]

    def use_resolver(self, address: str) -> None:
        """Make the clinic's system resolver (getaddrinfo) ask `address`, port 53, and nothing else."""
        etc = Path("/etc/netns") / self.netns
        etc.mkdir(parents=True, exist_ok=True)
        (etc / "resolv.conf").write_text(f"nameserver {address}\noptions timeout:1 attempts:1\n")
        (etc / "hosts").write_text("127.0.0.1 localhost\n")

    def exec(self, *cmd: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        """Run a command inside the clinic namespace."""
        return subprocess.run(["ip", "netns", "exec", self.netns, *cmd], capture_output=True, text=True, **kwargs)

    def popen(self, *cmd: str, **kwargs: Any) -> subprocess.Popen[Any]:
        return subprocess.Popen(["ip", "netns", "exec", self.netns, *cmd], **kwargs)
