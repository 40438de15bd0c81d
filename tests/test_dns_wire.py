"""The DNS probe's own message code (agent/probes/dnswire.py) against dnspython, the reference it
replaced: the same query bytes, the same reading of any reply (rcode, the asked type's answers as
text, whether it answers the query), and anything else refused with DnsWireError; then the probe
against a real dnsmasq for each kind of record."""

from __future__ import annotations

import asyncio
import struct
import subprocess
import sys
from pathlib import Path

import dns.exception
import dns.flags
import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.probes import ProbeContext, Traffic, run_one, spec_of
from agent.probes.dnswire import TYPES, DnsWireError, encode_name, query, read_reply
from lab.servers import Dnsmasq

REPO = Path(__file__).resolve().parent.parent


def reference(data: bytes, qtype: str) -> tuple[str, list[str]]:
    """dnspython's reading: the rcode, and the answer section's records of the asked type in class IN (the
    class the probe asks; a resolver sends no other, and the probe does not read others)."""
    message = dns.message.from_wire(data)
    return (dns.rcode.to_text(message.rcode()),
            [rr.to_text() for rrset in message.answer for rr in rrset
             if rrset.rdtype == dns.rdatatype.from_text(qtype) and rrset.rdclass == dns.rdataclass.IN])


def ours(data: bytes, qtype: str) -> tuple[str, list[str]]:
    reply = read_reply(data)
    return reply.rcode_text(), reply.answers(qtype)


@pytest.mark.parametrize("name", ["records.salud.test", "Records.Salud.TEST.", "münchen.example", ".",
                                  "xn--mnchen-3ya.example", "a" * 63 + ".test"])
@pytest.mark.parametrize("qtype", sorted(TYPES))
def test_the_query_is_what_dnspython_sends(name: str, qtype: str) -> None:
    assert query(name, qtype, 0x1234) == dns.message.make_query(name, qtype, id=0x1234).to_wire()


def test_a_name_that_cannot_be_asked_is_refused_saying_why() -> None:
    cases = {"records..salud.test": "'records..salud.test': empty label (two dots in a row, or a leading dot)",
             ".test": "'.test': empty label (two dots in a row, or a leading dot)",
             "a" * 64 + ".test": f"'{'a' * 64}.test': label '{'a' * 64}' is 64 bytes long (at most 63)",
             ".".join(["a" * 60] * 5): f"'{'.'.join(['a' * 60] * 5)}': 306 bytes on the wire (at most 255)",
             "records\\.salud.test": "'records\\\\.salud.test': escapes (\\) are not supported in a query name"}
    for name, message in cases.items():
        with pytest.raises(ValueError) as refused:
            encode_name(name)
        assert str(refused.value) == message


def _reply_with(rrsets: list[tuple[str, str, list[str]]], rcode: int = 0, qtype: str = "A") -> bytes:
    """A reply to records.salud.test built and compressed by dnspython: (owner, type, texts) each."""
    asked = dns.message.make_query("records.salud.test", qtype, id=7)
    reply = dns.message.make_response(asked)
    reply.set_rcode(rcode)
    for owner, rdtype, texts in rrsets:
        reply.answer.append(dns.rrset.from_text_list(owner + ".", 300, "IN", rdtype, texts))
    return reply.to_wire()


RECORDS = {
    "A": ["198.18.200.7", "198.18.200.8"],
    "AAAA": ["2001:db8::7", "::ffff:198.18.0.1", "2001:db8:0:1:0:0:0:1", "::", "fe80::1:0:0:1"],
    "CNAME": ["records-2.Salud.test."],
    "NS": ["ns1.salud.test.", r"odd\.name\@here.test.", r"sp\032ace\000.test.", "."],
    "MX": ["10 mail.salud.test.", "20 ."],
    "TXT": ['"v=spf1 -all"', r'"quote \" and back\\slash" "\007bell\255"', '""'],
    "SOA": ["ns1.salud.test. hostmaster.salud.test. 2026120201 3600 600 86400 300"],
}


@pytest.mark.parametrize("qtype", sorted(RECORDS))
def test_each_kind_of_answer_reads_as_dnspython_reads_it(qtype: str) -> None:
    data = _reply_with([("records.salud.test", "CNAME", ["alias.salud.test."]),
                        ("records.salud.test", qtype, RECORDS[qtype]),
                        ("other.salud.test", "A", ["198.18.9.9"])], qtype=qtype)
    assert ours(data, qtype) == reference(data, qtype)
    # other.salud.test's address is an answer too; a name has one CNAME: the second replaces the first.
    # (dnspython writes a record set in an order of its own: the order is checked against its reading.)
    expected = {"A": [*RECORDS["A"], "198.18.9.9"],
                "AAAA": ["2001:db8::7", "::ffff:198.18.0.1", "2001:db8:0:1::1", "::", "fe80::1:0:0:1"]}
    assert sorted(text.lower() for text in ours(data, qtype)[1]) == sorted(
        text.lower() for text in expected.get(qtype, RECORDS[qtype]))


def _name(text: str) -> bytes:
    return b"".join(bytes((len(label),)) + label.encode() for label in text.split(".") if label) + b"\0"


def _rr(owner: str, rdtype: int, rdata: bytes) -> bytes:
    return _name(owner) + struct.pack("!HHIH", rdtype, 1, 60, len(rdata)) + rdata


def _message(records: list[bytes], flags: int = 0x8180, question: bytes | None = None, ident: int = 7) -> bytes:
    question = _name("records.salud.test") + b"\0\1\0\1" if question is None else question
    return struct.pack("!HHHHHH", ident, flags, 1 if question else 0, len(records), 0, 0) + question + b"".join(records)


def test_answers_are_grouped_by_owner_in_first_seen_order_each_once() -> None:
    data = _message([_rr("x.test", 1, bytes([1, 1, 1, 1])), _rr("y.test", 1, bytes([2, 2, 2, 2])),
                     _rr("X.TEST", 1, bytes([3, 3, 3, 3])), _rr("x.test", 1, bytes([1, 1, 1, 1]))])
    assert ours(data, "A") == reference(data, "A") == ("NOERROR", ["1.1.1.1", "3.3.3.3", "2.2.2.2"])


@pytest.mark.parametrize("rcode", range(16))
def test_every_rcode_reads_as_dnspython_reads_it(rcode: int) -> None:
    data = _reply_with([], rcode=rcode)
    assert ours(data, "A") == reference(data, "A")


labels = st.lists(st.binary(min_size=1, max_size=12), min_size=0, max_size=4)


def _wire_name(parts: list[bytes]) -> bytes:
    return b"".join(bytes((len(p),)) + p for p in parts) + b"\0"


rdata_of = {
    1: st.binary(min_size=4, max_size=4),
    28: st.binary(min_size=16, max_size=16),
    2: labels.map(_wire_name),
    5: labels.map(_wire_name),
    15: st.tuples(st.integers(0, 65535), labels).map(lambda t: struct.pack("!H", t[0]) + _wire_name(t[1])),
    16: st.lists(st.binary(max_size=20), min_size=1, max_size=3).map(
        lambda strings: b"".join(bytes((len(s),)) + s for s in strings)),
    6: st.tuples(labels, labels, st.lists(st.integers(0, 2**32 - 1), min_size=5, max_size=5)).map(
        lambda t: _wire_name(t[0]) + _wire_name(t[1]) + struct.pack("!IIIII", *t[2])),
}
records = st.sampled_from(sorted(rdata_of)).flatmap(
    lambda rdtype: st.tuples(st.just(rdtype), labels, rdata_of[rdtype]))


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(records, max_size=6), st.integers(0, 15), st.sampled_from(sorted(TYPES)))
def test_any_well_formed_reply_reads_as_dnspython_reads_it(answer: list, rcode: int, qtype: str) -> None:
    data = _message([_wire_name(owner) + struct.pack("!HHIH", rdtype, 1, 60, len(rdata)) + rdata
                     for rdtype, owner, rdata in answer], flags=0x8180 | rcode)
    assert ours(data, qtype) == reference(data, qtype)


@settings(max_examples=300)
@given(st.binary(max_size=200))
def test_any_datagram_is_read_or_refused_with_dnswireerror(data: bytes) -> None:
    try:
        read_reply(data)
    except DnsWireError:
        pass


@settings(max_examples=300)
@given(st.sampled_from(sorted(RECORDS)), st.data())
def test_a_reply_with_a_byte_changed_or_cut_is_read_or_refused_like_dnspython(qtype: str, data: st.DataObject) -> None:
    whole = _reply_with([("records.salud.test", qtype, RECORDS[qtype])], qtype=qtype)
    at = data.draw(st.integers(0, len(whole) - 1))
    changed = whole[:at] + bytes((data.draw(st.integers(0, 255)),)) + whole[at + 1:]
    damaged = data.draw(st.sampled_from([whole[:at], changed]))
    try:
        read = ours(damaged, qtype)
    except DnsWireError:
        read = None
    try:
        expected = reference(damaged, qtype)
    except (dns.exception.DNSException, ValueError, UnicodeError):
        expected = None
    if read is not None and expected is not None:
        assert read == expected
    # What the probe refuses, dnspython refuses too. (Not the converse: dnspython also refuses records the
    # probe only frames and skips, of other types or in other sections.)
    assert read is not None or expected is None, (damaged, expected)


def _reply_to(asked: bytes, *, flags: int = 0x8180, ident: int | None = None, question: bytes | None = None) -> bytes:
    head = struct.unpack_from("!H", asked)[0] if ident is None else ident
    question = asked[12:] if question is None else question
    return struct.pack("!HHHHHH", head, flags, 1 if question else 0, 0, 0, 0) + question


@pytest.mark.parametrize("case", ["same", "no QR", "other id", "other opcode", "name in other case", "other name",
                                  "other type", "no question, refused", "no question, servfail",
                                  "no question, nxdomain", "no question, noerror"])
def test_whether_a_reply_answers_the_query_as_dnspython_says(case: str) -> None:
    asked = query("Records.salud.test", "MX", 0x4242)
    question = asked[12:]
    reply = {
        "same": _reply_to(asked),
        "no QR": _reply_to(asked, flags=0x0180),
        "other id": _reply_to(asked, ident=0x4243),
        "other opcode": _reply_to(asked, flags=0x8980),
        "name in other case": _reply_to(asked, question=question.lower()),
        "other name": _reply_to(asked, question=_name("other.salud.test") + b"\0\x0f\0\1"),
        "other type": _reply_to(asked, question=question[:-4] + b"\0\1\0\1"),
        "no question, refused": _reply_to(asked, flags=0x8185, question=b""),
        "no question, servfail": _reply_to(asked, flags=0x8182, question=b""),
        "no question, nxdomain": _reply_to(asked, flags=0x8183, question=b""),
        "no question, noerror": _reply_to(asked, question=b""),
    }[case]
    expected = dns.message.from_wire(asked).is_response(dns.message.from_wire(reply))
    assert read_reply(reply).answers_query(asked) is expected
    assert expected is (case in ("same", "name in other case", "no question, refused", "no question, servfail"))


def test_malformed_replies_say_what_is_wrong() -> None:
    pointer_forward = _message([], question=b"\xc0\x20\0\1\0\1")
    cases = {
        b"\0\7\x81\x80": "4 bytes, shorter than a DNS header (12)",
        _message([_rr("x.test", 1, b"\1\2\3")]): "an address record of 3 bytes (expected 4)",
        _message([_rr("x.test", 1, b"\1\2\3\4")])[:-2]: "a record's data runs 2 bytes past the message's end",
        _message([_rr("x.test", 1, b"\1\2\3\4")]) + b"\0": "1 bytes after the last record",
        pointer_forward: "a compression pointer at byte 12 does not point back (to 32)",
        _message([_rr("x.test", 16, b"\5abc")]): "a TXT record's string runs past its data",
        _message([_rr("x.test", 5, _name("a.test") + b"\0")]): "a record's data is 1 bytes longer than what it holds",
    }
    for data, message in cases.items():
        with pytest.raises(DnsWireError) as refused:
            read_reply(data)
        assert str(refused.value) == message


def test_the_probe_reads_each_kind_of_record_from_a_real_dnsmasq(tmp_path, start_server) -> None:
    resolver = start_server(Dnsmasq({"records.salud.test": "198.18.200.7", "v6.salud.test": "2001:db8::7"}, options=(
        "--mx-host=salud.test,mail.salud.test,10", "--txt-record=salud.test,v=spf1 -all,second",
        "--host-record=target.salud.test,198.18.200.9", "--cname=alias.salud.test,target.salud.test",
        "--local=/salud.test/")))

    def probe(name: str, qtype: str, **more: object):
        spec = spec_of({"kind": "dns", "name": "resolver", "server": "127.0.0.1", "port": resolver.port,
                        "query": name, "qtype": qtype, "timeout_s": 3, **more})
        return asyncio.run(run_one(spec, ProbeContext(state_dir=tmp_path), Traffic()))

    answered = {(name, qtype): probe(name, qtype) for name, qtype in [
        ("records.salud.test", "A"), ("v6.salud.test", "AAAA"), ("salud.test", "MX"), ("salud.test", "TXT"),
        ("alias.salud.test", "CNAME"), ("alias.salud.test", "A")]}
    assert {key: (result.success, result.fields["answers"], result.fields.get("answer", result.detail))
            for key, result in answered.items()} == {
        ("records.salud.test", "A"): (True, 1, "198.18.200.7"),
        ("v6.salud.test", "AAAA"): (True, 1, "2001:db8::7"),
        ("salud.test", "MX"): (True, 1, "10 mail.salud.test."),
        ("salud.test", "TXT"): (True, 1, '"v=spf1 -all" "second"'),
        ("alias.salud.test", "CNAME"): (True, 1, "target.salud.test."),
        ("alias.salud.test", "A"): (True, 1, "198.18.200.9"),  # the CNAME's target's address, not the CNAME
    }
    assert probe("salud.test", "MX", expect=["10 mail.salud.test."]).success
    wrong = probe("salud.test", "MX", expect=["20 mail.salud.test."])
    assert (wrong.success, wrong.reason) == (False, "unexpected_answer")
    missing = probe("nowhere.salud.test", "A")
    assert (missing.success, missing.reason, missing.fields["rcode"], missing.fields["answers"]) == (
        False, "nxdomain", "NXDOMAIN", 0)

    # The agent's DNS check loads no DNS library (dnspython is installed here, as the tests' reference).
    code = ("import asyncio, sys; from agent.probes import ProbeContext, Traffic, run_one, spec_of; "
            f"spec = spec_of({{'kind': 'dns', 'name': 'resolver', 'server': '127.0.0.1', 'port': {resolver.port}, "
            "'query': 'records.salud.test'}); "
            "result = asyncio.run(run_one(spec, ProbeContext(), Traffic())); "
            "print(result.fields['answer'], sorted(m for m in sys.modules if m == 'dns' or m.startswith('dns.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "198.18.200.7 []"
