"""TCP connect time to host:port: is the service's port open, and how long does the handshake take."""

from __future__ import annotations

import asyncio
import errno
import time
from typing import Literal

from pydantic import Field

from agent.probes.base import Measured, ProbeContext, ProbeFailure, ProbeSpec, ms_since

CONNECT_ERRORS = {errno.ECONNREFUSED: "refused", errno.ENETUNREACH: "no_route", errno.EHOSTUNREACH: "unreachable",
                  errno.EHOSTDOWN: "unreachable", errno.ECONNRESET: "reset"}


class TcpSpec(ProbeSpec):
    kind: Literal["tcp"] = "tcp"
    host: str
    port: int = Field(ge=1, le=65535)


def connect_failure(exc: OSError, where: str, fields: dict | None = None) -> ProbeFailure:
    reason = CONNECT_ERRORS.get(exc.errno or 0, "connect_error")
    words = {"refused": "refused the connection (port closed)"}.get(reason, exc.strerror or str(exc))
    return ProbeFailure(reason, f"{where}: {words}", fields)


async def probe(spec: TcpSpec, ctx: ProbeContext) -> Measured:
    address = await ctx.resolve(spec.host)
    start = time.perf_counter()
    try:
        _, writer = await asyncio.open_connection(address, spec.port)
    except OSError as exc:
        raise connect_failure(exc, f"{address}:{spec.port}", {"connect_ms": round(ms_since(start), 3)}) from None
    connect_ms = ms_since(start)
    writer.close()
    return Measured({"connect_ms": round(connect_ms, 3)})
