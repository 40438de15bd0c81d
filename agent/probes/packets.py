"""IPv4 and ICMP packets built and parsed with struct: what the ICMP and traceroute probes need, without
scapy (whose import alone cost the agent ~64 MiB)."""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071): one's complement of the one's complement sum of 16-bit words."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def echo_request(ident: int, seq: int, payload: bytes) -> bytes:
    header = struct.pack("!BBHHH", 8, 0, 0, ident, seq & 0xFFFF)
    return struct.pack("!BBHHH", 8, 0, checksum(header + payload), ident, seq & 0xFFFF) + payload


@dataclass
class Icmp:
    """An ICMP message as received: type, code, the echo's id and seq, and what follows the header."""
    type: int
    code: int
    ident: int
    seq: int
    rest: bytes


def parse_icmp(data: bytes) -> Icmp | None:
    if len(data) < 8:
        return None
    kind, code, _sum, ident, seq = struct.unpack("!BBHHH", data[:8])
    return Icmp(kind, code, ident, seq, data[8:])


def parse_ip(data: bytes) -> tuple[str, str, Icmp | None] | None:
    """An IPv4 packet carrying ICMP: (source, destination, its ICMP message), else None."""
    if len(data) < 20 or data[0] >> 4 != 4:
        return None
    header = (data[0] & 0x0F) * 4
    if header < 20 or len(data) < header or data[9] != socket.IPPROTO_ICMP:
        return None
    return socket.inet_ntoa(data[12:16]), socket.inet_ntoa(data[16:20]), parse_icmp(data[header:])


def quoted_udp(quoted: bytes) -> tuple[str, int, int] | None:
    """What an ICMP error quotes of a UDP datagram (its IP header and at least the UDP ports): the
    datagram's destination address, source port and destination port; else None."""
    if len(quoted) < 20 or quoted[0] >> 4 != 4 or quoted[9] != socket.IPPROTO_UDP:
        return None
    header = (quoted[0] & 0x0F) * 4
    if header < 20 or len(quoted) < header + 4:
        return None
    sport, dport = struct.unpack("!HH", quoted[header:header + 4])
    return socket.inet_ntoa(quoted[16:20]), sport, dport
