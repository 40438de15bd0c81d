"""The SNMP client's own BER and USM (agent/snmp/ber.py, agent/snmp/usm.py), apart from any device.

What they do with a real device (every version, level and protocol against net-snmp's snmpd) is in
tests/test_snmp.py; here: known encodings, the RFC's own key vectors, and that no datagram, however
broken, makes the parsers fail in any other way than `BerError`.
"""

from __future__ import annotations

import pytest
from agent.snmp import ber, usm
from hypothesis import given, settings
from hypothesis import strategies as st

SYS_UPTIME = (1, 3, 6, 1, 2, 1, 1, 3, 0)


def test_known_encodings() -> None:
    assert ber.integer(0) == bytes.fromhex("020100")
    assert ber.integer(127) == bytes.fromhex("02017f")
    assert ber.integer(128) == bytes.fromhex("02020080")  # a leading zero octet keeps it positive
    assert ber.integer(-1) == bytes.fromhex("0201ff")
    assert ber.integer(-129) == bytes.fromhex("0202ff7f")
    assert ber.oid(SYS_UPTIME) == bytes.fromhex("06082b06010201010300")
    assert ber.oid((1, 3, 6, 1, 4, 1, 2021, 4294967295)) == bytes.fromhex("060c2b060104018f658fffffff7f")
    assert ber.octets(b"x" * 127)[:2] == bytes.fromhex("047f")
    assert ber.octets(b"x" * 128)[:3] == bytes.fromhex("048180")  # long form from 128 on
    assert ber.octets(b"x" * 256)[:4] == bytes.fromhex("04820100")
    assert ber.request_pdu(ber.GET, 7, [SYS_UPTIME]) == bytes.fromhex(
        "a019" "020107" "020100" "020100" "300e" "300c" "06082b06010201010300" "0500")


@pytest.mark.parametrize("tool,version,tag,extra", [
    ("snmpget", "2c", ber.GET, []), ("snmpgetnext", "1", ber.GETNEXT, []),
    ("snmpbulkget", "2c", ber.GETBULK, ["-Cn0", "-Cr25"])])
def test_a_request_is_byte_for_byte_what_net_snmp_sends(tool: str, version: str, tag: int, extra: list[str]) -> None:
    """net-snmp's tool sends its request to a UDP socket of the test's; ours, with its request-id, must be the same."""
    import socket
    import subprocess

    from tests.conftest import need_binaries

    need_binaries(tool)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(10)
        tool_run = subprocess.Popen([tool, f"-v{version}", "-c", "public", "-r0", "-t1", *extra,
                                     f"127.0.0.1:{sock.getsockname()[1]}", "1.3.6.1.2.1.1.3.0", "1.3.6.1.2.1.2.2.1.10"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        theirs = sock.recvfrom(2048)[0]
        tool_run.wait(10)
    request_id = ber.read_pdu(theirs, ber.children(theirs, *ber.header(theirs, 0)[1:])[2])[1]
    counts = (0, 25) if tag == ber.GETBULK else (0, 0)
    ours = ber.sequence(ber.integer(0 if version == "1" else 1), ber.octets(b"public"),
                        ber.request_pdu(tag, request_id, [SYS_UPTIME, (1, 3, 6, 1, 2, 1, 2, 2, 1, 10)], *counts))
    assert ours.hex() == theirs.hex()


@given(st.integers(min_value=0, max_value=2).flatmap(
    lambda first: st.tuples(st.just(first), st.integers(0, 39 if first < 2 else 2**40),
                            st.lists(st.integers(0, 2**64), max_size=20))))
def test_oids_come_back_as_they_went(parts: tuple[int, int, list[int]]) -> None:
    value = (parts[0], parts[1], *parts[2])
    encoded = ber.oid(value)
    tag, start, end = ber.header(encoded, 0)
    assert (tag, end) == (ber.OID, len(encoded))
    assert ber.read_oid(encoded[start:end]) == value


@given(st.integers(min_value=-(2**80), max_value=2**80))
def test_integers_come_back_as_they_went(value: int) -> None:
    encoded = ber.integer(value)
    assert ber.read_int(encoded, ber.header(encoded, 0), "x") == value


def test_rfc_3414_key_vectors() -> None:
    """RFC 3414 A.3.1 and A.3.2: passphrase "maplesyrup", engine id 00..02."""
    engine = bytes(11) + b"\x02"
    assert usm.passphrase_key(b"maplesyrup", "md5").hex() == "9faf3283884e92834ebc9847d8edd963"
    assert usm.auth_key(b"maplesyrup", engine, "md5").hex() == "526f5eed9fcce26f8964c2930787d82b"
    assert usm.passphrase_key(b"maplesyrup", "sha").hex() == "9fb5cc0381497b3793528939ff788d5d79145211"
    assert usm.auth_key(b"maplesyrup", engine, "sha").hex() == "6695febc9288e36282235fc7151f128497b38f3f"


def test_privacy_keys_are_extended_each_vendor_way() -> None:
    """Blumenthal (net-snmp's AES-192/256): the key so far, then its hash; Reeder (Cisco's, AES-192C/256C):
    the key so far, then that key taken as a passphrase and localized again."""
    engine = bytes(11) + b"\x02"
    kul = usm.auth_key(b"maplesyrup", engine, "md5")
    assert usm.priv_key(b"maplesyrup", engine, "md5", "aes") == kul
    blumenthal = usm.priv_key(b"maplesyrup", engine, "md5", "aes256")
    reeder = usm.priv_key(b"maplesyrup", engine, "md5", "aes256c")
    assert blumenthal == kul + usm.HASHES["md5"][0](kul).digest()
    assert reeder == kul + usm.auth_key(kul, engine, "md5")
    assert usm.priv_key(b"maplesyrup", engine, "sha", "aes192") == usm.priv_key(b"maplesyrup", engine, "sha", "aes256")[:24]
    assert len(usm.priv_key(b"maplesyrup", engine, "sha512", "aes256c")) == 32  # one hash is long enough


def _valid_v3(flags: int) -> bytes:
    user = usm.User(b"clinicwatch", "sha", b"clinic-auth-2026", "aes", b"clinic-priv-2026")
    security = usm.Security(user, bytes.fromhex("80001f8880aabbccdd"))
    pdu = ber.tlv(ber.RESPONSE, ber.integer(5) + ber.integer(0) + ber.integer(0)
                  + ber.sequence(ber.sequence(ber.oid(SYS_UPTIME), ber.tlv(ber.TIMETICKS, b"\x01\x00"))))
    return usm.message(9, flags, security.engine_id, 3, 1000, user.name,
                       usm.scoped_pdu(security.engine_id, b"", pdu), security)


def test_a_signed_and_encrypted_message_reads_back_and_a_changed_byte_fails_its_digest() -> None:
    user = usm.User(b"clinicwatch", "sha", b"clinic-auth-2026", "aes", b"clinic-priv-2026")
    security = usm.Security(user, bytes.fromhex("80001f8880aabbccdd"))
    data = _valid_v3(usm.FLAG_AUTH | usm.FLAG_PRIV)
    got = usm.parse(data)
    assert (got.msg_id, got.engine_id, got.boots, got.time, got.user) == (9, security.engine_id, 3, 1000, b"clinicwatch")
    assert got.authentic(security)
    plain, element = got.scoped(security)
    assert ber.read_pdu(plain, element) == (ber.RESPONSE, 5, 0, 0, [(SYS_UPTIME, ber.TIMETICKS, b"\x01\x00")])
    tampered = bytearray(data)
    tampered[-1] ^= 1
    assert not usm.parse(bytes(tampered)).authentic(security)


@settings(max_examples=300)
@given(st.binary(max_size=200))
def test_any_datagram_is_read_or_refused_with_a_ber_error(data: bytes) -> None:
    for read in (usm.parse, usm.msg_id, lambda d: ber.read_pdu(d, ber.header(d, 0))):
        try:
            read(data)
        except ber.BerError:
            pass


@settings(max_examples=300)
@given(st.data())
def test_a_valid_message_with_bytes_changed_is_read_or_refused_with_a_ber_error(data: st.DataObject) -> None:
    message = bytearray(_valid_v3(usm.FLAG_AUTH))
    for _ in range(data.draw(st.integers(1, 4))):
        message[data.draw(st.integers(0, len(message) - 1))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(message)))
    for candidate in (bytes(message), bytes(message[:cut])):
        try:
            got = usm.parse(candidate)
            plain, element = got.scoped(None)
            ber.read_pdu(plain, element)
        except ber.BerError:
            pass


def test_bad_oids_are_refused_when_encoding() -> None:
    for bad in ((1,), (3, 1), (1, 40), (1, 3, -1)):
        with pytest.raises(ber.BerError):
            ber.oid(bad)
