"""DNS: resolution time and answer of one query against a chosen resolver (agent/probes/dnswire.py builds and reads it).

The query goes over a connected UDP socket, so a resolver that is down (ICMP port
unreachable) is told apart from one that is slow or cut off (no answer).
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import Annotated, Literal

from msgspec import Meta

from agent.probes.base import (
    Interval,
    Measured,
    Port,
    ProbeContext,
    ProbeFailure,
    ProbeSpec,
    Timeout,
    count_wire,
    ms_since,
)
from agent.probes.dnswire import DnsWireError, encode_name, query, read_reply

RESULT_FIELDS = {
    "resolve_ms": "float: query to answer", "rcode": "str: NOERROR, NXDOMAIN, SERVFAIL, ...",
    "answers": "int: records of the asked type", "answer": "str: the first of them, as dig prints it (`10 mail."
    "example.org.` for an MX; absent when there is none)",
}
REASONS = {
    "refused": "the resolver is not serving (ICMP port unreachable): DNS server down",
    "unreachable": "the resolver's address cannot be reached",
    "nxdomain": "the name does not exist", "servfail": "the resolver failed to resolve it",
    "unexpected_answer": "answered, but without the `expect`ed records",
    "bad_response": "an unreadable reply",
}


class DnsSpec(ProbeSpec, kw_only=True, tag="dns"):
    server: Annotated[str, Meta(min_length=1, description=(
        "resolver address; the clinic router's, the ISP's, the health service's"))]
    port: Annotated[Port, Meta(description="resolver's UDP port")] = 53
    query: Annotated[str, Meta(min_length=1, description=(
        "name to resolve, e.g. the records service's (one with non-ASCII letters is asked in IDNA, xn--...)"))]
    qtype: Annotated[Literal["A", "AAAA", "CNAME", "MX", "TXT", "NS", "SOA"], Meta(description="record type")] = "A"
    expect: Annotated[list[str], Meta(description="answers that must be among those returned")] = []
    interval_s: Interval = 300
    timeout_s: Timeout = 5

    def __post_init__(self) -> None:
        try:
            encode_name(self.query)
        except ValueError as exc:
            raise ValueError(f"query: {exc}") from None


class _Answer(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.reply: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: object) -> None:
        if not self.reply.done():
            self.reply.set_result(data)

    def error_received(self, exc: Exception) -> None:
        if not self.reply.done():
            self.reply.set_exception(exc)


async def probe(spec: DnsSpec, ctx: ProbeContext) -> Measured:
    server = await ctx.resolve(spec.server)
    question = query(spec.query, spec.qtype, random.getrandbits(16))
    loop = asyncio.get_running_loop()
    start = time.perf_counter()
    transport, protocol = await loop.create_datagram_endpoint(_Answer, remote_addr=(server, spec.port))
    try:
        transport.sendto(question)
        count_wire(28 + len(question))  # with its IP and UDP headers
        while True:
            try:
                data = await protocol.reply
            except ConnectionRefusedError:
                raise ProbeFailure("refused", f"resolver {server}:{spec.port} is not serving DNS "
                                              "(port unreachable)") from None
            except OSError as exc:
                raise ProbeFailure("unreachable", f"resolver {server}:{spec.port}: {exc.strerror}") from None
            resolve_ms = ms_since(start)
            count_wire(28 + len(data))
            try:
                reply = read_reply(data)
            except DnsWireError as exc:
                raise ProbeFailure("bad_response", f"resolver {server} sent an unreadable reply: {exc}") from None
            if reply.answers_query(question):
                break
            protocol.reply = loop.create_future()  # not the answer to our question: keep waiting
    finally:
        transport.close()
    rcode = reply.rcode_text()
    answers = reply.answers(spec.qtype)
    fields = {"resolve_ms": round(resolve_ms, 3), "rcode": rcode, "answers": len(answers)}
    if answers:
        fields["answer"] = answers[0]
    if reply.rcode:
        raise ProbeFailure(rcode.lower(), f"{spec.query} {spec.qtype} at {server}: {rcode}", fields)
    missing = [want for want in spec.expect if want not in answers]
    if missing:
        raise ProbeFailure("unexpected_answer", f"{spec.query}: expected {missing}, got {answers}", fields)
    return Measured(fields)
