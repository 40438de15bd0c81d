"""The wire contract: valid messages pass; each kind of malformed message gets its own reason."""

from __future__ import annotations

import json
import zlib

import msgspec
import pytest

import wire
from wire import Reason, Rejected

NOW = 1_795_000_000_000  # a fixed "now" for the receiver, ms
CLINIC = "es-ib-0042"
TOPIC = f"clinicwatch/v1/{CLINIC}/telemetry"


def sample(seq: int = 1, **over: object) -> dict:
    base = {"seq": seq, "t": NOW - 30_000, "mono": 50_000, "sync": "ntp", "m": "icmp",
            "tags": {"target": "gw"}, "f": {"rtt_avg_ms": 31.5, "loss_pct": 0.0, "sent": 10, "up": True}}
    return {**base, **over}


def batch(**over: object) -> dict:
    base = {"v": 1, "clinic": CLINIC, "boot": "9f2c4e1a7b3d5f60", "mono_now": 80_000, "samples": [sample()]}
    return {**base, **over}


def raw(document: object) -> bytes:
    return json.dumps(document).encode()


def test_valid_telemetry_round_trips_through_encode_and_decode() -> None:
    message = wire.build(wire.Telemetry, batch(samples=[sample(i) for i in range(20)]))
    payload = wire.encode(message)
    assert payload[0] == 0x78, "a 20-sample batch compresses"
    decoded = wire.decode(TOPIC, payload, NOW)
    assert decoded == message
    assert [s.seq for s in decoded.samples] == list(range(20))
    assert decoded.samples[0].f == {"rtt_avg_ms": 31.5, "loss_pct": 0.0, "sent": 10, "up": True}
    assert isinstance(decoded.samples[0].f["sent"], int) and isinstance(decoded.samples[0].f["up"], bool)


@pytest.mark.parametrize("kind,document", [
    ("status", {"v": 1, "clinic": CLINIC, "state": "online", "boot": "9f2c4e1a", "agent": "0.1.0", "t": NOW}),
    ("status", {"v": 1, "clinic": CLINIC, "state": "offline", "boot": "9f2c4e1a", "agent": "0.1.0"}),
    ("event", {"v": 1, "clinic": CLINIC, "boot": "9f2c4e1a", "events": [
        {"seq": 7, "t": NOW - 3_600_000, "mono": 1000, "sync": "ntp", "kind": "outage",
         "detail": {"down_mono": 1000, "up_mono": 3_601_000, "cause": "wan"}}]}),
    ("config", {"v": 1, "clinic": CLINIC, "rev": 3, "config": {"probes": {"icmp": {"interval_s": 30}}}}),
])
def test_valid_messages_of_every_kind_pass(kind: str, document: dict) -> None:
    message = wire.decode(f"clinicwatch/v1/{CLINIC}/{kind}", raw(document), NOW)
    assert message.clinic == CLINIC
    assert msgspec.to_builtins(message) == document


def test_unsynchronised_sample_is_placed_by_the_monotonic_clock() -> None:
    # Booted with a 1970 clock; sampled 10 minutes before the batch was sent.
    document = batch(mono_now=700_000, samples=[sample(t=86_400_000, mono=100_000, sync="none")])
    message = wire.decode(TOPIC, raw(document), NOW)
    assert wire.effective_time(message.samples[0], message.mono_now, NOW) == NOW - 600_000


BIG = "x" * 300_000

MALFORMED = {
    # name: (topic, payload bytes, reason, words the detail must contain)
    "bad json": (TOPIC, b'{"v": 1, "clinic": ', Reason.BAD_JSON, "truncated"),
    "not utf-8 json": (TOPIC, b"\xff\xfe{}", Reason.BAD_JSON, ""),
    "nan is not json": (TOPIC, b'{"v": 1, "x": NaN}', Reason.BAD_JSON, ""),
    "json array": (TOPIC, b"[1, 2]", Reason.NOT_AN_OBJECT, "list"),
    "corrupt zlib": (TOPIC, b"\x78\x9c garbage", Reason.BAD_ENCODING, "corrupt"),
    "truncated zlib": (TOPIC, zlib.compress(raw(batch()))[:-6], Reason.BAD_ENCODING, "truncated"),
    "unknown zlib dictionary": (TOPIC, (lambda d: d.compress(raw(batch())) + d.flush())(
        zlib.compressobj(9, zdict=b"some other dictionary")), Reason.BAD_ENCODING, "needs dictionary"),
    "missing version": (TOPIC, raw({k: v for k, v in batch().items() if k != "v"}), Reason.MISSING_FIELD, "v:"),
    "wrong version": (TOPIC, raw(batch(v=2)), Reason.UNSUPPORTED_VERSION, "v=2"),
    "version as string": (TOPIC, raw(batch(v="1")), Reason.UNSUPPORTED_VERSION, "'1'"),
    "topic of another version": ("clinicwatch/v2/es-ib-0042/telemetry", raw(batch()),
                                 Reason.UNSUPPORTED_VERSION, "v2"),
    "topic outside the contract": ("clinics/es-ib-0042/data", raw(batch()), Reason.BAD_TOPIC, "not clinicwatch"),
    "unknown kind in topic": ("clinicwatch/v1/es-ib-0042/metrics", raw(batch()), Reason.BAD_TOPIC, "metrics"),
    "missing boot id": (TOPIC, raw({k: v for k, v in batch().items() if k != "boot"}), Reason.MISSING_FIELD, "boot"),
    "missing sample seq": (TOPIC, raw(batch(samples=[{k: v for k, v in sample().items() if k != "seq"}])),
                           Reason.MISSING_FIELD, "samples[0].seq"),
    "unknown field": (TOPIC, raw(batch(extra=1)), Reason.UNKNOWN_FIELD, "extra"),
    "seq as string": (TOPIC, raw(batch(samples=[sample(seq="1")])), Reason.WRONG_TYPE, "samples[0].seq"),
    "timestamp as float": (TOPIC, raw(batch(samples=[sample(t=1.5e12)])), Reason.WRONG_TYPE, "samples[0].t"),
    "field value a list": (TOPIC, raw(batch(samples=[sample(f={"rtt_avg_ms": [1]})])), Reason.WRONG_TYPE,
                           "samples[0].f.rtt_avg_ms: expected a bool, integer, number or string, got array"),
    "number overflowing a double": (TOPIC, raw(batch(samples=[sample(f={"x": "BIG"})])).replace(b'"BIG"', b"1e400"),
                                    Reason.BAD_VALUE, "samples[0].f.x: number out of range"),
    "samples not a list": (TOPIC, raw(batch(samples={"0": sample()})), Reason.WRONG_TYPE, "samples"),
    "negative seq": (TOPIC, raw(batch(samples=[sample(seq=-1)])), Reason.BAD_VALUE, "samples[0].seq"),
    "bad clinic id": (TOPIC, raw(batch(clinic="ES IB/42")), Reason.BAD_VALUE, "clinic"),
    "unknown sync state": (TOPIC, raw(batch(samples=[sample(sync="gps")])), Reason.BAD_VALUE, "sync"),
    "empty batch": (TOPIC, raw(batch(samples=[])), Reason.BAD_VALUE, "samples"),
    "no fields": (TOPIC, raw(batch(samples=[sample(f={})])), Reason.BAD_VALUE, "samples[0].f"),
    "too many tags": (TOPIC, raw(batch(samples=[sample(tags={f"t{i}": "x" for i in range(9)})])),
                      Reason.BAD_VALUE, "tags"),
    "duplicate seq": (TOPIC, raw(batch(samples=[sample(5), sample(5)])), Reason.DUPLICATE_SEQ, "seq 5"),
    "mono after send": (TOPIC, raw(batch(mono_now=10, samples=[sample(mono=20)])), Reason.BAD_VALUE, "mono_now"),
    "clinic not matching topic": (TOPIC, raw(batch(clinic="es-ib-0043")), Reason.CLINIC_MISMATCH, "es-ib-0043"),
    "oversize on the wire": (TOPIC, raw(batch(pad=BIG)), Reason.OVERSIZE, "262144"),
    "oversize after inflating": (TOPIC, zlib.compress(b" " * 2_000_000 + raw(batch())), Reason.OVERSIZE,
                                 "decompresses"),
    "timestamp far in the future": (TOPIC, raw(batch(samples=[sample(t=NOW + 86_400_000)])),
                                    Reason.TIMESTAMP_IN_FUTURE, "86400 s ahead"),
    "timestamp in 1970 though synced": (TOPIC, raw(batch(samples=[sample(t=1000)])), Reason.TIMESTAMP_TOO_OLD,
                                        "days old"),
    "unsynced and uncorrectable": (TOPIC, raw(batch(mono_now=None, samples=[sample(t=1000, sync="none")])),
                                   Reason.TIMESTAMP_TOO_OLD, "days old"),
}


@pytest.mark.parametrize("name", list(MALFORMED))
def test_malformed_message_is_rejected_with_its_reason(name: str) -> None:
    topic_name, payload, reason, words = MALFORMED[name]
    with pytest.raises(Rejected) as caught:
        wire.decode(topic_name, payload, NOW)
    assert caught.value.reason == reason, caught.value.detail
    assert words in caught.value.detail


def test_every_reason_is_exercised_by_a_malformed_case() -> None:
    assert {case[2] for case in MALFORMED.values()} == set(Reason)


def test_topics_are_built_and_parsed_by_the_same_rules() -> None:
    for kind in wire.KINDS:
        assert wire.parse_topic(wire.topic(CLINIC, kind)) == (CLINIC, kind)
    assert wire.subscription("telemetry") == "clinicwatch/v1/+/telemetry"
    assert wire.subscription(share_group="collectors") == "$share/collectors/clinicwatch/v1/+/+"
    with pytest.raises(ValueError, match="does not match"):
        wire.topic("Clinic/1", "telemetry")


def test_encode_compresses_only_when_that_saves_bytes() -> None:
    status = wire.Status(v=1, clinic=CLINIC, state="online", boot="9f2c4e1a", agent="0.1.0")
    plain = wire.encode(status, compress=False)
    assert json.loads(plain) == {"v": 1, "clinic": CLINIC, "state": "online", "boot": "9f2c4e1a", "agent": "0.1.0"}
    chosen = wire.encode(status)
    assert len(chosen) <= len(plain)
    assert wire.decode(f"clinicwatch/v1/{CLINIC}/status", chosen, NOW) == status
    tiny = wire.Config(v=1, clinic="c", rev=1, config={})
    assert wire.encode(tiny) == wire.encode(tiny, compress=False), "under 64 bytes: never worth it"


def test_small_reports_compress_with_the_frozen_dictionary() -> None:
    from wire.zdict import DICTIONARIES, DICTIONARY_V1, DICTIONARY_V1_ID, DICTIONARY_V2, DICTIONARY_V2_ID

    # Agents in the field depend on these exact bytes: a change must be a new dictionary, not an edit.
    assert zlib.adler32(DICTIONARY_V1) == DICTIONARY_V1_ID == 0xC2899188
    assert zlib.adler32(DICTIONARY_V2) == DICTIONARY_V2_ID == 0x5A76AF7D
    assert DICTIONARIES == {DICTIONARY_V1_ID: DICTIONARY_V1, DICTIONARY_V2_ID: DICTIONARY_V2}
    message = wire.build(wire.Telemetry, batch(samples=[sample(1), sample(2)]))
    plain = msgspec.json.encode(message)
    payload = wire.encode(message)
    assert payload[1] & 0x20, "the stream names its dictionary"
    assert int.from_bytes(payload[2:6], "big") == DICTIONARY_V2_ID, "a sender uses the newest"
    assert len(payload) < len(zlib.compress(plain, 9)) * 0.7
    assert wire.decode(TOPIC, payload, NOW) == message
    assert wire.decode(TOPIC, zlib.compress(plain), NOW) == message, "plain zlib is still read"
    # What agents in the field still send: the first dictionary's streams are read as before.
    deflater = zlib.compressobj(9, zdict=DICTIONARY_V1)
    old = deflater.compress(plain) + deflater.flush()
    assert int.from_bytes(old[2:6], "big") == DICTIONARY_V1_ID
    assert wire.decode(TOPIC, old, NOW) == message


def test_the_second_dictionary_knows_a_device_report() -> None:
    """A poll of a router and a UPS card (docs/snmp.md's measurements; names not in the dictionary's
    templates) costs under four fifths of its bytes with the first dictionary, which had no SNMP keys; an
    ICMP-only report costs no more."""
    from wire.zdict import DICTIONARY_V1

    def snmp(seq: int, m: str, tags: dict, f: dict) -> dict:
        return sample(seq, m=m, tags={"device": "rt-1", **tags}, f=f)

    poll = [snmp(1, "snmp_device", {"profile": "teltonika-rutos"}, {"poll_ms": 61.2, "uptime_s": 86_412.5}),
            snmp(2, "snmp_system", {}, {"host_uptime_s": 86_410.03, "response_ms": 8.41}),
            *(snmp(3 + k, "snmp_if", {"interface": name},
                   {"in_bps": 18_211.5 * k, "in_errors_ps": 0.0, "in_discards_ps": 0.0, "out_bps": 2_031.2 * k,
                    "out_errors_ps": 0.0, "out_discards_ps": 0.0}) for k, name in enumerate(["lan1", "mob1s1a1"])),
            snmp(5, "snmp_host", {}, {"cpu_load_pct": 7.0, "mem_used_bytes": 61_345_792, "mem_used_pct": 48.2}),
            snmp(6, "snmp_storage", {"storage": "/overlay"}, {"used_bytes": 1_204_224, "used_pct": 11.9}),
            snmp(7, "snmp_cellular", {"modem": "2-1"}, {"rssi_dbm": -71, "rsrp_dbm": -101, "rsrq_db": -12,
                                                        "sinr_db": 9, "technology": "LTE"}),
            snmp(8, "snmp_ups", {}, {"seconds_on_battery": 0, "minutes_remaining": 41, "charge_pct": 98,
                                    "input_voltage_v": 228, "output_load_pct": 22})]
    icmp = [sample(k, tags={"target": "records", "method": "raw"},
                   f={"success": True, "reason": "", "duration_ms": 812.4, "sent": 5, "received": 5,
                      "loss_pct": 0.0, "rtt_avg_ms": 41.2 + k, "jitter_ms": 0.4}) for k in range(5)]

    def sizes(samples: list[dict]) -> tuple[int, int]:
        plain = msgspec.json.encode(wire.build(wire.Telemetry, batch(samples=samples)))
        deflater = zlib.compressobj(9, zdict=DICTIONARY_V1)
        return len(wire.encode(wire.build(wire.Telemetry, batch(samples=samples)), compress=True)), \
            len(deflater.compress(plain) + deflater.flush())

    newest, first = sizes(poll)
    assert newest < 0.8 * first, (newest, first)
    newest, first = sizes(icmp)
    assert newest <= first, (newest, first)


def test_peek_reads_a_compressed_payload_without_validating_it() -> None:
    config = wire.Config(v=1, clinic=CLINIC, rev=7, config={"probes": [{"kind": "tcp", "port": 70000}]})
    assert wire.codec.peek(wire.encode(config, compress=True))["rev"] == 7
    assert wire.codec.peek(b"\x78\x9c not zlib") is None and wire.codec.peek(b"[1]") is None
