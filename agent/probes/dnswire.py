"""The DNS probe's one question and its answer, in RFC 1035's message format (struct over bytes).

The probe asks one question (no EDNS, recursion desired: what `dig +noedns` and dnspython's
`make_query` send) and reads of the reply only what it reports: the id, flags and rcode that say
whether it is the answer and what it says, the question it echoes, and the answer section's records
of the asked type and class (IN), as text in the presentation format of RFC 1035 (what dnspython's
`to_text` and `dig` print: names absolute with their final dot, a TXT record's strings quoted).
Every record of every section is framed and checked; anything malformed (cut short, a compression pointer that does
not point back, a name over 255 bytes, an address record of the wrong length, bytes left over) is a
`DnsWireError`, never a guess. Why not dnspython, which the probe used before: it costs the agent
about 3 MiB resident (86 modules) for the few hundred bytes it reads (docs/agent.md, Footprint).
"""

from __future__ import annotations

import socket
import struct
from typing import NamedTuple

TYPES = {"A": 1, "NS": 2, "CNAME": 5, "SOA": 6, "MX": 15, "TXT": 16, "AAAA": 28}
CLASS_IN = 1
QR = 0x8000
RD = 0x0100
RCODES = ("NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "YXDOMAIN", "YXRRSET", "NXRRSET",
          "NOTAUTH", "NOTZONE", "DSOTYPENI")
# Replies that may leave the question out (RFC 1035 does not say they must echo it).
_BARE_RCODES = {1, 2, 4, 5}
_HEADER = struct.Struct("!HHHHHH")
_RR = struct.Struct("!HHIH")  # type, class, TTL, rdata length
_NAME_ESCAPED = frozenset(b'"().;\\@$')
_TXT_ESCAPED = frozenset(b'"\\')
_SINGLETONS = {TYPES["CNAME"], TYPES["SOA"]}


class DnsWireError(ValueError):
    """A reply that is not a well-formed DNS message."""


def encode_name(name: str) -> bytes:
    """A name as the wire carries it; ValueError with what is wrong. Non-ASCII labels in IDNA (2003)."""
    text = name[:-1] if name.endswith(".") and name != "." else name
    if "\\" in text:
        raise ValueError(f"{name!r}: escapes (\\) are not supported in a query name")
    wire = bytearray()
    if text != ".":
        for label in text.split("."):
            try:
                raw = label.encode("ascii") if label.isascii() else label.encode("idna")
            except UnicodeError as exc:
                raise ValueError(f"{name!r}: label {label!r} is not a valid internationalised name ({exc})") from None
            if not raw:
                raise ValueError(f"{name!r}: empty label (two dots in a row, or a leading dot)")
            if len(raw) > 63:
                raise ValueError(f"{name!r}: label {label!r} is {len(raw)} bytes long (at most 63)")
            wire += bytes((len(raw),)) + raw
    wire += b"\0"
    if len(wire) > 255:
        raise ValueError(f"{name!r}: {len(wire)} bytes on the wire (at most 255)")
    return bytes(wire)


def query(name: str, qtype: str, ident: int) -> bytes:
    """One question of class IN with recursion desired, no EDNS."""
    return _HEADER.pack(ident, RD, 1, 0, 0, 0) + encode_name(name) + struct.pack("!HH", TYPES[qtype], CLASS_IN)


class Reply(NamedTuple):
    ident: int
    flags: int
    question: list[tuple[bytes, int, int]]  # (name in lower case as on the wire, type, class)
    records: list[tuple[bytes, int, int, str]]  # the answer section's records read: (owner, type, class, text)

    @property
    def rcode(self) -> int:
        return self.flags & 0x000F

    def rcode_text(self) -> str:
        return RCODES[self.rcode] if self.rcode < len(RCODES) else str(self.rcode)

    def answers(self, qtype: str) -> list[str]:
        """The answer section's records of the type asked, as text: grouped by owner name, in the order
        each owner first appears, each text once, and of a CNAME or SOA (of which a name has one) the
        last given (as dnspython groups them into record sets)."""
        want = TYPES[qtype]
        sets: dict[tuple[bytes, int], list[str]] = {}
        for owner, rdtype, rdclass, text in self.records:
            if rdtype == want:
                texts = sets.setdefault((owner, rdclass), [])
                if rdtype in _SINGLETONS:
                    texts[:] = [text]
                elif text not in texts:
                    texts.append(text)
        return [text for texts in sets.values() for text in texts]

    def answers_query(self, asked: bytes) -> bool:
        """Whether this is the reply to `asked` (a message made by `query`): a response, with its id
        and opcode, echoing its question (the question may be missing from a refusal or failure)."""
        ident, flags = struct.unpack_from("!HH", asked)
        if not self.flags & QR or self.ident != ident or (self.flags ^ flags) & 0x7800:
            return False
        if not self.question and self.rcode in _BARE_RCODES:
            return True
        name, end = _name(asked, _HEADER.size)
        qtype, qclass = struct.unpack_from("!HH", asked, end)
        return self.question == [(name.lower(), qtype, qclass)]


def read_reply(data: bytes) -> Reply:
    """The reply's header, question and answer records; DnsWireError if any part is malformed."""
    if len(data) < _HEADER.size:
        raise DnsWireError(f"{len(data)} bytes, shorter than a DNS header (12)")
    ident, flags, qdcount, ancount, nscount, arcount = _HEADER.unpack_from(data)
    at = _HEADER.size
    question = []
    for _ in range(qdcount):
        name, at = _name(data, at)
        qtype, qclass = _unpack("!HH", data, at)
        at += 4
        question.append((name.lower(), qtype, qclass))
    records = []
    for index in range(ancount + nscount + arcount):
        owner, at = _name(data, at)
        rdtype, rdclass, _ttl, length = _unpack(_RR.format, data, at)
        at += _RR.size
        end = at + length
        if end > len(data):
            raise DnsWireError(f"a record's data runs {end - len(data)} bytes past the message's end")
        if index < ancount and rdclass == CLASS_IN and rdtype in _READERS:
            records.append((owner.lower(), rdtype, rdclass, _READERS[rdtype](data, at, end)))
        at = end
    if at != len(data):
        raise DnsWireError(f"{len(data) - at} bytes after the last record")
    return Reply(ident, flags, question, records)


def _unpack(fmt: str, data: bytes, at: int) -> tuple:
    try:
        return struct.unpack_from(fmt, data, at)
    except struct.error:
        raise DnsWireError(f"cut short at byte {at}") from None


def _name(data: bytes, at: int) -> tuple[bytes, int]:
    """The name at `at` in wire form, compression pointers followed; and where the bytes after the name
    (its first pointer's, if any) begin. A pointer must point before the name, and each further one
    before the last one's target, so that following them always ends."""
    wire = bytearray()
    end = None
    limit = at
    while True:
        if at >= len(data):
            raise DnsWireError("a name runs past the message's end")
        length = data[at]
        if length >= 0xC0:
            if at + 1 >= len(data):
                raise DnsWireError("a compression pointer cut short")
            target = (length & 0x3F) << 8 | data[at + 1]
            if target >= limit:
                raise DnsWireError(f"a compression pointer at byte {at} does not point back (to {target})")
            if end is None:
                end = at + 2
            at = limit = target
            continue
        if length > 63:
            raise DnsWireError(f"a label length of {length:#x} (labels are at most 63 bytes)")
        wire += data[at:at + length + 1]
        if len(wire) > 255:
            raise DnsWireError("a name over 255 bytes")
        if at + length >= len(data):
            raise DnsWireError("a name runs past the message's end")
        at += length + 1
        if not length:
            return bytes(wire), at if end is None else end


def name_text(wire: bytes) -> str:
    """A wire-form name as text: absolute, with its final dot; special characters escaped as dig
    and dnspython print them (\\. \\" and the like, others outside printable ASCII as \\DDD)."""
    labels = []
    at = 0
    while wire[at]:
        label = wire[at + 1:at + 1 + wire[at]]
        labels.append(_escape(label, _NAME_ESCAPED, 0x21))
        at += 1 + wire[at]
    return ".".join(labels) + "." if labels else "."


def _escape(raw: bytes, special: frozenset[int], lowest: int) -> str:
    """Bytes as presentation text: `special` ones after a backslash, printable ASCII from `lowest` as
    they are, the rest as \\DDD (a name's labels escape a space, a TXT string does not)."""
    return "".join("\\" + chr(c) if c in special else chr(c) if lowest <= c < 0x7F else f"\\{c:03d}" for c in raw)


def _rdata_name(data: bytes, at: int, end: int) -> tuple[str, int]:
    name, after = _name(data, at)
    if after > end:
        raise DnsWireError("a name runs past its record's data")
    return name_text(name), after


def _whole(after: int, end: int) -> None:
    if after != end:
        raise DnsWireError(f"a record's data is {end - after} bytes longer than what it holds")


def _address(family: int, size: int):
    def read(data: bytes, at: int, end: int) -> str:
        if end - at != size:
            raise DnsWireError(f"an address record of {end - at} bytes (expected {size})")
        return socket.inet_ntop(family, data[at:end])
    return read


def _domain(data: bytes, at: int, end: int) -> str:
    text, after = _rdata_name(data, at, end)
    _whole(after, end)
    return text


def _mx(data: bytes, at: int, end: int) -> str:
    if end - at < 3:
        raise DnsWireError("an MX record cut short")
    text, after = _rdata_name(data, at + 2, end)
    _whole(after, end)
    return f"{struct.unpack_from('!H', data, at)[0]} {text}"


def _soa(data: bytes, at: int, end: int) -> str:
    mname, after = _rdata_name(data, at, end)
    rname, after = _rdata_name(data, after, end)
    if end - after != 20:
        raise DnsWireError(f"an SOA record's five numbers in {end - after} bytes (expected 20)")
    return " ".join([mname, rname, *map(str, struct.unpack_from("!IIIII", data, after))])


def _txt(data: bytes, at: int, end: int) -> str:
    strings = []
    while at < end:
        length = data[at]
        if at + 1 + length > end:
            raise DnsWireError("a TXT record's string runs past its data")
        strings.append(f'"{_escape(data[at + 1:at + 1 + length], _TXT_ESCAPED, 0x20)}"')
        at += 1 + length
    if not strings:
        raise DnsWireError("a TXT record with no string")
    return " ".join(strings)


_READERS = {TYPES["A"]: _address(socket.AF_INET, 4), TYPES["AAAA"]: _address(socket.AF_INET6, 16),
            TYPES["NS"]: _domain, TYPES["CNAME"]: _domain, TYPES["SOA"]: _soa, TYPES["MX"]: _mx, TYPES["TXT"]: _txt}
