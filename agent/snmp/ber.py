"""The few BER encodings SNMP uses (RFC 3416's PDUs, RFC 3412's v3 message, RFC 3414's USM parameters).

Encoding builds bytes from the inside out; decoding works on positions in the received datagram, so
that a v3 reply's authentication parameters can be found (and zeroed for the digest) where they lie.
Anything SNMP does not allow (an indefinite length, a multi-byte tag, a length beyond the datagram)
is a `BerError`, never a guess.
"""

from __future__ import annotations

INTEGER, OCTETS, NULL_TAG, OID, SEQUENCE = 0x02, 0x04, 0x05, 0x06, 0x30
GET, GETNEXT, RESPONSE, GETBULK, REPORT = 0xA0, 0xA1, 0xA2, 0xA5, 0xA8
# RFC 2578's application types and RFC 3416's exceptions
IPADDRESS, COUNTER32, GAUGE32, TIMETICKS, OPAQUE, COUNTER64, UINTEGER32 = 0x40, 0x41, 0x42, 0x43, 0x44, 0x46, 0x47
NO_SUCH_OBJECT, NO_SUCH_INSTANCE, END_OF_MIB_VIEW = 0x80, 0x81, 0x82
NULL = b"\x05\x00"

Oid = tuple[int, ...]


class BerError(ValueError):
    """A datagram that is not well-formed BER, or not the SNMP structure expected."""


def _length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def tlv(tag: int, body: bytes) -> bytes:
    return bytes([tag]) + _length(len(body)) + body


def sequence(*parts: bytes) -> bytes:
    return tlv(SEQUENCE, b"".join(parts))


def integer(value: int) -> bytes:
    return tlv(INTEGER, value.to_bytes(value.bit_length() // 8 + 1, "big", signed=True))


def octets(value: bytes) -> bytes:
    return tlv(OCTETS, value)


def oid(value: Oid) -> bytes:
    if len(value) < 2 or value[0] > 2 or (value[0] < 2 and value[1] >= 40):
        raise BerError(f"not an OID that BER can carry: {'.'.join(map(str, value))}")
    body = bytearray()
    for arc in (value[0] * 40 + value[1], *value[2:]):
        if arc < 0:
            raise BerError(f"negative OID arc in {'.'.join(map(str, value))}")
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        body += bytes(reversed(chunk))
    return tlv(OID, bytes(body))


def header(data: bytes, pos: int, end: int | None = None) -> tuple[int, int, int]:
    """(tag, start of the value, end of the value) of the element at `pos`."""
    end = len(data) if end is None else end
    if pos + 2 > end:
        raise BerError("truncated element")
    tag, n = data[pos], data[pos + 1]
    if tag & 0x1F == 0x1F:
        raise BerError(f"multi-byte tag at byte {pos}")
    pos += 2
    if n & 0x80:
        size = n & 0x7F
        if size == 0 or size > 4 or pos + size > end:
            raise BerError(f"bad length at byte {pos - 1}")
        n = int.from_bytes(data[pos:pos + size], "big")
        pos += size
    if pos + n > end:
        raise BerError(f"element at byte {pos} runs past its container")
    return tag, pos, pos + n


def children(data: bytes, start: int, end: int) -> list[tuple[int, int, int]]:
    """The elements inside a constructed value that spans data[start:end]."""
    found = []
    while start < end:
        element = header(data, start, end)
        found.append(element)
        start = element[2]
    return found


def expect(element: tuple[int, int, int], tag: int, what: str) -> tuple[int, int]:
    if element[0] != tag:
        raise BerError(f"{what}: tag 0x{element[0]:02x}, expected 0x{tag:02x}")
    return element[1], element[2]


def read_int(data: bytes, element: tuple[int, int, int], what: str) -> int:
    start, end = expect(element, INTEGER, what)
    if start == end:
        raise BerError(f"{what}: empty INTEGER")
    return int.from_bytes(data[start:end], "big", signed=True)


def read_octets(data: bytes, element: tuple[int, int, int], what: str) -> bytes:
    start, end = expect(element, OCTETS, what)
    return data[start:end]


def read_oid(body: bytes) -> Oid:
    if not body or body[-1] & 0x80:
        raise BerError("malformed OID")
    arcs, arc = [], 0
    for byte in body:
        arc = (arc << 7) | (byte & 0x7F)
        if not byte & 0x80:
            arcs.append(arc)
            arc = 0
    first = arcs[0]
    head = (0, first) if first < 40 else (1, first - 40) if first < 80 else (2, first - 80)
    return (*head, *arcs[1:])


def request_pdu(tag: int, request_id: int, oids: list[Oid], non_repeaters: int = 0, max_repetitions: int = 0) -> bytes:
    """A GET, GETNEXT or GETBULK (whose error-status and error-index carry its two counts)."""
    binds = sequence(*(sequence(oid(o), NULL) for o in oids))
    return tlv(tag, integer(request_id) + integer(non_repeaters) + integer(max_repetitions) + binds)


Binding = tuple[Oid, int, bytes]  # (oid, value's tag, value's content octets)


def read_pdu(data: bytes, element: tuple[int, int, int]) -> tuple[int, int, int, int, list[Binding]]:
    """(tag, request id, error status, error index, bindings) of a PDU."""
    tag, start, end = element
    parts = children(data, start, end)
    if len(parts) != 4:
        raise BerError(f"a PDU has 4 parts, this one {len(parts)}")
    binds: list[Binding] = []
    for bind in children(data, *expect(parts[3], SEQUENCE, "variable bindings")):
        pair = children(data, *expect(bind, SEQUENCE, "variable binding"))
        if len(pair) != 2:
            raise BerError("a variable binding has 2 parts")
        name = read_oid(data[slice(*expect(pair[0], OID, "binding name"))])
        binds.append((name, pair[1][0], data[pair[1][1]:pair[1][2]]))
    return (tag, read_int(data, parts[0], "request-id"), read_int(data, parts[1], "error-status"),
            read_int(data, parts[2], "error-index"), binds)


ERROR_STATUS = ("noError", "tooBig", "noSuchName", "badValue", "readOnly", "genErr", "noAccess", "wrongType",
                "wrongLength", "wrongEncoding", "wrongValue", "noCreation", "inconsistentValue",
                "resourceUnavailable", "commitFailed", "undoFailed", "authorizationError", "notWritable",
                "inconsistentName")


def error_name(status: int) -> str:
    return ERROR_STATUS[status] if 0 <= status < len(ERROR_STATUS) else f"error-status {status}"
