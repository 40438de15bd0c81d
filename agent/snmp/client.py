"""A thin SNMP client over pysnmp 7's asyncio API: GET and multi-column GETBULK walks.

MIB lookups are off (numeric OIDs in, plain Python values out); every reply is
typed (`Reading`), so a caller can refuse a value of the wrong kind instead of
guessing. Failures are `SnmpError(status, detail)` with a status a dashboard can
group by and a detail a person can act on.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from pyasn1.type import univ

from agent.imports import kept_out
from agent.snmp import aescfb
from agent.snmp.config import DeviceSpec

# pysnmp imports `cryptography` for SNMPv3 privacy when it finds it (8.7 MiB resident); AES goes through
# the OpenSSL the ssl module links instead (agent/snmp/aescfb.py), DES loads `cryptography` at its first device.
with kept_out("cryptography"):
    from pysnmp.hlapi.v3arch.asyncio import (
        CommunityData, ContextData, ObjectIdentity, ObjectType, SnmpEngine, UdpTransportTarget, UsmUserData,
        bulk_cmd, get_cmd, next_cmd)
    from pysnmp.hlapi.v3arch.asyncio import auth as usm
    from pysnmp.proto import errind, rfc1902, rfc1905
aescfb.install()

Oid = tuple[int, ...]

AUTH = {"md5": usm.USM_AUTH_HMAC96_MD5, "sha": usm.USM_AUTH_HMAC96_SHA, "sha224": usm.USM_AUTH_HMAC128_SHA224,
        "sha256": usm.USM_AUTH_HMAC192_SHA256, "sha384": usm.USM_AUTH_HMAC256_SHA384,
        "sha512": usm.USM_AUTH_HMAC384_SHA512}
PRIV = {"des": usm.USM_PRIV_CBC56_DES, "aes": usm.USM_PRIV_CFB128_AES,
        "aes192": usm.USM_PRIV_CFB192_AES_BLUMENTHAL, "aes256": usm.USM_PRIV_CFB256_AES_BLUMENTHAL,
        "aes192c": usm.USM_PRIV_CFB192_AES, "aes256c": usm.USM_PRIV_CFB256_AES}
# pysnmp counts request timeouts in ticks of its dispatcher's timer (0.1 s), and its asyncio dispatcher
# ticks for as long as a transport is open: ten wake-ups a second on a router that is polled once a
# minute. Between polls an engine ticks once a second (its caches, timed in ticks, still expire: in
# 50 minutes instead of 5) and a poll sets it back before its first request (`awake`).
POLL_TICK_S = 0.1
IDLE_TICK_S = 1.0
_awake: weakref.WeakKeyDictionary[SnmpEngine, int] = weakref.WeakKeyDictionary()
MAX_WALK_REQUESTS = 500  # a table larger than this many pages is a device bug, not a clinic router
GEN_ERR_RETRIES = 2  # a walk's request answered genErr is asked again this many times


@contextlib.contextmanager
def awake(engine: SnmpEngine) -> Iterator[None]:
    """Requests of `engine` go out in this block: its timer at pysnmp's resolution until the last such block
    of the engine ends (devices sharing an engine may be polled at once). A timeout is never counted
    short; the first one of a poll may be counted up to a second late (the timer's pending idle tick)."""
    count = _awake.get(engine, 0)
    _awake[engine] = count + 1
    if count == 0:
        _tick(engine, POLL_TICK_S)
    try:
        yield
    finally:
        _awake[engine] -= 1
        if _awake[engine] == 0:
            _tick(engine, IDLE_TICK_S)


def _tick(engine: SnmpEngine, seconds: float) -> None:
    dispatcher = engine.transport_dispatcher  # None until the engine's first request
    if dispatcher is None or dispatcher.get_timer_resolution() == seconds:
        return
    dispatcher.set_timer_resolution(seconds)
    ticker = getattr(dispatcher, "loopingcall", None)
    if seconds < IDLE_TICK_S and ticker is not None and not ticker.done():
        ticker.cancel()  # asleep for up to a second: wake it at the new pace
        dispatcher.loopingcall = asyncio.ensure_future(dispatcher.handle_timeout())


class _NoSuchName(Exception):
    def __init__(self, index: int) -> None:
        self.index = index


class SnmpError(Exception):
    """The device could not be read. status: timeout, auth_failed, unknown_user, refused, error."""

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


# Order matters: Counter32, Gauge32, TimeTicks and Unsigned32 are all subclasses of Integer.
_KINDS: list[tuple[type, str]] = [
    (rfc1902.Counter64, "counter64"), (rfc1902.Counter32, "counter32"), (rfc1902.TimeTicks, "timeticks"),
    (rfc1902.Gauge32, "gauge32"), (rfc1902.Unsigned32, "gauge32"), (rfc1902.IpAddress, "ipaddress"),
    (rfc1902.Opaque, "opaque"), (univ.Integer, "integer"), (univ.OctetString, "string"),
    (univ.ObjectIdentifier, "oid"),
]


def convert(value: Any, at: float) -> Reading | None:
    """A pysnmp value as a Reading; None for noSuchObject, noSuchInstance and endOfMibView."""
    if isinstance(value, (rfc1905.NoSuchObject, rfc1905.NoSuchInstance, rfc1905.EndOfMibView, univ.Null)):
        return None
    for cls, kind in _KINDS:
        if isinstance(value, cls):
            if kind == "ipaddress":
                return Reading(kind, ".".join(str(b) for b in bytes(value.asOctets())), at)
            if kind in ("string", "opaque"):
                raw = bytes(value.asOctets())
                text = raw.decode("utf-8", "replace").rstrip("\x00")
                return Reading(kind, text if text.isprintable() else raw.hex(":"), at)
            if kind == "oid":
                return Reading(kind, str(value), at)
            return Reading(kind, int(value), at)
    return Reading("unknown", str(value), at)


def _status(indication: Any) -> SnmpError:
    text = str(indication)
    if isinstance(indication, errind.RequestTimedOut):
        return SnmpError("timeout", "no response to the request (device off, wrong address/port, firewall, "
                                    "wrong v2c community, or a v3 privacy key that does not match)")
    if isinstance(indication, (errind.WrongDigest, errind.AuthenticationFailure, errind.AuthenticationError)):
        return SnmpError("auth_failed", "the device refused our SNMPv3 authentication (wrong auth_key or "
                                        f"auth_protocol): {text}")
    if isinstance(indication, errind.UnknownUserName):
        return SnmpError("unknown_user", f"the device does not know this SNMPv3 user: {text}")
    if isinstance(indication, (errind.DecryptionError, errind.UnsupportedPrivProtocol, errind.NoEncryption)):
        return SnmpError("auth_failed", f"SNMPv3 privacy failed (priv_key or priv_protocol): {text}")
    if isinstance(indication, errind.UnsupportedSecurityLevel):
        return SnmpError("auth_failed", f"the device does not allow this SNMPv3 level for the user: {text}")
    if isinstance(indication, errind.NotInTimeWindow):
        return SnmpError("error", f"SNMPv3 time window mismatch (device rebooted mid-request?): {text}")
    return SnmpError("error", text)


@dataclass
class _EngineSlot:
    engine: SnmpEngine
    users: dict[str, tuple[str, set[str]]] = field(default_factory=dict)  # user -> (credentials digest, devices)


class Engines:
    """The SNMP engines of one agent, handed out so that no two devices' SNMPv3 credentials meet in one engine.

    pysnmp keeps an engine's USM users in one table keyed by (engine id, user name), and registers each
    configured user under the local engine id, cloning it per device engine id on discovery. Two devices
    with the same user name and different keys in one engine therefore replace each other's entry while
    both are polled, and one of them fails with "Wrong SNMP PDU digest". Installers commonly reuse a user
    name with a key per device, so here a user name has one set of keys per engine: a device whose user
    name is already held with other keys gets another engine (about 0.7 MiB each). v1/v2c devices and
    devices that share their credentials share the first engine. Call from the event loop that polls.
    """

    def __init__(self) -> None:
        self._slots: list[_EngineSlot] = []

    def for_device(self, spec: DeviceSpec) -> SnmpEngine:
        for slot in self._slots:  # a device whose spec changed gives up what it held
            for user, (digest, devices) in list(slot.users.items()):
                devices.discard(spec.name)
                if not devices:
                    del slot.users[user]
        if spec.version != "3":
            return self._slot(0).engine
        assert spec.v3 is not None
        v3 = spec.v3
        digest = hashlib.sha256(repr((v3.level, v3.auth_protocol, v3.priv_protocol, v3.keys())).encode()).hexdigest()
        index = 0
        while True:
            slot = self._slot(index)
            held = slot.users.get(v3.user)
            if held is None or held[0] == digest:
                slot.users.setdefault(v3.user, (digest, set()))[1].add(spec.name)
                return slot.engine
            index += 1

    def _slot(self, index: int) -> _EngineSlot:
        while len(self._slots) <= index:
            self._slots.append(_EngineSlot(SnmpEngine()))
        return self._slots[index]

    def __len__(self) -> int:
        return len(self._slots)

    def close(self) -> None:
        for slot in self._slots:
            slot.engine.close_dispatcher()
        self._slots.clear()


class Client:
    """One device's SNMP session on an engine chosen by `Engines`."""

    def __init__(self, engine: SnmpEngine, spec: DeviceSpec) -> None:
        self.engine, self.spec = engine, spec
        self.target: UdpTransportTarget | None = None
        self.requests = 0
        if spec.version in ("1", "2c"):
            self.auth: Any = CommunityData(spec.community_string(), mpModel=0 if spec.version == "1" else 1)
            self.context = ContextData()
        else:
            assert spec.v3 is not None
            auth_key, priv_key = spec.v3.keys()
            if priv_key and spec.v3.priv_protocol == "des":
                aescfb.need_des()
            self.auth = UsmUserData(spec.v3.user, authKey=auth_key, privKey=priv_key,
                                    authProtocol=AUTH[spec.v3.auth_protocol] if auth_key else usm.USM_AUTH_NONE,
                                    privProtocol=PRIV[spec.v3.priv_protocol] if priv_key else usm.USM_PRIV_NONE)
            self.context = ContextData(contextName=spec.v3.context)

    async def _target(self) -> UdpTransportTarget:
        if self.target is None:
            try:
                self.target = await UdpTransportTarget.create((self.spec.host, self.spec.port),
                                                              timeout=self.spec.timeout_s, retries=self.spec.retries)
            except Exception as exc:  # pysnmp raises its own error for unresolvable names
                raise SnmpError("unreachable", f"cannot resolve {self.spec.host!r}: {exc}") from None
        return self.target

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
        target = await self._target()
        self.requests += 1
        sent = time.monotonic()
        indication, status, index, binds = await get_cmd(
            self.engine, self.auth, target, self.context, *[ObjectType(ObjectIdentity(format_oid(o))) for o in oids],
            lookupMib=False)
        at = (sent + time.monotonic()) / 2  # the device read its values somewhere in between
        if indication:
            raise _status(indication)
        if status:
            if self.spec.version == "1" and status.prettyPrint() == "noSuchName" and 0 < int(index) <= len(oids):
                raise _NoSuchName(int(index) - 1)
            raise SnmpError("error", f"device answered {status.prettyPrint()} at "
                                     f"{format_oid(oids[int(index) - 1]) if index else '?'}")
        return {tuple(oid): convert(value, at) for oid, value in binds}

    async def _walk_apart(self, target: Any, rows: dict[Oid, dict[Oid, Reading]], last: dict[Oid, Oid]) -> list[str]:
        """Finish a walk one column and one row at a time (GETNEXT), stepping over a row whose value the
        device cannot read (genErr) to the next row another column has. Returns what was stepped over."""
        problems: list[str] = []
        for column in list(last):
            at_oid = last[column]
            for _ in range(MAX_WALK_REQUESTS):
                self.requests += 1
                sent = time.monotonic()
                try:
                    indication, status, _index, binds = await next_cmd(
                        self.engine, self.auth, target, self.context, ObjectType(ObjectIdentity(format_oid(at_oid))),
                        lookupMib=False)
                except Exception as exc:  # noqa: BLE001 - a malformed reply must not end the poll
                    indication, status, binds = errind.OtherError(str(exc)), 0, []
                if indication:
                    problems.append(f"{format_oid(column)}: {_status(indication)}")
                    break
                if status:
                    if status.prettyPrint() not in ("genErr", "noSuchName"):
                        problems.append(f"{format_oid(column)}: device answered {status.prettyPrint()}")
                        break
                    done = at_oid[len(column):]
                    later = sorted({i for r in rows.values() for i in r if i > done})
                    if status.prettyPrint() == "noSuchName" or not later:
                        break
                    problems.append(f"{format_oid(column + later[0])} unreadable ({status.prettyPrint()})")
                    at_oid = column + later[0]  # the next GETNEXT answers the row after it
                    continue
                if not binds:
                    break
                oid, value = tuple(binds[0][0]), binds[0][1]
                reading = convert(value, (sent + time.monotonic()) / 2)
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
        target = await self._target()
        rows: dict[Oid, dict[Oid, Reading]] = {c: {} for c in columns}
        last = {c: c for c in columns}
        gen_errs = 0
        for _ in range(MAX_WALK_REQUESTS):
            if not last:
                return rows, ""
            asked = list(last)
            self.requests += 1
            sent = time.monotonic()
            request = [ObjectType(ObjectIdentity(format_oid(last[c]))) for c in asked]
            try:
                if self.spec.version == "1":  # no GETBULK in v1: one row of every column per GETNEXT
                    indication, status, _index, binds = await next_cmd(
                        self.engine, self.auth, target, self.context, *request, lookupMib=False)
                else:
                    indication, status, _index, binds = await bulk_cmd(
                        self.engine, self.auth, target, self.context, 0,
                        max_repetitions or self.spec.max_repetitions, *request, lookupMib=False)
            except Exception as exc:  # noqa: BLE001 - a malformed reply must not end the poll
                indication, status, _index, binds = errind.OtherError(str(exc)), 0, 0, []
            if status and self.spec.version == "1" and status.prettyPrint() == "noSuchName":
                # v1's way of saying that column ran past the end of the MIB: drop it, ask again for the rest.
                last.pop(asked[int(_index) - 1] if 0 < int(_index) <= len(asked) else asked[0], None)
                continue
            at = (sent + time.monotonic()) / 2
            if status and status.prettyPrint() == "genErr" and gen_errs < GEN_ERR_RETRIES:
                # net-snmp answers genErr for a whole request when one value of it cannot be read: a row
                # of a VPN's TUN interface (OpenWrt's snmpd is net-snmp), or a table changing under the
                # walk. One column at a time, a value that cannot be read is stepped over.
                gen_errs += 1
                problems = await self._walk_apart(target, rows, last)
                return rows, "; ".join(problems)
            if indication or status:
                if not any(rows.values()):
                    if indication:
                        raise _status(indication)
                    raise SnmpError("error", f"device answered {status.prettyPrint()}")
                problem = _status(indication) if indication else SnmpError("error", status.prettyPrint())
                return rows, f"walk stopped after {sum(map(len, rows.values()))} values: {problem}"
            finished: set[Oid] = set()
            for position, (oid, value) in enumerate(binds):
                column = asked[position % len(asked)]
                if column in finished or column not in last:
                    continue
                oid = tuple(oid)
                reading = convert(value, at)
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
