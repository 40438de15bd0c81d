"""Topics, encoding and validation of wire messages, with a precise reason per rejection.

`decode(topic, payload, now_ms)` is what the collector (and the agent, for its
config topic) runs on every message; it returns a typed message or raises
`Rejected(reason, detail)`. `encode(message)` is what the agent publishes, `build(model, document)` how
it makes a message from plain values with every constraint checked.
"""

from __future__ import annotations

import json
import re
import zlib
from enum import StrEnum

import msgspec

from wire.zdict import DICTIONARIES, DICTIONARY
from wire.schema import (
    CLINIC_ID_PATTERN,
    MAX_DECODED_BYTES,
    MAX_PAYLOAD_BYTES,
    MODELS,
    TRUSTED_SYNC,
    VERSION,
    Events,
    Message,
    Recorded,
    Telemetry,
    Value,
)

TOPIC_ROOT = f"clinicwatch/v{VERSION}"
KINDS = tuple(MODELS)
_TOPIC = re.compile(r"^clinicwatch/v(\d+)/([^/]+)/([^/]+)$")
_CLINIC = re.compile(CLINIC_ID_PATTERN)
ZLIB_MAGIC = 0x78  # first byte of an RFC 1950 stream; JSON starts with "{"

# Telemetry and events are published with this MQTT v5 Message Expiry Interval (s, about 10 years:
# never reached). A broker forwards a message with the interval less the whole seconds it held it,
# which is how the collector knows when an unsynchronised agent sent it (collector/ingest/agentclock.py).
HOLD_CLOCK_S = 315_360_000


def held_seconds(remaining_s: int | None) -> int | None:
    """How long the broker held a message, from the expiry interval it was delivered with."""
    if remaining_s is None or not 0 <= remaining_s <= HOLD_CLOCK_S:
        return None
    return HOLD_CLOCK_S - remaining_s


# Time sanity: trusted timestamps outside [now - MAX_AGE, now + MAX_FUTURE] are rejected.
MAX_FUTURE_MS = 5 * 60 * 1000
MAX_AGE_MS = 90 * 24 * 3600 * 1000


class Reason(StrEnum):
    OVERSIZE = "oversize"
    BAD_ENCODING = "bad_encoding"
    BAD_JSON = "bad_json"
    NOT_AN_OBJECT = "not_an_object"
    UNSUPPORTED_VERSION = "unsupported_version"
    BAD_TOPIC = "bad_topic"
    MISSING_FIELD = "missing_field"
    UNKNOWN_FIELD = "unknown_field"
    WRONG_TYPE = "wrong_type"
    BAD_VALUE = "bad_value"
    DUPLICATE_SEQ = "duplicate_seq"
    CLINIC_MISMATCH = "clinic_mismatch"
    TIMESTAMP_IN_FUTURE = "timestamp_in_future"
    TIMESTAMP_TOO_OLD = "timestamp_too_old"


class Rejected(ValueError):
    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def topic(clinic_id: str, kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"unknown message kind {kind!r}; one of {KINDS}")
    if not _CLINIC.match(clinic_id):
        raise ValueError(f"clinic id {clinic_id!r} does not match {CLINIC_ID_PATTERN}")
    return f"{TOPIC_ROOT}/{clinic_id}/{kind}"


def subscription(kind: str = "+", share_group: str | None = None) -> str:
    """Topic filter for every clinic's `kind` messages, optionally as a shared subscription."""
    pattern = f"{TOPIC_ROOT}/+/{kind}"
    return f"$share/{share_group}/{pattern}" if share_group else pattern


def parse_topic(name: str) -> tuple[str, str]:
    """Return (clinic_id, kind) of a contract topic."""
    match = _TOPIC.match(name)
    if not match:
        raise Rejected(Reason.BAD_TOPIC, f"topic {name!r} is not clinicwatch/v1/<clinic>/<kind>")
    version, clinic_id, kind = match.groups()
    if int(version) != VERSION:
        raise Rejected(Reason.UNSUPPORTED_VERSION, f"topic version v{version}; this side speaks v{VERSION}")
    if not _CLINIC.match(clinic_id):
        raise Rejected(Reason.BAD_TOPIC, f"clinic id {clinic_id!r} in topic does not match {CLINIC_ID_PATTERN}")
    if kind not in KINDS:
        raise Rejected(Reason.BAD_TOPIC, f"unknown message kind {kind!r} in topic; one of {KINDS}")
    return clinic_id, kind


def encode(message: Message, compress: bool | None = None) -> bytes:
    """Serialise compactly; compress (zlib with the contract's newest preset dictionary) when asked,
    or (None) when that saves bytes."""
    raw = msgspec.json.encode(message)
    if compress is False or (compress is None and len(raw) < 64):
        return raw
    deflater = zlib.compressobj(9, zdict=DICTIONARY)
    packed = deflater.compress(raw) + deflater.flush()
    return packed if compress or len(packed) < len(raw) else raw


def _unpack(payload: bytes) -> bytes:
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise Rejected(Reason.OVERSIZE, f"{len(payload)} bytes on the wire, limit {MAX_PAYLOAD_BYTES}")
    if not payload or payload[0] != ZLIB_MAGIC:
        return payload
    dictionary = b""
    if len(payload) >= 6 and payload[1] & 0x20:  # FDICT: the stream names its preset dictionary
        dict_id = int.from_bytes(payload[2:6], "big")
        if dict_id not in DICTIONARIES:
            raise Rejected(Reason.BAD_ENCODING, f"zlib stream needs dictionary {dict_id:#010x}, not one of this "
                                                f"contract's ({', '.join(f'{d:#010x}' for d in DICTIONARIES)})")
        dictionary = DICTIONARIES[dict_id]
    inflater = zlib.decompressobj(zdict=dictionary) if dictionary else zlib.decompressobj()
    try:
        raw = inflater.decompress(payload, MAX_DECODED_BYTES + 1)
    except zlib.error as exc:
        raise Rejected(Reason.BAD_ENCODING, f"zlib stream is corrupt: {exc}") from None
    if len(raw) > MAX_DECODED_BYTES or inflater.unconsumed_tail:
        raise Rejected(Reason.OVERSIZE, f"decompresses past the limit of {MAX_DECODED_BYTES} bytes")
    if not inflater.eof:
        raise Rejected(Reason.BAD_ENCODING, "zlib stream is truncated")
    return raw


def peek(payload: bytes) -> dict | None:
    """The payload's JSON object, unvalidated (to name a rejected message's rev or seq), or None."""
    try:
        document = msgspec.json.decode(_unpack(payload))
    except (Rejected, msgspec.DecodeError):
        return None
    return document if isinstance(document, dict) else None


_DECODERS = {kind: msgspec.json.Decoder(model) for kind, model in MODELS.items()}
# msgspec's messages: "<what> - at `$.samples[0].seq`" (or "- at `key` in `$.samples[0].f`").
_AT = re.compile(r"^(?P<what>.*?)(?: - at (?P<key>`key` in )?`\$(?P<path>[^`]*)`)?$", re.S)
MISSING_FIELD_RE = re.compile(r"^Object missing required field `(?P<name>[^`]+)`")
UNKNOWN_FIELD_RE = re.compile(r"^Object contains unknown field `(?P<name>[^`]+)`")


def split_error(exc: msgspec.ValidationError) -> tuple[str, str]:
    """msgspec's error as (what, where): ("Expected `int` >= 0", "samples[0].seq"); where is "" at the top."""
    match = _AT.match(str(exc))
    assert match is not None  # the pattern matches any text
    what, path = match["what"], (match["path"] or "").lstrip(".")
    if match["key"]:
        what = f"key {what[0].lower()}{what[1:]}"
    return what, path


_PART = re.compile(r"\.?([^.\[\]]+)|\[(\d+)\]|(\[\.\.\.\])")


def path_parts(path: str) -> list[str | int | None]:
    """msgspec's error path as keys and indexes: `samples[0].f[...]` is ["samples", 0, "f", None], None
    standing for a dict's value, whose key msgspec does not name."""
    return [None if unnamed else int(index) if index else key for key, index, unnamed in _PART.findall(path)]


def _explain(exc: msgspec.ValidationError, document: object) -> tuple[Reason, str]:
    """A reason and a reader's detail (`samples[3].f.rtt_ms: ...`) from msgspec's message about `document`."""
    what, path = split_error(exc)
    if "[...]" in path:  # a dict's value: msgspec does not say which key; find it
        path = _name_keys(path, document)
    if found := MISSING_FIELD_RE.match(what):
        return Reason.MISSING_FIELD, f"{_join(path, found['name'])}: missing"
    if found := UNKNOWN_FIELD_RE.match(what):
        return Reason.UNKNOWN_FIELD, f"{_join(path, found['name'])}: not a field of this message"
    if what.startswith("Expected `") and ", got `" in what:
        got = what.rsplit("`", 2)[-2]
        expected = what[len("Expected `"):what.index("`", len("Expected `"))]
        if expected == "bool | int | float | str":
            expected = "a bool, integer, number or string"
        return Reason.WRONG_TYPE, f"{path or 'message'}: expected {expected}, got {got}"
    return Reason.BAD_VALUE, f"{path or 'message'}: {what[0].lower()}{what[1:]}"


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _name_keys(path: str, document: object) -> str:
    """Replace each `[...]` (a dict's value, unnamed by msgspec) with the key whose value breaks the
    contract: the first whose value is not a bool, an integer, a finite number or a short string."""
    out, node = "", document
    for part in path_parts(path):
        if part is None:
            key = next((k for k, v in node.items() if not _is_value(v)), None) if isinstance(node, dict) else None
            out, node = (out + "[...]", None) if key is None else (_join(out, str(key)), node[key])  # type: ignore[index]
        elif isinstance(part, int):
            out, node = f"{out}[{part}]", node[part] if isinstance(node, list) and part < len(node) else None
        else:
            out, node = _join(out, part), node.get(part) if isinstance(node, dict) else None
    return out


def _is_value(value: object) -> bool:
    try:
        msgspec.convert(value, Value)
    except msgspec.ValidationError:
        return False
    return True


def build(model: type[Message], document: dict) -> Message:
    """A message from plain values (as the agent builds one), every constraint of the contract checked;
    raises Rejected, as a receiver would, if it breaks one."""
    try:
        return msgspec.convert(document, model)
    except msgspec.ValidationError as exc:
        raise Rejected(*_explain(exc, document)) from None


def decode(topic_name: str, payload: bytes, now_ms: int) -> Message:
    """Validate one MQTT message against the contract; raise Rejected with the first reason."""
    clinic_id, kind = parse_topic(topic_name)
    raw = _unpack(payload)
    try:
        # Fast path, one pass in msgspec's C decoder: a well-formed message. Anything it
        # refuses is examined below, step by step, for the precise reason.
        message = _DECODERS[kind].decode(raw)
    except msgspec.DecodeError:
        message = None
    if message is None:
        try:
            document = msgspec.json.decode(raw)
        except msgspec.ValidationError:  # valid JSON, a number past a double's range (1e400): refused below
            document = json.loads(raw)
        except msgspec.DecodeError as exc:
            raise Rejected(Reason.BAD_JSON, str(exc)) from None
        if not isinstance(document, dict):
            raise Rejected(Reason.NOT_AN_OBJECT, f"payload is a JSON {type(document).__name__}, not an object")
        version = document.get("v")
        if version is None:
            raise Rejected(Reason.MISSING_FIELD, "v: every message carries the contract version")
        if version != VERSION or isinstance(version, bool):
            raise Rejected(Reason.UNSUPPORTED_VERSION, f"v={version!r}; this side speaks v{VERSION}")
        try:
            _DECODERS[kind].decode(raw)
        except msgspec.ValidationError as exc:
            raise Rejected(*_explain(exc, document)) from None
        raise AssertionError("a message the typed decoder refused once and accepted the second time")
    if message.clinic != clinic_id:
        raise Rejected(Reason.CLINIC_MISMATCH, f"payload clinic {message.clinic!r} published on {clinic_id!r}'s topic")
    if isinstance(message, (Telemetry, Events)):
        _check_records(message, now_ms)
    return message


def records(message: Telemetry | Events) -> list[Recorded]:
    return list(message.samples if isinstance(message, Telemetry) else message.events)


def _check_records(message: Telemetry | Events, now_ms: int) -> None:
    seen: set[int] = set()
    for index, record in enumerate(records(message)):
        if record.seq in seen:
            raise Rejected(Reason.DUPLICATE_SEQ, f"seq {record.seq} appears twice in one batch")
        seen.add(record.seq)
        if message.mono_now is not None and record.mono > message.mono_now:
            raise Rejected(Reason.BAD_VALUE, f"[{index}].mono {record.mono} is after the batch's mono_now")
        when = effective_time(record, message.mono_now, now_ms)
        if when > now_ms + MAX_FUTURE_MS:
            raise Rejected(Reason.TIMESTAMP_IN_FUTURE, f"[{index}] seq {record.seq}: t={when} is "
                           f"{(when - now_ms) / 1000:.0f} s ahead of the receiver's clock")
        if when < now_ms - MAX_AGE_MS:
            raise Rejected(Reason.TIMESTAMP_TOO_OLD, f"[{index}] seq {record.seq}: t={when} is "
                           f"{(now_ms - when) / 86_400_000:.1f} days old, limit {MAX_AGE_MS // 86_400_000}")


def effective_time(record: Recorded, mono_now: int | None, sent_ms: int) -> int:
    """The best UTC timestamp for a record, in ms.

    Trusted clocks are taken as they are. An unsynchronised record from the running
    boot is placed by the agent's monotonic clock, counted back from `sent_ms`: when
    the agent read `mono_now`, on the receiver's clock (collector.ingest.agentclock finds it;
    the moment of receipt is its upper bound).
    """
    if record.sync in TRUSTED_SYNC or mono_now is None:
        return record.t
    return sent_ms - (mono_now - record.mono)
