"""TCP connect time to host:port: is the service's port open, and how long does the handshake take."""

from __future__ import annotations

import asyncio
import errno
import time
from typing import Annotated

from msgspec import Meta

from agent.probes.base import (
    Host,
    Interval,
    Measured,
    Port,
    ProbeContext,
    ProbeFailure,
    ProbeSpec,
    count_failed_connect,
    count_tcp,
    ms_since,
)

CONNECT_ERRORS = {errno.ECONNREFUSED: "refused", errno.ENETUNREACH: "no_route", errno.EHOSTUNREACH: "unreachable",
                  errno.EHOSTDOWN: "unreachable", errno.ECONNRESET: "reset"}


RESULT_FIELDS = {"connect_ms": "float: time to the SYN-ACK (or the RST when refused)"}
REASONS = {
    "refused": "the port is closed (RST)",
    "unreachable": "destination unreachable", "no_route": "no route to the target", "reset": "connection reset",
    "connect_error": "another connect error",
}


class TcpSpec(ProbeSpec, kw_only=True, tag="tcp"):
    host: Host
    port: Annotated[Port, Meta(description="the service's TCP port")]
    interval_s: Interval = 300


def connect_failure(exc: OSError, where: str, fields: dict | None = None) -> ProbeFailure:
    reason = CONNECT_ERRORS.get(exc.errno or 0, "connect_error")
    words = {"refused": "refused the connection (port closed)"}.get(reason, exc.strerror or str(exc))
    return ProbeFailure(reason, f"{where}: {words}", fields)


async def probe(spec: TcpSpec, ctx: ProbeContext) -> Measured:
    address = await ctx.resolve(spec.host)
    start = time.perf_counter()
    try:
        _, writer = await asyncio.open_connection(address, spec.port)
    except asyncio.CancelledError:  # the runner's timeout: SYNs went unanswered
        count_failed_connect(answered=False)
        raise
    except OSError as exc:
        count_failed_connect(answered=exc.errno != errno.ETIMEDOUT)
        raise connect_failure(exc, f"{address}:{spec.port}", {"connect_ms": round(ms_since(start), 3)}) from None
    connect_ms = ms_since(start)
    count_tcp(writer.get_extra_info("socket"))
    writer.close()
    return Measured({"connect_ms": round(connect_ms, 3)})
