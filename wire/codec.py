"""Topics, encoding and validation of wire messages, with a precise reason per rejection.

`decode(topic, payload, now_ms)` is what the collector (and the agent, for its
config topic) runs on every message; it returns a typed message or raises
`Rejected(reason, detail)`. `encode(message)` is what the agent publishes.
"""

from __future__ import annotations

import re
import zlib
from enum import StrEnum

import pydantic_core
from pydantic import ValidationError

from wire.zdict import DICTIONARIES, DICTIONARY_V1
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
    """Serialise compactly; compress (zlib with the contract's preset dictionary) when asked,
    or (None) when that saves bytes."""
    raw = message.model_dump_json(exclude_none=True).encode()
    if compress is False or (compress is None and len(raw) < 64):
        return raw
    deflater = zlib.compressobj(9, zdict=DICTIONARY_V1)
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
        document = pydantic_core.from_json(_unpack(payload))
    except (Rejected, ValueError):
        return None
    return document if isinstance(document, dict) else None


_ERROR_REASONS = {
    "missing": Reason.MISSING_FIELD,
    "extra_forbidden": Reason.UNKNOWN_FIELD,
}


def _reason_for(error: dict) -> Reason:
    kind = error["type"]
    if kind in _ERROR_REASONS:
        return _ERROR_REASONS[kind]
    if kind.endswith("_type") or kind in ("int_from_float", "union_tag_invalid"):
        return Reason.WRONG_TYPE
    return Reason.BAD_VALUE


def _most_telling(errors: list[dict]) -> dict:
    """The first error; for a union field (one error per branch), the branch whose type fitted."""
    first = errors[0]
    place = error_path(first["loc"])
    same_place = [e for e in errors if error_path(e["loc"]) == place]
    if len(same_place) > 1:
        fitted = [e for e in same_place if not e["type"].endswith("_type")]
        if fitted:
            return fitted[0]
        got = type(first.get("input")).__name__
        return {**first, "msg": f"expected a bool, integer, number or string, got {got}"}
    return first


VALUE_BRANCHES = frozenset({"bool", "int", "float", "str", "constrained-int", "constrained-str"})


def error_path(loc: tuple, branches: frozenset[str] | set[str] = VALUE_BRANCHES, top: str = "message") -> str:
    """A pydantic error location as a reader writes it: `samples[3].f.rtt_ms`.

    Union branch names (`branches`; for a tagged union, its tags) say nothing to the reader and are left out."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in branches or "[" in str(part):
            continue
        else:
            out += f".{part}" if out else str(part)
    return out or top


def decode(topic_name: str, payload: bytes, now_ms: int) -> Message:
    """Validate one MQTT message against the contract; raise Rejected with the first reason."""
    clinic_id, kind = parse_topic(topic_name)
    raw = _unpack(payload)
    try:
        # Fast path, one pass in pydantic's Rust core: a well-formed message. Anything it
        # refuses is examined below, step by step, for the precise reason.
        message = MODELS[kind].model_validate_json(raw, strict=True)
    except ValidationError:
        message = None
    if message is not None:
        if message.clinic != clinic_id:
            raise Rejected(Reason.CLINIC_MISMATCH, f"payload clinic {message.clinic!r} published on {clinic_id!r}'s topic")
        if isinstance(message, (Telemetry, Events)):
            _check_records(message, now_ms)
        return message
    try:
        document = pydantic_core.from_json(raw, allow_inf_nan=False)
    except ValueError as exc:
        raise Rejected(Reason.BAD_JSON, str(exc)) from None
    if not isinstance(document, dict):
        raise Rejected(Reason.NOT_AN_OBJECT, f"payload is a JSON {type(document).__name__}, not an object")
    version = document.get("v")
    if version is None:
        raise Rejected(Reason.MISSING_FIELD, "v: every message carries the contract version")
    if version != VERSION or isinstance(version, bool):
        raise Rejected(Reason.UNSUPPORTED_VERSION, f"v={version!r}; this side speaks v{VERSION}")
    try:
        message = MODELS[kind].model_validate(document)
    except ValidationError as exc:
        error = _most_telling(exc.errors())
        raise Rejected(_reason_for(error), f"{error_path(error['loc'])}: {error['msg']}") from None
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
