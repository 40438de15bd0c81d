"""An SNMP client of its own, on asyncio: GET, GETNEXT and multi-column GETBULK walks, v1, v2c and v3.

Why not pysnmp (which the agent used until 2026-12): its import and one engine cost a router's agent
about 9 MiB of its 40 (bench.agent_month), for the three requests the agent makes; a whole SNMP engine
(MIB modules compiled at each start, notification originator, a timer ticking while a transport is
open) that the agent does not use. What the agent needs of SNMP is small and fixed by RFCs: BER for
the PDUs (agent/snmp/ber.py) and the User-based Security Model (agent/snmp/usm.py), both checked in
tests against net-snmp's snmpd for every version, level and protocol the config accepts.

OIDs are numeric tuples in, plain Python values out; every reply is typed (`Reading`), so a caller
can refuse a value of the wrong kind instead of guessing. Failures are `SnmpError(status, detail)`
with a status a dashboard can group by and a detail a person can act on.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

from agent.snmp import usm
from agent.snmp.ber import (COUNTER32, COUNTER64, END_OF_MIB_VIEW, GAUGE32, GET, GETBULK, GETNEXT, INTEGER, IPADDRESS,
                            NO_SUCH_INSTANCE, NO_SUCH_OBJECT, NULL_TAG, OCTETS, OID, OPAQUE, REPORT, RESPONSE, SEQUENCE,
                            TIMETICKS, UINTEGER32, Binding, BerError, Oid, children, error_name, expect, header, integer,
                            octets, read_int, read_oid, read_pdu, request_pdu, sequence)
from agent.snmp.config import DeviceSpec

MAX_WALK_REQUESTS = 500  # a table larger than this many pages is a device bug, not a clinic router
GEN_ERR_RETRIES = 2  # a walk's request answered genErr is asked again this many times
TIMEOUT_DETAIL = ("no response to the request (device off, wrong address/port, firewall, wrong v2c community, "
                  "or a v3 privacy key that does not match)")


class _NoSuchName(Exception):
    def __init__(self, index: int) -> None:
        self.index = index


class SnmpError(Exception):
    """The device could not be read. status: timeout, unreachable, auth_failed, unknown_user, error."""

    def __init__(self, status: str, detail: str) -> None:
        super().__init__(f"{status}: {detail}")
        self.status, self.detail = status, detail


@dataclass(frozen=True)
class Reading:
    """One value as the device sent it: `kind` is its SNMP type, `value` a plain int or str."""

    kind: str  # integer, counter32, counter64, gauge32, timeticks, string, oid, ipaddress, opaque
    value: int | str
    at: float  # agent's monotonic clock, seconds: midway between the request and its reply


def parse_oid(text: str) -> Oid:
    return tuple(int(part) for part in text.strip().strip(".").split("."))


def format_oid(oid: Oid) -> str:
    return ".".join(map(str, oid))


_UNSIGNED = {COUNTER32: "counter32", GAUGE32: "gauge32", UINTEGER32: "gauge32", TIMETICKS: "timeticks",
             COUNTER64: "counter64"}


def convert(tag: int, body: bytes, at: float) -> Reading | None:
    """A value as the device encoded it, as a Reading; None for noSuchObject, noSuchInstance, endOfMibView
    and NULL (what a device sends for a value it does not have)."""
    if tag in (NULL_TAG, NO_SUCH_OBJECT, NO_SUCH_INSTANCE, END_OF_MIB_VIEW):
        return None
    if tag in _UNSIGNED or tag == INTEGER:
        if not body:  # no digits: not a number, and not to be read as 0
            return Reading("unknown", "", at)
        # counters read unsigned even where a device forgot the leading zero octet of a value >= 2**31
        return Reading(_UNSIGNED.get(tag, "integer"), int.from_bytes(body, "big", signed=tag == INTEGER), at)
    if tag == IPADDRESS:
        return Reading("ipaddress", ".".join(map(str, body)) if len(body) == 4 else body.hex(":"), at)
    if tag in (OCTETS, OPAQUE):
        text = body.decode("utf-8", "replace").rstrip("\x00")
        return Reading("string" if tag == OCTETS else "opaque", text if text.isprintable() else body.hex(":"), at)
    if tag == OID:
        try:
            return Reading("oid", format_oid(read_oid(body)), at)
        except BerError:
            return Reading("unknown", body.hex(":"), at)
    return Reading("unknown", body.hex(":"), at)


# The device's report, as (status, detail); {user} in a detail is our SNMPv3 user's name.
_REFUSED = {
    "wrong_digest": ("auth_failed", "the device refused our SNMPv3 authentication (wrong auth_key or auth_protocol)"),
    "unknown_user": ("unknown_user", "the device does not know this SNMPv3 user: {user!r}"),
    "unsupported_sec_level": ("auth_failed", "the device does not allow this SNMPv3 level for the user"),
    "decryption_error": ("auth_failed", "SNMPv3 privacy failed: the device could not decrypt our request "
                                        "(priv_key or priv_protocol)"),
}


class Engines:
    """The SNMP clients of one agent, closed together (each holds one UDP socket, opened at its first request).
    Made and closed in the event loop that polls.

    Each client keeps its own SNMPv3 keys, localized for its own device, so two devices with the same
    user name and their own keys never meet (installers commonly reuse a user name with a key per device).
    """

    def __init__(self) -> None:
        self._clients: list[Client] = []

    def add(self, client: Client) -> None:
        self._clients.append(client)

    def close(self) -> None:
        for client in self._clients:
            client.close()
        self._clients.clear()


class _Endpoint(asyncio.DatagramProtocol):
    """One device's UDP socket: a reply goes to the request waiting under its key (request-id, or v3 msgID);
    anything else (a late reply to an abandoned request, a datagram that is not SNMP) is dropped."""

    def __init__(self, key_of: Callable[[bytes], int]) -> None:
        self.key_of = key_of
        self.pending: dict[int, asyncio.Future[bytes]] = {}
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: object) -> None:
        try:
            key = self.key_of(data)
        except (BerError, IndexError, ValueError):
            return
        waiting = self.pending.get(key)
        if waiting is not None and not waiting.done():
            waiting.set_result(data)

    def error_received(self, exc: Exception) -> None:
        pass  # an ICMP error (port unreachable): the request times out as a silent device's does


def _community_key(data: bytes) -> int:
    top = children(data, *expect(header(data, 0), SEQUENCE, "message"))
    return read_int(data, children(data, top[2][1], top[2][2])[0], "request-id")


class Client:
    """One device's SNMP session."""

    def __init__(self, engines: Engines, spec: DeviceSpec) -> None:
        self.spec = spec
        self.requests = 0
        self._endpoint: _Endpoint | None = None
        self._id = int.from_bytes(os.urandom(4), "big") & 0x3FFFFFFF
        self.security: usm.Security | None = None  # v3: keys localized for the device's engine, once discovered
        self._clock = (0, 0, 0.0)  # v3: the device's engine boots and time, and our monotonic time when heard
        if spec.version == "3":
            assert spec.v3 is not None
            auth_pass, priv_pass = spec.v3.keys()
            self.user = usm.User(spec.v3.user.encode(), spec.v3.auth_protocol if auth_pass else None,
                                 auth_pass.encode() if auth_pass else None,
                                 spec.v3.priv_protocol if priv_pass else None,
                                 priv_pass.encode() if priv_pass else None, spec.v3.context.encode())
        else:
            self.community = spec.community_string().encode()
        engines.add(self)

    def close(self) -> None:
        if self._endpoint is not None and self._endpoint.transport is not None:
            self._endpoint.transport.close()
        self._endpoint = None

    def _next_id(self) -> int:
        self._id = (self._id + 1) & 0x7FFFFFFF
        return self._id

    async def _open(self) -> _Endpoint:
        if self._endpoint is None:
            loop = asyncio.get_running_loop()
            key_of = usm.msg_id if self.spec.version == "3" else _community_key
            try:
                _, endpoint = await loop.create_datagram_endpoint(lambda: _Endpoint(key_of),
                                                                  remote_addr=(self.spec.host, self.spec.port))
            except socket.gaierror as exc:
                raise SnmpError("unreachable", f"cannot resolve {self.spec.host!r}: {exc}") from None
            except OSError as exc:
                raise SnmpError("unreachable", f"cannot reach {self.spec.host!r}: {exc}") from None
            self._endpoint = endpoint
        return self._endpoint

    async def _roundtrip(self, key: int, make: Callable[[], bytes]) -> bytes:
        """Send what `make` builds (built again for each retry: a v3 message carries the time) until a reply
        under `key` comes, `retries` times after the first, each waited for `timeout_s`."""
        endpoint = await self._open()
        reply: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        endpoint.pending[key] = reply
        try:
            for _ in range(self.spec.retries + 1):
                assert endpoint.transport is not None
                endpoint.transport.sendto(make())
                try:
                    return await asyncio.wait_for(asyncio.shield(reply), self.spec.timeout_s)
                except asyncio.TimeoutError:
                    continue
            raise SnmpError("timeout", TIMEOUT_DETAIL)
        finally:
            endpoint.pending.pop(key, None)

    async def _request(self, tag: int, oids: list[Oid], non_repeaters: int = 0,
                       max_repetitions: int = 0) -> tuple[str, int, list[Binding]]:
        """(error status's name, "" for none; error index; bindings) of one request."""
        self.requests += 1
        try:
            if self.spec.version == "3":
                return await self._request_v3(tag, oids, non_repeaters, max_repetitions)
            request_id = self._next_id()
            message = sequence(integer(0 if self.spec.version == "1" else 1), octets(self.community),
                               request_pdu(tag, request_id, oids, non_repeaters, max_repetitions))
            data = await self._roundtrip(request_id, lambda: message)
            top = children(data, *expect(header(data, 0), SEQUENCE, "message"))
            answer, _, status, index, binds = read_pdu(data, top[2])
            if answer != RESPONSE:
                raise BerError(f"PDU type 0x{answer:02x} where a response was due")
        except BerError as exc:
            raise SnmpError("error", f"malformed reply: {exc}") from None
        return (error_name(status) if status else ""), index, binds

    # -- SNMPv3 ---------------------------------------------------------------------------
    def _now(self) -> tuple[int, int]:
        boots, engine_time, heard = self._clock
        return boots, engine_time + int(time.monotonic() - heard)

    async def _discover(self) -> None:
        """RFC 3414 4: the device's engine id (and its boots and time) from the report to an empty request."""
        msg_id = self._next_id()
        probe = usm.message(msg_id, usm.FLAG_REPORTABLE, b"", 0, 0, b"",
                            usm.scoped_pdu(b"", b"", request_pdu(GET, self._next_id(), [])))
        got = usm.parse(await self._roundtrip(msg_id, lambda: probe))
        if not got.engine_id:
            raise SnmpError("error", "the device did not give its SNMPv3 engine id")
        self.security = usm.Security(self.user, got.engine_id)
        self._clock = (got.boots, got.time, time.monotonic())

    async def _request_v3(self, tag: int, oids: list[Oid], non_repeaters: int,
                          max_repetitions: int) -> tuple[str, int, list[Binding]]:
        for _ in range(3):  # a rediscovery or a resynchronised clock, and then the request again
            if self.security is None:
                await self._discover()
            security = self.security
            assert security is not None
            msg_id, pdu = self._next_id(), request_pdu(tag, self._next_id(), oids, non_repeaters, max_repetitions)
            scoped = usm.scoped_pdu(security.engine_id, self.user.context, pdu)
            flags = self.user.flags | usm.FLAG_REPORTABLE

            def build() -> bytes:
                boots, engine_time = self._now()
                return usm.message(msg_id, flags, security.engine_id, boots, engine_time, self.user.name, scoped,
                                   security)

            got = usm.parse(await self._roundtrip(msg_id, build))
            authentic = False
            if got.flags & usm.FLAG_AUTH:
                if got.engine_id != security.engine_id or not got.authentic(security):
                    raise SnmpError("auth_failed", "the device's reply failed our SNMPv3 authentication check "
                                                   "(wrong auth_key or auth_protocol, or not the device configured)")
                authentic = True
                self._clock = (got.boots, got.time, time.monotonic())
            data, element = got.scoped(security if authentic else None)
            answer, _, status, index, binds = read_pdu(data, element)
            if answer == REPORT:
                kind = usm.report_kind(binds)
                if kind == "unknown_engine_id":  # the device's engine id changed (reconfigured, replaced)
                    self.security = None
                    continue
                if kind == "not_in_time_window" and authentic:  # rebooted: its new boots and time are in hand
                    continue
                refused = _REFUSED.get(kind or "")
                if refused:
                    raise SnmpError(refused[0], refused[1].format(user=self.user.name.decode(errors="replace")))
                raise SnmpError("error", f"the device reported {format_oid(binds[0][0]) if binds else 'nothing'} "
                                         "instead of answering")
            if answer != RESPONSE:
                raise BerError(f"PDU type 0x{answer:02x} where a response was due")
            if self.user.flags & usm.FLAG_AUTH and not authentic:
                raise SnmpError("auth_failed", "the device answered without the SNMPv3 authentication asked for")
            return (error_name(status) if status else ""), index, binds
        raise SnmpError("error", "the device kept refusing our SNMPv3 engine id or time (restarting in a loop?)")

    async def get(self, oids: list[Oid]) -> dict[Oid, Reading | None]:
        """The values at `oids` (None where the device has no such object)."""
        if self.spec.version == "1":
            return await self._get_v1(oids)
        return await self._get(oids)

    async def _get_v1(self, oids: list[Oid]) -> dict[Oid, Reading | None]:
        # SNMPv1 has no per-object "no such object": one missing OID fails the whole request with
        # noSuchName at its index. Drop it and ask again for the rest.
        missing: dict[Oid, Reading | None] = {}
        wanted = list(oids)
        while wanted:
            try:
                return {**missing, **await self._get(wanted)}
            except _NoSuchName as gone:
                missing[wanted.pop(gone.index)] = None
        return missing

    async def _get(self, oids: list[Oid]) -> dict[Oid, Reading | None]:
        sent = time.monotonic()
        status, index, binds = await self._request(GET, oids)
        at = (sent + time.monotonic()) / 2  # the device read its values somewhere in between
        if status:
            if status == "noSuchName" and self.spec.version == "1" and 0 < index <= len(oids):
                raise _NoSuchName(index - 1)
            where = format_oid(oids[index - 1]) if 0 < index <= len(oids) else "?"
            raise SnmpError("error", f"device answered {status} at {where}")
        return {oid: convert(tag, body, at) for oid, tag, body in binds}

    async def _walk_apart(self, rows: dict[Oid, dict[Oid, Reading]], last: dict[Oid, Oid]) -> list[str]:
        """Finish a walk one column and one row at a time (GETNEXT), stepping over a row whose value the
        device cannot read (genErr) to the next row another column has. Returns what was stepped over."""
        problems: list[str] = []
        for column in list(last):
            at_oid = last[column]
            for _ in range(MAX_WALK_REQUESTS):
                sent = time.monotonic()
                try:
                    status, _index, binds = await self._request(GETNEXT, [at_oid])
                except SnmpError as exc:
                    problems.append(f"{format_oid(column)}: {exc}")
                    break
                if status:
                    if status not in ("genErr", "noSuchName"):
                        problems.append(f"{format_oid(column)}: device answered {status}")
                        break
                    done = at_oid[len(column):]
                    later = sorted({i for r in rows.values() for i in r if i > done})
                    if status == "noSuchName" or not later:
                        break
                    problems.append(f"{format_oid(column + later[0])} unreadable ({status})")
                    at_oid = column + later[0]  # the next GETNEXT answers the row after it
                    continue
                if not binds:
                    break
                oid, tag, body = binds[0]
                reading = convert(tag, body, (sent + time.monotonic()) / 2)
                if reading is None or oid[:len(column)] != column or oid <= at_oid:
                    break
                rows[column][oid[len(column):]] = reading
                at_oid = oid
        return problems

    async def walk(self, columns: list[Oid], max_repetitions: int | None = None,
                   ) -> tuple[dict[Oid, dict[Oid, Reading]], str]:
        """Every row of each column (GETBULK, all columns in each request): {column: {index: Reading}}.

        Returns what was read and, if the walk stopped early (a timeout halfway, an
        agent that loops), why; a caller keeps the rows it got and says the rest is missing.
        """
        rows: dict[Oid, dict[Oid, Reading]] = {c: {} for c in columns}
        last = {c: c for c in columns}
        gen_errs = 0
        for _ in range(MAX_WALK_REQUESTS):
            if not last:
                return rows, ""
            asked = list(last)
            sent = time.monotonic()
            try:
                if self.spec.version == "1":  # no GETBULK in v1: one row of every column per GETNEXT
                    status, index, binds = await self._request(GETNEXT, [last[c] for c in asked])
                else:
                    status, index, binds = await self._request(GETBULK, [last[c] for c in asked], 0,
                                                               max_repetitions or self.spec.max_repetitions)
            except SnmpError as exc:
                if not any(rows.values()):
                    raise
                return rows, f"walk stopped after {sum(map(len, rows.values()))} values: {exc}"
            if status == "noSuchName" and self.spec.version == "1":
                # v1's way of saying that column ran past the end of the MIB: drop it, ask again for the rest.
                last.pop(asked[index - 1] if 0 < index <= len(asked) else asked[0], None)
                continue
            at = (sent + time.monotonic()) / 2
            if status == "genErr" and gen_errs < GEN_ERR_RETRIES:
                # net-snmp answers genErr for a whole request when one value of it cannot be read: a row
                # of a VPN's TUN interface (OpenWrt's snmpd is net-snmp), or a table changing under the
                # walk. One column at a time, a value that cannot be read is stepped over.
                gen_errs += 1
                problems = await self._walk_apart(rows, last)
                return rows, "; ".join(problems)
            if status:
                if not any(rows.values()):
                    raise SnmpError("error", f"device answered {status}")
                return rows, f"walk stopped after {sum(map(len, rows.values()))} values: error: {status}"
            finished: set[Oid] = set()
            for position, (oid, tag, body) in enumerate(binds):
                column = asked[position % len(asked)]
                if column in finished or column not in last:
                    continue
                reading = convert(tag, body, at)
                if reading is None or oid[:len(column)] != column:
                    finished.add(column)
                    continue
                if oid <= last[column]:
                    finished.add(column)
                    return rows, f"device returned OIDs out of order at {format_oid(oid)}"
                rows[column][oid[len(column):]] = reading
                last[column] = oid
            if not binds:
                finished.update(asked)
            for column in finished:
                last.pop(column, None)
        return rows, f"walk abandoned after {MAX_WALK_REQUESTS} requests"
