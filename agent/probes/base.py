"""What every probe shares: its result, its failure, its context, and the runner around it.

A probe is `async def probe(spec, ctx) -> Measured`. It returns the figures it took,
or raises `ProbeFailure(reason, detail, fields)` when the target could not be
measured. The runner, not the probe, applies the timeout, records the duration
and success, and turns anything unexpected into a result: a probe never raises
out of a round, and one slow target never holds up the others.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import socket
import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from msgspec import Meta, Struct

from agent.datause import ANSWER_BYTES, FIN_BYTES, SYN_BYTES, tcp_wire_bytes
from agent.imports import kept_out
from agent.jsonfile import write_json

log = logging.getLogger(__name__)

Fields = dict[str, float | int | bool | str]

# Fields and reasons every probe's result can carry, whatever its kind (the runner's).
COMMON_FIELDS = {"success": "bool: the target was measured", "reason": "str: why not, or why not perfect; '' if all "
                 "is well", "duration_ms": "float: the whole probe, as the runner timed it"}
COMMON_REASONS = {"timeout": "no result within `timeout_s`", "dns_failure": "the target's name did not resolve",
                  "probe_error": "a bug in the probe (logged with its traceback); the agent carries on"}


# The keys every probe has, as types: a probe kind that sets its own default keeps the bounds and the text.
Interval = Annotated[float, Meta(ge=1, le=86_400 * 31, description="seconds between runs")]
Timeout = Annotated[float, Meta(gt=0, le=600, description="the whole probe's time budget, seconds")]
Host = Annotated[str, Meta(min_length=1, description="address or name of the target")]
Port = Annotated[int, Meta(ge=1, le=65535)]
Url = Annotated[str, Meta(pattern=r"^https?://")]


class ProbeSpec(Struct, forbid_unknown_fields=True, frozen=True, kw_only=True, tag_field="kind"):
    """Settings every probe has; each probe module subclasses it with its own `kind` (the struct's tag) and
    keys."""

    name: Annotated[str, Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$", description=(
        "what the target is called in results and dashboards (tag `target`)"))]
    interval_s: Interval = 60
    timeout_s: Timeout = 10
    network: Annotated[Literal["auto", "lan", "wan"], Meta(description=(
        "where the target is, for the data use: auto takes the default gateway and directly reached "
        "addresses off the default route's interface as lan"))] = "auto"

    @property
    def kind(self) -> str:
        return self.__struct_config__.tag  # type: ignore[return-value]


@dataclass
class Traffic:
    """What one probe run put on the network: IP bytes both ways, and the address it resolved."""

    bytes: int = 0
    address: str | None = None


_traffic: ContextVar[Traffic | None] = ContextVar("clinicwatch_probe_traffic", default=None)


def count_wire(amount: int) -> None:
    """Charge `amount` IP bytes (sent or received) to the probe running in this task."""
    traffic = _traffic.get()
    if traffic is not None:
        traffic.bytes += amount


def load_httpx() -> Any:
    """httpx, loaded by the first check that needs it. httpcore loads trio, when it is installed, to run
    under trio as well as asyncio; the agent runs on asyncio only, and trio with attrs would cost about
    4.5 MiB resident."""
    with kept_out("trio"):
        import httpcore._synchronization  # noqa: F401  (where httpcore looks for trio)
        import httpx
    return httpx


def count_tcp(sock: Any) -> None:
    """Charge a TCP connection about to be closed: its bytes so far, from the kernel, and its FIN exchange."""
    moved = tcp_wire_bytes(sock) if sock is not None else None
    count_wire((moved if moved is not None else SYN_BYTES * 2 + 52) + FIN_BYTES)


def count_failed_connect(answered: bool) -> None:
    """Charge a connection that never opened: its SYN, and the RST or ICMP error if one came back."""
    count_wire(SYN_BYTES + (ANSWER_BYTES if answered else 0))


@dataclass
class Measured:
    """What a probe took. `reason` says why it is not perfect though it worked (e.g. partial loss)."""

    fields: Fields
    reason: str = ""
    detail: str = ""
    tags: dict[str, str] = field(default_factory=dict)


class ProbeFailure(Exception):
    """The target could not be measured; `reason` is a short code, `detail` says it to a person."""

    def __init__(self, reason: str, detail: str, fields: Fields | None = None, tags: dict[str, str] | None = None):
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail
        self.fields = fields or {}
        self.tags = tags or {}


@dataclass
class ProbeResult:
    kind: str
    target: str
    success: bool
    reason: str
    detail: str
    duration_ms: float
    fields: Fields
    tags: dict[str, str]
    started: float  # wall clock, seconds

    def as_fields(self) -> Fields:
        return {"success": self.success, "reason": self.reason, "duration_ms": round(self.duration_ms, 3),
                **self.fields}


@dataclass
class ProbeContext:
    """What probes may use besides their spec: name resolution, state kept between rounds, files."""

    state_dir: Path | None = None
    memory: dict[Any, Any] = field(default_factory=dict)  # live objects kept between rounds

    def recall(self, key: str) -> Any:
        """What a probe remembered (e.g. the last path), kept in the state dir across restarts."""
        return self._remembered().get(key)

    def remember(self, key: str, value: Any) -> None:
        remembered = self._remembered()
        remembered[key] = value
        if self.state_dir is not None:
            write_json(self.state_dir / "probe-memory.json", remembered)

    def _remembered(self) -> dict[str, Any]:
        if "_remembered" not in self.memory:
            loaded: dict[str, Any] = {}
            path = self.state_dir / "probe-memory.json" if self.state_dir else None
            if path is not None and path.exists():
                try:
                    loaded = json.loads(path.read_text())
                except (OSError, ValueError):
                    log.warning("ignoring unreadable %s", path)
            self.memory["_remembered"] = loaded
        return self.memory["_remembered"]

    async def resolve(self, host: str) -> str:
        """An IPv4 address for `host`, or ProbeFailure("dns_failure") that names the host."""
        try:
            host = str(ipaddress.IPv4Address(host))
        except ValueError:
            pass
        else:
            return _resolved(host)
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, None, family=socket.AF_INET, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise ProbeFailure("dns_failure", f"cannot resolve {host!r}: {exc.strerror}") from None
        return _resolved(infos[0][4][0])


def _resolved(address: str) -> str:
    traffic = _traffic.get()
    if traffic is not None:
        traffic.address = address
    return address


ProbeFunction = Callable[[Any, ProbeContext], Awaitable[Measured]]


def ms_since(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0


async def run_probe(kind: str, probe: ProbeFunction, spec: Any, ctx: ProbeContext,
                    traffic: Traffic | None = None) -> ProbeResult:
    """`traffic`: where the run's bytes are counted, for a caller that needs them even if the run is
    cancelled (the agent stopping mid-probe)."""
    started, t0 = time.time(), time.perf_counter()
    success, reason, detail, fields, tags = False, "", "", {}, {}
    traffic = traffic if traffic is not None else Traffic()
    token = _traffic.set(traffic)
    try:
        async with asyncio.timeout(spec.timeout_s):
            measured = await probe(spec, ctx)
        success, reason, detail, fields, tags = True, measured.reason, measured.detail, measured.fields, measured.tags
    except ProbeFailure as failure:
        reason, detail, fields, tags = failure.reason, failure.detail, failure.fields, failure.tags
    except TimeoutError:
        reason, detail = "timeout", f"no result within {spec.timeout_s:g} s"
    except Exception as exc:  # a bug, not a link problem: report it and keep the agent alive
        log.exception("probe %s %s crashed", kind, spec.name)
        reason, detail = "probe_error", f"{type(exc).__name__}: {exc}"
    finally:
        _traffic.reset(token)
    return ProbeResult(kind=kind, target=spec.name, success=success, reason=reason, detail=detail,
                       duration_ms=ms_since(t0), fields=fields, tags=tags, started=started)
